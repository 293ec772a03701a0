"""Query new images against the hash cache without rescanning the collection."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

import lookalike
from lookalike.analysis.query import find_matches
from lookalike.config import ScanConfig
from lookalike.errors import ConfigError
from lookalike.store.cache import HashCache


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


@pytest.mark.parametrize("settings", [["--invariant", "none"], ["--keep-borders"]])
def test_query_answers_from_a_cache_of_a_scan_without_invariance_or_trimming(
        runner, tmp_path, scene, settings):
    """Both are README scan examples; query had no way to name them and said 'query with
    the settings of the scan'."""
    from lookalike.cli import cli

    lib = tmp_path / "lib"
    lib.mkdir()
    scene(5).save(lib / "five.png")
    db = str(tmp_path / "c.sqlite")
    assert runner.invoke(cli, ["scan", str(lib), "-j", "1", "-q", "--cache", db,
                               *settings]).exit_code == 0
    scene(5).save(tmp_path / "q.jpg", quality=80)
    query = ["query", str(tmp_path / "q.jpg"), "--cache", db, "--format", "json"]
    res = runner.invoke(cli, query, standalone_mode=False)  # the defaults: not the cache's
    assert isinstance(res.exception, ConfigError)
    assert "invariance, border trimming" in str(res.exception)
    res = runner.invoke(cli, [*query, *settings])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["queries"][0]["matches"][0]["path"] == str(lib / "five.png")


def test_a_blank_query_matches_its_byte_copies_only(tmp_path):
    from PIL import Image

    lib = tmp_path / "lib"
    lib.mkdir()
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        Image.new("RGB", (64, 64), colour).save(lib / f"{name}.png")
    db = tmp_path / "c.sqlite"
    lookalike.scan(lib, workers=1, cache=db)
    query = tmp_path / "q.png"
    query.write_bytes((lib / "red.png").read_bytes())
    Image.new("RGB", (64, 64), (0, 255, 0)).save(tmp_path / "green.png")
    (red, green) = find_matches([query, tmp_path / "green.png"], db)[0]
    assert [r.path for r, _ in red.matches] == [str(lib / "red.png")]
    assert green.matches == ()


# ------------------------------------------------------- never "0 matches" when it cannot answer


def _scanned(tmp_path, scene, method="phash", **kw):
    """A library of 4 images scanned into a cache; returns (library, cache path)."""
    lib = tmp_path / "library"
    lib.mkdir()
    for i in range(4):
        scene(i, (160, 120)).save(lib / f"{i}.png")
    db = tmp_path / "c.sqlite"
    with HashCache(db) as cache:
        lookalike.scan(lib, config=ScanConfig(method=method, workers=1, **kw), cache=cache)
    return lib, db


def _cli_error(argv, capsys):
    from lookalike.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 2, (out, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and not out, err
    return err


def test_query_only_reads_the_cache_file_it_is_given(tmp_path, scene, capsys):
    """A mistyped --cache naming an empty file became a 28 KB database; a text file must
    stay as it was too."""
    scene(1).save(tmp_path / "q.png")
    empty, notes = tmp_path / "empty.sqlite", tmp_path / "notes.txt"
    empty.write_bytes(b"")
    notes.write_text("my notes\n")
    assert "not a lookalike hash cache" in _cli_error(
        ["query", str(tmp_path / "q.png"), "--cache", str(empty)], capsys)
    err = _cli_error(["query", str(tmp_path / "q.png"), "--cache", str(notes)], capsys)
    assert "not a lookalike hash cache" in err and "delete" not in err
    assert empty.read_bytes() == b"" and notes.read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.sqlite", "notes.txt", "q.png"]


def test_a_cache_of_an_older_version_says_a_scan_updates_it(tmp_path, scene, capsys):
    import sqlite3

    scene(1).save(tmp_path / "q.png")
    db = tmp_path / "old.sqlite"
    HashCache(db).close()
    with sqlite3.connect(db) as con:
        con.execute("UPDATE meta SET value = '2' WHERE name = 'schema'")
    err = _cli_error(["query", str(tmp_path / "q.png"), "--cache", str(db)], capsys)
    assert "older lookalike; one scan with this version updates it" in err


def test_a_cache_of_other_settings_is_an_error_that_lists_what_it_holds(tmp_path, scene,
                                                                          capsys):
    lib, db = _scanned(tmp_path, scene, method="phash")
    for config in (ScanConfig(method="dhash"), ScanConfig(method="phash", hash_size=16),
                   ScanConfig(method="phash", invariant="none")):
        with pytest.raises(ConfigError, match="has no hashes made with") as info:
            find_matches([lib / "0.png"], db, config)
        assert "phash 8, fast decode, invariant dihedral (4 files)" in str(info.value)
    err = _cli_error(["query", str(lib / "0.png"), "-m", "dhash", "--cache", str(db)], capsys)
    assert "dhash 8" in err and "phash 8, fast decode" in err


def test_a_full_decode_query_reads_a_fast_scans_hashes_too(tmp_path, scene):
    """A fast scan also stores full-decode hashes of the few large JPEGs it decodes again to
    confirm a match; a `--decode full` query read those few only and said "0 matches" for
    every other image of the collection."""
    lib, db = _scanned(tmp_path, scene, method="phash")
    with HashCache(db) as cache:  # full-decode hashes of one file, as a confirmation leaves
        lookalike.scan(lib / "0.png", config=ScanConfig(method="phash", decode="full",
                                                       workers=1), cache=cache)
    query = tmp_path / "q.png"
    scene(2, (160, 120)).save(query)
    for decode in ("fast", "full"):
        results, _ = find_matches([query], db, ScanConfig(method="phash", decode=decode))
        assert [m.path for m, _ in results[0].matches] == [str(lib / "2.png")], decode


def test_a_full_decode_query_refuses_a_large_jpegs_fast_hash(tmp_path, scene):
    """A large JPEG's fast hash comes from a reduced decode (up to 52 bits off its full
    hash): a full-decode query compared with it missed the file's own byte copy."""
    from lookalike.config import FAST_REDUCE_FROM_SIDE

    lib, db = _scanned(tmp_path, scene, method="phash")
    side = FAST_REDUCE_FROM_SIDE
    scene(7, (side + 200, side)).save(lib / "big.jpg", quality=90)
    with HashCache(db) as cache:
        lookalike.scan(lib, config=ScanConfig(method="phash", workers=1), cache=cache)
    query = tmp_path / "q.jpg"
    query.write_bytes((lib / "big.jpg").read_bytes())  # its byte copy
    with pytest.raises(ConfigError, match=r"only fast-decode hashes of 1 image .*big\.jpg"):
        find_matches([query], db, ScanConfig(method="phash", decode="full"))
    results, _ = find_matches([query], db, ScanConfig(method="phash"))
    assert [m.path for m, d in results[0].matches if d == 0] == [str(lib / "big.jpg")]
    # Its file gone, its row (the cache keeps rows) is no reason to refuse (the second
    # review: refused for ever, even after the full-decode scan the message asks for).
    (lib / "big.jpg").unlink()
    results, _ = find_matches([query], db, ScanConfig(method="phash", decode="full"))
    assert all(m.path != str(lib / "big.jpg") for m, _ in results[0].matches)


def test_a_full_decode_query_refuses_a_camera_raws_fast_hash(tmp_path, scene):
    """A RAW is hashed from its JPEG preview, which fast mode reduces as any JPEG: a
    full-decode query used its fast hash and missed its own byte copy (d=1 at -t 0)."""
    pytest.importorskip("rawpy")
    from lookalike.config import FAST_REDUCE_FROM_SIDE
    from test_raw import make_dng

    lib, db = _scanned(tmp_path, scene, method="phash")
    side = FAST_REDUCE_FROM_SIDE + 200  # even, as make_dng needs
    (lib / "shot.dng").write_bytes(make_dng(scene(7, (side + 400, side))))
    with HashCache(db) as cache:
        lookalike.scan(lib, config=ScanConfig(method="phash", workers=1), cache=cache)
    query = tmp_path / "q.dng"
    query.write_bytes((lib / "shot.dng").read_bytes())
    with pytest.raises(ConfigError, match=r"only fast-decode hashes of 1 image .*shot\.dng"):
        find_matches([query], db, ScanConfig(method="phash", decode="full"))


def test_an_empty_or_missing_cache_is_an_error_and_is_not_created(tmp_path, scene, capsys):
    scene(1).save(tmp_path / "q.png")
    HashCache(tmp_path / "empty.sqlite").close()
    with pytest.raises(ConfigError, match="holds no hashes"):
        find_matches([tmp_path / "q.png"], tmp_path / "empty.sqlite")
    missing = tmp_path / "nope.sqlite"
    err = _cli_error(["query", str(tmp_path / "q.png"), "--cache", str(missing)], capsys)
    assert "does not exist" in err and not missing.exists()


def test_missing_or_folder_query_images_and_a_missing_folder_are_errors(tmp_path, scene,
                                                                        capsys):
    lib, db = _scanned(tmp_path, scene)
    base = ["query", "-m", "phash", "--cache", str(db)]
    err = _cli_error([*base, str(tmp_path / "gone.png")], capsys)
    assert "gone.png does not exist" in err
    err = _cli_error([*base, str(lib)], capsys)
    assert "is a folder" in err
    err = _cli_error([*base, str(lib / "0.png"), "--in", str(tmp_path / "elsewhere")], capsys)
    assert "elsewhere" in err and "does not exist" in err
    (tmp_path / "other").mkdir()
    err = _cli_error([*base, str(lib / "0.png"), "--in", str(tmp_path / "other")], capsys)
    assert "no hashes of images under" in err


def test_matches_gone_since_the_scan_are_marked(tmp_path, scene, runner):
    from lookalike.analysis.query import render_matches
    from lookalike.cli import cli

    lib, db = _scanned(tmp_path, scene)
    scene(2, (160, 120)).save(lib / "2_copy.png")
    with HashCache(db) as cache:
        lookalike.scan(lib, config=ScanConfig(method="phash", workers=1), cache=cache)
    (lib / "2_copy.png").unlink()
    (result,), problems = find_matches([lib / "2.png"], db, ScanConfig(method="phash"))
    assert not problems
    assert [r.path for r, _ in result.matches] == [str(lib / "2_copy.png")]
    assert result.missing == {str(lib / "2_copy.png")} and result.is_missing(result.matches[0][0])
    assert "(gone since the scan)" in render_matches([result])
    res = runner.invoke(cli, ["query", str(lib / "2.png"), "-m", "phash", "--cache", str(db),
                              "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["queries"][0]["matches"][0]["missing"] is True


def test_a_cache_filled_without_pixel_digests_answers_too(tmp_path, scene):
    # Hashes do not depend on the pixel digest: a cache without them holds the same hashes.
    lib, db = _scanned(tmp_path, scene, pixel_digest=False)
    scene(1, (160, 120)).save(tmp_path / "q.png")
    with HashCache(db) as cache:
        (result,), _ = find_matches([tmp_path / "q.png"], cache,
                                    ScanConfig(method="phash", threshold=0))
    assert [r.path for r, _ in result.matches] == [str(lib / "1.png")]


def test_an_unreadable_query_image_makes_the_cli_exit_1(tmp_path, scene, runner):
    from lookalike.cli import cli

    lib, db = _scanned(tmp_path, scene)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    res = runner.invoke(cli, ["query", str(tmp_path / "bad.png"), str(lib / "0.png"), "-m",
                              "phash", "--cache", str(db)])
    assert res.exit_code == 1 and "error [unsupported-format]" in res.stderr
    assert "error [" not in res.stdout and "0.png: 0 matches" in res.stdout  # results only


def test_text_and_json_say_whether_an_embedding_match_was_verified():
    from lookalike.analysis.query import QueryResult, matches_to_dict, render_matches
    from lookalike.model import Hash, ImageRecord

    def record(path: str) -> ImageRecord:
        return ImageRecord(path=path, size_bytes=1, mtime_ns=0, width=1, height=1,
                           format="PNG", hash=Hash("dhash-z", 16, (0,)), digest="d")

    query, by_hash, by_embedding = record("/q.png"), record("/a.png"), record("/b.png")
    for kind in ("verified", "embedding"):
        result = QueryResult(query, ((by_hash, 2), (by_embedding, 40)), frozenset(),
                             {"/b.png": 0.81}, kind)
        text = render_matches([result])
        assert f"d=-   /b.png  ({kind} 0.81)" in text and "d=2   /a.png\n" in text
        matches = matches_to_dict([result], [])["queries"][0]["matches"]
        assert [(m["match"], m["similarity"]) for m in matches] == [
            ("hash", None), (kind, 0.81)]


def test_matches_inside_a_tar_shard_are_not_called_gone(tmp_path, scene):
    # os.path.exists("shard.tar#member") is False: every match in a shard was "(gone since
    # the scan)" while the shard was right there; it is gone once the shard is.
    import tarfile

    scene(3, (200, 150)).save(tmp_path / "a.png")
    with tarfile.open(tmp_path / "s#1.tar", "w") as tf:  # a '#' in the shard's own name
        tf.add(tmp_path / "a.png", arcname="x#y.png")
    db = tmp_path / "c.sqlite"
    config = ScanConfig(method="phash", workers=1)
    with HashCache(db) as cache:
        lookalike.scan(tmp_path / "s#1.tar", config=config, cache=cache)
    scene(3, (200, 150)).save(tmp_path / "q.png")
    (result,), _ = find_matches([tmp_path / "q.png"], db, ScanConfig(method="phash"))
    assert [r.path for r, _ in result.matches] == [f"{tmp_path / 's#1.tar'}#x#y.png"]
    assert result.missing == frozenset()
    (tmp_path / "s#1.tar").unlink()
    (result,), _ = find_matches([tmp_path / "q.png"], db, ScanConfig(method="phash"))
    assert result.missing == {f"{tmp_path / 's#1.tar'}#x#y.png"}


def test_a_match_changed_since_the_scan_is_marked(tmp_path, scene, runner):
    # Its cached hash no longer describes it: the match is marked, not passed off as a copy.
    from lookalike.analysis.query import render_matches
    from lookalike.cli import cli

    lib, db = _scanned(tmp_path, scene)
    scene(2, (160, 120)).save(tmp_path / "q.png")
    scene(9, (160, 120)).save(lib / "2.png")  # another picture under the cached name
    (result,), _ = find_matches([tmp_path / "q.png"], db, ScanConfig(method="phash"))
    assert [r.path for r, _ in result.matches] == [str(lib / "2.png")]
    assert result.changed == {str(lib / "2.png")} and result.missing == frozenset()
    assert "(changed since the scan: scan again)" in render_matches([result])
    res = runner.invoke(cli, ["query", str(tmp_path / "q.png"), "-m", "phash", "--cache",
                              str(db), "--format", "json"])
    (match,) = json.loads(res.output)["queries"][0]["matches"]
    assert (match["changed"], match["missing"]) == (True, False)
    with HashCache(db) as cache:  # scanned again: no longer a match, nothing marked
        lookalike.scan(lib, config=ScanConfig(method="phash", workers=1), cache=cache)
    (again,), _ = find_matches([tmp_path / "q.png"], db, ScanConfig(method="phash"))
    assert again.matches == () and again.changed == frozenset()


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_the_query_image_is_not_its_own_match_under_another_name(tmp_path, scene, link):
    lib, db = _scanned(tmp_path, scene)
    scene(1, (160, 120)).save(lib / "1_copy.png")
    with HashCache(db) as cache:
        lookalike.scan(lib, config=ScanConfig(method="phash", workers=1), cache=cache)
    other = tmp_path / "q.png"
    (os.symlink if link == "symlink" else os.link)(lib / "1.png", other)
    (result,), _ = find_matches([other], db, ScanConfig(method="phash"))
    assert [r.path for r, _ in result.matches] == [str(lib / "1_copy.png")]


def test_every_fast_key_fills_a_full_decode_query(tmp_path, scene):
    # Review: a full-decode query read the fast-decode rows of the first fast key with any,
    # and missed the files another fast scan (other pixel-digest setting) had cached.
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    scene(1, (160, 120)).save(a / "1.png")
    scene(2, (160, 120)).save(b / "2.png")
    first = ScanConfig(method="phash", workers=1, decode="fast")
    with HashCache(tmp_path / "c.sqlite") as cache:
        lookalike.scan(a, config=first, cache=cache)
        lookalike.scan(b, config=dataclasses.replace(
            first, pixel_digest=not first.pixel_digest), cache=cache)
    for i in (1, 2):
        scene(i, (160, 120)).save(tmp_path / f"q{i}.png")
    for decode in ("fast", "full"):
        results, _ = find_matches([tmp_path / "q1.png", tmp_path / "q2.png"],
                                  tmp_path / "c.sqlite", ScanConfig(method="phash",
                                                                    decode=decode))
        assert [[os.path.basename(r.path) for r, _ in res.matches] for res in results] == [
            ["1.png"], ["2.png"]], decode


def test_a_files_row_that_describes_it_now_wins_over_a_stale_one(tmp_path, scene):
    # Review: of a file's rows under two settings keys, the query's own key's won even when
    # stale (the file replaced since) and the other key's described the file as it is.
    lib, db = _scanned(tmp_path, scene)
    scene(9, (160, 120)).save(lib / "2.png")  # replaced, then scanned with other settings
    with HashCache(db) as cache:
        lookalike.scan(lib, config=ScanConfig(method="phash", workers=1, pixel_digest=False),
                       cache=cache)
    scene(9, (160, 120)).save(tmp_path / "q.png")
    (res,), _ = find_matches([tmp_path / "q.png"], db, ScanConfig(method="phash"))
    assert [r.path for r, _ in res.matches] == [str(lib / "2.png")]
    assert res.changed == frozenset()


def test_a_full_decode_query_reads_a_fast_row_newer_than_a_stale_full_one(tmp_path, scene):
    # Review: a file's full-decode row won even when stale and the fast scan after the file
    # changed described it as it is: "0 matches" for its exact copy.
    lib, db = _scanned(tmp_path, scene, decode="full")
    with HashCache(db) as cache:
        scene(9, (160, 120)).save(lib / "2.png")
        lookalike.scan(lib, config=ScanConfig(method="phash", workers=1, decode="fast"),
                       cache=cache)
    scene(9, (160, 120)).save(tmp_path / "q.png")
    (res,), _ = find_matches([tmp_path / "q.png"], db, ScanConfig(method="phash",
                                                                   decode="full"))
    assert [r.path for r, _ in res.matches] == [str(lib / "2.png")] and not res.changed
