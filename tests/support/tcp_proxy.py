"""A TCP relay on 127.0.0.1 that a test can cut and restore: the network link between a gateway and its broker.

``cut()`` closes every relayed connection and stops listening, so reconnect attempts are refused until
``restore()`` listens again on the same port, as when a link goes down and comes back. The relay runs its
own asyncio event loop in a daemon thread, so the test thread stays free to wait and assert.
"""

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any

from hub.demo.processes import free_port

__all__ = ["TcpProxy"]

_CHUNK_BYTES = 65536
_CALL_TIMEOUT_S = 10.0


class TcpProxy:
    """Relays ``127.0.0.1:port`` to ``127.0.0.1:target_port``; use as a context manager or ``start``/``close``."""

    def __init__(self, target_port: int, *, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"tcp-proxy-{self.port}", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> "TcpProxy":
        self._thread.start()
        self._call(self._listen())
        return self

    @property
    def listening(self) -> bool:
        return self._server is not None

    def cut(self) -> None:
        """Close every relayed connection (both sides) and refuse new ones."""
        self._call(self._cut())

    def restore(self) -> None:
        """Accept and relay connections again, on the same port."""
        self._call(self._listen())

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._cut())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_CALL_TIMEOUT_S)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()

    # -- the relay's own thread ---------------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_CALL_TIMEOUT_S)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._writers.clear()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted in the instant of a cut
            client_writer.transport.abort()
            return
        self.accepted += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, upstream_writer))
        up = asyncio.ensure_future(self._pump(client_reader, upstream_writer))
        down = asyncio.ensure_future(self._pump(upstream_reader, client_writer))
        self._tasks.update((up, down))
        try:
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                self._tasks.discard(task)
            for writer in (client_writer, upstream_writer):
                writer.transport.abort()
                self._writers.discard(writer)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(_CHUNK_BYTES):
                writer.write(chunk)
                await writer.drain()
