"""``repack``: a file ``deploytool pack`` wrote, moved to another runtime with the same codes and scales.

``pack`` quantizes an fp32 model; ``repack`` only changes how its packed linear weights are stored and which
kernel reads them, so a QAT model's packed file keeps its accuracy and no fp32 model is needed:

- ``speed``: ``DynamicQuantizeMatMul`` on int8 weights unpacked at session creation (ternary stored as INT2,
  binary as 1 bit);
- ``densest``: the same kernel, ternary stored 5 trits a byte (binary: 1 bit, as ``speed``);
- ``memory``: ``MatMulNBits`` bits=2, whose weights stay 2 bits in memory and in a phone bundle's ``.ort``
  (ONNX Runtime's converter folds the other two runtimes' unpacking into int8 weights, as a session does).

How: each packed weight's int8 codes are read back by ONNX Runtime itself, running the file's own unpacking
nodes (the constant subgraph in front of each ``DynamicQuantizeMatMul``), or from a ``MatMulNBits``' 2-bit
blocks; the scales are the file's. They are written again in the target's form with ``pack``'s own writers
(:func:`~deploytool.passes.pack_weights.dqmm_weight`, :func:`~deploytool.passes.pack_weights.nbits2_arrays`),
so the output is what ``pack --runtime <target>`` writes for the same codes. Ternary embedding tables move too
(5 trits a byte for ``densest``, 2 bits for the others: their codes read back through the file's own byte table).
A fused attention's QKV moves with its kernel, as ``pack`` writes it: ``QAttention`` on the int8 codes (speed,
densest) or ``MatMulNBits``, ``Split`` and ``MultiHeadAttention`` (memory); a two-plane (split-binary) QKV's linear
kernel moves like any linear weight's, as does one with an attention bias (its Split and MultiHeadAttention stay).
A weight that several kernels read (ALBERT's layers share theirs; pack stores it once) is moved once, every
reader's new kernel reading the one stored weight.
A fused Attention that ``pack`` left reading an fp32 QKV (a past state; files packed before 2026-12-03 with
split-binary weights or an attention bias) keeps its storage (unpacked to fp32 at load in every runtime, and in a
bundle's ``.ort``); the result's skips say so.

The output is at the opset ``pack --runtime <target>`` writes: 25 (IR 11) while INT2 weights remain (``speed``),
else the opset and IR version of pack's input, which pack records (``deploytool.packing.input_opset``): a speed
file repacked to ``memory`` or ``densest`` goes back from 25 to its export's 17, which ONNX Runtime before 1.23
(phones ship 1.17-1.20) loads (:func:`~deploytool.passes.upgrade_opset.lower_opset`; where that cannot be done,
or the file does not record its input's opset, the opset stays and the stats' ``opset_note`` says why).

The gate compares the output with the input: equal where both read the weights with the same kernel
(``speed`` <-> ``densest``), else a cosine of at least 0.9 (int8 activations per tensor in one kernel, per
block or fp32 in the other; a wrong code or scale does not keep it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import numpy as np
import onnx_ir as ir

from deploytool.choices import require_config
from deploytool.errors import PassRefusedError
from deploytool.passes.base import DeployPass, DeployPassResult, Skip
from deploytool.passes.pack_config import (
    PACKING_KEY,
    Runtime,
    check_nbits_options,
    packing_record_key,
)
from deploytool.quant import packing
from deploytool.validation import Flag, Integer, OneOf, schema

logger = logging.getLogger(__name__)

__all__ = ["RepackConfig", "RepackPass", "repack_file", "repack_pipeline"]

_MS = "com.microsoft"
# the codes read back per ONNX Runtime run: the int8 weights of a few layers at a time, not the whole model
_DECODE_BATCH_BYTES = 64 << 20


@schema
class RepackConfig:
    """The runtime to move a packed file to (see :mod:`deploytool.passes.repack`)."""

    runtime: OneOf(Runtime) = Runtime.MEMORY
    # MatMulNBits (runtime memory): 4 = int8 activations (fast), 0 = fp32 (exact)
    accuracy_level: Integer(0, 4, what="0 = fp32 activations, 4 = int8") = 4
    block_size: Integer(16, 256, what="a power of two") = 128  # MatMulNBits block along K
    upgrade_opset: Flag = True  # runtime speed: upgrade models below opset 25 (INT2 weights)

    def __post_init__(self) -> None:
        check_nbits_options(self.accuracy_level, self.block_size)


@dataclasses.dataclass
class _Linear:
    """One packed linear weight as the file holds it."""

    node: ir.Node  # DynamicQuantizeMatMul or MatMulNBits
    form: str  # its storage: ternary2 (INT2) | pairs (trit5 / binary1 lookup) | nbits2
    k: int
    n: int  # columns the kernel computes (both planes of a split-binary weight)
    bias: ir.Value | None
    key: str | None  # its entry in the packing record
    stored_bytes: int = 0  # the bytes the file stores it in (a bound on its codes: at most 8 per byte)
    codes_kn: np.ndarray | None = None  # [K, N] int8, once read back
    alpha: np.ndarray | None = None  # [1] or [N] float32
    # the fused attention the weight is the QKV of (pack's forms: the QAttention itself, or the
    # MultiHeadAttention after MatMulNBits and Split), None for a plain linear weight
    attention: ir.Node | None = None

    @property
    def scale_index(self) -> int:
        return 4 if self.node.op_type == "QAttention" else 2


def _record(model: ir.Model) -> dict[str, dict]:
    from deploytool.variant import packing_record

    return packing_record(model.metadata_props)


def _const(v: ir.Value | None) -> np.ndarray | None:
    if v is None or v.producer() is not None or not v.is_initializer() or v.const_value is None:
        return None
    return v.const_value.numpy()


def _input(node: ir.Node, i: int) -> ir.Value | None:
    return node.inputs[i] if len(node.inputs) > i else None


def _cone(v: ir.Value) -> tuple[list[ir.Node], list[ir.Value]] | None:
    """The nodes that compute ``v`` from initializers alone and the initializers they read, or None when
    ``v`` depends on a graph input (not a stored weight)."""
    nodes: dict[int, ir.Node] = {}
    inits: dict[str, ir.Value] = {}
    stack = [v]
    while stack:
        x = stack.pop()
        if x is None:
            continue
        p = x.producer()
        if p is None:
            if x.is_graph_input() or not x.is_initializer() or x.const_value is None:
                return None
            inits[x.name] = x
            continue
        if id(p) in nodes:
            continue
        nodes[id(p)] = p
        stack.extend(p.inputs)
    return list(nodes.values()), list(inits.values())


def _find(model: ir.Model) -> tuple[list[_Linear], list[str]]:
    """The packed linear weights of ``model`` and, for the refusal, what kept others from counting."""
    record = _record(model)
    found: list[_Linear] = []
    why: list[str] = []
    for node in model.graph:
        if node.domain != _MS or node.op_type not in ("DynamicQuantizeMatMul", "MatMulNBits", "QAttention"):
            continue
        b = _input(node, 1)
        if node.op_type == "QAttention":
            dql = node.inputs[0].producer() if node.inputs[0] is not None else None
            if dql is None or dql.op_type != "DynamicQuantizeLinear" or any(
                    _input(node, i) is not None for i in (7, 8)) or _input(node, 6) is not dql.outputs[2] or \
                    _input(node, 3) is not dql.outputs[1]:
                why.append(f"{node.name}: QAttention not on its own DynamicQuantizeLinear, or with weight zero "
                           "points or a past state (not pack's)")
                continue
        if node.op_type == "MatMulNBits":
            a = node.attributes
            bits = a["bits"].as_int() if "bits" in a else 4
            blob = _const(b)
            if bits != 2 or blob is None or any(_input(node, i) is not None for i in (3, 4)):
                why.append(f"{node.name}: MatMulNBits with {bits} bits" if bits != 2 else
                           f"{node.name}: MatMulNBits with zero points, g_idx or a computed B (not pack's)")
                continue
            k, n = a["K"].as_int(), a["N"].as_int()
            key = packing_record_key(record, b.name or "")
            found.append(_Linear(node, "nbits2", k, n, _input(node, 5), key, blob.nbytes,
                                 attention=_attention_after(node, n)))
            continue
        if b is None or b.producer() is None:
            why.append(f"{node.name}: int8 weights stored as they are (an int8 model, not a packed one)")
            continue
        cone = _cone(b)
        qatt = node.op_type == "QAttention"
        scale, zero_point = (_input(node, 4), None) if qatt else (_input(node, 2), _input(node, 3))
        if cone is None or _const(scale) is None or zero_point is not None:
            why.append(f"{node.name}: its weight is not computed from stored bytes alone")
            continue
        stored = [v for v in cone[1] if v.const_value is not None and v.const_value.dtype in
                  (ir.DataType.INT2, ir.DataType.UINT16)]
        if len(stored) != 1:
            why.append(f"{node.name}: not pack's INT2 or byte-pair storage")
            continue
        shape = b.shape
        dims = [d if isinstance(d, int) else None for d in shape] if shape is not None else []
        form = "ternary2" if stored[0].const_value.dtype == ir.DataType.INT2 else "pairs"
        key = packing_record_key(record, stored[0].name or "")
        k = n = 0
        if len(dims) == 2 and None not in dims:
            k, n = dims
        bias = _input(node, 2) if qatt else _input(node, 4)
        found.append(_Linear(node, form, k, n, bias, key, stored[0].const_value.nbytes,
                             attention=node if qatt else None))
    return found, why


def _shared(linears: list[_Linear]) -> list[list[_Linear]]:
    """``linears`` grouped by the stored weight their kernels read (the same B and scale values): pack stores a
    weight that layers share once, and each layer's kernel reads it (ALBERT; a fused Attention QKV read by
    every layer's attention)."""
    groups: dict[tuple, list[_Linear]] = {}
    for t in linears:
        key = (id(t.node.inputs[1]), id(_input(t.node, t.scale_index)), t.node.op_type, t.attention is None)
        groups.setdefault(key, []).append(t)
    return list(groups.values())


def _attention_after(node: ir.Node, n: int) -> ir.Node | None:
    """The ``MultiHeadAttention`` that ``pack --runtime memory`` puts after a fused Attention's QKV
    ``MatMulNBits`` ``node`` (through one ``Split`` into its three thirds, :func:`~deploytool.graph._util.qkv_split`),
    with no bias, attention bias or past state of its own; or None."""
    from deploytool.graph._util import qkv_split

    uses = list(node.outputs[0].uses())
    if len(uses) != 1 or node.outputs[0].is_graph_output() or uses[0][0].op_type != "Split":
        return None
    readers = list(uses[0][0].outputs[0].uses())
    mha = readers[0][0] if len(readers) == 1 else None
    if mha is None or mha.op_type != "MultiHeadAttention" or mha.domain != _MS:
        return None
    found = qkv_split(mha)
    if found is None or found[0] is not uses[0][0] or (found[1] is not None and 3 * found[1] != n) or n % 3:
        return None
    if any(_input(mha, i) is not None for i in (3, *range(5, len(mha.inputs)))):
        return None
    return mha


def _read_codes(model: ir.Model, linears: list[_Linear]) -> None:
    """The int8 codes of each weight not read yet: a DynamicQuantizeMatMul's computed by ONNX Runtime from the
    file's own unpacking nodes (a graph of those nodes alone, one run for all of ``linears``), a MatMulNBits'
    from its 2-bit blocks. Fills ``codes_kn`` and ``alpha``; refuses values that are not ternary or binary codes."""
    todo = [t for t in linears if t.codes_kn is None]
    for t in todo:
        if t.node.op_type == "MatMulNBits":
            _read_nbits(t)
    dq = [t for t in todo if t.node.op_type in ("DynamicQuantizeMatMul", "QAttention")]
    if dq:
        _run_cones(model, dq)
    for t in dq:
        alpha = np.asarray(_const(t.node.inputs[t.scale_index]), np.float32).reshape(-1)
        if alpha.size not in (1, t.n):
            raise PassRefusedError(f"{t.node.name}: {alpha.size} scales for {t.n} columns (not a file pack wrote)")
        t.alpha = alpha


def _batches(items: list, size) -> list[list]:
    """``items`` in runs whose codes (``size(item)`` bytes each) stay under :data:`_DECODE_BATCH_BYTES`."""
    out: list[list] = [[]]
    total = 0
    for item in items:
        if out[-1] and total + size(item) > _DECODE_BATCH_BYTES:
            out.append([])
            total = 0
        out[-1].append(item)
        total += size(item)
    return [b for b in out if b]


def _run_cones(model: ir.Model, batch: list[_Linear]) -> None:
    import onnx

    from deploytool.runtime.infer import make_session

    position = {id(n): i for i, n in enumerate(model.graph)}
    nodes: dict[int, ir.Node] = {}
    inits: dict[str, ir.Value] = {}
    for t in batch:
        cone = _cone(t.node.inputs[1])
        assert cone is not None  # _find checked it
        nodes.update((id(n), n) for n in cone[0])
        inits.update((v.name, v) for v in cone[1])
    graph = onnx.GraphProto(name="unpack")
    graph.node.extend(ir.serde.serialize_node(n) for n in sorted(nodes.values(), key=lambda n: position[id(n)]))
    graph.initializer.extend(ir.serde.serialize_tensor(v.const_value) for v in inits.values())
    for v, t in zip(graph.initializer, inits):
        v.name = t
    names = [t.node.inputs[1].name for t in batch]
    graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT8, None) for name in names)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, v)
                                                         for d, v in model.opset_imports.items()])
    proto.ir_version = model.ir_version
    try:
        sess = make_session(proto.SerializeToString(), providers=["CPUExecutionProvider"], optimize=False,
                            arena=False)
        outs = sess.run(names, {})
    except Exception as e:  # noqa: BLE001 - ORT's own error, in one line
        first = " ".join(str(e).split())[:200]
        raise PassRefusedError(f"ONNX Runtime could not unpack the packed weights ({first})") from e
    for t, codes in zip(batch, outs):
        codes = np.asarray(codes)
        if codes.dtype != np.int8 or codes.ndim != 2:
            raise PassRefusedError(f"{t.node.name}: its weight unpacks to {codes.dtype} {list(codes.shape)}, "
                                   "not an int8 matrix")
        _check_codes(t, codes)
        t.k, t.n = codes.shape
        t.codes_kn = codes


def _read_nbits(t: _Linear) -> None:
    a = t.node.attributes
    bs = a["block_size"].as_int()
    blob = np.asarray(_const(t.node.inputs[1]), np.uint8)
    scales = np.asarray(_const(t.node.inputs[2]), np.float32).reshape(-1)
    nb = -(-t.k // bs)
    if blob.size != t.n * nb * (bs // 4) or scales.size != t.n * nb:
        raise PassRefusedError(f"{t.node.name}: MatMulNBits blocks do not match K={t.k}, N={t.n}, "
                               f"block_size={bs}")
    # four 2-bit codes a byte, low bits first, less the kernel's default zero point for 2 bits (2)
    codes = packing.unpack_2bit(blob.reshape(t.n, nb * (bs // 4)), t.k)
    per_block = scales.reshape(t.n, nb)
    if not (per_block == per_block[:, :1]).all():
        raise PassRefusedError(f"{t.node.name}: MatMulNBits with a scale per block (pack writes one per row); "
                               "not a file pack wrote")
    _check_codes(t, codes)
    t.codes_kn = np.ascontiguousarray(codes.T)
    alpha = per_block[:, 0]
    t.alpha = alpha[:1].copy() if (alpha == alpha[0]).all() else alpha.copy()


def _check_codes(t: _Linear, codes: np.ndarray) -> None:
    lo, hi = (int(codes.min()), int(codes.max())) if codes.size else (0, 0)
    if lo < -1 or hi > 1:
        raise PassRefusedError(f"{t.node.name}: its weight holds values in [{lo}, {hi}], not ternary or binary "
                               "codes (a file pack wrote holds -1, 0, 1)")


def _binary_by_record(t: _Linear, record: dict[str, dict]) -> bool | None:
    """Whether the weight's codes are binary, as its record entry says (None: it has none)."""
    scheme = str(record.get(t.key or "", {}).get("scheme", ""))
    return scheme.startswith("binary") if scheme else None


def _binary(t: _Linear, record: dict[str, dict]) -> bool:
    """Whether the weight's (read) codes are binary: as its record entry says, which they must agree with
    (no entry: a weight without a zero is binary)."""
    said = _binary_by_record(t, record)
    no_zero = bool(np.count_nonzero(t.codes_kn) == t.codes_kn.size)
    if said and not no_zero:
        raise PassRefusedError(f"{t.node.name}: its record entry says binary but its codes hold zeros "
                               "(not a file pack wrote)")
    return no_zero if said is None else said


def _target_form(binary: bool, runtime: Runtime) -> str:
    if runtime is Runtime.MEMORY:
        return "nbits2"
    if binary:
        return "binary1"
    return "trit5" if runtime is Runtime.DENSEST else "ternary2"


def _current_form(t: _Linear, binary: bool) -> str:
    if t.form != "pairs":
        return t.form
    return "binary1" if binary else "trit5"


def _planes(t: _Linear, record: dict[str, dict]) -> int:
    shape = record.get(t.key or "", {}).get("shape") or []
    return max(1, t.n // int(shape[1])) if len(shape) == 2 and shape[1] else 1


def _reuse_constants(b, graph: ir.Graph, linears: list[_Linear], record: dict[str, dict]) -> None:
    """Let ``b`` use the file's own small constants (the [256, per] byte tables) and pair tables instead of
    adding copies of them."""
    for v in graph.initializers.values():
        c = v.const_value
        if c is None or v.producer() is not None or isinstance(c, ir.LazyTensor) or c.nbytes > 4096:
            continue
        a = c.numpy()
        b._consts.setdefault((a.dtype.str, a.shape, a.tobytes()), v)
    for t in linears:
        if t.form != "pairs":
            continue
        wq = t.node.inputs[1]
        binary = _binary_by_record(t, record)
        if binary is None:
            continue
        for node in _cone(wq)[0]:
            if node.op_type == "Gather" and node.inputs[0] is not None and node.inputs[0].producer() is not None:
                b._consts.setdefault(("pair_table", "binary1" if binary else "trit5"), node.inputs[0])


class RepackPass(DeployPass):
    """Move a packed file's linear weights to another runtime (see the module doc)."""
    label = "repack"  # how messages name it: its command

    reference_label = "the input model's"

    def __init__(self, config: RepackConfig) -> None:
        super().__init__()
        require_config(config, RepackConfig, "RepackPass")  # not an AttributeError in call()
        self.config = config
        self._same_kernel: bool | None = None  # decided by requires: the input's kernels and the target's

    def variant_step(self, result) -> dict:
        r = self.config.runtime
        return {"step": f"repack({r.value if isinstance(r, Runtime) else r})"}

    def requires_input(self, model: ir.Model) -> None:
        raw = model.metadata_props.get(PACKING_KEY)
        if raw:  # present but unreadable is not "absent": the file was edited or damaged
            import json

            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise PassRefusedError(f"the '{PACKING_KEY}' record is not a JSON object (damaged or edited): repack "
                                       "reads the codes' layout from it; pack the fp32 model again")
            bad = [k for k in data if k not in _record(model)]
            if bad:
                raise PassRefusedError(f"the '{PACKING_KEY}' record's entry for '{bad[0]}' is not one pack writes "
                                       f"({len(bad)} such entries; damaged or edited); pack the fp32 model again")
        if not _record(model):
            raise PassRefusedError(f"no '{PACKING_KEY}' record: repack converts files `deploytool pack` wrote "
                                   "(pack an fp32 model with --runtime instead)")
        linears, why = _find(model)
        if not linears:
            raise PassRefusedError("no packed linear weights (DynamicQuantizeMatMul on unpacked bytes, or 2-bit "
                                   f"MatMulNBits){': ' + why[0] if why else ''}")
        if why:
            raise PassRefusedError(f"{len(why)} of the file's quantized matmuls are not pack's ({why[0]}); "
                                   "repack converts files `deploytool pack` wrote")
        memory_in = any(t.form == "nbits2" for t in linears)
        memory_out = self.config.runtime is Runtime.MEMORY
        self._same_kernel = not memory_in and not memory_out

    def requires(self, model: ir.Model) -> None:
        self.requires_input(model)
        from deploytool.passes.upgrade_opset import INT2_MIN_OPSET

        opset = model.opset_imports.get("", 0)
        if not self.config.upgrade_opset and opset < INT2_MIN_OPSET and self._needs_int2(model, _find(model)[0]):
            raise PassRefusedError(
                f"opset {opset} is too old for INT2 weights (runtime speed needs opset >= {INT2_MIN_OPSET}); "
                "let repack upgrade it (upgrade_opset=True) or use --runtime densest or memory")

    def _needs_int2(self, model: ir.Model, linears: list[_Linear]) -> bool:
        """Whether the target stores one of ``linears`` (ternary) as INT2 that is not yet: runtime speed (binary
        weights stay 1 bit; a weight without a record entry counts as ternary)."""
        if self.config.runtime is not Runtime.SPEED:
            return False
        record = _record(model)
        return any(not _binary_by_record(t, record) and t.form != "ternary2" for t in linears)

    # the gate: the input is the reference
    def preserves_outputs(self) -> bool:
        return bool(self._same_kernel)

    def min_output_cosine(self) -> float | None:
        return None if self._same_kernel else 0.9

    def gate_reference(self, src):
        if self._same_kernel is None:  # the runner asks before the pass ran (a big input): the file says
            from deploytool import onnx_io

            self.requires_input(onnx_io.load_model(src))  # mapped, its packed weights left packed
        return super().gate_reference(src)

    def early_reference(self, src):
        from deploytool.passes.base import EarlyReference

        self.gate_reference(src)
        return EarlyReference(model=src, min_cosine=self.min_output_cosine())

    def call(self, model: ir.Model) -> DeployPassResult:
        from deploytool.passes.pack_graph import _Builder
        from deploytool.passes.upgrade_opset import INT2_MIN_OPSET

        cfg = self.config
        stats: dict[str, Any] = {"runtime": cfg.runtime.value}
        linears, _ = _find(model)
        if model.opset_imports.get("", 0) < INT2_MIN_OPSET and self._needs_int2(model, linears):
            from deploytool.passes.upgrade_opset import UpgradeOpsetPass

            stats.update(UpgradeOpsetPass(INT2_MIN_OPSET, record=True)(model).stats)
            linears, _ = _find(model)  # the upgrade may rebuild the graph
        record = _record(model)
        linear_keys = {t.key for t in linears if t.key}
        graph = model.graph
        b = _Builder(graph)
        _reuse_constants(b, graph, linears, record)
        converted: dict[str, int] = {}
        kept = 0
        skipped: list[Skip] = []
        todo: list[list[_Linear]] = []
        # one stored weight read by several kernels (ALBERT's layers share theirs: pack stores it once and every
        # reader's kernel reads the one unpacked value) is read back, and written again, once for all of them
        for group in _shared(linears):
            t = group[0]
            binary = _binary_by_record(t, record)
            if binary is None:  # no record entry: its codes say
                _read_codes(model, [t])
                binary = _binary(t, record)
            target = _target_form(binary, cfg.runtime)
            if target == _current_form(t, binary) and (target != "nbits2" or all(map(self._nbits_as_asked, group))):
                kept += 1
                t.codes_kn = None
            else:
                todo.append(group)
        # read back a few layers' codes at a time (one ONNX Runtime run each), write them, let them go
        for batch in _batches(todo, lambda g: 8 * g[0].stored_bytes):
            _read_codes(model, [g[0] for g in batch])
            for group in batch:
                binary = _binary(group[0], record)
                target = _target_form(binary, cfg.runtime)
                self._write(b, graph, group, target, binary, record)
                converted[target] = converted.get(target, 0) + 1
                group[0].codes_kn = None
        tables, why = _convert_tables(b, graph, record, linear_keys, cfg.runtime)
        skipped += why
        if tables:
            converted["tables"] = tables
        if converted:
            from onnx_ir.passes.common import RemoveUnusedNodesPass

            RemoveUnusedNodesPass()(model)
            model.opset_imports.setdefault(_MS, 1)
            model.metadata_props[PACKING_KEY] = json.dumps(record, sort_keys=True)
            stats.update(_lowest_opset(model))
        skipped += _kept_tables(record, linear_keys)
        modified = bool(converted)
        tables = converted.pop("tables", 0)
        stats.update(weights_converted=sum(converted.values()), weights_already_in_runtime=kept,
                     tables_converted=tables, by_form=converted)
        if cfg.runtime is Runtime.MEMORY:
            stats["accuracy_level"] = cfg.accuracy_level
        return DeployPassResult(model, modified=modified, stats=stats, skipped=skipped)

    def _write(self, b, graph: ir.Graph, group: list[_Linear], target: str, binary: bool,
               record: dict[str, dict]) -> None:
        """Replace the kernels of ``group`` (the readers of one stored weight; with the bias Add after each, if
        any) with the ``target`` form of the same codes and scales (pack's own kernel writers), stored once and
        read by all of them, and update its record entry."""
        from deploytool.passes.pack_graph import _first_in_graph, _folded_bias, _replace, _replace_kernel
        from deploytool.passes.pack_weights import (
            attention_attrs,
            attention_kernels,
            packed_kernel,
            split_attention_note,
        )

        t = group[0]
        base = t.key or (t.node.inputs[1].name or "weight")
        first = _first_in_graph(graph, [u.node for u in group])
        if t.attention is not None:  # a fused attention's QKV: the target's attention kernel, as pack writes it
            alpha = np.broadcast_to(np.asarray(t.alpha, np.float32).reshape(-1), (t.n,))  # pack's: per column
            make, stored, note = attention_kernels(b, t.codes_kn.T, alpha, target, base,
                                                   block_size=self.config.block_size,
                                                   accuracy_level=self.config.accuracy_level)
            prep = b.take()  # the weight's unpacking, once, before its first reader
            if prep:
                graph.insert_before(first, prep)
            for u in group:
                att = u.attention
                if att.op_type == "QAttention":
                    x, mask = att.inputs[0].producer().inputs[0], _input(att, 5)
                else:
                    x, mask = u.node.inputs[0], _input(att, 4)
                out = make(x, u.bias, mask, attention_attrs(att))
                _replace(graph, att, b.take(), out)
            if t.key in record:
                record[t.key] = {**_entry(record[t.key], target, binary, stored, t, 1), "note": note}
            return
        planes = _planes(t, record)
        make, stored = packed_kernel(b, t.codes_kn.T, t.alpha, target, base, b.tag(), block_size=self.config.block_size,
                                     accuracy_level=self.config.accuracy_level)
        prep = b.take()
        if prep:
            graph.insert_before(first, prep)
        for u in group:
            add, bias = None, u.bias
            if bias is None and planes == 1:  # a bias Add goes into the kernel, as pack does
                add, bias = _folded_bias(u.node, u.n)
            out = make(u.node.inputs[0], bias)
            _replace_kernel(graph, u.node, add, b.take(), out)
        if t.key in record:
            old = record[t.key]
            record[t.key] = _entry(old, target, binary, stored, t, planes)
            if str(old.get("note", "")).startswith("fused Attention: "):
                # a fused attention's QKV read as a plain linear weight here (two planes, or an attention bias:
                # its Split and MultiHeadAttention stay as they are): the note names its new kernel
                record[t.key]["note"] = split_attention_note(target, planes)

    def _nbits_as_asked(self, t: _Linear) -> bool:
        a = t.node.attributes
        want_bs = min(self.config.block_size, max(16, 1 << (t.k - 1).bit_length()))
        level = a["accuracy_level"].as_int() if "accuracy_level" in a else 0
        return a["block_size"].as_int() == want_bs and level == self.config.accuracy_level

    def ensures(self, model: ir.Model) -> None:
        from deploytool.errors import VerificationError

        if not _record(model):
            raise VerificationError(f"RepackPass lost the '{PACKING_KEY}' record; nothing written")


def _lowest_opset(model: ir.Model) -> dict[str, Any]:
    """The repacked ``model`` at the opset ``pack`` writes for its runtime: the opset (and IR version) of pack's
    input as the file records it (at least the 13 packing's subgraphs need), unless a tensor it still stores needs
    more (an INT2 weight: 25). The stats say what changed, or why the opset stays (a file packed before the record
    was written does not say which opset its input had)."""
    from deploytool.passes.upgrade_opset import (
        INPUT_OPSET_KEY,
        PACK_MIN_OPSET,
        input_opset,
        lower_opset,
        needed_opset,
    )

    old = model.opset_imports.get("", 0)
    need = needed_opset(model)
    if old <= max(need, PACK_MIN_OPSET):
        return {}
    recorded = input_opset(model)
    if recorded is None:
        return {"opset_note": f"opset {old} kept: the file does not record the opset of pack's input "
                              f"('{INPUT_OPSET_KEY}'; packed before pack recorded it)"}
    target = max(recorded[0], need, PACK_MIN_OPSET)
    if target >= old:
        return {}
    ir_before = model.ir_version
    why = lower_opset(model, target, recorded[1])
    if why:
        return {"opset_note": f"opset {old} kept: {why}"}
    return {"opset": f"{old} -> {target}", "ir_version": f"{ir_before} -> {model.ir_version}"}


def _entry(old: dict, form: str, binary: bool, stored: int, t: _Linear, planes: int) -> dict:
    """The record entry ``pack`` writes for a weight stored as ``form``."""
    shape = old.get("shape") or [t.k, t.n]
    if form == "nbits2":
        scheme = "binary2" if binary else "ternary2"
    else:
        scheme = form
    if planes > 1:
        scheme = f"{scheme}x{planes}"
    n_weights = int(shape[0]) * int(shape[1]) if len(shape) == 2 else t.k * t.n
    return {**old, "scheme": scheme, "bits": stored * 8 / max(n_weights, 1)}


def _table_paths(t_val: ir.Value) -> list[tuple[ir.Node, ir.Node, ir.Node | None]] | None:
    """How ``pack`` unpacks the packed table ``t_val`` wherever it is read: per path the byte lookup
    ``Gather(byte table, Cast(bytes))``, the Reshape after it and the Slice that cuts a padded row (or None);
    None when a reader is not one of pack's two forms (gathered rows, or the whole table unpacked)."""
    paths = []
    for node, idx in list(t_val.uses()):
        if idx != 0:
            return None
        start = node
        if node.op_type == "Gather":  # rows gathered by ids, then Cast
            users = [u for u, _ in node.outputs[0].uses()]
            if len(users) != 1 or users[0].op_type != "Cast":
                return None
            start = users[0]
        if start.op_type != "Cast":
            return None
        users = [(u, i) for u, i in start.outputs[0].uses()]
        if len(users) != 1 or users[0][0].op_type != "Gather" or users[0][1] != 1:
            return None
        lookup = users[0][0]
        if lookup.inputs[0] is None or lookup.inputs[0].const_value is None:
            return None
        users = [u for u, _ in lookup.outputs[0].uses()]
        if len(users) != 1 or users[0].op_type != "Reshape":
            return None
        reshape = users[0]
        after = [u for u, _ in reshape.outputs[0].uses()]
        cut = after[0] if len(after) == 1 and after[0].op_type == "Slice" else None
        paths.append((lookup, reshape, cut))
    return paths or None


def _convert_tables(b, graph: ir.Graph, record: dict[str, dict], linear_keys: set[str],
                    runtime: Runtime) -> tuple[int, list[Skip]]:
    """Ternary tables stored as ``pack --runtime <runtime>`` stores them (5 trits a byte for densest, 2 bits
    for the others): the codes read back through the file's own byte table, packed again, and the lookups
    pointed at the new scheme's table (a Slice added where the new packing pads a row). Returns how many moved
    and what stayed (with why)."""
    from deploytool.graph._util import safe_name
    from deploytool.passes.pack_codes import _UNPACK, _pack_codes
    from deploytool.passes.pack_graph import unpack_table

    want = "trit5" if runtime is Runtime.DENSEST else "ternary2"
    moved, skipped = 0, []
    for key, entry in record.items():
        scheme = str(entry.get("scheme", ""))
        if key in linear_keys or scheme not in ("trit5", "ternary2") or scheme == want:
            continue
        if str(entry.get("note", "")).startswith("fused Attention QKV"):
            continue  # its pairs are unpacked to fp32 at load in every runtime (_kept_tables says so)
        stem = safe_name(key) + "_" + scheme
        found = [v for v in graph.initializers.values() if v.name.startswith(stem) and v.const_value is not None
                 and v.const_value.dtype == ir.DataType.UINT8 and len(v.const_value.shape) == 2]
        paths = _table_paths(found[0]) if len(found) == 1 else None
        shape = entry.get("shape") or []
        if paths is None or len(shape) != 2:
            skipped.append(Skip(key, f"table kept as stored ({scheme}): its readers are not pack's lookups"))
            continue
        t_val = found[0]
        vocab, width = int(shape[0]), int(shape[1])
        old = t_val.const_value.numpy()
        table = paths[0][0].inputs[0].const_value.numpy()
        codes = np.empty((vocab, width), np.int8)
        step = 4096
        for r in range(0, vocab, step):  # the file's own byte table, a few thousand rows at a time
            codes[r:r + step] = table[old[r:r + step].astype(np.intp)].reshape(min(step, vocab - r), -1)[:, :width]
        if codes.min(initial=0) < -1 or codes.max(initial=0) > 1:
            skipped.append(Skip(key, f"table kept as stored ({scheme}): its codes are not ternary"))
            continue
        new = _pack_codes(codes, want)
        v_new = b.init(f"{key}_{want}", new)
        lut = b.const(unpack_table(want))
        per = _UNPACK[want][0]
        for lookup, reshape, cut in paths:
            lookup.replace_input_with(0, lut)
            if cut is None and width % per:  # the new packing pads each row: cut it off again
                x = reshape.outputs[0]
                users = list(x.uses())
                sl = b.op("Slice", [x, b.const(np.array([0], np.int64)), b.const(np.array([width], np.int64)),
                                    b.const(np.array([-1], np.int64))], b.tag())
                graph.insert_after(reshape, b.take())
                for u, i in users:
                    u.replace_input_with(i, sl)
        for node, idx in list(t_val.uses()):
            node.replace_input_with(idx, v_new)
        n = max(vocab * width, 1)
        stored = round(float(entry.get("bits", 0)) * n / 8) - old.nbytes + new.nbytes  # pack's bytes, scales included
        record[key] = {**entry, "scheme": want, "bits": stored * 8 / n}
        moved += 1
    return moved, skipped


def _kept_tables(record: dict[str, dict], linear_keys: set[str]) -> list[Skip]:
    """What repack leaves as stored, where it matters: a fused Attention's QKV (unpacked to fp32 when a session
    or the ORT-format converter loads it, in every runtime)."""
    out = []
    for key, entry in record.items():
        if key in linear_keys:
            continue
        scheme = str(entry.get("scheme", ""))
        if str(entry.get("note", "")).startswith("fused Attention QKV"):
            out.append(Skip(key, f"fused Attention QKV kept as stored ({scheme}): unpacked to fp32 at load in "
                                 "every runtime, and in a bundle's .ort"))
    return out


def repack_pipeline(config: RepackConfig) -> DeployPass:
    """The passes ``repack`` runs: the repacking (which upgrades the opset first when it writes INT2 weights
    below opset 25, ``upgrade_opset=True``), then for the int8-activation runtimes the residual Add->Sum
    rewrite, as :func:`~deploytool.passes.pack_weights.pack_pipeline` (nothing to do where pack made it)."""
    from deploytool.passes.base import PassSequence
    from deploytool.passes.residual_sum import ResidualAddsToSumPass

    passes: list[DeployPass] = [RepackPass(config)]
    if config.runtime is not Runtime.MEMORY or config.accuracy_level == 4:
        passes.append(ResidualAddsToSumPass())
    return PassSequence(passes, main=0)


def repack_file(src: str | os.PathLike, dst: str | os.PathLike, config: RepackConfig, *,
                verify: bool = True) -> DeployPassResult:
    """Repack ``src`` into ``dst`` (atomic; the input is never modified) through the one file runner."""
    require_config(config, RepackConfig, "repack_file")
    from deploytool.passes import transform

    return transform(src, dst, config, verify=verify)
