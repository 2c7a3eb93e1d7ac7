"""Email over SMTP (issue 6), against a real local SMTP server (aiosmtpd) on loopback: the message, and the
server's answers — 4xx retried, 5xx not."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from alerts import AlertService, Directory, Grid, Person, WebhookReceiver
from alerts.directory import EmailTarget
from alerts.receivers.email import SmtpServer
from hub.demo.processes import free_port
from tests.alerts.support import event, open_alert_store, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]


class Mailbox:
    """An aiosmtpd handler: records messages; scripted answers for the first RCPTs."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.messages: list[email.message.EmailMessage] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.answers:
            return self.answers.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw: Any = envelope.content
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 Message accepted"


@pytest.fixture
def mail_server() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox("451 4.3.0 mailbox busy, try again")
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def directory(address: str) -> Directory:
    return Directory(
        grids=[Grid(id="hongxing-01", name="红星一网格", managers=("li-property",))],
        people=[Person(id="li-property", name="李物业", targets=(EmailTarget(address=address),))],
    )


async def test_an_alert_arrives_by_email_after_a_temporary_refusal(
    mail_server: tuple[Mailbox, int], tmp_path: Path
) -> None:
    box, port = mail_server
    smtp = SmtpServer(host="127.0.0.1", port=port, sender="anju@hongxing.example.cn", starttls=False)
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver(smtp=smtp) as receiver,
            AlertService(
                store=store,
                directory=directory("li@wy.example.cn"),
                receiver=receiver,
                retry_base_s=0.05,
                retry_max_s=0.1,
            ) as alerts,  # fmt: skip
        ):
            alert = await alerts.submit(event())
            assert alert is not None
            await wait_until(lambda: len(box.messages) == 1)
            assert alerts.counters.notification_failures_total["retryable"] == 1, "451 is retried"
    [message] = box.messages
    assert message["Subject"].startswith("【III级 黄色 较大】红星社区 1栋301厨房 可燃气体 27.4 %LEL")
    assert message["To"] == "li@wy.example.cn" and message["X-Anju-Idempotency-Key"] == f"{alert.id}:1:li-property:0"
    text = message.get_content()
    assert "[grade III" in text and f"告警 Alert: {alert.id}" in text


async def test_a_refused_recipient_is_permanent_and_no_smtp_server_is_said_plainly(
    mail_server: tuple[Mailbox, int], tmp_path: Path
) -> None:
    box, port = mail_server
    box.answers = ["550 5.1.1 no such user"]
    smtp = SmtpServer(host="127.0.0.1", port=port, sender="anju@hongxing.example.cn", starttls=False)
    for receiver_smtp, why in ((smtp, "550"), (None, "no SMTP server")):
        with open_alert_store(tmp_path / f"alerts-{why}.db") as store:
            async with (
                WebhookReceiver(smtp=receiver_smtp) as receiver,
                AlertService(store=store, directory=directory("nobody@wy.example.cn"), receiver=receiver) as alerts,
            ):
                alert = await alerts.submit(event())
                assert alert is not None
                await wait_until(lambda: alerts.counters.notification_failures_total["permanent"] == 1)
            [row] = store.notifications(alert.id)
            assert row.status == "failed" and why in (row.last_error or "")
    assert box.messages == []


def test_an_email_address_must_look_like_one() -> None:
    with pytest.raises(ValueError, match="address"):
        EmailTarget(address="not an address")
    with pytest.raises(ValueError, match="address"):
        EmailTarget(address="li@localhost")
