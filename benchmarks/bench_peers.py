"""Speed and memory side by side with the peers (issue 17): lookalike, immaculate, czkawka,
the plain ImageHash loop and "Pillow decode alone" (the floor), on three folders.

Folders (built once from real photos, cached under ``.cache/bench/``):

- ``small``: the accuracy benchmark's photos and their 22 seeded edits (1,840 files), written
  in the mix of a scraped ML dataset (about 90% JPEG q75-95, 5% PNG, 5% WebP; lossy edits
  and EXIF-rotated files kept as they were made), plus a smaller re-encoded copy of 60% of
  them: ~2,900 files, median ~0.3 MP;
- ``camera``: 150 JPEGs 4000x3000 q90: the 80 photos (then 70 again, cropped elsewhere)
  cropped to 4:3, upscaled, sharpened and given a light fine texture so they are not blurry;
- ``grain``: the same 150 with camera-like grain (Gaussian noise, sigma 7 per channel), q92.

Tools, all run as their users run them (``benchmarks/peers.py``), each in its own process
timed with ``os.wait4``: CPU = user + sys of the process and its children, wall, peak RSS
(of the largest single process). Python tools run with their modules byte-compiled, as
``pip install`` leaves them (``peers.byte_compile``):

- ``lookalike``: ``lookalike scan FOLDER --format json``, defaults (all cores), empty cache;
- ``lookalike -j 1``: the same with one worker (no subprocesses);
- ``immaculate`` 0.3.0 (its CLI) and ``czkawka`` 0.1.2 (its Python bindings' defaults);
- ``imagehash``: a loop of ``imagehash.dhash(Image.open(p))``;
- ``pillow``: Pillow decode alone, JPEGs reduced 1/8 with ``draft``, PNG/WebP in full;
- ``exact floor``: every pixel decoded, grey, one Lanczos resize to 16 x 16: the least a
  scan with bit-exact dhash-z 16 hashes (the default, the folklore recipe) does per file.

Medians of 3 runs (rounds interleave the tools: each round starts one tool later and every
other round runs them backwards). Prints the table and the ratios issue 17 sets targets for,
and writes ``benchmarks/results/peers.json`` (``peers-quick.json`` with ``--quick``).

    python benchmarks/bench_peers.py            # ~20 min on 2 cores
    python benchmarks/bench_peers.py --quick    # 300 small files, 20 camera ones, 1 run
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

import peers
import realdata
import transforms
from accuracy import dataset
from common import CACHE, REPO, print_table, write_json

VERSION = 1  # bump when a folder's recipe changes: cached folders are rebuilt
SEED = 0
CAMERA_SIZE = (4000, 3000)
CAMERA_COUNT = 150
GRAIN_SIGMA = 7.0
#: label -> (peers.run_peer name, lookalike workers)
TOOLS: dict[str, tuple[str, int | None]] = {
    "lookalike": ("lookalike", None), "lookalike -j 1": ("lookalike", 1),
    "immaculate": ("immaculate", None), "czkawka": ("czkawka", None),
    "imagehash": ("imagehash", None), "pillow": ("pillow", None),
    "exact floor": ("exact-floor", None)}
FOLDERS = ("small", "camera", "grain")


# --------------------------------------------------------------------------- folders


def _save_mixed(img: Image.Image, rng: random.Random, stem: Path) -> Path:
    """Write ``img`` as a scraped set stores it: mostly JPEG, some PNG and WebP."""
    r = rng.random()
    if r < 0.90:
        path = stem.with_suffix(".jpg")
        img.convert("RGB").save(path, "JPEG", quality=rng.randint(75, 95))
    elif r < 0.95:
        path = stem.with_suffix(".png")
        img.save(path, "PNG")
    else:
        path = stem.with_suffix(".webp")
        img.save(path, "WEBP", quality=80)
    return path


def small_pool(log: Any = print) -> list[Path]:
    """Folder (a)'s files, made once: the accuracy photos and edits in a JPEG-heavy mix,
    plus smaller re-encoded copies."""
    pool = CACHE / f"peers-small-v{VERSION}"
    listing = pool / "files.txt"
    if listing.is_file():
        return [pool / name for name in listing.read_text().split()]
    items = [it for it in dataset.build(dataset.FULL, log) if it.source == "photo"]
    log(f"building {pool} from {len(items)} photos and edits")
    tmp = pool.with_name(pool.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = random.Random(f"{SEED}:small")
    out: list[Path] = []
    for it in items:
        src = Path(it.path)
        img = None
        if src.suffix.lower() in (".jpg", ".jpeg", ".webp"):  # lossy edits stay as made
            out.append(tmp / f"{len(out):05d}{src.suffix.lower()}")
            shutil.copyfile(src, out[-1])
        else:
            img = transforms.load_image(src)
            out.append(_save_mixed(img, rng, tmp / f"{len(out):05d}"))
        if rng.random() < 0.6:  # an edited copy: smaller and re-encoded
            if img is None:
                img = transforms.load_image(src)
            s = rng.uniform(0.5, 0.9)
            small = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))),
                               Image.Resampling.LANCZOS)
            out.append(_save_mixed(small, rng, tmp / f"{len(out):05d}"))
    (tmp / "files.txt").write_text("\n".join(p.name for p in out) + "\n")
    shutil.rmtree(pool, ignore_errors=True)
    tmp.rename(pool)
    return [pool / p.name for p in out]


def _camera_pair(i: int, src: Path, plain: Path, grain: Path) -> None:
    """Camera-sized JPEG number ``i`` from photo ``src``, without and with grain."""
    rng = random.Random(f"{SEED}:camera:{i}")
    img = transforms.load_image(src).convert("RGB")
    # The largest 4:3 box, scaled 80-100% and placed at random.
    w = min(img.width, img.height * 4 / 3)
    w *= rng.uniform(0.8, 1.0)
    h = w * 3 / 4
    x, y = rng.uniform(0, img.width - w), rng.uniform(0, img.height - h)
    big = img.resize(CAMERA_SIZE, Image.Resampling.BICUBIC, box=(x, y, x + w, y + h))
    big = big.filter(ImageFilter.UnsharpMask(radius=3, percent=60, threshold=0))
    noise = np.random.default_rng([SEED, i])
    pixels = np.asarray(big, dtype=np.float32)
    # Fine luminance texture, so the upscaled photo is not blurry.
    pixels += noise.standard_normal((*pixels.shape[:2], 1), dtype=np.float32) * 3.0
    tmp = plain.with_suffix(".tmp")
    Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8)).save(
        tmp, "JPEG", quality=90)
    tmp.replace(plain)
    pixels += noise.standard_normal(pixels.shape, dtype=np.float32) * GRAIN_SIGMA
    tmp = grain.with_suffix(".tmp")
    Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8)).save(
        tmp, "JPEG", quality=92)
    tmp.replace(grain)


def camera_pools(count: int, log: Any = print) -> tuple[list[Path], list[Path]]:
    """Folders (b) and (c): the first ``count`` camera-sized JPEGs, plain and grainy, each
    made once (on all cores)."""
    root = CACHE / f"peers-camera-v{VERSION}"
    photos = sorted(realdata.skimage_photos(photos_only=True)
                    + realdata.opencv_photos(photos_only=True), key=lambda p: p.name)
    jobs = [(i, photos[i % len(photos)], root / "plain" / f"{i:03d}.jpg",
             root / "grain" / f"{i:03d}.jpg") for i in range(count)]
    missing = [j for j in jobs if not (j[2].is_file() and j[3].is_file())]
    if missing:
        log(f"making {len(missing)} camera-sized JPEGs (plain and grainy) in {root}")
        (root / "plain").mkdir(parents=True, exist_ok=True)
        (root / "grain").mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(_camera_pair, *zip(*missing, strict=True)))
    return [j[2] for j in jobs], [j[3] for j in jobs]


def folders(quick: bool, log: Any = print) -> dict[str, Path]:
    """Each folder as a tree of hard links (``peers.link_tree``), named by index."""
    small = small_pool(log)
    if quick:
        small = small[:: max(1, len(small) // 300)][:300]
    plain, grain = camera_pools(20 if quick else CAMERA_COUNT, log)
    out = {}
    for key, paths in (("small", small), ("camera", plain), ("grain", grain)):
        root = CACHE / "peers-trees" / f"{key}-v{VERSION}-{len(paths)}"
        peers.link_tree([str(p) for p in paths], root)
        out[key] = (root / "images").resolve()
    return out


def describe(folder: Path) -> dict[str, Any]:
    """Files, formats, median megapixels and total size of ``folder``."""
    files = sorted(folder.iterdir())
    mp = []
    for p in files:
        with Image.open(p) as im:
            mp.append(im.width * im.height / 1e6)
    formats: dict[str, int] = {}
    for p in files:
        formats[p.suffix.lstrip(".").upper()] = formats.get(p.suffix.lstrip(".").upper(), 0) + 1
    return {"files": len(files), "formats": formats, "median_mp": round(statistics.median(mp), 3),
            "mib": round(sum(p.stat().st_size for p in files) / 2**20, 1)}


# --------------------------------------------------------------------------- runs


def measure(trees: dict[str, Path], rounds: int) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every tool on every folder ``rounds`` times, interleaved: runs[folder][tool]."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        f: {t: [] for t in TOOLS} for f in trees}
    missing: set[str] = set()
    labels = list(TOOLS)
    for r in range(rounds):
        order = labels[r % len(labels):] + labels[: r % len(labels)]
        if r % 2:
            order.reverse()
        for key, tree in trees.items():
            for label in order:
                if label in missing:
                    continue
                name, workers = TOOLS[label]
                try:
                    run = peers.run_peer(name, tree, workers=workers)
                except (RuntimeError, OSError, ValueError) as exc:
                    print(f"  {label} failed on {key}: {exc}")
                    run = None
                if run is None:
                    missing.add(label)
                    continue
                print(f"  round {r + 1}/{rounds} {key:<6} {label:<15} CPU {run.cpu_s:7.2f} s"
                      f"  wall {run.wall_s:7.2f} s  {run.peak_rss_mib:6.0f} MiB"
                      f"  {len(run.groups)} groups", flush=True)
                runs[key][label].append({
                    "cpu_s": run.cpu_s, "wall_s": run.wall_s, "peak_rss_mib": run.peak_rss_mib,
                    "groups": len(run.groups), "grouped": sum(len(g) for g in run.groups),
                    "settings": run.settings, "command": " ".join(run.command)})
    return runs


def medians(runs: list[dict[str, Any]]) -> dict[str, float] | None:
    if not runs:
        return None
    return {k: statistics.median(r[k] for r in runs)
            for k in ("cpu_s", "wall_s", "peak_rss_mib", "groups")}


def ratios(med: dict[str, dict[str, dict[str, float] | None]], workers: int
           ) -> list[tuple[str, str, str, float | None, str]]:
    """(folder, what, target, value, verdict) for each ratio issue 17 names a target for."""

    def get(folder: str, tool: str, key: str = "cpu_s") -> float | None:
        m = med.get(folder, {}).get(tool)
        return m[key] if m else None

    def div(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    rows = []
    for folder in med:
        rows += [
            (folder, "lookalike CPU / decode floor", "<= 1.3" if folder == "small" else "",
             div(get(folder, "lookalike"), get(folder, "pillow"))),
            # The least a bit-exact default hash costs, over the decode floor: a target of
            # <= 1.3 above this one cannot be met without giving up exact hashes.
            (folder, "exact-hash floor / decode floor", "",
             div(get(folder, "exact floor"), get(folder, "pillow"))),
            (folder, "lookalike CPU / exact-hash floor", "",
             div(get(folder, "lookalike"), get(folder, "exact floor"))),
            (folder, "lookalike CPU / immaculate CPU", "<= 1" if folder == "small" else "",
             div(get(folder, "lookalike"), get(folder, "immaculate"))),
            (folder, "immaculate CPU / lookalike CPU", ">= 3.5" if folder == "camera" else "",
             div(get(folder, "immaculate"), get(folder, "lookalike"))),
            # files per CPU second, one worker over the floor's: the floor's CPU over ours
            (folder, "1 worker files/CPU-s / floor's", ">= 0.85" if folder == "grain" else "",
             div(get(folder, "pillow"), get(folder, "lookalike -j 1"))),
            (folder, f"wall speed-up, {workers} workers / 1", ">= 1.7" if folder == "grain"
             else "", div(get(folder, "lookalike -j 1", "wall_s"),
                          get(folder, "lookalike", "wall_s")))]
    out = []
    for folder, what, target, value in rows:
        verdict = ""
        if target and value is not None:
            op, bound = target.split()
            ok = value <= float(bound) if op == "<=" else value >= float(bound)
            verdict = "met" if ok else "missed"
        out.append((folder, what, target, value, verdict))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="300 small files, 20 camera-sized ones, 1 run (for development)")
    ap.add_argument("--runs", type=int, help="runs per tool and folder (default 3; 1 quick)")
    args = ap.parse_args(argv)
    rounds = args.runs or (1 if args.quick else 3)
    t0 = time.perf_counter()
    trees = folders(args.quick)
    info = {key: describe(tree) for key, tree in trees.items()}
    for key, d in info.items():
        print(f"{key}: {d['files']} files {d['formats']}, median {d['median_mp']} MP, "
              f"{d['mib']} MiB ({trees[key]})")
    # As pip leaves them: compiled modules for lookalike (and the ImageHash and Pillow
    # loops, run by this Python) and for each peer's venv.
    peers.byte_compile(sys.executable, REPO / "src")
    for name in ("czkawka", "immaculate"):
        py = peers.setup(name)
        if py is not None:
            peers.byte_compile(py)
    runs = measure(trees, rounds)
    med = {f: {t: medians(r) for t, r in by_tool.items()} for f, by_tool in runs.items()}

    print(f"\nmedians of {rounds} run(s); CPU = user + sys incl. children; "
          f"lookalike default = {os.cpu_count()} workers")
    rows = []
    for folder, by_tool in med.items():
        for tool, m in by_tool.items():
            if m is None:
                rows.append((folder, tool, "skipped", "", "", "", ""))
                continue
            rows.append((folder, tool, m["cpu_s"], m["wall_s"], m["peak_rss_mib"],
                         info[folder]["files"] / m["cpu_s"], int(m["groups"])))
    table = print_table(("folder", "tool", "CPU s", "wall s", "peak RSS MiB",
                         "files / CPU s", "groups"), rows)
    print()
    checks = ratios(med, os.cpu_count() or 1)
    ratio_table = print_table(("folder", "ratio", "target", "value", ""),
                              [(f, w, t, "n/a" if v is None else round(v, 2), ok)
                               for f, w, t, v, ok in checks])
    write_json("peers-quick" if args.quick else "peers", {
        "command": " ".join(["python", "benchmarks/bench_peers.py", *(argv or sys.argv[1:])]),
        "rounds": rounds, "folders": {k: {**info[k], "path": str(trees[k])} for k in trees},
        "tools": {label: {"name": n, "workers": w} for label, (n, w) in TOOLS.items()},
        "runs": runs, "medians": med,
        "ratios": [{"folder": f, "ratio": w, "target": t, "value": v, "verdict": ok}
                   for f, w, t, v, ok in checks],
        "table": table, "ratio_table": ratio_table,
        "seconds": round(time.perf_counter() - t0, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
