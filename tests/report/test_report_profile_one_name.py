"""Two --profile values that load profiles of one name (the built-in kirin990 and an edited copy of it given by
path with a 1 ms budget; kirin990 by name and by its file's path): the report keys rows, verdicts and sections by
the profile's name, so it said "for kirin990, kirin990", gave one verdict, and judged the copy's rows under the
first one's budgets. Refused now, before anything is written, naming both values."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.profiles import BUILTIN_PROFILE_DIR


@pytest.mark.parametrize("copy", ["edited", "builtin"])
def test_two_profiles_of_one_name_are_refused(tiny_bench, tmp_path, copy):
    src = BUILTIN_PROFILE_DIR / "kirin990.yaml"
    if copy == "edited":
        text = src.read_text()
        assert "p90_latency_ms: {8: 10," in text
        (tmp_path / "mine").mkdir()
        second = tmp_path / "mine" / "kirin990.yaml"
        second.write_text(text.replace("p90_latency_ms: {8: 10,", "p90_latency_ms: {8: 1,"))
    else:
        second = src
    _refused_as_one_name_twice(tiny_bench, tmp_path, "kirin990", second)


def _refused_as_one_name_twice(tiny_bench, tmp_path, name, second):
    """``--profile NAME --profile SECOND`` (a file of the same name): one line naming both, exit 2, nothing written."""
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["report", str(tiny_bench), "--profile", name, "--profile", str(second),
                                    "--no-projection", "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert res.output == (f"error: --profile: {name} and {second} are both the device profile '{name}'; give "
                          "each device once (rename an edited copy's file and its name:)\n")
    assert not out.exists()


@pytest.mark.parametrize("pair", [("host", "x86-host"), ("x86-host", "host")])
def test_host_and_its_alias_x86_host_are_refused(tiny_bench, tmp_path, pair):
    """x86-host is host's old name (both built from the machine running deploytool): the report gave two sections,
    two verdicts, of one machine's measured rows. Refused as two profiles of one name are."""
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["report", str(tiny_bench), "--profile", pair[0], "--profile", pair[1],
                                    "--no-projection", "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert res.output == (f"error: --profile: {pair[0]} and {pair[1]} are both the machine running deploytool "
                          f"(profiles '{pair[0]}' and '{pair[1]}' are built from it, with the same budgets, threads and execution "
                          "providers); give each device once\n")
    assert not out.exists()


def test_host_with_another_device_is_still_one_section_each(tiny_bench, tmp_path):
    import json

    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["report", str(tiny_bench), "--profile", "host", "--profile", "kirin990",
                                    "--no-projection", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(s["device"] for s in json.loads((out / "report.json").read_text())["summary"]) == ["host", "kirin990"]


def _host_copy(folder, name: str, p90_at_8: str):
    """A user's profile of this machine (from_host: true): the built-in host template, renamed, its budget at seq 8
    replaced."""
    text = (BUILTIN_PROFILE_DIR / "host.yaml").read_text()
    assert "name: host\n" in text and "p90_latency_ms: {8: 5," in text
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text.replace("name: host\n", f"name: {name}\n").replace("p90_latency_ms: {8: 5,",
                                                                             f"p90_latency_ms: {{8: {p90_at_8},"))
    return path


def test_two_profiles_of_this_machine_with_their_own_budgets_are_both_judged(tiny_bench, tmp_path):
    """host and a user's host-strict (from_host: true, a 1 us budget at seq 8) were refused as "both the machine
    running deploytool": two budgets for one machine are a legitimate question. Each is now its own section, on
    the same measured p90, judged against its own budget."""
    import json

    strict = _host_copy(tmp_path / "mine", "host-strict", "0.001")
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["report", str(tiny_bench), "--profile", "host", "--profile", str(strict),
                                    "--no-projection", "-o", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    p90 = json.loads(tiny_bench.read_text())["results"][0]["latency_ms"]["p90_ms"]
    rows = {r["device"]: r for r in rep["rows"]}
    assert set(rows) == {"host", "host-strict"}
    assert {r["status"] for r in rows.values()} == {"MEASURED"}
    assert rows["host"]["device_latency_ms"] == rows["host-strict"]["device_latency_ms"] == pytest.approx(p90, abs=1e-3)
    fits = {s["device"]: s["fits"] for s in rep["summary"]}
    assert fits == {"host": p90 <= 5, "host-strict": False}  # no run takes 1 us
    assert "0.001 ms" in next(s["verdict"] for s in rep["summary"] if s["device"] == "host-strict")


def test_a_users_profile_of_this_machine_named_host_is_still_one_name_twice(tiny_bench, tmp_path):
    _refused_as_one_name_twice(tiny_bench, tmp_path, "host", _host_copy(tmp_path / "mine", "host", "0.001"))
