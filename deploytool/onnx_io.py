"""The one place that loads and saves ONNX models and writes output files.

Loads check that the file exists and parses; saves are atomic (write a temporary file in the target
folder, then rename), so a failure never leaves a half-written output and the input is never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

import onnx
import onnx_ir as ir

from deploytool.errors import InputFileError, OutputPathError

logger = logging.getLogger(__name__)

__all__ = [
    "atomic_path",
    "atomic_write",
    "check_output_path",
    "load_model",
    "load_proto",
    "save_model",
    "save_proto",
    "staged_proto",
]


def _check_input(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    if p.is_dir():
        raise InputFileError(f"{p}: is a directory, expected an .onnx file")
    if p.stat().st_size == 0:
        raise InputFileError(f"{p}: empty file, not an ONNX model")
    return p


def load_proto(path: str | os.PathLike, *, load_external_data: bool = True) -> onnx.ModelProto:
    """Load an ONNX ModelProto, turning every parse failure into a one-line InputFileError."""
    p = _check_input(path)
    try:
        model = onnx.load(str(p), load_external_data=load_external_data)
    except Exception as e:  # protobuf DecodeError, truncated external data, ...
        raise InputFileError(f"{p}: not a readable ONNX model ({type(e).__name__}: {_first_line(e)})") from e
    if not model.graph.node and not model.graph.input:
        raise InputFileError(f"{p}: not an ONNX model (no graph inside)")
    return model


def load_model(path: str | os.PathLike) -> ir.Model:
    """Load an ONNX file as an ``onnx_ir`` model (what every pass works on)."""
    proto = load_proto(path)
    try:
        return ir.serde.deserialize_model(proto)
    except Exception as e:
        raise InputFileError(f"{path}: ONNX model cannot be read into the IR ({_first_line(e)})") from e


def check_output_path(path: str | os.PathLike, *, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Fail early (before any work) when ``path`` cannot be written or would overwrite an input."""
    p = Path(path)
    for i in inputs:
        with contextlib.suppress(OSError):
            if p.exists() and p.resolve() == Path(i).resolve():
                raise OutputPathError(f"{p}: output would overwrite the input; choose another path")
    if p.is_dir():
        raise OutputPathError(f"{p}: is a directory, expected a file path")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputPathError(f"{p}: parent {parent} is not a directory")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise OutputPathError(f"{p}: directory {parent} is not writable")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    p = check_output_path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"{p}: cannot create directory {p.parent} ({e.strerror})") from e
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=suffix + ".tmp", dir=p.parent)
    except OSError as e:
        raise OutputPathError(f"{p}: cannot write in {p.parent} ({e.strerror})") from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give the output the usual umask mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``path`` only when the block succeeds."""
    with atomic_path(path) as tmp:
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with open(tmp, mode, **kwargs) as f:
            yield f


def save_proto(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Save a ModelProto atomically. Models over 2 GB go to one external-data file beside it."""
    with staged_proto(model, path):
        pass
    return Path(path)


@contextlib.contextmanager
def staged_proto(model: onnx.ModelProto, path: str | os.PathLike) -> Iterator[Path]:
    """:func:`save_proto` in two steps: save to a temporary path beside ``path`` and yield it (a
    complete model file that tools can load and check); it becomes ``path`` only if the block succeeds.

    Models over 2 GB write one external-data file ``<name>.data`` beside it under its final name (the
    temporary model refers to it, so it loads as is); it is removed if the block fails.
    """
    p = Path(path)
    too_big = model.ByteSize() > 1_900_000_000 if _is_serializable_size(model) else True
    with atomic_path(p) as tmp:
        if too_big:
            data_file = p.parent / (p.name + ".data")
            try:
                onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                                location=data_file.name)
                yield tmp
            except BaseException:
                with contextlib.suppress(OSError):
                    data_file.unlink()
                raise
        else:
            onnx.save_model(model, str(tmp))
            yield tmp


def save_model(model: ir.Model, path: str | os.PathLike) -> Path:
    """Save an ``onnx_ir`` model atomically."""
    return save_proto(ir.serde.serialize_model(model), path)


def _is_serializable_size(model: onnx.ModelProto) -> bool:
    try:
        model.ByteSize()
        return True
    except Exception:
        return False


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0][:200] if s else type(e).__name__
