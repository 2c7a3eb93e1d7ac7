"""``anju-hub district serve``: the district node (hub/district/app.py)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pydantic import ValidationError

__all__ = ["add_district_commands"]

_EPILOG = """Every option can also come from the environment: ANJU_SHARD_MAP, ANJU_ALERTS_DATABASE_FILE (or
ANJU_ALERTS_DATABASE; required), ANJU_DATA_DIR, ANJU_HTTP_HOST, ANJU_HTTP_PORT (default 8090), ANJU_API_TOKEN_FILE,
ANJU_HUB_TOKEN_FILE, ANJU_HUB_URL_TEMPLATE, and the login settings of `anju-hub serve`. Its users are added with
`anju-hub users --shard-map FILE --database-file FILE add NAME --role sub_district --person SUB_DISTRICT` (or
emergency_office, admin, without a person)."""


def add_district_commands(commands: Any) -> None:
    district = commands.add_parser("district", help="the district node: every community's alerts, read-only")
    actions = district.add_subparsers(dest="action", required=True)
    serve = actions.add_parser(
        "serve",
        help="serve the API across the shard map's communities until SIGINT/SIGTERM",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = serve.add_argument
    add("--shard-map", dest="shard_map", default=os.environ.get("ANJU_SHARD_MAP"), help="shard map YAML")
    add("--alerts-database-file", dest="alerts_database_file", help="file holding the postgresql:// URL")
    add("--data-dir", dest="data_dir", help="where the list cursors' key is kept (default ./data)")
    add("--http-host", dest="http_host")
    add("--http-port", dest="http_port", type=int)
    add("--api-token-file", dest="api_token_file", help="file holding an admin bearer token")
    add("--hub-token-file", dest="hub_token_file", help="file holding the hubs' API token: the node may then declare "
        "incidents in several communities through their hubs (without it, it only reads)")  # fmt: skip
    add(
        "--hub-url-template",
        dest="hub_url_template",
        help="where a community's hub answers, e.g. "
        "https://{community}.anju.example.org (default: the lease holder's worker's host, the community's port)",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from hub.cli import run_server, settings_problem
    from hub.config import ConfigError
    from hub.district.app import create_district_app
    from hub.district.settings import DistrictSettings
    from hub.shards import load_shard_map

    flags = {k: v for k, v in vars(args).items() if k in DistrictSettings.model_fields and v is not None}
    try:
        settings = DistrictSettings(**flags)
        load_shard_map(settings.shard_map, check_deployments=False)  # fail here, with line numbers
    except ValidationError as exc:
        sys.stderr.write(f"anju-hub district: {settings_problem(exc)}\n")
        return 2
    except (ValueError, ConfigError) as exc:
        sys.stderr.write(f"anju-hub district: {exc}\n")
        return 2
    return run_server(create_district_app(settings), settings)
