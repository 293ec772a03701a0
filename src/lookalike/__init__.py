"""lookalike: find exact and near-duplicate images, show them, and remove them safely.

Quick start::

    import lookalike

    result = lookalike.scan(["photos/"], threshold=4)
    for group in result.groups:
        print(group.representative, [m.record.path for m in group.members[1:]])
    lookalike.write_report(result, "report.json")

``import lookalike`` is light: Pillow, SciPy, Jinja2 and Dask load only when needed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lookalike.config import DEFAULT_HASH_SIZE, DEFAULT_METHOD, DEFAULT_THRESHOLD, ScanConfig
from lookalike.errors import (
    ConfigError,
    DecodeError,
    Interrupted,
    JournalError,
    LookalikeError,
    PartialFailure,
    Problem,
    ReportError,
    TooManyPairs,
)
from lookalike.events import NullReporter, Reporter
from lookalike.model import FileFacts, Group, Hash, ImageRecord, Member
from lookalike.version import __version__

if TYPE_CHECKING:
    from PIL.Image import Image

    from lookalike.actions.apply import ApplyResult, UndoResult, apply, undo
    from lookalike.actions.plan import Operation, Plan, plan
    from lookalike.analysis.calibrate import Calibration, calibrate
    from lookalike.analysis.dataset import DatasetCleanup, dedupe_dataset
    from lookalike.analysis.leakage import Leakage, find_leakage
    from lookalike.executors.base import Executor
    from lookalike.grouping.keep import KeepPolicy
    from lookalike.imaging.pdq import PdqHash
    from lookalike.inputs.listing import InputFormat
    from lookalike.pipeline import ScanResult
    from lookalike.report.html import HtmlSummary, write_html
    from lookalike.report.schema import Report, read_report, remove_paths, write_report
    from lookalike.store.cache import HashCache
    from lookalike.store.parquet import ParquetStore, read_results

# Public names whose modules load on first use (PEP 562), so ``import lookalike`` and the
# ``lookalike`` command start fast: name -> submodule that defines it.
_LAZY = {
    "ApplyResult": "actions.apply",
    "UndoResult": "actions.apply",
    "apply": "actions.apply",
    "undo": "actions.apply",
    "Calibration": "analysis.calibrate",
    "calibrate": "analysis.calibrate",
    "DatasetCleanup": "analysis.dataset",
    "dedupe_dataset": "analysis.dataset",
    "KeepPolicy": "grouping.keep",
    "HtmlSummary": "report.html",
    "write_html": "report.html",
    "Leakage": "analysis.leakage",
    "find_leakage": "analysis.leakage",
    "ParquetStore": "store.parquet",
    "read_results": "store.parquet",
    "ScanResult": "pipeline",
    "Operation": "actions.plan",
    "Plan": "actions.plan",
    "plan": "actions.plan",
    "Report": "report.schema",
    "read_report": "report.schema",
    "remove_paths": "report.schema",
    "write_report": "report.schema",
}

def __getattr__(name: str) -> Any:
    """Load a lazily exported name (see ``_LAZY``) from its submodule on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    # The public API only (what tab completion shows), not this module's own imports.
    return sorted({*__all__, *_LAZY, "__version__"})



__all__ = [
    "DEFAULT_HASH_SIZE",
    "DEFAULT_METHOD",
    "DEFAULT_THRESHOLD",
    "ApplyResult",
    "Calibration",
    "ConfigError",
    "DatasetCleanup",
    "DecodeError",
    "FileFacts",
    "Group",
    "Hash",
    "HtmlSummary",
    "ImageRecord",
    "Interrupted",
    "JournalError",
    "KeepPolicy",
    "Leakage",
    "LookalikeError",
    "Member",
    "NullReporter",
    "Operation",
    "ParquetStore",
    "PartialFailure",
    "Plan",
    "Problem",
    "Report",
    "ReportError",
    "Reporter",
    "ScanConfig",
    "ScanResult",
    "TooManyPairs",
    "UndoResult",
    "__version__",
    "apply",
    "calibrate",
    "dedupe_dataset",
    "find_leakage",
    "hash_image",
    "methods",
    "pdq_hash",
    "plan",
    "read_report",
    "read_results",
    "remove_paths",
    "scan",
    "undo",
    "write_html",
    "write_report",
]


def scan(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] = (), *,
         config: ScanConfig | None = None, reporter: Reporter | None = None,
         cache: HashCache | str | os.PathLike[str] | None = None,
         files_from: str | None = None, input_format: InputFormat = "auto",
         column: str | None = None, name_column: str | None = None,
         storage_options: dict[str, Any] | None = None,
         engine: str = "local", scheduler: str | None = None,
         executor: Executor | None = None, parquet_out: str | None = None,
         retries: int | None = None, batch_size: int | None = None,
         **options: Any) -> ScanResult:
    """Find duplicate groups among the images under ``paths``.

    Args:
        paths: one path or several: files and folders (walked recursively), URLs
            (``s3://bucket/prefix/``), WebDataset ``.tar`` shards, Parquet files of images;
            or a Hugging Face ``Dataset`` / ``DatasetDict`` (or the folder ``save_to_disk``
            wrote), scanned by :func:`dedupe_dataset`, whose result has the rows to drop
            and the leaks per split: the scan's paths are then ``split#index``.
        config: a full :class:`ScanConfig`; or pass its fields as keyword ``options``
            (``method="dhash-z"``, ``hash_size=8``, ``threshold=0``, ``grouping=...``,
            ``decode=...``, ``workers=...``; ``embed=MODEL`` adds copy-detection
            embeddings, ``similarity=`` and ``verify=`` tune them: docs/embeddings.md;
            ``band=0`` turns the verified hash band off).
            An unknown option is a ``TypeError``.
        reporter: receives progress and per-file problems (default: silent).
        cache: a :class:`lookalike.store.cache.HashCache`, or the path of its SQLite file
            (opened and closed by this call); unchanged files are not re-read.
        files_from: a text or Parquet file listing more paths or URLs.
        input_format, column, name_column, storage_options: how to read the inputs
            (:func:`lookalike.inputs.listing.list_inputs`).
        engine: ``local`` processes (default) or ``dask``; ``scheduler``: a Dask address.
        executor: an executor to hash on instead (yours: not closed).
        parquet_out: also write every file's result to this Parquet dataset; a re-run
            resumes from it.
        retries: how often a failed batch is retried file by file (default 1).
        batch_size: images per work item.

    Returns:
        A :class:`ScanResult` with ``.groups`` (largest first), ``.errors`` (one
        :class:`Problem` per unusable file), ``.records`` and ``.stats``. Each group
        member says how it matched (:attr:`Member.match`: ``hash``; ``aligned``, in the
        verified band beyond the threshold; ``verified`` or ``embedding``) and, with
        embeddings, its :attr:`Member.similarity`; the pairs the band and embeddings joined
        are in ``.embedding_matches``. To act on the groups, write the
        report (:func:`write_report`) and :func:`plan` from it.

    Raises:
        ConfigError: bad options or a path that does not exist (before any work).

    Cost: each file is read and decoded once; the hash search is exact and sub-quadratic
    (the embedding search is exact up to 20,000 images, approximate beyond, and embedding
    matches are verified by reading their files again: docs/embeddings.md).
    """
    from lookalike.inputs.hf import is_dataset, is_saved_dataset
    from lookalike.pipeline import scan as run

    if config is None:
        config = ScanConfig(**options)
    elif options:
        raise ConfigError("pass either config= or keyword options, not both")
    # A folder save_to_disk wrote is read as the dataset unless files were asked for.
    as_datasets = input_format == "auto"
    if is_dataset(paths) or (as_datasets and isinstance(paths, (str, os.PathLike))
                             and is_saved_dataset(paths)):
        from lookalike.analysis.dataset import dedupe_dataset

        if files_from is not None or parquet_out is not None or cache is not None:
            raise ConfigError("a dataset is scanned on its own: no file list, Parquet output "
                              "or hash cache")
        if input_format != "auto" or name_column is not None or storage_options:
            # They were dropped without a word: a dataset's rows say where its images are.
            raise ConfigError("a dataset is read from its own rows: no input format, name "
                              "column or storage options (pass its image column as column=)")
        return dedupe_dataset(paths, column=column, config=config,
                              engine=engine,  # type: ignore[arg-type]
                              scheduler=scheduler, executor=executor, retries=retries,
                              batch_size=batch_size, reporter=reporter).scan
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = _check_scan_arguments(paths, config, cache, files_from, retries, batch_size,
                                  reporter, executor)
    for path in paths if as_datasets else ():
        if is_saved_dataset(path):  # read as a folder of images it held none
            raise ConfigError(f"{os.fspath(path)} is a saved dataset, scanned on its own: "
                              "pass it alone (or use dedupe_dataset)")
    if files_from is not None:
        files_from = os.fspath(files_from)
    with contextlib.ExitStack() as opened:
        if isinstance(cache, (str, os.PathLike)):
            from lookalike.store.cache import HashCache

            cache = opened.enter_context(HashCache(cache))  # closed when the scan ends
        result = run(paths, config, files_from=files_from, input_format=input_format,
                     column=column, name_column=name_column, storage_options=storage_options,
                     engine=engine, scheduler=scheduler,  # type: ignore[arg-type]
                     executor=executor, cache=cache, parquet_out=parquet_out,
                     retries=retries, batch_size=batch_size, reporter=reporter)
    skipped = result.stats.get("skipped_containers")
    if skipped:  # the command line says so in its summary; a caller would see 0 images
        import warnings

        warnings.warn(f"skipped {skipped} tar or Parquet file(s) found inside the folders; "
                      "their images are read with input_format='tar' or 'parquet'",
                      UserWarning, stacklevel=2)
    return result


def _check_scan_arguments(paths: Any, config: Any, cache: Any, files_from: Any, retries: Any,
                          batch_size: Any, reporter: Any, executor: Any
                          ) -> list[str | os.PathLike[str]]:
    """The paths of a :func:`scan` as a list; a ``TypeError`` that names the argument for
    one of the wrong type (they failed deep inside as an ``AttributeError``)."""
    from lookalike.store.cache import HashCache

    def wrong(name: str, want: str, got: Any) -> TypeError:
        return TypeError(f"scan(): {name} must be {want}, not {type(got).__name__}")

    if isinstance(paths, bytes) or not isinstance(paths, Iterable):
        raise wrong("paths", "a path or a list of paths", paths)
    if any(cls.__module__.startswith("datasets.") for cls in type(paths).__mro__):
        # An IterableDataset (streaming) was iterated, row by row, before being refused.
        raise wrong("paths", "a path, a list of paths or a datasets.Dataset (a streaming "
                    "dataset cannot be scanned: load it without streaming=True)", paths)
    paths = list(paths)
    if not all(isinstance(p, (str, os.PathLike)) for p in paths):
        bad = next(p for p in paths if not isinstance(p, (str, os.PathLike)))
        raise wrong("each path", "a str or os.PathLike", bad)
    if not isinstance(config, ScanConfig):
        raise wrong("config", "a ScanConfig (or leave it out and pass its fields)", config)
    if cache is not None and not isinstance(cache, (str, os.PathLike, HashCache)):
        raise wrong("cache", "the path of the SQLite cache file, a HashCache, or None (no "
                    "cache)", cache)
    if files_from is not None and not isinstance(files_from, (str, os.PathLike)):
        raise wrong("files_from", "a path", files_from)
    for name, value in (("retries", retries), ("batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise wrong(name, "a whole number", value)
    if reporter is not None and not isinstance(reporter, Reporter):
        raise wrong("reporter", "an object with the methods of lookalike.Reporter (phase, "
                    "advance, problem, info, close)", reporter)
    if executor is not None and not all(
            hasattr(executor, name) for name in ("workers", "map_unordered", "close")):
        # A dask.distributed Client given as it is failed deep inside (no `workers`).
        raise wrong("executor", "a lookalike Executor (ProcessExecutor, DaskExecutor, ...; "
                    "for a Dask client: lookalike.executors.dask.DaskExecutor(client=client))",
                    executor)
    return paths


def hash_image(image: str | os.PathLike[str] | Image, method: str = DEFAULT_METHOD,
               hash_size: int | None = None, *, decode: str = "full") -> Hash:
    """Hash one image file (or an in-memory PIL image) with ``method``.

    ``str()`` of the result equals ImageHash's hex string for the methods ImageHash has
    (``decode="full"``, the default here, reads every pixel exactly as ImageHash does).

    Raises:
        DecodeError: the file is not a readable image (``.reason`` says why).
        ConfigError: unknown method.
        OSError: the file cannot be read (``FileNotFoundError``, ...).
        TypeError: ``image`` is neither a path nor a PIL image (bytes: ``io.BytesIO`` them
            and open them with ``PIL.Image.open``).
    """
    from lookalike.imaging.decode import Picture, decode_bytes
    from lookalike.imaging.hashes import get_method

    _check_image_arguments("hash_image", image, decode)

    # The sizes a scan accepts, checked where a scan checks them (a ConfigError naming the
    # method's range; phash 33 or hash_size 1 got through, or failed as a ValueError).
    hash_size = ScanConfig(method=method, hash_size=hash_size).resolved_hash_size
    m = get_method(method)
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as fh:
            pic = decode_bytes(fh.read(), mode=decode)[0]  # type: ignore[arg-type]
    else:
        pic = Picture.from_pil(image)
    return m.hash(pic, hash_size)


def methods() -> dict[str, str]:
    """Hash method names and one-line descriptions."""
    from lookalike.imaging.hashes import METHODS

    return {name: m.summary for name, m in METHODS.items()}


def pdq_hash(image: str | os.PathLike[str] | Image, *, decode: str = "full") -> PdqHash:
    """PDQ hash (method ``pdq``, 256 bits) of one image file or PIL image, with its quality.

    ``.quality`` (0..100) measures how much detail the hash rests on: Meta advises
    ignoring matches on hashes below 50 (flat, blank or tiny images). With
    ``decode="full"`` the bits equal the reference implementation's (and the ``pdqhash``
    package's) on the same pixels.

    Raises:
        DecodeError: the file is not a readable image.
    """
    from lookalike.imaging.decode import Picture, decode_bytes
    from lookalike.imaging.hashes import compute_pdq
    from lookalike.imaging.pdq import PdqHash

    _check_image_arguments("pdq_hash", image, decode)
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as fh:
            pic = decode_bytes(fh.read(), mode=decode)[0]  # type: ignore[arg-type]
    else:
        pic = Picture.from_pil(image)
    return PdqHash(*compute_pdq(pic))


def _check_image_arguments(name: str, image: Any, decode: Any) -> None:
    """The one image and decode mode of :func:`hash_image` / :func:`pdq_hash`."""
    from PIL import Image as PILImage

    if not isinstance(image, (str, os.PathLike, PILImage.Image)):
        raise TypeError(f"{name}() takes a path or a PIL image, not {type(image).__name__} "
                        "(bytes: open them with PIL.Image.open(io.BytesIO(data)))")
    if decode not in ("fast", "full"):
        raise ConfigError(f"unknown decode mode {decode!r}; use 'fast' or 'full'")

