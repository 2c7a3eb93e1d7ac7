"""Group robots of the messaging apps grid managers live in: WeCom (企业微信) and DingTalk (钉钉).

Both take a JSON POST and answer HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}`` on success; a failure is a
non-zero ``errcode`` in a 200 answer, so the code, not the status, says whether to retry:

- WeCom group robot: ``POST {url}?key=KEY`` with ``{"msgtype": "markdown", "markdown": {"content": …}}`` (content
  at most 4,096 bytes of UTF-8); at most 20 messages a minute per robot — ``errcode`` 45009 ("api freq out of
  limit") is retryable, 93000 (invalid webhook URL / key) and other codes are not.
- DingTalk custom robot with signing: ``POST {url}?access_token=T&timestamp=MS&sign=S`` where ``S`` is the URL-
  encoded Base64 HMAC-SHA256 of ``f"{MS}\\n{secret}"`` keyed with the secret; ``{"msgtype": "markdown",
  "markdown": {"title": …, "text": …}}``; the timestamp must be within an hour of the server's clock; 20 messages a
  minute — ``errcode`` 130101 (sending too fast) is retryable, 310000 (signature, keyword or IP check failed) and
  other codes are not.

The message is the notification body every channel is built from (``alerts.message``): Chinese first, English
after, grade and colour in the title, the place, the reading against the set point, the time, and the alert id
for the reply. Robots do not deduplicate: like the webhook, delivery is at least once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from alerts.directory import DingTalkTarget, WeComTarget
from alerts.receivers.base import PermanentDeliveryError, RetryableDeliveryError
from alerts.receivers.http import HttpClient, post, raise_for_status

__all__ = ["WECOM_MAX_BYTES", "dingtalk_sign", "markdown", "post_robot", "robot_request"]

WECOM_MAX_BYTES = 4096
_RETRYABLE_CODES = {"wecom": frozenset({45009, -1}), "dingtalk": frozenset({130101, -1})}
"""Per app, the error codes worth a retry: rate limits, and -1 "system busy" (both apps use it)."""


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's request signature: Base64 of HMAC-SHA256(secret, f"{timestamp_ms}\\n{secret}"), not URL-quoted."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def markdown(body: dict[str, Any]) -> tuple[str, str]:
    """(title, markdown text) of a notification body for a robot message."""
    title = str(body["message_zh"]).split("】", 1)[0].lstrip("【") or "安居告警"
    lines = [
        f"#### {body['message_zh']}",
        f"> {body['message_en']}",
        "",
        f"- 位置 Location: {body.get('location_zh', '')}",
        f"- 时间 Time: {body.get('event_time', '')}",
        f"- 告警 Alert: `{body['alert_id']}` ({body.get('reason_zh', '')} / {body.get('reason', '')})",
        f"- 接收人 To: {body['recipient']['name']}",
    ]
    return title, "\n".join(lines)


def _clip_utf8(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "…"


def robot_request(target: WeComTarget | DingTalkTarget, body: bytes, now_ms: int) -> tuple[str, dict[str, str], bytes]:
    """The URL, query parameters and JSON payload of one robot message for ``body`` (a notification body)."""
    parsed: dict[str, Any] = json.loads(body)
    title, text = markdown(parsed)
    if isinstance(target, WeComTarget):
        content = _clip_utf8(text, WECOM_MAX_BYTES)
        payload = {"msgtype": "markdown", "markdown": {"content": content}}
        params = {"key": target.key}
    else:
        payload = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
        params = {
            "access_token": target.access_token,
            "timestamp": str(now_ms),
            "sign": dingtalk_sign(target.secret, now_ms),
        }
    return target.url, params, json.dumps(payload, ensure_ascii=False).encode()


async def post_robot(
    client: HttpClient,
    target: WeComTarget | DingTalkTarget,
    body: bytes,
    *,
    clock_s: Callable[[], float] = time.time,
) -> None:
    """Send one notification to a robot; raise a retryable or permanent delivery error as its answer says."""
    app = "wecom" if isinstance(target, WeComTarget) else "dingtalk"
    url, params, payload = robot_request(target, body, int(clock_s() * 1000))
    full = f"{url}?{urllib.parse.urlencode(params)}"
    headers = {"Content-Type": "application/json; charset=utf-8"}
    response = await post(client, full, content=payload, headers=headers, what=f"{app}: ")
    if response.status != 200:
        raise_for_status(response, f"{app}: ")
        raise PermanentDeliveryError(f"{app}: unexpected status", status=response.status)  # a 2xx, not 200
    status = response.status
    try:
        answer = response.json()
        code = int(answer.get("errcode", -2))
    except (ValueError, AttributeError, TypeError):
        raise RetryableDeliveryError(f"{app}: answer is not the robot's JSON", status=status) from None
    if code == 0:
        return
    message = f"{app}: errcode {code}: {answer.get('errmsg', '')}"
    if code in _RETRYABLE_CODES[app]:
        raise RetryableDeliveryError(message, status=status)
    raise PermanentDeliveryError(message, status=status)
