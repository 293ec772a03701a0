"""How far fast (reduced) decoding moves hashes from full decoding, and whether it splits groups.

Two measurements per method:

- *raw drift*: the Hamming distance between the hash of each image decoded in full and
  decoded fast (``lookalike.hash_image(decode=...)``), over the images fast mode really
  reduces (large JPEGs; every other image decodes identically): mean, max, share identical;
- *groups*: a full-decode scan and a default (fast) scan at the same threshold. The fast
  scan re-hashes exactly every reduced image that may have a match (``lookalike.grouping.confirm``).
  Reported: full-decode groups that the fast scan splits, true duplicate pairs (same
  original) joined by the full scan but not by the fast one, extra true pairs joined, and
  how many images the fast scan re-hashed with full decoding.

Sets: ``--set drift`` (default): scikit-image and OpenCV photos upscaled to >= 2 MP JPEGs
plus 4 benign copies each; ``--set accuracy``: the accuracy benchmark's full set
(``benchmarks/accuracy``, 3,439 images), the set issue 3 names.

    python benchmarks/bench_drift.py [--set drift|accuracy] [--limit 40]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from common import CACHE, REPO, print_table, write_json

METHODS = [("dhash-z", 16, 10), ("dhash-z", 8, 0), ("dhash-z", 8, 4), ("dhash-z", 16, 6),
           ("dhash", 8, 4), ("dhash", 16, 20), ("phash", 8, 6), ("phash", 16, 30),
           ("ahash", 8, 2), ("whash", 8, 4)]


def drift_set(limit: int) -> dict[str, str]:
    """Photos + benign copies; returns each file's original (ground truth)."""
    from PIL import Image

    import realdata
    import transforms

    out = CACHE / f"drift_{limit}"
    photos = realdata.skimage_photos(photos_only=True)
    with contextlib.suppress(realdata.DataUnavailable):
        photos += realdata.opencv_photos(photos_only=True)
    photos = sorted(photos, key=lambda p: p.name)[:limit]
    if not (out / ".complete").exists():
        (out / "orig").mkdir(parents=True, exist_ok=True)
        for p in photos:  # upscaled JPEG originals: the case where draft decoding matters
            img = transforms.load_image(p).convert("RGB")
            s = max(1.0, 2000 / max(img.size))
            img.resize((round(img.width * s), round(img.height * s)),
                       Image.Resampling.BICUBIC).save(out / "orig" / f"{p.stem}.jpg", quality=90)
        rng = random.Random(0)
        names = [n for n in transforms.BENIGN if n != "exif_orientation"]
        for p in sorted((out / "orig").iterdir()):
            transforms.make_variants([p], out / "copies", names=rng.sample(names, 4), seed=0)
        (out / ".complete").write_text("ok")
    origin = {str(p): p.stem for p in (out / "orig").iterdir()}
    origin.update({str(p): p.name.split("__")[0] for p in (out / "copies").iterdir()})
    return origin


def accuracy_set() -> dict[str, str]:
    """The accuracy benchmark's full set; returns each file's ground-truth group."""
    sys.path.insert(0, str(REPO / "benchmarks" / "accuracy"))
    import dataset

    return {item.path: item.group for item in dataset.build(dataset.FULL)}


def raw_drift(files: list[str]) -> dict[tuple[str, int], list[int]]:
    """Per method and size, the full-vs-fast distance of every image fast mode reduces."""
    from lookalike.imaging.decode import decode_bytes
    from lookalike.imaging.hashes import get_method

    out: dict[tuple[str, int], list[int]] = defaultdict(list)
    for path in files:
        data = Path(path).read_bytes()
        try:
            full, fast = (decode_bytes(data, mode=m)[0] for m in ("full", "fast"))  # type: ignore[arg-type]
        except Exception:  # not an image: scans report it; nothing to compare here
            continue
        if not fast.reduced:
            continue
        for method, size in {(m, s) for m, s, _ in METHODS}:
            m = get_method(method)
            out[(method, size)].append(m.hash(full, size) - m.hash(fast, size))
    return out


def components(result) -> dict[str, int]:
    return {m.record.path: g.id for g in result.groups for m in g.members}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=("drift", "accuracy"), default="drift")
    ap.add_argument("--limit", type=int, default=40, help="source photos (--set drift)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import lookalike
    from lookalike.store.cache import HashCache

    truth = drift_set(args.limit) if args.set == "drift" else accuracy_set()
    files = sorted(truth)
    drift = raw_drift(files)
    by_truth: dict[str, list[str]] = defaultdict(list)
    for path, group in truth.items():
        by_truth[group].append(path)
    true_pairs = [(a, b) for members in by_truth.values()
                  for i, a in enumerate(members) for b in members[i + 1:]]
    rows, out = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = HashCache(Path(tmp) / "cache.sqlite")
        for method, size, threshold in METHODS:
            scans = {}
            for mode in ("fast", "full"):  # fast first: it pays for its own exact hashes
                scans[mode] = lookalike.scan(files, method=method, hash_size=size,
                                             threshold=threshold, decode=mode,
                                             workers=args.workers, cache=cache)
            comp = {mode: components(r) for mode, r in scans.items()}
            split = sum(1 for g in scans["full"].groups
                        if len({comp["fast"].get(m.record.path, m.record.path)
                                for m in g.members}) > 1)

            def joined(mode: str, a: str, b: str, comp=comp) -> bool:
                ca, cb = comp[mode].get(a), comp[mode].get(b)
                return ca is not None and ca == cb

            lost = sum(1 for a, b in true_pairs
                       if joined("full", a, b) and not joined("fast", a, b))
            gained = sum(1 for a, b in true_pairs
                         if joined("fast", a, b) and not joined("full", a, b))
            d = drift[(method, size)]
            stats = scans["fast"].stats
            row = {"method": f"{method} {size}", "threshold": threshold, "reduced_images": len(d),
                   "mean_bits": statistics.mean(d) if d else 0.0, "max_bits": max(d, default=0),
                   "identical": sum(x == 0 for x in d) / len(d) if d else 1.0,
                   "full_groups": len(scans["full"].groups), "full_groups_split_by_fast": split,
                   "true_pairs_full": sum(1 for a, b in true_pairs if joined("full", a, b)),
                   "true_pairs_lost_by_fast": lost, "true_pairs_gained_by_fast": gained,
                   "exact_rehashed": stats.get("exact_needed", 0)}
            out[row["method"] + f" @{threshold}"] = row
            rows.append((row["method"], threshold, row["mean_bits"], row["max_bits"],
                         f"{row['identical']:.0%}", row["full_groups"], split,
                         row["true_pairs_full"], lost, gained, row["exact_rehashed"]))
            print(f"{row['method']} @{threshold}: done", flush=True)
        cache.close()
    reduced = len(drift[(METHODS[0][0], METHODS[0][1])])
    print(f"\n{len(files)} images ({args.set} set), {reduced} of them reduced by fast "
          "decoding; drift columns over those\n")
    table = print_table(["method", "T", "mean drift", "max drift", "identical",
                         "groups (full)", "split by fast", "true pairs (full)",
                         "lost by fast", "gained by fast", "re-hashed exactly"], rows)
    write_json(f"drift-{args.set}", {"images": len(files), "reduced_images": reduced,
                                     "results": out, "table": table})


if __name__ == "__main__":
    main()
