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

import os
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Literal

from lookalike.errors import LookalikeError
from lookalike.model import Group, ImageRecord, Member

# NumPy and the index load only where a search runs: a re-scan of an unchanged tree reuses
# the previous scan's edges (find_edges) and never imports NumPy (~0.12 s, a fifth of such
# a scan).

__all__ = ["Edges", "GroupMode", "assemble_groups", "build_groups", "cluster_records",
           "find_edges", "fingerprint", "group_kind", "link_matches", "near_pairs",
           "neighbour_mask", "record_edges", "segment_rows"]

GroupMode = Literal["components", "star"]


def _quality_key(rec: ImageRecord) -> tuple[int, int, str]:
    # The copy a user most likely wants to keep comes first: most pixels, then largest file.
    return (-rec.pixels, -rec.size_bytes, rec.path)


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
        width = 8 * ((nbits + 63) // 64)
        positions = array("I")
        if len(packed) % width or len(index) % (2 * positions.itemsize):
            raise ValueError("stored edges of the wrong length")
        positions.frombytes(index)
        if positions and max(positions) >= len(packed) // width:
            raise ValueError("stored edges out of range")
        return cls(nbits, radius, packed, positions, fingerprint)

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
    codes were only removed; then nothing is searched (and NumPy is not imported). Any new
    code means one self-join of all of them, whose input reuses ``known``'s packed codes.
    (Querying only the new codes against an index of the others,
    :class:`~lookalike.search.mih.HammingIndex`, was measured and dropped: at 1% new codes
    it cost the same as the self-join, 0.37 s against 0.38 s for 150k 256-bit codes at
    radius 26, and at 5% three times as much; the reverse, an index of the new codes
    probed with every other code on exact blocks, found 1.4M candidates for 3,000 new codes
    among 296k at radius 6, 1.1 s against 0.2 s: codes of real pictures share blocks.)
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
    """Every pair of ``codes`` within ``radius`` bits (a self-join): ``known``'s codes that
    remain keep their place and packed rows, the others follow."""
    import numpy as np

    from lookalike.search import find_pairs, pack_hashes

    if known is None:
        # Ascending: what is stored (and the pairs' order) depends on the values only, not
        # on the order the set was built in.
        order = tuple(sorted(codes))
        rows = pack_hashes(order, nbits)
    else:
        added = tuple(codes.difference(known.codes))  # not empty here
        new_rows = pack_hashes(added, nbits)
        old = np.frombuffer(known.packed, dtype=">u8").reshape(-1, new_rows.shape[1])
        kept = known.order
        if not known.codes <= codes:
            keep = np.fromiter((c in codes for c in kept), dtype=bool, count=len(kept))
            kept, old = tuple(c for c in kept if c in codes), old[keep]
        order = kept + added
        rows = np.concatenate([old.astype(np.uint64), new_rows])
    index = array("I")
    if len(order) > 1:
        _check_pairs_fit(rows, radius)
        ii, jj, _ = find_pairs(rows, radius)
        index.frombytes(np.column_stack((ii, jj)).astype(np.uint32).tobytes())
    return Edges.of(nbits, radius, order, rows.astype(">u8").tobytes(), index, codes, print_)


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
        raise LookalikeError(
            f"a threshold of {radius} bits pairs about {share:.1%} of these {n:,} hash values "
            f"with each other: ~{pairs:,.0f} pairs, ~{pairs * BYTES_PER_PAIR / 1e9:,.0f} GB, "
            f"more than half this machine's memory ({memory / 1e9:,.0f} GB); lower the "
            "threshold (with the hash cache, a scan at another threshold hashes nothing "
            "again)")


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

    def linked(self) -> Iterable[int]:
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

        def quality(i: int) -> tuple[int, int, str]:
            return _quality_key(recs[i])

        # With embedding links the representative comes from the cluster's largest hash
        # part (the original and its re-encodes, usually; of equal parts the one holding the
        # best record, found first), not from a screenshot or padded copy with more pixels:
        # the keep policy chooses within the representative's part and keeps the members
        # embeddings joined (lookalike.grouping.keep).
        linked = graph.linked()
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
    """How the members of ``clusters`` came into their group, when embeddings joined it:
    ``links`` maps record pairs (i < j) matched by embeddings to ``embedding`` or
    ``verified``. The members that hash matches tie to the representative are ``hash``
    matches (left out of the result); every other member gets the kind of the embedding
    links of its part of the group (the members hashes tie it to): ``embedding`` if any of
    them is one, else ``verified`` (:data:`~lookalike.model.MATCH_KINDS`)."""
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
            out.update((i, "embedding" if "embedding" in kinds else "verified") for i in part)
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
