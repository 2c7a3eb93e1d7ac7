"""Simulated samples as columns, for replaying a scenario through the hub's detection without a clock or a bus.

``record`` steps a :class:`firmware_sim.runner.Simulation` (the same physics, faults and truth as ``anju-sim run``)
and keeps, per sampling instant and detector, what a gateway would read: the value, the device's own time stamp
(as an offset from the instant, so a clock-skewed detector keeps its skew), the header registers the sensor-health
layer reads (status, battery, fault flags) and whether the detector answered at all (a dropout does not).

``cached_record`` keeps recordings as ``.npy`` files under a cache directory, keyed by a hash of the scenario, the
start time and the simulator's source code: a month of 91 communities takes ~20 CPU-minutes to simulate, and
reruns of the detection bench only redo detection. The files are memory-mapped when read.

``month_copy`` makes copy ``k`` of a scenario: every gateway, sensor, fault and incident renamed with the prefix
``c{k:03d}-`` and the seed moved by ``k``, so copies are distinct communities' worth of detectors with the same
faults and nuisance on the same timeline.
"""

import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

import firmware_sim
from firmware_sim.runner import Simulation
from firmware_sim.scenario import GatewaySpec, Scenario
from hub.files import replacing

__all__ = [
    "SAMPLE_DTYPE",
    "Recording",
    "cache_key",
    "cached_record",
    "combined",
    "copies_for",
    "ensure_cached",
    "month_copy",
    "record",
    "trimmed",
]

SAMPLE_DTYPE = np.dtype(
    [
        ("value", "<f8"),
        ("offset_ms", "<i4"),
        ("status", "u1"),
        ("battery_pct", "u1"),
        ("faults", "<u2"),
        ("present", "?"),
    ]
)
"""One detector at one sampling instant: the value read (the kind's unit, exactly what the truth file says), the
device's time stamp minus the instant's (clock skew), the header's status, battery % and fault flags right after the
sample, and False when the detector was silent (dropout)."""
FORMAT_VERSION = 1
"""Bump when ``SAMPLE_DTYPE`` or what is recorded changes: older cache files are then simply not found."""


@dataclass(frozen=True, slots=True)
class Recording:
    """``samples[t, j]`` is detector ``sensors[j]`` (behind gateway ``gateways[j]``) at instant ``nominal_ms[t]``
    (Unix ms); its device time is ``nominal_ms[t] + samples[t, j]['offset_ms']``."""

    sensors: tuple[str, ...]
    gateways: tuple[str, ...]
    nominal_ms: npt.NDArray[np.int64]
    samples: npt.NDArray[np.void]


def _columns(scenario: Scenario) -> tuple[tuple[str, ...], tuple[str, ...]]:
    pairs = list(scenario.devices())
    return tuple(spec.sensor_id for _, spec in pairs), tuple(gateway for gateway, _ in pairs)


def record(scenario: Scenario, *, start_ms: int) -> Recording:
    """Step the whole of ``scenario`` from ``start_ms`` (Unix ms at simulated time 0) and keep every sample."""
    sim = Simulation(scenario, start_ms=start_ms)
    sensors, gateways = _columns(scenario)
    column = {sensor: j for j, sensor in enumerate(sensors)}
    nominal = np.empty(sim.sample_count, np.int64)
    samples = np.zeros((sim.sample_count, len(sensors)), SAMPLE_DTYPE)
    taken: list[tuple[int, int, float, int, int, int, int]] = []
    for t in range(sim.sample_count):
        tick = sim.tick()
        nominal[t] = tick.time_ms
        taken.extend(
            (
                t,
                column[s.device.sensor_id],
                s.sample.value,
                s.sample.time_ms - tick.time_ms,
                s.header.status,
                s.header.battery_pct,
                s.header.faults,
            )
            for s in tick.samples
        )
        if len(taken) >= _FLUSH_AT or t == sim.sample_count - 1:
            _scatter(samples, taken)
            taken.clear()
    return Recording(sensors, gateways, nominal, samples)


_FLUSH_AT = 100_000
"""Samples held as Python tuples before they go into the arrays (bounds the memory of recording a month)."""
_TAKEN_DTYPE = np.dtype(
    [
        ("t", "<i8"),
        ("j", "<i8"),
        ("value", "<f8"),
        ("offset_ms", "<i4"),
        ("status", "u1"),
        ("battery_pct", "u1"),
        ("faults", "<u2"),
    ]
)


def _scatter(samples: npt.NDArray[np.void], taken: list[tuple[int, int, float, int, int, int, int]]) -> None:
    flat = np.array(taken, dtype=_TAKEN_DTYPE)
    at = (flat["t"], flat["j"])
    for name in ("value", "offset_ms", "status", "battery_pct", "faults"):
        samples[name][at] = flat[name]
    samples["present"][at] = True


_PHYSICS = (
    "firmware_sim/devices.py",
    "firmware_sim/faults.py",
    "firmware_sim/rhythms.py",
    "firmware_sim/runner.py",
    "firmware_sim/scenario.py",
    "protocol/kinds.py",
    "protocol/registers.py",
)
"""The source a recording depends on: a change to any of them is a new cache key."""


@functools.cache
def _code_version() -> str:
    root = Path(firmware_sim.__file__ or "").resolve().parents[1]
    digest = hashlib.sha256(str(FORMAT_VERSION).encode())
    for name in _PHYSICS:
        digest.update(name.encode())
        digest.update((root / name).read_bytes())
    return digest.hexdigest()


def cache_key(scenario: Scenario, *, start_ms: int) -> str:
    """The file name stem of ``scenario`` recorded from ``start_ms`` with this simulator."""
    text = f"{scenario!r}|{start_ms}|{_code_version()}"
    return f"{scenario.community}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def _paths(scenario: Scenario, start_ms: int, cache_dir: Path) -> tuple[Path, Path]:
    key = cache_key(scenario, start_ms=start_ms)
    return cache_dir / f"{key}.npy", cache_dir / f"{key}-times.npy"


def ensure_cached(scenario: Scenario, *, start_ms: int, cache_dir: Path) -> bool:
    """Record ``scenario`` into the cache unless it is there; True when it was simulated now."""
    samples_path, times_path = _paths(scenario, start_ms, cache_dir)
    if samples_path.exists() and times_path.exists():
        return False
    made = record(scenario, start_ms=start_ms)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for path, array in ((samples_path, made.samples), (times_path, made.nominal_ms)):
        with replacing(path, "wb", durable=False) as f:
            np.save(f, array)
    return True


def cached_record(scenario: Scenario, *, start_ms: int, cache_dir: Path) -> Recording:
    """``record`` through the cache: simulated and saved the first time, memory-mapped from then on."""
    ensure_cached(scenario, start_ms=start_ms, cache_dir=cache_dir)
    samples_path, times_path = _paths(scenario, start_ms, cache_dir)
    sensors, gateways = _columns(scenario)
    samples = np.load(samples_path, mmap_mode="r")
    nominal = np.load(times_path)
    if samples.dtype != SAMPLE_DTYPE or samples.shape != (len(nominal), len(sensors)):
        raise ValueError(f"{samples_path}: unexpected {samples.dtype} {samples.shape}; delete it to re-record")
    return Recording(sensors, gateways, nominal, samples)


def month_copy(base: Scenario, k: int) -> Scenario:
    """Copy ``k`` of ``base``: ids prefixed ``c{k:03d}-`` (gateways, sensors, faults, incidents), seed ``+ k``."""
    prefix = f"c{k:03d}-"
    return replace(
        base,
        seed=base.seed + k,
        gateways=tuple(
            GatewaySpec(prefix + g.gateway_id, tuple(replace(d, sensor_id=prefix + d.sensor_id) for d in g.devices))
            for g in base.gateways
        ),
        faults=tuple(replace(f, sensor=prefix + f.sensor) for f in base.faults),
        incidents=tuple(
            replace(i, name=prefix + i.name, sensors=tuple(prefix + s for s in i.sensors)) for i in base.incidents
        ),
    )


def combined(parts: Sequence[Scenario]) -> Scenario:
    """One scenario holding every gateway, fault and incident of ``parts`` (the first one's timing and seed)."""
    return replace(
        parts[0],
        gateways=tuple(g for part in parts for g in part.gateways),
        faults=tuple(f for part in parts for f in part.faults),
        incidents=tuple(i for part in parts for i in part.incidents),
    )


def trimmed(scenario: Scenario, sensors: int) -> Scenario:
    """The first ``sensors`` detectors of ``scenario`` (file order), with the faults and incidents that concern them."""
    kept: list[GatewaySpec] = []
    room = sensors
    for gateway in scenario.gateways:
        if room <= 0:
            break
        kept.append(GatewaySpec(gateway.gateway_id, gateway.devices[:room]))
        room -= len(kept[-1].devices)
    ids = {d.sensor_id for g in kept for d in g.devices}
    incidents = tuple(
        replace(i, sensors=tuple(s for s in i.sensors if s in ids)) for i in scenario.incidents if set(i.sensors) & ids
    )
    return replace(
        scenario, gateways=tuple(kept), faults=tuple(f for f in scenario.faults if f.sensor in ids), incidents=incidents
    )


def copies_for(base: Scenario, sensors: int) -> int:
    """How many copies of ``base`` hold at least ``sensors`` detectors."""
    return math.ceil(sensors / sum(len(g.devices) for g in base.gateways))
