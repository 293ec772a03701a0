"""Grouping: turn hashed images and near pairs into deterministic duplicate groups.

Pure: no I/O. Candidates come from :mod:`lookalike.search` (exact Hamming search), plus
exact-duplicate edges (same file digest or same pixel digest). Two modes:

``components`` (default)
    connected components of the "within threshold" graph: A~B and B~C put A, B, C in one
    group even if A and C are further apart (chaining).
``star``
    no chaining: every member is within the threshold of its group's representative. Leaders
    are taken greedily in a fixed quality order (most pixels, largest file, path).

Results never depend on input order or worker count: records are sorted by path first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Literal

from lookalike.model import Group, ImageRecord, Member

# NumPy and the index load only where a search runs: a re-scan of an unchanged tree reuses
# the previous scan's edges (find_edges) and never imports NumPy (~0.12 s, a fifth of such
# a scan).

__all__ = ["Edges", "GroupMode", "assemble_groups", "build_groups", "cluster_records",
           "find_edges", "group_kind", "near_pairs", "neighbour_mask", "record_edges",
           "segment_rows"]

GroupMode = Literal["components", "star"]


def _quality_key(rec: ImageRecord) -> tuple[int, int, str]:
    # The copy a user most likely wants to keep comes first: most pixels, then largest file.
    return (-rec.pixels, -rec.size_bytes, rec.path)


def segment_rows(records: Sequence[ImageRecord]) -> tuple[list[int], list[int]]:
    """One search row per hash segment: (owning record index, segment value)."""
    owners: list[int] = []
    values: list[int] = []
    for i, rec in enumerate(records):
        for seg in rec.hash.segments:
            owners.append(i)
            values.append(seg)
    return owners, values


def near_pairs(records: Sequence[ImageRecord], max_distance: int
               ) -> dict[tuple[int, int], int]:
    """All index pairs (i < j) whose hashes are within ``max_distance`` bits, with distance.

    Multi-segment (crop-resistant) hashes match when any segment pair does; the distance is
    the best segment match. Same file/pixel digest pairs are added with distance 0.
    """
    import numpy as np

    from lookalike.search import find_pairs, pack_hashes

    pairs: dict[tuple[int, int], int] = {}
    if len(records) < 2:
        return pairs
    owners, values = segment_rows(records)
    nbits = records[0].hash.nbits
    codes = pack_hashes(values, nbits)
    ii, jj, dd = find_pairs(codes, max_distance)
    own = np.asarray(owners, dtype=np.int64)
    oi, oj = own[ii], own[jj]
    for a, b, d in zip(oi.tolist(), oj.tolist(), dd.tolist(), strict=True):
        if a == b:
            continue
        key = (a, b) if a < b else (b, a)
        old = pairs.get(key)
        if old is None or d < old:
            pairs[key] = d
    for attr in ("digest", "pixel_digest"):
        by: dict[str, list[int]] = defaultdict(list)
        for i, rec in enumerate(records):
            value = getattr(rec, attr)
            if value:
                by[value].append(i)
        for members in by.values():
            first = members[0]
            for other in members[1:]:
                pairs[(first, other)] = 0
    return pairs


@dataclass(frozen=True, slots=True, eq=False)
class Edges:
    """Every pair of distinct hash values (codes) within ``radius`` bits among ``codes``.

    A pure function of the codes and the radius, whatever files they came from: so a
    re-scan can start from the edges of the previous one (:func:`find_edges`).
    """

    nbits: int
    radius: int
    codes: frozenset[int]
    pairs: tuple[tuple[int, int], ...]  # (smaller code, larger code), sorted


def find_edges(codes: Iterable[int], nbits: int, radius: int,
               known: Edges | None = None) -> Edges:
    """The :class:`Edges` among ``codes`` (hash values of ``nbits`` bits) at ``radius``.

    With ``known`` (the edges of another set of codes, same bits and radius): ``known``
    itself comes back when the codes are the same, and its pairs of the remaining codes when
    codes were only removed; then nothing is searched (and NumPy is not imported). Any new
    code means one self-join of all of them. (Querying only the new codes against an index
    of the others, :class:`~lookalike.search.mih.HammingIndex`, was measured and dropped: at
    1% new codes it cost the same as the self-join, 0.37 s against 0.38 s for 150k 256-bit
    codes at radius 26, and at 5% three times as much.)
    """
    codes = frozenset(codes)
    if known is not None and (known.nbits, known.radius) == (nbits, radius):
        if codes == known.codes:
            return known
        if codes <= known.codes:
            return Edges(nbits, radius, codes,
                         tuple(p for p in known.pairs if p[0] in codes and p[1] in codes))
    return Edges(nbits, radius, codes, tuple(sorted(_search(sorted(codes), nbits, radius))))


def _search(ordered: list[int], nbits: int, radius: int) -> set[tuple[int, int]]:
    """Every pair of the distinct codes ``ordered`` within ``radius`` bits (a self-join)."""
    from lookalike.search import find_pairs, pack_hashes

    if len(ordered) < 2:
        return set()
    ii, jj, _ = find_pairs(pack_hashes(ordered, nbits), radius)
    return {(ordered[i], ordered[j]) if ordered[i] < ordered[j] else (ordered[j], ordered[i])
            for i, j in zip(ii.tolist(), jj.tolist(), strict=True)}


class _Graph:
    """The "within threshold" graph over records, kept collapsed.

    Identical codes form one node (a *code group*); edges join code groups within the
    threshold. A record may own several code groups (multi-segment hashes). Nothing here is
    quadratic in the size of a group of identical hashes (100k blank images cost O(100k)).
    """

    def __init__(self, records: Sequence[ImageRecord], edges: Edges) -> None:
        owners, values = segment_rows(records)
        self.n = len(records)
        index: dict[int, int] = {}
        self._owners = owners
        self._groups = [index.setdefault(v, len(index)) for v in values]
        self._n_groups = len(index)
        pairs = [(index[a], index[b]) for a, b in edges.pairs if a in index and b in index]
        self._i = [a for a, _ in pairs]
        self._j = [b for _, b in pairs]
        self._lists: tuple[list[list[int]], list[list[int]], list[list[int]]] | None = None

    def _adjacency(self) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
        """(owners of each code group, code groups of each record, neighbouring code groups),
        as lists: built on first use (star grouping, neighbour queries)."""
        if self._lists is None:
            owners_of: list[list[int]] = [[] for _ in range(self._n_groups)]
            groups_of: list[list[int]] = [[] for _ in range(self.n)]
            for owner, g in zip(self._owners, self._groups, strict=True):
                if not owners_of[g] or owners_of[g][-1] != owner:
                    owners_of[g].append(owner)
                if not groups_of[owner] or groups_of[owner][-1] != g:
                    groups_of[owner].append(g)
            adj: list[list[int]] = [[] for _ in range(self._n_groups)]
            for a, b in zip(self._i, self._j, strict=True):
                adj[a].append(b)
                adj[b].append(a)
            self._lists = (owners_of, groups_of, adj)
        return self._lists

    def _links(self) -> tuple[list[int], list[int]]:
        """Record pairs whose union gives the components: each row's owner with the first
        owner of its code group, and the first owners of every pair of near code groups."""
        first: dict[int, int] = {}
        for owner, g in zip(self._owners, self._groups, strict=True):
            first.setdefault(g, owner)  # owners ascend: the first is the smallest
        a: list[int] = []
        b: list[int] = []
        for owner, g in zip(self._owners, self._groups, strict=True):
            if first[g] != owner:
                a.append(first[g])
                b.append(owner)
        for gi, gj in zip(self._i, self._j, strict=True):
            if first[gi] != first[gj]:
                a.append(first[gi])
                b.append(first[gj])
        return a, b

    def components(self) -> list[list[int]]:
        """Connected components of two or more records (records ascending in each, components
        by their first record). Only records with a link are visited: on a warm re-scan of
        20k mostly unique images that is a few thousand, not 20k."""
        a, b = self._links()
        parent: dict[int, int] = {}

        def find(x: int) -> int:
            root = x
            while parent.get(root, root) != root:
                root = parent[root]
            while x != root:  # path compression
                parent[x], x = root, parent[x]
            return root

        for u, v in zip(a, b, strict=True):
            ru, rv = find(u), find(v)
            if ru != rv:
                parent[max(ru, rv)] = min(ru, rv)
        comps: dict[int, list[int]] = defaultdict(list)
        for x in sorted({*a, *b}):
            comps[find(x)].append(x)
        return [c for c in comps.values() if len(c) > 1]

    def neighbours(self, i: int) -> set[int]:
        owners_of, groups_of, adj = self._adjacency()
        out: set[int] = set()
        for g in groups_of[i]:
            out.update(owners_of[g])
            for h in adj[g]:
                out.update(owners_of[h])
        out.discard(i)
        return out

    def has_neighbours(self, i: int) -> bool:
        owners_of, groups_of, adj = self._adjacency()
        return any(len(owners_of[g]) > 1 or adj[g] for g in groups_of[i])


def record_edges(records: Sequence[ImageRecord], max_distance: int,
                 known: Edges | None = None) -> Edges:
    """:func:`find_edges` of every hash segment of ``records``."""
    nbits = records[0].hash.nbits if records else 1
    return find_edges((v for r in records for v in r.hash.segments), nbits, max_distance,
                      known)


def neighbour_mask(records: Sequence[ImageRecord], max_distance: int,
                   edges: Edges | None = None) -> list[bool]:
    """For each record (in the given order), whether any other record is within
    ``max_distance`` bits of it (an identical hash counts). Same search as grouping;
    ``edges``: :func:`record_edges` of these records at that distance, if known."""
    graph = _Graph(records, edges or record_edges(records, max_distance))
    return [graph.has_neighbours(i) for i in range(len(records))]


def _stars(records: Sequence[ImageRecord], graph: _Graph) -> list[list[int]]:
    order = sorted((i for i in range(len(records)) if graph.has_neighbours(i)),
                   key=lambda i: _quality_key(records[i]))
    assigned: set[int] = set()
    out = []
    for leader in order:
        if leader in assigned:
            continue
        members = sorted(j for j in graph.neighbours(leader) if j not in assigned)
        if not members:
            continue
        assigned.add(leader)
        assigned.update(members)
        out.append([leader, *members])
    return out


def build_groups(records: Sequence[ImageRecord], max_distance: int,
                 mode: GroupMode = "components") -> list[Group]:
    """Group ``records`` whose hashes are within ``max_distance`` bits.

    Returns groups of two or more members, largest first (ties: first path), numbered from 1.
    In each group the representative comes first (most pixels, then largest file, then path),
    then members by distance and path. Records with the same file digest have the same
    hash, so exact duplicates always land in one group.

    Cost: one search of the distinct hash values (:func:`find_edges`) plus time linear
    in records and pairs between *distinct* hashes (identical hashes are never expanded).
    """
    recs = sorted(records, key=attrgetter("path"))
    return assemble_groups(recs, cluster_records(recs, max_distance, mode))


def cluster_records(recs: Sequence[ImageRecord], max_distance: int,
                    mode: GroupMode = "components", edges: Edges | None = None
                    ) -> list[list[int]]:
    """The clusters :func:`build_groups` makes of ``recs`` (sorted by path), as lists of
    indices into ``recs``, the representative first: the search and graph part of grouping,
    which :func:`assemble_groups` turns into groups. ``edges``: :func:`record_edges` of
    ``recs`` at ``max_distance``, if known (a re-scan keeps the previous scan's)."""
    if max_distance < 0:
        raise ValueError("max_distance must be >= 0")
    graph = _Graph(recs, edges or record_edges(recs, max_distance))
    if mode == "components":
        clusters = graph.components()
        reps = [min(c, key=lambda i: _quality_key(recs[i])) for c in clusters]
    elif mode == "star":
        clusters = _stars(recs, graph)
        reps = [c[0] for c in clusters]
    else:
        raise ValueError(f"unknown grouping mode {mode!r}; use 'components' or 'star'")
    return [[rep, *(i for i in c if i != rep)] for c, rep in zip(clusters, reps, strict=True)]


def assemble_groups(recs: Sequence[ImageRecord], clusters: Sequence[Sequence[int]]
                    ) -> list[Group]:
    """Groups from :func:`cluster_records` output: members ordered, numbered, typed."""
    built = []
    for cluster in clusters:
        rep = cluster[0]
        rep_hash = recs[rep].hash
        members = sorted(
            (Member(recs[i], 0 if i == rep else rep_hash - recs[i].hash) for i in cluster),
            key=lambda m: (m.record.path != recs[rep].path, m.distance, m.record.path),
        )
        built.append((members, recs[rep].path))
    built.sort(key=lambda item: (-len(item[0]), min(m.record.path for m in item[0])))
    return [
        Group(id=k, members=tuple(members), representative=rep, kind=group_kind(members))
        for k, (members, rep) in enumerate(built, start=1)
    ]


def group_kind(members: Sequence[Member]) -> str:
    """``"exact"`` when every member has the same file digest or the same pixel digest
    (known, not empty), else ``"near"``: the one definition of a group's kind."""
    for attr in ("digest", "pixel_digest"):
        values = {getattr(m.record, attr) for m in members}
        if len(values) == 1 and None not in values and "" not in values:
            return "exact"
    return "near"
