"""ARM64 without the device: ONNX Runtime's aarch64 wheel under QEMU user-mode (see ``emulator``),
and ``verify-arm64``, which compares its outputs with the host's (see ``verify``)."""

from deploytool.arm64.emulator import SETUP_SCRIPT, Emulator, ensure_emulator, find_emulator, setup_emulator
from deploytool.arm64.verify import (
    ModelCheck,
    OutputCheck,
    Tolerance,
    VerifyConfig,
    VerifyResult,
    model_precision,
    tolerance_for,
    verify_arm64,
)

__all__ = [
    "DEFAULT_HOME",
    "SETUP_SCRIPT",
    "Emulator",
    "ModelCheck",
    "OutputCheck",
    "Tolerance",
    "VerifyConfig",
    "VerifyResult",
    "ensure_emulator",
    "find_emulator",
    "model_precision",
    "setup_emulator",
    "tolerance_for",
    "verify_arm64",
]


def __getattr__(name: str):
    if name == "DEFAULT_HOME":  # resolved when asked for (emulator.__getattr__), not frozen at this import
        from deploytool.arm64 import emulator

        return emulator.DEFAULT_HOME
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
