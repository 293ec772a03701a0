"""End-to-end ``lookalike scan`` on >= 20k real small images, cold and warm hash cache.

Images: Fashion-MNIST (Debian dataset-fashion-mnist, written out as PNGs) plus the Google
and Twitter emoji sets (npm), all real pictures nobody on the team made. Each case runs the
installed ``lookalike`` command in a subprocess, as a user would.

Before timing, the ``lookalike`` package is byte-compiled (``python -m compileall -q``), as
``pip install`` does: with ``PYTHONDONTWRITEBYTECODE`` set (or a read-only source tree) an
editable checkout has no ``.pyc`` files and every run would compile ~10k lines of source
first, a fixed cost of ~0.1 s that no installed copy pays.

Each repeat is one cold scan (a fresh cache) followed by ``--warm-runs`` warm ones: a warm
run is short, so on a shared machine a single sample of it swings by +-30% with the
neighbours' load; more samples of the cheap case give its median the same weight of evidence
as the cold one's (the speed-up is the ratio of the two medians).

    python benchmarks/bench_scan.py [--images 20000] [--repeats 3] [--warm-runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import print_table, small_image_tree, write_json


def run(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def compile_package() -> None:
    """Write the ``.pyc`` files of the ``lookalike`` package the command will import."""
    import lookalike

    subprocess.run([sys.executable, "-m", "compileall", "-q",
                    str(Path(lookalike.__file__).parent)], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warm-runs", type=int, default=3, help="warm scans after each cold one")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    root = small_image_tree(args.images)
    n = sum(1 for _ in root.rglob("*.png"))
    exe = str(Path(sys.executable).with_name("lookalike"))
    compile_package()
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            db = Path(tmp) / f"cache{k}.sqlite"
            cmd = [exe, "scan", str(root), "-q", "-j", str(args.workers), "--cache", str(db),
                   "-o", str(Path(tmp) / "r.json")]
            cold.append(run(cmd))
            warm.extend(run(cmd) for _ in range(args.warm_runs))
    c, w = statistics.median(cold), statistics.median(warm)
    rows = [("cold (empty cache)", c, n / c), ("warm (unchanged tree)", w, n / w)]
    print(f"\n{n} images, {args.workers} workers, medians of {len(cold)} cold and "
          f"{len(warm)} warm runs\n")
    table = print_table(["case", "seconds", "images/s"], rows)
    print(f"\nwarm speed-up: {c / w:.1f}x")
    write_json("scan", {"images": n, "workers": args.workers, "cold_s": cold, "warm_s": warm,
                        "cold_median_s": c, "warm_median_s": w, "warm_speedup": c / w,
                        "table": table})


if __name__ == "__main__":
    main()
