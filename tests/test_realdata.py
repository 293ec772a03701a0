"""Tests of the benchmark data layer: benchmarks/realdata.py and benchmarks/transforms.py."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import realdata
import transforms


def _photo(size: tuple[int, int] = (96, 64), mode: str = "RGB") -> Image.Image:
    """A small seeded test picture with structure (gradients, a block, noise), not flat."""
    w, h = size
    gen = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx + yy) % 256], -1)
    arr[h // 4 : h // 2, w // 5 : w // 2] = (250, 30, 30)
    arr = np.clip(arr + gen.integers(-10, 10, arr.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    if mode == "RGBA":
        img.putalpha(Image.fromarray(np.where(xx < w // 6, 0, 255).astype(np.uint8)))
    elif mode != "RGB":
        img = img.convert(mode)
    return img


# --------------------------------------------------------------------------- transforms


def test_transform_tables_agree() -> None:
    assert set(transforms.TRANSFORMS) == set(transforms.CATEGORY) == set(transforms.SPECS)
    assert set(transforms.CATEGORY.values()) == {"benign", "hard"}
    assert set(transforms.BENIGN) | set(transforms.HARD) == set(transforms.TRANSFORMS)
    assert all(spec.doc for spec in transforms.SPECS.values())
    for name in ("jpeg_q30", "webp_q40", "resize_down_50", "greyscale"):
        assert transforms.CATEGORY[name] == "benign"
    for name in ("crop_5", "crop_20", "crop_corner_15", "pad_10", "hflip", "rotate_90",
                 "rotate_3", "rotate_7", "screenshot", "caption_text"):
        assert transforms.CATEGORY[name] == "hard"


@pytest.mark.parametrize("name", list(transforms.TRANSFORMS))
def test_transform_is_deterministic(name: str) -> None:
    img = _photo()
    a, sa = transforms.encode_variant(img, name, random.Random(3))
    b, sb = transforms.encode_variant(img, name, random.Random(3))
    assert sa == sb
    assert a == b
    pa = transforms.TRANSFORMS[name](img, random.Random(3))
    pb = transforms.TRANSFORMS[name](img, random.Random(3))
    assert pa.tobytes() == pb.tobytes()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
@pytest.mark.parametrize("name", list(transforms.TRANSFORMS))
def test_transform_gives_plausible_image(name: str, mode: str, tmp_path: Path) -> None:
    img = _photo(mode=mode)
    w, h = img.size
    path = transforms.save_variant(img, name, tmp_path, random.Random(0), stem="src")
    assert path.name.startswith(f"src__{name}.")
    with Image.open(path) as out:
        out.load()
        assert out.mode in ("L", "LA", "RGB", "RGBA")
        ow, oh = ImageOps.exif_transpose(out).size
    # Every transform keeps the picture between a third and twice its size per side.
    assert w / 3 <= ow <= 2 * w and h / 3 <= oh <= 2 * h, (ow, oh)
    if name in ("rotate_90",):
        assert (ow, oh) == (h, w)
    elif name in ("hflip", "rotate_3", "rotate_7", "caption_text", "jpeg_q30", "jpeg_q70",
                  "webp_q40", "blur_r1_5"):
        assert (ow, oh) == (w, h)
    elif name == "crop_corner_15":
        assert (ow, oh) == (round(w * 0.85), round(h * 0.85))


def test_transforms_change_pixels_but_keep_the_picture() -> None:
    img = _photo((128, 96))
    base = np.asarray(img.convert("L").resize((32, 24)), dtype=float)
    for name in transforms.BENIGN:
        if name == "exif_orientation":
            continue
        out = transforms.TRANSFORMS[name](img, random.Random(0))
        small = np.asarray(out.convert("L").resize((32, 24)), dtype=float)
        corr = np.corrcoef(base.ravel(), small.ravel())[0, 1]
        assert corr > 0.8, (name, corr)
    flipped = transforms.TRANSFORMS["hflip"](img, random.Random(0))
    assert flipped.tobytes() != img.tobytes()
    assert ImageOps.mirror(flipped).tobytes() == img.tobytes()


@pytest.mark.parametrize("seed", range(8))
def test_exif_variant_decodes_upright(seed: int, tmp_path: Path) -> None:
    img = _photo((90, 60))
    path = transforms.save_variant(img, "exif_orientation", tmp_path, random.Random(seed))
    with Image.open(path) as raw:
        assert raw.format == "JPEG"
        tag = raw.getexif().get(transforms.EXIF_ORIENTATION)
        assert tag in (3, 6, 8)
        if tag in (6, 8):
            assert raw.size == (60, 90)  # stored rotated
        upright = ImageOps.exif_transpose(raw)
    assert upright.size == img.size
    diff = np.abs(np.asarray(upright, dtype=int) - np.asarray(img, dtype=int)).mean()
    assert diff < 6, diff  # JPEG q95 noise only, not a rotated picture
    # The in-memory result carries the same tag.
    mem = transforms.TRANSFORMS["exif_orientation"](img, random.Random(seed))
    assert ImageOps.exif_transpose(mem).size == img.size


@pytest.mark.parametrize("seed", range(6))
def test_geometric_edits_keep_the_picture_where_they_say(seed: int) -> None:
    img = _photo((120, 80))
    px = np.asarray(img, dtype=int)
    # The corner crop is an exact window of the original at one of its four corners.
    crop = np.asarray(transforms.crop_corner_15(img, random.Random(seed)), dtype=int)
    ch, cw = crop.shape[:2]
    windows = [px[y:y + ch, x:x + cw] for y in (0, 80 - ch) for x in (0, 120 - cw)]
    assert sum(np.array_equal(crop, win) for win in windows) == 1
    # The caption bar covers 15% of the height (12 rows) at the top or the bottom, in one
    # colour but for its text; the rest is untouched.
    cap = np.asarray(transforms.caption_text(img, random.Random(seed)), dtype=int)
    changed = np.flatnonzero((cap != px).any(axis=(1, 2)))
    assert changed.size and (changed.max() < 12 or changed.min() >= 80 - 12), changed
    bar = cap[changed]
    assert ((bar == 0).all(axis=2) | (bar == 255).all(axis=2)).mean() > 0.6  # ink and paper
    # rotate_7 turns further than rotate_3: more of the frame is black corner fill.
    black = {name: (np.asarray(transforms.TRANSFORMS[name](img, random.Random(0))) == 0)
             .all(axis=2).mean() for name in ("rotate_3", "rotate_7")}
    assert 0 < black["rotate_3"] < black["rotate_7"] < 0.2, black


def test_reencode_variant_is_a_real_lossy_file(tmp_path: Path) -> None:
    img = _photo()
    for name, fmt in (("jpeg_q30", "JPEG"), ("jpeg_q70", "JPEG"), ("webp_q40", "WEBP")):
        path = transforms.save_variant(img, name, tmp_path, random.Random(0))
        with Image.open(path) as out:
            assert out.format == fmt
    q30 = (tmp_path / "image__jpeg_q30.jpg").stat().st_size
    q70 = (tmp_path / "image__jpeg_q70.jpg").stat().st_size
    assert q30 < q70


def test_make_variants(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for sub in ("a", "b"):
        (src / sub).mkdir(parents=True)
        _photo().save(src / sub / "same.png")
    _photo((40, 70)).save(src / "other.jpg")
    paths = [src / "a" / "same.png", src / "b" / "same.png", src / "other.jpg"]
    names = ["jpeg_q30", "crop_20", "exif_orientation"]
    out = transforms.make_variants(paths, tmp_path / "out", names=names, seed=1)
    assert [(o, n) for o, _, n in out] == [(p, n) for p in paths for n in names]
    variants = [v for _, v, _ in out]
    assert len(set(variants)) == len(variants)  # same stems did not collide
    assert all(v.is_file() for v in variants)
    again = transforms.make_variants(paths, tmp_path / "again", names=names, seed=1)
    assert [v.read_bytes() for _, v, _ in again] == [v.read_bytes() for v in variants]
    with pytest.raises(KeyError):
        transforms.make_variants(paths, tmp_path / "x", names=["nope"])


def test_normalize_odd_modes() -> None:
    img16 = Image.fromarray(np.arange(64 * 32, dtype=np.uint16).reshape(32, 64) * 30)
    assert transforms.normalize(img16).mode == "L"
    assert transforms.normalize(_photo().convert("CMYK")).mode == "RGB"
    assert transforms.normalize(_photo().convert("1")).mode == "L"
    assert transforms.normalize(_photo(mode="RGBA").convert("LA")).mode == "RGBA"


# --------------------------------------------------------------------------- realdata (offline)


def test_exact_duplicate_groups(tmp_path: Path) -> None:
    for name, data in (
        ("a", b"x"),
        ("b", b"y"),
        ("c", b"x"),
        ("d", b"x"),
        ("e", b"y"),
        ("f", b"z"),
    ):
        (tmp_path / name).write_bytes(data)
    groups = realdata.exact_duplicate_groups(sorted(tmp_path.iterdir()))
    assert groups == [
        [tmp_path / "a", tmp_path / "c", tmp_path / "d"],
        [tmp_path / "b", tmp_path / "e"],
    ]


def test_cache_is_atomic_and_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_DATA_CACHE", str(tmp_path))
    calls = []

    def broken(tmp: Path) -> realdata._Fetch:
        (tmp / "half.png").write_bytes(b"partial")
        raise realdata.DataUnavailable("registry unreachable")

    def good(tmp: Path) -> realdata._Fetch:
        calls.append(tmp)
        (tmp / "x.png").write_bytes(b"png")
        return realdata._Fetch("pkg", "1.0", "pkg.whl", 3, 0.1)

    with pytest.raises(realdata.DataUnavailable):
        realdata._ensure("demo", broken)
    assert not (tmp_path / "demo").exists()
    assert not list(tmp_path.glob(".demo.tmp-*"))
    (tmp_path / ".demo.tmp-stale").mkdir()  # as a killed fetch would leave it
    root = realdata._ensure("demo", good)
    assert realdata._ensure("demo", good) == root == tmp_path / "demo"
    assert len(calls) == 1
    assert not (tmp_path / ".demo.tmp-stale").exists()
    info = realdata.marker_info("demo")
    assert info is not None and info["files"] == 1 and info["version"] == "1.0"


def test_missing_client_is_data_unavailable(tmp_path: Path) -> None:
    with pytest.raises(realdata.DataUnavailable):
        realdata._run(["definitely-not-a-registry-client-xyz"], tmp_path, "demo")
    with pytest.raises(realdata.DataUnavailable):
        realdata._run([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, "demo")


def test_idx_reader(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    (tmp_path / "x-idx3-ubyte").write_bytes(header + arr.tobytes())
    assert np.array_equal(realdata._read_idx(tmp_path / "x-idx3-ubyte"), arr)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_pngs_from_cached_idx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOKALIKE_DATA_CACHE", str(tmp_path))
    root = tmp_path / "fashion-mnist"
    gen = np.random.default_rng(0)
    train, test = gen.integers(0, 256, (3, 28, 28)), gen.integers(0, 256, (2, 28, 28))
    _write_idx(root / "raw" / "train-images-idx3-ubyte", train)
    _write_idx(root / "raw" / "t10k-images-idx3-ubyte", test)
    _write_idx(root / "raw" / "train-labels-idx1-ubyte", np.array([9, 0, 3]))
    _write_idx(root / "raw" / "t10k-labels-idx1-ubyte", np.array([1, 2]))
    (root / realdata.MARKER).write_text("{}")
    first = realdata.fashion_mnist(limit=2)
    assert [p.name for p in first] == ["fmnist-00000.png", "fmnist-00001.png"]
    paths = realdata.fashion_mnist()
    assert len(paths) == 5 and paths[:2] == first
    with Image.open(paths[3]) as im:
        assert im.size == (28, 28) and im.mode == "L"
        assert np.array_equal(np.asarray(im), test[0])
    assert realdata.fashion_mnist_labels() == [9, 0, 3, 1, 2]
    assert realdata.fashion_mnist_labels(limit=2) == [9, 0]


def test_emoji_sheet_cell(tmp_path: Path) -> None:
    size, step = 16, 18
    sheet = Image.new("RGBA", (3 * step, 2 * step), (0, 0, 0, 0))
    sheet.paste(
        (255, 0, 0, 255), (2 * step + 1, 1 * step + 1, 2 * step + 1 + size, step + 1 + size)
    )
    sheet.save(tmp_path / "16.png")
    emoji = realdata.EmojiSet(
        vendor="google",
        singles={},
        sheets={"sheets/16": tmp_path / "16.png"},
        names={"1f600": "grinning"},
        skin_base={},
        cells={"1f600": (2, 1)},
        meta=tmp_path / "emoji.json",
    )
    cell = emoji.sheet_cell("sheets/16", "1f600")
    assert cell.size == (16, 16)
    assert (np.asarray(cell) == (255, 0, 0, 255)).all()


@pytest.mark.parametrize("size", [(1, 1), (16, 16), (28, 28), (300, 7)])
def test_transforms_survive_tiny_images(size: tuple[int, int]) -> None:
    img = _photo(size)
    for name in transforms.TRANSFORMS:
        data, _ = transforms.encode_variant(img, name, random.Random(0))
        with Image.open(io.BytesIO(data)) as out:
            out.load()
            assert min(out.size) >= 1


def test_hostile_names() -> None:
    assert realdata.is_hostile(Path("crash-abc.sgi"))
    assert realdata.is_hostile(Path("fli_oob/02r/02r00.fli"))
    assert realdata.is_hostile(Path("timeout-123.tif"))
    assert not realdata.is_hostile(Path("hopper.png"))
    assert not realdata.is_hostile(Path("apng/num_plays.png"))


# --------------------------------------------------------------------------- realdata (network)


@pytest.mark.network
def test_skimage_photos() -> None:
    try:
        paths = realdata.skimage_photos()
    except realdata.DataUnavailable as exc:
        pytest.skip(f"scikit-image wheel unavailable: {exc}")
    assert len(paths) >= 10
    assert paths == sorted(paths)
    assert not any(p.stem in realdata.SKIMAGE_NON_PHOTOS for p in paths)
    for p in paths:
        with Image.open(p) as im:
            im.load()
            assert min(im.size) >= 128
    assert len(realdata.skimage_photos(photos_only=False)) > len(paths)
    assert realdata.skimage_photos() == paths  # cached, same answer


@pytest.mark.slow
@pytest.mark.network
def test_skimage_photo_variants(tmp_path: Path) -> None:
    try:
        paths = realdata.skimage_photos()[:2]
    except realdata.DataUnavailable as exc:
        pytest.skip(f"scikit-image wheel unavailable: {exc}")
    out = transforms.make_variants(paths, tmp_path, seed=0)
    assert len(out) == 2 * len(transforms.TRANSFORMS)
    for _, variant, _ in out:
        with Image.open(variant) as im:
            im.load()


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert realdata.main(["list"]) == 0
    text = capsys.readouterr().out
    for name in realdata.SOURCES:
        assert name in text
    with pytest.raises(SystemExit):
        realdata._resolve(["no-such-source"])
    assert realdata._resolve(["icons", "oxygen", "all"])[:2] == ["icons-oxygen", "icons-tango"]
