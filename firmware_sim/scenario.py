"""Scenario files: a community's gateways and detectors, and a timeline of incidents with ground truth.

The format (YAML, read with ruamel.yaml so every error can name its line)::

    community: hongxing           # id, [a-z0-9-]{1,64}
    seed: 7                       # int; noise streams derive from it and the sensor id
    sample_interval_s: 1.0        # optional, default 1.0; simulated seconds between samples
    duration_s: 150               # simulated seconds during which devices sample
    gateways:
      gw-b1:                      # gateway id -> its detectors (one Modbus unit id each, 1..247)
        - {sensor: gas-b1-101, kind: gas, unit_id: 1, baseline: 0.5, noise_sd: 0.1}
        - {sensor: pressure-roof, kind: pressure, unit_id: 2, rhythm: false}  # optional, default true:
                                  # false switches off the kind's daily rhythm (firmware_sim/rhythms.py)
    incidents:                    # optional
      - name: kitchen-gas-leak
        sensors: [gas-b1-301]
        start_s: 5
        ramp: {to: 55.0, over_s: 35}   # linear rise from the baseline to `to` (kind unit)
        hold_s: 40                     # optional, default 0
        decay_s: 40                    # optional, default 0; linear fall back to the baseline
        grade: 2                       # ground truth: the grade (4..1) a competent operator gives
        effect: offset                 # optional: offset (default, moves the value toward `to`) or
                                       # suppress (a cumulative meter stops counting: no water used)
    faults:                       # optional, see firmware_sim/faults.py
      - {sensor: smoke-b1-f2, type: drift, start_s: 30, duration_s: 600, rate_per_h: 0.05}
      - {sensor: gas-b2-101, type: dropout, start_s: 60, duration_s: 20}

The incident window is ``[start_s, start_s + over_s + hold_s + decay_s]``. Strict like every Anju config:
unknown keys are errors, and each :class:`ScenarioError` names the key path, the bad value and the line.
"""

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from firmware_sim.faults import Fault, FaultType
from protocol.ids import is_valid_id
from protocol.kinds import KINDS, SensorKind

__all__ = [
    "DeviceSpec",
    "GatewaySpec",
    "Incident",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
    "scenario_from_deployment",
]

MAX_DURATION_S = 31 * 24 * 3600.0
"""A month of simulated time (the quiet-month scenario) bounds every run and the sampling loop."""
MIN_SAMPLE_INTERVAL_S = 0.01


class ScenarioError(ValueError):
    """A scenario file is invalid. Carries where (``source``, 1-based ``line``, key ``path``) and what."""

    def __init__(self, *, source: str, path: str, value: object, line: int | None, reason: str) -> None:
        self.source = source
        self.path = path
        self.value = value
        self.line = line
        self.reason = reason
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {path or '<top>'}: {reason} (got {value!r})")


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One detector behind a gateway. ``baseline`` and ``noise_sd`` are in the kind's unit; None = default.
    ``rhythm`` False keeps the reading flat around the baseline (no daily rhythm of normal life)."""

    sensor_id: str
    kind: SensorKind
    unit_id: int
    baseline: float | None = None
    noise_sd: float | None = None
    rhythm: bool = True


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    gateway_id: str
    devices: tuple[DeviceSpec, ...]


@dataclass(frozen=True, slots=True)
class Incident:
    """A trapezoid excursion on some sensors: linear ramp to ``ramp_to``, hold, linear decay (seconds)."""

    name: str
    sensors: tuple[str, ...]
    start_s: float
    ramp_to: float
    ramp_over_s: float
    hold_s: float
    decay_s: float
    grade: int
    effect: str = "offset"
    """``offset``: the sensors move toward ``ramp_to``; ``suppress``: a cumulative meter's use is scaled by
    ``1 - weight`` (``ramp_to`` unused), as when an elder living alone stops drawing water."""

    @property
    def end_s(self) -> float:
        """End of the ground-truth window, simulated seconds since the start of the run."""
        return self.start_s + self.ramp_over_s + self.hold_s + self.decay_s

    def weight(self, t_s: float) -> float:
        """How far (0..1) the incident has taken its sensors from baseline toward ``ramp_to`` at ``t_s``."""
        t = t_s - self.start_s
        if t < 0 or t_s > self.end_s:
            return 0.0
        if t < self.ramp_over_s:
            return t / self.ramp_over_s
        t -= self.ramp_over_s
        if t <= self.hold_s:
            return 1.0
        t -= self.hold_s
        return max(0.0, 1.0 - t / self.decay_s) if self.decay_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Scenario:
    community: str
    seed: int
    sample_interval_s: float
    duration_s: float
    gateways: tuple[GatewaySpec, ...]
    incidents: tuple[Incident, ...]
    source: str = "<string>"
    faults: tuple[Fault, ...] = ()

    def devices(self) -> Iterator[tuple[str, DeviceSpec]]:
        """Every (gateway id, device) pair, in file order."""
        for gateway in self.gateways:
            for device in gateway.devices:
                yield gateway.gateway_id, device


class _Reader:
    """Typed access to a ruamel round-trip tree that reports errors with key path and line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, value: object, line: int | None, reason: str) -> ScenarioError:
        return ScenarioError(source=self.source, path=path, value=value, line=line, reason=reason)

    @staticmethod
    def key_line(node: object, key: object) -> int | None:
        """1-based line of ``key`` in ``node``; None for nodes built in code (no position recorded)."""
        position = None
        with contextlib.suppress(KeyError, IndexError, TypeError):
            if isinstance(node, CommentedMap) and key in node:
                position = node.lc.key(key)
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
                position = node.lc.item(key)
        return int(position[0]) + 1 if position else None

    @staticmethod
    def node_line(node: object) -> int | None:
        lc = getattr(node, "lc", None)
        return int(lc.line) + 1 if lc is not None and lc.line is not None else None

    def mapping(self, node: object, path: str, line: int | None, *, required: set[str], optional: set[str]) -> Any:
        if not isinstance(node, CommentedMap):
            raise self.fail(path, node, line, "must be a mapping")
        for key in node:
            if key not in required | optional:
                allowed = ", ".join(sorted(required | optional))
                raise self.fail(
                    _join(path, str(key)), key, self.key_line(node, key), f"unknown key; allowed: {allowed}"
                )
        for key in sorted(required):
            if key not in node:
                raise self.fail(_join(path, key), None, self.node_line(node) or line, "required key is missing")
        return node

    def identifier(self, node: CommentedMap | CommentedSeq, key: str | int, path: str) -> str:
        value = node[key]
        if not is_valid_id(value):
            raise self.fail(path, value, self.key_line(node, key), "must be an id matching [a-z0-9-]{1,64}")
        return str(value)

    def integer(self, node: CommentedMap, key: str, path: str, *, low: int, high: int) -> int:
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(path, value, self.key_line(node, key), f"must be an integer in {low}..{high}")
        return value

    def boolean(self, node: CommentedMap, key: str, path: str) -> bool:
        value = node[key]
        if not isinstance(value, bool):
            raise self.fail(path, value, self.key_line(node, key), "must be true or false")
        return value

    def number(self, node: CommentedMap, key: str, path: str, *, low: float, high: float) -> float:
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(path, value, self.key_line(node, key), "must be a finite number")
        if not low <= value <= high:
            raise self.fail(path, value, self.key_line(node, key), f"must be in {low}..{high}")
        return float(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parse_scenario(text: str, *, source: str = "<string>") -> Scenario:
    """Parse and validate a scenario document. Raises :class:`ScenarioError` naming key, value and line."""
    yaml = YAML(typ="rt")
    try:
        root = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ScenarioError(
            source=source, path="", value=None, line=line, reason=f"not valid YAML: {exc.problem}"
        ) from exc
    r = _Reader(source)
    top = r.mapping(
        root,
        "",
        1,
        required={"community", "seed", "duration_s", "gateways"},
        optional={"sample_interval_s", "incidents", "faults"},
    )
    community = r.identifier(top, "community", "community")
    seed = r.integer(top, "seed", "seed", low=0, high=2**63 - 1)
    duration_s = r.number(top, "duration_s", "duration_s", low=0.0, high=MAX_DURATION_S)
    interval_s = 1.0
    if "sample_interval_s" in top:
        interval_s = r.number(top, "sample_interval_s", "sample_interval_s", low=MIN_SAMPLE_INTERVAL_S, high=3600.0)
    gateways = _gateways(r, top)
    kinds = {d.sensor_id: d.kind for g in gateways for d in g.devices}
    incidents = _incidents(r, top, kinds) if "incidents" in top else ()
    faults = _faults(r, top, kinds) if "faults" in top else ()
    return Scenario(
        community=community,
        seed=seed,
        sample_interval_s=interval_s,
        duration_s=duration_s,
        gateways=gateways,
        incidents=incidents,
        source=source,
        faults=faults,
    )


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate the scenario file at ``path`` (errors name this path)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(source=str(p), path="", value=str(p), line=None, reason=f"cannot read file: {exc}") from exc
    return parse_scenario(text, source=str(p))


def _gateways(r: _Reader, top: CommentedMap) -> tuple[GatewaySpec, ...]:
    node = top["gateways"]
    if not isinstance(node, CommentedMap) or not node:
        raise r.fail(
            "gateways", node, r.key_line(top, "gateways"), "must be a non-empty mapping of gateway id -> devices"
        )
    seen_sensors: set[str] = set()
    result = []
    for gateway_id in node:
        path = f"gateways.{gateway_id}"
        if not is_valid_id(gateway_id):
            raise r.fail(path, gateway_id, r.key_line(node, gateway_id), "gateway id must match [a-z0-9-]{1,64}")
        devices_node = node[gateway_id]
        if not isinstance(devices_node, CommentedSeq) or not devices_node:
            raise r.fail(path, devices_node, r.key_line(node, gateway_id), "must be a non-empty list of devices")
        unit_ids: dict[int, str] = {}
        devices = []
        for index, item in enumerate(devices_node):
            dpath = f"{path}[{index}]"
            d = r.mapping(
                item,
                dpath,
                r.key_line(devices_node, index),
                required={"sensor", "kind", "unit_id"},
                optional={"baseline", "noise_sd", "rhythm"},
            )
            sensor_id = r.identifier(d, "sensor", f"{dpath}.sensor")
            if sensor_id in seen_sensors:
                raise r.fail(f"{dpath}.sensor", sensor_id, r.key_line(d, "sensor"), "duplicate sensor id")
            seen_sensors.add(sensor_id)
            kind = KINDS.get(d["kind"]) if isinstance(d["kind"], str) else None
            if kind is None:
                known = ", ".join(sorted(KINDS))
                raise r.fail(f"{dpath}.kind", d["kind"], r.key_line(d, "kind"), f"unknown kind; known: {known}")
            unit_id = r.integer(d, "unit_id", f"{dpath}.unit_id", low=1, high=247)
            if unit_id in unit_ids:
                reason = f"duplicate unit id on {gateway_id} (already {unit_ids[unit_id]})"
                raise r.fail(f"{dpath}.unit_id", unit_id, r.key_line(d, "unit_id"), reason)
            unit_ids[unit_id] = sensor_id
            baseline = None
            if "baseline" in d:
                baseline = r.number(d, "baseline", f"{dpath}.baseline", low=kind.minimum, high=kind.maximum)
            noise_sd = None
            if "noise_sd" in d:
                span = kind.maximum - kind.minimum
                noise_sd = r.number(d, "noise_sd", f"{dpath}.noise_sd", low=0.0, high=span)
            rhythm = r.boolean(d, "rhythm", f"{dpath}.rhythm") if "rhythm" in d else True
            devices.append(DeviceSpec(sensor_id, kind, unit_id, baseline, noise_sd, rhythm))
        result.append(GatewaySpec(str(gateway_id), tuple(devices)))
    return tuple(result)


def _incidents(r: _Reader, top: CommentedMap, kinds: dict[str, SensorKind]) -> tuple[Incident, ...]:
    node = top["incidents"]
    if node is None:
        return ()
    if not isinstance(node, CommentedSeq):
        raise r.fail("incidents", node, r.key_line(top, "incidents"), "must be a list")
    names: set[str] = set()
    result = []
    for index, item in enumerate(node):
        path = f"incidents[{index}]"
        i = r.mapping(
            item,
            path,
            r.key_line(node, index),
            required={"name", "sensors", "start_s", "ramp", "grade"},
            optional={"hold_s", "decay_s", "effect"},
        )
        name = r.identifier(i, "name", f"{path}.name")
        if name in names:
            raise r.fail(f"{path}.name", name, r.key_line(i, "name"), "duplicate incident name")
        names.add(name)
        sensors_node = i["sensors"]
        if not isinstance(sensors_node, CommentedSeq) or not sensors_node:
            raise r.fail(f"{path}.sensors", sensors_node, r.key_line(i, "sensors"), "must be a non-empty list")
        sensors = []
        for sindex, sensor in enumerate(sensors_node):
            spath = f"{path}.sensors[{sindex}]"
            if sensor not in kinds:
                raise r.fail(spath, sensor, r.key_line(sensors_node, sindex), "no such sensor in gateways")
            sensors.append(str(sensor))
        start_s = r.number(i, "start_s", f"{path}.start_s", low=0.0, high=MAX_DURATION_S)
        ramp = r.mapping(i["ramp"], f"{path}.ramp", r.key_line(i, "ramp"), required={"to", "over_s"}, optional=set())
        low = max(kinds[s].minimum for s in sensors)
        high = min(kinds[s].maximum for s in sensors)
        ramp_to = r.number(ramp, "to", f"{path}.ramp.to", low=low, high=high)
        over_s = r.number(ramp, "over_s", f"{path}.ramp.over_s", low=0.0, high=MAX_DURATION_S)
        hold_s = r.number(i, "hold_s", f"{path}.hold_s", low=0.0, high=MAX_DURATION_S) if "hold_s" in i else 0.0
        decay_s = r.number(i, "decay_s", f"{path}.decay_s", low=0.0, high=MAX_DURATION_S) if "decay_s" in i else 0.0
        grade = r.integer(i, "grade", f"{path}.grade", low=1, high=4)
        effect = str(i.get("effect", "offset"))
        if effect not in ("offset", "suppress"):
            raise r.fail(f"{path}.effect", i["effect"], r.key_line(i, "effect"), "must be offset or suppress")
        if effect == "suppress" and any(kinds[s].name != "water-meter" for s in sensors):
            reason = "suppress applies to cumulative meters (water-meter) only"
            raise r.fail(f"{path}.effect", effect, r.key_line(i, "effect"), reason)
        result.append(Incident(name, tuple(sensors), start_s, ramp_to, over_s, hold_s, decay_s, grade, effect))
    return tuple(result)


_FAULT_PARAMETERS: dict[FaultType, set[str]] = {
    FaultType.STUCK: set(),
    FaultType.DRIFT: {"rate_per_h"},
    FaultType.SPIKES: {"size", "probability"},
    FaultType.DROPOUT: set(),
    FaultType.LOW_BATTERY: {"battery_pct"},
    FaultType.TAMPER: set(),
    FaultType.CLOCK_SKEW: {"skew_s"},
}


def _faults(r: _Reader, top: CommentedMap, kinds: dict[str, SensorKind]) -> tuple[Fault, ...]:
    node = top["faults"]
    if node is None:
        return ()
    if not isinstance(node, CommentedSeq):
        raise r.fail("faults", node, r.key_line(top, "faults"), "must be a list")
    result = []
    for index, item in enumerate(node):
        path = f"faults[{index}]"
        line = r.key_line(node, index)
        if not isinstance(item, CommentedMap) or not isinstance(item.get("type"), str):
            raise r.fail(f"{path}.type", item, line, f"each fault needs a type: {', '.join(FaultType)}")
        try:
            fault_type = FaultType(item["type"])
        except ValueError:
            raise r.fail(
                f"{path}.type", item["type"], r.key_line(item, "type"), f"one of {', '.join(FaultType)}"
            ) from None
        f = r.mapping(
            item,
            path,
            line,
            required={"sensor", "type", "start_s", *_FAULT_PARAMETERS[fault_type]},
            optional={"duration_s"},
        )
        sensor = f["sensor"]
        if sensor not in kinds:
            raise r.fail(f"{path}.sensor", sensor, r.key_line(f, "sensor"), "no such sensor in gateways")
        kind = kinds[sensor]
        span = kind.maximum - kind.minimum
        params: dict[str, float | int] = {}
        if "rate_per_h" in f:
            params["rate_per_h"] = r.number(f, "rate_per_h", f"{path}.rate_per_h", low=-span, high=span)
        if "size" in f:
            params["size"] = r.number(f, "size", f"{path}.size", low=-span, high=span)
        if "probability" in f:
            params["probability"] = r.number(f, "probability", f"{path}.probability", low=0.0, high=1.0)
        if "skew_s" in f:
            params["skew_s"] = r.number(f, "skew_s", f"{path}.skew_s", low=-86_400.0, high=86_400.0)
        if "battery_pct" in f:
            params["battery_pct"] = r.integer(f, "battery_pct", f"{path}.battery_pct", low=0, high=100)
        start_s = r.number(f, "start_s", f"{path}.start_s", low=0.0, high=MAX_DURATION_S)
        duration_s = None
        if "duration_s" in f:
            duration_s = r.number(f, "duration_s", f"{path}.duration_s", low=0.0, high=MAX_DURATION_S)
        result.append(Fault(str(sensor), fault_type, start_s, duration_s, **params))  # type: ignore[arg-type]
    return tuple(result)


def scenario_from_deployment(
    path: str | Path, *, seed: int = 1, duration_s: float = 86_400.0, sample_interval_s: float = 1.0
) -> Scenario:
    """Normal life for every detector of a hub deployment file (no incidents), so a whole community can be
    simulated from the file that configures it. Only ``community.id`` and each gateway's ``id`` and sensors'
    ``id``, ``kind`` and ``unit_id`` are read; the hub validates the rest (``anju-hub check-config``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(source=str(p), path="", value=str(p), line=None, reason=f"cannot read file: {exc}") from exc
    r = _Reader(str(p))
    try:
        root = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise r.fail("", None, mark.line + 1 if mark else None, f"not valid YAML: {exc.problem}") from exc
    if not isinstance(root, CommentedMap) or not isinstance(root.get("community"), CommentedMap):
        raise r.fail("community", None, 1, "a deployment file has a community mapping")
    community = r.identifier(root["community"], "id", "community.id")
    gateways_node = root.get("gateways")
    if not isinstance(gateways_node, CommentedSeq) or not gateways_node:
        raise r.fail("gateways", gateways_node, r.key_line(root, "gateways"), "must be a non-empty list")
    documents = CommentedMap()
    for index, gateway in enumerate(gateways_node):
        if not isinstance(gateway, CommentedMap) or not isinstance(gateway.get("sensors"), CommentedSeq):
            raise r.fail(f"gateways[{index}]", gateway, r.key_line(gateways_node, index), "needs id and sensors")
        gateway_id = r.identifier(gateway, "id", f"gateways[{index}].id")
        devices = CommentedSeq()
        for s_index, sensor in enumerate(gateway["sensors"]):
            if not isinstance(sensor, CommentedMap):
                raise r.fail(f"gateways[{index}].sensors[{s_index}]", sensor, None, "must be a mapping")
            devices.append(
                CommentedMap(sensor=sensor.get("id"), kind=sensor.get("kind"), unit_id=sensor.get("unit_id"))
            )
        documents[gateway_id] = devices
    scenario_root = CommentedMap(community=community, seed=seed, duration_s=duration_s, gateways=documents)
    scenario_root["sample_interval_s"] = sample_interval_s
    gateways = _gateways(r, scenario_root)
    return Scenario(
        community=community,
        seed=seed,
        sample_interval_s=sample_interval_s,
        duration_s=duration_s,
        gateways=gateways,
        incidents=(),
        source=str(p),
    )
