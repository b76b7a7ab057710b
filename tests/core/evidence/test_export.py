"""Evidence export from real recorded footage: the clip plays and covers the period, the
manifest's signature and files verify without the hub, and every tampering shows."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import av
import msgspec
import pytest
from click.testing import CliRunner
from nabat.cli import cli
from nabat.evidence import (
    Actor,
    CameraInfo,
    ClipError,
    NoFootage,
    SegmentTampered,
    SigningKey,
    build_clip,
    export,
    load_or_create_key,
    verify,
)
from nabat.evidence.manifest import Manifest, canonical, signature_text

CAMERA = CameraInfo(id="cam-1", name="ул. Красная, 1", municipality="krasnodar")
ACTOR = Actor(id="user-7", name="Иванова А. П.")


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> SigningKey:
    return load_or_create_key(tmp_path_factory.mktemp("data"))


def _export(recording, key, out: Path, **changes):
    a, b = recording.segments
    args = {
        "start": a.start + timedelta(seconds=1.0),  # inside A's GOP
        "end": b.start + timedelta(seconds=0.75),
        "segments": recording.segments,
    }
    args.update(changes)
    return export(
        out=out,
        key=key,
        hub="ЕДДС Краснодара",
        camera=CAMERA,
        reason="Запрос ОМВД № 12/345",
        exported_by=ACTOR,
        incident_id="inc-42",
        **args,
    )


@pytest.fixture(scope="module")
def exported(recording, key, tmp_path_factory):
    return _export(recording, key, tmp_path_factory.mktemp("exports") / "export-1")


def _decode(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def _copy(exported, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported.path, tmp_path / "copy"))


def _resign(directory: Path, key: SigningKey, **changes) -> None:
    manifest = msgspec.json.decode((directory / "manifest.json").read_bytes(), type=Manifest)
    manifest = msgspec.structs.replace(manifest, **changes)
    data = canonical(manifest)
    (directory / "manifest.json").write_bytes(data)
    (directory / "manifest.sig").write_bytes(signature_text(key, data))


def _failed(result) -> dict[str, str]:
    return {c.name: c.reason for c in result.checks if c.status == "failed"}


def test_a_clip_spanning_two_segments_plays_from_a_key_frame_and_covers_the_period(
    recording, exported
):
    a, b = recording.segments
    start, end = a.start + timedelta(seconds=1.0), b.start + timedelta(seconds=0.75)
    clip = exported.clip
    frames = _decode(Path(clip.path))
    assert len(frames) == clip.frames > 0
    assert frames[0].key_frame and frames[0].pts == 0
    # it starts at the key frame at or before the start, less than a GOP before it
    assert clip.first_frame <= start < clip.first_frame + timedelta(seconds=recording.gop)
    assert clip.last_frame <= end < clip.last_frame + timedelta(seconds=0.2)
    assert [s.path for s in clip.segments] == [a.path, b.path]
    expected = (end - start).total_seconds()
    assert expected <= clip.duration < expected + recording.gop + 0.2
    assert abs(float(frames[-1].time) - (clip.last_frame - clip.first_frame).total_seconds()) < 1e-3
    with av.open(clip.path) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_the_export_verifies_and_its_manifest_says_what_and_why(recording, exported, key):
    directory = Path(exported.path)
    assert sorted(p.name for p in directory.iterdir()) == [
        "README.txt",
        "clip.mp4",
        "manifest.json",
        "manifest.sig",
    ]
    result = verify(directory, key.fingerprint)
    assert result.valid, result.checks
    assert [c.name for c in result.checks] == [
        "manifest",
        "signature",
        "key",
        "clip.mp4",
        "README.txt",
    ]
    text = (directory / "manifest.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    assert text == json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert raw["reason"] == "Запрос ОМВД № 12/345" and raw["incident_id"] == "inc-42"
    assert raw["camera"] == {"id": "cam-1", "municipality": "krasnodar", "name": CAMERA.name}
    assert raw["exported_by"] == {"id": "user-7", "name": ACTOR.name}
    assert raw["first_frame"].endswith("Z") and raw["requested_from"].endswith("Z")
    assert raw["signing_key"]["fingerprint"] == key.fingerprint
    assert [s["sha256"] for s in raw["segments"]] == [s.sha256 for s in recording.segments]
    assert raw["gaps"] == []
    assert str(Path(recording.segments[0].path).parent) not in text  # no server paths
    readme = (directory / "README.txt").read_text(encoding="utf-8")
    assert "nabat evidence verify" in readme and key.fingerprint in readme
    assert "ВИДЕОЗАПИСЬ" in readme and "VIDEO EVIDENCE" in readme


def test_nabat_evidence_verify_exits_0_for_the_export_pinned_by_fingerprint_or_key(exported, key):
    runner = CliRunner()
    for pin in (key.fingerprint, key.fingerprint.replace(" ", "").upper(), key.public_key):
        done = runner.invoke(cli, ["evidence", "verify", exported.path, "--key", pin])
        assert done.exit_code == 0, done.output
        assert done.output.splitlines()[-1] == "VALID"
    done = runner.invoke(cli, ["evidence", "verify", exported.path])
    assert done.exit_code == 0 and "[note] key: not pinned" in done.output


def test_openssl_alone_verifies_the_signature(exported, tmp_path):
    """The README's recipe for verifying without Nabat."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl")
    import base64

    raw = json.loads(Path(exported.path, "manifest.json").read_bytes())["signing_key"]
    prefix = bytes.fromhex("302a300506032b6570032100")
    (tmp_path / "key.der").write_bytes(prefix + base64.b64decode(raw["public_key"]))
    sig = base64.b64decode(Path(exported.path, "manifest.sig").read_bytes())
    (tmp_path / "sig.bin").write_bytes(sig)
    command = ["openssl", "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-rawin"]
    command += ["-inkey", str(tmp_path / "key.der"), "-sigfile", str(tmp_path / "sig.bin")]
    done = subprocess.run([*command, "-in", str(Path(exported.path, "manifest.json"))])
    assert done.returncode == 0
    (tmp_path / "edited.json").write_bytes(Path(exported.path, "manifest.json").read_bytes() + b" ")
    done = subprocess.run([*command, "-in", str(tmp_path / "edited.json")], capture_output=True)
    assert done.returncode != 0


def _flip_clip_byte(directory: Path, key: SigningKey) -> None:
    clip = directory / "clip.mp4"
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0x01
    clip.write_bytes(bytes(data))


def _edit_reason(directory: Path, key: SigningKey) -> None:
    path = directory / "manifest.json"
    path.write_bytes(path.read_bytes().replace(b"12/345", b"12/346"))


def _edit_times(directory: Path, key: SigningKey) -> None:
    path = directory / "manifest.json"
    raw = json.loads(path.read_bytes())
    assert raw["first_frame"] != "2026-12-06T09:59:00Z"
    raw["first_frame"] = "2026-12-06T09:59:00Z"
    path.write_text(json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def _resigned_by_another_key(directory: Path, key: SigningKey) -> None:
    forger = SigningKey.generate()
    _resign(directory, forger, reason="forged", signing_key=Manifest.signer(forger))


def _extra_file(directory: Path, key: SigningKey) -> None:
    (directory / "note.txt").write_text("added after the export")


def _lists_etc_passwd(directory: Path, key: SigningKey) -> None:
    """Signed by the hub's own key, even: a path in the manifest is never followed."""
    manifest = msgspec.json.decode((directory / "manifest.json").read_bytes(), type=Manifest)
    size = Path("/etc/passwd").stat().st_size if Path("/etc/passwd").exists() else 0
    entry = msgspec.structs.replace(manifest.files[0], name="../etc/passwd", size=size)
    _resign(directory, key, files=[*manifest.files, entry])


def _lists_absolute_path(directory: Path, key: SigningKey) -> None:
    manifest = msgspec.json.decode((directory / "manifest.json").read_bytes(), type=Manifest)
    entry = msgspec.structs.replace(manifest.files[0], name="/etc/passwd")
    _resign(directory, key, files=[*manifest.files, entry])


def _drops_the_signature(directory: Path, key: SigningKey) -> None:
    (directory / "manifest.sig").unlink()


@pytest.mark.parametrize(
    ("attack", "failing"),
    [
        (_flip_clip_byte, {"clip.mp4"}),
        (_edit_reason, {"signature"}),
        (_edit_times, {"signature"}),
        (_resigned_by_another_key, {"key"}),
        (_extra_file, {"note.txt"}),
        (_lists_etc_passwd, {"../etc/passwd"}),
        (_lists_absolute_path, {"/etc/passwd"}),
        (_drops_the_signature, {"signature"}),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_tampering_fails_verification(exported, key, tmp_path, attack, failing):
    directory = _copy(exported, tmp_path)
    attack(directory, key)
    result = verify(directory, key.fingerprint)
    assert not result.valid
    assert set(_failed(result)) == failing, result.checks
    done = CliRunner().invoke(cli, ["evidence", "verify", str(directory), "--key", key.fingerprint])
    assert done.exit_code == 1, done.output
    assert "[FAIL]" in done.output and done.output.splitlines()[-1] == "INVALID"


def test_a_path_in_the_manifest_is_refused_unopened(exported, key, tmp_path):
    directory = _copy(exported, tmp_path)
    _lists_etc_passwd(directory, key)
    reason = _failed(verify(directory, key.fingerprint))["../etc/passwd"]
    assert "not a plain file name" in reason and "not opened" in reason


def test_another_keys_signature_passes_only_unpinned(exported, key, tmp_path):
    """Why the police pin the fingerprint: a forger's manifest is validly signed — by the
    forger."""
    directory = _copy(exported, tmp_path)
    _resigned_by_another_key(directory, key)
    unpinned = verify(directory)
    assert unpinned.valid
    assert [c.status for c in unpinned.checks if c.name == "key"] == ["warning"]
    assert "signed by another key" in _failed(verify(directory, key.public_key))["key"]


def test_a_tampered_segment_refuses_the_export_naming_it(recording, key, tmp_path):
    a, b = recording.segments
    changed = tmp_path / "segment-1.mp4"
    data = bytearray(Path(b.path).read_bytes())
    data[-100] ^= 0xFF
    changed.write_bytes(bytes(data))
    forged = msgspec.structs.replace(b, path=str(changed))
    out = tmp_path / "exports" / "export"
    with pytest.raises(SegmentTampered, match=r"segment-1\.mp4") as caught:
        _export(recording, key, out, segments=[a, forged])
    assert caught.value.segment == forged
    assert not (tmp_path / "exports").exists() or list((tmp_path / "exports").iterdir()) == []


def test_a_gap_between_segments_stays_a_gap_in_the_clip(recording, tmp_path):
    """B indexed 5 s after A ended (the camera was offline): the clip keeps the 5 s."""
    a, b = recording.segments
    late = msgspec.structs.replace(
        b, start=b.start + timedelta(seconds=5), end=b.end + timedelta(seconds=5)
    )
    start, end = a.start + timedelta(seconds=1.0), late.start + timedelta(seconds=0.75)
    clip = build_clip([a, late], start, end, tmp_path / "clip.mp4")
    assert [(g.start, g.end) for g in clip.gaps] == [(a.end, late.start)]
    frames = _decode(tmp_path / "clip.mp4")
    times = [float(f.time) for f in frames]
    jump = max(later - earlier for earlier, later in itertools.pairwise(times))
    assert 5.0 <= jump < 5.3
    assert clip.last_frame <= end < clip.last_frame + timedelta(seconds=0.2)


def test_a_period_without_footage_is_refused(recording, tmp_path):
    b = recording.segments[-1]
    with pytest.raises(NoFootage):
        build_clip(
            recording.segments,
            b.end + timedelta(seconds=1),
            b.end + timedelta(seconds=9),
            tmp_path / "clip.mp4",
        )
    with pytest.raises(ClipError):
        build_clip(recording.segments, b.end, b.start, tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []


def test_an_export_never_overwrites_another(recording, key, exported):
    from nabat.evidence import ExportError

    with pytest.raises(ExportError, match="exists already"):
        _export(recording, key, Path(exported.path))


def test_usage_errors_exit_2(exported, tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["evidence", "verify", exported.path, "--key", "nope"]).exit_code == 2
    assert runner.invoke(cli, ["evidence", "verify", str(tmp_path / "none")]).exit_code == 2
    done = runner.invoke(cli, ["evidence", "verify", str(tmp_path)])
    assert done.exit_code == 1 and "no manifest.json" in done.output


def test_a_segment_tampered_midway_leaves_no_clip_behind(recording, tmp_path):
    """B is checked when the clip reaches it, after A's frames went into the temp file."""
    a, b = recording.segments
    forged = msgspec.structs.replace(b, sha256="0" * 64)
    out = tmp_path / "clips" / "clip.mp4"
    out.parent.mkdir()
    with pytest.raises(SegmentTampered, match="not the footage that was recorded"):
        build_clip([a, forged], a.start, b.end, out)
    assert list(out.parent.iterdir()) == []


def test_segments_of_two_cameras_make_no_clip(recording, tmp_path):
    a, b = recording.segments
    other = msgspec.structs.replace(b, camera_id="cam-2")
    with pytest.raises(ClipError, match="several cameras"):
        build_clip([a, other], a.start, b.end, tmp_path / "clip.mp4")


def test_verify_runs_as_a_process_without_configuration_or_hub(exported, key, tmp_path):
    """What the police run: no plugins.toml, no data directory, no database, no hub."""
    from nabat.testing import run_cli

    done = run_cli("evidence", "verify", exported.path, "--key", key.fingerprint, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "VALID"
    assert list(tmp_path.iterdir()) == []
