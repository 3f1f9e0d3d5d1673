"""The house stacks one way: no import circle among the modules of core/ and catga_bench/, no
import from a lower folder up to a higher one, and core/ never imports the toolkit.

Every import counts, at module level or inside a function (a deferred import is still a
dependency); for circles, imports under ``if TYPE_CHECKING:`` do not (they never run).
Run alone: ``python -m pytest tests/unit/test_layers.py -q``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: catga_bench's folders (and top-level modules) from the ground floor up; a module may import
#: from its own floor's folder or any lower floor, never from a higher one or from a sibling
#: folder on its own floor (sibling wings stay independent)
FLOORS: list[set[str]] = [
    {"bundled"},  # where the shipped folders are (scenarios/, dashboards/ ...): stdlib only
    {"_version", "errors", "observability", "processes"},
    {"workload"},
    {"targets"},
    {"generator"},
    {"judge"},
    {"compare"},  # may render with judge/; the gate (suite/) may call it
    {"harness", "bench", "suite", "chaos", "faultproxy", "capacity"},
    {"scaffold"},  # catga-bench init: copies its templates, needs only errors
    {"__init__", "profiles", "cli"},  # the face: what users import and run
]
FACE = FLOORS[-1]


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = {**_modules("core"), **_modules("catga_bench")}


def _type_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (they never run)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def _imports(name: str, path: Path, *, type_only: bool) -> set[str]:
    """Modules of core/ and catga_bench/ that ``name`` imports (resolved to known modules);
    with ``type_only=False`` the imports under ``if TYPE_CHECKING:`` are left out."""
    found: set[str] = set()
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = set() if type_only else _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):
                found.add(t)
    return found


#: every import, type-only ones included: a type reference up the floors is a wrong dependency
GRAPH = {name: _imports(name, path, type_only=True) for name, path in MODULES.items()}
#: the imports that run: a circle among these is an import circle (a type-only back-reference,
#: such as a delivery typed against its transport, loads nothing; nats.py's client does the same)
RUNTIME = {name: _imports(name, path, type_only=False) for name, path in MODULES.items()}


def _floor(module: str) -> tuple[int, str]:
    parts = module.split(".")
    room = parts[1] if len(parts) > 1 else "__init__"
    for i, floor in enumerate(FLOORS):
        if room in floor:
            return i, "face" if room in FACE else room
    raise AssertionError(f"{module}: catga_bench/{room} is on no floor of FLOORS")


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(RUNTIME[n]):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(RUNTIME):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_walk_sees_the_imports() -> None:
    assert "catga_bench.generator.generator" in GRAPH
    assert "catga_bench.targets.base" in GRAPH["catga_bench.generator.generator"]
    assert "core.mediator" in GRAPH["core"]


def test_no_import_circle() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_core_never_imports_the_toolkit() -> None:
    bad = {n: sorted(m for m in deps if m.startswith("catga_bench"))
           for n, deps in GRAPH.items() if n.startswith("core")}
    assert {n: d for n, d in bad.items() if d} == {}


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("catga_bench")))
def test_imports_go_down_the_floors(module: str) -> None:
    floor, room = _floor(module)
    for dep in sorted(GRAPH[module]):
        if not dep.startswith("catga_bench"):
            continue
        dep_floor, dep_room = _floor(dep)
        assert dep_floor < floor or dep_room == room, (
            f"{module} (floor {floor}, {room}/) imports {dep} (floor {dep_floor}, {dep_room}/)")
