"""Where camera streams are opened and decoded: worker processes, away from the event loop.

Probing and snapshotting block in FFmpeg (network reads, decoding). FFmpeg releases the GIL
while it waits and decodes, but PyAV takes it back for every packet, every frame and every
interrupt poll; with dozens of probe threads inside the hub's process that costs the event
loop its latency (measured: bus publish p99 from 2 ms idle to 50-160 ms during a sweep,
bench/README.md). So by default the work runs in a **worker process** with a pool of threads
of its own (``[plugins.watch.settings] worker_processes``, default 1; ``0`` keeps the threads in
the hub's process). The hub's side only sends a small request down a pipe and gets the
(picklable) result back on a reader thread.

A worker that dies (a crash in FFmpeg) fails the calls it had in flight with a
``TransientError`` and is started again for the next call: one bad stream cannot take the hub
down.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import itertools
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from ..interfaces.errors import TransientError
from ..logs import get_logger

__all__ = ["in_camera_worker", "set_camera_workers"]

T = TypeVar("T")
log = get_logger("nabat.cameras")


# -- the worker process ----------------------------------------------------------------------
_CHILD = "import sys; from nabat.cameras.workers import _child; _child(sys.argv[1], sys.argv[2])"


def _child(fd: str, threads: str) -> None:  # pragma: no cover - runs in the worker process
    _serve(Connection(int(fd)), int(threads))


def _serve(conn: Connection, threads: int) -> None:  # pragma: no cover - runs in the child
    """The worker's main loop: run each request in a thread, answer on the same pipe."""
    lock = threading.Lock()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="camera-io")

    def answer(job: int, fut: Future[Any]) -> None:
        try:
            message: tuple[Any, ...] = (job, True, fut.result())
        except BaseException as exc:  # the caller gets the exception itself
            message = (job, False, exc)
        with lock:
            try:
                conn.send(message)
            except Exception as exc:  # an exception that does not pickle
                conn.send((job, False, TransientError(f"{type(exc).__name__}: {exc}")))

    while True:
        try:
            job, fn, args, kwargs = conn.recv()
        except (EOFError, OSError):
            break  # the hub is gone
        pool.submit(fn, *args, **kwargs).add_done_callback(functools.partial(answer, job))
    pool.shutdown(wait=False, cancel_futures=True)


class _Worker:
    def __init__(self, threads: int) -> None:
        # A fresh interpreter (not fork: the hub runs threads; not multiprocessing's spawn:
        # it would re-import the hub's __main__) connected by a socket pair.
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(theirs.fileno()), str(threads)],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self.pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self.lock = threading.Lock()
        self.alive = True
        self.reader = threading.Thread(target=self._read, name="camera-worker-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                job, ok, value = self.conn.recv()
            except Exception:  # EOF, or the connection closed under us by close()
                break
            with self.lock:
                entry = self.pending.pop(job, None)
            if entry is not None:
                _deliver(*entry, ok, value)
        self.alive = False
        with self.lock:
            orphans, self.pending = list(self.pending.values()), {}
        code = self.process.poll()
        if orphans:
            log.warning("camera_worker.died", exitcode=code, calls_lost=len(orphans))
        for loop, future in orphans:
            error = TransientError(f"the camera worker process stopped (exit code {code})")
            _deliver(loop, future, False, error)

    def submit(self, job: int, fn: Callable[..., Any], args: Any, kwargs: Any) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self.lock:
            self.pending[job] = (loop, future)
            try:
                self.conn.send((job, fn, args, kwargs))
            except Exception:
                self.pending.pop(job, None)
                raise
        return future

    def close(self) -> None:
        self.alive = False
        try:
            self.conn.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _deliver(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], ok: bool, value: Any
) -> None:
    """Hand a result to the caller's loop (from the reader thread)."""
    try:
        loop.call_soon_threadsafe(_settle, future, ok, value)
    except RuntimeError:  # that loop is closed: its caller is long gone
        pass


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return  # the caller gave up (timeout, cancellation)
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _Pool:
    def __init__(self) -> None:
        self.processes = 1
        self.threads = 32
        self.workers: list[_Worker] = []
        self.executor: ThreadPoolExecutor | None = None
        self.jobs = itertools.count(1)
        self.lock = threading.Lock()

    def configure(self, threads: int, processes: int) -> None:
        if threads < 1 or processes < 0:
            raise ValueError("at least one camera worker thread; processes ≥ 0")
        if (threads, processes) == (self.threads, self.processes):
            return
        self.close()
        self.threads, self.processes = threads, processes

    def _worker(self, job: int) -> _Worker:
        with self.lock:
            if not self.workers:
                per_process = max(1, -(-self.threads // self.processes))
                self.workers = [_Worker(per_process) for _ in range(self.processes)]
                log.info(
                    "camera_worker.started",
                    processes=self.processes,
                    threads=per_process,
                    pids=[w.process.pid for w in self.workers],
                )
            index = job % len(self.workers)
            worker = self.workers[index]
            if not worker.alive:  # died: a fresh one for this and later calls
                worker.close()
                worker = self.workers[index] = _Worker(worker_threads(self))
            return worker

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.processes == 0:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="camera-io")
            call = functools.partial(fn, *args, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(self.executor, call)
        job = next(self.jobs)
        return await self._worker(job).submit(job, fn, args, kwargs)

    def close(self) -> None:
        with self.lock:
            workers, self.workers = self.workers, []
            executor, self.executor = self.executor, None
        for worker in workers:
            worker.close()
        if executor is not None:
            executor.shutdown(wait=False)


def worker_threads(pool: _Pool) -> int:
    return max(1, -(-pool.threads // max(1, pool.processes)))


_pool = _Pool()
atexit.register(_pool.close)


def set_camera_workers(count: int, processes: int = 1) -> None:
    """``count`` streams opened at once, in ``processes`` worker processes (0: threads in
    this process). Replaces running workers when the sizes change."""
    _pool.configure(count, processes)


async def in_camera_worker(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a camera worker. ``fn`` must be a module-level function and
    its arguments and result picklable (they cross to the worker process)."""
    return await _pool.run(fn, *args, **kwargs)
