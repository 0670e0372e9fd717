"""QNN results as device-report rows, to show beside the CPU rows.

Shape (``kind: deploytool.device_rows``, version 1). The first keys are the ones
:class:`deploytool.report.rows.ReportRow` uses for CPU rows, so a report can put both in one table;
the ``qnn_*`` keys are QNN's own::

    {"kind": "deploytool.device_rows", "version": 1,
     "rows": [{"device": "snapdragon-sm8650", "soc": "SM8650", "model": "minilm.onnx", "model_path": "...",
               "precision": "u16/u8", "seq_len": 128, "ep_requested": "QNNExecutionProvider",
               "ep_ran": "QNNExecutionProvider (HTP v75, EMULATED)", "ep_note": "", "measured_on": "x86_64",
               "p50_ms": null, "p90_ms": null, "size_mb": 35.9, "accuracy": null,
               "device_latency_ms": null, "device_latency_source": "n/a: EMULATED ...",
               "emulated": true, "label": "EMULATED", "qnn_coverage": "739/740", "qnn_fraction_on_npu": 0.9986,
               "qnn_cpu_fallback_nodes": 0, "qnn_strict": true, "qnn_max_abs_err_vs_fp32": 0.45,
               "qnn_min_cosine_vs_fp32": 0.999, "qnn_binary_bytes": 35920000, "note": "..."}]}

Every latency is null on an emulated row: the x86 emulator's timings are not device latency.
"""

from __future__ import annotations

import json
from pathlib import Path

from deploytool.onnx_io import atomic_write

__all__ = ["ROWS_KIND", "check_row", "compile_row", "write_rows"]

ROWS_KIND = "deploytool.device_rows"


def _base(target: dict, model: str, precision: str, seq_len: int, emulated: bool) -> dict:
    import platform

    arch = target["htp_arch"]
    return {"device": target.get("profile") or target["soc_name"], "soc": target["soc_name"],
            "model": Path(model).name, "model_path": str(model), "precision": precision, "seq_len": seq_len,
            "ep_requested": "QNNExecutionProvider",
            "ep_ran": f"QNNExecutionProvider (HTP {arch}{', EMULATED' if emulated else ''})", "ep_note": "",
            "measured_on": platform.machine(), "p50_ms": None, "p90_ms": None, "size_mb": None, "accuracy": None,
            "device_latency_ms": None,
            "device_latency_source": "n/a: EMULATED (x86 HTP emulator: coverage and numerics only)" if emulated
            else "n/a (not timed)",
            "emulated": emulated, "label": "EMULATED" if emulated else "device"}


def check_row(report: dict) -> dict:
    """One row from a ``deploytool.qnn.check`` report (its ``to_dict()``)."""
    cov = report["coverage"]
    # unpadded tokens where the output has a token axis (what pooling reads), else the whole output
    acc = report["accuracy"].get("htp_vs_fp32_real_tokens") or report["accuracy"].get("htp_vs_fp32") or {}
    task = report.get("task_accuracy")
    row = _base(report["target"], report["model"], report["precision"], report["seq_len"], report["emulated"])
    fallback = cov["cpu_fallback_nodes"]
    row.update({"ep_note": f"{fallback} node(s) fall back to the CPU EP" if fallback else "",
                "accuracy": None if not task else round(100 * task["htp"], 2),
                "qnn_coverage": f"{cov['qnn_nodes']}/{cov['total_nodes']}",
                "qnn_fraction_on_npu": cov["fraction_on_qnn"], "qnn_cpu_fallback_nodes": fallback,
                "qnn_strict": report["strict"]["passed"], "qnn_max_abs_err_vs_fp32": acc.get("max_abs"),
                "qnn_min_cosine_vs_fp32": acc.get("min_cosine"), "qnn_binary_bytes": None,
                "note": "coverage and numerics from the x86 HTP emulator; no device latency" if report["emulated"]
                else ""})
    return row


def compile_row(report: dict) -> dict:
    """One row from a ``deploytool.qnn.compile`` report."""
    row = _base(report["target"], report["model"], report["precision"], report["seq_len"], report["emulated"])
    row.update({"size_mb": round(report["context_binary_bytes"] / 1e6, 3), "qnn_coverage": None,
                "qnn_fraction_on_npu": 1.0, "qnn_cpu_fallback_nodes": 0, "qnn_strict": True,
                "qnn_max_abs_err_vs_fp32": None, "qnn_min_cosine_vs_fp32": None,
                "qnn_binary_bytes": report["context_binary_bytes"],
                "note": f"context binary for {report['target']['soc_name']} (HTP {report['target']['htp_arch']}) "
                        f"compiled with QNN SDK {report['sdk']['qnn_sdk']}"})
    return row


def write_rows(path: str | Path, rows: list[dict]) -> Path:
    """Write rows atomically in the ``deploytool.device_rows`` shape."""
    with atomic_write(path) as f:
        json.dump({"kind": ROWS_KIND, "version": 1, "rows": rows}, f, indent=2)
        f.write("\n")
    return Path(path)
