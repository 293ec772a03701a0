"""Import hygiene: a light top-level import and a complete, sorted public API."""

from __future__ import annotations

import subprocess
import sys

import lookalike


def test_import_lookalike_loads_no_heavy_dependencies():
    code = ("import sys, lookalike; heavy = [m for m in ('PIL', 'dask', 'jinja2', 'scipy', "
            "'pywt', 'rich', 'click') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions and dunders.
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


def test_all_is_sorted_unique_and_resolvable():
    assert lookalike.__all__ == sorted(lookalike.__all__, key=_isort_key)
    assert len(set(lookalike.__all__)) == len(lookalike.__all__)
    for name in lookalike.__all__:
        assert hasattr(lookalike, name), name


def test_every_public_class_and_function_is_exported():
    import inspect

    public = {n for n, v in vars(lookalike).items()
              if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
              and getattr(v, "__module__", "").startswith("lookalike")}
    assert public <= set(lookalike.__all__)
