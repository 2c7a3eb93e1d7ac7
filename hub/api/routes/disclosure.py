"""Disclosure to residents (Art. 43): staff publish and withdraw (``/api/v1/disclosures``, token); anyone reads the
public feed (``/api/v1/public/disclosures``, no login) — no names, phones or flat numbers."""

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from alerts.disclosure import Disclosure
from alerts.hazards import Hazard
from alerts.model import Alert
from hub.api.deps import CommunityWide, CurrentPrincipal, RuntimeDep, acting_as
from hub.api.problems import service_errors
from hub.api.times import moment

router = APIRouter(tags=["disclosure"])
staff = [CommunityWide]


class PublishIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    subject_kind: Literal["alert", "hazard", "notice"]
    subject_id: str = Field(default="", max_length=64)
    title: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=5000)


class WithdrawIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)


class DisclosurePublic(BaseModel):
    id: str
    title: str
    text: str
    published_at: datetime
    subject_kind: str
    place: str | None = Field(description="building at most (never a flat)")
    kind: str | None
    grade: str | None
    colour: str | None
    state: str | None


class DisclosureStaff(DisclosurePublic):
    subject_id: str
    published_by: str
    withdrawn_by: str | None
    withdrawn_at: datetime | None


class PublicFeed(BaseModel):
    items: list[DisclosurePublic]
    open_hazards_by_grade: dict[str, int]


def public_place(location: str) -> str:
    """A place as residents may see it: up to the building (``红星社区 1栋301厨房`` → ``红星社区 1栋``)."""
    if "栋" in location:
        return location[: location.index("栋") + 1]
    return location.split(" ", 1)[0]


def _public(item: Disclosure, subject: Alert | Hazard | None) -> DisclosurePublic:
    fields: dict[str, str | None] = {"place": None, "kind": None, "grade": None, "colour": None, "state": None}
    if isinstance(subject, Alert):
        event = subject.last_event
        fields = {
            "place": public_place(event.location_zh),
            "kind": event.kind,
            "grade": subject.grade.name,
            "colour": subject.grade.colour,
            "state": subject.state.value,
        }
    elif isinstance(subject, Hazard):
        fields = {"place": subject.place, "kind": "hazard", "grade": subject.grade.name,
                  "colour": subject.grade.colour, "state": subject.state.value}  # fmt: skip
    return DisclosurePublic(
        id=item.id,
        title=item.title,
        text=item.text,
        published_at=moment(item.published_ms),
        subject_kind=item.subject_kind,
        **fields,
    )


@router.post("/disclosures", status_code=201, dependencies=staff)
async def publish(runtime: RuntimeDep, principal: CurrentPrincipal, body: PublishIn) -> DisclosureStaff:
    with service_errors("disclosure"):
        item = await runtime.alerts.publish(
            subject_kind=body.subject_kind,
            subject_id=body.subject_id,
            title=body.title,
            text=body.text,
            by=acting_as(principal, body.by),
        )
    return _staff(item, await runtime.alerts.subject_of(item))


@router.post("/disclosures/{item_id}/withdraw", dependencies=staff)
async def withdraw(runtime: RuntimeDep, principal: CurrentPrincipal, item_id: str, body: WithdrawIn) -> DisclosureStaff:
    item = await runtime.alerts.withdraw(item_id, by=acting_as(principal, body.by))
    if item is None:
        raise HTTPException(404, f"no published item {item_id!r}")
    return _staff(item, await runtime.alerts.subject_of(item))


def _staff(item: Disclosure, subject: Alert | Hazard | None) -> DisclosureStaff:
    public = _public(item, subject)
    return DisclosureStaff(
        **public.model_dump(),
        subject_id=item.subject_id,
        published_by=item.published_by,
        withdrawn_by=item.withdrawn_by,
        withdrawn_at=None if item.withdrawn_ms is None else moment(item.withdrawn_ms),
    )


@router.get("/public/disclosures")
async def public_feed(runtime: RuntimeDep) -> PublicFeed:
    """What is published to residents (no login): each item with its subject's building, kind, grade and state,
    and the open hazards of the register counted by grade."""
    items, counts = await runtime.alerts.public_feed()
    return PublicFeed(items=[_public(item, subject) for item, subject in items], open_hazards_by_grade=counts)
