"""Receivers: one module per channel, each raising retryable or permanent delivery errors."""

from alerts.receivers.base import DeliveryError, PermanentDeliveryError, Receiver, RetryableDeliveryError
from alerts.receivers.webhook import WebhookReceiver, sign

__all__ = [
    "DeliveryError",
    "PermanentDeliveryError",
    "Receiver",
    "RetryableDeliveryError",
    "WebhookReceiver",
    "sign",
]
