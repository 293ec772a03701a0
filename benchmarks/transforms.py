"""Deterministic image transforms that users meet in practice, for duplicate benchmarks.

Each transform takes a decoded image and a seeded ``random.Random`` and returns a new image;
the same input and seed always give the same pixels and the same file bytes. Transforms are
tagged "benign" (a duplicate any perceptual hash should catch) or "hard" (geometry changes:
crops, flips, rotations, padding, screenshots; caption bars that hide part of the picture) so
benchmarks can report them apart.

This module must not import lookalike; it only needs numpy and Pillow.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

TransformFn = Callable[[Image.Image, random.Random], Image.Image]
Category = Literal["benign", "hard"]

EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Transform:
    """A named transform, its category and how its variant file is written."""

    name: str
    fn: TransformFn
    category: Category
    # Re-encode transforms write their own lossy file; every other one writes lossless PNG so
    # that the only change is the transform itself.
    fmt: str = "PNG"
    save_kwargs: tuple[tuple[str, object], ...] = ()

    @property
    def doc(self) -> str:
        """One line saying what the transform does."""
        return (self.fn.__doc__ or "").strip().splitlines()[0]


# --------------------------------------------------------------------------- helpers


def normalize(img: Image.Image) -> Image.Image:
    """Bring any decoded image to L, RGB or RGBA with 8 bits per channel."""
    if img.mode in ("L", "RGB", "RGBA"):
        return img.copy()
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.uint16)
        return Image.fromarray((arr >> 8).astype(np.uint8))
    if img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / hi if hi > 255 else 1.0
        return Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8))
    if img.mode in ("LA", "PA", "La", "RGBa") or "transparency" in img.info:
        return img.convert("RGBA")
    if img.mode in ("1", "P") and img.palette is None:
        return img.convert("L")
    return img.convert("RGB")


def _flatten(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Drop alpha onto a solid background, as a JPEG export does."""
    if img.mode != "RGBA":
        return img if img.mode in ("L", "RGB") else img.convert("RGB")
    canvas = Image.new("RGB", img.size, background)
    canvas.paste(img, mask=img.getchannel("A"))
    return canvas


def _split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    if img.mode == "RGBA":
        return img.convert("RGB"), img.getchannel("A")
    return img, None


def _join_alpha(img: Image.Image, alpha: Image.Image | None) -> Image.Image:
    if alpha is None:
        return img
    out = img.convert("RGB")
    out.putalpha(alpha.resize(out.size) if alpha.size != out.size else alpha)
    return out


def _colour_only(img: Image.Image, op: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """Apply ``op`` to the colour channels and keep alpha untouched."""
    colour, alpha = _split_alpha(img)
    return _join_alpha(op(colour), alpha)


def _scaled(img: Image.Image, fx: float, fy: float, resample: Image.Resampling) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, round(w * fx)), max(1, round(h * fy))), resample)


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.copy()


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def _fill(img: Image.Image, rgb: tuple[int, int, int]) -> int | tuple[int, ...]:
    """A fill colour in ``img``'s mode (opaque)."""
    if img.mode == "L":
        return round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    return (*rgb, 255) if img.mode == "RGBA" else rgb


# --------------------------------------------------------------------------- transforms


def resize_down_50(img: Image.Image, rng: random.Random) -> Image.Image:
    """Downscale to 50% with Lanczos (a thumbnail or a smaller upload)."""
    return _scaled(img, 0.5, 0.5, Image.Resampling.LANCZOS)


def resize_up_150(img: Image.Image, rng: random.Random) -> Image.Image:
    """Upscale to 150% with bicubic interpolation."""
    return _scaled(img, 1.5, 1.5, Image.Resampling.BICUBIC)


def _reencode(fmt: str, **kwargs: object) -> TransformFn:
    def reencode(img: Image.Image, rng: random.Random) -> Image.Image:
        src = img if fmt == "WEBP" else _flatten(img)
        return _decode(_encode(src, fmt, **kwargs))

    return reencode


jpeg_q30 = _reencode("JPEG", quality=30)
jpeg_q30.__doc__ = "Re-encode as JPEG quality 30 (alpha flattened on white)."
jpeg_q70 = _reencode("JPEG", quality=70)
jpeg_q70.__doc__ = "Re-encode as JPEG quality 70 (alpha flattened on white)."
webp_q40 = _reencode("WEBP", quality=40, method=4)
webp_q40.__doc__ = "Re-encode as lossy WebP quality 40 (alpha kept)."


def brightness_up_30(img: Image.Image, rng: random.Random) -> Image.Image:
    """Brightness +30% (ImageEnhance factor 1.3)."""
    return _colour_only(img, lambda c: ImageEnhance.Brightness(c).enhance(1.3))


def contrast_down_30(img: Image.Image, rng: random.Random) -> Image.Image:
    """Contrast -30% (ImageEnhance factor 0.7)."""
    return _colour_only(img, lambda c: ImageEnhance.Contrast(c).enhance(0.7))


def gamma_0_7(img: Image.Image, rng: random.Random) -> Image.Image:
    """Gamma 0.7 on each colour channel: out = 255 * (in / 255) ** 0.7 (brightens mid-tones)."""
    lut = [round(255 * (v / 255) ** 0.7) for v in range(256)]
    return _colour_only(img, lambda c: c.point(lut * len(c.getbands())))


def saturation_0(img: Image.Image, rng: random.Random) -> Image.Image:
    """Saturation to 0 but kept as RGB (ImageEnhance.Color factor 0)."""
    return _colour_only(img, lambda c: ImageEnhance.Color(c).enhance(0.0))


def greyscale(img: Image.Image, rng: random.Random) -> Image.Image:
    """Convert to an L (or LA) greyscale image."""
    colour, alpha = _split_alpha(img)
    grey = colour.convert("L")
    if alpha is not None:
        grey = grey.convert("LA")
        grey.putalpha(alpha)
    return grey


def blur_r1_5(img: Image.Image, rng: random.Random) -> Image.Image:
    """Gaussian blur, radius 1.5."""
    return _colour_only(img, lambda c: c.filter(ImageFilter.GaussianBlur(1.5)))


def noise_sigma8(img: Image.Image, rng: random.Random) -> Image.Image:
    """Additive Gaussian noise, sigma 8 grey levels, seeded from ``rng``."""
    gen = np.random.default_rng(rng.getrandbits(64))

    def add(c: Image.Image) -> Image.Image:
        arr = np.asarray(c, dtype=np.float32)
        noisy = arr + gen.normal(0.0, 8.0, size=arr.shape).astype(np.float32)
        return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))

    return _colour_only(img, add)


def crop_5(img: Image.Image, rng: random.Random) -> Image.Image:
    """Crop 5% off each side (centred, 90% of each dimension kept)."""
    w, h = img.size
    dx, dy = round(w * 0.05), round(h * 0.05)
    return img.crop((dx, dy, max(dx + 1, w - dx), max(dy + 1, h - dy)))


def crop_20(img: Image.Image, rng: random.Random) -> Image.Image:
    """Keep an 80% x 80% window (20% of each dimension removed) at a seeded random offset."""
    w, h = img.size
    cw, ch = max(1, round(w * 0.8)), max(1, round(h * 0.8))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((x, y, x + cw, y + ch))


def crop_corner_15(img: Image.Image, rng: random.Random) -> Image.Image:
    """Keep an 85% x 85% window anchored at a seeded corner (15% of each side cut away)."""
    w, h = img.size
    cw, ch = max(1, round(w * 0.85)), max(1, round(h * 0.85))
    x = w - cw if rng.random() < 0.5 else 0
    y = h - ch if rng.random() < 0.5 else 0
    return img.crop((x, y, x + cw, y + ch))


def pad_10(img: Image.Image, rng: random.Random) -> Image.Image:
    """Letterbox: black bars of 10% of the height added above and below."""
    w, h = img.size
    bar = max(1, round(h * 0.1))
    canvas = Image.new(img.mode, (w, h + 2 * bar), _fill(img, (0, 0, 0)))
    canvas.paste(img, (0, bar))
    return canvas


def stretch_w_1_3(img: Image.Image, rng: random.Random) -> Image.Image:
    """Aspect change: width stretched 1.3x, height kept (bicubic)."""
    return _scaled(img, 1.3, 1.0, Image.Resampling.BICUBIC)


def hflip(img: Image.Image, rng: random.Random) -> Image.Image:
    """Mirror left-right."""
    return ImageOps.mirror(img)


def rotate_90(img: Image.Image, rng: random.Random) -> Image.Image:
    """Rotate 90 degrees counter-clockwise (size swaps)."""
    return img.transpose(Image.Transpose.ROTATE_90)


def rotate_3(img: Image.Image, rng: random.Random) -> Image.Image:
    """Rotate 3 degrees counter-clockwise in the same frame; corners filled black."""
    return img.rotate(
        3.0, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=_fill(img, (0, 0, 0))
    )


def rotate_7(img: Image.Image, rng: random.Random) -> Image.Image:
    """Rotate 7 degrees clockwise in the same frame; corners filled black."""
    return img.rotate(
        -7.0, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=_fill(img, (0, 0, 0))
    )


def watermark_text(img: Image.Image, rng: random.Random) -> Image.Image:
    """Semi-transparent white text with a dark outline near a seeded corner (a watermark)."""
    base = img.convert("RGBA")
    w, h = base.size
    size = max(8, round(min(w, h) * 0.08))
    font = _font(size)
    text = "© lookalike 2024"
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    stroke = max(1, size // 12)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    tw, th = right - left, bottom - top
    margin = max(2, round(min(w, h) * 0.03))
    right_side, bottom_side = rng.random() < 0.75, rng.random() < 0.75
    x = w - tw - margin if right_side else margin
    y = h - th - margin if bottom_side else margin
    draw.text(
        (x - left, y - top),
        text,
        font=font,
        fill=(255, 255, 255, 170),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0, 120),
    )
    out = Image.alpha_composite(base, layer)
    if img.mode == "RGBA":
        return out
    return out.convert(img.mode)


CAPTIONS = ("WHEN THE DATASET IS CLEAN", "NOBODY:", "ME AFTER ONE EPOCH", "NOT A DUPLICATE")


def caption_text(img: Image.Image, rng: random.Random) -> Image.Image:
    """An opaque caption bar, 15% of the height, with bold text at the top or bottom (a meme).

    Bar colour (white or black), edge and caption are seeded; the picture keeps its size,
    so the bar hides what was there.
    """
    out = img.copy()
    w, h = out.size
    bar = max(1, round(h * 0.15))
    light = rng.random() < 0.5
    y0 = 0 if rng.random() < 0.5 else h - bar
    text = rng.choice(CAPTIONS)
    draw = ImageDraw.Draw(out)
    paper, ink = ((255, 255, 255), (0, 0, 0)) if light else ((0, 0, 0), (255, 255, 255))
    draw.rectangle((0, y0, w, y0 + bar - 1), fill=_fill(out, paper))
    ink = _fill(out, ink)
    # The biggest font that fits 90% of the width and 70% of the bar; the stroke in the ink's
    # own colour makes it bold.
    size = max(4, round(bar * 0.7))
    while True:
        font = _font(size)
        stroke = max(1, size // 12)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
        if (right - left <= 0.9 * w and bottom - top <= 0.7 * bar) or size <= 4:
            break
        size = max(4, round(size * 0.85))
    x = (w - (right - left)) // 2 - left
    y = y0 + (bar - (bottom - top)) // 2 - top
    draw.text((x, y), text, font=font, fill=ink, stroke_width=stroke, stroke_fill=ink)
    return out


def screenshot(img: Image.Image, rng: random.Random) -> Image.Image:
    """Paste into a 1.6x canvas with grey title, side and status bars, as in a screenshot."""
    src = _flatten(img, (255, 255, 255)).convert("RGB")
    w, h = src.size
    cw, ch = round(w * 1.6), round(h * 1.6)
    canvas = Image.new("RGB", (cw, ch), (236, 236, 236))
    draw = ImageDraw.Draw(canvas)
    title, status, side = round(ch * 0.07), round(ch * 0.04), round(cw * 0.12)
    draw.rectangle((0, 0, cw, title), fill=(60, 60, 60))
    draw.rectangle((0, ch - status, cw, ch), fill=(200, 200, 200))
    draw.rectangle((0, title, side, ch - status), fill=(222, 222, 222))
    r = max(2, title // 4)
    for i, colour in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
        cx, cy = title // 2 + i * 3 * r, title // 2
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    for i in range(rng.randint(3, 6)):  # sidebar "menu entries"
        y = title + (i + 1) * max(4, ch // 20)
        draw.rectangle((side // 6, y, side - side // 6, y + max(2, ch // 60)), fill=(170, 170, 170))
    free_w, free_h = cw - side - w, ch - title - status - h
    x = side + rng.randint(0, max(0, free_w))
    y = title + rng.randint(0, max(0, free_h))
    canvas.paste(src, (x, y))
    return canvas


_ORIENTATION_STORE = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # stored 90 CCW; tag 6 says "rotate 90 CW to view"
    8: Image.Transpose.ROTATE_270,
}


def exif_orientation(img: Image.Image, rng: random.Random) -> Image.Image:
    """Pixels stored rotated (seeded choice of tag 3, 6 or 8) with the EXIF tag that undoes it.

    A decoder that honours EXIF (``ImageOps.exif_transpose``) sees the original orientation.
    """
    tag = rng.choice(sorted(_ORIENTATION_STORE))
    stored = _flatten(img).transpose(_ORIENTATION_STORE[tag])
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = tag
    stored.info["exif"] = exif.tobytes()
    return stored


_SPECS: list[Transform] = [
    Transform("resize_down_50", resize_down_50, "benign"),
    Transform("resize_up_150", resize_up_150, "benign"),
    Transform("jpeg_q30", jpeg_q30, "benign", "JPEG", (("quality", 30),)),
    Transform("jpeg_q70", jpeg_q70, "benign", "JPEG", (("quality", 70),)),
    Transform("webp_q40", webp_q40, "benign", "WEBP", (("quality", 40), ("method", 4))),
    Transform("brightness_up_30", brightness_up_30, "benign"),
    Transform("contrast_down_30", contrast_down_30, "benign"),
    Transform("gamma_0_7", gamma_0_7, "benign"),
    Transform("saturation_0", saturation_0, "benign"),
    Transform("greyscale", greyscale, "benign"),
    Transform("blur_r1_5", blur_r1_5, "benign"),
    Transform("noise_sigma8", noise_sigma8, "benign"),
    # Most hashes squash the image to a square first, so a pure aspect change is benign.
    Transform("stretch_w_1_3", stretch_w_1_3, "benign"),
    Transform("watermark_text", watermark_text, "benign"),
    # Benign for a decoder that honours EXIF; a hash on raw pixels sees a rotation.
    Transform("exif_orientation", exif_orientation, "benign", "JPEG", (("quality", 95),)),
    Transform("crop_5", crop_5, "hard"),
    Transform("crop_20", crop_20, "hard"),
    Transform("crop_corner_15", crop_corner_15, "hard"),
    Transform("pad_10", pad_10, "hard"),
    Transform("hflip", hflip, "hard"),
    Transform("rotate_90", rotate_90, "hard"),
    Transform("rotate_3", rotate_3, "hard"),
    Transform("rotate_7", rotate_7, "hard"),
    Transform("screenshot", screenshot, "hard"),
    # Hides 15% of the picture (a watermark hides little): hard for a global hash.
    Transform("caption_text", caption_text, "hard"),
]

SPECS: dict[str, Transform] = {t.name: t for t in _SPECS}
TRANSFORMS: dict[str, TransformFn] = {name: t.fn for name, t in SPECS.items()}
CATEGORY: dict[str, Category] = {name: t.category for name, t in SPECS.items()}
BENIGN: tuple[str, ...] = tuple(n for n, c in CATEGORY.items() if c == "benign")
HARD: tuple[str, ...] = tuple(n for n, c in CATEGORY.items() if c == "hard")

_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}


# --------------------------------------------------------------------------- files


def load_image(path: Path | str) -> Image.Image:
    """Decode a file the way a correct viewer shows it: EXIF orientation applied, first frame,
    normalised to L/RGB/RGBA."""
    with Image.open(path) as im:
        im.load()
        upright = ImageOps.exif_transpose(im)
        return normalize(upright)


def encode_variant(img: Image.Image, name: str, rng: random.Random) -> tuple[bytes, str]:
    """Apply transform ``name`` and return the variant's file bytes and suffix."""
    spec = SPECS[name]
    src = normalize(img)
    kwargs = dict(spec.save_kwargs)
    if spec.fmt == "PNG":
        # Level 1: variants are throwaway files; the pixels, not the size, matter.
        return _encode(spec.fn(src, rng), "PNG", compress_level=1), ".png"
    if name == "exif_orientation":
        out = spec.fn(src, rng)
        return _encode(out, "JPEG", exif=out.info["exif"], **kwargs), ".jpg"
    # Re-encodes write the lossy file directly, not a PNG of the decoded result.
    target = src if spec.fmt == "WEBP" else _flatten(src)
    return _encode(target, spec.fmt, **kwargs), _SUFFIX[spec.fmt]


def save_variant(
    img: Image.Image, name: str, out_dir: Path | str, rng: random.Random, stem: str | None = None
) -> Path:
    """Write ``img`` transformed by ``name`` to ``out_dir/<stem>__<name>.<ext>``.

    ``stem`` defaults to the stem of the file ``img`` was opened from, else ``"image"``.
    """
    data, suffix = encode_variant(img, name, rng)
    if stem is None:
        stem = Path(getattr(img, "filename", "") or "image").stem
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}__{name}{suffix}"
    path.write_bytes(data)
    return path


def variant_rng(seed: int, src: Path | str, name: str) -> random.Random:
    """The rng for one (source, transform): independent of which others are generated."""
    return random.Random(f"{seed}:{Path(src).name}:{name}")


def make_variants(
    src_paths: Iterable[Path | str],
    out_dir: Path | str,
    names: Sequence[str] | None = None,
    seed: int = 0,
) -> list[tuple[Path, Path, str]]:
    """Write every transform in ``names`` (default: all) of every source image.

    Returns ``(original_path, variant_path, transform_name)`` triples in input order.
    Sources that share a file stem get a short hash of their path in the variant name.
    """
    srcs = [Path(p) for p in src_paths]
    names = list(TRANSFORMS) if names is None else list(names)
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise KeyError(f"unknown transforms {unknown}; known: {list(TRANSFORMS)}")
    stems: dict[str, int] = {}
    for p in srcs:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    out: list[tuple[Path, Path, str]] = []
    for src in srcs:
        stem = src.stem
        if stems[stem] > 1:
            stem = f"{stem}-{hashlib.sha1(str(src).encode()).hexdigest()[:8]}"
        img = load_image(src)
        for name in names:
            path = save_variant(img, name, out_dir, variant_rng(seed, src, name), stem=stem)
            out.append((src, path, name))
    return out
