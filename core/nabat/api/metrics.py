"""Prometheus metrics at ``/metrics``.

HTTP latencies are observed as requests finish; everything else is read from the hub when
Prometheus scrapes (a collector), so counting costs the hot paths nothing. Each app has its own
registry: several hubs in one process (tests) never share or clash.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..interfaces.payloads import UnitState
from ..runtime import malloc_usage

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["ApiMetrics"]

# The ``*_created`` series double the output and no dashboard of ours uses them.
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _process_memory() -> Iterator[Metric]:
    # What an RSS that rises is made of: Python objects, and glibc's heap in use or free.
    blocks = GaugeMetricFamily(
        "nabat_python_allocated_blocks", "Memory blocks Python's allocator has handed out"
    )
    blocks.add_metric([], sys.getallocatedblocks())
    yield blocks
    usage = malloc_usage()
    if usage is not None:
        heap = GaugeMetricFamily(
            "nabat_process_malloc_bytes",
            "glibc heap of this process: in use, or free (resident, or already given back to the"
            " OS by malloc_trim)",
            labels=["state"],
        )
        heap.add_metric(["in_use"], usage[0])
        heap.add_metric(["free"], usage[1])
        yield heap


class _HubCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.lag: dict[str, int] = {}
        """Events behind the journal's end per durable subscription, refreshed per scrape."""

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        appended = CounterMetricFamily(
            "nabat_events_appended", "Events written to the journal by this process"
        )
        appended.add_metric([], hub.journal.appended)
        yield appended
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # collected outside the event loop's thread: nothing to count
            pass
        else:
            gauge = GaugeMetricFamily(
                "nabat_asyncio_tasks", "Asyncio tasks not yet done in this process's event loop"
            )
            gauge.add_metric([], tasks)
            yield gauge
        yield from _process_memory()
        if hub.bus is not None:
            published = CounterMetricFamily(
                "nabat_bus_published", "Events published on this process's bus"
            )
            published.add_metric([], hub.bus.published)
            yield published
            labels = ["subscriber"]
            depth = GaugeMetricFamily("nabat_bus_queue_depth", "Events queued", labels=labels)
            size = GaugeMetricFamily("nabat_bus_queue_size", "Queue capacity", labels=labels)
            out = CounterMetricFamily(
                "nabat_bus_delivered", "Events handled by a listener", labels=labels
            )
            dropped = CounterMetricFamily(
                "nabat_bus_dropped", "Events dropped on overflow", labels=labels
            )
            errors = CounterMetricFamily(
                "nabat_bus_listener_errors", "Listener errors and timeouts", labels=labels
            )
            for stats in hub.bus.stats():
                depth.add_metric([stats.name], stats.depth)
                size.add_metric([stats.name], stats.queue_size)
                out.add_metric([stats.name], stats.delivered)
                dropped.add_metric([stats.name], stats.dropped)
                errors.add_metric([stats.name], stats.errors + stats.timeouts)
            yield from (depth, size, out, dropped, errors)
        labels = ["subscription"]
        delivered = CounterMetricFamily(
            "nabat_delivery_delivered", "Events delivered durably", labels=labels
        )
        failed = CounterMetricFamily(
            "nabat_delivery_failed_attempts", "Failed delivery attempts", labels=labels
        )
        dead = CounterMetricFamily("nabat_delivery_dead", "Events dead-lettered", labels=labels)
        lease = GaugeMetricFamily(
            "nabat_delivery_lease", "1 if this process delivers the subscription", labels=labels
        )
        for sub_id, dispatcher in hub.delivery.dispatchers.items():
            stats = dispatcher.stats
            delivered.add_metric([sub_id], stats.delivered)
            failed.add_metric([sub_id], stats.failed_attempts)
            dead.add_metric([sub_id], stats.dead)
            lease.add_metric([sub_id], 1 if stats.holding_lease else 0)
        yield from (delivered, failed, dead, lease)
        lag = GaugeMetricFamily(
            "nabat_delivery_lag_events",
            "Journal events after the subscription's cursor",
            labels=labels,
        )
        for sub_id, behind in self.lag.items():
            lag.add_metric([sub_id], behind)
        yield lag
        units = GaugeMetricFamily(
            "nabat_unit_state",
            "1 for the state each plugin and configured instance is in (inventory cameras: "
            "see nabat_units and nabat_cameras)",
            labels=["kind", "name", "state"],
        )
        counts: dict[tuple[str, str], int] = {}
        quiet = hub.supervisor.quiet
        for status in hub.supervisor.units.values():
            key = (status.kind.value, status.state.value)
            counts[key] = counts.get(key, 0) + 1
            if status.name in quiet:
                continue  # thousands of cameras × 7 states would swamp Prometheus
            for state in UnitState:
                units.add_metric(
                    [status.kind.value, status.name, state.value],
                    1 if status.state is state else 0,
                )
        yield units
        totals = GaugeMetricFamily(
            "nabat_units", "Plugins and instances per state", labels=["kind", "state"]
        )
        for (kind, state), count in sorted(counts.items()):
            totals.add_metric([kind, state], count)
        yield totals
        cameras = GaugeMetricFamily(
            "nabat_cameras",
            "Cameras per reported health state (unknown: never probed)",
            labels=["municipality", "state"],
        )
        per_state: dict[tuple[str, str], int] = {}
        for rt in hub.units.cameras():
            current = hub.camera_states.get(rt.id)
            key = (rt.entry.municipality or "", current.state.value if current else "unknown")
            per_state[key] = per_state.get(key, 0) + 1
        for (municipality, state), count in sorted(per_state.items()):
            cameras.add_metric([municipality, state], count)
        yield cameras
        labels = ["task"]
        total = GaugeMetricFamily("nabat_progress_total", "Steps of the latest run", labels=labels)
        done = GaugeMetricFamily("nabat_progress_done", "Steps finished", labels=labels)
        seconds = GaugeMetricFamily(
            "nabat_progress_seconds", "Elapsed (running) or duration (finished)", labels=labels
        )
        running = GaugeMetricFamily(
            "nabat_progress_running", "1 while the latest run is unfinished", labels=labels
        )
        for name, run in sorted(hub.runs.items()):
            total.add_metric([name], run.total)
            done.add_metric([name], run.done)
            seconds.add_metric([name], round(run.seconds, 3))
            running.add_metric([name], 0 if run.finished is not None or not run.total else 1)
        yield from (total, done, seconds, running)
        yield from _video(hub)
        yield from _recording(hub)
        yield from _federation(hub)


def _federation(hub: Hub) -> Iterator[Metric]:
    """The up-path and the following side, when the hub is federated."""
    up, follower = hub.uplink, hub.follower
    connected = GaugeMetricFamily(
        "nabat_federation_connected", "NATS connection up (1) or not (0)", labels=["direction"]
    )
    if up is not None:
        connected.add_metric(["up"], 1 if up.connection.connected else 0)
        published = CounterMetricFamily(
            "nabat_federation_published", "Events acknowledged by the site's JetStream stream"
        )
        published.add_metric([], up.published)
        yield published
    if follower is not None:
        connected.add_metric(["follow"], 1 if follower.connection.connected else 0)
        for name, text, value in (
            ("nabat_federation_received", "Messages read from followed sites", follower.received),
            ("nabat_federation_stored", "Followed events new to the journal", follower.stored),
            ("nabat_federation_rejected", "Messages refused (see the log)", follower.rejected),
        ):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], value)
            yield counter
    if follower is not None:
        reachable = GaugeMetricFamily(
            "nabat_federation_site_reachable",
            "A followed site answered its last check (1) or is cut off (0)",
            labels=["site"],
        )
        for site, up_now in sorted(follower.reachable.items()):
            reachable.add_metric([site], 1 if up_now else 0)
        yield reachable
    if up is not None or follower is not None:
        yield connected


def _recording(hub: Hub) -> Iterator[Metric]:
    recorder = hub.recorder
    cameras = GaugeMetricFamily(
        "nabat_recording_cameras", "Cameras the recorder holds, by state", labels=["state"]
    )
    states: dict[str, int] = {}
    for cam in [*recorder.cameras.values(), *recorder.events.values()]:
        states[cam.state] = states.get(cam.state, 0) + 1
    for state, count in sorted(states.items()):
        cameras.add_metric([state], count)
    yield cameras
    used = GaugeMetricFamily(
        "nabat_recording_storage_bytes", "Indexed footage on each storage path", labels=["path"]
    )
    quota = GaugeMetricFamily(
        "nabat_recording_storage_quota_bytes", "Each storage path's quota", labels=["path"]
    )
    failed = GaugeMetricFamily(
        "nabat_recording_storage_failed", "1 while writing to the path has failed", labels=["path"]
    )
    for storage in recorder.storages:
        used.add_metric([storage.name], storage.used)
        quota.add_metric([storage.name], storage.quota)
        failed.add_metric([storage.name], 0 if storage.failed is None else 1)
    yield from (used, quota, failed)
    segments = CounterMetricFamily("nabat_recording_segments", "Segments written by this process")
    segments.add_metric(
        [], sum(c.segments for c in [*recorder.cameras.values(), *recorder.events.values()])
    )
    yield segments


def _video(hub: Hub) -> Iterator[Metric]:
    video = hub.video
    gauges = (
        (
            "nabat_video_upstreams",
            "Cameras streamed now (one RTSP session each)",
            len(video.upstreams),
        ),
        (
            "nabat_video_upstream_sessions",
            "Upstreams running, closing ones included",
            video.connected(),
        ),
        ("nabat_video_viewers", "Live-video viewers connected", video.viewers()),
        (
            "nabat_video_workers",
            "Video worker processes running (the upstreams' processes)",
            len(video.host.pids()),
        ),
    )
    for name, text, value in gauges:
        gauge = GaugeMetricFamily(name, text)
        gauge.add_metric([], value)
        yield gauge
    counters = (
        ("nabat_video_upstreams_opened", "Upstreams opened (first viewers)", video.opened),
        ("nabat_video_bytes_in", "fMP4 bytes produced by upstreams", video.bytes_in),
        ("nabat_video_bytes_sent", "fMP4 bytes sent to viewers", video.bytes_sent),
        ("nabat_video_reconnects", "Upstreams stalled and reconnected", video.reconnects),
        ("nabat_video_fragments_dropped", "Fragments skipped for slow viewers", video.dropped),
        (
            "nabat_video_worker_restarts",
            "Upstreams opened again because their video worker process died",
            video.worker_restarts,
        ),
    )
    for name, text, value in counters:
        counter = CounterMetricFamily(name, text)
        counter.add_metric([], value)
        yield counter
    refused = CounterMetricFamily(
        "nabat_video_refused", "Viewers refused by a [video] limit", labels=["limit"]
    )
    for limit, count in sorted(video.refused.items()):
        refused.add_metric([limit], count)
    yield refused


class ApiMetrics:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "nabat_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nabat_http_request_duration_seconds",
            "Time from request to the end of the response",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.ingested = Counter(
            "nabat_api_events_ingested",
            "Events accepted over the API (new and duplicate)",
            ["outcome"],
            registry=self.registry,
        )
        self.ingested_new = self.ingested.labels("new")
        self.ingested_duplicate = self.ingested.labels("duplicate")
        self.webhook_rejected = Counter(
            "nabat_api_webhook_rejected",
            "Inbound webhooks refused for a bad or stale signature",
            ["plugin"],
            registry=self.registry,
        )
        self.streamed = Counter(
            "nabat_api_events_streamed",
            "Events sent to live-stream clients",
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.hub_collector = _HubCollector(hub)
        self.registry.register(self.hub_collector)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # labels() takes a lock and builds a key on every call: keep the children instead.
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            if len(self._children) > 10_000:  # bounded: paths of 404s are not routes
                self._children.clear()
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    async def render(self) -> bytes:
        """The exposition text, with delivery lag read from the journal first."""
        try:
            last = await self.hub.journal.last_seq()
            states = await self.hub.journal.subscriptions()
        except Exception:
            self.hub_collector.lag = {}  # the journal's trouble shows on /ready
        else:
            self.hub_collector.lag = {s.spec.id: max(0, last - s.cursor) for s in states}
        return generate_latest(self.registry)
