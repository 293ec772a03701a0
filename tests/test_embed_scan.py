"""Scans with embeddings (``ScanConfig.embed``) end to end, on a tiny ONNX model built here:
grouping by embedding, how members matched in every report format, the cache, leakage,
Parquet output, and the errors. The real SSCD models are tested in test_embed.py."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.actions.plan import render_plan
from lookalike.analysis.query import find_matches
from lookalike.cli import main as _main
from lookalike.config import ScanConfig
from lookalike.errors import ConfigError
from lookalike.events import NullReporter
from lookalike.model import embedding_array
from lookalike.report.schema import read_report, render_text
from lookalike.store.cache import HashCache

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("faiss")
from onnx import TensorProto, helper  # noqa: E402

SIDE = 32  # the model's fixed input
CELLS = 4  # it averages the picture over a CELLS x CELLS grid per channel


def layout_model(path: Path, cells: int = CELLS) -> Path:
    """An ONNX model whose embedding is the picture's coarse colour layout: the mean of each
    channel over a ``cells`` x ``cells`` grid, centred. A crop or a border keeps most of a
    photo's layout (high cosine); another photo has another layout."""
    k = SIDE // cells
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[k, k],
                         strides=[k, k]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["flat", "mean"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "layout", [helper.make_tensor_value_info("image", TensorProto.UINT8,
                                                        ["n", SIDE, SIDE, 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 3 * cells ** 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return layout_model(tmp_path_factory.mktemp("model") / "layout.onnx")


def _crop(img: Image.Image, frac: float) -> Image.Image:
    w, h = img.size
    dx, dy = round(w * frac), round(h * frac)
    return img.crop((dx, dy, w - dx, h - dy))


@pytest.fixture(scope="module")
def tree(tmp_path_factory, rgb_photos) -> Path:
    """Two real photos, each with a copy cropped by 12% per side (which no hash finds),
    and a third photo alone."""
    root = tmp_path_factory.mktemp("tree")
    for k, src in enumerate(rgb_photos[:3]):
        img = Image.open(src).convert("RGB")
        img.save(root / f"p{k}.png")
        if k < 2:
            _crop(img, 0.12).save(root / f"p{k}_cropped.png")
    return root


def main(argv: list[str]) -> int:
    """The command line's exit code for ``argv``."""
    with pytest.raises(SystemExit) as exc:
        _main(argv)
    return exc.value.code


def _config(model: Path, **kw) -> ScanConfig:
    return ScanConfig(**{"embed": str(model), "similarity": 0.9, "workers": 1, **kw})


def test_a_cropped_copy_is_grouped_by_its_verified_embedding(tree, model):
    plain = lookalike.scan(tree, config=ScanConfig(workers=1))
    assert plain.groups == []  # the hashes alone find neither crop
    result = lookalike.scan(tree, config=_config(model))
    assert sorted(sorted(Path(p).name for p in g.paths) for g in result.groups) == [
        ["p0.png", "p0_cropped.png"], ["p1.png", "p1_cropped.png"]]
    for g in result.groups:
        rep, other = g.members
        # The representative's part of the group is what hashes tie to it (itself here).
        assert (rep.match, rep.similarity) == ("hash", 1.0)
        assert other.match == "verified" and 0.9 <= other.similarity < 1
        assert other.distance > result.config.threshold  # not a hash match
    assert result.stats["embedded"] == 5 and result.stats["verified"] == 2
    assert {(Path(a).name, Path(b).name): kind
            for (a, b), (kind, _) in result.embedding_matches.items()} == {
        ("p0.png", "p0_cropped.png"): "verified", ("p1.png", "p1_cropped.png"): "verified"}
    assert all(r.embedding is not None for r in result.records)
    vectors = embedding_array(result.records)
    assert vectors.shape == (5, 3 * CELLS ** 2)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)


def _moved(img: Image.Image) -> Image.Image:
    """The same scene a moment later: a block of it moved (what no edit of a copy does)."""
    w, h = img.size
    out = img.copy()
    block = img.crop((w // 10, h // 10, w // 2, h // 2))
    out.paste(block, (w // 2, h // 3))
    return out


@pytest.fixture
def later_scene(tree, tmp_path) -> Path:
    """A photo and the same scene a moment later (:func:`_moved`)."""
    folder = tmp_path / "scene"
    folder.mkdir()
    img = Image.open(tree / "p0.png")
    img.save(folder / "a.png")
    _moved(img).save(folder / "b.png")
    return folder


def test_verification_keeps_another_moment_of_the_scene_apart(later_scene, model):
    folder = later_scene
    config = _config(model, similarity=0.5)
    assert lookalike.scan(folder, config=config).groups == []
    trusting = lookalike.scan(folder, config=_config(model, similarity=0.5, verify=False))
    (g,) = trusting.groups
    assert [m.match for m in g.members] == ["hash", "embedding"]


def test_members_matched_by_hash_say_so(tree, model, tmp_path):
    img = Image.open(tree / "p2.png")
    folder = tmp_path / "t"
    folder.mkdir()
    img.save(folder / "a.png")
    img.resize((img.width // 2, img.height // 2)).save(folder / "a_small.png")
    (result,) = [lookalike.scan(folder, config=_config(model))]
    (g,) = result.groups
    assert [m.match for m in g.members] == ["hash", "hash"]
    assert all(m.similarity is not None and m.similarity > 0.95 for m in g.members)


def test_every_report_format_says_how_members_matched(tree, model, tmp_path):
    out = tmp_path / "r.json"
    code = main(["scan", str(tree), "--embed", str(model), "--similarity", "0.9", "-j", "1",
                 "--no-cache", "-q", "-o", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["config"]["embed"] == str(model) and data["config"]["similarity"] == 0.9
    members = [m for g in data["groups"] for m in g["members"]]
    assert [m["match"] for m in members] == ["hash", "verified"] * 2
    assert all(0.9 <= m["similarity"] <= 1 for m in members)
    report = read_report(out)  # and back
    assert [m.match for g in report.groups for m in g.members] == ["hash", "verified"] * 2
    csv_out = tmp_path / "r.csv"
    assert main(["scan", str(tree), "--embed", str(model), "--similarity", "0.9", "-j", "1",
                 "--no-cache", "-q", "-o", str(csv_out)]) == 0
    rows = list(csv.DictReader(io.StringIO(csv_out.read_text())))
    assert [r["match"] for r in rows] == ["hash", "verified"] * 2
    assert all(float(r["similarity"]) >= 0.9 for r in rows)


def test_text_report_marks_embedding_matches(tree, model, capsys):
    assert main(["scan", str(tree), "--embed", str(model), "--similarity", "0.9", "-j", "1",
                 "--no-cache", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.count("[verified ") == 2


def test_the_cache_keeps_embeddings_per_model(tree, model, tmp_path):
    cache_path = tmp_path / "c.sqlite"
    with HashCache(cache_path) as cache:
        cold = lookalike.scan(tree, config=_config(model), cache=cache)
        warm = lookalike.scan(tree, config=_config(model), cache=cache)
    assert cold.stats["hashed"] == 5 and warm.stats["hashed"] == 0
    assert [r.embedding for r in warm.records] == [r.embedding for r in cold.records]
    assert [g.paths for g in warm.groups] == [g.paths for g in cold.groups]
    # Another model (here: a finer grid) is another key: hashed and embedded again.
    other = layout_model(tmp_path / "fine.onnx", cells=8)
    with HashCache(cache_path) as cache:
        again = lookalike.scan(tree, config=_config(other), cache=cache)
        plain = lookalike.scan(tree, config=ScanConfig(workers=1), cache=cache)
    assert again.stats["hashed"] == 5
    assert len(again.records[0].embedding) == 2 * 3 * 8 ** 2  # float16
    assert plain.stats["hashed"] == 5 and all(r.embedding is None for r in plain.records)


def test_process_workers_embed_in_batches(tree, model):
    serial = lookalike.scan(tree, config=_config(model))
    pooled = lookalike.scan(tree, config=ScanConfig(embed=str(model), similarity=0.9,
                                                    workers=2), batch_size=3)
    assert [r.embedding for r in pooled.records] == [r.embedding for r in serial.records]
    assert [g.paths for g in pooled.groups] == [g.paths for g in serial.groups]


def _cropped_leak(tree: Path, tmp_path: Path, name: str) -> tuple[Path, Path]:
    """train/ with the three photos, test/ with p0's crop as ``name``: a leak only a
    verified embedding finds."""
    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    for photo in ("p0.png", "p1.png", "p2.png"):
        (train / photo).write_bytes((tree / photo).read_bytes())
    (test / name).write_bytes((tree / "p0_cropped.png").read_bytes())
    return train, test


def test_leakage_finds_a_cropped_test_image(tree, model, tmp_path):
    train, test = _cropped_leak(tree, tmp_path, "leak.png")
    result = lookalike.scan([train, test], config=_config(model))
    leakage = lookalike.find_leakage(result, [train])
    (leak,) = leakage.leaks
    assert Path(leak.path).name == "leak.png"
    (match,) = leak.matches
    assert Path(match.path).name == "p0.png" and match.match == "verified"
    assert match.similarity >= 0.9
    assert leakage.to_dict()["matches"][0]["matches"][0]["match"] == "verified"
    # Applying the leakage report protects the reference: the verified leak is purged.
    (group,) = leakage.groups
    decision = lookalike.KeepPolicy.from_spec(None, protect=[str(train)]).decide(group)
    assert [Path(p).name for p in decision.remove] == ["leak.png"]


def test_a_verified_leak_stays_when_another_set_holds_a_copy_of_the_reference(tree, model,
                                                                             tmp_path):
    """Verification joins two hash groups by one pair. With a val copy of p0 (``a_val``
    sorts first) in p0's hash group and two copies of the crop in test, that pair is a test
    crop and the val copy: leakage still ties both test crops to train's p0, as a scan
    without val does, and says truthfully how (``verified``, their own similarity)."""
    train, test = _cropped_leak(tree, tmp_path, "leak.png")
    (test / "leak_again.png").write_bytes((test / "leak.png").read_bytes())
    val = tmp_path / "a_val"
    val.mkdir()
    (val / "p0_copy.png").write_bytes((tree / "p0.png").read_bytes())

    def matches(leakage: lookalike.Leakage, name: str) -> list[tuple[str, str, int, float]]:
        (leak,) = [lk for lk in leakage.leaks if lk.path == str(test / name)]
        return [(Path(m.path).name, m.match, m.distance, m.similarity) for m in leak.matches]

    alone = lookalike.find_leakage(lookalike.scan([train, test], config=_config(model)),
                                   [train])
    result = lookalike.scan([train, test, val], config=_config(model))
    leakage = lookalike.find_leakage(result, [train])
    for name in ("leak.png", "leak_again.png"):
        assert matches(leakage, name) == matches(alone, name)
        ((_, how, _, similarity),) = matches(leakage, name)
        assert how == "verified" and similarity >= 0.9
    assert sorted(Path(p).name for p in leakage.purge) == [
        "leak.png", "leak_again.png", "p0_copy.png"]
    assert {s.name: s.leaked for s in leakage.sets} == {"train": 0, "test": 2, "a_val": 1}


def test_without_verification_every_output_agrees_on_the_purge_list(tree, model, tmp_path):
    """An unverified embedding match (``--no-verify``) may be another photo of the scene:
    the keep policy never removes it, so it is a suspect, not on the purge list, and the
    text, JSON, CSV, paths and apply's plan all say so alike."""
    from lookalike.actions.plan import plan
    from lookalike.report.schema import render_csv, render_paths

    train, test = _cropped_leak(tree, tmp_path, "leak.png")
    (test / "p1_copy.png").write_bytes((tree / "p1.png").read_bytes())  # a hash match
    result = lookalike.scan([train, test], config=_config(model, verify=False))
    leakage = lookalike.find_leakage(result, [train])
    assert {Path(lk.path).name: [m.match for m in lk.matches] for lk in leakage.leaks} == {
        "leak.png": ["embedding"], "p1_copy.png": ["hash"]}
    copy, suspect = str(test / "p1_copy.png"), str(test / "leak.png")
    assert leakage.purge == (copy,) and leakage.unverified == (suspect,)
    data = leakage.to_dict()
    assert data["purge"] == [copy] and data["unverified"] == [suspect]
    text = leakage.render_text()
    assert "purge list: 1 files" in text and "1 only by unverified embeddings" in text
    assert "not on it: 1 suspect(s)" in text
    rows = list(csv.DictReader(io.StringIO(render_csv(result, leakage=leakage))))
    assert {r["path"]: r["purge"] for r in rows if r["set"] == "test"} == {
        copy: "1", suspect: "0"}
    assert render_paths(result, leakage=leakage).splitlines() == [copy]
    report = tmp_path / "leak.json"
    lookalike.write_report(result, report, leakage=leakage)
    p = plan(report, action="move", to=tmp_path / "q")
    assert sorted(op.path for op in p.operations) == [copy]


def test_parquet_output_keeps_embeddings_and_resumes(tree, model, tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "scan.parquet"
    first = lookalike.scan(tree, config=_config(model), parquet_out=str(out))
    table = lookalike.read_results(out)
    stored = dict(zip(table["path"].to_pylist(), table["embedding"].to_pylist(), strict=True))
    assert stored == {r.path: r.embedding for r in first.records}
    resumed = lookalike.scan(tree, config=_config(model), parquet_out=str(out))
    assert resumed.stats["hashed"] == 0
    assert [g.paths for g in resumed.groups] == [g.paths for g in first.groups]


def test_a_missing_model_is_one_line_and_exit_2_before_any_work(tree, tmp_path, capsys):
    with pytest.raises(ConfigError, match="no such file"):
        lookalike.scan(tree, config=ScanConfig(embed=str(tmp_path / "none.onnx")))
    code = main(["scan", str(tree), "--embed", "no-such-model", "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "sscd" in err


def test_a_model_failing_on_one_image_costs_only_its_embedding(tree, model, monkeypatch,
                                                               tmp_path):
    from lookalike.imaging import embed

    real = embed.Embedder.embed

    def failing(self, inputs, batch=16):
        # The model "fails" on any input whose top-left pixel is that of p1_cropped.png.
        bad = np.asarray(Image.open(tree / "p1_cropped.png").convert("RGB").resize(
            (SIDE, SIDE), Image.Resampling.BILINEAR, reducing_gap=3.0))[0, 0]
        if any((x[0, 0] == bad).all() for x in inputs):
            raise RuntimeError("model failure")
        return real(self, inputs, batch)

    monkeypatch.setattr(embed.Embedder, "embed", failing)
    said: list[str] = []

    class Told(NullReporter):
        def info(self, message: str) -> None:
            said.append(message)

    with HashCache(tmp_path / "c.sqlite") as cache:
        result = lookalike.scan(tree, config=_config(model), cache=cache, reporter=Told())
        assert result.errors == [] and len(result.records) == 5
        # The line names the file (it said only how many).
        assert any("got no embedding" in m and "p1_cropped.png" in m for m in said)
        (failed,) = [r for r in result.records if r.embedding is None]
        assert Path(failed.path).name == "p1_cropped.png"
        assert result.stats["embed_failed"] == 1
        # Its crop matched by embedding only: without one it stays out of the groups.
        assert [sorted(Path(p).name for p in g.paths) for g in result.groups] == [
            ["p0.png", "p0_cropped.png"]]
        monkeypatch.setattr(embed.Embedder, "embed", real)
        again = lookalike.scan(tree, config=_config(model), cache=cache)
    assert again.stats["hashed"] == 1  # not cached without its embedding: tried again
    assert len(again.groups) == 2


@pytest.mark.parametrize("similarity", [0, 1.5, True, "high"])
def test_a_similarity_outside_0_1_is_refused(similarity):
    with pytest.raises(ConfigError, match="similarity"):
        ScanConfig(similarity=similarity)


def test_query_finds_a_crop_by_its_verified_embedding(tree, model, tmp_path, capsys):
    cache_path = tmp_path / "c.sqlite"
    with HashCache(cache_path) as cache:
        lookalike.scan(tree, config=_config(model), cache=cache)
    query = tmp_path / "q.png"
    _crop(Image.open(tree / "p2.png"), 0.1).save(query)
    results, problems = find_matches([query], cache_path, _config(model))
    assert problems == []
    ((rec, distance),) = results[0].matches
    assert rec.path == str(tree / "p2.png") and distance > 6
    assert results[0].embedded[rec.path] >= 0.9
    code = main(["query", str(query), "--cache", str(cache_path), "--embed", str(model),
                 "--similarity", "0.9", "--format", "json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    (match,) = data["queries"][0]["matches"]
    assert match["match"] == "verified" and match["similarity"] >= 0.9
    # Without the model the same cache answers by hashes alone: they do not see the crop,
    # but do find an exact copy.
    copy = tmp_path / "copy.png"
    copy.write_bytes((tree / "p1.png").read_bytes())
    assert main(["query", str(query), str(copy), "--cache", str(cache_path),
                 "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [[(Path(m["path"]).name, m["match"]) for m in q["matches"]]
            for q in data["queries"]] == [[], [("p1.png", "hash")]]


def test_a_query_with_a_model_the_cache_has_no_embeddings_from_is_refused(tree, model,
                                                                         tmp_path, capsys):
    # It answered "0 matches": the embedding half skipped without a word.
    cache_path = tmp_path / "c.sqlite"
    with HashCache(cache_path) as cache:
        lookalike.scan(tree, config=ScanConfig(workers=1), cache=cache)  # hashes only
    query = tmp_path / "q.png"
    _crop(Image.open(tree / "p2.png"), 0.1).save(query)
    with pytest.raises(ConfigError, match="no embeddings from the model"):
        find_matches([query], cache_path, _config(model))
    assert main(["query", str(query), "--cache", str(cache_path), "--embed", str(model)]) == 2
    assert "no embeddings from the model" in capsys.readouterr().err


def test_query_brings_the_hash_copies_of_what_its_embedding_found(tree, model, tmp_path,
                                                                   monkeypatch):
    # The photo the crop came from has a re-encoded copy: a scan puts all three in one
    # group, so the query lists both, the copy through the photo's hash even when
    # verification could not confirm it on its own (as for a thumbnail-sized copy).
    import lookalike.analysis.query as query_module

    real = query_module.verify_pairs

    def verify_pairs(records, pairs, config, **kw):
        return [ok and not records[j].path.endswith("_q85.jpg")
                for (_, j), ok in zip(pairs, real(records, pairs, config, **kw), strict=True)]

    monkeypatch.setattr(query_module, "verify_pairs", verify_pairs)
    folder = tmp_path / "set"
    folder.mkdir()
    photo = Image.open(tree / "p2.png").convert("RGB")
    photo.save(folder / "photo.png")
    photo.save(folder / "photo_q85.jpg", quality=85)
    cache_path = tmp_path / "c.sqlite"
    with HashCache(cache_path) as cache:
        (group,) = lookalike.scan(folder, config=_config(model), cache=cache).groups
    assert len(group.members) == 2
    query = tmp_path / "q.png"
    _crop(photo, 0.1).save(query)
    results, problems = find_matches([query], cache_path, _config(model))
    assert problems == []
    found = {Path(rec.path).name: results[0].match_of(rec) for rec, _ in results[0].matches}
    assert found == {"photo.png": "verified", "photo_q85.jpg": "verified"}
    assert all(0 < sim <= 1 for sim in results[0].embedded.values())


def test_similarity_default_follows_verification_and_star_grouping_is_refused(model):
    import dataclasses

    from lookalike.config import DEFAULT_SIMILARITY, DEFAULT_SIMILARITY_UNVERIFIED

    config = ScanConfig(embed=str(model))
    assert config.resolved_similarity == DEFAULT_SIMILARITY
    assert (dataclasses.replace(config, verify=False).resolved_similarity
            == DEFAULT_SIMILARITY_UNVERIFIED > DEFAULT_SIMILARITY)
    assert ScanConfig(embed=str(model), similarity=0.8).to_dict()["similarity"] == 0.8
    with pytest.raises(ConfigError, match="components grouping"):
        ScanConfig(embed=str(model), grouping="star")


def test_keep_policy_acts_only_on_what_hashes_tie_and_never_removes_a_joined_member(
        tree, model, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    img = Image.open(tree / "p0.png").convert("RGB")
    img.save(folder / "photo.jpg", quality=92)  # the original
    img.resize((img.width // 3, img.height // 3)).save(folder / "small.png")  # a thumbnail
    _crop(img, 0.12).save(folder / "crop.png")  # lossless and smaller: not the original
    (g,) = lookalike.scan(folder, config=_config(model)).groups
    match = {Path(m.record.path).name: m.match for m in g.members}
    assert match == {"photo.jpg": "hash", "small.png": "hash", "crop.png": "verified"}
    decision = lookalike.KeepPolicy().decide(g)
    # Among the members hashes tie, resolution decides as without embeddings; the crop,
    # joined by its embedding, is kept whatever the rules (no signal says it is a copy).
    assert [Path(p).name for p in decision.keep] == ["photo.jpg", "crop.png"]
    assert [Path(p).name for p in decision.remove] == ["small.png"]
    assert "joined by embeddings are kept" in decision.reason
    for policy in (lookalike.KeepPolicy.from_spec("none"),
                   lookalike.KeepPolicy.from_spec(None, protect=[str(folder)])):
        assert str(folder / "crop.png") in policy.decide(g).keep
    # The plan says why the crop stays, and the summary counts what the policy removes.
    result = lookalike.scan(folder, config=_config(model))
    report = tmp_path / "report.json"
    lookalike.write_report(result, report)
    text = render_plan(lookalike.plan(report, action="move", to=tmp_path / "q"))
    assert "also kept: 1 member that embeddings joined" in text
    summary = render_text(result).splitlines()[0]
    assert "2 duplicates (1 removable by the keep policy, " in summary
    # A photo and its crop: one member hashes matched; nothing is protected (the reason
    # said "the only unprotected member").
    reason = lookalike.KeepPolicy().decide(lookalike.scan(tree, config=_config(model))
                                           .groups[0]).reason
    assert reason.startswith("the only member hashes matched; members joined by embeddings")


def test_keep_policy_never_removes_unverified_embedding_matches(later_scene, model):
    (g,) = lookalike.scan(later_scene, config=_config(model, similarity=0.5, verify=False)).groups
    decision = lookalike.KeepPolicy().decide(g)
    assert sorted(Path(p).name for p in decision.keep) == ["a.png", "b.png"]
    assert decision.remove == () and "joined by embeddings are kept" in decision.reason


def test_a_warm_rescan_reuses_verdicts_and_a_changed_file_is_judged_again(tree, model,
                                                                          tmp_path):
    import shutil

    folder = tmp_path / "t"
    shutil.copytree(tree, folder)
    with HashCache(tmp_path / "c.sqlite") as cache:
        cold = lookalike.scan(folder, config=_config(model), cache=cache)
        warm = lookalike.scan(folder, config=_config(model), cache=cache)
        assert cold.stats["verify_read"] > 0 and cold.stats["verify_cached"] == 0
        assert warm.stats["verify_read"] == 0
        assert warm.stats["verify_cached"] == cold.stats["verify_tried"]
        assert [g.paths for g in warm.groups] == [g.paths for g in cold.groups]
        # Its change time moved (as by bytes written in place, size and mtime kept): read
        # again, and judged again, not by the verdicts of its old bytes (second code review).
        st = os.stat(folder / "p0_cropped.png")
        os.utime(folder / "p0_cropped.png", ns=(st.st_atime_ns, st.st_mtime_ns))
        touched = lookalike.scan(folder, config=_config(model), cache=cache)
        assert touched.stats["hashed"] == 1 and touched.stats["verify_read"] >= 1
        assert touched.stats["verify_cached"] < warm.stats["verify_cached"]
        # A crop replaced by another picture: its verdicts no longer hold.
        Image.open(folder / "p2.png").save(folder / "p0_cropped.png")
        changed = lookalike.scan(folder, config=_config(model), cache=cache)
    assert sorted(sorted(Path(p).name for p in g.paths) for g in changed.groups) == [
        ["p0_cropped.png", "p2.png"], ["p1.png", "p1_cropped.png"]]


@pytest.mark.slow  # 0.7 s: embeds and aligns every edit
def test_calibrate_embed_measures_geometric_copies_and_recommends_a_floor(tree, model,
                                                                          tmp_path, capsys):
    from lookalike.analysis.calibrate_embed import EDITS, FLOORS, calibrate_embedding

    cal = calibrate_embedding(tree, embed=str(model), sample=5)
    assert cal.images == 5 and cal.copies == 5 * len(EDITS)
    recalls = [p.recall for p in cal.points]
    assert [p.floor for p in cal.points] == list(FLOORS)
    assert recalls == sorted(recalls, reverse=True) and recalls[0] > 0.5
    assert cal.similarity in FLOORS
    chosen = next(p for p in cal.points if p.floor == cal.similarity)
    assert chosen.recall >= 0.95 * recalls[0]
    assert all(0 <= e["verified"] <= 1 for e in cal.edits.values())
    out = tmp_path / "cal.json"
    assert main(["calibrate", str(tree), "--embed", str(model), "--sample", "5", "-j", "1",
                 "-q", "--json", str(out)]) == 0
    assert "recommended: --similarity" in capsys.readouterr().out
    assert json.loads(out.read_text())["embedding"]["similarity"] in FLOORS
    assert main(["calibrate", str(tree), "--embed", str(tmp_path / "no.onnx")]) == 2


def test_a_file_unreadable_at_verification_gets_no_verdict_and_is_judged_next_scan(
        tree, model, tmp_path, monkeypatch):
    from lookalike import verify

    real = verify._Features._load
    monkeypatch.setattr(verify._Features, "_load", lambda self, i: (
        None if self.records[i].path.endswith("p0_cropped.png") else real(self, i)))
    with HashCache(tmp_path / "c.sqlite") as cache:
        first = lookalike.scan(tree, config=_config(model), cache=cache)
        assert first.stats["verified"] == 1  # only p1's crop
        monkeypatch.setattr(verify._Features, "_load", real)
        second = lookalike.scan(tree, config=_config(model), cache=cache)
    assert second.stats["verified"] == 2 and len(second.groups) == 2


def _tinted(img: Image.Image, side: int, tint: tuple[float, float, float],
            colours: int | None = None) -> Image.Image:
    """A grey photo as a coloured icon of ``side`` pixels (box-filtered, optionally paletted):
    two tints of one photo are one picture in grey, two in colour."""
    grey = img.convert("L")
    grey.thumbnail((side, side), Image.Resampling.BOX)
    out = Image.merge("RGB", [grey.point(lambda v, f=f: round(v * f)) for f in tint])
    return out.quantize(colours).convert("RGB") if colours else out


def test_a_small_redraw_joins_its_icon_unless_its_group_disagrees_in_colour(photos, model,
                                                                           tmp_path):
    """An icon at 64 px and its 32 px, 64-colour redraw hash far apart; their embeddings
    propose the pair and their colour thumbnails verify it. A grey copy of the redraw hashes
    exactly like it (hashes read grey), as a false match between two flags of grey-alike
    stripes does: once the redraw's hash group holds a picture of other colours, the join
    through thumbnails is refused, so it can never chain the icon to a false match."""
    brick = Image.open({p.stem: p for p in photos}["brick"])
    red = (1.0, 0.3, 0.2)
    _tinted(brick, 64, red).save(tmp_path / "icon64.png")
    small = _tinted(brick, 32, red, 64)
    small.save(tmp_path / "icon32.png")
    plain = lookalike.scan(tmp_path, config=ScanConfig(workers=1))
    assert plain.groups == []  # no hash match: only the embedding can find the pair
    found = lookalike.scan(tmp_path, config=ScanConfig(embed=str(model), workers=1))
    (group,) = found.groups
    assert sorted(group.paths) == [str(tmp_path / "icon32.png"), str(tmp_path / "icon64.png")]
    assert {m.match for m in group.members} == {"hash", "verified"}
    small.convert("L").convert("RGB").save(tmp_path / "grey32.png")
    (hashed,) = lookalike.scan(tmp_path, config=ScanConfig(workers=1)).groups
    assert sorted(hashed.paths) == [str(tmp_path / "grey32.png"), str(tmp_path / "icon32.png")]
    again = lookalike.scan(tmp_path, config=ScanConfig(embed=str(model), workers=1))
    assert [sorted(g.paths) for g in again.groups] == [sorted(hashed.paths)]


def test_dataset_cleanup_counts_verified_leaks_like_leakage_mode(tree, model, tmp_path):
    # dedupe_dataset searched hashes only: a cropped test row leaked unseen, though the scan
    # had verified the match (and the CLI's leakage mode reported it).
    train, test = _cropped_leak(tree, tmp_path, "a_leak.png")
    cleanup = lookalike.dedupe_dataset({"train": str(train), "test": str(test)},
                                       config=_config(model))
    assert cleanup.leaked == {"train": (), "test": (0,)}
    (leak,) = cleanup.leaks
    (match,) = leak.matches
    assert (match.split, match.index, match.match) == ("train", 0, "verified")
    assert match.similarity >= 0.9
    assert cleanup.to_dict()["leaks"][0]["matches"][0]["match"] == "verified"
    assert "test[0]  ~  train[0] (verified 0." in cleanup.render_text()


def test_dataset_cleanup_of_a_hf_dataset_keeps_how_members_matched(tree, model):
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("pyarrow")
    rows = {"train": ["p0.png", "p1.png"], "test": ["p2.png", "p0_cropped.png"]}
    ds = datasets.DatasetDict({
        name: datasets.Dataset.from_dict(
            {"image": [str(tree / n) for n in names]}).cast_column("image", datasets.Image())
        for name, names in rows.items()})
    cleanup = lookalike.dedupe_dataset(ds, config=_config(model))
    assert cleanup.leaked == {"train": (), "test": (1,)}
    (group,) = cleanup.scan.groups
    assert {(m.record.path, m.match) for m in group.members} == {
        ("train#0", "hash"), ("test#1", "verified")}
    assert list(cleanup.scan.embedding_matches) == [("test#1", "train#0")]


def test_query_reads_the_hashes_of_scans_with_and_without_a_model(tree, model, tmp_path):
    # Each scan caches its files under its own settings (with a model: under the model's);
    # a query read the first of those with rows and silently missed the others' files.
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for name in ("p0.png", "p1.png"):
        (a / name).write_bytes((tree / name).read_bytes())
    (b / "p2.png").write_bytes((tree / "p2.png").read_bytes())
    cache_path = tmp_path / "c.sqlite"
    with HashCache(cache_path) as cache:
        lookalike.scan(a, config=ScanConfig(workers=1), cache=cache)
        lookalike.scan(b, config=_config(model), cache=cache)
    queries = [tmp_path / "q0.png", tmp_path / "q2.png"]
    for q, src in zip(queries, ("p0.png", "p2.png"), strict=True):
        q.write_bytes((tree / src).read_bytes())
    for config in (ScanConfig(), _config(model)):
        results, problems = find_matches(queries, cache_path, config)
        assert problems == []
        assert [[Path(r.path).name for r, _ in res.matches] for res in results] == [
            ["p0.png"], ["p2.png"]], config.embed
    # With the model, a crop is found by the embedding of the file its scan embedded.
    crop = tmp_path / "crop.png"
    _crop(Image.open(tree / "p2.png"), 0.1).save(crop)
    (res,), _ = find_matches([crop], cache_path, _config(model))
    assert [Path(r.path).name for r, _ in res.matches] == ["p2.png"]
    assert res.match_of(res.matches[0][0]) == "verified"


def test_query_with_verification_off_and_other_models_in_the_cache(tree, tmp_path):
    # Review: a query with --no-verify was refused once plain-hash keys were read too, and a
    # full-decode query kept another model's embeddings from fast-decode rows (a traceback
    # where their lengths differ).
    one = layout_model(tmp_path / "m1.onnx", cells=4)
    other = layout_model(tmp_path / "m2.onnx", cells=3)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "p0.png").write_bytes((tree / "p0.png").read_bytes())
    (b / "p1.png").write_bytes((tree / "p1.png").read_bytes())
    db = tmp_path / "c.sqlite"
    with HashCache(db) as cache:
        lookalike.scan(a, config=_config(other, decode="fast"), cache=cache)
        lookalike.scan(b, config=_config(one, decode="full", verify=False), cache=cache)
    q = tmp_path / "q.png"
    q.write_bytes((tree / "p0.png").read_bytes())
    for config in (_config(one, decode="full"), _config(one, decode="full", verify=False)):
        (res,), problems = find_matches([q], db, config)
        assert problems == [] and [Path(r.path).name for r, _ in res.matches] == ["p0.png"]
