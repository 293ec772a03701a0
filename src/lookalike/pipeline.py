"""The scan pipeline: walk -> read + decode + hash (on an executor) -> search -> group.

Phases, cheapest first, numbered in progress output:

1. walk: list candidate files (stat only);
2. hash: read each file once, decode once, compute the hash (workers); files already in
   the hash cache with the same size and mtime are not read at all;
3. group: exact Hamming search over the hashes, then grouping (on the driver); then the
   SHA-256 of each group member's bytes (threads), the only files whose digest anything
   reads (exact-duplicate groups, the report, ``apply``'s check that a file is unchanged).

Digests of local files are computed for group members only, as fdupes-style tools hash only
files whose sizes collide: byte-identical files decode identically, so they always share a
hash and a group, and digesting every file would cost ~4% of a photo's hashing time (0.4 ms
of a 4.7 MP JPEG's ~10 ms in fast mode) for files that are in no group.

Errors: a bad file never stops a scan; it becomes a :class:`~lookalike.errors.Problem`.
Bad parameters raise :class:`~lookalike.errors.ConfigError` before any work. Bugs propagate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from lookalike.config import ScanConfig
from lookalike.errors import DecodeError, Problem
from lookalike.events import NullReporter, Reporter
from lookalike.inputs.walk import FileEntry, WalkStats, iter_files, os_error_reason, unique_files
from lookalike.model import Group, ImageRecord

if TYPE_CHECKING:
    from lookalike.executors.base import Executor
    from lookalike.store.cache import HashCache

__all__ = [
    "ChunkResult",
    "HashWorker",
    "ScanResult",
    "hash_data",
    "hash_file",
    "max_file_bytes",
    "run_scan",
    "run_scan_items",
]

CHUNK_SIZE = 16  # files per work item: small enough for smooth progress, big enough for IPC
RETRIES = 1  # a failed chunk is retried file by file this many times before files are errors


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What a worker returns for one chunk: records for good files, problems for bad ones."""

    records: list[ImageRecord]
    problems: list[Problem]


def hash_file(entry: FileEntry, config: ScanConfig, *, digest: bool = True
              ) -> ImageRecord | Problem:
    """Read, digest, decode and hash one local file. Never raises for a bad file.

    With ``digest=False`` the record's ``digest`` is None (see :func:`file_digest`).

    The file is opened without following it into a FIFO or device (never blocks), refused
    unread when it is larger than any image within ``config.max_pixels`` could be, and
    reported as ``changed-during-scan`` when its size or mtime moved while it was read.
    """
    path = entry.path
    try:
        data, st = _read_regular(path, max_file_bytes(config.max_pixels))
    except OSError as exc:
        return Problem(path=path, stage="read", error=os_error_reason(exc, "read-error"),
                       message=f"cannot read: {exc.strerror or exc}")
    except _Refused as exc:
        return Problem(path=path, stage="read", error=exc.reason, message=exc.message)
    return hash_data(data, path=path, size_bytes=st.st_size, mtime_ns=st.st_mtime_ns,
                     source=entry.source, config=config, digest=digest)


def max_file_bytes(max_pixels: int) -> int:
    """The largest file :func:`hash_file` reads: 8 bytes per allowed pixel (16-bit RGBA,
    uncompressed), at least 64 MiB. Bigger files are refused unread as ``too-large``, so
    one huge file named like an image cannot exhaust a worker's memory."""
    return max(64 << 20, 8 * max_pixels)


def hash_data(data: bytes, *, path: str, size_bytes: int, mtime_ns: int, source: str,
              config: ScanConfig, digest: bool = True) -> ImageRecord | Problem:
    """Digest, decode and hash one image's bytes, wherever they came from (a local file,
    an object store, a Parquet cell, a tar member). Never raises for bad data.

    ``digest=False`` leaves the record's ``digest`` None."""
    from lookalike.imaging.decode import decode_bytes
    from lookalike.imaging.hashes import get_method

    try:
        pic, fmt, pixel_digest = decode_bytes(
            data, mode=config.decode, max_pixels=config.max_pixels,
            want_pixel_digest=config.pixel_digest,
        )
    except DecodeError as exc:
        return Problem(path=path, stage="decode", error=exc.reason, message=str(exc))
    try:
        h = get_method(config.method).hash(pic, config.resolved_hash_size, config.invariant)
    except Exception as exc:
        return Problem(path=path, stage="hash", error="hash-failed",
                       message=f"{type(exc).__name__}: {exc}")
    width, height = pic.full_size
    return ImageRecord(
        path=path, size_bytes=size_bytes, mtime_ns=mtime_ns, width=width, height=height,
        format=fmt, hash=h, digest=hashlib.sha256(data).hexdigest() if digest else None,
        pixel_digest=pixel_digest, source=source,
    )


class _Refused(Exception):
    """A file :func:`_read_regular` will not (or could not consistently) read."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# O_NONBLOCK: a FIFO swapped in after the walk must not block a worker (regular files ignore
# it); O_NOCTTY: opening a terminal device must not make it ours.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def _read_regular(path: str, max_bytes: int) -> tuple[bytes, os.stat_result]:
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Refused("not-a-regular-file",
                           "a FIFO, socket or device, not a regular file; not read")
        if st.st_size > max_bytes:
            raise _Refused("too-large", f"{st.st_size:,} bytes, more than any image within "
                           f"--max-pixels needs ({max_bytes:,}); not read")
        # os.read into one bytes object: half the time of a buffered fh.read(). At most one
        # byte more than fstat said, so a file that grows is torn, not read to its end.
        data = os.read(fd, st.st_size + 1)
        if 0 < len(data) < st.st_size:  # a short read (FUSE, NFS, > 2 GiB)? read on
            parts, got = [data], len(data)
            while got <= st.st_size and (more := os.read(fd, st.st_size + 1 - got)):
                parts.append(more)
                got += len(more)
            data = b"".join(parts) if len(parts) > 1 else data
        after = os.fstat(fd)
    finally:
        os.close(fd)
    # One fstat more per file: a torn read (a download still being written, a sync tool
    # replacing the file) must not be hashed as if it were the file.
    if len(data) != st.st_size or (after.st_size, after.st_mtime_ns) != (
            st.st_size, st.st_mtime_ns):
        raise _Refused("changed-during-scan",
                       f"the file changed while it was read ({st.st_size:,} bytes before, "
                       f"{len(data):,} read, {after.st_size:,} after); scan it again")
    return data, st


def file_digest(path: str, size_bytes: int, mtime_ns: int) -> str | Problem:
    """The SHA-256 of a local file's bytes, if it still is the file that was hashed.

    Read as :func:`hash_file` reads (same refusals). A file whose size or mtime differs from
    ``size_bytes``/``mtime_ns`` (the values its hash was made from), or changes while it is
    read, is reported ``changed-during-scan``: its hash may no longer describe it. Never
    raises for a bad file. Reading and hashing release the GIL, so threads digest in
    parallel.
    """
    try:
        # Nothing longer than the hashed version is read: a file that grew has changed.
        data, st = _read_regular(path, size_bytes)
    except OSError as exc:
        return Problem(path=path, stage="read", error=os_error_reason(exc, "read-error"),
                       message=f"cannot read: {exc.strerror or exc}")
    except _Refused as exc:
        if exc.reason != "too-large":
            return Problem(path=path, stage="read", error=exc.reason, message=exc.message)
        st = None
    if st is None or (st.st_size, st.st_mtime_ns) != (size_bytes, mtime_ns):
        return Problem(path=path, stage="read", error="changed-during-scan",
                       message="the file changed after it was hashed; scan it again")
    return hashlib.sha256(data).hexdigest()


def digest_files(records: Sequence[ImageRecord], workers: int
                 ) -> tuple[dict[str, str], list[Problem]]:
    """:func:`file_digest` of each record's local file on ``workers`` threads: the digests
    by path, and the problems of files that could not be digested."""
    if not records:
        return {}, []
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, min(workers, len(records)))) as pool:
        outcomes = list(pool.map(lambda r: file_digest(r.path, r.size_bytes, r.mtime_ns),
                                 records))
    digests = {r.path: d for r, d in zip(records, outcomes, strict=True) if isinstance(d, str)}
    return digests, [p for p in outcomes if isinstance(p, Problem)]


@dataclass(frozen=True, slots=True)
class HashWorker:
    """Picklable work function: hashes one chunk of files with a frozen config.

    Before each file it calls :func:`lookalike.executors.local.heartbeat`, so the process
    executor can stop a worker stuck on one file for longer than :attr:`timeout` and the
    file is reported as ``timeout``. Subclasses may override :meth:`hash_one`.
    """

    config: ScanConfig
    #: Digest every file (``True``), or leave ``digest`` None for the pipeline to compute
    #: for group members only (what :func:`run_scan_items` asks of its default worker).
    file_digest: bool = True

    @property
    def timeout(self) -> float | None:
        """Seconds one file may take (``config.decode_timeout``); read by the executor."""
        return self.config.decode_timeout

    def hash_one(self, entry: FileEntry) -> ImageRecord | Problem:
        """Hash one file; never raises for a bad file."""
        return hash_file(entry, self.config, digest=self.file_digest)

    def __call__(self, chunk: Sequence[FileEntry]) -> ChunkResult:
        from lookalike.executors.local import heartbeat

        records, problems = [], []
        for entry in chunk:
            heartbeat()
            out = self.hash_one(entry)
            (problems if isinstance(out, Problem) else records).append(out)
        return ChunkResult(records, problems)


@dataclass(slots=True)
class ScanResult:
    """Everything a scan found: groups, per-file problems, all hashed records and stats."""

    groups: list[Group]
    errors: list[Problem]
    records: list[ImageRecord]
    config: ScanConfig
    roots: list[str]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        """Files that are not the representative of their group."""
        return sum(len(g) - 1 for g in self.groups)


def _chunks(entries: Sequence[FileEntry], size: int) -> Iterator[list[FileEntry]]:
    # Items sharing a non-empty ``batch`` key (the rows of one Parquet row group, which is
    # read as a whole) form one chunk whatever its size; the others are cut every ``size``.
    chunk: list[FileEntry] = []
    key = None
    for e in entries:
        k = getattr(e, "batch", None) or None
        if chunk and (k != key or (k is None and len(chunk) >= size)):
            yield chunk
            chunk = []
        chunk.append(e)
        key = k
    if chunk:
        yield chunk


def _hash_all(entries: Sequence[FileEntry], config: ScanConfig, executor: Executor,
              reporter: Reporter, cache: HashCache | None = None, *,
              worker: Callable[[Sequence[Any]], ChunkResult] | None = None,
              chunk_size: int = CHUNK_SIZE, retries: int = RETRIES,
              ) -> tuple[list[ImageRecord], list[Problem]]:
    """Hash ``entries`` in chunks on ``executor``; retry failed chunks file by file.

    A chunk fails as a whole when its worker dies or times out. Its files are retried one
    per work item (``retries`` rounds). Files that still fail then run once more *alone*,
    one at a time: a dying worker can take other items running beside it (several threads
    of one Dask worker process), and only a file that fails on its own is the culprit.
    Timeouts skip that last step (a stuck worker harms no neighbour, and each try costs
    the whole time limit).
    """
    worker = worker if worker is not None else HashWorker(config)
    sizes = {e.path: (e.size_bytes, e.mtime_ns) for e in entries} if cache is not None else {}
    records: list[ImageRecord] = []
    problems: list[Problem] = []

    def done(chunk: Sequence[FileEntry], outcome: ChunkResult) -> None:
        records.extend(outcome.records)
        if cache is not None:
            cache.add(outcome.records, outcome.problems, config, sizes)
        for p in outcome.problems:
            reporter.problem(p)
        problems.extend(outcome.problems)
        reporter.advance(len(chunk))

    pending: list[list[FileEntry]] = list(_chunks(entries, chunk_size))
    for attempt in range(retries + 1):
        failed: list[tuple[list[FileEntry], BaseException]] = []
        for chunk, outcome in executor.map_unordered(worker, pending):
            if isinstance(outcome, BaseException):
                failed.append((chunk, outcome))
            else:
                done(chunk, outcome)
        if not failed:
            break
        if attempt < retries:
            # Retry file by file, so one poisonous file cannot take its neighbours with it.
            pending = [[e] for chunk, _ in failed for e in chunk]
            continue
        if retries > 0:
            failed = _alone(failed, worker, executor, done)
        for chunk, exc in failed:
            crashed = [_lost(e.path, exc) for e in chunk]
            for p in crashed:
                reporter.problem(p)
            problems.extend(crashed)
            if cache is not None:
                # A results store (Parquet output) records them; a hash cache skips them.
                cache.add([], crashed, config, sizes)
            reporter.advance(len(chunk))
    return records, problems


def _alone(failed: list[tuple[list[FileEntry], BaseException]],
           worker: Callable[[Sequence[Any]], ChunkResult], executor: Executor,
           done: Callable[[Sequence[FileEntry], ChunkResult], None],
           ) -> list[tuple[list[FileEntry], BaseException]]:
    """Run each failed file once more with nothing else in flight; return what still fails."""
    still: list[tuple[list[FileEntry], BaseException]] = []
    for chunk, exc in failed:
        if isinstance(exc, TimeoutError) or getattr(exc, "reason", None) == "timeout":
            still.append((chunk, exc))
            continue
        for entry in chunk:
            for item, outcome in executor.map_unordered(worker, [[entry]]):
                if isinstance(outcome, BaseException):
                    still.append((item, outcome))
                else:
                    done(item, outcome)
    return still


def _lost(path: str, exc: BaseException) -> Problem:
    """The problem of a file whose chunk never came back, after the last retry."""
    reason = getattr(exc, "reason", None)
    if not isinstance(reason, str):
        reason = "timeout" if isinstance(exc, TimeoutError) else "worker-crashed"
    if reason == "timeout":
        message = f"gave up on this file: {exc}; raise --decode-timeout if it is just big"
    else:
        message = f"the worker process died while handling this file ({exc})"
    return Problem(path=path, stage="decode", error=reason, message=message)


def run_scan(paths: Iterable[str | os.PathLike[str]], config: ScanConfig, *,
             reporter: Reporter | None = None, executor: Executor | None = None,
             cache: HashCache | None = None) -> ScanResult:
    """Run the whole pipeline; see :func:`lookalike.scan` for the friendly front end."""
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    paths = list(paths)
    roots = [os.path.abspath(os.fspath(p)) for p in paths]
    walk_stats = WalkStats()
    reporter.phase(1, 3, "walking", None)
    entries: list[FileEntry] = []
    problems: list[Problem] = []
    for item in iter_files(paths, follow_symlinks=config.follow_symlinks, stats=walk_stats):
        if isinstance(item, Problem):
            reporter.problem(item)
            problems.append(item)
        else:
            entries.append(item)
    # One file reached by several paths (overlapping roots, links) is one file.
    entries = unique_files(entries)
    return run_scan_items(
        entries, config, roots=roots, problems=problems, reporter=reporter,
        executor=executor, cache=cache, started=t0,
        listing={"files_seen": walk_stats.files_seen,
                 "skipped_non_image": walk_stats.skipped_non_image,
                 "skipped_symlinks": walk_stats.skipped_symlinks},
    )


def run_scan_items(items: Sequence[FileEntry], config: ScanConfig, *,
                   worker: Callable[[Sequence[Any]], ChunkResult] | None = None,
                   roots: Sequence[str] = (), problems: Iterable[Problem] = (),
                   listing: dict[str, Any] | None = None, reporter: Reporter | None = None,
                   executor: Executor | None = None, cache: HashCache | None = None,
                   retries: int | None = None, chunk_size: int | None = None,
                   started: float | None = None) -> ScanResult:
    """Hash already-listed work items on an executor, then group them (phases 2 and 3).

    :func:`run_scan` calls this after walking local folders; :mod:`lookalike.inputs.remote` calls it
    with items listed from file lists, object stores, tar shards or Parquet files, and a
    worker that can read them.

    Args:
        items: work items with ``path``, ``size_bytes``, ``mtime_ns`` and ``source``
            (:class:`~lookalike.inputs.walk.FileEntry` or
            :class:`lookalike.inputs.remote.RemoteEntry`),
            unique by path. They are hashed in batches of ``chunk_size``.
        worker: picklable callable that turns a batch of items into a :class:`ChunkResult`
            and never raises for a bad file (default: :class:`HashWorker`, local files).
        roots: what the user asked to scan, as recorded in the result.
        problems: problems already found while listing (kept in the result).
        listing: extra stats from listing (e.g. ``files_seen``), merged into ``stats``.
        executor: where batches run (default: local processes, closed at the end).
        cache: a :class:`~lookalike.store.cache.HashCache` or a results store with the same
            ``lookup``/``add``/``flush`` methods (:class:`lookalike.store.parquet.ParquetStore`).
        retries: how often a failed batch is retried, file by file, before its files are
            reported as ``worker-crashed`` (default :data:`RETRIES`).
        chunk_size: items per batch (default :data:`CHUNK_SIZE`).
        started: ``time.perf_counter()`` when listing began, for the ``walk`` timing.

    Returns:
        The :class:`ScanResult`; every item is either in ``records`` or in ``errors``. With
        the default worker, only group members' records carry a ``digest`` (see the module
        docstring); a member whose file changed since it was hashed becomes an error.

    Raises:
        ConfigError: ``retries`` or ``chunk_size`` out of range (before any work).
    """
    from lookalike.errors import ConfigError
    from lookalike.grouping.groups import assemble_groups, cluster_records

    retries = RETRIES if retries is None else retries
    chunk_size = CHUNK_SIZE if chunk_size is None else chunk_size
    if retries < 0:
        raise ConfigError("--retries must be >= 0")
    if chunk_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    reporter = reporter or NullReporter()
    t_walk = time.perf_counter()
    t0 = started if started is not None else t_walk
    # Local files with the default worker: digests for group members only, afterwards. A
    # results store (Parquet output) keeps every file's row, digest included.
    lazy_digests = worker is None and not getattr(cache, "holds_results", False)
    hash_worker = HashWorker(config, file_digest=False) if lazy_digests else worker
    entries = list(items)
    problems = list(problems)

    cached: list[ImageRecord] = []
    todo = entries
    if cache is not None:
        cached, cached_problems, todo = cache.lookup(entries, config)
        for p in cached_problems:
            reporter.problem(p)
        problems.extend(cached_problems)
    reporter.phase(2, 3, "hashing", len(entries))
    reporter.advance(len(entries) - len(todo))
    own_executor = executor is None
    fresh: list[ImageRecord] = []
    hash_problems: list[Problem] = []
    # Everything came from the cache: no pool (nor the multiprocessing import) at all.
    workers = 1
    if todo or executor is not None:
        if executor is None:
            executor = _local_executor(config, len(todo))
        workers = executor.workers
        try:
            fresh, hash_problems = _hash_all(
                todo, config, executor, reporter, cache, worker=hash_worker,
                chunk_size=_fit_chunk(chunk_size, len(todo), executor), retries=retries)
        finally:
            if own_executor:
                executor.close()
            if cache is not None:
                cache.flush()  # keep every finished chunk, also when interrupted
    problems.extend(hash_problems)
    records = sorted([*cached, *fresh], key=attrgetter("path"))
    aliases = {e.path: e.aliases for e in entries if type(e) is FileEntry and e.aliases}
    if aliases:  # the file's other paths, found by the walk (unique_files)
        records = [dataclasses.replace(r, aliases=aliases[r.path]) if r.path in aliases else r
                   for r in records]
    t_hash = time.perf_counter()

    reporter.phase(3, 3, "grouping", None)
    # Every record from the hash cache (nothing hashed now): the cache may hold this very
    # grouping, and which images it confirmed (HashCache.grouping_key says when that is
    # sure); then neither search runs.
    # Only with the default worker: what another worker hashes (and whether it can confirm)
    # is not part of the memo's key.
    memoise = worker is None and hasattr(cache, "grouping_key")
    memo = key = None
    paths = [r.path for r in records]
    if not todo and memoise:
        key = cache.grouping_key(config, paths)
        memo = cache.load_grouping(key) if key is not None else None
    confirm_stats, picked = _confirm(
        records, entries, config, executor=None if own_executor else executor, cache=cache,
        worker=worker, reporter=reporter, retries=retries, chunk_size=chunk_size,
        picked=memo["picked"] if memo is not None else None)
    # An exact hash missing from the cache (hashed just now), or another writer meanwhile,
    # means other records than the memo's: group afresh.
    reused = (memo is not None and not confirm_stats["exact_hashed"]
              and cache.grouping_key(config, paths) == key)
    clusters = memo["clusters"] if reused else cluster_records(
        records, config.threshold, config.grouping)
    picked_paths = {records[i].path for i in picked}
    groups = assemble_groups(records, clusters)
    digested = 0
    if any(m.record.digest is None for g in groups for m in g.members) or \
            any(r.aliases and r.digest is None for r in records):
        # Members hashed lazily, or read from a cache that lazy scans filled.
        local = {e.path for e in entries if type(e) is FileEntry}.__contains__
        groups, clusters, records, digest_problems, digested = _digest_members(
            groups, clusters, records, local, config, cache,
            workers=config.resolved_workers)
        for p in digest_problems:
            reporter.problem(p)
        problems.extend(digest_problems)
    if not reused and memoise:
        key = cache.grouping_key(config, [r.path for r in records])
        if key is not None:
            index = {r.path: i for i, r in enumerate(records)}
            cache.save_grouping(key, {
                "picked": [i for i, r in enumerate(records) if r.path in picked_paths],
                "clusters": [[index[m.record.path] for m in g.members] for g in groups]})
    t_group = time.perf_counter()
    problems.sort(key=lambda p: p.path)
    dup_bytes = sum(m.record.size_bytes for g in groups for m in g.members[1:])
    listing = listing or {}
    stats = {
        "files_seen": listing.get("files_seen", len(entries)),
        "candidates": len(entries),
        "images": len(records),
        "errors": len(problems),
        "errors_by_reason": dict(sorted(Counter(p.error for p in problems).items())),
        "groups": len(groups),
        "duplicates": sum(len(g) - 1 for g in groups),
        "bytes_reclaimable": dup_bytes,
        "hashed": len(todo),
        "from_cache": len(entries) - len(todo),
        "skipped_non_image": listing.get("skipped_non_image", 0),
        "skipped_symlinks": listing.get("skipped_symlinks", 0),
        # Other paths of files already listed (hard links, symlinked folders, overlapping
        # roots): each file was hashed and counted once.
        "aliases": sum(len(r.aliases) for r in records),
        **{k: v for k, v in listing.items()
           if k not in ("files_seen", "skipped_non_image", "skipped_symlinks")},
        "workers": workers,
        **confirm_stats,
        "digested": digested,
        "grouping_from_cache": reused,
        "seconds": {
            "walk": round(t_walk - t0, 3),
            "hash": round(t_hash - t_walk, 3),
            "group": round(t_group - t_hash, 3),
            "total": round(t_group - t0, 3),
        },
    }
    reporter.close()
    return ScanResult(groups=groups, errors=problems, records=records, config=config,
                      roots=list(roots), stats=stats)


def _digest_members(groups: list[Group], clusters: list[list[int]],
                    records: list[ImageRecord], local: Callable[[str], bool],
                    config: ScanConfig, cache: Any, *, workers: int
                    ) -> tuple[list[Group], list[list[int]], list[ImageRecord], list[Problem],
                               int]:
    """Digest the group members (and files with aliases) that have no digest yet and are
    ``local`` files, on
    ``workers`` threads (members read from elsewhere were digested when read).

    Returns the groups and clusters with those digests (exact-duplicate groups are told by
    them), the records, the problems of members whose file changed since it was hashed
    (dropped from records and groups), and how many files were read. The digests go to the
    hash cache (``cache.set_digests``), so a re-scan reads none of them again.
    """

    from lookalike.grouping.groups import assemble_groups, cluster_records

    # Files with several names too: a leakage check can pair a file's names in two sets,
    # and apply checks a kept file against its digest.
    members = [m.record for g in groups for m in g.members]
    grouped = {r.path for r in members}
    want = [r for r in (*members, *(r for r in records if r.aliases and r.path not in grouped))
            if r.digest is None and local(r.path)]
    if not want:
        return groups, clusters, records, [], 0
    digests, problems = digest_files(want, workers)
    if digests and hasattr(cache, "set_digests"):
        from lookalike.grouping.confirm import full_config

        # Also under the full-decode settings: a confirmed member's record comes from there.
        configs = [config] if config.decode == "full" else [config, full_config(config)]
        cache.set_digests([(r.path, r.size_bytes, r.mtime_ns, digests[r.path])
                           for r in want if r.path in digests], configs)
    gone = {p.path for p in problems}
    records = [dataclasses.replace(r, digest=digests[r.path]) if r.path in digests else r
               for r in records if r.path not in gone]
    if gone:
        # A member left: its group may split, and in star grouping a record it had taken
        # may now join another leader, so everything is grouped again.
        clusters = cluster_records(records, config.threshold, config.grouping)
    # Otherwise the same records in the same order, now with digests: the same clusters.
    return assemble_groups(records, clusters), clusters, records, problems, len(want)


def _local_executor(config: ScanConfig, jobs: int) -> Executor:
    """The local pool for ``jobs`` files (no process starts until there is work)."""
    from lookalike.executors import make_executor

    # No pool to start when everything came from the cache (warm re-scans stay instant).
    workers = min(config.resolved_workers, max(1, jobs))
    if workers == 1 and config.workers != 1:
        # One worker still runs in a subprocess (started only if there is work): a
        # decoder that crashes or hangs then costs one file, not the whole scan.
        from lookalike.executors import ProcessExecutor

        return ProcessExecutor(1)
    return make_executor("local", workers)


def _fit_chunk(chunk_size: int, jobs: int, executor: Executor) -> int:
    # At least ~4 chunks per worker, so a short scan still keeps every worker busy to the end.
    return max(1, min(chunk_size, -(-jobs // (4 * executor.workers))))


class _CountOnly:
    """Reporter for the confirmation pass: progress only. A file that fails there keeps its
    fast hash, so its failure is counted in the stats, not reported as the file's error."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    def phase(self, number: int, total: int, name: str, size: int | None) -> None:
        self.inner.phase(number, total, name, size)

    def advance(self, n: int = 1) -> None:
        self.inner.advance(n)

    def problem(self, problem: Problem) -> None:
        pass  # counted by _confirm as exact_failed

    def info(self, message: str) -> None:
        self.inner.info(message)

    def close(self) -> None:
        pass


def _confirm(records: list[ImageRecord], entries: Sequence[Any], config: ScanConfig, *,
             executor: Executor | None, cache: Any, worker: Any, reporter: Reporter,
             retries: int, chunk_size: int, picked: list[int] | None = None
             ) -> tuple[dict[str, int], list[int]]:
    """Replace, in place, the fast hash of every reduced image that may have a match by its
    exact (full-decode) hash (:mod:`lookalike.grouping.confirm`). Returns stats and the indices of
    the images picked (``picked``: those of a stored grouping, instead of searching).

    ``executor`` is the caller's (kept open) or None for a local pool made here. Exact
    hashes are looked up in and added to the hash cache under the full-decode settings; a
    results store (Parquet output) is bypassed, since it holds this scan's settings only.
    """

    from lookalike.grouping.confirm import full_config, needs_exact_hash

    if picked is None:
        picked = needs_exact_hash(records, config)
    if not picked:
        return {"exact_needed": 0, "exact_hashed": 0, "exact_failed": 0}, picked
    exact = full_config(config)
    if worker is None:
        full_worker: Any = HashWorker(exact)
    elif dataclasses.is_dataclass(worker) and hasattr(worker, "config"):
        full_worker = dataclasses.replace(worker, config=exact)
    else:  # a custom worker we cannot re-configure: keep the fast hashes
        return ({"exact_needed": len(picked), "exact_hashed": 0,
                 "exact_failed": len(picked)}, picked)
    store = cache.inner if getattr(cache, "holds_results", False) else cache
    by_path = {e.path: e for e in entries}
    want = [by_path[records[i].path] for i in picked]
    found: list[ImageRecord] = []
    todo = want
    if store is not None:
        # A failure cached for these settings is not retried: that image keeps its fast hash.
        found, _, todo = store.lookup(want, exact)
    counting = _CountOnly(reporter)
    fresh: list[ImageRecord] = []
    if todo:
        counting.phase(3, 3, "grouping: exact re-hash of near matches", len(todo))
        own = executor is None
        run_on = _local_executor(config, len(todo)) if executor is None else executor
        try:
            fresh, _ = _hash_all(todo, exact, run_on, counting, store, worker=full_worker,
                                 chunk_size=_fit_chunk(chunk_size, len(todo), run_on),
                                 retries=retries)
        finally:
            if own:
                run_on.close()
            if store is not None:
                store.flush()
    by_exact = {r.path: r for r in (*found, *fresh)}
    for i in picked:
        rec = by_exact.get(records[i].path)
        # The exact hash must describe the file version the fast one does (a file that
        # changed between the walk and its read was hashed as it is now).
        if rec is not None and (rec.size_bytes, rec.mtime_ns) != (records[i].size_bytes,
                                                                   records[i].mtime_ns):
            del by_exact[records[i].path]
            rec = None
        if rec is not None:
            # Either hash's record may carry the file's digest (same bytes: size and mtime
            # match); keep it, or the member would be read again for it on every re-scan.
            records[i] = dataclasses.replace(rec, source=records[i].source,
                                             aliases=records[i].aliases,
                                             digest=rec.digest or records[i].digest)
    return {"exact_needed": len(picked), "exact_hashed": len(todo),
            "exact_failed": len(picked) - sum(1 for i in picked if records[i].path in by_exact)
            }, picked
