"""Checkpoint I/O: load a Hugging Face classifier folder, save one atomically.

Loading accepts ``model.safetensors`` (preferred) or ``pytorch_model.bin``, which transformers 4.57
reads with ``torch.load(weights_only=True)``; a folder without weights is refused before anything
runs. Saving writes the whole folder (safetensors weights, config, tokenizer, a ``deploytool.json``
with how it was made) into a hidden temporary folder beside the target and renames it into place, so
a failure never leaves a half-written checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from deploytool import scratch
from deploytool.errors import DeployError, InputFileError, OutputPathError
from deploytool.models import LOADABLE
from deploytool.quiet_logs import held_level
from deploytool.variant import TRAINED_META_FILE

logger = logging.getLogger(__name__)

__all__ = ["resolve_folder", "load_classifier", "load_tokenizer", "save_folder", "check_output_folder",
           "read_meta", "data_file", "META_FILE"]

META_FILE = TRAINED_META_FILE  # the one name (variant.py's: export reads it without importing training)


def resolve_folder(name_or_path: str | os.PathLike) -> Path:
    """A model name (``minilm``) or a HF folder -> the folder, checked for config and weights."""
    try:
        from deploytool.models import resolve_model
    except ImportError:  # models.py not installed: accept local folders only
        resolve_model = None
    if resolve_model is not None:
        folder = resolve_model(name_or_path)
        from deploytool.export.hf import check_encoder_folder

        check_encoder_folder(folder)  # a decoder or a model_type transformers lacks: said before any loading
        return folder
    folder = Path(name_or_path)
    if not (folder / "config.json").is_file():
        raise InputFileError(f"model folder {folder} has no config.json (not a Hugging Face model folder)")
    if not any((folder / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
        raise InputFileError(f"model folder {folder} has no weights (model.safetensors or pytorch_model.bin)")
    return folder


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' own log lines off while a decorated loader runs (its verbosity is the caller's again after:
    a program using deploytool keeps its transformers warnings)."""
    import transformers  # noqa: F401 - its import sets its logger's level: imported before the level is held

    with held_level("transformers", logging.ERROR):
        yield


@_quiet_transformers()
def load_classifier(name_or_path: str | os.PathLike, *, num_labels: int | None = None,
                    label_names: tuple[str, ...] | None = None):
    """An ``AutoModelForSequenceClassification`` with eager attention (head_mask and attention outputs).

    A folder without a classifier head (plain MiniLM) gets a fresh one with ``num_labels``; a folder
    whose head has another label count is refused.
    """
    import transformers as tr

    from deploytool.export.hf import own_code

    folder = resolve_folder(name_or_path)
    own_code(Path(folder), "AutoModelForSequenceClassification", False,
             remedy="deploytool trains transformers' own architectures only: fine-tune it with its own code, then "
                    "export it (deploytool export --trust-remote-code) or bring its ONNX file")
    try:
        cfg = tr.AutoConfig.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise InputFileError(f"model folder {folder}: its config.json cannot be read "
                             f"({' '.join(str(e).split())[:200]})") from e
    archs = cfg.architectures or []
    has_head = any("SequenceClassification" in a for a in archs)
    kw = {}
    if num_labels is not None:
        if has_head and cfg.num_labels != num_labels:
            from deploytool.data import _listed

            # the data's labels named: 'the dataset has 3' hid a 'NaN' written out as text or '1' beside 'pos'
            said = f" ({_listed(label_names)})" if label_names else ""
            raise DeployError(f"model {folder} classifies {cfg.num_labels} labels, the dataset has {num_labels}{said}")
        kw["num_labels"] = num_labels
        if label_names:
            kw["id2label"] = {i: n for i, n in enumerate(label_names)}
            kw["label2id"] = {n: i for i, n in enumerate(label_names)}
    try:
        model = tr.AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager", **kw)
    except Exception as e:  # noqa: BLE001 - torch's, transformers' and safetensors' own (SafetensorError) alike
        if isinstance(e, DeployError):
            raise
        from deploytool.export.hf import weights_only_refusal

        refused = weights_only_refusal(folder, e)
        if refused is not None:
            raise refused from e
        raise InputFileError(f"model folder {folder}: cannot load weights ({' '.join(str(e).split())[:200]})") from e
    return model


# the files one of which a model folder's tokenizer is read from
TOKENIZER_FILES = LOADABLE  # the files load_tokenizer reads a folder's tokenizer from


@_quiet_transformers()
def load_tokenizer(folder: str | os.PathLike):
    import transformers as tr

    if Path(folder).is_dir() and not any((Path(folder) / n).is_file() for n in TOKENIZER_FILES):
        raise InputFileError(f"{folder}: no tokenizer in the model folder (none of {', '.join(TOKENIZER_FILES)}); "
                             "copy the tokenizer files the model was trained with into it")
    try:
        return tr.AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as e:
        bare = _bare_tokenizer(Path(folder))
        if bare is not None:
            return bare
        raise InputFileError(f"{folder}: no usable tokenizer (tokenizer.json / vocab.txt) "
                             f"({' '.join(str(e).split())[:160]})") from e


def _bare_tokenizer(path: Path):
    """A tokenizer.json or vocab.txt with nothing transformers reads it by (no config.json or tokenizer_config.json
    beside it: AutoTokenizer says 'Unrecognized model'), read as ``quantize --static``, ``qnn`` and ``bundle`` read
    it (deploytool.models.load_tokenizer: a vocab.txt is BERT's WordPiece); None where that is not the case."""
    import transformers as tr

    from deploytool.errors import ConfigError
    from deploytool.models import load_tokenizer as load_file

    folder = path if path.is_dir() else path.parent
    if not path.exists() or any((folder / n).is_file() for n in ("config.json", "tokenizer_config.json")):
        return None
    try:
        tok = tr.PreTrainedTokenizerFast(tokenizer_object=load_file(path))
    except ConfigError:
        return None
    vocab = tok.get_vocab()
    for role, names in (("pad_token", ("[PAD]", "<pad>")), ("unk_token", ("[UNK]", "<unk>")),
                        ("cls_token", ("[CLS]", "<s>")), ("sep_token", ("[SEP]", "</s>")),
                        ("mask_token", ("[MASK]", "<mask>"))):
        if getattr(tok, role) is None:
            found = next((n for n in names if n in vocab), None)
            if found is not None:
                setattr(tok, role, found)
    return tok


def read_meta(folder: str | os.PathLike) -> dict:
    p = Path(folder) / META_FILE
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def require_classifier(folder: str | os.PathLike, role: str = "teacher") -> None:
    """A model without a trained classifier head would teach (or score) noise: refuse it before any work."""
    import json

    folder = Path(folder)
    try:
        archs = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError) as e:
        raise DeployError(f"{role} {folder}: unreadable config.json ({e})") from e
    if not any("SequenceClassification" in a for a in archs):
        raise DeployError(f"{role} {folder} has no sequence-classification head ({', '.join(archs) or '?'}); "
                          f"fine-tune it first (deploytool train)")


def check_outside_input_folders(path: str | os.PathLike, inputs: tuple, what: str = "folder") -> None:
    """Refuse an output (``what``: folder or file) inside an input model folder: inputs are never modified.
    ``inputs`` that are not folders (or None) are skipped; links are followed."""
    p = Path(path)
    for i in inputs:
        if i is None or not Path(i).is_dir():
            continue
        try:
            out, src = p.resolve(), Path(i).resolve()
        except OSError:
            continue
        if out.is_relative_to(src):
            raise OutputPathError(f"{p}: output {what} is inside the input model {i}; writing there would change "
                                  f"the input; choose a {what} outside it")


def check_output_folder(path: str | os.PathLike, *, inputs: tuple = ()) -> Path:
    """Refuse (before any training) an output that is a file, an input folder, inside an input folder, holding an
    input (model folder or file: replacing the folder deletes it), or unwritable. ``inputs``: what the command reads
    (None entries are skipped)."""
    p = Path(path)
    for i in inputs:
        if i is None or not Path(i).exists():
            continue
        try:
            out, src = p.resolve(), Path(i).resolve()
        except OSError:
            continue
        if p.exists() and Path(i).is_dir() and out == src:
            raise OutputPathError(f"{p}: output folder would overwrite the input model; choose another")
        check_outside_input_folders(p, (i,))  # the model saved into the folder of the model it reads
        if p.exists() and src != out and src.is_relative_to(out):  # the old folder is removed when the new one is moved in
            raise OutputPathError(f"{p}: output folder holds the input {i}; replacing the folder would delete it; "
                                  "choose another")
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{p}: exists and is not a folder")
    if p.exists() and any(p.iterdir()) and not (p / "config.json").is_file():
        raise OutputPathError(f"{p}: exists, is not empty and is not a model folder; refusing to replace it")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise OutputPathError(f"{p}: directory {parent} is not writable")
    return p


def data_file(data_cfg) -> Path | None:
    """The user's data file a command reads (an input an output folder must not hold), or None for a built-in
    dataset or the one recorded with the model."""
    d = getattr(data_cfg, "data", None)
    return Path(d) if isinstance(d, (str, os.PathLike)) and Path(d).is_file() else None


def save_folder(model, tokenizer, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write model (safetensors) + tokenizer + ``deploytool.json`` to a temp folder, then rename it."""
    p = check_output_folder(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent))
        scratch.made(tmp)  # removed by the program should this process be killed (not the .old: a checkpoint)
        from deploytool.onnx_io import umask_mode

        umask_mode(tmp, folder=True)  # mkdtemp makes it 0700: a plain mkdir's mode, as the .onnx files get
    except OSError as e:
        raise OutputPathError(f"{p}: cannot write in {p.parent} ({e.strerror})") from e
    old = None
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta or {}, indent=2, default=str), encoding="utf-8")
        if p.exists():  # replace a previous checkpoint: move it aside, move the new one in, drop the old
            old = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".old", dir=p.parent))
            os.replace(p, old / "ckpt")
        os.replace(tmp, p)
    except BaseException:
        if old is not None and (old / "ckpt").exists() and not p.exists():
            os.replace(old / "ckpt", p)
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("saved %s", p)
    return p


def weights_digest(model) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes) in name order: equal digests mean
    bit-identical weights (data-parallel processes must end with the same ones)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
