"""Local process pool vs Dask LocalCluster on >= 10k real small images; client memory.

Images: Google and Twitter emoji (npm) plus Fashion-MNIST (Debian), as in bench_scan.py.
Each engine scans the same folder through the same pipeline (``lookalike.scan`` with an
executor, no hash cache); every engine is started once (start-up reported on its own), warmed
up, then the engines take turns, ``--repeats`` rounds, and the median counts. The ratio
column is scan time over the local pool's (batch 16) in the same run: the machine is shared,
so compare ratios, not absolute times across runs.

The second table measures what the client needs per image: the Python records the scan
returns today, and the compact form a 100M-image search would use (one uint64 per hash plus
an int64 row id), with the peak of :func:`lookalike.search.find_pairs` over random codes.

    python benchmarks/bench_dask.py [--images 10000] [--repeats 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import pickle
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import print_table, small_image_tree, write_json


def engines(args: argparse.Namespace, root: Path) -> tuple[list[list[Any]], dict[str, Any]]:
    import lookalike
    from lookalike.executors import ProcessExecutor, SerialExecutor
    from lookalike.executors.dask import DaskExecutor

    config = lookalike.ScanConfig(method="dhash", threshold=4)
    cases: list[tuple[str, Callable[[], Any], int]] = [
        ("local pool", lambda: ProcessExecutor(args.workers), 16),
        ("local pool", lambda: ProcessExecutor(args.workers), 64),
        ("dask LocalCluster", lambda: DaskExecutor(workers=args.workers), 16),
        ("dask LocalCluster", lambda: DaskExecutor(workers=args.workers), 64),
        ("dask LocalCluster", lambda: DaskExecutor(workers=args.workers), 256),
    ]
    if args.serial:
        cases.insert(0, ("in-process (1 core)", SerialExecutor, 16))
    started = []
    for name, make, batch in cases:
        t0 = time.perf_counter()
        ex = make()
        startup = time.perf_counter() - t0
        started.append((name, batch, ex, startup))

    def run(ex: Any, batch: int) -> Any:
        return lookalike.scan([str(root)], config=config, executor=ex, batch_size=batch)

    results: dict[int, Any] = {}
    times: dict[int, list[float]] = {i: [] for i in range(len(started))}
    try:
        for i, (_, batch, ex, _) in enumerate(started):
            results[i] = run(ex, batch)  # warm-up: pools spawned, modules imported
        # Round robin, so a change in the machine's load hits every engine alike.
        for _ in range(args.repeats):
            for i, (_, batch, ex, _) in enumerate(started):
                t0 = time.perf_counter()
                results[i] = run(ex, batch)
                times[i].append(time.perf_counter() - t0)
    finally:
        for _, _, ex, _ in started:
            ex.close()
    reference = [g.paths for g in results[0].groups]
    rows, raw = [], {}
    for i, (name, batch, ex, startup) in enumerate(started):
        result = results[i]
        errors = collections.Counter(e.error for e in result.errors)
        same = [g.paths for g in result.groups] == reference
        if not same:  # only a lost or crashed worker could do this: say so, keep going
            print(f"warning: {name}: groups differ from the first engine's; errors: "
                  f"{dict(errors)}", file=sys.stderr)
        n = len(result.records) + len(result.errors)
        med = statistics.median(times[i])
        raw[f"{name} / batch {batch}"] = {
            "startup_s": startup, "scan_s": times[i], "scan_median_s": med, "images": n,
            "workers": ex.workers, "errors": dict(errors), "same_groups": same}
        best = min(times[i])
        rows.append([name, batch, startup, med, best, n / med, "yes" if same else "NO"])
    base = next(r for r in rows if r[0] == "local pool")
    for r in rows:
        r.insert(6, r[3] / base[3])
        r.insert(7, r[4] / base[4])
    return rows, raw


def record_bytes(root: Path) -> dict[str, float]:
    """Bytes per image on the client: today's ImageRecord list vs the compact arrays."""
    import numpy as np

    import lookalike
    from lookalike.search import find_pairs

    records = lookalike.scan(root, method="dhash", workers=1).records
    n = len(records)
    # Fresh objects, as they arrive from workers (strings shared within a pickle, as there).
    blob = pickle.dumps(records)
    gc.collect()
    tracemalloc.start()
    copies = pickle.loads(blob)
    per_record = tracemalloc.get_traced_memory()[0] / n
    tracemalloc.stop()
    path_len = statistics.mean(len(r.path) for r in records)
    del copies, blob

    out = {"imagerecord_bytes": per_record, "mean_path_chars": path_len,
           "compact_bytes": 16.0}
    rng = np.random.default_rng(0)
    m = 1_000_000
    # Random codes plus 1% near copies (2 flipped bits), so the join has real output.
    codes = rng.integers(0, 2**63, size=m, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, size=m, dtype=np.uint64)
    k = m // 100
    flips = (np.uint64(1) << rng.integers(0, 64, size=k, dtype=np.uint64)) | (
        np.uint64(1) << rng.integers(0, 64, size=k, dtype=np.uint64))
    codes[-k:] = codes[:k] ^ flips
    for t in (0, 4, 8):
        gc.collect()
        tracemalloc.start()
        t0 = time.perf_counter()
        i, _, _ = find_pairs(codes.reshape(-1, 1), t)
        secs = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[f"find_pairs_T{t}_peak_bytes_per_code"] = peak / m
        out[f"find_pairs_T{t}_seconds_per_1M"] = secs
        out[f"find_pairs_T{t}_pairs"] = int(i.size)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--serial", action="store_true", help="also time the in-process executor")
    args = ap.parse_args()
    # Dask logs every cluster's shutdown at INFO once the first one restored the log levels.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    root = small_image_tree(args.images)
    n = sum(1 for _ in root.rglob("*.png"))
    print(f"{n} images in {root}, {args.workers} workers, median of {args.repeats}\n")
    rows, raw = engines(args, root)
    table = print_table(["engine", "batch", "startup s", "median s", "best s", "images/s",
                         "x local (median)", "x local (best)", "same groups"], rows)
    mem = record_bytes(root)
    print("\nclient memory per image (measured; 100M images = 1e8 x this)\n")
    mem_rows = [
        ["ImageRecord objects (today's ScanResult)", mem["imagerecord_bytes"],
         mem["imagerecord_bytes"] * 1e8 / 2**30],
        ["compact: uint64 hash + int64 row id", 16, 16 * 1e8 / 2**30],
    ]
    for t in (0, 4, 8):
        b = mem[f"find_pairs_T{t}_peak_bytes_per_code"]
        mem_rows.append([f"find_pairs peak, T={t} (1M codes, "
                         f"{mem[f'find_pairs_T{t}_seconds_per_1M']:.1f} s)", b, b * 1e8 / 2**30])
    mem_table = print_table(["what", "bytes/image", "GiB per 100M"], mem_rows)
    write_json("dask", {"images": n, "workers": args.workers, "repeats": args.repeats,
                        "engines": raw, "table": table, "memory": mem,
                        "memory_table": mem_table})


if __name__ == "__main__":
    main()
