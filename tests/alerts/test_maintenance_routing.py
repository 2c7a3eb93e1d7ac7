"""Equipment faults go to the property company first (issue 5: health and offline events are maintenance for the
property company), risks at the place to the grid's person on duty; without a property company, the grid's."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts import AlertService, Directory, Grade, Grid, Person, WebhookReceiver, WebhookTarget
from alerts.escalation import EscalationLevel, EscalationPolicy
from alerts.sink import RunningSink
from tests.alerts.support import SECRET, Clock, event, open_alert_store, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]

MINUTE_MS = 60_000


def directory(url: str) -> Directory:
    target = (WebhookTarget(url=url, secret=SECRET),)
    return Directory(
        grids=[Grid(id="hongxing-01", name="红星一网格", managers=("zhang-wei",))],
        people=[
            Person(id="zhang-wei", name="张伟", targets=target),
            Person(id="li-property", name="李物业", targets=target),
            Person(id="chen-subdistrict", name="陈街道", targets=target),
        ],
    )


def offline(**changes: object) -> object:
    return event(
        key="hongxing/gas-b1-301/offline",
        rule="stale",
        grade=Grade.IV,
        maintenance=True,
        source="Anju liveness: no reading for 3 intervals",
        **changes,
    )


async def test_faults_go_to_the_property_company_and_risks_to_the_grid(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    chain = EscalationPolicy(
        [EscalationLevel(id="subdistrict", name="街道", people=("chen-subdistrict",))],
        {Grade.IV: 10 * MINUTE_MS, Grade.III: 60 * MINUTE_MS},
    )
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver() as receiver,
            AlertService(
                store=store,
                directory=directory(sink.url),
                receiver=receiver,
                clock=clock,
                escalation=chain,
                maintenance=("li-property",),
            ) as alerts,
        ):
            fault = await alerts.submit(offline())  # type: ignore[arg-type]
            risk = await alerts.submit(event())
            assert fault is not None and risk is not None
            await wait_until(lambda: len(sink.sink.received) == 2)
            to = {b["alert_id"]: b["recipient"]["id"] for b in sink.sink.received}
            assert to == {fault.id: "li-property", risk.id: "zhang-wei"}
            clock.now_ms += 10 * MINUTE_MS + 1  # nobody took the fault: up the chain, the property company kept
            await alerts.escalate_due()
            await wait_until(lambda: len(sink.sink.received) == 4)
            escalated = sorted(b["recipient"]["id"] for b in sink.sink.received if b["reason"] == "escalated")
            assert escalated == ["chen-subdistrict", "li-property"]


async def test_without_a_property_company_faults_go_to_the_grid(sink: RunningSink, tmp_path: Path) -> None:
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver() as receiver,
            AlertService(store=store, directory=directory(sink.url), receiver=receiver) as alerts,
        ):
            await alerts.submit(offline())  # type: ignore[arg-type]
            await wait_until(lambda: len(sink.sink.received) == 1)
    assert sink.sink.received[0]["recipient"]["id"] == "zhang-wei"


def test_an_unknown_maintenance_person_is_refused(tmp_path: Path) -> None:
    with open_alert_store(tmp_path / "alerts.db") as store, pytest.raises(ValueError, match="nobody"):
        AlertService(store=store, directory=directory("http://127.0.0.1:9/"), receiver=None, maintenance=("nobody",))  # type: ignore[arg-type]
