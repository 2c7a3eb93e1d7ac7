"""Hubs shard by community (issue 8, "Scale-out"): one hub per community on one real Mosquitto, each receiving only
its own community's traffic, under MQTT client ids that differ per community by default."""

import asyncio
import contextlib
import time
from pathlib import Path

import aiomqtt
import pytest

from firmware_sim.load import LoadOptions
from hub.ingest.registry import Registry
from hub.ingest.service import Ingest
from hub.settings import HubSettings
from hub.store import ChunkStore
from protocol import Ack, Batch, Reading, decode_ack, encode_batch
from protocol.topics import Channel, subscription, topic
from tests.hub.test_ingest_flow import fleet_registry, running_ingest

COMMUNITIES = ("east", "west")
BATCHES = 5
"""Batches each community's gateway publishes; the last one is the ordering marker."""


def _fleet(community: str, directory: Path) -> tuple[Registry, str, str]:
    """(registry, gateway, its one gas sensor) of a one-gateway fleet of ``community``."""
    options = LoadOptions(community=community, gateways=1, sensors_per_gateway=1, kinds=("gas",))
    directory.mkdir()
    ((gateway, ((sensor, _),)),) = [(g, options.sensors(g)) for g in options.gateway_ids()]
    return fleet_registry(options, directory), gateway, sensor


def _batch(community: str, gateway: str, sensor: str, seq: int) -> bytes:
    reading = Reading(sensor, time.time_ns() // 1_000_000 - 60_000 + seq, 1.0 + seq / 10, "%LEL")
    return encode_batch(Batch(community, gateway, 1, seq, (reading,)))


async def _acked(client: aiomqtt.Client, wanted: dict[str, int], timeout_s: float = 15.0) -> None:
    """Read hub-acks until each ack topic in ``wanted`` has acknowledged at least its seq."""
    left = dict(wanted)
    async with asyncio.timeout(timeout_s):
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            ack = decode_ack(message.payload)
            assert isinstance(ack, Ack), ack
            if ack.seq >= left.get(message.topic.value, ack.seq + 1):
                del left[message.topic.value]
            if not left:
                return


@pytest.mark.anyio
async def test_two_hubs_on_one_broker_each_receive_and_store_only_their_own_community(
    mosquitto: int, tmp_path: Path
) -> None:
    fleets = {community: _fleet(community, tmp_path / community) for community in COMMUNITIES}
    stores = {community: ChunkStore(path=tmp_path / f"{community}.anju") for community in COMMUNITIES}
    try:
        async with contextlib.AsyncExitStack() as stack:
            hubs: dict[str, Ingest] = {}
            for community, (registry, _, _) in fleets.items():
                client_id = HubSettings(deployment=tmp_path / "unused.yaml").client_id(community)
                hubs[community] = await stack.enter_async_context(
                    running_ingest(port=mosquitto, registry=registry, store=stores[community], client_id=client_id)
                )
            async with aiomqtt.Client("127.0.0.1", mosquitto, identifier=f"test-gws-{time.monotonic_ns()}") as gws:
                for community, (_, gateway, _) in fleets.items():
                    await gws.subscribe(topic(community, gateway, Channel.ACK), qos=1)
                # Interleaved on one connection: each community's last batch follows the other's batches, so once a
                # hub acks its last, the other community's would have reached it first had it subscribed to them.
                for seq in range(1, BATCHES + 1):
                    for community, (_, gateway, sensor) in fleets.items():
                        body = _batch(community, gateway, sensor, seq)
                        await gws.publish(topic(community, gateway, Channel.DATA), body, qos=1)
                await _acked(gws, {topic(c, gateway, Channel.ACK): BATCHES for c, (_, gateway, _) in fleets.items()})
            for community, hub in hubs.items():
                assert hub.metrics.messages_received.get(channel="data") == BATCHES, community
                assert hub.metrics.readings_stored.get() == BATCHES, community
                assert hub.metrics.payloads_rejected.get(reason="community_mismatch") == 0, community
        for community, store in stores.items():
            assert await asyncio.to_thread(store.count_readings) == BATCHES, community
            assert store.dead_letters(10) == [], community
    finally:
        for store in stores.values():
            store.close()


@pytest.mark.anyio
async def test_a_session_left_with_every_communitys_filter_takes_only_its_own_after_the_restart(
    mosquitto: int, tmp_path: Path
) -> None:
    registry, gateway, sensor = _fleet("east", tmp_path / "east")
    client_id = f"anju-hub-before-{time.monotonic_ns()}"
    # The persistent session a hub before the shard left in the broker: subscribed to every community's data.
    async with aiomqtt.Client("127.0.0.1", mosquitto, identifier=client_id, clean_session=False) as before:
        await before.subscribe(subscription(Channel.DATA), qos=1)
    store = ChunkStore(path=tmp_path / "east.anju")
    try:
        async with (
            running_ingest(port=mosquitto, registry=registry, store=store, client_id=client_id) as hub,
            aiomqtt.Client("127.0.0.1", mosquitto, identifier=f"test-gws-{time.monotonic_ns()}") as gws,
        ):
            await gws.subscribe(topic("east", gateway, Channel.ACK), qos=1)
            await gws.publish(topic("west", gateway, Channel.DATA), _batch("west", gateway, sensor, 1), qos=1)
            await gws.publish(topic("east", gateway, Channel.DATA), _batch("east", gateway, sensor, 1), qos=1)
            # The marker: east's batch, published after west's on the same connection.
            await _acked(gws, {topic("east", gateway, Channel.ACK): 1})
            assert hub.metrics.messages_received.get(channel="data") == 1
            assert hub.metrics.payloads_rejected.get(reason="community_mismatch") == 0
    finally:
        store.close()


def test_the_client_id_differs_per_community_unless_given(tmp_path: Path) -> None:
    settings = HubSettings(deployment=tmp_path / "deployment.yaml")
    assert settings.client_id("east") == "anju-hub-east" != settings.client_id("west")
    given = HubSettings(deployment=tmp_path / "deployment.yaml", mqtt_client_id="hub-a")
    assert given.client_id("east") == "hub-a"
    with pytest.raises(ValueError, match="mqtt_client_id"):
        HubSettings(deployment=tmp_path / "deployment.yaml", mqtt_client_id="a/b")
