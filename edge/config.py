"""The gateway's configuration: one TOML file, validated into frozen dataclasses.

Unknown keys are errors, and every error names the key and the bad value (``ConfigError``), so a typo in a
field installer's file fails at ``anju-edge check-config`` rather than silently falling back to a default.
Relative paths (``outbox``, ``mqtt.password_file``) are relative to the config file. Secrets are never held
here: only the path of the password file, which the MQTT session reads when it connects.
"""

import math
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from protocol.ids import is_valid_id
from protocol.kinds import KINDS
from protocol.registers import KIND_EXPONENTS

__all__ = ["ConfigError", "EdgeConfig", "ModbusConfig", "MqttConfig", "SensorConfig", "load_config", "parse_config"]

_T = TypeVar("_T")
_BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
"""The rates RS-485 detectors offer; 9600 8N1 is the common default."""
DEFAULT_OUTBOX_MAX_BYTES = 256 * 1024 * 1024
"""Issue 3: a day of 500 sensors at 1 Hz is ~43 M readings of ~60 bytes; 256 MiB holds hours of outage."""


class ConfigError(Exception):
    """A configuration value was refused: ``key`` is its dotted path, ``value`` what was found, ``reason`` why."""

    def __init__(self, *, key: str, value: object, reason: str, source: str = "") -> None:
        self.key = key
        self.value = value
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key} = {value!r}: {reason}")


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password_file: Path | None = None
    keepalive_s: int = 30


@dataclass(frozen=True, slots=True)
class ModbusConfig:
    """The detectors' bus: Modbus TCP at ``host:port``, or Modbus RTU on the RS-485 adapter ``serial`` (a
    device path such as /dev/ttyUSB0) at ``baudrate`` 8N1 when ``serial`` is set."""

    host: str = "127.0.0.1"
    port: int = 502
    timeout_s: float = 1.0
    serial: str = ""
    baudrate: int = 9600


@dataclass(frozen=True, slots=True)
class SensorConfig:
    """One detector on the bus. ``alarm_above`` is the local alarm set point in the kind's unit."""

    id: str
    kind: str
    unit_id: int
    alarm_above: float | None = None

    @property
    def unit(self) -> str:
        return KINDS[self.kind].unit

    @property
    def exponent(self) -> int:
        return KIND_EXPONENTS[self.kind]


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    community: str
    gateway: str
    outbox: Path
    mqtt: MqttConfig
    modbus: ModbusConfig
    sensors: tuple[SensorConfig, ...]
    poll_interval_s: float = 0.5
    publish_interval_s: float = 1.0
    max_batch: int = 500
    ack_timeout_s: float = 10.0
    outbox_max_bytes: int = DEFAULT_OUTBOX_MAX_BYTES
    alarm_command: tuple[str, ...] = ()
    alarm_gpio_pin: int | None = None
    """BCM number of the GPIO pin driving the local alarm relay or buzzer (Raspberry Pi), if any."""
    health_interval_s: float = 60.0

    @property
    def client_id(self) -> str:
        return f"anju-edge-{self.community}-{self.gateway}"


class _Section:
    """Typed access to one TOML table that remembers which keys were read, to refuse the others."""

    def __init__(self, data: Mapping[str, object], prefix: str, source: str) -> None:
        self._data = data
        self._prefix = prefix
        self._source = source
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def error(self, name: str, value: object, reason: str) -> ConfigError:
        return ConfigError(key=self.key(name), value=value, reason=reason, source=self._source)

    def get(self, name: str, kind: type[_T], default: _T | None = None) -> _T:
        self._seen.add(name)
        if name not in self._data:
            if default is None:
                raise self.error(name, None, "is required")
            return default
        value = self._data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            raise self.error(name, value, f"must be of type {kind.__name__}")
        return value

    def positive(self, name: str, kind: type[int] | type[float], default: float | None) -> float:
        value = self.get(name, kind, default)
        if not math.isfinite(value) or value <= 0:
            raise self.error(name, value, "must be a finite number > 0")
        return value

    def identifier(self, name: str) -> str:
        value = self.get(name, str)
        if not is_valid_id(value):
            raise self.error(name, value, "must match [a-z0-9-]{1,64}")
        return value

    def port(self, name: str, default: int) -> int:
        value = self.get(name, int, default)
        if not 1 <= value <= 65535:
            raise self.error(name, value, "must be a TCP port 1-65535")
        return value

    def table(self, name: str) -> Mapping[str, object]:
        value = self.get(name, dict, {})
        return value

    def check_unknown(self) -> None:
        for name in self._data:
            if name not in self._seen:
                raise self.error(name, self._data[name], "unknown key")


def _optional_path(section: _Section, name: str, base: Path) -> Path | None:
    value = section.get(name, str, "")
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else base / path


def _required_path(section: _Section, name: str, base: Path) -> Path:
    value = section.get(name, str)
    if not value:
        raise section.error(name, value, "must not be empty")
    path = Path(value)
    return path if path.is_absolute() else base / path


def _sensor(data: object, index: int, source: str) -> SensorConfig:
    prefix = f"sensors[{index}]."
    if not isinstance(data, dict):
        raise ConfigError(key=f"sensors[{index}]", value=data, reason="must be a table", source=source)
    section = _Section(data, prefix, source)
    sensor_id = section.identifier("id")
    kind = section.get("kind", str)
    if kind not in KINDS or kind not in KIND_EXPONENTS:
        raise section.error("kind", kind, f"unknown kind, expected one of {sorted(KINDS)}")
    unit_id = section.get("unit_id", int)
    if not 1 <= unit_id <= 247:
        raise section.error("unit_id", unit_id, "must be a Modbus unit id 1-247")
    alarm_above: float | None = None
    if "alarm_above" in data:
        alarm_above = section.get("alarm_above", float)
        if not math.isfinite(alarm_above):
            raise section.error("alarm_above", alarm_above, "must be a finite number")
    section.check_unknown()
    return SensorConfig(id=sensor_id, kind=kind, unit_id=unit_id, alarm_above=alarm_above)


def parse_config(data: Mapping[str, object], *, base_dir: Path, source: str = "") -> EdgeConfig:
    """Validate parsed TOML into an ``EdgeConfig``; raises ``ConfigError`` naming the first bad key."""
    top = _Section(data, "", source)
    community = top.identifier("community")
    gateway = top.identifier("gateway")
    outbox = _required_path(top, "outbox", base_dir)
    poll = top.positive("poll_interval_s", float, 0.5)
    publish = top.positive("publish_interval_s", float, 1.0)
    max_batch = int(top.positive("max_batch", int, 500))
    if max_batch > 5000:
        raise top.error("max_batch", max_batch, "must be <= 5000 (protocol.MAX_READINGS_PER_BATCH)")
    ack_timeout = top.positive("ack_timeout_s", float, 10.0)
    max_bytes = int(top.positive("outbox_max_bytes", int, DEFAULT_OUTBOX_MAX_BYTES))
    if max_bytes < 64 * 1024:
        raise top.error("outbox_max_bytes", max_bytes, "must be >= 65536")
    health_interval = top.positive("health_interval_s", float, 60.0)
    if not 0.1 <= health_interval <= 86_400:
        raise top.error("health_interval_s", health_interval, "must be between 0.1 and 86400 seconds")
    command_text = top.get("alarm_command", str, "")
    try:
        command = tuple(shlex.split(command_text))
    except ValueError as exc:
        raise top.error("alarm_command", command_text, f"cannot be split into arguments: {exc}") from None
    gpio_pin: int | None = None
    if "alarm_gpio_pin" in data:
        gpio_pin = top.get("alarm_gpio_pin", int)
        if not 2 <= gpio_pin <= 27:
            raise top.error("alarm_gpio_pin", gpio_pin, "a BCM GPIO number of the 40-pin header, 2..27")

    mqtt_section = _Section(top.table("mqtt"), "mqtt.", source)
    mqtt = MqttConfig(
        host=mqtt_section.get("host", str, "127.0.0.1"),
        port=mqtt_section.port("port", 1883),
        username=mqtt_section.get("username", str, ""),
        password_file=_optional_path(mqtt_section, "password_file", base_dir),
        keepalive_s=int(mqtt_section.positive("keepalive_s", int, 30)),
    )
    if not mqtt.host:
        raise mqtt_section.error("host", mqtt.host, "must not be empty")
    if mqtt.password_file is not None and not mqtt.username:
        raise mqtt_section.error("password_file", str(mqtt.password_file), "needs mqtt.username")
    mqtt_section.check_unknown()

    modbus_section = _Section(top.table("modbus"), "modbus.", source)
    modbus = ModbusConfig(
        host=modbus_section.get("host", str, "127.0.0.1"),
        port=modbus_section.port("port", 502),
        timeout_s=modbus_section.positive("timeout_s", float, 1.0),
        serial=modbus_section.get("serial", str, ""),
        baudrate=modbus_section.get("baudrate", int, 9600),
    )
    if modbus.baudrate not in _BAUDRATES:
        raise modbus_section.error("baudrate", modbus.baudrate, f"one of {', '.join(map(str, _BAUDRATES))}")
    if modbus.serial and not modbus.serial.startswith("/dev/"):
        raise modbus_section.error("serial", modbus.serial, "a serial device path under /dev/ (e.g. /dev/ttyUSB0)")
    modbus_section.check_unknown()

    raw_sensors = top.get("sensors", list)
    sensors = tuple(_sensor(item, i, source) for i, item in enumerate(raw_sensors))
    if not sensors:
        raise top.error("sensors", raw_sensors, "at least one sensor is required")
    seen_ids: set[str] = set()
    seen_units: set[int] = set()
    for i, sensor in enumerate(sensors):
        if sensor.id in seen_ids:
            raise ConfigError(key=f"sensors[{i}].id", value=sensor.id, reason="duplicate sensor id", source=source)
        if sensor.unit_id in seen_units:
            raise ConfigError(
                key=f"sensors[{i}].unit_id", value=sensor.unit_id, reason="duplicate unit id", source=source
            )
        seen_ids.add(sensor.id)
        seen_units.add(sensor.unit_id)
    top.check_unknown()
    return EdgeConfig(
        community=community,
        gateway=gateway,
        outbox=outbox,
        mqtt=mqtt,
        modbus=modbus,
        sensors=sensors,
        poll_interval_s=poll,
        publish_interval_s=publish,
        max_batch=max_batch,
        ack_timeout_s=ack_timeout,
        outbox_max_bytes=max_bytes,
        alarm_command=command,
        alarm_gpio_pin=gpio_pin,
        health_interval_s=health_interval,
    )


def load_config(path: Path) -> EdgeConfig:
    """Read and validate a TOML config file; raises ``ConfigError`` (also for unreadable or invalid TOML)."""
    source = str(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(key="<file>", value=source, reason=f"cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(key="<file>", value=source, reason=f"is not valid TOML: {exc}") from None
    return parse_config(data, base_dir=path.resolve().parent, source=source)
