"""``anju-hub provision init|gateway|rotate|revoke|list``: the broker's users, ACL and certificates
(hub/provision/), run on the broker's machine as root (or the user that owns its files).

``gateway`` and ``rotate`` write the gateway's files into a new directory to copy to the gateway; ``gateway``,
``rotate`` and ``revoke`` then reload the broker (SIGHUP), so the change takes effect without a restart: a revoked
or rotated gateway's open session is closed at once. Exit status: 0 done, 2 refused (nothing changed), 3 done but
the broker was not reloaded (the message says what to run).
"""

import argparse
import grp
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hub.provision import DEFAULT_DIR
from hub.provision.acl import gateway_user

if TYPE_CHECKING:  # the rest imports `cryptography`: only when a provision command runs
    from hub.provision.acl import GatewayUser
    from hub.provision.broker_dir import BrokerDir, GatewayCredentials

__all__ = ["add_provision_command"]

DEFAULT_PID_FILE = Path("/run/mosquitto/mosquitto.pid")
"""Where Debian's mosquitto.conf has the broker write its pid."""
TLS_PORT = 8883
"""deploy/mosquitto/secure.conf's listener for gateways with a password."""
MTLS_PORT = 8884
"""deploy/mosquitto/client-certs.conf's listener for gateways with a client certificate."""


def _default_group() -> str | None:
    """The broker's group when running as root on a machine that has one; else the caller's own group."""
    if os.geteuid() != 0:
        return None
    try:
        grp.getgrnam("mosquitto")
    except KeyError:
        return None
    return "mosquitto"


def _broker_dir(args: argparse.Namespace) -> "BrokerDir":
    from hub.provision.broker_dir import BrokerDir

    group = args.group if args.group is not None else _default_group()
    return BrokerDir(Path(args.dir), group=group or None)


def _reload(args: argparse.Namespace, what: str) -> int:
    from hub.provision.broker_dir import ProvisionError
    from hub.provision.bundle import reload_broker

    if args.no_reload:
        sys.stdout.write(f"{what}; broker not reloaded (--no-reload): it applies at the broker's next reload\n")
        return 0
    try:
        pid = reload_broker(Path(args.broker_pid_file))
    except ProvisionError as exc:
        sys.stderr.write(
            f"anju-hub provision: {what}, but the broker was NOT reloaded: {exc}\n"
            "  reload it yourself: systemctl reload mosquitto (or: docker compose kill -s HUP mosquitto)\n"
        )
        return 3
    sys.stdout.write(f"{what}; broker reloaded (SIGHUP to pid {pid})\n")
    return 0


CRL_RESTART = (
    "; its client certificate is on crl.pem, which Mosquitto reads only when it starts: restart the broker "
    "(systemctl restart mosquitto) for the certificate listener to refuse it"
)


def _credentials_out(args: argparse.Namespace, credentials: "GatewayCredentials") -> str:
    from hub.config import load_deployment
    from hub.provision.bundle import BrokerAddress, write_bundle

    deployment = load_deployment(args.config, check_secrets=False)
    port = args.mqtt_port or (MTLS_PORT if credentials.client is not None else TLS_PORT)
    written = write_bundle(
        Path(args.out),
        deployment,
        credentials,
        BrokerAddress(args.mqtt_host, port),
        outbox=Path(args.outbox),
    )
    return f"wrote {', '.join(path.name for path in written)} into {args.out} (copy them to the gateway)"


def _mark_offline(args: argparse.Namespace, broker: "BrokerDir", user: "GatewayUser") -> None:
    """Replace the revoked gateway's retained ``online`` (hub/provision/state.py); a failure is only a warning."""
    from hub.provision.broker_dir import ProvisionError
    from hub.provision.state import BrokerLogin, mark_offline

    try:
        ca = broker.path / "ca.crt" if args.broker_tls else None
        done = mark_offline(BrokerLogin(args.broker_host, args.broker_port, broker.provision_secret(), ca), user)
    except ProvisionError as exc:
        sys.stderr.write(
            f"anju-hub provision revoke: warning: {exc}; its retained state may still say online (the hub then "
            "reports it silent, heartbeat-lost, instead of offline)\n"
        )
        return
    sys.stdout.write(f"{done}\n")


def _check_gateway(args: argparse.Namespace, broker: "BrokerDir") -> None:
    """Refuse before changing anything: the deployment must list the gateway, the broker's certificate must name
    --mqtt-host (or the gateway's TLS check would fail), and --out must be new."""
    from hub.config import load_deployment
    from hub.provision.broker_dir import ProvisionError

    names = broker.server_names()
    if args.mqtt_host not in names:
        raise ProvisionError(
            f"--mqtt-host {args.mqtt_host} is not a name in the broker's certificate ({', '.join(names)}), so the "
            f"gateway would refuse the broker: give one of those, or add it with "
            f"`anju-hub provision init --dir {broker.path} --host {args.mqtt_host}` and every --host it has now"
        )
    deployment = load_deployment(args.config, check_secrets=False)
    if deployment.community.id != args.community:
        raise ProvisionError(f"community {args.community!r} is not the deployment's ({deployment.community.id!r})")
    if args.id not in {gateway.id for gateway in deployment.gateways}:
        raise ProvisionError(f"gateway {args.id!r} is not in {args.config}: add it to the deployment first")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ProvisionError(f"{out} exists and is not an empty directory: give a new --out")


def _run(args: argparse.Namespace) -> int:
    from hub.config import ConfigError
    from hub.provision.broker_dir import ProvisionError

    command = args.provision_command
    try:
        broker = _broker_dir(args)
        if command == "init":
            report = broker.init(args.host)
            created = ", ".join(report.created) or "nothing (all there already)"
            sys.stdout.write(f"{broker.path}: created {created}\n")
            if report.names_before is not None:
                dropped = sorted(set(report.names_before) - set(args.host))
                sys.stdout.write(
                    f"  replaced server.crt: its names are now {', '.join(sorted(args.host))} "
                    f"(were {', '.join(report.names_before)}); reload the broker to serve it\n"
                )
                if dropped:
                    sys.stdout.write(f"  gateways that dial {', '.join(dropped)} will refuse the broker now\n")
            if "hub.secret" in report.created:
                sys.stdout.write(f"  the hub's broker password is in {broker.path / 'hub.secret'}\n")
            return 0
        if command == "hub":
            main, secret_file = broker.community_hub(args.community)
            what = (
                f"hub users {main} and {main}-urgent, password in {secret_file}: give the hub of {args.community} "
                f"ANJU_MQTT_USERNAME={main} and that file as ANJU_MQTT_PASSWORD_FILE"
            )
            return _reload(args, what)
        if command == "list":
            for user in broker.gateways():
                sys.stdout.write(f"{user.community}\t{user.gateway}\t{user.name}\n")
            return 0
        user = gateway_user(args.community, args.id)
        if command == "revoke":
            certificate = broker.revoke(user)
            status = _reload(args, f"revoked {user.name}" + (CRL_RESTART if certificate else ""))
            if status == 0 and not args.no_reload and not args.keep_state:
                _mark_offline(args, broker, user)
            return status
        _check_gateway(args, broker)
        had_cert = command == "rotate" and broker.has_client_cert(user)
        credentials = (
            broker.add_gateway(user, client_cert=args.client_cert) if command == "gateway" else broker.rotate(user)
        )
        done = "provisioned" if command == "gateway" else "rotated"
        what = f"{done} {user.name}; {_credentials_out(args, credentials)}" + (CRL_RESTART if had_cert else "")
        return _reload(args, what)
    except (ProvisionError, ConfigError, ValueError, OSError) as exc:
        sys.stderr.write(f"anju-hub provision {command}: {exc}\n")
        return 2


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="the broker's security files (default %(default)s)")
    parser.add_argument(
        "--group",
        help="the broker's group (name or number), which may read its files (default: mosquitto when root, else yours)",
    )


def _reloading(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker-pid-file",
        default=str(DEFAULT_PID_FILE),
        help="the broker's pid file, to reload it (default %(default)s)",
    )
    parser.add_argument("--no-reload", action="store_true", help="only write the files (reload the broker yourself)")


def _gateway_args(parser: argparse.ArgumentParser, *, issues: bool) -> None:
    parser.add_argument("--community", required=True, help="the community id (the deployment's)")
    parser.add_argument("--id", required=True, help="the gateway id, as in the deployment file")
    if issues:
        parser.add_argument("--config", required=True, help="the community's deployment file (lists the gateway)")
        parser.add_argument("--out", required=True, help="a new directory for the gateway's files")
        parser.add_argument("--mqtt-host", required=True, help="the broker name the gateway dials (in its certificate)")
        parser.add_argument(
            "--mqtt-port",
            type=int,
            help=f"the broker port the gateway dials (default {TLS_PORT}; {MTLS_PORT} with a client certificate)",
        )
        parser.add_argument(
            "--outbox",
            default="/var/lib/anju-edge/outbox.sqlite3",
            help="the gateway's outbox path in its edge.yaml (default %(default)s)",
        )


def add_provision_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    provision = commands.add_parser("provision", help="the broker's gateway users, ACL and TLS certificates")
    actions = provision.add_subparsers(dest="provision_command", required=True)
    init = actions.add_parser("init", help="create the CA, the broker's certificate and the hub's users (idempotent)")
    _common(init)
    init.add_argument(
        "--host", action="append", required=True, help="a name or address gateways dial (repeat for more)"
    )
    gateway = actions.add_parser("gateway", help="new credentials for a gateway, and its files")
    _common(gateway)
    _gateway_args(gateway, issues=True)
    gateway.add_argument("--client-cert", action="store_true", help="also issue a client certificate (mutual TLS)")
    _reloading(gateway)
    rotate = actions.add_parser("rotate", help="replace a gateway's secret (and certificate); the old stop working")
    _common(rotate)
    _gateway_args(rotate, issues=True)
    _reloading(rotate)
    revoke = actions.add_parser("revoke", help="remove a gateway's access; its open session is closed")
    _common(revoke)
    _gateway_args(revoke, issues=False)
    _reloading(revoke)
    revoke.add_argument(
        "--broker-host", default="127.0.0.1", help="where to mark the gateway offline (default %(default)s)"
    )
    revoke.add_argument("--broker-port", type=int, default=1883, help="(default %(default)s: the loopback listener)")
    revoke.add_argument("--broker-tls", action="store_true", help="TLS to --broker-port, checked with the dir's CA")
    revoke.add_argument(
        "--keep-state", action="store_true", help="leave the gateway's retained state as it is (not marked offline)"
    )
    hub = actions.add_parser(
        "hub",
        help="broker users for the hub of one community on a shared broker (again: a new password for them)",
    )
    _common(hub)
    hub.add_argument("--community", required=True, help="the community id the hub serves")
    _reloading(hub)
    listing = actions.add_parser("list", help="the provisioned gateways")
    _common(listing)
    for parser in (init, gateway, rotate, revoke, hub, listing):
        parser.set_defaults(handler=_run)
