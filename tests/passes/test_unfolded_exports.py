"""Two exports written without the exporter's constant folding, read by every pass after the canonical rewrites
(``deploytool/graph/canonical.py``): the dynamo exporter with ``optimize=False`` (each ``clone``/``contiguous`` an
``Identity``: ``drop_identities``; with transformers' SDPA attention, the scale ``sqrt(1 / sqrt(head_size))`` on Q
and K cast with ``CastLike(., q)``, read as computed from Q's data: ``cast_likes_to_casts``) and DeBERTa v1 through ``torch.onnx.export(..., do_constant_folding=False)`` (its
q/v biases viewed per head as ``Transpose(Reshape(Unsqueeze(Unsqueeze(bias))))``: ``fold_vector_views``). All were
refused ('node node_clone_3 (Identity): the attention output projection result is not added to the normalised layer
input'; 'node node_MatMul_77 (MatMul): cannot trace the Q operand back to a projection with constant weights';
'node .../attention/self/Add_1 (Add): a constant added to the attention's Q, K or V after its head view, with no
single axis of 6 heads'). Each pass's output is compared with the independent PyTorch reference of
``deploytool.testing.conformance``, as a conformance cell is (all 15 of its passes ran equal or close on the three
files when this was written; four run here)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from deploytool.passes import transform
from deploytool.runtime.infer import run_onnx
from deploytool.testing import conformance as C

PASSES = ("slice-0.5-0.75", "prune-heads", "prune-ffn", "pack")


def _export(case: C.ModelCase, model, path: Path, dynamo: bool) -> Path:
    import torch

    f = C.feeds(case, lengths=(8, 6))
    names, outs = list(f), list(C.torch_outputs(model, f))
    args = tuple(torch.as_tensor(f[n]) for n in names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            b, s = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("sequence", min=2, max=C.MAX_POS - 4)
            prog = torch.onnx.export(model, args, input_names=names, output_names=outs, opset_version=18,
                                     dynamic_shapes={n: {0: b, 1: s} for n in names}, dynamo=True, optimize=False,
                                     report=False, verbose=False)
            prog.save(str(path))
        else:
            dyn = {n: {0: "batch", 1: "sequence"} for n in (*names, *outs)}
            torch.onnx.export(model, args, str(path), input_names=names, output_names=outs, dynamic_axes=dyn,
                              opset_version=17, dynamo=False, do_constant_folding=False)
    return path


@pytest.fixture(scope="module", params=[("bert", None, True), ("bert", "eager", True), ("deberta", None, False)],
                ids=["bert-sdpa-dynamo-noopt", "bert-eager-dynamo-noopt", "deberta-v1-nofold"])
def export(request, tmp_path_factory):
    name, attn, dynamo = request.param
    case = C.MODEL_BY_NAME[name]
    base = C.build_model(case, attn=attn)
    return case, base, _export(case, base, tmp_path_factory.mktemp(name) / f"{name}.onnx", dynamo)


@pytest.mark.slow
@pytest.mark.parametrize("pass_name", PASSES)
def test_pass_on_an_export_without_constant_folding(export, pass_name, tmp_path):
    case, base, src = export
    dst = tmp_path / "out.onnx"
    result = transform(src, dst, C.pass_config(case, pass_name, tmp_path))
    stats = result.to_dict()
    assert any(stats.get(k, 0) > 0 for k in ("identities_dropped", "cast_likes_made_casts", "bias_view_nodes_folded"))
    f = C.feeds(case)
    ref, _ = C.reference(case, pass_name, base)
    status, diff, detail = C.compare(run_onnx(dst, f), C.torch_outputs(ref, f), pass_name)
    assert status in ("equal", "close"), f"{pass_name}: {status} {diff} {detail}"
