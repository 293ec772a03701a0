"""The scan: the one path from inputs to groups, used by :func:`lookalike.scan` and the CLI.

Phases, in order (numbered in progress output):

1. **list** (:func:`lookalike.inputs.listing.list_inputs`): local folders are walked (stat
   only), URLs, tar shards, Parquet files and file lists are listed; one item per file.
2. **hash**: items already in the Parquet output or the hash cache with the same size and
   mtime (and, in the cache, change time) are not read; the rest are read, decoded once
   and hashed by :class:`~lookalike.worker.HashWorker` on an executor (local processes or
   Dask), in batches, and added to the stores as they finish.
3. **group** (on the driver): (a) images that fast mode decoded at reduced scale and that
   may have a match are hashed again with full decoding (:mod:`lookalike.grouping.confirm`);
   (b) the exact Hamming search; with embeddings, the pairs they propose and verify
   (:mod:`lookalike.verify`); grouping (:mod:`lookalike.grouping.groups`); (c) the
   SHA-256 of each group member's bytes (threads), the only local files whose digest
   anything reads (exact-duplicate groups, the report, ``apply``'s check that a file is
   unchanged), and the pixel digests of members that may be pixel-identical.

Grouping is a pure function of the records, the threshold and the mode. The one thing kept
between scans is its search result: which hash values lie within the radius of each other
(:class:`~lookalike.grouping.edges.Edges`, a pure function of the values), so a re-scan
whose files added no new value searches nothing.

Digests of local files are computed for group members only, as fdupes-style tools hash only
files whose sizes collide: byte-identical files decode identically, so they always share a
hash and a group, and digesting every file would cost ~4% of a photo's hashing time.

Errors: a bad file never stops a scan; it becomes a :class:`~lookalike.errors.Problem`.
Bad parameters raise :class:`~lookalike.errors.ConfigError` before any work. Bugs propagate.

(About 700 lines: :func:`scan` is one sequence of named phases, and each phase's helper sits
below it in that order, so the whole path from inputs to groups reads top to bottom here.)
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal

from lookalike.config import ScanConfig
from lookalike.errors import ConfigError, Problem, TooManyPairs
from lookalike.events import NullReporter, Reporter
from lookalike.grouping.confirm import full_config, needs_exact_hash
from lookalike.grouping.edges import Edges, record_edges
from lookalike.grouping.groups import assemble_groups, cluster_records, link_matches
from lookalike.imaging.facts import read_file_facts
from lookalike.inputs.listing import (
    INPUT_FORMATS,
    InputFormat,
    check_inputs,
    format_of,
    list_inputs,
)
from lookalike.inputs.read import digest_files
from lookalike.inputs.remote import is_url
from lookalike.inputs.walk import FileEntry
from lookalike.model import FileFacts, Group, Hash, ImageRecord
from lookalike.paths import shown
from lookalike.store.base import storable
from lookalike.verify import (
    band_matches,
    band_records,
    check_ready,
    embedding_matches,
    holding,
)
from lookalike.worker import ChunkResult, HashWorker

if TYPE_CHECKING:
    from lookalike.executors.base import Executor
    from lookalike.store.base import HashStore
    from lookalike.store.cache import HashCache

__all__ = ["CHUNK_SIZE", "RETRIES", "ScanResult", "scan"]

CHUNK_SIZE = 16  # files per work item: small enough for smooth progress, big enough for IPC
RETRIES = 1  # a failed chunk is retried file by file this many times before files are errors


@dataclass(slots=True)
class ScanResult:
    """Everything a scan found: groups, per-file problems, all hashed records and stats."""

    groups: list[Group]
    errors: list[Problem]
    records: list[ImageRecord]
    config: ScanConfig
    roots: list[str]
    stats: dict[str, Any] = field(default_factory=dict)
    #: Each pair of paths (a < b) that more than its hashes joined and that ended in one
    #: group, with how and its embeddings' cosine similarity: with embeddings, ``verified``
    #: (the pair itself passed verification) or ``embedding`` (verification was off); in
    #: the verified band (``config.band``), ``aligned``, similarity None. Leakage reports
    #: these as matches.
    embedding_matches: dict[tuple[str, str], tuple[str, float | None]] = field(
        default_factory=dict)

    @property
    def duplicates(self) -> int:
        """Files that are not the representative of their group."""
        return sum(len(g) - 1 for g in self.groups)


def scan(paths: Iterable[str | os.PathLike[str]], config: ScanConfig, *,
         files_from: str | None = None, input_format: InputFormat = "auto",
         column: str | None = None, name_column: str | None = None,
         storage_options: Mapping[str, Any] | None = None,
         engine: Literal["local", "dask"] = "local", scheduler: str | None = None,
         executor: Executor | None = None, cache: HashCache | None = None,
         parquet_out: str | None = None, retries: int | None = None,
         batch_size: int | None = None, reporter: Reporter | None = None) -> ScanResult:
    """Scan any inputs on any engine; see :func:`lookalike.scan` for the friendly front end.

    Args:
        paths: local files and folders, URLs, tar shards or Parquet files
            (:func:`~lookalike.inputs.listing.list_inputs`).
        config: hashing and grouping settings.
        files_from, input_format, column, name_column, storage_options: more inputs and how
            to read them (:func:`~lookalike.inputs.listing.list_inputs`).
        engine: ``local`` (processes on this machine) or ``dask``.
        scheduler: Dask scheduler address (implies ``engine="dask"``); without one the dask
            engine starts a local cluster of ``config.workers`` processes.
        executor: an executor to use instead (not closed here).
        cache: a :class:`~lookalike.store.cache.HashCache`: unchanged files are not read.
        parquet_out: write every item's result to this Parquet dataset (a folder, local or a
            URL) as the scan runs; items already there are not hashed again.
        retries: how often a failed batch is retried file by file before its files are
            reported as ``worker-crashed`` (default :data:`RETRIES`).
        batch_size: images per work item (default :data:`CHUNK_SIZE`; on Dask up to the
            executor's hint, with at least 4 items per worker; a Parquet row group is always
            one item).
        reporter: progress and problems.

    Returns:
        The :class:`ScanResult`: every item is in ``records`` or in ``errors``. Only group
        members' records (and, with ``parquet_out``, all) carry a local file's ``digest``; a
        member whose file changed since it was hashed becomes an error.

    Raises:
        ConfigError: bad options, missing inputs, a missing extra, an unreachable
            scheduler, or Parquet output made with other settings (before any work).
    """
    targets = [os.fspath(p) for p in paths]
    if not targets and files_from is None:
        raise ConfigError("nothing to scan: give paths or a file list")
    engine = "dask" if scheduler is not None else engine
    if engine not in ("local", "dask"):
        raise ConfigError(f"unknown engine {engine!r}; use 'local' or 'dask'")
    if input_format not in INPUT_FORMATS:
        raise ConfigError(f"the input format must be one of {', '.join(INPUT_FORMATS)}")
    retries = RETRIES if retries is None else retries
    if retries < 0:
        raise ConfigError("retries must be >= 0")
    if batch_size is not None and batch_size < 1:
        raise ConfigError("the batch size must be >= 1")
    reporter = reporter or NullReporter()
    options = dict(storage_options or {})
    check_ready(config)  # with embeddings: a missing model or package, before any work
    # A missing folder or file list, a column no input has: one error, no progress line.
    check_inputs(targets, files_from=files_from, input_format=input_format, column=column,
                 name_column=name_column)
    if files_from is not None and not is_url(files_from):
        files_from = os.path.abspath(files_from)  # a root and its files' source, as reported
    t0 = time.perf_counter()
    with ExitStack() as resources:
        pool = _Pool(config, executor, engine, scheduler)
        resources.callback(pool.close)
        output = None
        if parquet_out is not None:
            from lookalike.store.parquet import ParquetStore

            output = ParquetStore(parquet_out, storage_options=options)
            resources.callback(output.close)
        if engine == "dask":
            pool.get(0)  # the cluster lists containers and learns its batch size first

        # 1. list
        walking = files_from is None and all(
            format_of(p, input_format) == "files" and not is_url(p) for p in targets)
        # The phase line once the inputs are found usable: a file list that cannot be read
        # or a folder without the shards asked for is then the only line.
        items, problems, listing = list_inputs(
            targets, files_from=files_from, input_format=input_format, column=column,
            name_column=name_column, storage_options=options,
            follow_symlinks=config.follow_symlinks, stat_listed=engine == "local",
            executor=pool.executor, reporter=reporter,
            started=lambda: reporter.phase(1, 3, "walking" if walking else "listing", None))
        # Each once (a folder given twice is one root: one quarantine folder, one line).
        roots = list(dict.fromkeys(p if is_url(p) else os.path.abspath(p) for p in targets))
        if files_from is not None:
            roots.append(files_from)
        t_walk = time.perf_counter()

        # 2. hash
        # Only a Parquet output wants every file's digest now; otherwise local files are
        # digested later, and only if they are in a group.
        worker = HashWorker(config, file_digest=output is not None, storage_options=options)
        records, hash_problems, fresh = _hash_phase(
            items, config, worker, pool, cache, output, reporter, retries, batch_size)
        problems.extend(hash_problems)
        t_hash = time.perf_counter()

        # 3. group
        reporter.phase(3, 3, "grouping", None)
        edges = _EdgeStore(cache, config, roots)
        confirm_stats = _confirm(records, items, config, worker, pool, cache, edges,
                                 reporter, retries, batch_size)
        # Local files as walked: a digest is taken only of the file the walk listed.
        listed = {e.path: e for e in items if type(e) is FileEntry}
        records, blank_problems = _digest_featureless(records, listed, config, cache)
        for p in blank_problems:
            reporter.problem(p)
        problems.extend(blank_problems)
        near = edges.get(records, config.resolved_threshold)
        links, proposed, embed_stats = embedding_matches(records, items, config, near, options,
                                                         cache, fresh)
        if embed_stats.get("embed_failed"):
            failed = sorted(r.path for r in records if r.embedding is None)
            named = ", ".join(shown(p) for p in failed[:5]) + (
                f" and {len(failed) - 5} more" if len(failed) > 5 else "")
            reporter.info(f"{embed_stats['embed_failed']} images got no embedding (the model "
                          f"failed on them): they match by their hashes only: {named}")
        aligned, band_stats = _band(records, items, config, near, edges, links, options,
                                    cache, fresh, reporter)
        links = {**aligned, **links}
        clusters = cluster_records(records, config.resolved_threshold, config.grouping, near,
                                   links)
        hashed_records = records
        groups, records, digest_problems, digested = _digest_members(
            records, clusters, near, links, listed, config, cache)
        held = holding(hashed_records, proposed, links, groups, config)
        for p in digest_problems:
            reporter.problem(p)
        problems.extend(digest_problems)
    t_group = time.perf_counter()
    problems.sort(key=lambda p: p.path)
    stats = {
        "files_seen": listing.get("files_seen", len(items)),
        "candidates": len(items),
        "images": len(records),
        "errors": len(problems),
        "errors_by_reason": dict(sorted(Counter(p.error for p in problems).items())),
        "groups": len(groups),
        "duplicates": sum(len(g) - 1 for g in groups),
        "hashed": len(fresh),
        "from_cache": len(items) - len(fresh),
        "skipped_non_image": listing.get("skipped_non_image", 0),
        "skipped_symlinks": listing.get("skipped_symlinks", 0),
        # Other paths of files already listed (hard links, symlinked folders, overlapping
        # roots): each file was hashed and counted once.
        "aliases": sum(len(r.aliases) for r in records),
        **{k: v for k, v in listing.items()
           if k not in ("files_seen", "skipped_non_image", "skipped_symlinks")},
        "workers": pool.workers,
        **confirm_stats,
        **embed_stats,
        **band_stats,
        "digested": digested,
        # Hash values the last scan of these inputs did not have (all on a first scan). With
        # none, the edges kept from that scan are used and nothing is searched.
        "codes_new": len(edges.new),
        # Images whose names the hash cache or the Parquet output cannot hold (not UTF-8):
        # hashed by every scan, and not found by queries.
        **({"uncached_names": n} if (cache is not None or output is not None) and (n := sum(
            1 for r in records if not storable(r.path))) else {}),
        "seconds": {
            "walk": round(t_walk - t0, 3),
            "hash": round(t_hash - t_walk, 3),
            "group": round(t_group - t_hash, 3),
            "total": round(t_group - t0, 3),
        },
    }
    reporter.close()
    return ScanResult(groups=groups, errors=problems, records=records, config=config,
                      roots=roots, stats=stats, embedding_matches=held)


class _Pool:
    """The scan's executor: the caller's, a Dask cluster, or local processes started only
    when there is work (a warm re-scan starts none), sized for the work at hand (a pool
    started for a few new files is replaced when the confirmation pass needs more)."""

    def __init__(self, config: ScanConfig, executor: Executor | None, engine: str,
                 scheduler: str | None) -> None:
        self.config, self.engine, self.scheduler = config, engine, scheduler
        self.executor = executor
        self._own = executor is None
        self.workers = executor.workers if executor is not None else 1

    def get(self, jobs: int) -> Executor:
        wanted = min(self.config.resolved_workers, max(1, jobs))
        if (self._own and self.engine == "local" and self.executor is not None
                and self.executor.workers < wanted):
            self.executor.close()
            self.executor = None
        if self.executor is None:
            from lookalike.executors import ProcessExecutor, make_executor

            if self.engine == "dask":
                self.executor = make_executor("dask", self.config.workers, self.scheduler)
            else:
                # One worker still runs in a subprocess: a decoder that crashes or hangs
                # then costs one file, not the whole scan.
                self.executor = (ProcessExecutor(1) if wanted == 1 and self.config.workers != 1
                                 else make_executor("local", wanted))
            self.workers = self.executor.workers
        return self.executor

    def batch(self, batch_size: int | None, jobs: int) -> int:
        """Items per work item for ``jobs`` items on this pool."""
        executor = self.get(jobs)
        hint = executor.batch_size_hint
        if batch_size is None and hint is not None:
            # Big batches amortise the engine's per-task cost; at least 4 batches per
            # worker keep them all busy until the end.
            batch_size = max(CHUNK_SIZE, min(hint, jobs // (4 * max(1, executor.workers))))
        size = CHUNK_SIZE if batch_size is None else batch_size
        # At least ~4 chunks per worker, so a short scan keeps every worker busy to the end.
        return max(1, min(size, -(-jobs // (4 * executor.workers))))

    def close(self) -> None:
        if self._own and self.executor is not None:
            self.executor.close()


def _hash_phase(items: Sequence[Any], config: ScanConfig, worker: HashWorker, pool: _Pool,
                cache: HashCache | None, output: HashStore | None, reporter: Reporter,
                retries: int, batch_size: int | None
                ) -> tuple[list[ImageRecord], list[Problem], set[str]]:
    """Phase 2: the records of ``items`` (sorted by path), their problems, and the paths of
    the items read now (the rest came from the output or the cache)."""
    records: list[ImageRecord] = []
    problems: list[Problem] = []
    todo: Sequence[Any] = items
    if output is not None:
        found, bad, todo = output.lookup(todo, config)
        records += found
        problems += bad
    if cache is not None and todo:
        asked = todo
        found, bad, todo = cache.lookup(asked, config)
        if output is not None:
            # The output lists every item with its digest: cache hits go there too, local
            # ones digested now (a file changed since it was cached is hashed again).
            found, changed = _with_digests(found, asked, config)
            todo = [*todo, *changed]
            # With the file version each problem is about, so a resumed scan retries the
            # file once it changed.
            output.add(found, bad, config,
                       {e.path: (e.size_bytes, e.mtime_ns, e.ctime_ns) for e in asked})
        records += found
        problems += bad
    for p in problems:
        reporter.problem(p)
    if len(todo) < len(items):
        reporter.info(f"{len(items) - len(todo)} of {len(items)} files unchanged since they "
                      "were hashed: not read again")
    reporter.phase(2, 3, "hashing", len(todo))
    if todo:
        stores = [s for s in (cache, output) if s is not None]
        try:
            fresh, bad = _run_batches(todo, config, worker, pool, stores, reporter,
                                      pool.batch(batch_size, len(todo)), retries)
        finally:
            for s in stores:
                s.flush()  # keep every finished batch, also when interrupted
        records += fresh
        problems += bad
    records.sort(key=attrgetter("path"))
    aliases = {e.path: e.aliases for e in items if type(e) is FileEntry and e.aliases}
    if aliases:  # the file's other paths, found by the walk (unique_files)
        records = [dataclasses.replace(r, aliases=aliases[r.path]) if r.path in aliases else r
                   for r in records]
    return records, problems, {e.path for e in todo}


def _with_digests(records: list[ImageRecord], items: Sequence[Any], config: ScanConfig
                  ) -> tuple[list[ImageRecord], list[Any]]:
    """``records`` (from the hash cache) with every local file's digest: a scan that
    digests group members only leaves cache rows without one. Also returns the items of
    files that changed since they were cached, to hash again."""
    by_path = {e.path: e for e in items if type(e) is FileEntry}
    missing = [r for r in records if r.digest is None and r.path in by_path]
    if not missing:
        return records, []
    digests, problems = digest_files(missing, config.resolved_workers, by_path)
    gone = {p.path for p in problems}
    kept = [dataclasses.replace(r, digest=digests[r.path]) if r.path in digests else r
            for r in records if r.path not in gone]
    return kept, [by_path[path] for path in sorted(gone)]


def _chunks(entries: Sequence[Any], size: int) -> Iterator[list[Any]]:
    # Items sharing a non-empty ``batch`` key (the rows of one Parquet row group, which is
    # read as a whole) form one chunk whatever its size; the others are cut every ``size``.
    chunk: list[Any] = []
    key = None
    for e in entries:
        k = e.batch or None
        if chunk and (k != key or (k is None and len(chunk) >= size)):
            yield chunk
            chunk = []
        chunk.append(e)
        key = k
    if chunk:
        yield chunk


def _run_batches(entries: Sequence[Any], config: ScanConfig, worker: HashWorker, pool: _Pool,
                 stores: Sequence[HashStore], reporter: Reporter, chunk_size: int,
                 retries: int) -> tuple[list[ImageRecord], list[Problem]]:
    """Hash ``entries`` in chunks on the pool; add each chunk's results to ``stores``;
    retry failed chunks file by file.

    A chunk fails as a whole when its worker dies or times out. Its files are retried one
    per work item (``retries`` rounds). Files that still fail then run once more *alone*,
    one at a time: a dying worker can take other items running beside it (several threads
    of one Dask worker process), and only a file that fails on its own is the culprit.
    Timeouts skip that last step (a stuck worker harms no neighbour, and each try costs
    the whole time limit).
    """
    executor = pool.get(len(entries))
    sizes: dict[str, tuple[int, ...]] = {
        e.path: (e.size_bytes, e.mtime_ns, e.ctime_ns) for e in entries} if stores else {}
    records: list[ImageRecord] = []
    problems: list[Problem] = []

    def done(chunk: Sequence[Any], outcome: ChunkResult) -> None:
        records.extend(outcome.records)
        for s in stores:
            s.add(outcome.records, outcome.problems, config, sizes)
        for p in outcome.problems:
            reporter.problem(p)
        problems.extend(outcome.problems)
        reporter.advance(len(chunk))

    pending: list[list[Any]] = list(_chunks(entries, chunk_size))
    for attempt in range(retries + 1):
        failed: list[tuple[list[Any], BaseException]] = []
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
            done(chunk, ChunkResult([], [_lost(e.path, exc) for e in chunk]))
    return records, problems


def _alone(failed: list[tuple[list[Any], BaseException]],
           worker: Callable[[Sequence[Any]], ChunkResult], executor: Executor,
           done: Callable[[Sequence[Any], ChunkResult], None],
           ) -> list[tuple[list[Any], BaseException]]:
    """Run each failed file once more with nothing else in flight; return what still fails."""
    still: list[tuple[list[Any], BaseException]] = []
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
        message = f"gave up on this file: {exc}; allow a longer decode timeout if it is big"
    else:
        message = f"the worker process died while handling this file ({exc})"
    return Problem(path=path, stage="decode", error=reason, message=message)


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


def _confirm(records: list[ImageRecord], items: Sequence[Any], config: ScanConfig,
             worker: HashWorker, pool: _Pool, cache: HashCache | None, edges: _EdgeStore,
             reporter: Reporter, retries: int, batch_size: int | None) -> dict[str, int]:
    """Phase 3a: replace, in place, the fast hash of every reduced image that may have a
    match by its exact (full-decode) hash (:mod:`lookalike.grouping.confirm`); returns stats.

    Exact hashes are looked up in and added to the hash cache under the full-decode
    settings (not to a Parquet output: it holds this scan's settings only).
    """
    picked = needs_exact_hash(records, config, lambda radius: edges.get(records, radius))
    if not picked:
        return {"exact_needed": 0, "exact_hashed": 0, "exact_failed": 0}
    exact = full_config(config)
    by_path = {e.path: e for e in items}
    todo: Sequence[Any] = [by_path[records[i].path] for i in picked]
    found: list[ImageRecord] = []
    if cache is not None:
        # A failure cached for these settings is not retried: that image keeps its fast hash.
        found, _, todo = cache.lookup(todo, exact)
    fresh: list[ImageRecord] = []
    if todo:
        counting = _CountOnly(reporter)
        counting.phase(3, 3, "grouping: exact re-hash of near matches", len(todo))
        stores = [cache] if cache is not None else []
        try:
            # Digests too: the bytes are read anyway, and a member needs one.
            full_worker = dataclasses.replace(worker, config=exact, file_digest=True)
            fresh, _ = _run_batches(todo, exact, full_worker,
                                    pool, stores, counting, pool.batch(batch_size, len(todo)),
                                    retries)
        finally:
            if cache is not None:
                cache.flush()
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
            records[i] = dataclasses.replace(
                rec, source=records[i].source, aliases=records[i].aliases,
                digest=rec.digest or records[i].digest,
                facts=rec.facts if rec.facts is not None else records[i].facts,
                embedding=records[i].embedding)
    return {"exact_needed": len(picked), "exact_hashed": len(todo),
            "exact_failed": len(picked) - sum(1 for i in picked if records[i].path in by_exact)}


class _EdgeStore:
    """The scan's near-hash searches (:func:`~lookalike.grouping.edges.record_edges`),
    starting from the edges the hash cache kept from the last scan of the same inputs, and
    keeping the new ones there: a re-scan that adds no hash value searches nothing."""

    def __init__(self, cache: HashCache | None, config: ScanConfig, roots: Sequence[str]):
        self.cache, self.config, self.roots = cache, config, roots
        self.new: set[int] = set()  # values absent from the stored edges

    def get(self, records: Sequence[ImageRecord], radius: int, subset: str | None = None
            ) -> Edges:
        """The edges of ``records`` at ``radius``; ``subset`` names a rule that chose some
        of the scan's records (the verified band's pictures): their edges are kept apart
        from those of all records at the same radius (the confirmation pass searches
        ``threshold + 16``), which would otherwise replace each other at every scan."""
        cache = self.cache
        scope = self.roots if subset is None else [*self.roots, f"#{subset}"]
        known = cache.load_edges(self.config, scope, radius) if cache is not None else None
        edges = record_edges(records, radius, known)
        if edges is not known:
            if subset is None:
                reused = known.codes if known is not None and known.nbits == edges.nbits else ()
                self.new |= edges.codes.difference(reused)
            if cache is not None:
                cache.save_edges(self.config, scope, edges)
        return edges


def _band(records: Sequence[ImageRecord], items: Sequence[Any], config: ScanConfig,
          near: Edges, edges: _EdgeStore, links: Mapping[tuple[int, int], str],
          options: Mapping[str, Any], cache: HashCache | None, fresh: Collection[str],
          reporter: Reporter) -> tuple[dict[tuple[int, int], str], dict[str, Any]]:
    """Phase 3b': the verified band (:func:`lookalike.verify.band_matches`), when
    ``config.band`` is on: its search, over the pictures it tries, is kept with the other
    edges (a re-scan that adds no value searches nothing), its verdicts in the cache. A band
    whose pairs would not fit in memory is left out, with a line saying so: the groups are
    then the hashes' alone."""
    if not config.resolved_band:
        return {}, {}
    none = {"band_pairs": 0, "band_tried": 0, "band_joined": 0, "band_read": 0,
            "band_cached": 0}
    tried = band_records(records)
    if len(tried) < 2:
        return {}, none
    try:
        band = edges.get([records[k] for k in tried], config.resolved_band, subset="band")
    except TooManyPairs:  # the search's memory guard (grouping.edges), not a cache error
        why = (f"its search to {config.resolved_band} bits would pair more of these "
               f"{len(tried):,} pictures' hashes than fit in memory")
        reporter.info(f"the verified band was left out: {why}; a lower band searches less "
                      "(0: off)")
        return {}, {**none, "band_skipped": why}
    return band_matches(records, items, config, near, tried, band, links, options, cache,
                        fresh)


def _digest_featureless(records: list[ImageRecord], listed: Mapping[str, FileEntry],
                        config: ScanConfig, cache: HashCache | None
                        ) -> tuple[list[ImageRecord], list[Problem]]:
    """Phase 3a': the file digests of the local records whose hash is featureless (blank or
    solid pictures, :attr:`~lookalike.model.Hash.featureless`): grouping joins those by
    their bytes only (:func:`~lookalike.grouping.groups.cluster_records`). Usually none or
    few; cached, so a re-scan reads none again. Records whose file changed since it was
    hashed are dropped, with their problems."""
    want = [r for r in records if r.hash.featureless and r.digest is None and r.path in listed]
    if not want:
        return records, []
    records, problems, _ = _with_file_digests(records, want, config, cache, listed)
    return records, problems


def _with_file_digests(records: list[ImageRecord], want: list[ImageRecord],
                       config: ScanConfig, cache: HashCache | None,
                       listed: Mapping[str, FileEntry]
                       ) -> tuple[list[ImageRecord], list[Problem], set[str]]:
    """``records`` with the file digests of ``want`` (some of them), read on threads and
    kept in the hash cache; a file that changed since it was hashed, or is no longer the
    file the walk ``listed``, is dropped. Returns the records, the problems and the paths
    dropped."""
    digests, problems = digest_files(want, config.resolved_workers, listed)
    if digests and cache is not None:
        # Also under the full-decode settings: a confirmed record comes from there.
        configs = [config] if config.decode == "full" else [config, full_config(config)]
        cache.set_digests([(r.path, r.size_bytes, r.mtime_ns, digests[r.path])
                           for r in want if r.path in digests], configs)
    gone = {p.path for p in problems}
    return ([dataclasses.replace(r, digest=digests[r.path]) if r.path in digests else r
             for r in records if r.path not in gone], problems, gone)


def _digest_members(records: list[ImageRecord], clusters: list[list[int]], edges: Edges,
                    links: dict[tuple[int, int], str], listed: Mapping[str, FileEntry],
                    config: ScanConfig, cache: HashCache | None
                    ) -> tuple[list[Group], list[ImageRecord], list[Problem], int]:
    """Phase 3c: digest the group members (and files with aliases) that are local files
    (``listed``, by the walk)
    and have no digest yet, on threads (items read from elsewhere were digested when read).

    Returns the groups (exact-duplicate groups are told by digests), the records, the
    problems of members whose file changed since it was hashed (dropped from records and
    groups), and how many files were read. The digests go to the hash cache, so a re-scan
    reads none of them again.
    """
    # Files with several names too: a leakage check can pair a file's names in two sets,
    # and apply checks a kept file against its digest.
    members = {i for c in clusters for i in c}
    want = [r for i, r in enumerate(records)
            if (i in members or r.aliases) and r.digest is None and r.path in listed]
    old_records = records
    records, problems, gone = _with_file_digests(records, want, config, cache, listed)
    kept = [i for i, r in enumerate(old_records) if r.path not in gone]
    if gone:
        # A member left: its group may split, and in star grouping a record it had taken
        # may now join another leader, so everything is grouped again.
        new_index = {old: new for new, old in enumerate(kept)}
        links = {(new_index[a], new_index[b]): kind for (a, b), kind in links.items()
                 if a in new_index and b in new_index}
        edges = record_edges(records, config.resolved_threshold, edges)
        clusters = cluster_records(records, config.resolved_threshold, config.grouping, edges,
                                   links)
    # Otherwise the same records in the same order, now with digests: the same clusters.
    records = _with_header_facts(records, clusters, listed, config, cache)
    records = _with_pixel_digests(records, clusters, listed, config, cache)
    return (assemble_groups(records, clusters, link_matches(records, clusters, edges, links)),
            records, problems, len(want))


def _with_header_facts(records: list[ImageRecord], clusters: list[list[int]],
                       listed: Mapping[str, FileEntry], config: ScanConfig,
                       cache: HashCache | None) -> list[ImageRecord]:
    """``records`` with the header facts of the group members whose cached rows have none,
    or none on :attr:`~lookalike.model.FileFacts.frames` (stored by an older version): read
    once (0.05 ms a small PNG) and kept in the hash cache. The keep policy needs them (a
    file of several pictures is never removed for its first), and so do pixel digests."""
    want = [records[i] for c in clusters for i in c
            if ((facts := records[i].facts) is None or facts.frames is None)
            and records[i].path in listed]
    if not want:
        return records
    found = {r.path: f for r in want if _unchanged(r) and (f := read_file_facts(r.path)) !=
             FileFacts()}
    if found and cache is not None:
        configs = [config] if config.decode == "full" else [config, full_config(config)]
        cache.set_digests([(r.path, r.size_bytes, r.mtime_ns, found[r.path].to_text())
                           for r in want if r.path in found], configs, column="facts")
    return [dataclasses.replace(r, facts=found[r.path]) if r.path in found else r
            for r in records]


def _unchanged(record: ImageRecord) -> bool:
    """Whether ``record``'s file still has the size and mtime it was hashed with (facts
    read from another version must not be stored under this one's)."""
    try:
        st = os.stat(record.path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (record.size_bytes, record.mtime_ns)


def _with_pixel_digests(records: list[ImageRecord], clusters: list[list[int]],
                        listed: Mapping[str, FileEntry], config: ScanConfig,
                        cache: HashCache | None) -> list[ImageRecord]:
    """``records`` with the pixel digests of the members of groups that may be
    pixel-identical (:func:`lookalike.worker.pixel_digests`; cached like file digests).

    A group is ``exact`` when its members share one file digest or one pixel digest
    (:func:`~lookalike.grouping.groups.group_kind`; leakage mode groups pairs), and identical
    pixels give identical hashes and sizes: so only members that share both with a file of other
    bytes can be pixel-identical to another without being byte-identical. Those are few (a
    photo re-saved losslessly, or with other metadata); every other image is decoded once,
    for its hash only. Files of one digest are decoded once.
    """
    if not config.pixel_digest:
        return records
    from lookalike.worker import pixel_digests

    # An older cache's pixel digest of a file of several pictures is its first picture's.
    records = [dataclasses.replace(r, pixel_digest=None)
               if r.pixel_digest and r.facts is not None and r.facts.frames else r
               for r in records]

    same_hash: dict[tuple[int, Hash, int, int], list[int]] = defaultdict(list)
    for k, cluster in enumerate(clusters):
        for i in cluster:  # identical pixels: one hash, one size
            r = records[i]
            same_hash[(k, r.hash, r.width, r.height)].append(i)
    # Not a file of several pictures (an animation, pages): its pixel digest would be its
    # first picture's, and a still copy of that picture would be "exact".
    want = [records[i] for members in same_hash.values()
            if len({records[i].digest for i in members}) > 1
            for i in members if records[i].pixel_digest is None and records[i].path in listed
            and not ((facts := records[i].facts) is not None and facts.frames)]
    decode_for = {r.path: r.digest or r.path for r in want}  # one decode per file digest
    first = {key: path for path, key in reversed(decode_for.items())}
    decoded = pixel_digests([r for r in want if first[decode_for[r.path]] == r.path], config)
    found = {path: decoded[first[key]] for path, key in decode_for.items()
             if first[key] in decoded}
    if not found:
        return records
    if cache is not None:
        configs = [config] if config.decode == "full" else [config, full_config(config)]
        cache.set_digests([(r.path, r.size_bytes, r.mtime_ns, found[r.path])
                           for r in want if r.path in found], configs, column="pixel_digest")
    return [dataclasses.replace(r, pixel_digest=found[r.path]) if r.path in found else r
            for r in records]
