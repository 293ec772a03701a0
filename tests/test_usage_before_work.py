"""Bad usage is one `error:` line and exit 2 before any work: no phase line, no walk.

Each case here printed "1/3: listing" (or "1/3: sampling") first, and walked or listed
before its error."""

from __future__ import annotations

import builtins
import errno
import os

import pytest

from lookalike.analysis.calibrate import _sample
from lookalike.cli import main
from lookalike.errors import Problem


def _usage_error(argv: list[str], capsys) -> str:
    """Run ``lookalike argv``: it must exit 2 with exactly one line, ``error: ...``, and no
    progress (phase lines go to stderr, so they would be a second line)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 2, (info.value.code, out, err)
    assert not out and len(err.splitlines()) == 1 and err.startswith("error: "), (out, err)
    assert "1/3" not in err
    return err


@pytest.fixture
def folder(tmp_path, scene):
    (tmp_path / "imgs").mkdir()
    scene(1).save(tmp_path / "imgs" / "a.png")
    scene(2).save(tmp_path / "imgs" / "b.png")
    return tmp_path / "imgs"


@pytest.mark.parametrize(("fmt", "said"), [("tar", "no .tar shards under"),
                                           ("parquet", "no Parquet files under")])
def test_a_folder_without_the_containers_asked_for_is_refused_before_the_phase_line(
        folder, capsys, fmt, said):
    err = _usage_error(["scan", str(folder), "--input-format", fmt, "--no-cache"], capsys)
    assert said in err, err


def test_a_file_list_holding_nul_bytes_is_refused_before_the_phase_line(folder, tmp_path,
                                                                        capsys):
    listed = tmp_path / "list.txt"
    listed.write_bytes(f"{folder / 'a.png'}\n".encode() + b"\x00\x01binary\n")
    err = _usage_error(["scan", "--files-from", str(listed), "--no-cache"], capsys)
    assert "holds NUL bytes" in err, err


def test_an_unreadable_file_list_is_refused_before_the_phase_line(folder, tmp_path, capsys,
                                                                  monkeypatch):
    listed = tmp_path / "list.txt"
    listed.write_text(f"{folder / 'a.png'}\n")
    real = builtins.open

    def fake(file, *args, **kwargs):  # chmod 000 stops no root: refuse the open itself
        if isinstance(file, str | os.PathLike) and os.fspath(file) == str(listed):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake)
    err = _usage_error(["scan", str(folder), "--files-from", str(listed), "--no-cache"],
                       capsys)
    assert "cannot read the file list" in err and "Permission denied" in err, err


def test_a_good_file_list_still_starts_with_the_phase_line(folder, tmp_path, capsys):
    listed = tmp_path / "list.txt"
    listed.write_text(f"{folder / 'a.png'}\n")
    with pytest.raises(SystemExit) as info:
        main(["scan", "--files-from", str(listed), "--no-cache", "-j", "1"])
    out, err = capsys.readouterr()
    assert info.value.code == 0, (out, err)
    assert err.splitlines()[0] == "1/3: listing", err
    assert out.startswith("1 image scanned")


@pytest.mark.parametrize("what", ["empty folder", "one image"])
def test_calibrate_with_fewer_than_two_images_is_refused_before_the_phase_line(
        tmp_path, scene, capsys, what):
    if what == "empty folder":
        target, found = tmp_path / "empty", 0
        target.mkdir()
    else:
        target, found = tmp_path / "one.png", 1
        scene(1).save(target)
    err = _usage_error(["calibrate", str(target)], capsys)
    assert f"needs at least 2 images; found {found}" in err, err


class _Recorder:
    def __init__(self) -> None:
        self.said: list[str] = []

    def phase(self, number: int, total: int, name: str, size: int | None) -> None:
        self.said.append(f"{number}/{total}: {name}")

    def problem(self, problem: Problem) -> None:
        self.said.append(f"[{problem.error}] {os.path.basename(problem.path)}")

    def info(self, message: str) -> None:
        self.said.append(message)

    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def test_calibrate_says_its_phase_once_two_images_are_found_and_every_problem(
        tmp_path, scene, monkeypatch):
    """The phase line waits for the second image; what the walk could not list before it
    is told after it, in walk order, and nothing is lost when the phase never comes."""
    real = os.scandir
    locked = {str(tmp_path / "0_locked"), str(tmp_path / "z_locked")}

    def scandir(path="."):
        if os.fspath(path) in locked:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    for name in locked:
        os.mkdir(name)
    scene(1).save(tmp_path / "a.png")
    rec = _Recorder()
    _entries, found, problems = _sample([tmp_path], 10, 0, False, rec)
    assert found == 1 and [p.error for p in problems] == ["permission-denied"] * 2
    assert rec.said == ["[permission-denied] 0_locked", "[permission-denied] z_locked"]
    scene(2).save(tmp_path / "b.png")
    rec = _Recorder()
    _entries, found, problems = _sample([tmp_path], 10, 0, False, rec)
    assert found == 2 and len(problems) == 2
    assert rec.said == ["1/3: sampling", "[permission-denied] 0_locked",
                        "[permission-denied] z_locked"]
