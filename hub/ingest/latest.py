"""Each sensor's newest committed reading, kept in memory for the live stream (``hub.live``).

Per registry row (``SensorInfo.index``): device time (Unix ms), value (in the unit of the sensor's kind) and the
*version* — the number of the commit round that last moved it. The live stream sends, each tick, the sensors whose
version is past what it sent before: one vectorised comparison over every sensor, however many readings came in
between (a sensor read ten times a second is sent once a tick, with its newest value).

Readings flagged CLOCK_SKEW never become the latest (as in the stores' ``latest``): a reading dated next year would
otherwise hide every real one after it.
"""

import numpy as np
import numpy.typing as npt

from hub.store.base import ReadingFlag

__all__ = ["LatestValues"]

_NEVER = -(2**63)


class LatestValues:
    def __init__(self, sensors: int) -> None:
        self.time_ms = np.full(sensors, _NEVER, np.int64)
        self.value = np.full(sensors, np.nan)
        self.version = np.zeros(sensors, np.int64)
        self.round = 0
        """The version of the newest change (0: nothing yet)."""

    def observe(
        self,
        rows: npt.NDArray[np.intp],
        times_ms: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
        flags: npt.NDArray[np.uint8],
    ) -> None:
        """One committed round: registry rows, device times, values and flags of its readings (any order)."""
        keep = (flags & ReadingFlag.CLOCK_SKEW) == 0
        rows, times, values = rows[keep], times_ms[keep], values[keep]
        if rows.size == 0:
            return
        order = np.lexsort((times, rows))
        rows, times, values = rows[order], times[order], values[order]
        last = np.flatnonzero(np.append(rows[1:] != rows[:-1], True))  # the newest reading of each row
        rows, times, values = rows[last], times[last], values[last]
        newer = times > self.time_ms[rows]
        if not newer.any():
            return
        self.round += 1
        changed = rows[newer]
        self.time_ms[changed] = times[newer]
        self.value[changed] = values[newer]
        self.version[changed] = self.round

    def changed_since(self, version: int, among: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.intp]:
        """Rows whose newest reading came after ``version`` (optionally only rows where ``among`` is True)."""
        changed = self.version > version
        if among is not None:
            changed &= among
        return np.flatnonzero(changed)
