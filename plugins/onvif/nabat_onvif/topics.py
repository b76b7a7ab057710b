"""ONVIF event topics as short Nabat names: ``camera.event.<name>``.

Cameras name the same thing differently (``tns1:VideoSource/MotionAlarm`` on one,
``tns1:RuleEngine/CellMotionDetector/Motion`` on another); operators and rules want
``motion``. Known topics map to a common name; any other becomes its last path segment in
snake case (``tns1:Device/HardwareFailure/StorageFailure`` → ``storage_failure``), and the full
topic is kept in the event's ``source["topic"]``.
"""

from __future__ import annotations

import re

__all__ = ["short_name"]

_KNOWN = {
    "videosource/motionalarm": "motion",
    "ruleengine/cellmotiondetector/motion": "motion",
    "ruleengine/motionregiondetector/motion": "motion",
    "ruleengine/tamperdetector/tamper": "tamper",
    "videosource/globalscenechange/imagingservice": "tamper",
    "videosource/globalscenechange/analyticsservice": "tamper",
    "videosource/imagetoodark/imagingservice": "tamper",
    "videosource/imagetoobright/imagingservice": "tamper",
    "videosource/imagetooblurry/imagingservice": "tamper",
    "videosource/signalloss": "video_loss",
    "device/trigger/digitalinput": "digital_input",
    "ruleengine/linedetector/crossed": "line_crossed",
    "ruleengine/fielddetector/objectsinside": "intrusion",
    "audioanalytics/audio/detectedsound": "sound",
}


def _snake(text: str) -> str:
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    text = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return text or "unknown"


def short_name(topic: str) -> str:
    """``tns1:VideoSource/MotionAlarm`` → ``motion``; unknown topics → their last segment."""
    path = "/".join(part.split(":", 1)[-1] for part in topic.strip().split("/"))
    known = _KNOWN.get(path.lower())
    if known:
        return known
    return _snake(path.rsplit("/", 1)[-1])
