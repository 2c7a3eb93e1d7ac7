"""``anju-hub provision`` without a broker: what it writes, and what it refuses (naming why, changing nothing).

The broker's side — that Mosquitto takes these files and enforces them — is tests/deploy/test_broker_security.py.
"""

import hashlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from hub.cli import main as hub_cli
from hub.provision.acl import gateway_user, parse_gateway_user, render_acl
from hub.provision.broker_dir import BrokerDir, ProvisionError
from hub.provision.passwd import PasswdError, hash_secret, parse_passwd, verify

C = "hongxing"


def snapshot(directory: Path) -> dict[str, str]:
    """Every file's SHA-256 under ``directory`` (the lock file aside): to show a refusal changed nothing."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


@pytest.fixture
def broker(tmp_path: Path) -> Path:
    directory = tmp_path / "anju"
    assert (
        hub_cli(["provision", "init", "--dir", str(directory), "--host", "localhost", "--group", str(os.getgid())]) == 0
    )
    return directory


def gateway(broker: Path, deployment: Path, out: Path, gw: str = "gw-b1", *extra: str) -> int:
    args = ["--community", C, "--id", gw, "--config", str(deployment), "--mqtt-host", "localhost", "--out", str(out)]
    return hub_cli(["provision", "gateway", "--dir", str(broker), *args, "--no-reload", *extra])


def test_the_hash_is_mosquittos_own_format() -> None:
    stored = hash_secret("s3cret", salt=b"\x00" * 12)
    assert stored.startswith("$7$101$AAAAAAAAAAAAAAAA$") and len(stored.split("$")[4]) == 88  # 64 bytes, base64
    assert verify("s3cret", stored) and not verify("s3cret!", stored)


def test_a_password_file_line_that_is_not_a_pbkdf2_hash_is_refused_naming_the_line() -> None:
    with pytest.raises(PasswdError, match=r"line 2: user 'gw\.x\.y' has no \$7\$"):
        parse_passwd("a:$7$101$AAAA$BBBB\ngw.x.y:plaintext\n", source="passwd")
    with pytest.raises(PasswdError, match="line 1: not 'username:hash'"):
        parse_passwd("no colon here\n", source="passwd")
    with pytest.raises(PasswdError, match="appears twice"):
        parse_passwd("a:$7$1$A$B\na:$7$1$A$B\n")


def test_gateway_user_names_split_one_way_only() -> None:
    user = gateway_user("a-b", "c")
    assert user.name == "gw.a-b.c" and parse_gateway_user(user.name) == user
    assert parse_gateway_user("anju-hub") is None and parse_gateway_user("gw.a.b.c") is None
    with pytest.raises(ValueError, match="gateway id 'C/1'"):
        gateway_user("a", "C/1")
    acl = render_acl([user])
    assert "user gw.a-b.c\ntopic write anju/v1/a-b/c/data\n" in acl and "topic read anju/v1/a-b/c/cmd/+\n" in acl


def test_init_is_idempotent_and_renews_only_a_server_certificate_for_other_names(broker: Path) -> None:
    before = snapshot(broker)
    assert hub_cli(["provision", "init", "--dir", str(broker), "--host", "localhost", "--group", str(os.getgid())]) == 0
    after = snapshot(broker)
    assert {k: v for k, v in after.items() if k != "provision.log"} == {
        k: v for k, v in before.items() if k != "provision.log"
    }
    report = BrokerDir(broker).init(["localhost", "broker.example.org"])
    assert report.created == ["server.crt"] and "ca.crt" in report.kept and "hub.secret" in report.kept
    cert = x509.load_pem_x509_certificate((broker / "server.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == ["broker.example.org", "localhost"]
    assert snapshot(broker)["ca.key"] == before["ca.key"], "the same CA: gateways need nothing new"
    assert (broker / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (broker / "passwd").stat().st_mode & 0o777 == 0o640


def test_a_gateway_gets_a_secret_only_its_hash_is_kept(broker: Path, demo_deployment: Path, tmp_path: Path) -> None:
    out = tmp_path / "gw-b1"
    assert gateway(broker, demo_deployment, out) == 0
    secret = (out / "mqtt.secret").read_text(encoding="utf-8").strip()
    users = BrokerDir(broker).users()
    assert verify(secret, users["gw.hongxing.gw-b1"]) and secret not in (broker / "passwd").read_text()
    assert (out / "mqtt.secret").stat().st_mode & 0o777 == 0o600
    assert (out / "ca.crt").read_bytes() == (broker / "ca.crt").read_bytes()
    assert [user.name for user in BrokerDir(broker).gateways()] == ["gw.hongxing.gw-b1"]
    log = (broker / "provision.log").read_text(encoding="utf-8")
    assert '"op": "gateway"' in log and secret not in log


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--community", "other"], "community 'other' is not the deployment's ('hongxing')"),
        (["--id", "gw-b9"], "gateway 'gw-b9' is not in"),
        (["--id", "GW/1"], "gateway id 'GW/1' is not [a-z0-9-]{1,64}"),
    ],
)
def test_a_gateway_the_deployment_does_not_list_is_refused_and_nothing_changes(
    broker: Path,
    demo_deployment: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    before = snapshot(broker)
    base = {"--community": C, "--id": "gw-b1"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [item for pair in base.items() for item in pair]
    common = ["--config", str(demo_deployment), "--mqtt-host", "localhost", "--out", str(tmp_path / "out")]
    assert hub_cli(["provision", "gateway", "--dir", str(broker), *flat, *common, "--no-reload"]) == 2
    assert message in capsys.readouterr().err
    assert snapshot(broker) == before and not (tmp_path / "out").exists()


def test_twice_is_refused_and_a_used_out_dir_is_never_written_over(
    broker: Path, demo_deployment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gateway(broker, demo_deployment, tmp_path / "a") == 0
    before = snapshot(broker)
    assert gateway(broker, demo_deployment, tmp_path / "b") == 2
    assert "provisioned already: use rotate" in capsys.readouterr().err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "edge.yaml").write_text("mine\n", encoding="utf-8")
    assert gateway(broker, demo_deployment, tmp_path / "used", "gw-b2") == 2
    assert "is not an empty directory" in capsys.readouterr().err
    assert (tmp_path / "used" / "edge.yaml").read_text(encoding="utf-8") == "mine\n"
    assert snapshot(broker) == before


def test_rotate_and_revoke_a_client_certificate_put_its_serial_on_the_crl(
    broker: Path, demo_deployment: Path, tmp_path: Path
) -> None:
    assert gateway(broker, demo_deployment, tmp_path / "one", "gw-b2", "--client-cert") == 0
    first = x509.load_pem_x509_certificate((tmp_path / "one" / "client.crt").read_bytes())
    assert first.subject.rfc4514_string().startswith("CN=gw.hongxing.gw-b2")
    args = ["--community", C, "--id", "gw-b2", "--config", str(demo_deployment), "--mqtt-host", "localhost"]
    assert (
        hub_cli(["provision", "rotate", "--dir", str(broker), *args, "--out", str(tmp_path / "two"), "--no-reload"])
        == 0
    )
    second = x509.load_pem_x509_certificate((tmp_path / "two" / "client.crt").read_bytes())
    crl = x509.load_pem_x509_crl((broker / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(first.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(second.serial_number) is None
    ca = x509.load_pem_x509_certificate((broker / "ca.crt").read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert hub_cli(["provision", "revoke", "--dir", str(broker), "--community", C, "--id", "gw-b2", "--no-reload"]) == 0
    crl = x509.load_pem_x509_crl((broker / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(second.serial_number) is not None
    assert "gw.hongxing.gw-b2" not in (broker / "passwd").read_text() + (broker / "acl").read_text()


def test_a_broker_that_cannot_be_reloaded_says_so_with_exit_3(
    broker: Path, demo_deployment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gateway(broker, demo_deployment, tmp_path / "a") == 0
    missing = ["--broker-pid-file", str(tmp_path / "none.pid")]
    assert hub_cli(["provision", "revoke", "--dir", str(broker), "--community", C, "--id", "gw-b1", *missing]) == 3
    err = capsys.readouterr().err
    assert "revoked gw.hongxing.gw-b1, but the broker was NOT reloaded: no broker pid file at" in err
    assert "systemctl reload mosquitto" in err
    stale = tmp_path / "stale.pid"
    child = subprocess.Popen(["true"])
    child.wait()
    stale.write_text(f"{child.pid}\n", encoding="ascii")
    assert (
        gateway(broker, demo_deployment, tmp_path / "b", "gw-b2", "--broker-pid-file", str(stale)) == 0
    )  # --no-reload
    args = ["--community", C, "--id", "gw-b2", "--broker-pid-file", str(stale)]
    assert hub_cli(["provision", "revoke", "--dir", str(broker), *args]) == 3
    assert "which is not running: a stale pid file?" in capsys.readouterr().err


def test_a_reload_is_a_sighup_to_the_pid_in_the_file(broker: Path, tmp_path: Path, demo_deployment: Path) -> None:
    """A stand-in broker that records the SIGHUP (the real one is in test_broker_security.py)."""
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGHUP, lambda *_: sys.exit(42))\n"
        "print('up', flush=True)\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen(["python3", "-c", script], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"up\n"
        (tmp_path / "broker.pid").write_text(f"{child.pid}\n", encoding="ascii")
        assert gateway(broker, demo_deployment, tmp_path / "a") == 0
        args = ["--community", C, "--id", "gw-b1", "--broker-pid-file", str(tmp_path / "broker.pid"), "--keep-state"]
        assert hub_cli(["provision", "revoke", "--dir", str(broker), *args]) == 0
        assert child.wait(timeout=10) == 42
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_an_operation_on_a_directory_never_initialised_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="provision init"):
        BrokerDir(tmp_path / "nowhere").revoke(gateway_user(C, "gw-b1"))


def test_the_gateway_must_dial_a_name_in_the_brokers_certificate(
    broker: Path, demo_deployment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(broker)
    args = ["--community", C, "--id", "gw-b1", "--config", str(demo_deployment), "--out", str(tmp_path / "a")]
    assert (
        hub_cli(["provision", "gateway", "--dir", str(broker), *args, "--mqtt-host", "broker.lan", "--no-reload"]) == 2
    )
    err = capsys.readouterr().err
    assert "--mqtt-host broker.lan is not a name in the broker's certificate (localhost)" in err
    assert "provision init" in err and snapshot(broker) == before


def test_a_client_certificate_gateway_dials_the_certificate_listener_and_its_revocation_asks_for_a_restart(
    broker: Path, demo_deployment: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gateway(broker, demo_deployment, tmp_path / "a", "gw-b2", "--client-cert") == 0
    edge = (tmp_path / "a" / "edge.yaml").read_text(encoding="utf-8")
    assert "port: 8884" in edge and "cert_file: client.crt" in edge and "generated by anju-hub provision" in edge
    assert gateway(broker, demo_deployment, tmp_path / "b", "gw-b1") == 0
    assert "port: 8883" in (tmp_path / "b" / "edge.yaml").read_text(encoding="utf-8")
    capsys.readouterr()
    assert hub_cli(["provision", "revoke", "--dir", str(broker), "--community", C, "--id", "gw-b2", "--no-reload"]) == 0
    assert "restart the broker" in capsys.readouterr().out
    assert hub_cli(["provision", "revoke", "--dir", str(broker), "--community", C, "--id", "gw-b1", "--no-reload"]) == 0
    assert "restart" not in capsys.readouterr().out


def test_init_with_fewer_names_says_which_names_gateways_can_no_longer_dial(
    broker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert hub_cli(["provision", "init", "--dir", str(broker), "--host", "127.0.0.2", "--group", str(os.getgid())]) == 0
    out = capsys.readouterr().out
    assert "replaced server.crt: its names are now 127.0.0.2 (were localhost)" in out
    assert "gateways that dial localhost will refuse the broker now" in out
