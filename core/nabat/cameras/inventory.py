"""The camera inventory: which cameras the region has, imported from a CSV file.

Cameras are kept in the journal's database (records collection ``cameras``, keyed by the
camera's id, JSON bodies) and loaded with ``nabat cameras import FILE.csv``; ``nabat cameras
list`` shows them. An import is an idempotent upsert: a camera whose row did not change is left
alone (``unchanged``), so importing the same file twice changes nothing. Cameras absent from
the file are kept (an import never deletes).

The CSV file
------------
UTF-8 (a byte-order mark, as Excel writes one, is fine), delimited by ``;`` or ``,`` (or a tab;
detected from the header line), cells quoted with ``"`` when they hold the delimiter, a quote
or a line break. The first line is the header; blank lines are ignored. Column names are
case-insensitive and may come in any order; every error names the file's line (the header is
line 1) and the column.

============= ========== =========================================================================
column        required   value
============= ========== =========================================================================
id            yes        ``[A-Za-z0-9][A-Za-z0-9_.-]{0,127}``, unique in the file
name          yes        free text (Russian is fine), at most 200 characters
municipality  yes        a municipality slug of the hub's region (``krasnodar``, ``sochi``, …)
address       no         free text, at most 500 characters
lat, lon      no         decimal degrees (``45.0355`` or ``45,0355``); both or neither
driver        yes        driver kind ``<plugin>.<driver>``: ``rtsp.camera``, ``onvif.camera``
url           yes        ``rtsp://``, ``rtsps://``, ``http://`` or ``https://`` URL, or
                         ``host[:port]`` (ONVIF); stored as given. A user name may appear, a
                         password never (``rtsp://admin:pw@…`` and ``?password=…`` are refused).
                         ``nabat cameras import`` refuses hosts outside ``[cameras]
                         destinations`` (loopback, link-local, …; see
                         :mod:`nabat.cameras.destinations`)
credentials   no         a secret *reference*: ``env:NAME`` or ``file:/absolute/path`` — never
                         the secret itself
tags          no         separated by ``;`` or ``,`` (quote the cell when it holds the delimiter)
============= ========== =========================================================================

Aliases: ``host`` for ``url``, ``kind`` for ``driver``, ``latitude``/``longitude``/``lng`` for
``lat``/``lon``, ``tag`` for ``tags``, ``credentials_ref`` for ``credentials``. Unknown columns
are errors (a typo must not silently drop data).
"""

from __future__ import annotations

import builtins
import csv
import difflib
import io
import ipaddress
import math
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

import msgspec

from ..masking import is_secret_key
from ..store import Journal

__all__ = [
    "COLLECTION",
    "COLUMNS",
    "CameraRecord",
    "CsvError",
    "ImportReport",
    "Inventory",
    "ParsedRow",
    "parse_csv",
    "read_csv",
]

COLLECTION = "cameras"
BATCH = 500

COLUMNS: tuple[str, ...] = (
    "id",
    "name",
    "municipality",
    "address",
    "lat",
    "lon",
    "driver",
    "url",
    "credentials",
    "tags",
)
REQUIRED: tuple[str, ...] = ("id", "name", "municipality", "driver", "url")
_ALIASES = {
    "host": "url",
    "kind": "driver",
    "latitude": "lat",
    "longitude": "lon",
    "lng": "lon",
    "tag": "tags",
    "credentials_ref": "credentials",
    "credential": "credentials",
}

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_DRIVER = re.compile(r"[a-z][a-z0-9_-]*\.[a-z][a-z0-9_-]*")
_ENV_REF = re.compile(r"env:[A-Za-z_][A-Za-z0-9_]*")
_HOST = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_SCHEMES = ("rtsp", "rtsps", "http", "https")
_SECRET_QUERY_KEYS = {"pwd", "psw", "pass", "passwd", "password", "auth", "key", "sig"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MAX_NAME = 200
_MAX_ADDRESS = 500
_MAX_TAG = 64


class CameraRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One camera of the inventory. ``credentials`` is a reference (``env:NAME`` or
    ``file:/path``) resolved only where the stream is opened; the secret is never stored."""

    id: str
    name: str
    municipality: str
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    driver: str
    url: str
    credentials: str | None = None
    tags: tuple[str, ...] = ()
    updated: datetime
    """When the record was last changed by an import (timezone-aware UTC)."""

    def same_as(self, other: CameraRecord) -> bool:
        """Equal in everything but ``updated``."""
        return msgspec.structs.replace(other, updated=self.updated) == self


class CsvError(NamedTuple):
    """A problem in the file: ``line`` as in the file (header = 1), the column as written in
    the header ("" for the whole row or file), and the reason (never a secret's value)."""

    line: int
    column: str
    reason: str

    def format(self, file: str) -> str:
        where = f"{file}:{self.line}: "
        return f"{where}{self.column}: {self.reason}" if self.column else f"{where}{self.reason}"


class ParsedRow(NamedTuple):
    """A valid row with where it came from, for checks made after parsing."""

    line: int
    url_column: str
    """The ``url`` column as the header wrote it (``url`` or ``host``)."""
    record: CameraRecord


class ImportReport(msgspec.Struct, frozen=True, kw_only=True):
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    total: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        if self.dry_run:
            return (
                f"dry run: would create {self.created}, update {self.updated}, "
                f"leave {self.unchanged} unchanged (nothing stored)"
            )
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


# -- parsing ---------------------------------------------------------------------------------
def _read_text(source: str | bytes | Path) -> tuple[str | None, CsvError | None]:
    if isinstance(source, str) and "\n" not in source and "\r" not in source:
        candidate = Path(source)
        try:
            if candidate.is_file():
                source = candidate
        except OSError:  # a name too long to be a path: it is text
            pass
    if isinstance(source, Path):
        try:
            source = source.read_bytes()
        except OSError as exc:
            return None, CsvError(0, "", f"cannot read the file: {exc.strerror or exc}")
    if isinstance(source, bytes):
        try:
            return source.decode("utf-8-sig"), None
        except UnicodeDecodeError as exc:
            line = source.count(b"\n", 0, exc.start) + 1
            return None, CsvError(
                line,
                "",
                "the file is not UTF-8 (in Excel: Save As → CSV UTF-8; "
                "or `iconv -f cp1251 -t utf-8`)",
            )
    return source.removeprefix("\ufeff"), None


def _canonical(header_cell: str) -> str:
    name = header_cell.strip().strip("\ufeff").lower().replace(" ", "_").replace("-", "_")
    return _ALIASES.get(name, name)


def _header_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def _detect_delimiter(text: str) -> str:
    """The delimiter that splits the header into the most known columns (ties: the most
    cells); the header of an inventory is plain words, so this beats guessing from the data."""
    header = _header_line(text)
    best, best_score = ",", (-1, -1)
    for delimiter in (";", ",", "\t"):
        cells = next(csv.reader([header], delimiter=delimiter), [])
        known = sum(_canonical(c) in COLUMNS for c in cells)
        score = (known, len(cells))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _parse_coordinate(raw: str, low: float, high: float) -> tuple[float | None, str | None]:
    text = raw.strip().replace("\u2212", "-")
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")  # a Russian-locale spreadsheet writes 45,0355
    try:
        value = float(text)
    except ValueError:
        return None, f"{raw.strip()!r} is not a number (decimal degrees, like 45.0355)"
    if not math.isfinite(value) or not low <= value <= high:
        return None, f"{raw.strip()} is out of range ({low:g}…{high:g})"
    return value, None


def _check_url(raw: str) -> str | None:
    """Why ``raw`` is not a usable camera address, or None. Never echoes a password."""
    value = raw.strip()
    if any(c.isspace() for c in value) or _CONTROL.search(value):
        return "must not contain spaces or control characters"
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in _SCHEMES:
            return f"unsupported scheme {scheme!r}: use rtsp, rtsps, http, https or host[:port]"
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 — raises ValueError when the port is not a number or too big
        except ValueError:
            return "not a valid URL (check the host and port)"
        if parts.password is not None:
            return (
                "the URL carries a password: remove it and put a reference "
                "(env:NAME or file:/path) in the credentials column"
            )
        for key, _ in parse_qsl(parts.query, keep_blank_values=True):
            if is_secret_key(key) or key.lower() in _SECRET_QUERY_KEYS:
                return (
                    f"the URL carries a secret in its query ({key}=…): remove it and put a "
                    "reference (env:NAME or file:/path) in the credentials column"
                )
        if not parts.hostname:
            return "the URL has no host"
        return None
    if "@" in value:
        return (
            "host[:port] must not carry a user name or password: use the credentials "
            "column (env:NAME or file:/path)"
        )
    host, port = value, None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return "unterminated [IPv6] address"
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return "expected host[:port]"
            port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{host!r} is not an IPv6 address"
    else:
        if value.count(":") == 1:
            host, port = value.split(":")
        elif ":" in value:
            return "an IPv6 address must be written in brackets: [2001:db8::5]:80"
        if not _HOST.fullmatch(host):
            return f"{host!r} is not a host name or IP address (or give a rtsp:// or http:// URL)"
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        return f"port {port!r} must be a number from 1 to 65535"
    return None


def _check_credentials(raw: str) -> str | None:
    """Why ``raw`` is not a secret reference, or None. Never echoes the value: it may be the
    very secret someone pasted by mistake."""
    if _ENV_REF.fullmatch(raw):
        return None
    if raw.startswith("file:"):
        path = raw[5:]
        if not path.startswith("/"):
            return "a file reference needs an absolute path: file:/run/secrets/name"
        if _CONTROL.search(path) or path.strip() != path:
            return "the file path must not contain control characters or surrounding spaces"
        return None
    return (
        "not a secret reference (value not shown): write env:NAME or file:/absolute/path, "
        "never the password itself"
    )


def _split_tags(raw: str) -> tuple[tuple[str, ...], str | None]:
    tags: list[str] = []
    for part in re.split(r"[;,]", raw):
        tag = part.strip()
        if not tag:
            continue
        if len(tag) > _MAX_TAG:
            return (), f"tag {tag[:20]!r}… is longer than {_MAX_TAG} characters"
        if _CONTROL.search(tag):
            return (), "tags must not contain control characters"
        if tag not in tags:
            tags.append(tag)
    return tuple(tags), None


def _did_you_mean(value: str, choices: Collection[str]) -> str:
    lowered = {c.lower(): c for c in choices}
    if value.lower() in lowered:
        return f"; did you mean {lowered[value.lower()]!r}?"
    close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean {lowered[close[0]]!r}?" if close else ""


RowCheck = Callable[[str, str], list[tuple[str, str]]]
"""``check(driver, url)`` → ``[(column, reason), …]`` for a row the drivers cannot use."""


class _RowContext(NamedTuple):
    line: int
    written: dict[str, str]
    slugs: frozenset[str]
    seen: dict[str, int]
    now: datetime
    check: RowCheck | None = None


def _parse_row(values: dict[str, str], ctx: _RowContext) -> CameraRecord | list[CsvError]:
    """One data row: its record, or every problem it has."""
    problems: list[CsvError] = []

    def bad(column: str, reason: str) -> None:
        problems.append(CsvError(ctx.line, ctx.written.get(column, column), reason))

    for column in REQUIRED:
        if not values[column]:
            bad(column, "required, but empty")

    camera_id = values["id"]
    if camera_id:
        if not _ID.fullmatch(camera_id):
            bad(
                "id",
                f"{camera_id[:40]!r} is not a valid id: letters, digits, '_', '.', '-' "
                "(starting with a letter or digit), at most 128 characters",
            )
        elif camera_id in ctx.seen:
            bad("id", f"duplicate id {camera_id!r} (first on line {ctx.seen[camera_id]})")
        else:
            ctx.seen[camera_id] = ctx.line

    name = values["name"]
    if len(name) > _MAX_NAME:
        bad("name", f"longer than {_MAX_NAME} characters")
    elif _CONTROL.search(name):
        bad("name", "must not contain control characters")
    address = values["address"]
    if len(address) > _MAX_ADDRESS:
        bad("address", f"longer than {_MAX_ADDRESS} characters")

    municipality = values["municipality"]
    if municipality and municipality not in ctx.slugs:
        hint = _did_you_mean(municipality, ctx.slugs)
        bad("municipality", f"unknown municipality {municipality!r}{hint}")

    lat = lon = None
    if values["lat"] or values["lon"]:
        if not values["lon"]:
            bad("lon", "lat is set but lon is empty: give both or neither")
        elif not values["lat"]:
            bad("lat", "lon is set but lat is empty: give both or neither")
        else:
            lat, why = _parse_coordinate(values["lat"], -90.0, 90.0)
            if why:
                bad("lat", why)
            lon, why = _parse_coordinate(values["lon"], -180.0, 180.0)
            if why:
                bad("lon", why)

    driver = values["driver"]
    if driver and not _DRIVER.fullmatch(driver):
        bad(
            "driver",
            f"{driver[:40]!r} is not a driver kind: write <plugin>.<driver> in lower case, "
            "like rtsp.camera or onvif.camera",
        )

    url = values["url"]
    if url and (why := _check_url(url)):
        bad("url", why)

    credentials = values["credentials"] or None
    if credentials is not None and (why := _check_credentials(credentials)):
        bad("credentials", why)

    tags, why = _split_tags(values["tags"])
    if why:
        bad("tags", why)

    if not problems and ctx.check is not None:
        for column, reason in ctx.check(driver, url):
            bad(column, reason)
    if problems:
        return problems
    return CameraRecord(
        id=camera_id,
        name=name,
        municipality=municipality,
        address=address,
        lat=lat,
        lon=lon,
        driver=driver,
        url=url,
        credentials=credentials,
        tags=tags,
        updated=ctx.now,
    )


def parse_csv(
    source: str | bytes | Path, region_slugs: Collection[str], check: RowCheck | None = None
) -> tuple[list[CameraRecord], list[CsvError]]:
    """Parse an inventory CSV (see the module docstring): the valid rows as records, and an
    error ``(line, column, reason)`` for every problem of every bad row. ``check(driver,
    url)`` adds the problems only the installed drivers can see (an unknown driver kind, an
    address a driver cannot use), as ``(column, reason)`` pairs. Header problems
    (unknown, repeated or missing columns) make every row unreadable: no rows are returned."""
    rows, errors = read_csv(source, region_slugs, check)
    return [row.record for row in rows], errors


def read_csv(
    source: str | bytes | Path, region_slugs: Collection[str], check: RowCheck | None = None
) -> tuple[list[ParsedRow], list[CsvError]]:
    """:func:`parse_csv` with each valid row's line and ``url`` column, so that a later check
    (the destinations, which need name lookups) can name them too."""
    text, problem = _read_text(source)
    if problem is not None:
        return [], [problem]
    assert text is not None
    if not text.strip():
        return [], [
            CsvError(1, "", f"the file is empty: expected a header line ({', '.join(COLUMNS)})")
        ]
    slugs = frozenset(region_slugs)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_detect_delimiter(text))
    errors: list[CsvError] = []
    rows: list[ParsedRow] = []
    now = datetime.now(UTC)

    # The header: the first non-blank line.
    line = 1
    header: list[str] = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                header = cells
                break
            line = reader.line_num + 1
    except csv.Error as exc:
        return [], [CsvError(reader.line_num, "", f"unreadable CSV: {exc}")]
    index: dict[str, int] = {}
    written: dict[str, str] = {}
    unnamed: list[int] = []
    for position, cell in enumerate(header):
        name = _canonical(cell)
        shown = cell.strip() or f"column {position + 1}"
        if not name:
            unnamed.append(position)  # spreadsheets export trailing empty header cells
        elif name not in COLUMNS:
            hint = _did_you_mean(name, COLUMNS + tuple(_ALIASES))
            errors.append(
                CsvError(line, shown, f"unknown column{hint or ''} (known: {', '.join(COLUMNS)})")
            )
        elif name in index:
            errors.append(CsvError(line, shown, f"column {name!r} appears twice"))
        else:
            index[name] = position
            written[name] = cell.strip()
    for column in REQUIRED:
        if column not in index:
            errors.append(CsvError(line, column, "required column is missing from the header"))
    if ("lat" in index) != ("lon" in index):
        errors.append(CsvError(line, "", "give both columns lat and lon, or neither"))
    if errors:
        return [], errors

    seen: dict[str, int] = {}
    width = len(header)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(CsvError(start, "", f"unreadable CSV: {exc}"))
            break
        if not any(c.strip() for c in cells):
            continue  # a blank line (or a row of empty cells, as spreadsheets export)
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            errors.append(
                CsvError(
                    start,
                    "",
                    f"{len(cells)} cells but the header has {width} "
                    "(quote cells that contain the delimiter)",
                )
            )
            continue
        if any(p < len(cells) and cells[p].strip() for p in unnamed):
            errors.append(CsvError(start, "", "a value in a column without a name in the header"))
            continue
        values = {
            column: cells[index[column]].strip()
            if column in index and index[column] < len(cells)
            else ""
            for column in COLUMNS
        }
        parsed = _parse_row(values, _RowContext(start, written, slugs, seen, now, check))
        if isinstance(parsed, CameraRecord):
            rows.append(ParsedRow(start, written.get("url", "url"), parsed))
        else:
            errors.extend(parsed)
    return rows, errors


# -- storage ---------------------------------------------------------------------------------
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CameraRecord)


class Inventory:
    """The cameras in the journal's record store (collection ``cameras``, keyed by id)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    parse_csv = staticmethod(parse_csv)

    async def _existing(self, ids: Iterable[str]) -> dict[str, CameraRecord | None]:
        wanted = set(ids)
        found: dict[str, CameraRecord | None] = {}
        if len(wanted) <= 50:
            for camera_id in wanted:
                record = await self.journal.get_record(COLLECTION, camera_id)
                if record is not None:
                    found[camera_id] = _decode(record.body)
            return found
        async for record in self.journal.all_records(COLLECTION, page=BATCH):
            if record.key in wanted:
                found[record.key] = _decode(record.body)
        return found

    async def import_rows(
        self, rows: Sequence[CameraRecord], dry_run: bool = False
    ) -> ImportReport:
        """Upsert ``rows``: new ids are created, changed ones updated (``updated`` set to
        now), identical ones left alone. With ``dry_run`` only count. Of repeated ids the
        last row wins."""
        latest: dict[str, CameraRecord] = {row.id: row for row in rows}
        existing = await self._existing(latest)
        now = datetime.now(UTC)
        created = updated = unchanged = 0
        writes: list[tuple[str, bytes, datetime | None]] = []
        for camera_id, row in latest.items():
            if camera_id not in existing:
                created += 1
            elif (old := existing[camera_id]) is not None and old.same_as(row):
                unchanged += 1
                continue
            else:
                updated += 1
            writes.append((camera_id, _encoder.encode(_replace(row, updated=now)), None))
        if not dry_run:
            for start in range(0, len(writes), BATCH):
                await self.journal.put_records(COLLECTION, writes[start : start + BATCH])
        return ImportReport(
            created=created,
            updated=updated,
            unchanged=unchanged,
            total=len(latest),
            dry_run=dry_run,
        )

    async def get(self, camera_id: str) -> CameraRecord | None:
        record = await self.journal.get_record(COLLECTION, camera_id)
        return None if record is None else _decode(record.body)

    async def delete(self, camera_id: str) -> bool:
        return await self.journal.delete_record(COLLECTION, camera_id)

    async def list(
        self,
        municipality: str | None = None,
        driver: str | None = None,
        tag: str | None = None,
        search: str | None = None,
    ) -> builtins.list[CameraRecord]:
        """Cameras in id order. ``tag`` matches a whole tag, ``search`` a part of the id,
        name, address or URL; both ignore case."""
        wanted_tag = tag.casefold() if tag else None
        needle = search.casefold() if search else None
        out: builtins.list[CameraRecord] = []
        async for record in self.journal.all_records(COLLECTION, page=BATCH):
            camera = _decode(record.body)
            if camera is None:
                continue
            if municipality and camera.municipality != municipality:
                continue
            if driver and camera.driver != driver:
                continue
            if wanted_tag and wanted_tag not in (t.casefold() for t in camera.tags):
                continue
            if needle and not any(
                needle in field.casefold()
                for field in (camera.id, camera.name, camera.address, camera.url)
            ):
                continue
            out.append(camera)
        return out


_replace = msgspec.structs.replace


def _decode(body: bytes) -> CameraRecord | None:
    """The stored camera, or None for a body this version cannot read (it is rewritten by
    the next import of that id)."""
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError:
        return None
