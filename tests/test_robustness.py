"""Bad input never stops a scan: one error per bad file, with a stable reason code, and the
other files' groups and hashes exactly as in a scan of the clean files alone. Workers that
crash (exit, segfault) or hang are replaced and cost only the file they were on."""

from __future__ import annotations

import contextlib
import csv
import ctypes
import errno
import faulthandler
import json
import multiprocessing
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import badfiles as bf
import lookalike
from conftest import WrappedExecutor
from lookalike.config import ScanConfig
from lookalike.errors import REASONS, DecodeError
from lookalike.events import NullReporter
from lookalike.executors import ProcessExecutor
from lookalike.executors.base import PerItemWork
from lookalike.executors.local import WorkerCrashed, WorkerTimeout, heartbeat
from lookalike.imaging.decode import decode_bytes
from lookalike.inputs.walk import FileEntry, iter_files
from lookalike.pipeline import scan
from lookalike.report.schema import read_report, write_report

SCAN = {"method": "phash", "threshold": 8}


# --------------------------------------------------------------------------- clean corpus

@pytest.fixture(scope="module")
def clean(tmp_path_factory, photos) -> Path:
    """Four real photos with a half-size and a JPEG copy each (4 groups), plus 2 singletons."""
    by_name = {p.stem: p for p in photos}
    names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina"]
    root = tmp_path_factory.mktemp("clean")
    for i, name in enumerate(names):
        img = Image.open(by_name[name]).convert("RGB")
        img.thumbnail((320, 320))
        if i < 4:
            d = root / f"set{i}"
            d.mkdir()
            img.save(d / "orig.png")
            img.resize((img.width // 2, img.height // 2), Image.Resampling.BICUBIC).save(
                d / "half.png")
            img.save(d / "q85.jpg", quality=85)
        else:
            img.save(root / f"alone{i}.png")
    return root


@pytest.fixture(scope="module")
def clean_result(clean) -> lookalike.ScanResult:
    result = lookalike.scan(clean, workers=1, **SCAN)
    assert result.errors == [] and len(result.groups) == 4
    return result


def _groups(result: lookalike.ScanResult, root: Path) -> list[list[str]]:
    return sorted(sorted(os.path.relpath(p, root) for p in g.paths) for g in result.groups)


def _hashes(result: lookalike.ScanResult, root: Path) -> dict[str, str]:
    return {os.path.relpath(r.path, root): str(r.hash) for r in result.records}


def _noise(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A picture unlike any other (no group forms around it)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _assert_clean_part_unchanged(result, root, clean_result, clean, skip: str = "bad") -> None:
    assert _groups(result, root) == _groups(clean_result, clean)
    mine = {k: v for k, v in _hashes(result, root).items() if not k.startswith(skip)}
    assert mine == _hashes(clean_result, clean)


# --------------------------------------------------------------------------- the corpus

def _make_bad_corpus(bad: Path, clean: Path) -> dict[str, str | frozenset[str]]:
    """Fill ``bad`` with damaged files and odd entries; return relpath -> expected reason."""
    bad.mkdir()
    png = (clean / "set0" / "orig.png").read_bytes()
    jpg = (clean / "set1" / "q85.jpg").read_bytes()
    img = Image.open(clean / "set2" / "orig.png").convert("RGB")
    gif, webp, tif = (bf.encode(img, f) for f in ("GIF", "WEBP", "TIFF"))
    dht = jpg.index(b"\xff\xc4")
    damaged = frozenset({"corrupt", "truncated"})  # random damage may also cut a chunk short
    files: dict[str, tuple[bytes, str | frozenset[str]]] = {
        "empty.jpg": (b"", "empty-file"),
        "notes.png": (b"shopping list: milk, eggs\n", "unsupported-format"),
        "page.jpg": (b"<!doctype html><html><body>404</body></html>", "unsupported-format"),
        "cut.jpg": (jpg[: len(jpg) // 2], "truncated"),
        "cut.png": (png[: len(png) // 2], "truncated"),
        "cut_header.png": (png[:30], "truncated"),
        "cut.gif": (gif[: len(gif) // 2], "truncated"),
        "cut.webp": (webp[: len(webp) // 2], "truncated"),
        "cut.tif": (tif[: len(tif) // 2], "truncated"),
        "flipped.png": (bf.with_flipped_bytes(png, 100, 5, seed=1), damaged),
        "spliced.png": (bf.splice(png, jpg, 200), damaged),
        "spliced.jpg": (bf.splice(jpg, png, 400), damaged),
        "bad_tables.jpg": (jpg[:dht + 4] + b"\xff" * 20 + jpg[dht + 24:], "corrupt"),
        "12bit.jpg": (bf.jpeg_with_precision(jpg, 12), "unsupported-format"),
        "bomb.png": (bf.png_bomb(100_000, 100_000), "too-large"),
        "bomb.jpg": (bf.jpeg_bomb(jpg), "too-large"),
        "bomb.gif": (bf.gif_bomb(), "too-large"),
        "bomb.bmp": (bf.bmp_bomb(), "too-large"),
        "bomb.tif": (bf.tiff_bomb(), "too-large"),
        "bomb.webp": (bf.webp_bomb(), "too-large"),
        os.fsdecode(b"caf\xe9-\xff.jpg"): (b"not utf-8, not an image", "unsupported-format"),
        "n" * 251 + ".jpg": (jpg[: len(jpg) // 3], "truncated"),  # a 255-byte name
    }
    expected: dict[str, str | frozenset[str]] = {}
    for name, (data, reason) in files.items():
        (bad / name).write_bytes(data)
        expected[f"bad/{name}"] = reason
    # Entries that are not files: never opened, never blocking.
    os.mkfifo(bad / "pipe.jpg")
    expected["bad/pipe.jpg"] = "not-a-regular-file"
    with contextlib.chdir(bad), socket.socket(socket.AF_UNIX) as sock:
        sock.bind("socket.png")  # relative: AF_UNIX paths are limited to ~100 bytes
    expected["bad/socket.png"] = "not-a-regular-file"
    with contextlib.suppress(PermissionError):  # needs root (CAP_MKNOD)
        os.mknod(bad / "device.jpg", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null
        expected["bad/device.jpg"] = "not-a-regular-file"
    # Links (the scan follows them): dangling, a two-link loop, a folder loop.
    os.symlink("missing.jpg", bad / "dangling.jpg")
    expected["bad/dangling.jpg"] = "broken-symlink"
    os.symlink("loop_b.jpg", bad / "loop_a.jpg")
    os.symlink("loop_a.jpg", bad / "loop_b.jpg")
    expected["bad/loop_a.jpg"] = expected["bad/loop_b.jpg"] = "symlink-loop"
    os.symlink(".", bad / "again")
    expected["bad/again"] = "symlink-loop"
    # A folder named like an image is a folder: walked, its picture hashed, no error.
    (bad / "album.jpg").mkdir()
    _noise(7).save(bad / "album.jpg" / "inside.png")
    # A tree deeper than PATH_MAX: the folder the OS refuses to list is one error.
    _deep_tree(bad / "deep")
    return expected


def _deep_tree(top: Path) -> None:
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(4200 // 250 + 1):  # each level adds 251 characters
            os.mkdir("d" * 250, dir_fd=fd)
            nxt = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        img = os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(img, bf.encode(_noise(8), "PNG"))
        os.close(img)
    finally:
        os.close(fd)


def test_bad_corpus_gives_one_error_per_file_and_leaves_the_groups_alone(
        clean, clean_result, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(clean, tree)
    expected = _make_bad_corpus(tree / "bad", clean)
    result = lookalike.scan(tree, workers=2, follow_symlinks=True, **SCAN)

    errors = [(os.path.relpath(p.path, tree), p) for p in result.errors]
    too_long = [p for rel, p in errors if rel.startswith("bad/deep/")]
    assert [p.error for p in too_long] == ["name-too-long"]
    got = {rel: p.error for rel, p in errors if not rel.startswith("bad/deep/")}
    assert len(got) + 1 == len(errors), "a file was reported twice"
    assert set(got) == set(expected)
    for rel, reason in expected.items():
        allowed = reason if isinstance(reason, frozenset) else {reason}
        assert got[rel] in allowed, (rel, got[rel], reason)
    for _, p in errors:
        assert p.error in REASONS and p.message and p.stage in ("walk", "read", "decode")
    assert result.stats["errors"] == len(errors)
    assert result.stats["errors_by_reason"] == dict(sorted(Counter(
        p.error for _, p in errors).items()))

    _assert_clean_part_unchanged(result, tree, clean_result, clean)
    assert "bad/album.jpg/inside.png" in _hashes(result, tree)


def test_bombs_are_refused_from_the_header_without_decoding(clean, monkeypatch):
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    jpg = (clean / "set1" / "q85.jpg").read_bytes()
    for data in (bf.png_bomb(100_000, 100_000), bf.jpeg_bomb(jpg), bf.gif_bomb(),
                 bf.bmp_bomb(), bf.tiff_bomb(), bf.webp_bomb()):
        with pytest.raises(DecodeError) as info:
            decode_bytes(data)
        assert info.value.reason == "too-large"
        assert "raise max_pixels" in str(info.value)
    # A lower limit applies to ordinary images too, also before decoding.
    with pytest.raises(DecodeError, match="raise max_pixels") as info:
        decode_bytes(jpg, max_pixels=10_000)
    assert info.value.reason == "too-large"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_bombs_need_no_memory_and_a_lifted_limit_fails_cleanly(clean):
    """Under a hard address-space limit, bombs are refused (not an out-of-memory crash);
    with --max-pixels lifted, the allocation fails and is still just this file's error."""
    jpg = str(clean / "set1" / "q85.jpg")
    code = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import badfiles as bf
        from lookalike.imaging.decode import decode_bytes
        from lookalike.errors import DecodeError
        jpg = open({jpg!r}, "rb").read()
        bombs = [bf.png_bomb(100_000, 100_000), bf.jpeg_bomb(jpg), bf.gif_bomb(),
                 bf.bmp_bomb(), bf.tiff_bomb(), bf.webp_bomb()]
        decode_bytes(jpg)  # load every lazily imported module before the limit
        vm = [l for l in open("/proc/self/status") if l.startswith("VmSize")][0]
        limit = int(vm.split()[1]) * 1024 + (512 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        for max_pixels in (178_956_970, 10**12):
            for data in bombs:
                try:
                    decode_bytes(data, max_pixels=max_pixels)
                    print("decoded")
                except DecodeError as e:
                    print(e.reason, "limit" if "raise max_pixels" in str(e) else "other")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")[:-1]
    assert lines[:6] == ["too-large limit"] * 6  # refused from the header: no allocation
    assert len(lines) == 12 and all(line.split()[0] in REASONS for line in lines[6:])


def test_decoding_leaves_pillows_own_limit_as_it_was(clean):
    """The limit is ours only while we decode: other code in the process keeps Pillow's."""
    before = Image.MAX_IMAGE_PIXELS
    jpg = (clean / "set1" / "q85.jpg").read_bytes()
    with pytest.raises(DecodeError):
        decode_bytes(jpg, max_pixels=1000)
    decode_bytes(jpg, max_pixels=10**10)
    assert before == Image.MAX_IMAGE_PIXELS


def test_first_frame_rule_never_reads_a_huge_later_frame():
    pic, fmt, _ = decode_bytes(bf.gif_with_huge_second_frame())
    assert fmt == "GIF" and pic.size == (2, 2)


# --------------------------------------------------------------------------- file system

def test_roots_named_by_the_user_are_followed_even_when_links(clean, tmp_path):
    os.symlink(clean, tmp_path / "photos")
    os.symlink(tmp_path / "nowhere", tmp_path / "gone.jpg")
    result = lookalike.scan([tmp_path / "photos", tmp_path / "gone.jpg"], workers=1, **SCAN)
    assert len(result.groups) == 4
    assert [(os.path.basename(p.path), p.error) for p in result.errors] == [
        ("gone.jpg", "broken-symlink")]


def test_unreadable_file_and_folder_are_permission_denied(clean, clean_result, tmp_path,
                                                          monkeypatch):
    """Tests run as root, who may read anything: EACCES is simulated where it arises."""
    tree = tmp_path / "tree"
    shutil.copytree(clean, tree)
    (tree / "bad").mkdir()
    secret = tree / "bad" / "secret.jpg"
    _noise(1).save(secret)
    locked = tree / "bad" / "locked"
    locked.mkdir()
    _noise(2).save(locked / "inside.png")
    real_open, real_scandir = os.open, os.scandir

    def fake_open(path, flags, *args, **kw):
        if os.fspath(path) == str(secret):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kw)

    def fake_scandir(path="."):
        if os.fspath(path) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "scandir", fake_scandir)
    result = lookalike.scan(tree, workers=1, **SCAN)
    assert {(os.path.relpath(p.path, tree), p.stage, p.error) for p in result.errors} == {
        ("bad/secret.jpg", "read", "permission-denied"),
        ("bad/locked", "walk", "permission-denied")}
    _assert_clean_part_unchanged(result, tree, clean_result, clean)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files; see the simulated test")
def test_mode_000_file_is_permission_denied(tmp_path):
    _noise(1).save(tmp_path / "secret.png")
    (tmp_path / "secret.png").chmod(0)
    result = lookalike.scan(tmp_path, workers=1)
    assert [p.error for p in result.errors] == ["permission-denied"]


def test_files_that_vanish_or_change_while_scanned(clean, tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    shutil.copytree(clean, tree)
    gone, growing = tree / "set0" / "half.png", tree / "set1" / "orig.png"
    entries = [e for e in iter_files([tree]) if isinstance(e, FileEntry)]

    class DeleteAfterTheWalk(NullReporter):
        def phase(self, number, total, name, size):
            if name == "hashing":
                gone.unlink()  # the walk listed it
    grown: list[int] = []
    real_fstat = os.fstat
    target = growing.stat().st_ino

    def fstat_while_written(fd):
        st = real_fstat(fd)
        if st.st_ino == target and not grown:  # another program appends during our read
            grown.append(1)
            with open(growing, "ab") as fh:
                fh.write(b"\0" * 1000)
        return st

    monkeypatch.setattr(os, "fstat", fstat_while_written)
    config = ScanConfig(**SCAN)
    result = scan([tree], config, executor=lookalike_serial(), reporter=DeleteAfterTheWalk())
    assert {os.path.relpath(p.path, tree): p.error for p in result.errors} == {
        "set0/half.png": "vanished", "set1/orig.png": "changed-during-scan"}
    assert len(result.records) == len(entries) - 2


def lookalike_serial():
    from lookalike.executors import SerialExecutor

    return SerialExecutor()


@pytest.mark.slow
def test_odd_names_round_trip_through_every_report_format(tmp_path, scene, runner):
    d = tmp_path / "names"
    d.mkdir()
    img = scene(3)
    odd = os.fsdecode(b"caf\xe9 \xff.png")
    long = "l" * 251 + ".png"
    for name in (odd, long, "plain.png"):
        img.save(d / name)
    bad = os.fsdecode(b"\xfe\xfe-broken.jpg")
    (d / bad).write_bytes(b"not an image")
    result = lookalike.scan(d, workers=1)
    (group,) = result.groups
    assert sorted(group.paths) == sorted(str(d / n) for n in (odd, long, "plain.png"))
    assert [p.path for p in result.errors] == [str(d / bad)]

    out = tmp_path / "r.json"
    write_report(result, out)
    json.loads(out.read_bytes().decode("utf-8"))  # strict UTF-8 on disk: names are escaped
    back = read_report(out)
    assert back.groups[0].paths == group.paths and back.errors == result.errors

    write_report(result, tmp_path / "r.csv", format="csv")
    with open(tmp_path / "r.csv", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        assert sorted(r["path"] for r in csv.DictReader(fh)) == sorted(group.paths)

    write_report(result, tmp_path / "r.txt", format="text")
    raw = (tmp_path / "r.txt").read_bytes()
    assert os.fsencode(str(d / odd)) in raw and os.fsencode(str(d / bad)) in raw

    # The command line: a strict UTF-8 stdout gets the names' original bytes, no crash, and
    # the CSV's errors go to a sibling file.
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "CI": "1"}
    proc = subprocess.run([sys.executable, "-m", "lookalike.cli", "scan", str(d), "-q",
                           "--no-cache", "-j", "1"], capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert os.fsencode(str(d / odd)) in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "lookalike.cli", "scan", str(d), "-q",
                           "--no-cache", "-j", "1", "-o", str(tmp_path / "cli.csv")],
                          capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    with open(tmp_path / "cli.errors.csv", encoding="utf-8", errors="surrogateescape",
              newline="") as fh:
        assert [(r["path"], r["error"]) for r in csv.DictReader(fh)] == [
            (str(d / bad), "unsupported-format")]


def test_errors_appear_in_every_report_format(runner, tmp_path, scene):
    from lookalike.cli import cli

    scene(1).save(tmp_path / "a.png")
    scene(1).save(tmp_path / "b.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "a.png").read_bytes()[:200])
    args = ["scan", str(tmp_path), "-j", "1", "-q", "--no-cache"]
    res = runner.invoke(cli, [*args, "--format", "json"])
    assert [e["error"] for e in json.loads(res.output)["errors"]] == ["truncated"]
    res = runner.invoke(cli, [*args, "--format", "text"])
    assert "[truncated]" in res.output and "1 error" in res.output
    res = runner.invoke(cli, [*args, "-o", str(tmp_path / "out.csv")])
    assert res.exit_code == 0, res.output
    assert "1 error written to" in res.output and "[truncated]" in res.output
    rows = list(csv.DictReader((tmp_path / "out.errors.csv").open()))
    assert [(r["stage"], r["error"]) for r in rows] == [("decode", "truncated")]


def test_decode_timeout_option_reaches_the_config(runner, tmp_path, scene, monkeypatch):
    from lookalike import jobs
    from lookalike.cli import cli

    seen = []
    real = jobs.scan
    monkeypatch.setattr(jobs, "scan",
                        lambda paths, config, **kw: seen.append(config) or real(paths, config,
                                                                                  **kw))
    scene(1).save(tmp_path / "a.png")
    for opt, want in (("2.5", 2.5), ("0", None)):
        res = runner.invoke(cli, ["scan", str(tmp_path), "-q", "--no-cache",
                                  "--decode-timeout", opt])
        assert res.exit_code == 0, res.output
        assert seen[-1].decode_timeout == want
    assert ScanConfig().decode_timeout == 60
    with pytest.raises(lookalike.ConfigError, match="decode_timeout"):
        ScanConfig(decode_timeout=-1)


# --------------------------------------------------------------------------- crashes, hangs

@dataclass(frozen=True, slots=True)
class Evil(PerItemWork):
    """Work whose decoder exits, segfaults or hangs on files named so (test-only)."""

    inner: Any

    @property
    def timeout(self):
        return self.inner.timeout

    def results(self, chunk):
        for entry in chunk:
            name = os.path.basename(entry.path)
            if "exit" in name:
                os._exit(7)
            if "segv" in name:
                faulthandler.disable()  # no traceback dump in the test output
                ctypes.string_at(0)  # reads address 0: SIGSEGV, as a buggy C decoder would
            if "hang" in name:
                time.sleep(600)
            yield from self.inner.results([entry])

    def gather(self, results):
        return self.inner.gather(results)


@pytest.mark.slow
def test_crashing_and_hanging_files_cost_only_themselves(clean, clean_result, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(clean, tree)
    (tree / "bad").mkdir()
    names = ["1_exit.png", "2_ok.png", "3_ok.png", "4_hang.png", "5_ok.png", "6_segv.png"]
    for i, name in enumerate(names):
        _noise(10 + i).save(tree / "bad" / name)
    config = ScanConfig(decode_timeout=2.0, **SCAN)
    t0 = time.monotonic()
    with ProcessExecutor(2) as ex:
        # Chunks of 3: the hang shares its chunk with two good files, which the timeout
        # takes down with it; the file-by-file retry must still hash them.
        result = scan([tree], config, executor=WrappedExecutor(ex, Evil), batch_size=3)
        pool = [w.process for w in ex._pool if w is not None]
    took = time.monotonic() - t0
    errors = {os.path.basename(p.path): p for p in result.errors}
    assert {n: p.error for n, p in errors.items()} == {
        "1_exit.png": "worker-crashed", "6_segv.png": "worker-crashed", "4_hang.png": "timeout"}
    assert "exit code 7" in errors["1_exit.png"].message
    assert "SIGSEGV" in errors["6_segv.png"].message
    assert "decode timeout" in errors["4_hang.png"].message
    hashed = _hashes(result, tree)
    assert {"bad/2_ok.png", "bad/3_ok.png", "bad/5_ok.png"} <= set(hashed)
    _assert_clean_part_unchanged(result, tree, clean_result, clean)
    assert 4 <= took < 40  # two rounds of a 2 s limit (chunk, then the file alone)
    assert not any(p.is_alive() for p in pool)  # closed: no worker left behind


def _pid_or_die(x: int) -> int:
    if x == 3:
        os._exit(1)
    if x == 5:
        raise ValueError("a bug in the work function")
    return os.getpid()


def test_a_dead_worker_loses_only_its_item_and_is_replaced():
    with ProcessExecutor(2) as ex:
        out = dict(ex.map_unordered(_pid_or_die, range(10)))
        again = dict(ex.map_unordered(_pid_or_die, [0, 1]))
    assert isinstance(out[3], WorkerCrashed) and "exit code 1" in str(out[3])
    assert isinstance(out[5], ValueError)  # an exception is a result, not a crash
    pids = {v for k, v in out.items() if k not in (3, 5)}
    assert len(pids) >= 2 and all(isinstance(v, int) for v in pids)
    assert all(isinstance(v, int) for v in again.values())


def _steps(job: tuple[str, int]) -> str:
    kind, n = job
    for _ in range(n):
        if kind == "beat":
            heartbeat()
        time.sleep(0.25)
    return kind


@pytest.mark.slow
def test_timeout_is_per_step_not_per_item():
    """An item that keeps calling heartbeat() may run long; one that goes quiet is killed."""
    with ProcessExecutor(2, timeout=2.0) as ex:
        out = dict(ex.map_unordered(_steps, [("beat", 16), ("quiet", 16)]))
    assert out[("beat", 16)] == "beat"  # 4 s in all, but never 2 s without a beat
    assert isinstance(out[("quiet", 16)], WorkerTimeout)


def _our_workers() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children()
            if p.name.startswith("lookalike-worker")]


@pytest.mark.slow  # 0.5 s: starts and stops worker processes
def test_a_caller_that_stops_listening_leaves_no_workers_running():
    ex = ProcessExecutor(2)
    it = ex.map_unordered(_steps, [("beat", 1), ("quiet", 400), ("quiet", 400)])
    with pytest.raises(ZeroDivisionError):
        for _ in it:
            raise ZeroDivisionError  # the caller fails while items are still in flight
    it.close()  # the generator is dropped: busy workers must not run on
    assert _our_workers() == []
    assert dict(ex.map_unordered(_steps, [("beat", 1)])) == {("beat", 1): "beat"}
    ex.close()
    assert _our_workers() == []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc")
def test_workers_exit_when_the_parent_is_killed():
    code = textwrap.dedent("""
        import os, signal, sys
        from lookalike.executors import ProcessExecutor
        from test_robustness import _pid_or_die
        ex = ProcessExecutor(3)
        pids = sorted({pid for _, pid in ex.map_unordered(_pid_or_die, [0, 1, 2, 4, 6, 7])})
        print(*pids, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=60)
    pids = [int(p) for p in out.stdout.split()]
    assert pids, out.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    alive = [p for p in pids if Path(f"/proc/{p}").exists()
             and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]
    assert alive == [], "orphaned workers kept running"


# --------------------------------------------------------------------------- fuzzing

@pytest.fixture(scope="module")
def seeds(photos) -> dict[str, bytes]:
    """Small real images in several formats: the starting points of every mutation."""
    img = Image.open(next(p for p in photos if p.stem == "chelsea")).convert("RGB")
    img.thumbnail((64, 64))
    return {"jpeg": bf.encode(img, "JPEG", quality=80),
            "progressive": bf.encode(img, "JPEG", quality=80, progressive=True),
            "png": bf.encode(img, "PNG"), "gif": bf.encode(img, "GIF"),
            "webp": bf.encode(img, "WEBP"), "tiff": bf.encode(img, "TIFF")}


class _Hang(BaseException):
    pass


@contextlib.contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    def ring(*_):
        raise _Hang(f"decoding took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


_mutation = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "cut", "splice"]),
                      st.floats(0, 1, exclude_max=True), st.integers(0, 255))


@pytest.mark.filterwarnings("ignore")  # Pillow warns about some damage it can skip
@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["jpeg", "progressive", "png", "gif", "webp", "tiff"]),
       mutations=st.lists(_mutation, min_size=1, max_size=6),
       mode=st.sampled_from(["fast", "full"]))
def test_mutated_images_only_ever_raise_decode_error(seeds, kind, mutations, mode):
    data = bytearray(seeds[kind])
    for op, where, value in mutations:
        if not data:
            break
        at = int(where * len(data))
        if op == "flip":
            data[at] ^= 1 << (value % 8)
        elif op == "set":
            data[at] = value
        elif op == "insert":
            data[at:at] = bytes([value]) * (1 + value % 7)
        elif op == "delete":
            del data[at:at + 1 + value % 64]
        elif op == "cut":
            del data[at:]
        else:  # splice in bytes of another format
            other = seeds["png" if kind != "png" else "jpeg"]
            piece = other[value:value + 64]
            data[at:at + len(piece)] = piece
    with _alarm(20):
        try:
            pic, _, _ = decode_bytes(bytes(data), mode=mode, max_pixels=1 << 22)
        except DecodeError as exc:
            assert exc.reason in REASONS
            assert str(exc)
        else:
            assert pic.size[0] > 0 and pic.size[1] > 0


def test_undecodable_names_scan_with_the_hash_cache(tmp_path, scene):
    from lookalike.store.cache import HashCache

    d = tmp_path / "names"
    d.mkdir()
    odd = os.fsdecode(b"caf\xe9 \xff.png")
    bad = os.fsdecode(b"\xfe\xfe-broken.jpg")
    for name in (odd, "plain.png"):
        scene(3).save(d / name)
    (d / bad).write_bytes(b"not an image")
    with HashCache(tmp_path / "c.sqlite") as cache:
        first = lookalike.scan(d, workers=1, cache=cache)
        again = lookalike.scan(d, workers=1, cache=cache)
    for result in (first, again):
        assert [sorted(g.paths) for g in result.groups] == [sorted([str(d / odd),
                                                                   str(d / "plain.png")])]
        assert [p.path for p in result.errors] == [str(d / bad)]
    # Names SQLite cannot store are hashed every time; the others come from the cache.
    assert (again.stats["hashed"], again.stats["from_cache"]) == (2, 1)


def test_a_file_named_inside_a_folder_it_may_not_enter_is_permission_denied(tmp_path,
                                                                            monkeypatch):
    """`scan locked/inside.jpg ok.jpg` stopped with "path does not exist" (exit 2): it
    exists, in a folder the user may not enter. Simulated (tests run as root)."""
    _noise(1).save(tmp_path / "ok.png")
    inside = str(tmp_path / "locked" / "inside.jpg")
    real_lstat, real_stat = os.lstat, os.stat

    def denied(real):
        def call(path, *a, **k):
            if os.fspath(path) == inside:
                raise PermissionError(13, "Permission denied", inside)
            return real(path, *a, **k)
        return call

    monkeypatch.setattr(os, "lstat", denied(real_lstat))
    monkeypatch.setattr(os, "stat", denied(real_stat))
    result = lookalike.scan([inside, tmp_path / "ok.png"], workers=1, **SCAN)
    assert [(p.path, p.error) for p in result.errors] == [(inside, "permission-denied")]
    assert len(result.records) == 1
    with pytest.raises(lookalike.ConfigError, match="path does not exist"):
        lookalike.scan([tmp_path / "nothere.jpg"], workers=1, **SCAN)


def test_a_tree_a_thousand_folders_deep_is_walked(tmp_path):
    """The walk recursed once per folder level: at about 1,000 levels (a 2,000-byte path,
    legal) Python's RecursionError stopped the scan with a traceback."""
    levels = [tmp_path / "t"]
    for _ in range(1200):  # one level at a time: os.makedirs recurses too
        levels.append(levels[-1] / "d")
    for level in levels:
        level.mkdir()
    try:
        _noise(1).save(levels[-1] / "a.png")
        _noise(1).save(levels[1] / "b.png")
        result = lookalike.scan(levels[0], workers=1, **SCAN)
        assert not result.errors and len(result.records) == 2
        assert [sorted(os.path.basename(p) for p in g.paths) for g in result.groups] == [
            ["a.png", "b.png"]]
    finally:  # bottom up: shutil.rmtree (pytest's clean-up of old runs) recurses too
        for level in reversed(levels):
            for f in level.glob("*.png"):
                f.unlink()
            level.rmdir()


def test_a_folder_named_in_bytes_that_are_not_utf8_scans_with_the_hash_cache(tmp_path, scene):
    """The root keys the edges the cache keeps: SQLite text is UTF-8, and such a root was a
    UnicodeEncodeError traceback (with --no-cache it worked)."""
    from lookalike.store.cache import HashCache

    root = tmp_path / os.fsdecode(b"ph\xffotos")
    root.mkdir()
    img = scene(4)
    img.save(root / "a.png")
    img.resize((150, 100)).save(root / "b.png")
    with HashCache(tmp_path / "c.sqlite") as cache:
        first = lookalike.scan(root, workers=1, cache=cache)
        again = lookalike.scan(root, workers=1, cache=cache)
    assert [sorted(g.paths) for g in first.groups] == [sorted(g.paths) for g in again.groups]
    assert len(first.groups) == 1
