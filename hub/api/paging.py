"""One way to page every list of the API: ``limit`` and an opaque ``cursor`` in, the next page's address out in a
``Link: <…>; rel="next"`` header (RFC 8288).

Why a cursor and not an offset: a list is read newest first while alerts keep arriving, so an offset moves under the
reader — each new alert pushes the rows already seen down into the next page (read twice) and a removed one pulls an
unseen row up (skipped). A cursor is the *position* of the last row handed out (its sort key: time and id, a sequence
number…), and the next page is "the rows after that key", which rows inserted before it do not shift.

Why a header and not an envelope: the bodies stay what they were (a list stays a list), so the pages in
``hub/web/static`` and every integration keep working; a client that wants more follows the ``next`` link as it
would on GitHub's API, and a client that never pages sees no change. The last page has no ``Link``.

A cursor is signed (HMAC-SHA256 with a key kept in the data directory, so it outlives a restart) and names the list it
belongs to: it only ever says *where* to continue, never *what* the caller may see — every page is filtered by the
caller's scope as the first one was — and an altered, truncated or foreign cursor is a 400 problem naming
``cursor``, never a 500. ``offset`` is refused with a 400 that says what replaced it: ignoring it silently would hand
an old client page one again and again.
"""

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Query, Request, Response

from hub.api.problems import ParameterProblem
from hub.files import replacing

__all__ = [
    "LINKED",
    "CursorKey",
    "Key",
    "PageRequest",
    "load_cursor_key",
    "page_of",
    "paged",
    "paging",
]

Key = tuple[int | str, ...]
"""A row's position in its list. For a list paged in memory (``page_of``) it sorts ascending in the list's order, so
"after" is "greater than" (newest first: ``(-time_ms, id)``); for a list its store pages, the store's own position
(``(opened_at_ms, id)`` of an alert, a sequence number…), which the route hands back to the store."""

T = TypeVar("T")

CURSOR_MAX_CHARS = 512
_KEY_BYTES = 32
_TAG_BYTES = 16
"""128 bits of HMAC-SHA256: forging a cursor by guessing is out of reach; longer would only lengthen URLs."""

LINKED: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "Link": {
                "description": '下一页地址 / the next page: `<…?cursor=…>; rel="next"` (RFC 8288); absent on the last '
                "page",
                "schema": {"type": "string"},
            }
        }
    },
    400: {"description": "cursor 无效 / a cursor this hub did not issue for this list, or `offset` (replaced)"},
}
"""``responses=`` of every paged route: documents the ``Link`` header and the 400 in the OpenAPI schema."""


@dataclass(frozen=True, slots=True)
class CursorKey:
    """The secret that signs cursors (32 random bytes)."""

    secret: bytes

    def encode(self, list_name: str, position: Key) -> str:
        body = json.dumps([list_name, *position], separators=(",", ":"), ensure_ascii=False).encode()
        tag = hmac.new(self.secret, body, hashlib.sha256).digest()[:_TAG_BYTES]
        return f"{_b64(body)}.{_b64(tag)}"

    def decode(self, list_name: str, cursor: str, shape: Sequence[type]) -> Key:
        """The position ``cursor`` names in ``list_name``; ParameterProblem (400) when it is not a cursor this hub
        signed for this list, or its position does not have ``shape`` (the types of the key's parts)."""
        body_text, _, tag_text = cursor.partition(".")
        try:
            body, tag = _unb64(body_text), _unb64(tag_text)
        except (binascii.Error, ValueError):
            raise _bad_cursor(
                cursor, "不是本系统签发的游标 / not a cursor (use the Link header's next URL as given)"
            ) from None
        expected = hmac.new(self.secret, body, hashlib.sha256).digest()[:_TAG_BYTES]
        if not hmac.compare_digest(tag, expected):
            raise _bad_cursor(cursor, "游标被改动或已失效 / the cursor was altered or is not from this hub")
        parts = json.loads(body)
        if not isinstance(parts, list) or not parts or parts[0] != list_name:
            raise _bad_cursor(cursor, f"游标不属于此列表 / the cursor belongs to another list, not {list_name}")
        position = tuple(parts[1:])
        if len(position) != len(shape) or not all(type(p) is t for p, t in zip(position, shape, strict=True)):
            raise _bad_cursor(cursor, f"游标格式不符 / the cursor does not fit the list {list_name}")
        return position


def load_cursor_key(data_dir: Path) -> CursorKey:
    """The hub's cursor key from ``data_dir/cursor.key``, made (owner-only, 0600) on first start. Kept on disk so
    that a client paging across a hub restart is not refused; a missing or torn file is replaced by a new key (the
    cursors out there are then refused once, and their clients start again from the first page)."""
    path = data_dir / "cursor.key"
    with contextlib.suppress(FileNotFoundError):
        secret = path.read_bytes()
        if len(secret) == _KEY_BYTES:
            return CursorKey(secret)
    secret = secrets.token_bytes(_KEY_BYTES)
    with replacing(path, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(secret)
    return CursorKey(secret)


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One page asked for: at most ``limit`` rows of ``list_name`` after ``after`` (None: from the start)."""

    list_name: str
    limit: int
    after: Key | None
    key: CursorKey


def paging(list_name: str, *, default: int, maximum: int, shape: Sequence[type]) -> Any:
    """The ``limit`` and ``cursor`` query parameters of the list ``list_name`` (a ``Depends`` giving a PageRequest).
    ``shape``: the types of its key's parts, checked on every cursor taken. ``default`` and ``maximum`` are rows,
    and stated in the schema."""

    async def page_request(
        request: Request,
        limit: Annotated[
            int, Query(ge=1, le=maximum, description=f"每页条数 / rows per page: 1..{maximum}, default {default}")
        ] = default,
        cursor: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=CURSOR_MAX_CHARS,
                pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
                description="上一页 Link 头给出的游标 / the opaque cursor from the previous page's "
                '`Link: <…>; rel="next"` header (omit for the first page)',
            ),
        ] = None,
    ) -> PageRequest:
        if "offset" in request.query_params:
            raise ParameterProblem(
                400,
                "offset",
                request.query_params["offset"],
                "不再支持 offset，请用游标翻页 / offset is replaced by cursor: follow the Link header's next URL",
            )
        key: CursorKey = request.app.state.cursor_key
        after = None if cursor is None else key.decode(list_name, cursor, shape)
        return PageRequest(list_name=list_name, limit=limit, after=after, key=key)

    return Depends(page_request)


def paged(
    request: Request, response: Response, page: PageRequest, rows: Sequence[T], key: Callable[[T], Key]
) -> list[T]:
    """The first ``page.limit`` of ``rows`` — read as up to ``limit + 1`` rows in key order after the cursor, the
    extra one telling whether more follow — with a ``Link`` to the next page on ``response`` when they do."""
    shown = list(rows[: page.limit])
    if len(rows) > page.limit:
        cursor = page.key.encode(page.list_name, key(shown[-1]))
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        query.append(("cursor", cursor))
        url = request.url.replace(query=urlencode(query))
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return shown


def page_of(
    request: Request, response: Response, page: PageRequest, rows: Iterable[T], key: Callable[[T], Key]
) -> list[T]:
    """A page of a list held whole in memory (silences, incidents, users…): ``rows`` sorted by ``key``, those after
    the cursor, and the ``Link`` to the rest. Keyset even here, so a row added while a client pages is not read
    twice."""
    ordered = sorted(rows, key=key)
    after = page.after
    if after is not None:
        ordered = [r for r in ordered if key(r) > after]
    return paged(request, response, page, ordered[: page.limit + 1], key)


def _bad_cursor(cursor: str, why: str) -> ParameterProblem:
    return ParameterProblem(400, "cursor", cursor, why)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text:
        raise ValueError("empty")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
