"""Units allowed on the wire.

SenML units (RFC 8428 §12.1 registry) wherever one exists; a documented few of our own where the
standards that set the alarm points use a unit SenML lacks. Anything else is rejected by the decoder.
"""

from dataclasses import dataclass

__all__ = ["UNITS", "Unit"]


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit symbol as it appears in the SenML ``u`` field."""

    symbol: str
    description: str
    senml: bool
    """True when registered by RFC 8428; False for Anju's own symbols."""


_ALL = (
    Unit("Cel", "degrees Celsius", True),
    Unit("%RH", "relative humidity, percent", True),
    Unit("ppm", "parts per million (volume)", True),
    Unit("m", "metre", True),
    Unit("A", "ampere", True),
    Unit("Pa", "pascal", True),
    Unit("%", "percent", True),
    Unit("V", "volt", True),
    Unit("m3", "cubic metre", True),
    Unit("/", "ratio, dimensionless", True),
    Unit("%EL", "remaining battery energy, percent", True),
    Unit("dBW", "decibel relative to 1 W (signal strength)", True),
    # Anju's own, each because the governing standard states its set points in it:
    Unit("%LEL", "percent of the lower explosive limit (GB/T 50493-2019 set points)", False),
    Unit("dB/m", "smoke obscuration, decibel per metre (GB 4715-2024 response thresholds)", False),
    Unit("deg", "angle in degrees (manhole cover tilt; vendors state set points in degrees)", False),
)

UNITS: dict[str, Unit] = {u.symbol: u for u in _ALL}
