"""int8 on inputs other passes produce: head-pruned models (per-layer heads), fp16 models (refused)."""

from __future__ import annotations

import numpy as np
import pytest

from deploytool.errors import PassRefusedError
from deploytool.passes.fp16 import Fp16Config, convert_fp16_file
from deploytool.passes.prune_heads import HeadPruneConfig, prune_heads_file
from deploytool.passes.quantize_int8 import Fusion, Int8Config, quantize_int8_file
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs


def test_fused_int8_of_a_head_pruned_model(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", "torch", layers=2)
    pruned = tmp_path / "p.onnx"
    prune_heads_file(src, pruned, HeadPruneConfig(heads={0: [1, 3]}))
    q = tmp_path / "q.onnx"
    quantize_int8_file(pruned, q, Int8Config(fusion=Fusion.ATTENTION))
    feeds = fixed_inputs()
    a = run_onnx(pruned, feeds)["last_hidden_state"]
    b = run_onnx(q, feeds)["last_hidden_state"]
    cos = float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos > 0.98


def test_fp16_model_is_refused(tiny_onnx, tmp_path):
    h = tmp_path / "h.onnx"
    convert_fp16_file(tiny_onnx("bert", "torch", layers=2), h, Fp16Config(check_host=False))
    with pytest.raises(PassRefusedError, match="fp16 weights"):
        quantize_int8_file(h, tmp_path / "q.onnx", Int8Config())
    assert not (tmp_path / "q.onnx").exists()
