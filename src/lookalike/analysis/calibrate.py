"""Calibration: choose a ``--threshold`` from the user's own images.

A good threshold depends on the pictures: screenshots, scans and icons collide far more
easily than holiday photos. :func:`calibrate` measures it on a sample of the user's data:

1. pick ``sample`` images at random (seeded) under the given paths;
2. make edited copies of each, in memory, with the edits duplicates really undergo
   (:data:`TRANSFORMS`: downscale, JPEG re-encode, brightness, contrast, gamma, blur, noise,
   a slight crop; plus a mirror and/or a quarter turn when calibrating flip/rotation
   invariance); each copy is encoded to file bytes and decoded and hashed exactly as a scan
   would read a file. The share of copies within ``t`` bits of their image is the *recall*;
3. every pair of two different sampled files within the curve's range is checked by a
   second, independent signal (:func:`_likely_duplicates`): identical bytes, or normalised
   grey and colour thumbnails that match under some flip or turn. Such pairs are
   duplicates the folder already holds: they are the *true pairs*; every other pair of
   different files within ``t`` bits is a *false pair*;
4. precision at ``t`` is true / (true + false) pairs: the folder's own mix of duplicates and
   look-alikes, which is scale-free (both counts grow with the square of the sample), so
   a sample's precision estimates the whole folder's;
5. a threshold is *confirmed* when precision still reaches the target with the false pairs
   at their 95% upper bound, shrunk by the share of the folder's pairs the sample holds
   (none when the sample is the whole folder: then the counts are exact). The method's
   default threshold (measured at precision 0.999 on the benchmark set) stands unless the
   sample shows otherwise: thresholds up to it count unless the sample's own precision
   falls short there, larger ones only when confirmed;
6. recommend, among those thresholds, the smallest one whose recall is within
   :data:`KNEE` of the best recall they reach.

Why the default stands without evidence: precision 0.999 at a few duplicate pairs per
image means about one false pair per million pairs, which 500 images (125,000 pairs) cannot
show; such a sample finds no false pair up to thresholds that, over the whole benchmark
set, give precision 0.993 (dhash-z 16 without invariance: 24 bits against the true best,
10).

Why not count every pair of different files as a negative (what this module did first):
in a folder that holds duplicates its closest "negatives" are those duplicates, and the
recommendation collapsed to 0 bits (recall 6% on the demo's ``sample/``). The thumbnail check
is independent of the hash (pixels, not bits; colour, which grey hashes ignore) and on the
benchmark set it marks every duplicate pair within 12 bits of dhash-z 16 (no invariance)
as one (9,426 of 9,426) while the few different pictures it also marks are near-identical renderings
(emoji variants a few pixels apart) that no pixel signal tells apart.

The closest remaining pairs (false pairs: look-alikes this method confuses, or duplicates
the check missed) and the pairs taken for duplicates (and why) are listed.

Pillow, NumPy and the hashing modules load on first use (the imports inside functions), so
importing this module stays light.

(Over 600 lines: sampling, the edited copies, counting pairs, the recommendation and its
text are one measurement, kept together so its numbers can be followed.)
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import TYPE_CHECKING, Any

from lookalike.config import DEFAULT_HASH_SIZE, DEFAULT_METHOD, ScanConfig
from lookalike.errors import ConfigError, DecodeError, PartialFailure, Problem
from lookalike.events import NullReporter, Reporter
from lookalike.executors import make_executor
from lookalike.executors.base import Executor
from lookalike.inputs.read import Refused, max_file_bytes, read_regular
from lookalike.inputs.walk import (
    CONTAINER_SUFFIXES,
    FileEntry,
    WalkStats,
    check_roots,
    iter_files,
    os_error_reason,
)
from lookalike.paths import shown

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

    from lookalike.imaging.decode import Picture
    from lookalike.model import Hash

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


def _enhance(kind: str, factor: float) -> Callable[[Image], Image]:
    def edit(img: Image) -> Image:
        from PIL import ImageEnhance

        return getattr(ImageEnhance, kind)(img).enhance(factor)

    return edit


def _gamma(img: Image) -> Image:
    # out = 255 * (in / 255) ** 0.8: brightens mid-tones, keeps black and white.
    return img.point([round(255 * (v / 255) ** 0.8) for v in range(256)] * 3)


def _blur(img: Image) -> Image:
    from PIL import ImageFilter

    return img.filter(ImageFilter.GaussianBlur(1.0))


def _noise(img: Image) -> Image:
    import numpy as np
    from PIL import Image as PILImage

    # Sensor-like noise, sigma 6 grey levels; seeded so that a calibration is repeatable.
    arr = np.asarray(img, dtype=np.float32)
    noisy = arr + np.random.default_rng(0).normal(0.0, 6.0, arr.shape)
    return PILImage.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


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
    _Transform("brightness_20", _enhance("Brightness", 1.2), 90),
    _Transform("contrast_80", _enhance("Contrast", 0.8), 90),
    _Transform("gamma_0_8", _gamma, 90),
    _Transform("blur_1", _blur, 90),
    _Transform("noise_6", _noise, 90),
    _Transform("crop_5", _crop, 90),
)
#: Added when calibrating ``invariant``: which orientations a copy set also gets.
INVARIANT_TRANSFORMS: dict[str, tuple[_Transform, ...]] = {
    "none": (),
    "flips": (_Transform("mirror", _mirror, 90),),
    "rotations": (_Transform("rotate_90", _rotate, 90),),
    "dihedral": (_Transform("mirror", _mirror, 90), _Transform("rotate_90", _rotate, 90)),
}


#: The recommendation: the smallest threshold, among those reaching the target precision,
#: whose recall is at least this share of the best recall they reach. Past that point each
#: bit finds few more copies but lets in look-alikes that a sample is too small to show.
KNEE = 0.95
#: A pair of different files is taken for a duplicate already in the folder when its
#: normalised 32 x 32 grey thumbnails differ by at most GREY_MAX standard deviations per
#: pixel on average and its per-channel normalised 16 x 16 colour thumbnails by at most
#: COLOUR_MAX, under the best of the 8 flips and quarter turns. Measured on the benchmark
#: set's pairs within 12 bits of dhash-z 16: every duplicate pair passes (9,426 of 9,426;
#: greyscale copies are why COLOUR_MAX is loose), as do 10 of the 12 pairs of different
#: pictures there, all renderings a few pixels apart (emoji variants, one texture re-drawn).
GREY_MAX = 0.3
COLOUR_MAX = 0.7


@dataclass(frozen=True, slots=True)
class ThresholdPoint:
    """Pair counts at one threshold (pairs within ``threshold`` bits).

    ``true_pairs``: pairs of different sampled files taken for duplicates (identical bytes
    or matching thumbnails); ``false_pairs``: the other pairs of different files;
    ``recall``: the share of edited copies within ``threshold`` of their image.
    """

    threshold: int
    true_pairs: int
    false_pairs: int
    precision: float
    recall: float
    false_pair_rate: float  # false pairs / all pairs of different files not duplicates


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """What :func:`calibrate` measured and the threshold it recommends.

    ``threshold`` is the recommended ``--threshold`` (see the module docstring, steps 5
    and 6); when even 0 bits does not reach the target, ``threshold`` is 0 and
    ``target_reached`` is False. ``confirmed``: the sample alone confirms the target at
    ``threshold`` (else it rests on ``default_threshold``, which the sample does not
    contradict). ``pair_share``: the share of the folder's pairs the sample holds.
    ``curve`` runs from 0 to ``max_threshold`` bits.

    ``expected_false_pairs`` projects the measured false-pair rate at ``threshold`` onto a
    scan of all ``images_found`` images (the readable ones; pairs grow with the square of
    the count); when no false pair was seen it uses the 95% upper bound 3 /
    ``negative_pairs`` instead of 0. When every image found was sampled it is the count
    seen, exactly.
    ``duplicates_in_sample`` lists the pairs taken for duplicates: (path, path, bits, why).
    """

    method: str
    hash_size: int
    nbits: int
    invariant: str
    decode: str
    target_precision: float
    threshold: int
    target_reached: bool
    confirmed: bool
    default_threshold: int
    precision: float
    recall: float
    curve: tuple[ThresholdPoint, ...]
    max_threshold: int
    pair_share: float
    images: int
    copies: int
    positive_pairs: int
    negative_pairs: int
    duplicate_pairs: int
    transforms: tuple[str, ...]
    recall_by_transform: dict[str, float]
    closest_negatives: tuple[tuple[str, str, int], ...]
    duplicates_in_sample: tuple[tuple[str, str, int, str], ...] = ()
    images_found: int = 0
    expected_false_pairs: float = 0.0
    problems: tuple[Problem, ...] = ()
    seed: int = 0
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def point(self, threshold: int) -> ThresholdPoint:
        """Counts at ``threshold`` (the last point past ``max_threshold``)."""
        return self.curve[min(threshold, len(self.curve) - 1)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``lookalike calibrate --json``)."""
        d = asdict(self)
        d["problems"] = [asdict(p) for p in self.problems]
        return d


@dataclass(frozen=True, slots=True)
class _Sampled:
    """One original's hash, thumbnails and its copies' hashes (one per transform)."""

    path: str
    digest: str
    # Thumbnails of the picture, and of its content inside flat bars when the hash trims
    # them (it keeps both too): grey 32 x 32, normalised to zero mean and unit standard
    # deviation; colour 16 x 16 x 3, each channel normalised.
    thumbnails: tuple[tuple[np.ndarray, np.ndarray], ...]
    hash: Hash
    copies: tuple[Hash | None, ...]  # None: that copy could not be hashed


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


def _normalised(arr: np.ndarray, floor: float) -> np.ndarray:
    """Zero mean, unit standard deviation per channel (the last axis of a colour array):
    brightness and contrast edits drop out. ``floor`` keeps flat images from blowing noise
    up."""
    import numpy as np

    a = arr.astype(np.float32)
    axes = (0, 1)
    return (a - a.mean(axis=axes)) / np.maximum(a.std(axis=axes), floor)


def _encode(img: Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@dataclass(frozen=True, slots=True)
class _Worker:
    """Picklable: hashes each original and its transformed copies. Never raises per file."""

    config: ScanConfig
    transform_names: tuple[str, ...]

    def _hash(self, data: bytes) -> tuple[Picture, Hash]:
        from lookalike.imaging.decode import decode_bytes
        from lookalike.imaging.hashes import get_method

        pic = decode_bytes(data, mode=self.config.decode, max_pixels=self.config.max_pixels)[0]
        # As a scan hashes (borders trimmed too): a padded copy the scan matches at 0 bits
        # was a look-alike "this method confuses" at 42.
        return pic, get_method(self.config.method).hash(pic, self.config.resolved_hash_size,
                                                        self.config.invariant,
                                                        self.config.trim_borders)

    def __call__(self, chunk: Sequence[FileEntry]) -> _ChunkOut:
        import numpy as np
        from PIL import Image as PILImage

        from lookalike.imaging.borders import content_box

        by_name = {t.name: t for t in (*TRANSFORMS, *INVARIANT_TRANSFORMS["dihedral"])}
        out, problems = [], []
        for entry in chunk:
            try:
                data = read_regular(entry.path, max_file_bytes(self.config.max_pixels))[0]
            except OSError as exc:
                problems.append(Problem(path=entry.path, stage="read",
                                        error=os_error_reason(exc, "read-error"),
                                        message=f"cannot read: {exc.strerror or exc}"))
                continue
            except Refused as exc:
                problems.append(Problem(path=entry.path, stage="read", error=exc.reason,
                                        message=exc.message))
                continue
            try:
                pic, h = self._hash(data)
                source = _source_image(pic)
                # The thumbnails of what the hash sees: the content inside flat bars too
                # when it trims them (a letterboxed copy, matched at 0 bits, was a false
                # pair).
                box = content_box(pic.grey_full()) if self.config.trim_borders else None
                views = (pic,) if box is None else (pic, pic.cropped(box))
                thumbnails = tuple((_normalised(v.grey(32, 32), 1.0), _normalised(np.asarray(
                    _source_image(v).resize((16, 16), PILImage.Resampling.BOX)), 4.0))
                    for v in views)
            except DecodeError as exc:
                problems.append(Problem(path=entry.path, stage="decode", error=exc.reason,
                                        message=str(exc)))
                continue
            except Exception as exc:  # an odd file must not stop the calibration
                problems.append(Problem(path=entry.path, stage="hash", error="hash-failed",
                                        message=f"{type(exc).__name__}: {exc}"))
                continue
            copies: list[Hash | None] = []
            for name in self.transform_names:
                t = by_name[name]
                try:
                    copies.append(self._hash(_encode(t.fn(source), t.quality))[1])
                except Exception:  # e.g. a 1-pixel image cropped to nothing
                    copies.append(None)
            out.append(_Sampled(entry.path, hashlib.sha256(data).hexdigest(), thumbnails,
                                h, tuple(copies)))
        return _ChunkOut(out, problems)


# --- pair counting -----------------------------------------------------------------------


def _near_pairs(segments: Sequence[tuple[int, ...]], nbits: int, radius: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) of hashes within ``radius`` bits, at its best segment pair."""
    import numpy as np

    from lookalike.search import find_pairs, pack_hashes

    owner = np.repeat(np.arange(len(segments)), [len(s) for s in segments])
    if owner.size == 0:  # only flat pictures: nothing to search
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    ii, jj, dd = find_pairs(pack_hashes([v for s in segments for v in s], nbits), radius)
    a, b = owner[ii], owner[jj]
    keep = a != b
    a, b, dd = np.minimum(a, b)[keep], np.maximum(a, b)[keep], dd[keep]
    # Several segment pairs of one image pair: keep the smallest distance.
    order = np.lexsort((dd, b, a))
    a, b, dd = a[order], b[order], dd[order]
    first = np.ones(a.size, dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first], dd[first]


def _orientations(arr: np.ndarray) -> list[np.ndarray]:
    """The 8 flips and quarter turns of a [row, column, ...] array."""
    import numpy as np

    turns = [np.rot90(arr, k) for k in range(4)]
    return turns + [t[:, ::-1] for t in turns]


def _likely_duplicates(sampled: Sequence[_Sampled], a: np.ndarray, b: np.ndarray
                       ) -> tuple[np.ndarray, list[str]]:
    """Which pairs (a[k], b[k]) of different files are duplicates already, and why.

    A second signal, independent of the hash: identical bytes, or thumbnails that match
    (:data:`GREY_MAX`, :data:`COLOUR_MAX`). Colour keeps recoloured look-alikes (one icon
    in several colours) apart, which every grey-level hash confuses.
    """
    import numpy as np

    dup = np.zeros(a.size, dtype=bool)
    why: list[str] = [""] * a.size
    for k, (i, j) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        x, y = sampled[i], sampled[j]
        if x.digest == y.digest:
            dup[k], why[k] = True, "identical bytes"
            continue
        for (x_grey, x_colour), (y_grey, y_colour) in product(x.thumbnails, y.thumbnails):
            grey = min(float(np.abs(o - x_grey).mean()) for o in _orientations(y_grey))
            if grey > GREY_MAX:
                continue
            if _colourless(x_colour) or _colourless(y_colour):
                # A greyscale copy has no colour to compare (its distance to the original's
                # colour thumbnail says nothing): 18 of 24 such copies were false pairs.
                dup[k], why[k] = True, f"thumbnails match (grey {grey:.2f}; one is greyscale)"
                break
            colour = min(float(np.abs(o - x_colour).mean()) for o in _orientations(y_colour))
            if colour <= COLOUR_MAX:
                dup[k] = True
                why[k] = f"thumbnails match (grey {grey:.2f}, colour {colour:.2f})"
                break
    return dup, why


def _colourless(colour: np.ndarray) -> bool:
    """Whether a normalised colour thumbnail is grey: its three channels (nearly) alike
    (a JPEG of a grey picture keeps a trace of chroma)."""
    import numpy as np

    return bool(np.abs(colour[..., 0] - colour[..., 1]).mean() < 0.05
                and np.abs(colour[..., 1] - colour[..., 2]).mean() < 0.05)


def _poisson_upper(k: np.ndarray) -> np.ndarray:
    """One-sided 95% upper bounds of Poisson means given counts ``k`` (Wilson-Hilferty;
    within 1% of the exact bound: 3.0 for 0, 6.3 for 2)."""
    import numpy as np

    m = np.asarray(k, dtype=np.float64) + 1.0
    return m * (1.0 - 1.0 / (9.0 * m) + 1.645 / (3.0 * np.sqrt(m))) ** 3


def _sample(paths: Iterable[str | os.PathLike[str]], sample: int, seed: int,
            follow_symlinks: bool, reporter: Reporter, phases: int = 3
            ) -> tuple[list[FileEntry], int, list[Problem]]:
    """A seeded sample of the images under ``paths``, how many there are, and the files the
    walk could not list (each told to ``reporter``, as a scan tells them).

    The phase line comes once a second image is found: with fewer the caller refuses the
    run (bad usage, exit 2), and that error must come before any progress line. The walk's
    problems met before it wait for it (in walk order); later ones are told as they come.
    """
    stats = WalkStats()
    entries: list[FileEntry] = []
    problems: list[Problem] = []
    started = False
    for e in iter_files(paths, follow_symlinks=follow_symlinks, stats=stats):
        if isinstance(e, Problem):
            problems.append(e)
            if started:
                reporter.problem(e)
            continue
        entries.append(e)
        if not started and len(entries) == 2:
            started = True
            reporter.phase(1, phases, "sampling", None)  # the first of the caller's
            for p in problems:
                reporter.problem(p)
    if not started:  # refused by the caller: still, no file it could not list goes unsaid
        for p in problems:
            reporter.problem(p)
    if stats.skipped_symlinks:
        reporter.info(f"skipped {stats.skipped_symlinks} symbolic link(s) found inside the "
                      "folders (not followed unless asked to)")
    found = len(entries)
    if len(entries) > sample:
        entries = sorted(random.Random(seed).sample(entries, sample), key=lambda e: e.path)
    return entries, found, problems


def calibrate(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
              target_precision: float = 0.999, sample: int = 500,
              method: str = DEFAULT_METHOD, hash_size: int | None = None,
              invariant: str | None = None, decode: str = "fast", seed: int = 0,
              workers: int | None = None, follow_symlinks: bool = False,
              reporter: Reporter | None = None, executor: Executor | None = None,
              trim_borders: bool = True) -> Calibration:
    """Measure precision and recall per threshold on a sample of the images under ``paths``.

    Args:
        paths: folders (walked recursively) or files.
        target_precision: the pair precision the recommended threshold must reach.
        sample: how many images to sample (at random, seeded by ``seed``).
        method, hash_size, invariant, decode, trim_borders: the scan settings to calibrate
            (``invariant``: the scan's default when None).
        workers: processes (default all cores; 1 = in-process).
        reporter: progress and per-file problems.
        executor: run the work on this executor instead of local processes.

    Returns:
        A :class:`Calibration`; ``.threshold`` is the recommendation.

    Raises:
        ConfigError: bad settings, a missing path, or fewer than 2 images found.
        PartialFailure: fewer than 2 of the sampled images could be read (each one that
            could not is in the reporter's problems).

    Cost: one decode and hash per sampled image and ``len(TRANSFORMS)`` JPEG encodes,
    decodes and hashes of its copies, plus one exact search for the pairs within a quarter
    of the hash's bits and a thumbnail comparison per pair found.
    """
    import numpy as np

    from lookalike.imaging.hashes import INVARIANCES

    if not 0 < target_precision <= 1:
        raise ConfigError("target_precision must be in (0, 1]")
    if sample < 2:
        raise ConfigError("sample must be at least 2")
    if invariant is not None and invariant not in INVARIANCES:
        raise ConfigError(f"invariant must be one of {', '.join(INVARIANCES)}")
    given: dict[str, Any] = {} if invariant is None else {"invariant": invariant}
    config = ScanConfig(method=method, hash_size=hash_size, **given,
                        decode=decode, workers=workers, pixel_digest=False,  # type: ignore[arg-type]
                        trim_borders=trim_borders)
    invariant = config.invariant
    names = tuple(t.name for t in (*TRANSFORMS, *INVARIANT_TRANSFORMS[invariant]))
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)  # read twice
    check_roots(paths)  # a missing folder: one error, no progress line
    for root in paths:
        name = os.fspath(root)
        if name.lower().endswith(CONTAINER_SUFFIXES) and os.path.isfile(name):
            # Walked, a shard is one file: "needs at least 2 images; found 1" misled.
            raise ConfigError(f"calibration samples image files, and {name} is a tar shard or "
                              "Parquet file of images; calibrate on a folder of such images "
                              "(a few hundred extracted from it are enough)")
    entries, found, walk_problems = _sample(paths, sample, seed, follow_symlinks, reporter)
    if len(entries) < 2:
        raise ConfigError(f"calibration needs at least 2 images; found {len(entries)}")

    reporter.phase(2, 3, "hashing originals and copies", len(entries))
    worker = _Worker(config, names)
    chunks = [entries[i:i + CHUNK] for i in range(0, len(entries), CHUNK)]
    own = executor is None
    if executor is None:
        executor = make_executor("local", min(config.resolved_workers, len(chunks)))
    sampled: list[_Sampled] = []
    problems: list[Problem] = list(walk_problems)
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
        raise PartialFailure(
            f"calibration needs at least 2 readable images; {len(sampled)} of the "
            f"{len(entries)} sampled could be read"
            + (f"; sample more of the {found:,} files found" if found > len(entries) else ""))
    # The images there are: files that cannot be read are none (the sample's share of
    # them taken as the folder's; exact when the sample is every file). Counting them
    # made a sample of every readable image look partial ("sample more images").
    found = max(len(sampled), round(found * len(sampled) / len(entries)))

    reporter.phase(3, 3, "counting pairs", None)
    t_hashed = time.perf_counter()
    nbits = config.nbits
    n = len(sampled)
    # Thresholds past a quarter of the bits mean little for any method; stopping there keeps
    # the pairs to compare few (different pictures sit near half the bits apart).
    top = max(1, nbits // 4)
    # As a scan searches: a flat picture's segments match nothing (groups.segment_rows), so
    # a blank or solid picture (its thumbnails flat whatever the colour) pairs with nothing.
    a, b, d = _near_pairs([s.hash.informative_segments for s in sampled], nbits, top)
    dup, why = _likely_duplicates(sampled, a, b)
    n_dup = int(dup.sum())
    n_neg = n * (n - 1) // 2 - n_dup
    # Positives: each original against each of its edited copies.
    by_transform_d: dict[str, list[int]] = {name: [] for name in names}
    for s in sampled:
        if s.hash.featureless:
            continue  # a scan pairs a blank picture with byte copies only, never with edits
        for name, c in zip(names, s.copies, strict=True):
            if c is not None:
                by_transform_d[name].append(s.hash - c)  # as a scan compares them
    pos_d = [v for vs in by_transform_d.values() for v in vs]
    n_pos = len(pos_d)
    bins = top + 1
    rec = np.cumsum(np.bincount(np.minimum(np.asarray(pos_d, dtype=np.int64), bins),
                                minlength=bins + 1))[:bins]
    recall = rec / max(n_pos, 1)
    tp = np.cumsum(np.bincount(d[dup], minlength=bins))[:bins]
    fp = np.cumsum(np.bincount(d[~dup], minlength=bins))[:bins]
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    curve = tuple(ThresholdPoint(t, int(tp[t]), int(fp[t]), float(precision[t]),
                                 float(recall[t]), float(fp[t] / max(n_neg, 1)))
                  for t in range(bins))
    # The sample holds this share of the folder's pairs; the rest is where unseen false
    # pairs can hide (none when the sample is the whole folder).
    share = n * (n - 1) / max(found * (found - 1), 1)
    fp_high = fp + (_poisson_upper(fp) - fp) * (1.0 - share)
    lower = np.where(tp + fp_high > 0, tp / np.maximum(tp + fp_high, 1e-12), 1.0)
    confirmed = lower >= target_precision - 1e-12
    default_t = min(config.resolved_threshold, top)
    plausible = (precision >= target_precision - 1e-12) & (np.arange(bins) <= default_t)
    ok = np.flatnonzero(confirmed | plausible)
    reached = ok.size > 0
    best = int(ok[np.argmax(recall[ok] >= KNEE * recall[ok].max())]) if reached else 0
    by_transform = {name: float(np.mean(np.asarray(v) <= best)) if v else 0.0
                    for name, v in by_transform_d.items()}
    # A sample of n images has n^2/2 negative pairs, the whole collection N^2/2: rates that
    # look like zero on the sample can still mean false pairs in the full scan.
    if n >= found:  # the sample is the whole folder: its count is the scan's
        expected = float(fp[best])
    else:
        rate = (3.0 if fp[best] == 0 else float(fp[best])) / max(n_neg, 1)
        # Never more than the pairs there are (6 images: 15, not "about 45 at most").
        expected = min(rate, 1.0) * found * (found - 1) / 2
    # The closest remaining pairs: look-alikes this method confuses, or missed duplicates.
    path = [s.path for s in sampled]
    neg = np.flatnonzero(~dup)
    neg = neg[np.argsort(d[neg], kind="stable")[:10]]
    closest = tuple((path[int(a[k])], path[int(b[k])], int(d[k])) for k in neg)
    dups = np.flatnonzero(dup)
    dups = dups[np.argsort(d[dups], kind="stable")]
    already = tuple((path[int(a[k])], path[int(b[k])], int(d[k]), why[k]) for k in dups)
    reporter.close()
    return Calibration(
        method=config.method, hash_size=config.resolved_hash_size, nbits=nbits,
        invariant=invariant, decode=decode, target_precision=target_precision,
        threshold=best, target_reached=reached, confirmed=bool(confirmed[best]),
        default_threshold=default_t, precision=float(precision[best]),
        recall=float(recall[best]), curve=curve, max_threshold=top, pair_share=share, images=n,
        copies=n_pos, positive_pairs=n_pos, negative_pairs=n_neg, duplicate_pairs=n_dup,
        transforms=names, recall_by_transform=by_transform, closest_negatives=closest,
        duplicates_in_sample=already, images_found=found, expected_false_pairs=expected,
        problems=tuple(sorted(problems, key=lambda p: p.path)), seed=seed,
        seconds=round(time.perf_counter() - t0, 2),
        stats={"images_found": found, "hash_seconds": round(t_hashed - t0, 2),
               "pairs_seconds": round(time.perf_counter() - t_hashed, 2),
               "workers": executor.workers},
    )


def _pairs(n: int, kind: str = "") -> str:
    return f"{n:,} {kind}pair{'' if n == 1 else 's'}"


def render_calibration(cal: Calibration, *, rows: int = 12) -> str:
    """What was measured, the curve around the recommendation and the recommendation."""
    lo = max(0, cal.threshold - rows // 2)
    hi = min(cal.max_threshold, lo + rows)
    lines = [f"{cal.images} images sampled, {cal.copies} edited copies "
             f"({', '.join(cal.transforms)}); {_pairs(cal.duplicate_pairs)} of different files "
             f"taken for duplicates already (true pairs), {_pairs(cal.negative_pairs, 'other ')}",
             f"method {cal.method}, hash size {cal.hash_size} ({cal.nbits} bits), "
             f"invariant {cal.invariant}, decode {cal.decode}", "",
             f"{'threshold':>9}  {'precision':>9}  {'recall':>7}  {'true pairs':>10}  "
             f"{'false pairs':>11}  {'false-pair rate':>15}"]
    for p in cal.curve[lo:hi + 1]:
        mark = "  <- recommended" if p.threshold == cal.threshold else ""
        lines.append(f"{p.threshold:>9}  {p.precision:>9.4f}  {p.recall:>7.3f}  "
                     f"{p.true_pairs:>10,}  {p.false_pairs:>11,}  {p.false_pair_rate:>15.2e}"
                     f"{mark}")
    lines += ["", "recall: edited copies within the threshold of their image; true pairs: "
              "different files taken for duplicates; false pairs: the other different files",
              "recall per edit at the recommended threshold: " + ", ".join(
                  f"{k} {v:.0%}" for k, v in cal.recall_by_transform.items())]
    if cal.duplicates_in_sample:
        lines.append(f"{len(cal.duplicates_in_sample):,} pairs within {cal.max_threshold} bits "
                     "are duplicates already (identical bytes, or thumbnails matching in grey "
                     "and colour), e.g.:")
        lines += [f"  {d:>3} bit{'s' if d != 1 else ' '}  {shown(a)}  {shown(b)}  ({why})"
                  for a, b, d, why in cal.duplicates_in_sample[:3]]
    if cal.closest_negatives:
        lines.append("closest pairs of different pictures (look-alikes this method confuses, "
                     "or duplicates the thumbnail check missed):")
        lines += [f"  {d:>3} bit{'s' if d != 1 else ' '}  {shown(a)}  {shown(b)}"
                  for a, b, d in cal.closest_negatives[:5]]
    if cal.target_reached and not cal.confirmed:
        lines.append(f"the sample holds {cal.pair_share:.1%} of the pairs of the "
                     f"{cal.images_found:,} images found: too few to confirm precision "
                     f"{cal.target_precision} beyond the method's default threshold "
                     f"({cal.default_threshold}, measured on the benchmark set), which it "
                     "does not contradict; sample more images to calibrate beyond it")
    if not cal.target_reached:
        lines.append(f"precision {cal.target_precision} is not reached even at threshold 0 "
                     f"(identical hashes): these images collide; try another method or a "
                     f"larger hash size")
    if cal.images >= cal.images_found:
        lines.append(f"every image found was sampled, so a scan of them gives exactly "
                     f"{cal.expected_false_pairs:,.0f} false pairs at this threshold")
    else:
        bound = " at most (95% bound; none seen)" \
            if cal.point(cal.threshold).false_pairs == 0 else ""
        lines.append(f"a scan of all {cal.images_found:,} images found would give about "
                     f"{cal.expected_false_pairs:,.1f} false pairs{bound} at this threshold")
    size = "" if cal.method == DEFAULT_METHOD and cal.hash_size == DEFAULT_HASH_SIZE \
        else f" --hash-size {cal.hash_size}"
    inv = "" if cal.invariant == "none" else f" --invariant {cal.invariant}"
    lines.append(f"recommended: --threshold {cal.threshold} (precision {cal.precision:.4f}, "
                 f"recall {cal.recall:.3f}); e.g. lookalike scan PATH --method {cal.method}"
                 f"{size}{inv} --threshold {cal.threshold}")
    return "\n".join(lines) + "\n"
