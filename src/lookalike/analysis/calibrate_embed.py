"""Calibrating embeddings (``calibrate --embed``): how well a model and verification find
geometric copies of the user's own images, and which ``--similarity`` to scan with.

On a sample of the images under the given paths (as :func:`lookalike.analysis.calibrate.calibrate`
samples them):

1. each image gets geometric copies (:data:`EDITS`: crops, a letterbox, a small rotation, a
   screenshot-like frame, a caption bar), made in memory and saved as JPEG, read back as a
   scan reads files;
2. image and copies are embedded with the model, and each copy is verified against its
   image (:func:`lookalike.imaging.align.aligned_distance`), as a scan verifies a pair; an
   image the model gives no embedding (it fails on it, or gives a zero or NaN row) is left
   out with its copies, a copy it gives none counts as not found (a scan would not find it
   by its embedding either; leaving it out would credit the model with copies it cannot
   embed);
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lookalike.analysis.calibrate import KNEE, _sample
from lookalike.errors import ConfigError, DecodeError, Problem
from lookalike.events import NullReporter, Reporter
from lookalike.inputs.read import Refused, max_file_bytes, read_regular

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

    from lookalike.imaging.decode import Picture
    from lookalike.imaging.embed import Embedder

__all__ = ["EDITS", "FLOORS", "EmbeddingCalibration", "calibrate_embedding",
           "render_embedding_calibration"]

#: The similarity floors measured.
FLOORS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)

#: Pictures prepared and embedded at a time (their model inputs are held until embedded).
_CHUNK = 64

#: Files named in the one line about pictures the model gave no embedding.
_NAMED = 5


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
    #: Sampled files the model gave no embedding, left out with their copies.
    unembedded: list[str] = field(default_factory=list)
    #: Copies the model gave no embedding, counted as not found ("path (edit)").
    unembedded_copies: list[str] = field(default_factory=list)

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
    from lookalike.imaging.decode import decode_bytes
    from lookalike.verify import check_ready
    from lookalike.worker import embedder_for

    t0 = time.perf_counter()
    reporter = reporter or NullReporter()
    config = ScanConfig(embed=embed, workers=1)
    check_ready(config)
    embedder = embedder_for(config)
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    entries, _, unlisted = _sample(paths, sample, seed, follow_symlinks, reporter,
                                   phases=_PHASES)
    reporter.phase(2, _PHASES, "embedding and verifying copies", len(entries))
    sources: list[str] = []
    originals: list[Picture] = []
    copies: list[list[tuple[str, Picture]]] = []
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
        sources.append(entry.path)
        originals.append(pic)
        copies.append(made)
        reporter.advance()
    if len(originals) < 2:
        raise ConfigError(f"calibrating embeddings needs at least 2 readable images; found "
                          f"{len(originals)} under the paths given")
    vectors = _embed_pictures(embedder, [*originals, *(p for made in copies for _, p in made)])
    own, rest = vectors[:len(originals)], vectors[len(originals):]
    rows = {k: v for k, v in enumerate(own) if v is not None}
    kept = list(rows)
    lost = [sources[k] for k, v in enumerate(own) if v is None]
    lost_copies = [f"{sources[k]} ({name})" for k in kept
                   for m, (name, _) in enumerate(copies[k])
                   if rest[k * len(EDITS) + m] is None]
    if lost or lost_copies:
        reporter.info(_unembedded_line(lost, lost_copies))
    if len(kept) < 2:
        raise ConfigError(f"calibrating embeddings needs at least 2 images the model embeds; "
                          f"it gave embeddings for {len(kept)} of the {len(originals)} read")
    sims, verified, names = [], [], []
    for k in kept:
        base = features(originals[k])
        for m, (name, pic) in enumerate(copies[k]):
            v = rest[k * len(EDITS) + m]
            # -1, the least cosine: below every floor, so a copy with no embedding is one
            # the model does not find (and the lowest in its edit's median).
            sims.append(-1.0 if v is None else float(rows[k] @ v))
            distance = aligned_distance(base, features(pic))
            verified.append(distance is not None and distance <= MAX_DISTANCE)
            names.append(name)
    sim, ok = np.array(sims), np.array(verified)
    matrix = np.stack(list(rows.values()))
    between = matrix @ matrix.T
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
    return EmbeddingCalibration(model=embed, images=len(kept), copies=len(sims),
                                similarity=chosen, points=points, edits=edits,
                                seconds=round(time.perf_counter() - t0, 1), problems=problems,
                                unembedded=lost, unembedded_copies=lost_copies)


#: This calibration's phases: sampling (in :func:`~lookalike.analysis.calibrate._sample`),
#: then embedding and verifying.
_PHASES = 2


def _embed_pictures(embedder: Embedder, pictures: Sequence[Picture]
                    ) -> list[np.ndarray | None]:
    """Each picture's embedding, or None where the model (or the resize for it) fails on it:
    a failed batch is embedded one picture at a time (:meth:`Embedder.embed_each`), as a
    scan's worker does, so one bad picture costs only its own embedding."""
    out: list[np.ndarray | None] = []
    for start in range(0, len(pictures), _CHUNK):
        prepared: list[np.ndarray | None] = []
        for pic in pictures[start:start + _CHUNK]:
            try:
                prepared.append(embedder.prepare(pic))
            except Exception:  # this picture alone gets no embedding
                prepared.append(None)
        inputs = [x for x in prepared if x is not None]
        vectors = iter(embedder.embed_each(inputs, batch=_CHUNK))
        out.extend(None if x is None else next(vectors) for x in prepared)
    return out


def _unembedded_line(originals: list[str], copies: list[str]) -> str:
    """The one line about pictures the model gave no embedding: how many, and which."""
    def named(items: list[str]) -> str:
        more = f", and {len(items) - _NAMED} more" if len(items) > _NAMED else ""
        return ", ".join(items[:_NAMED]) + more

    parts = []
    if originals:
        parts.append(f"{len(originals)} sampled images, left out with their copies: "
                     f"{named(originals)}")
    if copies:
        parts.append(f"{len(copies)} copies, counted as not found: {named(copies)}")
    return f"the embedding model gave no embedding for {'; and for '.join(parts)}"


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
    lost = [f"{n} {what}" for n, what in (
        (len(cal.unembedded), "sampled files, left out with their copies"),
        (len(cal.unembedded_copies), "copies, counted as not found")) if n]
    if lost:
        lines.append(f"(the model gave no embedding for {' and '.join(lost)})")
    return "\n".join(lines) + "\n"
