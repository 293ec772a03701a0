"""What each ``lookalike`` command does, as one library function (the layer just below ``cli``).

The command line only turns options into arguments; a command that takes several steps has
them here, in order, where Python callers get the very same behaviour:

* :func:`scan_to_files` (``scan``): check every output path, scan, keep the train/test
  leakage only, write the report, its error list and the HTML page, print the summary;
  a Hugging Face dataset folder goes to :func:`clean_dataset_to_files` (keep, drop and
  leaked rows per split).
* :func:`hash_files` (``hash``): one hash, or one problem, per file.
* :func:`write_review_page` (``report``): the HTML page of a JSON report.
* :func:`apply_plan` (``apply``): plan, print the plan, then carry it out under a journal.
* :func:`calibrate_to_file` (``calibrate``): calibrate, print the curve, save it as JSON.

What a command prints for the user goes to the text stream ``out`` (stdout by default), in
the order the steps happen; progress and per-file problems go to the ``reporter``. Failures
raise :mod:`lookalike.errors` exceptions; results are returned, never turned into exit codes.

What only some commands or options need (actions, calibration, leakage, the HTML page) is
imported inside the function that needs it: a warm re-scan of 20k files
(.cache/bench/small_tree_20000) then costs 0.417 s of CPU instead of 0.453 s (8% less;
medians of 15 interleaved runs).
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, TextIO

from lookalike.config import ScanConfig, check_writable
from lookalike.errors import ConfigError, Interrupted, Problem
from lookalike.events import Reporter
from lookalike.grouping.keep import parse_keep
from lookalike.inputs.hf import is_saved_dataset
from lookalike.inputs.walk import named_file
from lookalike.model import ImageRecord
from lookalike.outputs import csv_text, special_file, write_text
from lookalike.paths import is_under
from lookalike.pipeline import ScanResult, scan
from lookalike.report.schema import (
    decide_keep,
    human_bytes,
    plural,
    refuse_overwrite,
    render_text,
    write_report,
)
from lookalike.store.cache import HashCache, default_cache_path
from lookalike.store.parquet import check_output_folder
from lookalike.worker import hash_file

if TYPE_CHECKING:
    from lookalike.actions.apply import ApplyResult
    from lookalike.actions.plan import Action
    from lookalike.analysis.calibrate import Calibration
    from lookalike.analysis.dataset import DatasetCleanup
    from lookalike.report.html import HtmlSummary, ThumbnailMode

__all__ = ["ReportFormat", "apply_plan", "calibrate_to_file", "clean_dataset_to_files",
           "errors_csv_path", "hash_files", "scan_to_files", "write_review_page"]

ReportFormat = Literal["json", "csv", "text", "paths", "paths0"]

#: Groups, and members of each, the summary printed after a scan shows (the report files
#: hold them all; kept members are always shown).
SUMMARY_GROUPS = 20
SUMMARY_MEMBERS = 8


def errors_csv_path(report: str) -> str:
    """Where a CSV report's list of unusable files goes: ``NAME.errors.csv`` beside it."""
    stem, ext = os.path.splitext(report)
    # The report's own spelling of .csv (.CSV), else .csv: a CSV report named a.json had
    # its error list named a.errors.json, which apply then took for a JSON report.
    return f"{stem}.errors{ext if ext.lower() == '.csv' else '.csv'}"


def _page_report_path(html: str) -> str:
    """The JSON report written beside an HTML page when no JSON report was asked for."""
    return f"{os.path.splitext(html)[0]}.json"  # (a page is never named .json: _check_page_path)


def _write_errors_csv(errors: Sequence[Problem], path: str) -> None:
    """Write ``errors`` as CSV: ``path, stage, error, message``."""
    write_text(path, csv_text([("path", "stage", "error", "message"),
                               *((p.path, p.stage, p.error, p.message) for p in errors)]),
               "error list")


def _check_page_path(html: str | None) -> None:
    """Refuse a review page named like a JSON report (``--html r.json``): the page took the
    report's name, an earlier report there was replaced by HTML, and the JSON went to
    ``r.json.json``."""
    if html is not None and html.lower().endswith(".json"):
        raise ConfigError(f"the HTML page {html} is named like a JSON report; name it .html")


def _same_file(path: str, stream: TextIO) -> bool:
    """Whether the output ``path`` is ``stream`` itself (``-o /dev/stdout``)."""
    try:
        mine, theirs = os.stat(path), os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # no such file, or no descriptor
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _page_written(summary: HtmlSummary) -> str:
    where = f" (thumbnails in {summary.thumbnail_dir})" if summary.thumbnail_dir else ""
    return f"HTML report written to {summary.path}{where}"


def check_outputs(outputs: Sequence[tuple[str, str | None]],
                  inputs: Sequence[tuple[str, str | None]] = ()) -> None:
    """Check, before any work, that each named output file (``(what, path)``; None: not
    asked for) can be written and overwrites nothing of the user's: not an input of the
    command, not another output, not an image file (``-o photos/cat.jpg`` replaced the
    photo with the report).

    Raises:
        ConfigError: the first output that cannot or must not be written.
    """
    taken = [(f"{what} of this command", path) for what, path in inputs if path is not None]
    for what, path in outputs:
        if path is None:
            continue
        refuse_overwrite(check_writable(path, what), what, taken)
        taken.append((f"{what} of this command", path))


def _refuse_inside(path: str | None, what: str, folder: str | None, name: str) -> None:
    """Refuse an output ``path`` inside ``folder`` (a folder whose files are read back as
    its own: a Parquet output's parts, a saved dataset's); the folder itself is left to
    :func:`check_outputs`."""
    if path is None or folder is None:
        return
    real, top = os.path.realpath(path), os.path.realpath(folder)
    if real != top and is_under(real, top):
        raise ConfigError(f"the {what} {path} would be written inside the {name} {folder}; "
                          "name a file elsewhere")


def scan_to_files(paths: Sequence[str], config: ScanConfig, *, output: str | None = None,
                  format: ReportFormat | None = None, html: str | None = None,
                  reference: Sequence[str] = (), keep: Sequence[str] = (),
                  cache: str | None = None, use_cache: bool = True,
                  argv: list[str] | None = None, reporter: Reporter | None = None,
                  out: TextIO | None = None, **options: Any) -> ScanResult:
    """Scan ``paths`` and write every view of the result that was asked for.

    Every output path is checked before any work. Files are written first and ``out`` last,
    so a reader that stops early (``| head``) costs no file.

    Args:
        paths: what to scan, as for :func:`lookalike.pipeline.scan`; a folder written by
            ``save_to_disk`` is cleaned by :func:`clean_dataset_to_files` instead (its
            ``.scan`` is returned).
        config: hashing and grouping settings.
        output: the report file, in ``format`` (default ``json``); a ``csv`` report puts the
            files that could not be used in :func:`errors_csv_path` beside it. Without
            ``output`` the report itself goes to ``out`` in ``format`` (default ``text``;
            with ``html``, the files written are then told to ``reporter``); with
            ``output``, or with ``html`` and no other ``format``, ``out`` gets the text
            summary and the paths written.
        format: ``json``, ``csv``, ``text``, or ``paths``/``paths0``: the files the keep
            decisions remove (in leakage mode the purge list), one per line or NUL-terminated
            (:func:`lookalike.report.schema.render_paths`).
        html: also write the review page here. It needs a JSON report on disk: ``output``
            when that is JSON, else ``NAME.json`` beside the page.
        reference: leakage mode: the reference sets (e.g. ``train/``); ``paths`` are then the
            sets checked against them, and the report holds only the cross-set groups.
        keep: the keep policy the report records (validated first).
        cache: the hash cache file (default: :func:`lookalike.store.cache.default_cache_path`);
            with ``use_cache=False`` none is read or written. A Dask scan (``engine="dask"``
            or a ``scheduler`` in ``options``) resumes from its Parquet output instead, so it
            uses a cache only when ``cache`` names one.
        argv: the command line recorded in the report.
        reporter: progress, problems, and the HTML page's thumbnail progress.
        out: the stream for the report or summary (default: ``sys.stdout``).
        options: passed on to :func:`lookalike.pipeline.scan`: inputs (``files_from``,
            ``input_format``, ...), ``engine``, ``scheduler``, ``parquet_out``, ``retries``,
            ``batch_size``.

    Returns:
        The scan result; in leakage mode restricted to the cross-set groups.

    Raises:
        ConfigError: a bad option, an output path that cannot be written, reference sets that
            overlap the others, or a bad keep rule; all before any work.
        LookalikeError: a report file could not be written.
    """
    if out is None:
        out = sys.stdout
        if out is None:  # started with standard output closed (``>&-``)
            if output is None and (html is None or format not in (None, "text")):
                raise ConfigError("standard output is closed: the report has nowhere to go; "
                                  "name an output file")
            out = io.StringIO()  # the summary of the files written: nobody to read it
    if output is not None and _same_file(output, out):
        output = None  # ``-o /dev/stdout``: the report alone goes there, as without a file
        format = format or "json"
    if html is not None and special_file(html):
        raise ConfigError(f"the HTML page {html} must be a file: its decisions name the JSON "
                          "report written beside it; name a file")
    # A saved dataset's folder is read as the dataset unless files were asked for (a photo
    # folder may hold a dataset_dict.json of its own).
    as_datasets = options.get("input_format", "auto") == "auto"
    for path in reference if as_datasets else ():
        if is_saved_dataset(path):  # read as a folder of images it held none
            raise ConfigError(f"{path} is a saved dataset, not a folder of images: it cannot "
                              "be a reference set; clean it on its own (its splits are the "
                              "sets)")
    if as_datasets and any(map(is_saved_dataset, paths)):
        if cache is not None:  # the default cache is simply not used; a named one was ignored
            raise ConfigError(f"{paths[0]} is a saved dataset, scanned without a hash cache "
                              "(its rows are no files); leave the cache out")
        return clean_dataset_to_files(paths, config, output=output, format=format, html=html,
                                      reference=reference, keep=keep, reporter=reporter,
                                      out=out, **options).scan
    if output is not None:
        format = format or "json"
    cluster = options.get("engine") == "dask" or options.get("scheduler") is not None
    use_cache = use_cache and (cache is not None or not cluster)
    cache_path = (cache if cache is not None else str(default_cache_path())) if use_cache \
        else None
    parquet_out = check_output_folder(options.get("parquet_out"))
    for what, target in (("report", output), ("HTML page", html)):
        # Every file there is read back as a part of the output: a report in it broke the
        # folder ("Parquet magic bytes not found").
        _refuse_inside(target, what, parquet_out, "Parquet output")
    check_outputs([("report", output),
                   ("error list", errors_csv_path(output)
                    if output and format == "csv" and not special_file(output) else None),
                   ("HTML page", html),
                   ("JSON report for the HTML page", _page_report_path(html)
                    if html is not None and (format != "json" or output is None
                                             or special_file(output)) else None)],
                  inputs=[("file list", options.get("files_from")), ("hash cache", cache_path),
                          ("Parquet output", parquet_out), *(
                      ("scanned file", p) for p in (*reference, *paths))])
    _check_page_path(html)  # (after: a page path that overwrites an input says that first)
    if reference:
        from lookalike.analysis.leakage import check_sets, find_leakage, restrict_to_leakage

        if options.get("files_from") is not None:
            raise ConfigError("a leakage check takes its sets as paths (folders, shards, "
                              "Parquet files), one per set; a file list is not a set")
        check_sets(reference, paths)
        paths = [*reference, *paths]
    if keep:
        parse_keep(keep)  # a bad rule fails now, not after the scan
    store = HashCache(cache_path) if cache_path is not None else None
    try:
        result = scan(paths, config, cache=store, reporter=reporter, **options)
    finally:
        if store is not None:
            store.close()
    leakage = None
    if reference:
        leakage = find_leakage(result, reference)
        result = restrict_to_leakage(result, leakage)
        if reporter is not None and (output is not None or html is not None
                                     or (format or "text") != "text"):
            for warning in leakage.warnings:  # else in the text summary on stdout
                reporter.info(warning)
    # Every view of the scan carries the same keep decisions (made once: the keep policy may
    # read WebP headers) and the leakage section.
    policy = decide_keep(result, keep or None, leakage)
    if output is None and html is None:
        write_report(result, out, format=format or "text", argv=argv, keep=policy,
                     leakage=leakage)
        out.flush()
        return result
    # Without a report file the report goes to ``out`` in the format asked for (``--format
    # paths --html PAGE | xargs rm`` read the text summary's kept files as ones to remove);
    # what was written is then told to the reporter, not mixed into it.
    streamed = format if output is None and format not in (None, "text") else None
    written: list[str] = []
    json_path = None
    if output is not None:
        write_report(result, output, format=format or "json", argv=argv, keep=policy,
                     leakage=leakage)
        written.append(f"report written to {os.path.abspath(output)}")
        if format == "json" and not special_file(output):  # the page reads it back
            json_path = output
        if format == "csv" and not special_file(output):  # nothing goes beside a device
            # Written also when empty: an earlier scan's error list beside a new report
            # reads as this scan's.
            errors_csv = errors_csv_path(output)
            _write_errors_csv(result.errors, errors_csv)
            if result.errors:
                written.append(f"{plural(len(result.errors), 'error')} written to "
                               f"{os.path.abspath(errors_csv)}")
    if html is not None:
        if json_path is None:
            # Decisions exported from the page name the JSON report: it must be on disk.
            json_path = _page_report_path(html)
            write_report(result, json_path, format="json", argv=argv, keep=policy,
                         leakage=leakage)
            written.append(f"report written to {os.path.abspath(json_path)}")
        from lookalike.report.html import write_html

        written.append(_page_written(write_html(json_path, html, reporter=reporter)))
    if streamed is not None:
        write_report(result, out, format=streamed, argv=argv, keep=policy, leakage=leakage)
        if reporter is not None:
            for line in written:
                reporter.info(line)
    else:
        out.write(render_text(result, max_groups=SUMMARY_GROUPS, max_members=SUMMARY_MEMBERS,
                              keep=policy, leakage=leakage))
        out.write("".join(f"{line}\n" for line in written))
    out.flush()
    return result


def clean_dataset_to_files(paths: Sequence[str], config: ScanConfig, *,
                           output: str | None = None, format: ReportFormat | None = None,
                           html: str | None = None, reference: Sequence[str] = (),
                           keep: Sequence[str] = (), reporter: Reporter | None = None,
                           out: TextIO | None = None, **options: Any) -> DatasetCleanup:
    """Clean the Hugging Face dataset saved (``save_to_disk``) at the one path of ``paths``:
    :func:`lookalike.analysis.dataset.dedupe_dataset`, then write the cleanup as JSON to
    ``output`` (and its summary to ``out``), or ``format`` (``text`` or ``json``) to ``out``.

    ``options``: ``column`` (the image column) and how the scan runs (``engine``,
    ``scheduler``, ``retries``, ``batch_size``); ``scan_to_files``'s other inputs and
    outputs do not apply to a dataset.

    Raises:
        ConfigError: other paths, options that do not apply, an output that cannot be
            written, a bad keep rule, or no image column; all before any work.
    """
    from lookalike.analysis.dataset import dedupe_dataset

    out = sys.stdout if out is None else out
    unused = [what for what, given in (
        ("other paths", len(paths) > 1), ("reference sets", bool(reference)),
        ("an HTML page", html is not None),
        ("a file list", options.pop("files_from", None) is not None),
        ("a Parquet output", options.pop("parquet_out", None) is not None),
        ("a name column", options.pop("name_column", None) is not None),
        ("an input format", options.pop("input_format", "auto") != "auto")) if given]
    if unused:
        raise ConfigError(f"{paths[0]} is a saved dataset, cleaned on its own; it cannot "
                          f"be combined with {', '.join(unused)}")
    format = format or ("json" if output is not None else "text")
    if format not in ("json", "text"):
        raise ConfigError("a dataset cleanup is written as json or text")
    check_outputs([("cleanup", output)])
    _refuse_inside(output, "cleanup", paths[0], "saved dataset")
    cleanup = dedupe_dataset(paths[0], config=config, keep=keep or None, reporter=reporter,
                             **options)
    text = (json.dumps(cleanup.to_dict()) + "\n" if format == "json"
            else cleanup.render_text())
    if output is None:
        out.write(text)
    else:
        write_text(output, text, "cleanup")
        out.write(cleanup.render_text())
        out.write(f"cleanup written to {os.path.abspath(output)}\n")
    out.flush()
    return cleanup


def hash_files(files: Iterable[str], config: ScanConfig
               ) -> Iterator[tuple[str, ImageRecord | Problem]]:
    """Hash each of ``files`` (local paths), in order: ``(path as given, record or problem)``.

    A file that cannot be hashed gives its :class:`~lookalike.errors.Problem`; nothing raises.
    """
    for f in files:
        entry = named_file(f)
        yield f, entry if isinstance(entry, Problem) else hash_file(entry, config)


def write_review_page(report: str, html: str, *, thumbnails: ThumbnailMode = "auto",
                      reporter: Reporter | None = None, out: TextIO | None = None
                      ) -> HtmlSummary:
    """Write the HTML review page of the JSON ``report`` to ``html``; print where it went.

    See :func:`lookalike.report.html.write_html`.
    """
    from lookalike.report.html import write_html

    check_outputs([("HTML page", html)], inputs=[("report", report)])
    _check_page_path(html)
    summary = write_html(report, html, thumbnails=thumbnails, reporter=reporter)
    print(_page_written(summary), file=sys.stdout if out is None else out)
    return summary


_DONE = {"move": "moved", "delete": "deleted", "hardlink": "hard-linked",
         "symlink": "symlinked"}


def apply_plan(source: str, *, action: Action, keep: Sequence[str] = (),
               protect: Sequence[str] = (), to: str | None = None, journal: str | None = None,
               yes: bool = False, collapse_links: bool = False,
               keep_in: Sequence[str] = (), remove_in: Sequence[str] = (),
               reporter: Reporter | None = None, out: TextIO | None = None,
               shown_groups: int | None = None) -> ApplyResult | None:
    """Plan ``action`` on the duplicates of ``source`` and print the plan (its first
    ``shown_groups`` groups, when given); with ``yes``, do it.

    Without ``yes`` this is a dry run: nothing changes. With it, every change is written to
    ``journal`` first (default: :func:`~lookalike.actions.apply.default_journal_path`); an
    existing journal is resumed: the interrupted run's unfinished operations are rolled back
    and its finished ones are not repeated. See :func:`lookalike.actions.plan.plan` and
    :func:`lookalike.actions.apply.apply`. ``keep_in``/``remove_in``: folder rules (see
    :mod:`lookalike.actions.plan`).

    Returns:
        What was done, or ``None`` for a dry run or a plan without operations.

    Raises:
        ConfigError, ReportError, JournalError: bad options, report or journal; before any
            change.
        Interrupted: Ctrl-C during the run; its journal records what was done.
    """
    from lookalike.actions.apply import (
        apply,
        check_new_journal,
        check_resume,
        default_journal_path,
        recover,
    )
    from lookalike.actions.journal import Journal
    from lookalike.actions.plan import journal_of, load_source, plan, render_plan

    out = sys.stdout if out is None else out
    # A journal whose run stopped before its header is begun anew (apply replaces it).
    resume = (journal is not None and os.path.exists(journal)
              and not Journal.unstarted(journal))
    loaded = load_source(source)
    if resume and yes:
        assert journal is not None
        begun = journal_of(journal, loaded)  # another report's: refused before any change
        try:  # so is another action or quarantine, before the rollback below
            check_resume(begun, action, to)
        finally:
            begun.close()
        rolled_back = recover(journal, reporter=reporter).rolled_back
        if rolled_back:
            print(f"rolled back {rolled_back} unfinished operations of the interrupted run; "
                  "resuming", file=out)
    if reporter is not None and len(loaded.groups) >= 2000:
        # A big report's plan reads many headers (a minute for 2,700 groups on a busy
        # machine): not a silent wait.
        reporter.info(f"planning: checking {plural(len(loaded.groups), 'group')} against the "
                      "files")
    p = plan(loaded, action=action, keep=keep or None, protect=protect, to=to,
             journal=journal if resume else None, collapse_links=collapse_links,
             keep_in=keep_in, remove_in=remove_in)
    jpath = os.path.abspath(journal or default_journal_path(p))
    if p.operations and not resume:
        # The dry run fails as --yes would, before its plan is printed.
        check_new_journal(p, jpath, named=journal is not None)
    out.write(render_plan(p, dry_run=not yes, limit=shown_groups))
    if not yes:
        return None
    if not p.operations:
        print("nothing to do", file=out)
        return None
    print(f"journal: {jpath}", file=out)
    out.flush()  # the plan is on screen before the first change
    try:
        result = apply(p, journal=jpath, reporter=reporter)
    except KeyboardInterrupt:
        raise Interrupted(jpath) from None
    print(f"{_DONE[action]} {plural(len(result.done), 'file')} "
          f"({human_bytes(result.bytes_done)}); {result.skips_line()}; "
          f"{len(result.failed)} failed", file=out)
    if result.backups:
        n = len(result.backups)
        print(f"{n} replaced {'copy' if n == 1 else 'copies'} kept in "
              f"{result.backup_dir} "
              # Bytes once per file: two names of one file are one backup.
              f"({human_bytes(sum(op.size_bytes for op in result.backups if op.frees))},"
              " not freed yet) for undo; delete that folder to free the space once you no "
              "longer need the undo", file=out)
    if result.done and action != "delete":
        print(f"undo with: lookalike undo {jpath}", file=out)
    return result


def calibrate_to_file(paths: Sequence[str], *, json_out: str | None = None,
                      reporter: Reporter | None = None, out: TextIO | None = None,
                      embed: str | None = None, **options: Any) -> Calibration:
    """Calibrate on ``paths``, print the curve and the recommendation, save them as JSON.

    Args:
        paths: the images to sample.
        json_out: also write the whole calibration here (checked before any work).
        reporter: progress and problems.
        out: the stream for the printed curve (default: ``sys.stdout``).
        embed: also calibrate this embedding model's ``similarity``
            (:func:`lookalike.analysis.calibrate_embed.calibrate_embedding`, on at most 100
            of the sampled images).
        options: passed on to :func:`lookalike.analysis.calibrate.calibrate`.
    """
    from lookalike.analysis.calibrate import calibrate, render_calibration

    out = sys.stdout if out is None else out
    check_outputs([("calibration file", json_out)], inputs=[("file list",
                                                             options.get("files_from"))])
    if embed is not None:
        from lookalike.analysis.calibrate_embed import (
            calibrate_embedding,
            render_embedding_calibration,
        )
        from lookalike.config import ScanConfig
        from lookalike.verify import check_ready

        check_ready(ScanConfig(embed=embed))  # a missing model: before any work
    cal = calibrate(paths, reporter=reporter, **options)
    out.write(render_calibration(cal))
    print(f"({cal.seconds:.1f} s)", file=out)
    data = cal.to_dict()
    if embed is not None:
        ecal = calibrate_embedding(paths, embed=embed, sample=min(100, options.get("sample",
                                                                                  100)),
                                   seed=options.get("seed", 0), reporter=reporter)
        out.write(render_embedding_calibration(ecal))
        data["embedding"] = ecal.to_dict()
    if json_out is not None:
        write_text(json_out, json.dumps(data, indent=1) + "\n", "calibration")
        print(f"calibration written to {os.path.abspath(json_out)}", file=out)
    return cal
