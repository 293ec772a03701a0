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


def _icon(img: Image.Image, side: int, colours: int | None = None) -> Image.Image:
    """``img`` redrawn as an icon of ``side`` pixels (box-filtered; optionally paletted)."""
    out = img.convert("RGB")
    out.thumbnail((side, side), Image.Resampling.BOX)
    return out.quantize(colours).convert("RGB") if colours else out


def _stripes(colours: list[tuple[int, int, int]], side: int) -> Image.Image:
    """A flag of vertical stripes, drawn at ``side`` pixels."""
    img = Image.new("RGB", (3 * side // 2, side))
    for k, colour in enumerate(colours):
        img.paste(colour, (k * img.width // len(colours), 0, (k + 1) * img.width // len(colours),
                           side))
    return img


def test_small_renderings_match_by_their_thumbnails_and_other_pictures_do_not(photos):
    from lookalike.imaging.align import SMALL_SIDE, same_small_picture

    by_name = {p.stem: p for p in photos}
    icons = {n: Image.open(by_name[n]) for n in ("brick", "grass", "clock_motion")}
    for name, img in icons.items():
        # Their hashes are far apart (a 32 px, 64-colour redraw), but they are one picture.
        big, small = _features(_icon(img, 64)), _features(_icon(img, 32, 64))
        assert same_small_picture(big, small) is True, name
        assert same_small_picture(small, big) is True, name
        for other in icons.values():
            if other is not img:
                assert same_small_picture(big, _features(_icon(other, 32, 64))) is False
    # Flags of three stripes: the same in grey (dHash sees one picture), not in colour.
    france = _features(_stripes([(0, 35, 149), (255, 255, 255), (237, 41, 57)], 32))
    peru = _features(_stripes([(217, 16, 35), (255, 255, 255), (217, 16, 35)], 32))
    assert same_small_picture(france, peru) is False
    # Larger pictures are aligned instead: no verdict from thumbnails.
    photo = Image.open(by_name["astronaut"])
    assert same_small_picture(_features(_icon(photo, 4 * SMALL_SIDE)),
                              _features(_icon(photo, 2 * SMALL_SIDE))) is None


def _face(side: int, eyes: str) -> Image.Image:
    """An emoji-like face drawn at 256 px, resized to ``side``: dot or arc eyes."""
    from PIL import ImageDraw

    img = Image.new("RGB", (256, 256), "white")
    draw = ImageDraw.Draw(img)
    draw.ellipse((16, 16, 240, 240), fill=(255, 204, 51), outline=(120, 80, 0), width=8)
    draw.arc((64, 110, 192, 200), 20, 160, fill=(90, 50, 0), width=14)
    for x in (80, 176):
        if eyes == "dots":
            draw.ellipse((x - 12, 76, x + 12, 112), fill=(90, 50, 0))
        else:
            draw.arc((x - 20, 84, x + 20, 116), 200, 340, fill=(90, 50, 0), width=8)
    return img.resize((side, side), Image.Resampling.LANCZOS)


def test_small_faces_that_differ_in_their_eyes_or_shape_do_not_match():
    from lookalike.imaging.align import MAX_THUMB_DIFF, same_small_picture

    dots64, dots32, arcs32 = (_features(_face(64, "dots")), _features(_face(32, "dots")),
                              _features(_face(32, "arcs")))
    assert same_small_picture(dots64, dots32) is True
    # On average the two faces are close: only their eyes tell them apart.
    assert abs(dots64.thumb - arcs32.thumb).mean() <= MAX_THUMB_DIFF
    assert same_small_picture(dots64, arcs32) is False
    squashed = _features(_face(64, "dots").resize((64, 40), Image.Resampling.LANCZOS))
    assert same_small_picture(dots32, squashed) is False
