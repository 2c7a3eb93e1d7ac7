"""The local alarm relay: energised while any sensor is in local alarm, released when all have cleared.

There is no GPIO on this machine, so the pins are gpiozero's own mock pin factory (the library's documented
way to run without hardware); the relay logic and gpiozero's OutputDevice are the real ones.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from edge.config import ConfigError, parse_config
from edge.relay import AlarmRelay, RelayUnavailable, open_relay


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous


def test_relay_follows_the_union_of_local_alarms(pins: MockFactory) -> None:
    relay: AlarmRelay = open_relay(17)
    pin = pins.pin(17)
    assert pin.state is False
    relay.set("gas-b1-301", True)
    relay.set("smoke-b1-f3", True)
    assert pin.state is True
    relay.set("gas-b1-301", False)
    assert pin.state is True, "another sensor is still in alarm"
    relay.set("smoke-b1-f3", False)
    assert pin.state is False
    relay.close()


def test_a_pin_that_cannot_be_driven_is_a_clear_error(pins: MockFactory) -> None:
    held = open_relay(17)
    with pytest.raises(RelayUnavailable, match="alarm_gpio_pin = 17: cannot drive the pin here"):
        open_relay(17)
    held.close()


def test_the_pin_is_validated_in_the_config(tmp_path: Path) -> None:
    data = {
        "community": "hongxing",
        "gateway": "gw-b1",
        "outbox": "o.sqlite3",
        "sensors": [{"id": "g", "kind": "gas", "unit_id": 1}],
    }
    assert parse_config({**data, "alarm_gpio_pin": 17}, base_dir=tmp_path).alarm_gpio_pin == 17
    assert parse_config(data, base_dir=tmp_path).alarm_gpio_pin is None
    with pytest.raises(ConfigError, match=r"alarm_gpio_pin = 40"):
        parse_config({**data, "alarm_gpio_pin": 40}, base_dir=tmp_path)
