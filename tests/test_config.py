"""ScanConfig validation: each method's hash_size range and the threshold's, before any work."""

from __future__ import annotations

import pytest

import lookalike
from lookalike.config import METHOD_NAMES, METHOD_SPECS, ScanConfig, method_spec
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
def test_a_threshold_up_to_half_the_bits_is_allowed_and_above_it_refused(method, size, nbits):
    # Beyond half the bits unrelated pictures match by chance (`-t 120` on 64 bits was taken).
    assert ScanConfig(method=method, hash_size=size, threshold=nbits // 2).threshold == nbits // 2
    with pytest.raises(ConfigError, match=f"more than half the {nbits} bits of {method}"):
        ScanConfig(method=method, hash_size=size, threshold=nbits // 2 + 1)
    with pytest.raises(ConfigError, match="not a number of bits"):
        ScanConfig(method=method, threshold=-1)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_each_method_has_its_own_default_threshold_scaled_by_size(method):
    spec = method_spec(method)
    assert ScanConfig(method=method).threshold == spec.threshold
    assert ScanConfig(method=method, threshold=0).threshold == 0  # an explicit 0 stays 0
    if spec.sizes is None:  # another size, not measured: the same share of its bits
        size = spec.min_size
        want = round(spec.threshold * spec.nbits(size) / spec.nbits(spec.default_size))
        assert ScanConfig(method=method, hash_size=size).threshold == want


def test_thresholds_measured_at_other_sizes_win_over_scaling():
    # benchmarks/accuracy: phash 16 with flips/turns keeps precision 0.999 up to 6 bits,
    # though phash 8 reaches it at no threshold; dhash-z 8 never does (scaling would say 2).
    assert ScanConfig(method="phash", hash_size=16).threshold == 6
    assert ScanConfig(method="dhash-z", hash_size=8).threshold == 0
    assert ScanConfig(method="dhash-z", hash_size=32).threshold == 24  # scaled from 6 of 256
    # Above a measured size, scaled from it: phash 20 from 16's 6 bits (from 8's 0, every
    # size above 16 gave 0 and phash 20 found no JPEG q50 copy at all).
    assert [ScanConfig(method="phash", hash_size=s).threshold for s in (20, 24, 32)] == [
        round(6 * s * s / 256) for s in (20, 24, 32)]
    assert ScanConfig(method="phash", hash_size=12).threshold == 0  # below 16: from 8's 0


def test_an_extra_that_is_missing_or_broken_says_which(tmp_path, monkeypatch):
    # A pyarrow that was installed but could not load its library was said "missing; install
    # it", which sends the user to install what they have (review).
    import re
    import sys

    from lookalike.config import import_extra

    with pytest.raises(ConfigError, match="needs no_such_module_xyz, which is missing; install"):
        import_extra("no_such_module_xyz.sub", "doing this", "dask")
    (tmp_path / "brokenmod.py").write_text(
        "raise ImportError('libfoo.so: cannot open shared object file', name='_foo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "brokenmod", raising=False)
    with pytest.raises(ConfigError, match=re.escape(
            "needs brokenmod, which is installed but cannot be imported: libfoo.so: cannot "
            "open shared object file")):
        import_extra("brokenmod", "doing this", "dask")
