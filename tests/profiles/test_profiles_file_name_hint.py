"""A profile's file name typed for its name ('kirin990.yaml' for kirin990) is answered with the name to give.

It said only 'kirin990.yaml: no such device profile file', with no hint that kirin990 is a known profile."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import DeployError
from deploytool.profiles import load_profile


def _err_line(r) -> str:
    err = r.stderr if hasattr(r, "stderr") else r.output
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_profiles_show_of_a_builtin_file_name_names_the_profile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no kirin990.yaml here
    r = CliRunner().invoke(main, ["profiles", "show", "kirin990.yaml"])
    line = _err_line(r)
    assert r.exit_code == 2
    assert "kirin990.yaml: no such device profile file" in line and "'kirin990' is a known profile name" in line


@pytest.mark.parametrize("typed, hint", [
    ("x86-host.yml", "'x86-host' is a known profile name"),
    ("somewhere/kirin990.yaml", "'kirin990' is a known profile name"),
    ("kirin99.yaml", "did you mean the profile 'kirin990'?"),
])
def test_load_profile_hints_the_name(tmp_path, monkeypatch, typed, hint):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DeployError, match="no such device profile file") as e:
        load_profile(typed)
    assert hint in str(e.value)


def test_a_missing_file_unlike_any_profile_has_no_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DeployError) as e:
        load_profile("qqqq.yaml")
    assert str(e.value) == "qqqq.yaml: no such device profile file"


def test_an_existing_file_of_a_builtin_name_is_still_read_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kirin990.yaml").write_text("name: [\n")
    with pytest.raises(DeployError, match="kirin990.yaml: not valid YAML"):
        load_profile("kirin990.yaml")
