"""Hash every benchmark image with every configuration, timing each (runs in workers).

lookalike's methods run as a scan runs them: one fast-mode decode per file, then the hash;
each configuration gets a fresh :class:`~lookalike.imaging.decode.Picture` so no cached resize of
another method flatters its time. Baselines run as their users run them: ``Image.open``
then ``imagehash.<func>`` (no EXIF orientation, alpha dropped by ``convert("L")``), and
the folklore z-transform recipe, each timed including its own decode.

Times are CPU seconds of the worker process (``time.process_time``), which other load on
the machine disturbs less than wall time.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.imaging.decode import Picture, decode_bytes
from lookalike.imaging.hashes import (
    INVARIANCES,
    METHODS,
    GreyGrid,
    HashMethod,
    bits_to_int,
    ztransform,
)

#: The invariances measured for configurations marked ``invariant``.
INVARIANTS = tuple(INVARIANCES)


def dhash_zg_bits(pic: GreyGrid, hash_size: int) -> np.ndarray:
    """Experiment: the z-transform on the (hash_size + 1) x hash_size grid dHash compares.

    The "corrected" folklore recipe (no second resize). The percentile map is monotonic, so
    on this grid it keeps every comparison except where it merges close values: plain dHash
    with a few "greater" bits turned into "equal". Measured here; not shipped.
    """
    small = ztransform(pic.grey(hash_size + 1, hash_size))
    return small[:, 1:] > small[:, :-1]


#: Methods measured but not in lookalike (experiments the benchmark decides on).
EXPERIMENTS: dict[str, HashMethod] = {
    "dhash-zg": HashMethod("dhash-zg", dhash_zg_bits, 8, lambda s: s * s,
                           "z-transform on dhash's own grid (experiment)"),
}


def method(name: str) -> HashMethod:
    return EXPERIMENTS.get(name) or METHODS[name]


@dataclass(frozen=True)
class Config:
    """One lookalike method and size; ``invariant`` marks those measured with flips/rotations."""

    method: str
    size: int
    invariant: bool = False
    quick: bool = True  # also run in --quick mode

    @property
    def key(self) -> str:
        return f"{self.method}/{self.size}"

    @property
    def nbits(self) -> int:
        return method(self.method).nbits(self.size)


@dataclass(frozen=True)
class Baseline:
    """A hash as users call it: ``imagehash.<func>(Image.open(path), size)``, or folklore."""

    name: str  # imagehash function, or "folklore-dhash-z"
    size: int
    quick: bool = True  # also run in --quick mode

    @property
    def key(self) -> str:
        return f"imagehash.{self.name}/{self.size}" if self.name != "folklore-dhash-z" \
            else f"folklore dhash-z/{self.size}"

    @property
    def nbits(self) -> int:
        return self.size * self.size


CONFIGS: tuple[Config, ...] = (
    Config("ahash", 8), Config("ahash", 16),
    Config("phash", 8, invariant=True), Config("phash", 16, invariant=True),
    Config("dhash", 8, invariant=True), Config("dhash", 16, invariant=True),
    Config("dhash-v", 8), Config("dhash-v", 16),
    Config("dhash-z", 8), Config("dhash-z", 16, invariant=True),
    Config("dhash-zg", 8), Config("dhash-zg", 16),
    Config("whash", 8, quick=False), Config("whash", 16, quick=False),  # slow and weak
    Config("colorhash", 3),
    Config("crop-resistant", 8, quick=False),
    Config("pdq", 16, invariant=True),
)
BASELINES: tuple[Baseline, ...] = (
    Baseline("average_hash", 8), Baseline("average_hash", 16),
    Baseline("phash", 8), Baseline("phash", 16),
    Baseline("dhash", 8), Baseline("dhash", 16),
    Baseline("whash", 8, quick=False), Baseline("whash", 16, quick=False),
    Baseline("folklore-dhash-z", 8),
)


@dataclass
class ItemHashes:
    """Everything measured on one image."""

    decode_s: float = 0.0
    pixels: str = ""  # digest of decoded RGBA pixels: identical pictures share ground truth
    error: str | None = None
    ours: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)  # key -> inv
    ours_s: dict[str, float] = field(default_factory=dict)
    invariant_s: dict[str, dict[str, float]] = field(default_factory=dict)
    base: dict[str, int] = field(default_factory=dict)
    base_s: dict[str, float] = field(default_factory=dict)


def folklore_dhash_z(image: Any, hash_size: int = 8) -> Any:
    """The z-transform recipe exactly as it circulates (on ``Image.open``, alpha on white)."""
    import imagehash
    from PIL import Image

    if image.mode == "RGBA":  # the recipe's "alpharemover"
        canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
        canvas.paste(image, mask=image)
        image = canvas.convert("RGB")
    image = image.convert("L").resize((hash_size, hash_size), Image.Resampling.LANCZOS)
    data = np.asarray(image).ravel()
    quantiles = np.arange(100)
    values = np.percentile(data, quantiles)
    z = (np.interp(data, values, quantiles) / 100 * 255).astype(np.uint8)
    image.putdata(z.tolist())
    return imagehash.dhash(image, hash_size)


def _baseline(b: Baseline, image: Any) -> int:
    import imagehash

    if b.name == "folklore-dhash-z":
        return bits_to_int(folklore_dhash_z(image, b.size).hash)
    return bits_to_int(getattr(imagehash, b.name)(image, b.size).hash)


def _fresh(pic: Picture) -> Picture:
    # A new Picture on the same decoded pixels: no grey conversion or resize cached yet.
    return Picture(pic._image, full_size=pic.full_size, reduced=pic.reduced)


def _pixel_digest(path: str) -> str:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.load()
        up = ImageOps.exif_transpose(im) or im
        rgba = up.convert("RGBA")
        return hashlib.sha256(f"{rgba.size}".encode() + rgba.tobytes()).hexdigest()[:16]


class HashJob:
    """Picklable worker: hashes a chunk of ``(index, path)`` with the chosen configurations.

    Every image gets every hash, each timed on a fresh picture; baselines are timed on
    every ``timing_every``-th image only (timing them repeats their work).
    """

    def __init__(self, configs: tuple[Config, ...], baselines: tuple[Baseline, ...],
                 timing_every: int = 5) -> None:
        self.configs, self.baselines, self.timing_every = configs, baselines, timing_every

    def __call__(self, chunk: list[tuple[int, str]]) -> list[ItemHashes]:
        return [self.one(path, index % self.timing_every == 0) for index, path in chunk]

    def one(self, path: str, timed: bool) -> ItemHashes:
        from PIL import Image

        out = ItemHashes()
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            t0 = time.process_time()
            pic = decode_bytes(data, mode="fast")[0]
            out.decode_s = time.process_time() - t0
            out.pixels = _pixel_digest(path)
        except Exception as exc:  # a benchmark image that fails is reported, not fatal
            out.error = f"{type(exc).__name__}: {exc}"
            return out
        # Each hash exactly as a scan stores it (border trimming on, as by default), timed.
        for cfg in self.configs:
            m = method(cfg.method)
            segments, times = {}, {}
            for inv in INVARIANTS if cfg.invariant else ("none",):
                fresh = _fresh(pic)
                t0 = time.process_time()
                segments[inv] = m.hash(fresh, cfg.size, inv, trim=True).segments
                times[inv] = time.process_time() - t0
            out.ours[cfg.key] = segments
            out.ours_s[cfg.key] = times.pop("none")
            if times:
                out.invariant_s[cfg.key] = times
        if self.baselines:
            with Image.open(path) as im:  # one decode gives every baseline the same pixels
                im.load()
                for b in self.baselines:
                    out.base[b.key] = _baseline(b, im)
        if timed:
            for b in self.baselines:  # as a user's loop runs: open, decode, hash
                t0 = time.process_time()
                with Image.open(path) as im:
                    _baseline(b, im)
                out.base_s[b.key] = time.process_time() - t0
        return out
