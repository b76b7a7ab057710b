"""The shape of ``plugins.toml``. Every table forbids unknown keys."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ..rules.model import Rule

__all__ = [
    "AlertSettings",
    "ApiSettings",
    "BusSettings",
    "CameraSettings",
    "Config",
    "ConsoleSettings",
    "DeliveryOptions",
    "DutySettings",
    "EscalationStep",
    "FederationSettings",
    "HubSettings",
    "IncidentSettings",
    "InstanceEntry",
    "NormSettings",
    "NotificationSettings",
    "PluginEntry",
    "PostSettings",
    "ReadinessSettings",
    "RecordingPolicy",
    "RecordingSettings",
    "RecordingStorage",
    "StorageSettings",
    "VideoSettings",
]

Positive = Annotated[float, msgspec.Meta(gt=0)]
Slug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]


class _Table(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class BusSettings(_Table):
    """``[hub.bus]``: defaults for every bus subscription."""

    queue_size: Annotated[int, msgspec.Meta(ge=1)] = 1000
    overflow: Literal["wait", "drop_oldest"] = "wait"
    put_timeout: Positive = 5.0
    handler_timeout: Positive = 30.0


class HubSettings(_Table):
    """``[hub]``."""

    name: str = "nabat"
    region: str = "krasnodar-krai"
    """Region whose municipality slugs are valid (shipped CSV under ``nabat/regions``)."""
    language: Literal["ru", "en"] = "ru"
    data_dir: str = "data"
    """State directory, relative to the configuration file unless absolute."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "logfmt"] = "auto"
    startup_timeout: Positive = 30.0
    shutdown_timeout: Positive = 15.0
    retry_initial: Positive = 1.0
    """First retry delay (seconds) for a plugin or instance in ``retrying``; doubles each time."""
    retry_max: Positive = 300.0
    needs_auth_retry: Positive = 600.0
    """How often an instance in ``needs_auth`` tries again (a rotated secret file may fix it)."""
    switch_interval: Annotated[float, msgspec.Meta(ge=0.0001, le=0.1)] = 0.0005
    """Seconds the interpreter lets one thread run before another may take the GIL (Python's
    default: 0.005). The journal's writer thread needs the GIL for a moment after each SQLite
    step; behind a busy event loop the default made every commit wait, halving HTTP ingest."""
    malloc_arenas: Annotated[int, msgspec.Meta(ge=0, le=64)] = 2
    """glibc malloc arenas ``nabat run`` allows (``mallopt(M_ARENA_MAX)``); 0 keeps glibc's
    default of 8 per core, and ``MALLOC_ARENA_MAX`` in the environment wins. Each thread that
    allocates may get an arena of its own, and memory freed in one serves only that one: more
    arenas, more memory kept resident (docs/operations.md, "Memory")."""
    malloc_trim_interval: Annotated[float, msgspec.Meta(ge=0.0)] = 60.0
    """Seconds between ``malloc_trim(0)`` calls in ``nabat run`` (glibc; 0: never). glibc gives
    the OS back only the top of its heap; pages freed below stay resident. In the soak all of
    the RSS growth was such memory (``nabat_process_malloc_bytes{state="free"}``)."""
    bus: BusSettings = msgspec.field(default_factory=BusSettings)
    site: Slug | None = None
    """This hub's site (a district, or the region) in a federation: its JetStream domain and
    the ``<site>`` of the subjects its events go up as (``docs/federation.md``)."""


class StorageSettings(_Table):
    """``[storage]``: where the journal lives."""

    url: Any = None
    """``sqlite:///path`` (relative paths are under ``data_dir``) or a PostgreSQL DSN
    (``postgresql://user@host/db``). A DSN with a password must be a secret reference:
    ``url = { env = "NABAT_DATABASE_URL" }``. Default: ``sqlite:///journal.sqlite3``."""
    schema: Slug = "nabat"
    """PostgreSQL schema holding Nabat's tables."""
    retention_days: Annotated[float, msgspec.Meta(gt=0)] | None = 90.0
    """Events older than this are deleted once a day; unset keeps everything."""
    lease_ttl: Positive = 15.0
    """Seconds a hub process holds a durable subscription or a camera's recording without
    renewing it; after that, another process takes it over (a dead process's claims are
    released)."""
    poll_interval: Positive = 1.0
    """Upper bound (seconds) on how long an event appended by another hub process waits before
    durable subscribers here notice it."""


class RateLimitSettings(_Table):
    """``[api.rate_limit]``: the default per-token limit (a token may carry its own)."""

    rate: Positive = 50.0
    """Requests per second, refilled continuously."""
    burst: Annotated[int, msgspec.Meta(ge=1)] = 200
    """Requests a token may make at once after a quiet spell."""
    shared: bool = True
    """On PostgreSQL, count each token's (console's, sign-in address's) requests across all hub
    processes, one database statement per request; false: per process (N processes let N
    times the rate through)."""


class ConsoleSettings(_Table):
    """``[api.console]``: the ЕДДС operators' web console (docs/console.md)."""

    enabled: bool = True
    session_idle: Positive = 12 * 3600.0
    """Seconds without activity after which a console session ends."""
    session_max: Positive = 24 * 3600.0
    """Seconds after which a session ends whatever happens (a shift is over)."""
    max_failures: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    """Failed sign-ins in a row that lock an account."""
    lockout: Positive = 900.0
    """Seconds an account stays locked."""
    secure_cookies: bool | None = None
    """Mark the session cookie ``Secure``; None: when the request came over HTTPS."""


class ApiSettings(_Table):
    """``[api]``: the HTTP API (``docs/api.md``). Without ``listen`` the hub serves no HTTP."""

    listen: str | None = None
    """``host:port`` to serve on, e.g. ``"127.0.0.1:8080"`` (port 0: any free port)."""
    max_body: Annotated[int, msgspec.Meta(ge=1024)] = 10 * 1024 * 1024
    """Largest request body in bytes; a larger one is refused with 413 before it is read."""
    max_batch: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    """Most events in one ingest request."""
    body_timeout: Positive = 30.0
    """Seconds a client has to send its whole request body (slow clients get 408)."""
    idempotency_ttl: Positive = 86_400.0
    """Seconds an ``Idempotency-Key`` is remembered with the response it got."""
    public_docs: bool = False
    """Serve ``/schema`` (OpenAPI and its browsable UI) without a token."""
    webhook_tolerance: Positive = 300.0
    """Seconds a signed inbound webhook's timestamp may differ from our clock."""
    stream_heartbeat: Positive = 15.0
    """Seconds between keep-alive comments on an idle event stream."""
    audit_retention_days: Positive | None = 365.0
    """Audit entries older than this are deleted; unset keeps them."""
    max_event: Annotated[int, msgspec.Meta(ge=1024)] = 1024 * 1024
    """Largest single event in bytes (JSON as sent); a larger one is refused with 413."""
    max_header: Annotated[int, msgspec.Meta(ge=1024)] = 16 * 1024
    """Largest request header (name and value) in bytes, and the cap on all headers
    together is four times it; a larger one is refused with 431."""
    webhook_destinations: list[str] = []
    """Where outbound webhooks may go besides public addresses: networks (``10.20.0.0/16``,
    ``127.0.0.1/32``) and host names. Loopback, private, link-local and other internal
    addresses are refused unless listed (``docs/api.md``, outbound webhooks)."""
    webhook_allow_public: bool = True
    """Whether outbound webhooks may go to any public address; ``false`` (a closed network)
    allows only ``webhook_destinations``."""
    rate_limit: RateLimitSettings = msgspec.field(default_factory=RateLimitSettings)
    console: ConsoleSettings = msgspec.field(default_factory=ConsoleSettings)

    def __post_init__(self) -> None:
        if self.listen is not None:
            parse_listen(self.listen)
        from ..netguard import DestinationPolicy

        try:
            DestinationPolicy.parse(self.webhook_destinations)
        except ValueError as exc:
            raise ValueError(f"webhook_destinations: {exc}") from None


def parse_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` (``[::1]:8080`` for IPv6) as (host, port); ValueError with the reason."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host:
        raise ValueError(f"listen must be host:port, got {listen!r}")
    host = host.strip("[]")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen port must be 0-65535, got {port!r}")
    return host, int(port)


class CameraSettings(_Table):
    """``[cameras]``: the camera inventory, snapshots and the district report."""

    inventory_refresh: Positive = 60.0
    """Seconds between checks of the inventory: imported cameras start, changed ones restart,
    deleted ones stop, without restarting the hub."""
    start_concurrency: Annotated[int, msgspec.Meta(ge=1)] = 32
    """Inventory cameras starting (connecting) at once, so 10,000 do not connect together."""
    snapshot_max_age: Positive = 10.0
    """A snapshot younger than this is served from the cache (its age is sent along)."""
    snapshot_concurrency: Annotated[int, msgspec.Meta(ge=1)] = 16
    """Snapshot fetches at once over all cameras."""
    availability_target: Annotated[float, msgspec.Meta(ge=0, le=100)] = 95.0
    """A district whose cameras were ``ok`` less than this share of the report period
    (percent) is reported as lagging."""
    targets: dict[str, Annotated[int, msgspec.Meta(ge=0)]] = {}
    """Working cameras each municipality should have (slug → count); fewer ``ok`` cameras
    than its target make a district lagging."""
    destinations: list[str] = []
    """Where cameras may be reached besides private and public addresses: networks
    (``127.0.0.1/32`` for a restreamer on the hub's host) and host names. Imported inventory
    rows and every address a camera returns (ONVIF URIs, redirects) are checked against it;
    loopback, link-local (cloud metadata), multicast and unspecified addresses are refused
    unless listed (``docs/cameras.md``, destinations)."""
    allow_private: bool = True
    """Whether cameras may be on any private network (10/8, 172.16/12, 192.168/16,
    100.64/10, fc00::/7); ``false`` allows only those listed in ``destinations``."""
    allow_public: bool = True
    """Whether cameras may be on any public address; ``false`` with ``allow_private = false``
    allows only ``destinations``."""

    def __post_init__(self) -> None:
        from ..netguard import DestinationPolicy

        try:
            DestinationPolicy.parse(self.destinations)
        except ValueError as exc:
            raise ValueError(f"destinations: {exc}") from None


class VideoSettings(_Table):
    """``[video]``: live video from the cameras (docs/video.md)."""

    max_upstreams: Annotated[int, msgspec.Meta(ge=1)] = 64
    """Cameras streamed at once by this hub (one RTSP session each); a viewer of one more
    camera gets 503."""
    max_viewers_per_camera: Annotated[int, msgspec.Meta(ge=1)] = 16
    """Viewers sharing one camera's upstream; one more gets 503."""
    max_streams_per_user: Annotated[int, msgspec.Meta(ge=1)] = 16
    """Live streams one console user or API token holds at once; one more gets 429."""
    idle_close: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    """Seconds an upstream stays open after its last viewer left (a viewer coming back, or
    switching layouts, starts at once)."""
    connect_timeout: Positive = 10.0
    """Seconds to get the stream address and open the camera's RTSP session."""
    stall_timeout: Positive = 5.0
    """Seconds without a packet after which the camera counts as stalled and is reconnected."""
    reconnect_initial: Positive = 1.0
    """First wait (seconds) before reconnecting a stalled camera; doubles each time."""
    reconnect_max: Positive = 30.0
    fragment_duration: Annotated[float, msgspec.Meta(ge=0.05, le=10)] = 0.5
    """Longest fMP4 fragment in seconds: a fragment starts at every key frame and after this
    long within a GOP, so latency stays below a long GOP's length."""
    viewer_queue: Annotated[int, msgspec.Meta(ge=2, le=10_000)] = 32
    """Fragments queued for a viewer that reads slower than the camera sends; beyond it the
    viewer skips to the next key frame."""
    workers: Annotated[int, msgspec.Meta(ge=0, le=64)] | None = None
    """Video worker processes the upstreams run in (default: one per CPU, at most 4; a new
    one starts only once each has a few upstreams); ``0`` runs them as threads in the hub's
    process, where they cost the event loop its latency (a debugging aid)."""

    def __post_init__(self) -> None:
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be at least reconnect_initial")


Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class RecordingStorage(_Table):
    """``[[recording.storage]]``: one disk (or directory) footage is written to."""

    path: str
    """Directory, relative to ``data_dir`` unless absolute; one per disk."""
    quota_gb: Positive
    """Footage kept on this path at most; beyond it the oldest footage not on hold goes."""
    min_free_gb: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    """Writing stops while the filesystem has less free space than this (others share it)."""


class RecordingPolicy(_Table):
    """``[[recording.policy]]``: which cameras are recorded, when, and for how long."""

    name: Name
    cameras: list[str] = []
    """Camera ids; with ``tags`` and ``municipalities``: a camera matching any is selected."""
    tags: list[str] = []
    municipalities: list[Slug] = []
    mode: Literal["continuous", "event"] = "continuous"
    """``continuous``: always; ``event``: around the events below, with pre- and post-roll."""
    incidents: bool = True
    """``event`` mode: an incident records its nearest cameras (of those this policy selects;
    none selected: every camera an incident links)."""
    pre_roll: Annotated[float, msgspec.Meta(ge=0, le=300)] = 10.0
    """Seconds before the event, for cameras whose stream is open (the upstream's ring)."""
    post_roll: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 120.0
    """Seconds after the event's last trigger."""
    retention_days: Positive = 30.0


class RecordingSettings(_Table):
    """``[recording]``: footage of the cameras as MP4 segments (docs/recording.md).

    TOML cannot hold a ``[recording]`` table and ``[[recording]]`` entries at once, so the
    policies are ``[[recording.policy]]`` and the disks ``[[recording.storage]]``."""

    segment_seconds: Annotated[float, msgspec.Meta(ge=5, le=3600)] = 60.0
    """A new file starts at the first key frame after this long."""
    sync_seconds: Annotated[float, msgspec.Meta(ge=0.5, le=600)] = 5.0
    """How often a segment being written is flushed to the disk itself (fsync): what a power
    cut can lose. A crash of the hub loses at most the fragment being written."""
    depth_days: Positive = 30.0
    """Archive depth each camera should have (the district report flags less)."""
    hold_before: Annotated[float, msgspec.Meta(ge=0)] = 3600.0
    """Seconds of footage before an open incident was reported that are held with it (an
    incident is often reported after what happened)."""
    storage: list[RecordingStorage] = []
    policy: list[RecordingPolicy] = []


class AlertSettings(_Table):
    """``[alerts]``: activating warning devices (docs/alerts.md)."""

    attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    """Tries per device when it times out or is unreachable (activation is idempotent)."""
    retry_delay: Positive = 0.5
    """Seconds before the second try; doubled for each further one."""
    concurrency: Annotated[int, msgspec.Meta(ge=1)] = 1000
    """Device calls in flight at once over all alerts."""
    two_person_rule: bool = False
    """An ``Actual`` alert starts only when a second caller confirms it."""
    confirm_within: Positive = 120.0
    """Seconds the second confirmation may take before the alert expires."""
    sender: str | None = None
    """CAP ``sender`` of alerts issued here (default ``nabat@<hub name>``)."""
    language: Literal["ru", "en"] = "ru"
    """Language of the message templates the console offers: what the population hears,
    whatever language an operator's console is in."""


class ReadinessSettings(_Table):
    """``[readiness]``: scheduled checks of every warning device (docs/alerts.md)."""

    technical: str | None = "0 9 * * *"
    """Crontab (hub's local time) of the silent check: status poll and self-test. None: off."""
    comprehensive: str | None = "43 10 1-7 3,10 wed"
    """Crontab of the audible check, a Test alert to every device (default: the first
    Wednesday of March and October at 10:43, as announced to the population). None: off."""
    comprehensive_signal_seconds: Annotated[int, msgspec.Meta(ge=0, le=180)] = 60
    comprehensive_text: str = (
        "Проводится комплексная проверка системы оповещения населения. Это проверка."
    )

    def __post_init__(self) -> None:
        from apscheduler.triggers.cron import CronTrigger

        for name in ("technical", "comprehensive"):
            value = getattr(self, name)
            if value is not None:
                try:
                    CronTrigger.from_crontab(value)
                except ValueError as exc:
                    raise ValueError(f"{name}: not a crontab line ({exc})") from None


class IncidentSettings(_Table):
    """``[incidents]``: incidents from 112, rules and connectors (docs/incidents.md)."""

    cameras: Annotated[int, msgspec.Meta(ge=0, le=32)] = 4
    """Nearest cameras linked to an incident with a location (0: none)."""
    camera_radius: Positive = 1000.0
    """Metres: cameras farther from the incident are not linked."""
    snapshot_timeout: Positive = 10.0
    """Seconds to wait for each linked camera's snapshot."""
    retention_days: Positive = 90.0
    """Days a closed incident and its snapshots stay listed; its events stay in the journal."""


class NotificationSettings(_Table):
    """``[notifications]``: delivering notifications to people through notifier instances
    (docs/duty.md). Each destination of a notification is retried on its own."""

    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 8
    """Attempts per destination before it is a dead letter (``notification.failed``)."""
    max_age: Positive = 21_600.0
    """Seconds after the first failure at which a destination is given up (6 h)."""
    backoff_initial: Positive = 5.0
    """Seconds before the second attempt; doubled (with jitter) for each further one."""
    backoff_max: Positive = 600.0
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=64)] = 8
    """Sends in flight at once over all notifiers."""
    timeout: Positive = 60.0
    """Limit on one send attempt, seconds."""


class PostSettings(_Table):
    """``[[duty.posts]]``: a duty post every (or each listed) municipality must staff."""

    id: Slug
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    municipalities: list[Slug] = []
    """Empty: every municipality of the region."""
    seats: Annotated[int, msgspec.Meta(ge=1, le=50)] = 1
    """People on this post at once."""


DEFAULT_POSTS = [
    PostSettings(id="edds", name="Оперативный дежурный ЕДДС"),
    PostSettings(id="112", name="Оператор 112"),
]


class NormSettings(_Table):
    """``[[duty.norms]]``: how fast an incident of these types and severities must be
    handled, seconds from when the hub learns of it."""

    name: Slug
    types: list[Annotated[str, msgspec.Meta(min_length=1, max_length=100)]] = []
    """Incident types (``traffic_accident``, ``fire``…); empty: any."""
    severities: list[Literal["unknown", "minor", "moderate", "severe", "extreme"]] = []
    """Empty: any."""
    acknowledge: Annotated[float, msgspec.Meta(ge=0)] = 120.0
    """A person in the ЕДДС takes it (0: no such clock)."""
    dispatch: Annotated[float, msgspec.Meta(ge=0)] = 600.0
    """It is passed to the services, ДДС 01–04 (0: no such clock)."""
    report: Annotated[float, msgspec.Meta(ge=0)] = 1800.0
    """The first report on it goes out (0: no such clock)."""
    escalation: Slug | None = None
    """The ``[duty.escalation.<name>]`` chain a missed clock starts."""
    checklist: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=500)]],
        msgspec.Meta(max_length=50),
    ] = []
    """The SOP: steps an operator ticks, shown on the incident."""


class EscalationStep(_Table):
    """One step of an escalation chain: whom to tell, how long after the step before."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    """Who this is (``старший оперативный дежурный``): shown on the incident and in the
    notification."""
    notify: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    """A notifier instance."""
    recipients: list[Annotated[str, msgspec.Meta(min_length=1, max_length=320)]] = []
    after: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    """Seconds after the previous step (the first: after the miss)."""


class DutySettings(_Table):
    """``[duty]``: incident handling norms, SOP checklists and escalation (docs/duty.md)."""

    norms: list[NormSettings] = []
    """The first whose ``types`` and ``severities`` take an incident applies."""
    escalation: dict[Slug, Annotated[list[EscalationStep], msgspec.Meta(min_length=1)]] = {}
    check_interval: Annotated[float, msgspec.Meta(ge=0.05, le=60)] = 5.0
    """Seconds between looks at the clocks: how late a miss or a step can be noticed."""
    posts: list[PostSettings] = msgspec.field(default_factory=lambda: list(DEFAULT_POSTS))
    """The posts the roster staffs and the staffing report checks."""

    def __post_init__(self) -> None:
        names = [n.name for n in self.norms]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"norms named twice: {', '.join(repeated)}")
        ids = [p.id for p in self.posts]
        if len(set(ids)) != len(ids):
            raise ValueError(
                f"posts named twice: {', '.join(sorted({i for i in ids if ids.count(i) > 1}))}"
            )
        for norm in self.norms:
            if norm.escalation is not None and norm.escalation not in self.escalation:
                raise ValueError(
                    f"norm {norm.name}: no escalation chain {norm.escalation!r} "
                    f"(have: {', '.join(sorted(self.escalation)) or 'none'})"
                )


class DeliveryOptions(_Table):
    """``[instances.<id>.delivery]``: how the hub delivers events to a connector."""

    order: Literal["ordered", "parallel"] = "ordered"
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 4
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] | None = 20
    max_age: Positive | None = 86_400.0
    backoff_initial: Positive = 1.0
    backoff_max: Positive = 300.0


UP_DEFAULT = ("camera.health.>", "incident.>", "alert.>", "siren.>", "device.>", "command.>")


class FederationSettings(_Table):
    """``[federation]``: this hub's site on NATS JetStream (``docs/federation.md``). Without
    ``servers`` the hub is on its own."""

    servers: list[str] = []
    """The site's NATS (its leaf node), ``nats://host:port`` or ``tls://host:port``."""
    user: str | None = None
    password: Any = None
    """A secret reference (``{ env = "NAME" }``); with ``user``."""
    token: Any = None
    """A secret reference; instead of ``user`` and ``password``."""
    credentials: str | None = None
    """A NATS credentials file (``.creds``: the site's account JWT and nkey seed, as ``nsc``
    makes them); instead of ``user``/``password``/``token``. Relative to the config file."""
    tls_ca: str | None = None
    """CA certificate (PEM) to trust for ``tls://`` servers; default: the system's."""
    tls_cert: str | None = None
    """This hub's client certificate (PEM), when the server asks for one; with ``tls_key``."""
    tls_key: str | None = None
    up: list[str] = msgspec.field(default_factory=lambda: list(UP_DEFAULT))
    """Event types (patterns) that go up to the region: ``nabat.<site>.<type>``."""
    follow: list[Slug] = []
    """Sites this hub follows (the region: every district)."""
    connect_timeout: Positive = 5.0
    publish_timeout: Positive = 5.0
    """Seconds to wait for JetStream's acknowledgement of one event; then it is retried."""
    stream_max_age_days: Positive = 7.0
    """How long the site's stream keeps events for the region: the longest cut it outlasts."""
    stream_max_mb: Positive = 1024.0
    commands_from: Slug | None = None
    """A district: the site (the region's JetStream domain) whose commands this hub takes —
    alerts to sound, snapshots and PTZ for the region's operators (``docs/federation.md``)."""
    command_keys: list[str] = []
    """With ``commands_from``: the region's signing keys (base64 Ed25519 public keys, as
    ``nabat evidence key`` prints them on each regional hub); a command signed by no other
    key is refused."""
    municipalities: dict[Slug, list[Slug]] = {}
    """The region: each followed site's municipalities — where an alert's area sends it."""
    command_ttl: Positive = 300.0
    """The region: seconds a command waits for a cut-off site when it has no deadline of its
    own (an alert's ``expires`` is its deadline when sooner); then it expires, never late."""
    call_timeout: Positive = 10.0
    """The region: seconds to wait for a site's answer to a snapshot or PTZ request."""
    report_interval: Annotated[float, msgspec.Meta(ge=5)] = 60.0
    """A site: seconds between its district reports for the region (``site.report``)."""


class PluginEntry(_Table):
    """``[plugins.<name>]``."""

    enabled: bool = True
    settings: dict[str, Any] = {}


class InstanceEntry(_Table):
    """``[instances.<id>]``: one configured driver instance."""

    kind: str
    """Driver kind, ``"<plugin>.<thing>"``."""
    name: str | None = None
    municipality: Slug | None = None
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None
    enabled: bool = True
    timeout: Positive = 15.0
    """Outer limit (seconds) the hub enforces on every call into this instance."""
    delivery: DeliveryOptions = msgspec.field(default_factory=DeliveryOptions)
    settings: dict[str, Any] = {}


class Config(_Table):
    """The whole file."""

    hub: HubSettings = msgspec.field(default_factory=HubSettings)
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    api: ApiSettings = msgspec.field(default_factory=ApiSettings)
    cameras: CameraSettings = msgspec.field(default_factory=CameraSettings)
    alerts: AlertSettings = msgspec.field(default_factory=AlertSettings)
    readiness: ReadinessSettings = msgspec.field(default_factory=ReadinessSettings)
    incidents: IncidentSettings = msgspec.field(default_factory=IncidentSettings)
    video: VideoSettings = msgspec.field(default_factory=VideoSettings)
    recording: RecordingSettings = msgspec.field(default_factory=RecordingSettings)
    federation: FederationSettings = msgspec.field(default_factory=FederationSettings)
    notifications: NotificationSettings = msgspec.field(default_factory=NotificationSettings)
    duty: DutySettings = msgspec.field(default_factory=DutySettings)
    rules: list[Rule] = []
    plugins: dict[str, PluginEntry] = {}
    instances: dict[str, InstanceEntry] = {}
