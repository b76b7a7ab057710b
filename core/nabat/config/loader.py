"""Loading ``plugins.toml``: TOML → msgspec types, with errors that name file, line, key and why.

Validation runs in two stages. :func:`load_config` checks everything the core knows (the
``[hub]`` table, the shape of plugin and instance tables). Plugin and driver settings are
checked by :func:`convert_settings` once the plugins that define their types are loaded; each
section is converted on its own so that one bad instance does not hide the others.
"""

from __future__ import annotations

import copy
import difflib
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ..masking import mask_url, mask_value, without_userinfo
from ..regions import Region, load_region
from ..rules.model import Rule
from ..subjects import validate_pattern
from .model import (
    AlertSettings,
    ApiSettings,
    CameraSettings,
    Config,
    DutySettings,
    FederationSettings,
    HubSettings,
    IncidentSettings,
    InstanceEntry,
    NotificationSettings,
    PluginEntry,
    ReadinessSettings,
    RecordingSettings,
    StorageSettings,
    VideoSettings,
)
from .secrets import Secret, secret_dec_hook, secret_enc_hook

__all__ = [
    "ConfigInvalid",
    "ConfigIssue",
    "LoadedConfig",
    "convert_settings",
    "load_config",
    "masked",
]

_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where (file, line, key path) and why."""

    file: str
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(file)'}: {self.reason}"


class ConfigInvalid(Exception):
    """The configuration has problems; ``issues`` lists each of them."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class _LineIndex:
    """Maps key paths to the line that defines them, from the TOML text.

    tomllib keeps no positions, so this scans headers (``[a.b]``, ``[[a]]``) and ``key =``
    lines, including dotted and quoted keys and keys inside one-line inline tables. It is
    used only to point at a line in error messages; when it cannot tell, no line is shown.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*(?P<name>[^\]]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(
        r"^\s*(?P<key>(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
    )
    _INLINE_KEY = re.compile(r"[{,]\s*(?P<key>[A-Za-z0-9_-]+|\"[^\"]*\")\s*=")

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        arrays: dict[tuple[str, ...], int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                table = self._split(header.group("name"))
                if header.group(1) == "[[":
                    index = arrays.get(table, -1) + 1
                    arrays[table] = index
                    table = (*table, str(index))
                self.lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                path = (*table, *self._split(key.group("key")))
                self.lines.setdefault(path, number)
                rest = line[key.end() :]
                for inner in self._INLINE_KEY.finditer(rest):
                    self.lines.setdefault((*path, inner.group("key").strip("\"'")), number)

    @staticmethod
    def _split(dotted: str) -> tuple[str, ...]:
        parts = re.findall(r"\"[^\"]*\"|'[^']*'|[^.\s]+", dotted)
        return tuple(p.strip("\"'") for p in parts)

    def line_of(self, path: Sequence[str]) -> int | None:
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            # Defined only through a sub-table ([plugins.x.settings] without [plugins.x]).
            deeper = [n for p, n in self.lines.items() if p[: len(path)] == path]
            if deeper:
                return min(deeper)
            path = path[:-1]
        return None


@dataclass
class LoadedConfig:
    """A configuration that passed the core's checks, with where it came from."""

    config: Config
    path: Path
    raw: dict[str, Any]
    _index: _LineIndex = field(repr=False)
    broken_instances: dict[str, list[ConfigIssue]] = field(default_factory=dict)
    """Instances left out because their own table is invalid (non-strict loading only)."""

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def data_dir(self) -> Path:
        path = Path(self.config.hub.data_dir)
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def issue(self, path: Sequence[str], reason: str) -> ConfigIssue:
        return ConfigIssue(str(self.path), ".".join(path), reason, self._index.line_of(path))


def _issue_from(
    exc: msgspec.ValidationError, prefix: Sequence[str], loaded_file: str, index: _LineIndex
) -> ConfigIssue:
    return _locate(exc, prefix, loaded_file, index)[0]


def _locate(
    exc: msgspec.ValidationError, prefix: Sequence[str], loaded_file: str, index: _LineIndex
) -> tuple[ConfigIssue, list[str], bool]:
    """The issue, the offending key path inside the converted data, and whether that key can
    be dropped to look for further problems (not when it is a required key that is missing)."""
    message = str(exc)
    sub: list[str] = []
    match = _PATH.search(message)
    if match:
        message = message[: match.start()]
        sub = [p for p in re.split(r"\.|\[(\d+)\]", match.group("path")) if p]
    unknown = _UNKNOWN.match(message)
    missing = _MISSING.match(message)
    if unknown:
        sub.append(unknown.group("key"))
        message = "unknown key"
    elif missing:
        sub.append(missing.group("key"))
        message = "required key is missing"
    path = [*prefix, *sub]
    issue = ConfigIssue(loaded_file, ".".join(path), message, index.line_of(path))
    return issue, sub, not missing


_MAX_ISSUES_PER_TABLE = 25


def _drop(data: Any, path: list[str]) -> bool:
    """Delete ``path`` from nested dicts/lists; False when it is not there."""
    node = data
    for key in path[:-1]:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False
    last = path[-1] if path else None
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    return False


def _convert(
    data: Any,
    type_: Any,
    prefix: Sequence[str],
    file: str,
    index: _LineIndex,
    base_dir: Path | None,
) -> Any:
    """Convert ``data``; on failure report every problem, not just the first: each offending
    key is dropped and the rest validated again (a bounded number of times)."""
    hook = secret_dec_hook(base_dir)
    issues: list[ConfigIssue] = []
    work = copy.deepcopy(data)
    for _ in range(_MAX_ISSUES_PER_TABLE):
        try:
            value = msgspec.convert(work, type_, dec_hook=hook)
        except msgspec.ValidationError as exc:
            issue, sub, droppable = _locate(exc, prefix, file, index)
            issues.append(issue)
            if not (droppable and sub and _drop(work, sub)):
                break
        else:
            if not issues:
                return value
            break
    raise ConfigInvalid(issues)


def _resolve_storage_url(
    storage: StorageSettings, file: str, index: _LineIndex, base: Path, issues: list[ConfigIssue]
) -> StorageSettings:
    """``url`` is a plain string, or a secret reference when it carries a password."""
    url = storage.url
    where = ["storage", "url"]
    if url is None or isinstance(url, str):
        if isinstance(url, str) and mask_url(url) != url:
            issues.append(
                ConfigIssue(
                    file,
                    "storage.url",
                    "a URL with a password must not be written "
                    'inline; use url = { env = "NAME" } or { file = "PATH" }',
                    index.line_of(where),
                )
            )
        return storage
    try:
        secret = Secret.from_ref(url, base)
    except ValueError as exc:
        issues.append(ConfigIssue(file, "storage.url", str(exc), index.line_of(where)))
        return storage
    return msgspec.structs.replace(storage, url=secret)


def _check_federation(
    federation: FederationSettings,
    hub: HubSettings,
    file: str,
    index: _LineIndex,
    base: Path,
    issues: list[ConfigIssue],
) -> FederationSettings:
    """What the shape of ``[federation]`` cannot say: a site to publish as, NATS URLs,
    credentials as secret references, valid subject patterns; secrets resolved."""

    def bad(key: str, reason: str) -> None:
        where = ["federation", key] if key else ["federation"]
        path = f"federation.{key}" if key else "federation"
        issues.append(ConfigIssue(file, path, reason, index.line_of(where)))

    if not federation.servers:
        if federation.follow:
            bad("servers", "following sites needs the NATS servers to follow them through")
        return federation
    if hub.site is None:
        issues.append(
            ConfigIssue(
                file,
                "hub.site",
                '[federation] needs this hub\'s site ([hub] site = "<district or region>")',
                index.line_of(["hub"]),
            )
        )
    for url in federation.servers:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in ("nats", "tls"):
            bad("servers", f"{url!r}: a NATS server is nats://host:port or tls://host:port")
        elif without_userinfo(url) != url:
            bad("servers", "no user, password or token in the URL; use user, password or token")
    for pattern in federation.up:
        try:
            validate_pattern(pattern)
        except ValueError as exc:
            bad("up", str(exc))
    for name in {hub.site, *federation.follow}:
        if name in ("cmd", "call"):  # nabat.<site>.> would take in commands or calls
            issues.append(ConfigIssue(file, "hub.site", f"{name!r} is reserved, not a site name"))
    if len(set(federation.follow)) != len(federation.follow):
        bad("follow", "a site is listed twice")
    if hub.site is not None and hub.site in federation.follow:
        bad("follow", f"{hub.site!r} is this hub's own site")
    if federation.credentials is not None and (federation.user or federation.token):
        bad("credentials", "use a credentials file or a user/token, not both")
    if (federation.tls_cert is None) != (federation.tls_key is None):
        bad("tls_cert", "a client certificate needs its key (tls_cert and tls_key)")
    files: dict[str, str] = {}
    for key in ("credentials", "tls_ca", "tls_cert", "tls_key"):
        value = getattr(federation, key)
        if value is None:
            continue
        path = Path(value) if Path(value).is_absolute() else base / value
        if not path.is_file():
            bad(key, f"{value!r}: no such file")
        files[key] = str(path)
    if federation.password is not None and federation.user is None:
        bad("password", "a password needs a user")
    if federation.token is not None and federation.user is not None:
        bad("token", "use a token or a user and password, not both")
    if federation.commands_from is not None:
        from ..evidence.keys import valid_pin  # here: the evidence package is not small

        if federation.commands_from == hub.site:
            bad("commands_from", f"{hub.site!r} is this hub's own site")
        if not federation.command_keys:
            bad(
                "command_keys",
                "taking commands needs the region's signing keys (nabat evidence key, "
                "on each regional hub): an unsigned command could sound a siren",
            )
        for key in federation.command_keys:
            if not valid_pin(key):
                bad(
                    "command_keys",
                    f"{key!r} is neither a base64 Ed25519 public key nor its fingerprint",
                )
    for site in federation.municipalities:
        if site not in federation.follow:
            bad(f"municipalities.{site}", f"{site!r} is not a followed site (follow)")
    resolved: dict[str, Any] = {}
    for key in ("password", "token"):
        ref = getattr(federation, key)
        if ref is None or isinstance(ref, Secret):
            continue
        try:
            resolved[key] = Secret.from_ref(ref, base)
        except ValueError as exc:
            bad(key, str(exc))
    resolved.update(files)
    return msgspec.structs.replace(federation, **resolved) if resolved else federation


def _check_recording(
    recording: RecordingSettings,
    region: Region | None,
    file: str,
    index: _LineIndex,
    issues: list[ConfigIssue],
) -> None:
    """What the shape of ``[recording]`` cannot say: unique names and paths, somewhere to
    write when anything is recorded, known municipalities."""

    def bad(path: str, where: list[str], reason: str) -> None:
        issues.append(ConfigIssue(file, path, reason, index.line_of(where)))

    if recording.policy and not recording.storage:
        bad(
            "recording.storage",
            ["recording"],
            "recording policies need at least one [[recording.storage]] path to write to",
        )
    paths: set[str] = set()
    for i, disk in enumerate(recording.storage):
        if disk.path in paths:
            bad(f"recording.storage[{i}].path", ["recording", "storage", str(i)], "a second time")
        paths.add(disk.path)
    names: set[str] = set()
    for i, policy in enumerate(recording.policy):
        where = ["recording", "policy", str(i)]
        if policy.name in names:
            bad(f"recording.policy[{i}].name", where, f"duplicate policy name {policy.name!r}")
        names.add(policy.name)
        for slug in policy.municipalities:
            if region is not None and slug not in region:
                bad(
                    f"recording.policy[{i}] ({policy.name}).municipalities",
                    where,
                    f"{slug!r} is not a municipality of region {region.id}",
                )
        if policy.mode == "continuous" and not (
            policy.cameras or policy.tags or policy.municipalities
        ):
            bad(
                f"recording.policy[{i}] ({policy.name})",
                where,
                "a continuous policy must select cameras (cameras, tags or municipalities)",
            )


def load_config(path: str | Path, *, strict: bool = True) -> LoadedConfig:
    """Read and check ``path``. Raises ConfigInvalid listing every problem found.

    With ``strict=False`` (``nabat run``), problems confined to one ``[instances.<id>]`` table
    do not stop the hub: such instances are left out and listed in ``broken_instances``, so
    one mistyped camera does not keep every siren down.
    """
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        reason = f"file not found ({path.resolve()}); pass --config FILE or set NABAT_CONFIG"
        raise ConfigInvalid([ConfigIssue(file, "", reason)]) from None
    except OSError as exc:
        raise ConfigInvalid([ConfigIssue(file, "", f"cannot read: {exc.strerror}")]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise ConfigInvalid(
            [ConfigIssue(file, "", f"not valid TOML: {exc}", int(line.group(1)) if line else None)]
        ) from None
    index = _LineIndex(text)
    base = path.parent
    issues: list[ConfigIssue] = []

    known = set(Config.__struct_fields__)
    for key in raw:
        if key not in known:
            issues.append(
                ConfigIssue(
                    file,
                    key,
                    f"unknown key (expected one of: {', '.join(sorted(known))})",
                    index.line_of([key]),
                )
            )

    def section(data: Any, type_: Any, prefix: list[str]) -> Any:
        try:
            return _convert(data, type_, prefix, file, index, base)
        except ConfigInvalid as exc:
            issues.extend(exc.issues)
            return None

    hub = section(raw.get("hub", {}), HubSettings, ["hub"]) or HubSettings()
    storage = section(raw.get("storage", {}), StorageSettings, ["storage"]) or StorageSettings()
    storage = _resolve_storage_url(storage, file, index, base, issues)
    api = section(raw.get("api", {}), ApiSettings, ["api"]) or ApiSettings()
    cameras = section(raw.get("cameras", {}), CameraSettings, ["cameras"]) or CameraSettings()
    alerts = section(raw.get("alerts", {}), AlertSettings, ["alerts"]) or AlertSettings()
    rules = section(raw.get("rules", []), list[Rule], ["rules"]) or []
    readiness = (
        section(raw.get("readiness", {}), ReadinessSettings, ["readiness"]) or ReadinessSettings()
    )
    incidents = (
        section(raw.get("incidents", {}), IncidentSettings, ["incidents"]) or IncidentSettings()
    )
    video = section(raw.get("video", {}), VideoSettings, ["video"]) or VideoSettings()
    recording = (
        section(raw.get("recording", {}), RecordingSettings, ["recording"]) or RecordingSettings()
    )
    federation = (
        section(raw.get("federation", {}), FederationSettings, ["federation"])
        or FederationSettings()
    )
    federation = _check_federation(federation, hub, file, index, base, issues)
    notifications = (
        section(raw.get("notifications", {}), NotificationSettings, ["notifications"])
        or NotificationSettings()
    )
    duty = section(raw.get("duty", {}), DutySettings, ["duty"]) or DutySettings()
    plugins: dict[str, PluginEntry] = {}
    raw_plugins = raw.get("plugins", {})
    if not isinstance(raw_plugins, dict):
        issues.append(ConfigIssue(file, "plugins", "must be a table", index.line_of(["plugins"])))
        raw_plugins = {}
    for name, entry in raw_plugins.items():
        converted = section(entry, PluginEntry, ["plugins", name])
        if converted is not None:
            plugins[name] = converted
    instances: dict[str, InstanceEntry] = {}
    raw_instances = raw.get("instances", {})
    if not isinstance(raw_instances, dict):
        issues.append(
            ConfigIssue(file, "instances", "must be a table", index.line_of(["instances"]))
        )
        raw_instances = {}
    try:
        region = load_region(hub.region)
    except KeyError as exc:
        issues.append(
            ConfigIssue(file, "hub.region", str(exc.args[0]), index.line_of(["hub", "region"]))
        )
        region = None
    if region is not None:
        owner: dict[str, str] = {}
        for site, slugs in federation.municipalities.items():
            for slug in slugs:
                where = ["federation", "municipalities", site]
                if slug not in region:
                    issues.append(
                        ConfigIssue(
                            file,
                            f"federation.municipalities.{site}",
                            f"{slug!r} is not a municipality of region {region.id}",
                            index.line_of(where),
                        )
                    )
                elif owner.setdefault(slug, site) != site:
                    issues.append(
                        ConfigIssue(
                            file,
                            f"federation.municipalities.{site}",
                            f"{slug!r} is {owner[slug]!r}'s already: one site per municipality",
                            index.line_of(where),
                        )
                    )
        for slug in cameras.targets:
            if slug not in region:
                close = difflib.get_close_matches(slug, list(region.municipalities), 3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                issues.append(
                    ConfigIssue(
                        file,
                        f"cameras.targets.{slug}",
                        f"{slug!r} is not a municipality of region {region.id}{hint}",
                        index.line_of(["cameras", "targets", slug]),
                    )
                )
    _check_recording(recording, region, file, index, issues)
    event_policies = {p.name for p in recording.policy if p.mode == "event"}
    for i, rule in enumerate(rules):
        for action in rule.then:
            if action.record is None:
                continue
            wanted = action.record.policy
            if (wanted is None and not event_policies) or (
                wanted is not None and wanted not in event_policies
            ):
                issues.append(
                    ConfigIssue(
                        file,
                        f"rules[{i}] ({rule.name}).then.record",
                        f"no [[recording.policy]] of mode 'event' named {wanted!r}"
                        if wanted
                        else "a record action needs a [[recording.policy]] of mode 'event'",
                        index.line_of(["rules", str(i)]),
                    )
                )
    names: set[str] = set()
    for i, rule in enumerate(rules):
        where = ["rules", str(i)]
        if rule.name in names:
            issues.append(
                ConfigIssue(file, f"rules[{i}].name", f"duplicate rule name {rule.name!r}", None)
            )
        names.add(rule.name)
        for slug in rule.when.municipality + [
            m for a in rule.then if a.alert for m in a.alert.municipalities
        ]:
            if region is not None and slug not in region:
                issues.append(
                    ConfigIssue(
                        file,
                        f"rules[{i}] ({rule.name})",
                        f"{slug!r} is not a municipality of region {region.id}",
                        index.line_of(where),
                    )
                )
    broken: dict[str, list[ConfigIssue]] = {}
    for instance_id, entry in raw_instances.items():
        where = ["instances", instance_id]

        def bad(path: list[str], reason: str, instance_id: str = instance_id) -> None:
            issue = ConfigIssue(file, ".".join(path), reason, index.line_of(path))
            broken.setdefault(instance_id, []).append(issue)

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", instance_id):
            bad(where, "instance ids use letters, digits, '.', '_' and '-' only")
            continue
        try:
            converted = _convert(entry, InstanceEntry, where, file, index, base)
        except ConfigInvalid as exc:
            broken.setdefault(instance_id, []).extend(exc.issues)
            continue
        if region is not None and converted.municipality and converted.municipality not in region:
            close = difflib.get_close_matches(
                converted.municipality, list(region.municipalities), 3
            )
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            bad(
                [*where, "municipality"],
                f"{converted.municipality!r} is not a municipality of region {region.id}{hint}",
            )
            continue
        if (converted.lat is None) != (converted.lon is None):
            bad(where, "set both lat and lon, or neither")
            continue
        instances[instance_id] = converted
    # An escalation step's notifier must exist: a misspelt one would be found only when an
    # incident escalates, and nobody would be told.
    for chain, steps in duty.escalation.items():
        for n, step in enumerate(steps):
            if step.notify not in raw_instances:
                close = difflib.get_close_matches(step.notify, list(raw_instances), 3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                path = ["duty", "escalation", chain, str(n), "notify"]
                issues.append(
                    ConfigIssue(
                        file,
                        ".".join(path),
                        f"no instance {step.notify!r} in [instances]{hint}",
                        index.line_of(["duty", "escalation", chain]),
                    )
                )
    if issues or (strict and broken):
        raise ConfigInvalid(issues + [i for found in broken.values() for i in found])
    config = Config(
        hub=hub,
        storage=storage,
        api=api,
        cameras=cameras,
        alerts=alerts,
        rules=rules,
        readiness=readiness,
        incidents=incidents,
        video=video,
        recording=recording,
        federation=federation,
        notifications=notifications,
        duty=duty,
        plugins=plugins,
        instances=instances,
    )
    return LoadedConfig(
        config=config, path=path.resolve(), raw=raw, _index=index, broken_instances=broken
    )


def convert_settings(
    loaded: LoadedConfig, data: dict[str, Any], type_: Any, prefix: Sequence[str]
) -> Any:
    """Validate a plugin's or instance's ``settings`` table against the type it declares."""
    return _convert(data, type_, list(prefix), str(loaded.path), loaded._index, loaded.base_dir)


def masked(value: Any) -> Any:
    """``value`` (a Struct, dict…) as plain data with every secret masked."""
    plain = msgspec.to_builtins(value, enc_hook=secret_enc_hook)
    return mask_value("", plain)


__all__ += ["Secret"]
