from __future__ import annotations

import pytest

from alerts import SENSOR_CEILING, Grade, grade
from tests.alerts.support import event


def test_grade_labels_and_order() -> None:
    assert Grade.III.title_zh == "III级 黄色 较大"
    assert (Grade.I.colour, Grade.I.label_zh) == ("red", "特别重大")
    assert (Grade.IV.colour, Grade.IV.label_zh, Grade.II.colour) == ("blue", "一般", "orange")
    assert Grade.I.more_severe_than(Grade.II) and not Grade.IV.more_severe_than(Grade.III)


def test_sensor_evidence_alone_is_capped_at_ii() -> None:
    assert grade(event(grade=Grade.I)) is Grade.II is SENSOR_CEILING


def test_person_confirmation_reaches_i() -> None:
    assert grade(event(grade=Grade.I, confirmed_by_person=True)) is Grade.I


def test_no_downgrade_while_open() -> None:
    assert grade(event(grade=Grade.IV), current=Grade.II) is Grade.II
    assert grade(event(grade=Grade.II), current=Grade.III) is Grade.II
    assert grade(event(grade=Grade.III)) is Grade.III


def test_event_validation() -> None:
    assert event(grade=3).grade is Grade.III
    with pytest.raises(ValueError, match="grade"):
        event(grade=7)
    with pytest.raises(ValueError, match="status"):
        event(status="maybe")
    with pytest.raises(ValueError, match="finite"):
        event(value=float("nan"))
