#!/usr/bin/env bash
# Set up a virtualenv, build a sample folder (real photos fetched from PyPI/Debian plus
# resized, re-encoded, brightened... copies of them) and scan it for duplicates.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
.venv/bin/python scripts/make_sample.py sample
.venv/bin/lookalike scan sample --no-cache -o sample/report.json "$@"
