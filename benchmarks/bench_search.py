"""Benchmark the exact Hamming self-join (lookalike.search.find_pairs) on synthetic hashes.

Each case runs in a fresh subprocess so its peak memory is its own. Data: random 64-bit
hashes where 10% of rows are copies of other rows with 1-10 random bits flipped (planted
near-duplicates); the "skewed" case also draws 10% of rows from 50 "blank image" hashes
plus 0-2 bits of noise and uses find_pairs_collapsed, as the grouper would (expanded, its
output is quadratic in the cluster sizes). Every case is checked against brute force on a
random sample of query rows: their neighbour sets from the output must equal a direct scan.

``--nbits 256`` (any multiple of 64) makes the codes that wide (PDQ hashes are 256 bits),
with the same shape of data; the 64-bit data does not change with this option.

Usage:
    python benchmarks/bench_search.py                      # 100k and 1M, T in 4, 8, 10
    python benchmarks/bench_search.py --sizes 10M --distances 4,8
    python benchmarks/bench_search.py --sizes 100k --distances 8 --no-skew --workers 1
    python benchmarks/bench_search.py --sizes 200k --distances 16,32 --nbits 256

Writes benchmarks/results/search.json (git-ignored) and prints a table. The machine is
shared and noisy, so CPU time and the load average are recorded next to wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "search.json"
SEED = 20240603


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def make_codes(n: int, skew: bool, nbits: int = 64) -> np.ndarray:
    """Random hashes with planted near-duplicates (and blank-image clusters if skew)."""
    if nbits != 64:
        return make_wide_codes(n, skew, nbits)
    rng = np.random.default_rng(SEED + n)
    codes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    k = n // 10
    src, dst = rng.integers(0, n, k), rng.integers(0, n, k)
    codes[dst] = codes[src] ^ random_flips(rng, k, rng.integers(1, 11, k))
    if skew:
        blanks = rng.integers(0, 2**64 - 1, 50, dtype=np.uint64, endpoint=True)
        rows = rng.choice(n, n // 10, replace=False)
        noise = random_flips(rng, rows.size, rng.integers(0, 3, rows.size))
        codes[rows] = blanks[rng.integers(0, 50, rows.size)] ^ noise
    return codes.reshape(-1, 1)


def make_wide_codes(n: int, skew: bool, nbits: int) -> np.ndarray:
    """:func:`make_codes` for ``nbits`` a multiple of 64: ``(n, nbits // 64)`` words."""
    words = nbits // 64
    rng = np.random.default_rng(SEED + n + nbits)
    codes = rng.integers(0, 2**64 - 1, (n, words), dtype=np.uint64, endpoint=True)
    k = n // 10
    src, dst = rng.integers(0, n, k), rng.integers(0, n, k)
    codes[dst] = codes[src] ^ random_wide_flips(rng, rng.integers(1, 11, k), words)
    if skew:
        blanks = rng.integers(0, 2**64 - 1, (50, words), dtype=np.uint64, endpoint=True)
        rows = rng.choice(n, n // 10, replace=False)
        noise = random_wide_flips(rng, rng.integers(0, 3, rows.size), words)
        codes[rows] = blanks[rng.integers(0, 50, rows.size)] ^ noise
    return codes


def random_wide_flips(rng: np.random.Generator, counts: np.ndarray, words: int) -> np.ndarray:
    """Rows of ``words`` words with up to ``counts`` random bits set."""
    flips = np.zeros((counts.size, words), dtype=np.uint64)
    rows = np.arange(counts.size)
    for b in range(int(counts.max(initial=0))):
        bit = rng.integers(0, 64 * words, counts.size)
        on = b < counts
        flips[rows[on], bit[on] // 64] |= np.uint64(1) << (bit[on] % 64).astype(np.uint64)
    return flips


def random_flips(rng: np.random.Generator, k: int, counts: np.ndarray) -> np.ndarray:
    """Masks with up to ``counts`` random bits set (collisions make a few lighter)."""
    flips = np.zeros(k, dtype=np.uint64)
    for b in range(int(counts.max(initial=0))):
        bit = rng.integers(0, 64, k).astype(np.uint64)
        flips |= (b < counts).astype(np.uint64) << bit
    return flips


def reset_peak_rss() -> bool:
    """Make the kernel's high-water mark start from the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def neighbours_from_pairs(i: np.ndarray, j: np.ndarray, d: np.ndarray, q: int) -> set:
    lo, hi = np.searchsorted(i, q), np.searchsorted(i, q, side="right")
    out = set(zip(j[lo:hi].tolist(), d[lo:hi].tolist(), strict=True))
    hit = np.flatnonzero(j == q)
    out |= set(zip(i[hit].tolist(), d[hit].tolist(), strict=True))
    return out


def run_case(n: int, t: int, skew: bool, workers: int | None, queries: int,
             nbits: int = 64) -> dict:
    """One measurement, in this (fresh) process."""
    from lookalike.search import find_pairs, find_pairs_collapsed
    from lookalike.search.codes import DEFAULT_TUNING
    from lookalike.search.join import _plan_join

    codes = make_codes(n, skew, nbits)
    input_mb = peak_rss_mb()
    reset = reset_peak_rss()
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    if skew:
        res = find_pairs_collapsed(codes, t, workers=workers)
    else:
        i, j, d = find_pairs(codes, t, workers=workers)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = peak_rss_mb()
    load_after = os.getloadavg()[0]
    plan = _plan_join(n, nbits, t, nbits // 64, DEFAULT_TUNING)
    out = {
        "n": n,
        "nbits": nbits,
        "max_distance": t,
        "case": "skewed (collapsed)" if skew else "planted",
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(peak, 1),
        "peak_rss_is_search_only": reset,
        "input_rss_mb": round(input_mb, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tables": sum(1 for _ in plan.tables()),
        "load_avg": [round(load_before, 1), round(load_after, 1)],
        "workers": workers,
    }
    # verification against brute force on sampled query rows
    rng = np.random.default_rng(SEED)
    sample = rng.choice(n, min(queries, n), replace=False)
    if skew:
        counts = np.bincount(res.groups, minlength=res.representatives.size)
        out["pairs"] = int(res.i.size)
        out["pairs_expanded"] = int(
            (counts[res.i] * counts[res.j]).sum() + (counts * (counts - 1) // 2).sum()
        )
        for q in sample.tolist():
            g = res.groups[q]
            partners = np.concatenate([[g], res.j[res.i == g], res.i[res.j == g]])
            rows = np.flatnonzero(np.isin(res.groups, partners))
            got = set(rows[rows != q].tolist())
            dist = np.bitwise_count(codes ^ codes[q]).sum(axis=1)
            want = set(np.flatnonzero(dist <= t).tolist()) - {q}
            if got != want:
                out["verified"] = f"MISMATCH at row {q}"
                break
        else:
            out["verified"] = f"{len(sample)} queries"
    else:
        out["pairs"] = int(i.size)
        for q in sample.tolist():
            dist = np.bitwise_count(codes ^ codes[q]).sum(axis=1)
            near = np.flatnonzero(dist <= t)
            want = {(r, int(dist[r])) for r in near.tolist() if r != q}
            if neighbours_from_pairs(i, j, d, q) != want:
                out["verified"] = f"MISMATCH at row {q}"
                break
        else:
            out["verified"] = f"{len(sample)} queries"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100k,1M", help="comma list, e.g. 100k,1M,10M")
    ap.add_argument("--distances", default="4,8,10", help="comma list of max_distance")
    ap.add_argument("--skew", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the skewed case at max_distance 8 for each size")
    ap.add_argument("--workers", type=int, default=None, help="threads (default: CPUs, <= 4)")
    ap.add_argument("--nbits", type=int, default=64, help="bits per hash, a multiple of 64")
    ap.add_argument("--queries", type=int, default=200, help="rows checked by brute force")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per case")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--run-case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.nbits < 64 or args.nbits % 64:
        ap.error(f"--nbits must be a positive multiple of 64; got {args.nbits}")
    if args.run_case:
        spec = json.loads(args.run_case)
        print(json.dumps(run_case(**spec)))
        return

    cases = [
        (parse_size(s), int(t), False) for s in args.sizes.split(",")
        for t in args.distances.split(",")
    ]
    if args.skew:
        cases += [(parse_size(s), 8, True) for s in args.sizes.split(",")]
    results = []
    header = (f"{'N':>10} {'T':>3} {'case':<19} {'wall s':>8} {'cpu s':>8} {'peak MB':>8} "
              f"{'tables':>6} {'pairs':>10}  {'load':>10}  verified")
    print(header)
    print("-" * len(header))
    for n, t, skew in cases:
        spec = {"n": n, "t": t, "skew": skew, "workers": args.workers, "queries": args.queries,
                "nbits": args.nbits}
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--run-case", json.dumps(spec)],
                capture_output=True, text=True, timeout=args.timeout, check=True,
            )
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            row = {"n": n, "max_distance": t, "case": "skewed" if skew else "planted",
                   "error": f"timeout after {args.timeout:.0f} s"}
        except subprocess.CalledProcessError as exc:
            row = {"n": n, "max_distance": t, "case": "skewed" if skew else "planted",
                   "error": exc.stderr.strip().splitlines()[-1] if exc.stderr else "failed"}
        results.append(row)
        if "error" in row:
            print(f"{n:>10,} {t:>3} {row['case']:<19} {row['error']}")
        else:
            load = "/".join(str(x) for x in row["load_avg"])
            print(f"{n:>10,} {t:>3} {row['case']:<19} {row['seconds']:>8.1f} "
                  f"{row['cpu_seconds']:>8.1f} {row['peak_rss_mb']:>8.0f} {row['tables']:>6} "
                  f"{row['pairs']:>10,}  {load:>10}  {row['verified']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    previous["runs"].append({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "argv": sys.argv[1:],
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "results": results,
    })
    args.out.write_text(json.dumps(previous, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
