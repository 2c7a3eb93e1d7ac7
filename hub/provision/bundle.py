"""What a provisioned gateway takes home: its ``edge.yaml`` and the files it points at, in one new directory.

::

    edge.yaml      rendered from the deployment file (hub/edge_config.py) with the broker's TLS address and user
    mqtt.secret    the gateway's broker password (mode 0600)
    ca.crt         the CA that signed the broker's certificate (the gateway checks the broker with it)
    client.crt client.key   the gateway's own certificate, when provisioned with one

Paths in ``edge.yaml`` are relative, so the directory can be copied as it is to ``/etc/anju-edge`` (deploy/pi
install.sh does). The directory must be new or empty: a secret is never written over another one silently.
"""

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from hub.config import Deployment
from hub.edge_config import EdgeTarget, render_edge_config
from hub.provision.broker_dir import GatewayCredentials, ProvisionError

__all__ = ["BrokerAddress", "reload_broker", "write_bundle"]


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """How the gateway reaches the broker: a name in the server certificate (``provision init --host``)."""

    host: str
    port: int = 8883


def write_bundle(
    out: Path,
    deployment: Deployment,
    credentials: GatewayCredentials,
    broker: BrokerAddress,
    *,
    outbox: Path,
) -> list[Path]:
    """Write the gateway's files into ``out`` (created, mode 0700); returns the paths written."""
    user = credentials.user
    if deployment.community.id != user.community:
        raise ProvisionError(
            f"community {user.community!r} is not the deployment's ({deployment.community.id!r}): a gateway is "
            "provisioned with the deployment file of its own community"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ProvisionError(f"{out} exists and is not an empty directory: give a new --out")
    client = credentials.client
    target = EdgeTarget(
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        outbox=outbox,
        mqtt_username=user.name,
        mqtt_password_file=Path("mqtt.secret"),
        tls_ca_file=Path("ca.crt"),
        tls_cert_file=Path("client.crt") if client else None,
        tls_key_file=Path("client.key") if client else None,
    )
    try:
        text = render_edge_config(deployment, user.gateway, target, generated_by="anju-hub provision")
    except KeyError as exc:
        raise ProvisionError(str(exc.args[0])) from None
    files: dict[str, tuple[bytes, int]] = {
        "edge.yaml": (text.encode("utf-8"), 0o640),
        "mqtt.secret": (credentials.secret.encode() + b"\n", 0o600),
        "ca.crt": (credentials.ca_pem, 0o644),
    }
    if client is not None:
        files |= {"client.crt": (client.cert_pem, 0o644), "client.key": (client.key_pem, 0o600)}
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    written = []
    for name, (data, mode) in files.items():
        path = out / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        written.append(path)
    return written


def reload_broker(pid_file: Path) -> int:
    """SIGHUP to the broker whose pid ``pid_file`` holds: Mosquitto then rereads its password and ACL files and
    closes the sessions of users no longer allowed. Returns the pid; ProvisionError saying why it could not."""
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        raise ProvisionError(
            f"no broker pid file at {pid_file}: is Mosquitto running (pid_file in its config)?"
        ) from None
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"cannot read a pid from {pid_file}: {exc}") from None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ProvisionError(f"{pid_file} names pid {pid}, which is not running: a stale pid file?") from None
    except PermissionError:
        raise ProvisionError(f"not allowed to signal the broker (pid {pid}): run as root or its user") from None
    return pid
