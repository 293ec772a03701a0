"""Decoding: content sniffing, EXIF orientation, transparency, frames, bad files."""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import DecodeError
from lookalike.imaging.decode import Picture, decode_bytes


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_format_is_detected_from_content_not_extension(scene, tmp_path):
    data = _bytes(scene(1), "PNG")
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(data)
    pic, fmt, _ = decode_bytes(path.read_bytes())
    assert fmt == "PNG"
    assert pic.size == (160, 120)


def test_exif_orientation_is_applied(scene):
    img = scene(2, (200, 100))
    stored = img.transpose(Image.Transpose.ROTATE_90)  # what a camera writes, sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display" undoes the stored ROTATE_90 (CCW)
    pic, _, _ = decode_bytes(_bytes(stored, "PNG", exif=exif))
    assert pic.size == (200, 100)
    assert pic.full_size == (200, 100)
    diff = np.abs(np.asarray(pic.grey(50, 25), float) - np.asarray(
        Picture.from_pil(img).grey(50, 25), float))
    assert diff.mean() < 2


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # fully transparent black
    pic, _, _ = decode_bytes(_bytes(rgba, "PNG"))
    assert pic.grey_full().min() == 255
    la = Image.new("LA", (20, 20), (0, 0))
    assert decode_bytes(_bytes(la, "PNG"))[0].grey_full().min() == 255


def test_first_frame_of_animated_images_is_used(scene):
    frames = [scene(10), scene(11), scene(12)]
    data = _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    first = decode_bytes(_bytes(frames[0], "GIF"))[0]
    pic = decode_bytes(data)[0]
    assert np.array_equal(pic.grey(32, 32), first.grey(32, 32))


def test_pixel_digest_is_the_same_for_png_and_lossless_webp(scene):
    img = scene(3)
    d_png = decode_bytes(_bytes(img, "PNG"), want_pixel_digest=True)[2]
    d_webp = decode_bytes(_bytes(img, "WEBP", lossless=True), want_pixel_digest=True)[2]
    d_other = decode_bytes(_bytes(scene(4), "PNG"), want_pixel_digest=True)[2]
    assert d_png == d_webp
    assert d_png != d_other


def test_sixteen_bit_images_keep_their_contrast():
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    img = Image.fromarray(ramp)  # mode I;16
    pic = decode_bytes(_bytes(img, "PNG"))[0]
    grey = pic.grey_full()
    assert grey.min() < 10 and grey.max() > 245


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty-file"),
        (b"this is not an image at all", "unsupported-format"),
    ],
)
def test_bad_bytes_raise_decode_error_with_reason(data, reason):
    with pytest.raises(DecodeError) as info:
        decode_bytes(data)
    assert info.value.reason == reason


def test_truncated_jpeg_is_reported_as_truncated(scene):
    data = _bytes(scene(5, (400, 300)), "JPEG", quality=90)
    with pytest.raises(DecodeError) as info:
        decode_bytes(data[: len(data) // 2])
    assert info.value.reason == "truncated"


def test_pixel_limit_refuses_before_decoding(scene):
    data = _bytes(scene(6, (300, 300)), "PNG")
    with pytest.raises(DecodeError) as info:
        decode_bytes(data, max_pixels=1000)
    assert info.value.reason == "too-large"
    assert "raise max_pixels" in str(info.value)


def test_pixel_limit_leaves_pillows_global_alone_even_while_decoding(scene, monkeypatch):
    # The limit is an argument, not process state: Pillow's own limit stays the
    # application's, also while a file is being opened (other threads may be decoding).
    seen = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, **kw: seen.append(Image.MAX_IMAGE_PIXELS)
                        or real_open(fp, **kw))
    before = Image.MAX_IMAGE_PIXELS
    data = _bytes(scene(6, (300, 300)), "PNG")
    for limit in (1000, 10**12):
        with contextlib.suppress(DecodeError):
            decode_bytes(data, max_pixels=limit)
    assert seen == [before, before]
    assert before == Image.MAX_IMAGE_PIXELS


def test_an_image_within_max_pixels_but_over_pillows_own_limit_says_so(scene, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # refuses above 40,000 pixels
    data = _bytes(scene(6, (300, 300)), "PNG")
    with pytest.raises(DecodeError, match=r"PIL\.Image\.MAX_IMAGE_PIXELS") as info:
        decode_bytes(data, max_pixels=10**6)
    assert info.value.reason == "too-large"
    with pytest.raises(DecodeError, match="raise max_pixels") as info:
        decode_bytes(data, max_pixels=50_000)
    assert info.value.reason == "too-large"


def test_grey_pixels_are_pillows_l_conversion(scene):
    img = scene(9, (300, 200))
    pic = Picture.from_pil(img)
    want = np.asarray(img.convert("L"))
    assert np.array_equal(pic.grey_full(), want)
    assert np.array_equal(np.asarray(pic.grey_image()), want)
    assert not pic.grey_full().flags.writeable


def test_postscript_is_never_handed_to_ghostscript(tmp_path, monkeypatch):
    """An EPS (or one named .jpg) in a scanned folder ran Ghostscript on its program: Pillow
    renders PostScript with it, and scraped files must not run anything."""
    import lookalike

    marker = tmp_path / "gs-ran"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho ran >> {marker}\necho 10.0.0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(DecodeError) as info:
        decode_bytes(eps)
    assert info.value.reason == "unsupported-format" and "never decoded" in str(info.value)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "named.jpg").write_bytes(eps)
    (tmp_path / "imgs" / "art.eps").write_bytes(eps)
    result = lookalike.scan(tmp_path / "imgs", workers=1)
    # art.eps is refused by its content too: skipped unsaid by the walk, it was not listed.
    assert [(os.path.basename(p.path), p.error) for p in result.errors] == [
        ("art.eps", "unsupported-format"), ("named.jpg", "unsupported-format")]
    assert not marker.exists()


def test_an_archive_given_as_an_image_says_how_to_read_its_images(tmp_path):
    """A .zip (or a gzip file) named on the command line was "not an image, or a format
    lookalike cannot read", with no word of what to do."""
    import gzip
    import tarfile
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.png", b"not looked at")
    shard = io.BytesIO()
    with tarfile.open(fileobj=shard, mode="w") as tf:
        info = tarfile.TarInfo("a.png")
        tf.addfile(info, io.BytesIO(b""))
    for data, said in ((buf.getvalue(), "a zip archive"),
                       (gzip.compress(b"anything"), "a compressed file"),
                       (shard.getvalue(), "a .tar shard, read as one image")):
        with pytest.raises(DecodeError) as info:
            decode_bytes(data)
        assert info.value.reason == "unsupported-format" and said in str(info.value)
        assert ".tar" in str(info.value)
