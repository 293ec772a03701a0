"""Flip/rotation invariance: mirrored and rotated copies match, plain hashes do not."""

from __future__ import annotations

import pytest
from PIL import Image

import lookalike
from lookalike.grouping.groups import build_groups
from lookalike.imaging.decode import Picture, decode_bytes
from lookalike.imaging.hashes import INVARIANCES, METHODS, ORIENTATIONS, bits_to_int, compute_hash
from lookalike.model import ImageRecord

GRID_METHODS = ["ahash", "phash", "dhash", "dhash-v", "dhash-z", "whash"]


def _pic(path) -> Picture:
    return decode_bytes(path.read_bytes(), mode="fast")[0]


def _copies(src, folder):
    img = Image.open(src).convert("RGB")
    img.save(folder / "orig.png")
    img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "mirror.jpg", quality=90)
    img.transpose(Image.Transpose.ROTATE_90).save(folder / "rot90.jpg", quality=90)
    img.transpose(Image.Transpose.ROTATE_180).save(folder / "rot180.png")
    return {p.stem: p for p in folder.iterdir()}


@pytest.mark.parametrize(("method", "size", "near"), [("dhash", 8, 4), ("phash", 16, 12),
                                                      ("pdq", 16, 20)])
@pytest.mark.slow
def test_dihedral_finds_mirrored_and_rotated_copies_that_plain_hashes_miss(
        rgb_photos, tmp_path, method, size, near):
    for src in rgb_photos[:4]:
        files = _copies(src, tmp_path)
        orig = compute_hash(_pic(files["orig"]), method, size, "dihedral")
        plain = compute_hash(_pic(files["orig"]), method, size)
        for name in ("mirror", "rot90", "rot180"):
            copy = compute_hash(_pic(files[name]), method, size)
            assert plain - copy > 2 * near, (src.name, name)  # plain hashes miss them
            assert orig - copy <= near, (src.name, name)
            # Symmetric: the copy's own invariant hash finds the original as well.
            assert compute_hash(_pic(files[name]), method, size, "dihedral") - plain <= near


def test_flips_match_mirrors_only_and_rotations_match_turns_only(rgb_photos, tmp_path):
    files = _copies(rgb_photos[0], tmp_path)
    flips = compute_hash(_pic(files["orig"]), "dhash", 8, "flips")
    turns = compute_hash(_pic(files["orig"]), "dhash", 8, "rotations")
    mirror = compute_hash(_pic(files["mirror"]), "dhash", 8)
    rot90 = compute_hash(_pic(files["rot90"]), "dhash", 8)
    assert flips - mirror <= 4 < flips - rot90
    assert turns - rot90 <= 4 < turns - mirror


@pytest.mark.parametrize("method", GRID_METHODS)
def test_grid_versions_equal_hashing_the_transformed_image(rgb_photos, method):
    # The small grid is transformed instead of the image: equal up to resize rounding.
    img = Image.open(rgb_photos[2]).convert("RGB")
    versions = METHODS[method].oriented(Picture.from_pil(img), 8, INVARIANCES["dihedral"])
    for op, segs in zip(INVARIANCES["dihedral"], versions, strict=True):
        moved = img if op == "identity" else img.transpose(Image.Transpose(ORIENTATIONS[op]))
        direct = compute_hash(Picture.from_pil(moved), method, 8)
        assert bin(direct.value ^ segs[0]).count("1") <= 4, op


def test_dhash_z_shortcut_equals_hashing_each_oriented_grid(photos):
    from lookalike.imaging.hashes import _OrientedGrid, dhash_z_bits

    ops = INVARIANCES["dihedral"]
    for path in photos[:5]:
        pic = _pic(path)
        fast = METHODS["dhash-z"].oriented(pic, 16, ops)
        slow = [(bits_to_int(dhash_z_bits(_OrientedGrid(pic, op), 16)),) for op in ops]
        assert fast == slow, path.name


def test_invariant_hash_keeps_the_plain_hash_first_and_drops_repeats(photos):
    pic = _pic(photos[0])
    plain = compute_hash(pic, "dhash", 8)
    inv = compute_hash(pic, "dhash", 8, "dihedral")
    assert inv.segments[0] == plain.value
    assert len(set(inv.segments)) == len(inv.segments) <= 8
    flat = Picture.from_pil(Image.new("RGB", (64, 64), "grey"))
    assert len(compute_hash(flat, "dhash", 8, "dihedral").segments) == 1  # all versions equal
    assert compute_hash(pic, "colorhash", 3, "dihedral") == compute_hash(pic, "colorhash", 3)


def test_unknown_invariance_is_a_config_error(photos):
    with pytest.raises(lookalike.ConfigError, match="dihedral"):
        compute_hash(_pic(photos[0]), "dhash", 8, "sideways")
    with pytest.raises(lookalike.ConfigError, match="invariant must be"):
        lookalike.ScanConfig(invariant="sideways")  # type: ignore[arg-type]


def test_crop_resistant_invariance_uses_the_transformed_picture(rgb_photos):
    img = Image.open(rgb_photos[0]).convert("RGB").resize((200, 150))
    inv = compute_hash(Picture.from_pil(img), "crop-resistant", 8, "flips")
    mirror = compute_hash(Picture.from_pil(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
                          "crop-resistant", 8)
    assert inv - mirror == 0


def _record(path, h) -> ImageRecord:
    return ImageRecord(path=str(path), size_bytes=1, mtime_ns=0, width=1, height=1,
                       format="PNG", hash=h, digest=str(path))


def test_grouping_puts_mirrored_and_rotated_copies_with_their_original(rgb_photos, tmp_path):
    records = []
    for k, src in enumerate(rgb_photos[:3]):
        folder = tmp_path / f"s{k}"
        folder.mkdir()
        for p in _copies(src, folder).values():
            records.append(_record(p, compute_hash(_pic(p), "dhash", 8, "dihedral")))
    groups = build_groups(records, max_distance=4)
    assert sorted(len(g) for g in groups) == [4, 4, 4]
    for g in groups:
        assert len({p.rsplit("/", 2)[1] for p in g.paths}) == 1  # one source per group
    plain = [_record(r.path, compute_hash(_pic(tmp_path / r.path), "dhash", 8))
             for r in records]
    assert not any(len(g) == 4 for g in build_groups(plain, max_distance=4))


def test_scan_with_invariant_groups_flipped_copies(rgb_photos, tmp_path):
    _copies(rgb_photos[0], tmp_path)
    result = lookalike.scan(tmp_path, method="dhash", threshold=4, invariant="dihedral",
                            workers=1)
    assert [len(g) for g in result.groups] == [4]
    # the default: invariant too; invariant="none" sees the copies as other pictures
    assert [len(g) for g in lookalike.scan(tmp_path, method="dhash", threshold=4,
                                           workers=1).groups] == [4]
    assert len(lookalike.scan(tmp_path, method="dhash", threshold=4, invariant="none",
                              workers=1).groups) == 0
