"""Real parts for the edge tests (fixtures in conftest.py): Mosquitto, detectors, a hub stand-in, the edge.

The broker is the real ``/usr/sbin/mosquitto`` on a free loopback port (skipped when missing, failed when
``CI=true``). The detectors are a real pymodbus ``ModbusTcpServer`` whose input registers follow
``protocol.registers``; the hub is a paho client that decodes batches and publishes hub-acks.
"""

import asyncio
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from ruamel.yaml import YAML

from edge.outbox import Outbox
from hub.demo.processes import free_port
from protocol.registers import (
    ENTRY_WORDS,
    KIND_CODES,
    KIND_EXPONENTS,
    RING_CAPACITY,
    Header,
    Sample,
    Status,
    encode_header,
    encode_sample,
    to_raw,
)
from protocol.rejection import Rejection
from protocol.senml import Batch, decode_batch
from protocol.session import Ack, GatewayState, encode_ack, encode_state
from protocol.topics import HUB_STATE_TOPIC

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
COMMUNITY = "hongxing"
GATEWAY = "gw-test"
REPO = Path(__file__).resolve().parents[2]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


# -- Mosquitto -----------------------------------------------------------------------------------------------


class Broker:
    """A Mosquitto process on a fixed loopback port; ``stop`` and ``start`` again keep the port.

    ``extra_config`` is appended to the config file, e.g. a second (TLS) listener.
    """

    def __init__(self, directory: Path, *, extra_config: str = "") -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self._conf = directory / "mosquitto.conf"
        self._log = directory / "mosquitto.log"
        self._conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra_config}",
            encoding="utf-8",
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._process = subprocess.Popen([MOSQUITTO, "-c", str(self._conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self._log.read_text(errors='replace')}")
            with socket.socket() as sock:
                if sock.connect_ex((self.host, self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not listen within 5 s")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(sig)
            self._process.wait(timeout=5)
        self._process = None


# -- Modbus detectors ----------------------------------------------------------------------------------------


class Detector:
    """The register image of one detector: header plus history ring, as ``protocol.registers`` describes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.counter = 0
        self.ring = [0] * (RING_CAPACITY * ENTRY_WORDS)

    def add(self, value: float, time_ms: int) -> Sample:
        self.counter += 1
        sample = Sample(self.counter, time_ms, to_raw(value, KIND_EXPONENTS[self.kind]))
        start = (self.counter - 1) % RING_CAPACITY * ENTRY_WORDS
        self.ring[start : start + ENTRY_WORDS] = encode_sample(sample)
        return sample

    def add_raw(self, raw: int, time_ms: int) -> Sample:
        """A sample with a raw register value as it is, e.g. -2**31 from a broken ADC."""
        self.counter += 1
        sample = Sample(self.counter, time_ms, raw)
        start = (self.counter - 1) % RING_CAPACITY * ENTRY_WORDS
        self.ring[start : start + ENTRY_WORDS] = encode_sample(sample)
        return sample

    def power_cycle(self) -> None:
        self.counter = 0
        self.ring = [0] * (RING_CAPACITY * ENTRY_WORDS)

    def words(self) -> list[int]:
        header = Header(KIND_CODES[self.kind], Status.NORMAL, 90, -60, KIND_EXPONENTS[self.kind], 15, self.counter)
        return encode_header(header) + self.ring


@dataclass
class Produced:
    sensor: str
    time_ms: int
    value: float


@dataclass
class Detectors:
    """A real pymodbus TCP server (in its own thread and event loop) serving ``Detector`` images by unit id."""

    units: dict[int, tuple[str, Detector]]
    port: int = field(default_factory=free_port)
    produced: list[Produced] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _clock_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def produce(self, unit_id: int, value: float) -> Produced:
        """Add one sample to a detector's ring (device times strictly increase, 10 ms apart at least)."""
        with self.lock:
            sensor, detector = self.units[unit_id]
            self._clock_ms = max(self._clock_ms + 10, int(time.time() * 1000))
            sample = detector.add(value, self._clock_ms)
            value_back = sample.raw / 10 ** (-KIND_EXPONENTS[detector.kind])
            item = Produced(sensor, sample.time_ms, value_back)
            self.produced.append(item)
            return item

    def produce_raw(self, unit_id: int, raw: int, time_ms: int | None = None) -> Sample:
        """Add a garbage sample (not in ``produced``: the edge must not take it)."""
        with self.lock:
            self._clock_ms = max(self._clock_ms + 10, int(time.time() * 1000))
            return self.units[unit_id][1].add_raw(raw, self._clock_ms if time_ms is None else time_ms)

    def power_cycle(self, unit_id: int) -> None:
        with self.lock:
            self.units[unit_id][1].power_cycle()

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: object,
        *,
        unit_id: int,
    ) -> None:
        with self.lock:
            words = self.units[unit_id][1].words()
        registers[start_address : start_address + len(words)] = words
        return None

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def begin() -> None:
            devices = [
                SimDevice(
                    id=unit_id,
                    simdata=[SimData(0, count=len(detector.words()), values=0, datatype=DataType.REGISTERS)],
                    action=_bind(self._action, unit_id),
                )
                for unit_id, (_, detector) in self.units.items()
            ]
            self._server = ModbusTcpServer(devices, address=("127.0.0.1", self.port))
            await self._server.serve_forever(background=True)

        def main() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(begin())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, name="modbus-detectors", daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("modbus server did not start")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()


def _bind(action: Callable[..., object], unit_id: int) -> Callable[..., object]:
    async def bound(*args: object) -> object:
        return await action(*args, unit_id=unit_id)  # type: ignore[misc]

    return bound


class Producer:
    """Adds a sample to each of ``units`` every ``interval_s`` in a thread, until stopped: a value stepping by
    ``step`` and wrapping at ``wrap``, plus the unit's entry in ``offsets`` (keeps each kind inside its range)."""

    def __init__(
        self,
        server: Detectors,
        units: list[int],
        *,
        interval_s: float,
        step: float,
        wrap: float,
        offsets: Mapping[int, float] | None = None,
    ) -> None:
        self._server = server
        self.units = units
        self._interval_s = interval_s
        self._step, self._wrap = step, wrap
        self._offsets = dict(offsets or {})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        value = 0.0
        while not self._stop.wait(self._interval_s):
            value = (value + self._step) % self._wrap
            for unit in list(self.units):
                self._server.produce(unit, self._offsets.get(unit, 0.0) + value)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# -- the hub stand-in ------------------------------------------------------------------------------------------


class Hub:
    """Subscribes to one gateway's topics, decodes every batch, and acks the highest contiguous seq (if acking)."""

    def __init__(self, broker: Broker, *, acking: bool = True, publish_state: bool = True) -> None:
        self.acking = acking
        self.publish_state = publish_state
        self.batches: dict[tuple[int, int], Batch] = {}
        self.deliveries: list[tuple[str, int, int]] = []
        self.rejections: list[Rejection] = []
        self.states: list[bytes] = []
        self.lock = threading.RLock()
        self._contiguous: dict[int, int] = {}
        base = f"anju/v1/{COMMUNITY}/{GATEWAY}"
        self._base = base
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"hub-{free_port()}", protocol=MQTTProtocolVersion.MQTTv311
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.connected = threading.Event()
        self._client.connect_async(broker.host, broker.port)
        self._client.loop_start()
        wait_until(self.connected.is_set, 5, "hub connected")

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        client.subscribe([(f"{self._base}/data", 1), (f"{self._base}/alarm", 1), (f"{self._base}/state", 1)])
        if self.publish_state:  # as hub.ingest does: subscribed first, then the retained state edges wait for
            online = encode_state(GatewayState("online", 0, time.time()))
            client.publish(HUB_STATE_TOPIC, online, qos=1, retain=True)
        self.connected.set()

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        channel = message.topic.rsplit("/", 1)[-1]
        if channel == "state":
            with self.lock:
                self.states.append(bytes(message.payload))
            return
        batch = decode_batch(bytes(message.payload), community=COMMUNITY, gateway=GATEWAY)
        with self.lock:
            if isinstance(batch, Rejection):
                self.rejections.append(batch)
                return
            self.deliveries.append((channel, batch.session, batch.seq))
            self.batches.setdefault((batch.session, batch.seq), batch)
            top = self._contiguous.get(batch.session, 0)
            while (batch.session, top + 1) in self.batches:
                top += 1
            self._contiguous[batch.session] = top
            if self.acking and top:
                client.publish(f"{self._base}/ack", encode_ack(Ack(batch.session, top)), qos=1)

    def readings(self) -> set[tuple[str, int, float]]:
        with self.lock:
            return {(r.sensor, r.time_ms, r.value) for b in self.batches.values() for r in b.readings}

    def reading_count(self) -> int:
        with self.lock:
            return sum(len(b.readings) for b in self.batches.values())

    def ack_now(self, session: int, seq: int) -> None:
        self._client.publish(f"{self._base}/ack", encode_ack(Ack(session, seq)), qos=1)

    def send_raw_ack(self, payload: bytes) -> None:
        self._client.publish(f"{self._base}/ack", payload, qos=1)

    def command(self, name: str, payload: bytes = b"", *, gateway: str = GATEWAY) -> None:
        """Publish on ``anju/v1/{community}/{gateway}/cmd/{name}`` (QoS 1), as the hub would."""
        self._client.publish(f"anju/v1/{COMMUNITY}/{gateway}/cmd/{name}", payload, qos=1).wait_for_publish(5)

    def publish_hub_state(self, status: str) -> None:
        """The hub's retained ``anju/v1/hub/state`` (session 0), as hub.ingest publishes it."""
        payload = encode_state(GatewayState(status, 0, time.time()))  # type: ignore[arg-type]
        self._client.publish(HUB_STATE_TOPIC, payload, qos=1, retain=True).wait_for_publish(5)

    def sessions(self) -> dict[int, list[int]]:
        """Seqs received per session, sorted."""
        with self.lock:
            out: dict[int, list[int]] = {}
            for session, seq in sorted(self.batches):
                out.setdefault(session, []).append(seq)
            return out

    def readings_of(self, session: int) -> set[tuple[str, int, float]]:
        with self.lock:
            return {
                (r.sensor, r.time_ms, r.value) for (s, _), b in self.batches.items() if s == session for r in b.readings
            }

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# -- the edge as a process -------------------------------------------------------------------------------------


def write_config(
    directory: Path,
    *,
    broker_port: int,
    modbus_port: int,
    sensors: dict[int, tuple[str, str]],
    ack_timeout_s: float = 1.0,
    extra: Mapping[str, object] | None = None,
    mqtt: Mapping[str, object] | None = None,
    gateway: str = GATEWAY,
    modbus: Mapping[str, object] | None = None,
) -> Path:
    """Write ``edge.yaml`` in ``directory`` (see ``config_text``) and return its path."""
    path = directory / "edge.yaml"
    text = config_text(
        broker_port=broker_port,
        modbus_port=modbus_port,
        sensors=sensors,
        ack_timeout_s=ack_timeout_s,
        extra=extra,
        mqtt=mqtt,
        gateway=gateway,
        modbus=modbus,
    )
    path.write_text(text, encoding="utf-8")
    return path


def config_text(
    *,
    broker_port: int,
    modbus_port: int,
    sensors: Mapping[int, tuple[str, str]],
    ack_timeout_s: float = 1.0,
    extra: Mapping[str, object] | None = None,
    mqtt: Mapping[str, object] | None = None,
    gateway: str = GATEWAY,
    modbus: Mapping[str, object] | None = None,
) -> str:
    """The edge's YAML config for the test parts: ``extra`` holds further (or overriding) top-level keys, ``mqtt``
    and ``modbus`` further keys of those sections. ruamel writes it, so every value is quoted as YAML needs."""
    document: dict[str, object] = {
        "community": COMMUNITY,
        "gateway": gateway,
        "outbox": "outbox.sqlite3",
        "poll_interval_s": 0.1,
        "publish_interval_s": 0.2,
        "max_batch": 50,
        "ack_timeout_s": ack_timeout_s,
        **(extra or {}),
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "keepalive_s": 5, **(mqtt or {})},
        "modbus": {"host": "127.0.0.1", "port": modbus_port, "timeout_s": 0.5, **(modbus or {})},
        "sensors": [{"id": sensor, "kind": kind, "unit_id": unit_id} for unit_id, (sensor, kind) in sensors.items()],
    }
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]  # keep the order written
    text = io.StringIO()
    yaml.dump(document, text)
    return text.getvalue()


class EdgeProcess:
    """``python -m edge run --config FILE`` with its log in a file."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.parent / "edge.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-X", "faulthandler", "-m", "edge", "run", "--config", str(self.config)],
                cwd=REPO,
                stdout=log,
                stderr=log,
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(8)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack to the log
            self.process.wait(5)
            raise AssertionError(f"edge did not stop on SIGTERM:\n{self.text()[-8000:]}") from None

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def have_mosquitto() -> bool:
    return shutil.which(MOSQUITTO) is not None


def inspect_outbox(path: Path) -> Outbox:
    """The outbox at ``path`` opened read-only in spirit (no new session); the caller closes it."""
    return Outbox.open(path, community=COMMUNITY, gateway=GATEWAY, max_bytes=1 << 30, new_session=False)
