"""Lexical path helpers shared by leakage, planning and applying. No file system access."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence

__all__ = ["is_local_file", "is_under", "name_key", "overlap", "root_names", "shown"]


def is_under(path: str, folder: str) -> bool:
    """True if absolute ``path`` is ``folder`` or inside it (lexically; no file system access)."""
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives on Windows, or mixed absolute/relative
        return False


def overlap(owned: Sequence[tuple[object, str]]) -> tuple[tuple[object, str],
                                                          tuple[object, str]] | None:
    """The first two ``(owner, absolute path)`` entries of different owners whose paths
    overlap (one is the other, or lies inside it), or None: sets or splits that must not
    share files. Lexical."""
    for k, (a, pa) in enumerate(owned):
        for b, pb in owned[k + 1:]:
            if a != b and (is_under(pa, pb) or is_under(pb, pa)):
                return (a, pa), (b, pb)
    return None


def is_local_file(path: str, source: str | None = None) -> bool:
    """Whether a scanned ``path`` (from input ``source``) names a local file: not a URL, nor
    a member of a tar shard or a cell of a Parquet file (``SOURCE#name``)."""
    return "://" not in path and not (source and path.startswith(source + "#"))


def root_names(roots: Sequence[str]) -> dict[str, str]:
    """A short, unique name per root: its folder name, with ``~2``, ``~3``, ... on clashes.

    Names a leakage scan's sets and the top folders of a ``move`` quarantine. A root given
    twice has one name. Names are unique also where case and Unicode normalisation do not
    count (a quarantine on such a drive): two roots must never share a quarantine folder.
    """
    names: dict[str, str] = {}
    taken: set[str] = set()
    for root in roots:
        if root in names:
            continue
        base = os.path.basename(root.rstrip(os.sep)) or "root"
        name, k = base, 1
        while name_key(name) in taken:  # also past a root that is itself named "x~2"
            k += 1
            name = f"{base}~{k}"
        taken.add(name_key(name))
        names[root] = name
    return names


def name_key(path: str) -> str:
    """``path`` as a file system that ignores case and Unicode normalisation sees it: two
    paths with one key may be one file there (macOS, Windows, exFAT drives)."""
    return unicodedata.normalize("NFC", path).casefold()


def shown(path: str) -> str:
    """``path`` for a line of text a person reads: control and format characters escaped
    (``\\n``, ``\\x1b``, a right-to-left override). A name holding a newline otherwise
    reads as two files, and terminal escapes in a name act on the terminal. Bytes that are
    not UTF-8 (decoded with ``surrogateescape``) stay as they are: written back as the same
    bytes, they name the file. Reports keep the real path."""
    if path.isprintable():
        return path
    return "".join(ch if _plain(ch) else ch.encode("unicode_escape").decode("ascii")
                   for ch in path)


def _plain(ch: str) -> bool:
    # Escaped: control and format characters, and the line and paragraph separators
    # (U+2028, U+2029: they end a line too). Kept: undecodable bytes (surrogate escapes).
    category = unicodedata.category(ch)
    return 0xDC80 <= ord(ch) <= 0xDCFF or not (category[0] == "C" or category in ("Zl", "Zp"))
