"""Executors run the per-file hashing work: in-process, on local processes, or on Dask.

All share one contract (:class:`~lookalike.executors.base.Executor`), so the pipeline never
knows which engine runs it.
"""

from .base import Executor, SerialExecutor
from .local import ProcessExecutor

__all__ = ["Executor", "ProcessExecutor", "SerialExecutor", "make_executor"]


def make_executor(engine: str = "local", workers: int | None = None,
                  scheduler: str | None = None) -> Executor:
    """Build the executor for ``engine`` (``local`` or ``dask``); ``workers=1`` is in-process."""
    if engine == "dask":
        from .dask import DaskExecutor

        return DaskExecutor(address=scheduler, workers=workers)
    if engine != "local":
        from ..errors import ConfigError

        raise ConfigError(f"unknown engine {engine!r}; use 'local' or 'dask'")
    if workers == 1:
        return SerialExecutor()
    return ProcessExecutor(workers)
