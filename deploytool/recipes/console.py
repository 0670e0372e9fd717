"""Terminal output of a recipe run: a line per step as it goes, then the headline table."""

from __future__ import annotations

import time
from typing import IO

from rich.console import Console
from rich.table import Table


def step_printer(stream: IO[str]):
    console = Console(file=stream, highlight=False)
    started: dict[str, float] = {}

    def progress(name: str, status: str) -> None:
        if status == "start":
            started[name] = time.perf_counter()
            console.print(f"[bold]>[/bold] {name} ...")
        elif status == "cached":
            console.print(f"[dim]= {name} (cached)[/dim]")
        else:
            dt = time.perf_counter() - started.pop(name, time.perf_counter())
            console.print(f"[green]✓[/green] {name} [dim]({dt:.1f} s)[/dim]")

    return progress


def print_headline(result, stream: IO[str] | None = None) -> None:
    console = Console(file=stream, highlight=False)
    if not console.is_terminal:  # a log file or pipe: don't squeeze the table into 80 columns
        console = Console(file=stream, highlight=False, width=140)
    rows = result.headline
    if rows:
        table = Table(title=f"{result.recipe}: device latency in ms (p90; ~ projected from this host, ok/over the "
                            "device budget)", show_lines=False)
        for col in rows[0]:
            table.add_column(str(col), justify="right" if isinstance(rows[0][col], (int, float)) else "left")
        for row in rows:
            table.add_row(*("" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v)) for v in row.values()))
        console.print(table)
    if result.picks:
        console.print("[bold]best variant per device[/bold] (fits every budget; largest accuracy, where a "
                      "difference the exact McNemar test does not find significant is a tie won by the faster, "
                      "then smaller variant):")
        for line in result.picks:
            console.print(f"  {line}")
    if result.report_dir:
        console.print(f"report: {result.report_dir / 'report.html'}")
    for line in result.next_steps:
        console.print(line, markup=False)
    cached = sum(s.cached for s in result.steps)
    console.print(f"{len(result.steps)} steps ({cached} cached) in {result.seconds:.0f} s; outputs in {result.out_dir}")
