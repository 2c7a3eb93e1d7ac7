"""A null-modem cable between two pseudo-terminals, standing in for an RS-485 adapter pair in tests and trials.

Linux pseudo-terminals come in master/slave pairs; only the slave side has a device path a serial library
can open. Two pairs with their masters relayed to each other give two paths, ``a`` and ``b``, that behave
like the two ends of a cable: the simulator serves Modbus RTU on ``a``, the gateway reads on ``b``. The relay
is a thread doing blocking ``select``; ``close`` stops it and closes every descriptor.
"""

import contextlib
import os
import select
import threading
import tty
from types import TracebackType
from typing import Self

__all__ = ["NullModem"]

_CHUNK = 4096


class NullModem:
    """Two linked serial device paths (``a`` and ``b``) while open."""

    def __init__(self) -> None:
        self._pairs = [os.openpty(), os.openpty()]
        for master, slave in self._pairs:
            tty.setraw(master)
            tty.setraw(slave)
        self.a = os.ttyname(self._pairs[0][1])
        self.b = os.ttyname(self._pairs[1][1])
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._relay, name="null-modem", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        a, b = self._pairs[0][0], self._pairs[1][0]
        peer = {a: b, b: a}
        while True:
            readable, _, _ = select.select([a, b, self._stop_r], [], [])
            if self._stop_r in readable:
                return
            for fd in readable:
                with contextlib.suppress(OSError):  # the other end not opened yet: bytes have nowhere to go
                    os.write(peer[fd], os.read(fd, _CHUNK))

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._stop_r, self._stop_w, *(fd for pair in self._pairs for fd in pair)):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
