"""The browsable schema works in a closed network: no CDN, every asset served by the hub."""

from __future__ import annotations

import re

import httpx
import pytest


@pytest.fixture
def api_config() -> str:
    return "public_docs = true\n"


async def test_swagger_ui_is_served_from_vendored_assets(api):
    async with httpx.AsyncClient(base_url=api.url) as http:
        page = await http.get("/schema/swagger")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert len(assets) >= 3
        for asset in assets:
            assert asset.startswith("/schema/"), asset  # nothing from the internet
            r = await http.get(asset)
            assert r.status_code == 200 and len(r.content) > 10_000, asset
        # With public_docs the document is readable without a token; the API itself is not.
        assert (await http.get("/schema/openapi.json")).json()["openapi"].startswith("3.1")
        assert (await http.get("/api/v1/events")).status_code == 401
        assert (await http.get("/schema/swagger-ui/../../api/v1/events")).status_code != 200
