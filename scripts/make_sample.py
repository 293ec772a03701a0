"""Build a sample folder for the demo: real photos plus copies that users meet in practice.

Photos come from scikit-image's sample data (fetched from PyPI by benchmarks/realdata.py and
cached in .cache/); each gets resized, re-encoded, brightened... copies (benchmarks/
transforms.py). Without registry access it falls back to generated pictures.

Usage: python scripts/make_sample.py OUT_DIR
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import realdata  # noqa: E402
import transforms  # noqa: E402

# Distinct photos; the motorcycle stereo pair is kept as a genuine near-duplicate pair.
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "ihc", "retina",
          "motorcycle_left", "motorcycle_right", "camera", "moon", "coins"]
COPIES = ["resize_down_50", "jpeg_q30", "brightness_up_30", "webp_q40", "jpeg_q70"]


def _sources() -> list[Path]:
    try:
        by_name = {p.stem: p for p in realdata.skimage_photos(photos_only=True)}
        return [by_name[n] for n in PHOTOS if n in by_name]
    except realdata.DataUnavailable as exc:
        print(f"real photos unavailable ({exc}); using generated pictures", file=sys.stderr)
        return []


def _generated(out: Path, n: int = 8) -> list[Path]:
    import numpy as np
    from PIL import Image

    paths = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:240, 0:320] / 320
        img = sum(rng.uniform(0.2, 1, 3) * np.sin(2 * np.pi * (rng.uniform(1, 6) * x
                  + rng.uniform(1, 6) * y) + rng.uniform(0, 6))[..., None] for _ in range(6))
        img = (img - img.min()) / np.ptp(img) * 255
        p = out / f"generated_{seed}.png"
        Image.fromarray(img.astype(np.uint8), "RGB").save(p)
        paths.append(p)
    return paths


def main(out_dir: str) -> None:
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    (out / "originals").mkdir(parents=True)
    sources = _sources()
    originals = []
    for src in sources:
        dst = out / "originals" / src.name
        shutil.copy(src, dst)
        originals.append(dst)
    if not originals:
        originals = _generated(out / "originals")
    copies = transforms.make_variants(originals, out / "copies",
                                      names=[n for n in COPIES if n in transforms.TRANSFORMS],
                                      seed=0)
    rng = random.Random(0)
    rng.shuffle(copies)
    print(f"sample: {len(originals)} photos and {len(copies)} transformed copies in {out}/")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sample")
