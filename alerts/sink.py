"""A local webhook receiver: the stand-in for a grid manager's phone app in the demo and the tests.

``python -m alerts.sink --port 9009 --secret-file secret.txt [--log notifications.jsonl]``

Listens on 127.0.0.1 only. Each POST must carry a fresh ``X-Anju-Timestamp`` (±5 min) and a valid
``X-Anju-Signature`` (else 401). Repeats of an ``Idempotency-Key`` get 200 and are not shown again. Each
accepted notification is appended to the log as one JSON line and summarised at INFO, Chinese first::

    📟 收到通知 notification received: 【III级 黄色 较大】… → 张伟 [al-…:1:zhang-wei:0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunningSink", "Sink", "SinkResponse", "main", "start_sink"]

log = logging.getLogger("anju.alerts.sink")

MAX_SKEW_S = 300
_MAX_BODY = 1 << 20
_MAX_HEADER_LINES = 100
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 500: "Internal Server Error"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class SinkResponse:
    """Status and a short text body."""

    status: int
    text: str = ""


@dataclass
class Sink:
    """Verifies, deduplicates and records notifications. Subclass ``handle`` to script failures in tests."""

    secret: str = field(repr=False)
    log_path: Path | None = None
    max_skew_s: int = MAX_SKEW_S
    clock_s: Callable[[], float] = time.time
    received: list[dict[str, Any]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0
    rejected: int = 0

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("Sink needs a non-empty secret")
        if self.log_path is not None and self.log_path.exists():
            # Dedup survives a sink restart: keys already logged are not shown again.
            for line in self.log_path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self.seen.add(json.loads(line)["idempotency_key"])

    def verify(self, headers: dict[str, str], body: bytes) -> str | None:
        """None when the request is authentic and fresh, else the reason it is not."""
        timestamp = headers.get("x-anju-timestamp", "")
        signature = headers.get("x-anju-signature", "")
        if not timestamp.isdigit():
            return "missing or bad X-Anju-Timestamp"
        if abs(self.clock_s() - int(timestamp)) > self.max_skew_s:
            return "stale X-Anju-Timestamp"
        mac = hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        if not hmac.compare_digest(signature, f"sha256={mac.hexdigest()}"):
            return "bad X-Anju-Signature"
        return None

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SinkResponse:
        """Answer one request (``headers`` keys are lower case)."""
        if method != "POST":
            return SinkResponse(405, "POST only")
        problem = self.verify(headers, body)
        if problem is not None:
            self.rejected += 1
            log.warning("rejected notification 拒绝通知: %s", problem)
            return SinkResponse(401, problem)
        key = headers.get("idempotency-key", "")
        if not key:
            return SinkResponse(400, "missing Idempotency-Key")
        if key in self.seen:
            self.duplicates += 1
            log.debug("duplicate notification %s", key)
            return SinkResponse(200, "duplicate")
        try:
            payload = json.loads(body)
        except ValueError:
            return SinkResponse(400, "body is not JSON")
        if not isinstance(payload, dict):
            return SinkResponse(400, "body is not a JSON object")
        self.seen.add(key)
        self.received.append(payload)
        if self.log_path is not None:
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(payload, ensure_ascii=False) + "\n")
        recipient = payload.get("recipient") or {}
        log.info(
            "📟 收到通知 notification received: %s | %s → %s [%s]",
            payload.get("message_zh", "?"),
            payload.get("message_en", "?"),
            recipient.get("name", "?") if isinstance(recipient, dict) else "?",
            key,
        )
        return SinkResponse(200, "ok")


@dataclass(frozen=True, slots=True)
class RunningSink:
    """A sink serving on ``host:port``; ``url`` is where to post."""

    sink: Sink
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/notify"


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    request_line = await reader.readline()
    if not request_line:
        return None
    parts = request_line.decode("latin-1").split()
    if len(parts) != 3:
        raise ValueError("bad request line")
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADER_LINES):
        line = (await reader.readline()).decode("latin-1")
        if line in ("\r\n", "\n", ""):
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    else:
        raise ValueError("too many headers")
    length = int(headers.get("content-length", "0"))
    if not 0 <= length <= _MAX_BODY:
        raise ValueError("body too large")
    body = await reader.readexactly(length) if length else b""
    return parts[0], parts[1], headers, body


async def _respond(writer: asyncio.StreamWriter, response: SinkResponse, *, close: bool) -> None:
    text = response.text.encode()
    head = (
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(text)}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    writer.write(head.encode() + text)
    await writer.drain()


def _connection_handler(
    sink: Sink, open_writers: set[asyncio.StreamWriter]
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_writers.add(writer)
        try:
            while True:
                try:
                    request = await asyncio.wait_for(_read_request(reader), timeout=30)
                except (ValueError, asyncio.IncompleteReadError):
                    await _respond(writer, SinkResponse(400, "bad request"), close=True)
                    return
                if request is None:
                    return
                method, path, headers, body = request
                try:
                    response = sink.handle(method, path, headers, body)
                except Exception:  # the stand-in must keep answering, like a real app gateway
                    log.exception("sink handler failed")
                    response = SinkResponse(500, "error")
                close = headers.get("connection", "").lower() == "close"
                await _respond(writer, response, close=close)
                if close:
                    return
        except (TimeoutError, ConnectionError):
            return
        finally:
            open_writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return serve


@contextlib.asynccontextmanager
async def start_sink(sink: Sink, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[RunningSink]:
    """Serve ``sink`` on ``host:port`` (0 = a free port) for the ``async with`` block."""
    open_writers: set[asyncio.StreamWriter] = set()
    server = await asyncio.start_server(_connection_handler(sink, open_writers), host, port)
    bound = server.sockets[0].getsockname()[1]
    try:
        yield RunningSink(sink=sink, host=host, port=int(bound))
    finally:
        server.close()
        for writer in list(open_writers):  # idle keep-alive connections; 3.12+ wait_closed waits for them
            writer.close()
        await server.wait_closed()


async def _run(args: argparse.Namespace, secret: str) -> None:
    sink = Sink(secret=secret, log_path=Path(args.log) if args.log else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with start_sink(sink, port=args.port) as running:
        log.info("📟 通知接收端已启动 notification sink listening on %s", running.url)
        await stop.wait()
    log.info("通知接收端已停止 sink stopped: %d received, %d duplicates, %d rejected",
             len(sink.received), sink.duplicates, sink.rejected)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code (0 after SIGINT/SIGTERM)."""
    parser = argparse.ArgumentParser(prog="python -m alerts.sink", description="Anju local webhook receiver")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--secret-file", required=True, help="file holding the shared HMAC secret")
    parser.add_argument("--log", help="append accepted notifications to this file as JSON lines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        secret = Path(args.secret_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        parser.error(f"--secret-file: {exc}")
    if not secret:
        parser.error("--secret-file is empty")
    asyncio.run(_run(args, secret))
    return 0


if __name__ == "__main__":
    sys.exit(main())
