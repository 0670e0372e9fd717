"""An ORT-format model (``.ort``, the FlatBuffers file ``deploytool bundle`` ships as ``model.ort``) as
``verify-arm64`` takes it: a file, or a bundle folder holding ``model.ort``.

What the check needs of the file besides running it:

- whether ONNX Runtime here loads it at all (its FlatBuffers verifier refuses a truncated or damaged file; a
  file of a newer ORT format version is refused by name) and its inputs and outputs as the session sees them;
- its structure, read here without ONNX Runtime: a *skeleton* ``onnx.ModelProto`` (nodes, initializers' names,
  shapes and types without their data, metadata, the session's inputs and outputs), so the same code that
  plans an ``.onnx``'s synthetic inputs (vocabulary from the word table), detects its precision and checks the
  position table reads the ``.ort`` too;
- for a bundle, what its ``manifest.json`` says: the session config entries the app sets (``runtime``
  optimizations are replayed only with ``session.enable_saved_runtime_optimizations=1``) and the ONNX Runtime
  release that wrote the file (an ``.ort`` is made for one release: checked with another, the check would not
  be of what the phone runs). A bare ``.ort`` records only its format version (``InferenceSession.ort_version``).

The FlatBuffers layout read here is ONNX Runtime's ``ort.fbs`` (``onnxruntime/core/flatbuffers/schema``):
root ``InferenceSession {ort_version, model}``, ``Model {.., graph: 7, metadata_props: 9}``, ``Graph
{initializers: 0, nodes: 2}``, ``Node {name: 0, domain: 2, op_type: 5, inputs: 8, outputs: 9, attributes: 10}``,
``Tensor {name: 0, dims: 2, data_type: 3}``, ``Attribute {name: 0, type: 2, f: 3, i: 4, ints: 9}``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

from deploytool.errors import InputFileError

__all__ = ["BUNDLE_MODEL", "ORT_FILE_ID", "OrtInput", "check_written_by", "is_ort_file", "ort_format_version", "read_ort_input",
           "ort_skeleton"]

ORT_FILE_ID = b"ORTM"  # FlatBuffers file identifier, bytes 4..8
BUNDLE_MODEL = "model.ort"
BUNDLE_MANIFEST = "manifest.json"
BUNDLE_KIND = "deploytool.bundle"
#: the session config entry a ``runtime``-style .ort needs to replay its saved optimizations; harmless on a
#: ``fixed`` one (nothing saved to replay): a bare .ort, whose style is not recorded, runs with it
RUNTIME_OPT_ENTRY = ("session.enable_saved_runtime_optimizations", "1")


def is_ort_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like an ORT-format file (FlatBuffers with ONNX Runtime's identifier)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:8] == ORT_FILE_ID and head[:1] != b"\x08"  # an ONNX file starts 0x08


@dataclasses.dataclass(frozen=True)
class OrtInput:
    """One model given to verify-arm64 as ORT format: ``path`` the file run, ``bundle`` the folder it came from
    (None for a bare .ort), ``config_entries`` the session's, ``written_by`` the ONNX Runtime release that wrote
    it (a bundle's manifest; None when not recorded), ``format_version`` the file's own."""

    path: Path
    bundle: Path | None
    format_version: str | None
    config_entries: tuple[tuple[str, str], ...]
    written_by: str | None
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": str(self.path), "bundle": str(self.bundle) if self.bundle else None, "format": "ort",
                "ort_format_version": self.format_version, "written_by_onnxruntime": self.written_by,
                "config_entries": dict(self.config_entries), "bytes": self.bytes, "sha256": self.sha256}


def read_ort_input(given: Path) -> OrtInput | None:
    """``given`` as an ORT-format input: a bundle folder (its ``model.ort``) or an .ort file; None for a file that
    is not ORT format (an .onnx: the caller's own checks). A folder without ``model.ort``, an ``.ort`` that is not
    ORT format, a bundle whose manifest is damaged: InputFileError in one line."""
    bundle = None
    path = given
    if given.is_dir():
        path = given / BUNDLE_MODEL
        if not path.is_file():
            raise InputFileError(f"{given}: is a folder without {BUNDLE_MODEL}, expected an ONNX model, an .ort file "
                                 "or a bundle folder (deploytool bundle -o)")
        bundle = given
    elif not path.is_file():
        return None  # the caller's not-a-file message
    if not is_ort_file(path):
        if bundle is not None or path.suffix.lower() == ".ort":
            raise InputFileError(f"{path}: not an ORT-format file (no FlatBuffers '{ORT_FILE_ID.decode()}' "
                                 "identifier): a damaged or truncated .ort, or another format under that name")
        return None
    entries: dict[str, str] = {}
    written_by = None
    if bundle is not None:
        entries, written_by = _manifest_session(bundle)
    else:
        entries = dict([RUNTIME_OPT_ENTRY])
    data = path.read_bytes()
    return OrtInput(path=path, bundle=bundle, format_version=_format_version(data), config_entries=tuple(
        entries.items()), written_by=written_by, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def _manifest_session(bundle: Path) -> tuple[dict[str, str], str | None]:
    """(session config entries, ONNX Runtime release) from the bundle's manifest; none there: the bare file's."""
    mpath = bundle / BUNDLE_MANIFEST
    if not mpath.exists():
        return dict([RUNTIME_OPT_ENTRY]), None
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputFileError(f"{mpath}: not a readable bundle manifest ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:160]})") from None
    if not isinstance(m, dict) or m.get("kind") != BUNDLE_KIND:
        raise InputFileError(f"{mpath}: not a deploytool bundle manifest (kind {m.get('kind') if isinstance(m, dict) else None!r}, "
                             f"expected {BUNDLE_KIND!r})")
    session = m.get("session") if isinstance(m.get("session"), dict) else {}
    raw = session.get("config_entries", {})
    if not isinstance(raw, dict):
        raise InputFileError(f"{mpath}: session.config_entries is not a mapping")
    ort = m.get("ort") if isinstance(m.get("ort"), dict) else {}
    version = ort.get("onnxruntime")
    return {str(k): str(v) for k, v in raw.items()}, (str(version) if version else None)


# ----------------------------------------------------------------------------- FlatBuffers, read by hand

class _Buf:
    """Just enough of FlatBuffers' wire format: tables through their vtables, strings, vectors. Any offset past
    the end raises struct.error / IndexError (the caller turns that into one line)."""

    def __init__(self, data: bytes) -> None:
        self.b = data

    def u32(self, at: int) -> int:
        return struct.unpack_from("<I", self.b, at)[0]

    def root(self) -> int:
        return self.u32(0)

    def field(self, table: int, i: int) -> int | None:
        """Absolute position of field ``i`` of the table at ``table``, None when absent."""
        vt = table - struct.unpack_from("<i", self.b, table)[0]
        vt_len = struct.unpack_from("<H", self.b, vt)[0]
        if 4 + 2 * i >= vt_len:
            return None
        off = struct.unpack_from("<H", self.b, vt + 4 + 2 * i)[0]
        return table + off if off else None

    def deref(self, at: int) -> int:
        return at + self.u32(at)

    def table(self, table: int, i: int) -> int | None:
        p = self.field(table, i)
        return self.deref(p) if p is not None else None

    def string(self, table: int, i: int) -> str | None:
        p = self.field(table, i)
        if p is None:
            return None
        s = self.deref(p)
        n = self.u32(s)
        if s + 4 + n > len(self.b):
            raise IndexError("string past the end")
        return self.b[s + 4:s + 4 + n].decode("utf-8", "replace")

    def scalar(self, table: int, i: int, fmt: str, default: Any = 0) -> Any:
        p = self.field(table, i)
        return struct.unpack_from("<" + fmt, self.b, p)[0] if p is not None else default

    def vector(self, table: int, i: int) -> tuple[int, int]:
        """(start, length) of a vector field; (0, 0) when absent."""
        p = self.field(table, i)
        if p is None:
            return 0, 0
        v = self.deref(p)
        return v + 4, self.u32(v)

    def tables(self, table: int, i: int) -> list[int]:
        start, n = self.vector(table, i)
        return [self.deref(start + 4 * k) for k in range(n)]

    def strings(self, table: int, i: int) -> list[str]:
        out = []
        for s in self.tables(table, i):
            n = self.u32(s)
            out.append(self.b[s + 4:s + 4 + n].decode("utf-8", "replace"))
        return out

    def scalars(self, table: int, i: int, fmt: str) -> list[Any]:
        start, n = self.vector(table, i)
        return list(struct.unpack_from(f"<{n}{fmt}", self.b, start)) if n else []


def _format_version(data: bytes) -> str | None:
    try:
        return _Buf(data).string(_Buf(data).root(), 0)
    except (struct.error, IndexError):
        return None


def ort_format_version(path: str | os.PathLike) -> str | None:
    """The ORT format version a file records (``InferenceSession.ort_version``: "6" for ONNX Runtime 1.32), None
    when it cannot be read."""
    return _format_version(Path(path).read_bytes())


_ATTR_FLOAT, _ATTR_INT, _ATTR_INTS = 1, 2, 7


def ort_skeleton(path: str | os.PathLike, signature: dict[str, Any]):
    """A skeleton ``onnx.ModelProto`` of the ORT-format file at ``path``: its nodes (name, domain, op type, inputs,
    outputs, int/float attributes), initializers (name, dims, data type, no data) and metadata, with the graph
    inputs and outputs of ``signature`` (:func:`deploytool.runtime.mobile.signature`: ONNX Runtime's session view,
    names, types and shapes). Enough for input planning, precision detection and the position-table check; not
    a model to run. A file that cannot be read this way: InputFileError (call after ONNX Runtime loaded the file,
    whose verifier rejects a damaged buffer first)."""
    import onnx
    from onnx import TensorProto, helper

    p = Path(path)
    buf = _Buf(p.read_bytes())
    try:
        model_t = buf.table(buf.root(), 1)
        graph_t = buf.table(model_t, 7) if model_t is not None else None
        if graph_t is None:
            raise InputFileError(f"{p}: an ORT-format file without a model graph")
        nodes = []
        for n in buf.tables(graph_t, 2):
            attrs = []
            for a in buf.tables(n, 10):
                name, kind = buf.string(a, 0) or "", buf.scalar(a, 2, "i")
                if kind == _ATTR_INT:
                    attrs.append(helper.make_attribute(name, int(buf.scalar(a, 4, "q"))))
                elif kind == _ATTR_FLOAT:
                    attrs.append(helper.make_attribute(name, float(buf.scalar(a, 3, "f"))))
                elif kind == _ATTR_INTS:
                    attrs.append(helper.make_attribute(name, [int(x) for x in buf.scalars(a, 9, "q")]))
            node = onnx.NodeProto(op_type=buf.string(n, 5) or "", name=buf.string(n, 0) or "",
                                  domain=buf.string(n, 2) or "", input=buf.strings(n, 8), output=buf.strings(n, 9))
            node.attribute.extend(attrs)
            nodes.append(node)
        inits = [TensorProto(name=buf.string(t, 0) or "", dims=buf.scalars(t, 2, "q"), data_type=buf.scalar(t, 3, "i"))
                 for t in buf.tables(graph_t, 0)]
        meta = [(buf.string(e, 0) or "", buf.string(e, 1) or "") for e in buf.tables(model_t, 9)]
    except (struct.error, IndexError, ValueError) as e:
        raise InputFileError(f"{p}: a damaged ORT-format file ({type(e).__name__}: {e})") from None

    def value_info(d: dict[str, Any]):
        t = str(d["type"])
        elem = t[len("tensor("):-1].upper() if t.startswith("tensor(") else ""
        if elem not in TensorProto.DataType.keys():
            raise InputFileError(f"{p}: {d['name']} is {t}, not a tensor deploytool can feed")
        shape = [s if isinstance(s, int) else (s or None) for s in d["shape"]]
        return helper.make_tensor_value_info(d["name"], TensorProto.DataType.Value(elem), shape)

    graph = helper.make_graph(nodes, "ort_skeleton", [value_info(d) for d in signature["inputs"]],
                              [value_info(d) for d in signature["outputs"]], initializer=inits)
    model = helper.make_model(graph, producer_name="deploytool.arm64.ort_file")
    for k, v in meta:
        model.metadata_props.add(key=k, value=v)
    return model


def check_written_by(ort: OrtInput, runs: str, where: str) -> None:
    """InputFileError when a bundle's .ort was written by another ONNX Runtime release than the one that ``runs`` it
    (``where``: 'on this host', 'in the ARM64 emulator')."""
    if ort.written_by is not None and runs and ort.written_by != runs:
        raise InputFileError(f"{ort.path}: written by ONNX Runtime {ort.written_by} ({ort.bundle / BUNDLE_MANIFEST if ort.bundle else 'manifest'}"
                          f"), but ONNX Runtime {runs} runs it {where}: the check would not be of the runtime the "
                          f"bundle was made for; make the bundle again with onnxruntime {runs}")
