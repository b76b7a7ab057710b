"""Live video: cameras restreamed to viewers as fragmented MP4 (``docs/video.md``).

On a camera's first viewer, :class:`LiveVideo` opens **one** RTSP session (TCP) to the
camera's live stream and remuxes it with PyAV — ``codec copy``, never a decode — into
fragmented MP4 (:mod:`nabat.video.remux`); every further viewer of that camera shares that
upstream and starts at once from the last GOP kept in memory. The upstream closes
``[video] idle_close`` seconds after the last viewer leaves.

Where the remux runs: a thread per upstream in the hub process, not the camera worker
processes and never the event loop. The worker processes (:mod:`nabat.cameras.workers`)
answer one request with one picklable result (a probe, a snapshot); an upstream is a
long-lived stream of fragments, which would cross the process boundary as a copy through a
pipe per fragment and need its own flow control there. Remuxing without decoding spends its
time blocked in FFmpeg's socket reads and in the muxer's C code, where PyAV releases the GIL,
so a thread costs the event loop nothing but one ``call_soon_threadsafe`` per fragment
(a few per second) while a person watches; a recording takes the fragments on the upstream's
own thread (a :class:`Tap`), so a camera only recorded costs the loop nothing per
fragment. The benchmark of issue 16 measures the loop's lag under many streams; should a
thread per upstream ever show in it, the same :func:`~nabat.video.remux.run_upstream` runs
unchanged in a worker process behind a pipe.
"""

from .service import LimitReached, LiveVideo, Ring, Tap, Viewer

__all__ = ["LimitReached", "LiveVideo", "Ring", "Tap", "Viewer"]
