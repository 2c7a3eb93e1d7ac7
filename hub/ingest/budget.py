"""One gateway's budget at the hub: token buckets for readings, bytes and messages a second, and a largest message.

The defaults are sized from what an honest edge agent sends at its fastest, with room to spare, so that a
gateway catching up after an outage is never held back (edge/agent.py, edge/config.py defaults):

- Draining a backlog it publishes at most ``MAX_BATCHES_PER_TICK`` = 20 batches every ``publish_interval_s`` =
  1 s, each of at most ``max_batch`` = 500 readings: **10,000 readings/s, 20 messages/s**.
- When no hub-ack advanced for ``ack_timeout_s`` = 10 s it republishes every unacknowledged batch at once: at
  worst the last 10 s of full-speed output, **200 messages / 100,000 readings in one instant**, on top of the
  drain. Averaged over that window the offered load doubles: 20,000 readings/s, 40 messages/s.
- A SenML record is at most ~128 bytes (a 64-character sensor id, a unit, a 17-digit value, a time offset;
  48-57 bytes measured with the fleet's ids), so readings bound bytes at 128 a reading.
- Health (every ``health_interval_s``, 60 s by default) and command replies are a few small messages more.
- A hub that crashed: until its Will fires (1.5 x its 30 s keepalive) the broker queues what the gateways produce
  for it and delivers it at once when the hub is back: at 1,000 readings/s (500 detectors polled every 0.5 s),
  45,000 readings in ~90 messages. Within the burst below. (A clean stop says offline at once: edges wait.)

So the defaults are 1.5 times the doubled rate and 1.5 times the whole republish burst plus a tick of drain:
readings 30,000/s with a burst of 165,000; bytes 128 times that (3.84 MB/s, a 21.1 MB burst); messages 100/s
(1.5 x 40 rounded up for health and replies) with a burst of 500 (1.5 x 220, rounded up); one message at most
the protocol's 256 KiB. At the defaults one gateway may take ~10 % of the hub's measured capacity (~300,000
readings/s, BENCHMARKS.md), and what it takes within budget is shared round-robin with every other gateway in
the inbox (``hub.ingest.inbox``). tests/hub/test_ingest_limits.py checks this against the edge's own defaults.

Alarms have a budget of their own, in messages: the edge drains at most 20 alarm batches a tick too, and republishes
them like data, so 1.5 x the doubled rate is 60 alarm messages/s with the same burst of 500. An honest gateway never
reaches it (a fire that trips every detector at once is one tick's batches); a gateway that floods the alarm topic,
which the hub serves before all data, is deferred beyond it like any flood, so it cannot starve the others' data.
Alarms are judged only against this budget, never against the data's: no amount of data holds an alarm back.

A gateway configured beyond the edge defaults (a larger ``max_batch`` or a faster ``publish_interval_s``)
needs its own ``limits`` in the deployment file.
"""

import math
from dataclasses import dataclass

from protocol import MAX_PAYLOAD_BYTES

__all__ = ["BYTES_PER_READING", "DEFAULT_BUDGET", "Budget", "TokenBucket"]

BYTES_PER_READING = 128
"""Upper bound of one SenML record on the wire (bytes); the defaults' bytes follow from their readings."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """What one gateway may send the hub on its routine lane (``data``, ``health``, ``reply``), and how many
    ``alarm`` messages.

    Rates are per second, bursts in the same unit (readings, bytes, messages); ``max_message_bytes`` is the
    largest single payload. Raises ValueError naming the field and the value; a burst must hold the largest
    message it pays for, or such a message could never pass.
    """

    readings_per_s: float = 30_000.0
    readings_burst: float = 165_000.0
    bytes_per_s: float = 30_000.0 * BYTES_PER_READING
    bytes_burst: float = 165_000.0 * BYTES_PER_READING
    messages_per_s: float = 100.0
    messages_burst: float = 500.0
    max_message_bytes: int = MAX_PAYLOAD_BYTES
    alarm_messages_per_s: float = 60.0
    alarm_messages_burst: float = 500.0

    def __post_init__(self) -> None:
        positive = ("readings_per_s", "readings_burst", "bytes_per_s", "bytes_burst", "messages_per_s")
        for name in (*positive, "alarm_messages_per_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("messages_burst", "alarm_messages_burst"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 1):
                raise ValueError(f"{name} must be >= 1 (one message), got {value!r}")
        if not 1024 <= self.max_message_bytes <= MAX_PAYLOAD_BYTES:
            raise ValueError(f"max_message_bytes must be 1024..{MAX_PAYLOAD_BYTES}, got {self.max_message_bytes!r}")
        if self.bytes_burst < self.max_message_bytes:
            raise ValueError(
                f"bytes_burst ({self.bytes_burst:g}) must be >= max_message_bytes ({self.max_message_bytes}): "
                "a message within the size limit must fit the burst, or it could never pass"
            )


DEFAULT_BUDGET = Budget()


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; a cost is paid whole or not at all (the bucket never goes below 0).

    Times are the caller's monotonic seconds, so a test drives the clock itself.
    """

    __slots__ = ("burst", "rate", "tokens", "updated_s")

    def __init__(self, *, rate: float, burst: float, now_s: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated_s = now_s

    def refill(self, now_s: float) -> float:
        """Add what ``now_s - updated_s`` earned (a clock that went back earns nothing); return the tokens."""
        elapsed = now_s - self.updated_s
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated_s = now_s
        return self.tokens
