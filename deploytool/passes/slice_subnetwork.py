"""DynaBERT width/depth slicing of an ONNX encoder (Hou et al. 2020, "DynaBERT").

The counts follow DynaBERT's public code (``DynaBERT/transformers/modeling_bert.py`` in
huawei-noah/Pretrained-Language-Model) exactly, with Python's built-in ``round`` (ties to even):

- heads: each layer keeps its first ``k = round(H * w)`` attention heads (``H`` = that layer's head
  count; the code's ``round(self.orig_num_attention_heads * self.width_mult)``);
- FFN neurons: each layer keeps its first ``round_to_nearest(F, w, H)`` neurons, i.e.
  ``max(1, int(round(H * w) * 1.0 / H * F))`` computed with exactly those float operations (the
  code's ``round_to_nearest(input_size, width_mult, num_heads)``): the FFN follows the width really
  applied to the heads, ``k / H``;
- layers: ``n = round(d * L)`` layers are kept, indices ``math.floor(i / d)`` for ``i in range(n)``
  (the code's ``kept_layers_index``). Since ``i < d * L``, every index is ``< L``; no clamp is needed.

Examples: 6 layers at d=0.75 keep ``round(4.5) = 4`` layers ``[0, 1, 2, 4]``; 12 layers at d=0.5 keep
``[0, 2, 4, 6, 8, 10]``; 6 heads at w=0.75 keep ``round(4.5) = 4`` heads and ``int(4/6 * F)`` neurons;
4 heads at w=0.625 keep ``round(2.5) = 2``.

``SliceConfig(rounding="half-up")`` selects this project's earlier rule instead: heads
``floor(w * H + 0.5)``, neurons ``floor(w * F + 0.5)`` (at least 1), layers ``floor(d * L + 0.5)`` with
indices ``floor(i / d)``. It differs from DynaBERT's on ties (6 layers at d=0.75 keep 5, 6 heads at
w=0.75 keep 5) and in the FFN count, so a model trained with DynaBERT's code should be sliced with the
default.

Heads and neurons are kept in the model's current order (reorder by importance first, see
``reorder.py``, so that "first" means "most important"). The width really applied to the heads is a
multiple of ``1/H``; the result reports it as ``width_effective``. Q, K, V keep their first ``k*d``
output rows (whole heads of size ``d``), O keeps the matching ``k*d`` input columns; the FFN
intermediate keeps its first ``m`` output rows and bias entries, the FFN output its first ``m`` input
columns. Hidden size, embeddings, LayerNorms and the heads on top are untouched. A dropped layer's
successor reads the previous kept layer's output. Where a dropped layer reads weights a kept layer also
reads (ALBERT shares them across layers), those weights stay: fewer layers run, but the file shrinks only
by the weights no kept layer shares, and the result says so (``shared_weights_note``; not for an untrained model's
zero biases, which layers read as one tensor only because the exporter stores equal constants once).

A removed layer passes its input through, so the model's outputs keep their names and number. In an export
exposing every hidden state (``output_hidden_states``), a removed layer's hidden-state output therefore repeats
the previous one (depth 0.5 of 4 layers: ``hs_2`` is ``hs_1``, ``hs_4`` is ``hs_3``), where transformers' own
smaller model returns fewer hidden states: a design choice (an application reading the outputs by name or
position keeps working); the result says so in one line (``note``). An output exposing a tensor inside a removed
layer (its attention probabilities) is refused: it has no value to pass through.

A width that keeps 0 heads of some layer (``round(H * w) == 0``) or a depth that keeps 0 layers is
refused (``PassRefusedError``).
"""

from __future__ import annotations

import dataclasses
import math
import os

import onnx_ir as ir

from deploytool.choices import require_config
from deploytool.choices import not_one_of
from deploytool.errors import ConfigError, PassRefusedError
from deploytool.graph.structure import EncoderStructure
from deploytool.passes import _surgery as S
from deploytool.passes._sharing import dropped_sharing_note, stored_bytes, weight_slots
from deploytool.passes.base import Edit, StructuredPass
from deploytool.passes.base import DeployPassResult, run_pass_file
from deploytool.validation import Choice, Fraction, schema

__all__ = ["SliceConfig", "SlicePass", "SliceShape", "slice_file", "slice_shape", "depth_keep", "width_keep",
           "ffn_keep", "ROUNDINGS", "RULES"]

ROUNDINGS = ("dynabert", "half-up")
# one-line statement of each rule (reported in the pass's stats and by the CLI)
RULES = {
    "dynabert": "heads round(w*H), neurons int(round(w*H)/H*F), layers floor(i/d) for i < round(d*L) "
                "(Python round, ties to even, as DynaBERT's code)",
    "half-up": "heads floor(w*H+0.5), neurons floor(w*F+0.5), layers floor(i/d) for i < floor(d*L+0.5) "
               "(round half up)",
}


@schema
class SliceConfig:
    """DynaBERT sub-network: keep ``width`` of each layer's heads and neurons and ``depth`` of the layers
    (each in (0, 1]).

    ``rounding``: ``"dynabert"`` (default; DynaBERT's public code, see the module docstring) or
    ``"half-up"`` (this project's earlier rule).
    """

    width: Fraction = 1.0
    depth: Fraction = 1.0
    rounding: Choice(*ROUNDINGS) = "dynabert"


def _check_rounding(v) -> None:
    """The rule functions below take the rule by name from Python too: the one Choice validator refuses
    anything else (``rounding: expected one of dynabert, half-up, got 'x'``)."""
    if v not in ROUNDINGS:
        raise ConfigError(f"rounding: {not_one_of(ROUNDINGS, v)}")


def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))  # the earlier rule: half up (not banker's rounding)


def width_keep(width: float, n: int, rounding: str = "dynabert") -> int:
    """Heads kept of ``n`` at ``width``: ``round(n * width)`` (ties to even, DynaBERT); 0 is possible."""
    _check_rounding(rounding)
    if rounding == "dynabert":
        return round(n * width)
    return _half_up(width * n)


def ffn_keep(width: float, heads: int, ffn: int, rounding: str = "dynabert") -> int:
    """FFN neurons kept of ``ffn`` at ``width`` in a layer of ``heads`` heads.

    dynabert: DynaBERT's ``round_to_nearest(ffn, width, heads)`` = ``max(1, int(round(heads * width)
    * 1.0 / heads * ffn))``, with the same float operations. half-up: ``max(1, floor(width * ffn + 0.5))``.
    """
    _check_rounding(rounding)
    if rounding == "dynabert":
        new_width_mult = round(heads * width) * 1.0 / heads
        return max(1, int(new_width_mult * ffn))
    return max(1, _half_up(width * ffn))


def depth_keep(depth: float, num_layers: int, rounding: str = "dynabert") -> list[int]:
    """Layer indices kept at ``depth``: ``floor(i / depth)`` for ``i < round(depth * L)`` (may be empty)."""
    _check_rounding(rounding)
    if rounding == "dynabert":
        n = round(depth * num_layers)
        return [math.floor(i / depth) for i in range(n)]
    n = _half_up(depth * num_layers)
    return [min(int(math.floor(i / depth + 1e-9)), num_layers - 1) for i in range(n)]


@dataclasses.dataclass(frozen=True)
class SliceShape:
    """What a slice keeps of one model, resolved by the rule: two configs of equal shapes cut the same model (6
    layers at depth 0.85 and 0.9 both keep layers 0-4). ``heads`` and ``neurons`` are per layer of the model,
    kept or not (``neurons``: per FFN of the layer, in its order)."""

    num_layers: int
    layers_kept: tuple[int, ...]
    num_heads: tuple[int, ...]  # each layer's heads before the slice
    heads: tuple[int, ...]
    neurons: tuple[tuple[int, ...], ...]

    @property
    def width_key(self) -> tuple:
        """What the width decides: heads and neurons of every layer."""
        return self.heads, self.neurons

    def describe_depth(self) -> str:
        """``5 of 6 layers (0, 1, 2, 3, 5)``."""
        return f"{len(self.layers_kept)} of {self.num_layers} layers ({', '.join(map(str, self.layers_kept))})"

    def describe_width(self) -> str:
        """``9 of 12 heads and 1152 neurons per layer`` (per layer listed where the layers differ)."""
        per = [(k, h, sum(n)) for k, h, n in zip(self.heads, self.num_heads, self.neurons)]
        if len(set(per)) == 1:
            k, h, n = per[0]
            return f"{k} of {h} heads and {n} neurons per layer"
        return "heads and neurons per layer " + ", ".join(f"{k}/{h} and {n}" for k, h, n in per)


def slice_shape(structure: EncoderStructure, config: SliceConfig) -> SliceShape:
    """The layers, heads and neurons ``config`` keeps of the model ``structure`` describes, by its rounding rule:
    what :class:`SlicePass` cuts (it edits by this shape), without cutting (the check's refusals aside: a count
    may be 0 here)."""
    w, d, rule = config.width, config.depth, config.rounding
    layers = list(structure.layers)
    heads = tuple(width_keep(w, la.attention.num_heads, rule) for la in layers)
    neurons = tuple(tuple(ffn_keep(w, la.attention.num_heads, f.width, rule) for _, f in la.ffn_offsets())
                    for la in layers)
    return SliceShape(structure.num_layers, tuple(depth_keep(d, structure.num_layers, rule)),
                      tuple(la.attention.num_heads for la in layers), heads, neurons)


class SlicePass(StructuredPass):
    label = "slice"  # how messages name it: its command

    def __init__(self, config: SliceConfig):
        super().__init__()
        require_config(config, SliceConfig, "SlicePass")  # not an AttributeError in call()
        self.config = config

    def variant_step(self, result) -> dict:
        # DynaBERT's names: (0.5, 0.75) stays "w0.5-d0.75" although 6 layers at 0.75 keep 4
        w, d = self.config.width, self.config.depth
        return {"step": f"slice(w={w:g},d={d:g})", "width_factor": w, "depth_factor": d}

    def check(self, structure: EncoderStructure) -> None:
        """Refuse a width or depth that keeps no layer, or no head of some layer."""
        w, d, rule = self.config.width, self.config.depth, self.config.rounding
        how = "round" if rule == "dynabert" else "round-half-up"
        num_layers = structure.num_layers
        if not depth_keep(d, num_layers, rule):
            least = f"> {0.5 / num_layers:.4g}" if rule == "dynabert" else f">= {0.5 / num_layers:.4g}"
            raise PassRefusedError(f"depth {d} keeps {how}({d} * {num_layers}) = 0 of {num_layers} layers "
                                   f"(rounding {rule}); use depth {least}")
        for layer in structure.layers:
            h = layer.attention.num_heads
            if width_keep(w, h, rule) == 0:
                least = f"> {0.5 / h:.4g}" if rule == "dynabert" else f">= {0.5 / h:.4g}"
                raise PassRefusedError(f"width {w} keeps {how}({w} * {h}) = 0 heads of layer {layer.index} "
                                       f"(rounding {rule}); use width {least}")

    def edit(self, model: ir.Model, structure: EncoderStructure) -> Edit:
        w, d, rule = self.config.width, self.config.depth, self.config.rounding
        shape = slice_shape(structure, self.config)
        keep_layers = list(shape.layers_kept)
        plans = []
        for layer, h, kh, counts in zip(structure.layers, shape.num_heads, shape.heads, shape.neurons):
            # each FFN of the layer (MobileBERT stacks several) keeps its own first neurons by the rule
            kf = [start + j for (start, _), n in zip(layer.ffn_offsets(), counts) for j in range(n)]
            plans.append((layer, h, kh, kf))
        kept = set(keep_layers)
        for layer, _, kh, kf in plans:
            if layer.index in kept:  # dropped layers are removed whole below
                S.keep_heads(model.graph, layer, list(range(kh)))
                S.keep_neurons(model.graph, layer, kf)
        # taken after the width edits: a removed layer shares with a kept one only what both still read
        slots, stored = weight_slots(structure), stored_bytes(model.graph)
        dropped_outs = {id(v) for la in structure.layers if la.index not in kept
                        for v in (la.output, la.output_norm.outputs[0] if la.output_norm is not None else None)
                        if v is not None}
        from_dropped = {o.name for o in model.graph.outputs if id(_source(o)) in dropped_outs}
        S.drop_layers(model, structure, keep_layers)
        repeats = _repeated_outputs(model.graph, from_dropped)
        shared_note = dropped_sharing_note(slots, len(plans), keep_layers, stored - stored_bytes(model.graph))
        # the width really applied to heads, kh / H: a multiple of 1/H, as DynaBERT rounds it
        eff = sorted({round(kh / h, 6) for _, h, kh, _ in plans})
        by_index = {layer.index: (kh, kf) for layer, _, kh, kf in plans}
        stats = {
            "width": w, "depth": d,
            "rounding": rule, "rule": RULES[rule],
            "width_effective": eff[0] if len(eff) == 1 else eff,
            "width_note": ("head count rounded to a multiple of 1/heads per layer, as DynaBERT does; neurons follow "
                           "the heads" if rule == "dynabert" else
                           "head count rounded half up per layer; neurons rounded on their own, not with the heads"),
            "layers_kept": keep_layers,
            # per kept layer, in order: heads and FFN neurons kept
            "heads_kept": [by_index[i][0] for i in keep_layers],
            "neurons_kept": [len(by_index[i][1]) for i in keep_layers],
        }
        if shared_note is not None:
            stats["shared_weights_note"] = shared_note
        if repeats:
            said = "; ".join(f"{', '.join(repr(r) for r in rs)} {'repeat' if len(rs) > 1 else 'repeats'} {k!r}"
                             for k, rs in repeats.items())
            stats["note"] = (f"hidden-state outputs of removed layers pass the previous one through: {said} (the "
                             "outputs keep their names and number; transformers' own smaller model returns fewer "
                             "hidden states)")
        return Edit(stats, changed=(w, d) != (1, 1))


def _source(value: ir.Value) -> ir.Value:
    """``value`` with the Identity nodes before it followed back (a graph output that copies another value)."""
    for _ in range(64):
        node = value.producer()
        if node is None or node.op_type != "Identity" or not node.inputs or node.inputs[0] is None:
            break
        value = node.inputs[0]
    return value


def _repeated_outputs(graph: ir.Graph, from_dropped: set[str]) -> dict[str, list[str]]:
    """Graph outputs that were a removed layer's hidden state and now carry the same value as an output that was
    not (a model exposing all hidden states: a removed layer's becomes the one before it), as {that output: [its
    repeats]}, in the graph's output order."""
    groups: dict[int, list[str]] = {}
    for o in graph.outputs:
        groups.setdefault(id(_source(o)), []).append(o.name)
    found: dict[str, list[str]] = {}
    for names in groups.values():
        own = [n for n in names if n not in from_dropped]
        repeats = [n for n in names if n in from_dropped]
        if own and repeats:
            found[own[0]] = repeats
    order = [o.name for o in graph.outputs]
    return dict(sorted(found.items(), key=lambda kv: order.index(kv[0])))


def slice_file(src: str | os.PathLike, dst: str | os.PathLike, config: SliceConfig, *,
               verify: bool = True) -> DeployPassResult:
    """Load ``src``, slice it to ``config``'s width/depth, check and save ``dst`` atomically.

    ``verify=False`` skips ``run_pass_file``'s ORT gate (as the other passes' ``*_file`` functions)."""
    require_config(config, SliceConfig, "slice_file")
    return run_pass_file(SlicePass(config), src, dst, verify=verify)
