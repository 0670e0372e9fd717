"""One pass in a fresh process, as a user's script runs it: ``python benchmarks/_pass_worker.py SPEC_JSON``.

``pass_speed.py`` and ``pass_speed_ab.py`` time this process's wall (interpreter start, imports, load, pass,
write, gate); it imports what such a script imports (the public ``deploytool.passes.transform`` and the one
pass's config module) and nothing of the harness's (argparse, subprocess, the results stamp's package
metadata: ~45 ms of every process when the pass ran inside ``pass_speed.py`` itself, charged to the pass).
Prints one JSON line: ``ok``, the pass's own seconds, the import seconds, the peak RSS (VmHWM) and the stats
the results keep.
"""

from __future__ import annotations

import json
import sys
import time

HEADS = {0: [0, 1], 5: [3], 11: [11]}


def _config(name: str):
    """The pass's config, its module alone imported (as a user's script for that one pass would)."""
    if name == "slice":
        from deploytool.passes.slice_subnetwork import SliceConfig
        return SliceConfig(width=0.5, depth=1.0)
    if name == "prune-heads":
        from deploytool.passes.prune_heads import HeadPruneConfig
        return HeadPruneConfig(heads=HEADS)
    if name == "prune-ffn":
        from deploytool.passes.prune_ffn import FFNPruneConfig
        return FFNPruneConfig(keep=0.5)
    if name == "reorder":
        from deploytool.passes.reorder import ReorderConfig
        return ReorderConfig()
    if name in ("int8", "int8-native", "int8-ort"):
        from deploytool.passes.quantize_int8 import Int8Config
        return Int8Config() if name == "int8" else Int8Config(engine=name.split("-")[1])
    if name == "fp16":
        from deploytool.passes.fp16 import Fp16Config
        return Fp16Config(check_host=False)
    if name.startswith("pack"):
        from deploytool.passes.pack_weights import PackConfig
        return {"pack": lambda: PackConfig(weights="ternary"),
                "pack-densest": lambda: PackConfig(weights="ternary", runtime="densest"),
                "pack-binary": lambda: PackConfig(weights="binary"),
                "pack-split-binary": lambda: PackConfig(weights="split-binary")}[name]()
    raise KeyError(name)


KEEP = ("bytes_before", "bytes_after", "verified", "verify_s", "gate_process", "gate_peak_rss_bytes", "engine",
        "gate_reference_reused", "gate_timeline", "gate_warmed_bytes",
        "opset", "weights_packed", "bits_per_weight", "runtime", "heads_after", "neurons_after")


def run(spec: dict) -> dict:
    """One pass in this process: its own time, this process's peak RSS, the gate's apart."""
    t_import = time.perf_counter()
    from deploytool.passes import transform
    from deploytool.runtime.procstat import peak_rss_bytes, rss_bytes

    cfg = _config(spec["pass"])
    rss_imports = rss_bytes()
    t0 = time.perf_counter()
    try:
        res = transform(spec["src"], spec["dst"], cfg)
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return {"ok": False, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:400]}",
                "peak_rss_bytes": peak_rss_bytes()}
    seconds = time.perf_counter() - t0
    return {"ok": True, "pass_s": round(seconds, 2), "imports_s": round(t0 - t_import, 2),
            "rss_after_imports_bytes": rss_imports, "peak_rss_bytes": peak_rss_bytes(),
            "stats": {k: v for k, v in res.to_dict().items() if k in KEEP}}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
