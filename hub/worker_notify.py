"""The worker's side of sd_notify for one of its hubs: the worker is to its hubs what systemd is to a hub.

A hub run by a worker gets ``NOTIFY_SOCKET`` (an abstract datagram socket of the worker's, one per community) and
``WATCHDOG_USEC``, exactly as systemd would give them (systemd_notify/), so the hub's own code needs nothing new: it
says ``READY=1`` when it is up (a standby as soon as it waits for the lease), ``STATUS=…`` (standby or running, and
the lease's epoch), and ``WATCHDOG=1`` from its event loop every half interval. The worker kills a hub that stops
pinging (hub/worker.py), as systemd's ``WatchdogSec=`` would. Messages are taken only from the hub the worker started
(the sender's pid, checked with ``SO_PASSCRED``), so another local process cannot feed a stuck hub's watchdog.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable

__all__ = ["HubNotifications"]

log = logging.getLogger("anju.hub.worker")

_CREDENTIALS = struct.Struct("iII")
"""struct ucred: pid, uid, gid."""


class HubNotifications:
    """The notification socket of one community's hub; ``address`` goes into the hub's ``NOTIFY_SOCKET``."""

    def __init__(self, community: str, on_status: Callable[[], None] = lambda: None) -> None:
        self.community = community
        self.on_status = on_status
        self.address = f"@anju-worker-{os.getpid()}-{secrets.token_hex(6)}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._socket.bind("\0" + self.address[1:])
        self.pid: int | None = None
        self.ready = False
        self.status = "starting"
        self.last_s = time.monotonic()
        """Monotonic time of the hub's start or its last message, whichever is later."""
        self.refused = 0

    def expect(self, pid: int) -> None:
        """A new hub process ``pid`` starts: only its messages count from now on."""
        self.pid, self.ready, self.status, self.last_s = pid, False, "starting", time.monotonic()

    def listen(self) -> None:
        asyncio.get_running_loop().add_reader(self._socket.fileno(), self._read)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._socket.fileno())
        self._socket.close()

    def _read(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self._socket.recvmsg(4096, socket.CMSG_SPACE(_CREDENTIALS.size))
            except (BlockingIOError, InterruptedError):
                return
            sender = next(
                (_CREDENTIALS.unpack(body[: _CREDENTIALS.size])[0] for level, kind, body in ancillary
                 if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS),
                None,
            )  # fmt: skip
            if sender is None or sender != self.pid:
                self.refused += 1
                log.warning("community %s: a notification from pid %s, not its hub, ignored", self.community, sender)
                continue
            self._take(data.decode("utf-8", errors="replace"))

    def _take(self, message: str) -> None:
        self.last_s = time.monotonic()
        for line in message.splitlines():
            key, _, value = line.partition("=")
            if key == "READY" and value == "1":
                self.ready = True
            elif key == "STATUS" and value != self.status:
                self.status = value
                log.info("community %s: %s", self.community, value)
                self.on_status()
            elif key == "STOPPING" and value == "1":
                self.status = "stopping"
                self.on_status()

    def starved_for(self, watchdog_s: float, start_timeout_s: float) -> float:
        """Seconds left before the hub counts as stuck: ``watchdog_s`` after its last message once it said
        READY, ``start_timeout_s`` after its start before that; ≤ 0 when it is stuck now."""
        limit = watchdog_s if self.ready else start_timeout_s
        return self.last_s + limit - time.monotonic()
