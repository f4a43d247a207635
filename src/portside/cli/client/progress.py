"""Progress on stderr: byte bars for transfers, a status line for sessions starting up.

In a terminal the bars redraw in place; when stderr is a pipe or a file, rich prints the
bars once, in their final state, and status changes are printed one line each, so logs and
tests see them too.  ``quiet`` turns all of it off.
"""

from __future__ import annotations

from types import TracebackType

from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ai.backend.client.func.session_streams import ProgressReporter

from .output import stderr_console


class TransferProgress:
    """Byte-counting bars, one per task (``add``), drawn on stderr while in a ``with``."""

    def __init__(self, *, quiet: bool = False) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=stderr_console(),
            disable=quiet,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> TransferProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def add(self, description: str, total: int | None) -> TaskID:
        """A new bar; ``total`` None means the size is not known (the bar pulses)."""
        return self._progress.add_task(escape(description), total=total)

    def advance(self, task: TaskID, n: int) -> None:
        """Counts ``n`` more bytes, never past the total (multipart framing adds a few)."""
        state = self._progress.tasks[self._index(task)]
        if state.total is not None:
            n = max(0, min(n, int(state.total - state.completed)))
        self._progress.advance(task, n)

    def set_done(self, task: TaskID, completed: int) -> None:
        self._progress.update(task, completed=completed)

    def finish(self, task: TaskID) -> None:
        """Marks the task complete (its total becomes what was counted if it had none)."""
        state = self._progress.tasks[self._index(task)]
        total = state.total if state.total is not None else state.completed
        self._progress.update(task, total=total, completed=total)

    def reporter(self, description: str, total: int | None) -> ProgressReporter:
        """A bar the SDK's transfer helpers can feed (they take a ``ProgressReporter``)."""
        return _BarReporter(self, self.add(description, total), description, total)

    def _index(self, task: TaskID) -> int:
        for i, state in enumerate(self._progress.tasks):
            if state.id == task:
                return i
        raise KeyError(task)


class _BarReporter(ProgressReporter):
    def __init__(
        self, progress: TransferProgress, task: TaskID, description: str, total: int | None
    ) -> None:
        super().__init__(description, total, enabled=False)
        self._bar = progress
        self._task = task

    def update(self, n: int) -> None:
        self.done += n
        self._bar.advance(self._task, n)

    def finish(self) -> None:
        self._bar.finish(self._task)


class StatusLine:
    """A spinner with a changing message (a terminal), or one line per change (otherwise)."""

    def __init__(self, message: str, *, quiet: bool = False) -> None:
        self._console = stderr_console()
        self._quiet = quiet
        self._live = self._console.is_terminal and not quiet
        self._message = message
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self._console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> StatusLine:
        if self._live:
            self._progress.start()
            self._task = self._progress.add_task(escape(self._message))
        elif not self._quiet:
            self._console.print(f"[cyan]∙[/] {escape(self._message)}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live:
            self._progress.stop()

    def update(self, message: str) -> None:
        if message == self._message:
            return
        self._message = message
        if self._task is not None:
            self._progress.update(self._task, description=escape(message))
        elif not self._quiet:
            self._console.print(f"[cyan]∙[/] {escape(message)}")
