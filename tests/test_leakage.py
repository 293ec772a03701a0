"""Cross-set (train/test leakage) mode on real photos split across folders."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

import lookalike
from lookalike import ConfigError, find_leakage
from lookalike.actions.apply import apply, undo
from lookalike.actions.plan import plan
from lookalike.analysis.leakage import check_sets, restrict_to_leakage
from lookalike.cli import cli
from lookalike.report.schema import render_paths, write_report

THRESHOLD = 4  # dhash-z: re-encoded/resized copies are 0-1 bits away, the stereo pair 10
PIN = ["-m", "dhash-z", "--hash-size", "8"]  # the hash THRESHOLD was measured with

TRAIN = ["astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
         "motorcycle_left.png", "rocket.jpg", "camera.png", "moon.png"]


def snapshot(folder: Path) -> dict[str, tuple]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def splits(tmp_path, photos):
    """train/, test/ and val/ with known leaks (resized, re-encoded and exact copies)."""
    by_name = {p.name: p for p in photos}
    needed = {*TRAIN, "motorcycle_right.png", "retina.jpg", "brick.png", "coins.png",
              "grass.png", "gravel.png"}
    if not needed <= set(by_name):
        pytest.skip(f"sample photos missing: {sorted(needed - set(by_name))}")
    train, test, val = (tmp_path / n for n in ("train", "test", "val"))
    for d in (train, test, val):
        d.mkdir()
    for name in TRAIN:
        shutil.copyfile(by_name[name], train / name)
    cat = Image.open(by_name["chelsea.png"])
    cat.resize((cat.width * 6 // 10, cat.height * 6 // 10), Image.Resampling.LANCZOS).save(
        test / "cat_small.jpg", quality=75)
    Image.open(by_name["coffee.png"]).convert("RGB").save(test / "coffee_q60.jpg", quality=60)
    shutil.copyfile(by_name["rocket.jpg"], test / "rocket_copy.jpg")
    shutil.copyfile(by_name["rocket.jpg"], test / "sub_rocket.jpg")
    for name in ("motorcycle_right.png", "retina.jpg", "brick.png", "coins.png"):
        shutil.copyfile(by_name[name], test / name)
    shutil.copyfile(by_name["brick.png"], test / "brick_again.png")  # a dup inside test only
    Image.open(by_name["astronaut.png"]).resize((256, 256)).save(val / "astro_256.webp",
                                                                 quality=80)
    for name in ("grass.png", "gravel.png"):
        shutil.copyfile(by_name[name], val / name)
    shutil.copyfile(by_name["coins.png"], val / "coins_copy.png")  # test/val overlap, no train
    return train, test, val


@pytest.fixture
def scanned(splits):
    train, test, val = splits
    result = lookalike.scan([train, test, val], method="dhash-z", hash_size=8,
                            threshold=THRESHOLD, workers=1)
    return splits, result


def test_finds_exactly_the_evaluation_images_with_a_copy_in_train(scanned):
    (train, test, val), result = scanned
    leak = find_leakage(result, [train])
    assert set(leak.purge) == {str(test / "cat_small.jpg"), str(test / "coffee_q60.jpg"),
                               str(test / "rocket_copy.jpg"), str(test / "sub_rocket.jpg"),
                               str(val / "astro_256.webp")}
    assert list(leak.purge) == sorted(leak.purge)
    by_path = {lk.path: lk for lk in leak.leaks}
    assert [m.path for m in by_path[str(test / "cat_small.jpg")].matches] == [
        str(train / "chelsea.png")]
    assert by_path[str(test / "rocket_copy.jpg")].matches[0].distance == 0
    assert all(m.set == "train" and m.distance <= THRESHOLD
               for lk in leak.leaks for m in lk.matches)
    # the stereo pair (same scene, other viewpoint) and within-test copies are not leaks
    assert str(test / "motorcycle_right.png") not in leak.purge
    assert str(test / "brick_again.png") not in leak.purge
    assert {s.name: (s.images, s.leaked, s.reference) for s in leak.sets} == {
        "train": (9, 0, True), "test": (9, 4, False), "val": (4, 1, False)}
    assert leak.reference == (str(train),)


def test_split_overlap_matrix_counts_images_with_a_match_in_each_set(scanned):
    (train, _test, _val), result = scanned
    leak = find_leakage(result, [train])
    assert [s.name for s in leak.sets] == ["train", "test", "val"]
    assert leak.overlap == (
        (0, 3, 1),  # train images copied into test (chelsea, coffee, rocket) / val (astronaut)
        (4, 4, 1),  # test: 4 leak into train; 4 have a copy inside test; coins is also in val
        (1, 1, 0),  # val: astro leaks into train; coins_copy overlaps test
    )
    text = leak.render_text()
    assert "split overlap" in text and "purge list: 5 files" in text


def test_leakage_groups_keep_the_reference_copy(scanned, tmp_path):
    (train, _test, _val), result = scanned
    leak = find_leakage(result, [train])
    assert len(leak.groups) == len(leak.purge)
    for g, path in zip(leak.groups, leak.purge, strict=True):
        assert g.representative == path and g.members[0].record.path == path
        assert all(Path(m.record.path).is_relative_to(train) for m in g.members[1:])
    restricted = restrict_to_leakage(result, leak)
    assert restricted.stats["duplicates"] == 5 and len(restricted.groups) == 5
    out = tmp_path / "leak.json"
    write_report(restricted, out, leakage=leak)
    data = json.loads(out.read_text())
    assert data["leakage"]["purge"] == list(leak.purge)
    assert data["leakage"]["reference"] == [str(train)]
    assert data["leakage"]["overlap"]["matrix"] == [list(r) for r in leak.overlap]
    for g in data["groups"]:
        assert all(Path(k).is_relative_to(train) for k in g["keep"])  # reference is kept


def test_apply_on_a_leakage_report_moves_the_purge_list_and_never_the_reference(scanned,
                                                                                tmp_path):
    (train, test, val), result = scanned
    leak = find_leakage(result, [train])
    report = tmp_path / "leak.json"
    # The whole scan's result, as an API user passes it: the report holds the cross-set
    # groups only (it also held test's own duplicates, and apply moved those too).
    write_report(result, report, leakage=leak)
    assert render_paths(result, leakage=leak).splitlines() == sorted(leak.purge)
    before = {d: snapshot(d) for d in (train, test, val)}
    for keep in (None, "none", "smallest-file"):  # whatever the policy: train is protected
        p = plan(report, action="move", to=tmp_path / "q", keep=keep)
        assert sorted(op.path for op in p.operations) == sorted(leak.purge)
    res = apply(plan(report, action="move", to=tmp_path / "q", keep="none"),
                journal=tmp_path / "j.jsonl")
    assert res.ok
    assert snapshot(train) == before[train]
    assert not any(os.path.exists(p) for p in leak.purge)
    assert (tmp_path / "q" / "test" / "cat_small.jpg").exists()
    undo(tmp_path / "j.jsonl")
    assert {d: snapshot(d) for d in (train, test, val)} == before


def test_a_leakage_check_at_its_own_threshold_is_planned_at_that_threshold(splits, tmp_path):
    """find_leakage(threshold=...) wider than the scan's: the plan's chain check used the
    scan's threshold and skipped such groups as 'edited'."""
    train, test, val = splits
    moon = Image.open(train / "moon.png").convert("RGB")
    ImageEnhance.Contrast(moon).enhance(0.7).save(test / "moon_flat.jpg", quality=70)
    result = lookalike.scan([train, test, val], method="dhash-z", hash_size=8, threshold=0,
                            workers=1)
    leak = find_leakage(result, [train], threshold=THRESHOLD)
    assert any(m.distance > 0 for lk in leak.leaks for m in lk.matches)  # wider than 0
    report = tmp_path / "leak.json"
    write_report(restrict_to_leakage(result, leak), report, leakage=leak)
    p = plan(report, action="move", to=tmp_path / "q")
    assert p.skipped == () and sorted(op.path for op in p.operations) == sorted(leak.purge)


def test_a_blank_test_image_leaks_only_from_its_byte_copy(tmp_path):
    """Solid squares of other colours all hash to 0: they are not leaks of each other."""
    train, test = tmp_path / "train", tmp_path / "test"
    for d in (train, test):
        d.mkdir()
    Image.new("RGB", (64, 64), (255, 0, 0)).save(train / "red.png")
    Image.new("RGB", (64, 64), (0, 0, 255)).save(test / "blue.png")
    shutil.copyfile(train / "red.png", test / "red_copy.png")
    result = lookalike.scan([train, test], workers=1)
    leak = find_leakage(result, [train])
    assert sorted(os.path.basename(p) for p in leak.purge) == ["red_copy.png"]


def test_dataset_cleanup_counts_every_name_of_a_hard_linked_file(tmp_path, scene):
    """A file is scanned once, its other names are aliases: dedupe_dataset looked at the
    first name only, so a test row hard-linked to a train row did not leak. (A split lists
    each file once: two names of it in one split are one row.)"""
    train, test = tmp_path / "train", tmp_path / "test"
    for d in (train, test):
        d.mkdir()
    scene(1).save(train / "a.png")
    scene(2).save(train / "b.png")
    scene(3).save(test / "c.png")
    os.link(train / "a.png", test / "d_link.png")  # a leak, at distance 0
    os.link(train / "b.png", train / "e_link.png")  # a duplicate inside train
    cleanup = lookalike.dedupe_dataset({"train": train, "test": test}, workers=1)
    assert cleanup.rows == {"train": 2, "test": 2}
    # Each row's path: the indices mean something for folders (a split lists each file once,
    # so they are not the positions in a listing of names).
    assert cleanup.paths == {"train": (str(train / "a.png"), str(train / "b.png")),
                             "test": (str(test / "c.png"), str(test / "d_link.png"))}
    assert cleanup.to_dict()["splits"][1]["paths"] == list(cleanup.paths["test"])
    assert cleanup.leaked == {"train": (), "test": (1,)}
    assert cleanup.leaks[0].matches[0].distance == 0
    assert cleanup.keep == {"train": (0, 1), "test": (0,)}


def test_cli_scan_with_reference_reports_leakage(runner, splits, tmp_path):
    train, test, val = splits
    out = tmp_path / "r.json"
    res = runner.invoke(cli, ["scan", "--reference", str(train), str(test), str(val),
                              "-t", str(THRESHOLD), *PIN, "-j", "1", "-q", "--no-cache",
                              "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "leakage against the reference (train)" in res.output
    assert "test: 4 of 9 images" in res.output and "split overlap" in res.output
    data = json.loads(out.read_text())
    assert data["roots"] == [str(train), str(test), str(val)]
    assert len(data["leakage"]["purge"]) == 5 and len(data["groups"]) == 5
    res = runner.invoke(cli, ["apply", str(out), "-a", "delete"])
    assert res.exit_code == 0 and "total: 5 files" in res.output
    assert f"protected, never touched: {train}" in res.output


def test_two_sets_print_no_matrix(runner, splits):
    train, test, _ = splits
    res = runner.invoke(cli, ["scan", "--reference", str(train), str(test), "-t",
                              str(THRESHOLD), *PIN, "-j", "1", "-q", "--no-cache"])
    assert res.exit_code == 0, res.output
    assert "split overlap" not in res.output and "purge list: 4 files" in res.output


def test_find_leakage_takes_records_and_a_threshold(scanned):
    (train, test, _val), result = scanned
    from_records = find_leakage(result.records, [train], threshold=THRESHOLD)
    assert from_records.purge == find_leakage(result, [train]).purge
    with pytest.raises(ConfigError, match="threshold"):
        find_leakage(result.records, [train])
    # One reference set as a plain path: it was split into its characters ("the reference /
    # was not scanned"), a Path was "not iterable"; a generator or a text threshold were
    # AttributeError and a message about 'max_distance'.
    assert find_leakage(result, str(train)).purge == from_records.purge
    assert find_leakage(result, Path(train)).purge == from_records.purge
    with pytest.raises(ConfigError, match="a ScanResult or a list of ImageRecords"):
        find_leakage((r for r in result.records), [train], threshold=THRESHOLD)
    with pytest.raises(ConfigError, match="threshold '6' is not a number of bits"):
        find_leakage(result, [train], threshold="6")  # type: ignore[arg-type]
    # A threshold no scan takes (its report was then refused by plan as "edited").
    with pytest.raises(ConfigError, match="more than half the 64 bits"):
        find_leakage(result, [train], threshold=40)
    # At threshold 0 only identical hashes leak. The resized astronaut in val/ is 1 bit off
    # as it stands, but one of its flipped/turned hashes (stored by default) is identical.
    assert find_leakage(result, [train], threshold=0).purge == (
        str(test / "cat_small.jpg"), str(test / "coffee_q60.jpg"),
        str(test / "rocket_copy.jpg"), str(test / "sub_rocket.jpg"),
        str(_val / "astro_256.webp"))


def test_bad_sets_are_config_errors(tmp_path, scene):
    (tmp_path / "train" / "inner").mkdir(parents=True)
    (tmp_path / "test").mkdir()
    with pytest.raises(ConfigError, match="overlap"):
        check_sets([tmp_path / "train"], [tmp_path / "train" / "inner"])
    with pytest.raises(ConfigError, match="overlap"):
        check_sets([tmp_path / "train"], [tmp_path])
    with pytest.raises(ConfigError, match="sets to check"):
        check_sets([tmp_path / "train"], [])
    scene(1).save(tmp_path / "test" / "a.png")
    result = lookalike.scan([tmp_path / "test"], workers=1)
    with pytest.raises(ConfigError, match="was not scanned"):
        find_leakage(result, [tmp_path / "train"])
    with pytest.raises(ConfigError, match="other set"):
        find_leakage(result, [tmp_path / "test"])


def test_a_file_list_is_no_set_of_a_leakage_check(tmp_path, capsys):
    # Without other sets it said only "give the sets to check"; with them, the listed files
    # came from no set and the check failed after the whole scan.
    from lookalike.cli import main

    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "list.txt").write_text(str(tmp_path / "x.png") + "\n")
    for sets in ([], [str(tmp_path / "test")]):
        with pytest.raises(SystemExit) as exc:
            main(["scan", "--reference", str(tmp_path / "train"), *sets, "--files-from",
                  str(tmp_path / "list.txt"), "-q", "--no-cache"])
        assert exc.value.code == 2
        assert "a file list is not a set" in capsys.readouterr().err


def test_cli_rejects_overlapping_sets_before_scanning(tmp_path):
    from lookalike.cli import main

    (tmp_path / "train" / "test").mkdir(parents=True)
    with pytest.raises(SystemExit) as exc:
        main(["scan", "--reference", str(tmp_path / "train"), str(tmp_path / "train" / "test"),
              "-q", "--no-cache"])
    assert exc.value.code == 2


def test_leakage_scan_reuses_the_hash_cache(runner, splits, tmp_path):
    train, test, val = splits
    cache = tmp_path / "hashes.sqlite"
    outs = []
    for n in (1, 2):
        out = tmp_path / f"r{n}.json"
        res = runner.invoke(cli, ["scan", "--reference", str(train), str(test), str(val),
                                  "-t", str(THRESHOLD), *PIN, "-j", "1", "-q",
                                  "--cache", str(cache), "-o", str(out)])
        assert res.exit_code == 0, res.output
        outs.append(json.loads(out.read_text()))
    first, second = outs
    assert first["stats"]["hashed"] == first["stats"]["images"] == 22
    assert second["stats"]["from_cache"] == 22 and second["stats"]["hashed"] == 0
    assert second["leakage"]["purge"] == first["leakage"]["purge"]


def test_csv_has_the_set_and_purge_columns_and_paths_list_the_purge_list(runner, splits,
                                                                         tmp_path):
    train, test, val = splits
    common = ["scan", "--reference", str(train), str(test), str(val), "-t", str(THRESHOLD),
              *PIN, "-j", "1", "-q", "--no-cache"]
    out = tmp_path / "leak.csv"
    res = runner.invoke(cli, [*common, "-o", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    purge = {str(test / n) for n in ("cat_small.jpg", "coffee_q60.jpg", "rocket_copy.jpg",
                                     "sub_rocket.jpg")} | {str(val / "astro_256.webp")}
    assert {r["path"] for r in rows if r["purge"] == "1"} == purge
    for r in rows:
        assert r["set"] == Path(r["path"]).relative_to(tmp_path).parts[0]
        # the reference copies are kept, the leaking images are not
        assert r["keep"] == ("1" if r["set"] == "train" else "0")
        assert r["purge"] == ("0" if r["set"] == "train" else "1")
    res = runner.invoke(cli, [*common, "--format", "paths"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == sorted(purge)
    res = runner.invoke(cli, [*common, "--format", "paths0"])
    assert res.output.split("\0") == [*sorted(purge), ""]


def test_a_leak_path_that_leads_into_the_reference_is_not_purged(tmp_path, scene):
    # test/linked -> train/sub, scanned with links followed: the purge list named
    # test/linked/a.png, and removing it removes the reference file itself.
    train, test = tmp_path / "train", tmp_path / "test"
    (train / "sub").mkdir(parents=True)
    test.mkdir()
    scene(1).save(train / "sub" / "a.png")
    shutil.copyfile(train / "sub" / "a.png", test / "a_copy.png")
    (test / "linked").symlink_to(train / "sub")
    result = lookalike.scan([train, test], workers=1, follow_symlinks=True)
    leak = find_leakage(result, [train])
    assert [Path(p).name for p in leak.purge] == ["a_copy.png"]
    assert all(str(test / "linked") not in p for p in leak.purge)
    assert "remove the link instead" in leak.render_text()  # said, not silently dropped
    # The purge list is what apply acts on.
    report = tmp_path / "leak.json"
    write_report(result, report, leakage=leak)
    p = plan(report, action="move", to=tmp_path / "q")
    assert [op.path for op in p.operations] == list(leak.purge)


@pytest.mark.parametrize("alone", [False, True])
def test_a_checked_sets_hard_link_of_a_reference_file_is_purged_as_a_name(tmp_path, scene,
                                                                          alone):
    """The purge list named test/linked.png (a hard link of train/a.png), but apply left it
    ("a hard link of the kept file; not touched"), or skipped its group as one file: the
    leak stayed in test. Moving that name leaves train's name and bytes as they were."""
    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    scene(1).save(train / "a.png")
    os.link(train / "a.png", test / "linked.png")
    if not alone:  # another leak of the same picture beside it
        Image.open(train / "a.png").save(test / "a_copy.jpg", quality=90)
    result = lookalike.scan([train, test], workers=1)
    leak = find_leakage(result, [train])
    assert str(test / "linked.png") in leak.purge
    report = tmp_path / "leak.json"
    write_report(result, report, leakage=leak)
    p = plan(report, action="move", to=tmp_path / "q")
    assert sorted(op.path for op in p.operations) == sorted(leak.purge)
    before = snapshot(train)
    res = apply(p, journal=tmp_path / "j.jsonl")
    assert res.ok and not any(os.path.exists(x) for x in leak.purge)
    assert snapshot(train) == before
    undo(tmp_path / "j.jsonl")
    assert os.path.samefile(train / "a.png", test / "linked.png")


def test_link_actions_are_refused_on_a_leakage_report(scanned, tmp_path):
    # hardlink/symlink "purged" each leak by making it a link to the train file: the test
    # set still held every leaked image.
    (train, _test, _val), result = scanned
    leak = find_leakage(result, [train])
    report = tmp_path / "leak.json"
    write_report(result, report, leakage=leak)
    for action in ("hardlink", "symlink"):
        with pytest.raises(ConfigError, match="purge leaks with 'move' or 'delete'"):
            plan(report, action=action)


def test_dataset_splits_that_overlap_are_refused(tmp_path, scene):
    # One folder as two splits gave rows with empty paths and no leaks (a row belongs to
    # the last split that listed it).
    (tmp_path / "all" / "test").mkdir(parents=True)
    scene(1).save(tmp_path / "all" / "test" / "a.png")
    for splits in ({"train": tmp_path / "all", "test": tmp_path / "all"},
                   {"all": tmp_path / "all", "test": tmp_path / "all" / "test"}):
        with pytest.raises(ConfigError, match="overlap"):
            lookalike.dedupe_dataset(splits, workers=1)


def test_a_split_that_is_a_folder_of_shards_is_not_silently_empty(tmp_path, scene):
    # A folder of WebDataset shards given as a split was read as a folder of images: the
    # split had 0 rows and "leaked 0", without a word.
    import tarfile

    (tmp_path / "train").mkdir()
    scene(1).save(tmp_path / "train" / "a.png")
    shards = tmp_path / "shards"
    shards.mkdir()
    scene(1).save(tmp_path / "b.png")
    with tarfile.open(shards / "test-0.tar", "w") as tar:
        tar.add(tmp_path / "b.png", arcname="0001.png")
    with pytest.raises(ConfigError, match="split 'test' has no image files, only tar"):
        lookalike.dedupe_dataset({"train": tmp_path / "train", "test": shards}, workers=1)
    scene(2).save(shards / "c.png")  # images beside the shards: read, and the shards named
    with pytest.warns(UserWarning, match="split 'test': skipped 1 tar or Parquet file"):
        cleanup = lookalike.dedupe_dataset({"train": tmp_path / "train", "test": shards},
                                           workers=1)
    assert cleanup.paths["test"] == (str(shards / "c.png"),)


def test_the_purge_line_of_leaks_inside_a_shard_does_not_promise_a_move(tmp_path, scene):
    # "apply REPORT --action move quarantines them" was said of images inside a tar shard,
    # which apply refuses to act on.
    import tarfile

    (tmp_path / "train").mkdir()
    scene(1).save(tmp_path / "train" / "a.png")
    scene(1).save(tmp_path / "b.png")
    with tarfile.open(tmp_path / "test.tar", "w") as tar:
        tar.add(tmp_path / "b.png", arcname="0001.png")
    result = lookalike.scan([tmp_path / "train", tmp_path / "test.tar"], workers=1)
    text = find_leakage(result, tmp_path / "train").render_text()
    assert "purge list: 1 images, 1 of them inside tar shards" in text
    assert "quarantine" not in text
    (tmp_path / "test").mkdir()
    scene(1).save(tmp_path / "test" / "b.png")
    result = lookalike.scan([tmp_path / "train", tmp_path / "test"], workers=1)
    text = find_leakage(result, tmp_path / "train").render_text()
    assert "purge list: 1 files (moving them to a quarantine folder" in text


def test_an_empty_set_is_said_not_passed_off_as_no_leakage(runner, splits, tmp_path):
    # Review: an empty (or mistyped but existing) split read as "0 of 0 images ...": a
    # check that compared nothing looked like a pass.
    train, test, _ = splits
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in (["--reference", str(train), str(empty)],
                 ["--reference", str(empty), str(test)]):
        res = runner.invoke(cli, ["scan", *argv, *PIN, "-t", str(THRESHOLD), "-j", "1",
                                  "--no-cache"])
        assert res.exit_code == 0, res.output
        assert f"warning: empty ({empty}) holds no readable images: nothing was compared" in \
            res.output
        assert "0 of 0 images" not in res.output
    res = runner.invoke(cli, ["scan", "--reference", str(train), str(test), *PIN, "-t",
                              str(THRESHOLD), "-j", "1", "--no-cache"])
    assert "warning" not in res.output
    # Machine formats and the page say it too (a script read a mistyped reference as
    # "no leaks": exit 0, nothing on stderr).
    res = runner.invoke(cli, ["scan", "--reference", str(empty), str(test), *PIN, "-t",
                              str(THRESHOLD), "-j", "1", "--no-cache", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert "holds no readable images" in res.stderr
    data = json.loads(res.stdout)
    assert data["leakage"]["warnings"] == [
        f"warning: empty ({empty}) holds no readable images: nothing was compared with it"]
    assert "holds no readable images" in res.stderr
    from lookalike.report.html import _leakage_lines
    lines = _leakage_lines(data["leakage"])
    assert any("holds no readable images" in line for line in lines)
    assert not any("0 of 0" in line for line in lines)
    del data["leakage"]["warnings"]  # a report of an earlier version: said from its sets
    assert _leakage_lines(data["leakage"]) == lines


def test_a_reference_scanned_inside_another_root_says_so(tmp_path, scene):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    scene(1).save(tmp_path / "train" / "a.png")
    scene(2).save(tmp_path / "test" / "b.png")
    result = lookalike.scan([tmp_path], workers=1)
    with pytest.raises(ConfigError, match=r"scanned inside .*scan each split as its own path"):
        find_leakage(result, [tmp_path / "train"])


def test_a_set_named_twice_is_one_set_and_one_named_both_ways_is_refused(tmp_path):
    # Review: `scan A B A --reference A` said "the sets A and A overlap".
    for name in ("train", "test"):
        (tmp_path / name).mkdir()
    train, test = str(tmp_path / "train"), str(tmp_path / "test")
    assert check_sets([train, train], [test, test, f"{test}/"]) == ([train], [test])
    with pytest.raises(ConfigError, match="as a reference set and as a set to check"):
        check_sets([train], [test, train])


def test_the_page_counts_the_suspects_only_unverified_embeddings_matched():
    from lookalike.report.html import _leakage_lines

    leakage = {"sets": [{"name": "train", "reference": True, "images": 3},
                        {"name": "test", "images": 2, "leaked": 2}],
               "threshold": 6, "warnings": [], "unverified": ["/d/test/b.png"]}
    lines = _leakage_lines(leakage)
    assert any(line.startswith("1 suspect(s) only unverified embeddings") for line in lines)
    del leakage["unverified"]  # a report of an earlier version
    assert not any("suspect" in line for line in _leakage_lines(leakage))
