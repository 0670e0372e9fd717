"""DeBERTa-v2/v3's relative-position projections that ONNX Runtime's optimizer folded into constants, computed
again with the quantized Q/K weights (``pack``'s refold).

DeBERTa-v2/v3 (``share_att_key``) projects one table of relative-position embeddings R with each layer's own
Q and K weights: ``P_q = R W_q + b_q``, ``P_k = R W_k + b_k``, viewed per head. The table is a constant, so ONNX
Runtime's constant folding (every optimization level from 1) computes each layer's ``P_q`` and ``P_k`` once and
stores them as float constants ([heads, 2 * span, head_size], or tiled over a fixed batch): the graph no longer
multiplies R by W_q or W_k. Packing W_q and W_k then leaves those products made with the float weights, which is
not the packed network (a TernaryBERT-trained model computes its positions with its ternary weights too).

What the folded graph still holds is enough to compute them again: every constant is ``R W + b`` with the same R
and a weight and bias the graph keeps. R is the least-squares solution of all of them at once (float64), which
is exact (to float32 rounding) when the stacked weights [W_1 | W_2 | ...] have full row rank (the hidden size:
any one layer's Q and K together, unless a slice kept fewer than half its heads); the refold checks that R
reproduces every constant (within 1e-4 of its scale, or ``FIT_ULPS`` fp16 epsilons of it where the constant or
its weight holds fp16 values: ONNX Runtime's ``--float16`` rounds both after its fold, so ``R W + b`` meets the
constant only to fp16 rounding) and refuses otherwise, e.g. for DeBERTa's own ``pos_key_proj`` /
``pos_query_proj`` (``share_att_key`` false, and v1), whose weights the folding removed.
Each constant is then replaced by ``R Q(W) + b`` in its own layout and dtype, Q(W) the float32 weight the packed
model computes with. Both the pass and its gate's fake-quantized reference do this, so the gate checks the packing;
``tests/e2e`` checks the refold against transformers' model with its ternary weights, whose positions are
projected by the quantized weights.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import onnx_ir as ir

from deploytool.errors import PassRefusedError

#: the largest difference between a folded constant and R W + b, over the constant's largest magnitude, for which
#: the constant is read as that product (float32 rounding gives ~1e-7; another table or weight gives ~1)
FIT_RTOL = 1e-4
#: the same for a constant or weight that holds fp16 values, in fp16 epsilons
#: (np.finfo(np.float16).eps, 2**-10): rounding the constant to fp16 moves it by up to half an ulp of its scale
#: (eps / 2), rounding the weight moves R W + b by about as much again; measured 0.2-0.7 eps on the tiny DeBERTa-v2/v3
#: of ORT's --float16 and 0.6-0.8 eps on random tables and weights up to DeBERTa-v3-large's size (hidden 1024,
#: 24 layers); another table or weight still gives ~1 (about 1000 eps)
FIT_ULPS = 4


@dataclasses.dataclass
class _Folded:
    """One folded constant: read by ``reader`` at input ``index``, the projection by ``linear`` of the table."""

    reader: ir.Node
    index: int
    axis: int  # the finder's head axis: 0 ([copies * heads, a, b]), -1 ([.., heads * head_size]), 1 (v1)
    linear: object  # deploytool.graph.roles.Linear (Q's or K's)
    heads: int
    head_size: int
    layer: int
    family: str


def folded_projections(st) -> list[_Folded]:
    """The folded relative-position constants of structure ``st`` with the projection each one is, or
    PassRefusedError naming the first one that cannot be computed again (see the module doc)."""
    family = st.family
    out: list[_Folded] = []
    for layer in st.layers:
        att = layer.attention
        projs = att.rel_constant_proj or [None] * len(att.rel_constants)
        for (reader, index, axis), proj in zip(att.rel_constants, projs):
            linear = {"q": att.q, "k": att.k}.get(proj) if proj is not None else None
            why = None
            if axis == 1:
                why = "v1's own pos_proj / pos_q_proj, folded away"
            elif linear is None:
                why = "no separate Q and K projections"
            if why is not None:
                raise refusal(family, layer.index, reader, why)
            out.append(_Folded(reader, index, axis, linear, att.num_heads, att.head_size, layer.index, family))
    return out


def refusal(family: str, layer: int, reader: ir.Node, why: str) -> PassRefusedError:
    return PassRefusedError(f"{family}: the relative-position projections are folded float constants that pack cannot "
                            f"compute again with packed weights ({why}); pack the export from before ONNX Runtime's "
                            f"optimizer (with dynamic shapes where the exporter folds them); layer {layer}'s is read "
                            f"by '{reader.name}'")


def _in_out(linear) -> np.ndarray:
    """The Linear's weight as [in, out] (x @ W), float64."""
    from deploytool.passes._surgery import get_array

    w = np.asarray(get_array(linear.weight), dtype=np.float64)
    return w.T if linear.layout == "out_in" else w


def _bias(linear, n: int) -> np.ndarray:
    from deploytool.passes._surgery import get_array

    if linear.bias is None:
        return np.zeros(n)
    return np.asarray(get_array(linear.bias), dtype=np.float64).reshape(-1)


def _forms(f: _Folded, shape: tuple[int, ...]) -> list[str]:
    """The layouts a constant of ``shape`` may have: "flat" ([.., rows, heads * head_size]), "hrd" ([copies *
    heads, rows, head_size]), "hdr" ([copies * heads, head_size, rows]: the transpose the product reads)."""
    h, d = f.heads, f.head_size
    if f.axis == -1:
        return ["flat"] if shape and shape[-1] == h * d else []
    if len(shape) != 3 or shape[0] % h:
        return []
    return [form for form, ok in (("hrd", shape[2] == d), ("hdr", shape[1] == d)) if ok]


def _to_rows(c: np.ndarray, form: str, f: _Folded) -> np.ndarray:
    """[rows, heads * head_size] of a constant in ``form`` (the first ``heads`` of a tiled one)."""
    h, d = f.heads, f.head_size
    if form == "flat":
        return c.reshape(-1, h * d)
    c = c[:h]
    if form == "hrd":
        return c.transpose(1, 0, 2).reshape(c.shape[1], h * d)
    return c.transpose(2, 0, 1).reshape(c.shape[2], h * d)


def _from_rows(p: np.ndarray, form: str, f: _Folded, shape: tuple[int, ...]) -> np.ndarray:
    """:func:`_to_rows` undone: ``p`` [rows, heads * head_size] in the constant's own ``shape``."""
    h, d = f.heads, f.head_size
    if form == "flat":
        return p.reshape(shape)
    rows = p.shape[0]
    c = p.reshape(rows, h, d).transpose(1, 0, 2) if form == "hrd" else p.reshape(rows, h, d).transpose(1, 2, 0)
    return np.tile(c, (shape[0] // h, 1, 1))


def refold(graph: ir.Graph, folded: list[_Folded], quantized: Callable[[object], np.ndarray | None]) -> int:
    """Replace each folded constant by R Q(W) + b (see the module doc); ``quantized(linear)``: the float32 weight
    the packed model computes with, as [in, out], or None for a weight left unpacked (its constant stays).
    Returns how many were replaced; PassRefusedError when the constants are not one table's projections by
    their Q/K weights."""
    from deploytool.passes._surgery import get_array, new_initializer
    from deploytool.passes.pack_graph import _drop_unused

    if not folded:
        return 0
    consts = [np.asarray(get_array(f.reader.inputs[f.index])) for f in folded]
    options = [_forms(f, c.shape) for f, c in zip(folded, consts)]
    bad = next((i for i, o in enumerate(options) if not o), None)
    if bad is not None:
        f = folded[bad]
        raise refusal(f.family, f.layer, f.reader, f"a constant of shape {list(consts[bad].shape)}")
    weights = [_in_out(f.linear) for f in folded]
    biases = [_bias(f.linear, w.shape[1]) for f, w in zip(folded, weights)]
    fit = None
    for pick in range(max(len(o) for o in options)):  # where a constant's layout is ambiguous: each reading in turn
        forms = [o[min(pick, len(o) - 1)] for o in options]
        fit = _fit(consts, forms, folded, weights, biases)
        if isinstance(fit, np.ndarray):
            break
    if not isinstance(fit, np.ndarray):
        f = folded[0]
        raise refusal(f.family, f.layer, f.reader, fit)
    table = fit
    replaced = 0
    done: dict[tuple[int, int], ir.Value | None] = {}  # one new constant per (old constant, weight)
    for f, c, form, b in zip(folded, consts, forms, biases):
        old = f.reader.inputs[f.index]
        key = (id(old), id(f.linear.weight))
        if key not in done:
            qw = quantized(f.linear)
            done[key] = None if qw is None else new_initializer(  # None: the weight stays unpacked, so does this
                graph, f"{old.name or 'rel_const'}_packed",
                _from_rows((table @ np.asarray(qw, dtype=np.float64) + b).astype(c.dtype), form, f, c.shape))
        if done[key] is None:
            continue
        f.reader.replace_input_with(f.index, done[key])
        _drop_unused(graph, [old])
        replaced += 1
    return replaced


def _fit(consts, forms, folded, weights, biases) -> np.ndarray | str:
    """R (float64 [rows, hidden]) with ``R W_i + b_i`` = each constant in its ``forms`` layout, or why not."""
    rows = [_to_rows(np.asarray(c, dtype=np.float64), form, f) for c, form, f in zip(consts, forms, folded)]
    if len({r.shape[0] for r in rows}) != 1 or len({w.shape[0] for w in weights}) != 1:
        return "their tables differ in size"
    # R from the first constants whose weights have twice the table's features (the first layer's Q and K: a square
    # weight alone is ill-conditioned, R off by 2e-5 at DeBERTa-v3-base's size, twice over-determined 3e-8), more
    # until they determine it (a slice that kept fewer heads), then checked against every constant; a
    # least-squares fit over all of them at that size (24 x [768, 768] weights, 512 positions) took 2.3 s, this 0.9 s
    hidden = weights[0].shape[0]
    table, rank, take, width = None, 0, 0, 0
    while take < len(weights):
        width += weights[take].shape[1]
        take += 1
        if width < 2 * hidden and take < len(weights):
            continue
        x = np.concatenate(weights[:take], axis=1)  # [hidden, the outs taken]
        y = np.concatenate([r - b for r, b in zip(rows[:take], biases[:take])], axis=1)  # [rows, the outs taken]
        solution, _, rank, _ = np.linalg.lstsq(x.T, y.T, rcond=None)
        if rank == hidden:
            table = solution.T
            break
    if table is None:
        return f"the kept Q/K weights determine only {rank} of the table's {hidden} features"
    for r, w, b in zip(rows, weights, biases):
        err = float(np.max(np.abs(table @ w + b - r))) if r.size else 0.0
        if not err <= fit_rtol(r, w) * max(float(np.max(np.abs(r))) if r.size else 0.0, 1e-30):
            return "not one table's projections by Q's and K's weights"
    return table


def fit_rtol(const: np.ndarray, weight: np.ndarray) -> float:
    """The check's tolerance for a constant and its weight: ``FIT_ULPS`` fp16 epsilons where either holds only fp16
    values (pack's first pass upcasts an fp16 model exactly, so an fp16 file's constants and weights arrive as float32
    holding fp16 values), else ``FIT_RTOL``. Not the bias: a zero bias holds fp16 values in any model."""
    with np.errstate(over="ignore"):  # a value beyond fp16's range becomes inf: not an fp16 value
        fp16 = any(a.size and np.array_equal(a, a.astype(np.float16).astype(a.dtype)) for a in (const, weight))
    if fp16:
        return FIT_ULPS * float(np.finfo(np.float16).eps)
    return FIT_RTOL
