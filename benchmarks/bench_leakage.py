"""The README's leakage example on real photos and their copies: how many leaks each setting finds.

train/: real photos (OpenCV's examples and scikit-image's samples); test/: 100 copies of train
photos, 60 edited as photos get edited (resize, re-encode, brightness, contrast, gamma, blur,
noise, greyscale, watermark, 5% crop) and 40 mirrored or turned 90 degrees, plus 50 photo-like
textures (supertuxkart) that are in no set: any of them in the purge list is a false leak.

    python benchmarks/bench_leakage.py

Numbers are in the README ("Train/test leakage"); the scans run without the hash cache.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import lookalike
import realdata
from lookalike.analysis.leakage import find_leakage
from transforms import load_image, save_variant, variant_rng

EDITS = ["resize_down_50", "jpeg_q70", "jpeg_q30", "webp_q40", "brightness_up_30",
         "contrast_down_30", "gamma_0_7", "blur_r1_5", "noise_sigma8", "greyscale",
         "watermark_text", "crop_5"]
TURNS = ["hflip", "rotate_90"]


def build(root: Path) -> tuple[Path, Path, set[str]]:
    photos = realdata.opencv_photos(photos_only=True) + realdata.skimage_photos(photos_only=True)
    photos = sorted({p.name: p for p in photos}.values(), key=lambda p: p.name)
    train, test = root / "train", root / "test"
    train.mkdir()
    test.mkdir()
    for p in photos:
        shutil.copyfile(p, train / p.name)
    rng = random.Random(0)
    picks = [photos[i % len(photos)] for i in range(100)]
    rng.shuffle(picks)
    leaks = set()
    for k, src in enumerate(picks):
        name = EDITS[k % len(EDITS)] if k < 60 else TURNS[k % len(TURNS)]
        img = load_image(src)
        out = save_variant(img, name, test, variant_rng(k, src, name), stem=f"{k:03d}_{src.stem}")
        leaks.add(str(out))
    textures = realdata.supertuxkart_textures(jpeg_only=True)
    for t in random.Random(1).sample(textures, 50):
        shutil.copyfile(t, test / f"tex_{t.name}")
    return train, test, leaks


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        train, test, leaks = build(Path(tmp))
        turned = {p for p in leaks if "__hflip" in p or "__rotate_90" in p}
        print(f"train {len(list(train.iterdir()))} photos; test {len(leaks)} copies "
              f"({len(turned)} mirrored/turned) + 50 unrelated textures")
        settings = {f"-t {t} --invariant {inv}": {"threshold": t, "invariant": inv}
                    for inv in ("none", "dihedral") for t in (4, 10, 16, 24)}
        settings["defaults"] = {}
        for label, opts in settings.items():
            t0 = time.perf_counter()
            result = lookalike.scan([train, test], workers=2, **opts)
            leak = find_leakage(result, [train])
            found = set(leak.purge) & leaks
            false = set(leak.purge) - leaks
            print(f"{label:<24} threshold {result.config.threshold:>2} invariant "
                  f"{result.config.invariant:<8}: {len(found)}/100 leaks found "
                  f"({len(found & turned)}/{len(turned)} mirrored/turned), {len(false)} false "
                  f"({time.perf_counter() - t0:.1f} s)")
            missed = Counter(Path(p).stem.split("__")[-1] for p in leaks - found)
            print(f"{'':<26}missed: {dict(sorted(missed.items()))}")


if __name__ == "__main__":
    main()
