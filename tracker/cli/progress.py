"""A progress bar on stderr for long commands (result import, synth, nightly, export ics).

Shown only when stderr is a terminal and the command was not asked for --json, and only once the work has
lasted about a second (`TRACKER_PROGRESS_AFTER`, seconds; 0 shows it at once): a quick command prints
nothing extra, piped output never carries a bar. The bar is transient (erased when the work ends) and
writes to stderr only; stdout (reminders, an ICS file) is left alone. rich is imported only when a bar is
actually shown.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager

DEFAULT_AFTER_S = 1.0


def _after_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("TRACKER_PROGRESS_AFTER", DEFAULT_AFTER_S)))
    except ValueError:
        return DEFAULT_AFTER_S


class Bar:
    """`bar(done, total)` as work advances; starts the display lazily (see the module docstring)."""

    def __init__(self, label: str, enabled: bool):
        self.label = label
        self.enabled = enabled
        self.started = time.monotonic()
        self.after = _after_seconds()
        self.progress = None
        self.task = None

    def __call__(self, done: int, total: int | None = None) -> None:
        if not self.enabled:
            return
        if self.progress is None:
            if time.monotonic() - self.started < self.after:
                return
            self._start(total)
        self.progress.update(self.task, completed=done, total=total)

    def _start(self, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(file=sys.stderr, stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True,
                                 redirect_stdout=False, redirect_stderr=False)
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=total)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def wanted(as_json: bool = False) -> bool:
    """Whether a bar may be shown: stderr is a terminal and the output is not JSON."""
    try:
        return not as_json and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def progress_bar(label: str, *, as_json: bool = False):
    """A `Bar` for the block, shown as the module docstring says, and erased when the block ends."""
    bar = Bar(label, wanted(as_json))
    try:
        yield bar
    finally:
        bar.close()
