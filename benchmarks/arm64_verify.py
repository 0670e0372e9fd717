"""all-MiniLM-L6-v2 in fp32, fp16, int8 (QAttention; and ``--fusion onnx``: ONNX's Attention, opset 23) and
ternary, verified under QEMU aarch64 on four CPU models.

    .venv/bin/python benchmarks/arm64_verify.py [--model MODEL.onnx] [--seq-len 16]
        [-o benchmarks/results/arm64_verify.json]

Exports MiniLM (unless --model is given), converts it with deploytool's passes (fp16, dynamic int8
per channel, post-training ternary packed as INT2 + DynamicQuantizeMatMul) and runs
``deploytool.arm64.verify_arm64`` on cortex-a72, neoverse-n1, a64fx and max. Writes every check
(max |arm - host|, its limit, cosine, inserted fp16 casts, the CPU features the guest saw).
Emulated timings mean nothing and are not recorded.
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

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--seq-len", type=int, default=16)
    ap.add_argument("-o", "--output", "--out", dest="out", type=Path, default=ROOT / "benchmarks/results/arm64_verify.json")
    args = ap.parse_args()
    run = stamp()

    from deploytool.arm64 import VerifyConfig, verify_arm64
    from deploytool.onnx_io import atomic_write
    from deploytool.passes.fp16 import Fp16Config, convert_fp16_file
    from deploytool.passes.pack_weights import PackConfig, pack_file
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

    import time

    started, load_start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = args.model
        if src is None:
            src = tmp / "fp32.onnx"
            subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", "minilm", "--task",
                            "feature-extraction", "-o", str(src)], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        models = [src, tmp / "fp16.onnx", tmp / "int8.onnx", tmp / "ternary.onnx", tmp / "int8-onnx-attention.onnx"]
        convert_fp16_file(src, models[1], Fp16Config(check_host=False))
        quantize_int8_file(src, models[2], Int8Config())
        pack_file(src, models[3], PackConfig(weights="ternary"))
        quantize_int8_file(src, models[4], Int8Config(fusion="onnx"))  # ONNX's Attention (opset 23)
        res = verify_arm64(VerifyConfig(models=tuple(models), cpus=("cortex-a72", "neoverse-n1", "a64fx", "max"),
                                        seq_len=args.seq_len))
    print(res.table())
    data = res.to_dict()
    data["benchmark"] = "arm64_verify"
    data["seq_len"] = args.seq_len
    # the host that ran QEMU: its CPU and load decide the wall time, not the emulated cores
    from deploytool.runtime.host import detect_host

    host = detect_host()
    data["created_utc"] = started
    data["host"] = {"cpu": host.model_name, "microarchitecture": host.microarchitecture, "arch": host.arch,
                    "logical_cores": host.logical_cores}
    data["load_average_at_start"], data["load_average_at_end"] = list(load_start), list(os.getloadavg())
    data["run"] = stamp(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump(data, f, indent=2)
    print(f"{'all OK' if res.ok else 'FAILURES'}; wrote {args.out}")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
