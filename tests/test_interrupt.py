"""Ctrl-C during a multi-process scan: exit 130, no orphan workers, a usable cache."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest


def _processes_mentioning(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if marker in (d / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc to look for orphans")
def test_ctrl_c_stops_workers_and_leaves_a_consistent_cache(tmp_path, scene):
    root = tmp_path / f"imgs-{uuid.uuid4().hex}"  # unique marker in every worker's argv
    root.mkdir()
    scene(0, (1600, 1200)).save(root / "000.png")
    data = (root / "000.png").read_bytes()
    for i in range(1, 600):
        (root / f"{i:03d}.png").write_bytes(data)
    db = tmp_path / "cache.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "scan", str(root), "-j", "2", "--cache", str(db),
         "--decode", "full", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "CI": "1"},
    )
    time.sleep(2.5)  # mid-hashing: 600 large PNGs take far longer on two cores
    assert proc.poll() is None, "scan finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    time.sleep(0.5)
    assert _processes_mentioning(root.name) == []
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    done = con.execute("SELECT count(*) FROM files").fetchone()[0]
    assert 0 <= done < 600


@pytest.mark.slow
def test_ctrl_c_of_a_local_dask_scan_says_interrupted_without_worker_tracebacks(tmp_path,
                                                                                scene):
    pytest.importorskip("distributed")
    root = tmp_path / "imgs"
    root.mkdir()
    scene(0, (1600, 1200)).save(root / "000.png")
    data = (root / "000.png").read_bytes()
    for i in range(1, 400):
        (root / f"{i:03d}.png").write_bytes(data)
    # A terminal sends Ctrl-C to the whole process group: so does this test.
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "scan", str(root), "--engine", "dask", "-j", "2",
         "--no-cache", "--decode", "full", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "CI": "1"},
        start_new_session=True)
    time.sleep(6)  # the cluster started, hashing under way
    assert proc.poll() is None, "scan finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err.decode()[-2000:]
