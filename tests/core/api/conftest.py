"""A running hub with its HTTP API on a free loopback port, and clients with tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from nabat.testing import load_config_text, run_api, run_hub

BASE_CONFIG = """
[hub]
name = "api-test"
data_dir = "data"
[plugins.watch]
enabled = false
[plugins.eventlog]
enabled = false
[api]
listen = "127.0.0.1:0"
"""


@dataclass
class Api:
    hub: Any
    server: Any
    url: str

    async def token(self, *scopes: str, municipalities: tuple[str, ...] = (), **kw: Any) -> str:
        name = f"t{len(await self.server.state.tokens.list())}"
        secret, _ = await self.server.state.tokens.create(
            name, scopes, municipalities=municipalities, **kw
        )
        return secret

    async def client(self, *scopes: str, **kw: Any) -> httpx.AsyncClient:
        headers = {}
        if scopes:
            headers["Authorization"] = f"Bearer {await self.token(*scopes, **kw)}"
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)


@pytest.fixture
def api_config() -> str:
    """Extra ``plugins.toml`` text for the API fixture (override in a test module)."""
    return ""


@pytest.fixture
def api_plugins() -> dict[str, object]:
    return {}


@pytest.fixture
def api_base() -> str:
    """The start of the fixture's ``plugins.toml`` (override to change what it disables)."""
    return BASE_CONFIG


@pytest.fixture
def api_discover() -> bool:
    """Whether the hub loads the installed plugins (built-ins included), as ``nabat run``."""
    return False


@pytest.fixture
async def api(tmp_path, api_base, api_config, api_plugins, api_discover) -> AsyncIterator[Api]:
    loaded = load_config_text(api_base + api_config, tmp_path)
    async with run_hub(loaded, plugins=api_plugins, discover_installed=api_discover) as hub:
        async with run_api(hub) as server:
            yield Api(hub=hub, server=server, url=server.url)


def cloudevent(i: int | str = 1, **attrs: Any) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": f"evt-{i}",
        "source": "urn:agency:test",
        "type": "incident.created",
        "municipality": "sochi",
        "data": {"n": i},
    }
    event.update(attrs)
    return event


@pytest.fixture
def ce():
    """``ce(i, **attrs)``: a valid structured-mode CloudEvent as a dict."""
    return cloudevent
