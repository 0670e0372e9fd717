"""A damaged step folder in the store (a truncated file, a missing one, a file replaced by a folder) is never
handed on as a finished step: the run says so in one line and makes the step again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from deploytool.cli import main

WORKSPACE_ROWS = 40  # the workspace fixture's toy.csv (tests/recipes/conftest.py)

RECIPE = {"schema_version": 1, "name": "dmg", "model": {"path": "model"}, "task": "sequence-classification",
          "export": {"exporter": "torch"}, "passes": [{"reorder": {"importance": "magnitude"}}],
          "sweep": {"width": [1.0], "depth": [1.0], "precision": ["fp32", "int8"]}, "devices": ["x86-host"],
          "bench": {"seq_len": [8], "runs": 1, "warmup": 0}}


def _run(recipe: Path, out: Path, store: Path):
    return CliRunner().invoke(main, ["run", str(recipe), "-o", str(out), "--cache-dir", str(store), "--quiet"])


@pytest.fixture(scope="module")
def first(workspace, tmp_path_factory):
    """A store of one finished run, and that run's run.json."""
    root = tmp_path_factory.mktemp("damaged")
    recipe = workspace / "dmg.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    r = _run(recipe, root / "out", root / "store")
    assert r.exit_code == 0, r.output
    return recipe, root / "store", json.loads((root / "out" / "run.json").read_text())


def _truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _to_folder(f: Path) -> None:
    f.unlink()
    f.mkdir()


@pytest.mark.parametrize("kind, file, damage", [
    ("export", "outputs.json", _truncate),  # was: "internal error JSONDecodeError", exit 1
    ("pass-reorder", "model.onnx", _to_folder),  # was: "model.onnx: no such file", exit 2
    ("precision-int8", "model.onnx", _truncate),  # was: "not a readable ONNX model", exit 2
    ("precision-int8", "model.onnx", Path.unlink),  # was: "model.onnx: no such file", exit 2
    ("bench", "bench.json", _truncate),  # was: "internal error JSONDecodeError", exit 1
], ids=["outputs-json-truncated", "model-is-a-folder", "model-truncated", "model-missing", "bench-truncated"])
def test_a_damaged_store_entry_is_made_again(first, tmp_path, caplog, kind, file, damage):
    recipe, store0, run0 = first
    store = tmp_path / "store"
    shutil.copytree(store0, store, symlinks=True)
    [entry] = [d for d in store.iterdir() if d.name.startswith(f"{kind}-")]
    whole = {p.name: p.stat().st_size for p in entry.iterdir() if p.is_file() and not p.name.startswith(".")}
    damage(entry / file)
    out = tmp_path / "out"
    r = _run(recipe, out, store)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output
    said = [m for m in caplog.messages if "damaged" in m]  # the CLI prints warnings as they are (one line)
    assert len(said) == 1 and entry.name in said[0] and file in said[0] and "\n" not in said[0], caplog.messages
    caplog.clear()
    run = json.loads((out / "run.json").read_text())
    cached = {s["kind"]: s["cached"] for s in run["steps"]}
    assert cached[kind] is False and sum(not c for c in cached.values()) == 1, cached
    # the entry is whole again: the files the first run made, the damaged one a file of its first size
    assert {p.name for p in entry.iterdir() if p.is_file() and not p.name.startswith(".")} == set(whole)
    if file.endswith(".onnx"):
        assert (entry / file).stat().st_size == whole[file]
    else:  # a record (bench.json holds timings: its size varies)
        assert isinstance(json.loads((entry / file).read_text()), dict)
    # the run's models are those of the first run (the int8 step remade gives the same file)
    for v0, v in zip(run0["variants"], run["variants"]):
        assert Path(v["path"]).read_bytes() == Path(v0["path"]).read_bytes()
    # and a third run reuses every step
    r = _run(recipe, tmp_path / "out3", store)
    assert r.exit_code == 0 and not [m for m in caplog.messages if "damaged" in m], r.output
    assert all(s["cached"] for s in json.loads((tmp_path / "out3" / "run.json").read_text())["steps"])


def test_a_store_entry_without_its_list_of_files_is_not_used(tmp_path):
    """A folder with its ``.done`` but without the list of files the step made (a copy that stopped early, a hand-made
    entry) is not taken as finished."""
    from deploytool.recipes.cache import StepCache

    c = StepCache(tmp_path / "run", store=tmp_path / "store")
    key = "cd" * 32
    with c.building("slice", key) as tmp:
        (tmp / "model.onnx").write_text("model")
        (tmp / "outputs.json").write_text('{"model": "model.onnx"}')
    folder = c.dir_for("slice", key)
    assert c.done("slice", key)
    next(p for p in folder.iterdir() if p.name not in {".done", "model.onnx", "outputs.json", ".about.json"}).unlink()
    assert not c.done("slice", key) and not folder.exists()
