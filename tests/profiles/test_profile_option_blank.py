"""'verify-arm64 --profile ""' took the blank name as no profile: with --cpu it ran without the profile in silence,
without --cpu it said to give a profile. It is refused as every other command's blank --profile is."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main


@pytest.mark.parametrize("blank", ["", " "])
@pytest.mark.parametrize("command", [["verify-arm64", "--cpu", "max", "--no-setup"], ["verify-arm64", "--no-setup"],
                                     ["bench"]])
def test_a_blank_profile_is_refused(tmp_path, command, blank):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")  # never read: the profile is refused first
    args = [*command, "--profile", blank, str(model)]
    if command[0] == "verify-arm64":
        args += ["--emulator-dir", str(tmp_path / "emu")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and res.stderr == ("error: --profile: expected a device profile's name (such as "
                                                 f"kirin990) or its .yaml file path, got str {blank!r}\n"), res.output
    assert not (tmp_path / "emu").exists()
