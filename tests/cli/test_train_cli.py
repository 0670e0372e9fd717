"""Bad input to the training commands: exit 2, one `error:` line naming the problem, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploytool.cli import main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv

    root = tmp_path_factory.mktemp("cli")
    tiny_classifier_folder(root / "tiny", layers=2)
    toy_csv(root / "toy.csv", n=120)
    (root / "noweights").mkdir()
    (root / "noweights" / "config.json").write_text((root / "tiny" / "config.json").read_text())
    return root


def _fails(args, *words, out=None):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, (res.exit_code, res.output, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output + res.stderr
    for w in words:
        assert w in lines[0], lines[0]
    if out is not None:
        assert not out.exists()
        assert not [p for p in out.parent.iterdir() if p.name.startswith("." + out.name)]
    return lines[0]


@pytest.mark.parametrize("content,words", [
    ("text,label\n", ["empty"]),
    ("text,label\ngood film,pos\nbad film,pos\nok film,pos\n", ["only one label", "pos"]),
    ("text,y\ngood film,pos\nbad film,neg\nok film,pos\n", ["no column 'label'", "--label-col"]),
])
def test_train_bad_dataset(tiny, tmp_path, content, words):
    data = tmp_path / "d.csv"
    data.write_text(content)
    out = tmp_path / "out"
    _fails(["train", "--model", str(tiny / "tiny"), "--data", str(data), "-o", str(out), "--threads", "1"],
           *words, out=out)


def test_eval_of_a_one_class_file_points_at_the_way_that_scores_it(tiny, tmp_path):
    """eval --data of a file of one class cannot split it, and said only 'need at least two classes': the line names
    the two ways that score it, and --test-file does."""
    data = tmp_path / "pos.csv"
    data.write_text("text,label\n" + "".join(f"good film {i},1\n" for i in range(12)))
    line = _fails(["eval", str(tiny / "tiny"), "--data", str(data)], "only one label")
    assert "eval --test-file FILE" in line and "--split all" in line, line
    out = tmp_path / "e.json"
    res = CliRunner().invoke(main, ["eval", str(tiny / "tiny"), "--test-file", str(data), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["n"] == 12


def test_missing_label_column_jsonl(tiny, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"text": f"t{i}", "sentiment": i % 2}) for i in range(10)))
    _fails(["eval", str(tiny / "tiny"), "--data", str(data)], "no column 'label'")


# every command that reads a PyTorch checkpoint folder {m} (and writes {o} or {o}.json)
CHECKPOINT_COMMANDS = [
    ["eval", "{m}"],
    ["importance", "{m}", "-o", "{o}.json"],
    ["dynabert", "--teacher", "{m}", "-o", "{o}"],
    ["qat", "--teacher", "{m}", "-o", "{o}"],
    ["train", "--model", "{m}", "-o", "{o}"],
]


@pytest.mark.parametrize("cmd", CHECKPOINT_COMMANDS)
def test_checkpoint_without_weights(tiny, tmp_path, cmd):
    out = tmp_path / "out"
    args = [a.format(m=tiny / "noweights", o=out) for a in cmd] + ["--data", str(tiny / "toy.csv")]
    _fails(args, "no weights", out=out)
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("opt,value,field", [
    ("--widths", "0,0.5", "widths"), ("--widths", "0.5,1.5", "widths"), ("--depths", "-0.5", "depths"),
    ("--widths", "half", "widths"),
])
def test_dynabert_width_outside_unit_interval(tiny, tmp_path, opt, value, field):
    out = tmp_path / "dyn"
    line = _fails(["dynabert", "--teacher", str(tiny / "tiny"), "-o", str(out), "--data", str(tiny / "toy.csv"),
                   opt, value], field, out=out)
    assert "(0, 1]" in line


@pytest.mark.parametrize("opt,value,item", [("--widths", "1,,0.5", 2), ("--depths", "1,0.5,", 3),
                                            ("--widths", " ", 1)])
def test_dynabert_empty_list_item_is_refused(tiny, tmp_path, opt, value, item):
    """An empty item was dropped in silence (1,,0.5 trained widths 1 and 0.5), as fit's lists did."""
    out = tmp_path / "dyn"
    line = _fails(["dynabert", "--teacher", str(tiny / "tiny"), "-o", str(out), "--data", str(tiny / "toy.csv"),
                   opt, value], opt.strip("-"), out=out)
    assert f"item {item} of {value!r} is empty" in line, line


@pytest.mark.parametrize("threads", ["0", "-1"])
@pytest.mark.parametrize("cmd", CHECKPOINT_COMMANDS)
def test_threads_outside_range(tiny, tmp_path, cmd, threads):
    out = tmp_path / "out"
    args = [a.format(m=tiny / "tiny", o=out) for a in cmd] + ["--data", str(tiny / "toy.csv"), "--threads", threads]
    _fails(args, "threads: must be in [1, 256]", out=out)
    assert not (tmp_path / "out.json").exists()


def test_eval_width_outside(tiny):
    _fails(["eval", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "--width", "1.5"], "width", "(0, 1]")


def test_output_folder_not_a_model_is_refused(tiny, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    _fails(["train", "--model", str(tiny / "tiny"), "-o", str(out), "--data", str(tiny / "toy.csv")], "not empty")
    assert (out / "notes.txt").read_text() == "keep me"


def test_long_texts_are_truncated_and_counted(tiny, tmp_path):
    out = tmp_path / "t"
    res = CliRunner().invoke(main, ["train", "--model", str(tiny / "tiny"), "-o", str(out), "--data",
                                    str(tiny / "toy.csv"), "--max-length", "8", "--epochs", "0.2",
                                    "--threads", "1"])
    assert res.exit_code == 0, res.output + res.stderr
    r = json.loads((out / "deploytool.json").read_text())
    assert r["truncated_train"] > 50 and r["dev"]["truncated"] > 0
    assert f"({r['truncated_train']} texts truncated)" in res.stdout  # said, not silent
    assert (out / "model.safetensors").is_file()


def test_a_model_folder_without_a_tokenizer_says_so(tiny, tmp_path):
    """A folder with weights but no tokenizer file said "no usable tokenizer (... stat: path should be string,
    bytes, os.PathLike or integer, not NoneType)"; it names what is missing."""
    import shutil

    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(tiny / "tiny" / f, bare / f)
    out = tmp_path / "trained"
    _fails(["train", "--model", str(bare), "--data", str(tiny / "toy.csv"), "-o", str(out)],
           "no tokenizer in the model folder", "tokenizer.json", "vocab.txt", out=out)


@pytest.mark.parametrize("args, words", [
    # numpy's and accelerate's generators failed on these as internal errors (exit 1)
    (["train", "--model", "{t}/tiny", "--data", "{t}/toy.csv", "--seed", "-1", "-o", "{o}"],
     ["--seed: must be an integer in [0, 4294967295] (got -1)"]),
    (["importance", "{t}/tiny", "--data", "{t}/toy.csv", "--seed", "4294967296", "-o", "{o}"],
     ["--seed: must be an integer in [0, 4294967295]"]),
    # the recorded dataset's seed and columns replaced what was typed, without a word
    (["eval", "{t}/tiny", "--seed", "5"], ["--seed: only with --data or --test-file"]),
    (["eval", "{t}/tiny", "--text-col", "body", "--label-col", "y"], ["--text-col, --label-col: only with --data"]),
    # a sub-network keeping no head: evaluated at width 0.25 and recorded as 0.1 (slice and dynabert refuse it)
    (["eval", "{t}/tiny", "--data", "{t}/toy.csv", "--width", "0.05"], ["width: 0.05 keeps round(0.05 * 4) = 0 of 4 heads"]),
    # options an eval does not read were accepted and ignored
    (["eval", "{t}/tiny", "--test-file", "{t}/toy.csv", "--split", "dev"], ["--split dev: not used with --test-file"]),
    (["eval", "{t}/tiny", "--data", "{t}/toy.csv", "--corpus", "nonexistent.txt"],
     ["--corpus: embedding models only", "is a classifier"]),
    (["eval", "{t}/tiny", "--data", "{t}/toy.csv", "--max-train", "5"], ["--max-train: not used by eval"]),
    # -o naming the --init model replaced the input
    (["qat", "--teacher", "{t}/tiny", "--data", "{t}/toy.csv", "--tws", "--mode", "binary", "--init", "{o}", "-o", "{o}"],
     ["output folder would overwrite the input model"]),
])
def test_training_options_that_were_ignored_or_crashed(tiny, tmp_path, args, words):
    import shutil

    out = tmp_path / "init"
    if "--init" in args:  # an input model the output would replace
        shutil.copytree(tiny / "tiny", out)
        before = (out / "model.safetensors").read_bytes()
    line = _fails([a.format(t=tiny, o=out) for a in args], *words)
    assert line
    if "--init" in args:
        assert (out / "model.safetensors").read_bytes() == before
    else:
        assert not out.exists()


@pytest.mark.parametrize("damage, words", [
    ("config", "its config.json cannot be read"),
    ("weights", "cannot load weights"),
])
@pytest.mark.parametrize("command", ["train", "eval", "qat"])
def test_a_damaged_model_folder_is_one_line(tiny, tmp_path, damage, words, command):
    """Invalid JSON in config.json and a truncated model.safetensors were internal errors (exit 1: OSError,
    SafetensorError) for train and eval, and the weights for importance/qat/distill too."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny / "tiny", bad)
    if damage == "config":
        (bad / "config.json").write_text('{"model_type": "bert", ')
    else:
        w = bad / "model.safetensors"
        w.write_bytes(w.read_bytes()[:20])
    out = tmp_path / "out"
    args = {"train": ["train", "--model", str(bad), "-o", str(out)],
            "eval": ["eval", str(bad)],
            "qat": ["qat", "--teacher", str(bad), "-o", str(out)]}[command]
    if command == "qat" and damage == "config":
        words = "config.json"
    _fails(args + ["--data", str(tiny / "toy.csv")], words)
    assert not out.exists()


def test_importance_takes_max_train_and_refuses_max_eval(tiny, tmp_path):
    """--max-train was offered and ignored (320 examples scored for --max-train 5); --max-eval means nothing here."""
    out = tmp_path / "imp.json"
    r = CliRunner().invoke(main, ["importance", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "--max-train",
                                  "5", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "from 5 examples" in r.output and json.loads(out.read_text())
    # README: each training verb prints how the data was split (importance did not)
    assert r.stdout.startswith("data toy.csv: 120 examples split 80%/10%/10% train/dev/test = 96/12/12 (seed 0)\n")
    _fails(["importance", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "--max-eval", "5", "-o",
            str(tmp_path / "i2.json")], "--max-eval: not used by importance", out=tmp_path / "i2.json")


def test_importance_max_length_past_the_position_table_is_one_line(tmp_path):
    """importance --max-length 48 on a model of 32 positions died at its first longer example with torch's size
    mismatch, an internal error (exit 1); now one line naming the table, before any example runs."""
    from deploytool.testing.toy_text import FILLER, tiny_classifier_folder

    folder = tiny_classifier_folder(tmp_path / "short", max_pos=32)
    data = tmp_path / "long.csv"
    data.write_text("text,label\n" + "".join(f"{' '.join(FILLER[i:i + 40])},{'pos' if i % 2 else 'neg'}\n"
                                             for i in range(30)))
    out = tmp_path / "imp.json"
    _fails(["importance", str(folder), "--data", str(data), "--max-length", "48", "--threads", "1", "-o", str(out)],
           "--max-length 48", "(32 positions)", out=out)


@pytest.fixture(scope="module")
def short_table(tmp_path_factory):
    """A classifier of 64 positions, one of the default 160, and texts of about 100 tokens (300 of them: no
    small-split warning on stderr)."""
    from deploytool.testing.toy_text import FILLER, tiny_classifier_folder

    root = tmp_path_factory.mktemp("short_table")
    tiny_classifier_folder(root / "short", max_pos=64, layers=2)
    tiny_classifier_folder(root / "long", layers=2)
    words = FILLER * (200 // len(FILLER) + 2)
    (root / "long.csv").write_text("text,label\n" + "".join(f"{' '.join(words[i % 50:i % 50 + 100])},"
                                                            f"{'pos' if i % 2 else 'neg'}\n" for i in range(300)))
    return root


@pytest.mark.parametrize("args,name", [
    (["train", "--model", "{t}/short"], "{t}/short"),
    (["dynabert", "--teacher", "{t}/short", "--width-epochs", "0.1", "--depth-epochs", "0"], "the teacher {t}/short"),
    (["qat", "--teacher", "{t}/short", "--epochs", "0.1"], "the teacher {t}/short"),
    (["qat", "--teacher", "{t}/long", "--tws", "--mode", "binary", "--init", "{t}/short", "--epochs", "0.1"],
     "the --init model {t}/short"),
    (["distill", "--teacher", "{t}/short", "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "32",
      "--epochs", "0.1"], "the teacher {t}/short"),
], ids=["train", "dynabert", "qat", "qat-init", "distill"])
def test_training_max_length_past_the_position_table_is_one_line(short_table, tmp_path, args, name):
    """--max-length 128 on a model of 64 positions trained until its first longer text, then died with torch's
    size mismatch, an internal error (exit 1); now one line naming the table, before any training (the distill
    student copies the teacher's table, so the teacher's check covers it)."""
    t = str(short_table)
    out = tmp_path / "out"
    _fails([a.format(t=t) for a in args] + ["--data", f"{t}/long.csv", "--max-length", "128", "--max-train", "8",
                                             "--batch-size", "4", "--threads", "1", "-o", str(out)],
           "--max-length 128", f"position table of {name.format(t=t)} (64 positions)", "--max-length 64 or less",
           out=out)


def test_a_trained_model_folder_gets_the_umasks_permissions(tiny, tmp_path):
    """Model folders were 0700 (mkdtemp's), the .onnx and .json beside them 0644: another user or a serving account
    could not read the model."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        out = tmp_path / "trained"
        r = CliRunner().invoke(main, ["train", "--model", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"),
                                      "--max-train", "8", "--batch-size", "8", "--epochs", "1", "--cpu", "-o",
                                      str(out)])
        assert r.exit_code == 0, r.output
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def other_tokenizer(tiny, tmp_path_factory):
    """The tiny classifier (an embedding table of 100 rows) with another model's tokenizer of 400 tokens, whose
    ids of the toy texts' words (w0..w94) are 305..399."""
    import shutil

    folder = tmp_path_factory.mktemp("othertok") / "m"
    shutil.copytree(tiny / "tiny", folder)
    (folder / "tokenizer.json").unlink()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"x{i}" for i in range(300)] + [f"w{i}" for i in range(95)]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return folder


@pytest.mark.parametrize("cmd", CHECKPOINT_COMMANDS + [
    ["distill", "--teacher", "{m}", "-o", "{o}", "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "32"]],
    ids=lambda c: c[0])
def test_a_tokenizer_past_the_embedding_table_is_one_line(tiny, other_tokenizer, tmp_path, cmd):
    """A model folder holding another model's tokenizer (ids up to 399 for a table of 100 rows) died at its first
    text with torch's 'IndexError: index out of range in self', an internal error (exit 1), in every command; now one
    line naming the tokenizer and the table, before any training, nothing written."""
    out = tmp_path / "out"
    short = ["--max-eval", "8"] if cmd[0] == "eval" else ["--max-train", "8", "--batch-size", "8"]
    args = [a.format(m=other_tokenizer, o=out) for a in cmd] + ["--data", str(tiny / "toy.csv"), "--threads", "1",
                                                                *short]
    _fails(args, str(other_tokenizer), "token ids up to 399", "embedding table of 100 rows", out=out)
    assert not (tmp_path / "out.json").exists()


def test_eval_with_another_models_tokenizer_names_it(tiny, other_tokenizer):
    _fails(["eval", str(tiny / "tiny"), "--tokenizer", str(other_tokenizer), "--data", str(tiny / "toy.csv")],
           f"the tokenizer {other_tokenizer} has token ids up to 399", "embedding table of 100 rows")


NESTED_COMMANDS = [
    ["train", "--model", "{m}", "-o", "{o}"],
    ["importance", "{m}", "-o", "{j}", "--reorder", "{o}"],
    ["dynabert", "--teacher", "{m}", "-o", "{o}", "--width-epochs", "0.5", "--depth-epochs", "0"],
    ["qat", "--teacher", "{m}", "-o", "{o}", "--epochs", "0.5"],
    ["qat", "--teacher", "{t}/tiny", "--mode", "binary", "--tws", "--init", "{m}", "-o", "{o}", "--epochs", "0.5"],
    ["distill", "--teacher", "{m}", "-o", "{o}", "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "32"],
]


def _tree(folder):
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("cmd", NESTED_COMMANDS, ids=lambda c: c[0] + ("-init" if "--init" in c else ""))
def test_an_output_folder_holding_the_input_model_is_refused(tiny, tmp_path, cmd):
    """-o naming a model folder that holds the input model (a teacher kept in a subfolder of an older run) trained,
    then replaced that folder, deleting the input with it (exit 0, the teacher gone); now one line, nothing changed."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(tiny / "tiny", out)
    shutil.copytree(tiny / "tiny", out / "teacher")
    before = _tree(out)
    args = [a.format(m=out / "teacher", o=out, t=tiny, j=tmp_path / "imp.json") for a in cmd]
    _fails(args + ["--data", str(tiny / "toy.csv"), "--max-train", "8", "--batch-size", "8", "--threads", "1"],
           f"{out}: output folder holds the input {out / 'teacher'}", "would delete it")
    assert _tree(out) == before
    assert not (tmp_path / "imp.json").exists()


@pytest.mark.parametrize("cmd", NESTED_COMMANDS, ids=lambda c: c[0] + ("-init" if "--init" in c else ""))
def test_an_output_folder_inside_the_input_model_is_refused(tiny, tmp_path, cmd):
    """-o naming a folder inside the input model wrote the new model into the input's folder (exit 0, the input
    changed); now one line, the input as it was."""
    import shutil

    src = tmp_path / "teacher"
    shutil.copytree(tiny / "tiny", src)
    before = _tree(src)
    out = src / "student"
    args = [a.format(m=src, o=out, t=tiny, j=tmp_path / "imp.json") for a in cmd]
    _fails(args + ["--data", str(tiny / "toy.csv"), "--max-train", "8", "--batch-size", "8", "--threads", "1"],
           f"{out}: output folder is inside the input model {src}", out=out)
    assert _tree(src) == before


@pytest.mark.parametrize("where", ["imp.json", "sub/imp.json", "link"])
def test_an_importance_file_inside_the_input_model_is_refused(tiny, tmp_path, where):
    """importance MODEL -o MODEL/imp.json wrote its JSON into the input model folder (exit 0, the input changed),
    where train/qat/distill refuse an -o inside the input; now one line, the input as it was."""
    import shutil

    src = tmp_path / "teacher"
    shutil.copytree(tiny / "tiny", src)
    before = _tree(src)
    if where == "link":  # the model named through a link to its folder
        (tmp_path / "link").symlink_to(src, target_is_directory=True)
        model, out = tmp_path / "link", src / "imp.json"
    else:
        model, out = src, src / where
    _fails(["importance", str(model), "--data", str(tiny / "toy.csv"), "--max-train", "8", "--threads", "1", "-o",
            str(out)], f"{out}: output file is inside the input model {model}")
    assert _tree(src) == before


@pytest.mark.parametrize("cmd", [["importance", "{m}", "-o", "{o}.json"], ["train", "--model", "{m}", "-o", "{o}"]],
                         ids=["importance", "train"])
def test_an_onnx_file_given_as_the_model_says_what_is_expected(tiny, tmp_path, cmd):
    """importance m.onnx said 'model m.onnx is not a folder (expected a Hugging Face model folder)', without saying
    that the ONNX file is the wrong kind of model: the PyTorch folder it came from is what these commands read."""
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    out = tmp_path / "out"
    _fails([a.format(m=onnx_file, o=out) for a in cmd] + ["--data", str(tiny / "toy.csv")],
           f"model {onnx_file} is an ONNX file; expected a Hugging Face model folder (the PyTorch model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_importance_of_a_model_with_nan_weights_names_the_model(tiny, tmp_path):
    """A classifier weight of NaN: importance failed as its own file's validation ("importance: 'heads' layer 0 holds
    nan or inf"), which names neither the model nor the cause; now the model and its non-finite gradients."""
    import shutil

    from safetensors.torch import load_file, save_file

    src = tmp_path / "nan"
    shutil.copytree(tiny / "tiny", src)
    sd = load_file(src / "model.safetensors")
    sd["classifier.weight"][0, 0] = float("nan")
    save_file(sd, src / "model.safetensors", metadata={"format": "pt"})
    out, reordered = tmp_path / "imp.json", tmp_path / "reordered"
    _fails(["importance", str(src), "--data", str(tiny / "toy.csv"), "--max-train", "8", "--threads", "1", "-o",
            str(out), "--reorder", str(reordered)], f"{src}: non-finite gradients (NaN or inf) on its 8 examples",
           out=out)
    assert not reordered.exists()


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "model-folder"])
def test_an_importance_file_inside_the_reorder_folder_is_refused(tiny, tmp_path, existing):
    """importance -o R/imp.json --reorder R: with R a model folder, R was replaced after the file was written in it,
    deleting it, while the command said '-> R/imp.json' (exit 0); with R new, the file made R 'not empty' and the
    reorder was refused after all the work, the file left behind. Now refused before any work."""
    import shutil

    reordered = tmp_path / "reordered"
    if existing:
        shutil.copytree(tiny / "tiny", reordered)
    before = _tree(tmp_path)
    out = reordered / "imp.json"
    _fails(["importance", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "--max-train", "8", "--threads", "1",
            "-o", str(out), "--reorder", str(reordered)],
           f"{out}: the importance file is inside the --reorder folder {reordered}, which the reordered model replaces")
    assert _tree(tmp_path) == before


def test_a_reorder_folder_under_the_importance_file_is_refused(tiny, tmp_path):
    """importance -o imp.json --reorder imp.json/sub: the file was written, then the reorder failed after all the work
    with 'imp.json/sub: cannot write in imp.json (File exists)', the file left behind; now refused before any work."""
    out = tmp_path / "imp.json"
    _fails(["importance", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "--max-train", "8", "--threads", "1",
            "-o", str(out), "--reorder", str(out / "sub")],
           f"{out / 'sub'}: the --reorder folder is under the importance file {out}, which is written as a file",
           out=out)


def test_an_output_folder_holding_the_data_file_is_refused(tiny, tmp_path):
    """The data file kept in the model folder that -o replaces was deleted with it."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(tiny / "tiny", out)
    shutil.copy(tiny / "toy.csv", out / "data.csv")
    before = _tree(out)
    _fails(["train", "--model", str(tiny / "tiny"), "--data", str(out / "data.csv"), "-o", str(out), "--max-train",
            "8", "--threads", "1"], f"output folder holds the input {out / 'data.csv'}")
    assert _tree(out) == before


@pytest.mark.parametrize("extra, option", [
    (["--tws-width", "0.25"], "--tws-width"),
    (["--mode", "binary", "--tws-ternary-share", "0.9"], "--tws-ternary-share"),
])
def test_qat_tws_options_without_tws_are_refused(tiny, tmp_path, extra, option):
    """--tws-width and --tws-ternary-share without --tws were ignored in silence: a plain ternary (or binary) run,
    exit 0, as if the student had been cut to that width or trained ternary for that share."""
    out = tmp_path / "q"
    _fails(["qat", "--teacher", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "-o", str(out), "--epochs", "0.5",
            "--max-train", "8", "--threads", "1", *extra],
           f"{option}: only used with --tws (ternary weight splitting, --mode binary)", out=out)


@pytest.mark.parametrize("extra, words", [
    (["--tws"], "--tws: ternary weight splitting makes a binary model: use it with --mode binary"),
    (["--init", "."], "--init: a separate starting model is only used with --tws"),
])
def test_qat_tws_refusals_name_the_options(tiny, tmp_path, extra, words):
    """The refusals named the options they depend on by their config fields ('only used with tws', 'use it with
    mode binary'): a command line names them as typed (--tws, --mode binary); the library keeps the field names."""
    out = tmp_path / "q"
    _fails(["qat", "--teacher", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "-o", str(out), "--epochs", "0.5",
            "--max-train", "8", "--threads", "1", *extra], words, out=out)


def test_qat_tws_width_that_keeps_no_head_is_refused(tiny, tmp_path):
    """qat --tws --tws-width 0.1 on a model of 4 heads (round(0.4) = 0) trained a student of one head a layer (width
    0.25) and recorded its width as 0.1, exit 0; dynabert and slice refuse such a width, and so does this now."""
    out = tmp_path / "q"
    _fails(["qat", "--teacher", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "-o", str(out), "--mode", "binary",
            "--tws", "--tws-width", "0.1", "--epochs", "0.5", "--max-train", "8", "--threads", "1"],
           "--tws-width: 0.1 keeps round(0.1 * 4) = 0 of 4 heads", out=out)


def test_distill_importance_examples_with_a_random_student_is_refused(tiny, tmp_path):
    """distill --init random --importance-examples 100 was accepted and the count ignored (a random student has no
    teacher heads to reorder), exit 0."""
    out = tmp_path / "s"
    _fails(["distill", "--teacher", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "-o", str(out), "--init",
            "random", "--importance-examples", "100", "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "32",
            "--max-train", "8", "--threads", "1"], "--importance-examples: only used with init teacher-slice", out=out)
    for n in ("0", "256"):  # 0 ("don't") and the default say nothing of the reorder: accepted as before
        r = CliRunner().invoke(main, ["distill", "--teacher", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"),
                                      "-o", str(tmp_path / f"ok{n}"), "--init", "random", "--importance-examples", n,
                                      "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "32", "--epochs",
                                      "0.5", "--max-train", "8", "--threads", "1"])
        assert r.exit_code == 0, r.output


@pytest.mark.parametrize("init, words", [
    ("wide", ["hidden size 48, the teacher's", "32"]),
    ("heads2", ["attention heads per layer 2, the teacher's", "4"]),
    ("othervocab", ["its tokenizer's vocabulary is not the teacher's", "first difference id 5"]),
])
def test_qat_tws_init_of_another_shape_or_vocabulary_is_refused(tiny, tmp_path, init, words):
    """qat --tws --init of a model of another hidden size died in the first step with torch's size mismatch (exit 1,
    'internal error RuntimeError'); one of the teacher's shape but another vocabulary (the same size, other tokens)
    trained and saved a student whose embeddings were read under the teacher's token ids, exit 0."""
    from transformers import BertTokenizerFast

    from deploytool.testing.toy_text import tiny_classifier_folder

    folder = tmp_path / init
    if init == "wide":
        tiny_classifier_folder(folder, layers=2, hidden=48, heads=4)
    elif init == "heads2":
        tiny_classifier_folder(folder, layers=2, heads=2)
    else:
        tiny_classifier_folder(folder, layers=2, seed=1)
        v = (folder / "vocab.txt").read_text().splitlines()
        (folder / "vocab.txt").write_text("\n".join(v[:5] + v[5:][::-1]) + "\n")  # same size, tokens moved
        BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    out = tmp_path / "q"
    _fails(["qat", "--teacher", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "-o", str(out), "--mode", "binary",
            "--tws", "--init", str(folder), "--epochs", "0.5", "--max-train", "8", "--threads", "1"],
           f"--init model {folder}", *words, out=out)


def test_qat_tws_init_of_the_teacher_shape_and_tokenizer_trains(tiny, tmp_path):
    """The check above passes a model of the teacher's shape and tokenizer (its own copy; another depth too)."""
    from deploytool.testing.toy_text import tiny_classifier_folder

    deeper = tiny_classifier_folder(tmp_path / "deeper", layers=3, seed=2)
    for init in (tiny / "tiny", deeper):
        out = tmp_path / f"q_{init.name}"
        r = CliRunner().invoke(main, ["qat", "--teacher", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "-o",
                                      str(out), "--mode", "binary", "--tws", "--init", str(init), "--epochs", "0.5",
                                      "--max-train", "8", "--threads", "1"])
        assert r.exit_code == 0, r.output
        assert (out / "model.safetensors").is_file()


def _next_commands(stdout: str) -> list[list[str]]:
    """The commands of a training command's last line, 'next: CMD[, then CMD] (...)', as argument lists."""
    import shlex

    last = stdout.strip().splitlines()[-1]
    assert last.startswith("next: deploytool "), stdout
    body = last[len("next: "):].split(" (", 1)[0]
    return [shlex.split(c)[1:] for c in body.split(", then ")]


@pytest.mark.parametrize("cmd", [
    ["train", "--model", "{m}", "--epochs", "0.2"],
    ["dynabert", "--teacher", "{m}", "--width-epochs", "0.1", "--depth-epochs", "0.1"],
    ["distill", "--teacher", "{m}", "--epochs", "0.2", "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "32"],
])
def test_a_training_command_ends_with_what_to_run_next(tiny, tmp_path, cmd):
    """train, dynabert and distill ended on 'saved OUT': where the result is, not what it is for. The last line now
    is the command that exports it (run here: it works on the folder just written)."""
    out = tmp_path / "my model"  # a space: the printed command is quoted for the shell
    r = CliRunner().invoke(main, [a.format(m=tiny / "tiny") for a in cmd] + [
        "-o", str(out), "--data", str(tiny / "toy.csv"), "--max-train", "16", "--threads", "1"])
    assert r.exit_code == 0, r.output
    first = _next_commands(r.stdout)[0]
    assert first == ["export", "--model", str(out), "--task", "sequence-classification", "-o", f"{out}.onnx"]
    e = CliRunner().invoke(main, first)
    assert e.exit_code == 0, e.output
    assert (tmp_path / "my model.onnx").is_file()


@pytest.mark.parametrize("extra, pack", [
    ([], ["--weights", "ternary"]),
    (["--granularity", "row", "--act-bits", "0", "--no-embeddings"],
     ["--weights", "ternary", "--granularity", "row", "--embeddings", "fp32", "--runtime", "memory",
      "--accuracy-level", "0"]),
    (["--mode", "binary", "--tws"], ["--weights", "split-binary"]),
])
def test_qat_ends_with_the_export_and_the_pack_it_was_trained_for(tiny, tmp_path, extra, pack):
    """qat ended on 'saved OUT' (with --tws: 'deploy: deploytool export --model OUT ... then deploytool pack --weights
    split-binary', no file names, no granularity); now the two commands, with the settings it was trained with: run
    in turn they write the packed file, and pack says nothing of settings that differ from the training's."""
    import logging

    out = tmp_path / "q"
    r = CliRunner().invoke(main, ["qat", "--teacher", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "-o",
                                  str(out), "--epochs", "0.2", "--max-train", "16", "--threads", "1", *extra])
    assert r.exit_code == 0, r.output
    export, packed = _next_commands(r.stdout)
    assert export[:2] == ["export", "--model"] and packed[:2] == ["pack", f"{out}.onnx"]
    assert sorted(packed[2:-2]) == sorted(pack) and packed[-2] == "-o", packed
    assert CliRunner().invoke(main, export).exit_code == 0
    seen = []

    class Grab(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    h = Grab(logging.WARNING)
    logging.getLogger("deploytool").addHandler(h)
    try:
        p = CliRunner().invoke(main, packed)
    finally:
        logging.getLogger("deploytool").removeHandler(h)
    assert p.exit_code == 0, p.output
    assert Path(packed[-1]).is_file()
    assert not [m for m in seen if "differ" in m], seen


def test_importance_ends_with_what_reads_its_file(tiny, tmp_path):
    out = tmp_path / "imp.json"
    r = CliRunner().invoke(main, ["importance", str(tiny / "tiny"), "--data", str(tiny / "toy.csv"), "--max-train",
                                  "8", "-o", str(out), "--threads", "1"])
    assert r.exit_code == 0, r.output
    dyn = _next_commands(r.stdout)[0]
    assert dyn[:5] == ["dynabert", "--teacher", str(tiny / "tiny"), "--importance", str(out)], dyn
    assert f"deploytool reorder M.onnx --importance {out}" in r.stdout.splitlines()[-1]


def test_dynabert_one_subnet_per_step_is_refused(tiny, tmp_path):
    """--subnets-per-step 1 ('k: largest, smallest and k-2 random ones') trained two sub-networks a step, as 2 does,
    and recorded 1, exit 0."""
    out = tmp_path / "dyn"
    _fails(["dynabert", "--teacher", str(tiny / "tiny"), "-o", str(out), "--data", str(tiny / "toy.csv"),
            "--subnets-per-step", "1", "--width-epochs", "0.1", "--depth-epochs", "0.1", "--threads", "1"],
           "--subnets-per-step: 1 is not a sample", "give 0", "or 2 or more", out=out)


def test_dynabert_help_says_what_the_depth_stage_samples():
    """--help said 'k >= 2: largest, smallest and k-2 random ones' for both stages; the depth stage trains every
    depth each step at rotating widths (pick_subnets_by_depth, README 'Training that holds at every depth')."""
    from click.testing import CliRunner

    from deploytool.cli import main

    r = CliRunner().invoke(main, ["dynabert", "--help"], terminal_width=400)
    assert r.exit_code == 0
    line = " ".join(r.output.split())
    assert ("k >= 2: the width stage trains the largest, the smallest and k-2 random widths, the depth stage every "
            "depth at widths rotating over the steps (more random pairs up to k)") in line


@pytest.mark.parametrize("labels, shown", [
    (["pos", "neg", "NaN"], "the dataset has 3 ('NaN', 'neg', 'pos')"),  # a missing value written out as text
    (["pos", "neg", "1", "0"], "the dataset has 4 ('0', '1', 'neg', 'pos')"),  # two spellings of the classes
])
def test_train_label_count_refusal_names_the_data_labels(tiny, tmp_path, labels, shown):
    """train --model CLASSIFIER on data of another label count said 'classifies 2 labels, the dataset has 3' and
    not which: a 'NaN' label (pandas' na_rep) or '1' beside 'pos' was left to be found by hand."""
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"w{i} w{i + 1} w{i + 2},{labels[i % len(labels)]}\n"
                                             for i in range(60)))
    out = tmp_path / "out"
    _fails(["train", "--model", str(tiny / "tiny"), "--data", str(data), "-o", str(out), "--threads", "1"],
           "classifies 2 labels", shown, out=out)


@pytest.fixture(scope="module")
def exported_apart(tiny, tmp_path_factory):
    """The tiny classifier exported into a folder of its own (the .onnx alone there, as `deploytool export -o`
    leaves it); the export records the model folder as typed (absolute here)."""
    out = tmp_path_factory.mktemp("apart") / "m.onnx"
    res = CliRunner().invoke(main, ["export", "--model", str(tiny / "tiny"), "--task", "sequence-classification",
                                    "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"]
    return out


def test_eval_of_an_export_reads_the_tokenizer_of_the_folder_it_was_exported_from(tiny, exported_apart):
    """eval looked for an ONNX model's tokenizer beside it only (quantize --static, qnn and bundle also look in the
    model folder the export recorded): an export written elsewhere needed --tokenizer. By the one rule now, with the
    label names and the training record of that folder, and said; the figures are those --tokenizer gives."""
    base = ["eval", str(exported_apart), "--data", str(tiny / "toy.csv"), "--split", "all", "--max-eval", "40",
            "--threads", "1"]
    found = CliRunner().invoke(main, base)
    assert found.exit_code == 0, found.output
    assert f"tokenizer and label names from {tiny / 'tiny'}" in found.stdout
    runs = [CliRunner().invoke(main, base + args + ["--json"]) for args in ([], ["--tokenizer", str(tiny / "tiny")])]
    assert all(r.exit_code == 0 for r in runs), [r.output for r in runs]
    a, b = (json.loads(r.stdout) for r in runs)
    assert a["n"] == b["n"] == 40 and a["accuracy"] == b["accuracy"] and a["label_names"] == b["label_names"]
    assert a["predictions"] == b["predictions"]


def test_eval_of_a_model_without_a_tokenizer_names_where_it_looked(tiny, tmp_path, monkeypatch):
    """An export recorded with a relative folder, evaluated from elsewhere with no tokenizer beside it: one line
    naming each place looked at and --tokenizer (it was 'X: no tokenizer in the model folder', naming a folder the
    user never chose)."""
    import shutil

    monkeypatch.chdir(tiny)
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(main, ["export", "--model", "tiny", "--task", "sequence-classification", "-o", str(out)])
    assert res.exit_code == 0, res.output
    monkeypatch.chdir(tmp_path)
    shutil.copy(tiny / "toy.csv", tmp_path / "toy.csv")
    _fails(["eval", "m.onnx", "--data", "toy.csv"], "none beside m.onnx", "'tiny', the model folder the export "
           "recorded, is not a folder from here", "--tokenizer")
