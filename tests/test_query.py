"""Query new images against the hash cache without rescanning the collection."""

from __future__ import annotations

import json

import lookalike
from lookalike.cache import HashCache
from lookalike.config import ScanConfig
from lookalike.query import find_matches


def test_new_images_find_their_cached_originals(tmp_path, scene):
    lib = tmp_path / "library"
    lib.mkdir()
    for i in range(12):
        scene(i, (200, 150)).save(lib / f"{i}.png")
    config = ScanConfig(method="phash", threshold=8, workers=1)
    with HashCache(tmp_path / "c.sqlite") as cache:
        lookalike.scan(lib, config=config, cache=cache)
        new = tmp_path / "incoming"
        new.mkdir()
        scene(3, (200, 150)).resize((100, 75)).save(new / "three_small.jpg", quality=85)
        scene(99, (200, 150)).save(new / "unrelated.png")
        (new / "broken.png").write_bytes(b"not a png")
        results, problems = find_matches(sorted(new.iterdir()), cache, config)
    by_name = {r.query.path.rsplit("/", 1)[1]: r for r in results}
    assert [rec.path for rec, _ in by_name["three_small.jpg"].matches] == [str(lib / "3.png")]
    assert by_name["unrelated.png"].matches == ()
    assert [p.error for p in problems] == ["unsupported-format"]


def test_query_is_limited_to_a_folder_and_ignores_itself(tmp_path, scene):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    scene(1).save(a / "x.png")
    scene(1).save(b / "x.png")
    config = ScanConfig(method="dhash", threshold=2, workers=1)
    with HashCache(tmp_path / "c.sqlite") as cache:
        lookalike.scan(tmp_path, config=config, cache=cache)
        (everywhere,), _ = find_matches([a / "x.png"], cache, config)
        (only_a,), _ = find_matches([a / "x.png"], cache, config, under=str(a))
    assert [r.path for r, _ in everywhere.matches] == [str(b / "x.png")]
    assert only_a.matches == ()


def test_query_cli_prints_matches(runner, tmp_path, scene):
    from lookalike.cli import cli

    lib = tmp_path / "lib"
    lib.mkdir()
    scene(5).save(lib / "five.png")
    db = str(tmp_path / "c.sqlite")
    assert runner.invoke(cli, ["scan", str(lib), "-m", "phash", "-j", "1", "-q", "--cache",
                               db]).exit_code == 0
    scene(5).save(tmp_path / "q.jpg", quality=80)
    res = runner.invoke(cli, ["query", str(tmp_path / "q.jpg"), "-m", "phash", "-t", "8",
                              "--cache", db, "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["queries"][0]["matches"][0]["path"] == str(lib / "five.png")
