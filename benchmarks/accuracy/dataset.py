"""Build the benchmark's image set from registry data, reproducibly, and cache it.

Ground truth is "the same picture": two images are a positive pair when they come from the
same original. Sources (``benchmarks/realdata.py`` fetches them):

- photos: opencv-doc's and scikit-image's photographs (80), each with the 25 seeded
  transforms of ``benchmarks/transforms.py`` (resize, re-encode, colour, blur, noise,
  crops, padding, flips, rotations, watermark, caption, screenshot, EXIF orientation);
- textures: SuperTuxKart's photo-like JPEGs, look-alike distractors (grass, rock, wood),
  plus groups of byte-identical files (exact copies, ground truth by content);
- icons: the same oxygen icon at 32..256 px (duplicates nobody generated);
- emoji: one Google emoji at 16..64 px and in 256/128-colour sheets (positives); the same
  emoji drawn by Twitter and skin-tone variants are hard negatives.

Hard negatives, reported on their own (:func:`hard_key`): stereo and same-scene pairs
(``SAME_SCENE_PAIRS``) and the chessboard calibration series (same scene, other moment),
other vendors' emoji and skin tones (which no grey-level hash can tell apart). The one
retouched photo pair (``EDITED_PAIRS``) is a positive.

Textures are cleaned so their ground truth holds: flat (single-colour) textures are left
out, since every perceptual hash maps them to the same value and no ground truth separates
them; textures whose normalised 32 x 32 grey thumbnails are nearly equal (the same texture
re-saved or recoloured under another name) count as the same picture.

This module must not import lookalike: the dataset does not depend on the code measured.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import realdata  # noqa: E402  (benchmarks/ is not a package)
import transforms  # noqa: E402

VERSION = 3  # bump when the recipe below changes: cached sets are rebuilt
# 3: crop_corner_15, rotate_7 and caption_text added to the photos' transforms (issue 16)
SEED = 0
ICON_SIZES = (32, 48, 64, 128, 256)
# (sheet, label) of each Google emoji positive; the 64 px single PNG is the first member.
EMOJI_SHEETS = (("sheets/32", "sheet-32"), ("sheets/20", "sheet-20"),
                ("sheets-256/64", "sheet-256col-64"), ("sheets-128/32", "sheet-128col-32"))
SKIN_TONES = ("1f3fb", "1f3fe")
CHESSBOARD = re.compile(r"(left|right)\d\d")


@dataclass(frozen=True)
class Spec:
    """How big a set to build."""

    name: str
    photos: int | None  # originals (None: all 80)
    textures: int
    copy_groups: int  # groups of byte-identical texture files
    icons: int
    emoji: int
    skin: int  # emoji with skin-tone variants (two tones each, as negatives)


FULL = Spec("full", None, 400, 40, 120, 80, 20)
QUICK = Spec("quick", 14, 80, 10, 25, 20, 6)
# Quick mode keeps the hard cases: a stereo pair, two chessboards, the edited pair.
QUICK_PHOTOS = ("aloeL", "aloeR", "left01", "right01", "left02", "ela_original",
                "ela_modified", "astronaut", "coffee", "chelsea", "baboon", "fruits",
                "building", "text")


@dataclass(frozen=True)
class Item:
    """One image of the set.

    ``group``: ground-truth identity (same group = same picture); ``label``: the original's
    name (photo stem, icon name, emoji code); ``variant``: how this copy was made
    (``original``, a transform name, ``size-48``, ``sheet-32``, ``copy``...).
    """

    path: str
    group: str
    source: str  # photo | texture | icon | emoji
    label: str
    variant: str
    original: bool


def cache_dir(spec: Spec) -> Path:
    return realdata.REPO_ROOT / ".cache" / "bench" / f"accuracy-v{VERSION}" / spec.name


def photo_dir() -> Path:
    """Transformed photos, shared by every set version and mode (they depend on the seed)."""
    return realdata.REPO_ROOT / ".cache" / "bench" / "accuracy-photos" / f"seed{SEED}"


def build(spec: Spec, log: Any = print) -> list[Item]:
    """The items of ``spec``, built on first use and then read from the cache."""
    root = cache_dir(spec)
    manifest = root / "manifest.json"
    if manifest.is_file():
        return [replace(Item(**d), path=str(realdata.REPO_ROOT / d["path"]))
                for d in json.loads(manifest.read_text())["items"]]
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    items = [*_photos(spec, tmp, root, log), *_textures(spec, log), *_icons(spec, log),
             *_emoji(spec, tmp, root, log)]
    payload = {"version": VERSION, "spec": asdict(spec), "seed": SEED,
               # Paths relative to the checkout: the cache stays valid in another worktree.
               "items": [{**asdict(i), "path": os.path.relpath(i.path, realdata.REPO_ROOT)}
                         for i in items]}
    (tmp / "manifest.json").write_text(json.dumps(payload, indent=0) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return items


def _photos(spec: Spec, tmp: Path, root: Path, log: Any) -> list[Item]:
    originals = realdata.skimage_photos(photos_only=True) + realdata.opencv_photos(
        photos_only=True)
    if spec.photos is not None:
        keep = QUICK_PHOTOS[: spec.photos]
        originals = [p for p in originals if p.stem in keep]
    assert len({p.stem for p in originals}) == len(originals), "photo stems must be unique"
    edited = {b: a for a, b in realdata.EDITED_PAIRS["opencv"]}
    log(f"photos: {len(originals)} originals x {len(transforms.TRANSFORMS)} transforms")
    items = []
    for src in originals:
        group = f"photo:{edited.get(src.stem, src.stem)}"
        items.append(Item(str(src), group, "photo", src.stem, "original", True))
        for path, name in _variants(src):
            items.append(Item(str(path), group, "photo", src.stem, name, False))
    return items


def _variants(src: Path) -> list[tuple[Path, str]]:
    """The seeded transforms of one original, made once and kept (a marker lists them).

    Each variant's rng depends only on its source and transform, so transforms added later
    are made alone and the ones already on disk stay as they are."""
    folder = photo_dir()
    marker = folder / f"{src.stem}.json"
    listing = [tuple(x) for x in json.loads(marker.read_text())] if marker.is_file() else []
    have = {t for _, t in listing}
    missing = [t for t in transforms.TRANSFORMS if t not in have]
    if not missing:
        by_name = {t: name for name, t in listing}
        return [(folder / by_name[t], t) for t in transforms.TRANSFORMS]
    made = transforms.make_variants([src], folder, names=missing, seed=SEED)
    listing += [(v.name, t) for _, v, t in made]
    listing.sort(key=lambda x: list(transforms.TRANSFORMS).index(x[1]))
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(listing))
    tmp.replace(marker)  # the marker appears only once every variant is written
    return [(folder / name, t) for name, t in listing]


def _thumb(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        grey = transforms.normalize(im).convert("L").resize((32, 32), Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float64)


def _textures(spec: Spec, log: Any) -> list[Item]:
    import numpy as np

    jpegs = realdata.supertuxkart_textures(jpeg_only=True)
    rng = random.Random(f"{SEED}:textures")
    sample = sorted(rng.sample(jpegs, min(spec.textures, len(jpegs))))
    copies = realdata.exact_duplicate_groups(realdata.supertuxkart_textures())
    rng.shuffle(copies)
    members = [p for g in copies[: spec.copy_groups] for p in g[:4]]
    paths = sorted(set(sample) | set(members))
    thumbs = {p: _thumb(p) for p in paths}
    flat = {p for p, t in thumbs.items() if t.std() < 4.0}
    paths = [p for p in paths if p not in flat]
    digests = {p: realdata.file_sha256(p)[:16] for p in paths}
    # Same picture re-saved or recoloured: normalised thumbnails within 0.15 std on average.
    norm = np.stack([(thumbs[p] - thumbs[p].mean()) / thumbs[p].std() for p in paths])
    parent = {d: d for d in digests.values()}

    def find(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    joined = 0
    for i in range(len(paths)):
        mad = np.abs(norm[i + 1:] - norm[i]).mean(axis=(1, 2))
        for j in np.flatnonzero(mad < 0.15):
            a, b = find(digests[paths[i]]), find(digests[paths[i + 1 + j]])
            if a != b:
                parent[max(a, b)] = min(a, b)
                joined += 1
    log(f"textures: {len(sample)} distractors + {len(members)} files in "
        f"{min(spec.copy_groups, len(copies))} byte-identical groups; {len(flat)} flat ones "
        f"left out, {joined} near-identical pairs joined")
    items = []
    for p in paths:
        variant = "copy" if p in members else "original"
        items.append(Item(str(p), f"texture:{find(digests[p])}", "texture", p.stem, variant,
                          variant == "original"))
    return items


def _icons(spec: Spec, log: Any) -> list[Item]:
    sets = realdata.icon_theme_sets("oxygen")
    eligible = []
    for name, paths in sets.items():
        by_size = {int(p.parent.parent.name.split("x")[0]): p for p in paths}
        chosen = [by_size[s] for s in ICON_SIZES if s in by_size]
        if len(chosen) >= 3:
            eligible.append((name, chosen))
    rng = random.Random(f"{SEED}:icons")
    picked = sorted(rng.sample(eligible, min(spec.icons, len(eligible))))
    log(f"icons: {len(picked)} oxygen icons at {len(ICON_SIZES)} sizes (>= 3 each)")
    items = []
    for name, paths in picked:
        for k, p in enumerate(paths):
            size = p.parent.parent.name.split("x")[0]
            items.append(Item(str(p), f"icon:{name}", "icon", name, f"size-{size}", k == 0))
    return items


def _emoji(spec: Spec, tmp: Path, root: Path, log: Any) -> list[Item]:
    google, twitter = realdata.emoji_sets("google"), realdata.emoji_sets("twitter")
    toned = set(google.skin_base)
    bases_with_skin = sorted({b for v, b in google.skin_base.items()
                              if all(f"{b}-{t}" in google.singles for t in SKIN_TONES)})
    plain = sorted(c for c in google.singles
                   if c in twitter.singles and c not in toned and c not in bases_with_skin
                   and all(sheet in google.sheets for sheet, _ in EMOJI_SHEETS))
    rng = random.Random(f"{SEED}:emoji")
    codes = sorted(rng.sample(plain, min(spec.emoji, len(plain))))
    skin = sorted(rng.sample(bases_with_skin, min(spec.skin, len(bases_with_skin))))
    log(f"emoji: {len(codes)} Google emoji x {1 + len(EMOJI_SHEETS)} renderings + Twitter's; "
        f"{len(skin)} with {len(SKIN_TONES)} skin tones")
    out = tmp / "emoji"
    out.mkdir(parents=True, exist_ok=True)
    items = []
    for code in [*codes, *skin]:
        group = f"emoji:google:{code}"
        items.append(Item(str(google.singles[code]), group, "emoji", code, "single-64", True))
        for sheet, label in EMOJI_SHEETS:
            cell = google.sheet_cell(sheet, code)
            name = f"{code}__{label}.png"
            cell.save(out / name)
            items.append(Item(str(root / "emoji" / name), group, "emoji", code, label, False))
        if code in twitter.singles:
            items.append(Item(str(twitter.singles[code]), f"emoji:twitter:{code}", "emoji",
                              code, "twitter-64", True))
    for base in skin:
        for tone in SKIN_TONES:
            code = f"{base}-{tone}"
            items.append(Item(str(google.singles[code]), f"emoji:google:{code}", "emoji",
                              base, f"skin-{tone}", True))
    return items


def hard_key(item: Item) -> str | None:
    """Items with the same key but different pictures are hard negatives (reported apart)."""
    if item.source == "photo":
        if CHESSBOARD.fullmatch(item.label):
            return "scene:chessboard"
        for k, (x, y) in enumerate(realdata.SAME_SCENE_PAIRS["skimage"]
                                   + realdata.SAME_SCENE_PAIRS["opencv"]):
            if item.label in (x, y):
                return f"scene:{k}"
    if item.source == "emoji":
        return f"emoji:{item.label}"
    return None


def negative_kind(a: Item, b: Item) -> str:
    """What kind of negative a pair of different pictures is (for error breakdowns)."""
    ka, kb = hard_key(a), hard_key(b)
    if ka is not None and ka == kb:
        if ka.startswith("scene:"):
            return "same-scene"
        return "skin-tone" if "skin" in a.variant + b.variant else "emoji-vendor"
    if a.source == b.source:
        return a.source
    return "cross-source"


def describe(items: list[Item]) -> dict[str, Any]:
    """Counts for the report."""
    by_source: dict[str, int] = {}
    for it in items:
        by_source[it.source] = by_source.get(it.source, 0) + 1
    return {"images": len(items), "groups": len({i.group for i in items}),
            "by_source": by_source,
            "digest": hashlib.sha256("\n".join(i.path for i in items).encode()).hexdigest()[:12]}
