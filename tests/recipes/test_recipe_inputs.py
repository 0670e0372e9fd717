"""Found by a session of trying to break recipes and the training commands (2026-12-06):

- the eval step's key did not hold its data file's digest (a typed spec was not walked): flipping every label in
  the eval CSV reused the old accuracy;
- the model's digest read the first and last MB of each weight file and no tokenizer file: a same-size edit in the
  middle of a checkpoint, or a new vocabulary, reused every step;
- a train step's ``output:`` (or ``model:``) was accepted, wrote elsewhere, and the step was recorded as done;
- the recipe's ``name`` (which names the output files) could be a path (``../../x``);
- ``export -o FOLDER/model.safetensors``, ``importance -o DATA.csv`` and ``run -o MODEL_FOLDER`` wrote over the
  files they read.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

from deploytool.errors import ConfigError, DeployError, OutputPathError
from deploytool.recipes import load_recipe
from deploytool.testing.toy_text import tiny_classifier_folder


WORKSPACE_ROWS = 40  # the workspace fixture's toy.csv (tests/recipes/conftest.py)


def _recipe(root: Path, name: str = "t", **changes) -> Path:
    doc = {"schema_version": 1, "name": name, "model": {"path": "model"}, "task": "sequence-classification",
           "train": [{"finetune": {"data": "toy.csv", "max_train": 16, "max_length": 16, "epochs": 1}}],
           "eval": {"data": "toy.csv", "split": "test", "max_length": 16}}
    doc.update(changes)
    p = root / f"recipe-{abs(hash(json.dumps(doc, sort_keys=True)))}.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


@pytest.mark.parametrize("name", ["../../evil", "a/b", "..", ".hidden", "", "x" * 101])
def test_a_recipe_name_is_a_plain_file_name(workspace, name):
    with pytest.raises(ConfigError, match="name"):
        load_recipe(_recipe(workspace, name))


@pytest.mark.parametrize("key", ["output", "model", "teacher"])
def test_a_train_step_may_not_set_its_own_input_or_output(workspace, key):
    from deploytool.recipes.runner import check_recipe

    step = {"finetune": {"data": "toy.csv", "epochs": 1, key: str(workspace / "elsewhere")}}
    recipe = load_recipe(_recipe(workspace, train=[step]))
    with pytest.raises(ConfigError, match=key):
        check_recipe(recipe)


def test_the_eval_steps_key_follows_its_data_files_bytes(workspace, tmp_path):
    """The key's file inputs come from the eval spec's data file; flipping its labels changes them."""
    from deploytool.recipes.runner import _file_inputs

    data = tmp_path / "eval.csv"
    data.write_text("text,label\na b c,0\nd e f,1\n")
    recipe = load_recipe(_recipe(workspace, eval={"data": str(data), "split": "test"}))
    before = _file_inputs({"eval": recipe.eval, "record": "per-example"})
    data.write_text("text,label\na b c,1\nd e f,0\n")
    after = _file_inputs({"eval": recipe.eval, "record": "per-example"})
    assert before and after and before != after
    assert after == [f"file:{hashlib.sha256(data.read_bytes()).hexdigest()}"]


def test_the_models_digest_reads_every_byte_of_weights_and_tokenizer(tmp_path):
    from deploytool.recipes.schema import ModelSpec
    from deploytool.recipes.steps import model_folder_and_digest

    folder = tiny_classifier_folder(tmp_path / "m", layers=2, hidden=64, heads=4, ffn=4096)
    spec = ModelSpec(path=str(folder))
    _, d0 = model_folder_and_digest(spec)
    weights = folder / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    assert len(blob) > 3 << 20  # the old digest read only the first and last MB
    mid = len(blob) // 2
    blob[mid] ^= 0xFF
    weights.write_bytes(bytes(blob))
    _, d1 = model_folder_and_digest(spec)
    assert d1 != d0
    tok = folder / "tokenizer.json"
    tok.write_text(tok.read_text().replace('"[UNK]"', '"[UNK2]"', 1))
    _, d2 = model_folder_and_digest(spec)
    assert d2 != d1


def test_the_models_digest_reads_a_sharded_checkpoints_shards(tmp_path):
    """A sharded checkpoint (model.safetensors.index.json and the shards it names): the digest read the index
    only, so new weights with the same sharding reused the old export and everything after it."""
    import json

    import transformers as tr

    from deploytool.recipes.schema import ModelSpec
    from deploytool.recipes.steps import model_folder_and_digest

    src = tiny_classifier_folder(tmp_path / "m", layers=2, hidden=64, heads=4, ffn=256)
    model = tr.AutoModelForSequenceClassification.from_pretrained(str(src))
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_size="100KB")
    for f in src.iterdir():
        if not f.name.startswith("model") and not (sharded / f.name).exists():
            (sharded / f.name).write_bytes(f.read_bytes())
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2 and not (sharded / "model.safetensors").exists()
    spec = ModelSpec(path=str(sharded))
    _, d0 = model_folder_and_digest(spec)
    index_bytes = (sharded / "model.safetensors.index.json").read_bytes()
    last = sharded / shards[-1]
    blob = bytearray(last.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # a weight of the last shard changes; the index stays byte for byte
    last.write_bytes(bytes(blob))
    assert (sharded / "model.safetensors.index.json").read_bytes() == index_bytes
    _, d1 = model_folder_and_digest(spec)
    assert d1 != d0


@pytest.mark.parametrize("target", ["model.safetensors", "config.json"])
def test_export_may_not_write_over_a_file_of_the_model_folder(tmp_path, target):
    from deploytool.export import export
    from deploytool.export.config import ExportConfig, Task

    folder = tiny_classifier_folder(tmp_path / "m", layers=2, hidden=32, heads=4, ffn=64)
    before = (folder / target).read_bytes()
    with pytest.raises(OutputPathError, match="overwrite the input"):
        export(ExportConfig(model=str(folder), task=Task.SEQUENCE_CLASSIFICATION), folder / target)
    assert (folder / target).read_bytes() == before


def test_importance_may_not_write_over_its_data_or_both_outputs_to_one_path(workspace, tmp_path):
    from deploytool.train.config import DataConfig, ImportanceConfig
    from deploytool.train.importance import compute_importance

    data = tmp_path / "in.csv"
    data.write_bytes((workspace / "toy.csv").read_bytes())
    cfg = ImportanceConfig(model=str(workspace / "model"), data=DataConfig(data=str(data), max_length=16),
                           output=data)
    with pytest.raises(OutputPathError, match="overwrite the input"):
        compute_importance(cfg)
    assert data.read_bytes() == (workspace / "toy.csv").read_bytes()
    same = tmp_path / "same"
    cfg = ImportanceConfig(model=str(workspace / "model"), data=DataConfig(data=str(data), max_length=16),
                           output=same, reorder_output=same)
    with pytest.raises(OutputPathError, match="same path"):
        compute_importance(cfg)
    assert not same.exists()


def test_a_run_may_not_write_into_the_model_folder(workspace):
    from deploytool.recipes.runner import run_recipe

    recipe = load_recipe(_recipe(workspace))
    listing = sorted(p.name for p in (workspace / "model").iterdir())
    with pytest.raises(DeployError, match="model folder"):
        run_recipe(recipe, workspace / "model")
    with pytest.raises(DeployError, match="model folder"):
        run_recipe(recipe, workspace / "model" / "runs")
    assert sorted(p.name for p in (workspace / "model").iterdir()) == listing


@pytest.mark.parametrize("sweep, where", [({"width": [1.0, 0.5, 0.5]}, "sweep.width[2]"),
                                          ({"depth": [1, 1.0]}, "sweep.depth[1]"),
                                          ({"precision": ["fp32", "int8", "int8"]}, "sweep.precision[2]")])
def test_a_sweep_names_each_value_once(workspace, sweep, where):
    with pytest.raises(ConfigError, match=re.escape(where) + r": .* appears twice"):
        load_recipe(_recipe(workspace, sweep=sweep))


def test_a_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path):
    from deploytool.data import load_dataset

    p = tmp_path / "bom.csv"
    p.write_bytes("text,label\na b c,0\nd e f,1\ng h i,0\nj k l,1\n".encode("utf-8-sig"))
    ds = load_dataset(str(p), whole=True)
    texts = [t for name in ("train", "dev", "test") for t in ds.split(name).texts]
    assert sorted(texts) == ["a b c", "d e f", "g h i", "j k l"]


def test_rows_without_a_label_are_counted_not_dropped_in_silence(tmp_path, caplog):
    from deploytool.data import load_dataset

    p = tmp_path / "holes.csv"
    p.write_text("text,label\n" + "".join(f"t{i} a,{'' if i % 5 == 0 else i % 2}\n" for i in range(20)))
    with caplog.at_level("WARNING"):
        load_dataset(str(p), whole=True)
    assert any("4 of 20 rows skipped" in r.getMessage() for r in caplog.records)


def test_dynabert_refuses_a_width_or_depth_that_keeps_nothing(workspace, tmp_path):
    """The slice pass refuses these sub-networks; training them (as one head or layer) reported accuracies under a
    width the export could never be cut to."""
    from deploytool.train.config import DataConfig, DynaBertConfig
    from deploytool.train.dynabert import train_dynabert

    data = DataConfig(data=str(workspace / "toy.csv"), max_length=16, max_train=16)
    for widths, depths, what in (((0.01, 1.0), (1.0,), "widths: 0.01 keeps"), ((1.0,), (0.01, 1.0), "depths: 0.01")):
        cfg = DynaBertConfig(teacher=workspace / "model", output=tmp_path / "out", data=data, widths=widths,
                             depths=depths, width_epochs=0.01, depth_epochs=0.01)
        with pytest.raises(ConfigError, match=what):
            train_dynabert(cfg)
        assert not (tmp_path / "out").exists()


def test_a_teacher_without_a_classifier_head_is_refused(workspace, tmp_path):
    """dynabert, qat and importance took a plain encoder and trained or scored against a random head."""
    from deploytool.testing.tiny import tiny_model
    from deploytool.testing.toy_text import toy_tokenizer
    from deploytool.train.config import DataConfig, DynaBertConfig, ImportanceConfig, QATConfig
    from deploytool.train.dynabert import train_dynabert
    from deploytool.train.importance import compute_importance
    from deploytool.train.qat import train_qat

    enc = tmp_path / "enc"
    tiny_model("bert", layers=2, hidden=32, heads=4, ffn=64).save_pretrained(enc)
    toy_tokenizer(enc)
    data = DataConfig(data=str(workspace / "toy.csv"), max_length=16, max_train=16)
    for run, cfg in ((train_dynabert, DynaBertConfig(teacher=enc, output=tmp_path / "d", data=data)),
                     (train_qat, QATConfig(teacher=enc, output=tmp_path / "q", data=data)),
                     (compute_importance, ImportanceConfig(model=str(enc), data=data, output=tmp_path / "i.json"))):
        with pytest.raises(DeployError, match="no sequence-classification head"):
            run(cfg)
    assert not any((tmp_path / n).exists() for n in ("d", "q", "i.json"))


@pytest.mark.parametrize("change, message", [
    ({"train": [{"finetune": {"data": "rotten-tomatos"}}]}, "did you mean 'rotten-tomatoes'"),
    # the step is named (DataConfig's own type check, since 3cc990b, had lost it: "t.yaml: data: expected ...")
    ({"train": [{"finetune": {"data": 5}}]}, ".yaml: train[0] finetune: data: expected a string, got int 5"),
    ({"train": [{"finetune": {"data": ["a", "b"]}}]}, "got list"),
    ({"export": {"exporter": "torch", "opset": 13}}, "export: opset: expected an integer in [14, 20] for exporter torch, got 13"),
    ({"eval": {"data": "wrongcols.csv"}}, "no column 'text'"),
])
def test_check_finds_what_used_to_fail_after_minutes_of_work(workspace, change, message):
    from deploytool.recipes.runner import check_recipe

    (workspace / "wrongcols.csv").write_text("sentence,target\na b,0\nc d,1\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_recipe(load_recipe(_recipe(workspace, **change)))


@pytest.mark.parametrize("version", [1.0, True, "1"])
def test_schema_version_is_the_integer_1(version):
    from deploytool.recipes.schema import parse_recipe

    with pytest.raises(ConfigError, match="schema_version: expected 1"):
        parse_recipe({"schema_version": version, "name": "x", "model": "minilm"}, "r.yaml")


def test_a_choice_error_echoes_a_huge_value_cut_short():
    from deploytool.choices import not_one_of

    msg = not_one_of(["a", "b"], "x" * 10_000)
    assert len(msg) < 200 and msg.startswith("expected one of a, b, got 'xxx")


@pytest.mark.parametrize("option, value, message", [("batch_size", 2.5, "batch_size: expected an integer, got 2.5"),
                                                    ("seed", "abc", "seed: expected an integer, got 'abc'"),
                                                    ("epochs", "one", "epochs: expected a number, got 'one'"),
                                                    ("text_col", 3, "text_col: expected a column name, got int 3")])
def test_a_train_option_of_the_wrong_type_is_named_at_check(workspace, option, value, message):
    from deploytool.recipes.runner import check_recipe

    step = {"finetune": {"data": "toy.csv", "epochs": 1, option: value}}
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_recipe(load_recipe(_recipe(workspace, train=[step])))


def test_a_learning_rate_written_1e_4_is_the_number(workspace):
    """YAML 1.1 reads 1e-4 (no dot) as text; the step takes the number it spells."""
    from deploytool.recipes.schema import TrainStep
    from deploytool.recipes.steps import train_config
    from deploytool.train.config import TrainConfig  # noqa: F401 - the config the step builds

    recipe = load_recipe(_recipe(workspace, train=[{"finetune": {"data": "toy.csv", "lr": "1e-4"}}]))
    step: TrainStep = recipe.train[0]
    cfg, _ = train_config(step, workspace / "model", workspace / "tmp", "train[0] finetune")
    assert cfg.lr == 1e-4


def _check(path: Path, cwd: Path, monkeypatch):
    from deploytool.recipes.runner import check_recipe

    monkeypatch.chdir(cwd)
    return check_recipe(load_recipe(path))


def test_files_in_sweep_options_and_devices_are_the_recipes_and_checked(workspace, tmp_path, monkeypatch):
    """sweep.options' calib/tokenizer and a profile file in devices were read from the working directory (the
    same recipe ran from its folder and failed from another, after the export), and a missing calib file passed
    --check."""
    import shutil

    from deploytool.profiles.loader import BUILTIN_PROFILE_DIR

    prof = yaml.safe_load((BUILTIN_PROFILE_DIR / "kirin990.yaml").read_text())
    (workspace / "myboard.yaml").write_text(yaml.safe_dump(dict(prof, name="myboard")))
    shutil.copy(workspace / "toy.csv", workspace / "calib.csv")
    good = _recipe(workspace, "ok", train=[], sweep={"precision": ["fp32", "int8"], "options": {
        "int8": {"static": True, "calib_data": "calib.csv", "calib_size": 8, "calib_seq_len": 16}}},
        devices=["x86-host", "myboard.yaml"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plan = _check(good, elsewhere, monkeypatch)
    assert any("myboard" in line for line in plan), plan
    rec = load_recipe(good)
    from deploytool.variant import Precision

    assert rec.sweep.options[Precision.INT8]["calib_data"] == str(workspace / "calib.csv")
    assert rec.devices[1] == str(workspace / "myboard.yaml")
    bad = _recipe(workspace, "bad", train=[], sweep={"precision": ["int8"], "options": {
        "int8": {"static": True, "calib_data": "nope.csv"}}})
    with pytest.raises(ConfigError, match="sweep.options.int8: calib_data: .*nope.csv does not exist"):
        _check(bad, elsewhere, monkeypatch)


@pytest.mark.parametrize("changes, needle", [
    # the device was benchmarked twice and the report refused it after all the work
    ({"devices": ["x86-host", "x86-host"]}, "devices[1]: x86-host appears twice"),
    # a built-in profile's name matches in any case (2fe40b0): the same device, refused after all the work
    ({"devices": ["kirin990", "Kirin990"]}, "devices[1]: Kirin990 appears twice"),
    # the slice step refused it after the training and the export
    ({"sweep": {"depth": [1.0, 0.05]}}, "sweep.depth[1]: 0.05 keeps 0 of the model's 2 layers"),
    ({"sweep": {"width": [0.1]}}, "sweep.width[0]: 0.1 keeps round(0.1 * 4) = 0 of the model's 4 heads"),
    # two widths cutting the same model: built, benchmarked and ranked twice, the pick a coin toss between them
    ({"sweep": {"width": [0.5, 0.55]}}, "sweep.width[1]: 0.55 keeps the same 2 of the model's 4 heads as 0.5"),
    # the sweep cuts what a slice among the passes left (it was counted on the model's 4 heads)
    ({"passes": [{"slice": {"width": 0.5}}], "sweep": {"width": [0.2]}},
     "sweep.width[0]: 0.2 keeps round(0.2 * 2) = 0 of the 2 heads passes[0] slice leaves"),
    ({"passes": [{"slice": {"width": 0.5}}], "sweep": {"width": [1.0, 0.75]}},
     "sweep.width[1]: 0.75 keeps the same 2 of the 2 heads passes[0] slice leaves as 1"),
    # measured oversubscribed without a word (bench --threads refuses it)
    ({"bench": {"seq_len": [8], "threads": 64}},
     "bench.threads: 64 intra-op threads but this machine lets the run use 2 core(s) (affinity, cgroup quota)"),
])
def test_check_refuses_what_the_run_refused_late(workspace, tmp_path, monkeypatch, changes, needle):
    monkeypatch.setattr("deploytool.runtime.machine.usable_cores", lambda: 2)
    with pytest.raises(ConfigError) as e:
        _check(_recipe(workspace, "late", train=[], **changes), workspace, monkeypatch)
    assert needle in str(e.value)


def test_run_output_under_a_file_is_one_line(workspace, tmp_path):
    from deploytool.recipes.runner import run_recipe

    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputPathError, match="afile is a file, not a folder \\(the output folder\\)"):
        run_recipe(load_recipe(_recipe(workspace, "o", train=[])), tmp_path / "afile" / "sub")
    with pytest.raises(OutputPathError, match="afile is a file, not a folder \\(the step store"):
        run_recipe(load_recipe(_recipe(workspace, "o", train=[])), tmp_path / "out",
                   store=tmp_path / "afile" / "store")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_static_int8_in_a_recipe_gets_the_models_tokenizer(tmp_path):
    """Static int8 falls back to the export's source metadata for its tokenizer, which a recipe's export sets to a
    label: every static int8 step failed ("tokenizer: recipe td: minilm -> ... not found") unless a tokenizer path
    was typed. The runner gives it the model folder."""
    from deploytool.recipes.runner import _with_tokenizer

    folder = tmp_path / "model"
    assert _with_tokenizer({"static": True, "calib_data": "c.csv"}, folder) == {"static": True, "calib_data": "c.csv",
                                                                             "tokenizer": str(folder)}
    assert _with_tokenizer({"static": True, "tokenizer": "mine"}, folder)["tokenizer"] == "mine"
    assert "tokenizer" not in _with_tokenizer({"per_channel": True}, folder)


def _quick(workspace, name, **changes):
    base = {"train": [], "export": {"exporter": "torch"}, "eval": None, "devices": ["x86-host"],
            "bench": {"seq_len": [8], "runs": 2, "warmup": 0}}
    return _recipe(workspace, name, **{**base, **changes})


def test_a_reused_bench_names_this_runs_models_and_the_folder_holds_only_its_own(workspace, tmp_path):
    """A bench step made by another run named that run's published models: the second folder's report described the
    first folder's files (and its pick changed once they were gone). A rerun into a folder left the earlier run's
    variants in models/ beside its own."""
    from deploytool.recipes.runner import run_recipe

    store = tmp_path / "store"
    wide = load_recipe(_quick(workspace, "q", sweep={"width": [1.0, 0.5]}))
    run_recipe(wide, tmp_path / "a", store=store)
    b = run_recipe(wide, tmp_path / "b", store=store)
    assert next(s for s in b.steps if s.kind == "bench").cached
    report = json.loads((tmp_path / "b" / "report" / "report.json").read_text())
    paths = {r["model_path"] for r in report["rows"]} if "rows" in report else set(
        re.findall(r'"model_path": "([^"]+)"', json.dumps(report)))
    assert paths and all(str(tmp_path / "b" / "models") in p for p in paths), paths
    narrow = load_recipe(_quick(workspace, "q", sweep={"width": [1.0]}))
    run_recipe(narrow, tmp_path / "b", store=store)
    assert sorted(f.name for f in (tmp_path / "b" / "models").glob("*.onnx*")) == ["q-w1-d1-fp32.onnx"]


def test_a_relative_store_and_a_cleared_store_leave_working_run_folders(workspace, tmp_path, monkeypatch):
    """With --cache-dir relstore every link in <out>/steps dangled (read relative to the link's folder); after
    `cache clear`, a --no-shared-cache run into the same folder failed on the dangling link (NotADirectoryError)."""
    from deploytool.recipes.cache import clear_store
    from deploytool.recipes.runner import run_recipe

    monkeypatch.chdir(tmp_path)
    rec = load_recipe(_quick(workspace, "rel"))
    run_recipe(rec, Path("out"), store=Path("relstore"))
    links = list(Path("out/steps").iterdir())
    assert links and all(p.is_symlink() and p.resolve().is_dir() for p in links), links
    clear_store(Path("relstore"))
    again = run_recipe(rec, Path("out"))  # no shared store: steps under the folder, over the dangling links
    assert not any(s.cached for s in again.steps)
    assert all(not p.is_symlink() and p.is_dir() for p in Path("out/steps").iterdir())


def test_check_errors_name_the_recipe_file(workspace, tmp_path, monkeypatch):
    """Errors found by --check beyond the schema (step options, files, devices) named no file, a device no key path,
    and an unknown train option came in Python's words ("got an unexpected keyword argument")."""
    from click.testing import CliRunner

    from deploytool.cli import main

    cases = {
        "opt": ({"train": [{"finetune": {"data": "toy.csv", "nosuchopt": 1}}]},
                "train[0] finetune: nosuchopt: unknown key (allowed: "),
        "dev": ({"devices": ["x86-host", "nosuch"]}, "devices[1]: unknown device profile 'nosuch'"),
        "one": ({"train": [{"finetune": {"data": "one.csv"}}]}, "dataset has only one label ('pos')"),
    }
    (workspace / "one.csv").write_text("text,label\n" + "".join(f"t{i},pos\n" for i in range(40)))
    for name, (changes, needle) in cases.items():
        path = _recipe(workspace, name, **{"eval": None, **changes})
        r = CliRunner().invoke(main, ["run", str(path), "--check"])
        lines = [ln for ln in r.stderr.splitlines() if ln.strip() and ln.startswith("error")]
        assert r.exit_code == 2 and lines and lines[0].startswith(f"error: {path}: ") and needle in lines[0], r.stderr


def test_a_tokenizer_folder_in_sweep_options_is_the_recipes_and_keyed_by_its_files(workspace, tmp_path, monkeypatch):
    """``tokenizer: tok`` (a folder beside the recipe, no slash in its name) was read from the working directory
    (``./tok`` from the recipe's folder), and its files were not in the int8 step's key: a new vocabulary reused the
    calibration made with the old one."""
    import shutil

    from deploytool.recipes.runner import _file_inputs
    from deploytool.variant import Precision

    shutil.copytree(workspace / "model", workspace / "tok", dirs_exist_ok=True)
    path = _recipe(workspace, "tok", train=[], sweep={"precision": ["fp32", "int8"], "options": {
        "int8": {"static": True, "calib_data": "toy.csv", "calib_size": 8, "tokenizer": "tok"}}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tok").mkdir()  # a folder of that name in the working directory is not the recipe's
    monkeypatch.chdir(elsewhere)
    opts = load_recipe(path).sweep.options[Precision.INT8]
    assert opts["tokenizer"] == str(workspace / "tok")
    before = _file_inputs({"precision": Precision.INT8, "options": opts})
    vocab = workspace / "tok" / "vocab.txt"
    vocab.write_text(vocab.read_text() + "newword\n")
    after = _file_inputs({"precision": Precision.INT8, "options": opts})
    assert before != after
