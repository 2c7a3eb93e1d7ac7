"""Password hashing (argon2id, argon2-cffi's RFC 9106 low-memory profile) and the rule a new password must pass.

argon2id is memory-hard: a stolen user table costs an attacker 64 MiB and a few tens of ms per guess per core. The
hash string carries its own parameters, so raising them later only needs ``needs_rehash`` at the next login.
"""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["MAX_PASSWORD_CHARS", "MIN_PASSWORD_CHARS", "Passwords", "password_problem"]

MIN_PASSWORD_CHARS = 12
"""NIST SP 800-63B asks for at least 8; 12 because these accounts can acknowledge and close gas alarms."""
MAX_PASSWORD_CHARS = 256
"""Long enough for a passphrase, short enough that hashing one is not a denial of service."""

_COMMON = frozenset(
    {
        "123456789012",
        "1234567890123",
        "password1234",
        "passw0rd1234",
        "qwertyuiop12",
        "qwerty123456",
        "aaaaaaaaaaaa",
        "anju12345678",
        "admin1234567",
        "administrator",
        "changeme1234",
        "iloveyou1234",
        "woaini1314520",
        "a1b2c3d4e5f6",
    }
)


def password_problem(password: str, *, username: str = "") -> str | None:
    """Why ``password`` is too weak (zh-CN, then English), or None. Length first (SP 800-63B), then what a guesser
    tries first: one repeated character, the user name, a list of the commonest passwords."""
    if not password.strip():
        return "密码不能为空 / the password is empty"
    if len(password) < MIN_PASSWORD_CHARS:
        return f"密码至少 {MIN_PASSWORD_CHARS} 个字符 / the password needs at least {MIN_PASSWORD_CHARS} characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"密码最多 {MAX_PASSWORD_CHARS} 个字符 / the password may have at most {MAX_PASSWORD_CHARS} characters"
    lowered = password.lower()
    if len(set(password)) < 4:
        return "密码字符种类太少 / the password repeats too few characters"
    if username and username.lower() in lowered:
        return "密码不能包含用户名 / the password contains the user name"
    if lowered in _COMMON:
        return "密码过于常见 / the password is one of the commonest"
    return None


class Passwords:
    """Hash and check passwords; a check of an unknown user still spends one hash (no timing oracle of names)."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()
        self._dummy = self._hasher.hash("anju-dummy-password-for-unknown-users")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def check(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored`` (None: no such user; spends the same time and answers False)."""
        try:
            return self._hasher.verify(stored if stored is not None else self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)
