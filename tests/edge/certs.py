"""Throwaway X.509 material for TLS tests, made with the ``openssl`` CLI (no Python dependency).

One CA signs a server certificate for ``127.0.0.1`` / ``localhost``, a server certificate for another name only
(to show the hostname check is on) and a client certificate; a second, unrelated CA stands for "the wrong CA".
EC P-256 keys, valid two days, unencrypted (like a gateway's, which starts unattended).
"""

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Certs", "make_certs", "mosquitto_tls_listener", "require_openssl"]

OPENSSL = shutil.which("openssl")


def require_openssl() -> str:
    """The openssl binary; a missing one fails under CI (CI=true) and skips elsewhere, like the broker."""
    if OPENSSL is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is required in CI to make test certificates and is missing")
        pytest.skip("openssl not installed")
    return OPENSSL


@dataclass(frozen=True, slots=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    misnamed_cert: Path
    """Signed by ``ca`` but only for ``broker.invalid``: a client connecting to 127.0.0.1 must refuse it."""
    misnamed_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    """A CA that signed nothing here."""


def _run(*args: str, cwd: Path) -> None:
    completed = subprocess.run(
        [require_openssl(), *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {completed.stderr}")


def _ca(directory: Path, name: str) -> Path:
    key, cert = f"{name}.key", f"{name}.crt"
    _run(
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
        *("-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN=anju test {name}"),
        cwd=directory,
    )
    return directory / cert


def _leaf(directory: Path, name: str, *, ca: str, extensions: str) -> tuple[Path, Path]:
    key, csr, cert, ext = f"{name}.key", f"{name}.csr", f"{name}.crt", f"{name}.ext"
    (directory / ext).write_text(
        f"basicConstraints=CA:FALSE\nauthorityKeyIdentifier=keyid\n{extensions}\n", encoding="utf-8"
    )
    _run(
        *("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
        *("-keyout", key, "-out", csr, "-subj", f"/CN={name}"),
        cwd=directory,
    )
    _run(
        *("x509", "-req", "-in", csr, "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial"),
        *("-out", cert, "-days", "2", "-extfile", ext),
        cwd=directory,
    )
    return directory / cert, directory / key


def make_certs(directory: Path) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "ca")
    other_ca = _ca(directory, "other-ca")
    server = _leaf(
        directory,
        "server",
        ca="ca",
        extensions="subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
    )
    misnamed = _leaf(
        directory, "misnamed", ca="ca", extensions="subjectAltName=DNS:broker.invalid\nextendedKeyUsage=serverAuth"
    )
    client = _leaf(directory, "anju-edge-gw-test", ca="ca", extensions="extendedKeyUsage=clientAuth")
    return Certs(ca, *server, *misnamed, *client, other_ca)


def mosquitto_tls_listener(port: int, *, ca: Path, cert: Path, key: Path, require_certificate: bool) -> str:
    """Mosquitto config lines for a TLS listener on 127.0.0.1:``port``."""
    lines = [f"listener {port} 127.0.0.1", f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
    if require_certificate:
        lines.append("require_certificate true")
    return "\n".join(lines) + "\n"
