"""Every MQTT socket of Anju sends small packets at once (Nagle off)."""

import socket
import ssl

from protocol.transport import send_at_once


def test_a_connected_socket_gets_nodelay_and_anything_else_is_left_alone() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0, "the kernel's default is Nagle on"
        send_at_once(client)
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    send_at_once(None)  # not connected (paho's socket() before connect)
    send_at_once(object())


def test_a_tls_socket_is_a_socket_too() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        raw = socket.create_connection(server.getsockname())
        wrapped = ssl.create_default_context().wrap_socket(
            raw, server_hostname="localhost", do_handshake_on_connect=False
        )
        with wrapped:
            send_at_once(wrapped)
            assert wrapped.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
