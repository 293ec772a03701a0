"""Listing what to scan: every input named by the user becomes work items, one per file.

:func:`list_inputs` takes local paths (walked by :mod:`lookalike.inputs.walk`), URLs, tar
shards, Parquet files and file lists (the formats are described in
:mod:`lookalike.inputs.remote`) and returns local :class:`~lookalike.inputs.walk.FileEntry`
and :class:`~lookalike.inputs.remote.RemoteEntry` items, unique by file.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from lookalike.errors import ConfigError, Problem, first_line
from lookalike.events import NullReporter
from lookalike.inputs.remote import (
    _PATH_COLUMNS,
    RemoteEntry,
    _ContainerLister,
    _display,
    _fsspec,
    _is_image_name,
    _mtime_ns,
    _pick,
    _pq,
    _url_to_fs,
    is_url,
)
from lookalike.inputs.walk import (
    FileEntry,
    WalkStats,
    check_roots,
    iter_files,
    iter_listed,
    named_paths,
    unique_files,
)

if TYPE_CHECKING:
    from lookalike.events import Reporter
    from lookalike.executors.base import Executor

__all__ = ["INPUT_FORMATS", "InputFormat", "check_paths", "format_of", "list_inputs"]

InputFormat = Literal["auto", "files", "tar", "parquet"]
INPUT_FORMATS: tuple[str, ...] = ("auto", "files", "tar", "parquet")


def _expand(target: str, fmt: str, options: Mapping[str, Any]
            ) -> tuple[Any, list[tuple[str, dict[str, Any]]], bool, int]:
    """A URL/path -> (fs, [(path, info)], explicit, images left out); folders and globs
    are listed. Images are left out where shards or Parquet files are asked for."""
    fs, path = _url_to_fs(target, options)
    # Compressed shards too: each is then reported as one (compressed-tar), not skipped.
    suffixes = {"tar": (".tar", ".tar.gz", ".tgz"), "parquet": (".parquet", ".pq")}.get(fmt)

    def keep(p: str) -> bool:
        return p.lower().endswith(suffixes) if suffixes else _is_image_name(p)

    def listed(found: Mapping[str, dict[str, Any]]) -> tuple[Any, list, bool, int]:
        files = [(p, i) for p, i in found.items() if i.get("type") != "directory"]
        kept = sorted((p, i) for p, i in files if keep(p))
        return fs, kept, False, sum(1 for p, _ in files if suffixes and _is_image_name(p))

    if _fsspec().core.has_magic(path):
        return listed(fs.glob(path, detail=True))
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise ConfigError(f"path does not exist: {target}") from None
    if info.get("type") == "directory":
        return listed(fs.find(path, detail=True))
    return fs, [(path, info)], True, 0


def _read_list(list_path: str, column: str | None, options: Mapping[str, Any]) -> list[str]:
    local = _local_path(list_path)
    if local is not None and not local.lower().endswith((".parquet", ".pq")):
        # A local text list needs no fsspec (no extra installed).
        try:
            mode = os.stat(local).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode):
                # /dev/zero was read until memory ran out; a pipe (`<(find ...)`) is fine.
                raise ConfigError(f"the file list {list_path} is a "
                                  f"{'folder' if stat.S_ISDIR(mode) else 'device'}, not a "
                                  "file; name a text file with one path per line")
            # Only line ends are taken off: spaces are legal at either end of a file name.
            with open(local, encoding="utf-8", errors="surrogateescape", newline="") as fh:
                return _list_lines(fh.read(), list_path)
        except FileNotFoundError:
            raise ConfigError(f"file list does not exist: {list_path}") from None
        except (OSError, UnicodeError) as exc:
            raise ConfigError(f"cannot read the file list {list_path}: {exc}") from None
    fs, path = _url_to_fs(list_path, options)
    if not fs.exists(path):
        raise ConfigError(f"file list does not exist: {list_path}")
    if path.lower().endswith((".parquet", ".pq")):
        import pyarrow as pa

        try:
            with fs.open(path, "rb") as fh:
                pf = _pq().ParquetFile(fh)
                schema = pf.schema_arrow

                def is_text(n: str) -> bool:
                    t = schema.field(n).type
                    return pa.types.is_string(t) or pa.types.is_large_string(t)

                col = _pick(list(schema.names), column, _PATH_COLUMNS, is_text, "paths",
                            list_path)
                if col is None:
                    raise ConfigError(f"{list_path} has no string column of paths; name the "
                                      "column that holds them")
                values = pf.read(columns=[col]).column(col).to_pylist()
        except (pa.ArrowException, OSError) as exc:  # an empty, cut or damaged file
            raise ConfigError(f"cannot read the file list {list_path} as Parquet: "
                              f"{first_line(exc)}") from None
        return [v for v in values if v]
    with fs.open(path, "rt", encoding="utf-8", newline="") as fh:
        return _list_lines(fh.read(), list_path)


def _list_lines(text: str, list_path: str) -> list[str]:
    """The paths of a text file list: one per line, only the line end taken off (spaces are
    legal at either end of a name); blank lines and comments (``#`` first, after any
    spaces) skipped. A NUL byte (no path holds one) means it is no text list: an image
    named by mistake gave a hundred "holds a NUL byte" lines of its bytes.

    Lines end at ``\n`` only, and a list whose path lines end ``\r\n`` (written on
    Windows), at least half of them, loses that ``\r`` too: a carriage return is legal in
    a file name (the ``paths`` format writes such names), and reading it as a line end split
    the name; a name ending in one is rare, a line or two added on Linux to a list written
    on Windows (``echo path >> list``) is not. A byte-order mark first (Notepad, PowerShell
    5's ``Out-File``) is no part of the first path (it made that file "not found")."""
    lines = text.removeprefix("\ufeff").split("\n")
    # The last piece has no line end (often it is empty). Blank lines and comments do not
    # count.
    ended = [line for line in lines[:-1] if line.strip() and not line.lstrip().startswith("#")]
    if ended and 2 * sum(line.endswith("\r") for line in ended) >= len(ended):
        lines = [line.removesuffix("\r") for line in lines[:-1]] + lines[-1:]
    out = []
    for line in lines:
        if "\0" in line:
            raise ConfigError(f"the file list {list_path} holds NUL bytes: it is not a text "
                              "list of paths; name a text file with one path per line")
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line)
    return out


def format_of(target: str, fmt: str) -> str:
    """How ``target`` is read: ``files``, ``tar`` or ``parquet`` (``fmt``, or by its name
    when ``fmt`` is ``auto``)."""
    if fmt != "auto":
        return fmt
    low = target.lower().rstrip("/")
    if low.endswith((".tar", ".tar.gz", ".tgz")):  # compressed: refused as one, with a hint
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


def _folder_named_like_shards(target: str, input_format: str) -> bool:
    """Whether ``target``, where no shard or Parquet file was found, is read as a folder of
    image files: with the default format, a local folder merely named like a shard
    ("photos.tar/") is, as the default format promises (a Spark-style "t.parquet/" folder
    of Parquet files is read as those)."""
    local = _local_path(target)
    return input_format == "auto" and local is not None and os.path.isdir(local)


def check_paths(paths: Sequence[str | os.PathLike[str]],
                input_format: InputFormat = "auto") -> None:
    """Raise :class:`~lookalike.errors.ConfigError` now, before any work, for a local path
    (file or folder) that does not exist."""
    check_roots(local for raw in (os.fspath(p) for p in paths)
                if format_of(raw, input_format) == "files"
                and (local := _local_path(raw)) is not None)


def _check_columns(paths: Sequence[str | os.PathLike[str]], input_format: str,
                   files_from: str | None, column: str | None, name_column: str | None) -> None:
    """Refuse a column that no input has: it would be ignored, and the user meant some."""
    parquet_inputs = any(format_of(os.fspath(p), input_format) == "parquet" for p in paths)
    parquet_list = files_from is not None and files_from.lower().endswith((".parquet", ".pq"))
    if column is not None and not (parquet_inputs or parquet_list):
        raise ConfigError(f"column {column!r} applies only to Parquet inputs or a Parquet file "
                          "list, and these inputs have neither; leave it out")
    if name_column is not None and not parquet_inputs:
        raise ConfigError(f"name column {name_column!r} applies only to Parquet inputs, and "
                          "these inputs have none; leave it out")


def check_inputs(paths: Sequence[str | os.PathLike[str]], *, files_from: str | None = None,
                 input_format: InputFormat = "auto", column: str | None = None,
                 name_column: str | None = None) -> None:
    """The checks of :func:`list_inputs` that need no listing (an unknown format, a local
    path or file list that does not exist, a column no input has), for a caller to make
    before it says that listing began.

    Raises:
        ConfigError: the first of those.
    """
    if input_format not in INPUT_FORMATS:
        raise ConfigError(f"the input format must be one of {', '.join(INPUT_FORMATS)}")
    named_paths([*paths, *([files_from] if files_from is not None else [])])
    check_paths(paths, input_format)
    _check_columns(paths, input_format, files_from, column, name_column)
    local = None if files_from is None else _local_path(files_from)
    if local is not None:
        if os.path.isdir(local):
            raise ConfigError(f"the file list {files_from} is a folder; name a text or Parquet "
                              "file of paths")
        if not os.path.exists(local):
            raise ConfigError(f"file list does not exist: {files_from}")


def list_inputs(paths: Sequence[str | os.PathLike[str]], *, files_from: str | None = None,
                input_format: InputFormat = "auto", column: str | None = None,
                name_column: str | None = None,
                storage_options: Mapping[str, Any] | None = None,
                follow_symlinks: bool = False, stat_listed: bool = True,
                executor: Executor | None = None, reporter: Reporter | None = None,
                started: Callable[[], None] | None = None,
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
        started: called once the inputs are found usable and the listing proper begins
            (a caller's "listing" progress line): after the file list is read and the shards
            or Parquet files asked for are found, so that an error in those (a list that
            cannot be read, a folder without shards) is the only line, before any progress.

    Returns:
        ``(items, problems, stats)``: local :class:`~lookalike.inputs.walk.FileEntry` and
        :class:`RemoteEntry` items; ``walk`` problems; listing counts.

    Raises:
        ConfigError: a missing input, unknown format, missing column (or one no input has)
            or missing extra.

    Cost: one listing call per prefix; one header pass per tar shard and one name-column
    read per Parquet file (both on the executor); file lists are read, never stat'ed.
    """
    check_inputs(paths, files_from=files_from, input_format=input_format, column=column,
                 name_column=name_column)
    reporter = reporter or NullReporter()
    options = dict(storage_options or {})
    items: list[FileEntry | RemoteEntry] = []
    problems: list[Problem] = []
    walk = WalkStats()
    containers: dict[str, list[str]] = {"tar": [], "parquet": []}
    local_roots: list[str] = []
    skipped_images = 0  # beside the shards or Parquet files asked for
    # What can refuse the whole run comes first, before `started`: the file list (read
    # once: it may be a pipe) and the shards or Parquet files asked for. An error in them
    # came after the "listing" progress line.
    lines = [] if files_from is None else _read_list(
        files_from, column if input_format != "parquet" else None, options)
    targets = [os.fspath(p) for p in paths]
    expanded = {k: _expand(raw, fmt, options) for k, raw in enumerate(targets)
                if (fmt := format_of(raw, input_format)) in ("tar", "parquet")}
    for k, (_fs, found, _explicit, _images) in expanded.items():
        raw = targets[k]
        if not found and not _folder_named_like_shards(raw, input_format):
            fmt = format_of(raw, input_format)
            what = ".tar shards" if fmt == "tar" else "Parquet files"
            raise ConfigError(f"no {what} under {raw} (input format {fmt}); to scan the "
                              "image files there, use input format auto or files")
    if started is not None:
        started()
    for k, raw in enumerate(targets):
        fmt = format_of(raw, input_format)
        local = _local_path(raw)
        if fmt == "files" and local is not None:
            local_roots.append(local)
            continue
        fs, found, explicit, images = (expanded[k] if k in expanded
                                       else _expand(raw, fmt, options))
        if fmt in ("tar", "parquet"):
            if not found and local is not None:  # a folder named like a shard (see above)
                local_roots.append(local)
                continue
            skipped_images += images  # they were left out without a word
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
    # Local paths of the list are stat'ed here, like paths on the command line (followed if a
    # link), but a missing one is that file's problem, not the whole scan's.
    listed = {line: local for line in lines
              if stat_listed and (local := _local_path(line)) is not None}
    walked = itertools.chain(
        iter_files(local_roots, follow_symlinks=follow_symlinks, stats=walk),
        *(iter_listed(local, str(files_from), follow_symlinks=follow_symlinks, stats=walk)
          for local in listed.values()))
    said: set[tuple[str, str]] = set()
    for item in walked:
        if isinstance(item, Problem):
            # Overlapping roots (a folder and its subfolder, a file and its folder, one
            # line twice) walk a bad file more than once: it is reported once, as images are
            # listed once.
            if (item.path, item.error) not in said:
                said.add((item.path, item.error))
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
    shards = {{"tar": "tar_shards", "parquet": "parquet_files"}[fmt]: len(urls)
              for fmt, urls in containers.items() if urls}
    for fmt, urls in containers.items():
        if not urls:
            continue
        lister = _ContainerLister(fmt, column, name_column, options)  # type: ignore[arg-type]
        results: dict[str, list[RemoteEntry | Problem] | Problem | BaseException] = {}
        if executor is not None:
            results.update(executor.map_unordered(lister, urls))
        else:
            for url in urls:
                try:
                    results[url] = lister(url)
                except Exception as exc:  # turned into this container's problem below
                    results[url] = exc
        refused = [out for out in results.values() if isinstance(out, ConfigError)]
        if refused and len(refused) == len(urls):
            raise refused[0]  # no input has what was asked for (a column): bad usage
        for url in urls:  # input order, whatever order the tasks finished in
            out = results[url]
            if isinstance(out, ConfigError):  # others have it: this file's problem only
                out = Problem(path=url, stage="walk", error=f"not-{fmt}", message=str(out))
            if isinstance(out, BaseException):
                out = Problem(path=url, stage="walk", error="list-failed",
                              message=f"listing task failed: {type(out).__name__}: {out}")
            # A container's entries, or its problem, or both (a shard cut short).
            for got in out if isinstance(out, list) else [out]:
                if isinstance(got, Problem):
                    reporter.problem(got)
                    problems.append(got)
                else:
                    walk.files_seen += 1
                    items.append(got)
    # One entry per file: local files by identity (hard links, symlinked folders and
    # overlapping roots are one file; see unique_files), anything else by path.
    local_files = unique_files([e for e in items if isinstance(e, FileEntry)])
    unique: dict[str, FileEntry | RemoteEntry] = {e.path: e for e in local_files}
    for e in items:
        if isinstance(e, RemoteEntry):
            unique.setdefault(e.path, e)
    stats: dict[str, Any] = {
        "files_seen": walk.files_seen, "skipped_non_image": walk.skipped_non_image,
        "skipped_symlinks": walk.skipped_symlinks, **shards}
    if walk.skipped_containers:  # only then, as above
        stats["skipped_containers"] = walk.skipped_containers
    if walk.skipped_cache_dirs:
        stats["skipped_cache_dirs"] = walk.skipped_cache_dirs
    if skipped_images:
        stats["skipped_images"] = skipped_images
    if containers["parquet"]:  # which columns were read: the review page reads them again
        stats.update({k: v for k, v in (("parquet_column", column),
                                        ("parquet_name_column", name_column)) if v})
    return list(unique.values()), problems, stats
