"""qnn check --data: the task accuracy scores the data's labels as the model's class ids by name (eval's matching)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deploytool.cli import main

try:  # collected test by test (never one module-level skip); each skip says why
    import onnxruntime_qnn  # noqa: F401

    _NO_QNN = None
except ImportError as e:
    _NO_QNN = f"onnxruntime-qnn is not importable here ({e}); pip install 'deploytool[qnn]' runs these tests"
pytestmark = [pytest.mark.qnn, pytest.mark.skipif(_NO_QNN is not None, reason=_NO_QNN or "")]


def test_task_accuracy_matches_the_data_labels_to_the_models_names(tiny_onnx, tmp_path):
    """The data's labels were taken by sorted index (fresh=0, rotten=1) whatever the model's id2label said: a model
    whose class 0 is 'rotten' was scored against the swapped classes. Named the other way round, every example's
    correctness flips (binary), so the two accuracies add up to 1; labels the model does not know are one line."""
    import shutil

    from deploytool.testing.toy_text import toy_tokenizer

    folder = tmp_path / "m"
    toy_tokenizer(folder)
    shutil.copy(tiny_onnx("bert", task="sequence-classification", layers=1), folder / "model.onnx")
    rows = [(f"w{i % 90} w{(7 * i) % 90} w{(3 * i + 1) % 90} w{(5 * i) % 90}", ("fresh", "rotten")[(i % 5) < 2])
            for i in range(400)]
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    got = {}
    for key, id2label in (("a", {"0": "fresh", "1": "rotten"}), ("b", {"0": "rotten", "1": "fresh"}),
                          ("bad", {"0": "neg", "1": "pos"})):
        (folder / "config.json").write_text(json.dumps({"model_type": "bert", "id2label": id2label}))
        out = tmp_path / f"{key}.json"
        r = CliRunner().invoke(main, ["qnn", "check", str(folder / "model.onnx"), "--profile", "snapdragon-sm8650",
                                      "--seq-len", "16", "--quantize", "--calib-size", "32", "--data", str(data),
                                      "--max-eval", "40", "-o", str(out)])
        if key == "bad":
            err = r.stderr.strip()
            assert r.exit_code == 2 and err.startswith("error: ") and "\n" not in err, (r.exit_code, r.output, err)
            assert "'fresh', 'rotten' unknown to the model" in err and not out.exists()
            continue
        assert r.exit_code == 0, (r.output, r.stderr)
        got[key] = json.loads(out.read_text())["task_accuracy"]
    a, b = got["a"], got["b"]
    assert a["n"] == b["n"] == 40
    assert a["fp32"] + b["fp32"] == pytest.approx(1.0) and a["htp"] + b["htp"] == pytest.approx(1.0)
    assert a["fp32"] != pytest.approx(0.5)  # else the swap would not show


def test_task_accuracy_reads_two_spellings_of_one_class_as_that_class(tiny_onnx, tmp_path):
    """A label column mixing 'fresh' and 'Fresh' (and 'rotten' and 'ROTTEN') was refused as four classes; as in
    eval, the model's names decide: each spelling is the class it names. Named the other way round, every example's
    correctness flips, so the two accuracies add up to 1 (a spelling given the wrong class would break that only
    where it is read differently in the two runs; the rows are the same in both)."""
    import shutil

    from deploytool.testing.toy_text import toy_tokenizer

    folder = tmp_path / "m"
    toy_tokenizer(folder)
    shutil.copy(tiny_onnx("bert", task="sequence-classification", layers=1), folder / "model.onnx")
    spell = {("fresh", 0): "fresh", ("fresh", 1): "Fresh", ("rotten", 0): "rotten", ("rotten", 1): "ROTTEN"}
    rows = [(f"w{i % 90} w{(7 * i) % 90} w{(3 * i + 1) % 90} w{(5 * i) % 90}",
             spell[("fresh", "rotten")[(i % 5) < 2], (i // 3) % 2]) for i in range(400)]
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    got = {}
    for key, id2label in (("a", {"0": "fresh", "1": "rotten"}), ("b", {"0": "rotten", "1": "fresh"})):
        (folder / "config.json").write_text(json.dumps({"model_type": "bert", "id2label": id2label}))
        out = tmp_path / f"{key}.json"
        r = CliRunner().invoke(main, ["qnn", "check", str(folder / "model.onnx"), "--profile", "snapdragon-sm8650",
                                      "--seq-len", "16", "--quantize", "--calib-size", "32", "--data", str(data),
                                      "--max-eval", "40", "-o", str(out)])
        assert r.exit_code == 0, (r.output, r.stderr)
        got[key] = json.loads(out.read_text())["task_accuracy"]
    a, b = got["a"], got["b"]
    assert a["n"] == b["n"] == 40
    assert a["fp32"] + b["fp32"] == pytest.approx(1.0) and a["htp"] + b["htp"] == pytest.approx(1.0)
