"""The SQLite hash cache: re-scans hash only what changed; settings invalidate it."""

from __future__ import annotations

import os
import sqlite3

import pytest

import lookalike
from lookalike.cache import HashCache


@pytest.fixture
def tree(tmp_path, scene):
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(6):
        scene(i).save(root / f"{i}.png")
    scene(0).resize((80, 60)).save(root / "0_small.png")
    (root / "bad.jpg").write_bytes(b"broken")
    return root


def scan(root, cache, **kw):
    kw.setdefault("method", "phash")
    kw.setdefault("threshold", 6)
    return lookalike.scan(root, cache=cache, workers=1, **kw)


def test_warm_rescan_hashes_nothing_and_gives_the_same_result(tree, tmp_path):
    with HashCache(tmp_path / "c.sqlite") as cache:
        cold = scan(tree, cache)
        warm = scan(tree, cache)
    assert cold.stats["hashed"] == 8 and warm.stats["hashed"] == 0
    assert warm.stats["from_cache"] == 8  # 7 images and the unreadable file
    assert [g.paths for g in warm.groups] == [g.paths for g in cold.groups]
    assert warm.records == cold.records
    assert warm.errors == cold.errors  # unreadable files are cached too


def test_new_and_changed_files_are_hashed_again(tree, tmp_path, scene):
    with HashCache(tmp_path / "c.sqlite") as cache:
        scan(tree, cache)
        scene(42).save(tree / "new.png")
        st = os.stat(tree / "1.png")
        scene(43).save(tree / "1.png")
        os.utime(tree / "1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        again = scan(tree, cache)
    assert again.stats["hashed"] == 2


def test_changing_method_or_size_or_decode_misses_the_cache(tree, tmp_path):
    with HashCache(tmp_path / "c.sqlite") as cache:
        scan(tree, cache)
        assert scan(tree, cache, hash_size=16).stats["hashed"] == 8
        assert scan(tree, cache, method="dhash").stats["hashed"] == 8
        assert scan(tree, cache, decode="full").stats["hashed"] == 8
        assert scan(tree, cache, invariant="flips").stats["hashed"] == 8
        assert scan(tree, cache).stats["hashed"] == 0


def test_two_open_caches_share_one_file(tree, tmp_path):
    path = tmp_path / "c.sqlite"
    with HashCache(path) as a, HashCache(path) as b:
        scan(tree, a)
        assert scan(tree, b).stats["hashed"] == 0


def test_cache_uses_wal_and_survives_an_uncommitted_writer(tree, tmp_path):
    path = tmp_path / "c.sqlite"
    with HashCache(path) as cache:
        scan(tree, cache)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute("BEGIN IMMEDIATE")
    db.execute("DELETE FROM files")  # a writer killed before COMMIT
    db.close()  # rolls back, like a crash would
    with HashCache(path) as cache:
        assert scan(tree, cache).stats["hashed"] == 0


def test_a_corrupt_cache_file_is_a_config_error_with_a_hint(tmp_path):
    bad = tmp_path / "c.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(lookalike.ConfigError, match="--no-cache"):
        HashCache(bad)


def test_cli_uses_the_cache_by_default_and_no_cache_skips_it(runner, tree, tmp_path):
    from lookalike.cli import cli

    db = tmp_path / "cli.sqlite"
    args = ["scan", str(tree), "-q", "-j", "1", "--format", "json"]
    assert runner.invoke(cli, [*args, "--cache", str(db)]).exit_code == 0
    assert len(HashCache(db)) == 8
    res = runner.invoke(cli, [*args, "--no-cache"])
    assert res.exit_code == 0 and '"from_cache": 0' in res.output


def test_files_refused_by_a_limit_are_retried_when_the_limit_is_raised(tmp_path, scene):
    root = tmp_path / "imgs"
    root.mkdir()
    scene(1, (300, 200)).save(root / "big.png")
    with HashCache(tmp_path / "c.sqlite") as cache:
        low = lookalike.scan(root, cache=cache, workers=1, max_pixels=1000)
        assert [e.error for e in low.errors] == ["too-large"]
        high = lookalike.scan(root, cache=cache, workers=1)
    assert high.errors == [] and high.stats["hashed"] == 1
