"""The one compiled part of deploytool (everything else is in pyproject.toml): TWN ternarization in C loops,
:mod:`deploytool.quant._kernels`, which gives the numpy code's numbers bit for bit in fewer passes over memory
(tests/quant/test_kernels.py). Optional: where no C compiler is found the package installs without it and
the numpy code runs. ``-ffp-contract=off``: no fused multiply-add may change a rounding of the float64 sums
(GCC and Clang flags; another compiler fails the build of this module only)."""

import os

from setuptools import Extension, setup

# DEPLOYTOOL_PURE_PYTHON=1: a wheel without it (py3-none-any), for another machine's Python (deploytool.settings.
# pure_wheel_env: the wheel deploytool.arm64 installs in the emulated aarch64 Python, bench --remote-setup's)
pure = os.environ.get("DEPLOYTOOL_PURE_PYTHON") == "1"
setup(ext_modules=[] if pure else [Extension("deploytool.quant._kernels", ["deploytool/quant/_kernels.c"],
                                             extra_compile_args=["-O3", "-ffp-contract=off"], optional=True)])
