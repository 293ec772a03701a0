"""Decoding: content sniffing, EXIF orientation, transparency, frames, bad files."""

from __future__ import annotations

import io

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
    assert "--max-pixels" in str(info.value)


def _lanczos_cases() -> list[tuple[np.ndarray, int, int]]:
    """Seeded arrays and output sizes: hash grids, odd sizes, up-scales, tall and wide
    shapes (both of Pillow's pass orders), noise, flat areas and hard 0/255 edges."""
    rng = np.random.default_rng(7)
    cases = []
    for i in range(160):
        h, w = (int(v) for v in rng.integers(1, 420, 2))
        out_w, out_h = (int(rng.choice([1, 8, 9, 16, 17, 20, int(rng.integers(1, 300))]))
                        for _ in range(2))
        kind = i % 4
        if kind == 0:
            arr = rng.integers(0, 256, (h, w), dtype=np.uint8)
        elif kind == 1:
            arr = np.full((h, w), int(rng.integers(0, 256)), dtype=np.uint8)
        elif kind == 2:
            arr = (np.add.outer(np.arange(h) * 3, np.arange(w)) % 256).astype(np.uint8)
        else:
            arr = ((np.add.outer(np.arange(h) // 5, np.arange(w) // 7) % 2) * 255).astype(np.uint8)
        cases.append((arr, out_w, out_h))
    big = rng.integers(0, 256, (461, 1200), dtype=np.uint8)  # many BLAS row blocks
    cases += [(big, 9, 8), (big.T.copy(), 9, 8), (big, 16, 16)]
    return cases


@pytest.mark.parametrize("budget", ["shared-blas", "one-thread-blas"])
def test_numpy_lanczos_replays_pillows_resize_exactly(budget, monkeypatch):
    from lookalike.imaging import decode
    from lookalike.imaging.decode import _pillow_pass_order, lanczos_grey

    block = {"shared-blas": decode._BLAS_BLOCK,
             "one-thread-blas": decode._BLAS_BLOCK_ONE_THREAD}[budget]
    monkeypatch.setattr(decode, "_blas_block", lambda: block)
    # None would mean this Pillow's arithmetic is unknown: fast mode would quietly fall back
    # to Pillow's (slower) resize.
    assert _pillow_pass_order() is not None
    for arr, width, height in _lanczos_cases():
        want = np.asarray(Image.fromarray(arr).resize((width, height), Image.Resampling.LANCZOS))
        got = lanczos_grey(arr, width, height)
        assert got.dtype == np.uint8 and got.flags.c_contiguous
        assert np.array_equal(got, want), (arr.shape, width, height)


@pytest.mark.parametrize(("env", "one_thread"), [
    ({}, False), ({"OPENBLAS_NUM_THREADS": "1"}, True), ({"OMP_NUM_THREADS": "1"}, True),
    ({"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}, False),
    ({"GOTO_NUM_THREADS": "1", "OMP_NUM_THREADS": "4"}, True)])
def test_blas_row_blocks_grow_only_when_openblas_runs_one_thread(env, one_thread, monkeypatch):
    # Larger products would make a multi-threaded OpenBLAS start threads inside each worker.
    from lookalike.imaging import decode

    for name in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    decode._blas_block.cache_clear()
    try:
        want = decode._BLAS_BLOCK_ONE_THREAD if one_thread else decode._BLAS_BLOCK
        assert decode._blas_block() == want
    finally:
        decode._blas_block.cache_clear()


def test_reduced_picture_grids_equal_pillows(scene, monkeypatch):
    from lookalike.imaging import decode

    calls = []
    numpy_resize = decode.lanczos_grey
    monkeypatch.setattr(decode, "lanczos_grey",
                        lambda arr, w, h: calls.append((w, h)) or numpy_resize(arr, w, h))
    data = _bytes(scene(8, (1800, 1200)), "JPEG", quality=90)
    for _ in range(2):  # Pillow resizes the first picture of a size, NumPy the next ones
        pic = decode_bytes(data, mode="fast")[0]
        assert pic.reduced
        for width, height in [(9, 8), (8, 9), (16, 16), (17, 16), (32, 32)]:
            want = np.asarray(pic.grey_image().resize((width, height),
                                                      Image.Resampling.LANCZOS))
            got = pic.grey(width, height)
            assert np.array_equal(got, want)
            assert not got.flags.writeable  # cached: callers must not change it
    assert {(9, 8), (8, 9), (16, 16), (17, 16)} <= set(calls)
    assert (32, 32) not in calls


@pytest.mark.parametrize("into", [True, False])
def test_grey_pixels_are_pillows_l_conversion(scene, monkeypatch, into):
    from lookalike.imaging import decode

    assert decode._convert_into_works()  # else every grey conversion takes the slow path
    monkeypatch.setattr(decode, "_convert_into_works", lambda: into)
    img = scene(9, (300, 200))
    pic = Picture.from_pil(img)
    want = np.asarray(img.convert("L"))
    assert np.array_equal(pic.grey_full(), want)
    assert np.array_equal(np.asarray(pic.grey_image()), want)
    assert not pic.grey_full().flags.writeable
