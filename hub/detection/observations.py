"""An ingest round's judged readings as columns: what every detector of the hub takes."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hub.ingest.registry import SensorInfo
from protocol import Reading

__all__ = ["Observations"]


@dataclass(frozen=True, slots=True)
class Observations:
    """Readings to judge as columns: reading i of sensor ``infos[i]`` (registry row ``rows[i]``) is ``values[i]`` in
    its kind's unit at ``times_ms[i]`` (Unix ms)."""

    rows: npt.NDArray[np.intp]
    times_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    infos: list[SensorInfo]

    @classmethod
    def empty(cls) -> "Observations":
        return cls(np.empty(0, np.intp), np.empty(0, np.int64), np.empty(0, np.float64), [])

    @classmethod
    def of(cls, readings: Sequence[tuple[Reading, SensorInfo]]) -> "Observations":
        n = len(readings)
        return cls(
            np.fromiter((info.index for _, info in readings), np.intp, n),
            np.fromiter((reading.time_ms for reading, _ in readings), np.int64, n),
            np.fromiter((reading.value for reading, _ in readings), np.float64, n),
            [info for _, info in readings],
        )
