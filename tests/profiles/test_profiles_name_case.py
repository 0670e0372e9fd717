"""A built-in profile's name is a choice, matched as every closed-set option of the CLI is (choices.match_name: any
case, spaces around): '--profile Kirin990' or 'RASPBERRY-PI-4' was "unknown device profile". A path stays a path;
an unknown name lists the known ones."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import ConfigError, InputFileError
from deploytool.profiles import BUILTIN_PROFILE_DIR, load_profile, profile_names


@pytest.mark.parametrize("given, name", [("Kirin990", "kirin990"), ("RASPBERRY-PI-4", "raspberry-pi-4"),
                                         (" Graviton3 ", "graviton3"), ("Snapdragon-SM8650", "snapdragon-sm8650")])
def test_a_profile_name_in_any_case_loads_that_profile(given, name):
    prof = load_profile(given)
    assert prof.name == name and prof.path == str(BUILTIN_PROFILE_DIR / f"{name}.yaml")
    res = CliRunner().invoke(main, ["profiles", "show", given, "--json"])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(res.stdout)["name"] == name


def test_a_name_in_another_case_finds_a_profile_of_a_user_folder(tmp_path):
    data = yaml.safe_load((BUILTIN_PROFILE_DIR / "kirin990.yaml").read_text())
    data["name"] = "my-board"
    (tmp_path / "my-board.yaml").write_text(yaml.safe_dump(data))
    assert load_profile("My-Board", [tmp_path]).path == str(tmp_path / "my-board.yaml")


def test_an_unknown_name_in_any_case_lists_the_known_names():
    known = ", ".join(profile_names())
    with pytest.raises(ConfigError) as e:
        load_profile("KIRIN99")
    assert str(e.value) == f"unknown device profile 'KIRIN99' (did you mean 'kirin990'?); known: {known}"
    res = CliRunner().invoke(main, ["bench", "--profile", "NoSuch", "m.onnx"])
    assert res.exit_code == 2 and res.stderr == f"error: unknown device profile 'NoSuch'; known: {known}\n"


def test_a_path_stays_a_path(tmp_path, monkeypatch):
    """'KIRIN990.yaml' is a file name, not a profile name in another case: no such file, and the name is offered."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputFileError) as e:
        load_profile("KIRIN990.yaml")
    assert str(e.value) == ("KIRIN990.yaml: no such device profile file; 'kirin990' is a known profile name: give it "
                            "without the path and .yaml")


def test_a_file_with_an_upper_case_extension_is_a_path(tmp_path, monkeypatch):
    """'board.YAML' (a camera-roll or Windows habit) was looked up as a profile name: "unknown device profile
    'board.YAML'", though the file was there."""
    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load((BUILTIN_PROFILE_DIR / "kirin990.yaml").read_text())
    data["name"] = "board"
    (tmp_path / "board.YAML").write_text(yaml.safe_dump(data))
    assert load_profile("board.YAML").path == "board.YAML"
    res = CliRunner().invoke(main, ["profiles", "show", "board.YAML", "--json"])
    assert res.exit_code == 0 and yaml.safe_load(res.stdout)["name"] == "board", res.output
