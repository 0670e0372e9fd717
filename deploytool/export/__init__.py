"""PyTorch / Hugging Face encoders -> ONNX (the only place outside train/ that imports torch).

Minimal core for now (owner: export work); ``export_model`` is the library function the CLI and the
tests call.
"""

from deploytool.export.torch_export import export_model

__all__ = ["export_model"]
