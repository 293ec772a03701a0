"""The executor contract, per-item work, and the in-process executor used by tests and
``--workers 1``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Executor", "PerItemWork", "SerialExecutor", "run_per_item"]

T = TypeVar("T")
R = TypeVar("R")
C = TypeVar("C")


class Executor(Protocol):
    """Runs ``fn`` over work items and yields ``(item, result_or_exception)`` as they finish.

    ``fn`` is a picklable top-level callable that handles per-file failures itself; an
    exception here means the whole item failed (a crashed worker, a lost node), and the
    caller decides whether to retry. Items are pulled lazily, so memory stays bounded.
    """

    workers: int

    @property
    def batch_size_hint(self) -> int | None:
        """The largest batch worth sending as one work item when the caller names none, for
        engines whose per-item cost is high (Dask); ``None``: the scan's default batch."""

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]
                      ) -> Iterator[tuple[T, R | BaseException]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: Any) -> None: ...


class PerItemWork(Generic[T, R, C]):
    """A work function over a chunk of items (files) whose results come one item at a time.

    The executor runs the loop, so that its time limit applies per item rather than per
    chunk: :class:`~lookalike.executors.local.ProcessExecutor` counts every result
    :meth:`results` yields as progress and stops a worker that yields none for
    :attr:`timeout` seconds. Calling the work runs the same loop in place (any executor can
    run it as a plain function): ``work(chunk) == work.gather(list(work.results(chunk)))``.

    Subclasses implement :meth:`results` and :meth:`gather`, and may set :attr:`timeout`.
    """

    __slots__ = ()

    #: Seconds one item may take before the process executor stops its worker (``None``:
    #: no limit).
    timeout: float | None = None

    def results(self, chunk: Any) -> Iterator[R]:
        """Yield one result per item of ``chunk``, each as soon as it is done; a bad item
        should become a result, not an exception (an exception fails the whole chunk)."""
        raise NotImplementedError

    def gather(self, results: list[R]) -> C:
        """The chunk's result from its items' results, in order."""
        raise NotImplementedError

    def __call__(self, chunk: Any) -> C:
        return run_per_item(self, chunk)


def run_per_item(work: PerItemWork[Any, Any, C], chunk: Any,
                 progress: Callable[[], None] | None = None) -> C:
    """Run ``work`` over ``chunk``, calling ``progress()`` after each item's result."""
    results = []
    for result in work.results(chunk):
        if progress is not None:
            progress()
        results.append(result)
    return work.gather(results)


class SerialExecutor:
    """Runs everything in the calling process, in order. Deterministic; good for tests."""

    workers = 1
    batch_size_hint = None

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]
                      ) -> Iterator[tuple[T, R | BaseException]]:
        for item in items:
            try:
                yield item, fn(item)
            except Exception as exc:  # the driver turns this into a retry / problem
                yield item, exc

    def close(self) -> None:
        pass

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
