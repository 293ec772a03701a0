"""The verified hash band (ScanConfig.band, lookalike.verify.band_matches): photos whose
hashes differ by a little more than the threshold join a group once aligning the two
pictures confirms them, on real photos and their photometric edits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

import lookalike
from lookalike.analysis.leakage import find_leakage
from lookalike.cli import main as _main
from lookalike.config import BAND_MIN_SIDE, ScanConfig
from lookalike.errors import ConfigError
from lookalike.report.schema import read_report


@pytest.fixture(scope="module")
def brightened(rgb_photos, tmp_path_factory) -> Path:
    """scikit-image's coffee and a copy brightened by 30%, which moves its dhash-z hash 7
    bits away (the default threshold is 6); and chelsea, another photo."""
    chosen = {p.stem: p for p in rgb_photos}
    folder = tmp_path_factory.mktemp("band")
    coffee = Image.open(chosen["coffee"]).convert("RGB")
    coffee.save(folder / "coffee.png")
    ImageEnhance.Brightness(coffee).enhance(1.3).save(folder / "coffee_bright.png")
    Image.open(chosen["chelsea"]).convert("RGB").save(folder / "chelsea.png")
    return folder


def main(argv: list[str]) -> int:
    """The command line's exit code for ``argv``."""
    with pytest.raises(SystemExit) as exc:
        _main(argv)
    return int(exc.value.code or 0)


def _by_name(result: lookalike.ScanResult) -> dict[str, lookalike.Member]:
    return {Path(m.record.path).name: m for g in result.groups for m in g.members}


def test_a_brightened_copy_beyond_the_threshold_joins_once_aligned(brightened):
    plain = lookalike.scan(brightened, band=0, workers=1)
    records = {Path(r.path).name: r for r in plain.records}
    bits = records["coffee.png"].hash - records["coffee_bright.png"].hash
    config = ScanConfig()
    assert config.resolved_threshold < bits <= config.resolved_band  # the case at hand
    assert plain.groups == []

    result = lookalike.scan(brightened, workers=1)
    members = _by_name(result)
    assert len(result.groups) == 1 and set(members) == {"coffee.png", "coffee_bright.png"}
    joined = next(m for m in members.values() if m.match == "aligned")
    assert joined.distance == bits and joined.similarity is None
    assert result.stats["band_joined"] == 1 and result.stats["band_tried"] >= 1
    # The pair is in the scan's matches beyond hashes, as leakage reads them.
    assert list(result.embedding_matches.values()) == [("aligned", None)]


def test_the_band_does_not_join_another_photo(brightened, rgb_photos, tmp_path):
    # Another photo close in hash is verified and refused: astronaut's hair and
    # background against a copy with a region moved (another moment of the scene).
    img = Image.open(next(p for p in rgb_photos if p.stem == "astronaut")).convert("RGB")
    w, h = img.size
    later = img.copy()
    later.paste(img.crop((w // 10, h // 10, w // 2, h // 2)), (w // 2, h // 3))
    img.save(tmp_path / "one.png")
    later.save(tmp_path / "later.png")
    result = lookalike.scan(tmp_path, workers=1, band=ScanConfig().nbits // 2)
    assert result.stats["band_pairs"] >= 1 and result.stats["band_joined"] == 0
    assert result.groups == []


def test_small_pictures_are_not_tried(brightened, tmp_path):
    for name in ("coffee.png", "coffee_bright.png"):
        img = Image.open(brightened / name)
        img.resize((BAND_MIN_SIDE - 1, BAND_MIN_SIDE - 1)).save(tmp_path / name)
    result = lookalike.scan(tmp_path, workers=1)
    assert result.stats["band_tried"] == 0 and result.stats["band_joined"] == 0


def test_verdicts_are_cached_and_a_changed_file_is_verified_again(brightened, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(brightened, folder)
    cache = tmp_path / "h.sqlite"
    first = lookalike.scan(folder, cache=cache, workers=1)
    assert first.stats["band_joined"] == 1 and first.stats["band_read"] == 2
    again = lookalike.scan(folder, cache=cache, workers=1)
    assert again.stats["band_joined"] == 1 and again.stats["band_read"] == 0
    assert again.stats["band_cached"] >= 1
    assert [g.paths for g in again.groups] == [g.paths for g in first.groups]
    # The copy replaced by another picture: judged again, and apart.
    Image.open(folder / "chelsea.png").save(folder / "coffee_bright.png")
    third = lookalike.scan(folder, cache=cache, workers=1)
    assert {Path(p).name for g in third.groups for p in g.paths} == {"chelsea.png",
                                                                     "coffee_bright.png"}
    assert all(m.match == "hash" for g in third.groups for m in g.members)


def test_every_report_format_says_aligned(brightened, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["scan", str(brightened), "-j", "1", "--no-cache", "-q", "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["config"]["band"] == ScanConfig().resolved_band
    assert sorted(m["match"] for g in data["groups"] for m in g["members"]) == [
        "aligned", "hash"]
    # The keep policy chooses between them as between hash matches: one is kept.
    assert len(data["groups"][0]["keep"]) == 1
    report = read_report(out)  # and back
    assert sorted(m.match for g in report.groups for m in g.members) == ["aligned", "hash"]
    line = next(x for x in capsys.readouterr().out.splitlines() if "[aligned]" in x)
    assert "coffee" in line and "d=-" not in line
    csv_out = tmp_path / "r.csv"
    assert main(["scan", str(brightened), "-j", "1", "--no-cache", "-q", "-o",
                 str(csv_out)]) == 0
    assert "aligned" in csv_out.read_text()
    page = tmp_path / "r.html"
    assert main(["scan", str(brightened), "-j", "1", "--no-cache", "-q", "-o", str(out),
                 "--html", str(page)]) == 0
    html = page.read_text()
    assert "(verified band to 20)" in html and '"mk":"aligned"' in html.replace(" ", "")


@pytest.fixture
def splits(brightened, tmp_path) -> tuple[Path, Path]:
    """train/ (coffee, chelsea) and test/ (the brightened coffee): a leak through the band."""
    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    shutil.copy(brightened / "coffee.png", train)
    shutil.copy(brightened / "chelsea.png", train)
    shutil.copy(brightened / "coffee_bright.png", test)
    return train, test


def test_leakage_reports_a_brightened_test_image(splits):
    train, test = splits
    result = lookalike.scan([train, test], workers=1)
    leakage = find_leakage(result, train)
    assert [Path(lk.path).name for lk in leakage.leaks] == ["coffee_bright.png"]
    match = leakage.leaks[0].matches[0]
    assert match.match == "aligned" and match.similarity is None
    text = leakage.render_text()
    assert "aligned)" in text and "threshold 6 bits (verified band to 20):" in text


@pytest.mark.parametrize("options, message", [
    ({"band": 6}, "beyond the threshold"),
    ({"band": 200}, "half"),
    ({"band": -1}, ">= 0"),
    ({"band": 20, "grouping": "star"}, "components"),
])
def test_a_band_that_cannot_work_is_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        ScanConfig(**options)


def test_defaults_turn_the_band_off_where_it_was_not_measured():
    assert ScanConfig().resolved_band == 20
    assert ScanConfig(grouping="star").resolved_band == 0
    assert ScanConfig(threshold=20).resolved_band == 0
    assert ScanConfig(hash_size=8).resolved_band == 0
    assert ScanConfig(method="pdq").resolved_band == 0
    assert ScanConfig(band=0).resolved_band == 0


def test_cli_band_option(brightened, capsys):
    assert main(["scan", str(brightened), "-j", "1", "--no-cache", "-q", "--band", "0"]) == 0
    assert "aligned" not in capsys.readouterr().out
    assert main(["scan", str(brightened), "-j", "1", "--no-cache", "-q", "--band", "3"]) == 2
    err = capsys.readouterr().err
    assert "band 3" in err and len(err.strip().splitlines()) == 1


def test_a_band_too_crowded_for_memory_is_left_out_with_a_line(brightened, monkeypatch):
    from lookalike.errors import TooManyPairs
    from lookalike.events import NullReporter
    from lookalike.grouping import edges

    guard = edges._check_pairs_fit

    def crowded(rows, radius):
        if radius == ScanConfig().resolved_band:
            raise TooManyPairs("too many pairs")
        guard(rows, radius)

    class Lines(NullReporter):
        def __init__(self) -> None:
            self.lines: list[str] = []

        def info(self, message: str) -> None:
            self.lines.append(message)

    monkeypatch.setattr(edges, "_check_pairs_fit", crowded)
    reporter = Lines()
    result = lookalike.scan(brightened, workers=1, reporter=reporter)
    assert result.groups == [] and "memory" in result.stats["band_skipped"]
    assert any("verified band was left out" in line for line in reporter.lines)


def test_a_cache_that_fails_during_the_band_is_said_not_taken_for_memory(brightened, tmp_path,
                                                                          monkeypatch):
    # The band's search keeps its edges in the hash cache; a full disk or a damaged file met
    # there is the cache's one line, as anywhere else in the scan, not "left out: memory".
    import sqlite3

    from lookalike.errors import LookalikeError
    from lookalike.store.cache import HashCache, _damage_said

    save = HashCache.save_edges

    def full(self, config, scope, edges):
        if scope[-1] == "#band":
            raise sqlite3.OperationalError("database or disk is full")
        return save(self, config, scope, edges)

    monkeypatch.setattr(HashCache, "save_edges", _damage_said(full))  # as the cache says it
    with pytest.raises(LookalikeError, match="hash cache") as caught:
        lookalike.scan(brightened, workers=1, cache=tmp_path / "h.sqlite")
    assert "memory" not in str(caught.value)


def test_features_held_are_bounded(brightened, monkeypatch):
    from lookalike import verify

    monkeypatch.setattr(verify, "HELD", 1)
    result = lookalike.scan(brightened, workers=1)
    assert result.stats["band_joined"] == 1 and result.stats["band_read"] >= 2


def test_a_thumbnail_of_the_original_does_not_block_the_join(brightened, tmp_path):
    # Small members are compared by colour thumbnails only when the pair joined is small:
    # the brightened copy's thumbnail differs from the original's.
    folder = tmp_path / "photos"
    shutil.copytree(brightened, folder)
    Image.open(folder / "coffee.png").resize((64, 43)).save(folder / "coffee_icon.png")
    cache = tmp_path / "h.sqlite"
    result = lookalike.scan(folder, workers=1, cache=cache)
    members = _by_name(result)
    assert {"coffee.png", "coffee_icon.png", "coffee_bright.png"} <= set(members)
    # A warm re-scan reads no picture again, and searches nothing: the band's edges have a
    # key of their own (at -t 4 the confirmation pass searches 4 + 16 = 20 bits too).
    for threshold in (None, 4):
        lookalike.scan(folder, workers=1, cache=cache, threshold=threshold)
        again = lookalike.scan(folder, workers=1, cache=cache, threshold=threshold)
        assert again.stats["band_read"] == 0 and again.stats["codes_new"] == 0


def test_apply_acts_on_a_band_group(brightened, tmp_path):
    from lookalike.actions.plan import render_plan

    folder = tmp_path / "photos"
    (folder / "edits").mkdir(parents=True)
    shutil.copy(brightened / "coffee.png", folder)
    shutil.copy(brightened / "coffee_bright.png", folder / "edits")
    report = tmp_path / "r.json"
    assert main(["scan", str(folder), "-j", "1", "--no-cache", "-q", "-o", str(report)]) == 0
    data = json.loads(report.read_text())
    assert sorted(m["match"] for m in data["groups"][0]["members"]) == ["aligned", "hash"]
    plan = lookalike.plan(report, action="move", to=tmp_path / "q")
    assert "embeddings" not in render_plan(plan)
    # Folder rules: the copy under edits/ goes, whichever member is the aligned one.
    plan = lookalike.plan(report, action="move", to=tmp_path / "q",
                          remove_in=[folder / "edits"])
    assert [op.path for g in plan.groups for op in g.operations] == [
        str(folder / "edits" / "coffee_bright.png")]
    # Everything under the remove folder: the group's last copy stays.
    plan = lookalike.plan(report, action="move", to=tmp_path / "q", remove_in=[folder])
    assert len([op for g in plan.groups for op in g.operations]) == 1
    assert main(["apply", str(report), "-a", "move", "--to", str(tmp_path / "q"),
                 "--yes"]) == 0
    assert len(list(folder.rglob("*.png"))) == 1
    # A report whose scan ran without the band cannot say a member came in through it.
    data["config"]["band"] = 0
    report.write_text(json.dumps(data))
    with pytest.raises(lookalike.LookalikeError, match="verified band"):
        lookalike.plan(report, action="move", to=tmp_path / "q")


def test_a_dataset_leak_through_the_band_is_listed(splits):
    from lookalike.analysis.dataset import dedupe_dataset

    train, test = splits
    cleanup = dedupe_dataset({"train": str(train), "test": str(test)}, workers=1)
    assert "d=7 aligned" in cleanup.render_text()


def test_a_config_replaced_gets_its_own_default_band():
    import dataclasses

    assert dataclasses.replace(ScanConfig(), threshold=25).resolved_band == 0
    assert dataclasses.replace(ScanConfig(), grouping="star").resolved_band == 0
    assert ScanConfig().to_dict()["band"] == 20


def test_parquet_cells_are_read_once_per_row_group_for_verification(rgb_photos, tmp_path):
    # A Parquet cell is read with its whole row group: verification reads the cells it needs
    # in storage order, one pass, not one row group per picture.
    import io
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    from lookalike.inputs import remote

    rows = []
    for p in rgb_photos:
        if p.stem not in ("coffee", "astronaut", "hubble_deep_field", "retina", "ihc"):
            continue
        img = Image.open(p).convert("RGB")
        for tag, edit in (("", img), ("b130", ImageEnhance.Brightness(img).enhance(1.3)),
                          ("g07", img.point(lambda v: int(255 * (v / 255) ** 0.7))),
                          ("c60", ImageEnhance.Contrast(img).enhance(0.6))):
            data = io.BytesIO()
            edit.save(data, "PNG")
            rows.append((f"{p.stem}{tag}.png", data.getvalue()))
    random.Random(0).shuffle(rows)
    table = pa.table({"path": [r[0] for r in rows], "image": [r[1] for r in rows]})
    pq.write_table(table, tmp_path / "photos.parquet", row_group_size=2)
    groups = len(rows) // 2
    remote._row_group_bytes.cache_clear()
    result = lookalike.scan(tmp_path / "photos.parquet", workers=1)
    assert result.stats["band_joined"] >= 1
    # Hashing reads each row group once, verification at most once more.
    assert remote._row_group_bytes.cache_info().misses <= 2 * groups


def test_query_finds_a_brightened_copy_as_a_scan_groups_it(brightened, tmp_path, capsys):
    from lookalike.analysis.query import find_matches, matches_to_dict

    folder = tmp_path / "library"
    folder.mkdir()
    shutil.copy(brightened / "coffee.png", folder)
    shutil.copy(brightened / "chelsea.png", folder)
    cache = tmp_path / "h.sqlite"
    lookalike.scan(folder, workers=1, cache=cache)
    query = brightened / "coffee_bright.png"
    (result,), problems = find_matches([query], cache)
    assert problems == []
    assert [Path(m.path).name for m, _ in result.matches] == ["coffee.png"]
    match, bits = result.matches[0]
    assert result.match_of(match) == "aligned" and bits > ScanConfig().resolved_threshold
    data = matches_to_dict([result], [])
    assert data["queries"][0]["matches"][0]["match"] == "aligned"
    (off,), _ = find_matches([query], cache, ScanConfig(band=0))
    assert off.matches == ()
    assert main(["query", str(query), "--cache", str(cache)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "coffee.png" in x)
    assert f"d={bits}" in line and "(aligned)" in line


def test_a_second_hash_confirms_what_alignment_does_not(rgb_photos, tmp_path, monkeypatch):
    # Alignment compares dhash-z hashes of the aligned pictures, which a brightened photo's
    # clipped highlights change; the band also accepts PDQ hashes within BAND_PDQ bits.
    from lookalike import verify

    img = Image.open(next(p for p in rgb_photos if p.stem == "hubble_deep_field")).convert("RGB")
    img.save(tmp_path / "hubble.png")
    ImageEnhance.Brightness(img).enhance(1.45).save(tmp_path / "hubble_bright.png")
    from lookalike.imaging import align

    monkeypatch.setattr(align, "align", lambda a, b: None)  # alignment finds no transform
    monkeypatch.setattr(align, "as_they_stand", lambda a, b: None)  # nor the fallback
    result = lookalike.scan(tmp_path, workers=1)
    assert [sorted(m.match for m in g.members) for g in result.groups] == [["aligned", "hash"]]
    monkeypatch.setattr(verify, "BAND_PDQ", -1)
    assert lookalike.scan(tmp_path, workers=1).groups == []


def test_slivers_are_not_joined_by_the_blank_pdq_of_their_grey_picture(tmp_path):
    # A 128 x 20000 strip is 3 px tall in alignment's 512 px grey picture, which PDQ hashes
    # to its blank code whatever it shows: two different strips 10 bits apart stay apart.
    import numpy as np

    height, width = 128, 20000
    rng = np.random.default_rng(3)
    blocks = rng.integers(30, 220, (4, 40))

    def strip(cells, seed):
        noise = np.random.default_rng(seed).normal(0, 25, (height, width))
        base = np.kron(cells, np.ones((height // 4, width // cells.shape[1] + 1)))
        return Image.fromarray(np.clip(base[:height, :width] + noise, 0, 255).astype(np.uint8))

    other = blocks.copy()
    other[:, ::40] = 255 - other[:, ::40]
    strip(blocks, 1).save(tmp_path / "a.png")
    strip(other, 2).save(tmp_path / "b.png")
    result = lookalike.scan(tmp_path, workers=1)
    assert result.stats["band_tried"] == 1  # the case at hand: in the band, verified
    assert result.groups == []


def test_a_warm_rescan_of_a_tar_shard_reads_no_member_again(brightened, tmp_path, monkeypatch):
    import tarfile

    from lookalike.inputs import remote

    shard = tmp_path / "photos.tar"
    with tarfile.open(shard, "w") as tar:
        for name in ("coffee.png", "coffee_bright.png", "chelsea.png"):
            tar.add(brightened / name, arcname=name)
    cache = tmp_path / "h.sqlite"
    first = lookalike.scan(shard, workers=1, cache=cache)
    assert first.stats["band_joined"] == 1
    read: list[str] = []
    reader = remote.RemoteReader.read

    def counted(self, items):
        read.extend(e.path for e in items)
        return reader(self, items)

    monkeypatch.setattr(remote.RemoteReader, "read", counted)
    again = lookalike.scan(shard, workers=1, cache=cache)
    assert again.stats["band_joined"] == 1 and again.stats["band_cached"] >= 1
    assert read == []


def test_the_order_of_cells_confirms_a_brightened_photo_alignment_does_not(rgb_photos,
                                                                          tmp_path,
                                                                          monkeypatch):
    # scikit-image's ihc brightened by 30%: 12 bits away, aligned 14 (alignment's limit is
    # 10), PDQ 10 (its limit 4): every neighbouring cell keeps its order where not clipped.
    from lookalike.imaging import align

    img = Image.open(next(p for p in rgb_photos if p.stem == "ihc")).convert("RGB")
    img.save(tmp_path / "ihc.png")
    ImageEnhance.Brightness(img).enhance(1.3).save(tmp_path / "ihc_bright.png")
    result = lookalike.scan(tmp_path, workers=1)
    assert [sorted(m.match for m in g.members) for g in result.groups] == [["aligned", "hash"]]
    monkeypatch.setattr(align, "signs_agree", lambda one, other: False)
    assert lookalike.scan(tmp_path, workers=1).groups == []


def test_another_moment_of_the_scene_keeps_its_cells_apart(rgb_photos):
    import io

    from lookalike.imaging.align import align, features, signs_agree
    from lookalike.imaging.decode import decode_bytes

    def feats(img):
        data = io.BytesIO()
        img.save(data, "PNG")
        return features(decode_bytes(data.getvalue(), mode="fast", max_pixels=10**9)[0])

    for p in rgb_photos[:4]:
        img = Image.open(p).convert("RGB")
        w, h = img.size
        later = img.copy()
        later.paste(img.crop((w // 10, h // 10, w // 2, h // 2)), (w // 2, h // 3))
        shared = align(feats(img), feats(later))
        assert shared is None or not signs_agree(*shared)


def test_a_page_with_a_line_added_at_its_foot_stays_apart(tmp_path):
    # "PAID IN FULL" over the last fifth of an invoice: the band compares whole pages (the
    # embedding stage's allowance for a caption strip along one side is not the band's).
    import random

    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=22)
    words = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with",
             "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which",
             "but", "have", "an", "they", "you", "were", "her", "she", "there", "had"]

    def page(paid: bool) -> Image.Image:
        rng = random.Random(1)
        img = Image.new("L", (1050, 1400), 255)
        draw = ImageDraw.Draw(img)
        y = 80
        for lines in (8, 6, 9):
            for k in range(lines):
                text = " ".join(rng.choice(words) for _ in range(40))
                while draw.textlength(text, font=font) > 900:
                    text = text[:-1]
                draw.text((75, y + k * 30), text, fill=0, font=font)
            y += lines * 30 + 40
        if paid:
            draw.text((150, 1180), "PAID IN FULL", fill=0, font=ImageFont.load_default(size=90))
        return img

    page(False).save(tmp_path / "invoice.png")
    page(True).save(tmp_path / "invoice_paid.png")
    result = lookalike.scan(tmp_path, workers=1)
    assert result.stats["band_tried"] == 1  # in the band: verified, and refused
    assert result.groups == []


def test_a_blurred_photo_without_keypoints_joins_its_jpeg_copy_as_it_stands(photos, tmp_path,
                                                                          monkeypatch):
    # scikit-image's clock_motion (motion blur: 10 ORB keypoints) and a JPEG q30 copy:
    # 14 bits apart, PDQ 6 (over BAND_PDQ), and no transform aligns them; compared as they
    # stand, every order of neighbouring cells agrees.
    from lookalike.imaging import align

    img = Image.open(next(p for p in photos if p.stem == "clock_motion"))
    img.save(tmp_path / "clock.png")
    img.save(tmp_path / "clock_q30.jpg", quality=30)
    result = lookalike.scan(tmp_path, workers=1)
    assert [sorted(m.match for m in g.members) for g in result.groups] == [["aligned", "hash"]]
    # The band's test only: an embedding match must align.
    from lookalike.verify import verify_pairs

    assert verify_pairs(result.records, [(0, 1)], result.config, band=True) == [True]
    assert verify_pairs(result.records, [(0, 1)], result.config) == [False]
    monkeypatch.setattr(align, "as_they_stand", lambda a, b: None)
    assert lookalike.scan(tmp_path, workers=1).groups == []


def _features(img: Image.Image):
    import io

    from lookalike.imaging.align import features
    from lookalike.imaging.decode import decode_bytes

    data = io.BytesIO()
    img.save(data, "PNG")
    return features(decode_bytes(data.getvalue(), mode="fast", max_pixels=10**9)[0])


def test_pictures_compared_as_they_stand_need_one_shape_and_one_set_of_colours(rgb_photos):
    # Out of focus, coffee has too few keypoints to align. A texture and its red channel
    # alone keep the order of their cells (a false pair of the accuracy benchmark); their
    # colours tell them apart. A brightened copy keeps both.
    from PIL import ImageFilter

    from lookalike.imaging.align import MIN_INLIERS, as_they_stand

    img = Image.open(next(p for p in rgb_photos if p.stem == "coffee")).convert("RGB")
    img = img.filter(ImageFilter.GaussianBlur(12))
    red = Image.merge("RGB", (img.getchannel("R"), *[Image.new("L", img.size, 0)] * 2))
    wide = img.resize((img.width * 13 // 10, img.height))
    original = _features(img)
    assert len(original.points) < MIN_INLIERS
    shared = as_they_stand(original, _features(ImageEnhance.Brightness(img).enhance(1.3)))
    assert shared is not None and shared[0].shape == shared[1].shape
    assert as_they_stand(original, _features(red)) is None
    assert as_they_stand(original, _features(wide)) is None
    # A sliver (26 px tall at 512) has cells of a few stretched pixels: never compared.
    strip = img.resize((2000, 100))
    assert as_they_stand(_features(strip),
                         _features(ImageEnhance.Brightness(strip).enhance(1.3))) is None


def test_pictures_with_keypoints_that_no_transform_explains_are_not_compared_unaligned():
    # Two slides with different titles over one blurred photo, of one shape and colours:
    # hundreds of keypoints (the text's), none matching. Plenty of keypoints that align
    # nothing say the pictures differ (a review's pair, 7 bits apart, joined by the order
    # of its cells when compared unaligned).
    import numpy as np
    from PIL import ImageDraw, ImageFilter, ImageFont

    from lookalike.imaging.align import MIN_INLIERS, align, as_they_stand

    ground = Image.fromarray((np.random.default_rng(0).random((6, 8, 3)) * 200 + 30)
                             .astype(np.uint8))
    ground = ground.resize((800, 600), Image.Resampling.BICUBIC).filter(
        ImageFilter.GaussianBlur(20))
    slides = []
    for title in ("Q&A", "Roadmap"):
        slide = ground.copy()
        ImageDraw.Draw(slide).text((80, 200), title, fill="white",
                                   font=ImageFont.load_default(size=56))
        slides.append(_features(slide))
    assert min(len(f.points) for f in slides) >= MIN_INLIERS
    assert align(*slides) is None
    assert as_they_stand(*slides) is None


def test_cells_within_two_levels_are_not_compared():
    # JPEG noise and resampling swap the order of near-level cells: such pairs are left out
    # of signs_agree, a swap of cells further apart is a disagreement.
    import numpy as np

    from lookalike.imaging.align import LEVEL, SIGN_GRID, signs_agree

    rows, cols = SIGN_GRID
    means = 40.0 + 10.0 * np.add.outer(np.arange(rows), np.arange(cols) % 2 * 3)
    picture = np.kron(means, np.ones((8, 8))).astype(np.uint8)

    def swapped(step: float) -> tuple[np.ndarray, np.ndarray]:
        one, other = means.copy(), means.copy()
        one[0, 0], one[0, 1] = 100 - step, 100
        other[0, 0], other[0, 1] = 100, 100 - step
        return (np.kron(one, np.ones((8, 8))).astype(np.uint8),
                np.kron(other, np.ones((8, 8))).astype(np.uint8))

    assert LEVEL == 2  # measured: 3 levels added a false pair on the accuracy benchmark
    assert signs_agree(picture, picture)
    assert signs_agree(*swapped(2))
    assert not signs_agree(*swapped(3))


def test_an_out_of_focus_scene_with_someone_added_stays_apart(tmp_path):
    # No keypoints, 8 bits apart; unaligned, their whole-picture hashes differ by those 8
    # bits again (within alignment's 10), so only the order of their cells may join such
    # a pair, and the added figure breaks it (a review's case).
    import numpy as np
    from PIL import ImageDraw, ImageFilter

    small = Image.fromarray((np.random.default_rng(0).random((6, 8, 3)) * 200 + 30)
                            .astype(np.uint8))
    scene = small.resize((800, 600), Image.Resampling.BICUBIC).filter(
        ImageFilter.GaussianBlur(20))
    scene.filter(ImageFilter.GaussianBlur(8)).save(tmp_path / "scene.png")
    ImageDraw.Draw(scene).ellipse((100, 100, 210, 270), fill=(240, 200, 170))
    scene.filter(ImageFilter.GaussianBlur(8)).save(tmp_path / "scene_with_someone.png")
    result = lookalike.scan(tmp_path, workers=1)
    assert result.stats["band_tried"] == 1  # the case at hand: in the band, verified
    assert result.groups == []


def test_pictures_no_list_to_come_needs_are_let_go_first(rgb_photos, monkeypatch):
    # The candidate lists are known before verification starts: a picture that no list to
    # come needs is let go when its last list is judged, so the ones held are the ones still
    # to be used. Holding the least recently used alone (2 at most) reads 0 and 2 twice.
    from lookalike import verify

    records = lookalike.scan(rgb_photos[:4], workers=1).records
    assert len(records) == 4 and min(min(r.width, r.height) for r in records) > 64

    def judged(self, i, j):
        return None in (self.get(i), self.get(j))  # reads both; never the same

    monkeypatch.setattr(verify, "HELD", 2)
    monkeypatch.setattr(verify._Features, "_load", lambda self, i: object())
    monkeypatch.setattr(verify._Features, "same_picture", judged)
    work = [[(0, 1)], [(2, 3)], [(0, 2)]]
    links, stats = verify._verify_joins(records, [], ScanConfig(workers=1), {}, None, (),
                                        work, [0, 1, 2, 3], kind="verified")
    assert links == {} and stats["verify_tried"] == 3
    assert stats["verify_read"] == 5  # 0, 1, 2, 3 once; 0 again
