"""Every format users have decodes to a sensible picture: the same hash, within a few bits,
as a reference rendering of the same photo; multi-frame files are hashed by their first frame;
EXIF orientation is applied; Pillow's own test images (odd modes, fuzzer findings) never crash
a scan."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

import badfiles as bf
import lookalike
import realdata
from lookalike.config import DEFAULT_MAX_PIXELS
from lookalike.errors import REASONS, DecodeError
from lookalike.imaging.decode import decode_bytes
from lookalike.imaging.hashes import get_method

HAS_HEIF = find_spec("pillow_heif") is not None
SIZE = (240, 180)


@pytest.fixture(scope="module")
def photo(photos) -> Image.Image:
    img = Image.open(next(p for p in photos if p.stem == "astronaut")).convert("RGB")
    return img.resize(SIZE, Image.Resampling.LANCZOS)


def _hashes(data: bytes, mode: str = "full") -> tuple[tuple[int, int], dict[str, object]]:
    pic, _, _ = decode_bytes(data, mode=mode)
    assert pic._image.mode in ("L", "RGB")
    return pic.full_size, {m: get_method(m).hash(pic, 8) for m in ("phash", "dhash")}


def _distance(a: dict[str, object], b: dict[str, object]) -> dict[str, int]:
    return {m: a[m] - b[m] for m in a}  # type: ignore[operator]


def _heif(img: Image.Image, **kw: object) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return bf.encode(img, "HEIF", quality=90, **kw)


# name -> (encoder of an RGB photo, reference mode, max phash/dhash bits from the reference)
CASES: dict[str, tuple[Callable[[Image.Image], bytes], str, int]] = {
    "jpeg": (lambda im: bf.encode(im, "JPEG", quality=92), "RGB", 2),
    "jpeg-progressive": (lambda im: bf.encode(im, "JPEG", quality=92, progressive=True),
                         "RGB", 2),
    "jpeg-grey": (lambda im: bf.encode(im.convert("L"), "JPEG", quality=92), "L", 2),
    "jpeg-cmyk": (lambda im: bf.encode(im.convert("CMYK"), "JPEG", quality=95), "RGB", 2),
    "png": (lambda im: bf.encode(im, "PNG"), "RGB", 0),
    "png-rgba-opaque": (lambda im: bf.encode(im.convert("RGBA"), "PNG"), "RGB", 0),
    "png-grey": (lambda im: bf.encode(im.convert("L"), "PNG"), "L", 0),
    "png-grey-alpha": (lambda im: bf.encode(im.convert("LA"), "PNG"), "L", 0),
    "png-palette": (lambda im: bf.encode(im.quantize(256), "PNG"), "RGB", 4),
    "png-16bit-grey": (lambda im: bf.encode(Image.fromarray(
        np.asarray(im.convert("L")).astype(np.uint16) * 257), "PNG"), "L", 0),
    "png-16bit-rgb": (lambda im: bf.png_rgb16(np.asarray(im)), "RGB", 0),
    "apng": (lambda im: bf.encode(im, "PNG", save_all=True,
                                  append_images=[im.rotate(90)]), "RGB", 0),
    "gif": (lambda im: bf.encode(im, "GIF"), "RGB", 6),
    "webp-lossy": (lambda im: bf.encode(im, "WEBP", quality=90), "RGB", 4),
    "webp-lossless": (lambda im: bf.encode(im, "WEBP", lossless=True), "RGB", 0),
    "tiff": (lambda im: bf.encode(im, "TIFF"), "RGB", 0),
    "tiff-lzw": (lambda im: bf.encode(im, "TIFF", compression="tiff_lzw"), "RGB", 0),
    "tiff-16bit": (lambda im: bf.encode(Image.fromarray(
        np.asarray(im.convert("L")).astype(np.uint16) * 257), "TIFF"), "L", 0),
    "tiff-float": (lambda im: bf.encode(Image.fromarray(
        np.asarray(im.convert("L")).astype(np.float32) / 255), "TIFF"), "L", 2),
    "bmp": (lambda im: bf.encode(im, "BMP"), "RGB", 0),
    "ico": (lambda im: bf.encode(im, "ICO", sizes=[SIZE]), "RGB", 4),
    "mpo": (lambda im: bf.encode(im, "MPO", save_all=True, append_images=[im.rotate(90)]),
            "RGB", 2),
    "avif": (lambda im: bf.encode(im, "AVIF", quality=90), "RGB", 4),
    "heic": (_heif, "RGB", 4),
    "jpeg2000": (lambda im: bf.encode(im, "JPEG2000", quality_mode="dB",
                                      quality_layers=[45]), "RGB", 2),
}


def _available(name: str) -> bool:
    need = {"avif": lambda: features.check("avif"), "heic": lambda: HAS_HEIF,
            "jpeg2000": lambda: features.check("jpg_2000"),
            "webp-lossy": lambda: features.check("webp"),
            "webp-lossless": lambda: features.check("webp")}.get(name)
    return need is None or bool(need())


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize("name", list(CASES))
def test_every_format_decodes_to_the_same_picture(photo, name, mode):
    if not _available(name):
        pytest.skip(f"{name} support is not installed")
    encode, ref_mode, max_bits = CASES[name]
    reference = photo.convert(ref_mode)
    _, want = _hashes(bf.encode(reference, "PNG"), mode)
    size, got = _hashes(encode(photo), mode)
    assert size == SIZE
    assert max(_distance(got, want).values()) <= max_bits, _distance(got, want)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP"])
def test_one_bit_images_read_as_black_and_white(photo, fmt):
    bw = photo.convert("L").point(lambda v: 255 * (v > 110)).convert("1")
    _, want = _hashes(bf.encode(bw.convert("L"), "PNG"))
    _, got = _hashes(bf.encode(bw, fmt))
    assert _distance(got, want) == {"phash": 0, "dhash": 0}


def test_sixteen_bit_png_hashes_like_its_eight_bit_version(photo):
    grey = np.asarray(photo.convert("L"))
    noise = np.random.default_rng(0).integers(0, 257, grey.shape)  # the low byte varies too
    wide = Image.fromarray((grey.astype(np.uint16) * 257 + noise).clip(0, 65535)
                           .astype(np.uint16))
    for mode in ("full", "fast"):
        _, h16 = _hashes(bf.encode(wide, "PNG"), mode)
        _, h8 = _hashes(bf.encode(photo.convert("L"), "PNG"), mode)
        assert max(_distance(h16, h8).values()) <= 2


def test_transparency_is_composited_on_white(photo):
    rgba = photo.convert("RGBA")
    alpha = np.zeros(SIZE[::-1], np.uint8)
    alpha[:, : SIZE[0] // 2] = 255  # right half fully transparent
    rgba.putalpha(Image.fromarray(alpha))
    on_white = Image.new("RGB", SIZE, "white")
    on_white.paste(photo.crop((0, 0, SIZE[0] // 2, SIZE[1])), (0, 0))
    _, want = _hashes(bf.encode(on_white, "PNG"))
    # A palette image whose transparent index covers the right half.
    pal = photo.quantize(255)
    idx = np.asarray(pal).copy()
    idx[:, SIZE[0] // 2:] = 255
    trns = Image.fromarray(idx, "P")
    trns.putpalette([*pal.getpalette()[: 255 * 3], 0, 0, 0])
    for data in (bf.encode(rgba, "PNG"), bf.encode(rgba, "WEBP", lossless=True),
                 bf.encode(rgba, "TIFF"), bf.encode(trns, "PNG", transparency=255),
                 bf.encode(trns, "GIF", transparency=255)):
        _, got = _hashes(data)
        assert max(_distance(got, want).values()) <= 4


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_exif_orientation_is_applied_once(photo, fmt, orientation):
    if fmt == "HEIF" and not HAS_HEIF:
        pytest.skip("pillow-heif is not installed")
    # What a camera stores for each orientation: the upright picture, transformed back.
    undo = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_270}[orientation]
    stored = photo if undo is None else photo.transpose(undo)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = (_heif(stored, exif=exif.tobytes()) if fmt == "HEIF"
            else bf.encode(stored, fmt, exif=exif.tobytes(), quality=95))
    _, want = _hashes(bf.encode(photo, "PNG"))
    for mode in ("full", "fast"):
        size, got = _hashes(data, mode)
        assert size == SIZE
        assert max(_distance(got, want).values()) <= 3


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP", "TIFF", "MPO", "HEIF"])
def test_multi_frame_files_are_hashed_by_their_first_frame(photo, fmt):
    if fmt == "HEIF" and not HAS_HEIF:
        pytest.skip("pillow-heif is not installed")
    second = photo.transpose(Image.Transpose.ROTATE_180)
    if fmt == "HEIF":
        data = _heif(photo, save_all=True, append_images=[second])
    else:
        data = bf.encode(photo, fmt, save_all=True, append_images=[second])
    first = get_method("phash").hash(decode_bytes(bf.encode(photo, "PNG"))[0], 8)
    other = get_method("phash").hash(decode_bytes(bf.encode(second, "PNG"))[0], 8)
    got = get_method("phash").hash(decode_bytes(data)[0], 8)
    assert got - first <= 6 < got - other


def test_cmyk_jpeg_hashes_like_the_rgb_original(photo):
    cmyk = bf.encode(photo.convert("CMYK"), "JPEG", quality=95)
    rgb = bf.encode(photo, "JPEG", quality=95)
    assert max(_distance(_hashes(cmyk)[1], _hashes(rgb)[1]).values()) <= 2


def test_twelve_bit_jpeg_is_reported_as_unsupported(photo):
    data = bf.jpeg_with_precision(bf.encode(photo, "JPEG"), 12)
    with pytest.raises(DecodeError, match="12-bit") as info:
        decode_bytes(data)
    assert info.value.reason == "unsupported-format"


@pytest.mark.skipif(not HAS_HEIF, reason="pillow-heif is not installed")
def test_heic_without_the_plugin_says_how_to_install_it(photo, tmp_path):
    (tmp_path / "x.heic").write_bytes(_heif(photo))
    code = textwrap.dedent(f"""
        import sys
        sys.modules["pillow_heif"] = None  # as if not installed
        from lookalike.imaging.decode import decode_bytes
        from lookalike.errors import DecodeError
        try:
            decode_bytes(open({str(tmp_path / "x.heic")!r}, "rb").read())
        except DecodeError as e:
            print(e.reason, "|", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.startswith("unsupported-format |"), out.stderr
    assert "lookalike[heif]" in out.stdout


# --------------------------------------------------------------------------- Pillow's corpus

@pytest.fixture(scope="module")
def pillow_images() -> Path:
    try:
        realdata.pillow_test_images()
    except realdata.DataUnavailable as exc:  # pragma: no cover - depends on the registry
        pytest.skip(f"Pillow's test images unavailable: {exc}")
    return realdata.cache_root() / "pillow"


# The same photograph ("hopper") stored in many formats and modes by Pillow's test suite.
HOPPER_VARIANTS = [
    "hopper.bmp", "hopper.dcx", "hopper.dds", "hopper.gif", "hopper.im", "hopper.jpg",
    "hopper.Lab.tif", "hopper.pfm", "hopper.pnm", "hopper.ppm", "hopper.pxr", "hopper.qoi",
    "hopper.ras", "hopper.rgb", "hopper.sgi", "hopper.spider", "hopper.tif", "hopper.webp",
    "hopper16.rgb", "hopper_16bit.pgm", "hopper_16bit_plain.pgm", "hopper_bigtiff.tif",
    "hopper_gray.jpg", "hopper_jpg.tif", "hopper_lzma.tif", "hopper_lzw.tif",
    "hopper_merged.psd", "hopper_rle8.bmp", "hopper.fli", "tiff_gray_2_4_bpp/hopper4.tif",
    "avif/hopper.avif", "avif/hopper.heif",
    *[f"hopper_orientation_{i}.{ext}" for i in range(2, 9) for ext in ("jpg", "webp")],
]


@pytest.mark.filterwarnings("ignore:IM image format is deprecated")
@pytest.mark.parametrize("name", HOPPER_VARIANTS)
def test_pillow_hopper_variants_hash_like_hopper_png(pillow_images, name):
    path = pillow_images / name
    if not path.exists():
        pytest.skip(f"{name} not in this Pillow version's test images")
    if name.endswith(".heif") and not HAS_HEIF:
        pytest.skip("pillow-heif is not installed")
    _, want = _hashes((pillow_images / "hopper.png").read_bytes())
    for mode in ("full", "fast"):
        size, got = _hashes(path.read_bytes(), mode)
        assert size == (128, 128)
        assert max(_distance(got, want).values()) <= 4, _distance(got, want)


def test_pillow_cmyk_sample_hashes_like_its_rgb_version(pillow_images):
    cmyk = (pillow_images / "pil_sample_cmyk.jpg").read_bytes()
    rgb = (pillow_images / "pil_sample_rgb.jpg").read_bytes()
    assert Image.open(io.BytesIO(cmyk)).mode == "CMYK"
    d = _distance(_hashes(cmyk)[1], _hashes(rgb)[1])
    # phash follows the picture; dhash, on this flat 100x100 sample, reacts to the colour
    # conversion (Pillow's is not colour-managed) by a few bits.
    assert d["phash"] <= 2 and d["dhash"] <= 8, d


@pytest.mark.slow
def test_a_scan_of_all_pillow_test_images_accounts_for_every_file(pillow_images, tmp_path):
    """~1,000 files: odd modes, every format, and the fuzzer findings Pillow keeps as
    regression tests (crashers, timeouts, OOMs). The scan must finish, hash or report each
    file once with a known reason, and never report a crashed worker or timeout."""
    paths = realdata.pillow_test_images(include_hostile=True)
    # Named one by one, every file is a candidate, whatever its extension or content.
    result = lookalike.scan([str(p) for p in paths], workers=2, decode_timeout=60,
                            method="dhash")
    seen = {r.path for r in result.records} | {p.path for p in result.errors}
    assert {str(p) for p in paths} <= seen
    assert len(result.records) + len(result.errors) == len(seen)  # each file once
    reasons = {p.error for p in result.errors}
    assert reasons <= set(REASONS) - {"worker-crashed", "timeout"}, reasons
    assert len(result.records) > 800
    assert "too-large" in reasons and "truncated" in reasons
    assert result.config.max_pixels == DEFAULT_MAX_PIXELS


def test_decoding_never_prints_pillow_warnings(pillow_images):
    """A 200k-file scan must not flood the terminal with per-file Pillow warnings."""
    files = [pillow_images / n for n in ("hopper_bad_exif.jpg", "sugarshack_bad_mpo_header.jpg",
                                         "png_decompression_dos.png")]
    code = textwrap.dedent(f"""
        from lookalike.imaging.decode import decode_bytes
        from lookalike.errors import DecodeError
        for p in {[str(f) for f in files if f.exists()]!r}:
            try:
                decode_bytes(open(p, "rb").read())
            except DecodeError:
                pass
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0 and "Warning" not in out.stderr, out.stderr
