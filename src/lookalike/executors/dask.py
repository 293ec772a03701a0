"""Run the hashing work on a Dask cluster (``pip install 'lookalike[dask]'``).

The executor contract is the one of :class:`~lookalike.executors.base.Executor`: the pipeline
submits picklable work items and gets ``(item, result_or_exception)`` back as they finish, so
the scan code is the same on one laptop and on a few hundred cores.

``distributed`` is imported when a :class:`DaskExecutor` is built, never at ``import
lookalike``; a missing extra is a :class:`~lookalike.errors.ConfigError` that says what to
install.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from lookalike.config import import_extra
from lookalike.errors import ConfigError

__all__ = ["DaskExecutor"]

T = TypeVar("T")
R = TypeVar("R")

# Worker deaths Dask tolerates per task on a local cluster we start (see __init__).
LOCAL_ALLOWED_FAILURES = 1
# How often the in-flight limit follows the cluster's size (adaptive clusters grow and shrink).
_RESIZE_SECONDS = 2.0


def _import_distributed() -> Any:
    return import_extra("distributed", "the dask engine", "dask")


class DaskExecutor:
    """Runs work items as Dask tasks; at most ``max_in_flight`` of them at a time.

    Without ``address`` (and without ``client``) it starts a ``LocalCluster`` of ``workers``
    single-threaded worker *processes* (decoders hold the GIL and may crash; a process is
    the unit that can die alone). With ``address`` it connects to a running scheduler
    (``tcp://host:8786``, or whatever ``dask-jobqueue``/``dask-kubernetes`` printed); the
    workers there must have lookalike installed and be able to read the images (see
    ``docs/cluster.md``).

    Failure policy: when a worker process dies, Dask itself re-runs the tasks it held, up to
    the scheduler's ``distributed.scheduler.allowed-failures`` (Dask's default 3; 1 on a
    local cluster started here, see :data:`LOCAL_ALLOWED_FAILURES`). Past that, or
    when a task raises, the item is yielded with its exception and the pipeline retries it
    file by file, then reports its files as ``worker-crashed`` problems: a dead worker never
    loses the scan.

    Streaming: items are pulled lazily and at most ``max_in_flight`` futures exist at once
    (default ``2 x`` the cluster's threads, at least 4), so neither the client nor the
    scheduler holds the whole work list; results are released as soon as they are yielded.

    Args:
        address: scheduler address; ``None`` starts a local cluster.
        workers: worker processes of the local cluster (default: all cores). Ignored with
            ``address``/``client``: the cluster's own size counts there.
        client: an existing ``distributed.Client`` to use (not closed by :meth:`close`).
        max_in_flight: upper bound on submitted, unfinished tasks.
        timeout: seconds to wait for the scheduler when connecting.

    Raises:
        ConfigError: dask.distributed is not installed, or the scheduler cannot be reached.
    """

    def __init__(self, address: str | None = None, workers: int | None = None, *,
                 client: Any = None, max_in_flight: int | None = None,
                 timeout: float = 30) -> None:
        distributed = _import_distributed()
        if workers is not None and workers < 1:
            raise ConfigError("workers must be >= 1")
        if max_in_flight is not None and max_in_flight < 1:
            raise ConfigError("max_in_flight must be >= 1")
        self._max_in_flight = max_in_flight
        self._cluster: Any = None
        self._own_client = client is None
        if client is not None:
            self._client = client
        elif address is not None:
            self._client = self._connect(distributed, address, timeout)
        else:
            n = workers or os.cpu_count() or 1
            import dask

            # Saturation 1.0: the scheduler hands a single-threaded worker one task at a time,
            # so a worker that dies takes only the batch it was running with it, not the
            # next one it had queued (Dask's default 1.1 queues a second task per thread).
            with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
                self._cluster = self._local_cluster(distributed, n)
            self._client = distributed.Client(self._cluster, set_as_default=False)
        self.workers = self._threads()
        self._resized = time.monotonic()

    #: Largest batch :func:`lookalike.pipeline.scan` picks unless told otherwise: a Dask task
    #: costs milliseconds of scheduling and transfer (benchmarks/bench_dask.py: 2.2x the
    #: local pool's time at 16 tiny images a task, 1.3x at 64, 1.0x at 256).
    batch_size_hint = 256

    @staticmethod
    def _connect(distributed: Any, address: str, timeout: float) -> Any:
        """A client of the scheduler at ``address``, or a ConfigError within ``timeout``
        seconds (plus a few): the client's own timeout covers connecting, not the handshake
        (an address answering HTTP hung for ever), and bytes that are not Dask's made it
        fail with any error (one tried to allocate 2.8 EiB)."""
        out: dict[str, Any] = {}

        async def handshake() -> None:
            comm = await distributed.comm.connect(address, timeout=timeout)
            await comm.close()

        def connect() -> None:
            try:
                # First Dask's handshake alone, on a loop of its own, given up cleanly when
                # it does not come: a Client stuck in it stayed on Dask's shared loop, and
                # closing another client later hung on it.
                asyncio.run(asyncio.wait_for(handshake(), timeout + 1))
                # Never the process's default client: Dask code that asks for the default
                # (the caller's) must get the caller's.
                out["client"] = distributed.Client(address, timeout=timeout,
                                                   set_as_default=False)
            except BaseException as exc:  # handed to the caller below
                out["error"] = exc

        # A thread (a daemon: one stuck must not keep the process alive), so that asyncio
        # runs whether or not the caller has an event loop running (a notebook).
        thread = threading.Thread(target=connect, name="lookalike-dask-connect", daemon=True)
        thread.start()
        thread.join(timeout + 5)
        if "client" in out:
            return out["client"]
        why = (f"no answer in {timeout:g} s"
               if thread.is_alive() or isinstance(out.get("error"), TimeoutError)
               else f"{type(out['error']).__name__}: {out['error']}")
        raise ConfigError(f"cannot reach the Dask scheduler at {address}: {why}; check the "
                          "scheduler address (e.g. tcp://host:8786) and that the scheduler "
                          "is running")

    @staticmethod
    def _local_cluster(distributed: Any, n: int) -> Any:
        # The worker processes start with Ctrl-C ignored (an ignored SIGINT is inherited, and
        # Python then installs no KeyboardInterrupt handler): the terminal sends it to the
        # whole process group, and each worker printed its own traceback (~70 lines) while
        # this process, which closes the cluster, says "interrupted".
        previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is not threading.main_thread() or previous is None:
            # Only the main thread may set handlers; None: a handler not set from Python
            # (an embedding program's), which could not be put back.
            return DaskExecutor._start_local(distributed, n)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return DaskExecutor._start_local(distributed, n)
        finally:
            signal.signal(signal.SIGINT, previous)

    @staticmethod
    def _start_local(distributed: Any, n: int) -> Any:
        return distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
            # The scan reports what failed itself (a dead worker's batch is retried file by
            # file): Dask's own ERROR lines ("marked as failed because 2 workers died")
            # showed even with -q, for a scan whose results were complete.
            silence_logs=logging.CRITICAL,
            scheduler_kwargs={
                # One re-run by Dask, then the pipeline's file-by-file retry isolates a file
                # that kills its worker (Dask's default 3 costs 4 deaths a batch).
                "allowed_failures": LOCAL_ALLOWED_FAILURES,
                # No dashboard (no bokeh needed), and the scheduler's HTTP endpoint on a free
                # port: the default 8787 may belong to another cluster (a warning).
                "dashboard": False, "dashboard_address": "127.0.0.1:0",
            },
        )

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` in use (for dashboards, ``client.run``, tests)."""
        return self._client

    def _threads(self) -> int:
        try:
            return max(1, sum(self._client.nthreads().values()))
        except Exception:  # a scheduler that is briefly unreachable keeps the last size
            return max(1, getattr(self, "workers", 1))

    def _limit(self) -> int:
        if self._max_in_flight is not None:
            return self._max_in_flight
        now = time.monotonic()
        if now - self._resized > _RESIZE_SECONDS:
            self.workers = self._threads()
            self._resized = now
        return max(4, 2 * self.workers)

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]
                      ) -> Iterator[tuple[T, R | BaseException]]:
        """Run ``fn`` on every item on the cluster; yield ``(item, result_or_exception)``.

        A task that raised, was cancelled or lost too many workers (``KilledWorker``) is
        yielded with that exception; the caller decides what to retry.
        """
        distributed = _import_distributed()
        client = self._client
        it = iter(items)
        inflight: dict[Any, T] = {}
        # This client's loop, not the default client's: another client made default since
        # (or one stuck connecting) left the results unheard and the scan waiting for ever
        # (tests/test_dask.py hung now and then after its unreachable-scheduler tests).
        done_q = distributed.as_completed(loop=client.loop)
        exhausted = False
        try:
            while True:
                limit = self._limit()
                while not exhausted and len(inflight) < limit:
                    try:
                        item = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    # pure=False: equal items (a retried chunk) are distinct tasks, never a
                    # cached result of a failed one.
                    fut = client.submit(fn, item, pure=False)
                    inflight[fut] = item
                    done_q.add(fut)
                if not inflight:
                    return
                fut = next(done_q)
                item = inflight.pop(fut)
                yield item, _outcome(fut)
                fut.release()  # the worker may drop the result now
        except BaseException:
            for fut in inflight:
                fut.cancel()
            raise

    def close(self) -> None:
        """Disconnect; a cluster or client this executor started is shut down too."""
        client, self._client = self._client, None
        if client is not None and self._own_client:
            client.close()
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "local cluster" if self._cluster is not None else "scheduler"
        return f"DaskExecutor({where}, workers={self.workers})"


def _outcome(fut: Any) -> Any:
    if fut.status == "finished":
        try:
            return fut.result()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            # The result lived on a worker that died before we fetched it; the recomputation
            # failed too (KilledWorker) or was cancelled. The item failed as a whole.
            return exc
    if fut.status == "error":
        try:
            return fut.exception()  # a raising task, or KilledWorker after repeated deaths
        except Exception as exc:  # the exception itself could not be deserialised
            return exc
    from concurrent.futures import CancelledError

    # cancelled (by us, or the scheduler restarted) or lost: the item failed as a whole.
    return CancelledError(f"task {fut.key} ended as {fut.status!r}")
