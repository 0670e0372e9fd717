"""Activation fake-quantization for QAT and its evaluation (kept apart so ``evaluate`` and ``qat`` both
import it without importing each other): the input of every quantized Linear read as the packed
``speed`` runtime's ONNX ``DynamicQuantizeLinear`` computes it (see :mod:`deploytool.train.qat`)."""

from __future__ import annotations

import torch

__all__ = ["fake_quant_act", "act_fn_for"]


def fake_quant_act(x: torch.Tensor) -> torch.Tensor:
    """``DynamicQuantizeLinear`` (uint8, one scale per tensor) then dequantized; straight-through gradient."""
    with torch.no_grad():
        lo = torch.clamp(x.min(), max=0.0)
        hi = torch.clamp(x.max(), min=0.0)
        scale = (hi - lo) / 255.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zp = torch.clamp(torch.round(-lo / scale), 0, 255)
        q = (torch.clamp(torch.round(x / scale) + zp, 0, 255) - zp) * scale
    return x + (q - x).detach()


def act_fn_for(act_bits: int | None):
    """The ``subnet_forward`` activation hook for ``act_bits`` (8: runtime int8; 0/None: fp32)."""
    return fake_quant_act if act_bits == 8 else None
