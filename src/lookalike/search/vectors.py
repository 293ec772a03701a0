"""Cosine nearest-neighbour pairs of L2-normalised embeddings, with FAISS (``faiss-cpu``).

:func:`similar_pairs` finds the pairs of one set whose cosine similarity reaches a threshold
(a leakage check searches its two sets as one). It searches each row's ``k`` nearest
neighbours: exactly (``IndexFlatIP``) up to :attr:`VectorTuning.exact_below` rows, beyond
that with an IVF-Flat index (inner product), whose recall against exact search
``benchmarks/bench_vectors.py`` measures. A row whose ``k``-th neighbour still reaches the
threshold (it belongs to a group larger than ``k``) is searched again with twice the ``k``
until its last neighbour falls below the threshold, so big groups keep every pair, up to
:attr:`VectorTuning.max_k`.

Threads: FAISS's OpenMP pool, ``faiss.omp_get_max_threads()`` (all cores unless set with
``faiss.omp_set_num_threads`` or ``OMP_NUM_THREADS``). The same input on the same number of
threads gives the same pairs: training samples rows with a fixed seed and k-means has a
fixed seed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # (row, other row: int64, similarity: float32)


@dataclass(frozen=True, slots=True)
class VectorTuning:
    """Every knob of the embedding search; measured with ``benchmarks/bench_vectors.py``.

    Only the approximate index's knobs (``exact_below``, ``list_size``, ``nprobe``, training)
    change results (its recall); the others change time and memory only. Measured on a shared
    2-core AMD EPYC, FAISS 1.15, synthetic clustered 512-d data with planted copies at cosine
    0.80-0.98, threshold 0.75. CPU seconds of ``similar_pairs``, recall of the copies' pairs:

    * exact vs IVF (nprobe 8): 10k rows 2.1 vs 1.4 s; 20k 6.4 vs 3.1 s (recall 0.9996); 40k
      22 vs 6.8 s. Exact search stays affordable to 20k rows, and is then exact.
    * 100k rows, lists of 256: nprobe 4 / 8 / 16 took 11 / 19 / 35 s, recall 0.988 / 0.996 /
      0.999; HNSW (M 32, efSearch 64) took 31 s (build 17) for 0.993. Lists of 1024 rows
      scan 4x more per probe and still missed more (nprobe 8: 64 s).
    * 1M rows, nprobe 8 (3906 lists): 291 s wall, 326 s CPU, 4.5 GB peak RSS (2.3 GB of it
      the input), recall 1.0 (8520 pairs) on a 100k-row sample against exact search.
    """

    exact_below: int = 20_000  # rows of the searched set at or below which search is exact
    list_size: int = 256  # IVF: rows per inverted list on average (nlist = n // list_size)
    nprobe: int = 8  # IVF: lists scanned per query
    train_per_list: int = 40  # IVF: k-means training rows per list (FAISS asks for >= 39)
    kmeans_iterations: int = 10  # IVF: k-means iterations (FAISS's default)
    seed: int = 1234  # training sample and k-means initialisation
    max_k: int = 4096  # most neighbours one row keeps (groups up to max_k + 1 keep every pair)
    batch_rows: int = 1 << 14  # query rows searched at once ...
    batch_cells: int = 1 << 22  # ... and at most this many rows x k (bounds result memory)
    check_rows: int = 1 << 16  # rows validated at once (bounds temporary memory)


DEFAULT_TUNING = VectorTuning()


def _check(name: str, vectors: np.ndarray, tuning: VectorTuning) -> None:
    """Raise ValueError unless ``vectors`` is 2-D float32, finite, with unit-length rows."""
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows, dimensions), "
                         f"got {getattr(vectors, 'shape', type(vectors).__name__)}")
    if vectors.dtype != np.float32:
        raise ValueError(f"{name} must be float32, got {vectors.dtype}")
    if vectors.shape[1] == 0:
        raise ValueError(f"{name} has rows of width 0")
    for a in range(0, len(vectors), tuning.check_rows):
        block = vectors[a:a + tuning.check_rows]
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            raise ValueError(f"{name} row {a + int(np.argmax(bad))} is not finite (NaN or inf)")
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))  # float32: ample for 1e-3
        off = np.abs(norms - 1) > 1e-3
        if off.any():
            row = int(np.argmax(off))
            raise ValueError(f"{name} row {a + row} has length {norms[row]:.6g}, not 1 "
                             "(rows must be L2-normalised within 1e-3)")


def _check_args(min_similarity: float, k: int) -> None:
    if not -1.0 <= min_similarity <= 1.0:
        raise ValueError(f"min_similarity must be between -1 and 1, got {min_similarity}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def _index(base: np.ndarray, tuning: VectorTuning):  # -> faiss.Index
    """An inner-product index holding ``base``: exact when small, IVF-Flat beyond."""
    import faiss  # here, so importing lookalike.search does not load FAISS

    n, d = base.shape
    index: faiss.Index
    if n <= tuning.exact_below:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = max(1, n // tuning.list_size)
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = tuning.kmeans_iterations
        ivf.cp.seed = tuning.seed
        # We sample the training rows ourselves (fixed seed); FAISS need not sample or warn.
        ivf.cp.max_points_per_centroid = tuning.train_per_list
        ivf.cp.min_points_per_centroid = 1
        train = min(n, nlist * tuning.train_per_list)
        rows = np.sort(np.random.default_rng(tuning.seed).choice(n, train, replace=False))
        ivf.train(base[rows])
        ivf.nprobe = min(nlist, tuning.nprobe)
        index = ivf
    index.add(base)
    return index


def _search(index, queries: np.ndarray, min_similarity: float, k: int,
            tuning: VectorTuning, max_k: int | None = None) -> Pairs:
    """``(query row, base row, similarity)`` for each query's neighbours >= min_similarity,
    the queries being the indexed rows themselves.

    Searches every query with ``k + 1`` neighbours (room for the row itself); queries whose
    last neighbour still reaches the threshold
    are searched again with twice the ``k``, up to ``max_k`` (default ``tuning.max_k``, and
    then a warning says how many rows were cut).
    """
    limit = tuning.max_k if max_k is None else max_k
    rows = np.arange(len(queries), dtype=np.int64)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    capped = 0
    while rows.size:
        width = min(k + 1, index.ntotal)
        batch = max(1, min(tuning.batch_rows, tuning.batch_cells // width))
        full: list[np.ndarray] = []
        for a in range(0, rows.size, batch):
            q = rows[a:a + batch]
            run = q[-1] - q[0] + 1 == q.size  # consecutive rows: a view, not a copy
            sims, ids = index.search(queries[q[0]:q[-1] + 1] if run else queries[q], width)
            keep = (sims >= min_similarity) & (ids >= 0) & (ids != q[:, None])
            r, c = np.nonzero(keep)
            found.append((q[r], ids[r, c], sims[r, c]))
            # Full: the last neighbour reaches the threshold, so more may lie beyond it.
            full.append(q[(sims[:, -1] >= min_similarity) & (ids[:, -1] >= 0)])
        rows = np.concatenate(full)
        if width >= index.ntotal:
            break  # every row was a neighbour: nothing lies beyond
        if k >= limit:
            capped = rows.size
            break
        k = min(2 * k, limit)
    if capped and max_k is None:
        warnings.warn(f"{capped} rows have more than {tuning.max_k} neighbours at similarity "
                      f">= {min_similarity}; only their {tuning.max_k} nearest are kept",
                      RuntimeWarning, stacklevel=3)
    return (np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found]),
            np.concatenate([f[2] for f in found]))


def _unique_sorted(a: np.ndarray, b: np.ndarray, sims: np.ndarray, n_b: int) -> Pairs:
    """Pairs deduplicated (the higher similarity of two reports kept), sorted by (a, b)."""
    key = a * n_b + b
    order = np.lexsort((-sims, key))
    key, sims = key[order], sims[order]
    first = np.ones(key.size, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key = key[first]
    return key // n_b, key % n_b, sims[first]


def similar_pairs(vectors: np.ndarray, min_similarity: float, *, k: int = 16,
                  max_k: int | None = None, tuning: VectorTuning = DEFAULT_TUNING) -> Pairs:
    """Every pair of rows whose cosine similarity reaches ``min_similarity``.

    Each row's ``k`` nearest neighbours are searched; a row whose ``k``-th neighbour still
    reaches the threshold is searched again with a larger ``k``, so a photo with 100 copies
    gets all 4950 pairs, not 16 per row. The limit is ``tuning.max_k`` neighbours per row:
    a group larger than that keeps only each member's ``max_k`` nearest (a RuntimeWarning says
    how many rows were cut). ``k`` is thus the first search's width, a speed knob: most rows
    have far fewer than ``k`` neighbours above a near-duplicate threshold.

    Above ``tuning.exact_below`` rows the search is approximate (IVF-Flat): a pair is missed
    when the two rows fall in inverted lists more than ``tuning.nprobe`` lists apart; the
    reported similarities are exact inner products.

    Args:
        vectors: ``(n, d)`` float32, rows L2-normalised (within 1e-3), finite.
        min_similarity: Cosine similarity a pair must reach, in [-1, 1].
        k: Neighbours searched per row at first, at least 1.
        max_k: Most neighbours a row keeps (default ``tuning.max_k``, with a warning for
            rows cut there); a caller that needs only each row's nearest few passes ``k``
            (memory then stays ``n * k`` pairs however dense the data).
        tuning: Index and memory knobs.

    Returns:
        ``(i, j, similarity)``: int64, int64, float32 arrays, ``i < j``, each pair once,
        sorted by ``(i, j)``.

    Raises:
        ValueError: On input that is not 2-D float32 finite unit rows, or bad arguments.
    """
    _check("vectors", vectors, tuning)
    _check_args(min_similarity, k)
    vectors = np.ascontiguousarray(vectors)
    n = len(vectors)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    a, b, sims = _search(_index(vectors, tuning), vectors, min_similarity, k, tuning, max_k)
    return _unique_sorted(np.minimum(a, b), np.maximum(a, b), sims, n)
