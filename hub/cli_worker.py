"""``anju-hub worker`` and ``anju-hub shards check``: hub workers run the communities a shard map gives them
(hub/shards.py, hub/worker.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from pydantic import ValidationError

__all__ = ["add_worker_commands"]

_WORKER_EPILOG = """The worker's hubs take the hub's settings from the environment (ANJU_*, see `anju-hub serve --help`)
or from these flags; ANJU_ALERTS_DATABASE_FILE (or --alerts-database-file) is required, since the communities'
leases live there, and ANJU_MQTT_CLIENT_ID must not be set (each community's hub has its own, anju-hub-{community}).
The deployment, data dir, HTTP port and lease holder of each community come from the shard map."""


def add_worker_commands(commands: Any) -> None:
    """Add ``worker`` and ``shards`` to the ``anju-hub`` subcommands."""
    from hub.cli import add_hub_options

    worker = commands.add_parser(
        "worker",
        help="run a hub for every community the shard map gives this worker, and take over a dead worker's",
        epilog=_WORKER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument(
        "--shard-map", default=os.environ.get("ANJU_SHARD_MAP"), help="shard map YAML (or ANJU_SHARD_MAP)"
    )
    worker.add_argument(
        "--name", default=os.environ.get("ANJU_WORKER_NAME"), help="this worker in the shard map (or ANJU_WORKER_NAME)"
    )
    worker.add_argument(
        "--hub-watchdog",
        type=float,
        default=30.0,
        help="seconds a hub may send no watchdog ping before the worker kills and restarts it (default 30)",
    )
    add_hub_options(worker, per_community=False)
    worker.set_defaults(handler=_worker)

    shards = commands.add_parser("shards", help="the shard map: which worker runs which community")
    actions = shards.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate a shard map and its deployment files; print who runs what")
    check.add_argument("file")
    check.set_defaults(handler=_check)
    proxy = actions.add_parser(
        "proxy",
        help="print an nginx configuration giving each community one address, {community}.DOMAIN, wherever it runs",
    )
    proxy.add_argument("file")
    proxy.add_argument("--domain", required=True, help="each community is served as {community}.DOMAIN")
    proxy.add_argument("--listen", default="80", help="nginx's listen parameters (default 80; e.g. '443 ssl')")
    proxy.set_defaults(handler=_proxy)


def _fail(message: str) -> int:
    sys.stderr.write(f"anju-hub: {message}\n")
    return 2


def _worker(args: argparse.Namespace) -> int:
    from hub.cli import hub_options, settings_problem
    from hub.config import ConfigError
    from hub.settings import HubSettings
    from hub.shards import load_shard_map
    from hub.worker import child_environment, run_worker, seats

    if not args.shard_map or not args.name:
        return _fail("worker: --shard-map and --name are required (or ANJU_SHARD_MAP and ANJU_WORKER_NAME)")
    try:
        shards = load_shard_map(args.shard_map, worker=args.name)
    except ConfigError as exc:
        return _fail(str(exc))
    if args.name not in shards.workers():
        return _fail(f"worker {args.name} is not in {args.shard_map} (its workers: {', '.join(shards.workers())})")
    overrides = hub_options(args)
    try:
        for assignment in shards.assignments(args.name):
            settings = HubSettings(deployment=assignment.shard.deployment, **overrides)  # type: ignore[arg-type]
            if settings.alerts_url is None:
                return _fail("worker: the alert database is required (ANJU_ALERTS_DATABASE_FILE or "
                             "--alerts-database-file): the communities' leases live there")  # fmt: skip
            if settings.mqtt_client_id is not None:
                return _fail("worker: ANJU_MQTT_CLIENT_ID would give every community's hub the same MQTT client id; "
                             "unset it (each uses anju-hub-{community})")  # fmt: skip
    except ValidationError as exc:
        return _fail(settings_problem(exc))
    if not 1 <= args.hub_watchdog <= 600:
        return _fail(f"worker: --hub-watchdog {args.hub_watchdog:g}: give 1 to 600 seconds")
    all_seats = seats(args.name, shards, overrides, args.log_level, os.environ, watchdog_s=args.hub_watchdog)
    return asyncio.run(run_worker(args.name, all_seats, child_environment(os.environ, {})))


def _check(args: argparse.Namespace) -> int:
    from hub.config import ConfigError
    from hub.shards import load_shard_map

    try:
        shards = load_shard_map(args.file)
    except ConfigError as exc:
        return _fail(str(exc))
    out = sys.stdout
    out.write(f"{args.file}: {len(shards.communities)} communities on {len(shards.workers())} workers\n")
    for community, shard in shards.communities.items():
        owner, *standbys = shard.workers
        then = ", then ".join(standbys) if standbys else "nobody: a dead owner leaves it down"
        out.write(f"  {community}: port {shard.http_port}, run by {owner}, taken over by {then}\n")
    for worker in shards.workers():
        roles = shards.assignments(worker)
        owned = sum(1 for a in roles if a.rank == 0)
        out.write(f"  worker {worker}: owns {owned}, stands by for {len(roles) - owned}\n")
    return 0


def _proxy(args: argparse.Namespace) -> int:
    import re

    from hub.config import ConfigError
    from hub.shards import load_shard_map
    from hub.shards_proxy import nginx_config

    if not re.fullmatch(r"([a-z0-9-]{1,63}\.)*[a-z0-9-]{1,63}", args.domain):
        return _fail(f"shards proxy: --domain {args.domain!r} is not a domain name (a-z, 0-9, '-' and '.')")
    if not re.fullmatch(r"[A-Za-z0-9.:\[\] _-]{1,100}", args.listen):
        return _fail(f"shards proxy: --listen {args.listen!r} is not nginx listen parameters")
    try:
        shards = load_shard_map(args.file, check_deployments=False)
    except ConfigError as exc:
        return _fail(str(exc))
    sys.stdout.write(nginx_config(shards, domain=args.domain, listen=args.listen))
    return 0
