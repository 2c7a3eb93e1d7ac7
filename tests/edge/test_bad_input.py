"""Bad input never stops the agent: bad commands and garbage registers are counted, logged and shown in health.

Real Mosquitto, a real pymodbus server serving raw -2**31 / 2**31-1 samples, the edge as a process.
"""

import re
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from edge.cli import main
from tests.edge.support import Broker, Detectors, EdgeProcess, Hub, wait_until, write_config

UNITS = {1: ("gas-b1-101", "gas"), 2: ("temp-b1-102", "temperature")}


def _health(edge: EdgeProcess) -> dict[str, str]:
    lines = [line for line in edge.text().splitlines() if "edge.agent: health: " in line]
    return dict(pair.split("=", 1) for pair in lines[-1].split("health: ", 1)[1].split()) if lines else {}


def test_bad_commands_and_garbage_registers_are_counted_and_the_agent_goes_on(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Callable[..., Hub],
    edge_process: Callable[[Path], EdgeProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(broker)
    marker = tmp_path / "relay.txt"
    extra = {"health_interval_s": 0.3, "alarm_command": f"sh -c 'echo $ANJU_SENSOR >> {marker}'"}
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS, extra=extra)
    edge = edge_process(config)
    edge.start()
    wait_until(lambda: "connected to broker" in edge.text(), 8, "the edge connected")

    def subscribed() -> bool:  # a ping answered proves the cmd subscription is in place (SUBACK can lag)
        hub.command("ping", orjson.dumps({"id": "ready"}))
        time.sleep(0.2)
        return "command ping id=ready: pong" in edge.text()

    wait_until(subscribed, 8, "the edge answering pings")

    hub.command("ping", b"not json")
    hub.command("reboot", b"{}")
    hub.command("ping", orjson.dumps({"id": "p-7"}))
    hub.command("time", orjson.dumps({"hub_time": time.time() - 10.0}))  # the gateway's clock is 10 s ahead
    server.produce_raw(1, 2**31 - 1)  # 214748364.7 %LEL: would trip the 25 %LEL alarm if it were taken
    server.produce_raw(1, -(2**31))
    server.produce(1, 3.0)
    server.produce_raw(2, -(2**31))
    server.produce(2, 21.0)

    expected = {(p.sensor, p.time_ms, p.value) for p in server.produced}
    wait_until(lambda: hub.readings() == expected, 8, "the plausible readings at the hub")
    wait_until(lambda: _health(edge).get("garbage_samples") == "3", 5, "garbage counted in health")
    wait_until(lambda: _health(edge).get("commands_rejected") == "2", 5, "bad commands counted in health")
    health = _health(edge)
    assert 9.0 < float(health["clock_skew_s"]) < 11.0
    assert int(health["rss_bytes"]) > 0 and int(health["disk_free_bytes"]) > 0 and float(health["cpu_s"]) > 0
    assert health["hub_online"] == "true"
    log = edge.text()
    assert "LOCAL ALARM" not in log and not marker.exists()
    assert len(re.findall(r"sensor gas-b1-101 \(unit 1\) garbage sample", log)) == 1  # once per change
    assert "sensor gas-b1-101 (unit 1) samples plausible again (2 garbage samples in total)" in log
    assert "command ping rejected (1 so far): ping: payload is not JSON" in log
    assert "command reboot ignored: not supported by this edge" in log
    assert "command ping id=p-7: pong" in log
    assert "command time: gateway clock is +" in log
    wait_until(lambda: _health(edge).get("outbox_readings") == "0", 5, "the hub's acks emptied the outbox")
    assert edge.terminate() == 0

    assert main(["outbox", "--config", str(config), "--health"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "health.garbage_samples=3" in out and "health.commands_rejected=2" in out
    assert "health.outbox_readings=0" in out  # everything acked by the time it stopped


@pytest.fixture(autouse=True)
def _fast_enough() -> object:
    started = time.monotonic()
    yield None
    assert time.monotonic() - started < 20
