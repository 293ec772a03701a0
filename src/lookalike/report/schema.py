"""The scan report: a versioned JSON contract that later commands and other tools read.

A report records how it was made (tool version, UTC time, argv, roots, resolved config) so
actions take their defaults from it and never rescan. CSV (one row per group member), a
human text summary and the list of files to remove (``paths``, for shell pipelines) are views
of the same data.

Schema (``schema_version`` 1)::

    {"schema_version": 1, "tool": {"name", "version"}, "created": ISO-8601 UTC,
     "argv": [...], "config": {...}, "roots": [...], "keep_policy": {"rules", "protect"},
     "groups": [{"id", "kind", "representative", "keep": [paths kept], "keep_reason",
                 "members": [
         {"path", "hash", "distance", "match", "similarity", "width", "height", "bytes",
          "format", "mtime_ns", "digest", "pixel_digest", "source", "aliases",
          "content" (only for a picture with flat bars: [width, height] inside them)}]}],
     "errors": [{"path", "stage", "error", "message"}], "stats": {...},
     "leakage": {...}}  (only from `scan --reference`; see lookalike.analysis.leakage)

``match`` says how the member came into its group: ``hash`` (its hash is within the threshold
of another member's), ``aligned`` (its hash lies beyond the threshold, within the verified
band, and aligning the pictures confirmed it), ``embedding`` (only its copy-detection
embedding matched) or ``verified`` (its embedding was in the uncertain band and aligning the
pictures confirmed it);
``similarity`` is its embedding's cosine similarity to the representative's (null without
``--embed``). Reports of earlier versions lack both keys (read as ``hash``, null).

``aliases`` are the member file's other paths (hard links, paths through symbolic links or
overlapping roots): one file, listed once; reports of earlier versions lack the key.

Each group's ``keep`` list is decided once, by :func:`decide_keep` (the one step of writing a
report that may touch the disk: see :meth:`~lookalike.grouping.keep.KeepPolicy.read_facts`);
the views (:func:`report_to_dict`, :func:`render_text`, :func:`render_csv`,
:func:`render_paths`) are pure functions of the scan result and those decisions.

(Over 600 lines: the contract is written and read here, and the reader's checks of a
hand-edited report (:func:`_check_shape`) must stay beside the writer they mirror.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from lookalike.analysis.leakage import restrict_to_leakage
from lookalike.config import METHOD_SPECS, ScanConfig
from lookalike.errors import ConfigError, Problem, ReportError
from lookalike.grouping.keep import KeepChoices, KeepPolicy
from lookalike.inputs.walk import CONTAINER_SUFFIXES, looks_like_image
from lookalike.model import HASHED, MATCH_KINDS, FileFacts, Group, Hash, ImageRecord, Member
from lookalike.outputs import csv_text, write_text
from lookalike.paths import is_local_file, shown
from lookalike.version import __version__

if TYPE_CHECKING:
    from lookalike.analysis.leakage import Leakage
    from lookalike.pipeline import ScanResult

__all__ = [
    "DECISIONS_KIND",
    "DECISIONS_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "Report",
    "decide_keep",
    "human_bytes",
    "plural",
    "read_json",
    "read_report",
    "remove_paths",
    "render_csv",
    "render_paths",
    "render_text",
    "report_groups",
    "report_to_dict",
    "write_report",
]

#: What a report's ``keep`` argument may be: the decisions themselves (from
#: :func:`decide_keep`), or a policy or ``--keep`` rules to decide with.
KeepSpec = KeepChoices | KeepPolicy | str | Sequence[str] | None

SCHEMA_VERSION = 1
#: The ``kind`` and schema version of a decisions file: what the HTML page exports and
#: ``lookalike apply`` reads (format: :class:`lookalike.actions.plan.Decisions`).
DECISIONS_KIND = "lookalike-decisions"
DECISIONS_SCHEMA_VERSION = 1
#: Columns of the CSV view; ``keep`` (1 if the keep decisions keep the member) comes last so
#: that readers of the older columns by position still work; ``match`` and ``similarity``
#: (empty without embeddings) came later, so they follow it. Leakage reports add the two
#: columns of :data:`CSV_LEAKAGE_FIELDS` after it.
CSV_FIELDS = ["group", "kind", "representative", "path", "hash", "distance", "width", "height",
              "bytes", "format", "mtime_ns", "digest", "keep", "match", "similarity"]
#: ``set``: the name of the split (scan root) the member is in; ``purge``: 1 if the member is
#: on the leakage purge list.
CSV_LEAKAGE_FIELDS = ["set", "purge"]
#: Report formats (``write_report``): ``paths`` and ``paths0`` list the files to remove,
#: one per line or NUL-terminated (for ``xargs -0``).
FORMATS = ("json", "csv", "text", "paths", "paths0")

#: Report formats by a file's extension (no extension: JSON).
_BY_EXTENSION = {".json": "json", ".csv": "csv", ".txt": "text", "": "json"}


def format_for(path: str | os.PathLike[str], default: str | None = None) -> str:
    """The report format a file's extension asks for (``.json``, ``.csv``, ``.txt``; none:
    JSON); for another extension ``default``, when given.

    Raises:
        ConfigError: without ``default``, an extension that names no report format
            (``.html``: the review page is written by :func:`lookalike.report.html.write_html`).
    """
    name = os.fspath(path)
    ext = os.path.splitext(name)[1].lower()
    if default is not None:
        return _BY_EXTENSION.get(ext, default)
    if ext in (".html", ".htm"):
        raise ConfigError(f"{name} would be the review page; a report is JSON, CSV, text or "
                          "a list of paths (the page: lookalike report, or write_html)")
    if ext not in _BY_EXTENSION:
        raise ConfigError(f"cannot tell the report format from the extension {ext!r} of "
                          f"{name}: use .json, .csv or .txt")
    return _BY_EXTENSION[ext]


def _member_dict(m: Member, reference: Hash | None = None) -> dict[str, Any]:
    r = m.record
    d = {
        "path": r.path, "hash": str(r.hash), "distance": m.distance, "match": m.match,
        "similarity": m.similarity, "width": r.width,
        "height": r.height, "bytes": r.size_bytes, "format": r.format, "mtime_ns": r.mtime_ns,
        "digest": r.digest, "pixel_digest": r.pixel_digest, "source": r.source,
        "aliases": list(r.aliases),
    }
    if r.facts is not None and r.facts.content is not None:
        # What apply cannot read from the file's header again: the picture inside its bars.
        d["content"] = list(r.facts.content)
    as_is = _distance_as_is(reference, r.hash, m.distance)
    if as_is is not None:
        d["distance_as_is"] = as_is
    return d


def _distance_as_is(reference: Hash | None, other: Hash, distance: int) -> int | None:
    """The bits between the two hashes as they are, both turned alike (segment ``k`` of
    one against segment ``k`` of the other: the same orientation, or trim, of both) when
    that is more than ``distance``, the best match over every pair of orientations: a
    mirrored or turned copy at ``distance`` 0 said nothing of being one. Against the plain
    segments alone, a plain re-encode whose best match came through another orientation
    pair by a few bits (both turned alike) read "flipped, turned or trimmed" (11 of 40
    photos re-encoded at q70 and q30). None otherwise, and for crop-resistant hashes
    (their segments are regions)."""
    if (reference is None or other.method == "crop-resistant"
            or (reference.method, reference.nbits) != (other.method, other.nbits)):
        return None
    # One hash may hold more segments (the trimmed ones of a picture with bars): the
    # orientations both hold come first.
    alike = min((a ^ b).bit_count()
                for a, b in zip(reference.segments, other.segments, strict=False))
    return alike if alike > distance else None


def _reference(g: Group) -> Hash | None:
    """The hash members' distances are measured from: the representative's."""
    return next((m.record.hash for m in g.members if m.record.path == g.representative), None)


def group_to_dict(g: Group, keep: Sequence[str] | None = None,
                  keep_reason: str = "") -> dict[str, Any]:
    reference = _reference(g)
    d: dict[str, Any] = {"id": g.id, "kind": g.kind, "representative": g.representative,
                         "members": [_member_dict(m, reference) for m in g.members]}
    d.update(g.extra)
    if keep is not None:
        d["keep"] = list(keep)  # the keep policy's choice, recomputed at every write
        if keep_reason:  # why keep[0] won, in a few words (the review page shows it)
            d["keep_reason"] = keep_reason
    return d


def _view(result: ScanResult, leakage: Leakage | None) -> ScanResult:
    """``result`` as its report shows it: with ``leakage``, the cross-set groups only
    (:func:`~lookalike.analysis.leakage.restrict_to_leakage`), so that ``apply`` on the
    report acts on exactly the purge list, however the caller made it."""
    return result if leakage is None else restrict_to_leakage(result, leakage)


def decide_keep(result: ScanResult, keep: KeepSpec = None,
                leakage: Leakage | None = None) -> KeepChoices:
    """The keep decisions of a report of ``result``: made once, then passed to every view.

    ``keep``: a policy or ``--keep`` rules (default
    :data:`lookalike.grouping.keep.DEFAULT_KEEP`); with ``leakage`` its reference sets are
    protected too. Already made :class:`~lookalike.grouping.keep.KeepChoices` are returned
    as they are.

    Cost: :meth:`~lookalike.grouping.keep.KeepPolicy.read_facts`: WebP headers under
    ``prefer-lossless``, symbolic links under protected folders; otherwise no I/O.
    """
    result = _view(result, leakage)
    if isinstance(keep, KeepChoices):
        return keep
    policy = KeepPolicy.from_spec(keep, reference=leakage.reference if leakage else ())
    return policy.decide_all(result.groups)


def report_to_dict(result: ScanResult, argv: list[str] | None = None, *,
                   keep: KeepSpec = None, leakage: Leakage | None = None) -> dict[str, Any]:
    """The JSON-ready report of a scan.

    Each group gets a ``keep`` list: the members the keep policy keeps (see
    :func:`decide_keep`; pass its result to reuse decisions, which keeps this function free
    of I/O); the policy itself is recorded as ``keep_policy`` so that ``lookalike apply``
    uses it by default. With ``leakage``, the report gets a ``leakage`` section and its
    reference sets are protected.
    """
    result = _view(result, leakage)
    choices = decide_keep(result, keep, leakage)
    extra: dict[str, Any] = {"leakage": leakage.to_dict()} if leakage is not None else {}
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "lookalike", "version": __version__},
        "created": datetime.now(UTC).isoformat(timespec="microseconds"),
        "argv": list(argv) if argv is not None else [],
        "config": result.config.to_dict(),
        "roots": result.roots,
        "keep_policy": choices.policy.to_dict(),
        "groups": [group_to_dict(g, choices.keep(g.id), choices.reason(g.id))
                   for g in result.groups],
        "errors": [p.to_dict() for p in result.errors],
        "stats": {**result.stats, "bytes_reclaimable": choices.bytes_removed(result.groups)},
        **extra,
    }


def containers_of(members: Iterable[tuple[str, str | None]]) -> set[str]:
    """The tar shards and Parquet files (or URLs) that ``(path, source)`` members were read
    from, by their recorded source: no file system access."""
    return {source for path, source in members
            if source and not is_local_file(path, source)}


def refuse_overwrite(path: str | os.PathLike[str], what: str,
                     inputs: Sequence[tuple[str, str]] = ()) -> None:
    """Refuse to write ``what`` to ``path`` where that would destroy something of the
    user's: an image file (a report named ``photos/cat.jpg`` replaced the photo), or one
    of ``inputs`` (``(what it is, path)``: the scanned Parquet file, the report a page is
    made from).

    Raises:
        ConfigError: ``path`` is one of those.
    """
    real = os.path.realpath(path)
    for name, other in inputs:
        if other.startswith(("file://", "local://")):  # a local input named as a URL
            other = other.split("://", 1)[1]
        if "://" not in other and os.path.realpath(other) == real:
            raise ConfigError(f"the {what} {os.fspath(path)} would overwrite the {name}; "
                              "name another file")
    if os.path.isfile(real) and looks_like_image(real):
        raise ConfigError(f"the {what} {os.fspath(path)} would overwrite an image file; "
                          "name another file")
    if os.path.isfile(real) and real.lower().endswith(CONTAINER_SUFFIXES):
        # A shard or Parquet file of images (found inside a scanned folder, too).
        raise ConfigError(f"the {what} {os.fspath(path)} would overwrite a tar shard or "
                          "Parquet file; name another file")


def write_report(result: ScanResult, out: str | os.PathLike[str] | TextIO, *,
                 format: str | None = None, argv: list[str] | None = None,
                 keep: KeepSpec = None, leakage: Leakage | None = None) -> None:
    """Write ``result`` in one of :data:`FORMATS` to a path or an open text stream.

    ``format`` None: a path ending in ``.csv`` or ``.txt`` gets that format, anything else
    JSON (:func:`format_for`).

    ``json``: the report; ``csv``: one row per group member (:func:`render_csv`); ``text``:
    the human summary; ``paths``/``paths0``: the files to remove (:func:`render_paths`).
    ``keep`` and ``leakage``: see :func:`decide_keep` and :func:`report_to_dict`
    (``leakage`` also adds its summary to the text format and its columns to the CSV). A
    caller writing several views of one scan decides once with :func:`decide_keep` and
    passes the result to each.
    """
    if format is None:  # .csv and .txt say so; any other name (r.2024-12-05) gets JSON
        format = format_for(out, "json") if isinstance(out, str | os.PathLike) else "json"
    if isinstance(out, str | os.PathLike):
        if os.path.isdir(out):
            raise ConfigError(f"{os.fspath(out)} is a folder; name the report file to write")
        scanned = {*result.roots, *containers_of((r.path, r.source) for r in result.records)}
        refuse_overwrite(out, "report", [("scanned input", p) for p in sorted(scanned)])
    if format == "json":
        # No indent: json's C encoder only runs without one (10x faster on big reports).
        text = json.dumps(report_to_dict(result, argv, keep=keep, leakage=leakage)) + "\n"
    elif format == "csv":
        text = render_csv(result, keep=keep, leakage=leakage)
    elif format == "text":
        text = render_text(result, leakage=leakage, keep=keep)
    elif format in ("paths", "paths0"):
        text = render_paths(result, keep=keep, leakage=leakage,
                            end="\0" if format == "paths0" else "\n")
    else:
        raise ConfigError(f"unknown report format {format!r}; use one of {', '.join(FORMATS)}")
    if isinstance(out, (str, os.PathLike)):
        write_text(out, text, "report")  # complete or absent
    else:
        out.write(text)


def render_csv(result: ScanResult, *, keep: KeepSpec = None,
               leakage: Leakage | None = None) -> str:
    """One CSV row per group member (columns: :data:`CSV_FIELDS`, and with ``leakage``
    :data:`CSV_LEAKAGE_FIELDS`). ``keep``: see :func:`decide_keep`."""
    result = _view(result, leakage)
    choices = decide_keep(result, keep, leakage)
    set_names = {s.root: s.name for s in leakage.sets} if leakage is not None else {}
    purge = set(leakage.purge) if leakage is not None else set()
    rows: list[list[Any]] = [CSV_FIELDS + (CSV_LEAKAGE_FIELDS if leakage is not None else [])]
    for g in result.groups:
        kept = set(choices.keep(g.id))
        for m in g.members:
            r = m.record
            row = [g.id, g.kind, int(r.path == g.representative), r.path, str(r.hash),
                   m.distance, r.width, r.height, r.size_bytes, r.format or "", r.mtime_ns,
                   r.digest, int(r.path in kept), m.match,
                   "" if m.similarity is None else m.similarity]
            if leakage is not None:
                row += [set_names.get(r.source, ""), int(r.path in purge)]
            rows.append(row)
    return csv_text(rows)


def remove_paths(result: ScanResult, keep: KeepSpec = None,
                 leakage: Leakage | None = None) -> list[str]:
    """The files the keep decisions remove, in path order, each once.

    Every group member not kept (in leakage mode: the purge list), except a path that some
    group keeps. One name per file: a member's other names (its ``aliases``: hard links,
    paths through symbolic links) are not listed, so removing a listed path of a file with
    hard links frees no space; ``lookalike apply`` acts on every name.
    """
    from lookalike.pipeline import ScanResult  # loaded only here: a report reader needs none

    if not isinstance(result, ScanResult):
        raise TypeError(f"remove_paths() takes a ScanResult (from lookalike.scan), not "
                        f"{type(result).__name__}; for a saved report, lookalike.plan(report, "
                        "...) lists what acting on it removes")
    result = _view(result, leakage)
    choices = decide_keep(result, keep, leakage)
    decisions = [choices.decisions[g.id] for g in result.groups]
    kept = {p for d in decisions for p in d.keep}
    return sorted({p for d in decisions for p in d.remove if p not in kept})


def render_paths(result: ScanResult, *, keep: KeepSpec = None,
                 leakage: Leakage | None = None, end: str = "\n") -> str:
    """:func:`remove_paths`, each followed by ``end`` (``"\\0"`` for ``xargs -0``: file names
    may hold newlines)."""
    paths = remove_paths(result, keep, leakage)
    if end == "\n":
        # `xargs -d '\n' rm` would split such a name and act on its pieces, which may be
        # other files (a relative piece names a file in the shell's folder).
        bad = next((p for p in paths if "\n" in p), None)
        if bad is not None:
            raise ReportError(f"the file name {bad!r} holds a newline, so a list of one path "
                              "a line cannot hold it; list NUL-terminated paths (paths0)")
    return "".join(f"{p}{end}" for p in paths)


def plural(count: int, noun: str) -> str:
    """``1, "group"`` -> ``"1 group"``; ``2, "group"`` -> ``"2 groups"``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KB"``."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def render_text(result: ScanResult, *, max_groups: int | None = None,
                max_members: int | None = None, leakage: Leakage | None = None,
                keep: KeepSpec = None) -> str:
    """A human summary: one block per group, then the files that could not be read.

    ``*`` marks the member(s) kept (``keep``: see :func:`decide_keep`; pass its result to
    keep this function free of I/O). ``max_groups`` and ``max_members`` (per group; kept
    members are always shown) shorten it to a summary of the report.
    """
    result = _view(result, leakage)
    choices = decide_keep(result, keep, leakage)
    s = result.stats
    cfg = result.config
    duplicates = s.get("duplicates", result.duplicates)
    removed = sum(len(choices.decisions[g.id].remove) for g in result.groups)
    # Fewer than the duplicates when the policy keeps members embeddings joined.
    removable = f"{removed} removable by the keep policy, " if removed != duplicates else ""
    lines = [
        f"{plural(s.get('images', 0), 'image')} scanned, "
        f"{plural(len(result.groups), 'duplicate group')}, "
        f"{plural(duplicates, 'duplicate')} ({removable}"
        f"{human_bytes(choices.bytes_removed(result.groups))} "
        f"reclaimable), {plural(len(result.errors), 'error')}"
        # Files the walk passed over as no images: counted here, never dropped unsaid.
        + (f", {plural(other, 'other file')} skipped (not images)"
           if (other := s.get("skipped_non_image", 0)) else ""),
        f"method {cfg.method}, hash size {cfg.resolved_hash_size}, threshold {cfg.threshold} "
        f"bits{f' (verified band to {band})' if (band := cfg.resolved_band) else ''}, "
        f"grouping {cfg.grouping}; * = kept by the keep policy, d = bits from the group's "
        "first member (its representative)",
    ]
    if s.get("aliases"):
        n = s["aliases"]
        lines.append(f"{n} other path{'s' if n != 1 else ''} led to "
                     f"{'files' if n != 1 else 'a file'} already found (hard links, symbolic "
                     "links, overlapping folders): each file is listed once, never as a "
                     "duplicate of itself")
    if s.get("uncached_names"):
        lines.append(f"{plural(s['uncached_names'], 'image')} named in bytes that are not "
                     "UTF-8 cannot be kept in the hash cache or a Parquet output: every scan "
                     "hashes them again, and `query` does not find them (rename them to keep "
                     "them)")
    if s.get("skipped_cache_dirs"):
        lines.append(f"skipped {plural(s['skipped_cache_dirs'], 'folder')} tagged as a cache "
                     "(CACHEDIR.TAG: e.g. a review page's thumbnails) inside the folders")
    if s.get("skipped_containers"):
        lines.append(f"skipped {plural(s['skipped_containers'], 'tar or Parquet file')} "
                     "found inside the folders (their images are read with the input format "
                     "tar or parquet)")
    if s.get("skipped_images"):
        lines.append(f"skipped {plural(s['skipped_images'], 'image file')} found beside the "
                     "shards or Parquet files (the default input format reads image files)")
    if s.get("skipped_symlinks"):
        lines.append(f"skipped {plural(s['skipped_symlinks'], 'symlink')} found inside the "
                     "folders (not followed unless asked to)")
    for g in result.groups if max_groups is None else result.groups[:max_groups]:
        lines.append("")
        lines.append(f"group {g.id} ({g.kind}, {plural(len(g), 'image')})")
        kept = set(choices.keep(g.id))
        members = [m for k, m in enumerate(g.members)
                   if max_members is None or k < max_members or m.record.path in kept]
        reference = _reference(g)
        for m in members:
            r = m.record
            mark = "*" if r.path in kept else " "
            how = ("" if m.match == "hash" else f"  [{m.match}]" if m.similarity is None
                   else f"  [{m.match} {m.similarity:.2f}]")
            if m.match in HASHED and _distance_as_is(reference, r.hash, m.distance):
                how += "  (flipped, turned or trimmed)"  # as the review page says
            # Bits mean something only for hash matches (the verified band's too): an
            # embedding match is off the scale.
            bits = str(m.distance) if m.match in HASHED else "-"
            lines.append(f" {mark} d={bits:<3} {r.width}x{r.height:<6} "
                         f"{human_bytes(r.size_bytes):>9}  {shown(r.path)}{how}")
            lines.extend(f"{'':>28}= {shown(a)}  (same file)" for a in r.aliases)
        if len(members) < len(g.members):
            lines.append(f"   ... {plural(len(g.members) - len(members), 'more member')} in "
                         "the report")
    if max_groups is not None and len(result.groups) > max_groups:
        lines.append(f"\n... {plural(len(result.groups) - max_groups, 'more group')} in the "
                     "report")
    if result.errors:
        lines.append("")
        lines.append(f"{plural(len(result.errors), 'file')} could not be used:")
        for p in result.errors:
            lines.append(f"  [{p.error}] {shown(p.path)}: {p.message}")
    if leakage is not None:
        lines.append("")
        lines.append(leakage.render_text(max_items=max_groups).rstrip("\n"))
    return "\n".join(lines) + "\n"


@dataclass(slots=True)
class Report:
    """A report read back from disk, with groups rebuilt as typed objects."""

    path: str
    data: dict[str, Any]
    groups: list[Group] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)

    @property
    def roots(self) -> list[str]:
        return list(self.data.get("roots") or [])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.data.get("config") or {})


def _record_from(m: dict[str, Any], method: str, nbits: int) -> ImageRecord:
    return ImageRecord(
        path=m["path"], size_bytes=int(m["bytes"]), mtime_ns=int(m.get("mtime_ns", 0)),
        width=int(m.get("width") or 0), height=int(m.get("height") or 0),
        format=m.get("format"), hash=Hash.from_hex(m["hash"], method=method, nbits=nbits),
        digest=m.get("digest") or "", pixel_digest=m.get("pixel_digest"),
        source=m.get("source") or "", aliases=tuple(m.get("aliases") or ()),
        # Only the bars are known (frames unknown): the header is read again for the rest.
        facts=FileFacts.from_values({"content": m["content"], "frames": None})
        if m.get("content") is not None else None,
    )


#: Larger than any report (about 1 KB per image): a file beyond it is not read whole.
_MAX_JSON_BYTES = 1 << 40


def read_json(path: str, wanted: str) -> Any:
    """The JSON value in file ``path``.

    Raises:
        ReportError: the file is missing, unreadable or not JSON (a CSV or text report, a
            torn file); the message says to pass ``wanted`` instead.
    """
    from lookalike.inputs.read import Refused, read_regular

    try:
        # Never opened blocking: a FIFO named like a report hung the command.
        data, _ = read_regular(path, _MAX_JSON_BYTES)
        return json.loads(data.decode("utf-8", "surrogateescape"))
    except FileNotFoundError:
        raise ReportError(f"not found: {path}; pass {wanted}") from None
    except Refused as exc:
        raise ReportError(f"cannot read {path}: {exc}; pass {wanted}") from None
    except RecursionError:  # '[' * 100000: json recurses per level
        raise ReportError(f"{path} is not JSON lookalike wrote (it nests too deeply); pass "
                          f"{wanted}") from None
    except ValueError as exc:
        raise ReportError(f"{path} is not JSON ({exc}); pass {wanted}") from None
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None


def _check_shape(p: str, data: dict[str, Any]) -> None:
    """Raise :class:`ReportError` for a report whose fields are not what :func:`write_report`
    writes (a hand edit): a wrong type, a group of fewer than two members or without a
    hash-matched one, a path with a NUL byte, a file listed in two groups. Nothing
    downstream then meets a value of the wrong kind."""

    def bad(what: str) -> ReportError:
        return ReportError(f"{p}: malformed report: {what}; it was edited? Re-run the scan")

    for key, kind in (("config", dict), ("keep_policy", dict), ("leakage", dict),
                      ("stats", dict), ("roots", list), ("groups", list), ("errors", list)):
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise bad(f"{key!r} is a {type(data[key]).__name__}, not a {kind.__name__}")
    lists = [("roots", data.get("roots")),
             *((f"keep_policy.{k}", (data.get("keep_policy") or {}).get(k))
               for k in ("rules", "protect", "reference")),
             ("leakage.reference", (data.get("leakage") or {}).get("reference"))]
    def texts(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    for name, value in lists:
        if value is not None and not texts(value):
            raise bad(f"{name!r} is not a list of text")
    def integer(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    cfg, stats = data.get("config") or {}, data.get("stats") or {}
    for name, value in (*((f"config.{k}", cfg.get(k)) for k in ("nbits", "threshold")),
                        *((f"stats.{k}", stats.get(k)) for k in (
                            "images", "duplicates", "bytes_reclaimable"))):
        if (value is not None or name.removeprefix("stats.") in stats) and not integer(value):
            raise bad(f"{name!r} is {value!r}, not a whole number")
    if not isinstance(data.get("tool") or {}, dict):
        raise bad(f"'tool' is a {type(data['tool']).__name__}, not an object")
    if cfg.get("method") is not None:
        # A method and size a scan can have, with the bits they give (the chain checks of
        # apply measure the members' hashes with them).
        try:
            spec = ScanConfig(method=cfg["method"], hash_size=cfg.get("hash_size"),
                              threshold=cfg.get("threshold"), invariant="none")
        except (ConfigError, TypeError) as exc:
            raise bad(f"its config: {exc}") from None
        if cfg.get("nbits") is not None and cfg["nbits"] != spec.nbits:
            raise bad(f"'config.nbits' is {cfg['nbits']}, but {spec.method} of size "
                      f"{spec.resolved_hash_size} has {spec.nbits} bits")
    # A member's distance is at most its hash's bits: the report's method's, else any's.
    most_bits = (spec.nbits if cfg.get("method") is not None else cfg.get("nbits")
                 or max(m.nbits(m.max_size) for m in METHOD_SPECS.values()))
    seen: dict[str, Any] = {}
    ids: set[Any] = set()
    for g in data.get("groups") or ():
        gid = g.get("id") if isinstance(g, dict) else None
        if not integer(gid) or gid in ids:
            raise bad(f"a group's id {gid!r} is not a whole number, or is another group's")
        ids.add(gid)
        members = g.get("members")
        if not isinstance(members, list) or len(members) < 2:
            raise bad(f"group {gid} has fewer than two members")
        for m in members:
            if not isinstance(m, dict):
                raise bad(f"group {gid} has a member that is not an object")
            aliases = m.get("aliases") or []
            names = [m.get("path"), *(aliases if isinstance(aliases, list) else ())]
            if not isinstance(aliases, list) or \
                    not all(isinstance(n, str) and "\0" not in n for n in names):
                raise bad(f"group {gid} has a path that is not text, or holds a NUL byte")
            if not isinstance(m.get("format") or "", str):
                raise bad(f"group {gid}: {m['path']} has a 'format' that is not text")
            if not isinstance(m.get("source") or "", str):
                raise bad(f"group {gid}: {m['path']} has a 'source' that is not a path")
            if not isinstance(m.get("hash"), str):
                raise bad(f"group {gid}: {m['path']} has a 'hash' that is not hex text")
            for key in ("digest", "pixel_digest"):
                if not isinstance(m.get(key) or "", str):
                    raise bad(f"group {gid}: {m['path']} has a {key!r} that is not hex text")
            if "bytes" not in m:
                raise bad(f"group {gid}: {m['path']} has no 'bytes' (the file's size)")
            for key in ("bytes", "width", "height", "mtime_ns", "distance"):
                # Absent is read as unknown (but the size: apply compares it); null is an edit.
                if key in m and not integer(m[key]):
                    raise bad(f"group {gid}: {m['path']} has a {key!r} of "
                              f"{'null' if m[key] is None else repr(m[key])}, not a whole "
                              "number")
            # Bits between two hashes: at most all of them (the review page draws a bar per
            # distance; 10**30 of them ran the machine out of memory).
            if m.get("distance") is not None and not 0 <= m["distance"] <= most_bits:
                raise bad(f"group {gid}: {m['path']} has a 'distance' of {m['distance']}, "
                          f"not 0 to {most_bits} bits")
            content = m.get("content")
            if content is not None and (FileFacts.from_values({"content": content}) is None
                                        or not integer(m.get("width"))
                                        or not integer(m.get("height"))
                                        or content[0] > m["width"]
                                        or content[1] > m["height"]):
                raise bad(f"group {gid}: {m['path']} has a 'content' that is not a width "
                          "and a height within the picture's")
            if m.get("match", "hash") not in MATCH_KINDS:
                raise bad(f"group {gid}: {m['path']} has an unknown 'match' "
                          f"{m.get('match')!r} (one of {', '.join(MATCH_KINDS)})")
            # A scan's groups are disjoint; a leakage check's may share a file (one training
            # image near two test images of different groups).
            for name in names if not data.get("leakage") else ():
                if seen.setdefault(name, gid) != gid:
                    raise bad(f"{name} is in group {seen[name]} and in group {gid}")
        if not isinstance(g.get("representative"), str):
            raise bad(f"group {gid} has no 'representative' (the member its distances are "
                      "measured to)" if g.get("representative") is None else
                      f"group {gid} has a 'representative' that is not text")
        for key in ("kind", "keep_reason"):
            if not isinstance(g.get(key) or "", str):
                raise bad(f"group {gid} has a {key!r} that is not text")
        if g.get("keep") is not None and not texts(g["keep"]):
            raise bad(f"group {gid} has a 'keep' that is not a list of paths")
        if not any(m.get("match", "hash") == "hash" for m in members):
            raise bad(f"group {gid} has no member matched by its hash (its representative "
                      "always is)")


def _what(exc: Exception) -> str:
    """What a field's value did wrong, in a few words (a missing key named)."""
    return f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)


def report_groups(p: str, data: Mapping[str, Any]) -> list[Group]:
    """The groups of report ``data`` (read from ``p``, for messages) as typed objects: what
    :func:`read_report` gives, for report data already in memory (the review page's).

    Raises:
        ReportError: a group or member cannot be read; the message names the group, the
            member and the field (a relative path, a missing size, a hash of more bits
            than the report's method has, no method to read the hashes with).
    """
    cfg = data.get("config") or {}
    method, nbits = cfg.get("method", "?"), int(cfg.get("nbits") or 64)
    groups = []
    for g in data.get("groups", []):
        gid = g.get("id") if isinstance(g, Mapping) else None
        where = f"group {gid}"  # what a message names: the group, then the member read
        try:
            members = []
            for m in g["members"]:
                where = f"group {gid}: {m.get('path')!r}"
                if not os.path.isabs(m["path"]):
                    if "#" in m["path"] and m["path"].split("#")[0] in (data.get("roots") or ()):
                        raise ReportError(
                            f"{p} is the report of a dataset's rows ({m['path']!r}: split "
                            "and row), not of files: nothing acts on it. Drop the rows with "
                            "lookalike.dedupe_dataset(...).select(dataset)")
                    raise ReportError(f"{p}: group {gid} has a relative path {m['path']!r}")
                try:
                    record = _record_from(m, method, nbits)
                except ValueError as exc:
                    if "segment value" in str(exc) and not cfg.get("method"):
                        # Read as hashes of no method (64 bits unless config.nbits says):
                        # say what is missing, by name.
                        raise ReportError(
                            f"{p}: malformed report: it has no "
                            + ("'config.method' (the scan's hash method)" if "config" in data else
                               "'config' (the scan's settings, its hash method among them)")
                            + f", and the hash of {m['path']} is not a "
                            f"{nbits}-bit one; it was edited? Re-run the scan") from None
                    raise
                similarity = m.get("similarity")
                members.append(Member(record, int(m.get("distance", 0)),
                                      str(m.get("match", "hash")),
                                      None if similarity is None else float(similarity)))
            where = f"group {gid}"
            paths = [m.record.path for m in members]
            if len(set(paths)) < len(paths):  # a hand edit: which entry would be acted on?
                raise ReportError(f"{p}: group {gid} lists a path twice")
            extra = {k: v for k, v in g.items()
                     if k not in ("id", "kind", "representative", "members")}
            groups.append(Group(id=int(g["id"]), members=tuple(members),
                                representative=g["representative"], kind=g.get("kind", "near"),
                                extra=extra))
        except (KeyError, TypeError, ValueError, OverflowError,  # Infinity: Overflow
                AttributeError) as exc:  # a member that is no object (data not checked)
            raise ReportError(f"{p}: malformed report: {where} ({_what(exc)}); it was edited? "
                              "Re-run the scan") from None
    return groups


def read_report(path: str | os.PathLike[str]) -> Report:
    """Read and validate a JSON report written by :func:`write_report`.

    Raises:
        ReportError: the file is missing, not JSON, of another schema version, or has
            malformed groups (relative paths, missing fields).
    """
    p = os.fspath(path)
    data = read_json(p, "the JSON report a scan saved")
    if isinstance(data, dict) and "kind" in data:  # a report has none
        from lookalike.analysis.dataset import CLEANUP_KIND  # heavy: only for such a file

        if data["kind"] == DECISIONS_KIND:
            raise ReportError(f"{p} holds decisions exported from a review page, not a scan "
                              f"report: apply acts on it; here, give the report it names "
                              f"({data.get('report_path')!r})")
        if data["kind"] != CLEANUP_KIND:
            raise ReportError(f"{p} is a {data['kind']!r} file, not a lookalike scan report")
        raise ReportError(f"{p} is a dataset cleanup (row indices to keep per split), not a "
                          "scan report: apply it to the dataset with DatasetCleanup.select, "
                          "or scan image files for a report")
    if not isinstance(data, dict) or type(data.get("schema_version")) is not int \
            or data["schema_version"] != SCHEMA_VERSION:  # not true, nor 1.0: a hand edit
        found = data.get("schema_version") if isinstance(data, dict) else None
        raise ReportError(
            f"{p} is not a lookalike report of schema version {SCHEMA_VERSION} (found {found!r});"
            " re-run the scan with this version of lookalike"
        )
    _check_shape(p, data)
    groups = report_groups(p, data)
    try:
        errors = [Problem(path=e["path"], stage=e.get("stage", "?"), error=e.get("error", "?"),
                          message=e.get("message", "")) for e in data.get("errors", [])]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # Infinity: Overflow
        raise ReportError(f"{p}: malformed report: an entry of 'errors' ({_what(exc)}); it "
                          "was edited? Re-run the scan") from None
    return Report(path=p, data=data, groups=groups, errors=errors)
