"""What the recording tests share (helpers: ``_quick.py``).

The recorder's first look at a camera usually finds its instance still starting, and it
waits ``RETRY_MIN_S`` (2 s) before looking again; a stream that ended is retried after as
long. 0.2 s here, for every in-process hub: the tests examine segments, not the backoff.
"""

from __future__ import annotations

import pytest
from nabat.recording import recorder as recorder_module

from ._quick import RETRY_MIN_S


@pytest.fixture(autouse=True)
def _quick_recorder_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_module, "RETRY_MIN_S", RETRY_MIN_S)
