"""Report rows: bench results x device profiles, with accuracy, budgets and projected latency.

Inputs
- bench JSON files (schema ``deploytool.bench/1``, see :mod:`deploytool.bench`): what was MEASURED,
  on the host that ran them (``host.cpu_model``), with the EP that really ran. A relative model path in
  one is read from the JSON's own folder (then at the path the bench recorded, then from here).
- device-row files (``kind: deploytool.device_rows``, version 1, e.g. ``deploytool qnn``'s rows for
  the Snapdragon NPU): shown beside the CPU rows as they are (no latency where only emulated).
- accuracy JSON files (optional), any of:
  ``deploytool eval --output`` records (``{"model": path, "accuracy": 91.2, ...}``, percent);
  ``{"models": {name_or_path: accuracy}}``; a list of ``{"model": ..., "accuracy": ...}``.
  One unit per file: the stated ``"unit"`` (percent or fraction), else the one the records' own counts
  show, else percent where every value is over 1; a value in (0, 1] with none of these is ambiguous and
  refused (:func:`deploytool.accuracy.load_accuracy_records`). A model is matched by resolved
  path, then by file name, then by file stem (a name that is one benchmarked file's path is that file's only; a
  bare name that fits two benchmarked files is refused); names that match no benchmarked model are listed in
  ``accuracy_unmatched`` (the CLI warns), and a file whose names match none is refused.
- device profiles (``--profile``, default ``host``: this machine).

One row per (device, model, sequence length). Latency for the budget check: the MEASURED p90 where
the bench ran on the device's hardware (the recorded arch and core types match the profile's, not
emulated: :mod:`deploytool.profiles.match`; never decided by the profile's name), else the PROJECTED
device latency (:mod:`deploytool.bench.cost_model`), compared with the p90 budget as it is (a
projection has no run-to-run spread). A MEASURED row also carries the projection and its error
(``projection_error``); projected rows of the same device and model from other machines are dropped. Memory and size are host measurements (same model, same ORT).
A result that timed QNN on an x86 host (a bench JSON from before bench left QNN out there: Qualcomm's x86 HTP
emulator, :func:`deploytool.bench.runner.qnn_emulated`) is no measurement: not timed, never MEASURED, not judged
against the budgets of a profile that runs QNN first (``info.qnn_emulated`` says so; the CLI warns).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploytool.accuracy import load_accuracy_records, same_accuracy
from deploytool.choices import as_path, config, refuse_repeats, show
from deploytool.errors import ConfigError, InputFileError, not_a_file
from deploytool.profiles import Profile, load_profile

logger = logging.getLogger(__name__)

__all__ = ["ReportConfig", "ReportRow", "collect_rows", "load_accuracy"]

from deploytool.bench.runner import QNN_EMULATED_NOTE  # noqa: E402
from deploytool.units import MB, fmt_mb  # noqa: E402  (decimal MB, as the budgets)
from deploytool.variant import model_precision  # noqa: E402


@config
@dataclasses.dataclass(frozen=True)
class ReportConfig:
    results: tuple[Path, ...]
    out_dir: Path
    accuracy: tuple[Path, ...] = ()
    profiles: tuple[str, ...] = ("host",)
    profiles_dirs: tuple[Path, ...] = ()
    project: bool = True  # compute projected device latency (needs the model files)
    calibrate: bool = False  # scale projections by measured/projected on the host (labelled)
    title: str = "deploytool device report"

    def __post_init__(self) -> None:
        res = _paths(self.results, "results")
        if not res:
            raise ConfigError("results: give at least one bench JSON file")
        for p in res:
            if not p.is_file():
                raise not_a_file(p, "bench results file")
        refuse_repeats(res, "results", key=Path.resolve)  # shown once, counted twice
        object.__setattr__(self, "results", res)
        acc = _paths(self.accuracy, "accuracy")  # one file, or several (a string was split into letters)
        for p in acc:
            if not p.is_file():
                raise not_a_file(p, "accuracy file")
        refuse_repeats(acc, "accuracy", key=Path.resolve)
        object.__setattr__(self, "accuracy", acc)
        profs = (self.profiles,) if isinstance(self.profiles, (str, os.PathLike)) else self.profiles
        if not isinstance(profs, (list, tuple)) or not all(isinstance(x, (str, os.PathLike)) and str(x)
                                                            for x in profs):
            raise ConfigError(f"profiles: expected device profile names, got {show(self.profiles)}")
        profs = tuple(str(x) for x in profs) or ("host",)
        refuse_repeats(profs, "profiles")
        object.__setattr__(self, "profiles", profs)
        object.__setattr__(self, "profiles_dirs", _paths(self.profiles_dirs, "profiles_dirs"))
        for name in ("project", "calibrate"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected true or false, got {show(getattr(self, name))}")
        if self.calibrate and not self.project:  # (it was accepted and did nothing)
            raise ConfigError("calibrate: scales the projections, and --no-projection (project=False) makes none; "
                              "the two exclude each other")
        if not isinstance(self.title, str) or not self.title.strip():
            raise ConfigError(f"title: expected a non-empty string, got {show(self.title)}")
        object.__setattr__(self, "out_dir", as_path(self.out_dir, "out_dir", "a folder path"))
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ConfigError(f"{self.out_dir}: exists and is not a directory (-o takes a folder)")


def _paths(value, name: str) -> tuple[Path, ...]:
    """One path or a list of them, as paths; ConfigError naming ``name`` for anything else."""
    items = (value,) if isinstance(value, (str, bytes, os.PathLike)) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{name}: expected a file path or a list of them, got {show(value)}")
    return tuple(as_path(x, name, "file paths") for x in items)


@dataclasses.dataclass
class ReportRow:
    device: str
    soc: str
    core: str
    model: str  # display name
    model_path: str
    precision: str
    arch: str  # e.g. "L6 H12 F1536"
    params: int | None
    # the accuracy proxy: params / its own source model's params (never another model's of the report); None where
    # the source is unknown, proxy_basis says why (_proxies)
    param_fraction: float | None
    seq_len: int
    threads: int
    ep_requested: str  # the profile's first preference
    ep_ran: str  # what really ran in the measurement
    ep_note: str  # why it fell back, if it did
    measured_on: str  # the host CPU model
    p50_ms: float | None  # None on rows that were not timed (emulated devices)
    p90_ms: float | None
    peak_memory_mb: float | None
    size_mb: float | None  # what the size budget weighs: the file, or on a phone the bundle's model.ort (size_of);
    # None where the bench recorded no size and the file is not here to weigh
    accuracy: float | None
    projected_ms: float | None
    projected_label: str
    device_latency_ms: float | None  # what the budget is checked against
    device_latency_source: str  # "measured p90" | "projected p90" | "n/a"
    budget_ms: float | None
    budget_memory_mb: float | None
    budget_size_mb: float | None
    budget_pass: bool | None
    budget_why: str
    cost_model_error: float | None = None  # (projected - measured)/measured where the device is the host
    projected_low_ms: float | None = None  # the projection's band, from the cost model's measured error
    projected_high_ms: float | None = None
    budget_uncertain: bool = False  # the band straddles the latency budget: PASS/FAIL cannot be told
    latency_unjudged: bool = False  # a latency budget applies but the row has no device latency: not PASS
    # added for the grouped report (JSON rows only gain fields):
    variant: str = ""  # DynaBERT sub-network, e.g. "w0.5-d1", of the model's own source ("" when unknown)
    width: float | None = None  # kept fraction of heads/FFN
    depth: float | None = None  # kept fraction of layers
    # what the passes recorded in the file (deploytool.variant): source, width, depth, precision, chain
    variant_record: dict[str, Any] | None = None
    # where width and depth come from: VARIANT_FROM_RECORD, VARIANT_FROM_EXPORT or VARIANT_UNKNOWN (_variants)
    variant_basis: str = ""
    # the source model param_fraction is relative to ('tiny-bert, 25,536 parameters'): fractions of different sources
    # are not compared; and how it was found, or why there is none (PROXY_* below, _proxies)
    proxy_source: str = ""
    proxy_basis: str = ""
    budget_failed: list[str] = dataclasses.field(default_factory=list)  # "latency" | "memory" | "size"
    size_of: str = "file"  # "file" | "model.ort" (a phone profile: deploytool bundle's file), or why not
    # MEASURED: the bench ran on this device's hardware (arch and core types, deploytool.profiles.match);
    # PROJECTED: the device latency is the cost model's; match_why says which and why
    status: str = ""
    match_why: str = ""
    projection_error: float | None = None  # (projected - measured p50) / measured p50 on a MEASURED row
    # accuracy with its uncertainty (deploytool.accuracy): n, the 95% interval (percent), what it measures
    # ("accuracy", or "recall@10" for embedding models) and the share of the reference (teacher) model's
    accuracy_n: int | None = None
    accuracy_low: float | None = None
    accuracy_high: float | None = None
    accuracy_metric: str = "accuracy"
    accuracy_share: float | None = None  # accuracy / the reference's accuracy
    accuracy_record: Any = dataclasses.field(default=None, repr=False, compare=False)  # not in JSON
    # a MEASURED row: its bench run's every timed run in order, with that run's identity (rows of one
    # interleaved run pair run by run: the summary's speed test among accuracy-tied variants); not in JSON
    samples_ms: Any = dataclasses.field(default=None, repr=False, compare=False)
    samples_run: Any = dataclasses.field(default=None, repr=False, compare=False)
    # the bench timed QNN's x86 HTP emulator (an old bench JSON): not timed, never MEASURED, not judged on an NPU
    qnn_emulated: bool = False
    bench: str = ""  # the bench JSON the row came from, as given ("" for device rows)
    # that bench JSON where two benches give this model on this device at one length (projected from two
    # machines, say): the model is then one variant per bench file, named "m (a.json)"; not in JSON
    bench_split: str = dataclasses.field(default="", repr=False, compare=False)

    def accuracy_label(self, nd: int = 1) -> str:
        """'79.8% [76.1-83.1] n=500' (with the share of the reference where there is one)."""
        if self.accuracy is None:
            return "-"
        from deploytool.accuracy import fmt_accuracy

        txt = fmt_accuracy(self.accuracy, self.accuracy_n, self.accuracy_low, self.accuracy_high, nd)
        return txt + (f", {100 * self.accuracy_share:.0f}% of ref" if self.accuracy_share is not None else "")

    def proxy_label(self) -> str:
        """'proxy 0.502' (its kept-parameter fraction of its own source), or why it has none."""
        if self.param_fraction is None:
            return self.proxy_basis or PROXY_NO_RECORD
        return f"proxy {self.param_fraction:.3f}"

    def to_dict(self) -> dict[str, Any]:
        rec, self.accuracy_record = self.accuracy_record, None
        try:
            d = dataclasses.asdict(self)
        finally:
            self.accuracy_record = rec
        for k in ("accuracy_record", "samples_ms", "samples_run", "bench_split"):
            d.pop(k, None)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = round(v, 4) if math.isfinite(v) else None
        return d


# ------------------------------------------------------------------------------------- accuracy
def load_accuracy(paths: Sequence[Path]) -> dict[str, float]:
    """key (resolved path, file name and stem) -> accuracy in percent (values only; the records with n,
    interval and per-example predictions: :func:`deploytool.accuracy.load_accuracy_records`)."""
    return load_accuracy_records(paths).values()


def _lookup(acc: dict[str, float], model_path: str, name: str) -> float | None:
    p = Path(model_path)
    for key in (str(p.resolve()), p.name, p.stem, name):
        if key in acc:
            return acc[key]
    return None


# ----------------------------------------------------------------------------------------- rows
def _is_host(profile: Profile, host: dict[str, Any]) -> bool:
    """The bench ran on the profile's hardware (arch and core types; :mod:`deploytool.profiles.match`)."""
    from deploytool.profiles.match import match_profile

    return match_profile(profile, host).matched


def _model_facts(path: str) -> tuple[str, str, int | None, bool, dict[str, str]]:
    """(precision, architecture label, params, whether it is a deploytool export no pass has touched, its shape as
    the export recorded it: ``deploytool.source``, ``num_layers``, ``hidden_size``, ``vocab_size`` where given) of a
    model file; unknowns where it is gone."""
    from deploytool.onnx_io import load_proto

    p = Path(path)
    if not p.is_file():
        return "unknown", "-", None, False, {}
    precision, _ = model_precision(p)
    meta = {m.key: m.value for m in load_proto(p, load_external_data=False).metadata_props}
    arch = "-"
    if "deploytool.num_layers" in meta:
        heads = meta.get("deploytool.num_heads", "?")
        ffn = meta.get("deploytool.ffn_size", "?")
        heads = heads if heads != "0" else meta.get("deploytool.heads_per_layer", "?")
        ffn = ffn if ffn != "0" else meta.get("deploytool.ffn_per_layer", "?")
        arch = f"L{meta['deploytool.num_layers']} H{heads} F{ffn}"
    params = None
    try:
        from deploytool.inspection import inspect_model

        params = inspect_model(p, seq_len=8).params_each_read  # as fit counts them (the proxy)
    except Exception as e:  # a model the structure finder cannot read still gets a row
        logger.info("inspect %s: %s", p, e)
    shape = {k: meta[f"deploytool.{k}"] for k in _SHAPE_KEYS if meta.get(f"deploytool.{k}")}
    return precision, arch, params, _untouched_export(meta), shape


def _untouched_export(meta: dict[str, str]) -> bool:
    """Whether a model file with no variant record is a deploytool export that no pass has changed: the full
    model, its own source (width 1, depth 1). It carries the export's ``deploytool.source``, no record (every pass
    writes one) and no ``deploytool.heads_per_layer``/``ffn_per_layer`` (what structural passes wrote before they
    recorded variants: such a file is a slice of a model it does not name). Any other file without a record (an
    export by another tool, an old slice) says nothing of its source: its width and depth are unknown."""
    from deploytool.variant import KEY

    return (KEY not in meta and bool(meta.get("deploytool.source"))
            and "deploytool.heads_per_layer" not in meta and "deploytool.ffn_per_layer" not in meta)


def collect_rows(config: ReportConfig) -> tuple[list[ReportRow], dict[str, Any]]:
    """All rows of the report, and facts about the inputs (hosts, calibration) for the header."""
    from deploytool.bench import load_report
    from deploytool.bench.runner import qnn_emulated
    from deploytool.bench.cost_model import (OTHER_DEVICE_WIDENING, ErrorBand, HostRates, Resolution, op_costs,
                                             project_latency)

    profiles = [load_profile(n, config.profiles_dirs) for n in config.profiles]
    _refuse_one_name_twice(config.profiles, profiles)
    acc_set = load_accuracy_records(config.accuracy)
    acc = acc_set.values()
    reports, device_rows = [], []
    bench_of: dict[int, str] = {}  # id(a loaded bench JSON) -> its path as given
    not_found: dict[str, None] = {}  # model files named in the bench JSONs that are not here
    positions: dict[str, int | None] = {}  # model file -> rows of its position table (None: unknown)
    same_file: dict[str, str] = {}  # a model file's real path -> the path its first result names it by
    for p in config.results:
        kind = _kind(p)
        if kind == DEVICE_ROWS_KIND:
            device_rows.append(p)
        else:
            reports.append(load_report(p))
            bench_of[id(reports[-1])] = str(p)
            _check_batches(p, reports[-1])
            not_found.update(dict.fromkeys(_locate_models(p, reports[-1])))
            for res in reports[-1]["results"]:  # one file named two ways (tiny.onnx in one bench JSON,
                # /abs/tiny.onnx in another) is one model: rows, variants and plots are keyed by its path
                res["model"] = same_file.setdefault(os.path.realpath(res["model"]), res["model"])
            if config.project:  # the projection runs each model at each length: one it cannot take fails here
                _check_lengths(p, reports[-1], positions)
    _refuse_measured_twice(profiles, [p for p in config.results if _kind(p) != DEVICE_ROWS_KIND], reports)
    host_profile = load_profile("x86-host", config.profiles_dirs)
    facts: dict[str, tuple[str, str, int | None, bool, dict[str, str]]] = {}
    cost_cache: dict[tuple[str, int, int], Any] = {}
    hosts = sorted({str(r.get("host", {}).get("cpu_model", "?")) for r in reports})

    size_cache: dict[tuple[str, str], tuple[float, str]] = {}

    def shipped_size(path: str, prof: Profile, file_mb: float) -> tuple[float, str]:
        """:func:`deploytool.bundle.shipped_size`, converted once per model and bundle style."""
        from deploytool import bundle

        key = (path, str(bundle.phone_bundle_style(prof)))
        if key not in size_cache:
            size_cache[key] = bundle.shipped_size(path, prof, file_mb)
        return size_cache[key]

    def costs(path: str, res: dict[str, Any]):
        """The ops of ``path`` at the result's own batch and length (a batch of 16 costs 16 sequences' work)."""
        key = (path, res["seq_len"], _batch(res))
        if key not in cost_cache:
            cost_cache[key] = (op_costs(path, key[1], batch=key[2], optimized=True) if Path(path).is_file()
                               else None)
        return cost_cache[key]

    # host calibration: measured p50 / projected on the host profile, per precision (median)
    calibration: dict[str, float] = {}
    host_errors: list[dict[str, Any]] = []
    if config.project:
        ratios: dict[str, list[float]] = {}
        for rep in reports:
            for res in rep["results"]:
                path = res["model"]
                c = costs(path, res)
                if c is None or not _is_host(host_profile, rep.get("host", {})):  # ran on this machine only
                    continue
                if qnn_emulated(res, rep.get("host", {})):  # the emulator's timings are not this CPU's
                    continue
                threads = int(rep["config"].get("threads") or 1)
                proj = project_latency(c, host_profile, seq_len=res["seq_len"], threads=threads)
                measured = res["latency_ms"]["p50_ms"]
                prec = facts.setdefault(path, _model_facts(path))[0]
                ratios.setdefault(prec, []).append(measured / proj.latency_ms)
                host_errors.append({"model": res["name"], "seq_len": res["seq_len"], "threads": threads,
                                    "precision": prec, "projected_ms": round(proj.latency_ms, 5),
                                    "measured_p50_ms": measured,
                                    "error": round((proj.latency_ms - measured) / measured, 4)})
        for prec, rs in ratios.items():
            rs = sorted(rs)
            calibration[prec] = rs[len(rs) // 2]

    # the projection's band: the cost model's error on this report's host rows; wider for other devices,
    # which are projected with the host's efficiencies (an assumption)
    band = (ErrorBand.from_errors([e["error"] for e in host_errors],
                                  f"cost model error on this report's {len(host_errors)} host row(s)")
            if host_errors else None)
    device_band = (band.widened(OTHER_DEVICE_WIDENING,
                                "other devices: host efficiencies assumed, band doubled (log scale)") if band else None)
    # a calibrated projection (--calibrate: times the host's measured/projected factor of its precision) is off by
    # what calibration leaves of those errors, not by the errors it removed: its band is the calibrated rows' spread
    # (the uncalibrated band, applied to a projection already scaled by the median error, was lopsided: 0 at one end
    # and twice the correction at the other)
    cal_errors = [(e["projected_ms"] * calibration[e["precision"]] - e["measured_p50_ms"]) / e["measured_p50_ms"]
                  for e in host_errors if config.calibrate and e["precision"] in calibration]
    cal_device_band = (ErrorBand.from_errors(cal_errors, f"cost model error on this report's {len(cal_errors)} host "
                                                         "row(s) after --calibrate's factors")
                       .widened(OTHER_DEVICE_WIDENING, "other devices: host efficiencies assumed, band doubled "
                                "(log scale)") if cal_errors else None)
    rates_cache: dict[int, Any] = {}

    def rates_for(threads: int):
        if threads not in rates_cache:
            rates_cache[threads] = HostRates.from_profile(host_profile, min(threads, host_profile.threads))
        return rates_cache[threads]

    rows: list[ReportRow] = []
    for rep in reports:
        host = rep.get("host", {})
        threads_measured = int(rep["config"].get("threads") or 1)
        interleaved = bool((rep.get("worker") or {}).get("interleaved"))
        recorded = {m.get("index"): m.get("variant") for m in rep.get("models", []) if isinstance(m, dict)}
        for res in rep["results"]:
            path = res["model"]
            prec, arch, params, own_source, _ = facts.setdefault(path, _model_facts(path))
            record = recorded.get(res.get("model_index"))
            if record is None:  # a bench JSON from before the record existed: read the file if it is here
                from deploytool.variant import file_variant

                v = file_variant(path) if Path(path).is_file() else None
                record = v.to_dict() if v is not None else None
            lat = res["latency_ms"]
            p50, p90 = float(lat["p50_ms"]), float(lat["p90_ms"])
            emulated = qnn_emulated(res, host)
            for prof in profiles:
                from deploytool.profiles.match import HardwareMatch, match_profile

                match = match_profile(prof, host)
                if emulated:  # neither the device's latency nor this CPU's: never MEASURED
                    match = HardwareMatch(False, QNN_EMULATED_NOTE)
                # an NPU profile (QNN first) is not judged on it: its CPU projection is not the NPU's latency
                npu = emulated and prof.execution_providers[0].provider.value == "QNNExecutionProvider"
                is_host = match.matched  # MEASURED on this profile's hardware
                on_this_machine = is_host and prof.from_host  # the projection uses the machine's own rates
                proj = None
                c = costs(path, res) if config.project else None
                if c is not None:
                    proj = project_latency(c, prof, seq_len=res["seq_len"],
                                           threads=threads_measured if is_host else None,
                                           calibration=calibration if config.calibrate and not is_host else None,
                                           band=band if on_this_machine else device_band,
                                           host_rates=None if on_this_machine else rates_for(prof.threads))
                    if proj.calibration is not None and cal_device_band is not None:
                        proj = proj.with_band(cal_device_band)
                if npu:
                    dev_lat, source = None, "n/a (the bench timed QNN's x86 HTP emulator, not the device)"
                elif is_host:
                    dev_lat, source = p90, "measured p90"
                elif proj is not None:
                    dev_lat, source = proj.latency_ms, "projected"
                elif not config.project:
                    dev_lat, source = None, "n/a (not measured on this device, projection off: --no-projection)"
                else:
                    dev_lat, source = None, f"n/a (model file {path} not found: no projection)"
                budget_ms = prof.budgets.latency_ms(res["seq_len"])
                mem_mb = res["peak_rss_bytes"] / MB if res.get("peak_rss_bytes") else None  # None: not recorded
                file_mb = _file_mb(res, path)  # None: neither recorded nor on disk (not judged, never 0)
                size_mb, size_of = (None, "not recorded") if file_mb is None else shipped_size(path, prof, file_mb)
                ok, why, failed = _budget(prof, budget_ms, dev_lat, source, None if npu else mem_mb, size_mb, size_of)
                if npu:  # the emulator's run says nothing of the NPU's latency or memory: nothing judged
                    ok, why, failed = None, f"{QNN_EMULATED_NOTE}: not judged against {prof.name}'s budgets", []
                elif emulated:
                    why = f"{QNN_EMULATED_NOTE}; {why}"
                uncertain = bool(source == "projected" and budget_ms is not None and proj is not None
                                 and proj.band_low_ms is not None and proj.band_low_ms <= budget_ms < proj.band_high_ms)
                if uncertain:
                    why += (f"; uncertain: the projection's band {proj.band_low_ms:.2f}-{proj.band_high_ms:.2f} ms "
                            f"straddles the {budget_ms:g} ms budget")
                skipped = res.get("providers_skipped") or []
                ran = (res.get("providers") or ["?"])[0]
                note = "; ".join(f"{s['provider']}: {s['reason']}" for s in skipped)
                wanted = prof.execution_providers[0].provider.value
                if emulated:
                    note = "; ".join(x for x in (QNN_EMULATED_NOTE, note) if x)
                elif not note and wanted != ran:
                    avail = [a for a in host.get("available_providers", []) if a != "AzureExecutionProvider"]
                    note = (f"{wanted}: not in the onnxruntime build that measured (available: [{', '.join(avail)}])"
                            if wanted not in avail else f"{wanted}: the measurement did not ask for it "
                                                        f"(bench without --profile {prof.name})")
                rows.append(ReportRow(
                    device=prof.name, soc=prof.soc, core=prof.core, model=res["name"], model_path=path,
                    precision=prec, arch=arch, params=params, param_fraction=None, seq_len=res["seq_len"],
                    threads=threads_measured, ep_requested=prof.execution_providers[0].name,
                    ep_ran=ran.replace("ExecutionProvider", "") + (" (x86 HTP emulator)" if emulated else ""),
                    ep_note=note, measured_on=str(host.get("cpu_model", "?")),
                    p50_ms=None if emulated else p50, p90_ms=None if emulated else p90,
                    peak_memory_mb=None if emulated else mem_mb,
                    size_mb=size_mb, size_of=size_of, accuracy=_lookup(acc, path, res["name"]),
                    projected_ms=proj.latency_ms if proj else None, projected_label=proj.label if proj else "",
                    device_latency_ms=dev_lat, device_latency_source=source, budget_ms=budget_ms,
                    budget_memory_mb=prof.budgets.peak_memory_mb, budget_size_mb=prof.budgets.model_size_mb,
                    budget_pass=ok, budget_why=why, budget_failed=failed,
                    cost_model_error=((proj.latency_ms - p50) / p50 if (is_host and proj and p50 > 0) else None),
                    projected_low_ms=proj.band_low_ms if proj else None,
                    projected_high_ms=proj.band_high_ms if proj else None, budget_uncertain=uncertain,
                    latency_unjudged=budget_ms is not None and dev_lat is None and not npu, qnn_emulated=emulated,
                    variant_record=record, variant_basis="" if record or not own_source else VARIANT_FROM_EXPORT,
                    status="MEASURED" if is_host else ("PROJECTED" if proj and not npu else ""),
                    match_why=match.why,
                    projection_error=((proj.latency_ms - p50) / p50 if (is_host and proj and p50 > 0) else None),
                    samples_ms=(tuple(res.get("samples_ms") or ()) if is_host and interleaved else None),
                    samples_run=(id(rep), res["seq_len"]) if is_host and interleaved else None,
                    bench=bench_of[id(rep)]))
    rows = _measured_first(rows)
    # the projections' resolution on other devices at each length, per precision and across them all: how far
    # apart the model's errors on this report's host rows lay (what two projections must differ by to be ranked;
    # the summary applies it to each pair, deploytool.report.summary), doubled as the band is
    resolution: dict[str, dict[str, float]] = {}
    errors = resolution_errors(rows)
    for seq in sorted({s for s, _ in errors}):
        table = Resolution.table({p: e for (s, p), e in errors.items() if s == seq}, f"at seq {seq}",
                                 widen=OTHER_DEVICE_WIDENING)
        if table:
            resolution[str(seq)] = table
    bench_rows = list(rows)  # (device rows carry no accuracy of their own: their names count as matched only)
    for p in device_rows:
        rows.extend(_device_rows(p, config))
    _proxies(bench_rows, rows[len(bench_rows):], {path: (f[3], f[4]) for path, f in facts.items()})
    _attach_accuracy(bench_rows, acc_set, rows)
    unmatched = _unmatched_accuracy(rows, acc_set)
    _variants(rows)
    _split_by_bench(rows)
    fp16_notes = _fp16_statements(rows, profiles)
    int8_notes = _int8_statements(rows, reports)
    devices = {p.name: _device_facts(p, is_host=any(_is_host(p, rep.get("host", {})) for rep in reports))
               for p in profiles}
    for p in profiles:
        devices[p.name].update(_measurement_facts(p, reports, rows))
    runs = [{"cpu_model": str(rep.get("host", {}).get("cpu_model", "?")), "arch": rep.get("host", {}).get("arch"),
             "usable_cores": rep.get("host", {}).get("usable_cores"),
             "onnxruntime": rep.get("onnxruntime") or rep.get("host", {}).get("onnxruntime"),
             "created_utc": rep.get("created_utc"), "threads": rep["config"].get("threads"),
             "runs": rep["config"].get("runs")} for rep in reports]
    info = {"hosts": hosts, "fp16": fp16_notes, "int8": int8_notes, "projection_band": band.to_dict() if band else None,
            "device_projection_band": device_band.to_dict() if device_band else None,
            "calibrated_device_projection_band": cal_device_band.to_dict() if cal_device_band else None,
            "device_projection_resolution": resolution,
            "calibration": calibration if config.calibrate else {},
            "host_calibration_factors": calibration, "cost_model_host_errors": host_errors,
            "profiles": [p.name for p in profiles], "runs": runs, "devices": devices,
            "accuracy_unmatched": unmatched, "models_not_found": list(not_found),
            "latency_missing": _latency_missing(rows, list(not_found), config),
            "latency_budget_missing": _no_latency_budget(rows, profiles),
            "qnn_emulated": _qnn_emulated_line(rows, config.results)}
    if acc_set.reference is not None:
        ref = acc_set.reference
        info["accuracy_reference"] = {"name": acc_set.reference_name, "accuracy": ref.value, "n": ref.n,
                                      "ci95": None if ref.low is None else [ref.low, ref.high],
                                      "metric": ref.metric, "label": ref.label()}
    return rows, info


def _batch(res: dict[str, Any]) -> int:
    """The batch size a result was measured at (bench JSONs record it; 1 where absent)."""
    return int(res.get("batch") or 1)


def _check_batches(path: Path, rep: dict[str, Any]) -> None:
    """InputFileError naming the field when a result's batch is not a positive integer (the projection runs the
    model at that batch)."""
    for i, res in enumerate(rep["results"]):
        b = res.get("batch", 1)
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise InputFileError(f"{path}: corrupt bench result: results[{i}].batch must be an integer >= 1, "
                                 f"got {b!r}")


def _locate_models(path: Path, rep: dict[str, Any]) -> list[str]:
    """Point each result of the bench JSON at ``path`` to its model file: an absolute path as it is; a relative
    one from the bench JSON's own folder, else at the absolute path the bench recorded for it
    (``models[].session.model``), else from the current folder. Returns the model paths found nowhere (their
    rows get no projection, precision or size facts)."""
    base = path.parent
    recorded = {}
    for m in rep.get("models", []):
        session = m.get("session") if isinstance(m, dict) else None
        if isinstance(session, dict) and isinstance(session.get("model"), str) and session["model"]:
            recorded[m.get("index")] = Path(session["model"])
    missing = []
    for res in rep["results"]:
        given = Path(res["model"])
        tries = [given] if given.is_absolute() else [base / given]
        if res.get("model_index") in recorded:
            tries.append(recorded[res["model_index"]])
        if not given.is_absolute():
            tries.append(given)
        found = next((t for t in tries if t.is_file()), None)
        if found is None:
            missing.append(res["model"])
        elif found != given:
            res["model"] = str(found)
    return missing


def _check_lengths(path: Path, rep: dict[str, Any], positions: dict[str, int | None]) -> None:
    """InputFileError when a result's ``seq_len`` is longer than its model file's position table: not the file
    that was benchmarked (replaced since), and the projection would fail inside ONNX Runtime."""
    for i, res in enumerate(rep["results"]):
        model = res["model"]
        if not Path(model).is_file():
            continue
        if model not in positions:
            try:
                from deploytool.inspection import model_position_rows
                from deploytool.onnx_io import load_model

                positions[model] = model_position_rows(load_model(model))  # its weights mapped, not read
            except Exception as e:  # noqa: BLE001 - an unreadable model is reported where it is read
                logger.info("position table of %s: %s", model, e)
                positions[model] = None
        limit = positions[model]
        if limit is not None and res["seq_len"] > limit:
            raise InputFileError(f"{path}: results[{i}].seq_len {res['seq_len']} is longer than the position table "
                                 f"of {model} ({limit} positions): not the file that was benchmarked (replaced "
                                 "since?)")


def _qnn_emulated_line(rows: Sequence[ReportRow], paths: Sequence[Path]) -> str:
    """One line: the results that timed QNN's x86 HTP emulator (old bench JSONs) and what the report made of
    them; "" where there are none."""
    models = sorted({r.model for r in rows if r.qnn_emulated})
    if not models:
        return ""
    npu = sorted({r.device for r in rows if r.qnn_emulated and r.budget_why.startswith(f"{QNN_EMULATED_NOTE}: ")})
    shown = ", ".join(models[:3]) + (f" and {len(models) - 3} more" if len(models) > 3 else "")
    return (f"{shown}: {QNN_EMULATED_NOTE}; shown as not timed, never MEASURED"
            + (f", not judged against the NPU budgets of {', '.join(npu)}" if npu else "")
            + "; bench again (QNN on the device, or the CPU EPs here)")


def _latency_missing(rows: Sequence[ReportRow], not_found: Sequence[str], config: ReportConfig) -> str:
    """One line: which devices have rows with a latency budget but no device latency (not judged), and why;
    "" where there are none."""
    counts: dict[str, int] = {}
    for r in rows:
        if r.latency_unjudged and not r.qnn_emulated:
            counts[r.device] = counts.get(r.device, 0) + 1
    if not counts:
        return ""
    if not config.project:
        why = "not measured on the device and --no-projection given"
    elif not_found:
        shown = ", ".join(not_found[:3]) + (f" and {len(not_found) - 3} more" if len(not_found) > 3 else "")
        why = (f"model file(s) named in the bench JSON not found ({shown}; looked beside the bench JSON, at the "
               "path the bench recorded and from the current folder): nothing to project")
    else:
        why = "the rows carry no latency (neither measured nor projected)"
    devs = ", ".join(f"{d} ({n} row{'s' if n != 1 else ''})" for d, n in counts.items())
    return f"no device latency for {devs}: latency budget not judged, no best fit claimed; {why}"


def resolution_errors(rows: Sequence[ReportRow]) -> dict[tuple[int, str], list[float]]:
    """(seq, precision) -> the cost model's errors on the rows measured on this host (projected with its own rates),
    once per model, for the projections' resolution (:class:`~deploytool.bench.cost_model.Resolution`): against
    the 10th percentile of the row's runs where they were kept (the statistic the host microbenchmark's figures
    are: a run slowed by another process moves a row's p50 and would read as the model's error), else its p50
    (:func:`~deploytool.bench.cost_model.resolution_error`)."""
    from deploytool.bench.cost_model import resolution_error

    out: dict[tuple[int, str], dict[str, float]] = {}
    for r in rows:
        if r.cost_model_error is None or r.projected_ms is None:
            continue
        e = resolution_error(r.projected_ms, r.samples_ms, r.p50_ms) if r.samples_ms else r.cost_model_error
        out.setdefault((r.seq_len, r.precision), {})[r.model_path] = e
    return {k: list(v.values()) for k, v in out.items()}


def _refuse_one_name_twice(given: Sequence[str], profiles: Sequence[Profile]) -> None:
    """ConfigError when two --profile values load profiles of one name (the built-in kirin990 and an edited copy
    of it given by path, a profile by name and by path): rows, verdicts and the device's section are keyed by the
    name, so the second device's rows were judged under the first one's budgets. Two profiles built from this
    machine at run time (from_host) with the same budgets, threads and execution providers (host and x86-host,
    its old name) are one device given twice, refused too; with budgets of their own (host and a user's
    host-strict) each is a section judged against its own budgets, on the same measurement."""
    seen: dict[str, tuple[str, Profile]] = {}
    for g, prof in zip(given, profiles):
        first, fp = seen.setdefault(prof.name, (g, prof))
        if first != g:
            raise ConfigError(f"--profile: {first} and {g} are both the device profile '{prof.name}'; give each "
                              "device once (rename an edited copy's file and its name:)")
        if not prof.from_host:
            continue
        for first, fp in seen.values():
            if (fp.name != prof.name and fp.from_host and fp.budgets == prof.budgets and fp.threads == prof.threads
                    and fp.execution_providers == prof.execution_providers):
                raise ConfigError(f"--profile: {first} and {g} are both the machine running deploytool (profiles "
                                  f"'{fp.name}' and '{prof.name}' are built from it, with the same budgets, threads and "
                                  "execution providers); give each device once")


def _refuse_measured_twice(profiles: Sequence[Profile], paths: Sequence[Path], reports: Sequence[dict[str, Any]]) -> None:
    """InputFileError when two bench JSONs both MEASURED one model at one length on hardware matching one profile,
    by the same execution provider: the device's verdict would take one of the two (the first given) in silence,
    and a measurement over budget could be dropped for one within it."""
    from deploytool.bench.runner import qnn_emulated
    from deploytool.profiles.match import match_profile

    for prof in profiles:
        seen: dict[tuple[str, int, str], Path] = {}
        for path, rep in zip(paths, reports):
            if not match_profile(prof, rep.get("host", {})).matched:
                continue
            for res in rep["results"]:
                if qnn_emulated(res, rep.get("host", {})):  # not a measurement of this device
                    continue
                ep = (res.get("providers") or ["?"])[0]
                key = (str(Path(res["model"]).resolve()), res["seq_len"], ep)
                first = seen.setdefault(key, path)
                if first != path:
                    raise InputFileError(f"{res['name']} at seq {res['seq_len']} is measured on {prof.name} in both "
                                         f"{first} and {path}; give one measurement of a model and length per device")


def _split_by_bench(rows: Sequence[ReportRow]) -> None:
    """Two bench JSONs that give one model on one device at one length (both projected there from other machines;
    two measurements on the device are refused, a measurement drops the projections): the model is one variant
    per bench file, its rows named 'm (a.json)', so report.json, the tables, the verdicts and the row counts show
    both. They showed one (the first) in the tables and verdicts, and both in report.json and "2 rows"."""
    benches: dict[tuple[str, str, str, int], set[str]] = {}
    for r in rows:
        if r.bench:
            benches.setdefault((r.device, r.model_path, r.ep_ran, r.seq_len), set()).add(r.bench)
    split = {k[:3] for k, b in benches.items() if len(b) > 1}
    for r in rows:
        if r.bench and (r.device, r.model_path, r.ep_ran) in split:
            r.bench_split = r.bench
            r.model = f"{r.model} ({r.bench})"


def _measured_first(rows: list[ReportRow]) -> list[ReportRow]:
    """Where a (device, model, sequence length) was MEASURED on the device's hardware, that row stands for
    it (it carries the projection too, and the projection's error); PROJECTED rows of the same key from
    benchmarks on other machines are dropped. Rows keep their order otherwise."""
    measured = {(r.device, r.model, r.seq_len) for r in rows if r.status == "MEASURED"}
    return [r for r in rows if r.status == "MEASURED" or (r.device, r.model, r.seq_len) not in measured]


def _measurement_facts(prof: Profile, reports: Sequence[dict[str, Any]], rows: Sequence[ReportRow]) -> dict[str, Any]:
    """Per device: was it MEASURED (by which bench hosts, and why they match), and the projection's error
    where both a measurement and a projection exist (median and per row)."""
    from deploytool.profiles.match import match_profile

    matches = [(rep.get("host", {}), match_profile(prof, rep.get("host", {}))) for rep in reports]
    errs = [{"model": r.model, "seq_len": r.seq_len, "measured_p50_ms": r.p50_ms, "projected_ms": r.projected_ms,
             "error": round(r.projection_error, 4)}
            for r in rows if r.device == prof.name and r.status == "MEASURED" and r.projection_error is not None]
    med = sorted(e["error"] for e in errs)[len(errs) // 2] if errs else None
    return {"measured": any(m.matched for _, m in matches),
            "measured_on": sorted({str(h.get("cpu_model", "?")) for h, m in matches if m.matched}),
            "match": [{"cpu_model": str(h.get("cpu_model", "?")), "arch": h.get("arch"), "matched": m.matched,
                       "why": m.why} for h, m in matches],
            "projection_error_median": med, "projection_errors": errs}


def _accuracy_hits(acc_set, r: ReportRow, benchmarked: set[str]) -> list[tuple[str, str, Any]]:
    """The accuracy records (name, file, record) that name row ``r``'s model: those naming its file by path, else
    those naming it by file name, stem or display name -- less a record whose path is another benchmarked file
    (da/m.onnx's accuracy is not db/m.onnx's for sharing its file name)."""
    keys = set(acc_set.keys_of(r.model_path, r.model))
    hits = [h for h in acc_set.named if keys.intersection(acc_set.names.get(h[0], ()))]
    own = str(Path(r.model_path).resolve())
    exact = [h for h in hits if acc_set.names[h[0]][0] == own]
    return exact or [h for h in hits if acc_set.names[h[0]][0] not in benchmarked]


def _benchmarked(rows: Sequence[ReportRow]) -> set[str]:
    return {str(Path(r.model_path).resolve()) for r in rows}


def _attach_accuracy(rows: list[ReportRow], acc_set, all_rows: Sequence[ReportRow] = ()) -> None:
    """Each bench row's accuracy (:func:`_accuracy_hits`; two different values for one model refused) and its
    record: n, interval, metric, per-example scores, share of the reference."""
    ref = acc_set.reference
    benchmarked = _benchmarked(all_rows or rows)
    for r in rows:
        if not acc_set.named:  # a set built by hand, records keyed as lookup reads them (no files, no names)
            rec = acc_set.lookup(r.model_path, r.model) if r.accuracy is not None else None
            hits = [(r.model, "", rec)] if rec is not None else []
        else:
            hits = _accuracy_hits(acc_set, r, benchmarked)
        if not same_accuracy([rec for _, _, rec in hits]):  # one figure as the files state it, or from their counts
            values = {(rec.value if rec.stated is None else rec.stated, rec.metric) for _, _, rec in hits}
            shown = ", ".join(f"{n!r} {rec.label()} in {f}" for n, f, rec in hits[:4])
            raise InputFileError(f"--accuracy: {r.model} is given {len(values)} different accuracies: {shown}; keep "
                                 "one record per model")
        # the first, or the first whose value is its counts' exact share (a figure rounded to 3 decimals is shown
        # rounded once from that)
        rec = next((h[2] for h in hits if h[2].stated is not None), hits[0][2]) if hits else None
        r.accuracy = rec.value if rec is not None else None
        if rec is None:
            continue
        r.accuracy_record = rec
        r.accuracy_n, r.accuracy_low, r.accuracy_high, r.accuracy_metric = rec.n, rec.low, rec.high, rec.metric
        if ref is not None and ref.value > 0 and ref.metric == rec.metric:
            r.accuracy_share = rec.value / ref.value


def _unmatched_accuracy(rows: Sequence[ReportRow], acc_set) -> list[str]:
    """The models named in the accuracy files that match no row (by the keys ``AccuracySet.lookup`` tries);
    refused when none of them matches (a wrong file, or names from another run)."""
    if not acc_set.names:
        return []
    benchmarked = _benchmarked(rows)
    used: dict[str, dict[str, str]] = {}  # accuracy name -> {model file: its display name} it was taken for
    for r in rows:
        for n, _, _ in _accuracy_hits(acc_set, r, benchmarked):
            used.setdefault(n, {})[str(Path(r.model_path).resolve())] = r.model
    for n, files in used.items():
        if len(files) > 1 and acc_set.names[n][0] not in files:  # by file name or stem, for two files
            raise InputFileError(f"--accuracy: {n!r} matches {len(files)} benchmarked models by file name or stem "
                                 f"({', '.join(list(files.values())[:4])}); name each by its path")
    unmatched = [n for n in acc_set.names if n not in used]
    if len(unmatched) == len(acc_set.names):
        models = sorted({r.model for r in rows})
        raise InputFileError(f"--accuracy: none of the {len(unmatched)} model name(s) ({', '.join(unmatched[:4])}) "
                             f"matches a benchmarked model ({', '.join(models[:6])}); names are matched by path, "
                             "file name or stem")
    return unmatched


def _device_facts(prof: Profile, *, is_host: bool) -> dict[str, Any]:
    """What the report's device header shows once instead of on every row."""
    cores = " + ".join(f"{c.count}x {c.core} @ {c.max_ghz:g} GHz" for c in prof.cpu)
    return {"soc": prof.soc, "core": prof.core, "arch": prof.arch.value, "cores": cores, "threads": prof.threads,
            "memory_gb": prof.memory_gb, "is_host": is_host,
            "ep_preference": [ep.name for ep in prof.execution_providers],
            "budgets": {"p90_latency_ms": {int(k): v for k, v in prof.budgets.p90_latency_ms.items()},
                        "peak_memory_mb": prof.budgets.peak_memory_mb,
                        "model_size_mb": prof.budgets.model_size_mb},
            "description": prof.description}


VARIANT_FROM_RECORD = "variant record"  # the file's deploytool.variant: relative to the source it names
VARIANT_FROM_EXPORT = "deploytool export: its own source"  # no record, no pass touched it: the full model
VARIANT_UNKNOWN = "unknown (no variant record)"


def _variants(rows: Sequence[ReportRow]) -> None:
    """Width/depth of each row, relative to the model's own source and never to another model of the report: as
    the passes recorded them in the model (``deploytool.variant``, carried by the bench JSON); 1 and 1 for a
    deploytool export no pass has touched (it is its own source, ``variant_basis`` set by collect_rows); else
    unknown (None, ``variant_basis`` says so). Neither file names nor other models' layer and head counts are
    read: a model without a record, benched beside an unrelated larger one, was given its ratio to that one."""
    for r in rows:
        rec = r.variant_record
        if rec:
            r.width, r.depth = float(rec["width"]), float(rec["depth"])
            r.variant_basis = VARIANT_FROM_RECORD
        elif r.variant_basis == VARIANT_FROM_EXPORT:
            r.width, r.depth = 1.0, 1.0
        elif r.width is None or r.depth is None:  # (a device-rows file may give its own)
            r.width = r.depth = None
            r.variant_basis = VARIANT_UNKNOWN
        if r.width is not None and r.depth is not None:
            r.variant = f"w{r.width:g}-d{r.depth:g}"


#: what the export records of a model's shape (``deploytool.<key>``) that the proxy's source check reads
_SHAPE_KEYS = ("source", "num_layers", "hidden_size", "vocab_size")

PROXY_OWN = "its own source"  # an export no pass touched, or a copy of its source at another precision
PROXY_NO_RECORD = "proxy unknown (no variant record)"
PROXY_NOT_COUNTED = "proxy unknown (its parameters could not be counted)"

# the steps that keep every parameter of their input: a file made from its source by these alone holds the source's
# parameters (at another precision). Any other step may remove some (prune-ffn records width 1 after removing FFN
# neurons only), as may a step this list does not know
_KEEPS_ALL = ("fp16", "int8", "reorder")
_KEEPS_ALL_PREFIX = ("int8(", "pack(", "repack(")


def _whole_copy(record: dict[str, Any]) -> bool:
    """Whether a variant record says the file holds every parameter of its source (width 1, depth 1, made by
    precision passes and reordering only)."""
    chain = [str(s) for s in record.get("chain") or ()]
    return (float(record["width"]) == 1.0 and float(record["depth"]) == 1.0
            and all(s in _KEEPS_ALL or s.startswith(_KEEPS_ALL_PREFIX) for s in chain))


def _source_text(name: str, params: int) -> str:
    return f"{name or '(unnamed)'}, {params:,} parameters"


def _not_its_source(record: dict[str, Any], shape: dict[str, str], source: dict[str, str]) -> str | None:
    """Why the whole model ``source`` (its recorded shape) cannot be the source of the variant (``record``,
    ``shape``), else None: slicing and pruning keep the hidden size and the vocabulary and keep about ``depth`` of
    the layers (each rounding within one layer)."""
    for key in ("hidden_size", "vocab_size"):
        if shape.get(key) and source.get(key) and shape[key] != source[key]:
            return f"{key.replace('_', ' ')} {shape[key]}, its {source[key]}"
    try:
        layers, whole = int(shape["num_layers"]), int(source["num_layers"])
    except (KeyError, ValueError):
        return None
    if abs(layers - float(record["depth"]) * whole) > 1:
        return f"{layers} layers at depth {float(record['depth']):g} of its {whole}"
    return None


def _proxies(rows: Sequence[ReportRow], device_rows: Sequence[ReportRow],
             files: dict[str, tuple[bool, dict[str, str]]]) -> None:
    """The accuracy proxy of each row: its kept-parameter fraction of its OWN source model, never of another model
    of the report (two unrelated models, or two source models, benched together were ranked as if one were a slice
    of the other). ``files``: model file -> (an export no pass touched, its recorded shape).

    - a whole copy of its source (an export no pass touched, or its variant record says width 1, depth 1, made by
      precision passes only): 1.0, and its parameters are its source's;
    - a variant whose record names a source of which this report holds a whole copy (one parameter count under that
      name, whose shape can be its source's): its parameters over that count;
    - anything else has no proxy (None), and ``proxy_basis`` says why: no variant record, its source not in this
      report, two different models of that name, its parameters not counted.
    ``proxy_source`` names the source a fraction is of: the summary never ranks fractions of two sources against
    each other. Device rows of a file benched here take its proxy; others have none."""
    models: dict[str, tuple[str | None, int | None, bool, dict[str, Any] | None]] = {}
    for r in rows:
        if r.model_path in models:
            continue
        own, shape = files.get(r.model_path, (False, {}))
        rec = r.variant_record
        if rec:
            models[r.model_path] = (str(rec.get("source") or ""), r.params, _whole_copy(rec), rec)
        elif own:
            models[r.model_path] = (shape.get("source", ""), r.params, True, None)
        else:
            models[r.model_path] = (None, r.params, False, None)
    whole: dict[str, dict[int, dict[str, str]]] = {}  # source name -> params of its whole copies -> their shape
    for path, (name, params, full, _) in models.items():
        if name and full and params:
            whole.setdefault(name, {}).setdefault(params, files.get(path, (False, {}))[1])
    proxy: dict[str, tuple[float | None, str, str]] = {}
    for path, (name, params, full, rec) in models.items():
        if name is None:
            proxy[path] = (None, "", PROXY_NO_RECORD)
        elif not params:
            proxy[path] = (None, "", PROXY_NOT_COUNTED)
        elif full:
            proxy[path] = (1.0, _source_text(name, params), PROXY_OWN)
        elif not name:
            proxy[path] = (None, "", "proxy unknown (its variant record names no source)")
        else:
            copies = whole.get(name, {})
            shape = files.get(path, (False, {}))[1]

            def not_source(n: int, src_shape: dict[str, str]) -> str | None:
                return _not_its_source(rec, shape, src_shape) or (
                    f"{params:,} parameters, its {n:,}" if params > n else None)

            can = [n for n, sh in copies.items() if not_source(n, sh) is None]  # by shape (two named alike)
            if len(can) == 1:
                proxy[path] = (params / can[0], _source_text(name, can[0]), f"of its source in this report ({name})")
            elif can:
                proxy[path] = (None, "", f"proxy unknown ({len(can)} different models named {name} in this report "
                                         "could be its source)")
            elif not copies:
                proxy[path] = (None, "", f"proxy unknown (its source {name} is not in this report)")
            elif len(copies) == 1:
                (n, sh), = copies.items()
                proxy[path] = (None, "", f"proxy unknown (the {name} in this report is not its source: "
                                         f"{not_source(n, sh)})")
            else:
                proxy[path] = (None, "", f"proxy unknown (none of the {len(copies)} models named {name} in this "
                                         "report can be its source)")
    for r in list(rows) + list(device_rows):
        r.param_fraction, r.proxy_source, r.proxy_basis = proxy.get(
            r.model_path, (None, "", "proxy unknown (a device row of a model not benchmarked in this report)"))


DEVICE_ROWS_KIND = "deploytool.device_rows"  # rows from other measurements (e.g. ``deploytool qnn``)


def _kind(path: Path) -> str | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None  # load_report gives the one-line error
    return data.get("kind") if isinstance(data, dict) else None


def _device_rows(path: Path, config: ReportConfig) -> list[ReportRow]:
    """Rows of a ``deploytool.device_rows`` file (version 1): shown as they are (latency None where
    the source only emulated the device), budgets checked where the row's device is a profile."""
    data = json.loads(Path(path).read_text())
    if data.get("version") != 1 or not isinstance(data.get("rows"), list):
        raise InputFileError(f"{path}: {DEVICE_ROWS_KIND} file of an unknown version (expected version 1 with rows)")
    fields = {f.name for f in dataclasses.fields(ReportRow)}
    out = []
    for i, raw in enumerate(data["rows"]):
        if not isinstance(raw, dict) or not {"device", "model", "seq_len"} <= set(raw):
            raise InputFileError(f"{path}: row {i}: expected at least device, model and seq_len")
        try:
            prof = load_profile(str(raw["device"]), config.profiles_dirs)
        except ConfigError:
            prof = None
        lat = raw.get("device_latency_ms")
        size = float(raw.get("size_mb") or 0)
        ok, why, failed = (_budget(prof, prof.budgets.latency_ms(int(raw["seq_len"])), lat,
                                   str(raw.get("device_latency_source") or "measured"), 0.0, size)
                           if prof else (None, "not a known device profile", []))
        row = {
            "soc": prof.soc if prof else "", "core": prof.core if prof else "", "model_path": raw["model"],
            "precision": "?", "arch": "-", "params": None, "param_fraction": None, "threads": 0,
            "ep_requested": "", "ep_ran": "", "ep_note": "", "measured_on": "", "p50_ms": None, "p90_ms": None,
            "peak_memory_mb": None, "size_mb": size, "accuracy": None, "projected_ms": None,
            "projected_label": "", "device_latency_ms": None, "device_latency_source": "n/a",
            "budget_ms": prof.budgets.latency_ms(int(raw["seq_len"])) if prof else None,
            "budget_memory_mb": prof.budgets.peak_memory_mb if prof else None,
            "budget_size_mb": prof.budgets.model_size_mb if prof else None, "budget_pass": ok, "budget_why": why,
            "budget_failed": failed,
        }
        row["latency_unjudged"] = bool(prof and row["budget_ms"] is not None and lat is None)
        row.update({k: v for k, v in raw.items() if k in fields})
        if "budget_pass" in raw and "budget_failed" not in raw:  # the file's own verdict: not our comparisons
            row["budget_failed"] = []
        if "budget_pass" in raw and "latency_unjudged" not in raw:
            row["latency_unjudged"] = False
        row["ep_ran"] = str(row["ep_ran"]).replace("ExecutionProvider", "")
        row["ep_requested"] = str(row["ep_requested"]).replace("ExecutionProvider", "")
        if raw.get("note") and not row["ep_note"]:
            row["ep_note"] = str(raw["note"])
        out.append(ReportRow(**row))
    return out


def _file_mb(res: dict[str, Any], path: str) -> float | None:
    """The model's size in MB as the bench recorded it (``model_bytes``), else the file's on disk (with its external
    data), else None: a record without a size once read as 0 MB and passed any size budget unweighed."""
    recorded = res.get("model_bytes")
    if recorded:
        return recorded / MB
    if Path(path).is_file():
        from deploytool.passes.base import file_size

        return file_size(path) / MB
    return None


def _budget(prof: Profile, budget_ms: float | None, lat: float | None, source: str, mem_mb: float | None,
            size_mb: float | None, size_of: str = "file") -> tuple[bool | None, str, list[str]]:
    """(pass, why, the budgets broken: "latency" | "memory" | "size") from one set of comparisons; pass is None
    when no budget applies, and where a latency budget applies but the row has no latency (``lat`` None: neither
    measured nor projected) unless another budget fails: such a row is never PASS. So is a row whose bench
    recorded no peak memory (``mem_mb`` None) under a memory budget, and one without a size (``size_mb`` None: not
    recorded, no file to weigh) under a size budget."""
    checks: list[tuple[str, bool, str]] = []
    unjudged = budget_ms is not None and lat is None
    if budget_ms is not None and lat is not None:
        ok = lat <= budget_ms
        checks.append(("latency", ok, f"{source} {lat:.2f} ms {'<=' if ok else '>'} {budget_ms:g} ms"))
    b = prof.budgets
    if b.peak_memory_mb is not None and mem_mb is not None and mem_mb > 0:
        ok = mem_mb <= b.peak_memory_mb
        checks.append(("memory", ok, f"peak memory {mem_mb:.0f} MB {'<=' if ok else '>'} {b.peak_memory_mb:g} MB"))
    if b.model_size_mb is not None and size_mb is not None and size_mb > 0:
        of = "" if size_of == "file" else f" ({size_of})"
        ok = size_mb <= b.model_size_mb
        checks.append(("size", ok, f"size {fmt_mb(size_mb)} MB{of} {'<=' if ok else '>'} {b.model_size_mb:g} MB"))
    failed = [name for name, ok, _ in checks if not ok]
    if budget_ms is None and b.p90_latency_ms:  # a length past the profile's longest budget: fit refuses it too
        why = "; ".join([f"{NO_LATENCY_BUDGET} (the profile's longest: seq {max(b.p90_latency_ms)})"]
                        + [c[2] for c in checks])
        return (False if failed else None), why, failed
    if unjudged:  # never PASS without a latency: the other budgets can only fail it
        why = "; ".join([f"{LATENCY_NOT_JUDGED} ({source}; budget {budget_ms:g} ms)"] + [c[2] for c in checks])
        return (False if failed else None), why, failed
    if b.peak_memory_mb is not None and mem_mb is None:  # never PASS on a memory budget nobody measured
        why = "; ".join([f"{MEMORY_NOT_JUDGED} (budget {b.peak_memory_mb:g} MB)"] + [c[2] for c in checks])
        return (False if failed else None), why, failed
    if b.model_size_mb is not None and size_mb is None:  # never PASS on a size nobody weighed
        why = "; ".join([f"{SIZE_NOT_JUDGED} (budget {b.model_size_mb:g} MB)"] + [c[2] for c in checks])
        return (False if failed else None), why, failed
    if not checks:
        return None, "no budget for this sequence length", []
    return not failed, "; ".join(c[2] for c in checks), failed


LATENCY_NOT_JUDGED = "no latency: latency budget not judged"  # a row with a latency budget but no latency
MEMORY_NOT_JUDGED = "no peak memory in the bench results: memory budget not judged"
SIZE_NOT_JUDGED = "no model size in the bench results and no file to weigh: size budget not judged"
NO_LATENCY_BUDGET = "no p90 latency budget at this sequence length: not judged"  # the profile sets none this long


def _no_latency_budget(rows: Sequence[ReportRow], profiles: Sequence[Profile]) -> str:
    """One line: the devices whose profile sets latency budgets, none of them as long as some rows' length
    (those rows are not judged, never PASS); "" where there are none."""
    longest = {p.name: max(p.budgets.p90_latency_ms) for p in profiles if p.budgets.p90_latency_ms}
    seqs: dict[str, set[int]] = {}
    for r in rows:
        if r.device in longest and r.seq_len > longest[r.device]:
            seqs.setdefault(r.device, set()).add(r.seq_len)
    return "; ".join(f"{d} has no p90 latency budget at seq {', '.join(map(str, sorted(s)))} (its longest: seq "
                     f"{longest[d]}): those rows are not judged" for d, s in seqs.items())


def _int8_statements(rows: Sequence[ReportRow], reports: Sequence[dict[str, Any]]) -> list[str]:
    """For int8 models with int8 GEMM weight codes benchmarked on a host whose uint8 x int8 kernel saturates
    (x86 without VNNI; the bench JSON's ``host.int8_u8s8_exact``): they compute less exactly there than on
    a VNNI x86 or an ARM64 device (:mod:`deploytool.runtime.int8_kernel`)."""
    from deploytool.runtime.int8_kernel import gemm_weight_codes

    hosts = sorted({str(rep.get("host", {}).get("cpu_model", "?")) for rep in reports
                    if rep.get("host", {}).get("int8_u8s8_exact") is False})
    if not hosts:
        return []
    names = []
    for path in dict.fromkeys(r.model_path for r in rows if r.precision == "int8"):
        try:
            if Path(path).is_file() and "int8" in gemm_weight_codes(path):
                names.append(Path(path).name)
        except Exception as e:  # noqa: BLE001 - a statement, never a failure of the report
            logger.info("int8 weight codes of %s: %s", path, e)
    if not names:
        return []
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return [f"{shown}: int8 weight codes, benchmarked on {', '.join(hosts)}, whose ONNX Runtime adds uint8 x int8 "
            "products in pairs in a saturating int16 (no VNNI; measured by a probe GEMM). Latency there is real; "
            "outputs (and an accuracy evaluated there) are less exact than on VNNI x86 or ARM64 devices, which "
            "compute the same file exactly. For x86 targets without VNNI quantize with --weights uint8 (the same "
            "codes through the exact U8U8 kernel)."]


def _fp16_statements(rows: Sequence[ReportRow], profiles: Sequence[Profile]) -> list[str]:
    """For fp16 models: does the measuring host run them in fp16 (ORT's inserted casts), and do the
    profiles' cores have fp16 arithmetic (then ORT's MLAS runs fp16 GEMM natively there)?"""
    from deploytool.profiles.render import fp16_statement
    from deploytool.runtime.session import inserted_precision_casts

    out = []
    for path in dict.fromkeys(r.model_path for r in rows if r.precision == "fp16"):
        if not Path(path).is_file():
            continue
        try:
            casts = len(inserted_precision_casts(path))
        except Exception as e:  # noqa: BLE001 - a statement, never a failure of the report
            logger.info("inserted casts of %s: %s", path, e)
            continue
        host = (f"this host inserts {casts} fp16->fp32 casts (InsertedPrecisionFreeCast): it computes the fp16 "
                "model in fp32, so fp16 here saves size, not time" if casts else
                "this host runs it in fp16 without inserted casts")
        out.append(f"{Path(path).name}: {host}")
    if out:
        out += [f"{p.name}: {fp16_statement(p)}" for p in profiles]
    return out
