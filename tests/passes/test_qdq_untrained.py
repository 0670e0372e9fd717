"""ORT's QDQ ``quantize_static`` of an untrained model's TorchScript export, as a user tries the tool first.

TorchScript stores an untrained model's equal zero biases once and reads them through ``Identity`` aliases;
``quantize_static`` does not see such a bias as an initializer and quantizes it as an activation, so each
projection's bias Add reads ``DequantizeLinear(QuantizeLinear(Identity(bias)))``. ``inspect`` reads such a model
with the fp32 export's layers, heads and parameter count, and a structured pass refuses it naming the stored
int8 weight (README: "int8, QDQ and packed models are refused in one line naming the stored dtype"), not a
structure it failed to read.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.inspection import inspect_model


class _Batches:
    def __init__(self, names):
        rng = np.random.default_rng(0)
        feeds = [{"input_ids": rng.integers(0, 100, (2, 8)), "attention_mask": np.ones((2, 8), np.int64),
                  "token_type_ids": np.zeros((2, 8), np.int64)} for _ in range(3)]
        self._it = iter([{k: v.astype(np.int64) for k, v in f.items() if k in names} for f in feeds])

    def get_next(self):
        return next(self._it, None)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import torch
    import transformers as tr
    from onnxruntime.quantization import QuantFormat, quantize_static

    work = tmp_path_factory.mktemp("qdq_untrained")
    torch.manual_seed(0)
    cfg = tr.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    model = tr.BertModel(cfg).eval()  # untrained: zero biases, unit LayerNorm scales
    names = ["input_ids", "attention_mask", "token_type_ids"]
    args = (torch.randint(0, 100, (1, 8)), torch.ones(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))
    dyn = {n: {0: "b", 1: "s"} for n in names + ["last_hidden_state"]}
    fp32, qdq = work / "bert.onnx", work / "bert.qdq.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(fp32), input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=dyn, opset_version=17, dynamo=False)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_static(str(fp32), str(qdq), _Batches(names), quant_format=QuantFormat.QDQ)
        finally:
            root.setLevel(level)
    # the case this file is about: a bias Add reading a fake-quantized Identity alias
    g = onnx.load(str(qdq)).graph
    prod = {o: n for n in g.node for o in n.output}
    adds = [n for n in g.node if n.name.endswith("attention/self/query/Add")]
    assert adds and any(prod.get(i) is not None and prod[i].op_type == "DequantizeLinear"
                        and prod.get(prod[i].input[0]) is not None
                        and prod[prod[i].input[0]].op_type == "QuantizeLinear" for i in adds[0].input)
    return fp32, qdq


def test_inspect_reads_the_qdq_model_as_the_fp32_one(files):
    fp32, qdq = files
    want, got = inspect_model(fp32), inspect_model(qdq)
    assert want.structure_error is None
    assert got.structure_error is None, got.structure_error
    d = got.to_dict()
    assert (d["num_layers"], d["heads_per_layer"], d["ffn_per_layer"]) == (2, [4, 4], [64, 64])
    assert got.total_params == want.total_params
    assert got.params_by_role == want.params_by_role


def test_structured_pass_names_the_int8_weight(files, tmp_path):
    _, qdq = files
    before = qdq.read_bytes()
    out = tmp_path / "s.onnx"
    r = CliRunner().invoke(main, ["slice", str(qdq), "--width", "0.5", "-o", str(out)])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert "\n" not in line and "Traceback" not in r.output
    assert "stored as INT8 (QDQ-quantized" in line, line
    assert not out.exists() and qdq.read_bytes() == before
