"""A pool of local worker processes that survives crashing and hanging work.

Each worker is a process with its own pipe and runs one work item at a time, so the parent
always knows which item a worker holds:

- a worker that dies (a segfault in a decoder, ``os._exit``, the OOM killer) costs only its
  own item, which is yielded with :class:`WorkerCrashed`; a fresh process takes its place and
  the other workers never notice;
- a worker that makes no progress for ``timeout`` seconds is killed and replaced, and its
  item is yielded with :class:`WorkerTimeout`. Progress is the start of an item and, for a
  :class:`~lookalike.executors.base.PerItemWork` (the scan's hashing work), every result it
  yields: the worker runs that work's per-file loop itself, so the limit applies per file,
  not per chunk. The parent checks a shared counter a few times per ``timeout``; workers
  pay one shared-memory increment per file and nothing else.

The pipeline retries a failed chunk file by file, so the one file that crashes or hangs is
reported (``worker-crashed`` / ``timeout``) and its neighbours are hashed as usual.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from lookalike.executors.base import PerItemWork, run_per_item

__all__ = ["ProcessExecutor", "WorkerCrashed", "WorkerTimeout", "heartbeat"]

T = TypeVar("T")
R = TypeVar("R")

# Set in each worker process: the shared progress counters and this worker's slot.
_beats: Any = None
_slot = 0


def heartbeat() -> None:
    """Tell the executor that this worker is still making progress (a new file started).

    A no-op outside a :class:`ProcessExecutor` worker. Prefer writing the work as a
    :class:`~lookalike.executors.base.PerItemWork`, whose results the executor counts as
    progress itself; this remains for work functions that are not.
    """
    if _beats is not None:
        _beats[_slot] += 1


class WorkerCrashed(RuntimeError):
    """The worker process handling this item died (signal, ``os._exit``, OOM kill)."""

    reason = "worker-crashed"


class WorkerTimeout(TimeoutError):
    """The item made no progress within the time limit; its worker was killed."""

    reason = "timeout"


def _worker_main(conn: Connection, beats: Any, slot: int, inherited: list[int]) -> None:
    global _beats, _slot
    # Ctrl-C is handled once, by the parent, which kills the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker inherits the parent's ends of its siblings' pipes; holding them would
    # keep those siblings alive (no EOF) if the parent were killed.
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    _beats, _slot = beats, slot
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if task is None:
            return
        fn, item = task
        try:
            if isinstance(fn, PerItemWork):  # the executor runs the per-item loop
                out: tuple[bool, Any] = (True, run_per_item(fn, item, heartbeat))
            else:
                out = (True, fn(item))
        except Exception as exc:  # the work function's bug or a lost item: the parent decides
            out = (False, _portable(exc))
        try:
            conn.send(out)
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent is gone
        except Exception as exc:  # an unpicklable result
            conn.send((False, RuntimeError(f"cannot send the result back: {exc!r}")))


def _portable(exc: Exception) -> Exception:
    # An exception whose __init__ takes other arguments than it stores fails to unpickle in
    # the parent; send a plain stand-in then. Only failures pay for the check.
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


@dataclass(slots=True)
class _Worker:
    process: Any
    conn: Connection
    slot: int
    item: Any = None
    busy: bool = False
    beat: int = 0
    progress_at: float = 0.0


class ProcessExecutor:
    """Runs work items on ``workers`` processes, one item per worker at a time.

    Args:
        workers: processes to run (default: all cores); started on first use.
        timeout: seconds an item may go without progress before its worker is killed and the
            item yielded with :class:`WorkerTimeout`. ``None`` (default) uses the work
            function's own ``timeout`` attribute if it has one (see
            :class:`~lookalike.executors.base.PerItemWork`), else no limit.
        mp_context: a :mod:`multiprocessing` context (default: the platform's).

    A dead worker costs only its own item (yielded with :class:`WorkerCrashed`); it is
    replaced and the rest of the work goes on.
    """

    batch_size_hint = None  # a local item costs microseconds of IPC: the default batch

    def __init__(self, workers: int | None = None, *, timeout: float | None = None,
                 mp_context: Any = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.timeout = timeout
        self._ctx = mp_context or multiprocessing.get_context()
        self._beats: Any = None
        self._pool: list[_Worker | None] = []

    # -- the pool --------------------------------------------------------------------------

    def _start(self, slot: int) -> _Worker:
        if self._beats is None:
            # Shared progress counters, one per slot, written only by that slot's worker.
            self._beats = self._ctx.RawArray("Q", self.workers)
        parent, child = self._ctx.Pipe(duplex=True)
        forked = self._ctx.get_start_method() == "fork"
        inherited = [w.conn.fileno() for w in self._pool if w is not None] if forked else []
        if forked:
            inherited.append(parent.fileno())
        proc = self._ctx.Process(target=_worker_main, name=f"lookalike-worker-{slot}",
                                 args=(child, self._beats, slot, inherited), daemon=True)
        proc.start()
        child.close()  # so that the parent sees EOF when the worker dies
        return _Worker(proc, parent, slot)

    def _discard(self, w: _Worker, kill: bool) -> None:
        if kill and w.process.is_alive():
            w.process.kill()
        w.process.join(timeout=5)
        w.conn.close()
        self._pool[w.slot] = None

    # -- the contract ----------------------------------------------------------------------

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]
                      ) -> Iterator[tuple[T, R | BaseException]]:
        """Run ``fn`` over ``items``; yield ``(item, result or exception)`` as they finish."""
        timeout = self.timeout if self.timeout is not None else getattr(fn, "timeout", None)
        if not self._pool:
            self._pool = [None] * self.workers
        it = iter(items)
        try:
            exhausted = self._fill(fn, it)
            while True:
                busy = [w for w in self._pool if w is not None and w.busy]
                if not busy:
                    return
                outcomes = self._collect(busy, timeout)
                if not exhausted:
                    # Refill before yielding: the caller's bookkeeping overlaps with work.
                    exhausted = self._fill(fn, it)
                yield from outcomes
        except BaseException:
            self.close(cancel=True)
            raise

    def _fill(self, fn: Callable[[Any], Any], it: Iterator[Any]) -> bool:
        """Hand an item to every idle slot, starting workers lazily; True when ``it`` ran out."""
        for slot in range(self.workers):
            w = self._pool[slot]
            if w is not None and w.busy:
                continue
            try:
                item = next(it)
            except StopIteration:
                return True
            if w is None:
                w = self._pool[slot] = self._start(slot)
            self._dispatch(w, fn, item)
        return False

    def _dispatch(self, w: _Worker, fn: Callable[[Any], Any], item: Any) -> None:
        w.item, w.busy = item, True
        w.beat = self._beats[w.slot]
        w.progress_at = time.monotonic()
        # A worker that died while idle: _collect sees the dead process and reports the item.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            w.conn.send((fn, item))

    def _collect(self, busy: list[_Worker], timeout: float | None) -> list[tuple[Any, Any]]:
        """Wait until a busy worker finishes, dies or runs out of time; return outcomes."""
        wait_s = None
        if timeout is not None:
            # Wake a few times per limit to read the progress counters.
            poll = min(1.0, timeout / 4)
            soonest = min(w.progress_at for w in busy) + timeout
            wait_s = max(0.0, min(poll, soonest - time.monotonic()))
        handles: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = set(wait(handles, timeout=wait_s))
        now = time.monotonic()
        outcomes: list[tuple[Any, Any]] = []
        for w in busy:
            item = w.item
            if w.conn in ready:
                try:
                    _, value = w.conn.recv()
                except (EOFError, OSError):  # the worker died, maybe in the middle of sending
                    outcomes.append((item, self._crashed(w)))
                    continue
                except Exception as exc:  # a result that does not unpickle here
                    value = exc
                w.item, w.busy = None, False
                outcomes.append((item, value))
            elif w.process.sentinel in ready:
                outcomes.append((item, self._crashed(w)))
            elif timeout is not None:
                beat = self._beats[w.slot]
                if beat != w.beat:
                    w.beat, w.progress_at = beat, now
                elif now - w.progress_at > timeout:
                    self._discard(w, kill=True)
                    outcomes.append((item, WorkerTimeout(
                        f"no progress for {timeout:g} s (worker stopped)")))
        return outcomes

    def _crashed(self, w: _Worker) -> WorkerCrashed:
        self._discard(w, kill=True)
        code = w.process.exitcode
        if code is not None and code < 0:
            try:
                why = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                why = f"killed by signal {-code}"
        else:
            why = f"exit code {code}"
        return WorkerCrashed(f"worker process {why}")

    def close(self, cancel: bool = False) -> None:
        """Stop the workers. ``cancel`` (Ctrl-C, errors) kills them at once instead of
        letting them finish their item: workers only read files, the parent owns all writes."""
        pool, self._pool = self._pool, []
        live = [w for w in pool if w is not None]
        for w in live:
            if cancel or w.busy:
                w.process.kill()
            else:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
        deadline = time.monotonic() + 5
        for w in live:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            w.conn.close()

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(cancel=exc[0] is not None)

    def __repr__(self) -> str:
        return f"ProcessExecutor(workers={self.workers}, timeout={self.timeout})"
