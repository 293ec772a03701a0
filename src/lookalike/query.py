"""Query: find the matches of new images among hashes already in the cache, no rescan.

The hash cache holds every hashed file of earlier scans (per settings). :func:`find_matches`
hashes only the query images, loads the cached hashes of the same settings (optionally only
those under one folder) into a :class:`~lookalike.index.HammingIndex`, and asks it for every
stored image within the threshold. Cost: one decode per query image, plus reading the
cached rows (about 1 s per million) and building the index once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .cache import HashCache
from .config import ScanConfig
from .errors import Problem
from .groups import segment_rows
from .index import HammingIndex
from .model import ImageRecord
from .pipeline import hash_file
from .sources import FileEntry

__all__ = ["QueryResult", "find_matches"]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One query image and the cached images within the threshold, nearest first."""

    query: ImageRecord
    matches: tuple[tuple[ImageRecord, int], ...]


def find_matches(images: Iterable[str | os.PathLike[str]], cache: HashCache,
                 config: ScanConfig | None = None, *, under: str | None = None,
                 ) -> tuple[list[QueryResult], list[Problem]]:
    """Match ``images`` against every cached record hashed with the same settings.

    Args:
        images: query image files.
        cache: the hash cache that earlier scans filled (same method, size and decode).
        config: the settings (``threshold`` is the match radius); default ``ScanConfig()``.
        under: only consider cached files below this folder.

    Returns:
        One :class:`QueryResult` per readable query image (a query file that is itself in
        the cache is not reported as its own match), and the problems of unreadable ones.
    """
    config = config or ScanConfig()
    stored: list[ImageRecord] = list(cache.records(config, under=under))
    owners, values = segment_rows(stored)
    index = HammingIndex(config.nbits)
    with index.bulk():
        index.add(values, ids=range(len(values)))
    results: list[QueryResult] = []
    problems: list[Problem] = []
    for image in images:
        path = os.path.abspath(os.fspath(image))
        out = hash_file(FileEntry(path, 0, 0, os.path.dirname(path)), config)
        if isinstance(out, Problem):
            problems.append(out)
            continue
        best: dict[int, int] = {}
        for seg in out.hash.segments:
            for row, dist in index.query(seg, max_distance=config.threshold):
                owner = owners[row]
                if stored[owner].path != path and dist < best.get(owner, dist + 1):
                    best[owner] = dist
        ranked = sorted(best.items(), key=lambda kv: (kv[1], stored[kv[0]].path))
        results.append(QueryResult(out, tuple((stored[i], d) for i, d in ranked)))
    return results, problems


def render_matches(results: Sequence[QueryResult], problems: Sequence[Problem]) -> str:
    """Text view: each query, then its matches with their distances."""
    lines = []
    for r in results:
        lines.append(f"{r.query.path}: {len(r.matches)} match(es)")
        lines.extend(f"  d={d:<3} {rec.path}" for rec, d in r.matches)
    lines.extend(f"error [{p.error}] {p.path}: {p.message}" for p in problems)
    return "\n".join(lines) + ("\n" if lines else "")
