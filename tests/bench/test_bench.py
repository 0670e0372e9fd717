"""Benchmark runner: report fields, clean torch-free worker, interleaving, CLI, bad input."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from deploytool.bench import SCHEMA, BenchConfig, load_report, parse_seq_lens, run_benchmark, summarize, write_json
from deploytool.bench.inputs import DEFAULT_VOCAB, make_feeds, plan_inputs
from deploytool.bench.runner import _run_worker
from deploytool.cli import main
from deploytool.errors import ConfigError, InputFileError
from deploytool.runtime.session import SessionSpec
from deploytool.testing.bench_models import encoder_like, float_input_model

RUNS = 5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    return {
        "big": encoder_like(d / "big.onnx", vocab=70, hidden=96, layers=6),
        "small": encoder_like(d / "small.onnx", vocab=70, hidden=16, layers=1, token_type_ids=False),
        "noids": float_input_model(d / "noids.onnx"),
        "dir": d,
    }


@pytest.fixture(scope="module")
def pair_report(models):
    cfg = BenchConfig(models=[models["big"], models["small"]], seq_lens=(8, 32), warmup=2, runs=RUNS)
    events = []
    report = run_benchmark(cfg, progress=events.append)
    return report, events


# -- units ------------------------------------------------------------------------------------

def test_summarize_orders_percentiles():
    st = summarize([5.0, 1.0, 2.0, 3.0, 100.0])
    assert st.min_ms == 1.0 and st.max_ms == 100.0 and st.p50_ms == 3.0
    assert st.min_ms <= st.p50_ms <= st.p90_ms <= st.p99_ms <= st.max_ms
    assert st.std_ms == pytest.approx(np.std([5, 1, 2, 3, 100], ddof=1))


@pytest.mark.parametrize("text, expected", [("8,128", (8, 128)), (" 16 ", (16,)), ("8,8,4", (8, 4))])
def test_parse_seq_lens(text, expected):
    assert parse_seq_lens(text) == expected


@pytest.mark.parametrize("text, match", [("0", r"\[1, 65536\], got 0"), ("abc", "'abc' is not an integer"),
                                         ("", "comma-separated"), ("8,,2", "comma-separated")])
def test_parse_seq_lens_rejects(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_seq_lens(text)


@pytest.mark.parametrize("kwargs, match", [
    (dict(models=[]), "models: give at least one"), (dict(runs=0), "runs: must be"),
    (dict(batch=0), "batch: must be"), (dict(warmup=-1), "warmup: must be"), (dict(threads=0), "threads: must be"),
    (dict(spec="cpu"), "spec: expected a SessionSpec"), (dict(timeout_s=0), "timeout_s"),
])
def test_config_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BenchConfig(**{"models": ["m.onnx"], **kwargs})


def test_config_threads_and_spec():
    spec = SessionSpec(providers=["xnnpack", "cpu"], intra_op_threads=4)
    assert BenchConfig(models=["m.onnx"]).session_spec.intra_op_threads == 1
    assert BenchConfig(models=["m.onnx"], spec=spec).session_spec.intra_op_threads == 4  # a profile's threads
    over = BenchConfig(models=["m.onnx"], spec=spec, threads=2).session_spec
    assert over.intra_op_threads == 2 and over.providers == spec.providers


def test_plan_finds_vocab_and_makes_seeded_inputs(models, tmp_path):
    plan = plan_inputs(models["big"])
    assert (plan.vocab, plan.vocab_source) == (70, "word_embeddings.weight")
    assert [(s.name, s.kind) for s in plan.inputs] == [("input_ids", "ids"), ("attention_mask", "ones"),
                                                       ("token_type_ids", "zeros")]
    f = make_feeds(plan, 2, 64, seed=3)
    assert f["input_ids"].shape == (2, 64) and f["input_ids"].dtype == np.int64
    assert 0 <= f["input_ids"].min() and f["input_ids"].max() < 70
    assert (f["attention_mask"] == 1).all() and (f["token_type_ids"] == 0).all()
    np.testing.assert_array_equal(f["input_ids"], make_feeds(plan, 2, 64, seed=3)["input_ids"])
    assert not np.array_equal(f["input_ids"], make_feeds(plan, 2, 64, seed=4)["input_ids"])
    # without a findable embedding table the vocabulary falls back to 1000
    import onnx

    m = onnx.load(str(models["small"]))
    m.graph.node[0].op_type = "Identity"  # hide the Gather
    del m.graph.node[0].input[1]
    onnx.save(m, str(tmp_path / "hidden.onnx"))
    assert plan_inputs(tmp_path / "hidden.onnx").vocab == DEFAULT_VOCAB


def test_plan_of_a_real_export_finds_vocab(tiny_onnx):
    plan = plan_inputs(tiny_onnx("bert"))
    assert plan.vocab == 100 and plan.vocab_source != "default"


# -- the runner -------------------------------------------------------------------------------

def test_pair_report_fields(models, pair_report):
    report, events = pair_report
    assert [(r.name, r.seq_len) for r in report.results] == [("big", 8), ("small", 8), ("big", 32), ("small", 32)]
    for r in report.results:
        lat = r.latency
        assert lat.n == RUNS == len(r.samples_ms)
        assert 0 < lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.p99_ms <= lat.max_ms
        assert lat.mean_ms > 0 and lat.std_ms >= 0
        assert r.throughput_seq_per_s == pytest.approx(1000.0 / lat.mean_ms)
        assert r.peak_rss_bytes > 10 * 2**20 and r.session_create_ms > 0
        assert r.model_bytes == models[r.name].stat().st_size
        assert r.providers == ("CPUExecutionProvider",) and r.providers_skipped == ()
    firsts = [r for r in report.results if r.model_index == 0]
    assert all(r.ratio_to_first == 1.0 and r.paired_ratio_to_first == 1.0 for r in firsts)
    # the 6-layer hidden-96 model is slower than the 1-layer hidden-16 one at 32 tokens
    assert report.result(1, 32).ratio_to_first < 1.0
    assert report.worker["torch_loaded"] is False
    assert report.worker["interleaved"] is True and report.worker["processes"] == 3
    assert all(m["memory_measured_alone"] and m["memory"]["peak_rss_bytes"] > 0 for m in report.models)
    assert events and events[-1].completed == events[-1].total
    assert [e.completed for e in events] == sorted(e.completed for e in events)


def test_json_round_trip(pair_report, tmp_path):
    report, _ = pair_report
    out = write_json(report, tmp_path / "r.json")
    data = load_report(out)
    assert data["schema"] == SCHEMA
    assert data["config"]["runs"] == RUNS and data["config"]["session"]["providers"][0]["name"] == "cpu"
    assert data["host"]["onnxruntime"] == data["onnxruntime"]
    row = data["results"][0]
    assert set(row["latency_ms"]) == {"n", "mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"}
    assert {"ratio_to_first", "peak_rss_bytes", "model_bytes", "providers", "session_create_ms"} <= set(row)
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "other/9"}))
    with pytest.raises(InputFileError, match="schema 'other/9'"):
        load_report(tmp_path / "bad.json")


def test_single_real_export_and_skipped_provider(tiny_onnx):
    path = tiny_onnx("bert")
    cfg = BenchConfig(models=[path], seq_lens=(8,), warmup=1, runs=RUNS, spec=SessionSpec(providers=["xnnpack", "cpu"]))
    report = run_benchmark(cfg)
    r = report.results[0]
    assert r.ratio_to_first == 1.0 and r.providers == ("CPUExecutionProvider",)
    assert r.providers_skipped[0][0] == "XnnpackExecutionProvider"
    assert "not in this onnxruntime build" in r.providers_skipped[0][1]
    assert report.worker["processes"] == 1 and report.worker["torch_loaded"] is False
    assert "torch" in sys.modules  # the parent has torch (it exported); the worker did not


def test_worker_interleaves_run_by_run(models):
    entries = [{"path": str(models[k]), "plan": plan_inputs(models[k]).to_dict()} for k in ("big", "small")]
    req = {"models": entries, "seq_lens": [8], "batch": 1, "seed": 0, "warmup": 1, "runs": 4,
           "spec": SessionSpec().to_dict()}
    res = _run_worker(req, on_progress=lambda *a: None, timeout_s=60)
    a, b = res["started_ms"]["8"]
    order = sorted([(t, "A") for t in a] + [(t, "B") for t in b])
    assert "".join(x for _, x in order) == "AB" * 4
    assert res["torch_loaded"] is False


def test_worker_refuses_to_time_with_torch_loaded(monkeypatch):
    from deploytool.bench import worker

    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch") or object())
    with pytest.raises(RuntimeError, match="torch is loaded"):
        worker.run({}, None)


# -- CLI --------------------------------------------------------------------------------------

def _cli(*args):
    return CliRunner().invoke(main, ["bench", *map(str, args)])


def test_cli_table_and_json(models, tmp_path):
    out = tmp_path / "o.json"
    res = _cli(models["big"], models["small"], "--seq-len", "8", "--runs", RUNS, "--warmup", 1, "-o", out)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split()[:5] == ["model", "seq", "p50", "ms", "p90"]
    big = next(line for line in lines if line.startswith("big "))
    assert " 1.000 " in big and "CPU" in big
    data = json.loads(out.read_text())
    assert data["schema"] == SCHEMA and len(data["results"]) == 2


def _bad_inputs(d, models):
    (d / "junk.onnx").write_bytes(b"definitely not protobuf \xff\xfe")
    data = models["big"].read_bytes()
    (d / "trunc.onnx").write_bytes(data[: len(data) // 2])
    good = models["small"]
    return {
        "missing": ([d / "missing.onnx"], "missing.onnx: no such file"),
        "not onnx": ([d / "junk.onnx"], "junk.onnx: not a readable ONNX model"),
        "truncated": ([d / "trunc.onnx"], "trunc.onnx: not a readable ONNX model"),
        "no input_ids": ([models["noids"]], "model has no 'input_ids' input"),
        "seq-len 0": ([good, "--seq-len", "0"], "--seq-len: must be an integer in [1, 65536], got 0"),
        "seq-len abc": ([good, "--seq-len", "abc"], "--seq-len': 'abc' is not an integer"),
        "runs 0": ([good, "--runs", "0"], "runs: must be an integer in [1,"),
        "runs x": ([good, "--runs", "x"], "--runs': 'x' is not a valid integer"),
        "json over input": ([good, "-o", good], "output would overwrite the input"),
        "remote-setup alone": ([good, "--remote-setup"], "--remote-setup: only used with --remote"),
        "remote options alone": ([good, "--remote-parallel", "--ssh-option", "noequals", "--connect-timeout", "5"],
                                 "--ssh-option, --remote-parallel, --connect-timeout: only used with --remote"),
        "ssh-option no equals": ([good, "--remote", "me@device", "--ssh-option", "noequals"],
                                 "ssh option 'noequals': expected Key=Value"),
        # the option, not the config's field (it said 'wait_quiet_s: must be ...')
        "wait-quiet -1": ([good, "--wait-quiet", "-1"], "error: --wait-quiet: must be a number of seconds in [0, "),
        "wait-quiet nan": ([good, "--wait-quiet", "nan"], "error: --wait-quiet: expected a finite number"),
        # blocks' size with no blocks: it was ignored without a word
        "block-runs interleaved": ([models["big"], good, "--schedule", "interleaved", "--block-runs", "5"],
                                   "error: --block-runs: sizes the blocks of --schedule blocks; --schedule "
                                   "interleaved alternates run by run"),
    }


@pytest.mark.parametrize("case", ["missing", "not onnx", "truncated", "no input_ids", "seq-len 0", "seq-len abc",
                                  "runs 0", "runs x", "json over input", "remote-setup alone",
                                  "remote options alone", "ssh-option no equals", "wait-quiet -1", "wait-quiet nan",
                                  "block-runs interleaved"])
def test_cli_bad_input(models, tmp_path, case):
    args, message = _bad_inputs(tmp_path, models)[case]
    out = tmp_path / "out.json"
    before = models["small"].read_bytes()
    res = _cli(*args, *(["-o", out] if "-o" not in args else []))
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], res.stderr
    assert "Traceback" not in res.output
    assert not out.exists()
    assert models["small"].read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.json")]


@pytest.mark.parametrize("where", ["read-only-dir", "read-only-fs"])
def test_cli_refuses_an_unwritable_output_before_measuring(models, unwritable_folder, where, monkeypatch):
    """-o where no file can be written (a read-only folder, /proc; os.access says yes to root): one line, exit 2,
    before any measurement (it measured everything, then failed writing)."""
    import deploytool.bench as bench_pkg

    measured = []
    monkeypatch.setattr(bench_pkg, "run_benchmark", lambda *a, **k: measured.append(1))
    out = unwritable_folder(where) / "sub" / "b.json"
    res = _cli(models["small"], "--seq-len", "8", "--runs", RUNS, "-q", "-o", out)
    err = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(err) == 1 and err[0].startswith(f"error: {out}"), res.output
    assert not measured and not out.exists()


def test_inputs_named_otherwise_are_read_by_their_role(tiny_onnx, tmp_path):
    """An encoder exported with inputs ids/mask/segments: the passes ran it (their gate fed all-zero ids and mask,
    a batch on which a head mix-up cannot show), bench, fit, bundle and verify-arm64 refused it ("bench expects a
    Transformer encoder"). Each input is read by what it indexes: the word table (ids), a small table (token
    types: zeros), none (the mask: ones), and the model is benchmarked."""
    import onnx

    from deploytool.runtime.inputs import make_feeds, plan_inputs
    from deploytool.runtime.verify import gate_plan

    m = onnx.load(str(tiny_onnx("bert", exporter="torch")))
    rename = {"input_ids": "ids", "attention_mask": "mask", "token_type_ids": "segments"}
    for i in m.graph.input:
        i.name = rename.get(i.name, i.name)
    for n in m.graph.node:
        n.input[:] = [rename.get(x, x) for x in n.input]
    src = tmp_path / "renamed.onnx"
    onnx.save(m, str(src))
    plan = plan_inputs(src)
    kinds = {s.name: s.kind for s in plan.inputs}
    assert kinds == {"ids": "ids", "mask": "ones", "segments": "zeros"} and plan.vocab == 100, (kinds, plan)
    feeds = make_feeds(plan, 2, 8, 0)
    assert feeds["ids"].max() > 0 and feeds["mask"].min() == 1
    gate = {s.name: s.kind for s in gate_plan(m, src).inputs}
    assert gate["ids"] == "ids" and gate["mask"] == "ones"
    out = tmp_path / "b.json"
    r = _cli(str(src), "--seq-len", "8", "--runs", "2", "--warmup", "0", "-o", str(out))
    assert r.exit_code == 0, r.output


def test_a_length_past_the_position_table_is_refused_before_any_worker(tiny_onnx, tmp_path):
    """bench --seq-len 200 on a model with 128 positions: one line naming the file and the table, as verify-arm64
    and bundle say it (inspection.check_position_table; it failed with ONNX Runtime's broadcast error in the
    embeddings' Add); also through the library and the segment worker, at any of the lengths asked for."""
    from deploytool.bench.runner import SegmentWorker

    model = tiny_onnx("bert", max_pos=128)
    out = tmp_path / "out.json"
    res = _cli(str(model), "--seq-len", "8,200", "--runs", "2", "-o", str(out))
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert err == [f"error: {model}: --seq-len 200 is longer than the model's position table (128 positions); use a "
                   "sequence length <= 128"], res.stderr
    assert "broadcast" not in res.output and not out.exists()
    cfg = BenchConfig(models=(model,), seq_lens=(200,), runs=2, warmup=1)
    with pytest.raises(ConfigError, match=r"--seq-len 200 is longer than the model's position table \(128 positions"):
        run_benchmark(cfg)
    with pytest.raises(ConfigError, match=r"--seq-len 200 is longer than the model's position table"):
        SegmentWorker(cfg)
    assert run_benchmark(BenchConfig(models=(model,), seq_lens=(128,), runs=2, warmup=1)).results  # at its length


def test_a_roberta_model_is_refused_past_its_usable_positions(tiny_onnx, tmp_path):
    """tiny RoBERTa with 66 position rows runs 64 tokens (ids start at padding_idx + 1 = 2): --seq-len 65 passed the
    check and failed in ONNX Runtime's position Gather; now one line naming the usable length, and 64 runs."""
    model = tiny_onnx("roberta", max_pos=64)
    out = tmp_path / "out.json"
    res = _cli(str(model), "--seq-len", "65", "--runs", "2", "--warmup", "0", "-o", str(out))
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines() == [
        f"error: {model}: --seq-len 65 is longer than the model's position table (64 positions: 66 rows, "
        "RoBERTa-style ids start at padding_idx + 1 = 2); use a sequence length <= 64"], res.stderr
    assert not out.exists()
    res = _cli(str(model), "--seq-len", "64", "--runs", "2", "--warmup", "0", "-o", str(out))
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("remote", [[], ["--remote", "pi@raspberrypi"]])
def test_output_dash_is_refused_pointing_at_json(models, tmp_path, monkeypatch, remote):
    """-o - (stdout, by the usual convention) wrote a file named '-' in the current folder after measuring; now one
    line pointing at --json, exit 2, before any measurement or ssh."""
    import deploytool.bench as bench_pkg
    import deploytool.remote as remote_pkg

    measured = []
    monkeypatch.setattr(bench_pkg, "run_benchmark", lambda *a, **k: measured.append(1))
    monkeypatch.setattr(remote_pkg, "bench_remote", lambda *a, **k: measured.append(1) or [])
    monkeypatch.chdir(tmp_path)
    res = _cli(models["small"], "--seq-len", "8", "--runs", RUNS, "-q", "-o", "-", *remote)
    err = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(err) == 1 and err[0].startswith("error: -o -:") and "--json" in err[0], res.output
    assert not measured and not list(tmp_path.iterdir())


def test_a_hard_link_to_a_model_given_beside_it_is_the_same_model(models, tmp_path, monkeypatch):
    """bench m.onnx hard.onnx (hard.onnx a hard link to m.onnx: cp -l, a deduplicated cache) benchmarked one file twice
    as two models with a ratio between them; a symlink was refused, and -o onto a hard link of an input is refused.
    Now 'given twice (as ...)' for bench and verify-arm64, before any worker or emulator."""
    import os

    import deploytool.arm64

    src = tmp_path / "m.onnx"
    src.write_bytes(models["small"].read_bytes())
    hard = tmp_path / "hard.onnx"
    os.link(src, hard)
    with pytest.raises(ConfigError, match=rf"models: {hard} given twice \(as {src}\)"):
        BenchConfig(models=(src, hard), seq_lens=(8,))
    monkeypatch.setattr(deploytool.arm64, "verify_arm64", lambda config: pytest.fail("ran"))
    from deploytool.arm64 import VerifyConfig

    with pytest.raises(ConfigError, match=rf"models: {hard} given twice \(as {src}\)"):
        VerifyConfig(models=(src, hard), cpus=("max",))
    copy = tmp_path / "copy.onnx"  # a copy is another file: two models, as before
    copy.write_bytes(src.read_bytes())
    assert len(BenchConfig(models=(src, copy), seq_lens=(8,)).models) == 2
