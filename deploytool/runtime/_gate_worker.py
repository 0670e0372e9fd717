"""The verification gate in a process of its own: ``python -m deploytool.runtime._gate_worker PARENT_PID RESULT_FD``.

:class:`deploytool.runtime.verify.GateProcess` starts it, usually as a pass starts, so that its
interpreter start, the import of ONNX Runtime and (for a pass that compares with its input) the input
model's session and reference outputs are done while the pass runs and writes its output. It reads
JSON lines on stdin and writes one JSON line of result to the file descriptor ``RESULT_FD`` (stdout
and stderr are free for whatever a library prints):

- ``{"op": "reference", "model": PATH, "feeds": FEEDS}`` (optional, first): run the reference model
  now on those feeds, in a thread of its own (a verify message read meanwhile has the output's session made
  and run while it finishes; the comparison waits for it), and keep its outputs (or the error it gave, raised
  only once the output itself has been checked, as :func:`~deploytool.runtime.verify.verify_model` orders
  it); or, in place of
  ``model``, ``"build": "module:function", "src": PATH, "folder": DIR, "argument": B64_PICKLE``: first
  make the reference with ``function(src, folder, argument)`` (a pass's reference builder, e.g. pack's
  fake-quantized model; it returns a path, or a :class:`~deploytool.runtime.verify.MemoryReference`, whose
  arrays are dropped once it has run, and which is built again should a verify message need it on other
  feeds), then run it;
- ``{"op": "warm", "bytes": N, "after_reference": bool}`` (optional, before any other): once the early
  reference has run (with ``after_reference``: the one the next message asks for; else at once), touch about
  N bytes of fresh memory, 4 MiB at a time, until they are touched or a verify message comes, and free them:
  they stay in the heap (see :func:`_keep_freed_memory`, set for this process now, before any thread
  starts), where the output's session allocates the weights ONNX Runtime converts or prepacks without faulting
  them in then;
- ``{"op": "verify", "model": PATH, "feeds": FEEDS, "reference": PATH or null, "rtol": .., "min_cosine":
  .., "reference_label": .., "count_casts": bool, "threads": N}`` (N: the output session's threads, one while the
  early reference still runs): :func:`~deploytool.runtime.verify.verify_model`'s checks, reusing the
  kept reference outputs when ``reference`` is the model run early (its path, or ``"@early"``) and every
  input it was fed is in ``FEEDS`` with the same values (so the verdict is the one the reference run now would give); then it
  answers ``ok``, the error's message, node and op, the largest difference, the seconds, whether the
  reference was reused, with ``count_casts`` the precision casts ORT inserted (from its profiler's record of
  the run), and this process's peak resident set (VmHWM), and exits.

It dies with the process that started it (``PR_SET_PDEATHSIG``, and an end of stdin ends it too).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from deploytool.runtime.procstat import available_memory_bytes, mallopt, release_free_memory
from deploytool.runtime.procstat import peak_rss_bytes as _peak_rss


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_TRIM_THRESHOLD = 64 << 20  # what glibc's own sliding thresholds reach at most


def _keep_freed_memory() -> None:
    """Before any thread starts: one malloc arena for every thread, blocks under 32 MiB from the heap, and
    freed heap memory kept up to 64 MiB (glibc's sliding maxima, fixed from the start). Memory that
    :func:`_warm` touches in its thread and frees is then what the main thread's ONNX Runtime session gets
    (with an arena per thread it would not be). Only when warming: threads that allocate at the same time
    then wait on one arena (pack's reference, built in two threads while the output's session is made, ended
    0.1-0.25 s later with it)."""
    from deploytool.runtime.verify import WARM_TENSOR_LIMIT  # glibc's largest mmap threshold

    set_ = mallopt()
    if set_ is not None:
        set_(_M_ARENA_MAX, 1)
        set_(_M_MMAP_THRESHOLD, WARM_TENSOR_LIMIT)  # smaller blocks come from the heap (a weight: 2-10 MB)
        set_(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


def _warm(nbytes: int, early: dict | None, arrived: threading.Event, warmed: dict) -> None:
    """Touch up to ``nbytes`` (at most half the memory available) of fresh heap once ``early`` (the early
    reference, if any) is ready, stopping when ``arrived`` is set; free it, keeping it in the heap. Records
    the bytes touched and the time it stopped in ``warmed``."""
    import numpy as np

    if early is not None:  # the output may come first (and be refused before the reference is waited for)
        while not early["ready"].wait(0.005) and not arrived.is_set():
            pass
    nbytes = min(int(nbytes), available_memory_bytes() // 2)
    set_ = mallopt()
    if set_ is not None and nbytes > 0:  # none of it is handed back when it is freed
        set_(_M_TRIM_THRESHOLD, max(_TRIM_THRESHOLD, nbytes + _TRIM_THRESHOLD))
    step = 4 << 20  # a few ms per block: the output's arrival stops it soon
    chunks = []
    done = 0
    try:
        while done < nbytes and not arrived.is_set():
            block = np.empty(min(step, nbytes - done), dtype=np.uint8)
            block[::4096] = 1  # one byte per page faults it in
            chunks.append(block)
            done += block.size
    finally:
        del chunks
        warmed.update(bytes=done, done=time.monotonic())


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the thread that started it ends (Linux); exit now if it already has."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: an end of stdin still ends this process
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def _same_feeds(used: dict, feeds: dict) -> bool:
    """True when every array the reference ran on is in ``feeds`` with the same dtype, shape and values."""
    import numpy as np

    return all(k in feeds and feeds[k].dtype == v.dtype and feeds[k].shape == v.shape and np.array_equal(feeds[k], v)
               for k, v in used.items())


def _build(spec: str, src: str, folder: str, argument: str):
    """Call ``module:function`` (a pass's reference builder) as ``function(src, folder, argument)``: the path
    of the model it wrote, or a :class:`~deploytool.runtime.verify.MemoryReference`."""
    import base64
    import importlib
    import pickle

    from deploytool.runtime.verify import MemoryReference

    module, name = spec.split(":")
    fn = getattr(importlib.import_module(module), name)
    out = fn(src, folder, pickle.loads(base64.b64decode(argument)))
    return out if isinstance(out, MemoryReference) else str(out)


def _drop_frames(e: BaseException) -> None:
    """Clear the tracebacks of ``e`` and the errors chained to it (their frames' locals stay alive with them)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e.__traceback__ = None
        e = e.__cause__ or e.__context__


def _run_reference(early: dict, msg: dict, V) -> None:
    """The early reference of ``msg``: built (by a pass's builder) and run on ``early["used"]``, its outputs or
    its error kept in ``early``, which is marked ready at the end, whatever happens."""
    try:
        t0 = time.perf_counter()
        early["begun"] = time.monotonic()
        try:
            if "build" in msg:
                early["path"] = _build(msg["build"], msg["src"], msg["folder"], msg["argument"])
                early["built"] = time.monotonic()
            early["outputs"] = V.reference_outputs(early["path"], early["used"], early["config"], notes=early["notes"])
        except Exception as e:  # noqa: BLE001 - raised in the verify turn, after the output's own checks
            early["error"] = e
        if isinstance(early["path"], V.MemoryReference):
            # its arrays (a model's worth) leave memory once it has run; should the output's feeds differ
            # (rare), the reference is built again
            early["path"] = None
            early["rebuild"] = lambda m=msg: _build(m["build"], m["src"], m["folder"], m["argument"])
            if "error" in early:  # its frames would keep the arrays
                _drop_frames(early["error"])
            release_free_memory()
        early["seconds"] = time.perf_counter() - t0
        early["done"] = time.monotonic()
    except BaseException as e:  # noqa: BLE001 - whatever went wrong is the verify turn's to report
        early.setdefault("error", e)
    finally:
        early["ready"].set()


def serve(lines, answer) -> int:
    """Handle the messages in ``lines`` (see the module doc); ``answer(dict)`` sends the one result."""
    from deploytool.runtime import verify as V

    try:
        return _serve(lines, answer)
    finally:
        V.output_arrived = None  # this process's (set by _serve); a test calling serve gets its own each time


def _serve(lines, answer) -> int:
    from deploytool.errors import VerificationError
    from deploytool.runtime import verify as V

    # {"name": what a verify message calls it, "path", "used" (feeds it ran on), "outputs" or "error", "seconds"}
    early: dict | None = None
    arrived = threading.Event()  # the verify message came: warming stops, a reference in memory widens
    V.output_arrived = arrived
    warmed: dict = {}  # _warm's thread and record
    warm_bytes = 0

    def start_warm(after: dict | None) -> None:
        warmed["thread"] = threading.Thread(target=_warm, args=(warm_bytes, after, arrived, warmed), daemon=True,
                                            name="deploytool-gate-warm")
        warmed["thread"].start()

    for line in lines:
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg["op"] == "reference":
            feeds = V.decode_feeds(msg["feeds"])
            early = {"name": msg.get("model", V.GateProcess.EARLY), "path": msg.get("model"), "used": feeds,
                     "config": msg.get("session_config"), "ready": threading.Event(), "notes": []}
            # in a thread of its own: a verify message that comes before it is done (pack's reference, built
            # here, can take longer than the pass) has the output's session made and run meanwhile; the
            # comparison waits for it (BERT-base pack: ~0.2 s of the output's session no longer after it)
            threading.Thread(target=_run_reference, args=(early, msg, V), daemon=True,
                             name="deploytool-gate-reference").start()
            if warm_bytes and not warmed:
                start_warm(early)
            continue
        if msg["op"] == "warm":
            _keep_freed_memory()
            warm_bytes = int(msg["bytes"])
            if not msg.get("after_reference"):
                start_warm(None)
            continue
        if msg["op"] != "verify":
            raise ValueError(f"unknown message {msg['op']!r}")
        arrived.set()
        out: dict = {"ok": False}
        marks: dict[str, float] = {"received": time.monotonic()}
        try:
            feeds = V.decode_feeds(msg["feeds"])
            reference = msg.get("reference")
            mine = early is not None and reference in (early["name"], V.GateProcess.EARLY)
            if reference == V.GateProcess.EARLY and not mine:
                raise ValueError("no early reference was given")
            cached = early if mine and _same_feeds(early["used"], feeds) else None
            if cached is not None:
                out["reference_reused"] = True
            elif reference is not None:
                out["reference_reused"] = False

            notes: list[str] = []  # the reference's (reference_outputs): said with the verdict

            def ref_outputs():
                if mine:
                    early["ready"].wait()
                    marks["reference_waited"] = time.monotonic()
                if mine and early["path"] is None and "rebuild" not in early:  # its build failed
                    raise early["error"]
                if cached is None:
                    if not mine:
                        return V.reference_outputs(reference, feeds, notes=notes)
                    return V.reference_outputs(early["rebuild"]() if "rebuild" in early else early["path"], feeds,
                                               early["config"], notes=notes)
                if "error" in cached:
                    raise cached["error"]
                notes.extend(cached["notes"])
                return cached["outputs"]

            threads = max(1, int(msg.get("threads") or 1))
            if early is not None and not early["ready"].is_set():
                # the reference still runs: more threads would take its core (pack's, still being built:
                # 0.1-0.2 s later; an XLM-R-large input's session, still running, 0.5 s later with its
                # weights and the output's mapped at once, the peak 1.3 -> 2.1 GB)
                threads = 1
            out["session_threads"] = threads
            report = V._verify(msg["model"], feeds, None if reference is None else ref_outputs, rtol=msg["rtol"],
                               min_cosine=msg.get("min_cosine"), reference_label=msg["reference_label"],
                               session_config=msg.get("session_config"), count_casts=bool(msg.get("count_casts")),
                               scratch_dir=msg.get("scratch_dir"),
                               marks=marks, threads=threads)
            out.update(ok=True, max_diff=report.max_diff, seconds=report.seconds, outputs=list(report.outputs),
                       inserted_casts=report.inserted_casts, reference_note=notes[0] if notes else None)
        except VerificationError as e:
            out.update(error=str(e), node=e.node, op=e.op, failure=e.failure)
        except Exception as e:  # noqa: BLE001 - reported to the parent as one line
            out.update(error=f"the verification gate failed ({type(e).__name__}: {' '.join(str(e).split())[:300]})")
        marks["verdict"] = time.monotonic()
        if early is not None and early["ready"].is_set():
            for key in ("begun", "built", "done"):
                if key in early:
                    marks[f"reference_{key}"] = early[key]
            if "seconds" in early:
                out["reference_s"] = round(early["seconds"], 3)
        if "thread" in warmed:  # it stopped at its next block after the message (or waits for a reference)
            warmed["thread"].join(timeout=1.0)
        if "done" in warmed:
            marks["warm_done"] = warmed["done"]
            out["warmed_bytes"] = warmed["bytes"]
        out.update(peak_rss_bytes=_peak_rss(), marks=marks)
        answer(out)
        return 0
    return 0  # stdin ended before a verify message: the parent gave up


def _answer_to(result_fd: int):
    def answer(out: dict) -> None:
        with os.fdopen(result_fd, "w") as f:
            f.write(json.dumps(out) + "\n")

    return answer


def main(argv: list[str]) -> int:
    parent_pid, result_fd = int(argv[0]), int(argv[1])
    _die_with_parent(parent_pid)
    import numpy  # noqa: F401 - imported now, while the parent still runs its pass
    import onnxruntime  # noqa: F401

    code = serve(sys.stdin, _answer_to(result_fd))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: the caller waits for this exit (sessions freed by the kernel)


def serve_forked(parent_pid: int, stdin_fd: int, result_fd: int) -> int:
    """:func:`main` in a forked copy of the parent (``verify._ForkedWorker``): the messages come on ``stdin_fd``.
    It runs as a fresh worker would: the parent's fault handler is already off (``verify._fork_copy``), and the
    collector is on for what the copy makes, the parent's objects frozen (never walked, so their pages stay
    shared). Returns the exit code; the caller ends the copy with ``os._exit``."""
    import gc

    _die_with_parent(parent_pid)
    gc.freeze()
    gc.enable()
    import onnxruntime  # noqa: F401 - imported now, while the parent still runs its pass

    with os.fdopen(stdin_fd, "r") as lines:
        code = serve(lines, _answer_to(result_fd))
    sys.stdout.flush()
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
