"""An empty or blank path given on the command line: click read `-o ""` as the path '.', so `report -o ""`
wrote report.json/.md/.html into the current folder, `bench -o ""` measured and wrote no JSON without a word,
and `fit -o ""` blamed '.: is a directory'. An empty entry in DEPLOYTOOL_PROFILES_DIR ('dir:') searched the
current folder. Every path parameter refuses them now, in one line, before any work."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.testing.bench_models import encoder_like


@pytest.mark.parametrize("value, word", [("", "empty"), (" ", "blank")])
@pytest.mark.parametrize("command", ["report", "bench", "fit"])
def test_an_empty_output_path_is_refused(tmp_path, monkeypatch, command, value, word):
    model = encoder_like(tmp_path / "m.onnx", vocab=50, hidden=16, layers=1)
    run = tmp_path / "cwd"
    run.mkdir()
    monkeypatch.chdir(run)
    args = {"report": ["report", str(tmp_path / "b.json")], "bench": ["bench", str(model), "--seq-len", "8"],
            "fit": ["fit", str(model), "--profile", "kirin990"]}[command]
    res = CliRunner().invoke(main, args + ["-o", value], prog_name="deploytool")
    assert res.exit_code == 2
    assert res.output == (f"error: Invalid value for '-o' / '--output': {word} path {value!r} "
                          f"(see 'deploytool {command} --help')\n")
    assert os.listdir(run) == []


def test_an_empty_entry_of_the_profiles_dir_variable_is_refused(tmp_path):
    res = CliRunner(env={"DEPLOYTOOL_PROFILES_DIR": f"{tmp_path}{os.pathsep}"}).invoke(main, ["profiles"], prog_name="deploytool")
    assert res.exit_code == 2
    assert res.output == ("error: Invalid value for '--profiles-dir': empty path '' in DEPLOYTOOL_PROFILES_DIR (an "
                          "empty entry: a separator at its start or end, or two together) (see 'deploytool profiles "
                          "--help')\n")


@pytest.mark.parametrize("variable, args, option", [
    ("DEPLOYTOOL_PROFILES_DIR", ["profiles"], "--profiles-dir"),
    ("DEPLOYTOOL_ARM64_HOME", ["verify-arm64", "{model}", "--cpu", "max", "--no-setup"], "--emulator-dir"),
])
def test_a_blank_variable_is_not_blamed_on_a_separator(tmp_path, variable, args, option):
    """A blank value (' ') was refused with '(an empty entry: a separator at its start or end, or two together)':
    there is no separator in ' ', and DEPLOYTOOL_ARM64_HOME is one folder, not a list. The clause stays for the
    empty entry of a list (the test above)."""
    model = encoder_like(tmp_path / "m.onnx", vocab=50, hidden=16, layers=1)
    argv = [a.replace("{model}", str(model)) for a in args]
    res = CliRunner(env={variable: " "}).invoke(main, argv, prog_name="deploytool")
    assert res.exit_code == 2
    assert res.output == (f"error: Invalid value for '{option}': blank path ' ' in {variable} "
                          f"(see 'deploytool {argv[0]} --help')\n")
