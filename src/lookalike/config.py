"""Frozen, keyword-only configuration objects, validated on construction."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from typing import Any, Final, Literal

from lookalike.errors import ConfigError, first_line

__all__ = ["BAND_MIN_SIDE", "DEFAULT_DECODE_TIMEOUT", "DEFAULT_HASH_SIZE", "DEFAULT_MAX_PIXELS",
           "DEFAULT_METHOD", "DEFAULT_SIMILARITY", "DEFAULT_SIMILARITY_UNVERIFIED",
           "DEFAULT_THRESHOLD", "INSTALL_HINTS", "ScanConfig", "check_writable", "import_extra"]

# Chosen on benchmarks/accuracy: the best recall at pair precision >= 0.999 of every method
# and size, within 20% of the folklore dhash-z 8's scan time (see README, "Accuracy").
# DEFAULT_HASH_SIZE is dhash-z's own default size. Each method's default threshold is in
# METHOD_SPECS below; DEFAULT_THRESHOLD (derived there) is the default method's.
DEFAULT_METHOD = "dhash-z"
DEFAULT_HASH_SIZE = 16
#: Mirrors and 90-degree turns match by default: phones, scanners and augmentation make both.
DEFAULT_INVARIANT: Final = "dihedral"

#: Cosine similarity of two images' copy-detection embeddings from which a pair is proposed
#: as a match (``ScanConfig.similarity``): with verification (the default) each proposal is
#: checked (lookalike.imaging.align), so it can be low enough to reach screenshots; without,
#: similarity alone decides. Measured on benchmarks/accuracy with sscd-distilled at its
#: 256 px input (imaging.embed.DEFAULT_SIDE): verified proposals from 0.42 find 90.08% of
#: true pairs at precision 0.9994 (from 0.45: 89.996%, one screenshot fewer); unverified,
#: 0.9 gives precision 0.9966 and recall 58% (56 false pairs; at 320 px 0.9951, 61.5%), while
#: 0.75 chained unrelated photos into groups (pair precision 0.15, at 320 px).
DEFAULT_SIMILARITY = 0.42
DEFAULT_SIMILARITY_UNVERIFIED = 0.9

#: The verified band (ScanConfig.band) tries pictures whose shorter side has at least this
#: many pixels. On the 20k small-image tree of benchmarks/bench_scan.py (296k codes) a
#: search to 16 bits costs 286 CPU s (icons and MNIST-like pictures crowd near each other:
#: 27 s at 12 bits, 0.46 s at the threshold); photos keep most of the band's gain
#: (benchmarks/accuracy: 14,466 of its 14,955 true pairs).
BAND_MIN_SIDE = 128

#: In fast mode a JPEG is decoded at reduced scale only while its shorter side stays at least
#: this many pixels (lookalike.imaging.decode). 4 x the largest default working grid (64 for whash
#: on tiny inputs, 32 for phash) keeps Lanczos down-sampling from the working image close
#: to down-sampling from the original.
FAST_MIN_SIDE = 256

#: ... and only from this shorter side up (scale 1/4 or 1/8). At scale 1/2 libjpeg still
#: decodes every coefficient (0.81 against 1.0 ms for a 0.35 MP JPEG), while a reduced hash
#: must be confirmed by a full re-decode whenever the image has a near match: on a folder of
#: small photos with edited copies (benchmarks/bench_peers.py, small) 679 of its 717
#: 512-1023 px JPEGs had one, and the one-worker cold scan took 4% more CPU (11.1 s against
#: 10.6 s, medians of 3) than decoding them in full once; the groups are the same.
FAST_REDUCE_FROM_SIDE = 4 * FAST_MIN_SIDE

#: Images declaring more pixels are refused before decoding (a decompression bomb?): Pillow's
#: own error limit (2 x its 89.5M warning limit).
DEFAULT_MAX_PIXELS = 178_956_970

#: Seconds one file may take to read, decode and hash before its worker is stopped.
DEFAULT_DECODE_TIMEOUT = 60.0

#: How to install each optional extra; messages about a missing package end with these.
INSTALL_HINTS = {
    "dask": "pip install 'lookalike[dask]'",
    "embed": "pip install 'lookalike[embed]'",
    "heif": "pip install 'lookalike[heif]'",
    "hf": "pip install 'lookalike[hf]'",
    "raw": "pip install 'lookalike[raw]'",
}

def import_extra(module: str, needed_for: str, extra: str) -> Any:
    """Import an optional dependency, or raise :class:`ConfigError` saying ``needed_for``
    needs it and how to install it (the ``extra``'s :data:`INSTALL_HINTS` line)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        if module == missing or module.startswith(f"{missing}."):
            raise ConfigError(f"{needed_for} needs {missing}, which is missing; install it "
                              f"with: {INSTALL_HINTS[extra]}") from None
        # Installed, but its import fails (a shared library it cannot load, a dependency
        # of the wrong version): "missing" sent the user to install what they have.
        raise ConfigError(f"{needed_for} needs {module}, which is installed but cannot be "
                          f"imported: {first_line(exc)}; reinstall it with: "
                          f"{INSTALL_HINTS[extra]}") from None


#: Version of the decoding rules (lookalike.imaging.decode): bump when decoding changes hash values,
#: which invalidates caches. Whether HEIF and camera RAW decoding are available is part of it,
#: so installing pillow-heif or rawpy re-tries files cached as unsupported.
DECODER_VERSION = "5" + ("+heif" if find_spec("pillow_heif") is not None else "") + (
    "+raw" if find_spec("rawpy") is not None else "")

@dataclass(frozen=True, slots=True)
class MethodSpec:
    """What a hash method's ``hash_size`` means: its default, the sizes allowed and the bits
    it gives. ``lookalike.imaging.hashes.METHODS`` takes these from here, so that validating a
    config, keying the cache or reading one (a warm re-scan) needs no NumPy."""

    default_size: int
    #: The default threshold at ``default_size``, with the default invariance and border
    #: trimming: the largest at which pair precision stays >= 0.999 on benchmarks/accuracy
    #: (README, "Accuracy"). Other sizes scale it by their share of bits, unless measured.
    threshold: int
    nbits: Callable[[int], int] = lambda size: size * size
    min_size: int = 2
    sizes: tuple[int, ...] | None = None  # the only sizes allowed, when not any >= min_size
    #: The largest size. Grids stop at 32 (1,024 bits): phash's 4x grid (128 px) still comes
    #: from fast mode's working image (short side >= FAST_MIN_SIDE), and the search's cost
    #: model works on hashes of up to 1,024 bits. colorhash: 32 bits per bin already resolve
    #: a single pixel of the largest image allowed (its values overflow from 63 on).
    max_size: int = 32
    power_of_two: bool = False  # whash: the Haar transform halves the grid per level
    #: Thresholds measured the same way at sizes other than the default.
    measured: tuple[tuple[int, int], ...] = ()
    #: The verified band at ``default_size`` (:attr:`ScanConfig.band`): hash matches beyond
    #: the threshold, up to this many bits, that join a group once aligning the pictures
    #: confirms them; 0: none (measured for dhash-z only; other sizes have none).
    band: int = 0
    #: Bumped when the method's hash values change (part of the cache key, so that cached
    #: hashes of the old rule are made again): pdq 1, flipped and turned variants hashed
    #: from their own pixels where flipping the DCT is not exact.
    revision: int = 0

    def listed(self) -> list[int] | None:
        """The sizes allowed, each, when not every size of a range is: ``[16]`` or
        ``[2, 4, 8, 16, 32]``; None for a range (:attr:`min_size` to :attr:`max_size`)."""
        if self.sizes is not None:
            return list(self.sizes)
        if self.power_of_two:
            return [1 << k for k in range(self.max_size.bit_length())
                    if self.min_size <= 1 << k <= self.max_size]
        return None

    def allowed(self) -> str:
        """The sizes allowed, for messages: ``2..32``, ``16`` or ``2, 4, 8, 16 or 32``."""
        listed = self.listed()
        if listed is None:
            return f"{self.min_size}..{self.max_size}"
        if self.sizes is not None:
            return " or ".join(map(str, listed))
        return f"a power of two: {', '.join(map(str, listed[:-1]))} or {listed[-1]}"

    def accepts(self, size: int) -> bool:
        if self.sizes is not None:
            return size in self.sizes
        return (self.min_size <= size <= self.max_size
                and not (self.power_of_two and size & (size - 1)))

    def default_threshold(self, size: int) -> int:
        """The default threshold at hash size ``size``: measured, else the same share of the
        bits as at the default size, or, above it, as at the largest size measured below
        (phash at 20 takes 16's 6 bits, not 8's 0: scaled from 0, every size above gave 0
        and found almost nothing)."""
        for measured_size, threshold in self.measured:
            if measured_size == size:
                return threshold
        ref_size, ref = self.default_size, self.threshold
        if size > self.default_size:
            ref_size, ref = max(((s, t) for s, t in ((self.default_size, self.threshold),
                                                     *self.measured) if s <= size))
        return round(ref * self.nbits(size) / self.nbits(ref_size))

    def default_band(self, size: int, threshold: int) -> int:
        """The default :attr:`ScanConfig.band` at hash size ``size`` with ``threshold``:
        the measured :attr:`band` at the default size when it lies beyond the threshold,
        else 0 (off)."""
        return self.band if size == self.default_size and self.band > threshold else 0


#: PDQ's fixed grid side (its 256 bits are a 16 x 16 DCT block).
PDQ_SIZE = 16

#: Every hash method, in ``lookalike.imaging.hashes.METHODS`` order.
METHOD_SPECS: dict[str, MethodSpec] = {
    # Thresholds measured with flips/turns and border trimming on (the defaults). The 64-bit
    # methods and colorhash reach precision 0.999 at no threshold there (different icons and
    # emoji collide): 0, identical hashes only, is the closest they come (phash 0.9988).
    "ahash": MethodSpec(8, 0),
    "phash": MethodSpec(8, 0, measured=((16, 6),)),
    "dhash": MethodSpec(8, 0),
    "dhash-v": MethodSpec(8, 0),
    # Band 20: on benchmarks/accuracy, pairs at 7..20 bits that aligning the pictures
    # (or PDQ, or the order of cells) confirms add 10.0% more true pairs (brightness +30%
    # found 76% -> 97.5%) at precision 0.9992 (README, "The verified band").
    "dhash-z": MethodSpec(DEFAULT_HASH_SIZE, 6, measured=((8, 0),), band=20),
    "whash": MethodSpec(8, 0, power_of_two=True),
    "colorhash": MethodSpec(3, 0, lambda bins: 14 * bins, min_size=1),
    "crop-resistant": MethodSpec(8, 0),
    "pdq": MethodSpec(PDQ_SIZE, 6, lambda _: 256, min_size=PDQ_SIZE, sizes=(PDQ_SIZE,),
                      revision=1),
}

DEFAULT_THRESHOLD = METHOD_SPECS[DEFAULT_METHOD].threshold

#: Names of the hash methods, so the command line can offer them without NumPy and Pillow.
METHOD_NAMES: tuple[str, ...] = tuple(METHOD_SPECS)


def method_spec(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of ``name``; the error lists the valid names."""
    try:
        return METHOD_SPECS[name]
    except KeyError:
        raise ConfigError(
            f"unknown hash method {name!r}; choose one of: {', '.join(METHOD_SPECS)}"
        ) from None


def nearest_folder(path: str | os.PathLike[str]) -> str:
    """``path`` (absolute) or its nearest ancestor that is a folder: where a folder made
    at ``path`` would be made, so what must be writable."""
    up = os.path.abspath(os.fspath(path))
    while not os.path.isdir(up) and os.path.dirname(up) != up:
        up = os.path.dirname(up)
    return up


def check_writable(path: str | os.PathLike[str], what: str = "output file") -> str:
    """Raise :class:`ConfigError` unless a file can be written at ``path``; return it absolute.

    Checked before any work, so that a typo fails at once rather than after a long scan:
    the folder must exist and be writable (a file is created there and removed again), and
    ``path`` must not be a folder or a read-only file. A device or a pipe (``/dev/null``,
    ``/dev/stdout``) needs only to take writes (it is written as it is, not replaced); a
    symbolic link, the folder of the file it names.
    """
    p = os.path.abspath(os.fspath(path))
    if os.path.isdir(p):
        raise ConfigError(f"cannot write the {what} {p}: it is a folder; name a file")
    with contextlib.suppress(OSError):
        if not stat.S_ISREG(os.stat(p).st_mode):
            if not os.access(p, os.W_OK):
                raise ConfigError(f"cannot write the {what} {p}: permission denied; choose "
                                  "another path")
            return p
    parent = os.path.dirname(os.path.realpath(p))
    if not os.path.isdir(parent):
        # The nearest existing ancestor says whether the folder is missing or is a file.
        up = parent
        while up != os.path.dirname(up) and not os.path.lexists(up):
            up = os.path.dirname(up)
        why = (f"{up} is a file, not a folder" if os.path.lexists(up) and not os.path.isdir(up)
               else f"folder {parent} does not exist; create it first")
        raise ConfigError(f"cannot write the {what} {p}: {why}")
    if os.path.exists(p) and not os.access(p, os.W_OK):
        raise ConfigError(f"cannot write the {what} {p}: permission denied; choose another "
                          "path")
    import tempfile  # here, not at the top: ~3 ms a command, a tenth of a warm re-scan's margin

    try:
        # A real write, not os.access: root passes every permission test, and read-only or
        # special file systems (a full disk, /proc) only fail when written.
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".lookalike-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write the {what} {p}: {exc.strerror or exc}; choose "
                          "another path") from None
    return p


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanConfig:
    """How a scan hashes and groups.

    Attributes:
        method: hash algorithm name (see ``lookalike.imaging.hashes.METHODS``).
        hash_size: algorithm size parameter; ``None`` means the method's default.
        threshold: max Hamming distance in bits for two images to match (0 = identical);
            ``None`` (the default) is the method's default for its hash size
            (:meth:`MethodSpec.default_threshold`), stored here resolved. At most half the
            bits: beyond that unrelated pictures match by chance.
        invariant: also match mirrored and/or 90-degree-rotated copies: ``none``,
            ``flips`` (left-right mirror), ``rotations`` (90/180/270) or ``dihedral`` (all
            eight, the default); each hash then also stores those versions' hashes.
        trim_borders: an image with flat bars on its sides (padding, letterbox, scanner
            margins) also stores the hash of its content alone, so a padded copy matches
            its original (:mod:`lookalike.imaging.borders`).
        grouping: ``components`` (chaining) or ``star`` (all within threshold of the
            representative).
        decode: ``fast`` (default: large JPEGs decoded at reduced scale, every hash computed
            from one small working image; those that may have a match are hashed again in
            full before grouping, see :mod:`lookalike.grouping.confirm`) or ``full`` (every pixel of
            every image; bit-exact with ImageHash).
        max_pixels: images declaring more pixels are refused before decoding.
        decode_timeout: seconds one file may take to read, decode and hash before its
            worker process is stopped and the file reported as ``timeout`` (``None``: no
            limit). Enforced by the process executor; ``workers=1`` runs in-process, unguarded.
        pixel_digest: tell pixel-identical files (``exact`` groups) by a digest of their
            decoded pixels, for group members that share their hash and size with a file of
            other bytes (decoded again in full, after grouping; local files only).
        follow_symlinks: walk into symlinked files and folders.
        embed: also compute a copy-detection embedding of every image with this model (a
            name such as ``sscd-distilled``, or a path to an ``.onnx`` file; see
            ``docs/embeddings.md``), so crops, padding, small rotations and screenshots are
            found too. ``None``: hashes only.
        similarity: cosine similarity (0..1] from which two images' embeddings propose a
            match; ``None`` (the default) is :data:`DEFAULT_SIMILARITY`, or
            :data:`DEFAULT_SIMILARITY_UNVERIFIED` without ``verify``
            (:attr:`resolved_similarity`). Only used with ``embed``.
        verify: an embedding match joins a group only when the pictures, aligned, have
            matching hashes (:mod:`lookalike.imaging.align`); off, every match joins (more
            found, and photos of one scene taken for copies).
        band: the verified hash band: two pictures whose hashes differ by more than the
            threshold but at most ``band`` bits join one group when, aligned, they are one
            picture (:mod:`lookalike.verify`, the same check as embedding matches'): the
            brightness, contrast and gamma edits that move a hash just past the threshold.
            Pictures with a short side of at least :data:`BAND_MIN_SIDE` pixels only (icons
            and thumbnails crowd the band: many near hashes, little to align). ``None`` (the
            default): the method's (:meth:`MethodSpec.default_band`: dhash-z at its default
            size, 20, while the threshold is below it; other methods and sizes have none),
            0 with star grouping (:attr:`resolved_band`); 0: off. Components grouping only.
            Any method takes a band given explicitly (measured for dhash-z 16 only).
        workers: worker processes (``None`` = all cores, 1 = in-process).
    """

    method: str = DEFAULT_METHOD
    hash_size: int | None = None
    threshold: int | None = None
    invariant: Literal["none", "flips", "rotations", "dihedral"] = DEFAULT_INVARIANT
    trim_borders: bool = True
    grouping: Literal["components", "star"] = "components"
    decode: Literal["fast", "full"] = "fast"
    max_pixels: int = DEFAULT_MAX_PIXELS
    decode_timeout: float | None = DEFAULT_DECODE_TIMEOUT
    pixel_digest: bool = True
    follow_symlinks: bool = False
    embed: str | None = None
    similarity: float | None = None
    verify: bool = True
    band: int | None = None
    workers: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        method = method_spec(self.method)  # raises ConfigError listing valid names
        size = self.resolved_hash_size
        if not isinstance(size, int) or isinstance(size, bool) or not method.accepts(size):
            raise ConfigError(f"hash_size {size!r} is out of range for {self.method} "
                              f"({method.allowed()}); its default is {method.default_size}")
        if self.invariant not in ("none", "flips", "rotations", "dihedral"):
            raise ConfigError("invariant must be none, flips, rotations or dihedral")
        if self.threshold is None:  # frozen: resolved once, so every reader sees a number
            object.__setattr__(self, "threshold", method.default_threshold(size))
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise ConfigError(f"threshold {threshold!r} is not a number of bits >= 0 "
                              "(0 = identical hashes)")
        nbits = method.nbits(size)
        if threshold > nbits // 2:
            # Unrelated pictures differ in about half their bits: beyond that a match
            # means nothing, and every image would end up in one group.
            raise ConfigError(
                f"threshold {threshold} is more than half the {nbits} bits of "
                f"{self.method} at hash_size {size}: unrelated pictures would match; use "
                f"0..{nbits // 2} (its default is {method.default_threshold(size)})")
        band = self.band
        if band is not None and (isinstance(band, bool) or not isinstance(band, int)
                                 or band < 0):
            raise ConfigError(f"band {band!r} is not a number of bits >= 0 (0 = off)")
        if band and not threshold < band <= nbits // 2:
            raise ConfigError(
                f"band {band} must lie beyond the threshold ({threshold}) and within half the "
                f"{nbits} bits (0 turns it off)")
        if band and self.grouping == "star":
            raise ConfigError("the verified band joins groups through their hash groups: use "
                              "components grouping with it (or band 0)")
        similarity = self.similarity
        if similarity is not None and (isinstance(similarity, bool)
                                       or not isinstance(similarity, int | float)
                                       or not 0 < similarity <= 1):
            raise ConfigError(f"similarity {similarity!r} is not a cosine similarity in (0, 1] "
                              f"(the default is {DEFAULT_SIMILARITY})")
        if self.embed is not None and (not isinstance(self.embed, str) or not self.embed):
            raise ConfigError("embed must name a model (such as sscd-distilled) or an .onnx file")
        if self.embed is None and (similarity is not None or not self.verify):
            # They would be ignored: a scan without embeddings has no embedding matches.
            given = ("a similarity" if similarity is not None
                     else "turning verification off")
            raise ConfigError(f"{given} applies to embedding matches only; name an embedding "
                              "model (such as sscd-distilled)")
        if self.embed is not None and self.grouping == "star":
            # Verification joins hash groups by one verified pair, which a star, built
            # around its leader only, would not use.
            raise ConfigError("embeddings join groups through their hash groups: use components "
                              "grouping with them")
        if self.grouping not in ("components", "star"):
            raise ConfigError("grouping must be 'components' or 'star'")
        if self.decode not in ("fast", "full"):
            raise ConfigError("decode must be 'fast' or 'full'")
        if self.max_pixels < 1:
            raise ConfigError("max_pixels must be positive")
        if self.decode_timeout is not None and not self.decode_timeout > 0:
            raise ConfigError("decode_timeout must be a positive number of seconds (or None)")
        if self.workers is not None and self.workers < 1:
            raise ConfigError("workers must be >= 1")

    @property
    def resolved_hash_size(self) -> int:
        if self.hash_size is not None:
            return self.hash_size
        return method_spec(self.method).default_size

    @property
    def resolved_threshold(self) -> int:
        """:attr:`threshold`, which ``__post_init__`` resolved: never None once built."""
        assert self.threshold is not None
        return self.threshold

    @property
    def resolved_band(self) -> int:
        """:attr:`band`, or when None the method's default for this hash size and threshold
        (:meth:`MethodSpec.default_band`), 0 with star grouping. Left unresolved in the
        field, so that ``dataclasses.replace(config, threshold=25)`` gets its own default."""
        if self.band is not None:
            return self.band
        if self.grouping == "star":
            return 0
        return method_spec(self.method).default_band(self.resolved_hash_size,
                                                     self.resolved_threshold)

    @property
    def resolved_similarity(self) -> float:
        """:attr:`similarity`, or its default for :attr:`verify`."""
        if self.similarity is not None:
            return float(self.similarity)
        return DEFAULT_SIMILARITY if self.verify else DEFAULT_SIMILARITY_UNVERIFIED

    @property
    def nbits(self) -> int:
        return method_spec(self.method).nbits(self.resolved_hash_size)

    @property
    def resolved_workers(self) -> int:
        return self.workers if self.workers is not None else (os.cpu_count() or 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hash_size"] = self.resolved_hash_size
        d["nbits"] = self.nbits
        d["similarity"] = self.resolved_similarity
        d["band"] = self.resolved_band
        return d
