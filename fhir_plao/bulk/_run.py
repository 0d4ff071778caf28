"""What a bulk push and a bulk pull share: workers fed from one bounded stream in one task
group, the run's clock, the progress line, and each result reported as it comes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.abc

from fhir_plao.bulk._progress import Progress
from fhir_plao.bulk._records import DeadLetter

__all__ = ["BulkRun"]

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Summary(Protocol):
    failed: int
    seconds: float


Summary = TypeVar("Summary", bound=_Summary)


class BulkRun(Generic[Item, Result, Summary]):
    """A run over many items: ``concurrency`` workers (:meth:`work`, one item at a time) fed by
    :meth:`feed`; :meth:`finished` says how many items are done, for the progress line."""

    def __init__(
        self,
        client: Any,
        concurrency: int,
        dead_letter: DeadLetter,
        summary: Summary,
        progress: Progress | None,
        on_result: Callable[[Result], None] | None,
    ) -> None:
        self.client = client
        self.concurrency = concurrency
        self.dead_letter = dead_letter
        self.summary = summary
        self.progress = progress
        self.on_result = on_result

    async def pool(
        self,
        feed: Callable[[anyio.abc.ObjectSendStream[Item]], Awaitable[None]],
        work: Callable[[Item], Awaitable[None]],
        then: Callable[[], Awaitable[None]] | None = None,
    ) -> Summary:
        """Run ``work`` on every item ``feed`` sends, ``concurrency`` at a time, then ``then``
        (within the run's time); the summary."""
        started = time.perf_counter()
        send, receive = anyio.create_memory_object_stream[Item](self.concurrency)

        async def worker(items: anyio.abc.ObjectReceiveStream[Item]) -> None:
            async with items:
                async for item in items:
                    await work(item)

        try:
            with single_exception():
                async with anyio.create_task_group() as group:
                    for _ in range(self.concurrency):
                        group.start_soon(worker, receive.clone())
                    receive.close()
                    async with send:
                        await feed(send)
            if then is not None:
                await then()
        finally:
            self.summary.seconds = time.perf_counter() - started
            if self.progress is not None:
                self.show_progress(force=True)
                self.progress.finish()
        return self.summary

    def finished(self) -> int:
        raise NotImplementedError

    def report(self, result: Result) -> None:
        self.show_progress()
        if self.on_result is not None:
            self.on_result(result)

    def show_progress(self, *, force: bool = False) -> None:
        if self.progress is not None:
            self.progress.update(self.finished(), self.summary.failed, force=force)


@contextlib.contextmanager
def single_exception() -> Iterator[None]:
    """Raise a task group's lone exception as itself, not wrapped in an exception group."""
    try:
        yield
    except BaseExceptionGroup as group:
        exc: BaseException = group
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        raise exc from None
