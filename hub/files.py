"""Files the hub writes whole: a new version replaces the old one at once, or not at all."""

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, overload

__all__ = ["replacing", "set_aside"]


@overload
def replacing(
    path: Path, mode: Literal["w"] = "w", *, durable: bool = True
) -> contextlib.AbstractContextManager[IO[str]]: ...
@overload
def replacing(
    path: Path, mode: Literal["wb"], *, durable: bool = True
) -> contextlib.AbstractContextManager[IO[bytes]]: ...
def replacing(path: Path, mode: str = "w", *, durable: bool = True) -> contextlib.AbstractContextManager[IO[Any]]:
    """Write ``path`` through a ``.partial`` file next to it, renamed over ``path`` when the block ends without an
    error (the partial file is removed on one). ``durable``: fsync before the rename, so a power cut leaves the
    old file or the new one, never a torn one. ``mode``: ``"w"`` (UTF-8 text) or ``"wb"``."""
    return _replacing(path, mode, durable=durable)


@contextlib.contextmanager
def _replacing(path: Path, mode: str, *, durable: bool) -> Iterator[IO[Any]]:
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open(mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def set_aside(path: Path, why: object, what: str, log: logging.Logger) -> Path:
    """Rename an unusable ``path`` to ``path.bad`` (kept for a person to look at) and say so; returns the new path."""
    aside = path.with_name(path.name + ".bad")
    os.replace(path, aside)
    log.warning("%s %s unusable (%s): set aside as %s, starting afresh", what, path, why, aside)
    return aside
