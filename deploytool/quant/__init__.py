"""Low-bit weight maths shared by the packing pass and quantization-aware training (numpy only).

- :mod:`deploytool.quant.quantizers`: TWN ternary and BWN binary quantizers, BinaryBERT's
  two binary planes (ternary weight splitting), symmetric int8 rows.
- :mod:`deploytool.quant.packing`: exact bit packers (2 bits, 5 trits per byte, 1 bit) and unpackers.
"""

from deploytool.quant.packing import (
    pack_2bit,
    pack_bits,
    pack_trit5,
    packed_len,
    unpack_2bit,
    unpack_bits,
    unpack_trit5,
)
from deploytool.quant.quantizers import (
    Granularity,
    binarize,
    binarize_planes,
    dequantize,
    quantize_int8_rows,
    split_ternary,
    ternarize,
)

__all__ = [
    "Granularity",
    "binarize",
    "binarize_planes",
    "dequantize",
    "pack_2bit",
    "pack_bits",
    "pack_trit5",
    "packed_len",
    "quantize_int8_rows",
    "split_ternary",
    "ternarize",
    "unpack_2bit",
    "unpack_bits",
    "unpack_trit5",
]
