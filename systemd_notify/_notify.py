"""systemd's service notifications (sd_notify), written without libsystemd: READY, WATCHDOG, STOPPING.

Under ``Type=notify`` with ``WatchdogSec=`` (deploy/systemd/anju-hub.service, anju-edge.service), systemd gives the
process a datagram socket in ``NOTIFY_SOCKET`` and the watchdog interval in ``WATCHDOG_USEC``. The process says
``READY=1`` once it runs, then ``WATCHDOG=1`` every half interval from a task on its event loop — so a process whose
loop is stuck (a blocking call, a deadlock) stops pinging and systemd restarts it — and ``STOPPING=1`` as it shuts
down. A process whose event loop can run while the work it exists for is stuck (the edge agent's poll loop waiting
on a bus thread) passes ``alive``: no ping while it says False. Without ``NOTIFY_SOCKET`` (not under systemd, tests,
the demo) every call does nothing.
"""

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable

__all__ = ["notify", "watchdog_forever", "watchdog_interval_s"]

log = logging.getLogger("anju.systemd")


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


def watchdog_interval_s() -> float | None:
    """systemd's ``WATCHDOG_USEC`` in seconds (``WatchdogSec=``: the longest it waits for a ping), None when no
    watchdog is asked for or it is meant for another process (``WATCHDOG_PID``)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.1, int(usec) / 1_000_000)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number of microseconds: no watchdog pings", usec)
        return None


async def watchdog_forever(alive: Callable[[], bool] | None = None) -> None:
    """Ping systemd's watchdog from the event loop every half interval until cancelled, skipping the pings while
    ``alive()`` says False (returns at once without a watchdog). Two pings per interval: one late wake-up of the
    loop does not cost a restart."""
    interval_s = watchdog_interval_s()
    if interval_s is None:
        return
    stuck = False
    while True:
        if alive is None or alive():
            if stuck:
                log.warning("the loop the watchdog guards made progress again: watchdog pings resume")
                stuck = False
            notify("WATCHDOG=1")
        elif not stuck:
            stuck = True
            log.error(
                "the loop the watchdog guards made no progress: watchdog pings stop, systemd restarts the service "
                "within %.0f s unless it recovers",
                interval_s,
            )
        await asyncio.sleep(interval_s / 2)


@contextlib.asynccontextmanager
async def serving(name: str) -> AsyncIterator[None]:
    """While the body runs, the service is ready: READY=1 on entry, the watchdog fed (task ``name``), and
    STOPPING=1 on exit — what an API server's lifespan says once everything it serves is open."""
    notify("READY=1")
    watchdog = asyncio.create_task(watchdog_forever(), name=name)
    try:
        yield
    finally:
        notify("STOPPING=1")
        watchdog.cancel()
