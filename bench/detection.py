"""Detection against ground truth and at a district's scale (issue 5's evaluation): incidents, a quiet month, cost.

The detection layers are the ``DetectionLayers`` ``anju-hub serve`` builds (hub/runtime.py ``detection_layers``: the
rules engine with the deployment's overrides, the anomaly watch on the kinds the hub scores, the sensor-health
layer), judged through the same ``observe_round``. Simulated samples
(firmware_sim's ``Simulation``, recorded by bench/recording.py) are fed in time order, one ingest round per
sampling instant, as the ``Observations`` the hub's ingest passes (registry rows, device times, values, sensor
infos; each round sorted by time). The health layer also gets every gateway's health report once a minute (the
edge's default ``health_interval_s``) listing the detectors whose header is worth a look, as the edge lists them.
A decision at time t uses only data up to t.

1. Incidents: every scenario with incidents, from 2026-11-01 00:00 Asia/Shanghai. Per incident: detected (a firing
   risk event on one of its sensors from its start to its end plus ``GRACE_MS``; a corroboration event counts for
   the sensors of its space of the kinds its pattern takes), the *crossing* (the first sample of its sensors in its
   window at or past the kind's alarm set point — protocol/kinds.py, the first set point of grade III or worse, the
   one GB/T 45839 devices alarm at; of grade IV for an incident whose truth is IV; the incident's start for kinds
   without a set point: the water meter), the time from the crossing to the first firing event, to the first at
   alarm grade (III, or IV for a grade IV truth) and to the first at the truth grade, and the worst grade given
   against the truth. The norm each kind is held to is in ``NORMS`` (SENSORS.md).
2. Quiet month: quiet_month.yaml (22 detectors, 30 days at 60 s, faults and nuisance spikes, no incident) copied
   ``copies`` times as one community (distinct ids and seeds, the same faults per copy), judged as one deployment.
   Every firing event is a false one; grade III or worse per 1,000 sensor-days against issue 5's ≤ 1, grade IV
   reported apart, with what fired.
3. Cost: CPU time of all three layers on one core for rounds of 10,000 sensors (quiet-month detectors, one reading
   each, after 40 warm-up rounds), median of 15; reference in the same run: bench/anomaly.py's bare numpy
   scatter-update of one exponentially weighted mean for the same rows.

``python -m bench detection [--copies N] [--days D] [--processes P]``
"""

import argparse
import collections
import concurrent.futures
import re
import statistics
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from alerts.model import Grade, RiskEvent
from bench.anomaly import EwScatter
from bench.recording import (
    Recording,
    cached_record,
    combined,
    copies_for,
    ensure_cached,
    month_copy,
    record,
    trimmed,
)
from edge.drivers.modbus import LOW_BATTERY_REPORT_PCT
from firmware_sim.scenario import Incident, Scenario, load_scenario
from hub.config import Deployment
from hub.detection.observations import Observations
from hub.ingest.registry import Registry, SensorInfo
from hub.runtime import detection_layers
from protocol.kinds import KINDS, SetPoint
from protocol.registers import Status
from protocol.telemetry import DeviceStatus

__all__ = [
    "IncidentResult",
    "Layers",
    "MonthResult",
    "Round",
    "add_arguments",
    "deployment_of",
    "incident_results",
    "main_from_args",
    "quiet_month",
    "replay",
    "report_incidents",
    "report_month",
    "report_throughput",
    "rounds",
    "throughput",
]

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "firmware_sim" / "scenarios"
QUIET_MONTH = SCENARIOS / "quiet_month.yaml"
CACHE_DIR = REPO / "run" / "bench-cache"
START_MS = 1_793_462_400_000
"""2026-11-01 00:00 in Asia/Shanghai: scenarios start at local midnight (elder_no_water's incident at 08:00)."""
DEVICE_REPORT_MS = 60_000
"""Each gateway's device headers reach the health layer once a minute (edge ``health_interval_s`` default)."""
GRACE_MS = 60_000
"""A firing event up to this long after an incident's window (or two sampling intervals, if longer) still counts."""
MONTH_SENSORS = 2_000
THROUGHPUT_SENSORS, WARMUP_ROUNDS, REPEATS = 10_000, 40, 15

NORMS: dict[str, tuple[float, str]] = {
    "gas": (30.0, "GB/T 34004-2017 kitchen gas alarm <= 30 s; issue 5: <= 30 s after the set concentration"),
    "co": (180.0, "EN 50291: alarm at 300 ppm within 3 min"),
    "manhole-tilt": (60.0, "SENSORS.md manhole: > 15° held > 30 s is an alarm; + 30 s device to platform"),
    "water-meter": (12 * 3600.0, "Shenzhen Longgang / Shanghai: < 0.01 m³ in 12 h -> visit"),
}
"""Seconds from the crossing to the first event at alarm grade, per kind, with SENSORS.md's source."""
DEFAULT_NORM = (30.0, "GB/T 45839-2025: device -> on-site platform <= 30 s")


class Place(NamedTuple):
    space: str
    tags: tuple[str, ...] = ()

    @property
    def building(self) -> str:
        """The building a space is in: its ``b<n>`` prefix (after a month copy's ``c<k>-``); "" for the road."""
        found = re.match(r"(?:c\d{3}-)?b\d+(?=-)", self.space)
        return found.group(0) if found else ""


PLACES: dict[str, Place] = {
    # kitchens: gas (+ heat, + CO) in one space
    **{f"{k}-b{b}-{f}01": Place(f"b{b}-{f}01") for k in ("gas", "temp", "co") for b in (1, 2) for f in (1, 2, 3)},
    # corridors: each floor its own space; ebike_fire's corridor heat detectors are named ...-f2c
    **{f"smoke-b{b}-f{f}": Place(f"b{b}-f{f}") for b in (1, 2) for f in (1, 2, 3)},
    **{f"co-b1-f{f}": Place(f"b1-f{f}") for f in (2, 3)},
    **{f"temp-b1-f{f}c": Place(f"b1-f{f}") for f in (2, 3)},
    **{f"water-b{b}-basement": Place(f"b{b}-basement", ("basement",)) for b in (1, 2)},
    "water-b2-ramp": Place("b2-basement", ("basement",)),
    "cable-b2-pump": Place("b2-pump-room"),
    "rcm-b1-box1": Place("b1-box1"),
    "cable-b1-box1": Place("b1-box1"),
    "smoke-b1-elec": Place("b1-box1"),
    **{f"{k}-b2-502": Place("b2-502", ("elder-living-alone",)) for k in ("meter", "door", "help")},
    "meter-b2-601": Place("b2-601"),
    # the estate road's manhole: the cover's tilt and open contacts are one place
    **{f"manhole-r1-{k}": Place("road-r1") for k in ("tilt", "open")},
}
"""Where the scenarios' detectors are (the deployment file's ``space`` and ``tags``), read from the scenario files'
comments: detectors sharing a room corroborate each other; a basement and an elder living alone raise grades."""


# -- the hub's detection layers -------------------------------------------------------------------------------------


def deployment_of(scenario: Scenario, places: Mapping[str, Place] = PLACES) -> Deployment:
    """A deployment registering every gateway and detector of ``scenario`` (one grid, nobody notified), with each
    detector's place from ``places``."""

    def sensor(spec_id: str, kind: str, unit_id: int) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": spec_id, "kind": kind, "unit_id": unit_id, "location": spec_id, "grid": "grid"}
        if spec_id in places:
            entry["space"] = places[spec_id].space
            if places[spec_id].building:
                entry["building"] = places[spec_id].building
            entry["tags"] = list(places[spec_id].tags)
        return entry

    return Deployment.model_validate(
        {
            "community": {"id": scenario.community, "name": "基准社区"},
            "grids": [{"id": "grid", "name": "网格", "managers": ["duty"]}],
            "people": [{"id": "duty", "name": "值班"}],
            "gateways": [
                {"id": g.gateway_id, "sensors": [sensor(d.sensor_id, d.kind.name, d.unit_id) for d in g.devices]}
                for g in scenario.gateways
            ],
        }
    )


class Layers:
    """Rules, health and anomaly watch over one deployment, built as ``anju-hub serve`` builds them, fresh."""

    def __init__(self, deployment: Deployment) -> None:
        self.registry = Registry(deployment)
        self.detection = detection_layers(deployment, self.registry, None)
        self.infos: list[SensorInfo] = sorted(self.registry.sensors.values(), key=lambda info: info.index)

    def observe(self, one: "Round") -> list[RiskEvent]:
        """One ingest round in the hub's order: the gateways' device reports (judged as the round is prepared),
        then the round's readings."""
        events = self.observe_devices(one)
        events += self.observe_readings(one.seen)
        return events

    def observe_devices(self, one: "Round") -> list[RiskEvent]:
        events: list[RiskEvent] = []
        for gateway, time_ms, devices in one.devices:
            events += self.detection.health.observe_devices(gateway, time_ms, devices)
        return events

    def observe_readings(self, seen: Observations) -> list[RiskEvent]:
        return self.detection.observe_round(seen)


@dataclass(frozen=True, slots=True)
class Round:
    """One ingest round: its readings (as the hub's ingest judges them) and the health reports that arrived."""

    seen: Observations
    devices: list[tuple[str, int, list[DeviceStatus]]] = field(default_factory=list)
    """Gateways' health reports due in this round: (gateway, time ms, the detectors worth a look)."""


def rounds(layers: Layers, parts: Sequence[Recording], *, instants: int = 1, chunk: int = 1_440) -> Iterator[Round]:
    """The rounds of ``parts`` (recordings on one timeline, judged as one deployment), ``instants`` sampling instants
    each, every round's readings sorted by device time."""
    ids = [sensor for part in parts for sensor in part.sensors]
    rows = np.array([layers.registry.by_id[sensor].index for sensor in ids], np.intp)
    nominal = parts[0].nominal_ms
    if any(not np.array_equal(part.nominal_ms, nominal) for part in parts):
        raise ValueError("recordings on different timelines")
    gateways = [g for part in parts for g in part.gateways]
    reported = -1
    for start in range(0, len(nominal), chunk):
        stop = min(len(nominal), start + chunk)
        block = np.concatenate([np.asarray(part.samples[start:stop]) for part in parts], axis=1)
        present, values = block["present"], block["value"]
        times = nominal[start:stop, None] + block["offset_ms"].astype(np.int64)
        for k in range(0, stop - start, instants):
            at = slice(k, k + instants)
            mask = present[at]
            _, columns = np.nonzero(mask)
            t_ms, v = times[at][mask], values[at][mask]
            order = np.argsort(t_ms, kind="stable")
            r = rows[columns[order]]
            seen = Observations(r, t_ms[order], v[order], [layers.infos[i] for i in r.tolist()])
            devices: list[tuple[str, int, list[DeviceStatus]]] = []
            for t in range(start + k, min(stop, start + k + instants)):
                if nominal[t] // DEVICE_REPORT_MS != reported:
                    reported = int(nominal[t] // DEVICE_REPORT_MS)
                    devices += _device_reports(ids, gateways, layers.registry, block[t - start], int(nominal[t]))
            yield Round(seen, devices)


def _device_reports(
    ids: Sequence[str], gateways: Sequence[str], registry: Registry, now: npt.NDArray[np.void], time_ms: int
) -> list[tuple[str, int, list[DeviceStatus]]]:
    """Every gateway's health report at ``time_ms``: as the edge lists them (``ModbusDriver.device_statuses``), the
    detectors that answered and whose header shows a fault or shielded status, fault flags, or a low battery."""
    status, battery, faults = now["status"], now["battery_pct"], now["faults"]
    worth = now["present"] & (
        (status == Status.FAULT) | (status == Status.SHIELDED) | (faults != 0) | (battery <= LOW_BATTERY_REPORT_PCT)
    )
    listed: dict[str, list[DeviceStatus]] = {gateway: [] for gateway in registry.gateways}
    for j in np.flatnonzero(worth).tolist():
        listed[gateways[j]].append(DeviceStatus(ids[j], int(status[j]), int(battery[j]), int(faults[j]), 0))
    return [(gateway, time_ms, sorted(devices, key=lambda d: d.sensor)) for gateway, devices in listed.items()]


def replay(layers: Layers, parts: Sequence[Recording], *, instants: int = 1) -> list[RiskEvent]:
    """Every risk event the layers raise over ``parts``, in the order raised."""
    events: list[RiskEvent] = []
    for one in rounds(layers, parts, instants=instants):
        events += layers.observe(one)
    return events


# -- 1. incidents ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentResult:
    scenario: str
    name: str
    kind: str
    truth: int
    set_point: SetPoint | None
    """The set point the crossing is taken at (None: the kind has none, the incident's start is used)."""
    crossing_ms: int | None
    """First sample at or past ``set_point`` in the window; None: never (or no set point): the start is used."""
    start_ms: int
    first_ms: int | None
    alarm_ms: int | None
    truth_ms: int | None
    given: int | None
    rules: tuple[str, ...]
    norm_s: float
    norm_source: str

    @property
    def detected(self) -> bool:
        return self.first_ms is not None

    def after_s(self, time_ms: int | None) -> float | None:
        """Seconds from the crossing (or the start) to ``time_ms``."""
        reference = self.crossing_ms if self.crossing_ms is not None else self.start_ms
        return None if time_ms is None else (time_ms - reference) / 1000

    @property
    def within_norm(self) -> bool:
        latency = self.after_s(self.alarm_ms)
        return latency is not None and latency <= self.norm_s


@dataclass(frozen=True, slots=True)
class _Spaces:
    """Who a corroboration event is about: the sensors of its space (or building) whose kind its pattern takes."""

    kinds: Mapping[str, Mapping[str, str]]
    """space or building → sensor → kind."""
    patterns: Mapping[str, frozenset[str]]
    """pattern id → the kinds it takes."""

    def concerns(self, event: RiskEvent) -> set[str]:
        """The sensors ``event`` is about: its own, or for a corroboration (key ``{community}/{space}/corroboration/
        {pattern}``) every sensor of the space of a kind in the pattern, whichever reading completed it."""
        if event.kind != "corroboration":
            return {event.sensor}
        _, space, _, pattern = event.key.split("/")
        taken = self.patterns.get(pattern, frozenset())
        return {sensor for sensor, kind in self.kinds.get(space, {}).items() if kind in taken} or {event.sensor}


def _judge(
    name: str,
    scenario: Scenario,
    incident: Incident,
    recording: Recording,
    events: Sequence[RiskEvent],
    spaces: _Spaces,
) -> IncidentResult:
    kind = next(spec.kind for _, spec in scenario.devices() if spec.sensor_id == incident.sensors[0])
    alarm_grade = 3 if incident.grade <= 3 else 4
    set_point = next((s for s in kind.set_points if s.grade <= alarm_grade), None)
    start_ms, end_ms = START_MS + round(incident.start_s * 1000), START_MS + round(incident.end_s * 1000)
    columns = [recording.sensors.index(sensor) for sensor in incident.sensors]
    samples = np.asarray(recording.samples[:, columns])
    times = recording.nominal_ms[:, None] + samples["offset_ms"]
    crossing = None
    if set_point is not None:
        value = samples["value"]
        past = value >= set_point.value if set_point.above else value <= set_point.value
        hits = past & samples["present"] & (times >= start_ms) & (times <= end_ms)
        crossing = int(times[hits].min()) if hits.any() else None
    until = end_ms + max(GRACE_MS, 2 * round(scenario.sample_interval_s * 1000))
    mine = [
        e
        for e in events
        if e.status == "firing" and start_ms <= e.time_ms <= until and spaces.concerns(e) & set(incident.sensors)
    ]

    def first(worst: int) -> int | None:
        return min((e.time_ms for e in mine if e.grade <= worst), default=None)

    norm_s, source = NORMS.get(kind.name, DEFAULT_NORM)
    return IncidentResult(
        scenario=name,
        name=incident.name,
        kind=kind.name,
        truth=incident.grade,
        set_point=set_point,
        crossing_ms=crossing,
        start_ms=start_ms,
        first_ms=first(4),
        alarm_ms=first(alarm_grade),
        truth_ms=first(incident.grade),
        given=min((int(e.grade) for e in mine), default=None),
        rules=tuple(sorted({f"{e.rule} ({e.grade.name})" for e in mine})),
        norm_s=norm_s,
        norm_source=source,
    )


def incident_results(paths: Sequence[Path] | None = None) -> list[IncidentResult]:
    """Judge every incident of the scenarios at ``paths`` (default: every shipped scenario with incidents)."""
    results = []
    for path in paths if paths is not None else sorted(SCENARIOS.glob("*.yaml")):
        scenario = load_scenario(path)
        if not scenario.incidents:
            continue
        deployment = deployment_of(scenario)
        layers = Layers(deployment)
        kinds: dict[str, dict[str, str]] = collections.defaultdict(dict)
        for _, sensor in deployment.sensors():
            for place in (sensor.space, sensor.building):  # corroboration keys name a space or a building
                if place:
                    kinds[place][sensor.id] = sensor.kind
        spaces = _Spaces(kinds, {p.id: frozenset(p.kinds) for p in layers.detection.rules.ruleset.corroboration})
        recording = record(scenario, start_ms=START_MS)
        events = replay(layers, [recording])
        results += [_judge(path.stem, scenario, i, recording, events, spaces) for i in scenario.incidents]
    return results


# -- 2. the quiet month ---------------------------------------------------------------------------------------------


def _copy_places(copies: int) -> dict[str, Place]:
    """``PLACES`` of every copy: ids and spaces prefixed like ``month_copy`` does (a copy's rooms are its own)."""
    return {
        f"c{k:03d}-{sensor}": Place(f"c{k:03d}-{place.space}", place.tags)
        for k in range(copies)
        for sensor, place in PLACES.items()
    }


@dataclass(frozen=True, slots=True)
class MonthResult:
    copies: int
    sensors: int
    days: float
    readings: int
    events: tuple[RiskEvent, ...]
    """Every firing event (all false: the month has no incident)."""
    simulated: int
    """Copies simulated in this run (the others came from the cache)."""
    processes: int
    generate_s: float
    """Wall time to simulate (or find in the cache) every copy."""
    detect_cpu_s: float

    @property
    def sensor_days(self) -> float:
        return self.sensors * self.days

    def per_1000(self, events: Sequence[RiskEvent]) -> float:
        """``events`` per 1,000 sensor-days."""
        return len(events) / self.sensor_days * 1000

    @property
    def serious(self) -> list[RiskEvent]:
        """Firing events of grade III or worse: each one would have paged a grid manager for nothing."""
        return [e for e in self.events if e.grade <= 3]

    @property
    def minor(self) -> list[RiskEvent]:
        return [e for e in self.events if e.grade == 4]

    def breakdown(self) -> list[tuple[tuple[str, str, str], int]]:
        """(grade, kind, rule) of the firing events, most frequent first."""
        counts = collections.Counter((e.grade.name, e.kind, e.rule) for e in self.events)
        return sorted(counts.items(), key=lambda item: (Grade[item[0][0]].value, -item[1]))


def quiet_month(
    *, copies: int | None = None, days: float | None = None, processes: int = 2, cache_dir: Path = CACHE_DIR
) -> MonthResult:
    """The quiet month, ``copies`` communities (default: enough for ``MONTH_SENSORS`` sensors) for ``days`` days
    (default: the scenario's 30), samples simulated in ``processes`` processes into ``cache_dir`` (once)."""
    base = load_scenario(QUIET_MONTH)
    if days is not None:
        base = replace(base, duration_s=days * 86_400.0)
    copies = copies_for(base, MONTH_SENSORS) if copies is None else copies
    parts = [month_copy(base, k) for k in range(copies)]
    started = time.perf_counter()
    processes = max(1, min(processes, len(parts)))
    if processes > 1:
        with concurrent.futures.ProcessPoolExecutor(max_workers=processes) as pool:
            made = list(pool.map(_ensure_cached, parts, [cache_dir] * len(parts)))
    else:
        made = [_ensure_cached(part, cache_dir) for part in parts]
    recordings = [cached_record(part, start_ms=START_MS, cache_dir=cache_dir) for part in parts]
    generate_s = time.perf_counter() - started
    layers = Layers(deployment_of(combined(parts), _copy_places(copies)))
    cpu = time.process_time()
    events = replay(layers, recordings)
    detect_cpu_s = time.process_time() - cpu
    return MonthResult(
        copies=copies,
        sensors=len(layers.infos),
        days=base.duration_s / 86_400,
        readings=sum(int(np.count_nonzero(r.samples["present"])) for r in recordings),
        events=tuple(e for e in events if e.status == "firing"),
        simulated=sum(made),
        processes=processes,
        generate_s=generate_s,
        detect_cpu_s=detect_cpu_s,
    )


def _ensure_cached(scenario: Scenario, cache_dir: Path) -> bool:
    return ensure_cached(scenario, start_ms=START_MS, cache_dir=cache_dir)


# -- 3. cost --------------------------------------------------------------------------------------------------------


def throughput(
    *,
    sensors: int = THROUGHPUT_SENSORS,
    warmup: int = WARMUP_ROUNDS,
    repeats: int = REPEATS,
    cache_dir: Path = CACHE_DIR,
) -> dict[str, float]:
    """Readings/s of all layers, one core (CPU time, median of ``repeats`` rounds), for rounds of one reading of
    each of ``sensors`` quiet-month detectors after ``warmup`` rounds; and of the bare scatter on the same rounds."""
    base = load_scenario(QUIET_MONTH)
    copies = copies_for(base, sensors)
    scenario = trimmed(combined([month_copy(base, k) for k in range(copies)]), sensors)
    scenario = replace(scenario, duration_s=(warmup + repeats) * scenario.sample_interval_s)
    layers = Layers(deployment_of(scenario, _copy_places(copies)))
    recording = cached_record(scenario, start_ms=START_MS, cache_dir=cache_dir)
    every = list(rounds(layers, [recording]))
    for one in every[:warmup]:
        layers.observe(one)
    spent, reference, reports = [], [], []
    scatter = EwScatter()
    for one in every[warmup:]:
        n = len(one.seen.rows)
        start = time.process_time()
        layers.observe_readings(one.seen)
        spent.append((time.process_time() - start) / n)
        start = time.process_time()
        layers.observe_devices(one)
        reports.append((time.process_time() - start) / len(one.devices))
        start = time.process_time()
        scatter((one.seen.rows, one.seen.times_ms, one.seen.values))
        reference.append((time.process_time() - start) / n)
    return {
        "sensors": float(len(layers.infos)),
        "gateways": float(len(layers.registry.gateways)),
        "readings_per_s": 1 / statistics.median(spent),
        "scatter_per_s": 1 / statistics.median(reference),
        "report_s": statistics.median(reports),
    }


# -- report ---------------------------------------------------------------------------------------------------------


def _s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:+.0f} s"


def report_incidents(results: Sequence[IncidentResult], out: Any = sys.stdout) -> None:
    detected = sum(r.detected for r in results)
    timely = sum(r.within_norm for r in results)
    graded = sum(r.given == r.truth for r in results)
    out.write(
        f"detection, incident scenarios ({len({r.scenario for r in results})} scenarios, {len(results)} incidents, "
        f"one round per sampling instant): {detected}/{len(results)} detected, {timely}/{len(results)} at alarm grade "
        f"within the SENSORS.md norm, grade given = truth in {graded}/{len(results)}; reference target: every incident "
        "detected within its norm; ratio "
        f"{timely / len(results):.2f}\n"
        "  times from the crossing (first sample at or past the set point; the start where the kind has none) to the "
        "first firing event, the first at alarm grade (III; IV for a grade IV truth), the first at the truth grade\n"
    )
    by_kind: dict[str, list[IncidentResult]] = collections.defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)
    for kind, rows in sorted(by_kind.items()):
        latencies = [r.after_s(r.alarm_ms) for r in rows]
        worst = max((x for x in latencies if x is not None), default=None)
        grades = ", ".join(f"{_roman(r.given)}/{_roman(r.truth)}" for r in rows)
        out.write(
            f"  {kind}: {sum(r.detected for r in rows)}/{len(rows)} detected; alarm at worst {_s(worst)} "
            f"(norm <= {rows[0].norm_s:.0f} s, {rows[0].norm_source}: "
            f"{'met' if all(r.within_norm for r in rows) else 'NOT met'}); grade given/truth {grades}\n"
        )
        for r in rows:
            point = (
                "incident start (no set point)"
                if r.set_point is None
                else f"{r.set_point.name} {r.set_point.value:g} {KINDS[kind].unit}".rstrip()
                + (
                    f" at +{(r.crossing_ms - r.start_ms) / 1000:.0f} s"
                    if r.crossing_ms is not None
                    else " never: start"
                )
            )
            out.write(
                f"    {r.scenario}/{r.name}: {'detected' if r.detected else 'MISSED'}; crossing {point}; "
                f"first {_s(r.after_s(r.first_ms))}, alarm {_s(r.after_s(r.alarm_ms))}, "
                f"truth grade {_s(r.after_s(r.truth_ms))}; grade {_roman(r.given)} given, {_roman(r.truth)} truth; "
                f"fired: {', '.join(r.rules) or 'nothing'}\n"
            )


def _roman(grade: int | None) -> str:
    return "—" if grade is None else {1: "I", 2: "II", 3: "III", 4: "IV"}[grade]


def report_month(m: MonthResult, out: Any = sys.stdout) -> None:
    serious, minor = m.serious, m.minor
    per = m.per_1000(serious)
    out.write(
        f"detection, quiet month ({m.copies} copies, {m.sensors:,} sensors × {m.days:g} days = {m.sensor_days:,.0f} "
        f"sensor-days, {m.readings / 1e6:.1f} M readings; rules + anomaly + health): "
        f"false risk events of grade III or worse: {per:.2f} per 1,000 sensor-days ({len(serious):,} events); "
        f"reference target <= 1 per 1,000 sensor-days; ratio {per:.2f}\n"
        f"  grade IV, reported apart: {m.per_1000(minor):.2f} per 1,000 sensor-days ({len(minor):,} events)\n"
    )
    for (grade, kind, rule), count in m.breakdown():
        out.write(f"  {grade:>3} {kind} / {rule}: {count:,} ({count / m.copies:.2f} per copy)\n")
    out.write(
        f"  samples: {m.generate_s:.0f} s wall ({m.simulated} of {m.copies} copies simulated now in {m.processes} "
        f"processes, the rest memory-mapped from the cache); detection {m.detect_cpu_s:.0f} CPU-s "
        f"({m.readings / m.detect_cpu_s / 1e6:.2f} M readings/s with the rounds' assembly)\n"
    )


def report_throughput(r: Mapping[str, float], out: Any = sys.stdout) -> None:
    found, reference = r["readings_per_s"], r["scatter_per_s"]
    out.write(
        f"detection, rules + anomaly + health, {r['sensors']:,.0f} quiet-month sensors, one reading each per round: "
        f"{found / 1e6:.2f} M readings/s (one core, CPU time, median of {REPEATS}); reference bare EW-mean scatter of "
        f"the same rows: {reference / 1e6:.1f} M readings/s; ratio {found / reference:.3f} "
        f"(issue 5 target >= 1 M readings/s: {'met' if found >= 1e6 else 'NOT met'})\n"
        f"  and the gateways' health reports (device headers, not per reading): {r['report_s'] * 1e6:.1f} µs CPU per "
        f"gateway report, {r['gateways']:,.0f} gateways once a minute = "
        f"{r['report_s'] * r['gateways'] / 60 * 1e3:.2f} ms/s\n"
    )


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--copies", type=int, default=None, help="quiet-month copies (default: >= 2,000 sensors)")
    parser.add_argument("--days", type=float, default=None, help="quiet-month days (default: the scenario's 30)")
    parser.add_argument("--processes", type=int, default=2, help="processes simulating the month (2)")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help=f"recorded samples (default {CACHE_DIR})")


def main_from_args(args: argparse.Namespace) -> None:
    report_incidents(incident_results())
    sys.stdout.flush()
    report_month(quiet_month(copies=args.copies, days=args.days, processes=args.processes, cache_dir=args.cache_dir))
    sys.stdout.flush()
    report_throughput(throughput(cache_dir=args.cache_dir))


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    main_from_args(_parser.parse_args())
