"""The local alarm output on a Raspberry Pi: a relay or buzzer on one GPIO pin, through gpiozero.

On while any sensor of the gateway is in local alarm, off when all have cleared, so a siren in the stairwell
sounds even when the hub and the broker are unreachable (DESIGN.md "Alarms trip locally"). gpiozero is
imported only when ``alarm_gpio_pin`` is configured (``pip install 'anju[edge,pi]'``; Raspberry Pi OS ships
it as python3-gpiozero); without a pin the local alarm is the log line and the optional ``alarm_command``.
"""

import logging
from typing import Protocol

__all__ = ["AlarmRelay", "RelayUnavailable", "open_relay"]

_log = logging.getLogger("edge.agent")


class _Output(Protocol):
    def on(self) -> None: ...
    def off(self) -> None: ...
    def close(self) -> None: ...


class RelayUnavailable(Exception):
    """``alarm_gpio_pin`` is set but the pin cannot be driven here; carries the pin and why."""

    def __init__(self, pin: int, reason: str) -> None:
        self.pin = pin
        self.reason = reason
        super().__init__(f"alarm_gpio_pin = {pin}: {reason}")


class AlarmRelay:
    """Drives the output from the set of sensors currently in local alarm."""

    def __init__(self, output: _Output, pin: int) -> None:
        self._output = output
        self.pin = pin
        self._active: set[str] = set()

    @property
    def energised(self) -> bool:
        return bool(self._active)

    def set(self, sensor: str, in_alarm: bool) -> None:
        was = self.energised
        (self._active.add if in_alarm else self._active.discard)(sensor)
        if self.energised and not was:
            self._output.on()
            _log.warning("alarm relay on GPIO %d energised (%s)", self.pin, sensor)
        elif was and not self.energised:
            self._output.off()
            _log.info("alarm relay on GPIO %d released: every local alarm cleared", self.pin)

    def close(self) -> None:
        self._output.off()
        self._output.close()


def open_relay(pin: int) -> AlarmRelay:
    """Claim BCM pin ``pin`` as an output, initially off. Raises RelayUnavailable naming the cause."""
    try:
        from gpiozero import OutputDevice
        from gpiozero.exc import GPIOZeroError
    except ImportError:
        raise RelayUnavailable(pin, "gpiozero is not installed (pip install 'anju[edge,pi]')") from None
    try:
        output = OutputDevice(pin, active_high=True, initial_value=False)
    except GPIOZeroError as exc:
        raise RelayUnavailable(pin, f"cannot drive the pin here: {exc}") from exc
    return AlarmRelay(output, pin)
