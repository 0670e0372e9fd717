"""pack of an fp16 model (ORT's transformer optimizer, then its fp16 conversion without keep_io_types): the packed
model computes in fp32 and casts its fp16 output back, so its output is rounded to fp16 as the input's is. The gate
allowed it the fp32 bound (1e-4 of the scale) since no fp16 weight was left: a one-step fp16 rounding (0.00195 on a
value near 4) refused a correct pack."""

from __future__ import annotations

import warnings

import numpy as np
import onnx

from deploytool.passes.pack_weights import PackConfig, pack_file
from deploytool.runtime.infer import run_onnx


def test_pack_of_an_fp16_output_model_passes_the_gate(tiny_onnx, tmp_path):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from deploytool.testing.conformance import optimize

    src = tiny_onnx("roberta", exporter="torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = optimize(src, 99, tmp_path / "o99.onnx")
        half = tmp_path / "fp16.onnx"
        onnx.save(convert_float_to_float16(onnx.load(str(fused)), keep_io_types=False), str(half))
    assert onnx.load(str(half)).graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    config = PackConfig(weights="ternary", runtime="memory", accuracy_level=0)
    out, unchecked = tmp_path / "packed.onnx", tmp_path / "unchecked.onnx"
    pack_file(half, out, config)
    pack_file(half, unchecked, config, verify=False)
    feeds = {"input_ids": np.array([[0, 5, 17, 42, 9, 2]], np.int64), "attention_mask": np.ones((1, 6), np.int64),
             "token_type_ids": np.zeros((1, 6), np.int64)}
    got, want = run_onnx(out, feeds), run_onnx(unchecked, feeds)
    assert set(got) == set(want)
    for k in got:
        assert np.all(np.isfinite(got[k])) and np.array_equal(got[k], want[k])
