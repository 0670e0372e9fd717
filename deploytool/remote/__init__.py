"""Benchmarks on real devices over SSH (``deploytool bench --remote``): see :mod:`deploytool.remote.ssh`."""

from deploytool.remote.ssh import RemoteConfig, RemoteError, RemoteRun, bench_remote, output_paths

__all__ = ["RemoteConfig", "RemoteError", "RemoteRun", "bench_remote", "output_paths"]
