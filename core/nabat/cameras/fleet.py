"""Inventory cameras as driver instances, kept in line with the inventory.

Cameras imported with ``nabat cameras import`` become driver instances next to those of
``plugins.toml`` (which win on an id clash). :meth:`CameraFleet.sync` re-reads the inventory —
every ``[cameras] inventory_refresh`` seconds — so imported cameras start, changed ones restart
and deleted ones stop without a restart of the hub. Credentials are resolved from their secret
reference at every (re)start, and at most ``[cameras] start_concurrency`` connect at once. The
fleet holds the ``[cameras]`` destination rule and tells it which cameras are imported
(:mod:`nabat.cameras.destinations`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from ..config import HubSettings, InstanceEntry
from ..config.model import CameraSettings
from ..config.secrets import secret_dec_hook
from ..instances import Instance, Instances
from ..interfaces import AuthError, Camera, ConfigError, NotSupported
from ..interfaces.payloads import UnitKind, UnitState
from ..logs import get_logger
from ..plugins.loading import PluginLoader, Unresolved
from ..supervisor import Backoff
from . import credentials
from .destinations import CameraDestinations, destination_policy
from .inventory import CameraRecord, Inventory
from .states import CameraStates

__all__ = ["CameraFleet"]

log = get_logger("nabat.hub")


class CameraFleet:
    def __init__(
        self,
        inventory: Inventory,
        instances: Instances,
        loader: PluginLoader,
        states: CameraStates,
        *,
        hub: HubSettings,
        cameras: CameraSettings,
    ) -> None:
        self.inventory = inventory
        self.instances = instances
        self.loader = loader
        self.states = states
        self.hub_settings = hub
        self.settings = cameras
        self.shadowed: set[str] = set()
        """Inventory ids hidden by a ``plugins.toml`` instance of the same id."""
        self._start_limit = asyncio.Semaphore(cameras.start_concurrency)
        self.destinations = CameraDestinations(destination_policy(cameras)).install()
        """Where cameras may be connected to (``[cameras] destinations``)."""

    def camera_driver(self, kind: str) -> tuple[str, type[Camera]] | str:
        """The plugin and camera driver class of ``kind``, or why there is none."""
        found = self.loader.resolve(kind)
        if isinstance(found, Unresolved):
            return found.reason
        if not issubclass(found.cls, Camera):
            return f"driver {kind} is not a camera driver"
        return found.plugin, found.cls

    def check_row(self, driver: str, url: str) -> list[tuple[str, str]]:
        """What the installed drivers find wrong with an inventory row, as (column, reason);
        for ``nabat cameras import`` (after the plugins are prepared). Credentials are not
        read."""
        found = self.camera_driver(driver)
        if isinstance(found, str):
            return [("driver", found)]
        cls = found[1]
        address, username = credentials.split_user(url)
        try:
            raw = cls.inventory_settings(address, username, None)
            msgspec.convert(raw, cls.Settings, dec_hook=secret_dec_hook())
        except NotSupported as exc:
            return [("driver", str(exc))]
        except (ValueError, msgspec.ValidationError) as exc:
            return [("url", str(exc))]
        return []

    def _instance(self, record: CameraRecord) -> Instance:
        """An instance for an inventory row; its ``problem`` says why it cannot start."""
        entry = InstanceEntry(
            kind=record.driver,
            name=record.name,
            municipality=record.municipality,
            lat=record.lat,
            lon=record.lon,
        )
        self.destinations.inventory.add(record.id)  # its row's names: checked at connect
        rt = Instance(
            record.id,
            entry,
            record=record,
            backoff=Backoff(self.hub_settings.retry_initial, self.hub_settings.retry_max),
            start_limit=self._start_limit,
        )
        found = self.camera_driver(record.driver)
        if isinstance(found, str):
            rt.problem = found
            rt.plugin = self.loader.kinds.get(record.driver)
        else:
            rt.plugin, rt.driver_cls = found
            rt.settings_source = lambda: _settings(record, found[1])
        return rt

    def _add(self, record: CameraRecord) -> Instance | None:
        existing = self.instances.get(record.id)
        if existing is not None:
            if existing.record is None and record.id not in self.shadowed:
                self.shadowed.add(record.id)
                log.warning("inventory.shadowed", camera=record.id, by="plugins.toml")
            return None
        rt = self._instance(record)
        self.instances.add(rt)
        self.instances.supervisor.quiet.add(rt.id)
        return rt

    async def load(self) -> None:
        """Make instances of the inventory's cameras (started with the configured ones)."""
        records = await self.inventory.list()
        for record in records:
            self._add(record)
        log.info("inventory.loaded", cameras=len(records), shadowed=len(self.shadowed) or None)

    async def sync(self) -> dict[str, int]:
        """Bring inventory cameras in line with the inventory: start new rows, restart changed
        ones, stop deleted ones. Returns the counts."""
        records = {r.id: r for r in await self.inventory.list()}
        counts = {"added": 0, "changed": 0, "removed": 0}
        gone: list[str] = []
        for rt in [rt for rt in self.instances if rt.record is not None]:
            new = records.get(rt.id)
            if new is not None and new.same_as(rt.record):
                continue
            await self.instances.remove(rt)
            await self.states.forget(rt.id)
            self.destinations.inventory.discard(rt.id)
            counts["removed" if new is None else "changed"] += 1
            if new is None:
                gone.append(rt.id)
        fresh = [rt for r in records.values() if (rt := self._add(r))]
        counts["added"] = len(fresh) - counts["changed"]
        self.shadowed &= set(records)
        for rt in fresh:
            await self.instances.supervisor.set_state(
                UnitKind.INSTANCE, rt.id, UnitState.STARTING, plugin=rt.plugin
            )
            self.instances.launch(rt)
        if any(counts.values()):
            log.info(
                "inventory.synced",
                **counts,
                cameras=len(records),
                stopped=gone[:20] or None,  # which cameras stopped, for the operator
            )
        return counts

    async def keep_in_sync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.inventory_refresh)
            try:
                await self.sync()
            except Exception as exc:  # the journal may be briefly unavailable: next round
                log.warning("inventory.sync_failed", error=f"{type(exc).__name__}: {exc}")


def _settings(record: CameraRecord, cls: type[Camera]) -> Any:
    """The driver settings of an inventory camera, from its row and its credentials."""
    address, url_user = credentials.split_user(record.url)
    try:
        username, password = credentials.resolve(record.credentials, url_user)
    except ValueError as exc:
        raise AuthError(f"credentials: {exc}") from None
    try:
        raw = cls.inventory_settings(address, username, password)
        return msgspec.convert(raw, cls.Settings, dec_hook=secret_dec_hook())
    except NotSupported as exc:
        raise ConfigError(str(exc)) from None
    except (ValueError, msgspec.ValidationError) as exc:
        raise ConfigError(f"the inventory row does not suit {record.driver}: {exc}") from None
