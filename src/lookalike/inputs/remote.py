"""Inputs beyond local folders: file lists, object-store URLs, tar shards, Parquet with bytes.

Needs the ``dask`` extra's ``fsspec`` (and ``pyarrow`` for Parquet), imported only when such
an input is used: ``pip install 'lookalike[dask]'``. Object stores need their fsspec driver
too (``s3fs`` for ``s3://``, ``gcsfs`` for ``gs://``); credentials come from the usual places
(environment, config files, instance roles) on the client *and* on every worker.

Inputs, each listed on the client (or, for containers, by a task on the executor) into work
items by :func:`lookalike.inputs.listing.list_inputs`; workers read them with
:class:`RemoteReader` and hash them like local files:

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
import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from lookalike.config import import_extra
from lookalike.errors import ConfigError, Problem, first_line
from lookalike.inputs.walk import (
    IMAGE_EXTENSIONS,
)

if TYPE_CHECKING:
    pass

__all__ = ["RemoteEntry", "RemoteReader", "is_url"]



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
        mtime_ns: modification time if the store reports one, else 0 (a tar member: its
            shard's, which changes when the shard is rewritten).
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

    #: No change time is known of an object, member or cell (``FileEntry.ctime_ns``'s 0).
    ctime_ns: ClassVar[int] = 0


# ---------------------------------------------------------------------------- optional deps


def _fsspec() -> Any:
    return import_extra("fsspec", "reading URLs, file lists, tar shards or Parquet", "dask")


def _pq() -> Any:
    return import_extra("pyarrow.parquet", "reading or writing Parquet", "dask")


def _url_to_fs(url: str, options: Mapping[str, Any]) -> tuple[Any, str]:
    fsspec = _fsspec()
    try:
        return fsspec.core.url_to_fs(url, **options)
    except Exception as exc:
        # A missing package (s3fs for s3://), an unknown protocol, and whatever opening the
        # filesystem raises: no server there, no such host, a damaged zip, a URL it cannot
        # parse, a missing native library (whose message runs to a hundred lines).
        raise ConfigError(f"cannot open {url}: {first_line(exc)}") from None


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


class _NullCell(Exception):
    """A Parquet cell (a dataset's row) that holds no image."""


def _read_reason(exc: BaseException) -> str:
    if isinstance(exc, _NullCell):
        return "null-cell"
    if isinstance(exc, FileNotFoundError):
        return "vanished"
    if isinstance(exc, PermissionError):
        return "permission-denied"
    if isinstance(exc, IsADirectoryError):
        return "not-a-regular-file"
    return "read-error"


# ---------------------------------------------------------------------------- the worker


@dataclass(frozen=True, slots=True)
class RemoteReader:
    """Reads the bytes of remote items with as few requests as it can: concurrent
    whole-object reads per filesystem, one ranged read per run of tar members, one read per
    Parquet row group. Picklable (it runs on workers); never raises for a bad or missing
    item: that item's read problem is returned instead of its bytes."""

    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def read(self, items: Sequence[RemoteEntry]) -> Iterator[tuple[RemoteEntry, bytes | Problem]]:
        """``(item, bytes or problem)`` for each of ``items``, a few at a time."""
        # Read a few images ahead, not the whole batch: batches may be hundreds of images.
        for i in range(0, len(items), _READ_AHEAD):
            part = items[i:i + _READ_AHEAD]
            got = self._fetch(part)
            for j, entry in enumerate(part):
                data = got.get(j)
                if data is None or isinstance(data, BaseException):
                    exc = data if data is not None else OSError("no data was read")
                    yield entry, Problem(path=entry.path, stage="read", error=_read_reason(exc),
                                         message=str(exc) if isinstance(exc, _NullCell) else
                                         f"cannot read: {_why(exc)}")
                else:
                    yield entry, bytes(data)  # some stores hand back bytearray or memoryview

    def _fetch(self, chunk: Sequence[RemoteEntry]) -> dict[int, bytes | BaseException]:
        got: dict[int, bytes | BaseException] = {}
        objects: dict[Any, list[tuple[int, str]]] = defaultdict(list)
        tars: dict[str, list[tuple[int, RemoteEntry]]] = defaultdict(list)
        cells: dict[tuple[str, str], list[tuple[int, RemoteEntry]]] = defaultdict(list)
        fss: dict[Any, Any] = {}
        for i, e in enumerate(chunk):
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
        return got

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
                value: bytes | str | _NullCell | None = values[e.row - starts[g]]
                if value is None:
                    value = _NullCell("the cell is null: this row has no image")
                elif isinstance(value, str):
                    value = _NullCell(
                        f"the cell holds no image bytes, only the path {value!r}; scan those "
                        "files, or load the dataset with datasets and pass the Dataset (its "
                        "files are read then)")
                out[i] = value
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
                     options: tuple[tuple[str, Any], ...]) -> list[bytes | str | None]:
    fs, path = _url_to_fs(url, dict(options))
    top, _, sub = column.partition(_FIELD)
    with fs.open(path, "rb") as fh:
        table = _pq().ParquetFile(fh).read_row_group(group, columns=[top])
    col = table.column(top).combine_chunks()
    if not sub:
        return col.to_pylist()
    cells = col.field(sub).to_pylist()
    if sub == "bytes" and col.type.get_field_index("path") >= 0:
        # An image stored as a path only (Hugging Face writes {bytes: null, path}): the path,
        # to say so (the file it names is not read: it is not part of this input).
        paths = col.field("path").to_pylist()
        cells = [c if c is not None else p for c, p in zip(cells, paths, strict=True)]
    return cells


# ---------------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class _ContainerLister:
    """Lists one tar shard or Parquet file into entries (runs on the executor)."""

    fmt: Literal["tar", "parquet"]
    column: str | None = None
    name_column: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, url: str) -> list[RemoteEntry | Problem] | Problem | ConfigError:
        fs, path = _url_to_fs(url, self.storage_options)
        shown = _display(fs, path)
        try:
            if self.fmt == "tar":
                return _list_tar(fs, path, shown, url)
            return _list_parquet(fs, path, shown, url, self.column, self.name_column)
        except ConfigError as exc:
            # Returned, not raised: the caller tells bad usage (no input has the column)
            # from one file's problem, and a task that raises logs a worker's traceback.
            return exc
        except Exception as exc:
            reason = _read_reason(exc) if isinstance(exc, OSError) else f"not-{self.fmt}"
            return Problem(path=shown, stage="walk", error=reason,
                           message=f"cannot list {self.fmt} input: {_why(exc)}")


def _why(exc: BaseException) -> str:
    """Why an input could not be read or listed: the system's reason for an OS error (the
    path is named beside it already), else the error's type and first line (a library's
    ``ArrowInvalid: ...``, a network client's)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {first_line(exc)}"


def _list_tar(fs: Any, path: str, shown: str, url: str
              ) -> list[RemoteEntry | Problem] | Problem:
    import tarfile
    with fs.open(path, "rb") as fh:
        if fh.read(2) == b"\x1f\x8b":
            return Problem(path=shown, stage="walk", error="compressed-tar",
                           message="gzip-compressed shard: members cannot be read by range; "
                           "use plain .tar shards (WebDataset's usual layout)")
        end = fh.seek(0, 2)  # the shard's length: a member whose data runs past it was cut
        fh.seek(0)
        out: list[RemoteEntry | Problem] = []
        cut = 0
        # A member's version is its shard's: writers stamp members with time 0 (WebDataset,
        # reproducible tars) and re-use their names when re-sharding, so a member's own size
        # and mtime would let a cache hand back the hash of an image it no longer holds.
        try:
            shard_ns = _mtime_ns(fs.info(path))
        except Exception:  # a store that answers no metadata query (some HTTP servers)
            shard_ns = 0  # then the members' own times, as before
        # mode "r:" (not "r|"): seekable, so tarfile skips member data instead of reading it.
        seen: set[str] = set()
        data: dict[str, tuple[int, int]] = {}  # member name -> (offset, length) of its data
        try:
            with tarfile.open(fileobj=fh, mode="r:") as tf:
                while (m := tf.next()) is not None:
                    if m.isfile() and m.offset_data + m.size > end:
                        cut += 1  # its data ends early: not an image to read
                        continue
                    if m.isfile():
                        data[m.name] = (m.offset_data, m.size)
                    if not _is_image_name(m.name):
                        continue
                    # A hard link holds no data: it names an earlier member's, read as its
                    # own sample (a reader of the shard yields both). Other kinds were
                    # dropped without a word.
                    where = data.get(m.linkname if m.islnk() else m.name)
                    if where is None or not (m.isfile() or m.islnk()):
                        what = (f"a symbolic link (to {m.linkname}); not followed"
                                if m.issym() else
                                f"a hard link to {m.linkname}, which the shard does not hold "
                                "before it" if m.islnk() else
                                "a folder, FIFO or device entry, not a file")
                        out.append(Problem(path=f"{shown}#{m.name}", stage="walk",
                                           error="not-a-regular-file", message=what))
                        continue
                    # A name the shard holds twice (appended again): each is an image of
                    # its own; paths must be unique, as a Parquet file's names are made.
                    name = m.name if m.name not in seen else f"{m.name}@offset={m.offset}"
                    seen.add(m.name)
                    out.append(RemoteEntry(
                        path=f"{shown}#{name}", size_bytes=where[1],
                        mtime_ns=shard_ns or int(m.mtime) * 1_000_000_000, source=shown,
                        url=url, kind="tar", offset=where[0], length=where[1]))
            stop = tf.offset  # where tarfile saw the end: a header cut short reads as one
            fh.seek(stop)
            partial = 0 < end - stop < tarfile.BLOCKSIZE and bool(fh.read(end - stop).strip(b"\0"))
        except (tarfile.TarError, EOFError) as exc:
            if not out and not cut:
                raise
            why = f"{exc}"
        else:
            if not cut and not partial:
                return out
            why = "a member's data runs past its end" if cut else "its last header is cut"
    # A shard cut short (a copy that stopped): the whole members before the cut are read.
    return [*out, Problem(path=shown, stage="walk", error="truncated-tar",
                          message=f"the shard ends early ({why}); the {len(out)} whole "
                          "images before that point are read")]


def _pick(names: Sequence[str], wanted: str | None, preferred: Sequence[str], ok: Any,
          what: str, where: str) -> str | None:
    if wanted is not None:
        if wanted not in names:
            raise ConfigError(f"{where} has no column {wanted!r} (its columns: "
                              f"{', '.join(names)}); name its column of {what}")
        return wanted
    for name in preferred:
        if name in names and ok(name):
            return name
    for name in names:
        if ok(name):
            return name
    return None


#: Between a column and a field of its structs in ``RemoteEntry.column`` (``image`` +
#: ``bytes``, as Hugging Face writes images): not a dot, which column names may hold.
_FIELD = "\0"


def _list_parquet(fs: Any, path: str, shown: str, url: str, column: str | None,
                  name_column: str | None) -> list[RemoteEntry | Problem]:
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
        if col is not None and not is_bytes(col):  # the column named holds something else
            raise ConfigError(f"{shown}: column {col!r} holds {schema.field(col).type}, not "
                              "image bytes (binary, or a struct with a 'bytes' field); its "
                              f"columns: {', '.join(names)}")
        if col is None:
            raise ConfigError(f"{shown} has no column of image bytes (binary, or a struct with "
                              f"a 'bytes' field); its columns: {', '.join(names)}")
        col_type = schema.field(col).type
        spec = f"{col}{_FIELD}bytes" if pa.types.is_struct(col_type) else col
        if name_column is None and pa.types.is_struct(col_type) \
                and col_type.get_field_index("path") >= 0:
            read: str | None = f"{col}{_FIELD}path"
        else:
            read = _pick(names, name_column, _NAME_COLUMNS, is_name, "names", shown)
        meta = pf.metadata
        if read is None:
            labels: list[Any] = [None] * meta.num_rows
        else:
            # Arrow names a struct's field by a dotted path: only that field is read.
            table = pf.read(columns=[read.replace(_FIELD, ".")])
            top, _, sub = read.partition(_FIELD)
            arr = table.column(top).combine_chunks()
            if sub:
                arr = arr.field(sub)
            labels = arr.to_pylist()
    out: list[RemoteEntry | Problem] = []
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
