"""Executors run the per-file hashing work: in-process, on local processes, or on Dask.

All share one contract (:class:`~lookalike.executors.base.Executor`), so the pipeline never
knows which engine runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lookalike.errors import ConfigError
from lookalike.executors.base import Executor, PerItemWork, SerialExecutor

if TYPE_CHECKING:
    from lookalike.executors.local import ProcessExecutor

__all__ = ["Executor", "PerItemWork", "ProcessExecutor", "SerialExecutor", "make_executor"]


def __getattr__(name: str) -> Any:
    # The process pool (multiprocessing) loads on first use: a scan answered from the hash
    # cache never needs it.
    if name == "ProcessExecutor":
        from lookalike.executors.local import ProcessExecutor

        return ProcessExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_executor(engine: str = "local", workers: int | None = None,
                  scheduler: str | None = None) -> Executor:
    """Build the executor for ``engine`` (``local`` or ``dask``); ``workers=1`` is in-process."""
    if engine == "dask":
        from lookalike.executors.dask import DaskExecutor

        return DaskExecutor(address=scheduler, workers=workers)
    if engine != "local":
        raise ConfigError(f"unknown engine {engine!r}; use 'local' or 'dask'")
    if workers == 1:
        return SerialExecutor()
    from lookalike.executors.local import ProcessExecutor

    return ProcessExecutor(workers)
