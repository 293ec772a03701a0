"""The hash cache: an embedded SQLite store so re-scans only hash what changed.

Rows are keyed by (settings key, path) and valid while the file's size and mtime (ns) are
unchanged. The settings key covers everything that changes a hash value: method, hash size,
decode mode, pixel-digest flag, flip/rotation invariance and
:data:`~lookalike.config.DECODER_VERSION`, so changing any
of them simply misses the cache. Unreadable files are cached too (as their problem), so a
re-scan of an unchanged tree decodes nothing at all.

Safety: WAL journal mode and batched transactions, so a scan killed mid-run leaves a
consistent cache holding every batch committed so far; ``busy_timeout`` lets two scans share
one cache file.

Default location: ``$LOOKALIKE_CACHE``, else ``$XDG_CACHE_HOME/lookalike/hashes.sqlite``,
else ``~/.cache/lookalike/hashes.sqlite``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import ConfigError, Problem
from lookalike.model import Hash, ImageRecord, hash_from_hex, make_record

if TYPE_CHECKING:
    from lookalike.config import ScanConfig
    from lookalike.inputs.walk import FileEntry

__all__ = ["HashCache", "default_cache_path", "settings_key"]

SCHEMA = 1
BATCH = 500  # rows per transaction: cheap commits, little work lost on a kill
# Columns read back by lookup(), in the order it unpacks them: failures' details included,
# so that a row and its problem come from one state of the cache (one statement).
_COLUMNS = ("path, size, mtime_ns, ok, width, height, format, hash, nbits, digest, pixel_digest, "
            "error, stage, message")
_RETRY_CODES = frozenset({"vanished", "worker-crashed", "permission-denied", "timeout",
                          "too-large", "changed-during-scan", "read-error", "os-error"})


def _storable(path: str) -> bool:
    """Whether ``path`` can be a cache key (SQLite text must be valid UTF-8)."""
    if path.isascii():
        return True
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def default_cache_path() -> Path:
    """Where the cache lives unless ``--cache`` says otherwise."""
    env = os.environ.get("LOOKALIKE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lookalike" / "hashes.sqlite"


def settings_key(config: ScanConfig) -> str:
    """Everything that changes a stored value, as one string."""
    from lookalike.config import DECODER_VERSION

    return (f"{config.method}/{config.resolved_hash_size}/{config.decode}/"
            f"pd{int(config.pixel_digest)}/inv-{config.invariant}/dec{DECODER_VERSION}")


class HashCache:
    """A SQLite-backed store of per-file hashes and problems.

    Args:
        path: the database file (created with its folder if missing).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=60000")
            self._create()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"cannot use hash cache {self.path}: {exc}; pass --cache OTHER_PATH or "
                "--no-cache, or delete the file"
            ) from None
        self._pending: list[tuple] = []
        # Grouping memo bookkeeping (see grouping_key): the generation first seen, minus the
        # rows this object wrote since; False once another writer was seen.
        self._base_generation: int | None = None
        self._own_writes = 0
        self._unshared = True

    def _create(self) -> None:
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE IF NOT EXISTS files (
                key TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL, ok INTEGER NOT NULL,
                width INTEGER, height INTEGER, format TEXT, hash TEXT, nbits INTEGER,
                digest TEXT, pixel_digest TEXT, error TEXT, stage TEXT, message TEXT,
                updated REAL NOT NULL,
                PRIMARY KEY (key, path)
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS groupings (
                fingerprint TEXT PRIMARY KEY, clusters TEXT NOT NULL, updated REAL NOT NULL
            );
            INSERT OR IGNORE INTO meta VALUES ('generation', '0');
            CREATE TRIGGER IF NOT EXISTS files_inserted AFTER INSERT ON files BEGIN
                UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'generation';
            END;
            CREATE TRIGGER IF NOT EXISTS files_updated AFTER UPDATE ON files BEGIN
                UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'generation';
            END;
            CREATE TRIGGER IF NOT EXISTS files_deleted AFTER DELETE ON files BEGIN
                UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'generation';
            END;
            """
        )
        row = self._db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
        elif int(row[0]) != SCHEMA:
            raise sqlite3.DatabaseError(f"cache schema {row[0]} is not {SCHEMA}")

    # -- reading ---------------------------------------------------------------------------

    def lookup(self, entries: Sequence[FileEntry], config: ScanConfig
               ) -> tuple[list[ImageRecord], list[Problem], list[FileEntry]]:
        """Split ``entries`` into cached records, cached problems, and files still to hash."""
        key = settings_key(config)
        method, nbits = config.method, config.nbits
        records: list[ImageRecord] = []
        problems: list[Problem] = []
        todo: list[FileEntry] = []
        paths = [e.path for e in entries]
        if not all(map(str.isascii, paths)):
            # SQLite text is UTF-8: a name that is not (undecodable bytes, kept by Python as
            # surrogates) cannot be a key, so such files are simply hashed every time.
            todo = [e for e in entries if not _storable(e.path)]
            if todo:
                entries = [e for e in entries if _storable(e.path)]
                paths = [e.path for e in entries]
        self._observe()
        get = self._rows(key, paths).get
        self._observe()  # a write between the two would make these rows a mixed state
        # This loop runs once per file of every warm re-scan: rows are unpacked at once and
        # records rebuilt by the fast constructors (same values and checks as the dataclass
        # ones).
        add_record, new_record, parse = records.append, make_record, hash_from_hex
        for e in entries:
            path = e.path
            r = get(path)
            if r is None:
                todo.append(e)
                continue
            (_, size, mtime_ns, ok, width, height, fmt, hx, bits, digest, pdigest, error, stage,
             message) = r
            if size != e.size_bytes or mtime_ns != e.mtime_ns or (ok and bits != nbits):
                todo.append(e)
            elif ok:
                add_record(new_record(path, size, mtime_ns, width, height, fmt,
                                      parse(hx, method, nbits), digest, pdigest, e.source, ()))
            else:
                problems.append(Problem(path=path, stage=stage, error=error, message=message))
        return records, problems, todo

    def _rows(self, key: str, paths: list[str]) -> dict[str, tuple]:
        """The stored rows of ``paths`` under ``key``, by path (missing paths absent)."""
        if not paths:
            return {}
        db = self._db
        # Usually the cache holds about the files of this scan: then one range scan of the
        # primary key over [min path, max path] beats loading a table of wanted paths and
        # joining it. Bounded: past 2x the wanted rows (caches of many other folders, or a
        # scan of scattered files) fall back to the join.
        limit = 2 * len(paths) + 256
        cur = db.execute(f"SELECT {_COLUMNS} FROM files WHERE key = ? AND path BETWEEN ? AND ?",
                         (key, min(paths), max(paths)))
        rows = cur.fetchmany(limit)
        if len(rows) < limit:
            return {r[0]: r for r in rows}
        cur.close()
        db.execute("CREATE TEMP TABLE IF NOT EXISTS want (path TEXT PRIMARY KEY)")
        db.execute("DELETE FROM want")
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO want VALUES (?)", ((p,) for p in paths))
        db.execute("COMMIT")
        cols = ", ".join(f"f.{c}" for c in _COLUMNS.split(", "))
        rows = db.execute(
            f"SELECT {cols} FROM want JOIN files f ON f.key = ? AND f.path = want.path", (key,)
        ).fetchall()
        db.execute("DELETE FROM want")
        return {r[0]: r for r in rows}

    def records(self, config: ScanConfig, under: str | None = None) -> Iterator[ImageRecord]:
        """Every cached record for ``config`` (optionally only paths under a folder)."""
        key = settings_key(config)
        sql = ("SELECT path, size, mtime_ns, width, height, format, hash, digest, pixel_digest "
               "FROM files WHERE key = ? AND ok = 1")
        args: tuple = (key,)
        if under is not None:
            prefix = os.path.join(os.path.abspath(under), "")
            sql += " AND substr(path, 1, ?) = ?"
            args = (key, len(prefix), prefix)
        for r in self._db.execute(sql + " ORDER BY path", args):
            yield ImageRecord(path=r[0], size_bytes=r[1], mtime_ns=r[2], width=r[3],
                              height=r[4], format=r[5],
                              hash=Hash.from_hex(r[6], method=config.method, nbits=config.nbits),
                              digest=r[7], pixel_digest=r[8])

    # -- writing ---------------------------------------------------------------------------

    def add(self, records: Iterable[ImageRecord], problems: Iterable[Problem],
            config: ScanConfig, sizes: dict[str, tuple[int, int]] | None = None) -> None:
        """Queue results for storage; committed in batches of :data:`BATCH` rows.

        Problems need the file's (size, mtime_ns) from ``sizes`` to be cached; problems of
        files that could not even be stat'ed are not cached (they are retried next time).
        """
        key = settings_key(config)
        now = time.time()
        records = [r for r in records if _storable(r.path)]
        problems = [p for p in problems if _storable(p.path)]
        for r in records:
            self._pending.append((key, r.path, r.size_bytes, r.mtime_ns, 1, r.width, r.height,
                                  r.format, str(r.hash), r.hash.nbits, r.digest, r.pixel_digest,
                                  None, None, None, now))
        for p in problems:
            st = (sizes or {}).get(p.path)
            # Only verdicts about the bytes themselves are cached; failures that a retry, a
            # higher --max-pixels or --decode-timeout could change are retried next scan.
            if st is None or p.error in _RETRY_CODES:
                continue
            self._pending.append((key, p.path, st[0], st[1], 0, None, None, None, None, None,
                                  None, None, p.error, p.stage, p.message, now))
        if len(self._pending) >= BATCH:
            self.flush()

    def set_digests(self, rows: Iterable[tuple[str, int, int, str]],
                    configs: Sequence[ScanConfig]) -> None:
        """Store file digests computed after hashing: ``(path, size, mtime_ns, digest)``.

        Each goes to the path's row under every one of ``configs`` whose size and mtime
        still match (a row replaced meanwhile is left alone). Committed at once.
        """
        self.flush()
        keys = [settings_key(c) for c in configs]
        args = [(digest, key, path, size, mtime_ns) for path, size, mtime_ns, digest in rows
                if _storable(path) for key in keys]
        if not args:
            return
        with self._writing() as db:
            changed = db.executemany(
                "UPDATE files SET digest = ? WHERE key = ? AND path = ? AND size = ? "
                "AND mtime_ns = ? AND ok = 1", args).rowcount
        self._own_writes += changed

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``), rolled back on error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def flush(self) -> None:
        """Commit queued rows in one transaction."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        with self._writing() as db:
            db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        self._own_writes += len(rows)  # one trigger run per row (a replace is one insert)

    # -- grouping memo ---------------------------------------------------------------------
    # Grouping is a pure function of the records, the threshold and the mode. A scan's
    # records are those the cache holds for its paths once its own writes are in: its rows
    # were read or written by it. SQL triggers bump a ``generation`` counter once per row
    # written to ``files`` (by any program or version of lookalike). While the counter moved
    # only by this object's own writes, no one else changed a row this scan used, and the
    # records are a function of (paths, generation): a re-scan of an unchanged tree then
    # reuses the previous clusters instead of searching again.

    def _generation(self) -> int:
        return int(self._db.execute(
            "SELECT value FROM meta WHERE name = 'generation'").fetchone()[0])

    def _observe(self) -> None:
        now = self._generation() - self._own_writes
        if self._base_generation is None:
            self._base_generation = now
        elif now != self._base_generation:
            self._unshared = False  # another writer: this scan's memo keys are off

    def grouping_key(self, config: ScanConfig, paths: Sequence[str]) -> str | None:
        """The memo key of grouping this scan's records of ``paths`` (in order), or None
        when another writer changed the cache since this object first read it."""
        import hashlib

        self._observe()
        if not self._unshared:
            return None
        generation = self._base_generation + self._own_writes  # type: ignore[operator]
        h = hashlib.sha256(f"{settings_key(config)}|{config.threshold}|{config.grouping}|"
                           f"{generation}|".encode())
        h.update("\0".join(paths).encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def load_grouping(self, key: str) -> dict[str, list] | None:
        """The grouping stored under ``key`` (see :meth:`save_grouping`), or None."""
        import json

        row = self._db.execute("SELECT clusters FROM groupings WHERE fingerprint = ?",
                               (key,)).fetchone()
        memo = json.loads(row[0]) if row else None
        return memo if isinstance(memo, dict) and {"picked", "clusters"} <= memo.keys() else None

    def save_grouping(self, key: str, memo: dict[str, list]) -> None:
        """Store a scan's grouping under ``key``: ``clusters`` (lists of indices into its
        records sorted by path, representative first) and ``picked`` (the indices whose
        exact hash was used, lookalike.grouping.confirm). The 16 most recent are kept."""
        import json

        with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO groupings VALUES (?, ?, ?)",
                       (key, json.dumps(memo, separators=(",", ":")), time.time()))
            db.execute("DELETE FROM groupings WHERE fingerprint NOT IN (SELECT "
                       "fingerprint FROM groupings ORDER BY updated DESC LIMIT 16)")

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM files").fetchone()[0])

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._db.close()

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
