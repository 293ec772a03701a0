"""Decoding: the only module that imports Pillow.

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
optional ``pillow-heif`` package is installed (``pip install 'lookalike[heif]'``).

Multi-frame files (animated GIF/PNG/WebP, multi-page TIFF, MPO, layered PSD, HEIF sequences)
are hashed by their *first* frame: the one Pillow presents on open (PSD: the merged image;
MPO and HEIF: the primary image). Later frames are never read, so a huge or broken later frame
cannot hurt.

Bad input never escapes as anything but :class:`~lookalike.errors.DecodeError`, whose
``reason`` is one of ``empty-file``, ``unsupported-format``, ``truncated``, ``corrupt`` or
``too-large`` (see :data:`lookalike.errors.REASONS`). Images declaring more than
``max_pixels`` are refused from their header, before any pixel memory is allocated; Pillow's
own bomb guards (also applied to frames whose size is only known while loading) are aligned
with the same limit.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import warnings
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageFilter, ImageOps, UnidentifiedImageError, features

from lookalike.config import DECODER_VERSION as _DECODER_VERSION
from lookalike.config import FAST_MIN_SIDE as _FAST_MIN_SIDE
from lookalike.errors import DecodeError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodeMode",
    "Picture",
    "decode_bytes",
    "make_thumbnail",
    "open_picture",
]

DecodeMode = Literal["fast", "full"]

#: Refuse images that declare more pixels than this (decompression bombs), before decoding.
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own warning limit x 2 would be ~179M; we error at it.

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

    def grey_image(self) -> Image.Image:
        if self._grey is None:
            if self._image.mode == "L":
                self._grey = self._image
            else:
                self._grey, self._grey_pixels = _grey_of(self._image)
        return self._grey

    def grey(self, width: int, height: int) -> np.ndarray:
        """Grey pixels resized to ``width`` x ``height`` with Lanczos, as ImageHash does."""
        key = (width, height)
        arr = self._resized.get(key)
        if arr is None:
            grey = self.grey_image()
            if self.reduced and _matmul_pays(grey.size, key):
                # The working copy of fast mode: Pillow's pixels, about twice as fast.
                arr = lanczos_grey(self.grey_full(), width, height)
            else:
                arr = np.asarray(grey.resize(key, Image.Resampling.LANCZOS))
            self._resized[key] = arr
        return arr

    def grey_full(self) -> np.ndarray:
        """Every grey pixel (read-only)."""
        grey = self.grey_image()
        if self._grey_pixels is None:
            self._grey_pixels = np.asarray(grey)
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

    def rgb_bytes(self) -> bytes:
        img = self._image if self._image.mode == "RGB" else self._image.convert("RGB")
        return img.tobytes()


# Pillow's Lanczos resize of an 8-bit image (libImaging/Resample.c), replayed with NumPy. For
# the tiny grids hashes read, a float64 matrix product per pass (BLAS) beats Pillow's per-tap
# integer loop: in a scan, dhash's 9 x 8 grid of a 600 x 400 working image takes ~0.75 ms
# instead of ~1.3 ms, the largest cost lookalike adds to a fast decode. The arithmetic is
# Pillow's: int32 coefficients in 22-bit fixed point, a rounded and clipped 8-bit image after
# each pass, passes in Pillow's order. Products and sums stay below 2**31, exact in float64,
# so the pixels are Pillow's (tests/test_decode.py checks many sizes against Pillow).
_PRECISION_BITS = 22
#: Larger outputs (whash's 256 x 256, phash at hash size 16) are cheaper with Pillow's loop.
_MATMUL_MAX_OUT = 20
_MATMUL_MAX_PIXELS = 1 << 21
_MATMUL_MAX_SIDE = 4096  # bounds a cached coefficient matrix (4096 x 20 doubles, 640 KiB)
#: Resizes (image size + grid) seen once; see _matmul_pays.
_SIGHTED: dict[tuple[int, int, int, int], None] = {}
# OpenBLAS runs a product on several threads when m*n*k > 65536*4 (interface/gemm.c): one
# worker must stay on its core (the others belong to other workers; on a busy machine the
# threads' hand-offs cost more than the product), so products go in row blocks within that,
# unless OpenBLAS was told to use one thread (as the CLI tells itself and its workers): then
# blocks 8x larger, which cut the per-call overhead of ~20 small products per pass and take
# ~15% (9-wide grid) to ~35% (16-wide) off a 1200 x 461 working image's first pass.
_BLAS_BLOCK = 1 << 18
_BLAS_BLOCK_ONE_THREAD = 1 << 21


@lru_cache(maxsize=1)
def _blas_block() -> int:
    """Row-block budget (m*n*k) of :func:`_pass` for this process's OpenBLAS threading."""
    for name in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name)
        if value:  # OpenBLAS reads the first of these that is set
            return _BLAS_BLOCK_ONE_THREAD if value.strip() == "1" else _BLAS_BLOCK
    return _BLAS_BLOCK


def _matmul_pays(size: tuple[int, int], out: tuple[int, int]) -> bool:
    """Whether to resize ``size`` to ``out`` with :func:`lanczos_grey`: small grids only, and
    only from the second image of a size on. Its coefficients take ~0.5 ms to compute (Pillow
    recomputes its own, in C, on every call), repaid by the second image of a size; photo
    collections repeat a few sizes, so a size seen once is left to Pillow."""
    if not 0 < min(out) <= max(out) <= _MATMUL_MAX_OUT or max(size) > _MATMUL_MAX_SIDE or (
            size[0] * size[1] > _MATMUL_MAX_PIXELS):
        return False
    key = (*size, *out)
    if key in _SIGHTED:
        return True
    if len(_SIGHTED) >= 4096:
        _SIGHTED.clear()
    _SIGHTED[key] = None
    return False


@lru_cache(maxsize=64)
def _lanczos_weights(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's fixed-point Lanczos coefficients (``precompute_coeffs`` then
    ``normalize_coeffs_8bpc``) as an ``(in_size, out_size)`` float64 matrix."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    centers = (np.arange(out_size) + 0.5) * scale
    # C's (int) truncates toward zero, as astype does.
    first = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    stop = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    idx = first[:, None] + np.arange(int(np.ceil(support)) * 2 + 1)[None, :]
    valid = idx < stop[:, None]
    t = ((idx - centers[:, None]) + 0.5) * (1.0 / filterscale)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = t * np.pi
        b = (t / 3) * np.pi
        w = (np.sin(a) / a) * (np.sin(b) / b)
    w[t == 0.0] = 1.0
    w[~valid | (t < -3.0) | (t >= 3.0)] = 0.0
    # Each row summed left to right, as Pillow does (np.sum would sum pairwise).
    total = np.cumsum(w, axis=1)[:, -1:]
    np.divide(w, total, out=w, where=total != 0.0)
    v = w * (1 << _PRECISION_BITS)
    k = np.where(v < 0, np.trunc(v - 0.5), np.trunc(v + 0.5))
    out, tap = np.nonzero(valid)
    matrix = np.zeros((in_size, out_size))
    matrix[idx[out, tap], out] = k[out, tap]
    matrix.flags.writeable = False
    return matrix


def _pass(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One resampling pass along the rows of ``x``, rounded and clipped to 8 bits as Pillow's
    is; returned transposed, ``weights.T @ x.T``: the layout BLAS runs fastest here."""
    n, taps = x.shape
    rows = max(1, _blas_block() // (taps * weights.shape[1]))
    wt = weights.T
    acc = np.empty((weights.shape[1], n))
    # Row blocks go to float64 through one reused buffer (at most 2**21 / outputs doubles,
    # in cache), not a float64 copy of the whole image: 8 bytes a pixel of fresh memory.
    buf = np.empty((min(rows, n), taps))
    for i in range(0, n, rows):
        block = x[i:i + rows]
        if block.dtype != np.float64:
            block = buf[:len(block)]
            np.copyto(block, x[i:i + rows])
        np.matmul(wt, block.T, out=acc[:, i:i + rows])
    acc += 1 << (_PRECISION_BITS - 1)
    acc *= 1.0 / (1 << _PRECISION_BITS)
    return np.clip(np.floor(acc, out=acc), 0.0, 255.0, out=acc)


def _lanczos_grey(arr: np.ndarray, width: int, height: int, vertical_first_rule: bool
                  ) -> np.ndarray:
    in_h, in_w = arr.shape
    x = arr
    # Pillow >= 13 runs the vertical pass first when the height shrinks much more than the
    # width (older ones always start with the horizontal pass).
    if vertical_first_rule and in_h - height > 0 and in_h - height > 2 * (in_w - width):
        x = _pass(x.T, _lanczos_weights(in_h, height)) if in_h != height else x  # h x W
        x = _pass(x, _lanczos_weights(in_w, width)).T if in_w != width else x  # h x w
    else:
        x = _pass(x, _lanczos_weights(in_w, width)) if in_w != width else x.T  # w x H
        x = _pass(x, _lanczos_weights(in_h, height)) if in_h != height else x.T  # h x w
    out = np.ascontiguousarray(x, dtype=np.uint8)
    out.flags.writeable = False  # as np.asarray(image) is: Picture caches it
    return out


@lru_cache(maxsize=1)
def _pillow_pass_order() -> bool | None:
    """Which pass order this Pillow uses (see :func:`_lanczos_grey`), found by replaying a
    few resizes that tell them apart; None when neither matches Pillow (a Pillow whose
    arithmetic changed), and then :func:`lanczos_grey` leaves resizing to Pillow."""
    rng = np.random.default_rng(20240601)
    cases = [(rng.integers(0, 256, shape, dtype=np.uint8), out)
             for shape, out in (((97, 13), (7, 5)), ((47, 61), (9, 8)), ((5, 7), (20, 13)),
                                ((120, 90), (8, 9)))]
    for rule in (True, False):
        if all(np.array_equal(_lanczos_grey(arr, *out, rule), np.asarray(
                Image.fromarray(arr, "L").resize(out, Image.Resampling.LANCZOS)))
               for arr, out in cases):
            return rule
    return None


def lanczos_grey(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """``Image.fromarray(arr).resize((width, height), LANCZOS)`` for a 2-D uint8 array: the
    same pixels, computed with NumPy (see above: faster for small outputs only)."""
    rule = _pillow_pass_order()
    if rule is None:
        img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), mode="L")
        return np.asarray(img.resize((width, height), Image.Resampling.LANCZOS))
    return _lanczos_grey(arr, width, height, rule)


def _grey_of(rgb: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """``rgb.convert("L")``, plus its pixels when Pillow can convert straight into memory that
    NumPy owns (the core's ``convert_into``, as ImageTk uses it): reading them then needs no
    ``tobytes``, two more copies of the image. Same conversion, same pixels."""
    rgb.load()
    if not _convert_into_works() or not rgb.width or not rgb.height:
        return rgb.convert("L"), None
    return _convert_into(rgb)


def _convert_into(rgb: Image.Image) -> tuple[Image.Image, np.ndarray]:
    pixels = np.empty((rgb.height, rgb.width), dtype=np.uint8)
    grey = Image.frombuffer("L", rgb.size, pixels, "raw", "L", 0, 1)  # a view of pixels
    rgb.im.convert_into(grey.im)
    pixels.flags.writeable = False
    return grey, pixels


@lru_cache(maxsize=1)
def _convert_into_works() -> bool:
    """Whether this Pillow has ``convert_into`` and writes through ``frombuffer`` views, as
    :func:`_grey_of` needs (both are internals): checked once on a small image."""
    rgb = Image.fromarray(np.arange(60, dtype=np.uint8).reshape(4, 5, 3) * 4, "RGB")
    try:
        grey, pixels = _convert_into(rgb)
    except Exception:
        return False
    want = np.asarray(rgb.convert("L"))
    return np.array_equal(pixels, want) and np.array_equal(np.asarray(grey), want)


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
        scaled = (arr.astype(np.uint32) * 255 + 32767) // 65535
        return Image.fromarray(scaled.astype(np.uint8), "L")
    # 32-bit int and float images have no fixed range: stretch the finite values to 0..255.
    arr = arr.astype(np.float32 if image.mode == "F" else np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        arr = np.where(finite, arr, np.nan)
    lo, hi = (float(np.nanmin(arr)), float(np.nanmax(arr))) if finite.any() else (0.0, 0.0)
    scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8), "L")


@lru_cache(maxsize=1)
def _setup() -> bool:
    """Once per process: register optional format plugins; returns whether HEIF is available.

    Also silences Pillow's per-file warnings (bomb warnings for large-but-allowed images,
    "corrupt EXIF", "malformed MPO", ...): in a scan of 200k files they would flood the
    terminal, and every file that really fails is reported as a problem anyway.
    """
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    # Pillow >= 11.3 decodes AVIF itself; older pillow-heif releases can stand in for it.
    if not features.check("avif") and hasattr(pillow_heif, "register_avif_opener"):
        pillow_heif.register_avif_opener()
    return True


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
        "raise --max-pixels if you trust this file",
    )


def _reason_for(exc: BaseException, max_pixels: int) -> tuple[str, str]:
    """Map any exception a decoder raised to a stable reason code and a message."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, Image.DecompressionBombError):
        found = re.search(r"\((\d+) pixels\)", text)
        err = _too_large(int(found.group(1)), max_pixels) if found else None
        return "too-large", str(err) if err else text
    if isinstance(exc, MemoryError):
        return "too-large", "out of memory while decoding; lower --workers or --max-pixels"
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


def _jpeg_precision(data: bytes) -> int | None:
    """Sample precision from a JPEG's frame header (SOFn), or None if none is found."""
    pos = 2
    while pos + 4 < len(data) and pos < 1 << 20:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return data[pos + 4] if pos + 4 < len(data) else None
        pos += 2 + length
    return None


def _unidentified(data: bytes, max_pixels: int) -> tuple[str, str]:
    """Explain a file Pillow could not identify: not an image, an unsupported variant, a
    missing plugin, or a recognisable image whose header is damaged or cut short."""
    head = data[:16]
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS and not _setup():
        return ("unsupported-format", "a HEIC/HEIF image; decoding it needs the pillow-heif "
                "package: pip install 'lookalike[heif]'")
    if head[4:8] == b"ftyp" and head[8:12] in AVIF_BRANDS and not features.check("avif"):
        return ("unsupported-format", "an AVIF image; decoding it needs Pillow >= 11.3 built "
                "with libavif")
    if head.startswith(b"\xff\xd8"):
        bits = _jpeg_precision(data)
        if bits is not None and bits != 8:
            return ("unsupported-format",
                    f"a {bits}-bit JPEG; Pillow decodes 8-bit JPEGs only")
    # Ask the plugins that claim this signature what is wrong (Image.open hides it).
    for fid in list(Image.ID):
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


def decode_bytes(data: bytes, *, mode: DecodeMode = "full",
                 max_pixels: int = DEFAULT_MAX_PIXELS, want_pixel_digest: bool = False
                 ) -> tuple[Picture, str | None, str | None]:
    """Decode ``data`` into a :class:`Picture` (first frame, oriented, ``L`` or ``RGB``).

    Returns ``(picture, format, pixel_digest)``; ``pixel_digest`` is the SHA-256 of the RGB
    pixels when ``want_pixel_digest`` and the image was fully decoded, else ``None``.

    Images declaring more than ``max_pixels`` pixels are refused from their header, before
    pixel memory is allocated.

    Raises:
        DecodeError: with a stable ``reason`` code for any data that is not a usable image;
            no other exception escapes for bad data (``KeyboardInterrupt`` does).
    """
    if not data:
        raise DecodeError("empty-file", "the file is empty (0 bytes)")
    _setup()
    # Pillow refuses at 2 x MAX_IMAGE_PIXELS, on open and in plugins that learn a frame's size
    # only while loading (GIF, ICO, ICNS, ...): make that limit ours while we decode (with
    # the default, it is Pillow's own), and put back the caller's afterwards.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = (max_pixels + 1) // 2
    try:
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise DecodeError(*_unidentified(data, max_pixels)) from None
        fmt = img.format
        width, height = img.size
        if width * height > max_pixels:
            raise _too_large(width * height, max_pixels, f"{width}x{height} declares")
        # No seek: Image.open presents the first frame (PSD: the merged image), and asking
        # for n_frames would make GIF and APNG read every frame.
        reduced = False
        if mode == "fast":
            reduced = _reduce_for_fast(img)
        _decode_in_one_call(img, len(data))
        img.load()
        if img.width * img.height > max_pixels:  # a plugin (ICO, ICNS) picked a larger size
            raise _too_large(img.width * img.height, max_pixels, "decoded to")
        swap = _orientation_swaps_axes(img)
        img = _orient(img)
        full_size = (height, width) if swap else (width, height)
        if reduced:
            # Only JPEGs are reduced: libjpeg's DCT scaling saves most of their decode time.
            # Other formats decode in full anyway, and shrinking them would only move their
            # hashes away from full decoding (lookalike.grouping.confirm relies on that).
            img = _shrink(img)
        pic_image = normalize(img)
        if reduced:
            pic = Picture(pic_image, full_size=full_size, reduced=True)
        else:
            pic = Picture(pic_image)
    except DecodeError:
        raise
    except (Exception, MemoryError) as exc:  # any decoder failure is this file's problem only
        reason, message = _reason_for(exc, max_pixels)
        if reason == "corrupt" and _cut_short(data):
            reason, message = "truncated", f"the file is shorter than its header says: {exc}"
        raise DecodeError(reason, message) from exc
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    digest = None
    if want_pixel_digest and not pic.reduced:
        h = hashlib.sha256()
        h.update(f"{pic.size[0]}x{pic.size[1]}:".encode())
        h.update(pic.rgb_bytes())
        digest = h.hexdigest()
    return pic, fmt, digest


def _orient(img: Image.Image) -> Image.Image:
    try:
        if img.getexif().get(0x0112, 1) in (1, None):
            return img  # upright already: skip exif_transpose's full-size copy
        return ImageOps.exif_transpose(img) or img
    except Exception:
        # A broken EXIF block must not cost us the picture: keep it as stored.
        return img


def _orientation_swaps_axes(img: Image.Image) -> bool:
    try:
        return img.getexif().get(0x0112) in (5, 6, 7, 8)
    except Exception:
        return False


def _reduce_for_fast(img: Image.Image) -> bool:
    """Ask libjpeg to decode at 1/2, 1/4 or 1/8 scale when that stays >= FAST_MIN_SIDE."""
    if img.format not in ("JPEG", "MPO"):  # MPO: a JPEG with more frames after the first
        return False
    w, h = img.size
    target = (max(1, w * FAST_MIN_SIDE // min(w, h)), max(1, h * FAST_MIN_SIDE // min(w, h)))
    before = img.size
    img.draft(img.mode if img.mode in ("L", "RGB") else "RGB", target)
    return img.size != before


def _decode_in_one_call(img: Image.Image, nbytes: int) -> None:
    """Hand a JPEG's decoder all ``nbytes`` at once instead of Pillow's 64 KiB blocks: libjpeg
    then never suspends and resumes mid-scan. Same pixels, ~2% less decode time."""
    if img.format in ("JPEG", "MPO"):
        img.decodermaxblock = max(img.decodermaxblock, nbytes)


def _shrink(img: Image.Image) -> Image.Image:
    """Shrink so the shorter side is about FAST_MIN_SIDE, cheaply (box reduce, then Lanczos)."""
    w, h = img.size
    factor = min(w, h) // FAST_MIN_SIDE
    if factor >= 2:
        img = img.reduce(factor)
    return img


def open_picture(path: str, *, mode: DecodeMode = "full",
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Read and decode one file (convenience for the API and tests)."""
    with open(path, "rb") as fh:
        data = fh.read()
    return decode_bytes(data, mode=mode, max_pixels=max_pixels)[0]


PictureFactory = Callable[[bytes], Picture]


def make_thumbnail(path: str, max_side: int = 160, *, quality: int = 70,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A small JPEG of ``path`` (oriented, alpha on white) for reports; decodes at reduced scale.

    Raises:
        DecodeError: the file is not a usable image.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    pic = decode_bytes(data, mode="fast", max_pixels=max_pixels)[0]
    img = pic._image.copy()
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()
