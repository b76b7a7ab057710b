"""Live video over a real WebSocket from the real GStreamer RTSP server: a playable fMP4, one
upstream shared by viewers, idle close, access, limits, stalls and refused credentials."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
from pathlib import Path

import av
import httpx
import pytest
import websockets
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
[video]
idle_close = 0.5
stall_timeout = 2.0
reconnect_initial = 0.2
max_viewers_per_camera = 2
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
async def live(tmp_path, rtsp_server):
    text = BASE
    text += _camera("cam-live", "sochi", rtsp_server.url("/live"))
    text += _camera("cam-dying", "sochi", rtsp_server.url("/dying"))
    text += _camera("cam-black", "sochi", rtsp_server.url("/black"))
    text += _camera("cam-other", "krasnodar", rtsp_server.url("/noise"))
    text += _camera("cam-down", "sochi", "rtsp://127.0.0.1:9/down")
    text += _camera("cam-badauth", "sochi", rtsp_server.secure_url(password="wrong"))
    loaded = load_config_text(text, tmp_path)
    async with run_hub(loaded, discover_installed=True) as hub:
        async with run_api(hub) as server:
            yield hub, server


async def _token(server, *scopes, municipalities=("sochi",)) -> str:
    name = f"t{len(await server.state.tokens.list())}"
    secret, _ = await server.state.tokens.create(name, scopes, municipalities=municipalities)
    return secret


def _ws(server, camera: str, token: str):
    url = server.url.replace("http://", "ws://") + f"/api/v1/cameras/{camera}/live"
    return websockets.connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=2**24,
        open_timeout=10,
    )


async def _read_stream(ws, fragments: int) -> tuple[dict, bytes, list[bytes]]:
    first = json.loads(await ws.recv())
    init = await ws.recv()
    assert isinstance(init, bytes)
    frags = []
    while len(frags) < fragments:
        message = await ws.recv()
        if isinstance(message, bytes):
            frags.append(message)
    return first, init, frags


def _frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


def _rtsp_sessions(port: int, hub) -> int:
    """Established TCP connections of the hub's video (this process and its video workers)
    to the RTSP server (from /proc)."""
    inodes = set()
    for pid in ["self", *hub.video.host.pids()]:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        remote, state, inode = parts[2], parts[3], parts[9]
        if state == "01" and int(remote.split(":")[1], 16) == port and inode in inodes:
            count += 1
    return count


async def test_two_viewers_share_one_upstream_of_playable_fmp4(live, rtsp_server):
    hub, server = live
    token = await _token(server, "cameras:read")
    async with _ws(server, "cam-live", token) as one:
        first, init, frags = await _read_stream(one, 4)
        assert first["type"] == "stream" and first["status"] == "live"
        assert first["codec"].startswith('video/mp4; codecs="avc1.')
        assert init[4:8] == b"ftyp" and all(f[4:8] == b"moof" for f in frags)
        assert _frames(init + b"".join(frags)) > 0
        async with _ws(server, "cam-live", token) as two:
            # The second viewer starts at once, at a key frame of the kept GOP.
            first2, init2, frags2 = await _read_stream(two, 2)
            assert first2["codec"] == first["codec"] and init2 == init
            assert _frames(init2 + b"".join(frags2)) > 0
            assert len(hub.video.upstreams) == 1 and hub.video.viewers_of("cam-live") == 2
            assert _rtsp_sessions(rtsp_server.port, hub) == 1
            metrics = await _get(server, "/metrics", await _token(server, "ops:read"))
            assert "nabat_video_upstreams 1.0" in metrics
            assert "nabat_video_viewers 2.0" in metrics
    # The last viewer left: the upstream closes after idle_close, its RTSP session too.
    await eventually(
        lambda: not hub.video.upstreams and hub.video.connected() == 0,
        timeout=10,
        what="the upstream closed",
    )
    await eventually(
        lambda: _rtsp_sessions(rtsp_server.port, hub) == 0,
        timeout=5,
        what="the RTSP session closed",
    )
    await server.state.audit.flush()
    entries, _ = await server.state.audit.entries(limit=20)
    watched = [e for e in entries if e.action.startswith("WATCH") and e.detail and "to" in e.detail]
    assert len(watched) == 2 and all(e.detail["camera"] == "cam-live" for e in watched)
    assert all(e.detail["bytes"] > 0 for e in watched)


async def _get(server, path: str, token: str) -> str:
    import httpx

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        r = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return r.text


async def test_access_like_snapshots(live):
    _, server = live
    sochi = await _token(server, "cameras:read")
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with _ws(server, "cam-other", sochi):
            pass
    assert refused.value.response.status_code == 404
    no_scope = await _token(server, "events:read")
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with _ws(server, "cam-live", no_scope):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with _ws(server, "cam-live", "nope"):
            pass
    assert refused.value.response.status_code == 401


async def test_refused_credentials_are_told_and_final(live):
    hub, server = live
    token = await _token(server, "cameras:read")
    async with _ws(server, "cam-badauth", token) as ws:
        message = json.loads(await ws.recv())
        assert message["type"] == "error" and message["kind"] == "camera-auth"
        assert "refused the credentials" in message["detail"]
        assert "wrong" not in message["detail"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 4502
    await eventually(
        lambda: not hub.video.upstreams and hub.video.connected() == 0,
        what="the failed upstream gone",
    )


async def test_over_a_limit_the_handshake_is_refused_naming_it(live):
    _hub, server = live
    sochi = await _token(server, "cameras:read")
    # Per camera: 2 viewers; a third gets 503 naming the limit.
    async with _ws(server, "cam-live", sochi) as a, _ws(server, "cam-live", sochi) as b:
        await a.recv()
        await b.recv()
        other = await _token(server, "cameras:read")
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with _ws(server, "cam-live", other):
                pass
        response = refused.value.response
        assert response.status_code == 503
        assert b"max_viewers_per_camera" in response.body
        # Per user: 3 streams; a fourth gets 429.
        async with _ws(server, "cam-black", sochi) as c:
            await c.recv()
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with _ws(server, "cam-dying", sochi):
                    pass
            assert refused.value.response.status_code == 429
            assert b"max_streams_per_user" in refused.value.response.body


class _Reader:
    """Every message of a live WebSocket, read in the background: the test waits on what
    has arrived with :func:`eventually`, never on a sleep."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.messages: list[str | bytes] = []
        self.closed: websockets.ConnectionClosed | None = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            async for message in self.ws:
                self.messages.append(message)
        except websockets.ConnectionClosed as exc:
            self.closed = exc
        else:
            self.closed = True  # type: ignore[assignment]

    def texts(self) -> list[dict]:
        return [json.loads(m) for m in self.messages if isinstance(m, str)]

    def since(self, index: int) -> list[str | bytes]:
        return self.messages[index:]

    def index_of(self, predicate) -> int | None:
        for i, m in enumerate(self.messages):
            if isinstance(m, str) and predicate(json.loads(m)):
                return i
        return None

    async def wait_for(self, predicate, *, timeout: float, what: str) -> int:
        """The index of the first text message ``predicate`` accepts, once it has arrived."""
        found = await eventually(
            lambda: (i := self.index_of(predicate)) is not None and [i], timeout=timeout, what=what
        )
        return found[0]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def _fragments(messages) -> list[bytes]:
    return [m for m in messages if isinstance(m, bytes) and m[4:8] == b"moof"]


async def test_rtsp_server_restart_mid_view_resumes_by_itself(live, rtsp_server, _rtsp_process):
    """The camera's RTSP server goes away and comes back on the same port: the viewer is told
    ``stalled``, stays connected, and gets a decodable stream again without reconnecting."""
    hub, server = live
    token = await _token(server, "cameras:read")
    async with _ws(server, "cam-live", token) as ws:
        reader = _Reader(ws)
        try:
            await eventually(
                lambda: len(_fragments(reader.messages)) >= 3, timeout=20, what="live fragments"
            )
            first = reader.texts()[0]
            assert first["type"] == "stream" and reader.messages[1][4:8] == b"ftyp"
            init = reader.messages[1]
            _rtsp_process.close()  # the camera goes away
            try:
                stalled = await reader.wait_for(
                    lambda m: m.get("status") == "stalled", timeout=20, what="a stalled status"
                )
                assert reader.closed is None
            finally:
                await asyncio.to_thread(_rtsp_process.ensure)  # same port
            assert _rtsp_process.port == rtsp_server.port
            await eventually(
                lambda: len(_fragments(reader.since(stalled))) >= 4,
                timeout=30,
                what="fragments again after the restart",
            )
            assert reader.closed is None, reader.closed
            after = reader.since(stalled + 1)
            texts = [json.loads(m) for m in after if isinstance(m, str)]
            streams = [m for m in texts if m["type"] == "stream"]
            assert all(m["type"] in ("status", "stream") for m in texts), texts
            assert any(m.get("status") == "live" for m in texts), texts
            if streams:  # a changed configuration: a new stream message, then its init
                at = after.index(next(m for m in after if isinstance(m, str) and '"stream"' in m))
                init = after[at + 1]
                assert init[4:8] == b"ftyp"
                assert streams[-1]["epoch"] == first["epoch"] + 1
                after = after[at + 2 :]
            assert _frames(init + b"".join(_fragments(after))) > 0
            assert hub.video.reconnects >= 1
        finally:
            await reader.stop()


async def test_a_video_worker_killed_mid_view_is_replaced_and_the_viewer_resumes(
    live, rtsp_server, caplog
):
    """The upstream runs in a video worker process, not in the hub's: its RTSP session is
    the worker's. SIGKILL that worker (FFmpeg crashing on a stream): the hub stays up, the
    viewer is told ``stalled`` and stays connected, the camera is opened again in a new
    worker, and the viewer gets a new stream (a higher epoch, its init) that plays. The
    workers log through the hub's logging, masked, with their pid."""
    caplog.set_level("INFO", logger="nabat.video")
    hub, server = live
    token = await _token(server, "cameras:read")
    async with _ws(server, "cam-live", token) as ws:
        reader = _Reader(ws)
        try:
            await eventually(
                lambda: len(_fragments(reader.messages)) >= 2, timeout=20, what="fragments"
            )
            first = reader.texts()[0]
            [pid] = hub.video.host.pids()
            assert pid != os.getpid() and _rtsp_sessions(rtsp_server.port, hub) == 1
            os.kill(pid, 9)
            stalled = await reader.wait_for(
                lambda m: m.get("status") == "stalled" and "worker" in m.get("reason", ""),
                timeout=10,
                what="a stalled status naming the worker",
            )
            restarted = await reader.wait_for(
                lambda m: m.get("type") == "stream" and m["epoch"] > first["epoch"],
                timeout=20,
                what="a new stream from the new worker",
            )
            assert restarted > stalled
            await eventually(
                lambda: len(_fragments(reader.since(restarted))) >= 2,
                timeout=20,
                what="fragments from the new worker",
            )
            assert reader.closed is None, reader.closed
            after = reader.since(restarted + 1)
            assert _frames(after[0] + b"".join(_fragments(after))) > 0
            [new_pid] = hub.video.host.pids()
            assert new_pid != pid and hub.video.worker_restarts == 1
            opened = [
                r.fields
                for r in caplog.records
                if r.getMessage() == "video.upstream_open" and r.fields.get("worker") == new_pid
            ]
            assert opened and opened[0]["camera"] == "cam-live"
            assert "s3cret" not in caplog.text and "@" not in opened[0]["url"]
            assert len(hub.video.upstreams) == 1 and _rtsp_sessions(rtsp_server.port, hub) == 1
        finally:
            await reader.stop()


async def test_a_camera_ending_its_stream_is_reconnected_the_viewer_stays(live):
    """/dying sends one second of video (one GOP) and ends the stream, every time: each end
    is a ``stalled`` status, the upstream reconnects, the same viewer gets fragments again in
    the same fMP4 stream (no new init: the configuration is the same), and they decode.
    (The first version dropped the packets FFmpeg had not timestamped yet, the first key
    frame among them: /dying never played, and a test waiting for it ended in the server's
    1012 close at teardown.)"""
    _hub, server = live
    token = await _token(server, "cameras:read")
    async with _ws(server, "cam-dying", token) as ws:
        reader = _Reader(ws)
        try:
            await eventually(
                lambda: sum(m.get("status") == "stalled" for m in reader.texts()) >= 3,
                timeout=30,
                what="three ends of stream",
            )
            stalled = reader.index_of(lambda m: m.get("status") == "stalled")
            await eventually(
                lambda: len(_fragments(reader.since(stalled))) >= 2,
                timeout=20,
                what="fragments after the reconnect",
            )
            assert reader.closed is None, reader.closed
            first = reader.texts()[0]
            assert first["type"] == "stream", reader.texts()
            assert reader.messages[1][4:8] == b"ftyp"
            assert [m["type"] for m in reader.texts()].count("stream") == 1
            init = reader.messages[1]
            assert _frames(init + b"".join(_fragments(reader.since(stalled)))) > 0
            # One GOP per connection: more frames than one connection's 10 prove the resumed
            # fragments continue the same timeline.
            assert _frames(init + b"".join(_fragments(reader.messages))) > 12
        finally:
            await reader.stop()


async def test_an_unreachable_camera_says_stalled_before_any_stream(live):
    """No ``stream`` message can come before the camera answers: the first messages are
    ``status: stalled`` with the reason, and the viewer stays connected while it is retried
    (docs/video.md, "The WebSocket")."""
    _hub, server = live
    token = await _token(server, "cameras:read")
    async with _ws(server, "cam-down", token) as ws:
        reader = _Reader(ws)
        try:
            await eventually(
                lambda: sum(m.get("status") == "stalled" for m in reader.texts()) >= 2,
                timeout=20,
                what="two stalled statuses",
            )
            first = reader.texts()[0]
            assert first["type"] == "status" and "unreachable" in first["reason"]
            assert all(isinstance(m, str) for m in reader.messages)  # no binary before stream
            assert reader.closed is None
        finally:
            await reader.stop()


async def test_a_streamed_camera_gives_its_snapshot_from_the_open_stream(live, rtsp_server):
    """A camera without a snapshot URI of its own (rtsp.camera) is snapshotted from the
    stream; while it is being watched, from the open upstream's key frame — no second RTSP
    session, which would cost the camera (and on many cameras its viewers) a pause."""
    hub, server = live
    token = await _token(server, "cameras:read")
    async with _ws(server, "cam-live", token) as one:
        await _read_stream(one, 3)
        assert _rtsp_sessions(rtsp_server.port, hub) == 1
        url = f"{server.url}/api/v1/cameras/cam-live/snapshot.jpg"
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(
                url, params={"max_age": 0}, headers={"Authorization": f"Bearer {token}"}
            )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/jpeg"
        with av.open(io.BytesIO(answer.content)) as picture:  # a real JPEG of the picture
            frame = next(picture.decode(video=0))
            assert frame.width == 320
        assert hub.video.stills == 1
        assert _rtsp_sessions(rtsp_server.port, hub) == 1  # still the one upstream
        more = await _read_stream_fragments(one, 2)  # and the viewer kept receiving
        assert len(more) == 2


async def _read_stream_fragments(ws, count: int) -> list[bytes]:
    found = []
    while len(found) < count:
        message = await ws.recv()
        if isinstance(message, bytes):
            found.append(message)
    return found
