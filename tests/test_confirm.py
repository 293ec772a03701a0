"""Exact confirmation of fast-decoded images that may have a match (lookalike.grouping.confirm)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

import lookalike
from conftest import loaded_by_command
from lookalike.config import FAST_REDUCE_FROM_SIDE, ScanConfig
from lookalike.grouping.confirm import full_config, margin, may_be_reduced, needs_exact_hash
from lookalike.imaging.decode import decode_bytes
from lookalike.imaging.hashes import get_method
from lookalike.model import Hash, ImageRecord
from lookalike.store.cache import HashCache
from lookalike.worker import hash_data


def _record(path: str, hex_hash: str, fmt: str = "JPEG", size: tuple[int, int] = (1600, 1200),
            nbits: int = 64) -> ImageRecord:
    return ImageRecord(path=path, size_bytes=1, mtime_ns=0, width=size[0], height=size[1],
                       format=fmt, hash=Hash.from_hex(hex_hash, method="dhash-z", nbits=nbits),
                       digest=path)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_margin_grows_with_the_hash():
    assert margin(64) == 4
    assert margin(256) == 16
    assert margin(16) == 4  # never below 4 bits


@pytest.mark.parametrize("size", [(300, 200), (511, 900), (512, 512), (700, 1400),
                                  (1023, 2000), (1024, 1024), (2000, 1500), (4000, 600),
                                  (6000, 1100)])
@pytest.mark.slow
def test_may_be_reduced_covers_every_image_fast_decoding_reduces(scene, size):
    data = _jpeg(scene(1, size))
    pic = decode_bytes(data, mode="fast")[0]
    rec = hash_data(data, path="x.jpg", size_bytes=len(data), mtime_ns=0, source="",
                    config=ScanConfig(hash_size=8))
    assert isinstance(rec, ImageRecord)
    if pic.reduced:
        assert may_be_reduced(rec)
    # Only from a 1024 px shorter side (scale 1/4 or less): at 1/2, libjpeg saves little.
    assert pic.reduced == (min(size) >= FAST_REDUCE_FROM_SIDE == 1024)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF", "BMP"])
def test_other_formats_decode_the_same_in_both_modes(scene, fmt):
    img = scene(2, (1600, 1200))
    buf = io.BytesIO()
    img.save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    fast, full = (decode_bytes(buf.getvalue(), mode=m)[0] for m in ("fast", "full"))
    assert not fast.reduced
    for method in ("dhash-z", "phash", "pdq"):
        m = get_method(method)
        assert m.hash(fast) == m.hash(full)
    assert not may_be_reduced(_record("x", "0" * 16, fmt, (1600, 1200)))


def test_needs_exact_hash_picks_reduced_images_with_near_neighbours():
    fast = ScanConfig(hash_size=8, threshold=0)
    recs = [
        _record("a.jpg", "ffff0000ffff0000"),
        _record("b.jpg", "ffff0000ffff000f"),  # 4 bits from a: within 0 + margin(64)
        _record("c.jpg", "0f0f0f0f0f0f0f0f"),  # far from everything
        _record("d.png", "ffff0000ffff0001", fmt="PNG"),  # near, but decoded exactly
        _record("e.jpg", "ffff0000ffff0003", size=(900, 1200)),  # near, but too small
    ]
    assert needs_exact_hash(recs, fast) == [0, 1]
    assert needs_exact_hash(recs, full_config(fast)) == []
    far = [_record("a.jpg", "ffff0000ffff0000"), _record("b.jpg", "ffff0000ffff00ff")]
    assert needs_exact_hash(far, fast) == []  # 8 bits apart: beyond 0 + 4
    # A reduced picture that looks flat joins nothing by its hash (so it is never "near"),
    # yet may show structure in full: it is re-hashed too; a small one never is reduced.
    blank = [_record("/b.jpg", "0000000000000000"), _record("/p.png", "0000000000000000",
                                                            "PNG")]
    assert needs_exact_hash([*far, *blank], fast) == [2]


def test_a_threshold_near_the_hash_size_searches_no_wider_than_the_hash():
    # threshold + margin may exceed the bits; a stored search at that radius must still be
    # usable by the next scan (it once raised "max_distance exceeds nbits" on re-scans).
    from lookalike.grouping.edges import record_edges

    # The widest threshold allowed (half the bits) plus the margin passes 4-bit hashes.
    wide = ScanConfig(method="dhash", hash_size=2, threshold=2)
    recs = [_record("a.jpg", "c", nbits=4), _record("b.jpg", "3", nbits=4)]
    asked = []

    def edges_at(radius):  # as a re-scan does: from the edges of an earlier scan
        asked.append(radius)
        return record_edges(recs, radius, record_edges(recs[:1], radius))

    assert needs_exact_hash(recs, wide, edges_at) == needs_exact_hash(recs, wide) == [0, 1]
    assert asked == [4]


@pytest.fixture(scope="module")
def twins(tmp_path_factory, photos) -> tuple[Path, list[tuple[Path, Path]]]:
    """Each real photo as a large JPEG and as a PNG of that JPEG's fully decoded pixels.

    Decoded in full, each twin pair is pixel-identical, so every hash matches at distance
    0; decoded fast, the JPEG is reduced and its hash drifts."""
    root = tmp_path_factory.mktemp("twins")
    pairs = []
    for src in photos[:10]:
        img = Image.open(src).convert("RGB")
        scale = 1100 / min(img.size)
        big = img.resize((round(img.width * scale), round(img.height * scale)),
                         Image.Resampling.BICUBIC)
        jpg = root / f"{src.stem}.jpg"
        big.save(jpg, quality=90)
        png = root / f"{src.stem}.png"
        Image.open(jpg).save(png, compress_level=1)
        pairs.append((jpg, png))
    return root, pairs


@pytest.mark.slow  # 2 s with its fixture: twins decoded fast and in full
def test_fast_scan_finds_exactly_the_full_decode_groups(twins, tmp_path):
    root, pairs = twins
    drifted = [jpg for jpg, png in pairs
               if lookalike.hash_image(jpg, hash_size=8, decode="fast")
               != lookalike.hash_image(png, hash_size=8, decode="fast")]
    # Without confirmation these twins would be split at threshold 0: the test needs some.
    assert drifted, "no photo drifted under fast decoding; the test proves nothing"
    options = {"hash_size": 8, "threshold": 0, "workers": 2}
    full = lookalike.scan(root, decode="full", **options)
    with HashCache(tmp_path / "c.sqlite") as cache:
        fast = lookalike.scan(root, cache=cache, **options)
        again = lookalike.scan(root, cache=cache, **options)

    def groups(result):
        return sorted(sorted(m.record.path for m in g.members) for g in result.groups)

    assert groups(fast) == groups(full) == groups(again)
    joined = {p for g in fast.groups for m in g.members for p in [m.record.path]}
    assert {str(p) for pair in pairs for p in pair} <= joined
    assert fast.stats["exact_needed"] >= len(drifted)
    assert fast.stats["exact_hashed"] == fast.stats["exact_needed"]
    assert fast.stats["exact_failed"] == 0
    # The warm re-scan takes the exact hashes from the cache: nothing is decoded again.
    assert again.stats["hashed"] == 0 and again.stats["exact_hashed"] == 0
    exact = {r.path: r.hash for r in fast.records}
    for jpg in drifted:
        # the first segment is the plain hash (the others: its flips, turns, trimmed content)
        plain = lookalike.hash_image(jpg, hash_size=8, decode="full")
        assert exact[str(jpg)].segments[0] == plain.value
    # ...and the edges of the last scan, with the same images confirmed: no search at all.
    assert again.stats["codes_new"] == 0 and fast.stats["codes_new"] > 0
    assert again.stats["exact_needed"] == fast.stats["exact_needed"]
    assert {r.path: r.hash for r in again.records} == exact


@pytest.mark.slow
def test_a_warm_rescan_of_confirmed_jpegs_imports_no_numpy(twins, tmp_path):
    # The confirmation search (threshold + margin) starts from the stored edges too.
    root, _ = twins
    db, out = tmp_path / "c.sqlite", tmp_path / "r.json"
    argv = ["scan", str(root), "-q", "-j", "1", "--hash-size", "8", "-t", "0", "--cache",
            str(db), "-o", str(out)]
    for _ in range(2):  # cold, then a warm run in a fresh interpreter
        loaded = loaded_by_command(argv, ("numpy", "PIL"))
    stats = json.loads(out.read_text())["stats"]
    assert loaded == [] and stats["codes_new"] == 0 and stats["exact_needed"] > 0


def test_full_decode_scans_and_small_images_skip_confirmation(photo_tree, scene, tmp_path):
    full = lookalike.scan(photo_tree, hash_size=8, threshold=4, decode="full", workers=1)
    assert full.stats["exact_needed"] == 0  # already exact
    for k in range(4):
        scene(k % 2).save(tmp_path / f"s{k}.jpg", quality=90 - k)
    small = lookalike.scan(tmp_path, hash_size=8, threshold=4, workers=1)
    assert len(small.groups) == 2
    assert small.stats["exact_needed"] == 0  # 160 x 120 JPEGs are never reduced
