"""Cameras cannot point the hub at its own host (SSRF; issue 20, item 6), over real sockets.

One hub for the module. Its rule (``[cameras] destinations = ["127.0.0.2/32"]``) allows
127.0.0.2 and so refuses 127.0.0.1, where an "internal" server listens that answers like a
camera — so an attack that worked would show as a success — and must never see a request:

* DNS rebinding: imported cameras known by a name that resolves first to 127.0.0.2 and then
  to 127.0.0.1 (an HTTP snapshot camera; an RTSP camera behind a relay on 127.0.0.2): the
  first fetch works, the second is refused before it connects;
* an allowed camera's HTTP redirect to 127.0.0.1: refused;
* an ONVIF camera of plugins.toml on 127.0.0.3 (the integrator's word, outside the rule)
  whose answers point at 127.0.0.1 (snapshot URI, event service) and 169.254.169.254 (a
  stream URI): refused, and the camera says why (probe, health event, API snapshot);
  its answers on its own host still pass.

Names resolve through the rule's resolver, which the module replaces (as the webhook tests
do); see :data:`NAME` for why the name is ``localhost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
import pytest_asyncio
from nabat.cameras.destinations import (
    CameraDestinationRefused,
    CameraGuard,
    check_rows,
    destination_policy,
)
from nabat.cameras.failures import camera_failure
from nabat.cameras.inventory import read_csv
from nabat.cameras.snapshot import encode_jpeg
from nabat.config import ConfigInvalid, load_config
from nabat.config.model import CameraSettings
from nabat.interfaces import HealthState
from nabat.netguard import DestinationPolicy, DestinationRefused
from nabat.regions import load_region
from nabat.testing import eventually, record, run_api, run_hub

module_loop = pytest.mark.asyncio(loop_scope="module")
ALLOWED, INTERNAL, CONFIGURED = "127.0.0.2", "127.0.0.1", "127.0.0.3"
NAME = "localhost"
"""The imported cameras' name. The rule's resolver (replaced) answers 127.0.0.2, then 127.0.0.1
(per port: each camera's URL has its own, so one test's rebinding leaves the other camera be);
the system resolver says 127.0.0.1 throughout, so a connection that did not go to the address
the hub checked would reach the internal server and fail the test."""
SLUGS = load_region("krasnodar-krai").municipalities
RULE = "such destinations need [cameras] destinations"


def _jpeg() -> bytes:
    frame = av.VideoFrame(160, 120, "yuv420p")
    for index, plane in enumerate(frame.planes):
        plane.update(bytes([90 if index == 0 else 128]) * plane.buffer_size)
    return encode_jpeg(frame)


JPEG = _jpeg()


@dataclass
class Server:
    """A TCP server on ``host``: counts connections; as HTTP it answers like a camera's
    ``/snapshot.jpg`` (a JPEG), and ``/redirect`` with a redirect to ``redirect``."""

    host: str
    redirect: str = ""
    relay_to: tuple[str, int] | None = None
    """Relay every connection there instead (an RTSP camera seen at another address)."""
    connections: int = 0
    requests: list[str] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> Server:
        self.server = await asyncio.start_server(self.handle, self.host, port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.relay_to is not None:
                await self._relay(reader, writer)
                return
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            self.requests.append(line)
            for header in head.split(b"\r\n"):
                if header.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(header.split(b":")[1]))
            if line.split()[1].startswith("/redirect"):
                answer = f"HTTP/1.1 302 Found\r\nlocation: {self.redirect}\r\n"
                answer += "content-length: 0\r\nconnection: close\r\n\r\n"
                writer.write(answer.encode())
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\n"
                    + f"content-length: {len(JPEG)}\r\nconnection: close\r\n\r\n".encode()
                    + JPEG
                )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.relay_to is not None
        up_reader, up_writer = await asyncio.open_connection(*self.relay_to)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def _same_port(allowed: Server, internal: Server) -> None:
    """Start both on one port (a rebound name keeps its URL's port): one free on both."""
    for _ in range(50):
        await allowed.start()
        try:
            await internal.start(allowed.port)
            return
        except OSError:
            await allowed.stop()
    pytest.fail(f"no port free on both {allowed.host} and {internal.host}")


def _onvif_module() -> Any:
    name = "nabat_tests_onvif_device"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "fixtures" / "onvif_device.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


def _misleading_device(internal: str, **kw: Any) -> Any:
    """An ONVIF device whose snapshot URI and event service point at ``internal``."""
    onvif = _onvif_module()

    class Misleading(onvif.OnvifDevice):
        host = CONFIGURED

        def _xaddr(self, service: str) -> str:
            if service == "event":
                return f"{internal}/onvif/event_service"
            return super()._xaddr(service)

        def _get_snapshot_uri(self, call: Any) -> Any:
            return onvif.X("trt:GetSnapshotUriResponse", self._media_uri(f"{internal}/x.jpg"))

    return Misleading(**kw)


CONFIG = """
[hub]
language = "en"
data_dir = "data"
[plugins.eventlog]
enabled = false
[plugins.rtsp]
[plugins.onvif]
[plugins.watch.settings]
camera_interval = 1.0
jitter = 0.0
fail_after = 3
recover_after = 1
[cameras]
destinations = ["{allowed}/32"]

[instances.onvif-evil]
kind = "onvif.camera"
municipality = "sochi"
settings = {{ host = "{configured}", port = {onvif_port}, events = true }}
"""


@dataclass
class Setting:
    hub: Any
    answers: dict[int, list[str]]
    """What :data:`NAME` resolves to, by the port asked for."""
    snap_allowed: Server
    snap_internal: Server
    relay: Server
    rtsp_internal: Server
    events: Any


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setting(tmp_path_factory, _rtsp_process):
    rtsp = _rtsp_process.ensure()
    snap_allowed, snap_internal = Server(ALLOWED), Server(INTERNAL)
    await _same_port(snap_allowed, snap_internal)
    snap_allowed.redirect = f"http://{INTERNAL}:{snap_internal.port}/snapshot.jpg"
    relay, rtsp_internal = Server(ALLOWED, relay_to=(rtsp.host, rtsp.port)), Server(INTERNAL)
    await _same_port(relay, rtsp_internal)
    profiles = _onvif_module().ProfileSpec
    device = _misleading_device(
        f"http://{INTERNAL}:{snap_internal.port}",
        username=None,
        profiles=(
            profiles("main", uri=f"rtsp://{CONFIGURED}:8554/main"),  # its own host: passes
            profiles("sub", width=640, height=360, uri="rtsp://169.254.169.254:554/live"),
        ),
    )
    answers = {snap_allowed.port: [ALLOWED], relay.port: [ALLOWED]}

    async def resolver(host: str, port: int) -> list[str]:
        if host != NAME or port not in answers:
            raise OSError(f"unknown host {host}")
        return answers[port]

    async with device:
        config = CONFIG.format(allowed=ALLOWED, configured=CONFIGURED, onvif_port=device.port)
        async with run_hub(config, tmp_path_factory.mktemp("netguard")) as hub:
            events = record(hub, "camera.health.>")
            hub.fleet.destinations.policy.resolver = resolver
            text = "\n".join(
                [
                    "id;name;municipality;driver;url",
                    f"inv-snap;Snapshot;sochi;rtsp.http_camera;"
                    f"http://{NAME}:{snap_allowed.port}/snapshot.jpg",
                    f"inv-stream;Stream;sochi;rtsp.camera;rtsp://{NAME}:{relay.port}/live",
                    f"inv-redirect;Redirect;sochi;rtsp.http_camera;"
                    f"http://{ALLOWED}:{snap_allowed.port}/redirect",
                ]
            )
            rows, errors = read_csv(text + "\n", SLUGS)
            rows, refused = await check_rows(rows, hub.fleet.destinations.policy)
            assert errors == refused == [], (errors, refused)
            await hub.inventory.import_rows([row.record for row in rows])
            await hub.sync_inventory()
            ids = ("inv-snap", "inv-stream", "inv-redirect")
            await eventually(
                lambda: all(hub.state_of(i) == "running" for i in ids), what="cameras running"
            )
            try:
                yield Setting(
                    hub, answers, snap_allowed, snap_internal, relay, rtsp_internal, events
                )
            finally:
                for server in (snap_allowed, snap_internal, relay, rtsp_internal):
                    await server.stop()


# -- DNS rebinding ------------------------------------------------------------------------------
@module_loop
async def test_a_snapshot_name_that_rebinds_to_the_hub_itself_is_refused(setting):
    camera = setting.hub.instance("inv-snap")
    shot = await camera.snapshot()
    assert shot.content == JPEG
    assert any("/snapshot.jpg" in r for r in setting.snap_allowed.requests)

    port = setting.snap_allowed.port
    setting.answers[port] = [INTERNAL]  # the name now points at the hub's loopback
    try:
        with pytest.raises(CameraDestinationRefused) as info:
            await camera.snapshot()
        reason = str(info.value)
        assert reason.startswith(f"destination refused: {NAME} resolves to an address")
        assert RULE in reason and INTERNAL not in reason  # the API reader is not told where
        failure = camera_failure("inv-snap", info.value)
        assert (failure.status, failure.kind) == (502, "destination-refused")
        health = await camera.probe()
        assert health.state is HealthState.UNREACHABLE
        assert health.reason_code == "destination_refused"
    finally:
        setting.answers[port] = [ALLOWED]
    assert setting.snap_internal.requests == [] and setting.snap_internal.connections == 0


@module_loop
async def test_an_rtsp_name_that_rebinds_is_opened_at_the_checked_address_then_refused(setting):
    camera = setting.hub.instance("inv-stream")

    async def plays():  # a busy machine may give one probe too few frames
        health = await camera.probe()
        return health if health.state is HealthState.OK else None

    # FFmpeg itself would find localhost at 127.0.0.1: the picture came through the relay.
    await eventually(plays, timeout=40, what="the stream played through 127.0.0.2")
    assert setting.relay.connections >= 1

    port = setting.relay.port
    setting.answers[port] = [INTERNAL]
    try:
        health = await camera.probe()
        assert health.state is HealthState.UNREACHABLE, health.reason
        assert health.reason_code == "destination_refused"
        assert f"{NAME} resolves to an address" in health.reason
        with pytest.raises(CameraDestinationRefused):
            await camera.stream_uri()  # what live video and recording would open
    finally:
        setting.answers[port] = [ALLOWED]
    assert setting.rtsp_internal.connections == 0


@module_loop
async def test_a_redirect_to_the_hub_itself_is_refused(setting):
    camera = setting.hub.instance("inv-redirect")
    with pytest.raises(CameraDestinationRefused) as info:
        await camera.snapshot()
    assert f"{INTERNAL} is a loopback address; {RULE}" in str(info.value)
    assert any("/redirect" in r for r in setting.snap_allowed.requests)
    assert setting.snap_internal.requests == []


# -- what an ONVIF camera returns ---------------------------------------------------------------
@module_loop
async def test_an_onvif_camera_cannot_send_the_hub_to_its_loopback_or_metadata(setting):
    hub = setting.hub
    assert hub.state_of("onvif-evil") == "running", hub.status_of("onvif-evil").reason
    camera = hub.instance("onvif-evil")
    info = await camera.describe()
    assert "events" not in info.capabilities  # its event service on 127.0.0.1 was left out
    # Its own host passes (the integrator named it), whatever the rule says of it.
    assert (await camera.stream_uri("main")).uri == f"rtsp://{CONFIGURED}:8554/main"
    with pytest.raises(CameraDestinationRefused) as link_local:
        await camera.stream_uri("sub")
    assert "169.254.169.254 is a link-local address" in str(link_local.value)

    with pytest.raises(CameraDestinationRefused) as refused:
        await camera.snapshot()
    assert str(refused.value) == (
        f"the snapshot URI the camera gave: destination refused: {INTERNAL} is a loopback "
        f"address; {RULE}"
    )

    # The camera reports why: its probe profile's stream URI is the metadata address.
    reported = await setting.events.wait_for(
        "camera.health.unreachable", subject="onvif-evil", timeout=30
    )
    assert reported.data.reason_code == "destination_refused"
    assert "the stream URI the camera gave: destination refused: 169.254.169.254" in (
        reported.data.reason
    )
    async with run_api(hub) as server:
        secret, _ = await server.state.tokens.create("wall", ["cameras:read"])
        async with httpx.AsyncClient(base_url=server.url) as http:
            answer = await http.get(
                "/api/v1/cameras/onvif-evil/snapshot.jpg",
                headers={"Authorization": f"Bearer {secret}"},
            )
    assert answer.status_code == 502
    problem = answer.json()
    assert problem["type"].endswith("destination-refused")
    assert f"{INTERNAL} is a loopback address" in problem["detail"]
    assert setting.snap_internal.requests == []  # no snapshot GET, no event-service POST


# -- the rule itself ---------------------------------------------------------------------------
def _refused(policy: DestinationPolicy, address: str) -> bool:
    try:
        policy.check_address(ipaddress.ip_address(address))
    except DestinationRefused:
        return True
    return False


def test_cameras_may_be_private_or_public_but_never_the_hubs_own_host():
    policy = destination_policy()
    for fine in ("10.20.0.7", "172.16.5.5", "192.168.1.64", "100.64.3.2", "fd00::5"):
        assert not _refused(policy, fine), fine
    assert not _refused(policy, "::ffff:10.20.0.7")  # written as IPv4-mapped: the same camera
    assert not _refused(policy, "77.88.8.8")
    for bad in (
        "127.0.0.1",
        "127.0.0.2",
        "::1",
        "169.254.169.254",
        "fe80::1",
        "224.0.0.251",
        "ff02::1",
        "0.0.0.0",
        "::",
        "240.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ):
        assert _refused(policy, bad), bad


def test_the_integrator_may_narrow_the_rule_to_listed_networks():
    settings = CameraSettings(
        destinations=["10.20.0.0/16", "127.0.0.1/32"], allow_private=False, allow_public=False
    )
    policy = destination_policy(settings)
    assert not _refused(policy, "10.20.3.4") and not _refused(policy, "127.0.0.1")
    for other in ("10.30.0.1", "192.168.1.1", "77.88.8.8", "169.254.169.254"):
        assert _refused(policy, other), other
    public_only = destination_policy(CameraSettings(allow_private=False))
    assert _refused(public_only, "10.20.0.7") and not _refused(public_only, "77.88.8.8")


def test_a_bad_destination_entry_is_a_configuration_error(tmp_path):
    path = tmp_path / "plugins.toml"
    path.write_text('[cameras]\ndestinations = ["10.0.0.0/8", "rtsp://oops/"]\n')
    with pytest.raises(ConfigInvalid) as info:
        load_config(path)
    assert "cameras: destinations: [1] 'rtsp://oops/' is neither a network" in str(info.value)


async def test_rtsp_urls_get_the_checked_address_and_tls_urls_keep_their_name():
    answers = {"cam.example": ["10.20.0.7"], "cam6.example": ["fd00::7"]}

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    guard = CameraGuard(DestinationPolicy(setting="x", resolver=resolver, private=True))
    url = await guard.url("rtsp://viewer@cam.example:8554/live?ch=1")
    assert url == "rtsp://viewer@10.20.0.7:8554/live?ch=1"
    assert await guard.url("rtsp://cam6.example/live") == "rtsp://[fd00::7]/live"
    assert await guard.url("rtsps://cam.example/live") == "rtsps://cam.example/live"
    assert await guard.url("http://cam.example/mjpeg") == "http://cam.example/mjpeg"
    answers["cam.example"] = ["169.254.169.254"]
    with pytest.raises(CameraDestinationRefused):
        await guard.url("rtsps://cam.example/live")  # TLS keeps the name, but it is checked


# -- the import --------------------------------------------------------------------------------
async def test_an_import_refuses_rows_pointing_inside_the_hub_and_keeps_the_others():
    answers = {"localhost": ["127.0.0.1"], "cam.sochi.example": ["10.20.0.9"]}

    async def resolver(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError("unknown")
        return answers[host]

    text = "\n".join(
        [
            "id;name;municipality;driver;host",
            "ok-1;Fine;sochi;rtsp.camera;rtsp://10.20.0.7:554/live",
            "bad-1;Loopback;sochi;rtsp.camera;rtsp://127.0.0.1:5432/x",
            "bad-2;Metadata;sochi;rtsp.http_camera;http://169.254.169.254/latest/meta-data",
            "ok-2;By name;sochi;onvif.camera;cam.sochi.example:80",
            "bad-3;Localhost;sochi;onvif.camera;localhost:8080",
            "bad-4;Mapped;sochi;rtsp.http_camera;http://[::ffff:127.0.0.1]:8080/x.jpg",
            "ok-3;Not in DNS yet;sochi;rtsp.camera;rtsp://later.example/live",
            "bad-5;Multicast;sochi;rtsp.camera;rtsp://239.1.2.3/x",
        ]
    )
    rows, errors = read_csv(text + "\n", SLUGS)
    assert errors == []
    policy = destination_policy(disclose=True)
    policy.resolver = resolver
    kept, refused = await check_rows(rows, policy)
    assert [r.record.id for r in kept] == ["ok-1", "ok-2", "ok-3"]
    assert [(e.line, e.column) for e in refused] == [
        (3, "host"),
        (4, "host"),
        (6, "host"),
        (7, "host"),
        (9, "host"),
    ]
    reasons = [e.reason for e in refused]
    assert reasons[0] == f"destination refused: 127.0.0.1 is a loopback address; {RULE}"
    assert reasons[1].startswith("destination refused: 169.254.169.254 is a link-local")
    assert reasons[2] == f"destination refused: localhost: 127.0.0.1 is a loopback address; {RULE}"
    assert "127.0.0.1 is a loopback address (written as ::ffff:7f00:1)" in reasons[3]
    assert "239.1.2.3 is a multicast address" in reasons[4]
