"""The undo journal: an append-only, fsync'd JSON Lines file written ahead of every file change.

Line 1 is a header; every later line is one event::

    {"kind": "lookalike-journal", "schema_version": 1, "created", "tool", "action",
     "report_path", "report_created", "roots", "to", "token",
     "folder_rules" (only when the plan had folder rules)}
    {"event": "intent", "op": 7, "action": "move", "path", "size", "mtime_ns", "digest",
     "dev", "ino", ...action fields...}        written and fsync'd BEFORE the change
    {"event": "done", "op": 7}                 after the change is durable
    {"event": "failed", "op": 7, "error"}      the change failed and was rolled back
    {"event": "rolled-back", "op": 7}          an unfinished change was undone by recovery
    {"event": "undone", "op": 7}               ``lookalike undo`` restored it
    {"event": "resume", "time"}                a later ``apply`` appended to this journal

Op numbers grow across resumed runs. Because the intent is durable before anything on disk
changes, every state a ``kill -9`` can leave behind is one the undo code recognises by looking
at the files (see :mod:`lookalike.actions.apply`); the ``done`` line is a shortcut, not a
requirement.

An event of a kind this version does not know (written by another version) is skipped when
the journal is replayed. Which scanned folder a quarantine folder holds is not journaled: its
marker says so (:data:`lookalike.actions.plan.MARKER`).

A torn last line (the process died while writing it) is ignored; a broken line anywhere else
makes the journal unusable (:class:`~lookalike.errors.JournalError`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lookalike.errors import JournalError, LookalikeError
from lookalike.inputs.read import Refused, read_regular

#: Larger than any journal (a few hundred bytes per file acted on): not read whole beyond it.
_MAX_JOURNAL_BYTES = 1 << 40

__all__ = ["JOURNAL_KIND", "JOURNAL_SCHEMA", "Journal", "OpRecord", "backup_dir_of", "fsync_dir"]

JOURNAL_KIND = "lookalike-journal"
JOURNAL_SCHEMA = 1

#: Final states of an op; anything else (only an ``intent``) is unfinished.
_CLOSED = {"done", "failed", "rolled-back", "undone"}


def backup_dir_of(journal: str) -> str:
    """Where the journal ``journal`` keeps replaced files until undo: ``<journal>.backup``."""
    return journal + ".backup"


def fsync_dir(path: str) -> None:
    """Make a rename/link/unlink in folder ``path`` durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (and Windows) cannot fsync a folder; the file fsyncs still hold
    finally:
        os.close(fd)


def _lock(fd: int, path: str) -> None:
    """Hold an exclusive lock on the journal while it is open for appending: two runs
    appending to one journal would number their operations alike. (POSIX ``flock``; where
    there is none, e.g. Windows, nothing is locked.)"""
    try:
        import fcntl
    except ImportError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise JournalError(f"journal {path} is in use by another apply or undo; let it finish "
                           "(or stop it) first") from None
    except OSError as exc:
        # A file system without locks (some network and FUSE mounts): go on unlocked, as
        # before locks were taken, rather than refuse every apply and undo there.
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise


#: The fields every intent has, and their types; ``move`` adds ``dst`` and the links add
#: ``keeper`` (a journal edited by hand or damaged must not make undo act on other paths).
_INTENT_FIELDS: dict[str, type] = {"op": int, "action": str, "path": str, "size": int,
                                   "mtime_ns": int}
_ACTION_FIELDS = {"delete": (), "move": ("dst",), "hardlink": ("keeper",),
                  "symlink": ("keeper",)}


def _intact(ev: dict[str, Any]) -> bool:
    """Whether an intent event has the fields (and types) its action needs."""
    if not all(type(ev.get(k)) is t for k, t in _INTENT_FIELDS.items()):
        return False
    extra = _ACTION_FIELDS.get(ev["action"])
    return extra is not None and all(isinstance(ev.get(k), str) for k in extra)


@dataclass(slots=True)
class OpRecord:
    """One journaled operation: its intent fields and the last event seen for it."""

    seq: int
    intent: dict[str, Any]
    status: str = "unfinished"  # or done / failed / rolled-back / undone
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in _CLOSED

    @property
    def action(self) -> str:
        return str(self.intent["action"])

    @property
    def path(self) -> str:
        return str(self.intent["path"])


class Journal:
    """An open journal file. Use :meth:`create` or :meth:`open`; every append is fsync'd."""

    def __init__(self, path: str, header: dict[str, Any], ops: dict[int, OpRecord],
                 fd: int) -> None:
        self.path = path
        self.header = header
        self.ops = ops
        self._fd = fd
        #: Groups whose keep list a done op records (recorded until one is done, not by
        #: every op: a group of thousands of keepers and operations made a journal of
        #: hundreds of megabytes; not by an op rolled back or undone, whose run did not act).
        self.kept_recorded = {g for r in ops.values()
                              if r.status == "done" and "kept" in r.intent
                              and isinstance(g := r.intent.get("group"), int)}

    @property
    def backup_dir(self) -> str:
        """Where replaced files are kept until undo (:func:`backup_dir_of`), beside the
        journal file itself (named through a symbolic link, the link's target)."""
        return backup_dir_of(os.path.realpath(self.path))

    @property
    def token(self) -> str:
        return str(self.header.get("token", "j"))

    @classmethod
    def create(cls, path: str | os.PathLike[str], header: dict[str, Any]) -> Journal:
        """Create a new journal at ``path`` (which must not exist) and write its header.

        Raises:
            JournalError: the file exists or cannot be created.
        """
        p = os.path.abspath(os.fspath(path))
        head = {"kind": JOURNAL_KIND, "schema_version": JOURNAL_SCHEMA,
                "created": datetime.now(UTC).isoformat(timespec="seconds"), **header}
        try:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except FileExistsError:
            raise JournalError(f"journal {p} already exists; choose another journal path") from None
        except OSError as exc:
            raise JournalError(f"cannot create journal {p}: {exc.strerror or exc}; "
                               "choose a writable journal path") from None
        j = cls(p, head, {}, fd)
        try:
            _lock(fd, p)
            j._write(head)
            fsync_dir(os.path.dirname(p))  # the journal itself must survive a crash
        except BaseException as exc:
            j.close()
            # Nothing was done yet: no headerless file is left behind to be mistaken for a
            # journal to undo or resume.
            with contextlib.suppress(OSError):
                os.unlink(p)
            cause = exc.__cause__
            if isinstance(cause, OSError):  # the header could not be written (_write)
                raise JournalError(f"cannot create journal {p}: {cause.strerror or cause}; "
                                   "nothing was changed. Free some space or choose another "
                                   "journal path") from None
            raise
        return j

    @staticmethod
    def unstarted(path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is a journal whose run stopped (``kill -9``) between creating the
        file and writing its header line: empty, or the header's first bytes without its
        line's end. No operation is journaled before the header, so nothing was done under
        it; undo and resume took it for no journal at all. Anything else (a user's file, a
        journal with a header) is not."""
        start = json.dumps({"kind": JOURNAL_KIND}, ensure_ascii=False)[:-1].encode()
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_size > 1 << 16:
                return False
            with open(path, "rb") as fh:
                data = fh.read(1 << 16)
        except OSError:
            return False
        return b"\n" not in data and (data.startswith(start) or start.startswith(data))

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, writable: bool = True) -> Journal:
        """Read an existing journal (and keep it open for appending if ``writable``).

        Raises:
            JournalError: missing, not a lookalike journal, or corrupt before its last line.
        """
        p = os.path.abspath(os.fspath(path))
        hint = "name the undo journal (.jsonl) that applying the plan wrote (it says where)"
        if os.path.isdir(p):
            raise JournalError(f"{p} is a folder, not an undo journal; {hint}")
        fd = -1
        try:
            if not stat.S_ISREG(os.stat(p).st_mode):  # a FIFO's open would wait for a writer
                raise JournalError(f"{p} is not a regular file (a FIFO, socket or device), so "
                                   f"not an undo journal; {hint}")
            if writable:  # locked before it is read: what is read stays true while we append
                fd = os.open(p, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NONBLOCK", 0))
                _lock(fd, p)
            raw, _ = read_regular(p, _MAX_JOURNAL_BYTES)
            return cls._parse(p, raw, fd, hint)
        except BaseException as exc:
            if fd >= 0:
                os.close(fd)
            if isinstance(exc, FileNotFoundError):
                raise JournalError(f"journal not found: {p}; {hint}") from None
            if isinstance(exc, Refused):
                raise JournalError(f"cannot read journal {p}: {exc}") from None
            if isinstance(exc, OSError):
                raise JournalError(f"cannot read journal {p}: {exc.strerror or exc}") from None
            raise

    @classmethod
    def _parse(cls, p: str, raw: bytes, fd: int, hint: str) -> Journal:
        lines = raw.split(b"\n")
        # The header first: anything else (a report, an image, a text file) is not a journal,
        # whatever its later lines look like.
        first = next((n for n, line in enumerate(lines) if line.strip()), len(lines))
        head: Any = None
        if first < len(lines):
            try:
                head = json.loads(lines[first].decode("utf-8", "surrogateescape"))
            except (ValueError, RecursionError):  # RecursionError: '[' * 100000
                head = None
        if not isinstance(head, dict) or head.get("kind") != JOURNAL_KIND:
            raise JournalError(f"{p} is not a lookalike journal (no journal header); {hint}")
        if type(head.get("schema_version")) is not int or head["schema_version"] != JOURNAL_SCHEMA:
            raise JournalError(f"{p} is a lookalike journal of schema version "
                               f"{head.get('schema_version')!r}; this version reads "
                               f"{JOURNAL_SCHEMA} only")
        events: list[dict[str, Any]] = [head]
        torn = False
        for n in range(first + 1, len(lines)):
            line = lines[n]
            if not line.strip():
                continue
            try:
                ev = json.loads(line.decode("utf-8", "surrogateescape"))
            except (ValueError, RecursionError):
                if n == len(lines) - 1:
                    # A torn final write (the process died, or the disk filled, mid-line):
                    # that event never was; an intent is written before its op starts.
                    torn = True
                    break
                ev = None
            if not isinstance(ev, dict) or (ev.get("event") == "intent" and not _intact(ev)):
                raise JournalError(f"{p}: line {n + 1} is corrupt; the journal cannot be "
                                   "replayed safely (restore files from it by hand)")
            events.append(ev)
        ops: dict[int, OpRecord] = {}
        for ev in events[1:]:
            kind, seq = ev.get("event"), ev.get("op")
            if kind == "intent":
                assert seq is not None  # an intent is _intact: its "op" is an int
                ops[int(seq)] = OpRecord(int(seq), ev)
            elif isinstance(kind, str) and kind in _CLOSED and type(seq) is int and seq in ops:
                # Any other event is skipped: ``resume``, one of another version, or one
                # whose fields are of other types (a list is no key to look up).
                ops[seq].status = str(kind)
                ops[seq].error = ev.get("error")
        if fd >= 0 and raw and not raw.endswith(b"\n"):
            if torn:  # cut it off: sealed with a newline, it would be a corrupt middle line
                os.ftruncate(fd, raw.rfind(b"\n") + 1)
                os.fsync(fd)
            else:  # a whole event but for its newline: end it, so the next starts cleanly
                os.write(fd, b"\n")
        return cls(p, events[0], ops, fd)

    def next_seq(self) -> int:
        return max(self.ops, default=0) + 1

    def intent(self, seq: int, fields: dict[str, Any]) -> OpRecord:
        """Durably record that op ``seq`` is about to happen. Call BEFORE touching any file."""
        ev = {"event": "intent", "op": seq, **fields}
        self._write(ev)
        rec = OpRecord(seq, ev)
        self.ops[seq] = rec
        return rec

    def mark(self, rec: OpRecord, status: str, error: str | None = None) -> None:
        """Record the outcome of an op (``done``, ``failed``, ``rolled-back``, ``undone``)."""
        if status not in _CLOSED:
            raise ValueError(f"unknown journal status {status!r}")
        ev: dict[str, Any] = {"event": status, "op": rec.seq}
        if error:
            ev["error"] = error
        self._write(ev)
        rec.status = status
        group = rec.intent.get("group")
        if status == "done" and "kept" in rec.intent and isinstance(group, int):
            self.kept_recorded.add(group)
        rec.error = error

    def note(self, event: dict[str, Any]) -> None:
        """Append an informational event (e.g. ``resume``)."""
        self._write(event)

    def done_paths(self, action: str | None = None) -> set[str]:
        """Paths whose op finished (``done``), optionally only for ``action``."""
        return {r.path for r in self.ops.values()
                if r.status == "done" and (action is None or r.action == action)}

    def kept_lists(self, action: str | None = None) -> dict[int, tuple[str, ...]]:
        """The keep list of each group that a finished op (of ``action``) acted on, as the
        run that acted decided it (recorded by ops until one of the group's is done;
        journals before that have none)."""
        out: dict[int, tuple[str, ...]] = {}
        for r in sorted(self.ops.values(), key=lambda r: r.seq):
            kept, group = r.intent.get("kept"), r.intent.get("group")
            if (r.status == "done" and (action is None or r.action == action)
                    and isinstance(group, int) and isinstance(kept, list)
                    and all(isinstance(k, str) for k in kept)):
                out.setdefault(group, tuple(kept))
        return out

    def unfinished(self) -> list[OpRecord]:
        return [r for r in sorted(self.ops.values(), key=lambda r: r.seq) if not r.finished]

    def _write(self, event: dict[str, Any]) -> None:
        if self._fd < 0:
            raise JournalError(f"journal {self.path} is open read-only")
        line = (json.dumps(event, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape")
        # One write() per event on an O_APPEND descriptor, then fsync: the event is either
        # entirely on disk before we go on, or (crash mid-write) a torn last line we ignore.
        try:
            while line:
                line = line[os.write(self._fd, line):]
            os.fsync(self._fd)
        except OSError as exc:  # a full disk, a lost mount: no change may follow unrecorded
            raise LookalikeError(
                f"cannot write to the journal {self.path} ({exc.strerror or exc}); the run "
                "stopped before changing anything more. Free some space (or fix the disk) "
                "and run the same command again: it goes on from this journal (and "
                f"`lookalike undo {self.path}` puts back what an apply did)") from exc

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
