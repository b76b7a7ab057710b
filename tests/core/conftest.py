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
    "tp_devices": """
        import asyncio
        from datetime import UTC, datetime
        import msgspec
        from nabat.events import Event
        from nabat.hookspecs import hookimpl
        from nabat.interfaces import (Camera, CameraHealth, Connector, DeliveryResult,
                                      DeliveryStatus, HealthState, Job, TransientError)

        class ProbeSettings(msgspec.Struct, forbid_unknown_fields=True):
            behaviour: str = "ok"  # ok | raise | hang | auth_once

        class FlakyCamera(Camera):
            kind = "tp_devices.camera"
            Settings = ProbeSettings

            rejected = set()

            async def probe(self):
                me = self.context.instance_id
                if self.settings.behaviour == "auth_once" and me not in FlakyCamera.rejected:
                    FlakyCamera.rejected.add(me)
                    from nabat.interfaces import AuthError
                    raise AuthError("camera rejected user 'operator'")
                if self.settings.behaviour == "raise":
                    raise RuntimeError("probe exploded")
                if self.settings.behaviour == "hang":
                    await asyncio.Event().wait()
                return CameraHealth(state=HealthState.OK, checked_at=datetime.now(UTC))

        class RelaySettings(msgspec.Struct, forbid_unknown_fields=True):
            fail_runs: int = 1

        # Fails its first runs, then publishes one incident and stays connected.
        class Relay(Connector):
            kind = "tp_devices.relay"
            Settings = RelaySettings
            subscribes = ("incident.>",)
            runs = 0
            handled = []

            async def run(self):
                Relay.runs += 1
                if Relay.runs <= self.settings.fail_runs:
                    raise TransientError(f"peer closed the connection (run {Relay.runs})")
                await self.context.publish(self.context.event("incident.created", {"x": 1}))
                await asyncio.Event().wait()

            async def handle(self, event):
                Relay.handled.append(event)
                return DeliveryResult(status=DeliveryStatus.DELIVERED, at=datetime.now(UTC))

        @hookimpl
        def register_drivers():
            return [FlakyCamera, Relay]

        @hookimpl
        def register_jobs(hub):
            async def tick():
                await hub.publish(Event(type="test.tick", source="/tp_devices"))

            async def broken():
                raise ValueError("job bug")

            return [Job(id="tick", func=tick, every=0.05, run_at_start=True),
                    Job(id="broken", func=broken, every=0.05, run_at_start=True)]
    """,
    "tp_blocks": """
        import time
        from nabat.hookspecs import hookimpl

        @hookimpl
        def startup(hub):
            time.sleep(3600)  # a vendor's blocking call that never returns
    """,
    "tp_import_hangs": """
        import time
        time.sleep(3600)
    """,
    "tp_ingest": """
        # Ingest over TCP for crash tests: one JSON object per line in, "ACK <id>" out once
        # hub.publish returned (the event is committed); a forwarder delivers durably out.
        import asyncio
        import json
        from datetime import UTC, datetime
        import msgspec
        from nabat.hookspecs import hookimpl
        from nabat.interfaces import Connector, DeliveryResult, DeliveryStatus, TransientError

        class ListenSettings(msgspec.Struct, forbid_unknown_fields=True):
            port: int

        class Listener(Connector):
            kind = "tp_ingest.listener"
            Settings = ListenSettings

            async def run(self):
                async def client(reader, writer):
                    while line := await reader.readline():
                        body = json.loads(line)
                        event = self.context.event("ingest.item", body, subject=str(body["n"]))
                        await self.context.publish(event)
                        writer.write(f"ACK {event.id} {body['n']}\\n".encode())
                        await writer.drain()
                    writer.close()

                server = await asyncio.start_server(client, "127.0.0.1", self.settings.port)
                async with server:
                    await server.serve_forever()

        class ForwardSettings(msgspec.Struct, forbid_unknown_fields=True):
            port: int

        class Forwarder(Connector):
            kind = "tp_ingest.forwarder"
            Settings = ForwardSettings
            subscribes = ("ingest.>",)

            async def handle(self, event):
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.settings.port)
                except OSError as exc:
                    raise TransientError(f"receiver down: {exc}")
                try:
                    writer.write(f"{event.id} {event.subject}\\n".encode())
                    await writer.drain()
                    if (await reader.readline()).strip() != b"OK":
                        raise TransientError("receiver did not confirm")
                finally:
                    writer.close()
                return DeliveryResult(status=DeliveryStatus.DELIVERED, at=datetime.now(UTC))

        @hookimpl
        def register_drivers():
            return [Listener, Forwarder]
    """,
    "tp_ticker": """
        import os
        from nabat.events import Event
        from nabat.hookspecs import hookimpl
        from nabat.interfaces import Job

        @hookimpl
        def register_jobs(hub):
            async def tick():
                tick = Event(type="tp.tick", source="/tp_ticker", data={"pid": os.getpid()})
                await hub.publish(tick)

            return [Job(id="tick", func=tick, every=0.5)]
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
        from nabat.events import Event
        from nabat.hookspecs import hookimpl

        faults = []

        @hookimpl
        async def plugin_error(hub, plugin, error, context):
            faults.append((plugin, type(error).__name__, context))
            await hub.publish(Event(type="test.fault", source="/tp_observer", subject=plugin,
                                    data={"error": type(error).__name__, "context": context}))
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
