"""Value types: the fast constructors used on warm re-scans equal the dataclass ones."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lookalike.model import FileFacts, Hash, ImageRecord, make_record, positional_constructor


@given(nbits=st.sampled_from([1, 7, 64, 72, 256]), data=st.data())
def test_hash_from_hex_round_trips_and_equals_the_constructor(nbits: int, data):
    segments = tuple(data.draw(st.lists(st.integers(0, (1 << nbits) - 1), min_size=1,
                                        max_size=4)))
    h = Hash("dhash-z", nbits, segments)
    for parsed in (Hash.from_hex(str(h), method="dhash-z", nbits=nbits),):
        assert type(parsed) is Hash
        assert parsed == h and hash(parsed) == hash(h)
        assert parsed.segments == segments and str(parsed) == str(h)
        assert pickle.loads(pickle.dumps(parsed)) == h
        with pytest.raises(dataclasses.FrozenInstanceError):
            parsed.nbits = 3  # type: ignore[misc]


@pytest.mark.parametrize("text", ["", "xyz", "12,", "1,,2", "0x"])
def test_hash_from_hex_rejects_what_is_not_hex(text: str):
    with pytest.raises(ValueError, match="not a hex hash string"):
        Hash.from_hex(text, method="m", nbits=64)


@pytest.mark.parametrize("text", ["1ff", "-1", "ff,100"])
def test_hash_from_hex_checks_the_range_like_the_constructor(text: str):
    with pytest.raises(ValueError, match="does not fit in 8 bits"):
        Hash.from_hex(text, method="m", nbits=8)


def test_from_hex_on_a_subclass_builds_the_subclass():
    class Tagged(Hash):
        __slots__ = ()

    h = Tagged.from_hex("0a", method="m", nbits=8)
    assert type(h) is Tagged and h.segments == (10,)


def test_make_record_equals_the_keyword_constructor():
    h = Hash("pdq", 256, (12345,))
    fields = dict(path="/a/b.png", size_bytes=10, mtime_ns=123456789012345678, width=3,
                  height=4, format="PNG", hash=h, digest="d" * 64, pixel_digest=None,
                  source="/a", aliases=("/a/c.png",),
                  facts=FileFacts(format="PNG", mode="RGB", lossless=True),
                  embedding=b"\x00<" * 4)
    fast = make_record(*fields.values())
    slow = ImageRecord(**fields)
    assert [f.name for f in dataclasses.fields(ImageRecord)] == list(fields)
    assert type(fast) is ImageRecord
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert fast.pixels == 12
    assert pickle.loads(pickle.dumps(fast)) == slow
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.path = "x"  # type: ignore[misc]


def test_positional_constructor_refuses_a_class_that_validates():
    # It would skip __post_init__: Hash's range check must not be bypassed.
    with pytest.raises(TypeError, match="__post_init__"):
        positional_constructor(Hash, ("method", "nbits", "segments"))


@pytest.mark.parametrize("facts", [
    FileFacts(),
    FileFacts(format="JPEG", mode="CMYK", quality=87, camera="Canon EOS R5 \u00e9",
              taken="2021-06-01 10:11:12", metadata=3),
    FileFacts(format="PNG", mode="L", lossless=True, grey=True, metadata=1),
])
def test_file_facts_survive_their_text(facts):
    text = facts.to_text()
    assert FileFacts.from_text(text) == facts
    assert FileFacts.from_text(text) is not facts


@pytest.mark.parametrize("text", [None, "", "{}", "[1, 2]", '{"format": "PNG"}', "nonsense"])
def test_a_text_file_facts_did_not_write_holds_none(text):
    assert FileFacts.from_text(text) is None


def test_flat_segments_count_in_a_distance_only_when_a_hash_has_nothing_else():
    """A flag's and a sky's plain orientations are both flat (0): through them every such
    pair was 0 bits apart, so a report merging the two groups passed the plan's check and
    listed d=0 for pictures 40 bits apart."""
    flag = Hash("dhash-z", 64, (0, 0xFF00FF00FF00FF00))
    sky = Hash("dhash-z", 64, (0, 0x00FF00FF00FF00FF))
    assert flag - sky == 64 and sky - flag == 64
    blank = Hash("dhash-z", 64, (0,))
    assert blank - blank == 0  # a featureless hash: its flat segment is all it has
    assert blank - flag == 32  # the flag is compared by its structure
    plain = Hash("dhash", 64, (0b1011,))
    assert plain - Hash("dhash", 64, (0,)) == 3  # one segment each: as ImageHash compares
    dc = 1 << 63  # phash's flat code besides 0
    assert Hash("phash", 64, (dc, 0b1111111)) - Hash("phash", 64, (dc, 0b11111)) == 2


def test_segments_near_a_structureless_code_are_not_informative():
    """Within 1/16 of the bits of a blank picture's code (a page number, one dot) or, for
    difference hashes, of a pure gradient's (every bit set), a segment says nothing: two
    such pages were one group whatever they showed."""
    ones = (1 << 256) - 1
    near_blank, near_ramp, photo = 0xFFFF, ones ^ 0xFFFF, (1 << 17) - 1  # 16, 240, 17 bits
    h = Hash("dhash-z", 256, (near_blank, near_ramp, photo))
    assert h.informative_segments == (photo,) and not h.featureless
    assert Hash("dhash-z", 256, (near_blank, near_ramp)).featureless
    assert Hash("pdq", 256, (near_ramp,)).informative_segments == (near_ramp,)  # not a ramp
    dc = 1 << 63
    assert Hash("phash", 64, (dc | 0b111, 0b11111)).informative_segments == (0b11111,)
    assert not Hash("colorhash", 42, (0,)).featureless  # its bits are colours
    # Distances leave them out too, unless a hash has nothing else.
    assert Hash("dhash-z", 256, (near_blank, photo)) - Hash("dhash-z", 256, (0, photo)) == 0
    assert Hash("dhash-z", 256, (near_blank,)) - Hash("dhash-z", 256, (0,)) == 16
