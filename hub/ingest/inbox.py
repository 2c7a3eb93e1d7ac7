"""A bounded two-lane inbox between the MQTT receivers and the committer.

The urgent lane holds alarms and births/deaths (DESIGN.md: the ``alarm`` topic has priority); the routine lane
holds data, health and replies, one queue per gateway taken in turn, so a gateway replaying a week of backlog
does not make another gateway's readings wait behind it here (in the broker's queue for the hub's routine
session they still arrive in the order they were published). Each lane is bounded on its own, in messages and
in payload bytes (a message may carry up to 256 KiB, so a bound in messages alone is not a memory bound): when
a lane is full, ``put`` waits and that lane's connection stops taking messages (``hub.ingest.intake``) —
routine back-pressure never holds an alarm back.
"""

import asyncio
import sys
import time
from collections import deque
from dataclasses import dataclass

from protocol import Rejection

__all__ = ["Inbox", "Received"]


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    received_ms: int
    refused: Rejection | None = None
    """Already refused by the receiver (``hub.ingest.limits``): the committer only dead-letters it."""


def _gateway(topic: str) -> str:
    """The gateway level of ``anju/v1/{community}/{gateway}/…`` (the topic is not validated yet: any text)."""
    parts = topic.split("/", 4)
    return parts[3] if len(parts) > 4 else ""


class Inbox:
    def __init__(self, *, capacity: int, capacity_bytes: int = 64 * 1024 * 1024) -> None:
        """``capacity`` messages and ``capacity_bytes`` payload bytes per lane; a lane always takes one message."""
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if capacity_bytes < 1:
            raise ValueError(f"capacity_bytes must be >= 1, got {capacity_bytes}")
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self._urgent: deque[Received] = deque()
        self._urgent_bytes = 0
        self._routine: dict[str, deque[Received]] = {}
        self._turns: deque[str] = deque()
        """Gateways with routine messages waiting, in the order they take their next turn."""
        self._routine_count = 0
        self._routine_bytes = 0
        self._waiting = {True: 0, False: 0}
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._urgent) + self._routine_count

    @property
    def bytes(self) -> int:
        """Payload bytes held in both lanes."""
        return self._urgent_bytes + self._routine_bytes

    @property
    def gateways(self) -> int:
        """Gateways with routine messages waiting."""
        return len(self._turns)

    def waiting(self, *, urgent: bool) -> int:
        """Producers waiting for room in that lane right now (a receiver held back: back-pressure)."""
        return self._waiting[urgent]

    def has_room(self, item: Received, *, urgent: bool) -> bool:
        count, size = (len(self._urgent), self._urgent_bytes) if urgent else (self._routine_count, self._routine_bytes)
        return count == 0 or (count < self.capacity and size + len(item.payload) <= self.capacity_bytes)

    async def put(self, item: Received, *, urgent: bool) -> float:
        """Add ``item`` once its lane has room; return the seconds it waited for that (0.0 when it did not)."""
        waited_s = 0.0
        async with self._changed:
            if not self.has_room(item, urgent=urgent):
                start = time.monotonic()
                self._waiting[urgent] += 1
                try:
                    await self._changed.wait_for(lambda: self.has_room(item, urgent=urgent))
                finally:
                    self._waiting[urgent] -= 1
                waited_s = time.monotonic() - start
            if urgent:
                self._urgent.append(item)
                self._urgent_bytes += len(item.payload)
            else:
                gateway = _gateway(item.topic)
                lane = self._routine.get(gateway)
                if lane is None:
                    lane = self._routine[gateway] = deque()
                    self._turns.append(gateway)
                lane.append(item)
                self._routine_count += 1
                self._routine_bytes += len(item.payload)
            self._changed.notify_all()
        return waited_s

    async def take(self, *, limit: int, limit_bytes: int | None = None) -> list[Received]:
        """Wait for at least one message, then return up to ``limit`` of them and ``limit_bytes`` payload bytes
        (always at least one, however large).

        Urgent messages come alone: a round that holds an alarm is not made longer by routine messages. Routine
        messages come one per gateway in turn (round-robin), so each gateway with messages waiting gets its share.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        async with self._changed:
            await self._changed.wait_for(lambda: len(self) > 0)
            items: list[Received] = []
            room = limit_bytes if limit_bytes is not None else sys.maxsize
            if self._urgent:
                urgent = self._urgent
                while urgent and len(items) < limit and (not items or len(urgent[0].payload) <= room):
                    item = urgent.popleft()
                    room -= len(item.payload)
                    self._urgent_bytes -= len(item.payload)
                    items.append(item)
            else:
                turns = self._turns
                while turns and len(items) < limit:
                    lane = self._routine[turns[0]]
                    if items and len(lane[0].payload) > room:
                        break
                    gateway = turns.popleft()
                    item = lane.popleft()
                    room -= len(item.payload)
                    self._routine_bytes -= len(item.payload)
                    items.append(item)
                    if lane:
                        turns.append(gateway)
                    else:
                        del self._routine[gateway]
                self._routine_count -= len(items)
            self._changed.notify_all()
            return items
