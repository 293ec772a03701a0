"""Under CI a test that skips itself fails: it would hide a broken fixture (conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.mark.slow
def test_self_skips_fail_only_under_strict_skips(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_fixture_lost_its_photos():\n"
        "    pytest.skip('real photos unavailable')\n"
        "@pytest.mark.skipif(True, reason='runs as root')\n"
        "def test_platform():\n"
        "    pass\n"
        "def test_optional_build():\n"
        "    pytest.skip('pdqhash is not installed')\n")

    def run(strict: str) -> str:
        env = {**os.environ, "LOOKALIKE_STRICT_SKIPS": strict,
               "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest",
                              "-p", "no:cacheprovider", str(tmp_path)],
                             capture_output=True, text=True, env=env, cwd=tmp_path)
        return out.stdout.strip().splitlines()[-1]

    assert run("1").startswith("1 failed, 2 skipped")
    assert run("0").startswith("3 skipped")
