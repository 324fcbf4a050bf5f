"""Progress bars with the time left, for every long step a job runs: one rich bar, drawn by the driver.

- ``bar(description, unit)``: a transient bar ``<description> ━━━━ done/total <unit> elapsed ~left``; it leaves
  the terminal when its step ends (the job then prints a line saying what the step did), and draws nothing when
  the output is not a terminal (a log file gets the job's lines, not frames of a bar).
- ``rows_of(progress, task, operator)``: while a Ray Data pipeline runs in this process, the bar follows the rows
  that the named operator (``EmbedImages``, ``TrunkFeatures``) has produced. Ray Data calls an execution callback
  of ours at every step of its scheduling loop (``RowsDone``, registered by jobs/ray_runtime.py); Ray Data's own
  bars stay off (``ray.progress_bars``).
- Training stages run in Ray Train workers: the driver follows their epochs through ``train_metrics.jsonl``
  (jobs/train.py), one line per epoch above the bar.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ray.data._internal.execution.execution_callback import ExecutionCallback  # Ray: the executor's hook
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from jobs.command import console

BAR_WIDTH = 24  # with the counts and both times, a bar line stays within an 80-column terminal


def bar(description: str, unit: str, show: bool = True) -> Progress:
    """A bar for one step of a job: description, bar, done/total, unit, time elapsed, time left."""
    columns = (
        TextColumn(description),
        BarColumn(bar_width=BAR_WIDTH),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(compact=True),
        TextColumn("left"),
    )
    # piped or redirected, a live display has nothing to redraw and its stop leaves an empty line behind: none
    return Progress(*columns, console=console, disable=not (show and console.is_terminal), transient=True)


class _Watch:
    """The bar a running Ray Data pipeline advances: rows produced by the operator whose name holds ``operator``."""

    def __init__(self, progress: Progress, task: TaskID, operator: str):
        self.progress, self.task, self.operator = progress, task, operator

    def update(self, executor: Any) -> None:
        # the executor's operators and their metrics are Ray Data 2.60's internals (the series pyproject.toml pins):
        # a release without them leaves the bar where it is, never an error
        topology = getattr(executor, "_topology", None) or {}
        rows = 0
        for op in topology:
            if self.operator in getattr(op, "name", ""):
                rows += int(getattr(getattr(op, "metrics", None), "rows_task_outputs_generated", 0) or 0)
        self.progress.update(self.task, completed=rows)


_watching: _Watch | None = None
_lock = threading.Lock()


@contextmanager
def rows_of(progress: Progress, task: TaskID, operator: str) -> Iterator[None]:
    """Within the block, Ray Data pipelines run by this process advance ``task`` by the rows ``operator`` made."""
    global _watching
    with _lock:
        _watching = _Watch(progress, task, operator)
    try:
        yield
    finally:
        with _lock:
            _watching = None


class RowsDone(ExecutionCallback):
    """Called by Ray Data's streaming executor at each step of its scheduling loop, in the process that runs the
    pipeline; it advances the bar of ``rows_of`` when one is open there (a Ray worker's pipeline finds none)."""

    def on_execution_step(self, executor: Any) -> None:
        watch = _watching
        if watch is not None:
            watch.update(executor)


@contextmanager
def count_bar(description: str, total: int, unit: str = "images") -> Iterator[Callable[[int], None]]:
    """A bar over ``total`` things done in this process; the block is given the function it advances it with."""
    with bar(description, unit) as progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.advance(task, done)


@contextmanager
def pipeline_bar(description: str, total: int, operator: str, unit: str = "images") -> Iterator[None]:
    """A bar over the ``total`` rows a Ray Data pipeline run within the block feeds through ``operator``."""
    with bar(description, unit) as progress:
        task = progress.add_task(description, total=total)
        with rows_of(progress, task, operator):
            yield
