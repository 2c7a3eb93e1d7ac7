"""``anju-hub users add|passwd|role|disable|enable|list``: manage the hub's users in its data dir, with or without the
hub running (SQLite WAL; a change takes effect on the next request). The password is read from a prompt (twice) or
from ``--password-file`` — never from the command line, where ``ps`` and the shell history would show it."""

import argparse
import asyncio
import getpass
import os
import sys
from datetime import datetime
from pathlib import Path

from alerts.sqldb import DatabaseError
from hub.identity import AccessRules, Identity, IdentityStore, Role, Scopes, UserProblem
from hub.settings import alerts_schema, database_url

__all__ = ["add_users_command"]


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        text = Path(args.password_file).read_text(encoding="utf-8")
        return text[:-1] if text.endswith("\n") else text
    first = getpass.getpass("密码 / password: ")
    if getpass.getpass("再次输入 / again: ") != first:
        raise UserProblem("password", "两次输入不一致 / the two entries differ")
    return first


def _identity(args: argparse.Namespace) -> Identity:
    from hub.config import load_deployment

    if args.shard_map is not None:
        return _district_identity(args)
    if args.config is None:
        raise ValueError("give --config (a hub's users) or --shard-map (the district node's users)")
    deployment = load_deployment(args.config, check_secrets=False)
    if args.database_file:
        store = IdentityStore(database_url(Path(args.database_file)), schema=alerts_schema(deployment.community.id))
    else:
        data_dir = Path(args.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        store = IdentityStore(data_dir / "identity.sqlite3")
    return Identity(store, Scopes(deployment), rules=AccessRules(), address_limit=(1, 1.0), static_token=None)


def _district_identity(args: argparse.Namespace) -> Identity:
    """The district node's users (hub/district/): in the shared database's schema ``anju_district``, linked to the
    shard map's sub-districts."""
    from hub.district.scopes import DistrictScopes
    from hub.district.settings import DISTRICT_SCHEMA
    from hub.shards import load_shard_map

    if not args.database_file:
        raise ValueError("the district node's users live in PostgreSQL: give --database-file with --shard-map")
    scopes = DistrictScopes(load_shard_map(args.shard_map, check_deployments=False))
    store = IdentityStore(database_url(Path(args.database_file)), schema=DISTRICT_SCHEMA)
    return Identity(store, scopes, rules=AccessRules(), address_limit=(1, 1.0), static_token=None)


def _by() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


async def _run(args: argparse.Namespace, identity: Identity) -> None:
    by = _by()
    if args.users_command == "list":
        for user in await identity.users():
            locked = user.locked_until_ms is not None and user.locked_until_ms > datetime.now().timestamp() * 1000
            state = "disabled" if user.disabled else "locked" if locked else "active"
            sys.stdout.write(f"{user.name}\t{user.role.value}\t{user.person or '-'}\t{state}\n")
    elif args.users_command == "add":
        user = await identity.add_user(args.name, Role(args.role), args.person, _password(args), by=by, client="cli")
        sys.stdout.write(f"added {user.name} ({user.role.value}, {user.role.title_zh})\n")
    elif args.users_command == "passwd":
        await identity.user(args.name)
        await identity.change_user(args.name, password=_password(args), by=by, client="cli")
        sys.stdout.write(f"password of {args.name} changed; its sessions are revoked\n")
    elif args.users_command == "role":
        await identity.change_user(args.name, role=(Role(args.role), args.person), by=by, client="cli")
        sys.stdout.write(f"{args.name} is now {args.role}\n")
    else:
        await identity.change_user(args.name, disabled=args.users_command == "disable", by=by, client="cli")
        sys.stdout.write(f"{args.name} {args.users_command}d\n")


def _users(args: argparse.Namespace) -> int:
    from hub.config import ConfigError

    try:
        identity = _identity(args)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    except (ValueError, DatabaseError) as exc:
        sys.stderr.write(f"anju-hub users: {exc}\n")
        return 2
    try:
        asyncio.run(_run(args, identity))
    except UserProblem as exc:
        sys.stderr.write(f"anju-hub users {args.users_command}: {exc.field}: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"anju-hub users {args.users_command}: {exc}\n")
        return 2
    finally:
        identity.store.close()
    return 0


def add_users_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    users = commands.add_parser("users", help="manage the hub's users (roles, passwords, access)")
    users.add_argument("--config", default=os.environ.get("ANJU_DEPLOYMENT"),
                       help="deployment YAML file (people and places a role is linked to)")  # fmt: skip
    users.add_argument("--shard-map", help="the district node's users instead (hub/district/): the shard map, whose "
                       "sub-districts a sub_district user is linked to")  # fmt: skip
    users.add_argument("--data-dir", default=os.environ.get("ANJU_DATA_DIR", "data"), help="the hub's data dir")
    users.add_argument(
        "--database-file",
        default=os.environ.get("ANJU_ALERTS_DATABASE_FILE"),
        help="file holding the postgresql:// URL of hubs that share state (their users too); default: the data dir's "
        "identity.sqlite3",
    )
    sub = users.add_subparsers(dest="users_command", required=True)
    roles = [r.value for r in Role]
    # allow_abbrev=False: ``--password SECRET`` must not pass as an abbreviation of --password-file.
    add = sub.add_parser("add", help="add a user; the password from a prompt or --password-file", allow_abbrev=False)
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=roles)
    add.add_argument(
        "--person",
        help="the deployment person (or volunteer) id the user stands for; on the district "
        "node, a sub_district user's sub-district id",
    )
    add.add_argument("--password-file", help="a file holding the password (one line)")
    passwd = sub.add_parser("passwd", help="set a new password (ends the user's sessions)", allow_abbrev=False)
    passwd.add_argument("name")
    passwd.add_argument("--password-file")
    role = sub.add_parser("role", help="change a user's role and person")
    role.add_argument("name")
    role.add_argument("--role", required=True, choices=roles)
    role.add_argument("--person")
    for verb in ("disable", "enable"):
        sub.add_parser(verb, help=f"{verb} a user's logins").add_argument("name")
    sub.add_parser("list", help="every user: name, role, person, state")
    users.set_defaults(handler=_users)
