"""Which images match by their copy-detection embeddings (``ScanConfig.embed``).

Hashes find photometric edits; embeddings (:mod:`lookalike.imaging.embed`) also find the
geometric ones: crops, padding, small rotations, screenshots. But embeddings also call two
photos of one scene copies (a stereo pair, two frames of a video reach cosine similarity
0.99 on the accuracy benchmark), so a pair they propose joins a group only once verified
(:mod:`lookalike.imaging.align`), unless the user turns verification off.

:func:`embedding_links` lists the proposals: every pair whose cosine similarity reaches the
threshold (:func:`lookalike.search.vectors.similar_pairs`). :func:`to_verify` orders the
work: hashes already tie most copies together, so only pairs that would join two different
hash groups matter, and one verified pair joins them; the best few of each are tried.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from lookalike.model import ImageRecord, embedding_array

__all__ = ["NEIGHBOURS", "TRIES", "embedding_links", "to_verify"]

#: Pairs tried, most similar first, before two hash groups are left apart.
TRIES = 3
#: Nearest neighbours each image proposes (above the similarity): verification needs one
#: good pair between two hash groups, not every pair, and the search's memory then stays
#: ``NEIGHBOURS`` pairs per image however dense the embeddings (at similarity 0.45, the
#: default before 0.42, with no such limit, 1M synthetic embeddings ran out of 23 GB).
NEIGHBOURS = 64


def embedding_links(records: Sequence[ImageRecord], similarity: float
                    ) -> dict[tuple[int, int], float]:
    """Pairs of indices (i < j) into ``records`` whose embeddings' cosine similarity
    reaches ``similarity``, with it: each record's :data:`NEIGHBOURS` nearest. Records without
    an embedding match nothing here."""
    from lookalike.search.vectors import similar_pairs

    have = [i for i, r in enumerate(records) if r.embedding is not None]
    if len(have) < 2:
        return {}
    ii, jj, sims = similar_pairs(embedding_array([records[i] for i in have]), similarity,
                                 k=NEIGHBOURS, max_k=NEIGHBOURS)
    return {(have[a], have[b]): round(s, 3)
            for a, b, s in zip(ii.tolist(), jj.tolist(), sims.tolist(), strict=True)}


def to_verify(pairs: dict[tuple[int, int], float], part_of: Sequence[int],
              tries: int = TRIES) -> list[list[tuple[int, int]]]:
    """For each two parts (``part_of[i]``: record i's hash group, or its own number when it
    has none) that some pair of ``pairs`` joins: the ``tries`` most similar such pairs, best
    first (ties by index). Pairs within one part are left out: hashes joined them."""
    between: dict[tuple[int, int], list[tuple[float, tuple[int, int]]]] = defaultdict(list)
    for (i, j), sim in pairs.items():
        a, b = part_of[i], part_of[j]
        if a != b:
            between[(min(a, b), max(a, b))].append((-sim, (i, j)))
    return [[pair for _, pair in sorted(found)[:tries]]
            for _, found in sorted(between.items())]
