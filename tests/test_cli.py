"""The command line, in process: output, files written and exit codes."""

from __future__ import annotations

import io
import json
import os
import re

import imagehash
import pytest
from PIL import Image

import lookalike
from lookalike.cli import cli, main
from lookalike.config import ScanConfig
from lookalike.errors import ConfigError, Problem


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
    assert "1 duplicate group," in res.output
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


def test_hash_names_what_is_wrong_with_each_path(runner, tmp_path, scene):
    scene(1).save(tmp_path / "ok.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "link.png")
    (tmp_path / "sub").mkdir()
    res = runner.invoke(cli, ["hash", *(str(tmp_path / n) for n in (
        "ok.png", "missing.jpg", "link.png", "sub"))])
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert "[not-found]" in next(x for x in lines if "missing.jpg" in x)
    assert "[broken-symlink]" in next(x for x in lines if "link.png" in x)
    assert "a folder" in next(x for x in lines if x.rstrip().endswith("sub") or "sub:" in x)
    assert sum("ok.png" in x and not x.startswith("error") for x in lines) == 1


def test_a_file_list_with_a_nul_byte_or_a_missing_path_is_one_line_each(tmp_path, scene,
                                                                       capsys):
    """A binary file given as the list ended in a ValueError traceback; then an image named
    as the list gave a hundred "holds a NUL byte" lines, one per line of its bytes. No path
    holds a NUL byte: such a file is no list (one usage line, exit 2, nothing hashed); a
    missing path in a list is that path's line."""
    scene(1).save(tmp_path / "ok.png")
    listing = tmp_path / "list.txt"
    for names in (("ok.png", "a\0b.jpg", "missing.png"), ("ok.png\0missing.png",)):
        listing.write_bytes(b"\n".join(os.fsencode(tmp_path / n) for n in names) + b"\n")
        code = _exit_code(["scan", "--files-from", str(listing), "-q", "-j", "1", "--no-cache"])
        out, err = capsys.readouterr()
        assert code == 2 and not out and err.count("\n") == 1, err
        assert f"the file list {listing} holds NUL bytes" in err
    for given in (tmp_path / "ok.png", "/dev/zero"):  # an image; a device (read forever)
        code = _exit_code(["scan", "--files-from", str(given), "-q", "-j", "1", "--no-cache"])
        out, err = capsys.readouterr()
        assert code == 2 and not out and err.count("\n") == 1, err
    listing.write_text(f"{tmp_path / 'ok.png'}\n{tmp_path / 'missing.png'}\n")
    code = _exit_code(["scan", "--files-from", str(listing), "-q", "-j", "1", "--no-cache"])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err
    assert "1 image scanned" in out and "1 error" in out and "[not-found]" in out


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
    assert "more than half the 256 bits" in capsys.readouterr().err
    assert _exit_code(["scan", "--method", "bogus", str(tmp_path)]) == 2
    assert _exit_code(["scan", str(tmp_path), "-q", "-j", "1"]) == 0


def test_a_column_no_input_has_is_refused_before_any_work(tmp_path, capsys):
    # It was silently ignored on a folder: the user meant some column and got a plain scan.
    (tmp_path / "list.txt").write_text(str(tmp_path / "missing.png") + "\n")
    for extra in (["--column", "image"], ["--name-column", "name"],
                  ["--files-from", str(tmp_path / "list.txt"), "--column", "path"]):
        assert _exit_code(["scan", str(tmp_path), "-q", "-o", str(tmp_path / "r.json"),
                           *extra]) == 2
        err = capsys.readouterr().err
        assert "applies only to Parquet inputs" in err and "leave it out" in err
        assert not (tmp_path / "r.json").exists()


def test_every_command_has_help(runner):
    for args in (["--help"], ["scan", "--help"], ["hash", "--help"], ["methods"]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 0 and res.output.strip()
    assert "--threshold" in runner.invoke(cli, ["scan", "--help"]).output
    # Every option says what it does (`query --format` said nothing).
    import click

    bare = [(name, p.opts) for name, command in cli.commands.items() for p in command.params
            if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert bare == []


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
    # The cold scan searched every hash value; the warm one kept its edges: no search.
    new = (cold["stats"].pop("codes_new"), warm["stats"].pop("codes_new"))
    assert new[0] > 0 and new[1] == 0
    assert warm == cold and len(cold["groups"]) == 2 and len(cold["errors"]) == 1
    assert outputs[0] == outputs[1]


def test_every_method_option_offers_the_registrys_methods():
    from lookalike.imaging.hashes import METHODS

    offered = {name: list(p.type.choices) for name, cmd in cli.commands.items()
               for p in cmd.params if p.name == "method"}
    assert set(offered) == {"scan", "hash", "query", "calibrate"}
    assert all(choices == list(METHODS) for choices in offered.values()), offered


def test_quiet_reporter_never_creates_a_console():
    from lookalike.cli import ConsoleReporter

    rep = ConsoleReporter(quiet=True)
    assert not rep.show_progress and rep._console is None
    rep.phase(1, 3, "walking", None)
    rep.info("hello")
    rep.close()
    assert rep._console is None
    assert ConsoleReporter(quiet=False, progress=False).console is not None


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


# --------------------------------------------------------------- bad usage: one line, exit 2


def _usage_error(argv, capsys):
    """Run ``lookalike argv``; it must exit 2 with exactly one line, on stderr."""
    code = _exit_code(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and not out
    return err


@pytest.mark.parametrize(("argv", "said"), [
    (["scan", "-t", "abc", "."], "'abc' is not a valid integer"),
    (["scan", "--bogus", "."], "No such option '--bogus'"),
    (["scan", "-m", "bogus", "."], "'bogus' is not one of"),
    (["scan", "--similarity", "2", "."], "not in the range"),
    (["undo"], "Missing argument 'JOURNAL'"),
    (["scan", "-t"], "Option '-t' requires an argument"),
    (["apply", "r.json"], "Missing option '--action' / '-a'. Choose from: move, delete,"),
    (["frobnicate"], "No such command 'frobnicate'"),
])
def test_click_usage_errors_are_one_line_too(argv, said, capsys):
    # Click's own parse errors printed four lines (usage, a hint, a blank, the error); now
    # one, as every other error, naming where the help is.
    err = _usage_error(argv, capsys)
    assert said in err and "--help`)" in err


def test_a_bare_command_still_shows_the_help(capsys):
    code = _exit_code([])
    out, err = capsys.readouterr()
    assert code in (0, 2) and "Commands:" in out + err and "scan" in out + err


def test_an_unwritable_output_path_fails_before_the_scan(tmp_path, scene, capsys):
    folder = _folder(tmp_path, scene)
    cache = tmp_path / "c.sqlite"
    (tmp_path / "a_file").write_text("x")
    scan = ["scan", str(folder), "-q", "-j", "1", "--cache", str(cache)]
    for option in ("-o", "--html"):
        for path, why in ((tmp_path / "no" / "such" / "r.json", "does not exist"),
                          (tmp_path / "a_file" / "r.json", "is a file, not a folder"),
                          (tmp_path, "is a folder")):
            err = _usage_error([*scan, option, str(path)], capsys)
            assert why in err and str(path) in err
    assert not cache.exists()  # nothing was scanned


def test_no_output_overwrites_a_picture_an_input_or_another_output(tmp_path, scene, capsys):
    """`scan photos -o photos/one.png` replaced the photo with the report; --html equal to
    -o left only the page, `report r.json --html r.json` destroyed the report."""
    folder = tmp_path / "photos"
    folder.mkdir()
    _folder(folder, scene)
    report = tmp_path / "r.json"
    listing = tmp_path / "list.txt"
    listing.write_text(str(folder / "one.png") + "\n")
    cache = tmp_path / "c.sqlite"
    scan = ["scan", str(folder), "-q", "-j", "1", "--cache", str(cache)]
    before = {p: p.read_bytes() for p in folder.iterdir()}
    cases = [
        ([*scan, "-o", str(folder / "one.png"), "--format", "json"], "an image file"),
        ([*scan, "--html", str(folder / "two.png")], "an image file"),
        ([*scan, "-o", str(report), "--html", str(report)], "overwrite the report"),
        (["scan", "--files-from", str(listing), "-q", "-j", "1", "--cache", str(cache), "-o",
          str(listing), "--format", "json"], "overwrite the file list"),
        (["scan", str(folder / "one.png"), str(folder / "two.png"), "-q", "-o",
          str(folder / "two.png"), "--format", "json"], "overwrite the scanned file"),
        (["scan", "--reference", str(listing), str(folder), "-q", "-o", str(listing),
          "--format", "json"], "overwrite the scanned file"),  # a reference shard, say
    ]
    for argv, why in cases:
        assert why in _usage_error(argv, capsys)
    assert not cache.exists()  # refused before any work
    assert {p: p.read_bytes() for p in folder.iterdir()} == before
    assert listing.read_text() == str(folder / "one.png") + "\n"
    assert _exit_code(["scan", str(folder), "-q", "-j", "1", "--cache", str(cache), "-o",
                       str(report)]) == 0
    capsys.readouterr()
    kept = report.read_bytes()
    assert "overwrite the report" in _usage_error(["report", str(report), "--html", str(report)],
                                                  capsys)
    assert report.read_bytes() == kept
    # The hash cache the command uses, and its Parquet output, are no targets either: -o onto
    # the cache replaced it with the report (the next scan failed), a Parquet output named
    # like the report failed after all the hashing.
    warm = cache.read_bytes()
    for extra in (["-o", str(cache), "--format", "json"], ["--html", str(cache)]):
        err = _usage_error([*scan, *extra], capsys)
        assert "overwrite the hash cache" in err
    same = str(tmp_path / "same.json")
    err = _usage_error([*scan, "-o", same, "--parquet-out", same], capsys)
    assert "overwrite the Parquet output" in err
    for target in (listing, listing / "x" / "y"):  # a file, or a file on the way to it
        err = _usage_error([*scan, "--parquet-out", str(target)], capsys)
        assert "Parquet output" in err and "is a file" in err
    assert "an empty path" in _usage_error([*scan, "--parquet-out", ""], capsys)
    assert cache.read_bytes() == warm and report.read_bytes() == kept
    # Its missing parents are made, as the store always made them.
    assert _exit_code([*scan, "--parquet-out", str(tmp_path / "new" / "run1")]) == 0
    assert any((tmp_path / "new" / "run1").glob("*.parquet"))


def test_check_writable_refuses_a_folder_without_write_permission(tmp_path, monkeypatch):
    import pytest

    from lookalike.config import check_writable
    from lookalike.errors import ConfigError

    assert check_writable(tmp_path / "r.json") == str(tmp_path / "r.json")
    # Tests run as root, which may write anywhere: make the probe write fail as it would.
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(ConfigError, match="Permission denied"):
        check_writable(tmp_path / "r.json", "report")
    assert not list(tmp_path.iterdir())  # the probe leaves nothing behind


def test_hash_size_out_of_the_methods_range_fails_before_hashing(tmp_path, scene, capsys):
    folder = _folder(tmp_path, scene)
    cache = tmp_path / "c.sqlite"
    err = _usage_error(["scan", str(folder), "-m", "dhash", "--hash-size", "128", "-q", "-j",
                        "1", "--cache", str(cache)], capsys)
    assert "hash_size 128" in err and "dhash" in err and "2..32" in err
    err = _usage_error(["scan", str(folder), "-m", "whash", "--hash-size", "12"], capsys)
    assert "power of two" in err
    assert not cache.exists()


def test_methods_lists_the_sizes_each_method_accepts(runner):
    """The README sends users to `lookalike methods` for the --hash-size range; it listed
    only the default size."""
    from lookalike.config import method_spec

    out = runner.invoke(cli, ["methods"]).output
    rows = [line.split() for line in out.splitlines()[1:] if line.split()[0] in
            ("ahash", "phash", "dhash", "dhash-v", "dhash-z", "whash", "colorhash",
             "crop-resistant", "pdq")]
    assert len(rows) == 9
    for name, _, sizes, *_ in rows:
        spec = method_spec(name)
        if ".." in sizes:
            low, high = map(int, sizes.split(".."))
            listed = range(low, high + 1)
            assert not spec.accepts(low - 1) and not spec.accepts(high + 1), name
        else:
            listed = [int(s) for s in sizes.split(",")]
        assert all(spec.accepts(s) for s in listed), name
        assert not any(spec.accepts(s) for s in range(1, 65) if s not in listed), name


@pytest.mark.parametrize("command", ["scan", "hash", "query", "calibrate"])
def test_an_unreadable_file_named_on_the_command_line_is_one_files_problem(
        tmp_path, scene, capsys, monkeypatch, command):
    """click's own check ("Path 'x.jpg' is not readable", exit 2) stopped the whole run
    before any work, where a folder's or a list's unreadable file is one line and the run
    goes on. The check is os.access, simulated here (tests may run as root)."""
    import os

    scene(1).save(tmp_path / "locked.png")
    scene(2).save(tmp_path / "ok.png")
    locked = str(tmp_path / "locked.png")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if str(p) == locked
                        else real(p, mode, *a, **k))
    argv = [command, locked, str(tmp_path / "ok.png")]
    if command in ("scan", "query"):
        db = tmp_path / "c.sqlite"
        if command == "query":
            with pytest.raises(SystemExit):
                main(["scan", str(tmp_path / "ok.png"), "-q", "-j", "1", "--cache", str(db)])
        argv += ["--cache", str(db)]
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert "not readable" not in err
    assert info.value.code in (0, 1), (out, err)


def test_a_threshold_above_the_bit_count_fails_before_hashing(tmp_path, scene, capsys):
    folder = _folder(tmp_path, scene)
    err = _usage_error(["scan", str(folder), "-m", "dhash", "-t", "120", "-q", "-j", "1"],
                       capsys)
    assert "120" in err and "64 bits" in err
    # The library's own message names the setting, not a command-line flag.
    import pytest

    from lookalike.errors import ConfigError

    with pytest.raises(ConfigError, match="threshold 120 is more than half the 64 bits") as info:
        ScanConfig(method="dhash", threshold=120)
    assert "--" not in str(info.value)


def test_an_unknown_output_extension_is_refused_unless_format_is_given(tmp_path, scene,
                                                                       capsys):
    folder = _folder(tmp_path, scene)
    out = tmp_path / "r.xml"
    err = _usage_error(["scan", str(folder), "-q", "-j", "1", "-m", "phash", "-o", str(out)],
                       capsys)
    assert ".json, .csv or .txt" in err and "--format" in err and not out.exists()
    assert _exit_code(["scan", str(folder), "-q", "-j", "1", "-m", "phash", "-o", str(out),
                       "--format", "json"]) == 0
    assert json.loads(out.read_text())["schema_version"] == 1
    page = tmp_path / "r.html"
    capsys.readouterr()
    err = _usage_error(["scan", str(folder), "-q", "-o", str(page)], capsys)
    assert f"--html {page}" in err and not page.exists()


def test_undo_of_a_file_that_is_not_a_journal_is_one_line_exit_2(tmp_path, scene, capsys):
    scene(1).save(tmp_path / "image.png")
    (tmp_path / "report.json").write_text('{"schema_version": 1, "groups": []}\n')
    (tmp_path / "list.json").write_text("[1, 2, 3]\n")
    (tmp_path / "notes.txt").write_text("hello\nworld\n")
    (tmp_path / "folder").mkdir()
    for name, why in (("image.png", "not a lookalike journal"),
                      ("report.json", "not a lookalike journal"),
                      ("list.json", "not a lookalike journal"),
                      ("notes.txt", "not a lookalike journal"),
                      ("missing.jsonl", "not found"),
                      ("folder", "is a folder")):
        err = _usage_error(["undo", str(tmp_path / name)], capsys)
        assert why in err and "the undo journal (.jsonl) that applying the plan wrote" in err, err
    assert (tmp_path / "image.png").exists() and (tmp_path / "folder").is_dir()


@pytest.mark.slow
def test_a_reader_that_closes_stdout_early_costs_no_file(tmp_path, scene):
    import subprocess
    import sys

    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    html, report, listing = tmp_path / "r.html", tmp_path / "r.json", tmp_path / "r.csv"
    read, write = os.pipe()
    os.close(read)  # like `| head -1` that has already exited: every write to stdout fails
    try:
        for extra in (["--html", str(html), "-o", str(report)], ["-o", str(listing)]):
            proc = subprocess.run(
                [sys.executable, "-c", "from lookalike.cli import main; main()", "scan",
                 str(folder), "-m", "phash", "-t", "6", "-q", "-j", "1", "--no-cache", *extra],
                stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
            assert "Traceback" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
            assert proc.returncode == 1  # quietly: stdout failed, every file is written
    finally:
        os.close(write)
    assert json.loads(report.read_text())["schema_version"] == 1
    assert "<html" in html.read_text().lower()
    assert listing.read_text().startswith("group,")


def test_a_reader_that_closes_stderr_early_costs_no_file(tmp_path, scene):
    # `lookalike scan ... 2>&1 | head -1`: progress lines go to stderr from the first phase.
    import subprocess
    import sys

    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    html, report = tmp_path / "r.html", tmp_path / "r.json"
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from lookalike.cli import main; main()", "scan",
             str(folder), "-j", "1", "--no-cache", "--html", str(html), "-o", str(report)],
            stdout=subprocess.DEVNULL, stderr=write, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 0
    assert json.loads(report.read_text())["schema_version"] == 1
    assert "<html" in html.read_text().lower()


# ------------------------------------------------- thin commands: main alone maps exit codes


def test_only_main_exits():
    # Commands raise; main is the one place that turns outcomes into exit codes.
    import ast
    from pathlib import Path

    import lookalike.cli
    import lookalike.jobs

    for module in (lookalike.cli, lookalike.jobs):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        exits = [f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                 for n in ast.walk(f) if isinstance(n, ast.Attribute) and n.attr == "exit"]
        assert exits == (["main"] if module is lookalike.cli else []), module.__name__


def test_a_file_that_cannot_be_hashed_exits_1_after_the_others(tmp_path, scene, capsys):
    scene(5).save(tmp_path / "x.png")
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    code = _exit_code(["hash", str(tmp_path / "bad.jpg"), str(tmp_path / "x.png")])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.endswith(f"  {tmp_path / 'x.png'}\n")  # the good file is still hashed
    assert "[unsupported-format]" in err and "error: 1 of 2 files could not be hashed" in err


def test_bad_numbers_are_refused_with_the_flag_name_before_any_work(tmp_path, scene, capsys):
    folder = _folder(tmp_path, scene)
    cache = tmp_path / "c.sqlite"
    scan = ["scan", str(folder), "-q", "--cache", str(cache)]
    for flag, value in (("--workers", "0"), ("--retries", "-1"), ("--batch-size", "0"),
                        ("--max-pixels", "0"), ("--decode-timeout", "-1")):
        assert _exit_code([*scan, flag, value]) == 2, flag
        err = capsys.readouterr().err
        assert f"Invalid value for '{flag}'" in err and value in err, err
    assert _exit_code(["calibrate", str(folder), "--sample", "1"]) == 2
    assert "'--sample'" in capsys.readouterr().err
    assert not cache.exists()  # nothing was scanned


def test_config_messages_name_settings_not_flags():
    import pytest

    from lookalike.errors import ConfigError

    for bad in ({"workers": 0}, {"max_pixels": 0}, {"decode_timeout": -1.0},
                {"invariant": "sideways"}, {"grouping": "rings"}, {"decode": "some"}):
        with pytest.raises(ConfigError) as info:
            ScanConfig(**bad)
        assert next(iter(bad)) in str(info.value) and "--" not in str(info.value), bad


def test_scan_to_files_writes_every_view_and_prints_only_to_its_stream(tmp_path, scene, capsys):
    # The scan command's steps, called from Python: every file, then the summary on `out`.
    import io

    from lookalike.jobs import errors_csv_path, scan_to_files

    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    (folder / "broken.png").write_bytes(b"not a png")
    out, listing, page = io.StringIO(), tmp_path / "r.csv", tmp_path / "r.html"
    result = scan_to_files([str(folder)], ScanConfig(method="phash", threshold=6, workers=1),
                           output=str(listing), format="csv", html=str(page),
                           use_cache=False, out=out)
    assert len(result.groups) == 1 and len(result.errors) == 1
    assert listing.read_text().startswith("group,") and "<html" in page.read_text().lower()
    assert "broken.png" in (tmp_path / errors_csv_path("r.csv")).read_text()
    assert json.loads((tmp_path / "r.json").read_text())["schema_version"] == 1  # for the page
    text = out.getvalue()
    assert text.startswith("3 images scanned, 1 duplicate group, 1 duplicate "), text
    assert text.rstrip().endswith(f"HTML report written to {page}")
    assert capsys.readouterr() == ("", "")


def test_a_csv_reports_error_list_is_always_this_scans_and_named_csv(tmp_path, scene):
    """A later CSV scan without errors left the earlier scan's NAME.errors.csv beside the
    new report; `--format csv -o a.json` named its error list a.errors.json."""
    import csv as csv_module

    from lookalike.jobs import errors_csv_path, scan_to_files

    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    (folder / "broken.png").write_bytes(b"not a png")
    config = ScanConfig(method="phash", threshold=6, workers=1)
    report = tmp_path / "r.csv"
    scan_to_files([str(folder)], config, output=str(report), format="csv", use_cache=False,
                  out=io.StringIO())
    assert "broken.png" in (tmp_path / "r.errors.csv").read_text()
    (folder / "broken.png").unlink()
    scan_to_files([str(folder)], config, output=str(report), format="csv", use_cache=False,
                  out=io.StringIO())
    rows = list(csv_module.reader((tmp_path / "r.errors.csv").open()))
    assert rows == [["path", "stage", "error", "message"]]
    assert errors_csv_path("a.json") == "a.errors.csv"
    assert errors_csv_path("A.CSV") == "A.errors.CSV"


def test_names_holding_a_carriage_return_stay_one_csv_field(tmp_path, scene):
    """A lone CR in a name was written bare (Python's writer quotes only the characters of
    its line terminator, then \\n): readers split the row in two (names review)."""
    import csv as csv_module

    from lookalike.jobs import scan_to_files

    folder = tmp_path / "imgs"
    folder.mkdir()
    scene(1).save(folder / "car\rriage.png")
    scene(1).resize((100, 75)).save(folder / "small\rcopy.png")
    (folder / "bro\rken.png").write_bytes(b"not a png")
    config = ScanConfig(method="phash", threshold=6, workers=1)
    scan_to_files([str(folder)], config, output=str(tmp_path / "r.csv"), format="csv",
                  use_cache=False, out=io.StringIO())
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv_module.DictReader(fh))
    assert sorted(os.path.basename(r["path"]) for r in rows) == ["car\rriage.png",
                                                                 "small\rcopy.png"]
    with open(tmp_path / "r.errors.csv", newline="") as fh:
        (error,) = csv_module.DictReader(fh)
    assert os.path.basename(error["path"]) == "bro\rken.png"


def test_interrupted_apply_exits_130_and_says_how_to_undo_or_finish(tmp_path, scene, capsys,
                                                                    monkeypatch):
    import lookalike.actions.apply
    from lookalike.actions.apply import apply

    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    before = sorted(p.name for p in folder.iterdir())
    report, journal = tmp_path / "r.json", tmp_path / "j.jsonl"
    assert _exit_code(["scan", str(folder), "-m", "phash", "-t", "6", "-q", "-j", "1",
                       "--no-cache", "-o", str(report)]) == 0

    class CtrlC:  # a reporter that is interrupted at the first file operation
        def __getattr__(self, name):
            return lambda *a, **k: None

        def advance(self, n=1):
            raise KeyboardInterrupt

    monkeypatch.setattr(lookalike.actions.apply, "apply",
                        lambda plan, **kw: apply(plan, **{**kw, "reporter": CtrlC()}))
    capsys.readouterr()
    code = _exit_code(["apply", str(report), "-a", "move", "--to", str(tmp_path / "q"),
                       "--yes", "--journal", str(journal), "-q"])
    err = capsys.readouterr().err
    assert code == 130
    assert f"`lookalike undo {journal}`" in err and f"--journal {journal}" in err
    assert _exit_code(["undo", str(journal), "-q"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == before


def _terminal(monkeypatch, columns: int) -> None:
    """Make Rich see a terminal of ``columns`` columns on stderr (the progress bar shows)."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", str(columns))


def _bar_lines(err: str) -> list[str]:
    """The progress bar's rendered lines, without terminal control sequences."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err).replace("\r", "\n")
    return [ln for ln in plain.splitlines() if "2/3: hashing" in ln]


def test_interrupted_is_printed_on_a_line_of_its_own(tmp_path, scene, capsys, monkeypatch):
    import lookalike.jobs

    def ctrl_c(paths, config, *, reporter, **kw):
        reporter.phase(2, 3, "hashing", 10)
        reporter.advance(3)
        raise KeyboardInterrupt

    monkeypatch.setattr(lookalike.jobs, "scan_to_files", ctrl_c)
    _terminal(monkeypatch, 120)
    scene(1).save(tmp_path / "a.png")
    assert _exit_code(["scan", str(tmp_path), "--no-cache"]) == 130
    err = capsys.readouterr().err
    assert _bar_lines(err), err  # the bar was shown
    assert not any("interrupted" in ln for ln in _bar_lines(err))
    assert "\ninterrupted\n" in err.replace("\r", "\n")


def test_problem_lines_above_a_live_bar_are_printed_together_and_all(capsys, monkeypatch):
    """Each problem line redrew the bar: 20k unreadable files took 20 s on a terminal, 3 s
    piped. Lines now wait up to HOLD_S and print together; none is lost, in order."""
    from lookalike import cli as cli_module
    from lookalike.cli import ConsoleReporter

    _terminal(monkeypatch, 100)
    now = [0.0]
    monkeypatch.setattr(cli_module.time, "monotonic", lambda: now[0])
    rep = ConsoleReporter()
    rep.phase(2, 3, "hashing", 1000)
    printed = []
    real = rep.console.print
    monkeypatch.setattr(rep.console, "print", lambda *a, **k: printed.append(a) or real(*a, **k))
    for i in range(500):
        rep.problem(Problem(path=f"/x/{i}.jpg", stage="read", error="empty-file",
                            message="the file has 0 bytes"))
        now[0] += 0.001  # 500 lines in 0.5 s: a few prints, not 500
    rep.advance(10)
    rep.close()
    assert 2 <= len(printed) <= 5, len(printed)
    err = capsys.readouterr().err
    assert [int(n) for n in re.findall(r"/x/(\d+)\.jpg", err)] == list(range(500))


@pytest.mark.parametrize("columns", [80, 160])
def test_the_progress_bar_uses_the_terminal_width_and_keeps_the_counts(capsys, monkeypatch,
                                                                       columns):
    from lookalike.cli import ConsoleReporter

    _terminal(monkeypatch, columns)
    rep = ConsoleReporter()
    assert rep.show_progress and rep.console.width == columns
    for name in ("hashing", "grouping: exact re-hash of near matches"):
        rep.phase(2, 3, name, 20000)
        rep.advance(9067)
    rep.close()
    err = capsys.readouterr().err
    lines = _bar_lines(err.replace("2/3: grouping", "2/3: hashing"))
    final = [ln for ln in lines if "9067/20000  45%" in ln]  # the counts are never cut
    assert len(final) >= 2 and "grouping: " in err, lines
    for ln in lines:
        assert re.search(r" \d+/20000 +\d+% .* ETA ", ln), ln
        assert len(ln.rstrip()) > columns - 5  # the line fills the terminal: the bar grows
    if columns == 160:
        assert all(ln.count("━") > 40 for ln in final)  # wider than Rich's fixed 40


@pytest.mark.parametrize("columns", [20, 40, 60])
def test_a_narrow_terminal_keeps_the_counts_and_drops_the_rest(capsys, monkeypatch, columns):
    """At 40 columns the counts were cut to "1…", at 20 nothing could be read."""
    from lookalike.cli import ConsoleReporter

    _terminal(monkeypatch, columns)
    rep = ConsoleReporter()
    rep.phase(2, 3, "hashing", 20000)
    rep.advance(9067)
    rep.close()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", capsys.readouterr().err).replace("\r", "\n")
    final = [ln for ln in plain.splitlines() if "9067/20000" in ln]
    assert final and all(len(ln.rstrip()) <= columns for ln in final), final
    assert all("45%" in ln for ln in final) or columns < 30


def test_the_rate_and_eta_are_the_phases_average_not_its_last_samples(monkeypatch):
    """Two workers delivering their first batches together made Rich's windowed speed
    319/s (ETA 0:00:03) where the scan ran at 6/s."""
    from lookalike.cli import ConsoleReporter

    _terminal(monkeypatch, 120)
    now = [100.0]
    rep = ConsoleReporter()
    monkeypatch.setattr(rep.console, "get_time", lambda: now[0])
    rep.phase(2, 3, "hashing", 800)
    now[0] += 8.0
    rep.advance(16)
    now[0] += 0.01
    rep.advance(16)
    fields = rep._progress.tasks[0].fields
    rep.close()
    assert fields["rate"] == "4/s" and fields["eta"] == "0:03:12", fields


def test_a_phase_of_unknown_size_is_one_line_not_a_frozen_spinner(capsys, monkeypatch):
    """Walking and grouping drew a bar whose counter never moved ("0/?") and whose spinner
    stayed frozen on screen after the phase."""
    from lookalike.cli import ConsoleReporter

    _terminal(monkeypatch, 100)
    rep = ConsoleReporter()
    rep.phase(1, 3, "walking", None)
    rep.phase(2, 3, "hashing", 10)
    rep.advance(10)
    rep.close()
    err = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", capsys.readouterr().err)
    assert "1/3: walking\n" in err and "0/?" not in err


def test_a_warm_rescan_does_not_say_it_hashes_the_cached_files(tmp_path, scene, capsys):
    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    cache = tmp_path / "c.sqlite"
    args = ["scan", str(folder), "-j", "1", "--cache", str(cache)]
    assert _exit_code(args) == 0
    cold = capsys.readouterr().err
    assert "2/3: hashing (3 files)" in cold
    assert _exit_code(args) == 0
    warm = capsys.readouterr().err
    assert "2/3: hashing" in warm and "hashing (3 files)" not in warm


def test_scan_format_paths_lists_the_files_to_remove_for_xargs(runner, tmp_path, scene):
    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    common = ["scan", str(folder), "-m", "phash", "-t", "6", "-j", "1", "-q", "--no-cache"]
    report = tmp_path / "r.json"
    assert runner.invoke(cli, [*common, "-o", str(report)]).exit_code == 0
    (group,) = json.loads(report.read_text())["groups"]
    removed = sorted({m["path"] for m in group["members"]} - set(group["keep"]))
    res = runner.invoke(cli, [*common, "--format", "paths"])
    assert res.exit_code == 0 and res.output == "".join(f"{p}\n" for p in removed)
    res = runner.invoke(cli, [*common, "--format", "paths0"])
    assert res.exit_code == 0 and res.output == "".join(f"{p}\0" for p in removed)
    out = tmp_path / "remove.txt"
    res = runner.invoke(cli, [*common, "--format", "paths", "-o", str(out)])
    assert res.exit_code == 0 and out.read_text() == "".join(f"{p}\n" for p in removed)
    assert "report written to" in res.output  # the summary goes to stdout, not the list


def test_a_missing_folder_is_one_line_before_any_progress(tmp_path, capsys):
    for command in ("scan", "calibrate"):
        err = _usage_error([command, str(tmp_path / "missing")], capsys)
        assert "path does not exist" in err


def test_contradicting_options_are_refused_before_any_work(tmp_path, scene, capsys):
    (tmp_path / "photos").mkdir()
    folder = _folder(tmp_path / "photos", scene)
    out = tmp_path / "r.json"
    for extra, why in ((["--exact-decode", "--decode", "fast"], "--exact-decode means"),
                       (["--no-cache", "--cache", str(tmp_path / "c.sqlite")],
                        "contradict each other")):
        assert _exit_code(["scan", str(folder), "-o", str(out), *extra]) == 2
        assert why in capsys.readouterr().err
        assert not out.exists() and not (tmp_path / "c.sqlite").exists()
    assert _exit_code(["scan", str(folder), "-q", "--exact-decode", "--no-cache"]) == 0


def test_applying_a_csv_report_says_it_needs_the_json_one(tmp_path, scene, capsys):
    folder = _folder(tmp_path, scene)
    report = tmp_path / "report.json"
    assert _exit_code(["scan", str(folder), "-q", "--format", "csv", "-o", str(report)]) == 0
    capsys.readouterr()
    err = _usage_error(["apply", str(report), "-a", "move", "--to", str(tmp_path / "q")],
                       capsys)
    assert "is not JSON" in err and "CSV and text reports cannot be applied" in err


def test_a_move_without_its_folder_names_the_option(tmp_path, scene, capsys):
    folder = _folder(tmp_path, scene)
    report = tmp_path / "report.json"
    assert _exit_code(["scan", str(folder), "-q", "-o", str(report)]) == 0
    capsys.readouterr()
    err = _usage_error(["apply", str(report), "-a", "move"], capsys)
    assert "--action move needs --to DIR" in err  # it named the library's argument `to`


def test_embedding_settings_without_a_model_are_refused(tmp_path, scene, capsys):
    folder = _folder(tmp_path, scene)
    for extra in (["--similarity", "0.5"], ["--no-verify"]):
        assert _exit_code(["scan", str(folder), "-q", *extra]) == 2
        assert "matches only; name an embedding model" in capsys.readouterr().err
        assert _exit_code(["query", str(folder / "one.png"), "--cache",
                           str(tmp_path / "c.sqlite"), *extra]) == 2
        assert "matches only; name an embedding model" in capsys.readouterr().err
    # The library refuses them as the command line does (it accepted them, unused).
    for kw in ({"similarity": 0.5}, {"verify": False}):
        with pytest.raises(ConfigError, match="applies to embedding matches"):
            lookalike.scan(folder, **kw)


def test_a_scan_that_reads_no_image_exits_1_and_says_why(tmp_path, scene, capsys):
    (tmp_path / "a.png").write_bytes(b"not a picture")
    listing = tmp_path / "list.txt"
    listing.write_text("missing/one.png\nmissing/two.png\n")
    assert _exit_code(["scan", str(tmp_path), "-q"]) == 1
    assert "no image could be read: 1 file failed" in capsys.readouterr().err
    assert _exit_code(["scan", "--files-from", str(listing), "-q"]) == 1
    assert "relative paths in a --files-from list" in capsys.readouterr().err
    scene(1).save(tmp_path / "b.png")
    assert _exit_code(["scan", str(tmp_path), "-q"]) == 0  # one bad file among good ones


def test_a_relative_file_list_is_an_absolute_root_in_the_report(tmp_path, scene, monkeypatch):
    _folder(tmp_path, scene)
    (tmp_path / "list.txt").write_text("one.png\none_small.png\ntwo.png\n")
    monkeypatch.chdir(tmp_path)
    assert _exit_code(["scan", "--files-from", "list.txt", "-q", "-o", "r.json"]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["roots"] == [str(tmp_path / "list.txt")] and len(data["groups"]) == 1


def test_the_summary_after_a_written_report_shortens_large_groups(tmp_path, scene, capsys):
    from lookalike.jobs import SUMMARY_MEMBERS

    folder = tmp_path / "photos"
    folder.mkdir()
    img = scene(3, (120, 90))
    for k in range(SUMMARY_MEMBERS + 4):
        img.save(folder / f"copy{k:02d}.png")
    assert _exit_code(["scan", str(folder), "-q", "-o", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    shown = [line for line in out.splitlines() if "copy" in line and ".png" in line]
    assert len(shown) in (SUMMARY_MEMBERS, SUMMARY_MEMBERS + 1)  # + the keeper, if later
    assert any(line.lstrip().startswith("*") for line in shown)
    assert f"... {SUMMARY_MEMBERS + 4 - len(shown)} more members in the report" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["groups"][0]["members"]) == SUMMARY_MEMBERS + 4


def test_without_a_terminal_a_long_phase_prints_its_counts_now_and_then(capsys, monkeypatch):
    from lookalike import cli as cli_module
    from lookalike.cli import ConsoleReporter

    clock = iter([0.0, 10.0, 31.0, 40.0, 65.0])
    monkeypatch.setattr(cli_module.time, "monotonic", lambda: next(clock))
    rep = ConsoleReporter(progress=False)
    rep.phase(2, 3, "hashing", 1000)
    for _ in range(4):
        rep.advance(100)
    rep.close()
    err = capsys.readouterr().err.splitlines()
    assert err == ["2/3: hashing (1000 files)", "2/3: hashing: 200/1,000 (20%)",
                   "2/3: hashing: 400/1,000 (40%)"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_a_deeply_nested_file_given_as_a_report_or_journal_is_one_line(tmp_path,
                                                                                  capsys):
    # A FIFO hung undo, apply and report (a blocking open); '[' * 100000 ended in
    # RecursionError's traceback.
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for path in (fifo, deep):
        for argv in (["undo", str(path)], ["apply", str(path), "-a", "delete"],
                     ["report", str(path), "--html", str(tmp_path / "o.html")]):
            err = _usage_error(argv, capsys)
            assert str(path) in err or path.name in err
    assert not (tmp_path / "o.html").exists()


def test_the_dry_run_refuses_what_yes_would_refuse(tmp_path, scene, capsys, monkeypatch):
    # A journal inside the scanned folder, or in a folder that does not exist (which --yes
    # created), and a quarantine that cannot be written all passed the dry run (exit 0).
    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    report = tmp_path / "r.json"
    assert _exit_code(["scan", str(folder), "-q", "-j", "1", "--no-cache", "-o",
                       str(report)]) == 0
    capsys.readouterr()
    move = ["apply", str(report), "-a", "move", "--to", str(tmp_path / "q")]
    for journal, why in ((folder / "j.jsonl", "inside the scanned folder"),
                         (tmp_path / "none" / "j.jsonl", "does not exist")):
        for yes in ([], ["--yes"]):
            err = _usage_error([*move, "--journal", str(journal), *yes], capsys)
            assert why in err
    assert not (tmp_path / "none").exists() and not (tmp_path / "q").exists()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(tmp_path)
                        else real_access(p, mode, **kw))  # a read-only mount, simulated
    err = _usage_error(move, capsys)
    assert "cannot be made or written" in err
    monkeypatch.setattr(os, "access", real_access)
    # A journal named inside the quarantine the run makes is fine (a move's default one
    # lives there too).
    assert _exit_code([*move, "--journal", str(tmp_path / "q" / "j.jsonl")]) == 0
    capsys.readouterr()
    # Not the quarantine itself, nor where a moved file goes: every move failed then.
    assert "the quarantine folder" in _usage_error([*move, "--journal", str(tmp_path / "q")],
                                                   capsys)
    dst = lookalike.plan(report, action="move", to=tmp_path / "q").operations[0].dst
    assert "a moved file" in _usage_error([*move, "--journal", dst], capsys)
    # Nor a folder a moved file goes into (Q/imgs: the journal file took its name).
    err = _usage_error([*move, "--journal", os.path.dirname(dst)], capsys)
    assert "a moved file or its folder" in err


def test_file_list_names_keep_their_spaces_and_an_empty_keep_rule_is_refused(tmp_path, scene,
                                                                             capsys):
    # "a.png " (a legal name) was read as "a.png"; --keep "" (an unset variable) silently
    # meant the default policy.
    scene(1).save(tmp_path / "a.png ", format="PNG")  # the stripped line named a.png: none
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my picks\n\n   # indented, still a comment\n{tmp_path / 'a.png '}\n")
    report = tmp_path / "r.json"
    assert _exit_code(["scan", "--files-from", str(listing), "-q", "--no-cache", "-o",
                       str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["stats"]["images"] == 1 and not data["errors"]
    capsys.readouterr()
    err = _usage_error(["scan", str(tmp_path), "-q", "--no-cache", "--keep", ""], capsys)
    assert "keep rule '' is empty" in err


def test_file_list_names_keep_a_carriage_return_and_windows_line_ends_are_taken_off(
        tmp_path, scene):
    # A name holding CR (which --format paths writes) was split into two missing paths.
    scene(1).save(tmp_path / "car\rriage.png", format="PNG")
    scene(2).save(tmp_path / "b.png")
    for text, want in ((f"{tmp_path / 'car'}\rriage.png\n", 1),
                       (f"{tmp_path / 'b.png'}\r\n{tmp_path / 'car'}\rriage.png\r\n", 2),
                       # a blank line or comment added on Linux keeps the CRLF list CRLF
                       (f"{tmp_path / 'b.png'}\r\n# mine\n{tmp_path / 'car'}\rriage.png\r\n\n",
                        2),
                       # a path added on Linux (echo path >> list) to a list written on
                       # Windows: every CRLF line was then kept whole, not found (review)
                       (f"{tmp_path / 'b.png'}\r\n{tmp_path / 'car'}\rriage.png\r\n"
                        f"{tmp_path / 'b.png'}\n", 2),
                       # Notepad's byte-order mark made the first path "not found" (review)
                       (f"\ufeff{tmp_path / 'b.png'}\r\n{tmp_path / 'car'}\rriage.png\r\n", 2)):
        listing = tmp_path / "list.txt"
        listing.write_bytes(text.encode())
        result = lookalike.scan(files_from=str(listing), workers=1)
        assert (result.stats["images"], result.errors) == (want, []), text


def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, scene, capsys,
                                                                 monkeypatch):
    # `lookalike scan "$DIR"` with DIR unset scanned the current folder (and a report of
    # it is what apply acts on).
    monkeypatch.chdir(tmp_path)
    scene(1).save(tmp_path / "a.png")
    for argv in (["scan", "", "--no-cache", "-q"], ["scan", " ", "--no-cache", "-q"],
                 ["calibrate", ""], ["scan", "--reference", "", ".", "--no-cache", "-q"],
                 ["scan", "", "--input-format", "tar", "--no-cache", "-q"],
                 ["scan", "", "--input-format", "parquet", "--no-cache", "-q"],
                 ["scan", ".", "--files-from", "", "--no-cache", "-q"]):
        err = _usage_error(argv, capsys)
        assert "a path is empty" in err, (argv, err)
    with pytest.raises(lookalike.ConfigError, match="a path is empty"):
        lookalike.scan("")
    with pytest.raises(lookalike.ConfigError, match="a path is empty"):
        lookalike.dedupe_dataset({"train": "", "test": "."})
    assert not list(tmp_path.glob("*.json"))


def test_inputs_refused_without_listing_are_refused_before_any_progress_line(tmp_path, scene,
                                                                              capsys):
    # "1/3: listing" came first, then the error: not one line before any work.
    scene(1).save(tmp_path / "a.png")
    for extra, why in ((["--files-from", str(tmp_path / "missing.txt")], "does not exist"),
                       (["--files-from", str(tmp_path)], "is a folder"),
                       (["--column", "x"], "applies only to Parquet inputs"),
                       (["--name-column", "y"], "applies only to Parquet inputs")):
        err = _usage_error(["scan", str(tmp_path), "--no-cache", *extra], capsys)
        assert why in err, (extra, err)


def test_engine_local_with_a_scheduler_and_a_report_inside_the_parquet_output_are_refused(
        tmp_path, scene, capsys):
    scene(1).save(tmp_path / "a.png")
    # --engine local with --scheduler ran on the scheduler's cluster without a word.
    assert _exit_code(["scan", str(tmp_path), "--engine", "local", "--scheduler",
                       "tcp://127.0.0.1:9", "-q", "--no-cache"]) == 2
    assert "--engine local and --scheduler contradict" in capsys.readouterr().err
    # A report inside the Parquet output is read back as a part of it: the folder broke.
    out = tmp_path / "po"
    err = _usage_error(["scan", str(tmp_path / "a.png"), "--parquet-out", str(out),
                        "-o", str(out / "r.json"), "-q", "--no-cache"], capsys)
    assert "would be written inside the Parquet output" in err and not out.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_hash_prints_odd_names_as_scan_does_and_names_each_kind_of_bad_path(runner, tmp_path,
                                                                             scene):
    """`hash` printed a name with a terminal escape as another name once piped (click strips
    escapes), a newline split its line; a symbolic link loop was "a missing target", a FIFO
    or socket an unreadable file."""
    import socket

    scene(1).save(tmp_path / "\x1b[31mred.png")
    scene(1).save(tmp_path / "new\nline.png")
    os.symlink(tmp_path / "loop2.png", tmp_path / "loop1.png")
    os.symlink(tmp_path / "loop1.png", tmp_path / "loop2.png")
    os.mkfifo(tmp_path / "pipe.png")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock.png"))
        names = ["\x1b[31mred.png", "new\nline.png", "loop1.png", "pipe.png", "sock.png"]
        res = runner.invoke(cli, ["hash", *(str(tmp_path / n) for n in names)])
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert lines[0].endswith(f"  {tmp_path}/\\x1b[31mred.png")
    assert lines[1].endswith(f"  {tmp_path}/new\\nline.png")
    assert lines[0].split()[0] == lines[1].split()[0]  # the same picture
    assert [line.split()[1] for line in lines[2:5]] == [
        "[symlink-loop]", "[not-a-regular-file]", "[not-a-regular-file]"]


def test_a_folder_with_a_saved_datasets_metadata_is_scanned_as_files_when_asked(tmp_path,
                                                                                scene, capsys):
    """A photo folder holding a dataset_dict.json was taken for a damaged saved dataset, and
    `--input-format files` was refused for a saved dataset: it could not be scanned."""
    folder = tmp_path / "photos"
    folder.mkdir()
    scene(1).save(folder / "a.png")
    scene(1).save(folder / "b.png")
    (folder / "dataset_dict.json").write_text('{"splits": ["train"]}')
    code = _exit_code(["scan", str(folder), "--input-format", "files", "-q", "--no-cache"])
    out, err = capsys.readouterr()
    assert code == 0 and "1 duplicate group" in out, (out, err)
    result = lookalike.scan(folder, input_format="files", workers=1)
    assert [sorted(os.path.basename(p) for p in g.paths) for g in result.groups] == [
        ["a.png", "b.png"]]


def test_error_lines_escape_what_a_name_holds(tmp_path, scene, capsys):
    # A newline or a terminal escape in a name split the one-line error, or reached the
    # terminal (the names review): `undo NAME` and query's per-file lines.
    odd = tmp_path / "new\nline\x1b[31m.jsonl"
    odd.write_text("{}\n")
    code = _exit_code(["undo", str(odd)])
    err = capsys.readouterr().err
    assert code != 0 and len(err.splitlines()) == 1, err
    assert "\x1b" not in err and "new\\nline\\x1b[31m" in err
    scene(1).save(tmp_path / "a.png")
    cache = tmp_path / "c.sqlite"
    assert _exit_code(["scan", str(tmp_path / "a.png"), "-q", "--cache", str(cache)]) == 0
    bad = tmp_path / "bad\nname\x1b]0;x\x07.png"
    bad.write_bytes(b"not an image")
    capsys.readouterr()
    assert _exit_code(["query", str(bad), "--cache", str(cache)]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "bad\\nname" in err
    assert all(line.startswith("error") for line in err.splitlines()), err


def test_python_dash_m_lookalike_runs_the_command(tmp_path):
    # Where the `lookalike` script is not on PATH (a venv not activated, a notebook).
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "lookalike", "--version"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0 and out.stdout.startswith("lookalike, version "), out
    bad = subprocess.run([sys.executable, "-m", "lookalike", "scan", str(tmp_path / "nope")],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad


def test_an_output_that_is_a_pipe_or_a_link_is_written_through_not_replaced(tmp_path, scene,
                                                                             capsys):
    # os.replace over the output turned `-o /dev/null` (as root) into a regular file for
    # every program on the machine; a named pipe and a symbolic link were replaced too.
    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    # The read end open first (without waiting for a writer): the report (a few KB) fits in
    # the pipe's buffer, read once the scan is done.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        base = ["scan", str(folder), "-j", "1", "-q", "--no-cache"]
        assert _exit_code([*base, "-o", str(fifo)]) == 0
        got = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert fifo.is_fifo() and json.loads(got)["schema_version"] == 1
    real, link = tmp_path / "real.json", tmp_path / "link.json"
    real.write_text("old")
    link.symlink_to(real.name)
    assert _exit_code([*base, "-o", str(link)]) == 0
    assert link.is_symlink() and json.loads(real.read_text())["schema_version"] == 1
    capsys.readouterr()


def test_format_with_a_page_and_no_report_file_goes_to_stdout_in_that_format(tmp_path, scene,
                                                                            capsys):
    # `--format paths --html PAGE | xargs rm` got the text summary, kept files included.
    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    page = tmp_path / "page.html"
    assert _exit_code(["scan", str(folder), "-m", "phash", "-t", "6", "-j", "1", "-q",
                       "--no-cache", "--format", "paths", "--html", str(page)]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines() == [str(folder / "one_small.png")]
    assert page.is_file() and (tmp_path / "page.json").is_file()
    assert _exit_code(["scan", str(folder), "-m", "phash", "-t", "6", "-j", "1",
                       "--no-cache", "--format", "json", "--html", str(page)]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)["groups"]) == 1 and "HTML report written to" in err


def test_a_closed_stdout_is_one_line_when_the_report_would_go_there(tmp_path, scene, capsys,
                                                                   monkeypatch):
    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    monkeypatch.setattr("sys.stdout", None)  # what Python sets when started with `>&-`
    assert _exit_code(["scan", str(folder), "-j", "1", "-q", "--no-cache"]) == 2
    assert "standard output is closed" in capsys.readouterr().err
    report = tmp_path / "r.json"
    assert _exit_code(["scan", str(folder), "-j", "1", "-q", "--no-cache", "-o",
                       str(report)]) == 0
    assert json.loads(report.read_text())["schema_version"] == 1


def test_an_unwritable_parquet_output_names_the_users_folder(tmp_path, monkeypatch):
    from lookalike.store import parquet

    def refuse(path, what="output file"):
        raise ConfigError(f"cannot write the {what} {path}: Permission denied")

    monkeypatch.setattr(parquet, "check_writable", refuse)
    with pytest.raises(ConfigError) as err:
        parquet.check_output_folder(str(tmp_path / "pq"))
    assert str(tmp_path / "pq") in str(err.value) and ".lookalike-probe" not in str(err.value)


def test_a_report_to_stdout_by_name_is_the_report_alone(tmp_path, scene):
    # `-o /dev/stdout` got the JSON report and then the text summary: no JSON reader took it.
    import subprocess
    import sys

    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    res = subprocess.run([sys.executable, "-m", "lookalike", "scan", str(folder), "-q", "-j",
                          "1", "--no-cache", "--format", "json", "-o", "/dev/stdout"],
                         capture_output=True, text=True, check=True)
    assert json.loads(res.stdout)["schema_version"] == 1


def test_nothing_is_written_beside_a_pipe_and_a_page_must_be_a_file(tmp_path, scene, capsys,
                                                                   monkeypatch):
    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # one error for the CSV's list
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert _exit_code(["scan", str(folder), "-j", "1", "-q", "--no-cache", "--format",
                           "csv", "-o", str(fifo)]) == 0
        assert os.read(reader, 1 << 16).startswith(b"group,")
    finally:
        os.close(reader)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "pipe.csv"]
    assert _exit_code(["scan", str(folder), "-j", "1", "-q", "--no-cache", "--html",
                       str(fifo)]) == 2
    assert "must be a file" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdout", None)  # and paths for stdout with stdout closed
    assert _exit_code(["scan", str(folder), "-j", "1", "-q", "--no-cache", "--format", "paths",
                       "--html", str(tmp_path / "p.html")]) == 2
    assert "standard output is closed" in capsys.readouterr().err


def test_a_library_scan_checks_its_parquet_output_before_any_work(tmp_path, scene):
    # The check ran on the command line's path only: scan() hashed everything, then raised a
    # plain NotADirectoryError.
    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file"):
        lookalike.scan(folder, workers=1, parquet_out=str(tmp_path / "a.jpg" / "out"))


def test_a_page_named_like_a_json_report_is_refused(tmp_path, scene, capsys):
    # The page took the name (an earlier report there became HTML), the JSON r.json.json.
    (tmp_path / "imgs").mkdir()
    folder = _folder(tmp_path / "imgs", scene)
    earlier = tmp_path / "r.json"
    earlier.write_text('{"schema_version": 1}')
    assert _exit_code(["scan", str(folder), "-q", "--no-cache", "--html", str(earlier)]) == 2
    assert str(earlier) in capsys.readouterr().err
    assert earlier.read_text() == '{"schema_version": 1}'
    report = tmp_path / "real.json"
    assert _exit_code(["scan", str(folder), "-q", "--no-cache", "-o", str(report)]) == 0
    capsys.readouterr()
    assert _exit_code(["report", str(report), "--html", str(earlier)]) == 2
    assert "named like a JSON report" in capsys.readouterr().err
    assert earlier.read_text() == '{"schema_version": 1}'
