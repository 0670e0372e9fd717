"""Smallest files on request: pooler/classifier and position/token-type tables packed too.

The reference restates TWN ternary and BWN binary in numpy here (not imported from deploytool):
every 2-D float initializer of the fp32 file is replaced by its quantized value (embedding tables
row-wise, linear weights one scale per matrix), and the result is run in ONNX Runtime. With fp32
activations (``--runtime memory --accuracy-level 0``) the packed file must equal it to 1e-5; with
int8 activations (``densest``) the logits must stay within a stated tolerance.
"""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from deploytool.cli import main
from deploytool.errors import ConfigError
from deploytool.passes.pack_weights import PackConfig, pack_file
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs

# big enough that the weights, not the graph, make the file: hidden 128, vocab 1000, 512 positions
SHAPE = dict(layers=2, hidden=128, heads=4, ffn=512, vocab=1000, max_pos=512, seed=5)
FEEDS = fixed_inputs(vocab=1000, lengths=(12, 7))


@pytest.fixture(scope="module")
def src(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", task="sequence-classification", **SHAPE)


def _twn(w: np.ndarray, axis) -> np.ndarray:
    """TWN (Li & Liu 2016): delta = 0.7 E|w|, alpha = E(|w| : |w| > delta), over ``axis``."""
    a = np.abs(w)
    delta = 0.7 * a.mean(axis=axis, keepdims=True)
    keep = a > delta
    alpha = (a * keep).sum(axis=axis, keepdims=True) / np.maximum(keep.sum(axis=axis, keepdims=True), 1)
    return (np.sign(w) * keep * alpha).astype(np.float32)


def _bwn(w: np.ndarray, axis) -> np.ndarray:
    """BWN (Rastegari et al. 2016): alpha = E|w|, w ~ alpha * sign(w)."""
    return (np.where(w >= 0, 1.0, -1.0) * np.abs(w).mean(axis=axis, keepdims=True)).astype(np.float32)


def _reference(src, weights: str, tmp_path) -> dict[str, np.ndarray]:
    """Every 2-D float initializer quantized: tables read by Gather row-wise, the rest per matrix."""
    m = onnx.load(str(src))
    gathered = {n.input[0] for n in m.graph.node if n.op_type == "Gather"}
    fn = _twn if weights == "ternary" else _bwn
    replaced = 0
    for i, init in enumerate(m.graph.initializer):
        w = numpy_helper.to_array(init)
        if w.dtype != np.float32 or w.ndim != 2 or min(w.shape) < 2:
            continue
        q = fn(w, axis=1 if init.name in gathered else None)
        m.graph.initializer[i].CopyFrom(numpy_helper.from_array(q, init.name))
        replaced += 1
    assert replaced >= 2 * 6 + 3 + 2  # 12 encoder linears, word/position/type tables, pooler, classifier
    path = tmp_path / f"ref_{weights}.onnx"
    onnx.save(m, str(path))
    return run_onnx(path, FEEDS)


def _fp32_2d_left(path) -> list[str]:
    m = onnx.load(str(path))
    return [i.name for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 2
            and min(i.dims) > 1]


@pytest.mark.parametrize("weights", ["ternary", "binary"])
def test_everything_packed_equals_numpy_twn_bwn(src, tmp_path, weights):
    out = tmp_path / "p.onnx"
    res = pack_file(src, out, PackConfig(weights=weights, runtime="memory", accuracy_level=0, pack_head=True,
                                         position_embeddings=weights))
    assert _fp32_2d_left(out) == []  # no weight matrix or table left in fp32
    assert {"head", "position", "token_type", "embedding"} <= set(res.stats["by_role"])
    ref = _reference(src, weights, tmp_path)
    got = run_onnx(out, FEEDS)
    for k in ref:
        assert np.abs(got[k] - ref[k]).max() < 1e-5, k


def test_densest_everything_packed_is_n_times_smaller_and_close(src, tmp_path):
    fp32 = src.stat().st_size
    sizes = {}
    for name, cfg in {"default": PackConfig(weights="binary", runtime="densest"),
                      "all": PackConfig(weights="binary", runtime="densest", pack_head=True,
                                        position_embeddings="binary")}.items():
        out = tmp_path / f"{name}.onnx"
        pack_file(src, out, cfg)
        sizes[name] = out.stat().st_size
    # binary is 32x on the weights; at this tiny shape the graph's ~300 nodes (43 kB), LayerNorm
    # parameters, biases and the per-row table scales weigh as much as the bits (measured 16.6x; the
    # BERT-base shape's 28x is measured in benchmarks/pack_bench.py)
    assert fp32 / sizes["all"] > 15
    # the fp32 pooler (128x128) and position table (512x128) alone keep the default file far bigger
    assert sizes["default"] - sizes["all"] > 0.9 * (128 * 128 + 512 * 128 + 2 * 128) * 4
    ref = _reference(src, "binary", tmp_path)
    got = run_onnx(tmp_path / "all.onnx", FEEDS)
    for k in ref:  # int8 activations: close to the fp32-activation reference, not equal
        scale = np.abs(ref[k]).max()
        assert np.abs(got[k] - ref[k]).max() < 0.1 * scale + 1e-3, k


def test_int8_position_tables(src, tmp_path):
    out = tmp_path / "p.onnx"
    res = pack_file(src, out, PackConfig(weights="ternary", runtime="densest", position_embeddings="int8"))
    assert res.stats["by_role"]["position"]["bytes_after"] < 0.3 * res.stats["by_role"]["position"]["bytes_before"]
    assert "pooler" in " ".join(s.reason for s in res.skipped)  # the head stays fp32 unless asked


@pytest.mark.parametrize("kwargs,field", [({"pack_head": "yes"}, "pack_head"),
                                          ({"position_embeddings": "int4"}, "position_embeddings"),
                                          ({"upgrade_opset": 1}, "upgrade_opset")])
def test_config_refuses_bad_values(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        PackConfig(weights="binary", **kwargs)


def test_cli_flags_and_bad_value(src, tmp_path):
    shutil.copy(src, tmp_path / "in.onnx")
    r = CliRunner().invoke(main, ["pack", str(tmp_path / "in.onnx"), "--weights", "binary", "--runtime", "densest",
                                  "--pack-head", "--position-embeddings", "binary", "-o", str(tmp_path / "o.onnx")])
    assert r.exit_code == 0, r.output
    assert _fp32_2d_left(tmp_path / "o.onnx") == []
    r = CliRunner().invoke(main, ["pack", str(tmp_path / "in.onnx"), "--weights", "binary",
                                  "--position-embeddings", "int4", "-o", str(tmp_path / "bad.onnx")])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "--position-embeddings" in lines[0]
    assert not (tmp_path / "bad.onnx").exists()


def test_pack_head_on_a_model_without_a_head_says_it_packed_none(tiny_onnx, src, tmp_path):
    """--pack-head on a feature-extraction export (no pooler, no classifier in the graph) has nothing to pack:
    the result says so in a skip with its reason instead of reporting pack_head: True as if it had acted. A
    classifier's head is packed and draws no such skip."""
    bare = tiny_onnx("bert", exporter="torch", task="feature-extraction")
    res = pack_file(bare, tmp_path / "p.onnx", PackConfig(weights="ternary", pack_head=True))
    assert "head" not in res.stats["by_role"]
    head_skips = [s for s in res.skipped if "--pack-head" in s.reason]
    assert len(head_skips) == 1 and "no pooler or classifier" in head_skips[0].reason, res.skipped
    res = pack_file(src, tmp_path / "c.onnx", PackConfig(weights="ternary", pack_head=True))
    assert "head" in res.stats["by_role"]
    assert not [s for s in res.skipped if "no pooler or classifier" in s.reason], res.skipped
