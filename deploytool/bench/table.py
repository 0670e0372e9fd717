"""Plain-text rendering of a bench report (the CLI's table)."""

from __future__ import annotations

from deploytool.bench.config import Schedule
from deploytool.bench.runner import BenchReport

__all__ = ["format_bytes", "format_table"]

_SHORT_EP = {"CPUExecutionProvider": "CPU", "QNNExecutionProvider": "QNN", "XnnpackExecutionProvider": "XNNPACK",
             "ACLExecutionProvider": "ACL", "NnapiExecutionProvider": "NNAPI", "CoreMLExecutionProvider": "CoreML"}


from deploytool.units import fmt_bytes as format_bytes  # noqa: E402  (one size unit everywhere)


def _ep(providers: tuple[str, ...]) -> str:
    return "+".join(_SHORT_EP.get(p, p.removesuffix("ExecutionProvider")) for p in providers)


def format_table(report: BenchReport) -> str:
    """Aligned table (model, seq, p50, p90, p99, mean±std, throughput, ratio, size, RSS, EP) plus notes."""
    header = ["model", "seq", "p50 ms", "p90 ms", "p99 ms", "mean±std ms", "seq/s", "ratio", "size", "peak RSS", "EP"]
    rows = []
    for r in report.results:
        lat = r.latency
        rows.append([r.name, str(r.seq_len), f"{lat.p50_ms:.3f}", f"{lat.p90_ms:.3f}", f"{lat.p99_ms:.3f}",
                     f"{lat.mean_ms:.3f}±{lat.std_ms:.3f}", f"{r.throughput_seq_per_s:.1f}",
                     f"{r.ratio_to_first:.3f}", format_bytes(r.model_bytes), format_bytes(r.peak_rss_bytes),
                     _ep(r.providers)])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    right = {1, 2, 3, 4, 5, 6, 7, 8, 9}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    cfg = report.config
    host = report.host
    out.append("")
    out.append(f"batch {cfg.batch}, {cfg.session_spec.intra_op_threads} thread(s), {cfg.warmup} warm-up + {cfg.runs} "
               f"runs{_order(cfg) if report.worker.get('interleaved') else ''}; onnxruntime {report.onnxruntime} "
               f"on {host.get('cpu_model')} ({host.get('arch')}); ratio = p50 / p50 of {report.results[0].name}")
    threads, usable = cfg.session_spec.intra_op_threads, host.get("usable_cores")
    if isinstance(usable, int) and threads > usable:  # e.g. a 4-thread phone profile on a 2-core host
        out.append(f"note: {threads} intra-op threads on {usable} usable cores: oversubscribed, latencies are "
                   f"inflated ({_fewer_threads(cfg, usable)})")
    seen = set()
    for m in report.models:
        for s in m["session"]["skipped"]:
            key = (s["provider"], s["reason"])
            if key not in seen:
                seen.add(key)
                out.append(f"note: {s['provider']} skipped: {s['reason']}")
        for n in m["session"].get("notes", []):
            if n not in seen:
                seen.add(n)
                out.append(f"note: {n}")
    return "\n".join(out)


def _order(cfg) -> str:
    """How several models' timed runs were ordered, for the table's footer."""
    turns = "interleaved run by run" if cfg.schedule is Schedule.INTERLEAVED else f"in blocks of {cfg.block_runs}"
    primed = cfg.primed_runs
    return f" {turns}" + (f", each after {primed} untimed run{'s' if primed != 1 else ''} of its model" if primed else "")


def _fewer_threads(cfg, usable: int) -> str:
    """How to run fewer threads: --threads N, which overrides a profile's threads when they came from it."""
    if cfg.threads is None and cfg.profile is not None:
        return f"--threads {usable} overrides the profile {cfg.profile.name}'s"
    return f"use --threads {usable}"
