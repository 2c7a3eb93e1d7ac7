"""The MQTT session's supervisor: a dead or stalled paho network thread is noticed and the client rebuilt.

Real Mosquitto, real paho threads, really killed: a message callback that raises (paho's default
``suppress_exceptions`` is False, so paho re-raises it) ends the network thread exactly as in the field reports,
and nothing in paho brings it back. (An exception injected into the thread while it waits in ``select`` would
not do: paho catches ``Exception`` there and just reconnects.)
"""

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import MQTTErrorCode

from edge.agent import serve
from edge.config import EdgeConfig, parse_config
from edge.outbox import Outbox
from edge.session import Connected, Disconnected, Message, MqttSession, SessionEvent
from protocol.senml import Batch, Reading, encode_batch
from protocol.topics import HUB_STATE_TOPIC, Channel, topic
from tests.edge.support import COMMUNITY, GATEWAY, Broker, Detectors, Hub, inspect_outbox, wait_until

UNITS = {1: ("gas-b1-101", "gas"), 2: ("temp-b1-102", "temperature")}
Factory = Callable[..., Hub]
# The killed thread's exception is unhandled on purpose: that is the failure under test.
THREAD_DIES = "ignore:Exception in thread paho-mqtt-client:pytest.PytestUnhandledThreadExceptionWarning"
# paho's loop_start on a client that ran before (rebirth reuses its client) makes a new socketpair and drops the
# old one unclosed; the garbage collector closes it, with a ResourceWarning.
RESTART_SOCKETPAIR = "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"


class InjectedBug(RuntimeError):
    """What a bug in paho's loop or in a callback raises in the network thread."""


def _buggy(client: object, userdata: object, message: object) -> None:
    raise InjectedBug("a bug in a command callback")


def _plant_bug(session: MqttSession) -> None:
    """Route ``cmd/crash`` to a callback that raises; the test reaches into the session only to plant it."""
    session._client.message_callback_add(topic(COMMUNITY, GATEWAY, Channel.CMD, "crash"), _buggy)


def _paho_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"paho-mqtt-client-anju-edge-{COMMUNITY}-{GATEWAY}"]


def _states(hub: Hub) -> list[dict[str, object]]:
    with hub.lock:
        return [orjson.loads(payload) for payload in hub.states]


def _session(
    broker: Broker, *, reconnect_max_s: float, supervise_interval_s: float, stall_after_s: float | None = None
) -> MqttSession:
    return MqttSession(
        community=COMMUNITY,
        gateway=GATEWAY,
        session=7,
        host=broker.host,
        port=broker.port,
        keepalive_s=5,
        reconnect_min_s=0.2,
        reconnect_max_s=reconnect_max_s,
        supervise_interval_s=supervise_interval_s,
        stall_after_s=stall_after_s,
    )


async def _next(session: MqttSession, kind: type[SessionEvent], timeout_s: float) -> SessionEvent:
    """The next event of ``kind`` (others skipped), failing after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            event = await session.next_event(timeout_s)
            if isinstance(event, kind):
                return event


async def _subscribed(session: MqttSession, timeout_s: float) -> None:
    """Wait for the hub's retained state, which the broker sends only once the session's SUBSCRIBE (``cmd/+`` in
    the same packet) is in place: ``Connected`` comes before it, and a command published earlier reaches no one."""
    async with asyncio.timeout(timeout_s):
        while True:
            event = await session.next_event(timeout_s)
            if isinstance(event, Message) and event.topic == HUB_STATE_TOPIC:
                return


def _batch(seq: int) -> bytes:
    return encode_batch(
        Batch(COMMUNITY, GATEWAY, 7, seq, (Reading("gas-b1-101", int(time.time() * 1000), 2.5, "%LEL"),))
    )


class HeldLoopStart:
    """From ``hold`` on, whoever calls paho's ``loop_start`` is held up after it until ``release`` (at most 30 s),
    as a thread descheduled on a loaded machine is, while the network thread it started connects."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self._release = threading.Event()
        self.holding = threading.Event()

    def hold(self) -> None:
        original = paho.Client.loop_start

        def held(client: paho.Client) -> MQTTErrorCode:
            self.holding.set()  # before the network thread exists, so before it can connect
            code = original(client)
            self._release.wait(30)
            self.holding.clear()
            return code

        self._monkeypatch.setattr(paho.Client, "loop_start", held)

    def release(self) -> None:
        self._release.set()


@pytest.mark.filterwarnings(THREAD_DIES)
def test_callback_exception_kills_the_thread_and_the_client_is_rebuilt(
    broker: Broker, hub_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    hub = hub_factory(broker)
    caplog.set_level(logging.WARNING, logger="edge.session")
    data = topic(COMMUNITY, GATEWAY, Channel.DATA)

    async def main() -> tuple[bool, int, list[type[SessionEvent]]]:
        session = _session(broker, reconnect_max_s=1.0, supervise_interval_s=0.2)
        session.start()
        supervisor = asyncio.create_task(session.supervise(), name="test-mqtt-supervisor")
        try:
            await _next(session, Connected, 5)
            await _subscribed(session, 10)
            old = session._client
            _plant_bug(session)
            (thread,) = _paho_threads()
            await asyncio.to_thread(hub.command, "crash")
            events: list[type[SessionEvent]] = []
            # Generous: under CI the whole suite and the soak share two cores, and one run took longer than 8 s.
            async with asyncio.timeout(30):
                while not events or events[-1] is not Connected:
                    event = await session.next_event(30)
                    if event is not None and not isinstance(event, Message):
                        events.append(type(event))
            thread_gone = not thread.is_alive()
            session.publish(data, _batch(1))  # at once: Connected means a publish goes out
            await asyncio.to_thread(
                wait_until, lambda: (7, 1) in hub.batches, 5, "the batch published after the rebuild"
            )
            await asyncio.sleep(1.0)  # a healthy client is left alone
            assert session._client is not old
            return thread_gone, session.client_rebuilds, events
        finally:
            supervisor.cancel()
            await asyncio.to_thread(session.stop)

    thread_gone, rebuilds, events = asyncio.run(main())
    assert thread_gone and rebuilds == 1
    assert events == [Disconnected, Connected]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "rebuilt" in r.getMessage()]
    assert len(warnings) == 1 and "network thread died" in warnings[0].getMessage()
    births = [s for s in _states(hub) if s["status"] == "online"]
    assert len(births) == 2 and all(s["session"] == 7 for s in births)  # same Will and birth settings
    # stop() waits for the broker's PUBACK of its offline state, not for the hub to have it.
    wait_until(lambda: any(s["status"] == "offline" for s in _states(hub)), 10, "the offline state at the hub")
    assert [s for s in _states(hub) if s["status"] == "offline"] == [_states(hub)[-1]]  # only stop's own
    assert len(_paho_threads()) == 0


@pytest.mark.filterwarnings(THREAD_DIES)
@pytest.mark.parametrize(
    "restart", ["rebuild", pytest.param("rebirth", marks=pytest.mark.filterwarnings(RESTART_SOCKETPAIR))]
)
def test_connected_means_publishable_even_while_the_restarting_thread_lags(
    broker: Broker, hub_factory: Factory, monkeypatch: pytest.MonkeyPatch, restart: str
) -> None:
    """A rebuilt (or reborn) client's network thread may connect, and ``Connected`` reach the owner, before the
    thread that started it is back from ``loop_start``; a publish then must go out, not raise ``NotConnected``
    (the agent would take it for an outage and wait for a ``Connected`` that never comes)."""
    hub = hub_factory(broker)
    data = topic(COMMUNITY, GATEWAY, Channel.DATA)

    async def main() -> None:
        session = _session(broker, reconnect_max_s=1.0, supervise_interval_s=0.2)
        session.start()
        supervisor = asyncio.create_task(session.supervise(), name="test-mqtt-supervisor")
        held = HeldLoopStart(monkeypatch)
        restarting: asyncio.Future[None] | None = None
        try:
            await _next(session, Connected, 5)
            await _subscribed(session, 10)
            held.hold()
            if restart == "rebuild":
                _plant_bug(session)
                await asyncio.to_thread(hub.command, "crash")
            else:
                restarting = asyncio.ensure_future(asyncio.to_thread(session.rebirth, 8))
            await _next(session, Disconnected, 10)
            await _next(session, Connected, 10)
            assert held.holding.is_set(), "the restarting thread should still be in loop_start"
            session.publish(data, _batch(1))
            held.release()
            if restarting is not None:
                await restarting
            await asyncio.to_thread(wait_until, lambda: (7, 1) in hub.batches, 5, "the batch published at once")
        finally:
            held.release()
            supervisor.cancel()
            await asyncio.to_thread(session.stop)

    asyncio.run(main())


def test_disconnected_far_too_long_with_a_live_thread_is_rebuilt(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker is away; paho's thread lives and retries, yet after ``stall_after_s`` the client is replaced
    (a fresh one re-reads password and TLS files); the same refusal is logged once, not on every retry."""
    caplog.set_level(logging.INFO, logger="edge.session")
    broker.stop()

    async def main() -> tuple[int, int]:
        session = _session(broker, reconnect_max_s=0.2, stall_after_s=1.0, supervise_interval_s=0.2)
        session.start()
        supervisor = asyncio.create_task(session.supervise(), name="test-mqtt-supervisor")
        try:
            await asyncio.to_thread(wait_until, lambda: session.client_rebuilds >= 1, 5, "a rebuild")
            rebuilds_while_down = session.client_rebuilds
            await asyncio.to_thread(broker.start)
            await _next(session, Connected, 5)
            settled = session.client_rebuilds
            await asyncio.sleep(1.5)  # connected: no more rebuilds
            assert session.client_rebuilds == settled
            return rebuilds_while_down, settled
        finally:
            supervisor.cancel()
            await asyncio.to_thread(session.stop)

    while_down, settled = asyncio.run(main())
    assert 1 <= while_down <= settled <= 4
    rebuilt = [r.getMessage() for r in caplog.records if "MQTT client rebuilt" in r.getMessage()]
    assert rebuilt and all("although paho's network thread is alive" in m for m in rebuilt)
    refused = [r.getMessage() for r in caplog.records if "cannot connect to broker" in r.getMessage()]
    assert len(refused) == 1 and "Connection refused" in refused[0]


# -- the whole agent --------------------------------------------------------------------------------------


def _config(tmp_path: Path, broker: Broker, modbus_port: int) -> EdgeConfig:
    data = {
        "community": COMMUNITY,
        "gateway": GATEWAY,
        "outbox": "outbox.sqlite3",
        "poll_interval_s": 0.1,
        "publish_interval_s": 0.2,
        "ack_timeout_s": 2.0,
        "health_interval_s": 0.2,
        "mqtt": {"host": broker.host, "port": broker.port, "keepalive_s": 5},
        "modbus": {"host": "127.0.0.1", "port": modbus_port, "timeout_s": 0.5},
        "sensors": [{"id": sensor, "kind": kind, "unit_id": unit} for unit, (sensor, kind) in UNITS.items()],
    }
    return parse_config(data, base_dir=tmp_path, source="supervisor-test")


class InProcessEdge:
    """``edge.agent.serve`` on its own event loop in a thread: the production assembly, in reach of the test."""

    def __init__(self, config: EdgeConfig) -> None:
        self._config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="in-process-edge", daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            config = self._config
            outbox = Outbox.open(
                config.outbox, community=config.community, gateway=config.gateway, max_bytes=config.outbox_max_bytes
            )
            self._ready.set()
            try:
                await serve(config, outbox, self._stop)
            finally:
                outbox.close()

        try:
            asyncio.run(run())
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(5)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the edge did not stop"
        if self.error is not None:
            raise AssertionError(f"the edge failed: {self.error!r}") from self.error


@pytest.fixture
def in_process_edge() -> Iterator[Callable[[EdgeConfig], InProcessEdge]]:
    edges: list[InProcessEdge] = []

    def make(config: EdgeConfig) -> InProcessEdge:
        edge = InProcessEdge(config)
        edges.append(edge)
        edge.start()
        return edge

    yield make
    for edge in edges:
        if edge._thread.is_alive():
            edge.stop()


def _rebuilds_saved(path: Path) -> float:
    outbox = inspect_outbox(path)
    try:
        return outbox.health().get("client_rebuilds", -1.0)
    finally:
        outbox.close()


@pytest.mark.filterwarnings(THREAD_DIES)
def test_agent_survives_its_network_thread_dying(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    in_process_edge: Callable[[EdgeConfig], InProcessEdge],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge")
    server = detectors(UNITS)
    hub = hub_factory(broker)
    config = _config(tmp_path, broker, server.port)
    edge = in_process_edge(config)
    before = [server.produce(1, 2.0), server.produce(2, 21.0)]
    wait_until(lambda: hub.readings() >= {(p.sensor, p.time_ms, p.value) for p in before}, 10, "readings before")
    (thread,) = _paho_threads()
    (session,) = [o for o in gc.get_objects() if isinstance(o, MqttSession) and o._thread is thread]  # serve()'s
    _plant_bug(session)
    hub.command("crash")
    wait_until(lambda: not thread.is_alive(), 5, "paho's network thread to die")
    after = [server.produce(1, 3.0), server.produce(2, 22.0)]  # taken while the client is dead
    wait_until(lambda: "MQTT client rebuilt (1 so far)" in caplog.text, 10, "the rebuild")
    later = [server.produce(1, 4.0), server.produce(2, 23.0)]
    expected = {(p.sensor, p.time_ms, p.value) for p in before + after + later}
    wait_until(lambda: hub.readings() >= expected, 10, "readings taken during and after the rebuild at the hub")
    wait_until(lambda: _rebuilds_saved(config.outbox) == 1.0, 5, "client_rebuilds=1 in the saved health")
    assert hub.readings() == expected and not hub.rejections
    assert caplog.text.count("connected to broker") == 2
    assert "client_rebuilds=1" in caplog.text  # the health line
    assert len(_paho_threads()) == 1
    edge.stop()
