"""The typed export config and result (no torch here, so the CLI can validate options cheaply)."""

from __future__ import annotations

import dataclasses
import enum
import os
from pathlib import Path

from deploytool.choices import config, expects, parse_enum, show
from deploytool.errors import ConfigError

__all__ = ["Exporter", "Task", "ExportConfig", "ExportResult", "OPSET_RANGE", "DEFAULT_OPSET"]


class Task(str, enum.Enum):
    FEATURE_EXTRACTION = "feature-extraction"  # output ``last_hidden_state``
    SEQUENCE_CLASSIFICATION = "sequence-classification"  # output ``logits``

    @property
    def output_name(self) -> str:
        return "last_hidden_state" if self is Task.FEATURE_EXTRACTION else "logits"


class Exporter(str, enum.Enum):
    TORCH = "torch"  # torch.onnx TorchScript exporter (dynamo=False)
    OPTIMUM = "optimum"  # optimum.exporters.onnx (optimum-onnx), TorchScript underneath
    DYNAMO = "dynamo"  # torch.onnx dynamo exporter (torch.export + onnxscript)


# Inclusive opset ranges each exporter accepts. TorchScript stops at 20 (torch 2.13); the dynamo
# exporter needs 18+. Below 14 BERT-family exports lose ops they need.
OPSET_RANGE: dict[Exporter, tuple[int, int]] = {
    Exporter.TORCH: (14, 20),
    Exporter.OPTIMUM: (14, 20),
    Exporter.DYNAMO: (18, 23),
}
DEFAULT_OPSET: dict[Exporter, int | None] = {
    Exporter.TORCH: 17,
    Exporter.OPTIMUM: None,  # the architecture's default in optimum's OnnxConfig
    Exporter.DYNAMO: 20,
}


_MODEL = "a built-in model name (such as minilm) or a Hugging Face model folder"


@config
@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What to export and how.

    model: a known name (``minilm``) or a local Hugging Face folder.
    exporter: default TorchScript of the eager-attention model, whose graph ORT's BERT optimizer
      fuses (Attention, EmbedLayerNormalization); the dynamo export does not fuse attention.
    opset: None = the exporter's default. validate: compare against PyTorch on fixed inputs and fail
      when the max abs difference exceeds ``atol``. source: what the ``deploytool.source`` metadata
      records (default: ``model``; a recipe gives a name that does not depend on its folder, so two
      runs write byte-identical files). trust_remote_code: load a folder whose config.json maps the model to
      its own code (``auto_map``: jina-embeddings-v2, nomic-embed-text, gte-*-v1.5) by running that code; off,
      such a folder is refused in one line.
    """

    model: str = dataclasses.field(metadata=expects(_MODEL))
    task: Task = Task.FEATURE_EXTRACTION
    exporter: Exporter = Exporter.TORCH
    opset: int | None = None
    validate: bool = True
    atol: float = 1e-4
    source: str | None = None
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, (str, os.PathLike)) or not str(self.model).strip():
            raise ConfigError(f"model: expected {_MODEL}, got {show(self.model)}")
        object.__setattr__(self, "model", str(self.model))
        if not isinstance(self.validate, bool):  # "no" was true (validated), None false (skipped silently)
            raise ConfigError(f"validate: expected true or false, got {show(self.validate)}")
        if self.source is not None and (not isinstance(self.source, str) or not self.source.strip()):
            raise ConfigError(f"source: expected a non-empty string or None, got {show(self.source)}")
        object.__setattr__(self, "task", parse_enum(Task, self.task, "task"))
        object.__setattr__(self, "exporter", parse_enum(Exporter, self.exporter, "exporter"))
        # "field: ..." so that the CLI names the option typed (--opset: ...), a recipe its key (export: opset: ...)
        if self.opset is not None:
            lo, hi = OPSET_RANGE[self.exporter]
            if isinstance(self.opset, bool) or not isinstance(self.opset, int) or not lo <= self.opset <= hi:
                raise ConfigError(f"opset: expected an integer in [{lo}, {hi}] for exporter {self.exporter.value}, "
                                  f"got {show(self.opset)}")
        if isinstance(self.atol, bool) or not isinstance(self.atol, (int, float)) or not 0 <= self.atol <= 1e6:
            raise ConfigError(f"atol: expected a number in [0, 1e6], got {show(self.atol)}")
        object.__setattr__(self, "atol", float(self.atol))
        if not isinstance(self.trust_remote_code, bool):
            raise ConfigError(f"trust_remote_code: expected true or false, got {show(self.trust_remote_code)}")


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What an export produced. max_abs_diff: validation input name -> max |onnx - torch| (empty
    when validation was off)."""

    path: Path
    exporter: Exporter
    task: Task
    opset: int
    max_abs_diff: dict[str, float]
    atol: float
    validated: bool
    file_size: int
    seconds: float
    metadata: dict[str, str]
    # the bytes of the model's whole ALiBi buffers that the export holds as the computation of their values
    # (deploytool.export.alibi_buffers), not as a constant
    alibi_table_bytes_computed: int = 0
    # the bytes of the exporter's provenance metadata (stack traces, ...) on nodes and values that the file does
    # not hold (deploytool.onnx_io.strip_exporter_metadata)
    exporter_metadata_bytes_dropped: int = 0
    # the checkpoint's own weight type when it is not float32 (config.json's torch_dtype / dtype: "float16",
    # "bfloat16"): it was loaded, exported and validated in float32 (None: float32, or not said)
    checkpoint_dtype: str | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["exporter"] = self.exporter.value
        d["task"] = self.task.value
        return d
