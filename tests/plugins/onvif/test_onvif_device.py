"""The ONVIF device simulator (``tests/fixtures/onvif_device.py``) is a faithful peer: the
unmodified onvif-zeep-async client (``onvif.ONVIFCamera``, zeep over aiohttp, WS-Security
PasswordDigest) and plain HTTP clients talk to it exactly as to a camera. No Nabat code here."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import importlib.util
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import httpx
import onvif
import pytest
from lxml import etree
from onvif import ONVIFCamera
from onvif.exceptions import ONVIFAuthError, ONVIFError
from onvif.util import is_auth_error
from zeep import Plugin
from zeep.exceptions import Fault


def _load_onvif_device() -> Any:
    """The fixture module by path (``tests/`` is no package under --import-mode=importlib)."""
    name = "nabat_tests_onvif_device"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[2] / "fixtures" / "onvif_device.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


onvif_device = _load_onvif_device()
OnvifDevice = onvif_device.OnvifDevice

PASSWORD = "pa ss:wörd"
ENV = "http://www.w3.org/2003/05/soap-envelope"
TER = "http://www.onvif.org/ver10/error"
WSNT = "http://docs.oasis-open.org/wsn/b-2"
WSRF_R = "http://docs.oasis-open.org/wsrf/r-2"
NS_TT = "http://www.onvif.org/ver10/schema"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TPTZ = "http://www.onvif.org/ver20/ptz/wsdl"
TEV = "http://www.onvif.org/ver10/events/wsdl"
PULLPOINT = f"{TEV}/PullPointSubscription"
XS = "http://www.w3.org/2001/XMLSchema"
CONCRETE_SET = "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"
MOTION = "tns1:VideoSource/MotionAlarm"
SOURCE = {"VideoSourceConfigurationToken": "vsc1"}
MINUTE = dt.timedelta(seconds=60)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def make_device() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    devices = []

    async def make(**knobs: Any) -> Any:
        device = OnvifDevice(**knobs)
        await device.start()
        devices.append(device)
        return device

    yield make
    for device in devices:
        await device.stop()


@pytest.fixture
async def device(make_device: Callable[..., Awaitable[Any]]) -> Any:
    return await make_device()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[ONVIFCamera]]]:
    cameras: list[ONVIFCamera] = []

    async def connect(
        device: Any,
        user: str | None = "admin",
        password: str | None = PASSWORD,
        *,
        discover: bool = True,
        **options: Any,
    ) -> ONVIFCamera:
        camera = ONVIFCamera(device.host, device.port, user, password, no_cache=True, **options)
        cameras.append(camera)
        if discover:
            await camera.update_xaddrs()
        return camera

    yield connect
    for camera in cameras:
        await camera.close()


# --------------------------------------------------------------------------- helpers


def subcodes(fault: Fault) -> list[str]:
    return [etree.QName(code).text for code in fault.subcodes]


def assert_not_authorized(fault: Fault) -> None:
    assert fault.code == "env:Sender"
    assert subcodes(fault) == [f"{{{TER}}}NotAuthorized"]
    assert fault.message == "Sender not Authorized"
    assert is_auth_error(fault)


def assert_resource_unknown(fault: Fault) -> None:
    assert fault.code == "env:Sender"
    assert subcodes(fault) == [f"{{{WSRF_R}}}ResourceUnknownFault"]


def soap(body: str) -> bytes:
    envelope = f'<s:Envelope xmlns:s="{ENV}"><s:Body>{body}</s:Body></s:Envelope>'
    return f'<?xml version="1.0"?>{envelope}'.encode()


def fault_of(response: httpx.Response) -> tuple[str, list[str], str]:
    """(code, subcodes, reason) of a raw SOAP 1.2 fault answer."""
    fault = etree.fromstring(response.content).find(f"{{{ENV}}}Body/{{{ENV}}}Fault")
    assert fault is not None, response.text
    values = fault.findall(f".//{{{ENV}}}Value")
    code, *subs = [
        etree.QName(v.nsmap[v.text.split(":")[0]], v.text.split(":")[1]).text for v in values
    ]
    return code, subs, fault.findtext(f"{{{ENV}}}Reason/{{{ENV}}}Text")


def decode_jpeg(data: bytes) -> tuple[int, int]:
    codec = av.CodecContext.create("mjpeg", "r")
    frames = codec.decode(av.Packet(data))
    assert frames, "no picture decoded"
    return frames[0].width, frames[0].height


async def pull(service: Any, limit: int = 10, timeout: float = 0.0) -> Any:
    return await service.PullMessages(
        {"MessageLimit": limit, "Timeout": dt.timedelta(seconds=timeout)}
    )


def items(simple_items: Any) -> dict[str, str]:
    return {item.Name: item.Value for item in simple_items.SimpleItem}


# --------------------------------------------------------------------------- device service


async def test_discovery_and_device_information(device, connect):
    camera = await connect(device)

    assert camera.xaddrs == {
        TDS: f"{device.url}/onvif/device_service",
        TRT: f"{device.url}/onvif/media_service",
        TPTZ: f"{device.url}/onvif/ptz_service",
        TEV: f"{device.url}/onvif/event_service",
    }
    info = await (await camera.create_devicemgmt_service()).GetDeviceInformation()
    assert (info.Manufacturer, info.Model, info.FirmwareVersion, info.SerialNumber) == (
        "Nabat Test",
        "SimCam 1",
        "1.0",
        "SN0001",
    )
    # update_xaddrs() prefers GetServices and needs no GetCapabilities when it answers.
    assert [op for op, _ in device.calls] == ["GetServices", "GetDeviceInformation"]
    assert device.auth_failures == 0


async def test_capabilities_and_services_with_capabilities(device, connect):
    camera = await connect(device)

    capabilities = await camera.get_capabilities()
    assert capabilities["Media"]["XAddr"] == f"{device.url}/onvif/media_service"
    assert capabilities["PTZ"]["XAddr"] == f"{device.url}/onvif/ptz_service"
    assert capabilities["Events"]["XAddr"] == f"{device.url}/onvif/event_service"
    assert capabilities["Events"]["WSPullPointSupport"] is True

    devicemgmt = await camera.create_devicemgmt_service()
    bare = await devicemgmt.GetServices({"IncludeCapability": False})
    full = await devicemgmt.GetServices({"IncludeCapability": True})
    assert [s.Namespace for s in full] == [TDS, TRT, TPTZ, TEV]
    assert all(s.Capabilities is None for s in bare)
    assert all(s.Capabilities is not None for s in full)


@pytest.mark.parametrize(("ptz", "events"), [(False, True), (True, False)])
async def test_missing_services_are_not_advertised(make_device, connect, ptz, events):
    device = await make_device(ptz=ptz, events=events)
    camera = await connect(device)

    assert (TPTZ in camera.xaddrs) is ptz
    assert (TEV in camera.xaddrs) is events
    capabilities = await camera.get_capabilities()
    assert (capabilities["PTZ"] is not None) is ptz
    assert (capabilities["Events"] is not None) is events
    absent = camera.create_ptz_service if not ptz else camera.create_events_service
    with pytest.raises(ONVIFError, match="doesn`t support service"):
        await absent()
    profiles = await (await camera.create_media_service()).GetProfiles()
    assert (profiles[0].PTZConfiguration is not None) is ptz


# --------------------------------------------------------------------------- WS-Security


async def test_wrong_password_is_refused_as_not_authorized(device, connect):
    camera = await connect(device, password="wrong", discover=False)

    # GetServices is refused, the library falls back to GetCapabilities, refused too.
    with pytest.raises(Fault) as caught:
        await camera.update_xaddrs()

    assert_not_authorized(caught.value)
    assert device.auth_failures == 2
    assert device.last_auth_error == "wrong password digest"
    assert device.calls == []


async def test_clock_drift_is_refused_unless_the_library_adjusts_time(make_device, connect):
    device = await make_device(clock_offset_s=3600)

    naive = await connect(device, discover=False)
    with pytest.raises(Fault) as caught:
        await naive.update_xaddrs()
    assert_not_authorized(caught.value)
    # Created is whole seconds, so the skew reads -3600 or -3601 s.
    assert re.fullmatch(r"Created is -360[01] s off the device clock", device.last_auth_error)

    adjusted = await connect(device, adjust_time=True)
    # The library reads GetSystemDateAndTime without credentials, then signs with the offset.
    assert 3598 <= adjusted.dt_diff.total_seconds() <= 3601
    info = await (await adjusted.create_devicemgmt_service()).GetDeviceInformation()
    assert info.SerialNumber == "SN0001"
    assert [op for op, _ in device.calls] == [
        "GetSystemDateAndTime",
        "GetServices",
        "GetDeviceInformation",
    ]


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-240, True), (240, True), (-400, False), (400, False)]
)
async def test_created_must_be_within_five_minutes_of_the_device_clock(
    make_device, connect, offset, accepted
):
    device = await make_device(clock_offset_s=offset)
    camera = await connect(device, discover=False)

    if accepted:
        await camera.update_xaddrs()
        assert device.auth_failures == 0
    else:
        with pytest.raises(Fault):
            await camera.update_xaddrs()
        assert device.auth_failures == 2


async def test_a_replayed_nonce_is_refused(device, connect):
    camera = await connect(device)
    devicemgmt = await camera.create_devicemgmt_service()
    devicemgmt.zeep_client.wsse.nonce = "the same nonce"

    await devicemgmt.GetDeviceInformation()
    with pytest.raises(Fault) as caught:
        await devicemgmt.GetDeviceInformation()

    assert_not_authorized(caught.value)
    assert device.last_auth_error == "replayed Nonce"


async def test_password_text_is_accepted(device, connect):
    camera = await connect(device, encrypt=False)
    info = await (await camera.create_devicemgmt_service()).GetDeviceInformation()
    assert info.Model == "SimCam 1"

    wrong = await connect(device, password="wrong", encrypt=False, discover=False)
    with pytest.raises(Fault):
        await wrong.update_xaddrs()
    assert device.last_auth_error == "wrong password text"


async def test_credentials_change_at_run_time(device, connect):
    camera = await connect(device)
    devicemgmt = await camera.create_devicemgmt_service()

    device.set_credentials("operator", "n3w")
    with pytest.raises(Fault) as caught:
        await devicemgmt.GetDeviceInformation()
    assert_not_authorized(caught.value)

    renewed = await connect(device, "operator", "n3w")
    await (await renewed.create_devicemgmt_service()).GetDeviceInformation()


async def test_device_without_credentials_accepts_anyone(make_device, connect):
    device = await make_device(username=None, password=None)
    camera = await connect(device, "whoever", "whatever")
    await (await camera.create_devicemgmt_service()).GetDeviceInformation()
    assert device.auth_failures == 0


# --------------------------------------------------------------------------- raw SOAP


async def test_raw_soap_status_codes_and_faults(device):
    async with httpx.AsyncClient(base_url=device.url) as http:
        # GetSystemDateAndTime needs no credentials (ONVIF); anything else does.
        time_answer = await http.post(
            "/onvif/device_service", content=soap(f'<GetSystemDateAndTime xmlns="{TDS}"/>')
        )
        refused = await http.post(
            "/onvif/device_service", content=soap(f'<GetDeviceInformation xmlns="{TDS}"/>')
        )
        malformed = await http.post("/onvif/device_service", content=b"<s:Envelope><oops")

    assert time_answer.status_code == 200
    assert time_answer.headers["content-type"].startswith("application/soap+xml")
    utc = etree.fromstring(time_answer.content).find(f".//{{{NS_TT}}}UTCDateTime")
    assert utc is not None and utc.findtext(f"{{{NS_TT}}}Date/{{{NS_TT}}}Year")
    assert refused.status_code == 400
    assert fault_of(refused) == (
        f"{{{ENV}}}Sender",
        [f"{{{TER}}}NotAuthorized"],
        "Sender not Authorized",
    )
    assert device.last_auth_error == "no UsernameToken"
    assert malformed.status_code == 400
    assert fault_of(malformed)[:2] == (f"{{{ENV}}}Sender", [f"{{{TER}}}WellFormed"])


async def test_unknown_or_misplaced_operations_are_not_supported(make_device, connect):
    device = await make_device(username=None)
    camera = await connect(device)

    with pytest.raises(Fault) as caught:
        await (await camera.create_devicemgmt_service()).GetNetworkInterfaces()
    assert caught.value.code == "env:Receiver"
    assert subcodes(caught.value) == [f"{{{TER}}}ActionNotSupported"]

    async with httpx.AsyncClient(base_url=device.url) as http:
        misplaced = await http.post(
            "/onvif/ptz_service", content=soap(f'<GetProfiles xmlns="{TRT}"/>')
        )
    assert misplaced.status_code == 500
    assert fault_of(misplaced)[:2] == (f"{{{ENV}}}Receiver", [f"{{{TER}}}ActionNotSupported"])


# --------------------------------------------------------------------------- media and snapshots


async def test_profiles_stream_and_snapshot_uris(device, connect):
    camera = await connect(device)
    media = await camera.create_media_service()

    main, sub = await media.GetProfiles()
    assert (main.token, sub.token) == ("main", "sub")
    encoder = main.VideoEncoderConfiguration
    assert (encoder.Encoding, encoder.Resolution.Width, encoder.Resolution.Height) == (
        "H264",
        1920,
        1080,
    )
    assert encoder.RateControl.FrameRateLimit == 25
    assert main.PTZConfiguration.NodeToken == "ptz_node"
    resolution = sub.VideoEncoderConfiguration.Resolution
    assert (resolution.Width, resolution.Height) == (640, 360)
    assert sub.PTZConfiguration is None

    setup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
    uris = [
        (await media.GetStreamUri({"StreamSetup": setup, "ProfileToken": token})).Uri
        for token in ("main", "sub")
    ]
    assert uris == ["rtsp://127.0.0.1:554/live", "rtsp://127.0.0.1:554/live_sub"]
    assert (
        "GetStreamUri",
        {"ProfileToken": "sub", "Stream": "RTP-Unicast", "Protocol": "RTSP"},
    ) in (device.calls)
    assert await camera.get_snapshot_uri("main") == f"{device.url}/snapshot.jpg?profile=main"

    # The library's own snapshot fetch (aiohttp DigestAuthMiddleware) gets a real JPEG.
    jpeg = await camera.get_snapshot("main")
    assert decode_jpeg(jpeg) == (64, 48)
    assert ("Snapshot", {"profile": "main"}) in device.calls

    with pytest.raises(Fault) as caught:
        await media.GetStreamUri({"StreamSetup": setup, "ProfileToken": "nope"})
    assert subcodes(caught.value) == [f"{{{TER}}}InvalidArgVal", f"{{{TER}}}NoProfile"]


async def test_snapshot_behind_digest_auth(device):
    url = f"{device.url}/snapshot.jpg?profile=main"
    async with httpx.AsyncClient() as http:
        anonymous = await http.get(url)
        good = await http.get(url, auth=httpx.DigestAuth("admin", PASSWORD))
        bad = await http.get(url, auth=httpx.DigestAuth("admin", "wrong"))

    assert anonymous.status_code == 401
    challenge = anonymous.headers["www-authenticate"]
    assert challenge.startswith("Digest ") and 'qop="auth"' in challenge
    assert good.status_code == 200
    assert good.headers["content-type"] == "image/jpeg"
    assert decode_jpeg(good.content) == (64, 48)
    assert bad.status_code == 401
    assert device.auth_failures == 1  # the bare first request of a handshake is no failure


@pytest.mark.filterwarnings("ignore:.*(BasicAuth|'auth' parameter).*deprecated:DeprecationWarning")
async def test_snapshot_behind_basic_auth(make_device, connect):
    device = await make_device(snapshot_auth="basic")
    url = f"{device.url}/snapshot.jpg?profile=sub"
    async with httpx.AsyncClient() as http:
        anonymous = await http.get(url)
        good = await http.get(url, auth=httpx.BasicAuth("admin", PASSWORD))
        bad = await http.get(url, auth=httpx.BasicAuth("admin", "wrong"))

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    assert good.status_code == 200
    assert decode_jpeg(good.content) == (64, 48)
    assert bad.status_code == 401
    # aiohttp's BasicAuth sends the password as Latin-1, httpx as UTF-8: both work.
    camera = await connect(device)
    assert decode_jpeg(await camera.get_snapshot("sub", basic_auth=True)) == (64, 48)


async def test_snapshot_without_auth(make_device):
    device = await make_device(snapshot_auth="none")
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{device.url}/snapshot.jpg?profile=main")
    assert answer.status_code == 200
    assert decode_jpeg(answer.content) == (64, 48)


async def test_refused_snapshot_raises_onvif_auth_error(device, connect):
    camera = await connect(device)
    await camera.get_snapshot_uri("main")  # the library caches the URI
    device.set_credentials("admin", "changed")

    with pytest.raises(ONVIFAuthError):
        await camera.get_snapshot("main")


async def test_device_without_snapshots(make_device, connect):
    device = await make_device(snapshot=False)
    camera = await connect(device)
    media = await camera.create_media_service()

    with pytest.raises(Fault) as caught:
        await media.GetSnapshotUri({"ProfileToken": "main"})
    assert subcodes(caught.value) == [f"{{{TER}}}ActionNotSupported"]
    assert await camera.get_snapshot_uri("sub") is None
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{device.url}/snapshot.jpg")).status_code == 404


# --------------------------------------------------------------------------- PTZ


async def test_ptz_moves_change_the_position_and_are_recorded(device, connect):
    camera = await connect(device)
    ptz = await camera.create_ptz_service()
    main = {"ProfileToken": "main"}

    await ptz.ContinuousMove(
        {**main, "Velocity": {"PanTilt": {"x": 0.5, "y": 0.0}, "Zoom": {"x": 0}}}
    )
    moving = await ptz.GetStatus(main)
    assert moving.MoveStatus.PanTilt == "MOVING"
    await ptz.Stop({**main, "PanTilt": True, "Zoom": True})
    pan, tilt, zoom = device.ptz_position
    assert device.ptz_velocity is None
    assert pan > 0 and (tilt, zoom) == (0.0, 0.0)
    status = await ptz.GetStatus(main)
    assert status.MoveStatus.PanTilt == "IDLE"
    assert status.Position.PanTilt.x == pytest.approx(pan, abs=1e-5)

    position = {"PanTilt": {"x": 0.25, "y": -0.5}, "Zoom": {"x": 0.75}}
    await ptz.AbsoluteMove({**main, "Position": position})
    assert device.ptz_position == (0.25, -0.5, 0.75)
    await ptz.RelativeMove({**main, "Translation": {"PanTilt": {"x": 2.0, "y": 0.0}}})
    assert device.ptz_position == (1.0, -0.5, 0.75)  # clamped to the generic space

    token = await ptz.SetPreset({**main, "PresetName": "Gate"})  # zeep unwraps PresetToken
    assert device.presets[token] == "Gate"
    await ptz.GotoHomePosition(main)
    assert device.ptz_position == (0.0, 0.0, 0.0)
    await ptz.GotoPreset({**main, "PresetToken": token})
    assert device.ptz_position == (1.0, -0.5, 0.75)
    presets = {p.token: p.Name for p in await ptz.GetPresets(main)}
    assert presets == device.presets and presets[token] == "Gate"

    assert device.operations("ContinuousMove") == [
        {"ProfileToken": "main", "x": 0.5, "y": 0.0, "zoom": 0.0}
    ]
    assert device.operations("Stop") == [
        {"ProfileToken": "main", "PanTilt": "true", "Zoom": "true"}
    ]
    assert device.operations("AbsoluteMove") == [
        {"ProfileToken": "main", "x": 0.25, "y": -0.5, "zoom": 0.75}
    ]
    assert device.operations("SetPreset") == [
        {"ProfileToken": "main", "PresetName": "Gate", "result": token}
    ]
    assert ("GotoPreset", {"ProfileToken": "main", "PresetToken": token}) in device.calls


async def test_ptz_faults_and_preset_management(device, connect):
    camera = await connect(device)
    ptz = await camera.create_ptz_service()
    main = {"ProfileToken": "main"}

    with pytest.raises(Fault) as caught:
        await ptz.GotoPreset({**main, "PresetToken": "99"})
    assert caught.value.code == "env:Sender"
    assert subcodes(caught.value) == [f"{{{TER}}}InvalidArgVal", f"{{{TER}}}NoToken"]
    assert ("GotoPreset", {"ProfileToken": "main", "PresetToken": "99"}) in device.calls

    with pytest.raises(Fault) as caught:
        await ptz.ContinuousMove({"ProfileToken": "sub", "Velocity": {"PanTilt": {"x": 1, "y": 0}}})
    assert subcodes(caught.value)[-1] == f"{{{TER}}}NoPTZProfile"

    await ptz.SetHomePosition(main)  # at the origin; now move away and come back
    await ptz.AbsoluteMove({**main, "Position": {"PanTilt": {"x": -0.5, "y": 0.5}}})
    await ptz.SetHomePosition(main)
    await ptz.AbsoluteMove({**main, "Position": {"PanTilt": {"x": 0.0, "y": 0.0}}})
    await ptz.GotoHomePosition(main)
    assert device.ptz_position == (-0.5, 0.5, 0.0)

    await ptz.RemovePreset({**main, "PresetToken": "1"})
    assert "1" not in device.presets
    with pytest.raises(Fault) as caught:
        await ptz.RemovePreset({**main, "PresetToken": "1"})
    assert subcodes(caught.value)[-1] == f"{{{TER}}}NoToken"


# --------------------------------------------------------------------------- events


async def test_pullpoint_manager_receives_an_emitted_event(device, connect):
    camera = await connect(device)
    lost: list[bool] = []
    manager = await camera.create_pullpoint_manager(MINUTE, lambda: lost.append(True))

    [sub] = device.subscriptions.values()
    assert camera.xaddrs[PULLPOINT] == sub.address
    device.emit(MOTION, source=SOURCE, data={"State": "true"})
    result = await pull(manager.get_service(), timeout=5)

    [message] = result.NotificationMessage
    assert message.Topic._value_1 == MOTION
    assert message.Topic.Dialect == CONCRETE_SET
    body = message.Message._value_1
    assert body.PropertyOperation == "Changed"
    assert items(body.Source) == SOURCE
    assert items(body.Data) == {"State": "true"}
    assert body.UtcTime.tzinfo is not None
    # Every pull is a keep-alive: termination is pushed to now + the granted minute.
    assert abs((result.TerminationTime - result.CurrentTime) - MINUTE) <= dt.timedelta(seconds=1)

    await manager.shutdown()
    assert device.subscriptions == {}
    assert ("Unsubscribe", {"subscription": sub.id}) in device.calls
    assert lost == []


async def test_pull_waits_for_an_event_and_honours_message_limit(device, connect):
    camera = await connect(device)
    manager = await camera.create_pullpoint_manager(MINUTE, lambda: None)
    service = manager.get_service()

    assert (await pull(service, timeout=0)).NotificationMessage == []  # Timeout PT0S: at once

    waiting = asyncio.create_task(pull(service, limit=1, timeout=30))
    await device.wait_for_call("PullMessages", 2)  # the second pull is parked
    device.emit(MOTION, source=SOURCE, data={"State": "true"})
    assert len((await waiting).NotificationMessage) == 1

    for state in ("false", "true", "false"):
        device.emit(MOTION, source=SOURCE, data={"State": state})
    first, second = await pull(service, limit=2), await pull(service, limit=2)
    assert [items(m.Message._value_1.Data)["State"] for m in first.NotificationMessage] == [
        "false",
        "true",
    ]
    assert [items(m.Message._value_1.Data)["State"] for m in second.NotificationMessage] == [
        "false"
    ]
    await manager.shutdown()


async def test_property_states_are_initialized_on_subscribe_and_sync(device, connect):
    device.emit(MOTION, source=SOURCE, data={"State": "true"})
    camera = await connect(device)
    manager = await camera.create_pullpoint_manager(MINUTE, lambda: None)
    service = manager.get_service()

    [initial] = (await pull(service)).NotificationMessage
    assert initial.Message._value_1.PropertyOperation == "Initialized"
    assert items(initial.Message._value_1.Data) == {"State": "true"}
    assert (await pull(service)).NotificationMessage == []

    await manager.set_synchronization_point()
    [again] = (await pull(service)).NotificationMessage
    assert again.Message._value_1.PropertyOperation == "Initialized"
    await manager.shutdown()


async def test_renew_extends_termination_up_to_the_granted_maximum(make_device, connect):
    device = await make_device(termination_s=600)
    camera = await connect(device)
    manager = await camera.create_pullpoint_manager(MINUTE, lambda: None)
    [sub] = device.subscriptions.values()
    first_termination = sub.termination
    subscription = await camera.create_subscription_service("PullPointSubscription")

    renewed = await subscription.Renew("PT300S")
    assert renewed.TerminationTime - renewed.CurrentTime == dt.timedelta(seconds=300)
    assert sub.termination - first_termination > dt.timedelta(seconds=200)
    capped = await subscription.Renew("PT3600S")
    assert capped.TerminationTime - capped.CurrentTime == dt.timedelta(seconds=600)
    assert device.operations("Renew")[-1] == {"subscription": sub.id, "TerminationTime": "PT3600S"}
    await manager.shutdown()


async def test_expired_subscription_is_gone(device, connect):
    camera = await connect(device)
    manager = await camera.create_pullpoint_manager(MINUTE, lambda: None)

    device.advance_clock(61)  # past the granted minute; still within the WS-Security window
    assert device.subscriptions == {}
    with pytest.raises(Fault) as caught:
        await pull(manager.get_service())
    assert_resource_unknown(caught.value)
    await manager.shutdown()  # its Unsubscribe faults; the library swallows that


async def test_dropped_subscription_faults_on_the_third_pull(make_device, connect):
    device = await make_device(drop_subscriptions_after=2)
    camera = await connect(device)
    manager = await camera.create_pullpoint_manager(MINUTE, lambda: None)
    service = manager.get_service()

    await pull(service)
    assert len(device.subscriptions) == 1
    await pull(service)
    assert device.subscriptions == {}
    with pytest.raises(Fault) as caught:
        await pull(service)
    assert_resource_unknown(caught.value)
    with pytest.raises(Fault) as caught:
        await (await camera.create_subscription_service("PullPointSubscription")).Renew("PT60S")
    assert_resource_unknown(caught.value)
    await manager.shutdown()


async def test_reboot_forgets_subscriptions_and_releases_a_waiting_pull(device, connect):
    camera = await connect(device)
    manager = await camera.create_pullpoint_manager(MINUTE, lambda: None)
    service = manager.get_service()

    waiting = asyncio.create_task(pull(service, timeout=30))
    await device.wait_for_call("PullMessages")
    device.reboot()

    assert device.subscriptions == {}
    with pytest.raises(Fault) as caught:
        await waiting
    assert_resource_unknown(caught.value)
    with pytest.raises(Fault) as caught:
        await pull(service)
    assert_resource_unknown(caught.value)

    # After the reboot a new subscription works and gets a new address.
    fresh = await camera.create_pullpoint_manager(MINUTE, lambda: None)
    [sub] = device.subscriptions.values()
    assert camera.xaddrs[PULLPOINT] == sub.address
    device.emit(MOTION, source=SOURCE, data={"State": "true"})
    assert len((await pull(fresh.get_service())).NotificationMessage) == 1
    await fresh.shutdown()
    assert device.subscriptions == {}


async def test_a_short_grant_makes_the_library_renew_with_absolute_time(make_device, connect):
    device = await make_device(termination_s=20)
    camera = await connect(device)
    manager = await camera.create_pullpoint_manager(MINUTE, lambda: None)

    # 20 s granted for 60 s asked looks "broken relative" to the library: it renews at once
    # with an absolute TerminationTime, which the device parses and caps again.
    [renew] = device.operations("Renew")
    assert not renew["TerminationTime"].startswith("P")
    dt.datetime.fromisoformat(renew["TerminationTime"])
    [sub] = device.subscriptions.values()
    assert sub.lifetime == dt.timedelta(seconds=20)
    await manager.shutdown()


async def test_too_many_pull_points_are_refused(make_device, connect):
    device = await make_device(max_subscriptions=1)
    camera = await connect(device)
    first = await camera.create_pullpoint_manager(MINUTE, lambda: None)

    with pytest.raises(Fault) as caught:
        await camera.create_pullpoint_manager(MINUTE, lambda: None)
    assert caught.value.code == "env:Receiver"
    assert subcodes(caught.value) == [f"{{{WSNT}}}SubscribeCreationFailedFault"]

    await first.shutdown()
    second = await camera.create_pullpoint_manager(MINUTE, lambda: None)
    assert len(device.subscriptions) == 1
    await second.shutdown()


# --------------------------------------------------------------------------- schema validity


@pytest.fixture(scope="module")
def onvif_schema(tmp_path_factory: pytest.TempPathFactory) -> etree.XMLSchema:
    """The ONVIF schemas as the library ships them: the device, media, PTZ and event WSDLs'
    embedded schemas plus the XSDs they import, compiled into one validator."""
    wsdl_dir = Path(onvif.__file__).parent / "wsdl"
    out = tmp_path_factory.mktemp("onvif_xsd")
    imports = [
        (NS_TT, wsdl_dir / "onvif.xsd"),
        ("http://docs.oasis-open.org/wsn/b-2", wsdl_dir / "b-2.xsd"),
        (WSRF_R, wsdl_dir / "r-2.xsd"),
    ]
    for name in ("devicemgmt", "media", "ptz", "events"):
        wsdl = etree.parse(str(wsdl_dir / f"{name}.wsdl")).getroot()
        for schema in wsdl.iter(f"{{{XS}}}schema"):
            # Re-root the embedded schema with the WSDL's prefixes (its QNames use them) and
            # absolute import locations.
            standalone = etree.Element(schema.tag, dict(schema.attrib), nsmap=schema.nsmap)
            standalone.extend(copy.deepcopy(child) for child in schema)
            for imported in standalone.iter(f"{{{XS}}}import"):
                location = imported.get("schemaLocation")
                imported.set("schemaLocation", (wsdl_dir / location).resolve().as_uri())
            path = out / f"{name}.xsd"
            etree.ElementTree(standalone).write(str(path))
            imports.append((schema.get("targetNamespace"), path))
    master = etree.Element(f"{{{XS}}}schema", targetNamespace="urn:nabat:test", nsmap={"xs": XS})
    for namespace, path in imports:
        etree.SubElement(
            master, f"{{{XS}}}import", namespace=namespace, schemaLocation=path.as_uri()
        )
    return etree.XMLSchema(master)


class CaptureBodies(Plugin):
    """A zeep plugin keeping the body element of every answer (faults included)."""

    def __init__(self) -> None:
        self.bodies: list[etree._Element] = []

    def ingress(self, envelope: Any, http_headers: Any, operation: Any) -> Any:
        body = envelope.find(f"{{{ENV}}}Body")
        if body is not None and len(body):
            self.bodies.append(body[0])
        return envelope, http_headers


def standalone(element: etree._Element) -> etree._ElementTree:
    """``element`` as a document root that keeps every in-scope prefix (QName values)."""
    root = etree.Element(element.tag, dict(element.attrib), nsmap=element.nsmap)
    root.text = element.text
    root.extend(copy.deepcopy(child) for child in element)
    return etree.ElementTree(root)


async def test_every_answer_is_schema_valid(device, connect, onvif_schema):
    capture = CaptureBodies()
    camera = await connect(device, adjust_time=True, discover=False)

    async def service(create: Callable[[], Awaitable[Any]]) -> Any:
        created = await create()
        created.zeep_client.plugins.append(capture)
        created.zeep_client_authless.plugins.append(capture)
        return created

    devicemgmt = await service(camera.create_devicemgmt_service)
    await devicemgmt.authless_GetSystemDateAndTime()
    await camera.update_xaddrs()
    devicemgmt = await service(camera.create_devicemgmt_service)
    await devicemgmt.GetServices({"IncludeCapability": True})
    await devicemgmt.GetServices({"IncludeCapability": False})
    await devicemgmt.GetCapabilities({"Category": "All"})
    await devicemgmt.GetDeviceInformation()
    await devicemgmt.GetScopes()
    await devicemgmt.GetHostname()

    media = await service(camera.create_media_service)
    await media.GetProfiles()
    await media.GetProfile({"ProfileToken": "main"})
    setup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
    await media.GetStreamUri({"StreamSetup": setup, "ProfileToken": "main"})
    await media.GetSnapshotUri({"ProfileToken": "sub"})

    ptz = await service(camera.create_ptz_service)
    main = {"ProfileToken": "main"}
    await ptz.GetNodes()
    await ptz.GetConfigurations()
    await ptz.ContinuousMove({**main, "Velocity": {"PanTilt": {"x": 0.1, "y": 0.1}}})
    await ptz.GetStatus(main)
    await ptz.Stop(main)
    await ptz.AbsoluteMove({**main, "Position": {"PanTilt": {"x": 0.1, "y": 0.2}}})
    await ptz.RelativeMove({**main, "Translation": {"Zoom": {"x": 0.3}}})
    await ptz.GetPresets(main)
    token = await ptz.SetPreset({**main, "PresetName": "Door"})
    await ptz.GotoPreset({**main, "PresetToken": token})
    await ptz.RemovePreset({**main, "PresetToken": token})
    await ptz.SetHomePosition(main)
    await ptz.GotoHomePosition(main)

    events = await service(camera.create_events_service)
    await events.GetServiceCapabilities()
    await events.GetEventProperties()
    await events.CreatePullPointSubscription({"InitialTerminationTime": "PT60S"})
    camera.xaddrs[PULLPOINT] = next(iter(device.subscriptions.values())).address
    pullpoint = await service(camera.create_pullpoint_service)
    subscription = await service(
        lambda: camera.create_subscription_service("PullPointSubscription")
    )
    device.emit(MOTION, source=SOURCE, data={"State": "true"})
    assert len((await pull(pullpoint)).NotificationMessage) == 1
    await pullpoint.SetSynchronizationPoint()
    await subscription.Renew("PT30S")
    await subscription.Unsubscribe()
    with pytest.raises(Fault):
        await pull(pullpoint)

    answers = [etree.QName(body).localname for body in capture.bodies]
    operations = [
        "GetSystemDateAndTime", "GetServices", "GetCapabilities", "GetDeviceInformation",
        "GetScopes", "GetHostname", "GetProfiles", "GetProfile", "GetStreamUri",
        "GetSnapshotUri", "GetNodes", "GetConfigurations", "ContinuousMove", "GetStatus",
        "Stop", "AbsoluteMove", "RelativeMove", "GetPresets", "SetPreset", "GotoPreset",
        "RemovePreset", "SetHomePosition", "GotoHomePosition", "GetServiceCapabilities",
        "GetEventProperties", "CreatePullPointSubscription", "PullMessages",
        "SetSynchronizationPoint", "Renew", "Unsubscribe",
    ]  # fmt: skip
    assert set(answers) == {f"{op}Response" for op in operations} | {"Fault"}
    assert answers[-1] == "Fault"
    for body in capture.bodies[:-1]:
        assert onvif_schema.validate(standalone(body)), (body.tag, onvif_schema.error_log)
    # The ResourceUnknownFault detail is a valid WS-ResourceFramework fault too.
    [detail] = capture.bodies[-1].find(f"{{{ENV}}}Detail")
    assert onvif_schema.validate(standalone(detail)), onvif_schema.error_log
