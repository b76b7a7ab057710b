"""The shape of the core, checked: parts depend on parts below them, never in a circle.

* no import cycle among ``nabat.*`` modules — type-only imports (``if TYPE_CHECKING:``) and
  imports inside functions included: a cycle hidden that way is still a cycle of the design;
* no module imports an underscore name from another module (private means private);
* only the outer layers — the CLI, the HTTP API and ``nabat.testing`` — import ``nabat.hub``,
  the composition root; everything else is given the parts it uses.
"""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core" / "nabat"
MAY_IMPORT_HUB = ("nabat.cli", "nabat.api", "nabat.testing")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in CORE.rglob("*.py")}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """(imported module, names imported from it, line) for every import in the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("nabat"):
                    found.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("nabat"):
                continue
            names = [a.name for a in node.names]
            found.append((target, names, node.lineno))
            # ``from . import x`` imports the submodule x
            for n in names:
                if f"{target}.{n}" in modules:
                    found.append((f"{target}.{n}", [], node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _, _ in _imports(name, path, modules):
            # Importing a.b.c runs a and a.b too: depend on every package on the way.
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                dep = ".".join(parts[:i])
                if dep in modules and dep != name and not name.startswith(dep + "."):
                    graph[name].add(dep)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_in_the_core():
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles (type-only imports count):\n" + "\n".join(
        " ⇄ ".join(c) for c in cycles
    )


def test_no_module_imports_another_modules_private_names():
    modules = _modules()
    offenders = []
    for name, path in modules.items():
        for target, names, line in _imports(name, path, modules):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target != name:
                    offenders.append(f"{path.relative_to(CORE.parent)}:{line}: {n} from {target}")
    assert offenders == []


def test_only_the_outer_layers_import_the_hub():
    modules = _modules()
    offenders = []
    for name, path in modules.items():
        if name == "nabat.hub" or any(
            name == m or name.startswith(m + ".") for m in MAY_IMPORT_HUB
        ):
            continue
        for target, _, line in _imports(name, path, modules):
            if target == "nabat.hub" or target.startswith("nabat.hub."):
                offenders.append(f"{path.relative_to(CORE.parent)}:{line}")
    assert offenders == []


def test_the_checks_see_a_cycle_when_there_is_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
