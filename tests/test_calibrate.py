"""Calibration on the user's own images: a sane threshold, the curve, JSON and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import lookalike
from lookalike.analysis.calibrate import KNEE, TRANSFORMS, calibrate, render_calibration
from lookalike.cli import cli, main


@pytest.fixture
def sample_dir(photos, tmp_path, scene):
    """Real photos plus generated photo-like scenes: about 25 different pictures."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in photos:
        shutil.copy(p, folder / p.name)
    for k in range(8):
        scene(100 + k, (160, 120)).save(folder / f"scene{k}.png")
    return folder


def _hash(path, method: str, size: int | None, invariant: str):
    from lookalike.imaging.decode import decode_bytes
    from lookalike.imaging.hashes import get_method

    pic = decode_bytes(path.read_bytes(), mode="fast")[0]
    return get_method(method).hash(pic, size, invariant)


def _held_out_edits(photo, out_dir):
    """Edits calibrate never makes itself: WebP, sharpen, desaturate, 75% downscale + PNG."""
    from PIL import Image, ImageEnhance, ImageFilter

    img = Image.open(photo).convert("RGB")
    w, h = img.size
    edits = {
        "webp": (img, "WEBP", {"quality": 60}),
        "sharpen": (img.filter(ImageFilter.SHARPEN), "JPEG", {"quality": 85}),
        "desaturate": (ImageEnhance.Color(img).enhance(0.5), "PNG", {}),
        "shrink": (img.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.BICUBIC), "PNG", {}),
    }
    paths = []
    for name, (edited, fmt, kw) in edits.items():
        path = out_dir / f"{photo.stem}__{name}.{fmt.lower()}"
        edited.save(path, fmt, **kw)
        paths.append(path)
    return paths


def test_calibrate_recommends_a_threshold_that_reaches_the_target(sample_dir):
    cal = calibrate(sample_dir, sample=50, method="dhash", hash_size=8, invariant="none",
                    workers=1)
    n = cal.images
    assert n == len(list(sample_dir.iterdir())) == cal.images_found
    # A picture that is a pure gradient at 8x8 (scikit-image's page.png, lit from one side)
    # has no structure to compare its copies by: a scan joins it to byte copies only.
    plain = sum(not _hash(p, "dhash", 8, "none").featureless for p in sample_dir.iterdir())
    assert cal.copies == plain * len(TRANSFORMS) == cal.positive_pairs
    assert cal.pair_share == 1.0  # the whole folder: counts are exact, nothing unseen
    assert cal.duplicate_pairs == 0  # different pictures only
    assert cal.negative_pairs == n * (n - 1) // 2
    assert cal.target_reached and cal.confirmed and cal.precision >= 0.999
    assert cal.point(cal.threshold).false_pairs == 0
    assert 2 <= cal.threshold <= cal.max_threshold == 16
    assert cal.recall >= 0.6
    # Among thresholds that reach the target, the smallest within KNEE of the best recall.
    ok = [p for p in cal.curve if p.precision >= 0.999]
    top = max(p.recall for p in ok)
    assert cal.threshold == min(p.threshold for p in ok if p.recall >= KNEE * top)
    assert [p.threshold for p in cal.curve] == list(range(17))
    tps = [p.recall for p in cal.curve]
    assert tps == sorted(tps)
    # The whole folder was sampled: its count of false pairs is the scan's, no bound.
    assert cal.expected_false_pairs == 0
    text = render_calibration(cal)
    assert f"--threshold {cal.threshold}" in text and "<- recommended" in text
    assert "a scan of them gives exactly 0 false pairs" in text and "95%" not in text
    json.dumps(cal.to_dict())  # JSON-ready


@pytest.mark.slow
def test_a_folder_holding_its_own_duplicates_is_not_recommended_threshold_0(photos, tmp_path):
    # What `calibrate` met on the demo folder: its closest "different files" were copies of
    # one photo, counted as false pairs, and it recommended 0 bits.
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos:
        shutil.copy(p, folder / p.name)
    for p in photos[:6]:
        _held_out_edits(p, folder)
    cal = calibrate(folder, workers=1)  # the default method, invariance and threshold
    assert cal.threshold > 0 and cal.confirmed and cal.recall >= 0.8
    assert cal.point(cal.threshold).false_pairs == 0
    stem = lambda path: path.rsplit("/", 1)[1].split("__")[0].split(".")[0]  # noqa: E731
    taken = {frozenset((stem(a), stem(b))) for a, b, _, _ in cal.duplicates_in_sample}
    assert all(len(pair) == 1 for pair in taken)  # only copies of one photo are taken
    assert cal.duplicate_pairs >= 6 * 10 * 0.9  # 5 files per photo: 10 pairs each
    assert all(stem(a) != stem(b) for a, b, _ in cal.closest_negatives)
    assert "thumbnails match" in render_calibration(cal)


@pytest.mark.slow
def test_the_recommendation_separates_held_out_edits_from_different_photos(photos, tmp_path):
    cal = calibrate(photos, workers=1, method="dhash", hash_size=8, invariant="none")
    assert cal.threshold > 0
    held_out = tmp_path / "edits"
    held_out.mkdir()
    hashes = {p.stem: _hash(p, cal.method, cal.hash_size, cal.invariant) for p in photos}
    near = [hashes[p.stem] - _hash(e, cal.method, cal.hash_size, cal.invariant)
            for p in photos for e in _held_out_edits(p, held_out)]
    assert np.mean(np.asarray(near) <= cal.threshold) >= 0.9
    apart = [hashes[a.stem] - hashes[b.stem] for i, a in enumerate(photos) for b in photos[i + 1:]]
    assert min(apart) > cal.threshold


@pytest.mark.slow  # 0.6 s: a calibration of the sample
def test_duplicates_already_in_the_sample_are_true_pairs_not_false_ones(sample_dir, photos):
    shutil.copy(photos[0], sample_dir / "copy_of_first.png")
    cal = calibrate(sample_dir, sample=50, method="dhash", hash_size=8, invariant="none",
                    workers=1)
    why = {frozenset(p.rsplit("/", 1)[1] for p in pair[:2]): pair[3]
           for pair in cal.duplicates_in_sample}
    assert why[frozenset({photos[0].name, "copy_of_first.png"})] == "identical bytes"
    assert cal.negative_pairs == cal.images * (cal.images - 1) // 2 - cal.duplicate_pairs
    assert cal.point(0).true_pairs >= 1


def test_solid_pictures_of_other_colours_are_neither_duplicates_nor_false_pairs(tmp_path):
    """Their normalised thumbnails are flat whatever the colour: calibrate called black and
    blue 'duplicates you already have'. A scan pairs them by their bytes only, so their hash
    pairs count neither way; and the false-pair bound never exceeds the pairs there are."""
    from PIL import Image

    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255)), ("black", (0, 0, 0)),
                         ("white", (255, 255, 255))):
        Image.new("RGB", (120, 90), colour).save(tmp_path / f"{name}.png")
    shutil.copyfile(tmp_path / "red.png", tmp_path / "red_copy.png")
    cal = calibrate(tmp_path, workers=1)
    # A scan joins the byte copy by its bytes whatever the threshold: no pair to weigh here.
    assert cal.duplicates_in_sample == () and cal.closest_negatives == ()
    assert cal.expected_false_pairs <= 5 * 4 / 2


def test_flat_segments_make_no_pairs_in_calibration(tmp_path):
    """A flag of horizontal bands and a sky gradient share a flat plain orientation: they
    were false pairs at 0 bits, and 'precision is not reached even at threshold 0', though
    a scan pairs them at no threshold."""
    import numpy as np
    from PIL import Image

    for name, colours in (("de", [(0, 0, 0), (221, 0, 0), (255, 206, 0)]),
                          ("nl", [(174, 28, 40), (255, 255, 255), (33, 70, 139)])):
        img = Image.new("RGB", (240, 150))
        for k, c in enumerate(colours):
            img.paste(c, (0, 50 * k, 240, 50 * (k + 1)))
        img.save(tmp_path / f"flag_{name}.png")
    ramp = np.linspace(90, 230, 150, dtype=np.uint8)[:, None, None]
    Image.fromarray(np.broadcast_to(ramp * np.array([0.6, 0.8, 1.0]), (150, 240, 3))
                    .astype(np.uint8)).save(tmp_path / "sky.png")
    cal = calibrate(tmp_path, workers=1)
    assert all(d > 0 for _, _, d in cal.closest_negatives)
    assert cal.point(0).false_pairs == 0


def test_sampling_is_seeded_and_limited(sample_dir):
    a = calibrate(sample_dir, sample=6, seed=1, method="dhash", hash_size=8, workers=1)
    b = calibrate(sample_dir, sample=6, seed=1, method="dhash", hash_size=8, workers=1)
    assert a.images == 6 and a.curve == b.curve and a.threshold == b.threshold
    assert a.stats["images_found"] > 6
    assert a.pair_share == pytest.approx(30 / (a.images_found * (a.images_found - 1)))
    # Too few pairs to confirm the target: the default threshold stands, unless contradicted.
    assert not a.confirmed and a.threshold <= a.default_threshold
    assert "too few to confirm" in render_calibration(a)
    # Projected onto the whole folder: a zero count becomes the 95% bound 3 / negatives.
    n = a.images_found
    assert a.point(a.threshold).false_pairs == 0
    assert a.expected_false_pairs == pytest.approx(3 / a.negative_pairs * n * (n - 1) / 2)
    assert f"a scan of all {n:,} images found would give about" in render_calibration(a)
    assert "95% bound" in render_calibration(a)


def test_invariant_calibration_adds_mirrored_and_rotated_copies(sample_dir):
    cal = calibrate(sample_dir, sample=10, method="dhash", hash_size=8, invariant="dihedral",
                    workers=1)
    assert cal.transforms[-2:] == ("mirror", "rotate_90")
    assert cal.recall_by_transform["mirror"] >= 0.7


def test_calibrate_command_prints_the_curve_and_writes_json(runner, sample_dir, tmp_path):
    out = tmp_path / "cal.json"
    res = runner.invoke(cli, ["calibrate", str(sample_dir), "--sample", "12", "-m", "dhash",
                              "--hash-size", "8", "-j", "1", "-q", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "recommended: --threshold" in res.output and "precision" in res.output
    data = json.loads(out.read_text())
    assert data["images"] == 12 and data["method"] == "dhash" and data["nbits"] == 64
    assert data["threshold"] == next(int(w) for w in res.output.split("--threshold ")[1].split())
    assert len(data["curve"]) == data["max_threshold"] + 1 == 17


def test_calibrate_needs_two_images(tmp_path, scene, capsys):
    scene(1).save(tmp_path / "one.png")
    with pytest.raises(lookalike.ConfigError, match="at least 2"):
        calibrate(tmp_path, workers=1)
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(tmp_path), "-j", "1", "-q"])
    assert exc.value.code == 2
    assert "at least 2" in capsys.readouterr().err


def test_bad_settings_fail_before_any_work(tmp_path):
    with pytest.raises(lookalike.ConfigError):
        calibrate(tmp_path, target_precision=1.5)
    with pytest.raises(lookalike.ConfigError):
        calibrate(tmp_path, method="pdq", hash_size=8)


def test_calibrate_takes_any_iterable_of_paths(tmp_path, scene):
    for k in range(3):
        scene(k).save(tmp_path / f"{k}.png")
    result = calibrate(p for p in [tmp_path])  # a generator: read once
    assert result.images == 3


def test_files_the_walk_cannot_use_are_said_not_dropped(tmp_path, scene, capsys):
    # A FIFO or a broken link given to calibrate vanished without a line (scan reports them),
    # and links skipped inside a folder were not counted.
    import os

    for k in range(3):
        scene(k).save(tmp_path / f"{k}.png")
    os.mkfifo(tmp_path / "pipe.jpg")
    os.symlink(tmp_path / "gone.png", tmp_path / "broken.png")
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "0.png", tmp_path / "sub" / "link.png")
    result = calibrate([tmp_path / "pipe.jpg", tmp_path / "broken.png", tmp_path], workers=1)
    assert {(os.path.basename(p.path), p.error) for p in result.problems} >= {
        ("pipe.jpg", "not-a-regular-file"), ("broken.png", "broken-symlink")}
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(tmp_path / "pipe.jpg"), str(tmp_path), "-j", "1"])
    err = capsys.readouterr().err
    assert exc.value.code == 0 and "error [not-a-regular-file]" in err
    assert "skipped 2 symbolic link(s) found inside" in err  # broken.png, sub/link.png


def test_greyscale_and_letterboxed_copies_in_the_folder_are_duplicates_not_false_pairs(
        tmp_path, scene):
    # A greyscale copy failed the colour-thumbnail check (18 of 24 counted as false pairs,
    # and calibrate recommended 0); calibrate hashed without trimming borders, unlike the
    # scan it recommends for, and then a letterboxed copy the scan matches at 0 bits was
    # a look-alike at 42.
    from PIL import Image, ImageOps

    folder = tmp_path / "imgs"
    folder.mkdir()

    def two_tone(k):  # red rising where blue falls: grey keeps one of them only
        x, y = np.meshgrid(np.linspace(0, 1, 240), np.linspace(0, 1, 180))
        rgb = np.stack([x, y * 0.5 + 0.25 * np.sin(9 * x + k), 1 - x], axis=2) * 255
        return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))

    for k in range(6):
        img = scene(200 + k, (240, 180)) if k % 2 else two_tone(k)
        img.save(folder / f"p{k}.png")
        ImageOps.grayscale(img).save(folder / f"p{k}__grey.png")
        pad = Image.new("RGB", (240, 240), "black")
        pad.paste(img, (0, 30))
        pad.save(folder / f"p{k}__pad.png")
    cal = calibrate(folder, sample=50, workers=1)
    pairs = {(a.rsplit("/", 1)[1], b.rsplit("/", 1)[1]) for a, b, *_ in cal.duplicates_in_sample}
    for k in range(6):
        for kind in ("grey", "pad"):
            assert {(f"p{k}.png", f"p{k}__{kind}.png"),
                    (f"p{k}__{kind}.png", f"p{k}.png")} & pairs, (k, kind)
    close = [(a, b, d) for a, b, d in cal.closest_negatives if d <= cal.threshold]
    assert not close and cal.target_reached and cal.threshold > 0
    assert cal.precision == 1.0
    assert all(bits == 0 for a, b, bits, _ in cal.duplicates_in_sample if "__pad" in a + b)
    # Without trimming (as a --keep-borders scan) a padded copy is far from its original.
    kept = calibrate(folder, sample=50, workers=1, trim_borders=False)
    padded = [bits for a, b, bits, _ in kept.duplicates_in_sample if "__pad" in a + b]
    padded += [bits for a, b, bits in kept.closest_negatives if "__pad" in a + b]
    assert all(bits > 8 for bits in padded)  # if found at all (within a quarter of the bits)


def test_unreadable_files_are_not_counted_as_images_found(tmp_path, scene, capsys):
    # Every readable image sampled: the sample holds every pair there is. Counting the
    # unreadable files as images made it "too few to confirm ... sample more images".
    for k in range(4):
        scene(k).save(tmp_path / f"{k}.png")
    for k in range(3):
        (tmp_path / f"bad{k}.png").write_bytes(b"not a png")
    result = calibrate(tmp_path, workers=1)
    assert result.images == 4 and result.images_found == 4 and result.pair_share == 1.0
    assert sorted(p.error for p in result.problems) == ["unsupported-format"] * 3
    assert "sample more images" not in render_calibration(result)


def test_calibrate_with_fewer_than_two_readable_images_exits_1(tmp_path, scene, capsys):
    # The files were found and read (each failure listed): not a usage error (exit 2).
    scene(1).save(tmp_path / "one.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(lookalike.LookalikeError, match="1 of the 2 sampled could be read"):
        calibrate(tmp_path, workers=1)
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(tmp_path), "-j", "1"])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and "error [unsupported-format]" in err
    assert "at least 2 readable images" in err


def test_a_tar_shard_is_refused_with_what_to_do_not_counted_as_one_image(photos, tmp_path,
                                                                         capsys):
    import tarfile

    shard = tmp_path / "train-0.tar"
    with tarfile.open(shard, "w") as tar:
        for p in photos[:4]:
            tar.add(p, arcname=p.name)
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", str(shard)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "tar shard or Parquet file" in err and "found 1" not in err
