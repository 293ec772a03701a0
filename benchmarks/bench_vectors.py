"""Benchmark the cosine pair search (lookalike.search.vectors) on synthetic embeddings.

Data (:func:`make_embeddings`): L2-normalised float32 rows drawn around ~1000 random cluster
centres with a spread chosen per cluster, so a row's nearest ordinary neighbours lie at cosine
0.3-0.6 (random Gaussian vectors of this width would all be nearly orthogonal: too easy); 5% of
the rows are then replaced by noisy copies of other rows at cosine 0.80-0.98 (a source often gets
several copies, so groups form, and copies of one source pair with each other near 0.75), and a
few clusters of identical rows (20 to 200 copies of one row: blank images) test that groups
larger than ``k`` keep every pair.

Recall is measured against exact search (NumPy brute force in blocks) on a sample of about 100k
rows: the rows of randomly chosen clusters. A copy belongs to its source's cluster and rows of
different clusters are nearly orthogonal, so every pair at or above the threshold that touches
a sampled row has both ends in the sample: the sample's exact self-join holds all of them.

Usage:
    python benchmarks/bench_vectors.py --quick          # 100k rows
    python benchmarks/bench_vectors.py                  # 1M rows, 512-d (the issue's target)
    python benchmarks/bench_vectors.py --n 300k --dim 256 --threshold 0.8

Prints a table and writes benchmarks/results/vectors.json (git-ignored). The machine is shared,
so CPU seconds and the load average are recorded next to wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import replace

import numpy as np

from common import REPO, RESULTS, print_table, write_json

SEED = 20261205
CENTRES = 1000
COPY_SHARE = 0.05
DUPLICATE_CLUSTERS = (20, 50, 100, 200)  # sizes of clusters of identical rows
CHUNK = 1 << 16


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def _normalise(x: np.ndarray) -> None:
    x /= np.linalg.norm(x, axis=1, keepdims=True)


def make_embeddings(n: int, dim: int = 512, seed: int = SEED,
                    duplicates: tuple[int, ...] = DUPLICATE_CLUSTERS,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors, cluster)``: ``n`` unit rows of width ``dim`` and each row's cluster label.

    Built in chunks of float32, so memory stays near the output's ``4 * n * dim`` bytes.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, dim), dtype=np.float32)
    _normalise(centres)
    spread = rng.uniform(0.9, 1.6, CENTRES).astype(np.float32) / np.float32(np.sqrt(dim))
    cluster = rng.integers(0, CENTRES, n)
    x = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, CHUNK):
        c = cluster[a:a + CHUNK]
        x[a:a + CHUNK] = rng.standard_normal((c.size, dim), dtype=np.float32)
        x[a:a + CHUNK] *= spread[c, None]
        x[a:a + CHUNK] += centres[c]
        _normalise(x[a:a + CHUNK])
    # Noisy copies: y = normalise(x_src + t u), u a random unit vector (nearly orthogonal to
    # x_src at this width), so cos(x_src, y) = 1 / sqrt(1 + t^2) = the drawn cosine.
    order = rng.permutation(n)
    m = int(n * COPY_SHARE)
    dst = order[:m]
    pool = order[m:m + max(1, m // 2)]  # ~2 copies per source: groups, not only pairs
    src = pool[rng.integers(0, pool.size, m)]
    cos = rng.uniform(0.80, 0.98, m).astype(np.float32)
    t = np.sqrt(1 / cos**2 - 1)
    for a in range(0, m, CHUNK):
        u = rng.standard_normal((min(CHUNK, m - a), dim), dtype=np.float32)
        _normalise(u)
        y = x[src[a:a + CHUNK]] + t[a:a + CHUNK, None] * u
        _normalise(y)
        x[dst[a:a + CHUNK]] = y
    cluster[dst] = cluster[src]
    # Clusters of identical rows, on rows not used above.
    start = m + pool.size
    for size in duplicates:
        rows = order[start:start + size]
        if rows.size < 2:
            break
        x[rows] = x[rows[0]]
        cluster[rows] = cluster[rows[0]]
        start += size
    return x, cluster


def exact_pairs(x: np.ndarray, threshold: float, block: int = 1024,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` with ``x[i] @ x[j] >= threshold``: NumPy brute force in blocks."""
    found_i, found_j, found_s = [], [], []
    for a in range(0, len(x), block):
        sims = x[a:a + block] @ x[a:].T  # only j >= a
        i, j = np.nonzero(sims >= threshold)
        keep = a + i < a + j
        i, j = i[keep], j[keep]
        found_i.append(a + i)
        found_j.append(a + j)
        found_s.append(sims[i, j])
    return (np.concatenate(found_i).astype(np.int64), np.concatenate(found_j).astype(np.int64),
            np.concatenate(found_s))


def sample_rows(cluster: np.ndarray, size: int, seed: int = SEED) -> np.ndarray:
    """Sorted rows of randomly chosen whole clusters, about ``size`` of them."""
    labels = np.random.default_rng(seed + 1).permutation(np.unique(cluster))
    counts = np.bincount(cluster)[labels]
    chosen = labels[: int(np.searchsorted(np.cumsum(counts), size)) + 1]
    return np.flatnonzero(np.isin(cluster, chosen))


def recall(found: tuple[np.ndarray, ...], truth: tuple[np.ndarray, ...], n: int) -> float:
    """Share of the true pairs (``i < j`` arrays) that ``found`` holds."""
    if truth[0].size == 0:
        return 1.0
    return float(np.isin(truth[0] * n + truth[1], found[0] * n + found[1]).mean())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(n: int, dim: int, threshold: float, k: int, sample: int, max_k: int | None = None,
        **tuning: int) -> dict:
    sys.path.insert(0, str(REPO / "src"))
    import faiss

    from lookalike.search.vectors import DEFAULT_TUNING, similar_pairs

    tuning = replace(DEFAULT_TUNING, **{f: v for f, v in tuning.items() if v is not None})

    t0 = time.perf_counter()
    x, cluster = make_embeddings(n, dim)
    gen_s = time.perf_counter() - t0
    rss_data = peak_rss_mb()

    cpu0, t0 = cpu_seconds(), time.perf_counter()
    found = similar_pairs(x, threshold, k=k, max_k=max_k, tuning=tuning)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    rss = peak_rss_mb()

    rows = sample_rows(cluster, sample)
    t0 = time.perf_counter()
    truth = exact_pairs(x[rows], threshold)
    exact_s = time.perf_counter() - t0
    # The found pairs with both ends in the sample, renumbered into it.
    where = np.full(n, -1, dtype=np.int64)
    where[rows] = np.arange(rows.size)
    fi, fj = where[found[0]], where[found[1]]
    inside = (fi >= 0) & (fj >= 0)
    r = recall((fi[inside], fj[inside]), truth, rows.size)
    near = truth[2] < 0.999  # not identical rows (those are never missed)
    r_near = recall((fi[inside], fj[inside]), (truth[0][near], truth[1][near]), rows.size)
    extra = int(inside.sum()) - int(np.isin(fi[inside] * rows.size + fj[inside],
                                            truth[0] * rows.size + truth[1]).sum())
    return {
        # With max_k each row keeps at most its max_k nearest (a scan's use, NEIGHBOURS in
        # lookalike.grouping.embedded): recall against every pair is then below 1 by design.
        "n": n, "dim": dim, "threshold": threshold, "k": k, "max_k": max_k,
        "index": "exact" if n <= tuning.exact_below else f"ivf{n // tuning.list_size}",
        "nprobe": tuning.nprobe,
        "tuning": {f: getattr(tuning, f) for f in tuning.__dataclass_fields__},
        "threads": faiss.omp_get_max_threads(),
        "generate_s": round(gen_s, 1), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "peak_rss_mb": round(rss, 0), "rss_after_data_mb": round(rss_data, 0),
        "pairs": int(found[0].size), "sample_rows": int(rows.size),
        "sample_true_pairs": int(truth[0].size), "recall": round(r, 5),
        "sample_near_pairs": int(near.sum()), "recall_near": round(r_near, 5),
        "false_pairs": extra, "exact_sample_s": round(exact_s, 1),
        "load_avg": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="1M", help="rows (e.g. 100k, 1M)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--threshold", type=float, default=0.75)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--max-k", type=int, default=None,
                   help="keep at most this many neighbours per row (a scan keeps 64)")
    p.add_argument("--sample", default="100k", help="rows checked against exact search")
    p.add_argument("--quick", action="store_true", help="100k rows")
    p.add_argument("--nprobe", type=int, help="override VectorTuning.nprobe")
    p.add_argument("--list-size", type=int, help="override VectorTuning.list_size")
    p.add_argument("--exact-below", type=int, help="override VectorTuning.exact_below")
    args = p.parse_args()
    n = 100_000 if args.quick else parse_size(args.n)
    res = run(n, args.dim, args.threshold, args.k, min(n, parse_size(args.sample)),
              max_k=args.max_k, nprobe=args.nprobe, list_size=args.list_size,
              exact_below=args.exact_below)
    cols = ["n", "dim", "index", "nprobe", "threads", "wall_s", "cpu_s", "peak_rss_mb",
            "pairs", "sample_true_pairs", "recall", "sample_near_pairs", "recall_near",
            "false_pairs"]
    print_table(cols, [[f"{res[c]:.5f}" if c.startswith("recall") else res[c] for c in cols]])
    path = RESULTS / "vectors.json"
    old = json.loads(path.read_text()).get("runs", []) if path.exists() else []
    write_json("vectors", {"runs": [*old, res]})  # every run kept: sizes and settings differ


if __name__ == "__main__":
    main()
