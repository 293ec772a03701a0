"""Decoding: the only module that imports Pillow.

It turns bytes into a :class:`Picture`: the first frame, EXIF orientation applied,
transparency composited on white, in mode ``L`` or ``RGB``. Format is detected from content
(Pillow's magic-number sniffing), never from the file extension.

Two decode modes:

``"full"``
    decode every pixel, as ``Image.open`` + ImageHash would; hashes are bit-identical to
    ImageHash's.
``"fast"`` (default)
    JPEGs are decoded at reduced scale in the DCT domain (libjpeg scaling via
    ``Image.draft``) and every format is then shrunk to a small working image from which all
    hashes are computed. Much faster on large photos; hashes may drift by a bit or two from
    full decoding (measured in ``benchmarks/bench_drift.py``).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageFilter, ImageOps, UnidentifiedImageError

from .errors import DecodeError

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

#: In fast mode every image is shrunk so its shorter side is at least this many pixels.
#: 4 x the largest default working grid (64 for whash on tiny inputs, 32 for phash) keeps
#: Lanczos down-sampling from the working image close to down-sampling from the original.
FAST_MIN_SIDE = 256

DECODER_VERSION = "1"  # bump when decoding changes hash values (invalidates caches)

# Truncated files must fail loudly, never be half-decoded silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class Picture:
    """A decoded image (mode ``L`` or ``RGB``) with cached derived arrays.

    Hash functions read pixels only through this class, so one decode serves every hash and
    the grey conversion is done once.
    """

    __slots__ = ("_grey", "_image", "_resized", "full_size", "reduced")

    def __init__(self, image: Image.Image, *, full_size: tuple[int, int] | None = None,
                 reduced: bool = False) -> None:
        if image.mode not in ("L", "RGB"):
            raise ValueError(f"Picture needs an L or RGB image, got {image.mode}")
        self._image = image
        self._grey: Image.Image | None = None
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
            self._grey = self._image if self._image.mode == "L" else self._image.convert("L")
        return self._grey

    def grey(self, width: int, height: int) -> np.ndarray:
        """Grey pixels resized to ``width`` x ``height`` with Lanczos, as ImageHash does."""
        key = (width, height)
        arr = self._resized.get(key)
        if arr is None:
            arr = np.asarray(self.grey_image().resize(key, Image.Resampling.LANCZOS))
            self._resized[key] = arr
        return arr

    def grey_full(self) -> np.ndarray:
        return np.asarray(self.grey_image())

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


def resize_grey_array(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Lanczos-resize a uint8 grey array with Pillow (for recipes that resize twice)."""
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), mode="L")
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
    arr = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scaled = arr / 257.0
    else:
        lo, hi = (float(np.nanmin(arr)), float(np.nanmax(arr))) if arr.size else (0.0, 0.0)
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8), "L")


@lru_cache(maxsize=1)
def _register_plugins() -> bool:
    """Register optional format plugins (HEIC/AVIF via pillow-heif) once, if installed."""
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    if hasattr(pillow_heif, "register_avif_opener"):
        pillow_heif.register_avif_opener()
    return True


def _reason_for(exc: BaseException) -> tuple[str, str]:
    text = str(exc) or type(exc).__name__
    low = text.lower()
    if isinstance(exc, Image.DecompressionBombError):
        return "too-large", text
    if isinstance(exc, UnidentifiedImageError):
        return "unsupported-format", "not an image, or a format Pillow cannot read"
    if "truncated" in low or "premature end" in low or "image file is truncated" in low:
        return "truncated", text
    if isinstance(exc, MemoryError):
        return "too-large", "out of memory while decoding"
    return "corrupt", f"{type(exc).__name__}: {text}"


def decode_bytes(data: bytes, *, mode: DecodeMode = "full",
                 max_pixels: int = DEFAULT_MAX_PIXELS, want_pixel_digest: bool = False
                 ) -> tuple[Picture, str | None, str | None]:
    """Decode ``data`` into a :class:`Picture`.

    Returns ``(picture, format, pixel_digest)``; ``pixel_digest`` is the SHA-256 of the RGB
    pixels when ``want_pixel_digest`` and the image was fully decoded, else ``None``.

    Raises:
        DecodeError: with a stable ``reason`` code for any file that is not a usable image.
    """
    if not data:
        raise DecodeError("empty-file", "the file is empty (0 bytes)")
    _register_plugins()
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
        width, height = img.size
        if width * height > max_pixels:
            raise DecodeError(
                "too-large",
                f"{width}x{height} = {width * height:,} pixels exceeds the limit of "
                f"{max_pixels:,}; raise --max-pixels if you trust this file",
            )
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        reduced = False
        if mode == "fast":
            reduced = _reduce_for_fast(img)
        img.load()
        swap = _orientation_swaps_axes(img)
        img = _orient(img)
        full_size = (height, width) if swap else (width, height)
        if reduced or (mode == "fast" and min(img.size) > 2 * FAST_MIN_SIDE):
            img = _shrink(img)
            reduced = True
        pic_image = normalize(img)
        if reduced:
            pic = Picture(pic_image, full_size=full_size, reduced=True)
        else:
            pic = Picture(pic_image)
    except DecodeError:
        raise
    except (Exception, MemoryError) as exc:  # any decoder failure is this file's problem only
        reason, message = _reason_for(exc)
        raise DecodeError(reason, message) from exc
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
    if img.format != "JPEG":
        return False
    w, h = img.size
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
