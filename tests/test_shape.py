"""The shape of the package: no import cycle, the layers of docs/architecture.md, a core
that loads no TensorFlow, Keras or Ray, small modules, and a pinned public surface.

Everything is read from the source when the tests run, so a module added, moved or split
is covered without editing this file.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import guardtrain as gt

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "guardtrain"
MAX_LINES = 500
HEAVY = ("tensorflow", "keras", "ray")
#: Layers below the interface; none of them may reach up into it.
LOWER_LAYERS = ("core", "engine", "ray", "records", "checking")

#: ``guardtrain.__all__`` as released; a change here is a change of the public API.
PUBLIC = [
    "CheckReport", "ConfigError", "GuardConfig", "GuardtrainError", "InputSpecError",
    "LaunchConfig", "LaunchError", "Problem", "RescueConfig", "RescueExhaustedError",
    "Result", "UnhealthyTrainingError", "check", "data", "fit", "load_history", "plot",
    "report", "split_cpu",
]


# -- reading the package ------------------------------------------------------------------
def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, pathlib.Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _under_type_checking(tree: ast.AST) -> set[int]:
    """Import nodes inside ``if TYPE_CHECKING:``: they never run, so they close no cycle."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def _imports(name: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the module, at any depth, resolved to
    the module the statement loads: ``from pkg import name`` is ``pkg.name`` when that is
    a module of guardtrain, else ``pkg``. ``importlib.import_module("...")`` with a
    literal counts too."""
    tree = ast.parse(MODULES[name].read_text())
    skipped = _under_type_checking(tree)
    package = name if _is_package(name) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.append((sub if sub in MODULES else module, node.lineno))
        elif (isinstance(node, ast.Call) and ast.unparse(node.func) in (
                "importlib.import_module", "import_module", "__import__")
                and node.args and isinstance(node.args[0], ast.Constant)):
            found.append((node.args[0].value, node.lineno))
    return found


IMPORTS = {name: _imports(name) for name in MODULES}


def _graph() -> dict[str, set[str]]:
    return {name: {target for target, _ in IMPORTS[name]
                   if target in MODULES and target != name}
            for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected component (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for component in components:
        start = min(component)
        paths = {start: [start]}            # breadth-first, back to start, inside it
        queue = [start]
        while queue:
            v = queue.pop(0)
            nxt = sorted(w for w in graph[v] if w in component)
            if start in nxt:
                cycles.append(paths[v] + [start])
                break
            for w in nxt:
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    queue.append(w)
    return cycles


def _layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "guardtrain" else None


# -- tests --------------------------------------------------------------------------------
@pytest.mark.pure
def test_the_scan_sees_every_layer():
    # Guards the tests below against passing on an empty or partial scan.
    layers = {_layer(name) for name in MODULES}
    assert set(LOWER_LAYERS) | {"interface"} <= layers
    assert _graph()["guardtrain.checking"]          # an __init__'s own imports are seen


@pytest.mark.pure
def test_the_cycle_finder_reports_a_path():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.pure
def test_no_import_cycle_among_guardtrain_modules():
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.pure
def test_core_imports_only_core_the_standard_library_and_numpy():
    allowed = set(sys.stdlib_module_names) | {"numpy", "__future__"}
    wrong = []
    for name in MODULES:
        if _layer(name) != "core":
            continue
        for target, line in IMPORTS[name]:
            top = target.split(".")[0]
            if (top == "guardtrain" and _layer(target) != "core") or (
                    top != "guardtrain" and top not in allowed):
                wrong.append(f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}")
    assert wrong == [], "guardtrain.core must stay pure:\n" + "\n".join(wrong)


@pytest.mark.pure
def test_no_lower_layer_imports_the_interface():
    wrong = [f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}"
             for name in MODULES if _layer(name) in LOWER_LAYERS
             for target, line in IMPORTS[name] if _layer(target) == "interface"]
    assert wrong == [], "\n".join(wrong)


# Records, for each heavy package, the guardtrain frames that first imported it (the
# import goes on unchanged), then imports the module and prints what got loaded.
_PROBE = """
import sys, traceback
HEAVY = {heavy!r}
first = {{}}

class Watch:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in HEAVY and top not in first:
            first[top] = [f"{{f.filename.split('guardtrain/', 1)[-1]}}:{{f.lineno}}"
                          for f in traceback.extract_stack() if "/guardtrain/" in f.filename]
        return None

sys.meta_path.insert(0, Watch())
import {module}
loaded = [m for m in HEAVY if m in sys.modules]
print("; ".join(f"{{m}} via {{' <- '.join(reversed(first.get(m, ['?'])))}}" for m in loaded))
"""

CORE = sorted(name for name in MODULES if _layer(name) == "core")


@pytest.mark.pure
@pytest.mark.parametrize("module", CORE)
def test_core_module_loads_no_tensorflow_keras_or_ray(module):
    out = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY, module=module)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import {module} loads {out.stdout.strip()}"


@pytest.mark.pure
def test_no_module_over_500_lines():
    sizes = {str(path.relative_to(ROOT)): len(path.read_text().splitlines())
             for path in MODULES.values()}
    over = sorted((f"{path} ({n} lines)" for path, n in sizes.items() if n > MAX_LINES))
    assert over == [], f"modules over {MAX_LINES} lines: " + ", ".join(over)


@pytest.mark.pure
def test_public_names_are_pinned():
    assert sorted(gt.__all__) == PUBLIC
    assert len(gt.__all__) == len(set(gt.__all__))


@pytest.mark.pure
def test_every_lazy_public_name_is_defined_where_it_is_loaded_from():
    # Without importing TensorFlow: each module behind a lazy name exists and binds the
    # name at top level (a def, a class, an assignment or an import).
    missing = []
    for name, module in gt._LAZY.items():
        if module not in MODULES:
            missing.append(f"{name}: no module {module}")
            continue
        tree = ast.parse(MODULES[module].read_text())
        bound = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                bound.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                bound.update(t.id for t in targets if isinstance(t, ast.Name))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        if name not in bound:
            missing.append(f"{name}: not defined in {module}")
    assert missing == []


@pytest.mark.tf
def test_every_public_name_resolves():
    for name in gt.__all__:
        assert getattr(gt, name) is not None, name
