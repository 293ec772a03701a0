"""Never lose a file (issue 13): one file reached by several paths, hard links, survivor checks.

A file is its identity (device, inode), not its path. These tests pin down what must hold:

* the two reproductions of the issue (a folder scanned together with a symlink to it; a
  symlinked folder inside one root with ``--follow-symlinks``), end to end through the CLI;
* one record per file: other paths of it (symlinked folders, hard links) are its ``aliases``,
  never duplicates, never reclaimable bytes;
* ``plan`` re-checks identities in reports written before aliases existed, and acts on every
  name of a removed file and on no name of a kept one;
* ``apply`` checks the survivor (it exists, has the recorded digest and is another file than
  the one removed) for every action, with ``verify="stat"`` too, and for decisions files;
* a Hypothesis property over random trees (symlinked folders and files, hard links, overlapping
  roots, byte and near copies), every action and keep policy, ``--follow-symlinks`` on and off:
  no content is lost, and ``undo`` restores the tree byte for byte.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from PIL import Image

import lookalike
from conftest import snapshot
from lookalike.actions.apply import apply, undo
from lookalike.actions.plan import plan
from lookalike.cli import cli
from lookalike.report.schema import read_report, write_report
from test_act import files_in
from test_plan import decisions_file, edit_report

ACTIONS = ("move", "delete", "hardlink", "symlink")
BASE_NS = 1_600_000_000_000_000_000
SEC = 1_000_000_000

# --------------------------------------------------------------------------- pictures

#: Seeds whose pictures are far apart under the default hash (dhash-z 16, threshold 10: 75+
#: bits between any two) and whose near copies (JPEG q90, 3/4 size) stay within 5 bits;
#: ``test_generated_pictures_are_distinct_and_their_near_copies_match`` keeps that true.
SEEDS = (1, 2, 4, 5, 6, 7, 8, 12, 13, 14)
SIZES = ((160, 120), (128, 128), (112, 144), (144, 96))


def reclaimable(result) -> int:
    """The bytes a report of ``result`` calls reclaimable (its default keep decisions)."""
    from lookalike.report.schema import decide_keep

    return decide_keep(result).bytes_removed(result.groups)


@functools.cache
def picture(seed: int) -> Image.Image:
    """A photo-like RGB picture: a colour gradient and 10-15 soft blobs (callers don't mutate)."""
    rng = np.random.default_rng(seed)
    w, h = SIZES[seed % len(SIZES)]
    y, x = np.mgrid[0:h, 0:w].astype(float)
    x /= w
    y /= h
    grad = rng.uniform(-90, 90, (2, 3))
    img = rng.uniform(40, 215, 3) + x[..., None] * grad[0] + y[..., None] * grad[1]
    for _ in range(rng.integers(10, 16)):
        cx, cy = rng.uniform(0, 1, 2)
        r = rng.uniform(0.04, 0.16)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        img = img + blob[..., None] * rng.uniform(-150, 150, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def save(img: Image.Image, path: Path) -> None:
    if path.suffix == ".jpg":
        img.convert("RGB").save(path, quality=90)
    else:
        img.save(path)


def near_copy(src: Path, dst: Path) -> None:
    """A re-encoded (``.jpg``) or resized (``.png``) copy of ``src``'s picture."""
    with Image.open(src) as im:
        img = im.convert("RGB")
    if dst.suffix == ".png":
        img = img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.Resampling.LANCZOS)
    save(img, dst)


def test_generated_pictures_are_distinct_and_their_near_copies_match(tmp_path):
    hashes = {}
    for s in SEEDS:
        save(picture(s), tmp_path / f"{s}.png")
        hashes[s] = lookalike.hash_image(tmp_path / f"{s}.png")
        for suffix in (".jpg", ".png"):
            near_copy(tmp_path / f"{s}.png", tmp_path / f"{s}_near{suffix}")
            assert hashes[s] - lookalike.hash_image(tmp_path / f"{s}_near{suffix}") <= 5, s
    far = min(hashes[a] - hashes[b] for a in SEEDS for b in SEEDS if a < b)
    assert far > 4 * lookalike.DEFAULT_THRESHOLD


# --------------------------------------------------------------------------- helpers


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_photos(folder: Path) -> list[Path]:
    """Three distinct pictures, no duplicate among them: a.png, b.png, c.jpg."""
    folder.mkdir(parents=True)
    paths = [folder / "a.png", folder / "b.png", folder / "c.jpg"]
    for seed, p in zip(SEEDS, paths, strict=False):
        save(picture(seed), p)
    return paths


def reachable(roots: list[str]) -> dict[str, str]:
    """SHA-256 of every file reachable from ``roots``, following links (each folder once)."""
    out: dict[str, str] = {}
    seen: set[tuple[int, int]] = set()

    def walk(d: str) -> None:
        try:
            st_ = os.stat(d)
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return
        if (st_.st_dev, st_.st_ino) in seen:
            return
        seen.add((st_.st_dev, st_.st_ino))
        for e in entries:
            try:
                if e.is_dir():
                    walk(e.path)
                elif e.is_file():
                    out[e.path] = sha(e.path)
            except OSError:  # a dangling link, a loop
                continue

    for r in roots:
        if os.path.isdir(r):
            walk(r)
        elif os.path.isfile(r):
            out[r] = sha(r)
    return out


def inode_groups(folder: Path) -> set[frozenset[str]]:
    """The hard-link structure: paths of regular files, grouped by (device, inode)."""
    by_id: dict[tuple[int, int], set[str]] = {}
    for p in folder.rglob("*"):
        st_ = p.lstat()
        if stat.S_ISREG(st_.st_mode):
            by_id.setdefault((st_.st_dev, st_.st_ino), set()).add(str(p))
    return {frozenset(v) for v in by_id.values()}


def real_name(path: str) -> str:
    """``path`` with symbolic links resolved in its folders, not in its last component."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def describe(top: Path) -> str:
    """The tree for a failure message: one line per entry, inode labels, short digests."""
    labels: dict[tuple[int, int], str] = {}
    lines = []
    for p in sorted(top.rglob("*")):
        if p.suffix in (".json", ".jsonl"):  # the report and the journal
            continue
        st_ = p.lstat()
        rel = p.relative_to(top)
        if stat.S_ISLNK(st_.st_mode):
            lines.append(f"  {rel} -> {os.readlink(p)}")
        elif stat.S_ISDIR(st_.st_mode):
            lines.append(f"  {rel}/")
        else:
            ino = labels.setdefault((st_.st_dev, st_.st_ino), f"#{len(labels) + 1}")
            lines.append(f"  {rel}  inode {ino}  {st_.st_size} B  sha {sha(p)[:10]}")
    return "\n".join(lines)


def run_lookalike(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The ``lookalike`` command as a user runs it (a fresh interpreter)."""
    env = {**os.environ, "XDG_STATE_HOME": str(cwd / "state")}
    return subprocess.run([sys.executable, "-m", "lookalike.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_bytes_kept(before: dict[str, tuple], folder: Path) -> None:
    """Every file ``folder`` held still holds its bytes: nothing lost, nothing replaced."""
    lost = [p for p, e in before.items() if e[0] == "file" and
            (not os.path.isfile(p) or Path(p).read_bytes() != e[1])]
    assert not lost, f"lost or changed: {lost}"


# --------------------------------------------------------------------------- the reproductions


@pytest.mark.slow
def test_issue_reproduction_folder_and_a_symlink_to_it(tmp_path):
    """``scan photos photos_alias`` then ``apply -a delete --yes`` deleted the only copies."""
    make_photos(tmp_path / "photos")
    (tmp_path / "photos_alias").symlink_to("photos")
    before = snapshot(tmp_path / "photos")
    scan = run_lookalike("scan", "photos", "photos_alias", "--no-cache", "-o", "r.json",
                         cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    applied = run_lookalike("apply", "r.json", "-a", "delete", "--yes", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert_bytes_kept(before, tmp_path / "photos")
    assert snapshot(tmp_path / "photos") == before
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["groups"] == [] and report["stats"]["images"] == 3


@pytest.mark.slow
def test_issue_reproduction_symlinked_folder_inside_one_root(tmp_path):
    """``Exports/linkdir -> ../2020`` with ``--follow-symlinks``: the keeper went by its alias."""
    lib = tmp_path / "lib"
    make_photos(lib / "2020")
    (lib / "Exports").mkdir()
    (lib / "Exports" / "linkdir").symlink_to(Path("..") / "2020")
    before = snapshot(lib)
    scan = run_lookalike("scan", "lib", "--follow-symlinks", "--no-cache", "-o", "r.json",
                         cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    applied = run_lookalike("apply", "r.json", "-a", "delete", "--yes", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert_bytes_kept(before, lib)
    assert snapshot(lib) == before
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["groups"] == [] and report["stats"]["images"] == 3


def _one_file_two_paths(tmp_path: Path, layout: str) -> tuple[Path, list[str], list[str]]:
    """A tree where every file is reachable by two paths; returns (tree, roots, scan flags)."""
    if layout == "alias-root":
        tree = tmp_path / "photos"
        make_photos(tree)
        (tmp_path / "photos_alias").symlink_to("photos")
        return tree, [str(tree), str(tmp_path / "photos_alias")], []
    tree = tmp_path / "lib"
    make_photos(tree / "2020")
    (tree / "Exports").mkdir()
    (tree / "Exports" / "linkdir").symlink_to(Path("..") / "2020")
    if layout == "linked-folder":
        return tree, [str(tree)], ["--follow-symlinks"]
    assert layout == "overlapping-roots"  # scan ~/Pictures ~/Pictures/2020
    return tree, [str(tree), str(tree / "2020")], []


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("layout", ["alias-root", "linked-folder", "overlapping-roots"])
def test_no_action_touches_a_file_scanned_under_two_paths(runner, tmp_path, layout, action):
    tree, roots, flags = _one_file_two_paths(tmp_path, layout)
    before = snapshot(tree)
    report = tmp_path / "r.json"
    res = runner.invoke(cli, ["scan", *roots, *flags, "--no-cache", "-j", "1", "-q",
                              "-o", str(report)])
    assert res.exit_code == 0, res.output
    args = ["apply", str(report), "-a", action, "--yes", "--journal", str(tmp_path / "j.jsonl")]
    if action == "move":
        args += ["--to", str(tmp_path / "q")]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert_bytes_kept(before, tree)
    assert snapshot(tree) == before
    assert files_in(tmp_path / "q") == []
    assert json.loads(report.read_text())["groups"] == []


# --------------------------------------------------------------------------- one record per file


def test_a_folder_and_a_symlink_to_it_give_one_record_per_file_with_aliases(tmp_path):
    paths = make_photos(tmp_path / "photos")
    (tmp_path / "photos_alias").symlink_to("photos")
    result = lookalike.scan([tmp_path / "photos", tmp_path / "photos_alias"], workers=1)
    assert result.groups == []
    assert result.stats["images"] == 3
    by_path = {r.path: r for r in result.records}
    assert sorted(by_path) == [str(p) for p in paths]  # the paths without a symlink
    for p in paths:
        assert tuple(getattr(by_path[str(p)], "aliases", None) or ()) == (
            str(tmp_path / "photos_alias" / p.name),)


def test_a_followed_symlinked_folder_gives_aliases_not_duplicates(tmp_path):
    lib = tmp_path / "lib"
    paths = make_photos(lib / "2020")
    (lib / "Exports").mkdir()
    (lib / "Exports" / "linkdir").symlink_to(Path("..") / "2020")
    result = lookalike.scan(lib, follow_symlinks=True, workers=1)
    assert result.groups == [] and reclaimable(result) == 0
    by_path = {r.path: r for r in result.records}
    assert sorted(by_path) == [str(p) for p in paths]
    for p in paths:
        assert tuple(getattr(by_path[str(p)], "aliases", None) or ()) == (
            str(lib / "Exports" / "linkdir" / p.name),)


def test_hard_links_are_one_record_never_a_duplicate_group(tmp_path):
    lib = tmp_path / "lib"
    a, b, _c = make_photos(lib)
    os.link(a, lib / "a_link.png")
    result = lookalike.scan(lib, workers=1)
    assert result.groups == []
    assert result.stats["images"] == 3
    assert reclaimable(result) == 0
    (rec,) = [r for r in result.records if r.path in (str(a), str(lib / "a_link.png"))]
    aliases = tuple(getattr(rec, "aliases", None) or ())
    assert sorted([rec.path, *aliases]) == [str(a), str(lib / "a_link.png")]
    assert str(b) in {r.path for r in result.records}


@pytest.fixture
def linked_pair(tmp_path):
    """An exact group {A with its hard link A2, B a byte copy of A}, and its report."""
    lib = tmp_path / "lib"
    a, *_ = make_photos(lib)
    a2, b = lib / "a_link.png", lib / "b_copy.png"
    os.link(a, a2)
    shutil.copyfile(a, b)
    os.utime(b, ns=(BASE_NS, BASE_NS))
    os.utime(a, ns=(BASE_NS + SEC, BASE_NS + SEC))
    result = lookalike.scan(lib, workers=1)
    report = tmp_path / "r.json"
    write_report(result, report)
    return lib, a, a2, b, result, report


def test_hard_links_beside_a_byte_copy_make_a_group_of_two_files(linked_pair):
    _lib, a, a2, b, result, _report = linked_pair
    (group,) = result.groups
    assert group.kind == "exact" and len(group.members) == 2
    names = {m.record.path for m in group.members}
    names |= {x for m in group.members for x in (getattr(m.record, "aliases", None) or ())}
    assert names == {str(a), str(a2), str(b)}
    assert reclaimable(result) == a.stat().st_size  # one copy, not two


@pytest.mark.parametrize("action", ACTIONS)
def test_removing_a_hard_linked_file_acts_on_all_its_names_and_keeping_it_on_none(
        linked_pair, tmp_path, action):
    _lib, a, a2, b, _result, report = linked_pair
    to = tmp_path / "q" if action == "move" else None
    keep_b = plan(report, action=action, keep="match:*/b_copy.png", to=to)
    assert {op.path for op in keep_b.operations} == {str(a), str(a2)}
    assert all(g.keep == (str(b),) for g in keep_b.groups)
    keep_a = plan(report, action=action, keep="match:*/a*.png", to=to)  # matches a and a2
    assert {op.path for op in keep_a.operations} == {str(b)}
    data = a.read_bytes()
    res = apply(keep_a, journal=tmp_path / "j.jsonl")
    assert res.ok and [op.path for op in res.done] == [str(b)]
    assert a.read_bytes() == a2.read_bytes() == data and os.path.samefile(a, a2)


# --------------------------------------------------------------------------- old reports


@pytest.fixture
def old_style_report(tmp_path):
    """A report as earlier versions wrote it: photos/a.png and photos_alias/a.png (one file)
    listed as two members of an exact group, with no ``aliases`` key anywhere."""
    photos = tmp_path / "photos"
    a, *_ = make_photos(photos)
    alias = tmp_path / "photos_alias"
    alias.symlink_to("photos")
    report = tmp_path / "r.json"
    write_report(lookalike.scan([photos, alias], workers=1), report)
    cfg = json.loads(report.read_text())["config"]
    h = str(lookalike.hash_image(a, cfg["method"], cfg["hash_size"]))
    st_, digest = a.stat(), sha(a)
    with Image.open(a) as im:
        width, height = im.size

    def member(path: Path, root: Path) -> dict:
        return {"path": str(path), "hash": h, "distance": 0, "width": width, "height": height,
                "bytes": st_.st_size, "format": "PNG", "mtime_ns": st_.st_mtime_ns,
                "digest": digest, "pixel_digest": None, "source": str(root)}

    def old(data: dict) -> None:
        data["roots"] = [str(photos), str(alias)]
        data["groups"] = [{"id": 1, "kind": "exact", "representative": str(a), "keep": [str(a)],
                           "members": [member(a, photos), member(alias / "a.png", alias)]}]
        for g in data["groups"]:
            for m in g["members"]:
                m.pop("aliases", None)
        data["stats"]["groups"] = 1

    edit_report(report, old)
    return photos, alias, report


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("keep", ["shortest-path", "match:*/photos_alias/*"])
def test_an_old_report_listing_one_file_twice_is_rechecked_when_planned(
        old_style_report, tmp_path, action, keep):
    photos, alias, report = old_style_report
    before = snapshot(photos)
    p = plan(report, action=action, keep=keep, to=tmp_path / "q" if action == "move" else None)
    touched = [op.path for op in p.operations]
    assert touched == [], f"plans {action} of {touched}: the same file as the one kept"
    apply(p, journal=tmp_path / "j.jsonl")
    assert snapshot(photos) == before
    assert (alias / "a.png").read_bytes() == before[str(photos / "a.png")][1]


# --------------------------------------------------------------------------- survivor checks


@pytest.fixture
def keeper_pair(tmp_path):
    """An exact group {keeper.png, dup.png} (byte copies with one mtime), scanned and reported."""
    lib = tmp_path / "lib"
    lib.mkdir()
    keeper, dup = lib / "keeper.png", lib / "dup.png"
    save(picture(SEEDS[0]), keeper)
    shutil.copyfile(keeper, dup)
    save(picture(SEEDS[1]), lib / "other.png")
    for p in (keeper, dup):  # equal mtimes: a hard link made later keeps both stat-identical
        os.utime(p, ns=(BASE_NS, BASE_NS))
    report = tmp_path / "r.json"
    write_report(lookalike.scan(lib, workers=1), report)
    (g,) = json.loads(report.read_text())["groups"]
    assert sorted(m["path"] for m in g["members"]) == [str(dup), str(keeper)]
    return lib, keeper, dup, report


def _tamper_keeper(keeper: Path, dup: Path, how: str) -> None:
    st_ = keeper.stat()
    if how == "gone":
        keeper.unlink()
        return
    if how == "other-bytes":  # same size and mtime: only the digest tells
        data = bytearray(keeper.read_bytes())
        data[-20] ^= 0xFF
        keeper.write_bytes(bytes(data))
    else:  # "same-file-as-dup": same size, mtime and digest; only the identity tells
        tmp = keeper.with_name(".keeper.tmp")
        os.link(dup, tmp)
        os.replace(tmp, keeper)
    os.utime(keeper, ns=(st_.st_atime_ns, st_.st_mtime_ns))
    assert keeper.stat().st_mtime_ns == st_.st_mtime_ns


def _dup_state(dup: Path) -> tuple:
    st_ = dup.lstat()
    return (stat.S_IFMT(st_.st_mode), st_.st_ino, st_.st_size, st_.st_mtime_ns, dup.read_bytes())


@pytest.mark.parametrize("verify", ["digest", "stat"])
@pytest.mark.parametrize("how", ["gone", "other-bytes", "same-file-as-dup"])
@pytest.mark.parametrize("action", ACTIONS)
def test_apply_skips_the_group_when_the_kept_file_is_not_what_the_report_said(
        keeper_pair, tmp_path, action, how, verify):
    _lib, keeper, dup, report = keeper_pair
    p = plan(report, action=action, keep="match:*/keeper.png",
             to=tmp_path / "q" if action == "move" else None)
    assert [op.path for op in p.operations] == [str(dup)]
    assert p.groups[0].keep == (str(keeper),)
    _tamper_keeper(keeper, dup, how)
    before = _dup_state(dup)
    res = apply(p, journal=tmp_path / "j.jsonl", verify=verify)
    assert res.done == (), f"{action} went ahead although the kept file is {how}"
    assert [op.path for op in res.skipped] == [str(dup)]
    assert _dup_state(dup) == before
    assert files_in(tmp_path / "q") == []


@pytest.mark.parametrize("action", ACTIONS)
def test_decisions_keeping_the_same_file_as_the_one_removed_are_skipped(
        keeper_pair, tmp_path, action):
    """A hand-edited decisions file: keep keeper.png, remove dup.png, where keeper.png has
    become a hard link of dup.png since the scan (same size, mtime and digest)."""
    _lib, keeper, dup, report = keeper_pair
    d = decisions_file(tmp_path, report, [{"id": 1, "keep": [str(keeper)],
                                           "remove": [str(dup)]}])
    _tamper_keeper(keeper, dup, "same-file-as-dup")
    before = _dup_state(dup)
    p = plan(d, action=action, to=tmp_path / "q" if action == "move" else None)
    res = apply(p, journal=tmp_path / "j.jsonl")
    assert res.done == ()
    # refused by the plan (skipped, or dropped with a note) or by apply (skipped)
    assert p.skipped or str(dup) not in {op.path for op in p.operations} or \
        [op.path for op in res.skipped] == [str(dup)]
    assert _dup_state(dup) == before


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("kept", ["photos", "photos_alias"])
def test_decisions_on_an_old_report_never_remove_the_kept_file_by_its_other_path(
        old_style_report, tmp_path, action, kept):
    photos, alias, report = old_style_report
    paths = {"photos": str(photos / "a.png"), "photos_alias": str(alias / "a.png")}
    other = next(v for k, v in paths.items() if k != kept)
    d = decisions_file(tmp_path, report, [{"id": 1, "keep": [paths[kept]], "remove": [other]}])
    before = snapshot(photos)
    p = plan(d, action=action, to=tmp_path / "q" if action == "move" else None)
    res = apply(p, journal=tmp_path / "j.jsonl")
    assert res.done == ()
    assert snapshot(photos) == before


# --------------------------------------------------------------------------- the property


FOLDERS = ("", "2020", "2020/raw", "Exports", "misc")
#: Symbolic links to folders inside the tree (``misc/loop`` points at an ancestor).
FOLDER_LINKS = {"Exports/linkdir": "../2020", "misc/abs": "@2020/raw", "misc/loop": ".."}
#: Roots besides ``lib``: symlinks to it or into it, and a subfolder of it.
EXTRA_ROOTS = {"alias": "lib", "alias2020": "lib/2020", "lib/2020": None}
COPY_KINDS = ("bytes", "jpeg", "resize", "hardlink", "symlink")
RULES = ("largest-resolution", "largest-file", "smallest-file", "oldest", "newest",
         "shortest-path", "prefer-lossless", "match:*/2020/*", "match:*.jpg",
         "match:*/linkdir/*", "match:*/alias*")


@dataclass(frozen=True)
class Copy:
    kind: str  # bytes | jpeg | resize | hardlink | symlink
    of: int  # which earlier file of this picture (0: the original), modulo their number
    folder: str
    relative: bool  # symlink: relative target, else absolute


@dataclass(frozen=True)
class Pic:
    seed: int
    suffix: str
    folder: str
    copies: tuple[Copy, ...]


@dataclass(frozen=True)
class Case:
    pics: tuple[Pic, ...]
    folder_links: tuple[str, ...]
    roots: tuple[str, ...]
    follow_symlinks: bool
    action: str
    keep: tuple[str, ...]
    verify: str


copies = st.builds(Copy, kind=st.sampled_from(("bytes", *COPY_KINDS)), of=st.integers(0, 3),
                   folder=st.sampled_from(FOLDERS), relative=st.booleans())


@st.composite
def cases(draw: st.DrawFn) -> Case:
    seeds = draw(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=4, unique=True))
    pics = tuple(Pic(seed=s, suffix=draw(st.sampled_from([".png", ".jpg"])),
                     folder=draw(st.sampled_from(FOLDERS)),
                     copies=tuple(draw(st.lists(copies, min_size=int(i == 0), max_size=5))))
                 for i, s in enumerate(seeds))
    links = tuple(draw(st.lists(st.sampled_from(sorted(FOLDER_LINKS)), unique=True,
                                max_size=2)))
    extra = draw(st.lists(st.sampled_from(sorted(EXTRA_ROOTS)), unique=True, max_size=2))
    roots = tuple(draw(st.permutations(["lib", *extra])))
    action = draw(st.sampled_from(ACTIONS))
    policies = st.lists(st.sampled_from(RULES), min_size=1, max_size=2, unique=True)
    if action in ("move", "delete"):
        policies = st.one_of(st.just(["none"]), policies)
    return Case(pics=pics, folder_links=links, roots=roots,
                follow_symlinks=draw(st.booleans()), action=action,
                keep=tuple(draw(policies)), verify=draw(st.sampled_from(["digest", "stat"])))


def build(case: Case, top: Path) -> list[str]:
    """Make ``case``'s tree under ``top``; returns the scan roots (absolute, unresolved)."""
    lib = top / "lib"
    for f in FOLDERS:
        (lib / f).mkdir(parents=True, exist_ok=True)
    regular: list[Path] = []
    for i, pic in enumerate(case.pics):
        made = [lib / pic.folder / f"p{i}{pic.suffix}"]
        save(picture(pic.seed), made[0])
        regular.append(made[0])
        for k, c in enumerate(pic.copies, 1):
            src = made[c.of % len(made)]
            suffix = {"jpeg": ".jpg", "resize": ".png"}.get(c.kind, src.suffix)
            dst = lib / c.folder / f"p{i}_{k}_{c.kind}{suffix}"
            if c.kind == "bytes":
                shutil.copyfile(src, dst)
            elif c.kind in ("jpeg", "resize"):
                near_copy(src, dst)
            elif c.kind == "hardlink":
                os.link(os.path.realpath(src), dst)  # of the file, also when src is a link
            else:
                dst.symlink_to(os.path.relpath(src, dst.parent) if c.relative else src)
            made.append(dst)
            if c.kind != "symlink":
                regular.append(dst)
    for n, p in enumerate(regular):  # distinct, fixed mtimes: oldest/newest are reproducible
        os.utime(p, ns=(BASE_NS + n * SEC, BASE_NS + n * SEC))
    for name in case.folder_links:
        target = FOLDER_LINKS[name]
        (lib / name).symlink_to(str(lib / target[1:]) if target.startswith("@") else target)
    for r in case.roots:
        if EXTRA_ROOTS.get(r):
            (top / r).symlink_to(os.path.relpath(top / EXTRA_ROOTS[r], top))
    return [str(top / r) for r in case.roots]


def check_case(case: Case) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(os.path.realpath(tmp))
        lib, q, journal = top / "lib", top / "q", top / "j.jsonl"
        roots = build(case, top)
        note(f"tree under {top}:\n{describe(top)}")
        before, links_before = snapshot(lib), inode_groups(lib)
        contents_before = reachable(roots)
        result = lookalike.scan(roots, follow_symlinks=case.follow_symlinks, workers=1)
        write_report(result, top / "r.json")
        report = read_report(top / "r.json")
        member_sha = {m.record.path: sha(m.record.path) for g in report.groups
                      for m in g.members}
        note("groups:\n" + "\n".join(
            f"  {g.id} {g.kind}: " + ", ".join(
                os.path.relpath(m.record.path, top) + (
                    f" (aliases {[os.path.relpath(x, top) for x in aliases]})"
                    if (aliases := getattr(m.record, "aliases", None)) else "")
                for m in g.members) for g in report.groups))
        p = plan(report, action=case.action, keep=list(case.keep),  # type: ignore[arg-type]
                 to=q if case.action == "move" else None)
        note("plan:\n" + "\n".join(
            f"  {op.action} {os.path.relpath(op.path, top)}  (group {op.group}, keep "
            f"{[os.path.relpath(k, top) for k in g.keep]})"
            for g in p.groups for op in g.operations)
            + "".join(f"\n  skip group {s.group}: {s.reason}" for s in p.skipped))
        res = apply(p, journal=journal, verify=case.verify)  # type: ignore[arg-type]
        event(f"{case.action}: {'some' if res.done else 'no'} operations done")
        event(f"{'some' if any(getattr(r, 'aliases', ()) for r in result.records) else 'no'}"
              " record with aliases")
        note(f"done: {[os.path.relpath(op.path, top) for op in res.done]}; failed: "
             f"{[(op.path, pr.message) for op, pr in res.failed]}")
        note(f"tree after apply:\n{describe(top)}")

        # 1. Contents: what no group holds is never lost; every group keeps one of its own.
        after = set(reachable(roots).values())
        grouped = set(member_sha.values())
        lost = {path: c[:10] for path, c in contents_before.items()
                if c not in grouped and c not in after}
        assert not lost, f"content lost although it is in no group: {lost}"
        if not p.remove_all:
            for g in report.groups:
                own = {member_sha[m.record.path] for m in g.members}
                assert own & after, f"group {g.id}: no member's content is left"
            for gp in p.groups:
                for k in gp.keep:
                    assert os.path.isfile(k) and sha(k) == member_sha[k], \
                        f"the kept file {k} is gone or changed"
        # 2. A file no operation acted on keeps its bytes (acting through an alias counts).
        acted = {real_name(op.path) for op in res.done}
        hit = [path for path, e in before.items() if e[0] == "file" and path not in acted
               and not (os.path.isfile(path) and Path(path).read_bytes() == e[1])]
        assert not hit, f"files nothing acted on were removed or changed: {hit}"
        for r in case.roots:
            if EXTRA_ROOTS.get(r):
                assert os.path.islink(top / r)
        # 3. Undo restores the tree byte for byte: paths, bytes, mtimes, links, inodes.
        if case.action != "delete":
            u = undo(journal)
            assert u.ok, u.failed
            note(f"tree after undo:\n{describe(top)}")
            assert snapshot(lib) == before
            assert inode_groups(lib) == links_before
            assert files_in(q) == []
            assert not Path(f"{journal}.backup").exists() or \
                files_in(Path(f"{journal}.backup")) == []


PROPERTY = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.slow
@settings(PROPERTY, max_examples=1500)
@given(case=cases())
def test_no_content_is_ever_lost_and_undo_restores_the_tree(case):
    """Random trees x every action, keep policy, --follow-symlinks on and off (slow lane)."""
    check_case(case)


@pytest.mark.slow
@settings(PROPERTY, max_examples=25)
@given(case=cases())
def test_no_content_is_ever_lost_and_undo_restores_the_tree_quick(case):
    """The same property on a few trees (quick lane)."""
    check_case(case)
