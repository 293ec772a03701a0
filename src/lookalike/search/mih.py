"""Multi-index hashing: :class:`HammingIndex`, the exact query index behind ``lookalike query``.

Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012.
The codes are cut into ``m`` substrings. Two codes within ``T`` bits are, by the pigeonhole
principle, within ``r_j`` bits on some substring ``j`` whenever ``sum(r_j + 1) > T`` (with
``T = m*r + a``: radius ``r`` on the first ``a + 1`` substrings, ``r - 1`` on the others).
So each substring has one table, a query probes every key within ``r_j`` of its own
substring ``j``, and each candidate is verified with a popcount: the result is exact. A small
cost model picks ``m``; it lands near the paper's ``nbits / log2(N)``.

A table is one sorted array of ``key << idx_bits | row`` (8 bytes per code), searched with
two binary searches per probed key. Hashes added after the tables were built are compared
by brute force until they outgrow ``rebuild_share`` of the index; removed ones stay in the
tables, masked, until they are ``removed_share`` of the rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from itertools import combinations

import numpy as np

from lookalike.errors import ConfigError
from lookalike.search.codes import (
    DEFAULT_TUNING,
    EMPTY_I64,
    U64,
    SearchTuning,
    as_code_array,
    cat_int64,
    check_distance,
    distances,
    expand_ranges,
    pack_hashes,
    shuffle,
    split_even,
    words_for,
)
from lookalike.search.join import find_pairs

__all__ = ["HammingIndex"]

Chunk = tuple[int, int, int]  # (first bit, key bits, radius) of one substring


@lru_cache(maxsize=256)
def _neighbour_masks(bits: int, radius: int) -> np.ndarray:
    """All XOR masks of weight <= radius on ``bits`` bits."""
    out = [0]
    for r in range(1, radius + 1):
        out.extend(sum(1 << b for b in c) for c in combinations(range(bits), r))
    return np.array(out, dtype=U64)


def _ball(bits: int, radius: int) -> int:
    return sum(math.comb(bits, r) for r in range(min(bits, radius) + 1))


def _distinct(ids: np.ndarray) -> bool:
    # a sort, not np.unique: that took 1 s for 1M ids with NumPy 2.4 (its hash table)
    s = np.sort(ids)
    return not (s[1:] == s[:-1]).any()


class HammingIndex:
    """Exact Hamming-distance index over hashes of ``nbits`` bits, with ids.

    Add hashes (and ids), then ask which stored hashes lie within ``max_distance`` of new
    ones, without rescanning everything. Results are exact (verified with a popcount).

    Args:
        nbits: Bits per hash (e.g. 64 for an 8x8 dHash).
        max_distance: The radius you usually query with (optional). When set, it is the
            default for :meth:`query`, and :meth:`bulk` builds its tables on exit instead of
            on the first query.
        tuning: Knobs of the search; they change time and memory, never the result.

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

    def __init__(self, nbits: int, *, max_distance: int | None = None,
                 tuning: SearchTuning = DEFAULT_TUNING) -> None:
        self._words = words_for(nbits)
        self.nbits = int(nbits)
        if max_distance is not None and check_distance(max_distance) > self.nbits:
            raise ConfigError(f"max_distance={max_distance} exceeds nbits={self.nbits}, so every"
                              " hash would match; use a radius of at most nbits")
        self.max_distance = max_distance
        self._tuning = tuning
        self._codes = np.zeros((0, self._words), dtype=U64)  # rows [0, size) are used
        self._ids = EMPTY_I64
        self._alive = np.zeros(0, dtype=bool)
        self._size = 0
        self._row: dict[int, int] = {}  # id -> row, live hashes only
        self._indexed = 0  # rows [0, indexed) are in the tables
        self._tables: dict[int, list[np.ndarray]] = {}  # radius -> one sorted array per chunk
        self._next_id = 0
        self._bulk: list[tuple[np.ndarray, np.ndarray]] | None = None

    def __len__(self) -> int:
        """Number of stored hashes (removed ones excluded)."""
        return len(self._row)

    def __contains__(self, item_id: object) -> bool:
        is_int = isinstance(item_id, int | np.integer) and not isinstance(item_id, bool)
        return is_int and item_id in self._row

    def __repr__(self) -> str:
        return f"HammingIndex(nbits={self.nbits}, hashes={len(self)})"

    # -- adding and removing

    def add(self, hashes: object, ids: Iterable[int] | None = None) -> np.ndarray:
        """Store hashes under ids; returns the ids as an int64 array.

        Args:
            hashes: A sequence of ints below ``2**nbits``, a 1-D integer array (``nbits <=
                64``), or an ``(n, W)`` uint64 array from :func:`pack_hashes`.
            ids: Unique int ids, one per hash; default: consecutive ints after the largest
                id seen so far.

        Raises:
            ValueError: A hash does not fit in ``nbits`` bits, the shapes disagree, or an id
                is already stored (or repeated).

        Note:
            ``O(n)`` amortised; inside :meth:`bulk` the hashes are only queued.
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
            if not _distinct(new_ids):
                raise ValueError("ids must be unique within one add() call")
        self._check_new_ids(new_ids)
        if n:
            self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        if self._bulk is not None:
            self._bulk.append((codes, new_ids))
        else:
            self._append(codes, new_ids)
        return new_ids

    def _check_new_ids(self, new_ids: np.ndarray) -> None:
        for i in new_ids.tolist():
            if i in self._row:
                raise ValueError(f"id {i} is already in the index; remove() it first")

    def _append(self, codes: np.ndarray, new_ids: np.ndarray) -> None:
        size, n = self._size, codes.shape[0]
        if size + n > self._ids.size:  # grow geometrically: O(1) amortised per row
            cap = max(size + n, 2 * self._ids.size, 1024)
            self._codes = np.concatenate(
                [self._codes[:size], np.zeros((cap - size, self._words), dtype=U64)])
            self._ids = np.concatenate([self._ids[:size], np.zeros(cap - size, np.int64)])
            self._alive = np.concatenate([self._alive[:size], np.zeros(cap - size, bool)])
        self._codes[size : size + n] = codes
        self._ids[size : size + n] = new_ids
        self._alive[size : size + n] = True
        self._row.update(zip(new_ids.tolist(), range(size, size + n), strict=True))
        self._size += n

    def remove(self, item_id: int) -> None:
        """Remove the hash stored under ``item_id``; raises ``KeyError`` if there is none."""
        row = self._row.pop(item_id)
        self._alive[row] = False
        removed = self._size - len(self._row)
        if removed > max(self._tuning.index_min_rows, self._tuning.removed_share * self._size):
            keep = np.flatnonzero(self._alive[: self._size])
            self._codes, self._ids = self._codes[keep], self._ids[keep]
            self._alive = np.ones(keep.size, dtype=bool)
            self._size = keep.size
            self._row = dict(zip(self._ids.tolist(), range(keep.size), strict=True))
            self._indexed, self._tables = 0, {}

    @contextmanager
    def bulk(self) -> Iterator[HammingIndex]:
        """Queue :meth:`add` calls and add them at once when the block ends.

        If the block raises (or two queued hashes share an id), none of them is added.
        With ``max_distance`` set, the tables for it are built on exit.

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
            ids = np.concatenate([i for _, i in queued]) if queued else EMPTY_I64
            if not _distinct(ids):
                raise ValueError("ids repeated inside one bulk() session; nothing was added")
        except BaseException:
            self._next_id = next_id
            raise
        finally:
            self._bulk = None
        if queued:
            self._append(np.concatenate([c for c, _ in queued]), ids)
            if self.max_distance is not None:
                self._tables_for(self.max_distance)

    def _to_codes(self, hashes: object) -> np.ndarray:
        words, nbits = self._words, self.nbits
        if isinstance(hashes, np.ndarray) and hashes.dtype != object:
            arr = hashes.reshape(-1, 1) if hashes.ndim == 1 and words == 1 else hashes
            if arr.ndim != 2 or arr.shape[1] != words:
                raise ValueError(f"hashes must be ints or an (n, {words}) uint64 array from"
                                 f" pack_hashes(); got shape {arr.shape}")
            arr = as_code_array(arr)
            top = nbits - 64 * (words - 1)  # bits used in word 0
            if arr.size and top < 64 and int(arr[:, 0].max()) >> top:
                raise ValueError(f"a hash does not fit in nbits={nbits} bits")
            return arr
        if isinstance(hashes, int | np.integer):
            hashes = [hashes]
        return pack_hashes(hashes, nbits)  # type: ignore[arg-type]

    # -- queries

    def _plan(self, n: int, t: int) -> tuple[Chunk, ...] | None:
        """Substrings and radii for ``n`` indexed codes, or None when brute force is cheaper.

        Each ``m`` is costed as probes plus expected candidates, ``V(bits_j, r_j) * (1 +
        n / 2**bits_j)`` summed over the substrings, against ``n`` codes compared by brute
        force; the best ``m`` is near the paper's ``nbits / log2(n)``.
        """
        if n < 2:
            return None
        tuning, keycap = self._tuning, 64 - (n - 1).bit_length()  # the key shares a word
        best, best_cost = None, n * tuning.ns_candidate
        for m in range(1, min(t + 1, self.nbits) + 1):
            r, a = divmod(t, m)
            # a key cut shorter than its substring is still a filter (a less selective one)
            chunks = tuple((start, min(size, keycap), r if j <= a else r - 1)
                           for j, (start, size) in enumerate(split_even(0, self.nbits, m)))
            probes = [_ball(bits, radius) for _, bits, radius in chunks]
            if max(probes) > tuning.max_probes:
                continue
            cost = sum(v * (tuning.ns_probe + tuning.ns_candidate * n / 2.0**bits)
                       for v, (_, bits, _) in zip(probes, chunks, strict=True))
            if cost < best_cost:
                best, best_cost = chunks, cost
        return best

    def _tables_for(self, t: int) -> tuple[tuple[Chunk, ...] | None, list[np.ndarray]]:
        """The plan and tables for radius ``t``, (re)built over all rows when missing or
        when the rows added since the last build outgrow ``rebuild_share`` of the index."""
        tail = self._size - self._indexed
        if tail > max(self._tuning.index_min_rows, self._tuning.rebuild_share * self._indexed):
            self._indexed, self._tables = self._size, {}
        plan = self._plan(self._indexed, t)
        if plan is None:
            return None, []
        tables = self._tables.get(t)
        if tables is None:
            n = self._indexed
            cols = [np.ascontiguousarray(self._codes[:n, w]) for w in range(self._words)]
            idx_bits = U64((n - 1).bit_length())
            tables = []
            for start, bits, _ in plan:
                keys = shuffle(cols, self.nbits, ((start, bits),), self._tuning)[0]
                keys <<= idx_bits
                keys |= np.arange(n, dtype=U64)
                keys.sort()
                tables.append(keys)
            self._tables[t] = tables
        return plan, tables

    def query(self, h: object, max_distance: int | None = None) -> list[tuple[int, int]]:
        """Stored hashes within ``max_distance`` of ``h``, as ``[(id, distance), ...]``.

        Args:
            h: One hash: an int below ``2**nbits`` or a packed ``(W,)`` uint64 row.
            max_distance: Radius in bits; defaults to the constructor's ``max_distance``.

        Returns:
            Sorted by distance, then id. Exact.

        Raises:
            ConfigError: No radius given here or in the constructor (a ``ValueError``).

        Note:
            Cost: ``sum_j V(bits_j, r_j)`` key probes (~700 for 64-bit hashes, radius 8 and
            1M hashes) plus the candidates found; the first query at a radius builds its
            tables (``O(N log N)``). For many hashes use :meth:`query_many`.
        """
        codes = h.reshape(1, -1) if isinstance(h, np.ndarray) and h.dtype != object else [h]
        _, ids, dist = self.query_many(codes, max_distance)
        return list(zip(ids.tolist(), dist.tolist(), strict=True))

    def query_many(
        self, hashes: object, max_distance: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised :meth:`query`: ``(query, id, distance)`` int64 arrays, ``query``
        indexing ``hashes``, sorted by query, distance, id. ``hashes`` as for :meth:`add`."""
        if max_distance is None:
            if self.max_distance is None:
                raise ConfigError("pass max_distance=... to query(), or set it once with"
                                  " HammingIndex(nbits, max_distance=...)")
            max_distance = self.max_distance
        t = check_distance(max_distance)
        q = self._to_codes(hashes)
        found: list[list[np.ndarray]] = [[], [], []]
        if q.shape[0] and self._size:
            plan, tables = self._tables_for(t)
            brute_from = 0
            if plan is not None:
                qi, rows = self._probe(q, plan, tables)
                d = distances(self._codes[rows], q[qi])
                for out, part in zip(found, (qi, rows, d), strict=True):
                    out.append(part[d <= t])
                brute_from = self._indexed
            rows = np.arange(brute_from, self._size)
            step = max(1, self._tuning.brute_cells // max(1, rows.size))
            for lo in range(0, q.shape[0] if rows.size else 0, step):
                d = distances(q[lo : lo + step, None], self._codes[rows])
                qi, at = np.nonzero(d <= t)
                for out, part in zip(found, (qi + lo, rows[at], d[qi, at]), strict=True):
                    out.append(part)
        qi, rows, d = cat_int64(found)
        live = self._alive[rows]
        qi, ids, d = qi[live], self._ids[rows[live]], d[live]
        order = np.lexsort((ids, d, qi))
        return qi[order], ids[order], d[order]

    def _probe(self, q: np.ndarray, plan: tuple[Chunk, ...],
               tables: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Distinct ``(query, row)`` candidates: rows sharing a key within ``r_j`` of a query."""
        n = self._indexed
        idx_bits = U64((n - 1).bit_length())
        idx_mask = (U64(1) << idx_bits) - U64(1)
        qcols = [np.ascontiguousarray(q[:, w]) for w in range(self._words)]
        found_q, found_r = [], []
        for (start, bits, radius), table in zip(plan, tables, strict=True):
            masks = _neighbour_masks(bits, radius)
            qkeys = shuffle(qcols, self.nbits, ((start, bits),), self._tuning)[0]
            step = max(1, self._tuning.probe_batch // masks.size)
            for lo in range(0, q.shape[0], step):
                probes = ((qkeys[lo : lo + step, None] ^ masks) << idx_bits).ravel()
                first = np.searchsorted(table, probes, side="left")
                count = np.searchsorted(table, probes | idx_mask, side="right") - first
                for pi, pos in expand_ranges(np.arange(probes.size), first, count,
                                             self._tuning.pair_batch):
                    found_q.append(pi // masks.size + lo)
                    found_r.append((table[pos] & idx_mask).astype(np.int64))
        qi, rows = cat_int64([found_q, found_r])
        pair = qi * n + rows
        pair.sort()  # a row can share keys with a query in several chunks: once each
        pair = pair[np.diff(pair, prepend=-1) != 0]
        return pair // n, pair % n

    def pairs(
        self, max_distance: int, *, workers: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All pairs of stored hashes within ``max_distance``, by id.

        Returns:
            ``(id_a, id_b, distance)`` int64 arrays with ``id_a < id_b``, sorted by
            ``(id_a, id_b)``.

        Note:
            Runs :func:`~lookalike.search.find_pairs` over the stored hashes (the tables of
            this index are not used). The output is quadratic in the number of identical
            hashes; for grouping, prefer :func:`~lookalike.search.find_pairs_collapsed`.
        """
        t = check_distance(max_distance)
        rows = np.flatnonzero(self._alive[: self._size])
        a, b, d = find_pairs(self._codes[rows], t, workers=workers, tuning=self._tuning)
        ia, ib = self._ids[rows[a]], self._ids[rows[b]]
        lo, hi = np.minimum(ia, ib), np.maximum(ia, ib)
        order = np.lexsort((hi, lo))
        return lo[order], hi[order], d[order]
