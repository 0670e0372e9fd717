"""Defer sympy: onnx_ir imports it (about 0.5 s, half of a pass process's imports) for symbolic-dimension
arithmetic that deploytool never does.

``defer_sympy()`` puts two stand-ins in ``sys.modules``: ``sympy`` and ``onnx_ir._symbolic_shapes`` (the one
onnx_ir module that reads sympy at import time). A stand-in carries the module's spec and nothing else; the
first attribute it lacks (``sympy.Symbol``), or the first import of a submodule (``import sympy.core``),
executes the real module into it, so any code that does use sympy (torch, onnx_ir's ``SymbolicDim``
arithmetic, a user's own) gets the full module, only later. (The standard library's ``LazyLoader`` cannot do
this on Python 3.11: the import statement reads ``__spec__``, which loads it at once.)

Nothing is done when sympy or onnx_ir is already imported, when either cannot be found, or when told
``eager=True`` (``import deploytool`` passes ``DEPLOYTOOL_EAGER_IMPORTS=1`` as that, read by
:mod:`deploytool.settings`); any surprise leaves the normal import in place.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types

_LOCK = threading.RLock()
_DONE = False


class _Deferred(types.ModuleType):
    """A module whose code runs on the first attribute it does not have yet."""

    def __getattr__(self, attr: str):
        if not _load(self):
            raise AttributeError(f"partially initialized module {self.__name__!r} has no attribute {attr!r}")
        return getattr(self, attr)


_EXECUTING: set[int] = set()  # ids of the stand-ins whose code runs now (in the thread holding _LOCK)


def _load(module: types.ModuleType) -> bool:
    """Run the stand-in's code; False when this thread is running it already (a partial module, as any module
    being imported). Another thread waits here until the code has run: it stays a stand-in meanwhile, so that
    thread's first attribute comes here too, not an AttributeError of a half-executed module."""
    with _LOCK:
        if type(module) is not _Deferred:
            return True
        if id(module) in _EXECUTING:
            return False
        _EXECUTING.add(id(module))
        try:
            module.__spec__.loader.exec_module(module)
        finally:
            _EXECUTING.discard(id(module))
            module.__class__ = types.ModuleType  # a plain module from here on (also when its code failed)
    return True


class _Existing(importlib.abc.Loader):
    """Hands the import system a module that the parent's code has just imported, unchanged."""

    def __init__(self, module: types.ModuleType):
        self.module, self.spec, self.loader = module, module.__spec__, module.__loader__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        module.__spec__, module.__loader__ = self.spec, self.loader  # module_from_spec set ours


class _ParentFirst(importlib.abc.MetaPathFinder):
    """``import sympy.core`` before any ``sympy.X`` access: run the deferred package first. Its code may import
    the very submodule asked for (the import system had already decided to load it): that one is handed back
    as it is, never executed twice."""

    def find_spec(self, fullname, path=None, target=None):
        head = fullname.partition(".")[0]
        if head == fullname or head not in _DEFERRED:
            return None
        parent = sys.modules.get(head)
        if parent is None or type(parent) is not _Deferred:
            return None
        # another thread running the parent's code may need this very import's module lock, held by this
        # thread now: waiting for it would never end. The import system's own handling applies instead
        if not _LOCK.acquire(blocking=False):
            return None
        try:
            if not _load(parent):  # this thread runs the parent's code, which imports its submodules as usual
                return None
        finally:
            _LOCK.release()
        done = sys.modules.get(fullname)
        if done is None or getattr(done, "__spec__", None) is None:
            return None
        # the import system would take the finished module's own spec and execute it a second time, into a
        # new module object; out of sys.modules for a moment, the spec below hands the finished one back
        del sys.modules[fullname]
        return importlib.machinery.ModuleSpec(fullname, _Existing(done), origin=done.__spec__.origin,
                                              is_package=done.__spec__.submodule_search_locations is not None)


_DEFERRED = ("sympy",)


def _install(name: str, spec) -> None:
    module = _Deferred(name)
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__file__ = spec.origin
    if spec.submodule_search_locations is not None:
        module.__path__ = list(spec.submodule_search_locations)
    if "." in name:
        module.__package__ = name.rpartition(".")[0]
    else:
        module.__package__ = name if spec.submodule_search_locations is not None else ""
    sys.modules[name] = module


def defer_sympy(*, eager: bool = False) -> bool:
    """Make ``sympy`` (and onnx_ir's module that reads it at import) load on first use; True when done.
    ``eager``: do nothing (the normal import)."""
    global _DONE
    with _LOCK:
        if _DONE:
            return True
        if eager or "sympy" in sys.modules or "onnx_ir" in sys.modules:
            return False
        try:
            sympy_spec = importlib.machinery.PathFinder.find_spec("sympy")
            ir_spec = importlib.machinery.PathFinder.find_spec("onnx_ir")
            if sympy_spec is None or ir_spec is None or ir_spec.submodule_search_locations is None:
                return False
            shapes_spec = importlib.machinery.PathFinder.find_spec(
                "onnx_ir._symbolic_shapes", list(ir_spec.submodule_search_locations))
            if shapes_spec is None or shapes_spec.loader is None or sympy_spec.loader is None:
                return False
            _install("sympy", sympy_spec)
            _install("onnx_ir._symbolic_shapes", shapes_spec)
            sys.meta_path.insert(0, _ParentFirst())
        except Exception:  # noqa: BLE001 - an optimisation only: fall back to the normal import
            for name in ("sympy", "onnx_ir._symbolic_shapes"):
                if type(sys.modules.get(name)) is _Deferred:
                    del sys.modules[name]
            return False
        _DONE = True
        return True
