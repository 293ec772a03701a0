"""Executing a plan, write-ahead journaled, and undoing it.

(Over 600 lines on purpose: each file operation and the exact steps that undo it, from any
point a crash can leave it at, are one argument; split in two, neither half could be checked
alone.)

:func:`apply` runs a :class:`~lookalike.actions.plan.Plan` group by group. Before a group's
first op it checks that every member still has the size, mtime and SHA-256 the report
recorded (and still lies inside the scanned folders); if any does not, the whole group is
skipped with a warning.
Each op is then journaled (:mod:`lookalike.actions.journal`) before it changes anything:

``move``
    ``link(src, dst)`` then ``unlink(src)`` (a link never overwrites an existing ``dst``); across
    file systems: copy to a ``.part`` file beside ``dst``, verify the SHA-256, give it the
    name ``dst`` (a link, which never replaces a file that took the name meanwhile; a
    checked rename where the file system has no links), then unlink ``src``. Before the
    first file lands in ``Q/<name>``, the folder's marker is made
    (:data:`~lookalike.actions.plan.MARKER`, naming the op's scanned folder); a folder whose
    marker names another scanned folder (two reports of folders named alike, applied at
    once) is refused, as the plan refuses it. Undo moves the file back and restores its
    mtime (``os.utime(ns=...)``), unless the file was changed in the quarantine since: it
    comes back as it is. It leaves alone a quarantine folder whose marker names another
    scanned folder (emptied and taken by another apply since), and removes one left holding
    only its marker. A folder in the quarantine that leads elsewhere (a symbolic link into a
    scanned folder) is refused right before the link, as the plan refuses it.
``delete``
    ``unlink`` (never follows a symbolic link). **Not undoable**: the journal records what was
    deleted, but the bytes are gone. Use ``move`` to a quarantine folder for an undo.
``hardlink`` / ``symlink``
    the duplicate is first preserved in ``<journal>.backup/<op>/`` (a hard link when it is on
    the same file system, else a verified copy); then a link to the keeper is made under a
    temporary name in the duplicate's folder and moved over it with ``os.replace`` (atomic).
    Symbolic links hold the keeper's absolute path. Undo puts the preserved file back (the same
    inode when possible) and restores its mtime. The backups hold
    on to the replaced copies' space until you undo or delete the backup folder.

Crash safety: the journal's intent line is fsync'd before the first change, and every op goes
through states from which the original file is always recoverable (the source is removed only
once the destination or backup is complete). After ``kill -9`` at any point, :func:`undo`
restores everything, and :func:`recover` (run automatically by :func:`apply` on an existing
journal) rolls back the one unfinished op so that re-running the same apply resumes.

Errors: a failed op is rolled back, journaled as ``failed``, reported as a
:class:`~lookalike.errors.Problem` (stage ``apply``), and the run goes on;
:attr:`ApplyResult.ok` is then False (the CLI exits 1). Bugs propagate; the journal still
describes a recoverable state.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from lookalike.actions.journal import Journal, OpRecord, backup_dir_of, fsync_dir
from lookalike.actions.plan import (
    MARKER,
    FileState,
    GroupPlan,
    Operation,
    Plan,
    SkippedGroup,
    entry_key,
    landing_problem,
    marked_root,
    quarantine_path,
    quarantine_shelf,
    read_marker,
    same_root,
)
from lookalike.config import nearest_folder
from lookalike.errors import ConfigError, Interrupted, JournalError, Problem, ReportError
from lookalike.events import NullReporter, Reporter
from lookalike.paths import is_under
from lookalike.version import __version__

__all__ = ["ApplyResult", "UndoResult", "apply", "check_resume", "default_journal_path",
           "recover", "undo"]

#: Test hook: called with a step name at every point where a crash could leave work half done
#: (``intent``, ``move:marked``, ``move:linked``, ``move:unlinked``, ``link:backup``, ``link:tmp``,
#: ``link:replaced``, ``delete:unlinked``, ``undo:...``). Tests set it to ``os._exit``.
_crash_hook: Callable[[str], None] | None = None

_CHUNK = 1 << 20


def _crash_point(step: str) -> None:
    if _crash_hook is not None:
        _crash_hook(step)


class _Refused(OSError):
    """An op must not go ahead (the file changed, a destination exists, ...)."""


class _Untouched(_Refused):
    """An op stopped before it made or changed anything: nothing to roll back. (Rolling
    back a move whose quarantine name another run had just taken would remove that run's
    copy, taking it for ours.)"""


def _said(exc: OSError) -> str:
    """What went wrong in an op, as one line: our refusal, or the system's error and the
    path it names, both for a link or a rename (the folder that refused a hard link is the
    new name's, the second one: naming only the first blamed the kept file)."""
    if isinstance(exc, _Refused):  # its words alone: str() would start "[Errno 17] "
        return str(exc.strerror)
    names = " -> ".join(os.fsdecode(n) for n in (exc.filename, exc.filename2) if n)
    return f"{exc.strerror or exc}" + (f": {names}" if names else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyResult:
    """What :func:`apply` did.

    Attributes:
        journal: the journal path (pass it to :func:`undo`).
        done: ops carried out.
        skipped: ops not attempted because their group changed since the scan.
        skipped_groups: every group left untouched, and why: the plan's skips (e.g. the
            decisions keep no file of it) and the groups found changed here.
        failed: ops that failed (rolled back), each with its problem.
        already_done: ops an earlier, interrupted run had finished (resume).
        recovered: unfinished ops of an earlier run that were rolled back first.
    """

    journal: str
    done: tuple[Operation, ...] = ()
    skipped: tuple[Operation, ...] = ()
    skipped_groups: tuple[SkippedGroup, ...] = ()
    failed: tuple[tuple[Operation, Problem], ...] = ()
    already_done: int = 0
    recovered: int = 0

    def skips_line(self, limit: int = 3) -> str:
        """``"0 groups skipped"``, or how many and why: ``"1 group skipped: group 4 (the
        decisions keep no file of this group; ...)"``, the first ``limit`` of them named."""
        n = len(self.skipped_groups)
        text = f"{n} group{'' if n == 1 else 's'} skipped"
        if n:
            text += ": " + ", ".join(f"group {s.group} ({s.reason})"
                                      for s in self.skipped_groups[:limit])
            text += f" and {n - limit} more (listed above)" if n > limit else ""
        return text

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def bytes_done(self) -> int:
        return sum(op.size_bytes for op in self.done if op.frees)

    @property
    def backup_dir(self) -> str:
        """Where ``hardlink``/``symlink`` keep the copies they replaced, until undo."""
        return backup_dir_of(os.path.realpath(self.journal))

    @property
    def backups(self) -> tuple[Operation, ...]:
        """The done ops whose replaced copy is kept in :attr:`backup_dir` (its space is
        freed only once that folder is deleted)."""
        return tuple(op for op in self.done if op.action in ("hardlink", "symlink"))


@dataclass(frozen=True, slots=True, kw_only=True)
class UndoResult:
    """What :func:`undo` (or :func:`recover`) did.

    Attributes:
        journal: the journal replayed.
        restored: paths put back as they were.
        rolled_back: unfinished or failed ops checked and made consistent (nothing had to be
            restored, or it was restored).
        not_undoable: paths deleted by ``--action delete`` (their bytes are gone).
        failed: ops that could not be undone; they stay in the journal for another try.
    """

    journal: str
    restored: tuple[str, ...] = ()
    rolled_back: int = 0
    not_undoable: tuple[str, ...] = ()
    failed: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed


# --------------------------------------------------------------------------- small file helpers


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # a file where a folder was: no such path
        return None


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:  # a name too long for the file system names no file
        if exc.errno != errno.ENAMETOOLONG:
            raise


def _copy_verified(src: str, dst: str, size: int, digest: str | None) -> None:
    """Copy ``src`` to a new file ``dst`` with its mode and times, fsync'd, checking the bytes."""
    h = hashlib.sha256()
    flags_in = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    flags_out = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    with os.fdopen(os.open(src, flags_in), "rb") as fin, \
            os.fdopen(os.open(dst, flags_out, 0o600), "wb") as fout:
        while chunk := fin.read(_CHUNK):
            h.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    if os.path.getsize(dst) != size or (digest and h.hexdigest() != digest):
        _remove(dst)
        raise _Refused(errno.EIO, f"the copy of {src} does not match the report; not used")
    st = os.lstat(src)
    with contextlib.suppress(OSError):  # only root may give a file to another owner
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    shutil.copystat(src, dst, follow_symlinks=False)  # after chown, which clears set-id bits


def _hardlink(src: str, dst: str) -> None:
    """``link(src, dst)`` on ``src`` itself, never a symlink's target; fails if ``dst`` exists."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except NotImplementedError:  # platforms without linkat(); src was checked to be regular
        os.link(src, dst)


#: Why a hard link could not be made where a copy can: another file system, or none there
#: (Linux vfat says EPERM; FAT/exFAT on Windows EINVAL, "Incorrect function"; FUSE ENOSYS).
_NO_LINK = frozenset((errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK,
                      errno.EACCES, errno.EINVAL, errno.ENOSYS))


def _link_or_copy(src: str, dst: str, part: str, size: int, digest: str | None) -> None:
    """Make ``dst`` (which must not exist) hold ``src``'s bytes; ``src`` stays in place.
    A copy is made at ``part``, then given the name ``dst``, never over a file there (short
    of a file system without links, where a file can take the name between the check and
    the rename)."""
    try:
        _hardlink(src, dst)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
    # No hard link possible (another file system, or links unsupported): verified copy.
    _remove(part)
    _copy_verified(src, part, size, digest)
    try:
        # A link, not a rename: a rename replaces a file that took the name since it was
        # checked (another apply into the same quarantine); a link refuses it.
        _hardlink(part, dst)
    except FileExistsError:
        _remove(part)
        raise
    except OSError:
        # No link there, whatever the error says (EINVAL on FAT/exFAT under Windows, ENOSYS
        # from FUSE, ...): checked, then renamed; a real fault shows in the rename.
        if os.path.lexists(dst):
            _remove(part)
            raise FileExistsError(errno.EEXIST, "exists", dst) from None
        os.rename(part, dst)
        return
    _remove(part)  # dst holds the copy: the helper name goes


def _lock_file(path: str, exclusive: bool) -> int | None:
    """Lock the file at ``path`` (POSIX ``flock``, non-blocking) for as long as the returned
    descriptor stays open: exclusively while an op acts on it, shared while a group keeps
    it. Two runs acting on the same files (one report applied twice at once, or two reports
    that keep opposite copies) then cannot both go ahead: the second is refused the file,
    where without locks the two could remove every copy. None where nothing can be locked
    (no ``flock``, a file system without locks, a file that cannot be opened): the other
    checks still hold.

    Raises:
        BlockingIOError: another run holds a lock that conflicts.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError:
        os.close(fd)
        return None
    return fd


def _unlock(fds: Iterable[int | None]) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)


def _same_inode(st: os.stat_result | None, rec: dict[str, Any]) -> bool:
    """True if ``st`` is the very file the intent was about: its inode, size and mtime.

    The inode alone is not enough: once a move to another file system (or a link's copy)
    has freed it, the next file created may get the same number (ext4 reuses it at once).
    """
    return st is not None and stat.S_ISREG(st.st_mode) \
        and (st.st_dev, st.st_ino) == (rec.get("dev"), rec.get("ino")) \
        and st.st_size == rec["size"] and st.st_mtime_ns == rec["mtime_ns"]


def _is_original(path: str, st: os.stat_result | None, rec: dict[str, Any]) -> bool:
    """True if ``path`` holds the file the intent was about (same inode, or same bytes/mtime)."""
    if st is None or not stat.S_ISREG(st.st_mode):
        return False
    if st.st_size != rec["size"] or st.st_mtime_ns != rec["mtime_ns"]:
        return False
    if (st.st_dev, st.st_ino) == (rec.get("dev"), rec.get("ino")):
        return True
    return not rec.get("digest") or _sha256(path) == rec["digest"]


def _restore_mtime(path: str, mtime_ns: int) -> None:
    """Give ``path`` back the modification time ``mtime_ns`` if it lost it (a copy).
    Only a file's owner may set its times: a file of another user (a shared folder) linked
    back has its time already and is left alone, and one that cannot be set keeps the time
    it has. Restoring the bytes is what undo is for; setting the time of every file linked
    back failed undo in a shared folder ("Operation not permitted", review)."""
    st = os.lstat(path)
    if st.st_mtime_ns != mtime_ns:
        with contextlib.suppress(PermissionError):
            os.utime(path, ns=(st.st_atime_ns, mtime_ns))


def _prune_dirs(start: str, stop: str | None, shelf: str | None = None) -> None:
    """Remove now-empty folders from ``start`` up to (not including) ``stop``. The
    quarantine folder ``shelf`` counts as empty when it holds its marker only."""
    if not stop:
        return
    d = start
    while is_under(d, stop) and d != stop:
        try:
            if d == shelf:
                _rmdir_marked(d)
            else:
                os.rmdir(d)
        except FileNotFoundError:
            pass  # removed by an earlier pass that stopped (kill -9): its parents may remain
        except OSError:
            return
        d = os.path.dirname(d)


def _rmdir_marked(shelf: str) -> None:
    """Remove the quarantine folder ``shelf`` if it holds nothing but its marker (or not
    even that).

    Raises:
        OSError: it holds something else (then the marker stays, or is put back: another
            run of the same scanned folder may have moved a file in meanwhile).
    """
    marker = os.path.join(shelf, MARKER)
    # A marker that is no regular file (a link, a folder) raises here: it is never removed.
    was = read_marker(marker) if os.listdir(shelf) == [MARKER] else None
    if was is not None:
        os.unlink(marker)
    try:
        os.rmdir(shelf)
    except OSError:
        if was is not None:
            with contextlib.suppress(OSError):  # already made again by that run: it stays
                _write_marker(marker, was)
        raise
    fsync_dir(os.path.dirname(shelf))


# --------------------------------------------------------------------------- checks


def _changed(state: FileState, real_roots: Iterable[str], verify: str) -> str | None:
    """Why ``state.path`` no longer matches the report, or None if it is unchanged."""
    st = _lstat(state.path)
    if st is None:
        return "is gone"
    if stat.S_ISLNK(st.st_mode):
        return "is now a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_size != state.size_bytes:
        return f"changed size ({state.size_bytes} -> {st.st_size} bytes)"
    if st.st_mtime_ns != state.mtime_ns:
        return "was modified"
    real = os.path.realpath(state.path)
    if not any(is_under(real, r) for r in real_roots):
        return f"now resolves to {real}, outside the scanned folders"
    if verify == "digest" and state.digest:
        try:
            if _sha256(state.path) != state.digest:
                return "has different content (SHA-256)"
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
    return None


# --------------------------------------------------------------------------- executing ops


def _paths(j: Journal, seq: int, action: str, path: str, dst: str | None) -> dict[str, Any]:
    """Deterministic helper paths of op ``seq``, recorded in its intent for recovery (and
    derived again when it is replayed: :func:`_trusted`).

    Helper names never contain the file's own name: a name near the file system's limit
    (255 bytes) plus a suffix would be too long, and a move that cannot be undone is one
    this journal must not make."""
    tag = f".lookalike-{j.token}-{seq}"
    d, name = os.path.split(path)
    out: dict[str, Any] = {"tmp": os.path.join(d, f"{tag}.tmp"),
                           "restore_tmp": os.path.join(d, f"{tag}.restore")}
    if action == "move":
        assert dst is not None
        out["dst"] = dst
        out["part"] = os.path.join(os.path.dirname(dst), f"{tag}.part")
    elif action in ("hardlink", "symlink"):
        out["backup"] = os.path.join(j.backup_dir, str(seq), name)
        out["backup_part"] = os.path.join(j.backup_dir, str(seq), f"{tag}.part")
    return out


def _trusted(j: Journal, r: OpRecord) -> tuple[dict[str, Any] | None, str | None]:
    """Op ``r`` of ``j`` as undo may replay it, or why it may not (a journal edited by hand
    or damaged). Undo removes an op's helper files and the copy it moved: the helper names
    are derived again from the journal (never taken from it), the moved copy must lie in the
    journal's quarantine and the file in its scanned folders."""
    rec = r.intent
    roots = j.header.get("roots")
    if not isinstance(roots, list) or not any(
            isinstance(root, str) and is_under(rec["path"], root) for root in roots):
        return None, f"{rec['path']} is not inside the folders the journal's report scanned"
    top = j.header.get("to")
    if rec["action"] == "move":
        try:  # where the plan puts this file: a dst edited to another op's copy is not it
            where = quarantine_path(rec["path"], roots, top) if isinstance(top, str) else None
        except ReportError:
            where = None
        if where != rec["dst"]:
            return None, (f"its quarantined copy {rec['dst']} is not where the journal's "
                          f"quarantine puts {rec['path']}")
    # Derived, so that a journal moved with its backup folder, or named another way, finds
    # its backups beside it, and an edited one cannot name other files as helpers.
    return _derived(j, {**rec, **_paths(j, r.seq, rec["action"], rec["path"],
                                        rec.get("dst"))}), None


def _derived(j: Journal, rec: dict[str, Any]) -> dict[str, Any]:
    """Intent ``rec`` with, for a move, its quarantine folder ``Q/<name>`` (``shelf``) and
    the scanned folder it holds (``root``), derived from the journal's header (never taken
    from a journal line); None for a root that is a single file (no folder of its own)."""
    if rec["action"] != "move":
        return rec
    roots, top = j.header.get("roots"), j.header.get("to")
    held = (quarantine_shelf(rec["path"], [r for r in roots if isinstance(r, str)], top)
            if isinstance(roots, list) and isinstance(top, str) else None)
    shelf, root = held if held is not None else (None, None)
    return {**rec, "shelf": shelf, "root": root}


def _landing(dst: str, top: str | None, real_roots: Sequence[str]) -> None:
    """Refuse a move whose folder in the quarantine ``top`` leads elsewhere (checked by the
    plan, and again here: a folder may have become a symbolic link since).

    Raises:
        _Untouched: it leads into a scanned folder, or out of the quarantine.
    """
    why = landing_problem(dst, top, real_roots) if top is not None else None
    if why is not None:
        raise _Untouched(errno.EPERM, f"{why}; not moved there")


def _write_marker(marker: str, text: bytes) -> None:
    """Create the marker file ``marker`` holding ``text``, fsync'd with its folder.

    Raises:
        FileExistsError: there is one (or anything else under that name) already.
    """
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_BINARY", 0), 0o644)
    try:
        try:
            view = memoryview(text)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _remove(marker)  # a marker cut short would name no folder, and stay
        raise
    fsync_dir(os.path.dirname(marker))


def _claim(shelf: str, root: str) -> None:
    """Make sure the quarantine folder ``shelf`` (made) holds the files of ``root``: make
    its marker if it has none, then read it back (another apply may have made it first).

    Raises:
        _Untouched: the marker names another scanned folder, or cannot be read.
    """
    marker = os.path.join(shelf, MARKER)
    if not os.path.lexists(marker) and os.listdir(shelf):
        # Files and no marker: a quarantine of an earlier version, whose undo must not find
        # it claimed by another folder. Used as then, unmarked.
        return
    for _ in range(50):
        with contextlib.suppress(FileExistsError):
            _write_marker(marker, os.fsencode(root) + b"\n")
            return
        try:
            named = marked_root(shelf)
        except OSError as exc:
            raise _Untouched(errno.EPERM, f"the marker {marker} of the quarantine folder "
                             f"cannot be read ({exc.strerror or exc}); not moved there"
                             ) from None
        if named is not None:
            if same_root(named, root):
                return
            raise _Untouched(errno.EEXIST, f"the quarantine folder {shelf} holds the files of "
                             f"another scanned folder, {named}; not moved there")
        time.sleep(0.01)  # being written by another run (or just removed by an undo)
    raise _Untouched(errno.EEXIST, f"the marker {marker} names no scanned folder (a run "
                     f"stopped while writing it?); not moved there. Delete it if {shelf} "
                     f"holds only files of {root}")


def _execute(rec: dict[str, Any], *, top: str | None = None,
             real_roots: Sequence[str] = ()) -> None:
    """Carry out op ``rec`` (its intent journaled, with :func:`_derived`'s fields). A move
    checks that its folder lies in the quarantine ``top`` and out of ``real_roots``, and
    that its quarantine folder holds its own scanned folder's files (:func:`_claim`)."""
    action, path = rec["action"], rec["path"]
    if action == "delete":
        os.unlink(path)  # unlink never follows a symbolic link
        fsync_dir(os.path.dirname(path))
        _crash_point("delete:unlinked")
    elif action == "move":
        dst, part = rec["dst"], rec["part"]
        _landing(dst, top, real_roots)  # before makedirs, which would make folders through it
        if rec.get("shelf") is not None:
            # Claimed before any folder is made inside it: a run refused there leaves none.
            os.makedirs(rec["shelf"], exist_ok=True)
            _claim(rec["shelf"], rec["root"])
            _crash_point("move:marked")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            _landing(dst, top, real_roots)  # and right before the link
            if os.path.lexists(dst):
                raise FileExistsError(errno.EEXIST, "exists", dst)
            _link_or_copy(path, dst, part, rec["size"], rec.get("digest"))
        except FileExistsError:
            _remove(part)
            raise _Untouched(errno.EEXIST, f"{dst} already exists; not overwritten") from None
        fsync_dir(os.path.dirname(dst))
        _crash_point("move:linked")
        os.unlink(path)  # only now that dst holds the bytes
        fsync_dir(os.path.dirname(path))
        _crash_point("move:unlinked")
    else:
        backup, keeper, tmp = rec["backup"], rec["keeper"], rec["tmp"]
        os.makedirs(os.path.dirname(backup), exist_ok=True)
        _link_or_copy(path, backup, rec["backup_part"], rec["size"], rec.get("digest"))
        fsync_dir(os.path.dirname(backup))
        _crash_point("link:backup")
        _remove(tmp)
        if action == "hardlink":
            _hardlink(keeper, tmp)
        else:
            os.symlink(keeper, tmp)
        _crash_point("link:tmp")
        os.replace(tmp, path)  # atomic: the path is always either the file or the link
        fsync_dir(os.path.dirname(path))
        _crash_point("link:replaced")


def _restore(rec: dict[str, Any], top: str | None) -> Literal["restored", "untouched", "deleted"]:
    """Bring op ``rec``'s file back to where and how it was, whatever step it reached.

    Idempotent; works for finished ops (undo) and for ops a crash interrupted (recovery).
    Returns ``untouched`` when the original was still in place (leftovers are cleaned up),
    ``restored`` when it had to be put back, ``deleted`` for a completed delete.

    Raises:
        OSError: the file cannot be restored safely (something else took its place, or the
            preserved copy is missing); nothing is overwritten.
    """
    action, path = rec["action"], rec["path"]
    st = _lstat(path)
    if action == "delete":
        return "untouched" if _is_original(path, st, rec) else "deleted"
    if action == "move":
        return _restore_move(rec, st, top)
    return _restore_link(rec, st)


def _shelf_taken(shelf: str, root: str, dst: str) -> str | None:
    """Why undo must leave ``dst`` alone: the marker of its quarantine folder ``shelf``
    names another scanned folder than ``root``, or cannot be read; None where it names
    ``root`` or there is none."""
    try:
        named = marked_root(shelf)
    except OSError as exc:
        why = exc.strerror or exc
        return (f"the marker {os.path.join(shelf, MARKER)} cannot be read ({why}), so {dst} "
                "cannot be told from another scanned folder's file; left alone")
    if named is None or same_root(named, root):
        return None
    return (f"the quarantine folder {shelf} now holds the files of another scanned folder, "
            f"{named} (emptied and used by another apply since?): {dst} is not this "
            "journal's copy; left alone")


def _restore_move(rec: dict[str, Any], st: os.stat_result | None, top: str | None
                  ) -> Literal["restored", "untouched"]:
    path, dst = rec["path"], rec["dst"]
    _remove(rec["part"])  # an unfinished copy; the source still exists whenever it does
    _remove(rec["restore_tmp"])
    d = _lstat(dst)
    # The quarantine folder emptied since (its marker too) and taken by another scanned
    # folder of the same name: the file at ``dst`` is that one's, even of the same bytes and
    # time (``cp -a``). No marker (an earlier version's quarantine, or removed by hand):
    # the file there is judged as before, by its bytes.
    shelf = rec.get("shelf")
    taken = _shelf_taken(shelf, rec["root"], dst) if shelf is not None else None
    if _is_original(path, st, rec):
        assert st is not None
        # Back in place (put back by hand): nothing of this op is left to undo; another
        # apply's copy at ``dst`` stays where it is.
        if taken is None and d is not None and stat.S_ISREG(d.st_mode) and (
                (d.st_dev, d.st_ino) == (st.st_dev, st.st_ino)
                or (d.st_size == rec["size"] and _is_original(dst, d, rec))):
            os.unlink(dst)  # a second name or a finished copy of a file that is back in place
            fsync_dir(os.path.dirname(dst))
        if taken is None:  # folders (and the marker) it made before it stopped go too
            _prune_dirs(os.path.dirname(dst), top, shelf)
        return "untouched"
    if st is not None:
        raise _Refused(errno.EEXIST, f"{path} exists again but is another file; the moved "
                       f"file stays at {dst}")
    if d is None:
        raise _Refused(errno.ENOENT, f"neither {path} nor its quarantined copy {dst} exists; "
                       "something else moved or deleted it")
    if taken is not None:
        raise _Refused(errno.EEXIST, taken)
    if not stat.S_ISREG(d.st_mode):
        raise _Refused(errno.EINVAL, f"{dst} is no longer a regular file; not restored")
    if shelf is None and not (_same_inode(d, rec) or _is_original(dst, d, rec)):
        # A scanned single file lies at Q/<its name>, in no folder whose marker says whose
        # it is: another run's file of that name may lie there now.
        raise _Refused(errno.EEXIST, f"the file at {dst} is not the one this journal moved "
                       f"(changed since, or another run's file of that name); left alone: "
                       f"if it is {path}, move it back by hand")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _link_or_copy(dst, path, rec["restore_tmp"], d.st_size, None)
    if (d.st_size, d.st_mtime_ns) == (rec["size"], rec["mtime_ns"]):
        _restore_mtime(path, rec["mtime_ns"])
    # else it was changed in the quarantine: it comes back as it is, with its own mtime (the
    # old one would tell a hash cache it is the file scanned before).
    fsync_dir(os.path.dirname(path))
    _crash_point("undo:move:linked")
    os.unlink(dst)
    fsync_dir(os.path.dirname(dst))
    _prune_dirs(os.path.dirname(dst), top, shelf)
    return "restored"


def _is_our_link(rec: dict[str, Any], st: os.stat_result | None) -> bool:
    if st is None:
        return False
    if rec["action"] == "symlink":
        return stat.S_ISLNK(st.st_mode) and os.readlink(rec["path"]) == rec["keeper"]
    # Our hard link is a second name of the kept file's inode. The number alone is not
    # proof (the kept file deleted, its inode given to a new file here): the kept file must
    # still have it (under its name: edited in place is fine), or the inode must still have
    # the size and time it had when linked (the kept file renamed or saved anew elsewhere).
    ident = (rec.get("keeper_dev"), rec.get("keeper_ino"))
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != ident:
        return False
    if (st.st_size, st.st_mtime_ns) == (rec.get("keeper_size"), rec.get("keeper_mtime_ns")):
        return True
    kst = _lstat(rec["keeper"])
    return kst is not None and (kst.st_dev, kst.st_ino) == ident


def _restore_link(rec: dict[str, Any], st: os.stat_result | None
                  ) -> Literal["restored", "untouched"]:
    path, backup = rec["path"], rec["backup"]
    # Temp names are only ever extra names: the original is at ``path`` or ``backup``.
    _remove(rec["tmp"])
    _remove(rec["restore_tmp"])
    _remove(rec["restore_tmp"] + ".part")
    _remove(rec["backup_part"])
    original_here = _same_inode(st, rec)
    if not original_here and not _is_our_link(rec, st) and st is not None:
        original_here = _is_original(path, st, rec)
        if not original_here:
            raise _Refused(errno.EEXIST, f"{path} was replaced by another file after the link; "
                           f"not overwritten. The original is kept at {backup}")
    if original_here:
        _remove(backup)
        _prune_dirs(os.path.dirname(backup), os.path.dirname(os.path.dirname(backup)))
        return "untouched"
    b = _lstat(backup)
    if b is None or not stat.S_ISREG(b.st_mode):
        raise _Refused(errno.ENOENT, f"the preserved copy {backup} of {path} is missing; "
                       "cannot restore it")
    tmp = rec["restore_tmp"]
    _link_or_copy(backup, tmp, tmp + ".part", b.st_size, None)
    _restore_mtime(tmp, rec["mtime_ns"])
    _crash_point("undo:link:tmp")
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))
    _crash_point("undo:link:replaced")
    _remove(backup)
    _prune_dirs(os.path.dirname(backup), os.path.dirname(os.path.dirname(backup)))
    return "restored"


# --------------------------------------------------------------------------- public API


def _root_holding(folder: str, roots: Sequence[str]) -> str | None:
    """The scanned root that ``folder`` lies in, as named or through symbolic links; None
    if none (a journal and its backups must stay out of every scanned folder)."""
    real = os.path.realpath(folder)
    return next((r for r in roots if is_under(folder, r)
                 or is_under(real, os.path.realpath(r))), None)


def default_journal_path(p: Plan) -> str:
    """Where ``lookalike apply --yes`` writes its journal when ``--journal`` is not given.

    Inside the quarantine folder for ``move``; otherwise next to the report, unless that folder
    is inside a scanned root (a backup found by the next scan would be a new duplicate), in
    which case ``$XDG_STATE_HOME/lookalike/journals`` (default ``~/.local/state/...``).
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = p.to if p.to else os.path.dirname(p.report_path)
    if _root_holding(folder, p.roots) is not None:
        state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        folder = os.path.join(state, "lookalike", "journals")
    n = 1
    while True:
        suffix = "" if n == 1 else f"-{n}"
        candidate = os.path.join(folder, f"lookalike-journal-{stamp}{suffix}.jsonl")
        if not os.path.lexists(candidate):
            return candidate
        n += 1


def _problem(path: str, error: str, message: str, stage: str = "apply") -> Problem:
    return Problem(path=path, stage=stage, error=error, message=message)


def _replay(j: Journal, records: list[OpRecord], reporter: Reporter, *, final: str
            ) -> UndoResult:
    top = j.header.get("to")
    restored: list[str] = []
    gone: list[str] = []
    failed: list[Problem] = []
    rolled = 0
    for r in records:
        rec, why = _trusted(j, r)
        if rec is None:
            p = _problem(r.path, "undo-failed", f"op {r.seq} ({r.action}) not replayed: {why}; "
                         "the journal was edited or damaged (restore files from it by hand)",
                         "undo")
            reporter.problem(p)
            failed.append(p)
            continue
        try:
            outcome = _restore(rec, top)
        except OSError as exc:
            p = _problem(r.path, "undo-failed", f"op {r.seq} ({r.action}): {_said(exc)}",
                         "undo")
            reporter.problem(p)
            failed.append(p)
            continue
        was = r.status
        if outcome == "deleted":
            gone.append(r.path)
            if was != "done":
                j.mark(r, "done")  # the crash came after the unlink: the delete had happened
            continue
        if outcome == "restored":
            restored.append(r.path)
        if was == "done":
            j.mark(r, final)
        else:
            j.mark(r, "rolled-back")
            rolled += 1
        reporter.advance()
    return UndoResult(journal=j.path, restored=tuple(restored), rolled_back=rolled,
                      not_undoable=tuple(gone), failed=tuple(failed))


def recover(journal: str | os.PathLike[str], *, reporter: Reporter | None = None) -> UndoResult:
    """Roll back the ops a crashed ``apply`` left unfinished, so the run can be resumed.

    Finished ops stay done. Safe to call on any journal, any number of times.

    Raises:
        JournalError: the journal is missing or corrupt.
    """
    reporter = reporter or NullReporter()
    with Journal.open(journal) as j:
        return _replay(j, j.unfinished(), reporter, final="rolled-back")


def undo(journal: str | os.PathLike[str], *, reporter: Reporter | None = None) -> UndoResult:
    """Restore every file an ``apply`` changed, newest op first, from its journal.

    Moved files go back to their paths, and linked duplicates get their preserved bytes back
    (the same inode when possible), each with its recorded mtime. Unfinished ops (a crash) are
    rolled back the same way. Deleted files cannot come back: they are listed in
    :attr:`UndoResult.not_undoable`. Idempotent: undone ops are marked in the journal.

    Errors: an op that cannot be undone safely (its path was taken by another file, or its
    preserved copy is gone) is reported, left in the journal, and the rest goes on. Nothing is
    ever overwritten.

    Raises:
        JournalError: the journal is missing or corrupt.
        Interrupted: Ctrl-C stopped it (``undoing`` True); running it again finishes.

    Cost: one ``rename``/``link`` per op; reads a file only to confirm which copy is which when
    inodes cannot tell (copies across file systems).
    """
    reporter = reporter or NullReporter()
    if Journal.unstarted(journal):  # its run stopped before its header: nothing to undo
        reporter.close()
        return UndoResult(journal=os.path.abspath(os.fspath(journal)))
    with Journal.open(journal) as j:
        # A failed op was rolled back (or never began) before it was marked: replaying it
        # could take another run's file for the copy it never made.
        todo = sorted((r for r in j.ops.values()
                       if r.status not in ("undone", "rolled-back", "failed")
                       and not (r.status == "done" and r.action == "delete")),
                      key=lambda r: -r.seq)
        deleted = [r.path for r in j.ops.values() if r.status == "done" and r.action == "delete"]
        reporter.phase(1, 1, "undoing", len(todo))
        try:
            res = _replay(j, todo, reporter, final="undone")
        except KeyboardInterrupt:
            # Every op is journaled as it is put back: running undo again finishes the rest.
            raise Interrupted(j.path, undoing=True) from None
        with contextlib.suppress(OSError):
            os.rmdir(j.backup_dir)  # only if every preserved copy went back
    reporter.close()
    return UndoResult(journal=res.journal, restored=res.restored, rolled_back=res.rolled_back,
                      not_undoable=tuple(sorted({*deleted, *res.not_undoable})),
                      failed=res.failed)


def check_resume(journal: Journal, action: str, to: str | os.PathLike[str] | None) -> None:
    """Refuse to resume ``journal`` with another action or quarantine than it was begun with
    (the same absolute path: undo checks each move against the journal's quarantine, so a
    resume elsewhere, even through a link to the same folder, would be work no undo could
    put back). Called before anything is rolled back or done.

    Raises:
        JournalError: the action or the quarantine differs.
    """
    begun, into = journal.header.get("action"), journal.header.get("to")
    wanted = os.path.abspath(os.fspath(to)) if to is not None else None
    if begun != action or into != wanted:
        raise JournalError(
            f"journal {journal.path} was begun with action {begun!r}"
            + (f" into {into}" if into else "") + "; resume it with the same action and "
            "folder (the same path), or use a new journal path")


def check_new_journal(plan: Plan, path: str | os.PathLike[str], *, named: bool = True
                      ) -> None:
    """Refuse, before anything changes (a dry run asks too), a new journal at ``path`` that
    would lie inside a scanned folder or cannot be written. A journal the user ``named`` needs
    its folder to exist (a typo must not create folders); a default one's folder (the
    quarantine, the state folder) is made, so the nearest existing one must be writable.

    Raises:
        ConfigError: the path cannot hold the journal.
    """
    jpath = os.path.abspath(os.fspath(path))
    inside = _root_holding(os.path.dirname(jpath), plan.roots)
    if inside is not None:
        raise ConfigError(f"the journal {jpath} would be inside the scanned folder "
                          f"{inside}: the copies it keeps for undo would be found by the "
                          "next scan as duplicates, and could be acted on. Choose a path "
                          "outside the scanned folders")
    moved = [op.dst for op in plan.operations if op.dst]
    if jpath == plan.to or any(is_under(dst, jpath) for dst in moved):
        # Is a moved file (or a folder one goes into): every such move would fail.
        what = "the quarantine folder" if jpath == plan.to else "a moved file or its folder"
        raise ConfigError(f"the journal {jpath} would take the place of {what}; choose "
                          "another path")
    folder = os.path.dirname(jpath)
    # The quarantine of a move is made by the run: a journal may be named inside it.
    made = plan.to is not None and is_under(folder, plan.to)
    if named and not made and not os.path.isdir(folder):
        raise ConfigError(f"cannot write the journal {jpath}: folder {folder} does not exist; "
                          "create it first")
    folder = nearest_folder(folder)
    if not os.access(folder, os.W_OK):  # a read-only mount says so to root too
        raise ConfigError(f"cannot write the journal {jpath}: folder {folder} is not writable; "
                          "choose another path")


def apply(plan: Plan, *, journal: str | os.PathLike[str] | None = None,
          reporter: Reporter | None = None,
          verify: Literal["digest", "stat"] = "digest") -> ApplyResult:
    """Carry out ``plan``, journaling every op before it happens.

    Args:
        plan: from :func:`lookalike.actions.plan`.
        journal: the journal file (default: :func:`default_journal_path`, as the command
            line; ``result.journal`` says where). A new path starts a new journal; an
            existing one (from an interrupted run on the same report) is resumed: its
            unfinished op is rolled back (:func:`recover`) and ops it records as done are
            not repeated.
        reporter: receives progress and one problem per skipped group or failed op.
        verify: ``digest`` (default) re-reads every member of a group and compares its
            SHA-256 with the report before touching the group; ``stat`` checks size and mtime.
            The files a group keeps are always read and digest-checked, and must be other
            files (identity) than the ones acted on.

    Returns:
        An :class:`ApplyResult`; ``result.ok`` is False if any op failed.

    Raises:
        JournalError: the journal cannot be created, or belongs to another report.

    Errors: a changed group is skipped whole; a failed op is rolled back, journaled and
    reported, and the run goes on. Nothing is ever acted on outside ``plan.roots``, inside
    ``plan.protect``, or in a group left without a keeper (except ``--keep none``).

    Cost: with ``verify="digest"``, every member of every group with work is read once.
    """
    if not isinstance(plan, Plan):
        raise TypeError(f"apply() takes a Plan (from lookalike.plan(report, ...)), not "
                        f"{type(plan).__name__}")
    reporter = reporter or NullReporter()
    jpath = os.path.abspath(os.fspath(journal if journal is not None
                                      else default_journal_path(plan)))
    recovered = 0
    if Journal.unstarted(jpath):
        os.unlink(jpath)  # a run stopped while creating it: nothing was done, begin anew
    if os.path.exists(jpath):
        j = Journal.open(jpath)
        try:  # closed (and unlocked) on any error: a caller may apply again in this process
            if j.header.get("report_created") != plan.report_created:
                raise JournalError(f"journal {jpath} belongs to another report; use a new "
                                   "journal path")
            check_resume(j, plan.action, plan.to)
            if j.unfinished():
                res = _replay(j, j.unfinished(), reporter, final="rolled-back")
                recovered = res.rolled_back
            j.note({"event": "resume", "time": datetime.now(UTC).isoformat(timespec="seconds"),
                    "action": plan.action})
        except BaseException:
            j.close()
            raise
    else:
        check_new_journal(plan, jpath, named=False)  # a caller checks a named one first
        j = Journal.create(jpath, {
            "tool": __version__, "action": plan.action, "report_path": plan.report_path,
            "report_created": plan.report_created, "roots": list(plan.roots), "to": plan.to,
            "token": uuid.uuid4().hex[:8],
            **({"folder_rules": plan.rules.to_dicts()} if plan.rules else {}),
        })
    real_roots = [os.path.realpath(r) for r in plan.roots]
    real_protect = [os.path.realpath(d) for d in plan.protect]
    done_before = j.done_paths()
    done: list[Operation] = []
    skipped: list[Operation] = []
    skipped_groups = list(plan.skipped)
    failed: list[tuple[Operation, Problem]] = []
    already = plan.already_done
    reporter.phase(1, 1, f"applying ({plan.action})", plan.files)
    try:
        for gp in plan.groups:
            ops = [op for op in gp.operations if op.path not in done_before]
            already += len(gp.operations) - len(ops)
            if not ops:
                continue
            code, reason = "changed", _group_refusal(plan, gp.keep, ops, real_protect)
            kept: dict[str, os.stat_result] = {}
            held: list[int | None] = []  # shared locks on the files kept, while ops run
            try:
                if reason is None:
                    for path in gp.keep:
                        try:
                            held.append(_lock_file(path, exclusive=False))
                        except BlockingIOError:
                            code, reason = ("in-use", "another lookalike run is acting on "
                                            f"{path}, a file it keeps")
                            break
                if reason is None:
                    code, reason, kept = _check_survivors(gp, ops, real_roots)
                where = ops[0].path  # the line's file: the one that changed, if one did
                if reason is None:
                    code = "changed"
                    for state in gp.members:
                        if state.path in done_before or state.path in kept:
                            continue
                        why = _changed(state, real_roots, verify)
                        if why:
                            reason, where = f"{state.path} {why} since the scan", state.path
                            break
                if reason:
                    again = "Run again once it has finished" if code == "in-use" else "Rescan"
                    reporter.problem(_problem(where, code, f"group {gp.group} skipped, "
                                              f"nothing in it touched: {reason}. {again} to "
                                              "act on it"))
                    skipped.extend(ops)
                    skipped_groups.append(SkippedGroup(group=gp.group, reason=reason))
                    reporter.advance(len(ops))
                    continue
                for op in ops:
                    problem = _run_op(j, op, real_roots, kept)
                    if problem is None:
                        done.append(op)
                    else:
                        reporter.problem(problem)
                        failed.append((op, problem))
                    reporter.advance()
            finally:  # on every way out of the group, an error or Ctrl-C too
                _unlock(held)
    except KeyboardInterrupt:
        # Every change is journaled before it is made: the journal undoes or finishes it.
        raise Interrupted(jpath) from None
    finally:
        j.close()
        reporter.close()
    return ApplyResult(journal=jpath, done=tuple(done), skipped=tuple(skipped),
                       skipped_groups=tuple(skipped_groups), failed=tuple(failed),
                       already_done=already, recovered=recovered)


def _group_refusal(plan: Plan, keep: tuple[str, ...], ops: list[Operation],
                   real_protect: list[str]) -> str | None:
    """Defence in depth against hand-built plans: the rules :func:`plan` already enforces."""
    if not keep and not plan.remove_all:
        return "it would keep no file (only keep rule 'none' allows that)"
    for op in ops:
        if op.path in keep:
            return f"{op.path} is both kept and acted on"
        # An op must be the plan's action, and a move must go where the plan's quarantine
        # puts its file: undo finds it there only (a hand-built op moved a file elsewhere, or
        # deleted it in a move plan, and undo could not bring it back).
        if op.action != plan.action:
            return f"{op.path} would be acted on by {op.action!r} in a {plan.action!r} plan"
        if op.action == "move" and (plan.to is None or op.dst != _quarantined(op, plan)):
            return f"{op.path} would be moved outside the plan's quarantine folder"
        real = os.path.realpath(op.path)
        if any(is_under(op.path, d) for d in plan.protect) or \
                any(is_under(real, d) for d in real_protect):
            return f"{op.path} is in a protected folder"
        if op.action in ("hardlink", "symlink") and op.keeper not in keep:
            return f"the link target {op.keeper} is not a kept file"
    return None


def _quarantined(op: Operation, plan: Plan) -> str | None:
    """Where the plan's quarantine puts ``op``'s file; None outside every scanned root."""
    try:
        return quarantine_path(op.path, plan.roots, plan.to or "")
    except ReportError:
        return None


def _check_survivors(gp: GroupPlan, ops: list[Operation], real_roots: list[str]
                     ) -> tuple[str, str | None, dict[str, os.stat_result]]:
    """Check the files a group keeps before anything in it is touched.

    Every kept file must still be the file the scan recorded: there, a regular file inside
    the roots, readable, with the recorded SHA-256 (always read, whatever ``verify`` says),
    and a different file (identity) from each one acted on. Returns ``(code, reason, kept)``:
    a reason code and why the group must be skipped (None if it may go on), and the
    ``lstat`` of each kept file, which :func:`_run_op` checks again right before each op.
    """
    states = {s.path: s for s in gp.members}
    kept: dict[str, os.stat_result] = {}
    for path in gp.keep:
        state = states.get(path)
        if state is None or not state.digest:
            return ("keeper-changed", f"the report recorded no SHA-256 of the file kept, {path},"
                    " so it cannot be checked", kept)
        before = _lstat(path)
        why = _changed(state, real_roots, "digest")
        if why:
            return "keeper-changed", f"the file kept, {path}, {why} since the scan", kept
        st = _lstat(path)
        if st is None:
            return "keeper-changed", f"the file kept, {path}, is gone", kept
        # The state each op checks it against is the one whose bytes were just digested.
        if before is None or _state(before) != _state(st):
            return ("keeper-changed", f"the file kept, {path}, changed while it was checked",
                    kept)
        kept[path] = st
    for op in ops:
        why = _same_file_problem(op, _lstat(op.path), kept)
        if why:
            return "same-file", why, kept
    return "changed", None, kept


def _state(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What tells a file apart from the one checked: its identity, size, modification and
    change time."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _ident(st: os.stat_result | None) -> tuple[int, int] | None:
    """A file's identity (device, inode) from its ``lstat``; None for no file."""
    return (st.st_dev, st.st_ino) if st is not None else None


def _same_file_problem(op: Operation, st: os.stat_result | None,
                       kept: dict[str, os.stat_result]) -> str | None:
    """Why acting on ``op`` could remove a kept file, or None.

    An op never touches a kept file's identity, except one that collapses links: it then
    must name another directory entry (a hard link) of its kept file, which stays.
    """
    ident = _ident(st)
    if op.name_of is not None:
        entry = entry_key(op.path)
        if _ident(kept.get(op.name_of)) != ident or entry is None or entry == entry_key(op.name_of):
            return (f"{op.path} is no longer a separate hard link of the kept {op.name_of}; "
                    "not touched")
        return None
    same = next((k for k, was in kept.items() if _ident(was) == ident), None)
    if same is not None:
        return (f"{op.path} is the same file as the kept {same} (a hard link, or another "
                "path to it): removing it would remove the kept copy")
    return None


def _run_op(j: Journal, op: Operation, real_roots: list[str],
            kept: dict[str, os.stat_result]) -> Problem | None:
    try:
        # Another name of a kept file (collapsing links) is that file: its group's shared
        # lock already holds it, and an exclusive one would conflict with ours.
        fd = None if op.name_of is not None else _lock_file(op.path, exclusive=True)
    except BlockingIOError:
        return _problem(op.path, "in-use", "another lookalike run is acting on it, or keeps "
                        "it; not touched. Run this again once it has finished")
    try:
        return _run_locked_op(j, op, real_roots, kept, fd)
    finally:
        _unlock([fd])


def _run_locked_op(j: Journal, op: Operation, real_roots: list[str],
                   kept: dict[str, os.stat_result], fd: int | None) -> Problem | None:
    seq = j.next_seq()
    # Last look right before the intent: same size/mtime as just verified, still inside,
    # and the very file locked (not one put in its place since).
    st = _lstat(op.path)
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_size != op.size_bytes \
            or st.st_mtime_ns != op.mtime_ns or (fd is not None and (
                st.st_dev, st.st_ino) != ((f := os.fstat(fd)).st_dev, f.st_ino)):
        return _problem(op.path, "changed", "changed while the run was going on; not touched")
    real = os.path.realpath(op.path)
    if not any(is_under(real, r) for r in real_roots):
        return _problem(op.path, "outside-roots", f"resolves to {real}, outside the scanned "
                        "folders; not touched")
    # The kept files too: still there, still the files checked (not rewritten in place
    # since: same size, modification and change time; a rewrite that keeps the size and
    # puts the modification time back still sets the change time), and not this one.
    kept_st = {path: _lstat(path) for path in kept}
    for path, was in kept.items():
        kst = kept_st[path]
        if kst is None or not stat.S_ISREG(kst.st_mode) or _state(kst) != _state(was):
            return _problem(op.path, "keeper-changed", f"the file kept, {path}, is gone, was "
                            "replaced or was changed while the run was going on; not touched")
    why = _same_file_problem(op, st, kept)
    if why:
        return _problem(op.path, "same-file", why)
    # Checked before the intent, so that rolling this op back never takes a file already
    # there (another op's, the same bytes and time) for a copy this op made.
    if op.dst is not None and os.path.lexists(op.dst):
        return _problem(op.path, "failed", f"{op.dst} already exists in the quarantine; not "
                        "overwritten, nothing changed")
    fields: dict[str, Any] = {
        "action": op.action, "group": op.group, "path": op.path, "size": op.size_bytes,
        "mtime_ns": op.mtime_ns, "digest": op.digest, "dev": st.st_dev, "ino": st.st_ino,
        **_paths(j, seq, op.action, op.path, op.dst),
    }
    if op.group not in j.kept_recorded:  # the group's keep list, once: a resume keeps it
        fields["kept"] = list(kept)
    if op.action in ("hardlink", "symlink"):
        assert op.keeper is not None  # a kept file (_group_refusal), checked just above
        was = kept[op.keeper]
        kst = kept_st[op.keeper]  # checked to be that file just above
        assert kst is not None
        fields.update(keeper=op.keeper, keeper_dev=was.st_dev, keeper_ino=was.st_ino,
                      keeper_size=kst.st_size, keeper_mtime_ns=kst.st_mtime_ns)
    rec = j.intent(seq, fields)
    try:
        return _carry_out(j, rec, op, real_roots)
    finally:
        if op.action == "hardlink" or op.name_of is not None:
            _relinked(op, kept)


def _relinked(op: Operation, kept: dict[str, os.stat_result]) -> None:
    """After an op that made or removed a link of a kept file (done, failed or rolled
    back), that file's change time moved: the group's next op checks it against its state
    now, but only if nothing else changed (same size and modification time), so a rewrite
    by another program is still caught (only one that keeps both and falls within this op's
    microseconds is not)."""
    ref = op.name_of if op.name_of is not None else op.keeper
    if ref is None or ref not in kept:
        return
    ident = _ident(kept[ref])
    for path, was in kept.items():
        if _ident(was) != ident:  # another kept file: its state did not move
            continue
        now = _lstat(path)
        if (now is not None and _ident(now) == ident
                and (now.st_size, now.st_mtime_ns) == (was.st_size, was.st_mtime_ns)):
            kept[path] = now


def _carry_out(j: Journal, rec: OpRecord, op: Operation, real_roots: Sequence[str]
               ) -> Problem | None:
    """Execute one op whose intent ``rec`` is journaled; mark it done or failed (rolled
    back)."""
    _crash_point("intent")
    try:
        _execute(_derived(j, rec.intent), top=j.header.get("to"), real_roots=real_roots)
    except _Untouched as exc:
        j.mark(rec, "failed", _said(exc))
        return _problem(op.path, "failed", f"{op.action} failed, nothing changed: {_said(exc)}")
    except OSError as exc:
        msg = _said(exc)
        try:
            _restore(_derived(j, rec.intent), j.header.get("to"))
        except OSError as exc2:
            # Left unfinished in the journal on purpose: recover/undo will try again.
            return _problem(op.path, "failed", f"{op.action} failed ({msg}) and rolling it back "
                            f"failed too ({exc2}); run `lookalike undo {j.path}`")
        j.mark(rec, "failed", msg)
        return _problem(op.path, "failed", f"{op.action} failed, nothing changed: {msg}")
    j.mark(rec, "done")
    return None
