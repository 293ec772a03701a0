"""Moves into a quarantine other runs share, or that leads elsewhere: undo and recovery act on
this journal's own copy only, and no move lands through a link in the quarantine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import lookalike
from conftest import snapshot
from lookalike import ConfigError, JournalError
from lookalike.actions.apply import apply, undo
from lookalike.actions.plan import Plan, plan
from lookalike.cli import cli
from lookalike.report.schema import write_report

BASE_NS = 1_600_000_000_000_000_000


def _other_filesystem() -> str | None:
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and \
            os.stat(shm).st_dev != os.stat(tempfile.gettempdir()).st_dev:
        return shm
    return None


def _pair(root: Path, picture) -> None:
    """``root/a.png`` and its byte copy ``root/b.png`` (older name kept, ``b`` moved)."""
    root.mkdir(parents=True)
    picture.save(root / "a.png")
    shutil.copyfile(root / "a.png", root / "b.png")
    for k, name in enumerate(["a.png", "b.png"]):
        os.utime(root / name, ns=(BASE_NS + k, BASE_NS + k))


def _report(root: Path, report: Path) -> Path:
    write_report(lookalike.scan(root, method="phash", threshold=6, workers=1), report)
    return report


def _move_plan(report: Path, to: Path) -> Plan:
    p = plan(report, action="move", to=to)
    assert len(p.operations) == 1
    return p


@pytest.fixture
def two_photos(tmp_path, scene):
    """``x/photos`` and ``y/photos``: folders of one name, another picture in each."""
    x, y = tmp_path / "x" / "photos", tmp_path / "y" / "photos"
    _pair(x, scene(1, (200, 150)))
    _pair(y, scene(2, (200, 150)))
    return x, y


@pytest.fixture
def quarantine(tmp_path, request):
    """The quarantine: here, or (``indirect`` True) on another file system, where a move
    copies (and journals the copy's identity) instead of linking."""
    if not getattr(request, "param", False):
        yield tmp_path / "q"
        return
    if _other_filesystem() is None:
        pytest.skip("needs a second file system (/dev/shm)")
    elsewhere = Path(tempfile.mkdtemp(dir=_other_filesystem()))
    try:
        yield elsewhere / "q"
    finally:
        shutil.rmtree(elsewhere)


ACROSS = pytest.mark.parametrize("quarantine", [False, True], indirect=True,
                                 ids=["same-fs", "other-fs"])


@ACROSS
def test_undo_never_puts_another_journals_copy_in_place(two_photos, tmp_path, quarantine):
    """Repro 1a: j1 moved x/photos/b.png to Q/photos/b.png, the user emptied the quarantine,
    and j2 moved y/photos/b.png (another picture) to the same name. Undo of j1 put y's
    picture at x/photos/b.png and said "restored"; undo of j2 then had nothing to restore."""
    x, y = two_photos
    x_before, y_before = snapshot(x), snapshot(y)
    p1 = _move_plan(_report(x, tmp_path / "r1.json"), quarantine)
    p2 = _move_plan(_report(y, tmp_path / "r2.json"), quarantine)
    dst = p1.operations[0].dst
    assert p2.operations[0].dst == dst  # one quarantine name for both
    j1, j2 = tmp_path / "j1.jsonl", tmp_path / "j2.jsonl"
    assert apply(p1, journal=j1).ok
    os.unlink(dst)  # the user empties the quarantine
    assert apply(_move_plan(_report(y, tmp_path / "r2.json"), quarantine), journal=j2).ok
    theirs = Path(dst).read_bytes()
    u1 = undo(j1)
    assert not u1.ok and u1.restored == ()
    (problem,) = u1.failed
    assert problem.path == str(x / "b.png")
    assert f"the file at {dst} is not the copy this journal moved" in problem.message
    assert "\n" not in problem.message
    assert not (x / "b.png").exists()  # not y's picture under x's name
    assert Path(dst).read_bytes() == theirs  # j2's copy left alone
    u2 = undo(j2)
    assert u2.ok and u2.restored == (str(y / "b.png"),)
    assert snapshot(y) == y_before
    # j1's file is gone (the user deleted it from the quarantine): all the rest is as it was.
    assert snapshot(x) == {k: v for k, v in x_before.items() if k != str(x / "b.png")}


@ACROSS
def test_undo_never_removes_another_journals_copy_of_the_same_bytes(two_photos, tmp_path,
                                                                     quarantine):
    """Repro 1b: y/photos is a ``cp -a`` of x/photos. After j1, the user moved the copy back
    by hand; j2 then moved y's b.png to the same quarantine name. Undo of j1 found its file
    back in place and unlinked j2's copy (same size, mtime and SHA-256, taken for its own
    leftover); undo of j2 then could not restore y/photos/b.png."""
    x, y = two_photos
    shutil.rmtree(y)
    shutil.copytree(x, y)  # cp -a: the same bytes and times
    x_before, y_before = snapshot(x), snapshot(y)
    j1, j2 = tmp_path / "j1.jsonl", tmp_path / "j2.jsonl"
    p1 = _move_plan(_report(x, tmp_path / "r1.json"), quarantine)
    report2 = _report(y, tmp_path / "r2.json")
    assert apply(p1, journal=j1).ok
    dst = p1.operations[0].dst
    shutil.move(dst, x / "b.png")  # the user puts it back by hand
    p2 = _move_plan(report2, quarantine)
    assert p2.operations[0].dst == dst
    assert apply(p2, journal=j2).ok
    # j1's file is back in place: nothing of j1 is left to undo, and j2's copy stays.
    assert undo(j1).ok and os.path.exists(dst) and snapshot(x) == x_before
    assert undo(j2).ok and snapshot(y) == y_before


def test_the_cli_repro_undo_of_the_first_journal_says_why_and_exits_1(runner, two_photos,
                                                                      tmp_path):
    x, y = two_photos
    q = tmp_path / "q"
    y_before = snapshot(y)
    for root, n in ((x, 1), (y, 2)):
        res = runner.invoke(cli, ["scan", str(root), "-o", str(tmp_path / f"r{n}.json")])
        assert res.exit_code == 0, res.output

    def move(n: int) -> None:
        res = runner.invoke(cli, ["apply", str(tmp_path / f"r{n}.json"), "-a", "move", "--to",
                                  str(q), "--yes", "--journal", str(tmp_path / f"j{n}.jsonl")])
        assert res.exit_code == 0, res.output

    move(1)
    (moved,) = [p for p in q.rglob("*.png")]
    moved.unlink()
    move(2)
    res = runner.invoke(cli, ["undo", str(tmp_path / "j1.jsonl")])
    assert res.exit_code == 1
    assert "is not the copy this journal moved (another apply put it there?); left alone" \
        in res.output
    res = runner.invoke(cli, ["undo", str(tmp_path / "j2.jsonl")])
    assert res.exit_code == 0, res.output
    assert snapshot(y) == y_before


@ACROSS
def test_a_copy_edited_in_place_in_the_quarantine_still_comes_back(two_photos, tmp_path,
                                                                    quarantine):
    """An edit in place keeps the copy's inode: it is still this journal's copy."""
    x, _ = two_photos
    p = _move_plan(_report(x, tmp_path / "r.json"), quarantine)
    assert apply(p, journal=tmp_path / "j.jsonl").ok
    dst = Path(p.operations[0].dst)
    with open(dst, "r+b") as fh:  # same file, other bytes
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 0xFF]))
    edited = dst.read_bytes()
    assert undo(tmp_path / "j.jsonl").ok
    assert (x / "b.png").read_bytes() == edited and not dst.exists()


@ACROSS
def test_the_journal_records_which_file_the_quarantined_copy_is(two_photos, tmp_path,
                                                                quarantine):
    x, _ = two_photos
    p = _move_plan(_report(x, tmp_path / "r.json"), quarantine)
    journal = tmp_path / "j.jsonl"
    st = os.lstat(p.operations[0].path)
    assert apply(p, journal=journal).ok
    events = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
    kinds = [e["event"] for e in events]
    (intent,) = [e for e in events if e["event"] == "intent"]
    assert intent["copy_ident"] is True and (intent["dev"], intent["ino"]) == (st.st_dev,
                                                                              st.st_ino)
    d = os.lstat(p.operations[0].dst)
    if d.st_dev == st.st_dev:  # a hard link: the moved file's own identity, no event
        assert kinds == ["intent", "done"] and d.st_ino == st.st_ino
    else:  # a copy: its identity, journaled before it took the quarantine name
        assert kinds == ["intent", "copied", "done"]
        assert (events[1]["dev"], events[1]["ino"]) == (d.st_dev, d.st_ino)


def _as_before_identities(journal: Path) -> None:
    """Rewrite ``journal`` as a version before identities were recorded wrote it."""
    lines = []
    for line in journal.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("event") == "copied":
            continue
        ev.pop("copy_ident", None)
        lines.append(json.dumps(ev))
    journal.write_text("\n".join(lines) + "\n")


@ACROSS
def test_a_journal_without_identities_still_undoes_as_before(two_photos, tmp_path,
                                                              quarantine):
    x, _ = two_photos
    before = snapshot(x)
    p = _move_plan(_report(x, tmp_path / "r.json"), quarantine)
    journal = tmp_path / "j.jsonl"
    assert apply(p, journal=journal).ok
    _as_before_identities(journal)
    # Even a copy another way (the inode not the one moved): judged by its bytes, as before.
    dst = p.operations[0].dst
    shutil.copy2(dst, dst + ".tmp")
    os.replace(dst + ".tmp", dst)
    u = undo(journal)
    assert u.ok and u.restored == (str(x / "b.png"),)
    assert snapshot(x) == before


KILL_IN_COPIED = """
import os, sys
import lookalike.actions.apply as act
from lookalike.actions.journal import Journal
from lookalike.actions.plan import plan
report, to, journal, when = sys.argv[1:5]
if when == "before":  # the copy made beside its name, not yet journaled
    Journal.copied = lambda self, rec, st: os._exit(9)
else:  # journaled, not yet under its quarantine name
    act._crash_hook = lambda step: os._exit(9) if step == "move:copied" else None
act.apply(plan(report, action="move", to=to), journal=journal)
"""


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("then", ["undo", "resume"])
def test_a_crash_around_journaling_the_copy_is_recovered(two_photos, tmp_path, when, then,
                                                         runner):
    """Killed between the copy to another file system and its ``copied`` event (identity
    unknown), or right after the event: undo and a resumed apply both get it right, and
    leave no temporary file."""
    if _other_filesystem() is None:
        pytest.skip("needs a second file system (/dev/shm)")
    x, _ = two_photos
    before = snapshot(x)
    report = _report(x, tmp_path / "r.json")
    elsewhere = Path(tempfile.mkdtemp(dir=_other_filesystem()))
    try:
        q, journal = elsewhere / "q", tmp_path / "j.jsonl"
        proc = subprocess.run([sys.executable, "-c", KILL_IN_COPIED, str(report), str(q),
                               str(journal), when], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 9, proc.stderr
        assert any(".lookalike-" in p.name for p in q.rglob("*"))  # the unfinished copy
        if then == "resume":
            res = runner.invoke(cli, ["apply", str(report), "-a", "move", "--to", str(q),
                                      "--yes", "--journal", str(journal)])
            assert res.exit_code == 0, res.output
            assert not (x / "b.png").exists()
            assert [p.name for p in q.rglob("*") if p.is_file()] == ["b.png"]
        u = undo(journal)
        assert u.ok, u.failed
        assert snapshot(x) == before
        assert not [p for p in q.rglob("*") if p.is_file()]
    finally:
        shutil.rmtree(elsewhere)


# --------------------------------------------------------------------------- links in Q


@pytest.fixture
def library(tmp_path, scene):
    """``photos/a.png`` and its copy ``photos/sub/b.png``, an empty ``photos/other``."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "other").mkdir()
    scene(3, (200, 150)).save(root / "a.png")
    shutil.copyfile(root / "a.png", root / "sub" / "b.png")
    os.utime(root / "a.png", ns=(BASE_NS, BASE_NS))
    os.utime(root / "sub" / "b.png", ns=(BASE_NS + 1, BASE_NS + 1))
    return root, _report(root, tmp_path / "r.json")


@pytest.mark.parametrize("target", ["scanned", "outside"])
def test_a_link_in_the_quarantine_out_of_it_is_refused_when_planned(library, tmp_path, target):
    """Bug 2: ``Q/photos`` a link to ``photos/other``: the move put its copy among the
    scanned files (the plan checked ``--to`` alone)."""
    root, report = library
    q = tmp_path / "q"
    q.mkdir()
    away = root / "other" if target == "scanned" else tmp_path / "elsewhere"
    away.mkdir(exist_ok=True)
    os.symlink(away, q / "photos")
    why = "inside the scanned folder" if target == "scanned" else "outside the quarantine folder"
    with pytest.raises(ConfigError, match=f"cannot be moved: the quarantine folder .*{why}"):
        plan(report, action="move", to=q)
    res = subprocess.run([sys.executable, "-m", "lookalike", "apply", str(report), "-a", "move",
                          "--to", str(q), "--yes", "--journal", str(tmp_path / "j.jsonl")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and why in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert (root / "sub" / "b.png").exists() and not any(away.rglob("*.png"))


def test_a_link_made_in_the_quarantine_after_the_plan_is_refused_when_applied(library,
                                                                           tmp_path):
    """The quarantine's folder became a link after the plan: the op is refused untouched,
    and no folder is made through the link (``makedirs`` went through it)."""
    root, report = library
    before = snapshot(root)
    q = tmp_path / "q"
    p = plan(report, action="move", to=q)
    (op,) = p.operations
    assert op.dst == str(q / "photos" / "sub" / "b.png")
    q.mkdir()
    os.symlink(root / "other", q / "photos")
    res = apply(p, journal=tmp_path / "j.jsonl")
    assert not res.ok and res.done == ()
    (failed, problem), = res.failed
    assert failed.path == op.path
    assert "nothing changed" in problem.message and "inside the scanned folder" in problem.message
    assert snapshot(root) == before  # nothing landed in photos/other, no folder made there
    events = [json.loads(x) for x in (tmp_path / "j.jsonl").read_text().splitlines()[1:]]
    assert [e["event"] for e in events] == ["intent", "failed"]
    assert undo(tmp_path / "j.jsonl").ok and snapshot(root) == before


@pytest.mark.parametrize("quarantine", [True], indirect=True, ids=["other-fs"])
def test_an_edited_copied_event_is_a_corrupt_journal(two_photos, tmp_path, quarantine):
    x, _ = two_photos
    p = _move_plan(_report(x, tmp_path / "r.json"), quarantine)
    journal = tmp_path / "j.jsonl"
    assert apply(p, journal=journal).ok
    text = journal.read_text().replace('"event": "copied", "op": 1, "dev"',
                                       '"event": "copied", "op": 1, "dev": null, "was"')
    assert '"dev": null' in text
    journal.write_text(text)
    with pytest.raises(JournalError, match="is corrupt"):
        undo(journal)


def test_a_copy_never_replaces_a_file_that_took_its_name_meanwhile(tmp_path, monkeypatch):
    """Across file systems the copy is made beside its name and then given it: a rename
    there replaced a file another apply put at that name after the check (simulated: the
    other file appears just before the name is given, however it is given)."""
    import errno

    from lookalike.actions import apply as applying

    src, dst, part = tmp_path / "a.png", tmp_path / "q" / "a.png", tmp_path / "q" / "a.part"
    src.write_bytes(b"ours")
    dst.parent.mkdir()
    real_link, real_rename = applying._hardlink, os.rename
    race = [True]

    def theirs_first(target: str) -> None:
        if race[0] and target == str(dst):
            race[0] = False
            dst.write_bytes(b"theirs")

    def link(a: str, b: str) -> None:
        if a == str(src):  # src -> dst: as if on another file system
            raise OSError(errno.EXDEV, "cross-device link")
        theirs_first(b)
        real_link(a, b)

    def rename(a, b, *args, **kwargs):
        theirs_first(os.fspath(b))
        return real_rename(a, b, *args, **kwargs)

    monkeypatch.setattr(applying, "_hardlink", link)
    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(FileExistsError):
        applying._link_or_copy(str(src), str(dst), str(part), 4, None)
    assert dst.read_bytes() == b"theirs" and not part.exists() and src.read_bytes() == b"ours"
    dst.unlink()
    applying._link_or_copy(str(src), str(dst), str(part), 4, None)
    assert dst.read_bytes() == b"ours" and not part.exists()
