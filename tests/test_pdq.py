"""PDQ: bit-for-bit agreement with the reference (the ``pdqhash`` package) on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.imaging import pdq
from lookalike.imaging.decode import Picture
from lookalike.imaging.hashes import ORIENTATIONS, bits_to_int, compute_hash

pdqhash = pytest.importorskip("pdqhash", reason="the pdqhash package is not installed")


def _reference(img: Image.Image) -> tuple[int, int]:
    vector, quality = pdqhash.compute(np.asarray(img.convert("RGB")))
    # pdqhash lists bit 255 first, so the vector read MSB-first is the reference's hex value.
    return bits_to_int(vector.astype(bool)), quality


def test_pdq_equals_the_reference_bit_for_bit_on_real_photos(photos):
    for path in photos:
        img = Image.open(path)
        ref, ref_quality = _reference(img)
        luma = pdq.rgb_to_luma(np.asarray(img.convert("RGB")))
        dct, quality = pdq.pdq_from_luma(luma)
        assert bits_to_int(pdq.pdq_bits(dct)) == ref, path.name
        assert quality == ref_quality, path.name


def test_pdq_method_and_api_match_the_reference_with_full_decoding(photos):
    for path in photos[:6]:
        ref, ref_quality = _reference(Image.open(path))
        h = lookalike.hash_image(path, "pdq")
        assert (h.method, h.nbits, h.value) == ("pdq", 256, ref)
        assert len(str(h)) == 64  # the reference's hex format
        result = lookalike.pdq_hash(path)
        assert result.hash == h and result.quality == ref_quality


def test_dihedral_variants_are_the_reference_hashes_of_the_flipped_pictures(rgb_photos):
    # The reference's dihedral variants flip the DCT, which is exact only where the filter
    # is symmetric: at 256 x 256 a mirrored copy's hash was 20 bits from its original's
    # mirrored variant (threshold 6), so no flipped copy matched. Ours are the hashes of the
    # flipped pictures themselves, as the reference computes them.
    from lookalike.imaging.hashes import ORIENTATIONS

    base = Image.open(rgb_photos[0]).convert("RGB")
    for size in (None, (256, 256), (129, 97)):
        img = base if size is None else base.resize(size)
        want = {_reference(img if op == "identity" else img.transpose(Image.Transpose(code)))[0]
                for op, code in ORIENTATIONS.items()}
        ours = compute_hash(Picture.from_pil(img), "pdq", 16, "dihedral")
        assert set(ours.segments) == want, size
        if pdq.flips_exact(img.height, img.width):  # then also the reference's own variants
            vectors, _ = pdqhash.compute_dihedral(np.asarray(img))
            assert set(ours.segments) == {bits_to_int(v.astype(bool)) for v in vectors}


def test_dct_transforms_match_hashing_the_transformed_image(rgb_photos):
    # Exact for a 64 x 64 image, where decimation is the identity.
    img = Image.open(rgb_photos[1]).convert("RGB").resize((64, 64))
    dct, _ = pdq.pdq_from_luma(pdq.rgb_to_luma(np.asarray(img)))
    for op, code in ORIENTATIONS.items():
        if op == "identity":
            continue
        moved = np.asarray(img.transpose(Image.Transpose(code)))
        expected, _ = pdq.pdq_from_luma(pdq.rgb_to_luma(moved))
        np.testing.assert_allclose(pdq.transform_dct(dct, op), expected, atol=1e-3,
                                   err_msg=op)


def test_quality_separates_flat_images_from_photos(photos):
    flat = Image.new("RGB", (200, 150), (120, 130, 140))
    assert lookalike.pdq_hash(flat).quality == 0
    assert lookalike.pdq_hash(photos[0]).quality >= pdq.QUALITY_THRESHOLD


def test_tiny_images_get_the_zero_hash_and_zero_quality():
    result = lookalike.pdq_hash(Image.new("RGB", (4, 40), "red"))
    assert result.hash.value == 0 and result.quality == 0
    ref, quality = _reference(Image.new("RGB", (4, 40), "red"))
    assert ref == 0 and quality == 0


def test_pdq_has_one_size_only():
    with pytest.raises(lookalike.ConfigError, match="16"):
        lookalike.ScanConfig(method="pdq", hash_size=8)
    with pytest.raises(ValueError, match="16"):
        compute_hash(Picture.from_pil(Image.new("RGB", (32, 32))), "pdq", 8)
    assert lookalike.ScanConfig(method="pdq").nbits == 256


def test_a_pdq_scan_groups_flipped_and_turned_copies_at_every_size(tmp_path, scene):
    # At 256 x 256 (an even filter window) a pdq scan grouped no flipped or turned copy
    # with its original; the cache key carries the method's revision, so hashes cached
    # under the old rule are made again.
    from PIL import ImageOps

    from lookalike.config import DECODER_VERSION, ScanConfig
    from lookalike.store.cache import settings_key

    for size in ((256, 256), (320, 240), (640, 480)):
        folder = tmp_path / f"{size[0]}x{size[1]}"
        folder.mkdir()
        img = scene(7, size)
        img.save(folder / "a.png")
        ImageOps.mirror(img).save(folder / "mirror.png")
        img.rotate(90, expand=True).save(folder / "turned.png")
        img.rotate(180).save(folder / "upside_down.png")
        result = lookalike.scan(folder, method="pdq", workers=1)
        assert [len(g.members) for g in result.groups] == [4], size
    assert settings_key(ScanConfig(method="pdq")).endswith("+r1")
    assert settings_key(ScanConfig()).endswith(f"dec{DECODER_VERSION}")  # others unchanged
