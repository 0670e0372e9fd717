"""``transform(src, dst, config)`` where ``dst`` is the input itself: by the same path, another spelling of it, a
symlink to it or a hard link to it. Every pass refuses before any work, in one line naming the output, and the
input's bytes stay as they were (a hard link got through: the output replaced the file under the link's name, which
is the input under another name). From the CLI: exit 2, one error line."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploytool.errors import OutputPathError
from deploytool.passes import pass_table, transform
from deploytool.testing.bench_models import encoder_like

# the arguments a pass's config needs to be built (the others build without any)
_NEEDS = {"HeadPruneConfig": {"heads": {0: [0]}}, "FFNPruneConfig": {"keep": 0.5}}
CONFIGS = [e.config for e in pass_table().values()]


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _as(kind: str, model: Path) -> Path:
    """``model`` named another way: itself, a spelling with ``./``, a symlink or a hard link to it."""
    if kind == "same":
        return model
    if kind == "dot":
        return model.parent / "." / model.name
    other = model.parent / f"{kind}.onnx"
    if kind == "symlink":
        other.symlink_to(model.name)
    else:
        os.link(model, other)
    return other


@pytest.mark.parametrize("kind", ["same", "dot", "symlink", "hardlink"])
@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_pass_refuses_to_write_over_its_input(tmp_path, cls, kind):
    model = encoder_like(tmp_path / "m.onnx")
    before, mtime = _sha(model), model.stat().st_mtime_ns
    dst = _as(kind, model)
    with pytest.raises(OutputPathError, match="output would overwrite the input") as e:
        transform(model, dst, cls(**_NEEDS.get(cls.__name__, {})))
    assert str(e.value).startswith(f"{dst}:") and "\n" not in str(e.value)
    assert _sha(model) == before and model.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"m.onnx", dst.name})  # no temporary left


@pytest.mark.parametrize("kind", ["same", "hardlink"])
def test_cli_output_that_is_the_input_is_one_line_exit_2(tmp_path, kind):
    model = encoder_like(tmp_path / "m.onnx")
    before = _sha(model)
    dst = _as(kind, model)
    r = subprocess.run([sys.executable, "-m", "deploytool", "slice", str(model), "--width", "0.5", "-o", str(dst)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "overwrite the input" in lines[0], r.stderr
    assert _sha(model) == before
