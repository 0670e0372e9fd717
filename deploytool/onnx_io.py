"""The one place that loads and saves ONNX models and writes output files.

Loads check that the file exists and parses; saves are atomic (write a temporary file in the target
folder, then rename), so a failure never leaves a half-written output and the input is never touched.

Streaming (what every pass runs on): :func:`load_model` reads no weight into memory. A self-contained
file is scanned at the protobuf wire level: every initializer's ``raw_data`` over
:data:`INLINE_BYTES` becomes a :class:`MappedTensor`, a read-only memory map of that byte range of the
file itself; a model with external data gets the same for each of its data files. Pages a pass reads
are dropped from the process again (``madvise(MADV_DONTNEED)``: the page cache keeps them) once more
than :data:`MAP_BUDGET_BYTES` were handed out, and after each tensor is written, so a pass's resident
memory does not grow with the file. :func:`staged_model` writes a model tensor by tensor: a graph
skeleton (every big tensor a placeholder) is serialized, then each tensor is computed (passes leave
their edits as ``ir.LazyTensor``), written and dropped before the next; a self-contained output is
written as protobuf wire format directly (the same bytes protobuf would parse), one with external data
as one data file, tensors aligned to 4 KiB so ONNX Runtime can map them.

Exporter provenance (:func:`strip_exporter_metadata`): torch's dynamo exporter writes ``metadata_props`` on every
node, value and graph (``pkg.torch.onnx.stack_trace`` with the exporting machine's file paths,
``pkg.torch.onnx.class_hierarchy``, ``fx_node``, ``name_scopes``, ``namespace``, ``pkg.torch.export.*``
signatures, ``pkg.onnxscript.*`` rewrite notes): 58 % of a tiny BERT's file, 72 % of a tiny ALBERT's, 0.87 MB for
a 12-layer BERT graph whatever its width (0.2 % of BERT-base's fp32 file, more of an int8 or packed one). It says where each node came from in the PyTorch program that was exported, which no
longer holds once a pass has sliced, pruned, packed or quantized the graph, and half of it would be missing anyway
(nodes a pass writes have none). So every pass's output (:func:`staged_model`) is written without it: the keys
under ``pkg.torch.`` and ``pkg.onnxscript.``, and ``namespace`` where it stands beside them, on nodes (subgraphs
and functions included), values, initializers and graphs. Every other entry is kept as it was (a user's own
annotations, whatever their level), as are the model-level ``metadata_props`` (deploytool's ``deploytool.*``
records, the producer's) and ``producer_name``/``producer_version``. The bytes dropped are in the pass's result
(``exporter_metadata_bytes_dropped``) and logged. A pass that changes nothing writes a byte copy of its input,
this metadata included. The other writer, :func:`save_proto` / :func:`staged_proto`, follows the same rule, so
``deploytool export`` (:mod:`deploytool.export.api`), ``fuse`` (ORT's transformer optimizer leaves each node it
does not fuse as it was, metadata included; :attr:`deploytool.runtime.fuse.FuseResult.exporter_metadata_bytes_dropped`)
and the QNN quantizer's QDQ file write none of it either. Not held to it (they may keep it): copies (a pass that changes nothing,
``fit``'s chosen candidate: the file as it was), the scratch files a command writes for ONNX Runtime and deletes
(the gate's views, cost-model probes, the QNN tools' inputs), and the files ONNX Runtime itself writes (an optimized
graph, a bundle's ``.ort``, QNN's EPContext model).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

import onnx
import onnx_ir as ir

from deploytool import scratch
from deploytool.errors import (
    LINK_LOOP, SPECIAL_FILE, InputFileError, OutputPathError, looping_link, no_such, refuse_link_to_nothing,
)

logger = logging.getLogger(__name__)

# models whose weights exceed this are saved with one external-data file (protobuf's limit is 2 GB);
# smaller ones are one self-contained file
EXTERNAL_DATA_BYTES = 1_800_000_000

__all__ = [
    "EXTERNAL_DATA_BYTES",
    "atomic_path",
    "atomic_write",
    "check_output_path",
    "check_writable",
    "external_data_files",
    "load_model",
    "load_proto",
    "save_model",
    "publish_model",
    "save_proto",
    "staged_proto",
    "MappedFile",
    "MappedTensor",
    "load_model_mapped",
    "mapped_files",
    "save_streamed",
    "skeleton_proto",
    "staged_model",
    "Staged",
    "drop_pages",
    "MapBudget",
    "row_chunks",
    "EXPORTER_METADATA_PREFIXES",
    "strip_exporter_metadata",
]

#: ``metadata_props`` keys (prefixes) of the exporters' provenance, written by torch's dynamo exporter and
#: onnxscript's optimizer; dropped from every file deploytool writes (see the module doc)
EXPORTER_METADATA_PREFIXES = ("pkg.torch.", "pkg.onnxscript.")
#: a key torch's exporter writes without a prefix (the module path of each node, for Model Explorer); dropped only
#: from an entry list that also holds a key under EXPORTER_METADATA_PREFIXES
_EXPORTER_NAMESPACE = "namespace"


def _strip_props(props) -> int:
    """Remove the exporter's provenance entries from one ``metadata_props`` list; returns the bytes removed."""
    if not props:
        return 0
    torch_made = any(p.key.startswith(EXPORTER_METADATA_PREFIXES) for p in props)
    if not torch_made:
        return 0
    keep = [p for p in props if not (p.key.startswith(EXPORTER_METADATA_PREFIXES) or p.key == _EXPORTER_NAMESPACE)]
    # each entry is one length-delimited field of its message: its bytes plus a tag byte and its length's varint
    removed = sum(p.ByteSize() + 1 + len(_encode_varint(p.ByteSize())) for p in props) \
        - sum(p.ByteSize() + 1 + len(_encode_varint(p.ByteSize())) for p in keep)
    kept = [(p.key, p.value) for p in keep]
    del props[:]
    for k, v in kept:
        props.add(key=k, value=v)
    return removed


def _strip_graph(g: onnx.GraphProto) -> int:
    removed = _strip_props(g.metadata_props)
    for n in g.node:
        removed += _strip_props(n.metadata_props)
        for a in n.attribute:
            if a.HasField("g"):
                removed += _strip_graph(a.g)
            for sub in a.graphs:
                removed += _strip_graph(sub)
    for v in (*g.input, *g.output, *g.value_info):
        removed += _strip_props(v.metadata_props)
    for t in g.initializer:
        removed += _strip_props(t.metadata_props)
    return removed


def strip_exporter_metadata(model: onnx.ModelProto) -> int:
    """Remove the exporters' provenance ``metadata_props`` (keys under :data:`EXPORTER_METADATA_PREFIXES`, and
    ``namespace`` beside them) from ``model``'s nodes, values, initializers, graphs and functions, in place; the
    model's own ``metadata_props`` and every other entry are kept. A ``value_info`` entry that held such metadata
    for an initializer and now only restates its type and dims goes too. Returns the bytes of the entries removed
    (the serialized model shrinks by slightly more: the messages that held them need fewer bytes for their
    lengths)."""
    removed = _strip_graph(model.graph)
    for f in model.functions:
        removed += _strip_props(f.metadata_props)
        for n in f.node:
            removed += _strip_props(n.metadata_props)
        for v in f.value_info:
            removed += _strip_props(v.metadata_props)
    if removed:
        before = [(v.name, v.ByteSize()) for v in model.graph.value_info]
        _drop_initializer_value_info(model.graph)
        after = {v.name for v in model.graph.value_info}
        removed += sum(n + 1 + len(_encode_varint(n)) for name, n in before if name not in after)
    return removed


def _strip_for_writing(model: onnx.ModelProto, path: Path) -> int:
    """:func:`strip_exporter_metadata` of a model about to be written to ``path``, logged; the bytes dropped."""
    dropped = strip_exporter_metadata(model)
    if dropped:
        logger.info("%s: %d bytes of the exporter's node metadata (stack traces, ...) not written", path.name, dropped)
    return dropped


def _check_input(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: {no_such(p)}")
    if p.is_dir():
        raise InputFileError(f"{p}: is a directory, expected an .onnx file")
    if not p.is_file():  # /dev/zero, a FIFO: its size is 0, and it is not an empty file
        raise InputFileError(f"{p}: {SPECIAL_FILE}, expected an .onnx file")
    if p.stat().st_size == 0:
        raise InputFileError(f"{p}: empty file, not an ONNX model")
    return p


def _unreadable(p: Path, e: BaseException) -> InputFileError:
    """The one-line error for a file that does not parse as an ONNX model; one in another known format says which
    (protobuf's own message about an ORT-format file is 'unsupported wire type 4')."""
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError:
        head = b""
    if head[4:8] == b"ORTM" and head[:1] != b"\x08":  # FlatBuffers' file identifier (an ONNX file starts 0x08)
        return InputFileError(f"{p}: an ONNX Runtime ORT-format file (FlatBuffers, as bundle's model.ort), not an "
                              "ONNX model: give the .onnx it was converted from")
    for magic, what in ((b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip"), (b"\x28\xb5\x2f\xfd", "zstd"),
                        (b"\xfd7zXZ", "xz")):
        if head.startswith(magic):
            return InputFileError(f"{p}: a {what}-compressed file, not an ONNX model: decompress it first")
    return InputFileError(f"{p}: not a readable ONNX model ({type(e).__name__}: {_first_line(e)})")


def load_proto(path: str | os.PathLike, *, load_external_data: bool = True,
               data_files: list[Path] | None = None) -> onnx.ModelProto:
    """Load an ONNX ModelProto, turning every parse failure into a one-line InputFileError.

    ``data_files``: a list that receives the external-data files the model refers to (resolved paths,
    each once, in order), whether or not their data is loaded.
    """
    p = _check_input(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
        locations = _locations(model, p.parent)
    except Exception as e:  # protobuf DecodeError, ...
        raise _unreadable(p, e) from e
    if data_files is not None:
        data_files.extend(locations)
    if load_external_data:
        from onnx.external_data_helper import load_external_data_for_model

        _refuse_missing_data(p, locations)
        try:
            load_external_data_for_model(model, str(p.parent))
        except Exception as e:  # truncated external data, ...
            raise InputFileError(f"{p}: not a readable ONNX model ({type(e).__name__}: {_first_line(e)})") from e
    if not model.graph.node and not model.graph.input:
        raise InputFileError(f"{p}: not an ONNX model (no graph inside)")
    _check_graph_order(model, p)
    _check_tensors(model, p, {})
    return model


def _refuse_missing_data(model: Path, files: list[Path]) -> None:
    """InputFileError naming the first of ``files`` (the external data of ``model``) that is not there."""
    for f in files:
        if not f.is_file():
            raise InputFileError(_no_data_file(model, os.path.relpath(f, model.resolve().parent), f))


def _no_data_file(model: Path, location: str, f: Path) -> str:
    """Why the external-data file ``f`` (``location`` as the model names it) cannot be read: absent, or not a file."""
    if not location or f == model.resolve().parent:
        return f"{model}: a tensor's external data location is empty (it names no file)"
    if f.is_dir():
        return f"{model}: external data location {location!r} is a folder, not a file"
    if f.exists():
        return f"{model}: external data location {location!r} is {SPECIAL_FILE}"
    return f"{model}: external data file {location!r} not found beside the model"


def _check_references(proto: onnx.ModelProto, path: Path) -> None:
    """Refuse a graph whose nodes or outputs name a value that no input, initializer or node of the graph gives
    (a file written without its weights, a cut graph): in one line, not with one onnx_ir warning per name and a
    pass's failure later. Subgraphs, which may read their outer graph's names, are onnx_ir's to check."""
    g = proto.graph
    given = {v.name for v in g.input} | {t.name for t in g.initializer} | {t.values.name for t in g.sparse_initializer}
    for n in g.node:
        given.update(n.output)
    missing: dict[str, str] = {}
    for n in g.node:
        for name in n.input:
            if name and name not in given and name not in missing:
                missing[name] = f"node '{n.name or n.op_type}' ({n.op_type}) reads '{name}'"
    for v in g.output:
        if v.name not in given and v.name not in missing:
            missing[v.name] = f"graph output '{v.name}'"
    if missing:
        first = next(iter(missing.values()))
        more = f" (and {len(missing) - 1} more names)" if len(missing) > 1 else ""
        raise InputFileError(f"{path}: {first}, which no input, initializer or node of the graph gives{more}: "
                             f"the file is incomplete")


# bits per element of each numeric tensor type (TensorProto.DataType), for the size a tensor's dims imply
_ELEMENT_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64,
                 15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2}
# the typed field each type stores its values in when it has no raw_data, and how many entries one element takes
_TYPED_FIELDS = {1: ("float_data", 1), 11: ("double_data", 1), 7: ("int64_data", 1), 13: ("uint64_data", 1),
                 12: ("uint64_data", 1), 14: ("float_data", 2), 15: ("double_data", 2)}


def _check_tensors(proto: onnx.ModelProto, path: Path, spans: dict[str, tuple[int, int]]) -> None:
    """Refuse, in one line, an initializer whose type is undefined, whose dims are negative, or whose stored
    bytes are not what its dims say (a cut or doctored file): a pass would otherwise fail on it later with an
    error about arrays, not about the file. ``spans``: the scanned tensors' (offset, length) in the file."""
    import math

    if proto.graph.sparse_initializer:
        name = proto.graph.sparse_initializer[0].values.name
        raise InputFileError(f"{path}: initializer '{name}' is stored sparse (sparse_initializer), which deploytool "
                             "does not read; save the model with dense initializers")
    for t in proto.graph.initializer:
        where = f"{path}: initializer '{t.name}'"
        if t.data_type not in _ELEMENT_BITS and t.data_type != onnx.TensorProto.STRING:
            raise InputFileError(f"{where} has an undefined or unknown element type ({t.data_type})")
        if any(d < 0 for d in t.dims):
            raise InputFileError(f"{where} has negative dimensions {list(t.dims)}")
        if t.data_type == onnx.TensorProto.STRING:
            continue
        count = math.prod(t.dims)
        want = (count * _ELEMENT_BITS[t.data_type] + 7) // 8
        ext = {e.key: e.value for e in t.external_data}
        for key in ("offset", "length"):
            if key in ext and not (ext[key].isdigit()):
                raise InputFileError(f"{where} has an external-data {key} that is not a count of bytes "
                                     f"({ext[key]!r})")
        if t.name in spans:
            have = spans[t.name][1]
        elif t.data_location == onnx.TensorProto.EXTERNAL:
            if "length" not in ext:
                continue
            have = int(ext["length"])
        elif t.HasField("raw_data") or t.raw_data:
            have = len(t.raw_data)
        else:
            if _ELEMENT_BITS[t.data_type] < 8:  # 4- and 2-bit values packed into int32_data: counts differ
                continue
            field, per = _TYPED_FIELDS.get(t.data_type, ("int32_data", 1))
            n = len(getattr(t, field))
            if n and n != count * per:
                raise InputFileError(f"{where} holds {n // per} values where its dims {list(t.dims)} say {count}")
            continue
        if have != want:
            raise InputFileError(f"{where} holds {have} bytes where its dims {list(t.dims)} and type say {want}: "
                                 "the file is cut or damaged")


def _check_graph_order(proto: onnx.ModelProto, path: Path) -> None:
    """Refuse, in one line, a graph where two nodes write one value, a graph output listed twice, or a cycle
    (a value that depends on itself): no pass can order or run it."""
    g = proto.graph
    writer: dict[str, onnx.NodeProto] = {}
    for n in g.node:
        for name in n.output:
            if name and name in writer:
                raise InputFileError(f"{path}: value '{name}' is written by two nodes ('{writer[name].name}' and "
                                     f"'{n.name}'): the graph is invalid")
            if name:
                writer[name] = n
    outs = [o.name for o in g.output]
    if len(set(outs)) != len(outs):
        dup = next(o for o in outs if outs.count(o) > 1)
        raise InputFileError(f"{path}: graph output '{dup}' is listed twice: the graph is invalid")
    # Kahn's algorithm over the nodes: whatever is left unordered is on a cycle
    waiting = [0] * len(g.node)
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(g.node):
        deps = {name for name in n.input if name in writer}
        waiting[i] = len(deps)
        for name in deps:
            readers.setdefault(name, []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        for name in g.node[i].output:
            for j in readers.get(name, ()):
                waiting[j] -= 1
                if waiting[j] == 0:
                    ready.append(j)
    if done != len(g.node):
        stuck = next(n for i, n in enumerate(g.node) if waiting[i] > 0)
        raise InputFileError(f"{path}: the graph has a cycle (node '{stuck.name or stuck.op_type}' depends on its "
                             "own output): the graph is invalid")


def load_model(path: str | os.PathLike, *, data_files: list[Path] | None = None, lazy: bool = True,
               rewrite=None) -> ir.Model:
    """Load an ONNX file as an ``onnx_ir`` model (what every pass works on). ``lazy`` (default): no weight
    is read, each big initializer is a :class:`MappedTensor` over the file or its external data (see the
    module doc); False: everything is read into memory. ``data_files`` as in :func:`load_proto`.
    ``rewrite``: a function applied to the parsed ModelProto (without its big weights) before it
    becomes the IR model."""
    if lazy:
        return load_model_mapped(path, data_files=data_files, rewrite=rewrite)
    proto = load_proto(path, data_files=data_files)
    if rewrite is not None:
        rewrite(proto)
    _check_references(proto, Path(path))  # (load_proto checked the file's order and tensors)
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


def check_external_data(path: str | os.PathLike) -> None:
    """InputFileError when an external-data file the ONNX file at ``path`` names is missing (said the same way by
    every command, before ONNX Runtime's long message or a FileNotFoundError deep inside a pass)."""
    model = Path(path)
    _refuse_missing_data(model, external_data_files(model))


#: :func:`external_data_files`' answers by file (absolute path, inode, size, modification time: a file written
#: again is scanned again), the last few: a pass scanned its input on load and asked again for its size (pack's
#: gate reference: 0.04 s of a BERT-base pack)
_DATA_FILES: dict[tuple, tuple[Path, ...]] = {}
_DATA_FILES_KEPT = 8


def _data_files_key(p: Path) -> tuple | None:
    try:
        st = p.stat()
        return os.path.abspath(p), st.st_ino, st.st_size, st.st_mtime_ns  # locations are relative to p.parent
    except OSError:
        return None


def _remember_data_files(key: tuple | None, files: list[Path]) -> None:
    if key is None:
        return
    _DATA_FILES.pop(key, None)
    _DATA_FILES[key] = tuple(files)
    while len(_DATA_FILES) > _DATA_FILES_KEPT:
        with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another thread dropped it first
            del _DATA_FILES[next(iter(_DATA_FILES))]


def external_data_files(path: str | os.PathLike) -> list[Path]:
    """The external-data files (resolved paths) the ONNX file at ``path`` refers to; [] if none. Reads
    the file's structure without its weights (a memory map and a wire-level scan, see the module doc),
    once per version of the file (:data:`_DATA_FILES`)."""
    p = _check_input(path)
    key = _data_files_key(p)
    if key is not None and key in _DATA_FILES:
        return list(_DATA_FILES[key])
    try:
        mapped = MappedFile(p)
        try:
            proto, _ = _scan_skeleton(p, mapped)
        except _NotStreamable:
            proto = onnx.load(str(p), load_external_data=False)
    except InputFileError:
        raise
    except Exception as e:
        raise _unreadable(p, e) from e
    files = _locations(proto, p.parent)
    _remember_data_files(key, files)
    return files


def check_output_path(path: str | os.PathLike, *, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Fail early (before any work) when ``path`` cannot be written or would overwrite an input."""
    raw = os.fspath(path)
    p = Path(path)
    if isinstance(raw, str) and raw.endswith(("/", os.sep)):  # Path() drops the slash that makes it a folder
        raise OutputPathError(f"{raw}: names a directory (it ends with '/'); give a file path")
    refuse_link_to_nothing(p)  # (the CLI says it before any work; a Python caller's output link was replaced)
    for i in inputs:
        with contextlib.suppress(OSError):
            if p.exists() and p.resolve() == Path(i).resolve():
                raise OutputPathError(f"{p}: output would overwrite the input; choose another path")
            # a hard link to the input (cp -l, a deduplicated cache) is the same file under another name: the output
            # would replace what the user reads as the input (refused as a symlink to it is)
            if p.exists() and os.path.samefile(p, i):
                raise OutputPathError(f"{p}: output would overwrite the input ({i}: the same file, a hard link); "
                                      "choose another path")
    if p.is_dir():
        raise OutputPathError(f"{p}: is a directory, expected a file path")
    if p.exists():
        if not p.is_file():  # a device, a FIFO, a socket: the rename would replace it with a file
            raise OutputPathError(f"{p}: exists and is not a regular file; choose a file path")
        _refuse_input_data(p, inputs)  # (an input's data file exists, else the input does not load anyway)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists() and (loop := looping_link(parent)) is not None:  # mkdir said 'File exists'
        raise OutputPathError(f"{p}: {loop} is {LINK_LOOP}")
    if not parent.exists():  # folders to make: one in the way was found when writing, after all the work
        for a in (parent, *parent.parents):
            if os.path.islink(a) and not a.exists():
                raise OutputPathError(f"{p}: {a} is a link to {os.readlink(a)}, which leads to no folder")
            if a.exists():
                if not a.is_dir():
                    raise OutputPathError(f"{p}: {a} is a file, not a folder")
                break
    if parent.exists() and not parent.is_dir():
        raise OutputPathError(f"{p}: parent {parent} is not a directory")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise OutputPathError(f"{p}: directory {parent} is not writable")
    return p


def _refuse_input_data(p: Path, inputs: tuple[str | os.PathLike, ...]) -> None:
    """OutputPathError when ``p`` is an external-data file an input model reads (writing there would replace the
    input's weights); inputs that cannot be read are left to their loader."""
    try:
        target = p.resolve()
    except OSError:
        return
    for i in inputs:
        if not Path(i).is_file():
            continue
        with contextlib.suppress(InputFileError, OSError):
            if target in external_data_files(i):
                raise OutputPathError(f"{p}: is the external-data file of the input {i}; writing there would "
                                      "replace the input's weights; choose another path")


def check_writable(path: str | os.PathLike) -> Path:
    """Fail before any work when ``path`` cannot be created: a directory, a parent that is a file
    (at any level), or a first existing ancestor that is not writable (checked by creating a
    temporary file there)."""
    p = check_output_path(path)
    anc = p.parent if str(p.parent) else Path(".")
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise OutputPathError(f"{p}: {anc} is a file, cannot create a directory under it")
    if not os.access(anc, os.W_OK):
        raise OutputPathError(f"{p}: directory {anc} is not writable")
    try:  # os.access says yes to root even on read-only mounts: try a real (deleted) file
        with tempfile.TemporaryFile(dir=anc):
            pass
    except OSError as e:
        raise OutputPathError(f"{p}: cannot write in {anc} ({e.strerror})") from e
    return p


def check_folder_path(path: str | os.PathLike, what: str = "output folder") -> Path:
    """OutputPathError when ``path`` cannot be (or become) a folder: it, or a folder it would be made in, is a
    file (``-o afile/sub`` failed as an internal NotADirectoryError after other work)."""
    out = Path(path)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise OutputPathError(f"{out}: {'is a file' if p == out else f'{p} is a file'}, not a folder "
                                      f"(the {what})")
            break
        if p.is_symlink():  # a link to nothing (or a loop of links): mkdir failed as an internal FileExistsError
            try:
                target = os.readlink(p)
            except OSError:
                target = "?"
            raise OutputPathError(f"{out}: {'is' if p == out else f'{p} is'} a link to {target}, which leads to no "
                                  f"folder (the {what})")
    else:
        return out
    if p != out and not os.access(p, os.W_OK | os.X_OK):  # mkdir then failed as an internal PermissionError
        raise OutputPathError(f"{out}: {p} is not writable, the folder cannot be made there (the {what})")
    return out


def make_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` made as a folder (with its parents; one already there is fine), or OutputPathError naming it and why
    not: a place the file system refuses (a read-only or virtual one such as ``/proc``, no permission) was an
    'internal error FileNotFoundError' or PermissionError (exit 1) after :func:`check_folder_path` passed it."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        where = f"{e.filename}: " if e.filename and str(e.filename) != str(out) else ""
        raise OutputPathError(f"{out}: cannot make this folder ({where}{e.strerror or e}) (the {what})") from None
    return out


def check_output_dir(path: str | os.PathLike) -> Path:
    """Fail early when ``path`` cannot become a new output folder: it must be absent or an empty folder
    in a writable parent (folders are written complete or not at all, never merged into)."""
    out = Path(path)
    refuse_link_to_nothing(out, dangling_ok=True)  # a link to a folder not made yet is where it goes; a loop is not
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out}: exists and is not a directory (-o takes a folder)")
    if out.is_dir() and any(out.iterdir()):
        raise OutputPathError(f"{out}: directory exists and is not empty; choose a new output folder")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise OutputPathError(f"{out}: directory {parent} is not writable")
    return out


def output_folder_target(out: str | os.PathLike) -> Path:
    """Where an output folder given as ``out`` is made, checked (:func:`check_output_dir`, on ``out`` as given, so
    that a link to a folder with files is refused naming the link, then on the target): ``out``, or for a symbolic
    link (to an empty folder or one not made yet) the folder it points to. A staged folder cannot be renamed onto
    the link itself: the command did all its work, then failed on the rename."""
    out = check_output_dir(out)
    return check_output_dir(os.path.realpath(out)) if out.is_symlink() else out


def umask_mode(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Give ``path`` (made by mkstemp/mkdtemp: 0600/0700) the mode a plain open/mkdir would, under the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if folder else 0o666) & ~umask)


def make_staging_dir(out: str | os.PathLike) -> Path:
    """A new hidden folder beside ``out`` to build an output folder in (renamed onto ``out`` when complete),
    with the permissions a plain ``mkdir`` would give it (``mkdtemp`` makes it 0700)."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        scratch.made(stage)  # removed by the program should this process be killed (deploytool.scratch)
        umask_mode(stage, folder=True)
    except OSError as e:
        raise OutputPathError(f"{out}: cannot create a folder in {out.parent} ({e.strerror})") from e
    return stage


def publish_staging_dir(stage: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Rename a finished staging folder onto ``out`` (an empty folder there is replaced)."""
    out = Path(out)
    if out.is_dir():
        out.rmdir()  # empty: check_output_dir refused anything else
    os.replace(stage, out)
    return out


#: an existing file at least this big that a finished output replaces is renamed aside and removed by a
#: detached process (:func:`replace_file`)
DEFERRED_REMOVAL_BYTES = 64 << 20


#: a file renamed aside by :func:`replace_file` (``.NAME.<12 hex>.old``) that has kept that name this long (its
#: ctime: the rename set it) is an orphan, its ``rm`` never ran (the process was killed between the renames, or
#: the detached ``rm`` was): the next replace of ``NAME`` removes it
ORPHAN_AGE_S = 60.0


def _orphans(final: Path) -> list[str]:
    """Files an earlier :func:`replace_file` of ``final`` renamed aside and nobody removed (see
    :data:`ORPHAN_AGE_S`); a younger one may still be another writer's, between its renames."""
    import re
    import stat
    import time

    prefix, out = f".{final.name}.", []
    now = time.time()
    try:
        with os.scandir(final.parent) as entries:
            for e in entries:
                if not (e.name.startswith(prefix) and e.name.endswith(".old")
                        and re.fullmatch(r"[0-9a-f]{12}", e.name[len(prefix):-4])):
                    continue
                st = e.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and now - st.st_ctime > ORPHAN_AGE_S:
                    out.append(e.path)
    except OSError:
        pass
    return out


def _remove_detached(paths: list[str]) -> None:
    """``rm -f`` ``paths`` in a detached process (sh backgrounds rm and exits: rm is nobody's child here, no
    zombie, no wait for it); unlinked here if that cannot start."""
    import subprocess

    if not paths:
        return
    try:
        subprocess.run(["sh", "-c", 'rm -f -- "$@" </dev/null >/dev/null 2>&1 &', "sh", *paths],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       start_new_session=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        for p in paths:
            with contextlib.suppress(OSError):
                os.unlink(p)


def replace_file(new: str | os.PathLike, final: str | os.PathLike) -> None:
    """``os.replace(new, final)``, except that a big regular file already at ``final`` (at least
    :data:`DEFERRED_REMOVAL_BYTES`, one link) is first renamed aside, beside it, and removed by a detached
    ``rm`` once ``new`` has its name, so the caller does not wait for the file system to free it.

    Freeing a big file's blocks is slow where its data is on disk (ext4 mounted with ``discard``, as on this
    project's VMs: 0.2-0.35 s for BERT-base's 436 MB, ~1 s per GB; a file still in the page cache and never
    written out takes ~0.03 s), and ``rename`` over an existing file also makes ext4 start writing the new
    one out (``auto_da_alloc``). A pass run again onto its previous output paid both at its very end
    (``benchmarks/results/overwrite.json``). ``final`` is missing only between the two renames; if the
    second fails, the old file is put back. Anything else (a small file, a link, another platform, no
    ``rm``): a plain ``os.replace``. Files an earlier replace of ``final`` left aside (:data:`ORPHAN_AGE_S`)
    go with it."""
    import secrets
    import stat
    import sys

    final = Path(final)
    try:
        st = os.lstat(final)
    except OSError:
        st = None
    linux = sys.platform.startswith("linux")
    orphans = _orphans(final) if linux else []
    if (st is None or not stat.S_ISREG(st.st_mode) or st.st_size < DEFERRED_REMOVAL_BYTES or st.st_nlink != 1
            or not linux):
        os.replace(new, final)
        _remove_detached(orphans)
        return
    aside = final.with_name(f".{final.name}.{secrets.token_hex(6)}.old")
    try:
        os.rename(final, aside)
    except OSError:
        os.replace(new, final)
        _remove_detached(orphans)
        return
    try:
        os.replace(new, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rename(aside, final)
        raise
    _remove_detached([str(aside), *orphans])


#: the signals held while a temporary file is made and its cleanup armed
_HELD_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGALRM")


def hold_signals():
    """Hold the usual interrupting signals while a temporary file is made (returns what
    :func:`release_signals` needs; None off the main thread, where Python runs no signal handler): a signal that
    arrives meanwhile is recorded and its handler run at the release, inside the caller's cleanup. (A signal mask
    would not do: the kernel hands a process's signal to any thread not blocking it, ONNX Runtime's included, and
    Python then runs the handler in the main thread at once.)"""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    pending: list = []
    old = {}
    for name in _HELD_SIGNALS:
        num = getattr(signal, name, None)
        if num is None:
            continue
        try:
            old[num] = signal.signal(num, lambda n, f: pending.append((n, f)))
        except (ValueError, OSError):
            continue
    return old, pending


def release_signals(held) -> None:
    """Put back the handlers :func:`hold_signals` replaced and deliver what arrived meanwhile."""
    if held is None:
        return
    import signal

    old, pending = held
    for num, handler in old.items():
        signal.signal(num, handler)
    for num, frame in pending:
        handler = old.get(num)
        if callable(handler):
            handler(num, frame)  # default_int_handler: KeyboardInterrupt here, inside the cleanup
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), num)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    p = check_output_path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"{p}: cannot create directory {p.parent} ({e.strerror})") from e
    held = hold_signals()  # a Ctrl-C between mkstemp and the try below would leave the temporary file
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=suffix + ".tmp", dir=p.parent)
        scratch.made(tmp)  # removed by the program should this process be killed (deploytool.scratch)
    except OSError as e:
        release_signals(held)
        raise OutputPathError(f"{p}: cannot write in {p.parent} ({e.strerror})") from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        release_signals(held)  # a signal that came meanwhile is handled here, inside the cleanup
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give the output the usual umask mode
            umask_mode(tmp_path)
        replace_file(tmp_path, p)
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
               data_files: tuple[str | os.PathLike, ...] | None = None,
               keep_exporter_metadata: bool = False) -> Path:
    """Save a ModelProto atomically. Models whose weights exceed :data:`EXTERNAL_DATA_BYTES` go to one
    external-data file beside it (see :func:`staged_proto` for ``external``, ``inputs`` and the exporter
    metadata it leaves out)."""
    with staged_proto(model, path, external=external, inputs=inputs, data_files=data_files,
                      keep_exporter_metadata=keep_exporter_metadata):
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
                 data_files: tuple[str | os.PathLike, ...] | None = None,
                 keep_exporter_metadata: bool = False) -> Iterator[Path]:
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

    The exporters' provenance metadata is removed from ``model`` (in place) before it is written
    (:func:`strip_exporter_metadata`, the rule of the module doc), as from every file deploytool writes; a caller
    that wants the count calls that function first. ``keep_exporter_metadata``: write ``model`` as it is, for a
    file that is a copy of another (``fit``'s chosen candidate, as its plain byte copy keeps it too).
    """
    p = Path(path)
    if not keep_exporter_metadata:
        _strip_for_writing(model, p)
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
        scratch.made(tmp_data_s)
        os.close(fd)
        tmp_data = Path(tmp_data_s)
        try:
            # a fresh name, free again: onnx's save_model refuses a data file that exists (looked for relative to
            # the working folder: an output saved into the folder the command runs in met the reserved file)
            tmp_data.unlink()
            onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=tmp_data.name)
            tmp_data.touch()  # onnx writes no file when no tensor is large enough for external data
            yield tmp
            _relocate(model, tmp_data.name, name)  # the model file names the final data file
            onnx.save_model(model, str(tmp))  # small: the weights are in the data file
            _publish_data_file(tmp_data, p.parent / name)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp_data.unlink()
            raise


def _publish_data_file(tmp_data: Path, final: Path) -> None:
    """Give a finished temporary external-data file the permissions of a new file and its final name."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_data, 0o666 & ~umask)
    replace_file(tmp_data, final)


def _relocate(model: onnx.ModelProto, old: str, new: str) -> None:
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    for t in _get_all_tensors(model):
        if uses_external_data(t):
            for entry in t.external_data:
                if entry.key == "location" and entry.value == old:
                    entry.value = new


def save_model(model: ir.Model, path: str | os.PathLike) -> Path:
    """Save an ``onnx_ir`` model atomically, tensor by tensor (:func:`staged_model`)."""
    return save_streamed(model, path)


def _is_serializable_size(model: onnx.ModelProto) -> bool:
    try:
        model.ByteSize()
        return True
    except Exception:
        return False


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0][:200] if s else type(e).__name__


# ----------------------------------------------------------------------------------------- streaming

# initializers up to this size stay inside the parsed graph skeleton (shapes, small constants)
INLINE_BYTES = 1024
# a mapped file drops the pages it handed out once more than this was handed out since the last drop
MAP_BUDGET_BYTES = 32 * 1024 * 1024
# external-data tensors start at multiples of this (ORT maps page-aligned external data)
DATA_ALIGN = 4096
# computed tensor bytes go to the file in write() calls of at most this size. One write of a whole tensor
# (MBs) makes the kernel find large page-cache folios for it, and when free memory is not at hand (on this
# project's VMs, a few seconds after it was freed) that took 0.35-0.4 s instead of ~0.08 s for BERT-base
# reorder's 437 MB; slices of 64 KiB, the size cp's in-kernel copy moves, took ~0.08 s either way
# (measured alternating, 4 s apart: reorder 0.78 s in 64 KiB slices, 1.11-1.17 s in whole tensors)
WRITE_CHUNK = 64 * 1024


class MapBudget:
    """The bytes the maps of one model may hand out before all of them drop their pages (one budget for
    a model's file and all its external-data files: a model stored as one file per tensor must not keep
    a budget's worth of pages per file).

    It holds its maps weakly: a map is unmapped as soon as nothing else uses it. (A strong list made each
    map and its budget a reference cycle, so every map, e.g. :func:`external_data_files`' one, stayed
    until a garbage collection, and with it the pages of the file, even deleted: a benchmark's parent
    process pinned every output it had sized, and the passes it ran next slowed round by round.)"""

    def __init__(self, limit: int = MAP_BUDGET_BYTES) -> None:
        import weakref

        self.limit = limit
        self.handed = 0
        self.files: weakref.WeakSet[MappedFile] = weakref.WeakSet()

    def add(self, length: int) -> None:
        self.handed += length
        if self.handed > self.limit:
            for f in list(self.files):
                f.drop()
            self.handed = length


class MappedFile:
    """One read-only memory map of a file, shared by the tensors stored in it.

    The input is never written: the map is ``ACCESS_READ``. :meth:`drop` takes the pages read so far
    out of this process's resident set (the page cache keeps them; arrays over the map stay valid and
    fault pages back in when read again); it happens by itself once more than ``budget`` bytes were
    handed out since the last drop by the maps sharing its :class:`MapBudget`.
    """

    def __init__(self, path: Path, budget: MapBudget | None = None) -> None:
        import mmap

        self.path = Path(path)
        self.budget = budget if budget is not None else MapBudget()
        self.budget.files.add(self)
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self.size = size

    def view(self, offset: int, length: int, *, count: bool = True):
        """A zero-copy memoryview of ``length`` bytes at ``offset`` (``count``: it is about to be read)."""
        if offset < 0 or offset + length > self.size:
            raise InputFileError(f"{self.path}: tensor data at {offset}+{length} lies beyond the end of the file "
                                 f"({self.size} bytes); the file is truncated")
        if count:
            self.handed(length)
        return memoryview(self.map)[offset:offset + length] if length else memoryview(b"")

    def handed(self, length: int) -> None:
        """``length`` more bytes are about to be read: drop what was read before once over budget."""
        self.budget.add(length)

    def drop(self) -> None:
        import mmap

        if self.map is not None and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError, ValueError):
                self.map.madvise(mmap.MADV_DONTNEED)


def drop_pages(arr) -> None:
    """Take the pages of ``arr`` out of this process's resident set when it is a view of a read-only file
    map (:class:`MappedFile`; the page cache keeps them, reading faults them back in); anything else is
    left alone (never anonymous memory: that would lose data)."""
    import mmap

    import numpy as np

    base = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if not (isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    m = base.obj
    start = np.frombuffer(m, dtype=np.uint8, count=1).ctypes.data if len(m) else 0
    lo = arr.ctypes.data - start
    hi = lo + arr.nbytes
    page = mmap.PAGESIZE
    lo, hi = lo - lo % page, min(len(m), hi)
    if 0 <= lo < hi:
        with contextlib.suppress(OSError, ValueError):
            m.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def row_chunks(arr, rows: int):
    """(first row, rows ``[i, i + rows)`` of ``arr``) in turn; a chunk read from a file map is dropped from
    memory once the caller moves on (:func:`drop_pages`)."""
    for i in range(0, arr.shape[0], rows):
        part = arr[i:i + rows]
        yield i, part
        drop_pages(part)


class MappedTensor(ir.Tensor):
    """An ``onnx_ir`` tensor whose array is a read-only view of a :class:`MappedFile` (no copy; pages are
    read when used). To everything else it is an ordinary in-memory tensor (``ir.serde`` serializes its
    bytes); :func:`staged_model` writes it straight from the map."""

    __slots__ = ("mapped", "offset", "length")

    def __init__(self, mapped: MappedFile, offset: int, length: int, dtype: ir.DataType, shape: ir.Shape,
                 name: str | None = None) -> None:
        import numpy as np

        dims = tuple(int(d) for d in shape)
        count = int(np.prod(dims)) if dims else 1
        if dtype.bitwidth < 8 or dtype == ir.DataType.STRING:
            raise _NotMappable
        want = count * dtype.itemsize
        if length != want:
            raise InputFileError(f"{mapped.path}: tensor {name!r} has {length} bytes of data, its shape "
                                 f"{list(dims)} and type {dtype.name} need {want}")
        buf = mapped.view(offset, length, count=False)
        arr = np.frombuffer(buf, dtype=np.dtype(dtype.numpy()).newbyteorder("<"), count=count).reshape(dims)
        super().__init__(arr, dtype=dtype, name=name)
        self.mapped = mapped
        self.offset = offset
        self.length = length

    def numpy(self):
        self.mapped.handed(self.length)
        return super().numpy()

    def tobytes(self) -> bytes:
        self.mapped.handed(self.length)
        return super().tobytes()


class _NotMappable(Exception):
    """A tensor type a plain view cannot hold (sub-byte packed, strings): it is read into memory."""


def _unpack_sub_byte(data: bytes, dtype: ir.DataType, shape: ir.Shape):
    import numpy as np

    from onnx_ir import _type_casting

    raw = np.frombuffer(data, dtype=np.uint8)
    dims = shape.numpy()
    if dtype.bitwidth == 4:
        return _type_casting.unpack_4bitx2(raw, dims).view(dtype.numpy())
    return _type_casting.unpack_2bitx4(raw, dims).view(dtype.numpy())


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf, start: int, end: int):
    """(field number, wire type, field start, value start, value end) of each field in buf[start:end]."""
    pos = start
    while pos < end:
        fstart = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, vend = _varint(buf, pos, end)
        elif wire == 1:
            vend = pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            vend = pos + n
        elif wire == 5:
            vend = pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if vend > end or number == 0:
            raise ValueError("truncated or corrupt message")
        yield number, wire, fstart, pos, vend
        pos = vend


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(number: int, payload_len: int) -> bytes:
    return _encode_varint((number << 3) | 2) + _encode_varint(payload_len)


# ModelProto.graph, GraphProto.initializer, TensorProto.raw_data (onnx.proto field numbers)
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9


class _FileBytes:
    """Byte access to a file by ``pread`` of small blocks: the scan reads a few bytes per tensor, and through
    the map each of those reads would map a whole page-cache folio (up to MBs) into this process."""

    BLOCK = 1 << 16

    def __init__(self, path: Path, size: int) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.size = size
        self._blocks: dict[int, bytes] = {}

    def close(self) -> None:
        self._f.close()

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop = key.start or 0, min(key.stop, self.size)
            return os.pread(self._f.fileno(), max(0, stop - start), start)
        b = key // self.BLOCK
        block = self._blocks.get(b)
        if block is None:
            if len(self._blocks) > 64:
                self._blocks.clear()
            block = self._blocks[b] = os.pread(self._f.fileno(), self.BLOCK, b * self.BLOCK)
        return block[key - b * self.BLOCK]


def _scan_skeleton(p: Path, mapped: MappedFile) -> tuple[onnx.ModelProto, dict[str, tuple[int, int]]]:
    """Parse the file at ``p`` without its big ``raw_data``: the ModelProto (each big initializer with no
    data) and, per such initializer name, (offset, length) of its raw bytes in the file."""
    if mapped.size == 0:
        raise ValueError("empty file")
    buf = _FileBytes(p, mapped.size)
    try:
        return _scan(buf, mapped.size)
    finally:
        buf.close()


def _scan(buf, size: int) -> tuple[onnx.ModelProto, dict[str, tuple[int, int]]]:
    model_parts: list[bytes] = []
    graph_span = None
    for number, wire, fstart, vs, ve in _fields(buf, 0, size):
        if number == _MODEL_GRAPH and wire == 2:
            if graph_span is not None:  # a repeated graph field would merge; rare enough to parse fully
                raise _NotStreamable
            graph_span = (vs, ve)
        else:
            model_parts.append(buf[fstart:ve])
    spans: dict[str, tuple[int, int]] = {}
    graph_parts: list[bytes] = []
    if graph_span is not None:
        for number, wire, fstart, vs, ve in _fields(buf, *graph_span):
            if number != _GRAPH_INITIALIZER or wire != 2 or ve - vs <= INLINE_BYTES:
                graph_parts.append(buf[fstart:ve])
                continue
            raw = None
            tensor_parts = []
            for tn, tw, tfs, tvs, tve in _fields(buf, vs, ve):
                if tn == _TENSOR_RAW_DATA and tw == 2:
                    if raw is not None:
                        raise _NotStreamable
                    raw = (tvs, tve)
                else:
                    tensor_parts.append(buf[tfs:tve])
            if raw is None or raw[1] - raw[0] <= INLINE_BYTES:
                graph_parts.append(buf[fstart:ve])
                continue
            header = b"".join(tensor_parts)
            t = onnx.TensorProto.FromString(header)
            if t.name in spans or t.external_data:
                raise _NotStreamable
            spans[t.name] = (raw[0], raw[1] - raw[0])
            graph_parts.append(_len_field(_GRAPH_INITIALIZER, len(header)) + header)
    graph = b"".join(graph_parts)
    model_parts.append(_len_field(_MODEL_GRAPH, len(graph)) + graph)
    return onnx.ModelProto.FromString(b"".join(model_parts)), spans


class _NotStreamable(Exception):
    """A valid but unusual layout (a repeated message field that protobuf would merge): parse normally."""


def _map_initializers(model: ir.Model, p: Path, spans: dict[str, tuple[int, int]], mapped: MappedFile,
                      maps: dict[Path, MappedFile]) -> None:
    """Give every initializer its tensor over a memory map: ``spans`` (raw bytes inside ``p`` itself) and
    every external-data reference (a map per data file, in ``maps``). Types a view cannot hold
    (sub-byte, strings) are read into memory."""
    base = p.parent
    for name, v in model.graph.initializers.items():
        t = v.const_value
        if name in spans:
            offset, length = spans[name]
            m = mapped
        elif isinstance(t, ir.ExternalTensor):
            loc = Path(t.location)
            if loc.is_absolute() or ".." in loc.parts:
                raise InputFileError(f"{p}: external data location {t.location!r} lies outside the model's folder")
            f = (base / loc).resolve()
            if not f.is_file():
                raise InputFileError(_no_data_file(p, t.location, f))
            if f not in maps:
                maps[f] = MappedFile(f, mapped.budget)
            m, offset = maps[f], t.offset or 0
            length = t.length if t.length is not None else t.nbytes
        else:
            continue
        v.const_value = _mapped(m, offset, length, t.dtype, t.shape, name)


def _mapped(m: MappedFile, offset: int, length: int, dtype: ir.DataType, shape: ir.Shape, name: str, *,
            lazy: bool = False):
    """A :class:`MappedTensor`; a sub-byte type (INT2, INT4, ...) as an ``ir.PackedTensor`` over the map (its
    packed bytes where they lie: unpacked only when someone asks for its values, so a speed-packed BERT-base
    loads without ~85 MB of unpacked INT2 codes); any other type a view cannot hold read into memory
    (``lazy``: a lazy tensor that reads it when asked)."""
    try:
        return MappedTensor(m, offset, length, dtype, shape, name=name)
    except _NotMappable:
        if dtype == ir.DataType.STRING:
            raise InputFileError(f"{m.path}: string tensor {name!r} with raw data is not supported") from None
        if dtype.bitwidth in (2, 4):
            import numpy as np

            packed = np.frombuffer(m.view(offset, length, count=False), dtype=np.uint8)  # not read yet
            try:
                return ir.PackedTensor(packed, dtype, shape=shape, name=name)
            except (TypeError, ValueError):  # a length that does not match the shape: read as before (it says)
                pass

        def read() -> ir.Tensor:
            return ir.Tensor(_unpack_sub_byte(bytes(m.view(offset, length)), dtype, shape), dtype=dtype, name=name)

        return ir.LazyTensor(read, dtype=dtype, shape=shape, name=name) if lazy else read()


def _load_attribute_data(proto: onnx.ModelProto, p: Path) -> None:
    """Read into memory the external data of tensors in node attributes (Constant nodes: small; the IR
    keeps no map for them)."""
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    def graphs(g):
        yield g
        for node in g.node:
            for a in node.attribute:
                if a.HasField("g"):
                    yield from graphs(a.g)
                for sub in a.graphs:
                    yield from graphs(sub)

    for g in graphs(proto.graph):
        for node in g.node:
            for a in node.attribute:
                for t in ([a.t] if a.HasField("t") else []) + list(a.tensors):
                    if uses_external_data(t):
                        load_external_data_for_tensor(t, str(p.parent))
                        t.data_location = onnx.TensorProto.DEFAULT
                        del t.external_data[:]


def load_model_mapped(path: str | os.PathLike, *, data_files: list[Path] | None = None,
                      rewrite=None) -> ir.Model:
    """:func:`load_model` without reading the weights: every big initializer is a :class:`MappedTensor`
    over the file itself (self-contained model) or over its external-data file (see the module doc)."""
    p = _check_input(path)
    maps: dict[Path, MappedFile] = {}
    budget = MapBudget()
    key = _data_files_key(p)  # before the read: a file replaced meanwhile is not taken for this one
    try:
        mapped = MappedFile(p, budget)
        try:
            proto, spans = _scan_skeleton(p, mapped)
        except _NotStreamable:
            proto = onnx.load(str(p), load_external_data=False)
            spans = {}
        files = _locations(proto, p.parent)
        _remember_data_files(key, files)
        if data_files is not None:
            data_files.extend(files)
    except InputFileError:
        raise
    except Exception as e:  # truncated or corrupt protobuf
        raise _unreadable(p, e) from e
    if not proto.graph.node and not proto.graph.input:
        raise InputFileError(f"{p}: not an ONNX model (no graph inside)")
    _load_attribute_data(proto, p)
    if rewrite is not None:
        rewrite(proto)
    _check_graph_order(proto, p)
    _check_references(proto, p)
    _check_tensors(proto, p, spans)
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as e:
        raise InputFileError(f"{path}: ONNX model cannot be read into the IR ({_first_line(e)})") from e
    if spans and not files:
        model.meta[INPUT_SKELETON] = _as_skeleton(proto, spans)
    del proto
    _map_initializers(model, p, spans, mapped, maps)
    return model


#: ``model.meta`` key of :func:`load_model_mapped`'s models read from one self-contained file: the file's own
#: graph as scanned, in :func:`skeleton_proto`'s form (each big initializer an external placeholder with its
#: length). It is the input as it was read, whatever a pass does to the model later: the pass runner takes it
#: instead of serializing the model once more before the pass (BERT-base: ~0.03 s of every pass)
INPUT_SKELETON = "deploytool.input_skeleton"


def _as_skeleton(proto: onnx.ModelProto, spans: dict[str, tuple[int, int]]) -> onnx.ModelProto:
    """A copy of the scanned ``proto`` (the IR shares its small tensors; they are left alone) whose
    initializers in ``spans`` (raw bytes left in the file) are placeholders of their length, as
    :func:`skeleton_proto` writes them."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for i, t in enumerate(t for t in out.graph.initializer if t.name in spans):
        refer_to_data(t, f"deploytool-placeholder-{i + 1}", 0, spans[t.name][1])
    return out


def mapped_files(model: ir.Model) -> list[MappedFile]:
    """The memory maps ``model``'s initializers read from (each once)."""
    out: dict[int, MappedFile] = {}
    for v in model.graph.initializers.values():
        t = v.const_value
        if isinstance(t, MappedTensor):
            out.setdefault(id(t.mapped), t.mapped)
    return list(out.values())


def _tensor_buffer(t):
    """The little-endian bytes of tensor ``t`` as a buffer (computing a lazy tensor once, copying a
    numpy-backed one only when it is not contiguous)."""
    import numpy as np

    if isinstance(t, MappedTensor):
        return t.mapped.view(t.offset, t.length)
    if t.dtype in (ir.DataType.INT2, ir.DataType.UINT2) and type(t) is ir.Tensor:
        arr = t.numpy()
        if isinstance(arr, np.ndarray) and arr.dtype.itemsize == 1:
            return pack_2bit_bytes(arr)
    if t.dtype.bitwidth < 8 or t.dtype == ir.DataType.STRING:
        return t.tobytes()
    arr = t.numpy()
    if not isinstance(arr, np.ndarray):
        return t.tobytes()
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    arr = np.ascontiguousarray(arr)
    return arr.reshape(-1).view(np.uint8)


def pack_2bit_bytes(arr):
    """The bytes ``ir.Tensor.tobytes`` gives for an INT2/UINT2 tensor held unpacked, one value a byte: each
    value's two low bits, four values a byte, the first in the lowest bits, zero padding. Computed on four
    values at a time as one little-endian uint32 word ``u`` (bytes b0..b3, two bits each after the mask): one
    multiplication by 2^24 + 2^18 + 2^12 + 2^6 puts ``b0 | b1 << 2 | b2 << 4 | b3 << 6`` in the word's top
    byte (b_k lands at bit 8k + 24 - 6k = 24 + 2k; every other shifted copy lands below bit 24 on bits of its
    own, or above bit 31 and is cut off: no carry reaches the top byte), which is then taken as it lies.
    Three passes over the codes instead of eight (~2.5x faster than the shift-and-or form; ~3x faster than
    onnx_ir's)."""
    import sys

    import numpy as np

    c = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    pad = (-c.size) % 4
    if pad:
        c = np.concatenate([c, np.zeros(pad, np.uint8)])
    u = np.bitwise_and(c.view("<u4"), np.uint32(0x03030303))  # native byte order from here on
    np.multiply(u, np.uint32(0x01041040), out=u)  # wraps modulo 2^32, as the copies above bit 31 must
    if sys.byteorder == "little":
        return u.view(np.uint8)[3::4].copy()
    return (u >> np.uint32(24)).astype(np.uint8)


def _placeholders(model: ir.Model, lazy: bool = False) -> dict[str, tuple[ir.Value, object]]:
    """Swap every initializer over :data:`INLINE_BYTES` (``lazy``: and every lazy tensor, whatever its size)
    for an external placeholder (shape and type, no data); returns name -> (value, tensor) to write and put
    back."""
    held: dict[str, tuple[ir.Value, object]] = {}
    for name, v in model.graph.initializers.items():
        t = v.const_value
        if t is None or isinstance(t, ir.StringTensor):
            continue
        if t.nbytes <= INLINE_BYTES and not (lazy and isinstance(t, ir.LazyTensor)):
            continue
        held[name] = (v, t)
        v.const_value = ir.ExternalTensor(f"deploytool-placeholder-{len(held)}", 0, t.nbytes, t.dtype,
                                          shape=t.shape, name=name)
    return held


def skeleton_proto(model: ir.Model, *, lazy: bool = False) -> tuple[onnx.ModelProto, dict[str, object]]:
    """``model`` serialized without its big tensors' data (each an external placeholder) and name ->
    tensor for those. ``model`` is left as it was (the tensors are put back). ``lazy``: a lazy tensor is
    held out too, whatever its size (serializing a small one inline would compute it, and whatever it
    shares its computation with, here and now)."""
    held = _placeholders(model, lazy)
    try:
        proto = ir.serde.serialize_model(model)
    finally:
        for v, t in held.values():
            v.const_value = t
    _restore_unnamed_outputs(model.graph, proto.graph)
    _drop_initializer_value_info(proto.graph)
    return proto, {name: t for name, (_, t) in held.items()}


def serialize_model(model: ir.Model) -> onnx.ModelProto:
    """``ir.serde.serialize_model`` with each node's unnamed trailing outputs kept (see
    :func:`_restore_unnamed_outputs`): what every in-memory serialization of a pass's model goes through."""
    proto = ir.serde.serialize_model(model)
    _restore_unnamed_outputs(model.graph, proto.graph)
    _drop_initializer_value_info(proto.graph)
    return proto


def _drop_initializer_value_info(proto: onnx.GraphProto) -> None:
    """Remove the ``value_info`` entries that only restate an initializer's own type and dims: the serializer
    writes one for every initializer with a shape (~45 bytes each; a prune of two heads of a tiny model wrote
    a bigger file than it read). An entry that says anything else is kept."""
    inits = {t.name: t for t in proto.initializer}
    if not inits or not proto.value_info:
        return
    keep = []
    for vi in proto.value_info:
        t = inits.get(vi.name)
        tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        same = (t is not None and tt is not None and tt.elem_type == t.data_type and not vi.doc_string
                and not vi.metadata_props and tt.HasField("shape")
                and [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim] == list(t.dims))
        if not same:
            keep.append(vi)
    if len(keep) != len(proto.value_info):
        del proto.value_info[:]
        proto.value_info.extend(keep)


def _restore_unnamed_outputs(graph: ir.Graph, proto: onnx.GraphProto) -> None:
    """Give each node of ``proto`` (``graph`` serialized, nodes in the same order) the outputs ``graph``'s node
    has: the serializer drops trailing unnamed outputs (optional in ONNX), and ONNX Runtime's shape inference of
    some contrib ops indexes them whether or not they are named ("output index 1 is out of range; node has 1
    outputs" for an EmbedLayerNormalization written ``["emb", ""]``). A node keeps the outputs it was read with."""
    if len(proto.node) != len(graph):
        return  # not this graph's serialization (nothing to match node by node)
    for node, np_ in zip(graph, proto.node):
        if len(np_.output) < len(node.outputs) and all(not o.name for o in node.outputs[len(np_.output):]):
            np_.output.extend([""] * (len(node.outputs) - len(np_.output)))


def refer_to_data(t: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    """Point initializer ``t`` at ``length`` bytes at ``offset`` of the external-data file ``location`` (its
    previous external-data entries replaced; its inline data, if any, is the caller's to clear)."""
    del t.external_data[:]
    t.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        e = t.external_data.add()
        e.key, e.value = key, value


def _strip_external(t: onnx.TensorProto) -> onnx.TensorProto:
    h = onnx.TensorProto()
    h.CopyFrom(t)
    h.ClearField("external_data")
    h.ClearField("data_location")
    return h


def _write_self_contained(f, proto: onnx.ModelProto, tensors: dict[str, object], after_each) -> dict[str, int]:
    """Write ``proto`` with each placeholder's data (``tensors``) as raw_data, as protobuf wire format,
    one tensor at a time. Returns name -> offset of its raw bytes in the file."""
    head = onnx.ModelProto()
    head.CopyFrom(proto)
    head.ClearField("graph")
    graph = onnx.GraphProto()
    graph.CopyFrom(proto.graph)
    del graph.initializer[:]
    graph_bytes = graph.SerializeToString()
    entries = []  # (header bytes, name or None, payload length)
    for t in proto.graph.initializer:
        if t.name in tensors:
            hb = _strip_external(t).SerializeToString()
            n = tensors[t.name].nbytes
            entries.append((hb, t.name, len(hb) + len(_len_field(_TENSOR_RAW_DATA, n)) + n))
        else:
            hb = t.SerializeToString()
            entries.append((hb, None, len(hb)))
    graph_len = len(graph_bytes) + sum(len(_len_field(_GRAPH_INITIALIZER, n)) + n for _, _, n in entries)
    f.write(head.SerializeToString())
    f.write(_len_field(_MODEL_GRAPH, graph_len))
    f.write(graph_bytes)
    offsets: dict[str, int] = {}
    for hb, name, n in entries:
        f.write(_len_field(_GRAPH_INITIALIZER, n))
        f.write(hb)
        if name is None:
            continue
        t = tensors[name]
        f.write(_len_field(_TENSOR_RAW_DATA, t.nbytes))
        offsets[name] = f.tell()
        _write_data(f, t, name)
        after_each(name)
    return offsets


def _copy_mapped(f, t: MappedTensor) -> bool:
    """Copy a mapped tensor's bytes file to file in the kernel (``os.copy_file_range``: no page of it
    enters this process); False where that is not possible (then it is written from the map)."""
    if not hasattr(os, "copy_file_range"):
        return False
    out = f.fileno()
    start = os.lseek(out, 0, os.SEEK_CUR)
    try:
        with open(t.mapped.path, "rb") as src:
            done = 0
            while done < t.length:
                n = os.copy_file_range(src.fileno(), out, t.length - done, t.offset + done)
                if n <= 0:
                    raise OSError("copy_file_range copied nothing")
                done += n
        return True
    except OSError:
        os.lseek(out, start, os.SEEK_SET)
        os.ftruncate(out, start)
        return False


def _write_data(f, t, name: str) -> None:
    if isinstance(t, MappedTensor) and _copy_mapped(f, t):
        return
    buf = memoryview(_tensor_buffer(t)).cast("B")
    written = 0
    while written < len(buf):  # a slice at a time (WRITE_CHUNK); a write may also take less than asked
        n = f.write(buf[written:written + WRITE_CHUNK])
        if not n:
            raise OSError(f"tensor {name!r}: the write stopped after {written} bytes")
        written += n
    want = t.nbytes
    if written != want:
        raise ValueError(f"tensor {name!r}: {written} bytes of data for a shape that needs {want}")


def _write_data_file(f, proto: onnx.ModelProto, tensors: dict[str, object], location: str, after_each) -> dict[str, int]:
    """Write each placeholder's data into one data file (4 KiB-aligned) and point ``proto`` at it."""
    offsets: dict[str, int] = {}
    for t in proto.graph.initializer:
        if t.name not in tensors:
            continue
        pos = f.tell()
        pad = (-pos) % DATA_ALIGN
        if pad:
            f.write(b"\0" * pad)
            pos += pad
        tensor = tensors[t.name]
        _write_data(f, tensor, t.name)
        after_each(t.name)
        offsets[t.name] = pos
        refer_to_data(t, location, pos, tensor.nbytes)
    return offsets


def write_external(proto: onnx.ModelProto, tensors: dict[str, object], path: str | os.PathLike, after_each=None) -> None:
    """Write ``tensors`` (name -> tensor of ``proto``'s initializers of those names, e.g. :func:`skeleton_proto`'s)
    into the data file ``path`` (4 KiB aligned, so ONNX Runtime maps it), one at a time, and point ``proto``'s
    initializers at it (``location`` is the file's name: ``proto`` is to be saved beside it). ``after_each(name)``
    runs once each tensor is written."""
    p = Path(path)
    with open(p, "wb", buffering=0) as f:
        _write_data_file(f, proto, tensors, p.name, after_each or (lambda name: None))


def _relocate_proto(proto: onnx.ModelProto, new: str) -> None:
    for t in proto.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = new


@dataclasses.dataclass
class Staged:
    """What :func:`staged_model` yields: the temporary model file, the model's skeleton proto (big tensors
    as external references: to the data file, or for a self-contained file to the byte ranges inside
    ``path`` itself, see :meth:`check`), whether the weights went to a data file, and the bytes written."""

    path: Path
    proto: onnx.ModelProto
    external: bool
    offsets: dict[str, int]
    nbytes: int = 0
    metadata_dropped: int = 0  # bytes of exporter provenance not written (strip_exporter_metadata)

    def check(self, full_check: bool = False) -> None:
        """``onnx.checker`` on the staged model without reading its weights into memory: a data-file
        model is checked by path; a self-contained one through a small skeleton file beside it whose
        tensors refer to their bytes inside the staged file (protobuf's own layout, so checked alike)."""
        if self.external:
            onnx.checker.check_model(str(self.path), full_check=full_check)
            return
        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        for t in proto.graph.initializer:
            if t.name in self.offsets:
                refer_to_data(t, self.path.name, self.offsets[t.name], _nbytes(t))
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".check.onnx", dir=self.path.parent)
        scratch.made(name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(proto.SerializeToString())
            onnx.checker.check_model(name, full_check=full_check)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)


def _nbytes(t: onnx.TensorProto) -> int:
    for e in t.external_data:
        if e.key == "length":
            return int(e.value)
    return 0


@contextlib.contextmanager
def staged_model(model: ir.Model, path: str | os.PathLike, *, external: bool | None = None,
                 inputs: tuple[str | os.PathLike, ...] = (), data_files: tuple[str | os.PathLike, ...] | None = None,
                 finalize=None, remap: bool = False) -> Iterator[Staged]:
    """Write ``model`` tensor by tensor to a temporary path beside ``path`` and yield a :class:`Staged`
    (that path and the model's skeleton proto); it becomes ``path``
    only if the block succeeds (:func:`staged_proto`'s rules for ``external``, ``inputs`` and
    ``data_files``, and for the data file's name; on failure neither file is left behind).

    Each tensor is computed (a lazy one once), written and dropped before the next one, and the input
    maps drop the pages it read. ``finalize``: a rewrite of the skeleton proto's nodes before writing.
    ``remap``: once written, each big initializer of ``model`` reads from the output file instead
    (its in-memory data is freed as soon as it is written; used by the pass runner, whose model is
    its own).
    """
    p = Path(path)
    proto, tensors = skeleton_proto(model)
    dropped = _strip_for_writing(proto, p)
    if finalize is not None:
        finalize(proto)
    total = sum(t.nbytes for t in tensors.values())
    if external is None:
        external = total > EXTERNAL_DATA_BYTES or proto.ByteSize() + total > 1_900_000_000
    maps = mapped_files(model)
    values = {name: v for name, v in model.graph.initializers.items() if name in tensors}
    final_data: Path | None = None

    def after_each(name: str) -> None:
        for m in maps:
            m.drop()
        if remap and not isinstance(tensors[name], MappedTensor):
            # free the computed array now; the value reads it back from the output once that exists
            t = tensors[name]
            values[name].const_value = ir.ExternalTensor("", 0, t.nbytes, t.dtype, shape=t.shape, name=name)
            tensors[name] = values[name].const_value

    with atomic_path(p) as tmp:
        if not external:
            # unbuffered: kernel copies move the same position. "r+b", not "wb": the file is the empty one
            # mkstemp made, and truncating it makes ext4 write the whole file out to disk on close
            # (auto_da_alloc: ~0.25 s for BERT-base's 435 MB; "r+b" leaves it to the page cache as cp does)
            with open(tmp, "r+b", buffering=0) as f:
                offsets = _write_self_contained(f, proto, tensors, after_each)
            for t in proto.graph.initializer:  # the placeholders' lengths, for Staged.check
                if t.name in offsets:
                    for e in t.external_data:
                        if e.key == "length":
                            e.value = str(tensors[t.name].nbytes)
            yield Staged(tmp, proto, False, offsets, tmp.stat().st_size, dropped)
            target = p
        else:
            name = data_file_name(p, tuple(inputs), data_files)
            fd, tmp_data_s = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=p.parent)
            scratch.made(tmp_data_s)
            os.close(fd)
            tmp_data = Path(tmp_data_s)
            try:
                with open(tmp_data, "r+b", buffering=0) as f:  # mkstemp's empty file: see above
                    offsets = _write_data_file(f, proto, tensors, tmp_data.name, after_each)
                tmp.write_bytes(proto.SerializeToString())
                yield Staged(tmp, proto, True, offsets, tmp.stat().st_size + tmp_data.stat().st_size, dropped)
                _relocate_proto(proto, name)  # the model file names the final data file
                tmp.write_bytes(proto.SerializeToString())  # small: the weights are in the data file
                _publish_data_file(tmp_data, p.parent / name)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp_data.unlink()
                raise
            final_data = p.parent / name
            target = final_data
    if remap:
        out_map = MappedFile(target.resolve())
        for name, offset in offsets.items():
            t = tensors[name]
            values[name].const_value = _mapped(out_map, offset, t.nbytes, t.dtype, t.shape, name, lazy=True)


def save_streamed(model: ir.Model, path: str | os.PathLike, *, external: bool | None = None,
                  inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Save ``model`` atomically, tensor by tensor (:func:`staged_model`)."""
    with staged_model(model, path, external=external, inputs=inputs):
        pass
    return Path(path)


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link to ``src`` (a copy across file systems); whatever was at ``dst`` is unlinked
    first, never written into (it may be a link to another file)."""
    import shutil

    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def publish_model(src: str | os.PathLike, dst: str | os.PathLike) -> list[Path]:
    """Give the model at ``src`` a second name, ``dst``, with every file it needs beside it; returns those files,
    the model first.

    A self-contained model: ``dst`` is a hard link to ``src`` (a copy across file systems). A model with external
    data: each data file its tensors name (their ``location``, not a guess from file names) is linked beside
    ``dst`` as ``<dst name>.data`` (``<dst name>.<k>.data`` from the second on: two models published into one
    folder, each saved as ``model.onnx`` + ``model.onnx.data``, must not share a name), and ``dst`` is written
    anew (small: its weights are in those files), atomically, its tensors naming the published files."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    s, d = Path(src), Path(dst)
    files: list[Path] = []
    proto = load_proto(s, load_external_data=False, data_files=files) if external_data_files(s) else None
    if proto is None:
        _link_or_copy(s, d)
        return [d]
    _refuse_missing_data(s, files)
    names = {f: f"{d.name}.data" if k == 0 else f"{d.name}.{k}.data" for k, f in enumerate(files)}
    for t in _get_all_tensors(proto):
        if uses_external_data(t):
            for entry in t.external_data:
                if entry.key == "location":
                    entry.value = names[(s.parent / entry.value).resolve()]
    d.parent.mkdir(parents=True, exist_ok=True)
    if d.exists() or d.is_symlink():  # an earlier model of that name never meets this one's data (a Ctrl-C here)
        d.unlink()
    for f, name in names.items():  # the data first: the model file never names a file that is not there
        _link_or_copy(f, d.parent / name)
    save_proto(proto, d, external=False)
    return [d, *(d.parent / name for name in names.values())]
