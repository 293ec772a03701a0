"""Cosine pair search (lookalike.search.vectors) against NumPy brute force."""

from __future__ import annotations

import numpy as np
import pytest

from bench_vectors import exact_pairs, make_embeddings
from lookalike.search.vectors import VectorTuning, similar_pairs

faiss = pytest.importorskip("faiss")  # the "embed" extra

# An approximate index that really is approximate on a few thousand rows: 2 of ~90 lists scanned.
APPROX = VectorTuning(exact_below=100, list_size=32, nprobe=2)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    """3000 clustered 64-d rows, 5% noisy copies (cosine 0.8-0.98), identical-row groups."""
    return make_embeddings(3000, dim=64, duplicates=(20, 50))[0]


def pair_set(pairs) -> set[tuple[int, int]]:
    return set(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))


def check_shape(pairs, n: int) -> None:
    i, j, sims = pairs
    assert i.dtype == j.dtype == np.int64 and sims.dtype == np.float32
    key = i * n + j
    assert np.all(np.diff(key) > 0), "sorted by (i, j), each pair once"


@pytest.mark.parametrize("threshold", [0.75, 0.4])
def test_exact_path_equals_brute_force(data, threshold):
    found = similar_pairs(data, threshold)
    truth = exact_pairs(data, threshold)
    check_shape(found, len(data))
    assert np.all(found[0] < found[1])
    assert pair_set(found) == pair_set(truth)
    assert len(truth[0]) > 1225 + 190  # more than the identical groups: planted copies too
    order = np.lexsort((truth[1], truth[0]))
    np.testing.assert_allclose(found[2], truth[2][order], atol=1e-5)


def test_approximate_path_recall(data):
    truth = pair_set(exact_pairs(data, 0.75))
    found = similar_pairs(data, 0.75, tuning=APPROX)
    check_shape(found, len(data))
    got = pair_set(found)
    assert got <= truth  # similarities are exact inner products: no false pairs
    assert len(got & truth) / len(truth) >= 0.99


def test_approximate_path_scanning_every_list_is_exact(data):
    exhaustive = VectorTuning(exact_below=100, list_size=32, nprobe=10_000)
    assert pair_set(similar_pairs(data, 0.6, tuning=exhaustive)) == pair_set(
        exact_pairs(data, 0.6))


def test_approximate_path_is_deterministic(data):
    first = similar_pairs(data, 0.5, tuning=APPROX)
    assert pair_set(first) < pair_set(exact_pairs(data, 0.5))  # approximate: some missed
    threads = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(1)
        single = similar_pairs(data, 0.5, tuning=APPROX)
    finally:
        faiss.omp_set_num_threads(threads)
    again = similar_pairs(data, 0.5, tuning=APPROX)
    for a, b, c in zip(first, again, single, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("tuning", [VectorTuning(), APPROX], ids=["exact", "approximate"])
def test_group_larger_than_k_keeps_every_pair(tuning):
    x = make_embeddings(2000, dim=32, duplicates=())[0]
    rows = np.arange(100, 2000, 38)[:50]  # 50 rows spread over the set
    x[rows] = x[7]
    i, j, sims = similar_pairs(x, 0.99, k=16, tuning=tuning)
    inside = np.isin(i, rows) & np.isin(j, rows)
    assert inside.sum() == 50 * 49 // 2 == 1225
    assert np.all(sims[inside] > 0.9999)


def test_groups_beyond_max_k_warn():
    x = np.tile(np.eye(1, 8, dtype=np.float32), (30, 1))
    with pytest.warns(RuntimeWarning, match="30 rows have more than 8 neighbours"):
        i, _, _ = similar_pairs(x, 0.9, k=4, tuning=VectorTuning(max_k=8))
    assert 30 * 8 // 2 <= i.size < 30 * 29 // 2


def test_a_caller_capping_neighbours_gets_each_rows_nearest_without_a_warning(recwarn):
    x = np.tile(np.eye(1, 8, dtype=np.float32), (30, 1))
    i, j, _ = similar_pairs(x, 0.9, k=4, max_k=4)
    assert not [w for w in recwarn if w.category is RuntimeWarning]
    degree = np.bincount(np.concatenate([i, j]), minlength=30)
    # Every row its 4 nearest (5 when, among identical rows, it is not its own nearest),
    # far from all 435 pairs.
    assert degree.min() >= 4 and i.size <= 30 * 5


def test_tiny_inputs():
    one = np.eye(1, 4, dtype=np.float32)
    for pairs in (similar_pairs(one, 0.5), similar_pairs(one[:0], 0.5)):
        assert [p.size for p in pairs] == [0, 0, 0]
    two = np.eye(2, 4, dtype=np.float32)
    two[1] = two[0]
    assert pair_set(similar_pairs(two, 1.0, k=5)) == {(0, 1)}


@pytest.mark.parametrize(("vectors", "message"), [
    (np.ones(4, dtype=np.float32), "2-D"),
    (np.eye(3, dtype=np.float64), "float32"),
    (np.eye(3, 0, dtype=np.float32), "width 0"),
    (np.array([[1, 0], [np.nan, 0]], dtype=np.float32), "row 1 is not finite"),
    (np.array([[1, 0], [0.6, 0.6]], dtype=np.float32), "row 1 has length 0.848"),
    ([[1.0, 0.0]], "2-D"),
])
def test_bad_vectors_are_refused(vectors, message):
    with pytest.raises(ValueError, match=message):
        similar_pairs(vectors, 0.5)


def test_bad_arguments_are_refused():
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="min_similarity"):
        similar_pairs(x, 1.5)
    with pytest.raises(ValueError, match="k must be at least 1"):
        similar_pairs(x, 0.5, k=0)
