"""Query: find the matches of new images among hashes already in the cache, no rescan.

The hash cache holds every hashed file of earlier scans (per settings). :func:`find_matches`
hashes only the query images, loads the cached hashes of the same settings (optionally only
those under one folder) into a :class:`~lookalike.search.mih.HammingIndex`, and asks it for every
stored image within the threshold. Cost: one decode per query image, plus reading the
cached rows (about 1 s per million) and building the index once.

A query that cannot be answered is an error, never "0 matches": a query image that is
missing or a folder, a cache file that does not exist, a cache without hashes of these
settings (the error lists those it has). Matches whose file is gone or changed since the
scan are marked (:attr:`QueryResult.missing`, :attr:`QueryResult.changed`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np

from lookalike.config import DECODER_VERSION, ScanConfig
from lookalike.errors import ConfigError, Problem
from lookalike.grouping.confirm import may_be_reduced
from lookalike.grouping.groups import segment_rows
from lookalike.inputs.walk import FileEntry, container_of
from lookalike.model import HASHED, Hash, ImageRecord, embedding_array
from lookalike.paths import is_local_file, shown
from lookalike.search import HammingIndex
from lookalike.store.cache import HashCache, settings_key, settings_of_key
from lookalike.verify import band_records, verify_pairs
from lookalike.worker import hash_file

__all__ = ["QueryResult", "find_matches"]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One query image and the cached images within the threshold, nearest first.

    ``missing`` holds the paths of matches whose file is gone since the scan that cached
    them (their hash is still in the cache); :meth:`is_missing` asks for one match.
    ``changed`` those whose file is there but not as it was hashed (another size or
    modification time): the cached hash may no longer describe it; scan it again.
    ``distance`` is the hashes' distance in bits, also for embedding matches.
    """

    query: ImageRecord
    matches: tuple[tuple[ImageRecord, int], ...]
    missing: frozenset[str] = frozenset()
    #: With embeddings: the paths of matches that only their embeddings found, with their
    #: cosine similarity (verified unless ``config.verify`` is off); listed after the hash
    #: matches, most similar first.
    embedded: Mapping[str, float] = field(default_factory=dict)
    #: How the ``embedded`` matches were accepted: ``verified``, or ``embedding`` (verification
    #: off) (:data:`~lookalike.model.MATCH_KINDS`).
    embedded_kind: str = "verified"
    changed: frozenset[str] = frozenset()
    #: The paths of matches the verified band found (``config.band``): hashes beyond the
    #: threshold, pictures that aligning confirms are one (and the cached images whose
    #: hashes match those); listed after the hash matches, nearest first.
    aligned: frozenset[str] = frozenset()

    def is_missing(self, record: ImageRecord | str) -> bool:
        return (record if isinstance(record, str) else record.path) in self.missing

    def match_of(self, record: ImageRecord) -> str:
        """How ``record`` matched the query: ``hash``, ``aligned``, ``verified`` or
        ``embedding``."""
        if record.path in self.aligned:
            return "aligned"
        return self.embedded_kind if record.path in self.embedded else "hash"


def find_matches(images: Iterable[str | os.PathLike[str]],
                 cache: HashCache | str | os.PathLike[str],
                 config: ScanConfig | None = None, *, under: str | os.PathLike[str] | None = None,
                 ) -> tuple[list[QueryResult], list[Problem]]:
    """Match ``images`` against every cached record hashed with the same settings.

    Args:
        images: query image files (not folders).
        cache: the hash cache that earlier scans filled, or the path of its file (which must
            exist: a query never creates an empty cache).
        config: the settings (``threshold`` is the match radius); default ``ScanConfig()``.
            Method, hash size and decode must be those of the scan that filled the cache;
            with ``embed``, its model too: then images whose embeddings are at least
            ``similarity`` alike also match, once verified as a scan verifies them
            (:mod:`lookalike.verify`), and so do the cached images whose hashes match
            those (they would share a scan's group; listed with their own similarity).
        under: only consider cached files below this folder (which must exist).

    Returns:
        One :class:`QueryResult` per readable query image (a query file that is itself in
        the cache is not reported as its own match), and the problems of unreadable ones.

    Raises:
        ConfigError: before any image is decoded, when the query cannot be answered: a query
            image that does not exist or is a folder, ``under`` that is not a folder, a cache
            path that does not exist, or a cache with no hashes for these settings (the
            message lists the settings it has hashes for) or none under ``under``, or with
            ``embed``, no embeddings from that model.
    """
    config = config or ScanConfig()
    if isinstance(images, (str, os.PathLike)):  # one image (a str was read as characters)
        images = [images]
    paths = [_query_path(image) for image in images]
    if not paths:
        raise ConfigError("no query images given")
    folder = None if under is None else _folder(under)
    with _opened(cache) as db:
        config, stored = _stored_records(db, config, folder)
    owners, values = segment_rows(stored)
    vectors = _vectors(stored) if config.embed is not None else None
    if config.embed is not None and vectors is None:
        # Else the embedding half of the query was skipped without a word: "0 matches".
        raise ConfigError(f"the cache holds no embeddings from the model {config.embed} for "
                          "these settings (its images were scanned without it, or with "
                          "another model); scan them with this model first, or query without "
                          "embeddings")
    index = HammingIndex(config.nbits)
    with index.bulk():
        index.add(values, ids=range(len(values)))
    results: list[QueryResult] = []
    problems: list[Problem] = []
    for path in paths:
        out = hash_file(FileEntry(path, 0, 0, os.path.dirname(path)), config)
        if isinstance(out, Problem):
            problems.append(out)
            continue
        best: dict[int, int] = {}
        for seg in out.hash.informative_segments:  # a flat one would match every blank
            for row, dist in index.query(seg, max_distance=config.threshold):
                owner = owners[row]
                if dist < best.get(owner, dist + 1):
                    best[owner] = dist
        if out.hash.featureless:
            # A blank or solid picture matches its byte copies only, as in a scan's groups.
            digest = _digest_of(out)
            best = {i: 0 for i, r in enumerate(stored) if r.hash.featureless
                    and digest is not None and r.digest == digest}
        # The query image is not its own match, under any of its names (a symbolic link to
        # a cached file, a hard link): asked of the matches only.
        best = {i: d for i, d in best.items() if not _same_file(stored[i].path, path)}
        ranked = sorted(best.items(), key=lambda kv: (kv[1], stored[kv[0]].path))

        def hash_matches(i: int) -> Iterator[int]:
            """The cached records whose hashes match cached record ``i``'s (flat segments
            match nothing, as in a scan)."""
            for seg in stored[i].hash.informative_segments:
                for row, _ in index.query(seg, max_distance=config.threshold):
                    yield owners[row]

        aligned = _band_matches(out, stored, index, owners, best, config, hash_matches)
        embedded = _embedding_matches(out, stored, vectors, {**best, **aligned}, config,
                                      hash_matches)
        matches = tuple((stored[i], d) for i, d in ranked) + tuple(
            (stored[i], d) for i, d in aligned.items()) + tuple(
            (stored[i], out.hash - stored[i].hash) for i in embedded)
        gone = frozenset(rec.path for rec, _ in matches if _gone(rec.path))
        changed = frozenset(rec.path for rec, _ in matches
                            if rec.path not in gone and not _unchanged(rec))
        results.append(QueryResult(out, matches, gone,
                                   {stored[i].path: sim for i, sim in embedded.items()},
                                   "verified" if config.verify else "embedding", changed,
                                   frozenset(stored[i].path for i in aligned)))
    return results, problems


def _same_file(path: str, query: str) -> bool:
    """Whether the cached ``path`` names the query file ``query`` (itself, or a link to it)."""
    if path == query:
        return True
    try:
        return os.path.samefile(path, query)
    except (OSError, ValueError):  # gone, a URL, a member of a container
        return False


def _vectors(stored: Sequence[ImageRecord]) -> Any:
    """The embeddings of ``stored`` as one matrix, a zero row for a record without one (it
    was cached by a scan without this model: its hash matches, its embedding matches
    nothing); None when none has one."""
    have = [i for i, r in enumerate(stored) if r.embedding is not None]
    if not have:
        return None
    found = embedding_array([stored[i] for i in have])
    vectors = np.zeros((len(stored), found.shape[1]), dtype=np.float32)
    vectors[have] = found
    return vectors


def _gone(path: str) -> bool:
    """Whether a cached ``path`` is gone: a local file that no longer exists, or a tar member
    or Parquet cell (``CONTAINER#name``) whose container no longer exists. A URL is not
    asked for (a request per match)."""
    return "://" not in path and not os.path.lexists(path) and container_of(path) is None


#: Most embedding candidates verified per query image (the most similar first).
EMBED_CANDIDATES = 8


#: Most verified-band candidates verified per query image (the nearest first).
BAND_CANDIDATES = 8


def _band_matches(query: ImageRecord, stored: Sequence[ImageRecord], index: HammingIndex,
                  owners: Sequence[int], hashed: Mapping[int, int], config: ScanConfig,
                  hash_matches: Callable[[int], Iterable[int]]) -> dict[int, int]:
    """As a scan's verified band (:func:`lookalike.verify.band_matches`): indices of
    ``stored`` whose hashes lie beyond the threshold, within ``config.band``, that aligning
    the pictures confirms, with their distance, nearest first; then the records whose hashes
    match one of those (they would share a scan's group). Pictures with a short side under
    :data:`~lookalike.config.BAND_MIN_SIDE` are not tried, as in a scan."""
    if not config.resolved_band or not band_records([query]):
        return {}
    near: dict[int, int] = {}
    for seg in query.hash.informative_segments:
        for row, dist in index.query(seg, max_distance=config.resolved_band):
            owner = owners[row]
            if owner not in hashed and dist < near.get(owner, dist + 1):
                near[owner] = dist
    candidates = list(near.items())
    tried = set(band_records([stored[i] for i, _ in candidates]))
    # Local files only (verification reads them; a tar member or Parquet cell would only
    # use up a try), one per hash value (byte copies and re-encodes of one look-alike would
    # take every try).
    order: list[tuple[int, int]] = []
    values: set[Hash] = set()
    for d, i in sorted((d, i) for k, (i, d) in enumerate(candidates)
                       if k in tried and is_local_file(stored[i].path, stored[i].source)
                       and not _same_file(stored[i].path, query.path)):
        if stored[i].hash not in values and len(order) < BAND_CANDIDATES:
            values.add(stored[i].hash)
            order.append((d, i))
    ok = verify_pairs([query, *(stored[i] for _, i in order)],
                      [(0, k + 1) for k in range(len(order))], config, band=True)
    found = {i: d for (d, i), good in zip(order, ok, strict=True) if good}
    for i in list(found):
        found.update((j, query.hash - stored[j].hash) for j in hash_matches(i)
                     if j not in hashed and j not in found
                     and not _same_file(stored[j].path, query.path))
    return found


def _embedding_matches(query: ImageRecord, stored: Sequence[ImageRecord], vectors: Any,
                       hashed: Mapping[int, int], config: ScanConfig,
                       hash_matches: Callable[[int], Iterable[int]]) -> dict[int, float]:
    """Indices of ``stored`` that ``query``'s embedding matches beyond the hash matches
    ``hashed``, with their similarity, most similar first; then, as in a scan's group, the
    records whose hashes match one of those (``hash_matches``: the re-encodes of the photo
    a crop was found in), with their own similarity."""
    if vectors is None or query.embedding is None:
        return {}
    sims = vectors @ embedding_array([query])[0]
    order = [int(i) for i in np.argsort(-sims, kind="stable")
             if sims[i] >= config.resolved_similarity and int(i) not in hashed
             and not _same_file(stored[int(i)].path, query.path)][:EMBED_CANDIDATES]
    if config.verify:
        ok = verify_pairs([query, *(stored[i] for i in order)],
                          [(0, k + 1) for k in range(len(order))], config)
        order = [i for i, good in zip(order, ok, strict=True) if good]
    found = dict.fromkeys(order)
    for i in order:
        found.update((j, None) for j in hash_matches(i)
                     if j not in hashed and not _same_file(stored[j].path, query.path))
    return {i: round(float(sims[i]), 3) for i in found}


def _query_path(image: str | os.PathLike[str]) -> str:
    path = os.path.abspath(os.fspath(image))
    if os.path.isdir(path):
        raise ConfigError(f"query image {path} is a folder; name its image files (e.g. "
                          f"{os.path.join(path, '*.jpg')}), or scan the folder to compare "
                          "everything in it")
    if not os.path.exists(path):
        raise ConfigError(f"query image {path} does not exist")
    return path


def _folder(under: str | os.PathLike[str]) -> str:
    path = os.path.abspath(os.fspath(under))
    if not os.path.isdir(path):
        what = "is not a folder" if os.path.exists(path) else "does not exist"
        raise ConfigError(f"folder {path} (to match only cached images under it) {what}")
    return path


@contextlib.contextmanager
def _opened(cache: HashCache | str | os.PathLike[str]) -> Iterator[HashCache]:
    if isinstance(cache, HashCache):
        yield cache
        return
    path = os.path.abspath(os.fspath(cache))
    if not os.path.isfile(path):
        what = "is a folder, not a cache file" if os.path.isdir(path) else "does not exist"
        raise ConfigError(f"hash cache {path} {what}; name the cache the scan used (scans "
                          "fill the cache; a query only reads it)")
    with HashCache(path, read_only=True) as db:
        yield db


def _digest_of(record: ImageRecord) -> str | None:
    """The file digest of a query image (None if it cannot be read again)."""
    from lookalike.inputs.read import file_digest

    found = file_digest(record.path, record.size_bytes, record.mtime_ns)
    return found if isinstance(found, str) else None


def _describe(method: str, size: str | int, decode: str, invariant: str = "none",
              trim: bool = True, decoder: str = DECODER_VERSION, embed: str = "") -> str:
    text = f"{method} {size}, {decode} decode"
    if embed:
        text += f", embeddings {embed}"
    if invariant != "none":
        text += f", invariant {invariant}"
    if not trim:
        text += ", borders kept"
    if decoder != DECODER_VERSION:
        text += f", decoder version {decoder} (this one: {DECODER_VERSION})"
    return text


def _cached_settings(cache: HashCache) -> dict[str, int]:
    """Settings keys of the cache's hashed files, with how many files each has."""
    # The cache offers no listing of its keys; this read-only query is the query's own.
    rows = cache._db.execute("SELECT key, count(*) FROM files WHERE ok = 1 GROUP BY key")
    return {str(k): int(n) for k, n in rows}


def _digest_keys(config: ScanConfig) -> list[str]:
    """``config``'s settings key, and the same without (or with) pixel digests: the same
    hashes."""
    return [settings_key(c) for c in (config, dataclasses.replace(
        config, pixel_digest=not config.pixel_digest))]


def _usable_keys(config: ScanConfig, have: Mapping[str, int]) -> list[str]:
    """The cache keys holding hashes ``config`` makes, its own first: without or with pixel
    digests, and with any embedding model or none (the same hashes; only ``config``'s own
    model's embeddings are read, :func:`_stored_records`)."""
    own = _digest_keys(config)
    bases = _digest_keys(dataclasses.replace(config, embed=None, similarity=None, verify=True))
    keys = own + [k for k in bases if k not in own]
    keys += sorted(k for k in have if k not in keys
                   and any(k.startswith(f"{base}/emb-") for base in bases))
    return [k for k in keys if k in have]


def _unchanged(r: ImageRecord) -> bool:
    """Whether ``r``'s file is there as it was hashed (a URL or a member: assumed)."""
    try:
        st = os.stat(r.path)
    except OSError:
        return not is_local_file(r.path) or container_of(r.path) is not None
    return (st.st_size, st.st_mtime_ns) == (r.size_bytes, r.mtime_ns)


def _union(cache: HashCache, config: ScanConfig, keys: Sequence[str], under: str | None
           ) -> dict[str, ImageRecord]:
    """Every row under ``keys`` (hashes ``config`` makes), one per file: the first key's
    (``config``'s own settings first), or, where the rows of a file differ in size or
    mtime, the one that describes the file as it is now. Scans with and without an
    embedding model, or with and without pixel digests, each cache their files under their
    own key: reading the first key with rows missed the others' files. Embeddings of
    another model than ``config``'s are left out (they cannot be compared)."""
    own = frozenset(_digest_keys(config)) if config.embed is not None else None
    by_path: dict[str, ImageRecord] = {}
    held: dict[str, tuple[int, int]] = {}  # rows already built, not parsed again
    for key in keys:
        for r in cache.records(config, under=under, key=key, held=held):
            if own is not None and key not in own and r.embedding is not None:
                r = dataclasses.replace(r, embedding=None)
            had = by_path.get(r.path)
            if had is None or ((had.size_bytes, had.mtime_ns) != (r.size_bytes, r.mtime_ns)
                               and not _unchanged(had) and _unchanged(r)):
                by_path[r.path] = r
                held[r.path] = (r.size_bytes, r.mtime_ns)
    return by_path


def _stored_records(cache: HashCache, config: ScanConfig, under: str | None
                    ) -> tuple[ScanConfig, list[ImageRecord]]:
    """The cached records to match against, and the config they were hashed with.

    A cache filled without pixel digests holds the same hashes: those rows serve too.
    """
    have = _cached_settings(cache)
    embed = settings_of_key(settings_key(config)) or {}
    wanted = _describe(config.method, config.resolved_hash_size, config.decode,
                       config.invariant, config.trim_borders, embed=embed.get("embed", ""))
    usable = _usable_keys(config, have)
    # A fast scan stores full-decode hashes too, of the few large JPEGs it decoded again to
    # confirm their matches: a full-decode query reads those and the fast scan's hashes of
    # the files fast mode decodes in full (all but large JPEGs). Before, it read those few
    # only and answered "0 matches" for the rest. A large JPEG with a fast hash only cannot
    # be compared (its reduced decode moves the hash by up to 52 bits): an error, as before
    # (a camera RAW too: its JPEG preview is reduced alike).
    fill = (_usable_keys(dataclasses.replace(config, decode="fast"), have)
            if config.decode == "full" else [])
    by_path = _union(cache, config, usable, under)
    if fill:
        extra = _union(cache, dataclasses.replace(config, decode="fast"), fill, under)
        # A file's full-decode row wins, unless it is stale and the fast one describes the
        # file as it is now (a fast scan after the file changed).
        extra = {p: r for p, r in extra.items() if p not in by_path or (
            not _unchanged(by_path[p]) and _unchanged(r) and not may_be_reduced(r))}
        # A row of a file gone or changed since (the cache keeps them) cannot match
        # anything: left out, not a reason to refuse (a full-decode scan of the
        # collection, as the message asks, would not have removed it).
        reduced = [r.path for r in extra.values() if may_be_reduced(r) and _unchanged(r)]
        if reduced:
            raise ConfigError(
                f"the hash cache {cache.path} holds only fast-decode hashes of "
                f"{len(reduced)} image{'s' * (len(reduced) != 1)} fast mode decodes "
                f"reduced (large JPEGs, camera RAW previews; e.g. {shown(reduced[0])}): "
                "a full-decode query cannot be compared with them. Query with the scan's "
                "decode mode (fast), or scan the collection with full decoding first")
        by_path.update((p, r) for p, r in extra.items() if not may_be_reduced(r))
    stored = sorted(by_path.values(), key=attrgetter("path"))
    if stored:
        return config, stored
    usable += fill
    if usable:  # hashes with these settings, but none under the folder
        raise ConfigError(f"the hash cache {cache.path} has no hashes of images under {under} "
                          f"({wanted}); scan that folder first, or query without the folder")
    if not have:
        raise ConfigError(f"the hash cache {cache.path} holds no hashes; scan the collection "
                          "with it first (a query only reads the cache)")
    held: dict[str, int] = {}
    for key, n in have.items():
        st = settings_of_key(key)
        text = key if st is None else _describe(st["method"], st["size"], st["decode"],
                                                st["invariant"], st["trim"] == "1",
                                                st["decoder"], st["embed"])
        held[text] = held.get(text, 0) + n
    listing = "; ".join(f"{t} ({n} files)" for t, n in sorted(held.items()))
    raise ConfigError(f"the hash cache {cache.path} has no hashes made with {wanted}; it has "
                      f"hashes made with: {listing}. Query with the settings of the scan "
                      "(method, hash size, decode, invariance, border trimming, embedding "
                      "model), or scan the collection with these settings first")


def matches_to_dict(results: Sequence[QueryResult], problems: Sequence[Problem]
                    ) -> dict[str, Any]:
    """JSON view: each query with its matches (path, distance, hash, how it matched, its
    similarity for embedding matches, whether its file is gone or changed), and the
    errors."""
    return {"queries": [{"path": r.query.path, "hash": str(r.query.hash),
                         "matches": [{"path": m.path, "distance": d, "hash": str(m.hash),
                                      "missing": r.is_missing(m),
                                      "changed": m.path in r.changed, "match": r.match_of(m),
                                      "similarity": r.embedded.get(m.path)}
                                     for m, d in r.matches]} for r in results],
            "errors": [p.to_dict() for p in problems]}


def render_matches(results: Sequence[QueryResult]) -> str:
    """Text view: each query, then its matches with their distances in bits (``d=-`` for an
    embedding match: bits mean nothing there, as in a scan's summary); a match whose file is
    gone since the scan is marked ``(gone since the scan)``, one there but not as it was
    hashed ``(changed since the scan)``. Query images that could not be
    read are the caller's to show (on stderr, as every command's per-file errors)."""
    lines = []
    for r in results:
        gone = f", {len(r.missing)} gone since the scan" if r.missing else ""
        gone += f", {len(r.changed)} changed since the scan" if r.changed else ""
        n = len(r.matches)
        lines.append(f"{shown(r.query.path)}: {n} match{'' if n == 1 else 'es'}{gone}")
        lines.extend(f"  d={d if r.match_of(rec) in HASHED else '-':<3} {shown(rec.path)}"
                     + (f"  ({r.embedded_kind} {r.embedded[rec.path]:.2f})"
                        if rec.path in r.embedded else "")
                     + ("  (aligned)" if rec.path in r.aligned else "")
                     + ("  (gone since the scan)" if rec.path in r.missing else "")
                     + ("  (changed since the scan: scan again)" if rec.path in r.changed
                        else "")
                     for rec, d in r.matches)
    return "\n".join(lines) + ("\n" if lines else "")
