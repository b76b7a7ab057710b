"""A storage path's own thread: what waits for its disk — ``fsync``, finishing a segment
(``fsync``, rename, the directory's ``fsync``), checking that the path is writable.

Fragments are written by the recorded cameras' taps on the upstreams' threads
(:mod:`nabat.recording.tap`): a ``write`` into the page cache costs microseconds and needs no
second thread to wake per fragment. What waits for the device is queued here, so a disk that
hangs — a dying drive retrying, a hard NFS mount whose server went away — hangs this thread
only. :attr:`DiskWriter.stalled` then says so (an operation has run for ``STALL_S``), new
segments go elsewhere and the taps stop writing there long before the kernel's dirty-page
limit could block them; the cameras' live views go on, and so do the other paths.
"""

from __future__ import annotations

import errno
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..logs import get_logger
from .segments import SegmentFile, SegmentWriter

__all__ = ["STALL_S", "DiskWriter"]

log = get_logger("nabat.recording")

STALL_S = 10.0
"""An operation on the disk running this long means the path is stalled."""


class DiskWriter:
    """One storage path's thread. ``on_finished(file)`` and ``on_failed(error)`` are called
    on this thread."""

    def __init__(
        self,
        name: str,
        *,
        on_finished: Callable[[SegmentFile], None],
        on_failed: Callable[[OSError], None],
    ) -> None:
        self.name = name
        self.on_finished, self.on_failed = on_finished, on_failed
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._busy_since: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"recording:{name}", daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Operations queued and not yet done."""
        return self._queue.qsize()

    @property
    def stalled(self) -> float:
        """Seconds the operation under way has waited for the disk, when over ``STALL_S``
        (else 0)."""
        since = self._busy_since
        waited = time.monotonic() - since if since is not None else 0.0
        return waited if waited >= STALL_S else 0.0

    # -- called from any thread -------------------------------------------------------------
    def sync(self, writer: SegmentWriter) -> None:
        self._queue.put((self._sync, writer))

    def finish(self, writer: SegmentWriter, done: Future[None] | None = None) -> None:
        """Close ``writer``'s segment under its final name (then ``on_finished``); ``done``
        is set after."""
        self._queue.put((self._finish, writer, done))

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on this thread (after what is queued): its result, or its exception."""
        done: Future[Any] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self._queue.put((run,))
        return done

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the thread after what is queued; False if it did not end in ``timeout``."""
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, *args = item
            self._busy_since = time.monotonic()
            try:
                fn(*args)
            except Exception as exc:  # a bug: this operation, not the path's thread
                log.error("recording.disk_error", storage=self.name, exc_info=exc)
            finally:
                self._busy_since = None

    def _sync(self, writer: SegmentWriter) -> None:
        try:
            writer.sync()
        except OSError as exc:
            if exc.errno == errno.EBADF or writer.closed:
                return  # a write failed meanwhile and closed it: already reported
            writer.abort()
            self.on_failed(exc)

    def _finish(self, writer: SegmentWriter, done: Future[None] | None) -> None:
        try:
            file = writer.finish()
            if file is not None:
                self.on_finished(file)
        except OSError as exc:
            writer.abort()
            self.on_failed(exc)
        finally:
            if done is not None and not done.done():
                done.set_result(None)
