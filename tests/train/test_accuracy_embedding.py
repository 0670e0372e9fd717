"""Embedding models judged as embedding models: cosine to a reference and recall@10 of its neighbours."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.train.embedding import embedding_agreement

pytest.importorskip("torch")


def _brute_recall(a, b, k=10):
    """Reference recall@k: full sort of every query's cosine row (no argpartition), sets compared."""
    def nn(e):
        u = e / np.linalg.norm(e, axis=1, keepdims=True)
        out = []
        for i in range(len(u)):
            sims = [(float(u[i] @ u[j]), j) for j in range(len(u)) if j != i]
            out.append({j for _, j in sorted(sims, reverse=True)[:k]})
        return out
    na, nb = nn(a), nn(b)
    return np.array([len(x & y) / k for x, y in zip(na, nb)])


def test_agreement_against_brute_force():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(60, 16))
    noisy = ref + rng.normal(scale=0.5, size=ref.shape)
    got = embedding_agreement(noisy, ref)
    want = _brute_recall(noisy, ref)
    assert np.allclose(got["per_query_recall"], want)
    assert got["recall_at_k"] == pytest.approx(want.mean())
    cos = [float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)) for x, y in zip(noisy, ref)]
    assert got["cosine_mean"] == pytest.approx(np.mean(cos)) and got["cosine_min"] == pytest.approx(min(cos))
    lo, hi = got["recall_ci95"]
    assert lo < got["recall_at_k"] < hi
    same = embedding_agreement(ref, ref)
    assert same["recall_at_k"] == 1.0 and same["cosine_min"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A tiny feature-extraction folder (weights large enough that embeddings differ), its ONNX export
    (metadata names the folder as the source), an int8 copy, a ternary copy and a corpus file."""
    from deploytool.export import ExportConfig, export
    from deploytool.passes.pack_weights import PackConfig, pack_file
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file
    from deploytool.testing.tiny import tiny_model
    from deploytool.testing.toy_text import toy_rows, toy_tokenizer

    root = tmp_path_factory.mktemp("emb")
    folder = root / "enc"
    tiny_model("bert", task="feature-extraction", layers=2, hidden=32, heads=4, ffn=64, weight_scale=5.0).save_pretrained(
        folder, safe_serialization=True)
    toy_tokenizer(folder)
    export(ExportConfig(model=str(folder), task="feature-extraction"), folder / "m.onnx")
    quantize_int8_file(folder / "m.onnx", folder / "q.onnx", Int8Config())
    pack_file(folder / "m.onnx", folder / "t.onnx", PackConfig(weights="ternary"))
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in toy_rows(150, seed=3)))
    return folder, corpus


def _eval(*args):
    r = CliRunner().invoke(main, ["eval", *map(str, args), "--threads", "1"])
    assert r.exit_code == 0, (r.output, r.stderr)
    return r.output


@pytest.mark.slow  # 20 s with the `encoder` fixture
def test_eval_embedding_model_vs_its_pytorch_original(encoder, tmp_path):
    folder, corpus = encoder
    out = tmp_path / "fp32.json"
    text = _eval(folder / "m.onnx", "--corpus", corpus, "-o", out)  # reference: deploytool.source = the folder
    r = json.loads(out.read_text())
    assert r["metric"] == "recall@10" and r["reference_kind"] == "pytorch fp32" and r["reference"] == str(folder)
    assert r["n"] == 150 and len(r["scores"]) == 150
    assert r["cosine_min"] > 0.9999 and r["accuracy"] == pytest.approx(100.0)  # the export is faithful
    assert "recall@10 100.00%" in text and "cosine to the reference" in text
    outs = {}
    for name in ("q", "t"):
        outs[name] = tmp_path / f"{name}.json"
        _eval(folder / f"{name}.onnx", "--corpus", corpus, "--reference", folder / "m.onnx", "-o", outs[name])
    q, t = (json.loads(outs[n].read_text()) for n in ("q", "t"))
    assert q["reference_kind"] == "onnx"
    assert q["cosine_mean"] < 1.0 and t["cosine_mean"] < q["cosine_mean"]  # ternary moves more than int8
    assert q["ci95"][0] <= q["accuracy"] <= q["ci95"][1]
    assert q["examples"] == t["examples"] == r["examples"]  # the same corpus: a paired test is possible


def test_embedding_records_rank_in_the_report_rule(encoder, tmp_path):
    """The accuracy records of embedding evals load as recall@10 records the tie rule can compare."""
    from deploytool.accuracy import compare, load_accuracy_records

    folder, corpus = encoder
    files = []
    for name in ("q", "t"):
        f = tmp_path / f"{name}.json"
        _eval(folder / f"{name}.onnx", "--corpus", corpus, "--reference", folder / "m.onnx", "-o", f)
        files.append(f)
    s = load_accuracy_records(files)
    q, t = s.lookup(str(folder / "q.onnx"), "q"), s.lookup(str(folder / "t.onnx"), "t")
    assert q.metric == t.metric == "recall@10" and q.n == t.n == 150
    c = compare(q, t)
    assert c.p is not None and c.test == "sign test (exact)"
    assert c.a_better == int((q.scores > t.scores).sum())


def test_embedding_eval_bad_input_is_one_line(encoder, tmp_path):
    folder, _ = encoder
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("one\ntwo\n")
    r = CliRunner().invoke(main, ["eval", str(folder / "q.onnx"), "--corpus", str(tiny)])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "need more than 11" in r.stderr


def test_embedding_eval_max_length_past_the_position_table_is_one_line(encoder, tmp_path):
    """--max-length 200 on the encoder of 160 positions failed at its first longer text with ONNX Runtime's
    broadcast error, an internal error (exit 1); now one line before any text is embedded."""
    from deploytool.testing.toy_text import FILLER

    folder, corpus = encoder
    long = tmp_path / "long.txt"
    long.write_text(corpus.read_text() + "\n" + " ".join(FILLER * 3) + "\n")
    out = tmp_path / "e.json"
    r = CliRunner().invoke(main, ["eval", str(folder / "q.onnx"), "--corpus", str(long), "--max-length", "200",
                                  "--threads", "1", "-o", str(out)])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, (r.exit_code, r.stderr)
    assert "--max-length 200" in r.stderr and "(160 positions)" in r.stderr and not out.exists()


def _with_nan_words(src, dst):
    """A copy of the ONNX model ``src`` whose word-embedding rows 5.. are NaN (every text's tokens)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    for t in m.graph.initializer:
        if "word_embeddings" in t.name:
            a = numpy_helper.to_array(t).copy()
            a[5:] = np.nan
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    onnx.save(m, str(dst))
    return dst


def test_embedding_eval_of_nan_outputs_is_one_line(encoder, tmp_path):
    """A model whose embeddings are NaN got a recall@10 (NaN similarities still rank: 6% here),
    a cosine of nan and NaN in the JSON record; now one line naming the model, and nothing is written."""
    folder, corpus = encoder
    bad = _with_nan_words(folder / "m.onnx", tmp_path / "nan.onnx")
    out = tmp_path / "e.json"
    r = CliRunner().invoke(main, ["eval", str(bad), "--corpus", str(corpus), "--reference", str(folder / "m.onnx"),
                                  "--tokenizer", str(folder), "--threads", "1", "-o", str(out)])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, (r.exit_code, r.output, r.stderr)
    assert "non-finite embeddings" in r.stderr and str(bad) in r.stderr and not out.exists()


@pytest.mark.slow  # 39 s in a full run
def test_fit_ranks_embedding_variants_by_recall(encoder, tmp_path):
    """fit with the candidates' embedding evals: recall@10 is the accuracy column, with n and interval."""
    folder, corpus = encoder
    grid = ["--widths", "1,0.5", "--depths", "1", "--precisions", "fp32,int8", "--runs", "2", "--seq-len", "16"]
    keep = tmp_path / "cands"
    r = CliRunner().invoke(main, ["fit", str(folder / "m.onnx"), "--profile", "kirin990", "-o", str(tmp_path / "p.onnx"),
                                  "--budget-ms", "1000", "--keep-candidates", str(keep), *grid])
    assert r.exit_code == 0, r.output
    records = []
    # fit's candidates are named by their variant labels; the full fp32 one is the input itself
    files = {name: keep / f"{name}.onnx" for name in ("w1-d1-int8", "w0.5-d1-fp32", "w0.5-d1-int8")}
    files["w1-d1-fp32"] = folder / "m.onnx"
    for name, path in files.items():
        out = tmp_path / f"{name}.json"
        _eval(path, "--corpus", corpus, "--reference", folder / "m.onnx", "--tokenizer", folder, "-o", out)
        records.append({**json.loads(out.read_text()), "model": name})
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps(records))
    r = CliRunner().invoke(main, ["fit", str(folder / "m.onnx"), "--profile", "kirin990", "-o", str(tmp_path / "b.onnx"),
                                  "--budget-ms", "1000", "--accuracy", str(acc), *grid])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "b.onnx.fit.json").read_text())
    by = {c["name"]: c for c in res["candidates"]}
    assert by["w1-d1-fp32"]["accuracy"] == pytest.approx(100.0) and by["w1-d1-fp32"]["accuracy_metric"] == "recall@10"
    assert by["w0.5-d1-fp32"]["accuracy"] < by["w1-d1-int8"]["accuracy"]  # a half-width slice loses neighbours
    assert "recall@10" in r.output and "n=150" in r.output


def test_eval_of_a_headless_folder_says_what_to_do(encoder):
    folder, _ = encoder
    r = CliRunner().invoke(main, ["eval", str(folder)])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert "no classification head" in r.stderr and "export it and eval the .onnx" in r.stderr
