"""Detector faults: what goes wrong with real detectors in the field, on a timeline like incidents.

Each fault is deterministic under the scenario seed. They exist so detection can be tested against the
failures that cause false alarms or hide real ones (SENSORS.md "sensor health"):

- ``stuck``: the reading freezes at its value when the fault starts (a jammed float, a dead cell).
- ``drift``: the reading walks away from the truth at ``rate_per_h`` (kind unit per hour): ageing cells.
- ``spikes``: each sample, with ``probability``, jumps by ``size`` (kind unit): EMI, a loose contact.
- ``dropout``: the detector stops answering on the bus and stops sampling (hung firmware, cut cable).
- ``low-battery``: the battery register reads ``battery_pct``; status fault, fault flag bit 0.
- ``tamper``: the enclosure was opened or the detector removed; status fault, fault flag bit 1.
- ``clock-skew``: the device clock runs ``skew_s`` seconds off (a gateway or detector RTC never synced).
"""

import enum
import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["Fault", "FaultType", "fault_rng"]


class FaultType(enum.StrEnum):
    STUCK = "stuck"
    DRIFT = "drift"
    SPIKES = "spikes"
    DROPOUT = "dropout"
    LOW_BATTERY = "low-battery"
    TAMPER = "tamper"
    CLOCK_SKEW = "clock-skew"


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault on one sensor from ``start_s`` for ``duration_s`` simulated seconds (None: to the end)."""

    sensor: str
    type: FaultType
    start_s: float
    duration_s: float | None = None
    rate_per_h: float = 0.0
    size: float = 0.0
    probability: float = 0.0
    skew_s: float = 0.0
    battery_pct: int = 5

    @property
    def name(self) -> str:
        return f"{self.type.value}-{self.sensor}-{self.start_s:g}"

    @property
    def end_s(self) -> float | None:
        return None if self.duration_s is None else self.start_s + self.duration_s

    def active(self, t_s: float) -> bool:
        end = self.end_s
        return t_s >= self.start_s and (end is None or t_s < end)

    def drift(self, t_s: float) -> float:
        """Offset a drift adds at ``t_s`` (kind unit), growing from the start; gone when the window ends."""
        return self.rate_per_h * (t_s - self.start_s) / 3600.0 if self.active(t_s) else 0.0


def fault_rng(seed: int, fault: Fault) -> np.random.Generator:
    """A random stream per fault, independent of the detector's noise stream (adding a fault leaves the
    other readings of the run unchanged)."""
    digest = hashlib.sha256(fault.name.encode()).digest()
    return np.random.default_rng(
        np.random.SeedSequence([seed & 0xFFFF_FFFF_FFFF_FFFF, int.from_bytes(digest[:8], "big")])
    )
