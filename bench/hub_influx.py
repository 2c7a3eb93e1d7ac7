"""Readings into InfluxDB 1.x three ways, same stream, same run: a bare line-protocol writer, Node-RED, and Anju.

The stream (issue 4, "Figures"): ``GATEWAYS`` × ``SENSORS_PER_GATEWAY`` sensors at ``RATE_HZ``, 100-reading
SenML batches, one per gateway and round, the load generator's sensor ids. One influxd (Debian's 1.6, data in a
temporary folder, loopback, ``wal-fsync-delay = 0s``) takes every path, each run into a fresh database that is
dropped after its count is checked (so no continuous query of an earlier run works during a later one).

- reference, the server's own ceiling with one writer: a bare writer — one f-string per point from columns of
  the stream (value repr, flags, ms time), ``POST /write?precision=ms`` in ``BATCH_LINES``-line requests over one
  pooled httpx client, one request in flight; no MQTT, no decoding, no dedup, no checks, no local state.
- Anju end to end, the figure the issue asks for: ``python -m hub serve`` with a deployment whose ``storage:``
  selects the influxdb backend, fed through Mosquitto (QoS 1): decode and validation of every batch, detection,
  ``InfluxStore.commit`` of each round (the same 5,000-line requests, two in flight, then the session marks in
  SQLite with ``synchronous=FULL``), hub-ack after the commit. Its rate is the hub's own
  ``anju_readings_stored_total``.
- Node-RED 4.1 with node-red-contrib-influxdb 0.7 (bench/nodered.py: installed by npm on first use into
  ``run/peers/nodered``, never a dependency of this project; our settings and flow): MQTT-in (QoS 1, parsed JSON)
  → a function node turning the SenML pack into points with Anju's measurement, tags and fields → ``influxdb
  batch`` (1.x, precision ms). Its rate is points landed in InfluxDB.

Method for the two MQTT consumers, alike (the hub's capacity with the CPU to itself, as in bench/hub_ingest.py):
the consumer connects once with a persistent session (clean session off) and stops; ``anju-sim load`` publishes
``BACKLOG_S`` of the stream (``BACKLOG_READINGS`` readings) into the broker and stays connected (its gateways
online, waiting for hub-acks; no replays), a QoS 1 observer in this process counting what it published; the
consumer starts again and drains the backlog into InfluxDB. The window runs from the first reading stored to the
last; progress is polled every ``POLL_S`` (the hub's /metrics; for Node-RED InfluxDB's own per-shard
``writePointsOk`` from ``SHOW STATS``, which costs the server nothing like a ``count()`` would). Every run's
points are checked with ``count()`` at the end, and the hub's with the fleet's own count of hub-acked readings;
the errors Node-RED's catch node logged are counted by message. CPU (utime+stime of the process tree, /proc) over
the window; peak RSS = VmHWM of a process started for the drain. Only Mosquitto, influxd and the waiting fleet
(taking hub-acks) share the two cores with the consumer, and both consumers get the same burst: Node-RED has no
back-pressure (it PUBACKs on receipt and holds what it has not written), the hub keeps at most its QoS 1
in-flight window and its bounded inbox. After each drain the consumer's session and the fleet's retained gateway
states are cleared, so the next consumer starts from the same broker state.

Runs alternate (bare, store; Node-RED, hub; then in reverse order), ``REPEATS`` times; figures are medians.
Also printed: ``InfluxStore.commit`` driven directly by this process with the bare writer's columns (no MQTT,
no hub), the store's own cost. ``python -m bench hub_influx`` runs it (about 4 minutes, plus ~20 s for the npm
install on first use); configs and logs go to run/bench/hub-influx-TIMESTAMP.
"""

import contextlib
import json
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

import httpx
import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench import nodered
from bench.common import hub_metrics, loadavg, run_dir
from bench.edge_vs_tbgw import Logs, cpu_seconds, start, status_kib
from firmware_sim.load_plan import LoadOptions
from hub.demo.broker import find_mosquitto, mosquitto_config
from hub.demo.influxd import find_influxd, running_influxd
from hub.demo.processes import Child, free_port, wait_port
from hub.store.base import ReadingColumns, SessionMark
from hub.store.influx import InfluxStore
from hub.store.influx_http import InfluxTarget
from protocol.kinds import KINDS
from protocol.senml import Batch, Reading, encode_batch
from protocol.topics import Channel, subscription, topic

__all__ = ["BACKLOG_READINGS", "BATCH_LINES", "Drain", "Fleet", "bare_writer", "report", "run", "stream"]

REPO = Path(__file__).resolve().parents[1]
COMMUNITY = "load"
GATEWAYS = 20
SENSORS_PER_GATEWAY = 100
BATCH = 100
RATE_HZ = 100.0
"""Per sensor: 20 × 100 × 100 Hz = 200,000 readings/s offered while the backlog is queued."""
ROUND_MESSAGES = 500
"""Messages per ingest round (the hub's ``batch_messages``): 50,000 readings a commit."""
ROUNDS = 20
"""1,000,000 readings per direct run (bare writer, ``InfluxStore.commit``)."""
BATCH_LINES = 5_000
REPEATS = 3
BACKLOG_S = 8.0
BACKLOG_READINGS = int(GATEWAYS * SENSORS_PER_GATEWAY * RATE_HZ * BACKLOG_S)
"""1,600,000 readings (16,000 messages) queued in the broker for each drain."""
MAX_QUEUED_MESSAGES = 100_000
"""Per client in Mosquitto: six times the backlog, so the broker drops nothing it queued (stock: 1,000)."""
POLL_S = 0.25
STALL_S = 15.0
"""A drain ends when nothing more landed for this long (or everything did)."""
DRAIN_TIMEOUT_S = 150.0
"""Longest drain followed; also how long the fleet waits for hub-acks after publishing."""
START_TIMEOUT_S = 60.0
SETTLE_S = 1.5
"""The backlog is queued when the observer has seen no new data message for this long."""
NODE_RED_CLIENT_ID = "anju-bench-nodered"
HUB_CLIENT_ID = "anju-bench-hub"


# -- the direct paths: bare writer and InfluxStore.commit ------------------------------------------------------


def _load_options() -> LoadOptions:
    return LoadOptions(community=COMMUNITY, gateways=GATEWAYS, sensors_per_gateway=SENSORS_PER_GATEWAY)


def stream() -> list[ReadingColumns]:
    """The stream as ingest rounds of columns: each 100-reading message is one gateway's 100 sensors at one time.

    Sensor and gateway ids are the load generator's, times step at ``RATE_HZ`` from ten minutes ago, values
    carry two decimals: the same line bytes per point as the MQTT paths write."""
    options = _load_options()
    rng = np.random.default_rng(20261129)
    t0 = time.time_ns() // 1_000_000 - 600_000
    step_ms = int(1000 / RATE_HZ)
    gateway_ids = options.gateway_ids()
    names = [[sensor for sensor, _ in options.sensors(gateway)] for gateway in gateway_ids]
    rounds = []
    for r in range(ROUNDS):
        sensors: list[str] = []
        gateways: list[str] = []
        times = []
        for m in range(ROUND_MESSAGES):
            tick = r * (ROUND_MESSAGES // GATEWAYS) + m // GATEWAYS
            gateway = m % GATEWAYS
            sensors += names[gateway]
            gateways += [gateway_ids[gateway]] * BATCH
            times.append(np.full(BATCH, t0 + tick * step_ms, np.int64))
        n = len(sensors)
        values = np.round(rng.uniform(0, 30, n), 2)
        rounds.append(ReadingColumns(sensors, gateways, np.concatenate(times), values, np.zeros(n, np.uint8)))
    return rounds


def bare_writer(url: str, database: str, rounds: list[ReadingColumns]) -> None:
    """The reference: line protocol straight from the columns, ``BATCH_LINES`` per request, nothing else."""
    with httpx.Client(base_url=url, timeout=30.0, trust_env=False) as client:
        params = {"db": database, "rp": "anju_raw", "precision": "ms"}
        for columns in rounds:
            lines = [
                f"reading,community={COMMUNITY},gateway={g},sensor={s} value={v!r},flags={f}i {t}"
                for s, g, v, f, t in zip(
                    columns.sensor,
                    columns.gateway,
                    columns.value.tolist(),
                    columns.flags.tolist(),
                    columns.time_ms.tolist(),
                    strict=True,
                )
            ]
            for first in range(0, len(lines), BATCH_LINES):
                body = ("\n".join(lines[first : first + BATCH_LINES]) + "\n").encode()
                response = client.post("/write", params=params, content=body)
                if response.status_code != 204:
                    raise RuntimeError(f"bare writer: HTTP {response.status_code}: {response.text}")


def store_commits(store: InfluxStore, rounds: list[ReadingColumns]) -> None:
    gateway_ids = _load_options().gateway_ids()
    for index, columns in enumerate(rounds):
        store.commit(columns, [], [SessionMark(gateway, 1, index + 1) for gateway in gateway_ids])


# -- InfluxDB, over plain HTTP ---------------------------------------------------------------------------------


class Influx:
    """The bench's view of the server: create and drop databases, count points, read per-shard write counters."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = httpx.Client(base_url=url, timeout=60.0, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def _query(self, statement: str, *, write: bool = False) -> list[dict[str, object]]:
        if write:
            response = self._client.post("/query", data={"q": statement})
        else:
            response = self._client.get("/query", params={"q": statement})
        if response.status_code != 200:
            raise RuntimeError(f"InfluxDB {statement!r}: HTTP {response.status_code}: {response.text[:300]}")
        [result] = response.json()["results"]
        if "error" in result:
            raise RuntimeError(f"InfluxDB {statement!r}: {result['error']}")
        series: list[dict[str, object]] = result.get("series", [])
        return series

    def create(self, database: str) -> None:
        self._query(f'CREATE DATABASE "{database}"', write=True)

    def drop(self, database: str) -> None:
        self._query(f'DROP DATABASE "{database}"', write=True)

    def count(self, database: str, retention_policy: str, *, since_ms: int | None = None) -> int:
        """Points of ``reading`` stored (``count(value)``: one per distinct series and timestamp), from
        ``since_ms`` (Unix ms) on when given."""
        where = "" if since_ms is None else f" WHERE time >= {since_ms}ms"
        series = self._query(f'SELECT count(value) FROM "{database}"."{retention_policy}"."reading"{where}')
        total = 0
        for one in series:
            values = one.get("values")
            assert isinstance(values, list)
            total += sum(int(row[1]) for row in values)
        return total

    def points_written(self, database: str, retention_policy: str) -> int:
        """Points the server accepted into ``database``/``retention_policy`` since it started (``writePointsOk``
        of its shards): a cheap progress counter — a point written twice counts twice, so ``count`` checks."""
        total = 0
        for one in self._query("SHOW STATS FOR 'shard'"):
            tags = one.get("tags")
            columns, values = one.get("columns"), one.get("values")
            if not isinstance(tags, dict) or not isinstance(columns, list) or not isinstance(values, list):
                continue
            if tags.get("database") == database and tags.get("retentionPolicy") == retention_policy:
                total += int(values[0][columns.index("writePointsOk")])
        return total


# -- MQTT: sessions, probe, the fleet --------------------------------------------------------------------------


def _mqtt_session(port: int, client_id: str, *, action: Callable[[paho.Client], None] | None = None) -> None:
    """Connect as ``client_id`` with a clean session (which discards what the broker kept for that id), run
    ``action``, disconnect. Bounded: raises when the broker does not accept the connection within 10 s."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=MQTTProtocolVersion.MQTTv311
    )
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError(f"the broker on 127.0.0.1:{port} did not accept {client_id} within 10 s")
        if action is not None:
            action(client)
    finally:
        client.disconnect()
        client.loop_stop()


def tidy_broker(port: int, client_ids: Sequence[str]) -> None:
    """After a drain: drop the consumer's persistent sessions (the broker queues nothing more for them) and the
    fleet's retained gateway states (the next consumer must not start with 20 gateways already offline)."""

    def clear_states(client: paho.Client) -> None:
        infos = [
            client.publish(topic(COMMUNITY, gateway, Channel.STATE), b"", qos=1, retain=True)
            for gateway in _load_options().gateway_ids()
        ]
        for info in infos:
            info.wait_for_publish(timeout=5)

    for client_id in client_ids:
        _mqtt_session(port, client_id)
    _mqtt_session(port, f"anju-bench-tidy-{secrets.token_hex(4)}", action=clear_states)


def publish_probe(port: int, gateway: str) -> None:
    """One 1-reading batch on the data topic (an hour ago, so it cannot collide with the stream)."""
    sensor, kind = _load_options().sensors(gateway)[0]
    reading = Reading(sensor, time.time_ns() // 1_000_000 - 3_600_000, 1.0, KINDS[kind].unit)
    payload = encode_batch(Batch(COMMUNITY, gateway, 1, 1, (reading,)))

    def send(client: paho.Client) -> None:
        client.publish(topic(COMMUNITY, gateway, Channel.DATA), payload, qos=1).wait_for_publish(timeout=5)

    _mqtt_session(port, f"anju-bench-probe-{secrets.token_hex(4)}", action=send)


class _Observer:
    """Counts the readings the fleet publishes (SenML records per data message) while the backlog is queued."""

    def __init__(self, port: int) -> None:
        self.readings = 0
        self.last_s = 0.0
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"anju-bench-observer-{secrets.token_hex(4)}",
            clean_session=True,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        subscribed = threading.Event()
        self._client.on_connect = lambda client, *_: client.subscribe(
            subscription(Channel.DATA, community=COMMUNITY), 1
        )
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.on_message = self._count
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        if not subscribed.wait(10):
            self.close()
            raise RuntimeError(f"the observer could not subscribe on 127.0.0.1:{port} within 10 s")

    def _count(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        self.readings += bytes(message.payload).count(b'"n":')
        self.last_s = time.monotonic()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass(slots=True)
class Fleet:
    """``anju-sim load`` after it queued the backlog: still connected (its gateways online, waiting for hub-acks
    up to ``DRAIN_TIMEOUT_S``, no replays), and what it published."""

    child: Child
    report_path: Path
    readings: int

    def acked(self, *, timeout_s: float) -> int | None:
        """Readings the fleet saw hub-acked, from its report once it has ended (None if it did not, in time)."""
        assert self.child.process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.child.process.wait(timeout=timeout_s)
        with contextlib.suppress(OSError, ValueError, KeyError):
            return int(json.loads(self.report_path.read_text(encoding="utf-8"))["acked_readings"])
        return None


def queue_backlog(workdir: Path, logs: Logs, port: int, label: str) -> Fleet:
    """The fleet publishes ``BACKLOG_S`` of the stream while no consumer is connected; returns once it has
    published everything (the observer saw no new data for ``SETTLE_S``). The caller stops the fleet."""
    report_path = workdir / f"{label}-load.json"
    argv = [sys.executable, "-m", "firmware_sim", "load", "--port", str(port), "--community", COMMUNITY]
    argv += ["--gateways", str(GATEWAYS), "--sensors-per-gateway", str(SENSORS_PER_GATEWAY)]
    argv += ["--rate", f"{RATE_HZ:g}", "--batch", str(BATCH), "--duration", f"{BACKLOG_S:g}"]
    argv += ["--ack-timeout", "3600", "--max-unacked", str(int(SENSORS_PER_GATEWAY * RATE_HZ * (BACKLOG_S + 5)))]
    argv += ["--drain", f"{DRAIN_TIMEOUT_S:g}", "--report", str(report_path)]
    observer = _Observer(port)
    try:
        child = start(logs, f"{label}-load", argv, cwd=REPO)
        try:
            deadline = time.monotonic() + BACKLOG_S + START_TIMEOUT_S
            while observer.readings == 0 or time.monotonic() - observer.last_s < SETTLE_S:
                if not child.alive:
                    raise RuntimeError(f"anju-sim load ended early (see {logs.directory}/{label}-load.log)")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"anju-sim load did not publish its backlog within {deadline:.0f} s")
                time.sleep(0.1)
        except BaseException:
            child.kill()
            raise
    finally:
        observer.close()
    return Fleet(child, report_path, observer.readings)


# -- following a drain -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drain:
    """One consumer draining the queued backlog into InfluxDB."""

    system: str
    backlog: int
    """Readings published into the broker for this drain."""
    stored: int
    """Points of the stream in InfluxDB afterwards (``count()``, the probe excluded)."""
    acked: int | None
    """Readings the fleet saw hub-acked (Anju; Node-RED has no application ack)."""
    readings_per_s: float
    """The system's own rate over the window: the hub's stored counter; for Node-RED, points landed."""
    landed_per_s: float
    """Points InfluxDB accepted into the database per second over the same window (``writePointsOk``)."""
    window_s: float
    cpu_cores: float
    """The consumer's process tree over the window."""
    influxd_cpu_us: float
    """influxd's CPU per reading landed over the window."""
    peak_rss_mib: float
    """The consumer's VmHWM (it was started for this drain)."""
    errors: str = ""
    """Errors the consumer logged, by message (Node-RED's catch node)."""


@dataclass(slots=True)
class _Sample:
    time_s: float
    progress: int
    landed: int
    cpu_s: float
    influxd_cpu_s: float


def follow(
    progress: Callable[[], int], landed: Callable[[], int], *, expected: int, pid: int, influxd_pid: int, what: str
) -> tuple[_Sample, _Sample]:
    """Poll until ``progress`` reaches ``expected`` or stops moving; returns the samples at the window's ends:
    the first that saw progress and the last that saw it change."""
    began = time.monotonic()
    first: _Sample | None = None
    last: _Sample | None = None
    while time.monotonic() - began < DRAIN_TIMEOUT_S:
        sample = _Sample(time.monotonic(), progress(), landed(), cpu_seconds(pid), cpu_seconds(influxd_pid))
        if first is None:
            if sample.progress > 0:
                first = last = sample
            elif sample.time_s - began > START_TIMEOUT_S:
                raise RuntimeError(f"{what}: nothing stored within {START_TIMEOUT_S:.0f} s")
        elif last is not None and sample.progress > last.progress:  # a failed scrape reads 0: not progress
            last = sample
        if last is not None and (sample.progress >= expected or sample.time_s - last.time_s > STALL_S):
            break
        time.sleep(POLL_S)
    if first is None or last is None or last is first:
        raise RuntimeError(f"{what}: no drain observed within {DRAIN_TIMEOUT_S:.0f} s")
    return first, last


def _drain(
    system: str,
    window: tuple[_Sample, _Sample],
    *,
    backlog: int,
    stored: int,
    acked: int | None,
    peak_kib: int,
    errors: str = "",
    say: Callable[[str], None],
) -> Drain:
    first, last = window
    seconds = last.time_s - first.time_s
    landed = last.landed - first.landed
    drain = Drain(
        system=system,
        backlog=backlog,
        stored=stored,
        acked=acked,
        readings_per_s=(last.progress - first.progress) / seconds,
        landed_per_s=landed / seconds,
        window_s=seconds,
        cpu_cores=(last.cpu_s - first.cpu_s) / seconds,
        influxd_cpu_us=(last.influxd_cpu_s - first.influxd_cpu_s) / max(1, landed) * 1e6,
        peak_rss_mib=peak_kib / 1024,
        errors=errors,
    )
    if stored != backlog:
        say(f"  WARNING {system}: {stored:,} of the {backlog:,} readings published are in InfluxDB")
    if acked is not None and acked != backlog:
        say(f"  WARNING {system}: the fleet saw {acked:,} of its {backlog:,} readings hub-acked")
    return drain


def _wait(check: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, httpx.HTTPError):
            if check():
                return
        time.sleep(every_s)
    raise RuntimeError(f"{what} within {timeout_s:.0f} s")


# -- Node-RED --------------------------------------------------------------------------------------------------


def nodered_drain(
    workdir: Path,
    logs: Logs,
    peer: nodered.NodeRed,
    influx: Influx,
    *,
    broker_port: int,
    influxd_pid: int,
    say: Callable[[str], None],
) -> Drain:
    database = f"nodered_{uuid.uuid4().hex[:8]}"
    influx.create(database)
    flow = nodered.flows(
        broker_port=broker_port,
        client_id=NODE_RED_CLIENT_ID,
        topic_filter=subscription(Channel.DATA, community=COMMUNITY),
        influx_port=int(influx.url.rsplit(":", 1)[1]),
        database=database,
    )
    peer.configure(flow)
    fleet: Fleet | None = None
    try:
        # The session: subscribe once (a probe batch proves the whole path), stop, queue the backlog, start again.
        child = peer.start()
        try:
            gateway = _load_options().gateway_ids()[0]

            def probe_landed() -> bool:
                publish_probe(broker_port, gateway)
                return influx.points_written(database, "autogen") > 0

            _wait(probe_landed, timeout_s=START_TIMEOUT_S, what="Node-RED wrote no probe to InfluxDB", every_s=1.0)
        finally:
            child.stop(grace_s=10.0)
        queued_from_ms = time.time_ns() // 1_000_000 - 1_000  # the stream's times start later, the probe's earlier
        fleet = queue_backlog(workdir, logs, broker_port, f"nodered-{peer.starts}")
        base = influx.points_written(database, "autogen")
        child = peer.start()
        try:
            assert child.process is not None
            pid = child.process.pid
            window = follow(
                lambda: influx.points_written(database, "autogen") - base,
                lambda: influx.points_written(database, "autogen") - base,
                expected=fleet.readings,
                pid=pid,
                influxd_pid=influxd_pid,
                what="Node-RED",
            )
            peak_kib = status_kib(pid, "VmHWM")
        finally:
            child.stop(grace_s=10.0)
        stored = influx.count(database, "autogen", since_ms=queued_from_ms)
        _wait(logs.lines.empty, timeout_s=10.0, what="the Node-RED log was not written")
        time.sleep(0.5)  # the line being written
        logged = nodered.logged_errors(logs.directory / f"nodered-{peer.starts}.log")
        errors = ", ".join(f"{text} ×{count}" for text, count in logged.most_common())
    finally:
        if fleet is not None:
            fleet.child.kill()  # it waits for hub-acks that Node-RED never sends
        with contextlib.suppress(RuntimeError, OSError):
            tidy_broker(broker_port, [NODE_RED_CLIENT_ID])
        with contextlib.suppress(RuntimeError, httpx.HTTPError):
            influx.drop(database)
    return _drain(
        "nodered", window, backlog=fleet.readings, stored=stored, acked=None, peak_kib=peak_kib, errors=errors, say=say
    )


# -- the hub ---------------------------------------------------------------------------------------------------


_metrics = hub_metrics


def hub_drain(
    workdir: Path,
    logs: Logs,
    influx: Influx,
    *,
    deployment_text: str,
    broker_port: int,
    influxd_pid: int,
    say: Callable[[str], None],
) -> Drain:
    label = f"hub-{uuid.uuid4().hex[:8]}"
    database = label.replace("-", "_")
    deployment = workdir / f"deployment-{database}.yaml"
    storage = f'storage:\n  backend: influxdb\n  influxdb: {{url: "{influx.url}", database: {database}}}\n'
    deployment.write_text(deployment_text + storage, encoding="utf-8")
    token_file = workdir / "api-token"
    token_file.write_text(secrets.token_hex(24) + "\n", encoding="utf-8")
    http_port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="anju-bench-influx-hub-"))
    argv = [sys.executable, "-m", "hub", "--log-level", "warning", "serve", "--config", str(deployment)]
    argv += ["--data-dir", str(data_dir), "--mqtt-port", str(broker_port), "--http-port", str(http_port)]
    argv += ["--api-token-file", str(token_file)]
    env = {"ANJU_MQTT_CLIENT_ID": HUB_CLIENT_ID}

    def connected() -> bool:
        return _metrics(http_port).get("anju_mqtt_connected") == 1.0

    def stored_so_far() -> int:
        with contextlib.suppress(OSError, ValueError):
            return int(_metrics(http_port).get("anju_readings_stored_total", 0.0))
        return 0

    fleet: Fleet | None = None
    try:
        # The session: connect once (both hub connections subscribe), stop, queue the backlog, start again.
        hub = start(logs, f"{label}-first", argv, cwd=REPO, env=env)
        try:
            _wait(connected, timeout_s=START_TIMEOUT_S, what="the hub did not connect to the broker")
        finally:
            hub.stop(grace_s=15.0)
        fleet = queue_backlog(workdir, logs, broker_port, label)
        hub = start(logs, label, argv, cwd=REPO, env=env)
        try:
            assert hub.process is not None
            pid = hub.process.pid
            window = follow(
                stored_so_far,
                lambda: influx.points_written(database, "anju_raw"),
                expected=fleet.readings,
                pid=pid,
                influxd_pid=influxd_pid,
                what="the hub",
            )
            peak_kib = status_kib(pid, "VmHWM")
            acked = fleet.acked(timeout_s=30.0)  # the fleet ends once every batch is hub-acked
        finally:
            hub.stop(grace_s=15.0)
        stored = influx.count(database, "anju_raw")
    finally:
        if fleet is not None:
            fleet.child.stop(grace_s=5.0)
        shutil.rmtree(data_dir, ignore_errors=True)
        with contextlib.suppress(RuntimeError, OSError):
            tidy_broker(broker_port, [HUB_CLIENT_ID, f"{HUB_CLIENT_ID}-urgent"])
        with contextlib.suppress(RuntimeError, httpx.HTTPError):
            influx.drop(database)
    return _drain("anju", window, backlog=fleet.readings, stored=stored, acked=acked, peak_kib=peak_kib, say=say)


# -- the run -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises SystemExit while the bench runs (main thread only), so the finally blocks stop every child."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: FrameType | None) -> None:
        sys.exit(143)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _direct(
    influx: Influx, folder: Path, name: str, rounds: list[ReadingColumns], influxd_pid: int
) -> tuple[float, float, float]:
    """One direct run into a new database: (readings/s, client CPU s/reading, influxd CPU s/reading)."""
    readings = sum(len(r) for r in rounds)
    database = f"{name}_{uuid.uuid4().hex[:8]}"
    store = InfluxStore(
        target=InfluxTarget.v1(url=influx.url, database=database),
        community=COMMUNITY,
        meta_path=folder / f"{database}.sqlite3",
        chunk_lines=BATCH_LINES,
    )
    try:
        server_before = cpu_seconds(influxd_pid)
        cpu_before, began = time.process_time(), time.perf_counter()
        if name == "bare":
            bare_writer(influx.url, database, rounds)
        else:
            store_commits(store, rounds)
        elapsed = time.perf_counter() - began
        client_cpu = time.process_time() - cpu_before
        server_cpu = cpu_seconds(influxd_pid) - server_before
    finally:
        store.close()
    stored = influx.count(database, "anju_raw")
    influx.drop(database)
    if stored != readings:
        raise RuntimeError(f"{name}: {stored} of {readings} readings stored")
    return readings / elapsed, client_cpu / readings, server_cpu / readings


def _mqtt_runs(
    workdir: Path,
    logs: Logs,
    influx: Influx,
    influxd_pid: int,
    *,
    mosquitto: str,
    peer: nodered.NodeRed | None,
    say: Callable[[str], None],
) -> dict[str, list[Drain]]:
    """The broker for the two MQTT consumers, then their drains, alternating; the broker is stopped after."""
    drains: dict[str, list[Drain]] = {"anju": [], "nodered": []}
    broker_port = free_port()
    config = mosquitto_config(port=broker_port, directory=workdir, max_queued_messages=MAX_QUEUED_MESSAGES)
    broker = start(logs, "mosquitto", [mosquitto, "-c", str(config)])
    try:
        if not wait_port(broker_port, timeout_s=30):
            raise RuntimeError(f"mosquitto does not listen on 127.0.0.1:{broker_port}")
        deployment = workdir / "deployment.yaml"
        subprocess.run(
            [
                *(sys.executable, "-m", "firmware_sim", "load", "--community", COMMUNITY),
                *("--gateways", str(GATEWAYS), "--sensors-per-gateway", str(SENSORS_PER_GATEWAY)),
                *("--deployment-out", str(deployment), "--deployment-only"),
            ],
            check=True,
            cwd=REPO,
            capture_output=True,
            timeout=60,
        )
        deployment_text = deployment.read_text(encoding="utf-8")
        say(f"broker :{broker_port}; each drain: {BACKLOG_READINGS:,} readings queued, then consumed")
        for repeat in range(REPEATS):
            for system in ("nodered", "anju") if repeat % 2 == 0 else ("anju", "nodered"):
                if system == "nodered":
                    if peer is None:
                        continue
                    drain = nodered_drain(
                        workdir, logs, peer, influx, broker_port=broker_port, influxd_pid=influxd_pid, say=say
                    )
                else:
                    drain = hub_drain(
                        workdir,
                        logs,
                        influx,
                        deployment_text=deployment_text,
                        broker_port=broker_port,
                        influxd_pid=influxd_pid,
                        say=say,
                    )
                drains[system].append(drain)
                say(f"  {_drain_line(drain)} (run {repeat + 1})")
    finally:
        broker.stop(grace_s=10.0)
    return drains


def run(*, say: Callable[[str], None] = lambda text: print(text, flush=True)) -> dict[str, object]:
    binary = find_influxd()
    if binary is None:
        raise RuntimeError("influxd is not installed (scripts/ensure-services, or apt-get install influxdb)")
    mosquitto = find_mosquitto()
    workdir = run_dir("hub-influx")
    results: dict[str, object] = {"workdir": str(workdir), "loadavg_before": loadavg()}
    rounds = stream()
    results["readings_per_direct_run"] = sum(len(r) for r in rounds)
    direct: dict[str, list[tuple[float, float, float]]] = {"bare": [], "store": []}
    drains: dict[str, list[Drain]] = {}
    with _sigterm_unwinds():
        why_no_nodered = nodered.install(say=say) if mosquitto is not None else "mosquitto is not installed"
        results["nodered_skipped"] = why_no_nodered
        results["nodered_versions"] = nodered.versions()
        if why_no_nodered:
            say(f"Node-RED part skipped: {why_no_nodered}")
        logs = Logs(workdir / "logs")
        try:
            with (
                tempfile.TemporaryDirectory(prefix="anju-bench-influx-") as folder,
                running_influxd(binary, Path(folder) / "influxd") as server,
            ):
                influx = Influx(server.url)
                try:
                    say(f"influxd {server.url}, logs in {workdir}/logs")
                    for repeat in range(REPEATS):
                        for name in ("bare", "store") if repeat % 2 == 0 else ("store", "bare"):
                            figure = _direct(influx, Path(folder), name, rounds, server.pid)
                            direct[name].append(figure)
                            say(
                                f"  {name:5} run {repeat + 1}: {figure[0]:,.0f} readings/s, client CPU "
                                f"{figure[1] * 1e6:.2f} µs/reading, influxd CPU {figure[2] * 1e6:.2f} µs/reading"
                            )
                    if mosquitto is None:
                        say("Anju end to end and Node-RED skipped: mosquitto is not installed")
                    else:
                        peer = None if why_no_nodered else nodered.NodeRed(workdir, logs)
                        drains = _mqtt_runs(workdir, logs, influx, server.pid, mosquitto=mosquitto, peer=peer, say=say)
                finally:
                    influx.close()
        finally:
            logs.close()
    results["loadavg_after"] = loadavg()
    for name, runs in direct.items():
        results[name] = {
            "readings_per_s": statistics.median(r[0] for r in runs),
            "client_cpu_us": statistics.median(r[1] for r in runs) * 1e6,
            "server_cpu_us": statistics.median(r[2] for r in runs) * 1e6,
        }
    for system, observed in drains.items():
        if observed:
            summary: dict[str, object] = {
                "runs": [asdict(d) for d in observed],
                **{key: statistics.median(float(getattr(d, key)) for d in observed) for key in _DRAIN_FIGURES},
                "stored_all": all(d.stored == d.backlog for d in observed),
            }
            if all(d.acked is not None for d in observed):
                summary["acked_all"] = all(d.acked == d.backlog for d in observed)
            results[system] = summary
    return results


_DRAIN_FIGURES = (
    "backlog",
    "readings_per_s",
    "landed_per_s",
    "window_s",
    "cpu_cores",
    "influxd_cpu_us",
    "peak_rss_mib",
)


def _drain_line(drain: Drain) -> str:
    acked = "" if drain.acked is None else f", {drain.acked:,} hub-acked"
    return (
        f"{drain.system:7} {drain.readings_per_s:,.0f} readings/s over {drain.window_s:.1f} s "
        f"(InfluxDB accepted {drain.landed_per_s:,.0f} points/s), {drain.stored:,} of {drain.backlog:,} stored"
        f"{acked}; CPU {drain.cpu_cores:.2f} cores, peak RSS {drain.peak_rss_mib:.0f} MiB; "
        f"influxd {drain.influxd_cpu_us:.2f} µs/reading" + (f"; errors logged: {drain.errors}" if drain.errors else "")
    )


def _lost(summary: dict[str, object]) -> str:
    """Readings published but not in InfluxDB, per run: "none", or e.g. "0, 43,800, 0 of 1,600,000 each"."""
    runs = summary["runs"]
    assert isinstance(runs, list)
    lost = [int(r["backlog"]) - int(r["stored"]) for r in runs]
    if not any(lost):
        return "none"
    return f"{', '.join(f'{n:,}' for n in lost)} of {int(runs[0]['backlog']):,} in its {len(runs)} runs"


def report(results: dict[str, object], say: Callable[[str], None] = lambda text: print(text, flush=True)) -> None:
    bare, store = results.get("bare"), results.get("store")
    if not isinstance(bare, dict) or not isinstance(store, dict):
        say("hub influx: no result")
        return
    bare_rate = float(bare["readings_per_s"])
    say(
        f"reference, bare line-protocol writer into InfluxDB 1.6 ({results['readings_per_direct_run']:,} readings a "
        f"run, {BATCH_LINES}-line requests, one in flight, median of {REPEATS}): {bare_rate:,.0f} readings/s "
        f"(client CPU {bare['client_cpu_us']:.2f} µs/reading, influxd {bare['server_cpu_us']:.2f} µs/reading)"
    )
    anju, nodered = results.get("anju"), results.get("nodered")
    if isinstance(anju, dict):
        rate = float(anju["readings_per_s"])
        say(
            f"Anju end to end (anju-sim load {GATEWAYS} × {SENSORS_PER_GATEWAY} sensors, 100-reading SenML batches, "
            f"QoS 1 → Mosquitto → `hub serve`, influxdb backend, hub-ack after commit; a {anju['backlog']:,.0f}-"
            f"reading backlog drained, median of {len(anju['runs'])}): {rate:,.0f} readings/s stored and acked "
            f"(InfluxDB accepted {anju['landed_per_s']:,.0f} points/s), hub CPU {anju['cpu_cores']:.2f} cores, "
            f"peak RSS {anju['peak_rss_mib']:.0f} MiB, influxd {anju['influxd_cpu_us']:.2f} µs/reading; "
            f"readings lost: {_lost(anju)}; every reading hub-acked to the fleet: "
            f"{'yes' if anju.get('acked_all') else 'NO'}; "
            f"ratio to the bare writer {rate / bare_rate:.2f} (issue 4 target >= 0.80)"
        )
    if isinstance(nodered, dict):
        rate = float(nodered["readings_per_s"])
        versions = results.get("nodered_versions") or {}
        assert isinstance(versions, dict)
        say(
            f"Node-RED {versions.get('node-red', '?')} + node-red-contrib-influxdb "
            f"{versions.get('node-red-contrib-influxdb', '?')} (MQTT-in QoS 1 → function → influxdb batch, same "
            f"backlog, median of {len(nodered['runs'])}): {rate:,.0f} readings/s landed, node CPU "
            f"{nodered['cpu_cores']:.2f} cores, peak RSS {nodered['peak_rss_mib']:.0f} MiB, influxd "
            f"{nodered['influxd_cpu_us']:.2f} µs/reading; readings lost: {_lost(nodered)}; "
            f"ratio to the bare writer {rate / bare_rate:.2f}"
        )
    elif results.get("nodered_skipped"):
        say(f"Node-RED: not run — {results['nodered_skipped']}")
    if isinstance(anju, dict) and isinstance(nodered, dict):
        ratio = float(anju["readings_per_s"]) / float(nodered["readings_per_s"])
        memory = float(anju["peak_rss_mib"]) / float(nodered["peak_rss_mib"])
        say(f"ratio Anju / Node-RED: {ratio:.2f} in readings/s (issue 4 target >= 3); {memory:.2f} in peak RSS")
    say(
        f"InfluxStore.commit driven directly (no MQTT, no hub; {ROUND_MESSAGES}-message rounds, 2 requests in "
        f"flight): {store['readings_per_s']:,.0f} readings/s (client CPU {store['client_cpu_us']:.2f} µs/reading, "
        f"influxd {store['server_cpu_us']:.2f}); ratio to the bare writer "
        f"{float(store['readings_per_s']) / bare_rate:.2f}"
    )
    say(f"load average before {results.get('loadavg_before')}, after {results.get('loadavg_after')}")


def main() -> int:
    report(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
