"""Per-detector poll schedule: each detector is read at its own period, detectors due together share a round.

A gas detector that drives the local alarm wants a read every half second; a water meter or a hydrant pressure
transmitter that samples once a minute needs a read only every few minutes (its ring holds 15 samples). Every
read is one bus request, and bus requests are most of the edge's CPU, so reading each detector only as often
as it needs is the cheapest thing the edge can do.

Times are ``time.monotonic()`` seconds. A detector is due at ``due[id]``; a round takes every detector due
within ``GROUP_SLACK`` of the shortest period from now, so detectors stay in shared rounds instead of drifting
apart by a few milliseconds each (a 5 s detector rides along with every tenth round of the 0.5 s ones). A round
that ran late does not cause a burst of catch-up rounds: the next read is one period after the previous due
time, or now if that has passed.
"""

from collections.abc import Iterable, Sequence

from edge.config import EdgeConfig, SensorConfig

__all__ = ["GROUP_SLACK", "PollSchedule"]

GROUP_SLACK = 0.1
"""Fraction of the shortest period by which a detector may be read early to join a round."""


class PollSchedule:
    """Which detectors are due when."""

    def __init__(self, config: EdgeConfig, *, now: float) -> None:
        self._sensors = config.sensors
        self._interval = {s.id: config.poll_interval(s) for s in config.sensors}
        self._due = {s.id: now for s in config.sensors}
        self._slack = GROUP_SLACK * min(self._interval.values(), default=1.0)

    def due(self, now: float) -> list[SensorConfig]:
        """The detectors to read in a round starting at ``now``, in configuration order."""
        return [s for s in self._sensors if self._due[s.id] - self._slack <= now]

    def done(self, sensors: Iterable[SensorConfig], now: float) -> None:
        """Record a round over ``sensors`` that finished at ``now``."""
        for sensor in sensors:
            following = self._due[sensor.id] + self._interval[sensor.id]
            self._due[sensor.id] = following if following > now else now

    def next_due(self) -> float:
        """The earliest time at which some detector is due (its slack included)."""
        return min(self._due.values()) - self._slack

    def reads_per_second(self) -> float:
        """Bus requests per second this schedule makes when every round keeps time."""
        return sum(1.0 / interval for interval in self._interval.values())

    @property
    def sensors(self) -> Sequence[SensorConfig]:
        return self._sensors
