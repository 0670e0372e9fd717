"""What a run publishes in ``<out>/models/``: every file a variant needs, loadable without the step store."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import yaml

from deploytool import onnx_io
from deploytool.recipes import load_recipe
from deploytool.recipes.runner import run_recipe

WORKSPACE_ROWS = 40  # the workspace fixture's toy.csv (tests/recipes/conftest.py)


def _recipe(root: Path, name: str, **changes) -> Path:
    doc = {"schema_version": 1, "name": name, "model": {"path": "model"}, "task": "sequence-classification",
           "train": [], "export": {"exporter": "torch"}, "devices": ["x86-host"],
           "sweep": {"width": [1.0, 0.5], "depth": [1.0], "precision": ["fp32"]},
           "bench": {"seq_len": [8], "runs": 2, "warmup": 0}}
    doc.update(changes)
    p = root / f"{name}.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def _locations(model: Path) -> list[str]:
    proto = onnx.load(str(model), load_external_data=False)
    return sorted({e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"})


def _run_in_ort(model: Path) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ones((1, 8), dtype=np.int64) for i in sess.get_inputs()}
    out = sess.run(None, feeds)
    assert all(np.isfinite(o).all() for o in out)


def test_a_variant_with_external_data_is_published_with_its_data(workspace, tmp_path, monkeypatch):
    """Only the .onnx was linked into models/: a variant saved with external data (a model over 2 GB) was
    published without its data file, so neither the run's own bench nor a user could load it. Every variant's
    file is model.onnx + model.onnx.data in its step folder: the names must not collide in models/."""
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 0)  # every model "over" the limit
    store = tmp_path / "store"
    res = run_recipe(load_recipe(_recipe(workspace, "ext")), tmp_path / "out", store=store)
    models = tmp_path / "out" / "models"
    published = sorted(models.glob("*.onnx"))
    assert [p.name for p in published] == ["ext-w0.5-d1-fp32.onnx", "ext-w1-d1-fp32.onnx"]
    datas = set()
    for p in published:
        locs = _locations(p)
        assert locs, f"{p.name}: the test meant every variant to have external data"
        for loc in locs:
            assert (models / loc).is_file() and (models / loc).resolve().parent == models.resolve(), loc
            datas.add(loc)
    assert len(datas) == len(published)  # one data file each, none shared between variants
    shutil.move(store, tmp_path / "moved")  # the store copy is gone: models/ stands alone
    for p in published:
        _run_in_ort(p)
    assert {v.path for v in res.variants} == set(published)


def test_a_rerun_replaces_and_removes_the_published_data_files(workspace, tmp_path, monkeypatch):
    """A rerun into the same folder removes the data files of variants it no longer makes and of variants now
    saved without external data, and the tokenizer files of the earlier run's model that its model lacks."""
    store, out = tmp_path / "store", tmp_path / "out"
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 0)
    run_recipe(load_recipe(_recipe(workspace, "re")), out, store=store)
    assert len(list((out / "models").glob("*.data"))) == 2
    assert (out / "models" / "vocab.txt").is_file()
    other = workspace / "model-without-vocab"  # the same model, its tokenizer.json alone
    if not other.exists():
        shutil.copytree(workspace / "model", other)
        (other / "vocab.txt").unlink()
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 1_800_000_000)  # (a fresh store: the steps run again)
    run_recipe(load_recipe(_recipe(workspace, "re", model={"path": other.name},
                                   sweep={"width": [1.0], "depth": [1.0], "precision": ["fp32"]})),
               out, store=tmp_path / "store2")
    # the model's one file, and beside it the model folder's files other than its weights (its tokenizer and labels)
    beside = sorted(f.name for f in other.iterdir() if f.name != "model.safetensors")
    assert "vocab.txt" not in beside
    assert sorted(f.name for f in (out / "models").iterdir()) == sorted(["re-w1-d1-fp32.onnx", *beside])
    _run_in_ort(out / "models" / "re-w1-d1-fp32.onnx")


def test_variants_after_a_slice_pass_are_named_by_what_they_are(workspace, tmp_path):
    """A slice among the passes cuts the model the sweep starts from: its as-is variant was published and reported as
    w1 (its own variant record: width 0.5) and the sweep's 0.5 of it as w0.5 (record: 0.25)."""
    from deploytool.variant import file_variant

    path = _recipe(workspace, "cut", passes=[{"slice": {"width": 0.5}}])
    res = run_recipe(load_recipe(path), tmp_path / "out", store=tmp_path / "store")
    assert sorted(v.label for v in res.variants) == ["w0.25-d1-fp32", "w0.5-d1-fp32"]
    for v in res.variants:
        assert v.path.name == f"cut-{v.label}.onnx" and file_variant(v.path).label == v.label
    assert {row["variant"] for row in res.headline} == {"w0.25-d1-fp32", "w0.5-d1-fp32"}


def test_a_run_ends_with_the_commands_that_take_its_pick_to_an_arm_device(workspace, tmp_path, monkeypatch):
    """After the picks, the run named no way onward: each Arm device with a pick gets one `next:` line (its phone
    bundle where the profile has a mobile EP, else its .onnx, checked under QEMU; or a measurement over SSH); an
    x86 device none. The bundle command, run as printed, makes the bundle from the published model (its tokenizer
    beside it) without another option."""
    import shlex

    from click.testing import CliRunner

    from deploytool.cli import main

    monkeypatch.chdir(tmp_path)
    res = run_recipe(load_recipe(_recipe(workspace, "nx", devices=["x86-host", "kirin990", "graviton3"],
                                         sweep={"width": [1.0], "depth": [1.0], "precision": ["fp32"]})),
                     Path("out"), store=tmp_path / "store")
    assert len(res.picks) == 3 and len(res.next_steps) == 2, (res.picks, res.next_steps)
    line, server = res.next_steps
    # a Graviton server has no mobile EP: bundle would refuse it; its .onnx is checked and measured as it is
    assert server == ("next (graviton3): deploytool verify-arm64 out/models/nx-w1-d1-fp32.onnx --profile graviton3 "
                      "(under QEMU); or on the device: deploytool bench out/models/nx-w1-d1-fp32.onnx --profile "
                      "graviton3 --remote USER@HOST")
    assert line.startswith("next (kirin990): deploytool bundle out/models/nx-w1-d1-fp32.onnx --profile kirin990")
    assert "deploytool verify-arm64 out/bundles/kirin990" in line and "--remote USER@HOST" in line
    bundle = shlex.split(line[len("next (kirin990): "):line.index(", then ")])
    assert bundle[0] == "deploytool"
    out = CliRunner().invoke(main, bundle[1:])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "out" / "bundles" / "kirin990" / "model.ort").is_file()
