"""Border trimming: padded, letterboxed and pillarboxed copies of real photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

import lookalike
from lookalike.imaging.borders import content_box


def _grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"))


def _jpeg(img: Image.Image, quality: int = 60) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def _pad(img: Image.Image, left: int, top: int, right: int, bottom: int,
         fill: tuple[int, int, int]) -> Image.Image:
    return ImageOps.expand(img.convert("RGB"), (left, top, right, bottom), fill=fill)


@pytest.mark.parametrize(("pads", "fill"), [
    ((0, 40, 0, 40), (0, 0, 0)),  # letterbox
    ((50, 0, 50, 0), (255, 255, 255)),  # pillarbox on white
    ((12, 30, 20, 8), (128, 128, 128)),  # uneven grey margins, as a scanner leaves
])
def test_the_box_is_the_photo_inside_its_bars_even_after_jpeg(rgb_photos, pads, fill):
    photo = Image.open(rgb_photos[0]).convert("RGB").resize((320, 240))
    padded = _jpeg(_pad(photo, *pads, fill))  # ringing and noise at the bars' edges
    box = content_box(_grey(padded))
    assert box is not None
    want = (pads[0], pads[1], pads[0] + 320, pads[1] + 240)
    # Never into the photo; at most half a JPEG block of bar left where ringing blurs the edge.
    left, top, right, bottom = box
    assert want[0] - 4 <= left <= want[0] and want[1] - 4 <= top <= want[1], (box, want)
    assert want[2] <= right <= want[2] + 4 and want[3] <= bottom <= want[3] + 4, (box, want)


def test_photos_without_bars_and_mostly_flat_images_are_left_whole(rgb_photos):
    for path in rgb_photos[:4]:
        assert content_box(_grey(Image.open(path))) is None
    logo = Image.new("L", (300, 300), 255)
    logo.paste(0, (140, 140, 160, 160))  # a small mark on a plain ground: not padding
    assert content_box(np.asarray(logo)) is None
    assert content_box(np.full((50, 50), 7, np.uint8)) is None
    frame = np.asarray(_grey(Image.open(rgb_photos[0]))).copy()
    frame[0, :] = 0  # a 1-pixel line is no bar
    assert content_box(frame) is None


def test_a_padded_copy_groups_with_its_original_by_default(rgb_photos, tmp_path):
    photo = Image.open(rgb_photos[1]).convert("RGB").resize((400, 300))
    photo.save(tmp_path / "original.png")
    _pad(photo, 0, 40, 0, 40, (0, 0, 0)).save(tmp_path / "letterboxed.jpg", quality=85)
    Image.open(rgb_photos[2]).convert("RGB").save(tmp_path / "other.png")
    grouped = lookalike.scan(tmp_path, workers=1)
    assert [sorted(p.rsplit("/", 1)[1] for p in g.paths) for g in grouped.groups] == [
        ["letterboxed.jpg", "original.png"]]
    assert lookalike.scan(tmp_path, workers=1, trim_borders=False).groups == []
