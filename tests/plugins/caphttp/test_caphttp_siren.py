"""``caphttp.siren`` against a real HTTP gateway (aiohttp on loopback) that validates the CAP
it receives with the OASIS schema and answers CAP ``Ack`` / ``Error`` messages."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import msgspec
import nabat_caphttp.plugin
import pytest
from aiohttp import web
from lxml import etree
from nabat.cap import parse_cap, reference_to, to_cap
from nabat.interfaces.alerting import (
    Alert,
    MsgType,
    Status,
    WarningMessage,
)
from nabat.testing import eventually, exercise_alert, run_hub


class Gateway:
    """A CAP gateway: ``modes`` per path — ok, error, flaky (503 once), auth (Basic)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Alert]] = []
        self.raw: list[tuple[str, bytes]] = []  # each body as it came over the wire
        self.failures_left = 1
        self.runner: web.AppRunner | None = None
        self.port = 0

    def ack(self, alert: Alert, msg_type: MsgType = MsgType.ACK, note: str = "") -> web.Response:
        answer = Alert(
            identifier=f"ack-{alert.identifier}",
            sender="gateway@anapa",
            sent=datetime.now(UTC).replace(microsecond=0),
            status=alert.status,
            msg_type=msg_type,
            references=reference_to(alert),
            note=note or None,
        )
        return web.Response(body=to_cap(answer), content_type="application/cap+xml")

    async def handle(self, request: web.Request) -> web.Response:
        mode = request.match_info["mode"]
        if request.method == "GET":
            return web.Response(status=405 if mode != "down" else 503)
        if mode == "auth":
            expected = "Basic " + base64.b64encode(b"nabat:gw pass").decode()
            if request.headers.get("Authorization") != expected:
                return web.Response(status=401)
        if request.content_type != "application/cap+xml":
            return web.Response(status=415, text="CAP XML only")
        body = await request.read()
        alert = parse_cap(body)  # refuses anything not valid CAP 1.2
        self.raw.append((mode, body))
        self.received.append((mode, alert))
        if mode == "flaky" and self.failures_left:
            self.failures_left -= 1
            return web.Response(status=503, text="busy")
        if mode == "error":
            return self.ack(alert, MsgType.ERROR, "speaker line 3 open")
        return self.ack(alert, note="accepted, zone 2")

    async def __aenter__(self) -> Gateway:
        app = web.Application()
        app.router.add_route("*", "/cap/{mode}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def texts(xml: bytes, *names: str) -> list[str] | str:
    """The text of CAP elements of ``<alert>`` as written on the wire."""
    root = etree.fromstring(xml)
    found = [root.findtext(f"{{urn:oasis:names:tc:emergency:cap:1.2}}{n}") for n in names]
    return found[0] if len(found) == 1 else found


def config(port: int) -> str:
    base = f"http://127.0.0.1:{port}/cap"
    devices = {
        "gw-ok": f'{{ url = "{base}/ok" }}',
        "gw-error": f'{{ url = "{base}/error" }}',
        "gw-flaky": f'{{ url = "{base}/flaky" }}',
        "gw-auth": f'{{ url = "{base}/auth", auth = "basic", username = "nabat", '
        'password = { env = "CAPGW_PW" } }',
        "gw-down": '{ url = "http://127.0.0.1:9/cap" }',
    }
    lines = [
        '[hub]\nlanguage = "en"\ndata_dir = "data"\n',
        "[plugins.eventlog]\nenabled = false\n",
        "[plugins.caphttp]\n",
        "[alerts]\nattempts = 2\nretry_delay = 0.05\n",
    ]
    for name, settings in devices.items():
        lines.append(
            f'[instances.{name}]\nkind = "caphttp.siren"\nmunicipality = "anapa"\n'
            f"timeout = 2.0\nsettings = {settings}\n"
        )
    return "\n".join(lines)


def flood() -> Alert:
    return exercise_alert("anapa")


async def test_cap_alerts_reach_http_gateways(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPGW_PW", "gw pass")
    async with Gateway() as gateway:
        plugins = {"caphttp": nabat_caphttp.plugin}
        async with run_hub(config(gateway.port), tmp_path, plugins=plugins) as hub:
            alert = flood()
            message = WarningMessage(signal_seconds=90, text="Внимание! Угроза наводнения.")
            record = await hub.alerts.issue(alert, message, by="test")
            done = await hub.alerts.wait(record.id, 20)
            results = {d.device: (d.outcome.value, d.attempts, d.detail) for d in done.devices}
            assert results["gw-ok"] == ("activated", 1, "accepted, zone 2")
            assert results["gw-error"][:2] == ("failed", 1)
            assert results["gw-error"][2] == "speaker line 3 open"
            assert results["gw-flaky"][:2] == ("activated", 2)  # 503 once, then accepted
            assert results["gw-auth"][0] == "activated"
            assert results["gw-down"][0] == "unreachable"

            sent = next(a for mode, a in gateway.received if mode == "ok")
            assert sent.identifier == alert.identifier and sent.status is Status.EXERCISE
            info = sent.info[0]
            assert info.description == "Внимание! Угроза наводнения."
            params = {p.value_name: p.value for p in info.parameter}
            assert params == {"signal": "attention_all", "signal_seconds": "90", "repeat": "1"}
            # A repeated activation of the same alert posts nothing again.
            again = await hub.instance("gw-ok").activate(alert, message)
            assert again.outcome == "activated"
            assert sum(1 for mode, a in gateway.received if mode == "ok") == 1

            # An Update and the Cancels reference each earlier message exactly as it was
            # sent: sender,identifier,sent as written on the wire (receivers match the text).
            update = await hub.alerts.update(
                alert.identifier, message=WarningMessage(text="Отбой"), alert=None, by="test"
            )
            await hub.alerts.wait(update.id, 20)
            cancelled = await hub.alerts.cancel(alert.identifier, by="test")
            by_device = {d.device: d.outcome.value for d in cancelled.devices}
            assert by_device["gw-ok"] == "cancelled"
            await hub.alerts.cancel(update.id, by="test")
            ok = [
                (a, body)
                for (mode, a), (_, body) in zip(gateway.received, gateway.raw, strict=True)
                if mode == "ok"
            ]
            kinds = [a.msg_type for a, _ in ok]
            assert kinds == [MsgType.ALERT, MsgType.UPDATE, MsgType.CANCEL, MsgType.CANCEL]
            (_, first), (_, updated), (_, cancel1), (_, cancel2) = ok
            original_ref = ",".join(texts(first, "sender", "identifier", "sent"))
            assert texts(updated, "references") == original_ref
            assert texts(cancel1, "references") == original_ref
            assert texts(cancel2, "references") == ",".join(
                texts(updated, "sender", "identifier", "sent")
            )
            assert original_ref.endswith("-00:00")  # CAP's UTC form, as <sent> is written

            status = await hub.instance("gw-ok").status()
            assert status.state == "idle"
            down = await hub.instance("gw-down").status()
            assert down.state == "offline"


async def test_rejected_credentials_put_the_gateway_in_needs_auth(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPGW_PW", "wrong")
    async with Gateway() as gateway:
        plugins = {"caphttp": nabat_caphttp.plugin}
        async with run_hub(config(gateway.port), tmp_path, plugins=plugins) as hub:
            record = await hub.alerts.issue(flood(), WarningMessage(), by="test")
            done = await hub.alerts.wait(record.id, 20)
            auth = next(d for d in done.devices if d.device == "gw-auth")
            assert auth.outcome == "failed" and "refused the credentials" in auth.detail
            await eventually(lambda: hub.state_of("gw-auth") == "needs_auth", what="needs_auth")


def test_settings_are_checked():
    from nabat_caphttp.siren import CapHttpSettings

    with pytest.raises(ValueError, match="http"):
        msgspec.convert({"url": "ftp://x"}, CapHttpSettings)
    with pytest.raises(ValueError, match="needs password"):
        msgspec.convert({"url": "http://x", "auth": "bearer"}, CapHttpSettings)
