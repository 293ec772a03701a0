"""Does ``lookalike calibrate`` tell the truth? Its recommendation against the real best.

For each image set with known duplicates: run :func:`lookalike.analysis.calibrate.calibrate`
on its files as a user would (default sample, seed 0), then measure the recommended
threshold against the set's ground truth: pair precision and recall at it, and the best
threshold at precision >= 0.999 (``best``). The target (issue 15): precision >= 0.999 and
recall >= 0.9 x the best's. ``before`` is the calibrate of git HEAD (``--before REV``).

Sets: the accuracy benchmark (``benchmarks/accuracy``, ~3,400 images; stereo/same-scene,
other emoji vendors and skin tones are left out of precision as there) and the demo's
sample folder (``scripts/make_sample.py``: 12 photos and 5 copies each; the motorcycle
stereo pair left out of precision).

    python benchmarks/bench_calibrate.py [--invariant dihedral] [--sample 500] [--no-before]

Prints a table; writes ``benchmarks/results/calibrate.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from accuracy import dataset, metrics  # noqa: E402
from common import CACHE, REPO, print_table, write_json  # noqa: E402

TARGET = 0.999
RECALL_SHARE = 0.9


def _local(path: str) -> str:
    """Manifests written in another checkout name its .cache: find the file in ours."""
    if Path(path).exists() or ".cache/" not in path:
        return path
    return str(REPO / ".cache" / path.split(".cache/", 1)[1])


def benchmark_set() -> tuple[list[str], list[str], list[str | None]]:
    """(paths, ground-truth groups, hard-negative keys) of the accuracy benchmark."""
    items = dataset.build(dataset.FULL)
    return ([_local(i.path) for i in items], [i.group for i in items],
            [dataset.hard_key(i) for i in items])


def demo_set() -> tuple[list[str], list[str], list[str | None]]:
    """The demo's sample folder (built under .cache/bench/ when missing)."""
    folder = REPO / "sample"
    if not (folder / "originals").is_dir():
        folder = CACHE / "calibrate-sample"
        if not (folder / "originals").is_dir():
            subprocess.run([sys.executable, str(REPO / "scripts" / "make_sample.py"),
                            str(folder)], check=True)
    paths = sorted(str(p) for p in folder.rglob("*") if p.parent.name in ("originals", "copies")
                   and p.is_file())
    groups = [Path(p).stem.split("__")[0] for p in paths]
    stereo = {"motorcycle_left", "motorcycle_right"}  # same scene: neither pair kind
    return paths, groups, ["scene:motorcycle" if g in stereo else None for g in groups]


def _hash_chunk(args: tuple[list[str], str, int | None, str, bool]
                ) -> list[tuple[int, ...] | None]:
    from lookalike.imaging.decode import decode_bytes
    from lookalike.imaging.hashes import get_method

    paths, method, size, invariant, trim = args
    out: list[tuple[int, ...] | None] = []
    for p in paths:
        try:
            pic = decode_bytes(Path(p).read_bytes(), mode="fast")[0]
            out.append(get_method(method).hash(pic, size, invariant, trim).segments)
        except Exception:
            out.append(None)
    return out


def true_curve(paths: list[str], groups: list[str], hard: list[str | None], method: str,
               size: int | None, invariant: str, nbits: int, workers: int,
               trim: bool = True) -> dict[str, Any]:
    """Precision and recall per threshold (0 .. nbits // 4) against the ground truth, with
    the scan's border trimming (``trim``), as calibrate hashes."""
    from lookalike.search import find_pairs, pack_hashes

    chunks = [paths[i:i + 32] for i in range(0, len(paths), 32)]
    with ProcessPoolExecutor(workers) as pool:
        segs = [s for part in pool.map(_hash_chunk, [(c, method, size, invariant, trim)
                                                     for c in chunks]) for s in part]
    keep = [k for k, s in enumerate(segs) if s is not None]
    segs = [segs[k] for k in keep]
    truth = metrics.make_truth([groups[k] for k in keep], [hard[k] for k in keep])
    top = max(1, nbits // 4)
    owner = np.repeat(np.arange(len(segs)), [len(s) for s in segs])
    ii, jj, dd = find_pairs(pack_hashes([v for s in segs for v in s], nbits), top)
    a, b = owner[ii], owner[jj]
    m = a != b
    a, b, dd = np.minimum(a, b)[m], np.maximum(a, b)[m], dd[m]
    best: dict[tuple[int, int], int] = {}
    for x, y, d in zip(a.tolist(), b.tolist(), dd.tolist(), strict=True):
        best[(x, y)] = min(d, best.get((x, y), d))
    g = np.unique(np.asarray([groups[k] for k in keep]), return_inverse=True)[1]
    hk = [hard[k] for k in keep]
    tp = np.zeros(top + 1, dtype=np.int64)
    fp = np.zeros(top + 1, dtype=np.int64)
    for (x, y), d in best.items():
        if g[x] == g[y]:
            tp[d] += 1
        elif hk[x] is None or hk[x] != hk[y]:
            fp[d] += 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    recall = tp / max(truth.n_pos, 1)
    ok = np.flatnonzero(precision >= TARGET - 1e-12)
    t_best = int(ok[np.argmax(recall[ok])]) if ok.size else None
    return {"images": len(segs), "positive_pairs": truth.n_pos, "negative_pairs": truth.n_neg,
            "precision": precision, "recall": recall, "fp": fp, "best": t_best}


def load_before(rev: str) -> Any:
    """The calibrate module as it was at git revision ``rev``."""
    src = subprocess.run(["git", "show", f"{rev}:src/lookalike/analysis/calibrate.py"],
                         cwd=REPO, check=True, capture_output=True, text=True).stdout
    tmp = Path(tempfile.mkdtemp()) / "calibrate_before.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location("calibrate_before", tmp)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    from lookalike.analysis import calibrate as after
    from lookalike.config import DEFAULT_METHOD, ScanConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default=DEFAULT_METHOD)
    ap.add_argument("--hash-size", type=int, default=None)
    ap.add_argument("--invariant", default=None, help="default: calibrate's own default")
    ap.add_argument("--sample", type=int, default=None, help="default: calibrate's own")
    ap.add_argument("--workers", "-j", type=int, default=2)
    ap.add_argument("--before", default="HEAD", help="git revision of the 'before' code")
    ap.add_argument("--no-before", action="store_true")
    args = ap.parse_args(argv)
    versions = {"after": after}
    if not args.no_before:
        versions = {"before": load_before(args.before), "after": after}
    rows, out = [], []
    for set_name, make in (("benchmark", benchmark_set), ("demo sample", demo_set)):
        paths, groups, hard = make()
        for name, mod in versions.items():
            # The old module is loaded from a file worker processes cannot import.
            opts: dict[str, Any] = {"method": args.method, "hash_size": args.hash_size,
                                    "workers": args.workers if mod is after else 1}
            if args.invariant is not None or mod is not after:
                # The old code's default was "none": give it the scan's default, as the CLI does.
                opts["invariant"] = args.invariant or ScanConfig().invariant
            if args.sample is not None:
                opts["sample"] = args.sample
            t0 = time.perf_counter()
            cal = mod.calibrate(paths, **opts)
            secs = time.perf_counter() - t0
            truth = true_curve(paths, groups, hard, cal.method, cal.hash_size, cal.invariant,
                               cal.nbits, args.workers)
            t, tb = cal.threshold, truth["best"]
            top = len(truth["recall"]) - 1
            p, r = float(truth["precision"][min(t, top)]), float(truth["recall"][min(t, top)])
            rb = float(truth["recall"][tb]) if tb is not None else 0.0
            ok = p >= TARGET and r >= RECALL_SHARE * rb
            rows.append([set_name, name, f"{cal.method} {cal.hash_size} {cal.invariant}",
                         cal.images, t, f"{p:.5f}", f"{r:.3f}", tb, f"{rb:.3f}",
                         f"{r / rb:.2f}" if rb else "-", "yes" if ok else "NO",
                         f"{secs:.1f}"])
            out.append({"set": set_name, "version": name, "method": cal.method,
                        "hash_size": cal.hash_size, "invariant": cal.invariant,
                        "sampled": cal.images, "images": truth["images"],
                        "positive_pairs": truth["positive_pairs"],
                        "negative_pairs": truth["negative_pairs"], "recommended": t,
                        "calibrate_precision": cal.precision, "calibrate_recall": cal.recall,
                        "true_precision": p, "true_recall": r, "best_threshold": tb,
                        "best_recall": rb, "target_met": ok, "seconds": round(secs, 1)})
            print(f"  {set_name} {name}: t={t} (best {tb}) in {secs:.1f} s", flush=True)
    print()
    print_table(["set", "code", "method", "sampled", "recommended", "true precision",
                 "true recall", f"best t (P>={TARGET})", "best recall", "recall / best",
                 "target met", "s"], rows)
    write_json("calibrate", {"command": " ".join(["python", "benchmarks/bench_calibrate.py",
                                                   *(argv or sys.argv[1:])]),
                             "target_precision": TARGET, "recall_share": RECALL_SHARE,
                             "results": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
