"""Perceptual hash algorithms: pure functions of a decoded :class:`~lookalike.decode.Picture`.

Every algorithm ImageHash 4.3 also has reproduces it bit for bit on the same image (same
Pillow resize, same arithmetic), so hex strings interoperate. ``dhash-z`` is the folklore
"z-transform" recipe: grey, Lanczos to ``hash_size`` x ``hash_size``, map pixels through
their own percentiles 0..99, then ImageHash's dHash (which resizes that to 9x8 again).

Hashes are returned as :class:`~lookalike.model.Hash`: integers, not boolean arrays, so
distances are a popcount and storage is compact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .decode import Picture, resize_grey_array
from .model import Hash

__all__ = ["METHODS", "HashMethod", "bits_to_int", "compute_hash", "get_method"]


def bits_to_int(bits: np.ndarray) -> int:
    """Pack a boolean array, row-major, first bit most significant (ImageHash's hex order)."""
    flat = np.asarray(bits, dtype=bool).ravel()
    packed = np.packbits(flat)
    return int.from_bytes(packed.tobytes(), "big") >> (packed.size * 8 - flat.size)


def _check_size(hash_size: int, minimum: int = 2) -> None:
    if hash_size < minimum:
        raise ValueError(f"hash_size must be >= {minimum}, got {hash_size}")


def ahash_bits(pic: Picture, hash_size: int) -> np.ndarray:
    pixels = pic.grey(hash_size, hash_size)
    return pixels > np.mean(pixels)


def phash_bits(pic: Picture, hash_size: int, highfreq_factor: int = 4) -> np.ndarray:
    import scipy.fftpack  # ImageHash's DCT; scipy.fft rounds differently in the last ulp

    n = hash_size * highfreq_factor
    pixels = pic.grey(n, n)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:hash_size, :hash_size]
    return low > np.median(low)


def _dhash_of(pixels: np.ndarray) -> np.ndarray:
    return pixels[:, 1:] > pixels[:, :-1]


def dhash_bits(pic: Picture, hash_size: int) -> np.ndarray:
    return _dhash_of(pic.grey(hash_size + 1, hash_size))


def dhash_vertical_bits(pic: Picture, hash_size: int) -> np.ndarray:
    pixels = pic.grey(hash_size, hash_size + 1)
    return pixels[1:, :] > pixels[:-1, :]


def ztransform(pixels: np.ndarray) -> np.ndarray:
    """Map grey pixels through their own percentiles 0..99 onto 0..255 (folklore recipe)."""
    data = pixels.ravel().astype(np.float64)
    quantiles = np.arange(100)
    values = np.percentile(data, quantiles)
    z = (np.interp(data, values, quantiles) / 100 * 255).astype(np.uint8)
    return z.reshape(pixels.shape)


def dhash_z_bits(pic: Picture, hash_size: int) -> np.ndarray:
    small = ztransform(pic.grey(hash_size, hash_size))
    # The recipe hands the 8x8 image to imagehash.dhash, which resizes it to 9x8: keep that.
    return _dhash_of(resize_grey_array(small, hash_size + 1, hash_size))


def whash_bits(pic: Picture, hash_size: int) -> np.ndarray:
    import pywt

    if hash_size & (hash_size - 1):
        raise ValueError(f"whash needs a power-of-two hash_size, got {hash_size}")
    natural = 2 ** int(np.log2(min(pic.size)))
    scale = max(natural, hash_size)
    ll_max_level = int(np.log2(scale))
    level = int(np.log2(hash_size))
    pixels = pic.grey(scale, scale) / 255.0
    coeffs = list(pywt.wavedec2(pixels, "haar", level=ll_max_level))
    coeffs[0] *= 0
    pixels = pywt.waverec2(coeffs, "haar")
    low = pywt.wavedec2(pixels, "haar", level=ll_max_level - level)[0]
    return low > np.median(low)


def colorhash_bits(pic: Picture, binbits: int) -> np.ndarray:
    intensity = pic.grey_full().ravel()
    h, s, _ = (band.ravel() for band in pic.hsv_full())
    mask_black = intensity < 256 // 8
    frac_black = mask_black.mean()
    mask_gray = s < 256 // 3
    frac_gray = np.logical_and(~mask_black, mask_gray).mean()
    mask_colors = np.logical_and(~mask_black, ~mask_gray)
    mask_faint = np.logical_and(mask_colors, s < 256 * 2 // 3)
    mask_bright = np.logical_and(mask_colors, s > 256 * 2 // 3)
    c = max(1, int(mask_colors.sum()))
    hue_bins = np.linspace(0, 255, 6 + 1)
    faint = np.histogram(h[mask_faint], bins=hue_bins)[0] if mask_faint.any() else np.zeros(6)
    bright = np.histogram(h[mask_bright], bins=hue_bins)[0] if mask_bright.any() else np.zeros(6)
    maxvalue = 2**binbits
    values = [min(maxvalue - 1, int(frac_black * maxvalue)),
              min(maxvalue - 1, int(frac_gray * maxvalue))]
    values += [min(maxvalue - 1, int(count * maxvalue * 1.0 / c)) for count in [*faint, *bright]]
    bits = [v // (2 ** (binbits - i - 1)) % 2 ** (binbits - i) > 0
            for v in values for i in range(binbits)]
    return np.asarray(bits, dtype=bool)


# --- crop-resistant hash (Jain et al. 2014, as ImageHash implements it) ------------------

SEGMENTATION_SIZE = 300
SEGMENT_THRESHOLD = 128
MIN_SEGMENT_SIZE = 500


def _segments(pixels: np.ndarray, threshold: float, min_size: int) -> list[np.ndarray]:
    """ImageHash's hill/valley flood fill, reproduced with ``scipy.ndimage.label``.

    Two quirks of the reference are kept on purpose so results stay identical: a region of a
    single pixel is never counted as segmented, and the valley search stops as soon as the
    count of segmented pixels plus the image border (4 x side) reaches the pixel count.
    """
    from scipy import ndimage

    h, w = pixels.shape
    hills = pixels > threshold
    segments: list[np.ndarray] = []
    counted = 2 * (h + w)  # the border cells the reference pre-marks as segmented
    for mask, stop_early in ((hills, False), (~hills, True)):
        labels, n = ndimage.label(mask)  # 4-connectivity, labels in raster order of 1st pixel
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        for lab in range(1, n + 1):
            if stop_early and counted >= h * w:
                break
            size = int(sizes[lab])
            if size > 1:
                counted += size
            if size > min_size:
                segments.append(np.argwhere(labels == lab))
    return segments


def crop_resistant_segments(pic: Picture, hash_size: int) -> list[np.ndarray]:
    pixels = pic.segmentation_grey(SEGMENTATION_SIZE)
    segs = _segments(pixels, SEGMENT_THRESHOLD, MIN_SEGMENT_SIZE)
    if not segs:
        last = SEGMENTATION_SIZE - 1
        segs = [np.array([[0, 0], [last, last]])]
    w, h = pic.size
    sw, sh = w / SEGMENTATION_SIZE, h / SEGMENTATION_SIZE
    out = []
    for seg in segs:
        min_y, min_x = seg.min(axis=0)
        max_y, max_x = seg.max(axis=0) + 1
        box = (float(min_x * sw), float(min_y * sh), float(max_x * sw), float(max_y * sh))
        out.append(dhash_bits(pic.crop(box), hash_size))
    return out


# --- registry -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HashMethod:
    """One algorithm: how to compute it and what its ``hash_size`` means."""

    name: str
    compute: Callable[[Picture, int], np.ndarray | list[np.ndarray]]
    default_size: int
    nbits: Callable[[int], int]
    summary: str
    size_meaning: str = "grid side: the hash has hash_size**2 bits"
    imagehash: str | None = None  # the ImageHash function it equals bit for bit
    min_size: int = 2

    def hash(self, pic: Picture, hash_size: int | None = None) -> Hash:
        size = self.default_size if hash_size is None else hash_size
        _check_size(size, self.min_size)
        bits = self.compute(pic, size)
        arrays = bits if isinstance(bits, list) else [bits]
        return Hash(self.name, self.nbits(size), tuple(bits_to_int(b) for b in arrays))


def _square(size: int) -> int:
    return size * size


METHODS: dict[str, HashMethod] = {
    m.name: m
    for m in [
        HashMethod("ahash", ahash_bits, 8, _square,
                   "average hash: each pixel above the mean; fastest, weakest",
                   imagehash="average_hash"),
        HashMethod("phash", phash_bits, 8, _square,
                   "perceptual hash: signs of low DCT frequencies; robust to re-encoding",
                   imagehash="phash"),
        HashMethod("dhash", dhash_bits, 8, _square,
                   "difference hash: horizontal gradients; fast and good", imagehash="dhash"),
        HashMethod("dhash-v", dhash_vertical_bits, 8, _square,
                   "difference hash on vertical gradients", imagehash="dhash_vertical"),
        HashMethod("dhash-z", dhash_z_bits, 8, _square,
                   "folklore recipe: dhash after a percentile (z) transform"),
        HashMethod("whash", whash_bits, 8, _square,
                   "wavelet hash (Haar); hash_size must be a power of two",
                   imagehash="whash"),
        HashMethod("colorhash", colorhash_bits, 3, lambda b: 14 * b,
                   "HSV colour histogram; ignores layout (hash_size = bits per bin)",
                   size_meaning="bits per colour bin: the hash has 14 * hash_size bits",
                   imagehash="colorhash", min_size=1),
        HashMethod("crop-resistant", crop_resistant_segments, 8, _square,
                   "dhash of each bright/dark region; matches crops (slow)",
                   size_meaning="dhash size of each region hash", imagehash="crop_resistant_hash"),
    ]
}


def get_method(name: str) -> HashMethod:
    """Look a method up by name; the error lists the valid names."""
    try:
        return METHODS[name]
    except KeyError:
        from .errors import ConfigError

        raise ConfigError(
            f"unknown hash method {name!r}; choose one of: {', '.join(METHODS)}"
        ) from None


def compute_hash(pic: Picture, method: str = "dhash-z", hash_size: int | None = None) -> Hash:
    """Hash a decoded picture with ``method`` (see :data:`METHODS`)."""
    return get_method(method).hash(pic, hash_size)
