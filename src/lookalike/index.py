"""Hamming-distance search over packed hashes (placeholder brute force; see issue 3)."""

from __future__ import annotations

import numpy as np

__all__ = ["find_pairs", "pack_hashes"]


def pack_hashes(values: list[int], nbits: int) -> np.ndarray:
    """Pack integer hashes of ``nbits`` bits into an (N, ceil(nbits/64)) uint64 array."""
    words = max(1, (nbits + 63) // 64)
    out = np.zeros((len(values), words), dtype=np.uint64)
    mask = (1 << 64) - 1
    for i, v in enumerate(values):
        for w in range(words):
            out[i, words - 1 - w] = (v >> (64 * w)) & mask
    return out


def find_pairs(codes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) with Hamming distance <= max_distance, as (i, j, distance) arrays."""
    n = codes.shape[0]
    ii, jj, dd = [], [], []
    for i in range(n - 1):
        d = np.bitwise_count(codes[i + 1:] ^ codes[i]).sum(axis=1)
        hit = np.nonzero(d <= max_distance)[0]
        ii.append(np.full(hit.size, i, dtype=np.int64))
        jj.append(hit + i + 1)
        dd.append(d[hit])
    if not ii:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(ii), np.concatenate(jj).astype(np.int64), np.concatenate(dd).astype(np.int64)
