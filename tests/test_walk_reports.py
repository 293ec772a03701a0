"""Nothing the walk passes over goes unsaid: an unreadable file is a candidate (its reader
says why), every format Pillow decodes is known by its content, a walked EPS gets its
`unsupported-format` line, and the text summary counts the files that were not images."""

from __future__ import annotations

import errno
import io
import os

import pytest
from PIL import Image

import lookalike
from lookalike.inputs.walk import FileEntry, WalkStats, _sniff, iter_files, looks_like_image
from lookalike.report.schema import render_text

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


def _deny(monkeypatch, path):
    """Make ``os.open`` of ``path`` fail as a file without read permission does (tests may
    run as root, where chmod 000 stops nobody); the walk's sniff and the reader both open
    with it."""
    real = os.open

    def fake(p, flags, *args, **kwargs):
        if os.fspath(p) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(p))
        return real(p, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake)


def test_a_file_whose_first_bytes_cannot_be_read_is_reported_not_skipped(tmp_path, scene,
                                                                         monkeypatch):
    """It was counted as a non-image without a word: the sniff's open failed and said "no
    image". Now it is a candidate, and the reader gives its one permission-denied line."""
    scene(1).save(tmp_path / "a.png")
    locked = tmp_path / "locked_no_extension"
    scene(2).save(locked, "PNG")
    (tmp_path / "notes.txt").write_text("hello")
    _deny(monkeypatch, locked)
    assert _sniff(str(locked)) is None  # unknown, not "no image"
    assert not looks_like_image(str(locked))  # what refuse_overwrite asks: not known to be
    stats = WalkStats()
    found = [e.path for e in iter_files([tmp_path], stats=stats) if isinstance(e, FileEntry)]
    assert str(locked) in found and stats.skipped_non_image == 1  # notes.txt only
    result = lookalike.scan(tmp_path, workers=1)
    assert [(os.path.basename(p.path), p.error) for p in result.errors] == [
        ("locked_no_extension", "permission-denied")]
    assert result.stats["images"] == 1 and result.stats["skipped_non_image"] == 1


def _encoded(fmt: str, mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).convert(mode).save(buf, fmt)
    return buf.getvalue()


# Files Pillow decodes, named without an image extension: the content must say so.
DECODED = {
    "raw_ppm": lambda: _encoded("PPM"),
    "raw_pgm": lambda: _encoded("PPM", "L"),
    "raw_pbm": lambda: _encoded("PPM", "1"),
    "plain_pbm": lambda: b"P1\n2 2\n0 1\n1 0\n",
    "plain_ppm_with_comment": lambda: b"P3\n# made by hand\n2 1\n255\n255 0 0 0 255 0\n",
    "pfm": lambda: b"Pf\n2 1\n-1.0\n" + b"\x00\x00\x80\x3f" * 2,
    "pcx": lambda: _encoded("PCX"),
    "icns": lambda: _encoded("ICNS", size=(32, 32)),
    "dds": lambda: _encoded("DDS"),
    "blp": lambda: _encoded("BLP", "P"),
    "sgi": lambda: _encoded("SGI"),
    "msp": lambda: _encoded("MSP", "1"),
}

# Text (and a PostScript document, which is no picture) that starts like some of them.
NOT_IMAGES = {
    "note_p1": b"P1 is the first priority\n",
    "note_p3": b"P3\nthird point\n",
    "note_pf": b"Pf\nnot a float map\n",
    "note_p7": b"P7\nWIDTH 2\nHEIGHT 1\n",  # PAM: Pillow does not read it
    "note_dds": b"DDS report\n",
    "note_newline": b"\n\n\nblank lines first\n",
    "document_ps": b"%!PS-Adobe-3.0\n%%Pages: 1\nshowpage\n",
}


def test_every_format_pillow_decodes_is_known_by_its_content(tmp_path):
    """Netpbm (PBM/PGM/PPM, plain and raw; PFM), PCX, ICNS, DDS, BLP, SGI and MSP files
    without an image extension were skipped as non-images, though the README says the
    format is detected from content. Texts that start like them stay skipped."""
    for name, data in DECODED.items():
        (tmp_path / name).write_bytes(data())
        Image.open(tmp_path / name).load()  # Pillow does decode it
    for name, data in NOT_IMAGES.items():
        (tmp_path / name).write_bytes(data)
    stats = WalkStats()
    found = sorted(os.path.basename(e.path) for e in iter_files([tmp_path], stats=stats))
    assert found == sorted(DECODED)
    assert stats.skipped_non_image == len(NOT_IMAGES)
    result = lookalike.scan(tmp_path, workers=1)
    assert result.errors == [] and result.stats["images"] == len(DECODED)


def test_a_walked_eps_gets_its_unsupported_format_line(tmp_path):
    """The README says EPS "is reported as `unsupported-format`": it was when named, but
    one inside a folder was skipped without a word. By name or by content (never decoded,
    never given to Ghostscript), it is now one line; a PostScript document is no image."""
    (tmp_path / "art.eps").write_bytes(EPS)
    (tmp_path / "ART.EPSF").write_bytes(EPS)
    (tmp_path / "exported").write_bytes(EPS)  # no extension: its first line says EPSF
    (tmp_path / "dos_binary").write_bytes(b"\xc5\xd0\xd3\xc6" + bytes(28))
    (tmp_path / "letter.ps").write_bytes(NOT_IMAGES["document_ps"])
    result = lookalike.scan(tmp_path, workers=1)
    assert sorted((os.path.basename(p.path), p.error) for p in result.errors) == [
        ("ART.EPSF", "unsupported-format"), ("art.eps", "unsupported-format"),
        ("dos_binary", "unsupported-format"), ("exported", "unsupported-format")]
    assert result.stats["skipped_non_image"] == 1  # letter.ps


@pytest.mark.parametrize("others", [0, 1, 3])
def test_the_text_summary_counts_the_files_that_were_not_images(tmp_path, scene, others):
    """Files the walk skipped as non-images were only in the JSON stats: the summary said
    "N images scanned" and nothing of them."""
    scene(1).save(tmp_path / "a.png")
    for k in range(others):
        (tmp_path / f"notes{k}.txt").write_text("hello")
    first = render_text(lookalike.scan(tmp_path, workers=1)).splitlines()[0]
    assert first.startswith("1 image scanned, 0 duplicate groups, 0 duplicates "), first
    said = {0: None, 1: "1 other file skipped (not images)",
            3: "3 other files skipped (not images)"}[others]
    if said is None:
        assert "skipped" not in first, first
    else:
        assert first.endswith(f"0 errors, {said}"), first
