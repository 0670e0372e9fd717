"""The README's measured figures are rendered from benchmarks/results/*.json and cannot drift."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _renderer():
    spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "benchmarks" / "readme_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_figures_match_the_results_files():
    text = README.read_text()
    rendered = _renderer().render_readme(text)
    if rendered != text:
        diff = [f"README: {a!r}\nrender: {b!r}" for a, b in zip(text.splitlines(), rendered.splitlines()) if a != b]
        raise AssertionError("README figures differ from benchmarks/results (run benchmarks/readme_figures.py):\n"
                             + "\n".join(diff[:5]))


def test_blocks_are_marked_in_the_readme():
    text = README.read_text()
    for name in ("quickstart", "conformance", "embedding", "training-table", "tws", "measured", "performance", "pack-load",
                 "performance-reading", "cost-model", "hygiene", "pass-speed", "training-setup", "training-notes",
                 "fit-runtime", "published-devices", "big-models"):
        assert text.count(f"<!-- figures:{name} -->") == 1 and text.count(f"<!-- /figures:{name} -->") == 1, name


def test_a_changed_results_file_changes_the_readme(tmp_path):
    """The int8 figures come from int8_bench.json: new ratios there give new text (and a failing check)."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    p = results / "int8_bench.json"
    d = json.loads(p.read_text())
    n = len(d["latency_rounds"])
    assert n >= 2, "the test needs two rounds or more"
    for rnd, value in zip(d["latency_rounds"], [0.5 + 0.1 * i / (n - 1) for i in range(n)]):
        for row in rnd:
            if row["variant"] == "ours" and row["seq_len"] == 8:
                row["paired_ratio_to_optimum"] = value
    p.write_text(json.dumps(d))
    text = README.read_text()
    mod = _renderer()
    new = mod.render_readme(text, results)
    assert new != text
    assert "0.50-0.60 of optimum's latency at sequence 8" in " ".join(new.split())
    assert "0.50-0.60 of optimum's latency at sequence 8" not in " ".join(text.split())


def test_cited_results_files_exist():
    cited = set(re.findall(r"benchmarks/results/([\w./{},-]+?\.(?:json|md))", README.read_text()))
    assert cited
    for name in cited:
        if "{" in name:
            continue
        assert (ROOT / "benchmarks" / "results" / name).exists(), name


def test_a_fresh_training_run_changes_the_training_prose(tmp_path):
    """The Training section's prose comes from train_bench_standard.json: a run that trained every stage
    itself is timed against the schedule's goal, and the teacher's per-epoch dev accuracy is the file's."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    p = results / "train_bench_standard.json"
    d = json.loads(p.read_text())
    d["reused_stages"] = []
    d["total_seconds"] = 3456.0
    d["machine"] = "Some CPU, x86_64, 2 logical CPUs, load avg 0.4 at start, 2.1 at end"
    for e, acc in zip(d["teacher"]["train"]["per_epoch"], [70.0, 71.5, 72.3]):
        e["dev_accuracy"] = acc
    p.write_text(json.dumps(d))
    text = README.read_text()
    new = " ".join(_renderer().render_readme(text, results).split())
    assert "dev 70.0, 71.5, 72.3% after each: still improving" in new
    assert ("the whole run took 57.6 min wall-clock (3,456 s, load average 0.4 at the start and 2.1 at the end): "
            "within the schedule's 60-minute goal") in new
    d["total_seconds"] = 3700.0
    p.write_text(json.dumps(d))
    new = " ".join(_renderer().render_readme(text, results).split())
    assert "took 61.7 min wall-clock (3,700 s, load average 0.4 at the start and 2.1 at the end): over the" in new


# ------------------------------------------------------------------ every figure says when, on what, under what load
#
# A results file the README renders from records its CPU, date and load average: in the ``run`` block that
# benchmarks/_stamp.py writes, or, for a file not re-run since the block exists, in the keys its script used
# then (OLD_KEYS: dotted paths; None where that file never recorded the fact). A file that gains a run block
# must leave OLD_KEYS, so the list only shrinks.
OLD_KEYS = {
    "train_bench_standard.json": {"cpu": "machine", "date": "date", "load": "machine"},  # one string: CPU and load
    "big_models_xlmr_rerun.json": {"cpu": "host.cpu_model", "date": "created_utc", "load": "load_average_at_end"},
    "cost_model_error_interleaved.json": {"cpu": "host.model_name", "date": "created_utc", "load": "load_average_end"},
    "bench_hygiene_run2.json": {"cpu": "host.cpu_model", "date": "created_utc", "load": "load_average_end"},
}
# rendered files whose machine, date and load another file of the same run records
CARRIED_BY = {"quickstart/run.json": "quickstart/meta.json"}
# rendered files no benchmark of the sitting rewrites: earlier side runs the README quotes beside the main one
NOT_IN_SITTING = {"big_models_xlmr_rerun.json", "cost_model_error_interleaved.json", "bench_hygiene_run2.json",
                  # pass_speed_ab: a change against its base revision, not a sitting's figure
                  "pass_speed_ab.json", "pass_speed_ab_int8_probes.json",
                  "pass_speed_ab_gc_pause.json", "pass_speed_ab_binary_signs.json", "pass_speed_ab_input_skeleton.json",
                  "pass_speed_ab_pair_lookup.json", "pass_speed_ab_reference_unpaced.json",
                  "pass_speed_ab_packed_loader.json", "pass_speed_ab_upgrade_shortcut.json",
                  "pass_speed_ab_session_changes.json", "pass_speed_ab_kernels.json",
                  "pass_speed_ab_forked_gate.json", "pass_speed_ab_zen4_since_757de1c.json",
                  # pass_speed on a kind of CPU the sitting's file was not measured on (its own paragraph)
                  "pass_speed_emerald_rapids.json",
                  # pack_bench reduced to 2-bit against int8, on a kind of CPU the sitting's file was not measured on
                  "pack_bench_nbits_zen3.json", "pack_bench_nbits_zen4.json",
                  # int8_bench reduced to the default, pairsafe and uint8 codes, likewise
                  "int8_bench_zen3.json", "int8_bench_zen4.json", "int8_bench_emerald_rapids.json"}
RESULTS = ROOT / "benchmarks" / "results"


def _rendered_files() -> set[str]:
    """The results JSON files named in the renderers' source (readme_figures.py and perf_table.py)."""
    names = set()
    for src in ("readme_figures.py", "perf_table.py"):
        names |= set(re.findall(r"[\"']([\w/]+\.json)[\"']", (ROOT / "benchmarks" / src).read_text()))
    return names


def _at(d, path: str):
    for key in path.split("."):
        d = d[int(key)] if isinstance(d, list) else d.get(key)
        if d is None:
            return None
    return d


def _bench_module(name: str):
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import _stamp from beside them
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_the_renderers_read_the_files_this_test_knows():
    rendered = _rendered_files()
    assert {"int8_bench.json", "pack_bench.json", "quickstart/meta.json"} <= rendered  # the scan works
    assert rendered == set(OLD_KEYS) | set(CARRIED_BY) | {n for n in rendered if "run" in json.loads((RESULTS / n).read_text())}


def test_every_rendered_results_file_records_cpu_date_and_load():
    missing, stale = [], []
    for name in sorted(_rendered_files() - set(CARRIED_BY)):
        d = json.loads((RESULTS / name).read_text())
        run = d.get("run")
        if run is not None:
            if name in OLD_KEYS:
                stale.append(f"{name} has a run block now: remove it from OLD_KEYS")
            facts = {"cpu": (run.get("cpu") or {}).get("model_name"), "date": run.get("started_utc"),
                     "load": run.get("load_average_start"), "load at end": run.get("load_average_end"),
                     "wall": run.get("wall_s"), "commit": (run.get("code") or {}).get("commit", "absent")}
            missing += [f"{name}: run.{k} missing" for k, v in facts.items() if v is None]
            if isinstance(facts["date"], str):
                assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d", facts["date"]), (name, facts["date"])
            continue
        assert name in OLD_KEYS, f"{name}: no run block and not in OLD_KEYS"
        for fact, path in OLD_KEYS[name].items():
            if path is not None and _at(d, path) in (None, "", []):
                missing.append(f"{name}: OLD_KEYS says {fact} is at {path}, but it is not")
    assert not stale and not missing, "\n".join(stale + missing)


def test_the_sitting_rewrites_every_rendered_file_but_the_listed_side_runs():
    sitting = _bench_module("sitting")
    written = {o for b in sitting.select(None, None) for o in b.outputs}
    rendered = _rendered_files()
    assert rendered - NOT_IN_SITTING <= written, sorted(rendered - NOT_IN_SITTING - written)
    assert NOT_IN_SITTING <= rendered  # a side run the README no longer reads leaves this list


# ------------------------------------------------------------------ benchmarks/_stamp.py and benchmarks/sitting.py

def test_stamp_start_and_end(monkeypatch):
    monkeypatch.setenv("DEPLOYTOOL_SITTING", "s-42")
    stamp = _bench_module("_stamp").stamp
    start = stamp(argv=["bench.py", "--x", "1"])
    before = dict(start)
    time.sleep(0.3)
    run = stamp(start)
    assert start == before  # the start block is not modified
    assert run["sitting"] == "s-42" and run["command"][1:] == ["bench.py", "--x", "1"]
    assert run["started_utc"] <= run["finished_utc"] and run["wall_s"] >= 0.3
    assert len(run["load_average_start"]) == 3 and len(run["load_average_end"]) == 3
    assert run["cpu"]["model_name"] and run["cores"]["usable"] >= 1 and run["versions"]["python"].count(".") == 2
    assert re.fullmatch(r"[0-9a-f]{40}", run["code"]["commit"]) and isinstance(run["code"]["dirty"], bool)
    assert "_t0" not in run and json.loads(json.dumps(run)) == run
    with pytest.raises(ValueError, match="stamp\\(started\\)"):
        stamp({"started_utc": "x"})


def test_stamp_reads_free_page_reporting(tmp_path, monkeypatch):
    """The guest's free page reporting parameters as the kernel lists them, and how much memory was handed
    back to the host during the run; nothing where the kernel has none."""
    mod = _bench_module("_stamp")
    folder = tmp_path / "parameters"
    folder.mkdir()
    for name, text in {"page_reporting_order": "9\n", "min_free_ms": "0\n", "free_bitmap_enable": "Y\n",
                       "reported_kib": "1000\n"}.items():
        (folder / name).write_text(text)
    monkeypatch.setattr(mod, "PAGE_REPORTING", folder)
    start = mod.stamp(argv=["b.py"])
    assert start["page_reporting"] == {"free_bitmap_enable": True, "min_free_ms": 0, "page_reporting_order": 9,
                                       "reported_kib": 1000}
    (folder / "reported_kib").write_text("5096\n")
    assert mod.stamp(start)["page_reporting_kib_during_run"] == 4096
    assert mod._page_reporting(tmp_path / "none") is None


_FAKE = """import json, sys, time
sys.path.insert(0, {bench!r})
from _stamp import stamp
run = stamp()
out, code = sys.argv[sys.argv.index("-o") + 1], int(sys.argv[sys.argv.index("--exit") + 1])
print("fake benchmark working", flush=True)
time.sleep(0.2)
if code == 0:
    check = {{"comparable": True, "why_not": None, "regressed": ["pack: 10.1x -> 12.4x the copy"], "improved": []}}
    open(out, "w").write(json.dumps({{"figure": 1.5, "run": stamp(run), "regression_check": check}}))
sys.exit(code)
"""


def _fake_sitting(tmp_path, sitting, **kw):
    (tmp_path / "fake.py").write_text(_FAKE.format(bench=str(ROOT / "benchmarks")))
    benches = (sitting.Bench("fast", "fake.py", ("-o", "{results}/fast.json", "--exit", "0"), ("fast.json",)),
               sitting.Bench("broken", "fake.py", ("-o", "{results}/broken.json", "--exit", "3"), ("broken.json",)))
    (tmp_path / "results").mkdir()
    return sitting.SittingConfig(benches=benches, results=tmp_path / "results", script_dir=tmp_path,
                                 log_dir=tmp_path / "logs", sitting_id="test-sitting", render=False, **kw)


def test_a_sitting_runs_each_benchmark_in_its_own_process_and_records_it(tmp_path):
    sitting = _bench_module("sitting")
    rc = sitting.run_sitting(_fake_sitting(tmp_path, sitting, force=True))
    assert rc == 1  # one benchmark failed
    rec = json.loads((tmp_path / "results" / "sitting.json").read_text())
    assert rec["sitting"] == "test-sitting" and rec["plan"] == ["fast", "broken"] and rec["finished_utc"]
    fast, broken = rec["benchmarks"]
    assert (fast["name"], fast["exit_code"], broken["exit_code"]) == ("fast", 0, 3)
    assert fast["wall_s"] >= 0.2 and len(fast["load_before"]) == 3 and len(fast["load_after"]) == 3
    assert fast["rewritten"] == {"fast.json": True} and fast["run_block_of_this_sitting"] is True
    assert fast["regression_check"]["regressed"] == ["pack: 10.1x -> 12.4x the copy"]  # the run's own check
    assert "regression_check" not in broken
    assert broken["rewritten"] == {"broken.json": False} and broken["run_block_of_this_sitting"] is False
    result = json.loads((tmp_path / "results" / "fast.json").read_text())
    assert result["figure"] == 1.5 and result["run"]["sitting"] == "test-sitting"
    assert result["run"]["command"][-2:] == ["--exit", "0"]
    assert "fake benchmark working" in (tmp_path / "logs" / "broken.log").read_text()  # output to the log


def test_a_busy_machine_makes_the_sitting_wait_or_refuse(tmp_path, monkeypatch):
    sitting = _bench_module("sitting")
    monkeypatch.setattr(sitting, "_load", lambda: [3.5, 3.0, 2.0])
    cfg = _fake_sitting(tmp_path, sitting, max_load=1.0, wait_s=0.3, poll_s=0.05)
    assert sitting.run_sitting(cfg) == 2
    rec = json.loads((tmp_path / "results" / "sitting.json").read_text())
    assert [(r["name"], r["exit_code"]) for r in rec["benchmarks"]] == [("fast", None), ("broken", None)]
    assert "3.50 stayed above 1" in rec["benchmarks"][0]["not_run"]
    assert not (tmp_path / "results" / "fast.json").exists()

    loads = iter([[2.0, 1, 1], [1.5, 1, 1]] + [[0.4, 1, 1]] * 20)  # quiet after two polls
    monkeypatch.setattr(sitting, "_load", lambda: next(loads))
    cfg = sitting.dataclasses.replace(cfg, wait_s=30.0, benches=cfg.benches[:1])
    assert sitting.run_sitting(cfg) == 0
    row = json.loads((tmp_path / "results" / "sitting.json").read_text())["benchmarks"][0]
    assert row["exit_code"] == 0 and row["waited_s"] >= 0.1 and row["load_before"][0] == 0.4


def test_sitting_command_line_errors_are_one_line(capsys):
    sitting = _bench_module("sitting")
    assert sitting.main(["--only", "nope", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sitting: --only: unknown benchmark(s) nope; known: export_bench") and "\n" not in err
    assert sitting.main(["--only", "int8_bench,export_bench", "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert "export_bench" in out and "<--classifier missing>" in out  # the plan comes first
    assert err.strip() == ("sitting: int8_bench needs --classifier DIR (a MiniLM classifier fine-tuned on rotten-tomatoes, "
                           "e.g. runs/quickstart-final/steps/train-finetune-01f78e9750dc/model); give it or --skip int8_bench")
    assert sitting.main(["--only", "distill_bench", "--teacher", "/nonexistent/teacher", "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == "sitting: distill_bench: --teacher /nonexistent/teacher is not a folder"
    assert sitting.main(["--skip", ",".join(b.name for b in sitting.BENCHMARKS if b.readme), "--dry-run"]) == 2
    assert "plan is empty" in capsys.readouterr().err


def test_the_plan_and_its_last_wall_times(tmp_path, capsys):
    sitting = _bench_module("sitting")
    assert [b.name for b in sitting.select("structure_bench,export_bench", None)] == ["export_bench", "structure_bench"]
    plan = sitting.select(None, "train_bench,big_models")
    assert "train_bench" not in [b.name for b in plan] and all(b.readme for b in plan)
    res = tmp_path / "results"
    res.mkdir()
    (res / "export_bench.json").write_text(json.dumps({"run": {"wall_s": 90.0}, "wall_s": 5}))
    (res / "slice_bench.json").write_text(json.dumps({"total_seconds": 120}))
    (res / "sitting.json").write_text(json.dumps({"benchmarks": [{"name": "nbits_kernels", "exit_code": 0, "wall_s": 30}]}))
    b = {x.name: x for x in sitting.BENCHMARKS}
    assert sitting.last_wall_s(b["export_bench"], res) == 90.0
    assert sitting.last_wall_s(b["slice_bench"], res) == 120.0
    assert sitting.last_wall_s(b["nbits_kernels"], res) == 30.0
    assert sitting.last_wall_s(b["pass_speed"], res) is None
    cfg = sitting.SittingConfig(benches=(b["export_bench"], b["pass_speed"]), results=res)
    text = sitting.plan_text(cfg)
    assert "1.5 min" in text and "not recorded" in text and "RESULTS/export_bench.json" in text


def test_a_run_block_fills_what_old_files_did_not_record(tmp_path):
    """qnn_bench, distill_bench and slice_bench once recorded no date or load; with a run block, the README says
    when, on what, under what load. A big_models.json newer than its XLM-R side run is quoted alone, an older one
    beside it."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    rerun_date = json.loads((results / "big_models_xlmr_rerun.json").read_text())["created_utc"]

    def state(run: dict | None, big_models_utc: str) -> str:
        for name in ("qnn_bench.json", "distill_bench.json", "slice_bench.json"):
            d = json.loads((results / name).read_text())
            d.pop("run", None)
            if run:
                d["run"] = run
            if name == "distill_bench.json" and not run:
                d["machine"] = "x86_64 2 cores"  # as the old file: no load in it
            if name == "slice_bench.json" and not run:
                d.pop("load_average", None)
            (results / name).write_text(json.dumps(d))
        p = results / "big_models.json"
        d = json.loads(p.read_text())
        d["created_utc"] = big_models_utc
        p.write_text(json.dumps(d))
        return " ".join(_renderer().render_readme(README.read_text(), results).split())

    old = state(None, "2000-01-01T00:00:00+00:00")
    run = {"started_utc": "2031-05-06T07:08:09+00:00", "cpu": {"model_name": "Test CPU 9000"}, "cores": {"usable": 2},
           "load_average_start": [0.3, 0.5, 0.7], "load_average_end": [0.6, 0.5, 0.7]}
    new = state(run, "2031-05-06T07:00:00+00:00")
    assert rerun_date < "2031"
    assert "(`qnn_bench.py`, date and load not recorded" in old
    assert "(`qnn_bench.py`, 2031-05-06, Test CPU 9000, 2 cores, load average 0.3-0.6," in new
    assert "(`distill_bench.py`, 2031-05-06, Test CPU 9000, 2 cores, load average 0.3-0.6)" in new
    assert "cores, load not recorded; DynaBERT's rounding" in old
    assert "cores, load average 0.3-0.6; DynaBERT's rounding" in new
    assert "big_models_xlmr_rerun.json" in old and "big_models_xlmr_rerun.json" not in new


def test_quickstart_bench_labels_the_cpu_and_refuses_an_existing_folder(tmp_path, capsys):
    qs = _bench_module("quickstart_bench")
    run = {"cpu": {"model_name": "Intel(R) Xeon(R) Processor", "family": 6, "model": 207,
                   "features": ["avx2", "avx512", "vnni", "amx"]}}
    assert qs._cpu_label(run) == "Intel(R) Xeon(R) Processor (family 6, model 207, AVX-512 VNNI, AMX)"
    assert qs._cpu_label({"cpu": {"model_name": "Neoverse-N1", "family": None}}) == "Neoverse-N1"
    res = tmp_path / "results"
    assert qs.main(["--out-dir", str(tmp_path), "-o", str(res)]) == 2
    assert "exists" in capsys.readouterr().err and not res.exists()


def test_a_benchmark_over_its_time_limit_is_stopped_with_its_workers(tmp_path):
    sitting = _bench_module("sitting")
    (tmp_path / "results").mkdir()
    marker = tmp_path / "worker-still-ran"
    worker = f"import time; time.sleep(1.5); open({str(marker)!r}, 'w')"
    (tmp_path / "slow.py").write_text(f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {worker!r}])\n"
                                      "time.sleep(30)\n")
    cfg = sitting.SittingConfig(benches=(sitting.Bench("slow", "slow.py", (), ("slow.json",)),), results=tmp_path / "results",
                                script_dir=tmp_path, log_dir=tmp_path / "logs", force=True, render=False, timeout_s=0.5)
    assert sitting.run_sitting(cfg) == 1
    row = json.loads((tmp_path / "results" / "sitting.json").read_text())["benchmarks"][0]
    assert row["timed_out"] is True and row["exit_code"] is None and row["wall_s"] < 10
    time.sleep(2.0)
    assert not marker.exists()  # the worker went with its parent
def test_densest_block_shows_the_bert_base_sizes_from_pack_bench(tmp_path):
    """The densest-qat block's BERT-base rows come from pack_bench.json's ``<scheme>_<scope>`` variants: new
    sizes there give new cells, each the file's MB and its ratio to the fp32 export as the file states it."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    p = results / "pack_bench.json"
    d = json.loads(p.read_text())
    variants = d["models"]["bert-base"]["variants"]
    sizes = {"ternary_densest_head_int8pos": (23_456_789, 18.66), "binary_densest_head_int8pos": (15_111_111, 28.96),
             "binary_densest_all": (14_000_001, 31.26)}
    for name, (b, ratio) in sizes.items():
        variants[name] = {"bytes": b, "ratio_to_fp32": ratio, "config": {"granularity": "row"},
                          "reduced_run": {"created_utc": "2031-01-02T03:04:05+00:00", "cpuinfo_model_name": "Test CPU"}}
    for name in [k for k in variants if k.startswith(("ternary_densest", "binary_densest")) and k not in sizes]:
        del variants[name]
    p.write_text(json.dumps(d))
    block = _renderer().render_densest_qat(results)
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in block.splitlines()
            if ln.startswith("| BERT-base")}
    # columns: default, + pooler/classifier, + int8 position tables, everything
    assert rows["BERT-base shape, ternary (size only)"] == ["-", "-", "23.5 MB, 18.7x", "-"]
    assert rows["BERT-base shape, binary (size only)"] == ["-", "-", "15.1 MB, 29.0x", "14.0 MB, 31.3x"]
    text = " ".join(block.split())
    assert "2031-01-02" in text and "Test CPU" in text
    trained = json.loads((results / "train_bench_standard.json").read_text())["schedule_settings"]["qat_granularity"]
    assert ("NOT the QAT models'" in text) == (trained != "row")
    # the targets (18x ternary, 28x binary) first reached with int8 position tables in both schemes
    assert "ternary from '+ pooler, classifier; position tables int8' (18.7x)" in text
    assert "binary from '+ pooler, classifier; position tables int8' (29.0x)" in text


def test_the_int8_goal_prose_follows_the_verdict(tmp_path):
    """"Accuracy and cosine are no worse than optimum's" is the int8_bench verdict's, not typed in."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    p = results / "int8_bench.json"
    d = json.loads(p.read_text())
    text = README.read_text()
    assert "Accuracy and cosine are no worse than optimum's." in " ".join(
        _renderer().render_readme(text, results).split())
    d["verdict"]["ours"]["cosine_not_worse"] = False
    p.write_text(json.dumps(d))
    new = " ".join(_renderer().render_readme(text, results).split())
    assert "Cosine below optimum's." in new and "Accuracy and cosine are no worse" not in new


@pytest.mark.parametrize("detail, reason", [
    ("node '/encoder/layer.0/attention/self/MatMul_2' (MatMul): the attention context does not reach an output "
     "projection through Transpose/Reshape", "the attention context does not reach an output projection through "
     "Transpose/Reshape"),
    ("structure finder unavailable (StructureError: node 'node_matmul_2' (MatMul): the attention context does not "
     "reach an output projection through Transpose/Reshape): without it pack cannot tell the pooler",
     "the attention context does not reach an output projection through Transpose/Reshape"),
    ("no self-attention found (no Softmax over Q.K^T, no fused Attention); last node 'x' (Add): not a Transformer "
     "encoder", "no self-attention found"),
    ("deberta: the relative-position projections are folded float constants (packing would leave them unpacked; "
     "pack an export that still comp", "the relative-position projections are folded float constants"),
])
def test_the_refusal_sentence_names_each_reason_whole(detail, reason):
    # the README groups refused cells by reason: a parenthesis inside a reason must not cut it at "node 'x'"
    assert _renderer()._refusal_reason(detail) == reason
