"""The work an executor runs: read a batch of images, decode each once, hash it.

:class:`HashWorker` is the one work function of every scan, local or on a cluster: local
files are read by :func:`lookalike.inputs.read.read_regular`, anything else (objects, tar
members, Parquet cells) by :class:`lookalike.inputs.remote.RemoteReader`; the bytes then go
through :func:`hash_data`. A bad file never raises: it becomes a
:class:`~lookalike.errors.Problem`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lookalike.config import ScanConfig
from lookalike.errors import DecodeError, Problem
from lookalike.executors.base import PerItemWork
from lookalike.inputs.read import Refused, max_file_bytes, read_problem, read_regular
from lookalike.inputs.walk import FileEntry
from lookalike.model import ImageRecord

if TYPE_CHECKING:
    from lookalike.imaging.embed import Embedder

__all__ = ["EMBED_BATCH", "ChunkResult", "HashWorker", "embedder_for", "hash_data",
           "hash_file", "pixel_digests"]

#: Images per run of the embedding model in a worker.
EMBED_BATCH = 16


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What a worker returns for one batch: records for good files, problems for bad ones."""

    records: list[ImageRecord]
    problems: list[Problem]


def hash_data(data: bytes, *, path: str, size_bytes: int, mtime_ns: int, source: str,
              config: ScanConfig, digest: bool = True) -> ImageRecord | Problem:
    """Digest, decode and hash one image's bytes, wherever they came from (a local file,
    an object store, a Parquet cell, a tar member). Never raises for bad data.

    ``digest=False`` leaves the record's ``digest`` None. The record's ``facts`` (what the
    header says, for the keep policy) are read from the same bytes, so no scan opens a
    group member's file again for them. With ``config.embed`` the record carries the
    image's embedding too, from the same decoded picture."""
    out, pending = _hash_picture(data, path=path, size_bytes=size_bytes, mtime_ns=mtime_ns,
                                 source=source, config=config, digest=digest)
    return _embedded([(out, pending)], config)[0] if pending is not None else out


def _hash_picture(data: bytes, *, path: str, size_bytes: int, mtime_ns: int, source: str,
                  config: ScanConfig, digest: bool) -> tuple[ImageRecord | Problem, Any]:
    """:func:`hash_data` without the embedding: the record (or problem) and, with
    ``config.embed``, the model's input made from the picture (else None)."""
    from lookalike.imaging.borders import content_box
    from lookalike.imaging.decode import decode_bytes
    from lookalike.imaging.facts import bytes_facts
    from lookalike.imaging.hashes import get_method

    try:
        pic, fmt, _ = decode_bytes(data, mode=config.decode, max_pixels=config.max_pixels)
    except DecodeError as exc:
        return Problem(path=path, stage="decode", error=exc.reason, message=str(exc)), None
    try:
        # The bars are looked for whatever the settings: the keep policy counts what a file
        # shows inside them (FileFacts.content).
        box = content_box(pic.grey_full())
        h = get_method(config.method).hash_inside(
            pic, box if config.trim_borders else None, config.resolved_hash_size,
            config.invariant)
    except Exception as exc:
        return Problem(path=path, stage="hash", error="hash-failed",
                       message=f"{type(exc).__name__}: {exc}"), None
    pending = None
    if config.embed is not None:
        try:
            pending = embedder_for(config).prepare(pic)
        except Exception:  # this picture gets no embedding: it matches by its hash
            pending = None
    width, height = pic.full_size
    facts = bytes_facts(data)
    if box is not None:  # in the file's pixels (the decoded ones may be reduced)
        left, top, right, bottom = box
        held_w, held_h = pic.size
        facts = dataclasses.replace(facts, content=(
            max(1, round((right - left) * width / held_w)),
            max(1, round((bottom - top) * height / held_h))))
    return ImageRecord(
        path=path, size_bytes=size_bytes, mtime_ns=mtime_ns, width=width, height=height,
        format=fmt, hash=h, digest=hashlib.sha256(data).hexdigest() if digest else None,
        source=source, facts=facts,
    ), pending


def pixel_digests(records: Sequence[ImageRecord], config: ScanConfig) -> dict[str, str]:
    """The pixel digest of each record's local file (SHA-256 of its fully decoded, oriented
    RGB pixels; :func:`~lookalike.imaging.decode.decode_bytes`), on
    ``config.resolved_workers`` threads (Pillow decodes without the GIL), by path.

    Computed after grouping, for the few members that may be pixel-identical (see
    :func:`lookalike.pipeline.scan`), not for every image while hashing: reading out and
    digesting every pixel cost 11% of a cold scan of small photos
    (``benchmarks/bench_peers.py``, small, one worker). A file that changed since it was
    hashed, cannot be read or decoded, or is a camera RAW gets none: the digest only labels
    a group ``exact``, and its absence leaves it ``near``.
    """
    if not records:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    from lookalike.imaging.decode import RAW_FORMATS, decode_bytes

    limit = max_file_bytes(config.max_pixels)

    def one(rec: ImageRecord) -> str | None:
        if rec.format in RAW_FORMATS:
            return None  # never a pixel-exact copy of anything: not rendered for nothing
        try:
            data, st = read_regular(rec.path, limit)
            # The bytes digested for the group (a file swapped since, its size and mtime
            # kept, would label a group exact by another picture's pixels).
            if (st.st_size, st.st_mtime_ns) != (rec.size_bytes, rec.mtime_ns) or (
                    rec.digest is not None and hashlib.sha256(data).hexdigest() != rec.digest):
                return None
            return decode_bytes(data, mode="full", max_pixels=config.max_pixels,
                                want_pixel_digest=True)[2]
        except (OSError, Refused, DecodeError):
            return None

    with ThreadPoolExecutor(max(1, min(config.resolved_workers, len(records)))) as pool:
        found = list(pool.map(one, records))
    return {r.path: d for r, d in zip(records, found, strict=True) if d is not None}


def embedder_for(config: ScanConfig) -> Embedder:
    """This process's :class:`~lookalike.imaging.embed.Embedder` for ``config.embed``
    (:func:`~lookalike.imaging.embed.shared_embedder`: loaded once per process)."""
    from lookalike.imaging.embed import shared_embedder

    assert config.embed is not None
    return shared_embedder(config.embed)


def _embedded(batch: Sequence[tuple[ImageRecord | Problem, Any]], config: ScanConfig
              ) -> list[ImageRecord | Problem]:
    """The records of ``batch`` ((record, model input) pairs from :func:`_hash_picture`)
    with their embeddings, computed in one run of the model (one at a time if that fails,
    so one bad input costs only its own embedding). A record the model fails on keeps its
    hash and no embedding: it matches by hash alone (the scan counts it, and the hash cache
    does not keep it, so the next scan tries again)."""
    from lookalike.model import embedding_bytes

    vectors = embedder_for(config).embed_each([x for _, x in batch], batch=max(1, len(batch)))
    return [rec if isinstance(rec, Problem) or v is None
            else dataclasses.replace(rec, embedding=embedding_bytes(v))
            for (rec, _), v in zip(batch, vectors, strict=True)]


def hash_file(entry: FileEntry, config: ScanConfig, *, digest: bool = True
              ) -> ImageRecord | Problem:
    """Read, digest, decode and hash one local file (see :func:`hash_data`); never raises
    for a bad file. Read by :func:`~lookalike.inputs.read.read_regular`: a FIFO is not
    opened, a file too big for any image within ``config.max_pixels`` is not read, a file
    that changed while it was read is ``changed-during-scan``."""
    out, pending = _hash_entry(entry, config, digest)
    return _embedded([(out, pending)], config)[0] if pending is not None else out


def _hash_entry(entry: FileEntry, config: ScanConfig, digest: bool
                ) -> tuple[ImageRecord | Problem, Any]:
    try:
        data, st = read_regular(entry.path, max_file_bytes(config.max_pixels))
    except (OSError, Refused) as exc:
        return read_problem(entry.path, exc), None
    if entry.ctime_ns and st.st_ctime_ns != entry.ctime_ns:
        # Not the file listed: another took its name (a symbolic link to another file has
        # that file's change time; a hard link put in its place changes its target's), or it
        # was written since. Its hash under this name could make two names of one file a
        # duplicate pair. The change time, not (dev, ino): a worker of a cluster reading a
        # shared mount sees other device numbers than the client that walked it.
        return Problem(path=entry.path, stage="read", error="changed-during-scan",
                       message="the file changed, or another took its name, after it was "
                               "listed; scan it again"), None
    return _hash_picture(data, path=entry.path, size_bytes=st.st_size,
                         mtime_ns=st.st_mtime_ns, source=entry.source, config=config,
                         digest=digest)


@dataclass(frozen=True, slots=True)
class HashWorker(PerItemWork[Any, "ImageRecord | Problem", ChunkResult]):
    """Picklable work function: hashes one batch of items with a frozen config.

    It yields one result per image (:class:`~lookalike.executors.base.PerItemWork`), so the
    process executor can stop a worker stuck on one file for longer than :attr:`timeout`
    and the file is reported as ``timeout``.

    Attributes:
        config: the hashing settings.
        file_digest: digest every file (``True``), or leave local files' ``digest`` None
            for the scan to compute for group members only.
        storage_options: fsspec options for remote items.
    """

    config: ScanConfig
    file_digest: bool = True
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def timeout(self) -> float | None:  # type: ignore[override]
        """Seconds one image may take (``config.decode_timeout``); read by the executor."""
        return self.config.decode_timeout

    def results(self, chunk: Sequence[Any]) -> Iterator[ImageRecord | Problem]:
        """The record or problem of each item of ``chunk``, local files first. With
        ``config.embed``, results come per batch of :data:`EMBED_BATCH` images: the model
        runs once per batch (each waits at most a batch's time, far below any time limit)."""
        config = self.config
        waiting: list[tuple[ImageRecord | Problem, Any]] = []
        for out, pending in self._hashed(chunk):
            if pending is None:
                yield out
                continue
            waiting.append((out, pending))
            if len(waiting) >= EMBED_BATCH:
                yield from _embedded(waiting, config)
                waiting = []
        if waiting:
            yield from _embedded(waiting, config)

    def _hashed(self, chunk: Sequence[Any]) -> Iterator[tuple[ImageRecord | Problem, Any]]:
        remote = []
        config = self.config
        for entry in chunk:
            if type(entry) is FileEntry:
                yield _hash_entry(entry, config, self.file_digest)
            else:
                remote.append(entry)
        if remote:
            from lookalike.inputs.remote import RemoteReader

            for entry, data in RemoteReader(self.storage_options).read(remote):
                # Remote bytes are read once: their digest costs nothing more now.
                yield (data, None) if isinstance(data, Problem) else _hash_picture(
                    data, path=entry.path, size_bytes=len(data), mtime_ns=entry.mtime_ns,
                    source=entry.source, config=config, digest=True)

    def gather(self, results: list[ImageRecord | Problem]) -> ChunkResult:
        """The batch's :class:`ChunkResult`."""
        return ChunkResult([r for r in results if not isinstance(r, Problem)],
                           [r for r in results if isinstance(r, Problem)])
