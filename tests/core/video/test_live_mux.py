"""One WebSocket carrying many cameras (``/api/v1/live``): what a console's wall relies on.

Against the real GStreamer RTSP server and a real hub: several cameras' fMP4 over one socket,
each stream playable on its own; refusals as messages that leave the socket usable; the caller
re-checked while the socket stays open."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json

import av
import pytest
import websockets
from nabat.api.routes import live as live_routes
from nabat.testing import eventually, load_config_text, run_api, run_hub

BASE = """
[hub]
language = "en"
data_dir = "data"
[api]
listen = "127.0.0.1:0"
[plugins.eventlog]
enabled = false
[plugins.watch]
enabled = false
[plugins.rtsp]
enabled = true
[plugins.simulator]
[instances.cam-sim]
kind = "simulator.camera"
municipality = "sochi"
[video]
idle_close = 0.5
stall_timeout = 2.0
max_streams_per_user = 3
"""


def _camera(cid: str, municipality: str, url: str) -> str:
    return f"""
[instances.{cid}]
kind = "rtsp.camera"
municipality = "{municipality}"
settings = {{ url = "{url}" }}
"""


@pytest.fixture
async def hub_api(tmp_path, rtsp_server):
    text = BASE
    text += _camera("cam-live", "sochi", rtsp_server.url("/live"))
    text += _camera("cam-black", "sochi", rtsp_server.url("/black"))
    text += _camera("cam-noise", "sochi", rtsp_server.url("/noise"))
    text += _camera("cam-frozen", "sochi", rtsp_server.url("/frozen"))
    text += _camera("cam-other", "krasnodar", rtsp_server.url("/noise"))
    text += _camera("cam-badauth", "sochi", rtsp_server.secure_url(password="wrong"))
    loaded = load_config_text(text, tmp_path)
    async with run_hub(loaded, discover_installed=True) as hub:
        async with run_api(hub) as server:
            yield hub, server


async def _token(server, *scopes, municipalities=("sochi",)) -> tuple[str, str]:
    name = f"t{len(await server.state.tokens.list())}"
    secret, info = await server.state.tokens.create(name, scopes, municipalities=municipalities)
    return secret, info.id


def _connect(server, token: str):
    return websockets.connect(
        server.url.replace("http://", "ws://") + "/api/v1/live",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=2**24,
        open_timeout=10,
    )


class _Socket:
    """A mux socket read in the background: texts by sid, binary payloads by sid."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.texts: list[dict] = []
        self.binary: dict[int, list[bytes]] = {}
        self.closed: websockets.ConnectionClosed | None = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    sid = int.from_bytes(message[:4], "big")
                    self.binary.setdefault(sid, []).append(message[4:])
                else:
                    self.texts.append(json.loads(message))
        except websockets.ConnectionClosed as exc:
            self.closed = exc

    async def send(self, **message) -> None:
        await self.ws.send(json.dumps(message))

    def of(self, sid, type_=None) -> list[dict]:
        return [m for m in self.texts if m.get("sid") == sid and type_ in (None, m["type"])]

    async def reply(self, sid, type_: str, *, timeout: float = 15) -> dict:
        what = f"a {type_} message for {sid}"
        found = await eventually(lambda: self.of(sid, type_), timeout=timeout, what=what)
        return found[0]

    def fragments(self, sid: int) -> list[bytes]:
        return [b for b in self.binary.get(sid, []) if b[4:8] == b"moof"]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def _frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


async def test_one_socket_carries_several_cameras_each_playable(hub_api):
    hub, server = hub_api
    token, token_id = await _token(server, "cameras:read")
    async with _connect(server, token) as ws:
        sock = _Socket(ws)
        try:
            await sock.send(op="watch", sid=1, camera="cam-live")
            await sock.send(op="watch", sid=7, camera="cam-noise")
            for sid in (1, 7):
                stream = await sock.reply(sid, "stream")
                assert stream["codec"].startswith('video/mp4; codecs="avc1.')
                await eventually(
                    lambda s=sid: len(sock.fragments(s)) >= 3, timeout=15, what="fragments"
                )
                payloads = sock.binary[sid]
                assert payloads[0][4:8] == b"ftyp"  # the init segment first, then fragments
                assert _frames(b"".join(payloads)) > 0  # each sid's bytes alone are a stream
            assert hub.video.viewers() == 2 and len(hub.video.upstreams) == 2
            # Stop one: the hub says so, and no more of its bytes come; the other goes on.
            await sock.send(op="unwatch", sid=1)
            await sock.reply(1, "closed")
            before = len(sock.binary[1])
            frags7 = len(sock.fragments(7))
            await eventually(lambda: len(sock.fragments(7)) >= frags7 + 3, timeout=15, what="7")
            assert len(sock.binary[1]) == before
            assert hub.video.viewers_of("cam-live") == 0 and hub.video.viewers_of("cam-noise") == 1
        finally:
            await sock.stop()
    # The socket closed: its last stream's viewer left too; both views audited with their end.
    await eventually(lambda: hub.video.viewers() == 0, what="the viewers gone")
    await server.state.audit.flush()
    entries, _ = await server.state.audit.entries(limit=50)
    ends = {
        e.detail["camera"]: e.detail
        for e in entries
        if e.action.startswith("WATCH") and e.detail and "to" in e.detail
    }
    assert set(ends) == {"cam-live", "cam-noise"}
    assert ends["cam-live"]["end"] == "client stopped watching" and ends["cam-live"]["bytes"] > 0
    assert all(e.actor == f"token:{token_id}" for e in entries if e.action.startswith("WATCH"))


async def test_refusals_are_messages_and_the_socket_goes_on(hub_api):
    _hub, server = hub_api
    token, _ = await _token(server, "cameras:read")
    async with _connect(server, token) as ws:
        sock = _Socket(ws)
        try:
            # Another municipality's camera and one that does not exist: the same 404.
            await sock.send(op="watch", sid=1, camera="cam-other")
            await sock.send(op="watch", sid=2, camera="no-such")
            for sid in (1, 2):
                error = await sock.reply(sid, "error")
                assert error["status"] == 404 and error["kind"] == "not-found"
            await ws.send("{not json")
            await ws.send(json.dumps({"op": "delete", "sid": 3}))
            await ws.send(json.dumps({"op": "watch", "sid": 0, "camera": "cam-live"}))
            await ws.send(b"\x00\x01")
            await ws.send(json.dumps({"op": "watch", "sid": 4, "camera": "x" * 2000}))
            errors = await eventually(
                lambda: len(found := sock.of(None, "error")) >= 5 and found, what="5 errors"
            )
            assert sorted(e["status"] for e in errors) == [400, 400, 413, 422, 422]
            # Credentials the camera refuses: final, and said as such.
            await sock.send(op="watch", sid=5, camera="cam-badauth")
            error = await sock.reply(5, "error")
            assert error["kind"] == "camera-auth" and error["retry"] is False
            assert "wrong" not in error["detail"]
            # A camera without a video stream (a simulated one): final, and said so.
            await sock.send(op="watch", sid=6, camera="cam-sim")
            error = await sock.reply(6, "error")
            assert error["kind"] == "no-stream" and error["retry"] is False
            assert "no live stream" in error["detail"]
            # The per-user limit (3) counts streams on the socket; a sid in use is refused.
            for sid, camera in ((10, "cam-live"), (11, "cam-black"), (12, "cam-noise")):
                await sock.send(op="watch", sid=sid, camera=camera)
                await sock.reply(sid, "stream")
            await sock.send(op="watch", sid=10, camera="cam-frozen")
            assert (await sock.reply(10, "error"))["kind"] == "sid-in-use"
            await sock.send(op="watch", sid=13, camera="cam-frozen")
            error = await sock.reply(13, "error")
            assert error["status"] == 429 and "max_streams_per_user" in error["detail"]
            # Nothing above closed the socket: a freed slot streams again.
            await sock.send(op="unwatch", sid=12)
            await sock.reply(12, "closed")
            await sock.send(op="watch", sid=14, camera="cam-frozen")
            assert (await sock.reply(14, "stream"))["type"] == "stream"
            assert sock.closed is None
        finally:
            await sock.stop()


async def test_a_watch_flood_is_refused(hub_api):
    _hub, server = hub_api
    token, _ = await _token(server, "cameras:read")
    async with _connect(server, token) as ws:
        sock = _Socket(ws)
        try:
            # Each watch of a camera the caller may not see costs nothing but is still counted.
            for sid in range(1, 61):
                await sock.send(op="watch", sid=sid, camera="cam-other")
            await eventually(lambda: len(sock.of(60, "error")) == 1, what="all answered")
            limited = [m for m in sock.texts if m.get("kind") == "rate-limited"]
            assert limited and all(m["status"] == 429 for m in limited)
        finally:
            await sock.stop()


async def test_a_revoked_token_closes_the_socket(hub_api, monkeypatch):
    hub, server = hub_api
    monkeypatch.setattr(live_routes, "RECHECK_S", 0.2)
    token, token_id = await _token(server, "cameras:read")
    async with _connect(server, token) as ws:
        sock = _Socket(ws)
        try:
            await sock.send(op="watch", sid=1, camera="cam-live")
            await sock.reply(1, "stream")
            await server.state.tokens.revoke(token_id)
            await eventually(lambda: sock.closed is not None, timeout=10, what="closed")
            assert sock.closed.rcvd.code == 4401
            assert sock.of(None, "error")[0]["status"] == 401
        finally:
            await sock.stop()
    await eventually(lambda: hub.video.viewers() == 0, what="the viewer gone")


async def test_a_token_without_the_scope_cannot_open_it(hub_api):
    _hub, server = hub_api
    token, _ = await _token(server, "events:read")
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with _connect(server, token):
            pass
    assert refused.value.response.status_code == 403
