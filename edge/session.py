"""The gateway's MQTT session: paho-mqtt 2.x behind a small class, so nothing else sees paho's callbacks or codes.

- MQTT 3.1.1, ``clean_session=False`` with the stable client id ``anju-edge-{community}-{gateway}``, so the
  broker keeps the ``ack`` / ``cmd/+`` subscriptions (QoS 1) across short outages.
- Will: retained ``state`` with status offline and this session's number. On every connect: retained birth
  (status online), then the subscriptions (``ack``, ``cmd/+`` and the hub's retained ``anju/v1/hub/state``).
- TLS when configured: the broker's certificate must chain to ``ca_file`` and match the host name
  (``ssl.PROTOCOL_TLS_CLIENT``: TLS 1.2 or newer, hostname check on, never switched off); an optional client
  certificate. A failed handshake is logged once per distinct error (ERROR, naming TLS and the certificate
  problem); paho keeps retrying, so a CA installed later is picked up on a rebuild or restart.
- ``rebirth(session)``: a new session number at runtime. The Will is part of CONNECT, so the only way to change
  it is a clean disconnect (no Will fired) and a new connection, which then publishes the new birth.
- paho's network thread (``loop_start``) reconnects by itself with capped exponential backoff
  (``reconnect_delay_set``); the base delay is jittered per gateway so a fleet does not reconnect in lockstep
  after a broker restart.
- ``supervise()`` watches that thread (field reports: it died on an exception in a callback and the gateway
  never reconnected). When it is dead, or when the session has been disconnected for ``stall_after_s`` (far
  longer than the longest backoff) although it is alive, the paho client is torn down and rebuilt with the same
  client id, Will and settings, re-reading the password and TLS files; ``client_rebuilds`` counts it.
- paho's callbacks only turn into ``SessionEvent`` values handed to the owner's asyncio loop
  (``loop.call_soon_threadsafe``); the owner reads them with ``await next_event()``. Callbacks from a client
  that was replaced are ignored.
- ``publish`` raises ``NotConnected`` instead of letting paho queue the message while offline: the outbox is the
  queue, and everything unacknowledged is republished after the reconnect anyway.
"""

import asyncio
import logging
import random
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import EdgeConfig
from protocol.session import GatewayState, encode_state
from protocol.topics import HUB_STATE_TOPIC, Channel, subscription, topic
from protocol.transport import send_at_once

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
SUPERVISE_INTERVAL_S = 5.0
"""How often ``supervise`` looks at paho's network thread: a dead thread costs at most this much extra outage."""
STALL_FACTOR = 3.0
"""``stall_after_s`` defaults to this many times the longest reconnect backoff: a working thread retries at least
once per backoff (plus paho's 5 s connect timeout), so three backoffs without a connection mean either a stuck
thread or a client that keeps failing with settings a fresh one reads anew (a rotated password or CA file). A
broker that is simply down costs one rebuild per ``stall_after_s``."""


_CREDENTIALS_REFUSED = frozenset({4, 5, 0x86, 0x87})
"""CONNACK codes that say the user or password is wrong (3.1.1: 4, 5; in paho's MQTT 5 numbering: 0x86, 0x87)."""


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
    """One gateway's connection to the broker. ``start`` once, ``stop`` once; run ``supervise`` in between."""

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
        tls: bool = False,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        supervise_interval_s: float = SUPERVISE_INTERVAL_S,
        stall_after_s: float | None = None,
    ) -> None:
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file go together")
        if not tls and (ca_file is not None or cert_file is not None):
            raise ValueError("ca_file, cert_file and key_file need tls=True")
        if supervise_interval_s <= 0 or (stall_after_s is not None and stall_after_s <= 0):
            raise ValueError("supervise_interval_s and stall_after_s must be > 0")
        self.community = community
        self.gateway = gateway
        self.session = session
        self.host = host
        self.port = port
        self.client_id = f"anju-edge-{community}-{gateway}"
        self.client_rebuilds = 0
        self._password_used: str | None = None
        """The password the current paho client logs in with (read from ``password_file`` when it was made)."""
        self._credentials_refused = False
        """The broker refused the current client's credentials: a changed password file makes ``check`` rebuild."""
        """How many times ``supervise`` replaced a dead or stuck paho client."""
        self._state_topic = topic(community, gateway, Channel.STATE)
        self._subscriptions = [
            topic(community, gateway, Channel.ACK),
            subscription(Channel.CMD, community=community, gateway=gateway),
            HUB_STATE_TOPIC,
        ]
        self._keepalive_s = keepalive_s
        self._username = username
        self._password_file = password_file
        self._tls = tls
        self._ca_file = ca_file
        self._cert_file = cert_file
        self._key_file = key_file
        self._reconnect_min_s = reconnect_min_s if reconnect_min_s is not None else random.uniform(0.5, 1.5)
        self._reconnect_max_s = reconnect_max_s
        self._supervise_interval_s = supervise_interval_s
        self._stall_after_s = stall_after_s if stall_after_s is not None else STALL_FACTOR * reconnect_max_s
        self._connected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self._lifecycle = threading.Lock()  # start / rebirth / rebuild / stop, never two at once
        self._running = False
        self._thread: threading.Thread | None = None
        self._down_since = time.monotonic()  # monotonic s when the connection was last lost (or first sought)
        self._last_connect_error = ""
        self._client = self._new_client()

    @classmethod
    def from_config(
        cls, config: EdgeConfig, *, session: int, supervise_interval_s: float = SUPERVISE_INTERVAL_S
    ) -> "MqttSession":
        """The session for ``config.mqtt`` with this outbox ``session`` number."""
        mqtt = config.mqtt
        return cls(
            community=config.community,
            gateway=config.gateway,
            session=session,
            host=mqtt.host,
            port=mqtt.port,
            keepalive_s=mqtt.keepalive_s,
            username=mqtt.username,
            password_file=mqtt.password_file,
            tls=mqtt.tls,
            ca_file=mqtt.ca_file,
            cert_file=mqtt.cert_file,
            key_file=mqtt.key_file,
            supervise_interval_s=supervise_interval_s,
        )

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        """Begin connecting in paho's network thread (retries until the broker answers)."""
        self._loop = asyncio.get_running_loop()
        with self._lifecycle:
            self._running = True
            self._begin()

    async def supervise(self) -> None:
        """Until cancelled: every ``supervise_interval_s`` check paho's network thread (``check`` in a thread)."""
        while True:
            await asyncio.sleep(self._supervise_interval_s)
            await asyncio.to_thread(self.check)

    def check(self) -> str | None:
        """Blocking: rebuild the paho client when its network thread is dead or stalled; returns why, or None.

        Dead: paho runs callbacks in its network thread with ``suppress_exceptions`` False, so one exception in
        a callback ends the thread, and with it every reconnect. Stalled: disconnected for ``stall_after_s``
        although the thread is alive (a callback that blocks, or settings that no longer work).
        """
        with self._lifecycle:
            if not self._running:
                return None
            reason = self._fault()
            if reason is not None:
                self._rebuild(reason)
            return reason

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
        """Hand a message to paho for sending; raises ``NotConnected`` or ``PublishFailed``.

        A client whose network thread died counts as not connected: paho would otherwise write from the caller's
        thread into a socket nobody reads any more, and the message would wait for a PUBACK that never comes.
        """
        if not self._connected or not self._network_alive():
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
        with self._lifecycle:
            self.session = session
            self._client.will_set(self._state_topic, self._state("offline"), qos=1, retain=True)
            if not self._connected:
                return
            self._client.disconnect()
            self._client.loop_stop()
            self._connected = False
            self._begin()

    def stop(self) -> None:
        """Publish the offline state (when connected), disconnect, and stop paho's thread."""
        with self._lifecycle:
            self._running = False
            if self._connected and self._network_alive():
                info = self._client.publish(self._state_topic, self._state("offline"), qos=1, retain=True)
                deadline = time.monotonic() + STOP_TIMEOUT_S
                while not info.is_published() and self._connected and time.monotonic() < deadline:
                    time.sleep(0.01)
            self._client.disconnect()
            self._client.loop_stop()
            self._connected = False

    # -- the paho client's lifetime ------------------------------------------------------------------------

    def _new_client(self) -> paho.Client:
        """A paho client with this session's settings; used at construction and by every rebuild."""
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        client.will_set(self._state_topic, self._state("offline"), qos=1, retain=True)
        if self._username:
            password = self._read_password()
            client.username_pw_set(self._username, password)
            self._password_used = password
            self._credentials_refused = False
        if self._tls:
            client.tls_set(
                ca_certs=str(self._ca_file) if self._ca_file is not None else None,
                certfile=str(self._cert_file) if self._cert_file is not None else None,
                keyfile=str(self._key_file) if self._key_file is not None else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,  # CERT_REQUIRED and the hostname check
            )
        # paho annotates the delays as int but computes with them as numbers; a float base carries the jitter.
        client.reconnect_delay_set(min_delay=self._reconnect_min_s, max_delay=self._reconnect_max_s)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _begin(self) -> None:
        """Connect asynchronously and start paho's network thread; the caller holds ``_lifecycle``."""
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive_s)
        self._client.loop_start()
        # paho 2.x offers no public handle on its network thread; loop_start has just stored it here.
        self._thread = self._client._thread
        self._down_since = time.monotonic()

    def _network_alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _read_password(self) -> str | None:
        return self._password_file.read_text(encoding="utf-8").strip() if self._password_file else None

    def _fault(self) -> str | None:
        if not self._network_alive():
            return "paho's network thread died (an exception in its loop or a callback)"
        if self._credentials_refused and not self._connected:
            try:
                changed = self._read_password() != self._password_used
            except OSError:
                changed = False  # mid-copy or gone: the next check reads it again
            if changed:  # `anju-hub provision rotate`: the new secret is in place, use it now
                return "the broker refused the credentials and the password file has changed since"
        down_s = time.monotonic() - self._down_since
        if not self._connected and down_s > self._stall_after_s:
            limit = f"limit {self._stall_after_s:.0f} s"
            return f"disconnected for {down_s:.0f} s although paho's network thread is alive ({limit})"
        return None

    def _rebuild(self, reason: str) -> None:
        """Replace the paho client by a fresh one with the same settings; the caller holds ``_lifecycle``."""
        try:
            fresh = self._new_client()
        except (OSError, ValueError) as exc:  # e.g. the key file vanished: try again at the next check
            _log.error("MQTT client needs a rebuild (%s) but a new one cannot be made: %s", reason, exc)
            return
        old, was_connected = self._client, self._connected
        self._client = fresh  # from here on the old client's callbacks are ignored
        self._connected = False
        self.client_rebuilds += 1
        _log.warning("MQTT client rebuilt (%d so far): %s", self.client_rebuilds, reason)
        self._discard(old)
        if was_connected:
            self._emit(Disconnected(f"client rebuilt: {reason}"))
        self._begin()

    @staticmethod
    def _discard(client: paho.Client) -> None:
        """Stop a replaced client, waiting at most ``STOP_TIMEOUT_S``: a stuck network thread is left behind.

        ``loop_stop`` first (it tells the thread to end, then joins), then ``disconnect`` so the old socket is
        closed with a DISCONNECT; if the join hangs, the new connection's CONNECT with the same client id makes
        the broker close the old one (session takeover) anyway.
        """

        def teardown() -> None:
            client.loop_stop()
            client.disconnect()

        worker = threading.Thread(target=teardown, name="anju-mqtt-discard", daemon=True)
        worker.start()
        worker.join(STOP_TIMEOUT_S)
        if worker.is_alive():  # e.g. in a 5 s connect attempt; it ends after it, as loop_stop told it to
            _log.warning("the replaced MQTT client did not stop within %.0f s; left to finish", STOP_TIMEOUT_S)

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
        if client is not self._client:
            return
        if reason.is_failure:
            _log.warning("broker %s:%d refused the connection: %s", self.host, self.port, reason)
            if reason.value in _CREDENTIALS_REFUSED:
                self._credentials_refused = True
            return
        self._last_connect_error = ""
        # The thread this runs in is the current client's network thread. ``_begin`` stores it too, but only once
        # ``loop_start`` has returned: a caller thread that lags there (descheduled on a busy machine) would leave
        # the previous client's dead or stopped thread in ``_thread`` after a rebuild or rebirth, and ``publish``
        # would raise ``NotConnected`` right after this very ``Connected`` (the owner would wait for a next one).
        self._thread = threading.current_thread()
        send_at_once(client.socket())
        # Subscribe before the birth: the broker takes one client's packets in order, so the subscription is in place
        # when the hub sees the birth — the hub answers a birth with commands (cmd/time), which would otherwise race
        # the SUBSCRIBE and be lost on a busy broker (a first connection has no earlier subscription to catch them).
        client.subscribe([(name, 1) for name in self._subscriptions])
        self.publish_birth()
        self._connected = True
        self._emit(Connected(self.host, self.port))

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        """A connection attempt failed. paho calls this inside its ``except OSError`` block, so the error is
        ``sys.exception()``; it is logged only when it differs from the last one (paho retries with backoff)."""
        if client is not self._client:
            return
        error = sys.exception()
        where = f"broker {self.host}:{self.port}"
        if isinstance(error, ssl.SSLCertVerificationError):
            text = f"TLS certificate check of {where} failed: {error.verify_message} (CA file {self._ca_file})"
        elif isinstance(error, ssl.SSLError):
            text = f"TLS handshake with {where} failed: {error.reason or error}"
        else:
            text = f"cannot connect to {where}: {error}"
        if text == self._last_connect_error:
            return
        self._last_connect_error = text
        _log.log(logging.ERROR if isinstance(error, ssl.SSLError) else logging.WARNING, "%s; retrying", text)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if client is not self._client:
            return
        was_connected = self._connected
        self._connected = False
        if was_connected:
            self._down_since = time.monotonic()
            self._emit(Disconnected(str(reason)))

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if client is not self._client:
            return
        for name, reason in zip(self._subscriptions, reasons, strict=False):
            if reason.is_failure:  # e.g. an ACL without read access to the hub's state: logged, never fatal
                _log.warning("broker refused the subscription to %s: %s", name, reason)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        if client is not self._client:
            return
        self._emit(Message(message.topic, bytes(message.payload)))
