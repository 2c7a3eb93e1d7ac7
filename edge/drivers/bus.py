"""Open the detectors' bus from the config: Modbus TCP, Modbus RTU over an RS-485 serial adapter, or the
in-process ``sim`` detectors for load tests.

One contract whichever the wiring (``edge.drivers.transport.Transport``); each transport's library is
imported only when that wiring is configured, so a TCP-only gateway never loads the serial stack.
"""

from collections.abc import Sequence

from edge.config import ModbusConfig, SensorConfig
from edge.drivers.transport import Transport

__all__ = ["describe", "open_transport"]


def open_transport(config: ModbusConfig, sensors: Sequence[SensorConfig]) -> Transport:
    if config.driver == "sim":
        from edge.drivers.sim import SimTransport

        return SimTransport(sensors=sensors, sample_hz=config.sim_sample_hz)
    if config.driver == "modbus-rtu":
        from edge.drivers.modbus_rtu import RtuTransport

        return RtuTransport(device=config.serial, baudrate=config.baudrate, timeout_s=config.timeout_s)
    from edge.drivers.modbus_tcp import TcpTransport

    return TcpTransport(host=config.host, port=config.port, timeout_s=config.timeout_s)


def describe(config: ModbusConfig) -> str:
    """Where the bus is, for log lines."""
    if config.driver == "sim":
        return f"in-process simulated detectors at {config.sim_sample_hz:g} Hz"
    return f"RTU {config.serial} {config.baudrate} 8N1" if config.serial else f"TCP {config.host}:{config.port}"
