"""The HTML review page: one self-contained file to look at groups and decide what to keep.

The page is rendered with Jinja2 (autoescape on) from ``templates/report.html.j2``; its CSS
and JS are inlined and allowed by SHA-256 hashes in a Content-Security-Policy ``<meta>`` tag
that forbids every remote load (``default-src 'none'``), so the file works offline and a
hostile file name can neither run script nor phone home.

The report data travels as one JSON blob in ``<script type="application/json">`` (with ``<``,
``>`` and ``&`` written as ``\\u003c`` etc., so no file name can end the tag) and the page
script builds the DOM from it with ``textContent`` only, rendering groups lazily as the user
scrolls, so a report of 10,000 groups opens in about a second.

Thumbnails are small JPEGs from :func:`lookalike.imaging.decode.make_thumbnail`: embedded as
``data:`` URIs, or, for reports of more than ``inline_limit`` images, written to a sibling
folder ``<name>_files/`` and referenced relatively (keep the folder next to the page). A file
that cannot be thumbnailed (gone, undecodable) gets a placeholder.

The compare view shows two members large, side by side, and loads the original file itself
(a ``file:`` URL, allowed by the CSP's ``'self'``) when it is a local file in a format browsers
display (:data:`WEB_FORMATS`). For a local file in another format (camera RAW, HEIC, TIFF) the
writer makes a preview too (a JPEG of ``PREVIEW_SIZE`` px on its long side, from the one
full decode that also makes its thumbnail), placed like the thumbnails (inline or in the
folder); other files fall back to their thumbnail. The facts it shows
beside each image that the report does not hold (camera, date taken, JPEG quality estimate,
colour mode) are read by :func:`image_facts` (:mod:`lookalike.imaging.facts`) from the file's
header and EXIF, never its pixels.

Each group is pre-filled with what ``lookalike apply`` on the report keeps
(:func:`keep_decisions`): the report's recorded keep policy (``original`` when it records
none) decides again, over the file facts the page reads anyway, and the page shows that
decision's own reason. A report ``keep`` list that differs (edited, or an earlier version's
choice) is not followed: the group says so, as ``apply`` skips it.

Folder rules ("keep everything under A, remove duplicates under B") are chosen in the page
from the folders of the report's members (:func:`folder_tree`) and written into the exported
decisions as ``"folder_rules": [{"folder": "/abs/A", "rule": "keep"}, ...]`` beside the
per-group ``keep``/``remove`` lists they produced, which are what ``apply`` acts on.

The Export button downloads the user's keep/remove choices as a decisions file that
``lookalike apply`` accepts::

    {"kind": "lookalike-decisions", "schema_version": 1,
     "report_path": "/abs/report.json", "report_created": "<report's created field>",
     "folder_rules": [{"folder": "/abs/Originals", "rule": "keep"}],
     "groups": [{"id": 3, "keep": ["/abs/a.jpg"], "remove": ["/abs/b.jpg"]}]}

:func:`render_html` is pure: it renders report data, the thumbnail URLs, each file's state
(gone or changed since the scan), its facts and the keep decisions that :func:`write_html`
gathered first, in its I/O steps (:func:`file_states`, the thumbnails, :func:`image_facts`,
:func:`keep_decisions`).

Jinja2 and Pillow load on first use (the imports inside functions), so importing this module
stays light.

(Over 600 lines: the page's data, its thumbnails and previews in their three modes, and the
file facts it shows are one writer's steps; the template and script are separate files.)
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePath
from typing import Any, Literal
from urllib.parse import quote

from lookalike.analysis.leakage import empty_set_warning
from lookalike.config import check_writable
from lookalike.errors import ConfigError, DecodeError, LookalikeError
from lookalike.events import NullReporter, Reporter
from lookalike.grouping.keep import (
    KeepDecision,
    KeepPolicy,
    capture_moments,
    in_folders,
    kept_shots,
    with_raw_twins,
)
from lookalike.imaging.facts import MULTI_FRAME_FORMATS, FileFacts, read_file_facts
from lookalike.inputs.walk import (
    CACHEDIR_SIGNATURE,
    CACHEDIR_TAG,
    cache_tagged,
    container_of,
)
from lookalike.model import HASHED, Group, ImageRecord
from lookalike.outputs import write_new, write_text
from lookalike.paths import is_local_file, shown
from lookalike.pipeline import ScanResult
from lookalike.report.schema import (
    DECISIONS_KIND,
    DECISIONS_SCHEMA_VERSION,
    Report,
    containers_of,
    human_bytes,
    read_report,
    refuse_overwrite,
    report_groups,
    report_to_dict,
)

__all__ = [
    "INLINE_LIMIT",
    "WEB_FORMATS",
    "HtmlSummary",
    "file_states",
    "folder_tree",
    "image_facts",
    "keep_decisions",
    "render_html",
    "write_html",
]

INLINE_LIMIT = 2000  # above this many images, thumbnails go to a sibling folder
THUMB_SIZE = 160  # px, longest side; the page shows every thumbnail in a box this size
PREVIEW_SIZE = 1600  # px, longest side of the compare view's stand-in for a non-web original
PREVIEW_QUALITY = 85
#: Above this many previews (about 0.5 MB each), "auto" puts images in the sibling folder.
PREVIEW_INLINE_LIMIT = 20

#: Pillow format names of files browsers display: the compare view shows these originals
#: themselves (full resolution); others (TIFF, HEIC, RAW, ...) show their thumbnail.
WEB_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "ICO", "AVIF"})

_THUMB_NAME = re.compile(r"[tp]\d{6}\.jpg")  # thumbnails and previews

ThumbnailMode = Literal["auto", "inline", "files", "none"]


@dataclass(frozen=True, slots=True)
class HtmlSummary:
    """What :func:`write_html` produced.

    Attributes:
        path: the HTML file.
        groups: groups on the page.
        images: group members on the page.
        thumbnails: thumbnails made (the others show a placeholder).
        thumbnail_dir: the sibling folder holding thumbnails, or ``None`` if they are inline.
        previews: compare-view previews made (files in formats browsers cannot show).
    """

    path: str
    groups: int
    images: int
    thumbnails: int
    thumbnail_dir: str | None
    previews: int = 0


def _load_report(report: str | os.PathLike[str] | Report | Mapping[str, Any] | ScanResult,
                 report_path: str | os.PathLike[str] | None
                 ) -> tuple[dict[str, Any], str | None, list[Group] | None]:
    """Normalise the accepted inputs to ``(report dict, absolute report path or None, its
    groups as read by read_report, or None when only the dict is at hand)``.

    Reads the report of a path; decides the keep lists of a ``ScanResult`` (see
    :func:`~lookalike.report.schema.decide_keep`).
    """
    if isinstance(report, (str, os.PathLike)):
        rep = read_report(report)
        return rep.data, os.path.abspath(rep.path), rep.groups
    if isinstance(report, Report):
        return report.data, os.path.abspath(report_path or report.path), report.groups
    if isinstance(report, ScanResult):
        data = report_to_dict(report)
    elif isinstance(report, Mapping):
        data = dict(report)
    else:
        raise TypeError(f"cannot render a report from {type(report).__name__}")
    return data, os.path.abspath(report_path) if report_path is not None else None, None


def _recorded_policy(data: Mapping[str, Any]) -> KeepPolicy:
    """The keep policy ``lookalike apply`` plans a report with when given no keep rules
    (:func:`lookalike.actions.plan.plan`): the report's recorded rules (``original``, the
    default, when it records none), its recorded protected folders and a leakage scan's
    reference sets."""
    recorded = data.get("keep_policy") or {}
    leakage = data.get("leakage") or {}
    return KeepPolicy.from_spec(
        recorded.get("rules") or None, protect=recorded.get("protect") or (),
        reference=[*(leakage.get("reference") or ()), *(recorded.get("reference") or ())])


def keep_decisions(data: Mapping[str, Any], groups: Sequence[Group] | None = None,
                   headers: Mapping[str, FileFacts] | None = None
                   ) -> dict[int, KeepDecision]:
    """What ``lookalike apply`` on report ``data`` keeps of each group (by id): the
    decision of :meth:`KeepPolicy.decide <lookalike.grouping.keep.KeepPolicy.decide>` under
    the policy it plans with (the recorded one, else ``original``), over facts read as it
    reads them (:meth:`~lookalike.grouping.keep.KeepPolicy.read_facts`). The review page
    suggests these, not the report's own ``keep`` lists: a hand-edited list, or one an
    earlier version's policy chose, is a list apply refuses to follow.

    Args:
        data: the report.
        groups: its groups as :func:`~lookalike.report.schema.read_report` read them
            (default: read from ``data``).
        headers: each member's header facts (:func:`read_file_facts`) already read, by path:
            the policy reads those of the other members itself.

    Raises:
        ReportError: a group of ``data`` cannot be read.
    """
    if groups is None:
        groups = report_groups("the report", data)
    headers = headers or {}

    def known(rec: ImageRecord) -> ImageRecord:
        facts = headers.get(rec.path)
        if facts is None:
            return rec
        if rec.facts is not None and rec.facts.content is not None:  # the bars the scan found
            facts = dataclasses.replace(facts, content=rec.facts.content)
        return dataclasses.replace(rec, facts=facts)

    groups = [dataclasses.replace(g, members=tuple(
        dataclasses.replace(m, record=known(m.record)) for m in g.members)) for g in groups]
    policy = _recorded_policy(data)
    facts = policy.read_facts(m.record for g in groups for m in g.members)
    return {g.id: policy.decide(g, facts) for g in groups}


def _differs(recorded: Any, decision: KeepDecision) -> str | None:
    """The warning of a group whose report ``keep`` list is not ``decision``'s, or None."""
    if not isinstance(recorded, list) or set(recorded) == set(decision.keep):
        return None
    said = ", ".join(_displayable(shown(str(p))) for p in recorded) or "nothing"
    return (f"the report's keep list ({said}) differs from what its keep policy keeps now: "
            "edited, or written by another version of lookalike. Pre-filled here: the "
            "policy's choice; apply on the report itself skips this group (unless given "
            "--keep, --protect or folder rules); exported decisions are applied as chosen")


def _groups_largest_first(groups: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    # Largest first, then most bytes to reclaim, then id: stable and predictable for review.
    def key(g: Mapping[str, Any]) -> tuple[int, int, int]:
        members = g.get("members", [])
        dup_bytes = sum(int(m.get("bytes") or 0) for m in members
                        if m.get("path") != g.get("representative"))
        return (-len(members), -dup_bytes, int(g.get("id", 0)))

    return sorted(groups, key=key)


def file_states(data: Mapping[str, Any]) -> dict[str, str]:
    """The member files of report ``data`` that are not what the scan saw: path ->
    ``"missing"`` or ``"changed"`` (size or mtime differ). One ``stat`` per member."""
    states: dict[str, str] = {}
    for g in data.get("groups", []):
        for m in g.get("members", []):
            if not is_local_file(m["path"], m.get("source")):
                continue  # a tar member, Parquet cell or URL: nothing here to stat
            try:
                st = os.stat(m["path"])
            except OSError:
                states[m["path"]] = "missing"
                continue
            if st.st_size != m.get("bytes") or (
                m.get("mtime_ns") and st.st_mtime_ns != m.get("mtime_ns")
            ):
                states[m["path"]] = "changed"
    return states


def _read(path: str) -> bytes | None:
    """The bytes of the regular file ``path``; None when it cannot be read (gone, a FIFO
    swapped in since the scan: never opened blocking)."""
    from lookalike.config import DEFAULT_MAX_PIXELS
    from lookalike.inputs.read import Refused, max_file_bytes, read_regular

    try:
        return read_regular(path, max_file_bytes(DEFAULT_MAX_PIXELS))[0]
    except (OSError, ValueError, Refused):
        return None


def _members(paths: Sequence[str], stats: Mapping[str, Any]) -> dict[str, Any]:
    """The tar members and Parquet cells among ``paths`` (``FILE#name`` of a local shard or
    Parquet file), as the scan listed them (:class:`~lookalike.inputs.remote.RemoteEntry`,
    found again by listing each container once, with the columns the report's ``stats``
    say the scan read), so their thumbnails can be made too. None for containers that
    cannot be listed now (gone, or the ``dask`` extra missing): those members keep a
    placeholder."""
    from lookalike.inputs.listing import format_of, list_inputs

    containers = {c for p in paths if "#" in p and (c := container_of(p)) is not None}
    found: dict[str, Any] = {}
    for container in sorted(c for c in containers if format_of(c, "auto") != "files"):
        try:
            items = list_inputs([container], column=stats.get("parquet_column"),
                                name_column=stats.get("parquet_name_column"))[0]
        except (LookalikeError, ImportError, OSError):
            continue
        found.update((e.path, e) for e in items)
    return found


def _member_bytes(entry: Any) -> bytes | None:
    from lookalike.inputs.remote import RemoteReader

    ((_, data),) = RemoteReader({}).read([entry])
    return data if isinstance(data, bytes) else None


def _thumbnail(path: str, size: int, member: Any = None) -> bytes | None:
    from lookalike.imaging.decode import make_thumbnail  # loads Pillow and NumPy

    data = _read(path) if member is None else _member_bytes(member)
    try:
        return None if data is None else make_thumbnail(data, size)
    except DecodeError:
        return None  # the page shows a placeholder instead


def _jpeg(img: Any, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def _pictures(path: str, size: int, facts: Mapping[str, Any] | None, member: Any = None
              ) -> tuple[bytes | None, bytes | None]:
    """``(thumbnail, preview)`` of ``path`` (or of ``member``, a tar member or Parquet cell:
    :func:`_members`): a preview only for a local file in a format browsers cannot show (the
    compare view shows the others' originals). Such a file is decoded once, in full (a RAW:
    its embedded preview, unreduced), for both."""
    if (member is not None or (facts or {}).get("format") in WEB_FORMATS
            or not os.path.isabs(path)):
        return _thumbnail(path, size, member), None
    from PIL import Image

    from lookalike.imaging.decode import decode_bytes

    data = _read(path)
    try:
        if data is None:
            return None, None  # the page shows a placeholder instead
        pic = decode_bytes(data, mode="full")[0]
    except DecodeError:
        return None, None
    img = Image.frombytes("RGB", pic.size, pic.rgb_bytes())
    img.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE), Image.Resampling.LANCZOS)
    preview = _jpeg(img, PREVIEW_QUALITY)
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return _jpeg(img, 70), preview


def image_facts(path: str) -> dict[str, Any] | None:
    """What a reviewer compares that the report does not hold, from
    :func:`~lookalike.imaging.facts.read_file_facts` (header and EXIF, no pixels): ``format``
    (Pillow's name), ``mode`` (colour mode), ``quality`` (JPEG quality estimate), ``camera``
    (EXIF make and model), ``taken`` (EXIF original date, ``YYYY-MM-DD HH:MM:SS[.fff]``),
    ``exposure`` (EXIF exposure time and bias) and ``frames`` (True: the file holds several
    pictures); absent keys are unknown.

    Returns None for a path Pillow cannot open (gone, not a local file, not an image).
    """
    return _shown_facts(read_file_facts(path))


def _shown_facts(facts: FileFacts) -> dict[str, Any] | None:
    """:func:`image_facts` of a file whose header facts are ``facts``."""
    if facts.format is None:
        return None
    shown = {"format": facts.format, "mode": facts.mode, "quality": facts.quality,
             "frames": True if facts.frames else None,
             "camera": facts.camera, "taken": facts.taken, "exposure": facts.exposure}
    return {k: v for k, v in shown.items() if v is not None}


def _gather(paths: list[str], size: int | None, reporter: Reporter, workers: int | None,
            stats: Mapping[str, Any]
            ) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, dict[str, Any]],
                       dict[str, FileFacts]]:
    """Read the header facts of every path and, unless ``size`` is None, make its thumbnail
    and preview (:func:`_pictures`; ``stats``: the report's, for the columns read), in threads
    (Pillow releases the GIL while decoding and resizing). Returns ``(thumbnails, previews,
    facts, headers)``, each keyed by path: ``facts`` the page shows (:func:`image_facts`),
    ``headers`` all that was read (:func:`read_file_facts`, which the keep policy takes)."""
    members = _members(paths, stats) if size else {}

    def one(path: str) -> tuple[bytes | None, bytes | None, FileFacts]:
        header = read_file_facts(path)  # once: the page's facts and the keep policy's
        return (*(_pictures(path, size, _shown_facts(header), members.get(path)) if size
                  else (None, None)), header)

    jpegs: dict[str, bytes] = {}
    previews: dict[str, bytes] = {}
    facts: dict[str, dict[str, Any]] = {}
    headers: dict[str, FileFacts] = {}
    workers = workers or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, (jpeg, preview, header) in zip(paths, pool.map(one, paths), strict=True):
            fact = _shown_facts(header)
            for found, into in ((jpeg, jpegs), (preview, previews), (fact, facts)):
                if found is not None:
                    into[path] = found  # type: ignore[assignment]
            headers[path] = header
            reporter.advance(1)
    return jpegs, previews, facts, headers


def folder_tree(paths: Sequence[str], roots: Sequence[str] = ()
                ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The folders that hold ``paths`` and their ancestors up to their scan root (or up to,
    not including, the file system's root): what folder rules can name.

    Returns ``(folders, index)``: ``folders`` sorted by path, each ``{"p": folder, "up": index
    of its parent in the list or None, "n": files under it}``; ``index`` maps each path to
    the index of its own folder. Lexical: no file system access.
    """
    top = set(roots)
    parent: dict[str, str | None] = {}
    counts: dict[str, int] = {}
    for p in dict.fromkeys(paths):  # a file in several groups counts once
        d = os.path.dirname(p)
        while d and os.path.dirname(d) != d:
            counts[d] = counts.get(d, 0) + 1
            if d not in parent:
                up = os.path.dirname(d)
                parent[d] = None if d in top or os.path.dirname(up) == up else up
            above = parent[d]
            if above is None:
                break
            d = above
    order = sorted(parent)
    at = {d: i for i, d in enumerate(order)}
    folders = [{"p": d, "up": at.get(above) if (above := parent[d]) else None, "n": counts[d]}
               for d in order]
    index = {p: at[d] for p in paths if (d := os.path.dirname(p)) in at}
    return folders, index


def _histogram(groups: Sequence[Mapping[str, Any]], threshold: int) -> dict[str, Any]:
    """Counts of member-to-representative distances, and the SVG geometry to draw them.
    Members embeddings joined are left out: their bits are off the scale (a crop's 105)."""
    counts: dict[int, int] = {}
    for g in groups:
        for m in g.get("members", []):
            if m.get("path") == g.get("representative") or m.get("match", "hash") not in HASHED:
                continue
            d = int(m.get("distance") or 0)
            counts[d] = counts.get(d, 0) + 1
    top = max([threshold + 1, *counts])
    nbins = top + 1
    peak = max(counts.values(), default=0)
    width, height, left, bottom, top_pad = 1100, 150, 40, 26, 14
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    bin_w = plot_w / nbins
    bars = []
    for d in range(nbins):
        n = counts.get(d, 0)
        h = (n / peak) * plot_h if peak else 0.0
        bars.append({
            "distance": d, "count": n, "x": round(left + d * bin_w + 1, 2),
            "y": round(top_pad + plot_h - h, 2), "w": round(max(bin_w - 2, 1), 2),
            "h": round(h, 2), "within": d <= threshold,
        })
    step = max(1, -(-nbins // 32))  # at most ~32 axis labels
    ticks = [{"x": round(left + (d + 0.5) * bin_w, 2), "label": d}
             for d in range(0, nbins, step)]
    tx = round(left + (threshold + 1) * bin_w, 2)  # line just right of the last matching bin
    return {"bars": bars, "ticks": ticks, "peak": peak, "pairs": sum(counts.values()),
            "width": width, "height": height, "left": left, "base": top_pad + plot_h,
            "top": top_pad, "threshold": threshold, "threshold_x": tx,
            "plot_right": left + plot_w}


def _json_for_script(value: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``.

    ``ensure_ascii`` keeps undecodable (surrogate-escaped) file names representable, and
    ``<``, ``>``, ``&`` become ``\\u003c`` etc. so no string can close the tag or open a
    comment; ``JSON.parse`` reads them back unchanged.
    """
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _displayable(text: str) -> str:
    # Undecodable file names arrive surrogate-escaped; show U+FFFD rather than fail to encode.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _asset(name: str) -> str:
    return resources.files("lookalike").joinpath("templates", name).read_text("utf-8")


def _original_url(path: str, facts: Mapping[str, Any] | None) -> str | None:
    """The ``file:`` URL the compare view loads for ``path``, if browsers display its format."""
    if not facts or facts.get("format") not in WEB_FORMATS or not os.path.isabs(path):
        return None
    # as_uri percent-encodes the file system bytes: '#', '?', spaces, undecodable names.
    return PurePath(path).as_uri()


def _compact_facts(facts: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not facts:
        return None
    keys = {"mode": "cm", "quality": "q", "camera": "c", "taken": "dt", "exposure": "ex"}
    return {short: facts[k] for k, short in keys.items() if facts.get(k) is not None} or None


def _page_data(data: Mapping[str, Any], groups: Sequence[Mapping[str, Any]],
               report_path: str | None, thumb_url: Mapping[str, str],
               states: Mapping[str, str] | None = None,
               facts: Mapping[str, Mapping[str, Any]] | None = None,
               preview_url: Mapping[str, str] | None = None,
               decisions: Mapping[int, KeepDecision] | None = None) -> dict[str, Any]:
    """The compact data the page script reads (short keys: 10,000 groups stay small).

    ``decisions``: :func:`keep_decisions` of ``data`` (made here when not given): the
    keepers each group is pre-filled with, and why the first one was chosen."""
    if decisions is None:
        decisions = keep_decisions(data)
    state = states or {}
    facts = facts or {}
    preview_url = preview_url or {}
    leakage = data.get("leakage")
    if not isinstance(leakage, Mapping):
        leakage = {}
    protect = [str(d) for d in (*(leakage.get("reference") or ()),
                                *((data.get("keep_policy") or {}).get("protect") or ()))]

    # Every name of each file: a folder rule decides by all of them, as apply does.
    folders, folder_of = folder_tree(
        [n for g in groups for m in g.get("members", []) for n in (m["path"], *(
            m.get("aliases") or ()))], [str(r) for r in data.get("roots", []) or []])
    # Capture moments (other shots), with each RAW's time from the file of its name beside
    # it, looked for among every member as the plan does (KeepPolicy.read_facts).
    every = [m["path"] for g in groups for m in g.get("members", [])]
    taken_all, exposure_all = with_raw_twins(every, *(
        {p: v for p in every if (v := (facts.get(p) or {}).get(k))}
        for k in ("taken", "exposure")))
    out_groups = []
    for g in groups:
        members = g.get("members", [])
        paths = [m["path"] for m in members]
        rep = g.get("representative")
        # What apply keeps (the report's policy decides again), not the report's keep list:
        # an edited list, or an earlier version's choice, is one apply does not follow.
        decision = decisions[int(g["id"])]
        keep = list(decision.keep)
        keep_set = set(keep)
        # Other shots (a burst's frames): each capture moment keeps a member under any
        # folder rule, as in apply ("mo": its moment; "sh": the policy kept it).
        hashed = [m["path"] for m in members if m.get("match", "hash") != "embedding"]
        taken = {p: taken_all[p] for p in hashed if p in taken_all}
        exposure = {p: exposure_all[p] for p in hashed if p in exposure_all}
        moments = capture_moments(taken, exposure)
        moment_ids = {mo: k for k, mo in enumerate(dict.fromkeys(moments.values()))} \
            if len(set(moments.values())) > 1 else {}
        shots = kept_shots(keep, taken, exposure)
        out_members = []
        for m in members:
            mtime_ns = m.get("mtime_ns")
            out_members.append({
                "p": m["path"], "w": m.get("width"), "h": m.get("height"),
                "b": m.get("bytes"), "f": m.get("format"),
                "t": int(mtime_ns) // 1_000_000 if mtime_ns else None,  # ms, exact in JS
                "d": m.get("distance"), "u": thumb_url.get(m["path"]),
                "s": state.get(m["path"]), "k": m["path"] in keep_set,
                "a": list(m.get("aliases") or []),  # the same file's other paths
                "fd": folder_of.get(m["path"]),  # index into "folders"
            })
            # Set only when known: absent keys keep pages of 10,000 groups small.
            extra = {"o": _original_url(m["path"], facts.get(m["path"])),
                     # The folders of its other names (hard links): a rule removes the file
                     # only when each of its names lies under a remove rule (as in apply).
                     "afd": [folder_of.get(a) for a in m.get("aliases") or ()] or None,
                     # How an embedding-only member matched, and its similarity.
                     "mk": m.get("match") if m.get("match", "hash") != "hash" else None,
                     # A flipped, turned or trimmed copy: its distance as it is.
                     "dt": m.get("distance_as_is"),
                     "sim": m.get("similarity"),
                     # Protected (a leakage scan's reference set, --protect): apply never
                     # removes it, so the page does not offer to.
                     # Any of its names, as apply sees it (lexically here: the page writer
                     # resolves no links).
                     "pr": 1 if protect and any(in_folders(n, protect) for n in (
                         m["path"], *(m.get("aliases") or ()))) else None,
                     # A file of several pictures (as the keep policy judges it): no folder
                     # rule removes it.
                     "fr": 1 if (facts.get(m["path"]) or {}).get("frames") and str(
                         m.get("format") or "").upper() in MULTI_FRAME_FORMATS else None,
                     "sh": 1 if m["path"] in shots else None,
                     "mo": moment_ids.get(moments.get(m["path"])),  # type: ignore[arg-type]
                     "v": preview_url.get(m["path"]),
                     "x": _compact_facts(facts.get(m["path"]))}
            out_members[-1].update((k, v) for k, v in extra.items() if v is not None)
        out_groups.append({"id": g.get("id"), "kind": g.get("kind", "near"),
                           "rep": paths.index(rep) if rep in paths else 0,
                           "m": out_members,
                           # The policy's keeper (keep[0]; its reason is "kr") among them.
                           "kf": paths.index(keep[0]) if keep and keep[0] in paths else None,
                           # Why the keep policy suggests its keeper: the decision's own.
                           "kr": decision.reason,
                           # The report's keep list is not the decision: said, not followed.
                           **({"kw": kw} if (kw := _differs(g.get("keep"), decision)) else {})})
    return {
        "kind": DECISIONS_KIND, "schema_version": DECISIONS_SCHEMA_VERSION,
        "report_path": report_path, "report_created": data.get("created"),
        "threshold": (data.get("config") or {}).get("threshold"),
        "groups": out_groups, "errors": list(data.get("errors", [])),
        "folders": folders,
        # A leakage scan's reference: protected members are said to be in it.
        "lk": bool(leakage.get("reference")),
    }


def render_html(report: Report | Mapping[str, Any], *,
                report_path: str | os.PathLike[str] | None = None,
                thumbnails: Mapping[str, str] | None = None,
                states: Mapping[str, str] | None = None,
                facts: Mapping[str, Mapping[str, Any]] | None = None,
                previews: Mapping[str, str] | None = None,
                decisions: Mapping[int, KeepDecision] | None = None) -> str:
    """Render the review page as a string. Pure given ``decisions``: no image file is read,
    made or stat'ed (only the package's own templates are read).

    Args:
        report: a :class:`~lookalike.report.schema.Report` or a report dict.
        report_path: the saved JSON report this page reviews (exported decisions name it).
            Taken from ``report`` when it is a ``Report``. Without one the page works but
            its Export button is disabled: ``apply`` needs the report on disk.
        thumbnails: path -> image URL (``data:`` URI or a relative URL); others get a
            placeholder.
        states: path -> ``"missing"`` or ``"changed"`` (from :func:`file_states`); files
            not in it are shown as unchanged.
        facts: path -> :func:`image_facts` of the file; a file with facts in a format of
            :data:`WEB_FORMATS` is shown full size in the compare view.
        previews: path -> URL of a larger image the compare view shows in place of an
            original in another format (as ``thumbnails``).
        decisions: :func:`keep_decisions` of the report: each group's keepers as ``apply``
            keeps them, which the page pre-fills. Without them they are made here (the keep
            policy reads the members' headers).
    """
    import jinja2
    from markupsafe import Markup

    data, abs_report, read = _load_report(report, report_path)  # no I/O for these two types
    if decisions is None:
        decisions = keep_decisions(data, read)
    groups = _groups_largest_first(data.get("groups", []))
    page = _page_data(data, groups, abs_report, thumbnails or {}, states, facts, previews,
                      decisions)
    script, style = _asset("report.js"), _asset("report.css")
    for name, text, tag in (("report.js", script, "</script"), ("report.css", style, "</style")):
        if tag in text.lower():  # would end the inline element early
            raise ValueError(f"templates/{name} must not contain {tag!r}")
    csp = "; ".join([
        "default-src 'none'", "img-src data: 'self'", f"style-src {_csp_hash(style)}",
        f"script-src {_csp_hash(script)}", "base-uri 'none'", "form-action 'none'",
    ])
    stats = data.get("stats", {}) or {}
    cfg = data.get("config", {}) or {}
    threshold = int(cfg.get("threshold", 0) or 0)
    n_images = sum(len(g.get("members", [])) for g in groups)
    duplicates = stats.get("duplicates", n_images - len(groups))
    summary = {
        "images": stats.get("images", n_images), "groups": len(groups),
        "duplicates": duplicates,
        "reclaimable": human_bytes(stats.get("bytes_reclaimable", 0) or 0),
        "errors": len(data.get("errors", [])),
    }
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lookalike", "templates"),
        autoescape=True,  # always: every value from a report is untrusted text
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    template = env.get_template("report.html.j2")
    return template.render(
        csp=csp, style=Markup(style), script=Markup(script),
        data_json=Markup(_json_for_script(page)),
        summary=summary, hist=_histogram(groups, threshold), config=cfg,
        tool=data.get("tool", {}) or {}, created=data.get("created") or "",
        report_path=_displayable(abs_report) if abs_report else None,
        roots=[_displayable(str(r)) for r in data.get("roots", []) or []],
        # The rules the page's keepers were chosen by (plan's: the recorded, or the default).
        keep_rules=list(_recorded_policy(data).rules),
        keep_recorded=bool((data.get("keep_policy") or {}).get("rules")),
        leakage=_leakage_lines(data.get("leakage")),
    )


def _leakage_lines(leakage: Any) -> list[str]:
    """The leakage summary a page of a leakage scan shows under its title (as the text
    report says it): which sets are the protected reference, and how many images of each
    other set leak."""
    if not isinstance(leakage, Mapping) or not isinstance(leakage.get("sets"), list):
        return []
    sets = [s for s in leakage["sets"] if isinstance(s, Mapping)]
    ref = ", ".join(_displayable(str(s.get("name"))) for s in sets if s.get("reference"))
    lines = [f"leakage check against the reference {ref} (protected: never removed), "
             f"threshold {leakage.get('threshold', '?')} bits"]
    lines += [f"{_displayable(str(s.get('name')))}: {s.get('leaked', '?')} of "
              f"{s.get('images', '?')} images have a near duplicate in the reference"
              for s in sets if not s.get("reference") and s.get("images") != 0]
    warnings = leakage.get("warnings")
    if not isinstance(warnings, list):  # a report of an earlier version: from its sets
        warnings = [empty_set_warning(str(s.get("name")), str(s.get("root")))
                    for s in sets if s.get("images") == 0]
    lines += [_displayable(str(w)) for w in warnings]
    suspects = leakage.get("unverified")  # absent from a report of an earlier version
    if isinstance(suspects, list) and suspects:
        lines.append(f"{len(suspects)} suspect(s) only unverified embeddings matched: not on "
                     "the purge list (perhaps another photo of the scene: review them)")
    return lines


def write_html(report: str | os.PathLike[str] | Report | Mapping[str, Any] | ScanResult,
               out: str | os.PathLike[str], *,
               report_path: str | os.PathLike[str] | None = None,
               thumbnails: ThumbnailMode = "auto", inline_limit: int = INLINE_LIMIT,
               thumb_size: int = THUMB_SIZE, workers: int | None = None,
               reporter: Reporter | None = None) -> HtmlSummary:
    """Write the self-contained review page for ``report`` to ``out``.

    Args:
        report: a JSON report path (best: exported decisions then name it), a
            :class:`~lookalike.report.schema.Report`, a report dict or a ``ScanResult``.
        out: the HTML file to write (atomically).
        report_path: the saved JSON report, when ``report`` is a dict or ``ScanResult``.
        thumbnails: ``"inline"`` (data: URIs in the page), ``"files"`` (a sibling folder
            ``<out stem>_files/``), ``"none"`` (placeholders only, no previews) or
            ``"auto"``: inline up to ``inline_limit`` images and
            :data:`PREVIEW_INLINE_LIMIT` previews, else files. Previews go where the
            thumbnails go.
        inline_limit: the ``"auto"`` switch-over point, in images.
        thumb_size: longest thumbnail side in pixels.
        workers: threads making thumbnails (default: up to 16).
        reporter: receives thumbnail progress.

    Returns:
        An :class:`HtmlSummary`.

    Raises:
        ReportError: ``report`` is a path that is not a readable report.
        ConfigError: unknown ``thumbnails`` mode, or ``out``'s folder does not exist.

    Cost: one decode per image (reduced-scale for JPEGs) and one header read for its facts
    (the page's and the keep policy's: :func:`keep_decisions`), in parallel threads; for
    files in formats browsers cannot show, a 1600 px JPEG encode too. Files that cannot be
    thumbnailed get a placeholder; they never stop the page.
    """
    if thumbnails not in ("auto", "inline", "files", "none"):
        raise ConfigError(f"unknown thumbnails mode {thumbnails!r}; use auto, inline, files "
                          "or none")
    reporter = reporter or NullReporter()
    out = check_writable(out, "HTML page")
    data, abs_report, read = _load_report(report, report_path)
    scanned = containers_of((m["path"], m.get("source")) for g in data.get("groups", [])
                            for m in g.get("members", []))
    refuse_overwrite(out, "HTML page", [*([("report", abs_report)] if abs_report else []),
                                        *(("scanned input", c) for c in sorted(scanned))])
    paths = list(dict.fromkeys(m["path"] for g in data.get("groups", [])
                               for m in g.get("members", [])))
    mode = thumbnails
    urls: dict[str, str] = {}
    preview_urls: dict[str, str] = {}
    thumb_dir = None
    unusable = _thumbnail_dir_problem(out) if mode in ("auto", "files") else None
    if mode == "files" and unusable:  # before any thumbnail is made
        raise ConfigError(f"cannot put the thumbnails in a folder beside the page: {unusable}; "
                          "name the page otherwise, or make the thumbnails inline")
    reporter.phase(1, 1, "thumbnails" if mode != "none" else "file facts", len(paths))
    # A group that cannot be read stops the page before its thumbnails are made.
    groups = read if read is not None else report_groups(abs_report or "the report", data)
    jpegs, previews, facts, headers = _gather(paths, thumb_size if mode != "none" else None,
                                              reporter, workers, data.get("stats") or {})
    reporter.close()
    if mode == "auto":
        few = len(paths) <= inline_limit and len(previews) <= PREVIEW_INLINE_LIMIT
        mode = "inline" if few or unusable else "files"
        if unusable and not few:
            reporter.info(f"thumbnails put inline (a larger page): {unusable}")
    if mode == "inline":
        urls, preview_urls = _data_uris(jpegs), _data_uris(previews)
    elif mode == "files":
        try:
            thumb_dir, urls, preview_urls = _write_thumbnail_dir(out, paths, jpegs, previews)
        except OSError as exc:  # a full disk: one line, as for the page itself
            raise LookalikeError(f"cannot write the thumbnails beside {out}: "
                                 f"{exc.strerror or exc}; free space, or make them inline"
                                 ) from None
    html = render_html(data, report_path=abs_report, thumbnails=urls, states=file_states(data),
                       facts=facts, previews=preview_urls,
                       decisions=keep_decisions(data, groups, headers))
    write_text(out, html, "HTML page", newline="\n")  # complete or absent
    return HtmlSummary(path=out, groups=len(data.get("groups", [])), images=len(paths),
                       thumbnails=len(urls), thumbnail_dir=thumb_dir,
                       previews=len(preview_urls))


def _plain_file(path: str) -> bool:
    """A regular file, not a link or a folder (what a page's thumbnail folder holds)."""
    return os.path.isfile(path) and not os.path.islink(path)


def _thumbnail_dir(out: str) -> str:
    """``<page stem>_files/`` beside the page ``out``."""
    stem = os.path.splitext(os.path.basename(out))[0]
    return os.path.join(os.path.dirname(out), f"{stem}_files")


def _thumbnail_dir_problem(out: str) -> str | None:
    """Why the thumbnail folder of the page ``out`` cannot be ours, or None. Ours: absent,
    tagged by an earlier page (its cache tag's signature), or holding only thumbnails (an
    older version's). A folder of the user's own is never tagged or cleared, a link never
    followed, a file never replaced."""
    folder = _thumbnail_dir(out)
    if os.path.islink(folder):
        return f"{folder} is a symbolic link"
    if not os.path.isdir(folder):
        return f"{folder} is a file" if os.path.lexists(folder) else None
    names = os.listdir(folder)
    if cache_tagged(folder) or all(
            _THUMB_NAME.fullmatch(n) and _plain_file(os.path.join(folder, n)) for n in names):
        return None
    return f"{folder} exists and holds files lookalike did not write"


def _data_uris(jpegs: Mapping[str, bytes]) -> dict[str, str]:
    return {p: "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
            for p, jpeg in jpegs.items()}


def _write_thumbnail_dir(out: str, paths: list[str], jpegs: Mapping[str, bytes],
                         previews: Mapping[str, bytes]
                         ) -> tuple[str, dict[str, str], dict[str, str]]:
    """Write thumbnails (``t<n>.jpg``) and previews (``p<n>.jpg``) to ``<out stem>_files/``
    (replacing an old one's); return the folder and their URLs."""
    folder = _thumbnail_dir(out)  # usable: see _thumbnail_dir_problem, asked first
    if os.path.isdir(folder):
        # Stale thumbnails of an earlier page would be misleading; remove only files we name.
        for old in os.listdir(folder):
            if _THUMB_NAME.fullmatch(old) and _plain_file(os.path.join(folder, old)):
                os.remove(os.path.join(folder, old))
    os.makedirs(folder, exist_ok=True)
    # Tagged as a cache (bford.info/cachedir): a scan of a folder holding the page skips
    # it, or every thumbnail would be a smaller duplicate of its photo, one that
    # `--keep smallest-file` keeps.
    write_new(os.path.join(folder, CACHEDIR_TAG),
              CACHEDIR_SIGNATURE + b"\n# lookalike review page thumbnails\n")
    prefix = quote(os.path.basename(folder))  # the page's own name may hold spaces, '#', '?'
    found: list[dict[str, str]] = []
    for letter, images in (("t", jpegs), ("p", previews)):
        urls = {}
        for i, p in enumerate(paths):
            jpeg = images.get(p)
            if jpeg is None:
                continue
            name = f"{letter}{i:06d}.jpg"  # our names, never the image's: nothing to escape
            write_new(os.path.join(folder, name), jpeg)
            urls[p] = f"{prefix}/{name}"
        found.append(urls)
    return folder, found[0], found[1]
