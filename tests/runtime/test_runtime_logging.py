"""The runtime layer called from a program: ONNX Runtime's tools leave the program's logging set-up alone."""

from __future__ import annotations

import subprocess
import sys

_CHECK = r"""
import logging, sys
from pathlib import Path
from deploytool.runtime.mobile import convert_to_ort
out = Path(sys.argv[2])
out.mkdir()
convert_to_ort(Path(sys.argv[1]), [], out, style="fixed")
print(len(logging.getLogger().handlers), (out / "model.ort").is_file())
"""


def test_converting_to_the_ort_format_configures_no_root_logger(tiny_onnx, tmp_path):
    """onnxruntime.tools' converter runs logging.basicConfig() as it is imported: a bundle made from a program left
    its root logger with a handler (the program's own basicConfig() after it did nothing)."""
    src = tiny_onnx("bert", "torch", layers=2)
    p = subprocess.run([sys.executable, "-c", _CHECK, str(src), str(tmp_path / "ort")], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["0", "True"]
