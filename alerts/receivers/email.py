"""Email over SMTP: the channel for people who read alerts at a desk (a property company's control room, the
sub-district office), and the record many offices keep.

One message per notification: the subject is the Chinese line with grade and colour, the text the Chinese and
English lines and the details (place, reading, time, alert id). ``smtplib`` (the standard library) sends it in a
worker thread, STARTTLS and login when configured, within a timeout. Failures are classified by the server's
answer: 4xx and a dropped connection are retried, 5xx (a refused recipient or sender, a failed login) are not.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from alerts.directory import EmailTarget
from alerts.receivers.base import PermanentDeliveryError, RetryableDeliveryError

__all__ = ["SmtpServer", "email_message", "send_email"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpServer:
    """Where mail goes out: ``host``:``port``, ``sender`` address, STARTTLS and login when given."""

    host: str
    port: int = 587
    sender: str
    starttls: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0


def email_message(server: SmtpServer, target: EmailTarget, body: bytes, idempotency_key: str) -> EmailMessage:
    """The message for one notification body (``alerts.message``), Chinese first."""
    data: dict[str, Any] = json.loads(body)
    message = EmailMessage()
    message["Subject"] = str(data["message_zh"]).split("\n", 1)[0]
    message["From"] = server.sender
    message["To"] = target.address
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(idstring=idempotency_key.replace(":", "."), domain="anju.local")
    message["X-Anju-Idempotency-Key"] = idempotency_key
    lines = [
        str(data["message_zh"]),
        str(data["message_en"]),
        "",
        f"位置 Location: {data.get('location_zh', '')}",
        f"时间 Time: {data.get('event_time', '')}",
        f"告警 Alert: {data['alert_id']} ({data.get('reason_zh', '')} / {data.get('reason', '')})",
        f"依据 Source: {data.get('source', '')}",
    ]
    message.set_content("\n".join(lines))
    return message


def _send(server: SmtpServer, message: EmailMessage) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=server.timeout_s) as smtp:
        if server.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if server.username is not None:
            smtp.login(server.username, server.password or "")
        smtp.send_message(message)


async def send_email(server: SmtpServer, target: EmailTarget, body: bytes, idempotency_key: str) -> None:
    """Send one notification by email; raise a retryable or permanent delivery error as the server answers."""
    message = email_message(server, target, body, idempotency_key)
    try:
        await asyncio.to_thread(_send, server, message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        error = RetryableDeliveryError if all(400 <= c < 500 for c in codes) else PermanentDeliveryError
        raise error(f"email: recipient refused: {exc.recipients}") from exc
    except smtplib.SMTPResponseException as exc:
        error = RetryableDeliveryError if 400 <= exc.smtp_code < 500 else PermanentDeliveryError
        raise error(f"email: {exc.smtp_code} {exc.smtp_error!r}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise RetryableDeliveryError(f"email: {type(exc).__name__}: {exc}") from exc
