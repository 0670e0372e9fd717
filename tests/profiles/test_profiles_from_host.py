"""'from_host:' with anything but true was answered 'from_host: unknown key (allowed: schema_version, name, ...)',
a list without from_host in it, for the key that makes a host template. Now it says what it takes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import ConfigError
from deploytool.profiles import BUILTIN_PROFILE_DIR, load_profile


@pytest.mark.parametrize("value, got", [("1", "1"), ("false", "false"), ('"true"', "'true'"), ("[true]", "[True]")])
def test_from_host_other_than_true_says_what_it_takes(tmp_path, value, got):
    text = (BUILTIN_PROFILE_DIR / "host.yaml").read_text()
    assert "\nfrom_host: true\n" in text and "\nname: host\n" in text
    f = tmp_path / "board.yaml"
    f.write_text(text.replace("\nfrom_host: true\n", f"\nfrom_host: {value}\n").replace("\nname: host\n",
                                                                                         "\nname: board\n"))
    expected = (f"{f}: from_host: expected true (a profile built from this machine, as host.yaml is), or no "
                f"from_host key for a written profile, got {got}")
    with pytest.raises(ConfigError) as e:
        load_profile(f)
    assert str(e.value) == expected
    res = CliRunner().invoke(main, ["profiles", "show", str(f)])
    assert res.exit_code == 2 and res.stderr == f"error: {expected}\n", res.output
