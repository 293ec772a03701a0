"""Import hygiene: a light top-level import and a complete, sorted public API."""

from __future__ import annotations

import json
import subprocess
import sys

import lookalike
from conftest import loaded_by, loaded_by_command


def test_import_lookalike_loads_no_heavy_dependencies():
    assert loaded_by("import lookalike", ("PIL", "dask", "jinja2", "scipy", "pywt", "rich",
                                          "click")) == []


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


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_lazy_names_resolve_to_their_submodules_objects_in_a_fresh_process():
    # Each name of __all__, first touched through the package (PEP 562 __getattr__), is the
    # very object its submodule defines, and then sits in the package namespace.
    code = ("import importlib, lookalike\n"
            "bad = []\n"
            "for name, mod in lookalike._LAZY.items():\n"
            "    value = getattr(lookalike, name)\n"
            "    sub = importlib.import_module('lookalike.' + mod)\n"
            "    if value is not getattr(sub, name) or vars(lookalike)[name] is not value:\n"
            "        bad.append(name)\n"
            "missing = [n for n in lookalike.__all__ if not hasattr(lookalike, n)]\n"
            "print(bad, missing)")
    assert _fresh(code) == "[] []"
    assert set(lookalike._LAZY) <= set(lookalike.__all__)
    assert set(lookalike.__all__) <= set(dir(lookalike))


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no_such_name"):
        lookalike.no_such_name  # noqa: B018


def test_import_lookalike_loads_only_its_small_core():
    out = _fresh("import sys, lookalike; "
                 "print(sorted(m for m in sys.modules if m.startswith('lookalike')))")
    assert out == str(["lookalike", "lookalike.config", "lookalike.errors", "lookalike.events",
                       "lookalike.model", "lookalike.version"])


def test_cli_import_loads_neither_numpy_nor_pillow_nor_rich():
    assert loaded_by("import lookalike.cli", ("numpy", "PIL", "rich", "lookalike.imaging.hashes",
                                              "lookalike.pipeline")) == []


def test_method_specs_are_the_registry_sizes():
    from lookalike.config import METHOD_NAMES, METHOD_SPECS
    from lookalike.imaging.hashes import METHODS

    assert list(METHOD_NAMES) == list(METHODS) == list(METHOD_SPECS)
    for name, m in METHODS.items():
        spec = METHOD_SPECS[name]
        assert (m.default_size, m.min_size, m.sizes) == (spec.default_size, spec.min_size,
                                                         spec.sizes)
        assert [m.nbits(s) for s in (1, 3, 8, 16)] == [spec.nbits(s) for s in (1, 3, 8, 16)]
    assert METHOD_SPECS["colorhash"].nbits(3) == 42 and METHOD_SPECS["pdq"].nbits(16) == 256


def test_a_warm_rescan_of_an_unchanged_tree_loads_neither_numpy_nor_pillow(tmp_path,
                                                                               scene):
    # All that is left to do is read the cache and print: NumPy's import alone was a fifth
    # of a 20k-image warm re-scan.
    for i in range(6):
        scene(i % 3, (64, 48)).save(tmp_path / f"{i}.png")
    db, out = tmp_path / "c.sqlite", tmp_path / "r.json"
    argv = ["scan", str(tmp_path), "-q", "-j", "1", "--cache", str(db), "-o", str(out)]
    for _ in range(2):  # cold, then a warm run in a fresh interpreter
        loaded = loaded_by_command(argv, ("numpy", "PIL", "lookalike.search"))
    assert loaded == []
    assert json.loads(out.read_text())["stats"]["codes_new"] == 0
    assert json.loads(out.read_text())["groups"]


def test_reading_the_cache_needs_neither_pillow_nor_a_process_pool():
    # A warm re-scan answers from the hash cache: validating the config, keying the cache
    # and importing the executors must not load Pillow or multiprocessing (tens of ms).
    code = ("import lookalike.executors; from lookalike.config import ScanConfig; "
            "from lookalike.store.cache import settings_key; "
            "c = ScanConfig(); settings_key(c); c.nbits")
    assert loaded_by(code, ("PIL", "multiprocessing")) == []
    from lookalike.config import DECODER_VERSION
    from lookalike.executors import ProcessExecutor
    from lookalike.executors.local import ProcessExecutor as local_pool
    from lookalike.imaging.decode import DECODER_VERSION as decode_version

    assert decode_version == DECODER_VERSION and ProcessExecutor is local_pool


def test_dir_shows_the_public_api_only():
    # It listed the package's own imports (os, contextlib, Any, annotations) and submodules.
    import lookalike

    assert set(dir(lookalike)) == {*lookalike.__all__, "__version__"}
    assert all(hasattr(lookalike, name) for name in lookalike.__all__)
