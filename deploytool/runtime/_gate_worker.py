"""The verification gate in a process of its own: ``python -m deploytool.runtime._gate_worker SPEC.json``.

:func:`deploytool.runtime.verify.verify_model_isolated` writes the spec (model path, feeds file,
reference, tolerances) and reads back one JSON result: ``ok``, the error's message, node and op, the
largest difference, the seconds and this process's peak resident set (VmHWM), so the ONNX Runtime
sessions of a big model's gate never add to the memory of the process that ran the pass.
"""

from __future__ import annotations

import json
import sys

from deploytool.runtime.procstat import peak_rss_bytes as _peak_rss


def main(spec_path: str) -> int:
    import numpy as np

    from deploytool.errors import VerificationError
    from deploytool.runtime.verify import verify_model

    with open(spec_path) as f:
        spec = json.load(f)
    with np.load(spec["feeds"]) as z:
        feeds = {k: z[k] for k in z.files}
    out: dict = {"ok": False}
    try:
        report = verify_model(spec["model"], feeds, reference=spec.get("reference"), rtol=spec["rtol"],
                              min_cosine=spec.get("min_cosine"), reference_label=spec["reference_label"])
        out.update(ok=True, max_diff=report.max_diff, seconds=report.seconds, outputs=list(report.outputs))
    except VerificationError as e:
        out.update(error=str(e), node=e.node, op=e.op)
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        out.update(error=f"the verification gate failed ({type(e).__name__}: {' '.join(str(e).split())[:300]})")
    out["peak_rss_bytes"] = _peak_rss()
    with open(spec["result"], "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
