"""Opaque tokens: 32 random bytes (256 bits) in URL-safe base64 behind a prefix that says what the token is
(``anju_at_`` access, ``anju_rt_`` refresh, ``anju_st_`` browser session, ``anju_it_`` integration, ``anju_cs_`` CSRF),
so a leaked one is recognised by secret scanners and in a paste. Only ``token_hash`` of a token is ever stored."""

import hashlib
import secrets
from typing import Literal

__all__ = ["TokenPrefix", "new_token", "token_hash"]

TokenPrefix = Literal["anju_at_", "anju_rt_", "anju_st_", "anju_it_", "anju_cs_"]


def new_token(prefix: TokenPrefix) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """SHA-256 (hex) of a token: enough for a random 256-bit secret, which no dictionary holds (a password needs
    argon2; a token does not)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
