"""fit's outputs against its other paths, found by trying to break it (2026-12-07). Before: with a folder where
``-o X``'s ``X.fit.json`` goes, fit did all its work, wrote X, then failed (a half-written output); ``-o`` naming a
file ``--keep-candidates`` keeps (k/w0.5-d1-fp32.onnx) replaced that candidate with the pick's copy while the
.fit.json named it as w0.5-d1-fp32; ``-o`` (or its .fit.json) equal to the ``--accuracy`` file overwrote the
user's accuracy file with the model; an input model in the --keep-candidates folder under a candidate's name
(k/w0.5-d1-fp32.onnx) was written over by that candidate (the user's model lost, its own w1-d1-fp32 kept as a copy
of the slice). Each is one line and exit 2 now, before any work, nothing written."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deploytool.cli import main

GRID = ["--profile", "kirin990", "--widths", "1,0.5", "--depths", "1", "--precisions", "fp32", "--runs", "2",
        "--seq-len", "8"]


@pytest.fixture(scope="module")
def model(tiny_onnx):
    return tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64)


def _fit(model, *args):
    return CliRunner().invoke(main, ["fit", str(model), *map(str, args), *GRID])


def test_a_folder_where_the_fit_json_goes_is_refused_before_the_model_is_written(model, tmp_path):
    (tmp_path / "best.onnx.fit.json").mkdir()
    r = _fit(model, "-o", tmp_path / "best.onnx")
    assert r.exit_code == 2
    assert r.output == f"error: {tmp_path / 'best.onnx.fit.json'}: is a directory, expected a file path\n"
    assert not (tmp_path / "best.onnx").exists()


def test_an_output_that_is_a_kept_candidate_file_is_refused(model, tmp_path):
    k = tmp_path / "k"
    r = _fit(model, "-o", k / "w0.5-d1-fp32.onnx", "--keep-candidates", k)
    assert r.exit_code == 2
    assert r.output == (f"error: {k / 'w0.5-d1-fp32.onnx'}: is where --keep-candidates keeps the candidate "
                        "w0.5-d1-fp32; write the chosen model elsewhere\n")
    assert not k.exists()
    # another name in that folder is fine: the pick is copied beside the candidates
    r = _fit(model, "-o", k / "best.onnx", "--keep-candidates", k)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in k.iterdir()) == ["best.onnx", "best.onnx.fit.json", "w0.5-d1-fp32.onnx",
                                                    "w1-d1-fp32.onnx"]


@pytest.mark.parametrize("out", ["acc.json", "acc"])  # the model, or its .fit.json (acc.fit.json), over it
def test_an_output_over_the_accuracy_file_is_refused(model, tmp_path, out):
    acc = tmp_path / ("acc.json" if out == "acc.json" else "acc.fit.json")
    text = json.dumps({"models": {"w1-d1-fp32": 90.0, "w0.5-d1-fp32": 88.0}})
    acc.write_text(text)
    r = _fit(model, "-o", tmp_path / out, "--accuracy", acc)
    assert r.exit_code == 2
    assert r.output == f"error: {acc}: output would overwrite the input; choose another path\n"
    assert acc.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == [acc.name]


@pytest.mark.parametrize("name", ["w0.5-d1-fp32", "w1-d1-int8"])
def test_an_input_named_as_a_candidate_in_the_kept_folder_is_refused(model, tmp_path, name):
    k = tmp_path / "k"
    k.mkdir()
    mine = k / f"{name}.onnx"
    mine.write_bytes(model.read_bytes())
    grid = [*GRID[:7], "fp32,int8", *GRID[8:]]
    r = CliRunner().invoke(main, ["fit", str(mine), "-o", str(tmp_path / "best.onnx"), "--keep-candidates", str(k),
                                  *grid])
    assert r.exit_code == 2
    assert r.output == (f"error: --keep-candidates: {k} would hold the candidate {name} at {mine}, the input model; "
                        "keep the candidates in another folder\n")
    assert mine.read_bytes() == model.read_bytes() and [p.name for p in k.iterdir()] == [mine.name]
    assert not (tmp_path / "best.onnx").exists()


def test_an_input_named_as_its_own_candidate_in_the_kept_folder_is_kept(model, tmp_path):
    k = tmp_path / "k"
    k.mkdir()
    mine = k / "w1-d1-fp32.onnx"  # the export's own label: that candidate is the input itself, nothing written there
    mine.write_bytes(model.read_bytes())
    r = CliRunner().invoke(main, ["fit", str(mine), "-o", str(tmp_path / "best.onnx"), "--keep-candidates", str(k),
                                  *GRID])
    assert r.exit_code == 0, r.output
    assert mine.read_bytes() == model.read_bytes()
    assert sorted(p.name for p in k.iterdir()) == ["w0.5-d1-fp32.onnx", "w1-d1-fp32.onnx"]
