"""Sources: turn the user's paths into a deterministic stream of candidate image files.

Walking never opens image files; it only ``lstat``s entries and, for regular files whose
extension says nothing, sniffs the first bytes for an image signature (a file whose first
bytes cannot be read is a candidate all the same: reading it then says why, in its one
line, where skipping it said nothing). Anything it cannot use is a
:class:`~lookalike.errors.Problem` (stage ``walk``), never an exception, except a missing
root, which is a :class:`~lookalike.errors.ConfigError` raised before any work starts.

What becomes of odd entries (reason codes: :data:`lookalike.errors.REASONS`):

- symbolic links inside the tree: skipped and counted (``skipped_symlinks``) unless
  ``follow_symlinks``; then a dangling one is ``broken-symlink`` and a loop ``symlink-loop``.
  Roots named by the user are always followed (like ``find -H``);
- FIFOs, sockets and devices: ``not-a-regular-file`` when named like an image (or named
  explicitly), never opened, so a scan can never block on them;
- folders named like images (``holiday.jpg/``): walked like any folder;
- a folder that cannot be listed: ``permission-denied`` (or another OS reason), the rest of
  the tree goes on;
- an entry that disappears between listing and ``stat``: ``vanished`` if named like an image;
- paths the OS refuses as too long: ``name-too-long``.

Paths are ``str`` as :func:`os.fsdecode` makes them: names that are not valid UTF-8 carry
surrogate escapes (U+DC80..U+DCFF), which round-trip to the original bytes.
"""

from __future__ import annotations

import errno
import operator
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import ClassVar

from lookalike.errors import ConfigError, Problem
from lookalike.model import positional_constructor

__all__ = [
    "IMAGE_EXTENSIONS",
    "RAW_SUFFIXES",
    "FileEntry",
    "WalkStats",
    "cache_tagged",
    "iter_files",
    "iter_listed",
    "looks_like_image",
    "named_file",
    "os_error_reason",
    "unique_files",
]

#: Camera RAW extensions (lower case, with dot), read with LibRaw (extra ``raw``); the keep
#: policy prefers these files as keepers.
RAW_SUFFIXES = frozenset(
    ".dng .cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .raf .orf .rw2 .rwl .pef .srw .x3f .3fr "
    ".fff .iiq .mos .mef .mrw .erf .kdc .dcr".split()
)

#: Extensions treated as images without sniffing (lower case, with dot). PostScript
#: (.eps, .epsf, .epsi) is among them although it is never decoded (it is a program:
#: :data:`lookalike.imaging.decode.REFUSED_FORMATS`): the reader refuses it by its content as
#: ``unsupported-format``, as the README says, where the walk skipped it without a word.
IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .apng .gif .webp .bmp .dib .tif .tiff .ico .cur .ppm .pgm "
    ".pbm .pnm .pfm .tga .psd .mpo .heic .heif .avif .jp2 .j2k .jpx .pcx .sgi .rgb .dds "
    ".icns .qoi .im .msp .xbm .fits .blp .ftex .gbr .dcx .wmf .emf .eps .epsf .epsi".split()
) | RAW_SUFFIXES

# Leading bytes of the formats we decode (and of EPS, read only to be refused by the reader);
# used only for files without an image extension. Each is binary or long enough that no
# text file starts with it: text-headed formats (XBM, IM, plain PostScript) are left to their
# extensions. Netpbm, PCX and SGI have their own, stricter test (_SNIFFERS).
_MAGIC = (
    b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00",
    b"MM\x00*", b"II+\x00", b"MM\x00+", b"\x00\x00\x01\x00", b"\x00\x00\x02\x00", b"qoif",
    b"8BPS", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xffO\xffQ",
    b"icns", b"DDS |", b"BLP1", b"BLP2", b"FTEX", b"DanM", b"LinS",  # ICNS DDS BLP FTEX MSP
    b"\xb1\x68\xde\x3a", b"SIMPLE  =",  # DCX, FITS
    b"\xc5\xd0\xd3\xc6",  # DOS EPS binary: refused by the reader, not skipped unsaid
)
#: How many leading bytes the sniff reads: a Netpbm header's number, an EPS first line.
_SNIFF_BYTES = 64
_WHITESPACE = b" \t\r\n"
_FTYP_BRANDS = frozenset((b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1",
                          b"msf1", b"avif", b"avis"))


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A regular file found by the walk. ``source`` is the user root it was found under.

    ``(dev, ino)`` is the file's identity (device and inode; volume and file ID on Windows),
    ``(0, 0)`` when it was not stat'ed. One file reached by several paths (hard links,
    symbolic links to folders or files, overlapping roots) is one entry:
    :func:`unique_files` keeps one path and lists the others as ``aliases``.

    ``ctime_ns`` is the inode's change time (0 when not stat'ed): the system sets it on
    every write, on a file renamed into this place and on ``utime`` itself, and no program
    sets it back. With it a file rewritten, or replaced by another, whose size and mtime
    were kept (``cp -p``, ``rsync -t``, an archive with fixed times) is still told apart:
    the hash cache does not serve its old hash, and its digest is not paired with it.
    """

    path: str
    size_bytes: int
    mtime_ns: int
    source: str
    dev: int = 0
    ino: int = 0
    aliases: tuple[str, ...] = ()
    ctime_ns: int = 0

    #: Local files are batched by count only (see ``RemoteEntry.batch``); not a field.
    batch: ClassVar[str] = ""


@dataclass(slots=True)
class WalkStats:
    files_seen: int = 0
    skipped_non_image: int = 0
    skipped_symlinks: int = 0
    #: Of the skipped files, tar shards and Parquet files: images in them are read only with
    #: input format tar or parquet, which the user may have meant.
    skipped_containers: int = 0
    #: Folders inside the roots tagged as caches (``CACHEDIR.TAG``), not walked.
    skipped_cache_dirs: int = 0


#: The cache directory tag (bford.info/cachedir): a folder holding this file, starting with
#: this signature, is made by a program (the review page's thumbnails) and not walked.
CACHEDIR_TAG = "CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"

#: Names of files that hold images for input formats other than files.
CONTAINER_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".parquet", ".pq")


def looks_like_image(path: str) -> bool:
    """True if the extension is an image one, or the first bytes are an image signature
    (False when they cannot be read: see :func:`_file_entry` for the walk's answer then)."""
    return _image_name(path) or _sniff(path) is True


def _image_name_of(name: str) -> bool:
    """``_image_name`` for a bare file name (no separator): the walk's per-file test.

    Same answer as ``os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS`` at a fraction
    of the cost: the extension starts at the last dot, unless only dots precede it.
    """
    dot = name.rfind(".")
    if dot <= 0 or name[dot:].lower() not in IMAGE_EXTENSIONS:
        return False
    return name[0] != "." or name[:dot].strip(".") != ""


def _netpbm(head: bytes) -> bool:
    """PBM, PGM or PPM, plain or raw (``P1``..``P6``), or PFM (``Pf``): what Pillow reads
    (not PAM, ``P7``). The two letters, whitespace, then the width or a comment: "P1" and
    a space alone begin many a text."""
    if len(head) < 4 or head[0] != 0x50 or head[1] not in b"123456f":
        return False
    if head[2] not in _WHITESPACE:
        return False
    rest = head[3:].lstrip(_WHITESPACE)
    return rest[:1].isdigit() or rest[:1] == b"#"


def _pcx(head: bytes) -> bool:
    """PCX: 0x0A, a version (0 to 5 but 1), RLE encoding (1) and a bit depth; no text holds
    those bytes. Pillow reads all but version 4, which so gets its ``unsupported-format``
    line rather than a silent skip."""
    return (len(head) >= 4 and head[0] == 0x0A and head[1] in (0, 2, 3, 4, 5) and head[2] == 1
            and head[3] in (1, 2, 4, 8))


def _sgi(head: bytes) -> bool:
    """SGI: its two-byte magic number, then the storage (0 or 1) and bytes per channel (1
    or 2), for two bytes alone are a weak signature."""
    return len(head) >= 4 and head[:2] == b"\x01\xda" and head[2] in (0, 1) and head[3] in (1, 2)


def _eps(head: bytes) -> bool:
    """Encapsulated PostScript: its first line says ``EPSF`` (a plain PostScript document,
    not a picture, does not)."""
    return head.startswith(b"%!PS-Adobe-") and b" EPSF-" in head.splitlines()[0]


_SNIFFERS = (_netpbm, _pcx, _sgi, _eps)


def _sniff(path: str) -> bool | None:
    """True if the file's first bytes are an image signature, False if they are not, None
    if they cannot be read (never blocks)."""
    try:
        # Non-blocking: this is only ever called for regular files, but one may have been
        # swapped for a FIFO since the stat.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    try:
        head = os.read(fd, _SNIFF_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP_BRANDS:
        return True
    return head.startswith(_MAGIC) or any(test(head) for test in _SNIFFERS)


def _problem(path: str, error: str, message: str) -> Problem:
    return Problem(path=path, stage="walk", error=error, message=message)


def iter_files(paths: Iterable[str | os.PathLike[str]], *, follow_symlinks: bool = False,
               stats: WalkStats | None = None) -> Iterator[FileEntry | Problem]:
    """Yield every candidate image under ``paths`` (files or folders, walked recursively).

    Order is deterministic (sorted by name at every level). Symbolic links inside the tree
    are skipped and counted unless ``follow_symlinks``; followed links never loop
    (directories are tracked by device and inode). Roots are always followed. FIFOs, sockets
    and devices are reported, never opened. See the module docstring for every odd case.

    Raises:
        ConfigError: if a root does not exist (nothing is walked then).
    """
    stats = stats if stats is not None else WalkStats()
    for root in check_roots(paths):
        yield from _walk_root(root, follow_symlinks, stats)


def container_of(path: str) -> str | None:
    """The local tar shard or Parquet file that holds ``path`` when it names a member or a
    cell (``CONTAINER#name``), else None. The container is the first prefix before a '#'
    that is a file: folder and member names may hold '#' too."""
    for k, ch in enumerate(path):
        if ch == "#" and os.path.isfile(path[:k]):
            return path[:k]
    return None


def named_paths(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """``paths`` as strings, refusing an empty one: what an unset variable gives
    (``lookalike scan "$DIR"``), which ``abspath`` would turn into the current folder; and
    one holding a NUL byte, which no OS takes (``os.lstat`` and fsspec raise a bare
    ValueError for it).

    Raises:
        ConfigError: a path is empty (or blank), or holds a NUL byte.
    """
    named = [os.fspath(p) for p in paths]
    for p in named:
        if not p.strip():
            raise ConfigError(f"a path is empty ({p!r}); name a folder or a file (the current "
                              "folder is '.')")
        if "\0" in p:
            raise ConfigError(f"not a path the OS can take (it holds a NUL byte): {p!r}")
    return named


def check_roots(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The absolute paths of ``paths``; call it before any work (:func:`iter_files` is lazy).

    Raises:
        ConfigError: if one does not exist.
    """
    roots = [os.path.abspath(p) for p in named_paths(paths)]
    for root in roots:
        try:
            os.lstat(root)
        except (FileNotFoundError, NotADirectoryError):
            raise ConfigError(f"path does not exist: {root}") from None
        except OSError:  # in a folder it may not enter: the walk says so, for that root
            pass
    return roots


def iter_listed(path: str, source: str, *, follow_symlinks: bool = False,
                stats: WalkStats | None = None) -> Iterator[FileEntry | Problem]:
    """One path read from a file list (``--files-from``), found under ``source`` (the list).

    Treated like a path named on the command line (followed if a link; a folder is walked),
    except that a missing path is that path's problem (``vanished``), not a
    :class:`~lookalike.errors.ConfigError`.
    """
    yield from _walk_root(os.path.abspath(path), follow_symlinks,
                          stats if stats is not None else WalkStats(), source)


def named_file(path: str) -> FileEntry | Problem:
    """The one file a user named (``hash``): followed if a link, or what is wrong with it,
    in the words a scan uses (a symbolic link loop, a FIFO or socket, a folder)."""
    root = os.path.abspath(path)
    if not os.path.lexists(root):
        return _problem(root, "not-found", "no such file")
    if os.path.isdir(root):
        return _problem(root, "not-a-regular-file", "a folder, not a file (scan walks folders)")
    return next(_walk_root(root, True, WalkStats()))


def _walk_root(root: str, follow: bool, stats: WalkStats, source: str | None = None
               ) -> Iterator[FileEntry | Problem]:
    # A root the user named is followed even when it is a link (as ``find -H`` does): naming
    # a link on the command line means "scan what it points to".
    listed = source is not None
    source = root if source is None else source
    try:
        st = os.stat(root)
    except ValueError:  # a NUL byte: a binary file given as the list?
        yield _problem(root, "bad-path", "not a path the OS can take (it holds a NUL byte)")
        return
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and os.path.islink(root):
            yield _problem(root, "broken-symlink", "symbolic link to a missing target")
        elif isinstance(exc, FileNotFoundError) and listed:
            yield _problem(root, "not-found", f"listed in {source}, but it does not exist")
        else:
            yield _problem(root, os_error_reason(exc), f"cannot stat: {exc.strerror or exc}")
        return
    if stat.S_ISDIR(st.st_mode):
        yield from _walk_dir(root, source, follow, stats, {(st.st_dev, st.st_ino)})
    else:
        # A file named explicitly is always a candidate, whatever its extension.
        yield from _file_entry(root, source, st, stats, explicit=True)


def cache_tagged(directory: str) -> bool:
    """Whether ``directory`` holds a cache directory tag (``CACHEDIR.TAG`` starting with
    its signature: bford.info/cachedir), as the review page's thumbnail folder does."""
    try:
        with open(os.path.join(directory, CACHEDIR_TAG), "rb") as fh:
            return fh.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    except OSError:
        return False


def _tagged(directory: str, entries: list[os.DirEntry[str]]) -> bool:
    # The listing says whether there is a tag to read: no open per folder walked.
    return any(e.name == CACHEDIR_TAG for e in entries) and cache_tagged(directory)


def _listing(directory: str, root: str, stats: WalkStats
             ) -> list[os.DirEntry[str]] | Problem | None:
    """The entries of ``directory`` by name; its problem if it cannot be listed; None for a
    cache folder inside a root (skipped, counted)."""
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=_by_name)
    except OSError as exc:
        return _problem(directory, os_error_reason(exc),
                        f"cannot list folder: {exc.strerror or exc}")
    if directory != root and _tagged(directory, entries):  # a root named is scanned
        stats.skipped_cache_dirs += 1
        return None
    return entries


def _walk_dir(directory: str, root: str, follow: bool, stats: WalkStats,
              seen: set[tuple[int, int]]) -> Iterator[FileEntry | Problem]:
    """Every file under ``directory`` depth first, by name; ``seen``: the identities of the
    folders above it (a folder met again among them is a link loop). A loop over a stack of
    open listings, not a recursion: a tree 1,000 folders deep stopped the scan with
    Python's RecursionError."""
    first = _listing(directory, root, stats)
    if not isinstance(first, list):
        if first is not None:
            yield first
        return
    ancestors = set(seen)
    stack: list[tuple[Iterator[os.DirEntry[str]], tuple[int, int] | None]] = [
        (iter(first), None)]
    while stack:
        entries, folder = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            ancestors.discard(folder)
            continue
        path = entry.path
        try:
            is_link = entry.is_symlink()
            if is_link and not follow:
                stats.skipped_symlinks += 1
                continue
            # os.lstat, not entry.stat(): on Windows only it fills in the file ID (identity).
            st = os.stat(path) if is_link else os.lstat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                yield _problem(path, "broken-symlink", "symbolic link to a missing target")
            elif _image_name(path):
                yield _problem(path, "vanished", "deleted while the folder was being listed")
            continue
        except OSError as exc:
            yield _problem(path, os_error_reason(exc), f"cannot stat: {exc.strerror or exc}")
            continue
        mode = st.st_mode
        if _S_ISREG(mode) and _image_name_of(entry.name):
            # The common case, inline (what _file_entry does for it, without a generator
            # and a splitext per file: this loop runs once per file of every scan).
            stats.files_seen += 1
            yield _new_entry(path, st.st_size, st.st_mtime_ns, root, st.st_dev, st.st_ino, (),
                             st.st_ctime_ns)
        elif stat.S_ISDIR(mode):
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                yield _problem(path, "symlink-loop", "folder already visited (link loop)")
                continue
            listed = _listing(path, root, stats)
            if isinstance(listed, list):
                ancestors.add(key)
                stack.append((iter(listed), key))
            elif listed is not None:
                yield listed
        else:
            yield from _file_entry(path, root, st, stats, explicit=False)


_by_name = operator.attrgetter("name")
_S_ISREG = stat.S_ISREG
#: ``FileEntry(path, size_bytes, mtime_ns, source, dev, ino, aliases, ctime_ns)``, equal to
#: it and about 2x faster.
_new_entry = positional_constructor(FileEntry, ("path", "size_bytes", "mtime_ns", "source",
                                                "dev", "ino", "aliases", "ctime_ns"))


def _image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _file_entry(path: str, root: str, st: os.stat_result, stats: WalkStats,
                explicit: bool) -> Iterator[FileEntry | Problem]:
    stats.files_seen += 1
    if not stat.S_ISREG(st.st_mode):
        if explicit or _image_name(path):
            yield _problem(path, "not-a-regular-file",
                           "a FIFO, socket or device, not a regular file; skipped unopened")
        else:
            stats.skipped_non_image += 1
        return
    # Skipped only when its first bytes say it is no image: one that cannot be read (no
    # permission) is a candidate, so the reader gives it its line, as any unreadable image.
    if not explicit and not _image_name(path) and _sniff(path) is False:
        stats.skipped_non_image += 1
        if path.lower().endswith(CONTAINER_SUFFIXES):
            stats.skipped_containers += 1
        return
    yield FileEntry(path, st.st_size, st.st_mtime_ns, root, st.st_dev, st.st_ino,
                    ctime_ns=st.st_ctime_ns)


def unique_files(entries: Iterable[FileEntry]) -> list[FileEntry]:
    """One entry per file, in first-seen order: a file is its identity, not its path.

    Entries with the same ``(dev, ino)`` (hard links, a folder reached through a symbolic
    link, overlapping roots) become one entry whose other paths are its ``aliases``, so a
    file is never a duplicate of itself. The entry kept is the first path without a symbolic
    link in it, else the first seen. Entries that were not stat'ed (``ino`` 0) are told
    apart by path only.
    """
    first: dict[object, int] = {}
    out: list[FileEntry] = []
    more: dict[int, list[FileEntry]] = {}  # other paths of out[i]: rare, kept apart
    for e in entries:
        i = first.setdefault((e.dev, e.ino) if e.ino else e.path, len(out))
        if i == len(out):
            out.append(e)
        elif e.path != out[i].path:
            more.setdefault(i, []).append(e)
    for i, others in more.items():
        same = [out[i], *others]
        paths = list(dict.fromkeys(e.path for e in same))
        main = next((e for e in same if os.path.realpath(e.path) == e.path), same[0])
        out[i] = replace(main, aliases=tuple(p for p in paths if p != main.path))
    return out


_ERRNO_REASONS = {
    errno.EACCES: "permission-denied",
    errno.EPERM: "permission-denied",
    errno.ENOENT: "vanished",
    errno.ELOOP: "symlink-loop",
    errno.ENAMETOOLONG: "name-too-long",
    errno.EISDIR: "not-a-regular-file",
}


def os_error_reason(exc: OSError, default: str = "os-error") -> str:
    """The stable reason code of an ``OSError`` met while walking or reading a file."""
    return _ERRNO_REASONS.get(exc.errno or -1, default)
