"""A pulse: wake every waiter now, without remembering anything for later waiters.

Live readers (the API's event stream) sleep on the hub's ``appended`` pulse and re-read the
journal when it fires. They also wake on a timeout, so a missed pulse costs latency, never
events: the journal, not the pulse, is what they read.
"""

from __future__ import annotations

import asyncio

__all__ = ["Pulse"]


class Pulse:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.count = 0

    def pulse(self) -> None:
        self.count += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for the next pulse; False if ``timeout`` seconds passed first."""
        event = self._event
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return False
        return True
