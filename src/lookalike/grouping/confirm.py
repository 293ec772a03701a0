"""Confirmation: exact hashes for every fast-decoded image that may have a match.

Fast mode decodes large JPEGs (shorter side >= 1024 px) at 1/4 or 1/8 scale in the DCT
domain (see :mod:`lookalike.imaging.decode`). That moves hashes a little away from full
decoding, and the default ``dhash-z`` amplifies small pixel changes in flat or low-contrast
pictures: on the accuracy benchmark's 71 reduced JPEGs, a 256-bit ``dhash-z`` moves by 4.6
bits on average and at most 52. Left alone, that drift splits groups that full decoding finds.

So a fast scan does not trust a reduced image's hash near a decision. After hashing, every
image that *may* have been reduced and has any other image within ``threshold +``
:func:`margin` bits (fast hashes) is hashed again with full decoding, and grouping uses
those exact hashes. Images of other formats are never reduced, so their fast hash already is
the exact one. Images with no neighbour within the widened radius keep their fast hash:
drift would have to exceed the margin for them to matter. On the accuracy benchmark (3,679
images, 71 reduced; ``benchmarks/bench_drift.py --set accuracy``) this gives exactly the
groups of a full-decode scan for every method and threshold measured (dhash-z 8 at 0 and 4,
dhash-z 16 at 6 and 10, dhash, phash, ahash, whash): no group split, no true pair lost,
while re-decoding 27-55 images (those with near matches; few in a typical photo library,
most in a folder of bursts). Exact hashes are cached under the full-decode settings, so a
warm re-scan decodes nothing.

This module is pure (no I/O): it picks the images; :mod:`lookalike.pipeline` re-hashes them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

from lookalike.config import FAST_REDUCE_FROM_SIDE, ScanConfig
from lookalike.grouping.edges import Edges
from lookalike.grouping.groups import neighbour_mask
from lookalike.inputs.walk import RAW_SUFFIXES
from lookalike.model import ImageRecord

__all__ = ["REDUCIBLE_FORMATS", "full_config", "margin", "may_be_reduced", "needs_exact_hash"]

#: Formats fast mode decodes at reduced scale (libjpeg DCT scaling); every other format is
#: decoded in full in both modes.
REDUCIBLE_FORMATS = frozenset({"JPEG", "MPO"})

# decode._reduce_for_fast reduces only images with at least this shorter side.
_MIN_REDUCIBLE_SIDE = FAST_REDUCE_FROM_SIDE


def margin(nbits: int) -> int:
    """Extra bits of search radius within which a reduced image's hash is re-checked.

    1/16 of the hash, at least 4 bits (4 of 64, 16 of 256): twice the smallest margin that
    reproduced the full-decode groups exactly on the accuracy benchmark (1/32 did, in a
    simulation; 0 did not), so that rarer, larger drifts are covered too. A wider radius
    costs search time (radius 26 of 256 bits: ~5x radius 10 on random hashes).
    """
    return max(4, nbits // 16)


def may_be_reduced(record: ImageRecord) -> bool:
    """Whether fast mode may have decoded this image at reduced scale (a safe over-estimate:
    a ``True`` for an image decoded in full only costs one needless re-hash). A camera RAW
    is hashed from its JPEG preview, which fast mode reduces as any JPEG (it was left out:
    a fast scan never confirmed a RAW's hash, and a full-decode query missed its own copy);
    its size is the sensor's, at least the preview's."""
    raw = os.path.splitext(record.path)[1].lower() in RAW_SUFFIXES
    return ((record.format in REDUCIBLE_FORMATS or raw)
            and min(record.width, record.height) >= _MIN_REDUCIBLE_SIDE)


def full_config(config: ScanConfig) -> ScanConfig:
    """``config`` with exact (full) decoding: the settings the confirming hashes are made
    (and cached) with. No pixel digest while hashing: a scan computes pixel digests after
    grouping, for the few members that may be pixel-identical (lookalike.pipeline), and on
    a 5 MP photo one costs a third of the full decode (reading out and hashing 15 MB).
    No embedding: the fast picture's (at least FAST_MIN_SIDE on its shorter side, more than
    any model input) stands, and the re-hash costs no model run."""
    return dataclasses.replace(config, decode="full", pixel_digest=False, embed=None,
                               similarity=None, verify=True)


def needs_exact_hash(records: Sequence[ImageRecord], config: ScanConfig,
                     edges_at: Callable[[int], Edges] | None = None) -> list[int]:
    """Indices of ``records`` (fast-mode hashes) to re-hash with full decoding.

    Those that may be reduced and have another record within ``threshold + margin`` bits
    (never more than the hash's bits: no two hashes are further apart). ``edges_at(radius)``
    gives :func:`~lookalike.grouping.edges.record_edges` of ``records`` at that radius
    (default: searched here); it is called only when some image may be reduced. Nothing
    when the scan already decodes in full, or no image may be reduced.
    """
    if config.decode != "fast":
        return []
    # may_be_reduced, inline: this runs over every record of every fast scan, warm ones too.
    formats, side = REDUCIBLE_FORMATS, _MIN_REDUCIBLE_SIDE
    maybe = [i for i, r in enumerate(records)
             if r.format in formats and r.width >= side and r.height >= side]
    if not maybe:
        return []
    nbits = records[maybe[0]].hash.nbits
    radius = min(nbits, config.resolved_threshold + margin(nbits))
    near = neighbour_mask(records, radius, edges_at(radius) if edges_at else None)
    # A reduced picture that looks flat may show structure in full (a small mark on a large
    # white page): it joins nothing by its hash, so it is never "near"; hash it in full.
    return [i for i in maybe if near[i] or records[i].hash.featureless]
