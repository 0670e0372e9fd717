"""Every option that takes one name of a closed set takes it in any case, as ``--runtime`` always did.

``slice --rounding HALF-UP`` was refused ("expected one of dynabert, half-up, got 'HALF-UP' (did you mean
'half-up'?)") while ``pack --runtime MEMORY`` was taken, and ``export --task``, ``qat --mode``, ``bench --schedule``
... (click's own Choice) refused upper case too. The options are found by walking the command group, so an option
added later is covered without being listed here.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from cli_commands import cli_commands
from deploytool.cli import main


def _choice_options():
    return [(" ".join(path), cmd, p) for path, cmd in cli_commands() for p in cmd.params
            if isinstance(p, click.Option) and isinstance(p.type, click.Choice)]


CASES = [pytest.param(cmd, p, c, id=f"{path} {p.opts[-1]} {c}")
         for path, cmd, p in _choice_options() for c in p.type.choices]


def test_the_walk_finds_the_choice_options():
    """The options a user reported, and a few of each kind: enum-backed plain options and click's Choice."""
    found = {(path, p.opts[-1]) for path, _, p in _choice_options()}
    expected = {("slice", "--rounding"), ("pack", "--runtime"), ("repack", "--runtime"), ("pack", "--weights"),
                ("quantize", "--fusion"), ("export", "--task"), ("export", "--exporter"), ("qat", "--mode"),
                ("bench", "--schedule"), ("eval", "--split"), ("qnn check", "--act")}
    assert expected <= found, sorted(expected - found)


@pytest.mark.parametrize("cmd, param, canonical", CASES)
def test_a_choice_in_upper_case_is_the_canonical_name(cmd, param, canonical):
    ctx = click.Context(cmd)
    assert param.type_cast_value(ctx, canonical.upper()) == canonical
    assert param.type_cast_value(ctx, f" {canonical.title()} ") == canonical
    assert param.type_cast_value(ctx, canonical) == canonical


def test_a_choice_that_is_no_name_is_one_line_exit_2(tmp_path):
    out = tmp_path / "x.onnx"
    res = CliRunner().invoke(main, ["slice", str(tmp_path / "m.onnx"), "--width", "0.5", "--rounding", "halfup",
                                    "-o", str(out)])
    assert res.exit_code == 2
    assert res.output == ("error: --rounding: expected one of dynabert, half-up, got 'halfup' "
                          "(did you mean 'half-up'?)\n")
    assert not out.exists()


def test_slice_rounding_in_upper_case_slices_as_half_up(tiny_onnx, tmp_path):
    """The reported command, end to end: the same file as ``--rounding half-up``."""
    model = tiny_onnx(layers=3, heads=4)
    outs = {}
    for spelling in ("half-up", "HALF-UP"):
        outs[spelling] = tmp_path / f"{spelling}.onnx"
        res = CliRunner().invoke(main, ["slice", str(model), "--width", "0.5", "--depth", "0.5",
                                        "--rounding", spelling, "-o", str(outs[spelling])])
        assert res.exit_code == 0, res.output
    assert outs["HALF-UP"].read_bytes() == outs["half-up"].read_bytes()
