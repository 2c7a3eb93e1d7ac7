"""Alibaba Cloud's RPC-style API, shared by the SMS (Dysmsapi ``SendSms``) and voice (Dyvmsapi ``SingleCallByTts``)
receivers: one signed form POST, and the answer's ``Code`` deciding what happened.

The request: the action's parameters plus the common ones (``AccessKeyId``, ``Action``, ``Format``, ``RegionId``,
``SignatureMethod`` HMAC-SHA1, a fresh ``SignatureNonce``, ``SignatureVersion`` 1.0, a UTC ``Timestamp``,
``Version``), sorted and percent-encoded (RFC 3986), signed with HMAC-SHA1 keyed ``AccessKeySecret + "&"`` over
``"POST&%2F&" + encode(query)``. The answer: ``{"Code": "OK", …}`` is done; the codes a product lists as flow
control or a busy system, and any 5xx, are worth a retry; every other code is not (a bad number, template or key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from collections.abc import Collection, Mapping

from alerts.receivers.base import PermanentDeliveryError, RetryableDeliveryError
from alerts.receivers.http import HttpClient, post, raise_for_status

__all__ = ["aliyun_signature", "percent_encode", "rpc_call", "signed_params"]


def percent_encode(text: str) -> str:
    """RFC 3986 encoding as Alibaba Cloud's signature wants it (space as %20, ``~`` kept, ``*`` encoded)."""
    return urllib.parse.quote(text, safe="~")


def aliyun_signature(secret: str, params: Mapping[str, str], method: str = "POST") -> str:
    """Base64 HMAC-SHA1 of the canonical request, keyed ``secret + "&"``."""
    query = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(query)}"
    mac = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def signed_params(
    *,
    action: str,
    version: str,
    access_key_id: str,
    access_key_secret: str,
    params: Mapping[str, str],
    now_s: float,
) -> dict[str, str]:
    """``params`` with the common parameters of ``action`` (API ``version``) and their ``Signature`` added."""
    signed = {
        "AccessKeyId": access_key_id,
        "Action": action,
        "Format": "JSON",
        "RegionId": "cn-hangzhou",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": secrets.token_hex(16),
        "SignatureVersion": "1.0",
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s)),
        "Version": version,
        **params,
    }
    signed["Signature"] = aliyun_signature(access_key_secret, signed)
    return signed


async def rpc_call(
    client: HttpClient, url: str, params: Mapping[str, str], *, retryable: Collection[str], what: str
) -> None:
    """POST the signed ``params`` as a form to ``url``; return on ``Code`` ``OK``, else raise a retryable delivery
    error for a code in ``retryable`` or a 5xx answer and a permanent one otherwise. ``what`` prefixes the error
    text (``"sms (aliyun): "``)."""
    form = urllib.parse.urlencode(params).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await post(client, url, content=form, headers=headers, what=what)
    try:
        answer = response.json()
        code = str(answer.get("Code", ""))
    except (ValueError, AttributeError):
        raise_for_status(response, what)
        raise RetryableDeliveryError(f"{what}answer is not JSON", status=response.status) from None
    if code == "OK":
        return
    message = f"{what}{code}: {answer.get('Message', '')}"
    if code in retryable or response.status >= 500:
        raise RetryableDeliveryError(message, status=response.status)
    raise PermanentDeliveryError(message, status=response.status)
