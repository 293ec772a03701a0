"""Executors run per-item work themselves: the process executor's time limit is per item."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lookalike.executors import PerItemWork, ProcessExecutor, SerialExecutor
from lookalike.executors.local import WorkerTimeout


@dataclass(frozen=True)
class Sleeper(PerItemWork[float, float, tuple[float, ...]]):
    """Sleeps each item's seconds; the chunk's result is the items, in order."""

    timeout: float | None = None

    def results(self, chunk: list[float]) -> Iterator[float]:
        for seconds in chunk:
            time.sleep(seconds)
            yield seconds

    def gather(self, results: list[float]) -> tuple[float, ...]:
        return tuple(results)


def _sleep_all(chunk: list[float]) -> tuple[float, ...]:
    """The same work as a plain function: the executor sees only the whole chunk."""
    for seconds in chunk:
        time.sleep(seconds)
    return tuple(chunk)


def test_per_item_work_runs_as_a_plain_function_anywhere():
    work = Sleeper()
    assert work([0.0, 0.0]) == (0.0, 0.0)
    out = dict((tuple(k), v) for k, v in SerialExecutor().map_unordered(work, [[0.0], []]))
    assert out == {(0.0,): (0.0,), (): ()}


@pytest.mark.slow
def test_process_executor_limits_each_item_not_the_chunk():
    # 1.8 s a chunk, never 1 s without a finished item: per-item work runs to the end;
    # the plain function doing the same is stopped, and so is a single slow item.
    long_chunk, slow_item = (0.3,) * 6, (1.6,)
    with ProcessExecutor(2) as ex:
        out = {tuple(k): v for k, v in ex.map_unordered(Sleeper(timeout=1.0),
                                                         [list(long_chunk), list(slow_item)])}
        assert out[long_chunk] == long_chunk
        assert isinstance(out[slow_item], WorkerTimeout)
    with ProcessExecutor(1, timeout=1.0) as ex:
        (_, plain), = ex.map_unordered(_sleep_all, [list(long_chunk)])
        assert isinstance(plain, WorkerTimeout)
