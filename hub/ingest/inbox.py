"""A bounded two-lane inbox between the MQTT receiver and the committer.

Alarms jump the queue (DESIGN.md: the ``alarm`` topic has priority). The bound is in messages: when the
store falls behind, ``put`` waits, the receiver stops reading, and the broker's in-flight window throttles
the gateways — memory stays bounded instead of buffering without limit.
"""

import asyncio
from collections import deque
from dataclasses import dataclass

__all__ = ["Inbox", "Received"]


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    received_ms: int


class Inbox:
    def __init__(self, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._urgent: deque[Received] = deque()
        self._routine: deque[Received] = deque()
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._urgent) + len(self._routine)

    async def put(self, item: Received, *, urgent: bool) -> None:
        async with self._changed:
            # Urgent messages are never held back by routine backlog (they are few and bounded by gateways).
            if not urgent:
                await self._changed.wait_for(lambda: len(self) < self.capacity)
            (self._urgent if urgent else self._routine).append(item)
            self._changed.notify_all()

    async def take(self, *, limit: int) -> list[Received]:
        """Wait for at least one message, then return up to ``limit``, urgent ones first."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self) > 0)
            items: list[Received] = []
            for lane in (self._urgent, self._routine):
                while lane and len(items) < limit:
                    items.append(lane.popleft())
            self._changed.notify_all()
            return items
