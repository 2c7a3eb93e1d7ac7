"""What a notification says: the zh-first text and the JSON body every channel is built from.

The body is built once, when the alert change is committed, and stored with the notification; every retry
sends the same bytes, so a receiver that deduplicates by idempotency key sees one notification, and the
audit shows exactly what a person was told.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from alerts.model import Alert, RiskEvent
from protocol import kind_for

__all__ = [
    "DIGEST_ITEMS",
    "Reason",
    "digest_body",
    "iso8601",
    "kind_names",
    "notification_body",
    "render_text",
    "rule_name_zh",
    "with_work_order",
]


class Reason(enum.StrEnum):
    """Why people are being notified about an alert."""

    OPENED = "opened"
    UPGRADED = "upgraded"
    REFIRED = "refired"
    CLEARED = "cleared"
    ESCALATED = "escalated"
    """Nobody acknowledged within the grade's deadline: the next level of the chain is paged, with everyone before."""
    REMINDER = "reminder"
    """Still unacknowledged at the top of the chain: everyone is paged again."""
    OVERDUE = "overdue"
    """Acknowledged, but nobody reported on site within the grade's deadline: everyone reached is paged again."""
    REOPENED = "reopened"
    """Resolved, but the condition stayed in alarm (or a person reopened it): handled again from the start."""
    ASSIGNED = "assigned"
    """A person handed the alert to someone (指派): that person is paged with it."""
    DISPATCHED = "dispatched"
    """A work order for the alert was dispatched to a department (its people are paged with it)."""
    WORK_ORDER_OVERDUE = "work_order_overdue"
    """A work order was not done by its deadline: the department and everyone reached are paged again."""
    DIGEST = "digest"
    """Several notifications of one group sent as one page (``alerts.grouping``)."""
    INCIDENT_NOTICE = "incident_notice"
    """A notice to the residents of an incident's area, through its broadcast receivers (``alerts.mobilisation``)."""
    VOLUNTEER_CALL = "volunteer_call"
    """Volunteers covering an incident's area are asked to join (they answer available or unavailable)."""
    MEASURE_ASSIGNED = "measure_assigned"
    """A measure for an incident assigned to a property company (Art. 26): its people confirm it."""
    MEASURE_OVERDUE = "measure_overdue"
    """A measure not confirmed by its deadline: the company's people are notified again (once per deadline)."""

    @property
    def label_zh(self) -> str:
        return _REASON_ZH[self]


_REASON_ZH = {
    Reason.OPENED: "新告警",
    Reason.UPGRADED: "升级",
    Reason.REFIRED: "再次触发",
    Reason.CLEARED: "已恢复",
    Reason.ESCALATED: "超时未接单，已升级上报",
    Reason.REMINDER: "仍未接单，再次提醒",
    Reason.OVERDUE: "已接单但未按时到场",
    Reason.REOPENED: "已重新打开",
    Reason.ASSIGNED: "指派",
    Reason.DISPATCHED: "派发工单",
    Reason.WORK_ORDER_OVERDUE: "工单逾期",
    Reason.DIGEST: "汇总",
    Reason.INCIDENT_NOTICE: "紧急通知",
    Reason.VOLUNTEER_CALL: "志愿者集结",
    Reason.MEASURE_ASSIGNED: "应急措施",
    Reason.MEASURE_OVERDUE: "应急措施逾期",
}

# Display symbols for SenML units people do not read easily (protocol.units keeps the wire symbols).
_UNIT_DISPLAY = {"Cel": "°C", "m3": "m³", "/": "", "deg": "°"}

# Chinese names of the set points in protocol.kinds; unknown rule names are shown as they are.
_RULE_ZH = {
    "pre-warning": "预警",
    "level-1 alarm": "一级报警",
    "level-2 alarm": "二级报警",
    "alarm": "报警",
    "above ambient": "高于环境温度",
    "static alarm": "定温报警",
    "static alarm, all A1": "定温报警（A1全部响应）",
    "waterlogging": "积水",
    "deep water": "深积水",
    "sustained low level": "持续低浓度",
    "alarm level": "报警浓度",
    "danger level": "危险浓度",
    "above healthy leakage": "超出正常泄漏",
    "alarm, upper": "报警上限",
    "warm": "温度偏高",
    "PVC limit": "超PVC耐温",
    "XLPE limit": "超XLPE耐温",
    "below normal supply": "低于正常供水压力",
    "below fire supply": "低于火灾供水压力",
    "dry main": "管网无压",
    "jolt": "震动",
    "displaced": "移位",
    "open": "开启",
    "half the limit": "达限值50%",
    "near the limit": "达限值80%",
    "limit": "达限值",
    "entrapment": "困人",
    "e-bike in car": "电动车入梯",
    "pressed": "已按下",
    "stale": "超时未上报",
    "gateway-offline": "网关离线",
    "heartbeat-lost": "网关心跳中断",
}

# Kinds of events that are not sensor kinds (protocol.kinds): the hub's liveness reports gateways too.
_OTHER_KINDS = {"gateway": ("网关", "gateway"), "corroboration": ("多传感器印证", "corroborated")}


def kind_names(event: RiskEvent) -> tuple[str, str]:
    """(Chinese, English) name of the event's kind: a sensor kind's labels, the producer's own (``kind_zh``), the
    hub's other kinds, or the kind id as it is."""
    kind = kind_for(event.kind)
    if kind is not None:
        return kind.label_zh, kind.label_en
    if event.kind_zh:
        return event.kind_zh, event.kind_en or event.kind
    return _OTHER_KINDS.get(event.kind, (event.kind, event.kind))


def rule_name_zh(event: RiskEvent) -> str:
    """The Chinese name of the event's rule: the producer's own (``rule_zh``), the hub's, or the rule id as it is."""
    return event.rule_zh or _RULE_ZH.get(event.rule, event.rule)


def iso8601(time_ms: int | None) -> str | None:
    """Unix milliseconds as ISO 8601 UTC with milliseconds (``2025-06-01T08:00:00.000Z``)."""
    if time_ms is None:
        return None
    moment = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.1f}".removesuffix(".0")


def _quantity(value: float, unit: str) -> str:
    head, _, rest = unit.partition(" ")  # "m3 in 12 h": the unit, then what it is over
    shown = f"{_UNIT_DISPLAY.get(head, head)} {rest}".strip()
    return f"{_number(value)} {shown}".rstrip()


_STANDARD_CODE = re.compile(r"^((?:GB(?:/T)?|EN|IEC|ISO|UL|NFPA|TSG|CJJ|JGJ|DB\d+(?:/T)?)[\w /.\-]*?\d[\w.\-]*)")


def _standard(source: str) -> str:
    """The standard's code from a source citation: "GB/T 50493-2019 §5.5.2: …" → "GB/T 50493-2019"; "" when the
    source is not a standard ("household detector practice", "Anju liveness"): the message cites the rule alone,
    and English prose stays out of the Chinese line (the body's ``source`` keeps the whole citation)."""
    found = _STANDARD_CODE.match(source.split(":", 1)[0].split("§", 1)[0].strip())
    return found.group(1).strip() if found else ""


def render_text(alert: Alert, reason: Reason) -> tuple[str, str]:
    """The notification text in Chinese and in English, for ``alert`` as of its last event.

    ``【III级 黄色 较大】1栋301厨房 可燃气体 27.4 %LEL ≥ 25 %LEL（GB/T 50493-2019 一级报警）``
    """
    event: RiskEvent = alert.last_event
    kind = kind_for(event.kind)
    kind_zh, kind_en = kind_names(event)
    rule_zh = rule_name_zh(event)
    standard = _standard(event.source)
    grade = alert.grade
    reading = _quantity(event.value, event.unit)
    above = True
    if event.below is not None:
        above = not event.below
    elif kind is not None:
        point = next((p for p in kind.set_points if p.name == event.rule), None)
        above = point.above if point else True
    if event.threshold is not None:
        sign = "≥" if above else "≤"
        comparison = f"{reading} {sign} {_quantity(event.threshold, event.unit)}"
    else:
        comparison = reading
    cite_zh = f"（{standard} {rule_zh}）" if standard else f"（{rule_zh}）"
    cite_en = f" ({standard} {event.rule})" if standard else f" ({event.rule})"
    if reason is Reason.CLEARED:
        zh = (
            f"【已恢复 {grade.name}级 {grade.colour_zh}】{event.location_zh} {kind_zh} 已恢复正常 {reading}，"
            f"告警仍待处理人确认关闭"
        )
        en = (
            f"[cleared, grade {grade.name} {grade.colour}] {event.location_zh} {kind_en} back to {reading}; "
            f"the alert stays open until a person resolves it"
        )
        return zh, en
    prefix_zh = {
        Reason.UPGRADED: "升级 ",
        Reason.REFIRED: "再次触发 ",
        Reason.ESCALATED: "超时未接单 ",
        Reason.REMINDER: "仍未接单 ",
        Reason.OVERDUE: "已接单未到场 ",
        Reason.REOPENED: "重新打开 ",
        Reason.ASSIGNED: "指派给您 ",
        Reason.DISPATCHED: "派单 ",
        Reason.WORK_ORDER_OVERDUE: "工单逾期 ",
    }.get(reason, "")
    prefix_en = {
        Reason.UPGRADED: "upgraded to ",
        Reason.REFIRED: "fired again, ",
        Reason.ESCALATED: "not acknowledged, escalated, ",
        Reason.REMINDER: "still not acknowledged, ",
        Reason.OVERDUE: "acknowledged but nobody on site, ",
        Reason.REOPENED: "reopened, ",
        Reason.ASSIGNED: "assigned to you, ",
        Reason.DISPATCHED: "work order for ",
        Reason.WORK_ORDER_OVERDUE: "work order overdue, ",
    }.get(reason, "")
    if event.maintenance:  # a fault of the detector, not a reading of the place: "可燃气体探测器 超时未上报"
        limit = f"（限值 {_quantity(event.threshold, event.unit)}）" if event.threshold is not None else ""
        limit_en = f" (limit {_quantity(event.threshold, event.unit)})" if event.threshold is not None else ""
        device_zh, device_en = ("", "") if event.kind == "gateway" else (f" {kind_zh}探测器", f" {kind_en} detector")
        zh = f"【{prefix_zh}{grade.title_zh}】{event.location_zh}{device_zh} {rule_zh}：{reading}{limit}"
        en = f"[{prefix_en}{grade.title_en}] {event.location_zh}{device_en} {event.rule}: {reading}{limit_en}"
        return zh, en
    comparison_zh = comparison_en = comparison
    if alert.cleared_at_ms is not None:  # a later page (escalation, work order) of a condition that has cleared
        comparison_zh, comparison_en = f"已恢复 {reading}", f"back to {reading}"
    elif grade.more_severe_than(event.grade):  # the reading is past a lower set point now than at its worst
        cite_zh = f"{cite_zh[:-1]}；曾达{grade.name}级）"
        cite_en = f"{cite_en[:-1]}; reached grade {grade.name} earlier)"
    zh = f"【{prefix_zh}{grade.title_zh}】{event.location_zh} {kind_zh} {comparison_zh}{cite_zh}"
    en = f"[{prefix_en}{grade.title_en}] {event.location_zh} {kind_en} {comparison_en}{cite_en}"
    return zh, en


def notification_body(
    alert: Alert,
    *,
    reason: Reason,
    idempotency_key: str,
    recipient_id: str,
    recipient_name: str,
) -> dict[str, Any]:
    """The JSON body of one notification (documented field by field in the package README/report)."""
    event = alert.last_event
    kind_zh, kind_en = kind_names(event)
    zh, en = render_text(alert, reason)
    return {
        "version": 1,
        "idempotency_key": idempotency_key,
        "alert_id": alert.id,
        "alert_key": alert.key,
        "revision": alert.revision,
        "reason": reason.value,
        "reason_zh": reason.label_zh,
        "grade": {
            "number": int(alert.grade),
            "roman": alert.grade.roman,
            "label_zh": alert.grade.label_zh,
            "label_en": alert.grade.label_en,
            "colour": alert.grade.colour,
            "colour_zh": alert.grade.colour_zh,
        },
        "state": alert.state.value,
        "community": alert.community,
        "grid": alert.grid,
        "sensor": event.sensor,
        "kind": event.kind,
        "kind_zh": kind_zh,
        "kind_en": kind_en,
        "location_zh": event.location_zh,
        "value": event.value,
        "unit": event.unit,
        "threshold": event.threshold,
        "rule": event.rule,
        "rule_zh": rule_name_zh(event),
        "source": event.source,
        "event_time": iso8601(event.time_ms),
        "event_time_ms": event.time_ms,
        "opened_at": iso8601(alert.opened_at_ms),
        "opened_at_ms": alert.opened_at_ms,
        "cleared_at": iso8601(alert.cleared_at_ms),
        "cleared_at_ms": alert.cleared_at_ms,
        "escalation_level": alert.level,
        "recipient": {"id": recipient_id, "name": recipient_name},
        "message_zh": zh,
        "message_en": en,
        "message": f"{zh}\n{en}",
    }


DIGEST_ITEMS = 10
"""How many of a digest's alerts it lists one by one (most severe first, each with its latest change); the rest are
counted."""


def digest_body(members: Sequence[dict[str, Any]], *, idempotency_key: str) -> dict[str, Any]:
    """One page for several notification bodies of one group and recipient (``alerts.grouping``).

    It is the most severe (then newest) member's body, so every channel renders it as it renders one
    notification, with the counts in front and a ``digest`` field listing the members:
    ``【汇总 II级 橙色 重大】1栋 共 37 条告警变化（12 个告警：II级 2，III级 10）；最严重：…``.
    """
    ordered = sorted(members, key=lambda b: (b["grade"]["number"], -int(b["event_time_ms"])))
    head = ordered[0]
    latest: dict[str, dict[str, Any]] = {}
    for b in sorted(members, key=lambda b: (int(b["event_time_ms"]), int(b["revision"]))):
        latest[str(b["alert_id"])] = b  # each alert once, as of its newest change in the page
    listed = sorted(latest.values(), key=lambda b: (b["grade"]["number"], -int(b["event_time_ms"])))
    grades = Counter(int(b["grade"]["number"]) for b in members)
    alerts = {str(b["alert_id"]): int(b["grade"]["number"]) for b in members}
    per_grade = Counter(alerts.values())
    roman = {1: "I", 2: "II", 3: "III", 4: "IV"}
    counts_zh = "，".join(f"{roman[g]}级 {per_grade[g]}" for g in sorted(per_grade))
    counts_en = ", ".join(f"{per_grade[g]} grade {roman[g]}" for g in sorted(per_grade))
    grade = head["grade"]
    place = head.get("location_zh", "")
    zh = (
        f"【汇总 {grade['roman']}级 {grade['colour_zh']} {grade['label_zh']}】{place} 等共 {len(members)} 条告警变化"
        f"（{len(alerts)} 个告警：{counts_zh}）；最严重：{head['message_zh']}"
    )
    en = (
        f"[digest, grade {grade['roman']} {grade['colour']}] {len(members)} changes to {len(alerts)} alerts "
        f"({counts_en}); most severe: {head['message_en']}"
    )
    items = [
        {
            "alert_id": b["alert_id"],
            "idempotency_key": b["idempotency_key"],
            "reason": b["reason"],
            "grade": b["grade"]["roman"],
            "event_time": b["event_time"],
            "message_zh": b["message_zh"],
            "message_en": b["message_en"],
        }
        for b in listed[:DIGEST_ITEMS]
    ]
    lines = [f"- {item['message_zh']} / {item['message_en']}" for item in items]
    more = len(listed) - len(items)
    if more:
        lines.append(f"- 另有 {more} 个告警 / and {more} more alerts")
    return {
        **head,
        "idempotency_key": idempotency_key,
        "reason": Reason.DIGEST.value,
        "reason_zh": Reason.DIGEST.label_zh,
        "message_zh": zh,
        "message_en": en,
        "message": "\n".join([zh, en, *lines]),
        "digest": {
            "count": len(members),
            "alerts": len(alerts),
            "by_grade": {roman[g]: grades[g] for g in sorted(grades)},
            "alerts_by_grade": {roman[g]: per_grade[g] for g in sorted(per_grade)},
            "items": items,
            "more": more,
            "keys": sorted(str(b["idempotency_key"]) for b in members),
            "alert_ids": sorted(latest),
        },
    }


def with_work_order(body: dict[str, Any], order: dict[str, Any]) -> None:
    """Add a work order's department, task and deadline to a notification's text, so that every channel — robots,
    SMS, email, not only the webhook's ``work_order`` field — tells the department what to do and by when."""
    department, task, due = order["department_name"], order["task"], order["due"]
    zh = f"{body['message_zh']}；工单 {department}：{task}，{due} 前完成"
    en = f"{body['message_en']}; work order for {department}: {task}, due {due}"
    body.update(message_zh=zh, message_en=en, message=f"{zh}\n{en}")
