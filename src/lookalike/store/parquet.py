"""Scan results as a Parquet dataset, written while the scan runs, and resumed from.

Needs ``pyarrow`` and ``fsspec`` (``pip install 'lookalike[dask]'``), imported only when a
:class:`ParquetStore` is built.

Layout: ``PATH`` is a folder (local or an fsspec URL such as ``s3://bucket/scan.parquet``)
of part files ``part-<time_ns>-<id>.parquet``, each written whole under a temporary name and
then renamed, so a killed scan leaves only complete parts. One row per image or failed item:

==============  ============  ===========================================================
column          type          meaning
==============  ============  ===========================================================
path            string        file path, URL, ``shard.tar#member`` or ``file.parquet#name``
status          string        ``ok`` (hashed) or ``error``
size_bytes      int64         bytes read (null when unknown for an error)
mtime_ns        int64         modification time (0 when the store has none)
width, height   int32         pixels after EXIF orientation (ok rows)
format          string        decoded format (``JPEG``, ``PNG``, ...)
method, nbits   string, int32 hash algorithm and bits per hash segment
hash            string        hex, exactly ``str(Hash)`` (segments joined by ``,``)
hash_u64        uint64        the hash as an integer when it is one segment of <= 64 bits
digest          string        SHA-256 of the bytes
pixel_digest    string        SHA-256 of the decoded pixels (null: computed after grouping)
source          string        the input root, list, shard or Parquet file it came from
stage, error    string        for errors: stage (``walk``/``read``/``decode``/``hash``)
                              and reason code (``truncated``, ``worker-crashed``, ...)
message         string        for errors: one human-readable line
facts           string        what the header says (:class:`~lookalike.model.FileFacts`,
                              compact JSON: ``FileFacts.to_text``); null in parts written
                              before schema version 2
embedding       binary        the image's embedding (``scan --embed``): L2-normalised,
                              little-endian float16 (``numpy.frombuffer(b, "<f2")``); null
                              without embeddings and in parts before schema version 3
ctime_ns        int64         the file's change time as the walk listed it (0: not stat'ed,
                              or changed before it was read; null before schema version 4):
                              a resumed scan reads a file whose change time differs again
written_at      timestamp     when the row was written (UTC, ms)
==============  ============  ===========================================================

Hashes are each file's hash at the scan's own settings. In the default fast decode mode
the scan groups large JPEGs that may have a match by their exact (full-decode) hash instead
(:mod:`lookalike.grouping.confirm`); those exact hashes go to the hash cache, not to this output.

Every part's schema metadata holds ``lookalike`` JSON: ``schema_version``, the settings key
(method, hash size, decoder) and the scan config.

Reading it elsewhere::

    duckdb -c "SELECT count(*), count(*) FILTER (status = 'error') FROM 'scan.parquet/*.parquet'"
    pandas.read_parquet("scan.parquet")                       # pyarrow reads the folder

A resumed run appends parts; a path hashed again (its file changed, or it had a transient
error such as ``worker-crashed``) then has several rows and the newest ``written_at`` wins.

Resume policy (:meth:`ParquetStore.lookup`): an item is skipped when the output has a row
for its path written with the same settings and, if the item's size and mtime are known, the
same size and mtime. Rows with passing errors (:data:`lookalike.errors.RETRYABLE`) are
hashed again.
Output made with other settings is refused (:class:`~lookalike.errors.ConfigError`) rather
than mixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from lookalike.config import check_writable, import_extra, nearest_folder
from lookalike.errors import RETRYABLE, ConfigError, LookalikeError, Problem
from lookalike.inputs.read import max_file_bytes
from lookalike.model import FileFacts, Hash, ImageRecord
from lookalike.store.base import listed_ctime, outside_pixel_limit, storable
from lookalike.store.cache import settings_key

if TYPE_CHECKING:
    from lookalike.config import ScanConfig
    from lookalike.inputs.walk import FileEntry

__all__ = ["SCHEMA_VERSION", "ParquetStore", "check_output_folder", "read_results"]

# 2: the facts column, 3: the embedding column, 4: ctime_ns (older parts read with nulls
# there)
SCHEMA_VERSION = 4
_META_KEY = b"lookalike"


def _deps() -> tuple[Any, Any, Any]:
    return tuple(import_extra(module, "Parquet output", "dask")
                 for module in ("fsspec", "pyarrow", "pyarrow.parquet"))


def _schema(pa: Any) -> Any:
    s, i64, i32 = pa.string(), pa.int64(), pa.int32()
    return pa.schema([
        ("path", s), ("status", s), ("size_bytes", i64), ("mtime_ns", i64),
        ("width", i32), ("height", i32), ("format", s), ("method", s), ("nbits", i32),
        ("hash", s), ("hash_u64", pa.uint64()), ("digest", s), ("pixel_digest", s),
        ("source", s), ("stage", s), ("error", s), ("message", s), ("facts", s),
        ("embedding", pa.binary()), ("ctime_ns", i64),
        ("written_at", pa.timestamp("ms", tz="UTC")),
    ])


def _text(text: str | None) -> str | None:
    """``text`` as UTF-8 can hold it: bytes that are not UTF-8 escaped (``\\xff``)."""
    if text is None or storable(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_output_folder(path: str | None, what: str = "Parquet output") -> str | None:
    """Check, before any work, that a local output folder can be made or written; return it
    (None for none, or a URL: checked by its store).

    Raises:
        ConfigError: an empty path, a file in the way, or a folder that takes no files.
    """
    from lookalike.inputs.remote import is_url

    if path is None or is_url(path):
        return None
    if not path.strip():  # an unset variable: it named the current folder
        raise ConfigError(f"the {what} is an empty path; name a folder")
    # The store makes the folder and its parents: the nearest that exists must be a folder
    # that takes files.
    target = os.path.abspath(path)
    up = nearest_folder(target)
    # What lies just below that folder on the way, if anything, is a file in the way.
    step = os.path.join(up, os.path.relpath(target, up).split(os.sep)[0])
    if up != target and os.path.lexists(step):
        raise ConfigError(f"the {what} {path} cannot be a folder: {step} is a file; name a "
                          "folder (it gets part files)")
    try:
        check_writable(os.path.join(up, ".lookalike-probe"), what)
    except ConfigError:  # its message names the probe file, not the user's folder
        raise ConfigError(f"cannot write the {what} {path}: {up} takes no new files "
                          "(permission denied, or a read-only file system); choose another "
                          "folder") from None
    return path


class ParquetStore:
    """Writes scan results to a Parquet dataset as they arrive; resumes from it.

    A :class:`~lookalike.store.base.HashStore`: the scan looks items up here first (a
    resumed scan skips what the output holds), then in the hash cache, and adds every
    item's result, cache hits included, so the output always lists every item.

    Args:
        path: the output folder, local or an fsspec URL; created if missing.
        rows_per_part: rows buffered before a part file is written.
        flush_seconds: a part is also written when this long has passed since the last one,
            so a killed client loses at most that much work.
        storage_options: fsspec options for a URL ``path``.

    Raises:
        ConfigError: pyarrow/fsspec missing, or ``path`` is a file, not a folder.

    Memory: the buffer (``rows_per_part`` rows) plus, during :meth:`lookup`, the existing
    output's path/status/size/mtime columns and the matching rows.
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 rows_per_part: int = 100_000, flush_seconds: float = 60.0,
                 storage_options: dict[str, Any] | None = None) -> None:
        fsspec, pa, pq = _deps()
        self._pa, self._pq = pa, pq
        self.path = os.fspath(path)
        try:
            self._fs, self._root = fsspec.core.url_to_fs(self.path, **(storage_options or {}))
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"cannot open {self.path}: {exc}") from None
        if self._fs.exists(self._root) and not self._fs.isdir(self._root):
            raise ConfigError(f"Parquet output {self.path} is a file; it must be a folder (a "
                              "Parquet dataset of part files). Pick a new name.")
        check_output_folder(self.path)  # a library scan is checked before work too
        self.rows_per_part = rows_per_part
        self.flush_seconds = flush_seconds
        self._schema = _schema(pa)
        self._rows: list[tuple[Any, ...]] = []
        self._meta: bytes | None = None
        self._last_write = time.monotonic()
        self.parts_written = 0
        self.rows_written = 0

    # -- reading -----------------------------------------------------------------------

    def _parts(self) -> list[str]:
        if not self._fs.exists(self._root):
            return []
        return sorted(p for p in self._fs.ls(self._root, detail=False)
                      if p.rsplit("/", 1)[-1].startswith("part-") and p.endswith(".parquet"))

    def _check_settings(self, parts: Sequence[str], config: ScanConfig) -> None:
        want = settings_key(config)
        for part in parts:
            with self._fs.open(part, "rb") as fh:
                meta = self._pq.read_schema(fh).metadata or {}
            info = json.loads(meta.get(_META_KEY, b"{}"))
            have = info.get("settings")
            if have != want:
                raise ConfigError(
                    f"{self.path} holds results made with other settings ({have}, not {want}); "
                    "use another Parquet output folder, or delete it to start over")

    def lookup(self, entries: Sequence[FileEntry], config: ScanConfig
               ) -> tuple[list[ImageRecord], list[Problem], list[FileEntry]]:
        """Split ``entries`` into results already in the output and items still to hash
        (in their given order). Cost: one read of the output's key columns."""
        import pyarrow.compute as pc

        pa = self._pa
        parts = self._parts()
        records: list[ImageRecord] = []
        problems: list[Problem] = []
        todo: list[FileEntry] = list(entries)
        if parts and entries:
            self._check_settings(parts, config)
            table = self._read(parts)
            wanted = pa.array([e.path for e in entries if storable(e.path)], pa.string())
            table = table.filter(pc.is_in(table["path"], value_set=wanted))
            rows = {r["path"]: r for r in table.to_pylist()}  # later parts win
            max_bytes = max_file_bytes(config.max_pixels)
            todo = []
            for e in entries:
                r = rows.get(e.path)
                if r is None or _stale(r, e) or outside_pixel_limit(
                        r["status"] == "ok", r["width"] or 0, r["height"] or 0,
                        r["size_bytes"], r["error"], config.max_pixels, max_bytes):
                    todo.append(e)
                elif r["status"] == "ok":
                    records.append(ImageRecord(
                        path=e.path, size_bytes=r["size_bytes"], mtime_ns=r["mtime_ns"],
                        width=r["width"], height=r["height"], format=r["format"],
                        hash=Hash.from_hex(r["hash"], method=config.method, nbits=config.nbits),
                        digest=r["digest"], pixel_digest=r["pixel_digest"], source=e.source,
                        facts=FileFacts.from_text(r["facts"]), embedding=r["embedding"]))
                else:
                    problems.append(Problem(path=e.path, stage=r["stage"], error=r["error"],
                                            message=r["message"]))
        return records, problems, todo

    def _read(self, parts: Sequence[str]) -> Any:
        tables = []
        for part in parts:
            with self._fs.open(part, "rb") as fh:
                tables.append(self._pq.read_table(fh, schema=self._schema))
        return self._pa.concat_tables(tables) if tables else self._schema.empty_table()

    def read(self) -> Any:
        """The whole output as one ``pyarrow.Table`` (every part, duplicates included)."""
        return self._read(self._parts())

    # -- writing -----------------------------------------------------------------------

    def add(self, records: Iterable[ImageRecord], problems: Iterable[Problem],
            config: ScanConfig, sizes: dict[str, tuple[int, ...]] | None = None) -> None:
        """Queue results; a part file is written every ``rows_per_part`` rows or
        ``flush_seconds``. ``sizes`` (path -> size, mtime) fills in errors' file sizes."""
        records, problems = list(records), list(problems)
        if self._meta is None:
            self._meta = json.dumps({
                "schema_version": SCHEMA_VERSION, "settings": settings_key(config),
                "config": config.to_dict(),
            }, default=str).encode()
        now = time.time_ns() // 1_000_000
        method = config.method
        # A name of bytes that are not UTF-8 cannot be Parquet text: such a file gets no row
        # (a later scan hashes it again; pipeline counts it in stats.uncached_names). It
        # was a UnicodeEncodeError that lost the whole scan. A root or message holding one
        # is written with the bytes escaped (\xff): it only describes.
        records = [r for r in records if storable(r.path)]
        problems = [p for p in problems if storable(p.path)]
        for r in records:
            h = r.hash
            as_int = h.value if len(h.segments) == 1 and h.nbits <= 64 else None
            self._rows.append((r.path, "ok", r.size_bytes, r.mtime_ns, r.width, r.height,
                               r.format, method, h.nbits, str(h), as_int, r.digest,
                               r.pixel_digest, _text(r.source), None, None, None,
                               _text(r.facts.to_text()) if r.facts is not None else None,
                               r.embedding,
                               listed_ctime(sizes, r.path, r.size_bytes, r.mtime_ns), now))
        for p in problems:
            size, mtime = (sizes or {}).get(p.path, (None, None))[:2]
            ctime = listed_ctime(sizes, p.path, size, mtime) \
                if size is not None and mtime is not None else 0
            if size is not None and size < 0:
                size = None
            self._rows.append((p.path, "error", size, mtime or 0, None, None, None, method,
                               config.nbits, None, None, None, None, None, p.stage, p.error,
                               _text(p.message), None, None, ctime, now))
        if len(self._rows) >= self.rows_per_part or (
                self._rows and time.monotonic() - self._last_write > self.flush_seconds):
            self._write_part()

    def _write_part(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        pa = self._pa
        columns = list(zip(*rows, strict=True))
        table = pa.Table.from_arrays(
            [pa.array(col, type=f.type) for col, f in zip(columns, self._schema, strict=True)],
            schema=self._schema.with_metadata({_META_KEY: self._meta or b"{}"}))
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        final = f"{self._root.rstrip('/')}/{name}"
        tmp = f"{self._root.rstrip('/')}/.{name}.tmp"
        try:
            self._fs.makedirs(self._root, exist_ok=True)
            with self._fs.open(tmp, "wb") as fh:
                self._pq.write_table(table, fh, compression="zstd")
            self._fs.mv(tmp, final)  # readers (and resume) only ever see whole parts
        except OSError as exc:  # a full disk, a store that refuses: one line, no partial part
            with contextlib.suppress(Exception):
                self._fs.rm(tmp)
            raise LookalikeError(f"cannot write the Parquet output {self._root}: "
                                 f"{exc.strerror or exc}; the parts "
                                 "written so far are kept (a scan with the same output "
                                 "resumes); free space or choose another folder") from None
        self._last_write = time.monotonic()
        self.parts_written += 1
        self.rows_written += len(rows)

    def flush(self) -> None:
        """Write buffered rows as a part file."""
        self._write_part()

    def close(self) -> None:
        """Write what is buffered."""
        self.flush()

    def __enter__(self) -> ParquetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stale(row: dict[str, Any], entry: FileEntry) -> bool:
    if row["status"] != "ok" and row["error"] in RETRYABLE:
        return True
    if row["status"] != "ok" and row["size_bytes"] is None and not row["mtime_ns"]:
        # A problem stored without the file's version (a file list on a cluster lists no
        # sizes) cannot tell whether the file was repaired since: read it again.
        return True
    if entry.size_bytes >= 0 and row["size_bytes"] is not None \
            and row["size_bytes"] != entry.size_bytes:
        return True
    if entry.mtime_ns and row["mtime_ns"] and row["mtime_ns"] != entry.mtime_ns:
        return True
    # The change time, where the walk stat'ed the file: a file replaced or rewritten with its
    # size and mtime kept is read again (0: stored unknown). A part before version 4 has
    # none (null): the file is read again when it changed after the row was written.
    ctime = row.get("ctime_ns")
    if ctime is None:
        written = row.get("written_at")
        return bool(entry.ctime_ns and written is not None
                    and entry.ctime_ns > written.timestamp() * 1e9)
    return bool(entry.ctime_ns and ctime != entry.ctime_ns)


def read_results(path: str | os.PathLike[str], *, latest: bool = True,
                 storage_options: dict[str, Any] | None = None) -> Any:
    """Read a :class:`ParquetStore` output as a ``pyarrow.Table``.

    Args:
        path: the output folder (local or URL).
        latest: keep only the newest row per path (what a resumed scan would use).

    Returns:
        A ``pyarrow.Table`` with the columns of the module doc; ``.to_pandas()`` for pandas.

    Raises:
        ConfigError: there is nothing at ``path``, or it is a file, not such a folder.
    """
    store = ParquetStore(path, storage_options=storage_options)
    if not store._fs.exists(store._root):  # a typo is not "no results"
        raise ConfigError(f"no Parquet output at {store.path}; name the folder the scan's "
                          "Parquet output went to")
    table = store.read()
    if not latest or table.num_rows == 0:
        return table
    pa = store._pa
    # Rows are in part order (oldest first); keep each path's last row.
    paths = table["path"].to_pylist()
    last = {p: i for i, p in enumerate(paths)}
    keep = sorted(last.values())
    return table.take(pa.array(keep, pa.int64()))
