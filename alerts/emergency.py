"""The emergency desk: notices, volunteers and measures of declared incidents (issue 6, Art. 25–26).

::

    async with EmergencyDesk(store=store, directory=directory, receiver=receiver, volunteers=volunteers,
                             broadcasts=broadcasts, departments=departments) as desk:
        await desk.call_volunteers(incident.id, by="chen")
        await desk.send_notice(incident.id, text_zh="……", text_en="…", by="chen")

Each step checks its input first — an unknown incident, volunteer or measure raises a :class:`NotFoundError`, a
closed incident or a measure confirmed already a :class:`TransitionError`, anything else wrong a ValueError naming
it — then writes the step, its messages and its audit rows (under the incident's id, in the alerts' hash chain) in
one transaction (:meth:`AlertStore.save_mobilisation`) before anything is sent; :class:`IncidentOutbox` delivers the
messages. The timer task (``anju-emergency-measures``) notifies a company again, once per deadline, about a measure
it has not confirmed in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, TypeVar

from alerts.directory import Directory, Target
from alerts.incident_outbox import IncidentOutbox, OutboxCounters
from alerts.incidents import Incident
from alerts.message import Reason, iso8601
from alerts.mobilisation import (
    INCIDENT_KIND_LABELS,
    Answer,
    Broadcast,
    Callout,
    Draft,
    IncidentBoard,
    IncidentMessage,
    Measure,
    Notice,
    Volunteer,
    local_text,
    message_grade,
)
from alerts.model import Grade
from alerts.receivers.base import Receiver
from alerts.service import SYSTEM, Clock, IncidentNotFoundError, NotFoundError, TransitionError, wall_clock_ms
from alerts.store import AlertStore
from alerts.work_orders import Department

__all__ = ["EmergencyCounters", "EmergencyDesk", "MeasureNotFoundError", "VolunteerNotFoundError"]

log = logging.getLogger("anju.alerts.emergency")


class VolunteerNotFoundError(NotFoundError):
    what = "volunteer"


class MeasureNotFoundError(NotFoundError):
    what = "measure"


@dataclasses.dataclass(frozen=True, slots=True)
class EmergencyCounters:
    """The desk's counters: its outbox's deliveries, and measures notified again for being overdue."""

    messages: OutboxCounters
    measures_overdue_total: int


class _Entry(Protocol):
    @property
    def id(self) -> str: ...


_E = TypeVar("_E", bound=_Entry)


def _by_id(entries: Sequence[_E], what: str) -> dict[str, _E]:
    found: dict[str, _E] = {}
    for entry in entries:
        if entry.id in found:
            raise ValueError(f"{what} id {entry.id!r} appears twice")
        found[entry.id] = entry
    return found


class EmergencyDesk:
    """Notices, volunteer call-outs and measures of incidents, with their outbox's delivery task and the measures'
    timer. Use as ``async with``. ``community_name`` is how the area reads in messages, ``timezone`` (IANA) how
    deadlines do."""

    def __init__(
        self,
        *,
        store: AlertStore,
        directory: Directory,
        receiver: Receiver,
        volunteers: Sequence[Volunteer] = (),
        broadcasts: Sequence[Broadcast] = (),
        departments: Sequence[Department] = (),
        community_name: str = "",
        timezone: str = "Asia/Shanghai",
        clock: Clock = wall_clock_ms,
        max_attempts: int = 10,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
    ) -> None:
        local_text(0, timezone)  # an unknown zone fails here, not in the first message
        self._volunteers = _by_id(volunteers, "volunteer")
        self._broadcasts = _by_id(broadcasts, "broadcast receiver")
        self._departments = _by_id(departments, "department")
        covering: list[Volunteer | Broadcast] = [*volunteers, *broadcasts]
        for entry in covering:
            for grid in entry.grids:
                if directory.grid(grid) is None:
                    raise ValueError(f"{type(entry).__name__.lower()} {entry.id!r} covers unknown grid {grid!r}")
        for department in departments:
            for person_id in department.people:
                if directory.person(person_id) is None:
                    raise ValueError(f"department {department.id!r} names unknown person {person_id!r}")
        self._store = store
        self._directory = directory
        self._community_name = community_name
        self._timezone = timezone
        self._clock = clock
        self._outbox = IncidentOutbox(store=store, receiver=receiver, resolve=self._target, clock=clock,
                                      max_attempts=max_attempts, retry_base_s=retry_base_s,
                                      retry_max_s=retry_max_s)  # fmt: skip
        self._mutex = asyncio.Lock()  # one step at a time: each reads, checks, then writes
        self._running: tuple[contextlib.AsyncExitStack, asyncio.Task[None]] | None = None
        self._measures_overdue_total = 0

    async def __aenter__(self) -> EmergencyDesk:
        if self._running is not None:
            raise RuntimeError("EmergencyDesk is already running")
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._outbox)
            group = await stack.enter_async_context(asyncio.TaskGroup())
            timer = group.create_task(self._remind_forever(), name="anju-emergency-measures")
            self._running = (stack.pop_all(), timer)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        running, self._running = self._running, None
        if running is None:
            return
        stack, timer = running
        timer.cancel()  # a reminder cut short was not committed: the next start sends it
        await stack.aclose()

    @property
    def counters(self) -> EmergencyCounters:
        return EmergencyCounters(self._outbox.counters, self._measures_overdue_total)

    @property
    def timezone(self) -> str:
        """The IANA zone times are shown in for people."""
        return self._timezone

    # --- notices to residents -----------------------------------------------------------------------------

    async def send_notice(
        self, incident_id: str, *, text_zh: str, text_en: str = "", by: str, notice_id: str | None = None
    ) -> Notice:
        """Send a notice to the residents of the incident's area through every broadcast receiver covering it
        (audited). ValueError for a text too long to reach a residents' group whole, or an area no receiver
        covers. ``notice_id``: the caller's id for it (the district node's, so that a retry sends it once)."""
        async with self._mutex:
            incident = await self._active(incident_id, "notice")
            now = self._clock()
            notice = Notice(incident_id=incident_id, text_zh=text_zh.strip(), text_en=text_en.strip(), by=by,
                            sent_ms=now)  # fmt: skip
            if notice_id is not None:
                notice = dataclasses.replace(notice, id=notice_id)
            area = self._area(incident)
            targets = [b for b in self._broadcasts.values() if b.covers(incident)]
            if not targets:
                raise ValueError(f"no broadcast receiver covers the area of incident {incident_id} ({area}): add one "
                                 "under broadcasts: in the deployment")  # fmt: skip
            notice = dataclasses.replace(notice, broadcasts=tuple(b.id for b in targets))
            kind_en = INCIDENT_KIND_LABELS.get(incident.kind, ("", incident.kind))[1]
            zh = f"【紧急通知】{incident.title}：{notice.text_zh}"
            en = f"[Emergency notice] {notice.text_en or f'{kind_en} in {area}: see the Chinese text above'}"
            draft = await self._draft(incident, notice.id, notice.id, Reason.INCIDENT_NOTICE, now, zh, en)
            extra = {"notice": {"id": notice.id, "text_zh": notice.text_zh, "text_en": notice.text_en, "by": by}}
            messages = [m for b in targets for m in draft.messages("broadcast", b.id, b.name, (b.target,), extra)]
            text = f"notice {notice.id} to {', '.join(notice.broadcasts)}: {notice.text_zh}"
            text += f" / {notice.text_en}" if notice.text_en else ""
            audit = (incident_id, "active", "notice", by, "api", now, text)
            await asyncio.to_thread(self._store.save_mobilisation, audit=[audit], notice=notice, messages=messages)
        self._outbox.wake()
        log.info("incident %s: notice %s to %d broadcast receivers", incident_id, notice.id, len(targets))
        return notice

    # --- volunteers ---------------------------------------------------------------------------------------

    async def call_volunteers(
        self, incident_id: str, *, by: str, volunteers: Sequence[str] | None = None
    ) -> list[Callout]:
        """Ask volunteers to join the incident: those named in ``volunteers``, or (None) every volunteer covering its
        area. Those asked before are not asked again; returns the newly asked (audited)."""
        if not by:
            raise ValueError("calling volunteers needs who calls them")
        chosen = None if volunteers is None else [self._volunteer(v) for v in dict.fromkeys(volunteers)]
        async with self._mutex:
            incident = await self._active(incident_id, "volunteers called")
            if chosen is None:
                chosen = [v for v in self._volunteers.values() if v.covers(incident)]
            asked = {c.volunteer_id for c in await asyncio.to_thread(self._store.callouts, incident_id)}
            new = [v for v in chosen if v.id not in asked]
            if not new:
                log.info("incident %s: no volunteer left to ask", incident_id)
                return []
            now = self._clock()
            area = self._area(incident)
            zh = f"【志愿者集结】{area} {incident.title}：请回复能否参加（可以参加 / 无法参加）"
            en = f"[Volunteers called] {incident.title} in {area}: please answer available or unavailable"
            draft = await self._draft(incident, "call", f"{incident_id}:call", Reason.VOLUNTEER_CALL, now, zh, en)
            messages: list[IncidentMessage] = []
            for v in new:
                path = f"/api/v1/incidents/{incident_id}/volunteers/{v.id}/answer"
                extra = {"volunteer": {"id": v.id, "name": v.name, "skills": list(v.skills)},
                         "answer": {"path": path, "choices": [a.value for a in Answer]}}  # fmt: skip
                messages += draft.messages("volunteer", v.id, v.name, v.targets, extra)
            callouts = [Callout(incident_id=incident_id, volunteer_id=v.id, asked_by=by, asked_ms=now) for v in new]
            names = ", ".join(f"{v.name} ({v.id})" for v in new)
            audit = (incident_id, "active", "volunteers", by, "api", now, f"volunteers asked to join: {names}")
            await asyncio.to_thread(self._store.save_mobilisation, audit=[audit], callouts=callouts, messages=messages)
        self._outbox.wake()
        return callouts

    async def answer(
        self, incident_id: str, volunteer_id: str, *, answer: Answer, by: str | None = None, note: str = ""
    ) -> Callout:
        """Record a volunteer's answer (``by``: who recorded it, the volunteer by default); a later answer replaces
        an earlier one (audited). :class:`TransitionError` when the volunteer was not asked to join."""
        volunteer = self._volunteer(volunteer_id)
        async with self._mutex:
            await self._active(incident_id, "answered")
            callouts = await asyncio.to_thread(self._store.callouts, incident_id)
            current = next((c for c in callouts if c.volunteer_id == volunteer_id), None)
            if current is None:
                why = f"{volunteer.name} was not asked to join incident {incident_id}; call them first"
                raise TransitionError(volunteer_id, "not asked", answer.value, why)
            now = self._clock()
            who = by or volunteer_id
            answered = dataclasses.replace(current, answer=answer, answered_by=who, answered_ms=now, note=note)
            text = f"volunteer {volunteer.name} ({volunteer_id}): {answer.value} {answer.label_zh}"
            text += f" ({note})" if note else ""
            audit = (incident_id, current.answer.value if current.answer else "asked", answer.value, who, "api", now,
                     text)  # fmt: skip
            await asyncio.to_thread(self._store.save_mobilisation, audit=[audit], callouts=[answered])
        return answered

    # --- measures for property companies (Art. 26) ------------------------------------------------------

    async def assign_measure(self, incident_id: str, *, department: str, text: str, due_ms: int, by: str) -> Measure:
        """Assign a measure with a deadline [Unix ms] to a department (a property company); its people are notified
        (audited). ValueError for an unknown department, an empty or too long text, a deadline not in the future."""
        target = self._departments.get(department)
        if target is None:
            known = ", ".join(sorted(self._departments)) or "none configured"
            raise ValueError(f"no department {department!r} (known: {known})")
        async with self._mutex:
            incident = await self._active(incident_id, "measure assigned")
            now = self._clock()
            measure = Measure(incident_id=incident_id, department=department, text=text.strip(), due_ms=due_ms,
                              assigned_by=by, assigned_ms=now)  # fmt: skip
            due = local_text(due_ms, self._timezone, zone=True)
            zh = f"【应急措施】{incident.title}：请{target.name}于{due}前落实并确认：{measure.text}"
            en = f"[Emergency measure] {incident.title}: {target.name}, carry out by {due} and confirm: {measure.text}"
            messages = await self._measure_messages(incident, measure, Reason.MEASURE_ASSIGNED, now, zh, en)
            note = f"measure {measure.id} to {target.name} ({department}), due {iso8601(due_ms)}: {measure.text}"
            audit = (incident_id, "active", "measure", by, "api", now, note)
            await asyncio.to_thread(self._store.save_mobilisation, audit=[audit], measure=measure, messages=messages)
        self._outbox.wake()
        return measure

    async def confirm_measure(self, incident_id: str, measure_id: str, *, by: str, note: str) -> Measure:
        """One of the department's people confirms a measure, saying what was done (audited). A measure is confirmed
        once (:class:`TransitionError` after); ValueError for someone not of the department or an empty note."""
        if not note.strip():
            raise ValueError("confirming a measure needs a note saying what was done")
        async with self._mutex:
            await self._incident(incident_id)
            measure = await asyncio.to_thread(self._store.measure, measure_id)
            if measure is None or measure.incident_id != incident_id:
                raise MeasureNotFoundError(measure_id)
            if measure.confirmed_ms is not None:
                why = f"already confirmed by {measure.confirmed_by} at {iso8601(measure.confirmed_ms)}"
                raise TransitionError(measure_id, "confirmed", "confirmed", why)
            department = self._departments.get(measure.department)
            if department is not None and by not in department.people:
                raise ValueError(f"{by!r} is not one of {department.name}'s people ({', '.join(department.people)}), "
                                 "who confirm its measures")  # fmt: skip
            now = self._clock()
            confirmed = dataclasses.replace(measure, confirmed_by=by, confirmed_ms=now, note=note.strip())
            late = " after its deadline" if now > measure.due_ms else ""
            text = f"measure {measure_id} confirmed{late}: {confirmed.note}"
            audit = (incident_id, "assigned", "confirmed", by, "api", now, text)
            await asyncio.to_thread(self._store.save_mobilisation, audit=[audit], measure=confirmed)
        return confirmed

    async def remind_overdue(self, *, limit: int = 100) -> list[Measure]:
        """Notify the department's people (and who assigned it, when in the directory) again about each unconfirmed
        measure of an active incident past its deadline — once per deadline, restarts included (audited). The timer
        task calls this; returns the measures reminded of."""
        reminded: list[Measure] = []
        async with self._mutex:
            now = self._clock()
            for measure in await asyncio.to_thread(self._store.overdue_measures, now_ms=now, limit=limit):
                incident = await self._incident(measure.incident_id)
                late = dataclasses.replace(measure, reminded_due_ms=measure.due_ms)
                department = self._departments.get(measure.department)
                name = department.name if department else measure.department
                due = local_text(measure.due_ms, self._timezone, zone=True)
                zh = f"【应急措施逾期】{incident.title}：{name}未在{due}前确认落实：{measure.text}"
                en = f"[Emergency measure overdue] {incident.title}: {name} did not confirm by {due}: {measure.text}"
                messages = await self._measure_messages(incident, late, Reason.MEASURE_OVERDUE, now, zh, en)
                note = f"measure {measure.id} of {name} not confirmed by {iso8601(measure.due_ms)}: notified again"
                audit = (incident.id, "assigned", "overdue", SYSTEM, "timer", now, note)
                await asyncio.to_thread(self._store.save_mobilisation, audit=[audit], measure=late, messages=messages)
                self._measures_overdue_total += 1
                reminded.append(late)
        if reminded:
            self._outbox.wake()
        return reminded

    async def _measure_messages(
        self, incident: Incident, measure: Measure, reason: Reason, now: int, zh: str, en: str
    ) -> list[IncidentMessage]:
        department = self._departments.get(measure.department)
        people = list(department.people if department else ())
        key = f"{measure.id}:assigned"
        if reason is Reason.MEASURE_OVERDUE:
            people.append(measure.assigned_by)  # who assigned it hears it is late (when in the directory)
            key = f"{measure.id}:overdue-{measure.due_ms}"
        draft = await self._draft(incident, measure.id, key, reason, now, zh, en)
        path = f"/api/v1/incidents/{incident.id}/measures/{measure.id}/confirm"
        extra = {"measure": {"id": measure.id, "department": measure.department, "text": measure.text,
                             "department_name": department.name if department else measure.department,
                             "due": iso8601(measure.due_ms), "confirm_path": path}}  # fmt: skip
        rows: list[IncidentMessage] = []
        for person in (self._directory.person(p) for p in dict.fromkeys(people)):
            if person is not None:
                rows += draft.messages("person", person.id, person.name, person.targets, extra)
        if not rows:
            log.warning("measure %s of incident %s reaches nobody: no one of its department has a target",
                        measure.id, incident.id)  # fmt: skip
        return rows

    # --- the board ----------------------------------------------------------------------------------------

    async def board(self, incident_id: str) -> IncidentBoard:
        """The incident with its alerts, households, notices (and their deliveries), volunteers and measures."""
        incident = await self._incident(incident_id)
        return await asyncio.to_thread(self._board, incident, self._clock())

    def _board(self, incident: Incident, now: int) -> IncidentBoard:
        store, ident = self._store, incident.id
        alerts = tuple(a for a in (store.get(i) for i in incident.alerts) if a is not None)
        return IncidentBoard(incident=incident, area_zh=self._area(incident), alerts=alerts,
                             reports=tuple(store.reports(ident)), notices=tuple(store.notices(ident)),
                             callouts=tuple(store.callouts(ident)), measures=tuple(store.measures(ident)),
                             messages=tuple(store.incident_messages(ident)), volunteers=dict(self._volunteers),
                             broadcasts=dict(self._broadcasts), departments=dict(self._departments),
                             now_ms=now)  # fmt: skip

    # --- helpers ------------------------------------------------------------------------------------------

    def _volunteer(self, volunteer_id: str) -> Volunteer:
        volunteer = self._volunteers.get(volunteer_id)
        if volunteer is None:
            raise VolunteerNotFoundError(volunteer_id)
        return volunteer

    async def _incident(self, incident_id: str) -> Incident:
        incident = await asyncio.to_thread(self._store.incident, incident_id)
        if incident is None:
            raise IncidentNotFoundError(incident_id)
        return incident

    async def _active(self, incident_id: str, step: str) -> Incident:
        incident = await self._incident(incident_id)
        if not incident.active:
            raise TransitionError(incident_id, "closed", step, "the incident is closed")
        return incident

    async def _draft(
        self, incident: Incident, subject_id: str, key_subject: str, reason: Reason, now: int, zh: str, en: str
    ) -> Draft:
        found = await asyncio.to_thread(lambda: [self._store.get(i) for i in incident.alerts])
        grade: Grade = message_grade(a.grade for a in found if a is not None)
        return Draft(incident=incident, subject_id=subject_id, key_subject=key_subject, reason=reason, grade=grade,
                     area_zh=self._area(incident), zh=zh, en=en, time_ms=now)  # fmt: skip

    def _area(self, incident: Incident) -> str:
        community = self._community_name or incident.community
        buildings = f"（{'、'.join(incident.buildings)}）" if incident.buildings else ""
        if not incident.grids:
            return f"{community}{buildings or '（全社区）'}"
        names = [g.name if (g := self._directory.grid(i)) is not None else i for i in incident.grids]
        return f"{community} {'、'.join(names)}{buildings}"

    def _target(self, message: IncidentMessage) -> Target | None:
        """Where ``message`` goes now (None: its recipient or target left the deployment)."""
        targets: Sequence[Target] = ()
        if message.recipient_kind == "broadcast" and (b := self._broadcasts.get(message.recipient_id)) is not None:
            targets = (b.target,)
        elif message.recipient_kind == "volunteer" and (v := self._volunteers.get(message.recipient_id)) is not None:
            targets = v.targets
        elif message.recipient_kind == "person" and (p := self._directory.person(message.recipient_id)) is not None:
            targets = p.targets
        return targets[message.target_index] if message.target_index < len(targets) else None

    async def _remind_forever(self) -> None:
        while True:
            try:
                await self.remind_overdue()
            except Exception:  # a failed round (a busy disk) is retried next round; the timer must not die
                log.exception("reminding overdue measures failed; retrying")
            wait_s = 1.0  # poll at least this often: measures assigned meanwhile, another clock
            next_ms = await asyncio.to_thread(self._store.next_measure_due_ms)
            if next_ms is not None:
                wait_s = min(wait_s, max(0.0, (next_ms - self._clock()) / 1000))
            await asyncio.sleep(max(wait_s, 0.01))
