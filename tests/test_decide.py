"""Keep policies: each rule, their composition, protected folders, --keep none, determinism,
and the split between reading facts from disk and deciding purely."""

from __future__ import annotations

import itertools
import re

import pytest

from lookalike import ConfigError, KeepPolicy
from lookalike.grouping.keep import (
    DEFAULT_KEEP,
    KeepDecision,
    KeepFacts,
    parse_keep,
)
from lookalike.imaging.facts import read_file_facts
from lookalike.model import Group, Hash, ImageRecord, Member


def rec(path: str, *, w: int = 100, h: int = 100, size: int = 1000, mtime: int = 10,
        fmt: str = "PNG") -> ImageRecord:
    return ImageRecord(path=path, size_bytes=size, mtime_ns=mtime, width=w, height=h,
                       format=fmt, hash=Hash("phash", 64, (0,)), digest="d" + path)


def group(*records: ImageRecord, gid: int = 1) -> Group:
    return Group(id=gid, members=tuple(Member(r, 0) for r in records),
                 representative=records[0].path, kind="near")


def decide(policy: KeepPolicy, *records: ImageRecord) -> KeepDecision:
    """What a caller does: read the facts once, then decide."""
    return policy.decide_all([group(*records)]).decisions[1]


def kept(policy: KeepPolicy, *records: ImageRecord) -> tuple[str, ...]:
    return decide(policy, *records).keep


def test_decide_without_facts_reads_them_for_that_group():
    records = [rec("/d/a.jpg", fmt="JPEG", size=5), rec("/d/b.png", size=5)]
    policy = KeepPolicy(rules=("prefer-lossless",))
    assert policy.decide(group(*records)) == decide(policy, *records)
    assert policy.decide(group(*records)).keep == ("/d/b.png",)


@pytest.mark.parametrize(("rule", "winner"), [
    ("largest-resolution", "/d/big"),
    ("largest-file", "/d/heavy"),
    ("smallest-file", "/d/light"),
    ("oldest", "/d/old"),
    ("newest", "/d/new"),
    ("shortest-path", "/d/s"),
    ("prefer-lossless", "/d/png"),
    ("match:*/keepme/*", "/d/keepme/x"),
])
def test_each_rule_picks_its_keeper(rule, winner):
    records = [
        rec("/d/big", w=400, h=400, size=500, mtime=50, fmt="JPEG"),
        rec("/d/heavy", size=9000, mtime=50, fmt="JPEG"),
        rec("/d/light", size=10, mtime=50, fmt="JPEG"),
        rec("/d/old", size=500, mtime=1, fmt="JPEG"),
        rec("/d/new", size=500, mtime=99, fmt="JPEG"),
        rec("/d/s", size=500, mtime=50, fmt="JPEG"),
        rec("/d/png", size=500, mtime=50, fmt="PNG"),
        rec("/d/keepme/x", size=500, mtime=50, fmt="JPEG"),
    ]
    decision = decide(KeepPolicy(rules=(rule,)), *records)
    assert decision.keep == (winner,)
    assert set(decision.remove) == {r.path for r in records} - {winner}


def test_resolution_then_size_then_age_then_path():
    p = KeepPolicy(rules=("largest-resolution", "largest-file", "oldest", "shortest-path"))
    assert kept(p, rec("/a/small", w=10, size=9999), rec("/a/large", w=200)) == ("/a/large",)
    # same resolution: the larger file wins
    assert kept(p, rec("/a/x", size=5), rec("/a/y", size=6)) == ("/a/y",)
    # same resolution and size: the older one
    assert kept(p, rec("/a/x", mtime=9), rec("/a/y", mtime=3)) == ("/a/y",)
    # all equal but the path length
    assert kept(p, rec("/a/longer"), rec("/a/b")) == ("/a/b",)


def test_final_tie_break_is_the_path_whatever_the_member_order():
    records = [rec(f"/x/{c}") for c in "dcab"]
    policy = KeepPolicy(rules=("largest-file",))
    for perm in itertools.permutations(records):
        assert kept(policy, *perm) == ("/x/a",)


def test_rules_compose_in_order():
    a = rec("/p/a.jpg", size=10, mtime=1, fmt="JPEG")
    b = rec("/p/b.png", size=5, mtime=2, fmt="PNG")
    assert kept(KeepPolicy(rules=("prefer-lossless", "largest-file")), a, b) == ("/p/b.png",)
    assert kept(KeepPolicy(rules=("largest-file", "prefer-lossless")), a, b) == ("/p/a.jpg",)


def test_parse_keep_accepts_commas_and_repeats_and_keeps_match_whole():
    assert parse_keep(["largest-file,oldest", "shortest-path"]) == (
        "largest-file", "oldest", "shortest-path")
    assert parse_keep(["match:*/{a,b}/*"]) == ("match:*/{a,b}/*",)
    assert parse_keep(None) == DEFAULT_KEEP
    assert parse_keep([]) == DEFAULT_KEEP


@pytest.mark.parametrize(("spec", "match"), [
    ("biggest", "unknown keep rule"),
    (["none", "oldest"], "cannot be combined"),
    ("match:", "needs a pattern"),
    ("match:*x,y*", None),  # a match rule is taken whole: commas belong to its pattern
    # ... but a rule written after the comma would silently join the pattern: refused.
    ("match:*zz_*,largest-file", "give the rules as separate values"),
    ("match:*a*, match:*b*", "give the rules as separate values"),
    ("match:*a,b*,oldest", re.escape("e.g. 'match:*a,b*' and 'oldest'")),
])
def test_bad_keep_rules_are_config_errors(spec, match):
    if match is None:
        assert parse_keep(spec) == (spec,)
        return
    with pytest.raises(ConfigError, match=match):
        parse_keep(spec)


def test_protected_members_are_always_kept_and_win_over_every_rule(tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    policy = KeepPolicy(protect=(str(ref),))
    big = rec(str(tmp_path / "other" / "big"), w=999, h=999, size=99999)
    p1 = rec(str(ref / "p1"), w=10, h=10)
    p2 = rec(str(ref / "p2"), w=20, h=20)
    d = decide(policy, big, p1, p2)
    assert d.keep == (str(ref / "p2"), str(ref / "p1"))  # protected, then by the rules
    assert d.remove == (big.path,)
    assert d.protected == d.keep


def test_group_of_only_protected_files_is_left_alone(tmp_path):
    policy = KeepPolicy(protect=(str(tmp_path),))
    d = decide(policy, rec(str(tmp_path / "a")), rec(str(tmp_path / "b")))
    assert d.remove == ()


def test_keep_none_removes_every_unprotected_member(tmp_path):
    policy = KeepPolicy(rules=("none",))
    d = decide(policy, rec("/z/a"), rec("/z/b"))
    assert d.keep == () and d.remove == ("/z/a", "/z/b")
    shielded = KeepPolicy(rules=("none",), protect=(str(tmp_path),))
    d = decide(shielded, rec("/z/a"), rec(str(tmp_path / "b")))
    assert d.keep == (str(tmp_path / "b"),) and d.remove == ("/z/a",)


def test_every_policy_but_none_keeps_exactly_one_member():
    records = [rec(f"/g/{i}", w=i % 3 + 1, size=i % 2, mtime=i % 4) for i in range(7)]
    for rule in ["largest-resolution", "largest-file", "smallest-file", "oldest", "newest",
                 "shortest-path", "prefer-lossless", "match:*/3"]:
        d = decide(KeepPolicy(rules=(rule,)), *records)
        assert len(d.keep) == 1 and len(d.remove) == 6


def test_webp_lossless_is_told_apart_from_lossy(tmp_path, scene):
    img = scene(3, (64, 48))
    img.save(tmp_path / "lossless.webp", lossless=True)
    img.save(tmp_path / "lossy.webp", quality=80)
    img.convert("RGBA").save(tmp_path / "alpha_lossless.webp", lossless=True, exact=True)
    assert read_file_facts(str(tmp_path / "lossless.webp")).lossless
    assert read_file_facts(str(tmp_path / "alpha_lossless.webp")).lossless
    assert not read_file_facts(str(tmp_path / "lossy.webp")).lossless
    assert not read_file_facts(str(tmp_path / "missing.webp")).lossless
    lossy = rec(str(tmp_path / "lossy.webp"), size=99, fmt="WEBP")
    lossless = rec(str(tmp_path / "lossless.webp"), size=1, fmt="WEBP")
    assert kept(KeepPolicy(rules=("prefer-lossless",)), lossy, lossless) == (lossless.path,)


def test_deciding_reads_no_file_the_facts_say_what_records_do_not(tmp_path):
    # decide() is a pure function of the records and the facts: paths that do not exist
    # decide the same, and only what read_facts found on disk changes the outcome.
    lossy = rec("/nowhere/a.webp", size=99, fmt="WEBP")
    lossless = rec("/nowhere/b.webp", size=1, fmt="WEBP")
    policy = KeepPolicy(rules=("prefer-lossless", "largest-file"))
    g = group(lossy, lossless)
    assert policy.decide(g, KeepFacts()).keep == (lossy.path,)  # both lossy: the larger
    told = KeepFacts(lossless=frozenset({lossless.path}))
    assert policy.decide(g, told).keep == (lossless.path,)
    assert policy.read_facts([lossy, lossless]) == KeepFacts()  # unreadable: not lossless


def test_read_facts_protects_a_name_that_reaches_a_protected_folder_through_a_link(tmp_path):
    ref, other = tmp_path / "ref", tmp_path / "other"
    ref.mkdir()
    other.mkdir()
    (ref / "a.png").write_bytes(b"x")
    (other / "link").symlink_to(ref)
    through = rec(str(other / "link" / "a.png"), size=1)
    plain = rec(str(other / "b.png"), size=2)
    policy = KeepPolicy(protect=(str(ref),))
    facts = policy.read_facts([through, plain])
    assert facts.protected == {through.path}
    g = group(plain, through)
    assert policy.decide(g, facts).keep == (through.path,)
    assert policy.decide(g, KeepFacts()).keep == (plain.path,)  # nothing read, nothing known
    # no folder rule and no header-reading rule: no I/O needed
    assert KeepPolicy(rules=("oldest",)).read_facts([through, plain]) == KeepFacts()
