"""Writing an output file (a report, a page, a list) whole or not at all."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
import stat
from collections.abc import Iterable, Sequence
from typing import Any

from lookalike.errors import LookalikeError

__all__ = ["csv_text", "special_file", "write_new", "write_text"]

#: A file made here and nowhere else: never one already there, never through a link.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def write_text(path: str | os.PathLike[str], text: str, what: str, *,
               newline: str = "") -> None:
    """Write ``text`` to ``path`` in one step: to a new temporary file beside it, then moved
    over it (``os.replace``), so ``path`` holds either its old content or all of the new.

    The temporary name is new each time and created exclusively, never through a link: a
    fixed ``NAME.tmp`` followed a symbolic link left under that name (and overwrote the
    image it pointed to), and two scans writing one report took each other's file. A failed
    write leaves no temporary file (a full disk kept a partial page).

    A ``path`` that is not a regular file (``/dev/null``, ``/dev/stdout``, a named pipe) is
    written to as it is: moving a file over it replaced the device with a file, for every
    program on the machine. A symbolic link stays a link: the file it names is replaced.

    Raises:
        LookalikeError: the file cannot be written (says ``what`` it is and the OS's reason).
    """
    out = os.fspath(path)
    if special_file(out):
        try:
            with open(out, "w", encoding="utf-8", errors="surrogateescape",
                      newline=newline) as fh:
                fh.write(text)
        except OSError as exc:
            raise LookalikeError(f"cannot write the {what} {out}: {exc.strerror or exc}; "
                                 "choose another path") from None
        return
    out = os.path.realpath(out)
    folder = os.path.dirname(out)
    tmp = None
    try:
        while tmp is None:
            # A short name of its own: one built on the output's name could pass the
            # file system's 255-byte limit where the output's name does not.
            name_tried = os.path.join(folder, f".lookalike-{secrets.token_hex(8)}.tmp")
            with contextlib.suppress(FileExistsError):
                fd = os.open(name_tried, _NEW_FILE, 0o666)  # the umask applies, as to any file
                tmp = name_tried
        with open(fd, "w", encoding="utf-8", errors="surrogateescape", newline=newline) as fh:
            fh.write(text)
        os.replace(tmp, out)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise LookalikeError(f"cannot write the {what} {out}: {exc.strerror or exc}; "
                             "choose another path") from None


def special_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is (or links to) something other than a regular file or a folder: a
    device, a pipe, a terminal (``/dev/null``, ``/dev/stdout``). Such an output is written
    as it is (:func:`write_text`), and nothing is written beside it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # not there yet (or a link to nothing): it will be a file
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_new(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` as a new file at ``path``, inside a folder of lookalike's own (the
    review page's thumbnails): whatever is there under that name is removed first, and the
    file is created exclusively, so a symbolic link left there is never followed (one
    named like a thumbnail had the image it pointed to overwritten).

    Raises:
        OSError: as the OS says.
    """
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    with open(os.open(path, _NEW_FILE, 0o666), "wb") as fh:
        fh.write(data)


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    """``rows`` as CSV text (RFC 4180: CRLF line ends). With them every field holding a line
    break of either kind is quoted: with ``\n`` ends, Python's writer left a name holding a
    lone ``\r`` bare, and readers split its row in two."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()
