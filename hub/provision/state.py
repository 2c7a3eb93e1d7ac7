"""Mark a revoked gateway offline on the broker.

A gateway's ``state`` topic is retained: its birth says ``online`` and its Will says ``offline``. Once its user is
revoked the broker refuses that Will (the ACL no longer lets the user publish anything), so its last ``online``
would stay retained: the hub, and anyone subscribing later, would go on taking a cut-off gateway for online. So
``anju-hub provision revoke`` replaces it with an ``offline`` state of the same session, as the Will would have
been, logged in as provisioning's own user (``PROVISION_USER``, which may touch gateways' ``state`` only).
"""

import queue
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hub.provision.acl import PROVISION_USER, GatewayUser
from hub.provision.broker_dir import ProvisionError
from protocol.session import GatewayState, decode_state, encode_state
from protocol.topics import Channel, topic

__all__ = ["BrokerLogin", "mark_offline"]

RETAINED_WAIT_S = 2.0
"""How long to wait for the retained state after subscribing (the broker sends it at once; seconds)."""
STEP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class BrokerLogin:
    """Where provisioning reaches the broker: the loopback listener by default (secure.conf), or TLS with the CA."""

    host: str
    port: int
    password: str
    ca_file: Path | None = None


def mark_offline(login: BrokerLogin, user: GatewayUser) -> str:
    """Replace the gateway's retained ``online`` by ``offline``; returns what was done, ProvisionError when the
    broker could not be reached or refused."""
    connected: queue.Queue[int] = queue.Queue()
    retained: queue.Queue[bytes] = queue.Queue()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=PROVISION_USER, clean_session=True, protocol=MQTTProtocolVersion.MQTTv311
    )
    client.username_pw_set(PROVISION_USER, login.password)
    if login.ca_file is not None:
        client.tls_set_context(ssl.create_default_context(cafile=str(login.ca_file)))
    client.on_connect = lambda _c, _u, _f, code, _p: connected.put(code.value)
    client.on_message = lambda _c, _u, message: retained.put(bytes(message.payload)) if message.retain else None
    name = topic(user.community, user.gateway, Channel.STATE)
    try:
        client.connect(login.host, login.port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        raise ProvisionError(f"could not reach the broker at {login.host}:{login.port}: {exc}") from None
    client.loop_start()
    try:
        try:
            code = connected.get(timeout=STEP_TIMEOUT_S)
        except queue.Empty:
            raise ProvisionError(f"no answer from the broker at {login.host}:{login.port}") from None
        if code != 0:
            raise ProvisionError(f"the broker refused {PROVISION_USER} (code {code}): run `provision init` again")
        client.subscribe(name, qos=1)
        try:
            payload = retained.get(timeout=RETAINED_WAIT_S)
        except queue.Empty:
            return f"no retained state for {user.name}"
        state = decode_state(payload)
        if not isinstance(state, GatewayState) or state.status != "online":
            return f"{user.name} was not retained as online"
        offline = GatewayState("offline", state.session, time.time())
        info = client.publish(name, encode_state(offline), qos=1, retain=True)
        info.wait_for_publish(STEP_TIMEOUT_S)
        if not info.is_published():
            raise ProvisionError(f"the broker did not take the offline state of {user.name}")
        return f"{user.name} marked offline (session {state.session})"
    finally:
        client.disconnect()
        client.loop_stop()
