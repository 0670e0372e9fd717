"""The verification gate's process started with the pass (``runtime.verify.GateProcess``, issue #17).

Inputs over ``base.BIG_MODEL_BYTES`` run the gate in a process of its own that starts as the pass
starts and, for a pass that compares with its input, runs the input while the pass runs. Here the
limit is set to 0 so the tiny test model takes that path. It must give the verdict the in-process gate
gives (the same one-line message for a broken output; the same pass for a good one), fall back to
running the reference again when the output's feeds differ from the input's, and leave no process and
no temporary file behind, on success, on a refusal and when the pass itself fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

from deploytool.errors import VerificationError
from deploytool.passes import base
from deploytool.passes.base import DeployPass, DeployPassResult, run_pass_file
from deploytool.passes.reorder import ReorderConfig, ReorderPass
from deploytool.runtime import verify as V
from deploytool.testing.procs import alive

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=48, seed=8)  # the export test_verify_gate.py uses too


@pytest.fixture(scope="module")
def src(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", **SHAPE)


def _children() -> set[int]:
    """Live processes whose parent is this one."""
    me, out = os.getpid(), set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                out.add(int(d.name))
    return out


@pytest.fixture
def separate(monkeypatch, tmp_path):
    """Every input takes the separate-process gate; temporary files go to a folder of the test's own;
    returns the pids of the gate processes started."""
    monkeypatch.setattr(base, "BIG_MODEL_BYTES", 0)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    pids: list[int] = []
    real = V.GateProcess

    class Recorded(real):
        def __init__(self) -> None:
            super().__init__()
            pids.append(self.pid)

    monkeypatch.setattr(V, "GateProcess", Recorded)
    before = _children()
    yield pids
    assert pids, "the separate gate was not used"
    assert not any(alive(p) for p in pids), "a gate process outlived run_pass_file"
    assert _children() <= before
    left = [p.name for p in tmp.iterdir() if p.name.startswith(("deploytool", "tmp"))]
    assert not left, left  # no temporary file or folder of the gate's (its log file has no name)


def _in_process_error(monkeypatch, pass_, src, dst) -> str:
    """The old path's verdict: the gate in this process (the input under the size limit)."""
    with monkeypatch.context() as m:
        m.setattr(base, "BIG_MODEL_BYTES", 1 << 62)
        with pytest.raises(VerificationError) as e:
            run_pass_file(pass_, src, dst)
    return str(e.value)


def _nothing_written(dst: Path) -> None:
    assert not dst.exists()
    assert not list(dst.parent.glob(f".{dst.name}*")), list(dst.parent.iterdir())


# ------------------------------------------------------------------------------ passes that break the model


class BadReshapePass(DeployPass):
    """The first head-split Reshape gets head size 7 (4 heads x 7 does not divide 32): fails at run time."""

    def call(self, model: ir.Model) -> DeployPassResult:
        reshape = next(n for n in model.graph if n.op_type == "Reshape")
        const = reshape.inputs[1].producer().inputs[3].producer()  # the torch export's Constant [8]
        assert const.attributes["value"].as_tensor().numpy().tolist() == [8]
        const.attributes["value"] = ir.AttrTensor("value", ir.tensor(np.array([7], dtype=np.int64)))
        return DeployPassResult(model, modified=True)


class NanBiasPass(DeployPass):
    def call(self, model: ir.Model) -> DeployPassResult:
        add = next(n for n in model.graph if n.op_type == "Add" and any(
            v.const_value is not None and v.const_value.numpy().ndim == 1 for v in n.inputs))
        b = next(v for v in add.inputs if v.const_value is not None)
        b.const_value = ir.tensor(np.full(b.const_value.shape.numpy(), np.nan, np.float32), name=b.name)
        return DeployPassResult(model, modified=True)


class SwapValueHeadsPass(ReorderPass):
    """A reorder that also swaps two heads of layer 0's V projection only: runs, but computes something else."""

    def edit(self, model, structure):
        done = super().edit(model, structure)
        att = structure.layers[0].attention
        d = att.head_size
        idx = np.r_[np.arange(d, 2 * d), np.arange(0, d), np.arange(2 * d, att.num_heads * d)]
        v = att.v
        w = v.weight.const_value.numpy()
        v.weight.const_value = ir.tensor((w[:, idx] if v.layout == "in_out" else w[idx, :]).copy(), name=v.weight.name)
        done.changed = True
        return done


class FailingPass(ReorderPass):
    """Fails in the middle of the pass, after the gate's process has started on the input's reference."""

    def edit(self, model, structure):
        time.sleep(0.5)  # the gate's process is busy with the input by now
        raise RuntimeError("the pass broke")


class HalfVocabPass(DeployPass):
    """Keeps the first half of the word-embedding table: on ids below that it computes what the input does
    (so it may promise to preserve outputs), but the gate's feeds (ids below the vocabulary) differ from
    the input's."""

    def preserves_outputs(self) -> bool:
        return True

    def call(self, model: ir.Model) -> DeployPassResult:
        gather = next(n for n in model.graph if n.op_type == "Gather" and n.inputs[1].name == "input_ids")
        table = gather.inputs[0]
        rows = table.const_value.numpy()
        table.const_value = ir.tensor(rows[: rows.shape[0] // 2].copy(), name=table.name)
        table.shape = ir.Shape(table.const_value.shape)
        return DeployPassResult(model, modified=True)


# ------------------------------------------------------------------------------ the verdicts


@pytest.mark.parametrize("make", [BadReshapePass, NanBiasPass, lambda: SwapValueHeadsPass(ReorderConfig())],
                         ids=["run-time failure", "not finite", "differs from the input"])
def test_broken_output_refused_as_in_process(src, tmp_path, monkeypatch, separate, make):
    dst = tmp_path / "bad.onnx"
    expected = _in_process_error(monkeypatch, make(), src, dst)
    assert expected.endswith("; nothing written") and "\n" not in expected
    with pytest.raises(VerificationError) as e:
        run_pass_file(make(), src, dst)
    assert str(e.value) == expected  # the same one line, numbers included
    _nothing_written(dst)


def test_good_reorder_passes_with_the_reference_computed_early(src, tmp_path, separate):
    res = run_pass_file(ReorderPass(ReorderConfig()), src, tmp_path / "r.onnx")
    assert res.modified and (tmp_path / "r.onnx").exists()
    g = res.gate
    assert g.verified is True and g.process == "separate" and g.reference_reused is True
    assert g.peak_rss_bytes > 0
    assert res.to_dict()["gate_reference_reused"] is True


def test_the_input_skeleton_is_the_loaders_own(src, tmp_path, separate, monkeypatch):
    """The runner takes the input's skeleton as the loader scanned it from the file (``onnx_io.INPUT_SKELETON``)
    instead of serializing the model once more: the same graph, inputs, initializer types, shapes and lengths,
    the same gate plan and feeds; the model is serialized once, for the output (twice on the old code)."""
    import onnx

    from deploytool import onnx_io

    model = onnx_io.load_model(src)
    loaded = model.meta[onnx_io.INPUT_SKELETON]
    made = onnx_io.skeleton_proto(model)[0]

    def facts(p):
        return ([(n.op_type, list(n.input), list(n.output)) for n in p.graph.node], [i.name for i in p.graph.input],
                {t.name: (t.data_type, list(t.dims), t.data_location,
                          {e.key: e.value for e in t.external_data if e.key == "length"}, t.raw_data)
                 for t in p.graph.initializer})

    assert facts(loaded) == facts(made)
    assert sum(t.data_location == onnx.TensorProto.EXTERNAL for t in loaded.graph.initializer) >= 4
    fa, fb = V.gate_feeds(V.gate_plan(loaded, src)), V.gate_feeds(V.gate_plan(made, src))
    assert fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)
    assert base._gate_session_config(loaded) == base._gate_session_config(made)
    # a model with external data files has none (its lengths may be missing): the runner serializes it
    ext = tmp_path / "ext" / "m.onnx"
    ext.parent.mkdir()
    onnx.save(onnx.load(str(src)), str(ext), save_as_external_data=True, location="m.data", size_threshold=1024)
    assert onnx_io.INPUT_SKELETON not in onnx_io.load_model(ext).meta

    calls = []
    real = onnx_io.skeleton_proto
    monkeypatch.setattr(onnx_io, "skeleton_proto", lambda m: calls.append(1) or real(m))
    res = run_pass_file(ReorderPass(ReorderConfig()), src, tmp_path / "r.onnx")
    assert res.gate.verified and res.gate.reference_reused
    assert len(calls) == 1


def test_output_feeds_unlike_the_inputs_run_the_reference_again(src, tmp_path, separate):
    res = run_pass_file(HalfVocabPass(), src, tmp_path / "h.onnx")
    assert res.gate.verified is True and res.gate.reference_reused is False


def test_pass_without_reference_uses_the_started_process(src, tmp_path, separate):
    from deploytool.passes.prune_heads import HeadPruneConfig, PruneHeadsPass

    res = run_pass_file(PruneHeadsPass(HeadPruneConfig(heads={0: [1]})), src, tmp_path / "p.onnx")
    assert res.gate.verified is True and res.gate.process == "separate" and res.gate.reference_reused is None


def test_failing_pass_kills_the_gate_process(src, tmp_path, separate):
    dst = tmp_path / "f.onnx"
    with pytest.raises(RuntimeError, match="the pass broke"):
        run_pass_file(FailingPass(ReorderConfig()), src, dst)
    _nothing_written(dst)
    assert len(separate) == 1  # it had started (the fixture checks it is gone)


def test_verify_false_starts_no_process(src, tmp_path, monkeypatch):
    monkeypatch.setattr(base, "BIG_MODEL_BYTES", 0)
    monkeypatch.setattr(V, "GateProcess", None)  # would fail if called
    res = run_pass_file(ReorderPass(ReorderConfig()), src, tmp_path / "r.onnx", verify=False)
    assert res.gate.verified is False


def test_gate_process_dies_with_its_parent(src, tmp_path):
    """A parent killed outright (no finally runs) takes its gate process with it."""
    code = textwrap.dedent(f"""
        import os, signal, sys, time
        from deploytool.runtime.verify import GateProcess, gate_feeds, gate_plan
        from deploytool.onnx_io import load_proto
        p = GateProcess()
        plan = gate_plan(load_proto({str(src)!r}, load_external_data=False), {str(src)!r})
        p.precompute_reference(gate_feeds(plan), model={str(src)!r})
        print(p.pid, flush=True)
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(base.__file__).parents[2]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_worker_reuses_the_reference_only_for_the_same_feeds(src):
    """The worker's protocol in this process: the verdict and ``reference_reused`` for the same feeds,
    feeds with other ids, and a reference model other than the one run early."""
    import json

    from deploytool.onnx_io import load_proto
    from deploytool.runtime._gate_worker import serve

    plan = V.gate_plan(load_proto(src, load_external_data=False), src)
    feeds = V.gate_feeds(plan)
    other = {k: v.copy() for k, v in feeds.items()}
    other["input_ids"][0, 0] = (other["input_ids"][0, 0] + 1) % plan.vocab

    def ask(verify_feeds, reference):
        lines = [json.dumps({"op": "reference", "model": str(src), "feeds": V.encode_feeds(feeds)}),
                 json.dumps({"op": "verify", "model": str(src), "feeds": V.encode_feeds(verify_feeds),
                             "reference": reference, "rtol": 1e-4, "min_cosine": None,
                             "reference_label": "the input model's"})]
        answers = []
        serve(iter(lines), answers.append)
        return answers[0]

    same = ask(feeds, str(src))
    assert same["ok"] and same["reference_reused"] is True and same["max_diff"] == 0.0
    assert ask(other, str(src))["reference_reused"] is False
    assert "reference_reused" not in ask(feeds, None)


@pytest.mark.parametrize("fails", [False, True])
def test_worker_makes_the_outputs_session_while_its_reference_is_built(src, tmp_path, monkeypatch, fails):
    """A reference still being built when the output arrives (pack's, on two cores) does not hold the output
    back: the output's session is made and run meanwhile, then the comparison waits for the reference; a
    reference whose build fails is still reported, once the output itself has passed its checks."""
    import json

    from deploytool.onnx_io import load_proto
    from deploytool.runtime import _gate_worker as W

    feeds = V.gate_feeds(V.gate_plan(load_proto(src, load_external_data=False), src))

    def slow_build(spec, source, folder, argument):
        time.sleep(1.0)
        if fails:
            raise RuntimeError("the builder broke")
        return str(src)

    monkeypatch.setattr(W, "_build", slow_build)
    lines = [json.dumps({"op": "reference", "build": "any:builder", "src": str(src), "folder": str(tmp_path),
                         "argument": "", "feeds": V.encode_feeds(feeds)}),
             json.dumps({"op": "verify", "model": str(src), "feeds": V.encode_feeds(feeds),
                         "reference": V.GateProcess.EARLY, "rtol": 1e-4, "min_cosine": None,
                         "reference_label": "the input model's", "threads": 2})]
    answers = []
    W.serve(iter(lines), answers.append)
    out, marks = answers[0], answers[0]["marks"]
    assert marks["run"] < marks["reference_waited"]  # the output ran before the reference was there
    assert marks["received"] - marks["reference_begun"] < 0.5  # the message was read while it was built
    assert out["session_threads"] == 1  # not the two it was sent: the reference still had the other core
    if fails:
        assert not out["ok"] and "the builder broke" in out["error"]
        assert "reference_built" not in marks  # no build finished
    else:
        assert out["ok"] and out["reference_reused"] is True and out["max_diff"] == 0.0
        assert marks["reference_done"] - marks["reference_begun"] >= 1.0
        # the build's end is marked apart from the reference's run: a second after it began, before it ran
        assert marks["reference_begun"] + 1.0 <= marks["reference_built"] <= marks["reference_done"]


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_worker_gives_the_outputs_session_the_threads_it_is_sent(src, monkeypatch, threads):
    """The output's session in the gate's process runs with the intra-op threads the verify message names
    (the pass's process only waits by then); a message without them (an older caller) gets one; the
    reference's session keeps one."""
    import json

    from deploytool.onnx_io import load_proto
    from deploytool.runtime import _gate_worker as W

    feeds = V.gate_feeds(V.gate_plan(load_proto(src, load_external_data=False), src))
    made = []
    real = V._session

    def recording(*args, **kwargs):
        sess = real(*args, **kwargs)
        made.append(sess.get_session_options().intra_op_num_threads)
        return sess

    monkeypatch.setattr(V, "_session", recording)
    msg = {"op": "verify", "model": str(src), "feeds": V.encode_feeds(feeds), "reference": str(src),
           "rtol": 1e-4, "min_cosine": None, "reference_label": "the input model's"}
    if threads is not None:
        msg["threads"] = threads
    answers = []
    W.serve(iter([json.dumps(msg)]), answers.append)
    assert answers[0]["ok"] and answers[0]["max_diff"] == 0.0
    assert made == [threads or 1, 1]  # the output's session, then the reference's
    assert answers[0]["session_threads"] == (threads or 1)


def test_gate_threads_are_the_cores_this_process_may_use(monkeypatch):
    from deploytool.runtime import machine

    monkeypatch.setattr(machine, "cgroup_cpu_quota", lambda: None)  # this test's own machine's quota aside
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert V.gate_threads() == 3 and V.gate_threads(limit=2) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert V.gate_threads() == 4
    monkeypatch.setattr(machine, "cgroup_cpu_quota", lambda: 1.5)  # a container's CPU quota caps them too
    assert V.gate_threads() == 1


def _serve_slowly(W, messages, *, wait_before_verify: float):
    """The worker's answer to ``messages`` (dicts), the verify message (the last) read ``wait_before_verify``
    seconds after the others."""
    import json

    def lines():
        for m in messages:
            if m["op"] == "verify":
                time.sleep(wait_before_verify)
            yield json.dumps(m)

    answers = []
    W.serve(lines(), answers.append)
    return answers[0]


@pytest.fixture
def worker(monkeypatch):
    """The gate worker's module, its heap settings recorded instead of made (they would hold for this whole
    test process)."""
    from deploytool.runtime import _gate_worker as W

    calls = []
    monkeypatch.setattr(W, "_keep_freed_memory", lambda: calls.append(True))
    monkeypatch.setattr(W, "mallopt", lambda: None)
    W.keep_calls = calls
    return W


def test_worker_warms_after_its_reference_and_reports_it(src, worker):
    """A warm message before the reference: the heap is set up then, the memory touched once the reference has
    run, all of it when the output comes later, and the answer says how much and when."""
    from deploytool.onnx_io import load_proto

    feeds = V.gate_feeds(V.gate_plan(load_proto(src, load_external_data=False), src))
    nbytes = 10 * (1 << 20) + 4096  # more than two blocks, not a whole number of them
    out = _serve_slowly(worker, [
        {"op": "warm", "bytes": nbytes, "after_reference": True},
        {"op": "reference", "model": str(src), "feeds": V.encode_feeds(feeds)},
        {"op": "verify", "model": str(src), "feeds": V.encode_feeds(feeds), "reference": str(src), "rtol": 1e-4,
         "min_cosine": None, "reference_label": "the input model's"}], wait_before_verify=1.5)
    assert out["ok"] and out["reference_reused"] is True
    assert worker.keep_calls == [True]
    assert out["warmed_bytes"] == nbytes
    marks = out["marks"]
    assert marks["reference_done"] <= marks["warm_done"] < marks["received"]


def test_worker_waiting_to_warm_does_not_hold_back_a_refusal(src, worker, monkeypatch, tmp_path):
    """Warming waits for a reference still being built; an output refused before that reference is asked for
    (it does not load) is answered at once, not after the warming thread's wait."""
    from deploytool.onnx_io import load_proto

    feeds = V.gate_feeds(V.gate_plan(load_proto(src, load_external_data=False), src))
    monkeypatch.setattr(worker, "_build", lambda *a: (time.sleep(3.0), str(src))[1])
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    start = time.monotonic()
    out = _serve_slowly(worker, [
        {"op": "warm", "bytes": 1 << 20, "after_reference": True},
        {"op": "reference", "build": "any:builder", "src": str(src), "folder": str(tmp_path), "argument": "",
         "feeds": V.encode_feeds(feeds)},
        {"op": "verify", "model": str(broken), "feeds": V.encode_feeds(feeds), "reference": V.GateProcess.EARLY,
         "rtol": 1e-4, "min_cosine": None, "reference_label": "the input model's"}], wait_before_verify=0.0)
    assert not out["ok"] and "cannot load" in out["error"]
    assert time.monotonic() - start < 0.8  # the warming thread stopped waiting when the output came
    assert out["warmed_bytes"] == 0


def test_worker_stops_warming_when_the_output_comes(src, worker, monkeypatch):
    """Far more than it can touch before the output comes: it stops then (within a block), and never asks for
    more than half of what the machine has available."""
    from deploytool.onnx_io import load_proto

    feeds = V.gate_feeds(V.gate_plan(load_proto(src, load_external_data=False), src))
    monkeypatch.setattr(worker, "available_memory_bytes", lambda: 2 * (1 << 30))  # at most 1 GiB is touched
    out = _serve_slowly(worker, [
        {"op": "warm", "bytes": 1 << 40, "after_reference": False},
        {"op": "verify", "model": str(src), "feeds": V.encode_feeds(feeds), "reference": None, "rtol": 1e-4,
         "min_cosine": None, "reference_label": "the input model's"}], wait_before_verify=0.05)
    assert out["ok"]
    assert 0 < out["warmed_bytes"] < 1 << 30  # 1 GiB of page faults takes far longer than the wait
    assert out["warmed_bytes"] % 4096 == 0
    assert out["marks"]["received"] <= out["marks"]["warm_done"]


def _fp32_weight_bytes(path, *, matmul_rhs_only: bool, limit: int = 32 << 20) -> int:
    """From the ONNX proto, independently of the passes: bytes of float32 initializers over 1 KiB, or the
    element count of 2-D float32 initializers that are a MatMul's or Gemm's second input; either under
    ``limit`` bytes (of int8 for the second)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    rhs = {n.input[1] for n in m.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1}
    total = 0
    for t in m.graph.initializer:
        if t.data_type != onnx.TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(t)
        if matmul_rhs_only:
            total += a.size if a.ndim == 2 and t.name in rhs and a.size < limit else 0
        elif 1024 < a.nbytes < limit:
            total += a.nbytes
    return total


def test_fp16_and_int8_ask_the_gate_to_warm_what_ort_will_allocate(src, monkeypatch):
    from deploytool import onnx_io
    from deploytool.passes.fp16 import Fp16Config, Fp16ConvertPass
    from deploytool.passes.quantize_int8 import Int8Config, Int8QuantizePass

    model = onnx_io.load_model(src)
    fp16 = Fp16ConvertPass(Fp16Config(check_host=False)).gate_session_bytes(model)
    int8 = Int8QuantizePass(Int8Config()).gate_session_bytes(model)
    assert fp16 == _fp32_weight_bytes(src, matmul_rhs_only=False) > 0
    assert int8 == _fp32_weight_bytes(src, matmul_rhs_only=True) > 0
    assert ReorderPass(ReorderConfig()).gate_session_bytes(model) == 0  # fp32 weights, loaded where they lie
    # tensors at the limit or over it get fresh memory of their own: not counted (a limit below the largest)
    monkeypatch.setattr(V, "WARM_TENSOR_LIMIT", 4096)
    small = _fp32_weight_bytes(src, matmul_rhs_only=False, limit=4096)
    assert Fp16ConvertPass(Fp16Config(check_host=False)).gate_session_bytes(model) == small < fp16
    monkeypatch.setattr(V, "WARM_TENSOR_LIMIT", 1536)  # the FFN's 32 x 48 weights are at it
    assert Int8QuantizePass(Int8Config()).gate_session_bytes(model) == _fp32_weight_bytes(
        src, matmul_rhs_only=True, limit=1536) < int8


def test_fp16_through_the_separate_gate_warms_its_session(src, tmp_path, separate):
    from deploytool.passes.fp16 import Fp16Config, Fp16ConvertPass

    res = run_pass_file(Fp16ConvertPass(Fp16Config(check_host=False)), src, tmp_path / "h.onnx")
    assert res.gate.verified is True and res.gate.reference_reused is True
    assert res.gate.warmed_bytes is not None and 0 <= res.gate.warmed_bytes <= _fp32_weight_bytes(
        src, matmul_rhs_only=False)
    assert res.to_dict()["gate_warmed_bytes"] == res.gate.warmed_bytes


def test_feeds_survive_the_trip():
    feeds = {"input_ids": np.arange(16, dtype=np.int64).reshape(2, 8), "mask": np.ones((2, 8), np.int32),
             "x": np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)}
    back = V.decode_feeds(V.encode_feeds(feeds))
    assert set(back) == set(feeds)
    for k, v in feeds.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v)


# ------------------------------------------------------------------------------ pack: a reference the process builds


def test_pack_reference_built_by_the_gate_process(src, tmp_path, separate):
    from deploytool.passes import transform
    from deploytool.passes.pack_weights import PackConfig

    res = transform(src, tmp_path / "t.onnx", PackConfig(weights="ternary", runtime="memory", accuracy_level=0))
    assert res.gate.verified is True and res.gate.process == "separate" and res.gate.reference_reused is not None


def test_pack_with_wrong_codes_refused_as_in_process(src, tmp_path, monkeypatch, separate):
    """A packer bug (codes negated) in the pass's process: the reference the gate's process builds (the
    fake-quantized fp32 model, packer not involved) tells it apart, with the in-process gate's message."""
    from deploytool.passes import pack_weights
    from deploytool.passes.pack_weights import PackConfig, pack_pipeline

    real = pack_weights.packing.pack_2bit
    monkeypatch.setattr(pack_weights.packing, "pack_2bit", lambda t: real(-np.asarray(t)))
    cfg = PackConfig(weights="ternary", runtime="memory", accuracy_level=0)
    dst = tmp_path / "bad.onnx"
    expected = _in_process_error(monkeypatch, pack_pipeline(cfg), src, dst)
    assert "differs from the fake-quantized fp32 model's by" in expected
    with pytest.raises(VerificationError) as e:
        run_pass_file(pack_pipeline(cfg), src, dst)
    assert str(e.value) == expected
    _nothing_written(dst)


PACK_CASES = {  # exact (fp32 activations: equality within rtol) and int8-activation schemes (cosine)
    "ternary-memory-exact": dict(weights="ternary", runtime="memory", accuracy_level=0, position_embeddings="ternary"),
    "ternary-speed": dict(weights="ternary"),
    "binary-densest": dict(weights="binary", runtime="densest", embeddings="binary"),
    "split-binary": dict(weights="split-binary", pack_head=True),
}


@pytest.mark.parametrize("case", list(PACK_CASES))
def test_pack_memory_reference_equals_the_fake_quantized_file(src, tmp_path, case):
    """The reference the gate's process holds in memory computes what the fake-quantized model written to a
    file computes (FakeQuantWeightsPass on a fully loaded model, saved by onnx; same kernels in ORT)."""
    import onnx

    from deploytool import onnx_io
    from deploytool.passes.pack_weights import FakeQuantWeightsPass, PackConfig, build_memory_reference
    from deploytool.runtime.infer import make_session

    cfg = PackConfig(**PACK_CASES[case])
    model = onnx_io.load_model(src, lazy=False)
    FakeQuantWeightsPass(cfg)(model)
    onnx.save(ir.serde.serialize_model(model), str(tmp_path / "fq.onnx"))
    feeds = V.gate_feeds(V.gate_plan(onnx_io.load_proto(src, load_external_data=False), src))
    (tmp_path / "ref").mkdir()
    got = V.reference_outputs(build_memory_reference(src, tmp_path / "ref", cfg), feeds)
    sess = make_session(tmp_path / "fq.onnx", session_config={"session.disable_prepacking": "1"}, optimize=False)
    names = [o.name for o in sess.get_outputs()]
    want = dict(zip(names, sess.run(names, {i.name: feeds[i.name] for i in sess.get_inputs()})))
    plain = V.reference_outputs(src, feeds)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert np.abs(got["last_hidden_state"] - plain["last_hidden_state"]).max() > 1e-2  # weights really replaced


@pytest.mark.parametrize("case", list(PACK_CASES))
def test_pack_passes_the_separate_gate_with_its_reference_in_memory(src, tmp_path, separate, case):
    from deploytool.passes import transform
    from deploytool.passes.pack_weights import PackConfig

    cfg = PackConfig(**PACK_CASES[case])
    res = transform(src, tmp_path / "p.onnx", cfg)
    g = res.gate
    assert g.verified is True and g.process == "separate" and g.reference_reused is True


@pytest.mark.parametrize("limits, reused", [((0, 10**12), True), ((10**12, 0), False), ((0, 0), None)],
                         ids=["under-the-memory-limit", "under-the-file-limit-only", "over-both"])
def test_pack_compares_in_the_gates_process_up_to_the_memory_reference_limit(src, tmp_path, separate, monkeypatch,
                                                                             limits, reused):
    """With the gate in its own process, pack compares with the reference built there in memory up to
    GATE_MEMORY_REFERENCE_MAX_BYTES, whatever the file reference's limit (True: the early reference reused);
    above it, with a reference file written after the pass up to GATE_REFERENCE_MAX_BYTES (False: compared, not
    reused); above both the output only has to load and run (None: nothing compared)."""
    from deploytool.passes import transform
    from deploytool.passes.pack_weights import PackConfig, PackWeightsPass

    monkeypatch.setattr(PackWeightsPass, "GATE_REFERENCE_MAX_BYTES", limits[0])
    monkeypatch.setattr(PackWeightsPass, "GATE_MEMORY_REFERENCE_MAX_BYTES", limits[1])
    res = transform(src, tmp_path / "p.onnx", PackConfig(weights="ternary"))
    g = res.gate
    assert g.verified is True and g.process == "separate"
    assert g.reference_reused is reused


@pytest.mark.parametrize("one_file", [True, False], ids=["one-data-file", "file-per-tensor"])
def test_pack_of_an_external_data_input_through_the_separate_gate(src, tmp_path, separate, one_file):
    """The fake-quantized reference read from an input whose weights lie in data files; the input's files stay
    as they were, the packed output equals the one packed from the self-contained file."""
    import hashlib

    import onnx

    from deploytool.passes import transform
    from deploytool.passes.pack_weights import PackConfig
    from deploytool.runtime.infer import run_onnx

    folder = tmp_path / "in"
    folder.mkdir()
    ext = folder / "model.onnx"
    onnx.save_model(onnx.load(str(src)), str(ext), save_as_external_data=True, all_tensors_to_one_file=one_file,
                    location="model.onnx.data", size_threshold=1024)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert len(digests) > 1
    cfg = PackConfig(weights="ternary", runtime="memory", accuracy_level=0)
    res = transform(ext, tmp_path / "a.onnx", cfg)
    assert res.gate.verified is True and res.gate.reference_reused is True
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()} == digests
    transform(src, tmp_path / "b.onnx", cfg)
    feeds = V.gate_feeds(V.gate_plan(onnx.load(str(src), load_external_data=False), src))
    got, want = run_onnx(tmp_path / "a.onnx", feeds), run_onnx(tmp_path / "b.onnx", feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_pack_of_a_fused_graph_through_the_separate_gate(tmp_path, separate):
    """ORT's fused BERT graph (EmbedLayerNormalization reads the word table, Attention a fused QKV weight):
    the in-memory reference runs its contrib ops without graph optimizations, and the exact scheme passes."""
    pytest.importorskip("optimum.exporters.onnx")
    pytest.importorskip("onnxruntime.transformers.optimizer")
    from deploytool.passes import transform
    from deploytool.passes.pack_weights import PackConfig
    from deploytool.testing import conformance as C

    case = C.MODEL_BY_NAME["distilbert"]
    fused = C.optimize(C.export(case, "optimum", tmp_path), 2, tmp_path / "distilbert-O2.onnx")
    for weights in ("ternary", "split-binary"):
        res = transform(fused, tmp_path / f"{weights}.onnx", PackConfig(weights=weights, runtime="memory",
                                                                        accuracy_level=0))
        assert res.gate.verified is True and res.gate.process == "separate" and res.gate.reference_reused is True


def test_worker_builds_the_memory_reference_again_for_other_feeds(src, tmp_path):
    """The worker drops the in-memory reference once it has run; a verify on other feeds builds it again
    (``reference_reused`` False) and gives the verdict of a reference run on those feeds; the same feeds reuse it."""
    import base64
    import json
    import pickle

    from deploytool.onnx_io import load_proto
    from deploytool.passes.pack_weights import PackConfig
    from deploytool.runtime._gate_worker import serve

    plan = V.gate_plan(load_proto(src, load_external_data=False), src)
    feeds = V.gate_feeds(plan)
    other = {k: v.copy() for k, v in feeds.items()}
    other["input_ids"][0, 0] = (other["input_ids"][0, 0] + 1) % plan.vocab
    cfg = PackConfig(weights="ternary", runtime="memory", accuracy_level=0)
    ref_msg = {"op": "reference", "feeds": V.encode_feeds(feeds), "build": "deploytool.passes.pack_weights:"
               "build_memory_reference", "src": str(src), "folder": str(tmp_path),
               "argument": base64.b64encode(pickle.dumps(cfg)).decode("ascii")}

    def ask(verify_feeds, model):
        lines = [json.dumps(ref_msg),
                 json.dumps({"op": "verify", "model": str(model), "feeds": V.encode_feeds(verify_feeds),
                             "reference": V.GateProcess.EARLY, "rtol": 1e-4, "min_cosine": None,
                             "reference_label": "the fake-quantized fp32 model's"})]
        answers = []
        serve(iter(lines), answers.append)
        return answers[0]

    same = ask(feeds, src)  # the input itself is not the fake-quantized model: refused, from the early outputs
    assert not same["ok"] and same["reference_reused"] is True and "differs from the fake-quantized" in same["error"]
    again = ask(other, src)
    assert not again["ok"] and again["reference_reused"] is False and "differs from the fake-quantized" in again["error"]
    from deploytool.passes import transform

    transform(src, tmp_path / "p.onnx", cfg, verify=False)
    ok = ask(other, tmp_path / "p.onnx")
    assert ok["ok"] and ok["reference_reused"] is False and ok["max_diff"] <= 1e-3


# ------------------------------------------------------------------------------ how the gate loads the output


def test_gate_view_maps_the_staged_file_and_checks_its_framing(src, tmp_path):
    """The gate loads a self-contained output through a skeleton whose weights lie in the staged file: the
    same outputs as the file itself; a skeleton that misplaces one tensor is refused before ORT runs."""
    import dataclasses

    import onnx

    from deploytool import onnx_io
    from deploytool.runtime.infer import run_onnx
    from deploytool.testing.tiny import fixed_inputs

    model = onnx_io.load_model(src)
    feeds = fixed_inputs()
    with onnx_io.staged_model(model, tmp_path / "out.onnx", inputs=(src,)) as staged:
        assert not staged.external and staged.offsets
        with base._gate_view(staged) as view:
            assert view != staged.path and view.parent == staged.path.parent
            skeleton = onnx.load(str(view), load_external_data=False)
            # no big weight inside: each lies in the staged file
            assert all(len(t.raw_data) <= 1024 for t in skeleton.graph.initializer)
            assert {t.name for t in skeleton.graph.initializer if t.external_data} == set(staged.offsets)
            got, want = run_onnx(view, feeds), run_onnx(staged.path, feeds)
            assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want)
        assert not view.exists()
        name = next(iter(staged.offsets))
        moved = dataclasses.replace(staged, offsets={**staged.offsets, name: staged.offsets[name] + 4})
        with pytest.raises(VerificationError, match=f"whose file does not hold its tensors where its graph says "
                                                    f"\\({name}\\)"):
            with base._gate_view(moved):
                pass
    assert not list(tmp_path.glob(".out.onnx*"))


def test_gate_session_options_skip_prepacking_for_float_weights_only():
    import onnx
    from onnx import TensorProto, helper

    def model(dtype):
        size = {TensorProto.FLOAT: 4, TensorProto.FLOAT16: 2}.get(dtype, 1)
        w = helper.make_tensor("w", dtype, [32, 32], bytes(32 * 32 * size), raw=True)
        return helper.make_model(helper.make_graph([], "g", [], [], initializer=[w]))

    assert base._gate_session_config(model(TensorProto.FLOAT)) == {"session.disable_prepacking": "1"}
    # fp16 weights: ORT casts them to fp32 at session creation and runs the fp32 kernels
    assert base._gate_session_config(model(TensorProto.FLOAT16)) == {"session.disable_prepacking": "1"}
    assert base._gate_session_config(model(TensorProto.INT8)) is None  # quantized kernels keep their path
    assert base._gate_session_config(onnx.ModelProto()) is None


def test_input_view_runs_like_the_input_and_leaves_it_alone(src, tmp_path):
    """The early reference loads the input through a skeleton in the gate's folder whose weights are the
    input's own bytes (a hard link): same outputs as the file; the input's bytes and mtime unchanged."""
    import hashlib

    from deploytool import onnx_io
    from deploytool.runtime.infer import run_onnx
    from deploytool.testing.tiny import fixed_inputs

    before = (hashlib.sha256(Path(src).read_bytes()).hexdigest(), Path(src).stat().st_mtime_ns)
    model = onnx_io.load_model(src)
    folder = tmp_path / "gate"
    folder.mkdir()
    view = base._input_view(onnx_io.skeleton_proto(model)[0], model, src, folder)
    assert view is not None and view[0].parent == folder
    got, want = run_onnx(view[0], fixed_inputs()), run_onnx(src, fixed_inputs())
    assert all(np.array_equal(got[k], want[k]) for k in want)
    assert (hashlib.sha256(Path(src).read_bytes()).hexdigest(), Path(src).stat().st_mtime_ns) == before


@pytest.mark.parametrize("arrived", [None, "unset", "set"])
def test_memory_reference_computes_one_tensor_at_a_time_until_the_output_arrives(tmp_path, monkeypatch, arrived):
    """In the gate's process (``verify.output_arrived``, an event) the in-memory reference computes its lazy
    tensors one at a time until the pass's output arrives, then on its pool's threads; elsewhere (None) on
    them at once. Small lazy tensors are held out of the graph file too: none is computed while the graph is
    serialized (each would be, in this thread, before the pool starts)."""
    import threading

    state = {"now": 0, "most": 0, "serialized": False}
    lock = threading.Lock()

    def slow(i: int, n: int):
        def compute() -> ir.Tensor:
            with lock:
                assert state["serialized"], "computed while the graph was serialized"
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
            time.sleep(0.05)
            with lock:
                state["now"] -= 1
            return ir.tensor(np.full(n, i, np.float32), name=f"w{i}")
        return ir.LazyTensor(compute, dtype=ir.DataType.FLOAT, shape=ir.Shape([n]), name=f"w{i}")

    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([1]))
    graph = ir.Graph([x], [], nodes=[], name="g", opset_imports={"": 17})
    ys = [x, x]
    for i in range(6):  # three big tensors, three small ones (under INLINE_BYTES), each in a chain of Adds
        n = 1024 if i < 3 else 4
        w = ir.Value(name=f"w{i}", const_value=slow(i, n), type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([n]))
        graph.register_initializer(w)
        node = ir.node("Add", [ys[i >= 3], w])
        graph.append(node)
        ys[i >= 3] = node.outputs[0]
    graph.outputs.extend(ys)
    model = ir.Model(graph, ir_version=10)
    event = None if arrived is None else threading.Event()
    if arrived == "set":
        event.set()
    monkeypatch.setattr(V, "output_arrived", event)
    from deploytool import onnx_io

    real = onnx_io.skeleton_proto

    def skeleton(m, **kw):
        out = real(m, **kw)
        state["serialized"] = True
        return out

    monkeypatch.setattr(onnx_io, "skeleton_proto", skeleton)
    ref = V.memory_reference(model, tmp_path, threads=2)
    assert sorted(ref.initializers) == [f"w{i}" for i in range(6)]
    assert state["most"] == (1 if arrived == "unset" else 2), state
    big, small = V.reference_outputs(ref, {"x": np.zeros(1, np.float32)}).values()
    np.testing.assert_array_equal(big, np.full(1024, 0 + 1 + 2, np.float32))
    np.testing.assert_array_equal(small, np.full(4, 3 + 4 + 5, np.float32))
