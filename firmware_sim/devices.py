"""Device models: one simulated detector of a known kind, producing quantised samples like the real one.

A detector's reading is ``baseline + noise + excursion``, clamped to the kind's physical range
(:mod:`protocol.kinds`) and quantised to the kind's register resolution (:data:`protocol.registers.
KIND_EXPONENTS`). The value a detector reports is always ``from_raw(raw, exponent)``, so the value written
to the truth file is bit-for-bit what a gateway decodes from the registers.

Noise is an AR(1) process (slow wander plus jitter, as real catalytic and photoelectric cells show) drawn
from a numpy Generator seeded by the scenario seed and the sensor id, so a run is reproducible and two
sensors never share a noise stream.
"""

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from protocol.kinds import SensorKind
from protocol.registers import KIND_CODES, KIND_EXPONENTS, RING_CAPACITY, Header, Status, from_raw, to_raw

__all__ = ["DEFAULT_BASELINES", "Detector", "DeviceSample", "detector_seed"]

DEFAULT_BASELINES: dict[str, tuple[float, float]] = {
    "gas": (0.5, 0.1),
    "smoke": (0.01, 0.002),
    "temperature": (22.0, 0.15),
    "water-depth": (0.0, 0.002),
}
"""Per kind: (baseline, noise standard deviation) in the kind's wire unit — a clean kitchen reads ~0.5 %LEL
±0.2, clean corridor air ~0.01 dB/m, a flat ~22 °C, a dry basement 0 m with millimetre jitter [D]."""

_NOISE_PHI = 0.8
"""AR(1) coefficient per sample: neighbouring samples are correlated, as in real cells [D]."""


def detector_seed(scenario_seed: int, sensor_id: str) -> np.random.SeedSequence:
    """The seed of one detector's noise stream: stable across processes (no ``hash()``), unique per sensor."""
    digest = hashlib.sha256(sensor_id.encode()).digest()
    return np.random.SeedSequence([scenario_seed & 0xFFFF_FFFF_FFFF_FFFF, int.from_bytes(digest[:8], "big")])


@dataclass(frozen=True, slots=True)
class DeviceSample:
    """One sample as the device stores it: ``seq`` is the device's sample counter, ``time_ms`` its clock
    (Unix ms), ``raw`` the register value and ``value`` exactly ``from_raw(raw, exponent)`` in ``unit``."""

    seq: int
    time_ms: int
    raw: int
    value: float
    unit: str
    status: int
    alarm_entered: bool
    """True on the sample at which the device passed its local alarm set point (status became ALARM)."""
    alarm_cleared: bool
    """True on the sample at which the value came back past the set point's clear level."""


class Detector:
    """A simulated detector of one kind. Not thread-safe; one task drives it."""

    def __init__(
        self,
        *,
        sensor_id: str,
        kind: SensorKind,
        scenario_seed: int,
        baseline: float | None = None,
        noise_sd: float | None = None,
    ) -> None:
        default_baseline, default_sd = DEFAULT_BASELINES[kind.name]
        self.sensor_id = sensor_id
        self.kind = kind
        self.baseline = default_baseline if baseline is None else baseline
        self.noise_sd = default_sd if noise_sd is None else noise_sd
        if not kind.minimum <= self.baseline <= kind.maximum:
            raise ValueError(f"baseline {self.baseline} outside {kind.name} range {kind.minimum}..{kind.maximum}")
        if not (math.isfinite(self.noise_sd) and self.noise_sd >= 0):
            raise ValueError(f"noise_sd must be finite and >= 0, got {self.noise_sd}")
        self.exponent = KIND_EXPONENTS[kind.name]
        self._rng = np.random.default_rng(detector_seed(scenario_seed, sensor_id))
        self.battery_pct = int(self._rng.integers(80, 101))
        self._signal_mean_dbm = float(self._rng.uniform(-85.0, -60.0))
        self.signal_dbm = round(self._signal_mean_dbm)
        self.status = Status.NORMAL
        self.counter = 0
        self._noise = float(self._rng.normal(0.0, self.noise_sd)) if self.noise_sd > 0 else 0.0

    def header(self) -> Header:
        """The device's header registers as they stand now."""
        return Header(
            kind_code=KIND_CODES[self.kind.name],
            status=self.status,
            battery_pct=self.battery_pct,
            signal_dbm=self.signal_dbm,
            exponent=self.exponent,
            capacity=RING_CAPACITY,
            counter=self.counter,
        )

    def sample(self, *, time_ms: int, excursion: float = 0.0) -> DeviceSample:
        """Produce the next sample at device clock ``time_ms`` (Unix ms).

        ``excursion`` is what an incident adds to the baseline, in the kind's unit. The status follows the
        kind's local alarm set point with its hysteresis (GB/T 45839 codes: 1 normal, 2 alarm).
        """
        innovation = float(self._rng.normal(0.0, 1.0))
        self._noise = _NOISE_PHI * self._noise + math.sqrt(1 - _NOISE_PHI**2) * self.noise_sd * innovation
        self.signal_dbm = round(self._signal_mean_dbm + float(self._rng.normal(0.0, 1.5)))
        physical = min(max(self.baseline + self._noise + excursion, self.kind.minimum), self.kind.maximum)
        raw = to_raw(physical, self.exponent)
        value = from_raw(raw, self.exponent)
        entered = cleared = False
        alarm = self.kind.local_alarm
        if alarm is not None:
            if self.status == Status.NORMAL and alarm.crossed(value):
                self.status, entered = Status.ALARM, True
            elif self.status == Status.ALARM and alarm.cleared(value):
                self.status, cleared = Status.NORMAL, True
        self.counter += 1
        return DeviceSample(
            seq=self.counter,
            time_ms=time_ms,
            raw=raw,
            value=value,
            unit=self.kind.unit,
            status=self.status,
            alarm_entered=entered,
            alarm_cleared=cleared,
        )
