"""Is one picture a geometric edit of another? Align the two, then compare their hashes.

Copy-detection embeddings (:mod:`lookalike.imaging.embed`) also call two photos of one scene
"copies" (a stereo pair, consecutive frames): on the accuracy benchmark such pairs reach
cosine similarity 0.99. A true copy differs from its original by a geometric transform
(crop, padding, a small rotation, a screenshot's frame) and photometric edits, both of
which this module undoes or tolerates:

1. ORB keypoints (OpenCV) of both pictures at :data:`SIDE` pixels, matched with Lowe's
   ratio test, and a similarity transform (rotation, uniform scale, shift) fitted to the
   matches with RANSAC (``cv2.estimateAffinePartial2D``);
2. the larger picture (in the other's scale) warped into the other's frame, both cut to the
   rectangle they share (at least :data:`MIN_SHARED` of each), and hashed with :data:`HASH`
   (our default method, without invariance): the middle of the rectangle, and the whole
   rectangle or it without one side's fifth (a caption bar or banner over one edge);
3. they are the same picture when both hashes are at most :data:`MAX_DISTANCE` bits apart.

A second photo of a scene fits no single transform within a few pixels everywhere, so the
shared rectangles differ in what moved and their hashes disagree. Measured on the accuracy
benchmark's band of embedding matches (benchmarks/accuracy, sscd-distilled, similarity >=
0.6, whole rectangle only): the test kept 64% of true pairs (most others are pairs the
hashes already join) and 5 of 1,500 same-scene pairs (two frames of one video, 1-6 bits
apart even unaligned). Allowing 14 bits instead of 10 joined two frames of another video;
the middle check stopped two chessboard screenshots in one frame from joining; leaving out
a side's strip raised a whole scan's recall from 83% to 88% (captions 64% -> 96%) with the
same false pairs. Pictures with too few keypoints (flat graphics) cannot be aligned: their
embeddings are not trusted alone. (The verified band, whose pairs' hashes already agree
within a few bits, compares such pictures unaligned when they have one shape and one set of
colours: :func:`as_they_stand`.)

A pair whose smaller picture is at most :data:`SMALL_SIDE` pixels on its longer side (an
icon or emoji at another size: hand-drawn again, or in another palette, so their hashes
differ) has no keypoints to align, and no crop to undo either: it is the same picture when
the two, area-averaged to :data:`THUMB` x :data:`THUMB` colour pixels, differ by at most
:data:`MAX_THUMB_DIFF` levels on average and :data:`MAX_THUMB_PEAK` at any thumbnail pixel,
and have the same shape (:func:`same_small_picture`). The peak is what tells pictures apart
(two emoji faces that differ only in their eyes average under 4 levels). Measured (with 320
px embeddings) on the accuracy benchmark's embedding matches at similarity >= 0.45 with such
a smaller picture, new true pairs (not joined by hashes) / false pairs: mean <= 4 alone 476
/ 2; with peak <= 48: mean 4, 459 / 0; mean 5, 563 / 0; mean 6, 626 / 0. The embedding alone
at similarity >= 0.9 joined 71 / 23. Distinct tiny photos are the danger: of 2,000
Fashion-MNIST images (2M pairs, 908k of them at similarity >= 0.45; at today's 256 px and
0.42, 635k) none passes mean 6 and peak 48 (two at peak 56; without a peak limit, one pair
of different trousers passed mean 5). Such a join must also hold across the two hash groups
(:mod:`lookalike.verify`): a false hash match between two flags of three vertical stripes
(alike in grey) otherwise chained three emoji into one group. A whole scan of the benchmark
(``--embed sscd-distilled``): recall 87.8% -> 90.1% with 16 false pairs before and after
(icons at other sizes 29% -> 45%, emoji renderings 16% -> 66%); mean 5 without a peak limit:
90.0% with 53 false pairs; a 128 px limit added 0.03 points.

Needs OpenCV (``opencv-python-headless``, in the ``embed`` extra), imported on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from lookalike.config import import_extra
from lookalike.imaging.decode import Picture

__all__ = ["HASH", "MAX_DISTANCE", "SIDE", "SMALL_SIDE", "Features", "align", "aligned_distance",
           "as_they_stand", "features", "same_small_picture", "shared_distance", "signs_agree",
           "small_pair"]

#: Version of the rules below (part of the key verdicts are cached under): bump it when a
#: verdict could change.
VERIFY_VERSION = 4
#: Longer side, in pixels, at which keypoints are found and pictures compared.
SIDE = 512
#: The hash (method, size) the aligned pictures are compared with.
HASH = ("dhash-z", 16)
#: Most bits the aligned pictures' hashes may differ by (of 256); chosen on the benchmark.
MAX_DISTANCE = 10
#: ORB keypoints per picture: matching costs grow with their square. 300 cost 27% less
#: verification time on the benchmark but found 8% fewer captions and screenshots.
FEATURES = 500
#: Fewest keypoint matches a transform must explain (RANSAC inliers).
MIN_INLIERS = 15
_RATIO = 0.8  # Lowe's ratio test
_MIN_FEATURE_SIDE = 32  # ORB's patch size: thinner pictures have no keypoints
_REPROJECTION_PX = 3.0  # RANSAC inlier distance at SIDE pixels
_COVERED = 0.98  # share of a row/column of the shared rectangle the warped picture must fill
#: Smallest share of each picture the shared rectangle must cover: a match of small parts
#: (two flat corners, one logo) says nothing about the pictures.
MIN_SHARED = 0.25
#: Pairs whose smaller picture's longer side is at most this (pixels) are compared as colour
#: thumbnails of THUMB x THUMB: at most MAX_THUMB_DIFF levels apart on average, no thumbnail
#: pixel more than MAX_THUMB_PEAK apart (two emoji faces differ in their eyes only), and
#: shapes within MAX_ASPECT_RATIO of each other (thumbnails are squashed to squares).
SMALL_SIDE = 64
THUMB = 16
MAX_THUMB_DIFF = 6.0
MAX_THUMB_PEAK = 48.0
MAX_ASPECT_RATIO = 1.1
#: :func:`as_they_stand`: most two pictures' shapes (width / height) may differ by, and most
#: their colour thumbnails' chromaticities may differ by on average (of 2: 0 alike, 2 two
#: pure primaries). On the accuracy benchmark's band pairs that keypoints could not align,
#: true pairs (one photo, edited) differed by at most 0.003 except a sky texture and its
#: re-tinted copy (0.46); the only false pair whose cells agreed, a wood texture and its red
#: channel alone, by 1.04.
SAME_SHAPE = 1.02
MAX_CHROMA_DIFF = 0.1


def _cv2() -> Any:
    return import_extra("cv2", "verifying embedding matches", "embed")


@dataclass(frozen=True, slots=True, eq=False)
class Features:
    """A picture's grey pixels at :data:`SIDE` and its ORB keypoints; its longer side (of
    the original) and its colour thumbnail, for :func:`same_small_picture`."""

    grey: np.ndarray
    points: np.ndarray  # (n, 2) float32
    descriptors: np.ndarray | None  # (n, 32) uint8
    side: int = 0
    aspect: float = 1.0  # width / height of the original
    thumb: np.ndarray | None = None  # (THUMB, THUMB, 3) float32


def features(pic: Picture) -> Features:
    """The :class:`Features` of ``pic`` (computed once per picture a verification needs)."""
    cv2 = _cv2()
    side, aspect = max(pic.full_size), pic.full_size[0] / max(1, pic.full_size[1])
    thumb = _thumbnail(pic.image)
    grey = np.asarray(pic.grey_image())
    scale = SIDE / max(grey.shape)
    if scale < 1:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    none = Features(np.ascontiguousarray(grey), np.zeros((0, 2), np.float32), None, side,
                    aspect, thumb)
    if min(grey.shape) < _MIN_FEATURE_SIDE:  # a sliver: ORB cannot look at it
        return none
    try:
        keypoints, descriptors = cv2.ORB_create(nfeatures=FEATURES).detectAndCompute(grey, None)
    except cv2.error:  # OpenCV refuses an odd picture: it cannot be verified
        return none
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    return Features(np.ascontiguousarray(grey), points, descriptors, side, aspect, thumb)


def _thumbnail(img: Image.Image) -> np.ndarray:
    """THUMB x THUMB colour pixels, area-averaged (a large picture is box-reduced by an
    integer factor first: a 12 MP one took 35 ms otherwise)."""
    factor = min(img.size) // (8 * THUMB)
    if factor >= 2:
        img = img.reduce(factor)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img.resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.float32)


def small_pair(side: int, other_side: int) -> bool:
    """Whether two pictures of these longer sides (pixels) are compared by thumbnails
    (:func:`same_small_picture`): the smaller is at most :data:`SMALL_SIDE`."""
    return min(side, other_side) <= SMALL_SIDE


def same_small_picture(a: Features, b: Features) -> bool | None:
    """Whether ``a`` and ``b`` are one picture by their colour thumbnails, when the smaller
    is at most :data:`SMALL_SIDE` pixels on its longer side; None for larger pairs (they are
    aligned instead: :func:`aligned_distance`)."""
    if not small_pair(a.side, b.side) or a.thumb is None or b.thumb is None:
        return None
    if max(a.aspect, b.aspect) > MAX_ASPECT_RATIO * min(a.aspect, b.aspect):
        return False
    diff = np.abs(a.thumb - b.thumb).mean(axis=2)
    return float(diff.mean()) <= MAX_THUMB_DIFF and float(diff.max()) <= MAX_THUMB_PEAK


def aligned_distance(a: Features, b: Features) -> int | None:
    """Bits between the :data:`HASH` of ``a`` and of ``b`` aligned onto ``a`` (over the
    rectangle they share); None when no transform aligns them."""
    shared = align(a, b)
    return None if shared is None else shared_distance(*shared)


def align(a: Features, b: Features) -> tuple[np.ndarray, np.ndarray] | None:
    """The two pictures' grey pixels over the rectangle they share, the larger picture
    warped onto the smaller (at least :data:`MIN_SHARED` of each); None when no transform
    aligns them."""
    cv2 = _cv2()
    if (a.descriptors is None or b.descriptors is None or len(a.points) < MIN_INLIERS
            or len(b.points) < MIN_INLIERS):
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(b.descriptors, a.descriptors, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < _RATIO * m[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    src = b.points[[m.queryIdx for m in good]]
    dst = a.points[[m.trainIdx for m in good]]
    transform, inliers = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=_REPROJECTION_PX)
    if transform is None or int(inliers.sum()) < MIN_INLIERS:
        return None
    scale_sq = abs(float(np.linalg.det(transform[:, :2])))  # b's pixels -> a's pixels
    if scale_sq < 1e-6:
        return None
    if scale_sq > 1:
        # Warp the larger onto the smaller: enlarging would blur one side only.
        a, b, transform = b, a, cv2.invertAffineTransform(transform)
        scale_sq = 1 / scale_sq
    height, width = a.grey.shape
    warped = cv2.warpAffine(b.grey, transform, (width, height), flags=cv2.INTER_LINEAR)
    covered = cv2.warpAffine(np.full_like(b.grey, 255), transform, (width, height),
                             flags=cv2.INTER_NEAREST) > 0
    box = _shared_box(covered)
    if box is None:
        return None
    area = (box[1] - box[0]) * (box[3] - box[2])
    if area < MIN_SHARED * a.grey.size or area / scale_sq < MIN_SHARED * b.grey.size:
        return None
    y0, y1, x0, x1 = box
    return a.grey[y0:y1, x0:x1], warped[y0:y1, x0:x1]


def as_they_stand(a: Features, b: Features) -> tuple[np.ndarray, np.ndarray] | None:
    """The two grey pictures at one size (the smaller's), not aligned, when one of them has
    too few keypoints to align (under :data:`MIN_INLIERS`) and they have the same shape
    and the same colours (thumbnails' chromaticities within :data:`MAX_CHROMA_DIFF`); else
    None. For pictures too blurred or flat for keypoints: a motion-blurred photo has 10 ORB
    keypoints, its JPEG copy one. Two pictures with plenty of keypoints that no transform
    explains differ (two slides with different titles over one blurred photo). A tone
    change keeps colours; a re-tinted picture keeps the order of its cells
    (:func:`signs_agree`), not its colours. Never slivers (under 32 pixels across at
    :data:`SIDE`): their cells are a few pixels stretched. Unaligned, their whole-picture
    hashes differ by the band's own distance again: only :func:`signs_agree` may judge
    them."""
    if (min(len(a.points), len(b.points)) >= MIN_INLIERS
            or max(a.aspect, b.aspect) > SAME_SHAPE * min(a.aspect, b.aspect)
            or min(*a.grey.shape, *b.grey.shape) < _MIN_FEATURE_SIDE):
        return None
    if a.thumb is None or b.thumb is None or _chroma_diff(a.thumb, b.thumb) > MAX_CHROMA_DIFF:
        return None
    if a.grey.size > b.grey.size:
        a, b = b, a
    cv2 = _cv2()
    height, width = a.grey.shape
    return a.grey, cv2.resize(b.grey, (width, height), interpolation=cv2.INTER_AREA)


def _chroma_diff(one: np.ndarray, other: np.ndarray) -> float:
    """Mean difference of two colour thumbnails' chromaticities (each pixel's channels over
    their sum, or over 24 levels where darker: near-black pixels, whose hue is noise, come
    out alike)."""

    def chroma(t: np.ndarray) -> np.ndarray:
        return t / np.maximum(t.sum(axis=2, keepdims=True), 24.0)

    return float(np.abs(chroma(one) - chroma(other)).sum(axis=2).mean())


def shared_distance(one: np.ndarray, other: np.ndarray, strips: bool = True) -> int:
    """Bits between the :data:`HASH` of two aligned grey pictures (:func:`align`): the
    larger of their middles' distance and their whole rectangles' (or, with ``strips``,
    without one side's fifth: a caption bar or banner over one edge of an embedding match;
    the verified band does not allow it, so a signature, stamp or total added at a
    document's foot keeps its pages apart)."""
    from lookalike.imaging.hashes import get_method

    method, size = get_method(HASH[0]), HASH[1]

    def distance(y0: int, y1: int, x0: int, x1: int) -> int:
        a, b = (Picture(Image.fromarray(np.ascontiguousarray(p[y0:y1, x0:x1])))
                for p in (one, other))
        return method.hash(a, size, "none", False) - method.hash(b, size, "none", False)

    # The middle of the shared rectangle must match: two screenshots of different pictures
    # in one window frame align on the frame, and their whole rectangles hash alike. Then
    # the whole rectangle, or it without one side's strip: a caption bar or a banner covers
    # one edge of a copy.
    y0, y1, x0, x1 = 0, one.shape[0], 0, one.shape[1]
    dy, dx = (y1 - y0) // 4, (x1 - x0) // 4
    middle = distance(y0 + dy, y1 - dy, x0 + dx, x1 - dx)
    if middle > MAX_DISTANCE:
        return middle
    sy, sx = (y1 - y0) // 5, (x1 - x0) // 5
    outer = distance(y0, y1, x0, x1)
    for rect in ((y0 + sy, y1, x0, x1), (y0, y1 - sy, x0, x1), (y0, y1, x0 + sx, x1),
                 (y0, y1, x0, x1 - sx)):
        if outer <= MAX_DISTANCE or not strips:
            break
        outer = min(outer, distance(*rect))
    return max(middle, outer)


#: The grid of :func:`signs_agree`: cells of 8 x 8 pixels, as dhash-z's 16 x 17.
SIGN_GRID = (16, 17)
#: Fewest neighbouring cell pairs :func:`signs_agree` must be able to compare.
MIN_SIGNS = 64
#: Neighbouring cells at most this many grey levels apart (in either picture) are not
#: compared by :func:`signs_agree`: JPEG noise and alignment's resampling swap such orders.
#: Brightened photos aligned to their copies disagreed on 1-3 of 150-230 pairs, each within
#: 1-3.3 levels. On the accuracy benchmark (whole scan), 1 level: 14,517 true pairs, 12
#: false; 2: 14,672 and 12 (captions 19% -> 29%); 3 added a false pair. Anything drawn over
#: a flat area is not seen (a caption bar, a stamp, a watermark: copies, by the benchmark's
#: ground truth and this tool's).
LEVEL = 2


def signs_agree(one: np.ndarray, other: np.ndarray) -> bool:
    """Whether two aligned grey pictures (:func:`align`) agree on which of every two
    neighbouring cells is brighter, wherever both can tell: a tone change (brightness,
    contrast, gamma: any increasing map of grey levels) keeps every such order, except where
    it clips a cell to black or white, or leaves two cells level. So cells more than half
    clipped (<= 5 or >= 250) and pairs within :data:`LEVEL` grey levels are left out; at
    least :data:`MIN_SIGNS` pairs must remain, and all of them agree. The verified band's third
    test (:mod:`lookalike.verify`): a brightened photo's clipped highlights change the bits
    dhash-z compares, not the order of the cells that remain."""
    cv2 = _cv2()
    rows, cols = SIGN_GRID

    def cells(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        small = cv2.resize(grey, (cols * 8, rows * 8), interpolation=cv2.INTER_AREA)
        blocks = small.astype(np.float64).reshape(rows, 8, cols, 8)
        clipped = ((blocks >= 250) | (blocks <= 5)).mean(axis=(1, 3))
        return blocks.mean(axis=(1, 3)), clipped < 0.5

    (m1, ok1), (m2, ok2) = cells(one), cells(other)
    d1, d2 = np.diff(m1, axis=1), np.diff(m2, axis=1)
    usable = (ok1[:, 1:] & ok1[:, :-1] & ok2[:, 1:] & ok2[:, :-1]
              & (np.abs(d1) > LEVEL) & (np.abs(d2) > LEVEL))
    return int(usable.sum()) >= MIN_SIGNS and not np.any(((d1 > 0) != (d2 > 0)) & usable)


def _shared_box(covered: np.ndarray, smallest: int = 32) -> tuple[int, int, int, int] | None:
    """A large rectangle (y0, y1, x0, x1) that ``covered`` fills (a rotated copy's corners
    are cut off): its bounding box, shrunk from the side that is least covered, 1% at a
    time, until :data:`_COVERED` of it is covered. None if under ``smallest`` pixels."""
    ys, xs = np.flatnonzero(covered.any(axis=1)), np.flatnonzero(covered.any(axis=0))
    if len(ys) == 0:
        return None
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    while y1 - y0 >= smallest and x1 - x0 >= smallest:
        box = covered[y0:y1, x0:x1]
        if box.mean() >= _COVERED:
            return y0, y1, x0, x1
        step_y, step_x = max(1, (y1 - y0) // 100), max(1, (x1 - x0) // 100)
        edges = (box[0].mean(), box[-1].mean(), box[:, 0].mean(), box[:, -1].mean())
        side = int(np.argmin(edges))
        if side == 0:
            y0 += step_y
        elif side == 1:
            y1 -= step_y
        elif side == 2:
            x0 += step_x
        else:
            x1 -= step_x
    return None
