"""What ``pack`` packs and how: the weight schemes, the runtimes and :class:`PackConfig` (validated by
the one mechanism, :mod:`deploytool.validation`). The maths and the graphs are in the other ``pack_*``
modules; :mod:`deploytool.passes.pack_weights` is the pass."""

from __future__ import annotations

import enum
from typing import Optional

from deploytool.errors import ConfigError
from deploytool.quant.quantizers import Granularity
from deploytool.validation import Flag, Integer, OneOf, schema

__all__ = ["PACKING_KEY", "QAT_NOTE", "PackConfig", "Runtime", "WeightScheme", "training_note"]


from deploytool.variant import PACKING_KEY  # noqa: E402 - the one definition, re-exported here


QAT_NOTE = ("post-training ternary/binary weights lose accuracy without training; recover it with "
            "quantization-aware distillation (`deploytool qat`, TernaryBERT/BinaryBERT)")


def training_note(variant, cfg: "PackConfig") -> tuple[str, str | None]:
    """(the note ``pack`` prints, a one-line warning or None) for packing ``variant`` (the input's
    :class:`deploytool.variant.Variant`, or None) with ``cfg``.

    A model without a :class:`~deploytool.variant.Trained` record gets :data:`QAT_NOTE` (its weights are quantized
    post-training). A model trained quantization-aware gets a note saying so, and the warning lists what of ``cfg``
    differs from the training, where the packed numbers are then not the trained ones: another weight scheme
    (trained ternary, packed binary; trained binary with TWS, packed ternary), per-matrix scales for weights trained
    with per-row ones (the other way round packs the same numbers: each row's scale is the matrix's), another
    low-bit scheme for word embeddings trained quantized (or low-bit ones trained fp32), and int8 activations for a
    model trained with fp32 ones. A slice or pruned copy of the trained model is noted as such: its weights are
    packed exactly as trained, but the network at that size was not trained."""
    trained = getattr(variant, "trained", None)
    if trained is None:
        return QAT_NOTE, None
    what = f"{trained.weights}, {trained.granularity} scales" + ("" if trained.embeddings else ", fp32 word embeddings")
    note = ("the weights were trained for ternary/binary packing "
            f"(quantization-aware distillation, `deploytool qat`: {what})")
    from deploytool.variant import variant_label

    at = variant_label(trained.width, trained.depth, "")[:-1]
    now = variant_label(variant.width, variant.depth, "")[:-1]
    if at != now:
        note += (f"; this model is {now}, cut from the {at} that was trained: its weights pack as trained, but the "
                 "cut network was not trained at its size (distil it at that size with `deploytool qat` to recover "
                 "its accuracy)")
    differ = []
    if cfg.weights.value != trained.weights:
        differ.append(f"weights trained {trained.weights}, packed {cfg.weights.value}")
    if trained.granularity == "row" and cfg.granularity.value == "layer":
        differ.append("scales trained per row, packed per matrix (layer)")
    low_bit = {"ternary", "binary", "split-binary"}
    emb = cfg.embeddings.value
    said = bool(differ) and emb == cfg.weights.value  # the embeddings follow --weights: said once, above
    if trained.embeddings and emb in low_bit and emb != trained.weights and not said:
        differ.append(f"word embeddings trained {trained.weights}, packed {emb}")
    elif not trained.embeddings and emb in low_bit:
        differ.append(f"word embeddings trained fp32, packed {emb}")
    int8_acts = cfg.runtime is not Runtime.MEMORY or cfg.accuracy_level == 4
    if trained.act_bits == 0 and int8_acts:
        differ.append(f"activations trained fp32, computed in int8 by runtime {cfg.runtime.value}")
    if not differ:
        return note, None
    as_trained = f"--weights {trained.weights} --granularity {trained.granularity}"
    as_trained += "" if trained.embeddings else " --embeddings fp32"
    as_trained += " --runtime memory --accuracy-level 0" if trained.act_bits == 0 else ""
    return note, ("pack settings differ from the quantization-aware training's (" + "; ".join(differ)
                  + f"): the packed model is not the trained one and loses the training's benefit (as trained: "
                  f"{as_trained})")


class WeightScheme(str, enum.Enum):
    TERNARY = "ternary"
    BINARY = "binary"
    SPLIT_BINARY = "split-binary"  # two binary planes per weight (BinaryBERT's TWS); tables: one plane
    INT8 = "int8"  # embeddings only
    FP32 = "fp32"  # embeddings only: leave them as they are


class Runtime(str, enum.Enum):
    SPEED = "speed"  # int8 kernels (DynamicQuantizeMatMul), INT2 / 1-bit on disk
    MEMORY = "memory"  # MatMulNBits bits=2: 2-bit in memory as well
    DENSEST = "densest"  # 5 trits per byte on disk (binary: 1 bit), int8 kernels


_LINEAR = ("ternary", "binary", "split-binary")


_TABLES = ("ternary", "binary", "split-binary", "int8", "fp32")


def check_nbits_options(accuracy_level: int, block_size: int) -> None:
    """The MatMulNBits options a config takes (pack's and repack's): ConfigError naming the field."""
    if accuracy_level not in (0, 4):
        raise ConfigError(f"accuracy_level: expected 0 (fp32 activations) or 4 (int8), got {accuracy_level!r}")
    if block_size & (block_size - 1):
        raise ConfigError(f"block_size: expected a power of two in [16, 256], got {block_size!r}")


@schema
class PackConfig:
    """What to pack and how. ``embeddings=None`` means the same scheme as ``weights``."""

    weights: OneOf(WeightScheme, _LINEAR) = WeightScheme.TERNARY
    embeddings: Optional[OneOf(WeightScheme, _TABLES)] = None
    runtime: OneOf(Runtime) = Runtime.SPEED
    granularity: OneOf(Granularity) = Granularity.LAYER
    # MatMulNBits (runtime memory): 4 = int8 activations (fast), 0 = fp32 (exact)
    accuracy_level: Integer(0, 4, what="0 = fp32 activations, 4 = int8") = 4
    block_size: Integer(16, 256, what="a power of two") = 128  # MatMulNBits block along K
    upgrade_opset: Flag = True  # pack_file: upgrade models below opset 25 when INT2 is needed, else below 13
    pack_head: Flag = False  # pooler/classifier weights too (with the encoder's scheme), not fp32
    position_embeddings: OneOf(WeightScheme, _TABLES) = WeightScheme.FP32  # position + token-type tables

    def __post_init__(self) -> None:
        if self.embeddings is None:
            object.__setattr__(self, "embeddings", self.weights)
        check_nbits_options(self.accuracy_level, self.block_size)

    @property
    def linear_scheme(self) -> str:
        """The storage scheme of linear weights: ternary2 | trit5 | binary1 | nbits2."""
        if self.runtime is Runtime.MEMORY:
            return "nbits2"
        if self.weights in (WeightScheme.BINARY, WeightScheme.SPLIT_BINARY):
            return "binary1"
        return "trit5" if self.runtime is Runtime.DENSEST else "ternary2"

    @property
    def embedding_scheme(self) -> str | None:
        return self._table_scheme(self.embeddings)

    @property
    def position_scheme(self) -> str | None:
        """The storage scheme of the position and token-type tables (None: fp32)."""
        return self._table_scheme(self.position_embeddings)

    def _table_scheme(self, e: WeightScheme) -> str | None:
        if e is WeightScheme.FP32:
            return None
        if e is WeightScheme.INT8:
            return "int8"
        if e is WeightScheme.BINARY:
            return "binary1"
        if e is WeightScheme.SPLIT_BINARY:
            return "binary1x2"  # two binary planes per row, side by side
        return "trit5" if self.runtime is Runtime.DENSEST else "ternary2"

    @property
    def needs_int2(self) -> bool:
        return self.linear_scheme == "ternary2"


def packing_record_key(record: dict[str, dict], name: str) -> str | None:
    """The entry of ``pack``'s record that the stored initializer ``name`` belongs to: ``pack`` names a weight's
    stored forms ``<weight>_<form>`` (the weight's name made safe); the longest such weight, or None."""
    from deploytool.graph._util import safe_name

    hits = [key for key in record if name.startswith(safe_name(key) + "_")]
    return max(hits, key=len) if hits else None
