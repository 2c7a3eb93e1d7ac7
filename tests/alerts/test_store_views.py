"""The store's counted and keyed views (``alert_positions``, ``get_many``, ``open_counts``, ``report_counts``) agree
with what reading every row gives (``list_alerts``, ``summary``): the district node relies on them to answer without
parsing rows it does not show."""

import random

from alerts.incidents import HouseholdStatus, Incident, ResidentReport, summary
from alerts.model import OPEN_STATES, Alert, AlertState, Grade
from alerts.store import AlertStore
from tests.alerts.support import event

T0 = 1_790_000_000_000


def _alerts(rng: random.Random) -> list[Alert]:
    found = []
    for n in range(120):
        opened = T0 - rng.randrange(40) * 1000  # many ties: the id orders them
        grade = rng.choice(list(Grade))
        first = event(key=f"hongxing/s{n}/gas/level", grade=grade, time_ms=opened)
        found.append(Alert(id=f"a{rng.randrange(10**6):06d}-{n}", key=first.key, community="hongxing",
                           grid=first.grid, grade=grade, state=rng.choice(list(AlertState)), revision=1,
                           first_event=first, last_event=first, opened_at_ms=opened, updated_at_ms=opened,
                           level=rng.choice((0, 0, 1, 2))))  # fmt: skip
    return found


def test_positions_and_counts_agree_with_reading_every_row() -> None:
    rng = random.Random(7)
    with AlertStore(":memory:") as store:
        alerts = _alerts(rng)
        store.commit_many([(a, (), ()) for a in alerts])
        for states, grades in ((None, ()), (OPEN_STATES, ()), (None, (Grade.I, Grade.II)), (OPEN_STATES, (Grade.IV,))):
            every = [a for a in store.list_alerts(states=states, limit=-1) if not grades or a.grade in grades]
            keys = [(a.opened_at_ms, a.id) for a in every]
            assert store.alert_positions(states=states, grades=grades, limit=1000, after=None) == keys
            walked: list[tuple[int, str]] = []
            after = None
            for _ in range(100):
                page = store.alert_positions(states=states, grades=grades, limit=7, after=after)
                if not page:
                    break
                walked += page
                after = page[-1]
            assert walked == keys, (states, grades)
        chosen = [a.id for a in alerts[::9]]
        assert {i: a.grade for i, a in store.get_many([*chosen, "nope"]).items()} == {
            a.id: a.grade for a in alerts[::9]
        }
        assert store.get_many([]) == {}

        still = [a for a in alerts if a.state in OPEN_STATES]
        by_grade, escalated, unacknowledged = store.open_counts()
        assert by_grade == {g: n for g in Grade if (n := sum(1 for a in still if a.grade is g))}
        assert escalated == sum(1 for a in still if a.level > 0)
        assert unacknowledged == sum(1 for a in still if a.state is AlertState.OPEN)

        reports = []
        for incident_id in ("inc-one", "inc-two"):
            store.save_incident(Incident(id=incident_id, community="hongxing", kind="flood", title="内涝",
                                         declared_by="li", declared_ms=T0))  # fmt: skip
            for h in range(rng.randrange(5, 15)):
                status = rng.choice(list(HouseholdStatus))
                verified = T0 if h % 3 == 0 else None
                report = ResidentReport(incident_id=incident_id, household=f"{h}栋", status=status, reported_by="li",
                                        reported_ms=T0, verified_ms=verified)  # fmt: skip
                store.save_report(report, (incident_id, None, "report", "li", "app", T0, report.household))
                reports.append(report)
        assert store.report_counts(["inc-one", "inc-two"]) == summary(reports)
        assert store.report_counts(["inc-one"]) == summary(r for r in reports if r.incident_id == "inc-one")
        assert store.report_counts([]) == summary([])


def test_the_district_summary_escapes_what_people_typed_and_lists_who_needs_help_first() -> None:
    from alerts.incident_summary import district_summary_html

    reports = [
        ("east", ResidentReport(incident_id="inc-d1", household="1栋101", status=HouseholdStatus.SAFE,
                                reported_by="li", reported_ms=T0)),
        ("west", ResidentReport(incident_id="inc-d1", household="2栋<b>", status=HouseholdStatus.UNREACHABLE,
                                note="<script>x</script>", reported_by="li", reported_ms=T0)),
        ("east", ResidentReport(incident_id="inc-d1", household="1栋102", status=HouseholdStatus.NEEDS_HELP,
                                reported_by="li", reported_ms=T0)),
    ]  # fmt: skip
    page = district_summary_html(incident_id="inc-d1", title="暴雨 <i>", kind="flood", declared_by="wang",
                                 declared_ms=T0, notice_zh=None, parts=[("east", "declared", None),
                                 ("west", "pending", "HTTP 503")], reports=reports, fields=[], now_ms=T0)  # fmt: skip
    assert "<script>" not in page and "&lt;script&gt;" in page and "暴雨 &lt;i&gt;" in page
    assert page.index("1栋102") < page.index("2栋&lt;b&gt;"), "needs help before unreachable"
    assert "1栋101" not in page, "the safe are counted, not listed"
    assert "HTTP 503" in page and "等待中" in page
