"""Recording: the cameras' footage as MP4 segment files, indexed in the journal (docs/recording.md).

:class:`~nabat.recording.recorder.Recorder` records what ``[[recording.policy]]`` selects, as
a system viewer of the live restreamer (one RTSP session per camera however it is used);
:mod:`~nabat.recording.segments` writes files a crash cannot break;
:mod:`~nabat.recording.index` keeps each segment's record with a hash chain;
:mod:`~nabat.recording.retention` removes the oldest footage by age and quota.
"""

from .index import Hold, Segment, SegmentIndex
from .recorder import Recorder

__all__ = ["Hold", "Recorder", "Segment", "SegmentIndex"]
