"""What an image file's header says: format, colour mode, JPEG quality, lossless or not, the
EXIF camera and date taken, and how much metadata it keeps (:class:`~lookalike.model.FileFacts`).

One reader, :func:`image_facts` (an image Pillow has opened, pixels not loaded), for every
caller: a scan's workers record each image's facts when they hash it (:func:`bytes_facts`),
the stores keep them with the hash, and the keep policy's ``original`` rule
(:mod:`lookalike.grouping.keep`) reads them from the records; it reads the file
(:func:`read_file_facts`) only for records without them, as the review page's compare view
(:mod:`lookalike.report.html`) does. The header and EXIF are parsed, never the pixels (0.07
ms per file on the accuracy benchmark's photos; ``benchmarks/bench_keep.py``). Pillow loads
on first use, so importing this module stays light."""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
from collections.abc import Hashable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from lookalike.model import FileFacts

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["BAR_SMEAR", "LOSSLESS_FORMATS", "MULTI_FRAME_FORMATS", "FileFacts", "bytes_facts",
           "image_facts", "jpeg_quality", "read_file_facts", "smear_free"]

#: Pillow format names whose pixels are stored exactly (a WebP file may be either:
#: :attr:`FileFacts.lossless` tells by its bitstream). GIF is left out on purpose: it is
#: usually a palette-reduced (lossy) copy of a photo, so it should not beat a JPEG original.
LOSSLESS_FORMATS = frozenset({"PNG", "APNG", "BMP", "DIB", "TIFF", "PPM", "PGM", "PBM", "PNM",
                              "QOI", "TGA", "SGI", "PCX", "IM", "ICO", "ICNS", "PSD"})
#: Formats whose files may hold more than one picture (:attr:`FileFacts.frames`): animations,
#: pages, layers (a PSD's first picture is its composite), several images (HEIF).
MULTI_FRAME_FORMATS = frozenset({"GIF", "PNG", "APNG", "WEBP", "TIFF", "PSD", "HEIF", "HEIC",
                                 "AVIF", "FLI", "DCX", "SPIDER", "IM", "MIC"})

# The IJG standard luminance quantisation table (JPEG Annex K, quality 50), in the natural
# order Pillow's ``Image.quantization`` uses.
_STD_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
             14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
             18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
             49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)

_EXIF_TEXT_MAX = 80  # characters kept of an EXIF text field (they are untrusted and unbounded)
_EXIF_DATE = re.compile(r"\d{4}:\d\d:\d\d \d\d:\d\d:\d\d")


def jpeg_quality(tables: Mapping[int, Sequence[int]]) -> int | None:
    """The IJG quality (1-100) whose scaling of the standard table best matches the
    luminance table ``tables[0]`` (Pillow's ``Image.quantization``); None without one."""
    luma = tables.get(0)
    if not luma or len(luma) != len(_STD_LUMA):
        return None
    # Entries clamped at 1 or 255 no longer show the scale; the others give it.
    pairs = [(q, s) for q, s in zip(luma, _STD_LUMA, strict=True) if 1 < q < 255]
    if not pairs:
        return 100 if max(luma) <= 1 else 1
    scale = 100.0 * sum(q for q, _ in pairs) / sum(s for _, s in pairs)  # 5000/q or 200-2q
    quality = 5000.0 / scale if scale > 100 else (200.0 - scale) / 2
    return max(1, min(100, round(quality)))


def _holds_vp8l(fh: BinaryIO) -> bool:
    """True if the WebP file read from the start of ``fh`` holds a lossless (VP8L)
    bitstream."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return False
    # Walk the RIFF chunks (a bounded number) until the image bitstream chunk.
    for _ in range(64):
        chunk = fh.read(8)
        if len(chunk) < 8:
            return False
        fourcc, size = chunk[:4], int.from_bytes(chunk[4:], "little")
        if fourcc == b"VP8L":
            return True
        if fourcc == b"VP8 ":
            return False
        fh.seek(size + (size & 1), os.SEEK_CUR)
    return False


def _exif_text(value: object) -> str | None:
    """An EXIF text field as one line of at most :data:`_EXIF_TEXT_MAX` characters."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = " ".join(value.replace("\x00", " ").split())
    return text[:_EXIF_TEXT_MAX] or None


def image_facts(im: Image, fh: BinaryIO) -> FileFacts:
    """The facts of ``im``, an image Pillow has just opened (no pixels loaded) from ``fh``,
    the file's bytes (read again only for a WebP's bitstream kind). A damaged header or
    EXIF gives ``FileFacts()``.

    The one reader of facts: :func:`read_file_facts` (a file), :func:`bytes_facts` (the
    bytes a scan hashes).
    """
    from PIL import ExifTags, Image  # loaded already: ``im`` is a Pillow image

    try:
        fmt, mode, info = im.format, im.mode, im.info
        # A PNG's getexif() decodes every pixel looking for an eXIf chunk after them;
        # one before them (where writers put it) is in info already.
        exif = im.getexif() if fmt != "PNG" or "exif" in info else Image.Exif()
        sub: Mapping[int, object] = {}
        if exif:
            with contextlib.suppress(Exception):  # a damaged sub-IFD says nothing
                sub = exif.get_ifd(ExifTags.IFD.Exif)
        quality = jpeg_quality(getattr(im, "quantization", None) or {}) \
            if fmt in ("JPEG", "MPO") else None
        if fmt == "WEBP":
            fh.seek(0)
            lossless = _holds_vp8l(fh)
        else:
            lossless = fmt in LOSSLESS_FORMATS
        grey = Image.getmodebase(mode) == "L"
        make = _exif_text(exif.get(ExifTags.Base.Make))
        model = _exif_text(exif.get(ExifTags.Base.Model))
        taken = _exif_text(sub.get(ExifTags.Base.DateTimeOriginal))
        subsec = _exif_text(sub.get(ExifTags.Base.SubsecTimeOriginal))
        software = _exif_text(exif.get(ExifTags.Base.Software))
        exposure = _exposure(sub.get(ExifTags.Base.ExposureTime),
                             sub.get(ExifTags.Base.ExposureBiasValue))
        # An orientation tag alone is what a rotating tool writes, not kept metadata. XMP
        # and comments apart: converters and photo managers add them.
        metadata = sum((bool(set(exif) - {ExifTags.Base.Orientation}), "icc_profile" in info))
        notes = sum(("xmp" in info or "XML:com.adobe.xmp" in info,
                     "comment" in info or "Comment" in info))
    except Exception:  # a plugin's error on a damaged header: no facts
        return FileFacts()
    if model and make and model.lower().startswith(make.lower()):
        make = None  # "Canon" + "Canon EOS R5": the model already names the maker
    return FileFacts(
        format=fmt, mode=mode, quality=quality, lossless=lossless, grey=grey,
        camera=" ".join(x for x in (make, model) if x) or None,
        # With the fraction of a second (SubsecTimeOriginal): a burst's frames share seconds.
        taken=taken[:10].replace(":", "-") + taken[10:]
        + (f".{subsec}" if subsec and subsec.isdigit() else "")
        if taken and _EXIF_DATE.fullmatch(taken) else None,
        software=software, exposure=exposure, notes=notes,
        metadata=metadata, frames=_frames(im))


def _exposure(time: object, bias: object) -> str | None:
    """EXIF exposure time and bias as ``1/250 s -1 EV`` (either part may be missing):
    an exposure bracket's frames differ in them, copies keep them."""
    parts = []
    with contextlib.suppress(TypeError, ValueError, ZeroDivisionError, OverflowError):
        t = float(time)  # type: ignore[arg-type]
        if 0 < t < 1 and abs(1 / t - round(1 / t)) < 0.01:  # 1/250: as cameras say it
            parts.append(f"1/{round(1 / t)} s")
        elif t > 0:  # 0.4 s, 0.5 s, 2.5 s: each its own value (a slow bracket)
            parts.append(f"{t:.4g} s")
    with contextlib.suppress(TypeError, ValueError, ZeroDivisionError, OverflowError):
        if bias is not None:
            parts.append(f"{float(bias):+.2g} EV")  # type: ignore[arg-type]
    return " ".join(parts) or None


def _frames(im: Image) -> bool:
    """Whether ``im`` holds more pictures than its first (:attr:`FileFacts.frames`). A GIF
    is read up to its second frame (not decoded); other formats say so in their header. A
    file that cannot tell is taken to have more: the keep policy then never removes it."""
    if im.format in ("JPEG", "MPO"):
        return False
    try:
        return bool(getattr(im, "is_animated", False))
    except Exception:  # a damaged later frame: perhaps more pictures
        return True


@lru_cache(maxsize=1)
def register_plugins() -> bool:
    """Once per process: register optional format plugins; returns whether HEIF is available.
    Here, not in :mod:`lookalike.imaging.decode`: reading a header (at plan time) needs the
    plugins a scan's workers have, not NumPy.

    Also silences Pillow's per-file warnings (bomb warnings for large-but-allowed images,
    "corrupt EXIF", "malformed MPO", ...): in a scan of 200k files they would flood the
    terminal, and every file that really fails is reported as a problem anyway.
    """
    import warnings

    from PIL import Image, features

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    # Pillow >= 11.3 decodes AVIF itself; older pillow-heif releases can stand in for it.
    if not features.check("avif") and hasattr(pillow_heif, "register_avif_opener"):
        pillow_heif.register_avif_opener()
    return True


def _stream_facts(fh: BinaryIO) -> FileFacts:
    """:func:`image_facts` of the image Pillow opens from ``fh``; ``FileFacts()`` for one it
    cannot open."""
    from PIL import Image  # loads Pillow

    # The plugins a scan's workers have: a HEIC's camera EXIF read at plan time must be what
    # the scan saw, or the keep policy judges the original without it.
    register_plugins()
    try:
        with Image.open(fh) as im:
            return image_facts(im, fh)
    except Exception:  # not an image, a plugin's error on a damaged header: no facts
        return FileFacts()


def bytes_facts(data: bytes) -> FileFacts:
    """What the header of the image in ``data`` says, as :func:`read_file_facts` reads it
    from a file (the scan's workers record it with each hash). Cost: Pillow parses the
    header again (0.01 ms on a small PNG; no pixels)."""
    return _stream_facts(io.BytesIO(data))


def read_file_facts(path: str) -> FileFacts:
    """Read the header and EXIF of the image at ``path`` (no pixels). Unreadable files
    (gone, remote, not an image Pillow knows, a damaged header) give ``FileFacts()``.

    Cost: one open, the header and EXIF parsed (0.07 ms per file; module docs).
    """
    try:
        # Non-blocking, and only a regular file is read: a member swapped for a FIFO since
        # the scan would otherwise hang the keep policy and the review page on open().
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0))
    except (OSError, ValueError):  # gone, no permission, a NUL byte
        return FileFacts()
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = False
    if not regular:  # a folder, a FIFO, a device
        os.close(fd)
        return FileFacts()
    with os.fdopen(fd, "rb") as fh:
        try:
            return _stream_facts(fh)
        except OSError:  # a read error
            return FileFacts()


K = TypeVar("K", bound=Hashable)


#: Pixels per side by which a lossy encoder moves the edge of flat bars (ringing next to
#: the picture): a JPEG re-encode of a 64 px emoji on a white ground showed one column more
#: picture than its PNG original, 1.7% more pixels, and won by resolution.
BAR_SMEAR = 2


def smear_free(sizes: Mapping[K, tuple[tuple[int, int], tuple[int, int]]]
               ) -> dict[K, tuple[int, int]]:
    """The size each of a group's pictures shows, where its encoder smeared its bars'
    edge: ``sizes`` maps each to (the size inside its flat bars, its file's size); a
    picture inside bars is taken as large as a larger one of the same file size within
    :data:`BAR_SMEAR` pixels per side of that one's size as taken (one picture
    re-encoded: where its bars end is no better or worse picture; as taken, so steps do
    not chain). Pictures without bars keep theirs (two pixels fewer there are a crop or a
    resize), and so do those in files of other sizes: a copy padded onto a larger canvas
    shows a row or two less picture where its bars swallowed the picture's dark edge (on
    the accuracy set's pairs, 19 of 79 padded PNG copies of JPEG originals won the keep
    policy when taken as large). Linear: each looks up the sizes within reach, not every
    larger picture (a group of 20k one-size copies)."""
    order = sorted(sizes, key=lambda k: -sizes[k][0][0] * sizes[k][0][1])
    taken: dict[tuple[tuple[int, int], tuple[int, int]], None] = {}  # (frame, size as taken)
    out: dict[K, tuple[int, int]] = {}
    reach = range(-BAR_SMEAR, BAR_SMEAR + 1)
    for key in order:
        (w, h), frame = sizes[key]
        size = (w, h)
        if size != frame:  # bars: the largest size as taken within reach, if any
            near = [(w + dw, h + dh) for dw in reach for dh in reach
                    if (frame, (w + dw, h + dh)) in taken]
            if near:
                size = max(near, key=lambda s: (s[0] * s[1], s))
        out[key] = size
        taken[(frame, size)] = None
    return out
