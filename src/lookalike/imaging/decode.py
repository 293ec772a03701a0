"""Decoding: bytes to pixels (Pillow; imaging/facts.py reads headers only).

It turns bytes into a :class:`Picture`: the first frame, EXIF orientation applied,
transparency composited on white, in mode ``L`` or ``RGB``. Format is detected from content
(Pillow's magic-number sniffing), never from the file extension.

Two decode modes:

``"full"``
    decode every pixel, as ``Image.open`` + ImageHash would; hashes are bit-identical to
    ImageHash's.
``"fast"`` (default)
    JPEGs whose shorter side is at least 512 pixels are decoded at reduced scale in the DCT
    domain (libjpeg scaling via ``Image.draft``, then a box reduce), to a working image
    whose shorter side is 256-511 pixels, from which all hashes are computed. Much faster
    on large photos; their hashes drift a few bits from full decoding (measured in
    ``benchmarks/bench_drift.py``), so a scan re-hashes exactly every reduced image that
    may have a match (:mod:`lookalike.grouping.confirm`). Every other image is decoded exactly as in
    ``"full"`` mode.

Formats: everything Pillow reads (JPEG incl. progressive and CMYK/YCCK, PNG/APNG at every bit
depth, GIF, WebP, AVIF, TIFF, BMP, ICO, MPO, PSD, QOI, JPEG 2000, ...) plus HEIC/HEIF when the
optional ``pillow-heif`` package is installed (``pip install 'lookalike[heif]'``), and camera
RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, PEF, SRW, ...) when ``rawpy`` (LibRaw) is
installed (``pip install 'lookalike[raw]'``); see :func:`decode_bytes`.

Multi-frame files (animated GIF/PNG/WebP, multi-page TIFF, MPO, layered PSD, HEIF sequences)
are hashed by their *first* frame: the one Pillow presents on open (PSD: the merged image;
MPO and HEIF: the primary image). Later frames are never read, so a huge or broken later frame
cannot hurt.

Bad input never escapes as anything but :class:`~lookalike.errors.DecodeError`, whose
``reason`` is one of ``empty-file``, ``unsupported-format``, ``truncated``, ``corrupt`` or
``too-large`` (see :data:`lookalike.errors.REASONS`). Images declaring more than
``max_pixels`` are refused from their header, before any pixel memory is allocated. Pillow's
own bomb guard (``PIL.Image.MAX_IMAGE_PIXELS``, process-wide, also applied to frames whose
size is only known while loading) is never changed here: by default it refuses at
:data:`~lookalike.config.DEFAULT_MAX_PIXELS` as well, so a ``max_pixels`` above that takes
effect only where the application has raised Pillow's limit too.

(Over 600 lines: every format's rules (reduced JPEG decoding, RAW, HEIF, orientation, alpha,
bit depths, the pixel limit, the reason for each failure) are one function's cases.)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import warnings
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFile, ImageFilter, ImageOps, UnidentifiedImageError, features
from PIL.TiffImagePlugin import ImageFileDirectory_v2

from lookalike.config import DECODER_VERSION as _DECODER_VERSION
from lookalike.config import DEFAULT_MAX_PIXELS, FAST_REDUCE_FROM_SIDE, INSTALL_HINTS
from lookalike.config import FAST_MIN_SIDE as _FAST_MIN_SIDE
from lookalike.errors import DecodeError
from lookalike.imaging.facts import register_plugins

__all__ = [
    "DecodeMode",
    "Picture",
    "decode_bytes",
    "make_thumbnail",
]

DecodeMode = Literal["fast", "full"]

#: Fast mode's working-image floor (defined in config, where lookalike.grouping.confirm reads it
#: without loading Pillow).
FAST_MIN_SIDE = _FAST_MIN_SIDE

# Defined in config (the hash cache reads it without loading Pillow); bumped there.
DECODER_VERSION = _DECODER_VERSION

#: ISO-BMFF brands of HEIF/HEIC and AVIF files (bytes 8..12 after ``ftyp``).
HEIF_BRANDS = frozenset((b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1",
                         b"msf1"))
AVIF_BRANDS = frozenset((b"avif", b"avis"))

# Truncated files must fail loudly, never be half-decoded silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class Picture:
    """A decoded image (mode ``L`` or ``RGB``) with cached derived arrays.

    Hash functions read pixels only through this class, so one decode serves every hash and
    the grey conversion is done once.
    """

    __slots__ = ("_grey", "_grey_pixels", "_image", "_resized", "full_size", "reduced")

    def __init__(self, image: Image.Image, *, full_size: tuple[int, int] | None = None,
                 reduced: bool = False) -> None:
        if image.mode not in ("L", "RGB"):
            raise ValueError(f"Picture needs an L or RGB image, got {image.mode}")
        self._image = image
        self._grey: Image.Image | None = None
        self._grey_pixels: np.ndarray | None = None
        self._resized: dict[tuple[int, int], np.ndarray] = {}
        #: size of the original image (after orientation), even when ``reduced``.
        self.full_size = full_size or image.size
        #: True when the pixels are a reduced working copy (fast mode).
        self.reduced = reduced

    @classmethod
    def from_pil(cls, image: Image.Image) -> Picture:
        """Wrap an in-memory PIL image, normalised like a decoded file (no EXIF handling)."""
        return cls(normalize(image))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the pixels held."""
        return self._image.size

    @property
    def image(self) -> Image.Image:
        """The picture itself (mode ``L`` or ``RGB``; shared, not a copy: do not change it)."""
        return self._image

    def grey_image(self) -> Image.Image:
        """The picture in mode ``L`` (converted once)."""
        if self._grey is None:
            self._grey = self._image if self._image.mode == "L" else self._image.convert("L")
        return self._grey

    def grey(self, width: int, height: int) -> np.ndarray:
        """Grey pixels resized to ``width`` x ``height`` with Lanczos, as ImageHash does
        (read-only: cached, each hash size is resized once)."""
        key = (width, height)
        arr = self._resized.get(key)
        if arr is None:
            arr = self._resized[key] = np.asarray(
                self.grey_image().resize(key, Image.Resampling.LANCZOS))
        return arr

    def grey_full(self) -> np.ndarray:
        """Every grey pixel (read-only)."""
        if self._grey_pixels is None:
            self._grey_pixels = np.asarray(self.grey_image())
        return self._grey_pixels

    def hsv_full(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hsv = self._image.convert("HSV")
        h, s, v = (np.asarray(band) for band in hsv.split())
        return h, s, v

    def segmentation_grey(self, size: int) -> np.ndarray:
        """The blurred grey square the crop-resistant hash segments (ImageHash's recipe)."""
        img = self.grey_image().resize((size, size), Image.Resampling.LANCZOS)
        img = img.filter(ImageFilter.GaussianBlur()).filter(ImageFilter.MedianFilter())
        return np.asarray(img).astype(np.float32)

    def crop(self, box: tuple[float, float, float, float]) -> Picture:
        return Picture(self._image.crop(box))

    def transformed(self, op: int) -> Picture:
        """This picture flipped/rotated by a ``PIL.Image.Transpose`` value."""
        return Picture(self._image.transpose(Image.Transpose(op)), full_size=self.full_size,
                       reduced=self.reduced)

    def cropped(self, box: tuple[int, int, int, int]) -> Picture:
        """This picture cut to ``box`` (left, top, right, bottom), e.g. inside its borders."""
        return Picture(self._image.crop(box), full_size=self.full_size, reduced=self.reduced)

    def rgb_bytes(self) -> bytes:
        img = self._image if self._image.mode == "RGB" else self._image.convert("RGB")
        return img.tobytes()


def lanczos_grey(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """A 2-D uint8 array resized to ``width`` x ``height`` with Pillow's Lanczos, as
    ImageHash resizes (for hashes that resize a grid they computed, like dhash-z)."""
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8))
    return np.asarray(img.resize((width, height), Image.Resampling.LANCZOS))


def _composite_on_white(image: Image.Image) -> Image.Image:
    # paste-with-mask onto an opaque white RGBA canvas, then RGB: the exact operation the
    # folklore dhash-z recipe uses, so its hashes stay bit-identical for RGBA inputs.
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.paste(rgba, mask=rgba)
    return canvas.convert("RGB")


def normalize(image: Image.Image) -> Image.Image:
    """Return ``image`` as mode ``L`` or ``RGB``: alpha on white, high bit depths scaled."""
    mode = image.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    ):
        return _composite_on_white(image)
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _scale_to_8bit(image)
    return image.convert("RGB")


def _scale_to_8bit(image: Image.Image) -> Image.Image:
    # Pillow's convert("L") clips 16-bit and float data at 255, turning most 16-bit photos white.
    arr = np.asarray(image)
    if image.mode.startswith("I;16"):
        # v * 255 / 65535 == v / 257, rounded; integers keep a 16-bit image at 4 bytes/pixel.
        scaled: np.ndarray = (arr.astype(np.uint32) * 255 + 32767) // 65535
        return Image.fromarray(scaled.astype(np.uint8), "L")
    # 32-bit int and float images have no fixed range: stretch the finite values to 0..255.
    arr = arr.astype(np.float32 if image.mode == "F" else np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        arr = np.where(finite, arr, np.nan)
    lo, hi = (float(np.nanmin(arr)), float(np.nanmax(arr))) if finite.any() else (0.0, 0.0)
    scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8), "L")


# Pillow messages that mean "a valid file in a variant we cannot decode", not damage.
_UNSUPPORTED_RE = re.compile(
    r"unsupported|not supported|unimplemented|not implemented|not available|cannot find "
    r"loader|ghostscript|cannot handle|unknown pixel mode|conversion from .* not supported",
    re.IGNORECASE,
)
_TRUNCATED_RE = re.compile(
    r"truncated|premature end|unexpected end|end of file|not enough (image )?data|incomplete|"
    r"unpack(_from)? requires a buffer|buffer is not large enough",
    re.IGNORECASE,
)


def _too_large(pixels: int, max_pixels: int, what: str = "declares") -> DecodeError:
    return DecodeError(
        "too-large",
        f"{what} {pixels:,} pixels, above the limit of {max_pixels:,} (a decompression bomb?); "
        "raise max_pixels if you trust this file",
    )


def _reason_for(exc: BaseException, max_pixels: int) -> tuple[str, str]:
    """Map any exception a decoder raised to a stable reason code and a message."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, Image.DecompressionBombError):
        found = re.search(r"\((\d+) pixels\)", text)
        if found and int(found.group(1)) > max_pixels:
            return "too-large", str(_too_large(int(found.group(1)), max_pixels))
        # Within max_pixels, above Pillow's process-wide limit, which is not ours to change.
        return "too-large", (f"{text} (Pillow's own limit: the application must raise "
                             "PIL.Image.MAX_IMAGE_PIXELS to decode it)")
    if isinstance(exc, MemoryError):
        return "too-large", "out of memory while decoding; use fewer workers or a lower max_pixels"
    if "decompressed data too large" in text.lower():  # a zTXt/iCCP bomb in a PNG
        return "too-large", f"compressed metadata expands too much: {text}"
    if isinstance(exc, NotImplementedError) or _UNSUPPORTED_RE.search(text):
        return "unsupported-format", f"a format variant lookalike cannot decode: {text}"
    if _TRUNCATED_RE.search(text):
        return "truncated", f"the file ends early: {text}"
    return "corrupt", f"damaged image data: {type(exc).__name__}: {text}"


def _cut_short(data: bytes) -> bool:
    """Whether a container's own length fields say the data ends early (RIFF: WebP;
    ISO-BMFF: HEIF, AVIF), for decoders that report a cut file as generic damage."""
    if data[:4] == b"RIFF" and len(data) >= 8:
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    if data[4:8] == b"ftyp":
        pos = 0
        while pos + 8 <= len(data):
            size = int.from_bytes(data[pos:pos + 4], "big")
            if size == 1 and pos + 16 <= len(data):
                size = int.from_bytes(data[pos + 8:pos + 16], "big")
            if size == 0:  # "to the end of the file"
                return False
            if size < 8:
                return False  # damaged, not cut
            pos += size
        return pos > len(data)
    return False


#: Formats Pillow reads that lookalike never decodes. PostScript (EPS) is a program: Pillow
#: renders it by running Ghostscript on it, and a scraped folder's files must not run code.
REFUSED_FORMATS = frozenset({"EPS"})


@lru_cache(maxsize=1)
def _formats() -> tuple[str, ...]:
    """The Pillow formats :func:`decode_bytes` opens: every registered one (plugins too) but
    :data:`REFUSED_FORMATS`."""
    register_plugins()
    Image.init()
    return tuple(f for f in Image.ID if f not in REFUSED_FORMATS)


def _unidentified(data: bytes, max_pixels: int) -> tuple[str, str]:
    """Explain a file Pillow could not identify: not an image, an unsupported variant, a
    missing plugin, a format never decoded, or a recognisable image whose header is damaged
    or cut short."""
    head = data[:16]
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):  # PostScript, DOS EPS binary
        return ("unsupported-format", "PostScript (EPS) is never decoded: Pillow would run "
                "Ghostscript on the file's program; convert files you trust to an image format")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip archive (also .cbz)
        return ("unsupported-format", "a zip archive: its images are not read; extract them, "
                "or pack them as a .tar shard (read member by member)")
    if data[257:262] == b"ustar":  # a tar shard read as one image (a file list's line)
        return ("unsupported-format", "a .tar shard, read as one image: shards are read "
                "member by member when named as inputs, not in a file list")
    if head.startswith((b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!")):
        return ("unsupported-format", "a compressed file (gzip, 7z or RAR): not read; "
                "decompress it (a plain .tar inside is read as a shard)")
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS and not register_plugins():
        return ("unsupported-format", "a HEIC/HEIF image; decoding it needs the pillow-heif "
                f"package: {INSTALL_HINTS['heif']}")
    if head[4:8] == b"ftyp" and head[8:12] in AVIF_BRANDS and not features.check("avif"):
        return ("unsupported-format", "an AVIF image; decoding it needs Pillow >= 11.3 built "
                "with libavif")
    # Ask the plugins that claim this signature what is wrong (Image.open hides it).
    for fid in _formats():
        factory, accept = Image.OPEN[fid]
        try:
            claimed = accept(head) if accept else False
        except Exception:
            continue
        if isinstance(claimed, str):  # "possibly X, but support is not installed"
            return "unsupported-format", claimed
        if not claimed:
            continue
        try:
            factory(io.BytesIO(data), "")
        except Exception as exc:
            reason, message = _reason_for(exc, max_pixels)
            if reason == "corrupt" and _cut_short(data):
                reason, message = "truncated", f"the file is shorter than its header says: {exc}"
            return reason, f"{fid}: {message}"
        return "corrupt", f"a {fid} file Pillow could not open"
    return "unsupported-format", "not an image, or a format lookalike cannot read"


# --- Camera RAW (LibRaw through rawpy) ---------------------------------------------------------

#: Camera RAW containers that are not plain TIFF: (signature, its offset, format name).
_RAW_MAGIC = (
    (b"FUJIFILMCCD-RAW", 0, "RAF"), (b"IIRO", 0, "ORF"), (b"IIRS", 0, "ORF"), (b"MMOR", 0, "ORF"),
    (b"IIU\x00", 0, "RW2"), (b"ftypcrx ", 4, "CR3"), (b"HEAPCCDR", 6, "CRW"), (b"FOVb", 0, "X3F"),
    (b"\x00MRM", 0, "MRW"),
)
#: The format names :func:`decode_bytes` gives camera RAW files (they get no pixel digest).
RAW_FORMATS = frozenset({name for _, _, name in _RAW_MAGIC} | {"CR2", "DNG", "RAW"})
_TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
# TIFF tags that mark a camera RAW: DNGVersion; PhotometricInterpretation CFA or LinearRaw;
# NewSubfileType "reduced" first with SubIFDs holding the full image (TIFF/EP: NEF, ARW, SRW).
_DNG_VERSION, _PHOTOMETRIC, _SUBFILE_TYPE, _SUB_IFDS = 50706, 262, 254, 330
_RAW_PHOTOMETRIC = frozenset((32803, 34892))
#: LibRaw's ``flip`` (bit 0: mirror x, bit 1: mirror y, bit 2: swap axes) as a Pillow transpose.
_LIBRAW_FLIP = {1: Image.Transpose.FLIP_LEFT_RIGHT, 2: Image.Transpose.FLIP_TOP_BOTTOM,
                3: Image.Transpose.ROTATE_180, 4: Image.Transpose.TRANSPOSE,
                5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270,
                7: Image.Transpose.TRANSVERSE}


@lru_cache(maxsize=1)
def _rawpy() -> Any:
    """The ``rawpy`` module (extra ``raw``), or None when it is not installed."""
    # lookalike decodes one file per worker process: LibRaw's OpenMP threads would only
    # oversubscribe the cores, and a process forked while an OpenMP thread pool runs (the
    # review page's RAW thumbnails are made in the parent) can deadlock. With one OpenMP
    # thread there is no pool, so rawpy's warning about forked workers, printed by every
    # worker that reads a RAW file, does not apply.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.filterwarnings("ignore", message="rawpy is being used in a process created by",
                            category=RuntimeWarning)
    try:
        import rawpy
    except ImportError:
        return None
    return rawpy


def _tiff_ifds(data: bytes, limit: int = 16) -> Iterator[ImageFileDirectory_v2]:
    """The IFDs of TIFF-structured ``data`` (the main chain and SubIFDs), parsed by Pillow.

    ORF and RW2 are TIFF with their own signature, read here as TIFF. Stops at ``limit``
    IFDs, so a looping chain ends; raises for an IFD that cannot be read."""
    header = data[:2] + (b"*\x00" if data[:2] == b"II" else b"\x00*") + data[4:8]
    todo = [ImageFileDirectory_v2(header).next]
    seen: set[int] = set()
    fp = io.BytesIO(data)
    while todo and len(seen) < limit:
        offset = todo.pop(0)
        if not offset or offset in seen:
            continue
        seen.add(offset)
        if offset >= len(data):
            raise EOFError(f"an image directory at byte {offset:,} lies past the end")
        ifd = ImageFileDirectory_v2(header)
        fp.seek(offset)
        ifd.load(fp)
        yield ifd
        todo += [ifd.next, *ifd.get(_SUB_IFDS, ())]


def _raw_kind(data: bytes) -> str | None:
    """The camera RAW format of ``data`` from its content ("DNG", "CR2", "CR3", "RAF", ...;
    "RAW" for other TIFF-based ones: NEF, ARW, PEF, SRW), or None for anything else (plain
    TIFFs included)."""
    for magic, at, name in _RAW_MAGIC:
        if data[at:at + len(magic)] == magic:
            return name
    if data[:4] not in _TIFF_HEADERS:
        return None
    if data[8:10] == b"CR":
        return "CR2"
    try:
        ifd0 = next(_tiff_ifds(data, limit=1))
    except Exception:  # a damaged TIFF: Pillow will say what is wrong with it
        return None
    if _DNG_VERSION in ifd0:
        return "DNG"
    if ifd0.get(_PHOTOMETRIC) in _RAW_PHOTOMETRIC or (
            ifd0.get(_SUBFILE_TYPE, 0) & 1 and _SUB_IFDS in ifd0):
        return "RAW"
    return None


def _raw_data_end(data: bytes) -> int:
    """Where the last strip or tile of a TIFF-structured RAW ends, by its own directories.

    The embedded preview often lies before the sensor data: a file cut in the sensor data
    still shows a good preview, and would be kept in place of an intact JPEG of the shot."""
    end = 0
    for ifd in _tiff_ifds(data):
        for offsets, counts in ((273, 279), (324, 325)):  # strips, tiles
            end = max([end, *(o + c for o, c in zip(ifd.get(offsets, ()), ifd.get(counts, ()),
                                                    strict=False))])
    return end


def _raw_reason(exc: Exception) -> tuple[str, str]:
    rawpy = _rawpy()
    text = exc.args[0].decode(errors="replace") if exc.args and isinstance(
        exc.args[0], bytes) else str(exc)
    if isinstance(exc, rawpy.LibRawFileUnsupportedError):
        return "unsupported-format", f"a RAW variant LibRaw cannot read: {text}"
    if isinstance(exc, rawpy.LibRawIOError):
        return "truncated", f"the RAW file ends early: {text}"
    if isinstance(exc, (rawpy.LibRawTooBigError, rawpy.LibRawUnsufficientMemoryError)):
        return "too-large", f"LibRaw: {text}"
    return "corrupt", f"damaged RAW data: {type(exc).__name__}: {text}"


def _open_raw(data: bytes, kind: str, max_pixels: int
              ) -> tuple[Image.Image, int, tuple[int, int]]:
    """A camera RAW file as ``(image, LibRaw flip still to apply, oriented full size)``.

    The embedded preview (JPEG, returned unloaded so fast mode can decode it at reduced
    scale, or a bitmap) when its shorter side is at least ``FAST_MIN_SIDE`` and it has the
    sensor image's shape; else LibRaw's half-size rendering (camera white balance, sRGB
    curve), already upright.
    """
    rawpy = _rawpy()
    if rawpy is None:
        raise DecodeError("unsupported-format", f"a camera RAW image ({kind}); decoding it needs "
                          f"the rawpy package: {INSTALL_HINTS['raw']}")
    if data[:4] in _TIFF_HEADERS or kind in ("ORF", "RW2"):
        try:
            end = _raw_data_end(data)
        except Exception as exc:
            raise DecodeError("truncated", f"the RAW file's directories are cut: {exc}") from exc
        if end > len(data):
            raise DecodeError("truncated", f"the file ends early: {len(data):,} bytes, its image "
                              f"data runs to byte {end:,}")
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            width, height = sizes.width, sizes.height
            if width * height > max_pixels:
                raise _too_large(width * height, max_pixels, f"{width}x{height} declares")
            full_size = (height, width) if sizes.flip & 4 else (width, height)
            try:
                thumb = raw.extract_thumb()
            except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
                thumb = None
            if thumb is not None:
                preview = (Image.open(io.BytesIO(thumb.data), formats=["JPEG"])
                           if thumb.format == rawpy.ThumbFormat.JPEG
                           else Image.fromarray(thumb.data))
                pw, ph = preview.size
                # Not a letterboxed or cropped thumbnail: the sensor's shape within 2%.
                if min(pw, ph) >= FAST_MIN_SIDE and abs(pw * height - ph * width) <= (
                        0.02 * ph * width):
                    return preview, sizes.flip, full_size
            # The sRGB tone curve (LibRaw's default is BT.709's): as the camera's JPEGs are.
            pixels = raw.postprocess(half_size=True, use_camera_wb=True, gamma=(2.4, 12.92))
            return Image.fromarray(pixels), 0, full_size
    except rawpy.LibRawError as exc:
        raise DecodeError(*_raw_reason(exc)) from exc


def decode_bytes(data: bytes, *, mode: DecodeMode = "full",
                 max_pixels: int = DEFAULT_MAX_PIXELS, want_pixel_digest: bool = False
                 ) -> tuple[Picture, str | None, str | None]:
    """Decode ``data`` into a :class:`Picture` (first frame, oriented, ``L`` or ``RGB``).

    Returns ``(picture, format, pixel_digest)``; ``pixel_digest`` is the SHA-256 of the RGB
    pixels when ``want_pixel_digest`` and the image was fully decoded, else ``None``.

    Images declaring more than ``max_pixels`` pixels are refused from their header, before
    pixel memory is allocated (so are those above Pillow's own limit, see the module notes).

    Camera RAW files, recognised by content, are read with LibRaw (``rawpy``): the embedded
    preview when it is large enough (at least ``FAST_MIN_SIDE`` on its shorter side, the
    sensor's shape) and else a half-size rendering, turned upright by the RAW's orientation;
    ``full_size`` is the sensor image's. They get no pixel digest: a RAW is never a
    pixel-exact copy of a JPEG, even of its own preview. Without ``rawpy`` they are
    ``unsupported-format`` with the install hint.

    Raises:
        DecodeError: with a stable ``reason`` code for any data that is not a usable image;
            no other exception escapes for bad data (``KeyboardInterrupt`` does).
    """
    if not data:
        raise DecodeError("empty-file", "the file is empty (0 bytes)")
    register_plugins()
    raw_kind = _raw_kind(data)
    try:
        if raw_kind:
            img, flip, (width, height) = _open_raw(data, raw_kind, max_pixels)
            fmt: str | None = raw_kind
        else:
            try:
                img = Image.open(io.BytesIO(data), formats=_formats())
            except UnidentifiedImageError:
                raise DecodeError(*_unidentified(data, max_pixels)) from None
            fmt, flip = img.format, None
            width, height = img.size
        if width * height > max_pixels:
            raise _too_large(width * height, max_pixels, f"{width}x{height} declares")
        # No seek: Image.open presents the first frame (PSD: the merged image), and asking
        # for n_frames would make GIF and APNG read every frame.
        reduced = mode == "fast" and _reduce_for_fast(img)
        img.load()
        if img.width * img.height > max_pixels:  # a plugin (ICO, ICNS) picked a larger size
            raise _too_large(img.width * img.height, max_pixels, "decoded to")
        before = img.size
        if flip is None:
            _orient(img)
            full_size = (height, width) if img.size != before else (width, height)
        else:  # a RAW: LibRaw's orientation, never the preview's own EXIF
            if flip:
                img = img.transpose(_LIBRAW_FLIP[flip])
            full_size = (width, height)
        if reduced:
            # Only JPEGs are reduced: libjpeg's DCT scaling saves most of their decode time.
            # Other formats decode in full anyway, and shrinking them would only move their
            # hashes away from full decoding (lookalike.grouping.confirm relies on that).
            pic = Picture(normalize(_shrink(img)), full_size=full_size, reduced=True)
        else:
            pic = Picture(normalize(img), full_size=full_size if raw_kind else None)
    except DecodeError:
        raise
    except (Exception, MemoryError) as exc:  # any decoder failure is this file's problem only
        reason, message = _reason_for(exc, max_pixels)
        if reason == "corrupt" and _cut_short(data):
            reason, message = "truncated", f"the file is shorter than its header says: {exc}"
        raise DecodeError(reason, message) from exc
    digest = None
    if want_pixel_digest and not pic.reduced and not raw_kind:
        h = hashlib.sha256()
        h.update(f"{pic.size[0]}x{pic.size[1]}:".encode())
        h.update(pic.rgb_bytes())
        digest = h.hexdigest()
    return pic, fmt, digest


def _orient(img: Image.Image) -> None:
    """Apply the EXIF orientation to ``img`` in place (no copy when it is upright)."""
    # A broken EXIF block must not cost us the picture: keep it as stored.
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(img, in_place=True)


def _reduce_for_fast(img: Image.Image) -> bool:
    """Ask libjpeg to decode at 1/4 or 1/8 scale when that stays >= FAST_MIN_SIDE (only
    JPEGs with a shorter side of at least FAST_REDUCE_FROM_SIDE: see there why not 1/2).

    Measured (``benchmarks/bench_hashing.py --floor``): FAST_MIN_SIDE 64 would save 25% per
    small JPEG but moves dhash-z 16 by up to 27 bits, beyond confirm's margin; 128 saved
    nothing on a whole scan (more exact re-hashes). libjpeg-turbo's scaled decode through
    simplejpeg is only 1.5-3% faster per file than Pillow's draft: not worth a dependency."""
    if img.format not in ("JPEG", "MPO"):  # MPO: a JPEG with more frames after the first
        return False
    w, h = img.size
    if min(w, h) < FAST_REDUCE_FROM_SIDE:
        return False
    target = (max(1, w * FAST_MIN_SIDE // min(w, h)), max(1, h * FAST_MIN_SIDE // min(w, h)))
    before = img.size
    img.draft(img.mode if img.mode in ("L", "RGB") else "RGB", target)
    return img.size != before


def _shrink(img: Image.Image) -> Image.Image:
    """Shrink so the shorter side is about FAST_MIN_SIDE, cheaply (box reduce, then Lanczos)."""
    w, h = img.size
    factor = min(w, h) // FAST_MIN_SIDE
    if factor >= 2:
        img = img.reduce(factor)
    return img


def make_thumbnail(data: bytes, max_side: int = 160, *, quality: int = 70,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A small JPEG of the image file ``data`` (oriented, alpha on white) for reports;
    decodes at reduced scale.

    Raises:
        DecodeError: the data is not a usable image.
    """
    pic = decode_bytes(data, mode="fast", max_pixels=max_pixels)[0]
    img = pic._image.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()
