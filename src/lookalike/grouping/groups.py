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
from collections.abc import Iterable, Iterator, KeysView, Mapping, Sequence
from operator import attrgetter
from typing import Any, Literal

from lookalike.grouping.edges import Edges, record_edges
from lookalike.imaging.facts import LOSSLESS_FORMATS, smear_free
from lookalike.model import Group, ImageRecord, Member

# NumPy and the index load only where a search runs (lookalike.grouping.edges).

__all__ = ["GroupMode", "assemble_groups", "build_groups", "cluster_records", "group_kind",
           "link_matches", "near_pairs", "neighbour_mask", "segment_rows"]

GroupMode = Literal["components", "star"]


def _shown(rec: ImageRecord) -> tuple[int, int]:
    """The size of the picture ``rec`` shows: inside flat bars, where its hash found some."""
    content = rec.facts.content if rec.facts is not None else None
    return content or (rec.width, rec.height)


def _quality_key(rec: ImageRecord, shown: tuple[int, int] | None = None
                 ) -> tuple[int, bool, bool, int, str]:
    # The copy a user most likely wants to keep comes first: most pixels shown (``shown``,
    # else inside its flat bars: a padded copy is no larger picture, and as the
    # representative it made its original read "padded copy" on the review page), then one
    # without bars, then a lossless one (a same-size JPEG re-encode of a PNG can be the
    # larger file), then the largest file.
    inside = _shown(rec)
    w, h = shown or inside
    lossless = (rec.format or "").upper() in LOSSLESS_FORMATS or bool(
        rec.facts is not None and rec.facts.lossless)
    return (-w * h, inside != (rec.width, rec.height), not lossless, -rec.size_bytes,
            rec.path)


def segment_rows(records: Sequence[ImageRecord]) -> tuple[list[int], list[int]]:
    """One search row per hash segment that is not a flat picture's
    (:attr:`~lookalike.model.Hash.flat_codes`: it would match every blank or solid picture):
    (owning record index, segment value)."""
    owners: list[int] = []
    values: list[int] = []
    for i, rec in enumerate(records):
        for seg in rec.hash.informative_segments:
            owners.append(i)
            values.append(seg)
    return owners, values


def near_pairs(records: Sequence[ImageRecord], max_distance: int
               ) -> dict[tuple[int, int], int]:
    """All index pairs (i < j) whose hashes are within ``max_distance`` bits, with distance.

    Multi-segment (crop-resistant) hashes match when any segment pair does; the distance is
    the best segment match; a flat picture's segments match nothing (:func:`segment_rows`),
    so a featureless hash pairs by digest only, as in grouping. Same file/pixel digest pairs
    are added with distance 0.
    """
    import numpy as np

    from lookalike.search import find_pairs, pack_hashes

    pairs: dict[tuple[int, int], int] = {}
    if len(records) < 2:
        return pairs
    owners, values = segment_rows(records)
    if values:
        ii, jj, dd = find_pairs(pack_hashes(values, records[0].hash.nbits), max_distance)
        own = np.asarray(owners, dtype=np.int64)
        for a, b, d in zip(own[ii].tolist(), own[jj].tolist(), dd.tolist(), strict=True):
            if a != b:
                key = (a, b) if a < b else (b, a)
                old = pairs.get(key)
                if old is None or d < old:
                    pairs[key] = d
    for attr in ("digest", "pixel_digest"):
        by: dict[str, list[int]] = defaultdict(list)
        for i, rec in enumerate(records):
            value = getattr(rec, attr)
            # Pixels of a featureless picture (composited on white) do not tell it apart.
            if value and not (attr == "pixel_digest" and rec.hash.featureless):
                by[value].append(i)
        for members in by.values():
            first = members[0]
            for other in members[1:]:
                pairs[(first, other)] = 0
    return pairs


def _graph_codes(record: ImageRecord) -> tuple[Any, ...]:
    """The codes ``record`` joins others by: its hash segments but those of a flat picture
    (:attr:`~lookalike.model.Hash.flat_codes`: no structure, so they join nothing); for a
    featureless hash (every segment flat: a blank or solid picture of any colour) its file
    digest, so that only byte-identical copies of it group, and it bridges no two
    pictures. Before, solid red, blue and black squares were one group,
    chained to a white page with a line of text 6 bits from them, and a flag whose trimmed
    content (one stripe) hashed flat joined a sky."""
    codes = record.hash.informative_segments
    if codes:
        return codes
    # Bytes, not pixels: decoded pixels are composited on white and first frames only, so
    # different white icons on transparency, or animations opening on a white frame, share
    # them.
    return (("bytes", record.digest),) if record.digest else ()


class _Graph:
    """The "within threshold" graph over records, kept collapsed.

    Identical codes form one node, keyed by the code itself; edges join codes within the
    threshold. A record may own several codes (flips and turns, crops). Most codes belong
    to one record and touch no edge (an invariant hash has ~15 codes per image, few of them
    shared), so only shared codes keep a list of owners and only codes in some pair keep
    neighbours. Against lists for every code: on 20k small images (296k codes) a neighbour
    query of every record (what a fast scan's confirmation asks) 0.06 s instead of 0.66 s,
    star grouping 0.13 s instead of 0.78 s; a warm re-scan -5% CPU on them (0.73 s against
    0.77 s) and -7% on the accuracy benchmark's 3,439 images (0.28 s against 0.30 s),
    medians of 9 and 15 interleaved runs. Nothing here is quadratic in the size of a group
    of identical hashes (100k blank images cost O(100k)).
    """

    def __init__(self, records: Sequence[ImageRecord], edges: Edges,
                 links: Iterable[tuple[int, int]] = ()) -> None:
        self.n = len(records)
        # Record pairs matched by another signal than their hashes (embeddings).
        self._extra: dict[int, list[int]] = defaultdict(list)
        for a, b in links:
            self._extra[a].append(b)
            self._extra[b].append(a)
        self._codes = [_graph_codes(r) for r in records]
        first: dict[int, int] = {}  # code -> its first (smallest) owner
        shared: dict[int, list[int]] = {}  # code -> its owners, for codes of 2+ records
        links_a: list[int] = []
        links_b: list[int] = []
        for i, codes in enumerate(self._codes):
            for v in codes:
                f = first.setdefault(v, i)
                if f != i:
                    owners = shared.setdefault(v, [f])
                    if owners[-1] != i:  # a record may repeat a code
                        owners.append(i)
                        links_a.append(f)
                        links_b.append(i)
        self._first, self._shared = first, shared
        self._links_ab = (links_a, links_b)
        # The edges' own tuples (no copies: a group of near-identical pictures has millions).
        self._pairs = [p for p in edges.pairs if p[0] in first and p[1] in first]
        self._adj: dict[int, list[int]] | None = None
        self._hot: set[int] | None = None

    def _owners(self, code: int) -> list[int]:
        return self._shared.get(code) or [self._first[code]]

    def _adjacency(self) -> dict[int, list[int]]:
        """Neighbouring codes of each code in some pair: built on first use."""
        if self._adj is None:
            adj: dict[int, list[int]] = defaultdict(list)
            for a, b in self._pairs:
                adj[a].append(b)
                adj[b].append(a)
            self._adj = dict(adj)
        return self._adj

    def _links(self) -> Iterator[tuple[int, int]]:
        """Record pairs whose union gives the components: each owner of a shared code with
        its first owner, the first owners of every pair of near codes, and the extra links
        (yielded, not listed: a pair per near code pair would double their memory)."""
        first = self._first
        yield from zip(*self._links_ab, strict=True)
        for ca, cb in self._pairs:
            fa, fb = first[ca], first[cb]
            if fa != fb:
                yield fa, fb
        for i, others in self._extra.items():
            for j in others:
                yield i, j

    def components(self) -> list[list[int]]:
        """Connected components of two or more records (records ascending in each, components
        by their first record). Only records with a link are visited: on a warm re-scan of
        20k mostly unique images that is a few thousand, not 20k."""
        parent: dict[int, int] = {}

        def find(x: int) -> int:
            root = x
            while parent.get(root, root) != root:
                root = parent[root]
            while x != root:  # path compression
                parent[x], x = root, parent[x]
            return root

        linked: set[int] = set()  # records, not pairs: small
        for u, v in self._links():
            linked.add(u)
            linked.add(v)
            ru, rv = find(u), find(v)
            if ru != rv:
                parent[max(ru, rv)] = min(ru, rv)
        comps: dict[int, list[int]] = defaultdict(list)
        for x in sorted(linked):
            comps[find(x)].append(x)
        return [c for c in comps.values() if len(c) > 1]

    def linked(self) -> KeysView[int]:
        """The records with a link (an embedding match)."""
        return self._extra.keys()

    def hash_component(self, start: int) -> set[int]:
        """The records that hash matches alone tie to ``start``, transitively. Each code is
        expanded once, so a thousand identical hashes cost a thousand steps, not a million."""
        adj = self._adjacency()
        part, todo, expanded = {start}, [start], set()
        while todo:
            for v in self._codes[todo.pop()]:
                if v in expanded:
                    continue
                expanded.add(v)
                for code in (v, *adj.get(v, ())):
                    for j in self._owners(code):
                        if j not in part:
                            part.add(j)
                            todo.append(j)
        return part

    def neighbours(self, i: int) -> set[int]:
        adj = self._adjacency()
        out: set[int] = set()
        for v in self._codes[i]:
            out.update(self._owners(v))
            for h in adj.get(v, ()):
                out.update(self._owners(h))
        out.update(self._extra.get(i, ()))
        out.discard(i)
        return out

    def has_neighbours(self, i: int) -> bool:
        if self._hot is None:  # the codes with another owner or a near code
            self._hot = self._shared.keys() | {c for pair in self._pairs for c in pair}
        return not self._hot.isdisjoint(self._codes[i]) or i in self._extra


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
    In each group the representative comes first (most pixels inside any flat bars, then
    without bars, then lossless, then largest file, then path),
    then members by distance and path. Records with the same file digest have the same
    hash, so exact duplicates always land in one group.

    Cost: one search of the distinct hash values (:func:`find_edges`) plus time linear
    in records and pairs between *distinct* hashes (identical hashes are never expanded).
    """
    recs = sorted(records, key=attrgetter("path"))
    return assemble_groups(recs, cluster_records(recs, max_distance, mode))


def cluster_records(recs: Sequence[ImageRecord], max_distance: int,
                    mode: GroupMode = "components", edges: Edges | None = None,
                    links: Iterable[tuple[int, int]] = ()) -> list[list[int]]:
    """The clusters :func:`build_groups` makes of ``recs`` (sorted by path), as lists of
    indices into ``recs``, the representative first: the search and graph part of grouping,
    which :func:`assemble_groups` turns into groups. ``edges``: :func:`record_edges` of
    ``recs`` at ``max_distance``, if known (a re-scan keeps the previous scan's).
    ``links``: more pairs of record indices that match (by their embeddings)."""
    if max_distance < 0:
        raise ValueError("max_distance must be >= 0")
    graph = _Graph(recs, edges or record_edges(recs, max_distance), links)
    if mode == "components":
        clusters = graph.components()

        def quality(i: int) -> tuple[int, bool, bool, int, str]:
            return _quality_key(recs[i], shown[i])

        # With embedding links the representative comes from the cluster's largest hash
        # part (the original and its re-encodes, usually; of equal parts the one holding the
        # best record, found first), not from a screenshot or padded copy with more pixels:
        # the keep policy chooses within the representative's part and keeps the members
        # embeddings joined (lookalike.grouping.keep).
        linked = graph.linked()
        # Where encoders smeared the bars' edge, as the keep policy takes it (a same-size
        # JPEG re-encode of a picture on a white ground shows a row more picture).
        shown = {i: size for c in clusters for i, size in smear_free(
            {i: (_shown(recs[i]), (recs[i].width, recs[i].height)) for i in c}).items()}
        reps = [min(max(_hash_parts(graph, sorted(c, key=quality)), key=len)
                    if not linked.isdisjoint(c) else c, key=quality) for c in clusters]
    elif mode == "star":
        clusters = _stars(recs, graph)
        reps = [c[0] for c in clusters]
    else:
        raise ValueError(f"unknown grouping mode {mode!r}; use 'components' or 'star'")
    return [[rep, *(i for i in c if i != rep)] for c, rep in zip(clusters, reps, strict=True)]


def _hash_parts(graph: _Graph, cluster: Sequence[int]) -> Iterator[set[int]]:
    """The parts of ``cluster`` that hash matches alone tie together, each found from its
    first record in ``cluster``'s order."""
    members = set(cluster)
    seen: set[int] = set()
    for start in cluster:
        if start not in seen:
            part = graph.hash_component(start) & members
            seen |= part
            yield part


def link_matches(recs: Sequence[ImageRecord], clusters: Sequence[Sequence[int]],
                 edges: Edges, links: Mapping[tuple[int, int], str]) -> dict[int, str]:
    """How the members of ``clusters`` came into their group, when links joined it:
    ``links`` maps record pairs (i < j) matched by embeddings to ``embedding`` or
    ``verified``, and those the verified hash band joined to ``aligned``. The members that
    hash matches tie to the representative are ``hash`` matches (left out of the result);
    every other member gets the kind of the links of its part of the group (the members
    hashes tie it to): ``embedding`` if any of them is one, else ``verified``, else
    ``aligned`` (:data:`~lookalike.model.MATCH_KINDS`)."""
    if not links:
        return {}
    graph = _Graph(recs, edges)
    touching: dict[int, set[str]] = defaultdict(set)
    for (a, b), kind in links.items():
        touching[a].add(kind)
        touching[b].add(kind)
    out: dict[int, str] = {}
    for cluster in clusters:
        if touching.keys().isdisjoint(cluster):
            continue  # hashes alone made this group
        for part in _hash_parts(graph, cluster):
            if cluster[0] in part:
                continue
            kinds = set().union(*(touching.get(i, set()) for i in part))
            # The least certain way in names the part.
            way = next((k for k in ("embedding", "verified", "aligned") if k in kinds),
                       None)
            if way is not None:
                out.update((i, way) for i in part)
    return out


def assemble_groups(recs: Sequence[ImageRecord], clusters: Sequence[Sequence[int]],
                    matches: Mapping[int, str] | None = None) -> list[Group]:
    """Groups from :func:`cluster_records` output: members ordered, numbered, typed.
    ``matches``: :func:`link_matches` (members not in it are ``hash`` matches). Members
    carry their cosine similarity to the representative when records have embeddings."""
    matches = matches or {}
    built = []
    for cluster in clusters:
        rep = cluster[0]
        rep_hash = recs[rep].hash
        sims = _similarities(recs, rep, cluster)
        members = sorted(
            (Member(recs[i], 0 if i == rep else rep_hash - recs[i].hash,
                    matches.get(i, "hash"), sims.get(i)) for i in cluster),
            key=lambda m: (m.record.path != recs[rep].path, m.distance, m.record.path),
        )
        built.append((members, recs[rep].path))
    built.sort(key=lambda item: (-len(item[0]), min(m.record.path for m in item[0])))
    return [
        Group(id=k, members=tuple(members), representative=rep, kind=group_kind(members))
        for k, (members, rep) in enumerate(built, start=1)
    ]


def _similarities(recs: Sequence[ImageRecord], rep: int, cluster: Sequence[int]
                  ) -> dict[int, float]:
    """Cosine similarity of each member's embedding to the representative's (rounded to
    3 places: embeddings are kept as float16); empty when the records have none."""
    if recs[rep].embedding is None or any(recs[i].embedding is None for i in cluster):
        return {}
    from lookalike.model import embedding_array

    vectors = embedding_array([recs[i] for i in cluster])
    sims = vectors @ vectors[0]
    return {i: round(float(s), 3) for i, s in zip(cluster, sims.tolist(), strict=True)}


def group_kind(members: Sequence[Member]) -> str:
    """``"exact"`` when every member has the same file digest or the same pixel digest
    (known, not empty), else ``"near"``: the one definition of a group's kind."""
    for attr in ("digest", "pixel_digest"):
        values = {getattr(m.record, attr) for m in members}
        if len(values) == 1 and None not in values and "" not in values:
            return "exact"
    return "near"
