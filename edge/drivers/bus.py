"""Open the detectors' bus: Modbus TCP, or Modbus RTU over an RS-485 serial adapter.

One contract for the driver whichever the wiring: the returned pymodbus client connects, reads input
registers by unit id and closes. Retries are 0 on both: the next poll (``poll_interval_s`` later) is the
retry, so one dead detector never holds up the others.
"""

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from edge.config import ModbusConfig

__all__ = ["describe", "open_bus"]


def open_bus(config: ModbusConfig) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
    if config.serial:
        return AsyncModbusSerialClient(
            config.serial,
            framer=FramerType.RTU,
            baudrate=config.baudrate,
            bytesize=8,
            parity="N",
            stopbits=1,
            timeout=config.timeout_s,
            retries=0,
        )
    return AsyncModbusTcpClient(config.host, port=config.port, timeout=config.timeout_s, retries=0)


def describe(config: ModbusConfig) -> str:
    """Where the bus is, for log lines."""
    return f"RTU {config.serial} {config.baudrate} 8N1" if config.serial else f"TCP {config.host}:{config.port}"
