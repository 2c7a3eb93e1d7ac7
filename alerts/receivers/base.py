"""The contract every receiver (channel) keeps, and the two ways a delivery can fail.

Like Alertmanager's notifiers: a receiver either delivers, or says whether trying again could help.
The service retries :class:`RetryableDeliveryError` with backoff and gives up at once on
:class:`PermanentDeliveryError` (a request the receiver will never take: bad URL, revoked key).
"""

from __future__ import annotations

from typing import Protocol

from alerts.directory import Target

__all__ = ["DeliveryError", "PermanentDeliveryError", "Receiver", "RetryableDeliveryError"]


class DeliveryError(Exception):
    """A notification was not delivered. ``status`` is the HTTP status when there was an answer."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"{reason} (HTTP {status})" if status is not None else reason)
        self.reason = reason
        self.status = status


class RetryableDeliveryError(DeliveryError):
    """Trying again later may work: connection refused, timeout, HTTP 408, 429 or 5xx."""


class PermanentDeliveryError(DeliveryError):
    """Trying again will not work: any other HTTP 4xx, or a target that cannot be used."""


class Receiver(Protocol):
    """Delivers one prepared notification body to one target."""

    async def deliver(self, *, target: Target, idempotency_key: str, body: bytes) -> None:
        """Deliver ``body`` or raise :class:`RetryableDeliveryError` / :class:`PermanentDeliveryError`."""
        ...
