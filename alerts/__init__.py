"""Alerts: risk events in; graded, deduplicated alerts handed to the people responsible, reliably.

Depends only on the standard library, aiohttp, pydantic and ``protocol`` — never on the hub, so any system
can hand it risk events. The public face is this module; see ``alerts.service.AlertService``.
"""

from alerts.directory import Directory, Grid, Person, WebhookTarget
from alerts.escalation import EscalationLevel, EscalationPolicy
from alerts.grading import SENSOR_CEILING, grade
from alerts.message import Reason, render_text
from alerts.model import Alert, AlertState, Grade, RiskEvent, Transition
from alerts.receivers import (
    DeliveryError,
    PermanentDeliveryError,
    Receiver,
    RetryableDeliveryError,
    WebhookReceiver,
)
from alerts.service import AlertNotFoundError, AlertService, Counters, TransitionError
from alerts.stage import Stage
from alerts.store import AlertStore, Notification

__all__ = [
    "SENSOR_CEILING",
    "Alert",
    "AlertNotFoundError",
    "AlertService",
    "AlertState",
    "AlertStore",
    "Counters",
    "DeliveryError",
    "Directory",
    "EscalationLevel",
    "EscalationPolicy",
    "Grade",
    "Grid",
    "Notification",
    "PermanentDeliveryError",
    "Person",
    "Reason",
    "Receiver",
    "RetryableDeliveryError",
    "RiskEvent",
    "Stage",
    "Transition",
    "TransitionError",
    "WebhookReceiver",
    "WebhookTarget",
    "grade",
    "render_text",
]
