"""Walking: deterministic order, symlinks, non-images, special files."""

from __future__ import annotations

import os

import pytest

from lookalike.errors import ConfigError, Problem
from lookalike.sources import FileEntry, WalkStats, iter_files


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
