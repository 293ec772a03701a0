"""Per-file time of camera RAW decoding: the embedded JPEG preview vs LibRaw's rendering.

A 24 MP (6000x4000) DNG of a real photo (scikit-image's coffee, upscaled) built as
``tests/test_raw.py`` builds them (a synthetic Bayer mosaic, 16-bit uncompressed): with a
full-size JPEG preview (what most cameras embed), with a 1536x1024 one, and with none (LibRaw's
half-size rendering). Reported: median CPU milliseconds of ``decode_bytes`` + the default
hash (dhash-z 16) per file, in fast and full (``--exact-decode``) mode.

    python benchmarks/bench_raw.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import REPO

sys.path.insert(0, str(REPO / "tests"))

from PIL import Image

import realdata
from lookalike.imaging.decode import decode_bytes
from lookalike.imaging.hashes import get_method
from test_raw import make_dng


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    photo = Image.open(next(p for p in realdata.skimage_photos() if p.stem == "coffee"))
    photo = photo.convert("RGB").resize((6000, 4000), Image.Resampling.BICUBIC)
    cases = {"full-size JPEG preview": make_dng(photo, "jpeg"),
             "1536x1024 JPEG preview": make_dng(photo, "jpeg", preview_size=(1536, 1024)),
             "no preview (half-size)": make_dng(photo, None)}
    method = get_method("dhash-z")
    print(f"{'RAW file (24 MP DNG)':24s} {'mode':4s} {'median ms':>9s}  pixels hashed")
    for name, data in cases.items():
        for mode in ("fast", "full"):
            times = []
            for _ in range(runs):
                start = time.process_time()
                pic = decode_bytes(data, mode=mode)[0]  # type: ignore[arg-type]
                method.hash(pic, 16)
                times.append(time.process_time() - start)
            print(f"{name:24s} {mode:4s} {1000 * statistics.median(times):9.1f}  "
                  f"{pic.size[0]}x{pic.size[1]}")


if __name__ == "__main__":
    main()
