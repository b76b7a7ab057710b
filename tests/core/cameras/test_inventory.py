"""The camera inventory: CSV import (errors with line numbers, idempotent upsert, dry run),
listing with filters, and the ``nabat cameras`` commands run as real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nabat.cameras.inventory import COLLECTION, CameraRecord, Inventory, parse_csv
from nabat.regions import load_region
from nabat.store import SqliteJournal
from nabat.testing import run_cli

SLUGS = load_region("krasnodar-krai").municipalities
HEADER = "id;name;municipality;address;lat;lon;driver;url;credentials;tags"

GOOD = "\n".join(
    [
        HEADER,
        'krd-cam-001;Краснодар, ул. Красная / ул. Северная;krasnodar;"ул. Красная, 122";'
        "45,0355;38,9753;rtsp.camera;rtsp://viewer@10.10.0.5:554/Streaming/101;"
        'env:KRD_CAM_PW;"перекрёсток;центр"',
        "",
        "sochi-cam-001;Сочи, Курортный проспект;sochi;Курортный пр-т, 1;43.5812;39.7205;"
        "onvif.camera;10.20.0.7:8080;file:/run/secrets/sochi-cam;пляж",
        'nvr-cam-002;"Новороссийск, «Морской вокзал»";novorossiysk;;;;rtsp.camera;'
        "rtsps://nvr.example.ru/live/2;;",
        "",
    ]
)


def csv_bytes(text: str) -> bytes:
    return "\ufeff".encode() + text.replace("\n", "\r\n").encode("utf-8")  # as Excel saves


@pytest.fixture
async def journal(tmp_path):
    j = SqliteJournal(tmp_path / "journal.sqlite3")
    await j.open(migrate=True)
    yield j
    await j.close()


# -- parsing ---------------------------------------------------------------------------------
def test_a_russian_semicolon_csv_with_bom_parses():
    rows, errors = parse_csv(csv_bytes(GOOD), SLUGS)
    assert errors == []
    assert [r.id for r in rows] == ["krd-cam-001", "sochi-cam-001", "nvr-cam-002"]
    krd, sochi, nvr = rows
    assert krd.name == "Краснодар, ул. Красная / ул. Северная"
    assert krd.address == "ул. Красная, 122"
    assert (krd.lat, krd.lon) == (45.0355, 38.9753)  # decimal commas accepted
    assert krd.url == "rtsp://viewer@10.10.0.5:554/Streaming/101"
    assert krd.credentials == "env:KRD_CAM_PW"
    assert krd.tags == ("перекрёсток", "центр")
    assert sochi.driver == "onvif.camera" and sochi.url == "10.20.0.7:8080"
    assert sochi.credentials == "file:/run/secrets/sochi-cam" and sochi.tags == ("пляж",)
    assert nvr.name == "Новороссийск, «Морской вокзал»"
    assert (nvr.lat, nvr.lon, nvr.credentials, nvr.tags) == (None, None, None, ())


def test_a_comma_delimited_file_with_aliases_quotes_and_a_multiline_cell(tmp_path):
    text = (
        "\n"  # a leading blank line: the header is line 2
        "ID,Name,Municipality,Host,Kind,Tags,Latitude,Longitude\n"
        'a.1,"Камера ""Центр""",krasnodar,10.0.0.1,onvif.camera,"x;y,z",45.1,39.0\n'
        "\n"
        'a.2,"две\nстроки",sochi,[2001:db8::5]:80,onvif.camera,,,\n'
        "a.3,ok,armavir,cam.local,onvif.camera,,,\n"
        "a.2,dup,sochi,cam.local,onvif.camera,,,\n"
    )
    path = tmp_path / "cams.csv"
    path.write_text(text, encoding="utf-8")
    rows, errors = parse_csv(path, SLUGS)
    assert [r.id for r in rows] == ["a.1", "a.2", "a.3"]
    assert rows[0].name == 'Камера "Центр"' and rows[0].tags == ("x", "y", "z")
    assert rows[1].name == "две\nстроки" and rows[1].url == "[2001:db8::5]:80"
    # The multi-line cell spans lines 5-6, so the duplicate is on line 8.
    assert errors == [(8, "ID", "duplicate id 'a.2' (first on line 5)")]


def test_every_bad_row_is_reported_with_its_line_and_column():
    text = "\n".join(
        [
            HEADER,
            "ok-1;Хорошая;krasnodar;;45;39;rtsp.camera;rtsp://10.0.0.1/;;",  # 2
            "bad-2;Плохой район;krasnodr;;;;rtsp.camera;rtsp://10.0.0.2/;;",  # 3
            "bad-3;Без долготы;sochi;;43.6;;rtsp.camera;rtsp://10.0.0.3/;;",  # 4
            "bad-4;Драйвер;sochi;;;;RTSP Camera;rtsp://10.0.0.4/;;",  # 5
            "",  # 6
            "bad-5;Пароль;sochi;;;;rtsp.camera;rtsp://admin:hunter2@10.0.0.5/;;",  # 7
            "ok-1;Дубль;sochi;;;;rtsp.camera;rtsp://10.0.0.6/;;",  # 8
            "bad-7;Секрет;sochi;;;;onvif.camera;10.0.0.7;Pa55w0rd!;",  # 9
            ";;sochi;;91;39;rtsp.camera;ftp://10.0.0.8/;;",  # 10
        ]
    )
    rows, errors = parse_csv(csv_bytes(text), SLUGS)
    assert [r.id for r in rows] == ["ok-1"]
    found = {(e.line, e.column) for e in errors}
    assert found == {
        (3, "municipality"),
        (4, "lon"),
        (5, "driver"),
        (7, "url"),
        (8, "id"),
        (9, "credentials"),
        (10, "id"),
        (10, "name"),
        (10, "lat"),
        (10, "url"),
    }
    reasons = {(e.line, e.column): e.reason for e in errors}
    assert "did you mean 'krasnodar'?" in reasons[(3, "municipality")]
    assert "give both or neither" in reasons[(4, "lon")]
    assert "rtsp.camera" in reasons[(5, "driver")]
    assert "password" in reasons[(7, "url")]
    assert "first on line 2" in reasons[(8, "id")]
    assert "env:NAME" in reasons[(9, "credentials")]
    assert "out of range" in reasons[(10, "lat")]
    assert "unsupported scheme 'ftp'" in reasons[(10, "url")]
    shown = " ".join(e.reason for e in errors)
    assert "hunter2" not in shown and "Pa55w0rd" not in shown  # secrets are never echoed


def test_header_problems_stop_the_parse_and_name_the_column():
    text = "id;name;municipalty;driver;address;colour\nx;y;sochi;rtsp.camera;;red\n"
    rows, errors = parse_csv(text, SLUGS)
    assert rows == []
    assert {(e.line, e.column) for e in errors} == {
        (1, "municipalty"),
        (1, "colour"),
        (1, "municipality"),
        (1, "url"),
    }
    reasons = {e.column: e.reason for e in errors}
    assert "did you mean 'municipality'?" in reasons["municipalty"]
    assert reasons["url"] == "required column is missing from the header"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("rtsp://10.0.0.1:554/live", None),
        ("http://cam.example.ru/snapshot.jpg", None),
        ("https://user@cam.example.ru/", None),
        ("10.0.0.1", None),
        ("cam-7.local:8000", None),
        ("[fe80::1]", None),
        ("rtsp://admin:@10.0.0.1/", "password"),
        ("http://10.0.0.1/cgi-bin/snap.cgi?user=admin&pwd=12345", "secret in its query"),
        ("admin:secret@10.0.0.1", "user name or password"),
        ("rtsp://10.0.0.1:99999/", "not a valid URL"),
        ("10.0.0.1:0", "port"),
        ("fe80::1", "brackets"),
        ("cam host", "spaces"),
        ("rtsp:///live", "no host"),
    ],
)
def test_url_rules(url, problem):
    text = f"id,name,municipality,driver,url\nc,n,sochi,onvif.camera,{url}\n"
    rows, errors = parse_csv(text, SLUGS)
    if problem is None:
        assert errors == [] and rows[0].url == url
    else:
        [error] = errors
        assert error.column == "url" and problem in error.reason
        assert "12345" not in error.reason


def test_a_file_that_is_not_utf8_is_refused_with_a_hint():
    data = "id,name,municipality,driver,url\nc,Камера,sochi,rtsp.camera,10.0.0.1\n".encode("cp1251")
    rows, errors = parse_csv(data, SLUGS)
    assert rows == [] and errors[0].line == 2 and "UTF-8" in errors[0].reason


# -- storing ---------------------------------------------------------------------------------
async def test_import_is_an_idempotent_upsert(journal):
    inventory = Inventory(journal)
    rows, _ = parse_csv(csv_bytes(GOOD), SLUGS)
    first = await inventory.import_rows(rows)
    assert (first.created, first.updated, first.unchanged, first.total) == (3, 0, 0, 3)
    before = await inventory.get("sochi-cam-001")
    assert before is not None and before.tags == ("пляж",)

    again, _ = parse_csv(csv_bytes(GOOD), SLUGS)
    second = await inventory.import_rows(again)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 3)
    assert await inventory.get("sochi-cam-001") == before  # not even `updated` moved

    edited, errors = parse_csv(csv_bytes(GOOD.replace(";пляж", ';"пляж;набережная"')), SLUGS)
    assert errors == []
    third = await inventory.import_rows(edited)
    assert (third.created, third.updated, third.unchanged) == (0, 1, 2)
    after = await inventory.get("sochi-cam-001")
    assert after is not None and after.tags == ("пляж", "набережная")
    assert after.updated > before.updated
    assert len(await inventory.list()) == 3


async def test_a_dry_run_counts_but_stores_nothing(journal):
    inventory = Inventory(journal)
    rows, _ = parse_csv(GOOD, SLUGS)
    report = await inventory.import_rows(rows, dry_run=True)
    assert (report.created, report.total, report.dry_run) == (3, 3, True)
    assert "would create 3" in report.summary()
    assert await journal.records(COLLECTION) == []


async def test_list_filters_get_and_delete(journal):
    inventory = Inventory(journal)
    rows, _ = parse_csv(csv_bytes(GOOD), SLUGS)
    await inventory.import_rows(rows)

    def ids(cams: list[CameraRecord]) -> list[str]:
        return [c.id for c in cams]

    assert ids(await inventory.list()) == ["krd-cam-001", "nvr-cam-002", "sochi-cam-001"]
    assert ids(await inventory.list(municipality="sochi")) == ["sochi-cam-001"]
    assert ids(await inventory.list(driver="rtsp.camera")) == ["krd-cam-001", "nvr-cam-002"]
    assert ids(await inventory.list(tag="ЦЕНТР")) == ["krd-cam-001"]
    assert ids(await inventory.list(search="вокзал")) == ["nvr-cam-002"]
    assert ids(await inventory.list(search="10.20.0")) == ["sochi-cam-001"]
    assert ids(await inventory.list(municipality="sochi", driver="rtsp.camera")) == []
    assert await inventory.get("nope") is None
    assert await inventory.delete("nvr-cam-002") is True
    assert await inventory.delete("nvr-cam-002") is False
    assert ids(await inventory.list()) == ["krd-cam-001", "sochi-cam-001"]


def big_csv(n: int, *, name_suffix: str = "") -> str:
    munis = sorted(SLUGS)
    lines = [HEADER]
    for i in range(n):
        lines.append(
            f"cam-{i:05d};Камера № {i}{name_suffix};{munis[i % len(munis)]};ул. Ленина, {i};"
            f"{44 + (i % 100) / 100:.4f};{38 + (i % 97) / 100:.4f};rtsp.camera;"
            f"rtsp://10.{i // 65536}.{i // 256 % 256}.{i % 256}:554/stream1;"
            f"env:CAM_PW;зона-{i % 10},школа"
        )
    return "\n".join(lines) + "\n"


async def test_ten_thousand_cameras_import_and_reimport_idempotently(journal):
    # Speed is measured in bench/ (camera_sweep), not asserted here.
    inventory = Inventory(journal)
    text = big_csv(10_000)
    rows, errors = parse_csv(csv_bytes(text), SLUGS)
    report = await inventory.import_rows(rows)
    assert errors == [] and report.created == 10_000
    again = await inventory.import_rows(parse_csv(csv_bytes(text), SLUGS)[0])
    assert again.unchanged == 10_000 and again.created == again.updated == 0
    listed = await inventory.list(municipality="sochi")
    assert len(listed) == len(
        [i for i in range(10_000) if sorted(SLUGS)[i % len(SLUGS)] == "sochi"]
    )


# -- the command line ------------------------------------------------------------------------
nabat = run_cli


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    (tmp_path / "plugins.toml").write_text(
        '[hub]\nregion = "krasnodar-krai"\ndata_dir = "data"\n[plugins.rtsp]\n[plugins.onvif]\n',
        encoding="utf-8",
    )
    (tmp_path / "cams.csv").write_bytes(csv_bytes(GOOD))
    return tmp_path


def test_cli_import_reimport_and_list(hub_dir):
    dry = nabat("cameras", "import", "cams.csv", "--dry-run", cwd=hub_dir)
    assert dry.returncode == 0, dry.stderr
    assert "would create 3" in dry.stdout
    assert "no cameras" in nabat("cameras", "list", cwd=hub_dir).stdout

    made = nabat("cameras", "import", "cams.csv", cwd=hub_dir)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "3 created, 0 updated, 0 unchanged"
    again = nabat("cameras", "import", "cams.csv", cwd=hub_dir)
    assert again.stdout.strip() == "0 created, 0 updated, 3 unchanged"

    table = nabat("cameras", "list", cwd=hub_dir)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "MUNICIPALITY", "DRIVER", "URL", "TAGS"]
    assert len(lines) == 4 and "перекрёсток,центр" in table.stdout
    assert "env:KRD_CAM_PW" not in table.stdout  # the table has no credentials column
    only = nabat("cameras", "list", "--municipality", "sochi", "--json", cwd=hub_dir)
    [cam] = json.loads(only.stdout)
    assert cam["id"] == "sochi-cam-001" and cam["credentials"] == "file:/run/secrets/sochi-cam"
    tagged = nabat("cameras", "list", "--tag", "пляж", "--driver", "onvif.camera", cwd=hub_dir)
    assert "sochi-cam-001" in tagged.stdout and "krd-cam-001" not in tagged.stdout
    searched = nabat("cameras", "list", "--search", "Красная", cwd=hub_dir)
    assert "krd-cam-001" in searched.stdout and "sochi-cam-001" not in searched.stdout


def test_cli_reports_errors_as_file_line_column_and_imports_nothing(hub_dir):
    bad = GOOD.replace(";sochi;", ";sochii;").replace(
        "rtsp://viewer@10.10.0.5", "rtsp://viewer:s3cret@10.10.0.5"
    )
    (hub_dir / "bad.csv").write_bytes(csv_bytes(bad))
    out = nabat("cameras", "import", "bad.csv", cwd=hub_dir)
    assert out.returncode == 1
    assert "bad.csv:2: url: the URL carries a password" in out.stderr
    assert "bad.csv:4: municipality: unknown municipality 'sochii'; did you mean 'sochi'?" in (
        out.stderr
    )
    assert "nothing imported: 2 error(s) on 2 line(s); fix them or pass --skip-invalid" in (
        out.stderr
    )
    assert "s3cret" not in out.stderr + out.stdout
    assert "no cameras" in nabat("cameras", "list", cwd=hub_dir).stdout

    dry = nabat("cameras", "import", "bad.csv", "--dry-run", "--skip-invalid", cwd=hub_dir)
    assert dry.returncode == 0 and "would create 1" in dry.stdout
    assert "no cameras" in nabat("cameras", "list", cwd=hub_dir).stdout

    skipped = nabat("cameras", "import", "bad.csv", "--skip-invalid", cwd=hub_dir)
    assert skipped.returncode == 0, skipped.stderr
    assert "bad.csv:4: municipality" in skipped.stderr
    assert skipped.stdout.strip() == "1 created, 0 updated, 0 unchanged; 2 invalid row(s) skipped"
    listed = nabat("cameras", "list", "--json", cwd=hub_dir)
    assert '"nvr-cam-002"' in listed.stdout and "krd-cam-001" not in listed.stdout


def test_cli_checks_rows_against_the_installed_drivers(hub_dir):
    rows = "\n".join(
        [
            "id;name;municipality;driver;url",
            "a1;Typo;sochi;rtsp.cam;rtsp://10.0.0.1/x",
            "a2;Wrong address;sochi;onvif.camera;rtsp://10.0.0.1/x",
            "a3;No URL;sochi;rtsp.camera;10.0.0.1:554",
            "a4;Not a camera;sochi;simulator.siren;10.0.0.1:80",
            "a5;Plugin off;sochi;simulator.camera;10.0.0.1:80",
            "a6;Fine;sochi;onvif.camera;10.0.0.1:8080",
        ]
    )
    (hub_dir / "drivers.csv").write_text(rows + "\n", encoding="utf-8")
    out = nabat("cameras", "import", "drivers.csv", "--dry-run", cwd=hub_dir)
    assert out.returncode == 1
    errors = out.stderr.splitlines()
    assert errors[0].startswith("drivers.csv:2: driver: unknown driver kind 'rtsp.cam'")
    assert "onvif.camera" in errors[0]  # the known kinds are listed
    assert errors[1] == (
        "drivers.csv:3: url: onvif.camera needs host[:port] or the camera's http:// address"
    )
    assert (
        errors[2] == "drivers.csv:4: url: rtsp.camera needs the stream's rtsp:// (or http://) URL"
    )
    assert errors[3].startswith("drivers.csv:5: driver:")
    assert errors[4].startswith("drivers.csv:6: driver:") and "not enabled" in errors[4]
    assert "nothing imported: 5 error(s) on 5 line(s)" in out.stderr


def test_cli_refuses_a_file_without_a_required_column_even_with_skip_invalid(hub_dir):
    (hub_dir / "nourl.csv").write_text("id;name;municipality;driver\nc;n;sochi;rtsp.camera\n")
    out = nabat("cameras", "import", "nourl.csv", "--skip-invalid", cwd=hub_dir)
    assert out.returncode == 1
    assert "nourl.csv:1: url: required column is missing from the header" in out.stderr


def test_cli_refuses_rows_that_point_inside_the_hub_and_imports_the_others(hub_dir):
    """A district's file cannot make the hub connect to its own host or cloud metadata
    (``[cameras] destinations``); private networks, where cameras live, stay allowed."""
    rows = "\n".join(
        [
            "id;name;municipality;driver;url",
            "a1;Private;sochi;rtsp.camera;rtsp://10.20.0.7:554/live",
            "a2;Metadata;sochi;rtsp.http_camera;http://169.254.169.254/latest/meta-data/x.jpg",
            "a3;The hub's database;sochi;rtsp.camera;rtsp://127.0.0.1:5432/x",
            "a4;Localhost;sochi;onvif.camera;localhost:8080",
            "a5;Private too;sochi;onvif.camera;192.168.1.64:80",
        ]
    )
    (hub_dir / "evil.csv").write_text(rows + "\n", encoding="utf-8")
    rule = "such destinations need [cameras] destinations"
    out = nabat("cameras", "import", "evil.csv", "--skip-invalid", cwd=hub_dir)
    assert out.returncode == 0, out.stderr
    errors = out.stderr.splitlines()
    assert errors[0] == (
        f"evil.csv:3: url: destination refused: 169.254.169.254 is a link-local address; {rule}"
    )
    assert (
        errors[1]
        == f"evil.csv:4: url: destination refused: 127.0.0.1 is a loopback address; {rule}"
    )
    assert errors[2].startswith("evil.csv:5: url: destination refused: localhost: ")
    assert "is a loopback address" in errors[2]
    assert out.stdout.strip() == "2 created, 0 updated, 0 unchanged; 3 invalid row(s) skipped"
    listed = json.loads(nabat("cameras", "list", "--json", cwd=hub_dir).stdout)
    assert sorted(c["id"] for c in listed) == ["a1", "a5"]
