"""Plain value types shared by every stage. No I/O here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = ["HASHED", "MATCH_KINDS", "FileFacts", "Group", "Hash", "ImageRecord", "Member",
           "embedding_array", "embedding_bytes", "flat_codes", "make_record", "match_text",
           "positional_constructor", "structureless"]


@dataclass(frozen=True, slots=True)
class Hash:
    """A perceptual hash: one or more segments of ``nbits`` bits each.

    Bits are ordered row-major exactly as ImageHash orders them, and the segment value is the
    integer those bits spell (first bit most significant), so ``str(h)`` equals
    ``str(imagehash_value)``. Crop-resistant hashes have several segments, joined with ``,``
    as ``ImageMultiHash`` prints them; every other method has one.

    ``a - b`` is the Hamming distance in bits (for multi-segment hashes: the smallest distance
    between any segment of ``a`` and any segment of ``b``, i.e. the best-matching region or
    orientation, leaving out a flat picture's segments (:func:`flat_codes`) where there are
    others).
    """

    method: str
    nbits: int
    segments: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError("a Hash needs at least one segment")
        limit = 1 << self.nbits
        for s in self.segments:
            if not 0 <= s < limit:
                raise ValueError(f"segment value {s:#x} does not fit in {self.nbits} bits")

    @property
    def value(self) -> int:
        """The single segment's integer value (the hash of a one-segment method)."""
        return self.segments[0]

    @property
    def flat_codes(self) -> frozenset[int]:
        """The segment values a flat picture (one colour, no structure) hashes to with this
        method (:func:`flat_codes`)."""
        return flat_codes(self.method, self.nbits)

    @property
    def informative_segments(self) -> tuple[int, ...]:
        """The segments that are not (nearly) a structureless picture's
        (:func:`structureless`): the ones that say something about the picture, and the only
        ones matched (they are all, for most pictures)."""
        limits = _limits(self.method, self.nbits)
        if limits is None:
            return self.segments
        low, high, band, others = limits
        # One popcount per segment (this runs for every segment of every warm re-scan):
        # the distance to 0 is the popcount, to all ones its complement.
        out = [v for v in self.segments if low < v.bit_count() < high]
        if others:
            out = [v for v in out if all((v ^ c).bit_count() > band for c in others)]
        return self.segments if len(out) == len(self.segments) else tuple(out)

    @property
    def featureless(self) -> bool:
        """True when every segment is (nearly) a structureless picture's
        (:func:`structureless`): a blank page or a solid colour, of any colour, a page with
        one small mark, a pure gradient. Such a hash says nothing about whether two pictures
        are one: grouping joins them by their bytes only."""
        return bool(structureless(self.method, self.nbits)) and not self.informative_segments

    def __str__(self) -> str:
        spec = f"0{(self.nbits + 3) // 4}x"
        return ",".join([format(s, spec) for s in self.segments])

    @property
    def hex(self) -> str:
        return str(self)

    def __len__(self) -> int:
        return self.nbits

    def __sub__(self, other: Hash) -> int:
        if not isinstance(other, Hash):
            return NotImplemented
        if other.nbits != self.nbits or other.method != self.method:
            raise TypeError(
                f"cannot compare a {self.method}/{self.nbits}-bit hash with a "
                f"{other.method}/{other.nbits}-bit hash"
            )
        # Flat segments match every flat picture: they count only when one side has nothing
        # else (a featureless hash; one plain segment, as ImageHash compares).
        mine = self.informative_segments or self.segments
        theirs = other.informative_segments or other.segments
        return min((a ^ b).bit_count() for a in mine for b in theirs)

    @classmethod
    def from_hex(cls, text: str, *, method: str, nbits: int) -> Hash:
        """Parse ``str(h)`` (or an ImageHash hex string) back into a :class:`Hash`.

        Raises:
            ValueError: not hex, or a segment does not fit in ``nbits`` bits.
        """
        try:
            segments = tuple([int(part, 16) for part in text.split(",")])
        except ValueError:
            raise ValueError(f"not a hex hash string: {text!r}") from None
        return cls(method, nbits, segments)


_ZERO = frozenset((0,))

#: Difference hashes: each bit says whether a pixel is brighter than its neighbour, so a pure
#: gradient (a clear sky, a vignette turned sideways) sets every bit of some orientation.
DIFFERENCE_METHODS = frozenset(("dhash", "dhash-v", "dhash-z", "crop-resistant"))


def flat_codes(method: str, nbits: int) -> frozenset[int]:
    """The segment values a flat picture hashes to, whatever its colour and size: 0 for the
    grid methods (no pixel differs from its neighbour or the mean), and for ``phash`` also
    the DC bit alone (its top bit: any colour but black). For ``pdq`` 0 only (black, and
    any picture under 5 pixels on a side; its other flat pictures hash arbitrarily, which
    its quality says), none for ``colorhash`` (its bits are colours). tests/test_hashes.py
    hashes flat pictures with every method to keep this table true (phash at sizes that are
    not powers of two hashes flat pictures to DCT rounding noise: not in the table)."""
    if method == "colorhash":
        return frozenset()
    if method == "phash":
        return frozenset((0, 1 << (nbits - 1)))
    return _ZERO


@lru_cache(maxsize=64)
def structureless(method: str, nbits: int) -> frozenset[int]:
    """The codes of pictures without structure: a flat picture's (:func:`flat_codes`) and,
    for the difference hashes (:data:`DIFFERENCE_METHODS`), a pure gradient's (every bit
    set). A segment within :func:`_band` bits of one of them (a blank page with a page
    number or one dot, a sky with a small bird) is as good as blank: it joins nothing
    (:attr:`Hash.informative_segments`; :mod:`lookalike.grouping.groups`), or two such
    pages, different documents, would be one group whatever they show."""
    codes = flat_codes(method, nbits)
    if method in DIFFERENCE_METHODS:
        codes |= {(1 << nbits) - 1}
    return codes


def _band(nbits: int) -> int:
    """How many bits from a structureless code a segment still counts as one: 1/16 of its
    bits (16 of dhash-z's 256, 4 of a 64-bit hash). On 32 near-blank pages, pages with one
    dot and skies with a bird (all 29 but the short letters one group before), page numbers
    set 0-6 bits, a dot 3-11, a bird 4-17; on benchmarks/accuracy no true pair lies this
    close (1/12 would lose 3 of 13,340), tests/test_pipeline.py."""
    return nbits // 16


@lru_cache(maxsize=64)
def _limits(method: str, nbits: int) -> tuple[int, int, int, tuple[int, ...]] | None:
    """(low, high, band, others): a segment is informative when its popcount lies strictly
    between ``low`` and ``high`` and it is more than ``band`` bits from each of ``others``
    (the :func:`structureless` codes but 0 and all ones); None: every segment is."""
    codes = structureless(method, nbits)
    if not codes:
        return None
    band, ones = _band(nbits), (1 << nbits) - 1
    return (band if 0 in codes else -1, nbits - band if ones in codes else nbits + 1, band,
            tuple(sorted(codes - {0, ones})))


@dataclass(frozen=True, slots=True, kw_only=True)
class FileFacts:
    """What a file's header says (read by :func:`lookalike.imaging.facts.read_file_facts`,
    and at hash time for :attr:`ImageRecord.facts`); the defaults mean unknown, and a file
    whose header cannot be read has all of them (``FileFacts()``).

    Attributes:
        format: Pillow's format name (``"JPEG"``, ``"PNG"``, ...); None if unreadable.
        mode: Pillow's colour mode (``"RGB"``, ``"L"``, ...).
        quality: JPEG quality (1-100) estimated from the luminance quantisation table;
            None for other formats.
        lossless: the pixels are stored exactly (the format, or a WebP's bitstream).
        grey: one colour channel only (``1``, ``L``, ``LA``, ``I``, ``F`` modes).
        camera: EXIF camera make and model, the make left out when the model names it
            (``"Canon EOS R5"``, not ``"Canon Canon EOS R5"``).
        taken: when the picture was taken (EXIF ``DateTimeOriginal``, with
            ``SubsecTimeOriginal``) as ``YYYY-MM-DD HH:MM:SS`` or ``YYYY-MM-DD HH:MM:SS.fff``:
            copies keep it, so two files that differ in it are two shots.
        metadata: how many kinds of metadata the file keeps that a re-save drops: EXIF (more
            than an orientation tag), ICC profile.
        notes: how many kinds of notes it holds: XMP, a comment (kept apart: converters and
            photo managers add them).
        frames: the file holds more than one picture (an animation, a multi-page TIFF); its
            hash and pixel digest see the first only. Not for an MPO (a JPEG whose extra
            pictures are previews or depth and gain maps of the first). None: unknown (facts
            stored before this field: a scan reads such headers again); the keep policy then
            takes it to hold several.
        software: the EXIF ``Software`` tag: a camera's firmware, or the editor that
            wrote the file (``Adobe Photoshop 25.0``).
        exposure: EXIF exposure time and bias (``1/250 s -1 EV``): an exposure bracket's
            frames, taken in one second, differ in it; copies keep it.
        content: the one fact read from the pixels, not the header: (width, height) of the
            picture inside flat bars on its sides (padding, letterbox, margins:
            :func:`lookalike.imaging.borders.content_box`), in the file's pixels after EXIF
            orientation, found when it was hashed; None when it has no such bars, or when
            only its header was read. A padded copy shows no more picture than its
            original: the keep policy counts what it shows.
    """

    format: str | None = None
    mode: str | None = None
    quality: int | None = None
    lossless: bool = False
    grey: bool = False
    camera: str | None = None
    taken: str | None = None
    metadata: int = 0
    frames: bool | None = False
    software: str | None = None
    exposure: str | None = None
    notes: int = 0
    content: tuple[int, int] | None = None

    def to_text(self) -> str:
        """The facts as compact JSON (a list in field order), how the stores keep them."""
        import json  # here: ``import lookalike`` loads this module and stays light

        return json.dumps([getattr(self, name) for name in _FACT_FIELDS],
                          separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_text(cls, text: str | None) -> FileFacts | None:
        """The facts :meth:`to_text` wrote; None for None (a store's row without facts) or a
        text it did not write (a damaged row): the facts are then unknown, not wrong."""
        import json

        try:
            values = json.loads(text) if text is not None else None
        except ValueError:
            return None
        # Facts of an older version are unknown (before `frames`, `software`, `exposure`,
        # `notes` and taken's fraction of a second: a scan reads such headers again), but
        # for `content` alone: the header facts stand, the bars are not known (None).
        if not isinstance(values, list) or len(values) not in (len(_FACT_FIELDS) - 1,
                                                               len(_FACT_FIELDS)):
            return None
        return cls.from_values(dict(zip(_FACT_FIELDS, values, strict=False)))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> FileFacts | None:
        """Facts from their field values (:meth:`to_text`'s, or a report's ``content``);
        None when a value has the wrong type (a damaged or hand-edited row): unknown."""
        if set(values) - set(_FACT_TYPES) or not all(
                v is None or type(v) in _FACT_TYPES[k] for k, v in values.items()):
            return None
        content = values.get("content")
        if content is not None:
            if not (len(content) == 2 and all(type(v) is int and v > 0 for v in content)):
                return None
            values = {**values, "content": (content[0], content[1])}
        return cls(**values)


_FACT_FIELDS = tuple(FileFacts.__dataclass_fields__)  # in field order
#: The types each fact may have besides None (JSON gives lists, not tuples).
_FACT_TYPES: dict[str, tuple[type, ...]] = {
    "format": (str,), "mode": (str,), "quality": (int,), "lossless": (bool,),
    "grey": (bool,), "camera": (str,), "taken": (str,), "metadata": (int,),
    "frames": (bool,), "software": (str,), "exposure": (str,), "notes": (int,),
    "content": (list, tuple)}
assert set(_FACT_TYPES) == set(_FACT_FIELDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRecord:
    """What the scan learned about one readable image.

    ``width``/``height`` are after EXIF orientation. ``digest`` is the SHA-256 of the file's
    bytes: always set for the members of a scan's groups (and for every image read from an
    object store, archive or Parquet file); None for other local images, which a scan does
    not digest (see :mod:`lookalike.pipeline`). ``pixel_digest`` is the SHA-256 of the
    decoded RGB pixels, computed after grouping for local group members that share their
    hash and size with a file of other bytes (the only ones that may be pixel-identical),
    else None. ``aliases`` are the file's other paths found by the scan (hard links, paths
    through symbolic links or overlapping roots): one file, one record, never a duplicate of
    itself. ``facts`` is what the file's header says, read when it was hashed (kept by the
    stores with the hash); None when not known (a record from an older cache), so
    :class:`~lookalike.grouping.keep.KeepPolicy` reads the file instead.
    """

    path: str
    size_bytes: int
    mtime_ns: int
    width: int
    height: int
    format: str | None
    hash: Hash
    digest: str | None
    pixel_digest: str | None = None
    source: str = ""
    aliases: tuple[str, ...] = ()
    facts: FileFacts | None = None
    embedding: bytes | None = None

    @property
    def pixels(self) -> int:
        return self.width * self.height


#: How a member came into its group (:attr:`Member.match`): its hash lies within the
#: threshold of another member's (``hash``, also every exact duplicate); or only its
#: embedding matched: similar enough on its own (``embedding``), or in the uncertain band of
#: similarity and then confirmed by aligning the pictures (``verified``); or its hash lies
#: beyond the threshold, within the verified band, and aligning the pictures confirmed it
#: (``aligned``: a photometric edit such as brightness; ``ScanConfig.band``).
MATCH_KINDS = ("hash", "embedding", "verified", "aligned")
#: The kinds whose member matched by its hash (within the threshold, or within the verified
#: band and confirmed): its distance is in bits, and the keep policy chooses among them
#: when embeddings joined the group.
HASHED = ("hash", "aligned")


def match_text(match: str, distance: int, similarity: float | None) -> str:
    """How a pair matched, in a few words for text reports: ``d=5``, ``d=9 aligned`` or
    ``verified 0.87``."""
    if match == "hash":
        return f"d={distance}"
    if similarity is None:
        return f"d={distance} {match}"
    return f"{match} {similarity:.2f}"


@dataclass(frozen=True, slots=True)
class Member:
    """A group member: its hash distance (bits) to the group's representative, how it
    matched (:data:`MATCH_KINDS`) and, when the scan computed embeddings, its cosine
    similarity to the representative."""

    record: ImageRecord
    distance: int
    match: str = "hash"
    similarity: float | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """Images that are duplicates of each other.

    ``kind`` is ``"exact"`` when every member has the same file or pixel digest, else ``"near"``.
    ``representative`` is the member all distances are measured to (in ``"star"`` grouping
    every member is within the threshold of it).
    """

    id: int
    members: tuple[Member, ...]
    representative: str
    kind: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def paths(self) -> list[str]:
        return [m.record.path for m in self.members]

    def __len__(self) -> int:
        return len(self.members)


def positional_constructor(cls: type[Any], fields: tuple[str, ...]) -> Callable[..., Any]:
    """A positional constructor for the frozen slots dataclass ``cls`` (which must have no
    ``__post_init__``): it sets ``fields``, in that order, through their slot descriptors,
    skipping the frozen ``__setattr__`` guard and the keyword ``__init__``.

    Kept for the loops that build one object per file of every scan: walking a tree
    (``FileEntry``) and rebuilding records from the hash cache (``ImageRecord``). A warm
    re-scan of benchmarks' small_tree_20000 takes 8% less CPU with it (0.465 s against
    0.505 s, medians of 10 interleaved runs). The function is generated with one setter call
    per field, as dataclasses generates ``__init__`` (a loop over the setters is half as
    fast); only ``a0..``/``s0..`` names reach the source, never the field names.
    """
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} validates in __post_init__: call it instead")
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    namespace.update((f"s{i}", cls.__dict__[name].__set__) for i, name in enumerate(fields))
    args = ", ".join(f"a{i}" for i in range(len(fields)))
    body = "".join(f"    s{i}(obj, a{i})\n" for i in range(len(fields)))
    exec(f"def build({args}):\n    obj = new(cls)\n{body}    return obj\n", namespace)
    build = namespace["build"]
    build.__doc__ = f"``{cls.__name__}({', '.join(fields)})``, positional."
    return build


#: ``ImageRecord(path=..., ...)`` with every field positional, in field order; equal to it
#: (see :func:`positional_constructor` for why it exists).
make_record: Callable[..., ImageRecord] = positional_constructor(ImageRecord, (
    "path", "size_bytes", "mtime_ns", "width", "height", "format", "hash", "digest",
    "pixel_digest", "source", "aliases", "facts", "embedding"))


def embedding_array(records: Sequence[ImageRecord]) -> Any:
    """The ``embedding`` of every record as one float32 NumPy matrix (one row each, of
    length 1 again after float16 rounding); every record must have one, all of the same
    length."""
    import numpy as np  # here: ``import lookalike`` loads this module and stays light

    if not records:
        return np.zeros((0, 0), dtype=np.float32)
    blob = b"".join([r.embedding for r in records])  # type: ignore[misc]
    vectors = np.frombuffer(blob, dtype="<f2").reshape(len(records), -1).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def embedding_bytes(vector: Any) -> bytes:
    """One L2-normalised vector as :attr:`ImageRecord.embedding` stores it."""
    import numpy as np

    return np.asarray(vector, dtype="<f2").tobytes()
