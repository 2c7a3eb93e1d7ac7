"""``cmd/config`` end to end: real Mosquitto, a real Modbus server of detectors, the edge as a process.

A good push restarts the agent in-process on the new file with no reading lost or taken twice; a push that would
change the gateway's identity or outbox, or is no valid command at all, is refused and counted while the agent
goes on; a push that validates but cannot work (a serial port that does not exist, a broker nobody listens on) is
rolled back to ``edge.yaml.prev`` and the edge keeps delivering; a process killed during a trial comes back on the
previous config.
"""

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge.commands import MAX_CONFIG_PUSH_BYTES
from edge.reconfigure import PROBATION_S
from protocol.rejection import Rejection
from protocol.telemetry import Reply, decode_reply
from tests.edge.support import (
    COMMUNITY,
    GATEWAY,
    Broker,
    Detectors,
    EdgeProcess,
    Hub,
    Producer,
    config_text,
    free_port,
    wait_until,
    write_config,
)

UNITS = {1: ("gas-b1-101", "gas"), 2: ("temp-b1-102", "temperature")}
NEW_UNIT = {3: ("water-b1-103", "water-depth")}
Factory = Callable[..., Hub]


class Replies:
    """A subscriber to the gateway's ``reply/+`` topics that decodes every answer."""

    def __init__(self, broker: Broker) -> None:
        self._lock = threading.Lock()
        self._replies: list[Reply] = []
        self.subscribed = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"replies-{free_port()}", protocol=MQTTProtocolVersion.MQTTv311
        )
        self._client.on_connect = lambda client, *_: client.subscribe(f"anju/v1/{COMMUNITY}/{GATEWAY}/reply/+", 1)
        self._client.on_subscribe = lambda *_: self.subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect_async(broker.host, broker.port)
        self._client.loop_start()
        wait_until(self.subscribed.is_set, 5, "the reply subscriber subscribed")

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        reply = decode_reply(bytes(message.payload))
        assert not isinstance(reply, Rejection), reply
        with self._lock:
            self._replies.append(reply)

    def find(self, command: str, reply_id: str) -> Reply | None:
        with self._lock:
            return next((r for r in self._replies if r.command == command and r.id == reply_id), None)

    def wait(self, command: str, reply_id: str, timeout_s: float) -> Reply:
        wait_until(lambda: self.find(command, reply_id) is not None, timeout_s, f"reply/{command} id={reply_id}")
        reply = self.find(command, reply_id)
        assert reply is not None
        return reply

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def replies(broker: Broker) -> Iterator[Replies]:
    subscriber = Replies(broker)
    yield subscriber
    subscriber.close()


def _push(hub: Hub, push_id: str, text: str) -> None:
    hub.command("config", orjson.dumps({"id": push_id, "config": text}))


def _answering(hub: Hub, edge: EdgeProcess, replies: Replies) -> None:
    """Wait until the edge answers a ping: its cmd subscription is in place (the SUBACK can lag the connect)."""
    count = 0

    def answered() -> bool:
        nonlocal count
        count += 1
        hub.command("ping", orjson.dumps({"id": f"ready-{count}"}))
        time.sleep(0.2)
        return any(replies.find("ping", f"ready-{n}") for n in range(1, count + 1))

    wait_until(answered, 10, f"the edge answering pings; log:\n{edge.text()}")


def _assert_every_reading_once(hub: Hub, server: Detectors, edge: EdgeProcess, timeout_s: float = 10) -> None:
    expected = {(p.sensor, p.time_ms, p.value) for p in server.produced}
    try:
        wait_until(lambda: hub.readings() >= expected, timeout_s, "every produced reading at the hub")
    except AssertionError:
        missing = len(expected - hub.readings())
        raise AssertionError(f"{missing} readings missing; edge log:\n{edge.text()}") from None
    assert hub.readings() == expected and not hub.rejections
    if hub.reading_count() != len(server.produced):
        with hub.lock:
            where: dict[tuple[str, int], list[tuple[int, int]]] = {}
            for key, batch in hub.batches.items():
                for r in batch.readings:
                    where.setdefault((r.sensor, r.time_ms), []).append(key)
        twice = {reading: keys for reading, keys in where.items() if len(keys) > 1}
        raise AssertionError(f"readings under two (session, seq): {twice}; edge log:\n{edge.text()}")


def _start(
    tmp_path: Path, broker: Broker, server: Detectors, edge_process: Callable[[Path], EdgeProcess]
) -> tuple[Path, str, EdgeProcess]:
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS)
    edge = edge_process(config)
    edge.start()
    return config, config.read_text(encoding="utf-8"), edge


def _text(broker: Broker, server: Detectors, **changes: Any) -> str:
    return config_text(broker_port=broker.port, modbus_port=server.port, sensors=UNITS, **changes)


def test_a_good_push_restarts_on_the_new_config_and_loses_or_repeats_nothing(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
    replies: Replies,
) -> None:
    server = detectors({**UNITS, **NEW_UNIT})
    hub = hub_factory(broker)
    config, original, edge = _start(tmp_path, broker, server, edge_process)
    _answering(hub, edge, replies)
    # A ring of 15 holds 3.75 s: longer than the restart. Values 0-4 fit every kind (water depth, 0-5 m).
    producer = Producer(server, [1, 2], interval_s=0.25, step=0.3, wrap=4.0)
    try:
        wait_until(lambda: "hub-ack seq=" in edge.text(), 8, "the first hub-ack")
        pushed = config_text(
            broker_port=broker.port,
            modbus_port=server.port,
            sensors={**UNITS, **NEW_UNIT},
            extra={"poll_interval_s": 0.2, "publish_interval_s": 0.3},
        )
        _push(hub, "c-1", pushed)
        reply = replies.wait("config", "c-1", PROBATION_S + 5)
        assert reply.ok and reply.detail == "applied: 3 sensors", reply
        producer.units.append(3)  # the new detector: read only by the new agent
        time.sleep(1.0)
    finally:
        producer.stop()
    _assert_every_reading_once(hub, server, edge)
    assert any(p.sensor == "water-b1-103" for p in server.produced)
    assert config.read_text(encoding="utf-8") == pushed
    assert (tmp_path / "edge.yaml.prev").read_text(encoding="utf-8") == original
    assert not (tmp_path / "edge.yaml.trial").exists() and not (tmp_path / "edge.yaml.new").exists()
    log = edge.text()
    assert "config push c-1 valid: stopping the agent to apply it" in log
    assert "config push c-1 applied: 3 sensors (pushes applied=1 refused=0 rolled_back=0)" in log
    assert log.count("connected to broker") == 2  # one process, two agents
    assert edge.terminate() == 0


def test_refused_pushes_are_answered_and_counted_and_the_agent_goes_on(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
    replies: Replies,
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(broker)
    config, original, edge = _start(tmp_path, broker, server, edge_process)
    _answering(hub, edge, replies)
    refusals = {
        "id-gateway": (_text(broker, server, extra={"gateway": "gw-other"}), "gateway = 'gw-other'"),
        "id-community": (_text(broker, server, extra={"community": "other"}), "community = 'other'"),
        "id-outbox": (_text(broker, server, extra={"outbox": "elsewhere.sqlite3"}), "belongs to the open outbox"),
        "bad-key": (_text(broker, server, extra={"poll_intervall_s": 1}), ":8: poll_intervall_s = 1: unknown key"),
        "bad-yaml": ("community: hongxing\ncommunity: x\n", ":2: community = 'x': duplicate key"),
        "deep": ("a: " + "[" * 100_000 + "]" * 100_000, "is not valid YAML: RecursionError"),
    }
    for push_id, (text, _) in refusals.items():
        _push(hub, push_id, text)
    hub.command("config", b"{not json")
    hub.command("config", orjson.dumps({"id": "no-config"}))
    hub.command("config", orjson.dumps({"id": "huge", "config": "#" * MAX_CONFIG_PUSH_BYTES}))
    for _ in range(5):
        server.produce(1, 2.0)
        server.produce(2, 21.0)
        time.sleep(0.1)
    for push_id, (_, reason) in refusals.items():
        reply = replies.wait("config", push_id, 10)
        assert not reply.ok and f"cmd/config id={push_id}" in reply.detail and reason in reply.detail, reply
    _assert_every_reading_once(hub, server, edge)
    wait_until(lambda: "command config rejected (9 so far)" in edge.text(), 5, "9 refusals counted")
    log = edge.text()
    assert "config push id-gateway refused (pushes applied=0 refused=1 rolled_back=0)" in log
    assert "payload is not JSON" in log and "got null" in log and "> limit 262144" in log
    assert "config push bad-yaml refused (pushes applied=0 refused=5 rolled_back=0)" in log
    assert log.count("connected to broker") == 1, "no restart for a refused push"
    assert config.read_text(encoding="utf-8") == original and not (tmp_path / "edge.yaml.prev").exists()
    assert edge.terminate() == 0


@pytest.mark.parametrize("broken", ["serial-device-missing", "broker-unreachable"])
def test_a_push_that_cannot_start_is_rolled_back_and_the_edge_keeps_delivering(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
    replies: Replies,
    broken: str,
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(broker)
    config, original, edge = _start(tmp_path, broker, server, edge_process)
    _answering(hub, edge, replies)
    if broken == "serial-device-missing":
        change: dict[str, Any] = {"modbus": {"serial": "/dev/ttyNONEXISTENT"}}
        reason = "no detector answered on RTU /dev/ttyNONEXISTENT 9600 8N1"
    else:
        unused = free_port()  # nobody listens there
        change, reason = {"mqtt": {"port": unused}}, f"no connection to the broker 127.0.0.1:{unused}"
    # A ring of 15 holds 12 s: the trial and both restarts.
    producer = Producer(server, [1, 2], interval_s=0.8, step=0.3, wrap=4.0)
    try:
        pushed = _text(broker, server, **change)
        _push(hub, "c-bad", pushed)
        wait_until(lambda: "config push c-bad written to" in edge.text(), 8, "the push applied and on trial")
        assert config.read_text(encoding="utf-8") == pushed and (tmp_path / "edge.yaml.trial").exists()
        if broken == "serial-device-missing":  # the agent on trial has the broker: a second push must wait
            wait_until(lambda: edge.text().count("connected to broker") == 2, 5, "the agent on trial connected")
            _push(hub, "c-during", pushed)
            during = replies.wait("config", "c-during", 5)
            assert (
                not during.ok
                and during.detail == "config push c-bad is being applied: send this one again after its answer"
            )
        reply = replies.wait("config", "c-bad", PROBATION_S + 8)
        time.sleep(1.0)
    finally:
        producer.stop()
    assert not reply.ok and reply.detail.startswith("rolled back to the previous config: "), reply
    assert reason in reply.detail and f"within {PROBATION_S:g} s" in reply.detail, reply
    _assert_every_reading_once(hub, server, edge)
    assert config.read_text(encoding="utf-8") == original, "the file that works is back"
    assert not (tmp_path / "edge.yaml.trial").exists()
    refused = 1 if broken == "serial-device-missing" else 0
    assert f"(pushes applied=0 refused={refused} rolled_back=1)" in edge.text()
    assert edge.terminate() == 0

    again = edge_process(config)  # a later start comes up on the config that works
    again.start()
    before = len(server.produced)
    server.produce(1, 4.0)
    server.produce(2, 22.0)
    _assert_every_reading_once(hub, server, again)
    assert len(server.produced) == before + 2
    assert "was on trial" not in again.text()
    assert again.terminate() == 0


def test_a_process_killed_during_a_trial_starts_again_on_the_previous_config(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
    replies: Replies,
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(broker)
    config, original, edge = _start(tmp_path, broker, server, edge_process)
    _answering(hub, edge, replies)
    for _ in range(3):
        server.produce(1, 2.0)
        server.produce(2, 21.0)
    pushed = _text(broker, server, mqtt={"port": free_port()})
    _push(hub, "c-crash", pushed)
    wait_until(lambda: "config push c-crash written to" in edge.text(), 8, "the push on trial")
    server.produce(1, 3.0)  # taken by the agent on trial, kept in the outbox: it cannot reach the broker
    time.sleep(0.5)
    edge.kill()  # SIGKILL inside the probation: no roll back happened in that process
    assert config.read_text(encoding="utf-8") == pushed
    assert (tmp_path / "edge.yaml.trial").read_text(encoding="utf-8") == "c-crash"

    again = edge_process(config)
    again.start()
    server.produce(2, 22.0)
    _assert_every_reading_once(hub, server, again)
    log = again.text()
    assert "config push c-crash was on trial when the agent last stopped: back on" in log
    assert config.read_text(encoding="utf-8") == original
    assert not (tmp_path / "edge.yaml.trial").exists()
    assert len(re.findall(r"starting: session=", log)) == 2
    assert again.terminate() == 0
