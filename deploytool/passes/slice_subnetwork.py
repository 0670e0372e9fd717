"""DynaBERT width/depth slicing of an ONNX encoder (Hou et al. 2020, "DynaBERT").

Width ``w`` (0 < w <= 1): every layer keeps its first ``round(w * H)`` attention heads and its first
``round(w * F)`` FFN neurons, in the model's current order (reorder by importance first, see
``reorder.py``, so that "first" means "most important"). The head count is rounded, so the width
that is really applied is a multiple of ``1/H`` as in DynaBERT; the result reports it as
``width_effective``. Q, K, V keep their first ``k*d`` output rows (whole heads of size ``d``), O keeps
the matching ``k*d`` input columns; the FFN intermediate keeps its first ``m`` output rows and bias
entries, the FFN output its first ``m`` input columns. Hidden size, embeddings, LayerNorms and the
heads on top are untouched.

Depth ``d`` (0 < d <= 1): keep ``n = round(d * L)`` layers, indices ``floor(i / d)`` for
``i = 0 .. n-1`` (DynaBERT's "every other layer" rule: d=0.5 of 12 keeps 0,2,4,6,8,10; d=0.75 keeps
0,1,2,4,5,6,8,9,10). A dropped layer's successor reads the previous kept layer's output.
"""

from __future__ import annotations

import dataclasses
import math
import os

import onnx_ir as ir

from deploytool.errors import ConfigError, PassRefusedError
from deploytool.graph.structure import EncoderStructure
from deploytool.passes import _surgery as S
from deploytool.passes.base import DeployPass, DeployPassResult, run_pass_file

__all__ = ["SliceConfig", "SlicePass", "slice_file", "depth_keep", "width_keep"]


def _check_fraction(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{name}: {v!r} is not a number; expected 0 < {name} <= 1")
    if not math.isfinite(v) or not 0 < v <= 1:
        raise ConfigError(f"{name}: {v!r} out of range; expected 0 < {name} <= 1")


@dataclasses.dataclass(frozen=True)
class SliceConfig:
    """DynaBERT sub-network: keep ``width`` of each layer's heads and neurons and ``depth`` of the layers."""

    width: float = 1.0
    depth: float = 1.0

    def __post_init__(self):
        _check_fraction("width", self.width)
        _check_fraction("depth", self.depth)


def _round(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))  # half up (not banker's rounding)


def width_keep(width: float, n: int) -> int:
    return _round(width * n)


def depth_keep(depth: float, num_layers: int) -> list[int]:
    """Layer indices kept at depth ``depth``: floor(i / depth) for i < round(depth * L)."""
    n = _round(depth * num_layers)
    return [min(int(math.floor(i / depth + 1e-9)), num_layers - 1) for i in range(n)]


class SlicePass(S.StructuredPass, DeployPass):
    def __init__(self, config: SliceConfig):
        super().__init__()
        self.config = config

    def edit(self, model: ir.Model, structure: EncoderStructure) -> dict:
        w, d = self.config.width, self.config.depth
        num_layers = structure.num_layers
        keep_layers = depth_keep(d, num_layers)
        if not keep_layers:
            raise PassRefusedError(f"depth {d} keeps round({d} * {num_layers}) = 0 of {num_layers} layers; "
                                   f"use depth >= {0.5 / num_layers:.4g}")
        plans = []
        for layer in structure.layers:
            h, f = layer.attention.num_heads, layer.ffn.width
            kh, kf = width_keep(w, h), width_keep(w, f)
            if kh == 0:
                raise PassRefusedError(f"width {w} keeps round({w} * {h}) = 0 heads of layer {layer.index}; "
                                       f"use width >= {0.5 / h:.4g}")
            plans.append((layer, h, kh, max(kf, 1)))
        kept = set(keep_layers)
        for layer, _, kh, kf in plans:
            if layer.index in kept:  # dropped layers are removed whole below
                S.keep_heads(model.graph, layer, list(range(kh)))
                S.keep_neurons(model.graph, layer, list(range(kf)))
        S.drop_layers(model, structure, keep_layers)
        # the width really applied to heads, kh / H: a multiple of 1/H, as DynaBERT rounds it
        eff = sorted({round(kh / h, 6) for _, h, kh, _ in plans})
        return {
            "width": w, "depth": d,
            "width_effective": eff[0] if len(eff) == 1 else eff,
            "width_note": "head count rounded to a multiple of 1/heads per layer, as DynaBERT does",
            "layers_kept": keep_layers,
            "_modified": (w, d) != (1, 1),
        }


def slice_file(src: str | os.PathLike, dst: str | os.PathLike, config: SliceConfig) -> DeployPassResult:
    """Load ``src``, slice it to ``config``'s width/depth, check and save ``dst`` atomically."""
    return run_pass_file(SlicePass(config), src, dst)
