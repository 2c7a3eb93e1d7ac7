"""Local alarms: the set point a sensor trips at, and the hook that drives a relay or buzzer when it does.

The set points derive from ``protocol.kinds`` (the same table the hub's rules use), so a gateway that lost its
uplink alarms at the same level the hub would. The hook runs ``alarm_command`` with the reading in its
environment (``ANJU_SENSOR``, ``ANJU_KIND``, ``ANJU_VALUE``, ``ANJU_UNIT``, ``ANJU_SET_POINT``).
"""

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass

from edge.config import SensorConfig
from protocol.kinds import KINDS

__all__ = ["ALARM_COMMAND_TIMEOUT_S", "AlarmHook", "AlarmLevel", "alarm_level"]

_log = logging.getLogger("edge.agent")  # the alarm lines have always been the agent's
ALARM_COMMAND_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class AlarmLevel:
    """A sensor's local alarm: tripped at ``value`` (>= when ``above``), cleared back past ``clear``."""

    value: float
    clear: float
    above: bool

    def crossed(self, reading: float) -> bool:
        return reading >= self.value if self.above else reading <= self.value

    def cleared(self, reading: float) -> bool:
        return reading < self.clear if self.above else reading > self.clear


def alarm_level(sensor: SensorConfig) -> AlarmLevel | None:
    """The sensor's override ``alarm_above`` or its kind's local alarm set point (same hysteresis gap)."""
    point = KINDS[sensor.kind].local_alarm
    if sensor.alarm_above is not None:
        gap = abs(point.value - point.clear) if point is not None else 0.0
        return AlarmLevel(sensor.alarm_above, sensor.alarm_above - gap, True)
    if point is None:
        return None
    return AlarmLevel(point.value, point.clear, point.above)


class AlarmHook:
    """Runs ``alarm_command`` (the relay / buzzer) once per trip in the background, bounded in time."""

    def __init__(self, argv: tuple[str, ...]) -> None:
        self._argv = argv
        self._processes: set[asyncio.Task[None]] = set()

    def trip(self, sensor: SensorConfig, value: float, unit: str, set_point: float) -> None:
        if not self._argv:
            return
        env = {
            **os.environ,
            "ANJU_SENSOR": sensor.id,
            "ANJU_KIND": sensor.kind,
            "ANJU_VALUE": str(value),
            "ANJU_UNIT": unit,
            "ANJU_SET_POINT": str(set_point),
        }
        task = asyncio.create_task(self._alarm_process(env), name=f"edge-alarm-{sensor.id}")
        self._processes.add(task)
        task.add_done_callback(self._processes.discard)

    async def wait(self) -> None:
        """Let running alarm commands finish (each is bounded by ``ALARM_COMMAND_TIMEOUT_S``)."""
        for task in list(self._processes):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _alarm_process(self, env: dict[str, str]) -> None:
        argv = self._argv
        try:
            process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, env=env)
        except OSError as exc:
            _log.error("alarm command %s could not start: %s", argv[0], exc)
            return
        try:
            code = await asyncio.wait_for(process.wait(), ALARM_COMMAND_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            _log.error("alarm command %s killed after %.0f s", argv[0], ALARM_COMMAND_TIMEOUT_S)
            return
        if code != 0:
            _log.error("alarm command %s exited with %d", argv[0], code)
