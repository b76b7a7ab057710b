"""Recording without the waits no test here is about (see ``conftest.py``).

The configuration's floor for ``[recording] segment_seconds`` is 5 s: with the test server's
key frame every 1.5 s, a segment of 6 s of wall time. The recorder rotates the same way for
any value (at the first key fragment that long after the segment began), so in-process hubs
record 3 s segments. Hubs run as ``nabat run`` processes keep what their file says.
"""

from __future__ import annotations

from pathlib import Path

from nabat.config.loader import LoadedConfig
from nabat.testing import load_config_text

SEGMENT_S = 3.0
"""Two key frames of the test server (every 1.5 s): 3 s segments of ~30 frames."""
RETRY_MIN_S = 0.2


def short_segments(
    text: str, directory: Path, *, segment_seconds: float = SEGMENT_S
) -> LoadedConfig:
    """``load_config_text``, then the loaded ``[recording] segment_seconds`` set below the
    configuration's 5 s floor (the text is validated as written; the recorder's tap reads
    the value when it starts)."""
    loaded = load_config_text(text, directory)
    loaded.config.recording.segment_seconds = segment_seconds
    return loaded
