"""Emergency mode (issue 6, Art. 25): an incident for an area gathers its alerts; households' status is collected,
verified by a second person and exported."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from alerts import AlertService, AlertStore, Directory, Grid, Person, WebhookReceiver, WebhookTarget
from alerts.incidents import HouseholdStatus, export_csv, summary
from alerts.service import IncidentNotFoundError, TransitionError
from alerts.sink import RunningSink
from tests.alerts.support import SECRET, Clock, event, open_alert_store

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]


def service(store: AlertStore, url: str, receiver: WebhookReceiver, clock: Clock) -> AlertService:
    target = (WebhookTarget(url=url, secret=SECRET),)
    directory = Directory(
        grids=[
            Grid(id="g1", name="一网格", managers=("zhang-wei",)),
            Grid(id="g2", name="二网格", managers=("zhang-wei",)),
        ],
        people=[Person(id="zhang-wei", name="张伟", targets=target)],
    )
    return AlertService(store=store, directory=directory, receiver=receiver, clock=clock)


async def test_an_incident_for_one_building_gathers_only_that_buildings_alerts(
    sink: RunningSink, tmp_path: Path
) -> None:
    clock = Clock()
    path = tmp_path / "alerts.db"
    with open_alert_store(path) as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            inside = await alerts.submit(event(key="k/smoke-b2", grid="g1", place="2栋"))
            next_door = await alerts.submit(event(key="k/smoke-b3", grid="g1", place="3栋"))
            assert inside is not None and next_door is not None
            incident = await alerts.declare_incident(community="hongxing", kind="fire", title="2栋火灾", by="chen",
                                                     grids=["g1"], buildings=["2栋"])  # fmt: skip
            assert incident.alerts == (inside.id,)
    with open_alert_store(path) as store:  # the area survives a restart
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            late = await alerts.submit(event(key="k/heat-b2", grid="g1", place="2栋"))
            other = await alerts.submit(event(key="k/heat-b3", grid="g1", place="3栋"))
            assert late is not None and other is not None
            board, _ = await alerts.incident_register(incident.id)
            assert board.buildings == ("2栋",) and board.alerts == (inside.id, late.id)


async def test_an_incident_gathers_its_areas_alerts_and_who_is_safe(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "alerts.db"
    with open_alert_store(path) as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            before = await alerts.submit(event(key="k/smoke-g1", grid="g1"))
            elsewhere = await alerts.submit(event(key="k/smoke-g2", grid="g2"))
            assert before is not None and elsewhere is not None
            incident = await alerts.declare_incident(community="hongxing", kind="fire", title="2栋火灾", by="chen",
                                                     grids=["g1"])  # fmt: skip
            assert incident.alerts == (before.id,), "open alerts of the area attach, others do not"
            after = await alerts.submit(event(key="k/heat-g1", grid="g1"))
            assert after is not None
            await alerts.report_household(incident.id, household="2栋502", status=HouseholdStatus.NEEDS_HELP,
                                          by="volunteer-1", note="独居老人，行动不便")  # fmt: skip
            await alerts.report_household(
                incident.id, household="2栋501", status=HouseholdStatus.SAFE, by="volunteer-1"
            )
            with pytest.raises(ValueError, match="someone other"):
                await alerts.verify_household(incident.id, household="2栋501", by="volunteer-1")
            await alerts.verify_household(incident.id, household="2栋501", by="chen")
    with open_alert_store(path) as store:  # after a restart the incident is still active and still gathers alerts
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            late = await alerts.submit(event(key="k/co-g1", grid="g1"))
            assert late is not None
            board, reports = await alerts.incident_register(incident.id)
            assert board.alerts == (before.id, after.id, late.id)
            assert summary(reports) == {"safe": 1, "needs-help": 1, "unreachable": 0, "households": 2, "verified": 1}
            rows = list(csv.reader(io.StringIO(export_csv(board, reports, str).lstrip("\ufeff"))))
            assert rows[0][:3] == ["household", "status", "status_zh"]
            assert [r[:3] for r in rows[1:]] == [["2栋501", "safe", "平安"], ["2栋502", "needs-help", "需要帮助"]]
            closed = await alerts.close_incident(incident.id, by="chen", note="火已扑灭")
            assert not closed.active
            with pytest.raises(TransitionError):
                await alerts.report_household(incident.id, household="2栋503", status=HouseholdStatus.SAFE, by="x")
            after_close = await alerts.submit(event(key="k/smoke2-g1", grid="g1"))
            assert after_close is not None
            assert after_close.id not in (await alerts.incident_register(incident.id))[0].alerts
            with pytest.raises(IncidentNotFoundError):
                await alerts.incident_register("inc-nope")
        assert store.verify_audit().intact


async def test_an_epidemic_collects_the_fields_the_health_authorities_ask_for(
    sink: RunningSink, tmp_path: Path
) -> None:
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, Clock()) as alerts:
            incident = await alerts.declare_incident(community="hongxing", kind="epidemic", title="流感排查",
                                                     by="chen", fields=["temperature", "symptoms"])  # fmt: skip
            with pytest.raises(ValueError, match="lacks symptoms"):
                await alerts.report_household(incident.id, household="1栋101", status=HouseholdStatus.SAFE, by="v",
                                              values={"temperature": "36.6"})  # fmt: skip
            fields = {"temperature": "36.6", "symptoms": "无"}
            with pytest.raises(ValueError, match="collects no phone"):
                await alerts.report_household(incident.id, household="1栋101", status=HouseholdStatus.SAFE, by="v",
                                              values={**fields, "phone": "x"})  # fmt: skip
            report = await alerts.report_household(incident.id, household="1栋101", status=HouseholdStatus.SAFE,
                                                   by="v", values=fields)  # fmt: skip
            assert report.values == {"temperature": "36.6", "symptoms": "无"}
            with pytest.raises(ValueError, match="no grid"):
                await alerts.declare_incident(community="hongxing", kind="flood", title="t", by="c", grids=["g9"])
