"""The printable summary of an incident for the sub-district (issue 6, Art. 25): one HTML page, Chinese first.

The community committee reports an incident upward on paper as often as not: this page is what it prints (A4, with
print CSS: table headers repeat on each page, rows never split, colours of the grades kept) or saves as PDF from any
browser. It shows the area and who declared the incident when; the attached alerts counted by grade (and listed, at
most ``ALERT_ROWS``); the households counted by status and each one that needs help or is unreachable; the volunteers
asked, their answers and skills; the notices sent and whether each receiver took them; the measures assigned to
property companies and their confirmations, overdue ones marked; and lines to sign. Every text is HTML-escaped (they
come from staff, residents' reports and the deployment file).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape

from alerts.incidents import HouseholdStatus, ResidentReport
from alerts.mobilisation import INCIDENT_KIND_LABELS, IncidentBoard, IncidentMessage, local_text
from alerts.model import Grade
from protocol import kind_for

__all__ = ["ALERT_ROWS", "district_summary_html", "summary_html"]

ALERT_ROWS = 100
"""Alerts listed one by one (most severe first); the rest are counted — an alert storm must not print 400 pages."""

_STATE_ZH = {"open": "待接单", "acknowledged": "已接单", "en_route": "在途", "on_site": "已到场", "resolved": "已处置",
             "verified": "已核实", "closed": "已关闭"}  # fmt: skip
_DELIVERY = {"sent": ("已送达", "delivered"), "pending": ("待发送", "pending"), "failed": ("发送失败", "failed")}
_At = Callable[[int | None], str]
"""Unix ms (or None) to escaped local time text."""

_GRADE_COLOURS = {Grade.I: "#d32f2f", Grade.II: "#f57c00", Grade.III: "#fbc02d", Grade.IV: "#1976d2"}

_CSS = """
@page { size: A4; margin: 15mm 12mm; }
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", sans-serif;
       font-size: 10.5pt; color: #000; line-height: 1.45; }
h1 { font-size: 17pt; margin: 0 0 2pt; }
h2 { font-size: 12.5pt; border-bottom: 1pt solid #000; margin: 14pt 0 4pt; break-after: avoid; }
.en { color: #555; font-size: 0.85em; font-weight: normal; }
table { border-collapse: collapse; width: 100%; margin: 4pt 0 8pt; }
th, td { border: 0.5pt solid #555; padding: 2.5pt 5pt; text-align: left; vertical-align: top; }
th { background: #eee; }
thead { display: table-header-group; }
tr, .notice { break-inside: avoid; page-break-inside: avoid; }
.swatch { display: inline-block; width: 9pt; height: 9pt; margin-right: 4pt; vertical-align: -1pt; }
.overdue { color: #b00020; font-weight: bold; }
.muted { color: #555; }
.notice { border: 0.5pt solid #555; padding: 4pt 6pt; margin: 4pt 0; }
.sign td { height: 28pt; }
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
@media screen { body { max-width: 200mm; margin: 12pt auto; } }
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """A table: ``head`` cells are escaped markup already (Chinese, then English in a span), ``rows`` cells too."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{empty}</p>'
    return "<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + f"</tr></thead><tbody>{body}</tbody></table>"


def _h(zh: str, en: str) -> str:
    return f'{_e(zh)} <span class="en">{_e(en)}</span>'


def summary_html(
    board: IncidentBoard, *, timezone: str = "Asia/Shanghai", names: Mapping[str, str] | None = None
) -> str:
    """The incident's printable summary as of ``board.now_ms``, times in ``timezone`` (IANA); people are shown by
    their ``names`` (person or volunteer id → name) where known, else by id."""
    incident = board.incident

    def who(person_id: str | None) -> str:
        return _e((names or {}).get(person_id or "", person_id or ""))

    def at(ms: int | None) -> str:
        return "" if ms is None else _e(local_text(ms, timezone))

    kind_zh, kind_en = INCIDENT_KIND_LABELS.get(incident.kind, (incident.kind, incident.kind))
    if incident.active:
        status = _h("进行中", "active")
    else:
        status = f"{_h('已结束', 'closed')}：{who(incident.closed_by)}，{at(incident.closed_ms)}"
    facts = [
        (_h("事件编号", "Incident"), _e(incident.id)),
        (_h("类型", "Kind"), _h(kind_zh, kind_en)),
        (_h("区域", "Area"), _e(board.area_zh)),
        (_h("宣布人 / 时间", "Declared by / at"), f"{who(incident.declared_by)}，{at(incident.declared_ms)}"),
        (_h("状态", "Status"), status),
        (_h("报告时间", "As of"), f"{at(board.now_ms)}（{_e(timezone)}）"),
    ]
    parts = [
        f'<!doctype html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        f"<title>突发事件情况报告 {_e(incident.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n",
        f"<h1>{_h('突发事件情况报告', 'Incident summary')}</h1>\n<p><strong>{_e(incident.title)}</strong></p>",
        "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts) + "</table>",
        _alerts(board, at),
        _households(board, at, who),
        _volunteers(board, at),
        _notices(board, at, who),
        _measures(board, at, who),
        f"<h2>{_h('签字', 'Signatures')}</h2>"
        '<table class="sign"><tr><th>填报单位（盖章）<span class="en">Reporting office (seal)</span></th><td></td></tr>'
        '<tr><th>填报人 <span class="en">Reported by</span></th><td></td></tr>'
        '<tr><th>审核人 <span class="en">Checked by</span></th><td></td></tr></table>',
        "\n</body>\n</html>\n",
    ]
    return "\n".join(parts)


def _alerts(board: IncidentBoard, at: _At) -> str:
    by_grade = Counter(a.grade for a in board.alerts)
    swatch = '<span class="swatch" style="background:{}"></span>'
    counts = [(swatch.format(_GRADE_COLOURS[g]) + _h(g.title_zh, g.label_en), str(by_grade[g])) for g in sorted(Grade)]
    counts.append((_h("合计", "Total"), str(len(board.alerts))))
    listed = sorted(board.alerts, key=lambda a: (int(a.grade), a.opened_at_ms))
    rows = []
    for alert in listed[:ALERT_ROWS]:
        event = alert.last_event
        kind = kind_for(event.kind)
        state = _STATE_ZH.get(alert.state.value, alert.state.value)
        rows.append([_e(f"{alert.grade.name}级"), _e(event.location_zh), _e(kind.label_zh if kind else event.kind),
                     _e(state), at(alert.opened_at_ms), _e(alert.id)])  # fmt: skip
    more = len(listed) - ALERT_ROWS
    tail = f'<p class="muted">另有 {more} 条告警未列出 / {more} more alerts not listed</p>' if more > 0 else ""
    head = [_h("等级", "Grade"), _h("位置", "Place"), _h("类型", "Kind"), _h("状态", "State"), _h("发生", "Opened"),
            _h("编号", "Alert")]  # fmt: skip
    return (f"<h2>{_h('关联告警（按等级）', 'Attached alerts by grade')}</h2>"
            + _table([_h("等级", "Grade"), _h("数量", "Count")], counts, "")
            + _table(head, rows, "无关联告警 / no alerts attached") + tail)  # fmt: skip


def _households(board: IncidentBoard, at: _At, who: Callable[[str | None], str]) -> str:
    reports = board.reports
    counts = Counter(r.status for r in reports)
    summary = [[str(counts[s]) for s in HouseholdStatus] + [str(len(reports)),
                str(sum(r.verified_ms is not None for r in reports))]]  # fmt: skip
    summary_head = [*(_h(s.label_zh, s.value) for s in HouseholdStatus), _h("合计", "households"),
                    _h("已核实", "verified")]  # fmt: skip
    order = {HouseholdStatus.NEEDS_HELP: 0, HouseholdStatus.UNREACHABLE: 1}
    attention = sorted((r for r in reports if r.status in order), key=lambda r: (order[r.status], r.household))
    fields = board.incident.fields
    rows = [
        [_e(r.household), f'<span class="overdue">{_e(r.status.label_zh)}</span>', _e(r.note),
         *(_e(r.values.get(f, "")) for f in fields), f"{who(r.reported_by)}，{at(r.reported_ms)}",
         f"{_e(r.verified_by)}，{at(r.verified_ms)}" if r.verified_by else _h("未核实", "not verified")]
        for r in attention
    ]  # fmt: skip
    head = [_h("住户", "Household"), _h("情况", "Status"), _h("说明", "Note"), *(_e(f) for f in fields),
            _h("上报", "Reported"), _h("核实", "Verified")]  # fmt: skip
    return (f"<h2>{_h('住户情况', 'Households')}</h2>" + _table(summary_head, summary, "")
            + f"<p>{_h('需要帮助及联系不上的住户', 'Households needing help or unreachable')}</p>"
            + _table(head, rows, "无 / none"))  # fmt: skip


def _volunteers(board: IncidentBoard, at: _At) -> str:
    mobilised = board.mobilised()
    skills = Counter(s for c in mobilised if c.volunteer_id in board.volunteers
                     for s in board.volunteers[c.volunteer_id].skills)  # fmt: skip
    skill_text = "，".join(f"{_e(s)} {n}" for s, n in sorted(skills.items(), key=lambda i: (-i[1], i[0]))) or "—"
    counts = _h(f"已集结 {len(mobilised)} 人 / 已通知 {len(board.callouts)} 人",
                f"{len(mobilised)} mobilised of {len(board.callouts)} asked")  # fmt: skip
    line = f"<p>{counts}；{_h('技能', 'skills')}：{skill_text}</p>"
    rows = []
    for c in board.callouts:
        volunteer = board.volunteers.get(c.volunteer_id)
        answer = _h(c.answer.label_zh, c.answer.value) if c.answer else _h("未答复", "no answer")
        name, skills_of = (volunteer.name, "、".join(volunteer.skills)) if volunteer else (c.volunteer_id, "")
        rows.append([_e(name), _e(skills_of), answer, at(c.answered_ms), _e(c.note)])
    head = [_h("姓名", "Name"), _h("技能", "Skills"), _h("答复", "Answer"), _h("时间", "At"), _h("备注", "Note")]
    return f"<h2>{_h('志愿者', 'Volunteers')}</h2>" + line + _table(head, rows, "未通知志愿者 / no volunteer asked")


def _delivery(board: IncidentBoard, message: IncidentMessage) -> str:
    zh, en = _DELIVERY.get(message.status, (message.status, message.status))
    return f"{_e(board.recipient_name(message))}：{_h(zh, en)}"


def _notices(board: IncidentBoard, at: _At, who: Callable[[str | None], str]) -> str:
    if not board.notices:
        return f'<h2>{_h("已发通知", "Notices sent")}</h2><p class="muted">未发通知 / no notice sent</p>'
    items = []
    for notice in board.notices:
        sent_to = "；".join(_delivery(board, m) for m in board.deliveries(notice.id)) or "—"
        english = f'<p class="en">{_e(notice.text_en)}</p>' if notice.text_en else ""
        sent = f'<p class="muted">{at(notice.sent_ms)}，{who(notice.by)}</p>'
        to = f'<p class="muted">{_h("接收", "To")}：{sent_to}</p>'
        items.append(f'<div class="notice">{sent}<p>{_e(notice.text_zh)}</p>{english}{to}</div>')
    return f"<h2>{_h('已发通知', 'Notices sent')}</h2>" + "".join(items)


def _measures(board: IncidentBoard, at: _At, who: Callable[[str | None], str]) -> str:
    rows = []
    for m in board.measures:
        department = board.departments.get(m.department)
        if m.confirmed_ms is not None:
            state = f"{_h('已确认', 'confirmed')}：{who(m.confirmed_by)}，{at(m.confirmed_ms)}<br>{_e(m.note)}"
        elif m.overdue(board.now_ms):
            state = f'<span class="overdue">{_h("逾期未确认", "overdue, not confirmed")}</span>'
        else:
            state = _h("待确认", "waiting for confirmation")
        rows.append([_e(department.name if department else m.department), _e(m.text), at(m.due_ms),
                     f"{_e(m.assigned_by)}，{at(m.assigned_ms)}", state])  # fmt: skip
    head = [_h("单位", "Company"), _h("措施", "Measure"), _h("期限", "Due"), _h("布置", "Assigned"),
            _h("落实确认", "Confirmation")]  # fmt: skip
    overdue = len(board.overdue())
    line = f'<p class="overdue">逾期未确认 {overdue} 项 / {overdue} overdue</p>' if overdue else ""
    return f"<h2>{_h('应急措施', 'Measures')}</h2>" + line + _table(head, rows, "未布置措施 / no measure assigned")


def district_summary_html(
    *,
    incident_id: str,
    title: str,
    kind: str,
    declared_by: str,
    declared_ms: int,
    notice_zh: str | None,
    parts: Sequence[tuple[str, str, str | None]],
    reports: Sequence[tuple[str, ResidentReport]],
    fields: Sequence[str],
    now_ms: int,
    timezone: str = "Asia/Shanghai",
) -> str:
    """The printable summary of one incident declared in several communities (the district node): where it runs —
    ``parts`` as (community, state, why not yet) — the households of every community counted by status, each
    community's counts, and every household that needs help or is unreachable, with the community it is in."""

    def at(ms: int | None) -> str:
        return "" if ms is None else _e(local_text(ms, timezone))

    states = {"declared": ("已启动", "declared"), "pending": ("等待中", "pending"), "refused": ("被拒", "refused")}
    kind_zh, kind_en = INCIDENT_KIND_LABELS.get(kind, (kind, kind))
    facts = [
        (_h("事件编号", "Incident"), _e(incident_id)),
        (_h("类型", "Kind"), _h(kind_zh, kind_en)),
        (_h("宣布人 / 时间", "Declared by / at"), f"{_e(declared_by)}，{at(declared_ms)}"),
        (_h("致居民通知", "Notice to residents"), _e(notice_zh or "—")),
        (_h("报告时间", "As of"), f"{at(now_ms)}（{_e(timezone)}）"),
    ]
    by_community: dict[str, Counter[HouseholdStatus]] = {}
    for community, report in reports:
        by_community.setdefault(community, Counter())[report.status] += 1
    statuses = list(HouseholdStatus)
    part_rows = [
        [_e(community), _h(*states.get(state, (state, state))), *(str(by_community.get(community, Counter())[s])
         for s in statuses), _e(why or "")]
        for community, state, why in parts
    ]  # fmt: skip
    total = Counter(report.status for _, report in reports)
    part_rows.append([_h("合计", "Total"), "", *(str(total[s]) for s in statuses), ""])
    part_head = [_h("社区", "Community"), _h("状态", "State"), *(_h(s.label_zh, s.value) for s in statuses),
                 _h("说明", "Note")]  # fmt: skip
    order = {HouseholdStatus.NEEDS_HELP: 0, HouseholdStatus.UNREACHABLE: 1}
    attention = sorted((row for row in reports if row[1].status in order),
                       key=lambda row: (order[row[1].status], row[0], row[1].household))  # fmt: skip
    rows = [
        [_e(community), _e(r.household), f'<span class="overdue">{_e(r.status.label_zh)}</span>', _e(r.note),
         *(_e(r.values.get(f, "")) for f in fields), f"{_e(r.reported_by)}，{at(r.reported_ms)}"]
        for community, r in attention
    ]  # fmt: skip
    head = [_h("社区", "Community"), _h("住户", "Household"), _h("情况", "Status"), _h("说明", "Note"),
            *(_e(f) for f in fields), _h("上报", "Reported")]  # fmt: skip
    parts_html = [
        f'<!doctype html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        f"<title>跨社区突发事件情况报告 {_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n",
        f"<h1>{_h('跨社区突发事件情况报告', 'Incident summary, several communities')}</h1>\n"
        f"<p><strong>{_e(title)}</strong></p>",
        "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts) + "</table>",
        f"<h2>{_h('各社区', 'Communities')}</h2>" + _table(part_head, part_rows, ""),
        f"<h2>{_h('需要帮助及联系不上的住户', 'Households needing help or unreachable')}</h2>"
        + _table(head, rows, "无 / none"),
        f"<h2>{_h('签字', 'Signatures')}</h2>"
        '<table class="sign"><tr><th>填报单位（盖章）<span class="en">Reporting office (seal)</span></th><td></td></tr>'
        '<tr><th>填报人 <span class="en">Reported by</span></th><td></td></tr></table>',
        "\n</body>\n</html>\n",
    ]
    return "\n".join(parts_html)
