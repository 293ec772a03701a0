"""Calibration on the user's own images: a sane threshold, the curve, JSON and the CLI."""

from __future__ import annotations

import json
import shutil

import pytest

import lookalike
from lookalike.analysis.calibrate import TRANSFORMS, calibrate, render_calibration
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


def test_calibrate_recommends_a_threshold_that_reaches_the_target(sample_dir):
    cal = calibrate(sample_dir, sample=50, method="dhash", hash_size=8, workers=1)
    assert cal.images == len(list(sample_dir.iterdir()))
    assert cal.copies == cal.images * len(TRANSFORMS)
    assert cal.positive_pairs == cal.copies
    assert cal.negative_pairs == cal.images * (cal.images - 1) // 2
    assert cal.target_reached and cal.precision >= 0.999
    assert 2 <= cal.threshold <= 16  # dHash 8x8 copies sit a few bits apart
    assert cal.recall >= 0.6
    # The recommendation is the best recall the target allows.
    better = [p for p in cal.curve if p.recall > cal.recall]
    assert all(p.precision < 0.999 for p in better)
    assert [p.threshold for p in cal.curve] == list(range(65))
    tps = [p.true_pairs for p in cal.curve]
    assert tps == sorted(tps) and cal.curve[-1].recall == 1.0
    # Projected onto the whole folder: a zero count becomes the 95% bound 3 / negatives.
    fp = cal.point(cal.threshold).false_pairs
    n = cal.images_found
    assert cal.expected_false_pairs == pytest.approx(
        max(fp, 3) / cal.negative_pairs * n * (n - 1) / 2 if fp == 0
        else fp / cal.negative_pairs * n * (n - 1) / 2)
    text = render_calibration(cal)
    assert f"--threshold {cal.threshold}" in text and "<- recommended" in text
    assert f"a scan of all {n:,} images found" in text
    json.dumps(cal.to_dict())  # JSON-ready


def test_duplicates_already_in_the_sample_are_not_counted_as_false_pairs(sample_dir, photos):
    shutil.copy(photos[0], sample_dir / "copy_of_first.png")
    cal = calibrate(sample_dir, sample=50, method="dhash", hash_size=8, workers=1)
    names = {frozenset(p.rsplit("/", 1)[1] for p in pair[:2])
             for pair in cal.duplicates_in_sample}
    assert frozenset({photos[0].name, "copy_of_first.png"}) in names
    assert cal.negative_pairs == cal.images * (cal.images - 1) // 2 - len(names)


def test_sampling_is_seeded_and_limited(sample_dir):
    a = calibrate(sample_dir, sample=6, seed=1, method="dhash", hash_size=8, workers=1)
    b = calibrate(sample_dir, sample=6, seed=1, method="dhash", hash_size=8, workers=1)
    assert a.images == 6 and a.curve == b.curve and a.threshold == b.threshold
    assert a.stats["images_found"] > 6


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
    assert len(data["curve"]) == 65


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
