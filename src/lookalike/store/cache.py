"""The hash cache: an embedded SQLite store so re-scans only hash what changed.

Rows are keyed by (settings key, path) and valid while the file's size, mtime (ns) and
change time (ctime, ns: set by the system on any write or replacement; rows stored before
it was recorded go by size and mtime) are unchanged. The settings key covers everything
that changes a hash value: method, hash size, decode mode, pixel-digest flag, flip/rotation
invariance and :data:`~lookalike.config.DECODER_VERSION`, so changing any of them simply
misses the cache. Unreadable files are cached too (as their problem), so a
re-scan of an unchanged tree decodes nothing at all. Each image's header facts
(:class:`~lookalike.model.FileFacts`, compact JSON) are kept with its hash, so the keep
policy of a warm re-scan reads no file either.

Safety: WAL journal mode and batched transactions, so a scan killed mid-run leaves a
consistent cache holding every batch committed so far; ``busy_timeout`` lets two scans share
one cache file.

Default location: ``$LOOKALIKE_CACHE``, else ``$XDG_CACHE_HOME/lookalike/hashes.sqlite``,
else ``~/.cache/lookalike/hashes.sqlite``.

(Over 600 lines: the four things a scan keeps between runs, hashes, digests, verdicts and
edges, share one file, one connection, one schema and its migration, and one error
handling; apart, each would repeat the last three.)
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, ParamSpec, TypeVar

from lookalike.errors import RETRYABLE, ConfigError, LookalikeError, Problem
from lookalike.grouping.edges import Edges
from lookalike.inputs.read import max_file_bytes
from lookalike.model import FileFacts, Hash, ImageRecord, make_record
from lookalike.store.base import listed_ctime, outside_pixel_limit, storable

if TYPE_CHECKING:
    from lookalike.config import ScanConfig
    from lookalike.inputs.walk import FileEntry

__all__ = ["HashCache", "default_cache_path", "settings_key", "settings_of_key"]

# 2: files.facts; 3: files.embedding; 4: files.ctime_ns (older caches are migrated in
# place, see _create)
SCHEMA = 4
#: Schemas of earlier versions that a (writing) open migrates to :data:`SCHEMA`.
_MIGRATED = ("1", "2", "3")
BATCH = 500  # rows per transaction: cheap commits, little work lost on a kill
# Columns read back by lookup(), in the order it unpacks them: failures' details included,
# so that a row and its problem come from one state of the cache (one statement).
_COLUMNS = ("path, size, mtime_ns, ok, width, height, format, hash, nbits, digest, pixel_digest, "
            "error, stage, message, facts, embedding, ctime_ns, updated")


P = ParamSpec("P")
R = TypeVar("R")


def _writable(path: Path) -> bool:
    """Whether SQLite can write ``path`` and its journal files beside it (a read-only file,
    folder or mount cannot)."""
    folder = path.parent if path.parent.is_dir() else None
    return folder is not None and os.access(folder, os.W_OK) and (
        not path.exists() or os.access(path, os.W_OK))


def _damage_said(method: Callable[P, R]) -> Callable[P, R]:
    """Turn an SQLite error met while ``method`` reads or writes an open cache (a file
    damaged in part: its first pages were read fine) into one line that says what to do,
    instead of a traceback in the middle of a scan."""
    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise _damaged(getattr(args[0], "path", ""), exc) from None
    return guarded


#: SQLite's own names for a damaged file (what "delete it" is the answer to).
_CORRUPT = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})


def _damaged(path: object, exc: Exception) -> LookalikeError:
    """The one line for an SQLite error met while using an open cache: a damaged file may be
    deleted (it only holds hashes); a lock held too long or a full disk may not."""
    text = str(exc)
    why = text if len(text) <= 80 else f"{text[:77]}..."
    name = getattr(exc, "sqlite_errorname", "") or ""
    # Text columns that are not UTF-8 come from damaged pages too (sqlite3 names no code).
    if name in _CORRUPT or "malformed" in text or "not a database" in text or \
            "decode to UTF-8" in text:
        return LookalikeError(f"the hash cache {path} is damaged ({why}); delete it (it only "
                              "holds hashes) or name another cache file, and scan again")
    hint = next((h for code, h in _HINTS if name == code or name.startswith(f"{code}_")), "")
    return LookalikeError(f"the hash cache {path} could not be used ({why})"
                          + (f": {hint}" if hint else "") + "; or scan without a cache")


def _held(exc: Exception) -> bool:
    """Whether ``exc`` says another connection holds the cache (SQLITE_BUSY or LOCKED)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "is locked" in str(exc)


#: What to do about SQLite's other errors, by its primary error name (extended ones too).
_HINTS = (("SQLITE_BUSY", "another scan holds it; try again once that one ends"),
          ("SQLITE_LOCKED", "another scan holds it; try again once that one ends"),
          ("SQLITE_FULL", "the disk is full; free some space"),
          ("SQLITE_IOERR", "the disk failed to read or write it"),
          ("SQLITE_READONLY", "it cannot be written"))


def _guarded_rows(rows: Iterator[tuple], path: object) -> Iterator[tuple]:
    """``rows`` of a cursor, an SQLite error met while reading on as :func:`_damaged`."""
    try:
        yield from rows
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, exc) from None


def _newer(path: object, schema: object) -> str:
    """Why a cache of a newer lookalike is refused (not damaged: deleting it would lose that
    version's hashes)."""
    return (f"{path} is a hash cache of a newer lookalike (cache schema {schema}; this "
            f"version reads {SCHEMA}): use that version, or name another cache file")


def default_cache_path() -> Path:
    """Where the cache lives unless ``--cache`` says otherwise."""
    env = os.environ.get("LOOKALIKE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lookalike" / "hashes.sqlite"


def settings_key(config: ScanConfig) -> str:
    """Everything that changes a stored value, as one string. With ``config.embed``, the
    model's identity (its file's content and input size) too: rows then hold embeddings."""
    from lookalike.config import DECODER_VERSION, method_spec

    revision = method_spec(config.method).revision
    key = (f"{config.method}/{config.resolved_hash_size}/{config.decode}/"
           f"pd{int(config.pixel_digest)}/inv-{config.invariant}/trim{int(config.trim_borders)}/"
           f"dec{DECODER_VERSION}" + (f"+r{revision}" if revision else ""))
    if config.embed is not None:
        from lookalike.imaging.embed import model_identity

        key += f"/emb-{model_identity(config.embed)}"
    return key


def settings_of_key(key: str) -> dict[str, str] | None:
    """The settings a :func:`settings_key` names (``method``, ``size``, ``decode``,
    ``invariant``, ``trim``, ``decoder``, ``embed``: the model identity or ""), or None
    for a key of another layout (an older version's)."""
    parts = key.split("/")
    if (len(parts) not in (7, 8) or not parts[4].startswith("inv-")
            or not parts[5].startswith("trim")
            or (len(parts) == 8 and not parts[7].startswith("emb-"))):
        return None
    method, size, decode, _pd, inv, trim, dec = parts[:7]
    return {"method": method, "size": size, "decode": decode,
            "invariant": inv.removeprefix("inv-"), "trim": trim.removeprefix("trim"),
            "decoder": dec.removeprefix("dec"),
            "embed": parts[7].removeprefix("emb-") if len(parts) == 8 else ""}


class _FactsTexts(dict[str | None, FileFacts | None]):
    """Stored facts texts -> :meth:`FileFacts.from_text`, each distinct text parsed once
    (most files of a tree share their facts: same format, mode and quality, no camera)."""

    def __missing__(self, text: str | None) -> FileFacts | None:
        facts = self[text] = FileFacts.from_text(text)
        return facts


class HashCache:
    """A SQLite-backed store of per-file hashes and problems.

    Args:
        path: the database file (created with its folder if missing).
        read_only: only read an existing cache (a query): nothing is created or changed,
            and a file that is not a lookalike cache (an empty one, a mistyped path) is a
            :class:`~lookalike.errors.ConfigError`, left as it was.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 read_only: bool = False) -> None:
        if path is not None and not os.fspath(path).strip():  # Path("") is the current folder
            raise ConfigError("the hash cache path is empty; name a cache file")
        self.path = Path(path) if path is not None else default_cache_path()
        self.read_only = read_only
        if self.path.is_dir():  # SQLite says "unable to open database file"
            raise ConfigError(f"the hash cache {self.path} is a folder; name a cache file "
                              f"(e.g. {self.path / 'hashes.sqlite'})")
        try:
            if read_only:
                self._db = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro",
                                           uri=True, timeout=60, isolation_level=None)
                self._db.execute("PRAGMA busy_timeout=60000")
                row = self._db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
                if row is not None and str(row[0]) in _MIGRATED:
                    raise ConfigError(f"{self.path} is a hash cache of an older lookalike; "
                                      "one scan with this version updates it (keeping its "
                                      "hashes), then query it")
                if row is not None and str(row[0]).isdigit() and int(row[0]) > SCHEMA:
                    raise ConfigError(_newer(self.path, row[0]))
                if row is None or str(row[0]) != str(SCHEMA):
                    raise sqlite3.DatabaseError(
                        f"cache schema {row[0] if row else None} is not {SCHEMA}")
            else:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ConfigError(f"cannot create the folder of the hash cache {self.path}: "
                                      f"{exc.strerror or exc}; name another cache file, or "
                                      "scan without a cache") from None
                if not _writable(self.path):  # before SQLite leaves -wal/-shm files beside it
                    raise sqlite3.OperationalError("attempt to write a readonly database")
                self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                self._check_ours()  # before anything is changed in the file
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA busy_timeout=60000")
                self._create()
        except sqlite3.DatabaseError as exc:
            if read_only:  # a query: the file is the user's, never to be deleted on our word
                what = ("holds no hashes of any scan" if "no such table" in str(exc)
                        else f"cannot be read as one ({exc})")
                raise ConfigError(f"{self.path} is not a lookalike hash cache: it {what}; name "
                                  "the cache the scan used") from None
            if not _writable(self.path):
                raise ConfigError(f"the hash cache {self.path} is read-only (or its folder is): a "
                                  "scan writes to it; name a writable cache file, or scan "
                                  "without a cache") from None
            if _held(exc):  # another scan has it: deleting it is not the answer
                raise ConfigError(str(_damaged(self.path, exc))) from None
            raise ConfigError(
                f"cannot use {self.path} as a hash cache: {exc}. If it is a lookalike cache that "
                "got damaged, delete it (it only holds hashes); otherwise name another file"
            ) from None
        self._pending: list[tuple] = []

    def _check_ours(self) -> None:
        """Refuse an SQLite file that holds tables but is no lookalike cache: its tables are
        someone's data (one named ``groupings`` was dropped by the clean-up below)."""
        tables = {r[0] for r in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        ours = "meta" in tables and self._db.execute(
            "SELECT 1 FROM meta WHERE name = 'schema'").fetchone() is not None
        if tables and not ours:
            self._db.close()
            raise ConfigError(f"{self.path} is an SQLite database but not a lookalike hash "
                              f"cache (it holds {', '.join(sorted(tables)[:3])}); nothing was "
                              "changed in it. Name another cache file")

    def _create(self) -> None:
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE IF NOT EXISTS files (
                key TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL, ok INTEGER NOT NULL,
                width INTEGER, height INTEGER, format TEXT, hash TEXT, nbits INTEGER,
                digest TEXT, pixel_digest TEXT, error TEXT, stage TEXT, message TEXT,
                updated REAL NOT NULL, facts TEXT, embedding BLOB, ctime_ns INTEGER,
                PRIMARY KEY (key, path)
            ) WITHOUT ROWID;
            -- Verification verdicts of embedding matches (see load_verdicts).
            CREATE TABLE IF NOT EXISTS verdicts (
                key TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL,
                a_size INTEGER NOT NULL, a_mtime_ns INTEGER NOT NULL,
                b_size INTEGER NOT NULL, b_mtime_ns INTEGER NOT NULL,
                ok INTEGER NOT NULL, updated REAL NOT NULL,
                PRIMARY KEY (key, a, b)
            ) WITHOUT ROWID;
            -- The edges of the last scans (see load_edges); "edges", without fingerprint
            -- and checksum, is dropped below (derived data: the next scan searches once).
            CREATE TABLE IF NOT EXISTS edge_sets (
                key TEXT PRIMARY KEY, nbits INTEGER NOT NULL, radius INTEGER NOT NULL,
                codes BLOB NOT NULL, pairs BLOB NOT NULL, fingerprint TEXT NOT NULL,
                checksum INTEGER NOT NULL, updated REAL NOT NULL
            );
            DROP TABLE IF EXISTS edges;
            -- Caches written by earlier versions kept a grouping memo: gone (issue 14).
            DROP TRIGGER IF EXISTS files_inserted;
            DROP TRIGGER IF EXISTS files_updated;
            DROP TRIGGER IF EXISTS files_deleted;
            DROP TABLE IF EXISTS groupings;
            DELETE FROM meta WHERE name = 'generation';
            """
        )
        row = self._db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
        elif str(row[0]) in _MIGRATED:
            self._migrate()
        elif str(row[0]).isdigit() and int(row[0]) > SCHEMA:
            # Not damaged: deleting it would lose a newer version's hashes.
            self._db.close()
            raise ConfigError(_newer(self.path, row[0]))
        elif str(row[0]) != str(SCHEMA):
            raise sqlite3.DatabaseError(f"cache schema {row[0]} is not {SCHEMA}")

    def _migrate(self) -> None:
        """Schema 1, 2 or 3 -> 4: the ``facts``, ``embedding`` and ``ctime_ns`` columns,
        empty for the rows kept (their facts are read from the files until the files change
        and are hashed again; no old row was made with embeddings; a row without a change
        time is trusted by size and mtime, as before). Hashes stay valid."""
        with self._writing() as db:
            # Another process may have migrated since the schema was read.
            columns = {r[1] for r in db.execute("PRAGMA table_info(files)")}
            for name, kind in (("facts", "TEXT"), ("embedding", "BLOB"),
                               ("ctime_ns", "INTEGER")):
                if name not in columns:
                    db.execute(f"ALTER TABLE files ADD COLUMN {name} {kind}")
            db.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (str(SCHEMA),))

    # -- reading ---------------------------------------------------------------------------

    @_damage_said
    def lookup(self, entries: Sequence[FileEntry], config: ScanConfig
               ) -> tuple[list[ImageRecord], list[Problem], list[FileEntry]]:
        """Split ``entries`` into cached records, cached problems, and files still to hash
        (in their given order).

        Rows are trusted only for the same size, mtime and change time
        (:attr:`~lookalike.inputs.walk.FileEntry.ctime_ns`), so an entry listed without a
        stat (size unknown: a file list on a cluster) is always hashed, and a row stored
        without the change time (0: the file was not stat'ed, or changed between the walk
        and its read) is hashed again once. A row of an older cache (no change time, NULL)
        is trusted by size and mtime when the file's change time is older than the row (it
        has not changed since the row was written; else it is hashed again) and given the
        walk's change time then: from that scan on, a change is seen. A path
        that cannot be a key (SQLite text is UTF-8; undecodable names are kept as
        surrogates) is always hashed.
        """
        key = settings_key(config)
        method, nbits, max_pixels = config.method, config.nbits, config.max_pixels
        max_bytes = max_file_bytes(max_pixels)
        records: list[ImageRecord] = []
        problems: list[Problem] = []
        todo: list[FileEntry] = []
        known = [e.path for e in entries if e.size_bytes >= 0]
        if not all(map(str.isascii, known)):
            known = [path for path in known if storable(path)]
        get = self._rows(key, known).get
        # This loop runs once per file of every warm re-scan: rows are unpacked at once and
        # records rebuilt by the fast constructor (same values and checks as the dataclass).
        add_record, new_record, parse = records.append, make_record, Hash.from_hex
        facts_of = _FactsTexts()
        dated: list[tuple[int, str, str, int, int]] = []  # older rows given a change time
        for e in entries:
            path = e.path
            r = get(path)
            if r is None:
                todo.append(e)
                continue
            (_, size, mtime_ns, ok, width, height, fmt, hx, bits, digest, pdigest, error, stage,
             message, facts, vector, ctime_ns, updated) = r
            if (size != e.size_bytes or mtime_ns != e.mtime_ns or (ok and bits != nbits)
                    or (ctime_ns is not None and e.ctime_ns and ctime_ns != e.ctime_ns)
                    # an older row (no change time): the file changed after it was written
                    or (ctime_ns is None and e.ctime_ns > updated * 1e9)
                    or outside_pixel_limit(ok, width, height, size, error, max_pixels,
                                            max_bytes)):
                todo.append(e)
                continue
            if ctime_ns is None and e.ctime_ns:
                dated.append((e.ctime_ns, key, path, size, mtime_ns))
            if ok:
                add_record(new_record(path, size, mtime_ns, width, height, fmt,
                                      parse(hx, method=method, nbits=nbits), digest, pdigest,
                                      e.source, (), facts_of[facts], vector))
            else:
                problems.append(Problem(path=path, stage=stage, error=error, message=message))
        if dated and not self.read_only:
            # Best effort: another scan holding the cache must not stall this one for it
            # (the rows are dated next time).
            self._db.execute("PRAGMA busy_timeout=100")
            try:
                with self._writing() as db:
                    db.executemany("UPDATE files SET ctime_ns = ? WHERE key = ? AND path = ? "
                                   "AND size = ? AND mtime_ns = ? AND ctime_ns IS NULL", dated)
            except sqlite3.OperationalError as exc:
                if not _held(exc):
                    raise
            finally:
                self._db.execute("PRAGMA busy_timeout=60000")
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

    def records(self, config: ScanConfig, under: str | None = None, *,
                key: str | None = None,
                held: Mapping[str, tuple[int, int]] | None = None) -> Iterator[ImageRecord]:
        """Every cached record for ``config`` (optionally only paths under a folder), or
        stored under ``key`` (another :func:`settings_key` with ``config``'s hash method),
        but rows of a path ``held`` maps to their (size, mtime): not built again."""
        key = settings_key(config) if key is None else key
        sql = ("SELECT path, size, mtime_ns, width, height, format, hash, digest, pixel_digest, "
               "facts, embedding FROM files WHERE key = ? AND ok = 1")
        args: tuple = (key,)
        if under is not None:
            prefix = os.path.join(os.path.abspath(under), "")
            sql += " AND substr(path, 1, ?) = ?"
            args = (key, len(prefix), prefix)
        facts_of = _FactsTexts()
        try:
            rows = self._db.execute(sql + " ORDER BY path", args)
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None
        for r in _guarded_rows(rows, self.path):
            if held is not None and held.get(r[0]) == (r[1], r[2]):
                continue
            yield ImageRecord(path=r[0], size_bytes=r[1], mtime_ns=r[2], width=r[3],
                              height=r[4], format=r[5],
                              hash=Hash.from_hex(r[6], method=config.method, nbits=config.nbits),
                              digest=r[7], pixel_digest=r[8], facts=facts_of[r[9]],
                              embedding=r[10])

    # -- writing ---------------------------------------------------------------------------

    @_damage_said
    def add(self, records: Iterable[ImageRecord], problems: Iterable[Problem],
            config: ScanConfig, sizes: dict[str, tuple[int, ...]] | None = None) -> None:
        """Queue results for storage; committed in batches of :data:`BATCH` rows.

        Problems need the file's (size, mtime_ns, ctime_ns) from ``sizes`` to be cached;
        problems of files that could not even be stat'ed are not cached (they are retried
        next time). A record's change time is the listed one when the record's size and
        mtime are the listed ones (else unknown: the file changed between the walk and the
        read).
        """
        key = settings_key(config)
        now = time.time()
        # Without its embedding (the model failed on it) a record is not kept: the next
        # scan tries the model again.
        records = [r for r in records if r.size_bytes >= 0 and storable(r.path)
                   and (config.embed is None or r.embedding is not None)]
        problems = [p for p in problems if storable(p.path)]
        sizes = sizes or {}
        for r in records:
            # 0, not NULL, when unknown: such a row is hashed again once (NULL is a row of an
            # older cache, trusted by size and mtime).
            ctime = listed_ctime(sizes, r.path, r.size_bytes, r.mtime_ns)
            self._pending.append((key, r.path, r.size_bytes, r.mtime_ns, 1, r.width, r.height,
                                  r.format, str(r.hash), r.hash.nbits, r.digest, r.pixel_digest,
                                  None, None, None, now,
                                  r.facts.to_text() if r.facts is not None else None,
                                  r.embedding, ctime))
        for p in problems:
            st = sizes.get(p.path)
            # Only verdicts about the bytes themselves are cached; failures that a retry, a
            # higher --max-pixels or --decode-timeout could change are retried next scan.
            if st is None or st[0] < 0 or p.error in RETRYABLE:
                continue
            self._pending.append((key, p.path, st[0], st[1], 0, None, None, None, None, None,
                                  None, None, p.error, p.stage, p.message, now, None, None,
                                  listed_ctime(sizes, p.path, st[0], st[1])))
        if len(self._pending) >= BATCH:
            self.flush()

    @_damage_said
    def set_digests(self, rows: Iterable[tuple[str, int, int, str]],
                    configs: Sequence[ScanConfig],
                    column: Literal["digest", "pixel_digest", "facts"] = "digest") -> None:
        """Store file (or pixel) digests computed after hashing: ``(path, size, mtime_ns,
        digest)``; or, with ``column="facts"``, header facts read after hashing
        (:meth:`FileFacts.to_text`) in place of a row's older ones.

        Each goes to the path's row under every one of ``configs`` whose size and mtime
        still match (a row replaced meanwhile is left alone). Committed at once.
        """
        if column not in ("digest", "pixel_digest", "facts"):  # the name is part of the SQL
            raise ValueError(f"not a column set after hashing: {column!r}")
        self.flush()
        keys = [settings_key(c) for c in configs]
        args = [(digest, key, path, size, mtime_ns) for path, size, mtime_ns, digest in rows
                if storable(path) for key in keys]
        if not args:
            return
        with self._writing() as db:
            db.executemany(
                f"UPDATE files SET {column} = ? WHERE key = ? AND path = ? AND size = ? "
                "AND mtime_ns = ? AND ok = 1", args)

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``), rolled back on error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            # SQLite may have rolled back itself (a full disk): the error that did it is
            # the one to tell, not that there was no transaction left to roll back.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @_damage_said
    def flush(self) -> None:
        """Commit queued rows in one transaction."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        with self._writing() as db:
            db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    # -- edges ------------------------------------------------------------------------------
    # Which distinct hash values lie within a radius of each other is a pure function of the
    # values (lookalike.grouping.edges.Edges). A scan stores the edges it used under its
    # settings, radius and inputs; the next scan of those inputs searches only the values
    # that are new (files added or changed), and one of an unchanged tree searches nothing.

    @staticmethod
    def _edges_key(config: ScanConfig, scope: Sequence[str], radius: int) -> str:
        # A root named in other bytes than UTF-8 (kept as surrogate escapes) cannot be SQLite
        # text: it is keyed by its bytes in hex (it was a UnicodeEncodeError traceback).
        roots = [r if storable(r) else "bytes:" + os.fsencode(r).hex() for r in scope]
        return "\0".join(["edges", settings_key(config), str(radius), *sorted(roots)])

    @_damage_said
    def load_edges(self, config: ScanConfig, scope: Sequence[str], radius: int
                   ) -> Edges | None:
        """The edges last stored for ``config``, the inputs ``scope`` and ``radius``; None
        when there are none, or the row is damaged (then the scan searches afresh)."""
        row = self._db.execute(
            "SELECT nbits, codes, pairs, fingerprint, checksum FROM edge_sets WHERE key = ?",
            (self._edges_key(config, scope, radius),)).fetchone()
        if row is None:
            return None
        nbits, codes, pairs, fingerprint, checksum = row
        try:
            # The fingerprint recognises an unchanged set of codes without reading them,
            # so the checksum vouches for what is read instead: a damaged code or pair.
            if zlib.crc32(pairs, zlib.crc32(codes)) != checksum:
                return None
            return Edges.stored(nbits, radius, codes, pairs, fingerprint)
        except (ValueError, TypeError):  # a row no lookalike wrote
            return None

    @_damage_said
    def save_edges(self, config: ScanConfig, scope: Sequence[str], edges: Edges) -> None:
        """Store ``edges`` for :meth:`load_edges`; the 16 most recent are kept."""
        pairs = edges.index.tobytes()
        with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO edge_sets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (self._edges_key(config, scope, edges.radius), edges.nbits,
                        edges.radius, edges.packed, pairs, edges.fingerprint,
                        zlib.crc32(pairs, zlib.crc32(edges.packed)), time.time()))
            db.execute("DELETE FROM edge_sets WHERE key NOT IN "
                       "(SELECT key FROM edge_sets ORDER BY updated DESC LIMIT 16)")

    # -- verdicts ---------------------------------------------------------------------------
    # Whether two files are one picture (lookalike.imaging.align) depends on their bytes and
    # on the verification rules only: kept per pair of file versions, so a re-scan reads and
    # aligns only pairs it has not judged.

    @staticmethod
    def _verdicts_key(config: ScanConfig, rule: str) -> str:
        from lookalike.imaging.align import VERIFY_VERSION

        key = f"{settings_key(config)}/verify{VERIFY_VERSION}"
        return key if rule == "verified" else f"{key}/{rule}"

    @_damage_said
    def load_verdicts(self, config: ScanConfig, pairs: Sequence[tuple[ImageRecord, ImageRecord]],
                      rule: str = "verified") -> dict[tuple[str, str], bool]:
        """Stored verdicts of ``pairs`` whose two files are unchanged, by their paths;
        ``rule``: which test judged them (``verified``: embedding matches' alignment;
        ``aligned``: the verified band's)."""
        if not pairs:
            return {}
        key = self._verdicts_key(config, rule)
        wanted = {(a.path, b.path): (a, b) for a, b in pairs
                  if storable(a.path) and storable(b.path)}
        db = self._db
        # Only the pairs asked about: a temporary table joined on the key (a cache holds the
        # verdicts of every scan, far more than one scan's pairs).
        db.execute("CREATE TEMP TABLE IF NOT EXISTS want_pairs (a TEXT, b TEXT, "
                   "PRIMARY KEY (a, b))")
        db.execute("DELETE FROM want_pairs")
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO want_pairs VALUES (?, ?)", list(wanted))
        db.execute("COMMIT")
        rows = db.execute(
            "SELECT v.a, v.b, v.a_size, v.a_mtime_ns, v.b_size, v.b_mtime_ns, v.ok "
            "FROM want_pairs w JOIN verdicts v ON v.key = ? AND v.a = w.a AND v.b = w.b",
            (key,)).fetchall()
        db.execute("DELETE FROM want_pairs")
        out: dict[tuple[str, str], bool] = {}
        for a, b, a_size, a_mtime, b_size, b_mtime, ok in rows:
            pair = wanted[(a, b)]
            if (pair[0].size_bytes, pair[0].mtime_ns, pair[1].size_bytes,
                    pair[1].mtime_ns) == (a_size, a_mtime, b_size, b_mtime):
                out[(a, b)] = bool(ok)
        return out

    @_damage_said
    def save_verdicts(self, config: ScanConfig,
                      verdicts: Iterable[tuple[ImageRecord, ImageRecord, bool]],
                      rule: str = "verified") -> None:
        """Store verdicts for :meth:`load_verdicts`."""
        key, now = self._verdicts_key(config, rule), time.time()
        rows = [(key, a.path, b.path, a.size_bytes, a.mtime_ns, b.size_bytes, b.mtime_ns,
                 int(ok), now) for a, b, ok in verdicts
                if storable(a.path) and storable(b.path)]
        with self._writing() as db:
            db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?,?,?)", rows)

    @_damage_said
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
