"""The ``lookalike`` command: thin sugar over the library.

Each command parses options into a config object and calls one library function. Library
errors are mapped to exit codes in one place (:func:`main`): 0 success (duplicates found or
not), 1 something failed at run time, 2 bad usage or config, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from . import __version__
from .config import DEFAULT_METHOD, DEFAULT_THRESHOLD, ScanConfig
from .errors import LookalikeError, Problem

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class ConsoleReporter:
    """Rich progress bar on a terminal; plain, quiet lines otherwise (CI logs)."""

    def __init__(self, *, quiet: bool = False, progress: bool | None = None) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        interactive = self.console.is_terminal and not os.environ.get("CI")
        self.show_progress = (progress if progress is not None else interactive) and not quiet
        self._progress: Any = None
        self._task: Any = None
        self.problems = 0

    def phase(self, number: int, total: int, name: str, size: int | None) -> None:
        self._stop()
        if not self.show_progress:
            if not self.quiet:
                suffix = f" ({size} files)" if size else ""
                self.console.print(f"{number}/{total}: {name}{suffix}", soft_wrap=True)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            SpinnerColumn(), TextColumn(f"{number}/{total}: {name}"), BarColumn(),
            MofNCompleteColumn(), TaskProgressColumn(), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(name, total=size, rate="")

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)
            task = self._progress.tasks[0]
            if task.speed:
                self._progress.update(self._task, rate=f"{task.speed:,.0f}/s")

    def problem(self, problem: Problem) -> None:
        self.problems += 1
        if not self.quiet:
            from rich.markup import escape

            self.console.print(f"[red]error[/red] {escape(f'[{problem.error}]')} "
                               f"{escape(problem.path)}: {escape(problem.message)}",
                               soft_wrap=True)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False, soft_wrap=True)

    def close(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _method_choices() -> list[str]:
    from .hashes import METHODS

    return list(METHODS)


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
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--method", "-m", default=DEFAULT_METHOD, show_default=True,
              type=click.Choice(_method_choices()), help="Perceptual hash algorithm.")
@click.option("--hash-size", type=int, default=None,
              help="Hash size (grid side; bits per bin for colorhash). Default: the method's.")
@click.option("--threshold", "-t", type=int, default=DEFAULT_THRESHOLD, show_default=True,
              help="Max Hamming distance in bits for a match; 0 = identical hashes.")
@click.option("--grouping", type=click.Choice(["components", "star"]), default="components",
              show_default=True,
              help="components: chain matches; star: all within threshold of the representative.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default=None,
              help="Report format. Default: text on stdout, or from the -o file's extension.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the report to this file (and a summary to stdout).")
@click.option("--decode", type=click.Choice(["fast", "full"]), default="fast", show_default=True,
              help="fast: reduced-scale decoding (hashes may drift a bit or two); full: every "
              "pixel, bit-exact with ImageHash.")
@click.option("--exact-decode", is_flag=True, help="Same as --decode full.")
@click.option("--workers", "-j", type=int, default=None,
              help="Worker processes. Default: all cores; 1 = no subprocesses.")
@click.option("--max-pixels", type=int, default=178_956_970, show_default=True,
              help="Refuse images declaring more pixels than this (decompression bombs).")
@click.option("--follow-symlinks", is_flag=True, help="Follow symbolic links while walking.")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False, path_type=str),
              default=None, help="Hash cache file. Default: $LOOKALIKE_CACHE or "
              "~/.cache/lookalike/hashes.sqlite.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the hash cache.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=str), default=None,
              callback=lambda _c, _p, v: _check_html_out(v),
              help="Also write an HTML page to review the groups. It needs the JSON report: "
              "-o FILE.json, else it is written beside the page as NAME.json.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or per-file error lines.")
def scan(paths: tuple[str, ...], method: str, hash_size: int | None, threshold: int,
         grouping: str, fmt: str | None, output: str | None, decode: str, exact_decode: bool,
         workers: int | None, max_pixels: int, follow_symlinks: bool, cache_path: str | None, no_cache: bool,
         html_out: str | None, quiet: bool) -> None:
    """Scan PATHS (folders, walked recursively, or files) and report duplicate groups."""
    from .pipeline import run_scan
    from .report import render_text, write_report

    if exact_decode:
        decode = "full"
    config = ScanConfig(method=method, hash_size=hash_size, threshold=threshold,
                        grouping=grouping, decode=decode, workers=workers,  # type: ignore[arg-type]
                        max_pixels=max_pixels, follow_symlinks=follow_symlinks)
    reporter = ConsoleReporter(quiet=quiet)
    cache = None if no_cache else _open_cache(cache_path)
    try:
        result = run_scan(paths, config, reporter=reporter, cache=cache)
    finally:
        if cache is not None:
            cache.close()
    argv = _argv()
    json_path = None
    if output:
        fmt = fmt or {".csv": "csv", ".txt": "text"}.get(os.path.splitext(output)[1].lower(),
                                                          "json")
        write_report(result, output, format=fmt, argv=argv)
        json_path = output if fmt == "json" else None
        click.echo(render_text(result, max_groups=20), nl=False)
        click.echo(f"report written to {os.path.abspath(output)}")
    elif html_out:
        click.echo(render_text(result, max_groups=20), nl=False)
    else:
        write_report(result, sys.stdout, format=fmt or "text", argv=argv)
    if html_out:
        if json_path is None:
            # Exported decisions name the JSON report, so the page needs one on disk.
            stem, ext = os.path.splitext(html_out)
            json_path = f"{html_out}.json" if ext.lower() == ".json" else f"{stem}.json"
            write_report(result, json_path, format="json", argv=argv)
            click.echo(f"report written to {os.path.abspath(json_path)}")
        _render_html(json_path, html_out, "auto", quiet)


def _open_cache(path: str | None) -> Any:
    from .cache import HashCache

    return HashCache(path)


@cli.command("hash")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--method", "-m", default=DEFAULT_METHOD, show_default=True,
              type=click.Choice(_method_choices()), help="Perceptual hash algorithm.")
@click.option("--hash-size", type=int, default=None, help="Hash size. Default: the method's.")
@click.option("--decode", type=click.Choice(["fast", "full"]), default="full", show_default=True,
              help="fast: reduced-scale JPEG decoding; full: bit-exact with ImageHash.")
def hash_cmd(files: tuple[str, ...], method: str, hash_size: int | None, decode: str) -> None:
    """Print `HEX  PATH` for each of FILES (hex strings match ImageHash's)."""
    from .config import ScanConfig as _Cfg
    from .pipeline import hash_file
    from .sources import FileEntry

    config = _Cfg(method=method, hash_size=hash_size, decode=decode,  # type: ignore[arg-type]
                  pixel_digest=False)
    failed = 0
    for f in files:
        path = os.path.abspath(f)
        out = hash_file(FileEntry(path, 0, 0, path), config)
        if isinstance(out, Problem):
            failed += 1
            click.echo(f"error [{out.error}] {f}: {out.message}", err=True)
        else:
            click.echo(f"{out.hash}  {f}")
    if failed:
        sys.exit(1)


@cli.command("methods")
def methods_cmd() -> None:
    """List hash methods, their default sizes and what they are good at."""
    from .hashes import METHODS

    for m in METHODS.values():
        compat = f" (= imagehash.{m.imagehash})" if m.imagehash else ""
        click.echo(f"{m.name:<15} size {m.default_size:<3} {m.summary}{compat}")


@cli.command("report")
@click.argument("report_path", metavar="REPORT", type=click.Path(dir_okay=False, path_type=str))
@click.option("--html", "html_out", required=True, type=click.Path(dir_okay=False, path_type=str),
              callback=lambda _c, _p, v: _check_html_out(v),
              help="Write the HTML review page here.")
@click.option("--thumbnails", type=click.Choice(["auto", "inline", "files", "none"]),
              default="auto", show_default=True,
              help="inline: embedded in the page; files: in a NAME_files/ folder beside it; "
              "auto: inline up to 2,000 images, else files.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def report_cmd(report_path: str, html_out: str, thumbnails: str, quiet: bool) -> None:
    """Render REPORT (JSON, from `scan -o`) as an HTML page to review groups and export
    keep/remove decisions for `lookalike apply`. Works offline; nothing is changed."""
    _render_html(report_path, html_out, thumbnails, quiet)


def _check_html_out(path: str | None) -> str | None:
    # Checked while parsing, so a typo fails before a long scan rather than after it.
    if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise click.BadParameter(f"folder {os.path.dirname(os.path.abspath(path))} does not "
                                 "exist; create it first", param_hint="--html")
    return path


def _render_html(report_path: str, html_out: str, thumbnails: str, quiet: bool) -> None:
    from .html import write_html

    summary = write_html(report_path, html_out, thumbnails=thumbnails,  # type: ignore[arg-type]
                         reporter=ConsoleReporter(quiet=quiet))
    where = f" (thumbnails in {summary.thumbnail_dir})" if summary.thumbnail_dir else ""
    click.echo(f"HTML report written to {summary.path}{where}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: map library errors to messages and exit codes."""
    try:
        cli.main(args=argv, prog_name="lookalike", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted; nothing was changed", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LookalikeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(0)


if __name__ == "__main__":
    main()
