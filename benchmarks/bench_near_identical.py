"""A scan of one large group of near-identical pictures: time and peak memory.

Grouping keeps every pair of distinct hash values within the threshold, so k pictures whose
hashes differ by a few bits (a logo on plain grounds, a video's frames) cost about k²/2
pairs: the README's "known limit". The pictures are generated (one random 8x8 colour
pattern enlarged to 64x64, each copy with uniform noise of +-``--noise`` levels), so the
pair count grows with ``--images`` and ``--noise``; the same seed gives the same pictures.
Runs the installed ``lookalike`` command, cold (an empty cache) then warm, under
``/usr/bin/time`` for peak memory.

    python benchmarks/bench_near_identical.py [--images 3000] [--noise 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from common import print_table, write_json


def make_pictures(folder: Path, n: int, noise: int, seed: int = 11) -> None:
    rng = np.random.default_rng(seed)
    pattern = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    logo = np.asarray(Image.fromarray(pattern).resize((64, 64), Image.Resampling.BILINEAR),
                      dtype=np.int16)
    for i in range(n):
        noisy = logo + rng.integers(-noise, noise + 1, logo.shape)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(folder / f"logo_{i:05d}.png")


def timed(args: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + sys) and peak RSS in MiB of one command."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", *args], check=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall, user, system, rss_kib = out.stderr.strip().splitlines()[-1].split()
    return float(wall), float(user) + float(system), int(rss_kib) // 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--noise", type=int, default=10)
    args = ap.parse_args()
    exe = str(Path(sys.executable).with_name("lookalike"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pictures"
        folder.mkdir()
        make_pictures(folder, args.images, args.noise)
        report = Path(tmp) / "r.json"
        cmd = [exe, "scan", str(folder), "-q", "--cache", str(Path(tmp) / "c.sqlite"),
               "-o", str(report)]
        cold = timed(cmd)
        warm = timed(cmd)
        data = json.loads(report.read_text())
    groups = [len(g["members"]) for g in data["groups"]]
    rows = [("cold", *cold), ("warm", *warm)]
    print(f"\n{args.images} near-identical pictures (noise +-{args.noise}): "
          f"{len(groups)} group(s), largest {max(groups, default=0)}\n")
    table = print_table(["scan", "wall s", "CPU s", "peak MiB"], rows)
    write_json("near_identical", {
        "images": args.images, "noise": args.noise, "groups": groups[:10],
        "cold": dict(zip(("wall_s", "cpu_s", "peak_mib"), cold, strict=True)),
        "warm": dict(zip(("wall_s", "cpu_s", "peak_mib"), warm, strict=True)),
        "table": table})


if __name__ == "__main__":
    main()
