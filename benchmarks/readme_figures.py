"""Render the figures of the README's measured sections from ``benchmarks/results/*.json``.

Each rendered block sits in README.md between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->``;
everything between the markers is this script's output, so a figure cannot drift from its file.
``tests/test_readme_figures.py`` re-renders and fails when the README differs.

Usage::

    .venv/bin/python benchmarks/readme_figures.py           # rewrite the blocks in README.md
    .venv/bin/python benchmarks/readme_figures.py --check   # exit 1 naming the blocks that differ

The Performance tables come from ``perf_table.py`` (this script only places them).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
README = ROOT / "README.md"
sys.path.insert(0, str(HERE))

import perf_table  # noqa: E402  (beside this file)

SRC = "benchmarks/results"


def _load(results: Path, name: str) -> dict:
    return json.loads((results / name).read_text())


def _span(xs, fmt: str = "{:.2f}", sep: str = "-") -> str:
    xs = sorted(xs)
    lo, hi = fmt.format(xs[0]), fmt.format(xs[-1])
    return lo if lo == hi else f"{lo}{sep}{hi}"


def _wrap(paragraph: str) -> str:
    """One README paragraph or bullet, wrapped at 110 columns as the README is."""
    indent = "  " if paragraph.startswith("- ") else ""
    return textwrap.fill(paragraph, width=110, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def _date(stamp: str | None) -> str:
    return stamp[:10] if stamp else "date not recorded"


def _load_span(*values) -> str:
    flat = [x for v in values for x in (v if isinstance(v, (list, tuple)) else [v])]
    vals = [v for v in flat if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return f"load average {_span(vals, '{:.1f}')}" if vals else "load not recorded"


def _busy(*values) -> bool:
    """Whether the 1-minute load averages say other jobs shared the 2 cores (above 2: more than a benchmark's own)."""
    flat = [x for v in values for x in (v if isinstance(v, (list, tuple)) else [v])]
    return max((v for v in flat if isinstance(v, (int, float)) and not isinstance(v, bool)), default=0) > 2


def _run_when(d: dict) -> str | None:
    """"DATE, CPU, N cores, load average A-B" from the run block benchmarks/_stamp.py writes (None without one)."""
    r = d.get("run")
    if not r:
        return None
    return (f"{_date(r.get('started_utc'))}, {(r.get('cpu') or {}).get('model_name', 'CPU not recorded')}, "
            f"{(r.get('cores') or {}).get('usable', '?')} cores, "
            f"{_load_span((r.get('load_average_start') or [None])[0], (r.get('load_average_end') or [None])[0])}")


def _ratios(rounds, variant: str, seq: int) -> list[float]:
    return [r["paired_ratio_to_optimum"] for rnd in rounds for r in rnd if r["variant"] == variant and r["seq_len"] == seq]


def _met_text(r8: list[float], r128: list[float], goal: float) -> str:
    """"met at 8 and 128", "met at 8 only", ... or "not met": where every round's paired ratio is within ``goal``."""
    met = [s for s, xs in ((8, r8), (128, r128)) if xs and max(xs) <= goal]
    return ("met at " + " and ".join(map(str, met)) + (" only" if len(met) == 1 else "")) if met else "not met"


def _int8_facts(results: Path) -> dict:
    d = _load(results, "int8_bench.json")
    rounds = d["latency_rounds"]
    loads = [x for rnd in rounds for r in rnd for x in (r["load_average_1m_at_start"], r["load_average_1m_at_end"])]
    acc = d["accuracy_rotten_tomatoes_test"]
    goal = d["goal"]["max_paired_ratio"]
    ours8, ours128 = _ratios(rounds, "ours", 8), _ratios(rounds, "ours", 128)
    best128 = min((v for v in d["verdict"] if v != "ours"), key=lambda v: max(_ratios(rounds, v, 128) or [9]))
    # static QDQ fails the gate: its cosine is only in the recorded error
    m = re.search(r"cosine (\d+\.\d+)", (d["configs"].get("ours_static") or {}).get("error", ""))
    return {"date": _date(d["created_utc"]), "cpu": _cpu_of(d), "load": _load_span(*loads),
            "rounds": len(rounds), "r8": _span(ours8), "r128": _span(ours128), "goal": f"{goal:.2f}",
            "met": _met_text(ours8, ours128, goal),
            "acc": acc["ours"]["accuracy"], "acc_opt": acc["optimum"]["accuracy"], "n": acc["ours"]["n"],
            "cos": d["cosine_to_fp32"]["ours"]["mean"], "cos_opt": d["cosine_to_fp32"]["optimum"]["mean"],
            "best128": best128, "best128_r": _span(_ratios(rounds, best128, 128)),
            "static_cos": float(m.group(1)) if m else None,
            "engine": str(((d["configs"].get("ours") or {}).get("config") or {}).get("engine", "ort"))}


def render_measured(results: Path) -> str:
    ex = _load(results, "export_bench.json")
    sl = _load(results, "slice_bench.json")
    pk = _load(results, "pack_bench.json")
    di = _load(results, "distill_bench.json")
    ar = _load(results, "arm64_verify.json")
    qn = _load(results, "qnn_bench.json")
    i8 = _int8_facts(results)

    sp = ex["speedup_vs_eager_p50"]["ort_fp32"]
    export = (f"- **Export** (`export_bench.py`, {_date(ex.get('time_utc'))}, {ex['host']['machine']} "
              f"{ex['host']['cpus']} cores, {_load_span(ex.get('load_average_1m'))}): MiniLM ONNX matches PyTorch to "
              f"{max(ex['export']['max_abs_diff'].values()):.1e}; ORT fp32 is {sp['8']:.1f}x faster than PyTorch eager "
              f"at sequence 8 and {sp['128']:.1f}x at 128.")

    def at(r, w, d):
        return next(v for v in r["variants"] if v["width"] == w and v["depth"] == d)

    mini, base = (next(r for r in sl["results"] if r["model"] == m) for m in ("minilm", "bert-base"))
    vm, vb = at(mini, 0.5, 0.75), at(base, 0.5, 0.75)
    nl = lambda r: len(at(r, 1.0, 1.0)["layers_kept"])  # noqa: E731
    slicing = (f"- **Slicing** (`slice_bench.py`, {_date(sl.get('created_utc'))}, {_cpu_of(sl) if 'run' in sl else mini['host']['cpu_model']}, "
               f"{mini['host']['logical_cores']} cores, "
               f"{_load_span(sl['run']['load_average_start'][0], sl['run']['load_average_end'][0]) if 'run' in sl else 'load not recorded'}; "
               "DynaBERT's rounding): at width 0.5, depth "
               f"0.75 (MiniLM: {len(vm['layers_kept'])} of {nl(mini)} layers; BERT-base shape: "
               f"{len(vb['layers_kept'])} of {nl(base)}) the FLOPs ratio is {vm['flops_ratio']:.3f} (MiniLM) and "
               f"{vb['flops_ratio']:.3f} (BERT-base shape) and the measured latency ratio at sequence "
               f"{mini['seq_len']} is {vm['latency_ratio']:.3f} and {vb['latency_ratio']:.3f} (latency/FLOPs "
               f"{vm['latency_over_flops_ratio']:.2f} and {vb['latency_over_flops_ratio']:.2f}; target within "
               f"{base['checks']['latency_within_1.15x_flops_at_w0.5_d0.75']['limit']}). MiniLM file "
               f"{mini['file_bytes'] / 1e6:.1f} -> {vm['file_bytes'] / 1e6:.1f} MB, BERT-base "
               f"{base['file_bytes'] / 1e6:.1f} -> {vb['file_bytes'] / 1e6:.1f} MB. Slicing BERT-base took at most "
               f"{base['checks']['slice_seconds_max']['value']:.1f} s wall with peak memory at most "
               f"{base['checks']['slice_peak_rss_over_file_size_max']['value']:.1f}x the file (the pass's process; "
               "the verification gate of a file over 50 MB runs in a process of its own).")

    v = pk["models"]["bert-base"]["variants"]
    t = pk["targets"]
    r = lambda k: v[k]["ratio_to_fp32"]  # noqa: E731
    packing = (f"- **Packing** (`pack_bench.py`, {_date(pk.get('created_utc'))}, {_cpu_of(pk)}, "
               f"{_load_span(*pk['load_average_at_start'], *pk['load_average_at_end'])}), BERT-base shape WITH its "
               f"pooler and a 2-label classifier ({v['fp32']['bytes'] / 1e6:.1f} MB fp32): int8 {r('int8'):.2f}x, "
               f"ternary 2-bit {r('ternary2'):.1f}x, 5 trits per byte {r('trit5'):.1f}x, binary {r('binary1'):.1f}x "
               "with the pooler/classifier and position tables in fp32 (the default, as in the papers); "
               f"`--pack-head --position-embeddings` packs those too: 5 trits {r('trit5_all'):.1f}x, binary "
               f"{r('binary1_all'):.1f}x (targets {t['trit5_all']:g}x and {t['binary1_all']:g}x). See "
               "[Performance](#performance).")

    int8 = (f"- **int8** (`int8_bench.py`, MiniLM, {i8['date']}, {i8['cpu']}, {i8['load']}, {i8['rounds']} rounds): "
            + ("the default (the native writer: one QAttention per layer, DynamicQuantizeMatMul with the bias "
               "for every other projection, streamed) runs at " if i8["engine"] == "native" else
               "the default (ORT's fused attention, bias kept in the GEMM, no SkipLayerNormalization) runs at ") +
            f"{i8['r8']} of optimum's latency at sequence 8 and {i8['r128']} at 128 (goal {i8['goal']}: {i8['met']}), "
            f"with Rotten Tomatoes test accuracy {i8['acc']:.1f}% (optimum {i8['acc_opt']:.1f}%, n={i8['n']}) and "
            f"embedding cosine {i8['cos']:.4f} ({i8['cos_opt']:.4f}). See [Performance](#performance).")

    proof = ("- **Structured pruning proof** (a test, not a results file): the seeded sweep "
             "(`tests/passes/test_slice_sweep.py`, BERT, RoBERTa, DistilBERT, ELECTRA bases; TorchScript, dynamo, optimum "
             "and ORT-fused graphs) compares every case with transformers' own `prune_heads`, a PyTorch DynaBERT "
             "slice restated from DynaBERT's code, or `nn.Linear` surgery within 1e-4, and fails below its minimum "
             "of compared cases; reorder (outputs unchanged) and refusal cases are counted apart. The conformance "
             "matrix adds optimum/SDPA, MPNet, ALBERT, XLM-R, task heads and ORT's optimizer levels.")

    ts, ss = di["teacher_shape"], di["student_shape"]
    training = ("- **Training**: see [Training that holds at every depth](#training-that-holds-at-every-depth) "
                "(`train_bench_standard.*`; the older `demo` schedule, `train_bench_demo.*`, predates the "
                f"depth-stage fix). Distilled TinyBERT-{ss['layers']}x{ss['hidden']} student (`distill_bench.py`, "
                f"{_run_when(di) or di.get('machine', 'machine not recorded') + ', date not recorded'}): {di['test']['student']['accuracy']:.1f}% "
                f"vs its teacher's ({ts['layers']}x{ts['hidden']}) {di['test']['teacher']['accuracy']:.1f}% on "
                f"{di['test']['student']['n']} test reviews with {100 * di['parameters']['ratio']:.0f}% of the parameters.")

    embedding = ("- **Embedding quality** (`embedding_quality.py`): the quickstart's kinds of variants of MiniLM as a "
                 "sentence encoder, recall@10 of the original's neighbours and cosine; see "
                 "[Accuracy you can trust](#accuracy-you-can-trust).")

    precisions = sorted({c["precision"] for c in ar["checks"]})
    ok = sum(c["ok"] for c in ar["checks"])
    when = (f"{_date(ar['created_utc'])}, {ar['host']['cpu']}, "
            f"{_load_span(ar['load_average_at_start'][0], ar['load_average_at_end'][0])}"
            if "created_utc" in ar else _run_when(ar) or "date and load not recorded")
    onnx_att = any("onnx-attention" in c["model"] for c in ar["checks"])
    arm = (f"- **ARM64** (`arm64_verify.py`, {when}, {ar['wall_s']:.0f} s): MiniLM "
           f"{'/'.join(precisions)}{' (int8 also with `--fusion onnx`: ONNX Attention, opset 23)' if onnx_att else ''} "
           f"at sequence {ar['seq_len']} under QEMU on {', '.join(ar['cpus'])}: {ok} of "
           f"{len(ar['checks'])} checks agree with the host within the per-precision tolerances.")

    def qrow(model, prec):
        return next(x for x in qn["rows"] if x["model"] == model and x["precision"] == prec)

    full, sliced, u8 = qrow("minilm.onnx", "u16/u8"), qrow("minilm_w0.5_d0.75.onnx", "u16/u8"), qrow("minilm.onnx", "u8/u8")
    on, total = full["qnn_coverage"].split("/")
    qnn = (f"- **Snapdragon HTP, emulated** (`qnn_bench.py`, {_run_when(qn) or 'date and load not recorded'}, "
           f"{qn['wall_s'] / 60:.0f} min): "
           f"MiniLM u16/u8 QDQ puts {on} of {total} nodes on the HTP, strict mode "
           f"{'passes' if full['qnn_strict'] else 'fails'}, cosine to fp32 {full['qnn_min_cosine_vs_fp32']:.3f} "
           f"(the w0.5/d0.75 slice: {sliced['qnn_min_cosine_vs_fp32']:.3f}"
           + ("" if "run" in qn else ", sliced before DynaBERT's rounding became the default")
           + f"); u8/u8 is not usable ({u8['qnn_min_cosine_vs_fp32']:.2f}).")

    head = ("Each figure below is rendered by `benchmarks/readme_figures.py` from the JSON its script wrote in "
            f"`{SRC}/`, with the machine, load and date that file records (or says it does not). 1 thread, "
            "batch 1; ratios were measured interleaved in one run.")
    return "\n".join(map(_wrap, [head, "", export, slicing, packing, int8, proof, training, embedding, arm, qnn]))


def _machines(files: dict[str, dict]) -> str:
    """Where the results files were measured (``_cpu_of``): "on CPU" when they agree, else "A on CPU1; B and C on
    CPU2"."""
    by_cpu: dict[str, list[str]] = {}
    for name, d in files.items():
        by_cpu.setdefault(_cpu_of(d), []).append(name)
    if len(by_cpu) == 1:
        return f"on {next(iter(by_cpu))}"
    return "; ".join(f"{' and '.join(names)} on {cpu}" for cpu, names in by_cpu.items())


def render_performance(results: Path) -> str:
    i8 = _int8_facts(results)
    pk = _load(results, "pack_bench.json")
    nb = _load(results, "nbits_kernels.json")
    head = (f"Rendered by `benchmarks/perf_table.py` (placed by `readme_figures.py`) from the results files named in "
            f"each row: int8 {i8['date']} ({i8['load']}), packing {_date(pk.get('created_utc'))} "
            f"({_load_span(*pk['load_average_at_start'], *pk['load_average_at_end'])}), 2-bit kernels "
            f"{_date(nb.get('created_utc'))} ({_load_span(nb.get('load_average_at_start'))}), "
            f"{_machines({'int8': _load(results, 'int8_bench.json'), 'packing': pk, '2-bit kernels': nb})} with 2 vCPUs"
            + (" shared with other jobs, so absolute milliseconds are inflated"
               if _busy(pk['load_average_at_start'][0], pk['load_average_at_end'][0], nb.get('load_average_at_start'))
               else ", nothing else running")
            + "; every ratio was measured interleaved, run by run, in one clean process.")
    tables = perf_table.int8_rows(results) + perf_table.nbits_rows(results) + perf_table.size_rows(results)
    return "\n".join([_wrap(head), "", *tables])


def _nbits_ratios(pk: dict) -> dict[int, list[float]]:
    """Sequence length -> paired latency ratios 2-bit MatMulNBits / int8 kernels (ternary and binary, every model)."""
    nbr = {(m, int(s)): row for m, md in pk["models"].items() for s, row in md.get("nbits_vs_int8", {}).items()}
    return {s: [row[k]["paired_ratio_to_int8"] for (m, ss), row in nbr.items() if ss == s
                for k in ("nbits2_ternary", "nbits2_binary") if "paired_ratio_to_int8" in row.get(k, {})]
            for s in sorted({s for _, s in nbr})}


def render_reading(results: Path) -> str:
    i8 = _int8_facts(results)
    pk = _load(results, "pack_bench.json")
    ratios = _nbits_ratios(pk)
    short, mid, long_ = sorted(ratios)
    v = pk["models"]["bert-base"]["variants"]
    acc = pk["accuracy_rotten_tomatoes_test"]
    iso = pk["accuracy_packed_part_only"]
    fp32 = acc["fp32"]["accuracy"]
    head_acc = [x["accuracy"] for k, x in iso.items() if "head" in k]
    pos_acc = [x["accuracy"] for k, x in iso.items() if "position" in k]
    t = pk["targets"]
    lines = [
        f"- **int8 vs optimum** (goal: paired ratio <= {i8['goal']} at 8 and 128 tokens): {i8['met']} "
        f"({i8['r8']} at 8, {i8['r128']} at 128; the best variant at 128, {i8['best128']}, {i8['best128_r']}). "
        + _not_worse_text(results) + " What is left at 128 tokens is time both files spend in "
        "the same ORT kernels (int8 GEMMs, the attention core, Gelu, LayerNorm)."
        + (f" Static per-tensor activation scales fail the gate (cosine {i8['static_cos']:.2f})."
           if i8["static_cos"] else " Static per-tensor activation scales fail the gate.")
        + "".join(_int8_side_run(results, name) for name in INT8_SIDE_RUNS),
        f"- **2-bit `MatMulNBits` vs int8**: 2-bit wins at {short} token ({_span(ratios[short])}x int8's latency on "
        "whole models; with `mlas.use_lut_gemm` the single GEMM is faster still), int8 kernels win at "
        f"{mid} tokens ({_span(ratios[mid], '{:.1f}')}x) and {long_} ({_span(ratios[long_], '{:.1f}')}x). `fit` "
        "packs ternary/binary candidates accordingly (see "
        "[`fit`](#devices-profiles-arm64-verification-reports-fit)). On ARM64, only correctness is known.",
        f"- **Smallest files**: `pack --runtime densest --pack-head --position-embeddings <same>` gives "
        f"{v['trit5_all']['ratio_to_fp32']:.1f}x (ternary, target {t['trit5_all']:g}x) and "
        f"{v['binary1_all']['ratio_to_fp32']:.1f}x (binary, target {t['binary1_all']:g}x) on BERT-base with its "
        "pooler. Post-training ternary/binary classifiers are near chance on their own (QAT recovers them, see "
        "Training), so the cost of the extra parts was measured alone, on the fp32 classifier: packing the pooler "
        f"and classifier costs {_span([fp32 - a for a in head_acc], '{:.1f}')} points ({_span(head_acc, '{:.1f}')}% "
        f"vs {fp32:.1f}%), the position/token-type tables {_span([fp32 - a for a in pos_acc], '{:.1f}')} points "
        f"({_span(pos_acc, '{:.1f}')}%), on {acc['fp32'].get('n', 'the')} test reviews. Not measured: the same "
        "after QAT.",
    ]
    return "\n".join(map(_wrap, lines))


def _not_worse_text(results: Path) -> str:
    """Whether the default's accuracy and cosine are no worse than optimum's, from int8_bench.json's verdict."""
    v = _load(results, "int8_bench.json")["verdict"]["ours"]
    worse = [w for w, ok in (("accuracy", v["accuracy_not_worse"]), ("cosine", v["cosine_not_worse"])) if not ok]
    return ("Accuracy and cosine are no worse than optimum's." if not worse
            else f"{' and '.join(worse).capitalize()} below optimum's.")


# int8_bench.py runs on kinds of CPU the sitting's int8_bench.json was not measured on (``--variants
# ours,ours_pairsafe,ours_uint8``): each is one sentence of the int8 goal's bullet
INT8_SIDE_RUNS = ("int8_bench_zen3.json", "int8_bench_zen4.json", "int8_bench_emerald_rapids.json")


def _rest_kernels(d: dict) -> str:
    """What the other forms ORT has of the rest of the graph (GELU, LayerNorm, the Q|K|V Split) would save at
    128 tokens, each timed alone (``kernel_micro_us``), as a sentence; empty for a file without them."""
    km = d.get("kernel_micro_us") or {}
    act = (km.get("ffn1_activation") or {}).get("128") or {}
    ln = (km.get("residual_layernorm") or {}).get("128") or {}
    att = (km.get("attention") or {}).get("128") or {}
    gemm, exact = act.get("DynamicQuantizeMatMul(bias) alone"), act.get("DynamicQuantizeMatMul(bias)+Gelu")
    approx = [act[k] for k in ("DynamicQuantizeMatMul(bias)+FastGelu", "DynamicQuantizeMatMul(bias)+Gelu-20 tanh",
                               "DynamicQuantizeMatMul(bias)+QuickGelu(1.702)") if (act.get(k) or {}).get("p50_us")]
    if not (gemm and exact and approx and ln.get("Sum+InstanceNormalization+Mul+Add")):
        return ""
    layers = ((d.get("floor") or {}).get("layers")) or 6
    cost = [a["p50_us"] - gemm["p50_us"] for a in approx]
    save = max(0.0, (exact["p50_us"] - gemm["p50_us"] - min(cost)) * layers / 1000)
    packed = att.get("DynamicQuantizeMatMul+MultiHeadAttention(packed QKV)") or {}
    return (f" The other forms ONNX Runtime has for that rest, each timed alone at 128 tokens (`kernel_micro_us`): "
            f"GELU after the FFN-1 GEMM costs {exact['p50_us'] - gemm['p50_us']:.0f} us a layer exact and "
            f"{_span(cost, '{:.0f}')} us as the tanh or sigmoid approximations (at most {save:.2f} ms saved over "
            f"{layers} layers, with another function); the residual sum and LayerNorm "
            f"{ln['Sum+LayerNormalization']['p50_us']:.0f} us, {ln['Sum+InstanceNormalization+Mul+Add']['p50_us']:.0f} "
            f"us as InstanceNormalization over each token's row"
            + ("; attention on a packed Q|K|V view without the Split is not implemented by ORT's CPU provider"
               if packed.get("error") else "") + ".")


def _int8_side_run(results: Path, name: str) -> str:
    """The int8 goal on another CPU: the default and pair-safe codes against optimum, from ``name``."""
    d = _load(results, name)
    rounds, goal = d["latency_rounds"], d["goal"]["max_paired_ratio"]
    cos, acc = d["cosine_to_fp32"], d["accuracy_rotten_tomatoes_test"]
    exact = (d.get("host") or {}).get("int8_u8s8_exact")

    def variant(v: str, label: str) -> str:
        r8, r128 = _ratios(rounds, v, 8), _ratios(rounds, v, 128)
        worse = [w for w, ok in (("cosine", cos[v]["mean"] >= cos["optimum"]["mean"]),
                                 ("accuracy", acc[v]["accuracy"] >= acc["optimum"]["accuracy"])) if not ok]
        return (f"{label} {_span(r8)} at 8 and {_span(r128)} at 128 ({_met_text(r8, r128, goal)}), cosine {cos[v]['mean']:.4f}, accuracy {acc[v]['accuracy']:.1f}%"
                + (f" ({' and '.join(worse)} below optimum's)" if worse else ""))

    parts = [variant("ours", "the default")]
    if "ours_pairsafe" in d["verdict"]:
        parts.append(variant("ours_pairsafe", "`--weights pairsafe`"))
    if "ours_onnx_attention" in d["verdict"]:
        parts.append(variant("ours_onnx_attention", "`--fusion onnx` (ONNX's Attention, opset 23)"))
    fast = "native_attention23_fast_gelu_in_gemm"
    if fast in d["verdict"]:  # a candidate rewrite: measured, written by no config
        parts.append(f"that with the FFN's GELU as FastGelu (the tanh approximation: another function, measured as "
                     f"a candidate and written by no option) {_span(_ratios(rounds, fast, 8))} at 8 and "
                     f"{_span(_ratios(rounds, fast, 128))} at 128, accuracy {acc[fast]['accuracy']:.1f}%")
    core = "native_attention23_int8_core"
    if core in d["verdict"]:  # a candidate rewrite: measured, written by no config
        below = [w for w, ok in (("cosine", cos[core]["mean"] >= cos["optimum"]["mean"]),
                                 ("accuracy", acc[core]["accuracy"] >= acc["optimum"]["accuracy"])) if not ok]
        parts.append(f"`--fusion onnx`'s graph with the attention core in int8 as optimum's graph has it (K and V "
                     f"symmetric int8, measured as a candidate and written by no option) {_span(_ratios(rounds, core, 8))} "
                     f"at 8 and {_span(_ratios(rounds, core, 128))} at 128, accuracy {acc[core]['accuracy']:.1f}%"
                     + (f" ({' and '.join(below)} below optimum's)" if below else ""))
    clip = (", whose u8 x s8 GEMM clips pairs in int16 (see [int8 on x86 without VNNI](#int8-on-x86-without-vnni)),"
            if exact is False else ",")
    gemm = ("QAttention", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger")
    prof = (d.get("op_time_us") or {}).get("128") or {}
    shares = [sum(o["share"] for op, o in prof[v]["ops"].items() if op in gemm) for v in ("ours", "optimum") if v in prof]
    why = (f" At 128 tokens the ops with int8 GEMMs take {_span([100 * x for x in shares], '{:.0f}')}% of both files' "
           "time (ORT's profiler, same file), where the two run the same MLAS kernels." if len(shares) == 2 else "")
    floor = ((d.get("floor") or {}).get("per_seq") or {}).get("128")
    if floor and "goal_ms" in floor:
        rest = floor.get("ours_onnx_attention_rest_ms", floor.get("ours_rest_ms"))
        whose = "`--fusion onnx`'s file" if "ours_onnx_attention_rest_ms" in floor else "the default file"
        why += (f" What ONNX Runtime's kernels leave at 128 tokens (`floor`): the graph's int8 GEMMs and attention "
                f"cores, each timed alone, take {floor['floor_ms']:.2f} ms, {floor['floor_over_optimum']:.2f} of "
                f"optimum's {floor['p50_ms']['optimum']:.2f} ms; the goal leaves {floor['left_for_the_rest_ms']:.2f} ms "
                f"for the rest of the graph (GELU, LayerNorm, residual sums, splits), which takes {rest:.2f} ms in "
                f"{whose}.")
    why += _rest_kernels(d)
    return (f" On {_cpu_of(d)}{clip} {_date(d.get('created_utc'))}, {len(rounds)} rounds (`{SRC}/{name}`; "
            f"optimum: cosine {cos['optimum']['mean']:.4f}, accuracy {acc['optimum']['accuracy']:.1f}%): "
            + "; ".join(parts) + "." + why)


def _acc(cell: str) -> tuple[str, float, int | None, int]:
    """'79.2% [75.4-82.5] n=500, 98% of ref' -> ('79.2% [75.4-82.5]', 79.2, 98, 500)."""
    m = re.match(r"(?P<acc>[\d.]+)% (?P<ci>\[[^\]]+\]) n=(?P<n>\d+)(?:, (?P<ref>\d+)% of ref)?", cell)
    if not m:
        raise ValueError(f"quickstart headline cell {cell!r} is not 'ACC% [LO-HI] n=N'")
    return (f"{m['acc']}% {m['ci']}", float(m["acc"]), int(m["ref"]) if m["ref"] else None, int(m["n"]))


def render_quickstart(results: Path) -> str:
    meta = _load(results, "quickstart/meta.json")
    run = _load(results, "quickstart/run.json")
    rows = {h["variant"]: h for h in run["headline"]}
    teacher = next(h for h in run["headline"] if h["variant"].startswith("teacher"))
    t_cell, _, _, n = _acc(teacher["acc % [95% CI] n"])
    a = {k: _acc(h["acc % [95% CI] n"]) for k, h in rows.items() if h is not teacher}
    fp, i8 = rows["w1-d1-fp32"], rows["w1-d1-int8"]
    half = [a["w1-d0.5-fp32"], a["w1-d0.5-int8"]]
    tern = [v for k, v in a.items() if k.endswith("-ternary")]
    picks = {}
    pvals = []
    for line in run["picks"]:
        device, rest = line.split(": ", 1)
        name = rest.split(" (", 1)[0].removeprefix(f"{run['recipe']}-")
        picks.setdefault(name, []).append(device)
        pvals += [float(x) for x in re.findall(r"McNemar \(exact\) p = ([\d.]+)", rest)]
    label = {"x86-host": "this host", "kirin990": "the Kirin 990", "raspberry-pi-4": "the Raspberry Pi 4"}
    def _and(names: list[str]) -> str:
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    chosen = "; ".join(f"{k} ({rows[k]['MB']:.1f} MB) for {_and([label.get(d, d) for d in ds])}"
                       for k, ds in picks.items())
    load = _load_span(meta["load_average_at_start"][0], meta["load_average_at_end"][0])
    text = (f"Measured {_date(meta['date'])} (`{SRC}/quickstart/`, {meta['machine']['cpu']}, {meta['machine']['cores']} "
            f"cores: {meta['run_seconds']} s for all {meta['steps']} steps from an empty store, {load}), every "
            f"accuracy on the same {n} test reviews with its 95% Wilson interval: the fine-tuned teacher (PyTorch "
            f"fp32, the reference row) {t_cell}; the DynaBERT-trained model exported at full size "
            f"{a['w1-d1-fp32'][0]} ({a['w1-d1-fp32'][2]}% of the teacher), int8 {a['w1-d1-int8'][1]}% in "
            f"{i8['MB']:.1f} MB instead of {fp['MB']:.1f}. Every depth now works: half the layers keep "
            f"{half[0][1]}% fp32 and {half[1][1]}% int8 at full width ({_span([h[2] for h in half], '{:.0f}')}% of the "
            f"teacher), {a['w0.5-d0.5-fp32'][1]}% at width 0.5 as well ({a['w0.5-d0.5-fp32'][2]}%). The report "
            f"picks {chosen}, and says why: each ties with the most accurate variant (exact McNemar p = "
            f"{_span(pvals)} on the examples where they differ) and is the fastest of the tied ones, or the smallest of "
            "those as fast (measured on the host: not slower in significantly many paired runs; projected: closer "
            "than the cost model's resolution). Post-training "
            f"ternary keeps {_span([t[2] for t in tern], '{:.0f}')}% of the teacher (the QAT recipes recover it: see "
            "[Training](#training-that-holds-at-every-depth)).")
    return _wrap(text)


def render_embedding_table(results: Path) -> str:
    d = _load(results, "embedding_quality.json")
    cells: dict[tuple[float, float], dict[str, str]] = {}
    for r in d["rows"]:
        lo, hi = r["recall_ci95"]
        cells.setdefault((r["width"], r["depth"]), {})[r["precision"]] = (
            f"{r['recall_at_10']:.1f} [{lo:.1f}-{hi:.1f}] / {r['cosine_mean']:.3f}")
    precisions = list(dict.fromkeys(r["precision"] for r in d["rows"]))
    out = ["| width / depth | " + " | ".join(precisions) + " |", "|---" * (len(precisions) + 1) + "|"]
    for (w, dep), row in cells.items():
        out.append(f"| {w:g} / {dep:g} | " + " | ".join(row.get(p, "-") for p in precisions) + " |")
    return "\n".join(out)


def render_embedding(results: Path) -> str:
    d = _load(results, "embedding_quality.json")
    m = d["machine"]
    cpu = m["cpu"]
    isa = " and ".join(x for x, k in (("AVX-512 VNNI", "avx512_vnni"), ("AMX", "amx")) if cpu.get(k))
    rows = {r["variant"]: r for r in d["rows"]}
    texts = d["corpus"]["texts"]
    head = (f"**Measured** (`benchmarks/embedding_quality.py`, {_date(d['date_utc'])}, {cpu['model']}"
            f"{' with ' + isa if isa else ''}, {cpu['cores_usable']} cores"
            f"{' shared with other jobs' if _busy(m['load_average_start'][0], m['load_average_end'][0]) else ''}, load average "
            f"{m['load_average_start'][0]:.2f} at the start and {m['load_average_end'][0]:.2f} at the end, "
            f"{d['total_seconds']:.0f} s; `{SRC}/embedding_quality.{{json,md}}`): the embedded MiniLM as a "
            "feature-extraction model, reordered by weight magnitude and sliced without any training (what "
            "`deploytool slice` gives an off-the-shelf encoder), against the fp32 original in PyTorch over the "
            f"first {texts:,} distinct reviews, all in one run. recall@10 % [95% CI] / mean cosine (by chance "
            f"recall@10 would be {100 * 10 / (texts - 1):.1f}%):")
    i8, w75, d75, tern = rows["w1-d1-int8"], rows["w0.75-d1-fp32"], rows["w1-d0.75-fp32"], rows["w1-d1-ternary"]
    same = [rows[v] for v in ("w0.75-d1-int8", "w0.5-d1-int8")]
    tail = (f"int8 keeps the embeddings close (cosine {i8['cosine_mean']:.3f}, worst {i8['cosine_min']:.3f}) yet only "
            f"{i8['recall_at_10']:.1f}% of the original's 10 nearest reviews — a loss the cosine alone does not show. "
            f"Without training, every slice loses most of the neighbourhood (width 0.75: {w75['recall_at_10']:.1f}%, "
            f"depth 0.75: {d75['recall_at_10']:.1f}%) and post-training ternary keeps {tern['recall_at_10']:.1f}%: "
            "the case for distilling a sentence encoder (on an embedding loss) before slicing or packing it, which "
            "deploytool's training steps do not do yet (they distil classifiers). int8 of a slice does not differ "
            "significantly from the slice's fp32 at widths 0.75 and 0.5, full depth (sign test p = "
            + " and ".join(f"{r['sign_test_vs_fp32']['p']:.2f}" for r in same) + ").")
    return "\n".join([_wrap(head), "", render_embedding_table(results), "", _wrap(tail)])


def render_training_table(results: Path) -> str:
    sys.path.insert(0, str(ROOT))
    from deploytool.stats import wilson_interval

    t = _load(results, "train_bench_standard.json")
    n = t["dynabert_test"][0]["n"]
    teacher = next(r for r in t["rows"] if r["name"].startswith("teacher"))

    def acc(a: float) -> str:
        lo, hi = wilson_interval(round(a * n / 100), n)
        return f"{a:.2f} [{100 * lo:.1f}-{100 * hi:.1f}]"

    def share(a: float) -> str:
        return f"{100 * a / teacher['accuracy']:.1f}%"

    out = ["| model | test accuracy % [95% CI] | of the teacher | target |", "|---|---|---|---|",
           f"| teacher | {acc(teacher['accuracy'])} | 100% | - |"]
    grid = {(g["width"], g["depth"]): g["accuracy"] for g in t["dynabert_test"]}
    for r in t["rows"]:
        m = re.match(r"DynaBERT width ([\d.]+) depth ([\d.]+)", r["name"])
        if m:
            w, dep = float(m[1]), float(m[2])
            out.append(f"| DynaBERT ({w:g}, {dep:g}) | {acc(r['accuracy'])} | {share(r['accuracy'])} | {r['target']}% |")
    smallest = min(grid, key=lambda k: (k[0] * k[1], k))
    out.append(f"| DynaBERT ({smallest[0]:g}, {smallest[1]:g}), the smallest | {acc(grid[smallest])} | "
               f"{share(grid[smallest])} | - |")
    for r in t["rows"]:
        if "QAT" in r["name"]:
            kind = r["name"].split(" QAT")[0]
            if "ternary weight splitting" in r["name"]:
                kind = "binary with ternary weight splitting (BinaryBERT TWS)"
            missed = "" if 100 * r["accuracy"] / teacher["accuracy"] >= r["target"] else " (missed)"
            out.append(f"| {kind} QAT (int8 activations) | {acc(r['accuracy'])} | {share(r['accuracy'])} | "
                       f"{r['target']}%{missed} |")
    return "\n".join(out)


def render_tws(results: Path) -> str:
    """BinaryBERT's ternary weight splitting against plain binary QAT, from train_bench_standard.json."""
    t = _load(results, "train_bench_standard.json")
    w = t.get("tws")
    if not w:
        return "(no ternary-weight-splitting run in train_bench_standard.json)"
    teacher = next(r for r in t["rows"] if r["name"].startswith("teacher"))["accuracy"]
    plain = next(r for r in t["rows"] if r["name"].startswith("binary QAT ("))["accuracy"]
    onnx = {r["file"]: r for r in t.get("onnx", []) if "file" in r}
    parts = [f"Same budget as plain binary QAT ({_epochs(t['schedule_settings']['qat_epochs'])} of the training split, {w['steps']} steps: "
             f"{w['stages']['ternary']['steps']} ternary at width {w['width']:g}, {w['heads_per_layer'][0]} heads and "
             f"FFN {w['ffn_size']} per layer, then {w['stages']['binary']['steps']} binary after the split): "
             f"**{w['test']['accuracy']:.2f}%** on the {w['test']['n']:,} test reviews ({100 * w['test']['accuracy'] / teacher:.1f}% "
             f"of the teacher; plain binary {plain:.2f}%, {100 * plain / teacher:.1f}%)."]
    v = w.get("vs_plain_binary")
    if v:
        parts.append(f"Paired on the same reviews: {v['points']:+.2f} points, right only with TWS {v['only_tws_right']}, "
                     f"only plain {v['only_plain_right']}, exact McNemar p = {v['mcnemar_p']:.2g}.")
    sd, td = w["split_dev"], w["ternary_dev"]
    parts.append(f"Right after the split the dev accuracy is {sd['accuracy']:.1f}% against the ternary model's "
                 f"{td['accuracy']:.1f}% ({sd.get('n_correct', '?')} and {td.get('n_correct', '?')} of {sd.get('n', '?')} "
                 f"reviews right; the split weights differ from the ternary ones by at most "
                 f"{max(w['split_max_abs_diff'].values()):.1g}, float rounding, which int8 activation rounding can "
                 "still turn into a different prediction).")
    sp, bs = onnx.get("binary_tws_speed.onnx"), onnx.get("binary_speed.onnx")
    if sp and bs:
        parts.append(f"Packed `--weights split-binary` (speed runtime) it is {sp['bytes'] / 1e6:.1f} MB against plain "
                     f"binary's {bs['bytes'] / 1e6:.1f} MB (both planes of the word embeddings: 2 bits a value), and "
                     f"gives {sp['accuracy']:.2f}% against PyTorch's {sp['pytorch']:.2f}%.")
    return " ".join(parts)


# the standard schedule's time goal (benchmarks/train_bench.py: "at most 60 minutes on 2 quiet cores"): a goal,
# not a measurement; the time itself comes from the results file
TRAIN_GOAL_MIN = {"standard": 60}


def _epochs(n) -> str:
    return f"{n:g} epoch{'' if n == 1 else 's'}"


def render_training_setup(results: Path) -> str:
    """The sentence above the training table: what the run trained, on what, where and when."""
    t = _load(results, "train_bench_standard.json")
    s, ds = t["schedule_settings"], t["dataset"]["sizes"]

    def on(n_examples, split: str = "train") -> str:
        return "the whole split" if n_examples is None else f"the first {n_examples:,} of its {ds[split]:,} examples"

    per_epoch = [e["dev_accuracy"] for e in t["teacher"]["train"].get("per_epoch") or []]
    dev = ""
    if per_epoch:
        trend = "" if len(per_epoch) < 2 else (": the last epoch did not improve it"
                                               if per_epoch[-1] <= max(per_epoch[:-1]) else ": still improving")
        dev = f" (dev {', '.join(f'{a:.1f}' for a in per_epoch)}% after each{trend})"
    teacher_on = (f"all {ds['train']:,} training reviews" if s["teacher_examples"] is None
                  else f"{s['teacher_examples']:,} of the {ds['train']:,} training reviews")
    width, depth = s["width_epochs"], s["depth_epochs"]
    stages = f"{_epochs(width)} each" if width == depth else f"{_epochs(width)} and {_epochs(depth)}"
    test = f"the whole {ds['test']:,}-review test split" if s["test_examples"] is None else \
        f"the first {s['test_examples']:,} reviews of the test split"
    text = (f"Measured by `benchmarks/train_bench.py --schedule {t['schedule']}` (results in "
            f"`{SRC}/train_bench_{t['schedule']}.{{json,md}}`, {_date(t.get('date'))}, {t.get('machine', 'machine not recorded')}): "
            f"the teacher on {teacher_on} for {_epochs(s['teacher_epochs'])}{dev}, DynaBERT's width then depth stage on "
            f"{on(s['dyn_examples'])} ({stages}), ternary and binary QAT on {on(s['qat_examples'])} "
            f"({_epochs(s['qat_epochs'])} each), every accuracy on {test} with its 95% interval:")
    return _wrap(text)


def _stage_seconds(t: dict) -> list[tuple[str, float]]:
    """(stage, training seconds) from the rows: teacher, DynaBERT (both stages), each QAT."""
    out = []
    for r in t["rows"]:
        name = ("teacher" if r["name"].startswith("teacher") else "DynaBERT" if r["name"].startswith("DynaBERT")
                else "binary TWS" if "splitting" in r["name"] else r["name"].split(" QAT")[0] + " QAT")
        if r.get("seconds") is not None and name not in dict(out):
            out.append((name, r["seconds"]))
    return out


def render_training_notes(results: Path) -> str:
    """The paragraph under the training table: the whole grid, ONNX against PyTorch, and the time."""
    t = _load(results, "train_bench_standard.json")
    teacher = next(r for r in t["rows"] if r["name"].startswith("teacher"))["accuracy"]
    grid = [100 * g["accuracy"] / teacher for g in t["dynabert_test"]]
    ok = [r for r in t.get("onnx", []) if "error" not in r]
    failed = [r["name"] for r in t.get("onnx", []) if "error" in r]
    sliced = [r["accuracy"] - r["pytorch"] for r in ok if "sliced" in r["name"]]
    packed = {rt: [(r["file"].rsplit("_", 1)[0], r["accuracy"] - r["pytorch"]) for r in ok
                   if r.get("file", "").endswith(f"_{rt}.onnx")] for rt in ("speed", "memory")}
    parts = [f"All {len(grid)} (width, depth) cells are in the results file ({_span(grid, '{:.1f}')}% of the teacher)"]
    if sliced:
        same = max(abs(x) for x in sliced)
        parts.append("the sliced ONNX models give the PyTorch sub-networks' accuracy "
                     + ("exactly" if same == 0 else f"within {same:.2f} points"))
    if packed["speed"] or packed["memory"]:
        worst = max(abs(x) for v in packed.values() for _, x in v)
        bound = math.ceil(worst * 10 - 1e-9) / 10

        def diffs(v):
            return ", ".join(f"{x:+.2f} ({m.replace('binary_tws', 'binary TWS')})" for m, x in v)

        parts.append(f"the packed ternary/binary models are within {bound:.1f} points of PyTorch in both runtimes: "
                     f"`speed` (int8 activations, as QAT trains them) {diffs(packed['speed'])}, `memory` at accuracy "
                     f"level 0 {diffs(packed['memory'])}")
    text = "; ".join(parts) + "."
    if failed:
        text += f" Not measured (the export or pack failed, as the file records): {', '.join(failed)}."
    stages = _stage_seconds(t)
    spent = ", ".join(f"{name} {sec:,.0f} s" for name, sec in stages)
    goal = TRAIN_GOAL_MIN.get(t["schedule"])
    m = re.search(r"load avg ([\d.]+) at start, ([\d.]+) at end", t.get("machine", ""))
    load = f"load average {m[1]} at the start and {m[2]} at the end" if m else "load not recorded"
    if t.get("reused_stages"):
        text += (f" Time: this file does not time the schedule as a whole: its stages "
                 f"({', '.join(t['reused_stages'])}) were trained by earlier runs in the same working folder and "
                 f"reused, under other load (the file's notes say when); each stage's own training time: {spent}.")
    else:
        total = t["total_seconds"]
        verdict = "" if goal is None else (f": {'within' if total <= 60 * goal else 'over'} the schedule's "
                                           f"{goal}-minute goal")
        text += (f" Time: the whole run took {total / 60:.1f} min wall-clock ({total:,.0f} s, {load}){verdict}; "
                 f"training: {spent}; the rest is evaluation, export and packing.")
    return _wrap(text)


_MODEL_NAMES = {"minilm": "MiniLM", "bert-base": "BERT-base"}


def render_fit_runtime(results: Path) -> str:
    """Which pack runtime ``fit`` gives ternary/binary candidates, with the measurements behind it (pack_bench.json)."""
    pk = _load(results, "pack_bench.json")
    ratios = _nbits_ratios(pk)
    short, longer = min(ratios), sorted(s for s in ratios if s != min(ratios))
    rest = [x for s in longer for x in ratios[s]]
    models = " and ".join(_MODEL_NAMES.get(m, m) for m in pk["models"] if pk["models"][m].get("nbits_vs_int8"))
    won = "beat" if max(ratios[short]) < 1 else "did not always beat"
    text = ("Ternary/binary candidates are packed for the runtime measured fastest (`fit.pack_runtime`): 2-bit "
            f"`MatMulNBits` (`--runtime memory`) at {short} token{'' if short == 1 else 's'} on x86, where it {won} int8 "
            f"kernels in `pack_bench.json` ({models}, paired ratio {_span(ratios[short])}), int8 kernels (`speed`) at "
            f"{longer[0]} tokens and more ({_span(rest, '{:.1f}')}x faster than 2-bit) and on every "
            "aarch64 device (only QEMU correctness is known there); each candidate in `best.onnx.fit.json` says which "
            "and why. The report shows the file `fit` chose; it does not choose runtimes itself.")
    for name in PACK_NBITS_SIDE_RUNS:  # the same comparison on other kinds of x86 CPU
        side = _load(results, name)
        r = _nbits_ratios(side)
        s_short, s_rest = min(r), sorted(s for s in r if s != min(r))
        same = max(r[s_short]) < 1 and all(min(r[s]) > 1 for s in s_rest)
        models = " and ".join(_MODEL_NAMES.get(m, m) for m in side["models"] if side["models"][m].get("nbits_vs_int8"))
        text += (f" On {_cpu_of(side)}, {models} ({_date(side.get('created_utc'))}, `{SRC}/{name}`): 2-bit over int8 "
                 f"{_span(r[s_short])} at {s_short} token{'' if s_short == 1 else 's'}, "
                 + ", ".join(f"{_span(r[s], '{:.2f}')} at {s}" for s in s_rest)
                 + (": the same rule." if same else ": a different crossover, which `fit` does not yet follow."))
    return _wrap(text)


# pack_bench.py runs reduced to the 2-bit against int8 latency (``--models minilm --variants
# int8,ternary2,binary1,nbits2_ternary,nbits2_binary``) on kinds of CPU the main file was not measured on
PACK_NBITS_SIDE_RUNS = ("pack_bench_nbits_zen3.json", "pack_bench_nbits_zen4.json")


def render_published_devices(results: Path) -> str:
    """Bolt's published figures against the projections, from published_devices.json."""
    d = _load(results, "published_devices.json")
    rows = [r for r in d["rows"] if r.get("implied_over_peak") is not None]
    socs = " and ".join(dict.fromkeys(r["soc"] for r in rows))
    cores = " and ".join(dict.fromkeys(r["core"] for r in rows))
    engine = " and ".join(dict.fromkeys(r["engine"].split()[0] for r in rows))
    shape = d["model_assumed"]["name"].split(" (")[0]
    over = [r["implied_over_peak"] for r in rows]
    gap = [r["host_efficiencies_over_published"] for r in rows]
    smaller = f", so {engine}'s model must be smaller than that shape" if min(over) > 1 else ""
    text = (f"`benchmarks/published_devices.py` puts {engine}'s published TinyBERT figures on the {socs} beside the "
            f"projections (`{SRC}/published_devices.json`, {_date(d.get('created_utc'))}; {engine} is not ONNX Runtime, "
            f"and the figures imply {_span(over, '{:.1f}')}x the {cores}'s peak at the assumed {shape} shape{smaller}: "
            f"the {_span(gap, '{:.1f}')}x gap to the host-efficiency projection is not a measure of the cost model).")
    return _wrap(text)


_PACK_ROWS = {"pack-memory": "memory", "pack-exact": "exact", "pack-speed": "speed with its opset 17 -> 25 upgrade",
              "pack-densest": "densest at 5 trits a byte", "pack-binary": "binary", "pack-split-binary": "split-binary"}


def render_big_models(results: Path) -> str:
    """Every pass on files over 2 GB, from big_models.json (XLM-R-large from its re-run when that file is there)."""
    b = _load(results, "big_models.json")
    rerun = results / "big_models_xlmr_rerun.json"
    rr = json.loads(rerun.read_text()) if rerun.exists() else None
    if rr and rr.get("created_utc", "") < b.get("created_utc", ""):
        rr = None  # big_models.json was re-run after the side run: its own XLM-R rows are the newer

    def steps(d: dict, model: str) -> dict:
        return {r["step"]: r for r in d["table"] if r["model"] == model}

    bl, xl = steps(b, "bert-large"), steps(rr or b, "xlmr-large")
    sb, sx = b["results"]["bert-large"]["shape"], b["results"]["xlmr-large"]["shape"]
    files = b["results"]["xlmr-large"]["export"].get("data_files")

    def held(r: dict) -> bool:  # an int8 row over the streaming goal: ORT's quantizer held the model (older runs)
        return r["step"] == "int8" and (r.get("rss_over_input") or 0) > 1.5

    def streaming(t: dict) -> list[dict]:  # passes over the exported file (repack's input is pack's output)
        return [r for s, r in t.items() if s != "export" and not s.startswith("repack") and not held(r)
                and r.get("rss_over_input") is not None]

    equal = [t[s]["max_diff"] for t in (bl, xl) for s in ("slice", "prune-heads", "prune-ffn", "reorder") if s in t]
    gate = [r["gate_rss_over_input"] for t in (bl, xl) for r in t.values() if r.get("gate_rss_over_input") is not None]
    loads = [r["load1"] for r in b["table"] if r.get("load1") is not None]
    ok = all(r.get("ok") and r.get("verified") for t in (bl, xl) for s, r in t.items() if s != "export")
    text = (f"**Files over 2 GB** (`benchmarks/big_models.py`, `{SRC}/big_models.json`, {_date(b['created_utc'])}, "
            f"{_cpu_of(b)}{' while other jobs shared it' if max(loads, default=0) > 2 else ', quiet'}, "
            f"{_load_span(loads)}): a BERT-large shape "
            f"({sb['layers']}x{sb['hidden']}, {bl['export']['output_mb'] / 1000:.2f} GB) and an XLM-R-large shape (vocab "
            f"{sx['vocab']:,}, {xl['export']['output_mb'] / 1000:.2f} GB"
            + (f", external data in {files} files from `torch.onnx.export`" if files else "")
            + ") go through every pass: slice, prune-heads, prune-ffn, reorder, pack ("
            + ", ".join(_PACK_ROWS[s] for s in _PACK_ROWS if s in bl and s in xl)
            + f"), int8 and fp16, each {'verified by the gate' if ok else 'run through the gate'}; "
            f"slice, prune and reorder outputs equal the PyTorch references within {_sci(max(equal))}, outputs over 1.8 GB "
            "of weights are written with their own external-data file. The passes stream their weights (see \"Passes "
            "at file speed\" below): peak memory of the pass's process is "
            f"{_span([r['rss_over_input'] for r in streaming(bl)])}x the input file on BERT-large "
            f"({_span([r['peak_rss_gb'] for r in streaming(bl)])} GB) and "
            f"{_span([r['rss_over_input'] for r in streaming(xl)])}x on XLM-R-large "
            f"({_span([r['peak_rss_gb'] for r in streaming(xl)])} GB")
    if rr:
        rl = [r["load1"] for r in rr["table"] if r.get("load1") is not None]
        text += (f"; re-run after the last two memory fixes, `{SRC}/{rerun.name}`, {_date(rr['created_utc'])} "
                 f"{rr['created_utc'][11:16]} UTC, {_load_span(rl)}")
    text += ")"
    walls = [r["wall_s"] for t in (bl, xl) for s, r in t.items() if s != "export" and r.get("wall_s") is not None]
    if walls:
        text += f"; each pass's process took {_span(walls, '{:.1f}')} s"
    i8 = [t["int8"] for t in (bl, xl) if "int8" in t and held(t["int8"])]
    if i8:
        text += (", except int8: " + " and ".join(f"{r['rss_over_input']:.1f}x ({r['peak_rss_gb']:.2f} GB)" for r in i8)
                 + ", ONNX Runtime's quantizer holding the fp32 model in memory")
    text += f". The gate's own process peaks at {_span(gate)}x the input."
    rp = [(m, t["repack-memory"], b["results"][m]["passes"].get("repack-memory", {})) for m, t in
          (("bert-large", bl), ("xlmr-large", xl)) if "repack-memory" in t]
    if rp:
        text += (" `repack --runtime memory` of pack-speed's output: " + "; ".join(
            f"{m} {r['wall_s']:.1f} s, peak {r['peak_rss_gb']:.2f} GB ({r['rss_over_input']:.1f}x its "
            f"{full.get('input', {}).get('bytes', 0) / 1e6:.0f} MB packed input), outputs "
            + ("equal to pack-memory's" if full.get("max_abs_diff_to_pack-memory") == 0
               else f"{_sci(full.get('max_abs_diff_to_pack-memory', float('nan')))} from pack-memory's")
            for m, r, full in rp) + ".")
    # the XLM-R rows come from the re-run when it is there: so do its differences from the references
    off = ([x for x in b.get("not_equal_to_reference", []) if not rr or x["model"] != "xlmr-large"]
           + (rr or {}).get("not_equal_to_reference", []))
    for x in off:
        c = x["check"]
        text += (f" {x['model']} {x['step']} differs from its reference by {_sci(c['max_abs_diff'])} (tolerance "
                 f"{c['tol']:g})")
        if "codes_differing_from_float64_twn" in c:
            text += (f": {c['codes_differing_from_float64_twn']} weights sit within float rounding of TWN's "
                     "threshold, which the packer and the reference compute with different roundings; with the "
                     f"packer's codes in torch the difference is {_sci(c['max_abs_diff_vs_packer_codes_in_torch'])}")
        text += "."
    return _wrap(text)


def render_alibi_export(results: Path) -> str:
    """A whole 8192-position ALiBi buffer through every exporter, beside plain torch.onnx.export, from
    alibi_export.json."""
    d = _load(results, "alibi_export.json")
    sh, ex = d["shape"], d["exports"]
    ours = {k[len("deploytool-"):]: r for k, r in ex.items() if k.startswith("deploytool-")}
    peer = ex.get("torch.onnx.export", {})
    dyn = ex.get("torch.onnx.export (dynamo)", {})
    re_ = ex.get("deploytool reorder of the dynamo export", {})
    ok = {k: r for k, r in ours.items() if r["exit"] == 0}
    diffs = [x for r in ok.values() for x in (r.get("max_abs_diff") or {}).values()]
    assert len(diffs) == len(ok) * len(d["lengths"]), "an export that was written has no comparison with PyTorch"
    sizes = [sum(r["files"].values()) / 1e6 for r in ok.values()]
    lengths = " and ".join(f"{n:,}" for n in d["lengths"])
    failed = [f"{k} (exit {r['exit']}: {r['error']})" for k, r in ours.items() if r["exit"] != 0]
    peer_text = ("plain `torch.onnx.export` (TorchScript, to a file path) of the same model failed (\"" 
                 + peer["error"].rstrip(".") + "\")" if peer.get("exit") else
                 f"plain `torch.onnx.export` of the same model wrote {sum(peer['files'].values()) / 1e9:.2f} GB")
    return _wrap(
        f"**A whole ALiBi buffer** (`benchmarks/alibi_export.py`, `{SRC}/alibi_export.json`, "
        f"{_date(d['created_utc'])}, {_cpu_of(d)}): a jina-embeddings-v2-base shape (Jina's wiring restated, "
        f"{sh['num_hidden_layers']}x{sh['hidden_size']}, {sh['max_position_embeddings']:,} positions, random weights "
        f"of {d['weights_bytes'] / 1e6:.0f} MB) whose `alibi` buffer holds {d['buffer_bytes'] / 1e9:.2f} GB. "
        f"`deploytool export --trust-remote-code` wrote it with {', '.join(ok)} in "
        f"{_span([r['wall_s'] for r in ok.values()], '{:.0f}')} s each (peak "
        f"{_span([r['peak_rss_gb'] for r in ok.values()], '{:.1f}')} GB) as {_span(sizes, '{:.0f}')} MB files that equal "
        f"PyTorch at {lengths} tokens within {_sci(max(diffs))}"
        + (f"; failed: {'; '.join(failed)}" if failed else "")
        + f". In the same run {peer_text}"
        + (f"; the dynamo exporter wrote {sum(dyn['files'].values()) / 1e9:.2f} GB (external data), which "
           f"`deploytool reorder` took in {re_['wall_s']:.1f} s (peak {re_['peak_rss_gb']:.1f} GB) to a "
           f"{sum(re_['files'].values()) / 1e6:.0f} MB file equal to PyTorch within "
           f"{_sci(max(re_['max_abs_diff'].values()))} (every pass writes the table as its computation)"
           if dyn.get("exit") == 0 and re_.get("exit") == 0 and re_.get("max_abs_diff") else "")
        + ".")


def render_bench_cache(results: Path) -> str:
    """Many models in one bench: each mode's latency over each model's alone, from bench_cache.json."""
    d = _load(results, "bench_cache.json")
    seqs = [str(x) for x in d["seq_lens"]]

    def worst(name: str, s: str) -> str:
        rows = [r for r in d["rows"] if r["mode"] == name and str(r["seq_len"]) == s]
        r = max(rows, key=lambda r: r["p50_over_alone"])
        return f"{r['model']}, {r['bytes'] / 1e6:.0f} MB"

    def mode(name: str, named: bool = False) -> str:
        v = d["summary"][name]["by_seq_len"]
        return "; ".join(f"at {s} tokens {v[s]['p50_over_alone']['median']:.2f}x (worst {v[s]['p50_over_alone']['worst']:.2f}x"
                         + (f": {worst(name, s)}" if named else "") + f", p90 {v[s]['p90_over_alone']['median']:.2f}x)"
                         for s in seqs)

    default = d["default_mode"]
    others = [n for n in d["summary"] if n != default]
    ctl = d["alone_control"]
    st = d.get("settling") or {}
    cfg = d["default_config"]
    return _wrap(
        f"**Many models in one bench** (`benchmarks/bench_cache.py`, `{SRC}/bench_cache.json`, {_date(d['created_utc'])}, "
        f"{_cpu_of(d)}): {d['models']} MiniLM-L6 variants (the quickstart's widths, depths and precisions) in one worker, "
        f"{d['runs']} timed runs per model and segment, {d['threads']} thread, {d['cycles']} cycles. Each way of ordering "
        f"the runs is compared per model with the model alone (its runs back to back after {d['alone_warmup']} untimed "
        f"runs, as `bench` times one model) in the segments just before and after it; the figure is the median model's "
        f"ratio of p50s. The default (`--schedule {cfg['schedule']} --block-runs {cfg['block_runs']} "
        f"--prime-runs {cfg['prime_runs']}`): **{mode(default, named=True)}** (goal: median within "
        f"{d['goal']['median_max']:.2f}x, worst within {d['goal']['worst_max']:.2f}x: "
        f"{'met' if d['goal_met'] else 'NOT met'}). "
        + " ".join(f"{n[0].upper() + n[1:]}: {mode(n)}." for n in others)
        + " Alone against alone (the noise floor): " + "; ".join(
            f"at {s} tokens {ctl[s]['median']:.2f}x [{ctl[s]['min']:.2f}-{ctl[s]['worst']:.2f}]" for s in seqs) + "."
        + (" Run after run right after the other models, a model had settled (that run and the next two within 10% "
           f"of the median of its last quarter of {d['settle_runs']} runs in a row; runs counted from 0) at run " + "; ".join(
               f"{st[s]['runs_to_within_10pct']['median']:g} for the median model at {s} tokens (the slowest, "
               f"{st[s]['runs_to_within_10pct']['slowest']} of {st[s]['runs_to_within_10pct']['slowest_bytes'] / 1e6:.0f} MB, "
               f"at run {st[s]['runs_to_within_10pct']['max']})" for s in seqs) + "."
           if st else ""))


def _sci(x: float) -> str:
    """4.5e-6, not 4.5e-06."""
    return f"{x:.1e}".replace("e-0", "e-").replace("e+0", "e+")


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _cpu_of(d: dict) -> str:
    """The CPU a results file was measured on: its own host block, else its run block's (benchmarks/_stamp.py),
    with family and model, so that figures from different machines of the same name tell themselves apart."""
    h = d.get("host") or {}
    name = h.get("cpu_model") or h.get("model_name") or "CPU not recorded"
    if h.get("family") is None:
        run_cpu = (d.get("run") or {}).get("cpu") or {}
        if run_cpu.get("family") is not None:
            h = {**run_cpu, **{k: v for k, v in h.items() if v is not None}}
            name = h.get("cpu_model") or h.get("model_name") or name
    if h.get("family") is not None and h.get("microarchitecture"):
        arch = h["microarchitecture"]
        name += f" (family {h['family']} model {h.get('model')}" + ("" if arch == "unknown" else f", {arch}") + ")"
    return name


def render_cost_model(results: Path) -> str:
    """The cost model's error on the host rows, from cost_model_error.json (and the busy run beside it)."""
    d = _load(results, "cost_model_error.json")
    loads = [m[k]["loadavg"][0] for m in d.get("machine", []) for k in ("before", "during") if k in m]
    g = d["goal"]
    seq = d["by_seq_len"]
    rows = d["rows"]
    threads = list(dict.fromkeys(r["threads"] for r in rows))
    setup = ("`benchmarks/cost_model_error.py` measures the error on MiniLM "
             f"{'/'.join(dict.fromkeys(r['precision'] for r in rows))} x seq "
             f"{'/'.join(str(s) for s in dict.fromkeys(r['seq_len'] for r in rows))} x the quickstart's width/depth "
             f"variants ({len(rows)} rows, {'/'.join(map(str, threads))} thread{'' if threads == [1] else 's'}; goal: "
             f"median |error| <= {_pct(g['median_abs_error'])}, worst <= {_pct(g['worst_abs_error'])}). ")
    text = setup + (f"Measured {_date(d['created_utc'])} ({_cpu_of(d)}, {d.get('schedule', 'interleaved')} schedule, "
            f"{_load_span(loads or d['load_average_end'][0])}; {d['busy_runs']} of {d['runs_total']} runs flagged busy or "
            f"noisy; `benchmarks/results/cost_model_error.json`): host-rates median |error| **{_pct(d['median_abs_error'])}**, "
            f"worst **{_pct(d['worst_abs_error'])}** against the measured p50 ({_pct(d['median_abs_error_vs_p10'])} / "
            f"{_pct(d['worst_abs_error_vs_p10'])} against the p10); the goal ({_pct(g['median_abs_error'])} / "
            f"{_pct(g['worst_abs_error'])}) is {'met' if d['goal_met'] else 'NOT met'} on this run. "
            + "By sequence length: " + "; ".join(f"seq {k}: median {_pct(v['median_abs_error'])}, worst {_pct(v['worst_abs_error'])}"
                        for k, v in seq.items())
            + ".")
    fc = d.get("previous")
    if fc:  # the rules before 2026-12-06, projected from the same runs
        text += (f" The rules before 2026-12-06 (each GEMM by its FLOPs alone on its footprint's curve; a fused "
                 f"Attention without its softmax and head moves) on the same runs: median "
                 f"{_pct(fc['median_abs_error'])}, worst {_pct(fc['worst_abs_error'])} ("
                 + "; ".join(f"seq {k}: {_pct(v['median_abs_error'])} / {_pct(v['worst_abs_error'])}"
                             for k, v in fc["by_seq_len"].items()) + ").")
    text += (f" The old roofline on the same rows: median {_pct(d['roofline_median_abs_error'])}, worst "
             f"{_pct(d['roofline_worst_abs_error'])}.")
    drift = (d.get("host_drift") or {}).get("gemm")
    if drift:  # the machine's own movement between the microbenchmark and the rows
        text += (f" The host microbenchmark re-run after the rows timed its GEMMs at {drift['median_after_over_before']:.2f}x "
                 f"the first run's (median; {drift['low']:.2f}-{drift['high']:.2f}x): no projection from the first "
                 f"can be closer than the machine's own drift.")
    rule = results / "gemm_rule.json"
    if rule.exists():  # the GEMM rule alone, on shapes the microbenchmark did not measure
        g = json.loads(rule.read_text())
        u = g["unmeasured_shapes"]
        worst = max((r for r in g["rows"] if "(measured)" not in r["shape"]), key=lambda r: abs(r["error"]))
        text += (f" The GEMM rule alone (`benchmarks/gemm_rule.py`, {_date(g['created_utc'])}, `gemm_rule.json`): chains "
                 f"of GEMM shapes the microbenchmark did not time (MiniLM slices', BERT-base's attention, BERT-large's; fp32 and int8, "
                 f"M = {'/'.join(str(m) for m in dict.fromkeys(r['m'] for r in g['rows']))}) against their projection: "
                 f"median |error| {_pct(u['rows_and_weights']['median_abs_error'])}, worst "
                 f"{_pct(u['rows_and_weights']['worst_abs_error'])} ({worst['precision']} {worst['shape']} at M = "
                 f"{worst['m']}); by FLOPs alone, the previous rule: {_pct(u['flops_curve']['median_abs_error'])} / "
                 f"{_pct(u['flops_curve']['worst_abs_error'])}.")
        if "rows_and_weights_net_of_drift" in u:
            n, f = u["rows_and_weights_net_of_drift"], u["flops_curve_net_of_drift"]
            text += (f" Net of the machine's drift since the microbenchmark (each error over the measured shapes' own in "
                     f"the same run): {_pct(n['median_abs_error'])} / {_pct(n['worst_abs_error'])}, by FLOPs "
                     f"{_pct(f['median_abs_error'])} / {_pct(f['worst_abs_error'])}.")
    busy = results / "cost_model_error_interleaved.json"
    if busy.exists():
        b = json.loads(busy.read_text())
        bl = [m[k]["loadavg"][0] for m in b.get("machine", []) for k in ("before", "during") if k in m]
        text += (f" On a busy machine the same code is far off: {_date(b['created_utc'])}, {_load_span(bl)}, the "
                 f"precisions interleaved run by run gave {_pct(b['median_abs_error'])} / {_pct(b['worst_abs_error'])} "
                 f"(`cost_model_error_interleaved.json`): measure at a quiet moment (`--wait-s`).")
    return text


def _hygiene_run2(r: dict) -> str:
    """The earlier round-by-round run under steady contention (bench_hygiene_run2.json)."""
    ratios: dict[str, list[float]] = {}
    for rnd in r["rounds"]:
        for mode, v in rnd["modes"].items():
            ratios.setdefault(mode, []).extend(m["p50_over_alone"] for m in v["models"].values())
    others = [m[k]["other_runnable_mean"] for rnd in r["rounds"] for m in rnd["machine"].values()
              for k in ("before", "during") if k in m and m[k].get("other_runnable_mean") is not None]
    names = [("interleaved/session", "per-session pools"), ("interleaved/shared", "shared pool"),
             ("blocks/shared", "blocks on a shared pool")]
    text = (f"An earlier run under steady contention with the older round-by-round design ({_date(r['created_utc'])}, "
            + (f"{_span(others, '{:.0f}')} other runnable task(s); " if others else "")
            + f"`bench_hygiene_run2.json`, p50 over alone of both models in {len(r['rounds'])} rounds) gave: "
            + ", ".join(f"{label} {_span(ratios[m])}x alone" for m, label in names if m in ratios))
    if "interleaved/session/no-spin" in ratios:
        text += (f"; `allow_spinning=0` {_span(ratios['interleaved/session/no-spin'])}x \"alone\", because spinning "
                 "pools are what a busy machine punishes most")
    return text + "."


def render_hygiene(results: Path) -> str:
    """Several models at several threads against each alone, from bench_hygiene.json."""
    d = _load(results, "bench_hygiene.json")
    sm = d["summary"]
    names = d["models"]
    loads = [r[k]["loadavg"][0] for r in d["rounds"] for k in ("before", "after") if k in r]

    def cell(mode: str, spread: bool = True) -> str:
        parts = []
        for n in names:
            v = sm[mode]["models"][n]["p50_over_alone"]
            parts.append(f"{v['median']:.2f}x" + (f" [{v['p10']:.2f}-{v['p90']:.2f}]" if spread else ""))
        return " and ".join(parts)

    default = d["default_mode"]
    labels = {"blocks/shared/primed": "blocks of 10 on a shared pool, each after 3 untimed runs of its model",
              "interleaved/shared": "one shared pool, interleaved", "blocks/shared": "blocks on a shared pool",
              "blocks/session": "blocks on per-session pools",
              "interleaved/session/no-spin": "per-session pools without spinning",
              "interleaved/session": "per-session pools interleaved (the old behaviour)"}
    others = [m for m in labels if m != default and m in sm]
    alone = {n: [x for r in d["rounds"] for x in (r.get("alone_p50_ms_range") or {}).get(n, [])] for n in names}
    text = (f"The latest run ({_date(d['created_utc'])}, {_cpu_of(d)}, {d['usable_cores']} usable cores, "
            f"{_load_span(loads or d['load_average_end'][0])}, {' and '.join(f'`{n}`' for n in names)} at seq "
            f"{d['seq_len']}, {d['threads']} threads, {d['rounds_n']} rounds x {d['cycles']} cycles; "
            f"`benchmarks/results/bench_hygiene.json`), median [p10-p90] of the per-segment p50 ratio to alone: the "
            f"default, {labels.get(default, default)}, **{cell(default)}**"
            + (f" (paired-ratio error {sm[default]['paired_ratio_error']['median']:+.1%})"
               if "paired_ratio_error" in sm[default] else "")
            + f": {'within' if d['goal_met'] else 'NOT within'} 10% of alone; "
            + "; ".join(f"{labels[m]} {cell(m, spread=m == 'blocks/shared')}" for m in others)
            + f". The control (alone against alone): {cell('alone (control)')}")
    if all(alone.values()):
        text += ", while the alone p50 itself ranged " + ", ".join(
            f"{min(v):.1f}-{max(v):.1f} ms ({n})" for n, v in alone.items())
    text += "."
    run2 = results / "bench_hygiene_run2.json"
    if run2.exists():
        text += "\n\n" + _hygiene_run2(json.loads(run2.read_text()))
    return text


def render_pass_speed(results: Path, name: str = "pass_speed.json") -> str:
    """Each pass on the BERT-base shape against ``cp`` of the same file, from pass_speed.json (or ``name``: the same
    benchmark on another CPU)."""
    d = _load(results, name)
    rows = {r["pass"]: r for r in d["summary"]}
    g = d["goals"]
    mb = d["model"].get("bytes", 0) / 1e6 if isinstance(d.get("model"), dict) else 0
    # "int8-ort" is the int8 pass with --engine ort (ORT's optimizer and quantizer), kept as the peer
    ok_mem = [n for n, r in rows.items() if r["rss_x_file"] <= g["peak_rss_over_file_max"]]
    over = [f"{n} {r['rss_x_file']:.2f}x ({r['peak_rss_mb'] / 1000:.2f} GB)" for n, r in rows.items()
            if r["rss_x_file"] > g["peak_rss_over_file_max"]]
    fast = [n for n, r in rows.items() if r["without_gate_x_copy"] <= g["time_over_copy_max"]]
    slow = [f"{n} {r['without_gate_x_copy']:.1f}x" for n, r in rows.items()
            if r["without_gate_x_copy"] > g["time_over_copy_max"]]
    ch = d["chain"]
    text = (f"Measured {_date(d['created_utc'])} ({_cpu_of(d)}, "
            f"{_load_span(d['load_average_start'][0], d['load_average_end'][0])}; `benchmarks/results/{name}`), "
            f"the BERT-base shape ({mb:.1f} MB, in the page cache; `cp` {d['copy']['cp_median_s']:.3f} s), each pass in a "
            f"fresh process: peak memory of the pass's process **{_span([r['rss_x_file'] for r in rows.values()])}x "
            f"the file**; {len(ok_mem)} of {len(rows)} within the {g['peak_rss_over_file_max']:g}x goal "
            f"({', '.join(ok_mem)})")
    if over:
        text += (f"; over it: {', '.join(over)}" + (" (int8-ort: `--engine ort`, ONNX Runtime's optimizer and "
                 "quantizer holding the fused graph in memory)" if "int8-ort" in rows else ""))
    text += (f". The verification gate runs in a process of its own and peaks at "
             f"{_span([r['gate_rss_x_file'] for r in rows.values()])}x the input. ")
    goal = g["time_over_copy_max"]
    met = [f"{n} {r['x_copy']:.1f}x" for n, r in rows.items() if r["x_copy"] <= goal]
    missed = [f"{n} {r['x_copy']:.1f}x" for n, r in rows.items() if r["x_copy"] > goal]
    rounds = d.get("rounds")
    paired = d["copy"].get("paired_cp_s") is not None
    text += ("Whole processes (interpreter start, imports, load, pass, write and gate"
             + (f"; the median of {rounds} rounds" if rounds else "")
             + (", each run over the cp timed right before it" if paired else "") + ") took "
             f"{_span([r['wall_s'] for r in rows.values()], '{:.1f}')} s: **the time goal ({goal:g}x the copy) "
             + (f"is met by {', '.join(met)}" if met else "is met by none")
             + (f"; missed by {', '.join(missed)}**" if missed else "**") + ". "
             + (("In the run's quietest moments (each pass's fastest run over the fastest cp): "
                 + ", ".join(f"{n} {r['x_copy_best']:.1f}x" for n, r in rows.items()) + ". ")
                if all(r.get("x_copy_best") is not None for r in rows.values()) else "")
             + "The imports take "
             f"{_span([r['imports_s'] for r in rows.values()], '{:.1f}')} s and the gate "
             f"{_span([r['gate_s'] for r in rows.values()], '{:.1f}')} s of that. Load, transform and write alone meet "
             + (f"{goal:g}x for every pass. " if not slow else
                f"{goal:g}x for {', '.join(fast) or 'none'}; not for {', '.join(slow)}. ")
             )
    cli = d.get("cli") or {}
    if cli:
        c_met = [f"{n} {c['time_over_copy']:.1f}x" for n, c in cli.items() if c["ok"] and c["goal_time_met"]]
        c_missed = [f"{n} {c['time_over_copy']:.1f}x" for n, c in cli.items() if c["ok"] and not c["goal_time_met"]]
        c_failed = [n for n, c in cli.items() if not c["ok"]]
        text += (f"As commands (`deploytool slice`, `quantize --int8`, `pack --weights ternary`, ... in the same rounds), "
                 f"{_span([c['process_wall_s'] for c in cli.values()], '{:.1f}')} s: within {goal:g}x the copy "
                 + (', '.join(c_met) or 'none') + "; over it " + (', '.join(c_missed) or 'none')
                 + (f"; FAILED {', '.join(c_failed)}" if c_failed else "") + ". ")
    text += (f"A chained slice then pack (two processes) took {ch['chain_wall_s']:.1f} s against "
             f"{ch['sum_of_single_passes_s']:.1f} s for the two passes alone"
             f"{', within the sum' if ch['goal_within_sum_met'] else ', NOT within the sum'}.")
    peers = [(n, p) for n, p in (d.get("peers") or {}).items() if p.get("ok")]
    if peers:  # what the same file costs without deploytool, in the same rounds
        text += (" Beside them, in the same rounds, the file loaded whole and saved again in a fresh process: "
                 + "; ".join(f"`{n.replace('+', ' + ')}` {p['process_wall_s']:.1f} s ({p['time_over_copy']:.1f}x the "
                             f"copy), peak memory {p['peak_rss_over_file']:.1f}x the file" for n, p in peers) + ".")
    return text


def render_overwrite(results: Path) -> str:
    """A pass run again onto its previous output, from overwrite.json."""
    d = _load(results, "overwrite.json")
    run = d["run"]
    rows = d["summary"]
    text = (f"**Run again onto its previous output** (`benchmarks/overwrite.py`, {_date(d['created_utc'])}, "
            f"{_cpu_of(d)}, {_load_span(run['load_average_start'][0], run['load_average_end'][0])}; "
            f"`benchmarks/results/overwrite.json`): each pass in a fresh process onto a missing destination and "
            f"onto its previous output, written back to disk first, {d['repeats']} rounds. Renaming the old file "
            "aside and leaving its removal to a detached `rm` (the default) against the plain `os.replace` before it: "
            + "; ".join(f"{r['pass']} ({r['output_bytes'] / 1e6:.0f} MB) {r['existing_inline_median_s']:.2f} -> "
                        f"{r['existing_median_s']:.2f} s ({r['inline_over_fresh']:.2f}x -> {r['existing_over_fresh']:.2f}x "
                        f"the same pass onto a missing file, {r['saved_s']:.2f} s saved)" for r in rows)
            + f". `cp` onto an existing, written-back file took {d['cp_existing_over_fresh']:.1f}x its time onto a "
            "missing one in the same rounds. "
            + ("No file renamed aside was left behind." if not d["files_left_aside"] else
               f"LEFT BEHIND: {', '.join(d['files_left_aside'])}."))
    return _wrap(text)


# pass_speed_ab.py's results the README quotes, newest change first: (file, what changed between its two trees)
PASS_SPEED_AB = (("pass_speed_ab_zen4_since_757de1c.json", "the code of the AMD EPYC (zen4) pass-speed run above "
                  "against the code of that machine's run before it (757de1c, 2026-12-07; since then the program's "
                  "kill journal, the forked gate process, pack's compiled kernels): both trees ran slower against cp on "
                  "this VM than that run did (so did ONNX's own load + save, above), so the figures above moved with the "
                  "machine, not the code"),
                 ("pass_speed_ab_forked_gate.json", "a session's changes against its first commit: a big model's gate process "
                  "forked from the pass's process instead of a fresh interpreter (numpy, onnx, onnx-ir and the pass's code "
                  "are not imported again), pack importing only its own pass module, its input's data files not scanned "
                  "twice, TWN codes counted in their loop and INT2 bytes written by a compiled loop (that last one withdrawn "
                  "after: the writer sits below the layer that holds the kernels); the passes that "
                  "build no reference of their own (all but pack) gain only the gate's imports, which ran beside the "
                  "pass on the other core: their ratios stay within their rounds' spread"),
                 ("pass_speed_ab_kernels.json", "pack's ternary and binary quantizers and its 2-bit and trit packers in "
                  "compiled loops (deploytool/quant/_kernels.c; the same bytes, checked by sha256) against the numpy "
                  "code, on the Emerald Rapids VM"),
                 ("pass_speed_ab_session_changes.json", "a day's changes to every pass's contract (exports keeping "
                  "initializers as inputs or unfolded constants read through three graph rewrites before each pass, "
                  "int8 and pack merging stored copies of a weight on their input, deploytool's temporary folders "
                  "listed for removal at exit, environment switches read in one module) against the day's first "
                  "commit; the VM was slower than that morning (cp 0.15-0.19 s against 0.12 s)"),
                 ("pass_speed_ab_upgrade_shortcut.json", "pack's opset upgrade bumping the opset alone where no kind "
                  "of node would change (the upgrade itself 0.13 -> 0.05-0.07 s), and int8 and pack upcasting an fp16 "
                  "input first (nothing to do on these fp32 files): pack's wall did not move, its pass finished "
                  "sooner and its gate waited longer (the gate's process, which quantizes the weights again for its "
                  "reference, ends last)"),
                 ("pass_speed_ab_packed_loader.json", "the loader keeping INT2 weights packed over the file "
                  "(pack's own output, read back as its result, included), pack's memory runtime folding the bias "
                  "Add into MatMulNBits and repack added"),
                 ("pass_speed_ab_pair_lookup.json", "pack's whole weights unpacked two bytes at a time, and the gate's "
                  "reference in memory computed in two threads once the output arrives (one before: the pass runs on "
                  "the other core), nothing of it computed while its graph is serialized, split-binary table rows "
                  "gathered as codes"),
                 ("pass_speed_ab_reference_unpaced.json", "the same with the reference on two threads from the start "
                  "(not kept: it took the pass's core)"),
                 ("pass_speed_ab_input_skeleton.json", "the gate's input skeleton taken as the loader scanned it "
                  "instead of serialized again (it touches every pass's gate: no control; the check of that day's "
                  "pass_speed run had flagged fp16 in a slow spell of the VM)"),
                 ("pass_speed_ab_binary_signs.json", "binary packing's signs in the weight's own memory order (a "
                  "regression of b9a2e8c mended)"),
                 ("pass_speed_ab_gc_pause.json", "the pass runner pausing the garbage collector's automatic runs "
                  "(one young-generation collection before a big model's write)"),
                 ("pass_speed_ab_int8_probes.json", "the int8 planner's probes in ONNX Runtime instead of ONNX's "
                  "reference evaluator"),
                 ("pass_speed_ab.json", "split-binary packing block by block"))


def render_pass_speed_ab(results: Path) -> str:
    """Changes' effects on pass speed, each before and after in one run, from pass_speed_ab.py's results files."""
    parts = []
    for name, change in PASS_SPEED_AB:
        d = _load(results, name)
        mb = d["model"]["bytes"] / 1e6
        rows = []
        for row in d["summary"]:
            b, t = row["base"], row["this"]
            if not (b.get("median_wall_s") and t.get("median_wall_s")):
                rows.append(f"{row['pass']} FAILED")
                continue
            ratios = row["ratio_this_over_base"]
            rows.append(f"{row['pass']} {b['median_wall_s']:.2f} -> {t['median_wall_s']:.2f} s ({b['median_x_copy']:.1f}x -> "
                        f"{t['median_x_copy']:.1f}x the copy; this / base {row['median_ratio']:.2f}, rounds "
                        f"{_span(ratios, '{:.2f}')})" + ("" if b["ok"] and t["ok"] else " (a run FAILED)"))
        code = (d.get("run") or {}).get("code") or {}
        commit = code.get("commit")
        this = (f"`{commit[:7]}`" + (" with uncommitted changes" if code.get("dirty") else "")) if commit \
            else "the tree it ran in"
        parts.append(
            f"{change[:1].upper() + change[1:]} ({_run_when(d) or 'date not recorded'}; `{SRC}/{name}`): the same passes on the BERT-base shape "
            f"({mb:.1f} MB) from `{d['base']['commit'][:7]}` and from {this}, {d['rounds']} rounds; medians: "
            + "; ".join(rows) + ".")
    return _wrap(
        "**Before and after, in one run** (`benchmarks/pass_speed_ab.py`: each pass in a fresh process, the two trees "
        "interleaved with the order swapped every round, each run over a cp timed right before it; passes whose code "
        "did not change are the control). " + " ".join(parts))


def _na_reasons(cells: list[dict]) -> str:
    """Why the matrix's n/a cells could not run (the exporter's or ORT's optimizer's own failure), grouped."""
    unsupported: list[str] = []
    optimizer: dict[str, set[str]] = {}
    other: list[str] = []
    invalid: dict[str, list[str]] = {}  # exporter -> models whose export ONNX Runtime cannot load
    unrunnable: dict[str, list[str]] = {}  # ... loads but cannot run on the cells' padded batch
    undeclared: dict[tuple[str, str], list[str]] = {}  # (model, inputs) -> exporters declaring inputs not fed
    encoder_decoder: dict[str, list[str]] = {}  # exporter -> models it exports only with their decoder
    no_library: dict[str, list[str]] = {}  # model -> optimum exporters that know no library for it (custom code)
    no_op: dict[tuple[str, str, str], list[str]] = {}  # (model, aten op, opset) -> exporters that cannot write it
    for c in cells:
        if c["status"] != "n/a":
            continue
        d = c["detail"]
        if "optimum always exports the attention mask" in d:
            phrase = "optimum always exports the mask (the input_ids-only case)"
            if phrase not in other:
                other.insert(0, phrase)
        elif m := re.search(r"Trying to export a (\S+) model, that is a custom or unsupported architecture", d):
            if m[1] not in unsupported:
                unsupported.append(m[1])
        elif "library name could not be automatically inferred" in d:
            exporters = no_library.setdefault(c["model"], [])
            if c["exporter"] not in exporters:
                exporters.append(c["exporter"])
        elif m := re.search(r"Exporting the operator '(\S+)' to ONNX opset version (\d+)", d):
            exporters = no_op.setdefault((c["model"], m[1], m[2]), [])
            if c["exporter"] not in exporters:
                exporters.append(c["exporter"])
        elif "Config dummy inputs are not a subset of the model inputs" in d and "decoder_input_ids" in d:
            # optimum's configuration of an encoder-decoder family (T5) exports the whole model only
            models = encoder_decoder.setdefault(c["exporter"], [])
            if c["model"] not in models:
                models.append(c["model"])
        elif d.startswith("ORT optimizer failed") and "something else than PyTorch" in d:
            m = re.search(r"max diff ([0-9.e+-]+)", d)
            phrase = (f"ORT's optimizer changes what {c['model']}'s {c['exporter']} export computes (max diff "
                      f"{m[1] if m else '?'} to PyTorch before any pass)")
            if phrase not in other:
                other.append(phrase)
        elif d.startswith("ORT optimizer failed"):
            optimizer.setdefault(c["model"].split("-seqcls")[0], set()).add(c["exporter"])
        elif m := re.search(r"declares input\(s\) (.+?) that this family's cells do not feed", d):
            exporters = undeclared.setdefault((c["model"], m[1]), [])
            if c["exporter"] not in exporters:
                exporters.append(c["exporter"])
        elif "it wrote a model ONNX Runtime cannot load" in d:
            models = invalid.setdefault(c["exporter"], [])
            if c["model"] not in models:
                models.append(c["model"])
        elif "it wrote a model ONNX Runtime cannot run" in d:
            models = unrunnable.setdefault(c["exporter"], [])
            if c["model"] not in models:
                models.append(c["model"])
        elif d[:80] not in other:
            other.append(d[:80])
    parts = list(other)
    for (model, inputs), exporters in undeclared.items():
        parts.append(f"{' and '.join(exporters)}'s {model} export{'s declare' if len(exporters) > 1 else ' declares'} "
                     f"{inputs}, which the cells do not feed")
    if unsupported:
        parts.append(f"optimum has no ONNX configuration for {' and '.join(unsupported)}")
    for model, exporters in no_library.items():
        parts.append(f"{' and '.join(exporters)} cannot export {model} (a model of its own code, not of a library "
                     "optimum knows)")
    for (model, op, opset), exporters in no_op.items():
        parts.append(f"{' and '.join(exporters)} cannot export {model} (torch has no opset-{opset} form of {op})")
    if encoder_decoder:
        verb = "exports" if len(encoder_decoder) == 1 else "export"
        parts.append(f"{' and '.join(encoder_decoder)} {verb} {' and '.join(next(iter(encoder_decoder.values())))} only "
                     "as an encoder-decoder (with decoder inputs), not the encoder alone")
    for exporter, models in invalid.items():
        parts.append(f"{exporter} writes a file ONNX Runtime cannot load for {', '.join(models)}")
    for exporter, models in unrunnable.items():
        parts.append(f"{exporter} writes a file ONNX Runtime cannot run (on a batch of two nor on one row) for "
                     f"{', '.join(models)}")
    for model, exporters in optimizer.items():
        parts.append(f"ORT's optimizer fails on {model}'s {' and '.join(sorted(exporters))} exports")
    return "; ".join(parts) or "none"


def _spliced_models(spliced: list[str], every: list[str]) -> str:
    """The models of a spliced run: "every model" when it ran them all, else their names."""
    return "every model" if set(spliced) >= set(every) else ", ".join(spliced)


def _one_row_cells(cells: list[dict]) -> str:
    """The cells run on one row (an export ONNX Runtime runs on no bigger batch; the gate checks it so), as a
    sentence; empty when none was."""
    one = [c for c in cells if "row(s): the export runs on no bigger batch" in (c.get("detail") or "")]
    if not one:
        return ""
    graphs = sorted({f"{c['model']} ({c['exporter']})" for c in one})
    return (f" {len(one):,} cells ran on one row, as their export runs on no bigger batch in ONNX Runtime and the "
            f"gate checks it so, with a note: {', '.join(graphs)}.")


def _refusal_reason(detail: str) -> str:
    """A refusal's reason in a few words: its parenthesized asides dropped, up to its first semicolon, without a
    leading "family: " or "node 'x': "; "structure finder unavailable (StructureError: <why>): without it ..." is
    <why>'s few words (the pass needed the finder and says why it failed)."""
    inner = re.match(r"structure finder unavailable \((?:\w+Error: )?(.*)\): without it", detail)
    if inner:
        return _refusal_reason(inner.group(1))
    text = detail
    while True:  # innermost parentheses first
        shorter = re.sub(r" ?\([^()]*\)", "", text)
        if shorter == text:
            break
        text = shorter
    text = text.split(" (", 1)[0]  # one left open: the detail was cut short
    text = re.sub(r"^node '[^']*': ", "", text.split(";", 1)[0].strip())
    head, _, rest = text.partition(": ")
    return rest if rest and " " not in head else text


def render_conformance(results: Path) -> str:
    d = _load(results, "conformance.json")
    sm, c = d["summary"], d["summary"]["counts"]
    refs = d["references_used"]
    names = {"dynabert-slice": "DynaBERT slice", "prune_heads": "`prune_heads`", "module-surgery": "module surgery",
             "unchanged": "unchanged model", "twn-ternary": "TWN ternary",
             "twn-ternary+rows": "TWN ternary with ternary word-embedding rows",
             "bwn-binary+rows": "BWN binary with binary word-embedding rows",
             "two-plane-binary+rows": "two binary planes (split-binary) with two-plane word-embedding rows"}
    by_family: dict[str, list[int]] = {}
    for cell in d["cells"]:
        ok_app = by_family.setdefault(cell["model"], [0, 0])
        if cell["status"] in ("equal", "close", "refused", "FAILED", "failed"):
            ok_app[1] += 1
            ok_app[0] += cell["status"] in ("equal", "close")
    full = [m for m, (ok, app) in by_family.items() if app and ok == app]
    partial = [m for m in by_family if m not in full]
    # refused by name: a family the structured passes do not edit ("deberta-v2: its disentangled attention ...")
    named = [cell for cell in d["cells"] if cell["status"] == "refused" and cell["detail"].startswith(cell["model"] + ":")
             and "not supported" in cell["detail"]]
    refused = sorted({cell["model"] for cell in named})
    other_refused = c.get("refused", 0) - len(named)
    unnamed = [cell for cell in d["cells"] if cell["status"] == "refused" and cell not in named]
    # the other refusals, by model: which passes, on which graphs (exporter, optimizer level)
    # by reason (the refusal in a few words, `_refusal_reason`): the models, passes and graphs (exporter,
    # optimizer level) it refused
    other: dict[str, tuple[set[str], set[str], set[tuple[str, str, int]]]] = {}
    for cell in unnamed:
        reason = _refusal_reason(cell["detail"])
        models, ps, graphs = other.setdefault(reason, (set(), set(), set()))
        models.add(cell["model"])
        ps.add(cell["pass_name"])
        graphs.add((cell["model"], cell["exporter"], cell["opt_level"]))
    packs = {p for p in d["passes"] if p.startswith("pack")}

    def _levels(levels) -> str:
        levels = sorted(levels)
        at = ", ".join(map(str, levels[:-1])) + (" and " if len(levels) > 1 else "") + str(levels[-1])
        return f"ORT level{'s' if len(levels) > 1 else ''} {at}"

    def _refused(why: str, models: set[str], ps: set[str], graphs: set[tuple[str, str, int]]) -> str:
        # models refused on the same passes and graphs (exporter, level) share one phrase
        groups: dict[tuple, list[str]] = {}
        for m in sorted(models):
            mine = frozenset((e, lv) for mm, e, lv in graphs if mm == m)
            mine_ps = frozenset(cell["pass_name"] for cell in unnamed if cell["model"] == m
                                and (cell["exporter"], cell["opt_level"]) in mine)
            groups.setdefault((mine_ps, mine), []).append(m)
        phrases = []
        for (mine_ps, mine), ms in groups.items():
            what = f"all {len(mine_ps)} pack runtimes" if mine_ps == packs else \
                ", ".join(p for p in d["passes"] if p in mine_ps)
            exporters = sorted({e for e, _ in mine})
            # every exporter whose graph of these models ran at all (an export ORT cannot load is n/a)
            ran = {cell["exporter"] for cell in d["cells"] if cell["model"] in ms and cell["status"] != "n/a"}
            if set(exporters) == ran and len({frozenset(lv for e2, lv in mine if e2 == e)
                                              for e in exporters}) == 1:
                where = f"every exporter's graph at {_levels({lv for _, lv in mine})}" + (
                    "" if len(ran) == len(d["exporters"]) else " (of those that load)")
            else:
                where = f"{len(mine)} graphs (" + "; ".join(
                    f"{e} at {_levels({lv for e2, lv in mine if e2 == e})}" for e in exporters) + ")"
            phrases.append(f"{' and '.join(ms)}: {what} on {where}{' each' if len(ms) > 1 else ''}")
        return "; ".join(phrases) + f": {why}"

    other_text = "; ".join(_refused(why, *v) for why, v in sorted(other.items()))
    # the passes that work on every graph of the refused families
    working = [p for p in d["passes"] if all(cell["status"] in ("equal", "close") for cell in d["cells"]
                                             if cell["model"] in refused and cell["pass_name"] == p)
               and any(cell["model"] in refused and cell["pass_name"] == p for cell in d["cells"])]
    text = (f"Measured {_date(d['date'])} ({_cpu_of(d)}, {d['machine']['cores']} cores, {d['wall_s']:,.0f} s "
            f"with {d['jobs']} processes, {_load_span(d['load_average_at_start'][0], d['load_average_at_end'][0])}"
            f"{'; ' + d['beside'] if d.get('beside') else ''}): "
            f"{sm['cells']:,} cells, **{sm['failed']} FAILED**; {c['equal']:,} equal and {c['close']:,} close (int8 activations, fp16), "
            f"**{100 * sm['equal_share']:.1f}%** of the {sm['applicable']:,} applicable cells (goal 90%); "
            f"{len(full)} of {len(by_family)} models at 100% (not: {', '.join(partial) or 'none'}). "
            + (f"{len(named):,} cells are refused by name ({', '.join(refused)}; "
               f"{' and '.join(working) or 'no pass'} {'works' if len(working) == 1 else 'work'}). " if named else "")
            + (f"{other_refused:,} {'more ' if named else ''}cells are refused in one line with nothing written ({other_text}). "
               if other_refused else "")
            + f"{c.get('n/a', 0):,} cells are n/a: {_na_reasons(d['cells'])}." + _one_row_cells(d["cells"])
            + "".join(f" {s['cells']:,} of the cells ({_spliced_models(s['models'], d['models'])} x "
                      f"{', '.join(s['exporters'])} at ORT level {', '.join(map(str, s['opt_levels']))}, "
                      f"{', '.join(s.get('passes') or ['every pass'])}) come from a run of {_date(s['run']['finished_utc'])} "
                      f"spliced in: {s['why']}." for s in d.get("spliced", []))
            + " References used: "
            + ", ".join(f"{names.get(k, k)} {v:,}" for k, v in refs.items())
            + ". Per model and exporter (equal or close / applicable cells over "
            f"{len(d['opt_levels'])} optimizer settings x {len(d['passes'])} passes; R: refused), from "
            f"`{SRC}/conformance.md`:")
    md = (results / "conformance.md").read_text().splitlines()
    start = next(i for i, line in enumerate(md) if line.startswith("| model | optimum"))
    table = []
    for line in md[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return "\n".join([_wrap(text), "", *table])


def render_conformance_settings(results: Path) -> str:
    """The export settings outside the main matrix (SETTING_EXPORTERS), from conformance_export_settings.json
    (four families, levels 0 and 99, every pass), conformance_export_settings_families.json (every other family,
    level 0), conformance_fp16_families.json and conformance_ortfp16_families.json (every family's torch fp16 export and
    ORT's --float16 file at levels 0 and 99): one row per setting over the files there are, the refusals by reason."""
    files = [(name, _load(results, name)) for name in ("conformance_export_settings.json",
                                                        "conformance_export_settings_families.json",
                                                        "conformance_fp16_families.json",
                                                        "conformance_ortfp16_families.json")
             if (results / name).exists()]
    marks = ("equal", "close", "refused", "n/a", "FAILED")
    per: dict[str, dict[str, int]] = {}
    reasons: dict[str, tuple[set[str], set[str]]] = {}
    parts = []
    for name, d in files:
        sm, c = d["summary"], d["summary"]["counts"]
        commit = ((d.get("run") or {}).get("code") or {}).get("commit") or "unknown"
        n = len(d["exporters"])
        parts.append(f"`{SRC}/{name}` ({len(d['models'])} models x {n} setting{'s' if n > 1 else ''} x ORT level"
                     f"{'s' if len(d['opt_levels']) > 1 else ''} {', '.join(map(str, d['opt_levels']))} x "
                     f"{len(d['passes'])} passes, {_date(d['date'])}, {_cpu_of(d)}, {d['wall_s']:,.0f} s, commit "
                     f"`{commit[:7]}`: {sm['cells']:,} cells, **{sm['failed']} FAILED**, {c.get('equal', 0):,} equal, "
                     f"{c.get('close', 0):,} close, {c.get('refused', 0):,} refused, {c.get('n/a', 0):,} n/a)")
        for cell in d["cells"]:
            row = per.setdefault(cell["exporter"], {})
            row[cell["status"]] = row.get(cell["status"], 0) + 1
            if cell["status"] in ("refused", "n/a"):
                models, ps = reasons.setdefault(_refusal_reason(cell["detail"]), (set(), set()))
                models.add(cell["model"])
                ps.add(cell["pass_name"])
    text = ("**Export settings** outside the matrix (`benchmarks/conformance.py --exporters`: weights also graph "
            "inputs, no constant folding, int32 inputs, a fixed sequence, dynamo at opset 21, a model exported in "
            "fp16, renamed inputs and outputs, external data, static batch 1, and the fp16 model ONNX Runtime's "
            "transformer optimizer makes with `--float16`), each cell against the same PyTorch references as the "
            "matrix (fp16 cells close to the fp32 model with fp16-rounded weights): " + "; ".join(parts) + ".")
    lines = ["| setting | " + " | ".join(marks) + " |", "|---|" + "---|" * len(marks)]
    for exporter, row in per.items():
        lines.append(f"| `{exporter}` | " + " | ".join(f"{row.get(k, 0):,}" for k in marks) + " |")
    why = "; ".join(f"{r} ({', '.join(sorted(m))}: {', '.join(sorted(p))})"
                    for r, (m, p) in sorted(reasons.items(), key=lambda kv: -len(kv[1][0])))
    return _wrap(text) + "\n\n" + "\n".join(lines) + ("\n\n" + _wrap(f"Refused or n/a, by reason: {why}.") if why else "")


def render_conformance_int8_onnx(results: Path) -> str:
    """``quantize --int8 --fusion onnx`` over the conformance graphs, from conformance_int8_onnx.json."""
    d = _load(results, "conformance_int8_onnx.json")
    c = d["summary"]["counts"]
    cells = d["cells"]
    models = sorted({x["model"] for x in cells if x["status"] in ("equal", "close")})
    cos = [float(m[1]) for x in cells if x["status"] == "close" and (m := re.search(r"min cosine ([\d.]+)", x["detail"]))]
    worst = f", the lowest cosine {min(cos):.5f}" if cos else ""
    return _wrap(
        f"**`quantize --int8 --fusion onnx`** on the same graphs (`benchmarks/conformance.py --passes int8-onnx`, "
        f"`{SRC}/conformance_int8_onnx.{{json,md}}`, {_date(d['date'])}, {d['machine']['cpu']}, {d['wall_s']:,.0f} s): "
        f"{len(d['models'])} models from {', '.join(d['exporters'])} at ORT levels "
        f"{', '.join(str(lv) for lv in d['opt_levels'])}, {d['summary']['cells']:,} cells: {c.get('close', 0):,} "
        f"close to the fp32 model (cosine at least {_min_cosine('int8-onnx')}{worst}; {len(models)} models), "
        f"{c.get('refused', 0)} refused, {c.get('FAILED', 0)} FAILED, {c.get('n/a', 0)} n/a ({_na_reasons(cells)}). "
        "Where the native writer reads the layer it writes ONNX's Attention, or keeps the one torch's opset-23 "
        "export has; elsewhere ORT's path quantizes it, with a Skip saying why."
        + "".join(f" {s['cells']:,} of the cells ({', '.join(s['models'])}) come from a run of "
                  f"{_date(s['run']['finished_utc'])} at commit `{(s['run'].get('code') or {}).get('commit', '?')[:7]}` "
                  f"spliced in: {s['why']}." for s in d.get("spliced", [])))


def _min_cosine(pass_name: str) -> float:
    """The bound the conformance harness holds a close pass to (its own table, not restated here)."""
    from deploytool.testing.conformance import MIN_COSINE

    return MIN_COSINE[pass_name]


def render_conformance_chains(results: Path) -> str:
    """Two passes in a row over the conformance graphs, from conformance_chains.json."""
    d = _load(results, "conformance_chains.json")
    sm, c = d["summary"], d["summary"]["counts"]
    per: dict[str, dict[str, int]] = {}
    for cell in d["cells"]:
        row = per.setdefault(cell["pass_name"], {})
        row[cell["status"]] = row.get(cell["status"], 0) + 1
    graphs = len({(x["model"], x["exporter"], x["opt_level"]) for x in d["cells"]})
    commit = ((d.get("run") or {}).get("code") or {}).get("commit") or "unknown"
    text = (f"**Two passes in a row** (`benchmarks/conformance.py --chains`, `{SRC}/conformance_chains.{{json,md}}`, "
            f"measured {_date(d['date'])}, {_cpu_of(d)}, {d['wall_s']:,.0f} s with {d['jobs']} processes, "
            f"{_load_span(d['load_average_at_start'][0], d['load_average_at_end'][0])}, commit `{commit[:7]}`): "
            f"{len(d['models'])} models x {len(d['exporters'])} exporters ({', '.join(d['exporters'])}) x "
            f"{len(d['opt_levels'])} optimizer settings ({graphs} graphs) through {len(d['passes'])} chains, the second pass reading the first's output and "
            "numbering heads as that file does, each chain against one composed PyTorch reference (a second "
            "`prune_heads` carried back to the original head numbers; DynaBERT's rule on each layer's own head "
            "count after pruning; TWN of a reordered matrix, which a permutation leaves as it was): "
            f"{sm['cells']:,} cells, **{sm['failed']} FAILED**, {c.get('equal', 0):,} equal, {c.get('close', 0):,} "
            f"close, {c.get('refused', 0):,} refused, {c.get('n/a', 0):,} n/a."
            + "".join(f" {s['cells']:,} of the cells ({', '.join(s['models'])}) come from a run of "
                      f"{_date(s['run']['finished_utc'])} at commit `{(s['run'].get('code') or {}).get('commit', '?')[:7]}` "
                      f"spliced in: {s['why']}." for s in d.get("spliced", [])))
    marks = [("equal", "equal"), ("close", "close"), ("refused", "refused"), ("n/a", "n/a"), ("FAILED", "FAILED")]
    lines = ["| chain | " + " | ".join(label for _, label in marks) + " |", "|---|" + "---|" * len(marks)]
    for name in d["passes"]:
        row = per.get(name, {})
        lines.append(f"| `{name.replace('>', ' > ')}` | " + " | ".join(f"{row.get(k, 0):,}" for k, _ in marks) + " |")
    # a refusal names its step ("step 2 (slice-0.5-0.75) ...") and then either the family ("deberta-v2: ...")
    # or what it found (a quantized projection)
    by_family: dict[str, int] = {}
    by_chain: dict[tuple[str, str], int] = {}
    unattended = sorted({x["model"] for x in d["cells"]
                         if x["status"] == "refused" and "no self-attention found" in x["detail"]})
    for x in d["cells"]:
        if x["status"] != "refused":
            continue
        reason = x["detail"].split(") ", 1)[-1]
        family = reason.split(":", 1)[0]
        if " " not in family and family in {y["model"] for y in d["cells"]} and "not supported" in reason:
            by_family[family] = by_family.get(family, 0) + 1
        else:
            why = ("the structured pass names the quantized projection it found" if "quantized or packed" in reason
                   else reason.split(" (", 1)[0] if "folded float constants" in reason
                   else f"a structured step finds no softmax attention in {' and '.join(unattended)}"
                   if reason.startswith("no self-attention found")
                   else "the gate refused the output: " + reason.split(";", 1)[0][:120])
            by_chain[(x["pass_name"], why)] = by_chain.get((x["pass_name"], why), 0) + 1
    # chains refused for one reason in as many cells each: one part
    grouped: dict[tuple[str, int], list[str]] = {}
    for (k, why), v in by_chain.items():
        grouped.setdefault((why, v), []).append(f"`{k.replace('>', ' > ')}`")
    parts = [f"{', '.join(ks[:-1]) + ' and ' + ks[-1] if len(ks) > 1 else ks[0]} in {v:,} cells{' each' if len(ks) > 1 else ''} "
             f"({why})" for (why, v), ks in grouped.items()]
    parts += [f"every chain on {k} ({v:,} cells, at the first structured step, as in the single-pass matrix)"
              for k, v in by_family.items()]
    tail = ("Refused in one line with nothing written: " + "; ".join(parts) + ".") if parts else ""
    return "\n".join([_wrap(text), "", *lines] + (["", _wrap(tail)] if tail else []))


def render_densest_qat(results: Path) -> str:
    """What the smallest packings cost after QAT, from train_bench_standard.json's densest ONNX rows."""
    t = _load(results, "train_bench_standard.json")
    rows = {r["file"]: r for r in t.get("onnx", []) if "file" in r and "densest" in r["file"]}
    if not rows:
        return "(no densest rows in train_bench_standard.json)"
    labels = [("densest", "encoder + word embeddings (default)"), ("densest_head", "+ pooler and classifier"),
              ("densest_head_int8pos", "+ pooler, classifier; position tables int8"),
              ("densest_all", "everything (position tables too)")]
    out = ["| QAT model (MiniLM) | " + " | ".join(lab for _, lab in labels) + " |",
           "|---" * (len(labels) + 1) + "|"]
    for mode, name in [("ternary", "ternary"), ("binary", "binary"), ("binary_tws", "binary (TWS)")]:
        cells = []
        for tag, _ in labels:
            r = rows.get(f"{mode}_{tag}.onnx")
            cells.append("-" if r is None else f"{r['accuracy']:.2f}% ({r['accuracy'] - r['pytorch']:+.2f}), "
                                               f"{r['bytes'] / 1e6:.1f} MB, {r['ratio_to_fp32_export']:.1f}x")
        out.append(f"| {name} | " + " | ".join(cells) + " |")

    base = _densest_bert_base(results, labels, t)
    out += base["rows"]

    def span(tag: str) -> str:
        d = [r["accuracy"] - r["pytorch"] for f, r in rows.items() if f.endswith(f"_{tag}.onnx")]
        return f"{min(d):+.2f} to {max(d):+.2f}"

    out += ["", _wrap(f"Against PyTorch: packing the pooler and classifier too {span('densest_head')} points; with "
                      f"int8 position tables as well {span('densest_head_int8pos')}; ternary/binary position tables "
                      f"{span('densest_all')}. {base['note']}")]
    return "\n".join(out)


def _densest_bert_base(results: Path, labels: list[tuple[str, str]], train: dict) -> dict:
    """The BERT-base-shape rows of the densest-qat table (sizes only, pack_bench.json's ``<scheme>_<tag>``
    variants: the same scopes and pack options on the BERT-base shape with its pooler) and a sentence on
    where they come from."""
    pk = _load(results, "pack_bench.json")
    m = pk.get("models", {}).get("bert-base", {})
    v = m.get("variants", {})
    ts = pk.get("targets", {})
    target = {"ternary": ts.get("trit5_all"), "binary": ts.get("binary1_all")}
    rows, stamps, grans, first_met = [], [], set(), []
    for scheme in ("ternary", "binary"):
        cells = []
        met = None
        for tag, label in labels:
            r = v.get(f"{scheme}_{tag}")
            if not r or "bytes" not in r:
                cells.append("-")
                continue
            if met is None and target[scheme] and r["ratio_to_fp32"] >= target[scheme]:
                met = f"{scheme} from '{label}' ({r['ratio_to_fp32']:.1f}x)"
            cells.append(f"{r['bytes'] / 1e6:.1f} MB, {r['ratio_to_fp32']:.1f}x")
            stamps.append(r.get("reduced_run") or {"created_utc": m.get("created_utc", pk.get("created_utc")),
                                                   "cpuinfo_model_name": pk.get("cpuinfo_model_name"),
                                                   "load_average": [(pk.get("load_average_at_start") or [None])[0],
                                                                    (pk.get("load_average_at_end") or [None])[0]]})
            grans.add((r.get("config") or {}).get("granularity"))
        rows.append(f"| BERT-base shape, {scheme} (size only) | " + " | ".join(cells) + " |")
        first_met.append(met or f"{scheme} in none of them")
    if not stamps:
        return {"rows": [], "note": "The BERT-base shape's sizes of these scopes are not in pack_bench.json yet."}
    fp32 = v.get("fp32", {}).get("bytes")
    trained = (train.get("schedule_settings") or {}).get("qat_granularity")
    same = grans == {trained} if trained else None
    loads = [x.get("load_average") for x in stamps if x.get("load_average")]
    note = (f"BERT-base rows: `pack_bench.py` ({_span([_date(x.get('created_utc')) for x in stamps], '{}', ' to ')}, "
            f"{stamps[0].get('cpuinfo_model_name') or '?'}, {_load_span(*loads)}), the same scopes on the BERT-base shape with its pooler "
            f"and a 2-label classifier, ratios to its fp32 export"
            + (f" ({fp32 / 1e6:.1f} MB)" if fp32 else "")
            + f"; {', '.join(sorted(str(g) for g in grans))}-wise scales"
            + ("" if same is None else " as the QAT models' packing" if same else
               f", NOT the QAT models' {trained}-wise packing")
            + (f"; targets {target['ternary']:g}x (ternary) and {target['binary']:g}x (binary), reached by "
               f"{' and '.join(first_met)}." if target["ternary"] and target["binary"] else "."))
    return {"rows": rows, "note": note}


def render_pack_load(results: Path) -> str:
    """A user's session creation for each pack format against the one-byte lookup (2026-12-02) and the Div/Mod
    unpack before it, from pack_load.json."""
    d = _load(results, "pack_load.json")
    rows = d["formats"]
    mb = d["model"]["bytes"] / 1e6
    when = _run_when(d) or "date not recorded"
    folded, plain = [], []
    for name, r in rows.items():
        load = r.get("load") or {}
        if not load.get("ok"):
            plain.append(f"{name} FAILED")
            continue
        peer = r.get("peer_arithmetic") or {}
        bytewise = r.get("peer_byte_lookup") or {}
        gb = load["creation_rss_bytes"] / 1e9
        if peer.get("ok") and r.get("lookups", 0) > 1:  # weights unpacked when the session is made
            one = ""
            if bytewise.get("ok"):
                one = (f"one byte at a time: {bytewise['create_s']:.2f} s, {bytewise['creation_rss_bytes'] / 1e9:.2f} GB, "
                       f"{r['byte_lookup_create_over_pairs']:.2f}x the time"
                       + ("" if r.get("same_outputs_as_byte_lookup") else ", OUTPUTS DIFFER") + "; ")
            folded.append(f"{name} {load['create_s']:.2f} s and {gb:.2f} GB ({one}with the arithmetic: "
                          f"{peer['create_s']:.2f} s, {peer['creation_rss_bytes'] / 1e9:.2f} GB; "
                          f"{r['peer_create_over_lookup']:.1f}x the time"
                          + ("" if r.get("same_outputs_as_peer") else "; OUTPUTS DIFFER") + ")")
        else:
            plain.append(f"{name} {load['create_s']:.2f} s and {gb:.2f} GB")
    return _wrap(
        f"**Loading a packed file** (`benchmarks/pack_load.py`; {when}; `{SRC}/pack_load.json`): ONNX Runtime's default "
        f"session for each `pack` format of the BERT-base shape ({mb:.1f} MB fp32), each in a fresh process, the median "
        f"of {d['repeats']} interleaved rounds, with the memory the creation took. The formats whose weights are unpacked "
        f"when the session is made, by a lookup since 2026-12-02 ("
        + ("two bytes at a time since 2026-12-03), against the same file looking up one byte at a time, and "
           "with the int32 `Div`/`Mod` " if any("peer_byte_lookup" in r for r in rows.values())
           else "one byte at a time), against the same file with the int32 `Div`/`Mod` ")
        + "arithmetic it replaced: " + "; ".join(folded) + ". The others: " + "; ".join(plain) + ".")


def render_repack(results: Path) -> str:
    """repack from a packed file against pack from fp32 to the same runtime, and the bundle .ort it buys
    (repack_bench.json)."""
    d = _load(results, "repack_bench.json")
    mb = d["model"]["bytes"] / 1e6
    when = _run_when(d) or "date not recorded"
    parts, orts = [], []
    for name, r in d["cases"].items():
        label = f"{r['weights']} {r['source']} -> {r['target']}"
        if not r.get("ok"):
            parts.append(f"{label} FAILED")
            continue
        same = ("the same outputs" if r["max_abs_diff_to_pack"] == 0
                else f"outputs within {_sci(r['max_abs_diff_to_pack'])} of pack's")
        parts.append(f"{label} {r['repack_wall_s']:.2f} s against {r['pack_wall_s']:.2f} s ({r['repack_over_pack']:.2f}x; "
                     f"process peak {r['repack_peak_rss_bytes'] / 1e6:.0f} against {r['pack_peak_rss_bytes'] / 1e6:.0f} MB; "
                     f"{same})")
        if "ort_mb_repacked" in r:
            orts.append(f"{r['weights']} {r['source']} {r['ort_mb_source']:.1f} MB -> {r['ort_mb_repacked']:.1f} MB")
    text = (f"**Repacking** (`benchmarks/repack_bench.py`; {when}; `{SRC}/repack_bench.json`): `deploytool repack` "
            f"from the packed BERT-base shape ({mb:.1f} MB fp32) against `deploytool pack` from the fp32 file to the "
            f"same runtime, each in a fresh process with the gate on, the median of {d['repeats']} interleaved rounds "
            "(the process peak leaves out pack's gate, which runs in a process of its own for the fp32 input; "
            "repack's gate sessions run in its process): " + "; ".join(parts) + ".")
    if orts:
        text += (" The phone bundle's `model.ort` (runtime optimizations) of the source and of its `--runtime memory` "
                 "repack: " + "; ".join(orts) + ".")
    return _wrap(text)


def render_fused_attention(results: Path) -> str:
    """pack on a graph ORT's transformer optimizer fused, against the form before (fused_attention_bench.json)."""
    d = _load(results, "fused_attention_bench.json")
    when = _run_when(d) or "date not recorded"
    sm, ratios = d["summary"], d["this_over_base"]

    def span(xs: list[float]) -> str:
        lo, hi = min(xs), max(xs)
        return f"{lo:.2f}x" if lo == hi else f"{lo:.2f}-{hi:.2f}x"

    rows = ["| runtime | file | p50 1 / 8 / 128 tokens (ms) | RSS after a run | model.ort |", "|---|---|---|---|---|"]
    label = {"base": f"fused, before (`{d['base']}`)", "this": "fused, now", "unfused": "as exported (no optimizer)"}
    for name, r in sm.items():
        rt, side = name.split("/")
        rows.append(f"| {rt} | {label[side]} | {r['p50_ms_1']:.1f} / {r['p50_ms_8']:.1f} / {r['p50_ms_128']:.0f} | "
                    f"{r['rss_after_run_mb']:.0f} MB | {r['ort_mb']:.1f} MB |")
    reading = "; ".join(
        f"{rt}: {span(ratios[rt]['p50_ms_1'])} the latency at 1 token, {span(ratios[rt]['p50_ms_8'])} at 8, "
        f"{span(ratios[rt]['p50_ms_128'])} at 128, {span(ratios[rt]['rss_after_run'])} the memory, "
        f"{ratios[rt]['ort_size']:.2f}x the .ort" for rt in ratios)
    cos = min(r["cosine_to_base_output"] for r in sm.values())
    intro = (f"**Packing a graph ONNX Runtime's optimizer fused** (`benchmarks/fused_attention_bench.py`; {when}; "
            f"`{SRC}/fused_attention_bench.json`): the BERT-base shape fused by `deploytool.runtime.fuse` "
            "(Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu), packed ternary. Before, the fused "
            "nodes read their weights as fp32, unpacked at load: the QKV of every layer and the word table. Now "
            "the Attention runs on the packed codes (QAttention on int8 codes; MatMulNBits 2-bit + "
            "MultiHeadAttention for memory) and the embeddings gather packed rows. One thread, batch 1, the median "
            f"of {d['rounds']} interleaved rounds, each file in a fresh process:")
    after = (f"Now against before, per round: {reading}. Outputs agree with before's to a cosine of at least "
             f"{cos:.5f} (int8 activations in the QKV now).")
    text = _wrap(intro) + "\n\n" + "\n".join(rows) + "\n\n" + _wrap(after)
    if (results / "fused_attention_bench_split_binary.json").exists():
        text += "\n\n" + _fused_split_binary(results, label)
    if (results / "fused_attention_bench_int8_bias.json").exists():
        text += "\n\n" + _fused_int8_bias(results)
    return text


def _fused_int8_bias(results: Path) -> str:
    """int8 of a fused graph whose Attention reads an attention bias (fused_attention_bench_int8_bias.json)."""
    d = _load(results, "fused_attention_bench_int8_bias.json")
    sm, ratios = d["summary"], d["this_over_base"]["int8"]
    label = {"base": f"before (`{d['base']}`): fp32 Attention", "this": "now: int8 MatMul, Split, MultiHeadAttention"}
    rows = ["| file | p50 1 / 8 / 128 tokens (ms) | RSS after a run | file | model.ort |", "|---|---|---|---|---|"]
    for name, r in sm.items():
        rows.append(f"| {label[name.split('/')[1]]} | {r['p50_ms_1']:.1f} / {r['p50_ms_8']:.1f} / "
                    f"{r['p50_ms_128']:.0f} | {r['rss_after_run_mb']:.0f} MB | {r['file_mb']:.1f} MB | "
                    f"{r['ort_mb']:.1f} MB |")

    def span(xs: list[float]) -> str:
        lo, hi = min(xs), max(xs)
        return f"{lo:.2f}x" if lo == hi else f"{lo:.2f}-{hi:.2f}x"

    intro = ("**int8 of a fused Attention with an attention bias** (a relative position bias on every layer; "
             f"`fused_attention_bench.py --weights int8`, {_run_when(d) or 'date not recorded'}; `{SRC}/fused_attention_bench_int8_bias.json`): "
             "QAttention has no input for the bias, so such a node stayed an fp32 Attention; now its QKV is an int8 "
             "MatMul, then Split and MultiHeadAttention, which takes the bias. Same protocol, "
             f"{d['rounds']} rounds:")
    cos = sm["int8/this"]["cosine_to_base_output"]
    after = (f"Per round: {span(ratios['p50_ms_1'])} the latency at 1 token, {span(ratios['p50_ms_8'])} at 8, "
             f"{span(ratios['p50_ms_128'])} at 128, {span(ratios['rss_after_run'])} the memory, "
             f"{ratios['ort_size']:.2f}x the .ort; the output's cosine to before's is {cos:.5f}.")
    return _wrap(intro) + "\n\n" + "\n".join(rows) + "\n\n" + _wrap(after)


def _fused_split_binary(results: Path, label: dict[str, str]) -> str:
    """The same with two binary planes per weight (fused_attention_bench_split_binary.json)."""
    d = _load(results, "fused_attention_bench_split_binary.json")
    sm, ratios = d["summary"], d["this_over_base"]
    label = {**label, "base": f"fused, before (`{d['base']}`)"}
    rows = ["| runtime | file | p50 1 / 8 / 128 tokens (ms) | RSS after a run | file | model.ort |",
            "|---|---|---|---|---|---|"]
    for name, r in sm.items():
        rt, side = name.split("/")
        rows.append(f"| {rt} | {label[side]} | {r['p50_ms_1']:.1f} / {r['p50_ms_8']:.1f} / {r['p50_ms_128']:.0f} | "
                    f"{r['rss_after_run_mb']:.0f} MB | {r['file_mb']:.1f} MB | {r['ort_mb']:.1f} MB |")

    def span(xs: list[float]) -> str:
        lo, hi = min(xs), max(xs)
        return f"{lo:.2f}x" if lo == hi else f"{lo:.2f}-{hi:.2f}x"

    reading = "; ".join(
        f"{rt}: {span(ratios[rt]['p50_ms_1'])} the latency at 1 token, {span(ratios[rt]['p50_ms_8'])} at 8, "
        f"{span(ratios[rt]['p50_ms_128'])} at 128, {span(ratios[rt]['rss_after_run'])} the memory, "
        f"{ratios[rt]['ort_size']:.2f}x the .ort" for rt in ratios)
    intro = (f"With **two binary planes per weight** (`--weights split-binary`, BinaryBERT's form; "
             f"{_run_when(d) or 'date not recorded'}; `{SRC}/fused_attention_bench_split_binary.json`) no attention "
             "kernel sums the planes, so the QKV was unpacked to fp32 at load until this form: the runtime's linear "
             "kernel over both planes, their sum, Split and MultiHeadAttention, as an unfused export runs them. "
             f"Same protocol, {d['rounds']} rounds:")
    grow = sm["memory/this"]["file_mb"] / sm["memory/base"]["file_mb"]
    after = (f"Now against before, per round: {reading}. The memory file is {grow:.2f}x before's: MatMulNBits keeps "
             "each plane's sign in a 2-bit code where the fp32 form stored 1 bit, the price of 2 bits in memory.")
    return _wrap(intro) + "\n\n" + "\n".join(rows) + "\n\n" + _wrap(after)


def _int8_codes_accuracy(d: dict) -> str:
    acc = d.get("accuracy_rotten_tomatoes_test") or {}
    ps = {k: (a.get("vs_fp32") or {}).get("p") for k, a in acc.items() if k != "fp32"}
    ps = {k: p for k, p in ps.items() if p is not None}
    if not ps:
        return ""
    worse = [f"{k} (p = {p:.2g})" for k, p in ps.items() if p < 0.05]
    same = [k for k, p in ps.items() if p >= 0.05]
    out = " Classifier accuracy against fp32 (exact McNemar): "
    out += (f"{', '.join(worse)} differ{'s' if len(worse) == 1 else ''} significantly; " if worse else "")
    return out + (f"{', '.join(same)} do{'es' if len(same) == 1 else ''} not." if same else "")


def render_int8_codes(results: Path) -> str:
    """int8 / int7 / uint8 weight codes beside optimum's presets on one CPU, from int8_codes.json."""
    d = _load(results, "int8_codes.json")
    pr = d["probe"]
    when = _run_when(d) or "date not recorded"
    exact = "exact" if pr["u8s8_exact"] else "saturating (no VNNI)"
    names = {"int8": "`--weights int8` (default)", "pairsafe": "`--weights pairsafe`", "uint8": "`--weights uint8`",
             "int7": "`--weights int7`",
             "optimum_vnni": "optimum avx512_vnni preset", "optimum_avx2_reduce_range": "optimum avx2 preset, reduce_range"}
    acc = d.get("accuracy_rotten_tomatoes_test") or {}
    head = "| weights | cosine to fp32 (mean / worst) | seq 8 / int8 | seq 128 / int8 |"
    sep = "|---|---|---|---|"
    if acc:
        head += " accuracy % [95% CI] | McNemar p vs uint8 | same label as fp32 |"
        sep += "---|---|---|"
    lines = [head, sep]
    for k, label in names.items():
        c = d["cosine_to_fp32"].get(k)
        if c is None:
            continue
        r8 = [r["paired_ratio_to_int8"] for rnd in d["latency_rounds"] for r in rnd if r["variant"] == k and r["seq_len"] == 8]
        r128 = [r["paired_ratio_to_int8"] for rnd in d["latency_rounds"] for r in rnd
                if r["variant"] == k and r["seq_len"] == 128]
        row = f"| {label} | {c['mean']:.4f} / {c['min']:.4f} | {_span(r8)} | {_span(r128)} |"
        if acc:
            a = acc.get(k) or {}
            vs = (a.get("vs_uint8") or {}).get("p")
            ci = a.get("ci95") or [float("nan")] * 2
            row += (f" {a.get('accuracy', float('nan')):.1f} [{ci[0]:.1f}-{ci[1]:.1f}] | "
                    f"{'-' if vs is None else f'{vs:.2g}'} | {a.get('label_agreement_with_fp32', float('nan')):.1%} |")
        lines.append(row)
    fp = acc.get("fp32")
    tail = (f" The fp32 classifier: {fp['accuracy']:.1f}% [{fp['ci95'][0]:.1f}-{fp['ci95'][1]:.1f}] of {fp['n']} test "
            "reviews." if fp else "")
    intro = _wrap(
        f"**int8 weight codes on this CPU** (`benchmarks/int8_codes.py`; {when}; `{SRC}/int8_codes.json`): the probe "
        f"found this CPU's ({pr['microarchitecture']}, {', '.join(pr['features']) or 'no SIMD features named'}) uint8 x "
        f"int8 GEMM {exact}. all-MiniLM-L6-v2: embedding cosine to fp32 over "
        f"{next(iter(d['cosine_to_fp32'].values()))['texts']} Rotten Tomatoes test reviews; latency batch 1, 1 thread, "
        f"{len(d['latency_rounds'])} interleaved rounds, paired ratio to the default int8 file (lower is faster)."
        + (" Accuracy: a fine-tuned MiniLM classifier, the same recipes, the whole test split." if acc else "") + tail)
    reading = ""
    cos = d["cosine_to_fp32"]
    if not pr["u8s8_exact"] and all(k in cos for k in ("int8", "int7", "uint8", "pairsafe")):
        def ratios(k: str, q: int) -> str:
            return _span([r["paired_ratio_to_int8"] for rnd in d["latency_rounds"] for r in rnd
                          if r["variant"] == k and r["seq_len"] == q])

        reading = _wrap(
            f"Reading it: on this CPU the default int8 file loses to the clipping (cosine {cos['int8']['mean']:.4f}, "
            f"worst text {cos['int8']['min']:.4f}). `--weights pairsafe` cannot clip and keeps int8's kernel: cosine "
            f"{cos['pairsafe']['mean']:.4f} (worst {cos['pairsafe']['min']:.4f}) at {ratios('pairsafe', 8)}x the "
            f"default's latency at 8 tokens and {ratios('pairsafe', 128)}x at 128. `--weights uint8` computes the "
            f"default's own integers exactly ({cos['uint8']['mean']:.4f}, worst {cos['uint8']['min']:.4f}) at "
            f"{ratios('uint8', 8)}x and {ratios('uint8', 128)}x. `--weights int7`, ORT's advice for such CPUs, "
            f"loses more than the clipping does ({cos['int7']['mean']:.4f}, worst {cos['int7']['min']:.4f}), as does "
            "optimum's avx2 preset with reduce_range." + _int8_codes_accuracy(d))
    return intro + "\n\n" + "\n".join(lines) + ("\n\n" + reading if reading else "")


BLOCKS = {"int8-codes": render_int8_codes, "quickstart": render_quickstart, "conformance": render_conformance, "conformance-chains": render_conformance_chains,
          "conformance-int8-onnx": render_conformance_int8_onnx,
          "conformance-settings": render_conformance_settings, "embedding": render_embedding,
          "training-table": render_training_table, "tws": render_tws, "cost-model": render_cost_model,
          "hygiene": render_hygiene, "pass-speed": render_pass_speed,
          "pass-speed-emerald-rapids": lambda r: "**The same on an Intel VM.** " + render_pass_speed(
              r, "pass_speed_emerald_rapids.json"), "overwrite": render_overwrite, "pass-speed-ab": render_pass_speed_ab, "measured": render_measured,
          "performance": render_performance, "performance-reading": render_reading,
          "training-setup": render_training_setup, "training-notes": render_training_notes,
          "fit-runtime": render_fit_runtime, "published-devices": render_published_devices,
          "big-models": render_big_models, "densest-qat": render_densest_qat, "pack-load": render_pack_load,
          "repack": render_repack, "fused-attention": render_fused_attention, "alibi-export": render_alibi_export,
          "bench-cache": render_bench_cache}
_BLOCK = re.compile(r"<!-- figures:(?P<name>[a-z0-9-]+) -->\n(?P<body>.*?)<!-- /figures:(?P=name) -->", re.S)


def render_readme(text: str, results: Path = RESULTS) -> str:
    """``text`` with every block re-rendered; a block named here but missing from the text is an error."""
    found = set()

    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in BLOCKS:
            raise SystemExit(f"README block '{name}' has no renderer in readme_figures.py")
        found.add(name)
        # blank lines around the body: a table or list never runs into the marker comments
        return f"<!-- figures:{name} -->\n\n{BLOCKS[name](results)}\n\n<!-- /figures:{name} -->"

    out = _BLOCK.sub(sub, text)
    missing = set(BLOCKS) - found
    if missing:
        raise SystemExit(f"README.md lacks the figure block(s) {sorted(missing)} (<!-- figures:NAME --> markers)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="Exit 1 when README.md differs from the rendering.")
    ap.add_argument("--readme", type=Path, default=README)
    args = ap.parse_args()
    text = args.readme.read_text()
    new = render_readme(text)
    if args.check:
        if new != text:
            print("README.md figures differ from benchmarks/results: run benchmarks/readme_figures.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.readme.write_text(new)
        print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
