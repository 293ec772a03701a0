"""Exact Hamming search: find_pairs against brute force, the planner's coverage, HammingIndex."""

from __future__ import annotations

import random
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lookalike.search import index as ix
from lookalike.search.index import HammingIndex, find_pairs, find_pairs_collapsed, pack_hashes

NBITS = (16, 64, 128, 256)


def brute_pairs(codes: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference: every pair, compared directly."""
    ii, jj, dd = [], [], []
    for i in range(codes.shape[0] - 1):
        d = np.bitwise_count(codes[i + 1 :] ^ codes[i]).sum(axis=1)
        hit = np.flatnonzero(d <= t)
        ii.append(np.full(hit.size, i))
        jj.append(hit + i + 1)
        dd.append(d[hit])
    if not ii:
        return (np.zeros(0, np.int64),) * 3
    return tuple(np.concatenate(x).astype(np.int64) for x in (ii, jj, dd))


def assert_same_pairs(got: tuple, expected: tuple) -> None:
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == np.int64
        np.testing.assert_array_equal(g, e)


@contextmanager
def tables_everywhere(giant_run: int = 4096, long_run: int | None = None):
    """Make small inputs go through the tables (and tiny giant runs through recursion).

    ``long_run``: runs longer than this are joined as matrix blocks in the sparse phase.
    """
    with (
        mock.patch.object(ix, "_LONG_RUN", ix._LONG_RUN if long_run is None else long_run),
        mock.patch.object(ix, "_TOP_LEVEL_BRUTE", False),
        mock.patch.object(ix, "_GIANT_RUN", giant_run),
        mock.patch.object(ix, "_GIANT_CHECK", min(64, max(2, giant_run // 4))),
        mock.patch.object(ix, "_SLAB", 37 if giant_run < 4096 else ix._SLAB),
        mock.patch.object(ix, "_PAIR_BATCH", 64 if giant_run < 4096 else ix._PAIR_BATCH),
    ):
        yield


def planted(rng: random.Random, n: int, nbits: int, t: int, share: float = 0.4) -> list[int]:
    """Random hashes, a share of them copies of earlier ones with 0..t+1 bits flipped."""
    values: list[int] = []
    for _ in range(n):
        if values and rng.random() < share:
            v = rng.choice(values)
            for _ in range(rng.randint(0, t + 1)):
                v ^= 1 << rng.randrange(nbits)
        else:
            v = rng.getrandbits(nbits)
        values.append(v)
    return values


# --------------------------------------------------------------------------- find_pairs


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nbits=st.sampled_from(NBITS),
    t=st.integers(0, 12),
    n=st.integers(0, 60),
    seed=st.integers(0, 2**32 - 1),
    via_tables=st.booleans(),
)
def test_find_pairs_matches_brute_force(nbits: int, t: int, n: int, seed: int, via_tables: bool):
    codes = pack_hashes(planted(random.Random(seed), n, nbits, t), nbits)
    if via_tables:
        with tables_everywhere():
            got = find_pairs(codes, t, workers=1 + seed % 2)
    else:
        got = find_pairs(codes, t)
    assert_same_pairs(got, brute_pairs(codes, t))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nbits=st.sampled_from(NBITS),
    t=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_skewed_inputs_match_brute_force(nbits: int, t: int, seed: int):
    rng = random.Random(seed)
    values = planted(rng, 120, nbits, t)
    blank = rng.getrandbits(nbits)
    values += [blank] * 40  # many identical "blank image" hashes
    values += [blank ^ (1 << rng.randrange(nbits)) for _ in range(20)]  # and near-blank ones
    # a big bucket: the same top half, random bottom half
    top = rng.getrandbits(nbits - nbits // 2) << (nbits // 2)
    values += [top | rng.getrandbits(nbits // 2) for _ in range(60)]
    rng.shuffle(values)
    codes = pack_hashes(values, nbits)
    with tables_everywhere(giant_run=8):
        got = find_pairs(codes, t)
    assert_same_pairs(got, brute_pairs(codes, t))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nbits=st.sampled_from(NBITS),
    t=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    long_run=st.sampled_from([0, 1, 3, 10_000]),
    giant_run=st.sampled_from([8, 40, 4096]),
    block_words=st.sampled_from([1, 2, 4]),
)
# Found by this test: rows of one run whose dense phase stopped at different offsets, so a
# later row's first candidate column came before an earlier row's (three pairs were lost).
@example(nbits=16, t=1, seed=553, long_run=0, giant_run=40, block_words=1)
def test_long_runs_as_matrix_blocks_match_brute_force(nbits: int, t: int, seed: int,
                                                      long_run: int, giant_run: int,
                                                      block_words: int):
    # Buckets of many codes sharing most bits: the sparse phase meets long runs, which are
    # joined as matrix blocks (long_run small) or as pair lists (long_run huge).
    rng = random.Random(seed)
    values = planted(rng, 80, nbits, t)
    for _ in range(3):
        top = rng.getrandbits(nbits - nbits // 4) << (nbits // 4)
        values += [top | rng.getrandbits(nbits // 4) for _ in range(rng.randint(5, 70))]
    rng.shuffle(values)
    codes = pack_hashes(values, nbits)
    with (tables_everywhere(giant_run=giant_run, long_run=long_run),
          mock.patch.object(ix, "_BLOCK_WORDS", block_words)):
        got = find_pairs(codes, t, workers=1 + seed % 2)
    assert_same_pairs(got, brute_pairs(codes, t))


def test_planted_near_duplicates_at_scale_match_brute_force():
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 2**64 - 1, 6000, dtype=np.uint64, endpoint=True)
    src, dst = rng.integers(0, 6000, 900), rng.integers(0, 6000, 900)
    flips = np.zeros(900, dtype=np.uint64)
    for _ in range(8):
        flips |= np.uint64(1) << rng.integers(0, 64, 900).astype(np.uint64)
    codes[dst] = codes[src] ^ flips
    with tables_everywhere():
        got = find_pairs(codes.reshape(-1, 1), 8)
    assert_same_pairs(got, brute_pairs(codes.reshape(-1, 1), 8))


def test_collapsed_pairs_group_identical_codes():
    codes = pack_hashes([7, 3, 7, 1 << 40, 3, 6], 64)
    res = find_pairs_collapsed(codes, 1)
    assert res.groups.tolist() == [0, 1, 0, 2, 1, 3]
    assert res.representatives.tolist() == [0, 1, 3, 5]
    assert list(zip(res.i.tolist(), res.j.tolist(), res.distance.tolist(), strict=True)) == [
        (0, 1, 1),  # 7 ~ 3
        (0, 3, 1),  # 7 ~ 6
    ]
    assert_same_pairs(res.expand(), brute_pairs(codes, 1))


def test_collapsed_output_stays_small_when_every_hash_is_equal():
    codes = np.full((50_000, 1), 12345, dtype=np.uint64)
    res = find_pairs_collapsed(codes, 10)
    assert res.representatives.tolist() == [0]
    assert res.i.size == 0
    assert (res.groups == 0).all()


def test_without_duplicates_groups_are_rows():
    codes = pack_hashes([1, 2, 4, 8], 8)
    res = find_pairs_collapsed(codes, 2)
    assert res.groups.tolist() == [0, 1, 2, 3]
    assert_same_pairs((res.i, res.j, res.distance), brute_pairs(codes, 2))


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single_input(n: int):
    codes = np.zeros((n, 2), dtype=np.uint64)
    for arr in find_pairs(codes, 5):
        assert arr.dtype == np.int64 and arr.size == 0
    res = find_pairs_collapsed(codes, 5)
    assert res.groups.tolist() == [0] * n


def test_one_dimensional_codes_are_one_word_each():
    got = find_pairs(np.array([0, 1, 3, 255], dtype=np.uint64), 1)
    assert [a.tolist() for a in got] == [[0, 1], [1, 2], [1, 1]]


def test_radius_at_least_the_hash_size_pairs_everything():
    codes = pack_hashes([0, 0xFFFF, 0x00FF, 0xF0F0], 16)
    assert_same_pairs(find_pairs(codes, 16), brute_pairs(codes, 16))


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_bad_max_distance_raises_value_error(bad):
    with pytest.raises(ValueError, match="max_distance"):
        find_pairs(np.zeros((3, 1), dtype=np.uint64), bad)


@pytest.mark.parametrize(
    "codes", [np.zeros((2, 2, 2), dtype=np.uint64), np.array([[-1]]), np.array([[0.5]])]
)
def test_bad_codes_raise_value_error(codes):
    with pytest.raises(ValueError):
        find_pairs(codes, 2)


def test_bad_workers_raise_value_error():
    with pytest.raises(ValueError, match="workers"):
        find_pairs(np.zeros((3, 1), dtype=np.uint64), 2, workers=0)


# --------------------------------------------------------------------------- pack_hashes


def test_pack_hashes_puts_the_most_significant_word_first():
    assert pack_hashes([0xFF, 1 << 70], 72).tolist() == [[0, 255], [64, 0]]
    assert pack_hashes([], 64).shape == (0, 1)
    assert pack_hashes(np.array([5], dtype=np.uint64), 64).tolist() == [[5]]


@pytest.mark.parametrize(("values", "nbits"), [([1 << 16], 16), ([-1], 64), ([1], 0)])
def test_pack_hashes_rejects_what_does_not_fit(values, nbits):
    with pytest.raises(ValueError):
        pack_hashes(values, nbits)


# --------------------------------------------------------------------------- planner


@settings(max_examples=60, deadline=None)
@given(
    nbits=st.integers(8, 256),
    t=st.integers(1, 40),
    log_n=st.integers(3, 24),
    seed=st.integers(0, 2**32 - 1),
)
def test_plan_covers_every_error_pattern_within_t(nbits, t, log_n, seed):
    """Pigeonhole: whatever bits differ (at most t), some chunk has k_j blocks that agree."""
    t = min(t, nbits - 1)
    plan = ix._plan_join(2**log_n, nbits, t, (nbits + 63) // 64, brute=False)
    assert plan.chunks
    blocks = [blk for chunk in plan.chunks for blk in chunk.blocks]
    ends = [0] + [s + n for s, n in sorted(blocks)]
    assert [s for s, _ in sorted(blocks)] == ends[:-1] and ends[-1] == nbits  # a partition
    rng = random.Random(seed)
    for _ in range(20):
        # the worst patterns spread the errors over as many blocks as possible
        hit = rng.sample(blocks, min(t, len(blocks)))
        errors = {s + rng.randrange(n) for s, n in hit}
        errors |= set(rng.sample(range(nbits), t - len(errors)))
        assert any(
            sum(not any(s <= e < s + n for e in errors) for s, n in chunk.blocks) >= chunk.k
            for chunk in plan.chunks
        )


def test_planner_is_subquadratic_for_the_radii_people_use():
    n = 10_000_000
    for nbits, t, gain in [(64, 4, 1000), (64, 8, 100), (64, 10, 20), (256, 40, 10)]:
        words = (nbits + 63) // 64
        plan = ix._plan_join(n, nbits, t, words)
        assert plan.chunks, (nbits, t)
        assert plan.cost_ns < ix._brute_cost(n, words) / gain
    tables = sum(1 for _ in ix._plan_join(1_000_000, 64, 8, 1).tables())
    assert 20 <= tables <= 600


# --------------------------------------------------------------------------- HammingIndex


def test_index_query_is_exact_and_sorted_by_distance_then_id():
    index = HammingIndex(64)
    index.add([0b1111, 0b1110, 1 << 63, 0b0111], ids=[10, 11, 12, 9])
    assert index.query(0b0111, max_distance=2) == [(9, 0), (10, 1), (11, 2)]
    assert index.query(0b0111, 0) == [(9, 0)]
    assert len(index) == 4 and 12 in index and 13 not in index


def test_index_remove_hides_the_hash_and_frees_the_id():
    index = HammingIndex(64)
    index.add([1, 2, 3], ids=[1, 2, 3])
    index.remove(2)
    assert len(index) == 2 and 2 not in index
    assert [i for i, _ in index.query(0, 2)] == [1, 3]
    with pytest.raises(KeyError):
        index.remove(2)
    index.add([2], ids=[2])
    assert [i for i, _ in index.query(0, 2)] == [1, 2, 3]


def test_index_default_ids_follow_the_largest_id():
    index = HammingIndex(16)
    assert index.add([1, 2]).tolist() == [0, 1]
    index.add([3], ids=[41])
    assert index.add([4]).tolist() == [42]


def test_index_rejects_duplicate_ids():
    index = HammingIndex(64)
    index.add([1], ids=[5])
    with pytest.raises(ValueError, match="already"):
        index.add([2], ids=[5])
    with pytest.raises(ValueError, match="unique"):
        index.add([2, 3], ids=[6, 6])
    assert len(index) == 1


def test_bulk_builds_once_and_is_all_or_nothing():
    index = HammingIndex(64, max_distance=3)
    with index.bulk():
        index.add([1, 2, 3])
        index.add([1 << 40])
        assert len(index) == 0  # queued until the block ends
    assert len(index) == 4
    assert index._tables  # built at exit, for the declared radius
    assert index.query(0) == [(0, 1), (1, 1), (3, 1), (2, 2)]
    with pytest.raises(RuntimeError), index.bulk():
        index.add([7, 8])
        raise RuntimeError("boom")
    assert len(index) == 4
    with pytest.raises(ValueError, match="repeated"), index.bulk():
        index.add([7], ids=[100])
        index.add([8], ids=[100])
    assert len(index) == 4 and 100 not in index


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nbits=st.sampled_from(NBITS),
    t=st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_index_queries_match_brute_force(nbits: int, t: int, seed: int):
    rng = random.Random(seed)
    values = planted(rng, 1500, nbits, t)
    index = HammingIndex(nbits)
    with index.bulk():
        index.add(values[:1200], ids=range(1000, 2200))
    index.add(values[1200:])  # stays in the unsorted buffer
    removed = set(rng.sample(range(1000, 2200), 100))
    for item in removed:
        index.remove(item)
    ids = np.array([i for i in range(1000, 2200) if i not in removed] + list(range(2200, 2500)))
    rows = np.where(ids < 2200, ids - 1000, ids - 1000)
    codes = pack_hashes(values, nbits)
    queries = codes[rng.sample(range(1500), 25)]
    qi, got_ids, got_d = index.query_many(queries, t)
    for k, q in enumerate(queries):
        d = np.bitwise_count(codes[rows] ^ q).sum(axis=1)
        order = np.lexsort((ids[d <= t], d[d <= t]))
        assert got_ids[qi == k].tolist() == ids[d <= t][order].tolist()
        assert got_d[qi == k].tolist() == d[d <= t][order].tolist()


def test_index_pairs_match_find_pairs():
    rng = random.Random(3)
    values = planted(rng, 300, 64, 6)
    index = HammingIndex(64)
    index.add(values, ids=range(300, 0, -1))
    a, b, d = index.pairs(6)
    i, j, dd = find_pairs(pack_hashes(values, 64), 6)
    ids_i, ids_j = 300 - i, 300 - j
    expected = sorted(zip(np.minimum(ids_i, ids_j), np.maximum(ids_i, ids_j), dd, strict=True))
    assert list(zip(a, b, d, strict=True)) == expected


def test_index_accepts_packed_codes_and_validates_them():
    index = HammingIndex(128)
    index.add(pack_hashes([1 << 100, 3], 128))
    assert index.query(pack_hashes([1 << 100], 128)[0], 0) == [(0, 0)]
    with pytest.raises(ValueError, match="shape"):
        index.add(np.zeros((2, 1), dtype=np.uint64))
    narrow = HammingIndex(16)
    with pytest.raises(ValueError):
        narrow.add(np.array([1 << 20], dtype=np.uint64))
    with pytest.raises(ValueError):
        narrow.add([1 << 16])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nbits": 0},
        {"nbits": -64},
        {"nbits": 64.0},
        {"nbits": True},
        {"nbits": 64, "max_distance": -1},
        {"nbits": 64, "max_distance": 65},
    ],
)
def test_index_constructor_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=r"nbits|max_distance"):
        HammingIndex(**kwargs)


def test_query_needs_a_radius():
    index = HammingIndex(64)
    index.add([1])
    with pytest.raises(ValueError, match="max_distance"):
        index.query(1)
