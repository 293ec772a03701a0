"""The HTML review page: rendering rules in Python, then the real page in headless Chromium.

Browser tests need Debian's ``chromium`` (``/usr/bin/chromium``, or ``$LOOKALIKE_CHROMIUM``)
and Playwright for Python; they skip with a reason when either is missing, or fail when
``$LOOKALIKE_REQUIRE_BROWSER`` is set (CI). Playwright's own browser download is never used.
"""

from __future__ import annotations

import base64
import hashlib
import html as html_lib
import io
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import lookalike
from conftest import save_burst
from lookalike.actions.plan import MARKER
from lookalike.cli import cli
from lookalike.errors import ConfigError
from lookalike.report.html import (
    file_states,
    folder_tree,
    image_facts,
    render_html,
    write_html,
)

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
HOSTILE = "<img src=x onerror=alert(1)>.jpg"
HOSTILE_2 = "q\"uo'te & <!-- amp.png"
SCRIPT_BREAKER = "/nowhere/</script><script>alert(2)</script>.jpg"


# --------------------------------------------------------------------------- helpers

def _folder(root: Path, scene) -> Path:
    """Two groups (3 and 2 images), one unique image and one unreadable file."""
    root.mkdir(parents=True, exist_ok=True)
    a = scene(1, (240, 180))
    a.save(root / "a.png")
    a.resize((120, 90)).save(root / "a_small.png")
    a.save(root / "a.jpg", quality=90)
    b = scene(2, (200, 150))
    b.save(root / "b.png")
    b.save(root / "b_copy.png")
    scene(3).save(root / "c.png")
    (root / "broken.jpg").write_bytes(b"not an image")
    return root


def _scan_to_report(folder: Path, out: Path) -> Path:
    result = lookalike.scan(folder, method="phash", threshold=6, workers=1)
    lookalike.write_report(result, out)
    return out


def _member(path: str, distance: int = 0, size: int = 1000) -> dict[str, Any]:
    return {"path": path, "hash": "00", "distance": distance, "width": 640, "height": 480,
            "bytes": size, "format": "JPEG", "mtime_ns": 1_700_000_000_000_000_000,
            "digest": "d", "pixel_digest": None, "source": ""}


def _synthetic(n_groups: int, per_group: int = 3, *, root: str = "/nowhere") -> dict[str, Any]:
    """A schema-1 report dict of ``n_groups`` groups whose files do not exist."""
    groups = []
    for gid in range(1, n_groups + 1):
        members = [_member(f"{root}/g{gid:05d}/img_{i}.jpg", distance=(gid + i) % 7 if i else 0,
                           size=100_000 + i) for i in range(per_group)]
        groups.append({"id": gid, "kind": "near", "representative": members[0]["path"],
                       "members": members})
    return {"schema_version": 1, "tool": {"name": "lookalike", "version": "test"},
            "created": "2024-05-01T12:00:00+00:00", "argv": [], "roots": [root],
            "config": {"method": "phash", "nbits": 64, "hash_size": 8, "threshold": 6,
                       "grouping": "components"},
            "groups": groups, "errors": [], "stats": {"images": n_groups * per_group}}


def _blob(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="lookalike-data">(.*?)</script>', html,
                  re.S)
    assert m, "no data blob"
    return json.loads(m.group(1))


def _remove_under(web: Any, html: Path, *folders: str | Path) -> None:
    """On the open page ``html``: open the folder rules and add a remove rule for each of
    ``folders``."""
    listed = [f["p"] for f in _blob(html.read_text())["folders"]]
    web.page.click("#rules summary")
    for folder in folders:
        web.page.select_option("#rule-folder", str(listed.index(str(folder))))
        web.page.click("#rule-remove")


# --------------------------------------------------------------------------- pure rendering

def test_page_has_a_csp_that_forbids_remote_loads_and_hashes_its_inline_code(tmp_path, scene):
    report = _scan_to_report(_folder(tmp_path / "imgs", scene), tmp_path / "r.json")
    html = render_html(lookalike.read_report(report))
    csp = html_lib.unescape(
        re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))
    assert "default-src 'none'" in csp and "img-src data: 'self'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    for code in (script, style):
        digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "http://" not in html and "https://" not in html  # nothing to fetch


def test_json_blob_escapes_markup_so_no_name_can_close_the_script_tag():
    data = _synthetic(1)
    data["groups"][0]["members"][1]["path"] = SCRIPT_BREAKER
    data["groups"][0]["members"][2]["path"] = "/x/" + HOSTILE_2
    data["errors"] = [{"path": "/x/</script>&.jpg", "stage": "decode", "error": "corrupt",
                       "message": "<b>bad</b>"}]
    html = render_html(data, report_path="/r.json")
    blob_text = re.search(r'id="lookalike-data">(.*?)</script>', html, re.S).group(1)
    assert not set(blob_text) & set("<>&")
    blob = _blob(html)
    assert [m["p"] for m in blob["groups"][0]["m"]][1:] == [SCRIPT_BREAKER, "/x/" + HOSTILE_2]
    assert blob["errors"][0]["path"] == "/x/</script>&.jpg"
    assert html.count("</script>") == 2  # the blob's and the page script's own


def test_groups_come_largest_first_and_keepers_prefill_with_what_apply_keeps():
    data = _synthetic(3, per_group=2)
    data["groups"][2]["members"].append(_member("/nowhere/g00003/extra.jpg", 2))
    # A keep list the policy does not keep (files alike but their names: the first by path):
    # the page pre-fills the policy's keeper, as apply plans, and says why it differs.
    data["groups"][0]["keep"] = [data["groups"][0]["members"][1]["path"]]
    data["groups"][1]["keep"] = [data["groups"][1]["members"][0]["path"]]
    blob = _blob(render_html(data, report_path="/r.json"))
    assert [g["id"] for g in blob["groups"]] == [3, 1, 2]
    by_id = {g["id"]: g for g in blob["groups"]}
    assert [m["k"] for m in by_id[1]["m"]] == [True, False]
    assert "the report's keep list (/nowhere/g00001/img_1.jpg) differs" in by_id[1]["kw"]
    assert [m["k"] for m in by_id[2]["m"]] == [True, False]  # the list the policy keeps
    assert "kw" not in by_id[2] and "kw" not in by_id[3]  # group 3 records no keep list
    assert by_id[1]["kr"] == by_id[2]["kr"] == "first by path (the rules find no difference)"
    assert blob["report_path"] == os.path.abspath("/r.json")
    assert blob["report_created"] == data["created"]


def _camera_and_export(lib: Path, scene) -> tuple[Path, Path, Path]:
    """A camera original (EXIF make, model, date) under ``lib/Originals`` and its upscaled
    export without EXIF under ``lib/Exports``, both IMG_0002.jpg, scanned into a report."""
    original, export = lib / "Originals" / "IMG_0002.jpg", lib / "Exports" / "IMG_0002.jpg"
    for folder in (original.parent, export.parent):
        folder.mkdir(parents=True)
    picture = scene(1, (320, 240))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS 5D"  # Make, Model
    exif.get_ifd(0x8769)[0x9003] = "2024:06:01 10:00:00"  # DateTimeOriginal
    picture.save(original, quality=92, exif=exif.tobytes())
    picture.resize((640, 480)).save(export, quality=92)
    return original, export, _scan_to_report(lib, lib.parent / "r.json")


def _edited(report: Path, out: Path, edit) -> Path:
    data = json.loads(report.read_text())
    edit(data)
    out.write_text(json.dumps(data))
    return out


def test_an_edited_keep_list_is_not_prefilled_nor_paired_with_anothers_reason(
        tmp_path, scene, monkeypatch):
    """A report whose keep list names the upscaled export (a hand edit, or an older
    version's choice) made the page mark the export KEEP with the original's reason ("camera
    EXIF") and the original REMOVE: exported and applied, the original went. The page
    pre-fills what apply keeps, with that keeper's own reason, and says the list differs."""
    original, export, report = _camera_and_export(tmp_path / "lib", scene)
    data = json.loads(report.read_text())
    assert data["groups"][0]["keep"] == [str(original)]
    reason = data["groups"][0]["keep_reason"]
    assert reason == "camera EXIF (make, model or date taken)"

    def to_export(d: dict[str, Any]) -> None:
        d["groups"][0]["keep"] = [str(export)]

    edited = _edited(report, tmp_path / "edited.json", to_export)
    # Each file's header is read once: the facts the page shows are the keep policy's too.
    import lookalike.grouping.keep as keep_module
    import lookalike.report.html as html_module
    reads: list[str] = []

    def counted(path: str) -> Any:
        reads.append(path)
        return real(path)

    real = html_module.read_file_facts
    for module in (html_module, keep_module):
        monkeypatch.setattr(module, "read_file_facts", counted)
    write_html(edited, tmp_path / "edited.html", thumbnails="none")
    assert sorted(reads) == sorted([str(original), str(export)])
    (group,) = _blob((tmp_path / "edited.html").read_text())["groups"]
    kept = {m["p"]: m["k"] for m in group["m"]}
    assert kept == {str(original): True, str(export): False}
    assert group["m"][group["kf"]]["p"] == str(original) and group["kr"] == reason
    assert group["kw"].startswith(f"the report's keep list ({export}) differs from what its "
                                  "keep policy keeps now: edited, or written by another "
                                  "version of lookalike")
    assert "apply on the report itself skips this group" in group["kw"]
    # Which is what apply does with the report: it skips the group, for that reason.
    (skipped,) = lookalike.plan(edited, action="delete").skipped
    assert "the report's keep list was edited, or written by another version" in skipped.reason
    # The report as the scan wrote it: the same keeper and reason, and nothing to warn of.
    write_html(report, tmp_path / "r.html", thumbnails="none")
    (group,) = _blob((tmp_path / "r.html").read_text())["groups"]
    assert {m["p"]: m["k"] for m in group["m"]} == kept
    assert group["kr"] == reason and "kw" not in group


def test_a_report_without_keep_lists_prefills_what_apply_keeps_by_default(tmp_path, scene):
    """A report of an earlier version records no keep policy nor keep lists: the page kept
    its representative (the upscaled export), apply the camera original (the default
    policy, original)."""
    original, export, report = _camera_and_export(tmp_path / "lib", scene)

    def old(d: dict[str, Any]) -> None:
        del d["keep_policy"]
        for g in d["groups"]:
            del g["keep"], g["keep_reason"]

    old_report = _edited(report, tmp_path / "old.json", old)
    assert json.loads(old_report.read_text())["groups"][0]["representative"] == str(export)
    write_html(old_report, tmp_path / "old.html", thumbnails="none")
    page = (tmp_path / "old.html").read_text()
    (group,) = _blob(page)["groups"]
    assert {m["p"]: m["k"] for m in group["m"]} == {str(original): True, str(export): False}
    assert group["kr"] == "camera EXIF (make, model or date taken)" and "kw" not in group
    assert "(<span class=\"mono\">original</span>, the default: the report records none)" in page
    (planned,) = lookalike.plan(old_report, action="delete").groups
    assert planned.keep == (str(original),)


def test_missing_files_get_placeholders_not_a_crash(tmp_path):
    data = _synthetic(2)
    summary = write_html(data, tmp_path / "r.html", report_path=tmp_path / "r.json")
    assert (summary.groups, summary.images, summary.thumbnails) == (2, 6, 0)
    blob = _blob((tmp_path / "r.html").read_text())
    assert all(m["u"] is None and m["s"] == "missing" for g in blob["groups"] for m in g["m"])


def test_file_states_are_read_by_the_writer_and_rendered_as_given(tmp_path, scene):
    report = _scan_to_report(_folder(tmp_path / "imgs", scene), tmp_path / "r.json")
    data = lookalike.read_report(report).data
    first, second = (m["path"] for m in data["groups"][0]["members"][:2])
    assert file_states(data) == {}  # every file as the scan saw it
    with open(first, "ab") as fh:
        fh.write(b"more")
    os.remove(second)
    assert file_states(data) == {first: "changed", second: "missing"}
    # Rendering looks at no file: the states are data, and absent ones mean unchanged.
    states = {m["p"]: m["s"] for g in _blob(render_html(data))["groups"] for m in g["m"]}
    assert set(states.values()) == {None}
    told = _blob(render_html(data, states={first: "changed"}))
    states = {m["p"]: m["s"] for g in told["groups"] for m in g["m"]}
    assert states[first] == "changed" and states[second] is None


def test_inline_thumbnails_are_data_uris(tmp_path, scene):
    report = _scan_to_report(_folder(tmp_path / "imgs", scene), tmp_path / "r.json")
    summary = write_html(report, tmp_path / "r.html")
    assert summary.thumbnails == summary.images == 5 and summary.thumbnail_dir is None
    blob = _blob((tmp_path / "r.html").read_text())
    assert all(m["u"].startswith("data:image/jpeg;base64,") for g in blob["groups"]
               for m in g["m"])


def test_large_reports_put_thumbnails_in_a_sibling_folder_and_spare_other_files(tmp_path,
                                                                               scene):
    report = _scan_to_report(_folder(tmp_path / "imgs", scene), tmp_path / "r.json")
    folder = tmp_path / "my report_files"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")  # not ours: the folder is not taken
    summary = write_html(report, tmp_path / "my report.html", inline_limit=2)
    assert summary.thumbnail_dir is None and summary.thumbnails == 5  # inline instead
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    (folder / "notes.txt").unlink()  # an empty folder made beforehand is taken
    summary = write_html(report, tmp_path / "my report.html", inline_limit=2)
    assert summary.thumbnail_dir == str(folder)
    assert len(list(folder.glob("t*.jpg"))) == 5
    urls = [m["u"] for g in _blob((tmp_path / "my report.html").read_text())["groups"]
            for m in g["m"]]
    assert all(u.startswith("my%20report_files/t") for u in urls)


def test_a_link_named_like_a_thumbnail_in_the_pages_folder_is_replaced_not_followed(
        tmp_path, scene):
    """The page's own (tagged) thumbnail folder held t000000.jpg -> an image elsewhere: the
    clean-up skipped links, then the write followed it and the image became a JPEG
    thumbnail. The cache tag is written the same way."""
    report = _scan_to_report(_folder(tmp_path / "imgs", scene), tmp_path / "r.json")
    write_html(report, tmp_path / "page.html", thumbnails="files")
    folder = tmp_path / "page_files"
    victim = tmp_path / "victim.png"
    scene(9).save(victim)
    before = victim.read_bytes()
    (folder / "t000000.jpg").unlink()
    (folder / "t000000.jpg").symlink_to(victim)
    write_html(report, tmp_path / "page.html", thumbnails="files")
    assert victim.read_bytes() == before
    assert not (folder / "t000000.jpg").is_symlink()
    assert (folder / "t000000.jpg").read_bytes()[:2] == b"\xff\xd8"  # a JPEG thumbnail


def test_undecodable_file_names_do_not_break_the_page(tmp_path, scene):
    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/lib\xff")
    try:
        os.mkdir(folder)
    except (OSError, UnicodeError):
        pytest.skip("this file system only takes valid UTF-8 names")
    img = scene(4, (200, 150))
    img.save(os.path.join(folder, "a.png"))
    img.save(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.png"))
    report = _scan_to_report(Path(folder), tmp_path / "r.json")
    write_html(report, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    blob_paths = {m["p"] for g in _blob(page)["groups"] for m in g["m"]}
    report_paths = {m["path"] for g in lookalike.read_report(report).data["groups"]
                    for m in g["members"]}
    assert blob_paths == report_paths and len(blob_paths) == 2


def test_histogram_counts_member_distances_and_marks_the_threshold():
    data = _synthetic(7)  # distances (gid + i) % 7 for i = 1, 2
    html = render_html(data, report_path="/r.json")
    svg = html[html.index('<figure class="hist'):html.index("</figure>")]
    bars = re.findall(r"<title>distance (\d+): (\d+) images?</title>", svg)
    counts = {int(d): int(n) for d, n in bars}
    assert sum(counts.values()) == 14 and counts[0] == 2
    assert "threshold 6" in svg
    # A member embeddings joined has no meaningful bits (a crop: 105): it is not counted,
    # nor does it stretch the axis into slivers.
    data["groups"][0]["members"][1].update(match="verified", distance=105, similarity=0.9)
    svg = render_html(data, report_path="/r.json")
    bars = re.findall(r"<title>distance (\d+): (\d+) images?</title>", svg)
    assert sum(int(n) for _, n in bars) == 13 and max(int(d) for d, _ in bars) < 10
    words = re.findall(r"<title>distance \d+: (\d+ images?)</title>", svg)
    assert "1 image" in words and all(w.endswith("s") != w.startswith("1 ") for w in words)


def test_a_leakage_page_marks_the_reference_protected_and_says_what_leaks():
    # Nothing on the page said which files were the protected reference: a reviewer could
    # mark a train file for removal, and apply then skipped the whole group.
    data = _synthetic(2, root="/data")
    data["roots"] = ["/data/g00001", "/data/g00002"]
    data["leakage"] = {"reference": ["/data/g00001"], "threshold": 6, "sets": [
        {"name": "g00001", "root": "/data/g00001", "reference": True, "images": 3,
         "leaked": 0},
        {"name": "g00002", "root": "/data/g00002", "reference": False, "images": 3,
         "leaked": 2}]}
    data["keep_policy"] = {"rules": ["original"], "protect": ["/data/g00002/img_2.jpg"]}
    html = render_html(data, report_path="/r.json")
    blob = _blob(html)
    assert blob["lk"] is True
    marked = {m["p"] for g in blob["groups"] for m in g["m"] if m.get("pr")}
    assert marked == {f"/data/g00001/img_{i}.jpg" for i in range(3)} | {
        "/data/g00002/img_2.jpg"}
    text = html_lib.unescape(html)
    assert "leakage check against the reference g00001 (protected: never removed)" in text
    assert "g00002: 2 of 3 images have a near duplicate in the reference" in text
    plain = _blob(render_html(_synthetic(1), report_path="/r.json"))
    assert plain["lk"] is False and not any("pr" in m for m in plain["groups"][0]["m"])
    # A file protected through another name of it (a hard link in a protected folder) is
    # protected on the page too, as apply judges it.
    data["groups"][1]["members"][0]["aliases"] = ["/data/g00001/link.jpg"]
    blob = _blob(render_html(data, report_path="/r.json"))
    assert blob["groups"][1]["m"][0].get("pr") == 1


def test_scan_result_without_a_saved_report_disables_export(tmp_path, scene):
    result = lookalike.scan(_folder(tmp_path / "imgs", scene), method="phash", threshold=6,
                            workers=1)
    write_html(result, tmp_path / "r.html", thumbnails="none")
    html = (tmp_path / "r.html").read_text()
    assert re.search(r'<button type="button" id="export"[^>]*disabled', html)
    assert _blob(html)["report_path"] is None


def test_unknown_thumbnail_mode_and_missing_folder_are_config_errors(tmp_path):
    with pytest.raises(lookalike.ConfigError, match="thumbnails mode"):
        write_html(_synthetic(1), tmp_path / "r.html", thumbnails="bogus")  # type: ignore[arg-type]
    with pytest.raises(lookalike.ConfigError, match="does not exist"):
        write_html(_synthetic(1), tmp_path / "no" / "r.html")


def test_image_facts_read_camera_date_mode_and_jpeg_quality_from_real_photos(tmp_path,
                                                                            rgb_photos):
    photo = Image.open(rgb_photos[0]).convert("RGB")
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "NIKON CORPORATION", "NIKON D750"
    exif.get_ifd(0x8769)[0x9003] = "2019:07:14 18:02:33"
    photo.save(tmp_path / "shot.jpg", quality=83, exif=exif)
    photo.convert("L").save(tmp_path / "grey.jpg", quality=41)
    photo.save(tmp_path / "shot.png")
    facts = image_facts(str(tmp_path / "shot.jpg"))
    assert facts == {"format": "JPEG", "mode": "RGB", "quality": 83,
                     "camera": "NIKON CORPORATION NIKON D750", "taken": "2019-07-14 18:02:33"}
    assert image_facts(str(tmp_path / "grey.jpg")) == {"format": "JPEG", "mode": "L",
                                                         "quality": 41}
    assert image_facts(str(tmp_path / "shot.png")) == {"format": "PNG", "mode": "RGB"}
    assert image_facts(str(tmp_path / "gone.jpg")) is None
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not really")
    assert image_facts(str(tmp_path / "bad.jpg")) is None


def test_folder_tree_names_every_folder_up_to_its_root_with_file_counts():
    # A file in several groups (a leakage reference file matched by two test images) is
    # one file: "leak/train (12 files)" counted 8 files once per group.
    paths = ["/lib/Originals/2020/a.jpg", "/lib/Originals/b.jpg", "/lib/Exports/a.jpg",
             "/elsewhere/deep/c.jpg", "/lib/Originals/b.jpg"]
    folders, index = folder_tree(paths, ["/lib"])
    by_path = {f["p"]: f for f in folders}
    assert list(by_path) == ["/elsewhere", "/elsewhere/deep", "/lib", "/lib/Exports",
                             "/lib/Originals", "/lib/Originals/2020"]
    assert {p: f["n"] for p, f in by_path.items()} == {
        "/elsewhere": 1, "/elsewhere/deep": 1, "/lib": 3, "/lib/Exports": 1,
        "/lib/Originals": 2, "/lib/Originals/2020": 1}
    parent = {f["p"]: folders[f["up"]]["p"] if f["up"] is not None else None for f in folders}
    assert parent["/lib/Originals/2020"] == "/lib/Originals" and parent["/lib"] is None
    assert parent["/elsewhere"] is None  # the file system's root is never offered
    assert folders[index["/lib/Originals/2020/a.jpg"]]["p"] == "/lib/Originals/2020"


@pytest.mark.slow
def test_page_links_originals_of_web_formats_and_embeds_their_facts(tmp_path, rgb_photos):
    lib = tmp_path / "lib #1"  # a name that must be percent-encoded in a URL
    lib.mkdir()
    photo = Image.open(rgb_photos[0]).convert("RGB")
    photo.save(lib / "a.png")
    photo.save(lib / "a.jpg", quality=88)
    photo.save(lib / "a.tif")
    report = _scan_to_report(lib, tmp_path / "r.json")
    write_html(report, tmp_path / "r.html")
    blob = _blob((tmp_path / "r.html").read_text())
    members = {Path(m["p"]).name: m for g in blob["groups"] for m in g["m"]}
    assert set(members) == {"a.png", "a.jpg", "a.tif"}
    assert members["a.png"]["o"] == (lib / "a.png").as_uri() and "%20%231" in members["a.png"]["o"]
    assert members["a.jpg"]["x"] == {"cm": "RGB", "q": 88}
    assert "o" not in members["a.tif"]  # browsers cannot show TIFF: a preview stands in
    assert members["a.tif"]["u"].startswith("data:image/jpeg")
    preview = Image.open(io.BytesIO(base64.b64decode(members["a.tif"]["v"].split(",")[1])))
    assert preview.format == "JPEG" and preview.size == photo.size  # smaller than 1600 px
    assert "v" not in members["a.png"] and "v" not in members["a.jpg"]  # originals shown
    folder = blob["folders"][members["a.png"]["fd"]]
    assert folder == {"p": str(lib), "up": None, "n": 3}
    # Pure rendering with no facts: no original is linked, nothing is read.
    assert all("o" not in m and "x" not in m
               for g in _blob(render_html(lookalike.read_report(report)))["groups"]
               for m in g["m"])


# --------------------------------------------------------------------------- CLI

def test_report_command_writes_the_page(runner, tmp_path, scene):
    report = _scan_to_report(_folder(tmp_path / "imgs", scene), tmp_path / "r.json")
    res = runner.invoke(cli, ["report", str(report), "--html", str(tmp_path / "r.html"), "-q"])
    assert res.exit_code == 0, res.output
    assert "HTML report written to" in res.output
    assert _blob((tmp_path / "r.html").read_text())["report_path"] == str(report)


def test_scan_html_writes_the_json_report_beside_the_page(runner, tmp_path, scene):
    folder = _folder(tmp_path / "imgs", scene)
    out = tmp_path / "out" / "page.html"
    out.parent.mkdir()
    res = runner.invoke(cli, ["scan", str(folder), "-m", "phash", "-t", "6", "-j", "1", "-q",
                              "--no-cache", "--html", str(out)])
    assert res.exit_code == 0, res.output
    assert _blob(out.read_text())["report_path"] == str(out.with_suffix(".json"))
    assert json.loads(out.with_suffix(".json").read_text())["schema_version"] == 1


def test_scan_html_uses_the_json_output_when_given(runner, tmp_path, scene):
    folder = _folder(tmp_path / "imgs", scene)
    res = runner.invoke(cli, ["scan", str(folder), "-m", "phash", "-t", "6", "-j", "1", "-q",
                              "--no-cache", "-o", str(tmp_path / "r.json"),
                              "--html", str(tmp_path / "p.html")])
    assert res.exit_code == 0, res.output
    assert _blob((tmp_path / "p.html").read_text())["report_path"] == str(tmp_path / "r.json")
    assert not (tmp_path / "p.json").exists()


def test_html_into_a_missing_folder_fails_before_scanning(runner, tmp_path):
    res = runner.invoke(cli, ["scan", str(tmp_path), "--html", str(tmp_path / "no" / "p.html")])
    # CliRunner bypasses main (which maps errors to exit codes): check the error itself.
    assert isinstance(res.exception, ConfigError) and res.exception.exit_code == 2
    assert "does not exist" in str(res.exception)
    res = runner.invoke(cli, ["report", str(tmp_path / "missing.json"), "--html",
                              str(tmp_path / "p.html")])
    assert res.exit_code != 0


# --------------------------------------------------------------------------- the browser

def _chromium() -> str | None:
    path = os.environ.get("LOOKALIKE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.exists(path) else None


def _unavailable(reason: str) -> None:
    # CI sets LOOKALIKE_REQUIRE_BROWSER=1: there a missing browser is a failure, not a skip.
    if os.environ.get("LOOKALIKE_REQUIRE_BROWSER"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium_browser():
    try:
        from playwright import sync_api
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    exe = _chromium()
    if exe is None:
        _unavailable("chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


class BrowserPage:
    """A page plus everything it said: console messages, uncaught errors, dialogs."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(accept_downloads=True,
                                           viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: Path) -> None:
        self.page.goto(path.resolve().as_uri())

    def export(self, dest: Path) -> dict[str, Any]:
        with self.page.expect_download() as info:
            self.page.click("#export")
        info.value.save_as(dest)
        assert info.value.suggested_filename.endswith(".decisions.json")
        return json.loads(dest.read_text())


@pytest.fixture
def web(chromium_browser):
    p = BrowserPage(chromium_browser)
    yield p
    p.context.close()


def _small_page(tmp_path: Path, scene, **options: Any) -> tuple[Path, Path]:
    report = _scan_to_report(_folder(tmp_path / "imgs", scene), tmp_path / "r.json")
    html = tmp_path / "r.html"
    write_html(report, html, **options)
    return report, html


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["inline", "files"])
def test_page_loads_cleanly_with_every_group_and_thumbnail(web, tmp_path, scene, mode):
    _report, html = _small_page(tmp_path, scene, thumbnails=mode)
    web.open(html)
    pg = web.page
    assert pg.locator("article.group").count() == 2
    assert pg.locator("article.group").first.locator(".member").count() == 3  # largest first
    assert pg.locator("img.thumb").count() == 5
    pg.wait_for_function("() => [...document.images].every(i => i.complete)")
    widths = pg.eval_on_selector_all("img.thumb", "els => els.map(e => e.naturalWidth)")
    assert all(w > 0 for w in widths), widths  # decoded, i.e. not blocked by the CSP
    assert pg.inner_text("[data-stat=groups]") == "2"
    assert pg.inner_text("[data-stat=errors]") == "1"
    assert pg.locator(".member.suggested").count() == 2
    # Each suggested keeper says why the keep policy chose it (the report's keep_reason).
    reasons = json.loads(_report.read_text())
    why = [w.strip() for w in pg.locator(".member.suggested .why").all_inner_texts()]
    assert why == [f"suggested keeper: {g['keep_reason']}" for g in reasons["groups"]]
    assert all(g["keep_reason"] for g in reasons["groups"])
    pg.click("#errors summary")
    # The rows are built on the details' toggle event, which fires after the click returns.
    pg.wait_for_function("() => document.getElementById('error-rows').childElementCount > 0")
    assert "broken.jpg" in pg.inner_text("#error-rows")
    assert web.console == [] and web.dialogs == []


@pytest.mark.slow
def test_groups_apply_would_skip_say_so_and_leave_the_totals(web, tmp_path, scene):
    report, html = _small_page(tmp_path, scene)
    data = json.loads(report.read_text())
    web.open(html)
    pg = web.page
    status = pg.inner_text("#status")
    suggested = sum(len(g["members"]) - len(g["keep"]) for g in data["groups"])
    assert f"removing {suggested} files" in status and "skip" not in status
    first = pg.locator("article.group").first
    n_first = first.locator(".member").count()
    for toggle in first.locator("button.toggle[aria-pressed=true]").all():
        toggle.click()  # the reviewer removes every copy of the first group
    assert "nothing kept in this group: apply skips it" in first.locator(".warn").inner_text()
    status = pg.inner_text("#status")
    assert f"removing {suggested - (n_first - 1)} files" in status
    assert "1 group apply will skip" in status
    # A page made after a file of the other group changed: that group is skipped too.
    changed = data["groups"][1]["members"][0]["path"]
    with open(changed, "ab") as fh:
        fh.write(b"\0")
    write_html(report, html)
    web.open(html)
    assert "gone or changed since the scan: apply skips it" in pg.inner_text(
        f"article.group[data-id='{data['groups'][1]['id']}'] .warn")
    assert "1 group apply will skip" in pg.inner_text("#status")
    assert web.console == []


@pytest.mark.slow
def test_an_edited_keep_list_keeps_the_original_on_the_page_and_in_its_export(
        web, tmp_path, scene, runner):
    """One click (Export, then apply) moved the camera original of a report whose keep list
    was edited to name its upscaled export: the page marked the export KEEP with the
    original's reason. Now the original is kept, with its reason, and the group says why
    the report's list is not followed."""
    original, export, report = _camera_and_export(tmp_path / "lib", scene)

    def to_export(d: dict[str, Any]) -> None:
        d["groups"][0]["keep"] = [str(export)]

    edited = _edited(report, tmp_path / "edited.json", to_export)
    html = tmp_path / "edited.html"
    write_html(edited, html)
    web.open(html)
    pg = web.page
    group = pg.locator("article.group").first
    cards = {group.locator(".member").nth(i).locator(".path").first.inner_text(): i
             for i in range(2)}
    kept = group.locator(".member").nth(cards[str(original)])
    assert kept.locator(".badge").inner_text() == "KEEP"
    assert kept.locator(".why").inner_text() == (
        "suggested keeper: camera EXIF (make, model or date taken)")
    gone = group.locator(".member").nth(cards[str(export)])
    assert gone.locator(".badge").inner_text() == "REMOVE"
    assert gone.locator(".why").inner_text() == ""
    assert "differs from what its keep policy keeps now" in group.locator(".warn").inner_text()
    assert "skip" not in pg.inner_text("#status")  # exported decisions act on the group
    (decided,) = web.export(tmp_path / "decisions.json")["groups"]
    assert (decided["keep"], decided["remove"]) == ([str(original)], [str(export)])
    res = runner.invoke(cli, ["apply", str(tmp_path / "decisions.json"), "--action", "move",
                              "--to", str(tmp_path / "q"), "--yes"])
    assert res.exit_code == 0, res.output
    assert original.exists() and not export.exists()
    assert web.console == []


@pytest.mark.slow
def test_an_empty_report_says_there_are_no_duplicates_and_a_filter_says_it_matched_none(
        web, tmp_path, scene):
    folder = tmp_path / "unique"
    folder.mkdir()
    scene(1).save(folder / "one.png")
    scene(2).save(folder / "two.png")
    html = tmp_path / "empty.html"
    write_html(_scan_to_report(folder, tmp_path / "e.json"), html)
    web.open(html)
    assert web.page.inner_text("#empty") == "No duplicates: this report has no groups."
    _report, page = _small_page(tmp_path, scene)
    web.open(page)
    web.page.fill("#filter", "no such name")
    web.page.wait_for_selector("#empty:not([hidden])")
    assert web.page.inner_text("#empty") == "No groups match the filter."
    assert web.console == []


def test_toggle_and_export_give_the_agreed_decisions_format(web, tmp_path, scene, runner):
    report, html = _small_page(tmp_path, scene)
    data = json.loads(report.read_text())
    web.open(html)
    pg = web.page
    first = pg.locator("article.group").first
    gid = int(first.get_attribute("data-id"))
    group = next(g for g in data["groups"] if g["id"] == gid)
    paths = [m["path"] for m in group["members"]]
    suggested = set(group.get("keep", [group["representative"]]))
    # A member suggested for removal; the user keeps it after all.
    idx = next(i for i, p in enumerate(paths) if p not in suggested)
    toggle = first.locator(".member").nth(idx).locator("button.toggle")
    assert toggle.get_attribute("aria-pressed") == "false"
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    dec = web.export(tmp_path / "decisions.json")
    assert list(dec) == ["kind", "schema_version", "report_path", "report_created",
                         "folder_rules", "groups"]
    assert dec["folder_rules"] == []
    assert dec["kind"] == "lookalike-decisions" and dec["schema_version"] == 1
    assert dec["report_path"] == str(report) and os.path.isabs(dec["report_path"])
    assert dec["report_created"] == data["created"]
    assert len(dec["groups"]) == len(data["groups"]) == 2
    for g in dec["groups"]:
        assert list(g) == ["id", "keep", "remove"]
        src = next(x for x in data["groups"] if x["id"] == g["id"])
        assert sorted(g["keep"] + g["remove"]) == sorted(m["path"] for m in src["members"])
    first_dec = next(g for g in dec["groups"] if g["id"] == gid)
    assert set(first_dec["keep"]) == suggested | {paths[idx]}
    assert web.console == []
    try:  # the loader behind `lookalike apply`, where it exists
        from lookalike.actions.plan import load_decisions
    except ImportError:
        pass
    else:
        loaded = load_decisions(tmp_path / "decisions.json")
        assert {g.group for g in loaded.groups} == {g["id"] for g in data["groups"]}

    apply_cmd = cli.commands.get("apply")
    if apply_cmd is None:
        pytest.skip("`lookalike apply` is not registered yet")
    params = {p.name for p in apply_cmd.params}
    args = ["apply", str(tmp_path / "decisions.json")]
    if "action" in params:
        args += ["--action", "delete"]
    if "dry_run" in params:
        args.append("--dry-run")
    elif "yes" not in params:  # neither a dry-run flag nor dry-run-unless---yes
        pytest.skip("cannot tell how to dry-run `lookalike apply`")
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert all(os.path.exists(p) for p in paths)  # a dry run changes nothing
    for p in first_dec["remove"]:
        assert p in res.output
    # The member the reviewer chose to keep is not on any line of the plan but a "keep" one.
    assert all("keep" in line for line in res.output.splitlines() if paths[idx] in line)


@pytest.mark.slow
def test_filter_limits_what_is_shown_and_exported(web, tmp_path, scene):
    _report, html = _small_page(tmp_path, scene)
    web.open(html)
    pg = web.page
    assert pg.inner_text("#export") == "Export decisions"
    pg.fill("#filter", "b_copy")
    pg.wait_for_function("() => document.querySelectorAll('article.group').length === 1")
    # The button says that only the filter's groups go (decisions in the others were lost
    # without a word).
    assert pg.inner_text("#export") == "Export decisions (1 of 2 groups: the filter's)"
    dec = web.export(tmp_path / "d.json")
    assert len(dec["groups"]) == 1
    assert any(p.endswith("b_copy.png") for p in dec["groups"][0]["keep"] +
               dec["groups"][0]["remove"])
    pg.fill("#filter", "")
    pg.wait_for_function("() => document.querySelectorAll('article.group').length === 2")
    assert pg.inner_text("#export") == "Export decisions"
    # Exported at once after typing (within the filter's 150 ms pause), the file held the
    # previous filter's groups, not what the box said (review).
    pg.fill("#filter", "b_copy")
    dec = web.export(tmp_path / "d2.json")
    assert len(dec["groups"]) == 1


def test_hostile_file_names_render_as_text_and_run_nothing(web, tmp_path, scene):
    folder = tmp_path / "imgs"
    folder.mkdir()
    img = scene(7, (200, 150))
    img.save(folder / "plain.png")
    img.save(folder / HOSTILE, format="JPEG", quality=95)
    img.save(folder / HOSTILE_2, format="PNG")
    img.save(folder / "back\\slash.png")  # a POSIX name may hold a backslash
    # A right-to-left override read "evilgpj.exe.png" (names review): escaped as in text.
    img.save(folder / "evil\u202egnp.exe.jpg", format="PNG")
    report = _scan_to_report(folder, tmp_path / "r.json")
    data = json.loads(report.read_text())
    assert len(data["groups"]) == 1 and len(data["groups"][0]["members"]) == 5
    # And one name that could only come from a tampered report: it must not end the blob.
    data["groups"].append({"id": 99, "kind": "exact", "representative": "/nowhere/a.jpg",
                           "members": [_member("/nowhere/a.jpg"), _member(SCRIPT_BREAKER)]})
    html = tmp_path / "r.html"
    write_html(data, html, report_path=report)
    web.open(html)
    pg = web.page
    pg.wait_for_timeout(300)  # give any injected handler a chance to fire
    text = pg.inner_text("#groups")
    for name in (HOSTILE, HOSTILE_2, "</script><script>alert(2)</script>.jpg"):
        assert name in text
    assert "back\\slash.png" in pg.locator(".path b, .path .name").all_inner_texts()
    assert "evil\\u202egnp.exe.jpg" in text and "\u202e" not in text
    assert web.dialogs == []
    assert pg.locator("img.thumb").count() == 5  # the real files' thumbnails, nothing more
    assert pg.locator("img:not(.cmp-img)").count() == 5
    assert pg.locator(".cmp-img[src]").count() == 0  # the closed compare view loads nothing
    assert pg.locator("img[src=x], script[src]").count() == 0
    assert pg.locator("script").count() == 2
    assert web.console == []


@pytest.mark.slow
def test_ten_thousand_groups_open_fast_and_render_lazily(web, tmp_path, capsys):
    n = 10_000
    data = _synthetic(n)
    (tmp_path / "r_files").mkdir()
    Image.new("RGB", (160, 120), (90, 140, 200)).save(tmp_path / "r_files" / "t.jpg")
    thumbs = {m["path"]: "r_files/t.jpg" for g in data["groups"] for m in g["members"]}
    html = tmp_path / "r.html"
    html.write_text(render_html(data, report_path=tmp_path / "r.json", thumbnails=thumbs))
    pg = web.page
    t0 = time.perf_counter()
    web.open(html)  # returns after the load event
    wall = time.perf_counter() - t0
    timing = pg.evaluate("""() => ({
        first: window.lookalikeTiming.firstGroupMs,
        load: performance.getEntriesByType('navigation')[0].loadEventEnd,
        rendered: document.querySelectorAll('article.group').length})""")
    # Scroll a long way down: more groups render, and scrolling stays responsive.
    t1 = time.perf_counter()
    for _ in range(40):
        pg.mouse.wheel(0, 3000)
        pg.wait_for_timeout(16)
    pg.wait_for_function("n => document.querySelectorAll('article.group').length > n",
                         arg=timing["rendered"])
    scrolled = time.perf_counter() - t1
    after = pg.locator("article.group").count()
    dec = web.export(tmp_path / "d.json")
    size_mb = html.stat().st_size / 1e6
    with capsys.disabled():
        print(f"\n[html 10k groups] {size_mb:.1f} MB page; first group rendered at "
              f"{timing['first']:.0f} ms, load event at {timing['load']:.0f} ms "
              f"(goto wall {wall:.2f} s); {timing['rendered']} groups rendered at load, "
              f"{after} after 40 wheel steps ({scrolled:.2f} s)")
    assert timing["first"] < 15_000 and timing["load"] < 15_000
    assert timing["rendered"] < n  # lazy: not all 10,000 up front
    assert len(dec["groups"]) == n  # but Export covers every group
    assert web.console == []


# --------------------------------------------------------------------------- compare view, rules

def _originals_and_exports(root: Path, rgb_photos: list[Path]) -> Path:
    """Real photos in Originals/ and their copies in Exports/ (one group lies wholly there)."""
    by_name = {p.stem: p for p in rgb_photos}
    orig, exp = root / "Originals", root / "Exports"
    (exp / "web").mkdir(parents=True)
    orig.mkdir()
    a = Image.open(by_name["astronaut"]).convert("RGB")
    a.save(orig / "A.png")
    a.resize((a.width // 2, a.height // 2), Image.Resampling.LANCZOS).save(
        exp / "web" / "A_web.jpg", quality=80)
    b = Image.open(by_name["chelsea"]).convert("RGB")
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "Canon EOS R5"
    b.save(orig / "B.jpg", quality=92, exif=exif)
    b.convert("L").save(exp / "B_grey.jpg", quality=85)
    # Larger than the original: a resolution-first keep policy would prefer it.
    b.resize((b.width * 3 // 2, b.height * 3 // 2), Image.Resampling.LANCZOS).save(
        exp / "B_big.png")
    c = Image.open(by_name["coffee"]).convert("RGB")
    c.save(exp / "C1.jpg", quality=90)
    c.save(exp / "C2.png")
    return root


def _view(pg) -> dict[str, Any]:
    return pg.evaluate("lookalikeCompareView()")


def _scales(pg) -> list[float]:
    scales = pg.eval_on_selector_all(".frame", "els => els.map(e => e.dataset.scale)")
    return [float(x) for x in scales]


@pytest.mark.slow
def test_compare_view_zoom_flicker_keys_folder_rules_export_and_apply(web, tmp_path,
                                                                      rgb_photos, runner):
    lib = _originals_and_exports(tmp_path / "lib", rgb_photos)
    report = _scan_to_report(lib, tmp_path / "r.json")
    data = json.loads(report.read_text())
    assert sorted(len(g["members"]) for g in data["groups"]) == [2, 2, 3]
    html = tmp_path / "r.html"
    write_html(report, html)
    web.open(html)
    pg = web.page

    # Removed members are marked by a badge and a border; the picture itself is untouched.
    first = pg.locator("article.group").first
    removed = first.locator(".member.remove").first  # the policy keeps one of three
    assert removed.locator(".badge").inner_text() == "REMOVE"
    style = removed.locator("img.thumb").evaluate(
        "e => [getComputedStyle(e).opacity, getComputedStyle(e).filter]")
    assert style == ["1", "none"]

    # Open: the clicked member goes on the right, at full resolution (the original file).
    first.locator(".thumb-box").nth(1).click()
    assert pg.locator("#compare").is_visible()
    pg.wait_for_function("() => [...document.querySelectorAll('.cmp-img')]"
                         ".every(i => i.complete && i.naturalWidth > 0)")
    view = _view(pg)
    gid = view["group"]
    group = next(g for g in data["groups"] if g["id"] == gid)
    names = [Path(m["path"]).name for m in group["members"]]
    assert view["sides"][1] == 1 and view["z"] == 1 and "B.jpg" in names
    # Choose the pair: the original on the left, its grey copy on the right.
    pg.select_option(".cmp-side[data-side='0'] .cmp-pick", str(names.index("B.jpg")))
    pg.select_option(".cmp-side[data-side='1'] .cmp-pick", str(names.index("B_grey.jpg")))
    assert _view(pg)["sides"] == [names.index("B.jpg"), names.index("B_grey.jpg")]
    pg.wait_for_function("() => [...document.querySelectorAll('.cmp-img')]"
                         ".every(i => i.complete && i.naturalWidth > 0)")
    widths = pg.eval_on_selector_all(".cmp-img", "els => els.map(e => e.naturalWidth)")
    assert widths == [group["members"][i]["width"] for i in _view(pg)["sides"]]
    left = pg.inner_text(".cmp-side[data-side='0'] .cmp-facts")
    right = pg.inner_text(".cmp-side[data-side='1'] .cmp-facts")
    assert "Canon EOS R5" in left and "\u2248 92 (estimated from its tables)" in left
    assert "grayscale" in right and "\u2248 85" in right  # the grey copy says what it is

    # Zoom with the wheel: both sides zoom together, keeping their relative scale.
    before = _scales(pg)
    box = pg.locator(".frame").first.bounding_box()
    pg.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
    pg.mouse.wheel(0, -600)
    pg.wait_for_function("() => lookalikeCompareView().z > 1.5")
    after = _scales(pg)
    ratio = [a / b for a, b in zip(after, before, strict=True)]
    assert ratio[0] > 1.5 and abs(ratio[0] - ratio[1]) < 0.02, (before, after)
    centre = _view(pg)
    assert centre["cx"] < 0.5 and centre["cy"] < 0.5  # zoomed towards the cursor
    # Drag pans both (one shared centre); keys zoom, 1:1 and fit.
    pg.mouse.down()
    pg.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6, steps=4)
    pg.mouse.up()
    assert _view(pg)["cx"] < centre["cx"] - 0.05
    pg.keyboard.press("1")
    assert _scales(pg)[0] == pytest.approx(100, abs=0.2)
    pg.keyboard.press("0")
    assert _view(pg)["z"] == 1
    pg.keyboard.press("+")
    assert _view(pg)["z"] == pytest.approx(1.25)

    # Flicker: one frame, the two alternate in it; an arrow key stops on one side.
    pg.keyboard.press("f")
    assert pg.locator("#cmp-views.flicker").count() == 1
    boxes = [pg.locator(".frame").nth(i).bounding_box() for i in (0, 1)]
    assert boxes[0] == boxes[1]
    shown = _view(pg)["shown"]
    pg.wait_for_function(f"() => lookalikeCompareView().shown !== {shown}", timeout=3000)
    pg.keyboard.press("ArrowRight")
    seen = pg.eval_on_selector_all(".frame",
                                   "els => els.map(e => getComputedStyle(e).visibility)")
    assert seen == ["hidden", "visible"] and _view(pg)["shown"] == 1
    pg.wait_for_timeout(800)
    assert _view(pg)["shown"] == 1  # stays: the blink stopped
    pg.keyboard.press("f")
    assert pg.locator("#cmp-views.flicker").count() == 0

    # Keyboard decisions: remove the left, keep it again, keep only the right.
    pg.keyboard.press("ArrowLeft")
    left, right = _view(pg)["sides"]
    card = pg.locator(f"article.group[data-id='{gid}'] .member")
    pg.keyboard.press("x")
    assert "remove" in pg.get_attribute(".frame[data-side='0']", "class")
    assert card.nth(left).locator(".badge").inner_text() == "REMOVE"
    pg.keyboard.press("k")
    assert card.nth(left).locator(".badge").inner_text() == "KEEP"
    pg.keyboard.press("ArrowRight")
    pg.keyboard.press("Shift+K")
    badges = [card.nth(i).locator(".badge").inner_text() for i in range(card.count())]
    assert badges == ["KEEP" if i == right else "REMOVE" for i in range(card.count())]
    # Next and previous group, then Esc.
    pg.keyboard.press("n")
    assert _view(pg)["group"] != gid
    pg.keyboard.press("p")
    assert _view(pg)["group"] == gid
    pg.keyboard.press("Escape")
    assert not pg.locator("#compare").is_visible()

    # Folder rules replace the suggestions (not the reviewer's own choices: reset them).
    pg.click("#reset")
    pg.click("#rules summary")
    offered = [f["p"] for f in _blob(html.read_text())["folders"]]
    assert offered == [str(lib), *(str(lib / d) for d in ("Exports", "Exports/web", "Originals"))]
    for folder, rule in ((lib / "Originals", "keep"), (lib / "Exports", "remove")):
        pg.select_option("#rule-folder", str(offered.index(str(folder))))
        pg.click(f"#rule-{rule}")
    assert pg.locator("#rule-list li").count() == 2
    assert "(2: keep 1, remove 1)" in pg.inner_text("#rules-summary")
    assert "removed by rule" in pg.inner_text("#groups")
    dec = web.export(tmp_path / "decisions.json")
    assert dec["folder_rules"] == [{"folder": str(lib / "Originals"), "rule": "keep"},
                                   {"folder": str(lib / "Exports"), "rule": "remove"}]
    exports_only = next(g for g in dec["groups"]
                        if all("/Exports/" in p for p in g["keep"] + g["remove"]))
    assert len(exports_only["keep"]) == 1 and len(exports_only["remove"]) == 1  # last copy
    for g in dec["groups"]:
        if g is exports_only:
            continue
        assert all("/Originals/" in p for p in g["keep"]), g
        assert g["remove"] and all("/Exports/" in p for p in g["remove"]), g
    assert web.console == []

    # `apply` accepts the export unchanged and moves exactly the removed files.
    quarantine = tmp_path / "quarantine"
    res = runner.invoke(cli, ["apply", str(tmp_path / "decisions.json"), "--action", "move",
                              "--to", str(quarantine), "--yes"])
    assert res.exit_code == 0, res.output
    removed = [p for g in dec["groups"] for p in g["remove"]]
    kept = [p for g in dec["groups"] for p in g["keep"]]
    assert len(removed) == 4 and all(not os.path.exists(p) for p in removed)
    assert all(os.path.exists(p) for p in kept)
    moved = sorted(p.relative_to(quarantine).as_posix() for p in (quarantine / "lib").rglob("*")
                   if p.is_file() and p.name != MARKER)  # (the undo journal lies beside them)
    assert (quarantine / "lib" / MARKER).read_text().strip() == str(lib)
    assert moved == sorted(f"lib/{Path(p).relative_to(lib).as_posix()}" for p in removed)


@pytest.mark.slow
def test_compare_view_shows_a_large_preview_of_a_raw_beside_its_jpeg(web, tmp_path,
                                                                    rgb_photos):
    pytest.importorskip("rawpy")
    from test_raw import make_dng  # here: that module skips itself without tifffile

    lib = tmp_path / "lib"
    lib.mkdir()
    coffee = next(p for p in rgb_photos if p.stem == "coffee")
    photo = Image.open(coffee).convert("RGB").resize((2400, 1600), Image.Resampling.LANCZOS)
    (lib / "IMG_1.dng").write_bytes(make_dng(photo))
    photo.save(lib / "IMG_1.jpg", quality=90)
    report = _scan_to_report(lib, tmp_path / "r.json")
    html = tmp_path / "r.html"
    summary = write_html(report, html, thumbnails="files")
    assert summary.previews == 1 and len(list((tmp_path / "r_files").glob("p*.jpg"))) == 1
    web.open(html)
    pg = web.page
    pg.locator("article.group").first.locator(".thumb-box").first.click()
    pg.wait_for_function("() => [...document.querySelectorAll('.cmp-img')]"
                         ".every(i => i.complete && i.naturalWidth > 0)")
    shown = pg.eval_on_selector_all(
        ".frame", "els => els.map(e => { const i = e.querySelector('img'); return "
        "[i.dataset.shows, i.naturalWidth, e.querySelector('.cmp-note').textContent]; })")
    assert sorted(s[0] for s in shown) == ["original", "preview"], shown
    _kind, width, note = next(s for s in shown if s[0] == "preview")
    assert width == 1600 and note.startswith("preview, 1600 px"), shown
    assert "of the preview" in pg.inner_text("#cmp-zoom")
    assert web.console == []


def test_thumbnails_written_inside_a_scanned_folder_are_not_scanned_next_time(tmp_path,
                                                                             scene):
    # `scan PHOTOS --html PHOTOS/review.html` over 2,000 images wrote PHOTOS/review_files/:
    # the next scan grouped every thumbnail with its photo, a smaller copy that
    # `--keep smallest-file` would keep.
    folder = tmp_path / "photos"
    folder.mkdir()
    _folder(folder, scene)
    before = lookalike.scan(folder, method="phash", threshold=6, workers=1)
    report = tmp_path / "r.json"
    lookalike.write_report(before, report)
    write_html(report, folder / "review.html", thumbnails="files")
    assert (folder / "review_files" / "CACHEDIR.TAG").read_bytes().startswith(
        b"Signature: 8a477f597d28d172789f06886806bc55")
    assert any(p.suffix == ".jpg" for p in (folder / "review_files").iterdir())
    after = lookalike.scan(folder, method="phash", threshold=6, workers=1)
    assert sorted(r.path for r in after.records) == sorted(r.path for r in before.records)
    assert after.stats["skipped_cache_dirs"] == 1
    # Named as a root, the folder is what the user asked for: it is scanned.
    named = lookalike.scan(folder / "review_files", method="phash", threshold=6, workers=1)
    assert len(named.records) == len(list((folder / "review_files").glob("*.jpg")))


def test_a_folder_of_the_users_own_is_never_taken_for_the_thumbnail_folder(tmp_path, scene):
    # An existing "<page>_files/" was tagged as a cache (later scans skipped its pictures)
    # and cleared of files named like thumbnails.
    report = _scan_to_report(_folder(tmp_path / "imgs", scene), tmp_path / "r.json")
    mine = tmp_path / "page_files"
    mine.mkdir()
    (mine / "t000000.jpg").write_bytes(b"my own picture")
    (mine / "notes.txt").write_text("mine")
    (tmp_path / "mine_too").mkdir()
    (tmp_path / "mine_too" / "t000001.jpg").write_bytes(b"mine too")
    (tmp_path / "linked_files").symlink_to(tmp_path / "mine_too")  # never followed
    (tmp_path / "file_files").write_text("a file")  # never replaced (was a traceback)
    (tmp_path / "odd_files" / "t000001.jpg").mkdir(parents=True)  # a folder named like ours
    for page, why in (("page", "holds files lookalike did not write"),
                      ("linked", "is a symbolic link"), ("file", "is a file"),
                      ("odd", "holds files lookalike did not write")):
        with pytest.raises(lookalike.ConfigError, match=why):
            write_html(report, tmp_path / f"{page}.html", thumbnails="files")
    assert (mine / "t000000.jpg").read_bytes() == b"my own picture"
    assert (tmp_path / "mine_too" / "t000001.jpg").read_bytes() == b"mine too"
    assert not (mine / "CACHEDIR.TAG").exists()
    assert not (tmp_path / "mine_too" / "CACHEDIR.TAG").exists()
    write_html(report, tmp_path / "other.html", thumbnails="files")
    write_html(report, tmp_path / "other.html", thumbnails="files")  # its own: rewritten


@pytest.mark.slow
def test_a_remove_rule_on_the_page_spares_a_file_of_several_pictures(web, tmp_path, scene):
    # The page marked every member under a remove rule REMOVE, an animation too (its hash
    # sees its first frame only), and apply carried the exported decisions out; the CLI's
    # --remove-in spared it.
    lib = tmp_path / "lib"
    (lib / "Exports").mkdir(parents=True)
    first = scene(1, (240, 160)).quantize(64).convert("RGB")
    first.save(lib / "still.png")
    first.save(lib / "Exports" / "anim.gif", save_all=True, duration=100,
               append_images=[first.transpose(Image.Transpose.ROTATE_180)])
    first.save(lib / "Exports" / "still_copy.png", optimize=True)
    report = _scan_to_report(lib, tmp_path / "r.json")
    html = tmp_path / "r.html"
    write_html(report, html)
    blob = _blob(html.read_text())
    assert [m.get("fr") for m in blob["groups"][0]["m"]].count(1) == 1
    web.open(html)
    pg = web.page
    _remove_under(web, html, lib / "Exports")
    assert "it holds several pictures" in pg.inner_text("#groups")
    dec = web.export(tmp_path / "decisions.json")
    (group,) = dec["groups"]
    assert str(lib / "Exports" / "anim.gif") in group["keep"]
    assert group["remove"] == [str(lib / "Exports" / "still_copy.png")]
    assert web.console == []


@pytest.mark.slow
def test_a_remove_rule_on_the_page_keeps_a_hash_matched_copy_not_only_a_joined_one(
        web, tmp_path):
    # The page's "last copy" check counted a kept member embeddings joined: a remove rule on
    # the folder of a picture's two copies removed both, and apply carried the export out.
    data = _synthetic(1, root=str(tmp_path))
    exp, other = f"{tmp_path}/Exp", f"{tmp_path}/Other"
    p, copy, crop = (_member(f"{exp}/p.png"), _member(f"{exp}/p_copy.jpg", 1),
                     _member(f"{other}/crop.png", 40))
    crop.update(match="embedding", similarity=0.66)
    data["roots"] = [str(tmp_path)]
    data["groups"] = [{"id": 1, "kind": "near", "representative": p["path"],
                       "members": [p, copy, crop], "keep": [p["path"], crop["path"]],
                       "keep_reason": "first by path"}]
    report = tmp_path / "r.json"
    report.write_text(json.dumps(data))
    html = tmp_path / "r.html"
    write_html(report, html, thumbnails="none")
    web.open(html)
    _remove_under(web, html, exp)
    dec = web.export(tmp_path / "decisions.json")
    (group,) = dec["groups"]
    assert p["path"] in group["keep"] and group["remove"] == [copy["path"]]
    assert web.console == []


@pytest.mark.slow
def test_a_remove_rule_on_the_page_decides_by_every_name_of_a_file(web, tmp_path, scene):
    # The page judged a hard-linked file by its first name only: a remove rule on Exports
    # removed it though its other name lies in Originals (apply --remove-in keeps it), and
    # Originals was not even offered for a rule.
    lib = tmp_path / "lib"
    for d in ("Exports", "Originals", "Backup"):
        (lib / d).mkdir(parents=True)
    scene(1).save(lib / "Exports" / "p.png")
    os.link(lib / "Exports" / "p.png", lib / "Originals" / "p.png")
    shutil.copyfile(lib / "Exports" / "p.png", lib / "Backup" / "p.png")
    report = _scan_to_report(lib, tmp_path / "r.json")
    html = tmp_path / "r.html"
    write_html(report, html, thumbnails="none")
    folders = [f["p"] for f in _blob(html.read_text())["folders"]]
    assert str(lib / "Originals") in folders
    web.open(html)
    _remove_under(web, html, lib / "Exports")
    dec = web.export(tmp_path / "decisions.json")
    (group,) = dec["groups"]
    assert not any("/Exports/" in p or "/Originals/" in p for p in group["remove"])
    assert web.console == []


@pytest.mark.slow
def test_a_remove_rule_on_the_page_spares_other_shots(web, tmp_path, scene):
    """A burst's frames hash alike: the page's remove rule marked all but one REMOVE, where
    apply's folder rules (and keep rules) keep each shot; a copy of a shot still goes."""
    lib = tmp_path / "lib"
    (lib / "DCIM").mkdir(parents=True)
    base = scene(5, (240, 160))
    save_burst(base, lib / "DCIM")
    base.save(lib / "DCIM" / "IMG_0_copy.png")  # no EXIF: a copy of some shot
    report = _scan_to_report(lib, tmp_path / "r.json")
    html = tmp_path / "r.html"
    write_html(report, html)
    blob = _blob(html.read_text())
    (g,) = blob["groups"]
    assert sorted(m["p"].rsplit("/", 1)[1] for m in g["m"] if m.get("sh")) == [
        "IMG_0.JPG", "IMG_1.JPG"]
    web.open(html)
    pg = web.page
    assert "kept: another shot" in pg.inner_text("#groups")  # the keeper's other shot
    _remove_under(web, html, lib / "DCIM")
    assert "another shot" in pg.inner_text("#groups")
    dec = web.export(tmp_path / "decisions.json")
    (group,) = dec["groups"]
    assert sorted(group["keep"]) == [str(lib / "DCIM" / "IMG_0.JPG"),
                                     str(lib / "DCIM" / "IMG_1.JPG")]
    assert group["remove"] == [str(lib / "DCIM" / "IMG_0_copy.png")]
    assert web.console == []


@pytest.mark.slow
def test_a_remove_rule_on_the_page_removes_byte_copies_of_a_burst(web, tmp_path, scene):
    """The page spared every member the policy kept as a shot: byte copies of a burst's
    frames under a remove rule (sorting first, so the policy had picked them) stayed, next
    to their twins. Each moment keeps the frame the rules keep, as apply does."""
    lib = tmp_path / "lib"
    (lib / "burst").mkdir(parents=True)
    (lib / "a_dupes").mkdir()
    for frame in save_burst(scene(7, (240, 160)), lib / "burst"):
        shutil.copy2(frame, lib / "a_dupes" / frame.name)
    report = _scan_to_report(lib, tmp_path / "r.json")
    html = tmp_path / "r.html"
    write_html(report, html)
    web.open(html)
    _remove_under(web, html, lib / "a_dupes")
    dec = web.export(tmp_path / "decisions.json")
    (group,) = dec["groups"]
    assert sorted(group["keep"]) == [str(lib / "burst" / "IMG_0.JPG"),
                                     str(lib / "burst" / "IMG_1.JPG")]
    assert sorted(group["remove"]) == [str(lib / "a_dupes" / "IMG_0.JPG"),
                                       str(lib / "a_dupes" / "IMG_1.JPG")]
    assert web.console == []
    # Planned from the export, the rule removed the copies (it said "decided in review").
    why = dict(lookalike.plan(tmp_path / "decisions.json", action="delete").groups[0].reasons)
    assert why[str(lib / "a_dupes" / "IMG_0.JPG")] == f"rule: remove under {lib / 'a_dupes'}"
    # A report whose keep list names one frame only (written before the shot rule): a remove
    # rule on the burst still leaves each moment a member (the page removed both frames).
    data = json.loads(report.read_text())
    data["groups"][0]["keep"] = [str(lib / "a_dupes" / "IMG_0.JPG")]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    write_html(old, tmp_path / "old.html")
    web.open(tmp_path / "old.html")
    _remove_under(web, tmp_path / "old.html", lib / "burst", lib / "a_dupes")
    (group,) = web.export(tmp_path / "old_decisions.json")["groups"]
    kept = {os.path.basename(p) for p in group["keep"]}
    assert kept == {"IMG_0.JPG", "IMG_1.JPG"}  # one member of each moment, wherever it is


def test_page_moments_find_a_raws_time_beside_it_in_any_group():
    """The page looked for a RAW's same-name JPEG in the RAW's own group only, the plan in
    every group: a RAW whose camera JPEG had grouped elsewhere was another shot to apply
    and removable on the page."""
    from lookalike.report.html import _page_data

    data = _synthetic(2, per_group=2)
    g1, g2 = data["groups"]
    raw, jpeg = "/nowhere/cam/IMG_1.CR3", "/nowhere/cam/IMG_1.JPG"
    g1["members"][0]["path"], g1["representative"] = jpeg, jpeg  # the JPEG's own group
    g2["members"] = [_member(raw), _member("/nowhere/cam/IMG_2.JPG", 1)]
    g2["representative"] = raw
    facts = {jpeg: {"taken": "2024-06-01 10:00:00.10"},
             "/nowhere/cam/IMG_2.JPG": {"taken": "2024-06-01 10:00:00.45"}}
    page = _page_data(data, data["groups"], None, {}, facts=facts)
    moments = [m.get("mo") for m in page["groups"][1]["m"]]
    assert None not in moments and len(set(moments)) == 2


@pytest.mark.slow
def test_compare_view_fits_the_window_with_long_names_and_c_opens_it_after_a_click(
        web, tmp_path, scene):
    # A long file name in a side's menu widened its frame: the right picture, its Keep and
    # Remove buttons and Close went out of the window. And C did nothing once a toggle or
    # a thumbnail had the focus (after any click in the list, or after closing the view).
    name = "2023-07-14 Family reunion at Lake Tahoe, everyone on the dock (final edit for print)"
    lib = tmp_path / "lib"
    (lib / "O").mkdir(parents=True)
    (lib / "E").mkdir()
    scene(1, (400, 300)).save(lib / "O" / f"{name}.jpg", quality=95)
    scene(1, (200, 150)).save(lib / "E" / f"  {name} - web.jpg")  # two leading spaces
    report = _scan_to_report(lib, tmp_path / "r.json")
    html = tmp_path / "r.html"
    write_html(report, html)
    web.open(html)
    pg = web.page
    assert f"  {name} - web.jpg" in pg.locator(".path .name").all_inner_texts()
    pg.locator("article.group .member").first.locator("button").first.click()  # a toggle
    pg.keyboard.press("c")
    assert pg.locator("#compare").is_visible()
    width = pg.evaluate("innerWidth")
    for sel in (".frame", ".cmp-side", "#compare button"):
        for box in (pg.locator(sel).nth(i).bounding_box()
                    for i in range(pg.locator(sel).count())):
            if box is not None:
                assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (sel, box)
    frames = [pg.locator(".frame").nth(i).bounding_box()["width"] for i in range(2)]
    assert abs(frames[0] - frames[1]) <= 1 and frames[0] > width * 0.4
    # I hides the facts under the pictures, which then grow (on a laptop they took ~300 px).
    tall = pg.locator(".frame").first.bounding_box()["height"]
    pg.keyboard.press("i")
    assert not pg.locator(".cmp-facts").first.is_visible()
    assert pg.locator(".frame").first.bounding_box()["height"] > tall + 50
    pg.keyboard.press("i")
    assert pg.locator(".cmp-facts").first.is_visible()
    pg.keyboard.press("Escape")
    assert not pg.locator("#compare").is_visible()
    pg.keyboard.press("c")  # the focus went back to what opened it
    assert pg.locator("#compare").is_visible()
    assert not web.console, web.console


@pytest.mark.slow
def test_a_mirrored_copy_says_so_beside_its_distance_on_the_page(web, tmp_path, scene):
    from PIL import ImageOps

    lib = tmp_path / "lib"
    lib.mkdir()
    img = scene(3, (320, 240))
    img.resize((640, 480)).save(lib / "a.png")
    ImageOps.mirror(img).save(lib / "mirrored.png")
    report = _scan_to_report(lib, tmp_path / "r.json")
    html = tmp_path / "r.html"
    write_html(report, html)
    web.open(html)
    texts = web.page.locator(".member .dist").all_inner_texts()
    assert any(t.startswith("distance 0 bits flipped, turned or trimmed (") and
               t.endswith(" bits as it is)") for t in texts), texts
    assert not web.console, web.console
