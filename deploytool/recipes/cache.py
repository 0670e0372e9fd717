"""Content-addressed step cache for recipe runs.

Each step's key is the SHA-256 of its kind, its config (canonical JSON) and the keys of its inputs,
so changing one pass reruns that step and everything downstream, and a rerun skips what is done.
A step's outputs live in ``<out>/steps/<kind>-<key[:12]>/``; the folder is written under a
temporary name and renamed when the step succeeded, so a failed step leaves nothing half-made and
the outputs of completed steps survive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def canonical(obj: Any) -> Any:
    """A JSON-able, order-stable form of configs (dataclasses, enums, paths, tuples)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [canonical(x) for x in obj]
    if isinstance(obj, float) and obj.is_integer():
        return obj  # keep 1.0 and 1 distinct on purpose: json does
    return obj


def step_key(kind: str, config: Any, inputs: list[str]) -> str:
    payload = json.dumps({"kind": kind, "config": canonical(config), "inputs": list(inputs), "v": 1},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclasses.dataclass
class StepCache:
    root: Path

    def dir_for(self, kind: str, key: str) -> Path:
        return self.root / "steps" / f"{kind}-{key[:12]}"

    def done(self, kind: str, key: str) -> bool:
        return (self.dir_for(kind, key) / ".done").is_file()

    @contextlib.contextmanager
    def building(self, kind: str, key: str) -> Iterator[Path]:
        """Yield a temporary folder; it becomes the step's folder only if the block succeeds."""
        final = self.dir_for(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            yield tmp
            (tmp / ".done").write_text(key + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
