"""pack's codes, computed once for two processes, two at a time.

``pack`` quantizes every weight (BERT-base: 85 M linear weights and a 23 M-value word table, ~0.45 s on one core
here), and the verification gate's process, which builds its reference while the pass runs
(:func:`~deploytool.passes.pack_weights.build_memory_reference`), quantized them all again on the other core.
Both need the same numbers: the reference is ``codes * scales`` with the packer's own codes, and the gate checks
that the packed graph computes it (the quantizer's rule is tested on its own, against TWN/BWN restated). So the
pass now computes each weight's codes once, two weights at a time on the two cores the gate's process no longer
spends on them (:class:`CodesAhead`), and hands each to the gate's process as it is done (:class:`SharedCodes`:
``.npy`` files in a folder of the gate process's own, removed with it). The gate's builder takes a weight's codes
from there when they come, and computes any that never come itself once the pass says it is done: the
reference never depends on what was shared, only its speed does.

A weight is keyed by its initializer's name (the input's, which the pass and the builder both read).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["CodesAhead", "SharedCodes"]

# a pass quantizes its weights two at a time (numpy releases the GIL) when they hold at least this much
AHEAD_MIN_BYTES = 16 << 20


class SharedCodes:
    """The folder through which a pass hands its quantized weights to the gate's process.

    Writer (the pass): :meth:`put` each result, then :meth:`done` (also when it fails). Reader (the gate's
    builder): :meth:`get` waits for a key until it is there (a tuple of arrays, mapped copy-on-write) or the
    writer is done without it (None: compute it yourself). A write that fails turns the writer off (nothing
    more is shared; the reader computes the rest); the writer never raises."""

    DONE = "DONE"

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.ok = True

    @staticmethod
    def _key(key: str) -> str:
        return hashlib.sha1(key.encode()).hexdigest()[:20]

    def put(self, key: str, arrays: tuple[np.ndarray, ...]) -> None:
        if not self.ok:
            return
        k = self._key(key)
        try:
            for i, a in enumerate(arrays):
                tmp = self.folder / f".{k}.{i}.npy"
                np.save(tmp, np.asarray(a), allow_pickle=False)
                os.replace(tmp, self.folder / f"{k}.{i}.npy")
            (self.folder / f"{k}.n").write_text(str(len(arrays)))  # last: the arrays are all there
        except OSError as e:  # e.g. the folder is gone (the gate's process was closed): the reader computes
            logger.debug("pack: sharing codes stopped (%s)", e)
            self.ok = False

    def done(self) -> None:
        try:
            (self.folder / self.DONE).write_text("")
        except OSError:
            pass

    def get(self, key: str, poll: float = 0.002) -> tuple[np.ndarray, ...] | None:
        k = self._key(key)
        count = self.folder / f"{k}.n"
        while True:
            finished = (self.folder / self.DONE).exists()  # read before the key: a put before done is seen
            if count.exists():
                n = int(count.read_text())
                return tuple(np.load(self.folder / f"{k}.{i}.npy", mmap_mode="c", allow_pickle=False)
                             for i in range(n))
            if finished:
                return None
            time.sleep(poll)


class CodesAhead:
    """A pass's quantization jobs (key -> function giving a tuple of arrays), computed in the order given, two
    at a time when ``threads`` is 2 (else each when asked for), each result handed to ``shared`` (a
    :class:`SharedCodes`, or None) as soon as it is computed. :meth:`get` returns a job's result (waiting for
    it). A context manager: leaving it cancels what has not started, waits for what has, and tells ``shared``
    it is done, whatever happened. A job's error is raised where its result is asked for."""

    def __init__(self, jobs: list[tuple[str, Callable[[], tuple]]], *, threads: int = 1,
                 shared: SharedCodes | None = None) -> None:
        self.jobs = dict(jobs)
        self.shared = shared
        self.threads = threads
        self.pool = None
        self.futures: dict = {}

    def _run(self, key: str):
        out = self.jobs[key]()
        if self.shared is not None:
            self.shared.put(key, out)
        return out

    def __enter__(self) -> CodesAhead:
        if self.threads > 1 and len(self.jobs) > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="deploytool-pack")
            self.futures = {key: self.pool.submit(self._run, key) for key in self.jobs}
        return self

    def get(self, key: str) -> tuple:
        future = self.futures.pop(key, None)
        return future.result() if future is not None else self._run(key)

    def __exit__(self, *exc) -> None:
        try:
            if self.pool is not None:
                for future in self.futures.values():
                    future.cancel()
                self.pool.shutdown(wait=True)
        finally:
            if self.shared is not None:
                self.shared.done()
