"""The environment variables deploytool reads: the one module of the library that reads ``os.environ``.

Options live on configs and arguments (``BenchConfig.worker_python``, ``run_recipe(store=...)``, ...); the
command line (``deploytool.cli``) reads the variables that set them for its users (``DEPLOYTOOL_CACHE_DIR``,
``DEPLOYTOOL_PROFILES_DIR``, ``DEPLOYTOOL_BENCH_PYTHON``, ``DEPLOYTOOL_ARM64_HOME``) and passes explicit values down.
What remains here are process-level debug switches, each read by one function at the moment its decision is
made (so a test's ``monkeypatch.setenv`` or a user's ``export`` before a call is seen), never cached:

``DEPLOYTOOL_NO_FORK=1`` (or ``true``, ``yes``, ``on``; ``0``, ``false``, ``no``, ``off`` or empty: not set)
    No forked copies of this process: the ``deploytool`` program runs its command in its own process (as with
    ``--debug``) and the verification gate checks in this process (``verify_model_guarded(fork=None)``; pass
    ``fork=`` to decide per call instead). For debuggers and profilers, which do not follow a fork.
``DEPLOYTOOL_EAGER_IMPORTS=1`` (the same values)
    ``import deploytool`` leaves sympy's import as it is (no deferred stand-in, see :mod:`deploytool.deferred`).

Any other value of a switch is refused by the command line (:func:`switch_error`, one line, exit 2); the library,
which cannot refuse an import, takes it as before (``DEPLOYTOOL_NO_FORK``: set; ``DEPLOYTOOL_EAGER_IMPORTS``: not).

``DEPLOYTOOL_PURE_PYTHON=1`` (read by ``setup.py``, set here for the builds that need it)
    A wheel of deploytool without its compiled module (``deploytool.quant._kernels``, built for this machine's
    Python): :func:`pure_wheel_env` is the environment of ``pip wheel`` for another machine (the emulated aarch64
    Python, a device of ``bench --remote-setup``), whose pip refuses a wheel tagged for this one.

``DEPLOYTOOL_TEST_EXPORTS`` (a folder; ``off`` for none)
    Where the conformance matrix (``deploytool.testing.conformance``: the tests and ``benchmarks/conformance.py``)
    keeps the ONNX files other tools' exporters wrote of its tiny models, keyed by what made them (default
    :func:`conformance_export_cache`'s folder): :func:`conformance_export_cache`.

and the default folders, resolved when a default is used (never at import: a program that sets ``HOME`` or
``XDG_CACHE_HOME`` after ``import deploytool`` gets its folder):

``XDG_CACHE_HOME`` (else ``$HOME/.cache``)
    :func:`cache_home`, under which :func:`default_step_store` (``deploytool/steps``),
    :func:`default_arm64_home` (``deploytool/arm64``, where ``scripts/setup_arm64.sh`` puts the emulator) and
    :func:`default_host_cache` (``deploytool/host``) and :func:`conformance_export_cache` (``deploytool/test-exports``) lie.

This module imports nothing heavy: the CLI reads it before it forks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["NO_FORK", "EAGER_IMPORTS", "PURE_PYTHON", "no_fork", "eager_imports", "switch_error", "pure_wheel_env", "home", "cache_home", "default_step_store",
           "default_arm64_home", "default_host_cache", "TEST_EXPORTS", "conformance_export_cache"]

NO_FORK = "DEPLOYTOOL_NO_FORK"
EAGER_IMPORTS = "DEPLOYTOOL_EAGER_IMPORTS"
PURE_PYTHON = "DEPLOYTOOL_PURE_PYTHON"
TEST_EXPORTS = "DEPLOYTOOL_TEST_EXPORTS"


def pure_wheel_env() -> dict[str, str]:
    """This process's environment with :data:`PURE_PYTHON` set: ``pip wheel`` of the project then builds it without
    its compiled module (the numpy code runs where it is installed, the same numbers)."""
    return {**os.environ, PURE_PYTHON: "1"}


_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})


def _switch(name: str, environ: Mapping[str, str] | None) -> str:
    return (os.environ if environ is None else environ).get(name, "").strip().lower()


def no_fork(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``DEPLOYTOOL_NO_FORK`` is on in ``environ`` (default: this process's environment): any value but
    ``0``, ``false``, ``no``, ``off`` or empty (``DEPLOYTOOL_NO_FORK=0`` forked no longer)."""
    return _switch(NO_FORK, environ) not in _OFF


def eager_imports(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``DEPLOYTOOL_EAGER_IMPORTS`` is ``1``, ``true``, ``yes`` or ``on`` in ``environ`` (default: this
    process's environment; ``yes`` was ignored without a word)."""
    return _switch(EAGER_IMPORTS, environ) in _ON


def switch_error(environ: Mapping[str, str] | None = None) -> str | None:
    """The one-line complaint about a debug switch set to a value that is neither on nor off
    (``DEPLOYTOOL_EAGER_IMPORTS=ture``), None when both are fine: the command line refuses such a value."""
    env = os.environ if environ is None else environ
    for name in (NO_FORK, EAGER_IMPORTS):
        if _switch(name, env) not in _ON | _OFF:
            return (f"{name}={env[name]!r}: expected 1, true, yes or on to turn it on (0, false, no, off or unset: "
                    "off)")
    return None


def home(environ: Mapping[str, str] | None = None) -> Path:
    """The user's home folder now: ``$HOME`` in ``environ`` (default: this process's environment), else the
    account's own (as ``os.path.expanduser('~')`` finds it without ``HOME``)."""
    value = (os.environ if environ is None else environ).get("HOME")
    if value:
        return Path(value)
    if environ is not None:  # an environment given without HOME: the account's folder, not this process's HOME
        try:
            import pwd

            return Path(pwd.getpwuid(os.getuid()).pw_dir)
        except (ImportError, KeyError):
            pass
    return Path(os.path.expanduser("~"))


def cache_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME`` when set (non-empty), else ``<home>/.cache``: read now, on each call."""
    value = (os.environ if environ is None else environ).get("XDG_CACHE_HOME")
    return Path(value) if value else home(environ) / ".cache"


def default_step_store(environ: Mapping[str, str] | None = None) -> Path:
    """The shared step store's default folder: ``<cache_home>/deploytool/steps``."""
    return cache_home(environ) / "deploytool" / "steps"


def default_arm64_home(environ: Mapping[str, str] | None = None) -> Path:
    """The ARM64 emulator's default folder, where ``scripts/setup_arm64.sh`` puts it unless told otherwise:
    ``<cache_home>/deploytool/arm64``."""
    return cache_home(environ) / "deploytool" / "arm64"


def default_host_cache(environ: Mapping[str, str] | None = None) -> Path:
    """The host measurement cache's default folder: ``<cache_home>/deploytool/host``."""
    return cache_home(environ) / "deploytool" / "host"


def conformance_export_cache(environ: Mapping[str, str] | None = None) -> Path | None:
    """The conformance matrix's export cache: ``$DEPLOYTOOL_TEST_EXPORTS`` (``off``, ``0`` or ``none``: no cache),
    else ``<cache_home>/deploytool/test-exports``."""
    value = (os.environ if environ is None else environ).get(TEST_EXPORTS, "").strip()
    if value.lower() in ("off", "0", "none"):
        return None
    return Path(value) if value else cache_home(environ) / "deploytool" / "test-exports"
