"""fp16 on sequence-first encoders (Longformer, ``nn.MultiheadAttention`` with ``batch_first=False``).

ONNX Runtime 1.32's CPU provider segfaults while it builds a session (default optimization level) of an
fp16 Transpose that moves a batch axis into a MatMul with a 2-D weight: before the fix, ``deploytool
quantize --fp16`` on a Longformer export died with SIGSEGV (exit 139, no message) in the gate. The pass now
keeps those Transposes in fp32. Every ORT session of an fp16 output here runs in a child process, so that a
regression is a failed assertion, not a dead test run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import deploytool.passes.base as base
import deploytool.passes.fp16 as fp16_mod
from deploytool.errors import VerificationError
from deploytool.passes import transform
from deploytool.passes.fp16 import Fp16Config, batch_transposes_into_weights

CRASHING_PERMS = [(1, 0, 2), (1, 2, 0), (1, 2, 0, 3), (1, 2, 3, 0)]  # measured on ORT 1.32 (x86-64)

_RUN = """
import json, sys
import numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.log_severity_level = 3
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
feeds = {k: np.asarray(v, dtype=np.float32 if "float" in i.type else np.int64)
         for (k, v), i in zip(json.loads(sys.argv[2]).items(), s.get_inputs())}
print(json.dumps([o.tolist() for o in s.run(None, feeds)]))
"""


def _run_isolated(path, feeds: dict[str, np.ndarray]) -> tuple[int, list[np.ndarray] | None]:
    """Run ``path`` at ORT's default optimization level in a child process: (exit code, outputs)."""
    p = subprocess.run([sys.executable, "-c", _RUN, str(path), json.dumps({k: v.tolist() for k, v in feeds.items()})],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        return p.returncode, None
    return 0, [np.asarray(o, dtype=np.float32) for o in json.loads(p.stdout)]


def _seq_first(perm: tuple[int, ...], path) -> dict[str, np.ndarray]:
    """x -> Transpose(perm) -> MatMul(W [8, 8]) + bias -> y; returns its feeds. x's axes are symbolic (as an
    export's are: ORT does not crash where they are all fixed) but the one the weight reads, 8."""
    rng = np.random.default_rng(0)
    r = len(perm)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=list(perm), name="move_batch"),
             helper.make_node("MatMul", ["t", "w"], ["m"], name="proj"),
             helper.make_node("Add", ["m", "b"], ["y"], name="bias")]
    g = helper.make_graph(nodes, "seq_first",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8 if i == perm[-1] else f"d{i}"
                                                                                for i in range(r)])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w"),
                           numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return {"x": rng.standard_normal([8] * r).astype(np.float32)}


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("perm", CRASHING_PERMS)
def test_the_pattern_is_found(perm, tmp_path):
    _seq_first(perm, tmp_path / "m.onnx")
    assert batch_transposes_into_weights(onnx.load(tmp_path / "m.onnx")) == ("move_batch",)


def test_bert_transposes_are_left_alone(tmp_path):
    """BERT's head transposes keep the batch axis first or feed an activation MatMul (Q.K^T); a transpose of
    the last two axes into a weight MatMul is a plain transB: none of them is kept in fp32."""
    w = numpy_helper.from_array(np.ones((8, 8), np.float32), "w")
    nodes = [helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1, 3], name="heads_q"),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 3, 1], name="heads_k"),
             helper.make_node("MatMul", ["qt", "kt"], ["s"], name="scores"),
             helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1], name="last_two"),
             helper.make_node("MatMul", ["xt", "w"], ["y"], name="proj")]
    g = helper.make_graph(nodes, "bert_like",
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "s", 2, 4]) for n in ("q", "k")]
                          + [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 8, 8])],
                          [helper.make_tensor_value_info("s", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    assert batch_transposes_into_weights(helper.make_model(g)) == ()


@pytest.mark.parametrize("perm", CRASHING_PERMS)
def test_fp16_output_of_a_batch_moving_transpose_runs(perm, tmp_path):
    """Through the command: exit 0, the Transpose still reads and writes fp32, the weight is fp16, and the
    output runs at ORT's default level in a fresh process, close to the fp32 input's output."""
    src, dst = tmp_path / "m.onnx", tmp_path / "m16.onnx"
    feeds = _seq_first(perm, src)
    p = subprocess.run([sys.executable, "-m", "deploytool", "quantize", "--fp16", str(src), "-o", str(dst)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "fp32_transposes: 1" in p.stdout
    out = onnx.load(dst)
    w = next(t for t in out.graph.initializer if t.name == "w")
    assert w.data_type == TensorProto.FLOAT16
    t = next(n for n in out.graph.node if n.name == "move_batch")
    readers = [n for n in out.graph.node if t.output[0] in n.input]
    assert [n.op_type for n in readers] == ["Cast"] and readers[0].attribute[0].i == TensorProto.FLOAT16
    rc, got = _run_isolated(dst, feeds)
    assert rc == 0, f"the fp16 output does not run in ONNX Runtime (exit {rc})"
    rc, want = _run_isolated(src, feeds)
    assert rc == 0
    assert _cos(got[0], want[0]) > 0.999


def _longformer(tmp_path):
    """A tiny random Longformer exported by torch's TorchScript exporter (its Q/K/V read the hidden states
    transposed to [S, B, H]), and a padded batch."""
    torch = pytest.importorskip("torch")
    tr = pytest.importorskip("transformers")
    cfg = tr.LongformerConfig(vocab_size=99, hidden_size=24, num_attention_heads=4, intermediate_size=40,
                              num_hidden_layers=2, max_position_embeddings=64, pad_token_id=1, attention_window=4)
    torch.manual_seed(0)
    model = tr.LongformerModel(cfg).eval()
    ids = torch.randint(3, 99, (2, 8))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    path = tmp_path / "longformer.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state", "pooler_output"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}})
    return path, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}


def test_fp16_of_a_longformer_export_runs(tmp_path):
    """The export that crashed (SIGSEGV, exit 139): written, running, close to the input."""
    src, feeds = _longformer(tmp_path)
    dst = tmp_path / "lf16.onnx"
    p = subprocess.run([sys.executable, "-m", "deploytool", "quantize", "--fp16", str(src), "-o", str(dst)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "stay fp32" in p.stdout
    # two per layer: its local and its global Q/K/V projections each read the states transposed to [S, B, H]
    assert len(batch_transposes_into_weights(onnx.load(src))) == 4
    rc, got = _run_isolated(dst, feeds)
    assert rc == 0, f"the fp16 output does not run in ONNX Runtime (exit {rc})"
    rc, want = _run_isolated(src, feeds)
    assert rc == 0
    assert _cos(got[0], want[0]) > 0.999


def test_a_crash_of_the_gate_process_is_one_line(tmp_path, monkeypatch):
    """Without the workaround, the gate's own process meets ORT's crash: the pass says so in one line and
    writes nothing (skipped where this ONNX Runtime no longer crashes: the workaround could then go)."""
    src = tmp_path / "m.onnx"
    _seq_first((1, 0, 2), src)
    probe = tmp_path / "probe16.onnx"
    monkeypatch.setattr(fp16_mod, "batch_transposes_into_weights", lambda proto: ())
    transform(src, probe, Fp16Config(check_host=False), verify=False)
    rc, _ = _run_isolated(probe, {"x": np.ones((8, 8, 8), np.float32)})
    if rc == 0:
        pytest.skip("this ONNX Runtime runs the fp16 pattern: the fp32 Transposes are no longer needed")
    monkeypatch.setattr(base, "BIG_MODEL_BYTES", 0)  # the gate in a process of its own, as for big inputs
    dst = tmp_path / "out.onnx"
    with pytest.raises(VerificationError, match=r"ONNX Runtime crashed \(segmentation fault\), SIGSEGV") as e:
        transform(src, dst, Fp16Config())
    assert "\n" not in str(e.value) and "nothing written" in str(e.value)
    assert not dst.exists()


def _users_crashing_fp16(tmp_path, monkeypatch):
    """A user's own fp16 file of the crashing pattern (written with the fix turned off); skips where this ONNX
    Runtime runs it."""
    src, bad = tmp_path / "m.onnx", tmp_path / "theirs16.onnx"
    _seq_first((1, 0, 2), src)
    monkeypatch.setattr(fp16_mod, "batch_transposes_into_weights", lambda proto: ())
    transform(src, bad, Fp16Config(check_host=False), verify=False)
    if _run_isolated(bad, {"x": np.ones((8, 8, 8), np.float32)})[0] == 0:
        pytest.skip("this ONNX Runtime runs the fp16 pattern")
    return bad


def test_a_crash_on_a_users_fp16_file_is_one_line_from_the_command(tmp_path, monkeypatch):
    """A user's own fp16 file of that pattern (one made before this fix, or by another tool) crashes ONNX
    Runtime in any session of it: the command ends in one line and exit 2, nothing written."""
    bad = _users_crashing_fp16(tmp_path, monkeypatch)
    dst = tmp_path / "out.onnx"
    p = subprocess.run([sys.executable, "-m", "deploytool", "quantize", "--int8", str(bad), "-o", str(dst)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    # the gate's forked copy died, not the command: the input crashes ONNX Runtime too, so the input is named
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: ONNX Runtime crashes on the input itself "), lines
    assert "segmentation fault" in lines[0] and "SIGSEGV" in lines[0] and lines[0].endswith("wrote nothing")
    assert not dst.exists()


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_a_crash_on_the_output_is_a_refusal_in_the_library_caller(tmp_path, monkeypatch, platform):
    """A library caller's pass whose output crashes ONNX Runtime (the fp16 pattern, written with the fix turned
    off) is refused with a VerificationError naming the signal, and the caller's process goes on (the gate
    runs the output in a forked copy of it; on macOS, where a fork is not safe, in a fresh process: no fork
    at all, the same refusal); nothing is written."""
    import os

    if platform == "darwin":
        monkeypatch.setattr(sys, "platform", "darwin")
        monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked on macOS"))
    src, dst = tmp_path / "m.onnx", tmp_path / "out16.onnx"
    _seq_first((1, 0, 2), src)
    monkeypatch.setattr(fp16_mod, "batch_transposes_into_weights", lambda proto: ())
    probe = tmp_path / "probe.onnx"
    transform(src, probe, Fp16Config(check_host=False), verify=False)
    if _run_isolated(probe, {"x": np.ones((8, 8, 8), np.float32)})[0] == 0:
        pytest.skip("this ONNX Runtime runs the fp16 pattern")
    with pytest.raises(VerificationError, match=r"wrote a model that the verification gate could not check: ONNX "
                                                r"Runtime crashed \(segmentation fault\), SIGSEGV, .*; nothing written"):
        transform(src, dst, Fp16Config(check_host=False))
    assert not dst.exists()


def test_a_crash_on_a_users_file_in_the_gates_own_process_names_the_input(tmp_path, monkeypatch):
    """The same user's file through a library call with the gate in a process of its own (as for inputs over 50
    MB): that process's death is a crash too, the input is run again in a copy, crashes as well, and is named."""
    from deploytool.errors import InputFileError
    from deploytool.passes.quantize_int8 import Int8Config

    bad = _users_crashing_fp16(tmp_path, monkeypatch)
    monkeypatch.setattr(base, "BIG_MODEL_BYTES", 0)
    dst = tmp_path / "out.onnx"
    with pytest.raises(InputFileError, match=rf"^{bad}: ONNX Runtime crashes on the input itself \(ONNX Runtime "
                                             r"crashed \(segmentation fault\), SIGSEGV\); \S+ wrote nothing$"):
        transform(bad, dst, Int8Config())
    assert not dst.exists()
