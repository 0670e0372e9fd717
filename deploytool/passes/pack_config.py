"""What ``pack`` packs and how: the weight schemes, the runtimes and :class:`PackConfig` (validated by
the one mechanism, :mod:`deploytool.validation`). The maths and the graphs are in the other ``pack_*``
modules; :mod:`deploytool.passes.pack_weights` is the pass."""

from __future__ import annotations

import enum
from typing import Optional

from deploytool.errors import ConfigError
from deploytool.quant.quantizers import Granularity
from deploytool.validation import Flag, Integer, OneOf, schema

__all__ = ["PACKING_KEY", "QAT_NOTE", "PackConfig", "Runtime", "WeightScheme"]


from deploytool.variant import PACKING_KEY  # noqa: E402 - the one definition, re-exported here


QAT_NOTE = ("post-training ternary/binary weights lose accuracy without training; recover it with "
            "quantization-aware distillation (`deploytool qat`, TernaryBERT/BinaryBERT)")


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
