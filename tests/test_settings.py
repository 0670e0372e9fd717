"""deploytool.settings is the one module of the library that reads the environment (STYLE.md, principle 10):
the command line (``cli/``) reads the documented user variables and passes explicit values down; the debug
switches are read by settings' functions. Every other read is listed in ALLOWED with its reason, and a listed
file that no longer reads the environment fails too, so the list only shrinks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

PKG = Path(__file__).resolve().parent.parent / "deploytool"

#: a read of the environment: os.environ, os.getenv, os.environb, os.putenv, `from os import environ`
_READ = re.compile(r"\bos\.(environb?|getenv|getenvb|putenv|unsetenv)\b|\bfrom\s+os\s+import\b[^\n]*\b(environ|getenv)\b")

#: file (relative to deploytool/) -> why it may read the environment
ALLOWED: dict[str, str] = {
    "settings.py": "the one module of documented settings (DEPLOYTOOL_NO_FORK, DEPLOYTOOL_EAGER_IMPORTS)",
    "cli/run_cmd.py": "the CLI layer: DEPLOYTOOL_CACHE_DIR for --cache-dir's default (XDG_CACHE_HOME: settings)",
    "cli/bench_cmd.py": "the CLI layer: DEPLOYTOOL_BENCH_PYTHON into BenchConfig.worker_python",
    # the process environment handed on to a child process (which subprocess would inherit anyway), with
    # PYTHONPATH and friends set so the child imports this deploytool: no variable decides anything here
    "bench/runner.py": "a copy of the environment for the benchmark worker process",
    "runtime/host.py": "a copy of the environment for the host microbenchmark's worker process",
    "arm64/core.py": "a copy of the environment, less the host Python's variables, for the emulated guest",
    "arm64/emulator.py": "a copy of the environment, less the host Python's variables, for the emulated Python",
}


def environ_readers(root: Path) -> dict[str, list[int]]:
    """Each .py file under ``root`` that reads the environment -> the line numbers of the reads."""
    out: dict[str, list[int]] = {}
    for path in sorted(root.rglob("*.py")):
        lines = [i for i, line in enumerate(path.read_text().splitlines(), 1)
                 if _READ.search(line.split("#", 1)[0])]
        if lines:
            out[path.relative_to(root).as_posix()] = lines
    return out


def test_only_settings_and_the_listed_modules_read_the_environment():
    found = environ_readers(PKG)
    extra = sorted(f"deploytool/{f}:{n}" for f, ns in found.items() if f not in ALLOWED for n in ns)
    assert extra == [], ("read the environment in deploytool/settings.py (a debug switch) or in cli/ (a user "
                         "setting, passed down as an argument); or list the file in ALLOWED with why:\n"
                         + "\n".join(extra))
    gone = sorted(set(ALLOWED) - set(found))
    assert gone == [], f"listed in ALLOWED but no longer reading the environment (remove them): {gone}"
    assert len(list(PKG.rglob("*.py"))) > 50  # the walk found the package


def test_the_check_sees_each_way_of_reading(tmp_path):
    for name, text in {"a.py": "import os\nx = os.environ.get('X')\n", "b.py": "import os\nos.getenv('Y')\n",
                       "c.py": "from os import environ\n", "d.py": "# os.environ in a comment\nimport os\n",
                       "sub/e.py": "import os\nenv = dict(os.environ)\n"}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert environ_readers(tmp_path) == {"a.py": [2], "b.py": [2], "c.py": [1], "sub/e.py": [2]}


def test_the_switches_read_the_environment_given_or_this_process(monkeypatch):
    from deploytool import settings

    assert settings.no_fork({"DEPLOYTOOL_NO_FORK": "1"}) and not settings.no_fork({"DEPLOYTOOL_NO_FORK": ""})
    assert not settings.no_fork({})
    assert settings.eager_imports({"DEPLOYTOOL_EAGER_IMPORTS": "1"})
    monkeypatch.setenv("DEPLOYTOOL_NO_FORK", "1")  # read when asked, not at import
    assert settings.no_fork()
    monkeypatch.delenv("DEPLOYTOOL_NO_FORK")
    assert not settings.no_fork()


def test_the_guarded_gate_takes_fork_as_an_argument(tmp_path, monkeypatch):
    """verify_model_guarded(fork=False) checks in this process with no variable set; fork=True forks although
    DEPLOYTOOL_NO_FORK is set; fork=None (the default) follows the variable."""
    import os
    import sys

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import deploytool.runtime.verify as V

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                          [numpy_helper.from_array(w, "w")])
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    feeds = {"x": np.ones((2, 4), np.float32)}
    forks = []
    real_fork = os.fork
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or real_fork())
    monkeypatch.setattr(sys, "platform", "linux")

    monkeypatch.delenv("DEPLOYTOOL_NO_FORK", raising=False)
    assert V.verify_model_guarded(path, feeds, fork=False).outputs == ("y",) and forks == []
    assert V.verify_model_guarded(path, feeds).outputs == ("y",) and forks == [1]
    monkeypatch.setenv("DEPLOYTOOL_NO_FORK", "1")
    assert V.verify_model_guarded(path, feeds).outputs == ("y",) and forks == [1]
    assert V.verify_model_guarded(path, feeds, fork=True).outputs == ("y",) and forks == [1, 1]


def test_default_folders_follow_home_and_xdg_cache_home_set_after_import(tmp_path, monkeypatch):
    """The default folders are read when used, not when deploytool is imported: a program that sets HOME or
    XDG_CACHE_HOME after the import gets its folder (they were frozen at import: ~ of the importing moment)."""
    import deploytool.arm64
    import deploytool.arm64.emulator
    import deploytool.runtime.host
    from deploytool.arm64 import find_emulator
    from deploytool.cli.run_cmd import default_store
    from deploytool.errors import UnavailableError
    from deploytool.profiles.host import HostOptions

    monkeypatch.delenv("DEPLOYTOOL_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cache = tmp_path / "home" / ".cache" / "deploytool"
    assert deploytool.arm64.DEFAULT_HOME == deploytool.arm64.emulator.DEFAULT_HOME == cache / "arm64"
    assert deploytool.runtime.host.DEFAULT_CACHE_DIR == HostOptions().cache == cache / "host"
    assert default_store() == cache / "steps"
    with pytest.raises(UnavailableError, match=re.escape(f"ARM64 emulator is not set up in {cache / 'arm64'} ")):
        find_emulator()

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # as scripts/setup_arm64.sh: XDG first
    cache = tmp_path / "xdg" / "deploytool"
    from deploytool.arm64 import DEFAULT_HOME

    assert DEFAULT_HOME == deploytool.arm64.emulator.DEFAULT_HOME == cache / "arm64"
    assert deploytool.runtime.host.DEFAULT_CACHE_DIR == HostOptions().cache == cache / "host"
    assert default_store() == cache / "steps"
    with pytest.raises(UnavailableError, match=re.escape(f"ARM64 emulator is not set up in {cache / 'arm64'} ")):
        find_emulator()
    ns: dict = {}
    exec("from deploytool.arm64 import *", ns)  # the public name stays in the package's star import
    assert ns["DEFAULT_HOME"] == cache / "arm64"
    with pytest.raises(AttributeError):
        deploytool.arm64.NO_SUCH_NAME


def test_the_folder_functions_read_the_environment_given():
    from deploytool import settings

    assert settings.cache_home({"HOME": "/h"}) == Path("/h/.cache")
    assert settings.cache_home({"HOME": "/h", "XDG_CACHE_HOME": "/x"}) == Path("/x")
    assert settings.cache_home({"HOME": "/h", "XDG_CACHE_HOME": ""}) == Path("/h/.cache")  # empty: unset
    assert settings.default_step_store({"XDG_CACHE_HOME": "/x"}) == Path("/x/deploytool/steps")
    assert settings.default_arm64_home({"HOME": "/h"}) == Path("/h/.cache/deploytool/arm64")
    assert settings.default_host_cache({"HOME": "/h"}) == Path("/h/.cache/deploytool/host")


@pytest.mark.parametrize("value, on", [("1", True), ("true", True), ("Yes", True), (" on ", True), ("", False),
                                       ("0", False), ("false", False), ("NO", False), ("off", False)])
def test_a_switch_reads_the_usual_words(value, on):
    """DEPLOYTOOL_EAGER_IMPORTS=yes (or true) was ignored without a word (only '1' counted) and DEPLOYTOOL_NO_FORK=0
    turned no-fork on (any non-empty value did): both switches now read the same words, the same way."""
    from deploytool import settings

    assert settings.eager_imports({"DEPLOYTOOL_EAGER_IMPORTS": value}) is on
    assert settings.no_fork({"DEPLOYTOOL_NO_FORK": value}) is on
    assert settings.switch_error({"DEPLOYTOOL_EAGER_IMPORTS": value, "DEPLOYTOOL_NO_FORK": value}) is None


@pytest.mark.parametrize("name", ["DEPLOYTOOL_NO_FORK", "DEPLOYTOOL_EAGER_IMPORTS"])
def test_the_command_line_refuses_a_switch_it_cannot_read(monkeypatch, name):
    """A typo (DEPLOYTOOL_EAGER_IMPORTS=ture) was taken silently (as off; NO_FORK as on): the program says so in one
    line, exit 2, before the command runs."""
    from click.testing import CliRunner

    from deploytool.cli import main

    monkeypatch.setenv(name, "ture")
    r = CliRunner().invoke(main, ["profiles", "show", "kirin990"])
    assert r.exit_code == 2, r.output
    assert r.output == f"error: {name}='ture': expected 1, true, yes or on to turn it on (0, false, no, off or " \
                       "unset: off)\n"
