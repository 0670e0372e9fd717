"""The environment variables deploytool reads: the one module of the library that reads ``os.environ``.

Options live on configs and arguments (``BenchConfig.worker_python``, ``run_recipe(store=...)``, ...); the
command line (``deploytool.cli``) reads the variables that set them for its users (``DEPLOYTOOL_CACHE_DIR``,
``DEPLOYTOOL_PROFILES_DIR``, ``DEPLOYTOOL_BENCH_PYTHON``, ``DEPLOYTOOL_ARM64_HOME``) and passes explicit values down.
What remains here are process-level debug switches, each read by one function at the moment its decision is
made (so a test's ``monkeypatch.setenv`` or a user's ``export`` before a call is seen), never cached:

``DEPLOYTOOL_NO_FORK`` (any non-empty value)
    No forked copies of this process: the ``deploytool`` program runs its command in its own process (as with
    ``--debug``) and the verification gate checks in this process (``verify_model_guarded(fork=None)``; pass
    ``fork=`` to decide per call instead). For debuggers and profilers, which do not follow a fork.
``DEPLOYTOOL_EAGER_IMPORTS=1``
    ``import deploytool`` leaves sympy's import as it is (no deferred stand-in, see :mod:`deploytool.deferred`).

This module imports nothing heavy: the CLI reads it before it forks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["NO_FORK", "EAGER_IMPORTS", "no_fork", "eager_imports"]

NO_FORK = "DEPLOYTOOL_NO_FORK"
EAGER_IMPORTS = "DEPLOYTOOL_EAGER_IMPORTS"


def no_fork(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``DEPLOYTOOL_NO_FORK`` is set (non-empty) in ``environ`` (default: this process's environment)."""
    return bool((os.environ if environ is None else environ).get(NO_FORK))


def eager_imports(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``DEPLOYTOOL_EAGER_IMPORTS=1`` in ``environ`` (default: this process's environment)."""
    return (os.environ if environ is None else environ).get(EAGER_IMPORTS) == "1"
