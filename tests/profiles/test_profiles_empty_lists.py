"""An empty list where a profile needs a non-empty one was answered 'expected a non-empty list of ..., got
list', which reads as if a list were the wrong type; it now says 'got an empty list'."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.profiles import BUILTIN_PROFILE_DIR

EPS = "execution_providers:\n  - {name: XNNPACK, options: {intra_op_num_threads: 4}}\n  - CPU\n"


@pytest.mark.parametrize("old, new, expected", [
    (EPS, "execution_providers: []\n",
     "execution_providers: expected a non-empty list of execution providers in preference order, got an empty list"),
    (EPS, "execution_providers: CPU\n",
     "execution_providers: expected a non-empty list of execution providers in preference order, got str 'CPU'"),
])
def test_an_empty_list_is_named_so(tmp_path, old, new, expected):
    text = (BUILTIN_PROFILE_DIR / "kirin990.yaml").read_text().replace("name: kirin990", "name: board")
    assert old in text
    f = tmp_path / "board.yaml"
    f.write_text(text.replace(old, new))
    res = CliRunner().invoke(main, ["profiles", "show", str(f)])
    assert res.exit_code == 2 and res.output == f"error: {f}: {expected}\n"
