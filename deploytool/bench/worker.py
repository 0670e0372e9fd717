"""The benchmark worker: ``python -m deploytool.bench.worker`` (a clean process, torch never loaded).

Protocol: one JSON request on stdin; JSON lines on stdout: ``{"event": "progress", ...}`` while
it runs, then exactly one ``{"event": "result", ...}`` or ``{"event": "error", ...}``. Native
libraries that print are redirected to stderr so they cannot corrupt the protocol.

Request: ``{"models": [{"path", "plan"}], "seq_lens", "batch", "warmup", "runs", "seed", "spec",
"schedule", "block_runs"}``. For each sequence length: ``warmup`` rounds, then ``runs`` timed runs
per model. Schedule ``interleaved``: in each round every model runs once, in the order given (A, B,
A, B, ...), so a slow phase of the machine hits all models alike. Schedule ``blocks``: each model
runs ``block_runs`` times in a row, then the next (A x n, B x n, A x n, ...): an idle session's
threads have gone to sleep before the other session runs. With ``spec.shared_thread_pool`` the
worker first creates ONNX Runtime's process-wide pool of ``spec.intra_op_threads`` threads and
every session runs on it. Memory is the process's peak RSS (VmHWM, else ru_maxrss) at the end, with the RSS before
the first session as baseline: run one model per worker for a clean per-model peak.
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


def run(request: dict[str, Any], out: _Out) -> dict[str, Any]:
    torch_at_start = "torch" in sys.modules
    if torch_at_start:  # the point of the clean process; never measure with torch loaded
        raise RuntimeError("torch is loaded in the benchmark worker; timings would not be clean")

    from deploytool.runtime.inputs import InputPlan, make_feeds
    from deploytool.errors import DeployError
    from deploytool.runtime.session import build_session, init_shared_thread_pool
    from deploytool.runtime.spec import SessionSpec

    import onnxruntime as ort

    spec = SessionSpec.from_dict(request["spec"])
    schedule = request.get("schedule", "interleaved")
    block = max(1, int(request.get("block_runs", 1))) if schedule == "blocks" else 1
    if spec.shared_thread_pool:
        init_shared_thread_pool(max(1, spec.intra_op_threads), max(1, spec.inter_op_threads))
    seq_lens = [int(s) for s in request["seq_lens"]]
    batch, warmup, runs, seed = (int(request[k]) for k in ("batch", "warmup", "runs", "seed"))
    models = request["models"]

    baseline_rss = _current_rss()
    sessions, infos, plans, outputs = [], [], [], []
    for m in models:
        sess, info = build_session(m["path"], spec)
        sessions.append(sess)
        infos.append(info)
        plans.append(InputPlan.from_dict(m["plan"]))
        outputs.append([o.name for o in sess.get_outputs()])

    total = len(seq_lens) * (warmup + runs) * len(models)
    done = 0
    latencies: dict[str, list[list[float]]] = {}
    started: dict[str, list[list[float]]] = {}  # start of each timed run, ms since the first session ran
    perf = time.perf_counter_ns
    origin = perf()
    for seq in seq_lens:
        feeds = [make_feeds(p, batch, seq, seed) for p in plans]
        samples: list[list[float]] = [[] for _ in models]
        starts: list[list[float]] = [[] for _ in models]
        for i, sess in enumerate(sessions):  # one checked run each, outside the timed loops
            try:
                sess.run(outputs[i], feeds[i])
            except Exception as e:
                raise DeployError(f"{models[i]['path']}: ONNX Runtime failed to run the model at batch {batch}, "
                                  f"sequence length {seq} ({' '.join(str(e).split())[:300]}); is the sequence "
                                  "longer than the model allows?") from e
        gc.collect()
        gc.disable()
        try:
            for _ in range(warmup):
                for i, sess in enumerate(sessions):
                    sess.run(outputs[i], feeds[i])
                done += len(sessions)
                out.progress(done, total, "warmup", seq)
            left = runs
            while left > 0:
                n = min(block, left)
                for i, sess in enumerate(sessions):
                    for _ in range(n):
                        t0 = perf()
                        sess.run(outputs[i], feeds[i])
                        samples[i].append((perf() - t0) / 1e6)
                        starts[i].append((t0 - origin) / 1e6)
                left -= n
                done += n * len(sessions)
                out.progress(done, total, "runs", seq)
        finally:
            gc.enable()
        latencies[str(seq)] = samples
        started[str(seq)] = starts
    out.progress(done, total, "done", seq_lens[-1], force=True)
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
        "latencies_ms": latencies,
        "started_ms": started,
    }


def main() -> int:
    # keep the protocol on a private copy of stdout; anything native code prints goes to stderr
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    request = json.loads(sys.stdin.read())
    out = _Out(proto, float(request.get("progress_interval_s", 0.1)))
    try:
        out.send(run(request, out))
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
