"""Shared helpers for the rule tests: one-rule engines and series in seconds."""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from alerts.model import RiskEvent
from hub.detection.rules import Rule, RuleEngine, RuleSet, SensorContext
from hub.detection.rules.model import validate_rule
from hub.ingest.registry import SensorInfo
from protocol.kinds import KINDS

T0 = 1_764_400_000_000
"""2025-11-29T07:06:40Z in Unix ms (15:06:40 in Shanghai)."""


def make_rule(**fields: Any) -> Rule:
    base: dict[str, Any] = {
        "id": "r",
        "kind": "gas",
        "name": "test rule",
        "name_zh": "测试规则",
        "grade": "III",
        "source": "test: a rule under test",
        "tag": "D",
    }
    return validate_rule({**base, **fields})


def sensor(index: int, kind: str = "gas", name: str | None = None) -> SensorInfo:
    return SensorInfo(name or f"{kind}-{index}", "gw-1", KINDS[kind], "1栋", "grid-1", None, index)


def one_rule_engine(rule: Rule, *, screen: bool = True) -> RuleEngine:
    return RuleEngine(community="c", ruleset=RuleSet(rules=(rule,)), sensors=[sensor(0, rule.kind, "s")], screen=screen)


def feed(engine: RuleEngine, series: Sequence[tuple[float, float]], *, row: int = 0) -> list[RiskEvent]:
    """Each reading in its own round: (seconds after T0, value)."""
    events: list[RiskEvent] = []
    for seconds, value in series:
        events += engine.observe_columns(
            np.array([row], np.intp), np.array([T0 + round(seconds * 1000)], np.int64), np.array([value])
        )
    return events


def run(rule: Rule, series: Sequence[tuple[float, float]], *, screen: bool = True) -> list[tuple[float, str]]:
    """(seconds after T0, status) of each event of ``rule`` over ``series``."""
    return [((e.time_ms - T0) / 1000, e.status) for e in feed(one_rule_engine(rule, screen=screen), series)]


def every(step_s: float, values: Sequence[float], start_s: float = 0.0) -> list[tuple[float, float]]:
    return [(start_s + i * step_s, v) for i, v in enumerate(values)]


def contexts(items: Mapping[str, tuple[str, str, frozenset[str]]]) -> dict[str, SensorContext]:
    """sensor id → (kind, space, tags)."""
    return {sid: SensorContext(sid, kind, "b1", space, tags) for sid, (kind, space, tags) in items.items()}
