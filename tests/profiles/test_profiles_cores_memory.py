"""What a profile file states about its hardware is checked at load time: a peak-memory budget larger than the
device's memory (``budgets.peak_memory_mb: 9000`` on an 8 GB phone) and a core name deploytool does not know
(``cortex-a67``: never equal to a core a measurement records, so the profile silently stayed PROJECTED) are
refused with the file, the key and the values. Before, both loaded."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import ConfigError
from deploytool.profiles import BUILTIN_PROFILE_DIR, list_profiles, load_profile


def _board(tmp_path, edit):
    data = yaml.safe_load((BUILTIN_PROFILE_DIR / "kirin990.yaml").read_text())
    data["name"] = "board"
    edit(data)
    f = tmp_path / "board.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def test_memory_budget_over_the_device_memory_is_refused(tmp_path):
    f = _board(tmp_path, lambda d: d["budgets"].update(peak_memory_mb=9000))  # kirin990: memory_gb 8
    res = CliRunner().invoke(main, ["profiles", "show", str(f)])
    assert res.exit_code == 2
    assert res.output == (f"error: {f}: budgets.peak_memory_mb: 9000 MB is more than the device's memory_gb: 8 "
                          "(8000 MB)\n")


def test_memory_budget_up_to_the_device_memory_loads(tmp_path):
    f = _board(tmp_path, lambda d: d["budgets"].update(peak_memory_mb=8000))
    assert load_profile(f).budgets.peak_memory_mb == 8000


def test_a_core_typo_is_refused_with_a_did_you_mean(tmp_path):
    f = _board(tmp_path, lambda d: d["cpu"][0].update(core="cortex-a67"))
    res = CliRunner().invoke(main, ["profiles", "show", str(f)])
    assert res.exit_code == 2
    assert res.output.startswith(f"error: {f}: cpu[0].core: unknown core 'cortex-a67' (did you mean 'cortex-a")
    assert "Traceback" not in res.output and res.output.count("\n") == 1


def test_an_unknown_core_far_from_any_lists_the_known_ones(tmp_path):
    f = _board(tmp_path, lambda d: d["cpu"][2].update(core="hexagon-zz"))
    with pytest.raises(ConfigError) as e:
        load_profile(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: cpu[2].core: unknown core 'hexagon-zz' (known aarch64 cores: a64fx, cortex-{{")
    for name in ("a55,", "a76,", "neoverse-{e1,n1", "oryon-{v1,v2}"):
        assert name in msg
    assert "zen4" not in msg and msg.endswith(")")


def test_a_core_of_another_arch_is_refused(tmp_path):
    f = _board(tmp_path, lambda d: d["cpu"][0].update(core="zen4"))  # kirin990 is aarch64
    with pytest.raises(ConfigError, match=r"cpu\[0\]\.core: unknown core 'zen4' \(known aarch64 cores: "):
        load_profile(f)


def test_every_shipped_profile_still_loads():
    problems: list = []
    names = {p.name for p in list_profiles(problems=problems)}
    assert problems == []
    assert {"kirin990", "snapdragon-sm8750", "graviton2", "a64fx", "raspberry-pi-4", "host"} <= names
