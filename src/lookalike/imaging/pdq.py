"""PDQ: Meta's 256-bit perceptual hash and its quality score, in pure NumPy.

This follows the reference implementation (facebook/ThreatExchange, ``pdq/cpp``) step by
step, so that hashes equal the reference's (checked against the ``pdqhash`` package on real
photos in ``tests/test_pdq.py``):

1. luminance ``0.299 R + 0.587 G + 0.114 B`` as float32;
2. two passes of a Jarosz box filter (rows, then columns; window ``ceil(side / 128)``);
3. decimation to 64 x 64 by sampling the filtered image at the target pixel centres.
   Steps 2-3 are linear, so they are computed as two small sparse matrix products in
   float64 (:func:`downsample_64`, ~1 ms for a 640 x 480 image), which differ from the
   reference's float32 running sums by ~1e-4 grey levels: no bit differed on 160 real
   photos (``tests/test_pdq.py`` checks against the reference);
4. quality: the count of significant gradients of that 64 x 64 image (0..100);
5. the 16 x 16 lowest non-DC frequencies of a 2-D DCT (sequential float32 sums, as the C++);
6. one bit per frequency: above the median (the 128th smallest value) or not.

Bit ``16 * i + j`` of the integer is DCT coefficient (row frequency ``i``, column frequency
``j``), so the 64-digit hex string equals the reference's ``Hash256`` hex.

The eight dihedral variants (mirrors, 90-degree rotations) are sign flips and transposes of
the 16 x 16 DCT, as in the reference, when that is exact: a transpose always is, a flip only
along an axis whose filter-and-decimate operator is symmetric (:func:`flips_exact`). Along
others (an even filter window: sides of 129-256, 385-512, ... pixels) the flipped picture's
hash differs from the flipped DCT's by 14-32 bits, so those variants are hashed from their
own pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lookalike.model import Hash

__all__ = [
    "MIN_HASHABLE_DIM",
    "QUALITY_THRESHOLD",
    "PdqHash",
    "downsample_64",
    "pdq_bits",
    "pdq_dct",
    "pdq_from_luma",
    "pdq_quality",
    "rgb_to_luma",
    "transform_dct",
]

#: Images with a side shorter than this get the all-zero hash and quality 0 (reference rule).
MIN_HASHABLE_DIM = 5
#: Meta's guidance: hashes of quality below this are unreliable (flat or tiny images).
QUALITY_THRESHOLD = 50
JAROSZ_PASSES = 2
_F32 = np.float32


@dataclass(frozen=True, slots=True)
class PdqHash:
    """A PDQ hash and its quality score.

    ``quality`` (0..100) counts significant gradients in the 64 x 64 downsample: flat,
    blank or tiny images score low and their hashes match too easily. Meta recommends
    ignoring matches on hashes with quality below :data:`QUALITY_THRESHOLD` (50).
    """

    hash: Hash
    quality: int


def rgb_to_luma(pixels: np.ndarray) -> np.ndarray:
    """Luminance as float32, computed as the ``pdqhash`` package computes it.

    ``pixels`` is ``H x W x 3`` (RGB) or ``H x W`` (grey, treated as R = G = B) uint8.
    """
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        r = g = b = arr
    else:
        r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    # float64 products and sums, then float32: what ``pdqhash.compute`` does in Python.
    return (r * 0.299 + g * 0.587 + b * 0.114).astype(_F32)


def _window(old: int, new: int) -> int:
    # computeJaroszFilterWindowSize: two passes of half a target pixel each.
    return (old + 2 * new - 1) // (2 * new)


def _decimate_indices(old: int, new: int) -> np.ndarray:
    # Target pixel centres, in double as the reference computes them.
    return (((np.arange(new, dtype=np.float64) + 0.5) * old) / new).astype(np.intp)


@lru_cache(maxsize=128)
def _axis_weights(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The filter-twice-then-decimate operator along one axis, as 64 sparse rows.

    Box filters and decimation are linear and act on rows and columns separately, so the
    64 x 64 result is ``W_rows @ luma @ W_cols.T``. Each row of ``W`` is non-zero on a short
    contiguous run of about four windows, stored as ``(indices, weights)`` of shape (64, S).
    """
    window = _window(n, 64)
    half = (window + 2) // 2
    left, right = window - half, half - 1  # the reference's window: [k - left, k + right]
    k = np.arange(n)
    counts = (np.minimum(k + right, n - 1) + 1 - np.maximum(k - left, 0)).astype(np.float64)
    # Row k of the box operator B averages its clipped window; a row vector times B is the
    # transpose applied: out[j] = sum of (u / counts)[k] over k in [j - right, j + left].
    lo, hi = np.maximum(k - right, 0), np.minimum(k + left, n - 1) + 1
    u = np.zeros((64, n))
    u[np.arange(64), _decimate_indices(n, 64)] = 1.0
    for _ in range(JAROSZ_PASSES):
        prefix = np.zeros((64, n + 1))
        np.cumsum(u / counts, axis=1, out=prefix[:, 1:])
        u = prefix[:, hi] - prefix[:, lo]
    nonzero = u != 0
    first = nonzero.argmax(axis=1)
    width = int((n - nonzero[:, ::-1].argmax(axis=1) - first).max())
    idx = np.minimum(first[:, None] + np.arange(width)[None, :], n - 1)
    weights = np.take_along_axis(u, idx, axis=1)
    weights[first[:, None] + np.arange(width)[None, :] > n - 1] = 0.0  # clipped padding
    return idx, weights


@lru_cache(maxsize=512)
def _symmetric(n: int) -> bool:
    """Whether reversing an axis of ``n`` pixels reverses its 64 filtered samples exactly."""
    idx, weights = _axis_weights(n)
    dense = np.zeros((64, n))
    np.add.at(dense, (np.arange(64)[:, None], idx), weights)
    return bool(np.allclose(dense, dense[::-1, ::-1], rtol=0, atol=1e-12))


def flips_exact(rows: int, cols: int) -> bool:
    """Whether :func:`transform_dct` gives exactly the DCT of a flipped or turned picture of
    ``rows`` x ``cols`` pixels (both axes' operators symmetric)."""
    return _symmetric(rows) and _symmetric(cols)


def downsample_64(luma: np.ndarray) -> np.ndarray:
    """Jarosz-filter and decimate float32 luminance to the 64 x 64 image PDQ hashes.

    Computes the same linear map as the reference in float64 (two small gathers and
    weighted sums, no BLAS), so it differs from the reference's float32 running sums only
    by rounding: about 1e-4 grey levels, which flips a hash bit very rarely (measured on
    real photos in ``tests/test_pdq.py``).
    """
    rows, cols = luma.shape
    c_idx, c_w = _axis_weights(cols)
    r_idx, r_w = _axis_weights(rows)
    narrow = np.einsum("rcs,cs->rc", luma[:, c_idx], c_w, dtype=np.float64)  # rows x 64
    return np.einsum("rsc,rs->rc", narrow[r_idx, :], r_w).astype(_F32)


def pdq_quality(buffer64: np.ndarray) -> int:
    """The reference's image-domain quality metric of a 64 x 64 float32 downsample (0..100)."""
    b = buffer64.astype(_F32, copy=False)
    hundred, full = _F32(100), _F32(255)
    # C++: int d = ((u - v) * 100) / 255;  float arithmetic, truncation toward zero.
    dv = ((b[:-1, :] - b[1:, :]) * hundred / full).astype(np.int32)
    dh = ((b[:, :-1] - b[:, 1:]) * hundred / full).astype(np.int32)
    gradient_sum = int(np.abs(dv).sum()) + int(np.abs(dh).sum())
    return min(100, gradient_sum // 90)


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    """16 x 64 DCT-II rows 1..16 (no DC), float32, built with libm's cos as the C++ is."""
    scale = float(_F32(math.sqrt(2.0 / 64)))
    step = math.pi / 2.0 / 64.0
    m = [[scale * math.cos(step * (i + 1) * (2 * j + 1)) for j in range(64)] for i in range(16)]
    return np.asarray(m, dtype=np.float64).astype(_F32)


def pdq_dct(buffer64: np.ndarray) -> np.ndarray:
    """The 16 x 16 float32 DCT block of a 64 x 64 image: ``D A D^T``, summed as the C++ sums.

    Each output is a sequential float32 sum over k of float32 products (no fused
    multiply-add, no pairwise summation), which ``np.add.accumulate`` reproduces exactly.
    """
    d = _dct_matrix()
    a = buffer64.astype(_F32, copy=False)
    # T[i, j] = sum_k D[i, k] * A[k, j]; products laid out with k first, accumulated in order.
    t = np.add.accumulate(d.T[:, :, None] * a[:, None, :], axis=0, dtype=_F32)[-1]
    # B[i, j] = sum_k T[i, k] * D[j, k]
    return np.add.accumulate(t.T[:, :, None] * d.T[:, None, :], axis=0, dtype=_F32)[-1]


def _bits_of(dct16: np.ndarray) -> np.ndarray:
    """Bits above the median, ordered for :func:`~lookalike.imaging.hashes.bits_to_int` (MSB first).

    The reference's median (Torben's algorithm) is the 128th smallest of the 256 values.
    """
    flat = dct16.ravel()
    median = np.partition(flat, 127)[127]
    # bit 16*i + j is coefficient (i, j) and bit 255 is the most significant: reverse.
    return (flat > median)[::-1]


# Dihedral transforms of the DCT block, named as PIL's Image.Transpose ops on the image
# (the reference's names: FlipY = mirror, FlipX = flip top-bottom, FlipPlus1 = transpose...).
# Reversing an axis of the image multiplies odd-numbered frequencies 1, 3, ... (even
# indices) by -1; swapping image axes transposes the block.
def _neg_even(n: int) -> np.ndarray:
    return np.where(np.arange(n) % 2 == 0, -1, 1).astype(_F32)


_SIGN_EVEN = _neg_even(16)


def transform_dct(dct16: np.ndarray, op: str) -> np.ndarray:
    """The DCT block of the image flipped/rotated by ``op`` (see ``hashes.ORIENTATIONS``)."""
    row, col = _SIGN_EVEN[:, None], _SIGN_EVEN[None, :]
    if op == "identity":
        return dct16
    if op == "mirror":  # left-right: reverses columns
        return dct16 * col
    if op == "flip":  # top-bottom: reverses rows
        return dct16 * row
    if op == "rotate_180":
        return dct16 * row * col
    if op == "transpose":
        return dct16.T
    if op == "transverse":
        return (dct16 * row * col).T
    if op == "rotate_90":  # counter-clockwise: transpose, then flip top-bottom
        return dct16.T * row
    if op == "rotate_270":  # clockwise: transpose, then mirror
        return dct16.T * col
    raise ValueError(f"unknown orientation {op!r}")


def pdq_from_luma(luma: np.ndarray) -> tuple[np.ndarray | None, int]:
    """``(dct16, quality)`` of float32 luminance; ``(None, 0)`` if a side is < 5 pixels."""
    rows, cols = luma.shape
    if rows < MIN_HASHABLE_DIM or cols < MIN_HASHABLE_DIM:
        return None, 0
    buffer64 = downsample_64(luma)
    return pdq_dct(buffer64), pdq_quality(buffer64)


def pdq_bits(dct16: np.ndarray | None) -> np.ndarray:
    """The 256 hash bits of a DCT block (all zero for an unhashable image, as the reference)."""
    if dct16 is None:
        return np.zeros(256, dtype=bool)
    return _bits_of(dct16)
