"""The accuracy benchmark's parts: exact pair distances, curves, ground truth, the worker.

The whole benchmark (``python benchmarks/accuracy/run.py --quick``) takes about a minute, too
long for the suite; these tests check the pieces it is made of on small inputs.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

import lookalike
from accuracy import dataset, metrics
from accuracy.hashing import BASELINES, CONFIGS, HashJob, folklore_dhash_z
from lookalike.imaging.decode import decode_bytes
from lookalike.imaging.hashes import INVARIANCES, bits_to_int, compute_hash


def _brute(segments, nbits):
    return np.array([[min((a ^ b).bit_count() for a in s for b in t) for t in segments]
                     for s in segments])


@pytest.mark.parametrize("nbits", [42, 64, 256])
@pytest.mark.parametrize("variable", [False, True])
def test_min_distance_matrix_equals_brute_force(nbits, variable):
    rng = random.Random(nbits)
    segs = [tuple(rng.getrandbits(nbits) for _ in range(rng.randint(1, 4) if variable else 3))
            for _ in range(40)]
    assert np.array_equal(metrics.min_distance_matrix(segs, nbits), _brute(segs, nbits))


def test_curve_and_operating_points_on_a_toy_example():
    # Images 0-1-2 are one picture, 3 and 4 others. Distances chosen by hand.
    d = np.array([[0, 2, 5, 9, 3],
                  [2, 0, 6, 9, 9],
                  [5, 6, 0, 9, 9],
                  [9, 9, 9, 0, 1],
                  [3, 9, 9, 1, 0]], dtype=np.uint16)
    truth = metrics.make_truth(["a", "a", "a", "b", "c"])
    assert (truth.n_pos, truth.n_neg) == (3, 7)
    c = metrics.curve(d, truth, 9)
    assert c["tp"].tolist()[:7] == [0, 0, 1, 1, 1, 2, 3]
    assert c["fp"].tolist()[:4] == [0, 1, 1, 2]
    assert metrics.at_precision(c, 1.0) == {"threshold": 0, "recall": 0.0, "precision": 1.0,
                                            "fp": 0}
    half = metrics.at_precision(c, 0.5)
    assert half["threshold"] == 6 and half["recall"] == 1.0
    kinds, examples = metrics.false_pairs(d, truth, 3, lambda i, j: f"{i}{j}")
    assert kinds == {"34": 1, "04": 1} and examples[0] == (3, 4, 1)


def test_negative_kinds_name_the_hard_cases():
    def item(source, label, variant="original"):
        return dataset.Item("p", f"{source}:{label}:{variant}", source, label, variant, True)

    assert dataset.negative_kind(item("photo", "aloeL"), item("photo", "aloeR")) == "same-scene"
    assert dataset.negative_kind(item("photo", "left01"),
                                 item("photo", "right07")) == "same-scene"
    assert dataset.negative_kind(item("emoji", "1f600", "single-64"),
                                 item("emoji", "1f600", "twitter-64")) == "emoji-vendor"
    assert dataset.negative_kind(item("emoji", "1f44d", "single-64"),
                                 item("emoji", "1f44d", "skin-1f3fb")) == "skin-tone"
    assert dataset.negative_kind(item("icon", "a"), item("texture", "b")) == "cross-source"


def test_worker_hashes_as_a_scan_and_baselines_as_users_do(photos):
    path = str(photos[0])
    job = HashJob(tuple(c for c in CONFIGS if c.method in ("dhash", "pdq")), BASELINES[:1],
                  timing_every=1)
    (out,) = job([(0, path)])
    assert out.error is None and out.decode_s > 0
    pic = decode_bytes(photos[0].read_bytes(), mode="fast")[0]
    assert out.ours["dhash/8"]["none"] == compute_hash(pic, "dhash", 8).segments
    # every invariance, for the invariance table, each as a scan stores it
    assert tuple(out.ours["dhash/8"]) == tuple(INVARIANCES)
    for inv, segments in out.ours["dhash/8"].items():
        assert segments == compute_hash(pic, "dhash", 8, inv, trim=True).segments
    assert len(out.ours["dhash/8"]["dihedral"]) == 8
    assert set(out.invariant_s["pdq/16"]) == {"flips", "rotations", "dihedral"}
    import imagehash

    assert out.base["imagehash.average_hash/8"] == bits_to_int(
        imagehash.average_hash(Image.open(path)).hash)


def test_folklore_baseline_equals_lookalike_dhash_z_with_full_decoding(photos):
    for path in photos[:4]:
        pic = decode_bytes(path.read_bytes(), mode="full")[0]
        ours = compute_hash(pic, "dhash-z", 8)
        assert bits_to_int(folklore_dhash_z(Image.open(path)).hash) == ours.value


def test_the_default_is_dhash_z_at_its_own_default_size():
    from lookalike.config import DEFAULT_HASH_SIZE, DEFAULT_METHOD, DEFAULT_THRESHOLD
    from lookalike.imaging.hashes import METHODS

    assert METHODS[DEFAULT_METHOD].default_size == DEFAULT_HASH_SIZE
    config = lookalike.ScanConfig()
    assert (config.method, config.resolved_hash_size, config.threshold) == (
        DEFAULT_METHOD, DEFAULT_HASH_SIZE, DEFAULT_THRESHOLD)


@pytest.mark.slow
def test_default_scan_finds_more_copies_than_the_folklore_recipe(rgb_photos, tmp_path):
    from PIL import ImageEnhance

    for k, src in enumerate(rgb_photos[:6]):
        img = Image.open(src).convert("RGB")
        img.save(tmp_path / f"{k}.png")
        ImageEnhance.Brightness(img).enhance(1.3).save(tmp_path / f"{k}_bright.jpg", quality=85)
        img.point([round(255 * (v / 255) ** 0.7) for v in range(256)] * 3).save(
            tmp_path / f"{k}_gamma.png")
        img.resize((img.width // 2, img.height // 2)).save(tmp_path / f"{k}_half.jpg")

    def found(**kw):
        result = lookalike.scan(tmp_path, workers=1, **kw)
        for g in result.groups:  # never two different photos in one group
            assert len({p.rsplit("/", 1)[1].split("_")[0].split(".")[0] for p in g.paths}) == 1
        return sum(len(g) - 1 for g in result.groups)

    folklore = found(method="dhash-z", hash_size=8, threshold=0)
    assert found() >= folklore + 6


def test_photo_variants_are_made_once_and_new_transforms_added_alone(tmp_path, monkeypatch,
                                                                     rgb_photos):
    src = tmp_path / "photo.png"
    Image.open(rgb_photos[0]).convert("RGB").resize((96, 64)).save(src)
    monkeypatch.setattr(dataset, "photo_dir", lambda: tmp_path / "variants")
    every = dict(dataset.transforms.TRANSFORMS)
    old = {k: v for k, v in every.items() if k not in ("crop_corner_15", "rotate_7")}
    monkeypatch.setattr(dataset.transforms, "TRANSFORMS", old)
    before = dataset._variants(src)
    assert [t for _, t in before] == list(old)
    stamps = {p: p.stat().st_mtime_ns for p, _ in before}
    monkeypatch.setattr(dataset.transforms, "TRANSFORMS", every)
    after = dataset._variants(src)
    assert [t for _, t in after] == list(every)  # in the transforms' order
    assert all(p.stat().st_mtime_ns == stamps[p] for p in stamps)  # the old ones untouched
    fresh = dataset.transforms.make_variants([src], tmp_path / "fresh", seed=dataset.SEED)
    assert [p.read_bytes() for p, _ in after] == [v.read_bytes() for _, v, _ in fresh]
    assert dataset._variants(src) == after  # read from the marker


def test_geometric_summary_names_the_edits_below_target(capsys):
    from accuracy import run

    def row(cpu_s, precision, recall, per_edit, **extra):
        return {"precision": precision, "recall": recall, "cpu_s": cpu_s,
                "recall_by_variant": per_edit, **extra}

    good = dict.fromkeys(run.GEOMETRIC, 0.95)
    results = {
        "lookalike --embed sscd-distilled": row(10.0, 0.9995, 0.93, {**good, "rotate_7": 0.5},
                                                matches={"embedding": 7, "hash": 30}),
        "immaculate sscd_distilled": row(20.0, 0.887, 0.865, good),
        "lookalike": row(5.0, 1.0, 0.6, dict.fromkeys(run.GEOMETRIC, 0.0),
                         sweep={"at_precision_0.999": {"recall": 0.62, "threshold": 9}}),
    }
    text = run.render_geometric(results, n_images=1000)
    lines = text.splitlines()
    ours = next(line for line in lines if line.startswith("| lookalike --embed"))
    assert ">= 93.0% (default)" in ours and "10.00" in ours and "embedding 7, hash 30" in ours
    assert "62.0% (sweep)" in next(line for line in lines if line.startswith("| lookalike  "))
    theirs = next(line for line in lines if line.startswith("| immaculate sscd_distilled"))
    cells = [c.strip() for c in theirs.strip("|").split("|")]
    assert cells[3] == "-"  # precision below the target and no sweep: no recall to report
    assert ("crops, padding and rotations below 90% recall: rotate_7; CPU 0.50x immaculate "
            "sscd_distilled's") in text
    assert run.render_geometric({}, 10) == ""
    capsys.readouterr()


def test_peer_rows_and_pins():
    import peers

    assert peers.pin("immaculate") == "immaculate==0.3.0"  # hashes keyed without the extra
    assert "[sscd]" in peers.REQUIREMENTS["immaculate"][0]
    assert {"immaculate sscd", "immaculate sscd_distilled"} <= set(peers.PEERS)
    assert all(row.partition(" ")[0] in peers.REQUIREMENTS for row in peers.PEERS)
