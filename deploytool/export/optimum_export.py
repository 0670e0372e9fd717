"""Export with optimum's ONNX exporter (package optimum-onnx, module ``optimum.exporters.onnx``)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from deploytool.errors import UnavailableError
from deploytool.export.config import Task
from deploytool.export.hf import trace_length
from deploytool.quiet_logs import held_stdout

logger = logging.getLogger(__name__)

__all__ = ["export_optimum"]

_OPTIMUM_TASK = {Task.FEATURE_EXTRACTION: "feature-extraction", Task.SEQUENCE_CLASSIFICATION: "text-classification"}


def export_optimum(model, path: str | os.PathLike, *, task: Task, opset: int | None = None) -> int:
    """Write ``model`` to ``path`` with optimum's OnnxConfig for its architecture; returns the opset."""
    try:
        from optimum.exporters.onnx.convert import export as onnx_export
        from optimum.exporters.tasks import TasksManager
        from optimum.utils import DEFAULT_DUMMY_SHAPES
    except ImportError as e:
        raise UnavailableError("exporter 'optimum' needs optimum-onnx: pip install 'optimum-onnx==0.1.0'") from e

    ctor = TasksManager.get_exporter_config_constructor(
        exporter="onnx", model=model, task=_OPTIMUM_TASK[task], library_name="transformers")
    onnx_config = ctor(model.config)
    opset = opset or int(onnx_config.DEFAULT_ONNX_OPSET)
    # optimum traces 16 tokens: a position table shorter than that traces at its own length (the export failed
    # with a size mismatch), the torch exporter's rule
    shapes = {"sequence_length": trace_length(model, DEFAULT_DUMMY_SHAPES["sequence_length"])}
    with held_stdout(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation and TracerWarnings, expected here
        onnx_export(model=model.eval(), config=onnx_config, output=Path(path), opset=opset, input_shapes=shapes)
    return opset
