"""Big models through slice, prune, pack and int8: a BERT-large shape and an XLM-R-large shape over 2 GB.

Two random models built with transformers (nothing downloads):

- ``bert-large``: BertModel, 24 layers, hidden 1024, 16 heads, FFN 4096, vocab 30522 (~1.34 GB fp32);
- ``xlmr-large``: XLMRobertaModel, same encoder, vocab 250002, max_position 514 (~2.24 GB fp32: over
  protobuf's 2 GB limit, so the file must use external data).

Each is exported with plain ``torch.onnx.export(..., dynamo=False, opset_version=17)`` (the
TorchScript exporter; above 2 GB it writes every weight to its own file beside the .onnx, named after
the tensor), then goes through the public file API ``deploytool.passes.transform(src, dst, config)``,
ORT verification gate included: SliceConfig(width=0.5, depth=0.75), HeadPruneConfig(heads={0: [0, 1],
5: [3], 23: [15]}), FFNPruneConfig(keep=0.5), PackConfig(ternary, runtime memory), PackConfig(ternary)
(runtime speed: INT2 needs opset 25, so the opset is upgraded), PackConfig(ternary, embeddings fp32,
runtime memory, accuracy_level 0: exactly the TWN-ternary model, which has a reference), Int8Config(),
ReorderConfig() (outputs unchanged: compared with the unchanged model) and Fp16Config().
``--exporter deploytool`` exports with ``deploytool.export.export_loaded`` instead.

Every export and pass runs in a fresh subprocess; what it reports: wall time, its own peak RSS
(VmHWM: the whole process, imports included; the passes stream weights, and an input over 50 MB runs
the verification gate's ONNX Runtime sessions in a process of its own, whose peak is reported beside
it as ``gate_peak_rss_bytes`` / ``gate_rss_over_input``), peak RSS
over the input's bytes (flagged above 3x), output bytes, whether the output has external data and
the data file names, whether the gate verified it. The outputs are then run in ONNX Runtime (another
subprocess) on a padded batch (batch 2, seq 16, second row 9 tokens) and compared, in a torch
subprocess, with independent PyTorch references on ``last_hidden_state``: DynaBERT's sub-network
(``deploytool.testing.conformance.reference``), transformers' ``prune_heads``, the weight-magnitude
FFN rule restated in torch (``deploytool.testing.big``), TWN ternary weights restated in torch
(conformance's ``pack`` reference, for pack-exact); big models accumulate more float error than
the tiny matrix's 1e-4, so the bound is 1e-3. Lossy passes (pack, int8) are compared with the fp32
model (max diff and cosine, for information).

Usage: ``.venv/bin/python benchmarks/big_models.py [--only bert-large|xlmr-large]
[-o benchmarks/results/big_models.json] [--work DIR] [--keep] [--passes slice,prune-heads,...]``.
The scratch folder (default a temporary folder under /tmp) is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block
import speed_check  # beside this script: each run's memory against the last committed one

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
RESULTS = ROOT / "results" / "big_models.json"

SHAPES = {
    "bert-large": dict(family="bert", vocab=30522, layers=24, hidden=1024, heads=16, ffn=4096, max_pos=512),
    "xlmr-large": dict(family="xlm-roberta", vocab=250002, layers=24, hidden=1024, heads=16, ffn=4096, max_pos=514),
}
# same layer/head counts, tiny widths: `--only smoke-bert|smoke-xlmr` checks the script in a minute
SMOKE = {
    "smoke-bert": dict(SHAPES["bert-large"], vocab=1000, hidden=64, ffn=128, max_pos=64),
    "smoke-xlmr": dict(SHAPES["xlmr-large"], vocab=5000, hidden=64, ffn=128, max_pos=66),
}
HEADS = {0: [0, 1], 5: [3], 23: [15]}
PASSES = ("slice", "prune-heads", "prune-ffn", "reorder", "pack-memory", "pack-speed", "pack-exact", "pack-densest",
          "pack-binary", "pack-split-binary", "int8", "fp16", "repack-memory")
# passes whose input is another pass's output (kept until they ran), not the exported model
FROM_OUTPUT = {"repack-memory": "pack-speed"}
# passes whose outputs must equal another pass's (the same codes written the same way)
SAME_AS = {"repack-memory": "pack-memory"}
TOL = 1e-3
BATCH_LENGTHS = (16, 9)  # batch 2, seq 16, second row padded after 9 tokens
MEMORY_FLAG = 3.0  # peak RSS over input bytes above this is reported


def _shape(name: str) -> dict:
    return SHAPES[name] if name in SHAPES else SMOKE[name]


def _config(name: str):
    from deploytool.passes.fp16 import Fp16Config
    from deploytool.passes.pack_weights import PackConfig
    from deploytool.passes.prune_ffn import FFNPruneConfig
    from deploytool.passes.reorder import ReorderConfig
    from deploytool.passes.prune_heads import HeadPruneConfig
    from deploytool.passes.quantize_int8 import Int8Config
    from deploytool.passes.repack import RepackConfig
    from deploytool.passes.slice_subnetwork import SliceConfig

    return {
        "slice": lambda: SliceConfig(width=0.5, depth=0.75),
        "prune-heads": lambda: HeadPruneConfig(heads=HEADS),
        "prune-ffn": lambda: FFNPruneConfig(keep=0.5),
        "reorder": lambda: ReorderConfig(),
        "pack-memory": lambda: PackConfig(weights="ternary", runtime="memory"),
        "pack-speed": lambda: PackConfig(weights="ternary"),
        # fp32 activations and embeddings: exactly the TWN-ternary model, so it has a reference
        "pack-exact": lambda: PackConfig(weights="ternary", embeddings="fp32", runtime="memory", accuracy_level=0),
        "pack-densest": lambda: PackConfig(weights="ternary", runtime="densest"),
        "pack-binary": lambda: PackConfig(weights="binary"),
        "pack-split-binary": lambda: PackConfig(weights="split-binary"),
        "int8": lambda: Int8Config(),
        "fp16": lambda: Fp16Config(check_host=False),
        "repack-memory": lambda: RepackConfig(runtime="memory"),
    }[name]()


def _config_text(name: str) -> str:
    return {
        "slice": "SliceConfig(width=0.5, depth=0.75)",
        "prune-heads": f"HeadPruneConfig(heads={HEADS})",
        "prune-ffn": "FFNPruneConfig(keep=0.5)",
        "reorder": "ReorderConfig()  # weight magnitude; outputs unchanged",
        "pack-memory": "PackConfig(weights='ternary', runtime='memory')",
        "pack-speed": "PackConfig(weights='ternary')  # runtime speed: INT2, opset 25",
        "pack-exact": "PackConfig(weights='ternary', embeddings='fp32', runtime='memory', accuracy_level=0)",
        "pack-densest": "PackConfig(weights='ternary', runtime='densest')  # 5 trits per byte, lookup unpack",
        "pack-binary": "PackConfig(weights='binary')  # 1 bit per weight, lookup unpack",
        "pack-split-binary": "PackConfig(weights='split-binary')  # two 1-bit planes (BinaryBERT TWS)",
        "int8": "Int8Config()",
        "fp16": "Fp16Config(check_host=False)",
        "repack-memory": "RepackConfig(runtime='memory')  # of pack-speed's output: must compute what pack-memory does",
    }[name]


# ----------------------------------------------------------------------------------------- workers
# each runs in its own process: `python big_models.py --_worker KIND SPEC_JSON`; it prints one JSON line


def _peak_rss() -> int:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: Linux carries that over from the
    parent across fork + exec, so a worker would report the driver's peak if it was higher."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _build(shape: dict):
    """The random model of ``shape`` (same seed -> same weights in every process)."""
    import torch
    import transformers as tr

    common = dict(vocab_size=shape["vocab"], hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                  num_attention_heads=shape["heads"], intermediate_size=shape["ffn"],
                  max_position_embeddings=shape["max_pos"])
    if shape["family"] == "bert":
        cfg = tr.BertConfig(**common)
        cls = tr.BertModel
    else:
        cfg = tr.XLMRobertaConfig(**common, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                  layer_norm_eps=1e-5)
        cls = tr.XLMRobertaModel
    torch.manual_seed(0)
    model = cls(cfg)
    # random LayerNorm and bias values (as the conformance matrix), so a wrong row, column or head shows
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for _, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def _feeds(shape: dict):
    import numpy as np

    rng = np.random.default_rng(0)
    seq = max(BATCH_LENGTHS)
    ids = rng.integers(3, shape["vocab"], size=(len(BATCH_LENGTHS), seq), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(BATCH_LENGTHS):
        mask[i, :n] = 1
        ids[i, n:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if shape["family"] == "bert":
        out["token_type_ids"] = np.zeros_like(ids)
    return out


def _files(onnx_path: Path) -> dict:
    """The model file and the external-data files it names (parsed without the data)."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    locs = sorted({e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"})
    main = onnx_path.stat().st_size
    data = sum((onnx_path.parent / n).stat().st_size for n in locs)
    return {"model_file_bytes": main, "data_files": len(locs), "data_bytes": data, "bytes": main + data,
            "data_file_names": locs[:3] + (["..."] if len(locs) > 3 else [])}


def worker_export(spec: dict) -> dict:
    import torch

    torch.set_num_threads(2)
    shape = _shape(spec["shape"])
    t0 = time.perf_counter()
    model = _build(shape)
    build_s = time.perf_counter() - t0
    feeds = _feeds(shape)
    names = list(feeds)
    args = tuple(torch.as_tensor(feeds[n]) for n in names)
    outs = ["last_hidden_state", "pooler_output"]
    dyn = {n: {0: "batch", 1: "sequence"} for n in names}
    dyn["last_hidden_state"] = {0: "batch", 1: "sequence"}
    dyn["pooler_output"] = {0: "batch"}
    dst = Path(spec["dst"])
    dst.parent.mkdir(parents=True, exist_ok=True)
    import warnings

    t1 = time.perf_counter()
    if spec.get("exporter", "torch") == "deploytool":
        from deploytool.export import ExportConfig, export_loaded

        res = export_loaded(model, dst, ExportConfig(model=spec["shape"], exporter="torch", opset=17))
        how = ("deploytool.export.export_loaded(ExportConfig(exporter='torch', opset=17)): TorchScript exporter, "
               f"validated against PyTorch (max abs diff {max(res.max_abs_diff.values()):.3g}), last_hidden_state only")
    else:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, str(dst), input_names=names, output_names=outs, dynamic_axes=dyn,
                              opset_version=17, dynamo=False)
        how = "torch.onnx.export(dynamo=False, opset_version=17)"
    export_s = time.perf_counter() - t1
    params = sum(p.numel() for p in model.parameters())
    peak = _peak_rss()
    del model
    return {"exporter": how, "params": params,
            "fp32_param_bytes": params * 4, "build_s": round(build_s, 1), "export_s": round(export_s, 1),
            "peak_rss_bytes": peak, **_files(dst)}


def worker_pass(spec: dict) -> dict:
    from deploytool.passes import transform

    src, dst = Path(spec["src"]), Path(spec["dst"])
    t0 = time.perf_counter()
    try:
        res = transform(src, dst, _config(spec["pass"]))
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return {"ok": False, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:400]}",
                "seconds": round(time.perf_counter() - t0, 1), "peak_rss_bytes": _peak_rss(),
                "dst_exists": dst.exists()}
    seconds = time.perf_counter() - t0
    peak = _peak_rss()
    from deploytool.onnx_io import external_data_files

    locs = sorted(p.name for p in external_data_files(dst))  # read from the file (structure only)
    main = dst.stat().st_size
    data = sum((dst.parent / n).stat().st_size for n in locs)
    keep = ("bytes_before", "bytes_after", "verified", "verify_s", "gate_process", "gate_peak_rss_bytes", "gate_reference_reused", "opset", "layers_kept", "heads_removed",
            "width_effective", "weights_packed", "bits_per_weight", "runtime", "quantized_ops", "importance")
    stats = {k: v for k, v in res.to_dict().items() if k in keep}
    if "heads_kept" in res.to_dict():
        stats["heads_kept_first"] = res.to_dict()["heads_kept"][0]
        stats["neurons_kept_first"] = res.to_dict()["neurons_kept"][0]
    return {"ok": True, "seconds": round(seconds, 1), "peak_rss_bytes": peak,
            "external_data": bool(locs), "data_file_names": locs, "verified": res.to_dict().get("verified"),
            "output": {"model_file_bytes": main, "data_files": len(locs), "data_bytes": data, "bytes": main + data},
            "stats": stats, "skipped": len(res.skipped)}


def worker_run(spec: dict) -> dict:
    """Run a model in ONNX Runtime on the padded batch; save its outputs (npz)."""
    import numpy as np
    import onnxruntime as ort

    shape = _shape(spec["shape"])
    feeds = _feeds(shape)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    t0 = time.perf_counter()
    sess = ort.InferenceSession(spec["model"], so, providers=["CPUExecutionProvider"])
    create_s = time.perf_counter() - t0
    want = {i.name for i in sess.get_inputs()}
    if "token_type_ids" in want and "token_type_ids" not in feeds:
        feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, {k: v for k, v in feeds.items() if k in want})
    np.savez(spec["npz"], **dict(zip(names, outs)))
    return {"session_create_s": round(create_s, 1), "outputs": names, "peak_rss_bytes": _peak_rss()}


def worker_check(spec: dict) -> dict:
    """Compare the saved ONNX outputs with PyTorch references (last_hidden_state)."""
    import numpy as np
    import torch

    from deploytool.testing import big
    from deploytool.testing import conformance as C
    from deploytool.testing.conformance import torch_outputs

    torch.set_num_threads(2)
    shape = _shape(spec["shape"])
    model = _build(shape)
    feeds = _feeds(shape)
    base = torch_outputs(model, feeds)["last_hidden_state"].astype(np.float64)
    refs = {
        "export": (lambda: model, "the PyTorch model"),
        "slice": (lambda: big.slice_reference(model, 0.5, 0.75),
                  "DynaBERT sub-network (conformance.reference 'slice-0.5-0.75')"),
        "prune-heads": (lambda: big.head_prune_reference(model, HEADS), "transformers prune_heads"),
        "prune-ffn": (lambda: big.ffn_keep_reference(model, 0.5),
                      "weight-magnitude FFN rule restated in torch, nn.Linear surgery"),
        "reorder": (lambda: model, "the unchanged PyTorch model (a reorder preserves outputs)"),
        "pack-exact": (lambda: C.reference(big.case_for(model), "pack", model)[0],
                       "TWN ternary weights restated in torch (conformance.reference 'pack')"),
    }
    out = {}
    for name, npz in spec["outputs"].items():
        got = np.load(npz)["last_hidden_state"].astype(np.float64)
        row: dict = {}
        mask = feeds["attention_mask"].astype(bool)
        if name in refs:
            make, what = refs[name]
            ref_model = make()
            want = torch_outputs(ref_model, feeds)["last_hidden_state"].astype(np.float64)
            if ref_model is not model:
                del ref_model
            d = float(np.abs(got - want).max())
            row = {"reference": what, "max_abs_diff": d,
                   "max_abs_diff_real_tokens": float(np.abs(got - want)[mask].max()),
                   "max_abs_ref": float(np.abs(want).max()), "tol": TOL, "equal": d <= TOL}
            if name == "pack-exact":  # what a difference comes from: threshold ties (see ternary_threshold_ties)
                same, differ = big.ternary_threshold_ties(model)
                ws = torch_outputs(same, feeds)["last_hidden_state"].astype(np.float64)
                del same
                row["codes_differing_from_float64_twn"] = differ
                row["max_abs_diff_vs_packer_codes_in_torch"] = float(np.abs(got - ws).max())
                row["note"] = ("TWN's threshold 0.7*mean|W|: the packer compares each weight with it exactly in "
                               "float64 (its sum taken block by block), the reference with torch's float64 mean; "
                               "a weight within those sums' rounding of it can be coded differently; the second "
                               "diff uses the packer's codes in torch and shows the packing and the kernel are exact")
        else:  # lossy: against the fp32 model, for information
            a, b = got[mask].ravel(), base[mask].ravel()
            cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
            row = {"reference": "fp32 model (lossy pass: information only)",
                   "max_abs_diff_vs_fp32": float(np.abs(got - base).max()), "cosine_vs_fp32_real_tokens": cos}
        out[name] = row
    return {"checks": out, "peak_rss_bytes": _peak_rss()}


WORKERS = {"export": worker_export, "pass": worker_pass, "run": worker_run, "check": worker_check}


# ----------------------------------------------------------------------------------------- driver

def _spawn(kind: str, spec: dict, log) -> dict:
    """Run one worker in a fresh process; its JSON line plus the parent's view of wall time."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_worker", kind, json.dumps(spec)],
                       capture_output=True, text=True, cwd=str(REPO))
    wall = time.perf_counter() - t0
    line = next((ln for ln in reversed(p.stdout.splitlines()) if ln.startswith("{")), None)
    if p.returncode != 0 or line is None:
        tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:])[:600]
        out = {"ok": False, "error": f"worker {kind} exited {p.returncode}: {tail}"}
    else:
        out = json.loads(line)
    out["process_wall_s"] = round(wall, 1)
    out["load_average_1min_after"] = round(os.getloadavg()[0], 2)  # other processes share the cores
    failed = "" if out.get("ok", True) else f" FAILED {out['error']}"
    log(f"  {kind} {spec.get('pass', spec.get('shape', ''))}: {wall:.1f} s, "
        f"peak RSS {out.get('peak_rss_bytes', 0) / 1e9:.2f} GB{failed}")
    return out


def _digest_folder(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file: cheap evidence that the input's files were not modified."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()}


def run_shape(name: str, passes: list[str], work: Path, keep: bool, log, exporter: str = "torch") -> dict:
    shape = _shape(name)
    folder = work / name
    src = folder / "export" / "model.onnx"
    log(f"{name}: export")
    exp = _spawn("export", {"shape": name, "dst": str(src), "exporter": exporter}, log)
    result: dict = {"shape": shape, "export": exp, "passes": {}}
    if not src.exists():
        return result
    exp["external_data"] = exp.get("data_files", 0) > 0
    in_bytes = exp["bytes"]
    before = _digest_folder(src.parent)
    outputs: dict[str, str] = {}
    run = _spawn("run", {"shape": name, "model": str(src), "npz": str(folder / "export.npz")}, log)
    exp["ort_run"] = run
    outputs["export"] = str(folder / "export.npz")
    needed = {FROM_OUTPUT[p] for p in passes if p in FROM_OUTPUT}
    kept: dict[str, dict] = {}
    for p in passes:
        log(f"{name}: {p}")
        dst = folder / "out" / f"{p}.onnx"
        dst.parent.mkdir(parents=True, exist_ok=True)
        p_src, p_in = src, in_bytes
        if p in FROM_OUTPUT:
            base = result["passes"].get(FROM_OUTPUT[p]) or {}
            if not base.get("ok"):
                result["passes"][p] = {"ok": False, "error": f"needs {FROM_OUTPUT[p]}'s output, which failed or did not run"}
                continue
            p_src, p_in = folder / "out" / f"{FROM_OUTPUT[p]}.onnx", base["output"]["bytes"]
        r = _spawn("pass", {"shape": name, "pass": p, "src": str(p_src), "dst": str(dst)}, log)
        r["config"] = _config_text(p)
        if p in FROM_OUTPUT:
            r["input"] = {"pass": FROM_OUTPUT[p], "bytes": p_in}
        if r.get("ok") and dst.exists():
            r["peak_rss_over_input_bytes"] = round(r["peak_rss_bytes"] / p_in, 2)
            g = (r.get("stats") or {}).get("gate_peak_rss_bytes")
            r["gate_peak_rss_over_input_bytes"] = round(g / in_bytes, 2) if g else None
            r["memory_over_3x_input"] = r["peak_rss_over_input_bytes"] > MEMORY_FLAG
            r["ort_run"] = _spawn("run", {"shape": name, "model": str(dst), "npz": str(folder / f"{p}.npz")}, log)
            if (folder / f"{p}.npz").exists():
                outputs[p] = str(folder / f"{p}.npz")
        r["input_unchanged"] = _digest_folder(src.parent) == before
        if p in SAME_AS and SAME_AS[p] in outputs and p in outputs:
            import numpy as np

            a_, b_ = np.load(outputs[p]), np.load(outputs[SAME_AS[p]])
            r["max_abs_diff_to_" + SAME_AS[p]] = max(float(np.abs(a_[k].astype(np.float64) - b_[k]).max())
                                                     for k in b_.files)
        result["passes"][p] = r
        if p in needed:
            kept[p] = r
        elif not keep:
            for n in r.get("data_file_names", []):
                (dst.parent / n).unlink(missing_ok=True)
            dst.unlink(missing_ok=True)
    if not keep:  # the outputs other passes read
        for p, r in kept.items():
            for n in r.get("data_file_names", []):
                (folder / "out" / n).unlink(missing_ok=True)
            (folder / "out" / f"{p}.onnx").unlink(missing_ok=True)
    log(f"{name}: checks against PyTorch references")
    chk = _spawn("check", {"shape": name, "outputs": outputs}, log)
    result["check_process"] = {k: v for k, v in chk.items() if k != "checks"}
    for k, row in chk.get("checks", {}).items():
        (exp if k == "export" else result["passes"][k])["check"] = row
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def _table(results: dict) -> list[dict]:
    rows = []
    for model, r in results.items():
        e = r["export"]
        rows.append({"model": model, "step": "export", "wall_s": e.get("process_wall_s"),
                     "peak_rss_gb": round(e.get("peak_rss_bytes", 0) / 1e9, 2),
                     "output_mb": round(e.get("bytes", 0) / 1e6, 1), "external_data": e.get("external_data"),
                     "verified": None, "max_diff": (e.get("check") or {}).get("max_abs_diff")})
        for p, x in r["passes"].items():
            c = x.get("check") or {}
            rows.append({"model": model, "step": p, "wall_s": x.get("process_wall_s"),
                         "pass_s": x.get("seconds"),
                         "peak_rss_gb": round(x.get("peak_rss_bytes", 0) / 1e9, 2),
                         "rss_over_input": x.get("peak_rss_over_input_bytes"),
                         "gate_rss_over_input": x.get("gate_peak_rss_over_input_bytes"),
                         "output_mb": round((x.get("output") or {}).get("bytes", 0) / 1e6, 1),
                         "external_data": x.get("external_data"), "verified": x.get("verified"),
                         "max_diff": c.get("max_abs_diff", c.get("max_abs_diff_vs_fp32")),
                         "load1": x.get("load_average_1min_after"), "ok": x.get("ok"), "error": x.get("error")})
    return rows


def _versions() -> dict:
    out = {"python": platform.python_version()}
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("torch", "transformers", "onnx", "onnxruntime", "onnx-ir", "numpy", "protobuf"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _host() -> dict:
    from deploytool.runtime.host_facts import host_info

    h = host_info()
    h["load_average"] = list(os.getloadavg())
    return h


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(SHAPES) + sorted(SMOKE), help="one shape only (smoke-*: tiny widths, "
                    "to check the script)")
    ap.add_argument("-o", "--output", "--out", dest="out", default=str(RESULTS), help="JSON to write (default %(default)s)")
    ap.add_argument("--work", help="scratch folder (default: a temporary folder under /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder and every output")
    ap.add_argument("--passes", default=",".join(PASSES), help="comma-separated subset of " + ",".join(PASSES))
    ap.add_argument("--exporter", choices=("torch", "deploytool"), default="torch",
                    help="torch: plain torch.onnx.export (default); deploytool: deploytool.export.export_loaded")
    ap.add_argument("--check-against", default="HEAD", metavar="REV",
                    help="compare each pass's memory with this git revision's results file (speed_check.py; "
                         "'none': skip) [default: HEAD, the last committed run]")
    ap.add_argument("--_worker", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._worker:
        print(json.dumps(WORKERS[a._worker[0]](json.loads(a._worker[1]))), flush=True)
        return 0
    run = stamp()
    # read before this run can overwrite it
    baseline = None if a.check_against == "none" else speed_check.committed(a.check_against,
                                                                            speed_check.BIG_MODELS_PATH)
    passes = [p for p in a.passes.split(",") if p]
    bad = [p for p in passes if p not in PASSES]
    if bad:
        ap.error(f"unknown pass(es) {bad}; choose from {', '.join(PASSES)}")
    shapes = [a.only] if a.only else list(SHAPES)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="big_models-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    report: dict = {
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": _host(), "versions": _versions(),
        "method": {
            "export": ("plain torch.onnx.export(model, ..., dynamo=False, opset_version=17) of a random "
                       "transformers model (SDPA attention), outputs last_hidden_state and pooler_output; "
                       "above 2 GB torch writes one external-data file per tensor beside the .onnx"
                       if a.exporter == "torch" else
                       "deploytool.export.export_loaded (TorchScript exporter, opset 17, validated); above "
                       "1.8 GB of weights one external-data file"),
            "passes": {p: _config_text(p) for p in passes},
            "api": "deploytool.passes.transform(src, dst, config), ORT verification gate on",
            "process": "each export, pass, ORT run and reference check in a fresh subprocess; peak_rss_bytes is "
                       "that process's VmHWM (imports and the gate's ORT session included)",
            "batch": {"batch": len(BATCH_LENGTHS), "seq": max(BATCH_LENGTHS), "lengths": list(BATCH_LENGTHS)},
            "tolerance": TOL, "memory_flag_ratio": MEMORY_FLAG,
        },
        "results": {},
    }
    t0 = time.perf_counter()
    try:
        for name in shapes:
            report["results"][name] = run_shape(name, passes, work, a.keep, log, a.exporter)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["total_s"] = round(time.perf_counter() - t0, 1)
    report["load_average_at_end"] = list(os.getloadavg())
    report["table"] = _table(report["results"])
    report["memory_over_3x_input"] = [
        {"model": r["model"], "step": r["step"], "peak_rss_gb": r["peak_rss_gb"], "ratio": r["rss_over_input"]}
        for r in report["table"] if (r.get("rss_over_input") or 0) > MEMORY_FLAG]
    report["failures"] = [r for r in report["table"] if r.get("ok") is False]
    report["not_equal_to_reference"] = [
        {"model": m, "step": s, "check": x.get("check")} for m, res in report["results"].items()
        for s, x in [("export", res["export"]), *res["passes"].items()]
        if (x.get("check") or {}).get("equal") is False]
    report["run"] = stamp(run)
    if baseline is not None:
        report["regression_check"] = speed_check.check_big_models(report, baseline)
        for line in speed_check.summary_lines(report["regression_check"]):
            log(line)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    for row in report["table"]:
        log(json.dumps(row))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
