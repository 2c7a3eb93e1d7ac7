"""What one broker connection lets into the hub: QoS 1 PUBACKs sent by the hub, reading paused while it is behind.

Underneath aiomqtt, paho acknowledges every QoS 1 message as soon as it has read it from the socket, and aiomqtt
queues it without bound: a receiver waiting for room in the inbox stops nothing. Measured with a flood of
100-reading batches into a hub whose store took 0.2 s a round: the client's queue reached 17,900 messages
(+98 MiB) in 4 s while the inbox held its 1,000. Two measures, because neither suffices alone:

- PUBACK only once the inbox holds a message (paho's ``manual_ack``). A broker that keeps its in-flight window
  (Mosquitto ``max_inflight_messages``; MQTT 5 receive maximum) then stops at that window and keeps the backlog
  in its own queue. Mosquitto 2.0.11 does not: once PUBACKs flow its send quota goes wrong (2.0.13 lists
  "various fixes around inflight quota management", #2306) and it sends on — measured here with a window of
  100: after 50 PUBACKs, 1,184 messages sent and not acknowledged.
- So the hub also stops reading the socket while ``window`` messages wait in the client's queue, and reads on
  when half of them have gone into the inbox: TCP then holds the broker back, whatever its version. A pause
  lasts until the committer takes its next round; one longer than the keepalive (a store stalled for ~2×30 s)
  ends the connection, and the broker redelivers what was not PUBACKed.

aiomqtt 2.5 offers neither (manual acks: empicano/aiomqtt#345, open), so this reaches into the paho client it
wraps, set up before the connection exists (not even a queued message of the persistent session is acknowledged
early), and replaces aiomqtt's socket reader with one that can pause, doing what aiomqtt's does. PUBACKs go out
in bursts — when the client's queue has run dry, before the receiver waits, or every ``ACK_BURST`` messages —
since one socket write per PUBACK cost about 40 % of the receive rate (bench/mqtt_receive.py).
"""

import asyncio
import ssl

import aiomqtt
import paho.mqtt.client as mqtt

from protocol.transport import send_at_once

__all__ = ["ACK_BURST", "WINDOW", "Intake", "publish_nowait"]

ACK_BURST = 32
"""Most PUBACKs held back while more messages wait; well inside any in-flight window worth having (20+)."""
WINDOW = 100
"""Messages read and not yet in the inbox before reading pauses: Mosquitto's window in deploy/mosquitto/anju.conf
(``max_inflight_messages``), so with a broker that keeps it reading hardly ever pauses. 100 x 256 KiB at most."""


class Intake:
    """Flow control of one aiomqtt connection. Make it before the client connects, ``attach`` it after."""

    def __init__(self, client: aiomqtt.Client, *, window: int = WINDOW) -> None:
        """``window``: messages read from the socket and not yet in the inbox before reading pauses."""
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._client = client
        self._paho = client._client  # no public way: see the module docstring
        if self._paho.is_connected():
            raise RuntimeError("an Intake must be made before its client connects")
        self._paho.manual_ack_set(True)
        self.window = window
        self._owed: list[int] = []
        self._fd: int | None = None
        self.paused = False

    def attach(self) -> None:
        """Take over reading the connected client's socket (aiomqtt's reader is replaced on the same fd)."""
        sock = self._paho.socket()
        if sock is None:
            raise aiomqtt.MqttError("not connected")
        send_at_once(sock)
        self._fd = sock.fileno()
        asyncio.get_running_loop().add_reader(self._fd, self._read)

    @property
    def waiting(self) -> int:
        """Messages read from the socket and not yet taken by the receiver (none of them PUBACKed)."""
        return len(self._client.messages)

    def taken(self, message: aiomqtt.Message) -> None:
        """The inbox holds ``message``: owe its PUBACK, and read on if the client's queue has drained."""
        if message.qos == 1:
            self._owed.append(message.mid)
        waiting = len(self._client.messages)
        if len(self._owed) >= ACK_BURST or not waiting:
            self.flush()
        if self.paused and waiting <= self.window // 2:
            self._resume()

    def flush(self) -> None:
        """Send the PUBACKs owed (before the receiver waits for room, so the broker sees the hub's real state)."""
        for mid in self._owed:
            self._paho.ack(mid, 1)
        self._owed.clear()

    def _read(self) -> None:
        paho = self._paho
        try:
            while True:
                paho.loop_read()
                sock = paho.socket()
                if not (isinstance(sock, ssl.SSLSocket) and sock.pending() > 0):  # TLS may hold decoded bytes
                    break
        except Exception as exc:  # as aiomqtt's own reader: a broken socket ends the connection
            disconnected = self._client._disconnected
            if not disconnected.done():
                disconnected.set_exception(exc)
            return
        if len(self._client.messages) >= self.window and paho.socket() is not None and self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            self.paused = True

    def _resume(self) -> None:
        self.paused = False
        sock = self._paho.socket()
        if sock is not None and sock.fileno() == self._fd:  # closed meanwhile: aiomqtt has let go of the fd
            asyncio.get_running_loop().add_reader(self._fd, self._read)


def publish_nowait(client: aiomqtt.Client, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """Publish at QoS 1 without waiting for the broker's PUBACK.

    The hub's own publishes (hub-acks, commands, its state) must not wait for the connection they go out on to
    be read: while an ``Intake`` has paused reading, a PUBACK would wait behind the messages it holds back, and
    the committer — the one who frees room — would wait for it. One lost with its connection is made good by
    the next hub-ack or the gateway's replay. Raises MqttError when paho refuses the message (not connected).
    """
    info = client._client.publish(topic, payload, qos=1, retain=retain)
    if info.rc != mqtt.MQTT_ERR_SUCCESS:
        raise aiomqtt.MqttCodeError(info.rc, f"could not publish to {topic}")
