"""The one exception hierarchy of lookalike, and the per-file problem record.

::

    LookalikeError                 base; ``exit_code`` says how the CLI exits
     ├── ConfigError               bad parameters or paths, found before any work (exit 2)
     ├── ReportError               a report/plan file that is missing, corrupt or tampered with
     ├── JournalError              an undo journal that cannot be read or replayed (exit 2)
     ├── DecodeError               one file could not be read as an image (``reason`` is a code)
     ├── PartialFailure            a run finished, but some of its items failed (exit 1)
     ├── TooManyPairs              a hash search would pair more values than fit in memory
     └── Interrupted               Ctrl-C stopped a run that changes files (exit 130)

Per-file failures during a scan never raise out of :func:`lookalike.scan`: they become
:class:`Problem` records in the result and the report, and the scan goes on. Each carries one
stable reason code from :data:`REASONS` (``Problem.error``, ``DecodeError.reason``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "REASONS",
    "RETRYABLE",
    "ConfigError",
    "DecodeError",
    "Interrupted",
    "JournalError",
    "LookalikeError",
    "PartialFailure",
    "Problem",
    "ReportError",
    "TooManyPairs",
    "first_line",
]

#: Every reason code a :class:`Problem` can carry, with what it means. Codes are stable:
#: scripts may match on them. Every code any module emits is listed (tests/test_errors.py
#: checks the sources).
REASONS: dict[str, str] = {
    # walk: listing folders (never opens image files)
    "broken-symlink": "a followed symbolic link whose target does not exist",
    "symlink-loop": "a symbolic link loop, or a folder reached twice through links",
    "not-a-regular-file": "a FIFO, socket or device named like an image; never opened (in a tar "
    "shard: a symbolic link, folder or device entry)",
    "permission-denied": "the file or folder may not be read (EACCES/EPERM)",
    "vanished": "the file disappeared between listing and reading",
    "not-found": "a path named on the command line or in a file list does not exist",
    "bad-path": "a path the OS cannot take (a NUL byte in a file list's line)",
    "name-too-long": "the OS refuses the path as too long (ENAMETOOLONG)",
    "os-error": "any other OS error while listing a folder or stat-ing a file",
    # read: one file's bytes
    "read-error": "an OS error while reading (EIO, a stale network mount, ...)",
    "changed-during-scan": "size or mtime changed while the file was read (being written?)",
    # decode: bytes to pixels
    "empty-file": "the file has 0 bytes",
    "unsupported-format": "not an image, or a format or variant lookalike cannot decode "
    "(12-bit JPEG, HEIC without pillow-heif, PostScript: never run, ...)",
    "truncated": "the image data ends early (a partial download or copy)",
    "corrupt": "the image data is damaged",
    "too-large": "more pixels than the max_pixels limit (a decompression bomb?), refused before "
    "decoding; or a file bigger than any image within the limit",
    "timeout": "reading and decoding took longer than the decode_timeout; the worker was stopped",
    "worker-crashed": "the worker process died on this file (a crash in a decoder)",
    # hash
    "hash-failed": "the decoded picture could not be hashed",
    # remote inputs (lookalike.inputs.remote): object stores, file lists, tar shards, Parquet
    "list-failed": "listing an input (a folder URL, a tar shard, a Parquet file) failed on its "
    "worker; its files were not scanned",
    "compressed-tar": "a gzip-compressed tar shard; its members cannot be read by range (use "
    "plain .tar shards)",
    "not-tar": "an input read as a tar shard is not a tar file",
    "truncated-tar": "a tar shard ends early (a partial download or copy); the images before "
                     "that point are read",
    "not-parquet": "an input read as Parquet is not a Parquet file (or lacks the column)",
    "null-cell": "a Parquet cell (a dataset's row) that holds no image: it is null",
    # apply: the group is skipped or the file left untouched; nothing is lost
    "changed": "the file (or another member of its group) changed since the scan: size, mtime "
    "or digest differ, or it is gone; its group is skipped, rescan to act on it",
    "outside-roots": "the path resolves outside the scanned folders (a tampered report or an "
    "escaping symbolic link); not touched",
    "keeper-changed": "the file kept is gone, unreadable, not a regular file, has another digest "
    "than the report recorded, or was replaced during the run; the group (or that file) is "
    "left untouched",
    "same-file": "the file to remove is the kept file under another path (a hard link, a "
    "symbolic link or an overlapping root), not a copy; the group is skipped",
    "in-use": "another lookalike apply is acting on the file, or keeps it; not touched: run "
    "this one again once the other has finished",
    "failed": "the file operation failed; it was rolled back (or undo will finish that) and "
    "the run went on",
    # undo
    "undo-failed": "an operation could not be undone; it stays in the journal: fix the cause "
    "and run undo again",
}

#: The codes of :data:`REASONS` that are not remembered for a file (hash cache, resumed Parquet
#: output): the next scan tries the file again, because the cause is passing (a crash, a file
#: being written, an unreadable mount) or depends on this run's options (``max_pixels``,
#: ``decode_timeout``).
RETRYABLE: frozenset[str] = frozenset({
    "vanished", "permission-denied", "os-error", "read-error", "changed-during-scan",
    "too-large", "timeout", "worker-crashed"})


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
    """An undo journal cannot be created, read or replayed (not a journal, missing, corrupt);
    nothing was changed."""

    exit_code = 2


class DecodeError(LookalikeError):
    """One file could not be turned into pixels.

    ``reason`` is a stable, machine-readable code (``truncated``, ``unsupported-format``,
    ``too-large``, ``permission-denied``, ...); the message is for humans.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PartialFailure(LookalikeError):
    """A run finished, but some of its items failed; each was reported on its own already.

    Raised by the command line after a library call whose result says so (unreadable query
    images, failed file operations), and by :func:`lookalike.calibrate` when fewer than 2 of
    its sampled images could be read (no measurement to return); the library returns the
    other such results.
    """

    exit_code = 1


class TooManyPairs(LookalikeError):
    """A search at this radius would pair more hash values than fit in memory; nothing was
    searched. The message says which threshold to lower."""


class Interrupted(LookalikeError):
    """Ctrl-C stopped a run that changes files part-way; ``journal`` records every change.

    Raised instead of ``KeyboardInterrupt`` where the journal matters to the user: it is how
    the changes are undone, or the run finished.
    """

    exit_code = 130

    def __init__(self, journal: str, *, undoing: bool = False) -> None:
        super().__init__(f"interrupted; the journal {journal} records every change made")
        self.journal = journal
        #: True when an undo was stopped: running it again finishes putting files back.
        self.undoing = undoing


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One file that a stage could not handle; recorded, counted and reported, never fatal.

    Attributes:
        path: absolute path (or URL) of the file.
        stage: the stage that failed: ``walk``, ``read``, ``decode`` or ``hash`` in a scan;
            ``apply`` or ``undo`` for a file operation.
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


def first_line(exc: BaseException) -> str:
    """The first line of what ``exc`` says (its type's name if nothing), for a one-line
    message: a third party's own message can run to a hundred lines."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
