"""Device models: one simulated detector of a known kind, producing quantised samples like the real one.

A detector's reading is ``baseline + rhythm + noise + excursion``, clamped to the kind's physical range
(:mod:`protocol.kinds`) and quantised to the kind's register resolution (:data:`protocol.registers.
KIND_EXPONENTS`). The value a detector reports is always ``from_raw(raw, exponent)``, so the value written
to the truth file is bit-for-bit what a gateway decodes from the registers.

Noise is an AR(1) process (slow wander plus jitter, as real catalytic and photoelectric cells show) drawn
from a numpy Generator seeded by the scenario seed and the sensor id, so a run is reproducible and two
sensors never share a noise stream. The rhythm is normal life over the local day and week
(:mod:`firmware_sim.rhythms`), a function of the true simulation clock with random streams of its own.
"""

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from firmware_sim.rhythms import LOCAL_OFFSET_MS, Rhythm, rhythm_for
from protocol.kinds import SensorKind
from protocol.registers import KIND_CODES, KIND_EXPONENTS, RING_CAPACITY, Header, Status, from_raw, to_raw

__all__ = ["DEFAULT_BASELINES", "Detector", "DeviceSample", "detector_seed"]

DEFAULT_BASELINES: dict[str, tuple[float, float]] = {
    "gas": (0.5, 0.1),
    "smoke": (0.01, 0.002),
    "temperature": (22.0, 0.15),
    "water-depth": (0.0, 0.002),
    "co": (2.0, 0.6),
    "residual-current": (0.12, 0.01),
    "cable-temperature": (32.0, 0.3),
    "pressure": (280_000.0, 3_000.0),
    "manhole-tilt": (0.5, 0.2),
    "manhole-open": (0.0, 0.0),
    "structural-tilt": (0.0004, 0.00002),
    "lift-entrapment": (0.0, 0.0),
    "lift-ebike": (0.0, 0.0),
    "water-meter": (321.0, 0.0),
    "help-button": (0.0, 0.0),
    "door-contact": (0.0, 0.0),
}
"""Per kind: (baseline, noise standard deviation) in the kind's wire unit [D]: a clean kitchen reads ~0.5 %LEL
±0.2, clean corridor air ~0.01 dB/m, a flat ~22 °C, a dry basement 0 m with millimetre jitter, indoor CO a few
ppm, a healthy circuit ~120 mA of leakage (GB 50116 says 100-200 mA), a loaded cable ~32 °C, a fire main
~0.28 MPa, a seated manhole cover under 1°, a sound building ~0.0004 tilt. Two-state detectors rest at 0. The
water meter's baseline is its register at the start (m³); it then counts up with the household's daily rhythm.
Smooth rhythms (firmware_sim/rhythms.py) move around these baselines; cooking bumps add to them."""

WATER_USE_M3_PER_DAY = 0.1
"""An elder living alone uses ~100 L a day [D]; Shanghai and Shenzhen visit below 10 L in 12-24 h (SENSORS.md)."""

_WATER_USE_BY_HOUR = (
    0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 1.0, 3.0, 3.0, 1.5, 1.0, 1.5,
    2.0, 1.0, 0.6, 0.6, 0.8, 1.5, 2.5, 2.5, 1.5, 0.8, 0.3, 0.1,
)  # fmt: skip
"""Relative use per local hour (UTC+8): washing in the morning, cooking at noon and in the evening [D]."""

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
        rhythm: bool = True,
    ) -> None:
        """``rhythm=False`` keeps the reading flat around ``baseline`` (e.g. a roof-tank gauge: static head,
        no demand rhythm); otherwise the kind's rhythm of normal life, if it has one, is added."""
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
        self.fault_flags = 0
        self.low_battery_pct: int | None = None
        self._stuck_raw: int | None = None
        self.cumulative = kind.name == "water-meter"
        self._total = self.baseline
        self._last_time_ms: int | None = None
        self.rhythm: Rhythm | None = (
            rhythm_for(kind.name, scenario_seed=scenario_seed, sensor_id=sensor_id) if rhythm else None
        )

    def header(self) -> Header:
        """The device's header registers as they stand now (a fault shows as status 3 unless in alarm)."""
        status = self.status
        if self.fault_flags and status == Status.NORMAL:
            status = Status.FAULT
        return Header(
            kind_code=KIND_CODES[self.kind.name],
            status=status,
            battery_pct=self.low_battery_pct if self.low_battery_pct is not None else self.battery_pct,
            signal_dbm=self.signal_dbm,
            exponent=self.exponent,
            capacity=RING_CAPACITY,
            counter=self.counter,
            faults=self.fault_flags,
        )

    def _water_used_m3(self, time_ms: int) -> float:
        """Water drawn since the previous sample: the daily profile at this local hour, in random bursts."""
        if self._last_time_ms is None or time_ms <= self._last_time_ms:
            return 0.0
        hour = (time_ms + LOCAL_OFFSET_MS) // 3_600_000 % 24
        mean_share = sum(_WATER_USE_BY_HOUR) / 24
        rate_m3_per_s = WATER_USE_M3_PER_DAY / 86_400 * _WATER_USE_BY_HOUR[hour] / mean_share
        burst = float(self._rng.lognormal(mean=-0.5, sigma=1.0))  # mean 1: taps run in bursts, not a trickle
        return rate_m3_per_s * (time_ms - self._last_time_ms) / 1000 * burst

    def sample(
        self,
        *,
        time_ms: int,
        excursion: float = 0.0,
        stuck: bool = False,
        usage_factor: float = 1.0,
        rhythm_scale: float = 1.0,
        skew_ms: int = 0,
    ) -> DeviceSample:
        """Produce the next sample at simulation clock ``time_ms`` (Unix ms).

        ``excursion`` is what incidents and faults add to the baseline, in the kind's unit; ``stuck`` freezes
        the register at its value when the fault began; ``usage_factor`` scales a cumulative meter's use
        (0 = nothing drawn); ``rhythm_scale`` scales the rhythm of normal life (an incident that has taken
        the sensor over sets it to 0: a dry main has no demand rhythm); ``skew_ms`` is how far the device's
        own clock is off: the sample is stamped ``time_ms + skew_ms``, the physics follows ``time_ms``. The
        status follows the kind's local alarm set point with its hysteresis (GB/T 45839 codes: 1 normal,
        2 alarm).
        """
        innovation = float(self._rng.normal(0.0, 1.0))
        self._noise = _NOISE_PHI * self._noise + math.sqrt(1 - _NOISE_PHI**2) * self.noise_sd * innovation
        self.signal_dbm = round(self._signal_mean_dbm + float(self._rng.normal(0.0, 1.5)))
        if self.cumulative:
            self._total += self._water_used_m3(time_ms) * usage_factor
            level = self._total
        else:
            level = self.baseline + self._noise
            if self.rhythm is not None and rhythm_scale != 0.0:
                level += rhythm_scale * self.rhythm.at(time_ms)
        physical = min(max(level + excursion, self.kind.minimum), self.kind.maximum)
        raw = to_raw(physical, self.exponent)
        if stuck:
            raw = self._stuck_raw if self._stuck_raw is not None else raw
            self._stuck_raw = raw
        else:
            self._stuck_raw = None
        value = from_raw(raw, self.exponent)
        entered = cleared = False
        alarm = self.kind.local_alarm
        if alarm is not None:
            if self.status == Status.NORMAL and alarm.crossed(value):
                self.status, entered = Status.ALARM, True
            elif self.status == Status.ALARM and alarm.cleared(value):
                self.status, cleared = Status.NORMAL, True
        self.counter += 1
        self._last_time_ms = time_ms
        return DeviceSample(
            seq=self.counter,
            time_ms=time_ms + skew_ms,
            raw=raw,
            value=value,
            unit=self.kind.unit,
            status=self.status,
            alarm_entered=entered,
            alarm_cleared=cleared,
        )
