"""The broker's security files in one directory (``/etc/mosquitto/anju`` by default), and the operations on them.

Layout (deploy/mosquitto/secure.conf points Mosquitto at these paths)::

    ca.crt ca.key            the CA (ca.key never leaves this directory; mode 0600)
    server.crt server.key    the broker's TLS certificate for the names the gateways dial
    crl.pem                  the client certificates revoked so far (empty at first)
    passwd acl               Mosquitto's password file and ACL file
    hub.secret               the hub's broker password (both hub users share it); give it to ANJU_MQTT_PASSWORD_FILE
    provision.secret         the password of provisioning's own broker user (marks a revoked gateway offline)
    clients/<user>.crt       the client certificate issued to a gateway, kept to revoke it by serial
    revoked                  serial, time and user of each revoked certificate (the CRL is rendered from it)
    provision.log            one JSON line per operation: when, who (the Unix user), what

The password file and the client certificates are the truth about which gateways exist; the ACL and the CRL are
rendered from them on every change, so they never disagree. Every file is replaced atomically (a broker reload in
the middle of an operation reads the old file or the new one, never half of one), and a lock file makes two
operations at once wait for each other.
"""

import contextlib
import datetime as dt
import fcntl
import getpass
import grp
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from hub.provision.acl import (
    HUB_USERS,
    PROVISION_USER,
    GatewayUser,
    community_hub_users,
    parse_community_hub,
    parse_gateway_user,
    render_acl,
)
from hub.provision.passwd import PasswdError, hash_secret, new_secret, parse_passwd, render_passwd
from hub.provision.pki import Issued, issue_ca, issue_leaf, render_crl

__all__ = ["BrokerDir", "GatewayCredentials", "ProvisionError"]

_SECRET_MODE = 0o600
_BROKER_MODE = 0o640
"""Files the broker reads (it runs as its own user, in ``group``)."""
_PUBLIC_MODE = 0o644


class ProvisionError(Exception):
    """What stopped an operation, naming the gateway or file; nothing was changed when it is raised."""


@dataclass(frozen=True, slots=True)
class GatewayCredentials:
    """What a gateway needs to connect: its user, its secret and, with client certificates, its own cert."""

    user: GatewayUser
    secret: str
    ca_pem: bytes
    client: Issued | None = None


@dataclass(slots=True)
class InitReport:
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    names_before: list[str] | None = None
    """The server certificate's names before a renewal (None: there was none, or it was kept)."""


class BrokerDir:
    """The directory and its operations. ``group``: the broker's group, which may read what the broker reads
    (None: leave the files in the caller's group — a developer's machine, where Mosquitto runs as the caller)."""

    def __init__(self, path: Path, *, group: str | None = None) -> None:
        self.path = path
        self._gid = None if group is None else self._group_id(group)

    @staticmethod
    def _group_id(group: str) -> int:
        """A group name, or a number (the broker's group inside a container image, unknown on this machine)."""
        if group.isdigit():
            return int(group)
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            raise ProvisionError(f"group {group!r} does not exist (the broker's group, e.g. mosquitto)") from None

    # --- files -------------------------------------------------------------------------------------------------

    def _file(self, name: str) -> Path:
        return self.path / name

    def _read(self, name: str) -> bytes:
        try:
            return self._file(name).read_bytes()
        except FileNotFoundError:
            raise ProvisionError(f"{self._file(name)} is missing: run `anju-hub provision init` first") from None

    def _write(self, name: str, data: bytes, mode: int) -> None:
        """Replace ``name`` atomically with ``data``, owned by ``group`` when it is readable by the broker."""
        target = self._file(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, mode)
            if self._gid is not None and mode & 0o040:
                os.chown(temp, -1, self._gid)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not self.path.is_dir():
            raise ProvisionError(f"{self.path} is not a directory: run `anju-hub provision init --dir {self.path}`")
        with open(self._file(".lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _log(self, operation: str, **details: object) -> None:
        entry = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "by": getpass.getuser(), "op": operation}
        with open(self._file("provision.log"), "a", encoding="utf-8") as log:
            log.write(json.dumps(entry | details, ensure_ascii=False) + "\n")
        os.chmod(self._file("provision.log"), _SECRET_MODE)

    # --- state -------------------------------------------------------------------------------------------------

    def users(self) -> dict[str, str]:
        """The password file: user name to hash."""
        try:
            return parse_passwd(self._read("passwd").decode("utf-8"), source=self._file("passwd"))
        except PasswdError as exc:
            raise ProvisionError(str(exc)) from None

    def gateways(self) -> list[GatewayUser]:
        """The provisioned gateways, by user name."""
        found = (parse_gateway_user(name) for name in self.users())
        return sorted((user for user in found if user is not None), key=lambda u: u.name)

    def _ca(self) -> Issued:
        return Issued(self._read("ca.crt"), self._read("ca.key"))

    def _revoked(self) -> dict[int, dt.datetime]:
        path = self._file("revoked")
        if not path.exists():
            return {}
        revoked: dict[int, dt.datetime] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            serial, at, _user = line.split("\t")
            revoked[int(serial)] = dt.datetime.fromisoformat(at)
        return revoked

    def _client_cert_path(self, user: GatewayUser) -> Path:
        return self._file(f"clients/{user.name}.crt")

    def _save(self, users: dict[str, str], revoked: dict[int, dt.datetime], revoked_users: dict[int, str]) -> None:
        """Write the password file, then the ACL and CRL rendered from the same state."""
        gateways = [u for u in (parse_gateway_user(name) for name in users) if u is not None]
        hubs = [c for c in (parse_community_hub(name) for name in users) if c is not None]
        self._write("passwd", render_passwd(users).encode(), _BROKER_MODE)
        self._write("acl", render_acl(gateways, hubs).encode(), _BROKER_MODE)
        if revoked_users:
            old = self._file("revoked").read_text(encoding="utf-8") if self._file("revoked").exists() else ""
            lines = [f"{serial}\t{revoked[serial].isoformat()}\t{user}\n" for serial, user in revoked_users.items()]
            self._write("revoked", (old + "".join(lines)).encode(), _SECRET_MODE)
        self._write("crl.pem", render_crl(self._ca(), revoked), _BROKER_MODE)

    # --- operations ----------------------------------------------------------------------------------------------

    def init(self, server_hosts: list[str]) -> InitReport:
        """Create what is missing: the CA, a server certificate for ``server_hosts``, the hub's users, an empty
        password file, ACL and CRL. What exists is kept, except a server certificate whose names differ from
        ``server_hosts``, which is issued anew (the same CA: gateways need nothing new). Idempotent."""
        if not server_hosts:
            raise ProvisionError("give at least one --host: the name or address gateways dial to reach the broker")
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o750)
        if self._gid is not None:
            os.chown(self.path, -1, self._gid)
        report = InitReport()
        with self._locked():
            if not self._file("ca.key").exists():
                ca = issue_ca(f"Anju MQTT CA ({server_hosts[0]})")
                self._write("ca.key", ca.key_pem, _SECRET_MODE)
                self._write("ca.crt", ca.cert_pem, _PUBLIC_MODE)
                report.created.append("ca.crt")
            else:
                report.kept.append("ca.crt")
            before = _server_hosts(self._file("server.crt"))
            if before != sorted(server_hosts):
                report.names_before = before
                server = issue_leaf(self._ca(), server_hosts[0], server_hosts=server_hosts)
                self._write("server.key", server.key_pem, _BROKER_MODE)
                self._write("server.crt", server.cert_pem, _PUBLIC_MODE)
                report.created.append("server.crt")
            else:
                report.kept.append("server.crt")
            users = self.users() if self._file("passwd").exists() else {}
            if not self._file("hub.secret").exists() or any(name not in users for name in HUB_USERS):
                secret = new_secret()
                users.update({name: hash_secret(secret) for name in HUB_USERS})
                self._write("hub.secret", secret.encode() + b"\n", _SECRET_MODE)
                report.created.append("hub.secret")
            else:
                report.kept.append("hub.secret")
            if not self._file("provision.secret").exists() or PROVISION_USER not in users:
                secret = new_secret()
                users[PROVISION_USER] = hash_secret(secret)
                self._write("provision.secret", secret.encode() + b"\n", _SECRET_MODE)
                report.created.append("provision.secret")
            else:
                report.kept.append("provision.secret")
            if report.created or not all(self._file(name).exists() for name in ("passwd", "acl", "crl.pem")):
                self._save(users, self._revoked(), {})
            self._log("init", hosts=server_hosts, created=report.created)
        return report

    def community_hub(self, community: str) -> tuple[str, Path]:
        """New broker users (``hub.{community}``, ``hub.{community}-urgent``) with a new secret for the hub of one
        community on a shared broker, or a new secret for them (the old stops working at the reload); returns the
        main user and the secret's file (``hub-{community}.secret``, mode 0600)."""
        main, urgent = community_hub_users(community)
        with self._locked():
            users = self.users()
            for other in filter(None, map(parse_community_hub, users)):
                if other != community and (urgent in community_hub_users(other) or main in community_hub_users(other)):
                    raise ProvisionError(f"the hub users of {community!r} would be those of community {other!r}")
            secret = new_secret()
            users[main] = users[urgent] = hash_secret(secret)
            name = f"hub-{community}.secret"
            self._write(name, secret.encode() + b"\n", _SECRET_MODE)
            self._save(users, self._revoked(), {})
            self._log("hub", community=community, users=[main, urgent])
        return main, self._file(name)

    def add_gateway(self, user: GatewayUser, *, client_cert: bool = False) -> GatewayCredentials:
        """New credentials for a gateway that has none; ProvisionError when it has (``rotate`` replaces them)."""
        with self._locked():
            users = self.users()
            if user.name in users:
                raise ProvisionError(f"gateway {user.community}/{user.gateway} is provisioned already: use rotate")
            credentials = self._issue(user, users, client_cert=client_cert)
            self._save(users, self._revoked(), {})
            self._keep_cert(credentials)
            self._log("gateway", user=user.name, client_cert=client_cert)
        return credentials

    def rotate(self, user: GatewayUser) -> GatewayCredentials:
        """A new secret (and a new client certificate, the old one revoked, when it had one); the old ones stop
        working once the broker reloads, and a session still open with them is closed by the reload."""
        with self._locked():
            users = self.users()
            if user.name not in users:
                raise ProvisionError(f"gateway {user.community}/{user.gateway} is not provisioned: use gateway")
            revoked, revoked_users = self._revoke_cert(user)
            credentials = self._issue(user, users, client_cert=bool(revoked_users))
            self._save(users, revoked, revoked_users)
            self._keep_cert(credentials)
            self._log("rotate", user=user.name, revoked_serials=list(revoked_users))
        return credentials

    def provision_secret(self) -> str:
        return self._read("provision.secret").decode().strip()

    def server_names(self) -> list[str]:
        """The names (DNS names and addresses) in the broker's certificate, sorted."""
        names = _server_hosts(self._file("server.crt"))
        if names is None:
            raise ProvisionError(f"{self._file('server.crt')} is missing: run `anju-hub provision init` first")
        return names

    def has_client_cert(self, user: GatewayUser) -> bool:
        return self._client_cert_path(user).exists()

    def revoke(self, user: GatewayUser) -> bool:
        """Remove the gateway's user (and revoke its client certificate): refused at its next connection, and its
        open session closed, once the broker reloads. True when a client certificate was revoked (on the CRL,
        which Mosquitto reads only when it starts)."""
        with self._locked():
            users = self.users()
            if user.name not in users:
                raise ProvisionError(f"gateway {user.community}/{user.gateway} is not provisioned")
            del users[user.name]
            revoked, revoked_users = self._revoke_cert(user)
            self._save(users, revoked, revoked_users)
            self._client_cert_path(user).unlink(missing_ok=True)  # revoked: kept only in `revoked` and the CRL
            self._log("revoke", user=user.name, revoked_serials=list(revoked_users))
        return bool(revoked_users)

    def _issue(self, user: GatewayUser, users: dict[str, str], *, client_cert: bool) -> GatewayCredentials:
        secret = new_secret()
        users[user.name] = hash_secret(secret)
        ca = self._ca()
        client = issue_leaf(ca, user.name) if client_cert else None
        return GatewayCredentials(user, secret, ca.cert_pem, client)

    def _keep_cert(self, credentials: GatewayCredentials) -> None:
        """Keep the issued client certificate (after the state is saved), to revoke it by serial later."""
        if credentials.client is not None:
            self._write(f"clients/{credentials.user.name}.crt", credentials.client.cert_pem, _PUBLIC_MODE)

    def _revoke_cert(self, user: GatewayUser) -> tuple[dict[int, dt.datetime], dict[int, str]]:
        """The revoked serials with the gateway's client certificate added (if it has one), and that addition."""
        revoked = self._revoked()
        path = self._client_cert_path(user)
        if not path.exists():
            return revoked, {}
        serial = x509.load_pem_x509_certificate(path.read_bytes()).serial_number
        revoked[serial] = dt.datetime.now(dt.UTC)
        return revoked, {serial: user.name}


def _server_hosts(path: Path) -> list[str] | None:
    """The names in an existing server certificate, sorted; None when there is none."""
    if not path.exists():
        return None
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted([*names.get_values_for_type(x509.DNSName), *map(str, names.get_values_for_type(x509.IPAddress))])
