"""The executor contract and the in-process executor used by tests and ``--workers 1``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

__all__ = ["Executor", "SerialExecutor"]

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over work items and yields ``(item, result_or_exception)`` as they finish.

    ``fn`` is a picklable top-level callable that handles per-file failures itself; an
    exception here means the whole item failed (a crashed worker, a lost node), and the
    caller decides whether to retry. Items are pulled lazily, so memory stays bounded.
    """

    workers: int

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]
                      ) -> Iterator[tuple[T, R | BaseException]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: Any) -> None: ...


class SerialExecutor:
    """Runs everything in the calling process, in order. Deterministic; good for tests."""

    workers = 1

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
