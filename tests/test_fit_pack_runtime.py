"""fit packs ternary/binary candidates for the runtime measured fastest per device and sequence length."""

from __future__ import annotations

import pytest

from deploytool.fit import pack_runtime
from deploytool.profiles import load_profile


@pytest.mark.parametrize("seq,expected", [(1, "memory"), (8, "speed"), (128, "speed")])
def test_x86_host_uses_nbits_only_where_it_won(seq, expected):
    runtime, why = pack_runtime(load_profile("x86-host"), seq)
    assert runtime == expected
    assert "x86" in why and "measured" in why


@pytest.mark.parametrize("name", ["raspberry-pi-5", "graviton3"])
def test_arm64_keeps_int8_kernels_without_device_timing(name):
    for seq in (1, 128):
        runtime, why = pack_runtime(load_profile(name), seq)
        assert runtime == "speed" and "QEMU" in why

