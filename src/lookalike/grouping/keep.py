"""Keep policies: which member of a duplicate group stays, and which ones an action touches.

A policy is an ordered list of rules, compared like a sort key: the first rule decides, the
next one breaks its ties, and so on; the path is always the last tie-break, so the decision
never depends on input order. Rules (``--keep`` on the command line):

==================== ==========================================================
``largest-resolution`` most pixels (width x height after EXIF orientation)
``largest-file``       most bytes
``smallest-file``      fewest bytes
``oldest``             earliest modification time
``newest``             latest modification time
``shortest-path``      fewest characters in the absolute path
``prefer-lossless``    PNG, TIFF, BMP, lossless WebP, ... before JPEG and lossy WebP
``match:GLOB``         paths matching the shell pattern (``fnmatch``, on the absolute path;
                       ``*`` also matches ``/``), e.g. ``match:*/originals/*``
``none``               keep nothing: every unprotected member is acted on (alone only)
==================== ==========================================================

The default is ``largest-resolution, largest-file, oldest, shortest-path``.

**Protected folders** (``--protect DIR``, and the reference sets of a leakage scan) come before
every rule: their files are always kept and never touched. A group with a protected member
keeps all its protected members and acts on every other one; a group whose members are all
protected is left alone.

Deciding is pure: :meth:`KeepPolicy.decide` looks at the records and at :class:`KeepFacts`,
the two things a record does not say, which :meth:`KeepPolicy.read_facts` reads from disk in
one step beforehand: which WebP files are lossless (for ``prefer-lossless``; the format name
does not say) and which paths lie in a protected folder once symbolic links are resolved.
:meth:`KeepPolicy.decide_all` does both for a list of groups.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lookalike.errors import ConfigError
from lookalike.model import Group, ImageRecord
from lookalike.paths import is_under

__all__ = ["DEFAULT_KEEP", "KEEP_RULES", "KeepChoices", "KeepDecision", "KeepFacts", "KeepPolicy",
           "parse_keep", "webp_is_lossless"]

DEFAULT_KEEP: tuple[str, ...] = ("largest-resolution", "largest-file", "oldest", "shortest-path")

KEEP_RULES: dict[str, str] = {
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

# Formats whose pixels are stored exactly. GIF is left out on purpose: it is usually a
# palette-reduced (lossy) copy of a photo, so it should not beat a JPEG original.
_LOSSLESS = frozenset({"PNG", "APNG", "BMP", "DIB", "TIFF", "PPM", "PGM", "PBM", "PNM", "QOI",
                       "TGA", "SGI", "PCX", "IM", "ICO", "ICNS", "PSD"})


def parse_keep(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Turn ``--keep`` values into a validated rule tuple.

    Each value may hold several rules separated by commas (``largest-file,oldest``), except a
    ``match:`` rule, which is taken whole so its pattern may contain commas.

    Raises:
        ConfigError: an unknown rule, an empty pattern, or ``none`` combined with other rules.
    """
    if spec is None:
        return DEFAULT_KEEP
    values = [spec] if isinstance(spec, str) else list(spec)
    rules: list[str] = []
    for value in values:
        if value.startswith("match:"):
            rules.append(value)
        else:
            rules.extend(part.strip() for part in value.split(",") if part.strip())
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


def webp_is_lossless(path: str) -> bool:
    """True if the WebP file at ``path`` holds a lossless (VP8L) bitstream; False if unreadable."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
                return False
            # Walk the RIFF chunks (a bounded number) until the image bitstream chunk.
            for _ in range(64):
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return False
                fourcc, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if fourcc == b"VP8L":
                    return True
                if fourcc == b"VP8 ":
                    return False
                fh.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return False
    return False


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepFacts:
    """What the rules need to know about files beyond their records (see the module docs).

    Attributes:
        lossless: paths of WebP files that hold a lossless bitstream.
        protected: paths (members' paths and aliases) inside a protected folder, lexically
            or once symbolic links are resolved.
    """

    lossless: frozenset[str] = frozenset()
    protected: frozenset[str] = frozenset()


def _is_lossless(rec: ImageRecord, facts: KeepFacts) -> bool:
    fmt = (rec.format or "").upper()
    return rec.path in facts.lossless if fmt == "WEBP" else fmt in _LOSSLESS


def _rule_key(rule: str, facts: KeepFacts) -> Callable[[ImageRecord], Any]:
    if rule.startswith("match:"):
        pattern = rule[len("match:"):]
        return lambda r: not fnmatch.fnmatchcase(r.path, pattern)
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
    """

    group: int
    keep: tuple[str, ...]
    remove: tuple[str, ...]
    protected: tuple[str, ...] = ()

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
    """

    rules: tuple[str, ...] = DEFAULT_KEEP
    protect: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", parse_keep(self.rules))
        folders = tuple(dict.fromkeys(os.path.abspath(os.fspath(p)) for p in self.protect))
        object.__setattr__(self, "protect", folders)

    @classmethod
    def from_spec(cls, keep: str | Iterable[str] | KeepPolicy | None = None,
                  protect: Iterable[str | os.PathLike[str]] = ()) -> KeepPolicy:
        """Build a policy from ``--keep`` values (or an existing policy) and extra folders."""
        extra = tuple(os.fspath(p) for p in protect)
        if isinstance(keep, KeepPolicy):
            return cls(rules=keep.rules, protect=(*keep.protect, *extra))
        return cls(rules=parse_keep(keep), protect=extra)

    @property
    def remove_all(self) -> bool:
        """True for ``--keep none``: no member is kept except protected ones."""
        return self.rules == ("none",)

    def is_protected(self, path: str) -> bool:
        """True if ``path`` lies in a protected folder (lexically or once symlinks resolve)."""
        if not self.protect:
            return False
        if any(is_under(path, d) for d in self.protect):
            return True
        real = os.path.realpath(path)
        return any(is_under(real, os.path.realpath(d)) for d in self.protect)

    def read_facts(self, records: Iterable[ImageRecord]) -> KeepFacts:
        """Read from disk what deciding on ``records`` needs (the policy's only I/O).

        Cost: the first bytes of each WebP file under ``prefer-lossless``; a ``realpath`` of
        each name not lexically protected when there are protected folders; else nothing.
        """
        records = list(records)
        lossless = frozenset(
            r.path for r in records
            if (r.format or "").upper() == "WEBP" and webp_is_lossless(r.path)
        ) if "prefer-lossless" in self.rules else frozenset()
        protected = frozenset(
            p for r in records for p in (r.path, *r.aliases) if self.is_protected(p)
        ) if self.protect else frozenset()
        return KeepFacts(lossless=lossless, protected=protected)

    def rank(self, records: Sequence[ImageRecord], facts: KeepFacts) -> list[ImageRecord]:
        """``records`` best first: protected ones, then by the rules, then by path. Pure."""
        keys = [] if self.remove_all else [_rule_key(r, facts) for r in self.rules]

        def key(rec: ImageRecord) -> tuple[Any, ...]:
            return (not _protects(rec, facts), *(k(rec) for k in keys), rec.path)

        return sorted(records, key=key)

    def decide(self, group: Group, facts: KeepFacts | None = None) -> KeepDecision:
        """Choose the keepers of ``group``. Never leaves a group empty unless the rule is
        ``none``.

        Pure given ``facts`` (from :meth:`read_facts` on the group's records: what the
        records do not say); without them they are read here, for this group only.
        """
        if facts is None:
            facts = self.read_facts(m.record for m in group.members)
        ranked = self.rank([m.record for m in group.members], facts)
        protected = tuple(r.path for r in ranked if _protects(r, facts))
        if protected:
            keep = protected
        elif self.remove_all:
            keep = ()
        else:
            keep = (ranked[0].path,)
        kept = set(keep)
        remove = tuple(sorted(r.path for r in ranked if r.path not in kept))
        return KeepDecision(group=group.id, keep=keep, remove=remove, protected=protected)

    def decide_all(self, groups: Iterable[Group]) -> KeepChoices:
        """Every group's decision: :meth:`read_facts` once over all members, then
        :meth:`decide` per group."""
        groups = list(groups)
        facts = self.read_facts(m.record for g in groups for m in g.members)
        return KeepChoices(policy=self, decisions={g.id: self.decide(g, facts) for g in groups})

    def to_dict(self) -> dict[str, Any]:
        return {"rules": list(self.rules), "protect": list(self.protect)}


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
