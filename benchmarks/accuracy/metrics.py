"""Exact pairwise evaluation: every pair of images, every threshold.

A pair is positive when both images show the same picture (same ``group``, or identical
decoded pixels), negative otherwise; hard negatives (same scene, other emoji vendor, skin
tone) are counted apart and left out of precision. A pair is predicted a match when the
hash distance is at most the threshold; for multi-segment hashes (crop-resistant,
flip/rotation invariance) the distance is the smallest over all segment pairs, as
:meth:`lookalike.model.Hash.__sub__` computes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BLOCK = 192  # scales the rows per block of the distance matrix (~25 MB buffers)


def to_words(values: Sequence[int], nbits: int) -> np.ndarray:
    """Integers of ``nbits`` bits -> (n, words) uint64, most significant word first."""
    words = (nbits + 63) // 64
    out = np.zeros((len(values), words), dtype=np.uint64)
    mask = (1 << 64) - 1
    for i, v in enumerate(values):
        for w in range(words):
            out[i, words - 1 - w] = (v >> (64 * w)) & mask
    return out


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, W) x (m, W) uint64 -> (n, m) uint16 Hamming distances.

    One 64-bit word at a time into preallocated buffers: about 6x faster than XOR-ing the
    (n, m, W) block and summing its short last axis.
    """
    n, m = a.shape[0], b.shape[0]
    out = np.zeros((n, m), dtype=np.uint16)
    cols_a = [np.ascontiguousarray(a[:, w]) for w in range(a.shape[1])]
    cols_b = [np.ascontiguousarray(b[:, w]) for w in range(b.shape[1])]
    rows = max(1, BLOCK * 4_000 // max(m, 1))
    xor = np.empty((min(rows, n), m), dtype=np.uint64)
    count = np.empty((min(rows, n), m), dtype=np.uint8)
    for s in range(0, n, rows):
        e = min(n, s + rows)
        k = e - s
        for ca, cb in zip(cols_a, cols_b, strict=True):
            np.bitwise_xor(ca[s:e, None], cb[None, :], out=xor[:k])
            np.bitwise_count(xor[:k], out=count[:k])
            out[s:e] += count[:k]
    return out


def min_distance_matrix(segments: Sequence[Sequence[int]], nbits: int) -> np.ndarray:
    """(n, n) matrix of the smallest distance between any segment of i and any of j."""
    n = len(segments)
    counts = {len(s) for s in segments}
    if len(counts) == 1:
        k = counts.pop()
        cols = [to_words([s[a] for s in segments], nbits) for a in range(k)]
        best = _dist(cols[0], cols[0])
        for a in range(k):
            for b in range(a, k):
                if a == b == 0:
                    continue
                m = _dist(cols[a], cols[b])
                np.minimum(best, m, out=best)
                if a != b:
                    np.minimum(best, m.T, out=best)
        return best
    # Variable segment counts (crop-resistant): all segment pairs, reduced per owner.
    flat = [v for s in segments for v in s]
    starts = np.cumsum([0] + [len(s) for s in segments[:-1]])
    codes = to_words(flat, nbits)
    owner = np.repeat(np.arange(n), [len(s) for s in segments])
    best = np.empty((n, n), dtype=np.uint16)
    for i0 in range(0, n, 64):
        i1 = min(n, i0 + 64)
        rows = np.flatnonzero((owner >= i0) & (owner < i1))
        d = _dist(codes[rows], codes)
        per_col = np.minimum.reduceat(d, starts, axis=1)  # (rows, n)
        row_starts = starts[i0:i1] - starts[i0]
        best[i0:i1] = np.minimum.reduceat(per_col, row_starts, axis=0)
    return best


@dataclass
class Truth:
    """Ground truth over the upper triangle of the pair matrix.

    ``hard`` marks hard negatives (same scene, other vendor, skin tone): different pictures
    that are reported on their own and left out of the precision.
    """

    iu: tuple[np.ndarray, np.ndarray]
    positive: np.ndarray  # bool per pair
    hard: np.ndarray  # bool per pair
    n_pos: int
    n_neg: int  # ordinary negatives: neither positive nor hard


def make_truth(groups: Sequence[str], hard_keys: Sequence[str | None] | None = None) -> Truth:
    g = np.unique(np.asarray(groups), return_inverse=True)[1]
    iu = np.triu_indices(len(groups), 1)
    pos = g[iu[0]] == g[iu[1]]
    hard = np.zeros_like(pos)
    if hard_keys is not None:
        keys = ["" if k is None else k for k in hard_keys]
        h = np.unique(np.asarray(keys), return_inverse=True)[1]
        has = np.asarray([k != "" for k in keys])
        hard = (h[iu[0]] == h[iu[1]]) & has[iu[0]] & ~pos
    return Truth(iu, pos, hard, int(pos.sum()), int((~pos & ~hard).sum()))


def curve(dist: np.ndarray, truth: Truth, nbits: int) -> dict[str, np.ndarray]:
    """TP, FP, precision, recall and F1 at every threshold 0..nbits (FP: ordinary negatives)."""
    d = dist[truth.iu]
    tp = np.cumsum(np.bincount(d[truth.positive], minlength=nbits + 1))[: nbits + 1]
    fp = np.cumsum(np.bincount(d[~truth.positive & ~truth.hard],
                               minlength=nbits + 1))[: nbits + 1]
    predicted = tp + fp
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 1.0)
    recall = tp / max(truth.n_pos, 1)
    f1 = np.where(precision + recall > 0,
                  2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return {"tp": tp, "fp": fp, "precision": precision, "recall": recall, "f1": f1}


def hard_matched(dist: np.ndarray, truth: Truth, threshold: int | None, kind_of: Any
                 ) -> dict[str, list[int]]:
    """Per kind of hard negative: [pairs within threshold, pairs in all]."""
    idx = np.flatnonzero(truth.hard)
    d = dist[truth.iu[0][idx], truth.iu[1][idx]]
    out: dict[str, list[int]] = {}
    for k, dd in zip(idx.tolist(), d.tolist(), strict=True):
        kind = kind_of(int(truth.iu[0][k]), int(truth.iu[1][k]))
        entry = out.setdefault(kind, [0, 0])
        entry[1] += 1
        entry[0] += threshold is not None and dd <= threshold
    return out


def at_precision(c: dict[str, np.ndarray], target: float) -> dict[str, Any]:
    """The threshold with the best recall among those with precision >= target."""
    ok = np.flatnonzero(c["precision"] >= target - 1e-12)
    if ok.size == 0:
        return {"threshold": None, "recall": 0.0, "precision": None, "fp": None}
    t = int(ok[np.argmax(c["recall"][ok])])
    return {"threshold": t, "recall": float(c["recall"][t]),
            "precision": float(c["precision"][t]), "fp": int(c["fp"][t])}


def best_f1(c: dict[str, np.ndarray]) -> dict[str, Any]:
    t = int(np.argmax(c["f1"]))
    return {"threshold": t, "f1": float(c["f1"][t]), "precision": float(c["precision"][t]),
            "recall": float(c["recall"][t])}


def variant_recall(dist: np.ndarray, threshold: int | None,
                   pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float | None]:
    """Per named set of positive pairs (a transform, icon sizes...), recall at threshold
    (``None`` when there is no threshold: the precision target is never reached)."""
    out: dict[str, float | None] = {}
    for name, (i, j) in pairs.items():
        if threshold is None or i.size == 0:
            out[name] = None
        else:
            out[name] = float((dist[i, j] <= threshold).mean())
    return out


def false_pairs(dist: np.ndarray, truth: Truth, threshold: int | None,
                kind_of: Any, limit: int = 12) -> tuple[dict[str, int], list[tuple[int, int, int]]]:
    """Kinds of the (ordinary) negative pairs within threshold, and the closest few."""
    if threshold is None:
        return {}, []
    d = dist[truth.iu]
    hit = np.flatnonzero(~truth.positive & ~truth.hard & (d <= threshold))
    kinds = Counter(kind_of(int(truth.iu[0][h]), int(truth.iu[1][h])) for h in hit)
    order = hit[np.argsort(d[hit], kind="stable")][:limit]
    examples = [(int(truth.iu[0][h]), int(truth.iu[1][h]), int(d[h])) for h in order]
    return dict(kinds.most_common()), examples


def group_distance(groups: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """A tool's reported groups as an (n, n) 0/1 "distance": 0 for every pair of members of
    one group (all pairs within a group are matches, as a user deletes them), 1 otherwise.
    Threshold 0 then reads the tool's own operating point through the functions above."""
    dist = np.ones((n, n), dtype=np.uint16)
    for g in groups:
        idx = np.asarray(sorted(set(g)), dtype=np.intp)
        dist[np.ix_(idx, idx)] = 0
    return dist


def operating_point(dist: np.ndarray, truth: Truth, threshold: int, kind_of: Any,
                    pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Precision, recall, false pairs (by kind), hard negatives matched and recall per
    named set, at one threshold (a tool's default)."""
    d = dist[truth.iu] <= threshold
    tp = int((d & truth.positive).sum())
    fp = int((d & ~truth.positive & ~truth.hard).sum())
    kinds, _ = false_pairs(dist, truth, threshold, kind_of, limit=0)
    return {"threshold": threshold, "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / max(truth.n_pos, 1), "tp": tp, "fp": fp,
            "false_pairs_by_kind": kinds,
            "hard_negatives_matched": hard_matched(dist, truth, threshold, kind_of),
            "recall_by_variant": variant_recall(dist, threshold, pairs)}
