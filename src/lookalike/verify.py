"""The embedding stage of a scan: which pairs copy-detection embeddings join, verified.

Embeddings (:mod:`lookalike.imaging.embed`, computed by the workers) propose pairs
(:func:`lookalike.grouping.embedded.embedding_links`); each pair that would join two hash
groups is verified by aligning the two pictures (:mod:`lookalike.imaging.align`), which
reads and decodes their files once more, on threads of the driver (OpenCV and the decoders
release the GIL). A file that cannot be read again stays unverified: nothing joins on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from lookalike.config import ScanConfig
from lookalike.errors import Problem
from lookalike.grouping.edges import Edges
from lookalike.grouping.embedded import embedding_links, to_verify
from lookalike.grouping.groups import cluster_records
from lookalike.inputs.walk import FileEntry
from lookalike.model import Group, ImageRecord

if TYPE_CHECKING:
    from lookalike.store.cache import HashCache

__all__ = ["check_ready", "embedding_matches", "holding", "verify_pairs"]


def check_ready(config: ScanConfig) -> None:
    """Raise :class:`~lookalike.errors.ConfigError` now, before any work, if the embedding
    stage could not run: the model, ONNX Runtime, FAISS and (to verify) OpenCV."""
    from lookalike.config import import_extra
    from lookalike.worker import embedder_for

    if config.embed is None:
        return
    embedder_for(config)
    import_extra("faiss", "searching embeddings", "embed")
    if config.verify:
        import_extra("cv2", "verifying embedding matches", "embed")


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
    n = len(records)
    part_of = list(range(n))
    for k, cluster in enumerate(cluster_records(records, config.resolved_threshold,
                                                "components", near)):
        for i in cluster:
            part_of[i] = n + k
    by_path = {e.path: e for e in items}
    features = _Features(records, by_path, config, options)
    work = to_verify(proposed, part_of)
    known = (cache.load_verdicts(config, [(records[i], records[j]) for c in work for i, j in c
                                          if records[i].path not in fresh
                                          and records[j].path not in fresh])
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

    def first_verified(candidates: list[tuple[int, int]]) -> tuple[tuple[int, int] | None, int]:
        for tried, (i, j) in enumerate(candidates, start=1):
            if verdict(i, j):
                if _small(records[i], records[j]) and not features.parts_agree(
                        members[part_of[i]], members[part_of[j]]):
                    return None, tried
                return (i, j), tried
        return None, len(candidates)

    # OpenCV and the decoders release the GIL: threads verify in parallel (one result per
    # candidate list, in order, so the outcome does not depend on timing).
    with ThreadPoolExecutor(config.resolved_workers) as pool:
        outcomes = list(pool.map(first_verified, work))
    if cache is not None and judged:
        cache.save_verdicts(config, [(records[i], records[j], ok)
                                     for (i, j), ok in judged.items()])
    links = {pair: "verified" for pair, _ in outcomes if pair is not None}
    stats.update(verify_tried=sum(tried for _, tried in outcomes), verified=len(links),
                 verify_read=len(features.done), verify_cached=len(known))
    return links, proposed, stats


def verify_pairs(records: Sequence[ImageRecord], pairs: Sequence[tuple[int, int]],
                 config: ScanConfig) -> list[bool]:
    """Whether each pair of indices into ``records`` (local files) passes verification
    (:func:`lookalike.imaging.align.aligned_distance`), reading each file once, on threads."""
    features = _Features(records, {}, config, {})
    with ThreadPoolExecutor(config.resolved_workers) as pool:
        return [bool(ok) for ok in pool.map(lambda pair: features.same_picture(*pair), pairs)]


def holding(records: Sequence[ImageRecord], proposed: Mapping[tuple[int, int], float],
             links: Mapping[tuple[int, int], str], groups: Sequence[Group],
             config: ScanConfig) -> dict[tuple[str, str], tuple[str, float]]:
    """:attr:`lookalike.pipeline.ScanResult.embedding_matches`: the pairs embeddings joined
    (``links``: indices into ``records``, verified or, unverified, all proposed) whose two
    files ended in one group, with their similarity."""
    group_of = {m.record.path: g.id for g in groups for m in g.members}
    out = {}
    for (i, j), kind in links.items():
        a, b = records[i].path, records[j].path
        if group_of.get(a) is not None and group_of.get(a) == group_of.get(b):
            out[(a, b) if a < b else (b, a)] = (kind, proposed[(i, j)])
    return out


#: Members of each hash group compared when a join through small pictures is checked.
PART_CHECK = 16


def _small(a: ImageRecord, b: ImageRecord) -> bool:
    """Whether two images are compared by thumbnails (``align.small_pair``)."""
    from lookalike.imaging.align import small_pair

    return small_pair(max(a.width, a.height), max(b.width, b.height))


class _Features:
    """Verification features (:func:`lookalike.imaging.align.features`) of records, each
    read and decoded once; None for a file that cannot be read now (it stays unverified)."""

    def __init__(self, records: Sequence[ImageRecord], by_path: Mapping[str, Any],
                 config: ScanConfig, options: Mapping[str, Any]) -> None:
        self.records, self.by_path, self.config, self.options = records, by_path, config, options
        self.done: dict[int, Any] = {}

    def same_picture(self, i: int, j: int) -> bool | None:
        """Whether records ``i`` and ``j``, aligned, hash alike; None when either file
        cannot be read now (no verdict)."""
        from lookalike.imaging.align import MAX_DISTANCE, aligned_distance, same_small_picture

        a, b = self.get(i), self.get(j)
        if a is None or b is None:
            return None
        small = same_small_picture(a, b)
        if small is not None:
            return small
        distance = aligned_distance(a, b)
        return distance is not None and distance <= MAX_DISTANCE

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
        if i not in self.done:
            self.done[i] = self._load(self.records[i])
        return self.done[i]

    def _load(self, record: ImageRecord) -> Any:
        from lookalike.errors import DecodeError
        from lookalike.imaging.align import features
        from lookalike.imaging.decode import decode_bytes
        from lookalike.inputs.read import Refused, max_file_bytes, read_regular

        entry = self.by_path.get(record.path)
        data: bytes | Problem
        try:
            if entry is None or type(entry) is FileEntry:
                data, st = read_regular(record.path, max_file_bytes(self.config.max_pixels))
                if (st.st_size, st.st_mtime_ns) != (record.size_bytes, record.mtime_ns):
                    return None  # not the file that was hashed: left unverified
            else:
                from lookalike.inputs.remote import RemoteReader

                ((_, data),) = RemoteReader(self.options).read([entry])
                if isinstance(data, Problem):
                    return None
            pic, _, _ = decode_bytes(data, mode="fast", max_pixels=self.config.max_pixels)
            return features(pic)
        except (OSError, Refused, DecodeError):
            return None  # gone or changed since it was hashed: left unverified
