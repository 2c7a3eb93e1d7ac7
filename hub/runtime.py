"""Everything a running hub holds, built from settings and torn down in order.

``Runtime.open`` builds the store, registry, detection, alert service and ingest; ``run`` keeps the
background work going under one TaskGroup (the ingest loop and the alert service's delivery task). The API
reads the same objects. Nothing here runs at import time.
"""

import asyncio
import contextlib
import gc
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from alerts.directory import Directory
from alerts.duty import DutyChanges
from alerts.emergency import EmergencyDesk
from alerts.receivers.webhook import WebhookReceiver
from alerts.service import AlertService
from alerts.store import AlertStore
from hub.config import (
    Deployment,
    build_broadcasts,
    build_departments,
    build_directory,
    build_escalation,
    build_grouping,
    build_maintenance,
    build_sms,
    build_smtp,
    build_voice,
    build_volunteers,
    load_deployment,
    rule_contexts,
)
from hub.detection.anomaly_watch import CUMULATIVE_KINDS, AnomalyWatch, rows_of_kinds
from hub.detection.health import SensorHealth
from hub.detection.layers import DetectionLayers
from hub.detection.rules import RuleEngine, resolve_rules
from hub.files import replacing, set_aside
from hub.identity import AccessRules, Identity, IdentityStore, Scopes
from hub.identity.scope import ScopeRules
from hub.ingest.limits import limits_policy
from hub.ingest.registry import Registry
from hub.ingest.service import Ingest, MqttEndpoint
from hub.lease import LEASE_LOST_EXIT, Lease
from hub.live import LiveFeed
from hub.metrics import Metrics
from hub.registry_mirror import RegistryMirror, RegistryStore
from hub.settings import HubSettings, ServerSettings, alerts_schema
from hub.store import ReadingStore
from hub.store.open import open_store
from systemd_notify import notify, watchdog_forever

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
    emergency: EmergencyDesk
    """Notices, volunteers and measures of incidents (emergency mode)."""
    live: LiveFeed
    """Alert and sensor changes for the live stream (``GET /api/v1/stream``)."""
    identity: Identity
    """Users, sessions, API tokens and each principal's scope (hub/identity/)."""
    directory: Directory
    """People, grids and duty rosters as the alerts route them (who is on duty now)."""
    duty: DutyChanges
    """Swaps, sick days and holiday rotas made through the API on top of the file's rosters (``/rosters/…``)."""


GC_THRESHOLD_0 = 10_000
"""Allocations between young-generation collections (CPython's default is 700)."""


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the ingest path.

    An ingest round allocates a tuple or two per reading and keeps them until the round is committed, so with
    CPython's defaults the collector runs every 700 allocations and walks the round's live objects again and
    again, and the old generation holds everything built at start (deployment, registry, app). Measured on the
    commit path (decode → validate → store → detect, 500 × 100-reading messages a round): 3.85 µs a reading with
    the defaults, 3.13 after ``gc.freeze()`` of the start-up heap, 2.90 with the young threshold at 10,000 too.
    Nothing in the hub relies on prompt collection of reference cycles. The alert service runs in the same process,
    and its tail latency gains too (``bench alerts`` measures it with these settings).
    """
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD_0, second, third)


MAINTAIN_EVERY_S = 1.0
"""How often the store's housekeeping runs (compaction when due, closing finished days, retention hourly)."""


ANOMALY_SAVE_EVERY_S = 60.0
"""How often the detectors' state is saved (anomaly learning, rule timers and doses): a crash loses at most this
much, and never an alarm already raised."""
ANOMALY_STATE_FILE = "anomaly-state.npz"


RULES_STATE_FILE = "rules-state.json"
HEALTH_STATE_FILE = "health-state.json"


def rule_engine(deployment: Deployment, registry: Registry, state_path: Path | None) -> RuleEngine:
    """The detection rules in force for ``deployment`` (shipped defaults + its ``rules:`` overrides), continuing
    from the state saved in ``state_path`` when there is one (None: fresh). A state that cannot be used (another
    version or community, unreadable) is set aside as ``.bad`` with a warning: conditions in progress restart."""
    contexts = rule_contexts(deployment)
    resolved = resolve_rules(deployment.rules, contexts)

    def fresh() -> RuleEngine:
        return RuleEngine(
            community=registry.community,
            community_name=registry.community_name,
            ruleset=resolved.ruleset,
            sensors=list(registry.sensors.values()),
            rules=resolved.per_sensor,
            contexts={context.sensor: context for context in contexts},
        )

    return _continued(fresh, state_path, "rule state")


def sensor_health(deployment: Deployment, registry: Registry, state_path: Path | None) -> SensorHealth:
    """The sensor-health layer for ``deployment``, continuing from ``state_path`` when it can (like ``rule_engine``)."""
    spaces = {sensor.id: sensor.space for _, sensor in deployment.sensors() if sensor.space is not None}

    def fresh() -> SensorHealth:
        return SensorHealth(
            community=registry.community,
            community_name=registry.community_name,
            sensors=list(registry.sensors.values()),
            spaces=spaces,
        )

    return _continued(fresh, state_path, "sensor-health state")


class _Restorable(Protocol):
    def restore(self, state: Mapping[str, Any]) -> None: ...


_Layer = TypeVar("_Layer", bound=_Restorable)


def _continued(fresh: Callable[[], _Layer], state_path: Path | None, what: str) -> _Layer:
    """A detection layer from ``fresh()``, continuing from the JSON state in ``state_path`` when there is one; a
    state it cannot use is set aside as ``.bad`` with a warning and the layer starts fresh."""
    layer = fresh()
    if state_path is not None and state_path.exists():
        try:
            layer.restore(json.loads(state_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            set_aside(state_path, exc, what, log)
            layer = fresh()
        else:
            log.info("%s loaded from %s", what, state_path)
    return layer


def anomaly_watch(registry: Registry, state_path: Path | None) -> AnomalyWatch:
    """The anomaly watch over the registry's continuous kinds (meters on their use), continuing from
    ``state_path`` when it holds a usable state (None: fresh and never saved)."""
    return AnomalyWatch(
        community=registry.community,
        community_name=registry.community_name,
        state_path=state_path,
        scored_rows=rows_of_kinds(registry.sensors.values()),
        cumulative_rows=rows_of_kinds(registry.sensors.values(), CUMULATIVE_KINDS),
    )


def _write_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON, atomically and durably."""
    with replacing(path) as f:
        f.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")))


def detection_layers(deployment: Deployment, registry: Registry, data_dir: Path | None) -> DetectionLayers:
    """The three detection layers of ``deployment``, continuing from their states in ``data_dir`` (None: fresh)."""

    def saved(name: str) -> Path | None:
        return data_dir / name if data_dir is not None else None

    return DetectionLayers(
        rules=rule_engine(deployment, registry, saved(RULES_STATE_FILE)),
        anomaly=anomaly_watch(registry, saved(ANOMALY_STATE_FILE)),
        health=sensor_health(deployment, registry, saved(HEALTH_STATE_FILE)),
    )


async def _save_detection(detection: DetectionLayers, data_dir: Path) -> None:
    """Save the detectors' state (taken on the event loop, written in a thread); a failure is logged, not fatal."""
    anomaly, rules, health = detection.anomaly.snapshot(), detection.rules.to_state(), detection.health.to_state()
    try:
        await asyncio.to_thread(detection.anomaly.write, anomaly)
        await asyncio.to_thread(_write_json, data_dir / RULES_STATE_FILE, rules)
        await asyncio.to_thread(_write_json, data_dir / HEALTH_STATE_FILE, health)
    except OSError:
        log.exception("saving the detection state failed; retrying in %.0f s", ANOMALY_SAVE_EVERY_S)


async def _save_detection_forever(detection: DetectionLayers, data_dir: Path) -> None:
    while True:
        await asyncio.sleep(ANOMALY_SAVE_EVERY_S)
        await _save_detection(detection, data_dir)


async def _maintain(store: ReadingStore) -> None:
    """Run the store's housekeeping off the ingest path, forever; a failure is logged and retried, never fatal."""
    while True:
        await asyncio.sleep(MAINTAIN_EVERY_S)
        try:
            await asyncio.to_thread(store.maintain, time.time_ns() // 1_000_000)
        except Exception:
            log.exception("store maintenance failed; retrying in %.0f s", MAINTAIN_EVERY_S)


def identity(settings: ServerSettings, scopes: ScopeRules, store: IdentityStore) -> Identity:
    """Logins and scopes of a server: the settings' lifetimes and limits, what each principal sees (a hub's
    deployment, the district node's sub-districts), and the settings' static token kept as an admin integration
    token."""
    rules = AccessRules(
        access_ttl_s=settings.access_token_ttl_s,
        refresh_ttl_s=settings.refresh_token_ttl_s,
        cookie_ttl_s=settings.cookie_session_ttl_s,
        max_failures=settings.login_max_failures,
        lockout_s=settings.login_lockout_s,
    )
    return Identity(
        store,
        scopes,
        rules=rules,
        address_limit=(settings.login_address_failures, settings.login_address_window_s),
        static_token=settings.api_token.get_secret_value() if settings.api_token else None,
    )


def _stop_at_once(reason: str) -> None:
    """Leave now, without the graceful stop: another hub may already run this community, and every moment more could
    page someone twice. Committed alert state is in PostgreSQL; unacknowledged readings are sent again by the
    gateways to whichever hub subscribes next."""
    logging.shutdown()
    os._exit(LEASE_LOST_EXIT)


@contextlib.asynccontextmanager
async def open_runtime(settings: HubSettings) -> AsyncIterator[Runtime]:
    """Build the hub, run its background tasks while the context is open, and close it cleanly.

    With ``alerts_database`` (PostgreSQL) the hub first waits as a standby until it holds its community's lease
    (hub/lease.py): under systemd it reports itself ready and keeps the watchdog fed while it waits, so a standby is a
    healthy service, and the API does not listen before the lease is taken."""
    deployment = load_deployment(settings.deployment)
    url = settings.alerts_url
    if url is None:
        async with _open_runtime(settings, deployment, None) as runtime:
            yield runtime
        return
    community = deployment.community.id
    lease = Lease(url, community, holder=settings.lease_holder, term_s=settings.lease_term_s)
    notify(f"READY=1\nSTATUS=standby: waiting for the lease on community {community}")
    pinger = asyncio.create_task(watchdog_forever(), name="hub-standby-watchdog")
    try:
        await lease.acquire()
    finally:
        pinger.cancel()
    notify(f"STATUS=running community {community} (lease epoch {lease.epoch})")
    try:
        async with _open_runtime(settings, deployment, lease) as runtime:
            yield runtime
    finally:
        await lease.release()
        await lease.close()


@contextlib.asynccontextmanager
async def _open_runtime(settings: HubSettings, deployment: Deployment, lease: Lease | None) -> AsyncIterator[Runtime]:
    directory = build_directory(deployment, settings.deployment.parent)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metrics = Metrics()
    metrics.gauge("anju_lease_epoch", "The community lease's epoch this hub holds; 0 without a shared database.",
                  lambda: float(lease.epoch or 0) if lease else 0.0)  # fmt: skip
    metrics.gauge("anju_lease_renewal_age_seconds", "Seconds since this hub's last good lease renewal began.",
                  lease.renewal_age_s if lease else lambda: 0.0)  # fmt: skip
    registry = Registry(deployment)
    store = await asyncio.to_thread(open_store, deployment, settings.data_dir, config_dir=settings.deployment.parent)
    registry_store: RegistryStore | None = None
    if lease is None:
        alert_store = AlertStore(settings.alerts_path)
        identity_store = IdentityStore(settings.identity_path)
    else:
        held, schema = lease, alerts_schema(deployment.community.id)
        alert_store = await asyncio.to_thread(AlertStore, lease.url, schema=schema, fence=lambda: held.fence)
        # The users and their sessions are the community's, whichever hub serves it; not fenced: the CLI writes too.
        identity_store = await asyncio.to_thread(IdentityStore, lease.url, schema=schema)
        registry_store = await asyncio.to_thread(RegistryStore, lease.url, schema=schema, fence=lambda: held.fence)
    mirror = None if registry_store is None else RegistryMirror(registry_store, registry)
    metrics.gauge("anju_registry_mirror_write_failures", "Writes of the registry to the shared database that failed "
                  "(each is made again); 0 without one.", lambda: float(mirror.failures if mirror else 0))  # fmt: skip
    try:
        duty = DutyChanges(store=alert_store, directory=directory)
        await duty.load()  # before the alert service routes anything: the swaps and holidays made before a restart
        async with (
            WebhookReceiver(
                smtp=build_smtp(deployment, settings.deployment.parent),
                sms=build_sms(deployment, settings.deployment.parent),
                voice=build_voice(deployment, settings.deployment.parent),
            ) as receiver,
            AlertService(
                store=alert_store,
                directory=directory,
                receiver=receiver,
                escalation=build_escalation(deployment),
                departments=build_departments(deployment),
                grouping=build_grouping(deployment),
                maintenance=build_maintenance(deployment),
            ) as alerts,
            EmergencyDesk(
                store=alert_store,
                directory=directory,
                receiver=receiver,
                volunteers=build_volunteers(deployment, settings.deployment.parent),
                broadcasts=build_broadcasts(deployment, settings.deployment.parent),
                departments=build_departments(deployment),
                community_name=deployment.community.name,
            ) as emergency,
        ):
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            detection = await asyncio.to_thread(detection_layers, deployment, registry, settings.data_dir)
            ingest = Ingest(
                endpoint=MqttEndpoint(
                    host=settings.mqtt_host,
                    port=settings.mqtt_port,
                    username=settings.mqtt_username,
                    password=password,
                    client_id=settings.client_id(deployment.community.id),
                    tls=settings.mqtt_tls_context(),
                ),
                store=store,
                registry=registry,
                detector=detection,
                health=detection.health,
                on_risks=alerts.submit_many,
                metrics=metrics,
                inbox_capacity=settings.inbox_capacity,
                batch_messages=settings.batch_messages,
                time_check_interval_s=settings.time_check_interval_s,
                limits=limits_policy(deployment),
            )
            live = LiveFeed(
                store=alert_store,
                registry=registry,
                latest=ingest.latest,
                liveness=ingest.liveness,
                metrics=metrics,
            )
            runtime = Runtime(
                settings,
                deployment,
                registry,
                store,
                metrics,
                alerts,
                ingest,
                emergency,
                live,
                identity(settings, Scopes(deployment), identity_store),
                directory,
                duty,
            )
            tune_gc()
            await ingest.liveness.restore_open(alerts)
            await ingest.limits.restore_open(alerts)
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(ingest.run(), name="hub-ingest"),
                    group.create_task(_maintain(store), name="hub-store-maintain"),
                    group.create_task(live.run(), name="hub-live-feed"),
                    group.create_task(_save_detection_forever(detection, settings.data_dir), name="hub-detection-save"),
                    group.create_task(
                        ingest.liveness.run(connected=lambda: ingest.connected, on_risks=ingest.on_risks),
                        name="hub-ingest-liveness",
                    ),
                    group.create_task(ingest.limits.run(on_risks=ingest.on_risks), name="hub-ingest-limits"),
                ]
                if lease is not None:
                    tasks.append(group.create_task(lease.keep(on_lost=_stop_at_once), name="hub-lease"))
                if mirror is not None:
                    tasks.append(group.create_task(mirror.run(), name="hub-registry-mirror"))
                try:
                    yield runtime
                finally:
                    for task in tasks:
                        task.cancel()
                    await _save_detection(detection, settings.data_dir)
    finally:
        store.close()
        alert_store.close()
        identity_store.close()
        if registry_store is not None:
            registry_store.close()
        log.info("hub stopped")
