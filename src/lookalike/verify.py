"""The embedding stage of a scan: which pairs copy-detection embeddings join, verified.

Embeddings (:mod:`lookalike.imaging.embed`, computed by the workers) propose pairs
(:func:`lookalike.grouping.embedded.embedding_links`); each pair that would join two hash
groups is verified by aligning the two pictures (:mod:`lookalike.imaging.align`), which
reads and decodes their files once more, on threads of the driver (OpenCV and the decoders
release the GIL). A file that cannot be read again stays unverified: nothing joins on it.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from lookalike.config import BAND_MIN_SIDE, ScanConfig
from lookalike.errors import Problem
from lookalike.grouping.edges import Edges
from lookalike.grouping.embedded import TRIES, embedding_links, to_verify
from lookalike.grouping.groups import cluster_records
from lookalike.inputs.walk import FileEntry
from lookalike.model import Group, Hash, ImageRecord

if TYPE_CHECKING:
    from lookalike.store.cache import HashCache

__all__ = ["band_matches", "band_records", "check_ready", "embedding_matches", "hash_parts",
           "holding", "verify_pairs"]


def check_ready(config: ScanConfig) -> None:
    """Raise :class:`~lookalike.errors.ConfigError` now, before any work, if the embedding
    stage could not run: the model, ONNX Runtime, FAISS and (to verify) OpenCV."""
    from lookalike.config import import_extra
    from lookalike.worker import embedder_for

    if config.embed is None:
        return
    # The packages first, the model (named in the embedder) last: a user without the extra
    # is told to install it before being told to install the models.
    import_extra("faiss", "searching embeddings", "embed")
    if config.verify:
        import_extra("cv2", "verifying embedding matches", "embed")
    embedder_for(config)


def embedding_matches(records: Sequence[ImageRecord], items: Sequence[Any],
                      config: ScanConfig, near: Edges, options: Mapping[str, Any],
                      cache: HashCache | None = None, fresh: Collection[str] = ()
                      ) -> tuple[dict[tuple[int, int], str], dict[tuple[int, int], float],
                                 dict[str, int]]:
    """With ``config.embed``, the record pairs (i < j) that embeddings join, and
    how (``verified``, or ``embedding`` when ``config.verify`` is off); also every pair the
    embeddings proposed, with its similarity, and stats.

    Verification (:mod:`lookalike.imaging.align`) reads and decodes the files of the pairs
    it tries once more, on the driver: only pairs joining two different hash groups, the
    best :data:`~lookalike.grouping.embedded.TRIES` of each (:func:`to_verify`). Verdicts
    are kept in the hash ``cache`` for the two files' versions, so a re-scan reads again only
    the files of pairs it has not judged; a stored verdict is not used for a file in
    ``fresh`` (read again by this scan: it may hold new bytes under its old size and
    mtime)."""
    if config.embed is None:
        return {}, {}, {}
    proposed = embedding_links(records, config.resolved_similarity)
    embedded = sum(r.embedding is not None for r in records)
    stats = {"embedded": embedded, "embed_failed": len(records) - embedded,
             "embedding_pairs": len(proposed)}
    if not config.verify:
        return dict.fromkeys(proposed, "embedding"), proposed, stats
    part_of = hash_parts(records, config, near)
    work = to_verify(proposed, part_of)
    links, verify_stats = _verify_joins(records, items, config, options, cache, fresh, work,
                                        part_of, kind="verified")
    stats.update(verify_stats)
    return links, proposed, stats


def hash_parts(records: Sequence[ImageRecord], config: ScanConfig, near: Edges,
               links: Iterable[tuple[int, int]] = ()) -> list[int]:
    """Each record's part: the number of its hash group (components of ``near`` and
    ``links``), or its own index when it has none."""
    n = len(records)
    part_of = list(range(n))
    for k, cluster in enumerate(cluster_records(records, config.resolved_threshold,
                                                "components", near, links)):
        for i in cluster:
            part_of[i] = n + k
    return part_of


def band_records(records: Sequence[ImageRecord]) -> list[int]:
    """The records the verified band tries (:attr:`~lookalike.config.ScanConfig.band`):
    pictures with a short side of at least :data:`~lookalike.config.BAND_MIN_SIDE` whose
    hash is not featureless (blank pictures join by their bytes only)."""
    return [k for k, r in enumerate(records)
            if min(r.width, r.height) >= BAND_MIN_SIDE and not r.hash.featureless]


def band_matches(records: Sequence[ImageRecord], items: Sequence[Any], config: ScanConfig,
                 near: Edges, tried: Sequence[int], band: Edges,
                 links: Mapping[tuple[int, int], str],
                 options: Mapping[str, Any], cache: HashCache | None = None,
                 fresh: Collection[str] = ()) -> tuple[dict[tuple[int, int], str],
                                                       dict[str, int]]:
    """The verified band: the record pairs (i < j) whose hashes differ by more than the
    threshold and at most ``config.band`` bits, that would join two groups (of ``near``'s
    hash matches and ``links``, the embedding stage's), and that aligning the two pictures
    confirms are one picture; each ``aligned``. ``tried``: :func:`band_records`;
    ``band``: the edges at ``config.band`` among their codes.

    Tried as embedding matches are (:func:`embedding_matches`: closest first, at most
    :data:`~lookalike.grouping.embedded.TRIES` pairs between two groups, verdicts cached).
    Both pictures have a short side of at least
    :data:`~lookalike.config.BAND_MIN_SIDE`: never a pair of small pictures, whose joins
    must also agree across their groups' members (:meth:`_Features.parts_agree`; asked of
    a band pair, a thumbnail of the original refused its brightened copy).

    Measured on benchmarks/accuracy (3,679 images, ``--band 20``): 221 pairs verified, true
    pairs 13,340 -> 14,672, false 7 -> 12; brightness +30% found 76% -> 97.5% (the tests:
    :meth:`_Features.same_picture`)."""
    threshold = config.resolved_threshold
    owners: dict[int, list[int]] = defaultdict(list)
    for k in tried:
        for value in records[k].hash.segments:
            # Records that share a value are in one hash group already: a few of them are
            # all the tries a pair of groups can use.
            if len(owners[value]) < TRIES:
                owners[value].append(k)
    closest: dict[tuple[int, int], int] = {}
    for a, b in band.pairs:
        bits = (a ^ b).bit_count()
        if bits <= threshold or a not in owners or b not in owners:
            continue
        for i in owners[a]:
            for j in owners[b]:
                if i != j:
                    pair = (i, j) if i < j else (j, i)
                    if bits < closest.get(pair, bits + 1):
                        closest[pair] = bits
    part_of = hash_parts(records, config, near, links)
    # Closest first: to_verify takes the most similar, so similarity is minus the bits.
    work = to_verify({pair: -bits for pair, bits in closest.items()}, part_of)
    joined, stats = _verify_joins(records, items, config, options, cache, fresh, work,
                                  part_of, kind="aligned")
    return joined, {"band_pairs": len(closest), "band_tried": stats["verify_tried"],
                    "band_joined": len(joined), "band_read": stats["verify_read"],
                    "band_cached": stats["verify_cached"]}


def _verify_joins(records: Sequence[ImageRecord], items: Sequence[Any], config: ScanConfig,
                  options: Mapping[str, Any], cache: HashCache | None,
                  fresh: Collection[str], work: list[list[tuple[int, int]]],
                  part_of: Sequence[int], kind: str
                  ) -> tuple[dict[tuple[int, int], str], dict[str, int]]:
    """For each list of candidate pairs between two parts (:func:`to_verify`), the first
    pair that verification accepts, as a link of ``kind``. A pair of small pictures joins
    only when the two parts' small members are one picture by their thumbnails too
    (:meth:`_Features.parts_agree`). Verdicts come from and go to the hash ``cache`` (not
    for files in ``fresh``: read again by this scan)."""
    by_path = {e.path: e for e in items}
    band = kind == "aligned"
    features = _Features(records, by_path, config, options, band=band)
    # The band's verdicts depend on its own tests too (embedding verdicts do not).
    from lookalike.imaging.align import LEVEL

    rule = f"aligned-pdq{BAND_PDQ}-signs{LEVEL}-unaligned-nostrips" if band else "verified"
    known = (cache.load_verdicts(config, [(records[i], records[j]) for c in work for i, j in c
                                          if records[i].path not in fresh
                                          and records[j].path not in fresh], rule)
             if cache is not None else {})
    judged: dict[tuple[int, int], bool] = {}

    def verdict(i: int, j: int) -> bool:
        ok = known.get((records[i].path, records[j].path))
        if ok is None:
            ok = features.same_picture(i, j)
            if ok is None:  # a file could not be read now: judged next time
                return False
            judged[(i, j)] = ok
        return ok

    members: dict[int, list[int]] = defaultdict(list)
    for i, part in enumerate(part_of):
        members[part].append(i)

    def unjudged(candidates: list[tuple[int, int]]) -> set[int]:
        return {i for a, b in candidates if (records[a].path, records[b].path) not in known
                for i in (a, b)}

    def first_verified(candidates: list[tuple[int, int]]) -> tuple[tuple[int, int] | None, int]:
        try:
            for tried, (i, j) in enumerate(candidates, start=1):
                if verdict(i, j):
                    if _small(records[i], records[j]) and not features.parts_agree(
                            members[part_of[i]], members[part_of[j]]):
                        return None, tried
                    return (i, j), tried
            return None, len(candidates)
        finally:
            features.done(uses(candidates))

    def uses(candidates: list[tuple[int, int]]) -> set[int]:
        # What judging the list may read: its unjudged pairs, and with a pair of small
        # pictures the members parts_agree compares.
        out = unjudged(candidates)
        if any(_small(records[i], records[j]) for i, j in candidates):
            i, j = candidates[0]
            out.update(members[part_of[i]][:PART_CHECK], members[part_of[j]][:PART_CHECK])
        return out

    features.expect(i for candidates in work for i in uses(candidates))

    # OpenCV and the decoders release the GIL: threads verify in parallel (one result per
    # candidate list, in order, so the outcome does not depend on timing). Pictures that
    # are not local files are read a window of work at a time, each window in one pass.
    outcomes: list[tuple[tuple[int, int] | None, int]] = []
    with ThreadPoolExecutor(config.resolved_workers) as pool:
        for window, needed in features.windows(work, unjudged):
            features.prefetch(needed)
            outcomes += pool.map(first_verified, window)
            features.fetched.clear()
    if cache is not None and judged:
        cache.save_verdicts(config, [(records[i], records[j], ok)
                                     for (i, j), ok in judged.items()], rule)
    links = {pair: kind for pair, _ in outcomes if pair is not None}
    return links, {"verify_tried": sum(tried for _, tried in outcomes),
                   "verified": len(links), "verify_read": features.reads,
                   "verify_cached": len(known)}


def verify_pairs(records: Sequence[ImageRecord], pairs: Sequence[tuple[int, int]],
                 config: ScanConfig, *, band: bool = False) -> list[bool]:
    """Whether each pair of indices into ``records`` (local files) passes verification
    (:func:`lookalike.imaging.align.aligned_distance`; with ``band``, the verified band's
    test, :meth:`_Features.same_picture`), reading each file once, on threads."""
    features = _Features(records, {}, config, {}, band=band)
    with ThreadPoolExecutor(config.resolved_workers) as pool:
        return [bool(ok) for ok in pool.map(lambda pair: features.same_picture(*pair), pairs)]


def holding(records: Sequence[ImageRecord], proposed: Mapping[tuple[int, int], float],
            links: Mapping[tuple[int, int], str], groups: Sequence[Group],
            config: ScanConfig) -> dict[tuple[str, str], tuple[str, float | None]]:
    """:attr:`lookalike.pipeline.ScanResult.embedding_matches`: the pairs links joined
    (``links``: indices into ``records``; by embeddings, verified or, unverified, all
    proposed, with their similarity; by the verified band, ``aligned``, with none) whose
    two files ended in one group."""
    group_of = {m.record.path: g.id for g in groups for m in g.members}
    out = {}
    for (i, j), kind in links.items():
        a, b = records[i].path, records[j].path
        if group_of.get(a) is not None and group_of.get(a) == group_of.get(b):
            out[(a, b) if a < b else (b, a)] = (kind, proposed.get((i, j)))
    return out


#: Members of each hash group compared when a join through small pictures is checked.
PART_CHECK = 16
#: Verification features held at once (each ~0.3 MB), besides those no candidate list to
#: come needs, which are let go at once (:meth:`_Features.done`). Work comes a pair of groups
#: at a time, so the pictures of one pair of groups are used together; holding every picture
#: read grew a scan of the accuracy benchmark's 3,679 images by 80 MB (286 pictures), a
#: million photos by ~20 GB. That benchmark with ``--embed sscd-distilled`` (2,923 pictures
#: to verify): 256 held least recently used first, 4,616 reads, cold scan 50.0 s wall and
#: 94.9 CPU s; 512 held, let go when no list needs them, 3,110 reads, 47.5 s and 90.3 CPU s
#: (medians of 3 interleaved runs; peak memory 355 -> 361 MB). Reads beyond the 2,923: a
#: picture let go while more than 512 were still needed, or read by two threads at once.
HELD = 512
#: Pictures that are not local files (URLs, tar members, Parquet cells) read ahead at once,
#: encoded (:meth:`_Features.prefetch`): ~100 KB a small photo, several MB a camera JPEG.
FETCHED = 256
#: Most bits of PDQ's 256 two pictures of a band pair may differ by for the second hash to
#: confirm them (:meth:`_Features.same_picture`). Measured on benchmarks/accuracy's band
#: pairs that would join two groups (1,764), simulated joins: alignment alone, 14,526 true
#: pairs and 10 false; with PDQ <= 4, 14,832 and 11 (brightness +30% found 87.5% -> 90%,
#: contrast 93.8% -> 97.5%, gamma 92.5% -> 96.3%); <= 8, 14,885 and 12; PDQ of all eight
#: turns and flips at <= 10 reached brightness 96.3% with 15 false pairs (precision 0.99900:
#: too close to the line). PDQ's own default threshold is 31. The order of cells
#: (imaging.align.signs_agree) then took brightness to 97.5% with 12 false pairs (a whole
#: scan, README).
BAND_PDQ = 4


def _small(a: ImageRecord, b: ImageRecord) -> bool:
    """Whether two images are compared by thumbnails (``align.small_pair``)."""
    from lookalike.imaging.align import small_pair

    return small_pair(max(a.width, a.height), max(b.width, b.height))


class _Features:
    """Verification features (:func:`lookalike.imaging.align.features`) of records, each
    read and decoded once; None for a file that cannot be read now (it stays unverified)."""

    def __init__(self, records: Sequence[ImageRecord], by_path: Mapping[str, Any],
                 config: ScanConfig, options: Mapping[str, Any],
                 band: bool = False) -> None:
        self.records, self.by_path, self.config, self.options = records, by_path, config, options
        #: Judged by the verified band's tests (:meth:`same_picture`): each picture read
        #: also gets its PDQ hash, here.
        self.band = band
        self.second: dict[int, Hash] = {}
        self.held: OrderedDict[int, Any] = OrderedDict()  # the least recently used first out
        self.reads = 0  # files read and decoded (again, if they had to be let go)
        self.left: Counter[int] = Counter()  # candidate lists yet to come that need each
        self._lock = threading.Lock()
        self.fetched: dict[str, bytes] = {}  # bytes of items that are not local files

    def remote(self, i: int) -> Any:
        """Record ``i``'s item when it is not a local file (a RemoteEntry), else None."""
        from lookalike.inputs.remote import RemoteEntry

        entry = self.by_path.get(self.records[i].path)
        return entry if isinstance(entry, RemoteEntry) else None

    def windows(self, work: list[list[tuple[int, int]]],
                records_of: Callable[[list[tuple[int, int]]], set[int]]
                ) -> Iterator[tuple[list[list[tuple[int, int]]], set[int]]]:
        """``work`` in consecutive windows whose pictures that are not local files (among
        ``records_of`` each candidate list) number at most :data:`FETCHED`, what
        :meth:`prefetch` holds at once; each with the records its lists need."""
        window: list[list[tuple[int, int]]] = []
        needed: set[int] = set()
        held: set[int] = set()
        for candidates in work:
            wanted = records_of(candidates)
            new = {i for i in wanted if self.remote(i) is not None} - held
            if window and len(held) + len(new) > FETCHED:
                yield window, needed
                window, needed, held = [], set(), set()
            window.append(candidates)
            needed |= wanted
            held |= new
        if window:
            yield window, needed

    def expect(self, indices: Iterable[int]) -> None:
        """Count the candidate lists to come that need each of ``indices`` (one per list);
        :meth:`done` counts them down."""
        self.left.update(indices)

    def done(self, indices: Iterable[int]) -> None:
        """A candidate list that needed ``indices`` is judged: a picture no list to come
        needs is let go now, not when it is the least recently used (the work is known
        ahead, so the pictures held are the ones still to be used)."""
        with self._lock:
            for i in indices:
                self.left[i] -= 1
                if self.left[i] <= 0:
                    self.held.pop(i, None)

    def prefetch(self, indices: Iterable[int]) -> None:
        """Read the bytes of the records among ``indices`` that are not local files (URLs,
        tar members, Parquet cells) in one pass, in storage order, and hold them (encoded,
        ~100 KB an image) until their features are made: one at a time, a Parquet cell cost
        the read of its whole row group (a scan of 320 photos in row groups of 50: 4.4 s of
        system time for 103 pictures verified)."""
        from lookalike.inputs.remote import RemoteReader

        entries = sorted((e for i in set(indices)
                          if (e := self.remote(i)) is not None and e.path not in self.fetched
                          and i not in self.held),
                         key=lambda e: (e.url, e.column, e.row, e.offset, e.path))
        for entry, data in RemoteReader(self.options).read(entries):
            if not isinstance(data, Problem):
                self.fetched[entry.path] = data

    def same_picture(self, i: int, j: int) -> bool | None:
        """Whether records ``i`` and ``j`` are one picture; None when either file cannot
        be read now (no verdict). Small pictures: by their thumbnails. Else aligned, their
        dhash-z alike (an embedding match's, over the shared rectangle or it without one
        side's strip; the band's, over the whole rectangle). The verified band (``band``)
        first asks its second hash, the two pictures' PDQ hashes (as they stand, borders
        trimmed) within :data:`BAND_PDQ` bits, and last, aligned, whether every order of
        neighbouring cells is the same where neither is clipped
        (:func:`~lookalike.imaging.align.signs_agree`): a brightened photo's clipped
        highlights change the dhash-z bits alignment compares. Band pictures that no
        transform aligns because one is too blurred or flat for keypoints are compared
        unaligned, by the order of their cells alone, when their shapes and colours agree
        (:func:`~lookalike.imaging.align.as_they_stand`: on the accuracy benchmark a
        motion-blurred photo's JPEG q30 and WebP q40 copies, 14,484 -> 14,517 true pairs,
        no false one)."""
        from lookalike.imaging.align import (
            MAX_DISTANCE,
            align,
            as_they_stand,
            same_small_picture,
            shared_distance,
            signs_agree,
        )

        a, b = self.get(i), self.get(j)
        if a is None or b is None:
            return None
        if self.band:
            pa, pb = self.second.get(i), self.second.get(j)
            # Only hashes with structure: a sliver's grey picture (a 128 x 20000 strip is
            # 3 px tall at 512) hashes to PDQ's blank code, alike for any two such pictures.
            if (pa is not None and pb is not None and pa.informative_segments
                    and pb.informative_segments and pa - pb <= BAND_PDQ):
                return True
        small = same_small_picture(a, b)
        if small is not None:
            return small
        shared = align(a, b)
        if shared is not None:
            return (shared_distance(*shared, strips=not self.band) <= MAX_DISTANCE
                    or (self.band and signs_agree(*shared)))
        # Unaligned, their whole-picture hashes differ by the band's own bits again: only the
        # order of their cells can tell (a review's out-of-focus scene with and without a
        # person, 8 bits apart, joined on that distance).
        unaligned = as_they_stand(a, b) if self.band else None
        return unaligned is not None and signs_agree(*unaligned)

    def parts_agree(self, one: Sequence[int], other: Sequence[int]) -> bool:
        """Whether every pair across the two hash groups whose smaller picture is small
        (:func:`_small`) is one picture by its thumbnails: a join through small pictures
        must not chain groups that a false hash match made (two flags of three vertical
        stripes hash alike in grey), so the first :data:`PART_CHECK` members of each side
        are compared with each other."""
        from lookalike.imaging.align import same_small_picture

        for a in one[:PART_CHECK]:
            for b in other[:PART_CHECK]:
                if not _small(self.records[a], self.records[b]):
                    continue
                fa, fb = self.get(a), self.get(b)
                if fa is None or fb is None or same_small_picture(fa, fb) is False:
                    return False
        return True

    def get(self, i: int) -> Any:
        """Record ``i``'s features: kept for the next pairs that need them, at most
        :data:`HELD` at once (each holds a picture of :data:`~lookalike.imaging.align.SIDE`
        pixels: ~0.3 MB)."""
        with self._lock:
            if i in self.held:
                self.held.move_to_end(i)
                return self.held[i]
        found = self._load(i)
        with self._lock:
            self.reads += 1
            self.held[i] = found
            while len(self.held) > HELD:
                self.held.popitem(last=False)
        return found

    def _load(self, i: int) -> Any:
        from lookalike.errors import DecodeError
        from lookalike.imaging.align import features
        from lookalike.imaging.decode import decode_bytes
        from lookalike.inputs.read import Refused, max_file_bytes, read_regular

        record = self.records[i]
        entry = self.by_path.get(record.path)
        data: bytes | Problem
        try:
            if entry is None or type(entry) is FileEntry:
                data, st = read_regular(record.path, max_file_bytes(self.config.max_pixels))
                if (st.st_size, st.st_mtime_ns) != (record.size_bytes, record.mtime_ns):
                    return None  # not the file that was hashed: left unverified
            else:
                from lookalike.inputs.remote import RemoteReader

                data = self.fetched.pop(record.path, None) or next(iter(
                    RemoteReader(self.options).read([entry])))[1]
                if isinstance(data, Problem):
                    return None
            pic, _, _ = decode_bytes(data, mode="fast", max_pixels=self.config.max_pixels)
            found = features(pic)
            if self.band and i not in self.second:
                from PIL import Image

                from lookalike.imaging.decode import Picture
                from lookalike.imaging.hashes import get_method

                # In the picture's own orientation: a band pair that needs a turn to match
                # still has alignment (any rotation), and all eight cost four times as much
                # (30.8 s against 8.2 s for the 1,085 pictures of the measurement below). From
                # the grey picture alignment uses (longer side 512): the whole picture cost
                # the accuracy scan 34.7 CPU s instead of 32.1 (27.7 without the band).
                second = get_method("pdq").hash(Picture(Image.fromarray(found.grey)), None,
                                                "none", True)
                with self._lock:
                    self.second[i] = second
            return found
        except (OSError, Refused, DecodeError):
            return None  # gone or changed since it was hashed: left unverified
