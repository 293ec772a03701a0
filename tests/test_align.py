"""Verification of embedding matches (lookalike.imaging.align) on real photos: geometric
copies align and hash alike; another moment of a scene, another photo in the same window
frame, and flat pictures do not pass."""

from __future__ import annotations

import pytest
from PIL import Image

from lookalike.analysis.calibrate_embed import EDITS
from lookalike.imaging.align import MAX_DISTANCE, aligned_distance, features
from lookalike.imaging.decode import Picture

pytest.importorskip("cv2")


def _features(img: Image.Image):
    return features(Picture.from_pil(img.convert("RGB")))


def _framed(img: Image.Image) -> Image.Image:
    """``img`` inside a window frame, as calibrate --embed makes a screenshot-like copy."""
    return dict(EDITS)["screenshot"](img)


def test_geometric_copies_of_real_photos_verify(rgb_photos):
    # Photos with detail everywhere; on a star field (hubble_deep_field) a rotated copy can
    # land a few bits beyond MAX_DISTANCE after resampling.
    chosen = [p for p in rgb_photos if p.stem in ("astronaut", "chelsea", "motorcycle_left")]
    assert len(chosen) == 3
    for path in chosen:
        img = Image.open(path).convert("RGB")
        original = _features(img)
        for name, edit in EDITS:
            copy = edit(img)
            for a, b in ((original, _features(copy)), (_features(copy), original)):
                distance = aligned_distance(a, b)
                assert distance is not None and distance <= MAX_DISTANCE, (path.name, name)


def test_another_moment_of_the_scene_does_not_verify(rgb_photos):
    img = Image.open(rgb_photos[0]).convert("RGB")
    w, h = img.size
    later = img.copy()
    later.paste(img.crop((w // 10, h // 10, w // 2, h // 2)), (w // 2, h // 3))
    distance = aligned_distance(_features(img), _features(later))
    assert distance is None or distance > MAX_DISTANCE


def test_other_photos_in_one_window_frame_do_not_verify(rgb_photos):
    one, other = (Image.open(p).convert("RGB").resize((400, 300)) for p in rgb_photos[:2])
    distance = aligned_distance(_features(_framed(one)), _features(_framed(other)))
    assert distance is None or distance > MAX_DISTANCE


def test_different_photos_and_flat_pictures_do_not_verify(rgb_photos):
    one, other = (Image.open(p).convert("RGB") for p in rgb_photos[:2])
    distance = aligned_distance(_features(one), _features(other))
    assert distance is None or distance > MAX_DISTANCE
    flat = _features(Image.new("RGB", (300, 200), (90, 90, 90)))
    assert aligned_distance(flat, flat) is None  # no keypoints: nothing to align


def test_slivers_have_no_keypoints_and_never_verify():
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 256, (2, 1200, 3), dtype=np.uint8)
    line = _features(Image.fromarray(pixels))
    assert len(line.points) == 0
    assert aligned_distance(line, _features(Image.fromarray(pixels[:, :1100]))) is None
