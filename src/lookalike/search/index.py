"""Exact Hamming-distance search over packed hashes (issue 3: sub-quadratic search).

Codes are packed as an ``(N, W)`` ``uint64`` array, ``W = ceil(nbits / 64)``, word 0 holding the
most significant bits and the code right-aligned in its words (see :func:`pack_hashes`).

Public API:

* :func:`find_pairs` -- every pair of rows within ``max_distance`` bits (a self-join).
* :func:`find_pairs_collapsed` -- the same, with identical codes collapsed into groups, so a
  caller that unions groups (the grouper) never materialises quadratic duplicate output.
* :class:`HammingIndex` -- an incremental index for "which stored hashes are within
  ``max_distance`` of these new ones", without rescanning.

Everything here is exact: it returns precisely the pairs a brute-force scan returns.

How the self-join works
-----------------------
1. Identical codes are collapsed (one sort), and bits that are the same in every code are
   dropped: they never contribute to a distance.
2. A cost model (:func:`_plan_join`) splits the bits into ``c`` chunks with radii ``r_j`` such
   that ``sum(r_j + 1) > T``. By the pigeonhole principle two codes within distance ``T`` are
   within ``r_j`` on some chunk ``j``. Chunk ``j`` is cut into ``m_j = r_j + k_j`` blocks, so
   such a pair agrees *exactly* on at least ``k_j`` of them; each ``k_j``-subset of blocks is
   one "table" whose key is those blocks' bits. For 64-bit codes and T=8 this gives about
   100-500 tables with 18-23-bit keys, instead of the neighbour enumeration of classic
   multi-index hashing, whose candidate count is far larger at these radii.
3. Per table, the codes are bit-permuted so the key is on top (64-bit codes) or packed as
   ``key << idx_bits | row`` (wider codes) and sorted with NumPy's fast value sort. Pairs in
   runs of equal keys are candidates; they are verified with ``np.bitwise_count``.
4. Each true pair is kept only by its *owner* table: the first chunk on which it agrees on
   ``k_j`` blocks, and there the first ``k_j`` agreeing blocks. That rule is a function of the
   pair's XOR, so no global set of seen pairs is needed and every pair is reported once.
5. A run of equal keys longer than ``_GIANT_RUN`` (many near-blank images share a chunk) is
   not enumerated quadratically: its codes already agree on the key, so the join recurses on
   the remaining bits for that run only.

Time is about ``tables * N * 25-45 ns`` plus ~20 ns per candidate pair (``_plan_join`` has
the cost model); memory is a few arrays of ``N`` words plus the output, whatever the data.
Dense clusters of *distinct* codes within ``T`` of each other cost their output size times
the number of tables they collide in. Measured on a shared 2-core machine (CPU seconds,
64-bit codes): 1M codes at T=8 in 9 s, 10M at T=4 in 23 s and at T=8 in 5 min, under 1 GB.

Which pair API to use
---------------------
Grouping should call :func:`find_pairs_collapsed` and union the groups it returns: its output
is linear in the input plus the pairs between *distinct* codes, so 100,000 identical blank
images cost one group, not 5e9 pairs. :func:`find_pairs` keeps the row-pair contract (it is
``find_pairs_collapsed(...).expand()``) for callers that really want every row pair.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations, repeat
from typing import NamedTuple

import numpy as np

from lookalike.errors import ConfigError

__all__ = ["CollapsedPairs", "HammingIndex", "find_pairs", "find_pairs_collapsed", "pack_hashes"]

_U64 = np.uint64
_EMPTY_I64 = np.zeros(0, dtype=np.int64)

# Rows per slab when shuffling bits: 64k words (512 KiB) keep a dozen passes in L2.
_SLAB = 1 << 16
# Runs of equal keys longer than _GIANT_RUN are joined recursively on their remaining bits.
# The slab scan hands over to per-position scanning after _GIANT_CHECK offsets.
_GIANT_RUN = 4096
_GIANT_CHECK = 64
# Sparse-phase positions whose run is longer than this are joined with their run as matrix
# blocks (contiguous broadcasting), shorter ones as explicit pair lists (gathers).
_LONG_RUN = 64
# Words of a wide code that such a block checks: two cut most false candidates of
# correlated hashes at half the cost of all four (256-bit codes); emit() checks the rest.
_BLOCK_WORDS = 2
# Offsets are scanned on whole slabs while at least this fraction of positions still
# shares a key with the position d ahead; below it, gathers on the survivors are cheaper.
_DENSE_MIN = 0.125
# Candidate pairs materialised at once (bounds temporary memory).
_PAIR_BATCH = 1 << 22
# Tests set this to False so that small inputs go through the tables, not brute force.
_TOP_LEVEL_BRUTE = True
# Largest number of tables the planner considers for one chunk.
_MAX_TABLES = 4096
# Largest neighbourhood (masks per probe) a query plan may enumerate.
_MAX_PROBES = 1 << 16

# Cost model, in nanoseconds, measured on a 2-core AMD EPYC with NumPy 2.4 (see
# benchmarks/bench_search.py). Only ratios matter: they pick the plan.
_NS_TABLE = 3e5  # fixed overhead per table (Python, allocations)
_NS_ROW_NARROW = 25.0  # per code per table, 64-bit codes: permute + sort + run scan
_NS_PAIR_NARROW = 20.0  # per candidate pair, 64-bit codes (no gather: codes are in the sort)
_NS_ROW_WIDE = 45.0  # per code per table, wider codes: key + sort + unpack
_NS_ROW_PROBE = 10.0  # ... plus gathering each probe word into table order
_NS_PAIR_PROBE = 8.0  # per candidate pair and probe word, wider codes
_NS_PAIR_WIDE = 60.0  # per candidate pair passing the probe words (gathers whole rows)
_NS_BRUTE = 2.0  # per pair, brute force ...
_NS_BRUTE_WORD = 4.0  # ... plus this per word
_NS_PROBE = 150.0  # per probe in a query (binary search)
_NS_CANDIDATE = 40.0  # per query candidate (gather + verify)


# ----------------------------------------------------------------------------- packing


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
    words = _words_for(nbits)
    vals = list(map(int, values))
    if not vals:
        return np.zeros((0, words), dtype=_U64)
    if min(vals) < 0 or max(vals) >> nbits:
        raise ValueError(f"hash values must be in [0, 2**{nbits}); got one outside that range")
    if words == 1:
        return np.array(vals, dtype=_U64).reshape(-1, 1)
    # map() keeps the per-value loop in C (no generator frame per hash)
    raw = b"".join(map(int.to_bytes, vals, repeat(8 * words), repeat("big")))
    return np.frombuffer(raw, dtype=">u8").astype(_U64).reshape(len(vals), words)


def _words_for(nbits: int) -> int:
    if isinstance(nbits, bool) or not isinstance(nbits, int | np.integer) or nbits < 1:
        raise ConfigError(f"nbits must be a positive int (bits per hash, e.g. 64); got {nbits!r}")
    return (int(nbits) + 63) // 64


def _check_distance(max_distance: object) -> int:
    if (
        isinstance(max_distance, bool)
        or not isinstance(max_distance, int | np.integer)
        or max_distance < 0
    ):
        raise ConfigError(
            f"max_distance must be an int >= 0 (bits that may differ); got {max_distance!r}"
        )
    return int(max_distance)


def _as_code_array(codes: object) -> np.ndarray:
    """Validate a packed code array; 1-D input is taken as one word per code."""
    arr = np.asarray(codes)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"codes must be an (N, W) uint64 array; got shape {arr.shape}")
    if arr.dtype != _U64:
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"codes must be unsigned 64-bit integers; got dtype {arr.dtype}")
        if arr.size and np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
            raise ValueError("codes must be non-negative; pack them with pack_hashes()")
        arr = arr.astype(_U64)
    return np.ascontiguousarray(arr)


# ----------------------------------------------------------------------------- bit shuffling

Ranges = tuple[tuple[int, int], ...]  # (first bit, length); bit 0 = most significant code bit


@lru_cache(maxsize=8192)
def _shuffle_program(w_src: int, nbits: int, ranges: Ranges) -> tuple[int, tuple, bool]:
    """Compile "concatenate these bit ranges" into word operations.

    Pieces moving between the same pair of words by the same shift share one
    shift-and-mask, so contiguous or parallel blocks cost 2-3 NumPy passes in total.
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
            net = (64 - s % 64 - take) - (64 - dst % 64 - take)
            key = (dst // 64, s // 64, net)
            ops[key] = ops.get(key, 0) | (((1 << take) - 1) << (64 - dst % 64 - take))
            s, dst, length = s + take, dst + take, length - take
    prog = tuple(
        (sw, dw, _U64(abs(net)), net, _U64(mask)) for (dw, sw, net), mask in sorted(ops.items())
    )
    return w_dst, prog, total == 0


def _shuffle(cols: Sequence[np.ndarray], nbits: int, ranges: Ranges) -> list[np.ndarray]:
    """Concatenate bit ranges of codes given as word columns; result right-aligned, by word.

    Works in L2-sized slabs because each output word takes several passes over the input.
    """
    w_dst, prog, empty = _shuffle_program(len(cols), nbits, tuple(ranges))
    n = cols[0].shape[0]
    if empty:
        return [np.zeros(n, dtype=_U64)]
    out = [np.empty(n, dtype=_U64) for _ in range(w_dst)]
    tmp = np.empty(min(n, _SLAB), dtype=_U64)
    for lo in range(0, n, _SLAB):
        hi = min(n, lo + _SLAB)
        t = tmp[: hi - lo]
        last = -1
        for sw, dw, shift, net, mask in prog:
            src = cols[sw][lo:hi]
            dst = out[dw][lo:hi]
            first = dw != last  # the program is sorted by destination word
            last = dw
            tgt = dst if first else t
            if net > 0:
                np.right_shift(src, shift, out=tgt)
                np.bitwise_and(tgt, mask, out=tgt)
            elif net < 0:
                np.left_shift(src, shift, out=tgt)
                np.bitwise_and(tgt, mask, out=tgt)
            else:
                np.bitwise_and(src, mask, out=tgt)
            if not first:
                np.bitwise_or(dst, t, out=dst)
    return out


def _split_even(start: int, length: int, parts: int) -> list[tuple[int, int]]:
    """Cut ``length`` bits from ``start`` into ``parts`` near-equal ranges, larger first."""
    base, extra = divmod(length, parts)
    out, pos = [], start
    for i in range(parts):
        size = base + (i < extra)
        out.append((pos, size))
        pos += size
    return out


def _mask_pieces(
    start: int, length: int, nbits: int, words: int
) -> tuple[tuple[int, np.uint64], ...]:
    """A bit range as (word, mask) pieces of the packed layout."""
    g = 64 * words - nbits + start
    pieces = []
    while length:
        take = min(length, 64 - g % 64)
        pieces.append((g // 64, _U64(((1 << take) - 1) << (64 - g % 64 - take))))
        g, length = g + take, length - take
    return tuple(pieces)


def _differs(x: np.ndarray, pieces: tuple[tuple[int, np.uint64], ...]) -> np.ndarray:
    """Rows of XOR words ``x`` (h, W) that have a set bit inside the mask pieces."""
    w, m = pieces[0]
    out = (x[:, w] & m) != 0
    for w, m in pieces[1:]:
        out |= (x[:, w] & m) != 0
    return out


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class _Chunk:
    blocks: tuple[tuple[int, int], ...]  # (first bit, length) ranges, in bit order
    k: int  # blocks a pair must match exactly; one table per k-subset


@dataclass(frozen=True, slots=True)
class _Plan:
    chunks: tuple[_Chunk, ...]  # empty: brute force is cheaper
    cost_ns: float

    def tables(self) -> Iterator[tuple[int, tuple[int, ...]]]:
        for j, ch in enumerate(self.chunks):
            for subset in combinations(range(len(ch.blocks)), ch.k):
                yield j, subset


def _brute_cost(n: int, words: int) -> float:
    return (_NS_BRUTE + _NS_BRUTE_WORD * words) * n * (n - 1) / 2


@lru_cache(maxsize=1024)
def _binom_cdf(bits: int, t: int) -> float:
    """Probability that two random ``bits``-bit strings are within ``t`` of each other."""
    return sum(math.comb(bits, i) for i in range(min(t, bits) + 1)) / 2.0**bits


def _probe_words(t: int, words: int) -> int:
    """Words checked during the scan of a wide table: enough that random pairs rarely pass."""
    probes = 1
    while probes < words and _binom_cdf(64 * probes, t) > 0.01:
        probes += 1
    return probes


def _plan_join(n: int, nbits: int, t: int, words: int, brute: bool = True) -> _Plan:
    """Choose chunks, radii and blocks for a self-join of ``n`` unique codes (0 < t < nbits).

    Generalised pigeonhole: with ``c`` chunks and ``t = c*r + a``, a pair within ``t`` is
    within ``r`` on one of the first ``a + 1`` chunks or within ``r - 1`` on another. Each
    chunk then uses "k of r + k blocks agree". The cost model trades the number of tables
    (a sort of ``n`` codes each) against the expected random candidates per table,
    ``n^2 / 2^(key bits + 1)``.
    """
    pairs = n * (n - 1) / 2
    best = _Plan((), _brute_cost(n, words) if brute else math.inf)
    if words == 1:
        keycap, row_ns, pair_ns = 64, _NS_ROW_NARROW, _NS_PAIR_NARROW
    else:
        keycap = 64 - max(1, (n - 1).bit_length())
        probes = _probe_words(t, words)
        row_ns = _NS_ROW_WIDE + _NS_ROW_PROBE * probes
        pair_ns = _NS_PAIR_PROBE * probes + _NS_PAIR_WIDE * _binom_cdf(64 * probes, t)
    for c in range(1, min(t + 1, nbits) + 1):
        r, a = divmod(t, c)
        chunks: list[_Chunk] = []
        total = 0.0
        for j, (start, size) in enumerate(_split_even(0, nbits, c)):
            rj = r if j <= a else r - 1
            if rj < 0:
                break  # the first a + 1 chunks already satisfy the pigeonhole
            choice: tuple[float, int, int] | None = None
            for k in range(1, size - rj + 1):
                m = rj + k
                tables = math.comb(m, k)
                if tables > _MAX_TABLES:
                    break
                key_bits = min(size * k / m, keycap)
                cost = tables * (_NS_TABLE + n * row_ns + pair_ns * pairs * 2.0**-key_bits)
                if choice is None or cost < choice[0]:
                    choice = (cost, k, m)
                if rj == 0:
                    break  # a single table keyed on the whole chunk
            if choice is None:
                total = math.inf
                break
            cost, k, m = choice
            chunks.append(_Chunk(tuple(_split_even(start, size, m)), k))
            total += cost
        if total < best.cost_ns:
            best = _Plan(tuple(chunks), total)
    return best


@dataclass(frozen=True, slots=True)
class _Owner:
    """The ownership rule of one table, as masks in the layout its pairs are verified in."""

    must_differ: tuple  # blocks before the subset's last block, outside it: must differ
    must_agree: tuple  # subset blocks not fully covered by a truncated key
    earlier: tuple  # (block masks, k) of earlier chunks: fewer than k may agree


def _owner_rule(
    plan: _Plan, j: int, subset: tuple[int, ...], mask_of: dict[tuple[int, int], tuple]
) -> _Owner:
    inside = set(subset)
    differ = tuple(mask_of[(j, b)] for b in range(max(subset)) if b not in inside)
    earlier = tuple(
        (tuple(mask_of[(i, b)] for b in range(len(plan.chunks[i].blocks))), plan.chunks[i].k)
        for i in range(j)
    )
    return _Owner(differ, (), earlier)


def _owned(x: np.ndarray, rule: _Owner) -> np.ndarray:
    """Indices of XOR rows ``x`` (h, W) whose owner table is ``rule``'s table."""
    idx = np.arange(x.shape[0])
    for pieces in rule.must_differ:
        idx = idx[_differs(x[idx], pieces)]
    for pieces in rule.must_agree:
        idx = idx[~_differs(x[idx], pieces)]
    for masks, k in rule.earlier:
        if not idx.size:
            break
        sub = x[idx]
        agree = np.zeros(idx.size, dtype=np.int32)
        for pieces in masks:
            agree += ~_differs(sub, pieces)
        idx = idx[agree < k]
    return idx


# ----------------------------------------------------------------------------- self-join


def _expand(
    p: np.ndarray, first: np.ndarray, counts: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield batches of pairs ``(p[i], first[i] + t)`` for ``t < counts[i]``."""
    keep = counts > 0
    p, first, counts = p[keep], first[keep], counts[keep]
    if not p.size:
        return
    csum = np.cumsum(counts)
    start = 0
    while start < p.size:
        base = int(csum[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(csum, base + _PAIR_BATCH, side="right")))
        c = counts[start:stop]
        rep = np.repeat(np.arange(start, stop), c)
        off = np.arange(int(c.sum()), dtype=np.int64) - np.repeat(csum[start:stop] - c - base, c)
        yield p[rep], first[rep] + off
        start = stop


def _scan_sorted(
    n: int,
    compare: Callable[[slice | np.ndarray, slice | np.ndarray], tuple[np.ndarray, np.ndarray]],
    run_of: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    emit: Callable[[np.ndarray, np.ndarray], None],
    block: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> list[tuple[int, int]]:
    """Find candidate pairs ``(p, q)``, ``p < q``, in runs of equal keys of a sorted table.

    ``compare(a, b)`` compares positions ``a`` and ``b`` (slices or index arrays) and returns
    ``(same, hit)``: same key, and worth verifying (``hit`` may pre-filter by distance).
    ``run_of(p)`` is the ``[start, stop)`` of the run holding each position of the int
    array ``p``, as two arrays. Hits go to ``emit``. ``block(rows, cols)``, if given, is
    ``hit`` for every position of ``rows`` against every one of ``cols`` (all in one run)
    as a matrix; it may filter harder than ``compare`` (see :func:`_run_tails`).

    Offsets ``d = q - p`` are scanned one by one while many positions still share a key at
    offset ``d``, on contiguous L2-sized slabs (no gathers, ~1 ns per code and offset); the
    sparse remainder goes to :func:`_run_tails`, which lists it whole. The total work is
    about the number of candidate pairs. Runs longer than ``_GIANT_RUN`` (found because
    ``p`` and ``p + _GIANT_RUN`` share a key) are skipped and returned as ``(start, stop)``
    for the caller to join recursively, so one huge bucket never costs its size squared.
    """
    giants: list[tuple[int, int]] = []
    buf_p: list[np.ndarray] = []
    buf_q: list[np.ndarray] = []
    held = 0
    alive_p: list[np.ndarray] = []
    alive_d: list[np.ndarray] = []
    big = _GIANT_RUN
    for lo in range(0, n - 1, _SLAB):
        hi = min(n - 1, lo + _SLAB)
        m = min(hi, n - big) - lo
        if m > 0:
            same, _ = compare(slice(lo, lo + m), slice(lo + big, lo + big + m))
            found = np.flatnonzero(same)
            while found.size:
                starts, stops = run_of(found[:1] + lo)
                start, stop = int(starts[0]), int(stops[0])
                if not giants or giants[-1] != (start, stop):
                    giants.append((start, stop))
                found = found[found + lo >= stop]
        skip = None
        for start, stop in reversed(giants):
            if stop <= lo:
                break
            if skip is None:
                skip = np.zeros(hi - lo, dtype=bool)
            skip[max(start, lo) - lo : min(stop, hi) - lo] = True
        d = 1
        while (m := min(hi, n - d) - lo) > 0:
            same, hit = compare(slice(lo, lo + m), slice(lo + d, lo + d + m))
            if skip is not None:
                same &= ~skip[:m]
                hit &= ~skip[:m]
            found = np.flatnonzero(hit)
            if found.size:
                buf_p.append(found + lo)
                buf_q.append(found + (lo + d))
                held += found.size
            alive = np.count_nonzero(same)
            if not alive:
                break
            if alive < m * _DENSE_MIN or d == _GIANT_CHECK:
                # few positions left: follow them individually from offset d + 1
                rest = np.flatnonzero(same) + lo
                alive_p.append(rest)
                alive_d.append(np.full(rest.size, d + 1, dtype=np.int64))
                break
            d += 1
        if held > _PAIR_BATCH // 4:
            emit(np.concatenate(buf_p), np.concatenate(buf_q))
            buf_p, buf_q, held = [], [], 0
    if alive_p:
        p, off = np.concatenate(alive_p), np.concatenate(alive_d)
        for hp, hq in _run_tails(p, p + off, run_of, compare, block):
            buf_p.append(hp)
            buf_q.append(hq)
            held += hp.size
            if held > _PAIR_BATCH // 4:
                emit(np.concatenate(buf_p), np.concatenate(buf_q))
                buf_p, buf_q, held = [], [], 0
    if buf_p:
        emit(np.concatenate(buf_p), np.concatenate(buf_q))
    return giants


def _run_tails(
    p: np.ndarray,
    first: np.ndarray,
    run_of: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    compare: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    block: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Hits among the pairs ``(p[i], q)``, ``first[i] <= q < end of p[i]'s run``.

    ``p`` is ascending. All candidates are listed at once rather than one offset per
    step (that cost a Python round per offset of the longest run: hundreds on real photo
    collections). Positions in runs longer than ``_LONG_RUN`` are tested against their
    run as blocks of a matrix (``block``, default a broadcast ``compare``: no pair index
    arrays, a few ns per pair); the others as explicit pair lists built by :func:`_expand`.
    Long runs are where most candidates of real (correlated) hashes are, so a ``block``
    that checks more of the code than ``compare`` keeps millions of false candidates from
    ``emit``.
    """
    starts, stops = (np.asarray(v, dtype=np.int64) for v in run_of(p))
    long = stops - starts > _LONG_RUN
    short = ~long
    for pp, qq in _expand(p[short], first[short], stops[short] - first[short]):
        _, hit = compare(pp, qq)
        found = np.flatnonzero(hit)
        if found.size:
            yield pp[found], qq[found]
    if not long.any():
        return
    p, first, starts, stops = p[long], first[long], starts[long], stops[long]
    # p ascending and runs contiguous: each run's positions are one slice of p
    cuts = np.flatnonzero(starts[1:] != starts[:-1]) + 1
    for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), p.size], strict=True):
        stop = int(stops[lo])
        # Rows of one run can come from different slabs of the dense phase, which stopped
        # at different offsets: their first columns need not ascend with the row (that
        # assumption once lost pairs), so each block starts at its smallest.
        step = max(1, (1 << 18) // max(1, stop - int(first[lo:hi].min())))  # ~256k cells
        for b in range(lo, hi, step):
            rows, firsts = p[b : b + step], first[b : b + step]
            cols = np.arange(int(firsts.min()), stop)
            if block is None:
                _, hit = compare(rows[:, None], cols[None, :])
            else:
                hit = block(rows, cols)
            # Hits are few: find them in the flat matrix (much faster than a 2-D nonzero),
            # then drop those before their row's first offset.
            flat = np.flatnonzero(hit)
            if flat.size:
                r, c = np.divmod(flat, cols.size)
                keep = cols[c] >= firsts[r]
                yield rows[r[keep]], cols[c[keep]]


def _brute_join(codes: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs a < b within ``t``, by blocked all-against-all popcounts (O(n^2) time)."""
    n, words = codes.shape
    cols = [np.ascontiguousarray(codes[:, w]) for w in range(words)]
    out_a, out_b, out_d = [], [], []
    step = max(1, min(n, (1 << 18) // max(1, n)))  # ~256k distances at a time stay in cache
    upper = np.triu(np.ones((step, step), dtype=bool))
    for lo in range(0, n - 1, step):
        hi = min(n - 1, lo + step)
        # rows lo..hi-1 against rows lo+1..n-1: column c is row lo + 1 + c
        dist = np.bitwise_count(cols[0][lo:hi, None] ^ cols[0][None, lo + 1 :])
        if words > 1:
            dist = dist.astype(np.uint16)
            for col in cols[1:]:
                dist += np.bitwise_count(col[lo:hi, None] ^ col[None, lo + 1 :])
        ok = dist <= t
        ok[:, : hi - lo] &= upper[: hi - lo, : hi - lo]  # keep column rows after the row
        r, c = np.nonzero(ok)
        out_a.append(r + lo)
        out_b.append(c + lo + 1)
        out_d.append(dist[r, c])
    return _cat3(out_a, out_b, out_d)


def _cat3(a: list, b: list, d: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not a:
        return _EMPTY_I64, _EMPTY_I64, _EMPTY_I64
    return (
        np.concatenate(a).astype(np.int64, copy=False),
        np.concatenate(b).astype(np.int64, copy=False),
        np.concatenate(d).astype(np.int64, copy=False),
    )


def _self_join(
    codes: np.ndarray, nbits: int, t: int, brute: bool = True, workers: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``a < b`` of rows within ``t``; rows must be unique, bits above nbits zero.

    ``brute=False`` forbids the brute-force plan at this level (tests use it to exercise
    the tables on small inputs).
    """
    n, words = codes.shape
    if n < 2 or t <= 0:
        return _EMPTY_I64, _EMPTY_I64, _EMPTY_I64
    plan = _plan_join(n, nbits, t, words, brute) if t < nbits else _Plan((), 0.0)
    if not plan.chunks:
        return _brute_join(codes, t)
    if words == 1:
        a, b, d = _narrow_join(codes[:, 0], nbits, t, plan, workers)
    else:
        a, b, d = _wide_join(codes, nbits, t, plan, workers)
    return np.minimum(a, b), np.maximum(a, b), d


def _table_layout(plan: _Plan, j: int, subset: tuple[int, ...]) -> tuple[Ranges, Ranges]:
    """(key ranges, the other ranges in bit order) of one table."""
    blocks = plan.chunks[j].blocks
    key = tuple(blocks[b] for b in subset)
    # blocks are disjoint bit ranges, so "not a key block" is a plain set test
    keyset = set(key)
    rest = (blk for ch in plan.chunks for blk in ch.blocks if blk not in keyset)
    return key, _merge_ranges(rest)


def _merge_ranges(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sort ranges by start and fuse adjacent ones."""
    out: list[list[int]] = []
    for s, length in sorted(ranges):
        if out and out[-1][0] + out[-1][1] == s:
            out[-1][1] += length
        else:
            out.append([s, length])
    return tuple((s, length) for s, length in out)


def _run_tables(
    plan: _Plan,
    table: Callable[[int, tuple[int, ...]], list[tuple[np.ndarray, np.ndarray, np.ndarray]]],
    workers: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``table(j, subset)`` for every table, on ``workers`` threads, and concatenate.

    Tables are independent and NumPy releases the GIL in sorts and large element-wise
    loops, so two threads give most of a second core. Memory grows by one table per worker.
    """
    tables = list(plan.tables())
    if workers > 1 and len(tables) > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda js: table(*js), tables))
    else:
        results = [table(j, subset) for j, subset in tables]
    found = [hit for res in results for hit in res]
    return _cat3([h[0] for h in found], [h[1] for h in found], [h[2] for h in found])


def _narrow_join(
    vals: np.ndarray, nbits: int, t: int, plan: _Plan, workers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Self-join of unique one-word codes: tables hold bit-permuted codes, key bits on top.

    Sorting the permuted codes themselves (not indices) uses NumPy's fast value sort and
    leaves every candidate's full code next to its key, so verification needs no gathers.
    """
    if vals.size > 1 and not np.all(vals[1:] > vals[:-1]):
        order = np.argsort(vals, kind="stable")
        a, b, d = _narrow_join(vals[order], nbits, t, plan, workers)
        return order[a], order[b], d
    return _run_tables(plan, lambda j, subset: _narrow_table(vals, nbits, t, plan, j, subset),
                       workers)


def _narrow_table(
    vals: np.ndarray, nbits: int, t: int, plan: _Plan, j: int, subset: tuple[int, ...]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pairs owned by one table of :func:`_narrow_join`, as ``(rows_a, rows_b, distance)``."""
    key, rest = _table_layout(plan, j, subset)
    low = nbits - sum(length for _, length in key)
    if low == 0:
        return []  # the key is the whole code, and codes are unique
    perm = key + rest
    # where each block lands in the permuted code, for the ownership masks
    new_start, pos = {}, 0
    for s, length in perm:
        new_start[s] = pos
        pos += length
    mask_of = {
        (jj, bb): _mask_pieces(_new_position(s, perm, new_start), length, nbits, 1)
        for jj, ch in enumerate(plan.chunks)
        for bb, (s, length) in enumerate(ch.blocks)
    }
    rule = _owner_rule(plan, j, subset, mask_of)
    # undo the permutation: the permuted ranges, listed in original bit order
    inverse = tuple((new_start[s], length) for s, length in sorted(perm))
    y = _shuffle([vals], nbits, perm)[0]
    y.sort()
    limit = _U64(1) << _U64(low)  # same key <=> XOR below the key bits
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def compare(a: slice | np.ndarray, b: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = y[a] ^ y[b]
        same = x < limit
        return same, same & (np.bitwise_count(x) <= t)

    low_mask = _U64((1 << low) - 1)

    def run_of(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.searchsorted(y, y[p] & ~low_mask, side="left"),
                np.searchsorted(y, y[p] | low_mask, side="right"))

    def emit(p: np.ndarray, q: np.ndarray) -> None:
        x = y[p] ^ y[q]
        d = np.bitwise_count(x)
        hit = np.flatnonzero(d <= t)
        if hit.size:
            hit = hit[_owned(x[hit, None], rule)]
        if hit.size:
            # back to rows: undo the permutation, then find the code among the sorted input
            both = _shuffle([np.concatenate([y[p[hit]], y[q[hit]]])], nbits, inverse)[0]
            rows = np.searchsorted(vals, both)
            found.append((rows[: hit.size], rows[hit.size :], d[hit]))

    for s, e in _scan_sorted(y.size, compare, run_of, emit):
        # the run's codes share the key: join them on the low bits only
        sub = (y[s:e] & (limit - _U64(1))).reshape(-1, 1)
        la, lb, _ = _self_join(sub, low, t)
        emit(la + s, lb + s)
    return found


def _new_position(start: int, perm: Ranges, new_start: dict[int, int]) -> int:
    """New position of original bit ``start`` (a block start) under the permutation ``perm``."""
    for s, length in perm:
        if s <= start < s + length:
            return new_start[s] + (start - s)
    raise AssertionError("bit not covered by the permutation")


def _wide_join(
    codes: np.ndarray, nbits: int, t: int, plan: _Plan, workers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Self-join of unique multi-word codes: tables are sorted ``key << idx_bits | row``."""
    cols = [np.ascontiguousarray(codes[:, w]) for w in range(codes.shape[1])]
    return _run_tables(
        plan, lambda j, subset: _wide_table(codes, cols, nbits, t, plan, j, subset), workers
    )


def _wide_table(
    codes: np.ndarray,
    cols: list[np.ndarray],
    nbits: int,
    t: int,
    plan: _Plan,
    j: int,
    subset: tuple[int, ...],
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pairs owned by one table of :func:`_wide_join`, as ``(rows_a, rows_b, distance)``."""
    n, words = codes.shape
    idx_bits = max(1, (n - 1).bit_length())
    mask_of = {
        (jj, bb): _mask_pieces(s, length, nbits, words)
        for jj, ch in enumerate(plan.chunks)
        for bb, (s, length) in enumerate(ch.blocks)
    }
    key, _ = _table_layout(plan, j, subset)
    rule = _owner_rule(plan, j, subset, mask_of)
    # the key shares a word with the row index; a longer key is cut, and pairs must then
    # be checked on the cut blocks explicitly
    used, cut, room = [], [], 64 - idx_bits
    for s, length in key:
        take = min(length, room)
        if take:
            used.append((s, take))
        if take < length:
            cut.append(mask_of[(j, plan.chunks[j].blocks.index((s, length)))])
        room -= take
    if cut:
        rule = _Owner(rule.must_differ, tuple(cut), rule.earlier)
    used_bits = sum(length for _, length in used)
    keys = _shuffle(cols, nbits, tuple(used))[0]
    keys <<= _U64(idx_bits)
    keys |= np.arange(n, dtype=_U64)
    keys.sort()
    order = (keys & _U64((1 << idx_bits) - 1)).astype(np.intp)
    keys >>= _U64(idx_bits)
    # A word or two of every code, in table order: their popcount bounds the distance from
    # below, so the scan drops most candidates without gathering whole rows. Take the words
    # with the fewest key bits (key bits of a candidate pair are equal and add nothing).
    in_key = [0] * words
    for s, length in used:
        for w, m in _mask_pieces(s, length, nbits, words):
            in_key[w] += int(m).bit_count()
    ranked = sorted(range(words), key=in_key.__getitem__)
    n_probes = _probe_words(t, words)
    probes = [cols[w][order] for w in ranked[:n_probes]]
    # emit() checks the probed words last: every candidate already passed them
    check = [cols[w] for w in (*ranked[n_probes:], *ranked[:n_probes])]
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def compare(a: slice | np.ndarray, b: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        same = keys[a] == keys[b]
        d = np.bitwise_count(probes[0][a] ^ probes[0][b])
        if len(probes) > 1:
            d = d.astype(np.uint16)  # four words can differ in 256 bits
        for probe in probes[1:]:
            d += np.bitwise_count(probe[a] ^ probe[b])
        return same, same & (d <= t)

    def run_of(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.searchsorted(keys, keys[p], side="left"),
                np.searchsorted(keys, keys[p], side="right"))

    def emit(p: np.ndarray, q: np.ndarray) -> None:
        ra, rb = order[p], order[q]
        # word by word, dropping pairs as soon as they are too far apart
        d = np.zeros(ra.size, dtype=np.int64)
        for col in check:
            d += np.bitwise_count(col[ra] ^ col[rb])
            near = np.flatnonzero(d <= t)
            if near.size < d.size:
                ra, rb, d = ra[near], rb[near], d[near]
        if d.size:
            x = np.stack([col[ra] ^ col[rb] for col in cols], axis=1)
            hit = _owned(x, rule)
            found.append((ra[hit], rb[hit], d[hit]))

    def block(rows: np.ndarray, others: np.ndarray) -> np.ndarray:
        # Distance on _BLOCK_WORDS words of every pair, as a matrix (the words gathered once
        # per block): in long runs of correlated codes one probe word passes many pairs
        # (a third of 2.6M in one table of real photos), which emit() would then gather.
        ra, rb = order[rows], order[others]
        d = np.bitwise_count(check[0][ra][:, None] ^ check[0][rb][None, :])  # uint8
        if _BLOCK_WORDS > 3:
            d = d.astype(np.uint16)  # four words can differ in 256 bits
        for col in check[1:_BLOCK_WORDS]:
            d += np.bitwise_count(col[ra][:, None] ^ col[rb][None, :])
        return d <= t

    rest = _merge_ranges(_complement(used, nbits))
    for s, e in _scan_sorted(n, compare, run_of, emit, block):
        # the run's codes share the used key bits: join them on the other bits only
        members = order[s:e]
        sub = np.stack(_shuffle([c[members] for c in cols], nbits, rest), axis=1)
        la, lb, _ = _self_join(sub, nbits - used_bits, t)
        emit(la + s, lb + s)
    return found


def _complement(ranges: Iterable[tuple[int, int]], nbits: int) -> list[tuple[int, int]]:
    """Bit ranges of ``[0, nbits)`` not covered by ``ranges``."""
    out, pos = [], 0
    for s, length in _merge_ranges(ranges):
        if s > pos:
            out.append((pos, s - pos))
        pos = s + length
    if pos < nbits:
        out.append((pos, nbits - pos))
    return out


# ----------------------------------------------------------------------------- public self-join


class CollapsedPairs(NamedTuple):
    """Pairs among *distinct* codes; identical codes are collapsed into groups.

    Rows ``r != s`` of the input are within ``max_distance`` exactly when
    ``groups[r] == groups[s]`` (distance 0) or ``(groups[r], groups[s])`` is a listed pair.
    Groups are numbered by first occurrence, so without duplicates ``groups[r] == r`` and the
    pairs are the row pairs.

    Attributes:
        representatives: ``(G,)`` int64, the first input row of each group (ascending).
        groups: ``(N,)`` int64, the group of each input row.
        i: ``(P,)`` int64 group ids, ``i < j``, sorted by ``(i, j)``.
        j: ``(P,)`` int64 group ids.
        distance: ``(P,)`` int64 Hamming distances between the groups' codes.
    """

    representatives: np.ndarray
    groups: np.ndarray
    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray

    def expand(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row pairs ``(i, j, distance)`` as :func:`find_pairs` returns them.

        Cost: the output size, which is quadratic in the size of each group of identical
        codes; prefer consuming the collapsed form (e.g. union the groups) when hashes repeat.
        """
        n, g = self.groups.size, self.representatives.size
        if g == n:  # no duplicates: groups are rows
            return self.i.copy(), self.j.copy(), self.distance.copy()
        order = np.argsort(self.groups, kind="stable")  # members by group, rows ascending
        counts = np.bincount(self.groups, minlength=g)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        parts_a, parts_b, parts_d = [], [], []
        # pairs inside a group: each member with the later members of its group
        pos = np.arange(n)
        run_stop = np.repeat(starts + counts, counts)
        for p, q in _expand(pos, pos + 1, run_stop - pos - 1):
            parts_a.append(order[p])
            parts_b.append(order[q])
            parts_d.append(np.zeros(p.size, dtype=np.int64))
        # pairs across groups: the product of the two member lists
        if self.i.size:
            ci, cj = counts[self.i], counts[self.j]
            idx = np.arange(self.i.size)
            for pi, flat in _expand(idx, np.zeros_like(idx), ci * cj):
                a = order[starts[self.i[pi]] + flat // cj[pi]]
                b = order[starts[self.j[pi]] + flat % cj[pi]]
                parts_a.append(np.minimum(a, b))
                parts_b.append(np.maximum(a, b))
                parts_d.append(self.distance[pi])
        a, b, d = _cat3(parts_a, parts_b, parts_d)
        return _sort_pairs(a, b, d, n)


def _sort_pairs(
    a: np.ndarray, b: np.ndarray, d: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def find_pairs_collapsed(
    codes: np.ndarray, max_distance: int, *, workers: int | None = None
) -> CollapsedPairs:
    """All pairs of distinct codes within ``max_distance``, identical codes collapsed.

    Use this from grouping code (union-find over ``groups`` and the pairs): if 100,000 images
    share one hash, the expanded output would be 5e9 pairs, while here it is one group.

    Args:
        codes: ``(N, W)`` uint64 array from :func:`pack_hashes` (1-D means ``W = 1``).
        max_distance: Largest Hamming distance reported, in bits (``>= 0``).
        workers: Threads for the tables (default: CPU count, at most 4).

    Returns:
        A :class:`CollapsedPairs`; pairs are between group ids.

    Raises:
        ConfigError: ``max_distance`` is not an int ``>= 0`` (a ``ValueError``).
        ValueError: ``codes`` is not a 2-D array of non-negative integers.

    Note:
        Exact: the same pairs a brute-force scan finds. Time is roughly
        ``N log N + tables * N * 25-45 ns`` plus ~20 ns per candidate pair, with 10-600
        tables for 64-bit codes and radii up to 10 (chosen by a cost model); memory is
        ``O(N)`` words plus the output. For 64-bit codes: 1M at ``max_distance=8`` takes
        about 9 CPU-seconds, 10M at 4 about 23 and 10M at 8 about 300, in under 1 GB.

    Examples:
        >>> res = find_pairs_collapsed(pack_hashes([5, 5, 7, 1 << 40], 64), 1)
        >>> res.groups.tolist(), res.i.tolist(), res.j.tolist(), res.distance.tolist()
        ([0, 0, 1, 2], [0], [1], [1])
    """
    t = _check_distance(max_distance)
    nworkers = _check_workers(workers)
    arr = _as_code_array(codes)
    n, words = arr.shape
    if n == 0:
        return CollapsedPairs(_EMPTY_I64, _EMPTY_I64, _EMPTY_I64, _EMPTY_I64, _EMPTY_I64)
    # 1. collapse identical codes (stable sort, so a group's first row is its representative)
    order = np.argsort(arr[:, 0], kind="stable") if words == 1 else np.lexsort(arr.T[::-1])
    uniq = arr[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (uniq[1:] != uniq[:-1]).any(axis=1)
    uniq = uniq[new]
    first_row = order[new]  # per distinct code (in code order), its first row
    # number groups by first occurrence, so that without duplicates group == row
    by_first = np.argsort(first_row)
    gid = np.empty_like(by_first)
    gid[by_first] = np.arange(by_first.size)
    groups = np.empty(n, dtype=np.int64)
    groups[order] = gid[np.cumsum(new) - 1]
    representatives = first_row[by_first].astype(np.int64)
    del order, new, first_row, by_first
    # 2. drop bits that are equal in every code: they never add to a distance
    nbits = 64 * words
    free = np.bitwise_or.reduce(uniq, axis=0) & ~np.bitwise_and.reduce(uniq, axis=0)
    free_ranges = _merge_ranges(
        (64 * w + (63 - b), 1) for w in range(words) for b in range(64) if int(free[w]) >> b & 1
    )
    nfree = sum(length for _, length in free_ranges)
    if nfree == 0:  # a single distinct code
        return CollapsedPairs(representatives, groups, _EMPTY_I64, _EMPTY_I64, _EMPTY_I64)
    if nfree < nbits:
        cols = [np.ascontiguousarray(uniq[:, w]) for w in range(words)]
        uniq = np.stack(_shuffle(cols, nbits, free_ranges), axis=1)
        nbits = nfree
    # 3. join the distinct codes
    a, b, d = _self_join(uniq, nbits, t, brute=_TOP_LEVEL_BRUTE, workers=nworkers)
    ga, gb = gid[a], gid[b]
    i, j, d = _sort_pairs(np.minimum(ga, gb), np.maximum(ga, gb), d, gid.size)
    return CollapsedPairs(representatives, groups, i, j, d)


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return max(1, min(4, os.cpu_count() or 1))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an int >= 1 (threads), or None; got {workers!r}")
    return workers


def find_pairs(
    codes: np.ndarray, max_distance: int, *, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All row pairs ``(i, j)``, ``i < j``, whose codes are within ``max_distance`` bits.

    Args:
        codes: ``(N, W)`` uint64 array from :func:`pack_hashes` (1-D means ``W = 1``).
        max_distance: Largest Hamming distance reported, in bits (``>= 0``).
        workers: Threads for the tables (default: CPU count, at most 4).

    Returns:
        ``(i, j, distance)`` int64 arrays, each pair once, sorted by ``(i, j)``; ``distance``
        is the popcount of the XOR over all words.

    Raises:
        ConfigError: ``max_distance`` is not an int ``>= 0`` (a ``ValueError``).
        ValueError: ``codes`` is not a 2-D array of non-negative integers.

    Note:
        Exact and sub-quadratic (see :func:`find_pairs_collapsed` for the cost), but the
        *output* of ``k`` identical codes is ``k*(k-1)/2`` pairs: with many repeated hashes
        call :func:`find_pairs_collapsed` instead.

    Examples:
        >>> i, j, d = find_pairs(pack_hashes([0b1010, 0b1011, 0b0101], 4), 1)
        >>> i.tolist(), j.tolist(), d.tolist()
        ([0], [1], [1])
    """
    return find_pairs_collapsed(codes, max_distance, workers=workers).expand()


# ----------------------------------------------------------------------------- query index


@lru_cache(maxsize=256)
def _neighbour_masks(bits: int, radius: int) -> np.ndarray:
    """All XOR masks of weight <= radius on ``bits`` bits, lightest first."""
    out = [0]
    for r in range(1, radius + 1):
        out.extend(sum(1 << b for b in c) for c in combinations(range(bits), r))
    return np.array(out, dtype=_U64)


def _ball(bits: int, radius: int) -> int:
    return sum(math.comb(bits, r) for r in range(min(bits, radius) + 1))


@dataclass(frozen=True, slots=True)
class _QueryPlan:
    chunks: tuple[tuple[int, int, int], ...]  # (first bit, bits used as key, radius)
    cost_ns: float


def _plan_query(n: int, nbits: int, t: int, idx_bits: int) -> _QueryPlan:
    """Classic multi-index hashing for queries: probe each chunk's ball of radius ``r_j``.

    Tables are one sorted array per chunk (8 bytes per code), so the index stays small;
    the price is enumerating ``sum_j V(bits_j, r_j)`` neighbour keys per query.
    """
    best = _QueryPlan((), _NS_CANDIDATE * n)
    keycap = 64 - idx_bits
    for c in range(1, min(t + 1, nbits) + 1):
        r, a = divmod(t, c)
        chunks, cost = [], 0.0
        for jj, (start, size) in enumerate(_split_even(0, nbits, c)):
            rj = r if jj <= a else r - 1
            if rj < 0:
                break
            bits = min(size, keycap)  # unused bits only cost selectivity, not correctness
            probes = _ball(bits, rj)
            if probes > _MAX_PROBES:
                cost = math.inf
                break
            chunks.append((start, bits, rj))
            cost += probes * (_NS_PROBE + _NS_CANDIDATE * n * 2.0**-bits)
        if cost < best.cost_ns:
            best = _QueryPlan(tuple(chunks), cost)
    return best


class HammingIndex:
    """Exact Hamming-distance index over hashes of ``nbits`` bits, with ids.

    Add hashes (and ids), then ask which stored hashes lie within ``max_distance`` of new
    ones, without rescanning everything. Results are exact (verified with a popcount), so
    unlike LSH indexes they need no re-ranking; the grouper may still re-check them.

    Internally this is multi-index hashing: for a query radius a cost model picks ``c``
    chunks with radii ``r_j`` (``sum(r_j + 1) > max_distance``); each chunk has one sorted
    table of ``key << idx_bits | row`` (8 bytes per hash), built on first use and kept until
    the index changes, and a query probes every key within ``r_j`` of its own chunk key.
    Hashes added one call at a time sit in a small unsorted buffer scanned by brute force,
    merged into the tables once it exceeds 1/8 of the index.

    Memory: ``8 * W + 25`` bytes per hash, plus 8 bytes per hash per chunk table (3 tables
    for 64-bit hashes and radius 8 at 1M hashes).

    Args:
        nbits: Bits per hash (e.g. 64 for an 8x8 dHash).
        max_distance: The radius you usually query with (optional). When set, it is the
            default for :meth:`query`, and :meth:`bulk` builds its tables on exit instead of
            on the first query.

    Raises:
        ConfigError: ``nbits`` or ``max_distance`` is invalid (a ``ValueError``).

    Examples:
        >>> index = HammingIndex(64)
        >>> index.add([0b1111, 0b1110, 1 << 63], ids=[10, 11, 12]).tolist()
        [10, 11, 12]
        >>> index.query(0b0111, max_distance=2)
        [(10, 1), (11, 2)]
        >>> index.remove(11)
        >>> len(index), 11 in index
        (2, False)
    """

    def __init__(self, nbits: int, *, max_distance: int | None = None) -> None:
        self._words = _words_for(nbits)
        self.nbits = int(nbits)
        if max_distance is not None:
            _check_distance(max_distance)
            if max_distance > self.nbits:
                raise ConfigError(
                    f"max_distance={max_distance} exceeds nbits={self.nbits}, so every hash"
                    " would match; use a radius of at most nbits"
                )
        self.max_distance = max_distance
        # rows [0, size) of growable arrays; rows [0, n_main) are in the tables
        self._codes_buf = np.zeros((0, self._words), dtype=_U64)
        self._ids_buf = _EMPTY_I64
        self._alive_buf = np.zeros(0, dtype=bool)
        self._size = 0
        self._n_main = 0
        self._live = 0
        self._sorted_ids = _EMPTY_I64  # ids of the main rows, sorted, and their rows
        self._sorted_rows = _EMPTY_I64
        self._buffer_rows: dict[int, int] = {}  # id -> row, for rows after n_main
        self._tables: dict[tuple, list[np.ndarray]] = {}
        self._next_id = 0
        self._bulk: list[tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def _codes(self) -> np.ndarray:
        return self._codes_buf[: self._size]

    @property
    def _ids(self) -> np.ndarray:
        return self._ids_buf[: self._size]

    @property
    def _alive(self) -> np.ndarray:
        return self._alive_buf[: self._size]

    # -- size and membership

    def __len__(self) -> int:
        """Number of stored hashes (removed ones excluded)."""
        return self._live

    def __contains__(self, item_id: object) -> bool:
        if isinstance(item_id, bool) or not isinstance(item_id, int | np.integer):
            return False
        return self._row_of(int(item_id)) is not None

    def __repr__(self) -> str:
        return f"HammingIndex(nbits={self.nbits}, hashes={self._live})"

    def _row_of(self, item_id: int) -> int | None:
        row = self._buffer_rows.get(item_id)
        if row is not None:
            return row
        at = int(np.searchsorted(self._sorted_ids, item_id))
        if at < self._sorted_ids.size and self._sorted_ids[at] == item_id:
            row = int(self._sorted_rows[at])
            if self._alive_buf[row]:
                return row
        return None

    # -- adding and removing

    def add(self, hashes: object, ids: Iterable[int] | None = None) -> np.ndarray:
        """Store hashes under ids.

        Args:
            hashes: A sequence of ints below ``2**nbits``, a 1-D integer array (``nbits <=
                64``), or an ``(n, W)`` uint64 array from :func:`pack_hashes`.
            ids: Unique int ids, one per hash; default: consecutive ints after the largest
                id seen so far.

        Returns:
            The ids, as an int64 array.

        Raises:
            ValueError: A hash does not fit in ``nbits`` bits, the shapes disagree, or an id
                is already stored (or repeated).

        Note:
            Cost: ``O(n)`` amortised, plus now and then a rebuild of the tables when the
            buffer outgrows 1/8 of the index (amortised ``O(log N)`` per hash). Inside
            :meth:`bulk` the hashes are only queued.
        """
        codes = self._to_codes(hashes)
        n = codes.shape[0]
        if ids is None:
            new_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        else:
            raw = ids if isinstance(ids, np.ndarray) else np.array(list(ids))
            if raw.shape != (n,) or (n and not np.issubdtype(raw.dtype, np.integer)):
                raise ValueError(f"ids must be {n} ints, one per hash; got shape {raw.shape}")
            new_ids = raw.astype(np.int64)
            if np.unique(new_ids).size != n:
                raise ValueError("ids must be unique within one add() call")
        self._check_new_ids(new_ids, buffered=self._bulk is None)
        if n:
            self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        if self._bulk is not None:
            self._bulk.append((codes, new_ids))
            return new_ids
        self._append(codes, new_ids)
        if self._size - self._n_main > max(1024, self._n_main // 8):
            self._consolidate()
        return new_ids

    def _check_new_ids(self, new_ids: np.ndarray, buffered: bool = True) -> None:
        clash = np.zeros(new_ids.size, dtype=bool)
        if self._sorted_ids.size:
            at = np.minimum(np.searchsorted(self._sorted_ids, new_ids), self._sorted_ids.size - 1)
            clash = (self._sorted_ids[at] == new_ids) & self._alive_buf[self._sorted_rows[at]]
        if buffered and self._buffer_rows:
            clash |= np.array([i in self._buffer_rows for i in new_ids.tolist()], dtype=bool)
        if clash.any():
            raise ValueError(
                f"id {int(new_ids[clash][0])} is already in the index; remove() it first"
            )

    def _append(self, codes: np.ndarray, new_ids: np.ndarray) -> None:
        n, size = codes.shape[0], self._size
        if size + n > self._ids_buf.size:  # grow geometrically: O(1) amortised per row
            cap = max(size + n, 2 * self._ids_buf.size, 1024)
            self._codes_buf = np.concatenate(
                [self._codes, np.zeros((cap - size, self._words), dtype=_U64)]
            )
            self._ids_buf = np.concatenate([self._ids, np.zeros(cap - size, dtype=np.int64)])
            self._alive_buf = np.concatenate([self._alive, np.zeros(cap - size, dtype=bool)])
        self._codes_buf[size : size + n] = codes
        self._ids_buf[size : size + n] = new_ids
        self._alive_buf[size : size + n] = True
        self._buffer_rows.update(zip(new_ids.tolist(), range(size, size + n), strict=True))
        self._size += n
        self._live += n

    def remove(self, item_id: int) -> None:
        """Remove the hash stored under ``item_id``.

        Raises:
            KeyError: No hash is stored under that id.

        Note:
            ``O(log N)``; removed rows leave the tables at the next rebuild, which happens
            once a quarter of the rows are removed ones.
        """
        row = self._row_of(int(item_id))
        if row is None:
            raise KeyError(item_id)
        self._alive_buf[row] = False
        self._buffer_rows.pop(int(item_id), None)
        self._live -= 1
        if self._size > 1024 and self._live < 0.75 * self._size:
            self._consolidate()

    @contextmanager
    def bulk(self) -> Iterator[HammingIndex]:
        """Queue :meth:`add` calls and build the tables once, at exit.

        Hashes added inside the block become visible when it ends; if the block raises
        (or two queued hashes share an id), none of them is added.

        Examples:
            >>> index = HammingIndex(64, max_distance=4)
            >>> with index.bulk():
            ...     for chunk in ([1, 2, 3], [4, 5]):
            ...         _ = index.add(chunk)
            >>> len(index)
            5
        """
        if self._bulk is not None:
            raise RuntimeError("bulk() sessions cannot be nested")
        self._bulk, next_id = [], self._next_id
        try:
            yield self
            queued = self._bulk
            if queued:
                ids = np.concatenate([i for _, i in queued])
                if np.unique(ids).size != ids.size:
                    raise ValueError("ids repeated inside one bulk() session; nothing was added")
                self._check_new_ids(ids)
        except BaseException:
            self._next_id = next_id
            raise
        finally:
            self._bulk = None
        if not queued:
            return
        self._append(np.concatenate([c for c, _ in queued]), ids)
        self._consolidate()
        if self.max_distance is not None and self._n_main:
            self._tables_for(
                _plan_query(self._n_main, self.nbits, self.max_distance, self._idx_bits())
            )

    def _consolidate(self) -> None:
        """Drop removed rows and move the buffer into the main part; tables rebuild lazily."""
        if not self._alive.all():
            keep = np.flatnonzero(self._alive)
            self._size = keep.size
            self._codes_buf = self._codes_buf[keep]
            self._ids_buf = self._ids_buf[keep]
            self._alive_buf = np.ones(keep.size, dtype=bool)
        self._n_main = self._size
        self._sorted_rows = np.argsort(self._ids, kind="stable")
        self._sorted_ids = self._ids[self._sorted_rows]
        self._buffer_rows = {}
        self._tables = {}

    def _to_codes(self, hashes: object) -> np.ndarray:
        words, nbits = self._words, self.nbits
        if isinstance(hashes, np.ndarray) and hashes.dtype != object:
            arr = hashes.reshape(-1, 1) if hashes.ndim == 1 and words == 1 else hashes
            if arr.ndim != 2 or arr.shape[1] != words:
                raise ValueError(
                    f"hashes must be ints or an (n, {words}) uint64 array from pack_hashes();"
                    f" got shape {arr.shape}"
                )
            arr = _as_code_array(arr)
            top = nbits - 64 * (words - 1)  # bits used in word 0
            if arr.size and top < 64 and int(arr[:, 0].max()) >> top:
                raise ValueError(f"a hash does not fit in nbits={nbits} bits")
            return arr
        if isinstance(hashes, int | np.integer):
            hashes = [hashes]
        return pack_hashes(hashes, nbits)  # type: ignore[arg-type]

    # -- queries

    def _idx_bits(self) -> int:
        return max(1, (max(self._n_main, 1) - 1).bit_length())

    def _tables_for(self, plan: _QueryPlan) -> list[np.ndarray]:
        key = (plan.chunks, self._idx_bits())
        tables = self._tables.get(key)
        if tables is None:
            idx_bits = self._idx_bits()
            main = self._codes[: self._n_main]
            cols = [np.ascontiguousarray(main[:, w]) for w in range(self._words)]
            rows = np.arange(self._n_main, dtype=_U64)
            tables = []
            for start, bits, _ in plan.chunks:
                packed = _shuffle(cols, self.nbits, ((start, bits),))[0]
                packed <<= _U64(idx_bits)
                packed |= rows
                packed.sort()
                tables.append(packed)
            self._tables[key] = tables
        return tables

    def query(self, h: object, max_distance: int | None = None) -> list[tuple[int, int]]:
        """Stored hashes within ``max_distance`` of ``h``.

        Args:
            h: One hash: an int below ``2**nbits`` or a packed ``(W,)`` uint64 row.
            max_distance: Radius in bits; defaults to the constructor's ``max_distance``.

        Returns:
            ``[(id, distance), ...]`` sorted by distance, then id. Exact.

        Raises:
            ConfigError: No radius given here or in the constructor (a ``ValueError``).

        Note:
            Cost: ``sum_j V(bits_j, r_j)`` binary searches (every key within ``r_j`` of the
            query's chunk keys: ~700 for 64-bit hashes, radius 8 and 1M hashes) plus the
            candidates found. The first query at a new radius builds that radius's tables
            (``O(N log N)``). For many hashes use :meth:`query_many`.
        """
        if isinstance(h, np.ndarray) and h.dtype != object:
            codes: object = h.reshape(1, -1)
        else:
            codes = [h]
        _, ids, dist = self.query_many(codes, max_distance)
        return list(zip(ids.tolist(), dist.tolist(), strict=True))

    def query_many(
        self, hashes: object, max_distance: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised :meth:`query` for many hashes at once.

        Args:
            hashes: As for :meth:`add`.
            max_distance: Radius in bits; defaults to the constructor's ``max_distance``.

        Returns:
            ``(query, id, distance)`` int64 arrays, ``query`` indexing ``hashes``; sorted by
            query, distance, id.
        """
        if max_distance is None:
            if self.max_distance is None:
                raise ConfigError(
                    "pass max_distance=... to query(), or set it once with"
                    " HammingIndex(nbits, max_distance=...)"
                )
            max_distance = self.max_distance
        t = _check_distance(max_distance)
        q = self._to_codes(hashes)
        out_q: list[np.ndarray] = []
        out_r: list[np.ndarray] = []
        out_d: list[np.ndarray] = []
        if self._n_main and q.shape[0]:
            self._query_main(q, t, out_q, out_r, out_d)
        buffered = np.arange(self._n_main, self._size)
        buffered = buffered[self._alive[buffered]]
        if buffered.size and q.shape[0]:
            _brute_query(q, self._codes[buffered], buffered, t, out_q, out_r, out_d)
        qi, rows, d = _cat3(out_q, out_r, out_d)
        ids = self._ids[rows]
        order = np.lexsort((ids, d, qi))
        return qi[order], ids[order], d[order]

    def _query_main(self, q: np.ndarray, t: int, out_q: list, out_r: list, out_d: list) -> None:
        n, words = self._n_main, self._words
        codes = self._codes[:n]
        plan = _plan_query(n, self.nbits, t, self._idx_bits())
        if not plan.chunks:  # brute force is cheaper (a small index or a huge radius)
            rows = np.flatnonzero(self._alive[:n])
            _brute_query(q, codes[rows], rows, t, out_q, out_r, out_d)
            return
        tables = self._tables_for(plan)
        idx_bits = self._idx_bits()
        idx_mask = _U64((1 << idx_bits) - 1)
        qcols = [np.ascontiguousarray(q[:, w]) for w in range(words)]
        chunk_masks = [
            _mask_pieces(start, bits, self.nbits, words) for start, bits, _ in plan.chunks
        ]
        for jj, ((start, bits, radius), table) in enumerate(zip(plan.chunks, tables, strict=True)):
            masks = _neighbour_masks(bits, radius)
            qkeys = _shuffle(qcols, self.nbits, ((start, bits),))[0]
            step = max(1, (1 << 20) // masks.size)
            for lo in range(0, q.shape[0], step):
                probes = (qkeys[lo : lo + step, None] ^ masks[None, :]).ravel() << _U64(idx_bits)
                first = np.searchsorted(table, probes, side="left")
                count = np.searchsorted(table, probes | idx_mask, side="right") - first
                hit = np.flatnonzero(count)
                for pi, pos in _expand(hit, first[hit], count[hit]):
                    qi = pi // masks.size + lo
                    rows = (table[pos] & idx_mask).astype(np.intp)
                    x = codes[rows] ^ q[qi]
                    d = np.bitwise_count(x).sum(axis=1, dtype=np.int64)
                    ok = (d <= t) & self._alive[rows]
                    # a match is reported by the first chunk it is within the radius of
                    for prev in range(jj):
                        within = np.bitwise_count(_masked(x, chunk_masks[prev])).sum(axis=1)
                        ok &= within > plan.chunks[prev][2]
                    out_q.append(qi[ok])
                    out_r.append(rows[ok])
                    out_d.append(d[ok])

    def pairs(
        self, max_distance: int, *, workers: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All pairs of stored hashes within ``max_distance``, by id.

        Returns:
            ``(id_a, id_b, distance)`` int64 arrays with ``id_a < id_b``, sorted by
            ``(id_a, id_b)``.

        Note:
            Runs :func:`find_pairs` over the stored hashes (same cost; the tables of this
            index are not used). The output is quadratic in the number of identical
            hashes; for grouping, prefer :func:`find_pairs_collapsed`.
        """
        t = _check_distance(max_distance)
        rows = np.flatnonzero(self._alive)
        a, b, d = find_pairs(self._codes[rows], t, workers=workers)
        ia, ib = self._ids[rows[a]], self._ids[rows[b]]
        lo, hi = np.minimum(ia, ib), np.maximum(ia, ib)
        order = np.lexsort((hi, lo))
        return lo[order], hi[order], d[order]


def _brute_query(
    q: np.ndarray, codes: np.ndarray, rows: np.ndarray, t: int, out_q: list, out_r: list,
    out_d: list,
) -> None:
    """Every query against every given row, in blocks of about a million comparisons."""
    step = max(1, (1 << 20) // max(rows.size, 1))
    for lo in range(0, q.shape[0], step):
        d = np.bitwise_count(q[lo : lo + step, None, :] ^ codes[None]).sum(2, dtype=np.int64)
        qi, ci = np.nonzero(d <= t)
        out_q.append(qi + lo)
        out_r.append(rows[ci])
        out_d.append(d[qi, ci])


def _masked(x: np.ndarray, pieces: tuple[tuple[int, np.uint64], ...]) -> np.ndarray:
    """``x`` with only the bits inside the mask pieces kept."""
    out = np.zeros_like(x)
    for w, m in pieces:
        out[:, w] |= x[:, w] & m
    return out
