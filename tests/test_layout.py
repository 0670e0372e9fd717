"""The package's layout follows the data flow: a part of deploytool imports only the parts below it.

The flow is written down here (and drawn in the README's "Layout" section): FLOW lists the parts of
the package, a top-level module (``variant``) or a subpackage (``passes``), from the bottom up. Every
``import deploytool.X`` of a module in part P, at module level or inside a function (a lazy import
still couples the two), must name a part listed before P. The few imports against the flow that are
left sit in files owned by work in progress; they are listed in KNOWN_AGAINST_THE_FLOW with the fix,
and a listed import that is gone fails too, so the list only shrinks. Within a part, no two modules
import each other, directly or round a loop (KNOWN_MODULE_CYCLES, the same way).

The imports are read from the source with ``ast`` (independent of the package's own import
machinery); a fresh interpreter then imports every module, which a module-level cycle would break.

The tests mirror the package: ``tests/P/`` holds the tests of the subpackage ``deploytool/P/``, the root
the tests of top-level modules (``test_fit.py`` for ``fit.py``) and of the package as a whole; the rule
and its few cross-cutting places are written down below (``misplaced_tests``), so the mirror cannot
drift. Every path that names a test file (README, scripts, benchmarks, docstrings) must exist.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "deploytool"

# bottom -> top: the life of a model read as dependencies. Foundations (errors, units, file I/O, what
# a model file is, data, accuracy records), the structure finder and the low-bit maths, what reads the
# structure (importance, inspection), running a model (runtime: the only onnxruntime import), the
# transforms (passes, whose verification gate runs the model), export, device profiles, measuring
# (bench), the test builders, devices (arm64, qnn, remote, bundle), reporting and picking (report,
# fit), training (train), recipes that chain all of it, and the CLI on top.
FLOW = [
    "settings", "deferred", "quiet_logs", "scratch", "errors", "choices", "validation", "units", "stats", "onnx_io", "models", "variant", "data", "accuracy",
    "graph", "quant", "importance", "inspection",
    "runtime", "passes", "export", "profiles", "bench", "testing",
    "arm64", "qnn", "remote", "bundle", "report", "fit", "train", "recipes",
    "cli", "__main__",
]

# (importing file, imported part): why it is still there and what removes it
KNOWN_AGAINST_THE_FLOW: dict[tuple[str, str], str] = {}


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "deploytool" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path, package: str | None = "deploytool") -> set[str]:
    """Every module of ``package`` (None: of any package) named by an import statement of the file (any
    nesting level)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            if node.module == "deploytool":  # from deploytool import passes
                out.update(f"deploytool.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: relative import (the flow check reads absolute imports only)")
    return {m for m in out if package is None or m == package or m.startswith(package + ".")}


def _source_part(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _edges() -> dict[tuple[str, str], str]:
    """(file relative to the package, imported part) -> the importing file's part, across parts only."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == PKG:
            continue  # the top-level public API names modules in strings, imported lazily
        src = _source_part(path)
        for mod in _imports(path):
            dst = _part(mod)
            if dst is not None and dst != src:
                out[(path.relative_to(PKG).as_posix(), dst)] = src
    return out


def test_every_part_is_placed_in_the_flow():
    parts = {_source_part(p) for p in PKG.rglob("*.py") if p != PKG / "__init__.py"}
    assert parts - set(FLOW) == set(), "add new parts of the package to FLOW (and the README's drawing)"
    assert set(FLOW) - parts == set(), "FLOW names a part that no longer exists"
    assert len(FLOW) == len(set(FLOW))


def _against(src: str, dst: str) -> bool:
    """Part ``src`` importing part ``dst`` goes against the flow."""
    return FLOW.index(dst) > FLOW.index(src)


def test_imports_follow_the_flow():
    against = sorted(f"{f} ({src}) imports {dst}" for (f, dst), src in _edges().items()
                     if _against(src, dst) and (f, dst) not in KNOWN_AGAINST_THE_FLOW)
    assert against == [], "imports against the flow (FLOW in tests/test_layout.py):\n" + "\n".join(against)


def test_known_exceptions_are_still_needed():
    edges = _edges()
    stale = [k for k in KNOWN_AGAINST_THE_FLOW if k not in edges or not _against(edges[k], k[1])]
    assert stale == [], f"no longer against the flow: remove {stale} from KNOWN_AGAINST_THE_FLOW"


# files outside runtime/ that import onnxruntime (STYLE.md: "onnxruntime only in the runtime layer"), and why
KNOWN_ONNXRUNTIME_IMPORTS: dict[str, str] = {
    "arm64/guest.py": "runs alone inside the QEMU guest, where deploytool's runtime layer is not installed",
    "bench/worker.py": "reads ORT's version for its result record (its sessions come from runtime/)",
    "qnn/ep.py": "the QNN execution provider's plugin and build info (onnxruntime-qnn)",
    "qnn/quantize.py": "ORT's QNN QDQ quantizer and its fixed-shape tools",
    "qnn/target.py": "ORT's QuantType names for the QNN targets",
    "testing/conformance.py": "ORT's optimizer levels are one axis of the conformance matrix's inputs",
}


def _ort_importers() -> set[str]:
    """Files of the package (relative paths) with an import of onnxruntime, at any nesting level."""
    return {path.relative_to(PKG).as_posix() for path in sorted(PKG.rglob("*.py"))
            if any(m == "onnxruntime" or m.startswith("onnxruntime.") for m in _imports(path, package=None))}


def test_onnxruntime_is_imported_in_the_runtime_layer_only():
    """The passes (and every part below runtime) reach ONNX Runtime through ``deploytool.runtime``; any other
    importer is listed above with its reason, and the list holds no file that no longer imports it."""
    found = _ort_importers()
    assert found, "the reader finds onnxruntime imports (runtime/ has them)"
    outside = sorted(f for f in found if not f.startswith("runtime/") and f not in KNOWN_ONNXRUNTIME_IMPORTS)
    assert outside == [], f"onnxruntime imported outside deploytool/runtime: {outside}"
    assert not [f for f in found if f.startswith("passes/")]
    stale = sorted(set(KNOWN_ONNXRUNTIME_IMPORTS) - found)
    assert stale == [], f"no longer import onnxruntime: remove {stale} from KNOWN_ONNXRUNTIME_IMPORTS"


def test_the_flow_check_sees_lazy_imports(tmp_path):
    """The reader finds an import inside a function, and the rule would flag a lower part importing a
    higher one (the check is not vacuous)."""
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from deploytool.report.build import build_report\n    import deploytool.cli\n")
    assert _imports(f) == {"deploytool.report.build", "deploytool.cli"}
    assert _against("graph", "report") and _against("passes", "cli")
    assert not _against("report", "graph") and not _against("cli", "passes")


# module-level cycles (lazy imports included) still there: the modules, and what removes the cycle
KNOWN_MODULE_CYCLES = {
}


def _module_graph() -> dict[str, set[str]]:
    """deploytool module -> the deploytool modules it imports (any nesting level). A package's own
    ``__init__`` re-exporting its submodules is not counted against them."""
    files = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("").parts
        files[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = path
    graph = {}
    for mod, path in files.items():
        out = set()
        for name in _imports(path):
            while name and name not in files:  # ``from deploytool.x import y``: y a name, not a module
                name = name.rpartition(".")[0]
            if name and name != mod and not mod.startswith(name + "."):
                out.add(name)
        graph[mod] = out
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    cycles = _cycles(_module_graph())
    assert [sorted(c) for c in cycles if c not in KNOWN_MODULE_CYCLES] == []
    assert [sorted(c) for c in KNOWN_MODULE_CYCLES if c not in cycles] == [], "cycle gone: remove it from the list"


def test_graph_structure_and_finder_import_one_way():
    g = PKG / "graph"
    assert "deploytool.graph.structure" not in _imports(g / "finder.py")
    assert "deploytool.graph.finder" not in _imports(g / "roles.py")
    assert "deploytool.graph.structure" not in _imports(g / "roles.py")


def test_every_module_imports_in_a_fresh_process():
    mods = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        if name != "deploytool.__main__":  # runs the CLI
            mods.append(name)
    code = ("import importlib, json, sys\nbad = {}\n"
            f"for m in {mods!r}:\n"
            "    try:\n        importlib.import_module(m)\n"
            "    except Exception as e:\n        bad[m] = f'{type(e).__name__}: {e}'\n"
            "print(json.dumps(bad))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         cwd=PKG.parent)
    assert res.returncode == 0, res.stderr[-2000:]
    bad = json.loads(res.stdout.strip().splitlines()[-1])
    assert bad == {}, bad
    assert len(mods) > 100  # the walk found the package


def test_no_module_shadows_a_standard_library_module():
    clash = sorted(p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py")
                   if p.stem in sys.stdlib_module_names)
    assert clash == []


@pytest.mark.parametrize("package", ["deploytool", "deploytool.train", "deploytool.report", "deploytool.graph",
                                     "deploytool.runtime", "deploytool.passes", "deploytool.bench"])
def test_a_public_name_is_never_also_a_submodule(package):
    """``deploytool.train.finetune`` was the function or the module depending on import order: a
    package's public names and its submodules' names must not meet. Asked in a fresh process, before any
    submodule is imported."""
    code = ("import importlib, json, pkgutil, types\n"
            f"p = importlib.import_module({package!r})\n"
            "names = list(getattr(p, '__all__', []))\n"
            "subs = {m.name for m in pkgutil.iter_modules(p.__path__)}\n"
            "print(json.dumps(sorted(n for n in names if n in subs)))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=PKG.parent)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []


def test_train_finetune_is_the_module_whatever_was_imported_first():
    code = ("import json, types, deploytool.train as t\n"
            "before = isinstance(t.finetune, types.ModuleType)\n"
            "import deploytool.train.finetune\n"
            "after = isinstance(t.finetune, types.ModuleType)\n"
            "print(json.dumps([before, after, t.finetune_model is t.finetune.finetune]))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=PKG.parent)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == [True, True, True]


# ------------------------------------------------------------------------- tests/ mirrors the package
#
# The rule (README "Layout"): a test of a subpackage ``deploytool/P/`` lives in ``tests/P/`` (any name);
# a test of a top-level module ``deploytool/M.py`` lives in ``tests/`` itself, named ``test_M.py`` or
# ``test_M_<what>.py``. A test that drives one part through its command stays with that part; a test of
# the command line itself (grammar, the group, bad input to a command) is a test of ``cli/``. Beside
# these: the folders and root files below, each saying what it holds. One folder deep; basenames unique
# (no ``__init__.py`` in tests/: pytest imports a test file by its basename, its folder put on sys.path).
TESTS = Path(__file__).resolve().parent
CROSS_CUTTING_FOLDERS = {
    "e2e": "a model taken end to end through several parts (export, every pass, the CLI, bench)",
}
WHOLE_PACKAGE_TESTS = {
    "test_layout.py": "the package's layout and this mirror",
    "test_public_api.py": "deploytool/__init__.py: the curated public API",
    "test_readme_figures.py": "the README's figures against benchmarks/results",
    "test_speed_check.py": "benchmarks/speed_check.py: a pass_speed run against the last committed one",
    "test_scripts.py": "scripts/setup_env.sh and scripts/test.sh: the README's set-up and test command",
}


def _subpackages() -> set[str]:
    return {p for p in FLOW if (PKG / p / "__init__.py").exists()}


def _top_modules() -> set[str]:
    return {p for p in FLOW if (PKG / f"{p}.py").exists() and p != "__main__"}


def _named_for(stem: str, names: set[str]) -> str | None:
    """The longest of ``names`` that ``test_<name>`` or ``test_<name>_...`` names."""
    stem = stem.removeprefix("test_")
    hits = [n for n in names if stem == n or stem.startswith(n + "_")]
    return max(hits, key=len) if hits else None


def misplaced_tests(tests: Path, subpackages: set[str], modules: set[str]) -> list[str]:
    """Every test file (``test_*.py``, ``*_test.py``) under ``tests`` that breaks the mirror, with why."""
    out = []
    files = sorted(p for p in tests.rglob("*.py") if p.name.startswith("test_") or p.name.endswith("_test.py"))
    for path in files:
        rel = path.relative_to(tests)
        if not path.name.startswith("test_"):
            out.append(f"{rel.as_posix()}: name test files test_<what>.py")
        elif len(rel.parts) > 2:
            out.append(f"{rel.as_posix()}: one folder deep only (tests/<part>/test_*.py)")
        elif len(rel.parts) == 2 and rel.parts[0] not in subpackages | set(CROSS_CUTTING_FOLDERS):
            out.append(f"{rel.as_posix()}: tests/{rel.parts[0]}/ is neither a subpackage of deploytool "
                       f"({', '.join(sorted(subpackages))}) nor one of {sorted(CROSS_CUTTING_FOLDERS)}")
        elif len(rel.parts) == 1 and path.name not in WHOLE_PACKAGE_TESTS and not _named_for(path.stem, modules):
            sub = _named_for(path.stem, subpackages)
            out.append(f"{rel.as_posix()}: " + (f"move it to tests/{sub}/" if sub else
                       "at the root, name it test_<module>[_what].py for a top-level module of deploytool "
                       f"({', '.join(sorted(modules))}), or put it in the folder of the part it tests"))
    seen: dict[str, str] = {}
    for path in files:
        rel = path.relative_to(tests).as_posix()
        if path.name in seen:
            out.append(f"{rel}: same basename as {seen[path.name]} (pytest imports test files by basename)")
        seen.setdefault(path.name, rel)
    return out


def test_every_test_file_sits_in_the_folder_of_the_part_it_tests():
    bad = misplaced_tests(TESTS, _subpackages(), _top_modules())
    assert bad == [], "tests/ must mirror deploytool/ (tests/test_layout.py, README 'Layout'):\n" + "\n".join(bad)
    assert not list(TESTS.rglob("__init__.py")), "tests/ has no packages: basenames stay unique instead"
    assert len(list(TESTS.rglob("test_*.py"))) > 50  # the walk found the suite


def test_the_mirror_check_flags_misplaced_files(tmp_path):
    """The rule on a tree written here: each kind of misplacement is named, the good places are not."""
    for rel in ["passes/test_slicing.py", "e2e/test_real.py", "test_fit.py", "test_fit_pack_runtime.py",
                "test_layout.py", "passes/helpers.py",  # good (a helper module is not a test file)
                "utils/test_misc.py", "test_slice.py", "test_passes_extra.py", "passes/deep/test_x.py",
                "runtime/test_fit.py", "report/check_test.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    bad = misplaced_tests(tmp_path, {"passes", "runtime", "report"}, {"fit", "variant"})
    assert [b.split(":")[0] for b in bad] == [
        "passes/deep/test_x.py", "report/check_test.py", "test_passes_extra.py", "test_slice.py",
        "utils/test_misc.py", "test_fit.py"], bad
    assert "move it to tests/passes/" in bad[2] and "name it test_<module>" in bad[3]
    assert bad[-1] == "test_fit.py: same basename as runtime/test_fit.py (pytest imports test files by basename)"


def test_the_cross_cutting_places_are_few_and_not_parts():
    parts = _subpackages() | _top_modules()
    assert not set(CROSS_CUTTING_FOLDERS) & parts
    assert all((TESTS / name).exists() for name in WHOLE_PACKAGE_TESTS)
    assert all((TESTS / folder).is_dir() for folder in CROSS_CUTTING_FOLDERS)


def test_paths_that_name_test_files_exist():
    """README, scripts, benchmarks, the package and the tests name test files by path: each must exist."""
    root = PKG.parent
    sources = [root / "README.md", *root.glob("scripts/*.sh"), *root.glob(".ci/*"), *root.glob("benchmarks/*.py"),
               *PKG.rglob("*.py"), *TESTS.rglob("*.py")]
    stale = sorted({f"{src.relative_to(root).as_posix()}: {m}" for src in sources if src.is_file()
                    for m in re.findall(r"\btests/[\w/]*test_\w+\.py", src.read_text(errors="replace"))
                    if not (root / m).exists()})
    assert stale == []
