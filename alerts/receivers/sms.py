"""SMS through an HTTP gateway: the channel that reaches any phone, for grid managers away from their apps.

Two request formats (the deployment's ``sms:`` picks one):

- ``generic``: ``POST url`` with ``{"to": "+8613800000000", "text": …, "idempotency_key": …}`` and a bearer token —
  the shape most in-house and aggregator gateways take. 2xx is delivered; 408, 429 and 5xx are retried; other
  statuses are not.
- ``aliyun``: Alibaba Cloud SMS (Dysmsapi ``SendSms``, API version 2017-05-25), the RPC request style: the query
  parameters sorted and percent-encoded (RFC 3986), signed with HMAC-SHA1 keyed ``AccessKeySecret + "&"`` over
  ``"POST&%2F&" + encode(query)`` (:mod:`alerts.receivers.aliyun`, shared with the voice receiver), the message
  given as an approved template (``template_code``) with the alert's fields as ``TemplateParam``. The answer's
  ``Code`` says what happened: ``OK``; flow control and throttling (``isv.BUSINESS_LIMIT_CONTROL``,
  ``Throttling.User``) are retried; anything else is not.

The text is short — an SMS is 70 Chinese characters a segment: grade, place, kind, reading and the alert id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from alerts.directory import SmsTarget
from alerts.receivers.aliyun import aliyun_signature, percent_encode, rpc_call, signed_params
from alerts.receivers.http import HttpClient, post, raise_for_status

__all__ = ["SmsGateway", "aliyun_signature", "percent_encode", "send_sms", "sms_text"]

_ALIYUN_RETRYABLE = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "Throttling.User", "Throttling", "ServiceUnavailable"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsGateway:
    """Where SMS go out: ``url`` and the credentials of the chosen ``format``."""

    format: Literal["generic", "aliyun"]
    url: str
    token: str = field(default="", repr=False)
    """``generic``: the bearer token."""
    access_key_id: str = ""
    access_key_secret: str = field(default="", repr=False)
    sign_name: str = ""
    template_code: str = ""
    """``aliyun``: the account's key pair, the approved signature name and template."""


def sms_text(body: Mapping[str, Any]) -> str:
    """The short text of a notification body: its Chinese line and the alert id."""
    return f"{body['message_zh']} [{body['alert_id']}]"


def _aliyun_params(gateway: SmsGateway, target: SmsTarget, body: Mapping[str, Any], now_s: float) -> dict[str, str]:
    template = {
        "grade": f"{body['grade']['roman']}级{body['grade']['colour_zh']}",
        "place": str(body.get("location_zh", ""))[:20],
        "kind": str(body.get("kind_zh", ""))[:10],
        "alert": str(body["alert_id"]),
    }
    params = {
        "PhoneNumbers": target.phone.removeprefix("+86"),
        "SignName": gateway.sign_name,
        "TemplateCode": gateway.template_code,
        "TemplateParam": json.dumps(template, ensure_ascii=False, separators=(",", ":")),
    }
    return signed_params(
        action="SendSms",
        version="2017-05-25",
        access_key_id=gateway.access_key_id,
        access_key_secret=gateway.access_key_secret,
        params=params,
        now_s=now_s,
    )


async def send_sms(
    client: HttpClient,
    gateway: SmsGateway,
    target: SmsTarget,
    body: bytes,
    idempotency_key: str,
    *,
    clock_s: Callable[[], float] = time.time,
) -> None:
    """Send one notification by SMS; raise a retryable or permanent delivery error as the gateway answers."""
    data: dict[str, Any] = json.loads(body)
    if gateway.format == "generic":
        payload = json.dumps({"to": target.phone, "text": sms_text(data), "idempotency_key": idempotency_key},
                             ensure_ascii=False).encode()  # fmt: skip
        headers = {"Content-Type": "application/json; charset=utf-8", "Authorization": f"Bearer {gateway.token}"}
        raise_for_status(await post(client, gateway.url, content=payload, headers=headers, what="sms: "), "sms: ")
        return
    params = _aliyun_params(gateway, target, data, clock_s())
    await rpc_call(client, gateway.url, params, retryable=_ALIYUN_RETRYABLE, what="sms (aliyun): ")
