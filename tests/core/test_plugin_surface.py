"""Plugins see the core only through its public surface (``nabat.interfaces.PUBLIC_MODULES``).

Every ``nabat`` import in the first-party plugins' packages and in ``contrib/`` — at module
level, inside functions and under ``TYPE_CHECKING`` alike — must name a public module or a
submodule of one, so the core can change behind them. ``docs/plugins.md`` lists the same
modules.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from nabat.interfaces import PUBLIC_MODULES

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    [*ROOT.glob("plugins/*/nabat_*/**/*.py"), *ROOT.glob("contrib/**/*.py")],
    key=lambda p: p.as_posix(),
)


def is_public(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in PUBLIC_MODULES)


def nabat_imports(source: str, filename: str = "<test>") -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import of ``nabat`` or a ``nabat.*`` module; for
    ``from nabat import x`` the module is ``nabat.x`` when that is a module, else ``nabat``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_nabat(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_nabat(node.module):
            if node.module == "nabat":
                found += [(node.lineno, _submodule_or_package(a.name)) for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def _is_nabat(module: str | None) -> bool:
    return module is not None and (module == "nabat" or module.startswith("nabat."))


def _submodule_or_package(name: str) -> str:
    try:
        importlib.import_module(f"nabat.{name}")
    except ImportError:
        return "nabat"
    return f"nabat.{name}"


def test_there_are_plugin_sources():
    packages = {p.relative_to(ROOT).parts[:2] for p in SOURCES}
    assert ("plugins", "rtsp") in packages
    assert ("contrib", "plugin-template") in packages


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_plugins_import_only_the_public_surface(path: Path):
    internal = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for line, module in nabat_imports(path.read_text(encoding="utf-8"), str(path))
        if not is_public(module)
    ]
    assert not internal, "not in nabat.interfaces.PUBLIC_MODULES:\n" + "\n".join(internal)


def test_the_check_sees_every_kind_of_import():
    source = """
import nabat.hub
from nabat.cameras.probe import probe_stream
from nabat import webhooks, interfaces
from nabat.interfaces.video import probe_stream
from . import sibling
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from nabat.store import EventQuery
def later():
    import nabat.ids
"""
    internal = sorted(m for _, m in nabat_imports(source) if not is_public(m))
    assert internal == [
        "nabat.cameras.probe",
        "nabat.hub",
        "nabat.ids",
        "nabat.store",
        "nabat.webhooks",
    ]


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_module_exists_and_is_documented(module: str):
    importlib.import_module(module)
    doc = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert f"| `{module}` |" in doc, f"docs/plugins.md does not list {module}"
