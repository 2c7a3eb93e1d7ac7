"""The gateway's MQTT session: paho-mqtt 2.x behind a small class, so nothing else sees paho's callbacks or codes.

- MQTT 3.1.1, ``clean_session=False`` with the stable client id ``anju-edge-{community}-{gateway}``, so the
  broker keeps the ``ack`` / ``cmd/+`` subscriptions (QoS 1) across short outages.
- Will: retained ``state`` with status offline and this session's number. On every connect: retained birth
  (status online), then the subscriptions (``ack``, ``cmd/+`` and the hub's retained ``anju/v1/hub/state``).
- ``rebirth(session)``: a new session number at runtime. The Will is part of CONNECT, so the only way to change
  it is a clean disconnect (no Will fired) and a new connection, which then publishes the new birth.
- paho's network thread (``loop_start``) reconnects by itself with capped exponential backoff
  (``reconnect_delay_set``); the base delay is jittered per gateway so a fleet does not reconnect in lockstep
  after a broker restart.
- paho's callbacks only turn into ``SessionEvent`` values handed to the owner's asyncio loop
  (``loop.call_soon_threadsafe``); the owner reads them with ``await next_event()``.
- ``publish`` raises ``NotConnected`` instead of letting paho queue the message while offline: the outbox is the
  queue, and everything unacknowledged is republished after the reconnect anyway.
"""

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from protocol.session import GatewayState, encode_state
from protocol.topics import HUB_STATE_TOPIC, Channel, subscription, topic

__all__ = [
    "Connected",
    "Disconnected",
    "Message",
    "MqttSession",
    "NotConnected",
    "PublishFailed",
    "SessionError",
    "SessionEvent",
]

_log = logging.getLogger(__name__)
RECONNECT_MAX_S = 30.0
STOP_TIMEOUT_S = 2.0


class SessionError(Exception):
    """Base of the session's errors."""


class NotConnected(SessionError):
    """A publish while the broker connection is down; ``topic`` is what was being published."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        super().__init__(f"not connected, cannot publish to {topic}")


class PublishFailed(SessionError):
    """paho refused a publish: ``code`` is its error code name, ``topic`` the destination."""

    def __init__(self, topic: str, code: str) -> None:
        self.topic = topic
        self.code = code
        super().__init__(f"publish to {topic} failed: {code}")


@dataclass(frozen=True, slots=True)
class Connected:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes


SessionEvent = Connected | Disconnected | Message


class MqttSession:
    """One gateway's connection to the broker. ``start`` once, ``stop`` once."""

    def __init__(
        self,
        *,
        community: str,
        gateway: str,
        session: int,
        host: str,
        port: int,
        keepalive_s: int = 30,
        username: str = "",
        password_file: Path | None = None,
        reconnect_min_s: float | None = None,
        reconnect_max_s: float = RECONNECT_MAX_S,
    ) -> None:
        self.community = community
        self.gateway = gateway
        self.session = session
        self.host = host
        self.port = port
        self.client_id = f"anju-edge-{community}-{gateway}"
        self._state_topic = topic(community, gateway, Channel.STATE)
        self._subscriptions = [
            topic(community, gateway, Channel.ACK),
            subscription(Channel.CMD, community=community, gateway=gateway),
            HUB_STATE_TOPIC,
        ]
        self._connected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self._client.will_set(self._state_topic, self._state("offline"), qos=1, retain=True)
        if username:
            password = password_file.read_text(encoding="utf-8").strip() if password_file else None
            self._client.username_pw_set(username, password)
        self._keepalive_s = keepalive_s
        base = reconnect_min_s if reconnect_min_s is not None else random.uniform(0.5, 1.5)
        # paho annotates the delays as int but computes with them as numbers; a float base carries the jitter.
        self._client.reconnect_delay_set(min_delay=base, max_delay=reconnect_max_s)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        """Begin connecting in paho's network thread (retries until the broker answers)."""
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive_s)
        self._client.loop_start()

    async def next_event(self, timeout_s: float) -> SessionEvent | None:
        """The next connection event or message, or None after ``timeout_s``.

        ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11 ``wait_for`` can swallow a cancellation that
        arrives as the ``get`` completes, and the agent's stop (which cancels this loop) would then hang.
        """
        try:
            async with asyncio.timeout(timeout_s):
                return await self._events.get()
        except TimeoutError:
            return None

    def publish(self, topic_name: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Hand a message to paho for sending; raises ``NotConnected`` or ``PublishFailed``."""
        if not self._connected:
            raise NotConnected(topic_name)
        info = self._client.publish(topic_name, payload, qos=qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise NotConnected(topic_name)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise PublishFailed(topic_name, paho.error_string(info.rc))

    def publish_birth(self) -> None:
        self._client.publish(self._state_topic, self._state("online"), qos=1, retain=True)

    def rebirth(self, session: int) -> None:
        """Blocking (run it in a thread): take ``session`` as this gateway's session number, for the Will too.

        When connected: a clean DISCONNECT (the broker drops the old Will without firing it), then a new
        connection whose CONNECT carries the new Will and whose ``on_connect`` publishes the new birth; the owner
        sees ``Disconnected`` then ``Connected``. When not connected, the next connection does the same.
        """
        self.session = session
        self._client.will_set(self._state_topic, self._state("offline"), qos=1, retain=True)
        if not self._connected:
            return
        self._client.disconnect()
        self._client.loop_stop()
        self._connected = False
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        """Publish the offline state (when connected), disconnect, and stop paho's thread."""
        if self._connected:
            info = self._client.publish(self._state_topic, self._state("offline"), qos=1, retain=True)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while not info.is_published() and self._connected and time.monotonic() < deadline:
                time.sleep(0.01)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected = False

    # -- paho's thread ------------------------------------------------------------------------------------

    def _state(self, status: str) -> bytes:
        return encode_state(GatewayState(status, self.session, time.time()))  # type: ignore[arg-type]

    def _emit(self, event: SessionEvent) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._events.put_nowait, event)

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            _log.warning("broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        self.publish_birth()
        client.subscribe([(name, 1) for name in self._subscriptions])
        self._connected = True
        self._emit(Connected(self.host, self.port))

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self._connected
        self._connected = False
        if was_connected:
            self._emit(Disconnected(str(reason)))

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        for name, reason in zip(self._subscriptions, reasons, strict=False):
            if reason.is_failure:  # e.g. an ACL without read access to the hub's state: logged, never fatal
                _log.warning("broker refused the subscription to %s: %s", name, reason)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        self._emit(Message(message.topic, bytes(message.payload)))
