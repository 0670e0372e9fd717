"""The ARM64 emulator: ONNX Runtime's Linux aarch64 wheel under QEMU user-mode, on an x86-64 host.

``scripts/setup_arm64.sh`` (shipped with deploytool) builds it in one user folder, by default
``$XDG_CACHE_HOME/deploytool/arm64``, else ``~/.cache/deploytool/arm64``: a static ``qemu-aarch64`` 10
(Debian bookworm-backports), an arm64 Debian 12 userland with Python 3.11 (unpacked packages, no chroot),
and the aarch64 wheels of onnxruntime and numpy unpacked into ``site/``. The emulated Python runs as::

    PYTHONPATH=site qemu-aarch64 -cpu CPU -L rootfs rootfs/usr/bin/python3.11 script.py ...

``-L`` makes QEMU resolve absolute paths (the ELF interpreter, shared libraries) under ``rootfs``
first; every other path (the model, the guest script) is the host's own. ``-cpu`` picks the CPU model,
so ONNX Runtime sees that core's ISA (HWCAPs) and selects its kernels accordingly (NEON only on
cortex-a72; fp16 and dot product on neoverse-n1; SVE on a64fx; SME on max). Timings under emulation
mean nothing; outputs do.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from deploytool.errors import ConfigError, OutputPathError, UnavailableError
from deploytool.settings import default_arm64_home

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_HOME", "SETUP_SCRIPT", "Emulator", "find_emulator", "setup_emulator", "ensure_emulator"]  # noqa: F822 - module __getattr__

# DEFAULT_HOME, where scripts/setup_arm64.sh puts the emulator unless told otherwise
# (``$XDG_CACHE_HOME/deploytool/arm64``, else ``~/.cache/deploytool/arm64``), is read when asked for (module
# __getattr__ below), not at import: a program that sets HOME or XDG_CACHE_HOME after importing deploytool gets
# its folder. find_emulator/setup_emulator without a home resolve it on each call.
#: the project's own set-up script (repository root / scripts)
SETUP_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup_arm64.sh"


def __getattr__(name: str) -> Path:
    if name == "DEFAULT_HOME":  # the emulator's default folder as the environment says now
        return default_arm64_home()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class Emulator:
    home: Path

    @property
    def qemu(self) -> Path:
        return self.home / "qemu" / "qemu-aarch64"

    @property
    def rootfs(self) -> Path:
        return self.home / "rootfs"

    @property
    def site(self) -> Path:
        return self.home / "site"

    @property
    def python(self) -> Path:
        return self.rootfs / "usr" / "bin" / "python3.11"

    @property
    def onnxruntime_version(self) -> str | None:
        """The aarch64 onnxruntime release set up here, as the set-up script's READY stamp names it (``ort=X``)."""
        import re

        try:
            found = re.search(r"\bort=(\S+)", (self.home / "READY").read_text())
        except OSError:
            return None
        return found.group(1) if found else None

    def command(self, cpu: str, args: list[str]) -> list[str]:
        return [str(self.qemu), "-cpu", cpu, "-L", str(self.rootfs), str(self.python), *args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LD_"))}
        env["PYTHONPATH"] = str(self.site)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["OMP_NUM_THREADS"] = "1"
        return env

    def run_python(self, cpu: str, args: list[str], *, timeout_s: float | None = None) -> subprocess.CompletedProcess:
        """Run the emulated Python on ``cpu``; a QEMU that cannot start raises UnavailableError."""
        cmd = self.command(cpu, args)
        try:
            return subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise UnavailableError(f"ARM64 emulator on -cpu {cpu} did not finish within {timeout_s:g} s") from None
        except OSError as e:
            raise UnavailableError(f"ARM64 emulator cannot start ({self.qemu}: {e.strerror})") from None


def find_emulator(home: str | os.PathLike | None = None) -> Emulator:
    """The emulator set up in ``home`` (default: :func:`deploytool.settings.default_arm64_home`, now);
    UnavailableError if it is not there."""
    emu = Emulator(Path(home) if home is not None else default_arm64_home())
    missing = [p for p in (emu.home / "READY", emu.qemu, emu.python, emu.site / "onnxruntime") if not p.exists()]
    if missing:
        raise UnavailableError(f"ARM64 emulator is not set up in {emu.home} (missing {missing[0].name}); "
                               f"run: bash {_script_hint()} {emu.home}")
    return emu


def check_emulator_home(home: str | os.PathLike, name: str = "emulator folder") -> Path:
    """ConfigError ``name: <home>: is a file, not a folder (the emulator folder)`` when ``home`` cannot be the
    emulator's folder (a file, a path under one, a link that leads to no folder): the set-up script's ``mkdir -p``
    failed on it with the shell's own 'File exists', after the models had been loaded."""
    from deploytool.onnx_io import check_folder_path

    try:
        return check_folder_path(home, "emulator folder")
    except OutputPathError as e:
        raise ConfigError(f"{name}: {e}") from None


def setup_emulator(home: str | os.PathLike | None = None, *, script: str | os.PathLike | None = None,
                   timeout_s: float = 900) -> Emulator:
    """Run the set-up script into ``home`` (idempotent: a finished set-up returns at once)."""
    target = check_emulator_home(Path(home) if home is not None else default_arm64_home())
    script_path = Path(script) if script is not None else SETUP_SCRIPT
    if not script_path.is_file():
        raise UnavailableError(f"ARM64 emulator set-up script not found ({script_path}); this install of deploytool "
                               "does not carry scripts/setup_arm64.sh")
    bash = shutil.which("bash")
    if bash is None:
        raise UnavailableError("ARM64 emulator set-up needs bash")
    logger.info("setting up the ARM64 emulator in %s (one time, about a minute)", target)
    try:
        proc = subprocess.run([bash, str(script_path), str(target)], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise UnavailableError(f"ARM64 emulator set-up did not finish within {timeout_s:g} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
        why = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        raise UnavailableError(f"ARM64 emulator cannot be set up in {target}: {why}")
    return find_emulator(target)


def ensure_emulator(home: str | os.PathLike | None = None, *, setup: bool = True,
                    on_setup: Callable[[], None] | None = None) -> Emulator:
    """The emulator in ``home``; set it up first when missing and ``setup`` is true (calling ``on_setup`` just
    before: the CLI's notice that a minute's download starts)."""
    try:
        return find_emulator(home)
    except UnavailableError:
        if not setup:
            raise
    if on_setup is not None:
        on_setup()
    return setup_emulator(home)


def _script_hint() -> str:
    try:
        return os.path.relpath(SETUP_SCRIPT)
    except ValueError:
        return str(SETUP_SCRIPT)
