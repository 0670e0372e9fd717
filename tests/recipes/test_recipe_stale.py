"""What a step store must not hand back: steps made by other library versions, timings of another machine."""

from __future__ import annotations

import dataclasses

import yaml

from deploytool.recipes import cache, load_recipe
from deploytool.recipes.cache import step_key
from deploytool.recipes.runner import run_recipe

WORKSPACE_ROWS = 40  # the workspace fixture's toy.csv (tests/recipes/conftest.py)


def test_step_key_changes_with_the_libraries_versions(monkeypatch):
    """The key covered deploytool's source only: after an upgrade of torch or ONNX Runtime, the store handed back the
    old versions' exports, quantized files and bench timings as this installation's."""
    a = step_key("export", {"exporter": "torch"}, ["k0"])
    real = cache.dependency_versions()
    assert real["onnxruntime"] and real["torch"] and real == cache.dependency_versions()
    for name in ("torch", "onnxruntime", "onnx"):
        monkeypatch.setattr(cache, "dependency_versions", lambda name=name: {**real, name: "0.0.1"})
        assert step_key("export", {"exporter": "torch"}, ["k0"]) != a, name


def test_a_bench_made_on_another_machine_is_not_reused(workspace, tmp_path, monkeypatch):
    """The bench step's key held the variants and the bench settings only: a store on a shared disk (or kept over a
    CPU change) reported another machine's timings as measured on this host. The models' steps are reused."""
    from deploytool.recipes import steps
    from deploytool.runtime import host

    real = host.detect_host
    here = steps.host_key()
    assert here.startswith("host:") and here == steps.host_key()
    with monkeypatch.context() as m:  # another CPU, or another number of usable cores, is another machine
        m.setattr(host, "detect_host", lambda *a, **k: dataclasses.replace(real(*a, **k), model_name="Other CPU"))
        assert steps.host_key() != here
        m.setattr(host, "detect_host", lambda *a, **k: dataclasses.replace(real(*a, **k), usable_cores=999))
        assert steps.host_key() != here

    doc = {"schema_version": 1, "name": "h", "model": {"path": "model"}, "task": "sequence-classification",
           "train": [], "export": {"exporter": "torch"}, "devices": ["x86-host"],
           "sweep": {"width": [1.0], "depth": [1.0], "precision": ["fp32"]},
           "bench": {"seq_len": [8], "runs": 2, "warmup": 0}}
    path = workspace / "stale-host.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    store = tmp_path / "store"
    run_recipe(load_recipe(path), tmp_path / "a", store=store)
    again = run_recipe(load_recipe(path), tmp_path / "b", store=store)
    assert all(s.cached for s in again.steps)  # the same machine: everything reused
    # (the bench's key only: the report's host profile would measure the "other" machine for minutes)
    monkeypatch.setattr(steps, "host_key", lambda: "host:0123456789abcdef")
    other = run_recipe(load_recipe(path), tmp_path / "c", store=store)
    assert {s.kind: s.cached for s in other.steps} == {"export": True, "bench": False}
