"""Provisioning the broker (issue 8): gateway users, the ACL, a small CA and the files a gateway takes home."""

from pathlib import Path

__all__ = ["DEFAULT_DIR"]

DEFAULT_DIR = Path("/etc/mosquitto/anju")
"""The broker's security files (deploy/mosquitto/secure.conf reads them from here)."""
