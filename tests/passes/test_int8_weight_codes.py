"""int8 weight codes (``Int8Config.weights``): int8, int7 (reduced range) and uint8 (int8 + 128).

The references are restated here: the 7-bit rule (ORT's ``reduce_range``: scale = max|W| / 63), the
uint8 storage (the int8 codes plus 128, zero point 128), and the integer GEMM that ``DynamicQuantizeMatMul``
computes (``DynamicQuantizeLinear``'s rule, then an exact int64 product) in numpy.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploytool.errors import ConfigError
from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs
from deploytool.variant import read_variant as _read


def read_variant(path):
    return _read({p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props})

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=64, seed=5)
# the ops whose weight feeds an integer GEMM, and where their weight zero point goes
GEMM_WEIGHT = {"QAttention": (1, 4, 7), "DynamicQuantizeMatMul": (1, 2, 3)}


@pytest.fixture(scope="module")
def bert(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", **SHAPE)


def _inits(path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def _gemm_nodes(path) -> list[onnx.NodeProto]:
    return [n for n in onnx.load(str(path)).graph.node if n.op_type in GEMM_WEIGHT]


def _out(path, feeds) -> dict[str, np.ndarray]:
    return run_onnx(path, feeds)


def test_int7_codes_are_the_reduced_range_rule(bert, tmp_path):
    from deploytool.graph import find_structure
    from deploytool.graph.weights import weight_array
    from deploytool.onnx_io import load_model

    res = quantize_int8_file(bert, tmp_path / "q7.onnx", Int8Config(weights="int7"))
    assert res.stats["weight_codes"] == "int7" and res.gate.verified
    v = read_variant(tmp_path / "q7.onnx")
    assert v.chain[-1] == "int8(int7)" and v.precision == "int8"
    inits = _inits(tmp_path / "q7.onnx")
    st = find_structure(load_model(bert))
    w = weight_array(st.layers[1].ffn.intermediate.weight).astype(np.float64)
    scale = np.abs(w).max(axis=0) / 63  # ORT's reduce_range: 7-bit symmetric codes
    codes = np.clip(np.round(w / scale), -63, 63)
    found = [n for n in _gemm_nodes(tmp_path / "q7.onnx") if inits[n.input[1]].shape == w.shape
             and np.array_equal(inits[n.input[1]], codes)]
    assert found, "no GEMM holds the restated 7-bit codes of layer 1's FFN weight"
    np.testing.assert_allclose(inits[found[0].input[2]], scale, rtol=1e-6)
    for n in _gemm_nodes(tmp_path / "q7.onnx"):
        q = inits[n.input[1]]
        assert q.dtype == np.int8 and np.abs(q.astype(np.int16)).max() == 63, n.name  # each reaches, none passes
    # the word rows are read by Gather, not by an integer GEMM: they keep the full 8-bit range
    table = next(v for v in inits.values() if v.dtype == np.int8 and v.shape[0] == 100)
    assert np.abs(table.astype(np.int16)).max() == 127


def test_uint8_stores_the_int8_codes_plus_128(bert, tmp_path):
    quantize_int8_file(bert, tmp_path / "q8.onnx", Int8Config())
    ru = quantize_int8_file(bert, tmp_path / "qu.onnx", Int8Config(weights="uint8"))
    assert ru.stats["weight_codes"] == "uint8" and ru.gate.verified
    assert read_variant(tmp_path / "q8.onnx").chain[-1] == "int8"
    assert read_variant(tmp_path / "qu.onnx").chain[-1] == "int8(uint8)"
    i8, iu = _inits(tmp_path / "q8.onnx"), _inits(tmp_path / "qu.onnx")
    n8, nu = _gemm_nodes(tmp_path / "q8.onnx"), _gemm_nodes(tmp_path / "qu.onnx")
    assert [n.op_type for n in n8] == [n.op_type for n in nu] and len(nu) >= 3 * SHAPE["layers"]
    for a, b in zip(n8, nu):
        wi, si, zi = GEMM_WEIGHT[b.op_type]
        q8, qu = i8[a.input[wi]], iu[b.input[wi]]
        assert qu.dtype == np.uint8
        assert np.array_equal(qu.astype(np.int16), q8.astype(np.int16) + 128), b.name
        assert np.array_equal(iu[b.input[si]], i8[a.input[si]])
        assert len(a.input) <= zi or not a.input[zi]  # int8: no zero point (0)
        z = iu[b.input[zi]]
        assert z.dtype == np.uint8 and z.shape == iu[b.input[si]].shape and (z == 128).all(), b.name


def _rewrite_to_uint8(src, dst) -> None:
    """The test's own rewrite of an int8 file into uint8 weights with zero point 128."""
    m = onnx.load(str(src))
    inits = {t.name: t for t in m.graph.initializer}
    for node in m.graph.node:
        if node.op_type not in GEMM_WEIGHT:
            continue
        wi, si, zi = GEMM_WEIGHT[node.op_type]
        t = inits[node.input[wi]]
        if t.data_type == TensorProto.INT8:
            q = numpy_helper.to_array(t).astype(np.int16) + 128
            t.CopyFrom(numpy_helper.from_array(q.astype(np.uint8), t.name))
        shape = numpy_helper.to_array(inits[node.input[si]]).shape
        z = numpy_helper.from_array(np.full(shape, 128, np.uint8), node.input[wi] + "_z")
        if z.name not in inits:
            m.graph.initializer.append(z)
            inits[z.name] = z
        ins = list(node.input) + [""] * (zi + 1 - len(node.input))
        ins[zi] = z.name
        del node.input[:]
        node.input.extend(ins)
    onnx.save(m, str(dst))


def test_uint8_file_runs_the_same_integers_as_the_int8_file(bert, tmp_path):
    quantize_int8_file(bert, tmp_path / "q8.onnx", Int8Config())
    quantize_int8_file(bert, tmp_path / "qu.onnx", Int8Config(weights="uint8"))
    _rewrite_to_uint8(tmp_path / "q8.onnx", tmp_path / "peer.onnx")
    feeds = fixed_inputs(vocab=100, lengths=(8, 5, 3), seed=4)
    got, peer = _out(tmp_path / "qu.onnx", feeds), _out(tmp_path / "peer.onnx", feeds)
    for k in peer:
        assert np.array_equal(got[k], peer[k]), k


def _dqmm_model(w_codes: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None) -> bytes:
    k, n = w_codes.shape
    inits = [numpy_helper.from_array(w_codes, "w"), numpy_helper.from_array(scale, "s")]
    ins = ["x", "w", "s"]
    if zero_point is not None:
        inits.append(numpy_helper.from_array(zero_point, "z"))
        ins.append("z")
    g = helper.make_graph([helper.make_node("DynamicQuantizeMatMul", ins, ["y"], domain="com.microsoft")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                             ir_version=8).SerializeToString()


def _exact_dqmm(x: np.ndarray, w_codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """DynamicQuantizeLinear's rule (uint8, range including 0, round half to even), then the exact product."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    s = np.float32((hi - lo) / 255)
    z = np.clip(np.round(np.float32(-lo) / s), 0, 255)
    q = np.clip(np.round(x / s) + z, 0, 255).astype(np.int64)
    return ((q - int(z)) @ w_codes.astype(np.int64)).astype(np.float64) * float(s) * scale.astype(np.float64)


def test_uint8_is_exact_where_int8_saturates():
    """A weight column of equal magnitudes (all codes 127) and activations spanning the uint8 range: pairs of
    products reach 2 x 255 x 127, twice int16. uint8 codes (U8U8) give the exact product on every CPU; int8
    codes (U8S8) do exactly where this host's probe says the kernel does not saturate."""
    import onnxruntime as ort

    from deploytool.passes.int8_native import int8_weight
    from deploytool.runtime.int8_kernel import u8s8_exact

    rng = np.random.default_rng(1)
    k, n = 256, 8
    w = rng.normal(size=(k, n)).astype(np.float32)
    w[:, 0] = 0.05
    w[::2, 1] = -0.05
    w[1::2, 1] = 0.05
    x = np.concatenate([np.full((1, k), 4.0, np.float32), rng.uniform(-1, 4, size=(3, k)).astype(np.float32)])
    x[:, 0] = -0.01  # the range includes 0 and the zero point is 0: activations 0..255
    codes, scale = int8_weight([w])
    assert (codes[:, 0] == 127).all()
    exact = _exact_dqmm(x, codes, scale)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1

    def run(model: bytes) -> np.ndarray:
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    u8 = run(_dqmm_model((codes.astype(np.int16) + 128).astype(np.uint8), scale, np.full(n, 128, np.uint8)))
    np.testing.assert_allclose(u8, exact, rtol=1e-5, atol=1e-4)
    # pair-safe codes: the same U8S8 kernel, exact on every CPU (column 0: codes 64, pairs add to 128)
    psafe, pscale = int8_weight([w], pair_safe=True)
    assert (psafe[:, 0] == 64).all() and np.abs(psafe.astype(np.int16)).max() <= 127
    np.testing.assert_allclose(run(_dqmm_model(psafe, pscale, None)), _exact_dqmm(x, psafe, pscale), rtol=1e-5,
                               atol=1e-4)
    s8 = run(_dqmm_model(codes, scale, None))
    err = float(np.abs(s8[:, 0] - exact[:, 0]).max())
    if u8s8_exact():
        np.testing.assert_allclose(s8, exact, rtol=1e-5, atol=1e-4)
    else:  # the saturating kernel loses about half of column 0 (every pair clipped to 32767)
        assert err > 0.25 * float(np.abs(exact[:, 0]).max()), err


def test_probe_agrees_with_the_cpu_features():
    import platform

    from deploytool.runtime.host import detect_host
    from deploytool.runtime.int8_kernel import saturation_note, u8s8_exact

    h = detect_host()
    exact = u8s8_exact()
    if platform.machine() in ("aarch64", "arm64") or "vnni" in h.features:
        assert exact is True and saturation_note() is None
    elif h.arch == "x86_64" and "avx2" in h.features and "avx512" not in h.features:
        # MLAS's AVX2 U8S8 kernel (vpmaddubsw): the case the option exists for
        assert exact is False
        note = saturation_note()
        assert note and "no VNNI" in note and "--weights" in note
    else:
        pytest.skip(f"no expectation for this CPU's features: {h.features}")


def test_weights_option_is_validated():
    with pytest.raises(ConfigError, match="weights"):
        Int8Config(weights="int4")


def test_quantize_cli_weights(bert, tmp_path):
    from click.testing import CliRunner

    from deploytool.cli import main

    r = CliRunner().invoke(main, ["quantize", str(bert), "--int8", "--weights", "uint8", "-o", str(tmp_path / "u.onnx")])
    assert r.exit_code == 0, r.output
    assert "weight_codes: uint8" in r.output and "note: this CPU" not in r.output
    r = CliRunner().invoke(main, ["quantize", str(bert), "--fp16", "--weights", "uint8", "-o", str(tmp_path / "h.onnx")])
    assert r.exit_code == 2 and "--weights" in r.output and not (tmp_path / "h.onnx").exists()
    r = CliRunner().invoke(main, ["quantize", str(bert), "--int8", "--weights", "int4", "-o", str(tmp_path / "x.onnx")])
    assert r.exit_code == 2 and "weights" in r.output and not (tmp_path / "x.onnx").exists()


def _dequantized_weights(model: onnx.ModelProto) -> list[np.ndarray]:
    """(q - zero point) of every integer GEMM weight in node order, restated from the ops' input layouts."""
    slots = {"QAttention": (1, 7), "DynamicQuantizeMatMul": (1, 3), "MatMulInteger": (1, 3),
             "MatMulIntegerToFloat": (1, 5)}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type in slots:
            wi, zi = slots[n.op_type]
            q = inits[n.input[wi]].astype(np.int32)
            z = inits[n.input[zi]].astype(np.int32) if len(n.input) > zi and n.input[zi] else 0
            out.append(q - z)
    return out


@pytest.mark.parametrize("engine", ["native", "ort"])
def test_exact_twin_keeps_the_integers(bert, tmp_path, engine):
    """runtime.int8_kernel.exact_twin (verify-arm64's host reference on a saturating host) stores every integer
    GEMM weight as uint8 with the same (q - zero point); its outputs are the uint8-coded file's (native), and
    the model's own where this host's u8 x s8 kernel is exact."""
    from deploytool.runtime.int8_kernel import exact_twin, gemm_weight_codes, u8s8_exact

    q8 = tmp_path / "q8.onnx"
    quantize_int8_file(bert, q8, Int8Config(engine=engine))
    before = q8.read_bytes()
    twin = exact_twin(q8)
    assert q8.read_bytes() == before  # the file is not modified
    onnx.save(twin, str(tmp_path / "twin.onnx"))
    assert gemm_weight_codes(q8) == {"int8"} and gemm_weight_codes(tmp_path / "twin.onnx") == {"uint8"}
    a, b = _dequantized_weights(onnx.load(str(q8))), _dequantized_weights(twin)
    assert len(a) == len(b) >= 3 * SHAPE["layers"]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    feeds = fixed_inputs(vocab=100, lengths=(8, 5, 3), seed=6)
    got = _out(tmp_path / "twin.onnx", feeds)
    if engine == "native":
        quantize_int8_file(bert, tmp_path / "qu.onnx", Int8Config(weights="uint8"))
        ref = _out(tmp_path / "qu.onnx", feeds)
        assert all(np.array_equal(got[k], ref[k]) for k in ref)
    if u8s8_exact():
        ref = _out(q8, feeds)
        assert all(np.allclose(got[k], ref[k], rtol=1e-5, atol=1e-5) for k in ref)
    assert exact_twin(tmp_path / "qu.onnx" if engine == "native" else bert) is None  # nothing int8 to rewrite


def test_exact_twin_shifts_a_given_zero_point(tmp_path):
    w = np.array([[-128, 5], [127, -3]], np.int8)
    g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "w", "az", "wz"], ["y"])], "g",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.INT32, [None, 2])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(0, np.uint8), "az"),
                           numpy_helper.from_array(np.array(-2, np.int8), "wz")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(tmp_path / "m.onnx"))
    from deploytool.runtime.int8_kernel import exact_twin

    twin = exact_twin(tmp_path / "m.onnx")
    inits = {t.name: numpy_helper.to_array(t) for t in twin.graph.initializer}
    node = twin.graph.node[0]
    assert inits[node.input[1]].tolist() == [[0, 133], [255, 125]] and int(inits[node.input[3]]) == 126
    a = np.array([[255, 7]], np.uint8)
    y = run_onnx(twin.SerializeToString(), {"a": a})["y"]
    assert y.tolist() == (a.astype(np.int64) @ (w.astype(np.int64) + 2)).tolist()


def _pair_sums(q: np.ndarray) -> tuple[int, int]:
    """Restated: the largest sum of positive parts, and of negative parts, of rows 2i and 2i+1 per column."""
    q = q.astype(np.int32)
    if q.shape[0] % 2:
        q = np.vstack([q, np.zeros((1, q.shape[1]), np.int32)])
    pos, neg = np.clip(q, 0, None), np.clip(-q, 0, None)
    return int((pos[0::2] + pos[1::2]).max()), int((neg[0::2] + neg[1::2]).max())


def test_pairsafe_codes_fit_every_pair_and_follow_the_rule(bert, tmp_path):
    from deploytool.graph import find_structure
    from deploytool.graph.weights import weight_array
    from deploytool.onnx_io import load_model

    res = quantize_int8_file(bert, tmp_path / "ps.onnx", Int8Config(weights="pairsafe"))
    assert res.stats["weight_codes"] == "pairsafe" and res.gate.verified and "host_note" not in res.stats
    assert read_variant(tmp_path / "ps.onnx").chain[-1] == "int8(pairsafe)"
    inits = _inits(tmp_path / "ps.onnx")
    for n in _gemm_nodes(tmp_path / "ps.onnx"):
        q = inits[n.input[1]]
        assert q.dtype == np.int8 and max(_pair_sums(q)) <= 128, n.name
    # the rule restated: scale = the largest same-signed sum of a neighbouring pair / 127, per column
    st = find_structure(load_model(bert))
    w = weight_array(st.layers[0].ffn.output.weight).astype(np.float64)
    wp = np.vstack([w, np.zeros((w.shape[0] % 2, w.shape[1]))])
    pos, neg = np.clip(wp, 0, None), np.clip(-wp, 0, None)
    scale = np.maximum((pos[0::2] + pos[1::2]).max(0), (neg[0::2] + neg[1::2]).max(0)) / 127
    codes = np.clip(np.round(w / scale), -127, 127)
    found = [n for n in _gemm_nodes(tmp_path / "ps.onnx") if inits[n.input[1]].shape == w.shape
             and np.array_equal(inits[n.input[1]], codes)]
    assert found, "no GEMM holds the restated pair-safe codes of layer 0's FFN output weight"
    np.testing.assert_allclose(inits[found[0].input[2]], scale, rtol=1e-6)


def test_pairsafe_file_computes_what_its_exact_twin_does(tiny_onnx, tmp_path):
    """Scaled-up weights, where the default int8 codes saturate on x86 without VNNI: the pair-safe file's
    outputs equal its uint8 twin's (the same integers through the exact kernel) on every CPU."""
    from deploytool.runtime.int8_kernel import exact_twin

    src = tiny_onnx("bert", exporter="torch", weight_scale=8.0, **SHAPE)
    quantize_int8_file(src, tmp_path / "ps.onnx", Int8Config(weights="pairsafe"))
    onnx.save(exact_twin(tmp_path / "ps.onnx"), str(tmp_path / "twin.onnx"))
    feeds = fixed_inputs(vocab=100, lengths=(8, 3), seed=4)
    got, ref = _out(tmp_path / "ps.onnx", feeds), _out(tmp_path / "twin.onnx", feeds)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["ort-fused", "ort-unfused", "static", "sliced"])
def test_pairsafe_on_ort_path(tiny_onnx, tmp_path, case):
    """Where ORT's quantizer writes the file (engine ort, static QDQ, a sliced attention the native writer does not
    take), its int8 GEMM weights are re-coded by the pair-safe rule from their fp32 originals: every pair fits,
    and the file computes what its exact twin does (the default codes differ from theirs on x86 without VNNI)."""
    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file
    from deploytool.runtime.int8_kernel import exact_twin
    from deploytool.testing.toy_text import toy_csv, toy_tokenizer

    src = tiny_onnx("bert", exporter="torch", weight_scale=4.0, **SHAPE)
    kw: dict = {"engine": "ort"} if case.startswith("ort") else {}
    if case == "ort-unfused":
        kw["fusion"] = "none"
    if case == "static":
        toy_tokenizer(tmp_path / "tok")
        kw = {"static": True, "calib_data": str(toy_csv(tmp_path / "calib.csv", n=40)), "tokenizer": str(tmp_path / "tok"),
              "calib_size": 16, "fusion": "none"}
    if case == "sliced":
        slice_file(src, tmp_path / "s.onnx", SliceConfig(width=0.5, depth=1))
        src = tmp_path / "s.onnx"
    res = quantize_int8_file(src, tmp_path / "ps.onnx", Int8Config(weights="pairsafe", **kw))
    assert res.stats["engine"] == "ort" and res.stats["pairsafe_weights"] >= 2 * SHAPE["layers"], res.stats
    model = onnx.load(str(tmp_path / "ps.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    gemm_ins = {n.input[i] for n in model.graph.node for i in (0, 1) if len(n.input) > i
                and n.op_type in ("DynamicQuantizeMatMul", "QAttention", "MatMulInteger", "DequantizeLinear")}
    for name in gemm_ins:
        q = inits.get(name)
        if q is not None and q.dtype == np.int8 and q.ndim == 2 and q.shape[0] != 100:  # not the word table
            assert max(_pair_sums(q)) <= 128, name
    onnx.save(exact_twin(tmp_path / "ps.onnx"), str(tmp_path / "twin.onnx"))
    feeds = fixed_inputs(vocab=100, lengths=(8, 5, 3), seed=7)
    got, ref = _out(tmp_path / "ps.onnx", feeds), _out(tmp_path / "twin.onnx", feeds)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-5)


def test_pairsafe_check_refuses_codes_that_break_the_promise(bert, tmp_path, monkeypatch):
    """The writer checks every block it writes: a rule that let a pair pass 128 (here: scales from half the pair
    maxima) is one error line, exit 2, and no file."""
    from click.testing import CliRunner

    import deploytool.passes.int8_native as native
    from deploytool.cli import main

    real = native._column_pair_max
    monkeypatch.setattr(native, "_column_pair_max", lambda w: real(w) / 2)
    out = tmp_path / "bad.onnx"
    r = CliRunner().invoke(main, ["quantize", str(bert), "--int8", "--weights", "pairsafe", "-o", str(out)])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and "pair-safe codes" in lines[-1] and "Traceback" not in r.output
    assert not out.exists() and not list(tmp_path.iterdir())


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("family, exporter", [("bert", "torch"), ("roberta", "dynamo"), ("distilbert", "optimum"),
                                              ("electra", "torch")])
def test_pairsafe_across_exporters_and_families(tiny_onnx, tmp_path, family, exporter):
    """Scaled-up weights (where default codes clip on x86 without VNNI), exports from three tools: the pair-safe
    file is written by the native writer, computes what its exact twin does on this CPU, and is as close to fp32
    as the default codes computed exactly (their uint8 twin)."""
    from deploytool.runtime.int8_kernel import exact_twin

    src = tiny_onnx(family, exporter, weight_scale=4.0, **SHAPE)
    res = quantize_int8_file(src, tmp_path / "ps.onnx", Int8Config(weights="pairsafe"))
    assert res.stats["engine"] == "native" and res.stats["weight_codes"] == "pairsafe"
    quantize_int8_file(src, tmp_path / "q8.onnx", Int8Config())
    onnx.save(exact_twin(tmp_path / "ps.onnx"), str(tmp_path / "ps_twin.onnx"))
    onnx.save(exact_twin(tmp_path / "q8.onnx"), str(tmp_path / "q8_twin.onnx"))
    feeds = fixed_inputs(vocab=100, lengths=(8, 5, 3), seed=7)
    ref = _out(src, feeds)
    ps, ps_twin, q8_exact = (_out(tmp_path / n, feeds) for n in ("ps.onnx", "ps_twin.onnx", "q8_twin.onnx"))
    for k in ref:
        np.testing.assert_allclose(ps[k], ps_twin[k], rtol=1e-5, atol=1e-5)
        c_ps, c_q8 = _cosine(ps[k], ref[k]), _cosine(q8_exact[k], ref[k])
        assert c_ps > 0.99 and 1 - c_ps <= 2 * (1 - c_q8) + 1e-4, (k, c_ps, c_q8)


def test_exact_twin_leaves_a_node_whose_zero_point_is_not_a_constant(tmp_path):
    """A weight zero point fed at run time cannot be shifted: that node and its weight stay as they are, while
    another node of the same model is rewritten, and the twin still computes the model's integers."""
    from deploytool.runtime.int8_kernel import exact_twin

    w1, w2 = np.array([[3, -5], [7, 1]], np.int8), np.array([[-2, 4], [6, -8]], np.int8)
    g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "w1", "az", "wz"], ["y1"]),
                           helper.make_node("MatMulInteger", ["a", "w2", "az"], ["y2"])], "g",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, 2]),
                           helper.make_tensor_value_info("wz", TensorProto.INT8, [])],
                          [helper.make_tensor_value_info("y1", TensorProto.INT32, [None, 2]),
                           helper.make_tensor_value_info("y2", TensorProto.INT32, [None, 2])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
                           numpy_helper.from_array(np.array(0, np.uint8), "az")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(tmp_path / "m.onnx"))
    twin = exact_twin(tmp_path / "m.onnx")
    inits = {t.name: numpy_helper.to_array(t) for t in twin.graph.initializer}
    assert inits["w1"].dtype == np.int8 and np.array_equal(inits["w1"], w1)
    assert inits["w2"].dtype == np.uint8 and list(twin.graph.node[0].input) == ["a", "w1", "az", "wz"]
    a = np.array([[255, 9]], np.uint8)
    y = run_onnx(twin.SerializeToString(), {"a": a, "wz": np.array(1, np.int8)})
    assert y["y1"].tolist() == (a.astype(np.int64) @ (w1.astype(np.int64) - 1)).tolist()
    assert y["y2"].tolist() == (a.astype(np.int64) @ w2.astype(np.int64)).tolist()


def test_pairsafe_on_ort_path_refuses_a_weight_it_cannot_map(bert, tmp_path, monkeypatch):
    """ORT's quantizer output whose int8 weights do not name their fp32 originals (here: the name suffix the
    mapping expects is changed) is one error line naming the weight, exit 2, and no file."""
    from click.testing import CliRunner

    import deploytool.passes.quantize_int8 as q
    from deploytool.cli import main

    monkeypatch.setattr(q, "_ORT_SUFFIX", "_not_what_ort_writes")
    out = tmp_path / "o" / "ps.onnx"
    out.parent.mkdir()
    r = CliRunner().invoke(main, ["quantize", str(bert), "--int8", "--engine", "ort", "--weights", "pairsafe",
                                  "-o", str(out)])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and "weights=pairsafe" in lines[-1] and "_quantized" in lines[-1]
    assert "Traceback" not in r.output and not list(out.parent.iterdir())


@pytest.mark.parametrize("weights", ["int7", "pairsafe"])
def test_ort_engine_recodes_a_transposed_gemm_weight(tiny_onnx, tmp_path, weights):
    """A classifier head exported as Gemm (transB): ORT's quantizer stores its weight transposed
    (``<name>_Transposed_quantized``); the re-coding finds the fp32 original and writes the rule's codes of
    its transpose, restated here (int7: max|W| / 63 per column; pairsafe: no same-signed pair past 128)."""
    src = tiny_onnx("electra", exporter="torch", task="sequence-classification")
    res = quantize_int8_file(src, tmp_path / "q.onnx", Int8Config(engine="ort", weights=weights))
    assert res.gate.verified and res.stats[f"{weights}_weights"] >= 1
    inits = _inits(tmp_path / "q.onnx")
    name = "m.classifier.dense.weight_Transposed_quantized"
    assert name in inits, sorted(inits)
    q = inits[name]
    w = numpy_helper.to_array(next(t for t in onnx.load(str(src)).graph.initializer
                                   if t.name == "m.classifier.dense.weight")).astype(np.float64).T
    assert q.shape == w.shape
    if weights == "int7":
        np.testing.assert_array_equal(q, np.clip(np.round(w / (np.abs(w).max(axis=0) / 63)), -63, 63))
    else:
        even = q.astype(np.int32)[: q.shape[0] // 2 * 2]
        a, b = even[0::2], even[1::2]
        assert np.abs(np.where(np.sign(a) == np.sign(b), a + b, 0)).max() <= 128


@pytest.mark.parametrize("weights", ["int7", "uint8", "pairsafe"])
def test_ort_engine_writes_each_weight_code(bert, tmp_path, weights):
    """ORT's engine (ORT's optimizer and quantizer, reached through deploytool.runtime) maps each code to its
    own rule, restated on the fp32 weight of layer 1's FFN: int7 is 7-bit symmetric codes (max|W| / 63 per
    column), uint8 is uint8 weights with their zero points, pairsafe is int8 codes no pair of rows of which
    sums past 128 in one sign."""
    from deploytool.graph import find_structure
    from deploytool.graph.weights import weight_array
    from deploytool.onnx_io import load_model

    res = quantize_int8_file(bert, tmp_path / "q.onnx", Int8Config(engine="ort", weights=weights))
    assert res.stats["engine"] == "ort" and res.stats["weight_codes"] == weights and res.gate.verified
    inits = _inits(tmp_path / "q.onnx")
    # ORT's engine writes the FFN as MatMulInteger (input 1 the weight) beside the fused QAttention
    gemm_weights = [inits[n.input[1]] for n in onnx.load(str(tmp_path / "q.onnx")).graph.node
                    if n.op_type in (*GEMM_WEIGHT, "MatMulInteger") and n.input[1] in inits]
    assert gemm_weights
    w = weight_array(find_structure(load_model(bert)).layers[1].ffn.intermediate.weight).astype(np.float64)
    if weights == "uint8":
        assert all(q.dtype == np.uint8 for q in gemm_weights)
        return
    assert all(q.dtype == np.int8 for q in gemm_weights)
    if weights == "int7":
        # the same 7-bit rule as the native writer's (not ORT's reduce_range, which reaches 64); the FFN weight is
        # fused into no other matrix, so its codes appear whole
        assert res.stats["int7_weights"] >= 2 * SHAPE["layers"], res.stats
        scale = np.abs(w).max(axis=0) / 63
        codes = np.clip(np.round(w / scale), -63, 63)
        assert any(q.shape == w.shape and np.array_equal(q, codes) for q in gemm_weights)
        assert all(np.abs(q.astype(np.int16)).max() == 63 for q in gemm_weights)
    else:
        for q in gemm_weights:
            q2 = q.astype(np.int32).reshape(q.shape[0], -1)
            even = q2[: q2.shape[0] // 2 * 2]
            pairs = even[0::2] + even[1::2]
            same_sign = (np.sign(even[0::2]) == np.sign(even[1::2]))
            assert np.abs(np.where(same_sign, pairs, 0)).max() <= 128
