"""The README's promises: its two opening commands, CI running the second, the demo."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import lookalike
from conftest import REPO


def _opening_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    m = re.match(r"```sh\n(.*?)```", text, re.S)
    assert m, "README must start with a ```sh block"
    return [line.split("#")[0].strip() for line in m.group(1).splitlines() if line.strip()]


def test_readme_starts_with_exactly_two_commands():
    cmds = _opening_commands()
    assert cmds == ["bash scripts/demo.sh", "bash scripts/test.sh"]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert _opening_commands()[1] in ci


@pytest.mark.slow
def test_demo_sample_has_real_duplicate_groups(tmp_path):
    out = tmp_path / "sample"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_sample.py"), str(out)],
                   check=True, capture_output=True)
    originals = sorted(p.stem for p in (out / "originals").iterdir())
    result = lookalike.scan(out, workers=1)
    assert result.errors == []
    assert len(result.groups) >= len(originals) // 2
    for g in result.groups:  # every group holds one photo's copies (or the stereo pair)
        stems = {p.rsplit("/", 1)[1].split(".")[0].split("__")[0] for p in g.paths}
        assert len(stems) == 1 or stems <= {"motorcycle_left", "motorcycle_right"}, g.paths


def _python_example() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"## Python API\n\n```python\n(.*?)```", text, re.S)
    assert m, "README's Python API section must start with a ```python block"
    return m.group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys, photos):
    # The files it names: photos/ with a photo and its half-size copy, a.jpg and b.jpg.
    from PIL import Image

    (tmp_path / "photos").mkdir()
    photo = Image.open(photos[0]).convert("RGB")
    photo.save(tmp_path / "photos" / "original.jpg", quality=95)
    photo.resize((photo.width // 2, photo.height // 2)).save(tmp_path / "photos" / "half.png")
    Image.open(photos[1]).convert("RGB").save(tmp_path / "photos" / "other.jpg")
    photo.save(tmp_path / "a.jpg")
    Image.open(photos[1]).convert("RGB").save(tmp_path / "b.jpg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_python_example(), "README.md", "exec"), namespace)
    lines = capsys.readouterr().out.splitlines()
    # One group: the photo and its copy (representative first, then the other member).
    assert len(lines) == 2 and "photos" in lines[0], lines
    assert {lines[0].split()[-1].rsplit("/", 1)[1], lines[1].split()[0].rsplit("/", 1)[1]} \
        == {"original.jpg", "half.png"}
    assert namespace["h"] == lookalike.hash_image(tmp_path / "a.jpg", "phash")
    assert (tmp_path / "report.json").is_file()
