"""Runs refused before they start make nothing. An output folder or step store named by a link that leads nowhere
(its target removed, a loop of links): one line, exit 2. Both were 'internal error FileExistsError' (exit 1): the
path did not exist, so it looked free, and mkdir then found the link; and a refused -o made the store first. A recipe
refused by its check (a missing model) left an empty store folder behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import ConfigError

WORKSPACE_ROWS = 40  # the workspace fixture's toy.csv (tests/recipes/conftest.py)


@pytest.mark.parametrize("where", ["-o", "--cache-dir", "env", "-o parent", "--cache-dir loop", "cache ls"])
def test_a_link_to_nothing_is_refused_in_one_line(workspace, tmp_path, monkeypatch, where):
    doc = {"schema_version": 1, "name": "dl", "model": {"path": "model"}, "task": "sequence-classification",
           "export": {"exporter": "torch"}, "sweep": {"width": [1.0], "depth": [1.0], "precision": ["fp32"]},
           "devices": ["x86-host"], "bench": {"seq_len": [8], "runs": 1, "warmup": 0}}
    recipe = tmp_path / "dl.yaml"
    recipe.write_text(yaml.safe_dump(doc, sort_keys=False))
    # the recipe's model path is relative to the recipe's folder
    os.symlink(workspace / "model", tmp_path / "model", target_is_directory=True)
    link = tmp_path / "gone"
    os.symlink(tmp_path / "removed-target", link)
    loop_a, loop_b = tmp_path / "a", tmp_path / "b"
    os.symlink(loop_b, loop_a)
    os.symlink(loop_a, loop_b)
    out, store = tmp_path / "out", tmp_path / "store"
    named = link
    if where == "-o":
        out = link
    elif where == "--cache-dir":
        store = link
    elif where == "env":
        store = None
        monkeypatch.setenv("DEPLOYTOOL_CACHE_DIR", str(link))
    elif where == "-o parent":
        out = link / "run"
    elif where == "--cache-dir loop":
        store, named = loop_a, loop_a
    before = sorted(p.name for p in tmp_path.iterdir())
    if where == "cache ls":
        argv = ["cache", "ls", "--cache-dir", str(link)]
    else:
        argv = ["run", str(recipe), "-o", str(out), "--quiet"] + (["--cache-dir", str(store)] if store else [])
    r = CliRunner().invoke(main, argv)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0].startswith("error: ") and "no folder" in lines[0], lines[0]
    assert f"{named}: is a link to " in lines[0] or f"{named} is a link to " in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing made (no out, no store)
    assert os.path.islink(link) and not os.path.exists(link)


@pytest.mark.parametrize("argv", [["cache", "ls"], ["cache", "clear"], ["run", "{recipe}", "--check"],
                                  ["run", "{recipe}", "-q"]], ids=["ls", "clear", "run-check", "run"])
@pytest.mark.parametrize("how", ["link", "file-parent"])
def test_a_store_from_the_environment_is_named_as_such(tmp_path, monkeypatch, argv, how):
    """DEPLOYTOOL_CACHE_DIR naming a link to nothing (or a path under a file) was refused as '(the step store,
    --cache-dir)', an option the user never gave; now '$DEPLOYTOOL_CACHE_DIR'. --cache-dir is still named as such."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("schema_version: 1\nname: r\nmodel: minilm\n")
    (tmp_path / "afile").write_text("x")
    bad = tmp_path / "gone" if how == "link" else tmp_path / "afile" / "store"
    if how == "link":
        os.symlink(tmp_path / "removed-target", bad)
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [a.replace("{recipe}", str(recipe)) for a in argv]
    for env, extra, said in ((str(bad), [], "(the step store, $DEPLOYTOOL_CACHE_DIR)"),
                             (str(tmp_path), ["--cache-dir", str(bad)], "(the step store, --cache-dir)")):
        monkeypatch.setenv("DEPLOYTOOL_CACHE_DIR", env)
        r = CliRunner().invoke(main, args + extra)
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 2 and len(lines) == 1, r.output
        assert lines[0].startswith(f"error: {bad}: ") and lines[0].endswith(said), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("bad", [{"model": {"path": "no-such-model"}}, {"devices": ["kirin99"]}])
def test_a_refused_recipe_makes_no_store(tmp_path, bad):
    doc = {"schema_version": 1, "name": "nostore", "model": {"path": "model"}, "task": "sequence-classification",
           "export": {"exporter": "torch"}, "sweep": {"width": [1.0], "depth": [1.0], "precision": ["fp32"]},
           "devices": ["x86-host"], "bench": {"seq_len": [8], "runs": 1, "warmup": 0}, **bad}
    recipe = tmp_path / "nostore.yaml"
    recipe.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = CliRunner().invoke(main, ["run", str(recipe), "-o", str(tmp_path / "out"), "--cache-dir",
                                  str(tmp_path / "store"), "--quiet"])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nostore.yaml"]


def _one_variant_recipe(tmp_path: Path, workspace: Path, name: str) -> Path:
    """``<tmp_path>/<name>.yaml``: the workspace's model exported, one fp32 variant benched once on this host."""
    doc = {"schema_version": 1, "name": name, "model": {"path": str(workspace / "model")},
           "task": "sequence-classification", "export": {"exporter": "torch"},
           "sweep": {"width": [1.0], "depth": [1.0], "precision": ["fp32"]}, "devices": ["x86-host"],
           "bench": {"seq_len": [8], "runs": 1, "warmup": 0}}
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(yaml.safe_dump(doc, sort_keys=False))
    return recipe


@pytest.mark.parametrize("where", ["under a file", "the model folder", "a link to nothing", "the store"])
def test_check_refuses_the_folders_the_run_would_refuse(workspace, tmp_path, where):
    """`run --check -o X` printed 'ok' for an X the run then refused in its first second: the check now looks at the
    output folder and the store as the run does, and makes neither."""
    recipe = _one_variant_recipe(tmp_path, workspace, "chk")
    (tmp_path / "afile").write_text("x")
    os.symlink(tmp_path / "removed-target", tmp_path / "gone")
    store = tmp_path / "store"
    out = {"under a file": tmp_path / "afile" / "out", "the model folder": workspace / "model" / "run",
           "a link to nothing": tmp_path / "gone", "the store": store / "run"}[where]
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["run", str(recipe), "--check", "--cache-dir", str(store)]
    r = CliRunner().invoke(main, argv + ["-o", str(out)])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {out}: "), r.output
    assert "ok" not in r.stdout.split()
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not (workspace / "model" / "run").exists()
    # a usable folder is still only checked: 'ok', nothing made
    r = CliRunner().invoke(main, argv + ["-o", str(tmp_path / "fine")])
    assert r.exit_code == 0 and r.stdout.strip().endswith(f"{recipe}: ok"), r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_run_recipe_refuses_bad_arguments_before_any_step(tmp_path, monkeypatch):
    """The Python API's run_recipe given a recipe file's path (the CLI's argument) raised AttributeError "'str' object
    has no attribute 'devices'"; None or a number for out_dir or store a TypeError; progress=3 a TypeError once the
    first step had run (its folder left under out_dir); max_store_bytes="1" was taken. Each is one line now, and
    nothing is made."""
    from deploytool.recipes import load_recipe, run_recipe

    doc = {"schema_version": 1, "name": "args", "model": "minilm", "task": "sequence-classification",
           "export": {"exporter": "torch"}, "sweep": {"width": [1.0], "depth": [1.0], "precision": ["fp32"]},
           "devices": ["x86-host"], "bench": {"seq_len": [8], "runs": 1, "warmup": 0}}
    path = tmp_path / "args.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    recipe = load_recipe(path)
    monkeypatch.setenv("DEPLOYTOOL_CACHE_DIR", str(tmp_path / "env-store"))
    out = tmp_path / "out"
    cases = [
        (lambda: run_recipe(str(path), out), "run_recipe: recipe must be a Recipe (load_recipe(path) reads one), got str"),
        (lambda: run_recipe(path, out), "run_recipe: recipe must be a Recipe (load_recipe(path) reads one), got PosixPath"),
        (lambda: run_recipe(recipe, None), "out_dir: expected a folder path, got None"),
        (lambda: run_recipe(recipe, 3), "out_dir: expected a folder path, got 3"),
        (lambda: run_recipe(recipe, out, store=3), "store: expected a folder path, got 3"),
        (lambda: run_recipe(recipe, out, progress=3),
         "progress: expected a function taking a step's name and its status (or None), got int 3"),
        (lambda: run_recipe(recipe, out, store=tmp_path / "s", max_store_bytes="1"),
         "max_store_bytes: expected a number of bytes >= 0 (or None), got str '1'"),
        (lambda: run_recipe(recipe, out, store=tmp_path / "s", max_store_bytes=-1),
         "max_store_bytes: expected a number of bytes >= 0 (or None), got int -1"),
    ]
    for call, message in cases:
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value) == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["args.yaml"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, where no folder can be made")
@pytest.mark.parametrize("where", ["-o", "--cache-dir", "env"])
def test_a_folder_the_file_system_refuses_is_one_line(workspace, tmp_path, monkeypatch, where):
    """-o, --cache-dir or DEPLOYTOOL_CACHE_DIR under /proc (as a read-only mount or a parent without permission would
    be): check_folder_path found no file or link in the way, and mkdir then failed as 'internal error
    FileNotFoundError' (exit 1). Now one line naming the folder and the reason, exit 2."""
    recipe = _one_variant_recipe(tmp_path, workspace, "fs")
    refused = "/proc/no-such-folder/x"  # /proc passes os.access as root; mkdir in it fails
    out, store = tmp_path / "out", tmp_path / "store"
    argv = ["run", str(recipe), "--quiet", "-o", refused if where == "-o" else str(out)]
    if where == "--cache-dir":
        argv += ["--cache-dir", refused]
    monkeypatch.setenv("DEPLOYTOOL_CACHE_DIR", refused if where == "env" else str(store))
    r = CliRunner().invoke(main, argv)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    # root passes os.access on /proc and mkdir says why; another user is refused by the check before
    said = "cannot make this folder (/proc/no-such-folder: " if os.geteuid() == 0 else "/proc is not writable"
    assert lines[0].startswith(f"error: {refused}: {said}"), lines[0]
    assert lines[0].endswith("(the output folder)" if where == "-o" else "(the step store)"), lines[0]
    assert not out.exists()


def test_check_refuses_a_parent_it_cannot_write(workspace, tmp_path, monkeypatch):
    """`run --check -o X` said 'ok' where X's parent could not be written (the run then failed in mkdir as an internal
    PermissionError): the check asks the file system (os.access, faked here: the tests run as root, whom a mode does
    not stop) and names the folder; nothing made."""
    recipe = _one_variant_recipe(tmp_path, workspace, "ro")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr("deploytool.onnx_io.os.access",
                        lambda p, mode, **kw: False if os.fspath(p) == str(locked) else real_access(p, mode, **kw))
    r = CliRunner().invoke(main, ["run", str(recipe), "--check", "--cache-dir", str(tmp_path / "store"),
                                  "-o", str(locked / "out")])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0] == f"error: {locked / 'out'}: {locked} is not writable, the folder cannot be made there " \
                       "(the output folder)", lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked", "ro.yaml"] and not any(locked.iterdir())


@pytest.mark.parametrize("argv", [["cache", "ls"], ["cache", "clear"], ["run", "{recipe}", "--check"]],
                         ids=["ls", "clear", "run-check"])
def test_a_blank_store_variable_is_refused(tmp_path, monkeypatch, argv):
    """DEPLOYTOOL_CACHE_DIR=' ' was taken as a folder named ' ' in the current folder ('cache ls' listed ' : 0 steps',
    a run made it), where --cache-dir ' ', DEPLOYTOOL_PROFILES_DIR=' ' and DEPLOYTOOL_ARM64_HOME=' ' are refused."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("schema_version: 1\nname: r\nmodel: minilm\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEPLOYTOOL_CACHE_DIR", " ")
    r = CliRunner().invoke(main, [a.replace("{recipe}", str(recipe)) for a in argv])
    assert r.exit_code == 2, r.output
    assert r.stderr == "error: DEPLOYTOOL_CACHE_DIR=' ': blank path (unset it for the default store)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


def test_check_runs_no_host_microbenchmark(tmp_path, monkeypatch):
    """`run --check` ("run nothing") loaded the recipe's profiles as a run does, and the host profile ran its
    microbenchmark on a fresh cache (2 min 46 s of a 'check' on a 2-core VM). It validates them without measuring:
    nothing is written to the cache."""
    from click.testing import CliRunner

    from deploytool.cli import main

    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("DEPLOYTOOL_CACHE_DIR", raising=False)
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "smoke.yaml"
    assert "x86-host" in recipe.read_text()  # a profile built from this machine
    r = CliRunner().invoke(main, ["run", str(recipe), "--check", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0 and r.output.strip().endswith("smoke.yaml: ok"), r.output
    assert not cache.exists() and not (tmp_path / "out").exists()
