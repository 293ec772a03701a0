"""End-to-end scans on real photos and their transformed copies."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

import lookalike
from lookalike.executors import ProcessExecutor, SerialExecutor


@pytest.fixture(scope="module")
def copies_tree(tmp_path_factory, request):
    """Six real photos, each with resized / re-encoded / brightened copies, plus a singleton."""
    by_name = {p.stem: p for p in request.getfixturevalue("rgb_photos")}
    # Distinct scenes only: the motorcycle stereo pair really is two near-duplicates.
    names = ["astronaut", "chelsea", "coffee", "hubble_deep_field", "ihc", "rocket", "retina"]
    photos = [by_name[n] for n in names]
    root = tmp_path_factory.mktemp("tree")
    truth = {}
    for i, src in enumerate(photos[:6]):
        img = Image.open(src).convert("RGB")
        d = root / f"set{i}"
        d.mkdir()
        orig = d / f"orig{i}.png"
        shutil.copy(src, orig)
        img.resize((img.width // 2, img.height // 2), Image.Resampling.BICUBIC).save(
            d / f"half{i}.png")
        img.save(d / f"q80_{i}.jpg", quality=80)
        ImageEnhance.Brightness(img).enhance(1.1).save(d / f"bright{i}.png")
        truth[str(orig)] = {str(p) for p in d.iterdir()}
    shutil.copy(photos[6], root / "alone.png")
    return root, truth


def test_scan_groups_each_photo_with_its_copies(copies_tree):
    root, truth = copies_tree
    result = lookalike.scan(root, method="phash", threshold=8, workers=1)
    assert result.errors == []
    found = {frozenset(g.paths) for g in result.groups}
    for members in truth.values():
        assert frozenset(members) in found
    assert all(str(root / "alone.png") not in g.paths for g in result.groups)


def test_default_folklore_scan_finds_the_resized_copies(copies_tree):
    root, truth = copies_tree
    result = lookalike.scan(root, method="dhash-z", hash_size=8, threshold=0, workers=1)
    grouped = {p for g in result.groups for p in g.paths}
    hits = sum(1 for orig in truth if orig in grouped)
    assert hits >= 4  # the folklore recipe is weak, but finds most resized copies


def test_same_groups_with_one_or_two_workers(copies_tree):
    root, _ = copies_tree
    kw = {"method": "dhash", "threshold": 6}
    with SerialExecutor() as one, ProcessExecutor(2) as two:
        a = lookalike.scan(root, executor=one, **kw)
        b = lookalike.scan(root, executor=two, **kw)
    assert [(g.id, g.paths, g.representative) for g in a.groups] == [
        (g.id, g.paths, g.representative) for g in b.groups]
    assert b.stats["workers"] == 2


def test_bad_files_become_errors_and_the_scan_goes_on(copies_tree, tmp_path):
    root, truth = copies_tree
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.png").write_text("not an image")
    data = (bad / "set0" / "q80_0.jpg").read_bytes()
    (bad / "cut.jpg").write_bytes(data[: len(data) // 3])
    result = lookalike.scan(bad, method="phash", threshold=8, workers=2)
    reasons = {e.path.rsplit("/", 1)[1]: e.error for e in result.errors}
    assert reasons == {"empty.jpg": "empty-file", "text.png": "unsupported-format",
                       "cut.jpg": "truncated"}
    assert len(result.groups) == len(truth)
    assert result.stats["errors"] == 3


def test_scan_takes_the_cache_as_a_path_and_closes_it(copies_tree, tmp_path):
    root, _ = copies_tree
    db = tmp_path / "sub" / "cache.sqlite"
    first = lookalike.scan(root, workers=1, cache=db)
    again = lookalike.scan(root, workers=1, cache=str(db))
    assert again.stats["hashed"] == 0 and first.stats["hashed"] > 0
    assert [g.paths for g in again.groups] == [g.paths for g in first.groups]
    from lookalike.store.cache import HashCache

    with HashCache(db) as cache:  # closed by the scans: every row was committed
        assert len(cache) == len(first.records)


def test_blank_and_solid_pictures_group_only_with_their_byte_copies(tmp_path):
    """Solid squares of four colours and a white page with a line of text were one 'near'
    group (every such hash is 0; the page a few bits from it): the keep policy would have
    removed the red square for the blue one."""
    from PIL import ImageDraw

    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255)), ("black", (0, 0, 0)),
                         ("white", (255, 255, 255))):
        Image.new("RGB", (300, 300), colour).save(tmp_path / f"{name}.png")
    shutil.copyfile(tmp_path / "red.png", tmp_path / "red_copy.png")
    page = Image.new("RGB", (800, 600), (255, 255, 255))
    ImageDraw.Draw(page).text((50, 140), "Meeting notes: bring the slides", fill=(0, 0, 0))
    page.save(tmp_path / "page.png")
    db = tmp_path / "cache.sqlite"
    for _ in range(2):  # cold, then warm: the digests come from the cache
        result = lookalike.scan(tmp_path, workers=1, cache=db)
        assert [sorted(Path(p).name for p in g.paths) for g in result.groups] == [
            ["red.png", "red_copy.png"]]
        assert result.groups[0].kind == "exact"
    assert result.stats["hashed"] == 0


def _bands(colours, size=(300, 200)) -> Image.Image:
    """Horizontal bands: the flag-like picture whose plain dhash is flat (no pixel differs
    from its left neighbour), so one of its hash segments is a flat picture's."""
    img = Image.new("RGB", size)
    h = size[1] // len(colours)
    for k, c in enumerate(colours):
        img.paste(c, (0, k * h, size[0], size[1] if k == len(colours) - 1 else (k + 1) * h))
    return img


def test_a_flat_segment_joins_nothing_but_the_other_segments_still_match(tmp_path):
    """A flag of horizontal bands and a vertical sky gradient each have one flat segment
    (their plain orientation); that shared segment put them, and every blank picture, in
    one group. A flag's copy still matches through its other segments; a pure gradient has
    none (turned, every bit is set: as good as blank), so a sky matches only its byte
    copies, never a sky of other colours."""
    import numpy as np

    flag = _bands([(0, 0, 0), (221, 0, 0), (255, 206, 0)])
    flag.save(tmp_path / "flag_de.png")
    flag.save(tmp_path / "flag_de_q85.jpg", quality=85)
    _bands([(174, 28, 40), (255, 255, 255), (33, 70, 139)]).save(tmp_path / "flag_nl.png")
    ramp = np.linspace(90, 230, 200, dtype=np.uint8)[:, None, None]
    for name, tint in (("sky", [0.6, 0.8, 1.0]), ("dusk", [1.0, 0.6, 0.3])):
        Image.fromarray(np.broadcast_to(ramp * np.array(tint), (200, 300, 3))
                        .astype(np.uint8)).save(tmp_path / f"{name}.png")
    shutil.copyfile(tmp_path / "sky.png", tmp_path / "sky_copy.png")
    Image.new("RGB", (300, 200), (255, 255, 255)).save(tmp_path / "white.png")
    result = lookalike.scan(tmp_path, workers=1)
    assert sorted(sorted(Path(p).name for p in g.paths) for g in result.groups) == [
        ["flag_de.png", "flag_de_q85.jpg"], ["sky.png", "sky_copy.png"]]


def test_near_blank_pages_and_skies_join_nothing(tmp_path):
    """Pages that differ only by a page number or a small mark, and skies with a bird in
    different places, hash within a few bits of a blank page (or, turned, of a pure
    gradient): all of them were one group. Within 1/32 of the bits of such a code a
    segment joins nothing; a page with real content still matches its copy."""
    import numpy as np
    from PIL import ImageDraw

    for k in range(6):
        page = Image.new("L", (425, 550), 255)
        ImageDraw.Draw(page).text((205, 525), str(k + 1), fill=0)
        page.save(tmp_path / f"page_{k}.png")
        dot = Image.new("L", (425, 550), 250)
        x, y = 40 + 60 * k, 500 - 80 * k
        ImageDraw.Draw(dot).ellipse((x, y, x + 6, y + 6), fill=30)
        dot.save(tmp_path / f"dot_{k}.jpg", quality=90)
        ramp = np.linspace(0, 1, 300)[:, None, None]
        top, bottom = np.array([70 + 3 * k, 130, 220]), np.array([180, 210, 245])
        sky = Image.fromarray((top * (1 - ramp) + bottom * ramp).repeat(450, axis=1)
                              .astype(np.uint8))
        x, y = ((30, 30), (400, 250), (400, 30), (30, 250), (215, 140), (100, 200))[k]
        ImageDraw.Draw(sky).line((x, y, x + 15, y + 8, x + 30, y), fill=(20, 20, 20), width=3)
        sky.save(tmp_path / f"sky_{k}.jpg", quality=90)
    letter = Image.new("L", (425, 550), 255)
    draw = ImageDraw.Draw(letter)
    for line in range(30):
        draw.text((40, 30 + 16 * line), f"{line:02d} " + "word " * (2 + line % 7), fill=0)
    letter.save(tmp_path / "letter.png")
    letter.resize((340, 440)).save(tmp_path / "letter_small.png")
    result = lookalike.scan(tmp_path, workers=1)
    assert [sorted(Path(p).name for p in g.paths) for g in result.groups] == [
        ["letter.png", "letter_small.png"]]


@pytest.mark.parametrize("method", ["dhash-z", "phash", "ahash"])
def test_blank_pictures_group_with_their_byte_copies_only_whatever_the_method(tmp_path,
                                                                              method):
    """A solid picture is featureless for phash too (its hash is the DC bit, not 0), and for
    pdq black and tiny pictures are (0): red and blue, or a 1x1 GIF and a black square, were
    one group. Pixels do not tell either: they are composited on white, so different white
    icons on transparency decode alike."""
    white = Image.new("RGB", (120, 80), (255, 255, 255))
    white.save(tmp_path / "white.png")
    shutil.copyfile(tmp_path / "white.png", tmp_path / "white_copy.png")
    white.save(tmp_path / "white.bmp")  # the same pixels, other bytes: not grouped
    for name, colour in (("red", (255, 0, 0)), ("black", (0, 0, 0))):
        Image.new("RGB", (120, 80), colour).save(tmp_path / f"{name}.png")
    Image.new("RGB", (1, 1), (0, 0, 255)).save(tmp_path / "dot.gif")
    for k, box in enumerate(((10, 10, 50, 50), (60, 20, 110, 70))):
        icon = Image.new("RGBA", (120, 80), (0, 0, 0, 0))
        icon.paste((255, 255, 255, 255), box)  # white shapes on transparency
        icon.save(tmp_path / f"icon{k}.png")
    result = lookalike.scan(tmp_path, workers=1, method=method)
    assert [sorted(Path(p).name for p in g.paths) for g in result.groups] == [
        ["white.png", "white_copy.png"]]
    assert result.groups[0].kind == "exact"


def test_pdq_groups_no_black_or_tiny_pictures_by_their_zero_hash(tmp_path):
    """PDQ hashes black and every picture under 5 pixels on a side to 0: a 1x1 GIF, a 4x4
    icon, a 400x3 banner and a black square were one group. (Its other flat pictures hash
    arbitrarily; pdq_hash's quality flags them.)"""
    import numpy as np

    rng = np.random.default_rng(3)
    Image.new("RGB", (1, 1), (255, 0, 0)).save(tmp_path / "dot.gif")
    Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(rng.integers(0, 255, (3, 400, 3), dtype=np.uint8)).save(
        tmp_path / "banner.png")
    Image.new("RGB", (100, 100)).save(tmp_path / "black.png")
    shutil.copyfile(tmp_path / "black.png", tmp_path / "black_copy.png")
    result = lookalike.scan(tmp_path, workers=1, method="pdq")
    assert [sorted(Path(p).name for p in g.paths) for g in result.groups] == [
        ["black.png", "black_copy.png"]]


def test_scan_rejects_bad_options_before_any_work(tmp_path):
    with pytest.raises(lookalike.ConfigError):
        lookalike.scan(tmp_path, threshold=-1)
    with pytest.raises(lookalike.ConfigError, match="choose one of"):
        lookalike.scan(tmp_path, method="nope")


def test_files_are_read_whole_through_short_reads(tmp_path, monkeypatch):
    import os

    from lookalike.inputs.read import read_regular

    data = os.urandom(300_000)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    assert read_regular(str(path), 1 << 20)[0] == data
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: real_read(fd, min(n, 4096)))
    got, st = read_regular(str(path), 1 << 20)
    assert got == data and st.st_size == len(data)
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert read_regular(str(tmp_path / "empty.jpg"), 1 << 20)[0] == b""


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_only_group_members_are_digested(copies_tree, tmp_path):
    root, _ = copies_tree
    tree = tmp_path / "t"
    shutil.copytree(root, tree)
    shutil.copy(tree / "set0" / "orig0.png", tree / "set0" / "copy0.png")  # same bytes
    result = lookalike.scan(tree, method="phash", threshold=8, workers=1)
    members = {p for g in result.groups for p in g.paths}
    assert str(tree / "alone.png") not in members
    for r in result.records:
        # Members carry the SHA-256 of their bytes; the lone photo was never digested.
        assert r.digest == (_sha(r.path) if r.path in members else None), r.path
    # Members re-hashed from full decodes (lookalike.grouping.confirm) got theirs from those reads.
    assert 0 < result.stats["digested"] <= len(members)
    by_path = {r.path: r for r in result.records}
    twins = [str(tree / "set0" / "copy0.png"), str(tree / "set0" / "orig0.png")]
    assert by_path[twins[0]].digest == by_path[twins[1]].digest
    assert any(set(twins) <= set(g.paths) for g in result.groups)


@pytest.mark.slow  # 2 s: the copies tree scanned three times
def test_pixel_identical_files_make_an_exact_group_and_only_they_are_decoded_again(
        copies_tree, tmp_path, monkeypatch):
    """A PNG re-saved with other metadata (other bytes, the same pixels) and as a lossless
    WebP forms an ``exact`` group; the pixel digests come after grouping, for those members
    only, and a warm re-scan takes them from the cache."""
    from lookalike import worker
    from lookalike.store.cache import HashCache

    root, _ = copies_tree
    tree = tmp_path / "t"
    shutil.copytree(root, tree)
    src = tree / "alone.png"
    img = Image.open(src)
    img.save(tree / "alone_tagged.png", pnginfo=_text_chunk("note", "re-saved"))
    img.save(tree / "alone.webp", lossless=True)
    decoded = []
    real = worker.pixel_digests
    monkeypatch.setattr(worker, "pixel_digests",
                        lambda recs, cfg: decoded.extend(r.path for r in recs) or real(recs, cfg))
    db = HashCache(tmp_path / "cache.sqlite")
    first = lookalike.scan(tree, workers=1, cache=db)
    (alone,) = [g for g in first.groups if str(src) in g.paths]
    assert alone.kind == "exact"
    assert sorted(alone.paths) == sorted(str(tree / n) for n in
                                         ("alone.png", "alone.webp", "alone_tagged.png"))
    assert len({m.record.pixel_digest for m in alone.members}) == 1
    # Only that group's members were decoded again; the near groups' members never were.
    assert sorted(decoded) == sorted(alone.paths)
    assert {g.kind for g in first.groups if g is not alone} == {"near"}
    assert all(r.pixel_digest is None for r in first.records if r.path not in alone.paths)
    decoded.clear()
    again = lookalike.scan(tree, workers=1, cache=db)
    assert decoded == [] and [g.kind for g in again.groups] == [g.kind for g in first.groups]
    # A brightened copy joins by its hash: the group is near, but its three pixel-identical
    # files still carry one pixel digest (a leakage check pairs them: an exact pair).
    ImageEnhance.Brightness(img.convert("RGB")).enhance(1.1).save(tree / "alone_bright.png")
    mixed = lookalike.scan(tree, workers=1, cache=db)
    (group,) = [g for g in mixed.groups if str(src) in g.paths]
    assert group.kind == "near" and len(group.members) == 4
    digests = {m.record.path: m.record.pixel_digest for m in group.members}
    assert digests.pop(str(tree / "alone_bright.png")) is None
    assert len(set(digests.values())) == 1 and None not in digests.values()


@pytest.mark.slow  # 0.7 s: a 12 MP JPEG decoded in full
def test_a_large_jpeg_and_its_copy_without_metadata_are_an_exact_group(scene, tmp_path):
    """Fast mode hashes large JPEGs from a reduced decode; the pixel digest still comes from
    every pixel, so a copy whose only change is its metadata is told exact."""
    import io

    buf = io.BytesIO()
    scene(3, (1600, 1200)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    (tmp_path / "photo.jpg").write_bytes(data)
    # The same JPEG stream with a comment segment after SOI: other bytes, the same pixels.
    (tmp_path / "photo_tagged.jpg").write_bytes(data[:2] + b"\xff\xfe\x00\x07tagged" + data[2:])
    result = lookalike.scan(tmp_path, workers=1)
    (group,) = result.groups
    assert group.kind == "exact" and len({m.record.digest for m in group.members}) == 2
    assert result.stats["exact_needed"] == 2  # both were reduced, then confirmed


def _text_chunk(key: str, value: str):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(key, value)
    return info


@pytest.mark.slow  # 0.6 s: several scans of a photo tree
def test_member_digests_come_from_the_cache_and_follow_a_new_member(copies_tree, tmp_path):
    root, _ = copies_tree
    tree = tmp_path / "t"
    shutil.copytree(root, tree)
    # A true PNG (the fixture's alone.png holds JPEG bytes, re-hashed by confirmation).
    Image.open(tree / "alone.png").convert("RGB").save(tree / "solo.png")
    (tree / "alone.png").unlink()
    from lookalike.store.cache import HashCache

    db = HashCache(tmp_path / "cache.sqlite")
    first = lookalike.scan(tree, method="phash", threshold=8, workers=1, cache=db)
    again = lookalike.scan(tree, method="phash", threshold=8, workers=1, cache=db)
    assert first.stats["digested"] > 0 and again.stats["digested"] == 0
    assert [g.paths for g in again.groups] == [g.paths for g in first.groups]
    assert {r.path: r.digest for r in again.records} == {r.path: r.digest for r in first.records}
    # A copy of the lone photo makes it a member: only those two are read for a digest.
    shutil.copy(tree / "solo.png", tree / "solo_copy.png")
    third = lookalike.scan(tree, method="phash", threshold=8, workers=1, cache=db)
    assert third.stats["digested"] == 2
    pair = [g for g in third.groups if str(tree / "solo.png") in g.paths]
    assert len(pair) == 1 and pair[0].kind == "exact"
    assert all(m.record.digest == _sha(m.record.path) for m in pair[0].members)


def test_a_member_changed_after_hashing_becomes_an_error(copies_tree, tmp_path, monkeypatch):
    from lookalike import pipeline

    root, _ = copies_tree
    tree = tmp_path / "t"
    shutil.copytree(root, tree)
    victim = tree / "set1" / "half1.png"
    real = pipeline._digest_members

    def edit_then_digest(*args, **kwargs):
        victim.write_bytes(victim.read_bytes() + b"\0")  # changed between hash and digest
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_digest_members", edit_then_digest)
    result = lookalike.scan(tree, method="phash", threshold=8, workers=1)
    assert [(e.path, e.error) for e in result.errors] == [(str(victim), "changed-during-scan")]
    assert str(victim) not in {r.path for r in result.records}
    group = next(g for g in result.groups if str(tree / "set1" / "orig1.png") in g.paths)
    assert str(victim) not in group.paths and len(group) == 3


@pytest.mark.slow  # 1 s: several scans of a photo tree
def test_a_rescan_searches_only_new_hash_values_and_groups_like_a_fresh_scan(copies_tree,
                                                                              tmp_path, scene):
    from lookalike.store.cache import HashCache

    root, _ = copies_tree
    tree = tmp_path / "t"
    shutil.copytree(root, tree)
    db = tmp_path / "cache.sqlite"

    # One segment per image (no flips/turns), so that hash values and searched codes agree.
    plain = {"threshold": 8, "invariant": "none"}

    def scan(**kw):
        with HashCache(db) as cache:
            return lookalike.scan(tree, method="phash", workers=1, cache=cache,
                                  **{**plain, **kw})

    def shape(result):
        return [(g.kind, g.representative, [(m.record.path, m.distance) for m in g.members])
                for g in result.groups]

    def fresh(**kw):  # no cache: every hash value searched
        return shape(lookalike.scan(tree, method="phash", workers=1, **{**plain, **kw}))

    cold = scan()
    values = {r.hash.value for r in cold.records}
    assert cold.stats["codes_new"] == len(values) and shape(cold) == fresh()
    warm = scan()
    assert warm.stats["codes_new"] == 0 and shape(warm) == shape(cold)
    # Other settings (another radius) start from nothing.
    assert scan(threshold=4).stats["codes_new"] == len(values)
    # A changed file and a new one: only their hash values are searched.
    shutil.copy(tree / "set2" / "orig2.png", tree / "alone.png")
    scene(40).save(tree / "new.png")
    changed = scan()
    assert changed.stats["hashed"] == 2
    assert changed.stats["codes_new"] == 1  # alone.png is a copy: its value is not new
    assert shape(changed) == fresh()
    assert any({str(tree / "alone.png"), str(tree / "set2" / "orig2.png")} <= set(g.paths)
               for g in changed.groups)
    # Files removed: their values' edges are dropped, nothing is searched.
    shutil.rmtree(tree / "set1")
    removed = scan()
    assert removed.stats["codes_new"] == 0 and shape(removed) == fresh()
    assert not any(str(tree / "set1") in p for g in removed.groups for p in g.paths)


def test_the_pool_grows_when_the_confirmation_pass_needs_more_workers():
    from lookalike import pipeline
    from lookalike.config import ScanConfig

    pool = pipeline._Pool(ScanConfig(workers=2), None, "local", None)
    try:
        assert pool.get(1).workers == 1  # one new file: one worker process
        assert pool.get(50).workers == 2  # then many files to confirm: a bigger pool
        assert pool.get(3).workers == 2  # never smaller again
    finally:
        pool.close()


@pytest.mark.slow  # 0.7 s: several scans of a photo tree
def test_edges_stored_for_other_files_never_change_the_groups(copies_tree, tmp_path):
    # The stored edges belong to hash values, not to files: whatever scan of these inputs
    # wrote them (another tree under the same name, another program), the groups are those
    # of a fresh scan.
    from lookalike.store.cache import HashCache

    root, _ = copies_tree
    tree = tmp_path / "t"
    db = tmp_path / "cache.sqlite"
    sets = sorted(p.name for p in root.iterdir() if p.is_dir())
    for keep in (sets[:2], sets[1:], sets):
        if tree.exists():
            shutil.rmtree(tree)
        for name in keep:
            shutil.copytree(root / name, tree / name)
        with HashCache(db) as cache:
            got = lookalike.scan(tree, method="phash", threshold=8, workers=1, cache=cache)
        want = lookalike.scan(tree, method="phash", threshold=8, workers=1)
        assert [g.paths for g in got.groups] == [g.paths for g in want.groups]
        assert got.groups


@pytest.mark.parametrize("damage", ["codes cut", "pairs cut", "pair past the end",
                                    "a code changed", "a pair changed"])
def test_a_damaged_edges_row_is_searched_afresh(copies_tree, tmp_path, damage):
    # A stored row that no longer parses or no longer holds what was written (a bit-rotted
    # or hand-edited cache) is as good as none: no traceback, the groups of a fresh scan,
    # and a good row stored in its place. An unchanged set of codes is recognised by its
    # fingerprint, without reading them: a changed code must not pass for it.
    import sqlite3
    from array import array

    from lookalike.store.cache import HashCache

    root, _ = copies_tree
    db = tmp_path / "cache.sqlite"
    with HashCache(db) as cache:
        lookalike.scan(root, workers=1, cache=cache)
    con = sqlite3.connect(db)
    codes, pairs = con.execute("SELECT codes, pairs FROM edge_sets").fetchone()
    assert pairs, "the tree's copies make pairs"
    first_pair = array("I", pairs[:8])
    if damage == "codes cut":
        codes = codes[:-3]
    elif damage == "pairs cut":
        pairs = pairs[:-2]
    elif damage == "pair past the end":
        pairs = pairs + array("I", [len(codes), 0]).tobytes()
    elif damage == "a code changed":  # the first code of the first pair, one bit flipped
        at = first_pair[0] * 32
        codes = codes[:at] + bytes([codes[at] ^ 1]) + codes[at + 1:]
    else:  # the first pair's second end moved to its first: a pair no more
        pairs = array("I", [first_pair[0], first_pair[0]]).tobytes() + pairs[8:]
    con.execute("UPDATE edge_sets SET codes = ?, pairs = ?", (codes, pairs))
    con.commit()
    con.close()
    with HashCache(db) as cache:
        got = lookalike.scan(root, workers=1, cache=cache)
        assert got.stats["codes_new"] > 0  # searched again
    want = lookalike.scan(root, workers=1)
    assert [g.paths for g in got.groups] == [g.paths for g in want.groups] and want.groups
    with HashCache(db) as cache:
        assert lookalike.scan(root, workers=1, cache=cache).stats["codes_new"] == 0


def test_star_groups_are_rebuilt_from_every_record_when_a_leader_changed(tmp_path):
    # L-M and M-X are within the threshold, L-X is not: star grouping puts M with L and
    # leaves X alone. If L changed after hashing, M and X must form a group.
    import os

    from lookalike import pipeline
    from lookalike.config import ScanConfig
    from lookalike.grouping.edges import record_edges
    from lookalike.grouping.groups import assemble_groups, cluster_records
    from lookalike.inputs.walk import FileEntry
    from lookalike.model import Hash, ImageRecord

    config = ScanConfig(method="dhash", hash_size=8, threshold=3, grouping="star")

    def record(name, hex_hash, side):
        path = tmp_path / name
        path.write_bytes(name.encode() * 10)
        st = path.stat()
        return ImageRecord(path=str(path), size_bytes=st.st_size, mtime_ns=st.st_mtime_ns,
                           width=side, height=side, format="PNG", digest=None,
                           hash=Hash.from_hex(hex_hash, method="dhash", nbits=64))

    recs = [record("L.png", "ff00", 900), record("M.png", "ff07", 500),
            record("X.png", "ff3f", 400)]
    clusters = cluster_records(recs, config.threshold, config.grouping)
    groups = assemble_groups(recs, clusters)
    assert [[os.path.basename(p) for p in g.paths] for g in groups] == [["L.png", "M.png"]]
    os.utime(recs[0].path, ns=(recs[0].mtime_ns + 10**9,) * 2)  # L is edited
    edges = record_edges(recs, config.threshold)
    listed = {r.path: FileEntry(r.path, r.size_bytes, r.mtime_ns, str(tmp_path)) for r in recs}
    groups, kept, problems, _ = pipeline._digest_members(
        recs, clusters, edges, {}, listed, config, None)
    assert [(os.path.basename(p.path), p.error) for p in problems] == [
        ("L.png", "changed-during-scan")]
    assert [[os.path.basename(p) for p in g.paths] for g in groups] == [["M.png", "X.png"]]
    assert [os.path.basename(r.path) for r in kept] == ["M.png", "X.png"]


def test_read_regular_says_what_a_non_file_is(tmp_path):
    # A file swapped for a folder during a scan was called "a FIFO, socket or device".
    from lookalike.inputs.read import Refused, read_regular

    (tmp_path / "was_a_file.jpg").mkdir()
    with pytest.raises(Refused, match=r"^a folder, not a regular file") as info:
        read_regular(str(tmp_path / "was_a_file.jpg"), 1 << 20)
    assert info.value.reason == "not-a-regular-file"
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(Refused, match=r"^a FIFO, socket or device"):
        read_regular(str(tmp_path / "pipe.jpg"), 1 << 20)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_bad_file_reached_through_overlapping_roots_is_reported_once(tmp_path, scene):
    """Images reached twice (a folder and its subfolder, a file and its folder) were listed
    once, their problems once per root: two or three lines for one FIFO, errors counted
    twice."""
    folder = tmp_path / "fs"
    folder.mkdir()
    scene(1).save(folder / "ok.png")
    os.mkfifo(folder / "pipe.jpg")
    os.symlink("nowhere.jpg", folder / "broken.jpg")
    for roots in ([folder, f"{folder}/"], [folder / "pipe.jpg", f"{folder}/./pipe.jpg", folder]):
        result = lookalike.scan(roots, workers=1, follow_symlinks=True)
        assert sorted((os.path.basename(p.path), p.error) for p in result.errors) == [
            ("broken.jpg", "broken-symlink"), ("pipe.jpg", "not-a-regular-file")]
        assert result.stats["errors"] == 2 and len(result.records) == 1
    # A folder given twice is one root (the report listed it twice, so did the journal).
    result = lookalike.scan([folder, folder / "pipe.jpg", f"{folder}/", folder], workers=1)
    assert result.roots == [str(folder), str(folder / "pipe.jpg")]


def test_a_file_swapped_between_hashing_and_digesting_is_changed_not_digested(
        tmp_path, scene, monkeypatch):
    # Found by the files-changing review: a group member swapped for another picture of the
    # same size and mtime between hashing and digesting got the old hash and the new bytes'
    # digest, and apply then removed the new picture as a copy.
    import lookalike
    from lookalike import pipeline

    x, y = scene(1, (64, 48)), scene(2, (64, 48))
    root = tmp_path / "data"
    root.mkdir()
    x.save(root / "a.bmp")
    x.save(root / "b.bmp")
    y.save(tmp_path / "y.bmp")
    real = pipeline.digest_files

    def swap_first(records, workers, *listed):
        # Written in place, the same inode: only the change time tells.
        st = os.stat(root / "b.bmp")
        with open(root / "b.bmp", "r+b") as fh:
            fh.write((tmp_path / "y.bmp").read_bytes())
        os.utime(root / "b.bmp", ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(root / "b.bmp").st_ino == st.st_ino
        monkeypatch.setattr(pipeline, "digest_files", real)
        return real(records, workers, *listed)

    monkeypatch.setattr(pipeline, "digest_files", swap_first)
    result = lookalike.scan(root, workers=1)
    assert not result.groups
    assert [(os.path.basename(p.path), p.error) for p in result.errors] == [
        ("b.bmp", "changed-during-scan")]


def test_a_file_swapped_for_a_link_after_the_walk_is_not_hashed_under_its_name(tmp_path,
                                                                               scene):
    # Found by the files-changing review: the worker followed a symbolic (or hard) link put
    # in a file's place after the walk, and two names of one file became an exact group.
    from lookalike.config import ScanConfig
    from lookalike.inputs.walk import iter_files
    from lookalike.worker import hash_file

    scene(1).save(tmp_path / "pic0.png")
    scene(2).save(tmp_path / "pic1.png")
    entries = {e.path: e for e in iter_files([str(tmp_path)])}
    for link in (os.symlink, os.link):
        os.unlink(tmp_path / "pic1.png")
        link(tmp_path / "pic0.png", tmp_path / "pic1.png")
        out = hash_file(entries[str(tmp_path / "pic1.png")], ScanConfig(workers=1))
        assert getattr(out, "error", None) == "changed-during-scan", out
