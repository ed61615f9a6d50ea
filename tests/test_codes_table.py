"""The one table of GT codes (``guardtrain.core.codes``) against the package source.

The source is scanned when the tests run, so a code added, renamed or dropped anywhere in
``guardtrain/`` is caught without editing this file: a code raised but missing from the
table, an entry nothing raises any more, a code carried by the wrong error class.
"""

from __future__ import annotations

import ast
import pathlib
import re
from collections import Counter

import pytest

from guardtrain.core import codes as table
from guardtrain.core import errors

pytestmark = pytest.mark.pure

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "guardtrain"
TABLE_FILE = PACKAGE / "core" / "codes.py"
CODE = re.compile(r"GT\d{3}")
FAMILY_NAMES = set(table.FAMILIES.values())


def _sources() -> dict[str, str]:
    return {p.relative_to(PACKAGE.parent).as_posix(): p.read_text()
            for p in sorted(PACKAGE.rglob("*.py"))}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                found.add(id(first.value))
    return found


def _code_strings(tree: ast.AST):
    """(code, line) for each code in a string that is not a docstring: what runs."""
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docs):
            for code in CODE.findall(node.value):
                yield code, node.lineno


def _callee(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else (
        func.attr if isinstance(func, ast.Attribute) else None)


def _carried(tree: ast.AST):
    """(class name, code, line) wherever a code literal is given to an error class:
    ``SomeError(..., code="GT...")``, ``default_code = "GT..."`` in ``class SomeError``,
    and ``Problem("GT...", ...)`` (an InputSpecError's problem)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _callee(node)
            literal = None
            for kw in node.keywords:
                if kw.arg == "code" and isinstance(kw.value, ast.Constant):
                    literal = kw.value.value
            if name == "Problem":
                if node.args and isinstance(node.args[0], ast.Constant):
                    literal = node.args[0].value
                name = "InputSpecError"
            if name in FAMILY_NAMES and isinstance(literal, str) and CODE.fullmatch(literal):
                yield name, literal, node.lineno
        elif isinstance(node, ast.ClassDef) and node.name in FAMILY_NAMES:
            for stmt in node.body:
                if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                        and any(isinstance(t, ast.Name) and t.id == "default_code"
                                for t in stmt.targets)):
                    yield node.name, stmt.value.value, stmt.lineno


def _names_used(tree: ast.AST) -> set[str]:
    """Constants read as ``codes.NAME`` or imported from ``guardtrain.checking.codes``."""
    used = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "codes"):
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == "guardtrain.checking.codes":
            used.update(alias.name for alias in node.names)
    return used


SOURCES = _sources()
TREES = {path: ast.parse(text) for path, text in SOURCES.items()}
CODES_IN_TABLE = {entry.code for entry in table.CODES}


def test_the_scan_sees_the_package():
    # Guards the tests below against passing on an empty scan (a moved package).
    assert "guardtrain/core/errors.py" in SOURCES and len(SOURCES) >= 20
    assert len(table.CODES) >= 80


def test_every_code_in_the_source_is_in_the_table():
    missing = Counter()
    where = {}
    for path, text in SOURCES.items():
        for number, line in enumerate(text.splitlines(), 1):
            for code in CODE.findall(line):
                if code not in CODES_IN_TABLE:
                    missing[code] += 1
                    where.setdefault(code, f"{path}:{number}")
    assert not missing, ("codes used in guardtrain/ but missing from guardtrain/core/codes.py: "
                         + ", ".join(f"{c} (first at {where[c]})" for c in sorted(missing)))


def test_no_code_or_constant_name_appears_twice():
    counts = Counter(entry.code for entry in table.CODES)
    assert [c for c, n in counts.items() if n > 1] == []
    names = Counter(entry.name for entry in table.CODES if entry.name)
    assert [n for n, k in names.items() if k > 1] == []
    assert [e.code for e in table.CODES] == sorted(e.code for e in table.CODES)


def test_each_family_matches_the_hundreds_digit():
    wrong = [f"{e.code}: {e.family}, but GT{e.code[2]}xx is {table.FAMILIES.get(e.code[2])}"
             for e in table.CODES
             if not CODE.fullmatch(e.code) or table.FAMILIES.get(e.code[2]) != e.family]
    assert wrong == []
    assert all(table.family_of(e.code) == e.family for e in table.CODES)


def test_families_are_the_error_classes_and_their_default_codes_are_listed():
    for digit, name in table.FAMILIES.items():
        cls = getattr(errors, name)
        assert issubclass(cls, errors.GuardtrainError), name
        assert cls.default_code == f"GT{digit}00", name
        assert table.lookup(cls.default_code).family == name


def test_severity_only_where_it_applies():
    for e in table.CODES:
        if e.name is not None:        # a problem of gt.check
            assert e.family == "InputSpecError" and e.severity in ("error", "warning"), e
        else:
            assert e.severity is None, e
        assert e.meaning and "\n" not in e.meaning, e


def test_every_entry_is_still_raised_somewhere():
    """An entry is live when the code is in a string that runs (not only a docstring)
    outside the table, or, for a named GT2xx problem, when a module reads its constant."""
    in_code, names = set(), set()
    for path, tree in TREES.items():
        if PACKAGE.parent / path == TABLE_FILE:
            continue
        in_code.update(code for code, _ in _code_strings(tree))
        if path != "guardtrain/checking/codes.py":
            names |= _names_used(tree)
    stale = [f"{e.code} ({e.name or e.family}: {e.meaning})" for e in table.CODES
             if not e.retired and (e.name not in names if e.name else e.code not in in_code)]
    assert stale == [], ("entries in guardtrain/core/codes.py that nothing raises (mark a "
                         "dropped code retired=True): " + "; ".join(stale))


def test_no_retired_code_is_raised():
    retired = {e.code for e in table.CODES if e.retired}
    raised = [f"{path}:{line} {code}" for path, tree in TREES.items()
              if PACKAGE.parent / path != TABLE_FILE
              for code, line in _code_strings(tree) if code in retired]
    assert raised == [], "retired codes raised again: " + ", ".join(raised)
    assert all(e.name is None and e.severity is None for e in table.CODES if e.retired)


def test_each_error_carries_a_code_of_its_own_family():
    wrong = []
    for path, tree in TREES.items():
        for cls, code, line in _carried(tree):
            family = table.lookup(code).family if code in CODES_IN_TABLE else None
            if family != cls:
                wrong.append(f"{path}:{line} {cls}(code={code!r}), but the table puts "
                             f"{code} in {family}")
    assert wrong == [], "\n".join(wrong)


def test_the_checking_constants_come_from_the_table():
    from guardtrain.checking import codes as checking_codes

    assert checking_codes.ALL == table.problem_codes()
    assert len(checking_codes.ALL) >= 40
    for name, code in checking_codes.ALL.items():
        assert getattr(checking_codes, name) == code
        assert table.lookup(code).name == name
    # The constants are not re-typed: the literal codes live in the table only.
    assert not CODE.search(SOURCES["guardtrain/checking/codes.py"])


def test_lookup_and_family_of():
    assert table.lookup("GT205").severity == "error"
    assert table.lookup("GT213").severity == "warning"
    assert table.lookup("GT501").family == "RescueExhaustedError"
    with pytest.raises(KeyError, match=r"GT299.*nearby: GT2"):
        table.lookup("GT299")
    assert table.family_of("GT420") == "LaunchError"
    for bad in ("GT42", "GT901", "gt101", 101):
        with pytest.raises(ValueError, match="expected 'GT' and three digits"):
            table.family_of(bad)
