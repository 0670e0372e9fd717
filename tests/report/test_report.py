"""deploytool report: real bench JSON of DynaBERT slices in two precisions -> JSON, Markdown, HTML;
the HTML rendered in headless Chromium shows the table and both plots."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploytool.cli import main

PROFILES = ("x86-host", "kirin990", "raspberry-pi-4")


@pytest.fixture(scope="module")
def bench_json(tiny_onnx, tmp_path_factory):
    """Bench JSON (seq 8 and 16) of a tiny BERT at widths 1 and 0.5, depths 1 and 0.5, fp32 and int8,
    plus an accuracy file for them."""
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file
    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file

    d = tmp_path_factory.mktemp("report_in")
    src = tiny_onnx("bert", layers=2, hidden=64, heads=4, ffn=256)
    models, acc = [], {}
    for w, dep, a in ((1.0, 1.0, 90.0), (0.5, 1.0, 87.0), (1.0, 0.5, 85.5)):
        fp = d / f"w{w:g}_d{dep:g}_fp32.onnx"
        if (w, dep) == (1.0, 1.0):
            shutil.copy(src, fp)
        else:
            slice_file(src, fp, SliceConfig(width=w, depth=dep))
        q = d / f"w{w:g}_d{dep:g}_int8.onnx"
        quantize_int8_file(fp, q, Int8Config())
        models += [fp, q]
        acc[fp.stem], acc[q.stem] = a, a - 0.4
    report = run_benchmark(BenchConfig(models=tuple(models), seq_lens=(8, 16), runs=5, warmup=1))
    out = d / "bench.json"
    write_json(report, out)
    (d / "acc.json").write_text(json.dumps({"models": acc}))
    return out, d / "acc.json", models


@pytest.fixture(scope="module")
def report_dir(bench_json, tmp_path_factory):
    bench, acc, _ = bench_json
    out = tmp_path_factory.mktemp("report_out") / "report"
    args = ["report", str(bench), "-o", str(out), "--accuracy", str(acc)] + sum((["--profile", p] for p in PROFILES), [])
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return out


def test_report_without_a_profile_is_for_this_machine_by_its_name(bench_json, tmp_path):
    """The default profile is `host` (it was `x86-host`, the old name the README keeps for recipes)."""
    bench, _, _ = bench_json
    r = CliRunner().invoke(main, ["report", str(bench), "-o", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert {row["device"] for row in data["rows"]} == {"host"}


def test_report_json_rows(report_dir, bench_json):
    data = json.loads((report_dir / "report.json").read_text())
    rows = data["rows"]
    assert len(rows) == 6 * 2 * len(PROFILES)  # models x seq lens x devices
    assert {r["device"] for r in rows} == set(PROFILES)
    for r in rows:
        assert r["ep_ran"] == "CPU" and r["p50_ms"] > 0 and r["p90_ms"] >= r["p50_ms"]
        assert r["precision"] in ("fp32", "int8") and r["accuracy"] is not None
        assert r["projected_ms"] and r["projected_ms"] > 0
        assert r["budget_pass"] in (True, False) and r["budget_why"]
        if r["device"] == "x86-host":
            assert r["device_latency_source"] == "measured p90" and r["cost_model_error"] is not None
        else:
            assert r["device_latency_source"] == "projected" and r["cost_model_error"] is None
    kirin = [r for r in rows if r["device"] == "kirin990"]
    assert all(r["ep_requested"] == "XNNPACK" and "XnnpackExecutionProvider" in r["ep_note"] for r in kirin)
    # DynaBERT slices: smaller width -> fewer params, lower projected latency on the same device
    full = next(r for r in kirin if r["model"] == "w1_d1_fp32" and r["seq_len"] == 16)
    half = next(r for r in kirin if r["model"] == "w0.5_d1_fp32" and r["seq_len"] == 16)
    assert half["params"] < full["params"] and half["projected_ms"] < full["projected_ms"]
    assert half["arch"] == "L2 H2 F128" and full["arch"] == "L2 H4 F256"
    # the Pi 4 (A72, 57.6 GFLOP/s) is projected slower than the Kirin 990 (4x A76)
    pi = next(r for r in rows if r["device"] == "raspberry-pi-4" and r["model"] == "w1_d1_fp32" and r["seq_len"] == 16)
    assert pi["projected_ms"] > full["projected_ms"]
    assert data["cost_model_host_errors"] and data["schema"] == "deploytool.report/1"
    # fields added for the grouped report (the old ones above are unchanged)
    assert half["variant"] == "w0.5-d1" and half["width"] == 0.5 and half["depth"] == 1.0
    assert all(isinstance(r["budget_failed"], list) for r in rows)
    assert all((r["budget_failed"] == []) == (r["budget_pass"] is True) for r in rows)
    summary = {s["device"]: s for s in data["summary"]}
    assert set(summary) == set(PROFILES)
    for s in summary.values():  # all six variants fit these budgets: the most accurate one wins
        assert s["fits"] and s["model"] == "w1_d1_fp32" and s["accuracy"] == 90.0 and s["fitting"] == 6
    assert summary["kirin990"]["latency"] == "projected" and summary["x86-host"]["latency"] == "measured"
    assert data["runs"][0]["onnxruntime"] and data["runs"][0]["created_utc"]
    assert data["devices"]["kirin990"]["ep_preference"][0] == "XNNPACK"


def test_report_markdown_and_html(report_dir):
    md = (report_dir / "report.md").read_text()
    # summary first, then plots, then one section + table per device, then notes
    order = [md.index(h) for h in ("## Summary", "## Plots", "## x86-host:", "## kirin990: HiSilicon Kirin 990",
                                   "## raspberry-pi-4:", "## Notes")]
    assert order == sorted(order)
    assert "| device | best fit | precision | accuracy % | device p90 ms |" in md
    assert "| x86-host | **w1_d1_fp32** | fp32 | 90.0% |" in md and "(projected)" in md
    assert "onnxruntime" in md and "Device latency is PROJECTED" in md
    kirin = md[md.index("## kirin990:"):md.index("## raspberry-pi-4:")]
    assert "- **Execution provider**: asked for XNNPACK, ran CPU (fell back)" in kirin
    assert "| model | precision | width / depth |" in kirin and "device p90 ms (PROJECTED) @16" in kirin
    assert kirin.count("| w") == 6 and "| w0.5_d1_int8 | int8 | 0.5 / 1 |" in kirin
    # the per-row repetition is gone: SoC and EP are in the header, not on the rows
    assert not any("HiSilicon" in ln or "XNNPACK" in ln for ln in kirin.splitlines() if ln.startswith("| w"))
    assert "![latency_accuracy](latency_accuracy.png)" in md
    assert (report_dir / "latency_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    html = (report_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and html.count("<table class='device-table'") == 3
    assert "id='summary-table'" in html
    assert "src=\"http" not in html and "<link" not in html  # self-contained


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.browser
def test_report_html_renders_in_headless_chromium(report_dir):
    exe = _chromium()
    if exe is None:
        pytest.skip("headless Chromium is not installed (scripts/test.sh installs Debian's chromium when apt is there)")
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                           "--dump-dom", (report_dir / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-500:]
    assert 'data-plots="2"' in dom and 'data-device-tables="3"' in dom  # counted by the page's own script
    assert dom.count('data-rendered="yes"') == 2  # both PNG plots decoded with a real size
    # reading order: summary, plots, one section per device, notes
    order = [dom.index(x) for x in ('id="summary"', 'id="plots"', 'id="device-x86-host"', 'id="device-kirin990"',
                                    'id="device-raspberry-pi-4"', 'id="notes"')]
    assert order == sorted(order)
    summary = dom[order[0]:order[1]]
    assert summary.count('<tr class="fits"') == len(PROFILES) and "<b>w1_d1_fp32</b>" in summary
    assert "Device latency is PROJECTED" in dom[:order[0]] and "onnxruntime" in dom[:order[0]]
    for i, dev in enumerate(PROFILES):
        sec = dom[order[2 + i]:order[3 + i]]
        assert sec.count('<table class="device-table"') == 1 and f'data-device="{dev}"' in sec
        assert sec.count('<tr class="row') == 6  # one row per variant, both lengths side by side
        assert "seq 8" in sec and "seq 16" in sec and sec.count('class="row best"') == 1
        assert ("PROJECTED" in sec) == (dev != "x86-host")
    kirin = dom[order[3]:order[4]]
    assert kirin.count("XnnpackExecutionProvider") == 1  # the EP fallback is stated once, in the header
    assert "PASS" in dom


def _err_line(r) -> str:
    err = r.stderr if hasattr(r, "stderr") else r.output
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such bench results file"),
    ("profile", "unknown device profile 'kirin99'"),
    ("accuracy", "accuracy of 'x' must be a non-negative number"),
    ("schema", "bench"),
    ("accuracy-mix", "mixes fractions (<= 1: w1_d1_fp32) and percents (> 1: w1_d1_int8)"),
    ("accuracy-over-100", "accuracy of 'w1_d1_int8' must be a percent in [0, 100]"),
    ("accuracy-unmatched", "--accuracy: none of the 2 model name(s) (bert, tern) matches a benchmarked model"),
    # no unit and nothing to tell 0.8 % from 80 %: refused, not guessed from the size
    ("accuracy-ambiguous", "accuracy of 'w1_d1_fp32' is 0.8 with no unit: 0.8 % or 80 %?"),
    # one model under two names (its file name and its stem) with two values: one was taken silently
    ("accuracy-twice", "--accuracy: w1_d1_int8 is given 2 different accuracies: 'w1_d1_int8.onnx' 80.0% in "
                       "acc.json, 'w1_d1_int8' 70.0% in acc.json"),
])
def test_report_bad_input(bench_json, tmp_path, case, expected):
    bench, _, _ = bench_json
    out = tmp_path / "rep"
    args = ["report", str(bench), "-o", str(out)]
    if case == "missing":
        args[1] = str(tmp_path / "nope.json")
    elif case == "profile":
        args += ["--profile", "kirin99"]
    elif case == "accuracy":
        bad = tmp_path / "acc.json"
        bad.write_text(json.dumps({"models": {"x": -3}}))
        args += ["--accuracy", str(bad)]
    elif case.startswith("accuracy-"):
        models = {"accuracy-mix": {"w1_d1_fp32": 0.8, "w1_d1_int8": 1.7},
                  "accuracy-over-100": {"w1_d1_fp32": 80, "w1_d1_int8": 170},
                  "accuracy-unmatched": {"bert": 80, "tern": 70},
                  "accuracy-ambiguous": {"w1_d1_fp32": 0.8, "w1_d1_int8": 0.7},
                  "accuracy-twice": {"w1_d1_fp32": 85, "w1_d1_int8.onnx": 80, "w1_d1_int8": 70}}[case]
        bad = tmp_path / "acc.json"
        bad.write_text(json.dumps({"models": models}))
        args += ["--accuracy", str(bad)]
    elif case == "schema":
        bad = tmp_path / "b.json"
        bad.write_text(json.dumps({"schema": "something/9", "results": []}))
        args[1] = str(bad)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and expected in _err_line(r)
    assert not out.exists()


def _set(path: str, value):
    def edit(d):
        *keys, last = path.split(".")
        for k in keys:
            d = d[int(k)] if isinstance(d, list) else d[k]
        if value is _DEL:
            del d[last]
        else:
            d[last] = value
    return edit


_DEL = object()


@pytest.mark.parametrize("edit, field", [
    (_set("host", None), "host must be an object"),
    (_set("results.0.latency_ms", _DEL), "results[0].latency_ms must be present"),
    (_set("results.0.latency_ms", None), "results[0].latency_ms must be an object"),
    (_set("results.0.latency_ms.p50_ms", "fast"), "results[0].latency_ms.p50_ms must be a finite number > 0"),
    (_set("results.0.latency_ms.p50_ms", float("nan")), "results[0].latency_ms.p50_ms must be a finite number > 0"),
    (_set("results.0.latency_ms.p90_ms", -1.0), "results[0].latency_ms.p90_ms must be a finite number > 0"),
    (_set("results.0.seq_len", "eight"), "results[0].seq_len must be an integer >= 1"),
    (lambda d: d["results"][0]["latency_ms"].update(p50_ms=0, p90_ms=0), "results[0].latency_ms.p50_ms"),
    (_set("results", []), "results must be a non-empty list"),
    (_set("results.0.model_index", 99), "results[0].model_index must be an index into models"),
    (_set("models", _DEL), "models must be present"),
    (_set("config.threads", 0), "config.threads must be an integer >= 1"),
    # fields the check let through and the report then crashed on (internal error, exit 1)
    (_set("results.0.providers", [5]), "results[0].providers[0] must be a provider name"),
    (_set("results.0.providers", [{"a": 1}]), "results[0].providers[0] must be a provider name"),
    (_set("models.1.variant", "w0.5"), "models[1].variant must be an object or null"),
    (_set("models.1.variant", {"width": "abc", "depth": None}), "models[1].variant.width must be a number in (0, 1]"),
    (lambda d: (d.setdefault("worker", {}).update(interleaved=True), d["results"][0].update(samples_ms=["a", None])),
     "results[0].samples_ms[0] must be a finite number of milliseconds >= 0"),
    # a p90 below its own p50 is no measurement (the table showed p90 0.00 and PASS)
    (lambda d: d["results"][0]["latency_ms"].update(p50_ms=5.0, p90_ms=0.001),
     "results[0].latency_ms.p90_ms must be at least p50_ms (5.0)"),
])
def test_report_refuses_a_corrupt_bench_file(bench_json, tmp_path, edit, field):
    """A bench JSON that parses but has a malformed field: one line naming the file and the field, exit 2,
    nothing written (it crashed with an internal error, or rendered an empty or wrong table)."""
    bench, _, _ = bench_json
    data = json.loads(bench.read_text())
    edit(data)
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps(data))
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["report", str(bad), "-o", str(out)])
    assert r.exit_code == 2 and f"{bad}: corrupt bench result: {field}" in _err_line(r), r.output
    assert not out.exists()


def test_report_takes_device_rows_beside_bench_results(bench_json, tmp_path):
    """Rows from another measurement (``deploytool qnn``: the Snapdragon NPU, emulated) join the table."""
    from deploytool.report import ReportConfig, build_report

    bench, _, models = bench_json
    qnn = tmp_path / "qnn_rows.json"
    qnn.write_text(json.dumps({"kind": "deploytool.device_rows", "version": 1, "rows": [{
        "device": "snapdragon-sm8650", "soc": "SM8650", "model": models[0].name, "model_path": str(models[0]),
        "precision": "u16/u8", "seq_len": 16, "ep_requested": "QNNExecutionProvider",
        "ep_ran": "QNNExecutionProvider (HTP v75, EMULATED)", "p50_ms": None, "p90_ms": None, "size_mb": 0.3,
        "device_latency_ms": None, "device_latency_source": "n/a: EMULATED", "qnn_coverage": "120/120"}]}))
    res = build_report(ReportConfig(results=(bench, qnn), out_dir=tmp_path / "r", profiles=("snapdragon-sm8650",),
                                    project=False))
    npu = [r for r in res.rows if r.ep_ran.startswith("QNN")]
    assert len(npu) == 1 and npu[0].p50_ms is None and npu[0].device == "snapdragon-sm8650"
    # no latency (emulated): the latency budget is not judged, so the row is not PASS on its size alone
    assert npu[0].budget_pass is None and npu[0].latency_unjudged
    assert "not judged" in npu[0].budget_why and "size 0.3 MB <= 50 MB" in npu[0].budget_why
    assert "QNN (HTP v75, EMULATED)" in (tmp_path / "r" / "report.html").read_text()
    assert len(res.rows) == 1 + 6 * 2


@pytest.mark.parametrize("exact", [False, True])
def test_int8_note_follows_the_benchmark_hosts_kernel(bench_json, tmp_path, exact):
    """The bench JSON records whether its host's u8 x s8 kernel is exact (host.int8_u8s8_exact, probed);
    int8 files with int8 weight codes benchmarked on a saturating host get a note naming them, else none."""
    bench, acc, _ = bench_json
    data = json.loads(bench.read_text())
    assert isinstance(data["host"]["int8_u8s8_exact"], bool)  # the probe ran on the benchmark host
    data["host"]["int8_u8s8_exact"] = exact
    (tmp_path / "b.json").write_text(json.dumps(data))
    r = CliRunner().invoke(main, ["report", str(tmp_path / "b.json"), "-o", str(tmp_path / "r"), "--accuracy", str(acc),
                                  "--profile", "kirin990"])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "r" / "report.md").read_text()
    notes = [ln for ln in md.splitlines() if ln.startswith("- int8:")]
    if exact:
        assert notes == []
    else:
        assert len(notes) == 1 and "saturating int16" in notes[0] and "--weights uint8" in notes[0]
        assert "w1_d1_int8.onnx" in notes[0] and "fp32.onnx" not in notes[0]


def test_report_weighs_a_phones_model_ort(tiny_onnx, tmp_path):
    """On a profile with a mobile EP (what deploytool bundle targets: a phone) each row's size is that of the
    model.ort the bundle would ship, converted by the report: a binary-packed file's .ort holds its weights as
    int8, several times the file; a fp32 file's is about its own size; on the other profiles the file counts."""
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.passes.pack_weights import PackConfig, pack_file

    src = tiny_onnx("bert", layers=1, hidden=128, heads=4, ffn=512, vocab=100)
    packed = tmp_path / "binary.onnx"
    pack_file(src, packed, PackConfig(weights="binary"))
    fp32 = tmp_path / "fp32.onnx"
    shutil.copy(src, fp32)
    write_json(run_benchmark(BenchConfig(models=(fp32, packed), seq_lens=(8,), runs=3, warmup=1)), tmp_path / "b.json")
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["report", str(tmp_path / "b.json"), "-o", str(out), "--profile", "kirin990",
                                  "--profile", "graviton3"])
    assert r.exit_code == 0, r.output
    rows = {(x["device"], x["model"]): x for x in json.loads((out / "report.json").read_text())["rows"]}
    phone, server = rows[("kirin990", "binary")], rows[("graviton3", "binary")]  # graviton3: no mobile EP
    file_mb = packed.stat().st_size / 1e6
    assert server["size_of"] == "file" and abs(server["size_mb"] - file_mb) < 1e-3  # (rows round to 3 places)
    assert phone["size_of"] == "model.ort" and phone["size_mb"] > 1.5 * file_mb, (phone["size_mb"], file_mb)
    assert "(model.ort)" in phone["budget_why"]
    plain = rows[("kirin990", "fp32")]
    assert plain["size_of"] == "model.ort" and 0.8 < plain["size_mb"] / (fp32.stat().st_size / 1e6) < 1.2
    # the tables say which size they show: the phone's the .ort's, the server's the file's
    md = (out / "report.md").read_text()
    phone_md, server_md = md.split("## kirin990")[1].split("## ")[0], md.split("## graviton3")[1].split("## ")[0]
    assert "| size MB (.ort) |" in phone_md and "| size MB |" in server_md and ".ort" not in server_md
    html = (out / "report.html").read_text()
    phone_html = html.split("id='device-kirin990'")[1].split("id='device-")[0]
    server_html = html.split("id='device-graviton3'")[1].split("id='device-")[0]
    assert ">size MB (.ort)</th>" in phone_html and ">size MB</th>" in server_html and ".ort" not in server_html


@pytest.mark.parametrize("where", ["read-only-dir", "read-only-fs"])
def test_report_refuses_an_unwritable_output_folder(bench_json, unwritable_folder, where):
    """-o in a folder that cannot be written: one line, exit 2, before any work (it was an internal error)."""
    bench, _, _ = bench_json
    out = unwritable_folder(where) / "deploytool-report"
    r = CliRunner().invoke(main, ["report", str(bench), "-o", str(out)])
    line = _err_line(r)
    assert r.exit_code == 2 and str(out) in line and "writ" in line, r.output
    assert not out.exists()


def test_report_warns_of_accuracy_names_that_match_no_model(bench_json, tmp_path):
    """Accuracy for a model that was not benchmarked is named on stderr (it was silently dropped)."""
    bench, _, _ = bench_json
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps({"models": {"w1_d1_fp32": 90.0, "w9_d9_fp32": 70.0}}))
    r = CliRunner().invoke(main, ["report", str(bench), "-o", str(tmp_path / "r"), "--accuracy", str(acc),
                                  "--profile", "kirin990"])
    assert r.exit_code == 0, r.output
    assert "warning: --accuracy: 1 model name(s) match no benchmarked model and are not shown: w9_d9_fp32" in r.stderr
    assert json.loads((tmp_path / "r" / "report.json").read_text())["accuracy_unmatched"] == ["w9_d9_fp32"]


def test_a_report_that_fails_to_render_leaves_the_folder_as_it_was(bench_json, tmp_path, monkeypatch):
    """Every file is rendered before the first is written: a failure in the last one (the HTML) used to leave a
    new report.json and plots beside the previous run's report.md and report.html."""
    import deploytool.report.build as build
    from deploytool.report import ReportConfig, build_report

    bench = bench_json[0]
    out = tmp_path / "r"
    build_report(ReportConfig(results=(bench,), out_dir=out, profiles=("kirin990",)))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(build, "render_html", broken)
    with pytest.raises(RuntimeError, match="renderer bug"):
        build_report(ReportConfig(results=(bench,), out_dir=out, profiles=("kirin990", "raspberry-pi-4")))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_report_refuses_a_length_longer_than_the_models_positions(bench_json, tmp_path):
    """A result at a sequence length the model file cannot take (the file replaced after the bench): one line
    naming the field, exit 2 (ONNX Runtime failed inside the projection: an internal error)."""
    bench, _, _ = bench_json
    data = json.loads(bench.read_text())
    data["results"][0]["seq_len"] = 1000
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps(data))
    r = CliRunner().invoke(main, ["report", str(bad), "-o", str(tmp_path / "rep"), "--profile", "kirin990"])
    line = _err_line(r)
    assert r.exit_code == 2 and "results[0].seq_len 1000 is longer than the position table" in line, r.output
    assert not (tmp_path / "rep").exists()


def _relative_bench(bench, folder, *, recorded: bool = False):
    """The bench JSON rewritten with model paths relative to ``folder`` (where it is written), as `bench`
    writes them when run there; ``recorded``: keep the absolute path the bench recorded per model."""
    import os

    data = json.loads(bench.read_text())
    for res in data["results"]:
        res["model"] = os.path.relpath(res["model"], folder)
    for m in data["models"]:
        m["path"] = os.path.relpath(m["path"], folder)
        if not recorded:
            m["session"]["model"] = "/nonexistent/" + Path(m["path"]).name
    out = folder / "rel-bench.json"
    out.write_text(json.dumps(data))
    return out


def test_report_finds_models_beside_the_bench_json(bench_json, tmp_path, monkeypatch):
    """Relative model paths in a bench JSON are read from the JSON's own folder, not from wherever the report
    runs (from another folder every precision was 'unknown', nothing was projected and every row read PASS)."""
    bench, _, _ = bench_json
    rel = _relative_bench(bench, bench.parent)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["report", str(rel), "-o", "r", "--profile", "kirin990"])
    assert r.exit_code == 0, r.output
    assert "warning" not in r.stderr, r.stderr
    rows = json.loads((tmp_path / "r" / "report.json").read_text())["rows"]
    assert {x["precision"] for x in rows} == {"fp32", "int8"}
    assert all(x["device_latency_source"] == "projected" and x["budget_pass"] in (True, False) for x in rows)


def test_a_row_without_latency_is_never_pass_nor_the_best_fit(bench_json, tmp_path, monkeypatch):
    """No device latency (model files not found from the bench JSON, or --no-projection): the latency budget is
    'not judged', never PASS; no variant is starred as the best fit; one warning line says why."""
    bench, _, models = bench_json
    lone = tmp_path / "lone"
    lone.mkdir()
    rel = _relative_bench(bench, bench.parent)
    (lone / "b.json").write_text(rel.read_text())  # the JSON moved away from its models
    monkeypatch.chdir(lone)
    for args, why in ((["b.json"], "model file(s) named in the bench JSON not found (w1_d1_fp32.onnx"),
                      ([str(bench), "--no-projection"], "--no-projection given")):
        out = tmp_path / f"r{len(args)}"
        r = CliRunner().invoke(main, ["report", *args, "-o", str(out), "--profile", "kirin990"])
        assert r.exit_code == 0, r.output
        warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
        assert len(warnings) == 1 and "no device latency for kirin990 (12 rows)" in warnings[0], r.stderr
        assert why in warnings[0] and "not judged" in warnings[0]
        rep = json.loads((out / "report.json").read_text())
        assert all(x["budget_pass"] is not True and x["latency_unjudged"] for x in rep["rows"])
        (summary,) = rep["summary"]
        assert not summary["fits"] and "model" not in summary and summary["verdict"].startswith("none judged")
        md = (out / "report.md").read_text()
        assert "PASS" not in md and "★" not in md and "not judged" in md
        assert "0 within budget, 12 not judged: no latency" in r.output
