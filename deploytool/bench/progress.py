"""A rich progress bar on stderr for long measurements (off when stderr is not a terminal)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from deploytool.bench.runner import ProgressCallback, ProgressEvent

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(enabled: bool | None = None, label: str = "bench") -> Iterator[ProgressCallback | None]:
    """Yield a progress callback drawing a rich bar on stderr, or None when disabled.

    enabled=None: on only when stderr is a terminal.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(ev: ProgressEvent) -> None:
            bar.update(task, completed=ev.completed, total=ev.total, description=f"{label}: {ev.description}")

        yield update
