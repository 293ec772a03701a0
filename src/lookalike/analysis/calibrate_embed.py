"""Calibrating embeddings (``calibrate --embed``): how well a model and verification find
geometric copies of the user's own images, and which ``--similarity`` to scan with.

On a sample of the images under the given paths (as :func:`lookalike.analysis.calibrate.calibrate`
samples them):

1. each image gets geometric copies (:data:`EDITS`: crops, a letterbox, a small rotation, a
   screenshot-like frame, a caption bar), made in memory and saved as JPEG, read back as a
   scan reads files;
2. image and copies are embedded with the model, and each copy is verified against its
   image (:func:`lookalike.imaging.align.aligned_distance`), as a scan verifies a pair;
3. the *recall* at a similarity floor is the share of copies at least that similar to their
   image and verified; the *load* is how many other sampled images each image finds at least
   that similar (pairs a scan would have to verify: its cost);
4. the recommendation is the highest floor whose recall is at least :data:`KNEE` of the
   best (the lowest floor's): higher floors verify fewer pairs.

Precision is not estimated here: verification, not the floor, keeps different photos apart
(on the benchmark, scans at floors 0.45, 0.60 and 0.75 made the same false pairs).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lookalike.analysis.calibrate import KNEE, _sample
from lookalike.errors import ConfigError, DecodeError, Problem
from lookalike.events import NullReporter, Reporter
from lookalike.inputs.read import Refused, max_file_bytes, read_regular

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["EDITS", "FLOORS", "EmbeddingCalibration", "calibrate_embedding",
           "render_embedding_calibration"]

#: The similarity floors measured.
FLOORS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def _crop(share: float, corner: bool = False) -> Callable[[Image], Image]:
    def edit(img: Image) -> Image:
        w, h = img.size
        if corner:  # keep the top-left (1 - share) of each side
            return img.crop((0, 0, round(w * (1 - share)), round(h * (1 - share))))
        dx, dy = round(w * share / 2), round(h * share / 2)
        return img.crop((dx, dy, w - dx, h - dy))
    return edit


def _letterbox(img: Image) -> Image:
    from PIL import Image as PILImage

    w, h = img.size
    out = PILImage.new("RGB", (w, round(h * 1.25)), (0, 0, 0))
    out.paste(img, (0, round(h * 0.125)))
    return out


def _rotate(img: Image) -> Image:
    from PIL import Image as PILImage

    return img.rotate(5, resample=PILImage.Resampling.BICUBIC)


def _framed(img: Image) -> Image:
    from PIL import Image as PILImage
    from PIL import ImageDraw

    w, h = img.size
    out = PILImage.new("RGB", (round(w * 1.5), round(h * 1.5)), (236, 236, 236))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, out.width, h // 10), fill=(60, 60, 60))
    draw.rectangle((0, h // 10, w // 6, out.height), fill=(222, 222, 222))
    out.paste(img, (w // 5, h // 6))
    return out


def _caption(img: Image) -> Image:
    from PIL import ImageDraw

    w, h = img.size
    out = img.copy()
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, round(h * 0.85), w, h), fill=(255, 255, 255))
    draw.text((w // 10, round(h * 0.88)), "A CAPTION OVER THE PICTURE", fill=(0, 0, 0))
    return out


#: The geometric copies each sampled image gets (name, edit).
EDITS: tuple[tuple[str, Callable[[Image], Image]], ...] = (
    ("crop_10", _crop(0.10)),
    ("corner_crop_15", _crop(0.15, corner=True)),
    ("letterbox", _letterbox),
    ("rotate_5", _rotate),
    ("screenshot", _framed),
    ("caption", _caption),
)


@dataclass(frozen=True, slots=True)
class FloorPoint:
    """At one similarity floor: the share of copies found (similar enough and verified),
    and how many other sampled images each image finds that similar, on average."""

    floor: float
    recall: float
    load: float


@dataclass(frozen=True, slots=True)
class EmbeddingCalibration:
    """What :func:`calibrate_embedding` measured; ``similarity`` is the recommendation."""

    model: str
    images: int
    copies: int
    similarity: float
    points: list[FloorPoint]
    #: Per edit: median similarity of a copy to its image, and the share verified.
    edits: dict[str, dict[str, float]]
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate_embedding(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                        embed: str, sample: int = 100, seed: int = 0,
                        follow_symlinks: bool = False, reporter: Reporter | None = None
                        ) -> EmbeddingCalibration:
    """Measure recall of geometric copies per similarity floor on a sample of ``paths``.

    Args:
        paths: folders (walked recursively) or files.
        embed: the model (a name or an ``.onnx`` path), as ``ScanConfig.embed``.
        sample: how many images to sample (seeded by ``seed``).
        reporter: progress and per-file problems.

    Raises:
        ConfigError: a missing model or package, or fewer than 2 readable images.

    Cost: per sampled image, one decode and ``len(EDITS)`` JPEG encodes and decodes, the
    model on each, and one verification per copy (about 20 ms each on a 2-core machine).
    """
    import numpy as np

    from lookalike.config import ScanConfig
    from lookalike.imaging.align import MAX_DISTANCE, aligned_distance, features
    from lookalike.imaging.decode import Picture, decode_bytes
    from lookalike.verify import check_ready
    from lookalike.worker import embedder_for

    t0 = time.perf_counter()
    reporter = reporter or NullReporter()
    config = ScanConfig(embed=embed, workers=1)
    check_ready(config)
    embedder = embedder_for(config)
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    entries, _, unlisted = _sample(paths, sample, seed, follow_symlinks, reporter)
    reporter.phase(1, 1, "embedding and verifying copies", len(entries))
    originals, copies = [], []
    problems = [f"{p.path}: {p.message}" for p in unlisted]
    for entry in entries:
        try:
            data = read_regular(entry.path, max_file_bytes(config.max_pixels))[0]
            pic, _, _ = decode_bytes(data, mode="fast")
        except (OSError, DecodeError, Refused) as exc:
            problems.append(f"{entry.path}: {exc}")
            reporter.problem(Problem(path=entry.path, stage="decode",
                                     error=getattr(exc, "reason", "read-error"),
                                     message=str(exc)))
            reporter.advance()
            continue
        image = pic.image.convert("RGB")
        made = []
        for name, edit in EDITS:
            buf = io.BytesIO()
            edit(image).save(buf, "JPEG", quality=90)
            made.append((name, decode_bytes(buf.getvalue(), mode="fast")[0]))
        originals.append(pic)
        copies.append(made)
        reporter.advance()
    if len(originals) < 2:
        raise ConfigError(f"calibrating embeddings needs at least 2 readable images; found "
                          f"{len(originals)} under the paths given")
    pictures: list[Picture] = [*originals, *(p for made in copies for _, p in made)]
    vectors = np.concatenate([embedder.embed([embedder.prepare(p) for p in pictures[a:a + 64]])
                              for a in range(0, len(pictures), 64)])
    own, rest = vectors[:len(originals)], vectors[len(originals):]
    sims, verified, names = [], [], []
    for k, made in enumerate(copies):
        base = features(originals[k])
        for m, (name, pic) in enumerate(made):
            sims.append(float(own[k] @ rest[k * len(EDITS) + m]))
            distance = aligned_distance(base, features(pic))
            verified.append(distance is not None and distance <= MAX_DISTANCE)
            names.append(name)
    sim, ok = np.array(sims), np.array(verified)
    between = own @ own.T
    np.fill_diagonal(between, -1)
    points = [FloorPoint(f, round(float(np.mean(ok & (sim >= f))), 4),
                         round(float(np.mean(np.sum(between >= f, axis=1))), 2))
              for f in FLOORS]
    best = points[0].recall
    chosen = max((p.floor for p in points if p.recall >= KNEE * best), default=FLOORS[0])
    of = np.array(names)
    edits = {name: {"median_similarity": round(float(np.median(sim[of == name])), 3),
                    "verified": round(float(np.mean(ok[of == name])), 3)} for name, _ in EDITS}
    reporter.close()
    return EmbeddingCalibration(model=embed, images=len(originals), copies=len(sims),
                                similarity=chosen, points=points, edits=edits,
                                seconds=round(time.perf_counter() - t0, 1), problems=problems)


def render_embedding_calibration(cal: EmbeddingCalibration) -> str:
    """The measurement as text: per edit, per floor, and the recommendation."""
    lines = [f"embeddings ({cal.model}): {cal.images} images, {cal.copies} geometric copies",
             "  edit              median similarity  verified"]
    lines += [f"  {name:<17} {v['median_similarity']:>17.3f}  {v['verified']:>8.1%}"
              for name, v in cal.edits.items()]
    lines.append("  floor  copies found  other images per image at the floor")
    lines += [f"  {p.floor:>5.2f}  {p.recall:>12.1%}  {p.load:>10.2f}" for p in cal.points]
    lines.append(f"recommended: --similarity {cal.similarity} (the highest floor that finds "
                 f"{KNEE:.0%} of what the lowest does)")
    if cal.problems:
        lines.append(f"({len(cal.problems)} sampled files could not be read; left out)")
    return "\n".join(lines) + "\n"
