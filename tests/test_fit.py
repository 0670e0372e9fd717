"""deploytool fit: one best width/precision of a tiny BERT for a profile's budget, and why."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.errors import ConfigError
from deploytool.fit import FitConfig
from deploytool.profiles import load_profile

GRID = ["--widths", "1,0.5", "--depths", "1", "--precisions", "fp32,int8", "--runs", "3", "--seq-len", "16"]


@pytest.fixture(scope="module")
def model(tiny_onnx):
    return tiny_onnx("bert", layers=2, hidden=64, heads=4, ffn=256)


def _run(*args):
    return CliRunner().invoke(main, ["fit", *map(str, args)])


@pytest.fixture(scope="module")
def proxy_fit(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    out = d / "best.onnx"
    r = _run(model, "--profile", "kirin990", "-o", out, *GRID, "--keep-candidates", d / "cands")
    assert r.exit_code == 0, r.output
    return out, json.loads((d / "best.onnx.fit.json").read_text()), r.output


def test_fit_without_accuracy_ranks_by_the_stated_proxy(proxy_fit, model):
    out, why, text = proxy_fit
    assert out.is_file()
    assert len(why["candidates"]) == 4 and why["profile"] == "kirin990" and why["seq_len"] == 16
    assert why["ranking"].startswith("proxy: kept-parameter fraction")
    # a tiny model fits Kirin 990's 20 ms budget at every candidate: full width, and fp32 before int8
    assert why["chosen"] == "w1-d1-fp32"  # the variant labels of reports and recipes
    assert "accuracy PROXY" in text and "kept-parameter fraction" in text
    full = next(c for c in why["candidates"] if c["name"] == "w1-d1-fp32")
    half = next(c for c in why["candidates"] if c["name"] == "w0.5-d1-fp32")
    assert full["latency_source"] == "projected" and full["projected_ms"] > 0
    assert half["param_fraction"] < full["param_fraction"] == pytest.approx(1.0)
    # the pick is the input itself: a plain copy, and fit says so
    assert out.read_bytes() == model.read_bytes()
    assert "the pick is the input model itself" in text and "plain copy" in text
    # every built candidate names itself in its metadata, the way the report reads it
    from deploytool.variant import file_variant

    v = file_variant(out.parent / "cands" / "w0.5-d1-int8.onnx")
    assert (v.width, v.depth, v.precision, v.label) == (0.5, 1.0, "int8", "w0.5-d1-int8")
    assert v.chain == ("slice(w=0.5,d=1)", "int8")
    # --keep-candidates keeps every candidate, the input's own w1-d1-fp32 too (it was left out)
    cands = out.parent / "cands"
    assert {p.stem for p in cands.glob("*.onnx")} == {c["name"] for c in why["candidates"]}
    assert (cands / "w1-d1-fp32.onnx").read_bytes() == model.read_bytes() and full["path"].endswith("w1-d1-fp32.onnx")


@pytest.mark.slow  # 32 s in a full run
def test_fit_with_accuracies_and_a_tight_budget(model, proxy_fit, tmp_path):
    _, why, _ = proxy_fit
    lat = {c["name"]: c["device_p90_ms"] for c in why["candidates"]}  # projections: deterministic
    order = sorted(lat, key=lat.get)
    acc = tmp_path / "acc.json"
    # accuracies: the slowest candidate is the most accurate; two tie for second place
    accs = {order[-1]: 91.0, order[0]: 90.0, order[1]: 90.0, order[2]: 80.0}
    acc.write_text(json.dumps({"models": accs}))
    out = tmp_path / "a.onnx"
    r = _run(model, "--profile", "kirin990", "-o", out, "--budget-ms", "1000", "--accuracy", acc, *GRID)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "a.onnx.fit.json").read_text())["chosen"] == order[-1]  # largest accuracy
    # a budget only the two fastest meet: equal accuracy -> the lower latency wins
    budget = (lat[order[1]] + lat[order[2]]) / 2
    out = tmp_path / "b.onnx"
    r = _run(model, "--profile", "kirin990", "-o", out, "--budget-ms", f"{budget:.6f}", "--accuracy", acc, *GRID)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "b.onnx.fit.json").read_text())
    assert res["chosen"] == order[0] and res["ranking"] == "accuracy"
    rejected = next(c for c in res["candidates"] if c["name"] == order[-1])
    assert not rejected["fits"] and f"> {budget:g} ms" in rejected["reasons"][0]
    # a floor above what fits: nothing qualifies -> one-line error, no output
    out2 = tmp_path / "c.onnx"
    r = _run(model, "--profile", "kirin990", "-o", out2, "--budget-ms", f"{budget:.6f}", "--accuracy", acc,
             "--accuracy-floor", "90.5", *GRID)
    assert r.exit_code == 2 and "none of 4 candidates meets kirin990's budget" in _err_line(r)
    assert not out2.exists()


def _err_line(r) -> str:
    err = r.stderr if hasattr(r, "stderr") else r.output
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("args, expected", [
    (["--profile", "kirin99"], "unknown device profile 'kirin99' (did you mean 'kirin990'?)"),
    (["--profile", "kirin990", "--budget-ms", "-5"], "--budget-ms: must be a positive number"),
    # the option, not the config's field (they said 'accuracy_floor needs ...', 'accuracy_floor (--accuracy-floor): ...')
    (["--profile", "kirin990", "--accuracy-floor", "80"], "error: --accuracy-floor: needs measured accuracies"),
    (["--profile", "kirin990", "--accuracy-floor", "0.9"], "error: --accuracy-floor: 0.9 is ambiguous, 0.9 % or 90 %?"),
    (["--profile", "kirin990", "--precisions", "fp32,int3"], "precisions: unknown 'int3'"),
    (["--profile", "kirin990", "--widths", "1,1.5"], "widths: 1.5 out of range"),
    (["--profile", "kirin990", "--seq-len", "512"], "profile 'kirin990' has no p90 latency budget for seq 512"),
    # the option the user typed, alone (it said 'workdir (--keep-candidates): ... must be a folder, and it is an
    # existing file': a config field beside the option)
    (["--profile", "kirin990", "--keep-candidates", "{model}"],
     "error: --keep-candidates: {model} is a file, not a folder"),
    (["--profile", "kirin990", "--keep-candidates", "{model}/c"],
     "error: --keep-candidates: {model}/c cannot be a folder: {model} is a file, not a folder"),
    # the output's own path (or a folder inside it): every candidate was made and kept there, then the output
    # found a folder where its file goes
    (["--profile", "kirin990", "--keep-candidates", "{out}"], "error: --keep-candidates: {out} is the output "),
    (["--profile", "kirin990", "--keep-candidates", "{out}/c"], "or a folder inside it"),
    # 0 is not negative: the message names the range (it said "non-negative integer (runs >= 1)")
    (["--profile", "kirin990", "--runs", "0"], "--runs: must be an integer in [1, 100000], got 0"),
])
def test_fit_bad_input(model, tmp_path, args, expected):
    out = tmp_path / "o.onnx"
    r = _run(model, "-o", out, *(a.format(model=model, out=out) for a in args))
    assert r.exit_code == 2 and expected.format(model=model, out=out) in _err_line(r)
    assert not out.exists()


def test_fit_output_path_named_like_an_option_is_left_alone(model, tmp_path, monkeypatch):
    """An output path error leads with the user's path; a path spelled like a field ('output') keeps its name
    (the CLI puts options in place of config fields, --keep-candidates for workdir, never in place of a path)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "output").mkdir()
    r = _run(model, "--profile", "kirin990", "-o", "output")
    assert r.exit_code == 2 and _err_line(r) == "error: output: is a directory, expected a file path"


def test_fit_config_defaults_to_the_profiles_budget(model, tmp_path):
    cfg = FitConfig(model=model, profile=load_profile("raspberry-pi-4"), output=tmp_path / "x.onnx")
    assert cfg.seq_len == 128 and cfg.budget == 250
    with pytest.raises(ConfigError, match="depths"):
        FitConfig(model=model, profile=load_profile("raspberry-pi-4"), output=tmp_path / "x.onnx", depths=())


def test_same_speed_is_the_paired_sign_test_of_the_host_runs():
    """Accuracy-tied candidates measured on the host tie on speed unless one is slower in significantly many of
    their paired runs (exact sign test restated: 15 of 20 one way has p = 0.041, 14 of 20 p = 0.115)."""
    from deploytool.fit import Candidate, _same_speed

    def cand(name, samples):
        return Candidate(name=name, width=1.0, depth=1.0, precision="int8", path="", host_samples_ms=tuple(samples))

    fast = cand("a", [10.0] * 20)
    assert _same_speed(cand("b", [10.5] * 15 + [9.5] * 5), fast) is None  # slower in 15 of 20: significant
    why = _same_speed(cand("b", [10.5] * 14 + [9.5] * 6), fast)
    assert why is not None and "14 of 20" in why and "p = 0.12" in why
    assert _same_speed(cand("b", [11.0] * 5), cand("a", [10.0] * 5)) is None  # 5 runs cannot show anything
    assert "host_samples_ms" not in cand("b", [1.0]).to_dict()


def test_a_candidate_faster_in_the_paired_runs_is_picked_whatever_its_p90():
    """fit's pick among accuracy-tied candidates measured on the host: "a" is faster in 18 of 20 paired runs, but
    two slow runs give it the higher p90; it is the faster one (it lost to "b" on the p90 before), and it is
    picked though "b" is smaller. Projected candidates are ranked by their projections, never by host runs."""
    from deploytool.accuracy import AccuracyRecord, pick
    from deploytool.fit import Candidate, _faster, _same_speed

    def cand(name, samples, size, source="measured p90"):
        return Candidate(name=name, width=1.0, depth=1.0, precision="int8", path="", size_mb=size,
                         host_samples_ms=tuple(samples), device_p90_ms=float(np.percentile(samples, 90)),
                         latency_source=source)

    a, b = cand("a", [1.0] * 18 + [9.0] * 2, 20.0), cand("b", [1.1] * 20, 18.0)
    assert a.device_p90_ms > b.device_p90_ms
    why = _faster(a, b)
    assert why is not None and "a faster in 18 of 20 paired runs" in why
    assert _faster(b, a) is None and _same_speed(a, b) is None and _same_speed(b, a) is None
    acc = AccuracyRecord.from_correct(np.r_[np.ones(400), np.zeros(100)], np.arange(500))
    pk = pick([b, a], record=lambda c: acc, cost=lambda c: (c.device_p90_ms, c.size_mb), name=lambda c: c.name,
              same_speed=lambda x, y: _same_speed(x, y), then=lambda c: (c.size_mb, c.name), faster=_faster)
    assert pk.chosen is a and "a is faster than b" in pk.note
    pa, pb = cand("a", a.host_samples_ms, 20.0, "projected"), cand("b", b.host_samples_ms, 18.0, "projected")
    assert _faster(pa, pb) is None


def test_same_speed_of_projections_is_the_cost_models_resolution():
    """On a projected device, two candidates tie on speed when their projections are closer than the spread of
    the host errors of their precisions' candidates, doubled; with fewer than two such errors, never."""
    from deploytool.fit import Candidate, _same_speed

    def cand(name, ms, precision="int8"):
        return Candidate(name=name, width=1.0, depth=1.0, precision=precision, path="", device_p90_ms=ms,
                         latency_source="projected")

    errs = {"int8": [-0.1, 0.0], "fp32": [0.3]}  # int8: 11.1% apart, doubled 23.5%
    why = _same_speed(cand("b", 3.60), cand("a", 3.59), errs, 128)
    assert why is not None and "b projected 3.6 ms against 3.59 ms" in why and "(23%: the spread" in why
    assert "on 2 int8 rows of these candidates measured on this host at seq 128, doubled" in why
    assert _same_speed(cand("b", 4.5), cand("a", 3.6), errs) is None  # 25% apart
    assert _same_speed(cand("b", 3.60), cand("a", 3.59), {"int8": [-0.1]}) is None  # one error: no spread
    # an fp32 and an int8 candidate: both precisions' errors, 1.3 / 0.9 = 44% apart, doubled 109%
    assert _same_speed(cand("b", 7.0, "fp32"), cand("a", 3.6), errs) is not None
    # a measured candidate is never compared by projection
    measured = Candidate(name="m", width=1.0, depth=1.0, precision="int8", path="", device_p90_ms=3.6,
                         latency_source="measured p90")
    assert _same_speed(measured, cand("a", 3.6), errs) is None


def test_fit_accuracy_keys_and_floor_are_checked_before_any_work(model, tmp_path):
    """--help showed the key format w0.75_d1_int8, which matches no candidate (w0.75-d1-int8): fit then blamed the
    budget after building and measuring everything. --accuracy-floor 0.95 was read as 0.95 % and filtered nothing.
    Both are one-line errors now, before any candidate is built."""
    r = CliRunner().invoke(main, ["fit", "--help"])
    assert "w0.75-d1-int8" in r.output and "w0.75_d1_int8" not in r.output
    underscores = tmp_path / "acc_us.json"
    underscores.write_text(json.dumps({"models": {"w1_d1_fp32": 90, "w1_d1_int8": 89, "w0.5_d1_fp32": 80,
                                                  "w0.5_d1_int8": 79}}))
    keep = tmp_path / "cands"
    out = tmp_path / "o.onnx"
    r = _run(model, "--profile", "kirin990", "-o", out, "--accuracy", underscores, "--accuracy-floor", "85",
             "--keep-candidates", keep, *GRID)
    line = _err_line(r)
    assert r.exit_code == 2 and "--accuracy: none of its names (w1_d1_fp32, w1_d1_int8, w0.5_d1_fp32, w0.5_d1_int8)" \
        in line and "w1-d1-fp32" in line and "budget" not in line, line
    assert not out.exists() and not any(keep.glob("*.onnx"))
    dashes = tmp_path / "acc.json"
    dashes.write_text(json.dumps({"models": {"w1-d1-fp32": 90, "w1-d1-int8": 89.5, "w0.5-d1-fp32": 80,
                                             "w0.5-d1-int8": 79}}))
    r = _run(model, "--profile", "kirin990", "-o", out, "--accuracy", dashes, "--accuracy-floor", "0.95", *GRID)
    line = _err_line(r)
    assert r.exit_code == 2 and "--accuracy-floor" in line and "0.95 % or 95 %?" in line and "give 95" in line
    assert not out.exists()


def test_fit_names_a_missing_external_data_file(model, tmp_path):
    """A model whose external-data file is gone: the one line bench and inspect give (it was an internal
    FileNotFoundError, exit 1)."""
    import onnx

    ext = tmp_path / "m.onnx"
    onnx.save_model(onnx.load(str(model)), str(ext), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.data", size_threshold=0)
    (tmp_path / "m.data").unlink()
    out = tmp_path / "o.onnx"
    r = _run(ext, "--profile", "kirin990", "-o", out, *GRID)
    assert r.exit_code == 2 and "external data file 'm.data' not found beside the model" in _err_line(r)
    assert not out.exists()


@pytest.mark.parametrize("make", ["int8", "ternary"])
def test_fit_refuses_an_already_quantized_input(model, tmp_path, make):
    """An int8 or packed input: its width-1 depth-1 candidate was the file as is, labelled fp32 and picked as
    fp32 (nothing else could be built); refused in one line, nothing written."""
    from deploytool.passes.pack_weights import PackConfig, pack_file
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

    q = tmp_path / f"{make}.onnx"
    if make == "int8":
        quantize_int8_file(model, q, Int8Config())
    else:
        pack_file(model, q, PackConfig(weights="ternary"))
    out = tmp_path / "o.onnx"
    r = _run(q, "--profile", "x86-host", "-o", out, *GRID)
    assert r.exit_code == 2, r.output
    assert f"is already {make}; fit builds its width, depth and precision variants from the fp32" in _err_line(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == [q.name]


def test_fit_of_a_sliced_input_names_candidates_as_their_files_do(model, tmp_path):
    """An input that is itself a slice (w0.5): its candidates were named relative to it (w1, w0.5) while their
    files' variant records said w0.5 and w0.25 of the original model; one label everywhere now."""
    import onnx

    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file
    from deploytool.variant import read_variant

    sliced = tmp_path / "s.onnx"
    slice_file(model, sliced, SliceConfig(width=0.5, depth=1.0))
    out, keep = tmp_path / "best.onnx", tmp_path / "cands"
    r = _run(sliced, "--profile", "x86-host", "-o", out, "--widths", "1,0.5", "--depths", "1", "--precisions", "fp32",
             "--runs", "3", "--seq-len", "16", "--keep-candidates", keep)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "best.onnx.fit.json").read_text())
    names = sorted(c["name"] for c in report["candidates"])
    assert names == ["w0.25-d1-fp32", "w0.5-d1-fp32"], names
    for f in keep.glob("*.onnx"):
        meta = {p.key: p.value for p in onnx.load(str(f), load_external_data=False).metadata_props}
        assert read_variant(meta).label == f.stem, f
    chosen = read_variant({p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props})
    assert chosen.label == report["chosen"]


def test_fit_that_nothing_meets_names_the_accuracy_floor(model, tmp_path):
    """Only the full model has an accuracy, below the floor: the error named the fastest candidate's want of an
    accuracy figure, not the floor that no candidate reaches."""
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps({"unit": "percent", "models": {"w1-d1-fp32": 90.0}}))
    out = tmp_path / "f.onnx"
    r = _run(model, "--profile", "kirin990", "-o", out, "--budget-ms", "1000", "--accuracy", acc,
             "--accuracy-floor", "95", *GRID)
    line = _err_line(r)
    assert r.exit_code == 2 and "none of 4 candidates meets kirin990's budget and the accuracy floor (95 %) at seq 16" in line
    assert line.endswith("; most accurate: w1-d1-fp32, accuracy 90.00 < floor 95)"), line
    assert not out.exists()


def test_fit_of_an_input_with_external_data_writes_a_model_that_loads_elsewhere(model, tmp_path):
    """The pick is the input itself, whose weights are in an external-data file: fit copied the .onnx alone,
    which named the input's data file and failed to load from any other folder."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    ext = tmp_path / "in" / "m.onnx"
    ext.parent.mkdir()
    onnx.save_model(onnx.load(str(model)), str(ext), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.data", size_threshold=0)
    before = {p.name: p.read_bytes() for p in ext.parent.iterdir()}
    out = tmp_path / "out" / "best.onnx"
    out.parent.mkdir()
    r = _run(ext, "--profile", "kirin990", "-o", out, "--budget-ms", "1000", *GRID)
    assert r.exit_code == 0, r.output
    assert json.loads((out.parent / "best.onnx.fit.json").read_text())["chosen"] == "w1-d1-fp32"
    assert {p.name: p.read_bytes() for p in ext.parent.iterdir()} == before  # the input untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["best.onnx", "best.onnx.data", "best.onnx.fit.json"]
    feeds = {i.name: np.ones((1, 8), dtype=np.int64) for i in ort.InferenceSession(str(model)).get_inputs()}
    want = ort.InferenceSession(str(model)).run(None, feeds)
    got = ort.InferenceSession(str(out)).run(None, feeds)  # loads from its own folder, with its own data
    np.testing.assert_array_equal(got[0], want[0])
