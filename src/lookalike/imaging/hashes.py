"""Perceptual hash algorithms: pure functions of a decoded
:class:`~lookalike.imaging.decode.Picture`.

Every algorithm ImageHash 4.3 also has reproduces it bit for bit on the same image (same
Pillow resize, same arithmetic), so hex strings interoperate. ``dhash-z`` is the folklore
"z-transform" recipe: grey, Lanczos to ``hash_size`` x ``hash_size``, map pixels through
their own percentiles 0..99, then ImageHash's dHash (which resizes that to 9x8 again).
(The "corrected" variant that maps percentiles on the 9x8 grid dHash compares was measured
in ``benchmarks/accuracy``: the map is monotonic there, so it equals plain dHash bar ties,
and the folklore double resize turned out to help, not hurt; it is not shipped.)
``pdq`` is Meta's 256-bit PDQ (see :mod:`lookalike.imaging.pdq`), equal to the reference's bits.

Flip/rotation invariance (``invariant=`` of :meth:`HashMethod.hash`) stores the hashes of the
image's mirrored and rotated versions as extra segments; two multi-segment hashes match when
any pair of segments does (:meth:`lookalike.model.Hash.__sub__`). The versions are made from
the small grey grid each hash reads (or, for PDQ, from its DCT block), not from the image.

Hashes are returned as :class:`~lookalike.model.Hash`: integers, not boolean arrays, so
distances are a popcount and storage is compact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from lookalike.config import METHOD_SPECS, PDQ_SIZE, method_spec
from lookalike.imaging.borders import content_box
from lookalike.model import Hash

if TYPE_CHECKING:  # decode imports Pillow: not needed to validate a config or read a cache
    from lookalike.imaging.decode import Picture

__all__ = [
    "INVARIANCES",
    "METHODS",
    "ORIENTATIONS",
    "GreyGrid",
    "HashMethod",
    "Invariance",
    "bits_to_int",
    "compute_hash",
    "compute_pdq",
    "get_method",
]

Invariance = Literal["none", "flips", "rotations", "dihedral"]


class GreyGrid(Protocol):
    """What the grid-based hashes read: the pixel size and small grey resizes."""

    @property
    def size(self) -> tuple[int, int]: ...

    def grey(self, width: int, height: int) -> np.ndarray: ...


def bits_to_int(bits: np.ndarray) -> int:
    """Pack a boolean array, row-major, first bit most significant (ImageHash's hex order)."""
    return bits_to_ints(np.asarray(bits)[np.newaxis])[0]


def bits_to_ints(stack: np.ndarray | Sequence[np.ndarray]) -> list[int]:
    """:func:`bits_to_int` of each array of ``stack`` (along its first axis), packed at once."""
    flat = np.asarray(stack, dtype=bool).reshape(len(stack), -1)
    packed = np.packbits(flat, axis=1)
    shift = packed.shape[1] * 8 - flat.shape[1]
    return [int.from_bytes(row.tobytes(), "big") >> shift for row in packed]


def _check_size(hash_size: int, minimum: int = 2) -> None:
    if hash_size < minimum:
        raise ValueError(f"hash_size must be >= {minimum}, got {hash_size}")


def ahash_bits(pic: GreyGrid, hash_size: int) -> np.ndarray:
    pixels = pic.grey(hash_size, hash_size)
    return pixels > np.mean(pixels)


def phash_bits(pic: GreyGrid, hash_size: int, highfreq_factor: int = 4) -> np.ndarray:
    import scipy.fftpack  # ImageHash's DCT; scipy.fft rounds differently in the last ulp

    n = hash_size * highfreq_factor
    pixels = pic.grey(n, n)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:hash_size, :hash_size]
    return low > np.median(low)


def _dhash_of(pixels: np.ndarray) -> np.ndarray:
    return pixels[:, 1:] > pixels[:, :-1]


def dhash_bits(pic: GreyGrid, hash_size: int) -> np.ndarray:
    return _dhash_of(pic.grey(hash_size + 1, hash_size))


def dhash_vertical_bits(pic: GreyGrid, hash_size: int) -> np.ndarray:
    pixels = pic.grey(hash_size, hash_size + 1)
    return pixels[1:, :] > pixels[:-1, :]


_PERCENTS = np.arange(100)


def ztransform(pixels: np.ndarray) -> np.ndarray:
    """Map grey pixels through their own percentiles 0..99 onto 0..255 (folklore recipe)."""
    data = pixels.ravel().astype(np.float64)
    values = _percentiles(data)
    z = (np.interp(data, values, _PERCENTS) / 100 * 255).astype(np.uint8)
    return z.reshape(pixels.shape)


def _percentiles(data: np.ndarray) -> np.ndarray:
    """``np.percentile(data, np.arange(100))`` ("linear" method), bit for bit.

    Kept over the plain call, the largest cost of the default hash otherwise: NumPy's call
    spends ~55 us on a 256-value grid in argument handling and a 100-way partition, one
    sort and NumPy's interpolation formula ~3.5 us. A cold scan of benchmarks'
    small_tree_20000 takes 25% less CPU with it (5.7 s against 7.6 s, medians of 5
    interleaved runs). Equality with ``np.percentile`` is tested on random, tied and
    constant grids.
    """
    prev, nxt, gamma, one_minus, upper = _percentile_plan(len(data))
    ordered = np.sort(data)
    low, high = ordered[prev], ordered[nxt]
    diff = high - low
    out = low + diff * gamma
    out[upper] = (high - diff * one_minus)[upper]
    return out


@lru_cache(maxsize=16)
def _percentile_plan(n: int) -> tuple[np.ndarray, ...]:
    # numpy.lib._function_base_impl: _quantile with method "linear" (virtual index
    # (n - 1) * q), _get_indexes (indexes at or past the last value read the last value),
    # _get_gamma (virtual - previous index, after that fix) and _lerp (a + d*t, except
    # b - d*(1 - t) where t >= 0.5).
    q = np.true_divide(_PERCENTS, 100)
    virtual = (n - 1) * q
    prev = np.floor(virtual)
    nxt = prev + 1
    past_end = virtual >= n - 1
    prev[past_end] = -1
    nxt[past_end] = -1
    gamma = virtual - prev
    return (prev.astype(np.intp), nxt.astype(np.intp), gamma, 1 - gamma, gamma >= 0.5)


def dhash_z_bits(pic: GreyGrid, hash_size: int) -> np.ndarray:
    small = ztransform(pic.grey(hash_size, hash_size))
    # The recipe hands the 8x8 image to imagehash.dhash, which resizes it to 9x8: keep that.
    from lookalike.imaging.decode import lanczos_grey

    return _dhash_of(lanczos_grey(small, hash_size + 1, hash_size))


def whash_bits(pic: GreyGrid, hash_size: int) -> np.ndarray:
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


# --- PDQ ------------------------------------------------------------------------------------



def _pdq_luma(pic: Picture) -> np.ndarray:
    from lookalike.imaging.pdq import rgb_to_luma

    w, h = pic.size
    # Float luminance from RGB as the reference computes it (Pillow's "L" rounds to integers).
    return rgb_to_luma(np.frombuffer(pic.rgb_bytes(), dtype=np.uint8).reshape(h, w, 3))


def _pdq_dct(pic: Picture) -> tuple[np.ndarray | None, int]:
    from lookalike.imaging.pdq import pdq_from_luma

    return pdq_from_luma(_pdq_luma(pic))


def _check_pdq_size(hash_size: int) -> None:
    if hash_size != PDQ_SIZE:
        raise ValueError(f"pdq is always 256 bits (hash_size {PDQ_SIZE}), got {hash_size}")


def pdq_hash_bits(pic: Picture, hash_size: int) -> np.ndarray:
    from lookalike.imaging.pdq import pdq_bits

    _check_pdq_size(hash_size)
    return pdq_bits(_pdq_dct(pic)[0])


def _pdq_variants(pic: Picture, hash_size: int, ops: Sequence[str]) -> list[np.ndarray]:
    from lookalike.imaging.pdq import flips_exact, pdq_bits, pdq_from_luma, transform_dct

    _check_pdq_size(hash_size)
    luma = _pdq_luma(pic)
    dct, _ = pdq_from_luma(luma)
    if dct is None:
        return [pdq_bits(None)]
    if flips_exact(*luma.shape):
        return [pdq_bits(transform_dct(dct, op)) for op in ops]
    # Each orientation from its own pixels (a flipped 256 x 256 copy missed its original
    # by 20-32 bits when taken from the flipped DCT).
    return [pdq_bits(dct if op == "identity" else pdq_from_luma(
        np.ascontiguousarray(_ARRAY_OPS[op](luma)))[0]) for op in ops]


def compute_pdq(pic: Picture) -> tuple[Hash, int]:
    """PDQ hash and quality score (0..100; below 50 the hash is unreliable) of a picture."""
    from lookalike.imaging.pdq import pdq_bits

    dct, quality = _pdq_dct(pic)
    return Hash("pdq", 256, (bits_to_int(pdq_bits(dct)),)), quality


# --- flips and rotations ------------------------------------------------------------------

#: Orientation name -> ``PIL.Image.Transpose`` value (for ``Picture.transformed``).
ORIENTATIONS: dict[str, int] = {
    "identity": -1, "mirror": 0, "flip": 1, "rotate_90": 2, "rotate_180": 3,
    "rotate_270": 4, "transpose": 5, "transverse": 6,
}  # fmt: skip

#: ``--invariant`` choice -> the orientations whose hashes are stored as segments.
#: "flips" is the left-right mirror only (mirrored selfies, augmentation); use "dihedral"
#: for upside-down mirrors too. Since both sides of a comparison store their versions, the
#: relative transforms matched are these sets' products: "rotations" and "dihedral" are
#: groups, and {identity, mirror} is one as well.
INVARIANCES: dict[str, tuple[str, ...]] = {
    "none": ("identity",),
    "flips": ("identity", "mirror"),
    "rotations": ("identity", "rotate_90", "rotate_180", "rotate_270"),
    "dihedral": ("identity", "mirror", "flip", "rotate_90", "rotate_180", "rotate_270",
                 "transpose", "transverse"),
}

# The same transforms on a [row, column] array, as PIL applies them to an image.
_ARRAY_OPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda a: a,
    "mirror": lambda a: a[:, ::-1],
    "flip": lambda a: a[::-1, :],
    "rotate_90": lambda a: np.rot90(a, 1),  # counter-clockwise, as PIL's ROTATE_90
    "rotate_180": lambda a: a[::-1, ::-1],
    "rotate_270": lambda a: np.rot90(a, -1),
    "transpose": lambda a: a.T,
    "transverse": lambda a: a[::-1, ::-1].T,
}
_SWAPS_AXES = frozenset({"rotate_90", "rotate_270", "transpose", "transverse"})


class _OrientedGrid:
    """A picture seen flipped or rotated, for hashes that read only small grey grids.

    ``grey(w, h)`` of the rotated image is the original's ``grey(h, w)`` rotated: only the
    tiny resized grid is transformed. Pillow resizes width and height in two passes, each
    rounded to 8 bits, so a swapped grid can differ from resizing the rotated image by one
    grey level in a few pixels; hashes of exact rotations stay within a bit or two.
    """

    __slots__ = ("_op", "_pic", "_swap")

    def __init__(self, pic: Picture, op: str) -> None:
        self._pic, self._op, self._swap = pic, op, op in _SWAPS_AXES

    @property
    def size(self) -> tuple[int, int]:
        w, h = self._pic.size
        return (h, w) if self._swap else (w, h)

    def grey(self, width: int, height: int) -> np.ndarray:
        arr = self._pic.grey(height, width) if self._swap else self._pic.grey(width, height)
        return np.ascontiguousarray(_ARRAY_OPS[self._op](arr))


def _dhash_z_variants(pic: Picture, hash_size: int, ops: Sequence[str]) -> np.ndarray:
    # The percentile map only looks at the multiset of values, so it commutes with moving
    # pixels: z-transform the square grid once, then flip/rotate it. Same bits as hashing
    # each oriented grid (see _OrientedGrid), without 7 of the 8 percentile computations.
    # The recipe's second resize (hash_size -> hash_size + 1 columns) is one horizontal
    # Lanczos pass per row: stacking the oriented grids and resizing them at once gives each
    # row exactly what resizing its own grid does (Pillow skips the vertical pass when the
    # height is unchanged). One Pillow call instead of 8: a cold dihedral scan of
    # small_tree_20000's emoji takes 29% less time (cProfile, one worker: 11.6 s -> 8.3 s).
    # The bits come out as one (len(ops), hash_size, hash_size) stack, packed at once (a cold
    # scan of small_tree_20000: 12.1 -> 11.5 CPU s, medians of 3 interleaved runs).
    from lookalike.imaging.decode import lanczos_grey

    z = ztransform(pic.grey(hash_size, hash_size))
    stacked = np.concatenate([_ARRAY_OPS[op](z) for op in ops])
    wide = lanczos_grey(stacked, hash_size + 1, hash_size * len(ops))
    return _dhash_of(wide).reshape(len(ops), hash_size, hash_size)


def invariance_ops(invariant: str) -> tuple[str, ...]:
    """The orientations of an ``--invariant`` choice; the error lists the valid ones."""
    try:
        return INVARIANCES[invariant]
    except KeyError:
        from lookalike.errors import ConfigError

        raise ConfigError(
            f"unknown invariance {invariant!r}; choose one of: {', '.join(INVARIANCES)}"
        ) from None


# --- registry -------------------------------------------------------------------------------


Orientation = Literal["grid", "picture", "invariant", "custom"]


@dataclass(frozen=True, slots=True)
class HashMethod:
    """One algorithm: how to compute it and what its ``hash_size`` means.

    ``orientation`` says how flipped/rotated versions are hashed for invariance: ``grid``
    methods read pixels only through ``pic.grey(w, h)`` and ``pic.size`` (the small grid is
    transformed), ``picture`` ones get the transformed picture, ``invariant`` ones do not
    change under flips and rotations, ``custom`` ones provide ``variants``.
    """

    name: str
    compute: Callable[..., np.ndarray | list[np.ndarray]]
    default_size: int
    nbits: Callable[[int], int]
    summary: str
    size_meaning: str = "grid side: the hash has hash_size**2 bits"
    imagehash: str | None = None  # the ImageHash function it equals bit for bit
    min_size: int = 2
    sizes: tuple[int, ...] | None = None  # the only sizes allowed, when not any >= min_size
    orientation: Orientation = "grid"
    variants: Callable[[Picture, int, Sequence[str]], np.ndarray | list[np.ndarray]] | None = None

    def _segments(self, pic: GreyGrid | Picture, size: int) -> tuple[int, ...]:
        bits = self.compute(pic, size)
        arrays = bits if isinstance(bits, list) else [bits]
        return tuple(bits_to_int(b) for b in arrays)

    def oriented(self, pic: Picture, hash_size: int | None = None,
                 ops: Sequence[str] = ("identity",)) -> list[tuple[int, ...]]:
        """For each orientation in ``ops`` (names of :data:`ORIENTATIONS`), the segments of
        the hash of ``pic`` flipped/rotated that way, computed from the small working grid."""
        size = self.default_size if hash_size is None else hash_size
        _check_size(size, self.min_size)
        if self.orientation == "invariant":
            return [self._segments(pic, size)] * len(ops)
        if self.orientation == "custom" and tuple(ops) != ("identity",):
            assert self.variants is not None
            return [(v,) for v in bits_to_ints(self.variants(pic, size, ops))]
        out = []
        for op in ops:
            if op == "identity":
                view: GreyGrid | Picture = pic
            elif self.orientation == "grid":
                view = _OrientedGrid(pic, op)
            else:
                view = pic.transformed(ORIENTATIONS[op])
            out.append(self._segments(view, size))
        return out

    def hash(self, pic: Picture, hash_size: int | None = None,
             invariant: str = "none", trim: bool = False) -> Hash:
        """Hash ``pic``; with ``invariant`` other than ``"none"`` the hash also holds, as
        extra segments, the hashes of the picture's flipped/rotated versions (first segment:
        the plain hash; repeats dropped). With ``trim``, a picture with flat bars on its
        sides (:func:`~lookalike.imaging.borders.content_box`) also gets the segments of its
        content alone: a padded copy then matches its original, and an image without bars
        (most photos) costs one look at its outermost lines."""
        return self.hash_inside(pic, content_box(pic.grey_full()) if trim else None,
                                hash_size, invariant)

    def hash_inside(self, pic: Picture, box: tuple[int, int, int, int] | None,
                    hash_size: int | None = None, invariant: str = "none") -> Hash:
        """:meth:`hash` with ``trim``, given the content box (``content_box``'s, or None
        for none) that the caller has found already (a scan's worker also records it)."""
        size = self.default_size if hash_size is None else hash_size
        ops = invariance_ops(invariant)
        per_op = self.oriented(pic, size, ops)
        if box is not None:
            per_op += self.oriented(pic.cropped(box), size, ops)
        if len(per_op) == 1:
            segments = per_op[0]  # as computed: crop-resistant repeats stay, as in ImageHash
        else:
            segments = tuple(dict.fromkeys(seg for segs in per_op for seg in segs))
        return Hash(self.name, self.nbits(size), segments)


def _method(name: str, compute: Callable[..., Any], summary: str, **kw: Any) -> HashMethod:
    """A :class:`HashMethod` with its sizes and bit count from config.METHOD_SPECS
    (one source: validating a config needs no NumPy)."""
    spec = METHOD_SPECS[name]
    return HashMethod(name, compute, spec.default_size, spec.nbits, summary,
                      min_size=spec.min_size, sizes=spec.sizes, **kw)


METHODS: dict[str, HashMethod] = {
    m.name: m
    for m in [
        _method("ahash", ahash_bits,
                "average hash: each pixel above the mean; fastest, weakest",
                imagehash="average_hash"),
        _method("phash", phash_bits,
                "perceptual hash: signs of low DCT frequencies; robust to re-encoding",
                imagehash="phash"),
        _method("dhash", dhash_bits,
                "difference hash: horizontal gradients; fast and good", imagehash="dhash"),
        _method("dhash-v", dhash_vertical_bits,
                "difference hash on vertical gradients", imagehash="dhash_vertical"),
        # Default size 16, not the folklore's 8: at 16 it has the best recall at precision
        # >= 0.999 of every method on benchmarks/accuracy (the default method). The recipe
        # itself is unchanged: hash size 8 equals the folklore code bit for bit.
        _method("dhash-z", dhash_z_bits,
                "percentile (z) transform, then dhash; the default (16; 8 = folklore)",
                orientation="custom", variants=_dhash_z_variants),
        _method("whash", whash_bits,
                "wavelet hash (Haar); hash_size must be a power of two",
                imagehash="whash"),
        _method("colorhash", colorhash_bits,
                "HSV colour histogram; ignores layout: unrelated pictures match (4% precision "
                "at 0 on benchmarks/accuracy); hash_size = bits per bin",
                size_meaning="bits per colour bin: the hash has 14 * hash_size bits",
                imagehash="colorhash", orientation="invariant"),
        _method("crop-resistant", crop_resistant_segments,
                "dhash of each bright/dark region; matches crops (slow)",
                size_meaning="dhash size of each region hash", imagehash="crop_resistant_hash",
                orientation="picture"),
        _method("pdq", pdq_hash_bits,
                "Meta's PDQ: 256-bit DCT hash used in trust and safety (quality: pdq_hash)",
                size_meaning="fixed: always 256 bits (hash size 16)", orientation="custom",
                variants=_pdq_variants),
    ]
}


def get_method(name: str) -> HashMethod:
    """Look a method up by name; the error lists the valid names."""
    method_spec(name)  # raises the ConfigError (METHODS and METHOD_SPECS share their names)
    return METHODS[name]


def compute_hash(pic: Picture, method: str = "dhash-z", hash_size: int | None = None,
                 invariant: str = "none", trim: bool = False) -> Hash:
    """Hash a decoded picture with ``method`` (see :data:`METHODS` and
    :meth:`HashMethod.hash`)."""
    return get_method(method).hash(pic, hash_size, invariant, trim)
