"""plugins.toml: errors name file, line, key path and reason; secrets referenced and masked."""

from __future__ import annotations

import textwrap
from pathlib import Path

import msgspec
import pytest
from nabat.config import ConfigInvalid, Secret, convert_settings, load_config, masked
from nabat.masking import mask_url, mask_value


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plugins.toml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def issues_of(path: Path) -> list:
    with pytest.raises(ConfigInvalid) as err:
        load_config(path)
    return err.value.issues


def test_defaults_load_from_an_empty_file(tmp_path):
    loaded = load_config(write(tmp_path, ""))
    assert loaded.config.hub.region == "krasnodar-krai"
    assert loaded.config.hub.language == "ru"
    assert loaded.data_dir == (tmp_path / "data").resolve()


def test_unknown_key_names_file_line_and_path(tmp_path):
    path = write(
        tmp_path,
        """
        [hub]
        name = "x"

        [instances.cam-1]
        kind = "simulator.camera"
        municipality = "krasnodar"
        timout = 5
        """,
    )
    [issue] = issues_of(path)
    assert issue.path == "instances.cam-1.timout"
    assert issue.reason == "unknown key"
    assert issue.line == 7
    assert str(issue) == f"{path}:7: instances.cam-1.timout: unknown key"


def test_wrong_type_and_missing_required_are_both_reported(tmp_path):
    path = write(
        tmp_path,
        """
        [hub]
        startup_timeout = "soon"

        [instances.cam-1]
        municipality = "sochi"

        [instances.cam-2]
        kind = "simulator.camera"
        lat = 45.0
        """,
    )
    found = {i.path: i for i in issues_of(path)}
    assert "Expected `float`, got `str`" in found["hub.startup_timeout"].reason
    assert found["hub.startup_timeout"].line == 2
    assert found["instances.cam-1.kind"].reason == "required key is missing"
    assert found["instances.cam-1.kind"].line == 4
    assert "both lat and lon" in found["instances.cam-2"].reason


def test_unknown_top_level_table_and_unknown_municipality(tmp_path):
    path = write(
        tmp_path,
        """
        [hubb]
        name = "typo"

        [instances.cam-1]
        kind = "simulator.camera"
        municipality = "moscow"
        """,
    )
    found = {i.path: i for i in issues_of(path)}
    assert found["hubb"].line == 1 and "unknown key" in found["hubb"].reason
    assert (
        "not a municipality of region krasnodar-krai"
        in found["instances.cam-1.municipality"].reason
    )


def test_toml_syntax_errors_point_at_the_line(tmp_path):
    [issue] = issues_of(write(tmp_path, '[hub]\nname = "x\n'))
    assert issue.line == 2 and "not valid TOML" in issue.reason


class DeviceSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    host: str
    password: Secret
    token: Secret | None = None
    port: int = 502


def test_secrets_come_from_env_or_file_and_never_inline(tmp_path, monkeypatch):
    secret_file = tmp_path / "siren.secret"
    secret_file.write_text("from-file\n")
    monkeypatch.setenv("NABAT_TEST_SIREN_PW", "hunter2")
    loaded = load_config(write(tmp_path, ""))
    ok = convert_settings(
        loaded,
        {
            "host": "10.0.0.5",
            "password": {"env": "NABAT_TEST_SIREN_PW"},
            "token": {"file": "siren.secret"},
        },
        DeviceSettings,
        ["instances", "s1", "settings"],
    )
    assert ok.password.reveal() == "hunter2" and ok.token.reveal() == "from-file"
    assert "hunter2" not in repr(ok) and "hunter2" not in str(ok.password)

    with pytest.raises(ConfigInvalid) as err:
        convert_settings(
            loaded,
            {"host": "h", "password": "hunter2"},
            DeviceSettings,
            ["instances", "s1", "settings"],
        )
    assert err.value.issues[0].path == "instances.s1.settings.password"
    assert "must not be written inline" in err.value.issues[0].reason

    with pytest.raises(ConfigInvalid) as err:
        convert_settings(
            loaded,
            {"host": "h", "password": {"env": "NABAT_TEST_UNSET_VAR"}},
            DeviceSettings,
            ["i"],
        )
    assert "NABAT_TEST_UNSET_VAR is not set" in err.value.issues[0].reason


def test_masked_output_hides_secrets_and_url_passwords(tmp_path, monkeypatch):
    monkeypatch.setenv("NABAT_TEST_SIREN_PW", "hunter2")
    loaded = load_config(write(tmp_path, ""))
    settings = convert_settings(
        loaded,
        {"host": "rtsp://admin:hunter2@10.0.0.5/main", "password": {"env": "NABAT_TEST_SIREN_PW"}},
        DeviceSettings,
        ["x"],
    )
    shown = masked(settings)
    assert shown["password"] == "***"
    assert shown["host"] == "rtsp://admin:***@10.0.0.5/main"
    assert "hunter2" not in repr(shown)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("password", "x", "***"),
        ("api_key", "x", "***"),
        ("webhook_secret", "x", "***"),
        ("spin", "x", "x"),
        ("url", "http://u:p@h:8080/x", "http://u:***@h:8080/x"),
        ("url", "http://h/x?y=1", "http://h/x?y=1"),
        ("nested", {"token": "t", "ok": 1}, {"token": "***", "ok": 1}),
    ],
)
def test_masking_by_key_and_url(key, value, expected):
    assert mask_value(key, value) == expected


def test_mask_url_keeps_user_and_host():
    assert (
        mask_url("rtsp://admin:secret@cam.local:554/stream1")
        == "rtsp://admin:***@cam.local:554/stream1"
    )


def test_a_malformed_secret_reference_is_masked_too():
    shown = mask_value("", {"password": {"value": "hunter2"}, "token": ["a"], "ok": {"x": 1}})
    assert shown == {"password": "***", "token": "***", "ok": {"x": 1}}


def test_every_problem_in_a_table_is_reported_not_just_the_first(tmp_path):
    path = write(
        tmp_path,
        """
        [hub]
        log_level = "verbose"
        log_fromat = "json"
        startup_timeout = "soon"
        """,
    )
    found = {i.path: i.line for i in issues_of(path)}
    assert found == {"hub.log_level": 2, "hub.log_fromat": 3, "hub.startup_timeout": 4}


def test_camera_targets_name_municipalities_of_the_region(tmp_path):
    path = write(
        tmp_path,
        """
        [cameras]
        availability_target = 97.5
        targets = { krasnodar = 10, sochy = 3 }
        """,
    )
    [issue] = issues_of(path)
    assert issue.path == "cameras.targets.sochy"
    assert "did you mean sochi" in issue.reason
    ok = load_config(write(tmp_path, "[cameras]\ntargets = { sochi = 3 }\n"))
    assert ok.config.cameras.targets == {"sochi": 3}
    assert ok.config.cameras.inventory_refresh == 60.0


def test_federation_needs_a_site_nats_urls_and_secret_credentials(tmp_path):
    path = write(
        tmp_path,
        """
        [federation]
        servers = ["http://10.0.0.1:4222", "nats://user:pw@10.0.0.2:4222"]
        password = "inline"
        up = ["camera..health"]
        """,
    )
    issues: dict[str, list[str]] = {}
    for issue in issues_of(path):
        issues.setdefault(issue.path, []).append(issue.reason)
    assert any("site" in r for r in issues["hub.site"])
    servers = " ".join(issues["federation.servers"])
    assert "nats://host:port" in servers  # http:// is not NATS
    assert "no user, password or token in the URL" in servers  # nor credentials in the URL
    assert any("inline" in r for r in issues["federation.password"])  # a secret reference
    assert any("empty token" in r for r in issues["federation.up"])


def test_federation_follows_other_sites_with_a_secret_password(tmp_path, monkeypatch):
    monkeypatch.setenv("NATS_PASSWORD", "s3cret")
    path = write(
        tmp_path,
        """
        [hub]
        site = "region"
        [federation]
        servers = ["nats://127.0.0.1:4222"]
        user = "region"
        password = { env = "NATS_PASSWORD" }
        follow = ["sochi", "anapa"]
        """,
    )
    federation = load_config(path).config.federation
    assert isinstance(federation.password, Secret) and federation.password.reveal() == "s3cret"
    assert federation.follow == ["sochi", "anapa"]
    assert "camera.health.>" in federation.up  # what goes up by default
    assert "s3cret" not in repr(masked(federation))
    own = write(
        tmp_path,
        """
        [hub]
        site = "sochi"
        [federation]
        servers = ["nats://127.0.0.1:4222"]
        follow = ["sochi"]
        """,
    )
    assert "own site" in {i.path: i.reason for i in issues_of(own)}["federation.follow"]


def test_federation_commands_need_the_region_keys_and_known_municipalities(tmp_path):
    district = write(
        tmp_path,
        """
        [hub]
        site = "cmd"
        [federation]
        servers = ["nats://127.0.0.1:4222"]
        commands_from = "region"
        """,
    )
    issues = {i.path: i.reason for i in issues_of(district)}
    # Without the region's keys anyone on the site's NATS could sound its sirens.
    assert "signing keys" in issues["federation.command_keys"]
    assert "reserved" in issues["hub.site"]  # nabat.cmd.> carries the commands
    bad_key = write(
        tmp_path,
        """
        [hub]
        site = "sochi"
        [federation]
        servers = ["nats://127.0.0.1:4222"]
        commands_from = "region"
        command_keys = ["not a key"]
        """,
    )
    assert "Ed25519" in {i.path: i.reason for i in issues_of(bad_key)}["federation.command_keys"]
    region = write(
        tmp_path,
        """
        [hub]
        site = "region"
        [federation]
        servers = ["nats://127.0.0.1:4222"]
        follow = ["sochi", "anapa"]
        [federation.municipalities]
        sochi = ["sochi", "tuapsinsky"]
        anapa = ["anapa", "sochi"]
        elsewhere = ["krasnodar"]
        """,
    )
    found = [(i.path, i.reason) for i in issues_of(region)]
    assert (
        "federation.municipalities.elsewhere",
        "'elsewhere' is not a followed site (follow)",
    ) in found
    assert any("one site per municipality" in r for p, r in found if p.endswith(".anapa"))
    ok = write(
        tmp_path,
        """
        [hub]
        site = "sochi"
        [federation]
        servers = ["nats://127.0.0.1:4222"]
        commands_from = "region"
        command_keys = ["E2cX+LtiN4kfc/gZtoefXk4i0oOKgaBDwU8/YqXry8Y="]
        """,
    )
    assert load_config(ok).config.federation.commands_from == "region"
