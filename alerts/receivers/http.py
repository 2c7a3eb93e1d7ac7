"""One POST with the failures every HTTP receiver maps alike: timeouts and transport errors are worth a retry, a
URL that cannot be used is not, and so is any answer's status (408, 429 and 5xx retried; other non-2xx not)."""

from __future__ import annotations

import httpx

from alerts.receivers.base import PermanentDeliveryError, RetryableDeliveryError

__all__ = ["post", "raise_for_status"]

_RETRYABLE_STATUS = frozenset({408, 429})


async def post(
    client: httpx.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    what: str = "",
    limits: httpx.Timeout | None = None,
) -> httpx.Response:
    """POST ``content`` to ``url`` (within ``limits``, else the client's timeout); a failure before an answer raises
    the delivery error it calls for. ``what`` prefixes the error text (``"wecom: "``)."""
    try:
        if limits is None:
            return await client.post(url, content=content, headers=headers)
        return await client.post(url, content=content, headers=headers, timeout=limits)
    except httpx.TimeoutException as exc:
        raise RetryableDeliveryError(f"{what}timeout: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise RetryableDeliveryError(f"{what}transport: {type(exc).__name__}: {exc}") from exc
    except httpx.InvalidURL as exc:
        raise PermanentDeliveryError(f"{what}invalid URL: {exc}") from exc


def raise_for_status(response: httpx.Response, what: str) -> None:
    """Nothing for 2xx; a retryable error for 408, 429 and 5xx; a permanent one for any other status."""
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = f"{what}{response.reason_phrase or 'error'}"
    if status in _RETRYABLE_STATUS or status >= 500:
        raise RetryableDeliveryError(reason, status=status)
    raise PermanentDeliveryError(reason, status=status)
