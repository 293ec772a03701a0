"""Applying plans and undoing them: byte-for-byte undo, journal, crashes at every step, safety."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import lookalike
from conftest import other_filesystem, snapshot
from lookalike import JournalError
from lookalike.actions.apply import apply, recover, undo
from lookalike.actions.plan import Plan, plan
from lookalike.cli import cli
from lookalike.report.schema import human_bytes, render_text, write_report

BASE_NS = 1_600_000_000_000_000_000


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()) \
        if folder.exists() else []


def make_library(root: Path, scene) -> None:
    """Two groups: a, its byte copy and a resized copy (near); x and two byte copies (exact)."""
    (root / "sub").mkdir(parents=True)
    img = scene(1, (200, 150))
    img.save(root / "a.png")
    shutil.copyfile(root / "a.png", root / "sub" / "a_copy.png")
    img.resize((100, 75)).save(root / "b_small.png")
    scene(2).save(root / "other.png")
    scene(7, (120, 90)).save(root / "x.png")
    shutil.copyfile(root / "x.png", root / "sub" / "x2.png")
    shutil.copyfile(root / "x.png", root / "sub" / "x3.png")
    names = ["a.png", "sub/a_copy.png", "b_small.png", "other.png", "x.png", "sub/x2.png",
             "sub/x3.png"]
    for k, name in enumerate(names):
        os.utime(root / name, ns=(BASE_NS + k, BASE_NS + k))


@pytest.fixture
def library(tmp_path, scene):
    root = tmp_path / "photos"
    make_library(root, scene)
    report = tmp_path / "report.json"
    write_report(lookalike.scan(root, method="phash", threshold=6, workers=1), report)
    return root, report


def make_plan(action: str, report: Path, tmp_path: Path, **kw) -> Plan:
    to = tmp_path / "q" if action == "move" else None
    return plan(report, action=action, to=to, **kw)  # type: ignore[arg-type]


@contextlib.contextmanager
def _another_run_at_intent(op, put: Callable[[str, str], object]) -> Iterator[None]:
    """While applying: another run puts its copy at ``op.dst`` (``put(src, dst)``) right
    after this run's intent for ``op``, between its checks and its own link."""
    from lookalike.actions import apply as act

    def hook(step: str) -> None:
        if step == "intent" and not os.path.exists(op.dst):
            os.makedirs(os.path.dirname(op.dst), exist_ok=True)
            put(op.path, op.dst)

    act._crash_hook = hook
    try:
        yield
    finally:
        act._crash_hook = None


class Recorder:
    def __init__(self) -> None:
        self.problems: list = []

    def phase(self, *a) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def info(self, message: str) -> None: ...
    def close(self) -> None: ...

    def problem(self, problem) -> None:
        self.problems.append(problem)


# --------------------------------------------------------------------------- apply -> undo


@pytest.mark.parametrize("action", ["move", "hardlink", "symlink"])
def test_apply_then_undo_restores_the_tree_byte_for_byte(library, tmp_path, action):
    root, report = library
    before = snapshot(root)
    p = make_plan(action, report, tmp_path)
    # a_copy, b_small, x2, x3; links skip b_small (a near duplicate, other bytes)
    assert p.files == (4 if action == "move" else 3)
    journal = tmp_path / "j.jsonl"
    res = apply(p, journal=journal)
    assert res.ok and len(res.done) == p.files and not res.skipped
    assert snapshot(root) != before
    u = undo(journal)
    assert u.ok and sorted(u.restored) == sorted(op.path for op in p.operations)
    assert snapshot(root) == before
    assert files_in(tmp_path / "q") == []
    assert not Path(f"{journal}.backup").exists()


@pytest.mark.parametrize("action", ["move", "hardlink", "symlink"])
def test_undo_restores_files_of_another_user(library, tmp_path, action, monkeypatch):
    # In a shared folder only a file's owner may set its times: undo of files of another
    # user failed on every one ("Operation not permitted") while setting the time of a file
    # linked back, which has it already (review, run as a user who did not own them).
    root, report = library
    before = snapshot(root)
    p = make_plan(action, report, tmp_path)
    journal = tmp_path / "j.jsonl"
    assert apply(p, journal=journal).ok

    def not_owner(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "utime", not_owner)
    u = undo(journal)
    assert u.ok and sorted(u.restored) == sorted(op.path for op in p.operations)
    assert snapshot(root) == before


def test_a_group_skipped_for_a_changed_file_names_that_file(library, tmp_path):
    # The skip line was put on the group's first planned file, whichever had changed.
    from collections import defaultdict

    _, report = library
    p = make_plan("move", report, tmp_path)
    by_group = defaultdict(list)
    for op in p.operations:
        by_group[op.group].append(op.path)
    paths = next(ps for ps in by_group.values() if len(ps) >= 2)
    changed = Path(paths[-1])
    st = changed.stat()
    data = bytearray(changed.read_bytes())
    data[-1] ^= 1  # same size and time, other bytes: only the digest tells
    changed.write_bytes(bytes(data))
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))
    rec = Recorder()
    res = apply(p, journal=tmp_path / "j.jsonl", reporter=rec)
    (problem,) = [x for x in rec.problems if x.error == "changed"]
    assert problem.path == str(changed) and str(changed) in problem.message
    assert set(paths) <= {op.path for op in res.skipped}


def test_a_link_refused_by_its_folder_names_that_folder(library, tmp_path, monkeypatch):
    # A hard link into a read-only folder failed naming only the kept file (the link's
    # source): the folder that refused it is the new name's.
    _, report = library
    p = make_plan("hardlink", report, tmp_path)
    link = os.link

    def refused(src, dst, *args, **kwargs):
        if os.path.dirname(os.fspath(dst)) != os.path.dirname(os.fspath(src)):
            raise PermissionError(errno.EACCES, "Permission denied", src, None, dst)
        return link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", refused)
    res = apply(p, journal=tmp_path / "j.jsonl")
    assert res.failed
    for op, problem in res.failed:
        assert "Permission denied" in problem.message
        assert os.path.dirname(op.path) in problem.message.split(" -> ", 1)[1], problem.message


@pytest.mark.parametrize("action", ["move", "hardlink", "symlink"])
def test_names_at_the_file_system_limit_are_applied_and_undone(tmp_path, scene, action):
    # A 255-byte name (the limit of ext4 and most others) leaves no room for a suffix: the
    # journal's helper files must not be named after it, or undo could not put it back.
    root = tmp_path / "photos"
    root.mkdir()
    scene(3, (160, 120)).save(root / "a.png")
    long_name = root / ("x" * 246 + "_copy.png")  # 255 bytes; "copy": the policy removes it
    shutil.copyfile(root / "a.png", long_name)
    report = tmp_path / "report.json"
    write_report(lookalike.scan(root, workers=1), report)
    before = snapshot(root)
    p = make_plan(action, report, tmp_path)
    assert [op.path for op in p.operations] == [str(long_name)]
    journal = tmp_path / "j.jsonl"
    res = apply(p, journal=journal)
    assert res.ok and len(res.done) == 1, res.failed
    assert snapshot(root) != before
    u = undo(journal)
    assert u.ok and list(u.restored) == [str(long_name)]
    assert snapshot(root) == before
    assert files_in(tmp_path / "q") == []


def test_a_quarantine_path_too_long_for_the_file_system_is_refused_when_planned(
        tmp_path, scene):
    # Found by the names review: such a move failed, its rollback took the temporary name it
    # could not even form for a failure, and every undo of the journal failed after it.
    deep = tmp_path / "photos"
    folder = deep
    while len(os.fsencode(folder)) < 3800:
        folder = folder / ("d" * 200)
    folder.mkdir(parents=True)
    try:
        scene(3, (160, 120)).save(folder / "a.png")
        shutil.copyfile(folder / "a.png", folder / "a_copy.png")
        report = tmp_path / "report.json"
        write_report(lookalike.scan(deep, workers=1), report)
        quarantine = tmp_path / ("q" * 200)
        p = plan(report, action="move", to=quarantine)
        assert not p.operations and len(p.skipped) == 1
        assert "quarantine path would be" in p.skipped[0].reason
        p = plan(report, action="move", to=tmp_path / "q")  # short enough: planned
        assert [op.path for op in p.operations] == [str(folder / "a_copy.png")]
    finally:  # pytest's own clean-up walks paths longer than it can take
        shutil.rmtree(deep)


def test_the_reports_reclaimable_bytes_are_what_the_plan_frees(tmp_path, scene):
    # The original (kept) is the smaller file here, so counting every member but the
    # group's first (by hash) would not be what apply frees.
    root = tmp_path / "photos"
    root.mkdir()
    img = scene(4, (240, 180))
    img.save(root / "a.png")
    img.save(root / "a_copy.png", compress_level=0)  # same pixels, more bytes
    img.resize((120, 90)).save(root / "b_copy_small.png", compress_level=0)
    result = lookalike.scan(root, workers=1)
    report = tmp_path / "report.json"
    write_report(result, report)
    stats = json.loads(report.read_text())["stats"]
    p = make_plan("move", report, tmp_path)
    assert [Path(op.path).name for op in p.operations] == ["a_copy.png", "b_copy_small.png"]
    assert stats["bytes_reclaimable"] == p.bytes == sum(
        (root / n).stat().st_size for n in ("a_copy.png", "b_copy_small.png"))
    summary = render_text(result).splitlines()[0]
    assert f"({human_bytes(p.bytes)} reclaimable)" in summary


def test_move_quarantines_with_bytes_mtime_and_layout(library, tmp_path):
    root, report = library
    before = snapshot(root)
    p = make_plan("move", report, tmp_path)
    res = apply(p, journal=tmp_path / "j.jsonl")
    assert res.bytes_done == p.bytes
    for op in p.operations:
        assert not os.path.lexists(op.path)
        dst = Path(op.dst)
        assert dst.read_bytes() == before[op.path][1]
        assert dst.stat().st_mtime_ns == op.mtime_ns
        assert dst.is_relative_to(tmp_path / "q" / "photos")
    for keeper in ("a.png", "x.png"):
        assert snapshot(root)[str(root / keeper)] == before[str(root / keeper)]


def test_hardlink_and_symlink_point_duplicates_at_the_keeper(library, tmp_path):
    root, report = library
    apply(make_plan("hardlink", report, tmp_path), journal=tmp_path / "h.jsonl")
    assert os.path.samefile(root / "sub" / "x2.png", root / "x.png")
    assert os.path.samefile(root / "sub" / "a_copy.png", root / "a.png")
    assert not os.path.samefile(root / "b_small.png", root / "a.png")  # near dup: not linked
    undo(tmp_path / "h.jsonl")
    apply(make_plan("symlink", report, tmp_path), journal=tmp_path / "s.jsonl")
    assert os.readlink(root / "sub" / "x3.png") == str(root / "x.png")
    assert (root / "sub" / "x3.png").read_bytes() == (root / "x.png").read_bytes()


def test_delete_removes_duplicates_and_undo_says_it_cannot_restore_them(library, tmp_path):
    root, report = library
    p = make_plan("delete", report, tmp_path)
    res = apply(p, journal=tmp_path / "j.jsonl")
    assert res.ok and {op.path for op in res.done} == {op.path for op in p.operations}
    assert (root / "a.png").exists() and (root / "x.png").exists()
    assert not any(os.path.lexists(op.path) for op in p.operations)
    u = undo(tmp_path / "j.jsonl")
    assert u.ok and u.restored == () and sorted(u.not_undoable) == sorted(
        op.path for op in p.operations)


def test_apply_without_a_journal_path_writes_it_where_the_command_line_does(library,
                                                                           tmp_path):
    """`lookalike.apply(plan)`, as the README writes it, raised a TypeError."""
    root, report = library
    before = snapshot(root)
    result = lookalike.apply(make_plan("move", report, tmp_path))
    assert result.ok and os.path.dirname(result.journal) == str(tmp_path / "q")
    assert undo(result.journal).ok and snapshot(root) == before


def test_a_file_changed_in_the_quarantine_comes_back_with_its_own_mtime(library, tmp_path):
    # Undo put the old mtime on a quarantined file edited since the move (files-changing
    # review): a hash cache then took it for the file it had hashed.
    _, report = library
    p = make_plan("move", report, tmp_path)
    journal = tmp_path / "j.jsonl"
    assert apply(p, journal=journal).ok
    op = p.operations[0]
    moved = Path(op.dst)
    data = bytearray(moved.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    moved.write_bytes(bytes(data))
    others = p.operations[1:]
    assert undo(journal).ok
    assert Path(op.path).read_bytes() == bytes(data)
    assert Path(op.path).stat().st_mtime_ns != op.mtime_ns
    assert all(Path(o.path).stat().st_mtime_ns == o.mtime_ns for o in others)


def test_undo_twice_is_harmless(library, tmp_path):
    root, report = library
    before = snapshot(root)
    apply(make_plan("move", report, tmp_path), journal=tmp_path / "j.jsonl")
    undo(tmp_path / "j.jsonl")
    again = undo(tmp_path / "j.jsonl")
    assert again.ok and again.restored == () and snapshot(root) == before


def test_journal_writes_intent_before_done_with_what_undo_needs(library, tmp_path):
    _root, report = library
    p = make_plan("move", report, tmp_path)
    apply(p, journal=tmp_path / "j.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "lookalike-journal" and lines[0]["action"] == "move"
    assert lines[0]["report_created"] == p.report_created
    intents = {e["op"]: (i, e) for i, e in enumerate(lines) if e.get("event") == "intent"}
    dones = {e["op"]: i for i, e in enumerate(lines) if e.get("event") == "done"}
    assert set(intents) == set(dones) and len(intents) == p.files
    for seq, (i, e) in intents.items():
        assert i < dones[seq]
        assert {"path", "dst", "size", "mtime_ns", "digest"} <= set(e)
    assert {e["path"]: e["dst"] for _, e in intents.values()} == {
        op.path: op.dst for op in p.operations}


def test_a_torn_last_journal_line_is_ignored(library, tmp_path):
    root, report = library
    before = snapshot(root)
    apply(make_plan("move", report, tmp_path), journal=tmp_path / "j.jsonl")
    with open(tmp_path / "j.jsonl", "a") as fh:
        fh.write('{"event": "intent", "op": 99, "act')
    assert undo(tmp_path / "j.jsonl").ok
    assert snapshot(root) == before


def test_a_torn_last_line_is_cut_off_so_the_journal_opens_again(library, tmp_path):
    """A full disk stopped a run mid-line; the next open sealed the fragment with a newline,
    which made it a corrupt middle line: the resume the message asked for, and undo, then
    refused the journal for good."""
    root, report = library
    before = snapshot(root)
    journal = tmp_path / "j.jsonl"
    p = make_plan("move", report, tmp_path)
    assert apply(p, journal=journal).ok
    whole = journal.read_bytes()
    with open(journal, "ab") as fh:
        fh.write(b'{"event": "intent", "op": 99, "act')
    assert apply(p, journal=journal).ok  # the resume: nothing left to do
    assert journal.read_bytes().startswith(whole) and b'"op": 99' not in journal.read_bytes()
    assert undo(journal).ok and undo(journal).ok
    assert snapshot(root) == before


def _edited_journal(library, tmp_path, **changes):
    """A journal of a move, then an unfinished intent as a hand edit or damage made it."""
    root, report = library
    journal = tmp_path / "j.jsonl"
    assert apply(make_plan("move", report, tmp_path), journal=journal).ok
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    intent = dict(next(e for e in lines if e.get("event") == "intent"), op=99, **changes)
    with open(journal, "a") as fh:
        fh.write(json.dumps(intent) + "\n")
    return root, journal


def test_an_edited_journal_never_makes_undo_remove_other_files(library, tmp_path):
    """Undo removes an op's helper files and the copy it moved: an edited intent naming
    other files there (a kept original as its 'part') deleted them, silently."""
    root = library[0]
    victims = [str(root / "a.png"), str(root / "x.png")]
    _, journal = _edited_journal(library, tmp_path, path=str(root / "nothing.png"),
                                 part=victims[0], restore_tmp=victims[1])
    before = snapshot(root)
    res = undo(journal)
    assert not res.ok and all(os.path.exists(v) for v in victims)
    assert "is not where the journal's quarantine puts" in res.failed[0].message
    # Everything the real ops moved came back; the edited op touched nothing.
    assert {k: v for k, v in snapshot(root).items() if k in before} == before
    # Helper names edited alone are not used: undo derives them (and puts everything back).
    sub = tmp_path / "helpers"
    sub.mkdir()
    _, j1 = _edited_journal(library, sub, part=victims[0], restore_tmp=victims[1])
    undo(j1)
    assert all(os.path.exists(v) for v in victims)
    # A quarantined copy outside the quarantine, or a file outside the scanned folders.
    for change in ({"dst": victims[0]}, {"path": "/etc/hostname"}):
        sub = tmp_path / f"c{len(change['dst' if 'dst' in change else 'path'])}"
        sub.mkdir()
        _, j2 = _edited_journal((library[0], library[1]), sub, **change)
        assert not undo(j2).ok and all(os.path.exists(v) for v in victims)


@pytest.mark.parametrize("change", [{"part": None}, {"action": "bogus"}, {"path": 5},
                                    {"size": "1"}])
def test_an_intent_missing_fields_is_a_corrupt_journal_not_a_traceback(library, tmp_path,
                                                                        change):
    intent = {k: v for k, v in change.items() if v is not None}
    _, journal = _edited_journal(library, tmp_path, **intent)
    if change == {"part": None}:  # a field the intent may lack: rebuilt from the journal
        text = journal.read_text().splitlines()
        last = json.loads(text[-1])
        del last["dst"]
        journal.write_text("\n".join([*text[:-1], json.dumps(last)]) + "\n")
    with pytest.raises(JournalError, match="is corrupt"):
        undo(journal)


@pytest.mark.skipif(sys.platform == "win32", reason="file locks are POSIX flock")
def test_two_runs_acting_on_the_same_files_never_remove_every_copy(library, tmp_path):
    """Two applies of one report at once: one moved a file into the quarantine while the
    other, finding the name taken, 'rolled back' by removing that copy, and the first then
    unlinked the source: gone from both places. Now a file another run acts on (or keeps) is
    locked, and a failed move that made nothing rolls nothing back."""
    import fcntl


    root, report = library
    before = snapshot(root)
    p = make_plan("move", report, tmp_path)
    op = p.operations[0]
    # The other run acts on this file (exclusive lock) and keeps another group's keeper.
    other = next(gp for gp in p.groups if all(o.path != op.path for o in gp.operations))
    rec = Recorder()
    with open(op.path, "rb") as held, open(other.keep[0], "rb") as kept:
        fcntl.flock(held, fcntl.LOCK_EX)
        fcntl.flock(kept, fcntl.LOCK_EX)
        res = apply(p, journal=tmp_path / "j1.jsonl", reporter=rec)
    codes = {pr.path: pr.error for pr in rec.problems}
    assert codes[op.path] == "in-use" and os.path.exists(op.path)
    assert other.group in {g.group for g in res.skipped_groups}
    assert all(os.path.exists(o.path) for o in other.operations)
    assert undo(tmp_path / "j1.jsonl").ok and snapshot(root) == before
    # The race itself: the other run links the quarantine name between our check and ours.
    p = make_plan("move", report, tmp_path)
    op = p.operations[0]

    with _another_run_at_intent(op, os.link):
        res = apply(p, journal=tmp_path / "j2.jsonl", reporter=Recorder())
    assert op.path in {o.path for o, _ in res.failed}
    assert os.path.exists(op.path) and os.path.exists(op.dst)  # the other run's copy stays


@pytest.mark.skipif(sys.platform == "win32", reason="journal locks are POSIX flock")
def test_a_journal_in_use_by_another_run_is_refused_not_shared(library, tmp_path):
    from lookalike.actions.journal import Journal

    _root, report = library
    journal = tmp_path / "j.jsonl"
    assert apply(make_plan("move", report, tmp_path), journal=journal).ok
    with Journal.open(journal) as held:  # another apply or undo, still running
        with pytest.raises(JournalError, match="in use by another apply or undo"):
            undo(journal)
        assert held.next_seq() == 5
    assert undo(journal).ok  # once it is closed


def test_a_missing_or_foreign_journal_is_a_journal_error(library, tmp_path):
    with pytest.raises(JournalError, match="not found"):
        undo(tmp_path / "nope.jsonl")
    (tmp_path / "x.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(JournalError, match="not a lookalike journal"):
        undo(tmp_path / "x.jsonl")
    (tmp_path / "y.jsonl").write_text(
        '{"kind": "lookalike-journal", "schema_version": 1}\n{broken\n{"event": "done"}\n')
    with pytest.raises(JournalError, match="corrupt"):
        undo(tmp_path / "y.jsonl")


def test_a_journal_of_another_report_is_refused(library, tmp_path):
    _root, report = library
    apply(make_plan("move", report, tmp_path), journal=tmp_path / "j.jsonl")
    undo(tmp_path / "j.jsonl")
    other = dataclasses.replace(make_plan("move", report, tmp_path), report_created="other")
    with pytest.raises(JournalError, match="another report"):
        apply(other, journal=tmp_path / "j.jsonl")


def test_a_crashed_journal_of_another_report_is_refused_before_its_rollback(
        runner, library, tmp_path):
    """`apply --yes --journal J` with the journal of another report's interrupted run: it
    rolled that run back (changing files) and then said 'nothing was done'."""
    root, report = library
    journal = crash_apply("move", report, tmp_path, "move:linked", 1)
    crashed = snapshot(root), sorted(files_in(tmp_path / "q"))
    other = tmp_path / "other.json"
    write_report(lookalike.scan(root, method="phash", threshold=6, workers=1), other)
    res = runner.invoke(cli, ["apply", str(other), "-a", "move", "--to", str(tmp_path / "q"),
                              "--yes", "--journal", str(journal)], standalone_mode=False)
    assert isinstance(res.exception, JournalError) and "another report" in str(res.exception)
    assert (snapshot(root), sorted(files_in(tmp_path / "q"))) == crashed  # nothing changed
    assert undo(journal).ok  # and the right report's journal still undoes its run


def test_a_full_disk_stops_the_run_with_one_line_and_undo_restores_everything(
        runner, library, tmp_path, monkeypatch):
    """The journal's disk filling up mid-run was a raw OSError traceback."""
    import errno

    import lookalike.actions.journal as journal_module

    root, report = library
    before = snapshot(root)
    writes = 0
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        nonlocal writes
        writes += bytes(data[:1]) == b"{"  # a journal line (not the quarantine's marker)
        if writes == 4:  # header, intent, done, then the second intent
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(journal_module.os, "write", write)
    journal = tmp_path / "j.jsonl"
    res = runner.invoke(cli, ["apply", str(report), "-a", "move", "--to", str(tmp_path / "q"),
                              "--yes", "--journal", str(journal)], standalone_mode=False)
    assert isinstance(res.exception, lookalike.LookalikeError)
    assert "cannot write to the journal" in str(res.exception)
    assert "No space left on device" in str(res.exception) and "lookalike undo" in str(
        res.exception)
    # the first move (and the marker of its quarantine folder), and nothing after it
    assert [p.name for p in files_in(tmp_path / "q")] == [".lookalike-root", "b_small.png"]
    monkeypatch.setattr(journal_module.os, "write", real_write)
    assert undo(journal).ok and snapshot(root) == before


def test_undo_quiet_still_names_what_it_could_not_restore(runner, library, tmp_path):
    _root, report = library
    p = make_plan("move", report, tmp_path)
    journal = tmp_path / "j.jsonl"
    assert apply(p, journal=journal).ok
    blocked = p.operations[0].path
    Path(blocked).write_bytes(b"a new file where the moved one was")
    res = runner.invoke(cli, ["undo", str(journal), "-q"])
    assert res.exit_code == 1
    assert f"{blocked} exists again but is another file" in res.stderr


def test_a_journal_whose_header_cannot_be_written_is_not_left_behind(library, tmp_path,
                                                                    monkeypatch):
    """An empty journal file was left, and the message sent the user to undo or resume it
    (both then failed: 'not a lookalike journal')."""
    import errno

    import lookalike.actions.journal as journal_module

    root, report = library
    before = snapshot(root)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module.os, "write", full)
    journal = tmp_path / "j.jsonl"
    with pytest.raises(JournalError, match="nothing was changed"):
        apply(make_plan("move", report, tmp_path), journal=journal)
    assert not journal.exists() and snapshot(root) == before


@pytest.mark.parametrize("action", ["hardlink", "move"])
def test_a_journal_inside_a_scanned_folder_is_refused_before_any_change(library, tmp_path,
                                                                        action):
    """Its backups would be new duplicates to the next scan, and the next apply could act on
    them (ending undo); the default path already avoids scanned folders."""
    root, report = library
    before = snapshot(root)
    with pytest.raises(lookalike.ConfigError, match="inside the scanned folder"):
        apply(make_plan(action, report, tmp_path), journal=root / "sub" / "j.jsonl")
    assert snapshot(root) == before and not files_in(tmp_path / "q")


# --------------------------------------------------------------------------- safety at apply time


def test_content_changed_after_plan_skips_the_whole_group(library, tmp_path):
    root, report = library
    p = make_plan("move", report, tmp_path)
    victim = root / "sub" / "x2.png"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF  # same size, same mtime, other bytes: only the digest can tell
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    rec = Recorder()
    res = apply(p, journal=tmp_path / "j.jsonl", reporter=rec)
    group_x = {op.path for op in p.operations if op.group == 2}
    assert {op.path for op in res.skipped} == group_x
    assert all(os.path.exists(path) for path in group_x)
    assert rec.problems and "different content" in rec.problems[0].message
    assert res.ok  # a skip is a warning, not a failure
    assert {op.group for op in res.done} == {1}


def test_a_changed_keeper_skips_the_group_too(library, tmp_path):
    root, report = library
    p = make_plan("hardlink", report, tmp_path)
    with open(root / "x.png", "ab") as fh:
        fh.write(b"!")
    res = apply(p, journal=tmp_path / "j.jsonl")
    assert {op.group for op in res.skipped} == {2}
    assert not os.path.samefile(root / "sub" / "x2.png", root / "x.png")


@pytest.mark.parametrize("same_size_and_time", [False, True])
def test_a_keeper_rewritten_in_place_during_the_run_stops_the_rest_of_its_group(
        library, tmp_path, same_size_and_time):
    """Another program writes another picture into the kept file (same file, same inode)
    after the group's checks: the group's later operations are refused, so its picture
    keeps a copy (found by a review: the identity alone was checked again; then one that
    kept the size and put the modification time back went unseen: its change time tells)."""
    from lookalike.actions import apply as act

    root, report = library
    p = make_plan("delete", report, tmp_path)
    (group,) = [g for g in p.groups if g.keep == (str(root / "x.png"),)]
    assert len(group.operations) == 2
    x = (root / "x.png").read_bytes()
    other = (root / "other.png").read_bytes()
    if same_size_and_time:  # other bytes, same length
        other = x[: len(x) // 2] + bytes(b ^ 0xFF for b in x[len(x) // 2:])

    def hook(step: str) -> None:  # at the intent of x's group's first operation
        if (step == "intent" and not (root / "sub" / "a_copy.png").exists()
                and (root / "x.png").read_bytes() != other):
            st = os.stat(root / "x.png")
            with open(root / "x.png", "r+b") as fh:  # in place: the inode stays
                fh.truncate(0)
                fh.write(other)
            if same_size_and_time:
                os.utime(root / "x.png", ns=(st.st_atime_ns, st.st_mtime_ns))

    act._crash_hook = hook
    try:
        res = apply(p, journal=tmp_path / "j.jsonl")
    finally:
        act._crash_hook = None
    left = [n for n in ("sub/x2.png", "sub/x3.png") if (root / n).exists()]
    assert len(left) == 1, "the second copy of x went while x.png held another picture"
    assert [pr.error for _, pr in res.failed] == ["keeper-changed"]


def test_a_duplicate_swapped_for_a_symlink_is_never_followed(library, tmp_path):
    root, report = library
    p = make_plan("delete", report, tmp_path)
    outside = tmp_path / "precious.png"
    shutil.copyfile(root / "x.png", outside)
    (root / "sub" / "x2.png").unlink()
    (root / "sub" / "x2.png").symlink_to(outside)
    res = apply(p, journal=tmp_path / "j.jsonl")
    assert outside.read_bytes() == (root / "x.png").read_bytes()
    assert (root / "sub" / "x2.png").is_symlink()
    assert {op.group for op in res.skipped} == {2}


def test_a_failed_operation_is_logged_and_the_run_goes_on(library, tmp_path):
    root, report = library
    before = snapshot(root)
    p = make_plan("move", report, tmp_path)
    blocked = next(op for op in p.operations if op.path.endswith("x2.png"))
    Path(blocked.dst).parent.mkdir(parents=True, exist_ok=True)
    Path(blocked.dst).write_bytes(b"someone else's file")
    rec = Recorder()
    res = apply(p, journal=tmp_path / "j.jsonl", reporter=rec)
    assert not res.ok and [op.path for op, _ in res.failed] == [blocked.path]
    assert "already exists" in res.failed[0][1].message
    assert len(res.done) == p.files - 1
    assert Path(blocked.path).read_bytes() == before[blocked.path][1]  # untouched
    assert Path(blocked.dst).read_bytes() == b"someone else's file"  # not overwritten
    assert rec.problems == [res.failed[0][1]]
    undo(tmp_path / "j.jsonl")
    assert snapshot(root) == before


def test_a_move_to_a_path_another_op_just_filled_leaves_that_file_alone(library, tmp_path,
                                                                        monkeypatch):
    """Two ops of one plan with one destination (two roots of one name, before root names
    were made unique; a drive that ignores case): the second fails before its intent, so its
    rollback cannot take the first one's file (same bytes, same time) for its own copy."""
    from lookalike.actions import apply as act

    # Both quarantine names are one file, as on a drive that ignores case.
    monkeypatch.setattr(act, "_quarantined", lambda op, plan: op.dst)
    root, _report = library
    first, second = root / "sub" / "x2.png", root / "sub" / "x3.png"
    st = first.stat()
    os.utime(second, ns=(st.st_atime_ns, st.st_mtime_ns))  # cp -p of one file
    p = plan(write_report_again(root, tmp_path), action="move", to=tmp_path / "q")
    ops = {op.path: op for op in p.operations}
    one = ops[str(first)].dst
    p = dataclasses.replace(p, groups=tuple(dataclasses.replace(g, operations=tuple(
        dataclasses.replace(op, dst=one) if op.path == str(second) else op
        for op in g.operations)) for g in p.groups))
    before = snapshot(root)
    res = apply(p, journal=tmp_path / "j.jsonl")
    assert [op.path for op, _ in res.failed] == [str(second)]
    assert "already exists" in res.failed[0][1].message
    assert Path(one).read_bytes() == before[str(first)][1]  # the first op's file is kept
    assert second.read_bytes() == before[str(second)][1]  # untouched
    assert undo(tmp_path / "j.jsonl").ok and snapshot(root) == before


@pytest.mark.parametrize("edit", ["elsewhere", "delete"])
def test_a_hand_built_op_off_the_plans_action_or_quarantine_is_refused(library, tmp_path,
                                                                       edit):
    """A plan edited in Python moved a file outside the quarantine (undo then refused it as
    an edited journal: the file stayed out of place), or deleted one in a move plan."""
    root, _report = library
    p = plan(write_report_again(root, tmp_path), action="move", to=tmp_path / "q")
    target = p.operations[0].path
    change = ({"dst": str(tmp_path / "elsewhere" / "moved.png")} if edit == "elsewhere"
              else {"action": "delete", "dst": None})
    p = dataclasses.replace(p, groups=tuple(dataclasses.replace(g, operations=tuple(
        dataclasses.replace(op, **change) if op.path == target else op
        for op in g.operations)) for g in p.groups))
    before = snapshot(root)
    res = apply(p, journal=tmp_path / "j.jsonl")
    (skip,) = [s for s in res.skipped_groups if target in s.reason]
    assert ("outside the plan's quarantine" in skip.reason if edit == "elsewhere"
            else "by 'delete' in a 'move' plan" in skip.reason)
    assert Path(target).read_bytes() == before[target][1]
    assert not (tmp_path / "elsewhere").exists()
    assert undo(tmp_path / "j.jsonl").ok and snapshot(root) == before


@pytest.mark.parametrize("same_time", [False, True])
def test_undo_restores_a_hard_linked_copy_after_the_kept_file_was_renamed(library, tmp_path,
                                                                          same_time):
    """The link stays the kept file's inode when that file is renamed (or an editor saves it
    anew): undo must still put the copy's own file back. It said 'restored 0 files' and
    dropped the backup (same time: taken for the original), or refused (another time)."""
    root, _report = library
    if same_time:
        st = (root / "x.png").stat()
        os.utime(root / "sub" / "x2.png", ns=(st.st_atime_ns, st.st_mtime_ns))
    p = plan(write_report_again(root, tmp_path), action="hardlink")
    before = snapshot(root)
    assert apply(p, journal=tmp_path / "j.jsonl").ok
    (root / "kept").mkdir()
    for keeper in {op.keeper for op in p.operations}:
        os.rename(keeper, root / "kept" / os.path.basename(keeper))
    result = undo(tmp_path / "j.jsonl")
    assert result.ok and sorted(result.restored) == sorted(op.path for op in p.operations)
    for op in p.operations:
        assert Path(op.path).read_bytes() == before[op.path][1]
        assert not os.path.samefile(op.path, root / "kept" / os.path.basename(op.keeper))
    assert not os.path.exists(f"{tmp_path / 'j.jsonl'}.backup") or not files_in(
        Path(f"{tmp_path / 'j.jsonl'}.backup"))


def write_report_again(root: Path, tmp_path: Path) -> Path:
    report = tmp_path / "report2.json"
    write_report(lookalike.scan(root, method="phash", threshold=6, workers=1), report)
    return report


def test_hand_built_plans_cannot_empty_a_group_or_touch_protected_files(library, tmp_path):
    root, report = library
    p = make_plan("delete", report, tmp_path)
    empty = dataclasses.replace(p, groups=tuple(dataclasses.replace(g, keep=())
                                                 for g in p.groups))
    res = apply(empty, journal=tmp_path / "j1.jsonl")
    assert not res.done and len(res.skipped) == p.files
    shielded = dataclasses.replace(p, protect=(str(root / "sub"),))
    res = apply(shielded, journal=tmp_path / "j2.jsonl")
    assert all(not op.path.startswith(str(root / "sub")) for op in res.done)
    assert (root / "sub" / "x2.png").exists()


@pytest.mark.skipif(other_filesystem() is None, reason="needs a second file system (/dev/shm)")
@pytest.mark.parametrize("action", ["move", "hardlink"])
def test_across_file_systems_copies_are_verified_and_undo_still_works(library, tmp_path,
                                                                      action):
    root, report = library
    before = snapshot(root)
    elsewhere = Path(tempfile.mkdtemp(dir=other_filesystem()))
    try:
        to = elsewhere / "q" if action == "move" else None
        p = plan(report, action=action, to=to)  # type: ignore[arg-type]
        journal = elsewhere / "j.jsonl"  # hardlink backups land on the other file system
        res = apply(p, journal=journal)
        assert res.ok and len(res.done) == p.files
        if action == "move":
            for op in p.operations:
                assert Path(op.dst).read_bytes() == before[op.path][1]
                assert Path(op.dst).stat().st_mtime_ns == op.mtime_ns
        u = undo(journal)
        assert u.ok and snapshot(root) == before
    finally:
        shutil.rmtree(elsewhere)


@pytest.mark.skipif(other_filesystem() is None, reason="needs a second file system")
def test_no_hard_link_is_planned_across_file_systems(tmp_path, scene):
    """It failed at apply time (EXDEV, rolled back, exit 1); the plan says so instead."""
    here = tmp_path / "here"
    here.mkdir()
    scene(4, (160, 120)).save(here / "a.png")
    elsewhere = Path(tempfile.mkdtemp(dir=other_filesystem()))
    try:
        shutil.copyfile(here / "a.png", elsewhere / "a_copy.png")
        report = tmp_path / "r.json"
        write_report(lookalike.scan([here, elsewhere], workers=1), report)
        p = plan(report, action="hardlink")
        assert p.operations == ()
        (g,) = p.groups
        assert any("cannot cross file systems" in n for n in g.notes)
        assert len(plan(report, action="symlink").operations) == 1
    finally:
        shutil.rmtree(elsewhere)


@pytest.mark.skipif(other_filesystem() is None or os.geteuid() != 0,
                    reason="needs a second file system (/dev/shm) and root (to chown)")
def test_a_copy_across_file_systems_keeps_the_files_owner(library, tmp_path):
    root, report = library
    for path in root.rglob("*.png"):
        os.chown(path, 1234, 2345)
    elsewhere = Path(tempfile.mkdtemp(dir=other_filesystem()))
    try:
        p = plan(report, action="move", to=elsewhere / "q")
        assert apply(p, journal=elsewhere / "j.jsonl").ok
        for op in p.operations:
            st = os.stat(op.dst)
            assert (st.st_uid, st.st_gid) == (1234, 2345)
        assert undo(elsewhere / "j.jsonl").ok
        for op in p.operations:
            st = os.stat(op.path)
            assert (st.st_uid, st.st_gid) == (1234, 2345)
    finally:
        shutil.rmtree(elsewhere)


@pytest.mark.parametrize("action", ["move", "hardlink"])
def test_undo_keeps_the_preserved_file_when_a_new_file_took_the_original_inode(
        library, tmp_path, action):
    """A move to another file system (or a link whose backup is a copy) frees the original's
    inode, and ext4 gives the next new file that number: undo must not take a new file at
    the original path for the original (it then deleted the only preserved copy)."""
    root, report = library
    before = snapshot(root)
    p = make_plan(action, report, tmp_path)
    journal = tmp_path / "j.jsonl"
    assert apply(p, journal=journal).ok
    op = p.operations[0]
    kept_at = op.dst if action == "move" else None
    if os.path.lexists(op.path):  # a link: the user deletes it and makes a new file
        os.unlink(op.path)
    Path(op.path).write_bytes(b"a new picture")
    st = os.stat(op.path)
    # What inode reuse looks like to undo: the journal's inode is the new file's.
    lines = journal.read_text().splitlines()
    for k, line in enumerate(lines):
        ev = json.loads(line)
        if ev.get("event") == "intent" and ev["path"] == op.path:
            ev.update(dev=st.st_dev, ino=st.st_ino)
            if kept_at is None:
                kept_at = ev["backup"]
            lines[k] = json.dumps(ev)
    journal.write_text("\n".join(lines) + "\n")
    result = undo(journal)
    assert not result.ok and [f.path for f in result.failed] == [op.path]
    assert Path(op.path).read_bytes() == b"a new picture"
    assert Path(kept_at).read_bytes() == before[op.path][1]  # the original, still preserved


# --------------------------------------------------------------------------- crashes


CRASH = """
import os, sys
import lookalike.actions.apply as act
from lookalike.actions.plan import plan
action, report, to, journal, step, nth = sys.argv[1:7]
keep = sys.argv[7] if len(sys.argv) > 7 else None  # a keep rule; then a resume if journaled
resume = keep is not None and os.path.exists(journal)
seen = 0
def hook(name):
    global seen
    if name == step:
        seen += 1
        if seen == int(nth):
            os._exit(9)  # like kill -9: no cleanup, no finally, no flush
act._crash_hook = hook
act.apply(plan(report, action=action, to=to or None, keep=keep,
              journal=journal if resume else None), journal=journal)
"""

STEPS = [("move", "intent"), ("move", "move:marked"), ("move", "move:linked"),
         ("move", "move:unlinked"),
         ("hardlink", "intent"), ("hardlink", "link:backup"), ("hardlink", "link:tmp"),
         ("hardlink", "link:replaced"), ("symlink", "link:tmp"), ("symlink", "link:replaced"),
         ("delete", "intent"), ("delete", "delete:unlinked")]


def crash_apply(action: str, report: Path, tmp_path: Path, step: str, nth: int,
                keep: str | None = None) -> Path:
    journal = tmp_path / "j.jsonl"
    to = str(tmp_path / "q") if action == "move" else ""
    proc = subprocess.run([sys.executable, "-c", CRASH, action, str(report), to, str(journal),
                           step, str(nth), *([keep] if keep else [])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    return journal


def assert_fully_applied(p: Plan, before: dict, root: Path) -> None:
    for op in p.operations:
        original = before[op.path][1]
        if op.action == "move":
            assert not os.path.lexists(op.path)
            assert Path(op.dst).read_bytes() == original
            assert Path(op.dst).stat().st_mtime_ns == op.mtime_ns
        elif op.action == "delete":
            assert not os.path.lexists(op.path)
        elif op.action == "hardlink":
            assert os.path.samefile(op.path, op.keeper)
        else:
            assert os.readlink(op.path) == op.keeper
    for g in p.groups:
        for keeper in g.keep:
            assert snapshot(root)[keeper][1] == before[keeper][1]
    leftovers = [p for p in root.rglob("*") if ".lookalike-" in p.name]
    assert leftovers == []


@pytest.mark.parametrize("nth", [1, 2])
@pytest.mark.parametrize(("action", "step"), STEPS)
def test_crash_mid_apply_then_undo_restores_everything(library, tmp_path, action, step, nth):
    root, report = library
    before = snapshot(root)
    make_plan(action, report, tmp_path)
    journal = crash_apply(action, report, tmp_path, step, nth)
    u = undo(journal)
    assert u.ok, u.failed
    after = snapshot(root)
    if action == "delete":
        # deleted files are gone by design; everything else is exactly as before
        for path in u.not_undoable:
            before.pop(path)
        assert len(u.not_undoable) == nth - (step == "intent")
    assert after == before
    assert files_in(tmp_path / "q") == []
    assert files_in(Path(f"{journal}.backup")) == []


@pytest.mark.parametrize("nth", [1, 2])
@pytest.mark.parametrize(("action", "step"), STEPS)
def test_crash_mid_apply_then_rerun_resumes_and_finishes(runner, library, tmp_path, action,
                                                          step, nth):
    root, report = library
    before = snapshot(root)
    p = make_plan(action, report, tmp_path)
    journal = crash_apply(action, report, tmp_path, step, nth)
    args = ["apply", str(report), "-a", action, "--yes", "--journal", str(journal)]
    if action == "move":
        args += ["--to", str(tmp_path / "q")]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert_fully_applied(p, before, root)
    finished = nth - 1 + (step in ("delete:unlinked",))  # ops the first run completed
    noun = "file" if finished == 1 else "files"
    assert f"{finished} {noun} already done" in res.output or finished == 0
    # and the whole thing can still be undone (deletes excepted)
    u = undo(journal)
    assert u.ok
    if action != "delete":
        assert snapshot(root) == before


@pytest.mark.parametrize(("action", "step"), [("move", "undo:move:linked"),
                                              ("hardlink", "undo:link:tmp"),
                                              ("hardlink", "undo:link:replaced"),
                                              ("symlink", "undo:link:replaced")])
def test_crash_mid_undo_then_undo_again_restores_everything(library, tmp_path, action, step):
    root, report = library
    before = snapshot(root)
    journal = tmp_path / "j.jsonl"
    apply(make_plan(action, report, tmp_path), journal=journal)
    script = ("import os, sys\nimport lookalike.actions.apply as act\n"
              "act._crash_hook = lambda s: os._exit(9) if s == sys.argv[2] else None\n"
              "act.undo(sys.argv[1])\n")
    proc = subprocess.run([sys.executable, "-c", script, str(journal), step],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert undo(journal).ok
    assert snapshot(root) == before


def test_recover_rolls_back_only_the_unfinished_op(library, tmp_path):
    _root, report = library
    p = make_plan("move", report, tmp_path)
    journal = crash_apply("move", report, tmp_path, "move:unlinked", 2)
    r = recover(journal)
    assert r.ok and r.rolled_back == 1
    done = [op for op in p.operations if not os.path.exists(op.path)]
    assert len(done) == 1 and Path(done[0].dst).exists()


def test_real_sigkill_during_apply_leaves_an_undoable_journal(library, tmp_path):
    root, report = library
    before = snapshot(root)
    journal = tmp_path / "j.jsonl"
    script = """
import sys, time
import lookalike.actions.apply as act
from lookalike.actions.plan import plan
def hook(step):
    print(step, flush=True)
    time.sleep(0.05)
act._crash_hook = hook
act.apply(plan(sys.argv[1], action="hardlink"), journal=sys.argv[2])
print("finished", flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script, str(report), str(journal)],
                            stdout=subprocess.PIPE, text=True)
    try:
        seen = 0
        for line in proc.stdout:  # kill right after the 2nd op made its backup
            if line.strip() == "link:backup":
                seen += 1
                if seen == 2:
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    u = undo(journal)
    assert u.ok and snapshot(root) == before


# --------------------------------------------------------------------------- CLI


def test_cli_apply_then_undo_and_exit_codes(runner, library, tmp_path):
    root, report = library
    before = snapshot(root)
    journal = tmp_path / "j.jsonl"
    res = runner.invoke(cli, ["apply", str(report), "-a", "move", "--to", str(tmp_path / "q"),
                              "--yes", "--journal", str(journal), "-q"])
    assert res.exit_code == 0, res.output
    assert "moved 4 files" in res.output and f"lookalike undo {journal}" in res.output
    res = runner.invoke(cli, ["undo", str(journal), "-q"])
    assert res.exit_code == 0, res.output
    assert "restored 4 files" in res.output
    assert snapshot(root) == before
    res = runner.invoke(cli, ["undo", str(tmp_path / "missing.jsonl")])
    assert isinstance(res.exception, JournalError) and res.exception.exit_code == 2


@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_cli_exits_1_when_an_operation_failed(runner, library, tmp_path, quiet):
    root, report = library
    before = snapshot(root)
    # A file where the quarantine needs the folder photos/sub: those moves fail at run time.
    (tmp_path / "q" / "photos").mkdir(parents=True)
    (tmp_path / "q" / "photos" / "sub").write_bytes(b"in the way")
    res = runner.invoke(cli, ["apply", str(report), "-a", "move", "--to", str(tmp_path / "q"),
                              "--yes", "--journal", str(tmp_path / "j.jsonl"), *quiet])
    assert res.exit_code == 1, res.output
    assert "moved 1 file (" in res.output and "3 failed" in res.output
    # Named one by one, also with -q (it hides progress, never what failed).
    assert res.output.count("error [failed]") == 3
    assert (root / "sub" / "x2.png").read_bytes() == before[str(root / "sub" / "x2.png")][1]
    assert not (root / "b_small.png").exists()  # the one that could go, went
    assert runner.invoke(cli, ["undo", str(tmp_path / "j.jsonl")]).exit_code == 0
    assert snapshot(root) == before


def test_cli_default_journal_goes_to_the_quarantine_folder(runner, library, tmp_path):
    _root, report = library
    res = runner.invoke(cli, ["apply", str(report), "-a", "move", "--to", str(tmp_path / "q"),
                              "--yes"])
    assert res.exit_code == 0, res.output
    journals = list((tmp_path / "q").glob("lookalike-journal-*.jsonl"))
    assert len(journals) == 1 and f"journal: {journals[0]}" in res.output


def test_cli_default_journal_avoids_scanned_folders(runner, tmp_path, scene, monkeypatch):
    root = tmp_path / "photos"
    make_library(root, scene)
    report = root / "report.json"  # a report written inside the scanned folder
    write_report(lookalike.scan(root, method="phash", threshold=6, workers=1), report)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    res = runner.invoke(cli, ["apply", str(report), "-a", "hardlink", "--yes"])
    assert res.exit_code == 0, res.output
    assert list((tmp_path / "state" / "lookalike" / "journals").glob("*.jsonl"))
    assert not list(root.glob("lookalike-journal-*"))


@pytest.mark.skipif(other_filesystem() is None, reason="needs a second file system (/dev/shm)")
@pytest.mark.parametrize(("action", "step"), [("move", "move:marked"), ("move", "move:linked"),
                                              ("move", "move:unlinked"),
                                              ("hardlink", "link:backup"),
                                              ("hardlink", "link:replaced")])
def test_crash_across_file_systems_then_undo_restores_everything(library, tmp_path, action,
                                                                 step):
    root, report = library
    before = snapshot(root)
    elsewhere = Path(tempfile.mkdtemp(dir=other_filesystem()))
    try:
        journal = elsewhere / "j.jsonl"
        to = str(elsewhere / "q") if action == "move" else ""
        proc = subprocess.run([sys.executable, "-c", CRASH, action, str(report), to,
                               str(journal), step, "2"], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 9, proc.stderr
        # a second crash, in the middle of the undo that copies back across file systems
        script = ("import os, sys\nimport lookalike.actions.apply as act\n"
                  "act._crash_hook = lambda s: os._exit(9) if s.startswith('undo:') else None\n"
                  "act.undo(sys.argv[1])\n")
        proc = subprocess.run([sys.executable, "-c", script, str(journal)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 9, proc.stderr
        assert undo(journal).ok
        assert snapshot(root) == before
        assert files_in(elsewhere / "q") == [] and files_in(Path(f"{journal}.backup")) == []
    finally:
        shutil.rmtree(elsewhere)


@pytest.mark.parametrize("action", ["hardlink", "symlink"])
def test_cli_link_actions_say_where_the_replaced_copies_are_kept_and_count_them(
        runner, library, tmp_path, action):
    root, report = library
    journal = tmp_path / "j.jsonl"
    dry = runner.invoke(cli, ["apply", str(report), "-a", action])
    assert "each replaced copy is kept in JOURNAL.backup/" in dry.output
    res = runner.invoke(cli, ["apply", str(report), "-a", action, "--yes", "--journal",
                              str(journal), "-q"])
    assert res.exit_code == 0, res.output
    backups = files_in(Path(f"{journal}.backup"))
    linked = [p for p in files_in(root) if p.is_symlink() or p.stat().st_nlink > 1]
    assert len(backups) == 3 and len(linked) >= 3  # a_copy, x2, x3 (or their keepers) replaced
    size = sum(p.stat().st_size for p in backups)
    assert (f"3 replaced copies kept in {journal}.backup ({human_bytes(size)}, not "
            "freed yet)") in res.output
    assert "for undo; delete that folder to free the space" in res.output
    assert runner.invoke(cli, ["undo", str(journal), "-q"]).exit_code == 0
    assert not Path(f"{journal}.backup").exists()


def test_a_group_the_reviewer_removes_whole_is_counted_as_skipped_and_why(library, tmp_path,
                                                                          runner):
    from test_plan import decisions_file

    root, report = library
    x_group = [str(root / "x.png"), str(root / "sub" / "x2.png"), str(root / "sub" / "x3.png")]
    d = decisions_file(tmp_path, report, [
        {"id": 1, "keep": [str(root / "a.png")],
         "remove": [str(root / "sub" / "a_copy.png"), str(root / "b_small.png")]},
        {"id": 2, "keep": [], "remove": x_group}])  # all REMOVE: never applied
    res = runner.invoke(cli, ["apply", str(d), "--action", "move", "--to",
                              str(tmp_path / "q"), "--yes"])
    assert res.exit_code == 0, res.output
    summary = res.output.splitlines()[-2]
    assert summary.startswith("moved 2 files"), res.output
    assert "; 1 group skipped: group 2 (the decisions keep no file of this group" in summary
    assert all(os.path.exists(p) for p in x_group)


def test_groups_found_changed_at_apply_time_are_named_with_the_plans_skips(library, tmp_path):
    root, report = library
    p = make_plan("move", report, tmp_path)
    (root / "sub" / "x2.png").write_bytes(b"changed")
    res = apply(p, journal=tmp_path / "j.jsonl", reporter=Recorder())
    (skip,) = res.skipped_groups
    assert skip.group == 2 and "x2.png" in skip.reason and "since the scan" in skip.reason
    assert res.skips_line().startswith("1 group skipped: group 2 (")
    assert dataclasses.replace(res, skipped_groups=()).skips_line() == "0 groups skipped"


def test_the_backup_line_counts_the_bytes_of_two_names_of_one_file_once(runner, tmp_path,
                                                                         scene):
    root = tmp_path / "photos"
    root.mkdir()
    scene(5, (200, 150)).save(root / "a.png")
    shutil.copyfile(root / "a.png", root / "b_copy.png")
    os.link(root / "b_copy.png", root / "c_copy.png")  # two names of the copy
    report = tmp_path / "report.json"
    write_report(lookalike.scan(root, workers=1), report)
    journal = tmp_path / "j.jsonl"
    res = runner.invoke(cli, ["apply", str(report), "-a", "hardlink", "--yes", "--journal",
                              str(journal), "-q"])
    assert res.exit_code == 0, res.output
    size = (root / "a.png").stat().st_size
    assert f"kept in {journal}.backup ({human_bytes(size)}, not freed yet)" in res.output
    assert runner.invoke(cli, ["undo", str(journal), "-q"]).exit_code == 0


def test_a_journal_on_a_file_system_without_locks_is_used_unlocked(library, tmp_path,
                                                                   monkeypatch):
    import errno

    fcntl = pytest.importorskip("fcntl")

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    root, report = library
    before = snapshot(root)
    journal = tmp_path / "j.jsonl"
    assert apply(make_plan("move", report, tmp_path), journal=journal).ok
    assert undo(journal).ok and snapshot(root) == before


def test_a_refused_apply_leaves_its_journal_unlocked(library, tmp_path):
    from lookalike.actions.journal import Journal

    _root, report = library
    journal = tmp_path / "j.jsonl"
    plan_ = make_plan("move", report, tmp_path)
    assert apply(plan_, journal=journal).ok
    other = dataclasses.replace(plan_, report_created="another report")
    with pytest.raises(JournalError, match="belongs to another report"):
        apply(other, journal=journal)
    with Journal.open(journal):  # not left locked by the refused run
        pass


@pytest.mark.skipif(sys.platform == "win32", reason="file locks are POSIX flock")
def test_a_group_skipped_as_in_use_releases_the_locks_it_took(library, tmp_path):
    """With its second kept file in use, a group's lock on the first leaked: the file
    stayed locked (and its descriptor open) after apply returned."""
    import fcntl

    root, report = library
    p = make_plan("move", report, tmp_path, protect=[root / "sub"])
    gp = next(g for g in p.groups if len(g.keep) >= 2)
    fds_before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    with open(gp.keep[1], "rb") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        res = apply(p, journal=tmp_path / "j.jsonl", reporter=Recorder())
    assert gp.group in {g.group for g in res.skipped_groups}
    with open(gp.keep[0], "rb") as again:  # not held any more: an exclusive lock is granted
        fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)
    if fds_before:
        assert len(os.listdir("/proc/self/fd")) == fds_before


@pytest.mark.parametrize("action", ["hardlink", "symlink"])
def test_undo_of_a_journal_named_through_a_symbolic_link(library, tmp_path, action):
    """Its backup copies were recorded under the path given then; named through another
    path to the same folder, undo took them for an edited journal's and refused."""
    root, report = library
    before = snapshot(root)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert apply(make_plan(action, report, tmp_path), journal=tmp_path / "link" / "j.jsonl").ok
    assert undo(tmp_path / "real" / "j.jsonl").ok
    assert snapshot(root) == before


def test_ctrl_c_during_undo_says_to_run_undo_again(library, tmp_path, capsys):
    """It said only "interrupted"; running undo again is what finishes the job."""
    from lookalike.actions import apply as act
    from lookalike.cli import main

    root, report = library
    before = snapshot(root)
    journal = tmp_path / "j.jsonl"
    assert apply(make_plan("move", report, tmp_path), journal=journal).ok

    def stop(step: str) -> None:
        if step.startswith("undo:"):
            act._crash_hook = None
            raise KeyboardInterrupt

    act._crash_hook = stop
    try:
        with pytest.raises(SystemExit) as exc:
            main(["undo", str(journal), "-q"])
    finally:
        act._crash_hook = None
    assert exc.value.code == 130
    assert f"run `lookalike undo {journal}` again" in capsys.readouterr().err
    assert undo(journal).ok and snapshot(root) == before


def test_a_resume_with_another_action_or_quarantine_is_refused(library, tmp_path):
    """Undo checks each move against the journal's quarantine: moves a resume made into
    another folder (or after a link run) could never be undone."""
    _root, report = library
    journal = tmp_path / "j.jsonl"
    assert apply(make_plan("move", report, tmp_path), journal=journal).ok
    other = plan(report, action="move", to=tmp_path / "elsewhere")
    with pytest.raises(JournalError, match="begun with action 'move' into"):
        apply(other, journal=journal)
    with pytest.raises(JournalError, match="begun with action 'move'"):
        apply(plan(report, action="delete"), journal=journal)
    # The same folder through a link: its moves would be recorded under another name.
    (tmp_path / "qlink").symlink_to(tmp_path / "q")
    with pytest.raises(JournalError, match="the same path"):
        apply(plan(report, action="move", to=tmp_path / "qlink"), journal=journal)
    assert apply(plan(report, action="move", to=f"{tmp_path}/q/"), journal=journal).ok
    assert undo(journal).ok


def test_a_refused_resume_rolls_nothing_back_first(library, tmp_path, capsys):
    """The command line rolled the interrupted run's operation back, then refused the
    resume for its other quarantine: a change before the refusal."""
    from lookalike.actions import apply as act
    from lookalike.cli import main

    root, report = library
    journal = tmp_path / "j.jsonl"

    class Crash(Exception):
        pass

    def crash(step: str) -> None:
        if step == "move:linked":
            raise Crash

    act._crash_hook = crash
    try:
        with pytest.raises(Crash):
            apply(make_plan("move", report, tmp_path), journal=journal)
    finally:
        act._crash_hook = None
    before, journal_before = snapshot(root, tmp_path / "q"), journal.read_bytes()
    with pytest.raises(SystemExit) as exc:
        main(["apply", str(report), "-a", "move", "--to", str(tmp_path / "other"),
              "--journal", str(journal), "--yes", "-q"])
    assert exc.value.code == 2 and "begun with action 'move'" in capsys.readouterr().err
    assert snapshot(root, tmp_path / "q") == before and journal.read_bytes() == journal_before
    assert undo(journal).ok


def test_undo_leaves_a_failed_operations_destination_alone(library, tmp_path):
    """A move that failed because another run had just put the same bytes at its quarantine
    name was rolled back to nothing by apply, but undo replayed it and deleted the other
    run's copy (same bytes, same time: taken for its own)."""

    _root, report = library
    p = make_plan("move", report, tmp_path)
    op = p.operations[0]

    # The other run's copy: same bytes and mtime.
    with _another_run_at_intent(op, shutil.copy2):
        res = apply(p, journal=tmp_path / "j.jsonl", reporter=Recorder())
    assert op.path in {o.path for o, _ in res.failed}
    undo(tmp_path / "j.jsonl")
    assert os.path.exists(op.dst) and os.path.exists(op.path)


@pytest.mark.parametrize("how", ["moved", "linked"])
def test_undo_of_a_link_journal_moved_with_its_backups_or_named_by_a_link(library, tmp_path,
                                                                         how):
    """Backups were looked for where the intent recorded them: a journal moved with its
    .backup folder (or named through a symbolic link to the file) could not be undone."""
    root, report = library
    before = snapshot(root)
    (tmp_path / "jd").mkdir()
    assert apply(make_plan("hardlink", report, tmp_path), journal=tmp_path / "jd" / "j.jsonl").ok
    if how == "moved":
        shutil.move(tmp_path / "jd", tmp_path / "jd2")
        journal = tmp_path / "jd2" / "j.jsonl"
    else:
        journal = tmp_path / "jlink.jsonl"
        journal.symlink_to(tmp_path / "jd" / "j.jsonl")
    assert undo(journal).ok
    assert snapshot(root) == before


def _one_picture_thrice(tmp_path, scene, names):
    root = tmp_path / "photos"
    root.mkdir()
    scene(1, (200, 150)).save(root / "x.png")
    for name in names:
        (root / name).write_bytes((root / "x.png").read_bytes())
    scene(2, (200, 150)).save(root / "other.png")
    report = tmp_path / "r.json"
    write_report(lookalike.scan(root, method="phash", threshold=6, workers=1), report)
    return root, report


def test_a_keeper_rewritten_during_its_own_link_op_still_stops_the_group(tmp_path, scene):
    # Review: after a collapse (or hard link) op the kept file's state was taken as it was
    # then, whatever had changed: another picture written into it during that op was
    # accepted and the group's last copy deleted.
    from lookalike.actions import apply as act

    root, report = _one_picture_thrice(tmp_path, scene, ["z_copy.png"])
    os.link(root / "x.png", root / "x_link.png")
    write_report(lookalike.scan(root, method="phash", threshold=6, workers=1), report)
    p = plan(report, action="delete", collapse_links=True)
    (g,) = [g for g in p.groups if str(root / "x.png") in g.keep]
    first = g.operations[0]
    assert first.name_of is not None
    other = (root / "other.png").read_bytes()

    def hook(step: str) -> None:
        if (step == "intent" and os.path.exists(first.path)
                and (root / "x.png").read_bytes() != other):
            with open(root / "x.png", "r+b") as fh:
                fh.truncate(0)
                fh.write(other)

    act._crash_hook = hook
    try:
        res = apply(p, journal=tmp_path / "j.jsonl")
    finally:
        act._crash_hook = None
    assert (root / "z_copy.png").exists(), "the last copy of picture 1 was deleted"
    assert [pr.error for _, pr in res.failed] == ["keeper-changed"]


def test_a_failed_hard_link_op_does_not_fail_the_rest_of_its_group(tmp_path, scene):
    # Review: rolling back a hard link op moved the kept file's change time, and every later
    # op of the group was refused as "the file kept ... was changed".
    import errno

    from lookalike.actions import apply as act

    _, report = _one_picture_thrice(tmp_path, scene, ["y1.png", "y2.png", "y3.png"])
    p = plan(report, action="hardlink")
    assert [len(g.operations) for g in p.groups] == [3]
    failed = []

    def hook(step: str) -> None:
        if step == "link:tmp" and not failed:
            failed.append(step)
            raise OSError(errno.EIO, "simulated I/O error")

    act._crash_hook = hook
    try:
        res = apply(p, journal=tmp_path / "j.jsonl")
    finally:
        act._crash_hook = None
    assert [pr.error for _, pr in res.failed] == ["failed"]
    assert len(res.done) == 2


def test_a_resume_finishes_each_group_with_the_keeper_the_interrupted_run_chose(
        library, tmp_path):
    # Review: the resume decided keepers again, reading the headers of files the first run
    # had moved (gone, they say nothing): it picked one of those and skipped the group as
    # "already acted on" for good, half done. The journal now records each group's keepers.
    root, report = library
    before = snapshot(root)
    first = make_plan("move", report, tmp_path)
    journal = crash_apply("move", report, tmp_path, "intent", 2)  # the first op done
    moved = first.operations[0].path
    # Resumed deciding otherwise (here another policy: the newest, which that run moved).
    assert moved == str(root / "b_small.png")
    again = make_plan("move", report, tmp_path, keep="newest", journal=journal)
    assert not again.skipped, again.skipped
    assert apply(again, journal=journal).ok
    after = snapshot(root)
    (g,) = [g for g in first.groups if moved in (op.path for op in g.operations)]
    for keeper in g.keep:  # the group it started: finished with its keeper
        assert after[keeper] == before[keeper]
    for op in g.operations:
        assert not os.path.lexists(op.path) and Path(op.dst).exists()
    # A group it had not touched follows the resumed policy.
    assert str(root / "sub" / "x3.png") in after and str(root / "x.png") not in after


def test_a_resume_without_the_first_runs_keep_option_finishes(library, tmp_path):
    # Final review: a first run given --keep, resumed without it (the report's policy): the
    # journal's keepers made the keep list differ from the report's, and the group was
    # skipped as "the report's keep list was edited".
    from lookalike.actions import apply as act

    _, report = library
    journal = tmp_path / "j.jsonl"
    first = make_plan("move", report, tmp_path, keep="newest")
    started: list[str] = []

    def hook(step: str) -> None:
        if step == "intent":
            started.append(step)
            if len(started) == 2:
                raise RuntimeError("stopped")

    act._crash_hook = hook
    try:
        with pytest.raises(RuntimeError):
            apply(first, journal=journal)
    finally:
        act._crash_hook = None
    done = first.operations[0]
    group = next(g for g in first.groups if done in g.operations)
    again = make_plan("move", report, tmp_path, journal=journal)
    assert not again.skipped, again.skipped
    assert apply(again, journal=journal).ok
    for keeper in group.keep:
        assert os.path.exists(keeper)
    assert not any(os.path.lexists(op.path) for op in group.operations)


def test_the_journal_records_each_groups_keep_list_once(library, tmp_path):
    # Scale review: every op recorded its group's whole keep list (a group of 2,000
    # keepers and 2,000 ops made a 173 MB journal and a 792 MB resume).
    journal = tmp_path / "j.jsonl"
    p = make_plan("move", report=library[1], tmp_path=tmp_path)
    assert apply(p, journal=journal).ok
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    kept = [e for e in events if "kept" in e]
    assert sorted(e["group"] for e in kept) == sorted(g.group for g in p.groups)
    assert all(e["kept"] == list(g.keep) for e in kept for g in p.groups
               if g.group == e["group"])
    assert len([e for e in events if e.get("event") == "intent"]) > len(kept)


def test_a_keep_list_journaled_by_an_op_that_never_ran_is_not_the_groups(library, tmp_path):
    # Review: a run killed at a group's first intent (that op rolled back, never done) left
    # its keep list in the journal; the run that then acted on the group did not record its
    # own, and the next resume took the dead list: skipped for good as "already acted on".
    root, report = library
    os.utime(root / "sub" / "x2.png", ns=(BASE_NS + 99, BASE_NS + 99))  # x2 the newest
    write_report(lookalike.scan(root, method="phash", threshold=6, workers=1), report)
    crash_apply("move", report, tmp_path, "intent", 1, keep="newest")  # would keep x2
    journal = crash_apply("move", report, tmp_path, "intent", 2, keep="oldest")  # moved x2
    again = make_plan("move", report, tmp_path, keep="oldest", journal=journal)
    assert not again.skipped, again.skipped
    assert apply(again, journal=journal).ok
    assert (root / "x.png").exists()
    assert not (root / "sub" / "x2.png").exists() and not (root / "sub" / "x3.png").exists()


def test_a_journal_with_a_hand_edited_group_is_refused_or_undone_not_a_traceback(
        library, tmp_path):
    _, report = library
    journal = tmp_path / "j.jsonl"
    assert apply(make_plan("move", report, tmp_path), journal=journal).ok
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    first = next(e for e in events if e.get("event") == "intent")
    first["group"] = [first["group"]]
    journal.write_text("".join(json.dumps(e) + "\n" for e in events))
    with contextlib.suppress(JournalError):  # refused as damaged: one clear line, exit 2
        undo(journal)
