"""Hashing throughput on >= 2 MP real-photo JPEGs: lookalike vs the plain ImageHash loop.

Cases, measured in the same run:

- ``imagehash loop``: ``imagehash.dhash(Image.open(path))`` per file, as users write it;
- ``decode floor``: read the file and decode it at reduced scale, and nothing else: the part
  of fast mode no hashing code can avoid, done the way lookalike's fast path does it. It
  reads the bytes with one ``os.read``, asks libjpeg for the same reduced size and mode
  (``decode._reduce_for_fast``, so that it follows any change to it) and loads;
- ``lookalike fast`` / ``lookalike full``: one worker, ``worker.hash_file`` per file as the
  scan's workers call it: read + decode + dhash (a scan takes the SHA-256 of group members'
  bytes afterwards, not of every file: see ``lookalike.pipeline``);
- ``scan, N workers``: the whole ``lookalike.scan`` pipeline on the folder, no cache.

The machine may be shared, so timings are interleaved. Each round times every case once, in
an order that rotates from round to round. The floor and lookalike fast, whose ratio is the
target, are timed together ``--cheap-repeats`` times a round, interleaved file by file
(floor then fast on one file, fast then floor on the next), so a slow spell of a few
milliseconds hits both alike. Throughputs are medians over all timings; ratios are medians
of paired ratios (per pass for fast vs floor, per round for the others).

Photos are scikit-image's samples upscaled to 2400 px on the long side (2.4 to 5.8 MP;
``--long-side 4000`` for phone-camera sizes, 6.7 to 16 MP) and
saved as JPEG q90, since the registries carry few large photos.

    python benchmarks/bench_hashing.py [--repeats 5] [--cheap-repeats 4] [--copies 2]

``--floor`` measures instead, per file and in CPU seconds (``time.process_time``), how close
fast decoding plus the default hash (dhash-z 16, dihedral, trimmed) comes to the decoders'
own cost, on 150 camera-sized JPEGs (4000x3000 q90, made from real photos with a light
texture), the same with camera grain (sigma 7, q92) and the accuracy benchmark's small
photos (``--small``). The floors: Pillow (JPEG reduced 1/8 with ``draft``, other formats in
full), in colour and in grey, and libjpeg-turbo's scaled decode through ``simplejpeg``
(when installed). Cases are interleaved file by file; totals are medians of ``--repeats``.

    python benchmarks/bench_hashing.py --floor [--repeats 3] [--small FOLDER]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
from collections.abc import Callable
from pathlib import Path

from common import (
    CACHE,
    interleaved_items,
    paired_ratio,
    print_table,
    round_robin_times,
    write_json,
)


def make_photos(copies: int, long_side: int = 2400) -> list[Path]:
    from PIL import Image, ImageEnhance

    import realdata

    name = f"big_jpegs_{copies}" + ("" if long_side == 2400 else f"_{long_side}")
    out = CACHE / name
    if out.exists() and any(out.iterdir()):
        return sorted(out.glob("*.jpg"))
    out.mkdir(parents=True, exist_ok=True)
    for src in realdata.skimage_photos(photos_only=True):
        img = Image.open(src).convert("RGB")
        scale = long_side / max(img.size)
        big = img.resize((round(img.width * scale), round(img.height * scale)),
                         Image.Resampling.BICUBIC)
        if big.width * big.height < 2_000_000:
            continue
        for k in range(copies):  # distinct bytes per copy: no cache or page-cache tricks
            ImageEnhance.Brightness(big).enhance(1 + 0.03 * k).save(
                out / f"{src.stem}_{k}.jpg", quality=90)
    return sorted(out.glob("*.jpg"))


def make_camera_set(grain: bool, n: int = 150) -> list[Path]:
    """``n`` camera-sized JPEGs (4000x3000) from real photos, seeded: each source's 4:3 crop,
    then (for sources used twice) its lower-right quarter, so no two files are near copies;
    upscaled, with luma and chroma noise (sigma 2 at q90, or camera grain: sigma 7 at q92)."""
    import numpy as np
    from PIL import Image

    import realdata

    out = CACHE / ("cam150-grain" if grain else "cam150")
    if (out / ".complete").exists():
        return sorted(out.glob("*.jpg"))
    out.mkdir(parents=True, exist_ok=True)
    sigma, quality = (7.0, 92) if grain else (2.0, 90)
    srcs = sorted(realdata.skimage_photos(True) + realdata.opencv_photos(True),
                  key=lambda p: p.name)
    rng = np.random.default_rng(17)
    for i in range(n):
        src = srcs[i % len(srcs)]
        img = Image.open(src).convert("RGB")
        w, h = img.size
        cw, ch = (h * 4 // 3, h) if w * 3 >= h * 4 else (w, w * 3 // 4)
        if i >= len(srcs):  # a second file of this source: another part of it
            cw, ch = cw // 2, ch // 2
        img = img.crop((w - cw, h - ch, w, h)).resize((4000, 3000), Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.float32)
        arr += rng.normal(0, sigma, (*arr.shape[:2], 1)).astype(np.float32)
        arr += rng.normal(0, sigma / 2, arr.shape).astype(np.float32)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(
            out / f"cam{i:03d}_{src.stem}.jpg", quality=quality)
    (out / ".complete").touch()
    return sorted(out.glob("*.jpg"))


def floor_cases() -> dict[str, Callable[[bytes], object]]:
    """The decode floors and lookalike's fast decode + default hash, each on one file's bytes."""
    from PIL import Image

    from lookalike.imaging.decode import decode_bytes
    from lookalike.imaging.hashes import get_method

    def pillow(mode: str) -> Callable[[bytes], object]:
        def decode(data: bytes) -> None:
            img = Image.open(io.BytesIO(data))
            if img.format == "JPEG":
                img.draft(mode, (img.width // 8, img.height // 8))
            img.load()
        return decode

    dhash_z = get_method("dhash-z")
    cases: dict[str, Callable[[bytes], object]] = {
        "Pillow floor": pillow("RGB"), "Pillow floor, grey": pillow("L"),
        "lookalike fast decode": lambda data: decode_bytes(data, mode="fast"),
        "lookalike fast + hash": lambda data: dhash_z.hash(
            decode_bytes(data, mode="fast")[0], 16, "dihedral", True),
    }
    try:
        import simplejpeg  # type: ignore[import-not-found]
    except ImportError:
        return cases

    def turbo(data: bytes) -> None:
        if data[:2] != b"\xff\xd8":
            Image.open(io.BytesIO(data)).load()
            return
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=-(-h // 8),
                               min_width=-(-w // 8))

    return {**cases, "simplejpeg floor": turbo}


def floor_main(repeats: int, small: Path | None) -> None:
    """Per-file CPU of each floor and of lookalike fast, interleaved file by file."""
    import time

    sets = {"150 camera JPEGs, q90": make_camera_set(False),
            "150 camera JPEGs, grain, q92": make_camera_set(True)}
    if small is not None:
        sets[f"small photos ({small.name})"] = sorted(p for p in small.iterdir() if p.is_file())
    cases = floor_cases()
    order = list(cases.items())
    rows, out = [], {}
    for label, files in sets.items():
        datas = [read_bytes(f) for f in files]
        totals: dict[str, list[float]] = {name: [] for name in cases}
        for r in range(repeats):
            spent = dict.fromkeys(cases, 0.0)
            for i, data in enumerate(datas):
                for name, fn in (order if (i + r) % 2 == 0 else order[::-1]):
                    t0 = time.process_time()
                    fn(data)
                    spent[name] += time.process_time() - t0
            for name, t in spent.items():
                totals[name].append(t)
        floor = statistics.median(totals["Pillow floor"])
        for name, ts in totals.items():
            med = statistics.median(ts)
            rows.append((label, name, med, 1e3 * med / len(datas), med / floor))
            out[f"{label}: {name}"] = {"cpu_s": med, "runs_s": ts, "files": len(datas)}
    print(f"\nCPU seconds per set, medians of {repeats} file-by-file interleaved passes\n")
    table = print_table(["set", "case", "CPU s", "ms/file", "x Pillow floor"], rows)
    write_json("hashing-floor", {"repeats": repeats, "results": out, "table": table})


def read_bytes(path: Path) -> bytes:
    """The whole file in one ``os.read``, the way ``pipeline.hash_file`` reads it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, os.fstat(fd).st_size + 1)
    finally:
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="rounds over all cases")
    ap.add_argument("--cheap-repeats", type=int, default=4,
                    help="timings per round of the floor and lookalike-fast cases")
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--long-side", type=int, default=2400, help="pixels, after upscaling")
    ap.add_argument("--floor", action="store_true",
                    help="per-file CPU against the decode floors instead (see above)")
    ap.add_argument("--small", type=Path, help="with --floor: a folder of small photos too")
    args = ap.parse_args()
    if args.floor:
        floor_main(args.repeats, args.small)
        return
    import imagehash
    from PIL import Image

    import lookalike
    from lookalike.config import ScanConfig
    from lookalike.imaging.decode import _reduce_for_fast
    from lookalike.inputs.walk import FileEntry
    from lookalike.worker import hash_file

    files = make_photos(args.copies, args.long_side)
    folder = files[0].parent
    megapixels = sum(Image.open(f).width * Image.open(f).height for f in files) / len(files) / 1e6
    entries = [FileEntry(str(f), f.stat().st_size, 0, str(folder)) for f in files]
    by_path = dict(zip(files, entries, strict=True))
    fast = ScanConfig(method="dhash", decode="fast", pixel_digest=False)
    full = ScanConfig(method="dhash", decode="full", pixel_digest=False)

    def imagehash_loop() -> None:
        for f in files:
            imagehash.dhash(Image.open(f))

    def floor_one(f: Path) -> None:
        data = read_bytes(f)
        img = Image.open(io.BytesIO(data))
        _reduce_for_fast(img)  # decode.py's fast path: its draft request
        img.load()

    def fast_one(f: Path) -> None:
        hash_file(by_path[f], fast, digest=False)

    pairs: list[dict[str, float]] = []  # floor and fast totals of each interleaved pass

    def floor_and_fast() -> None:
        pairs.append(interleaved_items({"decode floor": floor_one,
                                        "lookalike fast, 1 worker": fast_one},
                                       files, flip=len(pairs) % 2 == 1))

    def ours(config: ScanConfig) -> Callable[[], object]:
        return lambda: [hash_file(e, config, digest=False) for e in entries]

    def scan(workers: int) -> Callable[[], object]:
        return lambda: lookalike.scan(folder, method="dhash", workers=workers)

    cases = {"imagehash loop": imagehash_loop, "floor and fast": floor_and_fast,
             "lookalike full, 1 worker": ours(full), "scan fast, 1 worker": scan(1),
             "scan fast, 2 workers": scan(2)}
    times = round_robin_times(cases, args.repeats,
                              per_round={"floor and fast": args.cheap_repeats})
    del pairs[0]  # the warm-up call
    k = args.cheap_repeats
    del times["floor and fast"]
    for name in ("decode floor", "lookalike fast, 1 worker"):  # per round, like the others
        times[name] = [[p[name] for p in pairs[r * k:r * k + k]] for r in range(args.repeats)]
    order = ["imagehash loop", "decode floor", "lookalike fast, 1 worker",
             "lookalike full, 1 worker", "scan fast, 1 worker", "scan fast, 2 workers"]
    results = {}
    for name in order:
        flat = [t for ts in times[name] for t in ts]
        med = statistics.median(flat)
        results[name] = {"median_s": med, "times_s": flat, "images_per_s": len(files) / med}

    base = results["imagehash loop"]["images_per_s"]
    rows = [(name, r["images_per_s"], 1e3 * r["median_s"] / len(files),
             r["images_per_s"] / base) for name, r in results.items()]
    print(f"\n{len(files)} JPEGs, mean {megapixels:.1f} MP; medians of {args.repeats} "
          f"interleaved rounds ({args.repeats * k} file-by-file interleaved passes for the "
          "floor and lookalike fast)\n")
    table = print_table(["case", "images/s", "ms/image", "x imagehash loop"], rows)
    # Throughput ratios, as time ratios: fast vs floor per interleaved pass, others per round.
    fast_floor = [p["decode floor"] / p["lookalike fast, 1 worker"] for p in pairs]
    ratios, ratio_rounds = {"fast_vs_floor": statistics.median(fast_floor)}, {
        "fast_vs_floor": fast_floor}
    for key, (slow, quick) in {
            "fast_vs_imagehash": ("imagehash loop", "lookalike fast, 1 worker"),
            "scan_2_vs_1_workers": ("scan fast, 1 worker", "scan fast, 2 workers")}.items():
        ratios[key], ratio_rounds[key] = paired_ratio(times, slow, quick)
    print("\n" + "\n".join(
        f"{key}: {v:.2f}  (each pass or round: {' '.join(f'{r:.2f}' for r in ratio_rounds[key])})"
        for key, v in ratios.items()))
    name = "hashing" if args.long_side == 2400 else f"hashing-{args.long_side}"
    write_json(name, {"files": len(files), "mean_megapixels": megapixels,
                      "repeats": args.repeats, "cheap_repeats": args.cheap_repeats,
                      "results": results, "ratios": ratios,
                      "ratio_rounds": ratio_rounds, "table": table})


if __name__ == "__main__":
    main()
