"""Importing enabled plugins and calling their hooks one plugin at a time.

pluggy calls all implementations of a hook in one chain and stops at the first that raises.
A hub must not: here each plugin's implementation is called on its own, with a timeout, and
its error is returned to the caller (the hub marks that plugin, and only it, failed).

Imports and sync implementations run in a daemon thread of their own — never in the loop's
shared executor, which a plugin that blocks forever would otherwise use up (name lookups of
every driver go through it) and which ``asyncio.run`` waits for at exit. While one such call
of a plugin is still stuck, the plugin gets no second thread: the call fails at once.
Async implementations run on the loop under ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
from typing import Any

import pluggy

from .. import hookspecs
from ..hookspecs import PROJECT
from .discovery import PluginInfo

__all__ = ["HookTimeout", "PluginHost"]


class HookTimeout(TimeoutError):
    """A plugin's import or hook did not finish in time."""


def _deliver(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def in_daemon_thread(fn: Any, *args: Any, name: str = "nabat-plugin", **kwargs: Any):
    """Run ``fn`` in a new daemon thread; return (future for its result, the thread)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def run() -> None:
        try:
            outcome = (True, fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting task, not swallowed
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(_deliver, future, *outcome)
        except RuntimeError:
            pass  # the loop is gone: nobody is waiting any more

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return future, thread


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
        self._stuck: dict[str, threading.Thread] = {}

    async def load(self, info: PluginInfo, timeout: float) -> object:
        """Import ``info``'s entry point (in a thread, within ``timeout``) and register it.

        A class is instantiated, so a plugin written as a class keeps its state per hub.
        Raises whatever the import raised, HookTimeout, or pluggy's validation error.
        """
        obj = await self._threaded(info.name, "import", timeout, _import_target, info.target)
        return self.add(info, obj)

    async def _threaded(
        self, plugin: str, what: str, timeout: float, fn: Any, *args: Any, **kwargs: Any
    ) -> Any:
        stuck = self._stuck.get(plugin)
        if stuck is not None and stuck.is_alive():
            raise HookTimeout(
                f"an earlier call into plugin {plugin!r} is still blocked; {what} not attempted"
            )
        future, thread = in_daemon_thread(fn, *args, name=f"nabat-plugin-{plugin}", **kwargs)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            self._stuck[plugin] = thread
            noun = "import" if what == "import" else f"hook {what}"
            raise HookTimeout(f"{noun} did not finish within {timeout:g} s") from None

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
        if not inspect.iscoroutinefunction(impl.function):
            result = await self._threaded(plugin, hook, timeout, impl.function, **args)
            if not inspect.isawaitable(result):
                return result
            call = result
        else:
            call = impl.function(**args)
        try:
            async with asyncio.timeout(timeout):
                return await call
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
