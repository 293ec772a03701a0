"""Planning: purity, keepers, quarantine layout, tampered reports, decisions files, options."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import lookalike
from conftest import save_burst, snapshot
from lookalike import ConfigError, ReportError
from lookalike.actions.plan import SkippedGroup, load_source, plan, quarantine_path, render_plan
from lookalike.cli import cli
from lookalike.grouping.keep import DEFAULT_KEEP
from lookalike.paths import root_names
from lookalike.report.schema import write_report


def make_library(root: Path, scene) -> None:
    """Two groups: a, its byte copy and a resized copy (near); x and its byte copy (exact)."""
    (root / "sub").mkdir(parents=True)
    img = scene(1, (200, 150))
    img.save(root / "a.png")
    shutil.copyfile(root / "a.png", root / "sub" / "a_copy.png")
    img.resize((100, 75)).save(root / "b_small.png")
    scene(2).save(root / "other.png")
    scene(7, (120, 90)).save(root / "x.png")
    shutil.copyfile(root / "x.png", root / "sub" / "x2.png")
    for k, name in enumerate(["a.png", "sub/a_copy.png", "b_small.png", "other.png", "x.png",
                              "sub/x2.png"]):
        os.utime(root / name, ns=(1_600_000_000_000_000_000 + k, 1_600_000_000_000_000_000 + k))


def scan_to(report: Path, *roots: Path, **options) -> Path:
    options = {"method": "phash", "threshold": 6, "workers": 1, **options}
    write_report(lookalike.scan(list(roots), **options), report)
    return report


@pytest.fixture
def library(tmp_path, scene):
    root = tmp_path / "photos"
    make_library(root, scene)
    return root, scan_to(tmp_path / "report.json", root)


def edit_report(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_scan_finds_the_two_groups_the_tests_rely_on(library):
    _root, report = library
    data = json.loads(report.read_text())
    assert sorted(sorted(Path(m["path"]).name for m in g["members"]) for g in data["groups"]) == [
        ["a.png", "a_copy.png", "b_small.png"], ["x.png", "x2.png"]]


@pytest.mark.parametrize("action", ["move", "delete", "hardlink", "symlink"])
def test_plan_changes_nothing_on_disk(library, tmp_path, action):
    before = snapshot(tmp_path)
    p = plan(library[1], action=action, to=tmp_path / "q" if action == "move" else None)
    assert p.files > 0
    text = render_plan(p)
    # Each group's keeper says why the keep policy chose it (the dry run said only "keep X").
    decisions = lookalike.KeepPolicy().decide_all(lookalike.read_report(library[1]).groups)
    for g in p.groups:
        reason = decisions.reason(g.group)
        assert reason and f"  keep     {g.keep[0]}  ({reason})" in text
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("action", ["move", "delete", "hardlink", "symlink"])
def test_dry_run_cli_prints_the_plan_and_changes_nothing(runner, library, tmp_path, action):
    _root, report = library
    before = snapshot(tmp_path)
    args = ["apply", str(report), "--action", action]
    if action == "move":
        args += ["--to", str(tmp_path / "q")]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert snapshot(tmp_path) == before
    assert "dry run: nothing was changed" in res.output
    assert "total: " in res.output
    p = plan(report, action=action, to=tmp_path / "q" if action == "move" else None)
    op_lines = [ln for ln in res.output.splitlines() if ln.startswith(f"  {action}")]
    assert len(op_lines) == p.files  # one line per operation
    assert f"total: {p.files} files" in res.output


def test_every_group_keeps_one_file_and_the_keeper_is_the_reports(library):
    root, report = library
    data = json.loads(report.read_text())
    assert data["keep_policy"]["rules"] == list(DEFAULT_KEEP)
    keep_in_report = {g["id"]: g["keep"] for g in data["groups"]}
    assert keep_in_report == {1: [str(root / "a.png")], 2: [str(root / "x.png")]}
    p = plan(report, action="delete")
    for g in p.groups:
        assert list(g.keep) == keep_in_report[g.group]
        assert not {op.path for op in g.operations} & set(g.keep)
    assert sorted(op.path for op in p.operations) == sorted(
        str(root / n) for n in ["b_small.png", "sub/a_copy.png", "sub/x2.png"])
    assert p.bytes == sum(op.size_bytes for op in p.operations)


def test_keep_policy_from_scan_is_recorded_and_used_by_apply(runner, tmp_path, scene):
    root = tmp_path / "photos"
    make_library(root, scene)
    report = tmp_path / "r.json"
    res = runner.invoke(cli, ["scan", str(root), "-m", "phash", "-t", "6", "-j", "1", "-q",
                              "--no-cache", "--keep", "smallest-file", "-o", str(report)])
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text())
    assert data["keep_policy"]["rules"] == ["smallest-file"]
    small = str(root / "b_small.png")
    assert any(g["keep"] == [small] for g in data["groups"])
    p = plan(report, action="delete")
    assert small not in {op.path for op in p.operations}
    # an explicit --keep on apply overrides the recorded policy
    p = plan(report, action="delete", keep="largest-resolution")
    assert small in {op.path for op in p.operations}


def test_move_mirrors_the_layout_under_the_root_name(library, tmp_path):
    root, report = library
    q = tmp_path / "quarantine"
    p = plan(report, action="move", to=q)
    dst = {op.path: op.dst for op in p.operations}
    assert dst[str(root / "sub" / "a_copy.png")] == str(q / "photos" / "sub" / "a_copy.png")
    assert dst[str(root / "b_small.png")] == str(q / "photos" / "b_small.png")


def test_roots_with_the_same_folder_name_get_distinct_quarantine_folders():
    roots = ["/a/photos", "/b/photos", "/c/other", "/"]
    assert root_names(roots) == {"/a/photos": "photos", "/b/photos": "photos~2",
                                 "/c/other": "other", "/": "root"}
    assert quarantine_path("/b/photos/x/y.jpg", roots, "/q") == "/q/photos~2/x/y.jpg"
    assert quarantine_path("/a/photos/z.jpg", roots, "/q") == "/q/photos/z.jpg"
    # A root given twice is one folder; a root already named like a clash's name, or named
    # like another but for case (a quarantine drive that ignores case), gets its own.
    assert root_names(["/p", "/p"]) == {"/p": "p"}
    assert root_names(["/a/x", "/b/x", "/c/x~2"]) == {"/a/x": "x", "/b/x": "x~2",
                                                      "/c/x~2": "x~2~2"}
    assert root_names(["/a/Photos", "/b/photos"]) == {"/a/Photos": "Photos",
                                                      "/b/photos": "photos~2"}


def test_the_case_folding_probe_says_what_the_file_system_does(tmp_path):
    from lookalike.actions.plan import _may_fold_case

    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "probe.txt").write_text("x")
    folds = (tmp_path / "q" / "PROBE.TXT").exists()  # what this file system does
    assert _may_fold_case(str(tmp_path / "q")) is folds
    assert _may_fold_case(str(tmp_path / "q" / "not" / "made")) is folds  # nearest folder
    assert not (tmp_path / "q" / "not").exists()  # looked up, nothing written


@pytest.mark.parametrize("folds", [True, False])
def test_two_files_named_alike_but_for_case_never_share_a_quarantine_path(tmp_path, scene,
                                                                         monkeypatch, folds):
    """On a quarantine drive that ignores case (macOS, Windows, exFAT) x.png and X.png would
    be one file: that group is skipped. Where case counts (this one), both are moved."""
    import lookalike.actions.plan as plan_module

    root = tmp_path / "p"
    (root / "b").mkdir(parents=True)
    scene(3, (160, 120)).save(root / "a.png")
    for name in ("b/x.png", "b/X.png"):
        shutil.copyfile(root / "a.png", root / name)
    report = tmp_path / "r.json"
    write_report(lookalike.scan(root, workers=1), report)
    monkeypatch.setattr(plan_module, "_may_fold_case", lambda folder: folds)
    p = plan(report, action="move", to=tmp_path / "q", keep="match:a.png")
    if folds:
        assert p.operations == ()
        (skip,) = p.skipped
        assert "differ only in case" in skip.reason and "X.png" in skip.reason
    else:
        assert p.skipped == () and len(p.operations) == 2


def test_links_are_planned_only_for_byte_identical_copies(library):
    root, report = library
    p = plan(report, action="hardlink")
    assert sorted(op.path for op in p.operations) == [str(root / "sub" / "a_copy.png"),
                                                      str(root / "sub" / "x2.png")]
    notes = [n for g in p.groups for n in g.notes]
    assert any("b_small.png not linked" in n for n in notes)
    assert all(op.keeper in (str(root / "a.png"), str(root / "x.png")) for op in p.operations)


# --------------------------------------------------------------------------- tampered reports


def _first_member(data, fn):
    fn(data["groups"][0]["members"][-1])


@pytest.mark.parametrize(("tamper", "match"), [
    (lambda d, t: _first_member(d, lambda m: m.update(path=str(t / "elsewhere" / "f.png"),
                                                      source="")),
     "outside the scanned folders"),
    (lambda d, t: _first_member(d, lambda m: m.update(
        path=str(t / "photos") + "/../elsewhere/f.png")), "clean absolute path"),
    (lambda d, t: _first_member(d, lambda m: m.update(
        path=str(t / "photos" / "sub") + "/../x.png")), "clean absolute path"),
    (lambda d, t: _first_member(d, lambda m: m.update(source=str(t / "elsewhere"))),
     "recorded scan root"),
    (lambda d, t: d.update(roots=["photos"]), "not a clean absolute path"),
    (lambda d, t: d.update(roots=[]), "no scan roots"),
    (lambda d, t: d.update(leakage={"reference": [str(t)]}), "reference set"),
])
def test_tampered_reports_are_rejected(library, tmp_path, tamper, match):
    (tmp_path / "elsewhere").mkdir()
    shutil.copyfile(library[0] / "a.png", tmp_path / "elsewhere" / "f.png")
    edit_report(library[1], lambda d: tamper(d, tmp_path))
    before = snapshot(tmp_path)
    with pytest.raises(ReportError, match=match):
        plan(library[1], action="delete")
    assert snapshot(tmp_path) == before


def _add_other_photo(data: dict, root: Path) -> None:
    """A hand edit: the unrelated other.png listed as a member of the first group."""
    other = root / "other.png"
    st = other.stat()
    member = dict(data["groups"][0]["members"][-1], path=str(other), bytes=st.st_size,
                  mtime_ns=st.st_mtime_ns, hash=str(lookalike.hash_image(other, "phash")),
                  digest=hashlib.sha256(other.read_bytes()).hexdigest(), pixel_digest=None,
                  distance=3)
    data["groups"][0]["members"].insert(0, member)


def _merge_groups(data: dict, root: Path) -> None:
    """A hand edit: the second group's members moved into the first."""
    second = data["groups"].pop(1)
    data["groups"][0]["members"] += second["members"]


@pytest.mark.parametrize("edit", [_add_other_photo, _merge_groups])
def test_a_member_no_chain_of_hash_matches_reaches_skips_its_group(library, tmp_path, edit):
    """The keep policy could keep the added picture (or one group's) and remove every copy
    of the other: the plan checks the group's hashes against the report's threshold."""
    root, report = library
    edit_report(report, lambda d: edit(d, root))
    before = snapshot(root)
    p = plan(report, action="delete", keep="smallest-file")
    (skip,) = p.skipped
    assert "not within 6 bits" in skip.reason and "edited" in skip.reason
    assert all(op.group != skip.group for op in p.operations)
    apply_plan = lookalike.apply(p, journal=tmp_path / "j.jsonl")
    assert apply_plan.ok
    assert all(os.path.exists(path) for path in before if path.endswith("other.png"))
    # Every member of the skipped group is still there.
    group = next(g for g in lookalike.read_report(report).groups if g.id == skip.group)
    assert all(os.path.exists(path) for path in group.paths)


def _merge_first_two(data: dict) -> None:
    """Two groups of the report made one, as a careless edit does."""
    first, second, *rest = data["groups"]
    first["members"] += second["members"]
    data["groups"] = [first, *rest]


@pytest.mark.parametrize("edit", [
    lambda d: d["config"].pop("threshold"),
    lambda d: d["config"].update(threshold="x"),
    lambda d: d["config"].update(threshold=10**6),
    lambda d: d.update(leakage={"threshold": 10**6}),
    lambda d: d["keep_policy"].update(protect=["/no/such/Originals"]),
    lambda d: d["keep_policy"].update(protect=["photos/sub"]),
    lambda d: [m.update(match="verified", similarity=0.9)
               for m in d["groups"][0]["members"][-2:]],
])
def test_a_report_whose_settings_no_scan_writes_is_refused(library, edit):
    """Without a threshold (or with one no scan takes) the check that a group's members tie
    together was off: merged with another group, every copy of one picture was deleted. A
    mistyped protected folder protected nothing; members claiming embedding matches in a
    scan without a model escaped the tie check too."""
    _root, report = library

    def change(data: dict) -> None:
        _merge_first_two(data)
        edit(data)
    edit_report(report, change)
    with pytest.raises(ReportError, match=r"edited|mistyped"):
        plan(report, action="delete", keep="original")


@pytest.mark.parametrize("match", ["embedding", "verified"])
def test_folder_rules_never_leave_only_what_embeddings_joined(library, match):
    """A member only embeddings matched may be another photo: no rule removes it, and it
    never counts as the group's last copy (it was kept while every hash-matched copy went)."""
    root, report = library
    small = str(root / "b_small.png")

    def mark(data: dict) -> None:
        data["config"]["embed"] = "model.onnx"  # as a scan with embeddings writes it
        for g in data["groups"]:
            for m in g["members"]:
                if m["path"] == small:
                    m.update(match=match, similarity=0.9)
    edit_report(report, mark)
    p = plan(report, action="delete", keep="smallest-file", remove_in=[root])
    g = _group_of(p, root / "a.png")
    hashed = {str(root / "a.png"), str(root / "sub" / "a_copy.png")}
    kept_hashed = [k for k in g.keep if k in hashed]
    assert len(kept_hashed) == 1 and g.keep[0] == kept_hashed[0]  # the link target too
    assert "the last copy" in dict(g.reasons)[kept_hashed[0]]
    removed = {op.path for op in g.operations}
    assert removed == hashed - set(kept_hashed) | ({small} if match == "verified" else set())
    if match == "embedding":
        assert small in g.keep and "no rule removes it" in dict(g.reasons)[small]


def test_keep_rule_none_is_never_inherited_from_the_report(runner, tmp_path, scene):
    """A report scanned with --keep none would let a plain `apply -a delete --yes` remove
    every copy of every group: that rule must be asked for again."""
    root = tmp_path / "photos"
    make_library(root, scene)
    report = tmp_path / "r.json"
    write_report(lookalike.scan(root, method="phash", threshold=6, workers=1), report,
                 keep="none")
    assert json.loads(report.read_text())["keep_policy"]["rules"] == ["none"]
    with pytest.raises(ConfigError, match="keep rule 'none'"):
        plan(report, action="delete")
    res = runner.invoke(cli, ["apply", str(report), "-a", "delete"], standalone_mode=False)
    assert isinstance(res.exception, ConfigError) and res.exception.exit_code == 2
    every = plan(report, action="delete", keep="none")
    assert every.files == 5  # both groups, every member
    assert plan(report, action="delete", keep="largest-file").files == 3


def test_an_edited_keep_list_skips_its_group_instead_of_being_ignored(library):
    """A user who edits a group's keep list in the report means to keep that file; the plan
    followed the policy instead and removed it."""
    root, report = library
    small = str(root / "b_small.png")
    data = json.loads(report.read_text())
    (group,) = [g for g in data["groups"] if small in {m["path"] for m in g["members"]}]
    assert small not in group["keep"]
    edit_report(report, lambda d: next(g for g in d["groups"] if g["id"] == group["id"])
                .update(keep=[small]))
    p = plan(report, action="delete")
    (skip,) = p.skipped
    assert skip.group == group["id"] and "keep list was edited" in skip.reason
    assert all(op.group != group["id"] for op in p.operations) and p.files == 1
    # Another keep rule asked for by name is followed as usual.
    assert plan(report, action="delete", keep="largest-file").skipped == ()


@pytest.mark.parametrize("n", [10, 200])  # compared pairwise, and through the search
def test_a_long_chain_of_near_hashes_is_one_group_and_an_outsider_is_not(n):
    from lookalike.actions.plan import _untied_member
    from lookalike.model import Group, Hash, ImageRecord, Member

    def member(k: int, value: int) -> Member:
        rec = ImageRecord(path=f"/p/{k:04d}.png", size_bytes=1, mtime_ns=0, width=8,
                          height=8, format="PNG", hash=Hash("dhash", 256, (value,)), digest="")
        return Member(rec, 0, "hash", None)

    # Each hash one bit from the next: the ends are far apart, the chain ties them. (From 21
    # bits set: a hash within 1/16 of its bits of blank says nothing, model.structureless.)
    chain = [member(k, (1 << (k + 21)) - 1) for k in range(n)]
    group = Group(id=1, members=tuple(chain), representative=chain[0].record.path, kind="near")
    assert _untied_member(group, 1) is None
    assert _untied_member(group, 0) is not None  # no pair within 0 bits
    outsider = member(n, (1 << 255) | (1 << 250) | 0xFFFFF0)
    group = Group(id=1, members=(*chain, outsider), representative=chain[0].record.path,
                  kind="near")
    assert outsider.record.path in _untied_member(group, 1)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_member_swapped_for_a_fifo_never_blocks_the_plan_or_the_page(library, tmp_path):
    """The keep policy read its header and the review page its thumbnail with a blocking
    open(): both hung for good (Ctrl-C could not stop the page's thread pool)."""
    root, report = library
    small = root / "b_small.png"
    small.unlink()
    os.mkfifo(small)
    for argv in (["apply", str(report), "-a", "delete", "--keep", "prefer-lossless,original"],
                 ["report", str(report), "--html", str(tmp_path / "page.html")]):
        proc = subprocess.run([sys.executable, "-m", "lookalike.cli", *argv],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "page.html").read_text()
    assert "b_small.png" in page


def test_a_kept_file_changed_since_the_scan_is_reported_as_changed_not_as_an_edit(
        tmp_path, scene):
    """The keep policy reads headers again at plan time: a camera original re-saved without
    its EXIF made the plan keep another file and call the report edited."""
    root = tmp_path / "p"
    root.mkdir()
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS 5D"
    img = scene(3, (200, 150))
    img.save(root / "IMG_0001.jpg", quality=90, exif=exif.tobytes())
    img.resize((300, 225)).save(root / "big.jpg", quality=90)
    report = tmp_path / "r.json"
    write_report(lookalike.scan(root, workers=1), report)
    (group,) = json.loads(report.read_text())["groups"]
    assert group["keep"] == [str(root / "IMG_0001.jpg")]
    img.save(root / "IMG_0001.jpg", quality=90)  # re-saved without its EXIF
    (skip,) = plan(report, action="delete").skipped
    assert "IMG_0001.jpg changed since the scan" in skip.reason and "edited" not in skip.reason


def test_a_report_of_a_file_list_says_why_it_cannot_be_acted_on(library, tmp_path):
    """It said the report was edited ('outside the scanned folders'): the list is the only
    root such a report has."""
    root, _report = library
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in sorted(root.rglob("*.png"))))
    report = scan_to(tmp_path / "listed.json", files_from=str(listing))
    with pytest.raises(ReportError, match="read from the file list") as info:
        plan(report, action="move", to=tmp_path / "q")
    assert "edited" not in str(info.value)
    listing.rename(tmp_path / "list.moved")  # still told apart from a folder root
    with pytest.raises(ReportError, match="read from the file list"):
        plan(report, action="move", to=tmp_path / "q")


def test_tampered_report_exits_2_from_the_cli(runner, library, tmp_path):
    edit_report(library[1], lambda d: d["groups"][0]["members"][-1].update(path="/etc/hosts",
                                                                           source=""))
    res = runner.invoke(cli, ["apply", str(library[1]), "-a", "delete", "--yes"],
                        standalone_mode=False)
    assert isinstance(res.exception, ReportError)
    assert res.exception.exit_code == 2


def _outside(p, tmp_path) -> bool:
    return any(os.path.realpath(x).startswith(str(tmp_path / "outside"))
               for op in p.operations for x in (op.path, op.keeper or op.path))


def test_a_folder_replaced_by_a_symlink_pointing_out_skips_its_groups(library, tmp_path):
    # Each group with a name that now resolves outside the scanned folders is skipped; the
    # whole report was refused before, and a re-run of the scan could not help.
    root, report = library
    outside = tmp_path / "outside"
    shutil.copytree(root / "sub", outside)
    shutil.rmtree(root / "sub")
    (root / "sub").symlink_to(outside, target_is_directory=True)
    p = plan(report, action="delete")
    assert p.skipped and all("symbolic link points out" in s.reason for s in p.skipped)
    assert not _outside(p, tmp_path)


def test_a_followed_symlink_to_a_file_outside_the_roots_skips_its_group(tmp_path, scene):
    root = tmp_path / "photos"
    make_library(root, scene)
    (tmp_path / "outside").mkdir()
    shutil.copyfile(root / "x.png", tmp_path / "outside" / "real.png")
    (root / "link.png").symlink_to(tmp_path / "outside" / "real.png")
    report = scan_to(tmp_path / "r.json", root, follow_symlinks=True)
    assert any(m["path"].endswith("link.png") for g in json.loads(report.read_text())["groups"]
               for m in g["members"])
    p = plan(report, action="delete")
    assert [s.reason for s in p.skipped if "outside the scanned folders" in s.reason]
    assert p.operations and not _outside(p, tmp_path)  # the other group is acted on


@pytest.mark.parametrize("change", ["size", "mtime", "gone", "symlink"])
def test_a_changed_member_skips_its_whole_group(library, change):
    root, report = library
    victim = root / "sub" / "a_copy.png"  # a member of group 1 only
    if change == "size":
        with victim.open("ab") as fh:
            fh.write(b"x")
    elif change == "mtime":
        os.utime(victim, ns=(1, 1))
    elif change == "gone":
        victim.unlink()
    else:
        victim.unlink()
        victim.symlink_to(root / "a.png")
    p = plan(report, action="delete")
    assert [s.group for s in p.skipped] == [1]
    assert str(victim) in p.skipped[0].reason
    assert {op.group for op in p.operations} == {2}  # the other group still goes ahead
    assert f"skip group 1: {p.skipped[0].reason}" in render_plan(p)


# --------------------------------------------------------------------------- options


def test_option_errors_are_config_errors(library, tmp_path):
    root, report = library
    with pytest.raises(ConfigError, match="a move needs the quarantine folder"):
        plan(report, action="move")
    with pytest.raises(ConfigError, match="inside the scanned folder"):
        plan(report, action="move", to=root / "q")
    with pytest.raises(ConfigError, match="contains the scanned folder"):
        plan(report, action="move", to=tmp_path)
    with pytest.raises(ConfigError, match="only applies to action 'move'"):
        plan(report, action="delete", to=tmp_path / "q")
    with pytest.raises(ConfigError, match="keep rule 'none'"):
        plan(report, action="hardlink", keep="none")
    with pytest.raises(ConfigError, match=r"protected folder .* does not exist"):
        plan(report, action="delete", protect=[tmp_path / "nope"])
    with pytest.raises(ConfigError, match="unknown keep rule"):
        plan(report, action="delete", keep="best")
    with pytest.raises(ConfigError, match="unknown action"):
        plan(report, action="shred")  # type: ignore[arg-type]


def test_cli_option_errors_exit_2(runner, library, tmp_path):
    from lookalike.cli import main

    for args in (["apply", str(library[1]), "-a", "move"],
                 ["apply", str(library[1]), "-a", "delete", "--keep", "best"],
                 ["apply", str(tmp_path / "missing.json"), "-a", "delete"]):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2


def test_protected_folders_are_never_acted_on_and_keep_their_files(library):
    root, report = library
    p = plan(report, action="delete", protect=[root / "sub"])
    paths = {op.path for op in p.operations}
    assert not any(path.startswith(str(root / "sub")) for path in paths)
    # group 1: the protected copy is kept, so a.png and b_small.png are duplicates of it
    g1 = next(g for g in p.groups if g.group == 1)
    assert g1.keep == (str(root / "sub" / "a_copy.png"),)
    assert {op.path for op in g1.operations} == {str(root / "a.png"), str(root / "b_small.png")}


def test_keep_none_acts_on_every_member(library):
    _root, report = library
    p = plan(report, action="delete", keep="none")
    assert p.files == 5 and all(g.keep == () for g in p.groups)


# --------------------------------------------------------------------------- decisions files


def decisions_file(tmp_path: Path, report: Path, groups, **over) -> Path:
    data = {"kind": "lookalike-decisions", "schema_version": 1,
            "report_path": str(report),
            "report_created": json.loads(report.read_text())["created"], "groups": groups}
    data.update(over)
    path = tmp_path / "decisions.json"
    path.write_text(json.dumps(data))
    return path


def test_decisions_file_drives_the_plan(library, tmp_path):
    root, report = library
    d = decisions_file(tmp_path, report, [
        {"id": 1, "keep": [str(root / "b_small.png")],
         "remove": [str(root / "a.png"), str(root / "sub" / "a_copy.png")]}])
    assert type(load_source(d)).__name__ == "Decisions"
    p = plan(d, action="move", to=tmp_path / "q")
    assert {op.path for op in p.operations} == {str(root / "a.png"),
                                                str(root / "sub" / "a_copy.png")}
    assert p.groups[0].keep == (str(root / "b_small.png"),)  # group 2 absent: left alone
    assert "as decided in" in render_plan(p)


def test_decisions_leave_unlisted_members_alone(library, tmp_path):
    root, report = library
    d = decisions_file(tmp_path, report, [
        {"id": 1, "keep": [str(root / "a.png")], "remove": [str(root / "b_small.png")]}])
    assert [op.path for op in plan(d, action="delete").operations] == [str(root / "b_small.png")]


@pytest.mark.parametrize(("groups", "over", "match"), [
    ([{"id": 9, "keep": [], "remove": []}], {}, "group 9 is not in"),
    ([{"id": 1, "keep": ["/etc/hosts"], "remove": []}], {}, "not a member of group 1"),
    ([{"id": 2, "keep": [], "remove": ["{a}"]}], {}, "not a member of group 2"),
    ([{"id": 1, "keep": ["{a}"], "remove": ["{a}"]}], {}, "lists a path twice"),
    ([{"id": 1, "keep": [], "remove": []}] * 2, {}, "listed twice"),
    ([], {"report_created": "1999-01-01T00:00:00+00:00"}, "export the decisions again"),
    # No report_created matched a report without 'created' (None == None).
    ([], {"report_created": None}, "no report_created"),
    ([], {"report_path": "/nonexistent/report.json"}, "not found"),
    ([], {"schema_version": 7}, "schema version"),
    ([], {"schema_version": True}, "schema version"),  # True == 1 in Python
    ([{"id": 1.9, "keep": [], "remove": []}], {}, "not a whole number"),  # was group 1
    ([{"id": 1, "keeps": [], "removes": ["{a}"]}], {}, "'keeps', 'removes' where"),  # exit 0
    ([{"id": 1}], {}, "has neither 'keep' nor 'remove'"),
    ([{"keep": []}], {}, "a group is not an object with an 'id'"),
    # Each of these was taken as no groups (exit 0), or said in Python's words (review):
    (None, {}, "'groups' is not a list"),
    ({"1": {}}, {}, "'groups' is not a list"),
    (["{a}"], {}, "a group is not an object with an 'id'"),
    ([{"id": 1, "keep": [1, 2], "remove": []}], {}, "group 1's 'keep' is not a list of paths"),
    ([{"id": 1, "keep": [["{a}"]], "remove": []}], {}, "'keep' is not a list of paths"),
    ([], {"folder_rules": ["/x"]}, "folder rule '/x' is not a rule"),
    ([], {"folder_rules": [{"folder": "/x"}]}, "is not a rule 'keep' or 'remove'"),
])
def test_bad_decisions_are_rejected(library, tmp_path, groups, over, match):
    root, report = library
    a = str(root / "a.png")
    groups = json.loads(json.dumps(groups).replace("{a}", a))
    d = decisions_file(tmp_path, report, groups, **over)
    with pytest.raises(ReportError, match=match):
        plan(d, action="delete")


def test_decisions_that_keep_nothing_need_keep_none(library, tmp_path):
    root, report = library
    everything = [str(root / "x.png"), str(root / "sub" / "x2.png")]
    d = decisions_file(tmp_path, report, [{"id": 2, "keep": [], "remove": everything}])
    p = plan(d, action="delete")
    assert p.files == 0 and "keep rule 'none'" in p.skipped[0].reason
    p = plan(d, action="delete", keep="none")
    assert sorted(op.path for op in p.operations) == sorted(everything)
    with pytest.raises(ConfigError, match="already says which files to keep"):
        plan(d, action="delete", keep="oldest")


def test_decisions_never_touch_protected_files(library, tmp_path):
    root, report = library
    d = decisions_file(tmp_path, report, [
        {"id": 2, "keep": [str(root / "x.png")], "remove": [str(root / "sub" / "x2.png")]}])
    p = plan(d, action="delete", protect=[root / "sub"])
    assert p.files == 0 and "protected" in p.skipped[0].reason


def test_apply_cli_accepts_a_decisions_file(runner, library, tmp_path):
    root, report = library
    d = decisions_file(tmp_path, report, [
        {"id": 2, "keep": [str(root / "x.png")], "remove": [str(root / "sub" / "x2.png")]}])
    res = runner.invoke(cli, ["apply", str(d), "-a", "delete", "--yes",
                              "--journal", str(tmp_path / "j.jsonl")])
    assert res.exit_code == 0, res.output
    assert not (root / "sub" / "x2.png").exists() and (root / "x.png").exists()
    assert (root / "sub" / "a_copy.png").exists()  # group 1 was not in the decisions


# --------------------------------------------------------------------------- folder rules


@pytest.fixture
def sorted_library(tmp_path, rgb_photos):
    """Real photos sorted the way photographers do: Originals/, Exports/ (with web/ inside),
    Misc/. Group A: the original, an export, a web export, a copy in Misc; group C: two
    exports of one photo, wholly under Exports/."""
    root = tmp_path / "lib"
    for d in ("Originals", "Exports/web", "Misc"):
        (root / d).mkdir(parents=True)
    a, c = (Image.open(p).convert("RGB") for p in rgb_photos[:2])
    a.save(root / "Originals" / "A.png")
    a.save(root / "Exports" / "A.jpg", quality=92)
    a.resize((a.width // 2, a.height // 2)).save(root / "Exports" / "web" / "A_web.jpg",
                                                 quality=80)
    shutil.copyfile(root / "Originals" / "A.png", root / "Misc" / "A_copy.png")
    c.save(root / "Exports" / "C.png")
    c.resize((c.width // 2, c.height // 2)).save(root / "Exports" / "C_small.png")
    return root, scan_to(tmp_path / "report.json", root, threshold=8)


def _group_of(p, path: Path):
    return next(g for g in p.groups if str(path) in {*g.keep, *(op.path for op in g.operations)})


def test_folder_rules_act_only_under_remove_folders_and_keep_a_last_copy(sorted_library,
                                                                          tmp_path):
    root, report = sorted_library
    data = json.loads(report.read_text())
    assert sorted(len(g["members"]) for g in data["groups"]) == [2, 4]
    exports = root / "Exports"
    p = plan(report, action="move", to=tmp_path / "q", keep_in=[root / "Originals"],
             remove_in=[exports])
    acted = sorted(Path(op.path).relative_to(root).as_posix() for op in p.operations)
    # C.png or C_small.png stays: the keep policy picks the one a rule would have removed last
    c_kept = _group_of(p, exports / "C.png").keep
    assert len(c_kept) == 1 and Path(c_kept[0]).parent == exports
    assert acted == sorted(["Exports/A.jpg", "Exports/web/A_web.jpg",
                            *(f"Exports/{n}" for n in ("C.png", "C_small.png")
                              if str(exports / n) not in c_kept)])
    group_a = _group_of(p, root / "Originals" / "A.png")
    # Kept: the original first (its rule), then the copy no rule covers.
    assert group_a.keep == (str(root / "Originals" / "A.png"), str(root / "Misc" / "A_copy.png"))
    why = dict(group_a.reasons)
    assert why[str(root / "Originals" / "A.png")] == f"rule: keep under {root / 'Originals'}"
    assert why[str(root / "Misc" / "A_copy.png")] == "no remove rule covers it"
    assert why[str(exports / "A.jpg")] == f"rule: remove under {exports}"
    assert "the last copy" in dict(_group_of(p, exports / "C.png").reasons)[c_kept[0]]
    text = render_plan(p)
    assert f"folder rules: keep under {root / 'Originals'}; remove under {exports}" in text
    assert f"  keep     {root / 'Misc' / 'A_copy.png'}  (no remove rule covers it)" in text
    move_line = next(ln for ln in text.splitlines() if ln.startswith(f"  move     {exports}/A.jpg"))
    assert move_line.endswith(f"; rule: remove under {exports})")
    assert "the last copy: every copy is under a remove folder" in text


def test_a_deeper_keep_folder_carves_out_of_a_remove_folder(sorted_library):
    root, report = sorted_library
    web = root / "Exports" / "web"
    p = plan(report, action="delete", remove_in=[root / "Exports", root / "Misc"],
             keep_in=[web])
    group_a = _group_of(p, root / "Originals" / "A.png")
    assert sorted(op.path for op in group_a.operations) == [
        str(root / "Exports" / "A.jpg"), str(root / "Misc" / "A_copy.png")]
    # the rule-kept file comes before the one no rule covers: it is the link target
    assert group_a.keep == (str(web / "A_web.jpg"), str(root / "Originals" / "A.png"))
    # Protection beats every rule.
    p = plan(report, action="delete", remove_in=[root], protect=[root / "Misc"])
    group_a = _group_of(p, root / "Originals" / "A.png")
    assert group_a.keep == (str(root / "Misc" / "A_copy.png"),)
    assert dict(group_a.reasons)[str(root / "Misc" / "A_copy.png")] == "in a protected folder"


def test_a_keep_folder_named_through_a_link_is_as_deep_as_the_folder_it_names(
        sorted_library, tmp_path):
    # --keep-in k with k -> Exports/web lost to --remove-in Exports: rules were ranked by
    # the length of the names as typed ("k" is short), so the file meant to be kept went.
    root, report = sorted_library
    link = tmp_path / "k"
    link.symlink_to(root / "Exports" / "web")
    p = plan(report, action="delete", remove_in=[root / "Exports"], keep_in=[link])
    group_a = _group_of(p, root / "Originals" / "A.png")
    web = str(root / "Exports" / "web" / "A_web.jpg")
    assert web not in {op.path for op in group_a.operations}
    assert dict(group_a.reasons)[web] == f"rule: keep under {link}"
    # A remove folder named through a long link, a keep folder inside it named by its real
    # path: the longer of a rule's two names ranked it, and the remove rule won.
    from lookalike.actions.plan import FolderRules

    far = tmp_path / ("a_much_longer_name_of_a_link_to_the_library" * 2)
    far.symlink_to(root)
    rules = FolderRules.of([root / "Exports" / "web"], [far / "Exports"])
    for name in (far / "Exports" / "web" / "A_web.jpg", root / "Exports" / "web" / "A_web.jpg"):
        assert rules.rule_for(str(name)).verdict == "keep", name
    assert rules.rule_for(str(far / "Exports" / "A.jpg")).verdict == "remove"


def test_a_hard_link_outside_the_remove_folders_keeps_its_file(sorted_library):
    root, report = sorted_library
    export = root / "Exports" / "A.jpg"
    os.link(export, root / "Misc" / "A_link.jpg")  # one file: a name under no remove rule
    report = scan_to(report, root, threshold=8)
    p = plan(report, action="delete", keep_in=[root / "Originals"],
             remove_in=[root / "Exports"])
    names = {str(export), str(root / "Misc" / "A_link.jpg")}
    assert not names & {op.path for op in p.operations}
    assert not [s for s in p.skipped if names & set(s.reason.split(", "))]
    (g,) = [g for g in p.groups if names & set(g.keep)]
    assert g.operations  # the group's other copies under Exports still go


def test_folder_rule_errors_are_config_errors(sorted_library, tmp_path):
    root, report = sorted_library
    with pytest.raises(ConfigError, match="only on files under a remove folder"):
        plan(report, action="delete", keep_in=[root / "Originals"])
    with pytest.raises(ConfigError, match="both to keep and to remove"):
        plan(report, action="delete", keep_in=[root / "Exports"], remove_in=[root / "Exports"])
    with pytest.raises(ConfigError, match="does not exist"):
        plan(report, action="delete", remove_in=[root / "Nope"])
    with pytest.raises(ConfigError, match="keep rule 'none'"):
        plan(report, action="delete", keep="none", remove_in=[root / "Exports"])
    d = decisions_file(tmp_path, report, [])
    with pytest.raises(ConfigError, match="pass no folder rules"):
        plan(d, action="delete", remove_in=[root / "Exports"])


def test_apply_cli_folder_rules_move_exactly_the_planned_files(runner, sorted_library, tmp_path):
    root, report = sorted_library
    q, journal = tmp_path / "q", tmp_path / "j.jsonl"
    args = ["apply", str(report), "-a", "move", "--to", str(q), "--keep-in",
            str(root / "Originals"), "--remove-in", str(root / "Exports")]
    dry = runner.invoke(cli, args)
    assert dry.exit_code == 0, dry.output
    assert "folder rules: keep under" in dry.output and "dry run" in dry.output
    planned = plan(report, action="move", to=q, keep_in=[root / "Originals"],
                   remove_in=[root / "Exports"])
    res = runner.invoke(cli, [*args, "--yes", "--journal", str(journal)])
    assert res.exit_code == 0, res.output
    assert sorted(str(p) for p in q.rglob("*") if p.is_file()) == sorted(
        [*(op.dst for op in planned.operations), str(q / root.name / ".lookalike-root")])
    assert all(os.path.exists(k) for g in planned.groups for k in g.keep)
    header = json.loads(journal.read_text().splitlines()[0])
    assert header["folder_rules"] == [{"folder": str(root / "Originals"), "rule": "keep"},
                                      {"folder": str(root / "Exports"), "rule": "remove"}]


def test_decisions_with_folder_rules_say_which_rule_or_the_review_decided(sorted_library,
                                                                          tmp_path):
    root, report = sorted_library
    data = json.loads(report.read_text())
    group_a = next(g for g in data["groups"] if len(g["members"]) == 4)
    orig, exp = root / "Originals", root / "Exports"
    rules = [{"folder": str(orig), "rule": "keep"}, {"folder": str(exp), "rule": "remove"}]
    d = decisions_file(tmp_path, report, [
        {"id": group_a["id"], "keep": [str(orig / "A.png"), str(exp / "A.jpg")],
         "remove": [str(exp / "web" / "A_web.jpg"), str(root / "Misc" / "A_copy.png")]}],
        folder_rules=rules)
    p = plan(d, action="delete")
    assert p.rules.to_dicts() == rules
    why = dict(p.groups[0].reasons)
    assert why == {str(orig / "A.png"): f"rule: keep under {orig}",
                   str(exp / "A.jpg"): "decided in review",
                   str(exp / "web" / "A_web.jpg"): f"rule: remove under {exp}",
                   str(root / "Misc" / "A_copy.png"): "decided in review"}
    assert "folder rules: keep under" in render_plan(p)
    bad = decisions_file(tmp_path, report, [], folder_rules=[{"folder": "rel", "rule": "keep"}])
    with pytest.raises(ReportError, match="malformed decisions"):
        plan(bad, action="delete")


def test_a_scan_result_is_refused_with_how_to_write_it_first(tmp_path, scene):
    import lookalike

    scene(1).save(tmp_path / "a.png")
    result = lookalike.scan(tmp_path, workers=1)
    with pytest.raises(TypeError, match="write the scan first"):
        lookalike.plan(result, action="move", to=tmp_path / "q")


def test_a_decisions_keep_list_given_as_text_is_refused_plainly(library, tmp_path):
    # "keep": "/a/b.png" was read letter by letter: "'/' is not a member of group 1".
    _root, report = library
    data = json.loads(report.read_text())
    g = data["groups"][0]
    decisions = {"kind": "lookalike-decisions", "schema_version": 1,
                 "report_path": str(report), "report_created": data["created"],
                 "folder_rules": [], "groups": [{"id": g["id"], "keep": g["members"][0]["path"],
                                                 "remove": []}]}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(decisions))
    with pytest.raises(ReportError, match="'keep' is not a list of paths"):
        plan(path, action="delete")


def test_the_plan_says_which_sidecar_files_stay_behind(tmp_path, scene):
    """Moving IMG_1.HEIC left IMG_1.AAE (its edits) and IMG_1.MOV (its Live Photo) behind
    without a word; one the kept file shares (same name) belongs to it, and is not named."""
    root = tmp_path / "photos"
    (root / "album").mkdir(parents=True)
    img = scene(4, (200, 150))
    img.save(root / "IMG_1.png")
    img.resize((100, 75)).save(root / "album" / "IMG_1_small.png")  # a copy: removed
    for name in ("IMG_1_small.AAE", "IMG_1_small.MOV", "img_1_small.png.xmp", "other.xmp",
                 "IMG_1_small.png.supplemental-metadata.json", "IMG_1_small.x.xmp"):
        (root / "album" / name).write_bytes(b"x")
    (root / "IMG_1.xmp").write_bytes(b"x")  # the kept file's own
    report = tmp_path / "r.json"
    write_report(lookalike.scan(root, workers=1), report)
    p = plan(report, action="move", to=tmp_path / "q")
    (gp,) = p.groups
    assert [op.path for op in gp.operations] == [str(root / "album" / "IMG_1_small.png")]
    (note,) = [n for n in gp.notes if "beside it" in n]
    assert ("IMG_1_small.AAE, IMG_1_small.MOV, IMG_1_small.png.supplemental-metadata.json, "
            "img_1_small.png.xmp beside it stay") in note
    assert "other.xmp" not in note and "IMG_1.xmp" not in note
    assert "IMG_1_small.x.xmp" not in note  # another file's: its name only starts alike
    assert note in render_plan(p)
    assert not [n for n in plan(report, action="hardlink").groups[0].notes if "beside" in n]


def test_a_remove_rule_that_spares_other_shots_says_so(tmp_path, scene):
    """A burst folder under a remove rule: every frame is another shot, so nothing goes,
    and the plan printed no line for the group (the rule looked ignored)."""
    root = tmp_path / "photos"
    (root / "burst").mkdir(parents=True)
    save_burst(scene(6, (200, 150)), root / "burst")
    report = tmp_path / "r.json"
    write_report(lookalike.scan(root, workers=1), report)
    p = plan(report, action="move", to=tmp_path / "q", remove_in=[root / "burst"])
    assert p.files == 0
    (gp,) = p.groups
    assert len([n for n in gp.notes if "stays, though under the rule" in n]) == 2
    assert "another shot (taken 2024-06-01 10:00:00.45" in render_plan(p)
    # Byte copies of the frames under a remove rule go: each moment keeps the frame the
    # rules keep (the rule spared the copy when it ranked first, and kept both).
    (root / "a_dupes").mkdir()
    for k in (0, 1):
        shutil.copy2(root / "burst" / f"IMG_{k}.JPG", root / "a_dupes" / f"IMG_{k}.JPG")
    report2 = tmp_path / "r2.json"
    write_report(lookalike.scan(root, workers=1), report2)
    p2 = plan(report2, action="move", to=tmp_path / "q2", remove_in=[root / "a_dupes"])
    assert sorted(op.path for op in p2.operations) == [
        str(root / "a_dupes" / "IMG_0.JPG"), str(root / "a_dupes" / "IMG_1.JPG")]
    assert sorted(p2.groups[0].keep) == [str(root / "burst" / "IMG_0.JPG"),
                                         str(root / "burst" / "IMG_1.JPG")]
    shutil.rmtree(root / "a_dupes")
    # A reviewer who removed one anyway decided it, not the rule (which spares shots).
    frames = [str(root / "burst" / f"IMG_{k}.JPG") for k in (0, 1)]
    gid = json.loads(report.read_text())["groups"][0]["id"]
    d = decisions_file(tmp_path, report, [{"id": gid, "keep": frames[:1], "remove": frames[1:]}],
                       folder_rules=[{"folder": str(root / "burst"), "rule": "remove"}])
    why = dict(plan(d, action="move", to=tmp_path / "q").groups[0].reasons)
    assert why[frames[1]] == "decided in review"


def test_a_long_plan_on_a_terminal_shows_its_first_groups_and_how_many_more(library, tmp_path):
    """43k files gave a 15,664-line plan on the terminal (the totals came last)."""
    _root, report = library
    p = plan(report, action="move", to=tmp_path / "q")
    full = render_plan(p)
    short = render_plan(p, limit=1)
    assert len(p.groups) == 2 and "not shown here" not in full
    hidden = p.groups[1]
    assert f"group {hidden.group}" not in short and f"group {hidden.group}" in full
    assert (f"... 1 more group ({len(hidden.operations)} file"
            in short) and "total:" in short and short.rstrip().endswith("SHA-256 before acting)")
    # Skipped groups are always listed: why a group is left alone must not be hidden.
    skipped = dataclasses.replace(p, skipped=tuple(
        SkippedGroup(group=90 + k, reason=f"reason {k}") for k in range(3)))
    assert all(f"skip group {90 + k}: reason {k}" in render_plan(skipped, limit=1)
               for k in range(3))


def test_a_sidecar_named_after_the_whole_name_is_the_removed_files_own(tmp_path, scene):
    """IMG_8.png kept and IMG_8.jpg removed beside it: IMG_8.jpg.json (Takeout's) belongs to
    the JPEG by its whole name, and was not named because the kept file shared the stem."""
    root = tmp_path / "photos"
    root.mkdir()
    img = scene(8, (200, 150))
    img.save(root / "IMG_8.png")
    img.save(root / "IMG_8.jpg", quality=60)
    for name in ("IMG_8.jpg.json", "IMG_8.xmp"):
        (root / name).write_bytes(b"x")
    report = tmp_path / "r.json"
    write_report(lookalike.scan(root, workers=1), report)
    p = plan(report, action="move", to=tmp_path / "q")
    assert [op.path for op in p.operations] == [str(root / "IMG_8.jpg")]
    (note,) = [n for n in p.groups[0].notes if "beside it" in n]
    assert "IMG_8.jpg.json beside it stays" in note and "IMG_8.xmp" not in note
