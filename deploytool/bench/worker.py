"""The benchmark worker: ``python -m deploytool.bench.worker`` (a clean process, torch never loaded).

Protocol: one JSON request on stdin; JSON lines on stdout: ``{"event": "progress", ...}`` while
it runs, then exactly one ``{"event": "result", ...}`` or ``{"event": "error", ...}``. Native
libraries that print are redirected to stderr so they cannot corrupt the protocol.

Request: ``{"models": [{"path", "plan"}], "seq_lens", "batch", "warmup", "runs", "seed", "spec",
"schedule", "block_runs"}``. For each sequence length: ``warmup`` rounds, then ``runs`` timed runs
per model. Schedule ``interleaved``: in each round every model runs once, in the order given (A, B,
A, B, ...), so a slow phase of the machine hits all models alike. Schedule ``blocks``: each model
runs ``block_runs`` times in a row, then the next (A x n, B x n, A x n, ...): an idle session's
threads have gone to sleep before the other session runs. ``"prime_runs": n``: before each of a
model's timed stretches (each run when interleaved, each block), n untimed runs of it, so that the
timed runs find the caches as runs of that model alone leave them (the other models' runs had
evicted its weights). With ``spec.shared_thread_pool`` the worker first creates ONNX Runtime's
process-wide pool of ``spec.intra_op_threads`` threads and every session runs on it. Memory is the process's peak RSS (VmHWM, else ru_maxrss) at the end, with the RSS before
the first session as baseline: run one model per worker for a clean per-model peak.

Serve mode (``"serve": true`` in the request): the worker builds the sessions, answers
``{"event": "ready"}`` and then times one segment per command line on stdin (see :func:`serve`),
so that a benchmark can alternate short segments of several workers in time (each model alone, then
the models together, then alone again) and compare each segment with its neighbours.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback
from typing import IO, Any

PROTOCOL = 1


def _rss_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _peak_rss() -> tuple[int, str]:
    hwm = _rss_kb("VmHWM")
    if hwm is not None:
        return hwm * 1024, "VmHWM"
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (maxrss if sys.platform == "darwin" else maxrss * 1024), "ru_maxrss"


def _current_rss() -> int | None:
    rss = _rss_kb("VmRSS")
    return rss * 1024 if rss is not None else None


class _Out:
    def __init__(self, stream: IO[str], interval_s: float) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self.last = 0.0

    def send(self, obj: dict[str, Any]) -> None:
        self.stream.write(json.dumps(obj) + "\n")
        self.stream.flush()

    def progress(self, done: int, total: int, phase: str, seq_len: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.interval_s:
            self.last = now
            self.send({"event": "progress", "done": done, "total": total, "phase": phase, "seq_len": seq_len})


def _refuse_torch() -> None:
    if "torch" in sys.modules:  # the point of the clean process; never measure with torch loaded
        raise RuntimeError("torch is loaded in the benchmark worker; timings would not be clean")



def _open(request: dict[str, Any]):
    """The request's sessions (on the shared pool when the spec says so), their infos, plans and outputs."""
    _refuse_torch()
    from deploytool.runtime.inputs import InputPlan
    from deploytool.runtime.session import build_session, init_shared_thread_pool
    from deploytool.runtime.spec import SessionSpec

    spec = SessionSpec.from_dict(request["spec"])
    if spec.shared_thread_pool:
        init_shared_thread_pool(max(1, spec.intra_op_threads), max(1, spec.inter_op_threads))
    sessions, infos, plans, outputs = [], [], [], []
    for m in request["models"]:
        sess, info = build_session(m["path"], spec, timing=True)  # QNN on x86: an emulator, never timed
        sessions.append(sess)
        infos.append(info)
        plans.append(InputPlan.from_dict(m["plan"]))
        outputs.append([o.name for o in sess.get_outputs()])
    return sessions, infos, plans, outputs


class _Timer:
    """Times the sessions' runs at one sequence length in the request's schedule."""

    def __init__(self, request: dict[str, Any], sessions, plans, outputs) -> None:
        self.sessions, self.plans, self.outputs = sessions, plans, outputs
        self.schedule_from(request)
        self.batch, self.seed = int(request["batch"]), int(request["seed"])
        self.paths = [m["path"] for m in request["models"]]
        self.feeds: dict[int, list[dict[str, Any]]] = {}
        self.origin = time.perf_counter_ns()

    def schedule_from(self, request: dict[str, Any]) -> None:
        """The order of the timed runs: ``schedule``, ``block_runs`` and ``prime_runs`` of ``request``."""
        self.schedule = request.get("schedule", "interleaved")
        self.block = max(1, int(request.get("block_runs", 1))) if self.schedule == "blocks" else 1
        self.prime = int(request.get("prime_runs", 0)) if len(self.sessions) > 1 else 0

    def feeds_at(self, seq: int) -> list[dict[str, Any]]:
        from deploytool.runtime.inputs import make_feeds
        from deploytool.errors import DeployError

        if seq not in self.feeds:
            feeds = [make_feeds(p, self.batch, seq, self.seed) for p in self.plans]
            for i, sess in enumerate(self.sessions):  # one checked run each, outside the timed loops
                try:
                    sess.run(self.outputs[i], feeds[i])
                except Exception as e:
                    raise DeployError(f"{self.paths[i]}: ONNX Runtime failed to run the model at batch {self.batch}, "
                                      f"sequence length {seq} ({' '.join(str(e).split())[:300]}); is the sequence "
                                      "longer than the model allows?") from e
            self.feeds[seq] = feeds
        return self.feeds[seq]

    def time(self, seq: int, warmup: int, runs: int, on_done=None) -> tuple[list[list[float]], list[list[float]]]:
        """(samples ms per model, start of each run in ms since the worker's origin), after ``warmup`` rounds."""
        feeds = self.feeds_at(seq)
        sessions, outputs, perf, prime = self.sessions, self.outputs, time.perf_counter_ns, self.prime
        samples: list[list[float]] = [[] for _ in sessions]
        starts: list[list[float]] = [[] for _ in sessions]
        gc.collect()
        gc.disable()
        try:
            for _ in range(warmup):
                for i, sess in enumerate(sessions):
                    sess.run(outputs[i], feeds[i])
                if on_done:
                    on_done(len(sessions), "warmup")
            left = runs
            while left > 0:
                n = min(self.block, left)
                for i, sess in enumerate(sessions):
                    for _ in range(prime):  # untimed: this model's weights back in the caches
                        sess.run(outputs[i], feeds[i])
                    for _ in range(n):
                        t0 = perf()
                        sess.run(outputs[i], feeds[i])
                        samples[i].append((perf() - t0) / 1e6)
                        starts[i].append((t0 - self.origin) / 1e6)
                left -= n
                if on_done:
                    on_done(n * len(sessions), "runs")
        finally:
            gc.enable()
        return samples, starts


def _final(infos, baseline_rss: int | None) -> dict[str, Any]:
    import onnxruntime as ort

    peak, source = _peak_rss()
    return {
        "event": "result",
        "protocol": PROTOCOL,
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "onnxruntime": ort.__version__,
        "torch_loaded": "torch" in sys.modules,
        "sessions": [i.to_dict() for i in infos],
        "memory": {"baseline_rss_bytes": baseline_rss, "peak_rss_bytes": peak, "source": source},
    }


def run(request: dict[str, Any], out: _Out) -> dict[str, Any]:
    _refuse_torch()
    seq_lens = [int(s) for s in request["seq_lens"]]
    warmup, runs = int(request["warmup"]), int(request["runs"])
    baseline_rss = _current_rss()
    sessions, infos, plans, outputs = _open(request)
    timer = _Timer(request, sessions, plans, outputs)
    total = len(seq_lens) * (warmup + runs) * len(sessions)
    done = 0
    latencies: dict[str, list[list[float]]] = {}
    started: dict[str, list[list[float]]] = {}  # start of each timed run, ms since the sessions were built
    for seq in seq_lens:
        def on_done(n: int, phase: str, seq: int = seq) -> None:
            nonlocal done
            done += n
            out.progress(done, total, phase, seq)

        latencies[str(seq)], started[str(seq)] = timer.time(seq, warmup, runs, on_done)
    out.progress(done, total, "done", seq_lens[-1], force=True)
    return {**_final(infos, baseline_rss), "latencies_ms": latencies, "started_ms": started}


def serve(request: dict[str, Any], out: _Out, commands: IO[str]) -> dict[str, Any]:
    """Keep the sessions and time one segment per command line until ``{"cmd": "stop"}`` or EOF.

    Command ``{"cmd": "segment", "seq_len", "warmup", "runs"}`` (optionally with that segment's
    ``schedule``, ``block_runs`` and ``prime_runs``) answers ``{"event": "segment",
    "latencies_ms": [[...] per model], "started_ms": [[...]], "wall_ms"}``. Between segments the
    worker blocks on its input (no CPU), so several workers can take turns on the same cores.
    """
    baseline_rss = _current_rss()
    sessions, infos, plans, outputs = _open(request)
    timer = _Timer(request, sessions, plans, outputs)
    out.send({"event": "ready", "pid": os.getpid(), "sessions": [i.to_dict() for i in infos]})
    for line in commands:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("cmd") == "stop":
            break
        if cmd.get("cmd") != "segment":
            raise ValueError(f"unknown worker command {cmd.get('cmd')!r}")
        t0 = time.perf_counter_ns()
        # a segment may carry its own schedule (SegmentWorker.segment); else the request's stays
        timer.schedule_from({**request, **{k: cmd[k] for k in ("schedule", "block_runs", "prime_runs") if k in cmd}})
        samples, starts = timer.time(int(cmd["seq_len"]), int(cmd.get("warmup", 0)), int(cmd["runs"]))
        out.send({"event": "segment", "latencies_ms": samples, "started_ms": starts,
                  "wall_ms": (time.perf_counter_ns() - t0) / 1e6})
    return _final(infos, baseline_rss)


def main() -> int:
    # keep the protocol on a private copy of stdout; anything native code prints goes to stderr
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    request = json.loads(sys.stdin.readline())  # one line; in serve mode commands follow, one per line
    out = _Out(proto, float(request.get("progress_interval_s", 0.1)))
    try:
        out.send(serve(request, out, sys.stdin) if request.get("serve") else run(request, out))
        return 0
    except Exception as e:  # reported to the parent, which raises the same DeployError class
        out.send({"event": "error", "type": type(e).__name__,
                  "deploy_error": _is_deploy_error(e),
                  "message": " ".join(str(e).split()) or type(e).__name__,
                  "traceback": traceback.format_exc()[-4000:]})
        return 1


def _is_deploy_error(e: BaseException) -> bool:
    from deploytool.errors import DeployError

    return isinstance(e, DeployError)


if __name__ == "__main__":
    sys.exit(main())
