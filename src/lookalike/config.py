"""Frozen, keyword-only configuration objects, validated on construction."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from typing import Any, Literal

from .errors import ConfigError

__all__ = ["DEFAULT_HASH_SIZE", "DEFAULT_METHOD", "DEFAULT_THRESHOLD", "ScanConfig"]

# Chosen on benchmarks/accuracy: the best recall at pair precision >= 0.999 of every method
# and size, within 20% of the folklore dhash-z 8's scan time (see README, "Accuracy").
# DEFAULT_HASH_SIZE is dhash-z's own default size; the threshold is tuned for this pair only.
DEFAULT_METHOD = "dhash-z"
DEFAULT_HASH_SIZE = 16
DEFAULT_THRESHOLD = 10

#: In fast mode a JPEG is decoded at reduced scale only while its shorter side stays at least
#: this many pixels (lookalike.decode). 4 x the largest default working grid (64 for whash
#: on tiny inputs, 32 for phash) keeps Lanczos down-sampling from the working image close
#: to down-sampling from the original.
FAST_MIN_SIDE = 256

#: Version of the decoding rules (lookalike.decode): bump when decoding changes hash values,
#: which invalidates caches. Whether HEIF decoding is available is part of it, so installing
#: pillow-heif re-tries files cached as unsupported.
DECODER_VERSION = "3" + ("+heif" if find_spec("pillow_heif") is not None else "")

#: Names of the hash methods, in ``lookalike.hashes.METHODS`` order (a test keeps them equal),
#: so the command line can offer them without importing NumPy and Pillow.
METHOD_NAMES: tuple[str, ...] = (
    "ahash", "phash", "dhash", "dhash-v", "dhash-z", "whash", "colorhash", "crop-resistant",
    "pdq",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanConfig:
    """How a scan hashes and groups.

    Attributes:
        method: hash algorithm name (see ``lookalike.hashes.METHODS``).
        hash_size: algorithm size parameter; ``None`` means the method's default.
        threshold: max Hamming distance in bits for two images to match (0 = identical).
        invariant: also match mirrored and/or 90-degree-rotated copies: ``none``,
            ``flips`` (left-right mirror), ``rotations`` (90/180/270) or ``dihedral`` (all
            eight); each hash then also stores those versions' hashes.
        grouping: ``components`` (chaining) or ``star`` (all within threshold of the
            representative).
        decode: ``fast`` (default: large JPEGs decoded at reduced scale, every hash computed
            from one small working image; those that may have a match are hashed again in
            full before grouping, see :mod:`lookalike.confirm`) or ``full`` (every pixel of
            every image; bit-exact with ImageHash).
        max_pixels: images declaring more pixels are refused before decoding.
        decode_timeout: seconds one file may take to read, decode and hash before its
            worker process is stopped and the file reported as ``timeout`` (``None``: no
            limit). Enforced by the process executor; ``workers=1`` runs in-process, unguarded.
        pixel_digest: also compute a digest of decoded pixels (needs full decoding).
        follow_symlinks: walk into symlinked files and folders.
        workers: worker processes (``None`` = all cores, 1 = in-process).
    """

    method: str = DEFAULT_METHOD
    hash_size: int | None = None
    threshold: int = DEFAULT_THRESHOLD
    invariant: Literal["none", "flips", "rotations", "dihedral"] = "none"
    grouping: Literal["components", "star"] = "components"
    decode: Literal["fast", "full"] = "fast"
    max_pixels: int = 178_956_970
    decode_timeout: float | None = 60.0
    pixel_digest: bool = True
    follow_symlinks: bool = False
    workers: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .hashes import get_method

        method = get_method(self.method)  # raises ConfigError listing valid names
        size = self.resolved_hash_size
        if size < method.min_size:
            raise ConfigError(f"--hash-size must be >= {method.min_size} for {self.method}")
        if method.sizes is not None and size not in method.sizes:
            raise ConfigError(f"{self.method} supports --hash-size "
                              f"{' or '.join(map(str, method.sizes))} only")
        if self.invariant not in ("none", "flips", "rotations", "dihedral"):
            raise ConfigError("--invariant must be none, flips, rotations or dihedral")
        if self.method == "whash" and size & (size - 1):
            raise ConfigError("whash needs a power-of-two --hash-size (4, 8, 16, ...)")
        if self.threshold < 0:
            raise ConfigError("--threshold is a number of bits and must be >= 0")
        nbits = method.nbits(size)
        if self.threshold > nbits:
            raise ConfigError(
                f"--threshold {self.threshold} exceeds the {nbits} bits of {self.method} "
                f"at hash size {size}; every image would match"
            )
        if self.grouping not in ("components", "star"):
            raise ConfigError("--grouping must be 'components' or 'star'")
        if self.decode not in ("fast", "full"):
            raise ConfigError("decode must be 'fast' or 'full'")
        if self.max_pixels < 1:
            raise ConfigError("--max-pixels must be positive")
        if self.decode_timeout is not None and not self.decode_timeout > 0:
            raise ConfigError("--decode-timeout must be a positive number of seconds")
        if self.workers is not None and self.workers < 1:
            raise ConfigError("--workers must be >= 1")

    @property
    def resolved_hash_size(self) -> int:
        from .hashes import get_method

        if self.hash_size is not None:
            return self.hash_size
        return get_method(self.method).default_size

    @property
    def nbits(self) -> int:
        from .hashes import get_method

        return get_method(self.method).nbits(self.resolved_hash_size)

    @property
    def resolved_workers(self) -> int:
        return self.workers if self.workers is not None else (os.cpu_count() or 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hash_size"] = self.resolved_hash_size
        d["nbits"] = self.nbits
        return d
