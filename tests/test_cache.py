"""The SQLite hash cache: re-scans hash only what changed; settings invalidate it."""

from __future__ import annotations

import os
import sqlite3

import pytest

import lookalike
from lookalike.config import ScanConfig
from lookalike.errors import ConfigError
from lookalike.model import FileFacts
from lookalike.store.cache import HashCache


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
    with pytest.raises(lookalike.ConfigError, match="name another file"):
        HashCache(bad)


@pytest.mark.slow  # 0.5 s: 300 images scanned four times
def test_a_cache_damaged_past_its_first_pages_stops_the_scan_with_one_line(tmp_path, capsys):
    """It opened fine, and the scan died with sqlite3.DatabaseError's traceback when it read
    (or wrote) a damaged page."""
    import numpy as np
    from PIL import Image

    from lookalike.cli import main

    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(300):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
            tmp_path / "imgs" / f"{i}.png")
    cache = tmp_path / "c.sqlite"
    scan(tmp_path / "imgs", cache)
    good = cache.read_bytes()
    failed = 0
    for offset in (20000, 40000, 60000):  # data pages of the files table
        cache.write_bytes(good[:offset] + b"\xa5" * 2000 + good[offset + 2000:])
        with pytest.raises(SystemExit) as exc:
            main(["scan", str(tmp_path / "imgs"), "--cache", str(cache), "-q", "-j", "1"])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        if exc.value.code:
            failed += 1
            assert exc.value.code == 1 and len(err.strip().splitlines()) == 1
            assert f"the hash cache {cache} is damaged" in err and "delete it" in err
    assert failed  # the damage was met


def test_a_cache_that_cannot_be_made_or_written_says_why(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(lookalike.ConfigError, match="cannot create the folder of the hash"):
        HashCache(tmp_path / "file" / "sub" / "c.sqlite")  # was NotADirectoryError
    cache = tmp_path / "c.sqlite"
    HashCache(cache).close()
    # A read-only file or mount (root writes through permissions, so it is simulated):
    # SQLite's "unable to open database file" came with advice to delete the cache.
    for wal in tmp_path.glob("c.sqlite-*"):
        wal.unlink()
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(lookalike.ConfigError, match="is read-only"):
        HashCache(cache)
    # Refused before SQLite opened it: no -wal or -shm files left beside it.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("c.sqlite")] == ["c.sqlite"]
    monkeypatch.setattr(sqlite3, "connect", _refusing_connect)
    with pytest.raises(lookalike.ConfigError, match="is read-only"):
        HashCache(cache)
    monkeypatch.undo()
    # A folder, or an empty path (the current folder), was "delete it if damaged".
    with pytest.raises(lookalike.ConfigError, match="is a folder; name a cache file"):
        HashCache(tmp_path)
    with pytest.raises(lookalike.ConfigError, match="the hash cache path is empty"):
        HashCache("")


def _refusing_connect(*args, **kwargs):
    raise sqlite3.OperationalError("unable to open database file")


def test_an_sqlite_file_of_someone_else_is_refused_and_left_unchanged(tmp_path):
    """`scan --cache app.sqlite` dropped the app's own table named groupings (an old cache's
    table, cleaned up by name) and set the file to WAL mode."""
    import sqlite3

    app = tmp_path / "app.sqlite"
    with sqlite3.connect(app) as db:
        db.execute("CREATE TABLE groupings (who TEXT)")
        db.execute("INSERT INTO groupings VALUES ('the user')")
    before = app.read_bytes()
    with pytest.raises(lookalike.ConfigError, match="not a lookalike hash cache") as info:
        HashCache(app)
    assert "nothing was changed" in str(info.value)
    assert app.read_bytes() == before and not (tmp_path / "app.sqlite-wal").exists()
    notes = tmp_path / "notes.sqlite"
    notes.write_text("my notes, not a database\n")
    with pytest.raises(lookalike.ConfigError, match="damaged, delete it") as info:
        HashCache(notes)
    assert "otherwise name another file" in str(info.value)


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
        # ... and a file hashed under a high limit is refused under a lower one, as a scan
        # without the cache refuses it (the cache answered with its hash).
        again = lookalike.scan(root, cache=cache, workers=1, max_pixels=1000)
        assert [e.error for e in again.errors] == ["too-large"] and not again.records
        assert lookalike.scan(root, cache=cache, workers=1).stats["from_cache"] == 1
        # The file size the limit allows counts too: a small picture in a 65 MiB file
        # (sparse: zeros after the JPEG) is refused under a limit whose cap is 64 MiB.
        (root / "big.png").unlink()
        small = root / "padded.jpg"
        scene(2, (64, 48)).save(small, quality=90)
        with open(small, "r+b") as fh:
            fh.truncate(65 << 20)
        assert lookalike.scan(root, cache=cache, workers=1).records
        fresh = lookalike.scan(root, workers=1, max_pixels=1_000_000)
        cached = lookalike.scan(root, cache=cache, workers=1, max_pixels=1_000_000)
        assert [e.error for e in fresh.errors] == ["too-large"] == [
            e.error for e in cached.errors] and not cached.records


def _split(cache, entries, config):
    records, problems, todo = cache.lookup(entries, config)
    return ({r.path: r for r in records}, {p.path: p for p in problems},
            [e.path for e in todo])


@pytest.mark.parametrize("many_others", [False, True])
def test_lookup_matches_what_was_stored_by_range_scan_or_join(tree, tmp_path, scene,
                                                              many_others, monkeypatch):
    # lookup() reads the wanted paths' rows with one range scan when the cache holds about
    # the scanned files, else through a join; both must give the same split.
    from lookalike.config import ScanConfig
    from lookalike.inputs.walk import FileEntry, iter_files
    from lookalike.store import cache as cache_mod

    config = ScanConfig(method="phash", threshold=6, workers=1)
    with HashCache(tmp_path / "c.sqlite") as cache:
        cold = scan(tree, cache)
        # Rows of other folders sorting before, inside and after the tree's path range.
        fake = cold.records[0]
        others = [os.path.join(str(tmp_path), name, "x.png")
                  for name in ("a", "imgs0", "imgs/0.png.d", "zz")]
        if many_others:
            others += [os.path.join(str(tree), f"gone{i:03d}.png") for i in range(300)]
        cache.add([lookalike.ImageRecord(
            path=p, size_bytes=1, mtime_ns=2, width=3, height=4, format="PNG", hash=fake.hash,
            digest="d", pixel_digest=None) for p in others], [], config)
        cache.flush()
        entries = [e for e in iter_files([tree]) if isinstance(e, FileEntry)]
        scene(9).save(tree / "new.png")  # not in the cache
        entries.append(FileEntry(str(tree / "new.png"), 1, 1, str(tree)))
        used: list[str] = []
        db = cache._db
        monkeypatch.setattr(cache, "_db", _Spy(db, used))
        records, problems, todo = _split(cache, entries, config)
        monkeypatch.setattr(cache, "_db", db)
    assert any("JOIN" in sql for sql in used) == many_others
    assert list(records.values()) == sorted(cold.records, key=lambda r: r.path)
    assert list(problems.values()) == cold.errors
    assert todo == [str(tree / "new.png")]
    assert cold.errors  # cached failures are read back too
    assert cache_mod._COLUMNS.startswith("path, size, mtime_ns, ok")


class _Spy:
    """A sqlite3 connection that records the SQL it runs."""

    def __init__(self, db: sqlite3.Connection, log: list[str]) -> None:
        self._db, self._log = db, log

    def execute(self, sql: str, *args):
        self._log.append(sql)
        return self._db.execute(sql, *args)

    def executemany(self, sql: str, *args):
        self._log.append(sql)
        return self._db.executemany(sql, *args)


def test_lookup_rebuilds_records_equal_to_the_hashed_ones(tree, tmp_path):
    # The fast record rebuild gives records equal field by field, with the entry's source.
    with HashCache(tmp_path / "c.sqlite") as cache:
        cold = scan(tree, cache)
        warm = scan(tree, cache)
    assert warm.stats["from_cache"] == 8
    for a, b in zip(cold.records, warm.records, strict=True):
        assert a == b and type(b.hash) is type(a.hash) and b.source == str(tree)


def test_lookup_of_nothing_and_of_changed_rows(tree, tmp_path):
    from lookalike.config import ScanConfig
    from lookalike.inputs.walk import FileEntry

    config = ScanConfig(method="phash", threshold=6, workers=1)
    with HashCache(tmp_path / "c.sqlite") as cache:
        assert cache.lookup([], config) == ([], [], [])
        cold = scan(tree, cache)
        r = cold.records[0]
        stale = [FileEntry(r.path, r.size_bytes + 1, r.mtime_ns, ""),
                 FileEntry(r.path + "x", r.size_bytes, r.mtime_ns, "")]
        assert cache.lookup(stale, config) == ([], [], stale)


def test_warm_records_carry_the_facts_read_when_hashing(tree, tmp_path):
    from lookalike.config import ScanConfig
    from lookalike.imaging.facts import read_file_facts

    with HashCache(tmp_path / "c.sqlite") as cache:
        cold = scan(tree, cache)
        warm = scan(tree, cache)
        listed = list(cache.records(ScanConfig(method="phash", threshold=6)))
    assert warm.stats["hashed"] == 0
    for rec in (*cold.records, *warm.records, *listed):
        assert rec.facts == read_file_facts(rec.path) and rec.facts.format == "PNG"


def _decisions(result) -> dict:
    """The default keep policy's decision on each group of ``result``."""
    return lookalike.KeepPolicy().decide_all(result.groups).decisions


def _as_schema_1(path) -> None:
    """Turn a cache file into what schema 1 wrote: no facts or embedding column."""
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE files DROP COLUMN facts")
    db.execute("ALTER TABLE files DROP COLUMN embedding")
    db.execute("ALTER TABLE files DROP COLUMN ctime_ns")
    db.execute("UPDATE meta SET value = '1' WHERE name = 'schema'")
    db.commit()
    db.close()


def test_a_schema_1_cache_is_migrated_keeping_its_hashes(tree, tmp_path):
    path = tmp_path / "c.sqlite"
    with HashCache(path) as cache:
        cold = scan(tree, cache)
    _as_schema_1(path)
    with HashCache(path) as cache, HashCache(path) as other:  # a second opener: no-op
        warm = scan(tree, cache)
        (tree / "0_small.png").unlink()
        scan(tree, other)  # the records are written again, with their facts
    assert warm.stats["hashed"] == 0
    # Rows of schema 1 have no facts: the scan reads its group members' headers once (and
    # stores them), the keep policy reads any other's, to the same end.
    members = {m.record.path for g in warm.groups for m in g.members}
    assert all((r.facts is not None) == (r.path in members) for r in warm.records)
    assert [g.paths for g in warm.groups] == [g.paths for g in cold.groups]
    assert _decisions(warm) == _decisions(cold)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone() == ("4",)
    db.execute("UPDATE meta SET value = '5' WHERE name = 'schema'")  # a newer version's
    db.commit()
    db.close()
    for read_only in (False, True):  # a scan, and a query (docs review)
        with pytest.raises(lookalike.ConfigError, match=r"of a newer lookalike \(cache schema 5"):
            HashCache(path, read_only=read_only)


@pytest.mark.slow  # 2 s: a large picture decoded in full
def test_records_confirmed_by_a_full_decode_carry_facts(tmp_path, scene):
    # Large JPEG near-copies: fast mode reduces them, so grouping hashes them again in full.
    root = tmp_path / "imgs"
    root.mkdir()
    for seed in range(3):
        scene(seed, (1600, 1200)).save(root / f"{seed}.jpg", quality=92)
        scene(seed, (1600, 1200)).save(root / f"{seed}_copy.jpg", quality=60)
    with HashCache(tmp_path / "c.sqlite") as cache:
        cold = lookalike.scan(root, cache=cache, workers=1)
        warm = lookalike.scan(root, cache=cache, workers=1)
    assert cold.stats["exact_needed"] == 6 and warm.stats["hashed"] == 0
    for result in (cold, warm):
        assert sorted(r.facts.quality for r in result.records) == [60] * 3 + [92] * 3
    assert _decisions(warm) == _decisions(cold)


def test_the_parquet_output_keeps_facts_and_reads_parts_without_them(tree, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from lookalike.config import ScanConfig
    from lookalike.imaging.facts import read_file_facts
    from lookalike.inputs.walk import FileEntry, iter_files
    from lookalike.store.parquet import ParquetStore

    out = tmp_path / "out.parquet"
    config = ScanConfig(method="phash", threshold=6, workers=1)
    lookalike.scan(tree, parquet_out=str(out), method="phash", threshold=6, workers=1)
    entries = [e for e in iter_files([tree]) if isinstance(e, FileEntry)]
    records, _, todo = ParquetStore(out).lookup(entries, config)
    assert len(records) == 7 and not todo
    assert all(r.facts == read_file_facts(r.path) != FileFacts() for r in records)
    # A part written before the facts column (schema version 1): records without facts.
    for part in out.iterdir():
        table = pq.read_table(part)
        pq.write_table(table.drop_columns(["facts"]).replace_schema_metadata(
            table.schema.metadata), part)
        assert "facts" not in pa.parquet.read_schema(part).names
    records, _, todo = ParquetStore(out).lookup(entries, config)
    assert len(records) == 7 and not todo and all(r.facts is None for r in records)


def test_names_the_cache_cannot_hold_are_counted_and_said(tmp_path, scene):
    # A name of bytes that are not UTF-8 cannot be an SQLite key: the file was left out of
    # the cache without a word, so query never found it.
    from lookalike.report.schema import render_text

    folder = tmp_path / "imgs"
    folder.mkdir()
    scene(1).save(folder / "plain.png")
    scene(1).save(os.fsdecode(bytes(folder) + b"/caf\xe9.png"))
    result = scan(folder, tmp_path / "c.sqlite")
    assert result.stats["uncached_names"] == 1
    assert "1 image named in bytes that are not UTF-8" in render_text(result)
    assert "uncached_names" not in scan(folder, None).stats  # no cache, nothing to say


def test_a_locked_or_full_cache_is_not_called_damaged(tmp_path):
    """Every SQLite error was "damaged; delete it", a lock held by another scan and a full
    disk too (whose own error a failed ROLLBACK also hid)."""
    from array import array

    from lookalike.config import ScanConfig
    from lookalike.grouping.edges import Edges, find_edges

    locked = tmp_path / "locked.sqlite"
    cache = HashCache(locked)
    cache._db.execute("PRAGMA busy_timeout=100")  # the 60 s wait, running out sooner
    other = sqlite3.connect(locked, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(lookalike.LookalikeError, match="another scan holds it") as info:
        cache.save_edges(ScanConfig(), ["/x"], find_edges((), 256, 6))
    assert "delete" not in str(info.value)
    other.execute("ROLLBACK")
    cache.close()
    full = HashCache(tmp_path / "full.sqlite")
    pages = full._db.execute("PRAGMA page_count").fetchone()[0]
    full._db.execute(f"PRAGMA max_page_count={pages}")  # a full disk, as SQLite meets it
    with pytest.raises(lookalike.LookalikeError, match="the disk is full") as info:
        codes = range(100_000)  # no pairs needed: a big row is what fills the disk
        packed = b"".join(c.to_bytes(32, "big") for c in codes)
        full.save_edges(ScanConfig(), ["/x"],
                        Edges.of(256, 6, tuple(codes), packed, array("I")))
    assert "delete" not in str(info.value)
    full.close()


def test_facts_an_older_version_stored_are_read_once_more_and_kept(tree, tmp_path):
    """Facts an older version stored (before FileFacts.frames, or before `software` and
    taken's fraction of a second) are unknown: a scan reads the group members' headers once
    and stores them, so the keep policy does not read them again on every scan."""
    import json

    old = ["PNG", "RGB", None, True, False, None, None, 0]
    assert FileFacts.from_text(json.dumps(old)) is None
    assert FileFacts.from_text(json.dumps([*old, False])) is None
    assert FileFacts.from_text(json.dumps([*old, False, None])) is None  # before `exposure`
    db = tmp_path / "c.sqlite"
    first = scan(tree, db)
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT path, facts FROM files WHERE ok = 1").fetchall()
        con.executemany("UPDATE files SET facts = ? WHERE path = ?",
                        [(json.dumps(json.loads(f)[:-1]), p) for p, f in rows])
    members = {m.record.path for g in first.groups for m in g.members}
    second = scan(tree, db)
    assert all(r.facts is not None and r.facts.frames is False
               for r in second.records if r.path in members)
    with sqlite3.connect(db) as con:
        stored = dict(con.execute("SELECT path, facts FROM files WHERE ok = 1").fetchall())
    assert all(len(json.loads(stored[p])) == 12 for p in members)  # kept: read once


def test_an_older_caches_pixel_digest_of_an_animation_is_not_trusted(tmp_path, scene):
    """A cache written before files of several pictures were known holds a GIF's pixel
    digest of its first frame: the GIF and a still of that frame were an 'exact' group."""
    import json

    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    first = scene(1).quantize(64).convert("RGB")
    first.save(folder / "still.png")
    first.save(folder / "clip.gif", save_all=True, duration=100,
               append_images=[first.transpose(Image.Transpose.ROTATE_180)])
    db = tmp_path / "c.sqlite"
    (group,) = scan(folder, db).groups
    assert group.kind == "near"
    with sqlite3.connect(db) as con:  # as the older version stored them
        rows = con.execute("SELECT path, facts FROM files WHERE ok = 1").fetchall()
        con.executemany("UPDATE files SET facts = ?, pixel_digest = 'same' WHERE path = ?",
                        [(json.dumps(json.loads(f)[:-1]), p) for p, f in rows])
    (group,) = scan(folder, db).groups
    assert group.kind == "near"


def test_a_cache_another_scan_holds_at_open_is_not_called_damaged(tmp_path, monkeypatch):
    # "database is locked" at open came with advice to delete the cache.
    path = tmp_path / "c.sqlite"
    HashCache(path).close()
    real = sqlite3.connect

    def connect(*args, **kwargs):
        db = real(*args, **kwargs)
        holder = real(path, isolation_level=None)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        db.execute("PRAGMA busy_timeout=50")  # the 60 s wait, running out sooner
        connect.holder = holder
        return db

    monkeypatch.setattr(sqlite3, "connect", connect)
    with pytest.raises(lookalike.ConfigError, match="another scan holds it") as info:
        HashCache(path)
    assert "delete" not in str(info.value)
    connect.holder.close()


def test_a_parquet_output_answers_under_the_pixel_limit_of_the_scan(tmp_path, scene):
    # The Parquet store (the cluster's cache) kept answering with hashes of files the
    # scan's lower limit refuses.
    pytest.importorskip("pyarrow")
    root = tmp_path / "imgs"
    root.mkdir()
    scene(1, (300, 200)).save(root / "big.png")
    out = tmp_path / "out"
    assert lookalike.scan(root, workers=1, parquet_out=out).records
    low = lookalike.scan(root, workers=1, parquet_out=out, max_pixels=1000)
    assert [e.error for e in low.errors] == ["too-large"] and not low.records
    assert lookalike.scan(root, workers=1, parquet_out=out).records


def test_a_problem_stored_without_its_files_version_is_read_again(tmp_path, scene):
    # A file list on a Dask cluster lists no sizes, so problems were stored with none: a
    # file repaired since stayed an error in every resumed scan (its row never stale).
    pytest.importorskip("pyarrow")
    from lookalike.config import ScanConfig
    from lookalike.errors import Problem
    from lookalike.inputs.walk import FileEntry
    from lookalike.store.parquet import ParquetStore

    path = tmp_path / "t.png"
    scene(1).save(path)
    config = ScanConfig()
    with ParquetStore(tmp_path / "out") as store:
        store.add([], [Problem(path=str(path), stage="decode", error="truncated",
                               message="image file is truncated")], config)
    st = path.stat()
    entry = FileEntry(str(path), st.st_size, st.st_mtime_ns, str(tmp_path))
    with ParquetStore(tmp_path / "out") as store:
        records, problems, todo = store.lookup([entry], config)
    assert (records, problems) == ([], []) and todo == [entry]
    # With the version known, the stored problem stands for that version.
    with ParquetStore(tmp_path / "out2") as store:
        store.add([], [Problem(path=str(path), stage="decode", error="truncated",
                               message="image file is truncated")], config,
                  sizes={str(path): (st.st_size, st.st_mtime_ns)})
    with ParquetStore(tmp_path / "out2") as store:
        records, problems, todo = store.lookup([entry], config)
    assert [p.error for p in problems] == ["truncated"] and todo == []


def _same_size_and_time(src, dst) -> None:
    """Put ``src``'s bytes in place of ``dst`` (a new file renamed over it, as archive tools
    and editors save) keeping ``dst``'s size and mtime: ``cp -p``, ``rsync -t`` or an
    archive with fixed times do that to a file of fixed size (BMP, PPM, raw TIFF)."""
    st = os.stat(dst)
    with open(src, "rb") as fh:
        data = fh.read()
    assert len(data) == st.st_size
    tmp = f"{dst}.new"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, dst)
    assert (os.stat(dst).st_size, os.stat(dst).st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def _copies_and_another(tmp_path, scene):
    """``data/a.bmp`` and ``data/b.bmp``, one picture twice, and ``y.bmp`` beside the
    folder: another picture of the same size in bytes, to put in b.bmp's place."""
    root = tmp_path / "data"
    root.mkdir()
    x, y = scene(1, (64, 48)), scene(2, (64, 48))
    x.save(root / "a.bmp")
    x.save(root / "b.bmp")
    y.save(tmp_path / "y.bmp")
    return root


def test_a_file_replaced_keeping_size_and_mtime_is_hashed_again_never_removed(tmp_path,
                                                                             scene):
    # Found by the files-changing review: the cache served the old picture's hash for the
    # new bytes, and the digest taken of the new bytes then let apply remove them as a copy
    # of another picture (the only copy of the new one).
    from lookalike.actions.apply import apply
    from lookalike.actions.plan import plan
    from lookalike.report.schema import write_report

    root = tmp_path / "data"
    root.mkdir()
    x, y = scene(1, (64, 48)), scene(2, (64, 48))
    x.save(root / "b.bmp")  # picture X, alone at first
    y.save(tmp_path / "y.bmp")  # picture Y, the same size in bytes
    cache = tmp_path / "c.sqlite"
    with HashCache(cache) as c:
        assert not scan(root, c).groups
    x.save(root / "a.bmp")  # a copy of X arrives...
    _same_size_and_time(tmp_path / "y.bmp", root / "b.bmp")  # ...and b.bmp becomes Y
    with HashCache(cache) as c:
        warm = scan(root, c)
    assert warm.stats["from_cache"] == 0 and not warm.groups, warm.stats
    write_report(warm, tmp_path / "r.json")
    apply(plan(tmp_path / "r.json", action="delete"), journal=tmp_path / "j.jsonl")
    assert (root / "b.bmp").read_bytes() == (tmp_path / "y.bmp").read_bytes()
    with HashCache(cache) as c:  # and unchanged since: from the cache again
        assert scan(root, c).stats["from_cache"] == 2


def test_rows_without_a_change_time_are_dated_once_or_hashed_again(tmp_path, scene):
    # Incremental review: a row stored without the change time (a file not stat'ed by the
    # walk, or one that changed between the walk and its read) was trusted by size and mtime
    # for ever, and so were an older cache's rows.
    root = _copies_and_another(tmp_path, scene)
    cache = tmp_path / "c.sqlite"

    def rows(sql: str = "SELECT ctime_ns FROM files") -> list:
        db = sqlite3.connect(cache)
        try:
            out = db.execute(sql).fetchall()
            db.commit()
            return out
        finally:
            db.close()

    with HashCache(cache) as c:
        scan(root, c)
    rows("UPDATE files SET ctime_ns = NULL")  # as an older cache's rows
    with HashCache(cache) as c:
        assert scan(root, c).stats["from_cache"] == 2  # trusted this once...
    assert all(ct for (ct,) in rows())  # ...and dated
    _same_size_and_time(tmp_path / "y.bmp", root / "b.bmp")
    with HashCache(cache) as c:
        again = scan(root, c)
    assert again.stats["hashed"] == 1 and not again.groups
    rows("UPDATE files SET ctime_ns = 0")  # stored while the change time was unknown
    with HashCache(cache) as c:
        assert scan(root, c).stats["hashed"] == 2
    with HashCache(cache) as c:
        assert scan(root, c).stats["from_cache"] == 2


def test_an_older_caches_row_of_a_file_replaced_since_is_hashed_again(tmp_path, scene):
    # Review: a row without a change time (an older cache's) was trusted by size and mtime
    # when first met and then dated with the walk's change time, so a file replaced (size
    # and mtime kept) before that scan kept the old picture's hash for good.
    root = _copies_and_another(tmp_path, scene)
    cache = tmp_path / "c.sqlite"
    with HashCache(cache) as c:
        assert len(scan(root, c).groups) == 1
    db = sqlite3.connect(cache)
    db.execute("UPDATE files SET ctime_ns = NULL")  # as an older cache's rows
    db.commit()
    db.close()
    _same_size_and_time(tmp_path / "y.bmp", root / "b.bmp")  # after its row was written
    with HashCache(cache) as c:
        again = scan(root, c)
    assert again.stats["hashed"] == 1 and not again.groups, again.stats
    with HashCache(cache) as c:
        assert scan(root, c).stats["from_cache"] == 2


def test_an_older_parquet_parts_row_of_a_file_replaced_since_is_read_again(tmp_path, scene):
    # The same for a resumed --parquet-out whose parts were written before change times
    # were kept (null ctime_ns): trusted while the file is older than the row.
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    root = _copies_and_another(tmp_path, scene)
    out = tmp_path / "out"
    assert len(lookalike.scan(root, workers=1, parquet_out=str(out)).groups) == 1
    for part in out.glob("*.parquet"):
        table = pq.read_table(part)
        at = table.schema.get_field_index("ctime_ns")
        table = table.set_column(at, table.schema.field(at),
                                 pa.nulls(len(table), table.schema.field(at).type))
        pq.write_table(table, part)
    unchanged = lookalike.scan(root, workers=1, parquet_out=str(out))
    assert unchanged.stats["hashed"] == 0 and len(unchanged.groups) == 1, unchanged.stats
    _same_size_and_time(tmp_path / "y.bmp", root / "b.bmp")
    again = lookalike.scan(root, workers=1, parquet_out=str(out))
    assert again.stats["hashed"] == 1 and not again.groups, again.stats


def test_a_resumed_parquet_output_hashes_a_replaced_file_again(tmp_path, scene):
    # Incremental review: a resumed --parquet-out served a file replaced with its size and
    # mtime kept as the old picture (its rows had no change time).
    pytest.importorskip("pyarrow")
    root = _copies_and_another(tmp_path, scene)
    out = tmp_path / "out"
    first = lookalike.scan(root, workers=1, parquet_out=str(out))
    assert len(first.groups) == 1
    _same_size_and_time(tmp_path / "y.bmp", root / "b.bmp")
    again = lookalike.scan(root, workers=1, parquet_out=str(out))
    assert again.stats["hashed"] == 1 and not again.groups, again.stats


def test_resuming_a_parquet_output_over_a_warm_cache_adds_no_rows_again(tmp_path, scene):
    # Second code review: cache hits went to the output without their change time, so each
    # resumed scan found them stale, wrote them again and read their files again.
    pytest.importorskip("pyarrow")
    from lookalike.store.parquet import read_results

    root = tmp_path / "data"
    root.mkdir()
    for k in range(4):
        scene(k, (64, 48)).save(root / f"{k}.png")
    scene(0, (64, 48)).save(root / "copy.png")
    cache, out = tmp_path / "c.sqlite", str(tmp_path / "out")
    lookalike.scan(root, workers=1, cache=cache)
    counts = []
    for _ in range(3):
        lookalike.scan(root, workers=1, cache=cache, parquet_out=out)
        counts.append(read_results(out, latest=False).num_rows)
    assert counts == [5, 5, 5]


def test_records_leaves_out_rows_already_held(tmp_path, scene):
    root = _copies_and_another(tmp_path, scene)
    config = ScanConfig(method="phash", workers=1)  # as scan() below hashes
    with HashCache(tmp_path / "c.sqlite") as c:
        scan(root, c)
        rows = list(c.records(config))
        assert len(rows) == 2
        a = next(r for r in rows if r.path.endswith("a.bmp"))
        held = {a.path: (a.size_bytes, a.mtime_ns)}
        assert [r.path for r in c.records(config, held=held)] == [
            r.path for r in rows if r.path != a.path]
        held[a.path] = (a.size_bytes + 1, a.mtime_ns)  # another version of it: built
        assert len(list(c.records(config, held=held))) == len(rows)


def test_a_cache_whose_folder_cannot_be_made_says_what_to_do(tmp_path):
    # A read-only home made every scan stop here; the line now says both ways on.
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ConfigError, match="name another cache file, or scan without a cache"):
        HashCache(tmp_path / "a_file" / "sub" / "h.sqlite")
