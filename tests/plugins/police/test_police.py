"""``police.connector``: plate reads against a hotlist (Cyrillic and Latin look-alikes match),
hits to the 02 dispatch, and incidents of police interest forwarded to a real HTTP receiver
that verifies the Standard Webhooks signature with the reference implementation."""

from __future__ import annotations

import json
import os

import nabat_police.plugin
import pytest
import standardwebhooks
from aiohttp import web
from nabat.events import Event
from nabat.testing import eventually, record, run_hub
from nabat_police.plates import Hotlist, HotlistError, normalize

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_plates_match_across_alphabets():
    assert normalize("а 123 вс 23") == normalize("A123BC23") == "A123BC23"
    assert normalize("Х-777-ХХ 777") == "X777XX777"
    assert normalize("о001ор") == "O001OP"


def test_a_bad_hotlist_names_every_line(tmp_path):
    path = tmp_path / "hot.csv"
    path.write_text("plate;reason;priority\nА123ВС23;угон;high\n!!;x\nB777OP61;;\nC1;y;urgent\n")
    with pytest.raises(HotlistError) as err:
        Hotlist.load(path)
    assert [p.split(":")[1] for p in err.value.problems] == ["3", "4", "5"]
    path.write_text("number;why\n")
    with pytest.raises(HotlistError, match="header"):
        Hotlist.load(path)


class Receiver:
    def __init__(self) -> None:
        self.received: list[dict] = []
        self.fail_first = 1
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        standardwebhooks.Webhook(SECRET).verify(body, dict(request.headers))  # raises if bad
        if self.fail_first:
            self.fail_first -= 1
            return web.Response(status=503)
        self.received.append(json.loads(body))
        return web.Response(status=204)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/incidents", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/incidents"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def plate(text: str, confidence: float = 0.95) -> Event:
    return Event(
        type="plate.read",
        source="urn:anpr:krd-cam-014",
        subject="krd-cam-014",
        municipality="krasnodar",
        data={"plate": text, "camera": "krd-cam-014", "confidence": confidence, "image": "s3://x"},
    )


async def test_hotlist_hits_and_forwarded_incidents(tmp_path, monkeypatch):
    hotlist = tmp_path / "hotlist.csv"
    hotlist.write_text("plate;reason;priority\nA123BC23;угон;high\n", encoding="utf-8")
    monkeypatch.setenv("POLICE_SECRET", SECRET)
    async with Receiver() as receiver:
        config = f"""
[hub]
language = "en"
data_dir = "data"
[plugins.eventlog]
enabled = false
[plugins.police]
[instances.police-02]
kind = "police.connector"
settings.hotlist = "{hotlist}"
settings.forward_url = "{receiver.url}"
settings.forward_secret = {{ env = "POLICE_SECRET" }}
[instances.police-02.delivery]
backoff_initial = 0.1
"""
        async with run_hub(config, tmp_path, plugins={"police": nabat_police.plugin}) as hub:
            hits = record(hub, "police.hotlist.hit")
            await hub.publish(plate("а123вс23"))  # Cyrillic read, Latin list
            await hub.publish(plate("A123BC23", confidence=0.4))  # too unsure
            await hub.publish(plate("E001KX93"))  # not wanted
            [hit] = await eventually(lambda: hits.events, what="a hotlist hit")
            assert hit.data.reason == "угон" and hit.data.priority == "high"
            assert hit.data.plate == "а123вс23" and hit.data.listed_as == "A123BC23"
            assert hit.municipality == "krasnodar" and hit.severity == "severe"
            assert hit.subject == "krd-cam-014"
            # The list changes on disk: the next read uses it.
            hotlist.write_text(
                "plate;reason\nA123BC23;угон\nE001KX93;розыск владельца\n", encoding="utf-8"
            )
            os.utime(hotlist, (1, 2))  # a different mtime even within one clock tick
            await hub.publish(plate("Е001КХ93"))
            fresh = await eventually(
                lambda: [e for e in hits.events if e.data.plate == "Е001КХ93"],
                what="a hit from the new list",
            )
            assert fresh[0].data.reason == "розыск владельца"

            police = Event(
                type="incident.created",
                source="urn:112:krd",
                municipality="krasnodar",
                data={"type": "robbery", "services": ["02", "03"]},
            )
            fire = Event(type="incident.created", source="urn:112:krd", data={"services": ["01"]})
            await hub.publish(fire)
            await hub.publish(police)
            await eventually(lambda: receiver.received, what="the forwarded incident", timeout=15)
            assert [e["id"] for e in receiver.received] == [police.id]  # retried after a 503
            assert receiver.received[0]["data"]["services"] == ["02", "03"]
