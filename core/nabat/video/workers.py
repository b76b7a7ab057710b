"""Where upstreams run: video worker processes, so the hub's event loop never waits for them.

A remuxing upstream is a Python loop per packet (25 a second per camera) around FFmpeg's C
code. A thread per upstream inside the hub's process was cheap in CPU but not in latency:
with 32-64 of them the event loop waited for the GIL and for a CPU behind them (measured in
``bench/live_video.py`` and ``bench/recording.py``: loop lag p99 24-62 ms). So upstreams
run in ``[video] workers`` processes (default: one per CPU, at most 4; started as cameras
are opened, a new one only once each has a few upstreams), each a thread per upstream, and
the hub's side is one reader thread per worker: it gets each process's fMP4 (init segments,
fragment batches — a few messages a second per camera, never a packet), status and end, and
calls the upstream's :class:`~nabat.video.remux.Sink` with them, exactly as an upstream
thread in the hub's process would. ``workers = 0`` keeps the threads in the hub's process
(a debugging aid; not for production).

Messages hub → worker are pickled tuples (``open``, ``stop``); worker → hub are bytes, a kind
letter first: ``F`` fragments (slot, key, cut time, data — ``time.monotonic`` is the same
clock in every process), ``S`` a new stream, ``T`` status, ``X`` a final failure, ``D`` the
upstream ended, ``L`` a log record (the worker logs through the hub's own handlers, so its
lines go where the hub's go, in the same format, with its ``worker`` pid). The camera's URL,
credentials included, crosses the pipe, never argv.

A worker that dies (FFmpeg crashing on a camera's stream) stalls only its own upstreams:
their viewers are told, and each is opened again in a (new) worker after
``reconnect_initial``; viewers stay connected and get a new stream.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ..logs import get_logger, record_fields
from .remux import Failure, Sink, UpstreamSettings, run_upstream

__all__ = ["InProcess", "UpstreamHost", "VideoWorkers", "default_workers"]

log = get_logger("nabat.video")

SPREAD = 4
"""Upstreams a worker takes before another worker is started (up to ``[video] workers``):
a small site runs one process, a large one spreads over every CPU."""

_FRAGMENT = struct.Struct("!I?d")


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class UpstreamHost:
    """Runs upstreams somewhere; :meth:`start` returns a function that stops one."""

    restarts = 0
    """Upstreams opened again because the process they ran in died."""

    def start(
        self,
        name: str,
        url: str,
        settings: UpstreamSettings,
        sink: Sink,
        done: Callable[[], None],
    ) -> Callable[[], None]:
        raise NotImplementedError

    def pids(self) -> list[int]:
        """Processes the upstreams run in besides the hub's (for metrics and benchmarks)."""
        return []

    def close(self) -> None:
        """Stop everything at once (the hub is stopping; upstreams were told first)."""


class InProcess(UpstreamHost):
    """``[video] workers = 0``: a thread per upstream in the hub's own process."""

    def start(
        self,
        name: str,
        url: str,
        settings: UpstreamSettings,
        sink: Sink,
        done: Callable[[], None],
    ) -> Callable[[], None]:
        stop = threading.Event()
        thread = threading.Thread(
            target=_run, args=(name, url, settings, sink, stop, done), name=f"video:{name}"
        )
        thread.daemon = True
        thread.start()
        return stop.set


def _run(
    name: str,
    url: str,
    settings: UpstreamSettings,
    sink: Sink,
    stop: threading.Event,
    done: Callable[[], None],
) -> None:
    try:
        counters = run_upstream(url, settings, sink, stop, name)
        log.info("video.upstream_closed", camera=name, **counters)
    except Exception as exc:  # a bug, not a camera fault: say so, end the viewers
        log.error("video.upstream_crashed", camera=name, exc_info=exc)
        sink.failed(Failure("internal", "the restreamer failed; see the hub's log", final=True))
    finally:
        done()


# -- the worker process ----------------------------------------------------------------------
_CHILD = "import sys; from nabat.video.workers import _child; _child(*sys.argv[1:])"


def _child(fd: str, level: str) -> None:  # pragma: no cover - the worker process
    _serve(Connection(int(fd)), level)


class _ToHub(logging.Handler):
    """The worker's log records, sent to the hub (masked here: secrets never cross)."""

    def __init__(self, send: Callable[[bytes], None]) -> None:
        super().__init__()
        self.send = send
        self.pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {
                k: v if isinstance(v, int | float | str | bool) else str(v)
                for k, v in record_fields(record).items()
            }
            fields["worker"] = self.pid
            if record.exc_info:
                fields["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            message = (record.name, record.levelno, record.getMessage(), record.created, fields)
            self.send(b"L" + pickle.dumps(message))
        except Exception:
            self.handleError(record)


def _serve(conn: Connection, level: str) -> None:  # pragma: no cover - the worker process
    """Run each ``open`` in a thread; stream what it produces back on ``conn``."""
    lock = threading.Lock()
    stops: dict[int, threading.Event] = {}

    def send(data: bytes) -> None:
        with lock:
            with contextlib.suppress(OSError):  # the hub is gone: the reader below ends us
                conn.send_bytes(data)

    root = logging.getLogger()
    root.handlers[:] = [_ToHub(send)]
    root.setLevel(level.upper())
    logging.raiseExceptions = False

    def sink(slot: int) -> Sink:
        def stream(mime: str, init: bytes, epoch: int) -> None:
            send(b"S" + pickle.dumps((slot, mime, init, epoch)))

        def fragment(data: bytes, key: bool, at: float) -> None:
            send(b"F" + _FRAGMENT.pack(slot, key, at) + data)

        def status(state: str, reason: str) -> None:
            send(b"T" + pickle.dumps((slot, state, reason)))

        def failed(failure: Failure) -> None:
            send(b"X" + pickle.dumps((slot, failure.kind, str(failure), failure.final)))

        return Sink(stream=stream, fragment=fragment, status=status, failed=failed)

    def ended(slot: int) -> None:
        stops.pop(slot, None)
        send(b"D" + pickle.dumps(slot))

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break  # the hub is gone
        if message[0] == "open":
            _, slot, name, url, settings = message
            stop = stops[slot] = threading.Event()
            threading.Thread(
                target=_run,
                args=(name, url, settings, sink(slot), stop, lambda slot=slot: ended(slot)),
                name=f"video:{name}",
                daemon=True,
            ).start()
        elif message[0] == "stop":
            event = stops.get(message[1])
            if event is not None:
                event.set()
        elif message[0] == "exit":
            break
    for event in list(stops.values()):
        event.set()
    deadline = time.monotonic() + 2
    for thread in threading.enumerate():
        if thread.name.startswith("video:"):
            thread.join(max(0.0, deadline - time.monotonic()))


@dataclass(eq=False)
class _Hosted:
    name: str
    url: str
    settings: UpstreamSettings
    sink: Sink
    done: Callable[[], None]
    worker: _Worker | None = None
    slot: int = 0
    stopped: bool = False


@dataclass(eq=False)
class _Worker:
    """One worker process and the reader thread that hands its output on."""

    pool: VideoWorkers
    process: subprocess.Popen[bytes] = field(init=False)
    conn: Connection = field(init=False)
    hosted: dict[int, _Hosted] = field(default_factory=dict)
    alive: bool = True

    def __post_init__(self) -> None:
        # A fresh interpreter (not fork: the hub runs threads) connected by a socket pair.
        ours, theirs = socket.socketpair()
        level = logging.getLevelName(logging.getLogger("nabat.video").getEffectiveLevel())
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(theirs.fileno()), str(level).lower()],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self.send_lock = threading.Lock()
        threading.Thread(target=self._read, name="video-worker-reader", daemon=True).start()

    def send(self, message: tuple[Any, ...]) -> bool:
        with self.send_lock:
            try:
                self.conn.send(message)
                return True
            except OSError:
                return False

    def _read(self) -> None:
        conn, hosted = self.conn, self.hosted
        while True:
            try:
                data = conn.recv_bytes()
            except Exception:  # EOF: the process died, or close() closed the connection
                break
            kind = data[:1]
            try:
                if kind == b"F":
                    slot, key, at = _FRAGMENT.unpack_from(data, 1)
                    up = hosted.get(slot)
                    if up is not None:
                        up.sink.fragment(data[1 + _FRAGMENT.size :], key, at)
                    continue
                message = pickle.loads(data[1:])
                if kind == b"L":
                    _log(*message)
                    continue
                if kind == b"D":
                    self.pool._ended(self, message)
                    continue
                up = hosted.get(message[0])
                if up is None:
                    continue
                if kind == b"S":
                    up.sink.stream(*message[1:])
                elif kind == b"T":
                    up.sink.status(*message[1:])
                elif kind == b"X":
                    up.sink.failed(Failure(message[1], message[2], final=message[3]))
            except Exception as exc:  # one upstream's consumer failing: not the others'
                log.error("video.worker_message_failed", kind=kind.decode(), exc_info=exc)
        with contextlib.suppress(OSError):  # here: closing it under a blocked read is unsafe
            conn.close()
        self.pool._died(self)

    def close(self, timeout: float = 3.0) -> None:
        """Ask the process to end (its upstreams stop within ``timeout``), else kill it."""
        self.alive = False
        self.send(("exit",))
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _log(name: str, level: int, message: str, created: float, fields: dict[str, Any]) -> None:
    """A worker's record, handled by the hub's logging as its own."""
    logger = logging.getLogger(name)
    if logger.isEnabledFor(level):
        record = logger.makeRecord(name, level, "(video worker)", 0, message, None, None)
        record.created = created
        record.fields = fields  # type: ignore[attr-defined]
        logger.handle(record)


class VideoWorkers(UpstreamHost):
    """Up to ``processes`` worker processes, started as upstreams need them."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()
        self.slots = 0
        self.closed = False

    def start(
        self,
        name: str,
        url: str,
        settings: UpstreamSettings,
        sink: Sink,
        done: Callable[[], None],
    ) -> Callable[[], None]:
        hosted = _Hosted(name, url, settings, sink, done)
        self._place(hosted)
        return lambda: self._stop(hosted)

    def _place(self, hosted: _Hosted) -> None:
        with self.lock:
            if self.closed or hosted.stopped:
                worker = None
            else:
                worker = self._pick()
                self.slots += 1
                hosted.worker, hosted.slot = worker, self.slots
                worker.hosted[hosted.slot] = hosted
        if worker is None:
            hosted.done()
            return
        message = ("open", hosted.slot, hosted.name, hosted.url, hosted.settings)
        if not worker.send(message):  # died under us: its reader restarts what it hosted
            log.warning("video.worker_send_failed", camera=hosted.name)

    def _pick(self) -> _Worker:
        live = [w for w in self.workers if w.alive]
        least = min(live, key=lambda w: len(w.hosted), default=None)
        if least is None or (len(least.hosted) >= SPREAD and len(live) < self.processes):
            least = _Worker(self)
            self.workers = [*live, least]
            log.info("video.worker_started", pid=least.process.pid, workers=len(self.workers))
        return least

    def _stop(self, hosted: _Hosted) -> None:
        with self.lock:
            hosted.stopped = True
            worker = hosted.worker
        if worker is not None:
            worker.send(("stop", hosted.slot))

    def _ended(self, worker: _Worker, slot: int) -> None:
        with self.lock:
            hosted = worker.hosted.pop(slot, None)
        if hosted is not None:
            hosted.done()

    def _died(self, worker: _Worker) -> None:
        """``worker``'s reader saw its end: open what it hosted again elsewhere."""
        with self.lock:
            worker.alive = False
            orphans, worker.hosted = list(worker.hosted.values()), {}
            closing = self.closed
        if closing:
            for hosted in orphans:
                hosted.done()
            return
        with contextlib.suppress(Exception):  # its socket closed first: reap it for its code
            worker.process.wait(timeout=1)
        code = worker.process.returncode
        log.warning(
            "video.worker_died", pid=worker.process.pid, exitcode=code, upstreams=len(orphans)
        )
        for hosted in orphans:
            if hosted.stopped:
                hosted.done()
                continue
            hosted.sink.status(
                "stalled",
                f"the video worker process stopped (exit code {code}); reopening in "
                f"{hosted.settings.reconnect_initial:g} s",
            )
            self.restarts += 1
            timer = threading.Timer(hosted.settings.reconnect_initial, self._place, (hosted,))
            timer.daemon = True
            timer.start()

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.alive]

    def close(self) -> None:
        with self.lock:
            self.closed = True
            workers, self.workers = self.workers, []
        for worker in workers:
            worker.close()
