"""Hand-built tiny ONNX graphs for runtime and benchmark tests (onnx + numpy only, no torch).

``encoder_like`` has the inputs of a BERT export (input_ids, attention_mask, token_type_ids) and a
word-embedding Gather on input_ids, so the benchmark can find the vocabulary size from the graph.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def encoder_like(path: str | os.PathLike, *, vocab: int = 50, hidden: int = 16, layers: int = 1,
                 token_type_ids: bool = True, seed: int = 0, opset: int = 17) -> Path:
    """input_ids -> Gather(word embeddings [vocab, hidden]) (+ type embeddings) * mask -> MatMul/Relu x layers."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((vocab, hidden)).astype(np.float32), "word_embeddings.weight"),
             numpy_helper.from_array(np.array([-1], np.int64), "axes_last")]
    nodes = [helper.make_node("Gather", ["word_embeddings.weight", "input_ids"], ["emb"], name="word_gather")]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])]
    x = "emb"
    if token_type_ids:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "sequence"]))
        inits.append(numpy_helper.from_array(rng.standard_normal((2, hidden)).astype(np.float32), "type_emb"))
        nodes += [helper.make_node("Gather", ["type_emb", "token_type_ids"], ["temb"]),
                  helper.make_node("Add", ["emb", "temb"], ["emb2"])]
        x = "emb2"
    nodes += [helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
              helper.make_node("Unsqueeze", ["maskf", "axes_last"], ["mask3"]),
              helper.make_node("Mul", [x, "mask3"], ["h0"])]
    for i in range(layers):
        w = (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"m{i}"]),
                  helper.make_node("Relu", [f"m{i}"], [f"h{i + 1}"])]
    nodes.append(helper.make_node("Identity", [f"h{layers}"], ["last_hidden_state"]))
    graph = helper.make_graph(nodes, "encoder_like", inputs,
                              [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                                             ["batch", "sequence", hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    p = Path(path)
    onnx.save(model, str(p))
    return p


def float_input_model(path: str | os.PathLike, *, dtype: int = TensorProto.FLOAT, hidden: int = 8) -> Path:
    """x[batch, seq, hidden] (float or float16) -> MatMul -> y: no input_ids (not an encoder)."""
    np_dtype = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    w = numpy_helper.from_array(np.eye(hidden, dtype=np_dtype), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "float_input",
                              [helper.make_tensor_value_info("x", dtype, ["batch", "sequence", hidden])],
                              [helper.make_tensor_value_info("y", dtype, ["batch", "sequence", hidden])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    p = Path(path)
    onnx.save(model, str(p))
    return p
