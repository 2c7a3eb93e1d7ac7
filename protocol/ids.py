"""Identifiers of communities, gateways and sensors (DESIGN.md: ``[a-z0-9-]{1,64}``).

The pattern is narrow on purpose: ids appear in MQTT topics, SenML base names and file names, so they must
never contain ``/``, ``+``, ``#``, ``:`` or anything a shell or a URL would treat specially.
"""

import re

__all__ = ["ID_PATTERN", "is_valid_id"]

ID_PATTERN = re.compile(r"[a-z0-9-]{1,64}")


def is_valid_id(value: object) -> bool:
    """True when ``value`` is a string that is a whole id (``[a-z0-9-]{1,64}``)."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None
