"""deploy/mosquitto/anju.conf: sized by its own rule from the edge's and the protocol's numbers, and accepted by a
real Mosquitto, which then passes the largest payload the protocol allows and nothing larger."""

import asyncio
import queue
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from edge.agent import MAX_BATCHES_PER_TICK
from edge.config import EdgeConfig
from hub.demo.broker import find_mosquitto
from hub.demo.processes import Child, Line, free_port, wait_port
from protocol.senml import MAX_PAYLOAD_BYTES
from tests.conftest import require_service

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "deploy" / "mosquitto" / "anju.conf"
REFERENCE_GATEWAYS = 1_000
"""The deployment the file's comment sizes for."""


def settings() -> dict[str, str]:
    pairs = (line.split(None, 1) for line in CONF.read_text(encoding="utf-8").splitlines())
    return {pair[0]: pair[1].strip() for pair in pairs if len(pair) == 2 and not pair[0].startswith("#")}


def test_the_queue_holds_every_unacked_message_of_the_reference_fleet_twice() -> None:
    conf = settings()
    edge = EdgeConfig.__dataclass_fields__
    ack_timeout_s = edge["ack_timeout_s"].default
    tick_s = edge["publish_interval_s"].default
    assert isinstance(ack_timeout_s, float) and isinstance(tick_s, float)
    unacked_per_gateway = MAX_BATCHES_PER_TICK * ack_timeout_s / tick_s
    assert int(conf["max_queued_messages"]) >= REFERENCE_GATEWAYS * unacked_per_gateway * 2
    assert int(conf["max_queued_bytes"]) >= int(conf["max_queued_messages"]) * 4_700, "100-reading batches fit"
    assert int(conf["message_size_limit"]) == MAX_PAYLOAD_BYTES
    assert conf["persistence"] == "true" and int(conf["autosave_interval"]) > 0
    assert "listener" not in conf and "allow_anonymous" not in conf, "listeners and auth live in their own file"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    """Mosquitto with anju.conf in its conf.d, as Debian's mosquitto.conf includes it, on a loopback listener."""
    binary = find_mosquitto()
    require_service("mosquitto", binary)
    assert binary is not None
    port = free_port()
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "anju.conf").write_text(CONF.read_text(encoding="utf-8"), encoding="utf-8")
    main = tmp_path / "mosquitto.conf"
    main.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence_location {tmp_path}/\n"
        f"log_dest stderr\ninclude_dir {tmp_path / 'conf.d'}\n",
        encoding="utf-8",
    )
    child = Child("mosquitto", [binary, "-c", str(main)], queue.Queue[Line]()).start()
    try:
        if not wait_port(port, timeout_s=10):
            pytest.fail(f"mosquitto did not start with {CONF}")
        yield port
    finally:
        child.stop(grace_s=5)


@pytest.mark.anyio
async def test_mosquitto_takes_the_file_and_passes_the_protocols_largest_payload_only(broker: int) -> None:
    async with (
        aiomqtt.Client("127.0.0.1", broker, identifier="test-conf-sub", keepalive=30) as subscriber,
        aiomqtt.Client("127.0.0.1", broker, identifier="test-conf-pub", keepalive=30) as publisher,
    ):
        await subscriber.subscribe("anju/v1/conf/gw-1/data", qos=1)
        await publisher.publish("anju/v1/conf/gw-1/data", b"x" * (MAX_PAYLOAD_BYTES + 1), qos=1)
        await publisher.publish("anju/v1/conf/gw-1/data", b"y" * MAX_PAYLOAD_BYTES, qos=1)
        async with asyncio.timeout(10):
            message = await anext(aiter(subscriber.messages))
        assert message.payload == b"y" * MAX_PAYLOAD_BYTES, "the oversized one was dropped, the largest one passed"
