"""Lexical path helpers shared by leakage, planning and applying. No file system access."""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["is_local_file", "is_under", "root_names"]


def is_under(path: str, folder: str) -> bool:
    """True if absolute ``path`` is ``folder`` or inside it (lexically; no file system access)."""
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives on Windows, or mixed absolute/relative
        return False


def is_local_file(path: str, source: str | None = None) -> bool:
    """Whether a scanned ``path`` (from input ``source``) names a local file: not a URL, nor
    a member of a tar shard or a cell of a Parquet file (``SOURCE#name``)."""
    return "://" not in path and not (source and path.startswith(source + "#"))


def root_names(roots: Sequence[str]) -> dict[str, str]:
    """A short, unique name per root: its folder name, with ``~2``, ``~3``, ... on clashes.

    Names a leakage scan's sets and the top folders of a ``move`` quarantine.
    """
    names: dict[str, str] = {}
    used: dict[str, int] = {}
    for root in roots:
        base = os.path.basename(root.rstrip(os.sep)) or "root"
        used[base] = used.get(base, 0) + 1
        names[root] = base if used[base] == 1 else f"{base}~{used[base]}"
    return names
