"""Shared fixtures: a distribution of test-only plugins, installed the way pip would.

A ``dist-info`` folder with ``entry_points.txt`` on ``sys.path`` (and on ``PYTHONPATH`` for
subprocesses) makes discovery, selective import and isolation run exactly as in production.
"""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

PLUGINS = {
    "tp_good": """
        import msgspec
        from datetime import UTC, datetime
        from nabat.hookspecs import hookimpl
        from nabat.interfaces import (AuthError, ConfigError, DeliveryResult, DeliveryStatus,
                                      Notifier, TransientError, Listener)

        from nabat.interfaces import Secret

        class Settings(msgspec.Struct, forbid_unknown_fields=True):
            greeting: str = "hi"
            api_key: Secret | None = None
            endpoint: str = ""

        class DeviceSettings(msgspec.Struct, forbid_unknown_fields=True):
            behaviour: str = "ok"   # ok | auth | transient | config | hang | bug
            fail_times: int = 1000

        class Pager(Notifier):
            kind = "tp_good.pager"
            Settings = DeviceSettings
            attempts = {}

            async def start(self):
                key = self.context.instance_id
                n = Pager.attempts[key] = Pager.attempts.get(key, 0) + 1
                b = self.settings.behaviour
                if b == "ok" or n > self.settings.fail_times:
                    return
                if b == "auth":
                    raise AuthError("pager gateway rejected the API key")
                if b == "transient":
                    raise TransientError("gateway unreachable")
                if b == "config":
                    raise ConfigError("gateway URL has no host")
                if b == "hang":
                    import asyncio
                    await asyncio.Event().wait()
                raise ZeroDivisionError("driver bug")

            async def send(self, notification):
                return DeliveryResult(status=DeliveryStatus.DELIVERED, at=datetime.now(UTC))

        seen = []

        @hookimpl
        def plugin_settings():
            return Settings

        @hookimpl
        def register_drivers():
            return [Pager]

        @hookimpl
        def register_listeners(hub, settings):
            return [Listener(patterns=["test.>"], handler=seen.append, name="seen")]
    """,
    "tp_never": """
        from pathlib import Path
        import os
        Path(os.environ["NABAT_TP_MARKER"]).write_text("imported")
    """,
    "tp_broken": """
        raise ImportError("vendor SDK libfoo.so is missing")
    """,
    "tp_slow_import": """
        import time
        time.sleep(1.5)
    """,
    "tp_raises": """
        from nabat.hookspecs import hookimpl

        @hookimpl
        async def startup(hub):
            raise RuntimeError("boom in startup")
    """,
    "tp_hangs": """
        import asyncio
        from nabat.hookspecs import hookimpl

        @hookimpl
        async def startup(hub):
            await asyncio.Event().wait()
    """,
    "tp_flaky": """
        from nabat.hookspecs import hookimpl
        from nabat.interfaces import TransientError

        class Flaky:
            def __init__(self):
                self.calls = 0

            @hookimpl
            async def startup(self, hub):
                self.calls += 1
                if self.calls < 3:
                    raise TransientError(f"message broker not ready (attempt {self.calls})")
    """,
    "tp_auth": """
        from nabat.hookspecs import hookimpl
        from nabat.interfaces import AuthError

        @hookimpl
        async def startup(hub):
            raise AuthError("police API token rejected")
    """,
    "tp_badhook": """
        from nabat.hookspecs import hookimpl

        @hookimpl
        def register_drivers(unexpected_argument):
            return []
    """,
    "tp_observer": """
        from nabat.hookspecs import hookimpl

        faults = []

        @hookimpl
        def plugin_error(plugin, error, context):
            faults.append((plugin, type(error).__name__, context))
    """,
}

ENTRY_TARGETS = {name: name for name in PLUGINS} | {"tp_flaky": "tp_flaky:Flaky"}


@pytest.fixture(scope="session")
def test_plugins(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    for module, source in PLUGINS.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    dist = site / "nabat_test_plugins-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nabat-test-plugins\nVersion: 1.2.3\n"
    )
    (dist / "entry_points.txt").write_text(
        "[nabat]\n" + "".join(f"{n} = {t}\n" for n, t in ENTRY_TARGETS.items())
    )
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))
    for module in PLUGINS:
        sys.modules.pop(module, None)
