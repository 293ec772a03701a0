"""How library code talks to the outside world: an injected reporter, never ``print``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from lookalike.errors import Problem

__all__ = ["NullReporter", "Reporter"]


@runtime_checkable
class Reporter(Protocol):
    """Receives progress and per-file problems from long-running library calls (an object
    with these five methods; :class:`NullReporter` is one that ignores everything)."""

    def phase(self, number: int, total: int, name: str, size: int | None) -> None:
        """A new numbered phase starts ("2/4: hashing"); ``size`` is its item count if known."""

    def advance(self, n: int = 1) -> None:
        """``n`` more items of the current phase are done."""

    def problem(self, problem: Problem) -> None:
        """One file could not be handled; the run goes on."""

    def info(self, message: str) -> None:
        """A line worth telling the user."""

    def close(self) -> None:
        """The run is over (stop progress bars)."""


class NullReporter:
    """A reporter that ignores everything (the library default)."""

    def phase(self, number: int, total: int, name: str, size: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def problem(self, problem: Problem) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass
