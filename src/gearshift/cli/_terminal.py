"""What the CLI draws on a terminal: rich tables and progress when ``rich`` is installed
(the ``cli`` extra), a plain bar otherwise, and nothing extra when the output is piped.

Piped output is the scripting interface, so it never depends on rich: admin tables stay
the plain aligned text of ``_admin.table`` and ``submit`` draws no bar, byte for byte the
same with or without the extra. rich is imported only when a terminal is attached.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from rich.console import Console


def rich_console(stream: TextIO) -> Console | None:
    """A rich Console on ``stream`` when it is a terminal and rich is installed."""
    if not _isatty(stream):
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def print_rich_table(console: Console, headers: Sequence[str],
                     body: Sequence[Sequence[str]]) -> None:
    """``body`` under ``headers`` as a rich table, numeric columns right-aligned."""
    from rich import box
    from rich.table import Table

    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for i, header in enumerate(headers):
        numeric = bool(body) and all(row[i].isdigit() for row in body)
        grid.add_column(header, justify="right" if numeric else "left", overflow="fold")
    for row in body:
        grid.add_row(*row)
    console.print(grid, markup=False, highlight=False)


class Bar(Protocol):
    def advance(self, count: int = 1) -> None: ...
    def write(self, stream: TextIO, data: bytes) -> bool: ...
    def close(self) -> None: ...


def eta_text(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" \
        if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """A one-line progress bar with rate and ETA on a terminal without rich; does
    nothing when ``stream`` is not a tty."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.width = width
        self.enabled = total > 1 and _isatty(stream)
        self._started = time.monotonic()
        self._last = 0.0

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            filled = self.width * self.done // max(self.total, 1)
            elapsed = max(now - self._started, 1e-6)
            rate = self.done / elapsed
            left = (self.total - self.done) / rate if rate else 0.0
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] "
                              f"{self.done}/{self.total} {rate:.1f}/s ETA {eta_text(left)} ")
            self.stream.flush()

    def write(self, stream: TextIO, data: bytes) -> bool:
        return False  # the caller writes; the next redraw follows on its line

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class RichProgress:
    """rich's progress bar (rate, elapsed, ETA) on a terminal; output the job printer
    sends to the same terminal is printed above the bar instead of through it."""

    def __init__(self, total: int, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichBar

        self.console = console
        self.bar = RichBar(BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                           TextColumn("{task.fields[rate]}"),
                           TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                           console=console, redirect_stdout=False, redirect_stderr=False,
                           transient=False)
        self.task = self.bar.add_task("jobs", total=total, rate="")
        self.bar.start()

    def advance(self, count: int = 1) -> None:
        self.bar.advance(self.task, count)
        speed: Any = self.bar.tasks[0].speed
        self.bar.update(self.task, rate=f"{speed:.1f} jobs/s" if speed else "")

    def write(self, stream: TextIO, data: bytes) -> bool:
        if not _isatty(stream):
            return False
        self.bar.console.print(data.decode("utf-8", "replace"), end="", markup=False,
                               highlight=False, soft_wrap=True)
        return True

    def close(self) -> None:
        self.bar.stop()


class NoBar:
    def advance(self, count: int = 1) -> None:
        pass

    def write(self, stream: TextIO, data: bytes) -> bool:
        return False

    def close(self) -> None:
        pass


def make_progress(total: int, stream: TextIO) -> Bar:
    """rich's bar on a terminal with rich, the plain one without, none when piped."""
    if total <= 1 or not _isatty(stream):
        return NoBar()
    console = rich_console(stream)
    return Progress(total, stream) if console is None else RichProgress(total, console)
