"""systemd's service notifications (sd_notify), written without libsystemd: READY, WATCHDOG, STOPPING.

Under ``Type=notify`` with ``WatchdogSec=`` (deploy/systemd/anju-hub.service), systemd gives the hub a datagram
socket in ``NOTIFY_SOCKET`` and the watchdog period in ``WATCHDOG_USEC``. The hub says ``READY=1`` once its runtime
is open (store, alerts, ingest started), then ``WATCHDOG=1`` every half period from a task on its event loop — so a
hub whose loop is stuck (a blocking call, a deadlock) stops pinging and systemd restarts it — and ``STOPPING=1`` as
it shuts down. Without ``NOTIFY_SOCKET`` (not under systemd, tests, the demo) every call does nothing.
"""

import asyncio
import logging
import os
import socket

__all__ = ["notify", "watchdog_forever"]

log = logging.getLogger("anju.hub.systemd")


def notify(message: str) -> bool:
    """Send ``message`` (``READY=1``, ``WATCHDOG=1`` …) to systemd; False when not under systemd or it fails."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket: a leading NUL byte instead of the @
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("systemd notification %r not sent: %s", message, exc)
        return False
    return True


def watchdog_period_s() -> float | None:
    """Half of systemd's ``WATCHDOG_USEC`` in seconds (ping twice per period), None when no watchdog is asked for
    or it is meant for another process (``WATCHDOG_PID``)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.05, int(usec) / 2_000_000)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number of microseconds: no watchdog pings", usec)
        return None


async def watchdog_forever() -> None:
    """Ping systemd's watchdog from the event loop every half period until cancelled (returns at once without one)."""
    period_s = watchdog_period_s()
    if period_s is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(period_s)
