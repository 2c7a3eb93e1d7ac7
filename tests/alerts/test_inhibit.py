"""Inhibitions (issue 6): a dead gateway's alert mutes its detectors' "gateway offline" events; an open fire
alert mutes further events of the detectors it names. Real SQLite and deliveries to the sink on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts import AlertService, AlertStore, Grade, RiskEvent, WebhookReceiver
from alerts.sink import RunningSink
from tests.alerts.support import Clock, directory_for, event, open_alert_store, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]

GATEWAY_KEY = "hongxing/gateway/gw-b1/offline"


def gateway_down(status: str = "firing") -> RiskEvent:
    return event(key=GATEWAY_KEY, sensor="gw-b1", kind="gateway", rule="gateway-offline", grade=Grade.IV,
                 status=status, unit="s", value=90.0, threshold=None, source="Anju liveness: broker")  # fmt: skip


def sensor_silent(sensor: str) -> RiskEvent:
    return event(key=f"hongxing/{sensor}/offline", sensor=sensor, kind="gas", rule="gateway-offline", grade=Grade.IV,
                 unit="s", value=90.0, threshold=None, source="Anju liveness: gateway", cause=GATEWAY_KEY)  # fmt: skip


def smoke(sensor: str, grade: Grade = Grade.III, status: str = "firing") -> RiskEvent:
    return event(key=f"hongxing/{sensor}/smoke/level", sensor=sensor, kind="smoke", rule="alarm", grade=grade,
                 status=status, unit="dB/m", value=0.3, threshold=0.15, source="GB 4715-2024: alarm")  # fmt: skip


def fire(status: str = "firing") -> RiskEvent:
    return event(key="hongxing/b1-f2/corroboration/fire", sensor="smoke-b1-f2", kind="corroboration", rule="fire",
                 grade=Grade.II, status=status, unit="dB/m", value=0.3, threshold=None,
                 source="Anju grading: fire", members=("smoke-b1-f2", "temp-b1-f2c", "co-b1-f2"))  # fmt: skip


def service(store: AlertStore, url: str, receiver: WebhookReceiver) -> AlertService:
    return AlertService(store=store, directory=directory_for(url), receiver=receiver, clock=Clock())


async def test_a_dead_gateway_pages_once_not_once_per_detector(sink: RunningSink, tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    with open_alert_store(path) as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver) as alerts:
            assert await alerts.submit(sensor_silent("gas-b1-101")) is not None, "no gateway alert yet: not inhibited"
            gateway = await alerts.submit(gateway_down())
            assert gateway is not None
            assert [await alerts.submit(sensor_silent(f"gas-b1-{n}01")) for n in (2, 3)] == [None, None]
            assert alerts.counters.muted_total == 2
    with open_alert_store(path) as store:  # after a restart the open gateway alert still inhibits
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver) as alerts:
            assert await alerts.submit(sensor_silent("gas-b1-401")) is None
            await alerts.acknowledge(gateway.id, by="zhang-wei", channel="app")
            await alerts.resolve(gateway.id, by="zhang-wei", channel="app", note="网关已重启")
            assert await alerts.submit(sensor_silent("gas-b1-501")) is not None, "its alert resolved: no longer"


async def test_an_open_fire_alert_mutes_its_members_but_not_their_cleared_notices(
    sink: RunningSink, tmp_path: Path
) -> None:
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver) as alerts:
            member = await alerts.submit(smoke("smoke-b1-f2"))
            incident = await alerts.submit(fire())
            assert member is not None and incident is not None and incident.grade is Grade.II
            assert await alerts.submit(smoke("smoke-b1-f2", grade=Grade.II)) is None, "the fire alert carries it"
            assert await alerts.submit(smoke("smoke-b1-f3")) is not None, "a detector the fire does not name pages"
            cleared = await alerts.submit(smoke("smoke-b1-f2", status="cleared"))
            assert cleared is not None and cleared.cleared_at_ms is not None
            await alerts.acknowledge(incident.id, by="zhang-wei", channel="app")
            await alerts.resolve(incident.id, by="zhang-wei", channel="app", note="火已扑灭")
            assert await alerts.submit(smoke("smoke-b1-f2", grade=Grade.II)) is not None
            await wait_until(lambda: len(sink.sink.received) >= 5)


async def test_a_batch_is_muted_as_the_same_events_one_by_one(sink: RunningSink, tmp_path: Path) -> None:
    """An ingest round hands its events over together (``submit_many``, one transaction): the gateway's alert
    and the fire alert still mute the events after them in the same batch, and not those before."""
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver) as alerts:
            batch = [sensor_silent("gas-b1-101"), gateway_down(), sensor_silent("gas-b1-201"), smoke("smoke-b1-f2")]
            batch += [fire(), smoke("smoke-b1-f2", grade=Grade.II), smoke("smoke-b1-f3")]
            outcomes = await alerts.submit_many(batch)
            assert [outcome is not None for outcome in outcomes] == [True, True, False, True, True, False, True]
            assert alerts.counters.muted_total == 2
