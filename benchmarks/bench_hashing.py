"""Hashing throughput on >= 2 MP real-photo JPEGs: lookalike vs the plain ImageHash loop.

Cases, measured in the same run (median of --repeats):

- ``imagehash loop``: ``imagehash.dhash(Image.open(path))`` per file, as users write it;
- ``decode floor``: read the file and decode it at reduced scale (``draft``) and nothing else;
- ``lookalike fast`` / ``lookalike full``: one worker, read + digest + decode + dhash;
- ``scan, N workers``: the whole ``lookalike.scan`` pipeline on the folder, no cache.

Photos are scikit-image's samples upscaled to 2400 px on the long side (2.4 to 5.8 MP) and
saved as JPEG q90, since the registries carry few large photos.

    python benchmarks/bench_hashing.py [--repeats 5] [--copies 2]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from common import CACHE, median_time, print_table, write_json


def make_photos(copies: int) -> list[Path]:
    from PIL import Image, ImageEnhance

    import realdata

    out = CACHE / f"big_jpegs_{copies}"
    if out.exists() and any(out.iterdir()):
        return sorted(out.glob("*.jpg"))
    out.mkdir(parents=True, exist_ok=True)
    for src in realdata.skimage_photos(photos_only=True):
        img = Image.open(src).convert("RGB")
        scale = 2400 / max(img.size)
        big = img.resize((round(img.width * scale), round(img.height * scale)),
                         Image.Resampling.BICUBIC)
        if big.width * big.height < 2_000_000:
            continue
        for k in range(copies):  # distinct bytes per copy: no cache or page-cache tricks
            ImageEnhance.Brightness(big).enhance(1 + 0.03 * k).save(
                out / f"{src.stem}_{k}.jpg", quality=90)
    return sorted(out.glob("*.jpg"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--copies", type=int, default=2)
    args = ap.parse_args()

    import imagehash
    from PIL import Image

    import lookalike
    from lookalike.config import ScanConfig
    from lookalike.pipeline import hash_file
    from lookalike.sources import FileEntry

    files = make_photos(args.copies)
    folder = files[0].parent
    megapixels = sum(Image.open(f).width * Image.open(f).height for f in files) / len(files) / 1e6
    entries = [FileEntry(str(f), f.stat().st_size, 0, str(folder)) for f in files]
    fast = ScanConfig(method="dhash", decode="fast", pixel_digest=False)
    full = ScanConfig(method="dhash", decode="full", pixel_digest=False)

    def imagehash_loop() -> None:
        for f in files:
            imagehash.dhash(Image.open(f))

    def floor() -> None:
        for f in files:
            img = Image.open(io.BytesIO(f.read_bytes()))
            img.draft("RGB", (256, 256))
            img.load()

    def ours(config: ScanConfig):
        return lambda: [hash_file(e, config) for e in entries]

    def scan(workers: int):
        return lambda: lookalike.scan(folder, method="dhash", workers=workers)

    cases = [("imagehash loop", imagehash_loop), ("decode floor", floor),
             ("lookalike fast, 1 worker", ours(fast)), ("lookalike full, 1 worker", ours(full)),
             ("scan fast, 1 worker", scan(1)), ("scan fast, 2 workers", scan(2))]
    results = {}
    for name, fn in cases:
        med, times = median_time(fn, args.repeats)
        results[name] = {"median_s": med, "times_s": times, "images_per_s": len(files) / med}
        print(f"{name:<28} {len(files) / med:8.1f} images/s", flush=True)

    base = results["imagehash loop"]["images_per_s"]
    rows = [(name, r["images_per_s"], r["images_per_s"] / base) for name, r in results.items()]
    print(f"\n{len(files)} JPEGs, mean {megapixels:.1f} MP, median of {args.repeats} runs\n")
    table = print_table(["case", "images/s", "x imagehash loop"], rows)
    ratios = {
        "fast_vs_imagehash": results["lookalike fast, 1 worker"]["images_per_s"] / base,
        "fast_vs_floor": results["lookalike fast, 1 worker"]["images_per_s"]
        / results["decode floor"]["images_per_s"],
        "scan_2_vs_1_workers": results["scan fast, 2 workers"]["images_per_s"]
        / results["scan fast, 1 worker"]["images_per_s"],
    }
    print("\n" + "\n".join(f"{k}: {v:.2f}" for k, v in ratios.items()))
    write_json("hashing", {"files": len(files), "mean_megapixels": megapixels,
                           "repeats": args.repeats, "results": results, "ratios": ratios,
                           "table": table})


if __name__ == "__main__":
    main()
