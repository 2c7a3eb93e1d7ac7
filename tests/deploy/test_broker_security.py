"""deploy/mosquitto/secure.conf and client-certs.conf on a real Mosquitto, with users, ACL and certificates made by
``anju-hub provision``: each refusal the issue lists is tried, and revoke and rotate take effect at a reload.

The broker runs these very files, only their paths moved to a temporary directory and their listeners to free
loopback ports. As root, Mosquitto drops to its own user, so the test also proves the files' owners and modes let
it read what it needs (the directory lies directly under /tmp: pytest's own temporary directories are 0700).
"""

import asyncio
import contextlib
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from edge.config import load_config
from edge.session import MqttSession
from hub.cli import main as hub_cli
from hub.demo.processes import free_port
from hub.provision.pki import issue_ca, issue_leaf
from protocol import Ack, Batch, Reading, decode_ack, encode_batch
from protocol.session import GatewayState, decode_state, encode_state
from protocol.topics import Channel, topic
from tests.conftest import mosquitto_running
from tests.deploy.probe import ACCEPTED, NOT_AUTHORIZED, ConnectRefused, Probe, probe
from tests.hub.harness import T0, running_hub

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ("secure.conf", "client-certs.conf")
C = "hongxing"
GRANTED_QOS1 = 1
ONLINE = encode_state(GatewayState("online", 5, 1_796_000_000.0))
BAD_CREDENTIALS = (0x86, 0x87)  # MQTT 5: bad user name or password; not authorized


@dataclass
class Secured:
    """A running broker with two provisioned gateways: gw-b1 (password) and gw-b2 (password and certificate)."""

    dir: Path
    run_dir: Path
    """The broker's pid file: a directory of its own that Mosquitto, once it dropped to its user, can write."""
    tls_port: int
    plain_port: int
    mtls_port: int
    bundles: dict[str, Path]
    deployment: Path
    broker: contextlib.ExitStack
    """The running Mosquitto (``mosquitto_running``), closed to stop it."""

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def hub_secret(self) -> str:
        return (self.dir / "hub.secret").read_text(encoding="utf-8").strip()

    def secret(self, gateway: str) -> str:
        return (self.bundles[gateway] / "mqtt.secret").read_text(encoding="utf-8").strip()

    def provision(self, *args: str) -> int:
        return hub_cli(["provision", *args, "--dir", str(self.dir)])

    def reloading(self) -> list[str]:
        return ["--broker-pid-file", str(self.run_dir / "mosquitto.pid")]

    def revoking(self) -> list[str]:
        """``reloading`` and where revoke marks the gateway offline: this broker's loopback listener."""
        return [*self.reloading(), "--broker-port", str(self.plain_port)]

    def start(self) -> None:
        ports = (self.tls_port, self.plain_port, self.mtls_port)
        self.broker.enter_context(mosquitto_running(self.dir / "mosquitto.conf", *ports))

    def restart(self) -> None:
        self.broker.close()
        self.start()


def _broker_config(directory: Path, run_dir: Path, tls_port: int, plain_port: int, mtls_port: int) -> str:
    text = "\n".join((REPO / "deploy" / "mosquitto" / name).read_text(encoding="utf-8") for name in CONFIGS)
    text = text.replace("/etc/mosquitto/anju", str(directory))
    text = text.replace("listener 8883\n", f"listener {tls_port} 127.0.0.1\n")
    text = text.replace("listener 1883 127.0.0.1\n", f"listener {plain_port} 127.0.0.1\n")
    text = text.replace("listener 8884\n", f"listener {mtls_port} 127.0.0.1\n")
    assert text.count("127.0.0.1") == 3, "every listener of the shipped files was moved to loopback"
    return text + f"\npid_file {run_dir}/mosquitto.pid\npersistence false\nlog_dest stderr\n"


@pytest.fixture
def secured(tmp_path: Path, demo_deployment: Path) -> Iterator[Secured]:
    directory = Path(tempfile.mkdtemp(prefix="anju-broker-", dir="/tmp"))
    run_dir = Path(tempfile.mkdtemp(prefix="anju-broker-run-", dir="/tmp"))
    run_dir.chmod(0o777)
    try:
        assert hub_cli(["provision", "init", "--dir", str(directory), "--host", "localhost"]) == 0
        tls_port, plain_port, mtls_port = free_port(), free_port(), free_port()
        bundles = {}
        for gateway, extra in (("gw-b1", []), ("gw-b2", ["--client-cert"])):
            bundles[gateway] = tmp_path / gateway
            args = ["--community", C, "--id", gateway, "--config", str(demo_deployment), "--out", str(bundles[gateway])]
            broker = ["--mqtt-host", "localhost", "--mqtt-port", str(tls_port), "--no-reload"]
            assert hub_cli(["provision", "gateway", "--dir", str(directory), *args, *broker, *extra]) == 0
        config = _broker_config(directory, run_dir, tls_port, plain_port, mtls_port)
        (directory / "mosquitto.conf").write_text(config, encoding="utf-8")
        secured = Secured(
            directory, run_dir, tls_port, plain_port, mtls_port, bundles, demo_deployment, contextlib.ExitStack()
        )
        with secured.broker:
            secured.start()
            yield secured
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def _gateway(
    s: Secured, gateway: str, *, password: str | None = None, client_id: str = ""
) -> AbstractContextManager[Probe]:
    """``gateway`` logged in over TLS with its provisioned secret (or ``password``)."""
    secret = s.secret(gateway) if password is None else password
    return probe(s.tls_port, user=f"gw.{C}.{gateway}", password=secret, ca=s.ca, client_id=client_id)


def _hub(s: Secured) -> AbstractContextManager[Probe]:
    """The hub's user on the loopback listener."""
    return probe(s.plain_port, user="anju-hub", password=s.hub_secret)


def test_a_gateway_publishes_under_its_own_prefix_only(secured: Secured) -> None:
    with _hub(secured) as hub, _gateway(secured, "gw-b1") as gw:
        assert hub.subscribe("anju/v1/#") == GRANTED_QOS1
        assert gw.publish(topic(C, "gw-b1", Channel.DATA), b"mine") in ACCEPTED
        assert hub.next_message() == (topic(C, "gw-b1", Channel.DATA), b"mine")
        refused = [
            topic(C, "gw-b2", Channel.DATA),  # as another gateway
            topic(C, "gw-b2", Channel.ALARM),
            topic("other", "gw-b1", Channel.DATA),  # its own id in another community
            topic(C, "gw-b1", Channel.ACK),  # acks and commands are the hub's
            topic(C, "gw-b2", Channel.CMD, "rebirth"),
            topic(C, "gw-b1", Channel.CMD, "config"),
            "anju/v1/hub/state",  # the hub's state
            "elsewhere",
        ]
        for name in refused:
            assert gw.publish(name, b"forged") == NOT_AUTHORIZED, name
        assert gw.publish(topic(C, "gw-b1", Channel.ALARM), b"marker") in ACCEPTED
        # Messages from one publisher arrive in order: nothing refused slipped through before the marker.
        assert hub.next_message() == (topic(C, "gw-b1", Channel.ALARM), b"marker")
        for channel in (Channel.STATE, Channel.HEALTH):
            assert gw.publish(topic(C, "gw-b1", channel)) in ACCEPTED
        assert gw.publish(topic(C, "gw-b1", Channel.REPLY, "ping")) in ACCEPTED


def test_a_gateway_reads_only_its_own_acks_and_commands(secured: Secured) -> None:
    """Mosquitto 2.0 grants a subscription to another gateway's topics (SUBACK QoS 1) and then checks read access
    on every message it would deliver: so what is tried here is that nothing of another gateway's ever arrives."""
    with _hub(secured) as hub, _gateway(secured, "gw-b1") as gw:
        for name in (topic(C, "gw-b1", Channel.ACK), f"anju/v1/{C}/gw-b1/cmd/+", "anju/v1/hub/state"):
            assert gw.subscribe(name) == GRANTED_QOS1, name
        for name in (topic(C, "gw-b2", Channel.ACK), f"anju/v1/{C}/gw-b2/cmd/+", "anju/v1/#", "anju/v1/+/+/data"):
            assert gw.subscribe(name) in (GRANTED_QOS1, NOT_AUTHORIZED), name
        others = (
            topic(C, "gw-b2", Channel.ACK),
            topic(C, "gw-b2", Channel.CMD, "rebirth"),
            topic(C, "gw-b2", Channel.DATA),
            topic("other", "gw-b1", Channel.CMD, "config"),
        )
        for name in others:
            assert hub.publish(name, b"theirs") in ACCEPTED, name  # the hub may publish anywhere under anju/v1
        assert hub.publish(topic(C, "gw-b1", Channel.CMD, "rebirth"), b"mine") in ACCEPTED
        assert hub.publish(topic(C, "gw-b1", Channel.ACK), b"last") in ACCEPTED
        # One publisher's messages arrive in order, once per matching subscription: all up to the last are its own.
        arrived = [gw.next_message()]
        while arrived[-1] != (topic(C, "gw-b1", Channel.ACK), b"last"):
            arrived.append(gw.next_message())
        assert {name for name, _ in arrived} == {
            topic(C, "gw-b1", Channel.CMD, "rebirth"),
            topic(C, "gw-b1", Channel.ACK),
        }


def test_no_anonymous_no_wrong_secret_no_plain_text_on_the_tls_port(secured: Secured, tmp_path: Path) -> None:
    for port, ca in ((secured.tls_port, secured.ca), (secured.plain_port, None)):
        with pytest.raises(ConnectRefused) as anonymous, probe(port, user=None, ca=ca):
            pass
        assert anonymous.value.code in BAD_CREDENTIALS
    with (
        pytest.raises(ConnectRefused) as wrong,
        probe(secured.tls_port, user="gw.hongxing.gw-b1", password="x" * 43, ca=secured.ca),
    ):
        pass
    assert wrong.value.code in BAD_CREDENTIALS
    with pytest.raises(ConnectRefused) as swapped, _gateway(secured, "gw-b1", password=secured.secret("gw-b2")):
        pass
    assert swapped.value.code in BAD_CREDENTIALS
    with (
        pytest.raises(ConnectRefused) as plain,
        probe(secured.tls_port, user="gw.hongxing.gw-b1", password=secured.secret("gw-b1")),
    ):
        pass
    assert plain.value.code is None
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(issue_ca("someone else").cert_pem)
    with (
        pytest.raises(ConnectRefused) as impostor,
        probe(secured.tls_port, user="gw.hongxing.gw-b1", password=secured.secret("gw-b1"), ca=other_ca),
    ):
        pass
    assert impostor.value.code is None and "certificate" in str(impostor.value).lower()


def test_a_gateway_cannot_take_over_another_gateways_session(secured: Secured) -> None:
    """Without ``use_username_as_clientid`` Mosquitto would close gw-b2's connection for the newcomer (tried)."""
    with (
        _hub(secured) as hub,
        _gateway(secured, "gw-b2", client_id="gw.hongxing.gw-b2") as victim,
        _gateway(secured, "gw-b1", client_id="gw.hongxing.gw-b2") as intruder,
    ):
        assert intruder.publish(topic(C, "gw-b1", Channel.DATA)) in ACCEPTED
        assert hub.subscribe("anju/v1/#") == GRANTED_QOS1
        assert victim.publish(topic(C, "gw-b2", Channel.DATA), b"still here") in ACCEPTED
        assert hub.next_message() == (topic(C, "gw-b2", Channel.DATA), b"still here")
        assert not victim.disconnected.is_set()


def _closed(event_set: object, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if event_set():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_revoke_closes_the_open_session_at_the_reload_and_refuses_the_next(secured: Secured) -> None:
    with _gateway(secured, "gw-b1") as revoked, _gateway(secured, "gw-b2") as other:
        assert revoked.publish(topic(C, "gw-b1", Channel.STATE), ONLINE, retain=True) in ACCEPTED
        assert secured.provision("revoke", "--community", C, "--id", "gw-b1", *secured.revoking()) == 0
        assert _closed(revoked.disconnected.is_set), "the revoked gateway's session stayed open after the reload"
        assert other.publish(topic(C, "gw-b2", Channel.DATA)) in ACCEPTED
        assert not other.disconnected.is_set()
    with pytest.raises(ConnectRefused) as again, _gateway(secured, "gw-b1"):
        pass
    assert again.value.code in BAD_CREDENTIALS
    assert secured.provision("revoke", "--community", C, "--id", "gw-b1", *secured.revoking()) == 2
    # Its Will was refused with its user; revoke replaced its retained `online` by `offline`, same session.
    with _hub(secured) as hub:
        assert hub.subscribe(topic(C, "gw-b1", Channel.STATE)) == GRANTED_QOS1
        name, payload = hub.next_message()
    assert name == topic(C, "gw-b1", Channel.STATE)
    state = decode_state(payload)
    assert isinstance(state, GatewayState) and (state.status, state.session) == ("offline", 5)


def test_rotate_replaces_the_secret_without_a_restart(secured: Secured, tmp_path: Path) -> None:
    old = secured.secret("gw-b1")
    with _gateway(secured, "gw-b1") as before:
        args = ["--community", C, "--id", "gw-b1", "--config", str(secured.deployment), "--mqtt-host", "localhost"]
        assert secured.provision("rotate", *args, "--out", str(tmp_path / "new"), *secured.reloading()) == 0
        assert _closed(before.disconnected.is_set)
    secured.bundles["gw-b1"] = tmp_path / "new"
    assert secured.secret("gw-b1") != old
    with pytest.raises(ConnectRefused), _gateway(secured, "gw-b1", password=old):
        pass
    with _gateway(secured, "gw-b1") as after:
        assert after.publish(topic(C, "gw-b1", Channel.DATA)) in ACCEPTED


def test_client_certificate_logs_in_without_a_password_and_is_revoked(secured: Secured, tmp_path: Path) -> None:
    bundle = secured.bundles["gw-b2"]
    cert = (bundle / "client.crt", bundle / "client.key")
    with probe(secured.mtls_port, user=None, ca=secured.ca, cert=cert) as gw:
        assert gw.publish(topic(C, "gw-b2", Channel.DATA)) in ACCEPTED
        assert gw.publish(topic(C, "gw-b1", Channel.DATA)) == NOT_AUTHORIZED  # the CN's ACL applies
    with (
        pytest.raises(ConnectRefused),
        probe(secured.mtls_port, user="gw.hongxing.gw-b2", password=secured.secret("gw-b2"), ca=secured.ca),
    ):
        pass  # no certificate: refused whatever the password
    stranger_ca = issue_ca("someone else")
    stranger = issue_leaf(stranger_ca, "gw.hongxing.gw-b2")
    (tmp_path / "s.crt").write_bytes(stranger.cert_pem)
    (tmp_path / "s.key").write_bytes(stranger.key_pem)
    with (
        pytest.raises(ConnectRefused),
        probe(secured.mtls_port, user=None, ca=secured.ca, cert=(tmp_path / "s.crt", tmp_path / "s.key")),
    ):
        pass  # the right name, signed by another CA
    kept = tmp_path / "kept"
    kept.mkdir()
    for path in cert:
        shutil.copy(path, kept / path.name)
    cert = (kept / "client.crt", kept / "client.key")
    with probe(secured.mtls_port, user=None, ca=secured.ca, cert=cert) as open_session:
        assert secured.provision("revoke", "--community", C, "--id", "gw-b2", *secured.revoking()) == 0
        # At the reload its user and ACL entries are gone: whatever it sends is refused from then on.
        assert _closed(
            lambda: (
                open_session.disconnected.is_set()
                or open_session.publish(topic(C, "gw-b2", Channel.DATA)) == NOT_AUTHORIZED
            )
        )
    secured.restart()  # the CRL is read at start (client-certs.conf)
    with pytest.raises(ConnectRefused), probe(secured.mtls_port, user=None, ca=secured.ca, cert=cert):
        pass


def test_the_hub_and_a_provisioned_edge_talk_through_the_secured_broker(secured: Secured, tmp_path: Path) -> None:
    """The hub logs in as its two users over TLS, the edge's own MQTT session logs in with the files provisioning
    wrote for it, and a batch the gateway publishes is stored and acked through the ACL."""
    config = load_config(secured.bundles["gw-b1"] / "edge.yaml")
    assert config.mqtt.tls and config.mqtt.username == "gw.hongxing.gw-b1" and config.mqtt.port == secured.tls_port

    async def scenario() -> None:
        hub_login = {
            "mqtt_host": "localhost",
            "mqtt_tls": "true",
            "mqtt_ca_file": str(secured.ca),
            "mqtt_username": "anju-hub",
            "mqtt_password": secured.hub_secret,
        }
        data_dir = tmp_path / "hub" / "data"
        data_dir.parent.mkdir()
        async with running_hub(
            mosquitto=secured.tls_port, deployment=secured.deployment, data_dir=data_dir, **hub_login
        ) as hub:
            session = MqttSession.from_config(config, session=7)
            session.start()
            try:
                deadline = time.monotonic() + 15
                while not session.connected:
                    assert time.monotonic() < deadline, "the edge did not log in with its provisioned files"
                    await asyncio.sleep(0.05)
            finally:
                session.stop()
            password = secured.secret("gw-b1")
            context = ssl.create_default_context(cafile=str(secured.ca))
            async with aiomqtt.Client(
                "localhost", secured.tls_port, username=config.mqtt.username, password=password, tls_context=context
            ) as gw:
                await gw.subscribe(topic(C, "gw-b1", Channel.ACK), qos=1)
                batch = Batch(C, "gw-b1", 7, 1, (Reading("gas-b1-101", T0, 1.0, "%LEL"),))
                await gw.publish(topic(C, "gw-b1", Channel.DATA), encode_batch(batch), qos=1)
                async with asyncio.timeout(15):
                    message = await anext(aiter(gw.messages))
                assert isinstance(message.payload, bytes)
                ack = decode_ack(message.payload)
                assert isinstance(ack, Ack) and (ack.session, ack.seq) == (7, 1)
            assert await hub.metric("anju_readings_stored_total") == 1

    asyncio.run(scenario())


def test_an_edge_picks_up_a_rotated_secret_as_soon_as_it_is_in_place(secured: Secured, tmp_path: Path) -> None:
    """After ``rotate`` the broker refuses the old secret; once the new one is copied over the gateway's
    ``mqtt.secret`` the edge logs in with it at its next check (not only after the 90 s stall rebuild)."""
    config = load_config(secured.bundles["gw-b1"] / "edge.yaml")
    assert config.mqtt.username and config.mqtt.password_file and config.mqtt.ca_file
    session = MqttSession(
        community=C,
        gateway="gw-b1",
        session=3,
        host="localhost",
        port=secured.tls_port,
        username=config.mqtt.username,
        password_file=config.mqtt.password_file,
        tls=True,
        ca_file=config.mqtt.ca_file,
        reconnect_min_s=0.2,
        reconnect_max_s=0.5,
        stall_after_s=600.0,  # the stall rebuild must not be what brings it back
    )

    async def wait_for(connected: bool) -> None:
        deadline = time.monotonic() + 15
        while session.connected != connected:
            assert time.monotonic() < deadline, f"the edge's session did not become connected={connected}"
            await asyncio.to_thread(session.check)  # what the agent's supervise() does every 5 s
            await asyncio.sleep(0.1)

    async def scenario() -> None:
        session.start()
        try:
            await wait_for(True)
            args = ["--community", C, "--id", "gw-b1", "--config", str(secured.deployment), "--mqtt-host", "localhost"]
            assert secured.provision("rotate", *args, "--out", str(tmp_path / "new"), *secured.reloading()) == 0
            await wait_for(False)
            await asyncio.sleep(1.0)  # refused a few times with the old secret
            assert await asyncio.to_thread(session.check) is None, "the old secret is in place: nothing to rebuild"
            shutil.copy(tmp_path / "new" / "mqtt.secret", secured.bundles["gw-b1"] / "mqtt.secret")
            await wait_for(True)
            assert session.client_rebuilds == 1
        finally:
            session.stop()

    asyncio.run(scenario())


def test_hubs_of_two_communities_share_the_broker_each_on_its_own_topics(secured: Secured, tmp_path: Path) -> None:
    """``provision hub``: each community's hub has its own users, so neither takes over the other's session (the
    client id is the user name) and neither can touch the other's gateways."""
    secrets = {}
    for community in (C, "other"):
        assert secured.provision("hub", "--community", community, *secured.reloading()) == 0
        secrets[community] = (secured.dir / f"hub-{community}.secret").read_text(encoding="utf-8").strip()
    ours = probe(secured.plain_port, user=f"hub.{C}", password=secrets[C])
    theirs = probe(secured.plain_port, user="hub.other", password=secrets["other"])
    with ours as hub, theirs as other, _gateway(secured, "gw-b1") as gw:
        assert hub.subscribe(f"anju/v1/{C}/#") == GRANTED_QOS1
        assert other.subscribe("anju/v1/other/#") == GRANTED_QOS1
        assert hub.publish(topic("other", "gw-b1", Channel.CMD, "rebirth")) == NOT_AUTHORIZED
        assert hub.publish("anju/v1/hub/state", b"{}", retain=False) in ACCEPTED
        assert gw.publish(topic(C, "gw-b1", Channel.DATA), b"ours") in ACCEPTED
        assert hub.next_message() == (topic(C, "gw-b1", Channel.DATA), b"ours")
        assert not hub.disconnected.is_set() and not other.disconnected.is_set()

    async def scenario() -> None:  # the real hub logs in both its sessions as hub.hongxing and hub.hongxing-urgent
        login = {"mqtt_username": f"hub.{C}", "mqtt_password": secrets[C]}
        data_dir = tmp_path / "hub" / "data"
        data_dir.parent.mkdir()
        async with running_hub(
            mosquitto=secured.plain_port, deployment=secured.deployment, data_dir=data_dir, **login
        ) as running:
            assert (await running.api.get("/api/v1/health")).json()["mqtt_connected"]

    asyncio.run(scenario())
