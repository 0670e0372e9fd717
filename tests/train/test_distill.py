"""TinyBERT-style distillation into a smaller student shape, on tiny random models and the toy task."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deploytool.errors import ConfigError  # noqa: E402
from deploytool.testing.tiny import fixed_inputs, tiny_model  # noqa: E402
from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv  # noqa: E402
from deploytool.train.config import DataConfig, TrainConfig  # noqa: E402
from deploytool.train.distill import DistillConfig, distill, layer_map, make_student  # noqa: E402

TEACHER = dict(layers=4, hidden=32, heads=4, ffn=64)
STUDENT = dict(layers=2, hidden=16, heads=4, ffn=32)  # head size 4 (teacher 8): per-head truncation
SCHEDULE = dict(epochs=2, lr=3e-3, batch_size=16, threads=1, importance_examples=64)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A teacher fine-tuned on the toy task, its distilled student and a same-shape student without distillation."""
    from deploytool.train.finetune import finetune

    root = tmp_path_factory.mktemp("distill")
    dc = DataConfig(data=str(toy_csv(root / "toy.csv", n=400)), max_length=32)
    tiny_classifier_folder(root / "tiny", **TEACHER)
    t = finetune(TrainConfig(model=str(root / "tiny"), output=root / "teacher", data=dc, epochs=4, lr=3e-3,
                             batch_size=16, threads=1))
    base = dict(teacher=root / "teacher", data=dc, **STUDENT, **SCHEDULE)
    dist = distill(DistillConfig(output=root / "student", **base))
    plain = distill(DistillConfig(output=root / "plain", init="random", w_logits=0, w_hidden=0, w_attention=0,
                                  w_labels=1, **{**base, "importance_examples": 0}))  # nothing to reorder
    return {"root": root, "data": dc, "teacher": root / "teacher", "teacher_result": t, "distilled": dist,
            "plain": plain}


def _x(inputs):
    return {k: torch.from_numpy(v) for k, v in inputs.items()}


def test_layer_map_is_tinybert_uniform():
    assert layer_map(4, 6) == [1, 3, 4, 6]
    assert layer_map(4, 12) == [3, 6, 9, 12]
    assert layer_map(3, 6) == [2, 4, 6]
    assert layer_map(6, 6) == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ConfigError, match="layers"):
        layer_map(7, 6)


@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
def test_teacher_slice_of_the_same_shape_is_the_teacher(family):
    """With the teacher's own shape the sliced student computes exactly the teacher's function."""
    t = tiny_model(family, task="sequence-classification", **TEACHER)
    s, notes = make_student(t, DistillConfig(**TEACHER))
    x = _x(fixed_inputs())
    torch.testing.assert_close(s(**x).logits, t(**x).logits, rtol=0, atol=0)
    assert notes == []
    small, _ = make_student(t, DistillConfig(**STUDENT))
    c = small.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (2, 16, 4, 32)
    # student layer 0 is teacher layer g(1) - 1 = 1, its head h keeps rows h*8 + [0, 4) of Q
    sq = small.base_model.encoder.layer[0].attention.self.query.weight
    tq = t.base_model.encoder.layer[1].attention.self.query.weight
    rows = torch.tensor([h * 8 + j for h in range(4) for j in range(4)])
    torch.testing.assert_close(sq, tq[rows][:, :16], rtol=0, atol=0)


def test_distilled_student_has_the_shape_learns_and_beats_plain_training(toy):
    from deploytool.train.checkpoint import load_classifier, read_meta

    d, p = toy["distilled"], toy["plain"]
    assert d["student_shape"] == {"layers": 2, "hidden": 16, "heads": 4, "ffn": 32}
    assert d["teacher_shape"] == {"layers": 4, "hidden": 32, "heads": 4, "ffn": 64}
    assert d["layer_map"] == [2, 4] and d["attention_loss"] == "used"
    m = load_classifier(toy["root"] / "student")
    assert (m.config.num_hidden_layers, m.config.hidden_size, m.config.intermediate_size) == (2, 16, 32)
    assert d["parameters"]["student"] == sum(q.numel() for q in m.parameters()) < d["parameters"]["teacher"]
    assert read_meta(toy["root"] / "student")["distill"]["layer_map"] == [2, 4]
    assert d["training"]["last_loss"] < 0.6 * d["training"]["first_loss"], d["training"]
    teacher_acc = d["teacher_dev"]["accuracy"]
    assert teacher_acc >= 80
    assert d["dev"]["accuracy"] >= teacher_acc - 10, (d["dev"], teacher_acc)
    # the same shape and schedule trained on the labels from a random start learns far less
    assert d["dev"]["accuracy"] >= p["dev"]["accuracy"] + 20, (d["dev"], p["dev"])
    assert not [q for q in toy["root"].iterdir() if q.name.startswith(".")]  # no temp folders left


def test_distilled_student_exports_and_onnx_equals_pytorch(toy, tmp_path):
    from deploytool.export import ExportConfig, export
    from deploytool.runtime.infer import run_onnx
    from deploytool.train.checkpoint import load_classifier

    out = tmp_path / "student.onnx"
    r = export(ExportConfig(model=str(toy["root"] / "student"), task="sequence-classification"), out)
    assert r.validated and r.metadata.get("deploytool.hidden_size", "16") == "16"
    x = fixed_inputs(lengths=(9, 4, 12))
    got = run_onnx(out, x)["logits"]
    m = load_classifier(toy["root"] / "student")
    with torch.no_grad():
        ref = m(**_x(x)).logits.numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_cli_prints_how_the_data_was_split(toy, tmp_path):
    """README: each training verb prints how the data was split and n beside every accuracy (distill did not
    print the split)."""
    from click.testing import CliRunner

    from deploytool.cli import main

    res = CliRunner().invoke(main, ["distill", "--teacher", str(toy["teacher"]), "-o", str(tmp_path / "s"),
                                    "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "16", "--epochs",
                                    "0.25", "--importance-examples", "0", "--threads", "1", "--data",
                                    toy["data"].data, "--max-length", "32"])
    assert res.exit_code == 0, res.output + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "data toy.csv: 400 examples split 80%/10%/10% train/dev/test = 320/40/40 (seed 0)", lines
    assert any(ln.startswith("dev accuracy ") and ln.count(" n=40") == 2 for ln in lines), lines


def test_cli_other_head_count_skips_attention_loss_and_says_so(toy, tmp_path):
    import json

    from click.testing import CliRunner

    from deploytool.cli import main

    out = tmp_path / "s2"
    res = CliRunner().invoke(main, ["distill", "--teacher", str(toy["teacher"]), "-o", str(out), "--layers", "1",
                                    "--hidden", "16", "--heads", "2", "--ffn", "16", "--epochs", "0.5",
                                    "--importance-examples", "0", "--threads", "1", "--data",
                                    toy["data"].data, "--max-length", "32", "--json"])
    assert res.exit_code == 0, res.output + res.stderr
    r = json.loads(res.stdout)
    assert r["attention_loss"].startswith("skipped: student has 2 heads, teacher 4")
    assert any("attention loss skipped" in n for n in r["notes"])
    assert r["student_shape"] == {"layers": 1, "hidden": 16, "heads": 2, "ffn": 16} and r["layer_map"] == [4]
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("kw, msg", [
    (dict(hidden=30, heads=4), "hidden: 30 is not divisible by heads=4"),
    (dict(layers=0), "layers: must be an integer in [1"),
    (dict(ffn=-3), "ffn: must be an integer"),
    (dict(heads=0), "heads: must be an integer"),
    (dict(init="zeros"), "init: expected one of teacher-slice, random, got 'zeros'"),
    (dict(temperature=0), "temperature: must be a finite number > 0"),
    (dict(w_logits=0, w_hidden=0, w_attention=0), "at least one loss weight"),
    (dict(w_hidden=-1), "w_hidden: must be a finite number >= 0"),
    (dict(epochs=0), "epochs: must be in (0, 1000]"),
])
def test_bad_config_is_a_config_error(kw, msg):
    with pytest.raises(ConfigError) as e:
        DistillConfig(**kw)
    assert msg in str(e.value)


@pytest.mark.parametrize("args, msg", [
    (["--hidden", "30", "--heads", "4"], "error: --hidden: 30 is not divisible by heads=4"),
    (["--layers", "5"], "error: --layers: the student's 5 layers must be in [1, 4]"),
    (["--hidden", "48", "--heads", "4"], "error: --hidden: 48 is larger than the teacher's 32"),
    (["--init", "random", "--layers", "9"], "error: --layers: the student's 9 layers must be in [1, 4]"),
])
def test_cli_bad_shape_exit_2_one_line_no_output(toy, tmp_path, args, msg):
    from click.testing import CliRunner

    from deploytool.cli import main

    out = tmp_path / "bad"
    res = CliRunner().invoke(main, ["distill", "--teacher", str(toy["teacher"]), "-o", str(out), "--data",
                                    toy["data"].data, "--threads", "1", *args])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith(msg) and "\n" not in err and "Traceback" not in res.output, err
    assert not out.exists() and not [q for q in tmp_path.iterdir() if q.name.startswith(".")]


def test_cli_missing_or_untrained_teacher(toy, tmp_path):
    from click.testing import CliRunner

    from deploytool.cli import main

    res = CliRunner().invoke(main, ["distill", "--teacher", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and "nope" in res.stderr and "Traceback" not in res.output
    tiny_classifier_folder(tmp_path / "bare", **TEACHER)  # saved as a classifier: strip it to a bare encoder
    cfg = tmp_path / "bare" / "config.json"
    cfg.write_text(cfg.read_text().replace("BertForSequenceClassification", "BertModel"))
    res = CliRunner().invoke(main, ["distill", "--teacher", str(tmp_path / "bare"), "-o", str(tmp_path / "o"),
                                    "--data", toy["data"].data])
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"error: teacher {tmp_path / 'bare'} has no sequence-classification head "
                                  f"(BertModel); fine-tune it first (deploytool train)")
    assert not (tmp_path / "o").exists()
