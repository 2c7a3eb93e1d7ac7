"""The gateway's configuration: one YAML file (``edge.yaml``), validated into frozen dataclasses.

Unknown keys are errors, and every error names the key, the bad value and the file:line (``ConfigError``), so a
typo in a field installer's file fails at ``anju-edge check-config`` rather than silently falling back to a
default. How the YAML is read, and which of its traps are refused, is ``edge.config_yaml``.
Relative paths (``outbox``, ``mqtt.password_file``, the ``mqtt`` TLS files) are relative to the config file.
Secrets are never held here: only the paths of the password and key files, which the MQTT session reads when it
connects.
"""

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge.config_yaml import ConfigError, Section, line_of, optional_path, read_yaml, required_path, type_reason
from protocol.kinds import KINDS
from protocol.registers import KIND_EXPONENTS
from protocol.transport import TlsFileError, client_tls_context

__all__ = [
    "ConfigError",
    "EdgeConfig",
    "ModbusConfig",
    "MqttConfig",
    "SensorConfig",
    "load_config",
    "parse_config",
    "parse_config_text",
]

_BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
"""The rates RS-485 detectors offer; 9600 8N1 is the common default."""
DRIVERS = ("modbus-tcp", "modbus-rtu", "sim")
"""The detector drivers (``edge.drivers``): Modbus TCP, Modbus RTU on RS-485, in-process simulation."""
DEFAULT_POLL_INTERVAL_S = 0.5
"""Half a second: a detector's alarm reaches the local relay and the hub well inside DESIGN.md's 1 s target."""
MIN_POLL_INTERVAL_S = 0.05
MAX_POLL_INTERVAL_S = 3600.0
DEFAULT_STATUS_INTERVAL_S = 60.0
"""A minute: a detector's low battery or tamper reaches the hub within a health interval or two."""
MIN_STATUS_INTERVAL_S = 5.0
MAX_STATUS_INTERVAL_S = 86_400.0
DEFAULT_OUTBOX_MAX_BYTES = 256 * 1024 * 1024
"""Issue 3: a day of 500 sensors at 1 Hz is ~43 M readings of ~60 bytes; 256 MiB holds hours of outage."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The broker connection. ``port`` defaults to 1883 (plain MQTT); a TLS listener is normally 8883.

    With ``tls`` the broker's certificate must chain to ``ca_file`` and match ``host`` (there is deliberately no
    option to skip the hostname check); ``cert_file`` + ``key_file`` (both or neither, the key unencrypted since
    the gateway starts unattended) are the gateway's client certificate for brokers that require one.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password_file: Path | None = None
    keepalive_s: int = 30
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class ModbusConfig:
    """The detectors' bus: Modbus TCP at ``host:port``, or Modbus RTU on the RS-485 adapter ``serial`` (a
    device path such as /dev/ttyUSB0) at ``baudrate`` 8N1 when ``serial`` is set."""

    host: str = "127.0.0.1"
    port: int = 502
    timeout_s: float = 1.0
    serial: str = ""
    baudrate: int = 9600
    driver: str = "modbus-tcp"
    """``modbus-tcp``, ``modbus-rtu`` (the default when ``serial`` is set) or ``sim``: in-process detectors
    sampling at ``sim_sample_hz``, for load tests without a bus (``edge.drivers.sim``)."""
    sim_sample_hz: float = 1.0
    status_interval_s: float = DEFAULT_STATUS_INTERVAL_S
    """Seconds between two reads of a detector's header registers (its own status, battery and fault flags, sent
    to the hub in the health report): 5 s to a day. Header reads are spread over the polls (``edge.drivers.modbus``),
    so a long bus never gets them all in one round."""

    def __post_init__(self) -> None:
        if self.serial and self.driver == "modbus-tcp":  # built in code with only a serial device: RS-485
            object.__setattr__(self, "driver", "modbus-rtu")


@dataclass(frozen=True, slots=True)
class SensorConfig:
    """One detector on the bus. ``alarm_above`` is the local alarm set point in the kind's unit;
    ``poll_interval_s`` this detector's own poll period in seconds (None: the gateway's ``poll_interval_s``)."""

    id: str
    kind: str
    unit_id: int
    alarm_above: float | None = None
    poll_interval_s: float | None = None

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
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    publish_interval_s: float = 1.0
    max_batch: int = 500
    ack_timeout_s: float = 10.0
    outbox_max_bytes: int = DEFAULT_OUTBOX_MAX_BYTES
    alarm_command: tuple[str, ...] = ()
    alarm_gpio_pin: int | None = None
    """BCM number of the GPIO pin driving the local alarm relay or buzzer (Raspberry Pi), if any."""
    health_interval_s: float = 60.0

    def poll_interval(self, sensor: SensorConfig) -> float:
        """Seconds between two reads of ``sensor``'s ring: its own period, else the gateway's."""
        return self.poll_interval_s if sensor.poll_interval_s is None else sensor.poll_interval_s

    @property
    def client_id(self) -> str:
        return f"anju-edge-{self.community}-{self.gateway}"


def _check_tls(section: Section, mqtt: MqttConfig) -> None:
    """Read and parse the TLS files at load time, so a bad path or PEM fails ``check-config``, not every reconnect."""
    files = {"ca_file": mqtt.ca_file, "cert_file": mqtt.cert_file, "key_file": mqtt.key_file}
    if not mqtt.tls:
        for name, path in files.items():
            if path is not None:
                raise section.error(name, str(path), "needs mqtt.tls = true")
        return
    try:
        client_tls_context(mqtt.ca_file, mqtt.cert_file, mqtt.key_file)
    except TlsFileError as exc:
        reason = exc.reason.replace("with TLS", "with mqtt.tls = true").replace("with key_file", "with mqtt.key_file")
        raise section.error(exc.field, None if exc.path is None else str(exc.path), reason) from None


def _sensor(data: object, index: int, source: str, line: int | None = None) -> SensorConfig:
    prefix = f"sensors[{index}]."
    if not isinstance(data, dict):
        reason = type_reason(dict, data)
        raise ConfigError(key=f"sensors[{index}]", value=data, reason=reason, source=source, line=line)
    section = Section(data, prefix, source)
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
    poll_interval: float | None = None
    if "poll_interval_s" in data:
        poll_interval = _poll_interval(section)
    section.check_unknown()
    return SensorConfig(
        id=sensor_id, kind=kind, unit_id=unit_id, alarm_above=alarm_above, poll_interval_s=poll_interval
    )


def _poll_interval(section: "Section") -> float:
    """A poll period in seconds: at least 50 ms (a bus round trip), at most an hour (a ring of 15 samples
    then only suits detectors that sample every 4 minutes or slower)."""
    value = section.positive("poll_interval_s", float, None)
    if not MIN_POLL_INTERVAL_S <= value <= MAX_POLL_INTERVAL_S:
        raise section.error(
            "poll_interval_s", value, f"must be between {MIN_POLL_INTERVAL_S} and {MAX_POLL_INTERVAL_S} seconds"
        )
    return value


def parse_config(data: Mapping[str, object], *, base_dir: Path, source: str = "") -> EdgeConfig:
    """Validate parsed YAML (or any mapping) into an ``EdgeConfig``; raises ``ConfigError`` naming the first bad
    key, with its line when ``data`` came from ruamel."""
    top = Section(data, "", source)
    community = top.identifier("community")
    gateway = top.identifier("gateway")
    outbox = required_path(top, "outbox", base_dir)
    poll = _poll_interval(top) if "poll_interval_s" in data else DEFAULT_POLL_INTERVAL_S
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

    mqtt_section = Section(top.table("mqtt"), "mqtt.", source)
    mqtt = MqttConfig(
        host=mqtt_section.get("host", str, "127.0.0.1"),
        port=mqtt_section.port("port", 1883),
        username=mqtt_section.get("username", str, ""),
        password_file=optional_path(mqtt_section, "password_file", base_dir),
        keepalive_s=int(mqtt_section.positive("keepalive_s", int, 30)),
        tls=mqtt_section.get("tls", bool, False),
        ca_file=optional_path(mqtt_section, "ca_file", base_dir),
        cert_file=optional_path(mqtt_section, "cert_file", base_dir),
        key_file=optional_path(mqtt_section, "key_file", base_dir),
    )
    if not mqtt.host:
        raise mqtt_section.error("host", mqtt.host, "must not be empty")
    if mqtt.password_file is not None and not mqtt.username:
        raise mqtt_section.error("password_file", str(mqtt.password_file), "needs mqtt.username")
    _check_tls(mqtt_section, mqtt)
    mqtt_section.check_unknown()

    modbus_section = Section(top.table("modbus"), "modbus.", source)
    serial = modbus_section.get("serial", str, "")
    driver = modbus_section.get("driver", str, "modbus-rtu" if serial else "modbus-tcp")
    if driver not in DRIVERS:
        raise modbus_section.error("driver", driver, f"one of {', '.join(DRIVERS)}")
    if (driver == "modbus-rtu") != bool(serial):
        raise modbus_section.error(
            "driver", driver, "modbus-rtu needs modbus.serial, and modbus.serial is only for modbus-rtu"
        )
    modbus = ModbusConfig(
        host=modbus_section.get("host", str, "127.0.0.1"),
        port=modbus_section.port("port", 502),
        timeout_s=modbus_section.positive("timeout_s", float, 1.0),
        serial=serial,
        baudrate=modbus_section.get("baudrate", int, 9600),
        driver=driver,
        sim_sample_hz=modbus_section.positive("sim_sample_hz", float, 1.0),
        status_interval_s=modbus_section.positive("status_interval_s", float, DEFAULT_STATUS_INTERVAL_S),
    )
    if not MIN_STATUS_INTERVAL_S <= modbus.status_interval_s <= MAX_STATUS_INTERVAL_S:
        reason = f"must be between {MIN_STATUS_INTERVAL_S:g} and {MAX_STATUS_INTERVAL_S:g} seconds"
        raise modbus_section.error("status_interval_s", modbus.status_interval_s, reason)
    if modbus.sim_sample_hz > 100:
        raise modbus_section.error("sim_sample_hz", modbus.sim_sample_hz, "must be <= 100")
    if modbus.baudrate not in _BAUDRATES:
        raise modbus_section.error("baudrate", modbus.baudrate, f"one of {', '.join(map(str, _BAUDRATES))}")
    if modbus.serial and not modbus.serial.startswith("/dev/"):
        raise modbus_section.error("serial", modbus.serial, "a serial device path under /dev/ (e.g. /dev/ttyUSB0)")
    modbus_section.check_unknown()

    raw_sensors = top.get("sensors", list)
    sensors = tuple(_sensor(item, i, source, line_of(raw_sensors, i)) for i, item in enumerate(raw_sensors))
    if not sensors:
        raise top.error("sensors", raw_sensors, "at least one sensor is required")
    seen_ids: set[str] = set()
    seen_units: set[int] = set()
    for i, sensor in enumerate(sensors):
        item = Section(raw_sensors[i], f"sensors[{i}].", source)
        if sensor.id in seen_ids:
            raise item.error("id", sensor.id, "duplicate sensor id")
        if sensor.unit_id in seen_units:
            raise item.error("unit_id", sensor.unit_id, "duplicate unit id")
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


def parse_config_text(text: str, *, base_dir: Path, source: str) -> EdgeConfig:
    """Validate YAML text (a file's or a pushed config's); relative paths are taken against ``base_dir``."""
    return parse_config(read_yaml(text, source), base_dir=base_dir, source=source)


def load_config(path: Path) -> EdgeConfig:
    """Read and validate a YAML config file; raises ``ConfigError`` (also for an unreadable or invalid file)."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(key="<file>", value=source, reason=f"cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(key="<file>", value=source, reason=f"is not UTF-8 text: {exc.reason}") from None
    return parse_config_text(text, base_dir=path.resolve().parent, source=source)
