"""The compiled loops of :mod:`deploytool.quant` (``_kernels``, built from ``_kernels.c`` by the install), or
None where the package was installed without a C compiler: callers then run their numpy code, which gives
the same numbers."""

from __future__ import annotations

try:
    from deploytool.quant import _kernels as kernels
except ImportError:  # pragma: no cover - depends on the installation
    kernels = None

__all__ = ["kernels"]
