"""``anju-hub``: run the hub, validate a deployment file, render gateway configs, run the demo."""

import argparse
import datetime as dt
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from hub.backup import BackupError, BackupReport, backup, restore
from hub.cli_provision import add_provision_command
from hub.cli_rules import add_rules_command
from hub.cli_users import add_users_command
from hub.cli_worker import add_worker_commands
from hub.district.cli import add_district_commands

if TYPE_CHECKING:
    from fastapi import FastAPI

    from hub.settings import ServerSettings

__all__ = ["main"]

log = logging.getLogger("anju.hub")


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _log_level(text: str) -> str:
    """``--log-level`` (or ANJU_LOG_LEVEL): one of ``LOG_LEVELS``, in any case."""
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level: give one of {', '.join(LOG_LEVELS)}")
    return text.lower()


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the demo and the logs


def settings_problem(exc: ValidationError) -> str:
    """Name each bad setting and why, never its value: a rejected token or password must not reach a log."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        parts.append(f"{name}: {error['msg']}")
    return "invalid settings — " + "; ".join(parts)


GRACEFUL_STOP_S = 3
"""On stop, how long requests under way may finish before they are cancelled (s): live streams never finish."""


def _serve(args: argparse.Namespace) -> int:
    from hub.api import create_app
    from hub.config import ConfigError, build_directory, load_deployment
    from hub.settings import HubSettings

    overrides = hub_options(args)
    try:
        settings = HubSettings(**overrides)  # type: ignore[arg-type]
        deployment = load_deployment(settings.deployment)  # fail here, with line numbers, not inside the server
        build_directory(deployment, settings.deployment.parent)
        app = create_app(settings)
    except ValidationError as exc:
        sys.stderr.write(f"anju-hub: {settings_problem(exc)}\n")
        return 2
    except (ValueError, ConfigError) as exc:
        sys.stderr.write(f"anju-hub: {exc}\n")
        return 2
    return run_server(app, settings)


def run_server(app: "FastAPI", settings: "ServerSettings") -> int:
    """Serve ``app`` at the settings' address until SIGINT/SIGTERM (uvicorn handles both); 0 when it stopped."""
    import uvicorn

    log.info("API on http://%s:%d/api/v1 (OpenAPI at /docs)", settings.http_host, settings.http_port)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_STOP_S,
    )
    uvicorn.Server(config).run()
    return 0


_SERVE_EPILOG = """Every option can also come from the environment: ANJU_DEPLOYMENT, ANJU_DATA_DIR, ANJU_MQTT_HOST,
ANJU_MQTT_PORT, ANJU_MQTT_USERNAME, ANJU_MQTT_PASSWORD_FILE (or ANJU_MQTT_PASSWORD), ANJU_MQTT_CLIENT_ID,
ANJU_MQTT_TLS, ANJU_MQTT_CA_FILE (ANJU_MQTT_CERT_FILE and ANJU_MQTT_KEY_FILE for a client certificate),
ANJU_HTTP_HOST, ANJU_HTTP_PORT, ANJU_API_TOKEN_FILE (or ANJU_API_TOKEN), ANJU_TIME_CHECK_INTERVAL_S,
ANJU_ALERTS_DATABASE_FILE (or ANJU_ALERTS_DATABASE), ANJU_LEASE_TERM_S, ANJU_LEASE_HOLDER,
ANJU_API_MAX_BODY_BYTES. Flags win over
the environment. Secrets are best given as files; they are never printed, not even when rejected."""


def _check_config(args: argparse.Namespace) -> int:
    from hub.config import ConfigError, build_directory, load_deployment

    try:
        deployment = load_deployment(args.file)
        build_directory(deployment, Path(args.file).parent)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    sensors = sum(len(g.sensors) for g in deployment.gateways)
    sys.stdout.write(
        f"{args.file}: OK — community {deployment.community.id} ({deployment.community.name}), "
        f"{len(deployment.grids)} grids, {len(deployment.people)} people, "
        f"{len(deployment.gateways)} gateways, {sensors} sensors\n"
    )
    return 0


def _edge_config(args: argparse.Namespace) -> int:
    from hub.config import ConfigError, load_deployment
    from hub.edge_config import EdgeTarget, render_edge_config

    try:
        deployment = load_deployment(args.config, check_secrets=False)
        text = render_edge_config(
            deployment,
            args.gateway,
            EdgeTarget(mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port, outbox=Path(args.outbox)),
        )
    except (ConfigError, KeyError) as exc:
        sys.stderr.write(f"anju-hub: {exc}\n")
        return 2
    sys.stdout.write(text)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from hub.demo.orchestrator import run_demo

    return run_demo(run_dir=Path(args.run_dir), duration_s=args.duration, broker=args.broker)


def _score(args: argparse.Namespace) -> int:
    from hub.detection.score_csv import ScoreInputError, score_file

    try:
        rows = score_file(Path(args.input), Path(args.output), explain_column=args.explain)
    except (OSError, ScoreInputError) as exc:
        sys.stderr.write(f"anju-hub score: {exc}\n")
        return 2
    log.info("scored %d readings into %s", rows, args.output)
    return 0


def _database_url(file: str, command: str) -> str | None:
    """The postgresql:// URL in ``file``, or None after saying what is wrong with it."""
    from hub.settings import database_url

    try:
        return database_url(Path(file))
    except ValueError as exc:
        sys.stderr.write(f"anju-hub {command}: --database-file {exc}\n")
        return None


def _audit_verify(args: argparse.Namespace) -> int:
    from alerts.sqldb import DatabaseError
    from alerts.store import AlertStore
    from hub.settings import alerts_schema

    if args.database_file and not args.alerts:
        if not args.community:
            sys.stderr.write("anju-hub audit verify: --database-file needs --community (whose audit log)\n")
            return 2
        url = _database_url(args.database_file, "audit verify")
        if url is None:
            return 2
        try:
            store = AlertStore(url, schema=alerts_schema(args.community))
        except DatabaseError as exc:
            sys.stderr.write(f"anju-hub audit verify: {exc}\n")
            return 2
    else:
        path = Path(args.alerts) if args.alerts else Path(args.data_dir) / "alerts.sqlite3"
        if not path.is_file():
            sys.stderr.write(f"anju-hub audit verify: no alert database at {path}\n")
            return 2
        store = AlertStore(path)
    with store:
        report = store.verify_audit()
    if report.intact:
        sys.stdout.write(
            f"audit log intact: {report.chained} chained rows ({report.unchained} from before the chain), "
            f"head {report.head}\n"
        )
        return 0
    sys.stderr.write(
        f"audit log BROKEN at row seq {report.broken_at}: {report.reason}; {report.chained} rows before it verified, "
        f"last good hash {report.head}\n"
    )
    return 1


def _leases(args: argparse.Namespace) -> int:
    import psycopg

    from hub.lease import leases

    url = _database_url(args.database_file, "leases")
    if url is None:
        return 2
    try:
        found = leases(url)
    except psycopg.Error as exc:
        sys.stderr.write(f"anju-hub leases: {str(exc).strip().splitlines()[0]}\n")
        return 2
    now = dt.datetime.now(dt.UTC)
    for lease in found:
        left = (lease.expires_at - now).total_seconds()  # by this machine's clock; held or not by the server's
        state = f"held, {max(left, 0.0):.1f} s left" if lease.live else f"free (ran out {max(-left, 0.0):.1f} s ago)"
        sys.stdout.write(f"{lease.community}\t{lease.holder}\tepoch {lease.epoch}\t{state}\n")
    return 0


def _backup(args: argparse.Namespace) -> int:
    return _copy_data("backup", "backed up", lambda: backup(Path(args.data_dir), Path(args.to)))


def _restore(args: argparse.Namespace) -> int:
    return _copy_data("restore", "restored", lambda: restore(Path(args.source), Path(args.data_dir)))


def _copy_data(command: str, done: str, work: Callable[[], BackupReport]) -> int:
    """Run a backup or restore; say what it copied (exit 0) or what stopped it (exit 2, naming the file)."""
    try:
        report = work()
    except (BackupError, OSError, sqlite3.Error) as exc:
        sys.stderr.write(f"anju-hub {command}: {exc}\n")
        return 2
    rows = ", ".join(f"{name} {sum(tables.values()):,} rows" for name, tables in report.databases.items())
    sys.stdout.write(f"{done} {report.files} files ({report.bytes:,} bytes) into {report.directory}: {rows}\n")
    return 0


def hub_options(args: argparse.Namespace) -> dict[str, object]:
    """The settings given as flags (those of ``add_hub_options``), by setting name; flags win over the
    environment."""
    from hub.settings import HubSettings

    return {name: value for name, value in vars(args).items() if name in HubSettings.model_fields and value is not None}


def add_hub_options(parser: argparse.ArgumentParser, *, per_community: bool = True) -> None:
    """The options of a hub (``serve``). Without ``per_community``, those that differ between the communities of one
    worker are left out: the deployment, data dir, HTTP port, MQTT client id and lease holder come from the shard
    map (hub/shards.py)."""
    add = parser.add_argument
    if per_community:
        add("--config", dest="deployment", help="deployment YAML file (or ANJU_DEPLOYMENT)")
        add("--data-dir", dest="data_dir", help="where the SQLite stores live (default ./data)")
    add("--mqtt-host", dest="mqtt_host")
    add("--mqtt-port", dest="mqtt_port", type=int)
    add("--mqtt-username", dest="mqtt_username")
    add("--mqtt-password-file", dest="mqtt_password_file", help="file holding the broker password")
    if per_community:
        add(
            "--mqtt-client-id",
            dest="mqtt_client_id",
            help="the MQTT client id (default anju-hub-{community}: distinct per hub on a shared broker)",
        )
    add(
        "--mqtt-tls",
        dest="mqtt_tls",
        action="store_true",
        default=None,
        help="TLS to the broker (give its TLS port too: --mqtt-port 8883)",
    )
    add("--mqtt-ca-file", dest="mqtt_ca_file", help="the CA that signed the broker's certificate")
    add("--http-host", dest="http_host")
    if per_community:
        add("--http-port", dest="http_port", type=int)
    add("--api-token-file", dest="api_token_file", help="file holding the API bearer token")
    add(
        "--time-check-interval",
        dest="time_check_interval_s",
        type=float,
        help="seconds between cmd/time clock checks of each online gateway (default 600; one also on each birth)",
    )
    add(
        "--alerts-database-file",
        dest="alerts_database_file",
        help="file holding a postgresql:// URL: alert state in PostgreSQL, shared with standby hubs of the community "
        "(default: alerts.sqlite3 in the data dir); the hub then waits as a standby until it holds the lease",
    )
    add(
        "--lease-term",
        dest="lease_term_s",
        type=float,
        help="seconds a lease renewal holds, the takeover bound less ~2 s (default 15; with --alerts-database-file)",
    )
    if per_community:
        add("--lease-holder", dest="lease_holder", help="this hub's name in the lease table (default host:pid:random)")
    add(
        "--api-max-body-bytes",
        dest="api_max_body_bytes",
        type=int,
        help="largest API request body taken, bytes (default 1 MiB; larger ones get 413)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anju-hub", description="Anju 安居 hub: ingest, storage, detection, alerts, API."
    )
    parser.add_argument(
        "--log-level", type=_log_level, default=os.environ.get("ANJU_LOG_LEVEL", "info"),
        help="debug, info, warning or error (default: ANJU_LOG_LEVEL, else info)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the hub (MQTT ingest + API) until SIGINT/SIGTERM",
        epilog=_SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_hub_options(serve)
    serve.set_defaults(handler=_serve)

    check = commands.add_parser("check-config", help="validate a deployment file; exit 2 naming every problem")
    check.add_argument("file")
    check.set_defaults(handler=_check_config)

    edge = commands.add_parser("edge-config", help="print the edge.yaml of one gateway of the deployment")
    edge.add_argument("--config", required=True, help="deployment YAML file")
    edge.add_argument("--gateway", required=True)
    edge.add_argument("--mqtt-host", default="127.0.0.1")
    edge.add_argument("--mqtt-port", type=int, default=1883)
    edge.add_argument("--outbox", required=True, help="path of the gateway's SQLite outbox")
    edge.set_defaults(handler=_edge_config)

    demo = commands.add_parser("demo", help="run the whole system on embedded defaults (make demo)")
    demo.add_argument("--run-dir", default="run/demo")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    demo.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "embedded"),
        default="auto",
        help="auto: Mosquitto when installed, else the embedded trial broker",
    )
    demo.set_defaults(handler=_demo)

    score = commands.add_parser(
        "score",
        help="replay the live anomaly detector over a timestamp,value CSV; write timestamp,value,anomaly_score",
    )
    score.add_argument(
        "--input",
        required=True,
        help="CSV with a header row timestamp,value (ISO 8601 times, all with a UTC offset or all without one: "
        "a time without one is wall-clock time, read as UTC)",
    )
    score.add_argument("--output", required=True, help="CSV to write: timestamp,value,anomaly_score")
    score.add_argument("--explain", action="store_true", help="add a column saying why (Chinese / English)")
    score.set_defaults(handler=_score)
    audit = commands.add_parser("audit", help="the alerts' hash-chained audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="check every link of the audit log's hash chain; print the head hash (exit 1 naming the first bad row)",
    )
    verify.add_argument("--data-dir", default=os.environ.get("ANJU_DATA_DIR", "data"), help="the hub's data dir")
    verify.add_argument("--alerts", help="the alert database file itself (default DATA_DIR/alerts.sqlite3)")
    verify.add_argument(
        "--database-file",
        default=os.environ.get("ANJU_ALERTS_DATABASE_FILE"),
        help="file holding the postgresql:// URL of shared alert state (with --community) instead of a SQLite file",
    )
    verify.add_argument("--community", help="the community whose audit log to verify (with --database-file)")
    verify.set_defaults(handler=_audit_verify)
    lease_parser = commands.add_parser(
        "leases", help="which hub holds each community's lease in the shared PostgreSQL, and until when"
    )
    lease_parser.add_argument(
        "--database-file",
        default=os.environ.get("ANJU_ALERTS_DATABASE_FILE"),
        required="ANJU_ALERTS_DATABASE_FILE" not in os.environ,
        help="file holding the postgresql:// URL (or ANJU_ALERTS_DATABASE_FILE)",
    )
    lease_parser.set_defaults(handler=_leases)
    backup_parser = commands.add_parser(
        "backup",
        help="copy the data dir while the hub runs (SQLite online backup) into a new directory, with a manifest",
    )
    backup_parser.add_argument("--data-dir", default=os.environ.get("ANJU_DATA_DIR", "data"), help="the hub's data dir")
    backup_parser.add_argument("--to", required=True, help="a new (or empty) directory for the backup")
    backup_parser.set_defaults(handler=_backup)
    restore_parser = commands.add_parser(
        "restore", help="check a backup against its manifest, then copy it into a new data dir (the hub stopped)"
    )
    restore_parser.add_argument("--from", dest="source", required=True, help="the backup directory")
    restore_parser.add_argument("--data-dir", required=True, help="the data dir to restore into (missing or empty)")
    restore_parser.set_defaults(handler=_restore)
    add_rules_command(commands)  # `rules test` (hub/cli_rules.py)
    add_users_command(commands)  # `users add|passwd|role|disable|enable|list` (hub/cli_users.py)
    add_provision_command(commands)  # `provision init|gateway|rotate|revoke|list` (hub/cli_provision.py)
    add_worker_commands(commands)  # `worker`, `shards check` (hub/cli_worker.py)
    add_district_commands(commands)  # `district serve` (hub/district/cli.py)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
