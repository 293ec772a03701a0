"""Exact Hamming join of two sets: every pair ``(a row, b row)`` within ``T`` bits.

Made for a few codes against many (a re-scan's new hash values against those of the last
scan, :mod:`lookalike.grouping.edges`): the small side is sorted, the large side only
streamed through it, so the cost is about ``(T + 1) * len(a) * log(len(b))`` plus the
candidates, with no sort of the large side.

The filter is the pigeonhole principle of multi-index hashing (Norouzi, Punjani & Fleet,
"Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012) at radius 0: cut the bits
into ``T + 1`` blocks; two codes within ``T`` bits agree exactly on at least one block. For
each block, each ``a`` code meets the ``b`` codes with the same key, and each such candidate
is checked by popcount, so nothing within ``T`` is missed. Real pictures' codes share some
keys a great deal (the all-zero block of a blank top row: 9,515 codes of 296k against 76 new
ones); the candidates of such a key are joined again on the other bits (the key's bits
agree), like the giant runs of :mod:`lookalike.search.join`. A pair agreeing on several
blocks is found by each: the pairs are made distinct at the end.
"""

from __future__ import annotations

import numpy as np

from lookalike.search.codes import (
    DEFAULT_TUNING,
    Pairs,
    Ranges,
    SearchTuning,
    as_code_array,
    cat_int64,
    check_distance,
    distances,
    expand_ranges,
    merge_ranges,
    shuffle,
    split_even,
    varying_bits,
)

__all__ = ["find_pairs_between"]

# A key is joined again on its other bits only while those give each block at least this
# many bits, and at most this many times over: each level repeats its rows' work per block,
# so a deeper split of codes that agree almost everywhere costs more than comparing them.
_MIN_BLOCK_BITS = 8
_MAX_DEPTH = 2
_BITMAP_BITS = 20  # 1 MiB of flags: a few thousand keys of ``b`` fill 0.3% of it


def _slot(keys: np.ndarray) -> np.ndarray:
    """A key's place in the bitmap: the top bits of a multiplicative (Fibonacci) hash, so
    that keys differing in any bits spread out."""
    return (keys * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - _BITMAP_BITS)


def find_pairs_between(a: np.ndarray, b: np.ndarray, max_distance: int, *,
                       tuning: SearchTuning = DEFAULT_TUNING) -> Pairs:
    """Every pair ``(i, j)`` with ``a[i]`` and ``b[j]`` within ``max_distance`` bits.

    Args:
        a: ``(N, W)`` uint64 codes from :func:`~lookalike.search.pack_hashes` (the many).
        b: ``(M, W)`` codes of the same width (the few: they are the ones sorted).
        max_distance: Largest Hamming distance reported, in bits (``>= 0``).
        tuning: Knobs of the search (``giant_run``, ``brute_cells``, ``pair_batch``,
            ``slab``); they change time and memory, never the result.

    Returns:
        ``(i, j, distance)`` int64 arrays, each pair once, sorted by ``(i, j)``.

    Raises:
        ConfigError: ``max_distance`` is invalid (a ``ValueError``).
        ValueError: ``a`` or ``b`` is not a 2-D array of non-negative integers, or their
            widths differ.

    Examples:
        >>> from lookalike.search import pack_hashes
        >>> i, j, d = find_pairs_between(pack_hashes([0, 7, 255], 8), pack_hashes([3], 8), 2)
        >>> i.tolist(), j.tolist(), d.tolist()
        ([0, 1], [0, 0], [2, 1])
    """
    t = check_distance(max_distance)
    a, b = as_code_array(a), as_code_array(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"codes of different widths: {a.shape[1]} and {b.shape[1]} words")
    found: list[list[np.ndarray]] = [[], [], []]
    if a.shape[0] and b.shape[0]:
        # Bits equal in every code of both sides add nothing to a distance: no block on them.
        free = varying_bits(a, b)
        _join(a, b, np.arange(a.shape[0]), np.arange(b.shape[0]), free, t, tuning, found, 0)
    i, j, d = cat_int64(found)
    key = i * b.shape[0] + j
    key, first = np.unique(key, return_index=True)  # sorted, each pair once
    return key // b.shape[0], key % b.shape[0], d[first]


def _join(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray, free: Ranges,
          t: int, tuning: SearchTuning, found: list[list[np.ndarray]], depth: int) -> None:
    """Add to ``found`` the pairs of rows ``ia`` of ``a`` and ``ib`` of ``b`` within ``t``
    bits, given that they agree on every bit outside the ranges ``free``."""
    nbits = 64 * a.shape[1]
    bits = sum(length for _, length in free)
    if ia.size * ib.size <= tuning.brute_cells or bits <= t:
        _brute(a, b, ia, ib, t, tuning, found)
        return
    acols = [np.ascontiguousarray(a[ia, w]) for w in range(a.shape[1])]
    bcols = [np.ascontiguousarray(b[ib, w]) for w in range(b.shape[1])]
    for block in _blocks(free, max(t + 1, -(-bits // 64))):  # keys of at most 64 bits
        ka = shuffle(acols, nbits, block, tuning)[0]
        kb = shuffle(bcols, nbits, block, tuning)[0]
        order = np.argsort(kb, kind="stable")
        kb = kb[order]
        # Only ``a`` keys that pass a bitmap of ``b``'s hashed keys are looked up: a binary
        # search of every ``a`` key was two thirds of this join (296k codes against 2,930:
        # 0.14 -> 0.05 s; issue 14's re-scan with 1% new files, 1.5 -> 1.4 s).
        bitmap = np.zeros(1 << _BITMAP_BITS, dtype=bool)
        bitmap[_slot(kb)] = True
        hit = np.flatnonzero(bitmap[_slot(ka)])
        lo = np.searchsorted(kb, ka[hit])
        found_here = kb[np.minimum(lo, kb.size - 1)] == ka[hit]
        hit, lo = hit[found_here], lo[found_here]
        if not hit.size:
            continue
        count = np.searchsorted(kb, ka[hit], side="right") - lo
        rest = _without(free, block)
        if depth < _MAX_DEPTH and sum(n for _, n in rest) >= _MIN_BLOCK_BITS * (t + 1):
            keys, inverse, na = np.unique(ka[hit], return_inverse=True, return_counts=True)
            nb = np.zeros(keys.size, dtype=np.int64)
            nb[inverse] = count
            for g in np.flatnonzero(na * nb > tuning.giant_run):
                rows = inverse == g
                s = int(lo[rows][0])
                _join(a, b, ia[hit[rows]], ib[order[s:s + nb[g]]], rest, t, tuning, found,
                      depth + 1)
            small = na[inverse] * count <= tuning.giant_run
            hit, lo, count = hit[small], lo[small], count[small]
        for p, pos in expand_ranges(hit, lo, count, tuning.pair_batch):
            ra, rb = ia[p], ib[order[pos]]
            d = distances(a[ra], b[rb])
            ok = d <= t
            for out, part in zip(found, (ra[ok], rb[ok], d[ok]), strict=True):
                out.append(part)


def _brute(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray, t: int,
           tuning: SearchTuning, found: list[list[np.ndarray]]) -> None:
    step = max(1, tuning.brute_cells // max(1, ib.size))
    for lo in range(0, ia.size, step):
        d = distances(a[ia[lo:lo + step], None], b[ib])
        p, q = np.nonzero(d <= t)
        for out, part in zip(found, (ia[lo + p], ib[q], d[p, q]), strict=True):
            out.append(part)


def _blocks(free: Ranges, parts: int) -> list[Ranges]:
    """The bits of ``free`` cut, in order, into ``parts`` blocks of near-equal size."""
    blocks, queue = [], list(free)
    for _, size in split_even(0, sum(length for _, length in free), parts):
        block = []
        while size:
            start, length = queue.pop(0)
            take = min(length, size)
            block.append((start, take))
            if take < length:
                queue.insert(0, (start + take, length - take))
            size -= take
        blocks.append(tuple(block))
    return blocks


def _without(free: Ranges, block: Ranges) -> Ranges:
    """The ranges of ``free`` less those of ``block`` (a part of it)."""
    taken = set(block)
    out = []
    for start, length in free:
        cut = sorted((s, n) for s, n in taken if start <= s < start + length)
        pos = start
        for s, n in cut:
            if s > pos:
                out.append((pos, s - pos))
            pos = s + n
        if pos < start + length:
            out.append((pos, start + length - pos))
    return merge_ranges(out)
