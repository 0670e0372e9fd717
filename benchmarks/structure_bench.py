"""How long the structure finder and ``inspect`` take on real-sized encoders.

    .venv/bin/python benchmarks/structure_bench.py [--repeat 5] [--bert-base] [-o benchmarks/results/structure_bench.json]

Exports all-MiniLM-L6-v2 (6 layers, hidden 384) with the TorchScript and dynamo exporters into a
temporary folder, fuses the TorchScript export with ORT's BERT optimizer, and times on each graph:
loading (``onnx_io.load_model``), ``find_structure`` (median of --repeat calls on the loaded
model) and ``inspect_loaded``. ``--bert-base`` adds a random 12-layer BERT-base-sized model
(hidden 768, 12 heads, FFN 3072; about 440 MB per file, slow to export). Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parents[1]


def _time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _measure(path: Path, repeat: int) -> dict:
    from deploytool import onnx_io
    from deploytool.graph import find_structure
    from deploytool.inspection import inspect_loaded

    load_s, model = _time(lambda: onnx_io.load_model(path), 1)
    find_s, s = _time(lambda: find_structure(model), repeat)
    inspect_s, r = _time(lambda: inspect_loaded(model, seq_len=128, path=path), 1)
    return {"file_mb": round(path.stat().st_size / 1e6, 1), "nodes": len(model.graph), "layers": s.num_layers,
            "heads": s.layers[0].attention.num_heads, "exporter_guess": s.exporter,
            "load_s": round(load_s, 3), "find_structure_ms": round(find_s * 1000, 2),
            "inspect_s": round(inspect_s, 3), "params": r.total_params, "gflops_seq128": round(r.flops / 1e9, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bert-base", action="store_true")
    ap.add_argument("-o", "--output", "--out", dest="out", default=str(ROOT / "benchmarks/results/structure_bench.json"))
    args = ap.parse_args()
    run = stamp()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from deploytool.export import export_model
    from deploytool.export.hf import load_hf_model
    from deploytool.models import resolve_model
    from deploytool.runtime.fuse import fuse_transformer

    results = {}
    with tempfile.TemporaryDirectory(prefix="structure-bench-") as tmp:
        tmp = Path(tmp)
        models = {"minilm": load_hf_model(resolve_model("minilm"), task="feature-extraction")}
        if args.bert_base:
            from deploytool.testing.tiny import tiny_model

            models["bert-base-random"] = tiny_model("bert", layers=12, hidden=768, heads=12, ffn=3072,
                                                    vocab=30522, max_pos=512)
        for name, model in models.items():
            for exporter in ("torch", "dynamo"):
                p = export_model(model, tmp / f"{name}-{exporter}.onnx", exporter=exporter)
                results[f"{name}/{exporter}"] = _measure(p, args.repeat)
                if exporter == "torch":
                    fuse_transformer(p, tmp / f"{name}-fused.onnx")
                    results[f"{name}/ort-fused"] = _measure(tmp / f"{name}-fused.onnx", args.repeat)
                print(name, exporter, results[f"{name}/{exporter}"], flush=True)
    out = {"machine": platform.machine(), "cpus": os.cpu_count(),
           "load_average": os.getloadavg()[0], "results": results, "run": stamp(run)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
