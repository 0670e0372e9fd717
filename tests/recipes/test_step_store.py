"""The shared step store (``deploytool cache ls/clear``): it only ever lists or removes what it made."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import ConfigError
from deploytool.recipes.cache import StepCache, clear_store, store_entries


def _key(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _entry(store: Path, kind: str, seed: str, about: dict | None = None) -> Path:
    """A finished entry made by the store itself (``StepCache.building``)."""
    c = StepCache(store.parent / "run", store=store)
    key = _key(seed)
    with c.building(kind, key, about) as tmp:
        (tmp / "m.onnx").write_text("model")
    return c.dir_for(kind, key)


def _project(root: Path) -> Path:
    """A folder that is not a step store: a repository with .git and .venv, as in a typo'd --cache-dir."""
    for f, text in {".git/HEAD": "ref", ".git/objects/ab": "x", ".venv/bin/python": "x", "src/main.py": "code",
                    ".ssh/id_ed25519": "secret"}.items():
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(text)
    return root


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("how", ["--cache-dir", "env"])
def test_clear_refuses_a_folder_that_is_not_a_store_and_touches_nothing(tmp_path, monkeypatch, how):
    proj = _project(tmp_path / "proj")
    _entry(proj, "slice", "a")  # even with one real entry in it, the folder is not the store's
    before = _files(proj)
    argv = ["cache", "clear"]
    if how == "env":
        monkeypatch.setenv("DEPLOYTOOL_CACHE_DIR", str(proj))
    else:
        argv += ["--cache-dir", str(proj)]
    r = CliRunner().invoke(main, argv)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0].startswith(f"error: {proj}: not a deploytool step store") and "nothing removed" in lines[0]
    assert _files(proj) == before
    with pytest.raises(ConfigError, match="not a deploytool step store"):
        clear_store(proj, kind="slice")
    assert _files(proj) == before


def test_clear_removes_its_entries_and_leftovers_only(tmp_path):
    store = tmp_path / "store"
    a = _entry(store, "slice", "a")
    b = _entry(store, "precision-int8", "b")
    leftover = store / f".slice-{_key('c')[:16]}.x1y2_z3w"  # a step that never finished
    leftover.mkdir()
    (leftover / "half.onnx").write_text("partial")
    assert {e.name: e.kind for e in store_entries(store)} == {a.name: "slice", b.name: "precision-int8"}
    assert clear_store(store, kind="precision-int8") == [b.name]
    assert leftover.exists()  # a filtered clear keeps unfinished steps (one may be running)
    assert clear_store(store) == [a.name]
    assert list(store.iterdir()) == []


@pytest.mark.parametrize("forge", ["symlink", "bad-done", "short-key"])
def test_entries_the_store_did_not_make_are_never_listed_or_removed(tmp_path, forge):
    """A link to a folder outside the store, a ``.done`` that is not the key its name starts, or a name not
    of the store's shape: not listed, not evicted, not removed, and ``clear`` counts no such entry."""
    store = tmp_path / "store"
    real = _entry(store, "slice", "a")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    key = _key("link")
    if forge == "symlink":
        (outside / ".done").write_text(key + "\n")
        (store / f"link-{key[:16]}").symlink_to(outside, target_is_directory=True)
    elif forge == "bad-done":
        (store / f"link-{key[:16]}").mkdir()
        (store / f"link-{key[:16]}" / ".done").write_text("k\n")
    else:
        (store / "link-3333").mkdir()
        (store / "link-3333" / ".done").write_text(key + "\n")
    assert [e.name for e in store_entries(store)] == [real.name]
    cache = StepCache(tmp_path / "run", store=store, max_bytes=0)
    assert cache.evict() == [real.name]
    assert (outside / "keep.txt").is_file()
    r = CliRunner().invoke(main, ["cache", "clear", "--kind", "link", "--cache-dir", str(store)])
    assert r.exit_code == 2 and "removed 1" not in r.output and "not a deploytool step store" in r.output, r.output
    assert (outside / "keep.txt").is_file() and len(list(store.iterdir())) == 1


def test_ls_json_about_never_overrides_the_store_s_own_fields(tmp_path):
    store = tmp_path / "store"
    e = _entry(store, "slice", "a", about={"recipe": "r", "step": "slice w=0.5 d=1"})
    (e / ".about.json").write_text(json.dumps({"bytes": -5, "name": "spoofed", "last_used": "never",
                                               "kind": "x", "recipe": "r"}))
    r = CliRunner().invoke(main, ["cache", "ls", "--cache-dir", str(store), "--json"])
    assert r.exit_code == 0, r.output
    [listed] = json.loads(r.output)["entries"]
    assert listed["name"] == e.name and listed["kind"] == "slice" and listed["recipe"] == "r"
    assert listed["bytes"] > 0 and listed["last_used"] == pytest.approx(os.stat(e / ".done").st_mtime)


def test_a_run_in_progress_keeps_its_store_entries(tmp_path):
    """Another run's size cap evicted the export a run in progress was slicing, and `cache clear` removed the steps
    (and the half-written step folder) of a running run: both failed it with "model.onnx: no such file". A run
    registers itself in the store while it runs; eviction waits and `clear` refuses in one line meanwhile."""
    from deploytool.recipes.cache import active_run, check_store, other_runs

    store = tmp_path / "store"
    a = _entry(store, "export", "a")
    running = store / f".slice-{_key('b')[:16]}.x1y2_z3w"  # the step the other run is writing
    running.mkdir()
    with active_run(store) as theirs:
        check_store(store)  # the marker is the store's own: not a foreign file
        assert [r["pid"] for r in other_runs(store)] == [os.getpid()]
        mine = StepCache(tmp_path / "run2", store=store, max_bytes=0)
        assert mine.evict() == [] and a.is_dir()
        with pytest.raises(ConfigError, match=r"a recipe run \(pid \d+, started .*\) is using the store; nothing "
                                               "removed"):
            clear_store(store)
        r = CliRunner().invoke(main, ["cache", "clear", "--cache-dir", str(store)])
        assert r.exit_code == 2 and "is using the store" in r.stderr, r.output
        assert a.is_dir() and running.is_dir() and theirs.is_file()
        # the run's own marker does not hold back its own eviction
        own = StepCache(tmp_path / "run1", store=store, max_bytes=0, run_marker=theirs)
        assert own.evict() == [a.name]
    assert not theirs.exists() and other_runs(store) == []
    assert clear_store(store) == [] and list(store.iterdir()) == []


def test_the_marker_of_a_run_that_died_is_dropped(tmp_path):
    import socket
    import subprocess
    import sys

    store = tmp_path / "store"
    a = _entry(store, "export", "a")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    marker = store / ".run-99-0123abcd"
    marker.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": 1.0}))
    from deploytool.recipes.cache import other_runs

    assert other_runs(store) == [] and not marker.exists()  # killed with SIGKILL: its marker stayed, now dropped
    assert clear_store(store) == [a.name]


def _small_recipe(root: Path, workspace: Path) -> Path:
    import yaml

    p = root / "small.yaml"
    p.write_text(yaml.safe_dump({
        "schema_version": 1, "name": "small", "model": {"path": str(workspace / "model")},
        "task": "sequence-classification", "export": {"exporter": "torch"},
        "sweep": {"width": [1.0], "depth": [1.0], "precision": ["fp32"]}, "devices": ["x86-host"],
        "bench": {"seq_len": [8], "runs": 2, "warmup": 0}}, sort_keys=False))
    return p


def test_clear_of_a_kind_the_store_does_not_hold_says_so(tmp_path):
    """`cache clear --kind slise` removed nothing and said only 'removed 0 steps'; then it said so in a note and
    exited 0, as for a kind runs make of which the store holds none. A kind no run makes is a typo: refused."""
    store = tmp_path / "store"
    _entry(store, "slice", "a")
    r = CliRunner().invoke(main, ["cache", "clear", "--cache-dir", str(store), "--kind", "slise"])
    assert r.exit_code == 2 and r.stdout == "", r.output
    assert r.stderr == ("error: --kind slise: no step has this kind (did you mean 'slice'?); the store's kinds: "
                        "slice (nothing removed)\n"), r.stderr
    assert [e.kind for e in store_entries(store)] == ["slice"]
    # a kind runs make (here a DynaBERT training step), none in the store: nothing removed, said, exit 0
    r = CliRunner().invoke(main, ["cache", "clear", "--cache-dir", str(store), "--kind", "train-dynabert"])
    assert r.exit_code == 0 and r.stdout == f"{store}: removed 0 steps\n", r.output
    assert r.stderr == "note: --kind train-dynabert: no step of this kind in the store; its kinds: slice\n"
    r = CliRunner().invoke(main, ["cache", "clear", "--cache-dir", str(store), "--kind", "slice"])
    assert r.exit_code == 0 and r.stdout == f"{store}: removed 1 step\n" and r.stderr == "", r.output
    assert store_entries(store) == []


def test_every_kind_a_run_stores_is_one_clear_accepts(workspace, tmp_path):
    """The kinds `cache clear --kind` accepts are every kind a run's steps are stored under."""
    from deploytool.recipes.runner import step_kinds

    store = tmp_path / "store"
    r = CliRunner().invoke(main, ["run", str(_small_recipe(tmp_path, workspace)), "-q", "-o", str(tmp_path / "out"),
                                  "--cache-dir", str(store)])
    assert r.exit_code == 0, r.output
    made = {e.kind for e in store_entries(store)}
    assert {"export", "bench"} <= made and made <= set(step_kinds()), (made, step_kinds())


def test_a_store_named_with_no_shared_cache_is_refused(tmp_path):
    """README: `run ... [--cache-dir D | --no-shared-cache]`. Both given, the run went on without D, silently."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("schema_version: 1\nname: r\nmodel: minilm\n")
    r = CliRunner().invoke(main, ["run", str(recipe), "-q", "-o", str(tmp_path / "out"),
                                  "--cache-dir", str(tmp_path / "store"), "--no-shared-cache"])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: --cache-dir "), r.output
    assert "--no-shared-cache" in lines[0] and "exclude each other" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


def test_a_store_cap_with_no_shared_cache_is_refused(tmp_path):
    """``--cache-max-gb`` caps the shared store; with --no-shared-cache there is none, and the cap was ignored without
    a word (as --cache-dir was, which is refused)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("schema_version: 1\nname: r\nmodel: minilm\n")
    r = CliRunner().invoke(main, ["run", str(recipe), "-q", "-o", str(tmp_path / "out"), "--cache-max-gb", "5",
                                  "--no-shared-cache"])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and lines == ["error: --cache-max-gb 5: caps the shared step store, which --no-shared-cache "
                                          "turns off; the two exclude each other (nothing run)"], r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]

@pytest.mark.parametrize("where", ["same", "alias", "output-inside", "store-inside"])
def test_a_run_whose_output_folder_is_its_store_is_refused_up_front(workspace, tmp_path, where):
    """`run -o D --cache-dir D` ran, and `cache clear --cache-dir D` then refused D as "not a deploytool step store"
    (it held the run's report, models and steps/ links): a store that holds a run's outputs can never be cleared,
    and a run folder inside a store (or a store inside a run folder: `--cache-dir D/steps` is the run's own steps/)
    mixes the two. Refused in one line before anything is made; the library says the same."""
    from deploytool.errors import OutputPathError
    from deploytool.recipes import load_recipe
    from deploytool.recipes.runner import run_recipe

    recipe = _small_recipe(tmp_path, workspace)
    d = tmp_path / "d"
    out, store = {"same": (d, d), "alias": (tmp_path / "link", d), "output-inside": (d / "run", d),
                  "store-inside": (d, d / "steps")}[where]
    if where == "alias":
        d.mkdir()
        out.symlink_to(d, target_is_directory=True)
    before = _files(tmp_path)
    r = CliRunner().invoke(main, ["run", str(recipe), "-q", "-o", str(out), "--cache-dir", str(store)])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0].startswith(f"error: {out}: the run's output folder ") and "step store" in lines[0], lines
    assert "nothing run" in lines[0] and "--no-shared-cache" in lines[0]
    assert _files(tmp_path) == before  # no folder, no run marker, no lock
    with pytest.raises(OutputPathError, match="step store"):
        run_recipe(load_recipe(recipe), out, store=store)
    assert _files(tmp_path) == before


def test_clearing_a_store_that_holds_a_run_s_outputs_says_so(tmp_path):
    """A folder used as both (before they were refused): `cache clear` still refuses it, naming the run's outputs
    rather than the first foreign name (its .run.lock)."""
    store = tmp_path / "d"
    _entry(store, "export", "a")
    for f in ("run.json", ".run.lock", "report/report.json", "models/m.onnx"):
        (store / f).parent.mkdir(parents=True, exist_ok=True)
        (store / f).write_text("x")
    before = _files(store)
    r = CliRunner().invoke(main, ["cache", "clear", "--cache-dir", str(store)])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0] == (f"error: {store}: not a deploytool step store (it holds 'run.json' and 3 more, which the store "
                        "did not make: a recipe run wrote its outputs there); nothing removed")
    assert _files(store) == before


def test_ls_marks_damaged_entries_and_clear_damaged_removes_only_them(tmp_path):
    """A finished entry whose file was truncated (or removed) since the step finished: a run makes it again with a
    warning, but `cache ls` listed it like a whole one (and the JSON had no field for it); now ls marks it with what is
    wrong, the JSON says it, and `cache clear --damaged` removes those and nothing else."""
    store = tmp_path / "store"
    whole = _entry(store, "slice", "a")
    cut = _entry(store, "export", "b")
    gone = _entry(store, "precision-int8", "c")
    (cut / "m.onnx").write_text("mo")  # 5 bytes when the step finished, 2 now
    (gone / "m.onnx").unlink()
    r = CliRunner().invoke(main, ["cache", "ls", "--cache-dir", str(store)])
    assert r.exit_code == 0, r.output
    rows = {ln.split()[0]: ln for ln in r.stdout.splitlines()[1:]}
    assert r.stdout.splitlines()[0].endswith(", 2 damaged"), r.stdout
    assert "DAMAGED" not in rows[whole.name]
    assert rows[cut.name].endswith("DAMAGED: m.onnx has 2 bytes, 5 when the step finished"), rows
    assert rows[gone.name].endswith("DAMAGED: m.onnx is missing"), rows
    assert "cache clear --damaged" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = CliRunner().invoke(main, ["cache", "ls", "--cache-dir", str(store), "--json"])
    listed = {e["name"]: e["damaged"] for e in json.loads(r.stdout)["entries"]}
    assert listed == {whole.name: None, cut.name: "m.onnx has 2 bytes, 5 when the step finished",
                      gone.name: "m.onnx is missing"}
    r = CliRunner().invoke(main, ["cache", "clear", "--damaged", "--cache-dir", str(store)])
    assert r.exit_code == 0 and r.stdout == f"{store}: removed 2 steps\n", r.output
    assert sorted(p.name for p in store.iterdir()) == [whole.name]
    r = CliRunner().invoke(main, ["cache", "ls", "--cache-dir", str(store)])
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == f"{store}: 1 step, 0.0 MB" and r.stderr == "", r.output
    assert "DAMAGED" not in r.stdout


def test_ls_of_a_folder_that_is_not_a_store_says_so(tmp_path):
    """`cache ls --cache-dir ~/project` (a typo) said '0 steps, 0.0 MB' as for an empty store, where `cache clear`
    refuses the folder as not a store; now ls says so in a one-line note and lists only the store's own entries."""
    proj = _project(tmp_path / "proj")
    real = _entry(proj, "slice", "a")
    for extra in ([], ["--json"]):
        r = CliRunner().invoke(main, ["cache", "ls", "--cache-dir", str(proj), *extra])
        assert r.exit_code == 0, r.output
        assert r.stderr == (f"note: {proj}: not a deploytool step store (it holds '.git' and 3 more, which the store "
                            "did not make); only entries the store made are listed\n"), r.stderr
        assert real.name in r.stdout and ".git" not in r.stdout
    r = CliRunner().invoke(main, ["cache", "ls", "--cache-dir", str(tmp_path / "store")])  # none yet: no note
    assert r.exit_code == 0 and r.stderr == "", r.output
