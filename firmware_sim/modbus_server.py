"""One simulated gateway: a Modbus TCP server on which every detector is one unit id.

This is how detectors are wired in the field: RS-485 detectors behind a Modbus TCP gateway, each with its
own unit id. Each unit serves the input registers 0-135 of :mod:`protocol.registers` (function code 04
only; any other function gets exception 01, addresses past 135 exception 02). A unit id that no detector
has gets exception 0x0B "gateway target device failed to respond" — what a real TCP/RS-485 gateway answers
when nothing on its bus replies.

Built on pymodbus 3.16's server API: :class:`pymodbus.server.ModbusTcpServer` with a list of
:class:`pymodbus.simulator.SimDevice` (one per unit id, plus id 0 as the catch-all for unknown ids), and
``ModbusTcpServer.async_setValues`` to update registers each tick. (``ModbusDeviceContext`` /
``ModbusServerContext`` are deprecated in 3.16 and log a warning.)
"""

from collections.abc import Iterable
from types import TracebackType
from typing import Self

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimAction, SimData, SimDevice

from protocol.registers import (
    HEADER_ADDRESS,
    RING_ADDRESS,
    RING_COUNT,
    Header,
    Sample,
    encode_header,
    encode_sample,
    ring_slot,
)

__all__ = ["READ_INPUT_REGISTERS", "REGISTER_COUNT", "GatewayServer"]

READ_INPUT_REGISTERS = 4
REGISTER_COUNT = RING_ADDRESS + RING_COUNT
"""Registers 0..135 exist on every unit."""


async def _input_registers_only(
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    current_registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    """Detectors expose input registers only: refuse every other function (writes included)."""
    return None if function_code == READ_INPUT_REGISTERS else ExcCodes.ILLEGAL_FUNCTION


async def _no_such_unit(
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    current_registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    """Unit id 0 catches every unit id nobody has: answer like a gateway whose bus stayed silent."""
    return ExcCodes.GATEWAY_NO_RESPONSE


def _unit(unit_id: int, action: SimAction) -> SimDevice:
    block = SimData(address=0, count=REGISTER_COUNT, values=0, datatype=DataType.REGISTERS)
    return SimDevice(id=unit_id, simdata=[block], action=action)


class GatewayServer:
    """The bus of one simulated gateway, serving its detectors' unit ids while in ``async with``: Modbus TCP on
    ``host:port``, or Modbus RTU on the serial device ``serial_port`` (an RS-485 adapter, or one end of a
    :class:`firmware_sim.serial_link.NullModem`) at ``baudrate`` 8N1, as RS-485 detectors are wired."""

    def __init__(
        self,
        *,
        gateway_id: str,
        host: str = "127.0.0.1",
        port: int = 0,
        unit_ids: Iterable[int],
        serial_port: str | None = None,
        baudrate: int = 9600,
    ) -> None:
        self.gateway_id = gateway_id
        self.host = host
        self.port = port
        self.serial_port = serial_port
        self.baudrate = baudrate
        self.unit_ids = tuple(unit_ids)
        if serial_port is None and not 1 <= port <= 65535:
            raise ValueError(f"port must be 1..65535, got {port}")
        if not self.unit_ids or any(not 1 <= u <= 247 for u in self.unit_ids):
            raise ValueError(f"unit ids must be 1..247, got {self.unit_ids}")
        if len(set(self.unit_ids)) != len(self.unit_ids):
            raise ValueError(f"duplicate unit ids: {self.unit_ids}")
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._muted: set[int] = set()

    def mute(self, unit_ids: set[int]) -> None:
        """Make these units silent on the bus (dropout fault); every other unit answers again."""
        self._muted = set(unit_ids)

    def _action_for(self, unit_id: int) -> SimAction:
        async def act(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            current_registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            if unit_id in self._muted:
                return ExcCodes.GATEWAY_NO_RESPONSE  # what a TCP gateway answers when the bus stays silent
            return await _input_registers_only(
                function_code, start_address, address, count, current_registers, set_values
            )

        return act

    async def __aenter__(self) -> Self:
        devices = [_unit(u, self._action_for(u)) for u in self.unit_ids]
        devices.append(_unit(0, _no_such_unit))
        server: ModbusTcpServer | ModbusSerialServer
        if self.serial_port is not None:
            server = ModbusSerialServer(
                devices, framer=FramerType.RTU, port=self.serial_port, baudrate=self.baudrate, timeout=1
            )
        else:
            server = ModbusTcpServer(devices, address=(self.host, self.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            await server.shutdown()  # type: ignore[no-untyped-call]
            where = self.serial_port or f"{self.host}:{self.port}"
            raise OSError(f"gateway {self.gateway_id}: cannot listen on {where}") from exc
        self._server = server
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    def _running(self) -> ModbusTcpServer | ModbusSerialServer:
        if self._server is None:
            raise RuntimeError(f"gateway {self.gateway_id} server is not running")
        return self._server

    async def set_header(self, unit_id: int, header: Header) -> None:
        """Write registers 0-15 of ``unit_id``."""
        await self._running().async_setValues(unit_id, READ_INPUT_REGISTERS, HEADER_ADDRESS, encode_header(header))

    async def publish(self, unit_id: int, sample: Sample, header: Header) -> None:
        """Store ``sample`` in its ring entry, then the header whose counter announces it.

        The ring entry goes first so a reader that sees counter ``s`` always finds sample ``s`` in the ring.
        Neither write suspends, so no request is served between them.
        """
        server = self._running()
        await server.async_setValues(unit_id, READ_INPUT_REGISTERS, ring_slot(sample.seq), encode_sample(sample))
        await server.async_setValues(unit_id, READ_INPUT_REGISTERS, HEADER_ADDRESS, encode_header(header))
