"""What a model file is, as data: its source model, width, depth, precision and the passes that made it.

Every pass records it in the model's ``metadata_props["deploytool.variant"]`` (JSON, below), so that
the bench JSON, the report and ``fit`` read a variant's width, depth and precision from the file
itself, never from its name. ``width`` and ``depth`` are relative to the source model (the model
before the first deploytool pass, or deploytool's export): after ``slice`` they are its multipliers
as DynaBERT names them (``(0.5, 0.75)``, although 6 layers at depth 0.75 keep 4), after a pruning
pass the share of attention heads per layer and of layers it kept; chained passes multiply.
``precision`` is how the weights are stored (fp32, fp16, int8, ternary, binary).

Format (version 1)::

    {"version": 1, "source": "all-MiniLM-L6-v2", "width": 0.5, "depth": 0.6667,
     "precision": "int8", "chain": ["slice(w=0.5,d=0.75)", "int8"]}

and, only for a model whose weights were trained quantization-aware (``deploytool qat``, recorded by ``export`` from
the folder's ``deploytool.json``; :class:`Trained`), ``"trained": {"method": "qat", "mode": "ternary",
"granularity": "row", "tws": false, "embeddings": true, "act_bits": 8, "width": 1.0, "depth": 1.0}``.

The label of a variant is ``w<width>-d<depth>-<precision>`` (``w0.5-d0.667-int8``), the same in the
report, ``fit`` and recipes.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, Iterable, Mapping

KEY = "deploytool.variant"
VERSION = 1


class Precision(str, enum.Enum):
    """Every precision deploytool names. A variant stores its weights at one of :data:`PRECISIONS`; a
    device profile rates its peak throughput at the compute precisions :data:`COMPUTE_PRECISIONS`."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    TERNARY = "ternary"
    BINARY = "binary"


#: how a variant stores its weights (a pass makes each but fp32)
PRECISIONS = ("fp32", "fp16", "int8", "ternary", "binary")
#: what a device computes in (profiles' ``peak_gops`` keys)
COMPUTE_PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: how much of the model's precision a variant keeps (fit and the report prefer the higher on ties)
PRECISION_RANK = {"fp32": 4, "fp16": 4, "int8": 3, "ternary": 2, "binary": 1}

__all__ = ["KEY", "COMPUTE_PRECISIONS", "PRECISIONS", "PRECISION_RANK", "Precision", "Trained", "Variant",
           "variant_label", "read_variant", "seed_variant", "record_step", "stored_precision", "model_precision"]

# ops that only an int8 (dynamic, QOperator or QDQ) model has
INT8_OPS = frozenset({"DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QLinearMatMul", "QGemm",
                      "QAttention", "DynamicQuantizeLinear", "QuantizeLinear", "ConvInteger", "QLinearConv"})


#: the metadata key of ``deploytool pack``'s record (weight name -> scheme, bits, shape, role)
PACKING_KEY = "deploytool.packing"


def packing_record(meta: Mapping[str, str] | str | None) -> dict[str, dict]:
    """``deploytool pack``'s record: weight name -> its entry (scheme, bits, shape, role), read from a model's
    metadata (a mapping) or the record's own JSON text; empty when there is none or it is not a JSON object.
    The one reader of the record (the finder, inspection, repack, bundle, the input planner and this module)."""
    raw = meta.get(PACKING_KEY) if isinstance(meta, Mapping) else meta
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if _entry_ok(v)} if isinstance(data, dict) else {}


def _entry_ok(v) -> bool:
    """A record entry deploytool can read: an object whose shape, when given, is a list of counts (an entry
    edited by hand into anything else is left out, as if the weight were not recorded)."""
    if not isinstance(v, dict):
        return False
    shape = v.get("shape")
    return shape is None or (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                             for d in shape))


def stored_precision(packing: str | None, op_types: Iterable[str], has_fp16: bool) -> str:
    """How a model stores its weights, from its ``deploytool.packing`` record, its op types and whether
    it holds fp16 tensors: binary or ternary (packed), int8, fp16 or fp32."""
    if packing:
        schemes = {str(v.get("scheme", "")) for v in packing_record(packing).values()}
        return "binary" if any("binary" in s for s in schemes) else "ternary"
    ops = set(op_types)
    if ops & INT8_OPS or "MatMulNBits" in ops:
        return "int8"
    return "fp16" if has_fp16 else "fp32"


def _fmt(x: float) -> str:
    return f"{round(float(x), 3):g}"


def variant_label(width: float, depth: float, precision: str) -> str:
    """``w0.5-d0.75-int8``: the one spelling of a variant's name."""
    return f"w{_fmt(width)}-d{_fmt(depth)}-{precision}"


#: the record a training command writes beside a model folder's weights (``deploytool.train.checkpoint``
#: saves it; :meth:`Trained.from_folder` and export read it)
TRAINED_META_FILE = "deploytool.json"

@dataclasses.dataclass(frozen=True)
class Trained:
    """How the source's weights were trained for low-bit packing: quantization-aware distillation by ``deploytool
    qat`` (TernaryBERT; BinaryBERT with ternary weight splitting), as the trained folder's ``deploytool.json`` says
    (its ``qat`` section). ``export`` records it; every pass keeps it. A slice or a pruned copy keeps it too: its
    weights are still exactly the values the training quantized (each kept row and column of a ternary or binary
    matrix quantizes to itself again, with the same scale), but the network was trained at ``width`` and ``depth``
    only (the variant's when it was exported), which ``pack`` tells apart from the variant it packs."""

    mode: str  # ternary | binary
    granularity: str  # layer | row: one scale per matrix or per output feature
    tws: bool = False  # binary as two planes per weight (BinaryBERT's TWS): pack --weights split-binary
    embeddings: bool = True  # the word embeddings trained quantized, row by row
    act_bits: int = 8  # 8: int8 activations, as the packed runtimes compute them; 0: fp32 activations
    width: float = 1.0
    depth: float = 1.0

    @property
    def weights(self) -> str:
        """The ``pack --weights`` scheme the training is for."""
        return "split-binary" if self.tws else self.mode

    def to_dict(self) -> dict[str, Any]:
        return {"method": "qat", "mode": self.mode, "granularity": self.granularity, "tws": self.tws,
                "embeddings": self.embeddings, "act_bits": self.act_bits, "width": round(self.width, 4),
                "depth": round(self.depth, 4)}

    @classmethod
    def from_dict(cls, obj: Any) -> Trained | None:
        """The record, or None when it is not one (never raises)."""
        if not isinstance(obj, dict) or obj.get("method") != "qat":
            return None
        try:
            t = cls(mode=str(obj["mode"]), granularity=str(obj["granularity"]), tws=obj.get("tws", False) is True,
                    embeddings=obj.get("embeddings", True) is not False, act_bits=int(obj.get("act_bits", 8)),
                    width=float(obj.get("width", 1.0)), depth=float(obj.get("depth", 1.0)))
        except (KeyError, TypeError, ValueError):
            return None
        ok = (t.mode in ("ternary", "binary") and t.granularity in ("layer", "row")
              and not (t.tws and t.mode != "binary") and 0 < t.width <= 1 and 0 < t.depth <= 1)
        return t if ok else None

    @classmethod
    def from_folder(cls, folder) -> Trained | None:
        """The record of a trained model folder (its ``deploytool.json``, the file ``deploytool.train`` writes
        beside the weights), or None: no such file, unreadable, or no ``qat`` section."""
        import os

        try:
            with open(os.path.join(os.fspath(folder), TRAINED_META_FILE), encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return None
        return cls.from_folder_meta(meta)

    @classmethod
    def from_folder_meta(cls, meta: Any) -> Trained | None:
        """The record of a trained folder's ``deploytool.json`` (its parsed JSON): its ``qat`` section (what
        :func:`deploytool.train.qat.train_qat` saves), else None (a fine-tuned or distilled folder, a teacher's
        record nested in another's)."""
        q = meta.get("qat") if isinstance(meta, dict) else None
        if not isinstance(q, dict) or q.get("command", "qat") != "qat":
            return None
        # a folder from before activations were trained quantized has no act_bits: its activations were fp32
        return cls.from_dict({"method": "qat", "mode": q.get("mode"), "granularity": q.get("granularity"),
                              "tws": isinstance(q.get("tws"), dict), "embeddings": q.get("quantize_embeddings", True),
                              "act_bits": q.get("act_bits", 0)})


@dataclasses.dataclass(frozen=True)
class Variant:
    source: str
    width: float = 1.0
    depth: float = 1.0
    precision: str = "fp32"
    chain: tuple[str, ...] = ()
    trained: Trained | None = None  # the weights were trained quantization-aware (absent from the JSON when None)

    @property
    def label(self) -> str:
        return variant_label(self.width, self.depth, self.precision)

    def to_dict(self) -> dict[str, Any]:
        d = {"version": VERSION, "source": self.source, "width": round(self.width, 4),
             "depth": round(self.depth, 4), "precision": self.precision, "chain": list(self.chain),
             "label": self.label}
        if self.trained is not None:
            d["trained"] = self.trained.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, obj: Any) -> Variant | None:
        """The record, or None when it is not a version-1 variant record (never raises)."""
        if not isinstance(obj, dict) or obj.get("version") != VERSION:
            return None
        try:
            width, depth = float(obj["width"]), float(obj["depth"])
            precision = str(obj["precision"])
            chain = tuple(str(s) for s in obj.get("chain", ()))
            source = str(obj.get("source", ""))
        except (KeyError, TypeError, ValueError):
            return None
        if not (0 < width <= 1 and 0 < depth <= 1) or precision not in PRECISIONS:
            return None
        return cls(source=source, width=width, depth=depth, precision=precision, chain=chain,
                   trained=Trained.from_dict(obj.get("trained")))


def read_variant(metadata: Mapping[str, str]) -> Variant | None:
    """The variant recorded in a model's metadata props (a mapping key -> value), or None."""
    raw = metadata.get(KEY)
    if not raw:
        return None
    try:
        return Variant.from_dict(json.loads(raw))
    except ValueError:
        return None


def file_variant(path) -> Variant | None:
    """The variant recorded in an ONNX file (read without its weights), or None."""
    from deploytool.onnx_io import load_proto

    try:
        proto = load_proto(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - unreadable here: the caller's own loading names the problem
        return None
    return read_variant({p.key: p.value for p in proto.metadata_props})


def model_precision(model_path) -> tuple[str, int]:
    """(precision, K) of a model (a path, or a ModelProto already read): ``fp32 | fp16 | int8 | ternary | binary``
    and its longest MatMul reduction dimension K (largest inner dimension of a MatMul/Gemm weight initializer)."""
    from deploytool.onnx_io import load_proto

    m = model_path if hasattr(model_path, "graph") else load_proto(model_path, load_external_data=False)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    k_max = 0
    for n in g.node:
        if n.op_type in ("MatMul", "Gemm", "DynamicQuantizeMatMul", "MatMulInteger") and len(n.input) > 1:
            t = inits.get(n.input[1])
            if t is not None and len(t.dims) == 2:
                trans_b = any(a.name == "transB" and a.i for a in n.attribute)
                k_max = max(k_max, int(t.dims[1] if trans_b else t.dims[0]))
        if n.op_type == "MatMulNBits":
            k_max = max(k_max, *(a.i for a in n.attribute if a.name == "K"), 0)
    meta = {p.key: p.value for p in m.metadata_props}
    for v in packing_record(meta).values():  # packed linear weights keep their [K, N] shape in the record
        shape = v.get("shape")
        if v.get("role") != "embedding" and isinstance(shape, list) and len(shape) == 2:
            k_max = max(k_max, int(shape[0]))
    fp16 = any(t.data_type == 10 for t in g.initializer) or any(
        i.type.tensor_type.elem_type == 10 for i in list(g.input) + list(g.output))
    return stored_precision(meta.get(PACKING_KEY), (n.op_type for n in g.node), fp16), k_max


def seed_variant(metadata: Mapping[str, str], fallback_source: str) -> Variant:
    """The model's record, or a fresh one for a model no deploytool pass has touched: the full
    model at its stored precision, named by the export's ``deploytool.source`` or ``fallback_source``."""
    v = read_variant(metadata)
    if v is not None:
        return v
    source = metadata.get("deploytool.source") or fallback_source
    return Variant(source=str(source))


def record_step(metadata: dict[str, str] | Any, step: str, *, width_factor: float = 1.0,
                depth_factor: float = 1.0, precision: str | None = None, fallback_source: str = "model") -> Variant:
    """Update the record in ``metadata`` (a model's ``metadata_props``) after a pass: width and depth
    scale by the pass's factors, precision is replaced when given, ``step`` joins the chain."""
    v = seed_variant(metadata, fallback_source)
    new = dataclasses.replace(v, width=min(1.0, v.width * width_factor), depth=min(1.0, v.depth * depth_factor),
                              precision=precision or v.precision, chain=v.chain + (step,))
    metadata[KEY] = new.to_json()
    return new
