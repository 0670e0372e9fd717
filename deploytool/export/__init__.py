"""PyTorch / Hugging Face encoders -> ONNX (the only place outside train/ that imports torch).

``export(ExportConfig(...), out_path)`` resolves the model, loads it with eager attention, exports
it (TorchScript by default, optimum or dynamo on request), writes the architecture into the ONNX
``metadata_props`` (``deploytool.family``, ``num_layers``, ``num_heads``, ``head_size``,
``hidden_size``, ``ffn_size``, ``exporter``, ``task``, ...), validates it against PyTorch and saves
it atomically. Importing this package does not import torch; the functions do.
"""

from __future__ import annotations

from deploytool.export.config import ExportConfig, Exporter, ExportResult, Task

__all__ = ["ExportConfig", "ExportResult", "Exporter", "Task", "export", "export_loaded", "export_model",
           "load_hf_model", "read_metadata"]


def __getattr__(name: str):
    # lazy: the CLI builds an ExportConfig before paying for torch
    if name in ("export", "export_loaded", "read_metadata"):
        from deploytool.export import api
        return getattr(api, name)
    if name == "export_model":
        from deploytool.export.torch_export import export_model
        return export_model
    if name == "load_hf_model":
        from deploytool.export.hf import load_hf_model
        return load_hf_model
    raise AttributeError(name)
