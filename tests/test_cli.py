"""The command line, in process: output, files written and exit codes."""

from __future__ import annotations

import json
import os

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


def test_warm_scan_writes_the_same_report_and_summary_as_the_cold_one(runner, tmp_path, scene):
    import gc

    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    folder = _folder(tmp_path / "imgs", scene)
    scene(3).save(folder / "sub" / "three.png")
    scene(3).save(folder / "sub" / "three_copy.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    db = tmp_path / "c.sqlite"
    thresholds = gc.get_threshold()
    outputs, reports = [], []
    for run in ("cold", "warm"):
        out = tmp_path / f"{run}.json"
        res = runner.invoke(cli, ["scan", str(folder), "-m", "phash", "-t", "6", "-j", "1",
                                  "-q", "--cache", str(db), "-o", str(out)])
        assert res.exit_code == 0, res.output
        outputs.append(res.output.replace(str(out), "OUT"))
        data = json.loads(out.read_text())
        for key in ("created", "argv"):
            data.pop(key)
        seconds = data["stats"].pop("seconds")
        assert set(seconds) == {"walk", "hash", "group", "total"}
        reports.append(data)
        assert gc.get_threshold() == thresholds  # the scan's GC settings are undone
        assert not gc.get_freeze_count()
    cold, warm = reports
    assert (cold["stats"].pop("hashed"), warm["stats"].pop("hashed")) == (6, 0)
    assert (cold["stats"].pop("from_cache"), warm["stats"].pop("from_cache")) == (0, 6)
    # Group members are digested once, then their digests come from the cache.
    digested = (cold["stats"].pop("digested"), warm["stats"].pop("digested"))
    assert digested[0] == sum(len(g["members"]) for g in cold["groups"]) and not digested[1]
    # The cold scan stored its grouping; the warm one, reading only cached rows, reused it.
    reused = (cold["stats"].pop("grouping_from_cache"), warm["stats"].pop("grouping_from_cache"))
    assert reused == (False, True)
    assert warm == cold and len(cold["groups"]) == 2 and len(cold["errors"]) == 1
    assert outputs[0] == outputs[1]


def test_method_choices_come_from_the_constant():
    from lookalike.cli import _method_choices
    from lookalike.hashes import METHODS

    assert _method_choices() == list(METHODS)


def test_quiet_reporter_never_creates_a_console():
    from lookalike.cli import ConsoleReporter

    rep = ConsoleReporter(quiet=True)
    assert not rep.show_progress and rep._console is None
    rep.phase(1, 3, "walking", None)
    rep.info("hello")
    rep.close()
    assert rep._console is None
    assert ConsoleReporter(quiet=False, progress=False).console is not None


def test_main_defaults_openblas_to_one_thread_but_keeps_a_users_choice(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert _exit_code(["methods"]) == 0
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert _exit_code(["methods"]) == 0
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"


def test_scan_leaves_objects_frozen_by_the_host_process_frozen(runner, tmp_path, scene):
    import gc

    folder = _folder(tmp_path, scene)
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        res = runner.invoke(cli, ["scan", str(folder), "-m", "phash", "-j", "1", "-q"])
        assert res.exit_code == 0, res.output
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
