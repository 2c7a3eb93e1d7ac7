"""Mosquitto's password file (``password_file``): one ``username:hash`` line per client.

The hash is Mosquitto 2's own format ``$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>`` (the one
``mosquitto_passwd`` writes), so the broker checks it with no plugin and the machine that provisions does not
need the Mosquitto tools installed. 101 iterations is ``mosquitto_passwd``'s own default; more would not help here,
because every secret this module hashes is 32 random bytes (256 bits) that no dictionary can guess, and the broker
pays the iterations again on each connection of a reconnecting fleet.
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["ITERATIONS", "PasswdError", "hash_secret", "new_secret", "parse_passwd", "render_passwd", "verify"]

ITERATIONS = 101
SALT_BYTES = 12
"""Mosquitto's salt length (bytes)."""


class PasswdError(ValueError):
    """A password file line that is not ``username:$7$…``, named by its line number."""


def new_secret() -> str:
    """A new client secret: 32 random bytes as URL-safe text (43 characters, no ``:`` or whitespace)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The ``$7$…`` hash of ``secret`` as Mosquitto 2 stores and checks it."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches a ``$7$`` hash (for checks; the broker does its own)."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", secret.encode("utf-8"), salt, int(parts[2])), digest)


def parse_passwd(text: str, *, source: Path | str = "password file") -> dict[str, str]:
    """Usernames to hashes, in file order; blank lines and ``#`` comments are skipped.

    Raises PasswdError naming the line for a line without ``:``, an empty name, a hash that is not ``$7$``
    (an older tool's or a plain-text password, which Mosquitto 2 would refuse or take literally) or a name twice.
    """
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not name:
            raise PasswdError(f"{source} line {number}: not 'username:hash'")
        if not stored.startswith("$7$") or stored.count("$") != 4:
            raise PasswdError(f"{source} line {number}: user {name!r} has no $7$ (PBKDF2-SHA512) hash")
        if name in users:
            raise PasswdError(f"{source} line {number}: user {name!r} appears twice")
        users[name] = stored
    return users


def render_passwd(users: Mapping[str, str], *, header: Iterable[str] = ()) -> str:
    """The file text for ``users`` (username to hash), sorted by name so that a diff shows what changed."""
    lines = [f"# {line}" for line in header]
    lines += [f"{name}:{users[name]}" for name in sorted(users)]
    return "\n".join(lines) + "\n"
