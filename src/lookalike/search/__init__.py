"""Exact Hamming-distance search over packed perceptual hashes.

Three algorithms, all exact (they return precisely what a brute-force scan returns): the
self-join every scan uses to find all pairs of images within a threshold
(:func:`find_pairs_collapsed`, :func:`find_pairs`; generalised-pigeonhole block tables, in
:mod:`~lookalike.search.join`); its two-set form, which a re-scan uses for its few new
hashes against the others (:func:`find_pairs_between`, :mod:`~lookalike.search.between`);
and :class:`HammingIndex`, the multi-index hashing index that answers "which stored hashes
are near these new ones" for ``lookalike query`` (:mod:`~lookalike.search.mih`). Hashes are
packed into ``uint64`` words by :func:`pack_hashes` (:mod:`~lookalike.search.codes`), where
:class:`SearchTuning` holds every speed knob of all three; no knob changes a result.

Embeddings are searched by cosine similarity instead (:mod:`~lookalike.search.vectors`:
:func:`similar_pairs`, with FAISS; :class:`VectorTuning`).
"""

from lookalike.search.between import find_pairs_between as find_pairs_between
from lookalike.search.codes import SearchTuning as SearchTuning
from lookalike.search.codes import pack_hashes as pack_hashes
from lookalike.search.join import CollapsedPairs as CollapsedPairs
from lookalike.search.join import find_pairs as find_pairs
from lookalike.search.join import find_pairs_collapsed as find_pairs_collapsed
from lookalike.search.mih import HammingIndex as HammingIndex
from lookalike.search.vectors import VectorTuning as VectorTuning
from lookalike.search.vectors import similar_pairs as similar_pairs

__all__ = [
    "CollapsedPairs",
    "HammingIndex",
    "SearchTuning",
    "VectorTuning",
    "find_pairs",
    "find_pairs_between",
    "find_pairs_collapsed",
    "pack_hashes",
    "similar_pairs",
]
