"""MQTT over TLS: real Mosquitto TLS listeners, certificates made by ``openssl``, the edge as a process.

The broker has a plain listener (for the hub stand-in), a TLS listener that requires a client certificate, and
a TLS listener whose certificate is signed by the right CA but names another host.
"""

import asyncio
import getpass
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.config import ConfigError, EdgeConfig, parse_config
from edge.session import MqttSession
from tests.edge.certs import Certs, make_certs, mosquitto_tls_listener
from tests.edge.support import (
    COMMUNITY,
    GATEWAY,
    MOSQUITTO,
    Broker,
    Detectors,
    EdgeProcess,
    Hub,
    free_port,
    inspect_outbox,
    wait_until,
    write_config,
)

UNITS = {1: ("gas-b1-101", "gas"), 2: ("temp-b1-102", "temperature")}
Factory = Callable[..., Hub]


@dataclass(frozen=True, slots=True)
class TlsBroker:
    broker: Broker
    tls_port: int
    """TLS, server certificate for 127.0.0.1, client certificate required."""
    misnamed_port: int
    """TLS, server certificate signed by the right CA for ``broker.invalid`` only, no client certificate needed."""
    log: Path


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, certs: Certs) -> Iterator[TlsBroker]:
    if not Path(MOSQUITTO).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Mosquitto is required in CI and missing at {MOSQUITTO}")
        pytest.skip(f"Mosquitto not installed at {MOSQUITTO}")
    tls_port, misnamed_port = free_port(), free_port()
    # Started as root, Mosquitto switches to user "mosquitto", who cannot read pytest's private tmp directory;
    # as anyone else this line has no effect.
    extra = f"user {getpass.getuser()}\n"
    extra += mosquitto_tls_listener(
        tls_port, ca=certs.ca, cert=certs.server_cert, key=certs.server_key, require_certificate=True
    ) + mosquitto_tls_listener(
        misnamed_port, ca=certs.ca, cert=certs.misnamed_cert, key=certs.misnamed_key, require_certificate=False
    )
    directory = tmp_path / "broker"
    directory.mkdir()
    broker = Broker(directory, extra_config=extra)
    broker.start()
    try:
        yield TlsBroker(broker, tls_port, misnamed_port, directory / "mosquitto.log")
    finally:
        broker.stop()


def _tls_keys(ca: str) -> dict[str, str | bool]:
    """The ``mqtt`` TLS keys with the client certificate; paths relative to the config file."""
    return {
        "tls": True,
        "ca_file": ca,
        "cert_file": "pki/anju-edge-gw-test.crt",
        "key_file": "pki/anju-edge-gw-test.key",
    }


def _stored(config: Path) -> int:
    outbox = inspect_outbox(config.parent / "outbox.sqlite3")
    try:
        return int(outbox.counters().stored_readings)
    finally:
        outbox.close()


def test_edge_publishes_over_tls_with_a_client_certificate(
    tmp_path: Path,
    tls_broker: TlsBroker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(tls_broker.broker)  # on the plain listener: the edge's data crosses listeners
    config = write_config(
        tmp_path,
        broker_port=tls_broker.tls_port,
        modbus_port=server.port,
        sensors=UNITS,
        mqtt=_tls_keys("pki/ca.crt"),
    )
    edge = edge_process(config)
    edge.start()
    for i in range(10):
        server.produce(1, 2.0 + i / 10)
        server.produce(2, 21.0)
    expected = {(p.sensor, p.time_ms, p.value) for p in server.produced}
    try:
        wait_until(lambda: hub.readings() >= expected, 10, "every reading at the hub")
    except AssertionError:
        raise AssertionError(f"edge log:\n{edge.text()}\nbroker log:\n{tls_broker.log.read_text()}") from None
    assert hub.readings() == expected and not hub.rejections
    wait_until(lambda: _stored(config) == 0, 5, "outbox empty after hub-acks over TLS")
    assert f"connected to broker 127.0.0.1:{tls_broker.tls_port}" in edge.text()
    assert edge.terminate() == 0


def test_wrong_ca_does_not_connect_logs_why_and_keeps_readings(
    tmp_path: Path,
    tls_broker: TlsBroker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(tls_broker.broker)
    config = write_config(
        tmp_path,
        broker_port=tls_broker.tls_port,
        modbus_port=server.port,
        sensors=UNITS,
        mqtt=_tls_keys("pki/other-ca.crt"),
    )
    edge = edge_process(config)
    edge.start()
    for _ in range(5):
        server.produce(1, 2.0)
        server.produce(2, 21.0)
    message = f"TLS certificate check of broker 127.0.0.1:{tls_broker.tls_port} failed"
    wait_until(lambda: message in edge.text(), 30, "the TLS error in the edge log")  # a loaded machine starts slowly
    wait_until(lambda: _stored(config) == len(server.produced), 30, "every reading in the outbox")

    def attempts() -> int:
        # Mosquitto logs a refused TLS handshake one of two ways, by when it fails: during the accept, as "Client
        # connection from … failed" (no port: only the edge speaks TLS to this broker here), or after it, as "New
        # connection from … on port N." followed by the OpenSSL error. Each attempt gives exactly one of the two.
        text = tls_broker.log.read_text(errors="replace")
        return text.count(f"on port {tls_broker.tls_port}.") + text.count("Client connection from 127.0.0.1 failed")

    # several reconnect attempts (backoff from 0.5-1.5 s, doubling); on a loaded machine they come later
    wait_until(lambda: attempts() >= 3, 45, "three connection attempts in the broker log")
    assert edge.process is not None and edge.process.poll() is None, edge.text()
    log = edge.text()
    line = next(line for line in log.splitlines() if message in line)
    assert "ERROR" in line and "other-ca.crt" in line
    # OpenSSL's verdict depends on whether the broker sends its CA along: either way, not our trust anchor
    assert "unable to get local issuer certificate" in line or "self-signed certificate in certificate chain" in line
    assert log.count(message) == 1  # logged when the error changes, not on every retry
    assert "connected to broker" not in log
    assert hub.reading_count() == 0
    assert _stored(config) == len(server.produced)  # nothing lost, nothing sent
    assert edge.terminate() == 0


# paho leaves the socket of a failed TLS handshake to the garbage collector (``_create_socket`` does not close it
# when ``do_handshake`` raises); CPython closes it as soon as the exception is dropped, with a ResourceWarning.
PAHO_UNCLOSED_TLS_SOCKET = "ignore:Exception ignored in. <ssl.SSLSocket:pytest.PytestUnraisableExceptionWarning"


@pytest.mark.filterwarnings(PAHO_UNCLOSED_TLS_SOCKET)
def test_hostname_is_checked_against_the_certificate(
    tls_broker: TlsBroker, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    """Same CA, only the name differs: the misnamed listener is refused, the right one accepted (the control)."""
    caplog.set_level(logging.WARNING, logger="edge.session")

    async def connect(port: int, *, client_cert: bool) -> MqttSession:
        session = MqttSession(
            community=COMMUNITY,
            gateway=f"{GATEWAY}-{port}",
            session=1,
            host="127.0.0.1",
            port=port,
            tls=True,
            ca_file=certs.ca,
            cert_file=certs.client_cert if client_cert else None,
            key_file=certs.client_key if client_cert else None,
            reconnect_min_s=0.2,
            reconnect_max_s=0.5,
        )
        session.start()
        return session

    async def main() -> tuple[bool, bool]:
        misnamed = await connect(tls_broker.misnamed_port, client_cert=False)
        good = await connect(tls_broker.tls_port, client_cert=True)
        try:
            await asyncio.to_thread(
                wait_until, lambda: good.connected and "mismatch" in caplog.text, 8, "connected and refused"
            )
            await asyncio.sleep(1.0)  # more attempts at the misnamed listener: still refused
            return misnamed.connected, good.connected
        finally:
            await asyncio.to_thread(misnamed.stop)
            await asyncio.to_thread(good.stop)

    misnamed_connected, good_connected = asyncio.run(main())
    assert good_connected and not misnamed_connected
    errors = [r.getMessage() for r in caplog.records if "TLS certificate check" in r.getMessage()]
    assert len(errors) == 1, caplog.text
    assert f"broker 127.0.0.1:{tls_broker.misnamed_port}" in errors[0]
    assert "IP address mismatch" in errors[0]


# -- configuration (as parsed data: the file format is edge.config's business) ---------------------------------


def _parse(tmp_path: Path, mqtt: dict[str, object]) -> EdgeConfig:
    data = {
        "community": "hongxing",
        "gateway": "gw-b1",
        "outbox": "outbox.sqlite3",
        "mqtt": {"host": "127.0.0.1", "port": 8883, **mqtt},
        "sensors": [{"id": "gas-b1-101", "kind": "gas", "unit_id": 1}],
    }
    return parse_config(data, base_dir=tmp_path, source="edge-test")


def test_tls_config_resolves_paths_next_to_the_file(tmp_path: Path, certs: Certs) -> None:
    config = _parse(tmp_path, dict(_tls_keys("pki/ca.crt")))
    assert config.mqtt.tls and config.mqtt.port == 8883
    assert (config.mqtt.ca_file, config.mqtt.cert_file, config.mqtt.key_file) == (
        certs.ca,
        certs.client_cert,
        certs.client_key,
    )
    server_only = _parse(tmp_path, {"tls": True, "ca_file": str(certs.ca)})  # absolute, no client certificate
    assert server_only.mqtt.ca_file == certs.ca and server_only.mqtt.cert_file is None
    plain = _parse(tmp_path, {})
    assert not plain.mqtt.tls and plain.mqtt.ca_file is None


CA = {"tls": True, "ca_file": "pki/ca.crt"}


@pytest.mark.parametrize(
    ("mqtt", "key", "reason"),
    [
        ({"tls": True}, "mqtt.ca_file", "is required with mqtt.tls = true"),
        ({"tls": True, "ca_file": "pki/missing.crt"}, "mqtt.ca_file", "cannot be read: No such file or directory"),
        ({"tls": True, "ca_file": "pki"}, "mqtt.ca_file", "cannot be read: Is a directory"),
        ({"tls": True, "ca_file": "pki/server.csr"}, "mqtt.ca_file", "cannot be read: Permission denied"),
        ({"tls": True, "ca_file": "pki/server.ext"}, "mqtt.ca_file", "holds no PEM CA certificate"),
        ({**CA, "cert_file": "pki/server.crt"}, "mqtt.key_file", "go together"),
        ({**CA, "key_file": "pki/server.key"}, "mqtt.cert_file", "go together"),
        ({**CA, "cert_file": "pki/server.crt", "key_file": "pki/missing.key"}, "mqtt.key_file", "cannot be read"),
        ({**CA, "cert_file": "pki/server.crt", "key_file": "pki/misnamed.key"}, "mqtt.cert_file", "no usable PEM"),
        ({"ca_file": "pki/ca.crt"}, "mqtt.ca_file", "needs mqtt.tls = true"),
        ({"tls": 1}, "mqtt.tls", "true or false"),
        ({**CA, "tls_insecure": True}, "mqtt.tls_insecure", "unknown key"),  # hostname checks stay on
    ],
)
def test_tls_config_errors_name_the_key(
    tmp_path: Path, certs: Certs, mqtt: dict[str, object], key: str, reason: str
) -> None:
    if mqtt.get("ca_file") == "pki/server.csr":  # exists but cannot be read; root reads every file
        if os.geteuid() == 0:
            pytest.skip("root reads every file")
        os.chmod(tmp_path / "pki" / "server.csr", 0)
    with pytest.raises(ConfigError) as info:
        _parse(tmp_path, mqtt)
    assert info.value.key == key
    assert reason in info.value.reason
    assert key in str(info.value)
