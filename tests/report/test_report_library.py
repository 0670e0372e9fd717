"""build_report called from a program or a notebook: the program's matplotlib is left as it was."""

from __future__ import annotations

import subprocess
import sys

_CHECK = r"""
import sys
import matplotlib
matplotlib.use("svg")                     # the program's backend (a notebook's inline one, say)
import matplotlib.pyplot as plt
plt.figure()                              # a figure the program has open
import deploytool as dt
dt.build_report(dt.ReportConfig(results=(sys.argv[1],), out_dir=sys.argv[2]))
print(matplotlib.get_backend(), plt.get_fignums())
"""


def test_build_report_leaves_the_programs_backend_and_figures(tiny_onnx, tmp_path):
    """The plots called matplotlib.use("Agg") and drew through pyplot: a notebook's backend became Agg (its plots
    showed no more) and the program's open figures were closed by the switch."""
    from deploytool.bench import BenchConfig, run_benchmark, write_json

    src = tiny_onnx("bert", "torch", layers=2)
    write_json(run_benchmark(BenchConfig(models=(src,), seq_lens=(8,), runs=3, warmup=1)), tmp_path / "b.json")
    p = subprocess.run([sys.executable, "-c", _CHECK, str(tmp_path / "b.json"), str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["svg", "[1]"]
    assert (tmp_path / "r" / "latency_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
