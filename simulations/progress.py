"""Progress bars for long work in medfed-sim and the benchmarks (baselines, runs of many configurations): rich's,
on stderr, shown only in a terminal and unless quiet, so piped or parsed output never holds one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


@contextmanager
def progress_bar(description: str, total: int, quiet: bool = False) -> Iterator[Callable[[], None]]:
    """A bar of `total` steps, gone when done; yields the function that advances it one step."""
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield lambda: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def with_progress(items: Sequence[T], description: str, quiet: bool = False) -> Iterable[T]:
    """The items, one by one, while a bar counts them."""
    with progress_bar(description, len(items), quiet) as step:
        for item in items:
            yield item
            step()
