"""The work an executor runs: read a batch of images, decode each once, hash it.

:class:`HashWorker` is the one work function of every scan, local or on a cluster: local
files are read by :func:`lookalike.inputs.read.read_regular`, anything else (objects, tar
members, Parquet cells) by :class:`lookalike.inputs.remote.RemoteReader`; the bytes then go
through :func:`hash_data`. A bad file never raises: it becomes a
:class:`~lookalike.errors.Problem`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lookalike.config import ScanConfig
from lookalike.errors import DecodeError, Problem
from lookalike.executors.base import PerItemWork
from lookalike.inputs.read import Refused, max_file_bytes, read_problem, read_regular
from lookalike.inputs.walk import FileEntry
from lookalike.model import ImageRecord

__all__ = ["ChunkResult", "HashWorker", "hash_data", "hash_file"]


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
    group member's file again for them."""
    from lookalike.imaging.decode import decode_bytes
    from lookalike.imaging.facts import bytes_facts
    from lookalike.imaging.hashes import get_method

    try:
        pic, fmt, pixel_digest = decode_bytes(
            data, mode=config.decode, max_pixels=config.max_pixels,
            want_pixel_digest=config.pixel_digest,
        )
    except DecodeError as exc:
        return Problem(path=path, stage="decode", error=exc.reason, message=str(exc))
    try:
        h = get_method(config.method).hash(pic, config.resolved_hash_size, config.invariant,
                                             config.trim_borders)
    except Exception as exc:
        return Problem(path=path, stage="hash", error="hash-failed",
                       message=f"{type(exc).__name__}: {exc}")
    width, height = pic.full_size
    return ImageRecord(
        path=path, size_bytes=size_bytes, mtime_ns=mtime_ns, width=width, height=height,
        format=fmt, hash=h, digest=hashlib.sha256(data).hexdigest() if digest else None,
        pixel_digest=pixel_digest, source=source, facts=bytes_facts(data),
    )


def hash_file(entry: FileEntry, config: ScanConfig, *, digest: bool = True
              ) -> ImageRecord | Problem:
    """Read, digest, decode and hash one local file (see :func:`hash_data`); never raises
    for a bad file. Read by :func:`~lookalike.inputs.read.read_regular`: a FIFO is not
    opened, a file too big for any image within ``config.max_pixels`` is not read, a file
    that changed while it was read is ``changed-during-scan``."""
    try:
        data, st = read_regular(entry.path, max_file_bytes(config.max_pixels))
    except (OSError, Refused) as exc:
        return read_problem(entry.path, exc)
    return hash_data(data, path=entry.path, size_bytes=st.st_size, mtime_ns=st.st_mtime_ns,
                     source=entry.source, config=config, digest=digest)


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
        """The record or problem of each item of ``chunk``, local files first."""
        remote = []
        for entry in chunk:
            if type(entry) is FileEntry:
                yield hash_file(entry, self.config, digest=self.file_digest)
            else:
                remote.append(entry)
        if remote:
            from lookalike.inputs.remote import RemoteReader

            for entry, data in RemoteReader(self.storage_options).read(remote):
                # Remote bytes are read once: their digest costs nothing more now.
                yield data if isinstance(data, Problem) else hash_data(
                    data, path=entry.path, size_bytes=len(data), mtime_ns=entry.mtime_ns,
                    source=entry.source, config=self.config)

    def gather(self, results: list[ImageRecord | Problem]) -> ChunkResult:
        """The batch's :class:`ChunkResult`."""
        return ChunkResult([r for r in results if not isinstance(r, Problem)],
                           [r for r in results if isinstance(r, Problem)])
