"""Render the README's performance table from the results files (each row cites its file).

Usage: ``.venv/bin/python benchmarks/perf_table.py`` prints Markdown; ``benchmarks/readme_figures.py`` places it
in README.md under "Performance" (between its figure markers).
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str, results: Path = RESULTS) -> dict:
    return json.loads((results / name).read_text())


def _ratios(rounds: list[list[dict]], variant: str, seq: int) -> list[float]:
    return [r["paired_ratio_to_optimum"] for rnd in rounds for r in rnd if r["variant"] == variant and r["seq_len"] == seq]


def _span(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"{min(xs):.2f}-{max(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"


def int8_rows(results: Path = RESULTS) -> list[str]:
    d = _load("int8_bench.json", results)
    rounds = d["latency_rounds"]
    acc = d.get("accuracy_rotten_tomatoes_test", {})
    cos = d["cosine_to_fp32"]
    loads = [r[0]["load_average_1m_at_start"] for r in rounds]
    out = [f"int8, MiniLM-L6, batch 1, 1 thread, {len(rounds)} interleaved rounds, load average "
           f"{min(loads):.1f}-{max(loads):.1f} ({d.get('cpuinfo_model_name', '?')}); paired latency ratio to optimum "
           f"(lower is faster), accuracy on the Rotten Tomatoes test split (1,281), embedding cosine to fp32:", "",
           "| variant | seq 8 | seq 128 | accuracy % | cosine | source |", "|---|---|---|---|---|---|"]
    names = ["optimum", "ort_quantize_dynamic", "ours", "ours_native", "ours_ort", "ours_unfused",
             "ours_unfused_static_reshape", "ours_bias_gelu", "ours_mha", "ours_sln"]
    engine = ((d["configs"].get("ours") or {}).get("config") or {}).get("engine", "ort")
    label = {"optimum": "optimum ORTQuantizer avx512_vnni", "ort_quantize_dynamic": "ORT quantize_dynamic",
             "ours": f"**deploytool int8 (default: {engine} engine)**", "ours_native": "ours, native engine",
             "ours_ort": "ours, ORT engine (ORT's fusion + quantize_dynamic)"}
    for n in names:
        if n not in cos:
            continue
        a = acc.get(n, {}).get("accuracy")
        r8 = "1.00" if n == "optimum" else _span(_ratios(rounds, n, 8))
        r128 = "1.00" if n == "optimum" else _span(_ratios(rounds, n, 128))
        out.append(f"| {label.get(n, n)} | {r8} | {r128} | {a if a is not None else '-'} | {cos[n]['mean']:.4f} | "
                   "`benchmarks/results/int8_bench.json` |")
    return out


def nbits_rows(results: Path = RESULTS) -> list[str]:
    out = []
    d = _load("pack_bench.json", results)
    out += ["", "Ternary 2-bit `MatMulNBits` (`pack --runtime memory`) against int8, whole models, 1 thread, "
            "interleaved; paired latency ratio to int8 (below 1: 2-bit faster):", "",
            "| model | seq | ternary nbits / int8 | binary nbits / int8 | int8 p50 ms | source |", "|---|---|---|---|---|---|"]
    for tag, m in d["models"].items():
        for s, row in m.get("nbits_vs_int8", {}).items():
            t, b = row.get("nbits2_ternary", {}), row.get("nbits2_binary", {})
            i8 = t.get("int8_p50_ms", b.get("int8_p50_ms"))
            out.append(f"| {tag} | {s} | {t.get('paired_ratio_to_int8', '-')} | {b.get('paired_ratio_to_int8', '-')} | "
                       f"{i8} | `benchmarks/results/pack_bench.json` |")
    k = _load("nbits_kernels.json", results)
    hv = k.get("host_verdict", {})
    out += ["", "One ternary [384 x 1536] weight, median us, 1 thread (LUT: session option `mlas.use_lut_gemm=1`):", "",
            "| rows | int8 | 2-bit acc 4 | 2-bit acc 4 + LUT | faster | source |", "|---|---|---|---|---|---|"]
    for m, row in k["host"]["rows"].items():
        out.append(f"| {m} | {row['int8_dqmm'].get('median_us')} | {row['nbits2_acc4'].get('median_us')} | "
                   f"{row['nbits2_acc4_lut'].get('median_us')} | {hv.get(m, {}).get('wins', '-')} | "
                   "`benchmarks/results/nbits_kernels.json` |")
    return out


def size_rows(results: Path = RESULTS) -> list[str]:
    d = _load("pack_bench.json", results)
    out = ["", "File sizes (ratio to the fp32 file); `*_all`: `--pack-head --position-embeddings` as `--weights`:", "",
           "| model | fp32 MB | int8 | ternary 2-bit | 5 trits | binary | 5 trits all | binary all | source |",
           "|---|---|---|---|---|---|---|---|---|"]
    for tag, m in d["models"].items():
        v = m["variants"]
        cells = [f"{v[k]['ratio_to_fp32']}x" if "ratio_to_fp32" in v.get(k, {}) else "-"
                 for k in ("int8", "ternary2", "trit5", "binary1", "trit5_all", "binary1_all")]
        out.append(f"| {tag} | {v['fp32']['bytes'] / 1e6:.1f} | " + " | ".join(cells)
                   + " | `benchmarks/results/pack_bench.json` |")
    acc = d.get("accuracy_rotten_tomatoes_test")
    if acc:
        out += ["", "Post-training packing of the fine-tuned MiniLM classifier, Rotten Tomatoes test accuracy % "
                "(QAT recovers most of the loss; `benchmarks/results/pack_bench.json`): "
                + ", ".join(f"{k} {v['accuracy']}" for k, v in acc.items() if "accuracy" in v)]
    iso = d.get("accuracy_packed_part_only")
    if iso:
        out += ["", "Only that part packed, the encoder left fp32 (same classifier; fp32 "
                f"{acc['fp32']['accuracy'] if acc else '?'}): "
                + ", ".join(f"{k.replace('fp32_encoder_', '')} {v['accuracy']}" for k, v in iso.items() if "accuracy" in v)
                + " (`benchmarks/results/pack_bench.json`)"]
    return out


def main() -> None:
    print("\n".join(int8_rows() + nbits_rows() + size_rows()))


if __name__ == "__main__":
    main()
