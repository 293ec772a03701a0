"""The command line, in process: output, files written and exit codes."""

from __future__ import annotations

import json

import imagehash
from PIL import Image

from lookalike.cli import cli, main


def _folder(tmp_path, scene):
    img = scene(1, (180, 120))
    img.save(tmp_path / "one.png")
    img.resize((90, 60)).save(tmp_path / "one_small.png")
    scene(2).save(tmp_path / "two.png")
    return tmp_path


def test_scan_prints_a_text_summary_by_default(runner, tmp_path, scene):
    folder = _folder(tmp_path, scene)
    res = runner.invoke(cli, ["scan", str(folder), "-m", "phash", "-t", "6", "-j", "1", "-q"])
    assert res.exit_code == 0, res.output
    assert "1 duplicate groups" in res.output
    assert str(folder / "one_small.png") in res.output


def test_scan_writes_json_report_and_summary(runner, tmp_path, scene):
    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    out = tmp_path / "report.json"
    res = runner.invoke(cli, ["scan", str(folder), "-m", "phash", "-t", "6", "-o", str(out),
                              "-j", "1", "-q"])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert len(data["groups"]) == 1 and data["argv"][:2] == ["lookalike", "scan"]
    assert "report written to" in res.output


def test_scan_json_and_csv_to_stdout(runner, tmp_path, scene):
    folder = _folder(tmp_path, scene)
    res = runner.invoke(cli, ["scan", str(folder), "-m", "phash", "-t", "6", "--format",
                              "json", "-j", "1", "-q"])
    assert json.loads(res.output)["schema_version"] == 1
    res = runner.invoke(cli, ["scan", str(folder), "-m", "phash", "-t", "6", "--format",
                              "csv", "-j", "1", "-q"])
    assert res.output.splitlines()[0].startswith("group,kind,representative,path")
    assert len(res.output.splitlines()) == 3


def test_hash_command_prints_imagehash_compatible_hex(runner, tmp_path, scene):
    scene(5).save(tmp_path / "x.png")
    res = runner.invoke(cli, ["hash", str(tmp_path / "x.png"), "-m", "dhash"])
    assert res.exit_code == 0
    expected = str(imagehash.dhash(Image.open(tmp_path / "x.png")))
    assert res.output == f"{expected}  {tmp_path / 'x.png'}\n"


def test_hash_command_reports_bad_files_and_exits_1(runner, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    res = runner.invoke(cli, ["hash", str(tmp_path / "bad.jpg")])
    assert res.exit_code == 1
    assert "unsupported-format" in res.output


def _exit_code(argv):
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code
    return None


def test_exit_codes_usage_and_config_errors_are_2(tmp_path, capsys):
    assert _exit_code(["scan", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert _exit_code(["scan", str(tmp_path), "-t", "999"]) == 2
    assert "exceeds" in capsys.readouterr().err
    assert _exit_code(["scan", "--method", "bogus", str(tmp_path)]) == 2
    assert _exit_code(["scan", str(tmp_path), "-q", "-j", "1"]) == 0


def test_every_command_has_help(runner):
    for args in (["--help"], ["scan", "--help"], ["hash", "--help"], ["methods"]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 0 and res.output.strip()
    assert "--threshold" in runner.invoke(cli, ["scan", "--help"]).output
