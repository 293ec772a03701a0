"""The one exception hierarchy of lookalike, and the per-file problem record.

::

    LookalikeError                 base; ``exit_code`` says how the CLI exits
     ├── ConfigError               bad parameters or paths, found before any work (exit 2)
     ├── ReportError               a report/plan file that is missing, corrupt or tampered with
     ├── JournalError              an undo journal that cannot be read or replayed
     └── DecodeError               one file could not be read as an image (``reason`` is a code)

Per-file failures during a scan never raise out of :func:`lookalike.scan`: they become
:class:`Problem` records in the result and the report, and the scan goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "DecodeError",
    "JournalError",
    "LookalikeError",
    "Problem",
    "ReportError",
]


class LookalikeError(Exception):
    """Base class of every error lookalike raises on purpose."""

    exit_code = 1


class ConfigError(LookalikeError, ValueError):
    """A parameter or path is wrong; nothing was done. The message says how to fix it."""

    exit_code = 2


class ReportError(LookalikeError):
    """A report or plan cannot be used (missing, wrong schema version, tampered paths)."""

    exit_code = 2


class JournalError(LookalikeError):
    """An undo journal cannot be read or replayed."""


class DecodeError(LookalikeError):
    """One file could not be turned into pixels.

    ``reason`` is a stable, machine-readable code (``truncated``, ``unsupported-format``,
    ``too-large``, ``permission-denied``, ...); the message is for humans.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One file that a stage could not handle; recorded, counted and reported, never fatal.

    Attributes:
        path: absolute path (or URL) of the file.
        stage: pipeline stage that failed: ``walk``, ``read``, ``decode`` or ``hash``.
        error: stable reason code, e.g. ``truncated`` or ``permission-denied``.
        message: one human-readable line.
    """

    path: str
    stage: str
    error: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "stage": self.stage, "error": self.error,
                "message": self.message}
