"""Check an exported model against the PyTorch model on fixed inputs.

Inputs (seeded, independent of the exporter): ``seq8`` and ``seq128`` (batch 1) and ``padded``, a
batch of two rows of lengths 8 and 128 padded to 128 with the pad token and a zero attention mask.
Lengths are clipped to the model's position limit. The whole output tensor is compared, padded
positions included (they must match too: later passes compare graphs on the same batches).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from deploytool.errors import DeployError
from deploytool.export.hf import input_names, max_sequence_length

logger = logging.getLogger(__name__)

__all__ = ["validation_inputs", "torch_reference", "compare", "ValidationError"]


class ValidationError(DeployError):
    """The exported model disagrees with PyTorch beyond the tolerance."""


def _batch(model, lengths: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    c = model.config
    pad = int(getattr(c, "pad_token_id", 0) or 0)
    rng = np.random.default_rng(seed)
    seq = max(lengths)
    # ids from 3 on skip the usual special tokens (pad 0/1, cls, sep) so RoBERTa positions stay regular
    ids = rng.integers(3, int(c.vocab_size), size=(len(lengths), seq), dtype=np.int64)
    ids[ids == pad] = 3
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = pad
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {n: feeds[n] for n in input_names(model)}


def validation_inputs(model) -> dict[str, dict[str, np.ndarray]]:
    """name -> feeds: seq8, seq128 and the padded batch (8 and 128), clipped to the position limit."""
    limit = max_sequence_length(model)
    short, long_ = min(8, limit), min(128, limit)
    return {
        f"seq{short}": _batch(model, (short,), seed=1),
        f"seq{long_}": _batch(model, (long_,), seed=2),
        f"padded[{short},{long_}]": _batch(model, (short, long_), seed=3),
    }


def torch_reference(model, feeds: dict[str, np.ndarray], output_name: str) -> np.ndarray:
    """The PyTorch model's output on ``feeds`` (float32 numpy)."""
    import torch

    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}, return_dict=True)
    return getattr(out, output_name).float().numpy()


def compare(model, onnx_bytes: bytes | str | os.PathLike, output_name: str, atol: float) -> dict[str, float]:
    """Max abs difference per validation input; raises ValidationError (naming the worst) above atol.
    ``onnx_bytes``: the serialized model, or its path (a model with external data has no bytes)."""
    from deploytool.runtime.infer import run_onnx

    diffs: dict[str, float] = {}
    for name, feeds in validation_inputs(model).items():
        ref = torch_reference(model, feeds, output_name)
        if not np.all(np.isfinite(ref)):  # "differs from PyTorch: max abs diff inf" blamed the export
            raise ValidationError(f"the model's own PyTorch output '{output_name}' is not finite on {name} "
                                  f"({int(np.isnan(ref).sum())} NaN, {int(np.isinf(ref).sum())} inf of {ref.size} "
                                  "values; NaN or inf in its weights?): nothing to export")
        got = run_onnx(onnx_bytes, feeds)
        if output_name not in got:
            raise ValidationError(f"exported model has no output '{output_name}' (outputs: {', '.join(got)})")
        out = got[output_name]
        if out.shape != ref.shape:
            raise ValidationError(f"validation input {name}: ONNX output shape {out.shape} != PyTorch {ref.shape}")
        diff = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
        if not np.isfinite(diff):
            diff = float("inf")
        diffs[name] = diff
        logger.info("validation %s: max abs diff %.3g", name, diff)
    worst = max(diffs, key=diffs.get)
    if diffs[worst] > atol:
        shown = ", ".join(f"{k} {v:.3g}" for k, v in diffs.items())
        raise ValidationError(f"exported model differs from PyTorch: max abs diff {diffs[worst]:.3g} on {worst} "
                              f"> atol {atol:g} ({shown})")
    return diffs
