"""Moves from several reports into one quarantine, or into one that leads elsewhere: each
quarantine folder ``Q/<name>`` names the scanned folder whose files it holds (its marker), so
two folders of one name never share it and undo never takes another's file for its own; no
move lands through a link in the quarantine."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import lookalike
from conftest import other_filesystem, snapshot
from lookalike import ConfigError
from lookalike.actions import apply as applying
from lookalike.actions.apply import apply, undo
from lookalike.actions.plan import MARKER, Plan, plan
from lookalike.cli import cli
from lookalike.report.schema import write_report

BASE_NS = 1_600_000_000_000_000_000


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
    copies instead of linking."""
    if not getattr(request, "param", False):
        yield tmp_path / "q"
        return
    if other_filesystem() is None:
        pytest.skip("needs a second file system (/dev/shm)")
    elsewhere = Path(tempfile.mkdtemp(dir=other_filesystem()))
    try:
        yield elsewhere / "q"
    finally:
        shutil.rmtree(elsewhere)


ACROSS = pytest.mark.parametrize("quarantine", [False, True], indirect=True,
                                 ids=["same-fs", "other-fs"])


def _marker(q: Path, name: str = "photos") -> Path:
    return q / name / MARKER


def _kinds(journal: Path) -> list[str]:
    return [json.loads(line)["event"] for line in journal.read_text().splitlines()[1:]]


@ACROSS
def test_each_quarantine_folder_names_the_scanned_folder_it_holds(two_photos, tmp_path,
                                                                   quarantine):
    """The marker holds the root as the report records it; nothing else is journaled for
    it (no identity event), and the undo that empties the folder removes it with it."""
    x, y = two_photos
    report = tmp_path / "r.json"
    write_report(lookalike.scan([x, y], method="phash", threshold=6, workers=1), report)
    p = plan(report, action="move", to=quarantine)
    assert sorted(os.path.dirname(op.dst) for op in p.operations) == [
        str(quarantine / "photos"), str(quarantine / "photos~2")]
    journal = tmp_path / "j.jsonl"
    assert apply(p, journal=journal).ok
    assert _marker(quarantine).read_bytes() == os.fsencode(x) + b"\n"
    assert _marker(quarantine, "photos~2").read_bytes() == os.fsencode(y) + b"\n"
    assert _kinds(journal) == ["intent", "done", "intent", "done"]
    assert all("copy_ident" not in json.loads(line) for line in journal.read_text().splitlines())
    assert undo(journal).ok
    assert os.listdir(quarantine) == []  # each folder emptied, its marker with it


def test_a_second_scanned_folder_of_the_same_name_is_refused_by_the_plan(two_photos, tmp_path):
    """Repro 1a, first half: the user empties the quarantine of x/photos's files; a report of
    y/photos, another folder of that name, must not go into Q/photos (undo of the first
    journal would take its files for its own). A new report of x/photos still may."""
    x, y = two_photos
    q = tmp_path / "q"
    p1 = _move_plan(_report(x, tmp_path / "r1.json"), q)
    assert apply(p1, journal=tmp_path / "j1.jsonl").ok
    os.unlink(p1.operations[0].dst)  # the user empties the quarantine (the marker is hidden)
    with pytest.raises(ConfigError) as info:
        plan(_report(y, tmp_path / "r2.json"), action="move", to=q)
    assert str(info.value) == (f"the quarantine folder {q / 'photos'} holds the files of "
                               f"another scanned folder, {x}; choose another quarantine folder")
    shutil.copyfile(x / "a.png", x / "c.png")  # x again, rescanned: its own folder
    assert plan(_report(x, tmp_path / "r3.json"), action="move", to=q).operations


def test_the_cli_refuses_the_second_folder_of_one_name_in_one_line(runner, two_photos,
                                                                    tmp_path):
    x, y = two_photos
    q = tmp_path / "q"
    y_before = snapshot(y)
    for root, n in ((x, 1), (y, 2)):
        res = runner.invoke(cli, ["scan", str(root), "-o", str(tmp_path / f"r{n}.json")])
        assert res.exit_code == 0, res.output

    def move(n: int) -> list[str]:
        return ["apply", str(tmp_path / f"r{n}.json"), "-a", "move", "--to", str(q), "--yes",
                "--journal", str(tmp_path / f"j{n}.jsonl")]

    assert runner.invoke(cli, move(1)).exit_code == 0
    (moved,) = [p for p in q.rglob("*.png")]
    moved.unlink()
    res = subprocess.run([sys.executable, "-m", "lookalike", *move(2)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2
    assert f"holds the files of another scanned folder, {x}; choose another" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert snapshot(y) == y_before and not (tmp_path / "j2.jsonl").exists()


@ACROSS
def test_two_applies_racing_into_one_quarantine_folder_never_share_it(two_photos, tmp_path,
                                                                       quarantine):
    """Both planned before either ran (no marker yet): the second finds the first's marker
    when it makes its own and leaves its file where it is; each undo then restores its own."""
    x, y = two_photos
    for old, new in (("a.png", "c.png"), ("b.png", "d.png")):  # names other than x's
        os.rename(y / old, y / new)
    x_before, y_before = snapshot(x), snapshot(y)
    p1 = _move_plan(_report(x, tmp_path / "r1.json"), quarantine)
    p2 = _move_plan(_report(y, tmp_path / "r2.json"), quarantine)
    j1, j2 = tmp_path / "j1.jsonl", tmp_path / "j2.jsonl"
    assert apply(p1, journal=j1).ok
    res = apply(p2, journal=j2)
    assert not res.ok and res.done == ()
    ((op, problem),) = res.failed
    assert op.path == str(y / "d.png")
    assert problem.message == (
        f"move failed, nothing changed: the quarantine folder {quarantine / 'photos'} holds "
        f"the files of another scanned folder, {x}; not moved there")
    assert _kinds(j2) == ["intent", "failed"] and snapshot(y) == y_before
    assert _marker(quarantine).read_bytes() == os.fsencode(x) + b"\n"
    assert sorted(os.listdir(quarantine / "photos")) == [MARKER, "b.png"]
    assert undo(j1).ok and snapshot(x) == x_before
    assert not (quarantine / "photos").exists()  # emptied: its marker went with it
    u2 = undo(j2)
    assert u2.ok and u2.restored == () and snapshot(y) == y_before


@ACROSS
def test_undo_never_puts_another_folders_copy_in_place(two_photos, tmp_path, quarantine):
    """Repro 1a: j1 moved x/photos/b.png to Q/photos/b.png, the user emptied the quarantine
    (its marker too), and j2 moved y/photos/b.png (another picture) to the same name. Undo
    of j1 put y's picture at x/photos/b.png and said "restored"; undo of j2 then had nothing
    to restore."""
    x, y = two_photos
    x_before, y_before = snapshot(x), snapshot(y)
    j1, j2 = tmp_path / "j1.jsonl", tmp_path / "j2.jsonl"
    p1 = _move_plan(_report(x, tmp_path / "r1.json"), quarantine)
    assert apply(p1, journal=j1).ok
    dst = p1.operations[0].dst
    shutil.rmtree(quarantine / "photos")  # the user empties the quarantine, marker and all
    p2 = _move_plan(_report(y, tmp_path / "r2.json"), quarantine)
    assert p2.operations[0].dst == dst  # one quarantine name for both
    assert apply(p2, journal=j2).ok
    theirs = Path(dst).read_bytes()
    u1 = undo(j1)
    assert not u1.ok and u1.restored == ()
    (problem,) = u1.failed
    assert problem.path == str(x / "b.png")
    assert (f"the quarantine folder {quarantine / 'photos'} now holds the files of another "
            f"scanned folder, {y} (emptied and used by another apply since?): {dst} is not "
            "this journal's copy; left alone") in problem.message
    assert "\n" not in problem.message
    assert not (x / "b.png").exists()  # not y's picture under x's name
    assert Path(dst).read_bytes() == theirs  # j2's copy left alone
    u2 = undo(j2)
    assert u2.ok and u2.restored == (str(y / "b.png"),)
    assert snapshot(y) == y_before and not (quarantine / "photos").exists()
    # j1's file is gone (the user deleted it from the quarantine): all the rest is as it was.
    assert snapshot(x) == {k: v for k, v in x_before.items() if k != str(x / "b.png")}


@ACROSS
def test_undo_never_removes_another_folders_copy_of_the_same_bytes(two_photos, tmp_path,
                                                                    quarantine):
    """Repro 1b: y/photos is a ``cp -a`` of x/photos. After j1, the user moved the copy back
    by hand and emptied the quarantine; j2 then moved y's b.png to the same quarantine name.
    Undo of j1 found its file back in place and unlinked j2's copy (same size, mtime and
    SHA-256, taken for its own leftover); undo of j2 then could not restore y/photos/b.png."""
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
    with pytest.raises(ConfigError, match="holds the files of another scanned folder"):
        plan(report2, action="move", to=quarantine)  # the folder is still x's
    shutil.rmtree(quarantine / "photos")  # ... until the user empties it
    p2 = _move_plan(report2, quarantine)
    assert p2.operations[0].dst == dst
    assert apply(p2, journal=j2).ok
    # j1's file is back in place: nothing of j1 is left to undo, and j2's copy stays.
    assert undo(j1).ok and os.path.exists(dst) and snapshot(x) == x_before
    assert undo(j2).ok and snapshot(y) == y_before


@ACROSS
@pytest.mark.parametrize("how", ["in-place", "by-rename"])
def test_a_copy_edited_in_the_quarantine_comes_back_as_it_is(two_photos, tmp_path, quarantine,
                                                             how):
    """Edited in place (the same inode) or saved by an editor that writes a new file and
    renames it over the old (a new inode): it is this journal's copy either way."""
    x, _ = two_photos
    p = _move_plan(_report(x, tmp_path / "r.json"), quarantine)
    assert apply(p, journal=tmp_path / "j.jsonl").ok
    dst = Path(p.operations[0].dst)
    data = bytearray(dst.read_bytes())
    data[-1] ^= 0xFF
    if how == "in-place":
        with open(dst, "r+b") as fh:
            fh.write(data)
    else:
        (dst.parent / "b.png.saving").write_bytes(data)
        os.replace(dst.parent / "b.png.saving", dst)
    edited = dst.stat()
    u = undo(tmp_path / "j.jsonl")
    assert u.ok and u.restored == (str(x / "b.png"),)
    back = (x / "b.png").stat()
    assert (x / "b.png").read_bytes() == bytes(data) and not dst.exists()
    assert back.st_mtime_ns == edited.st_mtime_ns  # its own mtime, not the scanned one


@ACROSS
def test_a_quarantine_without_a_marker_undoes_as_before(two_photos, tmp_path, quarantine):
    """A quarantine of an earlier version (or whose marker the user removed): the copy is
    judged by its bytes, as before, even a copy made another way (another inode); the folder
    emptied goes."""
    x, _ = two_photos
    before = snapshot(x)
    p = _move_plan(_report(x, tmp_path / "r.json"), quarantine)
    journal = tmp_path / "j.jsonl"
    assert apply(p, journal=journal).ok
    _marker(quarantine).unlink()
    dst = p.operations[0].dst
    shutil.copy2(dst, dst + ".tmp")
    os.replace(dst + ".tmp", dst)
    u = undo(journal)
    assert u.ok and u.restored == (str(x / "b.png"),)
    assert snapshot(x) == before and not (quarantine / "photos").exists()


def test_a_quarantine_folder_holding_more_than_its_marker_stays(two_photos, tmp_path):
    """Undo removes a quarantine folder left holding only its marker, never one with anything
    else in it (the user's note stays, and the marker with it: the folder is still x's)."""
    x, _ = two_photos
    q = tmp_path / "q"
    p = _move_plan(_report(x, tmp_path / "r.json"), q)
    assert apply(p, journal=tmp_path / "j.jsonl").ok
    (q / "photos" / "notes.txt").write_text("keep me")
    assert undo(tmp_path / "j.jsonl").ok and (x / "b.png").exists()
    assert sorted(os.listdir(q / "photos")) == [MARKER, "notes.txt"]
    # A marker that is not a file lookalike wrote (a folder here) is not removed either.
    (q / "photos" / "notes.txt").unlink()
    _marker(q).unlink()
    _marker(q).mkdir()
    applying._prune_dirs(str(q / "photos"), str(q), str(q / "photos"))
    assert _marker(q).is_dir()


def test_a_marker_cut_short_is_not_taken_for_a_scanned_folder(two_photos, tmp_path):
    """A marker without its newline (a run stopped while writing it) names no folder: the
    plan lets it be, but no move goes in until it is removed."""
    x, _ = two_photos
    q = tmp_path / "q"
    (q / "photos").mkdir(parents=True)
    _marker(q).write_bytes(os.fsencode(x)[:5])
    p = _move_plan(_report(x, tmp_path / "r.json"), q)
    res = apply(p, journal=tmp_path / "j.jsonl")
    assert not res.ok and (x / "b.png").exists()
    assert f"the marker {_marker(q)} names no scanned folder" in res.failed[0][1].message
    _marker(q).unlink()
    assert apply(_move_plan(_report(x, tmp_path / "r.json"), q),
                 journal=tmp_path / "j2.jsonl").ok


def test_a_scan_of_the_quarantine_skips_the_marker(two_photos, tmp_path):
    x, _ = two_photos
    q = tmp_path / "q"
    assert apply(_move_plan(_report(x, tmp_path / "r.json"), q),
                 journal=tmp_path / "j.jsonl").ok
    res = lookalike.scan(q, method="phash", threshold=6, workers=1)
    assert [r.path for r in res.records] == [str(q / "photos" / "b.png")]
    assert res.stats["skipped_non_image"] == 1  # the marker, among "other files skipped"


def test_a_journal_event_of_another_version_is_skipped(two_photos, tmp_path):
    """Unknown events (as 346e37d's ``copied``, never released, or a later version's) and
    events whose fields are of other types do not stop an undo."""
    x, _ = two_photos
    before = snapshot(x)
    p = _move_plan(_report(x, tmp_path / "r.json"), tmp_path / "q")
    journal = tmp_path / "j.jsonl"
    assert apply(p, journal=journal).ok
    with open(journal, "a") as fh:
        for ev in ({"event": "copied", "op": 1, "dev": None, "ino": 7},
                   {"event": "from-the-future", "op": [1]}, {"event": ["done"], "op": 1},
                   {"event": "done", "op": {"1": 1}}):
            fh.write(json.dumps(ev) + "\n")
    u = undo(journal)
    assert u.ok and u.restored == (str(x / "b.png"),) and snapshot(x) == before


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


def test_a_copy_never_replaces_a_file_that_took_its_name_meanwhile(tmp_path, monkeypatch):
    """Across file systems the copy is made beside its name and then given it: a rename
    there replaced a file another apply put at that name after the check (simulated: the
    other file appears just before the name is given, however it is given)."""
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


@pytest.mark.parametrize("err", [errno.EINVAL, errno.ENOSYS, errno.EPERM])
def test_where_no_link_can_be_made_the_copy_takes_its_name_by_a_checked_rename(
        tmp_path, monkeypatch, err):
    """FAT/exFAT under Windows refuse a link with EINVAL ("Incorrect function"), FUSE with
    ENOSYS: the copy is then renamed to its name, once checked free (every such move failed,
    and the copy back in undo too). Not over a file there: that one stays."""
    src, dst, part = tmp_path / "a.png", tmp_path / "q" / "a.png", tmp_path / "q" / "a.part"
    src.write_bytes(b"ours")
    dst.parent.mkdir()
    renamed: list[tuple[str, str]] = []
    real_rename = os.rename

    def link(a: str, b: str) -> None:
        raise OSError(err, os.strerror(err), a, None, b)

    def rename(a, b, *args, **kwargs):
        renamed.append((os.fspath(a), os.fspath(b)))
        return real_rename(a, b, *args, **kwargs)

    monkeypatch.setattr(applying, "_hardlink", link)
    monkeypatch.setattr(os, "rename", rename)
    dst.write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        applying._link_or_copy(str(src), str(dst), str(part), 4, None)
    assert dst.read_bytes() == b"theirs" and not part.exists() and renamed == []
    dst.unlink()
    applying._link_or_copy(str(src), str(dst), str(part), 4, None)
    assert dst.read_bytes() == b"ours" and src.read_bytes() == b"ours" and not part.exists()
    assert renamed == [(str(part), str(dst))]


def test_a_move_and_its_undo_work_where_no_link_can_be_made(two_photos, tmp_path,
                                                             monkeypatch):
    """The whole move and undo on such a file system (every link refused with EINVAL)."""
    x, _ = two_photos
    before = snapshot(x)
    p = _move_plan(_report(x, tmp_path / "r.json"), tmp_path / "q")

    def link(a: str, b: str) -> None:
        raise OSError(errno.EINVAL, "Incorrect function", a, None, b)

    monkeypatch.setattr(applying, "_hardlink", link)
    assert apply(p, journal=tmp_path / "j.jsonl").ok
    assert Path(p.operations[0].dst).read_bytes() == before[str(x / "b.png")][1]
    u = undo(tmp_path / "j.jsonl")
    assert u.ok and u.restored == (str(x / "b.png"),)
    assert snapshot(x) == {**before, str(x / "b.png"): snapshot(x)[str(x / "b.png")]}
    assert (x / "b.png").read_bytes() == before[str(x / "b.png")][1]
    assert (x / "b.png").stat().st_mtime_ns == before[str(x / "b.png")][2]


def test_a_quarantine_folder_of_an_earlier_version_is_not_claimed(two_photos, tmp_path):
    """Files and no marker: an earlier version's quarantine of x/photos. A later apply of
    y/photos there wrote its marker into it, and undo of x's journal was then refused
    ("holds the files of another scanned folder")."""
    _, y = two_photos
    q = tmp_path / "q"
    (q / "photos").mkdir(parents=True)
    (q / "photos" / "b_from_before.png").write_bytes(b"an earlier version moved this here")
    y_before = snapshot(y)
    assert apply(_move_plan(_report(y, tmp_path / "r.json"), q),
                 journal=tmp_path / "j.jsonl").ok
    assert not (q / "photos" / MARKER).exists()  # used unmarked, as then
    assert undo(tmp_path / "j.jsonl").ok and snapshot(y) == y_before
    assert (q / "photos" / "b_from_before.png").read_bytes().startswith(b"an earlier")


def test_undo_of_a_single_file_root_takes_back_only_its_own_file(tmp_path, scene):
    """A scanned single file lies at Q/<its name>, in no marked folder: after the quarantine
    was emptied another run's file of that name stood there, and undo restored it."""
    x, y = tmp_path / "x", tmp_path / "y"
    _pair(x, scene(1, (200, 150)))
    _pair(y, scene(2, (200, 150)))
    q = tmp_path / "q"
    reports = []
    for root in (x, y):
        report = tmp_path / f"r_{root.name}.json"
        write_report(lookalike.scan([root / "a.png", root / "b.png"], method="phash",
                                    threshold=6, workers=1), report)
        reports.append(report)
    x_before = snapshot(x)
    assert apply(_move_plan(reports[0], q), journal=tmp_path / "jx.jsonl").ok
    (moved,) = [p for p in q.iterdir() if p.name != MARKER]
    moved.unlink()  # the user empties the quarantine
    assert apply(_move_plan(reports[1], q), journal=tmp_path / "jy.jsonl").ok
    theirs = moved.read_bytes()
    result = undo(tmp_path / "jx.jsonl")
    assert not result.ok and "is not the one this journal moved" in result.failed[0].message
    assert moved.read_bytes() == theirs  # y's file left alone
    assert snapshot(x) == {k: v for k, v in x_before.items() if k != str(x / "b.png")}
    assert undo(tmp_path / "jy.jsonl").ok


def test_a_run_refused_a_quarantine_folder_makes_no_folder_in_it(two_photos, tmp_path):
    """The marker names another folder by the time the moves run (planned before it was
    written): the run is refused, and leaves no folder inside (it left Q/photos/<sub>,
    which nothing removed)."""
    x, y = two_photos
    (x / "sub").mkdir()
    for name in ("a.png", "b.png"):
        os.replace(x / name, x / "sub" / name)
    q = tmp_path / "q"
    p = _move_plan(_report(x, tmp_path / "r.json"), q)
    (q / "photos").mkdir(parents=True)
    (q / "photos" / MARKER).write_bytes(os.fsencode(str(y)) + b"\n")
    result = apply(p, journal=tmp_path / "j.jsonl")
    assert not result.ok
    assert sorted(os.listdir(q / "photos")) == [MARKER]


def test_undo_finishes_pruning_that_an_interrupted_undo_began(tmp_path):
    q = tmp_path / "q"
    shelf = q / "photos"
    shelf.mkdir(parents=True)
    (shelf / MARKER).write_bytes(b"/somewhere/photos\n")
    # The folder the file lay in was removed before the kill; its parents were not.
    applying._prune_dirs(str(shelf / "2020" / "june"), str(q), str(shelf))
    assert os.listdir(q) == []


def test_a_journal_whose_run_stopped_before_its_header_is_begun_anew(two_photos, tmp_path):
    """kill -9 between creating the journal and writing its header left an empty (or torn)
    file that undo and resume both refused as "not a lookalike journal"."""
    from lookalike.actions.journal import JOURNAL_KIND, Journal
    from lookalike.errors import JournalError

    x, _ = two_photos
    x_before = snapshot(x)
    p = _move_plan(_report(x, tmp_path / "r.json"), tmp_path / "q")
    for torn in (b"", b'{"kind": "lookal', f'{{"kind": "{JOURNAL_KIND}", "sch'.encode()):
        journal = tmp_path / "j.jsonl"
        journal.write_bytes(torn)
        assert Journal.unstarted(journal)
        assert undo(journal).restored == ()  # nothing was done under it
        assert apply(p, journal=journal).ok and not (x / "b.png").exists()
        assert undo(journal).ok and snapshot(x) == x_before
        journal.unlink()
    # Anything else named as a journal is still no journal (and never replaced).
    other = tmp_path / "notes.txt"
    other.write_bytes(b"hello")
    assert not Journal.unstarted(other)
    with pytest.raises(JournalError):
        undo(other)
    with pytest.raises(JournalError):
        apply(p, journal=other)
    assert other.read_bytes() == b"hello"


def test_ctrl_c_in_a_library_apply_says_which_journal_holds_the_changes(two_photos, tmp_path,
                                                                      monkeypatch):
    """undo() raised Interrupted with its journal; apply() let a bare KeyboardInterrupt out."""
    x, _ = two_photos
    p = _move_plan(_report(x, tmp_path / "r.json"), tmp_path / "q")

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(applying, "_run_op", stop)
    with pytest.raises(lookalike.Interrupted) as exc:
        apply(p, journal=tmp_path / "j.jsonl")
    assert exc.value.journal == str(tmp_path / "j.jsonl")
