"""Cleaning a machine-learning dataset split by split: which rows to drop, which rows leak.

:func:`dedupe_dataset` takes a Hugging Face ``Dataset`` / ``DatasetDict`` (or a folder written
by ``save_to_disk``), or splits given as inputs the scan reads already (Parquet files of
images, WebDataset ``.tar`` shards, folders). It scans every split together, in one
:func:`lookalike.pipeline.scan`, and answers in row indices, so that cleaning is
``ds["train"].select(cleanup.keep["train"])`` (or :meth:`DatasetCleanup.select`):

* ``leaked[split]``: rows with a near duplicate (within the threshold, or the same bytes) in
  an *earlier* split, e.g. test rows whose image is in train. The first split never leaks.
* ``drop[split]``: duplicates inside the split. In each duplicate group of the scan, of the
  split's rows that do not leak, the keep policy (:mod:`lookalike.grouping.keep`) keeps one
  and the others are dropped.
* ``keep[split]``: every other row, in order (rows that could not be read are kept).

A row's index is its position in its split: the row of a ``Dataset`` (as selected or
shuffled), else its position in the split's listing (rows of its Parquet files, image
members of its shards, files of its folders, each in the order the scan lists them).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lookalike.config import ScanConfig
from lookalike.errors import ConfigError, Problem
from lookalike.grouping.groups import near_pairs
from lookalike.grouping.keep import KeepPolicy
from lookalike.inputs.hf import (
    BYTES_COLUMN,
    ROW_COLUMN,
    dataset_splits,
    export_split,
    image_column,
    is_dataset,
    load_saved,
)
from lookalike.inputs.listing import list_inputs
from lookalike.inputs.walk import named_paths
from lookalike.model import Group, ImageRecord, Member, match_text
from lookalike.paths import overlap
from lookalike.pipeline import CHUNK_SIZE, ScanResult, scan

if TYPE_CHECKING:
    from lookalike.events import Reporter
    from lookalike.executors.base import Executor
    from lookalike.inputs.listing import InputFormat

__all__ = ["CLEANUP_KIND", "DatasetCleanup", "RowLeak", "RowMatch", "dedupe_dataset"]

#: The ``kind`` of :meth:`DatasetCleanup.to_dict`, so a reader can tell the file from a report.
CLEANUP_KIND = "lookalike-dataset-cleanup"

Splits = Mapping[str, str | os.PathLike[str] | Sequence[str | os.PathLike[str]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class RowMatch:
    """A row of an earlier split that a leaking row matches, ``distance`` bits away (by its
    hash; ``match`` ``verified`` or ``embedding``: by embeddings, at ``similarity``)."""

    split: str
    index: int
    distance: int
    match: str = "hash"
    similarity: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RowLeak:
    """A row with near duplicates in earlier splits (closest first)."""

    split: str
    index: int
    matches: tuple[RowMatch, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetCleanup:
    """What to keep of each split; see the module docs for what each field means.

    Attributes:
        rows: rows per split, in the dataset's split order.
        keep, drop, leaked: row indices per split, ascending.
        leaks: every leaking row with its matches, in split then row order.
        scan: the scan it was computed from. For a Hugging Face dataset its paths are
            ``split#index`` and its roots the split names (the Parquet files the scan read
            were temporary).
        policy: the keep policy that chose among duplicates.
        paths: for splits given as files, shards or Parquet files (not a ``Dataset``), each
            row's path (``paths[split][index]``), so that the indices can be acted on.
    """

    rows: Mapping[str, int]
    keep: Mapping[str, tuple[int, ...]]
    drop: Mapping[str, tuple[int, ...]]
    leaked: Mapping[str, tuple[int, ...]]
    leaks: tuple[RowLeak, ...]
    scan: ScanResult
    policy: KeepPolicy
    paths: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def select(self, ds: Any) -> Any:
        """``ds`` (the ``Dataset`` or ``DatasetDict`` this was computed from) with only the
        rows to keep: ``DatasetDict`` in, ``DatasetDict`` out."""
        splits = dataset_splits(ds)
        if set(splits) != set(self.rows):
            raise ConfigError(f"the dataset's splits ({', '.join(splits)}) are not the ones "
                              f"cleaned ({', '.join(self.rows)})")
        for name, split in splits.items():
            if len(split) != self.rows[name]:  # another dataset, or this one changed since
                raise ConfigError(f"split {name!r} has {len(split)} rows, the one cleaned "
                                  f"had {self.rows[name]}; select from the dataset that was "
                                  "cleaned")
        kept = {name: split.select(self.keep[name]) for name, split in splits.items()}
        return type(ds)(kept) if isinstance(ds, dict) else next(iter(kept.values()))

    def to_dict(self) -> dict[str, Any]:
        """The cleanup as JSON-ready data (``kind`` :data:`CLEANUP_KIND`)."""
        return {
            "kind": CLEANUP_KIND,
            "config": self.scan.config.to_dict(),
            "keep_policy": self.policy.to_dict(),
            "splits": [{"name": name, "rows": n, "keep": list(self.keep[name]),
                        "drop": list(self.drop[name]), "leaked": list(self.leaked[name]),
                        **({"paths": list(self.paths[name])} if name in self.paths else {})}
                       for name, n in self.rows.items()],
            "leaks": [{"split": lk.split, "index": lk.index,
                       "matches": [{"split": m.split, "index": m.index, "distance": m.distance,
                                    "match": m.match, "similarity": m.similarity}
                                   for m in lk.matches]} for lk in self.leaks],
            "errors": [p.to_dict() for p in self.scan.errors],
        }

    def render_text(self, *, max_items: int | None = 20) -> str:
        """A human summary: per split, rows kept, dropped and leaked; the first leaks."""
        lines = [f"dataset cleanup (threshold {self.scan.config.threshold} bits):"]
        for name, n in self.rows.items():
            lines.append(f"  {name}: {n} rows: keep {len(self.keep[name])}, drop "
                         f"{len(self.drop[name])} (duplicates in {name}), leaked "
                         f"{len(self.leaked[name])} (in an earlier split)")
        shown = self.leaks if max_items is None else self.leaks[:max_items]
        for lk in shown:
            best = lk.matches[0]
            more = f" (+{len(lk.matches) - 1} more)" if len(lk.matches) > 1 else ""
            how = match_text(best.match, best.distance, best.similarity)
            lines.append(f"  {lk.split}[{lk.index}]  ~  {best.split}[{best.index}] "
                         f"({how}){more}")
        if max_items is not None and len(self.leaks) > max_items:
            lines.append(f"  ... {len(self.leaks) - max_items} more leaks")
        # Listing problems are an input's (a shard cut short, a file that is no shard), not
        # a row's: their rows are not in the split at all.
        inputs = [e for e in self.scan.errors if e.stage == "walk"]
        if len(inputs) < len(self.scan.errors):
            lines.append(f"  {len(self.scan.errors) - len(inputs)} rows could not be read "
                         "(kept)")
        for e in inputs:
            lines.append(f"  {e.path}: {e.message} ({e.error}; its rows are not counted)")
        return "\n".join(lines) + "\n"


def dedupe_dataset(data: Any, *, column: str | None = None, config: ScanConfig | None = None,
                   keep: str | Sequence[str] | KeepPolicy | None = None,
                   workdir: str | os.PathLike[str] | None = None,
                   input_format: InputFormat = "auto", name_column: str | None = None,
                   storage_options: Mapping[str, Any] | None = None,
                   engine: Literal["local", "dask"] = "local", scheduler: str | None = None,
                   executor: Executor | None = None, retries: int | None = None,
                   batch_size: int | None = None, reporter: Reporter | None = None,
                   **options: Any) -> DatasetCleanup:
    """Find the rows to drop and the rows that leak across splits, with one scan.

    Args:
        data: a ``datasets.Dataset`` or ``DatasetDict`` (or ``{split: Dataset}``); a folder
            written by ``save_to_disk``; or ``{split: input or inputs}`` in split order, each
            input a Parquet file of images, a WebDataset ``.tar`` shard or a folder (as the
            scan reads them).
        column: the column of images (default: a dataset's first ``Image`` column; for
            Parquet inputs, as guessed by the scan).
        config: hashing and grouping settings; or pass its fields as keyword ``options``
            (``threshold=...``, ``workers=...``), as to :func:`lookalike.scan`.
        keep: the keep policy among duplicates of a split (default
            :data:`lookalike.grouping.keep.DEFAULT_KEEP`; ties go to the path that sorts
            first: the lower index for a dataset and for files in folders, the name that
            sorts first for rows of Parquet files and members of tar shards).
        workdir: an existing local folder in which a dataset's image columns are written,
            in a new folder of their own removed afterwards, for the scan (default: the
            system's temporary folder); it needs room for them, and a remote Dask cluster's
            workers must see it at the same path. Nothing already in it is touched.
        input_format, name_column, storage_options: how to read the inputs of ``{split:
            inputs}`` (:func:`lookalike.inputs.listing.list_inputs`).
        engine, scheduler, executor, retries, batch_size, reporter: how the scan runs
            (:func:`lookalike.pipeline.scan`).

    Returns:
        A :class:`DatasetCleanup`.

    Raises:
        ConfigError: no image column, a missing input or a missing extra (before any work).

    Cost: one scan of every image; one more exact Hamming search for the leaks. A dataset's
    image columns are first copied, as stored, to ``workdir``.
    """
    if config is None:
        config = ScanConfig(**options)
    elif options:
        raise ConfigError("pass either config= or keyword options, not both")
    policy = KeepPolicy.from_spec(keep)
    with ExitStack() as stack:
        exported = not isinstance(data, Mapping) or any(map(is_dataset, (data, *data.values())))
        unreadable: dict[tuple[str, int], Problem] = {}
        if exported:
            ds = load_saved(data) if isinstance(data, str | os.PathLike) else data
            if workdir is not None and not os.path.isdir(workdir):
                raise ConfigError(f"workdir {os.fspath(workdir)} is not an existing folder; "
                                  "create it first (or leave workdir out: a temporary one)")
            # A folder of its own, inside workdir: never a file of the user's overwritten.
            folder = stack.enter_context(tempfile.TemporaryDirectory(
                prefix="lookalike-dataset-", dir=None if workdir is None else workdir))
            inputs: dict[str, list[str]] = {}
            for k, (name, split) in enumerate(dataset_splits(ds).items()):
                path = os.path.join(folder, f"{k}.parquet")
                try:
                    images = image_column(split, column)
                except ConfigError as exc:  # which split lacks it
                    raise ConfigError(f"split {name!r}: {exc}") from None
                for index, problem in export_split(split, images, path,
                                                   row_group_size=CHUNK_SIZE).items():
                    unreadable[(name, index)] = problem
                inputs[name] = [path]
            column, name_column, input_format = BYTES_COLUMN, ROW_COLUMN, "parquet"
        else:
            try:
                inputs = {str(name): [os.fspath(p)] if isinstance(p, str | os.PathLike)
                          else [os.fspath(q) for q in p] for name, p in data.items()}
            except TypeError:
                raise ConfigError("give each split as a path (or a list of paths) of its "
                                  "images, or every split as a datasets.Dataset") from None
            if not inputs:
                raise ConfigError("no splits to clean")
            _check_apart(inputs)
        # Each item's split and index: its position in its split's listing (cheap: names
        # only), the order the scan lists them in too.
        where: dict[str, tuple[str, int]] = {}
        rows: dict[str, int] = {}
        for name, paths in inputs.items():
            items, _, counts = list_inputs(paths, input_format=input_format, column=column,
                                           name_column=name_column,
                                           storage_options=storage_options,
                                           follow_symlinks=config.follow_symlinks)
            if not items and counts.get("skipped_containers"):
                # A folder of shards read as a folder of images: the split would be empty.
                raise ConfigError(
                    f"split {name!r} has no image files, only tar or Parquet files inside "
                    "its folders; name those files, or pass input_format='tar' or "
                    "'parquet'")
            if counts.get("skipped_containers"):
                warnings.warn(f"split {name!r}: skipped {counts['skipped_containers']} tar or "
                              "Parquet file(s) found inside its folders; their images are "
                              "read with input_format='tar' or 'parquet'", UserWarning,
                              stacklevel=2)
            rows[name] = len(items)
            where.update((e.path, (name, i)) for i, e in enumerate(items))
        result = scan([p for paths in inputs.values() for p in paths], config,
                      input_format=input_format, column=column, name_column=name_column,
                      storage_options=storage_options, engine=engine, scheduler=scheduler,
                      executor=executor, retries=retries, batch_size=batch_size,
                      reporter=_Rows(reporter, where) if exported and reporter else reporter)
    cleanup = _decide(result, where, rows, policy)
    if exported:
        scanned = _relabel(result, where, list(rows))
        if unreadable:  # what the null cell of such a row stands for
            said = {f"{name}#{index}": p for (name, index), p in unreadable.items()}
            scanned = dataclasses.replace(scanned, errors=[
                dataclasses.replace(said[p.path], path=p.path) if p.path in said else p
                for p in scanned.errors])
        return dataclasses.replace(cleanup, scan=scanned)
    # Splits of files, shards or Parquet cells: which item each row index is.
    row_paths: dict[str, list[str]] = {name: [""] * n for name, n in rows.items()}
    for path, (name, index) in where.items():
        row_paths[name][index] = path
    return dataclasses.replace(cleanup, paths={k: tuple(v) for k, v in row_paths.items()})


def _check_apart(inputs: Mapping[str, Sequence[str]]) -> None:
    """Refuse splits that share inputs (one folder in two splits, or one inside another):
    a row must belong to one split."""
    both = overlap([(name, os.path.abspath(p)) for name, paths in inputs.items()
                    for p in named_paths(paths) if "://" not in p])
    if both:
        (a, pa), (b, pb) = both
        raise ConfigError(f"the splits {a!r} and {b!r} overlap ({pa}, {pb}): give each split "
                          "its own files")


def _decide(result: ScanResult, where: Mapping[str, tuple[str, int]], rows: Mapping[str, int],
            policy: KeepPolicy) -> DatasetCleanup:
    """The cleanup of ``result``, whose records' paths ``where`` places in their splits."""
    order = {name: k for k, name in enumerate(rows)}
    # A file with rows in several splits (hard links, a path through a link: the scan's
    # aliases; a split lists each file once) is a row of each, and leaks from the earliest.
    recs: list[ImageRecord] = []
    at: dict[str, list[int]] = defaultdict(list)  # a record's path -> its rows in recs
    for r in result.records:
        for path in (r.path, *r.aliases):
            if path in where:
                at[r.path].append(len(recs))
                recs.append(dataclasses.replace(r, path=path, aliases=()))
    pairs: dict[tuple[int, int], tuple[int, str, float | None]] = {
        pair: (d, "hash", None)
        for pair, d in near_pairs(recs, result.config.resolved_threshold).items()}
    # The scan's embedding matches (verified, or proposed with verification off) too, as in
    # leakage mode.
    for (a, b), (how, sim) in result.embedding_matches.items():
        for i in at.get(a, ()):
            for j in at.get(b, ()):
                key = (i, j) if i < j else (j, i)
                pairs.setdefault(key, (recs[i].hash - recs[j].hash, how, sim))
    # Leaks: direct matches with an earlier split, as in leakage mode (not chains of them).
    found: dict[int, list[tuple[int, tuple[int, str, float | None]]]] = defaultdict(list)
    for (i, j), match in pairs.items():
        si, sj = order[where[recs[i].path][0]], order[where[recs[j].path][0]]
        if si != sj:
            later, earlier = (i, j) if si > sj else (j, i)
            found[later].append((earlier, match))
    leaks = []
    for i in sorted(found, key=lambda i: (order[where[recs[i].path][0]], where[recs[i].path])):
        matches = sorted((RowMatch(split=where[recs[j].path][0], index=where[recs[j].path][1],
                                   distance=d, match=how, similarity=sim)
                          for j, (d, how, sim) in found[i]),
                         key=lambda m: (m.match != "hash", m.distance, -(m.similarity or 0),
                                        order[m.split], m.index))
        name, index = where[recs[i].path]
        leaks.append(RowLeak(split=name, index=index, matches=tuple(matches)))
    leaking = {recs[i].path for i in found}
    # Duplicates inside a split: the policy keeps one of the split's members of each group
    # that do not leak (a leaking row goes anyway, so it is never the one kept).
    facts = policy.read_facts(m.record for g in result.groups for m in g.members)
    drop: dict[str, list[int]] = defaultdict(list)
    for g in result.groups:
        by_split: dict[str, list[Member]] = defaultdict(list)
        for m in g.members:
            if m.record.path not in leaking:
                by_split[where[m.record.path][0]].append(m)
        for name, members in by_split.items():
            if len(members) > 1:
                part = Group(id=g.id, members=tuple(members),
                             representative=members[0].record.path, kind=g.kind)
                drop[name].extend(where[p][1] for p in policy.decide(part, facts).remove)
    leaked: dict[str, list[int]] = defaultdict(list)
    for lk in leaks:
        leaked[lk.split].append(lk.index)
    gone = {name: {*drop[name], *leaked[name]} for name in rows}
    return DatasetCleanup(
        rows=dict(rows),
        keep={name: tuple(i for i in range(n) if i not in gone[name]) for name, n in rows.items()},
        drop={name: tuple(sorted(drop[name])) for name in rows},
        leaked={name: tuple(sorted(leaked[name])) for name in rows},
        leaks=tuple(leaks), scan=result, policy=policy)


class _Rows:
    """A reporter that names each problem by its dataset row (``split#index``), as the
    result does (:func:`_relabel`), not by the temporary Parquet file it was exported to
    (the live line named a file deleted by the time it was read)."""

    def __init__(self, inner: Reporter, where: Mapping[str, tuple[str, int]]) -> None:
        self.inner, self.where = inner, where

    def phase(self, number: int, total: int, name: str, size: int | None) -> None:
        self.inner.phase(number, total, name, size)

    def advance(self, n: int = 1) -> None:
        self.inner.advance(n)

    def problem(self, problem: Problem) -> None:
        name, index = self.where.get(problem.path, (None, None))
        self.inner.problem(problem if name is None
                           else dataclasses.replace(problem, path=f"{name}#{index}"))

    def info(self, message: str) -> None:
        self.inner.info(message)

    def close(self) -> None:
        self.inner.close()


def _relabel(result: ScanResult, where: Mapping[str, tuple[str, int]], splits: list[str]
             ) -> ScanResult:
    """``result`` with ``split#index`` paths and the splits as roots, for a scan of
    temporary Parquet files."""
    def label(path: str) -> str:
        name, index = where.get(path, (None, None))
        return path if name is None else f"{name}#{index}"

    records = {r.path: dataclasses.replace(r, path=label(r.path), source=where[r.path][0])
               for r in result.records}
    groups = [dataclasses.replace(g, representative=label(g.representative), members=tuple(
        dataclasses.replace(m, record=records[m.record.path]) for m in g.members))
        for g in result.groups]
    errors = [dataclasses.replace(p, path=label(p.path)) for p in result.errors]
    embedded: dict[tuple[str, str], tuple[str, float | None]] = {}
    for (a, b), how in result.embedding_matches.items():
        x, y = sorted((label(a), label(b)))  # keys stay (smaller, larger)
        embedded[(x, y)] = how
    return dataclasses.replace(result, records=list(records.values()), groups=groups,
                               errors=errors, roots=splits, embedding_matches=embedded)
