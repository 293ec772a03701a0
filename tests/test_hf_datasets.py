"""Hugging Face ``datasets`` input: rows to drop per split and cross-split leaks, by row index.

One small dataset is built from real photos (scikit-image's samples) and copies of them
(resized, re-encoded, one test image copied into train); every expectation below is what was
built, so a wrong index, a missed copy or a leak counted in the wrong split fails. Nothing is
downloaded from the Hub.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

import lookalike
from lookalike.cli import cli, main
from lookalike.config import INSTALL_HINTS
from lookalike.errors import ConfigError

datasets = pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

#: Larger first, then bigger files: the keeper of a pair is the original, whatever the
#: default policy becomes.
KEEP = ["largest-resolution,largest-file"]


def _encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _half(img: Image.Image, scale: float = 0.5) -> Image.Image:
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)


@pytest.fixture(scope="module")
def splits(photos: list[Path]) -> dict[str, list[tuple[str, bytes]]]:
    """``{split: [(name, encoded image)]}``; the expected answers are in the tests."""
    by = {p.stem: Image.open(p).convert("RGB") for p in photos}
    train = [
        ("astronaut.jpg", _encode(by["astronaut"])),                 # 0
        ("chelsea.jpg", _encode(by["chelsea"])),                     # 1
        ("astronaut_small.png", _encode(_half(by["astronaut"]), "PNG")),  # 2: copy of 0
        ("coffee.jpg", _encode(by["coffee"])),                       # 3
        ("rocket.jpg", _encode(by["rocket"], quality=85)),           # 4
        ("camera.png", _encode(by["camera"], "PNG")),                # 5
        ("coffee_q40.jpg", _encode(by["coffee"], quality=40)),       # 6: copy of 3
    ]
    moon = _encode(by["moon"], "PNG")
    train.append(("moon.png", moon))                                 # 7: test 1, copied
    test = [
        ("coins.jpg", _encode(by["coins"])),                         # 0
        ("moon.png", moon),                                          # 1: in train (7)
        ("chelsea_small.jpg", _encode(_half(by["chelsea"], 0.75))),  # 2: copy of train 1
        ("hubble.jpg", _encode(by["hubble_deep_field"])),            # 3
        ("hubble_small.jpg", _encode(_half(by["hubble_deep_field"]))),  # 4: copy of 3
    ]
    return {"train": train, "test": test}


EXPECTED_DROP = {"train": (2, 6), "test": (4,)}
EXPECTED_LEAKED = {"train": (), "test": (1, 2)}
EXPECTED_KEEP = {"train": (0, 1, 3, 4, 5, 7), "test": (0, 3)}


@pytest.fixture(scope="module")
def dataset(splits, tmp_path_factory):
    """A ``DatasetDict``: train's images stored as paths (datasets reads them), test's as
    bytes, each with a label column beside the images."""
    folder = tmp_path_factory.mktemp("train_files")
    for name, data in splits["train"]:
        (folder / name).write_bytes(data)
    train = datasets.Dataset.from_dict(
        {"image": [str(folder / name) for name, _ in splits["train"]],
         "label": list(range(len(splits["train"])))}).cast_column("image", datasets.Image())
    test = datasets.Dataset.from_dict(
        {"label": list(range(len(splits["test"]))),
         "image": [{"bytes": data, "path": None} for _, data in splits["test"]]},
        features=datasets.Features({"label": datasets.Value("int64"),
                                    "image": datasets.Image()}))
    return datasets.DatasetDict({"train": train, "test": test})


def _leaks(cleanup) -> list[tuple[str, int, list[tuple[str, int]]]]:
    return [(lk.split, lk.index, [(m.split, m.index) for m in lk.matches])
            for lk in cleanup.leaks]


def test_dedupe_dataset_finds_the_rows_built(dataset, splits):
    cleanup = lookalike.dedupe_dataset(dataset, keep=KEEP, workers=1)

    assert cleanup.rows == {"train": 8, "test": 5}
    assert cleanup.drop == EXPECTED_DROP
    assert cleanup.leaked == EXPECTED_LEAKED
    assert cleanup.keep == EXPECTED_KEEP
    assert _leaks(cleanup) == [("test", 1, [("train", 7)]), ("test", 2, [("train", 1)])]
    assert cleanup.leaks[0].matches[0].distance == 0  # the same bytes
    assert not cleanup.scan.errors
    # The scan it came from speaks of rows, not of the temporary files it read.
    assert cleanup.scan.roots == ["train", "test"]
    assert {r.path for r in cleanup.scan.records} == {
        f"{split}#{i}" for split, rows in splits.items() for i in range(len(rows))}

    clean = cleanup.select(dataset)
    assert isinstance(clean, datasets.DatasetDict)
    for split, keep in EXPECTED_KEEP.items():
        assert clean[split]["label"] == list(keep)
    # Another dataset with the same splits (here: fewer rows) was a bare IndexError, or
    # the wrong rows when it had as many.
    fewer = datasets.DatasetDict({k: v.select(range(len(v) - 1)) for k, v in dataset.items()})
    with pytest.raises(ConfigError, match=r"split '\w+' has \d+ rows, the one cleaned had"):
        cleanup.select(fewer)


def test_a_plain_dict_of_datasets_is_a_dataset_dict(dataset):
    # It was taken for {split: paths} and failed with a TypeError from os.fspath.
    cleanup = lookalike.dedupe_dataset(dict(dataset), keep=KEEP, workers=1)
    assert (cleanup.drop, cleanup.leaked) == (EXPECTED_DROP, EXPECTED_LEAKED)
    assert cleanup.select(dict(dataset))["test"]["label"] == list(EXPECTED_KEEP["test"])
    with pytest.raises(ConfigError, match=r"split 'test' is not a datasets\.Dataset"):
        lookalike.dedupe_dataset({"train": dataset["train"], "test": "test/"})
    with pytest.raises(ConfigError, match="give each split as a path"):
        lookalike.dedupe_dataset({"train": 3})


def test_scan_accepts_a_dataset(dataset):
    result = lookalike.scan(dataset, workers=1)

    assert sorted(sorted(m.record.path for m in g.members) for g in result.groups) == [
        ["test#1", "train#7"], ["test#2", "train#1"], ["test#3", "test#4"],
        ["train#0", "train#2"], ["train#3", "train#6"]]


def test_a_selected_dataset_is_indexed_as_selected(dataset):
    # Rows are counted in the dataset as the caller sees it (an indices mapping, here
    # reversed), not in the Arrow file beneath it.
    test = dataset["test"].select([4, 3, 2, 1, 0])
    cleanup = lookalike.dedupe_dataset(test, keep=KEEP, workers=1)

    assert cleanup.rows == {"data": 5}  # a Dataset without a split name
    assert cleanup.drop == {"data": (0,)}  # the small hubble copy, now row 0
    assert cleanup.leaks == ()
    assert cleanup.select(test)["label"] == [3, 2, 1, 0]


def test_cli_cleans_a_saved_dataset(dataset, tmp_path, runner, capsys):
    saved = tmp_path / "saved"
    dataset.save_to_disk(str(saved))
    out = tmp_path / "cleanup.json"

    res = runner.invoke(cli, ["scan", str(saved), "-o", str(out), "-j", "1", "-q",
                              "--keep", KEEP[0]])

    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["kind"] == "lookalike-dataset-cleanup"
    got = {s["name"]: (tuple(s["drop"]), tuple(s["leaked"]), tuple(s["keep"]))
           for s in doc["splits"]}
    assert got == {split: (EXPECTED_DROP[split], EXPECTED_LEAKED[split], EXPECTED_KEEP[split])
                   for split in ("train", "test")}
    assert [(lk["split"], lk["index"]) for lk in doc["leaks"]] == [("test", 1), ("test", 2)]
    assert "test: 5 rows: keep 2, drop 1" in res.output

    # Options that make no sense for a dataset are refused before any work.
    capsys.readouterr()
    assert _exit_code(["scan", str(saved), "--html", str(tmp_path / "p.html")]) == 2
    assert "saved dataset" in capsys.readouterr().err
    assert not (tmp_path / "p.html").exists()


def test_parquet_and_shards_give_the_same_answer(splits, tmp_path):
    # train as a Parquet file with datasets' image struct, test as two WebDataset shards.
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows = [{"bytes": data, "path": name} for name, data in splits["train"]]
    pq.write_table(pa.table({"image": pa.array(rows, type=image)}), tmp_path / "train.parquet",
                   row_group_size=3)
    shards = []
    for k, part in enumerate((splits["test"][:3], splits["test"][3:])):
        shard = tmp_path / f"test-{k}.tar"
        with tarfile.open(shard, "w") as tf:
            for i, (name, data) in enumerate(part):
                info = tarfile.TarInfo(f"{3 * k + i:06d}.{name.rsplit('.', 1)[1]}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        shards.append(shard)

    cleanup = lookalike.dedupe_dataset({"train": tmp_path / "train.parquet", "test": shards},
                                       keep=KEEP, workers=1)

    assert (cleanup.drop, cleanup.leaked, cleanup.keep) == (
        EXPECTED_DROP, EXPECTED_LEAKED, EXPECTED_KEEP)
    assert _leaks(cleanup) == [("test", 1, [("train", 7)]), ("test", 2, [("train", 1)])]


def _exit_code(argv: list[str]) -> int | str | None:
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code
    return None


def test_missing_extra_and_missing_column(dataset, tmp_path, capsys, monkeypatch):
    with pytest.raises(ConfigError, match="no column of images"):
        lookalike.dedupe_dataset(dataset.remove_columns("image"))
    saved = tmp_path / "saved"
    dataset["test"].save_to_disk(str(saved))

    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails
    with pytest.raises(ConfigError) as err:
        lookalike.dedupe_dataset(saved)
    assert INSTALL_HINTS["hf"] in str(err.value)
    assert _exit_code(["scan", str(saved)]) == 2
    assert INSTALL_HINTS["hf"] in capsys.readouterr().err


def test_a_damaged_saved_dataset_says_what_is_wrong_and_what_to_do(dataset, tmp_path, capsys):
    saved = tmp_path / "saved"
    dataset.save_to_disk(str(saved))
    (saved / "dataset_dict.json").write_text("{}")  # the list of splits is gone
    capsys.readouterr()  # datasets' own progress bars
    assert _exit_code(["scan", str(saved), "-q"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"cannot load the dataset saved at {saved}: its metadata" in line
    assert "lacks the entry 'splits'" in line and "save the dataset again" in line
    (saved / "dataset_dict.json").write_text("{")
    with pytest.raises(ConfigError, match=r"not valid JSON .*line 1\b.*save the dataset again"):
        lookalike.dedupe_dataset(saved)


def test_the_column_option_says_it_names_a_saved_datasets_image_column(runner):
    res = runner.invoke(cli, ["scan", "--help"])
    assert "a saved Hugging Face dataset's image column" in " ".join(res.output.split())


def test_a_workdir_gets_a_folder_of_its_own_and_nothing_in_it_is_touched(dataset, tmp_path):
    """The splits were written as workdir/0.parquet, 1.parquet...: a file of the user's of
    that name was overwritten, silently."""
    (tmp_path / "0.parquet").write_text("precious")
    cleanup = lookalike.dedupe_dataset(dataset, keep=KEEP, workers=1, workdir=tmp_path)
    assert cleanup.drop == EXPECTED_DROP
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.parquet"]  # scratch removed
    assert (tmp_path / "0.parquet").read_text() == "precious"
    with pytest.raises(ConfigError, match="not an existing folder"):
        lookalike.dedupe_dataset(dataset, workers=1, workdir=tmp_path / "nope")


def test_a_row_whose_image_file_is_missing_is_one_problem_and_the_rest_go_on(splits,
                                                                              tmp_path):
    """Images stored as paths are read while the split is exported: one missing file (or a
    folder) aborted the whole run with FileNotFoundError."""
    folder = tmp_path / "files"
    folder.mkdir()
    for name, data in splits["train"]:
        (folder / name).write_bytes(data)
    paths = [str(folder / name) for name, _ in splits["train"]]
    paths[4] = str(folder / "gone.jpg")
    paths[5] = str(folder)
    ds = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image())
    cleanup = lookalike.dedupe_dataset(ds, keep=KEEP, workers=1)
    assert cleanup.drop == {"data": (2, 6)}  # the copies are still found
    errors = {p.path: p for p in cleanup.scan.errors}
    assert sorted(errors) == ["data#4", "data#5"]
    assert errors["data#4"].error == "vanished" and "gone.jpg" in errors["data#4"].message
    assert errors["data#5"].error in ("not-a-regular-file", "read-error")


def test_a_dataset_scan_says_where_its_leaks_are_and_what_acts_on_it(dataset, tmp_path):
    """find_leakage on it said "test#0 comes from 'test', which is not a scanned set"; plan on
    its report "a relative path"; a Parquet file given whole, "not a complete save_to_disk
    folder"; a column one split lacks did not say which."""
    result = lookalike.scan(dataset, workers=1)
    with pytest.raises(ConfigError, match=r"dedupe_dataset\(dataset\).leaks"):
        lookalike.find_leakage(result, ["train"])
    lookalike.write_report(result, tmp_path / "r.json")
    with pytest.raises(lookalike.ReportError, match=r"a dataset's rows.*select"):
        lookalike.plan(tmp_path / "r.json", action="delete")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "train.parquet")
    with pytest.raises(ConfigError, match=r"give the splits by name, e.g. \{'train'"):
        lookalike.dedupe_dataset(str(tmp_path / "train.parquet"))
    other = dataset["test"].rename_column("image", "picture")
    mixed = datasets.DatasetDict({"train": dataset["train"], "test": other})
    with pytest.raises(ConfigError, match="split 'test': the dataset has no column 'image'"):
        lookalike.dedupe_dataset(mixed, column="image", workers=1)


def test_a_saved_dataset_among_other_paths_or_as_a_reference_is_refused(dataset, tmp_path,
                                                                        capsys, scene):
    # Read as a folder of images it holds none: the leakage check said "0 of 12 images have
    # a near duplicate" against it, and a scan of it with a folder scanned no row of it.
    saved = tmp_path / "saved"
    dataset.save_to_disk(str(saved))
    (tmp_path / "photos").mkdir()
    scene(1).save(tmp_path / "photos" / "a.png")
    with pytest.raises(ConfigError, match="is a saved dataset, scanned on its own"):
        lookalike.scan([saved, tmp_path / "photos"], workers=1)
    capsys.readouterr()
    assert _exit_code(["scan", "--reference", str(saved), str(tmp_path / "photos"), "-q",
                       "--no-cache"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "is a saved dataset, not a folder of images: it cannot be a reference set" in line


def test_a_streaming_dataset_is_refused_before_it_is_read(dataset):
    # It was iterated row by row, then refused for its rows being dicts.
    stream = dataset["test"].to_iterable_dataset()
    with pytest.raises(TypeError, match="a streaming dataset cannot be scanned: load it "
                                        "without streaming=True"):
        lookalike.scan(stream)


def test_a_named_cache_with_a_saved_dataset_is_refused_not_ignored(dataset, tmp_path, capsys):
    saved = tmp_path / "saved"
    dataset.save_to_disk(str(saved))
    capsys.readouterr()
    assert _exit_code(["scan", str(saved), "--cache", str(tmp_path / "c.sqlite"), "-q"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "scanned without a hash cache" in line and not (tmp_path / "c.sqlite").exists()


def test_a_cleanup_is_never_written_inside_the_saved_dataset(dataset, tmp_path, capsys):
    # -o saved/state.json replaced the dataset's own metadata with the cleanup.
    saved = tmp_path / "saved"
    dataset.save_to_disk(str(saved))
    before = {p: p.read_bytes() for p in saved.rglob("*") if p.is_file()}
    capsys.readouterr()
    for name in ("dataset_dict.json", "new.json"):
        assert _exit_code(["scan", str(saved), "-o", str(saved / name), "-q"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "would be written inside the saved dataset" in line
    assert {p: p.read_bytes() for p in saved.rglob("*") if p.is_file()} == before


def test_a_broken_row_is_told_live_by_its_row_not_a_temporary_file(splits):
    """The live problem line named the temporary Parquet file the split was exported to
    (deleted by the time it was read); the result named the row."""
    from lookalike.events import NullReporter

    class Told(NullReporter):
        def __init__(self) -> None:
            self.paths: list[str] = []

        def problem(self, problem) -> None:
            self.paths.append(problem.path)

    rows = [{"bytes": data, "path": None} for _, data in splits["test"]]
    rows[3] = {"bytes": splits["test"][3][1][:200], "path": None}  # a truncated JPEG
    ds = datasets.Dataset.from_dict({"image": rows}, features=datasets.Features(
        {"image": datasets.Image()}))
    told = Told()
    cleanup = lookalike.dedupe_dataset(ds, keep=KEEP, workers=1, reporter=told)
    assert [p.path for p in cleanup.scan.errors] == ["data#3"]
    assert told.paths == ["data#3"]


def test_options_a_dataset_has_no_use_for_are_refused_not_dropped(dataset):
    for option in ({"name_column": "label"}, {"storage_options": {"anon": True}},
                   {"input_format": "parquet"}):
        with pytest.raises(ConfigError, match="read from its own rows"):
            lookalike.scan(dataset, workers=1, **option)
