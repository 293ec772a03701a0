"""Inputs beyond local folders (file lists, URLs, tar shards, Parquet bytes) and Parquet output.

Everything here runs in-process (``workers=1``); tests/test_dask.py runs the same inputs on
a Dask cluster.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

import lookalike
from conftest import loaded_by
from lookalike import ConfigError, ScanConfig

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
fsspec = pytest.importorskip("fsspec")

from lookalike.inputs.listing import list_inputs  # noqa: E402
from lookalike.pipeline import scan as scan_inputs  # noqa: E402
from lookalike.store.parquet import ParquetStore, read_results  # noqa: E402

# One segment per hash (no flips/turns, no trimmed content): the Parquet output then has
# hash_u64, which SQL engines compare with bit_count.
CONFIG = ScanConfig(method="phash", threshold=8, invariant="none", trim_borders=False,
                    workers=1)


@pytest.fixture(scope="module")
def tree(photo_tree: Path) -> Path:
    return photo_tree


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _rel(path: str, root: str = "") -> str:
    """The image's name inside its container or tree, whatever the input kind."""
    if "#" in path:
        return path.split("#", 1)[1]
    if root and root in path:
        return path.split(root, 1)[1].lstrip("/")
    return path


def _groups(result, root: str = "") -> list[list[str]]:
    return sorted(sorted(_rel(p, root) for p in g.paths) for g in result.groups)


def _hashes(result, root: str = "") -> dict[str, str]:
    return {_rel(r.path, root): str(r.hash) for r in result.records}


@pytest.fixture(scope="module")
def baseline(tree):
    result = lookalike.scan(tree, config=CONFIG)
    assert len(result.groups) == 5
    assert [e.error for e in result.errors] == ["truncated"]
    return result


def _write_shards(tree: Path, out: Path, n: int = 2) -> list[Path]:
    files = _files(tree)
    out.mkdir(exist_ok=True)
    shards = []
    for k in range(n):
        shard = out / f"shard-{k:05d}.tar"
        with tarfile.open(shard, "w") as tf:
            for p in files[k::n]:
                tf.add(p, arcname=str(p.relative_to(tree)))
                # WebDataset samples carry non-image members too; they are skipped.
                meta = f'{{"file": "{p.name}"}}'.encode()
                info = tarfile.TarInfo(str(p.relative_to(tree).with_suffix(".json")))
                info.size = len(meta)
                tf.addfile(info, io.BytesIO(meta))
        shards.append(shard)
    return shards


def _write_parquet(tree: Path, path: Path, *, struct: bool = False, rows_per_group: int = 4
                   ) -> Path:
    files = _files(tree)
    names = [str(p.relative_to(tree)) for p in files]
    blobs = [p.read_bytes() for p in files]
    if struct:  # the Hugging Face datasets layout: image = {bytes, path}
        table = pa.table({"image": pa.array([{"bytes": b, "path": n}
                                             for b, n in zip(blobs, names, strict=True)]),
                          "label": list(range(len(files)))})
    else:
        table = pa.table({"key": names, "jpg": pa.array(blobs, pa.binary())})
    pq.write_table(table, path, row_group_size=rows_per_group)
    return path


# ------------------------------------------------------------------------------ inputs


def test_local_folder_through_the_pipeline_matches_lookalike_scan(tree, baseline):
    result = scan_inputs([str(tree)], CONFIG)
    assert _groups(result, str(tree)) == _groups(baseline, str(tree))
    assert result.stats["files_seen"] == baseline.stats["files_seen"]
    assert result.roots == [str(tree)]


def test_tar_shards_give_the_same_groups_as_the_files(tree, baseline, tmp_path):
    shards = _write_shards(tree, tmp_path / "shards")
    result = scan_inputs([str(tmp_path / "shards")], CONFIG, input_format="tar")
    assert _groups(result, "") == _groups(baseline, str(tree))
    assert _hashes(result) == _hashes(baseline, str(tree))
    assert [_rel(e.path) for e in result.errors] == ["cut.jpg"]
    assert result.errors[0].path.split("#")[0] in {str(s) for s in shards}
    assert all("#" in r.path and r.path.split("#")[0].endswith(".tar") for r in result.records)
    assert result.stats["tar_shards"] == 2


def test_a_shard_that_cannot_be_read_says_why_in_words(tree, tmp_path, monkeypatch):
    # The line read "cannot list tar input: PermissionError: [Errno 13] Permission denied:
    # '.../u.tar'" (the path twice); a folder's says "cannot read: Permission denied".
    from lookalike.inputs import remote

    shard = tmp_path / "u.tar"
    with tarfile.open(shard, "w") as tf:
        tf.add(tree / "set0" / "orig0.png", arcname="img.png")

    def denied(fs, path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(remote, "_list_tar", denied)
    result = scan_inputs([str(shard)], CONFIG)
    assert [e.message for e in result.errors] == ["cannot list tar input: Permission denied"]
    assert result.errors[0].error == "permission-denied"


def test_a_name_a_shard_holds_twice_is_two_images(tree, tmp_path):
    # The second member of the same name was dropped without a word (paths are unique).
    shard = tmp_path / "twice.tar"
    with tarfile.open(shard, "w") as tf:
        tf.add(tree / "set0" / "orig0.png", arcname="img.png")
        tf.add(tree / "set1" / "orig1.png", arcname="img.png")  # appended again
    result = scan_inputs([str(shard)], CONFIG)
    names = sorted(_rel(r.path) for r in result.records)
    assert len(names) == 2 and names[0] == "img.png" and names[1].startswith("img.png@offset=")
    assert not result.groups and not result.errors


def test_link_and_folder_members_of_a_shard_are_read_or_reported(tree, tmp_path):
    """A hard link, symbolic link or folder member named like an image was dropped without
    a word. A hard link names an earlier member's data (a reader of the shard yields it as
    a sample of its own): read as that; the others are one problem line each."""
    shard = tmp_path / "links.tar"
    with tarfile.open(shard, "w") as tf:
        tf.add(tree / "set0" / "orig0.png", arcname="a.png")
        for name, kind, target in (("b.png", tarfile.LNKTYPE, "a.png"),
                                   ("c.png", tarfile.SYMTYPE, "a.png"),
                                   ("d.png", tarfile.DIRTYPE, ""),
                                   ("e.png", tarfile.LNKTYPE, "nowhere.png")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    result = scan_inputs([str(shard)], CONFIG)
    assert sorted(_rel(r.path) for r in result.records) == ["a.png", "b.png"]
    assert [sorted(_rel(p) for p in g.paths) for g in result.groups] == [["a.png", "b.png"]]
    assert result.groups[0].kind == "exact"
    problems = {_rel(p.path): (p.error, p.message) for p in result.errors}
    assert set(problems) == {"c.png", "d.png", "e.png"}
    assert {e for e, _ in problems.values()} == {"not-a-regular-file"}
    assert "symbolic link (to a.png)" in problems["c.png"][1]
    assert "nowhere.png" in problems["e.png"][1]


def test_tar_member_sizes_and_digests_match_the_files(tree, baseline, tmp_path):
    _write_shards(tree, tmp_path / "s", n=1)
    result = scan_inputs([str(tmp_path / "s" / "shard-00000.tar")], CONFIG)  # auto: .tar
    by_name = {_rel(r.path): r for r in result.records}
    for r in baseline.records:
        other = by_name[_rel(r.path, str(tree))]
        assert (other.size_bytes, other.width) == (r.size_bytes, r.width)
        # Archive members are always digested; a local scan digests its group members only.
        assert other.digest == hashlib.sha256(Path(r.path).read_bytes()).hexdigest()
        assert r.digest in (None, other.digest)
    assert any(r.digest for r in baseline.records)


@pytest.mark.parametrize("struct", [False, True], ids=["binary-column", "hf-struct"])
def test_parquet_bytes_give_the_same_groups_as_the_files(tree, baseline, tmp_path, struct):
    path = _write_parquet(tree, tmp_path / "images.parquet", struct=struct)
    result = scan_inputs([str(path)], CONFIG)
    assert _groups(result) == _groups(baseline, str(tree))
    assert _hashes(result) == _hashes(baseline, str(tree))
    assert [e.error for e in result.errors] == ["truncated"]
    assert result.errors[0].path == f"{path}#cut.jpg"


def test_parquet_without_a_name_column_names_rows_by_number(tree, tmp_path):
    path = tmp_path / "anon.parquet"
    blobs = [p.read_bytes() for p in _files(tree / "set0")] + [None, b"not an image"]
    pq.write_table(pa.table({"blob": pa.array(blobs, pa.binary())}), path)
    result = scan_inputs([str(path)], CONFIG)
    assert sorted(_rel(r.path) for r in result.records) == ["row=0", "row=1", "row=2"]
    # A null cell is no image, not an empty file (as it was reported).
    assert {_rel(e.path): e.error for e in result.errors} == {
        "row=3": "null-cell", "row=4": "unsupported-format"}
    assert next(e for e in result.errors if e.error == "null-cell").message == (
        "the cell is null: this row has no image")


def test_parquet_rows_of_one_row_group_are_one_batch(tree, tmp_path):
    path = _write_parquet(tree, tmp_path / "images.parquet", rows_per_group=5)
    items, _, _ = list_inputs([str(path)])
    from lookalike.pipeline import _chunks

    sizes = [len(c) for c in _chunks(items, 2)]
    assert sizes == [5, 5, 5, 2]  # 17 rows in groups of 5, whatever the batch size


def test_memory_urls_give_the_same_groups_as_the_files(tree, baseline, monkeypatch):
    import lookalike.inputs.remote

    monkeypatch.setattr(lookalike.inputs.remote, "_READ_AHEAD", 3)  # a batch is read in slices
    fs = fsspec.filesystem("memory")
    for p in _files(tree):
        fs.pipe(f"/bucket/photos/{p.relative_to(tree)}", p.read_bytes())
    fs.pipe("/bucket/photos/notes.txt", b"not listed: no image extension")
    try:
        result = scan_inputs(["memory://bucket/photos"], CONFIG, batch_size=100)
        assert _groups(result, "/bucket/photos") == _groups(baseline, str(tree))
        assert _hashes(result, "/bucket/photos") == _hashes(baseline, str(tree))
        assert all(r.path.startswith("memory://") for r in result.records)
        assert result.errors[0].path.endswith("/bucket/photos/cut.jpg")
        # A glob works too.
        globbed = scan_inputs(["memory://bucket/photos/set*/*.png"], CONFIG)
        assert len(globbed.records) == 10
    finally:
        fs.rm("/bucket", recursive=True)


def test_file_list_mixes_local_paths_and_urls_and_reports_missing_ones(tree, tmp_path):
    fs = fsspec.filesystem("memory")
    fs.pipe("/lists/a.png", (tree / "set1" / "orig1.png").read_bytes())
    listing = tmp_path / "files.txt"
    lines = ["# comment", "", str(tree / "set1" / "half1.png"), "memory://lists/a.png",
             str(tree / "gone.png"), "memory://lists/gone.png",
             f"file://{tree / 'set1' / 'q80_1.jpg'}"]
    listing.write_text("\n".join(lines) + "\n")
    try:
        result = scan_inputs([], CONFIG, files_from=str(listing))
    finally:
        fs.rm("/lists", recursive=True)
    assert len(result.records) == 3
    assert len(result.groups) == 1 and len(result.groups[0]) == 3
    # The local path is stat'ed while listing (it never existed: not-found); the URL is read
    # on a worker only, which cannot tell a missing URL from one deleted since (vanished).
    assert sorted((e.path, e.error) for e in result.errors) == sorted([
        ("memory://lists/gone.png", "vanished"), (str(tree / "gone.png"), "not-found")])
    # Not stat'ed on the client, yet the records carry the real size and mtime.
    half = next(r for r in result.records if r.path.endswith("half1.png"))
    st = (tree / "set1" / "half1.png").stat()
    assert (half.size_bytes, half.mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_parquet_file_list_column(tree, baseline, tmp_path):
    listing = tmp_path / "list.parquet"
    paths = [str(p) for p in _files(tree)]
    pq.write_table(pa.table({"n": list(range(len(paths))), "url": paths}), listing)
    result = scan_inputs([], CONFIG, files_from=str(listing))
    assert _groups(result, str(tree)) == _groups(baseline, str(tree))
    with pytest.raises(ConfigError, match="no column 'nope'"):
        scan_inputs([], CONFIG, files_from=str(listing), column="nope")


def test_bad_shards_are_problems_and_the_scan_goes_on(tree, tmp_path):
    _write_shards(tree, tmp_path, n=1)
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar file" * 100)
    with tarfile.open(tmp_path / "zipped.tar", "w:gz") as tf:
        tf.add(tree / "alone.png", arcname="alone.png")
    (tmp_path / "named.tar.gz").write_bytes((tmp_path / "zipped.tar").read_bytes())
    result = scan_inputs([str(tmp_path)], CONFIG, input_format="tar")
    errors = {Path(e.path).name: (e.stage, e.error) for e in result.errors}
    assert errors["junk.tar"] == ("walk", "not-tar")
    assert errors["zipped.tar"] == ("walk", "compressed-tar")
    # Named as what it is, it was skipped without a word.
    assert errors["named.tar.gz"] == ("walk", "compressed-tar")
    assert len(result.records) == 16


@pytest.mark.parametrize("where", ["inside a member's data", "inside a header",
                                   "after the last member"])
def test_a_shard_cut_short_keeps_every_whole_image_before_the_cut(tree, tmp_path, where):
    """A shard missing its end (a copy that stopped) lost all its images, whole ones too;
    then the whole images read in one range with the cut one failed with it."""
    files = sorted(p for p in tree.rglob("*.png"))[:12]
    with tarfile.open(tmp_path / "full.tar", "w") as tf:
        for i, f in enumerate(files):
            tf.add(f, arcname=f"{i:04d}.png")
    data = (tmp_path / "full.tar").read_bytes()
    with tarfile.open(tmp_path / "full.tar") as tf:
        members = tf.getmembers()
    last = members[-1]
    cut_at = {"inside a member's data": last.offset_data + last.size // 2,
              "inside a header": last.offset + 100,
              "after the last member": last.offset_data + last.size}[where]
    (tmp_path / "cut.tar").write_bytes(data[:cut_at])
    whole = [m.name for m in members if m.offset_data + m.size <= cut_at]
    result = scan_inputs([str(tmp_path / "cut.tar")], CONFIG)
    assert sorted(r.path.rsplit("#", 1)[1] for r in result.records) == whole
    for r in result.records:
        assert r.size_bytes == files[int(r.path.rsplit("#", 1)[1][:4])].stat().st_size
    # Said, also when only the padding and end blocks are missing (every image whole) and
    # when the cut falls inside a header (tarfile reads that as the end).
    errors = [(Path(e.path).name, e.stage, e.error) for e in result.errors]
    assert errors == [("cut.tar", "walk", "truncated-tar")]
    assert f"the {len(whole)} whole images before that point" in result.errors[0].message
    # A dataset cleanup says the shard was cut, not that its rows "could not be read".
    import lookalike

    cleanup = lookalike.dedupe_dataset({"data": str(tmp_path / "cut.tar")}, workers=1)
    text = cleanup.render_text()
    assert f"data: {len(whole)} rows" in text and "could not be read" not in text
    assert "the shard ends early" in text and "its rows are not counted" in text


def test_a_parquet_file_without_images_among_others_is_its_own_problem(tree, tmp_path):
    """A metadata-only Parquet file in a folder of image Parquet files stopped the whole scan
    (ConfigError); only when no file has the images is it bad usage."""
    (tmp_path / "pq").mkdir()
    _write_parquet(tree, tmp_path / "pq" / "images.parquet")
    pq.write_table(pa.table({"id": [1, 2], "label": ["a", "b"]}), tmp_path / "pq" / "meta.parquet")
    result = scan_inputs([str(tmp_path / "pq")], CONFIG, input_format="parquet")
    assert len(result.records) == len(_files(tree)) - 1  # all but the truncated one
    (meta,) = [e for e in result.errors if e.path.endswith("meta.parquet")]
    assert meta.error == "not-parquet" and "no column of image bytes" in meta.message
    with pytest.raises(ConfigError, match="no column of image bytes"):
        scan_inputs([str(tmp_path / "pq" / "meta.parquet")], CONFIG)


def test_a_column_named_that_holds_no_images_says_what_it_holds(tree, tmp_path):
    # "--column label" (text) said the file "has no column of image bytes", as if the column
    # named were not there (review).
    pq.write_table(pa.table({"label": ["a", "b"], "image": [b"x", b"y"]}), tmp_path / "t.parquet")
    with pytest.raises(ConfigError, match="column 'label' holds string, not image bytes"):
        scan_inputs([str(tmp_path / "t.parquet")], CONFIG, column="label")


def test_a_compressed_shard_named_directly_is_refused_with_its_hint(tree, tmp_path):
    """A .tar.gz given by name was read as one image ('not an image'); in a folder read as
    shards it was the compressed-tar problem with its hint."""
    import gzip

    shard = _write_shards(tree, tmp_path / "s", n=1)[0]
    for name in ("s.tar.gz", "s.tgz"):
        (tmp_path / name).write_bytes(gzip.compress(Path(shard).read_bytes()))
        result = scan_inputs([str(tmp_path / name)], CONFIG)
        assert [e.error for e in result.errors] == ["compressed-tar"] and not result.records


def test_images_beside_the_shards_asked_for_are_counted_and_named(tree, tmp_path, capsys):
    """`--input-format tar` on a folder of shards and image files read the shards and left
    the images out without a word."""
    from lookalike.cli import main

    _write_shards(tree, tmp_path / "data", n=1)
    shutil.copy(tree / "set0" / "orig0.png", tmp_path / "data" / "loose.png")
    with pytest.raises(SystemExit) as exc:
        main(["scan", str(tmp_path / "data"), "--input-format", "tar", "-q", "--no-cache"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert "skipped 1 image file found beside the shards or Parquet files" in out
    result = scan_inputs([str(tmp_path / "data")], CONFIG, input_format="tar")
    assert result.stats["skipped_images"] == 1
    assert "skipped_images" not in scan_inputs([str(tree)], CONFIG).stats


def test_shards_and_parquet_files_in_a_folder_scanned_as_files_are_counted_and_named(
        tree, tmp_path, capsys):
    # Scanning a folder of shards in the default input format found 0 images and said only
    # that; the files skipped were in the JSON stats alone.
    from lookalike.cli import main

    _write_shards(tree, tmp_path / "data", n=2)
    _write_parquet(tree, tmp_path / "data" / "more.parquet")
    with pytest.raises(SystemExit) as exc:
        main(["scan", str(tmp_path / "data"), "-q", "--no-cache"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "0 images scanned" in out
    assert "skipped 3 tar or Parquet files found inside the folders" in out
    assert "read with the input format tar or parquet" in out
    plain = lookalike.scan(tree, config=CONFIG)
    assert "skipped_containers" not in plain.stats  # a plain folder's stats are as before
    # Through the API too: 0 records and 0 errors said nothing.
    with pytest.warns(UserWarning, match="skipped 3 tar or Parquet file.*input_format='tar'"):
        assert lookalike.scan(tmp_path / "data", config=CONFIG).records == []


def test_missing_inputs_and_bad_options_fail_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        scan_inputs([str(tmp_path / "nope")], CONFIG)
    with pytest.raises(ConfigError, match="does not exist"):
        scan_inputs(["memory://no/such/prefix"], CONFIG)
    with pytest.raises(ConfigError, match="nothing to scan"):
        scan_inputs([], CONFIG)
    with pytest.raises(ConfigError, match="input format"):
        scan_inputs([str(tmp_path)], CONFIG, input_format="zip")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="retries"):
        scan_inputs([str(tmp_path)], CONFIG, retries=-1)
    with pytest.raises(ConfigError, match="file list does not exist"):
        scan_inputs([], CONFIG, files_from=str(tmp_path / "list.txt"))
    # A folder of image files read as shards or Parquet: nothing of that kind is there (it
    # was "0 images scanned, 0 errors" and exit 0).
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    for fmt, what in (("tar", "no .tar shards"), ("parquet", "no Parquet files")):
        with pytest.raises(ConfigError, match=what):
            scan_inputs([str(tmp_path)], CONFIG, input_format=fmt)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ Parquet output


def test_parquet_output_has_one_row_per_file_with_hashes_and_errors(tree, tmp_path):
    out = tmp_path / "scan.parquet"
    result = scan_inputs([str(tree)], CONFIG, parquet_out=str(out))
    table = pq.read_table(out)  # pyarrow reads the folder as one dataset
    assert table.num_rows == len(_files(tree)) == len(result.records) + len(result.errors)
    rows = {r["path"]: r for r in table.to_pylist()}
    assert result.stats["exact_needed"] > 0  # the tree's >= 1024 px JPEG was re-hashed
    for rec in result.records:
        row = rows[rec.path]
        # Rows hold each file's hash at the scan's settings (fast decoding); the scan itself
        # grouped reduced JPEGs that may match by their exact hash (lookalike.grouping.confirm).
        h = lookalike.hash_image(rec.path, "phash", decode="fast")
        assert (row["status"], row["hash"], row["hash_u64"], row["digest"], row["size_bytes"],
                row["mtime_ns"], row["width"], row["method"], row["nbits"]) == (
            "ok", str(h), h.value, rec.digest, rec.size_bytes, rec.mtime_ns,
            rec.width, "phash", 64)
    bad = rows[str(tree / "cut.jpg")]
    assert (bad["status"], bad["stage"], bad["error"]) == ("error", "decode", "truncated")
    assert bad["size_bytes"] == (tree / "cut.jpg").stat().st_size
    assert all(n.startswith("part-") for n in os.listdir(out))


def test_a_parquet_output_that_cannot_be_written_is_one_line_and_no_partial_part(
        tree, tmp_path, monkeypatch, capsys):
    """On a full disk --parquet-out ended in two chained OSError tracebacks and left a
    0-byte .part-*.parquet.tmp (still there after a later resume)."""
    import errno

    from lookalike.cli import main

    out = tmp_path / "scan.parquet"
    real = pq.write_table

    def full(table, where, **kw):
        where.write(b"PAR1")  # a partial write, as a disk fills
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(SystemExit) as info:
        main(["scan", str(tree), "--parquet-out", str(out), "--no-cache", "-q", "-j", "1"])
    _, err = capsys.readouterr()
    assert info.value.code == 1 and "Traceback" not in err
    assert err.startswith(f"error: cannot write the Parquet output {out}: No space left")
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    monkeypatch.setattr(pq, "write_table", real)
    scan_inputs([str(tree)], CONFIG, parquet_out=str(out))  # the same output: resumes
    assert all(n.startswith("part-") for n in os.listdir(out))


def test_parquet_output_is_readable_by_duckdb(tree, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "scan.parquet"
    scan_inputs([str(tree)], CONFIG, parquet_out=str(out))
    ok, errors, bits = duckdb.connect().execute(
        f"SELECT count(*) FILTER (status = 'ok'), count(*) FILTER (status = 'error'), "
        f"max(bit_count(hash_u64)) FROM read_parquet('{out}/*.parquet')").fetchall()[0]
    assert (ok, errors) == (16, 1) and 0 < bits <= 64


def test_rerun_resumes_from_the_parquet_output(tree, baseline, tmp_path):
    out = tmp_path / "scan.parquet"
    half = tmp_path / "half.txt"
    files = _files(tree)
    half.write_text("\n".join(str(p) for p in files[::2]))
    first = scan_inputs([], CONFIG, files_from=str(half), parquet_out=str(out))
    assert first.stats["hashed"] == len(files[::2])
    second = scan_inputs([str(tree)], CONFIG, parquet_out=str(out))
    assert second.stats["from_cache"] == len(files[::2])
    assert second.stats["hashed"] == len(files) - len(files[::2])
    assert _groups(second, str(tree)) == _groups(baseline, str(tree))
    assert [(e.path, e.error) for e in second.errors] == [
        (e.path, e.error) for e in baseline.errors]
    third = scan_inputs([str(tree)], CONFIG, parquet_out=str(out))
    assert third.stats["hashed"] == 0
    assert _groups(third, str(tree)) == _groups(baseline, str(tree))
    assert len(read_results(out)) == len(files)


def test_resume_rehashes_changed_files_and_transient_errors(tree, tmp_path):
    root = tmp_path / "t"
    shutil.copytree(tree / "set2", root)
    out = tmp_path / "scan.parquet"
    store = ParquetStore(out)
    crashed = lookalike.Problem(path=str(root / "half2.png"), stage="decode",
                                error="worker-crashed", message="died")
    store.add([], [crashed], CONFIG)
    store.close()
    first = scan_inputs([str(root)], CONFIG, parquet_out=str(out))
    assert first.stats["hashed"] == 3 and first.errors == []  # the crash is retried
    img = Image.open(root / "orig2.png")
    img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "orig2.png")
    second = scan_inputs([str(root)], CONFIG, parquet_out=str(out))
    assert second.stats["hashed"] == 1  # only the file whose size/mtime changed
    latest = read_results(out).to_pylist()
    assert len(latest) == 3 and all(r["status"] == "ok" for r in latest)


def test_output_made_with_other_settings_is_refused(tree, tmp_path):
    out = tmp_path / "scan.parquet"
    scan_inputs([str(tree / "set0")], CONFIG, parquet_out=str(out))
    other = ScanConfig(method="dhash", workers=1)
    with pytest.raises(ConfigError, match="other settings"):
        scan_inputs([str(tree / "set0")], other, parquet_out=str(out))
    (tmp_path / "file.parquet").write_bytes(b"x")
    with pytest.raises(ConfigError, match="must be a folder"):
        scan_inputs([str(tree)], CONFIG, parquet_out=str(tmp_path / "file.parquet"))


def test_parquet_output_to_a_memory_url(tree):
    scan_inputs([str(tree / "set3")], CONFIG, parquet_out="memory://out/scan.parquet")
    try:
        assert len(read_results("memory://out/scan.parquet")) == 3
        again = scan_inputs([str(tree / "set3")], CONFIG, parquet_out="memory://out/scan.parquet")
        assert again.stats["hashed"] == 0
    finally:
        fsspec.filesystem("memory").rm("/out", recursive=True)


def test_parquet_output_copies_hash_cache_hits(tree, tmp_path):
    from lookalike.store.cache import HashCache

    with HashCache(tmp_path / "h.sqlite") as cache:
        scan_inputs([str(tree / "set4")], CONFIG, cache=cache)
        out = tmp_path / "scan.parquet"
        result = scan_inputs([str(tree / "set4")], CONFIG, cache=cache, parquet_out=str(out))
    assert result.stats["hashed"] == 0
    assert len(read_results(out)) == 3  # the output lists every file, cached or not


def test_an_error_copied_from_the_cache_is_retried_once_the_file_is_fixed(tree, tmp_path):
    import shutil

    from lookalike.store.cache import HashCache

    folder = tmp_path / "f"
    shutil.copytree(tree / "set4", folder)
    good = next(folder.glob("*.png")).read_bytes()
    bad = folder / "bad.png"
    bad.write_bytes(good[: len(good) // 2])  # truncated: an error the cache keeps
    out = tmp_path / "scan.parquet"
    with HashCache(tmp_path / "h.sqlite") as cache:
        scan_inputs([str(folder)], CONFIG, cache=cache)
        first = scan_inputs([str(folder)], CONFIG, cache=cache, parquet_out=str(out))
        assert [e.error for e in first.errors] == ["truncated"] and first.stats["hashed"] == 0
        bad.write_bytes(good)  # fixed (new size and mtime)
        again = scan_inputs([str(folder)], CONFIG, cache=cache, parquet_out=str(out))
    assert again.errors == [] and again.stats["hashed"] == 1


# ------------------------------------------------------------------------------ CLI


def test_cli_scans_tar_shards_into_parquet_and_resumes(runner, tree, tmp_path):
    from lookalike.cli import cli

    _write_shards(tree, tmp_path / "shards")
    out = tmp_path / "out.parquet"
    args = ["scan", str(tmp_path / "shards"), "--input-format", "tar", "--parquet-out",
            str(out), "-q", "-o", str(tmp_path / "r.json"), "--no-cache"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "16 images scanned, 5 duplicate groups" in first.output
    report = lookalike.read_report(tmp_path / "r.json")
    assert len(report.groups) == 5
    assert pq.read_table(out).num_rows == 17
    again = runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert lookalike.read_report(tmp_path / "r.json").data["stats"]["hashed"] == 0


def test_cli_files_from_without_paths(runner, tree, tmp_path):
    from lookalike.cli import cli

    listing = tmp_path / "l.txt"
    listing.write_text("\n".join(str(p) for p in _files(tree / "set0")))
    result = runner.invoke(cli, ["scan", "--files-from", str(listing), "-q", "-m", "phash",
                                 "-t", "8", "-j", "1", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert '"groups"' in result.output


def test_cli_without_inputs_is_a_usage_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lookalike.cli", "scan"], capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert "nothing to scan" in out.stderr


# ------------------------------------------------------------------------------ optional deps


def test_optional_dependencies_are_not_imported_by_lookalike():
    code = ("import lookalike, lookalike.inputs.remote, lookalike.store.parquet, "
            "lookalike.executors.dask")
    assert loaded_by(code, ("dask", "distributed", "pyarrow", "fsspec")) == []


@pytest.mark.parametrize("module", ["distributed", "pyarrow", "fsspec"])
def test_a_missing_extra_says_what_to_install(module, monkeypatch, tree, tmp_path):
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ConfigError, match=r"pip install 'lookalike\[dask\]'"):
        if module == "distributed":
            from lookalike.executors.dask import DaskExecutor

            DaskExecutor()
        elif module == "pyarrow":
            ParquetStore(tmp_path / "out")
        else:
            scan_inputs(["memory://x/y"], CONFIG)


def test_cache_rows_without_digests_get_them_in_every_kind_of_scan(tmp_path, scene):
    # A local scan digests group members only and caches the rest without a digest. Scans
    # that hash with another worker (file:// roots) or write every row (Parquet output)
    # must still give members, and Parquet rows, their digests.
    from lookalike.store.cache import HashCache

    tree = tmp_path / "tree"
    tree.mkdir()
    scene(1).save(tree / "a.png")
    scene(2).save(tree / "b.png")
    db = tmp_path / "c.sqlite"
    with HashCache(db) as cache:
        first = lookalike.scan(tree, config=CONFIG, cache=cache)
    assert not first.groups and all(r.digest is None for r in first.records)
    shutil.copy(tree / "a.png", tree / "a_copy.png")  # a byte-identical copy appears
    want = hashlib.sha256((tree / "a.png").read_bytes()).hexdigest()
    with HashCache(db) as cache:
        for result in (scan_inputs(["file://" + str(tree)], CONFIG, cache=cache),
                       scan_inputs([str(tree)], CONFIG, cache=cache,
                                   parquet_out=str(tmp_path / "out"))):
            assert [g.kind for g in result.groups] == ["exact"]
            assert {m.record.digest for g in result.groups for m in g.members} == {want}
    rows = read_results(str(tmp_path / "out"))
    assert all(r["digest"] for r in rows.to_pylist())


def test_a_rewritten_shard_is_hashed_again_though_its_members_keep_name_size_and_time(
        tmp_path, scene):
    # Writers stamp members with time 0 and re-use names when re-sharding: a member's own
    # name, size and mtime do not say its image changed; its shard's mtime does.
    from lookalike.store.cache import HashCache

    shard = tmp_path / "shard.tar"

    def write(seeds: list[int], stamp_ns: int) -> None:
        blobs = []
        for s in seeds:
            buf = io.BytesIO()
            scene(s, (64, 48)).convert("L").save(buf, "BMP")  # same size whatever the picture
            blobs.append(buf.getvalue())
        with tarfile.open(shard, "w") as tf:
            for k, blob in enumerate(blobs):
                info = tarfile.TarInfo(f"{k:03d}.bmp")
                info.size, info.mtime = len(blob), 0
                tf.addfile(info, io.BytesIO(blob))
        os.utime(shard, ns=(stamp_ns, stamp_ns))

    write([1, 2, 3], 1_600_000_000_000_000_000)
    with HashCache(tmp_path / "h.sqlite") as cache:
        first = lookalike.scan(shard, cache=cache, workers=1)
        write([4, 5, 6], 1_700_000_000_000_000_000)
        again = lookalike.scan(shard, cache=cache, workers=1)
    fresh = lookalike.scan(shard, workers=1)
    assert _hashes(again) == _hashes(fresh) != _hashes(first)
    assert again.stats["hashed"] == 3


def test_actions_refuse_tar_members_and_the_review_page_does_not_call_them_gone(tree,
                                                                                tmp_path):
    from lookalike.report.html import file_states

    shard = _write_shards(tree, tmp_path / "shards", n=1)[0]
    report = tmp_path / "r.json"
    lookalike.write_report(lookalike.scan(shard, config=CONFIG), report)
    data = json.loads(report.read_text())
    assert data["groups"] and file_states(data) == {}
    with pytest.raises(lookalike.ReportError, match="actions change local files only"):
        lookalike.plan(report, action="move", to=tmp_path / "q")


def _split_trees(tree: Path, out: Path) -> tuple[Path, Path]:
    """train/: the originals and half-size copies; test/: the JPEG copies (every one leaks)."""
    for split, pattern in (("train", "[oh]*.png"), ("test", "q80_*.jpg")):
        for p in tree.glob(f"set*/{pattern}"):
            (out / split / p.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, out / split / p.parent.name / p.name)
    return out / "train", out / "test"


@pytest.mark.parametrize("kind", ["parquet", "tar-folders"])
def test_leakage_over_containers_purges_only_the_checked_set(tree, tmp_path, kind, capsys):
    # Members of a reference Parquet file were not protected (FILE#name is not under FILE):
    # the purge list held training rows and left leaks out. Sets given as folders of shards
    # failed after all the hashing: a member comes from its shard, not from the folder.
    from lookalike.cli import main

    train, test = _split_trees(tree, tmp_path / "trees")
    if kind == "parquet":
        sets = [str(_write_parquet(d, tmp_path / f"{d.name}.parquet")) for d in (train, test)]
        extra: list[str] = []
    else:
        sets = []
        for d in (train, test):
            _write_shards(d, tmp_path / f"{d.name}_shards")
            sets.append(str(tmp_path / f"{d.name}_shards"))
        extra = ["--input-format", "tar"]
    common = ["scan", "--reference", sets[0], sets[1], *extra, "-m", "phash", "-t", "8",
              "-j", "1", "-q", "--no-cache"]
    with pytest.raises(SystemExit) as exc:
        main([*common, "--format", "json"])
    assert exc.value.code == 0
    purge = json.loads(capsys.readouterr().out)["leakage"]["purge"]
    assert len(purge) == 5 and all(p.startswith(sets[1]) for p in purge)
    with pytest.raises(SystemExit) as exc:
        main([*common, "--format", "paths"])
    assert exc.value.code == 0 and capsys.readouterr().out.splitlines() == purge


@pytest.mark.parametrize("kind", ["tar", "parquet", "tar under h#1"])
def test_the_review_page_shows_members_of_shards_and_parquet_files(tree, tmp_path, kind):
    # Every member of such a scan had a placeholder: the page read local files only (and
    # then, for shards under a folder whose name holds '#', took the folder for the shard).
    import re

    if kind.startswith("tar"):
        folder = tmp_path / ("h#1" if "#" in kind else "shards")
        inputs = _write_shards(tree, folder, n=2)
    else:
        inputs = [_write_parquet(tree, tmp_path / "images.parquet")]
    report = tmp_path / "r.json"
    lookalike.write_report(lookalike.scan(inputs, config=CONFIG), report)
    lookalike.write_html(report, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    blob = json.loads(re.search(r'id="lookalike-data">(.*?)</script>', page, re.S).group(1))
    members = [m for g in blob["groups"] for m in g["m"]]
    assert len(members) >= 10 and all("#" in m["p"] for m in members)
    assert all(m["u"] and m["u"].startswith("data:image/jpeg") for m in members)


def test_the_review_page_shows_the_parquet_column_the_scan_read(tree, tmp_path):
    # The page listed Parquet files again with the default column guess: a scan of the
    # `mask` column showed the `image` column's pictures (an exact group of two different
    # pictures on screen).
    import base64
    import re

    from lookalike.imaging.decode import decode_bytes

    a, b, c = (p.read_bytes() for p in sorted((tree / "set0").glob("*.png"))[:1]
               + sorted((tree / "set1").glob("orig*.png")) + sorted((tree / "set2").glob(
                   "orig*.png")))
    path = tmp_path / "two.parquet"
    pq.write_table(pa.table({"name": ["r0", "r1"], "image": pa.array([b, c], pa.binary()),
                             "mask": pa.array([a, a], pa.binary())}), path)
    result = lookalike.scan(path, config=CONFIG, column="mask")
    assert result.stats["parquet_column"] == "mask" and len(result.groups) == 1
    report = tmp_path / "r.json"
    lookalike.write_report(result, report)
    lookalike.write_html(report, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    blob = json.loads(re.search(r'id="lookalike-data">(.*?)</script>', page, re.S).group(1))
    want = decode_bytes(a)[0].size
    for m in blob["groups"][0]["m"]:
        thumb = decode_bytes(base64.b64decode(m["u"].split(",", 1)[1]))[0]
        # The mask's picture (set0's) in its own shape, not the image column's.
        assert abs(thumb.size[0] / thumb.size[1] - want[0] / want[1]) < 0.05


def test_parquet_columns_with_dots_in_their_names(tree, tmp_path):
    """Column names were split on '.' to reach struct fields: a bytes column named 'x.jpg'
    failed every row, and a name column 'file.name' the whole file."""
    files = sorted(tree.rglob("*.png"))[:3]
    blobs = [f.read_bytes() for f in files]
    pq.write_table(pa.table({"x.jpg": blobs, "file.name": ["a", "b", "c"]}),
                   tmp_path / "plain.parquet")
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.table({"my.image": pa.array(
        [{"bytes": b, "path": f"p{i}.png"} for i, b in enumerate(blobs)], type=struct)}),
        tmp_path / "nested.parquet")
    for name, labels in (("plain", "abc"), ("nested", ["p0.png", "p1.png", "p2.png"])):
        result = scan_inputs([str(tmp_path / f"{name}.parquet")], CONFIG)
        assert not result.errors
        assert sorted(r.path.rsplit("#", 1)[1] for r in result.records) == list(labels)
        assert sorted(r.size_bytes for r in result.records) == sorted(map(len, blobs))


def test_parquet_images_stored_as_paths_only_say_so(tree, tmp_path):
    """Hugging Face's to_parquet of path-only images ({bytes: null, path}) read as rows
    with "no image", though each names its file."""
    f = sorted(tree.rglob("*.png"))[0]
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.table({"image": pa.array(
        [{"bytes": None, "path": str(f)}, {"bytes": f.read_bytes(), "path": "in.png"},
         {"bytes": None, "path": None}], type=struct)}), tmp_path / "hf.parquet")
    result = scan_inputs([str(tmp_path / "hf.parquet")], CONFIG)
    assert [r.path.rsplit("#", 1)[1] for r in result.records] == ["in.png"]
    said = sorted((e.error, e.message) for e in result.errors)
    assert [e for e, _ in said] == ["null-cell", "null-cell"]
    assert any(f"only the path {str(f)!r}" in m and "pass the Dataset" in m for _, m in said)
    assert any("the cell is null" in m for _, m in said)


def test_reports_never_overwrite_a_scanned_shard(tree, tmp_path, capsys):
    """-o tdir/s.tar on a folder of shards, or on a shard named as a file:// URL, replaced
    the shard with the report (only plain top-level paths were compared)."""
    import lookalike
    from lookalike.cli import main

    shards = tmp_path / "tdir"
    shards.mkdir()
    _write_shards(tree, shards, n=1)
    (shard,) = sorted(shards.glob("*.tar"))
    before = shard.read_bytes()
    for argv in (["scan", str(shards), "--input-format", "tar", "-o", str(shard), "--format",
                  "json"],
                 ["scan", f"file://{shard}", "-o", str(shard), "--format", "json"],
                 ["scan", str(shards), "--input-format", "tar", "--html", str(shard)]):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--no-cache", "-q"])
        assert info.value.code == 2, argv
        assert "would overwrite" in capsys.readouterr().err
    assert shard.read_bytes() == before
    # A shard of any name (read as tar because told so) is a scanned input of the report.
    blob = tmp_path / "data.bin"
    blob.write_bytes(before)
    result = lookalike.scan(blob, input_format="tar", workers=1)
    assert result.records
    with pytest.raises(lookalike.ConfigError, match="would overwrite the scanned input"):
        lookalike.write_report(result, blob)
    assert blob.read_bytes() == before


def test_a_listing_task_returns_bad_usage_rather_than_raising_it(tree, tmp_path):
    """On Dask a task that raises logs the worker's traceback ("Compute Failed") before the
    scan's one error line: the listing task hands the ConfigError back as its result."""
    from lookalike.inputs.remote import _ContainerLister

    path = _write_parquet(tree, tmp_path / "p.parquet")
    out = _ContainerLister("parquet", column="nosuch")(str(path))
    assert isinstance(out, ConfigError) and "no column 'nosuch'" in str(out)


@pytest.mark.parametrize("url", ["zip://a.png::file:///nonexistent/shards.zip", "dir://x",
                                 "nosuchprotocol://x/a.png"])
def test_a_url_whose_filesystem_cannot_open_is_one_usage_line(url, capsys):
    """Opening the filesystem raised what fsspec's implementation raised (a missing zip,
    a URL it cannot parse, no server, no host): a traceback, exit 1."""
    from lookalike.cli import main

    with pytest.raises(SystemExit) as info:
        main(["scan", url, "--no-cache", "-q"])
    _, err = capsys.readouterr()
    assert info.value.code == 2
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert lines == [lines[0]] and lines[0].startswith(f"error: cannot open {url}: "), err
    assert "Traceback" not in err


def test_an_empty_or_cut_parquet_file_list_is_one_usage_line(tree, tmp_path, capsys):
    """pyarrow's ArrowInvalid came out as a traceback."""
    from lookalike.cli import main

    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({"path": [str(p) for p in sorted(tree.rglob("*.png"))]}), whole)
    data = whole.read_bytes()
    for name, content in (("empty.parquet", b""), ("cut.parquet", data[: len(data) // 2])):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(SystemExit) as info:
            main(["scan", "--files-from", str(tmp_path / name), "--no-cache", "-q"])
        out, err = capsys.readouterr()
        assert info.value.code == 2 and not out and err.count("\n") == 1, err
        assert f"cannot read the file list {tmp_path / name} as Parquet" in err


def test_a_folder_named_like_a_shard_is_scanned_as_a_folder(tree, baseline, tmp_path):
    """`scan photos.tar/` (a folder) with the default format said "no .tar shards under
    photos.tar; use input format auto", which it was."""
    folder = tmp_path / "photos.tar"
    shutil.copytree(tree, folder)
    result = scan_inputs([str(folder)], CONFIG)
    assert _groups(result, str(folder)) == _groups(baseline, str(tree))
    with pytest.raises(ConfigError, match=r"no \.tar shards under"):  # asked for shards
        scan_inputs([str(folder)], CONFIG, input_format="tar")


def test_a_glob_of_shards_matching_none_says_so(tmp_path):
    """After a folder named like a shard became a folder to walk, a glob matching no shard
    was walked as a path: "path does not exist: .../*.tar"."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "data" / "x.tar").mkdir(parents=True)  # a folder, not a shard
    for pattern in ("empty/*.tar", "data/*.tar"):
        with pytest.raises(ConfigError, match=r"no \.tar shards under"):
            scan_inputs([str(tmp_path / pattern)], CONFIG)


@pytest.mark.parametrize("path", ["/tmp/x\0y", "/tmp/x\0.tar", "/d\0/a.parquet",
                                  "/tmp/*\0.tar"])
def test_a_path_with_a_nul_byte_is_a_usage_error(path):
    """os.lstat (and fsspec's info, for shards and Parquet files) raise ValueError for it:
    a traceback."""
    with pytest.raises(ConfigError, match="NUL byte"):
        lookalike.scan([path])


def test_a_name_that_is_not_utf8_gets_no_parquet_row_and_the_scan_goes_on(tree, tmp_path):
    """Parquet text is UTF-8: the row of a file named in other bytes raised
    UnicodeEncodeError while the part was written, and the whole scan was lost. It is left
    out (hashed again by the next scan), and counted."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(tree / "set0" / "orig0.png", folder / "ok.png")
    odd = os.fsdecode(os.fsencode(str(folder)) + b"/bad\xff.png")
    try:
        shutil.copy(tree / "set0" / "orig0.png", odd)
    except (OSError, UnicodeError):
        pytest.skip("this file system only takes valid UTF-8 names")
    out = tmp_path / "scan.parquet"
    result = scan_inputs([str(folder)], CONFIG, parquet_out=str(out))
    assert len(result.records) == 2 and result.stats["uncached_names"] == 1
    assert pq.read_table(out).column("path").to_pylist() == [str(folder / "ok.png")]
    again = scan_inputs([str(folder)], CONFIG, parquet_out=str(out))  # resumes: one new
    assert again.stats["hashed"] == 1 and len(again.groups) == 1
