"""Helpers shared by the benchmark scripts: timing, tables, JSON results."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / ".cache" / "bench"


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``repeats`` calls (one untimed warm-up first)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(lines)
    print(text)
    return text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                           "cpus": __import__("os").cpu_count()}, **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"\nresults written to {path}")
    return path


def small_image_tree(n: int) -> Path:
    """``n`` real images as hard links: both emoji sets, then Fashion-MNIST to fill up."""
    import realdata

    root = CACHE / f"small_tree_{n}"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    (root / "emoji").mkdir(parents=True)
    count = 0
    for vendor in ("google", "twitter"):
        try:
            singles = realdata.emoji_sets(vendor).singles
        except realdata.DataUnavailable as exc:
            print(f"skipping {vendor} emoji: {exc}", file=sys.stderr)
            continue
        for code, path in sorted(singles.items()):
            if count >= n:
                break
            os.link(path, root / "emoji" / f"{vendor}_{code}.png")
            count += 1
    (root / "fashion").mkdir()
    for p in realdata.fashion_mnist(limit=max(0, n - count)):
        os.link(p, root / "fashion" / p.name)
        count += 1
    (root / ".complete").write_text(str(count))
    return root
