"""deploytool itself on aarch64: its wheel and its aarch64 dependencies, pip-installed into a venv of the
emulated Python (QEMU user-mode, see :mod:`deploytool.arm64.emulator`).

This is how the core package (passes, runtime, bench, report; no torch) is proven to install and run
on aarch64 Linux without an aarch64 machine: the aarch64 wheels come from PyPI (``pip download
--platform manylinux_2_28_aarch64 ...`` on the host), the project's wheel is built here, and pip
itself, run by the emulated Python from pip's own wheel, resolves and installs them with the
guest's platform tags. Timings measured in that guest are emulated: ``deploytool bench`` records
``host.emulated = true`` when its worker runs through QEMU (:func:`bench_python`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from deploytool.arm64.emulator import Emulator
from deploytool.errors import UnavailableError
from deploytool.settings import pure_wheel_env

logger = logging.getLogger(__name__)

__all__ = ["AARCH64_PLATFORMS", "download_wheels", "install_core", "guest_python", "guest_env", "bench_python"]

AARCH64_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")


def _core_requirements(project: Path) -> list[str]:
    """The core dependencies of the project (pyproject's ``[project] dependencies``), and pip."""
    import tomllib

    data = tomllib.loads((project / "pyproject.toml").read_text())
    return [*data["project"]["dependencies"], "pip"]


def download_wheels(project: str | os.PathLike, dest: str | os.PathLike, *, timeout_s: float = 900) -> Path:
    """The aarch64 wheels of the core dependencies (from PyPI) and the project's own wheel, in ``dest``."""
    project, dest = Path(project), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    plat = [a for p in AARCH64_PLATFORMS for a in ("--platform", p)]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    steps = [
        [*pip, "download", "-q", "--only-binary=:all:", *plat, "--python-version", "311", "--implementation", "cp",
         "--abi", "cp311", "-d", str(dest), *_core_requirements(project)],
        [*pip, "wheel", "-q", "--no-deps", "-w", str(dest), str(project)],
    ]
    for cmd in steps:
        # the project's wheel without its compiled module (built for this x86-64 Python, a wheel pip would not
        # install on aarch64): the numpy code runs there, the same numbers
        env = pure_wheel_env() if "wheel" in cmd else None
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["?"])[-1]
            raise UnavailableError(f"cannot fetch the aarch64 wheels ({' '.join(cmd[3:5])}): {last}")
    return dest


def guest_python(emu: Emulator, venv: str | os.PathLike, cpu: str = "max") -> list[str]:
    """The command that runs the venv's Python on the emulated ``cpu``."""
    return [str(emu.qemu), "-cpu", cpu, "-L", str(emu.rootfs), str(Path(venv) / "bin" / "python3.11")]


def bench_python(emu: Emulator, venv: str | os.PathLike, cpu: str = "max") -> str:
    """``DEPLOYTOOL_BENCH_PYTHON`` for a ``deploytool bench`` run in the guest: its worker's Python."""
    import shlex

    return shlex.join(guest_python(emu, venv, cpu))


def guest_env() -> dict[str, str]:
    """This process's environment without what would point the venv's Python at the host's packages."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LD_", "VIRTUAL_ENV"))}


def install_core(emu: Emulator, venv: str | os.PathLike | None, wheels: str | os.PathLike, *,
                 timeout_s: float = 1800) -> Path:
    """A venv of the emulated Python with deploytool pip-installed from ``wheels`` (no index: only what
    :func:`download_wheels` fetched); returns it.

    ``venv`` None: a venv cached in the emulator's home, keyed by the dependency wheels (installing
    them under emulation takes minutes); deploytool's own wheel is reinstalled into it each time, so
    it is always the one in ``wheels``."""
    import hashlib

    wheels = Path(wheels)
    pip_wheel = next(iter(sorted(wheels.glob("pip-*.whl"))), None)
    own = sorted(wheels.glob("deploytool-*.whl"))
    if pip_wheel is None or not own:
        raise UnavailableError(f"{wheels}: no pip or deploytool wheel (run download_wheels first)")
    deps = sorted(p.name for p in wheels.glob("*.whl") if not p.name.startswith("deploytool-"))
    if venv is None:
        venv = emu.home / f"core-venv-{hashlib.sha256(' '.join(deps).encode()).hexdigest()[:12]}"
    venv = Path(venv)
    env = guest_env()
    pip = [*guest_python(emu, venv), str(pip_wheel / "pip"), "install", "-q", "--disable-pip-version-check",
           "--no-index", "--find-links", str(wheels)]
    if (venv / "INSTALLED").is_file():  # dependencies in place: this deploytool only
        cmds = [[*pip, "--no-deps", "--force-reinstall", str(own[-1])]]
    else:
        if venv.exists():
            import shutil

            shutil.rmtree(venv)  # a half-made venv from an interrupted install
        cmds = [[str(emu.qemu), "-cpu", "max", "-L", str(emu.rootfs), str(emu.python), "-m", "venv", "--without-pip",
                 str(venv)], [*pip, "deploytool"]]
    for cmd in cmds:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["?"])[-1]
            raise UnavailableError(f"installing deploytool into the emulated aarch64 Python failed: {last}")
    (venv / "INSTALLED").write_text("deploytool\n")
    return venv
