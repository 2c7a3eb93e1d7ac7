"""TCP and TLS settings of every MQTT connection Anju makes (hub, edge, load generator)."""

import socket
import ssl
from pathlib import Path

__all__ = ["TlsFileError", "client_tls_context", "send_at_once"]


class TlsFileError(ValueError):
    """A TLS file that cannot be used: ``field`` names the setting (``ca_file``, ``cert_file``, ``key_file``)."""

    def __init__(self, field: str, path: Path | None, reason: str) -> None:
        super().__init__(f"{field} {path}: {reason}" if path is not None else f"{field}: {reason}")
        self.field, self.path, self.reason = field, path, reason


def _no_key_password() -> bytes:
    """For ``load_cert_chain``: an encrypted key fails at once instead of OpenSSL prompting on a terminal."""
    return b""


def client_tls_context(
    ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A client context that checks the broker's certificate against ``ca_file`` and its host name, with a client
    certificate when ``cert_file`` and ``key_file`` are given; TlsFileError naming the file that is unusable.

    Read at load time, so that a bad path or PEM fails the config check, not every reconnect.
    """
    if ca_file is None:
        raise TlsFileError("ca_file", None, "is required with TLS: the CA that signed the broker's certificate")
    if (cert_file is None) != (key_file is None):
        missing = "key_file" if key_file is None else "cert_file"
        raise TlsFileError(missing, None, "is required: cert_file and key_file go together (client certificate)")
    for field, path in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
        if path is None:
            continue
        try:
            with path.open("rb") as file:
                file.read(1)
        except OSError as exc:
            raise TlsFileError(field, path, f"cannot be read: {exc.strerror}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and the host name check
    try:
        context.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise TlsFileError("ca_file", ca_file, f"holds no PEM CA certificate: {exc.reason}") from None
    if cert_file is not None and key_file is not None:
        try:
            context.load_cert_chain(certfile=cert_file, keyfile=key_file, password=_no_key_password)
        except ssl.SSLError as exc:
            reason = f"with key_file is no usable PEM certificate and unencrypted matching key: {exc.reason}"
            raise TlsFileError("cert_file", cert_file, reason) from None
    return context


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
