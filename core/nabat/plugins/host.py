"""Importing enabled plugins and calling their hooks one plugin at a time.

pluggy calls all implementations of a hook in one chain and stops at the first that raises.
A hub must not: here each plugin's implementation is called on its own, with a timeout, and
its error is returned to the caller (the hub marks that plugin, and only it, failed). Sync
implementations run in a worker thread so that one which blocks cannot freeze the hub;
async ones run on the loop under ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from typing import Any

import pluggy

from .. import hookspecs
from ..hookspecs import PROJECT
from .discovery import PluginInfo

__all__ = ["HookTimeout", "PluginHost"]


class HookTimeout(TimeoutError):
    """A plugin's import or hook did not finish in time."""


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name.strip())
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part)
    return obj


class PluginHost:
    """A pluggy PluginManager whose plugins are loaded and called in isolation."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    async def load(self, info: PluginInfo, timeout: float) -> object:
        """Import ``info``'s entry point (in a thread, within ``timeout``) and register it.

        A class is instantiated, so a plugin written as a class keeps its state per hub.
        Raises whatever the import raised, HookTimeout, or pluggy's validation error.
        """
        try:
            async with asyncio.timeout(timeout):
                obj = await asyncio.to_thread(_import_target, info.target)
        except TimeoutError:
            raise HookTimeout(f"import did not finish within {timeout:g} s") from None
        return self.add(info, obj)

    def add(self, info: PluginInfo, obj: object) -> object:
        """Register an already-imported plugin object (module, class or instance)."""
        if inspect.isclass(obj):
            obj = obj()
        self.pm.register(obj, name=info.name)
        self.infos[info.name] = info
        return obj

    def implements(self, plugin: str, hook: str, /) -> bool:
        return self._impl(plugin, hook) is not None

    def _impl(self, plugin: str, hook: str, /) -> Any:
        caller = getattr(self.pm.hook, hook)
        for impl in caller.get_hookimpls():
            if impl.plugin_name == plugin:
                return impl
        return None

    def _arguments(self, impl: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {name: kwargs[name] for name in impl.argnames if name in kwargs}

    async def call(self, plugin: str, hook: str, timeout: float, /, **kwargs: Any) -> Any:
        """Call ``plugin``'s implementation of ``hook``; None when it has none.

        Raises the implementation's exception, or HookTimeout after ``timeout`` seconds.
        """
        impl = self._impl(plugin, hook)
        if impl is None:
            return None
        args = self._arguments(impl, kwargs)
        try:
            async with asyncio.timeout(timeout):
                if inspect.iscoroutinefunction(impl.function):
                    return await impl.function(**args)
                result = await asyncio.to_thread(impl.function, **args)
                if inspect.isawaitable(result):
                    return await result
                return result
        except TimeoutError:
            raise HookTimeout(f"hook {hook} did not finish within {timeout:g} s") from None

    def call_sync(self, plugin: str, hook: str, /, **kwargs: Any) -> Any:
        """Call a hook outside the event loop (``register_cli``)."""
        impl = self._impl(plugin, hook)
        if impl is None:
            return None
        return impl.function(**self._arguments(impl, kwargs))

    def unregister(self, plugin: str) -> None:
        obj = self.pm.get_plugin(plugin)
        if obj is not None:
            self.pm.unregister(obj, name=plugin)
        self.infos.pop(plugin, None)
