"""The edges between hash values: every pair of distinct values within a radius, kept from
one scan to the next so that a re-scan searches only what changed.

Pure (no I/O): the search is :mod:`lookalike.search`; the hash cache stores :class:`Edges`
as they are held here (:meth:`lookalike.store.cache.HashCache.save_edges`).
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lookalike.errors import TooManyPairs
from lookalike.model import ImageRecord

# NumPy and the index load only where a search runs: a re-scan of an unchanged tree reuses
# the previous scan's edges (find_edges) and never imports NumPy (~0.12 s, a fifth of such
# a scan).

__all__ = ["BYTES_PER_PAIR", "MIN_KEY_BITS", "NEW_SHARE", "Edges", "find_edges", "fingerprint",
           "record_edges"]


def fingerprint(codes: frozenset[int]) -> str:
    """What recognises a set of codes without its members: their number, their sum and
    Python's hash of the set (of ints, the same in every process). A stored set is taken to
    be the current one when these agree. Python hashes an int modulo 2**61 - 1, so a set
    made to collide can (swap a, b for a + M, b - M); sets of hash values that pictures
    make agree on all three by accident with odds of about 2**-61."""
    return f"{len(codes)}:{sum(codes):x}:{hash(codes):x}"


@dataclass(frozen=True, slots=True, eq=False)
class Edges:
    """Every pair of distinct hash values (codes) within ``radius`` bits among a set of
    codes.

    A pure function of the codes and the radius, whatever files they came from: so a
    re-scan can start from the edges of the previous one (:func:`find_edges`).

    Held in the form the search reads and the hash cache stores, so that neither converts
    every code again: ``packed``, the distinct codes (each once) as rows of
    :func:`~lookalike.search.pack_hashes` (8 big-endian bytes a word), ``index``, each pair
    as two row positions, and ``fingerprint`` (:func:`fingerprint`) of the codes. ``order``
    (the codes, in row order), ``codes`` and ``pairs`` (code pairs, each pair once) are
    derived from them when first asked for; ``pairs`` reads only the rows in some pair.
    A re-scan of 20k small images (296k codes) with 200 new ones took 1.91 s when every
    code was sorted, packed and positioned anew for the search and again for the save; 1.39 s
    this way (``benchmarks/bench_scan.py``'s case, medians of 5 interleaved runs). Reading
    back only the codes in some pair, and recognising an unchanged set by its fingerprint
    instead of reading every code: warm re-scan of those 20k 0.61 s instead of 0.68 s
    (medians of 9 interleaved runs).
    """

    nbits: int
    radius: int
    packed: bytes
    index: array[int]  # "I": a0, b0, a1, b1, ...
    fingerprint: str
    _order: tuple[int, ...] | None = field(default=None, repr=False)
    _codes: frozenset[int] | None = field(default=None, repr=False)
    _pairs: tuple[tuple[int, int], ...] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, nbits: int, radius: int, order: tuple[int, ...], packed: bytes,
           index: array[int], codes: frozenset[int] | None = None,
           print_: str | None = None) -> Edges:
        """Edges of the codes ``order`` (distinct; ``packed`` holds them in that order);
        ``codes`` and ``print_``: their set and its :func:`fingerprint`, if known."""
        codes = frozenset(order) if codes is None else codes
        return cls(nbits, radius, packed, index, print_ or fingerprint(codes), order, codes)

    @property
    def width(self) -> int:
        """Bytes per packed code."""
        return 8 * ((self.nbits + 63) // 64)

    @property
    def order(self) -> tuple[int, ...]:
        if self._order is None:
            w, packed = self.width, self.packed
            object.__setattr__(self, "_order", tuple(
                [int.from_bytes(packed[k:k + w], "big") for k in range(0, len(packed), w)]))
        return self._order  # type: ignore[return-value]

    @property
    def codes(self) -> frozenset[int]:
        if self._codes is None:
            object.__setattr__(self, "_codes", frozenset(self.order))
        return self._codes  # type: ignore[return-value]

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        if self._pairs is None:
            at: Callable[[int], int]
            if self._order is not None or len(self.index) >= len(self):
                at = self.order.__getitem__  # (every code, once, is the cheaper read)
            else:  # the codes of rows in some pair only (most rows are in none)
                w, packed = self.width, self.packed
                at = {k: int.from_bytes(packed[k * w:(k + 1) * w], "big")
                      for k in set(self.index)}.__getitem__
            object.__setattr__(self, "_pairs", tuple(zip(
                map(at, self.index[0::2]), map(at, self.index[1::2]), strict=True)))
        return self._pairs  # type: ignore[return-value]

    def __len__(self) -> int:
        """How many codes."""
        return len(self.packed) // self.width

    @classmethod
    def stored(cls, nbits: int, radius: int, packed: bytes, index: bytes,
               fingerprint: str) -> Edges:
        """The edges that :attr:`packed`, :attr:`index` (as bytes) and
        :attr:`fingerprint` were written from (the store vouches for their bytes: the hash
        cache keeps a checksum).

        Raises:
            ValueError: they cannot be (a damaged or foreign row).
        """
        positions = array("I")
        edges = cls(nbits, radius, packed, positions, fingerprint)
        if len(packed) % edges.width or len(index) % (2 * positions.itemsize):
            raise ValueError("stored edges of the wrong length")
        positions.frombytes(index)
        if positions and max(positions) >= len(edges):
            raise ValueError("stored edges out of range")
        return edges

    def without(self, gone: frozenset[int]) -> Edges:
        """These edges with the codes ``gone`` (and their pairs) left out: no search, and
        no NumPy (a re-scan after files were only deleted)."""
        width = self.width
        keep = [k for k, c in enumerate(self.order) if c not in gone]
        moved = {k: p for p, k in enumerate(keep)}
        ends = iter(self.index)
        index = array("I")
        for a, b in zip(ends, ends, strict=True):
            if a in moved and b in moved:
                index.append(moved[a])
                index.append(moved[b])
        return Edges.of(self.nbits, self.radius, tuple(self.order[k] for k in keep),
                        b"".join(self.packed[k * width:(k + 1) * width] for k in keep), index)


def find_edges(codes: Iterable[int], nbits: int, radius: int,
               known: Edges | None = None) -> Edges:
    """The :class:`Edges` among ``codes`` (hash values of ``nbits`` bits) at ``radius``.

    With ``known`` (the edges of another set of codes, same bits and radius): ``known``
    itself comes back when the codes are the same, and its pairs of the remaining codes when
    codes were only removed; then nothing is searched (and NumPy is not imported). New
    codes are searched, among themselves and against the others
    (:func:`~lookalike.search.find_pairs_between`), and their pairs added to ``known``'s
    pairs of the codes that remain; when they are more than 1 in :data:`NEW_SHARE` of all,
    or the radius leaves keys shorter than :data:`MIN_KEY_BITS`, one self-join of all the
    codes replaces that. Either way the search's input reuses
    ``known``'s packed codes.
    An unchanged set is recognised by its :func:`fingerprint`, without reading ``known``'s
    codes.
    """
    codes = frozenset(codes)
    if known is not None and (known.nbits, known.radius) == (nbits, radius):
        print_ = fingerprint(codes)
        if known.fingerprint == print_:
            return known
        if codes <= known.codes:
            return known.without(known.codes - codes)
        return _search(codes, nbits, radius, known, print_)
    return _search(codes, nbits, radius, None)


def _search(codes: frozenset[int], nbits: int, radius: int, known: Edges | None,
            print_: str | None = None) -> Edges:
    """Every pair of ``codes`` within ``radius`` bits. Without ``known``: one self-join.
    With it: ``known``'s pairs of the codes that remain, and only the new codes searched,
    among themselves and against the rest (:func:`~lookalike.search.find_pairs_between`);
    ``known``'s codes that remain keep their place and packed rows, the new ones follow."""
    import numpy as np

    from lookalike.search import find_pairs, find_pairs_between, pack_hashes

    if known is None:
        # Ascending: what is stored (and the pairs' order) depends on the values only, not
        # on the order the set was built in.
        order = tuple(sorted(codes))
        rows = pack_hashes(order, nbits)
        _check_pairs_fit(rows, radius)
        ii, jj, _ = find_pairs(rows, radius)
    else:
        added = tuple(codes.difference(known.codes))  # not empty here
        new_rows = pack_hashes(added, nbits)
        old = np.frombuffer(known.packed, dtype=">u8").reshape(-1, new_rows.shape[1])
        kept = known.order
        ends = np.frombuffer(known.index, dtype=np.uint32).astype(np.int64).reshape(-1, 2)
        if not known.codes <= codes:
            keep = np.fromiter((c in codes for c in kept), dtype=bool, count=len(kept))
            kept, old = tuple(c for c in kept if c in codes), old[keep]
            moved = np.cumsum(keep) - 1  # a kept row's place among the kept
            ends = moved[ends[keep[ends].all(axis=1)]]
        order = kept + added
        old = old.astype(np.uint64)
        rows = np.concatenate([old, new_rows])
        _check_pairs_fit(rows, radius)
        n = len(kept)
        if len(added) * NEW_SHARE > len(codes) or nbits // (radius + 1) < MIN_KEY_BITS:
            # many new, or keys too short to filter: one self-join of all costs less
            ii, jj, _ = find_pairs(rows, radius)
        else:
            ni, nj, _ = find_pairs(new_rows, radius)  # the new among themselves
            ci, cj, _ = find_pairs_between(old, new_rows, radius)  # and against the rest
            ii = np.concatenate([ends[:, 0], ci, ni + n])
            jj = np.concatenate([ends[:, 1], cj + n, nj + n])
            # In (i, j) order, as one self-join of ``rows`` lists them.
            sort = np.lexsort((jj, ii))
            ii, jj = ii[sort], jj[sort]
    index = array("I")
    index.frombytes(np.column_stack((ii, jj)).astype(np.uint32).tobytes())
    return Edges.of(nbits, radius, order, rows.astype(">u8").tobytes(), index, codes, print_)


#: New codes up to one in this many of all are searched against the others, if the radius
#: leaves keys of at least MIN_KEY_BITS bits (``nbits // (radius + 1)``); else one self-join
#: of all costs less. Seconds for the new codes against the others and among themselves vs
#: one self-join of all, on the codes of 20k small real pictures (296k of 256 bits,
#: benchmarks/bench_scan.py's tree): 50k + 500 new (1%) at radius 6 / 14 / 20: 0.014 vs
#: 0.075 / 0.039 vs 0.34 / 0.093 vs 1.16; 150k + 1,500 (1%): 0.049 vs 0.25 / 0.24 vs 12.6 /
#: 0.73 vs 182; 50k + 2,500 (5%) at 20: 0.39 vs 1.20; 50k + 10k (20%) at 14: 0.49 vs 0.92.
#: On random codes, 200k + 2,000: 256 bits at radius 6 / 14 / 20 / 24 (keys of 36 / 17 /
#: 12 / 10 bits): 0.03 vs 0.13 / 0.06 vs 0.17 / 0.45 vs 0.29 / 1.54 vs 0.38; 64 bits at 4 /
#: 6 / 8 (12 / 9 / 7 bits): 0.06 vs 0.07 / 0.34 vs 0.13 / 0.81 vs 0.30.
NEW_SHARE = 20
MIN_KEY_BITS = 12

#: Memory one pair of near hash values holds from the search to the groups (its positions,
#: its code pair, the graph's links): about 200 bytes, measured on 13M pairs of 20k
#: near-identical logos (1.9 GB at the peak).
BYTES_PER_PAIR = 200


def _check_pairs_fit(rows: Any, radius: int) -> None:
    """Refuse, before the search, a radius that pairs so many of these packed codes that
    the pairs cannot fit in half this machine's memory (``-t 128`` of 256 bits on 5k
    random pictures made 402M pairs: a MemoryError traceback, or the machine out of
    memory). The share of pairs within ``radius`` is estimated on 100,000 random pairs
    (a few milliseconds)."""
    import numpy as np

    from lookalike.search.codes import distances

    n = rows.shape[0]
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # no such query here: no estimate
        return
    if n * (n - 1) // 2 * BYTES_PER_PAIR <= memory // 2:
        return  # even every pair fits
    rng = np.random.default_rng(0)
    a = rng.integers(0, n, 100_000)
    b = (a + rng.integers(1, n, 100_000)) % n  # another code
    share = float(np.mean(distances(rows[a], rows[b]) <= radius))
    pairs = share * n * (n - 1) / 2
    if pairs * BYTES_PER_PAIR > memory / 2:
        raise TooManyPairs(
            f"a threshold of {radius} bits pairs about {share:.1%} of these {n:,} hash values "
            f"with each other: ~{pairs:,.0f} pairs, ~{pairs * BYTES_PER_PAIR / 1e9:,.0f} GB, "
            f"more than half this machine's memory ({memory / 1e9:,.0f} GB); lower the "
            "threshold (with the hash cache, a scan at another threshold hashes nothing "
            "again)")


def record_edges(records: Sequence[ImageRecord], max_distance: int,
                 known: Edges | None = None) -> Edges:
    """:func:`find_edges` of every hash segment of ``records``."""
    nbits = records[0].hash.nbits if records else 1
    return find_edges((v for r in records for v in r.hash.segments), nbits, max_distance,
                      known)
