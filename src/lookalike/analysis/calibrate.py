"""Calibration: choose a ``--threshold`` from the user's own images.

A good threshold depends on the pictures: screenshots, scans and icons collide far more
easily than holiday photos. :func:`calibrate` measures it on a sample of the user's data:

1. pick ``sample`` images at random (seeded) under the given paths;
2. make transformed copies of each, in memory, with transforms duplicates really undergo
   (:data:`TRANSFORMS`: downscale, JPEG re-encode, brighten, blur, a slight crop; plus a
   mirror and/or a quarter turn when calibrating flip/rotation invariance); each copy is
   encoded to file bytes and decoded and hashed exactly as a scan would read a file;
3. each (image, copy) pair is a positive pair; each pair of two different sampled files is
   a negative pair, except pairs that are already duplicates in the sample (identical
   bytes, or 32 x 32 grey thumbnails within 3 grey levels on average), which are left out
   and listed;
4. for every threshold count true and false pairs, and recommend the threshold with the best
   recall whose precision reaches the target.

Caveat: precision over pairs depends on how many duplicates a collection holds (here
``len(TRANSFORMS)`` copies per image against every pair of different images); the
false-pair rate (false pairs per negative pair) is the number that carries over to other
collections. The closest negative pairs are listed: near-duplicates the thumbnail check
missed, or the look-alikes this method confuses.

Pillow, NumPy and the hashing modules load on first use (the imports inside functions), so
importing this module stays light.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lookalike.config import DEFAULT_HASH_SIZE, DEFAULT_METHOD, ScanConfig
from lookalike.errors import ConfigError, DecodeError, Problem
from lookalike.events import NullReporter, Reporter
from lookalike.executors import make_executor
from lookalike.executors.base import Executor
from lookalike.inputs.walk import FileEntry, iter_files

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

    from lookalike.imaging.decode import Picture

__all__ = [
    "INVARIANT_TRANSFORMS",
    "TRANSFORMS",
    "Calibration",
    "ThresholdPoint",
    "calibrate",
    "render_calibration",
]

#: Copies are made from the picture shrunk to at most this many pixels on its shorter side
#: (a scan's fast decode works at 256 to 512): big enough for every hash, and cheap.
SOURCE_SIDE = 384
CHUNK = 8  # originals per work item


def _resize_half(img: Image) -> Image:
    from PIL import Image as PILImage

    w, h = img.size
    return img.resize((max(1, w // 2), max(1, h // 2)), PILImage.Resampling.LANCZOS)


def _brighten(img: Image) -> Image:
    from PIL import ImageEnhance

    return ImageEnhance.Brightness(img).enhance(1.2)


def _blur(img: Image) -> Image:
    from PIL import ImageFilter

    return img.filter(ImageFilter.GaussianBlur(1.0))


def _crop(img: Image) -> Image:
    # 2.5% off each side: 5% of each dimension, a re-framed or slightly trimmed copy.
    w, h = img.size
    dx, dy = round(w * 0.025), round(h * 0.025)
    return img.crop((dx, dy, max(dx + 1, w - dx), max(dy + 1, h - dy)))


def _mirror(img: Image) -> Image:
    from PIL import Image as PILImage

    return img.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)


def _rotate(img: Image) -> Image:
    from PIL import Image as PILImage

    return img.transpose(PILImage.Transpose.ROTATE_90)


@dataclass(frozen=True, slots=True)
class _Transform:
    name: str
    fn: Callable[[Image], Image]
    quality: int  # JPEG quality the copy is saved with


#: The benign transforms every copy set gets (name, what, JPEG quality of the copy).
TRANSFORMS: tuple[_Transform, ...] = (
    _Transform("resize_50", _resize_half, 90),
    _Transform("jpeg_q50", lambda img: img, 50),
    _Transform("brightness_20", _brighten, 90),
    _Transform("blur_1", _blur, 90),
    _Transform("crop_5", _crop, 90),
)
#: Added when calibrating ``invariant``: which orientations a copy set also gets.
INVARIANT_TRANSFORMS: dict[str, tuple[_Transform, ...]] = {
    "none": (),
    "flips": (_Transform("mirror", _mirror, 90),),
    "rotations": (_Transform("rotate_90", _rotate, 90),),
    "dihedral": (_Transform("mirror", _mirror, 90), _Transform("rotate_90", _rotate, 90)),
}


@dataclass(frozen=True, slots=True)
class ThresholdPoint:
    """Pair counts at one threshold (pairs within ``threshold`` bits)."""

    threshold: int
    true_pairs: int
    false_pairs: int
    precision: float
    recall: float
    false_pair_rate: float  # false pairs / all negative pairs


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """What :func:`calibrate` measured and the threshold it recommends.

    ``threshold`` is the recommended ``--threshold``: the best recall among thresholds
    whose precision reaches ``target_precision``; when even 0 bits does not reach it,
    ``threshold`` is 0 and ``target_reached`` is False.

    ``expected_false_pairs`` projects the measured false-pair rate at ``threshold`` onto a
    scan of all ``images_found`` images (pairs grow with the square of the count); when no
    false pair was seen it uses the 95% upper bound 3 / ``negative_pairs`` instead of 0.
    """

    method: str
    hash_size: int
    nbits: int
    invariant: str
    decode: str
    target_precision: float
    threshold: int
    target_reached: bool
    precision: float
    recall: float
    curve: tuple[ThresholdPoint, ...]
    images: int
    copies: int
    positive_pairs: int
    negative_pairs: int
    transforms: tuple[str, ...]
    recall_by_transform: dict[str, float]
    closest_negatives: tuple[tuple[str, str, int], ...]
    duplicates_in_sample: tuple[tuple[str, str, int], ...] = ()
    images_found: int = 0
    expected_false_pairs: float = 0.0
    problems: tuple[Problem, ...] = ()
    seed: int = 0
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def point(self, threshold: int) -> ThresholdPoint:
        """Counts at ``threshold``."""
        return self.curve[min(threshold, len(self.curve) - 1)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``lookalike calibrate --json``)."""
        d = asdict(self)
        d["problems"] = [asdict(p) for p in self.problems]
        return d


@dataclass(frozen=True, slots=True)
class _Sampled:
    """One original's hash and its copies' hashes (one entry per transform)."""

    path: str
    digest: str
    thumb: np.ndarray  # 32 x 32 grey, to spot duplicates already in the sample
    segments: tuple[int, ...]
    copies: tuple[tuple[int, ...] | None, ...]  # None: that copy could not be hashed


@dataclass(frozen=True, slots=True)
class _ChunkOut:
    sampled: list[_Sampled]
    problems: list[Problem]


def _source_image(pic: Picture) -> Image:
    """The decoded picture (upright, alpha on white) as RGB, shorter side <= SOURCE_SIDE."""
    from PIL import Image as PILImage

    img = PILImage.frombytes("RGB", pic.size, pic.rgb_bytes())
    w, h = img.size
    if min(w, h) > SOURCE_SIDE:
        scale = SOURCE_SIDE / min(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                         PILImage.Resampling.LANCZOS)
    return img


def _encode(img: Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@dataclass(frozen=True, slots=True)
class _Worker:
    """Picklable: hashes each original and its transformed copies. Never raises per file."""

    config: ScanConfig
    transform_names: tuple[str, ...]

    def _hash(self, data: bytes) -> tuple[Picture, tuple[int, ...]]:
        from lookalike.imaging.decode import decode_bytes
        from lookalike.imaging.hashes import get_method

        pic = decode_bytes(data, mode=self.config.decode, max_pixels=self.config.max_pixels)[0]
        h = get_method(self.config.method).hash(pic, self.config.resolved_hash_size,
                                                self.config.invariant)
        return pic, h.segments

    def __call__(self, chunk: Sequence[FileEntry]) -> _ChunkOut:
        by_name = {t.name: t for t in (*TRANSFORMS, *INVARIANT_TRANSFORMS["dihedral"])}
        out, problems = [], []
        for entry in chunk:
            try:
                with open(entry.path, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                problems.append(Problem(path=entry.path, stage="read", error="read-error",
                                        message=f"cannot read: {exc.strerror or exc}"))
                continue
            try:
                pic, segments = self._hash(data)
                thumb = pic.grey(32, 32).copy()
                source = _source_image(pic)
            except DecodeError as exc:
                problems.append(Problem(path=entry.path, stage="decode", error=exc.reason,
                                        message=str(exc)))
                continue
            except Exception as exc:  # an odd file must not stop the calibration
                problems.append(Problem(path=entry.path, stage="hash", error="hash-failed",
                                        message=f"{type(exc).__name__}: {exc}"))
                continue
            copies: list[tuple[int, ...] | None] = []
            for name in self.transform_names:
                t = by_name[name]
                try:
                    copies.append(self._hash(_encode(t.fn(source), t.quality))[1])
                except Exception:  # e.g. a 1-pixel image cropped to nothing
                    copies.append(None)
            out.append(_Sampled(entry.path, hashlib.sha256(data).hexdigest(), thumb,
                                segments, tuple(copies)))
        return _ChunkOut(out, problems)


# --- pair counting -----------------------------------------------------------------------


def _words(values: Sequence[int], nbits: int) -> np.ndarray:
    import numpy as np

    words = (nbits + 63) // 64
    mask = (1 << 64) - 1
    out = np.zeros((len(values), words), dtype=np.uint64)
    for i, v in enumerate(values):
        for w in range(words):
            out[i, w] = (v >> (64 * w)) & mask
    return out


def _distances(a: Sequence[tuple[int, ...]], b: Sequence[tuple[int, ...]], nbits: int
               ) -> np.ndarray:
    """(len(a), len(b)) smallest distance between any segment of a[i] and any of b[j]."""
    import numpy as np

    la = np.fromiter((len(s) for s in a), dtype=np.intp, count=len(a))
    lb = np.fromiter((len(s) for s in b), dtype=np.intp, count=len(b))
    sa = np.concatenate([[0], np.cumsum(la)[:-1]])
    sb = np.concatenate([[0], np.cumsum(lb)[:-1]])
    ca = _words([v for s in a for v in s], nbits)
    cb = _words([v for s in b for v in s], nbits)
    # Rows per block so that one block's XOR array stays around 32 MB.
    block = max(1, 4_000_000 // (cb.shape[0] * cb.shape[1] * int(la.max())))
    out = np.empty((len(a), len(b)), dtype=np.uint16)
    for i0 in range(0, len(a), block):
        i1 = min(len(a), i0 + block)
        rows = ca[sa[i0]:sa[i1 - 1] + la[i1 - 1]]
        d = np.bitwise_count(rows[:, None, :] ^ cb[None, :, :]).sum(axis=2, dtype=np.uint16)
        if cb.shape[0] != len(b):  # several segments per hash: the best pair per owner
            d = np.minimum.reduceat(d, sb, axis=1)
        if rows.shape[0] != i1 - i0:
            d = np.minimum.reduceat(d, sa[i0:i1] - sa[i0], axis=0)
        out[i0:i1] = d
    return out


def _probable_duplicates(thumbs: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Which candidate pairs (k, 2) of originals have nearly identical 32 x 32 thumbnails."""
    import numpy as np

    if candidates.size == 0:
        return np.zeros(0, dtype=bool)
    t = thumbs.astype(np.int16)
    mad = np.abs(t[candidates[:, 0]] - t[candidates[:, 1]]).mean(axis=(1, 2))
    return mad <= 3.0


def _sample(paths: Iterable[str | os.PathLike[str]], sample: int, seed: int,
            follow_symlinks: bool) -> tuple[list[FileEntry], int]:
    entries = [e for e in iter_files(paths, follow_symlinks=follow_symlinks)
               if not isinstance(e, Problem)]
    found = len(entries)
    if len(entries) > sample:
        entries = sorted(random.Random(seed).sample(entries, sample), key=lambda e: e.path)
    return entries, found


def calibrate(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
              target_precision: float = 0.999, sample: int = 500,
              method: str = DEFAULT_METHOD, hash_size: int | None = None,
              invariant: str = "none", decode: str = "fast", seed: int = 0,
              workers: int | None = None, follow_symlinks: bool = False,
              reporter: Reporter | None = None, executor: Executor | None = None
              ) -> Calibration:
    """Measure precision and recall per threshold on a sample of the images under ``paths``.

    Args:
        paths: folders (walked recursively) or files.
        target_precision: the pair precision the recommended threshold must reach.
        sample: how many images to sample (at random, seeded by ``seed``).
        method, hash_size, invariant, decode: the scan settings to calibrate.
        workers: processes (default all cores; 1 = in-process).
        reporter: progress and per-file problems.
        executor: run the work on this executor instead of local processes.

    Returns:
        A :class:`Calibration`; ``.threshold`` is the recommendation.

    Raises:
        ConfigError: bad settings, a missing path, or fewer than 2 usable images.

    Cost: one decode and hash per sampled image and ``len(TRANSFORMS)`` JPEG encodes,
    decodes and hashes of its copies, plus an exact count over ``sample**2 / 2`` pairs.
    """
    import numpy as np

    from lookalike.imaging.hashes import INVARIANCES

    if not 0 < target_precision <= 1:
        raise ConfigError("target_precision must be in (0, 1]")
    if sample < 2:
        raise ConfigError("sample must be at least 2")
    if invariant not in INVARIANCES:
        raise ConfigError(f"invariant must be one of {', '.join(INVARIANCES)}")
    config = ScanConfig(method=method, hash_size=hash_size, invariant=invariant,  # type: ignore[arg-type]
                        decode=decode, workers=workers, pixel_digest=False)  # type: ignore[arg-type]
    names = tuple(t.name for t in (*TRANSFORMS, *INVARIANT_TRANSFORMS[invariant]))
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    reporter.phase(1, 3, "sampling", None)
    entries, found = _sample(paths, sample, seed, follow_symlinks)
    if len(entries) < 2:
        raise ConfigError(f"calibration needs at least 2 images; found {len(entries)}")

    reporter.phase(2, 3, "hashing originals and copies", len(entries))
    worker = _Worker(config, names)
    chunks = [entries[i:i + CHUNK] for i in range(0, len(entries), CHUNK)]
    own = executor is None
    if executor is None:
        executor = make_executor("local", min(config.resolved_workers, len(chunks)))
    sampled: list[_Sampled] = []
    problems: list[Problem] = []
    try:
        for chunk, res in executor.map_unordered(worker, chunks):
            if isinstance(res, BaseException):
                for e in chunk:
                    p = Problem(path=e.path, stage="decode", error="worker-crashed",
                                message=f"{type(res).__name__}: {res}")
                    problems.append(p)
                    reporter.problem(p)
            else:
                sampled.extend(res.sampled)
                problems.extend(res.problems)
                for p in res.problems:
                    reporter.problem(p)
            reporter.advance(len(chunk))
    finally:
        if own:
            executor.close()
    sampled.sort(key=lambda s: s.path)
    if len(sampled) < 2:
        raise ConfigError(f"calibration needs at least 2 readable images; got {len(sampled)}")

    reporter.phase(3, 3, "counting pairs", None)
    t_hashed = time.perf_counter()
    nbits = config.nbits
    n = len(sampled)
    # Negatives: every pair of different sampled files, minus duplicates already there.
    dist = _distances([s.segments for s in sampled], [s.segments for s in sampled], nbits)
    iu = np.triu_indices(n, 1)
    neg_d = dist[iu]
    digests = [s.digest for s in sampled]
    same_bytes = np.fromiter((digests[i] == digests[j] for i, j in zip(*iu, strict=True)),
                             dtype=bool, count=len(neg_d))
    close = np.flatnonzero(~same_bytes & (neg_d <= nbits // 4))
    thumbs = np.stack([s.thumb for s in sampled])
    dup = np.zeros(len(neg_d), dtype=bool)
    dup[close[_probable_duplicates(thumbs, np.column_stack([iu[0][close], iu[1][close]]))]] = True
    dup |= same_bytes
    already = tuple((sampled[int(iu[0][k])].path, sampled[int(iu[1][k])].path, int(neg_d[k]))
                    for k in np.flatnonzero(dup))
    neg_d = neg_d[~dup]
    # Positives: each original against each of its copies.
    pos_d: list[int] = []
    by_transform_d: dict[str, list[int]] = {name: [] for name in names}
    for s in sampled:
        made = [(name, c) for name, c in zip(names, s.copies, strict=True) if c is not None]
        if made:
            d = _distances([s.segments], [c for _, c in made], nbits)[0]
            for (name, _), v in zip(made, d.tolist(), strict=True):
                by_transform_d[name].append(v)
                pos_d.append(v)
    n_pos, n_neg = len(pos_d), len(neg_d)
    tp = np.cumsum(np.bincount(np.asarray(pos_d, dtype=np.intp), minlength=nbits + 1))
    fp = np.cumsum(np.bincount(neg_d.astype(np.intp), minlength=nbits + 1))
    tp, fp = tp[: nbits + 1], fp[: nbits + 1]
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    recall = tp / max(n_pos, 1)
    curve = tuple(ThresholdPoint(t, int(tp[t]), int(fp[t]), float(precision[t]),
                                 float(recall[t]), float(fp[t] / max(n_neg, 1)))
                  for t in range(nbits + 1))
    ok = np.flatnonzero(precision >= target_precision - 1e-12)
    reached = ok.size > 0
    # Recall only grows with the threshold; among equal recalls keep the smallest threshold:
    # a larger one finds nothing more here and only adds risk elsewhere.
    best = int(ok[np.argmax(recall[ok])]) if reached else 0
    by_transform = {name: float(np.mean(np.asarray(v) <= best)) if v else 0.0
                    for name, v in by_transform_d.items()}
    # A sample of n images has n^2/2 negative pairs, the whole collection N^2/2: rates that
    # look like zero on the sample can still mean false pairs in the full scan.
    rate = (3.0 if fp[best] == 0 else float(fp[best])) / max(n_neg, 1)
    expected = rate * found * (found - 1) / 2
    # The closest remaining negatives: missed duplicates, or what this method confuses.
    keep = np.flatnonzero(~dup)
    order = keep[np.argsort(dist[iu][keep], kind="stable")[:10]]
    closest = tuple((sampled[int(iu[0][k])].path, sampled[int(iu[1][k])].path,
                     int(dist[iu][k])) for k in order)
    reporter.close()
    return Calibration(
        method=config.method, hash_size=config.resolved_hash_size, nbits=nbits,
        invariant=invariant, decode=decode, target_precision=target_precision,
        threshold=best, target_reached=reached, precision=float(precision[best]),
        recall=float(recall[best]), curve=curve, images=len(sampled),
        copies=n_pos, positive_pairs=n_pos, negative_pairs=n_neg,
        transforms=names, recall_by_transform=by_transform, closest_negatives=closest,
        duplicates_in_sample=already, images_found=found, expected_false_pairs=expected,
        problems=tuple(sorted(problems, key=lambda p: p.path)), seed=seed,
        seconds=round(time.perf_counter() - t0, 2),
        stats={"images_found": found, "hash_seconds": round(t_hashed - t0, 2),
               "pairs_seconds": round(time.perf_counter() - t_hashed, 2),
               "workers": executor.workers},
    )


def render_calibration(cal: Calibration, *, rows: int = 12) -> str:
    """The curve around the recommendation and the recommendation itself, as text."""
    lo = max(0, cal.threshold - rows // 2)
    hi = min(cal.nbits, lo + rows)
    lines = [f"{cal.images} images sampled, {cal.copies} copies ({', '.join(cal.transforms)}); "
             f"{cal.positive_pairs:,} image-copy pairs, {cal.negative_pairs:,} pairs of "
             "different images",
             f"method {cal.method}, hash size {cal.hash_size} ({cal.nbits} bits), "
             f"invariant {cal.invariant}, decode {cal.decode}", "",
             f"{'threshold':>9}  {'precision':>9}  {'recall':>7}  {'true pairs':>10}  "
             f"{'false pairs':>11}  {'false-pair rate':>15}"]
    for p in cal.curve[lo:hi + 1]:
        mark = "  <- recommended" if p.threshold == cal.threshold else ""
        lines.append(f"{p.threshold:>9}  {p.precision:>9.4f}  {p.recall:>7.3f}  "
                     f"{p.true_pairs:>10,}  {p.false_pairs:>11,}  {p.false_pair_rate:>15.2e}"
                     f"{mark}")
    lines.append("")
    lines.append("recall per transform at the recommended threshold: " + ", ".join(
        f"{k} {v:.0%}" for k, v in cal.recall_by_transform.items()))
    if cal.duplicates_in_sample:
        lines.append(f"{len(cal.duplicates_in_sample)} pairs of sampled files are duplicates "
                     "already (identical bytes or thumbnails); left out of the negatives, e.g.:")
        lines += [f"  {d:>3} bits  {a}  {b}" for a, b, d in cal.duplicates_in_sample[:3]]
    if cal.closest_negatives:
        lines.append("closest pairs of different files (duplicates the thumbnail check "
                     "missed, or look-alikes this method confuses):")
        lines += [f"  {d:>3} bits  {a}  {b}" for a, b, d in cal.closest_negatives[:5]]
    if not cal.target_reached:
        lines.append(f"precision {cal.target_precision} is not reached even at threshold 0 "
                     f"(identical hashes): these images collide; try another --method or a "
                     f"larger --hash-size")
    bound = " at most (95% bound; none seen)" if cal.point(cal.threshold).false_pairs == 0 \
        else ""
    lines.append(f"a scan of all {cal.images_found:,} images found would give about "
                 f"{cal.expected_false_pairs:,.1f} false pairs{bound} at this threshold")
    size = "" if cal.method == DEFAULT_METHOD and cal.hash_size == DEFAULT_HASH_SIZE \
        else f" --hash-size {cal.hash_size}"
    inv = "" if cal.invariant == "none" else f" --invariant {cal.invariant}"
    lines.append(f"recommended: --threshold {cal.threshold} (precision {cal.precision:.4f}, "
                 f"recall {cal.recall:.3f}); e.g. lookalike scan PATH --method {cal.method}"
                 f"{size}{inv} --threshold {cal.threshold}")
    return "\n".join(lines) + "\n"
