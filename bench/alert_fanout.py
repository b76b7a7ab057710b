"""Alert fan-out benchmark: ``POST /api/v1/alerts`` to 500 MQTT sirens, against a bare client.

What is measured, in one run, against the Mosquitto broker on 127.0.0.1:1883:

* **hub** (ours): a hub in a process of its own, set up as ``nabat run`` does (installed
  plugins discovered, logging as JSON to a file, ``switch_interval`` applied), with a durable
  SQLite journal (WAL, ``synchronous=FULL``) in a fresh directory on disk, ``eventlog`` off,
  the ``watch`` intervals at an hour (no status polls during the runs), and its HTTP API on a
  free loopback port. It has ``--devices`` (500) ``mqtt.siren`` instances in municipality
  ``anapa``, ``timeout = 5``, all on one broker (so one shared MQTT connection), and the
  ``[alerts]`` defaults (3 attempts, concurrency 1,000). A run POSTs one ``Exercise`` alert
  for ``anapa`` to ``/api/v1/alerts?wait=30`` with a token holding ``alerts:activate``, on a
  keep-alive connection opened before. The hub resolves the 500 devices, publishes a QoS 1
  command to each one's ``<prefix>/<device>/cmd``, matches the acknowledgements, journals
  ``alert.device.activated`` for each and ``alert.completed``, and answers with the record.
* **raw** (the baseline): a bare aiomqtt client (the library ``mqtt.siren`` uses) in the
  benchmark's process, with TCP_NODELAY on its socket, connected and subscribed to
  ``<prefix>/+/ack`` beforehand, publishes the same 500 activate commands (the same JSON as
  the hub's ``Command``, encoded before the clock starts) with QoS 1, all at once
  (``asyncio.gather``), and waits until the 500th acknowledgement has arrived.
* **raw-default**: the same with aiomqtt's defaults, as the hub's broker connection has them:
  neither aiomqtt nor paho-mqtt sets TCP_NODELAY, so Nagle's algorithm holds back a small
  write while earlier bytes are unacknowledged, until the broker's delayed ACK (~40 ms).

All three talk to the same simulated sirens: one aiomqtt client in a process of its own that
subscribes ``<root>/+/+/cmd`` (QoS 1) and answers each ``activate`` at once with its ``ack``
(QoS 1, ``outcome: activated``), idempotent per alert (a repeated command for an alert the
device already sounds is answered again and counted as a repeat). One client stands for 500
devices; it publishes no ``status``/``online`` topics and sets no last will, and it has
TCP_NODELAY on, as 500 devices on connections of their own would each send a lone ack at once.
Each variant has its own topic prefix, so none sees another's traffic. The broker is as it
is configured (Mosquitto's defaults: 20 QoS 1 messages in flight per client).

Reported per run (``time.monotonic``, CLOCK_MONOTONIC, comparable across the processes), from
the POST being sent (hub) or the first publish (raw):

* **first cmd**: the simulated sirens received the first command.
* **devices acked**: the sirens handed the 500th distinct device's acknowledgement to their
  client ("last ack sent by the devices").
* **all known**: the sender knows all 500 are activated: for the hub, its API's answer has
  been read and says ``completed`` with 500 ``activated``; for raw, the 500th ack arrived.
* **CPU ms**: CPU time (user + system, ``/proc/<pid>/stat``, 10 ms ticks) of the hub's
  process (hub) or of the benchmark's own process (raw), and of the sirens' process, over
  the run.

Summaries over ``--repeats`` (20) runs per variant (interleaved, the order rotating; one
unmeasured warm-up run of each first): p50, p99 (with 20 runs: the slowest), min and max;
**ratio** = time over raw's, p50 over p50 and p99 over p99: a ratio of times, so > 1 means
slower than the bare client. Every run fails loudly unless all 500 devices are ``activated``
(hub) or answered (raw); hub retries (attempts > 1) and repeated commands are printed, and so
are the hub log's warnings and errors, counted.

Goal (issue): all 500 sirens activated within 2 s of the POST (checked on the p99 of
"all known", the stricter of the two).

Run: ``uv run python bench/alert_fanout.py`` (~35 s; ``--quick``: 3 runs of each, ~10 s;
``--devices``, ``--repeats``, ``--host``/``--port`` for another broker; ``--keep`` keeps the
hub's directory and log). Diagnostics, which change the hub and so are not the product's
figures: ``--nodelay`` (TCP_NODELAY on the hub's broker connection, see
:func:`_force_nodelay`) and ``--quiet-mqtt-log`` (the hub's ``mqtt`` logger at ERROR: aiomqtt
logs a warning for every publish while more than 10 await their PUBACK).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from workload import percentile

GOAL_SECONDS = 2.0
VARIANTS = ["raw", "raw-default", "hub"]
NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
MUNICIPALITY = "anapa"
DEVICE_TIMEOUT = 5.0
WAIT = 30.0  # ?wait= of the POST, seconds
clock = time.monotonic  # CLOCK_MONOTONIC: one clock for every process on the machine

HUB_CONFIG = """
[hub]
name = "bench-alerts"
language = "en"
data_dir = "{data_dir}"
log_level = "info"
log_format = "json"

[storage]
url = "sqlite:///journal.sqlite3"

[plugins.eventlog]
enabled = false

[plugins.mqtt]
enabled = true

[plugins.watch.settings]
device_interval = 3600.0
camera_interval = 3600.0

[api]
listen = "127.0.0.1:0"
"""

INSTANCE = """
[instances.{name}]
kind = "mqtt.siren"
municipality = "{municipality}"
timeout = {timeout}
settings = {{ host = "{host}", port = {port}, topic_prefix = "{prefix}" }}
"""


def quiet_logger() -> logging.Logger:
    """For the sirens' and the raw client's aiomqtt: aiomqtt logs a warning for every publish
    while more than 10 are waiting for their PUBACK ("There are N pending publish calls"),
    i.e. for nearly every one of 500 published at once. The bare clients do without."""
    logger = logging.getLogger("bench.mqtt")
    logger.setLevel(logging.ERROR)
    return logger


def device_names(count: int) -> list[str]:
    return [f"{MUNICIPALITY}-s{i:03d}" for i in range(count)]


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the simulated sirens (a process of their own) -------------------------------------------
@dataclass
class Tally:
    """What the sirens saw of one alert."""

    first: float  # first command received
    devices: set[str] = field(default_factory=set)
    last: float = 0.0  # the ack of the expected-th distinct device handed to the client
    commands: int = 0
    repeats: int = 0


async def _sirens(conn: Any, host: str, port: int, root: str, expected: int) -> None:
    import aiomqtt

    loop = asyncio.get_running_loop()
    tallies: dict[str, Tally] = {}
    sending: set[asyncio.Task[None]] = set()
    failures: list[str] = []
    stop = asyncio.Event()

    def on_control() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the benchmark is gone
            message = "stop"
        if message == "stop":
            loop.remove_reader(conn.fileno())
            stop.set()
            return
        _, alert = message
        tally = tallies.get(alert)
        conn.send(
            None
            if tally is None
            else (len(tally.devices), tally.commands, tally.repeats, tally.first, tally.last)
        )

    def sent(task: asyncio.Task[None]) -> None:
        sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failures.append(repr(task.exception()))

    async def serve(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            now = clock()
            topic = message.topic.value  # <root>/<variant>/<device>/cmd
            base = topic[: -len("/cmd")]
            command = json.loads(message.payload)  # type: ignore[arg-type]
            if command.get("action") != "activate":
                continue
            alert = command.get("alert")
            tally = tallies.get(alert)
            if tally is None:
                tally = tallies[alert] = Tally(first=now)
            tally.commands += 1
            device = base.rpartition("/")[2]
            if device in tally.devices:
                tally.repeats += 1  # idempotent: answered again, not sounded twice
            else:
                tally.devices.add(device)
            ack = json.dumps(
                {
                    "id": command["id"],
                    "alert": alert,
                    "outcome": "activated",
                    "detail": f"sounding {command.get('signal_seconds')} s",
                }
            ).encode()
            task = loop.create_task(client.publish(f"{base}/ack", ack, qos=1))
            sending.add(task)
            task.add_done_callback(sent)
            if len(tally.devices) == expected and not tally.last:
                tally.last = clock()

    async with aiomqtt.Client(
        host,
        port,
        identifier=f"bench-sirens-{os.getpid()}",
        keepalive=30,
        logger=quiet_logger(),
        socket_options=NODELAY,  # as 500 devices, each sending its lone ack at once
    ) as client:
        await client.subscribe(f"{root}/+/+/cmd", qos=1)
        server = loop.create_task(serve(client))
        loop.add_reader(conn.fileno(), on_control)
        conn.send(("ready", os.getpid()))
        await stop.wait()
        loop.remove_reader(conn.fileno())
        server.cancel()
        await asyncio.gather(server, *sending, return_exceptions=True)
    if failures:
        print(f"sirens: {len(failures)} acks failed to send: {failures[:3]}", file=sys.stderr)


def sirens_main(conn: Any, host: str, port: int, root: str, expected: int) -> None:
    asyncio.run(_sirens(conn, host, port, root, expected))


# -- the hub (a process of its own) ----------------------------------------------------------
def _force_nodelay() -> None:
    """Diagnostic (``--nodelay``): TCP_NODELAY on the hub's broker connection.

    ``nabat_mqtt.broker.Broker`` makes its ``aiomqtt.Client`` without ``socket_options``, and
    neither aiomqtt nor paho-mqtt turns Nagle off, so a command written while earlier ones
    are not yet acknowledged by TCP waits for the broker's delayed ACK (~40 ms on Linux).
    This patch measures the hub as if the Broker passed ``socket_options`` with
    TCP_NODELAY; nothing else changes."""
    import aiomqtt

    original = aiomqtt.Client

    class Client(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("socket_options", NODELAY)
            super().__init__(*args, **kwargs)

    aiomqtt.Client = Client  # type: ignore[misc]


async def _hub(conn: Any, directory: str, config: str, quiet_mqtt: bool, nodelay: bool) -> None:
    from nabat.logs import configure_logging
    from nabat.runtime import apply_runtime_settings
    from nabat.testing import load_config_text, run_api, run_hub

    loaded = load_config_text(config, Path(directory))
    with (Path(directory) / "hub.log").open("a", encoding="utf-8") as log_file:
        configure_logging("info", "json", stream=log_file)  # as `nabat run`, to a file
        apply_runtime_settings(loaded.config.hub)  # as `nabat run` does
        if quiet_mqtt:  # diagnostic, see --quiet-mqtt-log
            logging.getLogger("mqtt").setLevel(logging.ERROR)
        if nodelay:
            _force_nodelay()
        started = clock()
        async with run_hub(loaded) as hub:  # installed plugins discovered, as `nabat run`
            async with run_api(hub) as server:
                secret, _ = await server.state.tokens.create(
                    "bench", ["alerts:activate", "events:read"]
                )
                running = sum(1 for rt in hub.units if hub.state_of(rt.id) == "running")
                conn.send(("ready", server.url, secret, os.getpid(), clock() - started, running))
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, conn.recv)  # "stop"


def hub_main(conn: Any, directory: str, config: str, quiet_mqtt: bool, nodelay: bool) -> None:
    asyncio.run(_hub(conn, directory, config, quiet_mqtt, nodelay))


class Child:
    """A process under test: started, asked, stopped."""

    def __init__(self, target: Any, *args: Any) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child, *args), daemon=True)

    def start(self, timeout: float) -> tuple[Any, ...]:
        self.process.start()
        if not self.conn.poll(timeout):
            raise RuntimeError(f"{self.process.name} did not start within {timeout:g} s")
        return self.conn.recv()

    def ask(self, message: Any) -> Any:
        self.conn.send(message)
        if not self.conn.poll(30):
            raise RuntimeError(f"{self.process.name} did not answer within 30 s")
        return self.conn.recv()

    def stop(self) -> None:
        try:
            if self.process.is_alive():
                self.conn.send("stop")
                self.process.join(60)
        finally:
            if self.process.is_alive():
                self.process.kill()
                self.process.join()


# -- the runs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    first_cmd: float  # seconds from the start
    devices_acked: float
    all_known: float
    cpu_ms: float  # hub process (hub) or the benchmark's process (raw)
    sirens_cpu_ms: float
    commands: int
    repeats: int
    max_attempts: int


class AckWaiter:
    """The raw client's side: counts one alert's acknowledgements."""

    def __init__(self) -> None:
        self.alert: str | None = None
        self.ids: set[str] = set()
        self.expected = 0
        self.done_at = 0.0
        self.done = asyncio.Event()
        self.stray = 0

    def expect(self, alert: str, count: int) -> None:
        self.alert, self.expected, self.done_at = alert, count, 0.0
        self.ids = set()
        self.done.clear()

    async def listen(self, client: Any) -> None:
        async for message in client.messages:
            ack = json.loads(message.payload)
            if ack.get("alert") != self.alert or ack.get("outcome") != "activated":
                self.stray += 1
                continue
            self.ids.add(ack["id"])
            if len(self.ids) == self.expected and not self.done.is_set():
                self.done_at = clock()
                self.done.set()


def command_json(alert: str, message: dict[str, Any]) -> bytes:
    """The hub's ``Command`` for an activation, as JSON (``omit_defaults``: no ``audio``)."""
    return json.dumps(
        {
            "id": str(uuid.uuid4()),  # 36 characters, as the hub's uuid7
            "action": "activate",
            "alert": alert,
            "signal": message["signal"],
            "signal_seconds": message["signal_seconds"],
            "text": message["text"],
            "repeat": message["repeat"],
        },
        ensure_ascii=False,
    ).encode()


MESSAGE = {
    "signal": "attention_all",
    "signal_seconds": 180,
    "text": "Внимание! Учения. Это проверка системы оповещения.",
    "repeat": 1,
}


class Bench:
    def __init__(self, args: argparse.Namespace, root: str, sirens: Child, hub: Child) -> None:
        self.args = args
        self.root = root
        self.devices = device_names(args.devices)
        self.sirens = sirens
        self.hub = hub
        self.sirens_pid = 0
        self.hub_pid = 0
        self.url = ""
        self.token = ""

    def tally(self, alert: str) -> tuple[int, int, int, float, float]:
        found = self.sirens.ask(("tally", alert))
        if found is None:
            raise RuntimeError(f"the sirens saw no command of alert {alert}")
        return found

    async def hub_run(self, http: Any, label: str) -> Run:
        alert = f"bench-{label}-{uuid.uuid4().hex[:8]}"
        body = json.dumps(
            {
                "identifier": alert,
                "status": "Exercise",
                "event": "Учения",
                "area": {"municipalities": [MUNICIPALITY]},
                "message": MESSAGE,
            },
            ensure_ascii=False,
        ).encode()
        cpu0, sirens0 = cpu_of(self.hub_pid), cpu_of(self.sirens_pid)
        t0 = clock()
        answer = await http.post(
            "/api/v1/alerts",
            params={"wait": WAIT},
            content=body,
            headers={"Content-Type": "application/json"},
        )
        t1 = clock()
        cpu1, sirens1 = cpu_of(self.hub_pid), cpu_of(self.sirens_pid)
        if answer.status_code != 202:
            raise RuntimeError(f"POST /api/v1/alerts: {answer.status_code} {answer.text[:500]}")
        record = answer.json()
        outcomes: dict[str, int] = {}
        for device in record["devices"]:
            outcomes[device["outcome"]] = outcomes.get(device["outcome"], 0) + 1
        n = len(self.devices)
        if record["phase"] != "completed" or outcomes != {"activated": n}:
            bad = [d for d in record["devices"] if d["outcome"] != "activated"][:3]
            raise RuntimeError(
                f"alert {alert}: phase {record['phase']}, outcomes {outcomes} (expected "
                f"{n} activated); e.g. {bad}"
            )
        devices, commands, repeats, first, last = self.tally(alert)
        if devices != n or not last:
            raise RuntimeError(f"alert {alert}: the sirens saw {devices} of {n} devices")
        return Run(
            first_cmd=first - t0,
            devices_acked=last - t0,
            all_known=t1 - t0,
            cpu_ms=(cpu1 - cpu0) * 1000,
            sirens_cpu_ms=(sirens1 - sirens0) * 1000,
            commands=commands,
            repeats=repeats,
            max_attempts=max(d["attempts"] for d in record["devices"]),
        )

    async def raw_run(self, variant: str, client: Any, waiter: AckWaiter, label: str) -> Run:
        alert = f"{variant}-{label}-{uuid.uuid4().hex[:8]}"
        commands = [
            (f"{self.root}/{variant}/{device}/cmd", command_json(alert, MESSAGE))
            for device in self.devices
        ]
        waiter.expect(alert, len(commands))
        cpu0, sirens0 = time.process_time(), cpu_of(self.sirens_pid)
        t0 = clock()
        await asyncio.gather(*(client.publish(t, p, qos=1) for t, p in commands))
        try:
            async with asyncio.timeout(WAIT):
                await waiter.done.wait()
        except TimeoutError:
            raise RuntimeError(
                f"raw {alert}: {len(waiter.ids)} of {len(commands)} acks within {WAIT:g} s"
            ) from None
        cpu1, sirens1 = time.process_time(), cpu_of(self.sirens_pid)
        devices, count, repeats, first, last = self.tally(alert)
        if devices != len(commands) or not last:
            raise RuntimeError(f"raw {alert}: the sirens saw {devices} of {len(commands)}")
        return Run(
            first_cmd=first - t0,
            devices_acked=last - t0,
            all_known=waiter.done_at - t0,
            cpu_ms=(cpu1 - cpu0) * 1000,
            sirens_cpu_ms=(sirens1 - sirens0) * 1000,
            commands=count,
            repeats=repeats,
            max_attempts=1,
        )

    async def measure(self) -> dict[str, list[Run]]:
        import httpx

        args = self.args
        runs: dict[str, list[Run]] = {variant: [] for variant in VARIANTS}
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            httpx.AsyncClient(base_url=self.url, headers=headers, timeout=WAIT + 30) as http,
            raw_client(args, "raw", nodelay=True) as raw,
            raw_client(args, "raw-default", nodelay=False) as default,
        ):
            loop = asyncio.get_running_loop()
            clients = {"raw": raw, "raw-default": default}
            waiters = {variant: AckWaiter() for variant in clients}
            listeners = []
            for variant, client in clients.items():
                await client.subscribe(f"{self.root}/{variant}/+/ack", qos=1)
                listeners.append(loop.create_task(waiters[variant].listen(client)))

            async def run(variant: str, label: str) -> Run:
                if variant == "hub":
                    return await self.hub_run(http, label)
                return await self.raw_run(variant, clients[variant], waiters[variant], label)

            try:
                for variant in VARIANTS:
                    result = await run(variant, "warmup")
                    print(f"  warm-up {variant:>11}: {describe(result)}", flush=True)
                for rep in range(args.repeats):
                    shift = rep % len(VARIANTS)  # rotate the order
                    for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                        await asyncio.sleep(args.pause)
                        result = await run(variant, str(rep))
                        runs[variant].append(result)
                        print(f"  rep {rep + 1:2d} {variant:>11}: {describe(result)}", flush=True)
            finally:
                for listener in listeners:
                    listener.cancel()
                await asyncio.gather(*listeners, return_exceptions=True)
            for variant, waiter in waiters.items():
                if waiter.stray:
                    print(f"  ({variant}: {waiter.stray} acks of earlier runs or not 'activated')")
        return runs


def raw_client(args: argparse.Namespace, variant: str, *, nodelay: bool) -> Any:
    """A bare aiomqtt client; with ``nodelay``, TCP_NODELAY on its socket (Nagle off)."""
    import aiomqtt

    return aiomqtt.Client(
        args.host,
        args.port,
        identifier=f"bench-{variant}-{os.getpid()}",
        keepalive=30,
        logger=quiet_logger(),
        socket_options=NODELAY if nodelay else (),
    )


def describe(run: Run) -> str:
    extra = ""
    if run.repeats or run.max_attempts > 1:
        extra = f"  repeats {run.repeats}, max attempts {run.max_attempts}"
    return (
        f"first cmd {run.first_cmd * 1000:7.1f} ms  devices acked "
        f"{run.devices_acked * 1000:7.1f} ms  all known {run.all_known * 1000:7.1f} ms  "
        f"CPU {run.cpu_ms:5.0f} ms, sirens {run.sirens_cpu_ms:4.0f} ms{extra}"
    )


# -- the report ------------------------------------------------------------------------------
def stats_ms(values: list[float]) -> tuple[float, float, float, float]:
    ordered = sorted(v * 1000 for v in values)
    return percentile(ordered, 50), percentile(ordered, 99), ordered[0], ordered[-1]


def report(runs: dict[str, list[Run]], devices: int) -> None:
    print()
    print(
        f"| {'measure':34} | {'variant':11} | {'p50 ms':>7} | {'p99 ms':>7} | {'min ms':>7} | "
        f"{'max ms':>7} | {'ratio p50':>9} | {'ratio p99':>9} |"
    )
    print(
        f"| {'-' * 34} | {'-' * 11} | ------: | ------: | ------: | ------: | --------: | "
        "--------: |"
    )
    measures = [
        ("first command at the sirens", "first_cmd"),
        (f"last ack sent by the {devices} devices", "devices_acked"),
        (f"sender knows all {devices}", "all_known"),
    ]
    figures: dict[tuple[str, str], tuple[float, float, float, float]] = {}
    for title, name in measures:
        for variant in VARIANTS:
            figures[name, variant] = stats_ms([getattr(r, name) for r in runs[variant]])
        base = figures[name, "raw"]
        for variant in VARIANTS:
            p50, p99, low, high = figures[name, variant]
            print(
                f"| {title:34} | {variant:11} | {p50:7.1f} | {p99:7.1f} | {low:7.1f} | "
                f"{high:7.1f} | {p50 / base[0]:9.2f} | {p99 / base[1]:9.2f} |"
            )
    print()
    for variant in VARIANTS:
        group = runs[variant]
        cpu = statistics.median(r.cpu_ms for r in group)
        sirens = statistics.median(r.sirens_cpu_ms for r in group)
        repeats = sum(r.repeats for r in group)
        retried = sum(1 for r in group if r.max_attempts > 1)
        owner = "hub process" if variant == "hub" else "benchmark process"
        print(
            f"{variant}: CPU per run (median) {cpu:.0f} ms in the {owner}, {sirens:.0f} ms in "
            f"the sirens' process; repeated commands {repeats}, runs with a retry {retried}"
        )
    print()
    print(
        "ratio = time / raw's time in the same run (p50 over p50, p99 over p99): > 1 means "
        "slower than the bare client. raw: aiomqtt with TCP_NODELAY; raw-default: aiomqtt's "
        "defaults (Nagle on), as the hub's broker connection has them. 'sender knows all': "
        f"hub = the POST's answer read (completed, {devices} activated); raw = the "
        f"{devices}th ack received."
    )
    known = figures["all_known", "hub"]
    acked = figures["devices_acked", "hub"]
    met = known[1] <= GOAL_SECONDS * 1000
    print(
        f"goal: all {devices} activated within {GOAL_SECONDS:g} s of the POST: "
        f"{'met' if met else 'NOT met'} (hub knows all: p50 {known[0]:.0f} ms, p99 "
        f"{known[1]:.0f} ms, max {known[3]:.0f} ms; devices acked: p99 {acked[1]:.0f} ms)"
    )


def describe_machine(host: str, port: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mosquitto = ""
    if shutil.which("mosquitto"):
        out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False)
        mosquitto = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
    load = os.getloadavg()
    return (
        f"{cpu}, nproc {os.cpu_count()}, CPython {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, aiomqtt {version('aiomqtt')} (paho-mqtt "
        f"{version('paho-mqtt')}), broker {host}:{port} ({mosquitto or 'version unknown'}), "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def hub_config(args: argparse.Namespace, data_dir: Path, prefix: str) -> str:
    parts = [HUB_CONFIG.format(data_dir=data_dir)]
    for name in device_names(args.devices):
        parts.append(
            INSTANCE.format(
                name=name,
                municipality=MUNICIPALITY,
                timeout=DEVICE_TIMEOUT,
                host=args.host,
                port=args.port,
                prefix=prefix,
            )
        )
    return "".join(parts)


def broker_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=500, help="mqtt.siren instances")
    parser.add_argument("--repeats", type=int, default=20, help="runs per variant")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between runs")
    parser.add_argument("--host", default="127.0.0.1", help="MQTT broker")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--quick", action="store_true", help="3 runs of each: smoke test")
    parser.add_argument("--dir", default=None, help="directory for the journal (on disk)")
    parser.add_argument("--keep", action="store_true", help="keep the hub's directory and log")
    parser.add_argument(
        "--quiet-mqtt-log",
        action="store_true",
        help="diagnostic: the hub's 'mqtt' (aiomqtt) logger at ERROR, see quiet_logger",
    )
    parser.add_argument(
        "--nodelay",
        action="store_true",
        help="diagnostic: TCP_NODELAY on the hub's broker connection, see _force_nodelay",
    )
    args = parser.parse_args()
    if args.quick:
        args.repeats = 3
    if not broker_up(args.host, args.port):
        sys.exit(f"no MQTT broker on {args.host}:{args.port} (start Mosquitto: mosquitto -d)")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    work = Path(tempfile.mkdtemp(prefix="nabat-alert-fanout-", dir=args.dir))
    root = f"bench/{uuid.uuid4().hex[:8]}"
    print(f"machine: {describe_machine(args.host, args.port)}")
    print(
        f"{args.devices} mqtt.siren devices (timeout {DEVICE_TIMEOUT:g} s), {args.repeats} runs "
        f"per variant, interleaved; topics under {root}/"
    )
    started = clock()
    sirens = Child(sirens_main, args.host, args.port, root, args.devices)
    hub = Child(
        hub_main,
        str(work),
        hub_config(args, work / "data", f"{root}/hub"),
        args.quiet_mqtt_log,
        args.nodelay,
    )
    try:
        _, sirens_pid = sirens.start(30)
        _, url, token, hub_pid, hub_start, running = hub.start(180)
        if running != args.devices:
            raise RuntimeError(f"only {running} of {args.devices} sirens are running")
        print(
            f"hub started in {hub_start:.1f} s ({running} sirens running), sirens pid "
            f"{sirens_pid}, hub pid {hub_pid}",
            flush=True,
        )
        bench = Bench(args, root, sirens, hub)
        bench.sirens_pid, bench.hub_pid, bench.url, bench.token = sirens_pid, hub_pid, url, token
        runs = asyncio.run(bench.measure())
    finally:
        hub.stop()
        sirens.stop()
        log_lines = summarize_log(work / "hub.log")
        if args.keep:
            print(f"(kept {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"({clock() - started:.0f} s; load average now {os.getloadavg()[0]:.2f})")
    report(runs, args.devices)
    print(log_lines)


def summarize_log(path: Path) -> str:
    """The hub log's warnings and errors, counted by logger and message (numbers masked)."""
    counts: dict[str, int] = {}
    try:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("level") not in ("warning", "error", "critical"):
                    continue
                text = re.sub(r"\d+", "N", str(entry.get("event", "?")))
                key = f"{entry['level']} {entry.get('logger', '?')}: {text}"
                counts[key] = counts.get(key, 0) + 1
    except OSError:
        return "hub log: not found"
    if not counts:
        return "hub log: no warnings or errors"
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:5]
    return "hub log, warnings and errors: " + "; ".join(f"{n} x {k!r}" for k, n in top)


if __name__ == "__main__":
    main()
