"""Sensor kinds: the quantity each measures, its wire unit, its physical range and its standard set points.

Set points are the published values of the standards, each citing its source as "<source>: <detail>" (the
part before the colon is shown to people in notifications); tags say how firm a value is: [S] a standard,
[V] vendor or practice, [U] commonly cited but unconfirmed, [D] Anju's own grading choice. The hub's default
detection rules and the edge's local alarm check both derive from this one table, so a gateway that has
lost its uplink alarms at the same level the hub would. Every value stays configurable per deployment.
"""

from dataclasses import dataclass

__all__ = ["KINDS", "SensorKind", "SetPoint", "kind_for"]


@dataclass(frozen=True, slots=True)
class SetPoint:
    """A level at which a kind's reading becomes a risk.

    ``above`` says which side is dangerous. ``clear`` is the hysteresis level the value must come back past
    before the condition counts as cleared (it stops flapping around the set point). ``grade`` is the
    suggested alert grade, 4 (IV blue) … 1 (I red); sensor evidence alone never suggests better than 2.
    """

    name: str
    value: float
    clear: float
    above: bool
    grade: int
    source: str

    def crossed(self, value: float) -> bool:
        """True when ``value`` is on the dangerous side of this set point."""
        return value >= self.value if self.above else value <= self.value

    def cleared(self, value: float) -> bool:
        """True when ``value`` is back past the clear level (hysteresis)."""
        return value < self.clear if self.above else value > self.clear


@dataclass(frozen=True, slots=True)
class SensorKind:
    """What a detector measures and what values it can physically report."""

    name: str
    unit: str
    label_zh: str
    label_en: str
    minimum: float
    maximum: float
    set_points: tuple[SetPoint, ...]

    @property
    def local_alarm(self) -> SetPoint | None:
        """The set point at which the edge sounds its local alarm: the first one of grade III or worse."""
        return next((s for s in self.set_points if s.grade <= 3), None)


_GAS = SensorKind(
    name="gas",
    unit="%LEL",
    label_zh="可燃气体",
    label_en="combustible gas",
    minimum=0.0,
    maximum=100.0,
    set_points=(
        SetPoint("pre-warning", 10.0, 8.0, True, 4, "household detector practice [U]: alarms from ~10-25 %LEL"),
        SetPoint("level-1 alarm", 25.0, 20.0, True, 3, "GB/T 50493-2019 §5.5.2: level 1 alarm <= 25 %LEL"),
        SetPoint("level-2 alarm", 50.0, 40.0, True, 2, "GB/T 50493-2019 §5.5.2: level 2 alarm <= 50 %LEL"),
    ),
)
_SMOKE = SensorKind(
    name="smoke",
    unit="dB/m",
    label_zh="感烟",
    label_en="smoke",
    minimum=0.0,
    maximum=20.0,
    set_points=(SetPoint("alarm", 0.15, 0.10, True, 3, "GB 4715-2024: type B response threshold >= 0.15 dB/m"),),
)
_TEMPERATURE = SensorKind(
    name="temperature",
    unit="Cel",
    label_zh="感温",
    label_en="temperature",
    minimum=-40.0,
    maximum=200.0,
    set_points=(
        SetPoint("above ambient", 50.0, 45.0, True, 4, "EN 54-5 / GB 4716: class A1 normal ambient <= 50 °C"),
        SetPoint("static alarm", 54.0, 50.0, True, 3, "EN 54-5 / GB 4716: class A1 static response from 54 °C"),
        SetPoint("static alarm, all A1", 65.0, 60.0, True, 2, "EN 54-5 / GB 4716: class A1 responds by 65 °C"),
    ),
)
_WATER_DEPTH = SensorKind(
    name="water-depth",
    unit="m",
    label_zh="积水深度",
    label_en="waterlogging depth",
    minimum=0.0,
    maximum=5.0,
    set_points=(
        SetPoint("pre-warning", 0.05, 0.03, True, 4, "Anju grading [D]: pre-warning from 5 cm"),
        SetPoint(
            "waterlogging", 0.10, 0.07, True, 3, "city waterlogging platforms [V]: > 10 cm above a cover shown red"
        ),
        SetPoint("deep water", 0.15, 0.12, True, 2, "road drainage design target [U]: <= 15 cm on one traffic lane"),
    ),
)

KINDS: dict[str, SensorKind] = {k.name: k for k in (_GAS, _SMOKE, _TEMPERATURE, _WATER_DEPTH)}


def kind_for(name: str) -> SensorKind | None:
    """The kind called ``name``, or None when Anju does not know it."""
    return KINDS.get(name)
