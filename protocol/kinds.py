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


def _flag(name: str, label_zh: str, label_en: str, set_points: tuple[SetPoint, ...]) -> SensorKind:
    """A two-state detector (0 / 1, unit ``/``): alarms when the state is 1."""
    return SensorKind(name, "/", label_zh, label_en, 0.0, 1.0, set_points)


_CO = SensorKind(
    name="co",
    unit="ppm",
    label_zh="一氧化碳",
    label_en="carbon monoxide",
    minimum=0.0,
    maximum=2000.0,
    set_points=(
        SetPoint("sustained low level", 30.0, 25.0, True, 4, "EN 50291: no alarm at 30 ppm before 120 min"),
        SetPoint("alarm level", 100.0, 80.0, True, 3, "EN 50291: alarm at 100 ppm within 10-40 min"),
        SetPoint("danger level", 300.0, 250.0, True, 2, "EN 50291: alarm at 300 ppm within 3 min"),
    ),
)
_RESIDUAL_CURRENT = SensorKind(
    name="residual-current",
    unit="A",
    label_zh="剩余电流",
    label_en="residual current",
    minimum=0.0,
    maximum=5.0,
    set_points=(
        SetPoint(
            "above healthy leakage", 0.2, 0.15, True, 4, "GB 50116-2013 §9.2.3: a healthy circuit leaks 100-200 mA"
        ),
        SetPoint("alarm", 0.3, 0.25, True, 3, "GB 50116-2013 §9.2.3: residual-current alarm 300-500 mA"),
        SetPoint("alarm, upper", 0.5, 0.4, True, 2, "GB 50116-2013 §9.2.3: residual-current alarm 300-500 mA"),
    ),
)
_CABLE_TEMPERATURE = SensorKind(
    name="cable-temperature",
    unit="Cel",
    label_zh="线缆温度",
    label_en="cable temperature",
    minimum=-40.0,
    maximum=200.0,
    set_points=(
        SetPoint("warm", 60.0, 55.0, True, 4, "cable rating practice [U]: set from the cable, 55-140 °C"),
        SetPoint("PVC limit", 70.0, 65.0, True, 3, "cable rating practice [U]: PVC insulation 70 °C"),
        SetPoint("XLPE limit", 90.0, 85.0, True, 2, "cable rating practice [U]: XLPE insulation 90 °C"),
    ),
)
_PRESSURE = SensorKind(
    name="pressure",
    unit="Pa",
    label_zh="消防水压",
    label_en="fire main pressure",
    minimum=0.0,
    maximum=2_500_000.0,
    set_points=(
        SetPoint("below normal supply", 140_000.0, 150_000.0, False, 4, "GB 55036-2022 §3.0.3: >= 0.14 MPa in use"),
        SetPoint("below fire supply", 100_000.0, 110_000.0, False, 3, "GB 55036-2022 §3.0.3: >= 0.10 MPa in a fire"),
        SetPoint("dry main", 20_000.0, 30_000.0, False, 2, "Anju grading [D]: about 0, dry main or valve shut"),
    ),
)
_MANHOLE_TILT = SensorKind(
    name="manhole-tilt",
    unit="deg",
    label_zh="井盖倾角",
    label_en="manhole cover tilt",
    minimum=0.0,
    maximum=180.0,
    set_points=(
        SetPoint("jolt", 10.0, 8.0, True, 4, "manhole monitor practice [V]: tilt > 10° configurable"),
        SetPoint("displaced", 15.0, 12.0, True, 3, "manhole monitor practice [V]: > 15° is an event"),
    ),
)
_MANHOLE_OPEN = _flag(
    "manhole-open",
    "井盖开启",
    "manhole cover open",
    (SetPoint("open", 1.0, 0.5, True, 2, "Anju grading [D]: cover open or missing on a road"),),
)
_STRUCTURAL_TILT = SensorKind(
    name="structural-tilt",
    unit="/",
    label_zh="建筑倾斜",
    label_en="structural tilt",
    minimum=0.0,
    maximum=0.1,
    set_points=(
        SetPoint("half the limit", 0.0015, 0.0014, True, 4, "Anju grading [D]: 50 % of the GB 50007-2011 limit"),
        SetPoint("near the limit", 0.0024, 0.0022, True, 3, "Anju grading [D]: 80 % of the GB 50007-2011 limit"),
        SetPoint("limit", 0.003, 0.0028, True, 2, "GB 50007-2011 table 5.3.4: 0.003 for 24-60 m buildings"),
    ),
)
_LIFT_ENTRAPMENT = _flag(
    "lift-entrapment",
    "电梯困人",
    "lift entrapment",
    (SetPoint("entrapment", 1.0, 0.5, True, 3, "TSG T7001 practice [S]: rescuers on site <= 30 min"),),
)
_LIFT_EBIKE = _flag(
    "lift-ebike",
    "电动车入梯",
    "e-bike in lift car",
    (SetPoint("e-bike in car", 1.0, 0.5, True, 4, "lift e-bike recognition practice [V]: car held, doors open"),),
)
_WATER_METER = SensorKind(
    name="water-meter",
    unit="m3",
    label_zh="独居老人水表",
    label_en="water meter (elder living alone)",
    minimum=0.0,
    maximum=1_000_000.0,
    set_points=(),
)
_HELP_BUTTON = _flag(
    "help-button",
    "一键求助",
    "help button",
    (SetPoint("pressed", 1.0, 0.5, True, 3, "Anju grading [D]: help pressed"),),
)
_DOOR_CONTACT = _flag("door-contact", "门磁", "door contact", ())

KINDS: dict[str, SensorKind] = {
    k.name: k
    for k in (
        _GAS,
        _SMOKE,
        _TEMPERATURE,
        _WATER_DEPTH,
        _CO,
        _RESIDUAL_CURRENT,
        _CABLE_TEMPERATURE,
        _PRESSURE,
        _MANHOLE_TILT,
        _MANHOLE_OPEN,
        _STRUCTURAL_TILT,
        _LIFT_ENTRAPMENT,
        _LIFT_EBIKE,
        _WATER_METER,
        _HELP_BUTTON,
        _DOOR_CONTACT,
    )
}


def kind_for(name: str) -> SensorKind | None:
    """The kind called ``name``, or None when Anju does not know it."""
    return KINDS.get(name)
