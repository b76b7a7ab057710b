"""Finding plugins: the ``nabat`` entry-point group, read without importing anything.

pluggy's ``load_setuptools_entrypoints`` imports every entry point and aborts on the first
that fails. We only list here; :mod:`nabat.plugins.host` imports enabled plugins one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from ..hookspecs import PROJECT

__all__ = ["CORE_DISTRIBUTION", "PluginInfo", "discover"]

CORE_DISTRIBUTION = "nabat"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    target: str  # "package.module" or "package.module:attribute"
    distribution: str
    version: str
    entry_point: EntryPoint | None = None

    @property
    def builtin(self) -> bool:
        """Built-ins ship with the core and are enabled unless switched off."""
        return self.distribution == CORE_DISTRIBUTION


def discover() -> tuple[dict[str, PluginInfo], list[str]]:
    """Return the installed plugins by name, and warnings (duplicate names)."""
    found: dict[str, PluginInfo] = {}
    warnings: list[str] = []
    for ep in entry_points(group=PROJECT):
        dist = ep.dist
        info = PluginInfo(
            name=ep.name,
            target=ep.value,
            distribution=dist.metadata["Name"] if dist else "?",
            version=dist.version if dist else "?",
            entry_point=ep,
        )
        if ep.name in found and found[ep.name].target != info.target:
            warnings.append(
                f"plugin name {ep.name!r} is provided by both {found[ep.name].distribution} and "
                f"{info.distribution}; using {found[ep.name].distribution}"
            )
            continue
        found[ep.name] = info
    return dict(sorted(found.items())), warnings
