"""Walking: deterministic order, symlinks, non-images, special files."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lookalike.errors import ConfigError, Problem
from lookalike.inputs.walk import (
    IMAGE_EXTENSIONS,
    FileEntry,
    WalkStats,
    _image_name,
    _image_name_of,
    _new_entry,
    iter_files,
)


def _tree(tmp_path, scene):
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    scene(1).save(tmp_path / "b" / "2.png")
    scene(2).save(tmp_path / "a" / "1.jpg")
    scene(3).save(tmp_path / "a" / "no_extension", "PNG")
    (tmp_path / "a" / "notes.txt").write_text("hello")
    return tmp_path


def test_walk_is_sorted_and_sniffs_files_without_image_extension(tmp_path, scene):
    root = _tree(tmp_path, scene)
    stats = WalkStats()
    found = [e.path for e in iter_files([root], stats=stats)]
    assert found == [str(root / "a" / "1.jpg"), str(root / "a" / "no_extension"),
                     str(root / "b" / "2.png")]
    assert stats.skipped_non_image == 1
    assert stats.files_seen == 4


def test_symlinks_are_skipped_by_default_and_loops_never_recurse(tmp_path, scene):
    root = _tree(tmp_path, scene)
    os.symlink(root / "a" / "1.jpg", root / "link.jpg")
    os.symlink(root, root / "a" / "loop")
    stats = WalkStats()
    paths = [e.path for e in iter_files([root], stats=stats) if isinstance(e, FileEntry)]
    assert str(root / "link.jpg") not in paths
    assert stats.skipped_symlinks == 2
    followed = list(iter_files([root], follow_symlinks=True))
    assert any(isinstance(p, Problem) and p.error == "symlink-loop" for p in followed)
    assert str(root / "link.jpg") in [e.path for e in followed if isinstance(e, FileEntry)]


def test_fifo_with_image_name_is_reported_not_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    (item,) = list(iter_files([tmp_path]))
    assert isinstance(item, Problem) and item.error == "not-a-regular-file"


def test_missing_root_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        list(iter_files([tmp_path / "nope"]))


def test_explicit_file_is_always_a_candidate(tmp_path, scene):
    p = tmp_path / "picture.data"
    scene(1).save(p, "PNG")
    (e,) = list(iter_files([p]))
    assert isinstance(e, FileEntry) and e.path == str(p) and e.size_bytes == p.stat().st_size


@given(st.text(alphabet=".aJgPn\u00e9\udcff", max_size=8).map(lambda s: s.replace("/", "")),
       st.sampled_from(["", ".png", ".JPG", ".Jpeg", ".txt", ".", "..png", ".tar.gz"]))
def test_fast_extension_test_agrees_with_splitext(stem: str, suffix: str):
    name = stem + suffix
    if not name or name in (".", ".."):
        return
    expected = os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
    assert _image_name_of(name) == expected
    assert _image_name(os.path.join("/some/dir", name)) == expected


@pytest.mark.parametrize("name", [".png", "..png", "...png", "a.png", ".a.png", "..a.PNG",
                                  "a.", "png", "a.png.txt", "a.tar.png", ".hidden"])
def test_fast_extension_test_on_dot_names(name: str):
    assert _image_name_of(name) == (os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)


def test_fast_entry_equals_the_dataclass_constructor():
    e = _new_entry("/x/y.png", 12, 34, "/x", 5, 6, (), 78)
    assert type(e) is FileEntry and e == FileEntry("/x/y.png", 12, 34, "/x", 5, 6, ctime_ns=78)
    assert hash(e) == hash(FileEntry("/x/y.png", 12, 34, "/x", 5, 6, ctime_ns=78))


def test_walk_of_odd_entries_is_unchanged(tmp_path, scene):
    # Dot names, upper-case and extension-less images, non-images, an image-named folder,
    # a FIFO and links: every outcome of the walk's per-entry paths in one tree.
    img = scene(1)
    (tmp_path / "d.png").mkdir()
    for name in ("..png", ".png", "x.PNG", "y.JpEg", "z.png.txt", "noext"):
        img.save(tmp_path / name, "PNG")
    img.save(tmp_path / "d.png" / "inner.gif", "GIF")
    (tmp_path / "text.png.md").write_text("not an image")
    (tmp_path / "plain").write_text("not an image either")
    os.mkfifo(tmp_path / "pipe.bmp")
    os.mkfifo(tmp_path / "pipe")
    os.symlink(tmp_path / "x.PNG", tmp_path / "link.png")
    os.symlink(tmp_path / "missing.png", tmp_path / "dangling.png")
    for follow in (False, True):
        stats = WalkStats()
        out = [(os.path.basename(i.path), type(i).__name__, getattr(i, "error", None))
               for i in iter_files([tmp_path], follow_symlinks=follow, stats=stats)]
        expected = [
            ("..png", "FileEntry", None),  # sniffed: "..png" has no extension
            (".png", "FileEntry", None),  # sniffed too
            ("inner.gif", "FileEntry", None),  # in d.png/, which sorts before dangling.png
            *([("dangling.png", "Problem", "broken-symlink")] if follow else []),
            *([("link.png", "FileEntry", None)] if follow else []),
            ("noext", "FileEntry", None),
            ("pipe.bmp", "Problem", "not-a-regular-file"),
            ("x.PNG", "FileEntry", None),
            ("y.JpEg", "FileEntry", None),
            ("z.png.txt", "FileEntry", None),  # sniffed
        ]
        assert out == expected
        assert (stats.files_seen, stats.skipped_non_image,
                stats.skipped_symlinks) == ((12, 3, 0) if follow else (11, 3, 2))

