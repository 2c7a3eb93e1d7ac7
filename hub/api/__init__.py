"""The hub's HTTP API (``/api/v1``) and ``/metrics``."""

from hub.api.app import create_app

__all__ = ["create_app"]
