"""ScanConfig validation: each method's hash_size range and the threshold's, before any work."""

from __future__ import annotations

import pytest

import lookalike
from lookalike.config import METHOD_SPECS, ScanConfig
from lookalike.errors import ConfigError


@pytest.mark.parametrize("method", list(METHOD_SPECS))
def test_each_methods_largest_size_hashes_and_the_next_is_refused(method, tmp_path, scene):
    spec = METHOD_SPECS[method]
    largest = max(spec.sizes) if spec.sizes else spec.max_size
    scene(1, (64, 48)).save(tmp_path / "small.png")
    h = lookalike.hash_image(tmp_path / "small.png", method, hash_size=largest)
    assert h.nbits == ScanConfig(method=method, hash_size=largest).nbits
    for bad in (largest + 1, 0, 1000):
        with pytest.raises(ConfigError, match=f"hash_size {bad} is out of range for "
                                              f"{method}") as info:
            ScanConfig(method=method, hash_size=bad)
        assert "--" not in str(info.value)  # the library names the setting, not a flag


def test_whash_takes_powers_of_two_only():
    assert ScanConfig(method="whash", hash_size=16).nbits == 256
    with pytest.raises(ConfigError, match="power of two: 2, 4, 8, 16 or 32"):
        ScanConfig(method="whash", hash_size=12)


def test_hash_size_128_is_refused_by_the_api_too():
    # It used to hash, then crash with OverflowError in the search.
    with pytest.raises(ConfigError, match=r"hash_size 128 is out of range for dhash \(2\.\.32\)"):
        lookalike.scan([], method="dhash", hash_size=128)


@pytest.mark.parametrize(("method", "size", "nbits"),
                         [("dhash", 8, 64), ("dhash-z", 16, 256), ("colorhash", 3, 42),
                          ("pdq", 16, 256)])
def test_a_threshold_up_to_the_bit_count_is_allowed_and_above_it_refused(method, size, nbits):
    assert ScanConfig(method=method, hash_size=size, threshold=nbits).threshold == nbits
    with pytest.raises(ConfigError, match=f"exceeds the {nbits} bits of {method}"):
        ScanConfig(method=method, hash_size=size, threshold=nbits + 1)
    with pytest.raises(ConfigError, match="negative"):
        ScanConfig(method=method, threshold=-1)
