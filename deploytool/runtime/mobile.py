"""ONNX Runtime's mobile format: ``.onnx`` -> ``.ort`` and ``required_operators.config`` (the op list a
reduced ONNX Runtime Mobile build needs), through ``onnxruntime.tools.convert_onnx_models_to_ort``; and
running an ``.ort`` file on this host to record its outputs.

Optimization style: ``fixed`` bakes ONNX Runtime's graph optimizations into the file (what the CPU EP
runs); ``runtime`` stores them to be replayed only where the CPU EP takes the nodes, so nodes stay
plain for XNNPACK/NNAPI/CoreML/QNN to claim (ONNX Runtime's guidance for those EPs). A ``runtime``
file needs the session config ``session.enable_saved_runtime_optimizations=1`` to replay them.
"""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from deploytool import scratch
from deploytool.errors import DeployError, UnavailableError
from deploytool.quiet_logs import held_stdout, quiet_logs

logger = logging.getLogger(__name__)

__all__ = ["RUNTIME_OPT_CONFIG", "convert_to_ort", "run_ort", "signature"]

RUNTIME_OPT_CONFIG = {"session.enable_saved_runtime_optimizations": "1"}


def convert_to_ort(model: Path, data_files: list[Path], out_dir: Path, *, style: str, stem: str = "model",
                   target_platform: str = "arm") -> tuple[Path, Path]:
    """Convert ``model`` (with its external-data files) to ``out_dir/<stem>.ort`` and
    ``out_dir/required_operators.config``; returns both paths."""
    try:
        # its import runs logging.basicConfig(): the root logger has a handler meanwhile, so that it configures
        # nothing (the program's own basicConfig() later was a no-op)
        with quiet_logs(root=True):
            from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort
    except ImportError as e:
        raise UnavailableError(f"onnxruntime.tools cannot convert to the ORT format here ({e})") from None
    # the tool's module logger is set to DEBUG at import; its progress is not ours to print
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    opt = {"fixed": OptimizationStyle.Fixed, "runtime": OptimizationStyle.Runtime}[style]
    with scratch.temporary_directory("deploytool-ort-") as tmp:
        src_dir, dst = Path(tmp, "src"), Path(tmp, "out")
        src_dir.mkdir()
        src = src_dir / f"{stem}.onnx"
        shutil.copy(model, src)
        base = Path(model).resolve().parent
        for d in data_files:  # external data keeps its path beside the model: the model refers to it by that path
            rel = Path(d).resolve().relative_to(base) if Path(d).resolve().is_relative_to(base) else Path(d.name)
            (src_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(d, src_dir / rel)
        log = io.StringIO()
        try:
            with held_stdout(log):  # the tool prints its progress (other threads' prints are theirs)
                convert_onnx_models_to_ort(src, output_dir=dst, optimization_styles=[opt],
                                           target_platform=target_platform)
        except Exception as e:  # the tool raises plain exceptions (RuntimeError, FileNotFoundError)
            raise DeployError(f"{model}: ONNX Runtime cannot convert it to the ORT format "
                              f"({type(e).__name__}: {' '.join(str(e).split())[:300]})") from e
        orts = sorted(dst.glob("*.ort"))
        configs = sorted(dst.glob("*.config"))
        if len(orts) != 1 or len(configs) != 1:
            raise DeployError(f"{model}: the ORT conversion wrote {[p.name for p in dst.iterdir()]}, expected one "
                              ".ort and one .config (log: {log.getvalue().strip()[-200:]})")
        out_dir.mkdir(parents=True, exist_ok=True)
        ort_path, cfg_path = out_dir / f"{stem}.ort", out_dir / "required_operators.config"
        shutil.move(str(orts[0]), ort_path)
        # the tool names the temporary files it read; name the file that ships instead
        lines = configs[0].read_text().splitlines()
        body = [ln for ln in lines if not ln.startswith("# - ")]
        at = next((i + 1 for i, ln in enumerate(body) if ln.startswith("# Generated from")), 0)
        body[at:at] = [f"# - {ort_path.name} (deploytool bundle, {style} optimizations)"]
        cfg_path.write_text("\n".join(body) + "\n")
    return ort_path, cfg_path


def run_ort(path: Path, feeds: dict[str, np.ndarray], *, config_entries: dict[str, str] | None = None,
            threads: int = 1) -> dict[str, np.ndarray]:
    """Run an ``.ort`` (or ``.onnx``) file once on this host's CPU EP; outputs by name."""
    from deploytool.runtime.session import _ort

    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 4  # ORT's own error log would repeat the DeployError we raise, as a second stderr line
    for k, v in (config_entries or {}).items():
        so.add_session_config_entry(k, v)
    try:
        sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds)))
    except Exception as e:  # onnxruntime's own exception types
        raise DeployError(f"{path}: ONNX Runtime cannot run it ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:300]})") from e


def signature(path: Path) -> dict[str, Any]:
    """Inputs and outputs of a model file as ONNX Runtime sees them (name, type, shape with symbolic dims)."""
    from deploytool.runtime.session import _ort

    ort = _ort()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def one(a):
        return {"name": a.name, "type": a.type, "shape": [d if isinstance(d, int) else str(d) for d in a.shape]}

    return {"inputs": [one(a) for a in sess.get_inputs()], "outputs": [one(a) for a in sess.get_outputs()]}
