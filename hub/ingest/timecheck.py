"""The hub's check of its gateways' clocks: ``cmd/time`` on each birth and every ``interval_s`` after it.

DESIGN.md's timeliness (≤ 30 s device → platform, p99 ≤ 1 s to the notification) is measured on device time: the
readings carry the gateway's timestamps, so a gateway whose clock drifted makes every figure about it wrong. The hub
asks each online gateway for its skew when its birth arrives (a changed ``state`` online: first seen, new session,
back after a death) and again every ``interval_s``; a gateway that went offline is skipped and left out of the
schedule until its next birth. Skipping matters beyond saving a message: the gateways keep persistent MQTT
sessions, so a QoS 1 command sent while one is away would be delivered when it comes back, and its ``hub_time`` by
then is stale, which would read as a clock that is off by the whole outage.

``cmd/time`` carries only ``{"hub_time": <unix seconds>}`` (the edge refuses other keys); the gateway answers on
``reply/time`` with its clock (``time``) and ``skew_s`` = its clock minus ``hub_time``. So ``time - skew_s`` gives
back the ``hub_time`` of the request, and that is how an answer is matched to a check the hub sent. Only matched
answers count: an answer to a hand-published ``cmd/time`` (with any ``hub_time`` at all) is logged and left out.

The gauge ``anju_gateway_clock_skew_seconds`` is this module's: the reply's ``skew_s`` of the latest matched answer.
The gateway repeats the same figure as ``clock_skew_s`` in its next health report, which stays in the stored report
and the API but is not a second source of the gauge. The figure is biased by the command's transit (the true skew
lies between ``skew_s - round trip`` and ``skew_s``), so an answer that took longer than ``CLOCK_SKEW_WARN_S`` is
not judged: it could not tell a good clock from a bad one.

The loop is one task under the ingest's TaskGroup for the broker connection; it publishes one command at a time (so
at most one of the client's in-flight slots is its, and hub-acks never wait behind a burst of checks) and sleeps
until the next check is due or a birth wakes it.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import aiomqtt
import orjson

from hub.ingest.registry import Registry
from hub.metrics import Metrics
from protocol.telemetry import Reply
from protocol.topics import Channel, topic

__all__ = ["CLOCK_SKEW_WARN_S", "SkewSeen", "TimeChecks"]

log = logging.getLogger("anju.hub.timecheck")

CLOCK_SKEW_WARN_S = 2.0
"""As the edge's ``edge.commands.CLOCK_SKEW_WARN_S`` (the hub may not import the edge): above this the device times
of a gateway's readings are visibly off."""
MAX_PENDING = 8
"""Unanswered checks remembered per gateway; an edge that never answers cannot grow the hub's memory."""
MATCH_TOLERANCE_S = 1e-3
"""``time - skew_s`` recomputes ``hub_time`` to within float rounding (~1e-7 s near 2026); 1 ms is far above that and
far below the spacing of two checks."""


@dataclass(frozen=True, slots=True)
class SkewSeen:
    skew_s: float
    """Gateway clock minus hub clock, as the gateway measured it."""
    round_trip_s: float
    """From sending ``cmd/time`` to receiving the answer (hub clock): the bound on the figure's error."""
    received_ms: int


class TimeChecks:
    """When each online gateway is due for a clock check, the checks awaiting an answer, and the skews measured."""

    def __init__(self, *, registry: Registry, metrics: Metrics, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"time check interval must be > 0 s, got {interval_s!r}")
        self.interval_s = interval_s
        self._registry = registry
        self._metrics = metrics
        self._due: dict[str, float] = {}
        """Gateway -> monotonic time of its next check; only gateways seen online since their last death."""
        self._pending: dict[str, deque[float]] = {}
        """Gateway -> ``hub_time`` of the checks sent and not answered yet, oldest first."""
        self._wake = asyncio.Event()
        self.skew: dict[str, SkewSeen] = {}
        metrics.gauge_family(
            "anju_gateway_clock_skew_seconds",
            "Gateway clock minus hub clock, from the gateway's answer to the hub's latest cmd/time.",
            self._samples,
        )

    def born(self, gateway: str) -> None:
        """The gateway's birth arrived: check its clock now (the loop wakes up)."""
        self._due[gateway] = time.monotonic()  # never equal to a due time the loop holds (see run)
        self._wake.set()

    async def run(self, client: aiomqtt.Client) -> None:
        """Send the checks that are due, for as long as the connection lasts (cancelled with it)."""
        while True:
            self._wake.clear()  # before the scan: a birth during a publish below sets it again and is not lost
            now = time.monotonic()
            for gateway, due_at in sorted(self._due.items()):
                if due_at > now:
                    continue
                status = self._registry.gateways.get(gateway)
                if status is None or not status.online:
                    del self._due[gateway]  # its next birth puts it back
                    continue
                await self._send(client, gateway)
                if self._due.get(gateway) == due_at:  # not re-born (due now) while the command went out
                    self._due[gateway] = time.monotonic() + self.interval_s
            timeout = max(0.0, min(self._due.values()) - time.monotonic()) if self._due else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _send(self, client: aiomqtt.Client, gateway: str) -> None:
        hub_time = time.time()
        # Remembered before the publish: the answer may be received before this task runs again.
        self._pending.setdefault(gateway, deque(maxlen=MAX_PENDING)).append(hub_time)
        name = topic(self._registry.community, gateway, Channel.CMD, "time")
        await client.publish(name, orjson.dumps({"hub_time": hub_time}), qos=1, retain=False)
        self._metrics.commands_sent.inc(command="time")
        log.debug("gateway %s: cmd/time sent (hub_time %.3f)", gateway, hub_time)

    def record_reply(self, gateway: str, reply: Reply, received_ms: int) -> None:
        """Take the skew of an answer on ``reply/time`` if it answers a check the hub sent; warn above the limit."""
        if not reply.ok or reply.skew_s is None:
            return  # refused or without a figure: GatewayTelemetry has logged it
        asked = reply.time_s - reply.skew_s
        pending = self._pending.get(gateway, deque())
        hub_time = next((sent for sent in pending if abs(sent - asked) <= MATCH_TOLERANCE_S), None)
        if hub_time is None:
            log.info(
                "gateway %s answered a cmd/time the hub did not send (hub_time %.3f): skew %+.3f s not taken",
                gateway,
                asked,
                reply.skew_s,
            )
            return
        pending.remove(hub_time)
        round_trip_s = max(0.0, received_ms / 1000 - hub_time)
        if round_trip_s > CLOCK_SKEW_WARN_S:
            log.info(
                "gateway %s answered cmd/time after %.1f s: skew %+.3f s is uncertain by as much, not taken",
                gateway,
                round_trip_s,
                reply.skew_s,
            )
            return
        self.skew[gateway] = SkewSeen(reply.skew_s, round_trip_s, received_ms)
        if abs(reply.skew_s) > CLOCK_SKEW_WARN_S:
            log.warning(
                "gateway %s clock is %+.3f s off the hub's (limit %.0f s): its readings' device times are off as much",
                gateway,
                reply.skew_s,
                CLOCK_SKEW_WARN_S,
            )
        else:
            log.debug("gateway %s clock skew %+.3f s (round trip %.3f s)", gateway, reply.skew_s, round_trip_s)

    def _samples(self) -> list[tuple[Mapping[str, str], float]]:
        community = self._registry.community
        return [
            ({"community": community, "gateway": gateway}, seen.skew_s) for gateway, seen in sorted(self.skew.items())
        ]
