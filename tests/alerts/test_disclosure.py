"""Disclosure (issue 6, Art. 43): personal data never published; publishing and withdrawing are audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts import AlertService, WebhookReceiver
from alerts.disclosure import personal_data_in
from alerts.service import AlertNotFoundError
from alerts.sink import RunningSink
from tests.alerts.support import Clock, directory_for, event, open_alert_store

pytestmark = pytest.mark.usefixtures("alerts_engine")


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("请联系 13812345678", "a mobile number"),
        ("身份证 51010119800101123X 的住户", "a resident ID number"),
        ("1栋301室已处置，2026年11月30日", None),
        ("工单号 20261130123456789", None),  # 17 digits: neither
        ("电话 028-12345678", None),  # a landline of an office is not a person's mobile
        ("请致电 138 0013 8000", "a mobile number"),  # as people write them (found by a first-time user)
        ("138-0013-8000", "a mobile number"),
        ("+8613800138000", "a mobile number"),
        ("0086 138 0013 8000", "a mobile number"),
        ("身份证 110101 19900307 7777", "a resident ID number"),
        ("2026-11-30 08:00 起停水", None),
    ],
)
def test_personal_data_is_recognised(text: str, found: str | None) -> None:
    assert personal_data_in(text) == found


@pytest.mark.anyio
async def test_publishing_and_withdrawing_are_audited(sink: RunningSink, tmp_path: Path) -> None:
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver() as receiver,
            AlertService(store=store, directory=directory_for(sink.url), receiver=receiver, clock=Clock()) as alerts,
        ):
            alert = await alerts.submit(event())
            assert alert is not None
            with pytest.raises(AlertNotFoundError):
                await alerts.publish(subject_kind="alert", subject_id="al-x", title="t", text="x", by="zhang-wei")
            with pytest.raises(ValueError, match="resident ID"):
                await alerts.publish(subject_kind="notice", subject_id="", title="t", text="51010119800101123X",
                                     by="zhang-wei")  # fmt: skip
            item = await alerts.publish(subject_kind="alert", subject_id=alert.id, title="燃气泄漏已处置",
                                        text="请注意通风", by="zhang-wei")  # fmt: skip
            [(published, subject)], counts = await alerts.public_feed()
            assert published.id == item.id and subject is not None and subject.id == alert.id
            assert counts == {"I": 0, "II": 0, "III": 0, "IV": 0}
            assert await alerts.withdraw(item.id, by="zhang-wei") is not None
            assert await alerts.withdraw(item.id, by="zhang-wei") is None
            assert (await alerts.public_feed())[0] == []
        assert store.verify_audit().intact
        assert len(store.disclosures(published_only=False)) == 1
