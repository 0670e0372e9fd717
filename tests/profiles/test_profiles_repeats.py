"""A list in a profile names each item once. 'features: [neon, neon, dotprod]' (or a source copied twice) loaded in
silence, the repeat collapsed; a provider given twice was refused without saying which. Now one line naming the
repeated entry and where it was first given, exit 2 (the project's rule for lists: choices.refuse_repeats)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import ConfigError
from deploytool.profiles import BUILTIN_PROFILE_DIR, load_profile

FEATURES = "features: [neon, fp16, dotprod]"


def _board(tmp_path, old, new):
    text = (BUILTIN_PROFILE_DIR / "kirin990.yaml").read_text().replace("name: kirin990", "name: board")
    assert old in text
    f = tmp_path / "board.yaml"
    f.write_text(text.replace(old, new))
    return f


@pytest.mark.parametrize("old, new, expected", [
    (FEATURES, "features: [neon, neon, dotprod]",
     "features[1]: 'neon' is given twice (also at [0]); list each feature once"),
    (FEATURES, "features: [neon, fp16, dotprod, NEON]",
     "features[3]: 'NEON' is given twice (also as 'neon' at [0]); list each feature once"),
    ("  - CPU\n", "  - CPU\n  - cpu\n",
     "execution_providers[2]: 'CPU' is given twice (also at [1]); list each execution provider once"),
    ("sources:\n", "sources:\n  - \"Arm Cortex-A76 Technical Reference Manual\"\n  - \"Arm Cortex-A76 Technical "
                   "Reference Manual\"\n",
     "sources[1]: 'Arm Cortex-A76 Technical Reference Manual' is given twice (also at [0]); list each source once"),
], ids=["feature", "feature-other-case", "provider", "source"])
def test_an_entry_given_twice_is_named(tmp_path, old, new, expected):
    f = _board(tmp_path, old, new)
    with pytest.raises(ConfigError) as e:
        load_profile(f)
    assert str(e.value) == f"{f}: {expected}"
    for args in (["profiles", "show", str(f)], ["bench", "--profile", str(f), str(f)]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2 and res.stderr == f"error: {f}: {expected}\n", res.output


def test_each_entry_once_still_loads(tmp_path):
    f = _board(tmp_path, FEATURES, "features: [neon, fp16, dotprod, i8mm]")
    assert {x.value for x in load_profile(f).features} == {"neon", "fp16", "dotprod", "i8mm"}
