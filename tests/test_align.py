"""Verification of embedding matches (lookalike.imaging.align) on real photos: geometric
copies align and hash alike; another moment of a scene, another photo in the same window
frame, and flat pictures do not pass."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from lookalike.imaging.align import MAX_DISTANCE, aligned_distance, features
from lookalike.imaging.decode import Picture

pytest.importorskip("cv2")


def _features(img: Image.Image):
    return features(Picture.from_pil(img.convert("RGB")))


def _framed(img: Image.Image) -> Image.Image:
    """``img`` inside a window frame (title bar, sidebar, status bar), like a screenshot."""
    w, h = img.size
    canvas = Image.new("RGB", (round(w * 1.5), round(h * 1.5)), (236, 236, 236))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, canvas.width, h // 10), fill=(60, 60, 60))
    draw.rectangle((0, h // 10, w // 6, canvas.height), fill=(222, 222, 222))
    for k in range(5):
        y = h // 10 + (k + 1) * h // 12
        draw.rectangle((w // 40, y, w // 8, y + h // 80), fill=(170, 170, 170))
    for k, colour in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
        cx, r = h // 20 + k * h // 15, h // 50
        draw.ellipse((cx - r, h // 20 - r, cx + r, h // 20 + r), fill=colour)
    canvas.paste(img.resize((w, h)), (w // 5, h // 6))
    return canvas


def _edits(img: Image.Image) -> dict[str, Image.Image]:
    w, h = img.size
    padded = Image.new("RGB", (w, round(h * 1.3)), (0, 0, 0))
    padded.paste(img, (0, round(h * 0.15)))
    captioned = img.copy()
    draw = ImageDraw.Draw(captioned)
    draw.rectangle((0, round(h * 0.85), w, h), fill=(255, 255, 255))
    draw.text((w // 10, round(h * 0.88)), "WHEN THE COPY HAS A CAPTION", fill=(0, 0, 0))
    return {
        "crop 5% a side": img.crop((w // 20, h // 20, w - w // 20, h - h // 20)),
        "corner crop 15%": img.crop((0, 0, round(w * 0.85), round(h * 0.85))),
        "rotated 5 degrees": img.rotate(5, resample=Image.Resampling.BICUBIC),
        "letterboxed": padded,
        "screenshot": _framed(img),
        "caption bar": captioned,
    }


def test_geometric_copies_of_real_photos_verify(rgb_photos):
    # Photos with detail everywhere; on a star field (hubble_deep_field) a rotated copy can
    # land a few bits beyond MAX_DISTANCE after resampling.
    chosen = [p for p in rgb_photos if p.stem in ("astronaut", "chelsea", "motorcycle_left")]
    assert len(chosen) == 3
    for path in chosen:
        img = Image.open(path).convert("RGB")
        original = _features(img)
        for name, copy in _edits(img).items():
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
