"""Anju edge: the gateway agent that runs on a Raspberry Pi.

It reads the detectors on the gateway's bus (``edge.drivers``), stores every reading in a durable outbox before
it counts as taken (``edge.outbox``), trips local alarms, and publishes SenML batches to the hub over MQTT
(``edge.session``) until the hub acknowledges them (``edge.agent``). Run it with ``anju-edge run --config FILE``.
Imports only ``protocol``, paho-mqtt, pymodbus, orjson and the standard library.
"""

from edge.config import ConfigError, EdgeConfig, load_config

__all__ = ["ConfigError", "EdgeConfig", "load_config"]
