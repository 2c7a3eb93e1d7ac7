"""Voice calls for grades I–II: a provider phones the person and reads the alert aloud (TTS, zh-CN).

A call is what wakes a grid manager at three in the morning or reaches a duty desk's fixed line; it is also the most
intrusive and the most rate-limited channel (Alibaba Cloud allows one call a minute, five an hour and twenty a day to
one number). So a voice target is called only for what needs a person now: a notification whose grade is I or II
(``grade.number`` 1 or 2 in the body), and not a "cleared" notice (it asks nothing of anyone, and a call spent on it
could push the next escalation's call into the provider's flow control). Any other notification is *delivered
without a call*: :func:`place_call` returns False, logs it at INFO, and the receiver counts it — the person still
gets it on their other channels. The filter sits here, at delivery, because the body carries the grade as of that
revision: an alert upgraded from III to II gets its call with the upgrade.

Two request formats (the deployment's ``voice:`` picks one):

- ``generic``: ``POST url`` with a bearer token and ``{"to": "+8613800000000", "text": …, "idempotency_key": …,
  "callback_id": …, "play_times": 2}`` — ``to`` in E.164, ``text`` the body's Chinese line made speakable
  (:func:`voice_text`), ``callback_id`` a short id the provider's call receipt can carry back (:func:`call_ref`).
  2xx is a call placed; 408, 429 and 5xx are retried; other statuses (a number the provider refuses) are not.
- ``aliyun``: Alibaba Cloud Voice Messaging Service (Dyvmsapi ``SingleCallByTts``, API version 2017-05-25), signed
  like SMS (:mod:`alerts.receivers.aliyun`): ``CalledNumber`` (a mobile without ``+86`` or a fixed line with its
  area code), ``CalledShowNumber`` (the caller id of a dedicated-mode number; left out for the shared pool),
  ``TtsCode`` (an approved TTS template), ``TtsParam`` (``grade``, ``place``, ``kind``, ``reason``), ``PlayTimes``
  (1–3) and ``OutId`` (:func:`call_ref`, at most 15 bytes). ``Code`` ``OK`` is a call placed; flow control
  (``isv.BUSINESS_LIMIT_CONTROL``), throttling and system errors are retried; any other code (``isv.
  MOBILE_NUMBER_ILLEGAL``, ``isv.TTS_TEMPLATE_ILLEGAL``, a bad signature) is not.

"Placed" is what a request can know: whether the person answered comes later, in the provider's receipt; the
acknowledgement (接单) and escalation deadlines, not this receiver, make sure somebody answers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from alerts.directory import VoiceTarget
from alerts.receivers.aliyun import rpc_call, signed_params
from alerts.receivers.http import HttpClient, post, raise_for_status

__all__ = ["CALL_GRADES", "VOICE_MAX_CHARS", "VoiceGateway", "call_ref", "calls_for", "place_call", "voice_text"]

log = logging.getLogger("anju.alerts.voice")

CALL_GRADES = frozenset({1, 2})
"""Grade numbers (``Grade.I`` = 1, ``Grade.II`` = 2) a voice target is called for."""

VOICE_MAX_CHARS = 200
"""Longest text read out (about 50 s of TTS): the Chinese line of a notification is well under it."""

_ALIYUN_RETRYABLE = frozenset(
    {
        "isv.BUSINESS_LIMIT_CONTROL",  # per-number flow control: 1/min, 5/h, 20/24 h
        "Throttling",
        "Throttling.User",
        "ServiceUnavailable",
        "InternalError",
        "isp.SYSTEM_ERROR",
        "isp.GATEWAY_ERROR",
    }
)

_SPOKEN = (
    ("≥", "达到或超过"),
    ("≤", "低于或等于"),
    ("%LEL", "%爆炸下限"),
    ("%RH", "%相对湿度"),
    ("°C", "摄氏度"),
    ("m³", "立方米"),
)
"""Symbols a TTS engine reads badly, and the words to say instead."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceGateway:
    """Where call requests go: ``url`` and the credentials of the chosen ``format``; ``play_times`` how often the
    text is read in one call (1–3)."""

    format: Literal["generic", "aliyun"]
    url: str
    token: str = field(default="", repr=False)
    """``generic``: the bearer token."""
    access_key_id: str = ""
    access_key_secret: str = field(default="", repr=False)
    tts_code: str = ""
    called_show_number: str = ""
    """``aliyun``: the account's key pair, the approved TTS template, and the caller id ("" = the shared pool)."""
    play_times: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.play_times <= 3:
            raise ValueError(f"VoiceGateway.play_times must be 1 to 3, got {self.play_times!r}")


def _grade(body: Mapping[str, Any]) -> tuple[int | None, str]:
    grade = body.get("grade")
    if not isinstance(grade, Mapping) or not isinstance(grade.get("number"), int):
        return None, "(none)"
    return grade["number"], str(grade.get("roman", grade["number"]))


def calls_for(body: Mapping[str, Any]) -> bool:
    """Whether a notification body is worth a call: grade I or II, and not a "cleared" notice (a body without a
    grade, such as a notice, is not)."""
    return _grade(body)[0] in CALL_GRADES and body.get("reason") != "cleared"


def voice_text(body: Mapping[str, Any]) -> str:
    """The text a generic provider reads out: the body's Chinese line without brackets, symbols in words and the
    standard cited (it is on the screen, not needed on the phone), then what to do; at most VOICE_MAX_CHARS."""
    text = str(body["message_zh"]).split("\n", 1)[0]
    text = re.sub(r"（[^（）]*）$", "", text).replace("【", "").replace("】", "，")
    for symbol, words in _SPOKEN:
        text = text.replace(symbol, words)
    return f"安居安全告警：{text.strip()}。请立即处理，并在应用中接单。"[:VOICE_MAX_CHARS]


def call_ref(idempotency_key: str) -> str:
    """A 15-character id for the call, the same on every retry: the provider's receipt carries it back (Alibaba
    Cloud's ``OutId`` takes at most 15 bytes, too few for the idempotency key itself)."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:15]


def _digits(phone: str) -> str:
    """A mobile's 11 digits, or a fixed line's area code and number as dialled in China (``02812345678``)."""
    return phone.removeprefix("+86").replace("-", "")


def _e164(phone: str) -> str:
    digits = _digits(phone)
    return f"+86{digits.removeprefix('0')}"


def _aliyun_params(gateway: VoiceGateway, target: VoiceTarget, body: Mapping[str, Any], key: str) -> dict[str, str]:
    template = {
        "grade": f"{body['grade']['roman']}级{body['grade']['colour_zh']}",
        "place": str(body.get("location_zh", ""))[:20],
        "kind": str(body.get("kind_zh", ""))[:10],
        "reason": str(body.get("reason_zh", ""))[:20],
    }
    params = {
        "CalledNumber": _digits(target.phone),
        "TtsCode": gateway.tts_code,
        "TtsParam": json.dumps(template, ensure_ascii=False, separators=(",", ":")),
        "PlayTimes": str(gateway.play_times),
        "OutId": call_ref(key),
    }
    if gateway.called_show_number:
        params["CalledShowNumber"] = gateway.called_show_number
    return params


async def place_call(
    client: HttpClient,
    gateway: VoiceGateway,
    target: VoiceTarget,
    body: bytes,
    idempotency_key: str,
    *,
    clock_s: Callable[[], float] = time.time,
) -> bool:
    """Ask the provider to call ``target`` and read the notification; True when a call was requested, False when
    the notification is not worth a call (:func:`calls_for`). Raises a retryable or permanent delivery error as the
    provider answers."""
    data: dict[str, Any] = json.loads(body)
    if not calls_for(data):
        log.info(
            "voice: %s not called: grade %s, %s (calls are for grades I–II, not for cleared notices)",
            idempotency_key,
            _grade(data)[1],
            data.get("reason", "?"),
        )
        return False
    if gateway.format == "generic":
        payload = {
            "to": _e164(target.phone),
            "text": voice_text(data),
            "idempotency_key": idempotency_key,
            "callback_id": call_ref(idempotency_key),
            "play_times": gateway.play_times,
        }
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {gateway.token}",
            "Idempotency-Key": idempotency_key,
        }
        content = json.dumps(payload, ensure_ascii=False).encode()
        raise_for_status(await post(client, gateway.url, content=content, headers=headers, what="voice: "), "voice: ")
        return True
    params = signed_params(
        action="SingleCallByTts",
        version="2017-05-25",
        access_key_id=gateway.access_key_id,
        access_key_secret=gateway.access_key_secret,
        params=_aliyun_params(gateway, target, data, idempotency_key),
        now_s=clock_s(),
    )
    await rpc_call(client, gateway.url, params, retryable=_ALIYUN_RETRYABLE, what="voice (aliyun): ")
    return True
