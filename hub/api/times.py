"""Times as the API shows them: the store's Unix milliseconds as an aware datetime in the hub's own time zone
(China Standard Time on a deployed hub), so every route writes the same instant the same way."""

from datetime import datetime
from typing import overload

__all__ = ["moment"]


@overload
def moment(ms: int) -> datetime: ...
@overload
def moment(ms: None) -> None: ...
@overload
def moment(ms: int | None) -> datetime | None: ...
def moment(ms: int | None) -> datetime | None:
    """``ms`` (Unix milliseconds) as an aware local datetime; None stays None (a time not reached yet)."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000).astimezone()
