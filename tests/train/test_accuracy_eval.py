"""`eval`/`train` on the user's data: labels by name, the recorded dataset, whole files, n and intervals.

The issue's bad case first: a model trained on neg/pos evaluated on a file labelled
1_positive/2_negative printed `accuracy 16.67%`; it must be a one-line error listing both label sets.
"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from deploytool.cli import main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv

    root = tmp_path_factory.mktemp("acc")
    tiny_classifier_folder(root / "tiny", layers=2)
    toy_csv(root / "toy.csv", n=120)
    res = CliRunner().invoke(main, ["train", "--model", str(root / "tiny"), "--data", str(root / "toy.csv"),
                                    "-o", str(root / "tnp"), "--threads", "1", "--max-length", "32"])
    assert res.exit_code == 0, res.output + res.stderr
    root_out = res.output
    rows = list(csv.DictReader(open(root / "toy.csv")))
    return {"root": root, "model": root / "tnp", "train_out": root_out, "rows": rows}


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def _ok(args):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, (res.output, res.stderr)
    return res.output


def _fails(args, *words):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, (res.exit_code, res.output, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output + res.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_train_prints_n_interval_and_split(trained):
    out = trained["train_out"]
    assert re.search(r"dev accuracy \d+\.\d+% \[95% CI \d+\.\d+-\d+\.\d+\] n=12\b", out), out
    assert "120 examples split 80%/10%/10% train/dev/test = 96/12/12 (seed 0)" in out, out


def test_unknown_labels_are_one_line_listing_both_sets(trained, tmp_path):
    bad = _write(tmp_path / "bad.csv", [(r["text"], "1_positive" if r["label"] == "pos" else "2_negative")
                                        for r in trained["rows"]])
    before = bad.read_bytes()
    out = tmp_path / "e.json"
    line = _fails(["eval", str(trained["model"]), "--data", str(bad), "-o", str(out)],
                  "'1_positive'", "'2_negative'", "'neg'", "'pos'", "unknown to the model")
    assert "model labels" in line and "data labels" in line
    assert not out.exists() and bad.read_bytes() == before


def _reference_accuracy(model_dir, texts, labels):
    """Accuracy from transformers directly: argmax -> config.id2label name == the file's label."""
    import torch
    import transformers as tr

    tok = tr.AutoTokenizer.from_pretrained(str(model_dir))
    m = tr.AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        enc = tok(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
        pred = m(**enc).logits.argmax(-1).numpy()
    names = [m.config.id2label[int(i)] for i in pred]
    return 100 * float(np.mean([a == b for a, b in zip(names, labels)])), names


def test_labels_matched_by_name_not_sorted_order(trained, tmp_path):
    """A model whose id2label is not in sorted order: eval must follow the names."""
    import shutil

    m = tmp_path / "rev"
    shutil.copytree(trained["model"], m)
    cfg = json.loads((m / "config.json").read_text())
    assert cfg["id2label"] == {"0": "neg", "1": "pos"}
    cfg["id2label"], cfg["label2id"] = {"0": "pos", "1": "neg"}, {"pos": 0, "neg": 1}
    (m / "config.json").write_text(json.dumps(cfg))
    rows = trained["rows"][:40]
    f = _write(tmp_path / "t.csv", [(r["text"], r["label"]) for r in rows])
    out = tmp_path / "e.json"
    _ok(["eval", str(m), "--test-file", str(f), "-o", str(out), "--threads", "1"])
    r = json.loads(out.read_text())
    ref, names = _reference_accuracy(m, [x["text"] for x in rows], [x["label"] for x in rows])
    assert r["accuracy"] == pytest.approx(ref)
    assert r["n"] == 40 and r["label_names"] == ["pos", "neg"]
    # the kept predictions are the model's own, by example id (row number)
    assert r["predictions"]["ids"] == list(range(40))
    assert [r["label_names"][i] for i in r["predictions"]["pred"]] == names


def test_eval_without_data_uses_the_recorded_dataset(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recorded path still resolves from elsewhere
    out = tmp_path / "e.json"
    text = _ok(["eval", str(trained["model"]), "-o", str(out), "--threads", "1"])
    r = json.loads(out.read_text())
    assert r["dataset"]["dataset"] == "toy.csv" and r["data_origin"] == "recorded at training time"
    assert r["n"] == 12 and "recorded at training time" in text
    # the same as giving the file explicitly
    out2 = tmp_path / "e2.json"
    _ok(["eval", str(trained["model"]), "--data", str(trained["root"] / "toy.csv"), "-o", str(out2),
         "--threads", "1"])
    assert json.loads(out2.read_text())["predictions"] == r["predictions"]
    assert re.search(r"accuracy \d+\.\d+% \[95% CI \d+\.\d+-\d+\.\d+\] n=12", text), text


def test_split_all_and_test_file_cover_every_row(trained, tmp_path):
    out = tmp_path / "a.json"
    text = _ok(["eval", str(trained["model"]), "--split", "all", "-o", str(out), "--threads", "1"])
    r = json.loads(out.read_text())
    assert r["n"] == 120 and sorted(r["predictions"]["ids"]) == list(range(120))
    assert "the whole file, 120 examples" in text
    one = _write(tmp_path / "pos.csv", [(x["text"], "pos") for x in trained["rows"] if x["label"] == "pos"][:15])
    out = tmp_path / "p.json"
    _ok(["eval", str(trained["model"]), "--test-file", str(one), "-o", str(out), "--threads", "1"])
    r = json.loads(out.read_text())
    assert r["n"] == 15 and r["n_correct"] == sum(1 for p in r["predictions"]["pred"] if p == 1)
    lo, hi = r["ci95"]
    assert lo <= r["accuracy"] <= hi


def test_test_file_with_data_is_refused(trained):
    _fails(["eval", str(trained["model"]), "--data", "x.csv", "--test-file", "y.csv"], "--test-file")


def test_onnx_eval_uses_the_tokenizer_folders_labels(trained, tmp_path):
    import shutil

    from deploytool.export import ExportConfig, export

    m = tmp_path / "m"
    shutil.copytree(trained["model"], m)
    export(ExportConfig(model=str(m), task="sequence-classification"), m / "model.onnx")
    out_t, out_o = tmp_path / "t.json", tmp_path / "o.json"
    _ok(["eval", str(m), "-o", str(out_t), "--threads", "1"])
    _ok(["eval", str(m / "model.onnx"), "-o", str(out_o), "--threads", "1"])
    a, b = json.loads(out_t.read_text()), json.loads(out_o.read_text())
    assert a["examples"] == b["examples"] and a["n"] == b["n"] == 12
    assert a["accuracy"] == b["accuracy"]


def test_eval_output_never_overwrites_what_it_reads(trained, tmp_path):
    """`eval -o` onto the model, its test file or its tokenizer replaced them with the JSON record (rc 0): each
    is now refused in one line before any work, and nothing is touched."""
    import shutil

    from deploytool.export import ExportConfig, export

    m = tmp_path / "m"
    shutil.copytree(trained["model"], m)
    export(ExportConfig(model=str(m), task="sequence-classification"), m / "model.onnx")
    f = _write(tmp_path / "t.csv", [(r["text"], r["label"]) for r in trained["rows"][:20]])
    for model, target in [(m / "model.onnx", m / "model.onnx"), (m / "model.onnx", f),
                          (m / "model.onnx", m / "vocab.txt"), (m / "model.onnx", m / "config.json"),
                          (m, m / "model.safetensors"), (m, m / "tokenizer.json")]:
        before = {p: p.read_bytes() for p in (target, f, m / "model.onnx")}
        _fails(["eval", str(model), "--test-file", str(f), "--threads", "1", "-o", str(target)],
               str(target), "output would overwrite the input")
        assert {p: p.read_bytes() for p in before} == before


def test_eval_record_states_percent_and_is_read_as_such(trained, tmp_path):
    """An eval at 1 % accuracy was read back by `report`/`fit` as 100 % (interval 17.7-544.9 %): the record had no
    unit and the reader guessed fractions from the size. It says "unit": "percent" now, and a record without it
    (an older file) is read by its own counts, never by its size."""
    from deploytool.accuracy import load_accuracy_records

    rows = trained["rows"][:100]
    f = _write(tmp_path / "t.csv", [(r["text"], r["label"]) for r in rows])
    first = tmp_path / "first.json"
    _ok(["eval", str(trained["model"]), "--test-file", str(f), "--threads", "1", "-o", str(first)])
    r = json.loads(first.read_text())
    names = r["label_names"]
    pred = dict(zip(r["predictions"]["ids"], r["predictions"]["pred"]))
    # every label the other one than the model predicts, but the first: 1 of 100 right
    bad = _write(tmp_path / "bad.csv", [(x["text"], names[pred[i]] if i == 0 else names[1 - pred[i]])
                                        for i, x in enumerate(rows)])
    out = tmp_path / "e.json"
    _ok(["eval", str(trained["model"]), "--test-file", str(bad), "--threads", "1", "-o", str(out)])
    rec = json.loads(out.read_text())
    assert rec["unit"] == "percent" and rec["accuracy"] == 1.0 and rec["n"] == 100 and rec["n_correct"] == 1
    got = load_accuracy_records([out]).records[str(trained["model"].resolve())]
    assert got.value == 1.0 and 0 <= got.low < 1.0 < got.high < 10
    del rec["unit"]  # a record written before the unit was: its counts say percent
    old = tmp_path / "old.json"
    old.write_text(json.dumps(rec))
    assert load_accuracy_records([old]).records[str(trained["model"].resolve())].value == 1.0


@pytest.fixture(scope="module")
def nameless(tmp_path_factory):
    """A tiny 2-class classifier without label names (no id2label, as a fresh HF head) and its ONNX export."""
    from deploytool.export import ExportConfig, export
    from deploytool.testing.toy_text import tiny_classifier_folder

    folder = tiny_classifier_folder(tmp_path_factory.mktemp("nameless") / "clsf")
    assert "id2label" not in json.loads((folder / "config.json").read_text())
    export(ExportConfig(model=str(folder), task="sequence-classification"), folder / "model.onnx")
    return folder


def test_test_file_with_one_label_and_a_model_without_label_names(nameless, trained, tmp_path):
    """--help: "one label is enough". Without label names a file of one label failed with "expected [batch, 1]
    logits (export a classifier model)". Labels that are class ids now work; names that cannot be matched say
    why; a file with more labels than the model's classes says that, not "export a classifier"."""
    texts = [r["text"] for r in trained["rows"][:30]]
    ids = _write(tmp_path / "ids.csv", [(t, "1") for t in texts])
    for model in (nameless / "model.onnx", nameless):
        out = tmp_path / "e.json"
        text = _ok(["eval", str(model), "--test-file", str(ids), "--threads", "1", "-o", str(out)])
        r = json.loads(out.read_text())
        assert r["n"] == 30 and r["n_correct"] == sum(1 for p in r["predictions"]["pred"] if p == 1)
        assert set(r["predictions"]["label"]) == {1} and "read as its class ids" in text
        one = _write(tmp_path / "one.csv", [(t, "pos") for t in texts])
        line = _fails(["eval", str(model), "--test-file", str(one), "--threads", "1"],
                      "1 label(s) (pos) of the model's 2 classes", "no label names (id2label)", "cannot be told")
        assert "export a classifier" not in line
    three = _write(tmp_path / "three.csv", [(t, "abc"[i % 3]) for i, t in enumerate(texts)])
    line = _fails(["eval", str(nameless / "model.onnx"), "--test-file", str(three), "--threads", "1"],
                  "3 labels (a, b, c) but the model classifies 2")
    assert "export a classifier" not in line


def test_evals_of_two_test_files_are_not_paired(nameless, tmp_path):
    """Example ids are row numbers: two test files of 20 rows each had the same examples key, and the paired test
    compared their rows as if they were the same examples (McNemar p = 1.0, a tie). The key names the examples'
    contents now: different files are not paired; the same rows in a copy of the file still are."""
    import shutil

    from deploytool.accuracy import compare, load_accuracy_records
    from deploytool.testing.toy_text import toy_rows

    rows_a = [(t, "1" if lab == "pos" else "0") for t, lab in toy_rows(20, seed=1)]
    rows_b = [(t, "1" if lab == "pos" else "0") for t, lab in toy_rows(20, seed=2)]
    fa, fb = _write(tmp_path / "a.csv", rows_a), _write(tmp_path / "b.csv", rows_b)
    fc = tmp_path / "copy" / "a.csv"
    fc.parent.mkdir()
    shutil.copy(fa, fc)
    outs = {}
    for name, f in (("a", fa), ("b", fb), ("c", fc)):
        outs[name] = tmp_path / f"{name}.json"
        _ok(["eval", str(nameless), "--test-file", str(f), "--threads", "1", "-o", str(outs[name])])
    recs = {n: load_accuracy_records([p]).named[0][2] for n, p in outs.items()}
    assert recs["a"].n == recs["b"].n == 20
    assert recs["a"].examples != recs["b"].examples
    assert compare(recs["a"], recs["b"]).p is None
    assert compare(recs["a"], recs["c"]).p is not None  # the same examples, from a copy of the file


def test_a_regression_head_is_not_scored_as_a_classifier(tmp_path):
    """A head of one output (num_labels=1, transformers' regression) was scored by the argmax of that one output,
    always class 0: a file of label 0 gave accuracy 100.00% (PyTorch folder and ONNX alike). Refused in one line;
    so is a folder whose config says problem_type multi_label_classification (the argmax is not its prediction)."""
    from deploytool.export import ExportConfig, export
    from deploytool.testing.toy_text import tiny_classifier_folder, toy_rows

    folder = tiny_classifier_folder(tmp_path / "reg", num_labels=1)
    export(ExportConfig(model=str(folder), task="sequence-classification"), folder / "model.onnx")
    f = _write(tmp_path / "zeros.csv", [(t, "0") for t, _ in toy_rows(12)])
    for model in (folder, folder / "model.onnx"):
        out = tmp_path / "e.json"
        _fails(["eval", str(model), "--test-file", str(f), "--threads", "1", "-o", str(out)],
               "regression head", "not a classifier")
        assert not out.exists()
    import onnx  # an output width the file does not declare: found at run time

    proto = onnx.load(str(folder / "model.onnx"))
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "classes"
    onnx.save(proto, str(folder / "model.onnx"))
    _fails(["eval", str(folder / "model.onnx"), "--test-file", str(f), "--threads", "1"], "regression head")
    multi = tiny_classifier_folder(tmp_path / "multi", num_labels=2)
    cfg = json.loads((multi / "config.json").read_text())
    (multi / "config.json").write_text(json.dumps({**cfg, "problem_type": "multi_label_classification"}))
    _fails(["eval", str(multi), "--test-file", str(f), "--threads", "1"], "multi-label classifier")


def test_max_length_past_the_position_table_is_one_line(tmp_path):
    """--max-length 48 on a model of 32 positions ran until its first text of more tokens, then failed with an
    internal error (torch's size mismatch, ONNX Runtime's broadcast error in the embeddings' Add), exit 1. Now
    one line naming the table, before any text is run; within the table, long texts are truncated and counted."""
    from deploytool.export import ExportConfig, export
    from deploytool.testing.toy_text import FILLER, tiny_classifier_folder, toy_rows

    folder = tiny_classifier_folder(tmp_path / "short", max_pos=32)
    export(ExportConfig(model=str(folder), task="sequence-classification"), folder / "model.onnx")
    rows = [(t, "1" if lab == "pos" else "0") for t, lab in toy_rows(10)] + [(" ".join(FILLER[:60]), "0")]
    f = _write(tmp_path / "long.csv", rows)
    for i, model in enumerate((folder, folder / "model.onnx")):
        out = tmp_path / f"e{i}.json"
        _fails(["eval", str(model), "--test-file", str(f), "--threads", "1", "--max-length", "48", "-o", str(out)],
               "--max-length 48", "position table", "32 positions", "--max-length 32 or less")
        assert not out.exists()
        _ok(["eval", str(model), "--test-file", str(f), "--threads", "1", "--max-length", "32", "-o", str(out)])
        r = json.loads(out.read_text())
        assert r["n"] == 11 and r["truncated"] == 1


def test_label_ids_with_a_gap_name_the_classes_up_to_the_largest(tmp_path):
    """A 3-class ONNX model whose config names classes 0 and 2 (id2label {"0": "neg", "2": "pos"}) was refused: "the
    model classifies 3 ..., but 2 classes are expected" (the count of names, not the largest id). Its labels are
    those ids: accuracy is the share of texts whose argmax over the 3 outputs is the named class."""
    from deploytool.export import ExportConfig, export
    from deploytool.testing.toy_text import tiny_classifier_folder, toy_rows

    folder = tiny_classifier_folder(tmp_path / "gap", num_labels=3)
    export(ExportConfig(model=str(folder), task="sequence-classification"), folder / "model.onnx")
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(id2label={"0": "neg", "2": "pos"}, label2id={"neg": 0, "pos": 2})
    (folder / "config.json").write_text(json.dumps(cfg))
    f = _write(tmp_path / "t.csv", toy_rows(20))
    out = tmp_path / "e.json"
    _ok(["eval", str(folder / "model.onnx"), "--test-file", str(f), "--threads", "1", "-o", str(out)])
    r = json.loads(out.read_text())
    pr = r["predictions"]
    assert set(pr["label"]) == {0, 2} and r["n"] == 20
    assert r["n_correct"] == sum(p == y for p, y in zip(pr["pred"], pr["label"]))
    assert r["label_names"] == ["neg", "LABEL_1", "pos"]  # by class id (it was ["neg", "pos"]: class 2 had no name)


def test_nan_logits_are_not_scored(nameless, tmp_path):
    """An ONNX classifier giving NaN logits was scored by their argmax (always class 0): an accuracy of garbage.
    Now one line, exit 2, nothing written."""
    import shutil

    import onnx
    from onnx import numpy_helper

    from deploytool.testing.toy_text import toy_rows

    m = tmp_path / "m"
    shutil.copytree(nameless, m)
    proto = onnx.load(str(m / "model.onnx"))
    for t in proto.graph.initializer:
        if "word_embeddings" in t.name:
            a = numpy_helper.to_array(t).copy()
            a[:] = np.nan
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    onnx.save(proto, str(m / "model.onnx"))
    f = _write(tmp_path / "t.csv", [(t, "1" if lab == "pos" else "0") for t, lab in toy_rows(12)])
    out = tmp_path / "e.json"
    _fails(["eval", str(m / "model.onnx"), "--test-file", str(f), "--threads", "1", "-o", str(out)],
           "non-finite logits")
    assert not out.exists()
    import torch  # the PyTorch folder alike
    from safetensors.torch import load_file, save_file

    sd = load_file(str(m / "model.safetensors"))
    key = next(k for k in sd if "word_embeddings" in k)
    sd[key] = torch.full_like(sd[key], float("nan"))
    save_file(sd, str(m / "model.safetensors"), metadata={"format": "pt"})
    _fails(["eval", str(m), "--test-file", str(f), "--threads", "1", "-o", str(out)], f"{m}: non-finite logits")
    assert not out.exists()


def _named(src, dst, id2label):
    import shutil

    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["id2label"] = id2label
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_a_label_name_two_ids_carry_is_one_line_naming_them(nameless, tmp_path):
    """A model whose id2label is {0: pos, 1: pos}: a file of 'pos' texts was scored against the last id (1) without a
    word. Refused in one line naming the name and both ids, nothing written (folder, ONNX and importance alike);
    labels that are class ids need no name and are scored as those ids."""
    from deploytool.testing.toy_text import toy_rows

    m = _named(nameless, tmp_path / "dup", {"0": "pos", "1": "pos"})
    texts = [t for t, _ in toy_rows(30)]
    pos = _write(tmp_path / "pos.csv", [(t, "pos") for t in texts])
    out = tmp_path / "e.json"
    for model in (m, m / "model.onnx"):
        _fails(["eval", str(model), "--test-file", str(pos), "--threads", "1", "-o", str(out)],
               "label 'pos' matches the model's classes 0 and 1 alike", f"{m}/config.json: id2label names 'pos' for "
               "ids 0 and 1", "class ids")
        assert not out.exists()
    from deploytool.testing.toy_text import tiny_classifier_folder

    three = tiny_classifier_folder(tmp_path / "three", num_labels=3)
    cfg = json.loads((three / "config.json").read_text())
    (three / "config.json").write_text(json.dumps({**cfg, "id2label": {"0": "neg", "1": "pos", "2": "pos"}}))
    _fails(["importance", str(three), "--data", str(_write(tmp_path / "d.csv", toy_rows(60))),
            "-o", str(tmp_path / "imp.json"), "--threads", "1"], "label 'pos' matches the model's classes 1 and 2")
    assert not (tmp_path / "imp.json").exists()
    ids = [str(i % 2) for i in range(30)]
    f = _write(tmp_path / "ids.csv", list(zip(texts, ids)))
    text = _ok(["eval", str(m), "--test-file", str(f), "--threads", "1", "-o", str(out)])
    r = json.loads(out.read_text())
    assert r["predictions"]["label"] == [int(x) for x in ids] and "read as its class ids" in text
    assert r["n_correct"] == sum(p == int(y) for p, y in zip(r["predictions"]["pred"], ids))


def test_labels_written_as_floats_are_class_ids(nameless, tmp_path):
    """A file of one label '1.0' (a pandas int column with a missing value) for a model without names was refused
    ("which class each label is cannot be told") where '1' is read as class 1; both are class 1 now."""
    from deploytool.testing.toy_text import toy_rows

    texts = [t for t, _ in toy_rows(20)]
    res = {}
    for lab in ("1", "1.0"):
        out = tmp_path / f"e{lab}.json"
        _ok(["eval", str(nameless), "--test-file", str(_write(tmp_path / f"{lab}.csv", [(t, lab) for t in texts])),
             "--threads", "1", "-o", str(out)])
        res[lab] = json.loads(out.read_text())
        assert set(res[lab]["predictions"]["label"]) == {1}
    assert res["1.0"]["n_correct"] == res["1"]["n_correct"] == res["1"]["predictions"]["pred"].count(1)


def test_spellings_of_one_class_in_one_file_are_that_class(nameless, tmp_path):
    """A file whose labels mix '1' and '1.0' (pandas after a float cast) or 'pos' and 'Pos' was refused by eval too
    ("the same number spelled two ways"), though the model's labels decide the classes there. Each spelling is now
    scored as the model's class of that id or name; ``want`` (each row's class id) is written out by hand."""
    from deploytool.testing.toy_text import toy_rows

    texts = [t for t, _ in toy_rows(24)]
    named = _named(nameless, tmp_path / "named", {"0": "neg", "1": "pos"})
    cases = [("ids.csv", ["1", "1.0", " 1 ", "0"], [1, 1, 1, 0], (nameless, nameless / "model.onnx", named)),
             ("names.csv", ["pos", "Pos", "neg", "NEG"], [1, 1, 0, 0], (named, named / "model.onnx"))]
    for name, spelt, want, models in cases:
        f = _write(tmp_path / name, [(t, spelt[i % 4]) for i, t in enumerate(texts)])
        for model in models:
            out = tmp_path / "e.json"
            _ok(["eval", str(model), "--test-file", str(f), "--threads", "1", "-o", str(out)])
            r = json.loads(out.read_text())
            assert r["predictions"]["ids"] == list(range(24)), model
            assert r["predictions"]["label"] == [want[i % 4] for i in range(24)], (model, name)
            assert r["n_correct"] == sum(p == y for p, y in zip(r["predictions"]["pred"], r["predictions"]["label"]))
            assert len(r["label_names"]) == 2
    # the JSON numbers 1 and 1.0 (a pandas round trip) alike
    j = tmp_path / "n.jsonl"
    j.write_text("\n".join(json.dumps({"text": t, "label": [1, 1.0, 0][i % 3]}) for i, t in enumerate(texts)))
    out = tmp_path / "j.json"
    _ok(["eval", str(nameless), "--test-file", str(j), "--threads", "1", "-o", str(out)])
    assert json.loads(out.read_text())["predictions"]["label"] == [[1, 1, 0][i % 3] for i in range(24)]
    # ambiguous: two model labels differing only in case, or no label names to match a name to
    two = _named(nameless, tmp_path / "two", {"0": "pos", "1": "Pos"})
    upper = _write(tmp_path / "upper.csv", [(t, "POS") for t in texts])
    _fails(["eval", str(two), "--test-file", str(upper), "--threads", "1"],
           "label 'POS' matches the model's classes 0 and 1 alike", "id2label names 'Pos' and 'pos'")
    _fails(["eval", str(nameless), "--test-file", str(tmp_path / "names.csv"), "--threads", "1"],
           "labels 'NEG' and 'neg' are one label spelled two ways", "no label names (id2label)")
    # training has no model's names to decide: still refused, saying what to write
    _fails(["train", "--model", str(nameless), "--data", str(_write(tmp_path / "t.csv", [
        (t, ["1", "1.0", "0"][i % 3]) for i, t in enumerate(texts * 3)])), "-o", str(tmp_path / "m")],
        "labels '1' and '1.0' are the same number spelled two ways", "write one ('1' for both)")
    assert not (tmp_path / "m").exists()


def test_spellings_of_one_class_are_counted_together_for_imbalance(nameless, tmp_path):
    """Half the rows class 0, half class 1, the 1s written '1' (4 in 5) and '1.0' (1 in 5): two balanced classes.
    eval flagged them imbalanced (and printed 'imbalanced labels: read F1'), counting '1.0' as a third class of
    10% of the rows; the share of the rarest class is counted here by hand."""
    from deploytool.testing.toy_text import toy_rows

    texts = [t for t, _ in toy_rows(40)]
    labels = ["0" if i % 2 == 0 else ("1.0" if i % 10 == 1 else "1") for i in range(40)]
    assert labels.count("0") == 20 and labels.count("1.0") == 4  # classes 0 and 1: 50% each
    f = _write(tmp_path / "mixed.csv", list(zip(texts, labels)))
    for model in (nameless, nameless / "model.onnx"):
        out = tmp_path / "e.json"
        text = _ok(["eval", str(model), "--test-file", str(f), "--threads", "1", "-o", str(out)])
        assert json.loads(out.read_text())["imbalanced"] is False, model
        assert "imbalanced" not in text
    # a file that is imbalanced is still said to be: 1 in 8 rows class 1, in both spellings
    skewed = _write(tmp_path / "skewed.csv", [(t, "1" if i % 16 == 1 else "1.0" if i % 16 == 9 else "0")
                                              for i, t in enumerate(texts)])
    out = tmp_path / "s.json"
    _ok(["eval", str(nameless), "--test-file", str(skewed), "--threads", "1", "-o", str(out)])
    assert json.loads(out.read_text())["imbalanced"] is True


@pytest.mark.parametrize("body", ["{}", "{}\n{}\n"])
def test_a_file_of_empty_json_objects_is_one_line(nameless, tmp_path, body):
    """eval --test-file on a file '{}' said "no column 'text' (--text-col); columns are: " and an empty list."""
    f = tmp_path / "empty.jsonl"
    f.write_text(body)
    out = tmp_path / "e.json"
    _fails(["eval", str(nameless), "--test-file", str(f), "--threads", "1", "-o", str(out)],
           f"{f}: has no columns (", "empty JSON object")
    assert not out.exists()


def test_json_boolean_labels_are_class_ids_or_the_models_names(nameless, tmp_path):
    """eval on a JSONL file whose labels are JSON true/false: they were the names 'True'/'False', unknown to a model
    named neg/pos (refused). They are class ids 0/1 now, as 0/1 and 0.0/1.0 are; a model whose id2label names True
    and False (in any case) has them matched by name, wherever its ids put them."""
    from deploytool.testing.toy_text import toy_rows

    rows = [(t, i % 3 == 0) for i, (t, _) in enumerate(toy_rows(24))]
    f = tmp_path / "b.jsonl"
    f.write_text("\n".join(json.dumps({"text": t, "label": b}) for t, b in rows))
    for id2label, want in (({"0": "neg", "1": "pos"}, [int(b) for _, b in rows]),
                           ({"0": "True", "1": "False"}, [0 if b else 1 for _, b in rows])):
        m = _named(nameless, tmp_path / id2label["0"], id2label)
        out = tmp_path / f"e-{id2label['0']}.json"
        text = _ok(["eval", str(m), "--test-file", str(f), "--threads", "1", "-o", str(out)])
        r = json.loads(out.read_text())
        assert r["predictions"]["label"] == want and r["data_labels"] == ["false", "true"]
        assert r["n_correct"] == sum(p == y for p, y in zip(r["predictions"]["pred"], want))
        assert ("read as its class ids: false->0 (neg), true->1 (pos)" in text) == (id2label["0"] == "neg"), text


def test_an_id2label_of_names_to_ids_is_refused_not_read_as_no_names(nameless, tmp_path):
    """id2label {"pos": 0, "neg": 1} (label2id's shape) was read as no label names beside an ONNX model, and the
    labels matched by sorted name (neg->0, pos->1: the opposite of what it says). One line naming config.json, for
    the folder too (transformers' own error before)."""
    from deploytool.testing.toy_text import toy_rows

    m = _named(nameless, tmp_path / "swapped", {"pos": 0, "neg": 1})
    f = _write(tmp_path / "t.csv", toy_rows(20))
    out = tmp_path / "e.json"
    for model in (m / "model.onnx", m):
        _fails(["eval", str(model), "--test-file", str(f), "--threads", "1", "-o", str(out)],
               f"{m}/config.json: id2label must map class ids to label names", "got key 'pos'")
        assert not out.exists()


def test_onnx_labels_beside_the_model_are_kept_with_a_tokenizer_folder(trained, tmp_path):
    """An ONNX model beside a config naming {0: pos, 1: neg}, evaluated with --tokenizer a folder of tokenizer files
    only: the names beside the model were not read, the labels were matched by sorted name (neg->0) and the accuracy
    was 100 minus the model's. Names in two places that differ are one line."""
    import shutil

    from deploytool.export import ExportConfig, export

    m = tmp_path / "rev"
    shutil.copytree(trained["model"], m)
    cfg = json.loads((m / "config.json").read_text())
    cfg["id2label"], cfg["label2id"] = {"0": "pos", "1": "neg"}, {"pos": 0, "neg": 1}
    (m / "config.json").write_text(json.dumps(cfg))
    export(ExportConfig(model=str(m), task="sequence-classification"), m / "model.onnx")
    tok = tmp_path / "tok"
    tok.mkdir()
    for n in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (m / n).is_file():
            shutil.copy(m / n, tok / n)
    # 30 pos and 10 neg texts: a swap of the classes changes the accuracy whatever the model predicts
    rows = ([r for r in trained["rows"] if r["label"] == "pos"][:30]
            + [r for r in trained["rows"] if r["label"] == "neg"][:10])
    f = _write(tmp_path / "t.csv", [(r["text"], r["label"]) for r in rows])
    ref, _ = _reference_accuracy(m, [x["text"] for x in rows], [x["label"] for x in rows])
    assert ref != 50.0
    out = tmp_path / "e.json"
    _ok(["eval", str(m / "model.onnx"), "--tokenizer", str(tok), "--test-file", str(f), "-o", str(out),
         "--threads", "1"])
    r = json.loads(out.read_text())
    assert r["accuracy"] == pytest.approx(ref) and r["label_names"] == ["pos", "neg"] and not r["label_note"]
    (tok / "config.json").write_text(json.dumps({**cfg, "id2label": {"0": "neg", "1": "pos"}}))
    _fails(["eval", str(m / "model.onnx"), "--tokenizer", str(tok), "--test-file", str(f), "--threads", "1"],
           "label names (id2label)", "differ")


def test_a_label_column_of_one_label_per_row_is_a_short_line(trained, tmp_path):
    """--label-col naming the text column (or a row-id column) made every text a label: train built a head of as many
    classes as rows, and eval's error line listed every text (a line of megabytes on a real file). The same column
    twice is refused as options; the label lists of an error show 10 and the count."""
    rows = [(r["text"], r["label"], f"row{i}") for i, r in enumerate(trained["rows"][:60])]
    f = tmp_path / "t.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label", "id"])
        w.writerows(rows)
    for cmd in (["eval", str(trained["model"]), "--test-file", str(f)],
                ["train", "--model", str(trained["model"]), "--data", str(f), "-o", str(tmp_path / "o")]):
        _fails(cmd + ["--label-col", "text", "--threads", "1"],
               "--text-col/--label-col: both name the column 'text'")
    assert not (tmp_path / "o").exists()
    line = _fails(["eval", str(trained["model"]), "--test-file", str(f), "--label-col", "id", "--threads", "1"],
                  "unknown to the model", "... (60 in all)", "model labels (id2label): 'neg', 'pos'")
    assert len(line) < 400 and "row59" not in line


def test_eval_without_data_or_a_recorded_dataset_says_it_took_the_default(trained, tmp_path):
    """A model trained elsewhere (no deploytool.json): eval takes rotten-tomatoes and its data line says so in
    one parenthesis, not 'data (default (no dataset recorded with the model)) ...'."""
    out = tmp_path / "e.json"
    text = _ok(["eval", str(trained["root"] / "tiny"), "--max-eval", "10", "-o", str(out), "--threads", "1"])
    r = json.loads(out.read_text())
    assert r["data_origin"] == "default: no dataset recorded with the model"
    assert "data (default: no dataset recorded with the model) rotten-tomatoes: 12,808 examples" in text, text
