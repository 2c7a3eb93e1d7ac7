"""A small MQTT 5 client for the broker security tests: each call waits for the broker's answer and returns its
reason code, so a test can tell "refused" from "lost" (MQTT 5 PUBACKs and SUBACKs say Not authorized; 3.1.1's do
not)."""

import gc
import queue
import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["ACCEPTED", "NOT_AUTHORIZED", "ConnectRefused", "Probe", "probe"]

NOT_AUTHORIZED = 0x87
ACCEPTED = (0x00, 0x10)
"""A PUBACK that took the message: success, or "no matching subscribers" (MQTT 5 says so, and it is no refusal)."""
WAIT_S = 10.0


class Probe:
    """One connection; ``messages`` receives (topic, payload) of what its subscriptions deliver."""

    def __init__(self, client: paho.Client) -> None:
        self.client = client
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.disconnected = threading.Event()
        self._acks: dict[int, queue.Queue[list[int]]] = {}
        self._lock = threading.Lock()
        client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        client.on_publish = self._on_ack
        client.on_subscribe = self._on_ack
        client.on_disconnect = lambda *_args: self.disconnected.set()

    def _waiter(self, mid: int) -> "queue.Queue[list[int]]":
        with self._lock:
            return self._acks.setdefault(mid, queue.Queue())

    def _on_ack(self, _client: paho.Client, _userdata: object, mid: int, codes: object, _props: object) -> None:
        values = codes if isinstance(codes, list) else [codes]
        self._waiter(mid).put([c.value if isinstance(c, ReasonCode) else int(c) for c in values])

    def publish(self, topic: str, payload: bytes = b"{}", *, retain: bool = False) -> int:
        """The PUBACK's reason code of a QoS 1 publish (0 accepted, 0x87 not authorized)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return self._waiter(info.mid).get(timeout=WAIT_S)[0]

    def subscribe(self, topic: str) -> int:
        """The SUBACK's reason code (1 granted QoS 1, 0x87 not authorized)."""
        _result, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        return self._waiter(mid).get(timeout=WAIT_S)[0]

    def next_message(self, timeout_s: float = WAIT_S) -> tuple[str, bytes]:
        return self.messages.get(timeout=timeout_s)


class ConnectRefused(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@contextmanager
def probe(
    port: int,
    *,
    user: str | None,
    password: str | None = None,
    ca: Path | None = None,
    cert: tuple[Path, Path] | None = None,
    client_id: str = "",
    host: str = "localhost",
) -> Iterator[Probe]:
    """Connect (TLS when ``ca`` is given) and yield the probe; ConnectRefused with the CONNACK code, or None when
    the connection itself failed (TLS, socket)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
    if user is not None:
        client.username_pw_set(user, password)
    if ca is not None:
        context = ssl.create_default_context(cafile=str(ca))
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        client.tls_set_context(context)
    connected: queue.Queue[int] = queue.Queue()
    client.on_connect = lambda _c, _u, _f, code, _p: connected.put(code.value)
    probe_ = Probe(client)
    failure = None
    with warnings.catch_warnings():
        # paho drops the TLS socket of a failed handshake without closing it; it goes with the exception, quietly.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client.connect(host, port, keepalive=30, clean_start=True, properties=Properties(paho.PacketTypes.CONNECT))
        except (OSError, ssl.SSLError) as exc:
            failure = f"connection failed: {exc}"
        gc.collect()
    if failure is not None:
        _close(client)
        raise ConnectRefused(None, failure)
    client.loop_start()
    try:
        try:
            code = connected.get(timeout=WAIT_S)
        except queue.Empty:
            raise ConnectRefused(None, "no CONNACK (the TLS handshake or the socket failed)") from None
        if code != 0:
            raise ConnectRefused(code, f"CONNACK {code:#x}")
        yield probe_
    finally:
        client.disconnect()
        client.loop_stop()
        _close(client)


def _close(client: paho.Client) -> None:
    """Close what paho leaves open after a refused or failed connection (its socket, TLS or not)."""
    sock = client.socket()
    if sock is not None:
        sock.close()
