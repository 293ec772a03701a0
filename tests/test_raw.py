"""Camera RAW files are read with LibRaw (``rawpy``): the embedded preview when it is large
enough, else a half-size rendering; upright by the RAW's orientation; grouped with the JPEG of
the same shot; damaged ones are one problem each, and without ``rawpy`` one clear line each.

The RAWs here are synthetic mosaics of real photos: scikit-image's sample photos, taken to
linear light, mosaicked to an RGGB Bayer pattern (12 bits) and written as DNG with tifffile,
with a JPEG preview, a bitmap preview or none. LibRaw reads them as it reads a camera's
CR2/NEF/ARW: identify, unpack, demosaic (or extract the preview).
"""

from __future__ import annotations

import io
import struct
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import lookalike
from lookalike.config import DEFAULT_HASH_SIZE, DEFAULT_METHOD, DEFAULT_THRESHOLD, INSTALL_HINTS
from lookalike.errors import DecodeError
from lookalike.imaging import decode
from lookalike.imaging.decode import decode_bytes
from lookalike.imaging.hashes import get_method

tifffile = pytest.importorskip("tifffile")
needs_rawpy = pytest.mark.skipif(find_spec("rawpy") is None, reason="rawpy is not installed")

#: XYZ -> linear sRGB: the DNG's ColorMatrix1, so that "camera RGB" is linear sRGB.
_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)
_WHITE = 4095


def _mosaic(rgb: np.ndarray) -> np.ndarray:
    """An RGGB Bayer mosaic (12 bits, linear light) of an sRGB photo."""
    lin = np.round((rgb / 255.0) ** 2.2 * _WHITE).astype(np.uint16)
    cfa = lin[..., 1].copy()
    cfa[0::2, 0::2] = lin[0::2, 0::2, 0]
    cfa[1::2, 1::2] = lin[1::2, 1::2, 2]
    return cfa


def make_dng(photo: Image.Image, preview: str | None = "jpeg", orientation: int = 1,
             preview_size: tuple[int, int] | None = None) -> bytes:
    """A DNG of ``photo`` (even width and height): its Bayer mosaic, and a ``"jpeg"`` or
    ``"bitmap"`` preview of ``preview_size`` (default: the photo's) or none.

    A preview sits in IFD0 with the mosaic in its SubIFD, as cameras and Adobe's converter
    write them. tifffile cannot encode JPEG without imagecodecs, so a JPEG preview is written
    as a one-pixel bitmap whose tags are then pointed at JPEG bytes appended to the file."""
    rgb = np.asarray(photo.convert("RGB"))
    pv = photo.convert("RGB").resize(preview_size) if preview_size else photo.convert("RGB")
    dng = [(50706, "B", 4, (1, 4, 0, 0)), (50707, "B", 4, (1, 1, 0, 0)),
           (50708, "s", 0, "Synthetic mosaic"), (271, "s", 0, "lookalike"),
           (272, "s", 0, "test mosaic"), (274, "H", 1, (orientation,)),
           (50721, "2i", 9, tuple(v for c in _XYZ_TO_SRGB for v in (round(c * 10000), 10000))),
           (50778, "H", 1, (21,)), (50728, "2I", 3, (1, 1, 1, 1, 1, 1))]
    cfa = [(33421, "H", 2, (2, 2)), (33422, "B", 4, (0, 1, 1, 2)), (50714, "H", 1, (0,)),
           (50717, "H", 1, (_WHITE,))]
    out = io.BytesIO()
    with tifffile.TiffWriter(out) as tw:
        if preview is None:
            tw.write(_mosaic(rgb), photometric=32803, extratags=dng + cfa)
        else:
            bitmap = np.asarray(pv) if preview == "bitmap" else np.zeros((1, 1, 3), np.uint8)
            tw.write(bitmap, photometric="rgb", subfiletype=1, subifds=1,
                     rowsperstrip=bitmap.shape[0], extratags=dng)
            tw.write(_mosaic(rgb), photometric=32803, extratags=cfa)
    data = bytearray(out.getvalue())
    if preview == "jpeg":
        buf = io.BytesIO()
        pv.save(buf, "JPEG", quality=85)
        with tifffile.TiffFile(io.BytesIO(bytes(data))) as tf:
            tags = tf.pages[0].tags
            # width, length, rows per strip, compression (7: JPEG), strip offset and size
            for code, value in ((256, pv.width), (257, pv.height), (278, pv.height), (259, 7),
                                (273, len(data)), (279, len(buf.getvalue()))):
                fmt = "<H" if tags[code].dtype == 3 else "<I"
                struct.pack_into(fmt, data, tags[code].valueoffset, value)
        data += buf.getvalue()
    return bytes(data)


def _even(img: Image.Image, width: int) -> Image.Image:
    height = round(img.height * width / img.width) // 2 * 2
    return img.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def shots(rgb_photos: list[Path]) -> dict[str, Image.Image]:
    """Four real photos, 600 px wide (even sizes, as a Bayer mosaic needs)."""
    by_name = {p.stem: p for p in rgb_photos}
    names = ("coffee", "chelsea", "rocket", "motorcycle_left")
    return {n: _even(Image.open(by_name[n]), 600) for n in names}


def _hash(pic: decode.Picture) -> object:
    return get_method(DEFAULT_METHOD).hash(pic, DEFAULT_HASH_SIZE)


@needs_rawpy
@pytest.mark.parametrize("mode", ["fast", "full"])
@pytest.mark.parametrize("preview", ["jpeg", "bitmap", None])
def test_a_dng_decodes_to_its_photo(shots, preview, mode):
    """Preview or demosaic, the picture hashes within the default threshold of the photo
    itself and far from the other photos; its size is the sensor's."""
    photo_hashes = {n: _hash(decode.Picture.from_pil(im)) for n, im in shots.items()}
    for name, photo in shots.items():
        pic, fmt, digest = decode_bytes(make_dng(photo, preview), mode=mode,
                                        want_pixel_digest=True)
        assert (fmt, pic.full_size, digest) == ("DNG", photo.size, None)
        # The preview as stored; without one, LibRaw's half-size rendering.
        assert pic.size == (photo.size if preview else (photo.width // 2, photo.height // 2))
        h = _hash(pic)
        near = {n: h - ph for n, ph in photo_hashes.items()}  # type: ignore[operator]
        assert near[name] <= DEFAULT_THRESHOLD, (name, near)
        assert min(d for n, d in near.items() if n != name) > 4 * DEFAULT_THRESHOLD, near


@needs_rawpy
@pytest.mark.parametrize("preview", ["jpeg", "bitmap", None])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_raw_orientation_is_honoured(shots, preview, orientation):
    """Each EXIF orientation turns the picture as it turns a JPEG (Pillow's exif_transpose),
    whether the pixels come from the preview or from LibRaw's rendering."""
    photo = shots["coffee"].resize((390, 260))
    pic = decode_bytes(make_dng(photo, preview, orientation))[0]
    assert min(pic.size) == (260 if preview else 130)  # the preview is used when there is one
    exif = Image.Exif()
    exif[0x0112] = orientation
    upright = photo.copy()
    upright.info["exif"] = exif.tobytes()
    upright = ImageOps.exif_transpose(upright)
    assert pic.full_size == upright.size
    assert _hash(pic) - _hash(decode.Picture.from_pil(upright)) <= DEFAULT_THRESHOLD


@needs_rawpy
@pytest.mark.parametrize("preview_size", [(240, 160), (600, 300)])
def test_a_small_or_misshapen_preview_is_not_used(shots, preview_size):
    """A thumbnail below FAST_MIN_SIDE or of another shape (letterboxed) is not hashed:
    LibRaw renders the sensor data at half size instead."""
    photo = shots["chelsea"]
    pic = decode_bytes(make_dng(photo, "jpeg", preview_size=preview_size))[0]
    assert pic.size == (photo.width // 2, photo.height // 2)


def test_a_plain_tiff_is_not_taken_for_a_raw(shots):
    buf = io.BytesIO()
    shots["rocket"].save(buf, "TIFF")
    pic, fmt, _ = decode_bytes(buf.getvalue())
    assert (fmt, pic.size) == ("TIFF", shots["rocket"].size)


def _library(shots: dict[str, Image.Image], root: Path) -> dict[str, Path]:
    """A photographer's folder: each shot as DNG (the RAW) and a JPEG of the same photo, the
    DNGs with a JPEG preview, a bitmap preview or none; returns each shot's RAW."""
    raws = {}
    kinds = ["jpeg", "bitmap", None, "jpeg"]
    for i, (name, photo) in enumerate(shots.items()):
        raws[name] = root / f"IMG_{i:04d}.dng"
        raws[name].write_bytes(make_dng(photo, kinds[i]))
        photo.save(root / "jpeg" / f"IMG_{i:04d}.jpg", quality=90)
    return raws


def _pairs(result: lookalike.ScanResult) -> list[set[str]]:
    return [{Path(p).name for p in g.paths} for g in result.groups]


@pytest.fixture
def library(shots, tmp_path) -> tuple[Path, dict[str, Path]]:
    (tmp_path / "jpeg").mkdir()
    return tmp_path, _library(shots, tmp_path)


@needs_rawpy
def test_a_scan_groups_each_raw_with_its_jpeg(library):
    root, raws = library
    result = lookalike.scan(root, workers=1)
    assert not result.errors
    assert sorted(map(sorted, _pairs(result))) == sorted(
        sorted([p.name, p.with_suffix(".jpg").name]) for p in raws.values())
    assert {r.format for r in result.records} == {"DNG", "JPEG"}


@needs_rawpy
def test_the_raw_is_kept(library):
    from lookalike.report.schema import decide_keep

    root, raws = library
    result = lookalike.scan(root, workers=1)
    choices = decide_keep(result)
    assert sorted(choices.keep(g.id)[0] for g in result.groups) == sorted(map(str, raws.values()))
    # A plan from the report judges as the scan did (Pillow reads a DNG's header as a TIFF
    # of several pictures, its previews; the scan's format says RAW): no group is skipped.
    report = root / "r.json"
    lookalike.write_report(result, report)
    p = lookalike.plan(report, action="delete")
    assert not p.skipped and len(p.operations) == len(raws)


@needs_rawpy
@pytest.mark.filterwarnings("ignore:Truncated File Read")  # Pillow reading the cut directories
def test_damaged_raws_are_one_problem_each_and_the_scan_goes_on(shots, library):
    root, raws = library
    bad = root / "bad"
    bad.mkdir()
    no_preview = make_dng(shots["coffee"], None)
    with_preview = make_dng(shots["rocket"], "bitmap")
    files = {
        # cut in the sensor data: LibRaw would render what is left, the preview is intact
        "cut.dng": (no_preview[: len(no_preview) * 3 // 4], "truncated"),
        "cut-preview-intact.dng": (with_preview[: len(with_preview) * 2 // 3], "truncated"),
        "header-only.dng": (no_preview[:200], "truncated"),
        # a RAW name on bytes that are no image at all
        "noise.nef": (np.random.default_rng(0).bytes(50_000), "unsupported-format"),
    }
    for name, (data, _) in files.items():
        (bad / name).write_bytes(data)
    result = lookalike.scan(root, workers=1)
    problems = {Path(p.path).name: p for p in result.errors}
    assert {n: p.error for n, p in problems.items()} == {n: r for n, (_, r) in files.items()}
    assert all("\n" not in p.message and p.message for p in problems.values())
    assert len(result.groups) == len(raws)


def test_without_rawpy_each_raw_is_one_line_with_the_install_hint(shots, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr(decode, "_rawpy", lambda: None)
    with pytest.raises(DecodeError) as err:
        decode_bytes(make_dng(shots["coffee"]))
    assert err.value.reason == "unsupported-format"
    assert str(err.value).endswith(INSTALL_HINTS["raw"]) and "(DNG)" in str(err.value)

    (tmp_path / "jpeg").mkdir()
    raws = _library(shots, tmp_path)
    result = lookalike.scan(tmp_path, workers=1)  # in-process: the patch holds
    assert sorted(p.path for p in result.errors) == sorted(map(str, raws.values()))
    assert {p.error for p in result.errors} == {"unsupported-format"}
    assert len(result.records) == len(shots) and not result.groups


@needs_rawpy
def test_the_review_thumbnail_of_a_raw_is_upright(shots, tmp_path):
    path = tmp_path / "portrait.dng"
    path.write_bytes(make_dng(shots["coffee"], "jpeg", orientation=6))
    thumb = Image.open(io.BytesIO(decode.make_thumbnail(path.read_bytes())))
    assert (thumb.format, thumb.size) == ("JPEG", (107, 160))


@needs_rawpy
@pytest.mark.slow
def test_a_cli_scan_with_worker_processes_prints_no_rawpy_fork_warning(library):
    # rawpy warns in every forked worker that reads a RAW file (OpenMP and fork); lookalike
    # runs LibRaw with one OpenMP thread, so the warning does not apply and must not show.
    import subprocess
    import sys

    root, _ = library
    done = subprocess.run([sys.executable, "-m", "lookalike.cli", "scan", str(root), "-j", "2",
                           "--no-cache", "--format", "json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "fork" not in done.stderr and "deadlock" not in done.stderr, done.stderr
