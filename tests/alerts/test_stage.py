"""The Stage combinators (issue 6: one Stage protocol with sequence / fan-out / route)."""

from __future__ import annotations

import dataclasses

import pytest

from alerts import Grade, RiskEvent
from alerts.stage import Stage, fan_out, route, sequence
from tests.alerts.support import event

pytestmark = pytest.mark.anyio


def tagging(tag: str, seen: list[str]) -> Stage:
    async def stage(e: RiskEvent, /) -> RiskEvent | None:
        seen.append(tag)
        return dataclasses.replace(e, source=f"{e.source}+{tag}")

    return stage


def stopping(seen: list[str]) -> Stage:
    async def stage(e: RiskEvent, /) -> RiskEvent | None:
        seen.append("stop")
        return None

    return stage


async def test_sequence_passes_changes_on_and_stops_at_the_first_none() -> None:
    seen: list[str] = []
    passed = await sequence(tagging("a", seen), tagging("b", seen))(event(source="s"))
    assert passed is not None and passed.source == "s+a+b" and seen == ["a", "b"]
    seen.clear()
    assert await sequence(tagging("a", seen), stopping(seen), tagging("c", seen))(event()) is None
    assert seen == ["a", "stop"]


async def test_fan_out_gives_every_branch_the_event_and_passes_it_unchanged() -> None:
    seen: list[str] = []
    original = event(source="s")
    assert await fan_out(tagging("a", seen), stopping(seen), tagging("b", seen))(original) == original
    assert sorted(seen) == ["a", "b", "stop"]

    async def broken(e: RiskEvent, /) -> RiskEvent | None:
        raise RuntimeError("city platform down")

    with pytest.raises(ExceptionGroup):
        await fan_out(broken)(original)


async def test_route_takes_the_first_matching_branch_or_the_default() -> None:
    seen: list[str] = []
    stage = route(
        (lambda e: e.kind == "smoke", tagging("fire desk", seen)),
        (lambda e: e.grade <= Grade.II, tagging("urgent", seen)),
        default=stopping(seen),
    )
    assert (await stage(event(kind="smoke", grade=Grade.II))).source.endswith("+fire desk")  # type: ignore[union-attr]
    assert (await stage(event(grade=Grade.II))).source.endswith("+urgent")  # type: ignore[union-attr]
    assert await stage(event(grade=Grade.IV)) is None
    assert seen == ["fire desk", "urgent", "stop"]
    plain = event()
    assert await route((lambda e: False, stopping(seen)))(plain) == plain
