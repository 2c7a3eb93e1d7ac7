"""The simulation clock and the run: devices sample on simulated time, servers serve, truth is written.

Simulated time ``t_s`` starts at 0 when the run starts; the device clock is ``start_ms + t_s * 1000`` (Unix
ms), and ``t_s`` advances ``speed`` times faster than the wall clock. Every ``sample_interval_s`` of
simulated time each device produces one sample, for ``t_s`` in ``[0, duration_s)``. After that the servers
keep serving (a gateway drains the last samples) until the ``stop`` event is set or ``exit_after_s``
simulated seconds have passed since the start.

:class:`Simulation` is the deterministic part (same scenario, seed and ``start_ms`` → identical samples);
:func:`run_simulation` puts it on the clock with one Modbus server per gateway and the truth writer.
"""

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.devices import Detector, DeviceSample
from firmware_sim.faults import Fault, FaultType, fault_rng
from firmware_sim.modbus_server import GatewayServer
from firmware_sim.scenario import MAX_DURATION_S, DeviceSpec, Incident, Scenario
from firmware_sim.truth import TruthWriter, fault_record, incident_record, reading_record
from protocol.registers import FAULT_LOW_BATTERY, FAULT_TAMPER, Header, Sample

__all__ = [
    "MAX_SPEED",
    "RunOptions",
    "RunSummary",
    "Simulation",
    "Tick",
    "TickSample",
    "run_simulation",
    "write_truth",
]

log = logging.getLogger(__name__)

MAX_SPEED = 1000.0
"""Faster than this, the event loop rather than the clock would set the pace."""


@dataclass(frozen=True, slots=True)
class TickSample:
    gateway_id: str
    device: DeviceSpec
    sample: DeviceSample
    header: Header
    """The device header right after this sample (counter = sample.seq)."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Everything that happened at one sampling instant ``t_s`` (simulated seconds since the start)."""

    index: int
    t_s: float
    time_ms: int
    samples: tuple[TickSample, ...]
    started: tuple[Incident, ...]
    ended: tuple[Incident, ...]
    faults_started: tuple[Fault, ...] = ()
    faults_ended: tuple[Fault, ...] = ()
    muted: frozenset[tuple[str, int]] = frozenset()
    """(gateway, unit id) of detectors in dropout: silent on the bus, producing nothing."""


class Simulation:
    """The detectors of a scenario and its incident timeline, stepped one sampling instant at a time."""

    def __init__(
        self, scenario: Scenario, *, start_ms: int, seed: int | None = None, duration_s: float | None = None
    ) -> None:
        self.scenario = scenario
        self.start_ms = start_ms
        self.seed = scenario.seed if seed is None else seed
        self.duration_s = scenario.duration_s if duration_s is None else duration_s
        if not 0 <= self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration_s must be 0..{MAX_DURATION_S}, got {self.duration_s}")
        self.interval_s = scenario.sample_interval_s
        self.sample_count = math.ceil(self.duration_s / self.interval_s - 1e-9)
        self.detectors: dict[str, Detector] = {
            spec.sensor_id: Detector(
                sensor_id=spec.sensor_id,
                kind=spec.kind,
                scenario_seed=self.seed,
                baseline=spec.baseline,
                noise_sd=spec.noise_sd,
                rhythm=spec.rhythm,
            )
            for _, spec in scenario.devices()
        }
        self._started: set[str] = set()
        self._ended: set[str] = set()
        self._faults_started: set[str] = set()
        self._faults_ended: set[str] = set()
        self._fault_rngs = {f.name: fault_rng(self.seed, f) for f in scenario.faults}
        self._faults_of: dict[str, list[Fault]] = {}
        for fault in scenario.faults:
            self._faults_of.setdefault(fault.sensor, []).append(fault)
        self._next_index = 0

    def clock_ms(self, t_s: float) -> int:
        """Device clock (Unix ms) at simulated time ``t_s``."""
        return self.start_ms + round(t_s * 1000)

    def tick(self) -> Tick:
        """Produce the next sampling instant's samples. Raises IndexError past ``sample_count``."""
        index = self._next_index
        if index >= self.sample_count:
            raise IndexError(f"sampling ended after {self.sample_count} samples")
        self._next_index += 1
        t_s = index * self.interval_s
        time_ms = self.clock_ms(t_s)
        started = tuple(i for i in self.scenario.incidents if i.name not in self._started and t_s >= i.start_s)
        ended = tuple(i for i in self.scenario.incidents if i.name not in self._ended and t_s > i.end_s)
        self._started.update(i.name for i in started)
        self._ended.update(i.name for i in ended)
        faults = self.scenario.faults
        faults_started = tuple(f for f in faults if f.name not in self._faults_started and f.active(t_s))
        faults_ended = tuple(
            f
            for f in faults
            if f.name in self._faults_started and f.name not in self._faults_ended and not f.active(t_s)
        )
        self._faults_started.update(f.name for f in faults_started)
        self._faults_ended.update(f.name for f in faults_ended)
        samples = []
        muted = set()
        for gateway_id, spec in self.scenario.devices():
            detector = self.detectors[spec.sensor_id]
            active = [f for f in self._faults_of.get(spec.sensor_id, ()) if f.active(t_s)]
            types = {f.type for f in active}
            if FaultType.DROPOUT in types:
                muted.add((gateway_id, spec.unit_id))
                continue
            excursion = sum(
                i.weight(t_s) * (i.ramp_to - detector.baseline)
                for i in self.scenario.incidents
                if spec.sensor_id in i.sensors and i.effect == "offset"
            )
            usage = math.prod(
                1.0 - i.weight(t_s)
                for i in self.scenario.incidents
                if spec.sensor_id in i.sensors and i.effect == "suppress"
            )
            # An incident takes its sensors over: at full weight they read `ramp_to`, with no rhythm on top.
            rhythm_scale = math.prod(
                1.0 - i.weight(t_s)
                for i in self.scenario.incidents
                if spec.sensor_id in i.sensors and i.effect == "offset"
            )
            skew_ms = 0
            for fault in active:
                if fault.type is FaultType.DRIFT:
                    excursion += fault.drift(t_s)
                elif fault.type is FaultType.SPIKES and self._fault_rngs[fault.name].random() < fault.probability:
                    excursion += fault.size
                elif fault.type is FaultType.CLOCK_SKEW:
                    skew_ms += round(fault.skew_s * 1000)
            low_battery = [f.battery_pct for f in active if f.type is FaultType.LOW_BATTERY]
            detector.low_battery_pct = min(low_battery) if low_battery else None
            detector.fault_flags = (FAULT_LOW_BATTERY if low_battery else 0) | (
                FAULT_TAMPER if FaultType.TAMPER in types else 0
            )
            sample = detector.sample(
                time_ms=time_ms,
                skew_ms=skew_ms,
                excursion=excursion,
                stuck=FaultType.STUCK in types,
                usage_factor=usage,
                rhythm_scale=rhythm_scale,
            )
            samples.append(TickSample(gateway_id, spec, sample, detector.header()))
        return Tick(index, t_s, time_ms, tuple(samples), started, ended, faults_started, faults_ended, frozenset(muted))

    def truth_records(self, tick: Tick) -> list[dict[str, Any]]:
        """The truth-file lines of ``tick``: incidents that start now, then every reading."""
        records = [
            incident_record(
                name=i.name,
                sensors=i.sensors,
                start_ms=self.clock_ms(i.start_s),
                end_ms=self.clock_ms(i.end_s),
                grade=i.grade,
            )
            for i in tick.started
        ]
        records.extend(
            fault_record(
                name=f.name,
                sensor=f.sensor,
                fault=f.type.value,
                start_ms=self.clock_ms(f.start_s),
                end_ms=None if f.end_s is None else self.clock_ms(f.end_s),
            )
            for f in tick.faults_started
        )
        records.extend(
            reading_record(
                gateway=s.gateway_id,
                sensor=s.device.sensor_id,
                time_ms=s.sample.time_ms,
                value=s.sample.value,
                unit=s.sample.unit,
            )
            for s in tick.samples
        )
        return records


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """How to run a scenario. Every gateway id is in ``ports`` (its TCP port on ``host``) or in ``serial``
    (the serial device it serves Modbus RTU on, at ``baudrate`` 8N1), not both.

    ``speed`` is simulated seconds per wall second; ``seed`` and ``duration_s`` override the scenario's;
    ``exit_after_s`` (simulated seconds since the start) ends the run, else it ends when ``stop`` is set;
    ``start_ms`` fixes the device clock at t=0 (default: wall clock now) for reproducible truth files.
    """

    ports: Mapping[str, int]
    host: str = "127.0.0.1"
    serial: Mapping[str, str] = field(default_factory=dict)
    baudrate: int = 9600
    truth_path: Path | None = None
    speed: float = 1.0
    seed: int | None = None
    duration_s: float | None = None
    exit_after_s: float | None = None
    start_ms: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and 0 < self.speed <= MAX_SPEED):
            raise ValueError(f"speed must be in (0, {MAX_SPEED}], got {self.speed}")
        if self.exit_after_s is not None and not (math.isfinite(self.exit_after_s) and self.exit_after_s >= 0):
            raise ValueError(f"exit_after_s must be >= 0, got {self.exit_after_s}")


@dataclass(slots=True)
class RunSummary:
    start_ms: int
    ticks: int = 0
    samples: int = 0
    completed: bool = False
    """True when sampling ran to ``duration_s`` (False when stopped earlier)."""
    alarms: list[str] = field(default_factory=list)
    """Sensor ids that passed their local alarm set point, in order."""


async def run_simulation(scenario: Scenario, options: RunOptions, *, stop: asyncio.Event | None = None) -> RunSummary:
    """Serve ``scenario`` on one Modbus TCP server per gateway until ``stop`` or ``exit_after_s``."""
    given = [*options.ports, *options.serial]
    missing = [g.gateway_id for g in scenario.gateways if g.gateway_id not in given]
    unknown = sorted(set(given) - {g.gateway_id for g in scenario.gateways})
    twice = sorted(set(options.ports) & set(options.serial))
    if missing or unknown or twice:
        raise ValueError(
            f"--port or --serial needed once for every gateway: missing {missing}, unknown {unknown}, both {twice}"
        )
    start_ms = options.start_ms if options.start_ms is not None else int(time.time() * 1000)
    sim = Simulation(scenario, start_ms=start_ms, seed=options.seed, duration_s=options.duration_s)
    summary = RunSummary(start_ms=start_ms)
    stop = stop or asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[str, GatewayServer] = {}
        for gateway in scenario.gateways:
            server = GatewayServer(
                gateway_id=gateway.gateway_id,
                host=options.host,
                port=options.ports.get(gateway.gateway_id, 0),
                unit_ids=[d.unit_id for d in gateway.devices],
                serial_port=options.serial.get(gateway.gateway_id),
                baudrate=options.baudrate,
            )
            servers[gateway.gateway_id] = await stack.enter_async_context(server)
            where = (
                f"serial {server.serial_port} (RTU {server.baudrate} 8N1)"
                if server.serial_port
                else f"{options.host}:{server.port}"
            )
            log.info("gateway %s serving %d units on %s", gateway.gateway_id, len(gateway.devices), where)
        for gateway_id, spec in scenario.devices():
            await servers[gateway_id].set_header(spec.unit_id, sim.detectors[spec.sensor_id].header())
        truth = stack.enter_context(TruthWriter(options.truth_path)) if options.truth_path else None
        if truth is not None:
            truth.write([_run_record(sim, options)])
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        async with asyncio.TaskGroup() as tg:
            name = f"anju-sim:{scenario.community}"
            sampler = tg.create_task(_sample(sim, servers, truth, summary, options.speed, t0), name=f"{name}:sampler")
            deadline = None if options.exit_after_s is None else t0 + options.exit_after_s / options.speed
            tg.create_task(_lifetime(stop, deadline, sampler), name=f"{name}:lifetime")
    log.info("simulator stopped after %d samples per device (%d in all)", summary.ticks, summary.samples)
    return summary


def _run_record(sim: Simulation, options: RunOptions) -> dict[str, Any]:
    return {**_run_record_fields(sim), "speed": options.speed}


async def _lifetime(stop: asyncio.Event, deadline: float | None, sampler: asyncio.Task[None]) -> None:
    """Wait for the stop event or the exit deadline (loop time), then end sampling."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(deadline):
            await stop.wait()
    sampler.cancel()


async def _sample(
    sim: Simulation,
    servers: Mapping[str, GatewayServer],
    truth: TruthWriter | None,
    summary: RunSummary,
    speed: float,
    t0: float,
) -> None:
    """Sample every device at each instant of simulated time, update the registers and write the truth."""
    loop = asyncio.get_running_loop()
    for index in range(sim.sample_count):
        delay = t0 + index * sim.interval_s / speed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tick = sim.tick()
        for incident in tick.started:
            log.warning(
                "incident %s started at t=%.1f s on %s (ground truth grade %d, window to t=%.1f s)",
                incident.name,
                tick.t_s,
                ", ".join(incident.sensors),
                incident.grade,
                incident.end_s,
            )
        for incident in tick.ended:
            log.warning("incident %s ended at t=%.1f s", incident.name, incident.end_s)
        for fault in tick.faults_started:
            log.warning("fault %s on %s from t=%.1f s", fault.type.value, fault.sensor, tick.t_s)
        for fault in tick.faults_ended:
            log.warning("fault %s on %s over at t=%.1f s", fault.type.value, fault.sensor, tick.t_s)
        for gateway_id, server in servers.items():
            server.mute({unit for gateway, unit in tick.muted if gateway == gateway_id})
        for s in tick.samples:
            sample = s.sample
            await servers[s.gateway_id].publish(
                s.device.unit_id, Sample(sample.seq, sample.time_ms, sample.raw), s.header
            )
            alarm = s.device.kind.local_alarm
            if sample.alarm_entered and alarm is not None:
                summary.alarms.append(s.device.sensor_id)
                log.warning(
                    "%s/%s passed its %s set point: %s %s >= %s at t=%.1f s (status 2 alarm)",
                    s.gateway_id,
                    s.device.sensor_id,
                    alarm.name,
                    sample.value,
                    sample.unit,
                    alarm.value,
                    tick.t_s,
                )
            elif sample.alarm_cleared and alarm is not None:
                log.info(
                    "%s/%s back below %s %s at t=%.1f s",
                    s.gateway_id,
                    s.device.sensor_id,
                    alarm.clear,
                    sample.unit,
                    tick.t_s,
                )
        if truth is not None:
            truth.write(sim.truth_records(tick))
        summary.ticks += 1
        summary.samples += len(tick.samples)
    summary.completed = True
    log.info("sampling finished at t=%.1f s; still serving", sim.duration_s)


def write_truth(
    scenario: Scenario, path: Path, *, start_ms: int, seed: int | None = None, duration_s: float | None = None
) -> int:
    """Step the whole scenario with no clock and no servers and write its truth file; returns readings written.

    The same :class:`Simulation` as a served run, so the file equals what ``run`` would write for this
    ``start_ms`` and seed — a month of a community in seconds, for backtesting detection.
    """
    sim = Simulation(scenario, start_ms=start_ms, seed=seed, duration_s=duration_s)
    readings = 0
    with TruthWriter(path) as truth:
        truth.write([{**_run_record_fields(sim), "speed": None}])
        for _ in range(sim.sample_count):
            tick = sim.tick()
            truth.write(sim.truth_records(tick))
            readings += len(tick.samples)
    return readings


def _run_record_fields(sim: Simulation) -> dict[str, Any]:
    return {
        "type": "run",
        "community": sim.scenario.community,
        "seed": sim.seed,
        "start_ms": sim.start_ms,
        "sample_interval_s": sim.interval_s,
        "duration_s": sim.duration_s,
    }
