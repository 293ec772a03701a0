"""Inputs beyond local folders: file lists, object-store URLs, tar shards, Parquet with bytes.

Needs the ``dask`` extra's ``fsspec`` (and ``pyarrow`` for Parquet), imported only when such
an input is used: ``pip install 'lookalike[dask]'``. Object stores need their fsspec driver
too (``s3fs`` for ``s3://``, ``gcsfs`` for ``gs://``); credentials come from the usual places
(environment, config files, instance roles) on the client *and* on every worker.

Inputs, each listed on the client (or, for containers, by a task on the executor) into work
items that workers read and hash with the same :func:`lookalike.pipeline.hash_data`:

``files`` (default for anything but ``.tar``/``.parquet``)
    local paths (walked as by ``lookalike scan``), fsspec URLs (``s3://b/prefix/``,
    ``gs://...``, ``file://...``, ``memory://...``; prefixes are listed recursively and keep
    files with an image extension; globs such as ``s3://b/*/img_*.jpg`` work).
file lists (``files_from``)
    a text file (one path or URL per line; blank lines and ``#`` comments skipped) or a
    Parquet file with a column of paths/URLs. Lines are *not* stat'ed on the client (that is
    a round trip per file): workers read them, and a missing one is a ``vanished`` problem.
``tar``
    WebDataset-style shards: uncompressed ``.tar`` files whose image members
    (``*.jpg``, ``*.png``, ...) are the images. A member is reported as ``shard.tar#member``.
    Each shard's header is read once by a listing task; workers then read each batch of
    members with one ranged read.
``parquet``
    images as bytes in a column (a ``binary`` column, or a struct with a ``bytes`` field as
    Hugging Face datasets write it), named by a string column (``path``, ``name``, ``key``,
    ``id``... or the struct's ``path`` field) or by row number. A row is reported as
    ``file.parquet#name``. Workers read whole row groups, one batch per row group.

Errors: an input that does not exist (a missing local root) or a bad option raises
:class:`~lookalike.errors.ConfigError` before any work. A shard or Parquet file that cannot be
listed is a ``walk`` :class:`~lookalike.errors.Problem`; an object that cannot be read is a
``read`` problem for that one image; undecodable bytes are ``decode`` problems. None of them
stops the scan.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from lookalike.config import ScanConfig
from lookalike.errors import ConfigError, Problem
from lookalike.inputs.walk import (
    IMAGE_EXTENSIONS,
    FileEntry,
    WalkStats,
    iter_files,
    iter_listed,
    unique_files,
)
from lookalike.pipeline import CHUNK_SIZE, ChunkResult, hash_data, hash_file

if TYPE_CHECKING:
    from lookalike.events import Reporter
    from lookalike.executors.base import Executor
    from lookalike.pipeline import ScanResult
    from lookalike.store.cache import HashCache

__all__ = [
    "INPUT_FORMATS",
    "RemoteEntry",
    "RemoteWorker",
    "list_inputs",
    "scan_inputs",
]

InputFormat = Literal["auto", "files", "tar", "parquet"]
INPUT_FORMATS: tuple[str, ...] = ("auto", "files", "tar", "parquet")

INSTALL_HINT = "pip install 'lookalike[dask]'"

# Tar members closer than this are fetched in one ranged read (one request beats two).
_MAX_GAP = 1 << 20
# Images whose bytes a worker fetches at once (concurrently, on async object stores).
_READ_AHEAD = 32
# Columns tried, in order, when the user names none.
_PATH_COLUMNS = ("path", "url", "uri", "file", "filename", "file_name", "image_path", "key")
_NAME_COLUMNS = ("path", "name", "key", "__key__", "filename", "file_name", "url", "id")
_BYTES_COLUMNS = ("image", "bytes", "image_bytes", "jpg", "png", "webp", "data", "content")


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """One image that is not a plain local file: an object, a tar member, a Parquet cell.

    Attributes:
        path: what reports show: a URL, ``shard.tar#member`` or ``file.parquet#name``.
        size_bytes: object or member size, or -1 when unknown before reading.
        mtime_ns: modification time if the store reports one, else 0.
        source: the input it came from (prefix, list file, shard, Parquet file).
        url: the fsspec URL to read.
        kind: ``object`` (read all of ``url``), ``tar`` (``length`` bytes at ``offset``) or
            ``parquet`` (row ``row`` of column ``column``).
        batch: items with the same non-empty ``batch`` are hashed in one batch (a Parquet
            row group is read once for all its rows).
    """

    path: str
    size_bytes: int
    mtime_ns: int
    source: str
    url: str
    kind: Literal["object", "tar", "parquet"] = "object"
    offset: int = 0
    length: int = -1
    row: int = -1
    column: str = ""
    batch: str = ""


# ---------------------------------------------------------------------------- optional deps


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError:
        raise ConfigError(
            f"reading URLs, file lists, tar shards or Parquet needs fsspec; install it with: "
            f"{INSTALL_HINT}"
        ) from None
    return fsspec


def _pq() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"reading or writing Parquet needs pyarrow; install it with: {INSTALL_HINT}"
        ) from None
    return pq


def _url_to_fs(url: str, options: Mapping[str, Any]) -> tuple[Any, str]:
    try:
        return _fsspec().core.url_to_fs(url, **options)
    except ImportError as exc:  # e.g. s3fs missing for s3://
        raise ConfigError(f"cannot open {url}: {exc}") from None
    except ValueError as exc:  # unknown protocol
        raise ConfigError(f"cannot open {url}: {exc}") from None


def is_url(text: str) -> bool:
    """True for ``protocol://...`` (but not for a Windows drive path)."""
    head, sep, _ = text.partition("://")
    return bool(sep) and len(head) > 1 and head.replace("+", "").replace("-", "").isalnum()


def _is_local(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def _display(fs: Any, path: str) -> str:
    return path if _is_local(fs) else fs.unstrip_protocol(path)


def _mtime_ns(info: Mapping[str, Any]) -> int:
    for key in ("mtime", "LastModified", "updated", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            return int(value.timestamp() * 1e9)
        if isinstance(value, int | float):
            return int(value * 1e9)
        if isinstance(value, str):
            try:
                return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
                           * 1e9)
            except ValueError:
                continue
    return 0


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _read_reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "vanished"
    if isinstance(exc, PermissionError):
        return "permission-denied"
    if isinstance(exc, IsADirectoryError):
        return "not-a-regular-file"
    return "read-error"


# ---------------------------------------------------------------------------- the worker


@dataclass(frozen=True, slots=True)
class RemoteWorker:
    """Picklable work function for any mix of local files and remote items.

    Reads a batch's bytes with as few requests as it can (concurrent whole-object reads per
    filesystem, one ranged read per run of tar members, one read per Parquet row group),
    then hashes each image with :func:`lookalike.pipeline.hash_data`. Never raises for a bad
    or missing image: it becomes a ``read`` (or ``decode``/``hash``) problem.
    """

    config: ScanConfig
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, chunk: Sequence[FileEntry | RemoteEntry]) -> ChunkResult:
        records, problems = [], []
        # Read a few images ahead, not the whole batch: batches may be hundreds of images.
        reads = (pair for i in range(0, len(chunk), _READ_AHEAD)
                 for pair in self._read(chunk[i:i + _READ_AHEAD]))
        for entry, data in reads:
            if isinstance(entry, FileEntry):
                out = hash_file(entry, self.config)
            elif data is None or isinstance(data, BaseException):
                exc = data if data is not None else OSError("no data was read")
                out = Problem(path=entry.path, stage="read", error=_read_reason(exc),
                              message=f"cannot read: {type(exc).__name__}: {exc}")
            else:
                data = bytes(data)  # some stores hand back bytearray or memoryview
                out = hash_data(data, path=entry.path, size_bytes=len(data),
                                mtime_ns=entry.mtime_ns, source=entry.source,
                                config=self.config)
            (problems if isinstance(out, Problem) else records).append(out)
        return ChunkResult(records, problems)

    def _read(self, chunk: Sequence[FileEntry | RemoteEntry]
              ) -> Iterator[tuple[FileEntry | RemoteEntry, bytes | BaseException | None]]:
        got: dict[int, bytes | BaseException] = {}
        objects: dict[Any, list[tuple[int, str]]] = defaultdict(list)
        tars: dict[str, list[tuple[int, RemoteEntry]]] = defaultdict(list)
        cells: dict[tuple[str, str], list[tuple[int, RemoteEntry]]] = defaultdict(list)
        fss: dict[Any, Any] = {}
        for i, e in enumerate(chunk):
            if isinstance(e, FileEntry):
                continue
            try:
                if e.kind == "tar":
                    tars[e.url].append((i, e))
                elif e.kind == "parquet":
                    cells[(e.url, e.column)].append((i, e))
                else:
                    fs, path = _url_to_fs(e.url, self.storage_options)
                    fss[id(fs)] = fs
                    objects[id(fs)].append((i, path))
            except Exception as exc:  # an unusable URL is this image's problem only
                got[i] = exc
        for key, wanted in objects.items():
            fs = fss[key]
            try:
                # One call per filesystem: async stores (s3, gcs) fetch the batch concurrently.
                blobs = fs.cat([p for _, p in wanted], on_error="return")
            except Exception as exc:
                blobs = {p: exc for _, p in wanted}
            for i, p in wanted:
                got[i] = blobs.get(p, FileNotFoundError(p))
        for url, members in tars.items():
            got.update(self._read_tar(url, members))
        for (url, column), rows in cells.items():
            got.update(self._read_cells(url, column, rows))
        for i, e in enumerate(chunk):
            yield e, got.get(i)

    def _read_tar(self, url: str, members: list[tuple[int, RemoteEntry]]
                  ) -> dict[int, bytes | BaseException]:
        out: dict[int, bytes | BaseException] = {}
        members = sorted(members, key=lambda m: m[1].offset)
        runs: list[list[tuple[int, RemoteEntry]]] = []
        for m in members:
            if runs and m[1].offset - (runs[-1][-1][1].offset + runs[-1][-1][1].length) <= _MAX_GAP:
                runs[-1].append(m)
            else:
                runs.append([m])
        try:
            fs, path = _url_to_fs(url, self.storage_options)
        except Exception as exc:
            return {i: exc for i, _ in members}
        for run in runs:
            start = run[0][1].offset
            end = run[-1][1].offset + run[-1][1].length
            try:
                blob = fs.cat_file(path, start=start, end=end)
                if len(blob) < end - start:
                    raise OSError(f"shard {url} is shorter than its listing said")
            except Exception as exc:
                out.update((i, exc) for i, _ in run)
                continue
            for i, e in run:
                out[i] = blob[e.offset - start:e.offset - start + e.length]
        return out

    def _read_cells(self, url: str, column: str, rows: list[tuple[int, RemoteEntry]]
                    ) -> dict[int, bytes | BaseException]:
        out: dict[int, bytes | BaseException] = {}
        try:
            starts = _row_starts(url, _options_key(self.storage_options))
        except Exception as exc:
            return {i: exc for i, _ in rows}
        by_group: dict[int, list[tuple[int, RemoteEntry]]] = defaultdict(list)
        for i, e in rows:
            g = max(0, _bisect(starts, e.row))
            by_group[g].append((i, e))
        for g, members in by_group.items():
            try:
                values = _row_group_bytes(url, g, column, _options_key(self.storage_options))
            except Exception as exc:
                out.update((i, exc) for i, _ in members)
                continue
            for i, e in members:
                value = values[e.row - starts[g]]
                out[i] = value if value is not None else b""  # null cell: an empty image
        return out


def _options_key(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in options.items()))


def _bisect(starts: Sequence[int], row: int) -> int:
    import bisect

    return bisect.bisect_right(starts, row) - 1


@functools.lru_cache(maxsize=64)
def _row_starts(url: str, options: tuple[tuple[str, Any], ...]) -> tuple[int, ...]:
    """First row of every row group of a Parquet file (cached per worker process)."""
    fs, path = _url_to_fs(url, dict(options))
    with fs.open(path, "rb") as fh:
        meta = _pq().ParquetFile(fh).metadata
    starts, n = [], 0
    for g in range(meta.num_row_groups):
        starts.append(n)
        n += meta.row_group(g).num_rows
    return tuple(starts)


# Two row groups per worker process: a batch is one row group, and a batch retried row by row
# then reads its row group once per worker rather than once per row.
@functools.lru_cache(maxsize=2)
def _row_group_bytes(url: str, group: int, column: str,
                     options: tuple[tuple[str, Any], ...]) -> list[bytes | None]:
    fs, path = _url_to_fs(url, dict(options))
    top, _, sub = column.partition(".")
    with fs.open(path, "rb") as fh:
        table = _pq().ParquetFile(fh).read_row_group(group, columns=[top])
    col = table.column(top).combine_chunks()
    if sub:
        col = col.field(sub)
    return col.to_pylist()


# ---------------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class _ContainerLister:
    """Lists one tar shard or Parquet file into entries (runs on the executor)."""

    fmt: Literal["tar", "parquet"]
    column: str | None = None
    name_column: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, url: str) -> list[RemoteEntry] | Problem:
        fs, path = _url_to_fs(url, self.storage_options)
        shown = _display(fs, path)
        try:
            if self.fmt == "tar":
                return _list_tar(fs, path, shown, url)
            return _list_parquet(fs, path, shown, url, self.column, self.name_column)
        except ConfigError:
            raise
        except Exception as exc:
            reason = _read_reason(exc) if isinstance(exc, OSError) else f"not-{self.fmt}"
            return Problem(path=shown, stage="walk", error=reason,
                           message=f"cannot list {self.fmt} input: {type(exc).__name__}: {exc}")


def _list_tar(fs: Any, path: str, shown: str, url: str) -> list[RemoteEntry] | Problem:
    import tarfile
    with fs.open(path, "rb") as fh:
        if fh.read(2) == b"\x1f\x8b":
            return Problem(path=shown, stage="walk", error="compressed-tar",
                           message="gzip-compressed shard: members cannot be read by range; "
                           "use plain .tar shards (WebDataset's usual layout)")
        fh.seek(0)
        out = []
        # mode "r:" (not "r|"): seekable, so tarfile skips member data instead of reading it.
        with tarfile.open(fileobj=fh, mode="r:") as tf:
            while (m := tf.next()) is not None:
                if m.isfile() and _is_image_name(m.name):
                    out.append(RemoteEntry(
                        path=f"{shown}#{m.name}", size_bytes=m.size,
                        mtime_ns=int(m.mtime) * 1_000_000_000, source=shown, url=url,
                        kind="tar", offset=m.offset_data, length=m.size))
    return out


def _pick(names: Sequence[str], wanted: str | None, preferred: Sequence[str], ok: Any,
          what: str, where: str) -> str | None:
    if wanted is not None:
        if wanted not in names:
            raise ConfigError(f"{where} has no column {wanted!r} (its columns: "
                              f"{', '.join(names)}); pass --column/--name-column")
        return wanted
    for name in preferred:
        if name in names and ok(name):
            return name
    for name in names:
        if ok(name):
            return name
    return None


def _list_parquet(fs: Any, path: str, shown: str, url: str, column: str | None,
                  name_column: str | None) -> list[RemoteEntry]:
    import pyarrow as pa

    with fs.open(path, "rb") as fh:
        pf = _pq().ParquetFile(fh)
        schema = pf.schema_arrow
        names = list(schema.names)

        def is_bytes(n: str) -> bool:
            t = schema.field(n).type
            if pa.types.is_binary(t) or pa.types.is_large_binary(t):
                return True
            return pa.types.is_struct(t) and t.get_field_index("bytes") >= 0

        def is_name(n: str) -> bool:
            t = schema.field(n).type
            return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)

        col = _pick(names, column, _BYTES_COLUMNS, is_bytes, "image bytes", shown)
        if col is None or not is_bytes(col):
            raise ConfigError(f"{shown} has no column of image bytes (binary, or a struct with "
                              f"a 'bytes' field); its columns: {', '.join(names)}")
        col_type = schema.field(col).type
        spec = f"{col}.bytes" if pa.types.is_struct(col_type) else col
        if name_column is None and pa.types.is_struct(col_type) \
                and col_type.get_field_index("path") >= 0:
            read = f"{col}.path"
        else:
            read = _pick(names, name_column, _NAME_COLUMNS, is_name, "names", shown)
        meta = pf.metadata
        if read is None:
            labels: list[Any] = [None] * meta.num_rows
        else:
            table = pf.read(columns=[read])
            arr = table.column(read.partition(".")[0]).combine_chunks()
            if "." in read:
                arr = arr.field(read.partition(".")[2])
            labels = arr.to_pylist()
    out = []
    seen: set[str] = set()
    row = 0
    for g in range(meta.num_row_groups):
        batch = f"{url}#rg{g}"
        for _ in range(meta.row_group(g).num_rows):
            label = labels[row]
            name = str(label) if label not in (None, "") else f"row={row}"
            if name in seen:
                name = f"{name}@row={row}"  # paths must be unique
            seen.add(name)
            out.append(RemoteEntry(path=f"{shown}#{name}", size_bytes=-1, mtime_ns=0,
                                   source=shown, url=url, kind="parquet", row=row,
                                   column=spec, batch=batch))
            row += 1
    return out


def _expand(target: str, fmt: str, options: Mapping[str, Any]
            ) -> tuple[Any, list[tuple[str, dict[str, Any]]], bool]:
    """A URL/path -> (fs, [(path, info)], explicit); folders and globs are listed."""
    fs, path = _url_to_fs(target, options)
    suffixes = {"tar": (".tar",), "parquet": (".parquet", ".pq")}.get(fmt)

    def keep(p: str) -> bool:
        return p.lower().endswith(suffixes) if suffixes else _is_image_name(p)

    if _fsspec().core.has_magic(path):
        found = fs.glob(path, detail=True)
        return fs, sorted((p, i) for p, i in found.items() if i.get("type") != "directory"
                          and keep(p)), False
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise ConfigError(f"path does not exist: {target}") from None
    if info.get("type") == "directory":
        found = fs.find(path, detail=True)
        return fs, sorted((p, i) for p, i in found.items() if keep(p)), False
    return fs, [(path, info)], True


def _read_list(list_path: str, column: str | None, options: Mapping[str, Any]) -> list[str]:
    local = _local_path(list_path)
    if local is not None and not local.lower().endswith((".parquet", ".pq")):
        # A local text list needs no fsspec (no extra installed).
        try:
            with open(local, encoding="utf-8", errors="surrogateescape") as fh:
                lines = [line.strip() for line in fh]
        except FileNotFoundError:
            raise ConfigError(f"file list does not exist: {list_path}") from None
        except (OSError, UnicodeError) as exc:
            raise ConfigError(f"cannot read the file list {list_path}: {exc}") from None
        return [line for line in lines if line and not line.startswith("#")]
    fs, path = _url_to_fs(list_path, options)
    if not fs.exists(path):
        raise ConfigError(f"file list does not exist: {list_path}")
    if path.lower().endswith((".parquet", ".pq")):
        import pyarrow as pa

        with fs.open(path, "rb") as fh:
            pf = _pq().ParquetFile(fh)
            schema = pf.schema_arrow

            def is_text(n: str) -> bool:
                t = schema.field(n).type
                return pa.types.is_string(t) or pa.types.is_large_string(t)

            col = _pick(list(schema.names), column, _PATH_COLUMNS, is_text, "paths", list_path)
            if col is None:
                raise ConfigError(f"{list_path} has no string column of paths; pass --column")
            values = pf.read(columns=[col]).column(col).to_pylist()
        return [v for v in values if v]
    with fs.open(path, "rt", encoding="utf-8") as fh:
        lines = [line.strip() for line in fh]
    return [line for line in lines if line and not line.startswith("#")]


def _format_of(target: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    low = target.lower().rstrip("/")
    if low.endswith(".tar"):
        return "tar"
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    return "files"


def _local_path(target: str) -> str | None:
    """The local path ``target`` names (plain path or ``file://``), else None."""
    if not is_url(target):
        return target
    if target.startswith(("file://", "local://")):
        return target.split("://", 1)[1]
    return None


def list_inputs(paths: Sequence[str | os.PathLike[str]], *, files_from: str | None = None,
                input_format: InputFormat = "auto", column: str | None = None,
                name_column: str | None = None,
                storage_options: Mapping[str, Any] | None = None,
                follow_symlinks: bool = False, stat_listed: bool = True,
                executor: Executor | None = None, reporter: Reporter | None = None,
                ) -> tuple[list[FileEntry | RemoteEntry], list[Problem], dict[str, Any]]:
    """List every image of ``paths`` (and ``files_from``) as work items, unique by path.

    Args:
        paths: local paths, URLs, globs, tar shards or Parquet files (see the module doc).
        files_from: a text or Parquet file (local or URL) listing more paths/URLs.
        input_format: ``auto`` (by extension: ``.tar`` shards, ``.parquet`` images-as-bytes,
            anything else image files), or force ``files``, ``tar`` or ``parquet`` for every
            path (a folder is then searched for ``*.tar`` / ``*.parquet``).
        column: Parquet column of paths (``files_from``) or of image bytes (``parquet``).
        name_column: Parquet column naming each image (``parquet`` inputs).
        storage_options: passed to fsspec for every URL (e.g. ``{"anon": True}``).
        follow_symlinks: for local folders, as in :func:`lookalike.inputs.walk.iter_files`.
        stat_listed: stat the local paths of ``files_from`` here, as paths named on the
            command line (identity, size and mtime known: hard links and other paths of one
            file are one item, the hash cache applies). False on a cluster, where that would be
            a round trip per file: the worker's read learns size and mtime instead.
        executor: runs the per-container listing tasks (tar headers, Parquet name columns)
            next to the data; default: in this process.
        reporter: receives listing problems.

    Returns:
        ``(items, problems, stats)``: local :class:`~lookalike.inputs.walk.FileEntry` and
        :class:`RemoteEntry` items; ``walk`` problems; listing counts.

    Raises:
        ConfigError: a missing input, unknown format, missing column or missing extra.

    Cost: one listing call per prefix; one header pass per tar shard and one name-column
    read per Parquet file (both on the executor); file lists are read, never stat'ed.
    """
    from lookalike.events import NullReporter
    from lookalike.executors.base import SerialExecutor

    if input_format not in INPUT_FORMATS:
        raise ConfigError(f"--input-format must be one of {', '.join(INPUT_FORMATS)}")
    reporter = reporter or NullReporter()
    options = dict(storage_options or {})
    items: list[FileEntry | RemoteEntry] = []
    problems: list[Problem] = []
    walk = WalkStats()
    containers: dict[str, list[str]] = {"tar": [], "parquet": []}
    local_roots: list[str] = []
    for raw in map(os.fspath, paths):
        fmt = _format_of(raw, input_format)
        local = _local_path(raw)
        if fmt == "files" and local is not None:
            if not os.path.lexists(local):
                raise ConfigError(f"path does not exist: {os.path.abspath(local)}")
            local_roots.append(local)
            continue
        fs, found, explicit = _expand(raw, fmt, options)
        if fmt in ("tar", "parquet"):
            containers[fmt].extend(fs.unstrip_protocol(p) for p, _ in found)
            continue
        shown_root = raw
        for p, info in found:
            walk.files_seen += 1
            size = info.get("size")
            items.append(RemoteEntry(path=_display(fs, p),
                                     size_bytes=int(size) if size is not None else -1,
                                     mtime_ns=_mtime_ns(info), source=shown_root,
                                     url=fs.unstrip_protocol(p)))
        if not found and not explicit:
            reporter.info(f"no image files under {raw}")
    lines = [] if files_from is None else _read_list(
        files_from, column if input_format != "parquet" else None, options)
    # Local paths of the list are stat'ed here, like paths on the command line (followed if a
    # link), but a missing one is that file's problem, not the whole scan's.
    listed = {line: local for line in lines
              if stat_listed and (local := _local_path(line)) is not None}
    walked = itertools.chain(
        iter_files(local_roots, follow_symlinks=follow_symlinks, stats=walk),
        *(iter_listed(local, str(files_from), follow_symlinks=follow_symlinks, stats=walk)
          for local in listed.values()))
    for item in walked:
        if isinstance(item, Problem):
            reporter.problem(item)
            problems.append(item)
        else:
            items.append(item)
    for line in lines:
        if line in listed:
            continue
        walk.files_seen += 1
        local = _local_path(line)
        if local is not None:
            # Not stat'ed here: on a cluster that is a round trip per file; the worker's
            # read learns size and mtime, and a missing file becomes its problem.
            items.append(FileEntry(os.path.abspath(local), -1, 0, str(files_from)))
        else:
            items.append(RemoteEntry(path=line, size_bytes=-1, mtime_ns=0,
                                     source=str(files_from), url=line))
    # Only when used, so a plain folder scan's stats are what they always were.
    listed = {{"tar": "tar_shards", "parquet": "parquet_files"}[fmt]: len(urls)
              for fmt, urls in containers.items() if urls}
    for fmt, urls in containers.items():
        if not urls:
            continue
        lister = _ContainerLister(fmt, column, name_column, options)  # type: ignore[arg-type]
        run = executor if executor is not None else SerialExecutor()
        results: dict[str, list[RemoteEntry] | Problem | BaseException] = {}
        for url, out in run.map_unordered(lister, urls):
            results[url] = out
        for url in urls:  # input order, whatever order the tasks finished in
            out = results[url]
            if isinstance(out, ConfigError):
                raise out
            if isinstance(out, BaseException):
                out = Problem(path=url, stage="walk", error="list-failed",
                              message=f"listing task failed: {type(out).__name__}: {out}")
            if isinstance(out, Problem):
                reporter.problem(out)
                problems.append(out)
                continue
            walk.files_seen += len(out)
            items.extend(out)
    # One entry per file: local files by identity (hard links, symlinked folders and
    # overlapping roots are one file; see unique_files), anything else by path.
    local_files = unique_files([e for e in items if isinstance(e, FileEntry)])
    unique: dict[str, FileEntry | RemoteEntry] = {e.path: e for e in local_files}
    for e in items:
        if isinstance(e, RemoteEntry):
            unique.setdefault(e.path, e)
    stats = {"files_seen": walk.files_seen, "skipped_non_image": walk.skipped_non_image,
             "skipped_symlinks": walk.skipped_symlinks, **listed}
    return list(unique.values()), problems, stats


# ---------------------------------------------------------------------------- one call


class _KnownSizes:
    """Hash-cache view for items listed without a stat (size -1): they bypass the cache.

    The cache validates rows by size and mtime; an item whose size is unknown could match a
    stale row (an error recorded for a file fixed since), so it is always hashed instead.
    """

    def __init__(self, inner: HashCache) -> None:
        self.inner = inner

    def lookup(self, entries: Sequence[Any], config: ScanConfig
               ) -> tuple[list[Any], list[Problem], list[Any]]:
        known = [e for e in entries if e.size_bytes >= 0]
        records, problems, todo = self.inner.lookup(known, config)
        again = {id(e) for e in todo}
        # Listing order kept: a Parquet row group's rows must stay next to each other.
        return records, problems, [e for e in entries if e.size_bytes < 0 or id(e) in again]

    def add(self, records: Iterable[Any], problems: Iterable[Problem], config: ScanConfig,
            sizes: dict[str, tuple[int, int]] | None = None) -> None:
        known = {p: st for p, st in (sizes or {}).items() if st[0] >= 0}
        self.inner.add(records, problems, config, known)

    def set_digests(self, rows: Iterable[tuple[str, int, int, str]],
                    configs: Sequence[ScanConfig]) -> None:
        self.inner.set_digests(rows, configs)

    # Items of unknown size were hashed (never looked up), so a scan with any has a
    # non-empty hashing list and never asks for a memo; the keys are the inner cache's.
    def grouping_key(self, config: ScanConfig, paths: Sequence[str]) -> str | None:
        return self.inner.grouping_key(config, paths)

    def load_grouping(self, key: str) -> dict[str, list] | None:
        return self.inner.load_grouping(key)

    def save_grouping(self, key: str, memo: dict[str, list]) -> None:
        self.inner.save_grouping(key, memo)

    def flush(self) -> None:
        self.inner.flush()


def scan_inputs(paths: Iterable[str | os.PathLike[str]], config: ScanConfig, *,
                files_from: str | None = None, input_format: InputFormat = "auto",
                column: str | None = None, name_column: str | None = None,
                engine: Literal["local", "dask"] = "local", scheduler: str | None = None,
                executor: Executor | None = None, parquet_out: str | None = None,
                cache: HashCache | None = None, retries: int | None = None,
                batch_size: int | None = None,
                storage_options: Mapping[str, Any] | None = None,
                reporter: Reporter | None = None) -> ScanResult:
    """Scan any inputs on any engine, optionally writing (and resuming from) Parquet results.

    The front end of ``lookalike scan`` for the options of issue 8. With only local folders,
    the local engine and no Parquet output it is exactly :func:`lookalike.scan`.

    Args:
        paths: local paths, URLs, tar shards or Parquet files (see :func:`list_inputs`).
        config: hashing and grouping settings.
        files_from, input_format, column, name_column, storage_options: see
            :func:`list_inputs`.
        engine: ``local`` (processes on this machine) or ``dask``.
        scheduler: Dask scheduler address (implies ``engine="dask"``); without one the dask
            engine starts a local cluster of ``config.workers`` processes.
        executor: an executor to use instead (not closed here).
        parquet_out: write every item's result to this Parquet dataset (a folder of part
            files, local or URL) as the scan runs; items already there are not hashed again.
        cache: a :class:`~lookalike.store.cache.HashCache` (behind ``parquet_out`` if both).
        retries: how often a failed batch is retried file by file before its files are
            reported as ``worker-crashed`` (default 1; Dask also re-runs tasks of a dead
            worker up to its ``allowed-failures``).
        batch_size: images per work item (default 16; on Dask up to 256, with at least 4
            items per worker; a Parquet row group is always one item).
        reporter: progress and problems.

    Returns:
        The :class:`~lookalike.pipeline.ScanResult`; grouping ran here, on the client.

    Raises:
        ConfigError: bad options, missing inputs, a missing extra (with the pip command),
            an unreachable scheduler, or Parquet output made with other settings.
    """
    from lookalike.events import NullReporter
    from lookalike.pipeline import run_scan_items

    paths = [os.fspath(p) for p in paths]
    if not paths and files_from is None:
        raise ConfigError("nothing to scan: give PATHS or --files-from")
    if scheduler is not None:
        engine = "dask"
    if engine not in ("local", "dask"):
        raise ConfigError(f"unknown engine {engine!r}; use 'local' or 'dask'")
    if input_format not in INPUT_FORMATS:
        raise ConfigError(f"--input-format must be one of {', '.join(INPUT_FORMATS)}")
    reporter = reporter or NullReporter()
    store: Any = _KnownSizes(cache) if cache is not None else None
    own_store = False
    if parquet_out is not None:
        from lookalike.store.parquet import ParquetStore

        store = ParquetStore(parquet_out, inner=store,  # type: ignore[arg-type]
                             storage_options=dict(storage_options or {}))
        own_store = True
    own_executor = executor is None and engine == "dask"
    try:
        if own_executor:
            from lookalike.executors import make_executor

            executor = make_executor("dask", config.workers, scheduler)
        t0 = time.perf_counter()
        walking = files_from is None and all(
            _format_of(p, input_format) == "files" and not is_url(p) for p in paths)
        reporter.phase(1, 3, "walking" if walking else "listing", None)
        items, problems, listing = list_inputs(
            paths, files_from=files_from, input_format=input_format, column=column,
            name_column=name_column, storage_options=storage_options,
            follow_symlinks=config.follow_symlinks, stat_listed=engine == "local",
            executor=executor, reporter=reporter)
        only_local = all(type(i) is FileEntry and i.size_bytes >= 0 for i in items)
        roots = [os.path.abspath(p) if _local_path(p) == p else p for p in paths]
        if files_from is not None:
            roots.append(files_from)
        hint = getattr(executor, "batch_size_hint", None)
        if batch_size is None and hint is not None and executor is not None:
            # Big batches amortise the engine's per-task cost; at least 4 batches per worker
            # keep them all busy until the end.
            batch_size = max(CHUNK_SIZE, min(hint, len(items) // (4 * max(1, executor.workers))))
        # Plain local files need nothing but the local worker (and stay picklable cheaply).
        worker = None if only_local else RemoteWorker(config, dict(storage_options or {}))
        return run_scan_items(items, config, worker=worker, roots=roots, problems=problems,
                              listing=listing, reporter=reporter, executor=executor,
                              cache=store, retries=retries, chunk_size=batch_size, started=t0)
    finally:
        if own_executor and executor is not None:
            executor.close()
        if own_store:
            store.close(close_inner=False)
