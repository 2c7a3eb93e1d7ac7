"""Everything a running hub holds, built from settings and torn down in order.

``Runtime.open`` builds the store, registry, detection, alert service and ingest; ``run`` keeps the
background work going under one TaskGroup (the ingest loop and the alert service's delivery task). The API
reads the same objects. Nothing here runs at import time.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from alerts.receivers.webhook import WebhookReceiver
from alerts.service import AlertService
from alerts.store import AlertStore
from hub.config import Deployment, build_directory, load_deployment
from hub.detection import ThresholdDetector
from hub.ingest.registry import Registry
from hub.ingest.service import Ingest, MqttEndpoint
from hub.metrics import Metrics
from hub.settings import HubSettings
from hub.store import ChunkStore, ReadingStore

__all__ = ["Runtime", "open_runtime"]

log = logging.getLogger("anju.hub")


@dataclass(slots=True)
class Runtime:
    settings: HubSettings
    deployment: Deployment
    registry: Registry
    store: ReadingStore
    metrics: Metrics
    alerts: AlertService
    ingest: Ingest


MAINTAIN_EVERY_S = 1.0
"""How often the store's housekeeping runs (compaction when due, closing finished days, retention hourly)."""


async def _maintain(store: ReadingStore) -> None:
    """Run the store's housekeeping off the ingest path, forever; a failure is logged and retried, never fatal."""
    while True:
        await asyncio.sleep(MAINTAIN_EVERY_S)
        try:
            await asyncio.to_thread(store.maintain, time.time_ns() // 1_000_000)
        except Exception:
            log.exception("store maintenance failed; retrying in %.0f s", MAINTAIN_EVERY_S)


@contextlib.asynccontextmanager
async def open_runtime(settings: HubSettings) -> AsyncIterator[Runtime]:
    """Build the hub, run its background tasks while the context is open, and close it cleanly."""
    deployment = load_deployment(settings.deployment)
    directory = build_directory(deployment, settings.deployment.parent)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metrics = Metrics()
    registry = Registry(deployment)
    store = ChunkStore(path=settings.store_path)
    alert_store = AlertStore(settings.alerts_path)
    try:
        async with (
            WebhookReceiver() as receiver,
            AlertService(store=alert_store, directory=directory, receiver=receiver) as alerts,
        ):
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            ingest = Ingest(
                endpoint=MqttEndpoint(
                    host=settings.mqtt_host,
                    port=settings.mqtt_port,
                    username=settings.mqtt_username,
                    password=password,
                    client_id=settings.mqtt_client_id,
                ),
                store=store,
                registry=registry,
                detector=ThresholdDetector(community=registry.community, community_name=registry.community_name),
                on_risk=alerts.submit,
                metrics=metrics,
                inbox_capacity=settings.inbox_capacity,
                batch_messages=settings.batch_messages,
                time_check_interval_s=settings.time_check_interval_s,
            )
            runtime = Runtime(settings, deployment, registry, store, metrics, alerts, ingest)
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(ingest.run(), name="hub-ingest"),
                    group.create_task(_maintain(store), name="hub-store-maintain"),
                ]
                try:
                    yield runtime
                finally:
                    for task in tasks:
                        task.cancel()
    finally:
        store.close()
        alert_store.close()
        log.info("hub stopped")
