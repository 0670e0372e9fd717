"""deploytool defers sympy (imported by onnx_ir, unused by deploytool): it must stay unloaded through a pass
process's imports, and load in full, unchanged, for whoever does use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = r"""
import json, sys, time
t = time.perf_counter()
import deploytool.passes as p
p.pass_table()
import onnx_ir
out = {"import_s": time.perf_counter() - t, "sympy_before": type(sys.modules.get("sympy")).__name__}
d = onnx_ir.SymbolicDim("N")
out["arith"] = str((d * 2 + 1) // 2)
out["sympy_after"] = type(sys.modules["sympy"]).__name__
import sympy
out["solve"] = str(sympy.solve(sympy.Symbol("x") ** 2 - 4))
print(json.dumps(out))
"""


def _run(code: str, eager: bool) -> dict:
    env = dict(os.environ)
    env.pop("DEPLOYTOOL_EAGER_IMPORTS", None)
    if eager:
        env["DEPLOYTOOL_EAGER_IMPORTS"] = "1"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_sympy_waits_until_used_and_then_behaves_as_eager():
    lazy = _run(PROBE, eager=False)
    eager = _run(PROBE, eager=True)
    assert lazy["sympy_before"] == "_Deferred"  # imports of the pass table did not execute sympy
    assert eager["sympy_before"] == "module"  # the switch restores the normal import
    assert lazy["sympy_after"] == "module"  # first use loaded the real module into the stand-in
    assert lazy["arith"] == eager["arith"]
    assert lazy["solve"] == eager["solve"] == "[-2, 2]"


def test_submodule_first_then_package_and_torch():
    code = r"""
import json, sys
import deploytool.graph
import sympy.core.numbers as n          # a submodule before any attribute of the package
three = str(n.Integer(3))
import sympy
x = sympy.Symbol("x")
import torch                             # torch imports sympy for its own symbolic shapes
from torch.utils._sympy.functions import FloorDiv
print(json.dumps({"three": three, "expr": str(sympy.expand((x + 1) ** 2)),
                  "floordiv": str(FloorDiv(sympy.Symbol("s"), 2)), "type": type(sys.modules["sympy"]).__name__}))
"""
    out = _run(code, eager=False)
    assert out == {"three": "3", "expr": "x**2 + 2*x + 1", "floordiv": "(s//2)", "type": "module"}


def test_a_second_thread_waits_for_the_first_threads_load():
    """Thread A's first sympy attribute runs sympy's code (about 0.5 s); thread B using sympy meanwhile got
    "module 'sympy' has no attribute 'Integer'": the stand-in was a plain, half-executed module from A's start."""
    code = r"""
import json, sys, threading, time
import deploytool.graph
import sympy
errors = []
def first():
    sympy.Symbol("x")
def second():
    try:
        errors.append(str(sympy.Integer(3)))
    except AttributeError as e:
        errors.append(repr(e))
a, b = threading.Thread(target=first), threading.Thread(target=second)
a.start(); time.sleep(0.01); b.start(); a.join(); b.join()
print(json.dumps({"second": errors, "type": type(sys.modules["sympy"]).__name__}))
"""
    assert _run(code, eager=False) == {"second": ["3"], "type": "module"}
