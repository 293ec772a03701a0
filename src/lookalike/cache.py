"""The hash cache: an embedded SQLite store so re-scans only hash what changed.

Rows are keyed by (settings key, path) and valid while the file's size and mtime (ns) are
unchanged. The settings key covers everything that changes a hash value: method, hash size,
decode mode, pixel-digest flag, flip/rotation invariance and
:data:`~lookalike.decode.DECODER_VERSION`, so changing any
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
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, Problem
from .model import Hash, ImageRecord

if TYPE_CHECKING:
    from .config import ScanConfig
    from .sources import FileEntry

__all__ = ["HashCache", "default_cache_path", "settings_key"]

SCHEMA = 1
BATCH = 500  # rows per transaction: cheap commits, little work lost on a kill
_RETRY_CODES = frozenset({"vanished", "worker-crashed", "permission-denied", "timeout",
                          "too-large", "changed-during-scan", "read-error", "os-error"})


def default_cache_path() -> Path:
    """Where the cache lives unless ``--cache`` says otherwise."""
    env = os.environ.get("LOOKALIKE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lookalike" / "hashes.sqlite"


def settings_key(config: ScanConfig) -> str:
    """Everything that changes a stored value, as one string."""
    from .decode import DECODER_VERSION

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
        db = self._db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS want (path TEXT PRIMARY KEY)")
        db.execute("DELETE FROM want")
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO want VALUES (?)", ((e.path,) for e in entries))
        db.execute("COMMIT")
        rows = db.execute(
            "SELECT f.path, f.size, f.mtime_ns, f.ok, f.width, f.height, f.format, f.hash, "
            "f.nbits, f.digest, f.pixel_digest, f.error, f.stage, f.message "
            "FROM want JOIN files f ON f.key = ? AND f.path = want.path", (key,)
        )
        by_path = {r[0]: r for r in rows}
        db.execute("DELETE FROM want")
        records: list[ImageRecord] = []
        problems: list[Problem] = []
        todo: list[FileEntry] = []
        for e in entries:
            r = by_path.get(e.path)
            if r is None or r[1] != e.size_bytes or r[2] != e.mtime_ns or (r[3] and r[8] != nbits):
                todo.append(e)
            elif r[3]:
                records.append(ImageRecord(
                    path=e.path, size_bytes=r[1], mtime_ns=r[2], width=r[4], height=r[5],
                    format=r[6], hash=Hash.from_hex(r[7], method=method, nbits=nbits),
                    digest=r[9], pixel_digest=r[10], source=e.source))
            else:
                problems.append(Problem(path=e.path, stage=r[12], error=r[11], message=r[13]))
        return records, problems, todo

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

    def flush(self) -> None:
        """Commit queued rows in one transaction."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

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
