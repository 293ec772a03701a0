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
@click.option("--decode", type=click.Choice(["fast", "full"]), default="full", show_default=True,
              help="fast: reduced-scale JPEG decoding; full: bit-exact with ImageHash.")
@click.option("--workers", "-j", type=int, default=None,
              help="Worker processes. Default: all cores; 1 = no subprocesses.")
@click.option("--max-pixels", type=int, default=178_956_970, show_default=True,
              help="Refuse images declaring more pixels than this (decompression bombs).")
@click.option("--follow-symlinks", is_flag=True, help="Follow symbolic links while walking.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or per-file error lines.")
def scan(paths: tuple[str, ...], method: str, hash_size: int | None, threshold: int,
         grouping: str, fmt: str | None, output: str | None, decode: str, workers: int | None,
         max_pixels: int, follow_symlinks: bool, quiet: bool) -> None:
    """Scan PATHS (folders, walked recursively, or files) and report duplicate groups."""
    from .pipeline import run_scan
    from .report import render_text, write_report

    config = ScanConfig(method=method, hash_size=hash_size, threshold=threshold,
                        grouping=grouping, decode=decode, workers=workers,  # type: ignore[arg-type]
                        max_pixels=max_pixels, follow_symlinks=follow_symlinks)
    reporter = ConsoleReporter(quiet=quiet)
    result = run_scan(paths, config, reporter=reporter)
    argv = _argv()
    if output:
        fmt = fmt or {".csv": "csv", ".txt": "text"}.get(os.path.splitext(output)[1].lower(),
                                                          "json")
        write_report(result, output, format=fmt, argv=argv)
        click.echo(render_text(result, max_groups=20), nl=False)
        click.echo(f"report written to {os.path.abspath(output)}")
    else:
        write_report(result, sys.stdout, format=fmt or "text", argv=argv)


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
