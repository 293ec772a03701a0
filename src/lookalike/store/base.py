"""The contract every store of per-file results meets: the hash cache and the Parquet output.

A scan asks a store which of its items it already has (:meth:`HashStore.lookup`), hashes
the rest, and hands each finished batch to :meth:`HashStore.add`. What a store keeps, for
how long and where is its own business (:mod:`lookalike.store.cache`,
:mod:`lookalike.store.parquet`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from lookalike.config import ScanConfig
    from lookalike.errors import Problem
    from lookalike.model import ImageRecord

__all__ = ["HashStore", "listed_ctime", "outside_pixel_limit", "storable"]


def storable(text: str) -> bool:
    """Whether ``text`` (a path) can be stored: SQLite and Parquet text is UTF-8, and a name
    of other bytes, kept as surrogate escapes, is not. Such a file is hashed by every scan
    and kept in no store."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def listed_ctime(sizes: Mapping[str, tuple[int, ...]] | None, path: str, size: int,
                 mtime_ns: int) -> int:
    """The change time the walk listed for ``path`` when the result is about that version
    of the file (the listed size and mtime), else 0: unknown (not stat'ed, or changed
    between the walk and the read), and a store hashes such a file again once."""
    listed = (sizes or {}).get(path)
    if listed is None or len(listed) < 3 or (listed[0], listed[1]) != (size, mtime_ns):
        return 0
    return listed[2]


def outside_pixel_limit(ok: bool, width: int, height: int, size: int, error: str | None,
                        max_pixels: int, max_bytes: int) -> bool:
    """Whether a stored result does not answer under the limit ``max_pixels`` and the file
    size it allows (``max_bytes``: :func:`~lookalike.inputs.read.max_file_bytes`), which
    are no part of a store's settings key: a picture stored under a higher limit is refused
    under a lower one, and one refused as too large may fit a higher one. Such an item is
    read again; the reader and the decoder decide, before any pixel is decoded."""
    if not ok:
        return error == "too-large"
    return width * height > max_pixels or size > max_bytes


class HashStore(Protocol):
    """Per-file results of a scan's settings, looked up before hashing and added after."""

    def lookup(self, entries: Sequence[Any], config: ScanConfig
               ) -> tuple[list[ImageRecord], list[Problem], list[Any]]:
        """Split work items (with ``path``, ``size_bytes``, ``mtime_ns``, ``source``) into
        stored records, stored problems, and the items still to hash, in their given order
        (items of one Parquet row group must stay together). An item whose size is unknown
        (``size_bytes < 0``) is only trusted by a store that needs no size."""
        ...

    def add(self, records: Iterable[ImageRecord], problems: Iterable[Problem],
            config: ScanConfig, sizes: dict[str, tuple[int, ...]] | None = None) -> None:
        """Store results made with ``config``; ``sizes`` (path -> size, mtime_ns, ctime_ns:
        the listed file) says which version of each file a result is about. May buffer
        until :meth:`flush`."""
        ...

    def flush(self) -> None:
        """Make everything added so far durable."""
        ...

    def close(self) -> None:
        """Flush and release the store."""
        ...
