"""The one reason table: every code any module can emit is listed in ``errors.REASONS``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from lookalike.errors import (
    REASONS,
    RETRYABLE,
    ConfigError,
    Interrupted,
    JournalError,
    LookalikeError,
    PartialFailure,
    ReportError,
)

SRC = Path(__file__).resolve().parent.parent / "src" / "lookalike"

#: Codes built with an f-string, and every value each can take. A new f-string code fails
#: the test until it is listed here (and its expansions in REASONS).
TEMPLATES = {
    "not-{}": ("not-tar", "not-parquet"),  # remote.py: an input that is not a tar/Parquet file
}

#: Calls whose first positional argument is a reason code.
_CODE_FIRST = {"DecodeError", "_Refused"}


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _template(node: ast.JoinedStr) -> str:
    return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)


def _codes_in(node: ast.AST | None, out: dict[str, str], where: str) -> None:
    """Record ``node`` as a code if it is a string literal or an f-string template."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        out.setdefault(node.value, where)
    elif isinstance(node, ast.JoinedStr) and not re.search(r"\s", _template(node)):
        out.setdefault("template:" + _template(node), where)  # (with spaces: a message)
    elif isinstance(node, ast.IfExp):
        _codes_in(node.body, out, where)
        _codes_in(node.orelse, out, where)


def _first(node: ast.AST | None) -> ast.AST | None:
    return node.elts[0] if isinstance(node, ast.Tuple) and node.elts else node


def emitted_codes(root: Path = SRC) -> dict[str, str]:
    """Every reason code the sources under ``root`` can emit, with where one is emitted.

    Found statically: ``Problem(error=...)``; the code argument of a ``_problem(path, code,
    ...)`` helper, of ``DecodeError(code, ...)`` and of a scan's ``_Refused(code, ...)``;
    the values of ``*_REASONS`` tables; what functions named ``*reason*`` (or decode's
    ``_unidentified``) return, as a code or a ``(code, message)`` pair, and their default
    arguments; literals assigned to a variable ``reason`` (alone, first of a pair, or either
    branch of ``x if c else y``). An f-string counts as a code template unless it has spaces.
    """
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call):
                fn = _name(node.func)
                kw = {k.arg: k.value for k in node.keywords}
                if fn in ("Problem", "_problem"):
                    _codes_in(kw.get("error"), out, where)
                if fn == "_problem" and len(node.args) >= 2:
                    _codes_in(node.args[1], out, where)
                if fn in _CODE_FIRST and node.args:
                    _codes_in(node.args[0], out, where)
                if fn.endswith("_reason"):
                    for arg in node.args[1:]:
                        _codes_in(arg, out, where)
            elif isinstance(node, ast.Assign):
                names = [_name(_first(t)) for t in node.targets]
                if any(n.endswith("_REASONS") for n in names) and isinstance(node.value, ast.Dict):
                    for v in node.value.values:
                        _codes_in(v, out, where)
                if "reason" in names:
                    _codes_in(_first(node.value), out, where)
            elif isinstance(node, ast.AnnAssign) and _name(node.target).endswith("_REASONS"):
                if isinstance(node.value, ast.Dict):
                    for v in node.value.values:
                        _codes_in(v, out, where)
            elif isinstance(node, ast.FunctionDef) and (
                    "reason" in node.name or node.name == "_unidentified"):
                for d in node.args.defaults + node.args.kw_defaults:
                    _codes_in(d, out, where)
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Return):
                        _codes_in(_first(sub.value), out, f"{where} ({node.name})")
    return out


def test_the_scanner_finds_codes_of_every_kind(tmp_path):
    (tmp_path / "m.py").write_text(
        "_ERRNO_REASONS = {1: 'a-dict'}\n"
        "def f(p, fmt):\n"
        "    Problem(path=p, stage='x', error='a-kw', message='')\n"
        "    _problem(p, 'a-helper', 'message')\n"
        "    raise DecodeError('a-decode', 'message')\n"
        "    reason, message = 'an-assign', 'text'\n"
        "    reason = f'{p} changed since the scan'\n"
        "    reason = 'an-if' if p else f'an-{fmt}'\n"
        "    Problem(path=p, stage='x', error=f'not-{fmt}', message='')\n"
        "def _read_reason(exc, default='a-default'):\n"
        "    return 'a-return'\n"
        "def g():\n"
        "    return 'not-a-code'\n"
        "SkippedGroup(reason='free text, not a code')\n")
    assert set(emitted_codes(tmp_path)) == {
        "a-dict", "a-kw", "a-helper", "a-decode", "an-assign", "template:not-{}",
        "an-if", "template:an-{}", "a-default",
        "a-return"}


def test_every_emitted_reason_code_is_in_the_reason_table():
    found = emitted_codes()
    # The scan sees the codes of every stage (sanity: not an empty pass).
    assert {"truncated", "permission-denied", "undo-failed", "compressed-tar"} <= set(found)
    codes = set()
    for code in found:
        if code.startswith("template:"):
            template = code.removeprefix("template:")
            assert template in TEMPLATES, f"{found[code]}: list the values of {template!r}"
            codes.update(TEMPLATES[template])
        else:
            codes.add(code)
    missing = {c: found.get(c, "template") for c in sorted(codes - set(REASONS))}
    assert not missing, f"reason codes missing from errors.REASONS: {missing}"


def test_reason_codes_are_lowercase_words_with_a_meaning():
    for code, meaning in REASONS.items():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", code), code
        assert meaning.strip(), code


def test_apply_safety_codes_are_documented():
    # apply skips a group whose kept file is not what the report says, and never acts on
    # one file through two of its paths.
    assert "keeper-changed" in REASONS and "same-file" in REASONS


def test_retryable_codes_are_reason_codes():
    assert RETRYABLE and RETRYABLE.issubset(REASONS)
    # Passing causes are retried; a file that is simply bad is remembered as bad.
    assert {"timeout", "worker-crashed", "too-large"} <= RETRYABLE
    assert not {"corrupt", "truncated", "unsupported-format"} & RETRYABLE


def test_exit_codes_of_the_error_tree():
    assert ConfigError.exit_code == ReportError.exit_code == JournalError.exit_code == 2
    assert LookalikeError.exit_code == PartialFailure.exit_code == 1
    assert Interrupted("j.jsonl").exit_code == 130 and Interrupted("j.jsonl").journal == "j.jsonl"
    for cls in (ConfigError, ReportError, JournalError, PartialFailure, Interrupted):
        assert issubclass(cls, LookalikeError)


#: A command-line flag in a message: ``--max-pixels``, not a word with a hyphen.
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")

#: Calls whose string arguments are messages for the user.
_MESSAGE_CALLS = {"ConfigError", "ReportError", "JournalError", "DecodeError", "LookalikeError",
                  "PartialFailure", "Problem", "_problem", "_Refused", "SkippedGroup"}


def flag_messages(root: Path = SRC) -> list[str]:
    """``file:line: text`` of every message that names a command-line flag, outside
    ``cli.py``: the string literals in :data:`_MESSAGE_CALLS` calls and in what ``*reason*``
    functions return."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            parts: list[ast.AST] = []
            if isinstance(node, ast.Call) and _name(node.func) in _MESSAGE_CALLS:
                parts = [node]
            elif isinstance(node, ast.FunctionDef) and "reason" in node.name:
                parts = [r for r in ast.walk(node) if isinstance(r, ast.Return)]
            for part in parts:
                for s in ast.walk(part):
                    if (isinstance(s, ast.Constant) and isinstance(s.value, str)
                            and _FLAG.search(s.value)):
                        found.append(f"{rel}:{s.lineno}: {s.value!r}")
    return found


def test_the_flag_finder_sees_messages_and_ignores_prose(tmp_path):
    (tmp_path / "m.py").write_text(
        '"""Docs may say --workers."""\n'
        "def f(n):\n"
        "    raise ConfigError(f'{n} is too many; lower --workers')\n"
        "def _read_reason(exc):\n"
        "    return 'too-large', 'raise --max-pixels'\n"
        "def g():\n"
        "    return 'a well-known --- separator'\n"
        "    raise ConfigError('workers must be >= 1')\n")
    assert sorted(f.split(":")[1] for f in flag_messages(tmp_path)) == ["3", "5"]


def test_library_messages_name_settings_not_command_line_flags():
    # The command line adds flag names where it validates its options (click types);
    # the library is also called from Python, where no flag exists.
    offenders = flag_messages()
    assert not offenders, "\n".join(offenders)


def test_api_arguments_of_the_wrong_type_say_which_and_what_is_wanted(tmp_path, scene):
    """Each of these failed deep inside with an AttributeError or a TypeError about
    something else ('bool' object has no attribute 'lookup', ...)."""
    import lookalike

    scene(1).save(tmp_path / "a.png")
    for kwargs, match in (({"cache": False}, "cache must be"),
                          ({"files_from": 5}, "files_from must be a path"),
                          ({"batch_size": "8"}, "batch_size must be a whole number"),
                          ({"retries": 1.5}, "retries must be a whole number"),
                          ({"reporter": print}, "reporter must be an object with the methods"),
                          ({"config": {"threshold": 3}}, "config must be a ScanConfig")):
        with pytest.raises(TypeError, match=match):
            lookalike.scan(tmp_path, **kwargs)
    for paths in (5, None, b"/tmp", [tmp_path, 3]):
        with pytest.raises(TypeError, match="path"):
            lookalike.scan(paths)
    for fn in (lookalike.hash_image, lookalike.pdq_hash):
        with pytest.raises(TypeError, match="a path or a PIL image, not bytes"):
            fn(b"\x89PNG")
        with pytest.raises(lookalike.ConfigError, match="unknown decode mode 'slow'"):
            fn(tmp_path / "a.png", decode="slow")  # was silently "full"
    result = lookalike.scan(tmp_path, workers=1)
    report = tmp_path / "r.json"
    lookalike.write_report(result, report)
    with pytest.raises(TypeError, match=r"apply\(\) takes a Plan"):
        lookalike.apply(str(report))
    with pytest.raises(TypeError, match=r"remove_paths\(\) takes a ScanResult"):
        lookalike.remove_paths(str(report))
    # One query image as a str was read as its characters ("query image .../n").
    from lookalike.analysis.query import find_matches

    db = tmp_path / "c.sqlite"
    lookalike.scan(tmp_path, workers=1, cache=db)
    (found,), problems = find_matches(str(tmp_path / "a.png"), db)
    assert not problems and found.query.path == str(tmp_path / "a.png")
    with pytest.raises(lookalike.ConfigError, match="keep rules are a rule name"):
        lookalike.KeepPolicy.from_spec(3)
    # Right types still work: a Path as files_from, a list of Paths.
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.png'}\n")
    assert lookalike.scan([], files_from=tmp_path / "list.txt", workers=1).stats["images"] == 1
