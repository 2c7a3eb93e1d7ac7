"""MQTT receive rate of the hub's candidate client layouts, 100-reading SenML batches at QoS 1 (issue 4, Ingest).

The broker holds ``MESSAGES`` batches queued for a persistent session; each subscriber connects with that
client id and drains them. Receive only (the payload is handed to asyncio, not decoded: decoding costs the
same in every layout and is bench/protocol_decode.py's figure). Per run, readings/s = messages × 100 / time
from the first to the last message. Layouts:

- ``aiomqtt``: ``async for message in client.messages`` with paho's automatic PUBACK — the hub before issue 4;
- ``aiomqtt manual ack``: the same, each PUBACK sent by the consumer once it took the message (``manual_ack``);
- ``hub intake``: what the hub runs (hub/ingest/intake.py): aiomqtt, PUBACKs sent by the consumer in bursts,
  socket reads paused while ``Intake.window`` messages wait (they never do here: the consumer keeps up);
- ``paho thread``: paho's own network thread (``loop_start``), each message handed to the asyncio loop with
  ``call_soon_threadsafe``, PUBACK sent by the consumer as above;
- reference: ``mosquitto_sub`` (C, libmosquitto) draining the same queue: the broker's own delivery ceiling.

Mosquitto runs with the test configuration (``max_inflight_messages 100``). The machine is shared, so each
layout runs ``REPEATS`` times, interleaved, and the median counts.
"""

import asyncio
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.common import require_mosquitto
from hub.demo.broker import mosquitto_config
from hub.demo.processes import free_port, wait_port
from hub.ingest.intake import Intake
from protocol import Batch, Reading, encode_batch

__all__ = ["MESSAGES", "READINGS_PER_MESSAGE", "report", "run"]

MESSAGES = 20_000
READINGS_PER_MESSAGE = 100
REPEATS = 3
_TOPIC = "anju/v1/bench/gw-1/data"
_T0_MS = 1_764_400_000_000


def _payloads() -> list[bytes]:
    sensors = [f"gas-{s:04d}" for s in range(READINGS_PER_MESSAGE)]
    return [
        encode_batch(
            Batch("bench", "gw-1", 1, seq, tuple(Reading(s, _T0_MS + seq * 1000, 1.25, "%LEL") for s in sensors))
        )
        for seq in range(1, MESSAGES + 1)
    ]


def _queue_for(port: int, client_id: str, payloads: list[bytes], *, topic: str = _TOPIC) -> None:
    """Register a persistent session for ``client_id`` and have the broker queue every payload for it."""
    subscribed = threading.Event()
    session = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    session.on_subscribe = lambda *_: subscribed.set()
    session.connect("127.0.0.1", port)
    session.loop_start()
    session.subscribe(topic, qos=1)
    if not subscribed.wait(10):
        raise RuntimeError("no SUBACK from the broker")
    session.disconnect()
    session.loop_stop()
    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{client_id}-pub")
    publisher.max_inflight_messages_set(1000)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    info = None
    for payload in payloads:
        info = publisher.publish(topic, payload, qos=1)
    assert info is not None
    info.wait_for_publish(120)
    publisher.disconnect()
    publisher.loop_stop()


async def _aiomqtt(port: int, client_id: str, *, manual_ack: bool) -> float:
    client = aiomqtt.Client("127.0.0.1", port, identifier=client_id, clean_session=False)
    client._client.manual_ack_set(manual_ack)  # aiomqtt has no option for it (empicano/aiomqtt#345)
    first = 0.0
    count = 0
    async with client:
        async for message in client.messages:
            if manual_ack:
                client._client.ack(message.mid, message.qos)
            count += 1
            if count == 1:
                first = time.perf_counter()
            if count == MESSAGES:
                return time.perf_counter() - first
    raise AssertionError("unreachable")


async def _hub_intake(port: int, client_id: str) -> float:
    client = aiomqtt.Client("127.0.0.1", port, identifier=client_id, clean_session=False)
    intake = Intake(client)
    first = 0.0
    count = 0
    async with client:
        intake.attach()
        async for message in client.messages:
            intake.taken(message)
            count += 1
            if count == 1:
                first = time.perf_counter()
            if count == MESSAGES:
                return time.perf_counter() - first
    raise AssertionError("unreachable")


async def _paho_thread(port: int, client_id: str) -> float:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[paho.MQTTMessage] = asyncio.Queue()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=MQTTProtocolVersion.MQTTv311
    )
    client.manual_ack_set(True)

    def on_message(_client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, message)

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        message = await queue.get()
        first = time.perf_counter()
        client.ack(message.mid, message.qos)
        for _ in range(MESSAGES - 1):
            message = await queue.get()
            client.ack(message.mid, message.qos)
        return time.perf_counter() - first
    finally:
        client.disconnect()
        client.loop_stop()


def _mosquitto_sub(port: int, client_id: str, *, topic: str = _TOPIC) -> float:
    tool = shutil.which("mosquitto_sub")
    if tool is None:
        return float("nan")
    argv = [tool, "-p", str(port), "-h", "127.0.0.1", "-i", client_id, "-c", "-q", "1", "-t", topic]
    start = time.perf_counter()
    subprocess.run([*argv, "-C", str(MESSAGES)], stdout=subprocess.DEVNULL, check=True, timeout=120)
    return time.perf_counter() - start


def run() -> dict[str, float]:
    """Readings/s per layout (median of ``REPEATS``), and the reference ``mosquitto_sub``."""
    binary = require_mosquitto()
    payloads = _payloads()
    layouts: dict[str, Callable[[int, str], Awaitable[float]]] = {
        "aiomqtt": lambda port, cid: _aiomqtt(port, cid, manual_ack=False),
        "aiomqtt_manual_ack": lambda port, cid: _aiomqtt(port, cid, manual_ack=True),
        "hub_intake": _hub_intake,
        "paho_thread": _paho_thread,
    }
    runs: dict[str, list[float]] = {name: [] for name in [*layouts, "mosquitto_sub"]}
    with tempfile.TemporaryDirectory(prefix="anju-bench-mqtt-") as directory:
        port = free_port()
        config = mosquitto_config(port=port, directory=Path(directory))
        broker = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL)
        try:
            if not wait_port(port, timeout_s=10):
                raise RuntimeError("mosquitto did not start")
            for repeat in range(REPEATS):
                for name in runs:
                    client_id = f"bench-{name.replace('_', '-')}-{repeat}"
                    _queue_for(port, client_id, payloads)
                    if name == "mosquitto_sub":
                        seconds = _mosquitto_sub(port, client_id)
                    else:
                        seconds = asyncio.run(asyncio.wait_for(layouts[name](port, client_id), 120))
                    runs[name].append(MESSAGES * READINGS_PER_MESSAGE / seconds)
        finally:
            broker.terminate()
            broker.wait(10)
    return {name: statistics.median(rates) for name, rates in runs.items()}


def report(results: dict[str, float], say: Callable[[str], None] = lambda text: print(text, flush=True)) -> None:
    reference = results["mosquitto_sub"]
    figures = "; ".join(
        f"{name.replace('_', ' ')} {rate / 1e6:.2f} M readings/s (ratio {rate / reference:.2f})"
        for name, rate in results.items()
        if name != "mosquitto_sub"
    )
    say(
        f"MQTT receive, {READINGS_PER_MESSAGE}-reading batches at QoS 1, receive only: {figures}; "
        f"reference mosquitto_sub {reference / 1e6:.2f} M readings/s"
    )


if __name__ == "__main__":
    report(run())
