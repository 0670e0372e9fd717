"""Which MatMulNBits 2-bit kernel ONNX Runtime takes, on this host and on ARM64 under QEMU; where it beats int8.

One ternary weight [K=384, N=1536] (values t in {-1, 0, 1}, scale alpha, packed as ``pack --runtime
memory`` packs it: code t + 2, 4 per byte, low bits first, blocks of 128 along K) is run as
``com.microsoft.MatMulNBits`` bits=2 with accuracy_level 0 and 4, each with and without the session
option ``mlas.use_lut_gemm=1`` (ORT 1.32's LUT GEMM path), and as int8 ``DynamicQuantizeMatMul`` on
the same codes, at M = 1, 8 and 128 rows. Against the exact fp32 product ``x @ (alpha * t)``:

- an error below 1e-5 means the activations stayed fp32: the kernel dequantized the weight and ran an
  fp32 GEMM (ORT's fallback, or an fp32-activation kernel) -- there is no int8 2-bit kernel on that path;
- an error of ~1e-3 to 2e-2 means the activations were quantized to int8: an int8-activation n-bit
  kernel ran (MLAS ``CompInt8`` / KleidiAI, or the LUT GEMM when the option is on).

That is what numerics can tell; the exact MLAS function is not exported, so the JSON names the class of
kernel, plus the ORT log lines (verbose) that mention MatMulNBits, LUT or KleidiAI. Under QEMU
(``deploytool.arm64``, -cpu neoverse-n1 / cortex-a72 / max) only correctness is recorded; timings are
taken on this host only (1 thread, interleaved, median of ``--runs``), with the load average.

Usage: ``.venv/bin/python benchmarks/nbits_kernels.py [--cpus neoverse-n1,cortex-a72,max] [--runs 200]``
Writes ``benchmarks/results/nbits_kernels.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "nbits_kernels.json"

# runs on the host and, unchanged, in the emulated aarch64 Python (numpy + onnxruntime only)
_PROBE = r'''
import json, os, sys, time, platform
import numpy as np, onnxruntime as ort
from onnxruntime.capi import _pybind_state as C

K, N, BS = 384, 1536, 128
runs = int(sys.argv[1])
rs = np.random.RandomState(0)
codes = rs.randint(-1, 2, (N, K)).astype(np.int8)
alpha = np.float32(0.05)


def pack2(c):
    u = (c + 2).astype(np.uint8).reshape(N, -1, 4)
    return (u[..., 0] | (u[..., 1] << 2) | (u[..., 2] << 4) | (u[..., 3] << 6)).reshape(N, K // BS, BS // 4)


def model(kind, acc=4):
    # called on the host only (the guest has no onnx package)
    from onnx import helper as h, TensorProto as T, numpy_helper as nh
    if kind == "nbits":
        inits = [nh.from_array(pack2(codes), "B"), nh.from_array(np.full(N * (K // BS), alpha, np.float32), "s")]
        nodes = [h.make_node("MatMulNBits", ["x", "B", "s"], ["y"], domain="com.microsoft", K=K, N=N, bits=2,
                             block_size=BS, accuracy_level=acc)]
    else:
        inits = [nh.from_array(np.ascontiguousarray(codes.T), "W"), nh.from_array(np.array([alpha], np.float32), "s")]
        nodes = [h.make_node("DynamicQuantizeMatMul", ["x", "W", "s"], ["y"], domain="com.microsoft")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, "m", K])],
                     [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
    m.ir_version = 9
    return m.SerializeToString()


def session(blob, lut, log_path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 0
    if lut:
        so.add_session_config_entry("mlas.use_lut_gemm", "1")
    return ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])


blobs = json.loads(sys.argv[2])
variants = {}
for name, spec in blobs.items():
    variants[name] = session(open(spec["path"], "rb").read(), spec["lut"], None)
out = {"machine": platform.machine(), "onnxruntime": ort.__version__, "rows": {}}
for m in (1, 8, 128):
    x = rs.randn(1, m, K).astype(np.float32)
    ref = x @ (codes.T.astype(np.float32) * alpha)
    row = {}
    for name, s in variants.items():
        y = s.run(None, {"x": x})[0]
        row[name] = {"max_rel_err": float(np.abs(y - ref).max() / np.abs(ref).max())}
    if runs:
        t = {k: [] for k in variants}
        for r in range(runs):
            for k, s in variants.items():
                a = time.perf_counter(); s.run(None, {"x": x}); t[k].append(time.perf_counter() - a)
        for k in variants:
            row[k]["median_us"] = round(float(np.median(t[k][runs // 10:])) * 1e6, 1)
    out["rows"][str(m)] = row
print("JSON:" + json.dumps(out))
'''

VARIANTS = {"int8_dqmm": ("int8", 4, False), "nbits2_acc0": ("nbits", 0, False), "nbits2_acc4": ("nbits", 4, False),
            "nbits2_acc0_lut": ("nbits", 0, True), "nbits2_acc4_lut": ("nbits", 4, True)}


def _kernel_class(err: float) -> str:
    if err < 1e-5:
        return "fp32 activations (dequantize + fp32 GEMM, or an fp32-activation kernel)"
    if err < 5e-2:
        return "int8 activations (an int8 n-bit kernel: MLAS CompInt8 / KleidiAI, or the LUT GEMM)"
    return "wrong result"


def _models(work: Path) -> dict:
    """Write each variant's model with the host's onnx (the guest has no onnx package)."""
    code = _PROBE.split("blobs = json.loads")[0] + "\nimport sys as _s\n"
    ns: dict = {}
    argv = sys.argv
    sys.argv = ["x", "0", "{}"]
    try:
        exec(compile(code, "probe", "exec"), ns)  # noqa: S102 - our own code above, for model()
    finally:
        sys.argv = argv
    specs = {}
    for name, (kind, acc, lut) in VARIANTS.items():
        p = work / f"{name}.onnx"
        p.write_bytes(ns["model"](kind, acc))
        specs[name] = {"path": str(p), "lut": lut}
    return specs


def _parse(stdout: str, stderr: str) -> dict:
    line = next((ln for ln in stdout.splitlines()[::-1] if ln.startswith("JSON:")), None)
    if line is None:
        return {"error": (stderr.strip().splitlines() or ["no output"])[-1][:300]}
    d = json.loads(line[5:])
    logs = sorted({ln.strip()[:240] for ln in stderr.splitlines()
                   if any(w in ln for w in ("MatMulNBits", "LUT", "Lut", "KleidiAI", "QNBit"))})
    d["log_lines"] = logs[:20]
    for m, row in d["rows"].items():
        for k, v in row.items():
            v["kernel_class"] = _kernel_class(v["max_rel_err"])
    return d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpus", default="neoverse-n1,cortex-a72,max")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("-o", "--output", "--out", dest="out", default=str(RESULTS))
    args = ap.parse_args()
    run = stamp()
    from deploytool import onnx_io

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    report: dict = {"created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "cpuinfo_model_name": cpu, "shape": {"K": 384, "N": 1536, "block_size": 128, "M": [1, 8, 128]},
                    "threads": 1, "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="nbits-kernels-") as tmp:
        work = Path(tmp)
        specs = _models(work)
        probe = work / "probe.py"
        probe.write_text(_PROBE)
        r = subprocess.run([sys.executable, str(probe), str(args.runs), json.dumps(specs)], capture_output=True,
                           text=True)
        report["host"] = _parse(r.stdout, r.stderr)
        report["load_average_after_host"] = os.getloadavg()
        report["arm64"] = {}
        try:
            from deploytool.arm64.emulator import find_emulator

            emu = find_emulator()
        except Exception as e:  # noqa: BLE001 - no emulator: say so
            report["arm64"] = {"error": f"{type(e).__name__}: {e}"}
            emu = None
        for c in (args.cpus.split(",") if emu else []):
            r = emu.run_python(c, [str(probe), "0", json.dumps(specs)], timeout_s=600)
            report["arm64"][c] = _parse(r.stdout, r.stderr)
    verdict = {}
    for m, row in report["host"].get("rows", {}).items():
        if "median_us" in row.get("int8_dqmm", {}):
            best = min((k for k in row if k.startswith("nbits")), key=lambda k: row[k]["median_us"])
            verdict[m] = {"int8_us": row["int8_dqmm"]["median_us"], "best_nbits": best,
                          "best_nbits_us": row[best]["median_us"],
                          "wins": "nbits" if row[best]["median_us"] < row["int8_dqmm"]["median_us"] else "int8"}
    report["host_verdict"] = verdict
    report["run"] = stamp(run)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with onnx_io.atomic_write(out) as f:
        json.dump(report, f, indent=1)
    print(json.dumps({"host": verdict, "arm64": {c: {m: {k: v["kernel_class"][:14] for k, v in row.items()}
                                                    for m, row in d.get("rows", {}).items()}
                                                for c, d in report["arm64"].items() if isinstance(d, dict)}},
                     indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
