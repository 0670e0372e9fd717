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

# models whose weights exceed this are saved with one external-data file (protobuf's limit is 2 GB);
# smaller ones are one self-contained file
EXTERNAL_DATA_BYTES = 1_800_000_000

__all__ = [
    "EXTERNAL_DATA_BYTES",
    "atomic_path",
    "atomic_write",
    "check_output_path",
    "external_data_files",
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


def load_proto(path: str | os.PathLike, *, load_external_data: bool = True,
               data_files: list[Path] | None = None) -> onnx.ModelProto:
    """Load an ONNX ModelProto, turning every parse failure into a one-line InputFileError.

    ``data_files``: a list that receives the external-data files the model refers to (resolved paths,
    each once, in order), whether or not their data is loaded.
    """
    p = _check_input(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
        if data_files is not None:
            data_files.extend(_locations(model, p.parent))
        if load_external_data:
            from onnx.external_data_helper import load_external_data_for_model

            load_external_data_for_model(model, str(p.parent))
    except Exception as e:  # protobuf DecodeError, truncated external data, ...
        raise InputFileError(f"{p}: not a readable ONNX model ({type(e).__name__}: {_first_line(e)})") from e
    if not model.graph.node and not model.graph.input:
        raise InputFileError(f"{p}: not an ONNX model (no graph inside)")
    return model


def load_model(path: str | os.PathLike, *, data_files: list[Path] | None = None) -> ir.Model:
    """Load an ONNX file as an ``onnx_ir`` model (what every pass works on); its external data (if any) is
    read into memory. ``data_files`` as in :func:`load_proto`."""
    proto = load_proto(path, data_files=data_files)
    try:
        return ir.serde.deserialize_model(proto)
    except Exception as e:
        raise InputFileError(f"{path}: ONNX model cannot be read into the IR ({_first_line(e)})") from e


def _locations(model: onnx.ModelProto, base: Path) -> list[Path]:
    """The external-data files (resolved) that ``model``'s tensors refer to, each once."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    out: dict[Path, None] = {}
    for t in _get_all_tensors(model):
        if uses_external_data(t):
            for entry in t.external_data:
                if entry.key == "location":
                    out[(base / entry.value).resolve()] = None
    return list(out)


def external_data_files(path: str | os.PathLike) -> list[Path]:
    """The external-data files (resolved paths) the ONNX file at ``path`` refers to; [] if none. Parses
    the file without its data (cheap for a model with external data; a full parse otherwise)."""
    files: list[Path] = []
    load_proto(path, load_external_data=False, data_files=files)
    return files


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


def save_proto(model: onnx.ModelProto, path: str | os.PathLike, *, external: bool | None = None,
               inputs: tuple[str | os.PathLike, ...] = (),
               data_files: tuple[str | os.PathLike, ...] | None = None) -> Path:
    """Save a ModelProto atomically. Models whose weights exceed :data:`EXTERNAL_DATA_BYTES` go to one
    external-data file beside it (see :func:`staged_proto` for ``external`` and ``inputs``)."""
    with staged_proto(model, path, external=external, inputs=inputs, data_files=data_files):
        pass
    return Path(path)


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the tensor data held in ``model``'s initializers (not counting data already external)."""
    total = 0
    for t in model.graph.initializer:
        total += len(t.raw_data) if t.HasField("raw_data") else (0 if t.external_data else t.ByteSize())
    return total


def data_file_name(path: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = (),
                   data_files: tuple[str | os.PathLike, ...] | None = None) -> str:
    """The external-data file name of the model saved at ``path``: ``<name>.data``, or ``<name>.<k>.data``
    (smallest k >= 1) when that would be one of ``inputs`` or a file one of them refers to (an input's
    data must never be overwritten or appended to). ``data_files``: the inputs' external-data files
    when the caller knows them (None: found by parsing each input without its data)."""
    p = Path(path)
    taken: set[Path] = set()
    for f in tuple(inputs) + tuple(data_files or ()):
        with contextlib.suppress(OSError):
            taken.add(Path(f).resolve())
    if data_files is None:
        for i in inputs:
            if Path(i).is_file():
                with contextlib.suppress(InputFileError):
                    taken.update(external_data_files(i))
    name = p.name + ".data"
    k = 0
    while (p.parent / name).resolve() in taken:
        k += 1
        name = f"{p.name}.{k}.data"
    return name


@contextlib.contextmanager
def staged_proto(model: onnx.ModelProto, path: str | os.PathLike, *, external: bool | None = None,
                 inputs: tuple[str | os.PathLike, ...] = (),
                 data_files: tuple[str | os.PathLike, ...] | None = None) -> Iterator[Path]:
    """:func:`save_proto` in two steps: save to a temporary path beside ``path`` and yield it (a
    complete model file that tools can load and check); it becomes ``path`` only if the block succeeds.

    ``external``: True / False forces one external-data file / one self-contained file; None (default)
    decides: external when the weights exceed :data:`EXTERNAL_DATA_BYTES` or the model cannot be
    serialized in one piece (protobuf's 2 GB limit). The external-data file is ``<name>.data`` beside
    ``path`` (:func:`data_file_name`: another name if that is a file of ``inputs`` or one of their
    external-data files, which are never written to; ``data_files``: those files when the caller
    already knows them, so that the inputs need not be parsed again). It is written under a
    temporary name first (an existing ``<name>.data``, e.g. of an earlier output at ``path``, is
    replaced, never appended to), the model yielded refers to that temporary file, and both get their
    final names only if the block succeeds; on failure neither is left behind. ``model``'s tensors
    then refer to the external file (as ``onnx.save_model`` leaves them).
    """
    p = Path(path)
    if external is None:
        external = (weight_bytes(model) > EXTERNAL_DATA_BYTES or not _is_serializable_size(model)
                    or model.ByteSize() > 1_900_000_000)
    with atomic_path(p) as tmp:
        if not external:
            onnx.save_model(model, str(tmp))
            yield tmp
            return
        name = data_file_name(p, tuple(inputs), data_files)
        fd, tmp_data_s = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=p.parent)
        os.close(fd)
        tmp_data = Path(tmp_data_s)
        try:
            onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=tmp_data.name)
            yield tmp
            _relocate(model, tmp_data.name, name)  # the model file names the final data file
            onnx.save_model(model, str(tmp))  # small: the weights are in the data file
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_data, 0o666 & ~umask)
            os.replace(tmp_data, p.parent / name)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp_data.unlink()
            raise


def _relocate(model: onnx.ModelProto, old: str, new: str) -> None:
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    for t in _get_all_tensors(model):
        if uses_external_data(t):
            for entry in t.external_data:
                if entry.key == "location" and entry.value == old:
                    entry.value = new


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
