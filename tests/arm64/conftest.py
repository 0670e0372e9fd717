"""The ARM64 emulator for the tests that run models under QEMU (set up by scripts/setup_arm64.sh on first use)."""

from __future__ import annotations

import shutil

import pytest

from deploytool.errors import UnavailableError


@pytest.fixture(scope="module")
def emulator():
    from deploytool.arm64 import ensure_emulator
    from deploytool.settings import default_arm64_home

    if shutil.which("apt-get") is None and not (default_arm64_home() / "READY").exists():
        pytest.skip("ARM64 emulator cannot be set up here: no apt-get (scripts/setup_arm64.sh needs Debian/Ubuntu)")
    try:
        return ensure_emulator()
    except UnavailableError as e:
        pytest.skip(f"ARM64 emulator cannot be set up: {e}")
