"""What ONNX Runtime's constant folding costs per weight value, for each form a packed weight can be unpacked in.

A ``pack`` output keeps its weights as bytes plus a subgraph of standard ops that turns them into int8 codes;
ONNX Runtime folds that subgraph when a session is created, so every user pays it at every load, and so does
the pass's own verification gate (the output's session is the last thing a BERT-base pack waits for:
``pass_speed.json``'s ``gate_timeline``). This measures the forms against each other on one synthetic graph:
``--layers`` weights of ``[K, N]`` (default 24 x [768, 3072]: 56.6 M values, two thirds of a BERT-base), each
unpacked and read by a ``DynamicQuantizeMatMul`` (the speed runtime's linear kernel) on a [1, K] input.

Forms (the same codes in each, so every session computes the same outputs, checked by a hash):

- ``plain_int8``: the int8 codes stored as they are (no unpacking: the floor of loading and prepacking);
- ``int2_cast``: INT2 weights (opset 25) and one ``Cast`` to int8: what ``pack --runtime speed`` writes for ternary;
- ``byte_lookup``: 4 codes a byte, ``Cast(uint8 -> int32)``, ``Gather`` from a [256, 4] int8 table, ``Reshape``
  (the one-byte lookup ``pack`` wrote for densest and binary before its two-byte lookups);
- ``shift_and``: 4 codes a byte (0, 1, 2), ``BitShift`` by [0, 2, 4, 6], ``BitwiseAnd 3``, ``Reshape``, read as uint8
  with zero point 1 (the codes -1, 0, 1);
- ``pair_lookup``: 10 trits in two bytes (``pack --runtime densest``'s form): ``Cast(uint16 -> int32)``, ``Gather``
  from a [65536, 10] table, ``Reshape`` to 1-D, ``Slice`` off the padding, ``Reshape`` to [K, N];
- ``pair_lookup_no_tail``: the same with the padding neither stored nor sliced off (what a layout whose rows
  hold whole pairs would fold; here ``N`` is trimmed to a multiple of 10, so its outputs are not compared).

Each file is loaded ``--repeats`` times, interleaved round by round, each in a fresh process, with ONNX Runtime's
default graph optimizations (what a user gets) and with them off (``ORT_DISABLE_ALL``: nothing folded at
creation; the unpacking then runs in every run, which times the unpacking kernels themselves), one intra-op
thread. Reported per form: creation seconds (median), ns per weight value, the ratio to ``plain_int8`` and the
first run's seconds with optimizations off.

Usage: ``.venv/bin/python benchmarks/unpack_fold.py [--layers 24] [--repeats 5] [--work DIR]
[-o benchmarks/results/unpack_fold.json]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "unpack_fold.json"
FORMS = ("plain_int8", "int2_cast", "byte_lookup", "shift_and", "pair_lookup", "pair_lookup_no_tail")
K, N = 768, 3072


def _shape(form: str) -> tuple[int, int]:
    return (K, N - N % 10) if form == "pair_lookup_no_tail" else (K, N)


def build(form: str, layers: int, path: Path) -> int:
    """Write ``form``'s model to ``path``; the number of weight values it holds."""
    import numpy as np
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(0)
    k, n = _shape(form)
    nodes, inits, outs = [], [], []
    table4 = np.stack([((np.arange(256) >> s) & 3) - 1 for s in (0, 2, 4, 6)], 1).astype(np.int8)
    pairs = np.array([[(i // 3 ** j) % 3 - 1 for j in range(10)] for i in range(3 ** 10)], np.int8)
    table10 = np.zeros((65536, 10), np.int8)
    table10[:3 ** 10] = pairs
    shared = {"shape": np.array([k, n], np.int64), "flat": np.array([-1], np.int64), "zero": np.array([0], np.int64),
              "count": np.array([k * n], np.int64), "shifts": np.array([0, 2, 4, 6], np.uint8),
              "three": np.array([3], np.uint8), "one": np.array([1], np.uint8), "scale": np.array([0.01], np.float32)}
    if form == "byte_lookup":
        shared["table"] = table4
    if form.startswith("pair"):
        shared["table"] = table10
    inits += [nh.from_array(v, name) for name, v in shared.items()]
    for i in range(layers):
        codes = rng.integers(-1, 2, size=(k, n)).astype(np.int8)  # -1, 0, 1
        w, d = f"w{i}", f"d{i}"
        u = (codes + 1).astype(np.uint8)  # 0, 1, 2
        if form == "plain_int8":
            inits.append(nh.from_array(codes, d))
        elif form == "int2_cast":
            two = (codes.astype(np.int16) & 3).astype(np.uint8).reshape(-1, 4)  # two's complement, 4 a byte
            t = T()
            t.name, t.data_type = w, T.INT2
            t.dims.extend([k, n])
            t.raw_data = (two[:, 0] | two[:, 1] << 2 | two[:, 2] << 4 | two[:, 3] << 6).astype(np.uint8).tobytes()
            inits.append(t)
            nodes.append(h.make_node("Cast", [w], [d], to=T.INT8))
        elif form in ("byte_lookup", "shift_and"):
            q = u.reshape(k, n // 4, 4)
            packed = (q[..., 0] | q[..., 1] << 2 | q[..., 2] << 4 | q[..., 3] << 6).astype(np.uint8)
            if form == "byte_lookup":
                inits.append(nh.from_array(packed, w))  # the table maps a byte's four fields 0..2 to -1..1
                nodes += [h.make_node("Cast", [w], [f"c{i}"], to=T.INT32),
                          h.make_node("Gather", ["table", f"c{i}"], [f"g{i}"], axis=0),
                          h.make_node("Reshape", [f"g{i}", "shape"], [d])]
            else:
                inits.append(nh.from_array(packed[..., None], w))
                nodes += [h.make_node("BitShift", [w, "shifts"], [f"s{i}"], direction="RIGHT"),
                          h.make_node("BitwiseAnd", [f"s{i}", "three"], [f"a{i}"]),
                          h.make_node("Reshape", [f"a{i}", "shape"], [d])]
        else:  # the pair lookups: 10 trits in two bytes, the last pair padded
            flat = (codes.reshape(-1) + 1).astype(np.int64)
            pad = (-flat.size) % 10
            digits = np.concatenate([flat, np.ones(pad, np.int64)]).reshape(-1, 10)  # padding: code 0
            index = (digits * (3 ** np.arange(10))).sum(1)
            inits.append(nh.from_array(index.astype(np.uint16), w))
            nodes += [h.make_node("Cast", [w], [f"c{i}"], to=T.INT32),
                      h.make_node("Gather", ["table", f"c{i}"], [f"g{i}"], axis=0)]
            if form == "pair_lookup":
                nodes += [h.make_node("Reshape", [f"g{i}", "flat"], [f"r{i}"]),
                          h.make_node("Slice", [f"r{i}", "zero", "count", "zero"], [f"t{i}"]),
                          h.make_node("Reshape", [f"t{i}", "shape"], [d])]
            else:
                nodes.append(h.make_node("Reshape", [f"g{i}", "shape"], [d]))
        zp = ["one"] if form == "shift_and" else []
        nodes.append(h.make_node("DynamicQuantizeMatMul", ["x", d, "scale"] + zp, [f"y{i}"],
                                 domain="com.microsoft"))
        outs.append(h.make_tensor_value_info(f"y{i}", T.FLOAT, None))
    graph = h.make_graph(nodes, form, [h.make_tensor_value_info("x", T.FLOAT, [1, k])], outs, inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 25), h.make_opsetid("com.microsoft", 1)],
                         ir_version=11)
    onnx.save(model, str(path))
    return layers * k * n


def worker(path: str, optimize: bool) -> dict:
    """One user's load of ``path`` in this fresh process: creation and first-run seconds, an outputs hash."""
    import time

    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    create = time.perf_counter() - t0
    x = np.linspace(-1, 1, sess.get_inputs()[0].shape[1], dtype=np.float32)[None]
    t0 = time.perf_counter()
    ys = sess.run(None, {"x": x})
    run = time.perf_counter() - t0
    digest = hashlib.sha256(b"".join(np.round(y, 4).tobytes() for y in ys)).hexdigest()[:16]
    return {"create_s": create, "run_s": run, "outputs_sha256": digest}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("-o", "--output", type=Path, default=RESULTS)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1] == "1")))
        return 0
    run = stamp()
    work = args.work or Path(tempfile.mkdtemp(prefix="unpack-fold-"))
    work.mkdir(parents=True, exist_ok=True)
    values, sizes = {}, {}
    for form in FORMS:
        path = work / f"{form}.onnx"
        values[form] = build(form, args.layers, path)
        sizes[form] = path.stat().st_size
    times: dict[tuple[str, bool], list[dict]] = {}
    for _ in range(args.repeats):  # interleaved: each round loads every form once, each way
        for form in FORMS:
            for optimize in (True, False):
                out = subprocess.run([sys.executable, __file__, "--worker", str(work / f"{form}.onnx"),
                                      "1" if optimize else "0"], capture_output=True, text=True, check=True)
                times.setdefault((form, optimize), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    forms = {}
    for form in FORMS:
        opt, raw = times[(form, True)], times[(form, False)]
        create = statistics.median(r["create_s"] for r in opt)
        forms[form] = {"values": values[form], "file_bytes": sizes[form], "create_s": round(create, 4),
                       "create_s_runs": [round(r["create_s"], 4) for r in opt],
                       "create_ns_per_value": round(create / values[form] * 1e9, 3),
                       "unoptimized_create_s": round(statistics.median(r["create_s"] for r in raw), 4),
                       "unoptimized_first_run_s": round(statistics.median(r["run_s"] for r in raw), 4),
                       "outputs_sha256": sorted({r["outputs_sha256"] for r in opt + raw})}
    base = forms["plain_int8"]["create_ns_per_value"]
    for f in forms.values():
        f["create_per_value_over_plain_int8"] = round(f["create_ns_per_value"] / base, 3)
    full = [f for name, f in forms.items() if _shape(name) == (K, N)]
    report = {"benchmark": "unpack_fold", "layers": args.layers, "weight_shape": [K, N], "repeats": args.repeats,
              "session_options": "ORT defaults (all graph optimizations, constant folding) and ORT_DISABLE_ALL, "
                                 "1 intra-op thread, each load in a fresh process, interleaved",
              "same_outputs": len({h for f in full for h in f["outputs_sha256"]}) == 1,
              "forms": forms}
    report["run"] = stamp(run)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for name, f in forms.items():
        print(f"{name:20s} create {f['create_s']:.3f} s  {f['create_ns_per_value']:.2f} ns/value "
              f"({f['create_per_value_over_plain_int8']:.2f}x plain)  unoptimized run {f['unoptimized_first_run_s']:.3f} s")
    print(f"same outputs: {report['same_outputs']}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
