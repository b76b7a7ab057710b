"""Plugin routes under /plugins/<name>/: Standard Webhooks receivers and token-protected routes."""

from __future__ import annotations

import json
import logging
import time

import httpx
import msgspec
import pytest
from litestar import Request, get, post
from nabat.config import Secret
from nabat.events import Event
from nabat.hookspecs import hookimpl
from nabat.store import EventQuery
from nabat.webhooks import generate_secret
from standardwebhooks import Webhook

OLD, NEW = generate_secret(), generate_secret()


class ReceiverSettings(msgspec.Struct, forbid_unknown_fields=True):
    secrets: list[Secret] = []


class Agency112:
    """A plugin with an inbound webhook for incident cards and a token-protected status route."""

    @hookimpl
    def plugin_settings(self):
        return ReceiverSettings

    @hookimpl
    def register_routes(self, hub, settings):
        @post("/cards", opt={"webhook_secrets": lambda: settings.secrets}, status_code=202)
        async def cards(request: Request) -> dict:
            card = msgspec.json.decode(await request.body())
            event = Event(
                type="incident.created",
                source="urn:112:test",
                id=request.headers["webhook-id"],
                municipality=card["municipality"],
                data=card,
            )
            await hub.publish(event)
            return {"accepted": event.id}

        @get("/status")
        async def status() -> dict:
            return {"ok": True}

        return [cards, status]


class Broken:
    @hookimpl
    def register_routes(self, hub, settings):
        raise RuntimeError("the vendor's routes are broken")


@pytest.fixture
def api_plugins():
    return {"agency112": Agency112(), "broken": Broken()}


@pytest.fixture
def api_config(monkeypatch) -> str:
    monkeypatch.setenv("T112_OLD", OLD)
    monkeypatch.setenv("T112_NEW", NEW)
    return """
[plugins.agency112.settings]
secrets = [{ env = "T112_OLD" }, { env = "T112_NEW" }]
"""


def signed(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict:
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(timestamp or int(time.time()), UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


CARD = json.dumps({"municipality": "sochi", "caller": "+79990001122", "text": "ДТП"}).encode()


async def test_signed_cards_are_accepted_with_either_secret_during_rotation(api):
    async with httpx.AsyncClient(base_url=api.url) as http:
        for n, secret in enumerate((OLD, NEW)):
            r = await http.post(
                "/plugins/agency112/cards", content=CARD, headers=signed(secret, f"msg_{n}", CARD)
            )
            assert r.status_code == 202, r.text
    page = await api.hub.journal.query(EventQuery(types=("incident.created",)))
    assert [s.event.id for s in page.events] == ["msg_0", "msg_1"]


@pytest.mark.parametrize(
    "tamper",
    ["wrong-secret", "stale", "body", "no-signature"],
)
async def test_bad_or_stale_signatures_are_401_and_logged_without_the_body(api, caplog, tamper):
    headers = signed(OLD, "msg_x", CARD)
    body = CARD
    if tamper == "wrong-secret":
        headers = signed(generate_secret(), "msg_x", CARD)
    elif tamper == "stale":
        headers = signed(OLD, "msg_x", CARD, timestamp=int(time.time()) - 301)
    elif tamper == "body":
        body = CARD.replace(b"sochi", b"anapa")
    else:
        del headers["webhook-signature"]
    caplog.set_level(logging.INFO)
    async with httpx.AsyncClient(base_url=api.url) as http:
        r = await http.post("/plugins/agency112/cards", content=body, headers=headers)
    assert r.status_code == 401
    assert r.json()["type"].endswith("/bad-signature")
    rejected = [rec for rec in caplog.records if rec.getMessage() == "webhook.rejected"]
    assert len(rejected) == 1
    fields = rejected[0].fields
    assert fields["plugin"] == "agency112" and fields["webhook_id"] == "msg_x"
    text = caplog.text
    assert "+79990001122" not in text and "ДТП" not in text
    page = await api.hub.journal.query(EventQuery(types=("incident.created",)))
    assert page.events == []


async def test_plugin_routes_without_secrets_need_a_token_and_a_failing_plugin_is_left_out(api):
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await http.get("/plugins/agency112/status")).status_code == 401
    async with await api.client("events:write") as http:
        assert (await http.get("/plugins/agency112/status")).status_code == 403
    async with await api.client("events:read") as http:
        r = await http.get("/plugins/agency112/status")
        assert r.status_code == 200 and r.json() == {"ok": True}
        # The hub's own API is served though the "broken" plugin's hook raised.
        assert (await http.get("/api/v1/whoami")).status_code == 200
        assert (await http.get("/plugins/broken/anything")).status_code == 404


async def test_a_malformed_body_at_a_plugin_receiver_is_400_not_500(api):
    body = b'{"municipality":'
    async with httpx.AsyncClient(base_url=api.url) as http:
        r = await http.post(
            "/plugins/agency112/cards", content=body, headers=signed(OLD, "msg_bad", body)
        )
    assert r.status_code == 400
    assert r.json()["type"].endswith("/invalid-body")


async def test_mounting_plugin_routes_leaves_the_hubs_logging_alone(tmp_path, monkeypatch):
    import io

    from nabat.logs import configure_logging, get_logger
    from nabat.testing import load_config_text, run_api, run_hub

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    try:
        configure_logging("info", "json", stream=out)
        ours = list(root.handlers)
        loaded = load_config_text(
            "[plugins.watch]\nenabled = false\n[plugins.eventlog]\nenabled = false\n", tmp_path
        )
        async with run_hub(
            loaded, plugins={"agency112": Agency112()}, discover_installed=False
        ) as hub:
            async with run_api(hub):
                get_logger("nabat.test").info("probe.line", answer=42)
        assert root.handlers == ours  # Litestar configured no logging of its own
        line = next(ln for ln in out.getvalue().splitlines() if "probe.line" in ln)
        assert json.loads(line)["answer"] == 42
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
