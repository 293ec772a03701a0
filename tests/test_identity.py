"""A file is its identity, not its path: walk, report, file lists, review page, collapsing links.

(The end-to-end safety property over random trees is in ``test_identity_safety.py``.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import lookalike
from lookalike import pipeline
from lookalike.actions.apply import apply, undo
from lookalike.actions.plan import plan, render_plan
from lookalike.config import ScanConfig
from lookalike.errors import ConfigError
from lookalike.inputs import remote
from lookalike.inputs.walk import FileEntry, iter_files, unique_files
from lookalike.report.html import _page_data
from lookalike.report.schema import read_report, render_text


def reclaimable(result) -> int:
    """The bytes a report of ``result`` calls reclaimable (its default keep decisions)."""
    from lookalike.report.schema import decide_keep

    return decide_keep(result).bytes_removed(result.groups)


class _Problems:
    def phase(self, *a) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def info(self, message: str) -> None: ...
    def close(self) -> None: ...
    def problem(self, problem) -> None:
        print(problem)


def _tree(root: Path, scene) -> Path:
    """photos/{a,b}.png, a hard link a_hl.png of a.png, a byte copy a_copy.png (older)."""
    photos = root / "photos"
    photos.mkdir(parents=True)
    scene(1).save(photos / "a.png")
    scene(2).save(photos / "b.png")
    os.link(photos / "a.png", photos / "a_hl.png")
    (photos / "a_copy.png").write_bytes((photos / "a.png").read_bytes())
    os.utime(photos / "a_copy.png", ns=(10**18, 10**18))
    return photos


def _inodes(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_ino, p.read_bytes()) for p in sorted(folder.iterdir())}


def test_unique_files_keeps_one_entry_per_identity_and_the_path_without_links(tmp_path, scene):
    photos = _tree(tmp_path, scene)
    (tmp_path / "alias").symlink_to(photos)
    found = [e for e in iter_files([tmp_path / "alias", photos, photos / "a.png"])
             if isinstance(e, FileEntry)]
    assert len(found) == 9  # 4 names under each root, plus a.png named again
    one = {e.path: e for e in unique_files(found)}
    a = str(photos / "a.png")
    # The linked root was walked first, but the primary path is the one without a link.
    assert sorted(one) == [a, str(photos / "a_copy.png"), str(photos / "b.png")]
    assert set(one[a].aliases) == {str(tmp_path / "alias" / "a.png"),
                                   str(tmp_path / "alias" / "a_hl.png"),
                                   str(photos / "a_hl.png")}
    assert one[str(photos / "b.png")].aliases == (str(tmp_path / "alias" / "b.png"),)


def test_unstatted_entries_are_told_apart_by_path():
    a = FileEntry("/x/a.png", -1, 0, "/list.txt")
    b = FileEntry("/x/b.png", -1, 0, "/list.txt")
    assert unique_files([a, b, a]) == [a, b]


def test_hard_links_are_one_record_shown_as_links_of_one_file(tmp_path, scene):
    photos = _tree(tmp_path, scene)
    result = lookalike.scan([photos], workers=1, cache=None)
    assert len(result.records) == 3 and result.stats["aliases"] == 1
    (group,) = result.groups
    assert sorted(p.rsplit("/", 1)[1] for p in group.paths) == ["a.png", "a_copy.png"]
    rec = next(m.record for m in group.members if m.record.path.endswith("/a.png"))
    assert rec.aliases == (str(photos / "a_hl.png"),)
    # One copy's bytes are reclaimable, not two: the hard link takes no space.
    assert reclaimable(result) == rec.size_bytes

    out = tmp_path / "r.json"
    lookalike.write_report(result, out)
    back = read_report(out)
    (g,) = back.groups
    assert {m.record.path: m.record.aliases for m in g.members}[rec.path] == rec.aliases
    text = render_text(result)
    assert f"= {photos / 'a_hl.png'}  (same file)" in text
    assert "1 other path led to a file already found" in text
    page = _page_data(json.loads(out.read_text()), json.loads(out.read_text())["groups"],
                      str(out), {})
    assert [m["a"] for m in page["groups"][0]["m"] if m["p"] == rec.path] == [
        [str(photos / "a_hl.png")]]


def test_removing_a_file_with_hard_links_acts_on_every_name_and_counts_bytes_once(
        tmp_path, scene):
    photos = _tree(tmp_path, scene)
    result = lookalike.scan([photos], workers=1, cache=None)
    lookalike.write_report(result, tmp_path / "r.json")
    before = _inodes(photos)
    p = plan(tmp_path / "r.json", action="move", keep="oldest", to=tmp_path / "Q")
    assert sorted(Path(op.path).name for op in p.operations) == ["a.png", "a_hl.png"]
    assert p.bytes == (photos / "a.png").stat().st_size
    assert "another name: counted once" in render_plan(p)
    res = apply(p, journal=tmp_path / "j.jsonl")
    assert res.ok and sorted(os.listdir(photos)) == ["a_copy.png", "b.png"]
    assert res.bytes_done == p.bytes
    undo(tmp_path / "j.jsonl")
    assert _inodes(photos) == before  # both names back, still one inode


def test_collapse_links_removes_extra_names_of_kept_files_only_when_asked(tmp_path, scene):
    photos = _tree(tmp_path, scene)
    lookalike.write_report(lookalike.scan([photos], workers=1, cache=None), tmp_path / "r.json")
    before = _inodes(photos)
    plain = plan(tmp_path / "r.json", action="move", keep="newest", to=tmp_path / "Q")
    assert [Path(op.path).name for op in plain.operations] == ["a_copy.png"]
    p = plan(tmp_path / "r.json", action="move", keep="newest", to=tmp_path / "Q",
             collapse_links=True)
    names = {Path(op.path).name: op for op in p.operations}
    assert sorted(names) == ["a_copy.png", "a_hl.png"]
    assert names["a_hl.png"].name_of == str(photos / "a.png") and not names["a_hl.png"].frees
    assert p.bytes == (photos / "a.png").stat().st_size  # the extra name frees nothing
    assert apply(p, journal=tmp_path / "j.jsonl").ok
    assert sorted(os.listdir(photos)) == ["a.png", "b.png"]
    # The quarantine holds the extra name (still the same file, so undo can put it back).
    assert (tmp_path / "Q" / "photos" / "a_hl.png").stat().st_ino == (photos / "a.png").stat(
    ).st_ino
    undo(tmp_path / "j.jsonl")
    assert _inodes(photos) == before
    with pytest.raises(ConfigError, match="collapsing links"):
        plan(tmp_path / "r.json", action="hardlink", collapse_links=True)


def test_collapse_never_removes_the_kept_name_through_a_linked_folder(tmp_path, scene):
    # An old-style report lists photos/a.png and alias/a.png (one directory entry) as two
    # members; collapsing must see they are one name, not two links.
    photos = tmp_path / "photos"
    photos.mkdir()
    scene(1).save(photos / "a.png")
    (photos / "a2.png").write_bytes((photos / "a.png").read_bytes())
    (tmp_path / "alias").symlink_to(photos)
    out = tmp_path / "r.json"
    lookalike.write_report(lookalike.scan([photos], workers=1, cache=None), out)
    data = json.loads(out.read_text())
    data["roots"].append(str(tmp_path / "alias"))
    (group,) = data["groups"]
    a = next(m for m in group["members"] if m["path"].endswith("/a.png"))
    group["members"].append({**a, "path": str(tmp_path / "alias" / "a.png"),
                             "source": str(tmp_path / "alias")})
    out.write_text(json.dumps(data))
    for collapse in (False, True):
        p = plan(out, action="delete", keep=f"match:{photos}/a.png", collapse_links=collapse)
        assert [op.path for op in p.operations] == [str(photos / "a2.png")]
    assert apply(p, journal=tmp_path / "j.jsonl").ok
    assert sorted(os.listdir(photos)) == ["a.png"]


def test_files_from_a_local_list_needs_no_extra_and_treats_links_as_one_file(
        tmp_path, scene, monkeypatch):
    photos = _tree(tmp_path, scene)

    def no_fsspec():
        raise ConfigError("fsspec is not installed")

    monkeypatch.setattr(remote, "_fsspec", no_fsspec)  # as without the dask extra
    listing = tmp_path / "list.txt"
    names = ["a.png", "a_hl.png", "a_copy.png", "b.png", "missing.png"]
    listing.write_text("".join(f"{photos / n}\n" for n in names))
    result = pipeline.scan([], ScanConfig(workers=1), files_from=str(listing))
    assert len(result.records) == 3
    assert [(p.error, Path(p.path).name) for p in result.errors] == [("not-found", "missing.png")]
    (group,) = result.groups
    assert sorted(Path(p).name for p in group.paths) == ["a.png", "a_copy.png"]


def test_protected_alias_protects_the_file(tmp_path, scene):
    photos = _tree(tmp_path, scene)
    safe = tmp_path / "safe"
    safe.mkdir()
    os.link(photos / "a_copy.png", safe / "a_copy.png")
    result = lookalike.scan([photos, safe], workers=1, cache=None)
    lookalike.write_report(result, tmp_path / "r.json")
    # The newest keep rule would keep a.png, but a_copy.png has a name in a protected folder.
    p = plan(tmp_path / "r.json", action="delete", keep="newest", protect=[safe])
    assert [Path(op.path).name for op in p.operations] == ["a.png", "a_hl.png"]


def test_a_file_linked_into_two_sets_is_a_leak_and_its_checked_name_is_purged(
        tmp_path, scene):
    """The purge list names the checked set's name of a file linked into both sets; apply
    "quarantines exactly the purge list" (README), so that name is moved whether or not
    links are collapsed (it was purged only when collapsing); the reference name stays."""
    from lookalike.analysis.leakage import find_leakage, restrict_to_leakage

    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    scene(1).save(train / "a.png")
    scene(2).save(train / "b.png")
    os.link(train / "a.png", test / "a.png")
    scene(3).save(test / "c.png")
    result = lookalike.scan([train, test], workers=1, cache=None)
    leakage = find_leakage(result, [train])
    assert leakage.purge == (str(test / "a.png"),)
    out = tmp_path / "leak.json"
    lookalike.write_report(restrict_to_leakage(result, leakage), out, leakage=leakage)
    for collapse in (False, True):
        p = plan(out, action="move", to=tmp_path / "Q", collapse_links=collapse)
        assert [op.path for op in p.operations] == [str(test / "a.png")]
        assert "not touched" not in render_plan(p)  # acted on, and said so once
    res = apply(p, journal=tmp_path / "j.jsonl", reporter=_Problems())
    assert res.ok and not res.skipped, res
    assert sorted(os.listdir(test)) == ["c.png"] and (train / "a.png").stat().st_nlink == 2


def test_files_from_runs_with_the_dask_extra_absent(tmp_path, scene):
    import subprocess
    import sys

    photos = _tree(tmp_path, scene)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photos / 'a.png'}\n{photos / 'a_copy.png'}\n")
    # As on an install without the extra: importing fsspec, pyarrow or dask fails.
    code = ("import sys\nfor m in ('fsspec', 'pyarrow', 'dask', 'distributed'):\n"
            "    sys.modules[m] = None\nfrom lookalike.cli import main\n"
            f"sys.argv = ['lookalike', 'scan', '--files-from', {str(listing)!r}, '--no-cache',"
            " '-q']\nmain()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "1 duplicate group" in out.stdout and str(photos / "a_copy.png") in out.stdout


def test_keep_none_never_acts_on_an_old_group_that_is_one_file(tmp_path, scene):
    photos = tmp_path / "photos"
    photos.mkdir()
    scene(1).save(photos / "a.png")
    (tmp_path / "alias").symlink_to(photos)
    out = tmp_path / "r.json"
    lookalike.write_report(lookalike.scan([photos], workers=1, cache=None), out)
    data = json.loads(out.read_text())
    rec = {"path": str(photos / "a.png"), "hash": "00" * 32, "distance": 0, "width": 160,
           "height": 120, "bytes": (photos / "a.png").stat().st_size, "format": "PNG",
           "mtime_ns": (photos / "a.png").stat().st_mtime_ns, "digest": "d" * 64,
           "source": str(photos)}
    alias = {**rec, "path": str(tmp_path / "alias" / "a.png"), "source": str(tmp_path / "alias")}
    data["roots"].append(str(tmp_path / "alias"))
    data["groups"] = [{"id": 1, "kind": "exact", "representative": rec["path"],
                       "members": [rec, alias]}]  # as an earlier version wrote it
    out.write_text(json.dumps(data))
    for action in ("delete", "move"):
        p = plan(out, action=action, keep="none", to=tmp_path / "Q" if action == "move" else None)
        assert p.operations == () and "one file reached by several paths" in render_plan(p)


def test_a_resumed_journal_whose_run_moved_the_new_keeper_keeps_what_it_kept(tmp_path,
                                                                            scene):
    photos = _tree(tmp_path, scene)
    lookalike.write_report(lookalike.scan([photos], workers=1, cache=None), tmp_path / "r.json")
    j = tmp_path / "j.jsonl"
    first = plan(tmp_path / "r.json", action="move", keep="newest", to=tmp_path / "Q")
    assert apply(first, journal=j).ok  # moved a_copy.png, kept a.png
    again = plan(tmp_path / "r.json", action="move", keep="oldest", to=tmp_path / "Q",
                 journal=j)  # would keep a_copy.png, which that run moved: the journal's
    assert again.operations == () and not again.skipped  # keeper stays, nothing left to do
    # A journal of an earlier version records no keep lists: such a group is skipped.
    lines = [json.loads(line) for line in j.read_text().splitlines()]
    j.write_text("".join(json.dumps({k: v for k, v in e.items() if k != "kept"}) + "\n"
                         for e in lines))
    older = plan(tmp_path / "r.json", action="move", keep="oldest", to=tmp_path / "Q",
                 journal=j)
    assert older.operations == ()
    assert "already acted on by this journal" in render_plan(older)


def test_a_followed_symlink_to_a_file_is_left_alone_not_acted_on_as_a_name(tmp_path, scene):
    lib = tmp_path / "lib"
    lib.mkdir()
    scene(1).save(lib / "a.png")
    (lib / "zz_copy.png").write_bytes((lib / "a.png").read_bytes())
    os.utime(lib / "zz_copy.png", ns=(10**18, 10**18))
    (lib / "b_link.png").symlink_to("zz_copy.png")
    lookalike.write_report(lookalike.scan([lib], workers=1, cache=None, follow_symlinks=True),
                           tmp_path / "r.json")
    p = plan(tmp_path / "r.json", action="delete", keep="newest")
    assert [op.path for op in p.operations] == [str(lib / "zz_copy.png")]
    assert "b_link.png is a symbolic link" in render_plan(p)
    assert apply(p, journal=tmp_path / "j.jsonl").ok
    assert (lib / "a.png").exists() and (lib / "b_link.png").is_symlink()


def test_a_skip_reason_is_reported_even_when_the_decisions_keep_nothing(tmp_path, scene):
    # --keep none with decisions that keep nothing, removing a file with a protected name:
    # the group is skipped and the plan says why (it must not vanish from the plan).
    photos = _tree(tmp_path, scene)
    safe = tmp_path / "safe"
    safe.mkdir()
    os.link(photos / "a.png", safe / "a.png")
    out = tmp_path / "r.json"
    lookalike.write_report(lookalike.scan([photos, safe], workers=1, cache=None), out)
    (group,) = json.loads(out.read_text())["groups"]
    decisions = tmp_path / "d.json"
    decisions.write_text(json.dumps({
        "kind": "lookalike-decisions", "schema_version": 1, "report_path": str(out),
        "report_created": json.loads(out.read_text())["created"],
        "groups": [{"id": group["id"], "keep": [], "remove": [str(photos / "a.png")]}]}))
    p = plan(decisions, action="delete", keep="none", protect=[safe])
    assert p.operations == ()
    assert [s.group for s in p.skipped] == [group["id"]]
    assert "protected folder" in p.skipped[0].reason


def _burst_and_copy(tmp_path, scene):
    """Two shots of a burst (different pictures the policy keeps both of) and a byte copy
    of the first; the report and the four paths."""
    import shutil

    from conftest import save_burst

    root = tmp_path / "photos"
    root.mkdir()
    f0, f1 = save_burst(scene(3, (200, 150)), root)
    copy = root / "IMG_0_copy.JPG"
    shutil.copyfile(f0, copy)
    for k, p in enumerate((f0, f1, copy)):
        os.utime(p, ns=(1_600_000_000_000_000_000 + k,) * 2)
    report = tmp_path / "r.json"
    lookalike.write_report(lookalike.scan(root, method="phash", threshold=6, workers=1),
                           report)
    return report, str(f0), str(f1), str(copy)


def _decisions_file(path, report, groups):
    from lookalike.report.schema import DECISIONS_KIND, DECISIONS_SCHEMA_VERSION

    path.write_text(json.dumps({
        "kind": DECISIONS_KIND, "schema_version": DECISIONS_SCHEMA_VERSION,
        "report_path": str(report), "report_created": json.loads(report.read_text())["created"],
        "groups": groups}))
    return path


@pytest.mark.parametrize("resumed_with", ["decisions", "policy", "edited journal"])
def test_a_resume_never_removes_what_it_is_asked_to_keep(tmp_path, scene, resumed_with):
    # Review: a resumed group kept only the journal's recorded keepers and removed every
    # other member: another shot of a burst that new decisions (or the policy) keep was
    # deleted. Recorded keepers are now added to what the plan keeps, never the reverse.
    report, f0, f1, copy = _burst_and_copy(tmp_path, scene)
    (g,) = plan(report, action="delete").groups
    assert set(g.keep) == {f0, f1} and g.operations[0].path == copy
    rules = json.loads(report.read_text())["keep_policy"]["rules"]
    j = tmp_path / "j.jsonl"
    if resumed_with == "edited journal":
        assert apply(plan(report, action="delete", keep=rules), journal=j).ok
        events = [json.loads(line) for line in j.read_text().splitlines()]
        for e in events:
            if "kept" in e:
                e["kept"] = [f0]  # the other shot left out by hand
        j.write_text("".join(json.dumps(e) + "\n" for e in events))
    else:  # a first run whose decisions kept one shot only and left the other undecided
        first = _decisions_file(tmp_path / "d1.json", report,
                                [{"id": g.group, "keep": [f0], "remove": [copy]}])
        assert apply(plan(first, action="delete", journal=j), journal=j).ok
    source = (_decisions_file(tmp_path / "d2.json", report,
                              [{"id": g.group, "keep": [f0, f1], "remove": [copy]}])
              if resumed_with == "decisions" else report)
    again = plan(source, action="delete", keep=None if resumed_with == "decisions" else rules,
                 journal=j)
    assert f1 not in [op.path for op in again.operations], render_plan(again)
    apply(again, journal=j)
    assert os.path.exists(f0) and os.path.exists(f1)
