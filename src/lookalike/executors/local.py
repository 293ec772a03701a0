"""A pool of local worker processes with bounded in-flight work."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["ProcessExecutor"]

T = TypeVar("T")
R = TypeVar("R")


def _ignore_sigint() -> None:
    # Ctrl-C is handled once, by the parent, which cancels work and stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ProcessExecutor:
    """Runs work items on ``workers`` processes; at most ``2 x workers`` items in flight.

    A worker that dies (segfault in a decoder, OOM kill) breaks the pool: the items in flight
    are yielded with the ``BrokenProcessPool`` error and a fresh pool takes the rest.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, initializer=_ignore_sigint)

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]
                      ) -> Iterator[tuple[T, R | BaseException]]:
        if self._pool is None:
            self._pool = self._new_pool()
        it = iter(items)
        inflight: dict[Future[R], T] = {}
        limit = 2 * self.workers
        exhausted = False
        try:
            while True:
                while not exhausted and len(inflight) < limit:
                    try:
                        item = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    inflight[self._submit(fn, item)] = item
                if not inflight:
                    return
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                broken = False
                for fut in done:
                    item = inflight.pop(fut)
                    exc = fut.exception()
                    if isinstance(exc, BrokenProcessPool):
                        broken = True
                    yield item, (exc if exc is not None else fut.result())
                if broken:
                    # Everything still in flight died with the pool: report it, start afresh.
                    for item in list(inflight.values()):
                        yield item, BrokenProcessPool("worker process died")
                    inflight.clear()
                    self._restart()
        except BaseException:
            for fut in inflight:
                fut.cancel()
            self.close(cancel=True)
            raise

    def _submit(self, fn: Callable[[T], R], item: T) -> Future[R]:
        assert self._pool is not None
        try:
            return self._pool.submit(fn, item)
        except BrokenProcessPool:
            self._restart()
            return self._pool.submit(fn, item)

    def _restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def close(self, cancel: bool = False) -> None:
        """Stop the pool. ``cancel`` (Ctrl-C, errors) kills workers at once instead of
        letting queued chunks finish: workers only read files, the parent owns all writes."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not cancel:
            pool.shutdown(wait=True)
            return
        # Python 3.14 has terminate_workers(); before that the process table is private.
        procs = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(timeout=5)

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(cancel=exc[0] is not None)
