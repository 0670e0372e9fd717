"""Where a model's tokenizer is: one rule (``deploytool.models.find_tokenizer``) for ``quantize --static``, ``qnn``
and ``bundle``.

The user's story: ``export --model ./my-bert -o out/m.onnx``, then ``quantize --static out/m.onnx``,
``qnn quantize out/m.onnx`` and ``bundle out/m.onnx`` get the same tokenizer, or one line saying where they looked.
quantize read the folder the export recorded, qnn and bundle the .onnx's own folder, and their ``--tokenizer``
options took different things (a tokenizer.json or folder; a folder only). Now: ``--tokenizer`` (a tokenizer.json
or vocab.txt, or a folder holding one), else beside the .onnx, else the folder the export recorded; where the last
two differ the output says which was used; none found where one is needed: one line, exit 2, naming each place.

The models are the session's tiny BERT with its ``deploytool.source`` record rewritten; the tokenizers are
transformers' ``BertTokenizerFast`` over the toy vocabulary (``deploytool.testing.toy_text``), written here.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import ConfigError

pytest.importorskip("transformers")

try:  # the qnn commands need onnxruntime-qnn; each of their cases skips alone, saying why
    import onnxruntime_qnn  # noqa: F401

    _NO_QNN = None
except ImportError as e:
    _NO_QNN = f"onnxruntime-qnn is not importable here ({e}); pip install 'deploytool[qnn]' runs these cases"

COMMANDS = ["quantize", pytest.param("qnn", marks=pytest.mark.skipif(_NO_QNN is not None, reason=_NO_QNN or "")),
            "bundle"]


def _vocab(swap: bool = False) -> list[str]:
    from deploytool.testing.toy_text import VOCAB

    v = list(VOCAB)
    if swap:  # a different tokenizer of the same size (the bundle checks the size against the word table)
        v[10], v[11] = v[11], v[10]
    return v


def _hf_tokenizer(folder: Path, swap: bool = False) -> Path:
    """tokenizer.json, vocab.txt and the config files, as ``save_pretrained`` writes them."""
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(_vocab(swap)) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    assert (folder / "tokenizer.json").is_file()
    return folder


def _vocab_only(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    return folder


@pytest.fixture(scope="module")
def fp32(tiny_onnx):
    return tiny_onnx("bert", layers=1)


@pytest.fixture
def story(fp32, tmp_path, monkeypatch):
    """``out/m.onnx`` whose export recorded ``./my-bert`` (relative, as typed), run from ``tmp_path``; the
    calibration texts in ``texts.csv``. Returns a function that writes the model (recording ``recorded``)."""
    from deploytool.testing.toy_text import toy_csv

    monkeypatch.chdir(tmp_path)
    toy_csv(tmp_path / "texts.csv", n=16)

    def make(recorded: str | None = "./my-bert") -> Path:
        m = onnx.load(str(fp32))
        keep = [p for p in m.metadata_props if p.key != "deploytool.source"]
        del m.metadata_props[:]
        m.metadata_props.extend(keep)
        if recorded is not None:
            m.metadata_props.add(key="deploytool.source", value=recorded)
        (tmp_path / "out").mkdir(exist_ok=True)
        onnx.save(m, str(tmp_path / "out" / "m.onnx"))
        return Path("out/m.onnx")

    return make


def _run(command: str, model: Path, *extra: str):
    """Run ``command`` on ``model`` so that it needs the tokenizer (static calibration, named calibration texts)."""
    args = {"quantize": ["quantize", str(model), "--int8", "--static", "--calib-data", "texts.csv", "--calib-size", "4",
                         "--no-verify", "-o", "q.onnx"],
            "qnn": ["qnn", "quantize", str(model), "--profile", "snapdragon-sm8650", "--seq-len", "8", "--calib-data",
                    "texts.csv", "--calib-size", "4", "-o", "q.onnx"],
            "bundle": ["bundle", str(model), "--profile", "snapdragon-sm8650", "--seq-len", "8", "--qnn-seq-len", "8",
                       "--qnn-calib-data", "texts.csv", "--qnn-calib-size", "4", "-o", "b", "--json"]}[command]
    return CliRunner().invoke(main, args + list(extra))


def _used(command: str, result) -> str:
    """The line that says which tokenizer the command read."""
    assert result.exit_code == 0, (result.output, result.exception)
    if command == "bundle":
        t = json.loads(result.stdout)["tokenizer"]
        return f"{t['files']} from {t['source']} ({t['found']}); {t['note']}"
    key = "  tokenizer: " if command == "quantize" else "  calibration: "
    lines = [ln for ln in result.output.splitlines() if ln.startswith(key)]
    assert len(lines) == 1, result.output
    return lines[0]


def _one_line_error(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def _nothing_written():
    assert not Path("q.onnx").exists() and not Path("b").exists()


# ---------------------------------------------------------------- the three commands, one rule
@pytest.mark.parametrize("command", COMMANDS)
def test_a_tokenizer_beside_the_model_is_used_and_a_different_recorded_one_is_named(story, command):
    """(a) out/ holds a tokenizer and ./my-bert, the folder the export recorded, another: the one beside the model
    is read, and the output says the recorded one differs and how to use it (quantize read ./my-bert's, qnn and
    bundle out/'s, none said so)."""
    model = story()
    _hf_tokenizer(Path("out"))
    _hf_tokenizer(Path("my-bert"), swap=True)
    used = _used(command, _run(command, model))
    assert "out/tokenizer.json" in used or "from out (" in used, used
    assert "'./my-bert', has a different tokenizer" in used and "pass --tokenizer my-bert to use it" in used, used


@pytest.mark.parametrize("command", COMMANDS)
def test_the_folder_the_export_recorded_is_used_when_nothing_is_beside_the_model(story, command):
    """(b) only ./my-bert (the export's --model, relative to where the commands run) holds the tokenizer: all three
    read it (qnn refused its named texts and bundle shipped no tokenizer: they looked beside the .onnx only)."""
    model = story()
    _hf_tokenizer(Path("my-bert"))
    used = _used(command, _run(command, model))
    assert "my-bert/tokenizer.json" in used or "from my-bert (in the model folder the export recorded)" in used, used
    if command == "bundle":
        files = set(json.loads(Path("b/manifest.json").read_text())["tokenizer"]["files"])
        assert {"tokenizer/tokenizer.json", "tokenizer/vocab.txt", "tokenizer/tokenizer_config.json"} <= files
        assert Path("b/tokenizer/vocab.txt").read_text() == Path("my-bert/vocab.txt").read_text()


@pytest.mark.parametrize("command", COMMANDS)
def test_no_tokenizer_anywhere_is_one_line_naming_each_place(story, command):
    """(c) nothing beside the model and no ./my-bert from here: one line, exit 2, nothing written, naming the
    folder beside the model, the recorded folder and --tokenizer with what it takes."""
    model = story()
    line = _one_line_error(_run(command, model))
    assert "none beside m.onnx (in out)" in line, line
    assert "'./my-bert', the model folder the export recorded, is not a folder from here" in line, line
    assert "pass --tokenizer (a tokenizer.json or vocab.txt file, or a folder holding one)" in line, line
    _nothing_written()


@pytest.mark.parametrize("command", COMMANDS)
def test_no_record_and_nothing_beside_is_one_line_too(story, command):
    """(c) a model that records no source (not from deploytool export): the line says so."""
    model = story(recorded=None)
    line = _one_line_error(_run(command, model))
    assert "none beside m.onnx (in out)" in line and "no deploytool.source record" in line, line
    _nothing_written()


@pytest.mark.parametrize("given", ["tokenizer.json file", "vocab.txt file", "vocab.txt folder"])
@pytest.mark.parametrize("command", COMMANDS)
def test_tokenizer_option_takes_a_file_or_a_folder_with_vocab_txt_only(story, command, given):
    """(d) --tokenizer a tokenizer.json file, a vocab.txt file (any name), or a folder with vocab.txt only: each
    command reads it (quantize took only tokenizer.json, qnn and bundle refused files). A tokenizer beside the
    model is there too: what is given wins."""
    model = story()
    _hf_tokenizer(Path("out"), swap=True)
    tok = {"tokenizer.json file": _hf_tokenizer(Path("hf")) / "tokenizer.json",
           "vocab.txt file": Path("words.txt"), "vocab.txt folder": _vocab_only(Path("vocab-only"))}[given]
    if given == "vocab.txt file":
        tok.write_text("\n".join(_vocab()) + "\n")
    used = _used(command, _run(command, model, "--tokenizer", str(tok)))
    read = tok if tok.is_file() else tok / "vocab.txt"
    assert f"{read}" in used or f"from {read.parent} (given)" in used, used
    assert "out/" not in used.split(";")[0] and "different tokenizer" not in used, used
    if command == "bundle":  # shipped under the name an app loads
        name = "tokenizer.json" if given == "tokenizer.json file" else "vocab.txt"
        assert json.loads(Path("b/manifest.json").read_text())["tokenizer"]["files"] == [f"tokenizer/{name}"]
        assert Path("b/tokenizer", name).read_text() == read.read_text()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_tokenizer_option_that_is_no_tokenizer_is_one_line(story, command):
    model = story()
    Path("empty").mkdir()
    line = _one_line_error(_run(command, model, "--tokenizer", "empty"))
    assert "--tokenizer: empty has no tokenizer.json or vocab.txt" in line, line
    line = _one_line_error(_run(command, model, "--tokenizer", "nope"))
    assert "--tokenizer: nope does not exist" in line, line
    _nothing_written()


@pytest.mark.skipif(_NO_QNN is not None, reason=_NO_QNN or "")
def test_qnn_check_task_accuracy_without_a_tokenizer_is_refused_before_any_work(story):
    """(c) qnn check --data: refused before the HTP session is made (it was after), naming each place."""
    model = story()
    r = CliRunner().invoke(main, ["qnn", "check", str(model), "--profile", "snapdragon-sm8650", "--seq-len", "8",
                                  "--fp16", "--data", "texts.csv", "-o", "c.json"])
    line = _one_line_error(r)
    assert line.startswith("error: --data texts.csv: task accuracy needs the model's tokenizer and none was found"), line
    assert "none beside m.onnx (in out)" in line and "'./my-bert'" in line and "pass --tokenizer (" in line, line
    assert not Path("c.json").exists()


def test_the_three_options_share_one_help():
    """One rule, one help: what --tokenizer takes (a vocab.txt too) and where it looks by default."""
    import click

    def option(*path):
        cmd = main
        for name in path:
            cmd = cmd.get_command(click.Context(cmd), name)
        return next(p for p in cmd.params if isinstance(p, click.Option) and "--tokenizer" in p.opts)

    opts = [option("quantize"), option("bundle"), option("qnn", "check"), option("qnn", "quantize"),
            option("qnn", "compile")]
    assert len({o.help for o in opts}) == 1
    assert "vocab.txt" in opts[0].help and "beside the .onnx" in opts[0].help and "export" in opts[0].help


def test_bundle_without_a_needed_tokenizer_says_where_it_looked(story):
    """A bundle does not need a tokenizer (it ships one where found): none found, the manifest and the text say
    where it looked."""
    model = story()
    r = CliRunner().invoke(main, ["bundle", str(model), "--profile", "kirin990", "--seq-len", "8", "-o", "b"])
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("  tokenizer: "))
    assert "no tokenizer found (none beside m.onnx (in out)" in line and "'./my-bert'" in line, line
    assert not Path("b/tokenizer").exists()


# ---------------------------------------------------------------- the lookup itself
def test_find_tokenizer_order_and_note(tmp_path):
    from deploytool.models import find_tokenizer

    model = tmp_path / "out" / "m.onnx"
    model.parent.mkdir()
    rec = _vocab_only(tmp_path / "rec")
    look = find_tokenizer(model, None, str(rec))
    assert look.path == rec / "vocab.txt" and look.how == "in the model folder the export recorded" and not look.note
    _vocab_only(model.parent)  # the same vocabulary beside: used, nothing to say
    look = find_tokenizer(model, None, str(rec))
    assert look.path == model.parent / "vocab.txt" and look.how == "beside m.onnx" and look.note == ""
    (model.parent / "vocab.txt").write_text("\n".join(_vocab(swap=True)) + "\n")
    look = find_tokenizer(model, None, str(rec))
    assert look.path == model.parent / "vocab.txt" and str(rec) in look.note
    given = _hf_tokenizer(tmp_path / "given")
    look = find_tokenizer(model, given, str(rec))  # a folder with both: tokenizer.json is read
    assert look.path == given / "tokenizer.json" and look.how == "given"
    assert {p.name for p in look.files} >= {"tokenizer.json", "vocab.txt", "tokenizer_config.json"}
    with pytest.raises(ConfigError, match="^tokenizer: .* does not exist"):
        find_tokenizer(model, tmp_path / "nope")
    look = find_tokenizer(tmp_path / "m2.onnx", None, None)
    assert look.path is None and look.looked.startswith(f"none beside m2.onnx (in {tmp_path})")


def test_load_tokenizer_reads_a_vocab_as_bert_does(tmp_path):
    """A vocab.txt is read as BERT's lower-cased WordPiece with [CLS] ... [SEP]: the ids transformers gives."""
    from transformers import BertTokenizerFast

    from deploytool.models import load_tokenizer

    _hf_tokenizer(tmp_path / "hf")
    ref = BertTokenizerFast(vocab_file=str(tmp_path / "hf" / "vocab.txt"), do_lower_case=True)
    ours = load_tokenizer(tmp_path / "hf" / "vocab.txt")
    for text in ["W3 w17 w40", "w5 zzz w6"]:
        assert ours.encode(text).ids == ref(text)["input_ids"]
    assert ours.encode("w1", "w2").type_ids == ref("w1", "w2")["token_type_ids"]
    bad = tmp_path / "bad.json"
    bad.write_text("{x")
    with pytest.raises(ConfigError, match="^tokenizer: .*bad.json is not a tokenizer.json"):
        load_tokenizer(bad)
    words = tmp_path / "words.txt"  # a text file, not a vocabulary: said when it is read, not mid-calibration
    words.write_text("not a tokenizer")
    with pytest.raises(ConfigError, match=r"^tokenizer: .*words.txt is not a BERT vocab.txt \(no \[UNK\] token"):
        load_tokenizer(words)



@pytest.mark.parametrize("lower", [True, False])
def test_a_vocab_txt_is_cased_as_its_tokenizer_config_says(tmp_path, lower):
    """A cased BERT's vocab.txt (its tokenizer_config.json: do_lower_case false) was lower-cased anyway: 'Paris'
    became 'paris', [UNK] in a cased vocabulary. transformers' BertTokenizerFast over the same files is the
    reference."""
    from transformers import BertTokenizerFast

    from deploytool.models import load_tokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Paris", "paris", "is", "Big", "big", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=lower).save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").unlink()  # the vocab.txt is what is read
    ref = BertTokenizerFast.from_pretrained(str(tmp_path))
    text = "Paris is Big."
    assert load_tokenizer(tmp_path / "vocab.txt").encode(text).ids == ref(text)["input_ids"]


def test_another_models_tokenizer_is_refused_before_calibrating(story):
    """``quantize --static`` with a tokenizer whose ids pass the model's word table failed mid-calibration in ORT's
    embedding ('int8: onnxruntime.quantization failed (InvalidArgument: ... input index out of range)'); it is one line
    naming the tokenizer now, before any calibration, as bundle and eval say it."""
    model = story()
    big = Path("big")
    big.mkdir()
    (big / "vocab.txt").write_text("\n".join(_vocab() + [f"w{i}" for i in range(500)]) + "\n")
    line = _one_line_error(_run("quantize", model, "--tokenizer", "big"))
    assert line.startswith(f"error: --tokenizer: {big / 'vocab.txt'} has token ids up to "), line
    assert "past the model's embedding table of " in line and "another model's tokenizer" in line
    _nothing_written()
