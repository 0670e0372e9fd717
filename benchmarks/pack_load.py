"""Load time of packed models: the ONNX Runtime session a user creates for each ``pack`` format, and the
memory it takes, against the same file with the unpacking deploytool wrote before 2026-12-02, in one run.

A packed file keeps its weights as bytes (5 trits, 1 bit or two 1-bit planes per weight; 2-bit INT2 for
``--runtime speed`` ternary) and a subgraph of standard ops that turns them into int8 codes; ONNX Runtime
folds that subgraph once, when the session is created, so a user pays it at every load (on a phone: every
cold start). Since 2026-12-02 the subgraph is a lookup, ``Gather(table[256, per] int8, Cast(bytes, int32))``;
before, it was int32 arithmetic, ``Unsqueeze -> Div(3^i or 2^i) -> Mod -> [Mul] -> Sub``, then a Cast to
int8. The peer here is each lookup file with its lookups rewritten into that arithmetic (restated from
``deploytool/passes/pack_graph.py`` at commit 1a6e9e4), so the two differ in nothing else.

Model: a random BERT-base-shaped encoder with its pooler (``pass_speed.py``'s export: TorchScript, 437.9 MB),
or ``--model``. Formats: ``deploytool pack`` with ternary (speed, densest, memory), binary (speed, memory)
and split-binary (speed, memory). Each file, and each peer, is loaded ``--repeats`` times (3), all of them
interleaved round by round, each in a fresh process with ONNX Runtime's default session options (what a user
gets) and one run on a fixed batch: import, creation and run seconds, the process's peak RSS (VmHWM) and its
RSS after the import (the creation's own memory is the difference), and a hash of the outputs: a file and its
peer must compute the same bytes. ``create_over_peer`` is the median of the rounds' paired ratios.

Usage: ``.venv/bin/python benchmarks/pack_load.py [--model PATH] [--work DIR] [--repeats 3] [-o
benchmarks/results/pack_load.json]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
RESULTS = ROOT / "results" / "pack_load.json"
FORMATS = (("ternary", "speed"), ("ternary", "densest"), ("ternary", "memory"), ("binary", "speed"),
           ("binary", "memory"), ("split-binary", "speed"), ("split-binary", "memory"))
# the arithmetic each lookup replaced: per-byte values, digit weights, modulus, multiplier, offset
ARITHMETIC = {5: ([1, 3, 9, 27, 81], 3, 1, 1), 8: ([1, 2, 4, 8, 16, 32, 64, 128], 2, 2, 1),
              4: ([1, 4, 16, 64], 4, 1, 2)}


def worker_session(path: str) -> dict:
    """A user's load of ``path`` in this fresh process: default session options, one run on a fixed batch."""
    from pass_speed import bert_feeds  # beside this script (imported before the memory baseline below)

    from deploytool.runtime.procstat import peak_rss_bytes, rss_bytes

    t0 = time.perf_counter()
    import numpy as np
    import onnxruntime as ort

    t_import = time.perf_counter() - t0
    rss_import = rss_bytes()
    so = ort.SessionOptions()
    so.log_severity_level = 4
    t1 = time.perf_counter()
    sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
    t_create = time.perf_counter() - t1
    feeds = bert_feeds(sess, (2, 16))
    t2 = time.perf_counter()
    outs = sess.run(None, feeds)
    t_run = time.perf_counter() - t2
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(o).tobytes() for o in outs)).hexdigest()[:16]
    return {"ok": True, "import_s": round(t_import, 3), "create_s": round(t_create, 3), "run_s": round(t_run, 3),
            "rss_after_import_bytes": rss_import, "peak_rss_bytes": peak_rss_bytes(), "outputs_sha256": digest}


def byte_lookup_peer(src: Path, dst: Path) -> int:
    """``src`` with every two-byte lookup (``Gather`` of the [65536, 2 * per] pair table by ``Cast(uint16 pairs,
    int32)``, since 2026-12-03) rewritten into the one-byte lookup deploytool wrote from 2026-12-02: the same
    bytes read as a uint8 initializer [2n], gathered from the [256, per] table the pair table is made from
    ([2n, per] instead of [n, 2 * per]: the same values in the same order, so the Reshape after it is kept).
    The pair table's nodes are removed. Returns how many were rewritten."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    made = {o: n for n in g.node for o in n.output}

    def byte_table(v: str) -> str | None:  # Reshape(Concat(Expand(Unsqueeze(table)), ...)) -> table
        chain = [("Reshape", 0), ("Concat", 0), ("Expand", 0), ("Unsqueeze", 0)]
        for op, i in chain:
            n = made.get(v)
            if n is None or n.op_type != op:
                return None
            v = n.input[i]
        t = inits.get(v)
        return v if t is not None and t.data_type == onnx.TensorProto.INT8 and list(t.dims)[:1] == [256] else None

    count, tables = 0, set()
    for n in g.node:
        cast = made.get(n.input[1]) if n.op_type == "Gather" and len(n.input) == 2 else None
        pairs = inits.get(cast.input[0]) if cast is not None and cast.op_type == "Cast" else None
        table = byte_table(n.input[0]) if pairs is not None and pairs.data_type == onnx.TensorProto.UINT16 else None
        if table is None:
            continue
        tables.add(n.input[0])
        data = numpy_helper.to_array(pairs).astype("<u2").view(np.uint8)
        pairs.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(data), pairs.name))
        n.input[0] = table
        count += 1
    # the pair tables' nodes, now unread: each Reshape and what only it reads
    dead = set()
    for name in tables:
        stack = [name]
        while stack:
            node = made.get(stack.pop())
            if node is None or id(node) in dead:
                continue
            dead.add(id(node))
            stack.extend(i for i in node.input if i in made)
    keep = [n for n in g.node if id(n) not in dead]
    del g.node[:]
    g.node.extend(keep)
    onnx.save(model, str(dst))
    return count


def arithmetic_peer(src: Path, dst: Path) -> int:
    """``src`` with every lookup unpack (``Gather`` of a [256, per] int8 initializer by ``Cast(bytes, int32)``)
    rewritten into the int32 arithmetic deploytool wrote before, ending in a Cast to int8 (the lookup's type).
    Returns how many were rewritten."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    tables = {t.name: t for t in g.initializer
              if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2 and t.dims[0] == 256 and t.dims[1] in ARITHMETIC}
    consts: dict[str, str] = {}

    def const(array: np.ndarray) -> str:
        key = f"{array.dtype}:{array.tolist()}"
        if key not in consts:
            consts[key] = f"pk_arith_c{len(consts)}"
            g.initializer.append(numpy_helper.from_array(array, consts[key]))
        return consts[key]

    nodes, count = [], 0
    for n in g.node:
        if n.op_type == "Gather" and n.domain in ("", "ai.onnx") and n.input[0] in tables:
            divs, mod, mult, off = ARITHMETIC[tables[n.input[0]].dims[1]]
            x, base = n.input[1], n.output[0]
            steps = [("Unsqueeze", [x, const(np.array([-1], np.int64))]),
                     ("Div", [None, const(np.array(divs, np.int32))]),
                     ("Mod", [None, const(np.array(mod, np.int32))])]
            if mult != 1:
                steps.append(("Mul", [None, const(np.array(mult, np.int32))]))
            steps.append(("Sub", [None, const(np.array(off, np.int32))]))
            prev = None
            for i, (op, ins) in enumerate(steps):
                out = f"{base}_arith{i}"
                nodes.append(helper.make_node(op, [prev if a is None else a for a in ins], [out], name=out))
                prev = out
            nodes.append(helper.make_node("Cast", [prev], [base], name=f"{base}_arith_cast", to=onnx.TensorProto.INT8))
            count += 1
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    for name in tables:
        if not any(name in n.input for n in g.node):
            g.initializer.remove(tables[name])
    onnx.save(model, str(dst))
    return count


def _spawn_session(path: Path) -> dict:
    os.sync()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_worker", str(path)],
                       capture_output=True, text=True, cwd=str(REPO))
    wall = time.perf_counter() - t0
    line = next((ln for ln in reversed(p.stdout.splitlines()) if ln.startswith("{")), None)
    if p.returncode or line is None:
        return {"ok": False, "error": " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:])[:500],
                "process_wall_s": round(wall, 2)}
    out = json.loads(line)
    out["process_wall_s"] = round(wall, 2)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _pack(src: Path, dst: Path, weights: str, runtime: str) -> dict:
    exe = Path(sys.executable).with_name("deploytool")
    args = ["pack", str(src), "--weights", weights, "--runtime", runtime, "-o", str(dst)]
    argv = ([str(exe)] if exe.exists() else [sys.executable, "-m", "deploytool"]) + args
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, cwd=str(REPO))
    out = {"argv": ["deploytool"] + args, "ok": p.returncode == 0, "process_wall_s": round(time.perf_counter() - t0, 2)}
    if p.returncode:
        out["error"] = " | ".join((p.stderr or p.stdout).strip().splitlines()[-2:])[:400]
    return out


def _summary(runs: list[dict]) -> dict:
    ok = [r for r in runs if r.get("ok")]
    if len(ok) != len(runs):
        return {"ok": False, "error": next(r["error"] for r in runs if not r.get("ok")), "runs": runs}
    med = lambda key: statistics.median(r[key] for r in ok)  # noqa: E731
    return {"ok": True, "create_s": round(med("create_s"), 3), "run_s": round(med("run_s"), 3),
            "create_s_runs": [r["create_s"] for r in ok],
            "peak_rss_bytes": int(med("peak_rss_bytes")),
            "creation_rss_bytes": int(statistics.median(r["peak_rss_bytes"] - r["rss_after_import_bytes"] for r in ok)),
            "outputs_sha256": sorted({r["outputs_sha256"] for r in ok})}


def main() -> None:
    import pass_speed  # beside this script: its command line and export make the same BERT-base-shaped file

    args, run, work, src, model_info = pass_speed.bert_base_run(__doc__, RESULTS, "pack_load_")

    rows: dict[str, dict] = {}
    files: list[tuple[str, str, Path]] = []  # (format, "lookup" | "bytes" | "peer", path)
    for weights, runtime in FORMATS:
        name = f"{weights}-{runtime}"
        out = work / f"{name}.onnx"
        out.unlink(missing_ok=True)
        packed = _pack(src, out, weights, runtime)
        row = rows[name] = {"pack": packed}
        print(f"{name}: pack {packed['process_wall_s']} s{'' if packed['ok'] else ' FAILED ' + packed['error']}", flush=True)
        if not packed["ok"]:
            continue
        row["file_bytes"] = out.stat().st_size
        files.append((name, "lookup", out))
        bytewise = work / f"{name}.bytes.onnx"
        row["pair_lookups"] = byte_lookup_peer(out, bytewise)
        if row["pair_lookups"]:
            files.append((name, "bytes", bytewise))
        peer = work / f"{name}.arith.onnx"
        n = arithmetic_peer(bytewise, peer)
        row["lookups"] = n
        if n:
            files.append((name, "peer", peer))
        else:
            peer.unlink(missing_ok=True)

    runs: dict[tuple[str, str], list[dict]] = {(n, k): [] for n, k, _ in files}
    for r in range(args.repeats):
        for name, kind, path in files:
            res = _spawn_session(path)
            runs[(name, kind)].append(res)
            print(f"round {r + 1} {name} {kind}: create {res.get('create_s')} s"
                  f"{'' if res.get('ok') else ' FAILED ' + res.get('error', '')}", flush=True)

    for name, row in rows.items():
        if (name, "lookup") not in runs:
            continue
        row["load"] = _summary(runs[(name, "lookup")])
        if (name, "bytes") in runs:
            row["peer_byte_lookup"] = peer = _summary(runs[(name, "bytes")])
            if row["load"]["ok"] and peer["ok"]:
                pairs = [p["create_s"] / l["create_s"] for l, p in zip(runs[(name, "lookup")], runs[(name, "bytes")])]
                row["byte_lookup_create_over_pairs"] = round(statistics.median(pairs), 2)
                row["byte_lookup_creation_rss_over_pairs"] = round(
                    peer["creation_rss_bytes"] / max(1, row["load"]["creation_rss_bytes"]), 2)
                row["same_outputs_as_byte_lookup"] = row["load"]["outputs_sha256"] == peer["outputs_sha256"] \
                    and len(peer["outputs_sha256"]) == 1
        if (name, "peer") in runs:
            row["peer_arithmetic"] = peer = _summary(runs[(name, "peer")])
            if row["load"]["ok"] and peer["ok"]:
                pairs = [p["create_s"] / l["create_s"] for l, p in zip(runs[(name, "lookup")], runs[(name, "peer")])]
                row["peer_create_over_lookup"] = round(statistics.median(pairs), 2)
                row["peer_creation_rss_over_lookup"] = round(peer["creation_rss_bytes"] / max(1, row["load"]["creation_rss_bytes"]), 2)
                row["same_outputs_as_peer"] = row["load"]["outputs_sha256"] == peer["outputs_sha256"] \
                    and len(peer["outputs_sha256"]) == 1

    report = {"benchmark": "pack_load", "model": model_info, "repeats": args.repeats,
              "session_options": "ONNX Runtime defaults (CPUExecutionProvider), one run on a [2, 16] batch",
              "peer": "the same file with each lookup unpack rewritten into the int32 Div/Mod arithmetic of commit 1a6e9e4",
              "peer_byte_lookup": "the same file with each two-byte lookup rewritten into the one-byte lookup of "
                                  "2026-12-02 (commit 5ff359c); the arithmetic peer is made from that one",
              "formats": rows}
    report["run"] = stamp(run)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--_worker":
        print(json.dumps(worker_session(sys.argv[2])))
    else:
        main()
