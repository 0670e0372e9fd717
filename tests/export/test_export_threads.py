"""export_loaded / export_model from several threads of one program (a thread pool exporting a few models)."""

from __future__ import annotations

import subprocess
import sys

_CHECK = r"""
import json, os, sys, threading
from deploytool.testing.tiny import tiny_model
from deploytool.export import ExportConfig, export_loaded
models = [tiny_model("bert", layers=2, seed=i) for i in range(3)]
before = [os.fstat(fd).st_ino for fd in (1, 2)]
errors = []
def go(i):
    try:
        export_loaded(models[i], os.path.join(sys.argv[1], f"m{i}.onnx"), ExportConfig(model="tiny-bert"))
    except Exception as e:
        errors.append(str(e))
threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
after = [os.fstat(fd).st_ino for fd in (1, 2)]
with open(sys.argv[2], "w") as f:   # not stdout: before the fix, descriptor 1 could point at a deleted temp file
    json.dump({"errors": errors, "same_fds": before == after}, f)
"""


def test_exports_in_threads_succeed_and_leave_stdout_and_stderr(tmp_path):
    """torch's TorchScript exporter keeps its state in module globals: exports in two threads at once failed
    ("GLOBALS.in_onnx_export must be True"). The held output swapped descriptors 1 and 2 per export; two at once
    restored each other's temporary files, and the process's output went into a deleted file from then on."""
    import json

    out = tmp_path / "out.json"
    p = subprocess.run([sys.executable, "-c", _CHECK, str(tmp_path), str(out)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(out.read_text()) == {"errors": [], "same_fds": True}
    assert sorted(f.name for f in tmp_path.glob("m*.onnx")) == ["m0.onnx", "m1.onnx", "m2.onnx"]


def test_models_loaded_in_threads_put_back_the_programs_stdout(tiny_hf_folder, monkeypatch):
    """Loading a folder swapped sys.stdout with contextlib.redirect_stdout: two loads at once (the first to start
    ending first) left sys.stdout the second's StringIO, and every later print() of the program went nowhere."""
    import threading
    import time

    import transformers

    from deploytool.errors import DeployError
    from deploytool.export.hf import load_hf_model

    folder = tiny_hf_folder("bert", layers=2)
    met = threading.Barrier(2, timeout=5.0)
    order: list[str] = []

    def from_pretrained(*args, **kwargs):
        order.append(threading.current_thread().name)
        met.wait()
        if order.index(threading.current_thread().name) == 1:
            time.sleep(0.2)  # the second to start ends last
        raise RuntimeError("not loaded here")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", from_pretrained)
    mine = sys.stdout
    errors: list[BaseException] = []

    def load():
        try:
            load_hf_model(folder)
        except DeployError as e:
            errors.append(e)

    threads = [threading.Thread(target=load, name=f"load{i}") for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(errors) == 2 and all("not loaded here" in str(e) for e in errors)
    assert sys.stdout is mine
