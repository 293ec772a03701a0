"""How far fast (reduced) decoding moves hashes from full decoding, on real photos.

For each method: the Hamming distance between the hash of every image decoded in full and
decoded fast (mean, max, share identical), and whether fast decoding ever splits a group that
full decoding finds at the same threshold. Images: scikit-image and OpenCV sample photos,
the same photos upscaled to >= 2 MP JPEGs (where reduced JPEG decoding really kicks in), and
benign transformed copies of them (resize, re-encode, brightness, ...), so that true groups
exist.

    python benchmarks/bench_drift.py [--limit 40]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
from pathlib import Path

from common import CACHE, print_table, write_json

METHODS = [("dhash-z", 8, 0), ("dhash-z", 16, 10), ("dhash", 8, 4), ("dhash", 16, 20),
           ("phash", 8, 6), ("phash", 16, 30), ("ahash", 8, 2), ("whash", 8, 4)]


def build(limit: int) -> tuple[list[Path], dict[str, str]]:
    """Photos + benign copies; returns the files and each file's original (ground truth)."""
    from PIL import Image

    import realdata
    import transforms

    out = CACHE / f"drift_{limit}"
    photos = realdata.skimage_photos(photos_only=True)
    with contextlib.suppress(realdata.DataUnavailable):
        photos += realdata.opencv_photos(photos_only=True)
    photos = sorted(photos, key=lambda p: p.name)[:limit]
    origin: dict[str, str] = {}
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
    for p in (out / "orig").iterdir():
        origin[str(p)] = p.stem
    for p in (out / "copies").iterdir():
        origin[str(p)] = p.name.split("__")[0]
    return sorted(Path(k) for k in origin), origin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=40, help="number of source photos")
    args = ap.parse_args()

    import lookalike
    from lookalike.groups import build_groups

    files, origin = build(args.limit)
    rows, out = [], {}
    for method, size, threshold in METHODS:
        recs = {}
        for mode in ("full", "fast"):
            res = lookalike.scan([f.parent for f in {f.parent: f for f in files}.values()],
                                 method=method, hash_size=size, threshold=threshold,
                                 decode=mode, workers=2)
            recs[mode] = {r.path: r for r in res.records}
        d = [recs["full"][p].hash - recs["fast"][p].hash for p in recs["full"]]
        groups = {m: build_groups(list(recs[m].values()), threshold) for m in ("full", "fast")}
        fast_comp = {p: g.id for g in groups["fast"] for p in g.paths}
        split = sum(1 for g in groups["full"]
                    if len({fast_comp.get(p, ("alone", p)) for p in g.paths}) > 1)
        true_pairs = lambda gs: sum(  # noqa: E731
            1 for g in gs for i, a in enumerate(g.paths) for b in g.paths[i + 1:]
            if origin[a] == origin[b])
        row = {"method": f"{method} {size}", "threshold": threshold, "images": len(d),
               "mean_bits": statistics.mean(d), "max_bits": max(d),
               "identical": sum(x == 0 for x in d) / len(d),
               "full_groups": len(groups["full"]), "full_groups_split_by_fast": split,
               "true_pairs_full": true_pairs(groups["full"]),
               "true_pairs_fast": true_pairs(groups["fast"])}
        out[row["method"]] = row
        rows.append((row["method"], threshold, row["mean_bits"], row["max_bits"],
                     f"{row['identical']:.0%}", row["full_groups"], split,
                     row["true_pairs_full"], row["true_pairs_fast"]))
        print(f"{row['method']}: done", flush=True)
    print(f"\n{len(files)} images: {args.limit} photos as >= 2 MP JPEGs + 4 benign copies each\n")
    table = print_table(["method", "T", "mean drift", "max drift", "identical", "groups (full)",
                         "split by fast", "true pairs full", "true pairs fast"], rows)
    write_json("drift", {"images": len(files), "results": out, "table": table})


if __name__ == "__main__":
    main()
