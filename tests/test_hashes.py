"""Hash algorithms: bit-for-bit equality with ImageHash on real photos, and invariants."""

from __future__ import annotations

from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.imaging.decode import Picture, decode_bytes
from lookalike.imaging.hashes import METHODS, compute_hash
from lookalike.model import Hash

IMAGEHASH_FUNCS = {
    "ahash": imagehash.average_hash,
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "dhash-v": imagehash.dhash_vertical,
    "whash": imagehash.whash,
}


def folklore_dhash_z(image: Image.Image, hash_size: int = 8) -> imagehash.ImageHash:
    """The z-transform recipe as users copy it, run with ImageHash itself."""
    image = image.convert("L").resize((hash_size, hash_size), Image.Resampling.LANCZOS)
    data = np.asarray(image).ravel()
    quantiles = np.arange(100)
    values = np.percentile(data, quantiles)
    z = (np.interp(data, values, quantiles) / 100 * 255).astype(np.uint8)
    image.putdata(z.tolist())
    return imagehash.dhash(image, hash_size)


def _pic(path: Path) -> Picture:
    return decode_bytes(path.read_bytes(), mode="full")[0]


@pytest.mark.parametrize("hash_size", [8, 16])
@pytest.mark.parametrize("method", sorted(IMAGEHASH_FUNCS))
def test_hash_equals_imagehash_on_real_photos(photos, method, hash_size):
    func = IMAGEHASH_FUNCS[method]
    for path in photos:
        ours = compute_hash(_pic(path), method, hash_size)
        ref = func(Image.open(path), hash_size)
        assert str(ours) == str(ref), f"{method}/{hash_size} differs on {path.name}"
        assert ours.nbits == len(ref)


@pytest.mark.parametrize("binbits", [3, 4])
def test_colorhash_equals_imagehash_on_real_photos(photos, binbits):
    for path in photos:
        ours = compute_hash(_pic(path), "colorhash", binbits)
        assert str(ours) == str(imagehash.colorhash(Image.open(path), binbits)), path.name


@pytest.mark.slow
def test_crop_resistant_equals_imagehash_on_real_photos(rgb_photos):
    for path in rgb_photos[:6]:
        ours = compute_hash(_pic(path), "crop-resistant", 8)
        ref = imagehash.crop_resistant_hash(Image.open(path))
        assert str(ours) == str(ref), path.name


@pytest.mark.parametrize("hash_size", [8, 16])
def test_dhash_z_equals_folklore_recipe_run_with_imagehash(photos, hash_size):
    for path in photos:
        ours = compute_hash(_pic(path), "dhash-z", hash_size)
        assert str(ours) == str(folklore_dhash_z(Image.open(path), hash_size)), path.name


def test_hash_image_api_matches_imagehash_for_paths_and_pil_images(photos):
    path = photos[0]
    ref = str(imagehash.phash(Image.open(path)))
    assert str(lookalike.hash_image(path, "phash")) == ref
    assert str(lookalike.hash_image(Image.open(path), "phash")) == ref


@pytest.mark.parametrize(("method", "size"), [("phash", 33), ("dhash", 1), ("whash", 12),
                                             ("colorhash", 40)])
def test_hash_image_refuses_the_sizes_a_scan_refuses(photos, method, size):
    """It hashed phash 33 or colorhash 40, which no scan accepts, and raised a bare
    ValueError for size 1."""
    with pytest.raises(lookalike.ConfigError, match=f"hash_size {size} is out of range"):
        lookalike.hash_image(photos[0], method, size)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_the_flat_codes_table_is_what_every_method_gives_flat_pictures(name):
    """model.flat_codes is a table (the warm re-scan must not load Pillow or NumPy to build
    it): this keeps it true. Every flat picture, of any colour, size or mode, hashes to one
    of its codes; and pdq and colorhash, which have none, are why."""
    from lookalike.model import flat_codes

    m = METHODS[name]
    sizes = sorted({m.default_size, *(() if m.sizes else (8, 16))} & set(m.sizes or range(99)))
    for size in sizes:
        seen: set[int] = set()
        for level in (0, 1, 128, 255):
            for mode, colour in (("L", level), ("RGB", (level, 255 - level, level // 2))):
                for wh in ((300, 200), (7, 3)):
                    pic = Picture.from_pil(Image.new(mode, wh, colour))
                    seen.update(m.hash(pic, size, "dihedral", True).segments)
        nbits = m.nbits(size)
        if name == "colorhash":
            assert flat_codes(name, nbits) == frozenset() and len(seen) > 1
        elif name == "pdq":  # black and tiny pictures hash to 0, other flat ones arbitrarily
            assert flat_codes(name, nbits) == frozenset((0,)) and 0 in seen
            assert m.hash(Picture.from_pil(Image.new("RGB", (3, 40), (200, 10, 90))),
                          size).segments == (0,)
        else:
            assert seen <= flat_codes(name, nbits), (size, sorted(map(hex, seen)))


def test_hex_round_trips_and_distance_matches_imagehash(photos):
    a_img, b_img = Image.open(photos[0]), Image.open(photos[1])
    a = lookalike.hash_image(a_img, "dhash", 16)
    b = lookalike.hash_image(b_img, "dhash", 16)
    assert Hash.from_hex(str(a), method="dhash", nbits=256) == a
    assert a - b == imagehash.dhash(a_img, 16) - imagehash.dhash(b_img, 16)
    assert imagehash.hex_to_hash(str(a)) == imagehash.dhash(a_img, 16)


def test_hashes_of_different_methods_or_sizes_cannot_be_compared(photos):
    img = Image.open(photos[0])
    with pytest.raises(TypeError):
        lookalike.hash_image(img, "dhash", 8) - lookalike.hash_image(img, "dhash", 16)
    with pytest.raises(TypeError):
        lookalike.hash_image(img, "dhash") - lookalike.hash_image(img, "ahash")


@pytest.mark.parametrize("method", ["ahash", "phash", "dhash", "dhash-z", "whash"])
def test_small_rotation_stays_close_and_quarter_turn_moves_far(rgb_photos, method):
    img = Image.open(rgb_photos[0])
    # 64-bit hashes (dhash-z's default is 16, i.e. 256 bits): the bounds below are for 8.
    h = lookalike.hash_image(img, method, 8)
    tilted = lookalike.hash_image(img.rotate(1, resample=Image.Resampling.BILINEAR), method, 8)
    turned = lookalike.hash_image(img.rotate(90, expand=True), method, 8)
    assert h - tilted <= 10
    assert h - turned > 12


def test_resized_and_reencoded_copy_stays_within_a_few_bits(rgb_photos, tmp_path):
    for path in rgb_photos[:5]:
        img = Image.open(path)
        small = img.resize((img.width // 2, img.height // 2), Image.Resampling.BICUBIC)
        small.save(tmp_path / "copy.jpg", quality=75)
        for method in ("phash", "dhash", "dhash-z"):
            a = lookalike.hash_image(path, method, 8)
            b = lookalike.hash_image(tmp_path / "copy.jpg", method, 8)
            assert a - b <= 8, (method, path.name, a - b)


def test_every_method_hashes_tiny_and_odd_images(scene):
    for img in (scene(1, (3, 2)), scene(2, (1, 1)).convert("L"), scene(3, (400, 7))):
        for name, m in METHODS.items():
            h = m.hash(Picture.from_pil(img))
            assert h.nbits == m.nbits(m.default_size), name


def test_bad_hash_sizes_are_rejected_with_a_hint():
    img = Picture.from_pil(Image.new("RGB", (32, 32)))
    with pytest.raises(ValueError, match="power-of-two"):
        compute_hash(img, "whash", 6)
    with pytest.raises(ValueError, match=">= 2"):
        compute_hash(img, "dhash", 1)
    with pytest.raises(lookalike.ConfigError, match="choose one of"):
        compute_hash(img, "md5")


@pytest.mark.parametrize("n", [1, 2, 4, 9, 64, 81, 256, 289, 1024])
def test_ztransform_percentiles_equal_numpy_bit_for_bit(n):
    # dhash-z's percentiles are computed without np.percentile (see hashes._percentiles):
    # every float must still be NumPy's, on random, few-valued (many ties) and constant grids.
    from lookalike.imaging.hashes import _percentiles

    rng = np.random.default_rng(n)
    grids = [rng.integers(0, 256, n), rng.integers(0, 3, n), np.full(n, 77),
             rng.integers(120, 126, n), np.sort(rng.integers(0, 256, n))[::-1]]
    for grid in grids:
        data = grid.astype(np.float64)
        assert np.array_equal(_percentiles(data), np.percentile(data, np.arange(100)))
