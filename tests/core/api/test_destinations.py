"""Outbound webhooks cannot probe or read the internal network (SSRF).

A caller that registers a URL makes the hub connect from inside: by default only public
addresses are destinations, checked when the URL is registered and again at every connection
(on the address the name resolves to then: DNS rebinding), and a subscriber's ``last_error``
tells the class of a failure, never the receiver's answer. Real HTTP over loopback; the names
resolve through the policy's resolver, which the rebinding test replaces.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field

import pytest
from nabat.events import Event
from nabat.interfaces import DeliveryStatus
from nabat.netguard import DestinationPolicy, DestinationRefused
from nabat.testing import eventually, free_port


@dataclass
class Listener:
    """An HTTP server that counts requests and answers ``status`` with a tell-tale body."""

    host: str
    status: int = 204
    body: bytes = b""
    requests: list[bytes] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            self.requests.append(head)
            writer.write(
                f"HTTP/1.1 {self.status} X\r\ncontent-length: {len(self.body)}\r\n"
                "connection: close\r\n\r\n".encode()
                + self.body
            )
            await writer.drain()
        finally:
            writer.close()

    async def start(self, port: int = 0) -> Listener:
        self.server = await asyncio.start_server(self.handle, self.host, port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def internal():
    """A live internal service on loopback, which no subscriber may reach."""
    service = await Listener("127.0.0.1", status=200, body=b"root:x:0:0:internal secret").start()
    yield service
    await service.stop()


async def test_internal_destinations_are_refused_at_registration(api, internal):
    port = internal.port
    refused = {
        f"http://127.0.0.1:{port}/admin": "loopback",
        f"http://127.1:{port}/admin": "not public",  # not an IP literal to Python: a name
        f"http://localhost:{port}/admin": "not public",  # a name: which address is not told
        f"http://[::1]:{port}/": "loopback",
        f"http://[::ffff:127.0.0.1]:{port}/": "written as ::ffff:7f00:1",
        f"http://[2002:7f00:1::]:{port}/": "loopback",  # 6to4 of 127.0.0.1
        f"http://0.0.0.0:{port}/": "unspecified",
        "http://10.0.0.5/": "private",
        "http://192.168.1.1/": "private",
        "http://172.16.0.1/": "private",
        "http://169.254.169.254/latest/meta-data/": "link-local",
        "http://100.64.0.1/": "carrier-grade NAT",
        "http://[fd00::1]/": "private",
        "http://[fe80::1]/": "link-local",
        "http://224.0.0.1/": "multicast",
        "http://no-such-host.invalid/": "does not resolve",
    }
    async with await api.client("events:read") as http:
        for url, why in refused.items():
            r = await http.post("/api/v1/subscriptions", json={"url": url, "types": ["incident.>"]})
            assert r.status_code == 422, (url, r.text)
            problem = r.json()
            assert problem["type"].endswith("destination-refused"), url
            assert problem["errors"][0]["field"] == "url"
            assert why in problem["errors"][0]["reason"], (url, problem)
            if why != "does not resolve":
                assert "[api] webhook_destinations" in problem["errors"][0]["reason"]
        assert (await http.get("/api/v1/subscriptions")).json() == []
    assert internal.requests == []  # not one connection was made


def test_public_addresses_pass_and_listed_networks_and_names_are_allowed():
    policy = DestinationPolicy.parse(["10.20.0.0/16", "gw.police.local"])
    for public in ("93.184.216.34", "2a00:1450:4010:c0e::64", "77.88.8.8"):
        policy.check_address(ipaddress.ip_address(public))
    policy.check_address(ipaddress.ip_address("10.20.3.4"))
    with pytest.raises(DestinationRefused, match="private"):
        policy.check_address(ipaddress.ip_address("10.21.0.1"))
    with pytest.raises(DestinationRefused, match="written as"):
        policy.check_address(ipaddress.ip_address("::ffff:10.21.0.1"))
    policy.check_address(ipaddress.ip_address("::ffff:10.20.0.1"))  # the listed network
    assert policy.hosts == {"gw.police.local"}
    closed = DestinationPolicy.parse(["10.20.0.0/16"], public=False)  # a closed network
    closed.check_address(ipaddress.ip_address("10.20.3.4"))
    with pytest.raises(DestinationRefused, match="not listed"):
        closed.check_address(ipaddress.ip_address("93.184.216.34"))
    for bad in ("http://x/", "", "a b", "user@host", ".local"):
        with pytest.raises(ValueError, match="neither a network"):
            DestinationPolicy.parse([bad])


def test_a_bad_destination_entry_is_a_config_error(tmp_path):
    from nabat.config import ConfigInvalid, load_config

    path = tmp_path / "plugins.toml"
    path.write_text('[api]\nwebhook_destinations = ["10.0.0.0/8", "http://oops/"]\n')
    with pytest.raises(ConfigInvalid) as info:
        load_config(path)
    assert "webhook_destinations" in str(info.value) and "oops" in str(info.value)


@pytest.fixture
def api_base(api_base):
    """127.0.0.2 is the "allowed" network of the rebinding test; 127.0.0.1 stays refused."""
    return api_base + 'webhook_destinations = ["127.0.0.2/32"]\n'


async def test_a_name_that_rebinds_to_an_internal_address_is_refused_at_connect_time(
    api, ce, internal
):
    # The internal service on 127.0.0.1 listens on the same port the name's URL names: find a
    # port free on both addresses (another process may hold it on one of them).
    await internal.stop()
    for _ in range(50):
        allowed = await Listener("127.0.0.2").start()
        try:
            await internal.start(allowed.port)
            break
        except OSError:
            await allowed.stop()
    else:
        pytest.fail("no port free on both 127.0.0.1 and 127.0.0.2")
    answers = {"rebind.example": ["127.0.0.2"]}

    async def resolver(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"unknown host {host}")
        return answers[host]

    policy = api.server.state.outbound.policy
    policy.resolver = resolver
    try:
        async with (
            await api.client("events:read") as http,
            await api.client("events:write") as writer,
        ):
            url = f"http://rebind.example:{allowed.port}/hooks"
            r = await http.post("/api/v1/subscriptions", json={"url": url, "types": ["incident.>"]})
            assert r.status_code == 201, r.text
            sub = r.json()
            assert (await writer.post("/api/v1/events", json=ce(1))).status_code == 202
            await eventually(lambda: len(allowed.requests) == 1, what="a delivery to 127.0.0.2")

            answers["rebind.example"] = ["127.0.0.1"]  # the name now points inside
            assert (await writer.post("/api/v1/events", json=ce(2))).status_code == 202

            async def dead():
                state = (await http.get(f"/api/v1/subscriptions/{sub['id']}")).json()
                return state["delivery"] if state["delivery"]["dead"] == 1 else None

            state = await eventually(dead, what="the rebound delivery refused")
            assert state["last_error"].startswith("rejected: destination refused")
            assert "rebind.example resolves to an address that is not public" in state["last_error"]
            assert "127.0.0.1" not in state["last_error"]  # the inside address is not told
            assert internal.requests == []  # the internal service never saw a connection
            assert len(allowed.requests) == 1
    finally:
        await allowed.stop()


async def test_last_error_tells_the_class_of_a_failure_never_the_answer(api, ce):
    """With loopback allowed (an integrator's choice), a subscriber still cannot read the
    receiver's answer, nor tell a refused port from a silent one."""
    api.server.state.outbound.policy.networks += (ipaddress.ip_network("127.0.0.1/32"),)
    talkative = await Listener("127.0.0.1", status=500, body=b"stack trace: db password").start()
    silent = await asyncio.start_server(lambda r, w: asyncio.sleep(3600), "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    api.server.state.outbound.timeout = 0.5
    errors = {}
    try:
        async with (
            await api.client("events:read") as http,
            await api.client("events:write") as writer,
        ):
            ports = {"talkative": talkative.port, "refused": free_port(), "silent": silent_port}
            subs = {}
            for name, port in ports.items():
                r = await http.post(
                    "/api/v1/subscriptions",
                    json={"url": f"http://127.0.0.1:{port}/x", "types": ["incident.>"]},
                )
                assert r.status_code == 201, r.text
                subs[name] = r.json()["id"]
            assert (await writer.post("/api/v1/events", json=ce(1))).status_code == 202

            async def all_failed():
                for name, sub_id in subs.items():
                    state = (await http.get(f"/api/v1/subscriptions/{sub_id}")).json()
                    if not state["delivery"]["last_error"]:
                        return None
                    errors[name] = state["delivery"]["last_error"]
                return errors

            await eventually(all_failed, what="every delivery to fail", timeout=20)
    finally:
        await talkative.stop()
        silent.close()
    assert errors["talkative"] == "HTTP 5xx"
    assert "password" not in str(errors)
    assert errors["refused"] == errors["silent"]  # a closed port and a silent one look alike
    assert errors["refused"].startswith("network error")


async def test_the_webhook_client_refuses_internal_literals_and_names_when_it_connects(internal):
    """The session outbound webhooks POST through, without the registration check in front of
    it (a policy narrowed after a registration, a stored row): an IP literal never reaches a
    resolver, so the client's own middleware must refuse it; a name goes through the
    policy's resolver. A listed network still connects."""
    from nabat.netguard_aiohttp import guarded_session
    from nabat.webhooks import WebhookSender, generate_secret

    answers = {"inside.example": ["127.0.0.1"]}

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    policy = DestinationPolicy.parse([], resolver=resolver)
    port = internal.port
    async with guarded_session(policy, limit=4) as session:
        for url in (
            f"http://127.0.0.1:{port}/",
            f"http://[::ffff:127.0.0.1]:{port}/",
            f"http://inside.example:{port}/",
        ):
            sender = WebhookSender(url, [generate_secret()], client=session, disclose="class")
            result = await sender(Event(type="incident.created", source="/t"))
            assert result.status is DeliveryStatus.REJECTED, (url, result)
            assert result.detail.startswith("destination refused"), (url, result.detail)
    assert internal.requests == []  # not one connection was made
    listed = DestinationPolicy.parse(["127.0.0.1"], resolver=resolver)
    async with guarded_session(listed, limit=4) as session:
        sender = WebhookSender(
            f"http://inside.example:{port}/", [generate_secret()], client=session
        )
        assert (await sender(Event(type="incident.created", source="/t"))).status is (
            DeliveryStatus.DELIVERED
        )
    assert len(internal.requests) == 1
