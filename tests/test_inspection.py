"""deploytool inspect: figures against the PyTorch model that built the graph, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.inspection import InspectConfig, inspect_model
from deploytool.testing.graphs import cnn_model

TASK = "sequence-classification"
CASES = [("bert", "torch"), ("bert", "dynamo"), ("bert", "optimum"),
         ("distilbert", "torch"), ("distilbert", "dynamo"), ("distilbert", "optimum"),
         ("roberta", "torch"), ("electra", "torch")]


def _torch_params_by_role(model, family) -> dict[str, int]:
    """PyTorch parameter counts split by module name (the test's oracle; ONNX roles come from structure)."""
    out = dict.fromkeys(("embeddings", "attention", "ffn", "other"), 0)
    for name, p in model.named_parameters():
        if ".embeddings." in name or name.startswith("embeddings."):
            role = "embeddings"
        elif family == "distilbert" and ("transformer.layer." in name):
            role = "attention" if (".attention." in name or "sa_layer_norm" in name) else "ffn"
        elif ".encoder.layer." in name or name.startswith("encoder.layer."):
            role = "attention" if ".attention." in name else "ffn"
        else:
            role = "other"
        out[role] += p.numel()
    return out


def _flops(layers, hidden, heads, ffn, seq, head_in_out):
    per_layer = 2 * seq * (4 * hidden * hidden + 2 * hidden * ffn) + 2 * 2 * seq * seq * hidden
    return layers * per_layer + sum(2 * i * o for i, o in head_in_out)


@pytest.mark.parametrize("family,exporter", CASES)
def test_figures_match_the_config(tiny_onnx, tiny_torch_model, family, exporter):
    path = tiny_onnx(family, exporter, task=TASK)
    r = inspect_model(path, seq_len=16)
    torch_model = tiny_torch_model(family, task=TASK)
    assert r.structure_error is None
    assert (r.family, r.exporter, r.num_layers, r.hidden_size) == (family, exporter, 2, 32)
    assert [(x.num_heads, x.head_size, x.ffn_width) for x in r.layers] == [(4, 8, 64)] * 2
    assert r.params_by_role == _torch_params_by_role(torch_model, family)
    assert r.total_params == sum(p.numel() for p in torch_model.parameters())
    assert r.weights_by_dtype == {"fp32": {"tensors": r.weights_by_dtype["fp32"]["tensors"],
                                           "params": r.total_params, "bytes": 4 * r.total_params,
                                           "bits_per_param": 32.0}}
    assert sum(r.bytes_by_role.values()) == 4 * r.total_params
    # classification head on the first token: 32x32 and 32x2 at one token each
    assert r.flops == _flops(2, 32, 4, 64, 16, [(32, 32), (32, 2)])
    assert r.op_histogram["Softmax"] == 2 and r.op_histogram["MatMul"] == 16
    assert [i["name"] for i in r.inputs][:2] == ["input_ids", "attention_mask"]
    assert r.outputs[0]["name"] == "logits"
    assert r.file_bytes == path.stat().st_size


def test_fused_and_int8_and_packed_models_keep_parameter_counts(tiny_onnx, tiny_torch_model, tmp_path):
    from deploytool.passes.pack_weights import PackConfig, pack_file
    from deploytool.passes.quantize_int8 import Fusion, Int8Config, quantize_int8_file
    from deploytool.runtime.fuse import fuse_transformer

    src = tiny_onnx("bert", "torch", task=TASK)
    base = inspect_model(src)
    expected = _torch_params_by_role(tiny_torch_model("bert", task=TASK), "bert")
    fuse_transformer(src, tmp_path / "fused.onnx")
    quantize_int8_file(src, tmp_path / "q8.onnx", Int8Config(fusion=Fusion.ATTENTION))
    pack_file(src, tmp_path / "ternary.onnx", PackConfig(runtime="speed"))
    fused, q8, packed = (inspect_model(tmp_path / n) for n in ("fused.onnx", "q8.onnx", "ternary.onnx"))
    assert fused.exporter == "ort-fused" and all(x.fused_attention for x in fused.layers)
    assert fused.flops == base.flops
    for r in (fused, q8, packed):
        assert r.structure_error is None and r.num_layers == 2
        assert r.params_by_role == expected
    # int8: every projection weight is int8 (8 bits per weight), the classifier too
    assert q8.weights_by_dtype["int8"]["bits_per_param"] == 8.0
    assert q8.bytes_by_role["attention"] < base.bytes_by_role["attention"] / 3
    # packed ternary: real bits from deploytool.packing (2 bits + one fp32 alpha per matrix / row)
    t = packed.weights_by_dtype["packed-ternary2"]
    assert 2.0 <= t["bits_per_param"] < 3.2
    assert packed.bytes_by_role["ffn"] < base.bytes_by_role["ffn"] / 8
    text = packed.to_text()
    assert "packed-ternary2" in text and "parameters  26,658 total" in text


def test_json_and_text_cli(tiny_onnx):
    path = tiny_onnx("bert", "torch", task=TASK)
    res = CliRunner().invoke(main, ["inspect", str(path), "--json", "--seq-len", "8"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["num_layers"] == 2 and d["heads_per_layer"] == [4, 4] and d["ffn_per_layer"] == [64, 64]
    assert d["seq_len"] == 8 and d["flops"] == _flops(2, 32, 4, 64, 8, [(32, 32), (32, 2)])
    assert d["params_by_role"]["embeddings"] == 100 * 32 + 160 * 32 + 2 * 32 + 2 * 32
    res = CliRunner().invoke(main, ["inspect", str(path)])
    assert res.exit_code == 0
    assert "2 layers, hidden 32, 4 heads x 8, FFN 64" in res.output and "FLOPs" in res.output


def test_non_encoder_reports_the_reason(tmp_path):
    p = tmp_path / "cnn.onnx"
    onnx.save(cnn_model(), str(p))
    r = inspect_model(p)
    assert r.structure_error.startswith("node 'conv1' (Conv)") and r.layers == [] and r.flops is None
    assert r.params_by_role["other"] == 108 + 8
    # no FLOPs and no sequence: its image input's channels (dim 1 of [1, 3, 8, 8]) were noted as "a fixed sequence
    # length (3): the FLOPs at --seq-len 128 are for a length it cannot run"
    assert r.notes == []
    res = CliRunner().invoke(main, ["inspect", str(p)])
    assert res.exit_code == 0 and "not recognised: node 'conv1' (Conv)" in res.output and "note" not in res.output


def _bad(tmp_path, name, content: bytes | None):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    return p


@pytest.mark.parametrize("case", ["missing", "not-onnx", "truncated", "empty", "seq-len"])
def test_cli_bad_input(tiny_onnx, tmp_path, case):
    good = tiny_onnx("bert", "torch", task=TASK)
    args = {
        "missing": [str(tmp_path / "nope.onnx")],
        "not-onnx": [str(_bad(tmp_path, "x.onnx", b"this is a text file, not a protobuf\n" * 20))],
        "truncated": [str(_bad(tmp_path, "t.onnx", good.read_bytes()[: good.stat().st_size // 3]))],
        "empty": [str(_bad(tmp_path, "e.onnx", b""))],
        "seq-len": [str(good), "--seq-len", "0"],
    }[case]
    before = sorted(tmp_path.iterdir())
    res = CliRunner().invoke(main, ["inspect", *args])
    assert res.exit_code == 2, res.output
    err = res.stderr if hasattr(res, "stderr") else res.output
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output
    key = {"missing": "no such file", "not-onnx": "not a readable ONNX model", "truncated": "not a readable ONNX",
           "empty": "empty file", "seq-len": "--seq-len: must be an integer in [1, 65536], got 0"}[case]
    assert key in lines[0]
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_a_bytes_path_names_the_file_as_a_string_does(tiny_onnx):
    """``inspect_model(b"m.onnx")`` raised a bare TypeError from pathlib (transform() takes a bytes path)."""
    src = tiny_onnx("bert")
    got = inspect_model(bytes(src)).to_dict()
    assert got == inspect_model(str(src)).to_dict() and got["path"] == str(src)


def test_config_validation():
    with pytest.raises(ValueError, match="seq_len"):
        InspectConfig(seq_len=0)
    assert InspectConfig(seq_len=np.int64(8).item()).seq_len == 8


def test_pruned_layers_differ(tiny_onnx, tmp_path):
    """After head and FFN pruning (deploytool's own passes) inspect reports each layer's own sizes."""
    from deploytool.passes.prune_ffn import FFNPruneConfig, prune_ffn_file
    from deploytool.passes.prune_heads import HeadPruneConfig, prune_heads_file

    src = tiny_onnx("bert", "torch", task=TASK)
    prune_heads_file(src, tmp_path / "h.onnx", HeadPruneConfig(heads={0: [1, 2], 1: [0]}))
    prune_ffn_file(tmp_path / "h.onnx", tmp_path / "hf.onnx", FFNPruneConfig(neurons={1: list(range(24))}))
    base, r = inspect_model(src, seq_len=8), inspect_model(tmp_path / "hf.onnx", seq_len=8)
    assert [(x.num_heads, x.head_size, x.ffn_width) for x in r.layers] == [(2, 8, 64), (3, 8, 40)]
    # Q/K/V lose 8 output features (and biases) per removed head, O 8 input rows; FFN 24 neurons x (32 + 1 + 32)
    assert base.params_by_role["attention"] - r.params_by_role["attention"] == 3 * (3 * (32 * 8 + 8) + 8 * 32)
    assert base.params_by_role["ffn"] - r.params_by_role["ffn"] == 24 * (32 + 1 + 32)
    assert "heads/FFN differ per layer" in r.to_text()


def test_a_weight_shared_through_identity_is_counted_once(tmp_path):
    """ALBERT shares one layer's weights across layers; the TorchScript exporter reads the second use through an
    Identity of the first. inspect counted it again (21,504 parameters where the file holds 13,312). Reference:
    numpy's sum over the file's own float initializers (every one a weight here), which is what PyTorch holds once
    the exporter drops the pooler and folds equal tensors together."""
    import torch
    from onnx import numpy_helper
    from transformers import AlbertConfig, AlbertModel

    from deploytool.export import export
    from deploytool.export.config import ExportConfig

    torch.manual_seed(0)
    model = AlbertModel(AlbertConfig(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, vocab_size=100, max_position_embeddings=64))
    for p in model.parameters():  # distinct values: no two tensors folded into one by the exporter's dedup
        torch.nn.init.normal_(p)
    model.save_pretrained(tmp_path / "albert")
    path = tmp_path / "albert.onnx"
    export(ExportConfig(model=str(tmp_path / "albert")), path)
    proto = onnx.load(str(path))
    assert any(n.op_type == "Identity" for n in proto.graph.node)  # the shared layer read through aliases
    in_file = sum(numpy_helper.to_array(t).size for t in proto.graph.initializer
                  if t.data_type == onnx.TensorProto.FLOAT and numpy_helper.to_array(t).size > 1)
    torch_params = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in model.pooler.parameters())
    r = inspect_model(path, seq_len=16)
    assert r.total_params == in_file == torch_params
    assert sum(r.params_by_role.values()) == r.total_params


def test_a_flops_length_the_model_cannot_run_is_noted(tiny_onnx):
    path = tiny_onnx("bert", "torch")
    rows = int(next(t for t in onnx.load(str(path)).graph.initializer if "position_embeddings" in t.name).dims[0])
    assert inspect_model(path, seq_len=rows).notes == []
    notes = inspect_model(path, seq_len=rows + 1).notes
    assert len(notes) == 1 and f"position table ({rows} positions)" in notes[0]



@pytest.mark.parametrize("exporter", ["torch", "optimum"])
def test_a_roberta_position_table_is_two_rows_longer_than_it_runs(tiny_onnx, tmp_path, exporter):
    """RoBERTa's position ids start at padding_idx + 1 = 2: a table of 66 rows runs 64 tokens (65 failed in ONNX
    Runtime's position Gather after passing the check). The offset is read from the graph (CumSum(mask) * mask +
    padding_idx), also where the file carries no deploytool metadata (another tool's export); BERT's is the table."""
    from deploytool.errors import ConfigError
    from deploytool.inspection import check_position_table, model_position_table
    from deploytool.onnx_io import load_model

    path = tiny_onnx("roberta", exporter, max_pos=64)
    bare = onnx.load(str(path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    for p in (path, tmp_path / "bare.onnx"):
        assert model_position_table(load_model(p)) == (66, 64)
        assert check_position_table(load_model(p), (8, 64), "m.onnx") == 64
        with pytest.raises(ConfigError, match=r"^m.onnx: --seq-len 65 is longer than the model's position table "
                                              r"\(64 positions: 66 rows, RoBERTa-style ids start at padding_idx "
                                              r"\+ 1 = 2\); use a sequence length <= 64$"):
            check_position_table(load_model(p), (8, 65), "m.onnx")
        assert inspect_model(p, seq_len=64).notes == []
        notes = inspect_model(p, seq_len=65).notes
        assert len(notes) == 1 and "position table (64 positions: 66 rows" in notes[0]
    bert = tiny_onnx("bert", exporter, max_pos=64)
    assert model_position_table(load_model(bert)) == (64, 64)


@pytest.mark.parametrize("exporter", ["torch", "optimum", "ort-fused"])
def test_modernbert_counts_only_its_own_parameters(tmp_path, exporter):
    """ModernBERT's LayerNorms have no bias: opset 17's LayerNormalization is given an all-zero Constant for one,
    and its rotary embeddings' inverse frequencies (a buffer computed from theta) are a constant vector upstream of
    Cos/Sin. inspect counted both (232 too many on 3 layers). ORT's optimizer turns those Constants into
    initializers named after their outputs, read by SkipLayerNormalization: counted again (224 too many). Reference:
    PyTorch's own parameter count (the model has no pooler; every parameter is in the graph)."""
    import torch
    from transformers import ModernBertConfig, ModernBertModel

    from deploytool.export import ExportConfig, export_loaded

    torch.manual_seed(0)
    model = ModernBertModel(ModernBertConfig(
        vocab_size=100, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=3,
        max_position_embeddings=64, global_attn_every_n_layers=2, local_attention=8, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, attn_implementation="eager")).eval()
    with torch.no_grad():
        for p in model.parameters():  # distinct values: no two tensors folded into one by the exporter's dedup
            torch.nn.init.normal_(p)
    path = tmp_path / "modernbert.onnx"
    export_loaded(model, path, ExportConfig(model="modernbert", exporter=exporter.replace("ort-fused", "torch")))
    if exporter == "ort-fused":
        from deploytool.runtime.fuse import fuse_transformer

        fuse_transformer(path, tmp_path / "fused.onnx", num_heads=4, hidden_size=32)
        path = tmp_path / "fused.onnx"
        assert any(n.op_type == "SkipLayerNormalization" for n in onnx.load(str(path)).graph.node)
    r = inspect_model(path, seq_len=16)
    assert r.structure_error is None
    assert r.total_params == sum(p.numel() for p in model.parameters())
    assert r.weights_by_dtype["fp32"]["bits_per_param"] == 32.0


def test_a_zero_layernorm_bias_of_the_model_is_still_a_parameter(tmp_path):
    """An untrained BERT's LayerNorm biases are zero, and they are its parameters (initializers, not an exporter's
    Constant): inspect counts them. One bias only is zeroed (the exporter folds equal tensors into one, which is
    then counted once). Reference: PyTorch's parameter count."""
    import torch

    from deploytool.export import ExportConfig, export_loaded
    from deploytool.testing.tiny import tiny_model

    model = tiny_model("bert", task=TASK)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "bert.embeddings.LayerNorm.bias":
                p.zero_()
    assert not model.bert.embeddings.LayerNorm.bias.any()
    path = tmp_path / "bert.onnx"
    export_loaded(model, path, ExportConfig(model="bert", task=TASK))
    assert inspect_model(path, seq_len=16).total_params == sum(p.numel() for p in model.parameters())


def test_deberta_int8_counts_no_scale_as_a_parameter(tmp_path):
    """int8 DeBERTa-v2 (its own pos_key_proj / pos_query_proj): ONNX Runtime's quantizer quantizes the constant
    relative-position embeddings statically, and each projection's weight scale is multiplied by that stored input
    scale, not by a DynamicQuantizeLinear's: those 4 scale vectors were counted as parameters (26,850 for 26,722).
    Reference: PyTorch's parameter count, which the fp32 export matches."""
    import torch
    import transformers as tr

    from deploytool.export import ExportConfig, export_loaded
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

    cfg = tr.DebertaV2Config(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=64, relative_attention=True,
                             pos_att_type=["c2p", "p2c"], position_buckets=16, max_relative_positions=32,
                             position_biased_input=False, share_att_key=False, num_labels=2)
    torch.manual_seed(0)
    model = tr.AutoModelForSequenceClassification.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():
        for p in model.parameters():  # distinct values: no two tensors folded into one by the exporter's dedup
            p.add_(torch.randn(p.shape) * 0.05)
    src, q8 = tmp_path / "deberta.onnx", tmp_path / "deberta.int8.onnx"
    export_loaded(model, src, ExportConfig(model="deberta", task=TASK))
    quantize_int8_file(src, q8, Int8Config())
    want = sum(p.numel() for p in model.parameters())
    assert inspect_model(src, seq_len=16).total_params == want
    r = inspect_model(q8, seq_len=16)
    assert r.structure_error is None and r.total_params == want
    assert r.weights_by_dtype["fp32"]["params"] + r.weights_by_dtype["int8"]["params"] + \
        r.weights_by_dtype.get("uint8", {}).get("params", 0) == want


def test_unknown_flops_are_null_with_the_reason_not_zero(tmp_path):
    """A graph whose structure is not recognised has no FLOPs: JSON said "flops_by_part": {} (an empty split, read
    as nothing to count) and the text said nothing at all about FLOPs. Now null with the reason, naming the node."""
    p = tmp_path / "cnn.onnx"
    onnx.save(cnn_model(), str(p))
    res = CliRunner().invoke(main, ["inspect", str(p), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["flops"] is None and d["flops_by_part"] is None
    assert d["flops_unknown_reason"].startswith("the encoder structure was not recognised: node 'conv1' (Conv)")
    res = CliRunner().invoke(main, ["inspect", str(p)])
    assert "FLOPs       unknown (the encoder structure was not recognised: node 'conv1' (Conv)" in res.output
    # no roles either: the weights are not 0 attention and 0 FFN, they are not attributed
    assert "parameters  116 total, 464 B (by role: unknown, the encoder structure was not recognised)" in res.output
    assert "  attention " not in res.output and d["params_by_role"]["other"] == d["total_params"] == 116


def test_known_flops_carry_no_unknown_reason(tiny_onnx):
    r = inspect_model(tiny_onnx("bert", "torch", task=TASK), seq_len=8).to_dict()
    assert r["flops_unknown_reason"] is None and sum(r["flops_by_part"].values()) == r["flops"] > 0


def _albert(tmp_path, layers=3):
    import torch
    from transformers import AlbertConfig, AlbertModel

    torch.manual_seed(0)
    model = AlbertModel(AlbertConfig(embedding_size=16, hidden_size=32, num_hidden_layers=layers,
                                     num_attention_heads=4, intermediate_size=64, vocab_size=100,
                                     max_position_embeddings=64))
    for p in model.parameters():  # distinct values: none all-equal, no two tensors equal by chance
        torch.nn.init.normal_(p)
    model.save_pretrained(tmp_path / "albert")
    return model


@pytest.mark.parametrize("fp16", [False, True])
def test_albert_after_orts_optimizer_counts_each_weight_once(tmp_path, fp16):
    """ORT's BERT optimizer on ALBERT fuses some layers of the shared stack into Attention ops, each with its own
    concatenated copy of the one Q/K/V, and leaves a layer unfused reading the original Q, K and V: inspect counted
    every copy (18,112 parameters for PyTorch's 11,776). Reference: transformers' num_parameters() without the pooler,
    which the export does not use."""
    import onnx as onnx_

    from deploytool.export import export
    from deploytool.export.config import ExportConfig
    from deploytool.runtime.fuse import fuse_transformer

    model = _albert(tmp_path)
    src, fused = tmp_path / "albert.onnx", tmp_path / "fused.onnx"
    export(ExportConfig(model=str(tmp_path / "albert")), src)
    fuse_transformer(src, fused)
    if fp16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx_.save(convert_float_to_float16(onnx_.load(str(fused)), keep_io_types=True), str(fused))
    proto = onnx_.load(str(fused))
    qkv = [n for n in proto.graph.node if n.op_type == "Attention"]
    assert len({n.input[1] for n in qkv}) >= 2  # the case: several stored copies of the one fused QKV
    want = model.num_parameters() - sum(p.numel() for p in model.pooler.parameters())
    r = inspect_model(fused, seq_len=16)
    assert r.structure_error is None and r.num_layers == 3
    assert r.total_params == want
    assert sum(int(e["params"]) for e in r.weights_by_dtype.values()) == want
    # the copies are said, with their bytes, and not in the bytes by role
    assert r.duplicate_bytes > 0 and any("repeat the values of weights" in n for n in r.notes)
    assert "duplicates" in r.to_text() and r.to_dict()["duplicate_bytes"] == r.duplicate_bytes


def test_a_shared_weight_stored_once_per_layer_is_counted_once(tmp_path, monkeypatch):
    """torch's dynamo exporter writes ALBERT's shared FFN weights once per layer (each its own initializer, same
    values): counted 1.7x before (19,968 for 11,776). The file as the exporter wrote it (deploytool's export merges
    the copies since 4c8a9f0, switched off here); pack merges its input's copies too, so the packed file has none."""
    from deploytool.export import export
    from deploytool.export.config import ExportConfig
    from deploytool.passes.pack_weights import PackConfig, pack_file

    model = _albert(tmp_path)
    path = tmp_path / "albert.onnx"
    monkeypatch.setattr("deploytool.export.api._dedupe", lambda proto: proto)  # the exporter's own file
    export(ExportConfig(model=str(tmp_path / "albert"), exporter="dynamo"), path)
    want = model.num_parameters() - sum(p.numel() for p in model.pooler.parameters())
    r = inspect_model(path, seq_len=16)
    assert r.structure_error is None and r.total_params == want
    assert sum(r.bytes_by_role.values()) == 4 * want and r.duplicate_bytes > 0
    pack_file(path, tmp_path / "binary.onnx", PackConfig(weights="binary"))
    packed = inspect_model(tmp_path / "binary.onnx", seq_len=16)
    assert packed.total_params == want and packed.duplicate_bytes == 0


def test_equal_constant_tensors_of_different_layers_are_both_counted(tiny_onnx, tiny_torch_model, tmp_path):
    """Merging copies by value must not merge an untrained model's all-equal tensors (its unit LayerNorm scales and
    zero biases are one per layer in PyTorch, however equal). The export's vectors are set to ones and zeros in the
    file, each still its own initializer (TorchScript would have aliased equal ones already at export)."""
    from onnx import numpy_helper

    proto = onnx.load(str(tiny_onnx("bert", "torch", task=TASK)))
    for t in proto.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32 and a.ndim == 1:
            t.CopyFrom(numpy_helper.from_array(np.full_like(a, 1.0 if "LayerNorm.weight" in t.name else 0.0), t.name))
    path = tmp_path / "bert_constant_vectors.onnx"
    onnx.save(proto, str(path))
    r = inspect_model(path, seq_len=8)
    assert r.total_params == tiny_torch_model("bert", task=TASK).num_parameters() and r.duplicate_bytes == 0


def test_deberta_after_orts_optimizer_says_its_count_is_the_files(tmp_path):
    """ORT's optimizer folds DeBERTa-v2's relative-position table through its own pos_key_proj / pos_query_proj into
    per-layer constants: the table and those weights are gone from the file, the constants counted instead, and
    inspect printed 24,448 parameters for PyTorch's 25,600 without a word. The count cannot be the model's any more;
    it is said. Reference: PyTorch's parameter count (the export before the optimizer matches it)."""
    import torch
    import transformers as tr

    from onnxruntime.transformers.optimizer import optimize_model

    from deploytool.export import ExportConfig, export_loaded

    cfg = tr.DebertaV2Config(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=64, relative_attention=True,
                             pos_att_type=["c2p", "p2c"], position_buckets=16, max_relative_positions=32,
                             position_biased_input=False, share_att_key=False, type_vocab_size=0)
    torch.manual_seed(0)
    model = tr.DebertaV2Model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    src, fused = tmp_path / "deberta.onnx", tmp_path / "fused.onnx"
    export_loaded(model, src, ExportConfig(model="deberta"))
    optimize_model(str(src), model_type="bert", num_heads=4, hidden_size=32).save_model_to_file(str(fused))
    want = sum(p.numel() for p in model.parameters())
    before, after = inspect_model(src, seq_len=16), inspect_model(fused, seq_len=16)
    assert before.total_params == want and not before.notes
    assert after.structure_error is None and after.total_params != want
    note = [n for n in after.notes if "the relative-position projections are folded" in n]
    assert len(note) == 1 and "not the source model's" in note[0]
    assert f"note        {note[0]}" in after.to_text()


def test_an_untrained_models_merged_equal_vectors_are_said(tmp_path):
    """TorchScript stores equal tensors once: an untrained BERT's unit LayerNorm scales and zero biases become one
    tensor each, read by every layer through aliases, and inspect counted them once without a word (108,774,912 for
    bert-base's 108,891,648). They cannot be told from a shared weight, so the count stays and a note gives the
    count if each read is its own parameter. Reference: transformers' num_parameters()."""
    import torch

    from deploytool.export import ExportConfig, export_loaded
    from deploytool.testing.tiny import tiny_model

    model = tiny_model("bert", task=TASK)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if "LayerNorm.weight" in name else 0.0)
    path = tmp_path / "untrained.onnx"
    export_loaded(model, path, ExportConfig(model="tiny-bert", task=TASK))
    r = inspect_model(path, seq_len=8)
    want = model.num_parameters()
    assert r.total_params < want
    note = [n for n in r.notes if "all-equal weight tensor" in n]
    assert len(note) == 1 and f"({want:,} in all)" in note[0]


def test_stacked_ffns_are_shown_with_their_widths(tmp_path):
    """MobileBERT stacks num_feedforward_networks FFNs per layer; inspect's ffn_width is their sum (the layer's
    neurons) and printed as 'FFN 2F' beside a config that says intermediate_size F, without saying why. Reference:
    the PyTorch config."""
    from deploytool.testing import conformance as C

    case = C.MODEL_BY_NAME["mobilebert"]
    path, cfg = C.export(case, "torchscript-17", tmp_path), C.build_model(case).config
    r = inspect_model(path, seq_len=8)
    n, f = cfg.num_feedforward_networks, cfg.intermediate_size
    assert n > 1 and [x.ffn_stack for x in r.layers] == [[f] * n] * cfg.num_hidden_layers
    assert r.to_dict()["layers"][0]["ffn_stack"] == [f] * n and r.layers[0].ffn_width == n * f
    assert f"FFN {n * f} ({n} stacked FFNs of {' + '.join([str(f)] * n)})" in r.to_text()


def test_copies_are_told_by_dtype_as_well_as_values():
    """The check for stored copies keyed tensors by numpy's dtype.str, which is one opaque code for ml_dtypes'
    int4, uint4, float8 and bfloat16: a uint4 tensor holding the values of an int4 one was taken for its copy."""
    import ml_dtypes
    import onnx_ir as ir

    from deploytool.inspection import _Distinct

    d = _Distinct()
    base = np.arange(12).reshape(3, 4) % 7
    for dtype in (ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, np.float16):
        a = base.astype(dtype)
        assert d.new_part(ir.tensor(a), None, 12) == 12, dtype  # new: no other dtype's tensor is its copy
        assert d.new_part(ir.tensor(a.copy()), None, 12) == 0  # the same values and dtype again: a copy
        assert d.new_part(ir.tensor(np.ascontiguousarray(a.T)), None, 12) == 0  # and transposed


@pytest.mark.parametrize("exporter", ["torch", "optimum"])
def test_a_file_without_the_exporters_record_is_not_named_optimum_by_guess(tiny_onnx, tmp_path, exporter):
    """A plain torch.onnx.export file and optimum's export write the same TorchScript module-path names ('/...');
    inspect said 'exporter optimum' for both when no record of the exporter is in the file (only deploytool's export
    writes one). It names what the names show: TorchScript."""
    model = onnx.load(str(tiny_onnx("bert", exporter, task=TASK)))
    keep = [p for p in model.metadata_props if not p.key.startswith("deploytool.")]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    names = [n.name for n in model.graph.node]
    assert sum(n.startswith("/") for n in names) > len(names) // 2, names[:5]  # the TorchScript exporter's names
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    assert inspect_model(path, seq_len=16).exporter == ("torch" if names[0].startswith("/m/") else "torchscript")
