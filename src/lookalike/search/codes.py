"""Packed Hamming codes and the helpers the searches share; the one :class:`SearchTuning`.

A code of ``nbits`` bits is ``W = ceil(nbits / 64)`` ``uint64`` words, word 0 holding the most
significant bits, right-aligned (a 16-bit hash is the low 16 bits of its word). Bit ranges are
``(first bit, length)`` with bit 0 the most significant bit of the *code*.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from typing import Literal

import numpy as np

from lookalike.errors import ConfigError

U64 = np.uint64
EMPTY_I64 = np.zeros(0, dtype=np.int64)

Ranges = tuple[tuple[int, int], ...]  # (first bit, length) pairs
Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # (a, b, distance), int64
Pieces = tuple[tuple[int, np.uint64], ...]  # a bit range as (word, mask) pieces


@dataclass(frozen=True, slots=True)
class SearchTuning:
    """Every knob of the Hamming searches. None changes a result, only time and memory.

    The ``ns_*`` figures are a cost model in nanoseconds, measured on a 2-core AMD EPYC with
    NumPy 2.4 (``benchmarks/bench_search.py``); only their ratios matter: they pick the plan.
    Tests pass variations (tiny runs, no brute force) to force every code path on small inputs.
    """

    # -- self-join (join.py)
    brute_force: bool = True  # allow the all-pairs plan at the top level (tests turn it off)
    max_tables: int = 4096  # most tables the planner considers for one chunk
    giant_run: int = 4096  # runs of equal keys longer than this are joined on their other bits
    dense_min: float = 0.125  # scan offset d on the whole table while this share still pairs
    max_dense: int = 64  # ... but for at most this many offsets
    pair_batch: int = 1 << 19  # candidate pairs listed at once (bounds memory: ~1.2 GB at
    # 1M codes, T=8, skewed; 1 << 22 took 1.9 GB and was no faster)
    brute_cells: int = 1 << 18  # distances one all-pairs block computes (stays in cache)
    wide_pass: float = 0.01  # wide tables compare words until random pairs pass this rarely
    slab: int = 1 << 16  # rows per slab when shuffling bits: 64k words (512 KiB) stay in L2
    ns_table: float = 3e5  # fixed overhead per table (Python, allocations)
    ns_row_narrow: float = 25.0  # per code per table, 64-bit codes: permute + sort + scan
    ns_pair_narrow: float = 20.0  # per candidate pair, 64-bit codes
    ns_row_wide: float = 45.0  # per code per table, wider codes: key + sort + gathers
    ns_row_probe: float = 10.0  # ... plus gathering each probe word into table order
    ns_pair_probe: float = 8.0  # per candidate pair and probe word, wider codes
    ns_pair_wide: float = 60.0  # per candidate pair passing the probe words (whole rows)
    # Brute force, per pair plus per word: 1.9 ns a pair for 20k 64-bit codes, 2.9 for
    # 256-bit ones (np.bitwise_count; the model said 6 and 18, and kept 20k clustered codes
    # in tables for 6.7 s where brute force takes 0.6 s).
    ns_brute: float = 1.5  # per pair, brute force ...
    ns_brute_word: float = 0.35  # ... plus this per word
    # -- query index (mih.py)
    max_probes: int = 1 << 16  # most keys one chunk of a query may probe
    probe_batch: int = 1 << 20  # keys probed at once
    ns_probe: float = 150.0  # per probed key (two binary searches)
    ns_candidate: float = 40.0  # per code compared by brute force
    index_min_rows: int = 1024  # rows an index compares by brute force before building tables
    rebuild_share: float = 0.125  # ... or this share of its rows (added after the last build)
    removed_share: float = 0.25  # removed rows are dropped once they are this share of rows


DEFAULT_TUNING = SearchTuning()


# ----------------------------------------------------------------------------- validation


def pack_hashes(values: Iterable[int], nbits: int) -> np.ndarray:
    """Pack integer hashes of ``nbits`` bits into an ``(N, ceil(nbits/64))`` uint64 array.

    Word 0 holds the most significant bits; the code is right-aligned, so a 16-bit hash
    occupies the low 16 bits of its single word.

    Args:
        values: Non-negative integers below ``2**nbits`` (Python or NumPy integers).
        nbits: Bits per hash, at least 1.

    Returns:
        ``(len(values), W)`` ``uint64`` array with ``W = ceil(nbits / 64)``.

    Raises:
        ConfigError: ``nbits`` is not a positive integer (a ``ValueError``).
        ValueError: A value is negative or does not fit in ``nbits`` bits.

    Examples:
        >>> pack_hashes([0xFF, 1 << 70], 72).tolist()
        [[0, 255], [64, 0]]
    """
    words = words_for(nbits)
    vals = list(map(int, values))
    if not vals:
        return np.zeros((0, words), dtype=U64)
    if min(vals) < 0 or max(vals) >> nbits:
        raise ValueError(f"hash values must be in [0, 2**{nbits}); got one outside that range")
    if words == 1:
        return np.array(vals, dtype=U64).reshape(-1, 1)
    big: Literal["big"] = "big"
    raw = b"".join(map(int.to_bytes, vals, repeat(8 * words), repeat(big)))
    return np.frombuffer(raw, dtype=">u8").astype(U64).reshape(len(vals), words)


def words_for(nbits: int) -> int:
    """Words per code; raises ``ConfigError`` unless ``nbits`` is a positive int."""
    if isinstance(nbits, bool) or not isinstance(nbits, int | np.integer) or nbits < 1:
        raise ConfigError(f"nbits must be a positive int (bits per hash, e.g. 64); got {nbits!r}")
    return (int(nbits) + 63) // 64


def check_distance(max_distance: object) -> int:
    """``max_distance`` as an int; raises ``ConfigError`` unless it is an int ``>= 0``."""
    if (
        isinstance(max_distance, bool)
        or not isinstance(max_distance, int | np.integer)
        or max_distance < 0
    ):
        raise ConfigError(
            f"max_distance must be an int >= 0 (bits that may differ); got {max_distance!r}"
        )
    return int(max_distance)


def check_workers(workers: int | None) -> int:
    """Threads to use: ``workers``, or the CPU count (at most 4) for None."""
    if workers is None:
        return max(1, min(4, os.cpu_count() or 1))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an int >= 1 (threads), or None; got {workers!r}")
    return workers


def as_code_array(codes: object) -> np.ndarray:
    """Validate a packed code array; 1-D input is taken as one word per code."""
    arr = np.asarray(codes)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"codes must be an (N, W) uint64 array; got shape {arr.shape}")
    if arr.dtype != U64:
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"codes must be unsigned 64-bit integers; got dtype {arr.dtype}")
        if arr.size and np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
            raise ValueError("codes must be non-negative; pack them with pack_hashes()")
        arr = arr.astype(U64)
    return np.ascontiguousarray(arr)


# ----------------------------------------------------------------------------- bit ranges


def split_even(start: int, length: int, parts: int) -> list[tuple[int, int]]:
    """Cut ``length`` bits from ``start`` into ``parts`` near-equal ranges, larger first."""
    base, extra = divmod(length, parts)
    out, pos = [], start
    for i in range(parts):
        size = base + (i < extra)
        out.append((pos, size))
        pos += size
    return out


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sort ranges by start and fuse adjacent ones."""
    out: list[list[int]] = []
    for s, length in sorted(ranges):
        if out and out[-1][0] + out[-1][1] == s:
            out[-1][1] += length
        else:
            out.append([s, length])
    return tuple((s, length) for s, length in out)


def complement(ranges: list[tuple[int, int]], nbits: int) -> Ranges:
    """Bit ranges of ``[0, nbits)`` not covered by ``ranges``."""
    out, pos = [], 0
    for s, length in merge_ranges(ranges):
        if s > pos:
            out.append((pos, s - pos))
        pos = s + length
    if pos < nbits:
        out.append((pos, nbits - pos))
    return tuple(out)


def varying_bits(*arrays: np.ndarray) -> Ranges:
    """The bit ranges (of ``64 * W`` bits) not equal in every row of ``arrays`` (``(n, W)``
    uint64, at least one row in all): bits equal everywhere add nothing to a distance."""
    words = arrays[0].shape[1]
    ones = np.bitwise_or.reduce([np.bitwise_or.reduce(x, axis=0) for x in arrays])
    zeros = np.bitwise_and.reduce([np.bitwise_and.reduce(x, axis=0) for x in arrays])
    free = ones & ~zeros
    return merge_ranges((64 * w + (63 - b), 1) for w in range(words) for b in range(64)
                        if int(free[w]) >> b & 1)


def differs(x: np.ndarray, pieces: Pieces) -> np.ndarray:
    """Rows of XOR words ``x`` (h, W) with a set bit inside the mask pieces."""
    w, m = pieces[0]
    out = (x[:, w] & m) != 0
    for w, m in pieces[1:]:
        out |= (x[:, w] & m) != 0
    return out


def mask_pieces(start: int, length: int, nbits: int, words: int) -> tuple[tuple[int, U64], ...]:
    """A bit range as ``(word, mask)`` pieces of the packed layout."""
    g = 64 * words - nbits + start
    pieces = []
    while length:
        take = min(length, 64 - g % 64)
        pieces.append((g // 64, U64(((1 << take) - 1) << (64 - g % 64 - take))))
        g, length = g + take, length - take
    return tuple(pieces)


@lru_cache(maxsize=8192)
def _shuffle_program(w_src: int, nbits: int, ranges: Ranges) -> tuple[int, tuple]:
    """Compile "concatenate these bit ranges" into (source word, shift, mask) operations.

    Pieces moving between the same pair of words by the same shift share one shift-and-mask,
    so a permutation of a dozen blocks costs 2-3 NumPy passes instead of one per block
    (~5% of a 1M-code join at T=10: 15.5-16.0 vs 16.8-17.1 CPU s, bench_search.py).
    """
    total = sum(length for _, length in ranges)
    w_dst = max(1, -(-total // 64))
    src = 64 * w_src - nbits
    dst = 64 * w_dst - total
    ops: dict[tuple[int, int, int], int] = {}
    for start, length in ranges:
        s = src + start
        while length:
            take = min(length, 64 - s % 64, 64 - dst % 64)
            net = (64 - s % 64 - take) - (64 - dst % 64 - take)  # > 0: shift right
            key = (dst // 64, s // 64, net)
            ops[key] = ops.get(key, 0) | (((1 << take) - 1) << (64 - dst % 64 - take))
            s, dst, length = s + take, dst + take, length - take
    prog = tuple((sw, dw, net, U64(mask)) for (dw, sw, net), mask in sorted(ops.items()))
    return w_dst, prog


def shuffle(
    cols: Sequence[np.ndarray], nbits: int, ranges: Ranges, tuning: SearchTuning = DEFAULT_TUNING
) -> list[np.ndarray]:
    """Concatenate bit ranges of codes given as word columns; the result is right-aligned.

    Works on L2-sized slabs because each output word takes several passes over the input
    (~10% of a 1M-code join at T=10: 14.8-15.5 vs 16.3-17.2 CPU s whole-array).
    """
    w_dst, prog = _shuffle_program(len(cols), nbits, tuple(ranges))
    n = cols[0].shape[0]
    out = [np.zeros(n, dtype=U64) for _ in range(w_dst)]
    tmp = np.empty(min(n, tuning.slab), dtype=U64)
    for lo in range(0, n, tuning.slab):
        hi = min(n, lo + tuning.slab)
        t = tmp[: hi - lo]
        for sw, dw, net, mask in prog:
            src = cols[sw][lo:hi]
            if net > 0:
                np.right_shift(src, U64(net), out=t)
                t &= mask
            elif net < 0:
                np.left_shift(src, U64(-net), out=t)
                t &= mask
            else:
                np.bitwise_and(src, mask, out=t)
            out[dw][lo:hi] |= t
    return out


# ----------------------------------------------------------------------------- pair lists


def expand_ranges(
    p: np.ndarray, first: np.ndarray, counts: np.ndarray, batch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(p[i], first[i] + o)`` for ``o < counts[i]``, about ``batch`` pairs at a time."""
    keep = counts > 0
    p, first, counts = p[keep], first[keep], counts[keep]
    if not p.size:
        return
    csum = np.cumsum(counts)
    start = 0
    while start < p.size:
        base = int(csum[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(csum, base + batch, side="right")))
        c = counts[start:stop]
        rep = np.repeat(np.arange(start, stop), c)
        off = np.arange(int(c.sum()), dtype=np.int64) - np.repeat(csum[start:stop] - c - base, c)
        yield p[rep], first[rep] + off
        start = stop


def cat_int64(parts: Sequence[Sequence[np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Concatenate each list of arrays as int64 (an empty list gives an empty array)."""
    return tuple(
        np.concatenate(p).astype(np.int64, copy=False) if len(p) else EMPTY_I64 for p in parts
    )


def sort_pairs(a: np.ndarray, b: np.ndarray, d: np.ndarray, n: int) -> Pairs:
    """Sort pairs by (a, b); one value sort of packed keys when they fit in 63 bits."""
    if not a.size:
        return a, b, d
    dbits = max(1, int(d.max()).bit_length())
    if n > 0 and (n * n) << dbits < (1 << 63):
        key = (a * n + b) << dbits | d
        key.sort()
        d = key & ((1 << dbits) - 1)
        key >>= dbits
        return key // n, key % n, d
    order = np.lexsort((b, a))
    return a[order], b[order], d[order]


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between rows of ``(n, W)`` arrays (broadcasting), as int64."""
    return np.bitwise_count(a ^ b).sum(axis=-1, dtype=np.int64)
