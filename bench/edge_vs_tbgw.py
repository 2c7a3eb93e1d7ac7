"""Edge agent against ThingsBoard IoT Gateway: CPU per reading, fixed CPU, peak RSS, and the replay rate.

The job (issue 3, "Figures"): 500 detectors sampling at 1 Hz behind Modbus TCP, read by the gateway software
and published to a real Mosquitto, with durable storage on both sides (Anju's SQLite outbox, synchronous=FULL;
ThingsBoard IoT Gateway's own SQLite storage). Everything runs in this one benchmark run, on loopback only:

- ``anju-sim`` serves the 500 detectors of a generated scenario (3 gateways = 3 Modbus TCP servers of 167, 167
  and 166 unit ids: a Modbus unit id is one byte and the simulator serves 1..247 per server);
- Mosquitto (anonymous, 127.0.0.1, free port);
- an acker in this process plays the hub: decodes every Anju batch with ``protocol.decode_batch`` and publishes
  the hub-ack (else the outbox never drains), counts ThingsBoard datapoints on ``v1/gateway/telemetry``, and
  answers ThingsBoard's one-time ``getSessionLimits`` RPC (the recipe's tb_shim.py, else TB never publishes);
- Anju: one ``anju-edge`` per gateway (its config has one Modbus endpoint), configs rendered from a deployment
  file by ``hub.edge_config``, defaults untouched (poll 0.5 s, whole-ring reads, publish 1 s, outbox on); one
  more run polls every 1 s, the period the ThingsBoard connector is given here (``pollPeriod`` 1000 ms), for the
  same freshness on both sides;
- ThingsBoard IoT Gateway 3.8.5 in its own venv (never a dependency of this project): one process with one
  Modbus connector holding 500 slave entries (it shares one TCP connection per host:port), each reading one
  value per second (FC 04, 2 registers int32 at address 22: the raw value of ring entry 0 — TB reads a fixed
  address, it cannot follow a ring), ``reportStrategy`` ON_RECEIVED, SQLite storage, QoS 1.

Measured per process tree from /proc: CPU = utime+stime (+ reaped children), peak RSS = VmHWM. Loads of 100 and
500 sensors give, by a straight line through the two, the CPU per reading (slope) and the fixed CPU per second
(intercept); the 500-sensor run gives the all-in CPU-seconds per 100,000 readings. Readings are counted where
they arrive (the acker), so a gateway that reads but does not deliver gets no credit. Anju's fixed cost is also
measured directly: the same edges polling a simulator whose detectors have stopped sampling (zero new readings).

Replay: with the 500-sensor edges running, the acker goes away for ``outage_s`` like a hub that died (retained
``anju/v1/hub/state`` turns offline, as the hub's Will does; the edges keep reading and hold routine readings in
the outbox), then comes back (state online); the outbox depth (rows in each edge's SQLite file, read-only) is
followed until it is back to its steady level.

``python -m bench edge`` runs it; ``python -m bench.edge_vs_tbgw --help`` lists the knobs. The ThingsBoard part
runs only when ``thingsboard-gateway`` imports in the venv at ``$ANJU_TBGW_VENV`` (default
``~/.cache/anju-bench/tbgw-venv``); ``python -m bench.edge_vs_tbgw --install-tbgw`` creates it with the recipe's
pins (shared/peers/tbgw).
"""

import argparse
import contextlib
import itertools
import json
import os
import queue
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hub.config import load_deployment
from hub.demo.broker import find_mosquitto, mosquitto_config
from hub.demo.processes import Child, Line, free_port, wait_port
from hub.edge_config import EdgeTarget, render_edge_config
from protocol.rejection import Rejection
from protocol.senml import decode_batch
from protocol.session import Ack, GatewayState, encode_ack, encode_state
from protocol.topics import HUB_STATE_TOPIC, Channel, topic

__all__ = ["DEFAULT_TBGW_VENV", "install_tbgw", "run", "tbgw_available"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TBGW_VENV = Path(os.environ.get("ANJU_TBGW_VENV", Path.home() / ".cache" / "anju-bench" / "tbgw-venv"))
TBGW_PINS = ("thingsboard-gateway==3.8.5", "pymodbus==3.9.2", "pyserial", "pyserial-asyncio")
"""The recipe's versions; pymodbus 3.9.2 is what the connector pins (it force-reinstalls any other at start)."""
COMMUNITY = "bench"
GATEWAYS = ("gw-1", "gw-2", "gw-3")
KIND_CYCLE = ("gas", "smoke", "temperature", "water-depth")
TB_VALUE_ADDRESS = 22
"""Ring entry 0, offset +6: the int32 raw value (firmware_sim/README.md, register map)."""
SESSION_LIMITS = {
    "maxPayloadSize": 65536,
    "maxInflightMessages": 100,
    "rateLimits": {"messages": "0:0,", "telemetryMessages": "0:0,", "telemetryDataPoints": "0:0,"},
    "gatewayRateLimits": {"messages": "0:0,", "telemetryMessages": "0:0,", "telemetryDataPoints": "0:0,"},
}
_TICK = os.sysconf("SC_CLK_TCK")


# -- layout: scenario, deployment, edge configs ------------------------------------------------------------


def layout(total: int, gateways: Sequence[str] = GATEWAYS) -> dict[str, list[tuple[str, str, int]]]:
    """``total`` detectors spread evenly over ``gateways``: gateway -> [(sensor id, kind, unit id)].

    A smaller ``total`` takes the first unit ids of each gateway of a larger one, so every load reads a subset
    of the same simulated detectors."""
    if not 1 <= total <= 247 * len(gateways):
        raise ValueError(f"{total} detectors do not fit on {len(gateways)} gateways of 247 unit ids")
    result: dict[str, list[tuple[str, str, int]]] = {}
    for g_index, gateway in enumerate(gateways):
        count = total // len(gateways) + (1 if g_index < total % len(gateways) else 0)
        result[gateway] = [
            (f"{KIND_CYCLE[(unit - 1) % 4][:5].rstrip('-')}-{gateway}-{unit:03d}", KIND_CYCLE[(unit - 1) % 4], unit)
            for unit in range(1, count + 1)
        ]
    return result


def write_scenario(path: Path, sensors: dict[str, list[tuple[str, str, int]]], *, duration_s: int) -> Path:
    lines = [
        "# Generated by bench/edge_vs_tbgw.py: detectors at 1 Hz on 3 gateways, no incident.",
        f"community: {COMMUNITY}",
        "seed: 20261129",
        "sample_interval_s: 1.0",
        f"duration_s: {duration_s}",
        "gateways:",
    ]
    for gateway, items in sensors.items():
        lines.append(f"  {gateway}:")
        lines += [f"    - {{sensor: {s}, kind: {k}, unit_id: {u}}}" for s, k, u in items]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_deployment(path: Path, sensors: dict[str, list[tuple[str, str, int]]], ports: dict[str, int]) -> Path:
    """The deployment file the scenario mirrors (hub/config.py format), from which edge configs are rendered."""
    lines = [
        "# Generated by bench/edge_vs_tbgw.py: mirrors the benchmark scenario.",
        "community: {id: " + COMMUNITY + ", name: Bench community}",
        "grids:",
        "  - {id: grid-1, name: Bench grid, managers: [bench-operator]}",
        "people:",
        "  - {id: bench-operator, name: Bench operator}",
        "gateways:",
    ]
    for gateway, items in sensors.items():
        lines += [
            f"  - id: {gateway}",
            f"    location: bench cabinet {gateway}",
            f"    modbus: {{host: 127.0.0.1, port: {ports[gateway]}}}",
            "    sensors:",
        ]
        lines += [
            f"      - {{id: {s}, kind: {k}, unit_id: {u}, location: unit {u} of {gateway}, grid: grid-1}}"
            for s, k, u in items
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- /proc ---------------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                tree.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    tree = _children()
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 1000:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, ()))
    return found


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and its live descendants, plus what its reaped children used."""
    total = 0.0
    for index, member in enumerate(process_tree(pid)):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(member)
            total += int(fields[11]) + int(fields[12])
            if index == 0:
                total += int(fields[13]) + int(fields[14])
    return total / _TICK


def status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds_distinct(pids: Iterable[int]) -> float:
    """CPU of the processes ``pids`` and their descendants, each process counted once (trees may nest)."""
    tree = _children()
    seen: set[int] = set()
    todo = list(pids)
    total = 0
    while todo and len(seen) < 5000:
        member = todo.pop()
        if member in seen:
            continue
        seen.add(member)
        todo.extend(tree.get(member, ()))
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(member)
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / _TICK, total / _TICK


# -- processes -----------------------------------------------------------------------------------------------


class Logs:
    """Drains every child's output lines into ``logs/<name>.log`` (one thread; bounded by the run)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.lines: queue.Queue[Line] = queue.Queue()
        self._files: dict[str, object] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="bench-logs", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not (self._stop.is_set() and self.lines.empty()):
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            file = self._files.get(line.source)
            if file is None:
                file = self._files[line.source] = (self.directory / f"{line.source}.log").open(
                    "a", encoding="utf-8", buffering=1
                )
            file.write(f"{line.time_s:.3f} {line.text}\n")  # type: ignore[attr-defined]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for file in self._files.values():
            file.close()  # type: ignore[attr-defined]


def start(logs: Logs, name: str, argv: Sequence[str], **kwargs: object) -> Child:
    child = Child(name, list(argv), logs.lines, **kwargs)  # type: ignore[arg-type]
    child.start()
    return child


# -- the acker (plays the hub) ------------------------------------------------------------------------------


@dataclass
class _Contiguous:
    top: int = 0
    above: set[int] = field(default_factory=set)


class Acker:
    """A paho client that acks Anju batches like the hub, counts TB datapoints and answers TB's session RPC."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lock = threading.Lock()
        self.anju_readings = 0
        self.anju_batches = 0
        self.anju_duplicates = 0
        self.rejections = 0
        self.tb_datapoints = 0
        self.tb_messages = 0
        self.session_limit_answers = 0
        self.acking = True
        self._state: dict[tuple[str, int], _Contiguous] = {}
        self._client: paho.Client | None = None
        self._connected = threading.Event()

    def start(self) -> None:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-acker-{free_port()}", protocol=MQTTProtocolVersion.MQTTv311
        )
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.max_inflight_messages_set(100)
        client.will_set(HUB_STATE_TOPIC, self._hub_state("offline"), qos=1, retain=True)
        self._connected.clear()
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        self._client = client
        if not self._connected.wait(10):
            raise RuntimeError("acker did not connect to the broker within 10 s")

    def stop(self) -> None:
        """Go away like a hub that died: the retained hub state turns offline (what the broker does with the
        hub's Will), then the connection closes."""
        if self._client is not None:
            info = self._client.publish(HUB_STATE_TOPIC, self._hub_state("offline"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=5)
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def forget(self) -> None:
        """Drop the per-(gateway, session) seq state before a new set of edges starts: their fresh outboxes
        start again at session 1, seq 1, and must not be taken for duplicates of the previous phase."""
        with self.lock:
            self._state.clear()

    @staticmethod
    def _hub_state(status: str) -> bytes:
        return encode_state(GatewayState(status, 0, time.time()))  # type: ignore[arg-type]

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.anju_readings, self.tb_datapoints

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        client.subscribe(
            [
                (f"anju/v1/{COMMUNITY}/+/data", 1),
                (f"anju/v1/{COMMUNITY}/+/alarm", 1),
                ("v1/gateway/telemetry", 1),
                ("v1/devices/me/rpc/request/+", 1),
            ]
        )
        client.publish(HUB_STATE_TOPIC, self._hub_state("online"), qos=1, retain=True)  # as hub/ingest does
        self._connected.set()

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        name = message.topic
        if name.startswith("anju/"):
            self._anju(client, name, bytes(message.payload))
        elif name == "v1/gateway/telemetry":
            self._tb(bytes(message.payload))
        elif name.startswith("v1/devices/me/rpc/request/"):
            body = orjson.loads(message.payload)
            if body.get("method") == "getSessionLimits":
                request_id = name.rsplit("/", 1)[-1]
                client.publish(f"v1/devices/me/rpc/response/{request_id}", orjson.dumps(SESSION_LIMITS), qos=1)
                with self.lock:
                    self.session_limit_answers += 1

    def _anju(self, client: paho.Client, name: str, payload: bytes) -> None:
        gateway = name.split("/")[3]
        batch = decode_batch(payload, community=COMMUNITY, gateway=gateway)
        with self.lock:
            if isinstance(batch, Rejection):
                self.rejections += 1
                return
            state = self._state.setdefault((gateway, batch.session), _Contiguous())
            if batch.seq <= state.top or batch.seq in state.above:
                self.anju_duplicates += 1
            else:
                self.anju_batches += 1
                self.anju_readings += len(batch.readings)
                state.above.add(batch.seq)
                while state.top + 1 in state.above:
                    state.top += 1
                    state.above.discard(state.top)
            top = state.top
        if self.acking and top:
            client.publish(topic(COMMUNITY, gateway, Channel.ACK), encode_ack(Ack(batch.session, top)), qos=1)

    def _tb(self, payload: bytes) -> None:
        data = orjson.loads(payload)
        points = 0
        for entries in data.values():
            for entry in entries if isinstance(entries, list) else [entries]:
                values = entry.get("values", entry) if isinstance(entry, dict) else {}
                points += len(values)
        with self.lock:
            self.tb_datapoints += points
            self.tb_messages += 1


# -- measuring -----------------------------------------------------------------------------------------------


@dataclass
class Window:
    """One measured window of one system under test."""

    name: str
    sensors: int
    wall_s: float
    cpu_s: float
    readings: int
    slice_cpu_per_s: list[float]
    slice_readings_per_s: list[float]
    peak_rss_kib: dict[str, int]
    rss_kib: dict[str, int]
    machine_busy_cores: float
    ours_busy_cores: float

    @property
    def cpu_per_s(self) -> float:
        """Median over the slices of the window (shared machine: a burst elsewhere moves one slice)."""
        return statistics.median(self.slice_cpu_per_s)

    @property
    def readings_per_s(self) -> float:
        return statistics.median(self.slice_readings_per_s)

    @property
    def ms_per_reading_all_in(self) -> float:
        return 1000 * self.cpu_s / self.readings if self.readings else float("nan")


def measure(
    name: str,
    sensors: int,
    pids: dict[str, int],
    count: Callable[[], int],
    *,
    window_s: float,
    slice_s: float = 10.0,
    all_pids: Callable[[], Iterable[int]],
) -> Window:
    """CPU of ``pids`` and readings counted by ``count`` over ``window_s``, sliced every ``slice_s``."""
    slices = max(1, round(window_s / slice_s))
    step = window_s / slices
    marks: list[tuple[float, float, int]] = []
    busy0, total0 = machine_busy_s()
    ours0 = cpu_seconds_distinct(all_pids())
    for index in range(slices + 1):
        if index:
            time.sleep(max(0.0, marks[0][0] + index * step - time.monotonic()))
        marks.append((time.monotonic(), sum(cpu_seconds(p) for p in pids.values()), count()))
    busy1, total1 = machine_busy_s()
    ours1 = cpu_seconds_distinct(all_pids())
    wall = marks[-1][0] - marks[0][0]
    cpu_rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(marks)]
    reading_rates = [(b[2] - a[2]) / (b[0] - a[0]) for a, b in itertools.pairwise(marks)]
    return Window(
        name=name,
        sensors=sensors,
        wall_s=wall,
        cpu_s=marks[-1][1] - marks[0][1],
        readings=marks[-1][2] - marks[0][2],
        slice_cpu_per_s=cpu_rates,
        slice_readings_per_s=reading_rates,
        peak_rss_kib={label: status_kib(pid, "VmHWM") for label, pid in pids.items()},
        rss_kib={label: status_kib(pid, "VmRSS") for label, pid in pids.items()},
        machine_busy_cores=(busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1),
        ours_busy_cores=(ours1 - ours0) / wall,
    )


def wait_flowing(count: Callable[[], int], expected_per_s: float, *, timeout_s: float, what: str) -> float:
    """Wait until ``count`` grows at >= 90 % of ``expected_per_s`` over 5 s; returns the seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        first = count()
        time.sleep(5.0)
        if count() - first >= 0.9 * expected_per_s * 5.0:
            return time.monotonic() - began
    raise RuntimeError(f"{what}: readings did not reach 90 % of {expected_per_s:.0f}/s within {timeout_s:.0f} s")


# -- the systems under test ----------------------------------------------------------------------------------


@dataclass
class Bench:
    workdir: Path
    logs: Logs
    broker_port: int
    sim_ports: dict[str, int]
    acker: Acker
    tbgw_venv: Path | None
    children: list[Child] = field(default_factory=list)

    def all_pids(self) -> list[int]:
        """Every process of the benchmark: this one (the acker) and the children (broker, simulator, gateways)."""
        return [os.getpid()] + [c.process.pid for c in self.children if c.alive and c.process is not None]

    def stop(self, child: Child, grace_s: float = 15.0) -> None:
        child.stop(grace_s=grace_s)
        if child in self.children:
            self.children.remove(child)

    def start_edges(
        self, label: str, total: int, ports: dict[str, int], poll_interval_s: float | None = None
    ) -> list[Child]:
        directory = self.workdir / label
        directory.mkdir(parents=True, exist_ok=True)
        sensors = layout(total)
        deployment = load_deployment(write_deployment(directory / "deployment.yaml", sensors, ports))
        self.acker.forget()
        edges = []
        for gateway in sensors:
            target = EdgeTarget(
                mqtt_host="127.0.0.1", mqtt_port=self.broker_port, outbox=directory / gateway / "outbox"
            )
            config = directory / gateway / "edge.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            text = render_edge_config(deployment, gateway, target, poll_interval_s=poll_interval_s)
            config.write_text(text, encoding="utf-8")
            argv = [sys.executable, "-m", "edge", "run", "--config", str(config)]
            edges.append(start(self.logs, f"{label}-{gateway}", argv, cwd=REPO))
        self.children += edges
        return edges

    def start_tbgw(self, label: str, total: int) -> Child:
        assert self.tbgw_venv is not None
        directory = self.workdir / label
        config = directory / "config"
        for sub in ("config", "logs", "data/sqlite"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        write_tbgw_config(config, directory, self.broker_port, layout(total), self.sim_ports)
        env = {
            "TB_GW_CONFIG_DIR": str(config) + "/",
            # The update check POSTs to updates.thingsboard.io at start and hourly, with no switch to turn it
            # off: a dead loopback proxy makes it fail here, at once (recipe pitfall).
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        child = start(self.logs, label, [str(self.tbgw_venv / "bin" / "thingsboard-gateway")], env=env, cwd=directory)
        self.children.append(child)
        return child


def write_tbgw_config(
    config: Path,
    directory: Path,
    broker_port: int,
    sensors: dict[str, list[tuple[str, str, int]]],
    ports: dict[str, int],
) -> None:
    """tb_gateway.json, logs.json and modbus.json as in shared/peers/tbgw, storage switched to SQLite."""
    gateway = {
        "thingsboard": {
            "host": "127.0.0.1",
            "port": broker_port,
            "remoteShell": False,
            "remoteConfiguration": False,
            "latencyDebugMode": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 60, "customStatsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False, "filterFile": "list.json"},
            "maxPayloadSizeBytes": 8196,
            "minPackSendDelayMS": 50,
            "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 60,
            "handleDeviceRenaming": True,
            "security": {"type": "accessToken", "accessToken": "bench-gateway-token"},
            "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {
                "checkDeviceInactivity": False,
                "inactivityTimeoutSeconds": 300,
                "inactivityCheckPeriodSeconds": 10,
            },
            "rateLimits": "DEFAULT_TELEMETRY_RATE_LIMIT",
            "dpRateLimits": "DEFAULT_TELEMETRY_DP_RATE_LIMIT",
            "messagesRateLimits": "DEFAULT_MESSAGES_RATE_LIMIT",
            "deviceMessagesRateLimits": "DEFAULT_MESSAGES_RATE_LIMIT",
            "deviceRateLimits": "DEFAULT_TELEMETRY_RATE_LIMIT",
            "deviceDpRateLimits": "DEFAULT_TELEMETRY_DP_RATE_LIMIT",
        },
        # data_file_path must end with '/'; the database is data.db there (recipe).
        "storage": {
            "type": "sqlite",
            "data_file_path": str(directory / "data" / "sqlite") + "/",
            "messages_ttl_check_in_hours": 1,
            "messages_ttl_in_days": 7,
        },
        "grpc": {"enabled": False, "serverPort": 19595},
        "connectors": [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}],
    }
    (config / "tb_gateway.json").write_text(json.dumps(gateway, indent=2), encoding="utf-8")
    loggers = ("database", "service", "connector", "converter", "tb_connection", "storage", "extension")
    handlers: dict[str, object] = {
        "consoleHandler": {
            "class": "logging.StreamHandler",
            "formatter": "LogFormatter",
            "level": 0,
            "stream": "ext://sys.stdout",
        }
    }
    for name in loggers:
        handlers[f"{name}Handler"] = {
            "class": "thingsboard_gateway.tb_utility.tb_rotating_file_handler.TimedRotatingFileHandler",
            "formatter": "LogFormatter",
            "filename": str(directory / "logs" / f"{name}.log"),
            "backupCount": 1,
            "encoding": "utf-8",
        }
    logs = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "LogFormatter": {
                "class": "logging.Formatter",
                "format": "%(asctime)s.%(msecs)03d - |%(levelname)s| - [%(filename)s] - %(module)s - %(funcName)s "
                "- %(lineno)d - %(message)s",
                "datefmt": "%Y-%m-%d %H:%M:%S",
            }
        },
        "handlers": handlers,
        "loggers": {
            name: {"handlers": [f"{name}Handler", "consoleHandler"], "level": "INFO", "propagate": False}
            for name in loggers
        },
        "root": {"level": "ERROR", "handlers": ["consoleHandler"]},
    }
    (config / "logs.json").write_text(json.dumps(logs, indent=2), encoding="utf-8")
    slaves = []
    for gateway_id, items in sensors.items():
        for sensor, kind, unit in items:
            slaves.append(
                {
                    "host": "127.0.0.1",
                    "port": ports[gateway_id],
                    "type": "tcp",
                    "method": "socket",
                    "unitId": unit,
                    "deviceName": sensor,
                    "deviceType": kind,
                    "timeout": 35,
                    "byteOrder": "BIG",
                    "wordOrder": "BIG",
                    "retries": 3,
                    "retryOnEmpty": True,
                    "retryOnInvalid": True,
                    "pollPeriod": 1000,
                    "connectAttemptTimeMs": 5000,
                    "connectAttemptCount": 5,
                    "waitAfterFailedAttemptsMs": 300000,
                    "attributes": [],
                    "timeseries": [
                        {
                            "tag": "raw",
                            "type": "32int",
                            "functionCode": 4,
                            "objectsCount": 2,
                            "address": TB_VALUE_ADDRESS,
                        }
                    ],
                    "attributeUpdates": [],
                    "rpc": [],
                }
            )
    modbus = {"master": {"slaves": slaves}, "id": "5602ec69-6280-42a7-a78c-0402fece1584"}
    (config / "modbus.json").write_text(json.dumps(modbus, indent=2), encoding="utf-8")


def tbgw_available(venv: Path = DEFAULT_TBGW_VENV) -> str | None:
    """None when ThingsBoard IoT Gateway runs from ``venv``, else why not."""
    python = venv / "bin" / "python"
    if not python.exists():
        return f"no venv at {venv} (create it: python -m bench.edge_vs_tbgw --install-tbgw)"
    probe = subprocess.run(
        [str(python), "-c", "import thingsboard_gateway, pymodbus; print(pymodbus.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        return f"thingsboard_gateway does not import in {venv}: {probe.stderr.strip().splitlines()[-1:]}"
    if not (venv / "bin" / "thingsboard-gateway").exists():
        return f"no thingsboard-gateway console script in {venv}/bin"
    return None


def install_tbgw(venv: Path = DEFAULT_TBGW_VENV) -> int:
    """Create ``venv`` and pip-install the recipe's pins (shared/peers/tbgw). Never part of pyproject."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    python = shutil.which("python3.11") or sys.executable
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    result = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *TBGW_PINS], timeout=1200, check=False)
    return result.returncode


# -- outbox depth (replay) -----------------------------------------------------------------------------------


def outbox_depth(paths: Sequence[Path]) -> int:
    """Readings held in the edges' outboxes (unsent + unacknowledged), read-only."""
    total = 0
    for path in paths:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            total += int(db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
    return total


def replay(
    bench: Bench, outboxes: Sequence[Path], edge_pids: dict[str, int], *, outage_s: float, readings_per_s: float
) -> dict[str, float]:
    samples: list[tuple[float, int]] = []

    def sample_for(seconds: float, every: float = 0.5) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append((time.monotonic(), outbox_depth(outboxes)))
            time.sleep(every)

    sample_for(10.0)
    steady = [depth for _, depth in samples]
    steady_max = max(steady)
    cpu0 = sum(cpu_seconds(p) for p in edge_pids.values())
    began = time.monotonic()
    bench.acker.stop()
    sample_for(outage_s, every=1.0)
    cpu_outage = (sum(cpu_seconds(p) for p in edge_pids.values()) - cpu0) / (time.monotonic() - began)
    acked_before, _ = bench.acker.counts()
    peak = outbox_depth(outboxes)
    back = time.monotonic()
    bench.acker.start()
    first_drop = cleared = None
    depth = peak
    trace: list[tuple[float, int]] = [(0.0, peak)]
    while time.monotonic() - back < 180.0:
        depth = outbox_depth(outboxes)
        now = time.monotonic() - back
        trace.append((now, depth))
        if first_drop is None and depth < peak - 1000:
            first_drop = trace[-2][0]
        if depth <= steady_max:
            cleared = now
            break
        time.sleep(0.1)
    if cleared is None:
        raise RuntimeError(f"outbox did not drain within 180 s: {depth} readings left (peak {peak})")
    delivered, _ = bench.acker.counts()
    drained = peak - depth + readings_per_s * cleared
    drain_from_first = cleared - (first_drop or 0.0)
    return {
        "steady_depth_median": statistics.median(steady),
        "steady_depth_max": steady_max,
        "backlog": peak,
        "outage_s": back - began,
        "outage_edge_cpu_per_s": cpu_outage,
        "seconds_to_first_drain": first_drop or 0.0,
        "seconds_to_clear": cleared,
        "readings_per_s_from_return": drained / cleared,
        "readings_per_s_from_first_drain": (drained - readings_per_s * (first_drop or 0.0)) / drain_from_first
        if drain_from_first > 0
        else float("nan"),
        "delivered_during_drain": delivered - acked_before,
    }


# -- the run -------------------------------------------------------------------------------------------------


def _regression(low: Window, high: Window) -> tuple[float, float]:
    """(CPU seconds per reading, fixed CPU seconds per second) through the two loads' medians."""
    slope = (high.cpu_per_s - low.cpu_per_s) / (high.readings_per_s - low.readings_per_s)
    return slope, high.cpu_per_s - slope * high.readings_per_s


def run(
    *,
    window_s: float = 60.0,
    warmup_s: float = 20.0,
    outage_s: float = 60.0,
    loads: tuple[int, int] = (100, 500),
    with_tbgw: bool = True,
    with_replay: bool = True,
    with_idle: bool = True,
    slow_poll_s: float | None = 1.0,
    tbgw_venv: Path = DEFAULT_TBGW_VENV,
    workdir: Path | None = None,
    py_spy: Path | None = None,
    say: Callable[[str], None] = lambda text: print(text, flush=True),
) -> dict[str, object]:
    mosquitto = find_mosquitto()
    if mosquitto is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto): the benchmark needs a real broker")
    why_no_tb = tbgw_available(tbgw_venv) if with_tbgw else "skipped (--no-tbgw)"
    if why_no_tb:
        say(f"ThingsBoard IoT Gateway part skipped: {why_no_tb}")
    workdir = workdir or REPO / "run" / "bench" / f"edge-vs-tbgw-{time.strftime('%Y%m%d-%H%M%S')}"
    workdir.mkdir(parents=True, exist_ok=True)
    logs = Logs(workdir / "logs")
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    results: dict[str, object] = {"workdir": str(workdir), "loadavg_before": load_before, "tbgw_skipped": why_no_tb}
    broker_port = free_port()
    sim_ports = {gateway: free_port() for gateway in GATEWAYS}
    idle_ports = {gateway: free_port() for gateway in GATEWAYS}
    scenario = write_scenario(workdir / "scenario.yaml", layout(max(loads)), duration_s=24 * 3600)
    bench = Bench(workdir, logs, broker_port, sim_ports, Acker(broker_port), None if why_no_tb else tbgw_venv)
    windows: dict[str, Window] = {}
    try:
        bench.children.append(
            start(logs, "mosquitto", [mosquitto, "-c", str(mosquitto_config(port=broker_port, directory=workdir))])
        )
        port_args = [a for g, p in sim_ports.items() for a in ("--port", f"{g}={p}")]
        bench.children.append(
            start(logs, "sim", [sys.executable, "-m", "firmware_sim", "run", str(scenario), *port_args])
        )
        for port in (broker_port, *sim_ports.values()):
            if not wait_port(port, timeout_s=30):
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after 30 s (see {workdir}/logs)")
        bench.acker.start()
        say(f"broker :{broker_port}, simulator {sim_ports} ({max(loads)} detectors at 1 Hz), logs in {workdir}/logs")

        def anju_count() -> int:
            return bench.acker.counts()[0]

        def tb_count() -> int:
            return bench.acker.counts()[1]

        for load in sorted(loads, reverse=True):
            label = f"anju-{load}"
            edges = bench.start_edges(label, load, sim_ports)
            took = wait_flowing(anju_count, load, timeout_s=90, what=label)
            time.sleep(warmup_s)
            pids = {c.name: c.process.pid for c in edges if c.process is not None}
            windows[label] = measure(label, load, pids, anju_count, window_s=window_s, all_pids=bench.all_pids)
            say(_line(windows[label], f"flowing after {took:.0f} s"))
            if load == max(loads) and py_spy is not None:
                profile(pids[f"{label}-gw-1"], py_spy, say)
            if load == max(loads) and with_replay:
                outboxes = [workdir / label / g / "outbox" for g in GATEWAYS]
                results["replay"] = replay(
                    bench, outboxes, pids, outage_s=outage_s, readings_per_s=windows[label].readings_per_s
                )
                say(f"replay: {results['replay']}")
            for edge in edges:
                bench.stop(edge)
            if not why_no_tb:
                label = f"tbgw-{load}"
                gateway = bench.start_tbgw(label, load)
                took = wait_flowing(tb_count, load, timeout_s=120, what=label)
                time.sleep(warmup_s)
                assert gateway.process is not None
                pids = {label: gateway.process.pid}
                windows[label] = measure(label, load, pids, tb_count, window_s=window_s, all_pids=bench.all_pids)
                say(_line(windows[label], f"flowing after {took:.0f} s"))
                bench.stop(gateway)
        if slow_poll_s is not None:
            load = max(loads)
            label = f"anju-{load}-poll{slow_poll_s:g}s"
            edges = bench.start_edges(label, load, sim_ports, poll_interval_s=slow_poll_s)
            took = wait_flowing(anju_count, load, timeout_s=90, what=label)
            time.sleep(warmup_s)
            pids = {c.name: c.process.pid for c in edges if c.process is not None}
            windows["anju-slow-poll"] = measure(
                label, load, pids, anju_count, window_s=window_s, all_pids=bench.all_pids
            )
            say(
                _line(
                    windows["anju-slow-poll"],
                    f"poll_interval_s = {slow_poll_s:g} (default 0.5); flowing after {took:.0f} s",
                )
            )
            for edge in edges:
                bench.stop(edge)
        if with_idle:
            port_args = [a for g, p in idle_ports.items() for a in ("--port", f"{g}={p}")]
            idle_sim = start(
                logs,
                "sim-idle",
                [sys.executable, "-m", "firmware_sim", "run", str(scenario), "--duration", "1", *port_args],
            )
            bench.children.append(idle_sim)
            for port in idle_ports.values():
                if not wait_port(port, timeout_s=30):
                    raise RuntimeError(f"idle simulator does not listen on {port}")
            load = max(loads)
            edges = bench.start_edges("anju-idle", load, idle_ports)
            time.sleep(warmup_s + 5.0)
            pids = {c.name: c.process.pid for c in edges if c.process is not None}
            windows["anju-idle"] = measure(
                "anju-idle", load, pids, anju_count, window_s=window_s, all_pids=bench.all_pids
            )
            say(_line(windows["anju-idle"], "detectors not sampling: polling only"))
            for edge in edges:
                bench.stop(edge)
            bench.stop(idle_sim)
        results["acker"] = {
            "anju_batches": bench.acker.anju_batches,
            "anju_duplicates": bench.acker.anju_duplicates,
            "rejections": bench.acker.rejections,
            "tb_messages": bench.acker.tb_messages,
            "session_limit_answers": bench.acker.session_limit_answers,
        }
    finally:
        bench.acker.stop()
        for child in reversed(list(bench.children)):
            bench.stop(child)
        logs.close()
    results["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    results["windows"] = windows
    results.update(summarise(windows, loads))
    return results


def _line(window: Window, note: str) -> str:
    return (
        f"{window.name}: {window.readings} readings delivered in {window.wall_s:.0f} s "
        f"(median {window.readings_per_s:.1f}/s), CPU median {1000 * window.cpu_per_s:.0f} ms/s "
        f"(slices {', '.join(f'{1000 * r:.0f}' for r in window.slice_cpu_per_s)}), "
        f"all-in {window.ms_per_reading_all_in:.3f} ms/reading, peak RSS "
        f"{', '.join(f'{k} {v / 1024:.1f} MiB' for k, v in window.peak_rss_kib.items())}; "
        f"machine busy {window.machine_busy_cores:.2f} of {os.cpu_count()} cores, of which the bench's processes "
        f"{window.ours_busy_cores:.2f}; {note}"
    )


def summarise(windows: dict[str, Window], loads: tuple[int, int]) -> dict[str, object]:
    low, high = sorted(loads)
    out: dict[str, object] = {}
    for system in ("anju", "tbgw"):
        a, b = windows.get(f"{system}-{low}"), windows.get(f"{system}-{high}")
        if a is None or b is None:
            continue
        slope, fixed = _regression(a, b)
        out[system] = {
            "ms_per_reading": 1000 * slope,
            "fixed_ms_per_s": 1000 * fixed,
            "cpu_s_per_100k_readings_all_in": b.cpu_s / b.readings * 100_000 if b.readings else float("nan"),
            "readings_delivered": b.readings,
            "readings_per_s": b.readings_per_s,
            "peak_rss_mib": {k: v / 1024 for k, v in b.peak_rss_kib.items()},
            "processes": len(b.peak_rss_kib),
        }
    if "anju-slow-poll" in windows:
        slow = windows["anju-slow-poll"]
        out["anju_slow_poll"] = {
            "label": slow.name,
            "cpu_ms_per_s": 1000 * slow.cpu_per_s,
            "cpu_s_per_100k_readings_all_in": slow.cpu_s / slow.readings * 100_000 if slow.readings else float("nan"),
            "readings_per_s": slow.readings_per_s,
        }
    if "anju-idle" in windows:
        idle = windows["anju-idle"]
        out["anju_idle_ms_per_s"] = 1000 * idle.cpu_per_s
    if "anju" in out and "tbgw" in out:
        anju, tb = out["anju"], out["tbgw"]
        assert isinstance(anju, dict) and isinstance(tb, dict)
        out["ratios"] = {
            "per_reading": anju["ms_per_reading"] / tb["ms_per_reading"],
            "fixed": anju["fixed_ms_per_s"] / tb["fixed_ms_per_s"],
            "all_in_per_100k": anju["cpu_s_per_100k_readings_all_in"] / tb["cpu_s_per_100k_readings_all_in"],
            "peak_rss_total": sum(anju["peak_rss_mib"].values()) / sum(tb["peak_rss_mib"].values()),
        }
    return out


def profile(pid: int, out: Path, say: Callable[[str], None], seconds: int = 20) -> None:
    """py-spy (when installed in this venv) samples one edge from outside, without pausing it (--nonblocking)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        say("py-spy not installed in this venv: no profile")
        return
    result = subprocess.run(
        [spy, "record", "--nonblocking", "-r", "50", "-d", str(seconds), "-f", "raw", "-o", str(out), "-p", str(pid)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    say(f"py-spy profile of pid {pid} -> {out} (exit {result.returncode})")


def report(results: dict[str, object], say: Callable[[str], None] = lambda text: print(text, flush=True)) -> None:
    anju, tb, ratios = results.get("anju"), results.get("tbgw"), results.get("ratios")
    if isinstance(anju, dict):
        say(
            f"Anju edge ({anju['processes']} processes, one per Modbus gateway): "
            f"{anju['ms_per_reading']:.3f} ms CPU per reading, fixed {anju['fixed_ms_per_s']:.0f} ms/s (regression "
            f"over two loads); all-in {anju['cpu_s_per_100k_readings_all_in']:.1f} CPU-s per 100,000 readings; "
            f"peak RSS {', '.join(f'{v:.1f}' for v in anju['peak_rss_mib'].values())} MiB; "
            f"{anju['readings_delivered']} readings delivered ({anju['readings_per_s']:.1f}/s)"
        )
    if "anju_idle_ms_per_s" in results:
        say(f"Anju edge, detectors not sampling (fixed, measured directly): {results['anju_idle_ms_per_s']:.0f} ms/s")
    slow = results.get("anju_slow_poll")
    if isinstance(slow, dict):
        say(
            f"Anju edge, {slow['label']}: {slow['cpu_ms_per_s']:.0f} ms/s, all-in "
            f"{slow['cpu_s_per_100k_readings_all_in']:.1f} CPU-s per 100,000 readings ({slow['readings_per_s']:.1f}/s)"
        )
    if isinstance(tb, dict):
        say(
            f"ThingsBoard IoT Gateway 3.8.5 (1 process, SQLite storage): "
            f"{tb['ms_per_reading']:.3f} ms CPU per reading, fixed {tb['fixed_ms_per_s']:.0f} ms/s; "
            f"all-in {tb['cpu_s_per_100k_readings_all_in']:.1f} CPU-s per "
            f"100,000 readings; peak RSS {', '.join(f'{v:.1f}' for v in tb['peak_rss_mib'].values())} MiB; "
            f"{tb['readings_delivered']} readings delivered ({tb['readings_per_s']:.1f}/s)"
        )
    elif results.get("tbgw_skipped"):
        say(f"ThingsBoard IoT Gateway: not run — {results['tbgw_skipped']}")
    if isinstance(ratios, dict):
        say(
            "ratios Anju/TB (target <= 0.5 per reading and fixed): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
        )
    replayed = results.get("replay")
    if isinstance(replayed, dict):
        say(
            f"replay after a {replayed['outage_s']:.0f} s hub outage: backlog {replayed['backlog']:.0f} readings, "
            f"cleared in {replayed['seconds_to_clear']:.1f} s ({replayed['readings_per_s_from_return']:.0f} readings/s "
            f"from the hub's return; {replayed['readings_per_s_from_first_drain']:.0f}/s from the first drop, "
            f"{replayed['seconds_to_first_drain']:.1f} s after the return)"
        )
    say(f"load average before {results.get('loadavg_before')}, after {results.get('loadavg_after')}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.edge_vs_tbgw", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--install-tbgw", action="store_true", help="create the ThingsBoard venv and exit")
    return parser


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--window", type=float, default=60.0, help="measured seconds per system and load (60)")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds after readings flow, before measuring (20)")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the acker stays away for replay (60)")
    parser.add_argument("--loads", default="100,500", help="two sensor counts for the regression (100,500)")
    parser.add_argument("--no-tbgw", action="store_true", help="skip ThingsBoard IoT Gateway")
    parser.add_argument("--no-replay", action="store_true", help="skip the replay measurement")
    parser.add_argument("--no-idle", action="store_true", help="skip Anju's zero-new-readings run")
    parser.add_argument(
        "--slow-poll",
        type=float,
        default=1.0,
        help="extra Anju run at this poll_interval_s, 0 to skip (1: the period TB's connector polls at here)",
    )
    parser.add_argument("--tbgw-venv", type=Path, default=DEFAULT_TBGW_VENV, help=f"default {DEFAULT_TBGW_VENV}")
    parser.add_argument("--workdir", type=Path, default=None, help="default run/bench/edge-vs-tbgw-TIMESTAMP")
    parser.add_argument("--py-spy", type=Path, default=None, help="write a py-spy raw profile of one edge here")


def run_from_args(args: argparse.Namespace) -> dict[str, object]:
    low, high = (int(v) for v in args.loads.split(","))
    return run(
        window_s=args.window,
        warmup_s=args.warmup,
        outage_s=args.outage,
        loads=(low, high),
        with_tbgw=not args.no_tbgw,
        with_replay=not args.no_replay,
        with_idle=not args.no_idle,
        slow_poll_s=args.slow_poll or None,
        tbgw_venv=args.tbgw_venv,
        workdir=args.workdir,
        py_spy=args.py_spy,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.install_tbgw:
        return install_tbgw(args.tbgw_venv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop every child
    results = run_from_args(args)
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
