"""Two runs at once: on one step store, and into one output folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploytool.errors import OutputPathError
from deploytool.recipes import load_recipe
from deploytool.recipes.cache import StepCache
from deploytool.recipes.runner import run_recipe

WORKSPACE_ROWS = 40  # the workspace fixture's toy.csv (tests/recipes/conftest.py)


def test_a_step_another_run_finished_meanwhile_is_kept(tmp_path):
    """Two runs on one store building the same step: the second to finish removed the first's finished folder and
    put its own in its place, under a run that was reading it (its next step failed on a missing file)."""
    store = tmp_path / "store"
    a, b = StepCache(tmp_path / "a", store=store), StepCache(tmp_path / "b", store=store)
    key = "ab" * 32
    with b.building("export", key) as tb:
        (tb / "model.onnx").write_text("b")
        with a.building("export", key) as ta:
            (ta / "model.onnx").write_text("a")
        final = a.dir_for("export", key)
        inode = (final / "model.onnx").stat().st_ino
    assert (final / "model.onnx").read_text() == "a" and (final / "model.onnx").stat().st_ino == inode
    assert sorted(p.name for p in store.iterdir()) == [final.name]  # b's copy is gone, no temporary left
    assert a.done("export", key) and b.done("export", key)


_HOLD = """
import sys, time
from pathlib import Path
from deploytool.recipes.cache import run_folder_lock
with run_folder_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_run_into_the_same_folder_at_once_is_refused(workspace, tmp_path):
    """Another recipe run into the same folder meanwhile removed the first's models as an earlier run's, and the two
    wrote their reports and run.json over each other: both said they succeeded, one folder described the other."""
    doc = {"schema_version": 1, "name": "c", "model": {"path": "model"}, "task": "sequence-classification",
           "train": [], "export": {"exporter": "torch"}, "devices": ["x86-host"],
           "sweep": {"width": [1.0], "depth": [1.0], "precision": ["fp32"]},
           "bench": {"seq_len": [8], "runs": 2, "warmup": 0}}
    path = workspace / "concurrent.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputPathError, match=rf"another run \(pid {holder.pid}\) is writing into this folder"):
            run_recipe(load_recipe(path), out, store=tmp_path / "store")
        assert not (out / "models").exists()  # refused before any work
    finally:
        holder.kill()
        holder.wait()
    res = run_recipe(load_recipe(path), out, store=tmp_path / "store")  # the lock went with its process
    assert [v.path.name for v in res.variants] == ["c-w1-d1-fp32.onnx"]
    assert Path(res.variants[0].path).is_file()


def test_the_unfinished_steps_of_a_run_that_died_are_removed(workspace, tmp_path):
    """A run killed mid-step (SIGKILL, the OOM killer during training) left its temporary step folder, a half-made
    checkpoint, in the store and in a run folder's steps/ until `cache clear`. A run removes them, in the store
    only while no other run uses it (that one's temporary folders are its steps in progress)."""
    from deploytool.recipes.cache import active_run

    doc = {"schema_version": 1, "name": "d", "model": {"path": "model"}, "task": "sequence-classification",
           "train": [], "export": {"exporter": "torch"}, "devices": ["x86-host"],
           "sweep": {"width": [1.0], "depth": [1.0], "precision": ["fp32"]},
           "bench": {"seq_len": [8], "runs": 2, "warmup": 0}}
    path = workspace / "died.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    store, out, local = tmp_path / "store", tmp_path / "out", tmp_path / "local"
    dead = store / ".train-finetune-0123456789abcdef.k1_x9ab"
    dead.mkdir(parents=True)
    (dead / "model.safetensors").write_bytes(b"half")
    with active_run(store):  # another run is using the store: its temporary folders are its steps in progress
        run_recipe(load_recipe(path), out, store=store)
        assert dead.is_dir()
    run_recipe(load_recipe(path), out, store=store)
    assert not dead.exists()
    assert not [p for p in store.iterdir() if p.name.startswith(".") and not p.name.startswith(".run-")]
    left = local / "steps" / ".export-0123456789ab.q7_zz1"
    left.mkdir(parents=True)
    run_recipe(load_recipe(path), local)  # no store: the steps live in the run's folder
    assert not left.exists() and any((local / "steps").iterdir())
