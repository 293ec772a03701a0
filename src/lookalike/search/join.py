"""Exact Hamming self-join: every pair of packed codes within ``T`` bits of each other.

The scheme is the generalised pigeonhole filter of Hamming search, as in multi-index hashing
(Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", CVPR
2012) and its generalisation with per-part thresholds (Qin et al., "GPH: Similarity Search in
Hamming Space", ICDE 2018), with the block tables of Manku, Jain & Das Sarma ("Detecting
Near-Duplicates for Web Crawling", WWW 2007) inside each part:

1. The bits are cut into ``c`` chunks with radii ``r_j``, ``sum(r_j + 1) > T``. If two codes
   differed in more than ``r_j`` bits of every chunk, they would differ in more than ``T``
   bits: a pair within ``T`` is within ``r_j`` on some chunk ``j``.
2. Chunk ``j`` is cut into ``r_j + k_j`` blocks. At most ``r_j`` of them hold a differing
   bit, so such a pair agrees exactly on at least ``k_j`` blocks. Each ``k_j``-subset of the
   blocks is one *table* keyed on those blocks' bits: sorting the codes by key puts the pair
   in one run of equal keys, and every pair in every run is checked by popcount. Hence no
   pair is missed (the tests check this against brute force).
3. A pair is reported by one table only, its *owner*: the first chunk with ``k_j`` agreeing
   blocks and there its first ``k_j`` agreeing blocks (a function of the pair's XOR). The
   pair agrees on that table's key, so the owner does find it.
4. A run longer than ``giant_run`` (thousands of near-blank images share a key) is not
   enumerated quadratically: its codes agree on the key, so the same join runs on the other
   bits of that run alone (same argument, fewer bits).

Identical codes are collapsed first and constant bits dropped; neither changes a distance. A
cost model (:func:`_plan_join`) picks ``c``, ``r_j`` and ``k_j`` (about 100-600 tables of
18-23-bit keys for 64-bit codes and T=8 to 10 at 1M codes) or all-pairs brute force. Time is
about ``tables * N * 25-45 ns`` plus ~20 ns per candidate pair; memory a few arrays of ``N``
words per worker plus the output. 1M 64-bit codes at T=8: ~5 CPU seconds
(``benchmarks/bench_search.py``). Knobs: :class:`~lookalike.search.codes.SearchTuning`.

This module is over 600 lines because it is one algorithm: the plan, the ownership rule and
the tables together carry the exactness argument above, and share private types.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import NamedTuple, Protocol

import numpy as np

from lookalike.search.codes import (
    DEFAULT_TUNING,
    EMPTY_I64,
    U64,
    Pairs,
    Pieces,
    SearchTuning,
    as_code_array,
    cat_int64,
    check_distance,
    check_workers,
    complement,
    differs,
    expand_ranges,
    mask_pieces,
    merge_ranges,
    shuffle,
    sort_pairs,
    split_even,
    varying_bits,
)

__all__ = ["CollapsedPairs", "find_pairs", "find_pairs_collapsed"]

Index = slice | np.ndarray  # positions in a table

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


def _brute_cost(n: int, words: int, tuning: SearchTuning) -> float:
    return (tuning.ns_brute + tuning.ns_brute_word * words) * n * (n - 1) / 2


@lru_cache(maxsize=1024)
def _binom_cdf(bits: int, t: int) -> float:
    """Probability that two random ``bits``-bit strings are within ``t`` of each other."""
    return sum(math.comb(bits, i) for i in range(min(t, bits) + 1)) / 2.0**bits


def _probe_words(t: int, words: int, tuning: SearchTuning) -> int:
    """Words a wide table compares while scanning: enough that random pairs rarely pass."""
    probes = 1
    while probes < words and _binom_cdf(64 * probes, t) > tuning.wide_pass:
        probes += 1
    return probes


def _unit_costs(t: int, words: int, tuning: SearchTuning, passing: float | None = None
                ) -> tuple[float, float]:
    """Nanoseconds per code per table, and per candidate pair, of a table at radius ``t``.
    A candidate of a wide table that passes the words compared while scanning is gathered
    whole: ``passing`` is that share (default: random pairs', which rarely pass)."""
    if words == 1:
        return tuning.ns_row_narrow, tuning.ns_pair_narrow
    probes = _probe_words(t, words, tuning)
    share = _binom_cdf(64 * probes, t) if passing is None else passing
    return (tuning.ns_row_wide + tuning.ns_row_probe * probes,
            tuning.ns_pair_probe * probes + tuning.ns_pair_wide * share)


def _plan_join(
    n: int, nbits: int, t: int, words: int, tuning: SearchTuning, brute: bool = True
) -> _Plan:
    """Choose chunks, radii and blocks for a self-join of ``n`` unique codes (0 < t < nbits).

    With ``c`` chunks and ``t = c*r + a``, the first ``a + 1`` chunks get radius ``r`` and
    the others ``r - 1``. Per chunk, ``k`` trades the number of tables (a sort of ``n``
    codes each) against the expected random candidates per table, ``n^2 / 2^(key bits + 1)``.
    """
    pairs = n * (n - 1) / 2
    best = _Plan((), _brute_cost(n, words, tuning) if brute else math.inf)
    # A wide table's key shares a word with the row index.
    keycap = 64 if words == 1 else 64 - max(1, (n - 1).bit_length())
    row_ns, pair_ns = _unit_costs(t, words, tuning)
    for c in range(1, min(t + 1, nbits) + 1):
        r, a = divmod(t, c)
        chunks: list[_Chunk] = []
        total = 0.0
        for j, (start, size) in enumerate(split_even(0, nbits, c)):
            rj = r if j <= a else r - 1  # >= 0, as c <= t + 1
            choice: tuple[float, int, int] | None = None
            for k in range(1, size - rj + 1):
                m = rj + k
                tables = math.comb(m, k)
                if tables > tuning.max_tables:
                    break
                key_bits = min(size * k / m, keycap)
                cost = tables * (tuning.ns_table + n * row_ns + pair_ns * pairs * 2.0**-key_bits)
                if choice is None or cost < choice[0]:
                    choice = (cost, k, m)
                if rj == 0:
                    break  # a single table keyed on the whole chunk
            if choice is None:
                total = math.inf
                break
            cost, k, m = choice
            chunks.append(_Chunk(tuple(split_even(start, size, m)), k))
            total += cost
        if total < best.cost_ns:
            best = _Plan(tuple(chunks), total)
    return best


# ----------------------------------------------------------------------------- ownership

@dataclass(frozen=True, slots=True)
class _Owner:
    """Which pairs one table reports, as masks in the layout its XORs are taken in."""

    must_differ: tuple[Pieces, ...]  # blocks before the subset's last block, outside it
    must_agree: tuple[Pieces, ...]  # key blocks a truncated key did not fully cover
    earlier: tuple[tuple[tuple[Pieces, ...], int], ...]  # (blocks, k) of earlier chunks


def _owner_rule(
    plan: _Plan, j: int, subset: tuple[int, ...], mask_of: dict[tuple[int, int], Pieces],
    must_agree: tuple[Pieces, ...] = (),
) -> _Owner:
    inside = set(subset)
    differ = tuple(mask_of[(j, b)] for b in range(max(subset)) if b not in inside)
    earlier = tuple(
        (tuple(mask_of[(i, b)] for b in range(len(plan.chunks[i].blocks))), plan.chunks[i].k)
        for i in range(j)
    )
    return _Owner(differ, must_agree, earlier)


def _owned(x: np.ndarray, rule: _Owner) -> np.ndarray:
    """Indices of XOR rows ``x`` (h, W) whose owner is ``rule``'s table."""
    idx = np.arange(x.shape[0])
    for pieces in rule.must_differ:
        idx = idx[differs(x[idx], pieces)]
    for pieces in rule.must_agree:
        idx = idx[~differs(x[idx], pieces)]
    for masks, k in rule.earlier:
        if not idx.size:
            break
        sub = x[idx]
        agree = np.zeros(idx.size, dtype=np.int32)
        for pieces in masks:
            agree += ~differs(sub, pieces)
        idx = idx[agree < k]
    return idx


def _block_masks(plan: _Plan, nbits: int, words: int, where: Callable[[int], int]) -> dict:
    """Mask pieces of every block, ``where(first bit)`` giving its position in the layout."""
    return {
        (j, b): mask_pieces(where(s), length, nbits, words)
        for j, ch in enumerate(plan.chunks)
        for b, (s, length) in enumerate(ch.blocks)
    }


# ----------------------------------------------------------------------------- tables


class _Table(Protocol):
    """One table, sorted by key, as :func:`_scan` sees it."""

    size: int  # positions
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # owned pairs, as input rows

    def compare(self, a: Index, b: Index) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``a`` against ``b``: whether their keys are equal, and whether they are
        also within ``t`` on the bits the scan compares (all, or a lower bound)."""

    def emit(self, p: np.ndarray, q: np.ndarray) -> None:
        """Verify candidate positions ``p < q``; keep the owned pairs within ``t``."""

    def run_codes(self, s: int, e: int) -> tuple[np.ndarray, int]:
        """The codes of positions ``[s, e)`` (one run) on their non-key bits, and the bits."""


class _NarrowTable:
    """A table of unique one-word codes: the codes themselves, bit-permuted so that the key
    is on top, and sorted. A value sort of 1M codes takes 4 ms, an argsort and gather 40 ms
    (a table's whole budget is ~25 ms), and the scan compares whole codes without gathers;
    hits are mapped back by undoing the permutation and finding the code in the input."""

    def __init__(self, vals: np.ndarray, nbits: int, t: int, plan: _Plan, j: int,
                 subset: tuple[int, ...], tuning: SearchTuning) -> None:
        blocks = plan.chunks[j].blocks
        key = tuple(blocks[b] for b in subset)
        keyset = set(key)
        perm = key + merge_ranges(b for ch in plan.chunks for b in ch.blocks if b not in keyset)
        new_start, pos = {}, 0
        for s, length in perm:
            new_start[s] = pos
            pos += length

        def moved(bit: int) -> int:  # where original bit ``bit`` lands in the permuted code
            s = max(s for s, _ in perm if s <= bit)
            return new_start[s] + bit - s

        self.rule = _owner_rule(plan, j, subset, _block_masks(plan, nbits, 1, moved))
        self.inverse = tuple((new_start[s], length) for s, length in sorted(perm))
        self.low = nbits - sum(length for _, length in key)  # bits below the key
        self.vals, self.nbits, self.t, self.tuning = vals, nbits, t, tuning
        self.y = shuffle([vals], nbits, perm, tuning)[0]
        self.y.sort()
        self.size = self.y.size
        self.limit = U64(1) << U64(self.low)  # same key <=> XOR below the key bits
        self.found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def compare(self, a: Index, b: Index) -> tuple[np.ndarray, np.ndarray]:
        x = self.y[a] ^ self.y[b]
        same = x < self.limit
        return same, same & (np.bitwise_count(x) <= self.t)

    def emit(self, p: np.ndarray, q: np.ndarray) -> None:
        x = self.y[p] ^ self.y[q]
        d = np.bitwise_count(x)
        hit = np.flatnonzero(d <= self.t)
        hit = hit[_owned(x[hit, None], self.rule)]
        if hit.size:
            both = np.concatenate([self.y[p[hit]], self.y[q[hit]]])
            rows = np.searchsorted(self.vals, shuffle([both], self.nbits, self.inverse)[0])
            self.found.append((rows[: hit.size], rows[hit.size :], d[hit]))

    def run_codes(self, s: int, e: int) -> tuple[np.ndarray, int]:
        return (self.y[s:e] & (self.limit - U64(1))).reshape(-1, 1), self.low


class _WideTable:
    """A table of unique multi-word codes: sorted ``key << idx_bits | row`` values.

    The key shares its word with the row index, so a longer key is cut (pairs are then
    checked on the cut blocks). The scan compares a word or two per pair, taken in table
    order; ``emit`` gathers whole rows only for pairs that pass them.
    """

    def __init__(self, codes: np.ndarray, cols: list[np.ndarray], nbits: int, t: int,
                 plan: _Plan, j: int, subset: tuple[int, ...], tuning: SearchTuning) -> None:
        n, words = codes.shape
        idx_bits = max(1, (n - 1).bit_length())
        mask_of = _block_masks(plan, nbits, words, lambda bit: bit)
        used, cut, room = [], [], 64 - idx_bits
        for b in subset:
            s, length = plan.chunks[j].blocks[b]
            take = min(length, room)
            if take:
                used.append((s, take))
            if take < length:
                cut.append(mask_of[(j, b)])
            room -= take
        self.rule = _owner_rule(plan, j, subset, mask_of, tuple(cut))
        keys = shuffle(cols, nbits, tuple(used), tuning)[0]
        keys <<= U64(idx_bits)
        keys |= np.arange(n, dtype=U64)
        keys.sort()
        self.order = (keys & U64((1 << idx_bits) - 1)).astype(np.intp)
        keys >>= U64(idx_bits)
        self.keys, self.size = keys, n
        # Compare 1-2 words while scanning, those with the fewest key bits (equal in a run):
        # 200k 256-bit codes with dense clusters, T=16: 8.7-10.4 CPU s, 12.9-13.8 with all 4.
        in_key = [0] * words
        for s, length in used:
            for w, m in mask_pieces(s, length, nbits, words):
                in_key[w] += int(m).bit_count()
        ranked = sorted(range(words), key=in_key.__getitem__)
        self.probes = [cols[w][self.order] for w in ranked[: _probe_words(t, words, tuning)]]
        self.rest = complement(used, nbits)
        self.cols, self.nbits, self.t, self.tuning = cols, nbits, t, tuning
        self.found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def compare(self, a: Index, b: Index) -> tuple[np.ndarray, np.ndarray]:
        same = self.keys[a] == self.keys[b]
        d = np.bitwise_count(self.probes[0][a] ^ self.probes[0][b])
        if len(self.probes) > 1:
            d = d.astype(np.uint16)  # four words can differ in 256 bits
            for w in self.probes[1:]:
                d += np.bitwise_count(w[a] ^ w[b])
        return same, same & (d <= self.t)

    def emit(self, p: np.ndarray, q: np.ndarray) -> None:
        ra, rb = self.order[p], self.order[q]
        x = np.stack([col[ra] ^ col[rb] for col in self.cols], axis=1)
        d = np.bitwise_count(x).sum(axis=1, dtype=np.int64)
        hit = np.flatnonzero(d <= self.t)
        hit = hit[_owned(x[hit], self.rule)]
        if hit.size:
            self.found.append((ra[hit], rb[hit], d[hit]))

    def run_codes(self, s: int, e: int) -> tuple[np.ndarray, int]:
        members = self.order[s:e]
        sub = shuffle([col[members] for col in self.cols], self.nbits, self.rest, self.tuning)
        return np.stack(sub, axis=1), sum(length for _, length in self.rest)


# ----------------------------------------------------------------------------- scanning


class _Hits:
    """Candidate pairs on their way to ``table.emit``, in batches that bound memory."""

    def __init__(self, table: _Table, limit: int) -> None:
        self.table, self.limit, self.held = table, limit, 0
        self.p: list[np.ndarray] = []
        self.q: list[np.ndarray] = []

    def add(self, p: np.ndarray, q: np.ndarray) -> None:
        if p.size:
            self.p.append(p)
            self.q.append(q)
            self.held += p.size
            if self.held >= self.limit:
                self.flush()

    def flush(self) -> None:
        if self.p:
            self.table.emit(np.concatenate(self.p), np.concatenate(self.q))
        self.p, self.q, self.held = [], [], 0


def _dense_offsets(length: np.ndarray, n: int, tuning: SearchTuning) -> int:
    """How many offsets ``d = q - p`` to compare over the whole table at once.

    Offset ``d`` costs a pass over all ``n`` positions (~1 ns each, contiguous, no gathers);
    a pair left to the tails costs ~20 ns. So whole-table passes go on while at least
    ``dense_min`` of the positions still has a partner that far: ``sum(L - d)`` over the
    runs of ``L > d`` positions. (Listing every pair instead: 50 ms a table, not 21, at 1M
    codes and T=10.)
    """
    runs = np.bincount(length)  # runs[L]: how many runs of L positions
    sizes = np.arange(runs.size)
    d = 0
    while d < min(tuning.max_dense, runs.size - 2):
        if (runs[d + 2 :] * (sizes[d + 2 :] - d - 1)).sum() < tuning.dense_min * n:
            break
        d += 1
    return d


def _scan(table: _Table, t: int, tuning: SearchTuning) -> None:
    """Emit every pair of positions ``p < q`` that ``table.compare`` finds equal and near.

    Runs of equal keys come out of the comparison at offset 1. Runs longer than
    ``giant_run`` are joined on their other bits (:func:`_self_join`). In the others,
    offsets ``1..D`` are compared over the whole table (see :func:`_dense_offsets`), and
    the pairs further apart (the "tails") are listed and compared explicitly.
    """
    n = table.size
    same, near = table.compare(slice(0, n - 1), slice(1, n))
    # runs of two or more positions: `same` switches on at a run's start and off at its end
    edges = np.flatnonzero(np.diff(same, prepend=False, append=False))
    starts, stops = edges[0::2], edges[1::2] + 1
    giant = stops - starts > tuning.giant_run
    skip = None
    if giant.any():
        skip = np.zeros(n, dtype=bool)  # positions inside giant runs
        for s, e in zip(starts[giant].tolist(), stops[giant].tolist(), strict=True):
            sub, bits = table.run_codes(s, e)
            a, b, _ = _self_join(sub, bits, t, tuning)
            table.emit(a + s, b + s)
            skip[s:e] = True
        starts, stops = starts[~giant], stops[~giant]
        near &= ~skip[:-1]
    length = stops - starts
    hits = _Hits(table, tuning.pair_batch // 4)
    p = np.flatnonzero(near)
    hits.add(p, p + 1)
    dense = max(1, _dense_offsets(length, n, tuning))  # offset 1 is done
    for d in range(2, dense + 1):
        _, near = table.compare(slice(0, n - d), slice(d, n))
        if skip is not None:
            near &= ~skip[: n - d]
        p = np.flatnonzero(near)
        hits.add(p, p + d)
    # the tails: p in [s, e - dense - 1) of each run [s, e), against q in [p + dense + 1, e)
    s, e = starts[length > dense + 1], stops[length > dense + 1]
    for run, p in expand_ranges(np.arange(s.size), s, e - s - dense - 1, tuning.pair_batch):
        first = p + dense + 1
        for pp, qq in expand_ranges(p, first, e[run] - first, tuning.pair_batch):
            keep = np.flatnonzero(table.compare(pp, qq)[1])
            hits.add(pp[keep], qq[keep])
    hits.flush()


def _run_tables(
    plan: _Plan, make: Callable[[int, tuple[int, ...]], _Table], t: int,
    tuning: SearchTuning, workers: int,
) -> Pairs:
    """Build and scan every table, on ``workers`` threads, and concatenate what they own.

    Tables are independent and NumPy releases the GIL in sorts and large element-wise
    loops, so two threads give most of a second core. Memory grows by one table per worker.
    """

    def run(js: tuple[int, tuple[int, ...]]) -> list:
        table = make(*js)
        _scan(table, t, tuning)
        return table.found

    tables = list(plan.tables())
    if workers > 1 and len(tables) > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(run, tables))
    else:
        results = [run(js) for js in tables]
    found = [hit for res in results for hit in res]
    a, b, d = cat_int64([[h[0] for h in found], [h[1] for h in found], [h[2] for h in found]])
    return a, b, d


def _brute_join(codes: np.ndarray, t: int, tuning: SearchTuning) -> Pairs:
    """All pairs a < b within ``t``, by blocked all-against-all popcounts (O(n^2) time)."""
    n, words = codes.shape
    cols = [np.ascontiguousarray(codes[:, w]) for w in range(words)]
    out_a, out_b, out_d = [], [], []
    step = max(1, min(n, tuning.brute_cells // max(1, n)))
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
    a, b, d = cat_int64([out_a, out_b, out_d])
    return a, b, d


def _observed_cost(codes: np.ndarray, plan: _Plan, nbits: int, t: int,
                   tuning: SearchTuning) -> float:
    """``plan``'s cost with the candidates these codes make, not random codes': the runs
    of equal keys each table would have, scaled up from the keys of 2,000 sampled codes
    (runs longer than ``giant_run`` are left out: they are joined on their other bits).
    Hash values of real pictures cluster: 20k codes of near-identical gradients shared
    keys with thousands of others, and a plan predicted at 0.01 s took 6.7 s where brute
    force takes 0.7 s. Measured once per search (for every giant run again, it made the
    search of 20k small images 1.8x slower)."""
    n, words = codes.shape
    size = min(n, 2000)
    sample = codes[np.random.default_rng(0).choice(n, size, replace=False)]
    scale = n / size
    mask_of = _block_masks(plan, nbits, words, lambda bit: bit)
    pairs = n * (n - 1) / 2
    # Candidates of clustered codes are near each other: nearly all pass the scan's words.
    row_ns, pair_ns = _unit_costs(t, words, tuning, passing=1.0)
    tables = list(plan.tables())
    # Up to 16 tables, spread over the plan, tell the rest (64-bit plans have hundreds).
    chosen = [tables[k] for k in np.linspace(0, len(tables) - 1, min(16, len(tables)),
                                             dtype=int)]
    total = 0.0
    for j, subset in chosen:
        key = np.zeros_like(sample)
        for b in subset:
            for w, m in mask_of[(j, b)]:
                key[:, w] |= sample[:, w] & m
        counts = np.unique(key, axis=0, return_counts=True)[1]
        # A giant run is joined again on its other bits: at most as dear as comparing its
        # codes all against all, which is what it is counted at (left out, 21k 128-bit
        # codes with half their bits nearly constant looked 0.1 s in tables and took 53 s,
        # runs of 18k codes joined again per table; brute force takes 0.5 s).
        run = counts * scale
        giant = run > tuning.giant_run
        total += (tuning.ns_brute + tuning.ns_brute_word * words) * float(
            (run[giant] ** 2).sum()) / 2
        counts = counts[~giant]
        # Pairs of equal keys among the sample, scaled by the share of all pairs sampled:
        # (a key seen once stands for no pair; scaling it to a run of n / 2,000 codes made
        # 200k random codes look clustered: brute force, 36 s instead of 0.9 s).
        same = float((counts * (counts - 1)).sum()) / 2 * pairs / max(1, size * (size - 1) / 2)
        total += pair_ns * same
    return len(tables) * (tuning.ns_table + n * row_ns + total / len(chosen))


def _self_join(
    codes: np.ndarray, nbits: int, t: int, tuning: SearchTuning, brute: bool = True,
    workers: int = 1, measure: bool = False,
) -> Pairs:
    """All pairs ``a < b`` of rows within ``t``.

    The rows must be unique and sorted (narrow tables find a hit's row by its value), with
    the bits above ``nbits`` zero. Distinct codes come sorted from
    :func:`find_pairs_collapsed`, and the codes of a giant run, on their non-key bits, are
    sorted too: in a run the key bits are equal, and runs keep the codes' order.

    ``brute=False`` forbids the all-pairs plan here (``SearchTuning.brute_force``); giant
    runs always may use it. ``measure``: weigh the plan by the candidates these codes make
    (:func:`_observed_cost`; the whole search's codes, not each giant run's).
    """
    n, words = codes.shape
    if n < 2 or t <= 0:  # unique codes: none at distance 0
        return EMPTY_I64, EMPTY_I64, EMPTY_I64
    plan = _plan_join(n, nbits, t, words, tuning, brute) if t < nbits else _Plan((), 0.0)
    if measure and plan.chunks and brute and _observed_cost(
            codes, plan, nbits, t, tuning) > _brute_cost(n, words, tuning):
        plan = _Plan((), _brute_cost(n, words, tuning))
    if not plan.chunks:
        return _brute_join(codes, t, tuning)
    make: Callable[[int, tuple[int, ...]], _Table]
    if words == 1:

        def make(j: int, subset: tuple[int, ...]) -> _Table:
            return _NarrowTable(codes[:, 0], nbits, t, plan, j, subset, tuning)

    else:
        cols = [np.ascontiguousarray(codes[:, w]) for w in range(words)]

        def make(j: int, subset: tuple[int, ...]) -> _Table:
            return _WideTable(codes, cols, nbits, t, plan, j, subset, tuning)

    a, b, d = _run_tables(plan, make, t, tuning, workers)
    return np.minimum(a, b), np.maximum(a, b), d


# ----------------------------------------------------------------------------- public API


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

    def expand(self) -> Pairs:
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
        batch = DEFAULT_TUNING.pair_batch
        # pairs inside a group: each member with the later members of its group
        pos = np.arange(n)
        run_stop = np.repeat(starts + counts, counts)
        for p, q in expand_ranges(pos, pos + 1, run_stop - pos - 1, batch):
            parts_a.append(order[p])
            parts_b.append(order[q])
            parts_d.append(np.zeros(p.size, dtype=np.int64))
        # pairs across groups: the product of the two member lists
        if self.i.size:
            ci, cj = counts[self.i], counts[self.j]
            idx = np.arange(self.i.size)
            for pi, flat in expand_ranges(idx, np.zeros_like(idx), ci * cj, batch):
                a = order[starts[self.i[pi]] + flat // cj[pi]]
                b = order[starts[self.j[pi]] + flat % cj[pi]]
                parts_a.append(np.minimum(a, b))
                parts_b.append(np.maximum(a, b))
                parts_d.append(self.distance[pi])
        a, b, d = cat_int64([parts_a, parts_b, parts_d])
        return sort_pairs(a, b, d, n)


def find_pairs_collapsed(
    codes: np.ndarray, max_distance: int, *, workers: int | None = None,
    tuning: SearchTuning = DEFAULT_TUNING,
) -> CollapsedPairs:
    """All pairs of distinct codes within ``max_distance``, identical codes collapsed.

    Use this from grouping code (union-find over ``groups`` and the pairs): if 100,000 images
    share one hash, the expanded output would be 5e9 pairs, while here it is one group.

    Args:
        codes: ``(N, W)`` uint64 array from :func:`pack_hashes` (1-D means ``W = 1``).
        max_distance: Largest Hamming distance reported, in bits (``>= 0``).
        workers: Threads for the tables (default: CPU count, at most 4).
        tuning: Knobs of the search; they change time and memory, never the result.

    Returns:
        A :class:`CollapsedPairs`; pairs are between group ids.

    Raises:
        ConfigError: ``max_distance`` or ``workers`` is invalid (a ``ValueError``).
        ValueError: ``codes`` is not a 2-D array of non-negative integers.

    Note:
        Exact: the same pairs a brute-force scan finds. Cost: see the module docstring.

    Examples:
        >>> from lookalike.search import pack_hashes
        >>> res = find_pairs_collapsed(pack_hashes([5, 5, 7, 1 << 40], 64), 1)
        >>> res.groups.tolist(), res.i.tolist(), res.j.tolist(), res.distance.tolist()
        ([0, 0, 1, 2], [0], [1], [1])
    """
    t = check_distance(max_distance)
    nworkers = check_workers(workers)
    arr = as_code_array(codes)
    n, words = arr.shape
    if n == 0:
        return CollapsedPairs(EMPTY_I64, EMPTY_I64, EMPTY_I64, EMPTY_I64, EMPTY_I64)
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
    free_ranges = varying_bits(uniq)
    nfree = sum(length for _, length in free_ranges)
    if nfree == 0:  # a single distinct code
        return CollapsedPairs(representatives, groups, EMPTY_I64, EMPTY_I64, EMPTY_I64)
    if nfree < nbits:
        cols = [np.ascontiguousarray(uniq[:, w]) for w in range(words)]
        uniq = np.stack(shuffle(cols, nbits, free_ranges, tuning), axis=1)
        nbits = nfree
    # 3. join the distinct codes
    a, b, d = _self_join(uniq, nbits, t, tuning, brute=tuning.brute_force, workers=nworkers,
                         measure=True)
    ga, gb = gid[a], gid[b]
    i, j, d = sort_pairs(np.minimum(ga, gb), np.maximum(ga, gb), d, gid.size)
    return CollapsedPairs(representatives, groups, i, j, d)


def find_pairs(
    codes: np.ndarray, max_distance: int, *, workers: int | None = None,
    tuning: SearchTuning = DEFAULT_TUNING,
) -> Pairs:
    """All row pairs ``(i, j)``, ``i < j``, whose codes are within ``max_distance`` bits.

    Arguments and errors as for :func:`find_pairs_collapsed`, whose ``expand()`` this is.

    Returns:
        ``(i, j, distance)`` int64 arrays, each pair once, sorted by ``(i, j)``; ``distance``
        is the popcount of the XOR over all words. ``k`` identical codes give ``k*(k-1)/2``
        pairs: with many repeated hashes call :func:`find_pairs_collapsed` instead.

    Examples:
        >>> from lookalike.search import pack_hashes
        >>> i, j, d = find_pairs(pack_hashes([0b1010, 0b1011, 0b0101], 4), 1)
        >>> i.tolist(), j.tolist(), d.tolist()
        ([0], [1], [1])
    """
    return find_pairs_collapsed(codes, max_distance, workers=workers, tuning=tuning).expand()
