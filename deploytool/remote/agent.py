"""The device side of ``deploytool bench --remote``: ``python -m deploytool.remote.agent request.json``.

Run by :mod:`deploytool.remote.ssh` in its work folder on the device. The request (JSON, written by the
host) names the copied models, the profile (a copied YAML, or ``host``) and the bench options; the
agent builds the same :class:`~deploytool.bench.BenchConfig` the local ``deploytool bench`` builds,
calls :func:`~deploytool.bench.run_benchmark` and writes the bench JSON (atomically) where the request
says. The request is a file, not command-line flags, so host and device agree however the CLI's
spelling moves. A :class:`~deploytool.errors.DeployError` is one ``error:`` line and exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from deploytool.errors import DeployError

__all__ = ["run_request"]

PROTOCOL = 1


def run_request(request: dict[str, Any], base: Path) -> Path:
    """Run one bench request (paths relative to ``base``); returns the written bench JSON."""
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.profiles import load_profile
    from deploytool.profiles.host import HostOptions

    if request.get("protocol") != PROTOCOL:
        raise DeployError(f"request protocol {request.get('protocol')!r}: this deploytool speaks {PROTOCOL} "
                          "(update deploytool on the device)")
    prof = request.get("profile")
    profile = None
    if prof is not None:
        profile = load_profile(str(base / prof) if prof.endswith((".yaml", ".yml")) else prof,
                               host=HostOptions(measure=False))
    config = BenchConfig(models=tuple(base / m for m in request["models"]), seq_lens=request["seq_lens"],
                         batch=request["batch"], threads=request["threads"], warmup=request["warmup"],
                         runs=request["runs"], seed=request["seed"], profile=profile, busy=request["busy"],
                         schedule=request["schedule"], block_runs=request["block_runs"],
                         prime_runs=request.get("prime_runs", 3),
                         thread_pool=request["thread_pool"], wait_quiet_s=request["wait_quiet_s"])
    out = base / request["output"]
    write_json(run_benchmark(config), out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m deploytool.remote.agent REQUEST.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        request = json.loads(path.read_text())
        out = run_request(request, path.parent)
    except DeployError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_code
    except (OSError, ValueError, KeyError) as e:
        print(f"error: bad request {path}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
