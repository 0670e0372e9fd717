"""``deploytool bundle``: the .ort model loads in ONNX Runtime and reproduces the manifest's outputs for its
fixed input (and the source .onnx's); operator config, EP settings, tokenizer and QNN binary as the
profile asks; bad input is one line, exit 2, and no folder."""

from __future__ import annotations

import importlib.util
import os
import json
import shutil

import numpy as np
import onnx
import pytest
import yaml
from click.testing import CliRunner

from deploytool.cli import main


@pytest.fixture(scope="module")
def model_dir(tiny_onnx, tmp_path_factory):
    d = tmp_path_factory.mktemp("bundle_src")
    shutil.copy(tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64), d / "tiny.onnx")
    tok = tmp_path_factory.mktemp("tok")
    (tok / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(96)]))
    (tok / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return d, tok


def _bundle(args):
    return CliRunner().invoke(main, ["bundle", *args])


def _feeds(manifest):
    return {k: np.asarray(v["values"], dtype=v["dtype"]).reshape(v["shape"])
            for k, v in manifest["fixed_input"]["inputs"].items()}


def test_bundle_for_a_snapdragon(model_dir, tmp_path):
    import onnxruntime as ort

    src, tok = model_dir
    out = tmp_path / "bundle"
    r = _bundle([str(src / "tiny.onnx"), "--profile", "snapdragon-sm8650", "-o", str(out), "--tokenizer", str(tok),
                 "--seq-len", "12", "--qnn-seq-len", "24"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "deploytool.bundle" and m["profile"]["name"] == "snapdragon-sm8650"
    # sizes are the files' sizes
    for f in m["files"]:
        assert (out / f["name"]).stat().st_size == f["bytes"]
    assert {"model.ort", "required_operators.config", "tokenizer/vocab.txt", "tokenizer/tokenizer_config.json"} <= \
        {f["name"] for f in m["files"]}
    # the .ort file, loaded by ONNX Runtime here, gives the manifest's outputs and the source model's
    so = ort.SessionOptions()
    for k, v in m["session"]["config_entries"].items():
        so.add_session_config_entry(k, v)
    sess = ort.InferenceSession(str(out / "model.ort"), sess_options=so, providers=["CPUExecutionProvider"])
    feeds = _feeds(m)
    assert feeds["input_ids"].shape == (1, 12)
    got = sess.run(None, feeds)
    ref = ort.InferenceSession(str(src / "tiny.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
    for o, g, want in zip(sess.get_outputs(), got, ref):
        exp = m["expected_outputs"][o.name]
        np.testing.assert_allclose(g, np.asarray(exp["values"], dtype=exp["dtype"]).reshape(exp["shape"]), atol=1e-5)
        np.testing.assert_allclose(g, want, atol=1e-4)
    # the input signature is the model's
    graph_inputs = [i.name for i in onnx.load(str(src / "tiny.onnx")).graph.input]
    assert [i["name"] for i in m["signature"]["inputs"]] == graph_inputs
    # the reduced-build operator list: only the model's own operators, as domain;opset;ops lines
    src_ops = {n.op_type for n in onnx.load(str(src / "tiny.onnx")).graph.node}
    lines = [ln for ln in (out / "required_operators.config").read_text().splitlines() if ln and not ln.startswith("#")]
    ops = {op for ln in lines for op in ln.split(";")[2].split(",")}
    assert all(ln.split(";")[0] == "ai.onnx" for ln in lines)
    assert {"MatMul", "Softmax"} <= ops <= src_ops
    # the profile's EPs, options and threads, as its YAML says
    from deploytool.profiles import load_profile

    prof = yaml.safe_load(open(load_profile("snapdragon-sm8650").path))
    want_eps = [e["name"] if isinstance(e, dict) else e for e in prof["execution_providers"]]
    assert [e["name"] for e in m["session"]["execution_providers"]] == want_eps
    assert m["session"]["intra_op_num_threads"] == prof["threads"]
    assert m["ort"]["optimization_style"] == "runtime"  # XNNPACK first: nodes stay for the EP
    # the NPU: a QNN context binary where onnxruntime-qnn is here, else the reason
    q = m["qnn"]
    if importlib.util.find_spec("onnxruntime_qnn") is not None:
        assert q["produced"], q
        assert q["target"]["soc_model"] == prof["npu"]["soc_model"] and q["seq_len"] == 24
        # what the compile really calibrated on (its own note), not the options' wording
        compiled = json.loads((out / "qnn" / "qnn_compile.json").read_text())
        assert q["calibration"] == compiled["prepare"]["calibration"] and "seeded random token-id" in q["calibration"]
        assert f"QNN calibration: {q['calibration']}" in r.output
        ctx = onnx.load(str(out / q["context_model"]), load_external_data=False)
        assert [d.dim_value for d in ctx.graph.input[0].type.tensor_type.shape.dim] == [1, 24]
        assert all((out / b).stat().st_size > 0 for b in q["binaries"]) and (out / q["context_model"]).is_file()
    else:
        assert not q["produced"] and q["why"]


def test_bundle_without_npu_or_tokenizer(model_dir, tmp_path):
    src, _ = model_dir
    out = tmp_path / "b"
    r = _bundle([str(src / "tiny.onnx"), "--profile", "kirin990", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert m == json.loads((out / "manifest.json").read_text()) | {"files": m["files"]}
    assert not m["qnn"]["produced"] and "no NPU" in m["qnn"]["why"]
    assert m["tokenizer"]["files"] == [] and "no tokenizer found (none beside tiny.onnx" in m["tokenizer"]["note"]
    assert not (out / "tokenizer").exists() and not (out / "qnn").exists()


def _one_line(r) -> str:
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


@pytest.mark.parametrize("case", ["no_mobile_ep", "not_empty", "missing_model", "not_onnx", "tokenizer_too_big",
                                  "tokenizer_not_json"])
def test_bundle_bad_input(model_dir, tmp_path, case):
    src, tok = model_dir
    model, out, profile = src / "tiny.onnx", tmp_path / "out", "snapdragon-sm8650"
    extra = []
    if case == "tokenizer_too_big":  # a tokenizer of 130 ids beside a 100-row word table: the phone's ids overrun it
        big = tmp_path / "bigtok"
        big.mkdir()
        (big / "vocab.txt").write_text((tok / "vocab.txt").read_text() + "".join(f"\nextra{i}" for i in range(30)))
        extra = ["--tokenizer", str(big)]
    elif case == "tokenizer_not_json":  # it was shipped as it is (the parse error swallowed)
        bad = tmp_path / "badtok"
        bad.mkdir()
        (bad / "tokenizer.json").write_text("{x\n")
        extra = ["--tokenizer", str(bad)]
        profile = "kirin990"
    elif case == "no_mobile_ep":
        profile = "graviton2"
    elif case == "not_empty":
        out.mkdir()
        (out / "keep.txt").write_text("x")
    elif case == "missing_model":
        model = tmp_path / "nope.onnx"
    else:
        model = tmp_path / "bad.onnx"
        model.write_text("not a model")
    line = _one_line(_bundle([str(model), "--profile", profile, "-o", str(out), "--no-qnn", *extra]))
    expect = {"no_mobile_ep": "no mobile execution provider", "not_empty": "not empty",
              "missing_model": "nope.onnx", "not_onnx": "bad.onnx",
              "tokenizer_too_big": "has 130 token ids but the model's word table",
              "tokenizer_not_json": f"{tmp_path / 'badtok' / 'tokenizer.json'}: not a tokenizer"}[case]
    assert expect in line
    if case == "not_empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()
    assert not list(tmp_path.glob(".out.*"))  # no half-written staging folder


@pytest.mark.parametrize("target", ["empty", "new", "full"])
def test_bundle_output_through_a_symbolic_link(model_dir, tmp_path, target):
    """-o a link to an empty folder (or to one not made yet): the whole bundle was built, then renaming it onto the
    link failed ('internal error NotADirectoryError', exit 1). It goes where the link points, which stays a link; a
    link to a folder with files is refused as that folder is, naming the link."""
    src, _ = model_dir
    real, link = tmp_path / "real" / "b", tmp_path / "link"
    if target != "new":
        real.mkdir(parents=True)
    if target == "full":
        (real / "keep.txt").write_text("x")
    link.symlink_to(real, target_is_directory=True)
    r = _bundle([str(src / "tiny.onnx"), "--profile", "kirin990", "-o", str(link), "--no-qnn"])
    assert link.is_symlink() and os.readlink(link) == str(real)
    if target == "full":
        assert _one_line(r) == f"error: {link}: directory exists and is not empty; choose a new output folder"
        assert [p.name for p in real.iterdir()] == ["keep.txt"]
        return
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in real.iterdir()) == ["manifest.json", "model.ort", "required_operators.config"]
    m = json.loads((real / "manifest.json").read_text())
    assert all((real / f["name"]).stat().st_size == f["bytes"] for f in m["files"])
    assert not [p for p in tmp_path.rglob(".*") if p.name.endswith(".tmp")]  # no staging folder left


def test_bundle_seq_len_past_the_position_table(model_dir, tmp_path, capfd):
    # the tiny BERT has 160 positions: refused before ONNX Runtime runs it, naming the user's file and the limit
    src, _ = model_dir
    out = tmp_path / "out"
    line = _one_line(_bundle([str(src / "tiny.onnx"), "--profile", "kirin990", "-o", str(out), "--seq-len", "1000"]))
    assert f"{src / 'tiny.onnx'}: --seq-len 1000 is longer than the model's position table (160 positions)" in line
    assert ".tmp" not in line and "onnxruntime" not in capfd.readouterr().err  # ORT's raw log (fd 2) stays quiet
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_bundle_unpacked_note_sizes_show_the_difference(tiny_onnx, tmp_path):
    """On a tiny packed model both sizes are a fraction of a megabyte: the note's units show them apart (it read
    "0.1 MB against the packed file's 0.1 MB")."""
    from deploytool.bundle import _unpacked_note
    from deploytool.passes.pack_weights import PackConfig, pack_file

    packed = tmp_path / "packed.onnx"
    pack_file(tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64), packed, PackConfig(weights="binary"))
    note = _unpacked_note(packed, 61_000, 134_000)
    assert note is not None and "(0.13 MB against the packed file's 61.0 kB)" in note, note


@pytest.mark.parametrize("runtime", ["speed", "memory"])
def test_bundle_says_when_the_ort_holds_packed_weights_unpacked(tiny_onnx, tmp_path, runtime):
    """A binary-packed model: ONNX Runtime's converter folds the unpacking of its weights, so the .ort holds
    them as int8 and is several times the packed file: the manifest and the command say so and name the way
    out (MatMulNBits, --runtime memory), whose .ort stays near the packed size and gets no such note."""
    from deploytool.passes.pack_weights import PackConfig, pack_file

    src = tiny_onnx("bert", layers=1, hidden=128, heads=4, ffn=512, vocab=100)
    packed = tmp_path / "packed.onnx"
    pack_file(src, packed, PackConfig(weights="binary", runtime=runtime))
    out = tmp_path / "b"
    r = _bundle([str(packed), "--profile", "snapdragon-sm8650", "-o", str(out), "--no-qnn", "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    ort_bytes = (out / "model.ort").stat().st_size
    if runtime == "speed":
        assert ort_bytes > 1.5 * packed.stat().st_size  # really unpacked in the .ort
        assert "unpacked to int8" in m["ort"]["note"] and "--runtime memory" in m["ort"]["note"]
        text = _bundle([str(packed), "--profile", "snapdragon-sm8650", "-o", str(tmp_path / "b2"), "--no-qnn"])
        assert text.exit_code == 0 and "note: model.ort holds pack's binary1 weights unpacked" in text.output
    else:
        assert ort_bytes < 1.2 * packed.stat().st_size and "note" not in m["ort"]


@pytest.mark.parametrize("weights,fp32_qkv", [("ternary", False), ("split-binary", False), ("ternary", True)])
def test_bundle_of_a_model_ort_fused_first(tiny_fused_onnx, tmp_path, monkeypatch, weights, fp32_qkv):
    """A memory-packed BERT that ONNX Runtime's optimizer fused first (EmbedLayerNormalization, Attention): every
    packed weight stays packed in the .ort (the word table gathered by rows, the QKV on MatMulNBits, two binary
    planes included), no note. A fused Attention no 2-bit kernel reads (a past state: pack's choice forced here, an
    encoder export has none) reads its QKV unpacked to fp32, in the .ort too; the note names those weights and that
    cause, and does not send the user to repack (the file is already in the memory runtime)."""
    import onnx

    from deploytool.passes import pack_weights
    from deploytool.passes.pack_weights import PackConfig, pack_file

    src = tiny_fused_onnx("bert", layers=1, hidden=128, heads=4, ffn=512, vocab=2000)
    assert {"EmbedLayerNormalization", "Attention"} <= {n.op_type for n in onnx.load(str(src)).graph.node}
    if fp32_qkv:
        monkeypatch.setattr(pack_weights, "_fused_kernel_blocker", lambda node, config: "it reads a past state")
    packed = tmp_path / "packed.onnx"
    pack_file(src, packed, PackConfig(weights=weights, runtime="memory"))
    out = tmp_path / "b"
    r = _bundle([str(packed), "--profile", "snapdragon-sm8650", "-o", str(out), "--no-qnn", "--json"])
    assert r.exit_code == 0, r.output
    ort = json.loads(r.output)["ort"]
    ratio = (out / "model.ort").stat().st_size / packed.stat().st_size
    if not fp32_qkv:
        assert ratio < 1.2 and "note" not in ort, (ratio, ort)
    else:
        assert ratio > 1.2
        assert "qkv_weight" in ort["note"] and "unpacked to fp32" in ort["note"] and "fused node" in ort["note"]
        assert "repack" not in ort["note"] and "unpacked to int8" not in ort["note"]


def test_bundle_repack_memory_keeps_the_ort_small(tiny_onnx, tmp_path):
    """--repack-memory: the binary speed file's linear weights go into the .ort as MatMulNBits 2-bit (the same
    codes: its outputs equal those of the file pack writes with --runtime memory), no unpacked note; the input
    file is untouched and nothing but the bundle is left behind. An fp32 model is refused in one line."""
    from deploytool.passes.pack_weights import PackConfig, pack_file

    src = tiny_onnx("bert", layers=1, hidden=128, heads=4, ffn=512, vocab=100)
    packed, memory = tmp_path / "packed.onnx", tmp_path / "memory.onnx"
    pack_file(src, packed, PackConfig(weights="binary", runtime="speed"))
    pack_file(src, memory, PackConfig(weights="binary", runtime="memory"))
    before = packed.read_bytes()
    plain, small = tmp_path / "plain", tmp_path / "small"
    assert _bundle([str(packed), "--profile", "snapdragon-sm8650", "-o", str(plain), "--no-qnn"]).exit_code == 0
    r = _bundle([str(packed), "--profile", "snapdragon-sm8650", "-o", str(small), "--no-qnn", "--repack-memory"])
    assert r.exit_code == 0, r.output
    assert "repacked for the .ort: 6 weights as MatMulNBits 2-bit" in r.output and "note:" not in r.output
    m = json.loads((small / "manifest.json").read_text())
    assert m["source"]["model"] == str(packed) and m["source"]["bytes"] == len(before)
    assert m["source"]["repacked"]["weights_converted"] == 6 and "note" not in m["ort"]
    assert (small / "model.ort").stat().st_size < 0.6 * (plain / "model.ort").stat().st_size
    from deploytool.runtime.mobile import run_ort

    feeds = {k: np.asarray(v["values"], dtype=v["dtype"]).reshape(v["shape"])
             for k, v in m["fixed_input"]["inputs"].items()}
    want = run_ort(memory, feeds)
    for k, v in m["expected_outputs"].items():
        np.testing.assert_allclose(np.asarray(v["values"], np.float32).reshape(v["shape"]), want[k], atol=1e-5)
    assert packed.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == \
        ["memory.onnx", "packed.onnx", "plain", "small"]
    bad = _bundle([str(src), "--profile", "snapdragon-sm8650", "-o", str(tmp_path / "x"), "--no-qnn", "--repack-memory"])
    # the option and the file, in one line (repack's own words advised 'pack an fp32 model with --runtime', no
    # bundle option)
    assert bad.exit_code == 2 and not (tmp_path / "x").exists()
    assert bad.stderr.strip() == (f"error: --repack-memory: {src} has no 'deploytool.packing' record, so no packed "
                                  "weights to move (it takes a file `deploytool pack` wrote); leave --repack-memory "
                                  "out for this model")


def test_bundle_seq_len_the_model_cannot_run(tmp_path, capfd):
    """A model whose graph fixes the sequence length inside (a Reshape to [1, 8]; no position table to read a
    limit from): a --seq-len it cannot run fails in one line naming the user's file, not the staged .ort built
    from it, and leaves no folder."""
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 8])
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("Reshape", ["f", "shape"], ["last_hidden_state"])], "fixed",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1, 8])], [shape])
    src = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    out = tmp_path / "out"
    assert _bundle([str(src), "--profile", "kirin990", "-o", str(out), "--seq-len", "8"]).exit_code == 0
    shutil.rmtree(out)
    line = _one_line(_bundle([str(src), "--profile", "kirin990", "-o", str(out), "--seq-len", "12"]))
    assert line.startswith(f"error: {src}: ONNX Runtime cannot run it"), line
    assert ".ort" not in line and ".tmp" not in line
    assert "onnxruntime" not in capfd.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


_NO_QNN = None if importlib.util.find_spec("onnxruntime_qnn") is not None else \
    "onnxruntime-qnn is not installed (pip install 'deploytool[qnn]'): no QNN context binary is compiled here"


def _nothing_written(tmp_path, out):
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("case", ["no_tokenizer", "misspelled", "unknown_with_tokenizer"])
def test_bundle_named_qnn_calibration_it_cannot_use_is_refused(model_dir, tmp_path, case):
    """A --qnn-calib-data the compile could not use (no tokenizer: it would calibrate on seeded ids; a name that
    is no dataset) is one line, exit 2, nothing written; the manifest never claims texts it did not use."""
    src, tok = model_dir
    out = tmp_path / "out"
    args = [str(src / "tiny.onnx"), "--profile", "snapdragon-sm8650", "-o", str(out), "--qnn-seq-len", "16"]
    args += {"no_tokenizer": ["--qnn-calib-data", "rotten-tomatoes"],
             "misspelled": ["--qnn-calib-data", "rotten-tomatos"],
             "unknown_with_tokenizer": ["--tokenizer", str(tok), "--qnn-calib-data", "no-such-dataset"]}[case]
    line = _one_line(_bundle(args))
    expect = {"no_tokenizer": "--qnn-calib-data rotten-tomatoes: its texts need a tokenizer",
              "misspelled": "--qnn-calib-data: unknown dataset 'rotten-tomatos'",
              "unknown_with_tokenizer": "--qnn-calib-data: unknown dataset 'no-such-dataset'"}[case]
    assert expect in line, line
    if case == "no_tokenizer":
        assert "pass --tokenizer" in line
    if case == "misspelled":
        assert "(did you mean 'rotten-tomatoes'?)" in line
    _nothing_written(tmp_path, out)


@pytest.mark.skipif(_NO_QNN is not None, reason=_NO_QNN or "")
def test_bundle_qnn_calibration_on_named_texts(model_dir, tmp_path):
    """With a tokenizer the named dataset (a user CSV here: nothing to download) is what the compile calibrates
    on, and the manifest copies the compile's own note."""
    src, tok = model_dir
    data = tmp_path / "calib.csv"
    data.write_text("text,label\n" + "".join(f"w{i} w{i + 1} w{i + 2},{i % 2}\n" for i in range(40)))
    out = tmp_path / "b"
    r = _bundle([str(src / "tiny.onnx"), "--profile", "snapdragon-sm8650", "-o", str(out), "--tokenizer", str(tok),
                 "--qnn-seq-len", "16", "--qnn-calib-data", str(data), "--qnn-calib-size", "4"])
    assert r.exit_code == 0, r.output
    q = json.loads((out / "manifest.json").read_text())["qnn"]
    compiled = json.loads((out / "qnn" / "qnn_compile.json").read_text())["prepare"]["calibration"]
    assert q["produced"] and q["calibration"] == compiled
    assert compiled.startswith(f"4 {data} train texts tokenised with {tok}"), compiled


@pytest.mark.skipif(_NO_QNN is not None, reason=_NO_QNN or "")
@pytest.mark.parametrize("pair", [False, True])
def test_bundle_qnn_calibration_reads_the_columns_named(model_dir, tmp_path, pair):
    """--qnn-calib-text-col / --qnn-calib-text-pair-col: a calibration file whose texts are not in a 'text' column
    (bundle had no column options: such a file was refused, while qnn quantize took them). The compile's own note
    names what it calibrated on."""
    src, tok = model_dir
    data = tmp_path / "claims.csv"
    data.write_text("id,claim,evidence\n" + "".join(f"{i},w{i} w{i + 1},w{i + 2} w{i + 3}\n" for i in range(40)))
    out = tmp_path / "b"
    cols = ["--qnn-calib-text-col", "claim"] + (["--qnn-calib-text-pair-col", "evidence"] if pair else [])
    r = _bundle([str(src / "tiny.onnx"), "--profile", "snapdragon-sm8650", "-o", str(out), "--tokenizer", str(tok),
                 "--qnn-seq-len", "16", "--qnn-calib-data", str(data), "--qnn-calib-size", "4", *cols])
    assert r.exit_code == 0, r.output
    compiled = json.loads((out / "qnn" / "qnn_compile.json").read_text())["prepare"]["calibration"]
    assert compiled.startswith(f"4 {data} ") and ("pair" in compiled) == pair, compiled


@pytest.mark.parametrize("args, needle", [
    (["--qnn-calib-data", "{data}"], "no column 'text'"),  # the default column is not in the file
    (["--qnn-calib-data", "{data}", "--qnn-calib-text-col", "claim", "--qnn-calib-text-pair-col", "evidense"],
     "evidense"),
    (["--qnn-calib-text-col", "claim"], "--qnn-calib-text-col: names a column of the calibration file"),
    (["--no-qnn", "--qnn-calib-data", "{data}", "--qnn-calib-text-col", "claim"], "--no-qnn"),
])
def test_bundle_qnn_calibration_columns_refused_in_one_line(model_dir, tmp_path, args, needle):
    src, tok = model_dir
    data = tmp_path / "claims.csv"
    data.write_text("id,claim,evidence\n" + "".join(f"{i},w{i} w{i + 1},w{i + 2}\n" for i in range(40)))
    out = tmp_path / "b"
    line = _one_line(_bundle([str(src / "tiny.onnx"), "--profile", "snapdragon-sm8650", "-o", str(out),
                              "--tokenizer", str(tok), "--qnn-seq-len", "16",
                              *[a.format(data=data) for a in args]]))
    assert needle in line, line
    _nothing_written(tmp_path, out)


def test_bundle_qnn_seq_len_past_the_position_table(model_dir, tmp_path):
    """An explicit --qnn-seq-len the model cannot take is refused like --seq-len, naming --qnn-seq-len."""
    src, _ = model_dir
    out = tmp_path / "out"
    line = _one_line(_bundle([str(src / "tiny.onnx"), "--profile", "snapdragon-sm8650", "-o", str(out),
                              "--qnn-seq-len", "500"]))
    assert f"{src / 'tiny.onnx'}: --qnn-seq-len 500 is longer than the model's position table (160 positions)" in line
    _nothing_written(tmp_path, out)


def test_bundle_qnn_seq_len_is_checked_as_seq_len_is(tiny_onnx, tmp_path):
    """--qnn-seq-len past the table is refused by inspection.check_position_table, as --seq-len is: the same words
    but the option (bundle had its own rule beside it, which gave a RoBERTa-style table as '64 positions' and said
    'use a QNN sequence length'); the default length's note in the manifest says it in the same words."""
    src = tiny_onnx("roberta", max_pos=64)  # 66 rows, 64 usable: ids start at padding_idx + 1 = 2
    lines = {}
    for option in ("--seq-len", "--qnn-seq-len"):
        out = tmp_path / option.strip("-")
        lines[option] = _one_line(_bundle([str(src), "--profile", "snapdragon-sm8650", "-o", str(out), option, "65"]))
        _nothing_written(tmp_path, out)
    assert lines["--seq-len"] == (f"error: {src}: --seq-len 65 is longer than the model's position table (64 positions: "
                                  "66 rows, RoBERTa-style ids start at padding_idx + 1 = 2); use a sequence length <= 64")
    assert lines["--qnn-seq-len"] == lines["--seq-len"].replace("--seq-len", "--qnn-seq-len")
    out = tmp_path / "default"
    r = _bundle([str(src), "--profile", "snapdragon-sm8650", "-o", str(out)])  # QNN's default length, 128: no binary
    assert r.exit_code == 0, r.output
    why = json.loads((out / "manifest.json").read_text())["qnn"]["why"]
    assert why == ("the default --qnn-seq-len 128 is longer than the model's position table (64 positions: 66 rows, "
                   "RoBERTa-style ids start at padding_idx + 1 = 2); use a sequence length <= 64 (pass --qnn-seq-len)")


@pytest.mark.parametrize("profile,extra,expect", [
    ("kirin990", ["--qnn-seq-len", "64"], "--qnn-seq-len: sets the QNN context binary, and profile 'kirin990' has no NPU"),
    ("kirin990", ["--qnn-calib-data", "rotten-tomatoes"], "--qnn-calib-data: sets the QNN context binary, and profile"),
    # the options typed, no config field (it said 'which qnn=False (--no-qnn) turns off')
    ("snapdragon-sm8650", ["--no-qnn", "--qnn-seq-len", "64"], "error: --qnn-seq-len: sets the QNN context binary, "
                                                                "which --no-qnn turns off; the two exclude each other"),
    ("snapdragon-sm8650", ["--no-qnn", "--qnn-calib-size", "4"], "error: --qnn-calib-size: sets the QNN context "
                                                                  "binary, which --no-qnn turns off; the two exclude "
                                                                  "each other"),
])
def test_bundle_refuses_qnn_options_it_cannot_use(model_dir, tmp_path, profile, extra, expect):
    """A --qnn-* option where no QNN binary is compiled would be silently ignored: refused in one line, as
    qnn compile refuses --quantize with --fp16; the Python config refuses it too, naming the field."""
    from deploytool.bundle import BundleConfig
    from deploytool.errors import ConfigError
    from deploytool.profiles import load_profile

    src, _ = model_dir
    out = tmp_path / "out"
    line = _one_line(_bundle([str(src / "tiny.onnx"), "--profile", profile, "-o", str(out), *extra]))
    assert (line == expect if "--no-qnn" in extra else expect in line) and "qnn=" not in line, line
    _nothing_written(tmp_path, out)
    # the library names its fields (qnn=False), not the CLI's options
    with pytest.raises(ConfigError, match="^qnn_seq_len: sets the QNN context binary" +
                       (", which qnn=False turns off; the two exclude each other$" if "--no-qnn" in extra else "")):
        BundleConfig(profile=load_profile(profile), qnn="--no-qnn" not in extra, qnn_seq_len=64)
    BundleConfig(profile=load_profile(profile), qnn="--no-qnn" not in extra)  # the defaults alone are fine


@pytest.mark.skipif(_NO_QNN is not None, reason=_NO_QNN or "")
def test_bundle_of_an_fp16_model_says_why_no_qnn_binary(model_dir, tmp_path):
    """An fp16 model cannot take QNN's u16/u8 quantization: the manifest says that, whole, instead of ONNX
    Runtime's internal type error about a deleted temp file cut mid-word."""
    half, out, r = _fp16_bundle(model_dir, tmp_path, "snapdragon-sm8650", "--json")
    why = json.loads(r.output)["qnn"]["why"]
    assert why.startswith("half.onnx: the model is fp16") and why.endswith("(qnn check|compile --fp16)"), why
    assert "ONNXRuntimeError" not in why and "/tmp" not in why
    # converted on a host whose CPU has no fp16 kernels (x86), the .ort keeps ONNX Runtime's fp16 -> fp32 casts:
    # said, with the count in the file shipped (test_an_fp16_bundle_says_its_ort_computes_in_fp32)
    note = json.loads(r.output)["ort"].get("note", "")
    n = _ort_casts(out / "model.ort")
    assert (f"ONNX Runtime's converter put {n} fp16 -> fp32 casts into model.ort" in note) == (n > 0), note


def _fp16_bundle(model_dir, tmp_path, profile: str, *args: str):
    """The tiny model converted to fp16 (half.onnx) and bundled for ``profile`` into tmp_path/b: (half, b, result)."""
    from deploytool.passes.fp16 import Fp16Config, convert_fp16_file

    src, _ = model_dir
    half = tmp_path / "half.onnx"
    convert_fp16_file(src / "tiny.onnx", half, Fp16Config())
    out = tmp_path / "b"
    r = _bundle([str(half), "--profile", profile, "-o", str(out), *args])
    assert r.exit_code == 0, r.output
    return half, out, r


def _ort_casts(path) -> int:
    """InsertedPrecisionFreeCast nodes in an .ort, read with ONNX Runtime's own FlatBuffers bindings."""
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs.InferenceSession import InferenceSession

    g = InferenceSession.GetRootAsInferenceSession(path.read_bytes(), 0).Model().Graph()
    return sum(g.Nodes(i).Name().decode().startswith("InsertedPrecisionFreeCast") for i in range(g.NodesLength()))


def test_an_fp16_bundle_says_its_ort_computes_in_fp32(model_dir, tmp_path):
    """An fp16 model's model.ort carries the fp16 -> fp32 casts ONNX Runtime inserted on this host (x86: no fp16
    kernels), and a .ort keeps them on the phone (verify-arm64: neoverse-n1 ran all 58 of the bundle's against 10 of
    the .onnx's 28). No conversion removes them and still loads here (bundle._fp16_casts_note says what was tried), so
    the bundle says it in one line, with the count in the file shipped: the old note counted the .onnx's casts (28),
    not the runtime-style .ort's (58). The host still loads and runs the .ort (its own check); an fp32 bundle says
    nothing of casts."""
    from deploytool.runtime.session import inserted_precision_casts

    src, _ = model_dir
    half, out, r = _fp16_bundle(model_dir, tmp_path, "raspberry-pi-4", "--no-qnn")
    n = _ort_casts(out / "model.ort")
    if not inserted_precision_casts(half):
        pytest.skip("this host's CPU runs the fp16 model without casts")
    assert n > len(inserted_precision_casts(half))  # runtime style: the unfused nodes each get theirs
    m = json.loads((out / "manifest.json").read_text())
    assert m["ort"]["optimization_style"] == "runtime"
    note = m["ort"]["note"]
    assert note.startswith(f"ONNX Runtime's converter put {n} fp16 -> fp32 casts into model.ort where this host's "
                           "CPU has no fp16 kernel, and the device runs those nodes in fp32 too"), note
    assert note.endswith("bundle the fp32 model, or ship the .onnx where fp16 arithmetic matters"), note
    assert [ln for ln in r.output.splitlines() if ln.startswith("  note: ")] == [f"  note: {note}"]
    assert np.isfinite(m["verification"]["max_abs_vs_onnx"])
    import onnxruntime as ort

    so = ort.SessionOptions()
    for k, v in m["session"]["config_entries"].items():
        so.add_session_config_entry(k, v)
    sess = ort.InferenceSession(str(out / "model.ort"), so, providers=["CPUExecutionProvider"])
    y = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, _feeds(m))))
    for k, v in m["expected_outputs"].items():
        assert np.array_equal(y[k], np.asarray(v["values"], dtype=v["dtype"]).reshape(v["shape"]))
    r = _bundle([str(src / "tiny.onnx"), "--profile", "raspberry-pi-4", "-o", str(tmp_path / "b32"), "--no-qnn"])
    assert r.exit_code == 0 and "casts" not in r.output, r.output


def test_bundle_of_a_model_whose_data_is_in_a_subfolder(model_dir, tmp_path):
    """External data at location "sub/x.data" (every other command runs it): the ORT conversion got the data file
    copied beside the model under its bare name and failed with ONNX Runtime's "External data path does not exist"."""
    import onnx

    src, _ = model_dir
    m = onnx.load(str(src / "tiny.onnx"))
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    onnx.save(m, str(folder / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="sub/ext.data", size_threshold=0)
    assert (folder / "sub" / "ext.data").is_file()
    out = tmp_path / "b"
    r = _bundle([str(folder / "ext.onnx"), "--profile", "snapdragon-sm8650", "-o", str(out), "--no-qnn"])
    assert r.exit_code == 0, r.output
    assert (out / "model.ort").is_file() and json.loads((out / "manifest.json").read_text())["source"]["bytes"] > 0


def test_ort_size_folder_is_one_of_deploytools_temporary_folders(tmp_path, monkeypatch):
    """The folder fit's size column converts a model in (/tmp by default) is listed by deploytool.scratch while in
    use, so an exit cut short by a signal removes it too (deploytool.cli); removed and unlisted after."""
    import deploytool.runtime.mobile as mobile
    from deploytool import bundle, scratch

    seen = []

    def convert(path, data, out, style):
        seen.append(str(out) in scratch._LIVE)
        (out / "m.ort").write_bytes(b"x" * 10)
        return out / "m.ort", None

    monkeypatch.setattr(mobile, "convert_to_ort", convert)
    monkeypatch.setattr("deploytool.onnx_io.external_data_files", lambda path: [])
    (tmp_path / "w").mkdir()
    src = tmp_path / "m.onnx"
    src.write_bytes(b"")
    assert bundle.ort_size_mb(src, "fixed", tmp_path / "w") == 10 / 1e6
    assert seen == [True] and os.listdir(tmp_path / "w") == [] and not any(
        p.startswith(str(tmp_path)) for p in scratch._LIVE)
