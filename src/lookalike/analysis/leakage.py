"""Cross-set (train/test leakage) mode: which images of one split have near duplicates in another.

Every scan root is a *set* (a split: ``train/``, ``val/``, ``test/``). One or more of them are
the *reference* (usually the training set). :func:`find_leakage` keeps only the matches that
cross sets:

* ``leaks``: every image outside the reference with a near duplicate (within the scan's
  threshold, or the same bytes/pixels; or joined by the scan's verified ``band`` or its
  verified embeddings) in the reference, with those matches;
* ``overlap``: the split-overlap matrix, ``overlap[a][b]`` = images of set ``a`` with a match in
  set ``b`` (the diagonal counts images with a duplicate in their own set);
* ``purge``: the non-reference files to remove so that no evaluation image has a duplicate in
  the reference (the leaking images, but those only unverified embeddings matched);
* ``unverified``: the leaking images only unverified embedding matches (``--no-verify``) tie
  to the reference: suspects to review, perhaps another photo of the scene, so not purged
  (the keep policy never removes what only they matched);
* ``groups``: one group per leaking image (that image plus its reference matches), the form
  ``lookalike apply`` acts on. Reference sets are recorded in the report and are protected:
  actions never touch them, so ``lookalike apply report.json --action move --to Q`` moves
  exactly the purge list.

Uses the hashes of one scan, so it works with the hash cache: a large training set is read
once and later scans only hash what changed.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lookalike.errors import ConfigError
from lookalike.grouping.groups import group_kind, near_pairs
from lookalike.inputs.walk import named_paths
from lookalike.model import Group, ImageRecord, Member, match_text
from lookalike.paths import is_local_file, is_under, overlap, root_names, shown

if TYPE_CHECKING:
    from lookalike.pipeline import ScanResult

__all__ = ["Leak", "LeakMatch", "Leakage", "SplitSet", "check_sets", "find_leakage",
           "restrict_to_leakage"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitSet:
    """One scanned root. ``leaked`` counts its images with a match in the reference."""

    name: str
    root: str
    reference: bool
    images: int
    leaked: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class LeakMatch:
    """A reference image that matches a leaking image, ``distance`` bits away; ``match``
    says how (:data:`~lookalike.model.MATCH_KINDS`), ``similarity`` is the embeddings'
    cosine similarity when the pair matched by them."""

    path: str
    set: str
    distance: int
    match: str = "hash"
    similarity: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Leak:
    """An image outside the reference with near duplicates in it (closest first).
    ``in_reference``: the path leads into a reference set through a link (a linked folder,
    or a link to a reference file): apply leaves it alone as protected, so it is not on the
    purge list (remove the link instead; the text summary says so)."""

    path: str
    set: str
    matches: tuple[LeakMatch, ...]
    in_reference: bool = False

    @property
    def unverified(self) -> bool:
        """Whether only unverified embedding matches (``--no-verify``) tie it to the reference:
        a suspect, not on the purge list."""
        return all(m.match == "embedding" for m in self.matches)


@dataclass(frozen=True, slots=True, kw_only=True)
class Leakage:
    """The cross-set result. See the module docs for the meaning of each field."""

    threshold: int
    band: int = 0  # the scan's verified band (0: none), named by the text summary
    sets: tuple[SplitSet, ...]
    leaks: tuple[Leak, ...]
    overlap: tuple[tuple[int, ...], ...]
    groups: tuple[Group, ...]

    @property
    def reference(self) -> tuple[str, ...]:
        """The reference roots (protected from every action)."""
        return tuple(s.root for s in self.sets if s.reference)

    @property
    def warnings(self) -> tuple[str, ...]:
        """A line for each set that holds no readable image: nothing was compared with it
        (a split not filled yet, a mistyped folder), which is no pass."""
        return tuple(empty_set_warning(s.name, s.root) for s in self.sets if not s.images)

    @property
    def purge(self) -> tuple[str, ...]:
        """Non-reference files to remove: every leaking image, in path order, but a path
        that leads into a reference set (:attr:`Leak.in_reference`) and a suspect
        (:attr:`unverified`). The keep policy decides the same (it purges a group whose
        reference member matched otherwise than by an unverified embedding), so ``apply``
        and ``--format paths`` act on exactly this list."""
        return tuple(leak.path for leak in self.leaks
                     if not leak.in_reference and not leak.unverified)

    @property
    def unverified(self) -> tuple[str, ...]:
        """The leaking images only unverified embedding matches tie to the reference
        (:attr:`Leak.unverified`), in path order: suspects to review, never purged (but
        those that lead into the reference, listed as such)."""
        return tuple(leak.path for leak in self.leaks
                     if leak.unverified and not leak.in_reference)

    def to_dict(self) -> dict[str, Any]:
        """The ``leakage`` section of the JSON report."""
        return {
            "reference": list(self.reference),
            "threshold": self.threshold,
            "sets": [{"name": s.name, "root": s.root, "reference": s.reference,
                      "images": s.images, "leaked": s.leaked} for s in self.sets],
            "overlap": {"sets": [s.name for s in self.sets],
                        "matrix": [list(row) for row in self.overlap]},
            "matches": [{"path": lk.path, "set": lk.set,
                         **({"in_reference": True} if lk.in_reference else {}),
                         "matches": [{"path": m.path, "set": m.set, "distance": m.distance,
                                      "match": m.match, "similarity": m.similarity}
                                     for m in lk.matches]} for lk in self.leaks],
            "purge": list(self.purge),
            # Added later: a report of an earlier version lacks the key (read it as []).
            "unverified": list(self.unverified),
            "warnings": list(self.warnings),
        }

    def render_text(self, *, max_items: int | None = 20) -> str:
        """A human summary: leaks per set, the worst matches, and the overlap matrix (3+ sets)."""
        ref = ", ".join(s.name for s in self.sets if s.reference)
        band = f" (verified band to {self.band})" if self.band else ""
        lines = [f"leakage against the reference ({ref}), threshold {self.threshold} bits"
                 f"{band}:"]
        suspects: dict[str, int] = defaultdict(int)
        for lk in self.leaks:
            suspects[lk.set] += lk.unverified and not lk.in_reference  # as in .unverified
        for s in self.sets:
            if not s.reference and s.images:
                some = (f" ({suspects[s.name]} only by unverified embeddings)"
                        if suspects[s.name] else "")
                lines.append(f"  {s.name}: {s.leaked} of {s.images} images have a near "
                             f"duplicate in the reference{some}")
        lines += [f"  {w}" for w in self.warnings]
        for lk in self.leaks if max_items is None else self.leaks[:max_items]:
            best = lk.matches[0]
            more = f" (+{len(lk.matches) - 1} more)" if len(lk.matches) > 1 else ""
            how = match_text(best.match, best.distance, best.similarity)
            lines.append(f"  {shown(lk.path)}  ~  {shown(best.path)} ({how}){more}")
        if max_items is not None and len(self.leaks) > max_items:
            lines.append(f"  ... {len(self.leaks) - max_items} more in the report")
        if len(self.sets) > 2:
            names = [s.name for s in self.sets]
            width = max(len(n) for n in names) + 2
            lines.append("split overlap (images in ROW with a near duplicate in COLUMN):")
            lines.append(" " * width + "".join(f"{n:>{width}}" for n in names))
            for name, row in zip(names, self.overlap, strict=True):
                lines.append(f"{name:<{width}}" + "".join(f"{v:>{width}}" for v in row))
        sources = {m.record.path: m.record.source for g in self.groups for m in g.members}
        inside = sum(1 for p in self.purge if not is_local_file(p, sources.get(p)))
        lines.append(f"purge list: {len(self.purge)} files (moving them to a quarantine "
                     "folder, undoably, takes them out of the checked sets)" if not inside else
                     f"purge list: {len(self.purge)} images, {inside} of them inside tar "
                     "shards, Parquet files or URLs, which are not moved: write those inputs "
                     "again without them")
        linked = [lk.path for lk in self.leaks if lk.in_reference]
        if linked:
            lines.append(f"not on it: {len(linked)} leak(s) that lead into the reference "
                         f"through a link (apply leaves them alone; remove the link instead), "
                         f"e.g. {shown(linked[0])}")
        if self.unverified:
            lines.append(f"not on it: {len(self.unverified)} suspect(s) that only unverified "
                         "embeddings matched (verification off; perhaps another photo of the "
                         f"scene: review them), e.g. {shown(self.unverified[0])}")
        return "\n".join(lines) + "\n"


def empty_set_warning(name: str, root: str) -> str:
    """What a leakage report says of a set that holds no readable image."""
    return (f"warning: {name} ({shown(root)}) holds no readable images: nothing was compared "
            "with it")


def check_sets(reference: Iterable[str | os.PathLike[str]],
               others: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[str]]:
    """Validate the sets of a leakage scan before any work; return them as absolute paths.

    Raises:
        ConfigError: no reference, no other set, or two sets that overlap (one inside the
            other), which would make "which split is this file in" ambiguous.
    """
    # A folder named twice is one set (as a scan takes it), not two that overlap.
    ref = list(dict.fromkeys(os.path.abspath(p) for p in named_paths(reference)))
    rest = list(dict.fromkeys(os.path.abspath(p) for p in named_paths(others)))
    both_ways = next((p for p in rest if p in ref), None)
    if both_ways is not None:
        raise ConfigError(f"{both_ways} is given as a reference set and as a set to check; "
                          "name it once")
    if not ref:
        raise ConfigError("leakage mode needs at least one reference set (e.g. train/)")
    if not rest:
        raise ConfigError("give the sets to check against the reference, e.g. test/ and "
                          "val/")
    both = overlap(list(enumerate([*ref, *rest])))  # each set its own owner
    if both:
        raise ConfigError(f"the sets {both[0][1]} and {both[1][1]} overlap; give separate "
                          "folders (one per split)")
    return ref, rest


def find_leakage(scan: ScanResult | Sequence[ImageRecord],
                 reference: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                 threshold: int | None = None, roots: Sequence[str] | None = None) -> Leakage:
    """Find the images outside ``reference`` that have near duplicates inside it.

    Args:
        scan: a :class:`~lookalike.pipeline.ScanResult` of all the sets scanned together, or
            its records (each :class:`~lookalike.model.ImageRecord` knows its ``source`` root).
        reference: the reference root (as given to the scan), or several.
        threshold: max Hamming distance in bits; default: the scan's threshold (required
            when passing records).
        roots: every set's root, so empty sets are listed too; default: the scan's roots, or
            the records' sources.

    Returns:
        A :class:`Leakage`.

    Raises:
        ConfigError: a reference root that was not scanned, no other set, or no threshold.

    A scan with embeddings also reports its :attr:`~lookalike.pipeline.ScanResult.embedding_matches`
    that cross sets; a verified (or ``aligned``) one also ties the images hashes tie to
    either end, since the scan verified one pair between their hash groups
    (:func:`_through_links`).

    Cost: one exact Hamming search over all images (:func:`lookalike.grouping.groups.near_pairs`).
    """
    from lookalike.pipeline import ScanResult

    embedded: dict[tuple[str, str], tuple[str, float | None]] = {}
    band = 0
    if isinstance(reference, str | os.PathLike):
        reference = [reference]  # one set: not the characters of its name
    if not isinstance(scan, ScanResult) and not (
            isinstance(scan, Sequence) and all(isinstance(r, ImageRecord) for r in scan)):
        raise ConfigError(f"find_leakage() takes a ScanResult or a list of ImageRecords, not "
                          f"{type(scan).__name__}")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int)
                                  or threshold < 0):
        raise ConfigError(f"threshold {threshold!r} is not a number of bits >= 0")
    if isinstance(scan, ScanResult) and scan.records and all(
            "#" in r.path and not os.path.isabs(r.path) for r in scan.records[:1]):
        raise ConfigError("this is the scan of a dataset's splits (its rows are split#index, "
                          "not files): the leaks between its splits are in "
                          "lookalike.dedupe_dataset(dataset).leaks")
    nbits = next((r.hash.nbits for r in (scan if isinstance(scan, Sequence)
                                          else scan.records)), None)
    if threshold is not None and nbits is not None and threshold > nbits // 2:
        raise ConfigError(f"threshold {threshold} is more than half the {nbits} bits of the "
                          "hashes: unrelated pictures would match")
    if isinstance(scan, Sequence):
        records = list(scan)
        if threshold is None:
            raise ConfigError("find_leakage(records, ...) needs threshold=")
    else:
        records = list(scan.records)
        threshold = scan.config.resolved_threshold if threshold is None else threshold
        embedded = scan.embedding_matches
        band = scan.config.resolved_band
        roots = roots if roots is not None else scan.roots
    if roots is None:
        roots = list(dict.fromkeys(r.source for r in sorted(records, key=lambda r: r.path)))
    roots = list(dict.fromkeys(os.path.abspath(r) for r in roots))
    ref = [os.path.abspath(os.fspath(p)) for p in reference]
    missing = [r for r in ref if r not in roots]
    if missing:
        inside = next((root for root in roots if is_under(missing[0], root)), None)
        if inside is not None:
            raise ConfigError(f"the reference {missing[0]} was scanned inside {inside}, not "
                              "as a set of its own; scan each split as its own path")
        raise ConfigError(f"the reference {missing[0]} was not scanned; scan it together with "
                          "the other sets")
    if not ref or len(ref) == len(roots):
        raise ConfigError("leakage needs a reference set and at least one other set")
    ref_set = set(ref)
    real_refs = [os.path.realpath(r) for r in ref]
    # A file with names in several sets (hard links, or a path through a link) is in each of
    # them: it gets one record per set, so the leak it is shows (at distance 0).
    expanded: list[ImageRecord] = []
    for r in records:
        sets_seen, own, elsewhere = {r.source}, [], []
        for alias in r.aliases:
            root = next((x for x in roots if is_under(alias, x)), r.source)
            if root in sets_seen:
                own.append(alias)
            else:
                sets_seen.add(root)
                elsewhere.append(replace(r, path=alias, source=root, aliases=()))
        expanded.append(replace(r, aliases=tuple(own)) if elsewhere else r)
        expanded.extend(elsewhere)
    records = expanded
    names = root_names(roots)
    recs = sorted(records, key=lambda r: r.path)
    index = {root: k for k, root in enumerate(roots)}

    def set_index(source: str) -> int:
        # A folder's record comes from the folder; a tar shard's or Parquet file's found in a
        # folder given as the set comes from the shard (FILE#name).
        if source in index:
            return index[source]
        return next((k for root, k in index.items() if is_under(source, root)), -1)

    set_of = [set_index(r.source) for r in recs]
    if -1 in set_of:
        bad = recs[set_of.index(-1)]
        raise ConfigError(f"{bad.path} comes from {bad.source!r}, which is not a scanned set")
    # (i, j) -> (distance, how, similarity); hash matches first, embeddings add the rest.
    near = near_pairs(recs, threshold)
    pairs: dict[tuple[int, int], tuple[int, str, float | None]] = {
        pair: (d, "hash", None) for pair, d in near.items()}
    if embedded:  # the scan's embedding matches (ScanResult.embedding_matches)
        at = {r.path: k for k, r in enumerate(recs)}
        links = []
        for (pa, pb), (how, sim) in embedded.items():
            if pa in at and pb in at:
                i, j = sorted((at[pa], at[pb]))
                pairs.setdefault((i, j), (recs[i].hash - recs[j].hash, how, sim))
                links.append((i, j, how))
        pairs.update(_through_links(recs, near, links, pairs))

    hits: dict[tuple[int, int], set[int]] = defaultdict(set)  # (set a, set b) -> images of a
    leak_matches: dict[int, list[tuple[int, tuple[int, str, float | None]]]] = defaultdict(list)
    for (i, j), m in pairs.items():
        a, b = set_of[i], set_of[j]
        hits[(a, b)].add(i)
        hits[(b, a)].add(j)
        ra, rb = roots[a] in ref_set, roots[b] in ref_set
        if rb and not ra:
            leak_matches[i].append((j, m))
        if ra and not rb:
            leak_matches[j].append((i, m))
    n = len(roots)
    overlap = tuple(tuple(len(hits.get((a, b), ())) for b in range(n)) for a in range(n))
    per_set = [0] * n
    for i in leak_matches:
        per_set[set_of[i]] += 1
    sizes = [0] * n
    for s in set_of:
        sizes[s] += 1
    sets = tuple(SplitSet(name=names[r], root=r, reference=r in ref_set, images=sizes[k],
                          leaked=per_set[k]) for k, r in enumerate(roots))

    leaks: list[Leak] = []
    groups: list[Group] = []
    for i in sorted(leak_matches, key=lambda i: recs[i].path):
        # Closest first: hash matches by distance, then embedding matches by similarity.
        found = sorted(leak_matches[i], key=lambda jf: (
            jf[1][1] != "hash", jf[1][0] if jf[1][1] == "hash" else -(jf[1][2] or 0),
            recs[jf[0]].path))
        matches = tuple(LeakMatch(path=recs[j].path, set=names[roots[set_of[j]]], distance=d,
                                  match=how, similarity=sim) for j, (d, how, sim) in found)
        leaks.append(Leak(path=recs[i].path, set=names[roots[set_of[i]]], matches=matches,
                          in_reference=_leads_into(recs[i].path, real_refs)))
        # The leaking image is the representative, so every distance is a real match distance.
        members = (Member(recs[i], 0), *(Member(recs[j], d, how, sim)
                                         for j, (d, how, sim) in found))
        groups.append(Group(id=len(groups) + 1, members=members, representative=recs[i].path,
                            kind=group_kind(members)))
    return Leakage(threshold=threshold, band=band, sets=sets, leaks=tuple(leaks),
                   overlap=overlap, groups=tuple(groups))


def _through_links(recs: Sequence[ImageRecord], near: Mapping[tuple[int, int], int],
                   links: Iterable[tuple[int, int, str]],
                   pairs: Mapping[tuple[int, int], tuple[int, str, float | None]]
                   ) -> dict[tuple[int, int], tuple[int, str, float | None]]:
    """The pairs a verified (or ``aligned``) link (i, j) joins besides itself: i and each
    record hashes tie to it directly, with j and each record hashes tie to j directly; each
    with its own distance, the link's kind and (``verified``) the two embeddings' cosine
    similarity. Pairs ``pairs`` holds already stay as they are, but an unverified embedding
    match, which a verified join outranks.

    The scan verifies one pair between two hash groups (the most similar that passes,
    :func:`lookalike.grouping.embedded.to_verify`): a test crop joined to a val copy of a
    train photo (the val copy sorting first) would otherwise leak nowhere, though the join
    ties it to the train photo as firmly."""
    tied: dict[int, list[int]] = defaultdict(list)
    for a, b in near:
        tied[a].append(b)
        tied[b].append(a)
    out: dict[tuple[int, int], tuple[int, str, float | None]] = {}
    for i, j, how in links:
        if how == "embedding":
            continue  # unverified: it joins no more than its own pair
        for a in (i, *tied[i]):
            for b in (j, *tied[j]):
                key = (a, b) if a < b else (b, a)
                old = pairs.get(key)
                if a != b and key not in out and (old is None or old[1] == "embedding"):
                    sim = _cosine(recs[a], recs[b]) if how == "verified" else None
                    out[key] = (recs[a].hash - recs[b].hash, how, sim)
    return out


def _cosine(a: ImageRecord, b: ImageRecord) -> float | None:
    """The cosine similarity of two records' embeddings, rounded as a group member's is
    (None when one has none)."""
    if a.embedding is None or b.embedding is None:
        return None
    from lookalike.model import embedding_array

    u, v = embedding_array([a, b])
    return round(float(u @ v), 3)


def _leads_into(path: str, real_refs: Sequence[str]) -> bool:
    """Whether local ``path``, its links resolved, lies in one of the resolved reference
    sets (a test folder linked to a train folder, or a link to a train file, scanned with
    links followed). Through a linked folder, removing it would remove the reference file;
    apply judges protection the same way (it resolves links too) and leaves either alone,
    so the purge list does as well."""
    return "://" not in path and any(is_under(os.path.realpath(path), r) for r in real_refs)


def restrict_to_leakage(result: ScanResult, leakage: Leakage) -> ScanResult:
    """A copy of ``result`` whose groups are the cross-set groups of ``leakage`` only.

    The statistics follow: ``groups`` and ``duplicates`` (= the purge list). (Reports count
    the reclaimable bytes from their keep decisions, which protect the reference sets.)
    """
    stats = dict(result.stats)
    stats.update(groups=len(leakage.groups), duplicates=len(set(leakage.purge)))
    return replace(result, groups=list(leakage.groups), stats=stats)
