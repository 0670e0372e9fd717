"""Training module on tiny random models and a toy task (seconds each, nothing downloads)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deploytool.testing.tiny import fixed_inputs, tiny_model  # noqa: E402
from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv  # noqa: E402
from deploytool.train.config import DataConfig, DynaBertConfig, QATConfig, TrainConfig  # noqa: E402

SHAPE = dict(layers=4, hidden=32, heads=4, ffn=64)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A toy CSV, a random tiny BERT folder and a teacher fine-tuned on the toy task (once per module)."""
    from deploytool.train.finetune import finetune

    root = tmp_path_factory.mktemp("toy")
    data = toy_csv(root / "toy.csv", n=400)
    tiny_classifier_folder(root / "tiny", **SHAPE)
    dc = DataConfig(data=str(data), max_length=32)
    result = finetune(TrainConfig(model=str(root / "tiny"), output=root / "teacher", data=dc, epochs=4, lr=3e-3,
                                  batch_size=16, threads=1))
    return {"root": root, "data": dc, "teacher": root / "teacher", "result": result}


def _x(inputs):
    return {k: torch.from_numpy(v) for k, v in inputs.items()}


def test_finetune_loss_goes_down_and_folder_is_complete(toy):
    r = toy["result"]
    assert r["training"]["last_loss"] < 0.7 * r["training"]["first_loss"]
    assert r["dev"]["accuracy"] >= 80
    files = {p.name for p in toy["teacher"].iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "vocab.txt", "deploytool.json"} <= files
    assert not [p for p in toy["root"].iterdir() if p.name.startswith(".")]  # no temp folders left
    meta = json.loads((toy["teacher"] / "deploytool.json").read_text())
    assert meta["dataset"]["seed"] == 0 and set(meta["dataset"]["ids_sha256"]) == {"train", "dev", "test"}


@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
def test_subnet_forward_full_equals_transformers(family):
    from deploytool.train.subnet import subnet_forward

    m = tiny_model(family, task="sequence-classification")
    x = _x(fixed_inputs())
    out = subnet_forward(m, x["input_ids"], x["attention_mask"], x["token_type_ids"])
    torch.testing.assert_close(out.logits, m(**x).logits, rtol=0, atol=1e-6)


def test_subnet_equals_sliced_onnx(tmp_path):
    """The PyTorch sub-network (w, d) computes what the ONNX slice pass produces from the export."""
    from deploytool.export import ExportConfig, export_loaded
    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file
    from deploytool.runtime.infer import run_onnx
    from deploytool.train.subnet import subnet_forward

    m = tiny_model("bert", task="sequence-classification", **SHAPE)
    full = tmp_path / "full.onnx"
    export_loaded(m, full, ExportConfig(model="tiny", task="sequence-classification"))
    x = fixed_inputs()
    for w, d in [(0.5, 0.5), (0.25, 0.75), (0.75, 1.0)]:
        dst = tmp_path / f"s{w}_{d}.onnx"
        slice_file(full, dst, SliceConfig(width=w, depth=d))
        got = run_onnx(dst, x)["logits"]
        with torch.no_grad():
            ref = subnet_forward(m, *(torch.from_numpy(x[k]) for k in ("input_ids", "attention_mask",
                                                                       "token_type_ids")), width=w, depth=d).logits
        np.testing.assert_allclose(got, ref.numpy(), atol=1e-4, err_msg=f"width {w} depth {d}")


def test_importance_shapes_file_and_reorder_keeps_outputs(toy, tmp_path):
    from deploytool.importance import load_importance
    from deploytool.train.config import ImportanceConfig
    from deploytool.train.importance import compute_importance

    out = tmp_path / "imp.json"
    r = compute_importance(ImportanceConfig(model=toy["teacher"], output=out, reorder_output=tmp_path / "re",
                                            data=toy["data"], max_examples=128, threads=1))
    imp = load_importance(out)
    assert np.array(imp.heads).shape == (4, 4) and np.array(imp.neurons).shape == (4, 64)
    assert np.allclose(np.linalg.norm(imp.heads, axis=1), 1.0)  # layer-normalised head scores
    assert r["reorder_max_diff"] < 1e-5
    # the reordered model scores its heads in descending order
    r2 = compute_importance(ImportanceConfig(model=tmp_path / "re", output=tmp_path / "imp2.json",
                                             data=toy["data"], max_examples=128, threads=1))
    imp2 = load_importance(tmp_path / "imp2.json")
    for layer in range(4):
        assert imp2.head_order(layer) == [0, 1, 2, 3]
        np.testing.assert_allclose(sorted(imp.heads[layer], reverse=True), imp2.heads[layer], rtol=1e-4, atol=1e-6)
    assert r2["layers"] == 4


def test_reorder_keeps_outputs_on_random_model():
    from deploytool.train.importance import reorder_model

    m = tiny_model("bert", task="sequence-classification", **SHAPE)
    ref = copy.deepcopy(m)
    g = torch.Generator().manual_seed(0)
    orders = reorder_model(m, torch.rand(4, 4, generator=g), torch.rand(4, 64, generator=g))
    assert any(o["heads"] != [0, 1, 2, 3] for o in orders)
    x = _x(fixed_inputs())
    torch.testing.assert_close(m(**x).logits, ref(**x).logits, rtol=0, atol=1e-5)


def test_dynabert_subnetworks_beat_untrained_slices(toy, tmp_path):
    """Sub-networks of the DynaBERT-trained model beat the same slices of the model before training."""
    from deploytool.train.batching import load_data
    from deploytool.train.checkpoint import load_classifier, load_tokenizer
    from deploytool.train.dynabert import train_dynabert
    from deploytool.train.evaluate import evaluate_torch

    small = [(0.25, 0.25), (0.25, 0.5), (0.5, 0.25), (0.5, 0.5)]
    ds, tok = load_data(toy["data"]), load_tokenizer(toy["teacher"])
    base = load_classifier(toy["teacher"])
    before = [evaluate_torch(base, tok, ds, "dev", toy["data"], width=w, depth=d)["accuracy"] for w, d in small]
    r = train_dynabert(DynaBertConfig(teacher=toy["teacher"], output=tmp_path / "dyn", data=toy["data"],
                                      widths=(0.25, 0.5, 1.0), depths=(0.25, 0.5, 1.0), width_epochs=1.5,
                                      depth_epochs=1.5, subnets_per_step=3, lr=1e-3, batch_size=16, threads=1,
                                      importance_examples=128))
    after = {(x["width"], x["depth"]): x["accuracy"] for x in r["dev"]}
    assert len(after) == 9
    assert np.mean([after[s] for s in small]) > np.mean(before) + 10, (before, after)
    assert min(after[s] for s in small) >= 80, after
    for stage in r["stages"].values():
        assert stage["last_loss"] < stage["first_loss"]
    # the saved folder evaluates to the same numbers
    m = load_classifier(tmp_path / "dyn")
    assert evaluate_torch(m, tok, ds, "dev", toy["data"], width=0.5, depth=0.5)["accuracy"] == after[(0.5, 0.5)]


@pytest.mark.parametrize("mode", ["ternary", "binary"])
@pytest.mark.parametrize("granularity", ["layer", "row"])
def test_torch_quantizer_equals_shared_numpy(mode, granularity):
    from deploytool.quant.quantizers import binarize, dequantize, ternarize
    from deploytool.train.qat import WeightQuantizer

    fn = ternarize if mode == "ternary" else binarize
    g = torch.Generator().manual_seed(1)
    for shape in [(8, 16), (64, 32), (3, 5)]:
        w = (torch.randn(shape, generator=g) * 0.05).requires_grad_(True)
        q = WeightQuantizer(mode, granularity, clip=3.0)(w)
        ref = dequantize(*fn(w.detach().numpy(), granularity))
        assert np.array_equal(q.detach().numpy(), ref)  # bit for bit
        q.sum().backward()
        alpha = np.asarray(fn(w.detach().numpy(), granularity)[1])
        a = alpha if alpha.ndim == 0 else alpha[:, None]
        np.testing.assert_array_equal(w.grad.numpy(), (np.abs(w.detach().numpy()) <= 3.0 * a).astype(np.float32))


@pytest.mark.parametrize("mode,values", [("ternary", 3), ("binary", 2)])
def test_qat_saves_exactly_quantized_weights(toy, tmp_path, mode, values):
    from deploytool.quant.quantizers import binarize, dequantize, ternarize
    from deploytool.train.checkpoint import load_classifier
    from deploytool.train.qat import train_qat
    from deploytool.train.subnet import encoder_linears

    r = train_qat(QATConfig(teacher=toy["teacher"], output=tmp_path / mode, data=toy["data"], mode=mode,
                            epochs=1, lr=1e-3, batch_size=16, threads=1))
    assert r["training"]["last_loss"] < r["training"]["first_loss"]
    assert r["dev"]["accuracy"] >= 75
    m = load_classifier(tmp_path / mode)
    fn = ternarize if mode == "ternary" else binarize
    for name, lin in encoder_linears(m).items():
        w = lin.weight.detach().numpy()
        vals = np.unique(w)
        assert len(vals) <= values, name
        assert np.array_equal(dequantize(*fn(w, "layer")), w), name  # packing it again is lossless
    emb = m.bert.embeddings.word_embeddings.weight.detach().numpy()
    assert max(len(np.unique(row)) for row in emb) <= values
    assert np.array_equal(dequantize(*fn(emb, "row")), emb)


def test_checkpoint_roundtrip_and_failed_save_keeps_old(toy, tmp_path):
    from deploytool.train.checkpoint import load_classifier, load_tokenizer, save_folder

    m, tok = load_classifier(toy["teacher"]), load_tokenizer(toy["teacher"])
    dst = tmp_path / "ckpt"
    save_folder(m, tok, dst, meta={"a": 1})
    m2 = load_classifier(dst)
    x = _x(fixed_inputs())
    torch.testing.assert_close(m2(**x).logits, m(**x).logits, rtol=0, atol=0)
    before = (dst / "model.safetensors").read_bytes()

    class Boom(torch.nn.Module):
        def save_pretrained(self, path, **kw):
            (path / "model.safetensors").write_bytes(b"half")
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_folder(Boom(), tok, dst)
    assert (dst / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_eval_onnx_matches_pytorch(toy, tmp_path):
    from deploytool.export import ExportConfig, export
    from deploytool.train.config import EvalConfig
    from deploytool.train.evaluate import evaluate

    onnx_path = toy["teacher"] / "model.onnx"
    export(ExportConfig(model=str(toy["teacher"]), task="sequence-classification"), onnx_path)
    try:
        a = evaluate(EvalConfig(model=toy["teacher"], data=toy["data"], threads=1))
        b = evaluate(EvalConfig(model=onnx_path, data=toy["data"], threads=1, output=tmp_path / "e.json"))
    finally:
        onnx_path.unlink()
    assert a["kind"] == "pytorch" and b["kind"] == "onnx"
    assert a["accuracy"] == b["accuracy"] and a["n"] == b["n"] == 40
    assert json.loads((tmp_path / "e.json").read_text())["accuracy"] == b["accuracy"]


def test_finetune_distilbert_without_token_types(tmp_path):
    """Fine-tuning and eval work for families whose forward takes no token_type_ids."""
    from deploytool.train.finetune import finetune

    data = toy_csv(tmp_path / "toy.csv", n=100)
    tiny_classifier_folder(tmp_path / "tiny", family="distilbert", layers=1)
    r = finetune(TrainConfig(model=str(tmp_path / "tiny"), output=tmp_path / "t", epochs=1, lr=1e-3, batch_size=16,
                             threads=1, data=DataConfig(data=str(data), max_length=16)))
    assert r["training"]["steps"] == 5 and r["dev"]["n"] == 10


def test_depth_stage_sample_covers_every_depth_each_step_and_pairs_evenly():
    """Every step trains every depth; over len(widths) steps every (width, depth) pair exactly once."""
    import random

    from deploytool.train.dynabert import pick_subnets_by_depth

    widths, depths = (0.25, 0.5, 0.75, 1.0), (0.5, 0.75, 1.0)
    rng = random.Random(0)
    seen = []
    for step in range(8):
        chosen = pick_subnets_by_depth(widths, depths, 3, step, rng)
        assert sorted(d for _, d in chosen) == sorted(depths), chosen
        assert all(w in widths for w, _ in chosen)
        seen += chosen
    counts = {(w, d): seen.count((w, d)) for w in widths for d in depths}
    assert set(counts.values()) == {2}, counts  # 8 steps = twice round the 4 widths
    # k above the number of depths adds distinct extra pairs; 0 (or the grid's size) is the whole grid
    five = pick_subnets_by_depth(widths, depths, 5, 0, rng)
    assert len(five) == len(set(five)) == 5
    assert sorted(pick_subnets_by_depth(widths, depths, 0, 3, rng)) == sorted(counts)


def test_fake_quant_act_equals_onnxruntime_dynamic_quantize_linear():
    """The QAT activation rule restates ONNX DynamicQuantizeLinear; ORT's own kernel is the reference."""
    from onnx import TensorProto, helper

    from deploytool.runtime.infer import run_onnx
    from deploytool.train.qat import fake_quant_act

    g = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "dql", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(0)
    cases = [rng.normal(size=(2, 7, 32)) * 3, rng.uniform(0.5, 4, size=(3, 16)),  # all positive: min clamps to 0
             -rng.uniform(0.1, 2, size=(5, 5)), rng.normal(size=(4, 9)) + 10, np.zeros((2, 3))]
    for x in cases:
        x = x.astype(np.float32)
        ref = run_onnx(model.SerializeToString(), {"x": x})["y"]
        got = fake_quant_act(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * max(1.0, float(np.abs(x).max())))
    # the gradient goes straight through
    x = torch.randn(3, 4, requires_grad=True)
    fake_quant_act(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_qat_int8_activations_match_the_packed_speed_runtime(toy, tmp_path):
    """A QAT model trained with int8 activations: PyTorch (with them) and the packed 'speed' ONNX model agree
    more closely than PyTorch without them does; `eval` of the folder applies them."""
    from deploytool.export import ExportConfig, export
    from deploytool.passes.pack_weights import PackConfig, pack_file
    from deploytool.runtime.infer import run_onnx
    from deploytool.train.checkpoint import load_classifier, read_meta
    from deploytool.train.config import EvalConfig
    from deploytool.train.evaluate import evaluate
    from deploytool.train.qat import fake_quant_act, train_qat
    from deploytool.train.subnet import subnet_forward

    r = train_qat(QATConfig(teacher=toy["teacher"], output=tmp_path / "q", data=toy["data"], mode="ternary",
                            epochs=1, lr=1e-3, batch_size=16, threads=1))
    assert r["act_bits"] == 8 and read_meta(tmp_path / "q")["qat"]["act_bits"] == 8
    export(ExportConfig(model=str(tmp_path / "q"), task="sequence-classification"), tmp_path / "q.onnx")
    pack_file(tmp_path / "q.onnx", tmp_path / "qs.onnx", PackConfig(weights="ternary", runtime="speed"))
    m = load_classifier(tmp_path / "q")
    x = fixed_inputs()
    got = run_onnx(tmp_path / "qs.onnx", x)["logits"]
    args = [torch.from_numpy(x[k]) for k in ("input_ids", "attention_mask", "token_type_ids")]
    with torch.no_grad():
        with_q = subnet_forward(m, *args, act_fn=fake_quant_act).logits.numpy()
        without = subnet_forward(m, *args).logits.numpy()
    err_q, err_fp = np.abs(got - with_q).max(), np.abs(got - without).max()
    assert err_q < 1e-3, err_q
    assert err_q < err_fp / 5, (err_q, err_fp)
    e = evaluate(EvalConfig(model=tmp_path / "q", data=toy["data"], split="dev", threads=1))
    assert e["act_bits"] == 8 and e["accuracy"] == r["dev"]["accuracy"]


def test_finetune_of_a_trained_head_keeps_its_classes_by_name(tmp_path):
    """Fine-tuning a classifier whose id2label is {0: pos, 1: neg} on a file labelled neg/pos renamed its head's rows
    by the data's sorted labels ({0: neg, 1: pos}): every prediction swapped class before training began. The
    data's labels are now its ids by name; a file of other labels still renames the head (a new task)."""
    import transformers as tr

    from deploytool.train.finetune import finetune

    src = tiny_classifier_folder(tmp_path / "src", layers=2)
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "id2label": {"0": "pos", "1": "neg"},
                                                 "label2id": {"pos": 0, "neg": 1}}))
    data = toy_csv(tmp_path / "toy.csv", n=60)
    texts = ["w1 w2 w3 w4", "w50 w60 w70", "w5 w17 w33 w81 w9"]

    def named_predictions(folder):
        tok = tr.AutoTokenizer.from_pretrained(str(folder))
        m = tr.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
        with torch.no_grad():
            logits = m(**tok(texts, padding=True, return_tensors="pt")).logits
        return [m.config.id2label[int(i)] for i in logits.argmax(-1)], logits

    out = tmp_path / "out"
    finetune(TrainConfig(model=str(src), output=out, data=DataConfig(data=str(data), max_length=32), epochs=0.05,
                         lr=1e-9, batch_size=16, threads=1))
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "pos", "1": "neg"}
    (a, la), (b, lb) = named_predictions(src), named_predictions(out)
    assert a == b and torch.allclose(la, lb, atol=1e-4)
    other = tmp_path / "other.csv"
    other.write_text(data.read_text().replace(",pos\n", ",fresh\n").replace(",neg\n", ",rotten\n"))
    finetune(TrainConfig(model=str(src), output=tmp_path / "o2", data=DataConfig(data=str(other), max_length=32),
                         epochs=0.05, lr=1e-9, batch_size=16, threads=1))
    assert json.loads((tmp_path / "o2" / "config.json").read_text())["id2label"] == {"0": "fresh", "1": "rotten"}
