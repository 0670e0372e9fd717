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

from cli_commands import output_commands, placeholder
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


OUTPUT_COMMANDS = output_commands()


@pytest.mark.parametrize("kind", ["loop", "dangling"])
@pytest.mark.parametrize("path, cmd", OUTPUT_COMMANDS, ids=[" ".join(p) for p, _ in OUTPUT_COMMANDS])
def test_an_output_that_is_a_link_to_nothing_is_refused_before_any_work(path, cmd, kind, tmp_path, monkeypatch):
    """``slice m.onnx -o loop1`` (ln -s loop1 loop1) and ``-o dangl`` (ln -s nowhere dangl) replaced the link with the
    output after all the work (exit 0; 'nowhere' never written), while the same link as an input is named (above).
    Now every command whose output is -o says what the link is, exit 2, before any work, nothing written: neither
    replaced nor written through, as cp refuses both."""
    import click

    if kind == "dangling" and getattr(cmd, "folder_through_links", False):
        pytest.skip("its output folder is made where the link points (test_bundle, test_qnn: through a symbolic link)")
    monkeypatch.chdir(tmp_path)
    if kind == "loop":
        os.symlink("out", "out")
        line = f"error: out: {LOOP}"
    else:
        os.symlink("nowhere", "out")
        line = "error: out: is a link to nowhere, which leads to nothing; remove the link or give another path"
    args = list(path)
    for p in cmd.params:
        if p.required and p.name != "output":
            args += [placeholder(p)] if isinstance(p, click.Argument) else [p.opts[0], placeholder(p)]
    res = CliRunner().invoke(main, [*args, "-o", "out"])
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert [ln for ln in res.stderr.splitlines() if ln.strip()] == [line], res.stderr
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.path.islink("out")


def test_a_link_to_nothing_as_output_of_a_real_slice(tiny_onnx, tmp_path):
    """The reported command end to end: the link stays, nothing is written beside it."""
    os.symlink(tmp_path / "loop1", tmp_path / "loop1")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangl")
    for out, line in [(tmp_path / "loop1", f"error: {tmp_path / 'loop1'}: {LOOP}\n"),
                      (tmp_path / "dangl", f"error: {tmp_path / 'dangl'}: is a link to {tmp_path / 'nowhere'}, which "
                                           "leads to nothing; remove the link or give another path\n")]:
        res = _run("slice", tiny_onnx(), "--width", "0.5", "-o", out)
        assert res.exit_code == 2, res.output
        assert res.output == line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangl", "loop1"]
    assert os.path.islink(tmp_path / "loop1") and os.path.islink(tmp_path / "dangl")


@pytest.mark.parametrize("kind", ["loop", "dangling"])
def test_a_python_callers_output_link_to_nothing_is_refused_too(tiny_onnx, tmp_path, kind):
    """``transform(src, "loop1", ...)`` from Python replaced the link with the output (the CLI's check is the
    command's); the library's output check says what the link is, nothing written, the link left."""
    from deploytool.errors import OutputPathError
    from deploytool.passes import transform
    from deploytool.passes.slice_subnetwork import SliceConfig

    src = tiny_onnx("bert", layers=2)
    out = tmp_path / "out.onnx"
    os.symlink("out.onnx" if kind == "loop" else "nowhere.onnx", out)
    with pytest.raises(OutputPathError, match="a symbolic link that loops" if kind == "loop" else "leads to nothing"):
        transform(src, out, SliceConfig(width=0.5))
    assert os.path.islink(out) and sorted(os.listdir(tmp_path)) == ["out.onnx"]
