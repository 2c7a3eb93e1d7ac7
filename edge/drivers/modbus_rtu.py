"""Modbus RTU transport: RS-485 detectors on a serial adapter (e.g. /dev/ttyUSB0), 8N1, through pymodbus.

The blocking pymodbus client is used because reads already run in the driver's worker thread. Retries are 0:
the next poll is the retry, so one dead detector never holds up the others. On an RS-485 line a timeout means
that one unit stayed silent (``NoAnswer``); only a port that cannot be opened or fails is ``BusDown``.

pymodbus 3.16 API: ``ModbusSerialClient(port, framer=FramerType.RTU, baudrate=, bytesize=, parity=, stopbits=,
timeout=, retries=)``, ``connect() -> bool``, ``read_input_registers(address, count=, device_id=)`` returning
a response with ``isError()`` and ``registers``; a missing answer raises ``ModbusIOException``.
"""

import struct

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException

from edge.drivers.transport import BusDown, NoAnswer

__all__ = ["RtuTransport"]


class RtuTransport:
    """Reads input registers from the units on one RS-485 line."""

    def __init__(self, *, device: str, baudrate: int, timeout_s: float) -> None:
        self._device = device
        self._baudrate = baudrate
        self._client = ModbusSerialClient(
            device,
            framer=FramerType.RTU,
            baudrate=baudrate,
            bytesize=8,
            parity="N",
            stopbits=1,
            timeout=timeout_s,
            retries=0,
        )

    def read_input_registers(self, unit_id: int, address: int, count: int) -> bytes:
        if not self._client.connected and not self._client.connect():
            raise BusDown(f"cannot open {self._where()}")
        try:
            response = self._client.read_input_registers(address, count=count, device_id=unit_id)
        except ConnectionException as exc:
            self._client.close()  # type: ignore[no-untyped-call]
            raise BusDown(f"{self._where()} failed: {exc}") from None
        except (ModbusException, OSError) as exc:
            raise NoAnswer(unit_id, f"{type(exc).__name__}: {exc}") from None
        if response.isError():
            raise NoAnswer(unit_id, f"exception response {response}")
        registers = list(response.registers)
        if len(registers) != count:
            raise NoAnswer(unit_id, f"short read of {len(registers)} registers")
        return struct.pack(f">{count}H", *registers)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def _where(self) -> str:
        return f"Modbus RTU {self._device} {self._baudrate} 8N1"
