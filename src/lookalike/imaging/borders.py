"""Find uniform borders: padding, letterbox and pillarbox bars, scanner margins.

A padded copy of a photo hashes like a different picture (its content is squeezed into the
middle of the grid). :func:`content_box` finds the box inside flat bars on any side, so a
hash can also be taken of the content alone (see ``trim`` of
:meth:`lookalike.imaging.hashes.HashMethod.hash`). Written here rather than taken from a
library: Pillow's ``ImageChops``/``getbbox`` trims exactly one background colour, which JPEG
ringing and noise at the bars' edge defeat; this tolerates both.
"""

from __future__ import annotations

import numpy as np

__all__ = ["content_box"]

#: A line (row or column) belongs to a bar when this share of its pixels is within
#: ``TOLERANCE`` grey levels of the bar's colour (the outermost line's median).
#: 0.98 and 10 hold through JPEG q30 ringing and sigma-8 noise on benchmarks/accuracy
#: (pad_10 copies: 99% found) without eating into photos' content.
SHARE = 0.98
TOLERANCE = 10
#: Bars thinner than this share of the side are ignored (a 1-pixel frame is not padding,
#: and trimming it would only add segments); the content must keep this share of each side.
MIN_BAR = 0.02
MIN_CONTENT = 0.3


def _bar(lines: np.ndarray) -> int:
    """How many leading lines of ``lines`` (rows of a 2-D uint8 array) are one flat colour."""
    first = lines[0].astype(np.int16)
    colour = int(np.sort(first)[len(first) // 2])  # the median, without np.median's overhead
    need = SHARE * len(first)
    if np.count_nonzero(np.abs(first - colour) <= TOLERANCE) < need:
        return 0  # the common case, a photo: one line looked at
    flat = np.count_nonzero(np.abs(lines.astype(np.int16) - colour) <= TOLERANCE, axis=1) >= need
    return len(flat) if flat.all() else int(np.argmin(flat))


def content_box(grey: np.ndarray) -> tuple[int, int, int, int] | None:
    """The ``(left, top, right, bottom)`` box inside flat bars of the 2-D grey array
    ``grey``, or ``None`` when it has no bar worth trimming (or is flat all over)."""
    h, w = grey.shape
    top, bottom = _bar(grey), _bar(grey[::-1])
    left, right = _bar(grey.T), _bar(grey.T[::-1])
    top, bottom = (n if n >= MIN_BAR * h else 0 for n in (top, bottom))
    left, right = (n if n >= MIN_BAR * w else 0 for n in (left, right))
    if not top + bottom + left + right:
        return None
    if h - top - bottom < MIN_CONTENT * h or w - left - right < MIN_CONTENT * w:
        return None  # mostly flat: a logo on a plain ground, a blank page; hash it whole
    return left, top, w - right, h - bottom
