"""Hugging Face ``datasets`` as input: a ``Dataset`` / ``DatasetDict`` or a folder written by
``save_to_disk``, turned into Parquet files the scan reads like any other Parquet input.

The scan's workers run in other processes (or on a cluster) and read bytes by path, so each
split's image column is written once, as stored (the encoded bytes, never decoded through
``datasets``), to ``<folder>/<n>.parquet``: one ``image`` column of bytes and one ``row``
column naming each row by its index in the split, zero-padded so that names sort like
indices. Images that ``datasets`` stores as a path only are read into the file
(``Image.embed_storage``). Writing costs a sequential copy of the column, far less than
decoding the images: 0.22 s for 780 JPEGs of 640x480 (34 MB) that take 7.5 s to scan.

Needs the ``hf`` extra (``datasets``), imported only when a dataset is used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lookalike.config import import_extra
from lookalike.errors import ConfigError, Problem

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["BYTES_COLUMN", "ROW_COLUMN", "dataset_splits", "export_split", "image_column",
           "is_dataset", "is_saved_dataset", "load_saved"]

#: The columns of an exported split: the image bytes and the row's index (zero-padded).
BYTES_COLUMN = "image"
ROW_COLUMN = "row"


def _datasets() -> Any:
    return import_extra("datasets", "reading Hugging Face datasets", "hf")


def is_dataset(obj: object) -> bool:
    """True for a ``datasets.Dataset`` or ``datasets.DatasetDict`` (without importing
    ``datasets``: a caller that has one has imported it already)."""
    return any(cls.__module__.startswith("datasets.")
               and cls.__name__ in ("Dataset", "DatasetDict") for cls in type(obj).__mro__)


def is_saved_dataset(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a folder written by ``save_to_disk`` (a ``DatasetDict``'s
    ``dataset_dict.json``, or a ``Dataset``'s ``state.json`` and ``dataset_info.json``)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return False
    if os.path.isfile(os.path.join(path, "dataset_dict.json")):
        return True
    return all(os.path.isfile(os.path.join(path, f))
               for f in ("state.json", "dataset_info.json"))


def load_saved(path: str | os.PathLike[str]) -> Any:
    """The ``Dataset`` or ``DatasetDict`` saved at ``path`` (memory-mapped, not copied).

    Raises:
        ConfigError: ``datasets`` is missing, or the folder cannot be loaded.
    """
    if os.path.isfile(path):  # a Parquet file or a shard: splits are named, not saved
        raise ConfigError(f"{os.fspath(path)} is a file, not a folder save_to_disk wrote; "
                          "give the splits by name, e.g. {'train': 'train.parquet', 'test': "
                          "'test.parquet'} (Parquet files, .tar shards or folders of images)")
    datasets = _datasets()
    try:
        return datasets.load_from_disk(os.fspath(path))
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot load the dataset saved at {os.fspath(path)}: "
                          f"{_damage(exc)}, so the folder is not a complete save_to_disk "
                          "folder; save the dataset again (save_to_disk), or scan its "
                          "Parquet or image files instead (input format files reads the "
                          "folder's image files)") from None


def _damage(exc: Exception) -> str:
    """What is wrong with a saved dataset, from what ``load_from_disk`` raised (its own
    text is often a bare key, such as ``'splits'``)."""
    if isinstance(exc, KeyError):  # a metadata file without an entry datasets needs
        return (f"its metadata (dataset_dict.json, state.json) lacks the entry "
                f"{exc.args[0] if exc.args else exc!r}")
    if isinstance(exc, json.JSONDecodeError):
        return f"a metadata file is not valid JSON ({exc.msg}, line {exc.lineno})"
    return str(exc).rstrip(".")


def dataset_splits(ds: Any) -> dict[str, Any]:
    """The splits of ``ds`` by name, in its order: a ``DatasetDict``'s (or a plain dict's of
    ``Dataset`` values), or one ``Dataset`` under its split name (``data`` when it has
    none)."""
    datasets = _datasets()
    if isinstance(ds, Mapping):
        if not ds:
            raise ConfigError("the dataset has no splits")
        bad = next((k for k, v in ds.items() if not isinstance(v, datasets.Dataset)), None)
        if bad is not None:
            raise ConfigError(f"split {bad!r} is not a datasets.Dataset; give every split as a "
                              "Dataset, or every split as paths")
        return {str(k): v for k, v in ds.items()}
    if isinstance(ds, datasets.Dataset):
        return {str(ds.split) if ds.split is not None else "data": ds}
    raise ConfigError(f"expected a datasets.Dataset or DatasetDict, got {type(ds).__name__}")


def image_column(split: Any, column: str | None) -> str:
    """The column of ``split`` that holds images: ``column``, else the first with the
    ``Image`` feature.

    Raises:
        ConfigError: no such column, or one that holds neither images nor bytes.
    """
    datasets = _datasets()
    features: Mapping[str, Any] = split.features
    if column is not None and not isinstance(column, str):
        raise ConfigError(f"column is the name of one column, not {column!r}")
    if column is None:
        found = [n for n, f in features.items() if isinstance(f, datasets.Image)]
        if not found:
            raise ConfigError("the dataset has no column of images (the Image feature); its "
                              f"columns: {', '.join(features)}; name the one that holds them")
        return found[0]
    if column not in features:
        raise ConfigError(f"the dataset has no column {column!r} (its columns: "
                          f"{', '.join(features)})")
    if _bytes_kind(features[column]) is None:
        raise ConfigError(f"the dataset's column {column!r} holds {features[column]}, not "
                          "images or their bytes")
    return column


def _bytes_kind(feature: Any) -> str | None:
    """How a column keeps its bytes: ``image`` (the Image feature), ``binary``, ``struct``
    (a dict with a ``bytes`` field), or None."""
    datasets = _datasets()
    if isinstance(feature, datasets.Image):
        return "image"
    if isinstance(feature, datasets.Value) and feature.dtype in ("binary", "large_binary"):
        return "binary"
    if isinstance(feature, dict) and "bytes" in feature:
        return "struct"
    return None


def export_split(split: Any, column: str, path: str, *, row_group_size: int
                 ) -> dict[int, Problem]:
    """Write the images of ``column`` of ``split`` to a new Parquet file at ``path``:
    :data:`BYTES_COLUMN` (the stored bytes; null where a row has no image) and
    :data:`ROW_COLUMN` (the row's index in ``split``), ``row_group_size`` rows per row group
    (the scan hashes one row group per work item).

    Rows are read in ``split``'s order, so a selected or shuffled dataset is written as it
    is seen. Images stored as a path only are read from it now: a row whose file cannot be
    read is written null, and returned (its index, and the problem, with the row as path:
    ``#index``) for the caller to report instead of the null cell; the rest go on.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    kind = _bytes_kind(split.features[column])
    table_of = split.with_format("arrow").select_columns([column])
    n = len(split)
    width = len(str(max(n - 1, 0)))
    schema = pa.schema([(BYTES_COLUMN, pa.large_binary()), (ROW_COLUMN, pa.string())])
    unreadable: dict[int, Problem] = {}
    # Already-compressed images gain nothing from Parquet compression; it would only cost CPU.
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for start in range(0, n, row_group_size):
            values = table_of[start:start + row_group_size].column(column).combine_chunks()
            if kind == "image":
                values = _embedded(split.features[column], values, start, unreadable)
            if kind != "binary":
                values = values.field("bytes")
            names = pa.array([f"{i:0{width}d}" for i in range(start, start + len(values))])
            writer.write_table(pa.table([values.cast(pa.large_binary()), names],
                                        schema=schema))
    return unreadable


def _embedded(feature: Any, values: Any, start: int, unreadable: dict[int, Problem]) -> Any:
    """``feature.embed_storage(values)`` (the bytes of images stored as paths, read now),
    row by row when that fails, so that one missing file costs only its own row."""
    import pyarrow as pa

    try:
        return feature.embed_storage(values)
    except Exception:  # whatever the file system or datasets raised: row by row
        pass
    rows = []
    for k in range(len(values)):
        one = values.slice(k, 1)
        try:
            rows.append(feature.embed_storage(one))
        except Exception as exc:
            shown = one.field("path")[0].as_py()
            reason = ("vanished" if isinstance(exc, FileNotFoundError) else
                      "not-a-regular-file" if isinstance(exc, IsADirectoryError) else
                      "permission-denied" if isinstance(exc, PermissionError) else "read-error")
            unreadable[start + k] = Problem(
                path=f"#{start + k}", stage="read", error=reason,
                message=f"its image is stored as the path {shown!r}, which cannot be read: "
                        f"{getattr(exc, 'strerror', None) or exc}")
            rows.append(pa.array([None], type=values.type))
    return pa.concat_arrays(rows)
