"""Exact Hamming join of two sets: every pair ``(a row, b row)`` within ``T`` bits.

Made for a few codes against many (a re-scan's new hash values against those of the last
scan, :mod:`lookalike.grouping.edges`): the small side is sorted, the large side only
streamed through it, so the cost is about ``(T + 1) * len(a) * log(len(b))`` plus the
candidates, with no sort of the large side.

The filter is the pigeonhole principle of multi-index hashing (Norouzi, Punjani & Fleet,
"Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012) at radius 0: cut the
varying bits into ``T + 1`` blocks; two codes within ``T`` bits agree exactly on at least one
block. Each ``a`` code meets the ``b`` codes with its key in each block, and a candidate is
kept if its popcount is within ``T`` and it differs on every earlier block (its first
agreeing block reports it: each pair once, as the owner rule of
:mod:`lookalike.search.join`). Real pictures' codes share some keys a great deal (the all-zero
block of a blank top row: 9,515 codes of 296k against 76 new ones); such a key's codes are
joined again on the other bits (they agree on the key's), with the blocks before it as the
blocks they must differ on. Where the blocks do not split the codes (bits that are nearly
constant: most codes share most keys), all pairs are compared instead (brute force).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from lookalike.search.codes import (
    DEFAULT_TUNING,
    Pairs,
    Pieces,
    Ranges,
    SearchTuning,
    as_code_array,
    cat_int64,
    check_distance,
    complement,
    differs,
    expand_ranges,
    mask_pieces,
    shuffle,
    split_even,
    varying_bits,
)

__all__ = ["find_pairs_between"]

# A key is joined again on its other bits only while those give each block at least this
# many bits, and at most this many levels deep: each level repeats its rows' work per block.
_MIN_BLOCK_BITS = 8
_MAX_DEPTH = 2
# A candidate compared alone costs about this many pairs compared all against all (65 ns
# against 30 for 256-bit codes: a gather per pair, against one broadcast row).
_CANDIDATE_COST = 2
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
        _join(a, b, np.arange(a.shape[0]), np.arange(b.shape[0]), free, (), t, tuning, found,
              0)
    i, j, d = cat_int64(found)
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]


def _join(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray, free: Ranges,
          apart: tuple[Pieces, ...], t: int, tuning: SearchTuning,
          found: list[list[np.ndarray]], depth: int) -> None:
    """Add to ``found`` the pairs of rows ``ia`` of ``a`` and ``ib`` of ``b`` within ``t``
    bits that differ on every block of ``apart``, given that they agree on every bit
    outside the ranges ``free``."""
    nbits = 64 * a.shape[1]
    bits = sum(length for _, length in free)
    cells = ia.size * ib.size
    if cells <= tuning.brute_cells or bits <= t:
        _brute(a, b, ia, ib, apart, t, tuning, found)
        return
    acols = [np.ascontiguousarray(a[ia, w]) for w in range(a.shape[1])]
    bcols = [np.ascontiguousarray(b[ib, w]) for w in range(b.shape[1])]
    blocks = [_Block(block, acols, bcols, nbits, tuning) for block
              in _blocks(free, max(t + 1, -(-bits // 64)))]  # keys of at most 64 bits
    # A key shared by many pairs is joined again on the other bits, while they are enough.
    deeper = depth < _MAX_DEPTH and (
        bits - max(blk.bits for blk in blocks) >= _MIN_BLOCK_BITS * (t + 1))
    # Compare all pairs instead where that costs less than the blocks would at most (their
    # candidates, and each shared key's pairs compared): bits nearly constant in most codes
    # give most codes one key in many blocks, and joining those again would repeat the work.
    run = tuning.giant_run if deeper else None
    most = sum(_CANDIDATE_COST * blk.candidates(run) + blk.shared(run) for blk in blocks)
    if most >= cells:
        _brute(a, b, ia, ib, apart, t, tuning, found)
        return
    pieces = [tuple(p for start, n in blk.ranges for p in mask_pieces(start, n, nbits,
                                                                        a.shape[1]))
              for blk in blocks]
    for k, block in enumerate(blocks):
        earlier = apart + tuple(pieces[:k])  # a pair agreeing there was reported there
        if deeper:
            # The bits of ``free`` outside this block (it lies inside them).
            rest = complement([*complement(list(free), nbits), *block.ranges], nbits)
            for rows, others in block.giants(tuning.giant_run):
                _join(a, b, ia[rows], ib[others], rest, earlier, t, tuning, found, depth + 1)
        for p, q in block.pairs(run, tuning.pair_batch):
            _keep(a, b, ia[p], ib[q], earlier, t, found)


class _Block:
    """One block's keys: which rows of ``a`` meet which rows of ``b`` on it (positions in
    the rows given), grouped by key."""

    def __init__(self, ranges: Ranges, acols: list[np.ndarray], bcols: list[np.ndarray],
                 nbits: int, tuning: SearchTuning) -> None:
        self.ranges = ranges
        self.bits = sum(n for _, n in ranges)
        ka = shuffle(acols, nbits, ranges, tuning)[0]
        kb = shuffle(bcols, nbits, ranges, tuning)[0]
        self.order = np.argsort(kb, kind="stable")
        kb = kb[self.order]
        # Only ``a`` keys that pass a bitmap of ``b``'s hashed keys are looked up: a binary
        # search of every ``a`` key was two thirds of this join (296k codes against 2,930:
        # 0.14 -> 0.05 s; issue 14's re-scan with 1% new files, 1.5 -> 1.4 s).
        bitmap = np.zeros(1 << _BITMAP_BITS, dtype=bool)
        bitmap[_slot(kb)] = True
        hit = np.flatnonzero(bitmap[_slot(ka)])
        lo = np.searchsorted(kb, ka[hit])
        here = kb[np.minimum(lo, kb.size - 1)] == ka[hit]
        hit, lo = hit[here], lo[here]
        # By key: the a rows of key g are hit[start[g]:start[g] + na[g]], its b rows
        # order[lo[g]:lo[g] + nb[g]].
        by_key = np.argsort(ka[hit], kind="stable")
        self.hit, lo = hit[by_key], lo[by_key]
        first = np.flatnonzero(np.r_[True, lo[1:] != lo[:-1]]) if lo.size else lo
        self.start, self.lo = first, lo[first]
        self.na = np.diff(np.r_[first, lo.size])
        self.nb = np.searchsorted(kb, kb[self.lo], side="right") - self.lo

    def _giant(self, giant_run: int | None) -> np.ndarray:
        if giant_run is None:
            return np.zeros(self.na.size, dtype=bool)
        return self.na * self.nb > giant_run

    def candidates(self, giant_run: int | None) -> int:
        """Pairs to compare one by one: those of the keys not joined again."""
        small = ~self._giant(giant_run)
        return int((self.na[small] * self.nb[small]).sum())

    def shared(self, giant_run: int | None) -> int:
        """Pairs of the keys joined again (at most their cost, in all-pairs comparisons)."""
        giant = self._giant(giant_run)
        return int((self.na[giant] * self.nb[giant]).sum())

    def giants(self, giant_run: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The a rows and b rows of each key joined again."""
        for g in np.flatnonzero(self._giant(giant_run)):
            s, lo = self.start[g], self.lo[g]
            yield self.hit[s:s + self.na[g]], self.order[lo:lo + self.nb[g]]

    def pairs(self, giant_run: int | None, batch: int
              ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The (a row, b row) pairs of the other keys, about ``batch`` at a time."""
        small = np.repeat(~self._giant(giant_run), self.na)
        count = np.repeat(self.nb, self.na)[small]
        lo = np.repeat(self.lo, self.na)[small]
        for p, pos in expand_ranges(self.hit[small], lo, count, batch):
            yield p, self.order[pos]


def _keep(a: np.ndarray, b: np.ndarray, ra: np.ndarray, rb: np.ndarray,
          apart: tuple[Pieces, ...], t: int, found: list[list[np.ndarray]]) -> None:
    """Add the candidate pairs ``(ra, rb)`` within ``t`` bits that differ on every block of
    ``apart``."""
    ok, d = _close(a[ra] ^ b[rb], apart, t)
    for out, part in zip(found, (ra[ok], rb[ok], d[ok]), strict=True):
        out.append(part)


def _brute(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray,
           apart: tuple[Pieces, ...], t: int, tuning: SearchTuning,
           found: list[list[np.ndarray]]) -> None:
    """Every pair of rows ``ia`` and ``ib`` compared, ``brute_cells`` at a time (each row of
    ``ia`` against all of ``ib`` at once: no gather per pair)."""
    words = a.shape[1]
    other = b[ib]
    step = max(1, tuning.brute_cells // max(1, ib.size))
    for lo in range(0, ia.size, step):
        rows = ia[lo:lo + step]
        ok, d = _close((a[rows][:, None, :] ^ other[None]).reshape(-1, words), apart, t)
        p, q = np.divmod(np.flatnonzero(ok), ib.size)
        for out, part in zip(found, (rows[p], ib[q], d[ok]), strict=True):
            out.append(part)


def _close(x: np.ndarray, apart: tuple[Pieces, ...], t: int) -> tuple[np.ndarray, np.ndarray]:
    """Which XOR rows ``x`` (h, W) are within ``t`` bits and differ on every block of
    ``apart`` (a pair agreeing on one was reported by that block), and their distances."""
    d = np.bitwise_count(x).sum(axis=1, dtype=np.int64)
    ok = d <= t
    for block in apart:
        ok &= differs(x, block)
    return ok, d


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
