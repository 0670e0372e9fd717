"""One size unit everywhere: decimal megabytes (1 MB = 10^6 bytes), as device budgets are written."""

from __future__ import annotations

MB = 1_000_000

#: the longest sequence any command takes (--seq-len, --max-length, a recipe's seq_lens, calibration's length): one
#: limit everywhere; a model's own position table is checked against the length where it matters
MAX_SEQ_LEN = 1 << 16
#: the fixed sequence length a Snapdragon HTP model (QNN context binary: static shapes) is made for when none is
#: given and the model's inputs do not fix one (``qnn`` commands and ``bundle``)
QNN_SEQ_LEN = 128


def fmt_mb(mb: float) -> str:
    """Megabytes as sizes and budgets are read: ``437.62`` -> ``"437.6"``; under 1 MB two significant digits
    (``0.0412`` -> ``"0.041"``: a tiny model is not "0.0 MB" beside a budget of 0.03 MB)."""
    return f"{mb:.1f}" if mb >= 1 or mb == 0 else f"{mb:.2g}"


def fmt_bytes(n: int | float | None) -> str:
    """``90355827`` -> ``"90.36 MB"``; ``1234`` -> ``"1.2 kB"``; ``None`` -> ``"-"``."""
    if n is None:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e5:
        return f"{n / 1e6:.2f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{int(n)} B"
