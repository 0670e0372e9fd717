"""Export a jina-embeddings-v2-base-shaped model (its whole 8192-position ALiBi buffer: 3.2 GB) with every exporter.

    .venv/bin/python benchmarks/alibi_export.py [--positions 8192] [-o benchmarks/results/alibi_export.json]

jina-embeddings-v2-base-en's own code keeps ``alibi`` as one ``[1, 12, 8192, 8192]`` float32 buffer; exported as it
is, that is a 3.2 GB constant (huggingface/optimum#1800: "Cannot export jinaai models to onnx format because the
model is > 2Gb"). A hub-like folder of the restated JinaBERT (``deploytool.testing.hub_folder``: Jina's wiring,
BERT-base's shape, random weights, seed 0; no network here) is exported in a fresh process each:

- ``deploytool export --trust-remote-code --exporter torch|dynamo|optimum`` (the buffer traced as a corner and
  written as the computation of its values, ``deploytool.export.alibi_buffers``);
- the peers: plain ``torch.onnx.export`` of the same model with the whole buffer, to a file path (external data
  allowed): TorchScript (as optimum and most scripts call it) and dynamo;
- then ``deploytool reorder`` (a pass that keeps the outputs) of the file the plain dynamo export wrote, as a user
  would bring it: the pass writes the table as its computation too.

Recorded per export: exit status, wall seconds, the child's peak RSS (``wait4``; this process stays small, so that
the figure is the child's own), the files written, the first line of a
failure; then each ONNX file that was written is run in ONNX Runtime at 1,000 and 2,049 tokens (beyond the corner
and any validation length) against PyTorch's own forward on the same ids (the largest absolute difference).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _stamp import stamp  # beside this script: the results file's "run" block

ROOT = Path(__file__).resolve().parents[1]
SHAPE = {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072,
         "vocab_size": 30528}
LENGTHS = (1000, 2049)
EXPORTERS = ("torch", "dynamo", "optimum")

_PEER = """
import sys, torch
from transformers import AutoModel
dynamo = sys.argv[3] == "dynamo"
m = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
ids = torch.randint(3, 30000, (2, 8))
names = ("input_ids", "attention_mask", "token_type_ids")
if dynamo:
    b, s = torch.export.Dim("batch"), torch.export.Dim("sequence", max=8192)
    kw = {"opset_version": 18, "dynamic_shapes": {n: {0: b, 1: s} for n in names}}
else:
    kw = {"opset_version": 17, "dynamic_axes": {n: {0: "batch", 1: "sequence"} for n in names}}
torch.onnx.export(m, (ids, torch.ones_like(ids), torch.zeros_like(ids)), sys.argv[2], input_names=list(names),
                  output_names=["last_hidden_state", "pooler_output"], dynamo=dynamo, **kw)
"""


def _child(argv: list[str], folder: Path) -> dict:
    """Run ``argv`` in ``folder``; exit status, wall, peak RSS (wait4), the last line of its error output."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, cwd=folder, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        err.seek(0)
        text = err.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    errors = [line for line in text.splitlines() if "Error" in line or line.startswith("error:")]
    return {"exit": code, "wall_s": round(wall, 1), "peak_rss_gb": round(usage.ru_maxrss / 1e6, 2),
            "error": (errors[-1][:300] if errors else None) if code else None}


def _files(folder: Path, stem: str) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name.startswith(stem)}


def _differences(hub: Path, paths: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Each file's largest |ONNX Runtime - PyTorch| of last_hidden_state at LENGTHS tokens (batch 1)."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(hub), trust_remote_code=True).eval()
    feeds_at, refs = {}, {}
    for s in LENGTHS:
        ids = np.random.default_rng(s).integers(3, 30000, size=(1, s)).astype(np.int64)
        feeds_at[s] = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        with torch.no_grad():
            refs[s] = model(**{k: torch.from_numpy(v) for k, v in feeds_at[s].items()}).last_hidden_state.numpy()
    del model
    out = {}
    for name, path in paths.items():
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        wanted = [i.name for i in sess.get_inputs()]
        out[name] = {str(s): float(np.abs(sess.run(["last_hidden_state"], {k: feeds_at[s][k] for k in wanted})[0]
                                          - refs[s]).max()) for s in LENGTHS}
        del sess
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=8192)
    ap.add_argument("-o", "--output", default=str(ROOT / "benchmarks" / "results" / "alibi_export.json"))
    args = ap.parse_args(argv)
    run = stamp()
    shape = {**SHAPE, "max_position_embeddings": args.positions}
    heads, n = shape["num_attention_heads"], args.positions
    report: dict = {"benchmark": "alibi_export", "created_utc": run["started_utc"], "shape": shape,
                    "buffer_bytes": heads * n * n * 4, "lengths": list(LENGTHS), "exports": {}}
    deploytool = [str(Path(sys.executable).parent / "deploytool")]
    with tempfile.TemporaryDirectory(prefix="alibi-export-") as tmp:
        work = Path(tmp)
        # in a process of its own: a child's peak RSS (wait4) starts from this process's at the fork, and the
        # model with its whole buffer would put this one at ~7.7 GB
        hub = work / "jina-base"
        subprocess.run([sys.executable, "-c", "import json, sys; from deploytool.testing.hub_folder import "
                        "write_hub_folder; write_hub_folder('jina-bert', sys.argv[1], json.loads(sys.argv[2]), seed=0)",
                        str(hub), json.dumps(shape)], check=True)
        report["weights_bytes"] = (hub / "model.safetensors").stat().st_size
        written: dict[str, Path] = {}
        for exporter in EXPORTERS:
            print(f"deploytool export --exporter {exporter} ...", flush=True)
            r = _child(deploytool + ["export", "--model", str(hub), "--trust-remote-code", "--exporter", exporter,
                                     "-o", f"{exporter}.onnx"], work)
            r["files"] = _files(work, f"{exporter}.onnx")
            report["exports"][f"deploytool-{exporter}"] = r
            if r["exit"] == 0:
                written[f"deploytool-{exporter}"] = work / f"{exporter}.onnx"
            print(f"  {r}", flush=True)
        for kind in ("torchscript", "dynamo"):
            name = "torch.onnx.export" + ("" if kind == "torchscript" else " (dynamo)")
            print(f"peer: {name} of the whole buffer ...", flush=True)
            r = _child([sys.executable, "-c", _PEER, str(hub), f"peer-{kind}.onnx", kind], work)
            r["files"] = _files(work, f"peer-{kind}.onnx")
            report["exports"][name] = r
            if r["exit"] == 0:
                written[name] = work / f"peer-{kind}.onnx"
            print(f"  {r}", flush=True)
        if "torch.onnx.export (dynamo)" in written:
            print("deploytool reorder of the plain dynamo export ...", flush=True)
            r = _child(deploytool + ["reorder", "peer-dynamo.onnx", "-o", "reordered.onnx"], work)
            r["input_files"] = report["exports"]["torch.onnx.export (dynamo)"]["files"]
            r["files"] = _files(work, "reordered.onnx")
            report["exports"]["deploytool reorder of the dynamo export"] = r
            if r["exit"] == 0:
                written["deploytool reorder of the dynamo export"] = work / "reordered.onnx"
            print(f"  {r}", flush=True)
        print("ONNX Runtime against PyTorch at", LENGTHS, "tokens ...", flush=True)
        for name, diffs in _differences(hub, written).items():
            report["exports"][name]["max_abs_diff"] = diffs
    report["run"] = stamp(run)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
