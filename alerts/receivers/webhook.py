"""Signed JSON webhooks over HTTP(S): the channel to a grid manager's phone app gateway.

Each request carries

* ``Idempotency-Key`` — ``{alert_id}:{revision}:{person}:{target index}``; the receiver drops repeats
  (we deliver at least once: a crash between its 2xx and our commit resends).
* ``X-Anju-Timestamp`` — Unix seconds when signed; receivers reject stale ones (replay guard).
* ``X-Anju-Signature`` — ``sha256=<hex HMAC-SHA256 over "{timestamp}.{body}">`` with the target's secret
  (the Stripe/Slack scheme: the timestamp is inside the MAC, so it cannot be swapped).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from types import TracebackType

from alerts.directory import DingTalkTarget, EmailTarget, SmsTarget, Target, VoiceTarget, WeComTarget
from alerts.receivers.base import PermanentDeliveryError
from alerts.receivers.email import SmtpServer, send_email
from alerts.receivers.http import HttpClient, new_client, post, raise_for_status
from alerts.receivers.robots import post_robot
from alerts.receivers.sms import SmsGateway, send_sms
from alerts.receivers.voice import VoiceGateway, place_call

__all__ = ["DEFAULT_TIMEOUT_S", "WebhookReceiver", "sign"]

DEFAULT_TIMEOUT_S = 5.0
"""Per request. GB/T 45839-2025 allows 15 s platform → people over two channels; one slow receiver must
not use it all, and a retry comes after 1 s."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body`` keyed with ``secret``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookReceiver:
    """Posts notifications with one pooled HTTP client (aiohttp, made on first use); use as ``async with``. Every
    channel goes through it: Anju's signed webhook here, WeCom and DingTalk robots in
    :mod:`alerts.receivers.robots`, and email through ``smtp`` (:mod:`alerts.receivers.email`), SMS through ``sms``
    (:mod:`alerts.receivers.sms`) and voice calls for grades I–II through ``voice`` (:mod:`alerts.receivers.voice`)
    when configured."""

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock_s: Callable[[], float] = time.time,
        smtp: SmtpServer | None = None,
        sms: SmsGateway | None = None,
        voice: VoiceGateway | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self._timeout_s = timeout_s
        self._clock_s = clock_s
        self._smtp = smtp
        self._sms = sms
        self._voice = voice
        self._voice_not_called = 0
        self._http: HttpClient | None = None

    async def __aenter__(self) -> WebhookReceiver:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def voice_not_called_total(self) -> int:
        """Notifications to voice targets delivered without a call (grade III–IV, or a cleared notice)."""
        return self._voice_not_called

    async def aclose(self) -> None:
        """Close the HTTP client (its pooled connections)."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def _client(self) -> HttpClient:
        if self._http is None:  # aiohttp wants its session made inside the running loop, not at construction
            self._http = new_client(self._timeout_s)
        return self._http

    async def deliver(self, *, target: Target, idempotency_key: str, body: bytes) -> None:
        """POST ``body`` to ``target.url``, signed (or as a robot message for a robot target); raise a retryable or
        permanent delivery error on failure."""
        if isinstance(target, WeComTarget | DingTalkTarget):
            await post_robot(self._client, target, body, clock_s=self._clock_s)
            return
        if isinstance(target, SmsTarget):
            if self._sms is None:
                raise PermanentDeliveryError("sms: no SMS gateway is configured (deployment sms:)")
            await send_sms(self._client, self._sms, target, body, idempotency_key, clock_s=self._clock_s)
            return
        if isinstance(target, VoiceTarget):
            if self._voice is None:
                raise PermanentDeliveryError("voice: no voice gateway is configured (deployment voice:)")
            if not await place_call(self._client, self._voice, target, body, idempotency_key, clock_s=self._clock_s):
                self._voice_not_called += 1
            return
        if isinstance(target, EmailTarget):
            if self._smtp is None:
                raise PermanentDeliveryError("email: no SMTP server is configured (deployment smtp:)")
            await send_email(self._smtp, target, body, idempotency_key)
            return
        timestamp = int(self._clock_s())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": idempotency_key,
            "X-Anju-Timestamp": str(timestamp),
            "X-Anju-Signature": sign(target.secret, timestamp, body),
            "User-Agent": "anju-alerts/1",
        }
        response = await post(self._client, target.url, content=body, headers=headers)
        raise_for_status(response, "")
