"""The ``lookalike`` command: options in, one library call per command, exit codes out.

Each command turns its options into a config and arguments, calls one library function
(those that take several steps live in :mod:`lookalike.jobs`) and lets failures raise.
:func:`main` alone maps the outcome to an exit code: 0 success (duplicates found or not), 1 a
run-time failure (some files or operations failed, or stdout closed early), 2 bad usage or
configuration (found before any work), 130 interrupted.

Library modules are imported inside the commands: ``lookalike --help`` and ``methods`` then
load neither NumPy nor Pillow (tests/test_imports.py).

Over 600 lines because click keeps each option's help beside the command it belongs to: the
code is a dozen commands of one library call each, and the shared options are decorators
(``_embed_options``, ``_workers_option``, ...) defined once at the top.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from lookalike.config import (
    DEFAULT_DECODE_TIMEOUT,
    DEFAULT_INVARIANT,
    DEFAULT_MAX_PIXELS,
    DEFAULT_METHOD,
    DEFAULT_SIMILARITY,
    DEFAULT_SIMILARITY_UNVERIFIED,
    INSTALL_HINTS,
    METHOD_NAMES,
    ScanConfig,
)
from lookalike.errors import ConfigError, Interrupted, LookalikeError, PartialFailure, Problem
from lookalike.paths import shown
from lookalike.version import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class ConsoleReporter:
    """Rich progress bar on a terminal; plain, quiet lines otherwise (CI logs)."""

    def __init__(self, *, quiet: bool = False, progress: bool | None = None,
                 problems: bool | None = None) -> None:
        self.quiet = quiet
        #: Print each problem's line (default: unless quiet). Actions print theirs even
        #: when quiet: a failed move or undo must never pass unseen.
        self.show_problems = not quiet if problems is None else problems
        self._console: Any = None
        # Quiet never prints nor shows progress: then Rich is not even imported.
        self.show_progress = (not quiet and (
            progress if progress is not None
            else self.console.is_terminal and not os.environ.get("CI")))
        self._progress: Any = None
        self._task: Any = None
        self._plain: list[Any] | None = None  # label, size, done, last line's time
        self.problems = 0
        self._held: list[str] = []  # problem lines not yet printed above a live bar
        self._held_since = 0.0
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            # Stop the bar when the command ends, also by an exception (Ctrl-C): what is
            # printed next ("interrupted", an error) then starts on a line of its own.
            ctx.call_on_close(self.close)

    @property
    def console(self) -> Any:
        """The Rich console on stderr, created on first use."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
            # Rich exits on a closed stderr (`... 2>&1 | head -1`); stop talking instead and
            # keep working, so that every file asked for is still written.
            self._console.on_broken_pipe = self._stop_talking
        return self._console

    def _stop_talking(self) -> None:
        self.quiet, self.show_problems = True, False
        self._console.quiet = True

    #: Seconds between the plain progress lines of a long phase (no terminal: a CI log).
    PLAIN_EVERY_S = 30.0

    def phase(self, number: int, total: int, name: str, size: int | None) -> None:
        self._stop()
        self._plain = None
        # No bar either for a phase of unknown size (walking, grouping): its counter never
        # moved, and its frozen spinner stayed on screen looking stuck.
        if not self.show_progress or not size:  # nothing to do (a warm re-scan): no bar
            if not self.quiet:
                suffix = (f" ({size} file{'' if size == 1 else 's'})" if size
                          else " (nothing to do)" if size == 0 else "")
                self.console.print(f"{number}/{total}: {name}{suffix}", soft_wrap=True)
                if size:  # counts now and then, so a long log shows the run moving
                    self._plain = [f"{number}/{total}: {name}", size, 0, time.monotonic()]
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Column

        # The bar takes the terminal's width; on a narrow terminal the phase name is cut
        # (ellipsis), never the counts: the rate and times (~30 columns) go first, below 70
        # columns, and the bar below 50 (at 40 columns the counts were cut to "1…").
        width = self.console.width
        tiny = width < 40  # the name and the counts only
        counts = 2 * len(f"{size:,}") + (2 if tiny else 8)  # "n/size" (and " 100%")
        timing = width >= 70
        room = max(1, width - counts - (30 if timing else 0) - (14 if width >= 50 else 4))
        columns: list[Any] = [] if tiny else [SpinnerColumn()]
        columns.append(TextColumn(f"{number}/{total}: {name}", table_column=Column(
            no_wrap=True, overflow="ellipsis", max_width=room)))
        if width >= 50:
            columns.append(BarColumn(bar_width=None, table_column=Column(ratio=1)))
        columns += [MofNCompleteColumn()] if tiny else [MofNCompleteColumn(),
                                                        TaskProgressColumn()]
        if timing:
            columns += [TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                        TextColumn("ETA {task.fields[eta]}")]
        self._progress = Progress(*columns, console=self.console, transient=False,
                                  expand=True)
        self._progress.start()
        self._task = self._progress.add_task(name, total=size, rate="", eta="-:--:--")

    def advance(self, n: int = 1) -> None:
        if self._plain is not None:
            label, size, done, last = self._plain
            done += n
            now = time.monotonic()
            if now - last >= self.PLAIN_EVERY_S:
                self.console.print(f"{label}: {done:,}/{size:,} ({done / size:.0%})",
                                   soft_wrap=True)
                last = now
            self._plain = [label, size, done, last]
        if self._progress is not None:
            self._print_held(due=True)
            self._progress.advance(self._task, n)
            # The phase's average rate, not Rich's over its last samples: two workers
            # finishing their first batches together made that 319/s (ETA 0:00:03) where
            # the scan ran at 6/s.
            task = self._progress.tasks[0]
            if task.elapsed and task.completed:
                rate = task.completed / task.elapsed
                left = round(max(0, (task.total or 0) - task.completed) / rate)
                self._progress.update(self._task, rate=f"{rate:,.0f}/s",
                                      eta=f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}")

    #: Seconds problem lines wait above a live bar, to be printed together: each print
    #: redraws the bar (~1 KB), and 20k unreadable files took 20 s on a terminal, 3 piped.
    HOLD_S = 0.2

    def problem(self, problem: Problem) -> None:
        self.problems += 1
        if self.show_problems:
            from rich.markup import escape

            line = (f"[red]error[/red] {escape(f'[{problem.error}]')} "
                    f"{escape(shown(problem.path))}: {escape(problem.message)}")
            if self._progress is None:
                self.console.print(line, soft_wrap=True)
                return
            if not self._held:
                self._held_since = time.monotonic()
            self._held.append(line)
            self._print_held(due=True)

    def _print_held(self, due: bool = False) -> None:
        """Print the held problem lines, together; ``due``: only once they waited HOLD_S."""
        if self._held and not (due and time.monotonic() - self._held_since < self.HOLD_S):
            lines, self._held = self._held, []
            self.console.print("\n".join(lines), soft_wrap=True)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False, soft_wrap=True)

    def close(self) -> None:
        self._stop()

    def _stop(self) -> None:
        self._print_held()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


# ------------------------------------------------------ options several commands take, once

_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _method_option(help: str = "Perceptual hash algorithm.") -> _Decorator:
    # METHOD_NAMES, not lookalike.imaging.hashes.METHODS: importing hashes (NumPy, Pillow)
    # just to build the option parser would slow every command down.
    return click.option("--method", "-m", default=DEFAULT_METHOD, show_default=True,
                        type=click.Choice(METHOD_NAMES), help=help)


def _hash_size_option(help: str = "Hash size (grid side; bits per bin for colorhash). "
                      "Default: the method's.") -> _Decorator:
    return click.option("--hash-size", type=int, default=None, help=help)


def _threshold_option(help: str = "Max Hamming distance in bits for a match; 0 = identical "
                      "hashes. Default: the method's for its hash size (`lookalike methods`)."
                      ) -> _Decorator:
    return click.option("--threshold", "-t", type=int, default=None, help=help)


def _decode_option(help: str, default: str = "fast") -> _Decorator:
    return click.option("--decode", type=click.Choice(["fast", "full"]), default=default,
                        show_default=True, help=help)


def _trim_option(help: str) -> _Decorator:
    return click.option("--trim-borders/--keep-borders", default=True, show_default=True,
                        help=help)


def _invariant_option(help: str) -> _Decorator:
    return click.option("--invariant",
                        type=click.Choice(["none", "flips", "rotations", "dihedral"]),
                        default=DEFAULT_INVARIANT, show_default=True, help=help)


def _embed_options() -> _Decorator:
    """``--embed`` and ``--similarity``: copy-detection embeddings beside the hashes."""
    embed = click.option(
        "--embed", "embed", default=None, metavar="MODEL",
        help="Also compare copy-detection embeddings from MODEL (sscd, sscd-distilled, or a "
        "path to an .onnx file), to find crops, padding, small rotations and screenshots. "
        f"Needs {INSTALL_HINTS['embed']}; see docs/embeddings.md.")
    similarity = click.option(
        "--similarity", type=click.FloatRange(0, 1, min_open=True), default=None,
        help=f"Cosine similarity from which embeddings propose a match (with --embed). "
        f"Default: {DEFAULT_SIMILARITY}, each proposal verified; {DEFAULT_SIMILARITY_UNVERIFIED} "
        "with --no-verify.")
    verify = click.option(
        "--verify/--no-verify", default=True, show_default=True,
        help="Join an embedding match to a group only when the two pictures, aligned, also "
        "have matching hashes; --no-verify trusts similarity alone (finds more, and takes "
        "photos of one scene for copies).")
    return lambda f: embed(similarity(verify(f)))


def _band_option(help: str, off: str = "") -> _Decorator:
    return click.option("--band", type=click.IntRange(min=0), default=None, metavar="BITS",
                        help=help + " 0 = off. Default: the method's (`lookalike methods`), "
                        f"off at or below the threshold{off}.")


def _workers_option() -> _Decorator:
    return click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
                        help="Worker processes. Default: all cores; 1 = no subprocesses.")


def _cache_option(help: str) -> _Decorator:
    return click.option("--cache", "cache_path", type=click.Path(dir_okay=False, path_type=str),
                        default=None, help=help)


def _quiet_option(help: str = "No progress lines.") -> _Decorator:
    return click.option("--quiet", "-q", is_flag=True, help=help)


#: Groups of a plan `apply` prints on a terminal (piped or redirected: all of them).
PLAN_GROUPS_SHOWN = 50


def _report_format(output: str) -> str:
    """The format of the -o file, from its extension (:func:`format_for`)."""
    from lookalike.report.schema import format_for

    if os.path.splitext(output)[1].lower() in (".html", ".htm"):
        raise ConfigError(f"-o writes the report (JSON, CSV, text or paths); for the review "
                          f"page write --html {output}")
    try:
        return format_for(output)
    except ConfigError as exc:
        raise ConfigError(f"{exc}, or pass --format json|csv|text|paths|paths0") from None


@contextlib.contextmanager
def _bulk_gc() -> Iterator[None]:
    """Fewer cyclic-GC passes while a command builds many long-lived objects (``scan``).

    A warm re-scan of 20k files makes ~150k long-lived objects in a second (entries, cache
    rows, records); with the default thresholds (700, 10, 10) the collector runs hundreds of
    times and re-traverses them. Measured on `lookalike scan .cache/bench/small_tree_20000`
    (CPU seconds with workers, medians of interleaved runs): warm re-scan 0.54 s with this,
    0.58 s without (7% less, 15 runs each); cold scan 6.36 vs 6.27 s (no gain, 5 runs each).

    Here a pass starts every 200k net allocations (mypy's setting) and what exists already
    (click, the modules loaded so far) is frozen out of every pass; collection still runs,
    only rarer. On exit the previous thresholds come back (for callers that run commands
    in-process, e.g. tests) and every object moves to the oldest generation without a pass
    (freeze, then unfreeze), rather than being traversed by the young-generation pass that
    restoring a low threshold would trigger.
    """
    import gc

    threshold = gc.get_threshold()
    # unfreeze() thaws everything: leave freezing alone if the host process froze objects
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(200_000, 20, 20)
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        gc.set_threshold(*threshold)
        if freeze:
            gc.unfreeze()


class _Cli(click.Group):
    """Remembers the raw arguments so reports can record the exact command that made them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["lookalike.argv"] = ["lookalike", *args]
        return super().parse_args(ctx, args)


def _argv() -> list[str]:
    return list(click.get_current_context().meta.get("lookalike.argv", ["lookalike"]))


@click.group(cls=_Cli, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="lookalike")
def cli() -> None:
    """Find exact and near-duplicate images, show them, and remove them safely.

    Start with `lookalike scan FOLDER -o report.json`; nothing is ever changed by a scan.
    """


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(readable=False, path_type=str))
@_method_option()
@_hash_size_option()
@_threshold_option()
@_invariant_option("Also match mirrored (flips), 90/180/270-degree rotated (rotations) or "
                   "all eight flipped/rotated (dihedral) copies.")
@_trim_option("Also hash the content inside flat bars (padding, letterbox, margins), so a "
              "padded copy matches its original.")
@_embed_options()
@_band_option("Verified hash band: photos whose hashes differ by more than the threshold, up "
              "to BITS, are grouped when their pictures, aligned, are one picture "
              "(brightened, contrast or gamma edits).", off=" and with --grouping star")
@click.option("--grouping", type=click.Choice(["components", "star"]), default="components",
              show_default=True,
              help="components: chain matches; star: all within threshold of the representative.")
@click.option("--format", "fmt",
              type=click.Choice(["text", "json", "csv", "paths", "paths0"]), default=None,
              help="Report format. Default: text on stdout, or from the -o file's extension. "
              "paths: the files to remove (not kept; with --reference the purge list), one per "
              "line, e.g. `--format paths | xargs -d '\\n' rm`; paths0: the same, "
              "NUL-terminated, for `xargs -0`.")
@click.option("--output", "-o", type=click.Path(path_type=str), default=None,
              help="Write the report to this file (the groups are printed as text too).")
@_decode_option("fast: large JPEGs decoded at reduced scale, and hashed again from every "
                "pixel when they may have a match (same groups as full); full: every pixel of "
                "every image, bit-exact with ImageHash.")
@click.option("--exact-decode", is_flag=True, help="Same as --decode full.")
@_workers_option()
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
              show_default=True,
              help="Refuse images declaring more pixels than this (decompression bombs).")
@click.option("--decode-timeout", "decode_timeout", type=click.FloatRange(min=0),
              default=DEFAULT_DECODE_TIMEOUT, show_default=True, metavar="SECONDS",
              help="Stop a worker stuck this long on one file and report the file as "
              "`timeout`; 0 = no limit. Not enforced with --workers 1 (in-process) or on Dask.")
@click.option("--follow-symlinks", is_flag=True, help="Follow symbolic links while walking.")
@_cache_option("Hash cache file. Default: $LOOKALIKE_CACHE or ~/.cache/lookalike/hashes.sqlite.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the hash cache.")
@click.option("--html", "html_out", type=click.Path(path_type=str), default=None,
              help="Also write an HTML page to review the groups. It needs the JSON report: "
              "-o FILE.json, else it is written beside the page as NAME.json.")
@click.option("--reference", "reference", multiple=True,
              type=click.Path(readable=False, path_type=str),
              help="Leakage mode: a reference set (e.g. train/), repeatable. Reports only the "
              "images of PATHS (test/, val/, ...) with a near duplicate in the reference, a "
              "split-overlap matrix and a purge list. `apply` never touches reference files.")
@click.option("--keep", "keep", multiple=True,
              help="Keep policy recorded in the report (see `apply --help`); `apply` uses it "
              "by default.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local",
              show_default=True, help="local: processes on this machine; dask: a Dask cluster "
              "(a local one of --workers processes unless --scheduler). Needs "
              f"{INSTALL_HINTS['dask']}.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Dask scheduler to connect to, e.g. tcp://10.0.0.5:8786 (implies --engine "
              "dask). Workers must reach the images by the same paths or URLs.")
@click.option("--files-from", "files_from", default=None, metavar="FILE",
              help="Also scan the paths/URLs listed in FILE: text, one per line (blank lines "
              "and lines starting with # are skipped), or .parquet (--column names the "
              "column). Local path or URL.")
@click.option("--input-format", "input_format",
              type=click.Choice(["auto", "files", "tar", "parquet"]), default="auto",
              show_default=True, help="How to read PATHS: image files (local paths, s3:// "
              "or gs:// URLs and globs of them, as s3://bucket/*.jpg; a local glob is the "
              "shell's to expand), WebDataset tar shards, or Parquet files with image bytes. "
              "auto: .tar and .parquet by extension, anything else files.")
@click.option("--column", default=None,
              help="Parquet column of paths (--files-from) or of image bytes (parquet inputs), "
              "or a saved Hugging Face dataset's image column. Default: guessed from names and "
              "types (a dataset: its first Image column).")
@click.option("--name-column", "name_column", default=None,
              help="Parquet column naming each image (parquet inputs). Default: path/name/"
              "key/id, else the row number.")
@click.option("--parquet-out", "parquet_out", default=None, metavar="PATH",
              help="Also write every file's result (hashes, sizes, errors) to this Parquet "
              "folder while scanning; a re-run with the same PATH skips what is there.")
@click.option("--retries", type=click.IntRange(min=0), default=None,
              help="Times a failed batch (a crashed or lost worker) is retried, file by file, "
              "before its files are reported as errors. Default: 1.")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=None,
              help="Images per work item sent to a worker. Default: 16; with --engine dask "
              "up to 256 (each task costs milliseconds), at least 4 items per worker.")
@_quiet_option("No progress or per-file error lines.")
@_bulk_gc()
def scan(paths: tuple[str, ...], method: str, hash_size: int | None, threshold: int | None,
         invariant: str, trim_borders: bool, embed: str | None, similarity: float | None,
         verify: bool, band: int | None, grouping: str, fmt: str | None,
         output: str | None, decode: str, exact_decode: bool, workers: int | None,
         max_pixels: int, decode_timeout: float,
         follow_symlinks: bool, cache_path: str | None, no_cache: bool, html_out: str | None,
         reference: tuple[str, ...], keep: tuple[str, ...], engine: str,
         scheduler: str | None, files_from: str | None, input_format: str, column: str | None,
         name_column: str | None, parquet_out: str | None, retries: int | None,
         batch_size: int | None, quiet: bool) -> None:
    """Scan PATHS (folders, walked recursively, or files; URLs, tar shards and Parquet files
    with --input-format) and report duplicate groups."""
    from lookalike.jobs import scan_to_files
    from lookalike.pipeline import ScanResult

    given = click.get_current_context().get_parameter_source
    if exact_decode and decode != "full" and given("decode") is ParameterSource.COMMANDLINE:
        raise click.UsageError(f"--exact-decode means --decode full, not --decode {decode}")
    if no_cache and cache_path is not None:
        raise click.UsageError("--no-cache and --cache contradict each other; give one")
    if scheduler is not None and engine == "local" and given("engine") is \
            ParameterSource.COMMANDLINE:  # it ran on the scheduler's cluster without a word
        raise click.UsageError("--engine local and --scheduler contradict each other; a "
                               "scheduler means --engine dask")
    config = ScanConfig(method=method, hash_size=hash_size, threshold=threshold,
                        invariant=invariant,  # type: ignore[arg-type]
                        trim_borders=trim_borders, embed=embed, similarity=similarity,
                        verify=verify, band=band,
                        grouping=grouping,  # type: ignore[arg-type]
                        decode="full" if exact_decode else decode,  # type: ignore[arg-type]
                        workers=workers, max_pixels=max_pixels,
                        follow_symlinks=follow_symlinks, decode_timeout=decode_timeout or None)
    if output is not None and fmt is None:
        fmt = _report_format(output)
    result = scan_to_files(
        paths, config, output=output, format=fmt,  # type: ignore[arg-type]
        html=html_out, reference=reference, keep=keep, cache=cache_path,
        use_cache=not no_cache, argv=_argv(), reporter=ConsoleReporter(quiet=quiet),
        files_from=files_from, input_format=input_format, column=column,
        name_column=name_column, engine=engine, scheduler=scheduler, parquet_out=parquet_out,
        retries=retries, batch_size=batch_size)
    if fmt == "csv" and output is None and result.errors:
        click.echo(f"{len(result.errors)} files could not be used (listed above unless -q); "
                   "-o FILE.csv also writes them to FILE.errors.csv", err=True)
    scanned = result if isinstance(result, ScanResult) else result.scan  # a dataset's cleanup
    if scanned.errors and not scanned.records:  # nothing was compared: not a clean result
        n = len(scanned.errors)
        hint = (" (relative paths in a --files-from list are taken from the current folder)"
                if files_from else "")
        raise PartialFailure(f"no image could be read: {n} file{'s' if n != 1 else ''} "
                             f"failed{hint}")


@cli.command("hash")
@click.argument("files", nargs=-1, required=True, type=click.Path(readable=False, path_type=str))
@_method_option()
@_hash_size_option()
@_decode_option("fast: reduced-scale JPEG decoding; full: bit-exact with ImageHash.",
                default="full")
def hash_cmd(files: tuple[str, ...], method: str, hash_size: int | None, decode: str) -> None:
    """Print `HEX  PATH` for each of FILES: ImageHash's hex string of the same picture
    (turned upright by its EXIF orientation, transparency on white, 8 bits per channel, as
    lookalike reads every image). Exit code 1 if a file could not be hashed."""
    from lookalike.jobs import hash_files

    # One plain hash per file, as ImageHash prints it: no flipped/turned or trimmed segments.
    config = ScanConfig(method=method, hash_size=hash_size, decode=decode,  # type: ignore[arg-type]
                        pixel_digest=False, invariant="none", trim_borders=False)
    failed = 0
    for f, out in hash_files(files, config):
        # Names as scan prints them: a newline or a terminal escape in a name would read
        # as another file (and click strips escapes from piped output: the name changed).
        if isinstance(out, Problem):
            failed += 1
            click.echo(f"error [{out.error}] {shown(f)}: {out.message}", err=True)
        else:
            click.echo(f"{out.hash}  {shown(f)}")
    if failed:
        raise PartialFailure(f"{failed} of {len(files)} files could not be hashed")


@cli.command("methods")
def methods_cmd() -> None:
    """List hash methods, their default sizes and thresholds and what they are good at."""
    from lookalike.config import method_spec
    from lookalike.imaging.hashes import METHODS

    click.echo(f"{'method':<15} {'size':>4} {'sizes':<11} {'bits':>4} {'-t':>3} {'band':>4}  "
               "what it is")
    for m in METHODS.values():
        compat = f" (= imagehash.{m.imagehash})" if m.imagehash else ""
        spec = method_spec(m.name)
        listed = spec.listed()
        sizes = (f"{spec.min_size}..{spec.max_size}" if listed is None
                 else ",".join(map(str, listed)))
        click.echo(f"{m.name:<15} {m.default_size:>4} {sizes:<11} "
                   f"{m.nbits(m.default_size):>4} {spec.threshold:>3} {spec.band:>4}  "
                   f"{m.summary}{compat}")
    click.echo("size: the default --hash-size; sizes: those allowed.")
    click.echo("-t: the default threshold at the default size (other sizes: measured, as "
               "phash 16 = 6,\nor the same share of the bits as the default size; above "
               "it, as the largest measured size\nbelow): the largest at which pair "
               "precision stays >= 0.999 on benchmarks/accuracy (0 where\nnone does).")
    click.echo("band: the default --band at the default size: hashes up to this many bits "
               "apart join\nwhen aligning the two pictures confirms them (0: none).")


@cli.command("report")
@click.argument("report_path", metavar="REPORT", type=click.Path(dir_okay=False, path_type=str))
@click.option("--html", "html_out", required=True, type=click.Path(path_type=str),
              help="Write the HTML review page here.")
@click.option("--thumbnails", type=click.Choice(["auto", "inline", "files", "none"]),
              default="auto", show_default=True,
              help="inline: embedded in the page; files: in a NAME_files/ folder beside it; "
              "auto: inline up to 2,000 images, else files.")
@_quiet_option()
def report_cmd(report_path: str, html_out: str, thumbnails: str, quiet: bool) -> None:
    """Render REPORT (JSON, from `scan -o`) as an HTML page to review groups and export
    keep/remove decisions for `lookalike apply`. Works offline; nothing is changed."""
    from lookalike.jobs import write_review_page

    write_review_page(report_path, html_out, thumbnails=thumbnails,  # type: ignore[arg-type]
                      reporter=ConsoleReporter(quiet=quiet))


_KEEP_HELP = ("Keep rule, applied in order (repeat the option or separate with commas; "
              "a match: rule takes the rest of its value, so give it its own option): "
              "original (the file most likely the original: RAW, name, camera EXIF, "
              "resolution at the group's aspect ratio, quality), largest-resolution, "
              "largest-file, smallest-file, oldest, newest, shortest-path, prefer-lossless, "
              "match:GLOB (on the absolute path); or none to act on every copy. Default: the "
              "report's policy, else original.")


@cli.command("apply")
@click.argument("source", metavar="REPORT_OR_PLAN", type=click.Path(dir_okay=False, path_type=str))
@click.option("--action", "-a", required=True,
              type=click.Choice(["move", "delete", "hardlink", "symlink"]),
              help="move: into the --to folder (undoable); delete (NOT undoable); hardlink/"
              "symlink: replace byte-identical copies by links to the file kept (undoable).")
@click.option("--to", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Quarantine folder of --action move, outside the scanned folders; a file "
              "goes to TO/<scanned folder's name>/<its path inside that folder>.")
@click.option("--keep", "-k", multiple=True, help=_KEEP_HELP)
@click.option("--protect", multiple=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder whose files are never touched and are kept first (repeatable).")
@click.option("--remove-in", "remove_in", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=str),
              help="Folder rule: act only on duplicates under DIR (repeatable); every other "
              "copy stays. A group with all its copies under DIR keeps one (chosen by --keep). "
              "The plan says which rule decided each file.")
@click.option("--keep-in", "keep_in", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=str),
              help="Folder rule: keep the copies under DIR, also inside a --remove-in folder "
              "(the deepest folder rule decides), e.g. --remove-in Exports --keep-in "
              "Exports/print; kept copies are preferred as link targets.")
@click.option("--yes", "-y", is_flag=True,
              help="Really change files. Without it the plan is printed and nothing changes.")
@click.option("--journal", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Undo journal to write, or to resume after an interrupted run. Default: in "
              "the --to folder, else beside the report.")
@click.option("--collapse-links", is_flag=True,
              help="Also act on the other names (hard links) of each file kept in a duplicate "
              "group, so one name of it remains (files in no group keep all their names). Off "
              "by default: two names of one file are never duplicates.")
@_quiet_option("No progress lines (operations that fail are still named).")
def apply_cmd(source: str, action: str, to: str | None, keep: tuple[str, ...],
              protect: tuple[str, ...], remove_in: tuple[str, ...], keep_in: tuple[str, ...],
              yes: bool, journal: str | None, collapse_links: bool, quiet: bool) -> None:
    """Act on the duplicates in REPORT_OR_PLAN (a scan report, or decisions exported from the
    HTML review page), keeping one file per group.

    A dry run by default: prints one line per file and the totals, and changes nothing. With
    --yes every change is first written to a journal; `lookalike undo JOURNAL` puts moved and
    linked files back. Groups with a file changed since the scan are skipped. Exit code 1 if
    any file operation failed.
    """
    from lookalike.jobs import apply_plan

    if action == "move" and to is None:
        raise ConfigError("--action move needs --to DIR, the quarantine folder that "
                          "receives the duplicates (outside the scanned folders)")
    # On a terminal the first groups of a long plan; piped or redirected, all of it.
    result = apply_plan(source, action=action, keep=keep,  # type: ignore[arg-type]
                        protect=protect, to=to, journal=journal, yes=yes,
                        collapse_links=collapse_links, keep_in=keep_in, remove_in=remove_in,
                        reporter=ConsoleReporter(quiet=quiet, problems=True),
                        shown_groups=PLAN_GROUPS_SHOWN if sys.stdout.isatty() else None)
    if result is not None and not result.ok:
        # Each error line says whether its operation was rolled back or needs `undo`.
        raise PartialFailure(f"{len(result.failed)} file operations failed (see the errors "
                             "above)")


@cli.command("undo")
@click.argument("journal", metavar="JOURNAL", type=click.Path(path_type=str))
@_quiet_option("No progress lines (files that cannot be restored are still named).")
def undo_cmd(journal: str, quiet: bool) -> None:
    """Put back every file that `apply` moved or linked, as recorded in JOURNAL (also after a
    crash or kill). Safe to run again. Deleted files cannot come back. Exit code 1 if anything
    could not be restored.
    """
    from lookalike.actions.apply import undo
    from lookalike.report.schema import plural

    result = undo(journal, reporter=ConsoleReporter(quiet=quiet, problems=True))
    click.echo(f"restored {plural(len(result.restored), 'file')}; rolled back "
               f"{plural(result.rolled_back, 'unfinished or failed operation')}")
    if result.not_undoable:
        click.echo(f"{plural(len(result.not_undoable), 'deleted file')} cannot be restored "
                   "(--action delete is not undoable)")
    if not result.ok:
        raise PartialFailure(f"{len(result.failed)} operations could not be undone (see the "
                             "errors above); they stay in the journal, fix the cause and run "
                             "undo again")


@cli.command("query")
@click.argument("images", nargs=-1, required=True, type=click.Path(readable=False, path_type=str))
@_method_option("Hash method of the cached scan.")
@_hash_size_option("Hash size of the cached scan.")
@_threshold_option("Max Hamming distance in bits for a match.")
@_decode_option("Decode mode of the cached scan.")
@_invariant_option("Flip/rotation invariance of the cached scan.")
@_trim_option("Border trimming of the cached scan.")
@_embed_options()
@_band_option("Verified hash band: cached photos whose hashes differ by more than the "
              "threshold, up to BITS, match when their pictures, aligned, are one picture.")
@_cache_option("Hash cache filled by earlier scans (default as for scan); it must exist.")
@click.option("--in", "under", type=click.Path(path_type=str), default=None,
              help="Only match cached images under this folder.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True,
              help="text: each query image, then its matches a line each with their "
                   "distance in bits; json: the same as one JSON object (with each hash "
                   "and how it matched), for scripts.")
def query_cmd(images: tuple[str, ...], method: str, hash_size: int | None,
              threshold: int | None, decode: str, invariant: str, trim_borders: bool,
              embed: str | None,
              similarity: float | None, verify: bool, band: int | None, cache_path: str | None,
              under: str | None, fmt: str) -> None:
    """Find matches of IMAGES among everything earlier scans put in the hash cache.

    Only IMAGES (files, not folders) are decoded; the collection is not rescanned. Use the
    same --method, --hash-size, --decode, --invariant, --keep-borders (and --embed) as the
    scan that filled the cache: a
    cache without such hashes is an error that lists the settings it has. With --embed,
    images whose embeddings match also count, verified as in a scan, and so do the images
    whose hashes match those (as in a scan's group). Matches whose file is
    gone or changed since the scan are marked. Exit code 1 if a query image could not be
    read.
    """
    import json

    from lookalike.analysis.query import find_matches, matches_to_dict, render_matches
    from lookalike.store.cache import default_cache_path

    config = ScanConfig(method=method, hash_size=hash_size, threshold=threshold,
                        decode=decode,  # type: ignore[arg-type]
                        invariant=invariant,  # type: ignore[arg-type]
                        trim_borders=trim_borders, embed=embed, similarity=similarity,
                        verify=verify, band=band)
    results, problems = find_matches(images, cache_path or default_cache_path(), config,
                                     under=under)
    if fmt == "json":
        click.echo(json.dumps(matches_to_dict(results, problems), indent=1))
    else:
        click.echo(render_matches(results), nl=False)
        for p in problems:
            click.echo(f"error [{p.error}] {shown(p.path)}: {shown(p.message)}", err=True)
    if problems:
        raise PartialFailure(f"{len(problems)} of {len(images)} query images could not be "
                             "read")


@cli.command("calibrate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(readable=False, path_type=str))
@click.option("--target-precision", type=click.FloatRange(0, 1, min_open=True), default=0.999,
              show_default=True, help="Pair precision the recommended threshold must reach.")
@click.option("--sample", type=click.IntRange(min=2), default=500, show_default=True,
              help="How many of the images to sample (at random, seeded).")
@_method_option()
@_hash_size_option("Hash size. Default: as scan's.")
@_invariant_option("Calibrate flip/rotation invariance too (adds mirrored/rotated copies).")
@_trim_option("Border trimming, as for scan.")
@_decode_option("Decode mode, as for scan.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@_workers_option()
@click.option("--embed", "embed", default=None, metavar="MODEL",
              help="Also measure how this embedding model, with verification, finds cropped, "
              "letterboxed, rotated, framed and captioned copies of up to 100 of the sampled "
              "images, and recommend a --similarity.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=str),
              default=None, help="Also write the whole curve and recommendation as JSON.")
@_quiet_option("No progress or per-file error lines.")
def calibrate_cmd(paths: tuple[str, ...], target_precision: float, sample: int, method: str,
                  hash_size: int | None, invariant: str, trim_borders: bool, decode: str,
                  seed: int, workers: int | None, embed: str | None, json_out: str | None,
                  quiet: bool) -> None:
    """Recommend a --threshold for your own images: hash a sample of PATHS and edited
    copies of them (resized, re-encoded, brightness, contrast, gamma, blur, noise, slightly
    cropped; made in memory) for recall; pairs of different files whose thumbnails match
    are duplicates you already have (true pairs), the others false pairs. Prints the
    precision/recall curve. Nothing is written except --json."""
    from lookalike.jobs import calibrate_to_file

    calibrate_to_file(paths, json_out=json_out, reporter=ConsoleReporter(quiet=quiet),
                      target_precision=target_precision, sample=sample, method=method,
                      hash_size=hash_size, invariant=invariant, trim_borders=trim_borders,
                      decode=decode, seed=seed, workers=workers, embed=embed)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point: run the command line ``argv`` and exit with its code."""
    # File names that are not UTF-8 arrive as surrogate escapes; print them as their original
    # bytes (as ls does) rather than crash on a strict UTF-8 stdout.
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
    sys.exit(_run(argv))


#: What click (>= 8.2) raises for a group called without a command: its help is the message.
_HELP_ASKED = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _run(argv: list[str] | None) -> int:
    """Run a command; map its outcome to an exit code and a message. The only such place.

    A reader that closes stdout early (``| head``) needs no case here: click catches the
    broken pipe itself, silences further output and exits 1.
    """
    try:
        cli.main(args=argv, prog_name="lookalike", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        # Ctrl-C; click turns a KeyboardInterrupt raised in a command into Abort.
        click.echo("interrupted", err=True)
        return 130
    except Interrupted as exc:
        if exc.undoing:
            click.echo(f"interrupted; run `lookalike undo {exc.journal}` again to finish "
                       "putting the files back", err=True)
        else:
            click.echo(f"interrupted; `lookalike undo {exc.journal}` puts back what was done, "
                       f"or re-run with --journal {exc.journal} to finish", err=True)
        return exc.exit_code
    except click.ClickException as exc:  # bad usage (exit 2): one line, as every error
        if isinstance(exc, _HELP_ASKED):  # a bare `lookalike`: the help, as click shows it
            exc.show()
            return exc.exit_code
        hint = ""
        if isinstance(exc, click.UsageError):  # (the parser's own errors carry no command)
            hint = f" (see `{exc.ctx.command_path if exc.ctx else 'lookalike'} --help`)"
        # Click lays some messages out on lines ("Choose from:\n\tmove,\n\t..."): one line.
        said = " ".join(exc.format_message().split())
        click.echo(f"error: {shown(said)}{hint}", err=True)
        return exc.exit_code
    except LookalikeError as exc:
        # One line, whatever the names in it hold (a newline, a terminal escape).
        click.echo(f"error: {shown(str(exc))}", err=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    main()
