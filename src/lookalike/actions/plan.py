"""Planning: turn a scan report (or a decisions file) and a keep policy into a list of file ops.

(Over 600 lines on purpose: every safety check below guards :func:`plan`'s one pass over the
groups, and reads best next to it.)

Planning is pure: it reads the report, ``lstat``s the files and resolves their paths, and may
read the first bytes of WebP files (``prefer-lossless``), an existing journal (to resume) and
the markers of the quarantine's folders (``move``), but it never writes anything.
:func:`lookalike.actions.apply.apply` executes a :class:`Plan`.

Safety checks made here:

* every path in the report must be a clean absolute path (no ``..``) inside one of the report's
  roots, also once symbolic links are resolved; otherwise the report is rejected with
  :class:`~lookalike.errors.ReportError` (it was tampered with, or the folders changed under it);
* a group with a member that is gone, is now a symbolic link, or whose size or mtime differs
  from the report is skipped whole (see :attr:`Plan.skipped`); ``apply`` checks again, with the
  content digest, right before acting;
* a file is its identity (device and inode), not its path: a member that is the same file as a
  kept one (a hard link, or another path to it through a symbolic link or an overlapping root,
  as reports of earlier versions list them) is never acted on; acting on a file acts on all its
  names found by the scan (its hard links), and bytes count once per file, and only where every
  name of it is acted on;
* every group keeps at least one member unless the policy is ``--keep none``; files in protected
  folders (``--protect`` and a leakage scan's reference sets) are never acted on;
* ``hardlink``/``symlink`` only replace members whose bytes equal the keeper's (same SHA-256):
  replacing a near duplicate by a link would change what that path shows.

Folder rules (``keep_in``, ``remove_in``; :class:`FolderRules`) say where duplicates go, the way
photographers sort: "keep everything under ``Originals/``, remove the duplicates under
``Exports/``". With them, only members under a ``remove_in`` folder are acted on (the deepest
rule over a path decides, so ``keep_in`` carves a folder out of a ``remove_in`` one); every
other member stays. A group whose members are all under remove folders keeps one, chosen by
the keep policy: a rule never removes the last copy. Protected folders still come first. The
plan records which rule decided each file (:attr:`GroupPlan.reasons`) and prints it.

Quarantine layout (``--action move --to Q``): a file found under scan root ``/data/photos`` at
``/data/photos/2020/a.jpg`` goes to ``Q/photos/2020/a.jpg``: the root's folder name, then the path
relative to the root. Roots with the same folder name get ``~2``, ``~3``, ... in the order the
report lists them; a root that is a single file goes to ``Q/<file name>``. A move whose folder
in ``Q`` leads elsewhere (a symbolic link into a scanned folder, or out of ``Q``) is refused
(:func:`landing_problem`).

Each folder ``Q/<name>`` holds a hidden marker, ``Q/<name>/.lookalike-root`` (:data:`MARKER`),
naming the scanned folder whose files it holds: the root's path as the report records it,
UTF-8, newline-terminated (written by ``apply`` before the first file lands there). Two reports
of folders named alike (``/x/photos``, ``/y/photos``) would otherwise share ``Q/photos/``, and
an undo of one could put back, or remove, the other's file. A move of another root's files
into a marked folder is refused (:func:`shelf_problem`); a folder without a marker (empty, or
made by an earlier version) takes any.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lookalike.actions.journal import Journal
from lookalike.config import nearest_folder
from lookalike.errors import ConfigError, JournalError, ReportError
from lookalike.grouping.groups import cluster_records
from lookalike.grouping.keep import KeepDecision, KeepFacts, KeepPolicy, capture_moments
from lookalike.model import HASHED, Group, ImageRecord
from lookalike.paths import is_local_file, is_under, name_key, root_names, shown
from lookalike.report.schema import (
    DECISIONS_KIND,
    DECISIONS_SCHEMA_VERSION,
    Report,
    human_bytes,
    plural,
    read_json,
    read_report,
)

__all__ = [
    "ACTIONS",
    "MARKER",
    "Action",
    "Decisions",
    "FileState",
    "FolderRule",
    "FolderRules",
    "GroupPlan",
    "Operation",
    "Plan",
    "SkippedGroup",
    "decide_by_folders",
    "entry_key",
    "file_identity",
    "landing_problem",
    "load_decisions",
    "load_source",
    "marked_root",
    "plan",
    "quarantine_path",
    "quarantine_shelf",
    "read_marker",
    "render_plan",
    "same_root",
    "shelf_problem",
]

Action = Literal["move", "delete", "hardlink", "symlink"]
ACTIONS: tuple[str, ...] = ("move", "delete", "hardlink", "symlink")


Verdict = Literal["keep", "remove"]


@dataclass(frozen=True, slots=True)
class FolderRule:
    """``keep`` or ``remove`` the duplicates under ``folder`` (an absolute path)."""

    verdict: Verdict
    folder: str

    def __str__(self) -> str:
        return f"{self.verdict} under {self.folder}"

    def to_dict(self) -> dict[str, str]:
        """The form a decisions file's ``folder_rules`` and a journal's header hold."""
        return {"folder": self.folder, "rule": self.verdict}


@dataclass(frozen=True, slots=True)
class FolderRules:
    """Folder rules of a plan (see the module docs); empty means none. Build with :meth:`of`."""

    rules: tuple[FolderRule, ...] = ()
    _real: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_real", tuple(os.path.realpath(r.folder) for r in self.rules))

    @classmethod
    def of(cls, keep_in: Iterable[str | os.PathLike[str]] = (),
           remove_in: Iterable[str | os.PathLike[str]] = ()) -> FolderRules:
        """Rules from folders (made absolute), ``keep_in`` ones first.

        Raises:
            ConfigError: a folder given both to keep and to remove.
        """
        keep = [os.path.abspath(os.fspath(d)) for d in keep_in]
        remove = [os.path.abspath(os.fspath(d)) for d in remove_in]
        both = sorted(set(keep) & set(remove))
        if both:
            raise ConfigError(f"folder {both[0]} is given both to keep and to remove; give it "
                              "once")
        return cls(tuple([*(FolderRule("keep", d) for d in dict.fromkeys(keep)),
                          *(FolderRule("remove", d) for d in dict.fromkeys(remove))]))

    @classmethod
    def from_dicts(cls, items: Iterable[dict[str, Any]]) -> FolderRules:
        """Rules from their :meth:`FolderRule.to_dict` form (a decisions file's
        ``folder_rules``). Raises ConfigError when malformed."""
        items = list(items)
        bad = next((i for i in items if not isinstance(i, dict)
                    or i.get("rule") not in ("keep", "remove")
                    or not isinstance(i.get("folder"), str) or not _clean_abs(i["folder"])),
                   None)
        if bad is not None:
            raise ConfigError(f"folder rule {bad!r} is not a rule 'keep' or 'remove' with a "
                              "clean absolute folder")
        return cls.of([i["folder"] for i in items if i["rule"] == "keep"],
                      [i["folder"] for i in items if i["rule"] == "remove"])

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rule_for(self, path: str) -> FolderRule | None:
        """The deepest rule whose folder holds ``path``, or None; a keep rule wins a tie.

        Depths are compared in one space: the real one (symbolic links resolved) when some
        rule holds the file's real path, else the path as given. A keep folder named
        through a link (``--keep-in k``, ``k -> tree/orig``) then beats a remove rule on
        ``tree``, and a keep folder inside a remove folder named through a link beats it,
        whichever name the file was reached by (ranked by the names as typed, or by the
        longer of the two names, the shallower rule could win and files meant to be kept
        were acted on)."""
        real = os.path.realpath(path)
        by_real = [(len(rr), r.verdict == "keep", r)
                   for r, rr in zip(self.rules, self._real, strict=True) if is_under(real, rr)]
        inside = by_real or [(len(r.folder), r.verdict == "keep", r)
                             for r in self.rules if is_under(path, r.folder)]
        return max(inside, key=lambda x: x[:2])[2] if inside else None

    def removes(self, path: str) -> bool:
        """True if the rules let ``path`` be acted on (its deepest rule is ``remove``)."""
        rule = self.rule_for(path)
        return rule is not None and rule.verdict == "remove"

    def to_dicts(self) -> list[dict[str, str]]:
        return [r.to_dict() for r in self.rules]


def _names_rule(rules: FolderRules, rec: ImageRecord) -> FolderRule | None:
    """The rule deciding a file with several names (hard links): removing it removes every
    name, so it is removed only if each name lies under a remove rule; a keep rule on any
    name keeps it."""
    found = [rules.rule_for(p) for p in (rec.path, *rec.aliases)]
    keeps = [r for r in found if r is not None and r.verdict == "keep"]
    return keeps[0] if keeps else (None if None in found else found[0])


def decide_by_folders(group: Group, policy: KeepPolicy, facts: KeepFacts,
                      rules: FolderRules) -> tuple[KeepDecision, dict[str, str]]:
    """Which members of ``group`` the folder ``rules`` keep, and why each member is kept or
    removed (path -> reason). Pure given ``facts`` (see
    :meth:`~lookalike.grouping.keep.KeepPolicy.read_facts`) and the rules' folders.

    Protected members are kept; a member whose deepest rule is ``remove`` is removed; every
    other member is kept: protected ones first, then those under a ``keep`` rule, then the
    rest, each in the policy's order (``keep[0]`` is the target of link actions). Members
    that only unverified embeddings matched may be another photo of the scene: no rule
    removes them. A group always keeps a member its hashes tie to the representative (or a
    protected one): when every such member would go, the policy's keeper stays.
    """
    base = policy.decide(group, facts)
    protected = set(base.protected)
    how = {m.record.path: m.match for m in group.members}
    keep: list[tuple[int, str]] = []  # (class: protected, keep rule, no rule; path)
    remove: list[str] = []
    why: dict[str, str] = {}
    ranked = policy.rank([m.record for m in group.members], facts)
    for rec in ranked:
        rule = None if rec.path in protected else _names_rule(rules, rec)
        if rec.path in protected:
            keep.append((0, rec.path))
            why[rec.path] = "in a protected folder"
        elif how[rec.path] == "embedding":
            keep.append((2, rec.path))
            why[rec.path] = ("matched by embeddings only (not verified): it may be another "
                             "photo of the scene, so no rule removes it")
        elif rec.path in facts.frames and rec.path in base.keep:
            keep.append((2, rec.path))  # the policy spares it: see KeepPolicy.decide
            why[rec.path] = ("it holds several pictures (an animation, pages) and its hash "
                             "sees the first only, so no rule removes it")
        elif rule is not None and rule.verdict == "remove":
            remove.append(rec.path)
            why[rec.path] = f"rule: {rule}"
        else:
            keep.append((1 if rule else 2, rec.path))
            why[rec.path] = f"rule: {rule}" if rule else "no remove rule covers it"
    kept = [p for _, p in sorted(keep, key=lambda x: x[0])]  # stable: policy order within
    # Other shots (KeepPolicy.shots): each capture moment keeps a member, the rules' own if
    # they keep one (a byte copy under a remove rule still goes), else the policy's best.
    # Not when the policy purges leaks or removes every copy: then it keeps none itself.
    if not policy.remove_all and not policy.purges(base.protected, how):
        moments = capture_moments({r.path: facts.taken[r.path] for r in ranked
                                   if r.path in facts.taken and how[r.path] != "embedding"},
                                  facts.exposure)
        held = {moments[p] for p in kept if p in moments}
        for rec in ranked:
            moment = moments.get(rec.path)
            if len(set(moments.values())) > 1 and moment is not None and moment not in held:
                held.add(moment)
                remove.remove(rec.path)
                kept.append(rec.path)
                why[rec.path] = (f"another shot (taken {facts.taken[rec.path]}, by its EXIF), "
                                 "not a copy, so no rule removes it")
    # The policy's keeper (of the hash-matched members first) among those the rules remove.
    last = next((p for p in sorted(base.keep, key=lambda p: how[p] not in HASHED)
                 if how[p] != "embedding" and p in remove), None)
    if last is not None and not any(how[p] in HASHED or (p in protected
                                                         and how[p] != "embedding")
                                    for p in kept):
        remove.remove(last)
        kept.insert(0, last)
        why[last] = ("the last copy: every copy is under a remove folder (members that "
                     "embeddings alone joined do not count), so the keep policy "
                     f"({', '.join(policy.rules)}) keeps this one")
    return KeepDecision(group=group.id, keep=tuple(kept), remove=tuple(sorted(remove)),
                        protected=tuple(p for p in kept if p in protected),
                        reason=why[kept[0]]), why


#: Files that go with a photo of the same name: edits (XMP, Apple's AAE), a Live Photo's
#: video, a camera's thumbnail, Google Takeout's metadata (``IMG_1.jpg.json``).
SIDECAR_SUFFIXES = (".xmp", ".aae", ".mov", ".mp4", ".thm", ".json")


def _sidecar_notes(removed: Sequence[str], kept: Sequence[str],
                   folders: dict[str, tuple[dict[str, list[str]], dict[str, list[str]]]]
                   ) -> list[str]:
    """A note for each removed photo whose sidecar files stay behind (``IMG_1.HEIC`` ->
    ``IMG_1.AAE``, ``IMG_1.MOV``, ``IMG_1.HEIC.xmp``, Takeout's
    ``IMG_1.HEIC.supplemental-metadata.json``): not images, so no scan saw them and no
    action moves them. A sidecar that a kept member of the group shares (by its name's stem,
    ``IMG_1.xmp`` for a kept ``IMG_1.png``) is not mentioned: it stays with that one.
    ``folders`` caches each folder's sidecars by the names they go with (a folder of 100k
    files is listed once, not once per file)."""
    def stems(path: str) -> tuple[str, str]:
        name = os.path.basename(path).lower()
        return name, os.path.splitext(name)[0]

    shared = {(os.path.dirname(k), stems(k)[1]) for k in kept}
    notes = []
    for path in removed:
        folder = os.path.dirname(path)
        if folder not in folders:
            folders[folder] = _sidecars_by_name(folder)
        name, stem = stems(path)
        by_stem, by_start = folders[folder]
        # By its whole name (IMG_1.JPG.json) a sidecar is this file's; by its stem only when
        # no kept file of the same stem shares it.
        found = sorted({*by_stem.get(name, ()), *by_start.get(name, ()),
                        *(by_stem.get(stem, ()) if (folder, stem) not in shared else ())})
        if found:
            where = "stays where it is" if len(found) == 1 else "stay where they are"
            notes.append(f"{path}: {', '.join(found)} beside it {where} (files that go with "
                         "a photo, not images; move them yourself if they should follow it)")
    return notes


def _sidecars_by_name(folder: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The sidecar files of ``folder`` (:data:`SIDECAR_SUFFIXES`), by lower-case stem
    (``img_1`` for ``IMG_1.AAE``, ``img_1.heic`` for ``IMG_1.HEIC.xmp``), and by every name
    that starts them up to a dot (``img_1.heic`` for Takeout's
    ``IMG_1.HEIC.supplemental-metadata.json``: looked up by a photo's whole name only)."""
    by_stem: dict[str, list[str]] = {}
    by_start: dict[str, list[str]] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return by_stem, by_start
    for n in names:
        low = n.lower()
        stem, ext = os.path.splitext(low)
        if ext not in SIDECAR_SUFFIXES:
            continue
        by_stem.setdefault(stem, []).append(n)
        parts = low.split(".")
        for k in range(2, len(parts) - 1):
            by_start.setdefault(".".join(parts[:k]), []).append(n)
    return by_stem, by_start


@dataclass(frozen=True, slots=True, kw_only=True)
class FileState:
    """What the report says a file looked like at scan time."""

    path: str
    size_bytes: int
    mtime_ns: int
    digest: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One file change. ``path`` is the duplicate acted on, with its state at scan time.

    ``keeper`` is the file kept for this group (the link target of ``hardlink``/``symlink``;
    ``None`` under ``--keep none``). ``dst`` is the quarantine path of a ``move``. ``frees`` is
    False for all but one name of a file with several (hard links: its bytes count once) and
    for a file with names outside the scanned folders (acting on it frees no space).
    ``name_of`` is set only when collapsing links: the op removes another name (a hard link)
    of that kept file, which stays under its own name.
    """

    action: Action
    group: int
    path: str
    size_bytes: int
    mtime_ns: int
    digest: str | None = None
    keeper: str | None = None
    dst: str | None = None
    frees: bool = True
    name_of: str | None = None

    @property
    def state(self) -> FileState:
        return FileState(path=self.path, size_bytes=self.size_bytes, mtime_ns=self.mtime_ns,
                         digest=self.digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupPlan:
    """The ops of one group, and every member that must still be unchanged when they run."""

    group: int
    keep: tuple[str, ...]
    members: tuple[FileState, ...]
    operations: tuple[Operation, ...]
    notes: tuple[str, ...] = ()
    #: With folder rules: ``(path, why it is kept or acted on)`` for the files kept and acted
    #: on; else the keep policy's reason for the first file kept.
    reasons: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedGroup:
    """A group that will not be touched, and why."""

    group: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Everything an ``apply`` will do. Build it with :func:`plan`; run it with ``apply``."""

    action: Action
    groups: tuple[GroupPlan, ...]
    skipped: tuple[SkippedGroup, ...]
    roots: tuple[str, ...]
    protect: tuple[str, ...]
    keep: tuple[str, ...]
    to: str | None
    report_path: str
    report_created: str
    already_done: int = 0
    decisions_path: str | None = None
    rules: FolderRules = FolderRules()

    @property
    def operations(self) -> tuple[Operation, ...]:
        return tuple(op for g in self.groups for op in g.operations)

    @property
    def files(self) -> int:
        return sum(len(g.operations) for g in self.groups)

    @property
    def bytes(self) -> int:
        """Bytes the plan frees: each file once, and only if all its names go."""
        return sum(op.size_bytes for g in self.groups for op in g.operations if op.frees)

    @property
    def remove_all(self) -> bool:
        return self.keep == ("none",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decisions:
    """A reviewed decisions file (exported by the HTML review page), checked against its report.

    Format (``schema_version`` 1)::

        {"kind": "lookalike-decisions", "schema_version": 1,
         "report_path": "/abs/report.json", "report_created": "<the report's created>",
         "groups": [{"id": 3, "keep": ["/abs/a.jpg"], "remove": ["/abs/b.jpg"]}],
         "folder_rules": [{"folder": "/abs/Originals", "rule": "keep"},
                          {"folder": "/abs/Exports", "rule": "remove"}]}

    Groups that are absent are left alone; members listed in neither ``keep`` nor ``remove``
    are left alone too. ``folder_rules`` (optional) are the folder rules the decisions were
    made with: the plan shows, for each file, the rule that matches its decision (the
    deepest rule over its path), or "decided in review"; they change no decision.
    """

    path: str
    report: Report
    groups: tuple[KeepDecision, ...]
    rules: FolderRules = FolderRules()


# --------------------------------------------------------------------------- loading sources


def load_decisions(path: str | os.PathLike[str], data: dict[str, Any] | None = None
                   ) -> Decisions:
    """Read a decisions file and the report it names; check one against the other.

    Raises:
        ReportError: the file is malformed, its report is missing or was re-written since
            (``created`` differs), or it names a group or path the report does not have.
    """
    p = os.path.abspath(os.fspath(path))
    if data is None:
        data = _read_json(p)
    version = data.get("schema_version")
    if data.get("kind") != DECISIONS_KIND or type(version) is not int \
            or version != DECISIONS_SCHEMA_VERSION:  # not true, nor 1.0: a hand edit
        raise ReportError(f"{p} is not a lookalike decisions file of schema version "
                          f"{DECISIONS_SCHEMA_VERSION}")
    rp = data.get("report_path")
    if not isinstance(rp, str) or not rp:
        raise ReportError(f"{p}: no report_path; export the decisions again from the review page")
    if not os.path.isabs(rp):
        rp = os.path.join(os.path.dirname(p), rp)
    report = read_report(rp)
    made_for = data.get("report_created")
    if not isinstance(made_for, str) or not made_for:  # None == None matched any such report
        raise ReportError(f"{p}: no report_created (the report it was made for); export the "
                          "decisions again from the review page")
    if report.data.get("created") != made_for:
        raise ReportError(
            f"{p} was made for the report of {data.get('report_created')!r}, but {rp} is from "
            f"{report.data.get('created')!r}; review the new report and export the decisions "
            "again"
        )
    members = {g.id: {m.record.path for m in g.members} for g in report.groups}
    seen: set[int] = set()
    out: list[KeepDecision] = []
    groups = data.get("groups")
    if not isinstance(groups, list):  # missing, or not a list: nothing planned, exit 0
        raise ReportError(f"{p}: 'groups' is not a list of decided groups; export the "
                          "decisions again")
    try:
        for g in groups:
            if not isinstance(g, dict) or "id" not in g:
                raise ReportError(f"{p}: a group is not an object with an 'id' ({g!r:.60}); "
                                  "export the decisions again")
            odd = set(g) - {"id", "keep", "remove"}
            if odd or not {"keep", "remove"} & set(g):
                # A misspelt key ("keeps") was read as an empty list: nothing planned, exit 0.
                raise ReportError(f"{p}: a group has {', '.join(map(repr, sorted(odd)))} "
                                  "where 'keep' and 'remove' lists belong; export the "
                                  "decisions again" if odd else
                                  f"{p}: group {g.get('id')!r} has neither 'keep' nor "
                                  "'remove'; export the decisions again")
            if type(g["id"]) is not int:  # 1.9 was read as group 1
                raise ReportError(f"{p}: a group id {g['id']!r} is not a whole number; export "
                                  "the decisions again")
            gid = g["id"]
            for key in ("keep", "remove"):  # a text would be read letter by letter
                entries = g.get(key, [])
                if not isinstance(entries, list) or not all(isinstance(x, str) for x in entries):
                    raise ReportError(f"{p}: group {gid}'s {key!r} is not a list of paths; "
                                      "export the decisions again")
            keep = list(g.get("keep", []))
            remove = list(g.get("remove", []))
            if gid not in members:
                raise ReportError(f"{p}: group {gid} is not in {rp} (tampered decisions?)")
            if gid in seen:
                raise ReportError(f"{p}: group {gid} is listed twice")
            seen.add(gid)
            for path in (*keep, *remove):
                if path not in members[gid]:
                    raise ReportError(f"{p}: {path!r} is not a member of group {gid} in {rp} "
                                      "(tampered decisions?); export them again")
            both = set(keep) & set(remove)
            if both or len(set(keep)) != len(keep) or len(set(remove)) != len(remove):
                raise ReportError(f"{p}: group {gid} lists a path twice "
                                  f"({sorted(both)[0] if both else 'duplicate entry'})")
            out.append(KeepDecision(group=gid, keep=tuple(keep), remove=tuple(sorted(remove))))
        rules = FolderRules.from_dicts(data.get("folder_rules") or [])
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ReportError(f"{p}: malformed decisions ({type(exc).__name__}: {exc})") from None
    return Decisions(path=p, report=report, groups=tuple(out), rules=rules)


def _read_json(path: str) -> dict[str, Any]:
    data = read_json(path, "the JSON report a scan saved (CSV and text reports cannot be "
                     "applied) or "
                     "an exported decisions file")
    if not isinstance(data, dict):
        raise ReportError(f"{path} is neither a lookalike report nor a decisions file")
    return data


def journal_of(journal: str | os.PathLike[str], source: Report | Decisions) -> Journal:
    """The journal at ``journal`` (read only), checked to be of the report ``source`` is or
    was exported from.

    Raises:
        JournalError: not a journal, or one of another report.
    """
    report = source.report if isinstance(source, Decisions) else source
    j = Journal.open(journal, writable=False)
    if j.header.get("report_created") != report.data.get("created"):
        raise JournalError(f"journal {j.path} belongs to another report; use a new journal "
                           "path")
    return j


def load_source(path: str | os.PathLike[str]) -> Report | Decisions:
    """Open a report or a decisions file, telling them apart by the decisions ``kind`` key."""
    p = os.path.abspath(os.fspath(path))
    data = _read_json(p)
    if data.get("kind") == DECISIONS_KIND:
        return load_decisions(p, data)
    return read_report(p)


# --------------------------------------------------------------------------- path rules


def _owning_root(path: str, roots: Sequence[str]) -> str | None:
    inside = [r for r in roots if is_under(path, r)]
    return max(inside, key=len) if inside else None


#: Bytes of a quarantine path left for the name of the temporary file beside it
#: (``apply._paths``: ``.lookalike-<token>-<seq>.part``).
_HELPER_ROOM = 64


def _path_max(folder: str) -> int:
    """The longest path the file system of ``folder`` takes, in bytes (4096 where it
    cannot say)."""
    try:
        return os.pathconf(nearest_folder(folder), "PC_PATH_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or no answer
        return 4096


def quarantine_path(path: str, roots: Sequence[str], to: str) -> str:
    """Where ``move`` puts ``path``: ``to/<root name>/<path relative to its root>``."""
    root = _owning_root(path, roots)
    if root is None:
        raise ReportError(f"{path} is not under any scanned root")
    name = root_names(roots)[root]
    if path == root:
        return os.path.join(to, name)
    return os.path.join(to, name, os.path.relpath(path, root))


#: The marker file in each quarantine folder ``Q/<name>``: it names the scanned folder whose
#: files that folder holds (see the module docs).
MARKER = ".lookalike-root"

#: More than any path: a marker larger than this is not one lookalike wrote.
_MARKER_MAX = 1 << 16


def quarantine_shelf(path: str, roots: Sequence[str], to: str) -> tuple[str, str] | None:
    """The quarantine folder ``to/<root name>`` that ``path`` is moved into, with that root;
    None for a root that is a single file (it goes to ``to/<name>``, no folder of its own) or
    a path outside every root."""
    root = _owning_root(path, roots)
    if root is None or path == root:
        return None
    return os.path.join(to, root_names(roots)[root]), root


def marked_root(shelf: str) -> str | None:
    """The scanned folder the marker of the quarantine folder ``shelf`` names; None where it
    has no marker, or one cut short (no newline: a run was writing it, or stopped while it
    did; nothing was moved there after it).

    Raises:
        OSError: the marker cannot be read, or is not a regular file (a symbolic link, a
            folder) or not one lookalike wrote (too large).
    """
    raw = read_marker(os.path.join(shelf, MARKER))
    if raw is None or not raw.endswith(b"\n"):
        return None
    return raw[:-1].decode("utf-8", "surrogateescape")


def read_marker(marker: str) -> bytes | None:
    """The bytes of the quarantine marker file ``marker``, never read through a link; None
    where there is none.

    Raises:
        OSError: it cannot be read, or is not a regular file (a symbolic link, a folder) or
            not one lookalike wrote (too large).
    """
    try:
        fd = os.open(marker, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MARKER_MAX:
            raise OSError(errno.EINVAL, "not a marker lookalike wrote", marker)
        return os.read(fd, _MARKER_MAX + 1)
    finally:
        os.close(fd)


def same_root(named: str, root: str) -> bool:
    """Whether a marker naming ``named`` names the scanned folder ``root`` (as the report
    records it, or the same folder by another path)."""
    return named == root or os.path.realpath(named) == os.path.realpath(root)


def shelf_problem(shelf: str, root: str) -> str | None:
    """Why the files of ``root`` may not go into the quarantine folder ``shelf`` (its marker
    names another scanned folder, or cannot be read), or None."""
    try:
        named = marked_root(shelf)
    except OSError as exc:
        return (f"the marker {os.path.join(shelf, MARKER)} of the quarantine folder {shelf} "
                f"cannot be read ({exc.strerror or exc})")
    if named is None or same_root(named, root):
        return None
    return (f"the quarantine folder {shelf} holds the files of another scanned folder, "
            f"{named}")


def landing_problem(dst: str, to: str, real_roots: Sequence[str]) -> str | None:
    """Why a file moved to ``dst`` would not land in the quarantine folder ``to``, or None.

    A folder between ``to`` and ``dst`` may be a symbolic link (made by hand, or by another
    program): one to a scanned folder put the moved copy among the scanned files, where the
    next scan finds it (and a move could land on one of them). Judged by the real path of
    ``dst``'s folder, resolved as far as it exists (what ``os.makedirs`` would go through).
    """
    folder = os.path.dirname(dst)
    real = os.path.realpath(folder)
    inside = next((r for r in real_roots if is_under(real, r)), None)
    if inside is not None:
        where = f"inside the scanned folder {inside}"
    elif not is_under(real, os.path.realpath(to)):
        where = f"outside the quarantine folder {to}"
    else:
        return None
    return f"the quarantine folder {folder} leads to {real}, {where} (a symbolic link?)"


def _clean_abs(path: object) -> bool:
    return (isinstance(path, str) and os.path.isabs(path) and os.path.normpath(path) == path
            and ".." not in path.split(os.sep))


def _check_roots(report: Report) -> tuple[str, ...]:
    roots = report.roots
    if not roots:
        raise ReportError(f"{report.path} records no scan roots; re-run the scan")
    for r in roots:
        if not _clean_abs(r):
            raise ReportError(f"{report.path}: root {r!r} is not a clean absolute path "
                              "(tampered report?); re-run the scan")
    return tuple(roots)


def _escaping(group: Group, real_roots: Sequence[str]) -> str | None:
    """Why ``group`` must be left alone because a name of a member resolves outside the
    scanned folders (a symbolic link followed by the scan points out), or None. Only that
    group is skipped: the rest of the report is acted on."""
    for m in group.members:
        for path in (m.record.path, *m.record.aliases):
            real = os.path.realpath(path)
            if not any(is_under(real, r) for r in real_roots):
                return (f"{path} resolves to {real}, outside the scanned folders (a symbolic "
                        "link points out); lookalike never acts outside them")
    return None


def _check_member(report: Report, group: Group, rec: ImageRecord, roots: Sequence[str],
                  real_roots: Sequence[str]) -> None:
    where = f"{report.path}: group {group.id}"
    if not is_local_file(rec.path, rec.source):
        raise ReportError(f"{where}: {rec.path} is in a tar shard, a Parquet file or an object "
                          "store: actions change local files only (for a dataset, filter "
                          "its rows with the report's paths instead)")
    if rec.source and rec.source in roots and not os.path.isdir(rec.source) \
            and not is_under(rec.path, rec.source):
        # Found through a file list: no scanned folder says where it may be acted on.
        raise ReportError(f"{where}: {rec.path} was read from the file list {rec.source}; "
                          "actions check every path against the scanned folders, and a list "
                          "names none. Scan the folders that hold the files to act on them")
    for path in (rec.path, *rec.aliases):
        if not _clean_abs(path):
            raise ReportError(f"{where}: {path!r} is not a clean absolute path (it has '..' or "
                              "is relative); the report was edited. Re-run the scan")
        if _owning_root(path, roots) is None:
            raise ReportError(f"{where}: {path} is outside the scanned folders "
                              f"{', '.join(roots)}; the report was edited. Re-run the scan")
    if rec.source and (rec.source not in roots or not is_under(rec.path, rec.source)):
        raise ReportError(f"{where}: {rec.path} does not lie in its recorded scan root "
                          f"{rec.source}; the report was edited. Re-run the scan")


def _check_recorded(report: Report, recorded: Any, leak: Any) -> None:
    """Refuse a report whose settings the scan could not have written: the checks against
    hand edits rely on them. Without a threshold (or with one no scan takes) the check that
    a group's members tie together was off, and two merged groups lost every copy of one
    picture; a typo in a recorded protected folder protected nothing; members claiming an
    embedding match in a scan without a model escaped that check.

    Raises:
        ReportError: one of those settings is missing, of the wrong type, or impossible.
    """
    where = f"{report.path}: the report was edited or damaged"
    nbits = next((m.record.hash.nbits for g in report.groups for m in g.members), None)
    for name, value in (("threshold", report.config.get("threshold")),
                        ("leakage threshold", leak.get("threshold") or 0)):
        if nbits is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 0 <= value <= nbits // 2):
            raise ReportError(f"{where} (its {name} {value!r} is not a number of bits from 0 "
                              f"to {nbits // 2}); re-run the scan")
    if not isinstance(recorded, dict):
        raise ReportError(f"{where} (its keep_policy is not an object); re-run the scan")
    for d in recorded.get("protect") or []:
        if not isinstance(d, str) or not _clean_abs(d):
            raise ReportError(f"{where} (its protected path {d!r} is not a clean absolute "
                              "path); re-run the scan")
        if not os.path.exists(d):  # a typo protected nothing; renamed or offline, the same
            raise ReportError(f"{report.path}: the protected folder or reference set {d} it "
                              "records does not exist (renamed, not mounted, or mistyped); "
                              "nothing is planned while what it protects cannot be told. "
                              "Make it reachable again, or re-run the scan")
    if not report.config.get("embed"):
        odd = next((m.record.path for g in report.groups for m in g.members
                    if m.match not in HASHED), None)
        if odd is not None:
            raise ReportError(f"{where} ({odd} says it matched by embeddings, but the scan used "
                              "no embedding model); re-run the scan")
    if not report.config.get("band"):
        odd = next((m.record.path for g in report.groups for m in g.members
                    if m.match == "aligned"), None)
        if odd is not None:
            raise ReportError(f"{where} ({odd} says the verified band joined it, but the scan "
                              "ran without one); re-run the scan")


def _as_recorded(group: Group, decision: KeepDecision, kept: tuple[str, ...],
                 done: Collection[str]) -> KeepDecision:
    """``decision`` with the keep list a journal recorded for ``group`` added (when it names
    members of the group, and differs): what that run kept stays, and so does everything
    ``decision`` keeps but what that run already acted on (``done``): a decisions file's
    keepers, other shots, members only embeddings joined. Only the recorded keepers are
    taken off the remove list; nothing is ever added to it."""
    kept = tuple(dict.fromkeys(kept))
    if not kept or set(kept) == set(decision.keep) or not set(kept) <= set(group.paths):
        return decision
    recorded = set(kept)
    keep = (*kept, *(k for k in decision.keep if k not in recorded and k not in done))
    kept_now, protected = set(keep), set(decision.protected)
    return KeepDecision(group=group.id, keep=keep,
                        remove=tuple(p for p in decision.remove if p not in kept_now),
                        protected=tuple(p for p in keep if p in protected),
                        reason="kept by the run this journal records")


def _edited_keep(group: Group, decision: KeepDecision) -> str | None:
    """Why the report's own keep list of ``group`` cannot be followed, or None.

    A report says which members its keep policy kept; planned with that same policy, the
    plan keeps the same ones unless someone edited the list. Hand edits of a report are not
    read (the decisions file of the review page is how keepers are chosen by hand), and
    acting against the list would remove the file the user meant to keep."""
    listed = group.extra.get("keep")
    if not isinstance(listed, list) or set(listed) == set(decision.keep):
        return None
    said = ", ".join(map(str, listed)) or "nothing"
    policy = ", ".join(decision.keep) or "nothing"
    return (f"the report's keep list was edited, or written by another version of lookalike "
            f"(it keeps {said}; its keep policy keeps {policy} now): the list is not "
            "followed. Re-run the scan, or choose keepers on the review page (lookalike "
            "report) and apply its decisions file")


def _may_fold_case(folder: str) -> bool:
    """Whether the file system of ``folder`` (or of its nearest existing parent) may take
    names that differ only in case for one: looked up, never written (a plan changes
    nothing). A name inside the folder tells its own file system (the folder's own name is
    its parent's, another one at a mount point); without one with letters, the folder's
    name is asked; unknown counts as yes."""
    path = nearest_folder(folder)
    try:
        with os.scandir(path) as entries:
            inside = next((e.name for e in entries if e.name.swapcase() != e.name), None)
    except OSError:
        inside = None
    probes = [(path, inside)] if inside else []
    parent, name = os.path.split(path)
    if name and name.swapcase() != name:
        probes.append((parent, name))
    for where, name in probes:
        try:
            return os.path.samestat(os.stat(os.path.join(where, name)),
                                    os.stat(os.path.join(where, name.swapcase())))
        except OSError:
            return False  # the other case is not there: names keep their case
    return True


#: Distinct hashes up to which :func:`_untied_member` compares every pair.
_DIRECT = 64


def _untied_member(group: Group, threshold: Any) -> str | None:
    """Why ``group``'s hash-matched members are not one group at the report's threshold, or
    None. A scan joins them through pairs within ``threshold`` bits; a member no chain of
    such pairs reaches was put there by hand (or two groups were merged), and the keep
    policy could then keep it and remove every copy of another picture.

    Members with equal hashes are compared once (a group of 10,000 blank images costs one
    comparison). Up to :data:`_DIRECT` distinct hashes each pair is compared (0.05 s for the
    907 groups of 20k small images); past it the scan's own search joins them, so a group of
    thousands of distinct hashes costs seconds, not hours. Reports of old versions without a
    threshold are not checked."""
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        return None
    first = {m.record.hash: m.record for m in group.members if m.match == "hash"}
    hashes = list(first)
    if len(hashes) < 2:
        return None
    if len(hashes) > _DIRECT:
        records = sorted(first.values(), key=lambda r: r.path)
        at = {r.hash: i for i, r in enumerate(records)}
        home = set(next((c for c in cluster_records(records, threshold) if at[hashes[0]] in c),
                        ()))
        reached = {k for k, h in enumerate(hashes) if at[h] in home}
    else:
        reached, todo = {0}, [0]
        while todo:
            a = hashes[todo.pop()]
            for j, b in enumerate(hashes):
                if j not in reached and a - b <= threshold:
                    reached.add(j)
                    todo.append(j)
    if len(reached) == len(hashes):
        return None
    index = {h: k for k, h in enumerate(hashes)}
    far = next(m.record.path for m in group.members
               if m.match == "hash" and index[m.record.hash] not in reached)
    return (f"{far} is not within {threshold} bits of the group's other members, directly or "
            "through others: the report was edited (a member added or two groups merged); "
            "re-run the scan")


def file_identity(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of the file at ``path`` (not following a final symbolic link), or
    None if it cannot be stat'ed. Two paths with one identity are one file."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def entry_key(path: str) -> tuple[int, int, str] | None:
    """The directory entry ``path`` names: its folder's identity and its name, or None. Two paths
    through symbolic links to one folder name one entry; two hard links are two entries."""
    folder, name = os.path.split(path)
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, name)


def _state_problem(state: FileState) -> str | None:
    """Why the file no longer matches the report (stat only), or None."""
    try:
        st = os.lstat(state.path)
    except (FileNotFoundError, NotADirectoryError):
        return f"{state.path} is gone"
    except OSError as exc:
        return f"{state.path} cannot be checked: {exc.strerror or exc}"
    if stat.S_ISLNK(st.st_mode):
        return f"{state.path} is a symbolic link; lookalike only acts on regular files"
    if not stat.S_ISREG(st.st_mode):
        return f"{state.path} is not a regular file"
    if st.st_size != state.size_bytes:
        return (f"{state.path} changed since the scan (size {state.size_bytes} -> "
                f"{st.st_size} bytes)")
    if st.st_mtime_ns != state.mtime_ns:
        return f"{state.path} was modified since the scan"
    return None


def _state(rec: ImageRecord, path: str | None = None) -> FileState:
    """``rec``'s state at scan time, under ``path`` (one of its names; default its own)."""
    return FileState(path=rec.path if path is None else path, size_bytes=rec.size_bytes,
                     mtime_ns=rec.mtime_ns, digest=rec.digest or None)


# --------------------------------------------------------------------------- plan


def plan(source: Report | Decisions | str | os.PathLike[str], *, action: Action,
         keep: str | Iterable[str] | KeepPolicy | None = None,
         protect: Iterable[str | os.PathLike[str]] = (),
         to: str | os.PathLike[str] | None = None,
         journal: str | os.PathLike[str] | None = None,
         collapse_links: bool = False,
         keep_in: Iterable[str | os.PathLike[str]] = (),
         remove_in: Iterable[str | os.PathLike[str]] = ()) -> Plan:
    """Work out which files an action touches. Pure: nothing on disk changes.

    Args:
        source: a report (:class:`~lookalike.report.schema.Report` or its path) or a decisions file
            (:class:`Decisions` or its path; told apart by its ``kind`` key).
        action: ``move`` (to the quarantine folder ``to``), ``delete``, ``hardlink`` or
            ``symlink`` (replace each duplicate by a link to its group's keeper).
        keep: keep rules (see :mod:`lookalike.grouping.keep`) or a :class:`KeepPolicy`.
            Default: the policy recorded in the report, else ``original``. With a decisions
            file only ``none`` is accepted (the file says what to keep; ``none`` allows
            groups whose ``keep`` list is empty).
        protect: folders never touched (added to the report's reference sets, if any).
        to: the quarantine folder of ``move``; it must lie outside every scanned root.
        journal: an existing journal of an interrupted ``apply``; ops it records as done are
            left out (counted in :attr:`Plan.already_done`) and their files are not re-checked.
        collapse_links: also act on the other names (hard links) of each file kept, so that
            one name of it remains (``move``, ``delete`` or ``symlink``). Off by default: two
            names of one file are never duplicates of each other.
        keep_in, remove_in: folder rules (see the module docs): only members under a
            ``remove_in`` folder are acted on, unless a deeper ``keep_in`` folder holds them;
            each group keeps at least one member. Not with a decisions file (it says what
            to keep) nor with keep rule ``none``.

    Returns:
        A :class:`Plan`; groups that cannot be acted on safely are in ``plan.skipped``.

    Raises:
        ReportError: the report or decisions file is unusable or was tampered with (paths
            outside the scanned roots, ``..``, symlinks that point out, unknown members).
        ConfigError: bad options (unknown rule, missing ``--to``, ``--to`` inside a scanned
            folder, ``--keep none`` with a link action or folder rules, a protected or
            rule folder missing, ``keep_in`` without ``remove_in``, a folder in the
            quarantine that leads into a scanned folder or out of the quarantine, or whose
            marker names another scanned folder).
        TypeError: ``source`` is something else, e.g. a scan result not written as a report.

    Cost: per name of every group member, two ``lstat`` calls (identity, then state) and one
    ``realpath``, plus a ``stat`` of the folder of each name kept or acted on (to tell hard
    links from one entry reached through a link), and for a move a ``realpath`` of each
    quarantine folder and a read of each ``Q/<name>`` marker; no other file is read except
    WebP headers under ``prefer-lossless``.
    """
    if action not in ACTIONS:
        raise ConfigError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    if isinstance(source, (str, os.PathLike)):
        source = load_source(source)
    if not isinstance(source, (Report, Decisions)):
        # A ScanResult, most likely: the journal names the report it acted on, so a plan
        # starts from one written to disk.
        raise TypeError(f"plan() takes a report (or its path) or decisions, not "
                        f"{type(source).__name__}; write the scan first: "
                        "lookalike.write_report(result, 'report.json'), then "
                        "lookalike.plan('report.json', ...)")
    decisions = source if isinstance(source, Decisions) else None
    report = source.report if isinstance(source, Decisions) else source
    roots = _check_roots(report)
    real_roots = tuple(os.path.realpath(r) for r in roots)

    leak = report.data.get("leakage") or {}
    reference = [str(r) for r in leak.get("reference", [])]
    for r in reference:
        if r not in roots:
            raise ReportError(f"{report.path}: reference set {r!r} is not a scanned root "
                              "(tampered report?); re-run the scan")
    recorded = report.data.get("keep_policy") or {}
    _check_recorded(report, recorded, leak)
    protect_dirs = [os.path.abspath(os.fspath(p)) for p in protect]
    for d in protect_dirs:
        if not os.path.isdir(d):
            raise ConfigError(f"protected folder {d} does not exist; check the path")
    rules = FolderRules.of(keep_in, remove_in)
    for fr in rules.rules:
        if not os.path.isdir(fr.folder):
            raise ConfigError(f"folder {fr.folder} of the rule '{fr.verdict}' does not exist; "
                              "check the path")
    if rules and not any(r.verdict == "remove" for r in rules.rules):
        raise ConfigError("folder rules act only on files under a remove folder (remove_in); "
                          "to keep a folder's files and let the keep policy decide the rest, "
                          "protect it")
    if rules and decisions is not None:
        raise ConfigError("a decisions file already says which files to keep; pass no folder "
                          "rules")
    if decisions is not None:
        if keep is not None and not isinstance(keep, KeepPolicy) and \
                KeepPolicy.from_spec(keep).rules != ("none",):
            raise ConfigError("a decisions file already says which files to keep; pass no keep "
                              "rules (only 'none' is allowed, to accept groups that keep "
                              "nothing)")
        keep_rules: Any = keep
    else:
        keep_rules = keep if keep is not None else (recorded.get("rules") or None)
        if keep is None and KeepPolicy.from_spec(keep_rules).remove_all:
            # Removing every copy is never inherited: it is asked for at each action.
            raise ConfigError("the report was written with keep rule 'none' (keep no copy of "
                              "any group); to act on every copy, ask for keep rule 'none' "
                              "again; otherwise choose the keep rules to apply")
    policy = KeepPolicy.from_spec(
        keep_rules, protect=[*(recorded.get("protect") or []), *protect_dirs],
        reference=[*reference, *(recorded.get("reference") or [])])
    if rules and policy.remove_all:
        raise ConfigError("folder rules always keep one file per group, so they cannot be "
                          "combined with keep rule 'none'")

    to_dir: str | None = None
    if action == "move":
        if to is None:
            raise ConfigError("a move needs the quarantine folder that receives the "
                              "duplicates (outside the scanned folders)")
        to_dir = os.path.abspath(os.fspath(to))
        real_to = os.path.realpath(to_dir)
        for r, rr in zip(roots, real_roots, strict=True):
            if is_under(to_dir, r) or is_under(real_to, rr):
                raise ConfigError(f"the quarantine folder {to_dir} is inside the scanned "
                                  f"folder {r}; the next scan would find the quarantined "
                                  "files again. Choose a folder outside it")
            if is_under(r, to_dir) or is_under(rr, real_to):
                raise ConfigError(f"the quarantine folder {to_dir} contains the scanned "
                                  f"folder {r}; quarantined files could land on scanned "
                                  "ones. Choose a separate folder")
        for d in policy.protect:
            if is_under(to_dir, d):
                raise ConfigError(f"the quarantine folder {to_dir} is inside the protected folder "
                                  f"{d}; choose a folder outside it")
        # A dry run says what --yes would meet: the folder is made then, so the nearest one
        # that exists must be writable (a read-only mount says so to root too).
        up = nearest_folder(to_dir)
        if not os.access(up, os.W_OK):
            raise ConfigError(f"the quarantine folder {to_dir} cannot be made or written: "
                              f"{up} is not writable; choose another folder")
    elif to is not None:
        raise ConfigError(f"a quarantine folder only applies to action 'move' (the action "
                          f"is {action!r}): leave it out, or move the files")
    if collapse_links and action == "hardlink":
        raise ConfigError("collapsing links removes extra names of kept files; use it with "
                          "the move, delete or symlink action")
    if action in ("hardlink", "symlink") and leak:
        # Linking keeps the leaked picture in the checked set (as a name of the reference
        # file): a leak is purged by moving or deleting it.
        raise ConfigError(f"action {action!r} would keep each leaked image in its set, as a "
                          "link to the reference copy; purge leaks with 'move' or 'delete'")
    if action in ("hardlink", "symlink") and policy.remove_all:
        raise ConfigError(f"action {action!r} links duplicates to the file kept, so it cannot be "
                          "combined with keep rule 'none'; use 'move' or 'delete'")

    done: set[str] = set()
    journal_keeps: dict[int, tuple[str, ...]] = {}
    if journal is not None and os.path.exists(journal):
        record = journal_of(journal, source)
        done, journal_keeps = record.done_paths(action), record.kept_lists(action)

    by_id = {g.id: g for g in report.groups}
    # Each folder's sidecars by name, listed once, for the sidecar notes.
    folders: dict[str, tuple[dict[str, list[str]], dict[str, list[str]]]] = {}
    # A leakage check may match at another threshold than the scan's (find_leakage's own).
    threshold = (leak.get("threshold") if leak.get("threshold") is not None
                 else report.config.get("threshold"))
    why: dict[int, dict[str, str]] = {}  # group -> path -> which rule decided it
    several: frozenset[str] = frozenset()  # files of several pictures (KeepFacts.frames)
    if decisions is not None:
        chosen = [(by_id[d.group], d) for d in decisions.groups]
        if decisions.rules:
            # What no rule removes (as on the page): a file of several pictures, a member
            # only unverified embeddings matched; removing one was the reviewer's own choice.
            read = policy.read_facts(m.record for g, _ in chosen for m in g.members)
            several = read.frames
            why = {d.group: _review_reasons(
                d, decisions.rules, by_id[d.group], several, capture_moments(
                    {m.record.path: read.taken[m.record.path] for m in by_id[d.group].members
                     if m.match != "embedding" and m.record.path in read.taken},
                    read.exposure))
                for d in decisions.groups}
    else:
        facts = policy.read_facts(m.record for g in report.groups for m in g.members)
        several = facts.frames
        if rules:
            chosen = []
            for g in report.groups:
                decision, why[g.id] = decide_by_folders(g, policy, facts, rules)
                chosen.append((g, decision))
        else:
            chosen = [(g, policy.decide(g, facts)) for g in report.groups]

    def untouchable(name: str) -> str | None:
        """Why a name of a file to act on must stay, or None."""
        if policy.is_protected(name):
            return "is in a protected folder and is never touched"
        if rules and not rules.removes(name):
            return "is kept by the folder rules (no remove rule covers it)"
        return None

    # A group the interrupted run already acted on keeps what that run kept: deciding again
    # reads the headers of files it moved away (gone from their place, they say nothing)
    # and could pick one of those, and the group was skipped for good.
    chosen = [(g, _as_recorded(g, d, journal_keeps[g.id], done) if g.id in journal_keeps
               else d) for g, d in chosen]
    for g, _ in chosen:
        for m in g.members:
            _check_member(report, g, m.record, roots, real_roots)

    # Every name's identity, looked up once: what the report calls one file may be one (an
    # earlier version listed a file's paths as members), and a file kept in one group is never
    # acted on in another, under whatever path the other group lists it.
    ids = {p: file_identity(p) for g, _ in chosen for m in g.members
           for p in (m.record.path, *m.record.aliases)}
    kept_ids = {i for _, d in chosen for k in d.keep if (i := ids[k]) is not None}
    groups: list[GroupPlan] = []
    skipped: list[SkippedGroup] = []
    quarantined: dict[str, str] = {}  # the quarantine path (as its drive compares) -> path
    folds = to_dir is not None and _may_fold_case(to_dir)
    path_max = _path_max(to_dir) if to_dir is not None else 0
    landings: dict[str, str | None] = {}  # a quarantine folder -> why no move may land there
    shelves: dict[str, str | None] = {}  # Q/<root name> -> why its root's files may not go in
    already = 0
    for g, decision in chosen:
        recs = {m.record.path: m.record for m in g.members}
        if decisions is not None:
            bad = [p for p in decision.remove if policy.is_protected(p)]
            if bad:
                skipped.append(SkippedGroup(group=g.id, reason=f"{bad[0]} is in a protected "
                                            "folder and is never touched"))
                continue
            if not decision.keep and decision.remove and not policy.remove_all:
                skipped.append(SkippedGroup(group=g.id, reason="the decisions keep no file of "
                                            "this group; use keep rule 'none' to remove "
                                            "every copy"))
                continue
        # Files a remove rule covers but no rule removes (other shots, animations, members
        # only embeddings matched): said, or a rule that removes nothing looks ignored.
        in_force = decisions.rules if decisions is not None else rules
        spared = [f"{p} stays, though under the rule '{rule}': {why[g.id][p]}"
                  for p in decision.keep if g.id in why and "no rule removes it" in
                  why[g.id].get(p, "") and (rule := _names_rule(in_force, recs[p])) is not None
                  and rule.verdict == "remove"]
        if not decision.remove and not collapse_links:
            if spared:
                groups.append(GroupPlan(group=g.id, keep=decision.keep, members=(),
                                        operations=(), notes=tuple(spared)))
            continue
        pending = [p for p in decision.remove if p not in done]
        already += len(decision.remove) - len(pending)
        if not pending and not collapse_links:
            continue
        files = {ids[m.record.path] for m in g.members}
        # A leak purged is a name taken out of its set: a checked set's hard link of a
        # reference file is purged as that name (the reference name keeps the bytes).
        names = collapse_links or bool(leak)
        if None not in files and len(files) == 1 and not (names and decision.keep):
            # One file under several paths (a report of an earlier version, or a leakage
            # check's file linked into two sets): not duplicates. Only collapsing links,
            # which keeps the kept name, may act on such a group.
            skipped.append(SkippedGroup(group=g.id, reason="its members are one file reached "
                                        "by several paths (hard links, symbolic links or "
                                        "overlapping folders), not duplicates; collapsing "
                                        "links removes a kept file's other names"))
            continue
        untied = _untied_member(g, threshold) or _escaping(g, real_roots)
        if untied is not None:
            skipped.append(SkippedGroup(group=g.id, reason=untied))
            continue
        gone = next((k for k in decision.keep if k in done), None)
        if gone is not None:
            skipped.append(SkippedGroup(group=g.id, reason=f"the file it keeps, {gone}, was "
                                        "already acted on by this journal (resumed with another "
                                        "keep policy?)"))
            continue
        targets, notes, reason = _targets(pending, decision.keep, recs, done, ids, kept_ids,
                                          untouchable, collapse_links, names)
        notes = [*spared, *notes]
        if reason is None and not targets:
            if notes:
                groups.append(GroupPlan(group=g.id, keep=decision.keep, members=(),
                                        operations=(), notes=tuple(notes)))
            continue
        involved = [*decision.keep, *targets] if decisions is not None else \
            [*(p for p in recs if p not in done), *(t for t in targets if t not in recs)]
        states = tuple(_state(recs[targets[p][0]] if p in targets else recs[p], p)
                       for p in sorted(set(involved)))
        reason = reason or next((r for r in map(_state_problem, states) if r), None)
        if reason is None and keep is None and decisions is None and not rules \
                and not protect_dirs and g.id not in journal_keeps:
            # After the files' states: a kept file changed since the scan (its header read
            # again) is that, not an edit of the report. Not for a group the journal acted
            # on: it keeps what that run kept too (perhaps given another policy).
            reason = _edited_keep(g, decision)
        if reason:
            skipped.append(SkippedGroup(group=g.id, reason=reason))
            continue
        keeper = decision.keep[0] if decision.keep else None
        ops: list[Operation] = []
        for path, (owner, frees, name_of) in targets.items():
            rec = recs[owner]
            dst = None
            if action == "move":
                assert to_dir is not None
                dst = quarantine_path(path, roots, to_dir)
                if len(os.fsencode(dst)) + _HELPER_ROOM >= path_max:
                    # Refused here: the move (its temporary file beside dst) would fail,
                    # and a failure that cannot be rolled back leaves undo stuck.
                    reason = (f"its quarantine path would be {len(os.fsencode(dst)):,} bytes "
                              f"long: with the {_HELPER_ROOM} its temporary name needs, that "
                              f"reaches the file system's limit of {path_max:,}; choose a "
                              "quarantine folder with a shorter path")
                    break
                folder = os.path.dirname(dst)
                if folder not in landings:
                    landings[folder] = landing_problem(dst, to_dir, real_roots)
                if landings[folder] is not None:
                    raise ConfigError(f"{path} cannot be moved: {landings[folder]}; remove "
                                      "the link, or choose another quarantine folder")
                held = quarantine_shelf(path, roots, to_dir)
                if held is not None and held[0] not in shelves:
                    shelves[held[0]] = shelf_problem(*held)
                    if shelves[held[0]] is not None:
                        raise ConfigError(f"{shelves[held[0]]}; choose another quarantine "
                                          "folder")
                if os.path.lexists(dst):
                    reason = (f"the quarantine already holds {dst}; choose an empty quarantine "
                              "folder")
                    break
                other = quarantined.setdefault(name_key(dst) if folds else dst, path)
                if other != path:
                    reason = (f"{path} and {other} would go to one quarantine path, {dst} "
                              "(names that differ only in case or Unicode form); move one "
                              "of them by hand")
                    break
            elif action in ("hardlink", "symlink"):
                assert keeper is not None
                krec = recs[keeper]
                if not rec.digest or rec.digest != krec.digest:
                    if path == owner:
                        notes.append(f"{path} not linked: its bytes differ from {keeper} "
                                     "(a near duplicate; action 'move' can quarantine it)")
                    continue
                here, there = ids.get(path), ids.get(keeper)
                if action == "hardlink" and here and there and here[0] != there[0]:
                    notes.append(f"{path} not linked: it is on another file system than "
                                 f"{keeper}, and a hard link cannot cross file systems "
                                 "(action 'symlink' can)")
                    continue
            ops.append(Operation(action=action, group=g.id, path=path,
                                 size_bytes=rec.size_bytes, mtime_ns=rec.mtime_ns,
                                 digest=rec.digest or None, keeper=keeper, dst=dst,
                                 frees=frees, name_of=name_of))
        if reason:
            skipped.append(SkippedGroup(group=g.id, reason=reason))
            continue
        if action in ("move", "delete"):
            notes.extend(_sidecar_notes([op.path for op in ops], decision.keep, folders))
        joined = [m.record.path for m in g.members if m.match not in HASHED
                  and m.record.path in decision.keep and m.record.path not in decision.protected]
        if joined and decisions is None:
            notes.append(f"also kept: {plural(len(joined), 'member')} that embeddings joined "
                         "(a crop, screenshot or other edit of the kept file, or its "
                         "original): no keep rule tells which is the original; choose on the "
                         "review page")
        reasons: tuple[tuple[str, str], ...] = ()
        if g.id in why:
            owners = {op.path: targets[op.path][0] for op in ops}
            reasons = tuple((p, why[g.id][owners.get(p, p)])
                            for p in (*decision.keep, *owners) if owners.get(p, p) in why[g.id])
        elif decision.keep and decision.reason:  # the keep policy's, and why the others stay
            how = {m.record.path: m.match for m in g.members}
            taken = facts.taken if decisions is None else {}
            also = {k: "in a protected folder" if k in decision.protected else
                    "joined by embeddings: no keep rule tells which is the original"
                    if how.get(k, "hash") not in HASHED else
                    "it holds several pictures, and its hash sees the first only"
                    if k in several else
                    f"another shot (taken {taken[k]}, by its EXIF), not a copy"
                    if k in taken and taken[k] != taken.get(decision.keep[0]) else ""
                    for k in decision.keep[1:]}
            reasons = ((decision.keep[0], decision.reason),
                       *((k, r) for k, r in also.items() if r))
        groups.append(GroupPlan(group=g.id, keep=decision.keep, members=states,
                                operations=tuple(ops), notes=tuple(notes), reasons=reasons))
    return Plan(action=action, groups=tuple(groups), skipped=tuple(skipped), roots=roots,
                protect=policy.protect, keep=policy.rules, to=to_dir, report_path=report.path,
                report_created=str(report.data.get("created", "")), already_done=already,
                decisions_path=decisions.path if decisions is not None else None,
                rules=decisions.rules if decisions is not None else rules)


def _review_reasons(decision: KeepDecision, rules: FolderRules, group: Group,
                    several: frozenset[str],
                    moments: Mapping[str, tuple[str, str, str]] | None = None
                    ) -> dict[str, str]:
    """Why each file of a reviewed group is kept or removed: the folder rule that agrees with
    its decision (judged by all the file's names, as the page and ``--remove-in`` judge), else
    the review. A rule removes no file of ``several`` pictures, no member only unverified
    embeddings matched, and no other shot whose capture moment (``moments``,
    :func:`~lookalike.grouping.keep.capture_moments`) no other kept file holds: removing
    one is the review's decision."""
    members = {m.record.path: m for m in group.members}
    moments = moments or {}
    several_moments = len(set(moments.values())) > 1

    def only_one_of_its_moment(path: str) -> bool:
        return several_moments and path in moments and not any(
            moments.get(k) == moments[path] for k in decision.keep if k != path)

    shots = {p for p in (*decision.keep, *decision.remove) if only_one_of_its_moment(p)}
    why = {}
    for path in (*decision.keep, *decision.remove):
        m, removed = members[path], path in decision.remove
        rule = _names_rule(rules, m.record)
        spares = path in several or path in shots or m.match == "embedding"
        if rule is not None and rule.verdict == "remove" and spares and not removed:
            why[path] = ("no rule removes it: " + (
                "it holds several pictures" if path in several else "another shot (its EXIF "
                "names another capture moment)" if path in shots else
                "matched by embeddings only"))
        elif rule is not None and (rule.verdict == "remove" and not spares) == removed:
            why[path] = f"rule: {rule}"
        else:
            why[path] = "decided in review"
    return why


def _targets(pending: Sequence[str], keep: Sequence[str], recs: dict[str, ImageRecord],
             done: set[str], ids: dict[str, tuple[int, int] | None],
             kept_ids: set[tuple[int, int]], untouchable: Callable[[str], str | None],
             collapse: bool = False, names: bool = False
             ) -> tuple[dict[str, tuple[str, bool, str | None]], list[str], str | None]:
    """Every name to act on for the members ``pending`` of one group.

    ``ids`` holds the identity of every name of the group (:func:`file_identity`);
    ``untouchable`` says why a name must stay (protected, or kept by folder rules), or None.
    Returns ``(targets, notes, reason)``: ``targets`` maps each path to act on to the member
    it belongs to, whether its op frees the file's bytes, and (collapsing links only) the
    kept file it is another name of; ``reason`` says why the whole group must be skipped. A
    member that is the same file as a kept one is dropped with a note (acted on as a name
    when ``names``: collapsing links, or purging leaks); a member's other
    names (hard links) are acted on with it, once per directory entry (a path through a
    symbolic link to the same folder names the same entry).
    """
    targets: dict[str, tuple[str, bool, str | None]] = {}
    notes: list[str] = []
    entries: set[object] = set()
    names_of: dict[tuple[int, int], list[str]] = {}
    own_kept = {i: k for k in keep if (i := ids[k]) is not None}
    for k in keep:
        entries.add(entry_key(k) or k)
    if collapse:
        for k in keep:
            for name in (a for a in recs[k].aliases if a not in done):
                if ids[name] == ids[k] and untouchable(name) is None:
                    entry = entry_key(name) or name
                    if entry not in entries:
                        entries.add(entry)
                        targets[name] = (k, False, k)
    for path in pending:
        if path in targets:
            continue  # already a name to collapse
        ident = ids[path]
        if ident is None:
            targets[path] = (path, True, None)  # gone or unreadable: the state check skips it
            continue
        if ident in own_kept:
            entry = entry_key(path) or path
            if (collapse or names) and entry not in entries:
                entries.add(entry)
                targets[path] = (own_kept[ident], False, own_kept[ident])
            elif entry in entries:
                notes.append(f"{path} is a kept file reached through a symbolic link; not "
                             "touched")
            elif not collapse:
                notes.append(f"{path} is a hard link of the kept {own_kept[ident]} (one file, "
                             "two names); not touched. To remove this name, collapse links")
            continue
        if ident in kept_ids:
            return {}, notes, (f"{path} is kept in another group (or is the same file as a "
                               "file kept there); acting on it could leave that group empty")
        for name in (path, *(a for a in recs[path].aliases if a not in done)):
            if name != path and os.path.islink(name):
                notes.append(f"{name} is a symbolic link to {path}; it is left as it is "
                             "and will point to a missing file")
                continue
            if name != path and ids[name] != ident:
                now = "is gone" if ids[name] is None else "is now a different file"
                return {}, notes, f"{name}, recorded as another name of {path}, {now}"
            stays = untouchable(name)
            if stays:
                return {}, notes, f"{name}, a name of {path}, {stays}"
            entry = entry_key(name) or name
            if entry in entries:
                continue  # the same directory entry, reached through a symbolic link
            entries.add(entry)
            names_of.setdefault(ident, []).append(name)
            targets[name] = (path, False, None)
    for same in names_of.values():  # the names of one file
        try:
            links = os.lstat(same[0]).st_nlink
        except OSError:
            continue  # the state check skips the group
        if links > len(same):
            notes.append(f"{same[0]} has {links - len(same)} more hard link(s) outside what "
                         "is acted on: its bytes are not freed")
        else:
            targets[same[0]] = (targets[same[0]][0], True, None)
    return targets, notes, None


# --------------------------------------------------------------------------- rendering


def render_plan(p: Plan, *, dry_run: bool = True, limit: int | None = None) -> str:
    """The plan for humans: one line per operation under its group's keeper, then totals.
    With ``limit``, the first ``limit`` groups only, and how many more there are (a plan of
    10,000 files is 15,000 lines); every skipped group is always listed."""
    verb = {"move": "move", "delete": "delete", "hardlink": "hardlink", "symlink": "symlink"}
    how = (f"as decided in {p.decisions_path}" if p.decisions_path else ", ".join(p.keep))
    lines = [f"plan: {p.action} duplicates from {shown(p.report_path)}"
             + (f" into {shown(p.to)}" if p.to else "") + f" (keep: {shown(how)})"]
    if p.protect:
        lines.append(f"protected, never touched: {', '.join(map(shown, p.protect))}")
    if p.rules:
        lines.append(f"folder rules: {'; '.join(shown(str(r)) for r in p.rules.rules)}"
                     + ("" if p.decisions_path else " (only files under a remove folder are "
                        "acted on; every group keeps at least one file)"))
    listed = [g for g in p.groups if g.operations or g.notes]
    for g in listed[:limit]:
        why = dict(g.reasons)
        if why:  # one line per file kept, saying why where a rule or the policy said
            lines.append(f"group {g.group}:")
            lines.extend(f"  {'keep':<8} {shown(k)}" + (f"  ({shown(why[k])})" if k in why
                                                         else "") for k in g.keep)
        else:
            kept = ", ".join(map(shown, g.keep)) if g.keep else "nothing (--keep none)"
            lines.append(f"group {g.group}: keep {kept}")
        for op in g.operations:
            if op.action == "move":
                assert op.dst is not None  # plan() gives every move its quarantine path
                target = f" -> {shown(op.dst)}"
            elif op.action in ("hardlink", "symlink"):
                assert op.keeper is not None  # plan() links to a kept file (never keep none)
                target = f" -> {shown(op.keeper)}"
            else:
                target = ""
            if op.name_of:
                size = f"another name of the kept {shown(op.name_of)}"
            else:
                size = human_bytes(op.size_bytes) if op.frees else "another name: counted once"
                if op.path in why:
                    size += f"; {shown(why[op.path])}"
            lines.append(f"  {verb[op.action]:<8} {shown(op.path)}{target}  ({size})")
        for note in g.notes:
            lines.append(f"  note: {shown(note)}")
    hidden = listed[limit:] if limit is not None else []
    if hidden:
        files = sum(len(g.operations) for g in hidden)
        lines.append(f"... {plural(len(hidden), 'more group')} ({plural(files, 'file')}) not "
                     "shown here; send the output to a file or a pager to see them all")
    # Every skip, always: why a group is left alone is what a user must not miss.
    for s in p.skipped:
        lines.append(f"skip group {s.group}: {shown(s.reason)}; nothing in it will be touched")
    groups = sum(1 for g in p.groups if g.operations)
    total = (f"total: {plural(p.files, 'file')}, {human_bytes(p.bytes)} ({p.bytes} bytes) in "
             f"{plural(groups, 'group')}; {plural(len(p.skipped), 'group')} skipped")
    if p.already_done:
        total += f"; {plural(p.already_done, 'file')} already done by the journal"
    lines.append(total)
    if p.action == "delete":
        lines.append("note: delete cannot be undone; --action move --to DIR keeps an undo")
    elif p.action in ("hardlink", "symlink") and p.files:
        lines.append("note: each replaced copy is kept in JOURNAL.backup/ so that undo can "
                     "restore it; its space is freed only once that folder is deleted")
    if dry_run:
        lines.append("dry run: nothing was changed; add --yes to apply this plan (files were "
                     "checked by size and modification time; --yes also checks each one's "
                     "SHA-256 before acting)")
    return "\n".join(lines) + "\n"
