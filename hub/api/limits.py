"""A bound on request bodies, before any route reads one: a misbehaving client cannot make the hub buffer without
limit (FastAPI reads a JSON body whole before validating it)."""

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit"]


class BodyLimit:
    """ASGI middleware answering 413 (problem details) to a request whose body is larger than ``max_bytes``: at once
    when its ``Content-Length`` says so, otherwise as soon as the bytes received pass the bound (chunked uploads)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, refused: Callable[[], None] = lambda: None) -> None:
        """``refused`` is called for each request refused (the hub counts them)."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes!r}")
        self.app = app
        self.max_bytes = max_bytes
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, f"the request body is {int(declared):,} bytes")
            return
        received = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not refused:
                    refused = True
                    if not started:
                        await self._refuse(send, f"the request body passed {self.max_bytes:,} bytes")
                    return {"type": "http.disconnect"}  # the route stops reading; what it answers is dropped
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not refused:  # the route's own failure; after a refusal, only its reaction to the disconnect
                raise

    async def _refuse(self, send: Send, what: str) -> None:
        self.refused()
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Request too large",
                "status": 413,
                "detail": f"{what}; at most {self.max_bytes:,} bytes are taken",
            }
        ).encode()
        headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
