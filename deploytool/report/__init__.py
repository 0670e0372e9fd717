"""Device benchmark reports: JSON, Markdown and self-contained HTML with plots.

``build_report(ReportConfig(results=[bench.json, ...], out_dir="report/", accuracy=[acc.json],
profiles=["kirin990", "x86-host"]))`` (what ``deploytool report`` runs). See :mod:`.rows` for the
inputs and how each column is obtained; :mod:`.build` writes the outputs through :mod:`.plots`,
:mod:`.markdown_report` and :mod:`.html_report` (their shared wording: :mod:`.cells`).
"""

from deploytool.report.build import ReportResult, build_report
from deploytool.report.rows import ReportConfig, ReportRow, collect_rows, load_accuracy

__all__ = ["ReportConfig", "ReportResult", "ReportRow", "build_report", "collect_rows", "load_accuracy"]
