"""Helpers shared by the benchmark scripts: timing, tables, JSON results."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
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


def round_robin_times(cases: Mapping[str, Callable[[], Any]], rounds: int, *,
                      per_round: Mapping[str, int] | None = None) -> dict[str, list[list[float]]]:
    """Wall times of every case, measured round-robin: ``times[name][r]`` lists the times
    of ``name`` in round ``r``.

    Each round runs every case once (``per_round[name]`` times for cheap cases, spread
    through the round), starting one slot later than the round before and reversed every
    other round. On a shared machine a slow spell then hits all cases alike instead of
    whichever case ran its repeats back to back at that moment, and cases timed in the same
    round can be compared pairwise (see :func:`paired_ratio`). One untimed warm-up call of
    each case comes first.
    """
    per_round = per_round or {}
    left = {name: per_round.get(name, 1) for name in cases}
    schedule: list[str] = []
    while any(left.values()):  # one of each case per pass: repeats spread through the round
        for name in cases:
            if left[name]:
                schedule.append(name)
                left[name] -= 1
    for fn in cases.values():
        fn()
    times: dict[str, list[list[float]]] = {name: [] for name in cases}
    for r in range(rounds):
        shift = r % len(schedule)
        order = schedule[shift:] + schedule[:shift]
        if r % 2:
            order.reverse()
        for name in cases:
            times[name].append([])
        for name in order:
            t0 = time.perf_counter()
            cases[name]()
            times[name][-1].append(time.perf_counter() - t0)
    return times


def interleaved_items(fns: Mapping[str, Callable[[Any], Any]], items: Sequence[Any], *,
                      flip: bool = False) -> dict[str, float]:
    """Total wall time of each function over ``items``, the functions interleaved item by
    item (their order reversed from one item to the next, and on every other call with
    ``flip``): load changes on a shared machine then hit all of them alike at the scale of
    one item (milliseconds), and whichever runs second on an item (warm caches) is not
    always the same one."""
    totals = dict.fromkeys(fns, 0.0)
    order = list(fns.items())
    for i, item in enumerate(items):
        for name, fn in (order if (i + flip) % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            fn(item)
            totals[name] += time.perf_counter() - t0
    return totals


def paired_ratio(times: Mapping[str, list[list[float]]], num: str, den: str
                 ) -> tuple[float, list[float]]:
    """Median over rounds of ``median(num's times) / median(den's times)`` within a round,
    and the per-round ratios: robust to load that changes between rounds."""
    ratios = [statistics.median(a) / statistics.median(b)
              for a, b in zip(times[num], times[den], strict=True)]
    return statistics.median(ratios), ratios


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
