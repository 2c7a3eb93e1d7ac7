"""The one contract every detector bus driver meets: read a block of input registers from one unit, blocking.

A poll round runs in the driver's own worker thread (blocking reads, as the hardware is), so the agent's event
loop never waits on a serial line. Transports raise exactly two errors:

- ``NoAnswer``: this unit did not answer (an exception response, or silence on an RS-485 bus); the next unit
  is still read;
- ``BusDown``: the bus itself is unusable (the TCP converter refused or reset the connection, or went silent);
  the round stops, every remaining unit counts as not answering, and the next round reconnects.
"""

from typing import Protocol

__all__ = ["BusDown", "NoAnswer", "Transport"]


class NoAnswer(Exception):
    """Unit ``unit_id`` gave no usable answer; ``reason`` says what came instead."""

    def __init__(self, unit_id: int, reason: str) -> None:
        self.unit_id = unit_id
        self.reason = reason
        super().__init__(f"unit {unit_id}: {reason}")


class BusDown(Exception):
    """The bus cannot be used until it is opened again; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Transport(Protocol):
    """A blocking register reader for one bus. Not thread-safe: one poll round at a time uses it."""

    def read_input_registers(self, unit_id: int, address: int, count: int) -> bytes:
        """The ``count`` registers from ``address`` (function code 04) as ``2 * count`` big-endian bytes."""
        ...

    def close(self) -> None:
        """Release the connection or serial port; the next read opens it again."""
        ...
