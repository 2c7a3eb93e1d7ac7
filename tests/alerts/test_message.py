from __future__ import annotations

from alerts import Alert, AlertState, Grade, Reason, render_text
from alerts.message import iso8601
from tests.alerts.support import event


def _alert(**changes: object) -> Alert:
    e = event()
    fields: dict[str, object] = {
        "id": "al-1", "key": e.key, "community": e.community, "grid": e.grid, "grade": Grade.III,
        "state": AlertState.OPEN, "revision": 1, "first_event": e, "last_event": e,
        "opened_at_ms": e.time_ms, "updated_at_ms": e.time_ms,
    }  # fmt: skip
    fields.update(changes)
    return Alert(**fields)  # type: ignore[arg-type]


def test_message_is_chinese_first_with_standard() -> None:
    zh, en = render_text(_alert(), Reason.OPENED)
    assert zh == "【III级 黄色 较大】红星社区 1栋301厨房 可燃气体 27.4 %LEL ≥ 25 %LEL（GB/T 50493-2019 一级报警）"
    assert en.startswith("[grade III yellow, relatively major] 红星社区 1栋301厨房 combustible gas 27.4 %LEL ≥ 25 %LEL")


def test_cleared_message_says_the_alert_stays_open() -> None:
    zh, en = render_text(_alert(last_event=event(status="cleared", value=12.0)), Reason.CLEARED)
    assert zh.startswith("【已恢复 III级 黄色】") and "12 %LEL" in zh
    assert "stays open" in en


def test_later_pages_do_not_claim_a_reading_is_past_a_set_point_it_no_longer_is() -> None:
    cleared = _alert(last_event=event(status="cleared", value=7.3), cleared_at_ms=1)
    zh, en = render_text(cleared, Reason.DISPATCHED)  # a work order for a leak that has cleared
    assert "已恢复 7.3 %LEL" in zh and "≥" not in zh and "back to 7.3 %LEL" in en
    lower = _alert(grade=Grade.II, last_event=event(grade=Grade.III, value=38.7))  # was past level 2, now level 1
    zh, en = render_text(lower, Reason.ESCALATED)
    assert zh.endswith("（GB/T 50493-2019 一级报警；曾达II级）") and en.endswith("; reached grade II earlier)")


def test_a_detector_fault_reads_as_one_and_prose_sources_stay_out_of_the_chinese_line() -> None:
    stale = event(key="k/gas/offline", rule="stale", grade=Grade.IV, maintenance=True, value=15.5, unit="s",
                  threshold=15.0, source="Anju liveness: no reading for 3 intervals")  # fmt: skip
    zh, en = render_text(_alert(grade=Grade.IV, first_event=stale, last_event=stale), Reason.OPENED)
    assert zh == "【IV级 蓝色 一般】红星社区 1栋301厨房 可燃气体探测器 超时未上报：15.5 s（限值 15 s）"
    assert en.endswith("combustible gas detector stale: 15.5 s (limit 15 s)")
    practice = event(rule="pre-warning", threshold=10.0, source="household detector practice: alarms from ~10 %LEL")
    zh, en = render_text(_alert(last_event=practice), Reason.OPENED)
    assert zh.endswith("≥ 10 %LEL（预警）") and "practice" not in zh


def test_iso8601() -> None:
    assert iso8601(0) == "1970-01-01T00:00:00.000Z"
    assert iso8601(None) is None


def test_every_standard_set_point_has_a_chinese_name() -> None:
    from alerts.message import _RULE_ZH
    from protocol.kinds import KINDS

    names = {point.name for kind in KINDS.values() for point in kind.set_points}
    assert names <= set(_RULE_ZH), sorted(names - set(_RULE_ZH))


def test_a_producers_chinese_rule_name_is_shown_and_corroboration_has_a_kind_name() -> None:
    held = event(rule="level-1 alarm held 5 min", rule_zh="一级报警持续5分钟", grade=Grade.II)
    zh, _ = render_text(_alert(first_event=held, last_event=held, grade=Grade.II), Reason.OPENED)
    assert "一级报警持续5分钟" in zh and "held 5 min" not in zh
    both = event(kind="corroboration", rule="gas and CO", rule_zh="燃气与一氧化碳同时报警", grade=Grade.II)
    zh, en = render_text(_alert(first_event=both, last_event=both, grade=Grade.II), Reason.OPENED)
    assert "多传感器印证" in zh and "燃气与一氧化碳同时报警" in zh and "corroborated" in en


def test_a_rule_under_its_limit_reads_as_under_and_a_unit_over_a_window_is_shown() -> None:
    none = event(
        kind="water-meter", rule="no water use in 12 h", rule_zh="独居老人12小时无用水", value=0.0,
        unit="m3 in 12 h", threshold=0.01, below=True,
    )  # fmt: skip
    zh, en = render_text(_alert(first_event=none, last_event=none), Reason.OPENED)
    assert "0 m³ in 12 h ≤ 0.01 m³ in 12 h" in zh and "独居老人12小时无用水" in zh
    assert "≥" not in en
