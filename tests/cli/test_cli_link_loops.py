"""A symbolic link that loops (``ln -s loop2 loop1; ln -s loop1 loop2``) given as an input or on an output's way.

It exists (as a link), so "no such file" sent the user looking for a missing file: ``inspect loop1`` said
``error: loop1: no such file``, ``bench loop1`` was ``internal error RuntimeError: Symlink loop`` (exit 1), and
``slice m.onnx -o loop1/x.onnx`` said ``cannot create directory loop1 (File exists)``. Now one line that says what
it is, exit 2, nothing written.
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from deploytool.cli import main

LOOP = "a symbolic link that loops (too many levels of links)"


@pytest.fixture
def loop(tmp_path):
    os.symlink(tmp_path / "loop2", tmp_path / "loop1")
    os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    return tmp_path / "loop1"


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("command", [
    ["inspect", "{in}"],
    ["slice", "{in}", "--width", "0.5", "-o", "{out}"],
    ["quantize", "--int8", "{in}", "-o", "{out}"],
    ["bench", "{in}", "--runs", "1", "--warmup", "0"],
    ["report", "{in}", "-o", "{outdir}"],
    ["run", "{in}"],
], ids=lambda c: c[0])
def test_an_input_that_is_a_loop_of_links_is_named_as_such(loop, tmp_path, command):
    out, outdir = tmp_path / "out.onnx", tmp_path / "rep"
    args = [a.format(**{"in": loop, "out": out, "outdir": outdir}) for a in command]
    res = _run(*args)
    assert res.exit_code == 2, res.output
    assert res.output == f"error: {loop}: {LOOP}\n"
    assert not out.exists() and not outdir.exists()


def test_an_input_under_a_loop_of_links_names_the_link(loop):
    res = _run("inspect", loop / "m.onnx")
    assert res.exit_code == 2
    assert res.output == f"error: {loop / 'm.onnx'}: {loop} is {LOOP}\n"


def test_an_output_through_a_loop_of_links_is_refused_before_any_work(loop, tiny_onnx, tmp_path):
    for out in (loop / "x.onnx", loop / "sub" / "x.onnx"):
        res = _run("slice", tiny_onnx(), "--width", "0.5", "-o", out)
        assert res.exit_code == 2, res.output
        assert res.output == f"error: {out}: {loop} is {LOOP}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop1", "loop2"]


def test_a_missing_input_is_still_no_such_file(tmp_path):
    res = _run("inspect", tmp_path / "missing.onnx")
    assert res.exit_code == 2
    assert res.output == f"error: {tmp_path / 'missing.onnx'}: no such file\n"


@pytest.mark.parametrize("way", ["dangling-link", "file-above"])
def test_an_output_whose_folders_cannot_be_made_is_refused_before_any_work(tiny, tmp_path, way):
    """A link to nothing, or a file, among the folders an -o FILE needs made: 'importance M -o gone/x.json' scored the
    model, then said 'cannot create directory gone (File exists)' (and 'afile/sub/x.json': '... (Not a directory)');
    every -o FILE command (check_output_path) found it only when writing. Now one line before any work."""
    if way == "dangling-link":
        os.symlink(tmp_path / "removed", tmp_path / "gone")
        out, said = tmp_path / "gone" / "x.json", f"{tmp_path / 'gone'} is a link to {tmp_path / 'removed'}, which " \
                                                    "leads to no folder"
    else:
        (tmp_path / "afile").write_text("x")
        out, said = tmp_path / "afile" / "sub" / "x.json", f"{tmp_path / 'afile'} is a file, not a folder"
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in (["importance", tiny / "tiny", "--data", tiny / "toy.csv", "--max-train", "8", "--threads", "1"],
                 ["bench", tiny / "m.onnx", "--runs", "1", "--warmup", "0"]):
        res = _run(*args, "-o", out)
        assert res.exit_code == 2, res.output
        assert res.stderr == f"error: {out}: {said}\n", res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_onnx):
    pytest.importorskip("torch")
    from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv

    root = tmp_path_factory.mktemp("outpaths")
    tiny_classifier_folder(root / "tiny", layers=1)
    toy_csv(root / "toy.csv", n=60)
    os.symlink(tiny_onnx(), root / "m.onnx")
    return root
