"""A norm on Q between its projection and the attention (QK norm), on an export edited by hand: one over all
heads' features is read (heads reorder, never removed: tests/e2e/test_conformance.py's JinaBERT qk-post-norm rows);
one of any other width, here each head's own features after the head view, is refused in one line naming it."""

from __future__ import annotations

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import helper, numpy_helper

from deploytool.cli import main
from deploytool.testing import conformance as C


def _norm_after_q_view(src, dst) -> str:
    """``src`` with a LayerNormalization of each head's features inserted after layer 0's Q view (Reshape to
    [B, S, heads, head_size]); returns its name."""
    m = onnx.load(str(src))
    nodes = list(m.graph.node)
    by_out = {o: n for n in nodes for o in n.output}
    q = next(n for n in nodes if n.op_type == "MatMul" and "layer.0/attention/self/query" in n.name)
    bias = next(n for n in nodes if n.op_type == "Add" and q.output[0] in n.input)  # MatMul -> Add -> Reshape
    view = next(n for n in nodes if n.op_type == "Reshape" and n.input[0] == bias.output[0])
    assert by_out[view.input[0]] is bias
    d = C.HIDDEN // C.HEADS
    name = "head_norm"
    m.graph.initializer.extend([numpy_helper.from_array(np.linspace(0.5, 1.5, d).astype(np.float32), "hn_scale"),
                                numpy_helper.from_array(np.linspace(-0.1, 0.1, d).astype(np.float32), "hn_bias")])
    out = view.output[0]
    for n in nodes:  # the view's readers read the norm's output instead
        for i, x in enumerate(n.input):
            if x == out:
                n.input[i] = "hn_out"
    norm = helper.make_node("LayerNormalization", [out, "hn_scale", "hn_bias"], ["hn_out"], name=name, axis=-1)
    m.graph.node.insert(nodes.index(view) + 1, norm)
    onnx.save(m, str(dst))
    return name


def test_a_norm_of_another_width_is_refused_naming_it(tmp_path):
    src = C.export(C.MODEL_BY_NAME["jina-bert"], "torchscript-17", tmp_path)
    edited = tmp_path / "per-head-norm.onnx"
    name = _norm_after_q_view(src, edited)
    for argv in (["prune-heads", str(edited), "--heads", "0:0"], ["reorder", str(edited)]):
        dst = tmp_path / f"out-{argv[0]}.onnx"
        r = CliRunner().invoke(main, [*argv, "-o", str(dst)])
        assert r.exit_code == 2, r.output
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        d = C.HIDDEN // C.HEADS
        assert len(lines) == 1 and f"'{name}'" in lines[0], lines
        assert f"a norm of {d} features of a projection viewed as {C.HEADS} heads x {d}" in lines[0], lines
        assert not dst.exists()
