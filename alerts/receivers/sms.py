"""SMS through an HTTP gateway: the channel that reaches any phone, for grid managers away from their apps.

Two request formats (the deployment's ``sms:`` picks one):

- ``generic``: ``POST url`` with ``{"to": "+8613800000000", "text": …, "idempotency_key": …}`` and a bearer token —
  the shape most in-house and aggregator gateways take. 2xx is delivered; 408, 429 and 5xx are retried; other
  statuses are not.
- ``aliyun``: Alibaba Cloud SMS (Dysmsapi ``SendSms``, API version 2017-05-25), the RPC request style: the query
  parameters sorted and percent-encoded (RFC 3986), signed with HMAC-SHA1 keyed ``AccessKeySecret + "&"`` over
  ``"POST&%2F&" + encode(query)``, the message given as an approved template (``template_code``) with the alert's
  fields as ``TemplateParam``. The answer's ``Code`` says what happened: ``OK``; flow control and throttling
  (``isv.BUSINESS_LIMIT_CONTROL``, ``Throttling.User``) are retried; anything else is not.

The text is short — an SMS is 70 Chinese characters a segment: grade, place, kind, reading and the alert id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from alerts.directory import SmsTarget
from alerts.receivers.base import PermanentDeliveryError, RetryableDeliveryError
from alerts.receivers.http import post, raise_for_status

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


def percent_encode(text: str) -> str:
    """RFC 3986 encoding as Alibaba Cloud's signature wants it (space as %20, ``~`` kept, ``*`` encoded)."""
    return urllib.parse.quote(text, safe="~")


def aliyun_signature(secret: str, params: Mapping[str, str], method: str = "POST") -> str:
    """Base64 HMAC-SHA1 of the canonical request, keyed ``secret + "&"``."""
    query = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(query)}"
    mac = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def _aliyun_params(gateway: SmsGateway, target: SmsTarget, body: Mapping[str, Any], now_s: float) -> dict[str, str]:
    template = {
        "grade": f"{body['grade']['roman']}级{body['grade']['colour_zh']}",
        "place": str(body.get("location_zh", ""))[:20],
        "kind": str(body.get("kind_zh", ""))[:10],
        "alert": str(body["alert_id"]),
    }
    params = {
        "AccessKeyId": gateway.access_key_id,
        "Action": "SendSms",
        "Format": "JSON",
        "PhoneNumbers": target.phone.removeprefix("+86"),
        "RegionId": "cn-hangzhou",
        "SignName": gateway.sign_name,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": secrets.token_hex(16),
        "SignatureVersion": "1.0",
        "TemplateCode": gateway.template_code,
        "TemplateParam": json.dumps(template, ensure_ascii=False, separators=(",", ":")),
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s)),
        "Version": "2017-05-25",
    }
    params["Signature"] = aliyun_signature(gateway.access_key_secret, params)
    return params


async def send_sms(
    client: httpx.AsyncClient,
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
    form = urllib.parse.urlencode(_aliyun_params(gateway, target, data, clock_s())).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await post(client, gateway.url, content=form, headers=headers, what="sms (aliyun): ")
    try:
        code = str(response.json().get("Code", ""))
    except (ValueError, AttributeError):
        raise_for_status(response, "sms (aliyun): ")
        raise RetryableDeliveryError("sms (aliyun): answer is not JSON", status=response.status_code) from None
    if code == "OK":
        return
    message = f"sms (aliyun): {code}: {response.json().get('Message', '')}"
    if code in _ALIYUN_RETRYABLE or response.status_code >= 500:
        raise RetryableDeliveryError(message, status=response.status_code)
    raise PermanentDeliveryError(message, status=response.status_code)
