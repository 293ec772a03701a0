"""Reading a local file's bytes safely, and digesting files that were hashed.

A file is opened without blocking on a FIFO or device, refused unread when it is bigger
than any image within the pixel limit could be, and refused when it changed while it was
read (a download still being written is not hashed as if it were the file).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from lookalike.errors import Problem
from lookalike.inputs.walk import FileEntry, os_error_reason

if TYPE_CHECKING:
    from lookalike.model import ImageRecord

__all__ = ["Refused", "digest_files", "file_digest", "max_file_bytes", "read_problem",
           "read_regular"]


class Refused(Exception):
    """A file :func:`read_regular` will not (or could not consistently) read."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def max_file_bytes(max_pixels: int) -> int:
    """The largest file worth reading for an image of at most ``max_pixels``: 8 bytes per
    pixel (16-bit RGBA, uncompressed), at least 64 MiB. Bigger files are refused unread as
    ``too-large``, so one huge file named like an image cannot exhaust a worker's memory."""
    return max(64 << 20, 8 * max_pixels)


# O_NONBLOCK: a FIFO swapped in after the walk must not block a worker (regular files ignore
# it); O_NOCTTY: opening a terminal device must not make it ours.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def read_regular(path: str, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file ``path`` and its ``stat`` as read.

    Raises:
        OSError: the file cannot be opened or read.
        Refused: not a regular file (``not-a-regular-file``), more than ``max_bytes``
            (``too-large``), or it changed while it was read (``changed-during-scan``).
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO, socket or device"
            raise Refused("not-a-regular-file", f"{what}, not a regular file; not read")
        if st.st_size > max_bytes:
            raise Refused("too-large", f"{st.st_size:,} bytes, more than any image within "
                          f"the pixel limit needs ({max_bytes:,}); not read")
        # os.read into one bytes object: half the time of a buffered fh.read(). At most one
        # byte more than fstat said, so a file that grows is torn, not read to its end.
        data = os.read(fd, st.st_size + 1)
        if 0 < len(data) < st.st_size:  # a short read (FUSE, NFS, > 2 GiB)? read on
            parts, got = [data], len(data)
            while got <= st.st_size and (more := os.read(fd, st.st_size + 1 - got)):
                parts.append(more)
                got += len(more)
            data = b"".join(parts) if len(parts) > 1 else data
        after = os.fstat(fd)
    finally:
        os.close(fd)
    # One fstat more per file: a torn read (a download still being written, a sync tool
    # replacing the file) must not be hashed as if it were the file.
    if len(data) != st.st_size or (after.st_size, after.st_mtime_ns) != (
            st.st_size, st.st_mtime_ns):
        raise Refused("changed-during-scan",
                      f"the file changed while it was read ({st.st_size:,} bytes before, "
                      f"{len(data):,} read, {after.st_size:,} after); scan it again")
    return data, st


def read_problem(path: str, exc: OSError | Refused) -> Problem:
    """The ``read`` problem for an exception of :func:`read_regular`."""
    if isinstance(exc, Refused):
        return Problem(path=path, stage="read", error=exc.reason, message=exc.message)
    return Problem(path=path, stage="read", error=os_error_reason(exc, "read-error"),
                   message=f"cannot read: {exc.strerror or exc}")


def file_digest(path: str, size_bytes: int, mtime_ns: int,
                listed: FileEntry | None = None) -> str | Problem:
    """The SHA-256 of a local file's bytes, if it still is the file that was hashed.

    A file whose size or mtime differs from ``size_bytes``/``mtime_ns`` (the values its
    hash was made from), or that is no longer the file the walk ``listed`` (another file,
    or this one written again: its change time differs, though size and mtime may have
    been kept), or changes while it is read, is reported ``changed-during-scan``:
    its hash may no longer describe it, and a digest of other bytes beside it would let
    ``apply`` remove them as a copy. Never raises for a bad file. Reading and hashing
    release the GIL, so threads digest in parallel.
    """
    try:
        # Nothing longer than the hashed version is read: a file that grew has changed.
        data, st = read_regular(path, size_bytes)
    except (OSError, Refused) as exc:
        if getattr(exc, "reason", None) != "too-large":
            return read_problem(path, exc)
        st = None
    if st is None or (st.st_size, st.st_mtime_ns) != (size_bytes, mtime_ns) or (
            listed is not None and listed.ctime_ns and st.st_ctime_ns != listed.ctime_ns):
        return Problem(path=path, stage="read", error="changed-during-scan",
                       message="the file changed after it was hashed; scan it again")
    return hashlib.sha256(data).hexdigest()


def digest_files(records: Sequence[ImageRecord], workers: int,
                 listed: Mapping[str, FileEntry] | None = None
                 ) -> tuple[dict[str, str], list[Problem]]:
    """:func:`file_digest` of each record's local file on ``workers`` threads: the digests
    by path, and the problems of files that could not be digested. ``listed``: the walk's
    entries by path (each file must still be the one listed)."""
    if not records:
        return {}, []
    from concurrent.futures import ThreadPoolExecutor

    listed = listed or {}
    with ThreadPoolExecutor(max(1, min(workers, len(records)))) as pool:
        outcomes = list(pool.map(lambda r: file_digest(r.path, r.size_bytes, r.mtime_ns,
                                                       listed.get(r.path)), records))
    digests = {r.path: d for r, d in zip(records, outcomes, strict=True) if isinstance(d, str)}
    return digests, [p for p in outcomes if isinstance(p, Problem)]
