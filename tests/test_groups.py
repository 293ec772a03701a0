"""Grouping: exact search results turned into deterministic groups."""

from __future__ import annotations

import functools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookalike.grouping.edges import (
    MIN_KEY_BITS,
    NEW_SHARE,
    Edges,
    find_edges,
    fingerprint,
    record_edges,
)
from lookalike.grouping.groups import (
    build_groups,
    cluster_records,
    link_matches,
    neighbour_mask,
)
from lookalike.model import Hash, ImageRecord


def rec(path: str, value: int, *, nbits: int = 16, pixels: int = 100, size: int = 10,
        digest: str | None = None) -> ImageRecord:
    return ImageRecord(path=path, size_bytes=size, mtime_ns=0, width=pixels, height=1,
                       format="PNG", hash=Hash("t", nbits, (value,)),
                       digest=digest or f"d-{path}")


def test_identical_hashes_group_at_threshold_zero():
    recs = [rec("/a", 0b1010), rec("/b", 0b1010), rec("/c", 0b1011)]
    groups = build_groups(recs, 0)
    assert [g.paths for g in groups] == [["/a", "/b"]]
    assert groups[0].kind == "near"


def test_components_chain_but_star_keeps_every_member_within_threshold():
    # a~b (1 bit), b~c (1 bit), a and c are 2 bits apart: chaining joins all three.
    recs = [rec("/a", 0b1111000, pixels=300), rec("/b", 0b1111001, pixels=200),
            rec("/c", 0b1111011, pixels=100)]
    comp = build_groups(recs, 1, "components")
    assert len(comp) == 1 and sorted(comp[0].paths) == ["/a", "/b", "/c"]
    star = build_groups(recs, 1, "star")
    for g in star:
        rep = next(m for m in g.members if m.record.path == g.representative)
        assert all(m.record.hash - rep.record.hash <= 1 for m in g.members)
    assert sorted(p for g in star for p in g.paths) == ["/a", "/b"]


def test_representative_is_largest_image_and_listed_first():
    recs = [rec("/small", 5, pixels=10), rec("/big", 5, pixels=1000), rec("/mid", 5, pixels=50)]
    (g,) = build_groups(recs, 0)
    assert g.representative == "/big"
    assert g.members[0].record.path == "/big"
    assert [m.distance for m in g.members] == [0, 0, 0]


def test_with_embedding_links_the_representative_comes_from_the_largest_hash_part():
    # An original and two re-encodes hash alike; a screenshot of it (more pixels, another
    # hash) and a crop (fewer) join only through embedding links. The representative, whose
    # hash part the keep policy chooses in, is the original, not the screenshot.
    recs = [rec("/a_crop", 0xF0F0, pixels=50), rec("/b_orig", 0x8700, pixels=400),
            rec("/c_q70", 0x8701, pixels=400, size=5), rec("/d_q30", 0x8703, pixels=400,
                                                               size=3),
            rec("/e_screenshot", 0xFF00, pixels=900)]
    links = {(1, 4): "verified", (0, 2): "verified"}
    (cluster,) = cluster_records(recs, 2, "components", links=links)
    assert recs[cluster[0]].path == "/b_orig" and sorted(cluster) == [0, 1, 2, 3, 4]
    assert link_matches(recs, [cluster], record_edges(recs, 2), links) == {
        0: "verified", 4: "verified"}
    # Two parts of equal size: the one holding the best record.
    recs2 = [rec("/p", 0x8000, pixels=100), rec("/q", 0x8001, pixels=100),
             rec("/r", 0xFF00, pixels=900), rec("/s", 0xFF01, pixels=900)]
    (cluster,) = cluster_records(recs2, 2, "components", links={(0, 2): "verified"})
    assert recs2[cluster[0]].path == "/r"


def test_groups_of_identical_files_are_exact_and_others_near():
    recs = [rec("/x", 7, digest="same"), rec("/y", 7, digest="same"),
            rec("/p", 9, digest="p"), rec("/q", 9, digest="q")]
    kinds = {tuple(g.paths): g.kind for g in build_groups(recs, 0)}
    assert kinds == {("/x", "/y"): "exact", ("/p", "/q"): "near"}


def test_many_identical_hashes_group_without_quadratic_work():
    recs = [rec(f"/same{i:05d}", 0x0F0F) for i in range(20000)] + [rec("/other", 0xFFFF)]
    (g,) = build_groups(recs, 3, "star")
    assert len(g) == 20000 and "/other" not in g.paths
    (g,) = build_groups(recs, 3)
    assert len(g) == 20000


def test_featureless_hashes_group_by_their_bytes_only():
    """A blank page and a solid square of any colour all hash to 0: near-hash grouping put
    red, blue and black squares in one group, and a page with one line of text (a few bits)
    chained them all. They now join only byte-identical copies, and bridge nothing."""
    recs = [rec("/red", 0, digest="r"), rec("/red_copy", 0, digest="r"),
            rec("/blue", 0, digest="b"), rec("/black", 0, digest="k"),
            rec("/page", 0b0111, digest="p"), rec("/page2", 0b0111 << 8, digest="q"),
            rec("/unread", 0, digest="")]
    for mode in ("components", "star"):
        groups = build_groups(recs, 3, mode)
        assert [sorted(g.paths) for g in groups] == [["/red", "/red_copy"]]
        assert groups[0].kind == "exact" and groups[0].members[1].distance == 0
    assert neighbour_mask(recs, 3) == [True, True, False, False, False, False, False]


def test_many_blank_copies_group_by_digest_without_quadratic_work():
    recs = [rec(f"/blank{i:05d}", 0, digest="one blank file") for i in range(20000)]
    recs += [rec("/other_blank", 0, digest="another"), rec("/x", 0xFFFF)]
    (g,) = build_groups(recs, 3)
    assert len(g) == 20000 and g.kind == "exact" and "/other_blank" not in g.paths


def test_groups_do_not_depend_on_input_order():
    rng = random.Random(7)
    base = [rng.getrandbits(16) for _ in range(40)]
    recs = []
    for i, v in enumerate(base):
        recs.append(rec(f"/img{i:03d}", v))
        if i % 3 == 0:
            recs.append(rec(f"/copy{i:03d}", v ^ (1 << rng.randrange(16))))
    expected = [(g.id, g.paths, g.representative) for g in build_groups(recs, 2)]
    for _ in range(5):
        rng.shuffle(recs)
        got = [(g.id, g.paths, g.representative) for g in build_groups(recs, 2)]
        assert got == expected


def test_groups_are_ordered_largest_first_and_numbered_from_one():
    recs = [rec("/a1", 0x11), rec("/a2", 0x11), rec("/b1", 7), rec("/b2", 7), rec("/b3", 7)]
    groups = build_groups(recs, 0)
    assert [g.id for g in groups] == [1, 2]
    assert [len(g) for g in groups] == [3, 2]


def test_multi_segment_hashes_match_on_their_best_segment():
    a = ImageRecord(path="/a", size_bytes=1, mtime_ns=0, width=1, height=1, format=None,
                    hash=Hash("cr", 16, (0x0F0F, 0x1234)), digest="a")
    b = ImageRecord(path="/b", size_bytes=1, mtime_ns=0, width=1, height=1, format=None,
                    hash=Hash("cr", 16, (0xFFFF, 0x1235)), digest="b")
    (g,) = build_groups([a, b], 1)
    assert g.members[1].distance == 1


def test_negative_threshold_is_rejected():
    with pytest.raises(ValueError):
        build_groups([], -1)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_multi_segment_graph_matches_brute_force(data):
    # Records with several codes each (flips and turns), codes shared between records and
    # repeated within one: components, star groups and the neighbour mask are those of the
    # record graph in which two records are adjacent when any of their codes are within
    # the threshold. Few distinct values, so codes collide and pairs exist.
    values = st.integers(1, 63)  # 0 alone is featureless: grouped by digest (test below)
    segs = data.draw(st.lists(st.lists(values, min_size=1, max_size=4), min_size=1,
                              max_size=12))
    radius = data.draw(st.integers(0, 3))
    recs = [ImageRecord(path=f"/{i:02d}", size_bytes=10 + i % 3, mtime_ns=0,
                        width=1 + i % 4, height=1, format="PNG",
                        hash=Hash("t", 6, tuple(s)), digest=None)
            for i, s in enumerate(segs)]
    near = [{j for j, other in enumerate(segs) if j != i and any(
        (a ^ b).bit_count() <= radius for a in mine for b in other)}
        for i, mine in enumerate(segs)]
    # The mask over-estimates safely: two near codes of one record count too.
    assert neighbour_mask(recs, radius) == [bool(near[i]) or any(
        a != b and (a ^ b).bit_count() <= radius for a in mine for b in mine)
        for i, mine in enumerate(segs)]
    seen: set[int] = set()
    comps = []
    for i in range(len(recs)):  # components by search from each unseen record
        if i in seen or not near[i]:
            continue
        comp, todo = {i}, [i]
        while todo:
            for j in near[todo.pop()] - comp:
                comp.add(j)
                todo.append(j)
        seen |= comp
        comps.append(comp)
    got = cluster_records(recs, radius, "components")
    assert sorted(map(sorted, got)) == sorted(map(sorted, comps))
    quality = sorted((i for i in range(len(recs)) if near[i]),
                     key=lambda i: (-recs[i].pixels, -recs[i].size_bytes, recs[i].path))
    assigned: set[int] = set()
    stars = []
    for leader in quality:  # star: leaders greedily in quality order
        members = sorted(near[leader] - assigned)
        if leader not in assigned and members:
            assigned |= {leader, *members}
            stars.append([leader, *members])
    assert cluster_records(recs, radius, "star") == stars


# ------------------------------------------------------------------ incremental edges

def _brute_edges(codes, radius):
    ordered = sorted(codes)
    return {(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:]
            if (a ^ b).bit_count() <= radius}


@settings(max_examples=150, deadline=None)
@given(nbits=st.sampled_from([8, 16, 64, 100]), radius=st.integers(0, 12), data=st.data())
@pytest.mark.slow  # 0.6 s: many searches of random codes
def test_edges_kept_from_earlier_code_sets_are_exactly_a_fresh_search(nbits, radius, data):
    # A re-scan starts from the edges of the last one: any history of added and removed
    # hash values must give exactly the pairs a brute-force search of the current values
    # gives. Values cluster around a few centres so that pairs exist.
    centres = data.draw(st.lists(st.integers(0, 2**nbits - 1), min_size=1, max_size=4))
    value = st.builds(lambda c, flips: functools.reduce(lambda v, f: v ^ (1 << f), flips, c),
                      st.sampled_from(centres), st.lists(st.integers(0, nbits - 1),
                                                         max_size=radius + 3))
    known = None
    for _ in range(data.draw(st.integers(1, 4))):
        codes = data.draw(st.sets(value, max_size=40))
        edges = find_edges(codes, nbits, radius, known)
        assert edges.codes == codes and sorted(edges.order) == sorted(codes)
        found = [(min(p), max(p)) for p in edges.pairs]
        assert set(found) == _brute_edges(codes, radius)
        assert len(found) == len(set(found))  # each pair once
        # What the hash cache keeps of them reads back the same.
        again = Edges.stored(nbits, radius, edges.packed, edges.index.tobytes(),
                             edges.fingerprint)
        assert again.pairs == edges.pairs  # read from the rows in some pair only
        assert again.codes == codes and again.order == edges.order
        assert find_edges(codes, nbits, radius, again) is again  # known by its fingerprint
        assert fingerprint(frozenset(codes)) == edges.fingerprint
        known = edges


@pytest.mark.parametrize("nbits", [64, 256])
def test_new_codes_are_searched_against_the_known_ones_to_the_same_edges(nbits, monkeypatch):
    # Issue 14: a re-scan searches only the new hash values (among themselves and against
    # the rest), never the whole set again; the edges are exactly those one self-join of
    # the same rows lists, in the same order, so groups and what is stored do not change.
    import numpy as np

    from lookalike import search
    from lookalike.search import pack_hashes

    rng = random.Random(nbits)
    centres = [rng.getrandbits(nbits) for _ in range(30)]
    blank = rng.getrandbits(nbits // 2) << (nbits - nbits // 2)  # a shared top half

    def near(c):
        return functools.reduce(lambda v, _: v ^ (1 << rng.randrange(nbits)),
                                range(rng.randint(0, 8)), c)

    first = {near(rng.choice(centres)) for _ in range(400)}
    first |= {blank | rng.getrandbits(nbits // 8) for _ in range(200)}
    known = find_edges(first, nbits, 6)
    seen = []
    monkeypatch.setattr(search, "find_pairs", lambda rows, t: seen.append(len(rows)) or
                        search.join.find_pairs(rows, t))
    added = {near(rng.choice(centres)) for _ in range(20)}
    added |= {blank | rng.getrandbits(nbits // 8) for _ in range(5)}
    gone = set(rng.sample(sorted(first), 50))
    many = {near(rng.choice(centres)) for _ in range(100)} - first  # > 1 in 20: all joined
    assert len(many) * NEW_SHARE > len(first | many)
    for codes in (first | added, (first - gone) | added, first | many):
        edges = find_edges(codes, nbits, 6, known)
        new = codes - known.codes
        # only the new codes were self-joined, unless they are many or the keys too short
        between = len(new) * NEW_SHARE <= len(codes) and nbits // 7 >= MIN_KEY_BITS
        assert seen.pop() == (len(new) if between else len(codes))
        assert between == (nbits == 256 and codes != first | many)
        i, j, _ = search.join.find_pairs(pack_hashes(edges.order, nbits), 6)
        assert np.asarray(edges.index).tolist() == np.column_stack((i, j)).ravel().tolist()
        assert {(min(p), max(p)) for p in edges.pairs} == _brute_edges(codes, 6)


def test_unchanged_codes_give_back_the_known_edges_without_a_search(monkeypatch):
    from lookalike.grouping import edges as groups

    codes = {1, 3, 7, 255, 1 << 40}
    known = find_edges(codes, 64, 2)
    searches = []
    real = groups._search
    monkeypatch.setattr(groups, "_search", lambda *a: searches.append(a) or real(*a))
    assert find_edges(set(codes), 64, 2, known) is known
    fewer = find_edges(codes - {3}, 64, 2, known)  # removed: pairs dropped, no search
    assert {(min(p), max(p)) for p in fewer.pairs} == _brute_edges(codes - {3}, 2)
    assert searches == []
    other = find_edges(codes, 64, 3, known)  # another radius: searched afresh
    assert {(min(p), max(p)) for p in other.pairs} == _brute_edges(codes, 3)
    assert len(searches) == 1


def test_a_threshold_pairing_most_hash_values_is_refused_before_the_search(monkeypatch):
    """`-t 128` of 256 bits on 5k random pictures built 402M pairs: a MemoryError
    traceback at 12 GB, or the machine out of memory. The pairs a radius would make are
    estimated first; too many for half the memory is one error saying what to do."""
    import os

    from lookalike.errors import LookalikeError

    rng = random.Random(0)
    codes = {rng.getrandbits(256) for _ in range(3000)}
    real = os.sysconf
    monkeypatch.setattr(os, "sysconf", lambda name: 16384 if name == "SC_PHYS_PAGES"
                        else real(name))  # 16384 pages: a 64 MB machine
    with pytest.raises(LookalikeError, match=r"pairs about 5\d\.\d% of these 3,000 hash "
                                             r"values.*lower the threshold"):
        find_edges(codes, 256, 128)
    assert find_edges(codes, 256, 64).pairs == ()  # random codes: none that close
