"""One command-line grammar (README "CLI grammar"), checked on every command through click's own
introspection, plus the behaviour of ``--seq-len`` lists and of the deprecated spellings.

The rules are restated here from the README, not imported from ``deploytool.cli._grammar``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli_commands import cli_commands
from deploytool.cli import COMMANDS, main

# second artefacts a command may write beside its -o/--output (README: they keep their own names)
SECONDARY_OUTPUTS = {("qnn check", "--rows"), ("qnn compile", "--rows"), ("importance", "--reorder"),
                     ("fit", "--keep-candidates")}
# ideas that are numbers wherever they appear
NUMERIC_NAMES = {"--runs", "--warmup", "--seed", "--threads", "--batch-size", "--block-runs", "--wait-quiet",
                 "--epochs", "--lr", "--max-eval", "--max-train", "--max-length", "--calib-size", "--mask-value",
                 "--budget-ms", "--accuracy-floor", "--opset", "--atol", "--width", "--depth", "--ratio", "--keep",
                 "--accuracy-level", "--cache-max-gb", "--older-than-days", "--max-examples", "--max-queries",
                 "--layers", "--hidden", "--heads", "--ffn", "--temperature", "--clip"}
NOT_NUMERIC = {("prune-heads", "--heads")}  # a spec like '0:1,3;2:0' there, a count in distill
NUMERIC_TYPES = (click.types.IntParamType, click.types.FloatParamType)
OLD_NAMES = {"--out", "--calib", "--calib-samples", "--eval-size", "--batch"}


ALL = [(" ".join(path), cmd) for path, cmd in cli_commands(groups=True)]  # groups too


def _options(cmd):
    return [p for p in cmd.params if isinstance(p, click.Option) and p.name != "help"]


def test_every_command_is_walked():
    names = {path.split()[0] for path, _ in ALL}
    assert names == set(COMMANDS)
    assert {"qnn check", "qnn compile", "qnn quantize", "profiles show", "cache ls", "cache clear"} <= {p for p, _ in ALL}


@pytest.mark.parametrize("path,cmd", ALL, ids=[p for p, _ in ALL])
def test_grammar(path, cmd):
    ctx = click.Context(cmd, info_name=path)
    for opt in _options(cmd):
        spelled = "/".join(opt.opts + opt.secondary_opts)
        # every option has help
        assert (opt.help or "").strip(), f"{path} {spelled}: no help text"
        # --json is a flag: print JSON to stdout
        if "--json" in opt.opts:
            assert opt.is_flag and not opt.multiple, f"{path} --json takes a value"
        # the file a command writes is -o/--output; --out and the other old names are gone from the options
        assert not set(opt.opts) & OLD_NAMES, f"{path} {spelled}: old spelling still an option"
        if "--output" in opt.opts or opt.name in ("output", "out", "out_dir", "json_path", "json_out"):
            assert opt.opts == ["-o", "--output"], f"{path} {spelled}: outputs are -o/--output"
        writes = isinstance(opt.type, click.Path) and "write" in (opt.help or "").lower()
        if writes and opt.opts != ["-o", "--output"]:
            assert (path, opt.opts[-1]) in SECONDARY_OUTPUTS, f"{path} {spelled} writes a file: use -o/--output"
        # --seq-len always takes a list (repeatable, comma-separated)
        if "--seq-len" in opt.opts:
            assert opt.multiple, f"{path} --seq-len is not repeatable"
            assert "," in opt.make_metavar(ctx), f"{path} --seq-len metavar {opt.make_metavar(ctx)!r} shows no list"
        # numbers are typed and show their type, not TEXT
        default = opt.default
        numeric_default = isinstance(default, (int, float)) and not isinstance(default, bool)
        if isinstance(default, str):
            try:
                float(default)
                numeric_default = True
            except ValueError:
                pass
        named_numeric = bool(set(opt.opts) & NUMERIC_NAMES) and (path, opt.opts[-1]) not in NOT_NUMERIC
        if (numeric_default or named_numeric) and not opt.is_flag:
            # a closed set of numbers (qat --act-bits 8|0) is a Choice, which shows its values
            assert isinstance(opt.type, (*NUMERIC_TYPES, click.Choice)), f"{path} {spelled}: a number typed as {opt.type.name}"
            assert opt.make_metavar(ctx) not in ("TEXT", ""), f"{path} {spelled}: metavar {opt.make_metavar(ctx)}"


@pytest.mark.parametrize("path, shown", [("bench", "[default: 8,128]"), ("inspect", "[default: 128]"),
                                         ("verify-arm64", "[default: 16]"), ("bundle", "[default: 16]")])
def test_seq_len_default_shows_as_it_is_typed(path, shown):
    """--help shows a --seq-len default as the user types it (it read '[default: (8,128)]')."""
    cmd = dict(ALL)[path]
    opt = next(o for o in _options(cmd) if "--seq-len" in o.opts)
    text = " ".join(opt.get_help_record(click.Context(cmd, info_name=path))[1].split())
    assert shown in text and "(" not in text.split("[default:")[1], text


def test_same_idea_same_name():
    """Calibration data and size are spelled alike in quantize and qnn."""
    by_path = dict(ALL)
    for path in ("quantize", "qnn check", "qnn quantize", "qnn compile"):
        opts = {o for p in _options(by_path[path]) for o in p.opts}
        assert {"--calib-data", "--calib-size"} <= opts, path


def _err_lines(res):
    return [ln for ln in res.stderr.splitlines() if ln.strip()]


def test_bench_seq_len_lists_add_up(tiny_onnx):
    model = str(tiny_onnx())
    res = CliRunner().invoke(main, ["bench", model, "--seq-len", "8", "--seq-len", "16,4", "--runs", "2",
                                    "--warmup", "0", "--threads", "1", "--force", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)  # --json: nothing but JSON on stdout
    assert data["config"]["seq_lens"] == [8, 16, 4]
    assert sorted({r["seq_len"] for r in data["results"]}) == [4, 8, 16]


@pytest.mark.parametrize("args", [["--seq-len", "8,16"], ["--seq-len", "8", "--seq-len", "16"]])
def test_single_length_command_refuses_a_list(tiny_onnx, args):
    res = CliRunner().invoke(main, ["inspect", str(tiny_onnx()), *args])
    assert res.exit_code == 2
    lines = _err_lines(res)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--seq-len" in lines[0]
    assert "one sequence length" in lines[0] and "8,16" in lines[0]
    assert res.stdout == ""


def test_inspect_takes_one_length_either_way(tiny_onnx):
    a = CliRunner().invoke(main, ["inspect", str(tiny_onnx()), "--seq-len", "8", "--json"])
    b = CliRunner().invoke(main, ["inspect", str(tiny_onnx()), "--seq-len", "8", "--seq-len", "8", "--json"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert json.loads(a.stdout) == json.loads(b.stdout)


def test_bad_number_is_one_line(tiny_onnx):
    res = CliRunner().invoke(main, ["bench", str(tiny_onnx()), "--runs", "many"])
    assert res.exit_code == 2
    lines = _err_lines(res)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--runs" in lines[0] and "many" in lines[0]


def test_old_bench_json_file_still_writes_with_one_deprecation_line(tiny_onnx, tmp_path):
    out = tmp_path / "b.json"
    res = CliRunner().invoke(main, ["bench", str(tiny_onnx()), "--seq-len", "8", "--runs", "2", "--warmup", "0",
                                    "--threads", "1", "--force", "-q", "--json", str(out), "--batch", "1"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["config"]["seq_lens"] == [8]
    dep = [ln for ln in _err_lines(res) if ln.startswith("deprecated:")]
    assert len(dep) == 2, res.stderr  # one line per old spelling: --json FILE and --batch
    assert any("--json FILE" in ln and "-o/--output" in ln for ln in dep)
    assert any("--batch " in ln and "--batch-size" in ln for ln in dep)
    assert res.stdout.splitlines()[0].split()[:2] == ["model", "seq"]  # still the table on stdout


def test_new_spellings_print_no_deprecation(tiny_onnx, tmp_path):
    out = tmp_path / "b.json"
    res = CliRunner().invoke(main, ["bench", str(tiny_onnx()), "--seq-len", "8", "--runs", "2", "--warmup", "0",
                                    "--threads", "1", "--force", "-q", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert not [ln for ln in _err_lines(res) if ln.startswith("deprecated:")]
    assert json.loads(res.stdout) == json.loads(out.read_text())


def test_old_quantize_calib_names_map_to_the_new_ones(tiny_onnx, tmp_path):
    """--calib/--calib-samples still reach the same options: fp16 names them by their new spelling."""
    out = tmp_path / "h.onnx"
    res = CliRunner().invoke(main, ["quantize", str(tiny_onnx()), "--fp16", "--calib", "rotten-tomatoes",
                                    "--calib-samples", "8", "-o", str(out)])
    assert res.exit_code == 2
    lines = _err_lines(res)
    assert [ln.split()[1] for ln in lines if ln.startswith("deprecated:")] == ["--calib", "--calib-samples"]
    err = [ln for ln in lines if ln.startswith("error:")]
    assert len(err) == 1 and "--calib-data" in err[0] and "--calib-size" in err[0]
    assert not out.exists()


def test_old_run_out_still_works(tmp_path):
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "smoke.yaml"
    old = CliRunner().invoke(main, ["run", str(recipe), "--out", str(tmp_path / "o"), "--check"])
    new = CliRunner().invoke(main, ["run", str(recipe), "-o", str(tmp_path / "o"), "--check"])
    assert old.exit_code == new.exit_code
    assert old.stdout == new.stdout
    assert [ln for ln in _err_lines(old) if ln.startswith("deprecated:")] == [
        ln for ln in _err_lines(old) if "--out" in ln and "--output" in ln]
    assert len([ln for ln in _err_lines(old) if ln.startswith("deprecated:")]) == 1
    assert not [ln for ln in _err_lines(new) if ln.startswith("deprecated:")]


@pytest.mark.parametrize("args, old, new", [
    (["quantize", "{m}", "--int8", "--static", "--calib", "a.csv", "--calib-data", "b.csv", "-o", "{o}"],
     "--calib", "--calib-data"),
    (["quantize", "{m}", "--int8", "--static", "--calib-size", "4", "--calib-samples=8", "-o", "{o}"],
     "--calib-samples", "--calib-size"),
    (["bench", "{m}", "--batch", "1", "--batch-size", "2", "-o", "{o}"], "--batch", "--batch-size"),
    (["bench", "{m}", "--json", "x.json", "-o", "{o}"], "--json FILE", "-o"),
    (["run", "recipe.yaml", "--out", "a", "--output", "{o}", "--check"], "--out", "--output"),
])
def test_an_option_in_its_old_and_new_spelling_is_refused(tiny_onnx, tmp_path, args, old, new):
    """``--calib a.csv --calib-data b.csv`` calibrated on b.csv (the later spelling won without a word); a recipe
    giving both keys of one option is refused, and so is a command line now."""
    out = tmp_path / "out.json"
    res = CliRunner().invoke(main, [a.format(m=tiny_onnx(), o=out) for a in args])
    assert res.exit_code == 2, res.output
    err = [ln for ln in _err_lines(res) if not ln.startswith("deprecated:")]
    assert len(err) == 1 and err[0].startswith(f"error: {old}: both {old} (the old spelling) and {new} given for "
                                               f"the same option: keep {new} only"), err
    assert not out.exists()


OLD_RECIPE = """schema_version: 1
name: old
model: minilm
devices: [x86-host]
bench: {seq_lens: [8], batch: 1, runs: 3}
"""


def test_a_recipes_old_keys_print_as_the_options_do(tmp_path, caplog):
    """'run old.yaml --out o' printed the option's line bare and the recipe's through the logger, in other words:
    'deprecated: --out is now --output; the old spelling goes in the next release' then 'WARNING
    deploytool.recipes.schema: deprecated: old.yaml: bench.batch is now batch_size; the old key goes in the next
    release'. One wording and one look now, each line once; a program using the library gets the recipe's lines
    through logging (logger deploytool.deprecated), bare on stderr when it set up no logging."""
    import logging
    import subprocess
    import sys

    (tmp_path / "old.yaml").write_text(OLD_RECIPE)
    tail = "the old spelling goes in the next release"
    keys = [f"deprecated: old.yaml: bench.batch is now batch_size; {tail}",
            f"deprecated: old.yaml: bench.seq_lens is now seq_len; {tail}"]
    res = subprocess.run([sys.executable, "-m", "deploytool", "run", "old.yaml", "--out", "o", "--check"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [f"deprecated: --out is now --output; {tail}", *keys]
    lib = subprocess.run([sys.executable, "-c", "from deploytool.recipes import load_recipe; load_recipe('old.yaml')"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert lib.returncode == 0 and lib.stderr.splitlines() == keys, lib.stderr
    from deploytool.recipes import load_recipe

    with caplog.at_level(logging.WARNING):
        load_recipe(tmp_path / "old.yaml")
    assert [(r.name, r.levelno) for r in caplog.records] == [("deploytool.deprecated", logging.WARNING)] * 2


def test_json_flag_before_a_model_is_the_flag(tiny_onnx):
    """`--json` followed by a model (not a .json path) is the new flag, not an output file."""
    res = CliRunner().invoke(main, ["bench", "--json", str(tiny_onnx()), "--seq-len", "8", "--runs", "2",
                                    "--warmup", "0", "--threads", "1", "--force"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["config"]["seq_lens"] == [8]
    assert not [ln for ln in _err_lines(res) if ln.startswith("deprecated:")]


@pytest.mark.parametrize("args", [
    ["bench", "{m}"], ["fit", "{m}", "--profile", "host", "-o", "{d}/f.onnx"],
    ["bundle", "{m}", "--profile", "snapdragon-sm8650", "-o", "{d}/b"],
    ["qnn", "check", "{m}", "--profile", "snapdragon-sm8650"], ["verify-arm64", "{m}", "--cpu", "cortex-a72"],
    ["inspect", "{m}"],
])
@pytest.mark.parametrize("value", [0, 65537])
def test_seq_len_has_one_limit_and_one_message(tiny_onnx, tmp_path, args, value):
    """--seq-len was limited to 65536 by bench and fit, 4096 by bundle, qnn and verify-arm64, 1,000,000 by inspect,
    and bench named its config field (seq_lens); one limit now, said the same way, naming the option typed."""
    from deploytool.units import MAX_SEQ_LEN

    m = tiny_onnx("bert", exporter="torch")
    r = CliRunner().invoke(main, [a.format(m=m, d=tmp_path) for a in args] + ["--seq-len", str(value)])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and lines == [f"error: --seq-len: must be an integer in [1, {MAX_SEQ_LEN}], got {value}"], \
        r.stderr
    assert MAX_SEQ_LEN == 65536 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, where", [(["slice", "m.onnx", "--width"], "slice"),
                                         (["bench", "m.onnx", "--runs"], "bench"),
                                         (["qnn", "check", "m.onnx", "--profile"], "qnn check"),
                                         (["slice", "m.onnx", "--no-such"], "slice")])
def test_a_usage_error_points_to_its_commands_help(args, where):
    """An option given without its value sent the user to the program's help ('see deploytool --help': click's
    parser raises it without the command's context); it names the command's, as an unknown option does."""
    r = CliRunner().invoke(main, args, prog_name="deploytool")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert lines[0].endswith(f"(see 'deploytool {where} --help')"), lines[0]
