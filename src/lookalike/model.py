"""Plain value types shared by every stage. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Group", "Hash", "ImageRecord", "Member"]


@dataclass(frozen=True, slots=True)
class Hash:
    """A perceptual hash: one or more segments of ``nbits`` bits each.

    Bits are ordered row-major exactly as ImageHash orders them, and the segment value is the
    integer those bits spell (first bit most significant), so ``str(h)`` equals
    ``str(imagehash_value)``. Crop-resistant hashes have several segments, joined with ``,``
    as ``ImageMultiHash`` prints them; every other method has one.

    ``a - b`` is the Hamming distance in bits (for multi-segment hashes: the smallest distance
    between any segment of ``a`` and any segment of ``b``, i.e. the best-matching region).
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

    def __str__(self) -> str:
        width = (self.nbits + 3) // 4
        return ",".join(format(s, f"0{width}x") for s in self.segments)

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
        return min((a ^ b).bit_count() for a in self.segments for b in other.segments)

    @classmethod
    def from_hex(cls, text: str, *, method: str, nbits: int) -> Hash:
        """Parse ``str(h)`` (or an ImageHash hex string) back into a :class:`Hash`."""
        try:
            segments = tuple(int(part, 16) for part in text.split(","))
        except ValueError:
            raise ValueError(f"not a hex hash string: {text!r}") from None
        return cls(method, nbits, segments)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRecord:
    """What the scan learned about one readable image.

    ``width``/``height`` are after EXIF orientation. ``digest`` is the SHA-256 of the file's
    bytes; ``pixel_digest`` (when computed) the SHA-256 of its decoded RGB pixels.
    """

    path: str
    size_bytes: int
    mtime_ns: int
    width: int
    height: int
    format: str | None
    hash: Hash
    digest: str
    pixel_digest: str | None = None
    source: str = ""

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True, slots=True)
class Member:
    """A group member and its hash distance (bits) to the group's representative."""

    record: ImageRecord
    distance: int


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
