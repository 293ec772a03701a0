"""Keep policies: which member of a duplicate group stays, and which ones an action touches.

A policy is an ordered list of rules, compared like a sort key: the first rule decides, the
next one breaks its ties, and so on; the path is always the last tie-break, so the decision
never depends on input order. Rules (``--keep`` on the command line):

==================== ==========================================================
``original``           the file most likely to be the original (the default; below)
``largest-resolution`` most pixels (width x height after EXIF orientation)
``largest-file``       most bytes
``smallest-file``      fewest bytes
``oldest``             earliest modification time
``newest``             latest modification time
``shortest-path``      fewest characters in the absolute path
``prefer-lossless``    PNG, TIFF, BMP, lossless WebP, ... before JPEG and lossy WebP
``match:GLOB``         paths matching the shell pattern (``fnmatch``, on the absolute path,
                       or another name of the file; ``*`` also matches ``/``), e.g.
                       ``match:*/originals/*``
``none``               keep nothing: every unprotected member is acted on (alone only)
==================== ==========================================================

The default is ``original``. It compares the signals a file carries, in this order (each
one only breaks the ties of those before it; :data:`ORIGINAL_SIGNALS`):

1. **camera RAW** (a suffix of :data:`~lookalike.inputs.walk.RAW_SUFFIXES`): the RAW beats
   the JPEG made from it.
2. **camera metadata**: EXIF camera make/model or original date; editors and web tools
   often strip it, cameras always write it. Before the name: a camera file imported twice
   (``K8 (1).jpg``) is still the camera's, where an export stripped of its EXIF
   (``K8.jpg``) is not (review; on benchmarks/bench_keep.py the order of the two changes
   nothing: its copies keep no EXIF and their names decide).
3. **a name that marks no copy**: ``copy``, ``(1)``, `` - Copy``, ``edited``, ``resized``,
   ``thumb``..., or a name that extends another member's (``IMG_1.jpg`` ->
   ``IMG_1_1.jpg``, ``IMG_1-edited.jpg``) marks a copy; tools name copies, not originals.
4. **resolution at the group's common aspect ratio**: the pixels of the largest picture of
   that aspect ratio the file holds, so a squashed or stretched copy never wins by pixel
   count (``935x701`` does not beat ``1024x640``); pixel counts are compared in 1% steps
   (two a fraction of a percent apart may still fall on either side of a step), and
   then a copy distorted to another aspect ratio loses. A file's picture is what it shows
   inside flat bars (padding, letterbox, margins; found when it was hashed:
   :attr:`~lookalike.model.FileFacts.content`), so a padded copy counts no more pixels
   than its original.
5. **no editor saved it**: among files with camera metadata, one whose EXIF ``Software``
   tag names an editor (Photoshop, Lightroom, GIMP, a camera maker's RAW developer...)
   rather than a camera's firmware is an edit or an export that copied the camera's EXIF.
6. **other metadata**: EXIF (more than an orientation tag) or an ICC profile kept; a
   re-save by most tools drops them.
7. **encoding fidelity**: lossless (and RAW) before lossy; among JPEGs the higher quality
   estimated from the quantisation tables, so a re-encode loses (a phone's HEIC, which has
   no such table, counts as quality 100: a JPEG made from it is a conversion);
   then colour before grey.
8. **notes**: XMP or a comment kept (after fidelity: converters and photo managers add
   them, so a JPEG made from a phone's HEIC with a rating added does not beat it).
9. **the centre of the group**: the smallest total hash distance to the other members.
   Copies are edits *of* the original, so it lies between them; two edits lie further
   apart. Groups of more than :data:`CENTRE_MAX` members skip this signal. (Measured
   before resolution, it picks a near-identical edit as often as the original: last.)
10. **no flat bars around the picture**: of two that show the same picture, the one
    without padding (late: a copy cropped to a product shot's picture drops the original's
    white ground as a padded copy adds bars).
11. the oldest modification time.

Whatever the rules: in a group whose members' EXIF names two or more capture moments (the
time to the fraction of a second, and the exposure: a burst, an exposure bracket, different
photos that hash alike), the best member of each moment is kept (:meth:`KeepPolicy.shots`);
a copy keeps its picture's capture time and exposure.

What no header says: an upscaled copy has more pixels than its original and wins on
resolution unless its name marks it (``benchmarks/bench_keep.py`` measures this).

Each decision says why its keeper won (:attr:`KeepDecision.reason`): the first signal on
which it beat the runner-up.

**Protected folders** (``--protect DIR``, and the reference sets of a leakage scan) come before
every rule: their files are always kept and never touched. A group with a protected member
keeps all its protected members and acts on every other one; a group whose members are all
protected is left alone.

Deciding is pure: :meth:`KeepPolicy.decide` looks at the records and at :class:`KeepFacts`,
the things a record's hash does not say, which :meth:`KeepPolicy.read_facts` gathers in
one step beforehand: which WebP files are lossless (for ``prefer-lossless``; the format name
does not say), each file's header (for ``original``; both from the records' ``facts``, read
when they were hashed, else from the file) and which paths lie in a protected folder once
symbolic links are resolved.
:meth:`KeepPolicy.decide_all` does all of it for a list of groups.

(Over 600 lines: the rules, the signals of ``original``, the facts they read and the
exceptions no rule overrides (protected files, files of several pictures, members only
embeddings matched, other shots) are one decision; split, the policy's order and its
exceptions would live in two places that must agree.)
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lookalike.errors import ConfigError
from lookalike.imaging.facts import (
    LOSSLESS_FORMATS,
    MULTI_FRAME_FORMATS,
    FileFacts,
    read_file_facts,
    smear_free,
)
from lookalike.inputs.walk import RAW_SUFFIXES
from lookalike.model import HASHED, Group, ImageRecord
from lookalike.paths import is_under

__all__ = ["CENTRE_MAX", "DEFAULT_KEEP", "KEEP_RULES", "ORIGINAL_SIGNALS", "KeepChoices",
           "KeepDecision", "KeepFacts", "KeepPolicy", "capture_moments", "in_folders",
           "kept_shots", "parse_keep", "with_raw_twins"]

DEFAULT_KEEP: tuple[str, ...] = ("original",)

KEEP_RULES: dict[str, str] = {
    "original": "the file most likely the original: RAW, camera EXIF, a name that marks no "
                "copy, resolution at the group's aspect ratio, metadata kept, encoding "
                "fidelity, the group's centre, age",
    "largest-resolution": "most pixels",
    "largest-file": "most bytes",
    "smallest-file": "fewest bytes",
    "oldest": "earliest modification time",
    "newest": "latest modification time",
    "shortest-path": "shortest absolute path",
    "prefer-lossless": "lossless formats (PNG, TIFF, BMP, lossless WebP, ...) before lossy ones",
    "match:GLOB": "paths matching the shell pattern GLOB (on the absolute path)",
    "none": "keep nothing: act on every unprotected member",
}

#: The signals of the ``original`` rule, in the order they are compared (module docs).
ORIGINAL_SIGNALS: tuple[str, ...] = ("raw", "camera", "name", "resolution", "editor",
                                     "metadata", "fidelity", "notes", "centre", "bars", "age")

#: Groups with more members than this skip the centre signal (its cost grows with the square
#: of the group's size; such groups are exact copies more often than edits).
CENTRE_MAX = 256

# Words and marks that file managers, browsers and editors add to the names of copies.
_COPY_NAME = re.compile(
    r"(?:^|[^a-z0-9])(?:copy|copie|kopie|edit|edited|resized|scaled|thumb|thumbnail|"
    r"compressed)(?:$|[^a-z0-9])|\(\d+\)$", re.IGNORECASE)

# Editors that write their name in EXIF Software (a camera writes its firmware there): a
# file an editor saved is an edit or an export, even with the camera's EXIF copied over.
_EDITOR = re.compile(
    r"photoshop|lightroom|adobe|gimp|affinity|capture one|darktable|rawtherapee|snapseed|"
    r"pixelmator|luminar|dxo|acdsee|paint\.net|picasa|lightzone|polarr|vsco|fotor|canva|"
    r"photoscape|irfanview|xnview|xnconvert|faststone|krita|digikam|shotwell|aperture|"
    r"digital photo professional|capture nx|nx studio|silkypix|imaging edge|"
    r"olympus workspace|om workspace|photo editor|photos legacy|microsoft photos",
    re.IGNORECASE)

#: Lossy formats without a quality estimate that phones write themselves: a JPEG made from
#: one is a conversion (it scores as a JPEG of quality 100 would). Not AVIF: cameras and
#: phones rarely write it, and a conversion from a camera JPEG would win.
_CAMERA_LOSSY = frozenset(("HEIF", "HEIC"))

_SIGNAL_WORDS = {  # why a keeper won, per signal (not reason codes: errors.REASONS)
    "raw": "camera RAW",
    "name": "its name marks no copy",
    "editor": "no editor saved it (EXIF Software)",
    "camera": "camera EXIF (make, model or date taken)",
    "resolution": "most pixels at the group's aspect ratio (then: not distorted)",
    "centre": "the group's centre (closest to the other members)",
    "bars": "no flat bars around the picture (padding, letterbox)",
    "fidelity": "best encoding (lossless, or the highest JPEG quality; colour)",
    "metadata": "keeps its metadata (EXIF, ICC profile)",
    "notes": "keeps its notes (XMP, a comment)",
    "age": "oldest modification time",
}


def capture_moments(taken: Mapping[str, str], exposure: Mapping[str, str] | None = None
                    ) -> dict[str, tuple[str, str, str]]:
    """Each path's shot: its capture second, the fraction of it, and its exposure (time and
    bias: an exposure bracket's frames can share a second), from ``taken``
    (``YYYY-MM-DD HH:MM:SS[.fff]``) and ``exposure``. An export may drop a part (the
    fraction, SubsecTimeOriginal) and keep the rest: a path whose known parts match another
    path's that knows more could be a copy of that shot, so it names no shot of its own
    (left out); ``.35`` and ``.350`` are one moment."""
    exposure = exposure or {}
    keys: dict[str, tuple[str, str, str]] = {}
    for path, when in taken.items():
        second, _, frac = when.partition(".")
        keys[path] = (second, frac.rstrip("0") or ("0" if frac else ""), exposure.get(path, ""))

    def could_copy(a: tuple[str, str, str], b: tuple[str, str, str]) -> bool:
        return a != b and a[0] == b[0] and all(x in ("", y) for x, y in zip(a[1:], b[1:],
                                                                           strict=True))
    specific = set(keys.values())
    return {p: k for p, k in keys.items() if not any(could_copy(k, o) for o in specific)}


def with_raw_twins(paths: Sequence[str], taken: Mapping[str, str],
                   exposure: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``taken`` and ``exposure`` (by path) with the capture time and exposure of each camera
    RAW among ``paths`` that has none (CR3, RAF, ORF...: Pillow cannot read their headers)
    taken from the file of the same name beside it (the JPEG the camera wrote with it)."""
    taken, exposure = dict(taken), dict(exposure)
    named = {(os.path.dirname(p), _stem(p)): p for p in taken}
    for path in paths:
        twin = named.get((os.path.dirname(path), _stem(path)))
        if path not in taken and twin is not None and \
                os.path.splitext(path)[1].lower() in RAW_SUFFIXES:
            taken[path] = taken[twin]
            if twin in exposure:
                exposure[path] = exposure[twin]
    return taken, exposure


def kept_shots(keep: Sequence[str], taken: Mapping[str, str],
               exposure: Mapping[str, str] | None = None) -> set[str]:
    """The members of a keep list that :meth:`KeepPolicy.shots` keeps, for a view that has
    a report's keep list and every member's capture time and exposure but not the policy's
    ranking: in a group of two or more capture moments, every kept member with one (the
    policy keeps the best of each moment)."""
    moments = capture_moments(taken, exposure)
    if len(set(moments.values())) < 2:
        return set()
    return {path for path in keep if path in moments}


def _stem(path: str) -> str:
    name = os.path.basename(path.rstrip("/"))
    return name.rsplit(".", 1)[0].lower() if "." in name[1:] else name.lower()


def _copy_names(records: Sequence[ImageRecord]) -> set[str]:
    """Paths whose names mark a copy: a copy word, ``(1)``, or another member's name
    extended (``a.jpg`` -> ``a_1.jpg``, ``a - Copy.jpg``, ``a.jpg.png``)."""
    stems = {r.path: _stem(r.path) for r in records}
    names = set(stems.values())
    return {path for path, stem in stems.items()
            if _COPY_NAME.search(stem) or any(
                stem[:i] in names for i in range(1, len(stem)) if not stem[i].isalnum())}


def _shown(rec: ImageRecord, facts: KeepFacts) -> tuple[int, int]:
    """(width, height) of the picture ``rec`` shows: inside flat bars when its hash found
    some (:attr:`FileFacts.content`), else the whole file's."""
    header = facts.headers.get(rec.path)
    return header.content if header is not None and header.content else (rec.width,
                                                                          rec.height)


def _aspect(size: tuple[int, int]) -> float:
    """Long side over short side (a 90-degree turn keeps it); 0 for an empty image."""
    short = min(size)
    return max(size) / short if short > 0 else 0.0


def _pixels_at(size: tuple[int, int], aspect: float) -> int:
    """Pixels of the largest picture of ``aspect`` (long / short side) that a picture of
    ``size`` holds: a copy squashed or stretched to another aspect counts only what it can
    show at the group's, so it never wins by pixel count."""
    own = _aspect(size)
    if not own or not aspect or abs(own / aspect - 1) <= 0.01:
        return size[0] * size[1]
    long, short = max(size), min(size)
    return round(short * aspect * short) if own > aspect else round(long * long / aspect)


def _common_aspect(sizes: Sequence[tuple[int, int]]) -> float:
    """The aspect ratio most pictures of ``sizes`` share (within about 1%); ties: the
    largest picture's."""
    bins: dict[int, int] = {}
    for size in sizes:
        k = round(_aspect(size) * 100)
        bins[k] = bins.get(k, 0) + 1

    def support(size: tuple[int, int]) -> tuple[int, int]:
        k = round(_aspect(size) * 100)
        return bins.get(k - 1, 0) + bins[k] + bins.get(k + 1, 0), size[0] * size[1]

    return _aspect(max(sizes, key=support))


def _centre_distances(records: Sequence[ImageRecord]) -> dict[str, int]:
    """Each member's total distance to the others between plain hashes (the first segment:
    not flipped, turned or trimmed, so a mirrored or padded copy is off-centre, as it should
    be; one popcount per pair where the full distance takes up to 256). Empty above
    :data:`CENTRE_MAX` or for hashes of other methods."""
    if len(records) > CENTRE_MAX or len({(r.hash.method, r.hash.nbits) for r in records}) > 1:
        return {}
    plain = [r.hash.segments[0] for r in records]
    total = dict.fromkeys((r.path for r in records), 0)
    for i, a in enumerate(plain):
        for j in range(i + 1, len(plain)):
            d = (a ^ plain[j]).bit_count()
            total[records[i].path] += d
            total[records[j].path] += d
    return total


def _original_key(records: Sequence[ImageRecord], facts: KeepFacts
                  ) -> Callable[[ImageRecord], tuple[Any, ...]]:
    """The ``original`` rule's sort key over one group: one value per signal of
    :data:`ORIGINAL_SIGNALS`, lower is better."""
    copies = _copy_names(records)
    bars = {r.path: _shown(r, facts) != (r.width, r.height) for r in records}
    shown = smear_free({r.path: (_shown(r, facts), (r.width, r.height)) for r in records})
    aspect = _common_aspect(list(shown.values()))
    centre = _centre_distances(records)
    empty = FileFacts()

    def signals(r: ImageRecord) -> dict[str, Any]:
        f = facts.headers.get(r.path, empty)
        raw = os.path.splitext(r.path)[1].lower() in RAW_SUFFIXES
        lossless = raw or f.lossless or _is_lossless(r, facts)
        fidelity = 101 if lossless else f.quality or (
            100 if (f.format or "").upper() in _CAMERA_LOSSY else 0)
        size = shown[r.path]
        pixels = _pixels_at(size, aspect)
        return {
            "raw": not raw,
            "name": r.path in copies,
            "camera": not (f.camera or f.taken),
            # Only beside camera EXIF (an export that copied it): many originals without it
            # were once saved by an editor, and their copies, stripped, name none.
            "editor": bool((f.camera or f.taken) and f.software and _EDITOR.search(f.software)),
            # 1% steps: a few pixels cropped or padded are no better picture; at equal
            # pixels a copy distorted to another aspect ratio loses.
            "resolution": (-round(math.log(pixels) / _LOG_STEP) if pixels > 0 else 0,
                           abs(_aspect(size) / aspect - 1) > 0.01 if aspect else False),
            # Late: the same picture with and without bars around it is a padded copy as
            # often as a copy cropped to the picture (a product shot on a white ground).
            "bars": bars[r.path],
            "centre": centre.get(r.path, 0),
            # Colour from the mode only breaks ties: a lossy copy of a grey picture is
            # stored as colour (WebP always is), so the mode is weak evidence.
            "fidelity": (-fidelity, f.grey),
            "metadata": -f.metadata,
            "notes": -f.notes,
            "age": r.mtime_ns,
        }

    def key(r: ImageRecord) -> tuple[Any, ...]:
        # The signals once per member (they were made once per signal): a warm re-scan of
        # 20k small images with 3,090 group members -6% CPU (0.67 s against 0.71 s, medians
        # of 9 interleaved runs).
        values = signals(r)
        return tuple([values[name] for name in ORIGINAL_SIGNALS])

    return key


_LOG_STEP = math.log(1.01)


def parse_keep(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Turn ``--keep`` values into a validated rule tuple.

    Each value may hold several rules separated by commas (``largest-file,oldest``), except a
    ``match:`` rule, which is taken whole so its pattern may contain commas.

    Raises:
        ConfigError: an unknown rule, an empty pattern, ``none`` combined with other rules, or
            a ``match:`` value with a rule name after a comma (``match:*a*,oldest``).
    """
    if spec is None:
        return DEFAULT_KEEP
    values = [spec] if isinstance(spec, str) else list(spec) \
        if isinstance(spec, Iterable) and not isinstance(spec, bytes) else None
    if values is None or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"keep rules are a rule name or a list of them (e.g. 'original' or "
                          f"['largest-file', 'oldest']), not {spec!r}")
    rules: list[str] = []
    for value in values:
        if value.startswith("match:"):
            # Taken whole, so a rule written after a comma would silently become part of the
            # pattern (which then matches nothing): refused instead.
            parts = [p.strip() for p in value.split(",")]
            cut = next((k for k, p in enumerate(parts) if k and (
                p in KEEP_RULES or p.startswith("match:"))), None)
            if cut is not None:
                raise ConfigError(
                    f"keep rule {value!r}: a match: rule takes the rest of its value as the "
                    "pattern, commas included; give the rules as separate values, e.g. "
                    f"{','.join(parts[:cut])!r} and {parts[cut]!r}")
            rules.append(value)
        else:
            parts = [part.strip() for part in value.split(",") if part.strip()]
            if not parts:  # an empty value (a script's unset variable) is not the default
                raise ConfigError(f"keep rule {value!r} is empty; name one of: "
                                  f"{', '.join(KEEP_RULES)}")
            rules.extend(parts)
    if not rules:
        return DEFAULT_KEEP
    for rule in rules:
        if rule.startswith("match:"):
            if not rule[len("match:"):]:
                raise ConfigError("keep rule 'match:' needs a pattern, "
                                  "e.g. 'match:*/originals/*'")
        elif rule not in KEEP_RULES or rule == "match:GLOB":
            raise ConfigError(
                f"unknown keep rule {rule!r}; use one or more of: "
                + ", ".join(KEEP_RULES)
            )
    if "none" in rules and len(rules) > 1:
        raise ConfigError("keep rule 'none' keeps nothing, so it cannot be combined with "
                          "other rules")
    return tuple(rules)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepFacts:
    """What the rules need to know about files beyond their records (see the module docs).

    Attributes:
        lossless: paths of WebP files that hold a lossless bitstream.
        protected: paths (members' paths and aliases) inside a protected folder, lexically
            or once symbolic links are resolved.
        headers: each member's :class:`FileFacts` (read for the ``original`` rule).
        frames: paths of files that hold more than one picture (animations, multi-page
            TIFFs: :attr:`FileFacts.frames`).
        taken: when each member's picture was taken, where its EXIF says
            (:attr:`FileFacts.taken`): members taken at different times are different shots.
            A camera RAW whose header says nothing takes the time of the file of the same
            name beside it (the JPEG the camera wrote with it).
        exposure: each member's exposure time and bias, where its EXIF says.
    """

    lossless: frozenset[str] = frozenset()
    protected: frozenset[str] = frozenset()
    headers: Mapping[str, FileFacts] = field(default_factory=dict)
    frames: frozenset[str] = frozenset()
    taken: Mapping[str, str] = field(default_factory=dict)
    exposure: Mapping[str, str] = field(default_factory=dict)


def in_folders(path: str, folders: Iterable[str]) -> bool:
    """Whether ``path`` lies (lexically) in one of ``folders``, or is a member of one that
    is a tar shard or Parquet file (``FILE#name``; a folder's sibling named
    ``FOLDER#1.jpg`` is not)."""
    return any(is_under(path, d) or (path.startswith(f"{d}#") and not os.path.isdir(d))
               for d in folders)


def _is_lossless(rec: ImageRecord, facts: KeepFacts) -> bool:
    fmt = (rec.format or "").upper()
    return rec.path in facts.lossless if fmt == "WEBP" else fmt in LOSSLESS_FORMATS


def _rule_key(rule: str, facts: KeepFacts, records: Sequence[ImageRecord]
              ) -> Callable[[ImageRecord], Any]:
    """The sort key of ``rule`` (lower is better) over the group of ``records``."""
    if rule == "original":
        return _original_key(records, facts)
    if rule.startswith("match:"):
        pattern = rule[len("match:"):]
        # Any name of the file (its hard links too): the file the rule names is this one.
        return lambda r: not any(fnmatch.fnmatchcase(n, pattern) for n in (r.path, *r.aliases))
    return {
        "largest-resolution": lambda r: -r.pixels,
        "largest-file": lambda r: -r.size_bytes,
        "smallest-file": lambda r: r.size_bytes,
        "oldest": lambda r: r.mtime_ns,
        "newest": lambda r: -r.mtime_ns,
        "shortest-path": lambda r: len(r.path),
        "prefer-lossless": lambda r: not _is_lossless(r, facts),
    }[rule]


def _protects(rec: ImageRecord, facts: KeepFacts) -> bool:
    """True if any name of the file (its path or an alias) is protected."""
    return rec.path in facts.protected or any(a in facts.protected for a in rec.aliases)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepDecision:
    """What a policy decided for one group.

    Attributes:
        group: the group id.
        keep: members that stay, best first (``keep[0]`` is the target of link actions);
            empty only under ``--keep none`` with no protected member.
        remove: members an action applies to, in path order.
        protected: the members inside protected folders (all of them are in ``keep``).
        reason: why ``keep[0]`` was chosen, in a few words: the first rule (or signal of
            ``original``) on which it beat the runner-up, e.g. ``"camera RAW"``.
    """

    group: int
    keep: tuple[str, ...]
    remove: tuple[str, ...]
    protected: tuple[str, ...] = ()
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.group, "keep": list(self.keep), "remove": list(self.remove)}


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepPolicy:
    """An ordered keep policy plus protected folders. Validated on construction.

    Attributes:
        rules: rule names (see the module docs), applied in order; default
            :data:`DEFAULT_KEEP`.
        protect: folders whose files are never touched (made absolute here). A file counts as
            protected if its path, or its resolved path, is inside one of them.
        reference: of those, a leakage check's reference sets: a member a reference copy
            matched is a leak, removed whatever it holds (a file of several pictures too:
            the purge list is what is applied). A folder merely protected does not do that.
    """

    rules: tuple[str, ...] = DEFAULT_KEEP
    protect: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", parse_keep(self.rules))
        folders = tuple(dict.fromkeys(os.path.abspath(os.fspath(p)) for p in self.protect))
        reference = tuple(dict.fromkeys(os.path.abspath(os.fspath(p)) for p in self.reference))
        object.__setattr__(self, "protect", tuple(dict.fromkeys((*folders, *reference))))
        object.__setattr__(self, "reference", reference)

    @classmethod
    def from_spec(cls, keep: str | Iterable[str] | KeepPolicy | None = None,
                  protect: Iterable[str | os.PathLike[str]] = (),
                  reference: Iterable[str | os.PathLike[str]] = ()) -> KeepPolicy:
        """Build a policy from ``--keep`` values (or an existing policy), extra protected
        folders and a leakage check's ``reference`` sets (protected too)."""
        extra = tuple(os.fspath(p) for p in protect)
        ref = tuple(os.fspath(p) for p in reference)
        if isinstance(keep, KeepPolicy):
            return cls(rules=keep.rules, protect=(*keep.protect, *extra),
                       reference=(*keep.reference, *ref))
        return cls(rules=parse_keep(keep), protect=extra, reference=ref)

    @property
    def remove_all(self) -> bool:
        """True for ``--keep none``: no member is kept except protected ones."""
        return self.rules == ("none",)

    def is_protected(self, path: str) -> bool:
        """True if ``path`` lies in a protected folder (lexically or once symlinks resolve),
        or is a member of a protected tar shard or Parquet file (``FILE#name``)."""
        if not self.protect:
            return False
        if in_folders(path, self.protect):
            return True
        real = os.path.realpath(path)
        return any(is_under(real, os.path.realpath(d)) for d in self.protect)

    def in_reference(self, path: str) -> bool:
        """True if ``path`` lies in one of the :attr:`reference` sets (lexically: they are
        scanned roots, and the scan's paths lie under them)."""
        return in_folders(path, self.reference)

    def purges(self, protected: Iterable[str], how: Mapping[str, str]) -> bool:
        """Whether a group whose ``protected`` members matched as ``how`` says (path ->
        :data:`~lookalike.model.MATCH_KINDS`) is a leak to purge: a leakage check's
        reference holds a copy its hashes (or verification) matched. Then every other member
        goes, files of several pictures and other shots too: the purge list is applied."""
        return any(how[p] != "embedding" and self.in_reference(p) for p in protected)

    def read_facts(self, records: Iterable[ImageRecord]) -> KeepFacts:
        """Gather what deciding on ``records`` needs (the policy's only I/O).

        Each file's header facts (``original``; whether a WebP is lossless,
        ``prefer-lossless``) come from its record's ``facts``, read when it was hashed; only
        records without them (from an older cache) have their file read
        (:func:`~lookalike.imaging.facts.read_file_facts`). Cost
        besides: a ``realpath`` of each name not lexically protected when there are
        protected folders.
        """
        records = list(records)
        read: dict[str, FileFacts] = {}

        def header(r: ImageRecord) -> FileFacts:
            # Stored facts, unless they predate `frames` (an older cache's, or a report's,
            # which holds the bars only): then the file's, with the bars the scan found.
            if r.facts is not None and r.facts.frames is not None:
                return r.facts
            if r.path not in read:
                read[r.path] = read_file_facts(r.path)
                if r.facts is not None and r.facts.content is not None:
                    read[r.path] = dataclasses.replace(read[r.path], content=r.facts.content)
            return read[r.path]

        # Files whose header says nothing (gone, remote, not an image) are left out.
        headers = {r.path: f for r in records
                   if (f := header(r)) != FileFacts()} if "original" in self.rules else {}
        # Only in a format that can hold several pictures (the scan's format: a camera RAW,
        # read as TIFF by Pillow's header parser, holds previews, not pictures), so a scan
        # and a plan from its report judge alike.
        frames = frozenset(r.path for r in records
                           if (r.format or "").upper() in MULTI_FRAME_FORMATS
                           and header(r).frames is not False)  # unknown: perhaps several
        lossless = frozenset(
            r.path for r in records
            if (r.format or "").upper() == "WEBP" and header(r).lossless
        ) if "prefer-lossless" in self.rules else frozenset()
        protected = frozenset(
            p for r in records for p in (r.path, *r.aliases) if self.is_protected(p)
        ) if self.protect else frozenset()
        taken, exposure = with_raw_twins(
            [r.path for r in records],
            {r.path: f.taken for r in records if (f := header(r)).taken},
            {r.path: f.exposure for r in records if (f := header(r)).exposure})
        return KeepFacts(lossless=lossless, protected=protected, headers=headers,
                         frames=frames, taken=taken, exposure=exposure)

    def shots(self, records: Sequence[ImageRecord], facts: KeepFacts) -> frozenset[str]:
        """In a group whose members' EXIF names two or more capture times (a burst, an
        exposure bracket, two frames seconds apart: different photos that hash alike), the
        best member (:meth:`rank`) of each capture time; else none. No policy or folder
        rule removes them: a copy keeps its picture's capture time, so members that differ
        in it are not copies of each other."""
        moments = capture_moments({r.path: facts.taken[r.path] for r in records
                                   if r.path in facts.taken}, facts.exposure)
        if len(set(moments.values())) < 2:
            return frozenset()
        best: dict[tuple[str, str, str], str] = {}
        for rec in self.rank(records, facts):
            if rec.path in moments:
                best.setdefault(moments[rec.path], rec.path)
        return frozenset(best.values())

    def rank(self, records: Sequence[ImageRecord], facts: KeepFacts) -> list[ImageRecord]:
        """``records`` best first: protected ones, then by the rules, then by path. Pure."""
        return [rec for _, rec in self._ranked(records, facts)]

    def _ranked(self, records: Sequence[ImageRecord], facts: KeepFacts
                ) -> list[tuple[tuple[Any, ...], ImageRecord]]:
        """``(sort key, record)`` best first; a key holds one value per rule, after the
        protection flag."""
        rules = [] if self.remove_all else [_rule_key(r, facts, records) for r in self.rules]
        keyed = [((not _protects(rec, facts), *(k(rec) for k in rules)), rec) for rec in records]
        return sorted(keyed, key=lambda kr: (kr[0], kr[1].path))

    def _why(self, first: tuple[Any, ...], others: Sequence[tuple[Any, ...]]) -> str:
        """Why the member keyed ``first`` was kept over the members keyed ``others`` (best
        first): the first rule (or signal of the ``original`` rule) that tells it from the
        runner-up; when that one ties it on every rule, the first that tells it from any of
        them, then "first by path" (else a rule that removed every other member read "first
        by path"; and the first rule that told it from any member named the wrong one: a
        HEIC kept over its camera JPEG by encoding read "its name marks no copy", which only
        set a third member, named ``_web``, apart)."""
        if not others:  # the others were joined by embeddings
            return "the only member hashes matched"

        def said(key: tuple[Any, ...]) -> list[tuple[str, Any]]:
            out = [("in a protected folder", key[0])]
            for rule, value in zip(self.rules, key[1:], strict=True):
                if rule == "original":
                    out += [(_SIGNAL_WORDS[n], v)
                            for n, v in zip(ORIGINAL_SIGNALS, value, strict=True)]
                else:
                    out.append((KEEP_RULES.get(rule, rule) if not rule.startswith("match:")
                                else f"its path matches {rule[len('match:'):]}", value))
            return out

        mine = said(first)
        theirs = [said(o) for o in others]
        why = next((word for k, (word, value) in enumerate(mine)
                    if theirs[0][k][1] != value), None)
        if why is not None:
            return why
        why = next((word for k, (word, value) in enumerate(mine)
                    if any(t[k][1] != value for t in theirs)), None)
        tie = "first by path (the rules find no difference)"
        return tie if why is None else f"{why}; then {tie}"

    def decide(self, group: Group, facts: KeepFacts | None = None) -> KeepDecision:
        """Choose the keepers of ``group``. Never leaves a group empty unless the rule is
        ``none``.

        Pure given ``facts`` (from :meth:`read_facts` on the group's records: what the
        records do not say); without them they are read here, for this group only.
        """
        if facts is None:
            facts = self.read_facts(m.record for m in group.members)
        how = {m.record.path: m.match for m in group.members}
        keyed = self._ranked([m.record for m in group.members], facts)
        ranked = [rec for _, rec in keyed]
        protected = tuple(r.path for r in ranked if _protects(r, facts))
        # Members only unverified embeddings matched may be another photo of the scene:
        # never removed by a policy.
        spared = [r.path for r in ranked if how[r.path] == "embedding"]
        if protected:
            # A protected copy stays, so every other verified member may go (a leakage
            # scan's reference sets: the purge list).
            keep, reason = protected, "in a protected folder"
            if all(how[p] == "embedding" for p in protected) and not self.remove_all:
                # Only unverified embedding matches are protected, perhaps another photo of
                # the scene: the policy's pick of the hash-matched members stays too.
                hashed = [kr for kr in keyed if how[kr[1].path] in HASHED]
                if hashed:
                    # The policy's pick first: link actions target keep[0], and the reason
                    # below is about it, not about a protected photo that only looks alike.
                    keep = (hashed[0][1].path, *protected)
                    reason = self._why(hashed[0][0], [k for k, _ in hashed[1:]])
        else:
            # Members embeddings joined are crops, frames, turns... of the others, or the
            # others of them: which is the original no signal here says (a screenshot has
            # more pixels than its photo, a crop fewer). The policy picks among the members
            # hashes tie to the representative and keeps the joined ones.
            spared += [r.path for r in ranked if how[r.path] == "verified"]
            # Members the verified band joined are photometric edits (brightened, ...):
            # candidates like hash matches.
            hashed = [kr for kr in keyed if how[kr[1].path] in HASHED]
            if self.remove_all:
                keep, reason = (), "keep rule none"
            elif not hashed:  # a part of a group (a dataset split's): embeddings joined all
                keep, reason = (), "no member hashes matched"
            else:
                keep = (hashed[0][1].path,)
                reason = self._why(hashed[0][0], [k for k, _ in hashed[1:]])
        spared = [p for p in spared if p not in keep]
        if spared:
            keep = (*keep, *sorted(spared))
            reason += ("; members joined by embeddings are kept (choose among them on the "
                       "review page)")
        # The hash of an animation or a multi-page file sees its first picture only: it is
        # never removed for a file that matched that picture, only for one of its bytes.
        # Unless a leakage check's reference holds a copy its hashes (or verification)
        # matched: then it is a leak, and the purge list is what is applied.
        purging = self.purges(protected, how)
        kept_bytes = {r.digest for r in ranked if r.path in keep and r.digest}
        frames = []
        for r in ranked:  # best first: of byte-identical copies, the best one stays
            if not purging and r.path in facts.frames and r.path not in keep and (
                    r.digest is None or r.digest not in kept_bytes):
                frames.append(r.path)
                if r.digest:
                    kept_bytes.add(r.digest)
        if frames:
            keep = (*keep, *sorted(frames))
            reason += ("; files of several frames or pages are kept (their hash sees the "
                       "first only)")
        shots = [] if purging or self.remove_all else sorted(
            self.shots([m.record for m in group.members if how[m.record.path] != "embedding"],
                       facts) - set(keep))
        if shots:
            keep = (*keep, *shots)
            reason += ("; other shots are kept (their EXIF says they were taken at other "
                       "times: a burst or a bracket, not copies)")
        kept = set(keep)
        remove = tuple(sorted(r.path for r in ranked if r.path not in kept))
        return KeepDecision(group=group.id, keep=keep, remove=remove, protected=protected,
                            reason=reason)

    def decide_all(self, groups: Iterable[Group]) -> KeepChoices:
        """Every group's decision: :meth:`read_facts` once over all members, then
        :meth:`decide` per group."""
        groups = list(groups)
        facts = self.read_facts(m.record for g in groups for m in g.members)
        return KeepChoices(policy=self, decisions={g.id: self.decide(g, facts) for g in groups})

    def to_dict(self) -> dict[str, Any]:
        # `reference` only when set: a leakage report also names it in its own section.
        return {"rules": list(self.rules), "protect": list(self.protect),
                **({"reference": list(self.reference)} if self.reference else {})}


@dataclass(frozen=True, slots=True)
class KeepChoices:
    """A policy and what it decided for each group (by id): the keep data of a report.

    Made by :meth:`KeepPolicy.decide_all`; report views take it as plain data.
    """

    policy: KeepPolicy
    decisions: Mapping[int, KeepDecision]

    def keep(self, group: int) -> tuple[str, ...]:
        """The paths kept in group ``group``, best first."""
        return self.decisions[group].keep

    def reason(self, group: int) -> str:
        """Why group ``group``'s first keeper was chosen (:attr:`KeepDecision.reason`)."""
        return self.decisions[group].reason

    def bytes_removed(self, groups: Iterable[Group]) -> int:
        """Bytes of the files these decisions remove from ``groups``: what a report calls
        reclaimable (each file once: its hard links are one record)."""
        total = 0
        for g in groups:
            gone = set(self.decisions[g.id].remove)
            total += sum(m.record.size_bytes for m in g.members if m.record.path in gone)
        return total
