"""The JSON report contract, CSV and text views, and reading reports back."""

from __future__ import annotations

import csv
import json
import os
import re

import pytest

import lookalike
from lookalike.report.schema import (
    SCHEMA_VERSION,
    decide_keep,
    read_report,
    remove_paths,
    render_text,
    write_report,
)


@pytest.fixture
def result(tmp_path, scene):
    img = scene(1, (200, 150))
    img.save(tmp_path / "a.png")
    img.resize((100, 75)).save(tmp_path / "b.png")
    img.save(tmp_path / "c.jpg", quality=95)
    scene(2).save(tmp_path / "other.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return lookalike.scan(tmp_path, method="phash", threshold=6, workers=1)


def test_json_report_follows_the_contract(result, tmp_path):
    out = tmp_path / "r.json"
    write_report(result, out, argv=["lookalike", "scan", "x"])
    data = json.loads(out.read_text())
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert data["tool"]["name"] == "lookalike"
    assert data["config"]["method"] == "phash" and data["config"]["threshold"] == 6
    assert data["roots"] == [str(tmp_path)]
    assert data["argv"] == ["lookalike", "scan", "x"]
    (group,) = data["groups"]
    assert group["representative"] == str(tmp_path / "a.png")
    for m in group["members"]:
        assert {"path", "hash", "distance", "width", "height", "bytes", "format"} <= set(m)
        assert os.path.isabs(m["path"])
    (err,) = data["errors"]
    assert err["path"] == str(tmp_path / "broken.png")
    assert {"path", "stage", "error", "message"} <= set(err)
    assert data["stats"]["images"] == 4 and data["stats"]["errors"] == 1


def test_report_reads_back_into_typed_groups(result, tmp_path):
    out = tmp_path / "r.json"
    write_report(result, out)
    back = read_report(out)
    assert [g.paths for g in back.groups] == [g.paths for g in result.groups]
    assert [str(m.record.hash) for m in back.groups[0].members] == [
        str(m.record.hash) for m in result.groups[0].members]
    assert back.errors == result.errors


def test_csv_has_one_row_per_member_with_group_id(result, tmp_path):
    out = tmp_path / "r.csv"
    write_report(result, out, format="csv")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == sum(len(g) for g in result.groups)
    assert {r["group"] for r in rows} == {"1"}
    assert sum(int(r["representative"]) for r in rows) == 1
    kept = decide_keep(result).keep(1)
    assert [r["path"] for r in rows if r["keep"] == "1"] == list(kept) and len(kept) == 1
    assert "set" not in rows[0] and "purge" not in rows[0]  # leakage reports only


@pytest.mark.parametrize(("fmt", "end"), [("paths", "\n"), ("paths0", "\0")])
def test_paths_format_lists_every_member_not_kept(result, tmp_path, fmt, end):
    out = tmp_path / "remove.txt"
    write_report(result, out, format=fmt)
    listed = out.read_text().split(end)
    assert listed[-1] == ""  # each path is terminated, the last one too
    (group,) = result.groups
    kept = decide_keep(result).keep(group.id)
    assert listed[:-1] == sorted(set(group.paths) - set(kept)) and len(listed) == 3
    # another policy, other paths: the list follows the keep decisions
    smallest = min(group.members, key=lambda m: m.record.size_bytes).record.path
    assert remove_paths(result, keep="smallest-file") == sorted(set(group.paths) - {smallest})
    assert smallest in listed


def test_text_report_lists_groups_and_errors(result, tmp_path):
    out = tmp_path / "r.txt"
    write_report(result, out, format="text")
    text = out.read_text()
    assert "1 duplicate group, 2 duplicates " in text and "1 error" in text and "broken.png" in text
    assert "group 1 (near, 3 images)" in text and "1 file could not be used" in text
    assert "symlink" not in text


def test_text_report_mentions_skipped_symlinks_once(tmp_path, scene):
    (tmp_path / "photos").mkdir()
    scene(1).save(tmp_path / "photos" / "a.png")
    scene(2).save(tmp_path / "elsewhere.png")
    for n in (1, 2):
        os.symlink(tmp_path / "elsewhere.png", tmp_path / "photos" / f"link{n}.png")
    text = render_text(lookalike.scan(tmp_path / "photos", workers=1))
    assert text.startswith("1 image scanned, 0 duplicate groups, 0 duplicates ")
    assert text.count("skipped") == 1 and "skipped 2 symlinks found inside the folders" in text


@pytest.mark.parametrize(
    ("content", "match"),
    [("{", "is not JSON"), ('{"schema_version": 99}', "schema version"),
     ('{"schema_version": 1, "groups": [{"id": 1, "representative": "x", "members": '
      '[{"path": "relative.jpg", "hash": "00", "bytes": 1}, {"path": "/y.jpg", "hash": "00", '
      '"bytes": 1}]}]}', "relative path"),
     ('{"schema_version": 1, "groups": [{"id": 1, "representative": "/x.jpg", "members": '
      '[{"path": "/x.jpg", "hash": "00", "bytes": 1}, {"path": "/x.jpg", "hash": "00", '
      '"bytes": 1}]}]}', "group 1 lists a path twice")],
)
def test_bad_reports_are_rejected_with_a_clear_error(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(lookalike.ReportError, match=match):
        read_report(p)


def _two(**extra) -> list[dict]:
    return [{"path": "/a.jpg", "hash": "00", "bytes": 1, **extra},
            {"path": "/b.jpg", "hash": "00", "bytes": 1}]


@pytest.mark.parametrize(("edit", "match"), [
    (lambda d: d.update(roots=None), None),  # absent: fine
    (lambda d: d.update(roots=[5]), "'roots' is not a list of text"),
    (lambda d: d.update(keep_policy={"rules": 5}), "'keep_policy.rules' is not a list"),
    (lambda d: d.update(keep_policy={"protect": "/x"}), "'keep_policy.protect' is not a"),
    (lambda d: d.update(leakage={"reference": "/x"}), "'leakage.reference' is not a"),
    (lambda d: d.update(roots="/a"), "'roots' is a str, not a list"),
    (lambda d: d.update(config="dhash"), "'config' is a str, not a dict"),
    (lambda d: d.update(keep_policy="none"), "'keep_policy' is a str"),
    (lambda d: d.update(leakage=[]), "'leakage' is a list"),
    (lambda d: d["groups"][0].update(members=[]), "fewer than two members"),
    (lambda d: d["groups"][0].update(members=_two(hash=123)), "'hash' that is not hex"),
    (lambda d: d["config"].update(nbits="abc"), "'config.nbits' is 'abc'"),
    (lambda d: d["config"].update(threshold="6"), "'config.threshold' is '6'"),
    (lambda d: d.update(stats={"bytes_reclaimable": "x"}), "'stats.bytes_reclaimable'"),
    (lambda d: d["groups"].append(dict(d["groups"][0], members=[
        *_two(path="/c.jpg")[:1], {"path": "/d.jpg", "hash": "00", "bytes": 1}])),
     "is another group's"),
    (lambda d: d["groups"][0].update(members=_two(source=5)), "'source' that is not a path"),
    (lambda d: d["groups"][0].update(members=_two(path="/a\0.jpg")), "NUL byte"),
    (lambda d: d["groups"][0].update(members=_two(aliases="/c.jpg")), "not text"),
    (lambda d: d["groups"][0].update(members=_two(aliases=5)), "not text"),  # was a TypeError
    (lambda d: d["groups"][0].update(members=_two(format=5)), "'format' that is not text"),
    (lambda d: d["config"].update(nbits=None), None),  # absent: fine (was a TypeError)
    (lambda d: d.update(schema_version=True), "schema version 1 (found True)"),
    (lambda d: d.update(schema_version=1.0), "schema version 1 (found 1.0)"),
    (lambda d: d["groups"][0].update(members=_two(match="trust me")), "unknown 'match'"),
    # From a review of report consumers: each crashed `report` or `apply` (a traceback), or
    # got past the edited-keep-list check (a string keep planned moving the file to keep).
    (lambda d: d["groups"][0].update(keep="/a.jpg"), "'keep' that is not a list of paths"),
    (lambda d: d["groups"][0].update(members=_two(digest=["x"])), "'digest' that is not"),
    (lambda d: d["groups"][0].update(members=_two(bytes=float("inf"))), "'bytes' of inf"),
    (lambda d: d["groups"][0].update(members=_two(bytes=1.5)), "'bytes' of 1.5"),
    (lambda d: d["groups"][0].update(representative=5), "'representative' that is not"),
    (lambda d: d.update(tool="lookalike 0.1.0"), "'tool' is a str, not an object"),
    (lambda d: d.update(stats={"images": None}), "'stats.images' is None"),
    # A method or size no scan has was applied as if it were one (42 moves planned).
    (lambda d: d["config"].update(method="nope"), "unknown hash method 'nope'"),
    (lambda d: d["config"].update(hash_size=999), "its config: hash_size 999 is out of range"),
    (lambda d: d["config"].update(nbits=8), "'config.nbits' is 8, but dhash of size 8 has 64"),
    # The review page drew a bar per distance: 10**30 of them ran the machine out of memory.
    (lambda d: d["groups"][0]["members"][1].update(distance=10**30), "not 0 to 64 bits"),
    (lambda d: d["groups"][0]["members"][1].update(distance=-1), "not 0 to 64 bits"),
    (lambda d: (d.pop("config"), d["groups"][0]["members"][1].update(distance=10**30)),
     "a 'distance' of 10000"),
    # A report without its settings, or a member or group without a field reading needs,
    # was "malformed report (ValueError: segment value 0x... does not fit in 64 bits)",
    # "(KeyError: 'bytes')" or "(TypeError: int() argument must be ...)": name the field.
    (lambda d: (d.pop("config"), d["groups"][0].update(members=_two(hash="ab" * 32))),
     "it has no 'config' (the scan's settings, its hash method among them)"),
    (lambda d: (d["config"].pop("method"), d["config"].pop("nbits"),
                d["groups"][0].update(members=_two(hash="ab" * 32))),
     "it has no 'config.method' (the scan's hash method)"),
    (lambda d: d["groups"][0]["members"][1].pop("bytes"), "group 1: /b.jpg has no 'bytes'"),
    (lambda d: d["groups"][0]["members"][1].update(bytes=None),
     "group 1: /b.jpg has a 'bytes' of null"),
    (lambda d: d["groups"][0]["members"][1].update(width=None),
     "group 1: /b.jpg has a 'width' of null"),
    (lambda d: d["groups"][0]["members"][1].update(distance=None), "a 'distance' of null"),
    (lambda d: d["groups"][0]["members"][1].update(mtime_ns=None), "a 'mtime_ns' of null"),
    (lambda d: d["groups"][0].pop("representative"), "group 1 has no 'representative'"),
    (lambda d: d["groups"][0].update(representative=None), "group 1 has no 'representative'"),
    (lambda d: d["config"].pop("method"), None),  # its hashes fit: read (as before)
    (lambda d: [m.update(match="embedding") for m in d["groups"][0]["members"]],
     "no member matched by its hash"),
    (lambda d: d["groups"].append({"id": 2, "representative": "/a.jpg",
                                   "members": _two(path="/c.jpg")[::-1] + _two()[:1]}),
     "/b.jpg is in group 1 and in group 2"),
])
def test_hand_edited_fields_of_the_wrong_kind_are_a_report_error(tmp_path, edit, match):
    """Each of these crashed `apply` with a traceback (exit 1) instead of saying the report
    is malformed (exit 2)."""
    data = {"schema_version": 1, "roots": ["/"], "config": {"method": "dhash", "nbits": 64},
            "groups": [{"id": 1, "representative": "/a.jpg", "members": _two()}]}
    edit(data)
    p = tmp_path / "edited.json"
    p.write_text(json.dumps(data))
    if match is None:
        assert len(read_report(p).groups) == 1
        return
    with pytest.raises(lookalike.ReportError, match=re.escape(match)):
        read_report(p)


@pytest.mark.parametrize("data, match", [
    ({"kind": "lookalike-dataset-cleanup", "splits": []}, "is a dataset cleanup"),
    ({"kind": "lookalike-decisions", "schema_version": 1, "report_path": "/r.json",
      "groups": []}, "holds decisions exported from a review page"),
    ({"kind": "something-else", "schema_version": 1}, "not a lookalike scan report"),
])
def test_other_lookalike_files_say_what_they_are(tmp_path, data, match):
    # A cleanup file was "not a report of schema version 1 (found None); re-run the scan",
    # and a decisions file read as an empty report.
    p = tmp_path / "other.json"
    p.write_text(json.dumps(data))
    with pytest.raises(lookalike.ReportError, match=match):
        read_report(p)


def test_missing_report_says_how_to_make_one(tmp_path):
    with pytest.raises(lookalike.ReportError, match="pass the JSON report a scan saved"):
        read_report(tmp_path / "none.json")


def test_paths_format_refuses_a_name_with_a_newline_and_names_it(tmp_path, scene, capsys):
    from lookalike.cli import main

    (tmp_path / "imgs").mkdir()
    img = scene(1, (180, 120))
    img.save(tmp_path / "imgs" / "one.png")
    img.resize((90, 60)).save(tmp_path / "imgs" / "two\nlines.png")  # the smaller one goes
    common = ["scan", str(tmp_path / "imgs"), "-m", "phash", "-t", "6", "-j", "1", "-q",
              "--no-cache", "--format"]
    with pytest.raises(SystemExit) as exc:
        main([*common, "paths"])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "two\\nlines.png" in err and "paths0" in err
    with pytest.raises(SystemExit) as exc:  # NUL-terminated, the same name is listed
        main([*common, "paths0"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"{tmp_path}/imgs/two\nlines.png\0"


def test_text_views_escape_control_characters_in_names_reports_keep_them(tmp_path, scene,
                                                                        capsys):
    """A name holding a newline read as two files in the text report, the problem lines and
    the apply plan, and terminal escapes in a name acted on the terminal."""
    from lookalike.cli import main

    (tmp_path / "imgs").mkdir()
    img = scene(1, (180, 120))
    img.save(tmp_path / "imgs" / "one.png")
    odd = "two\nlines \x1b[31m.png"  # (undecodable bytes stay raw: test_robustness)
    img.resize((90, 60)).save(tmp_path / "imgs" / odd)
    (tmp_path / "imgs" / "bad\tname.jpg").write_bytes(b"not a picture")
    report = tmp_path / "r.json"
    with pytest.raises(SystemExit) as exc:
        main(["scan", str(tmp_path / "imgs"), "-m", "phash", "-t", "6", "-j", "1", "--no-cache",
              "-o", str(report)])
    out, err = capsys.readouterr()
    assert exc.value.code == 0
    assert "two\\nlines \\x1b[31m.png" in out and "\x1b" not in out + err
    assert "bad\\tname.jpg" in out and "bad\\tname.jpg" in err
    with pytest.raises(SystemExit) as exc:
        main(["apply", str(report), "-a", "move", "--to", str(tmp_path / "q")])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "two\\nlines" in out and "\x1b" not in out
    data = json.loads(report.read_text(errors="surrogateescape"))
    assert {m["path"] for g in data["groups"] for m in g["members"]} == {
        f"{tmp_path}/imgs/one.png", f"{tmp_path}/imgs/{odd}"}


def test_a_phase_with_nothing_to_do_draws_no_bar_on_a_terminal(capsys, monkeypatch):
    """A warm re-scan hashes nothing: one line says so, no empty 0/0 bar is drawn."""
    from lookalike.cli import ConsoleReporter

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")  # Rich sees a terminal: bars are shown
    rep = ConsoleReporter()
    assert rep.show_progress
    rep.phase(2, 3, "hashing", 0)
    rep.close()
    rep.phase(3, 3, "grouping", 2)
    rep.close()
    err = capsys.readouterr().err
    assert "2/3: hashing (nothing to do)\n" in err and "0/0" not in err
    assert "3/3: grouping" in err and "━" in err  # a phase with work still has its bar


def test_plan_lines_escape_names_in_reasons_and_line_separators(tmp_path, scene, capsys):
    # A skip reason naming the kept file printed its newline raw; U+2028 (a line separator)
    # was left as it was.
    from lookalike.cli import main
    from lookalike.paths import shown

    assert shown("a\u2028b.png") == "a\\u2028b.png" and shown("a\u2029b") == "a\\u2029b"
    (tmp_path / "imgs").mkdir()
    img = scene(1, (180, 120))
    keeper = tmp_path / "imgs" / "kept\nname.png"
    img.save(keeper)
    img.resize((90, 60)).save(tmp_path / "imgs" / "small.png")
    report = tmp_path / "r.json"
    with pytest.raises(SystemExit):
        main(["scan", str(tmp_path / "imgs"), "-m", "phash", "-t", "6", "-j", "1", "-q",
              "--no-cache", "-o", str(report)])
    keeper.unlink()  # the group is skipped: its reason names the kept file
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["apply", str(report), "-a", "delete"])
    out = capsys.readouterr().out
    skip = [line for line in out.splitlines() if line.startswith("skip group")]
    assert len(skip) == 1 and "kept\\nname.png" in skip[0]


def test_write_report_follows_the_extension_and_says_what_is_wrong(result, tmp_path):
    """write_report(result, 'dups.csv') wrote JSON into it; an unknown format was a bare
    ValueError and a folder 'Not a directory'."""
    write_report(result, tmp_path / "dups.csv")
    header = (tmp_path / "dups.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "group"
    write_report(result, tmp_path / "dups.txt")
    assert "duplicate group" in (tmp_path / "dups.txt").read_text()
    write_report(result, tmp_path / "dups.csv", format="json")  # the format named wins
    assert json.loads((tmp_path / "dups.csv").read_text())["schema_version"] == 1
    write_report(result, tmp_path / "dups.2024-12-05")  # any other name: JSON, as always
    assert json.loads((tmp_path / "dups.2024-12-05").read_text())["schema_version"] == 1
    for out, fmt, match in ((tmp_path / "d.json", "xml", "unknown report format 'xml'"),
                            (tmp_path, None, "is a folder")):
        with pytest.raises(lookalike.ConfigError, match=match):
            write_report(result, out, format=fmt)


def test_the_api_writers_never_overwrite_an_image_or_their_input(result, tmp_path):
    """write_report(result, 'photos/t104.png') and write_html(result, 'victim.png') turned
    the photos into report text: only the command line checked its outputs."""
    a = tmp_path / "a.png"
    before = a.read_bytes()
    for fmt in (None, "csv", "json"):
        with pytest.raises(lookalike.ConfigError, match="would overwrite an image file"):
            write_report(result, a, format=fmt)
    with pytest.raises(lookalike.ConfigError, match="would overwrite an image file"):
        lookalike.write_html(result, a)
    report = tmp_path / "r.json"
    write_report(result, report)
    with pytest.raises(lookalike.ConfigError, match="would overwrite the report"):
        lookalike.write_html(str(report), report)
    assert a.read_bytes() == before and json.loads(report.read_text())["groups"]
    listing = tmp_path / "list.txt"  # a scanned file list is an input too
    listing.write_text(f"{a}\n")
    listed = lookalike.scan(listing, workers=1)
    with pytest.raises(lookalike.ConfigError, match="would overwrite the scanned input"):
        write_report(listed, listing, format="text")
    assert listing.read_text() == f"{a}\n"


def test_read_results_of_a_missing_output_is_an_error_not_an_empty_table(tmp_path):
    pytest.importorskip("pyarrow")
    with pytest.raises(lookalike.ConfigError, match="no Parquet output"):
        lookalike.read_results(tmp_path / "nope.parquet")


def test_a_flipped_or_turned_copy_says_so_beside_its_distance(tmp_path, scene):
    """A mirrored copy was "distance 0 bits", as an identical one: nothing said it was
    flipped. The report gives the distance of the plain hashes when it is larger."""
    import re
    from pathlib import Path

    from PIL import ImageOps

    lib = tmp_path / "lib"
    lib.mkdir()
    img = scene(3, (320, 240))
    img.resize((640, 480)).save(lib / "a.png")  # the most pixels: the reference
    img.save(lib / "b.png")  # the same picture, smaller: no distance_as_is
    ImageOps.mirror(img).save(lib / "mirrored.png")
    img.rotate(90, expand=True).save(lib / "turned.png")
    result = lookalike.scan(lib, workers=1)
    report = tmp_path / "r.json"
    write_report(result, report)
    (group,) = json.loads(report.read_text())["groups"]
    assert Path(group["representative"]).name == "a.png"
    by_name = {Path(m["path"]).name: m for m in group["members"]}
    flipped = {n for n, m in by_name.items() if "distance_as_is" in m}
    assert flipped == {"mirrored.png", "turned.png"}
    for name in flipped:
        assert by_name[name]["distance_as_is"] > by_name[name]["distance"]
    lookalike.write_html(report, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    blob = json.loads(re.search(r'id="lookalike-data">(.*?)</script>', page, re.S).group(1))
    marked = {Path(m["p"]).name for g in blob["groups"] for m in g["m"] if m.get("dt")}
    assert marked == flipped
    # The text report says it too, on those lines only.
    lines = render_text(result).splitlines()
    said = {Path(line.split()[-5]).name for line in lines
            if line.endswith("(flipped, turned or trimmed)")}
    assert said == flipped


def test_an_output_is_written_through_a_new_temporary_file_never_a_link(tmp_path, scene):
    """The report and page went through the fixed name OUT.tmp, opened as it was: a symbolic
    link left under that name was followed (the image it pointed to became the report), and
    the renamed link became the report."""
    folder = tmp_path / "pics"
    folder.mkdir()
    scene(1).save(folder / "a.png")
    scene(1).save(folder / "b.png")
    precious = tmp_path / "precious.png"
    scene(2).save(precious)
    before = precious.read_bytes()
    for name in ("rep.json", "page.html"):
        os.symlink(precious, tmp_path / f"{name}.tmp")
    result = lookalike.scan(folder, workers=1)
    write_report(result, tmp_path / "rep.json")
    from lookalike.report.html import write_html

    write_html(str(tmp_path / "rep.json"), str(tmp_path / "page.html"))
    assert precious.read_bytes() == before
    for name in ("rep.json", "page.html"):
        assert (tmp_path / name).is_file() and not (tmp_path / name).is_symlink()
    assert json.loads((tmp_path / "rep.json").read_text())["groups"]


def test_concurrent_writers_of_one_output_each_write_whole(tmp_path):
    """Two scans writing one report shared OUT.tmp: one failed ("No such file or directory")
    or left the other's report under its own name."""
    from concurrent.futures import ThreadPoolExecutor

    from lookalike.outputs import write_text

    out = tmp_path / "same.json"
    texts = [json.dumps({"writer": k, "pad": "x" * 200_000}) for k in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda t: [write_text(out, t, "report") for _ in range(5)], texts))
    assert out.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["same.json"]


def test_a_failed_write_leaves_no_temporary_file_and_the_old_output(tmp_path, monkeypatch):
    """On a full disk the page's partial OUT.tmp stayed (the report's was removed)."""
    import builtins
    import errno

    from lookalike.outputs import write_text

    out = tmp_path / "page.html"
    out.write_text("old page")
    real_open = builtins.open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, text):
            self.fh.write(text[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builtins, "open", lambda *a, **k: Full(real_open(*a, **k)))
    with pytest.raises(lookalike.LookalikeError,
                       match=r"cannot write the HTML page .*No space left on device"):
        write_text(out, "new page " * 1000, "HTML page")
    monkeypatch.undo()
    assert out.read_text() == "old page"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_an_output_name_near_the_file_systems_limit_is_written(tmp_path):
    """The temporary name was the output's plus 14 bytes: a legal 250-byte report name
    failed with "File name too long"."""
    from lookalike.outputs import write_text

    out = tmp_path / ("r" * 245 + ".json")
    write_text(out, "{}\n", "report")
    assert out.read_text() == "{}\n" and [p.name for p in tmp_path.iterdir()] == [out.name]


def test_a_plain_re_encode_is_not_called_flipped_turned_or_trimmed(photos):
    # Review: distance_as_is compared the plain segments only, so a re-encode whose best
    # match came through another orientation, both turned alike, read "flipped, turned or
    # trimmed" on the review page. A mirrored copy still does.
    import io

    from PIL import Image, ImageOps

    from lookalike.imaging.decode import decode_bytes
    from lookalike.imaging.hashes import get_method
    from lookalike.report.schema import _distance_as_is

    method = get_method("dhash-z")

    def hashed(img, quality):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        return method.hash(decode_bytes(buf.getvalue())[0], 16, invariant="dihedral",
                           trim=True)

    by_name = {p.name: p for p in photos}
    if "camera.png" not in by_name:
        pytest.skip("scikit-image's camera.png missing")
    img = Image.open(by_name["camera.png"]).convert("RGB")
    a, b = hashed(img, 70), hashed(img, 30)
    assert (a.segments[0] ^ b.segments[0]).bit_count() > a - b  # the case (plain: 11 vs 1)
    assert _distance_as_is(a, b, a - b) is None
    mirrored = hashed(ImageOps.mirror(img), 70)
    assert _distance_as_is(a, mirrored, a - mirrored) is not None
