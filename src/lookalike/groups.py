"""Grouping: turn hashed images and near pairs into deterministic duplicate groups.

Pure: no I/O. Candidates come from :mod:`lookalike.index` (exact Hamming search), plus
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
from collections.abc import Sequence
from typing import Literal

import numpy as np

from .index import find_pairs, find_pairs_collapsed, pack_hashes
from .model import Group, ImageRecord, Member

__all__ = ["GroupMode", "build_groups", "near_pairs", "neighbour_mask"]

GroupMode = Literal["components", "star"]


def _quality_key(rec: ImageRecord) -> tuple[int, int, str]:
    # The copy a user most likely wants to keep comes first: most pixels, then largest file.
    return (-rec.pixels, -rec.size_bytes, rec.path)


def _segment_rows(records: Sequence[ImageRecord]) -> tuple[list[int], list[int]]:
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
    pairs: dict[tuple[int, int], int] = {}
    if len(records) < 2:
        return pairs
    owners, values = _segment_rows(records)
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


class _Graph:
    """The "within threshold" graph over records, kept collapsed.

    Identical codes form one node (a *code group*); edges join code groups within the
    threshold. A record may own several code groups (multi-segment hashes). Nothing here is
    quadratic in the size of a group of identical hashes (100k blank images cost O(100k)).
    """

    def __init__(self, records: Sequence[ImageRecord], max_distance: int) -> None:
        owners, values = _segment_rows(records)
        self.n = len(records)
        if not values:
            self.owners_of: list[list[int]] = []
            self.groups_of: list[list[int]] = [[] for _ in range(self.n)]
            self.adj: list[list[int]] = []
            return
        cp = find_pairs_collapsed(pack_hashes(values, records[0].hash.nbits), max_distance)
        n_groups = len(cp.representatives)
        owners_of: list[list[int]] = [[] for _ in range(n_groups)]
        groups_of: list[list[int]] = [[] for _ in range(self.n)]
        for owner, g in zip(owners, cp.groups.tolist(), strict=True):
            if not owners_of[g] or owners_of[g][-1] != owner:
                owners_of[g].append(owner)
            if not groups_of[owner] or groups_of[owner][-1] != g:
                groups_of[owner].append(g)
        adj: list[list[int]] = [[] for _ in range(n_groups)]
        for a, b in zip(cp.i.tolist(), cp.j.tolist(), strict=True):
            adj[a].append(b)
            adj[b].append(a)
        self.owners_of, self.groups_of, self.adj = owners_of, groups_of, adj

    def components(self) -> list[list[int]]:
        parent = list(range(self.n))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        def union(a: int, b: int) -> None:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)

        for g, owners in enumerate(self.owners_of):
            for o in owners[1:]:
                union(owners[0], o)
            for h in self.adj[g]:
                if h > g:
                    union(owners[0], self.owners_of[h][0])
        comps: dict[int, list[int]] = defaultdict(list)
        for i in range(self.n):
            comps[find(i)].append(i)
        return [c for c in comps.values() if len(c) > 1]

    def neighbours(self, i: int) -> set[int]:
        out: set[int] = set()
        for g in self.groups_of[i]:
            out.update(self.owners_of[g])
            for h in self.adj[g]:
                out.update(self.owners_of[h])
        out.discard(i)
        return out

    def has_neighbours(self, i: int) -> bool:
        return any(len(self.owners_of[g]) > 1 or self.adj[g] for g in self.groups_of[i])


def neighbour_mask(records: Sequence[ImageRecord], max_distance: int) -> list[bool]:
    """For each record (in the given order), whether any other record is within
    ``max_distance`` bits of it (an identical hash counts). Same search as grouping."""
    graph = _Graph(records, max_distance)
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

    Cost: the pair search of :func:`lookalike.index.find_pairs_collapsed` plus time linear
    in records and pairs between *distinct* hashes (identical hashes are never expanded).
    """
    if max_distance < 0:
        raise ValueError("max_distance must be >= 0")
    recs = sorted(records, key=lambda r: r.path)
    graph = _Graph(recs, max_distance)
    if mode == "components":
        clusters = graph.components()
        reps = [min(c, key=lambda i: _quality_key(recs[i])) for c in clusters]
    elif mode == "star":
        clusters = _stars(recs, graph)
        reps = [c[0] for c in clusters]
    else:
        raise ValueError(f"unknown grouping mode {mode!r}; use 'components' or 'star'")
    built = []
    for cluster, rep in zip(clusters, reps, strict=True):
        rep_hash = recs[rep].hash
        members = sorted(
            (Member(recs[i], 0 if i == rep else rep_hash - recs[i].hash) for i in cluster),
            key=lambda m: (m.record.path != recs[rep].path, m.distance, m.record.path),
        )
        built.append((members, recs[rep].path))
    built.sort(key=lambda item: (-len(item[0]), min(m.record.path for m in item[0])))
    return [
        Group(id=k, members=tuple(members), representative=rep, kind=_kind(members))
        for k, (members, rep) in enumerate(built, start=1)
    ]


def _kind(members: Sequence[Member]) -> str:
    for attr in ("digest", "pixel_digest"):
        values = {getattr(m.record, attr) for m in members}
        if len(values) == 1 and None not in values:
            return "exact"
    return "near"
