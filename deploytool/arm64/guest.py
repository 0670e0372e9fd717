"""Runs INSIDE the emulated aarch64 Python (numpy and onnxruntime only; no deploytool imports).

Usage: ``python3.11 guest.py JOB.json``. The job names models, their input .npz and where to write
output .npz; one emulated process runs all of them, so ONNX Runtime is imported once per CPU model.
The last line printed on stdout is a JSON summary: machine, HWCAPs, onnxruntime version, and per
model the providers that ran (and why others were skipped), the number of ``InsertedPrecisionFreeCast``
nodes ORT added (fp16 run through fp32 on a core without fp16 arithmetic), and any error.
"""

import ctypes
import json
import platform
import sys
import time

_HWCAP = {1: "asimd", 9: "fphp", 10: "asimdhp", 20: "asimddp", 22: "sve", 23: "asimdfhm"}
_HWCAP2 = {1: "sve2", 13: "i8mm", 14: "bf16", 23: "sme", 37: "sme2"}


def _hwcaps():
    try:
        libc = ctypes.CDLL(None)
        libc.getauxval.restype = ctypes.c_ulong
        hw, hw2 = libc.getauxval(16), libc.getauxval(26)
    except Exception:  # pragma: no cover - only on an odd libc
        return []
    return [v for k, v in _HWCAP.items() if hw >> k & 1] + [v for k, v in _HWCAP2.items() if hw2 >> k & 1]


def _fields(buf, start=0, end=None):
    """(field number, wire type, value) of a protobuf message (length-delimited values as slices)."""
    i, end = start, len(buf) if end is None else end
    while i < end:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            val, i = (i, i + n), i + n
        elif wire == 5:
            val, i = None, i + 4
        elif wire == 1:
            val, i = None, i + 8
        else:
            raise ValueError("unsupported protobuf wire type %d" % wire)
        yield field, wire, val


def _varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _casts(path):
    """Nodes named InsertedPrecisionFreeCast_* in an optimized ONNX file (ModelProto.graph=7,
    GraphProto.node=1, NodeProto.name=3), read with a minimal protobuf parser (no onnx package here)."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
        count = 0
        for field, wire, val in _fields(buf):
            if field == 7 and wire == 2:
                for gf, gw, gv in _fields(buf, *val):
                    if gf == 1 and gw == 2:
                        for nf, nw, nv in _fields(buf, *gv):
                            if nf == 3 and nw == 2 and buf[nv[0]:nv[1]].startswith(b"InsertedPrecisionFreeCast"):
                                count += 1
        return count
    except (OSError, ValueError, IndexError):
        return None


def main(job_path):
    t0 = time.time()
    import numpy as np
    import onnxruntime as ort

    with open(job_path) as f:
        job = json.load(f)
    available = ort.get_available_providers()
    summary = {"machine": platform.machine(), "onnxruntime": ort.__version__, "hwcaps": _hwcaps(),
               "available_providers": available, "import_s": round(time.time() - t0, 2), "models": []}
    for item in job["models"]:
        res = {"model": item["model"], "error": None}
        try:
            so = ort.SessionOptions()
            so.intra_op_num_threads = int(job.get("threads", 1))
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            for k, v in item.get("config_entries", {}).items():
                so.add_session_config_entry(k, str(v))
            if item.get("optimized_path"):
                so.optimized_model_filepath = item["optimized_path"]
            wanted = item.get("providers") or ["CPUExecutionProvider"]
            chosen, skipped = [], []
            for i, name in enumerate(wanted):
                if name in available:
                    chosen.append((name, item.get("provider_options", [{}] * len(wanted))[i]))
                else:
                    skipped.append([name, "not in this onnxruntime build: available are [%s]"
                                    % ", ".join(a for a in available if a != "AzureExecutionProvider")])
            if not chosen:
                chosen = [("CPUExecutionProvider", {})]
            ts = time.time()
            sess = ort.InferenceSession(item["model"], so, providers=[c[0] for c in chosen],
                                        provider_options=[c[1] for c in chosen])
            res["create_s"] = round(time.time() - ts, 2)
            res["providers"] = sess.get_providers()
            res["skipped"] = skipped
            feeds = dict(np.load(item["feeds"]))
            ts = time.time()
            outs = sess.run(None, feeds)
            res["run_s"] = round(time.time() - ts, 2)
            names = [o.name for o in sess.get_outputs()]
            np.savez(item["out"], **dict(zip(names, outs)))
            if item.get("optimized_path"):
                res["inserted_casts"] = _casts(item["optimized_path"])
        except Exception as e:  # reported per model; the host turns it into a failure
            res["error"] = ("%s: %s" % (type(e).__name__, " ".join(str(e).split())))[:400]
        summary["models"].append(res)
    summary["total_s"] = round(time.time() - t0, 2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
