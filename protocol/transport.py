"""TCP settings of every MQTT connection Anju makes (hub, edge, load generator)."""

import socket

__all__ = ["send_at_once"]


def send_at_once(sock: object) -> None:
    """Turn Nagle's algorithm off on a connected MQTT socket (``TCP_NODELAY``); anything else (None: not
    connected) is left alone.

    MQTT's packets are small and each waits for an answer (PUBACK, the hub-ack). With Nagle a small write is held
    until the previous one is acknowledged, and the peer delays its TCP acknowledgements (Linux: up to 40 ms), so a
    quiet link's hub-ack arrived tens of milliseconds late: ``bench hub_ingest``'s publish→ack at its lowest load
    (BENCHMARKS.md). Mosquitto's side is ``set_tcp_nodelay true`` in its configuration.
    """
    if isinstance(sock, socket.socket):  # a plain or TLS socket (an ``ssl.SSLSocket`` is one)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
