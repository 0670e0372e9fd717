"""QNN results as device-report rows, to show beside the CPU rows.

Shape (``kind: deploytool.device_rows``, version 1)::

    {"kind": "deploytool.device_rows", "version": 1,
     "rows": [{"model": "minilm.onnx", "device": "snapdragon-sm8650", "engine": "QNN HTP v75 (SM8650)",
               "provider": "QNNExecutionProvider", "precision": "u16/u8", "seq_len": 128,
               "emulated": true, "label": "EMULATED", "latency_ms": null,
               "coverage": "512/513", "fraction_on_npu": 0.998, "strict": true,
               "max_abs_err_vs_fp32": 0.04, "min_cosine_vs_fp32": 0.999, "task_accuracy": null,
               "binary_bytes": 7300000, "note": "..."}]}

``latency_ms`` is null for every emulated row: the x86 emulator's timings are not device latency.
"""

from __future__ import annotations

import json
from pathlib import Path

from deploytool.onnx_io import atomic_write

__all__ = ["ROWS_KIND", "check_row", "compile_row", "write_rows"]

ROWS_KIND = "deploytool.device_rows"


def _base(target: dict, model: str, precision: str, seq_len: int, emulated: bool) -> dict:
    return {"model": Path(model).name, "device": target.get("profile") or target["soc_name"],
            "engine": f"QNN HTP {target['htp_arch']} ({target['soc_name']})", "provider": "QNNExecutionProvider",
            "precision": precision, "seq_len": seq_len, "emulated": emulated,
            "label": "EMULATED" if emulated else "device", "latency_ms": None}


def check_row(report: dict) -> dict:
    """One row from a ``deploytool.qnn.check`` report (its ``to_dict()``)."""
    cov = report["coverage"]
    acc = report["accuracy"].get("htp_vs_fp32") or {}
    task = report.get("task_accuracy")
    row = _base(report["target"], report["model"], report["precision"], report["seq_len"], report["emulated"])
    row.update({"coverage": f"{cov['qnn_nodes']}/{cov['total_nodes']}", "fraction_on_npu": cov["fraction_on_qnn"],
                "cpu_fallback_nodes": cov["cpu_fallback_nodes"], "strict": report["strict"]["passed"],
                "max_abs_err_vs_fp32": acc.get("max_abs"), "min_cosine_vs_fp32": acc.get("min_cosine"),
                "task_accuracy": None if not task else task["htp"], "binary_bytes": None,
                "note": "coverage and numerics from the x86 HTP emulator; no device latency" if report["emulated"]
                else ""})
    return row


def compile_row(report: dict) -> dict:
    """One row from a ``deploytool.qnn.compile`` report."""
    row = _base(report["target"], report["model"], report["precision"], report["seq_len"], report["emulated"])
    row.update({"coverage": None, "fraction_on_npu": 1.0, "strict": True, "max_abs_err_vs_fp32": None,
                "min_cosine_vs_fp32": None, "task_accuracy": None, "binary_bytes": report["context_binary_bytes"],
                "note": f"context binary for {report['target']['soc_name']} compiled with QNN SDK "
                        f"{report['sdk']['qnn_sdk']}"})
    return row


def write_rows(path: str | Path, rows: list[dict]) -> Path:
    """Write rows atomically in the ``deploytool.device_rows`` shape."""
    with atomic_write(path) as f:
        json.dump({"kind": ROWS_KIND, "version": 1, "rows": rows}, f, indent=2)
        f.write("\n")
    return Path(path)
