"""Live video: cameras restreamed to viewers as fragmented MP4 (``docs/video.md``).

On a camera's first viewer, :class:`LiveVideo` opens **one** RTSP session (TCP) to the
camera's live stream and remuxes it with PyAV — ``codec copy``, never a decode — into
fragmented MP4 (:mod:`nabat.video.remux`); every further viewer of that camera shares that
upstream and starts at once from the last GOP kept in memory. The upstream closes
``[video] idle_close`` seconds after the last viewer leaves.

Where the remux runs: in video worker processes (:mod:`nabat.video.workers`), a thread per
upstream there, never in the hub's process or on its event loop: the hub gets each worker's
fMP4 on one reader thread, which keeps what a new viewer starts from, feeds the recordings
(a :class:`Tap` each) and posts a watched camera's fragments to the loop.
"""

from .service import LimitReached, LiveVideo, Ring, Tap, Viewer

__all__ = ["LimitReached", "LiveVideo", "Ring", "Tap", "Viewer"]
