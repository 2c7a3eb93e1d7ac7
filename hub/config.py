"""The deployment file: one YAML file per community (community → grids → people → gateways → sensors).

Strict on purpose (DESIGN.md "Strict configuration"): unknown keys, wrong types, unknown sensor kinds,
duplicate ids and dangling references are all errors, each naming the file, line, key path and the bad
value, so that an operator editing the file on a server can fix it without reading code. Secrets come
inline, from a file (``secret_file``, relative to the deployment file) or from the environment
(``secret_env``), and never appear in a repr or a log line.
"""

from __future__ import annotations

import datetime
import os
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import ReusedAnchorWarning, YAMLError

from alerts.directory import (
    DingTalkTarget,
    Directory,
    EmailTarget,
    Grid,
    Person,
    QuietHours,
    SmsTarget,
    Target,
    VoiceTarget,
    WebhookTarget,
    WeComTarget,
)
from alerts.escalation import EscalationLevel, EscalationPolicy
from alerts.grouping import DEFAULT_INTERVAL_S, MAX_PUSH_S, GroupingPolicy
from alerts.mobilisation import Broadcast, Volunteer
from alerts.model import Grade
from alerts.receivers.email import SmtpServer
from alerts.receivers.sms import SmsGateway
from alerts.receivers.voice import VoiceGateway
from alerts.roster import Roster, Shift
from alerts.work_orders import Department
from hub.ingest.budget import DEFAULT_BUDGET, Budget
from protocol.kinds import KINDS
from protocol.senml import MAX_PAYLOAD_BYTES

if TYPE_CHECKING:
    from hub.detection.rules import SensorContext

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "Deployment",
    "InfluxConfig",
    "StorageConfig",
    "build_directory",
    "issue_at",
    "load_deployment",
    "load_model",
    "model_issues",
    "read_secret_file",
    "read_yaml_mapping",
    "resolve_secret",
    "rule_contexts",
]

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


LocalTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class CommunityConfig(_Strict):
    id: Id
    name: str = Field(min_length=1)
    name_en: str = ""


class ChannelConfig(_Strict):
    """Where a person's notifications go. ``webhook``: Anju's signed JSON (``secret*`` keys the signature);
    ``wecom``: a WeCom group robot (``url`` the robot endpoint, ``secret*`` its key); ``dingtalk``: a DingTalk robot
    with signing (``secret*`` its ``SEC…`` signing secret, ``token_file``/``token_env`` its access token);
    ``email``: ``address``, through the deployment's ``smtp`` server (no secret of its own); ``sms`` and ``voice``:
    ``phone``, through the deployment's ``sms`` / ``voice`` gateway (a voice channel is called for grades I–II only)."""

    type: Literal["webhook", "wecom", "dingtalk", "email", "sms", "voice"]
    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")] | None = None
    address: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = None
    """For ``email``: the address (sent through the deployment's ``smtp`` server)."""
    phone: Annotated[str, StringConstraints(pattern=r"^((\+86)?1\d{10}|0[1-9]\d{1,2}-?\d{7,8})$")] | None = None
    """For ``sms``: a mainland mobile number (sent through the deployment's ``sms`` gateway); for ``voice`` also a
    fixed line with its area code (``028-12345678``, called through the deployment's ``voice`` gateway)."""
    secret: SecretStr | None = None
    secret_file: str | None = None
    secret_env: str | None = None
    token_file: str | None = None
    token_env: str | None = None
    grades: list[GradeName] | None = Field(default=None, min_length=1)
    """The grades this channel is for (default all): e.g. ``[I, II, III]`` keeps a personal phone's SMS for
    alarms and leaves maintenance (IV) to the work robot. A person must keep a channel for every grade."""


class QuietHoursConfig(_Strict):
    """Grade IV pages (and III with ``include_grade_iii``) wait until the quiet hours end; I–II never wait."""

    start: LocalTime
    end: LocalTime
    timezone: str = "Asia/Shanghai"
    include_grade_iii: bool = False


class PersonConfig(_Strict):
    id: Id
    name: str = Field(min_length=1)
    phone: str | None = None
    channels: list[ChannelConfig] = Field(default_factory=list)
    quiet_hours: QuietHoursConfig | None = None
    max_pages_per_hour: int | None = Field(default=None, ge=1, le=10_000)
    """This person's cap on grade IV pages per channel and hour (default: ``grouping.max_pages_per_hour``)."""

    @model_validator(mode="after")
    def _every_grade_has_a_channel(self) -> PersonConfig:
        if self.channels and all(c.grades is not None for c in self.channels):
            covered = {g for c in self.channels for g in c.grades or ()}
            missing = [g for g in ("I", "II", "III", "IV") if g not in covered]
            if missing:
                raise ValueError(f"no channel takes grade {', '.join(missing)} (channels' grades leave it out)")
        return self


class GridConfig(_Strict):
    id: Id
    name: str = Field(min_length=1)
    managers: list[Id] = Field(min_length=1)


GradeName = Literal["I", "II", "III", "IV"]
Seconds = Annotated[float, Field(ge=1, le=7 * 86_400)]


class EscalationLevelConfig(_Strict):
    """One step of the escalation chain after the grid's managers, paged together."""

    id: Id
    name: str = Field(min_length=1)
    people: list[Id] = Field(min_length=1)


class EscalationConfig(_Strict):
    """Who is paged when nobody acknowledges (alerts/escalation.py): ``levels`` after the grid's managers, lowest
    first (property company / community committee, sub-district, district emergency office), and each grade's
    answer deadline in seconds (defaults from SENSORS.md: IV 86,400, III 300, II and I 60)."""

    levels: list[EscalationLevelConfig] = Field(default_factory=list)
    answer_within_s: dict[GradeName, Seconds] = Field(default_factory=dict)
    on_site_within_s: dict[GradeName, Seconds] = Field(default_factory=dict)
    """After the acknowledgement, how long until someone reports on site before everyone reached is paged again
    (defaults from SENSORS.md: IV 86,400, III 900, II and I 180)."""
    reopen_after_s: Seconds = 600
    """A resolved alert whose condition is still in alarm this long after it was resolved reopens."""


class GroupingConfig(_Strict):
    """How notifications are grouped per person and channel (alerts/grouping.py): the first page of a place's
    alerts goes at once (after ``group_wait_s``), later changes wait for the grade's ``interval_s`` (defaults I, II
    and III 10 s, at most 14 s so an alarm reaches people within GB/T 45839's 15 s; IV 300 s) and go as one digest;
    each grade is its own group. Grade IV pages beyond ``max_pages_per_hour`` (all grades' pages count) wait for
    the hour to pass (``null``: no cap); I–III are never capped."""

    group_wait_s: float = Field(default=0.0, ge=0, le=MAX_PUSH_S)
    interval_s: dict[GradeName, Annotated[float, Field(ge=0, le=86_400)]] = Field(default_factory=dict)

    @field_validator("interval_s")
    @classmethod
    def _alarms_within_15_s(cls, value: dict[GradeName, float]) -> dict[GradeName, float]:
        for name, seconds in value.items():
            if name != "IV" and seconds > MAX_PUSH_S:
                raise ValueError(
                    f"grade {name} changes must reach people within GB/T 45839's 15 s: at most {MAX_PUSH_S:g} s"
                )
        return value

    max_pages_per_hour: int | None = Field(default=30, ge=1, le=10_000)
    enabled: bool = True


class ShiftConfig(_Strict):
    name: Id
    start: LocalTime
    end: LocalTime
    """Local time (``HH:MM``); an end not after the start runs past midnight."""


class HolidayConfig(_Strict):
    date: datetime.date
    people: list[Id] = Field(min_length=1)


class OverrideConfig(_Strict):
    date: datetime.date
    shift: Id
    person: Id


class RosterConfig(_Strict):
    """A duty roster (alerts/roster.py): the team rotating round-robin through the shifts of the grids it covers."""

    id: Id
    grids: list[Id] = Field(min_length=1)
    team: list[Id] = Field(min_length=1)
    shifts: list[ShiftConfig] = Field(min_length=1)
    timezone: str = "Asia/Shanghai"
    epoch: datetime.date = datetime.date(2026, 1, 5)
    """The date the rotation counts from (its first shift goes to the first of the team)."""
    holidays: list[HolidayConfig] = Field(default_factory=list)
    overrides: list[OverrideConfig] = Field(default_factory=list)
    fallback: list[Id] = Field(default_factory=list)


class SmtpConfig(_Strict):
    """The mail server email channels go out through (alerts/receivers/email.py)."""

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    sender: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    starttls: bool = True
    username: str | None = Field(default=None, min_length=1)
    password_file: str | None = Field(default=None, min_length=1)
    password_env: str | None = Field(default=None, min_length=1)
    timeout_s: float = Field(default=10.0, gt=0, le=120)


class SmsConfig(_Strict):
    """The SMS gateway sms channels go out through (alerts/receivers/sms.py): ``generic`` (a JSON POST with a bearer
    token from ``token_file``/``token_env``) or ``aliyun`` (Alibaba Cloud SMS: ``access_key_id``, the secret from
    ``secret_file``/``secret_env``, ``sign_name``, ``template_code``)."""

    format: Literal["generic", "aliyun"]
    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")]
    token_file: str | None = None
    token_env: str | None = None
    access_key_id: str | None = Field(default=None, min_length=1)
    secret_file: str | None = None
    secret_env: str | None = None
    sign_name: str | None = Field(default=None, min_length=1)
    template_code: str | None = Field(default=None, min_length=1)


class VoiceConfig(_Strict):
    """The voice-call provider voice channels go through (alerts/receivers/voice.py): ``generic`` (a JSON POST with a
    bearer token from ``token_file``/``token_env``) or ``aliyun`` (Alibaba Cloud VMS ``SingleCallByTts``:
    ``access_key_id``, the secret from ``secret_file``/``secret_env``, ``tts_code``, and ``called_show_number`` for a
    dedicated-mode caller id); ``play_times`` how often the text is read in one call."""

    format: Literal["generic", "aliyun"]
    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")]
    token_file: str | None = None
    token_env: str | None = None
    access_key_id: str | None = Field(default=None, min_length=1)
    secret_file: str | None = None
    secret_env: str | None = None
    tts_code: str | None = Field(default=None, min_length=1)
    called_show_number: Annotated[str, StringConstraints(pattern=r"^\d{5,20}$")] | None = None
    play_times: int = Field(default=2, ge=1, le=3)


class DepartmentConfig(_Strict):
    """A department work orders are dispatched to (alerts/work_orders.py): its people are paged with each order."""

    id: Id
    name: str = Field(min_length=1)
    kind: Literal["property", "gas", "power", "fire", "urban-management", "water", "other"]
    people: list[Id] = Field(min_length=1)
    manages: list[Id] = Field(default_factory=list)
    """For a ``property`` department (物业): the buildings it manages, as sensors name them in ``building``. Its users
    (role ``property_company``) see those buildings' sensors, readings and alerts and nothing else of the grids
    (hub/identity/scope.py); a building is managed by one company at most."""


class BroadcastConfig(_Strict):
    """A broadcast receiver of an area (alerts/mobilisation.py): emergency notices of incidents in ``grids`` (empty:
    the whole community) go to its ``channel`` — a ``wecom`` or ``dingtalk`` group robot of the residents' group, or a
    ``webhook`` to a building's PA / broadcast system."""

    id: Id
    name: str = Field(min_length=1)
    grids: list[Id] = Field(default_factory=list)
    channel: ChannelConfig


Skill = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class VolunteerConfig(_Strict):
    """A volunteer of the roster (alerts/mobilisation.py): asked to join incidents in ``grids`` (empty: the whole
    community) through their ``channels`` (none: reached by phone, the answer recorded by staff); ``skills`` are plain
    words shown with who is mobilised (``first-aid``, ``electrician``, ``elder-care``)."""

    id: Id
    name: str = Field(min_length=1)
    skills: list[Skill] = Field(default_factory=list, max_length=20)
    grids: list[Id] = Field(default_factory=list)
    channels: list[ChannelConfig] = Field(default_factory=list)


class PositionConfig(_Strict):
    """Where a detector is on the community's site plan, in metres from its north-west corner (x east, y south),
    and on which floor: the overview draws the plan from these."""

    x: float = Field(ge=0, le=10_000)
    y: float = Field(ge=0, le=10_000)
    floor: int = Field(default=1, ge=-10, le=200)


class SensorConfig(_Strict):
    id: Id
    kind: str
    unit_id: int = Field(ge=1, le=247)
    location: str = Field(min_length=1)
    grid: Id
    report_interval_s: float | None = Field(default=None, ge=1, le=21_600)
    """Seconds between the sensor's reports, for liveness (stale after 3 of them without a reading); unset, the
    hub learns it. At most 6 h, so a silent sensor is reported within GB/T 45839-2025's 24 h."""
    building: Id | None = None
    """Building, for per-building rule overrides (``rules.buildings``)."""
    space: Id | None = None
    """Room or area: detectors in one space corroborate each other (two smoke detectors; smoke + heat + CO)."""
    tags: list[Id] = Field(default_factory=list)
    """Context such as ``elder-living-alone``, ``school``, ``basement``: raises the sensor's grades one step (never
    past II)."""
    position: PositionConfig | None = None
    """On the site plan (the overview's map); sensors without one are listed by building and space only."""

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown sensor kind; known: {', '.join(sorted(KINDS))}")
        return kind


class ModbusConfig(_Strict):
    """The gateway's detector bus: Modbus TCP at host:port, or RTU on an RS-485 adapter when ``serial`` is set."""

    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    serial: Annotated[str, StringConstraints(pattern=r"^/dev/\S+$")] | None = None
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600


_RATE = 10_000_000.0
"""Highest rate or burst the file takes for a gateway's limits (a typo guard, far above any gateway)."""
_BURST = 1e10


class LimitsConfig(_Strict):
    """One gateway's own limits (``gateways[].limits``): each key given replaces ``gateway_limits``'s for it."""

    readings_per_s: float | None = Field(default=None, gt=0, le=_RATE)
    readings_burst: float | None = Field(default=None, ge=1, le=_BURST)
    bytes_per_s: float | None = Field(default=None, gt=0, le=_RATE * 1000)
    bytes_burst: float | None = Field(default=None, ge=1024, le=_BURST)
    messages_per_s: float | None = Field(default=None, gt=0, le=_RATE)
    messages_burst: float | None = Field(default=None, ge=1, le=_BURST)
    max_message_bytes: int | None = Field(default=None, ge=1024, le=MAX_PAYLOAD_BYTES)
    alarm_messages_per_s: float | None = Field(default=None, gt=0, le=_RATE)
    alarm_messages_burst: float | None = Field(default=None, ge=1, le=_BURST)


class GatewayLimitsConfig(_Strict):
    """Every gateway's budget at the hub (hub/ingest/budget.py gives the arithmetic behind the defaults) and the
    flood alert: after ``flood_alert_after_s`` over its limits, cleared after ``flood_calm_s`` within them."""

    enabled: bool = True
    readings_per_s: float = Field(default=DEFAULT_BUDGET.readings_per_s, gt=0, le=_RATE)
    readings_burst: float = Field(default=DEFAULT_BUDGET.readings_burst, ge=1, le=_BURST)
    bytes_per_s: float = Field(default=DEFAULT_BUDGET.bytes_per_s, gt=0, le=_RATE * 1000)
    bytes_burst: float = Field(default=DEFAULT_BUDGET.bytes_burst, ge=1024, le=_BURST)
    messages_per_s: float = Field(default=DEFAULT_BUDGET.messages_per_s, gt=0, le=_RATE)
    messages_burst: float = Field(default=DEFAULT_BUDGET.messages_burst, ge=1, le=_BURST)
    max_message_bytes: int = Field(default=DEFAULT_BUDGET.max_message_bytes, ge=1024, le=MAX_PAYLOAD_BYTES)
    alarm_messages_per_s: float = Field(default=DEFAULT_BUDGET.alarm_messages_per_s, gt=0, le=_RATE)
    alarm_messages_burst: float = Field(default=DEFAULT_BUDGET.alarm_messages_burst, ge=1, le=_BURST)
    flood_alert_after_s: float = Field(default=30.0, ge=1, le=3600)
    flood_calm_s: float = Field(default=60.0, ge=1, le=86_400)


class GatewayConfig(_Strict):
    id: Id
    location: str = ""
    modbus: ModbusConfig = ModbusConfig()
    sensors: list[SensorConfig] = Field(min_length=1)
    limits: LimitsConfig | None = None
    """This gateway's own rate and size limits at the hub (over ``gateway_limits``)."""


InfluxName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")]


class InfluxConfig(_Strict):
    """Where the InfluxDB backend keeps readings (hub/store/influx.py says what each API version needs).

    1.x (``api_version: 1``): the hub creates ``database`` and both retention policies (durations from
    ``storage``) and the 1-minute rollup continuous query; ``username`` + ``password_file`` when auth is on.
    2.x/3.x (``api_version: 2``): writes go to ``org``/``bucket`` with the token in ``token_file``; the bucket must
    exist with its own retention, and queries use InfluxQL through the v1 compatibility API, so the bucket needs
    a DBRP mapping to ``database``/``retention_policy``. Secret files are relative to the deployment file.
    """

    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s/?#]+/?$")]
    api_version: Literal[1, 2] = 1
    database: InfluxName = "anju"
    retention_policy: InfluxName = "anju_raw"
    rollup_retention_policy: InfluxName = "anju_rollup_1m"
    org: str | None = Field(default=None, min_length=1)
    bucket: str | None = Field(default=None, min_length=1)
    username: str | None = Field(default=None, min_length=1)
    password_file: str | None = Field(default=None, min_length=1)
    token_file: str | None = Field(default=None, min_length=1)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    """Seconds for one HTTP request to InfluxDB (connect, write or read) before the commit fails and is retried."""


class StorageConfig(_Strict):
    """Where readings live: the embedded store (default, no server) or InfluxDB; retention in whole days."""

    backend: Literal["embedded", "influxdb"] = "embedded"
    raw_retention_days: int = Field(default=30, ge=1, le=36_500)
    rollup_retention_days: int = Field(default=365, ge=1, le=36_500)
    influxdb: InfluxConfig | None = None


class Deployment(_Strict):
    community: CommunityConfig
    grids: list[GridConfig] = Field(min_length=1)
    people: list[PersonConfig] = Field(min_length=1)
    gateways: list[GatewayConfig] = Field(min_length=1)
    storage: StorageConfig = StorageConfig()
    gateway_limits: GatewayLimitsConfig = GatewayLimitsConfig()
    escalation: EscalationConfig = EscalationConfig()
    grouping: GroupingConfig = GroupingConfig()
    rosters: list[RosterConfig] = Field(default_factory=list)
    departments: list[DepartmentConfig] = Field(default_factory=list)
    broadcasts: list[BroadcastConfig] = Field(default_factory=list)
    volunteers: list[VolunteerConfig] = Field(default_factory=list)
    smtp: SmtpConfig | None = None
    sms: SmsConfig | None = None
    voice: VoiceConfig | None = None
    rules: dict[str, Any] | None = None
    """Overrides of the shipped detection rules: ``timezone``, ``raise_grade_tags``, ``community``, ``buildings``,
    ``sensors`` (hub/detection/rules/overrides.py); checked at load, each problem naming the rule and field."""

    def sensors(self) -> Iterable[tuple[GatewayConfig, SensorConfig]]:
        for gateway in self.gateways:
            for sensor in gateway.sensors:
                yield gateway, sensor


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One thing wrong with a deployment file, with where it is."""

    path: str
    line: int | None
    value: object
    message: str

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line is not None else file
        return f"{where}: {self.path or '(top level)'} = {self.value!r}: {self.message}"


class ConfigError(Exception):
    """The deployment file is invalid; ``issues`` lists every problem found, with line numbers."""

    def __init__(self, file: str, issues: Sequence[ConfigIssue]) -> None:
        self.file = file
        self.issues = tuple(issues)
        super().__init__("\n".join(issue.render(file) for issue in self.issues))


def _path_text(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(root: Any, loc: Sequence[int | str]) -> int | None:
    """1-based line of the deepest node of ``loc`` that exists in the ruamel document."""
    node, line = root, getattr(getattr(root, "lc", None), "line", None)
    for part in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, Mapping) and part in node:
                line = lc.key(part)[0] if lc is not None else line
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                line = lc.item(part)[0] if lc is not None else line
                node = node[part]
            else:
                break
        except (KeyError, AttributeError, TypeError):
            break
    return None if line is None else line + 1


def _value_at(root: Any, loc: Sequence[int | str]) -> object:
    node = root
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node if isinstance(node, str | int | float | bool) or node is None else type(node).__name__


def _cross_checks(deployment: Deployment) -> Iterable[tuple[tuple[int | str, ...], object, str]]:
    """References and uniqueness that a per-field schema cannot see."""
    people = {p.id for p in deployment.people}
    grids = {g.id for g in deployment.grids}
    seen_people: set[str] = set()
    for index, person in enumerate(deployment.people):
        if person.id in seen_people:
            yield ("people", index, "id"), person.id, "duplicate person id"
        seen_people.add(person.id)
        if person.quiet_hours is not None:
            try:
                _quiet(person.quiet_hours)
            except (ValueError, KeyError) as exc:
                yield ("people", index, "quiet_hours"), person.quiet_hours.start, str(exc)
        for c_index, channel in enumerate(person.channels):
            at_channel = ("people", index, "channels", c_index)
            if channel.type == "voice":
                if channel.phone is None or channel.url is not None:
                    yield at_channel, channel.type, "a voice channel takes a phone (and no url)"
                elif deployment.voice is None:
                    yield at_channel, channel.phone, "a voice channel needs the deployment's voice gateway"
                continue
            if channel.type == "sms":
                if channel.phone is None or channel.url is not None:
                    yield at_channel, channel.type, "an sms channel takes a phone (and no url)"
                elif channel.phone.startswith("0"):
                    yield at_channel, channel.phone, "an sms channel takes a mobile number, not a fixed line"
                elif deployment.sms is None:
                    yield at_channel, channel.phone, "an sms channel needs the deployment's sms gateway"
                continue
            if channel.type == "email":
                if channel.address is None or channel.url is not None:
                    yield at_channel, channel.type, "an email channel takes an address (and no url)"
                elif deployment.smtp is None:
                    yield at_channel, channel.address, "an email channel needs the deployment's smtp server"
                continue
            if channel.url is None or channel.address is not None:
                yield at_channel, channel.type, f"a {channel.type} channel takes a url (and no address)"
            given = [channel.secret is not None, channel.secret_file is not None, channel.secret_env is not None]
            if sum(given) != 1:
                yield (
                    ("people", index, "channels", c_index),
                    channel.type,
                    "give exactly one of secret, secret_file, secret_env",
                )
            tokens = (channel.token_file is not None) + (channel.token_env is not None)
            if channel.type == "dingtalk" and tokens != 1:
                yield ("people", index, "channels", c_index), channel.type, "give one of token_file, token_env"
            if channel.type != "dingtalk" and tokens:
                yield ("people", index, "channels", c_index), channel.type, "only a dingtalk channel takes a token"
    seen_grids: set[str] = set()
    for index, grid in enumerate(deployment.grids):
        if grid.id in seen_grids:
            yield ("grids", index, "id"), grid.id, "duplicate grid id"
        seen_grids.add(grid.id)
        for m_index, manager in enumerate(grid.managers):
            if manager not in people:
                yield ("grids", index, "managers", m_index), manager, "no person with this id in people"
    yield from _roster_checks(deployment, people, grids)
    department_ids: set[str] = set()
    buildings = {sensor.building for _, sensor in deployment.sensors() if sensor.building is not None}
    managed_by: dict[str, str] = {}
    for d_index, department in enumerate(deployment.departments):
        if department.id in department_ids:
            yield ("departments", d_index, "id"), department.id, "duplicate department id"
        department_ids.add(department.id)
        for i, person_id in enumerate(department.people):
            if person_id not in people:
                yield ("departments", d_index, "people", i), person_id, "no person with this id in people"
        for i, building in enumerate(department.manages):
            at_building = ("departments", d_index, "manages", i)
            if department.kind != "property":
                yield at_building, building, "only a department of kind property manages buildings"
            elif building not in buildings:
                yield at_building, building, "no sensor names this building (gateways[].sensors[].building)"
            elif building in managed_by:
                yield at_building, building, f"already managed by department {managed_by[building]}"
            managed_by.setdefault(building, department.id)
    level_ids: set[str] = set()
    for l_index, level in enumerate(deployment.escalation.levels):
        if level.id in level_ids:
            yield ("escalation", "levels", l_index, "id"), level.id, "duplicate escalation level id"
        level_ids.add(level.id)
        for p_index, person_id in enumerate(level.people):
            if person_id not in people:
                at_person = ("escalation", "levels", l_index, "people", p_index)
                yield at_person, person_id, "no person with this id in people"
    sensor_ids: set[str] = set()
    gateway_ids: set[str] = set()
    for g_index, gateway in enumerate(deployment.gateways):
        if gateway.id in gateway_ids:
            yield ("gateways", g_index, "id"), gateway.id, "duplicate gateway id"
        gateway_ids.add(gateway.id)
        unit_ids: set[int] = set()
        for s_index, sensor in enumerate(gateway.sensors):
            at = ("gateways", g_index, "sensors", s_index)
            if sensor.id in sensor_ids:
                yield (*at, "id"), sensor.id, "duplicate sensor id (ids are unique in a deployment)"
            sensor_ids.add(sensor.id)
            if sensor.unit_id in unit_ids:
                yield (*at, "unit_id"), sensor.unit_id, f"duplicate Modbus unit id on gateway {gateway.id}"
            unit_ids.add(sensor.unit_id)
            if sensor.grid not in grids:
                yield (*at, "grid"), sensor.grid, "no grid with this id in grids"
    yield from _storage_checks(deployment.storage)
    yield from _limits_checks(deployment)
    yield from _mobilisation_checks(deployment, grids)


_WITHOUT_URL = {"sms": ("an sms channel", "phone", "sms"), "voice": ("a voice channel", "phone", "voice"),
                "email": ("an email channel", "address", "smtp")}  # fmt: skip
"""Channel types without a URL: how they read, the field they take, the deployment section they go out through."""


def _channel_problem(channel: ChannelConfig, deployment: Deployment) -> str | None:
    """What is wrong with a channel's shape (the rules of people's channels), or None."""
    if channel.type in _WITHOUT_URL:
        what, field_name, section = _WITHOUT_URL[channel.type]
        if getattr(channel, field_name) is None or channel.url is not None:
            return f"{what} takes {'an' if field_name == 'address' else 'a'} {field_name} (and no url)"
        if channel.type == "sms" and channel.phone is not None and channel.phone.startswith("0"):
            return "an sms channel takes a mobile number, not a fixed line"
        if getattr(deployment, section, None) is None:
            return f"{what} needs the deployment's {section} section"
        return None
    if channel.url is None or channel.address is not None:
        return f"a {channel.type} channel takes a url (and no address)"
    if (channel.secret is not None) + (channel.secret_file is not None) + (channel.secret_env is not None) != 1:
        return "give exactly one of secret, secret_file, secret_env"
    tokens = (channel.token_file is not None) + (channel.token_env is not None)
    if channel.type == "dingtalk" and tokens != 1:
        return "give one of token_file, token_env"
    if channel.type != "dingtalk" and tokens:
        return "only a dingtalk channel takes a token"
    return None


def _mobilisation_checks(
    deployment: Deployment, grids: Collection[str]
) -> Iterable[tuple[tuple[int | str, ...], object, str]]:
    """Broadcast receivers and volunteers: unique ids, known grids, channels of the right shape."""
    sections: list[tuple[str, Sequence[BroadcastConfig | VolunteerConfig]]] = [
        ("broadcasts", deployment.broadcasts),
        ("volunteers", deployment.volunteers),
    ]
    for section, entries in sections:
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            if entry.id in seen:
                yield (section, index, "id"), entry.id, f"duplicate id in {section}"
            seen.add(entry.id)
            for g_index, grid_id in enumerate(entry.grids):
                if grid_id not in grids:
                    yield (section, index, "grids", g_index), grid_id, "no grid with this id in grids"
    for index, broadcast in enumerate(deployment.broadcasts):
        at: tuple[int | str, ...] = ("broadcasts", index, "channel")
        if broadcast.channel.type not in ("webhook", "wecom", "dingtalk"):
            yield at, broadcast.channel.type, "a broadcast receiver is a webhook, wecom or dingtalk channel"
        elif (problem := _channel_problem(broadcast.channel, deployment)) is not None:
            yield at, broadcast.channel.type, problem
    for index, volunteer in enumerate(deployment.volunteers):
        for c_index, channel in enumerate(volunteer.channels):
            if (problem := _channel_problem(channel, deployment)) is not None:
                yield ("volunteers", index, "channels", c_index), channel.type, problem


def _roster_checks(
    deployment: Deployment, people: Collection[str], grids: Collection[str]
) -> Iterable[tuple[tuple[int | str, ...], object, str]]:
    covered: dict[str, str] = {}
    for r_index, roster in enumerate(deployment.rosters):
        at: tuple[int | str, ...] = ("rosters", r_index)
        for name, ids in (("team", roster.team), ("fallback", roster.fallback)):
            for i, person_id in enumerate(ids):
                if person_id not in people:
                    yield (*at, name, i), person_id, "no person with this id in people"
        for h_index, holiday in enumerate(roster.holidays):
            for i, person_id in enumerate(holiday.people):
                if person_id not in people:
                    yield (*at, "holidays", h_index, "people", i), person_id, "no person with this id in people"
        shift_names = {shift.name for shift in roster.shifts}
        for o_index, override in enumerate(roster.overrides):
            if override.person not in people:
                yield (*at, "overrides", o_index, "person"), override.person, "no person with this id in people"
            if override.shift not in shift_names:
                yield (*at, "overrides", o_index, "shift"), override.shift, "no shift with this name in the roster"
        for g_index, grid_id in enumerate(roster.grids):
            if grid_id not in grids:
                yield (*at, "grids", g_index), grid_id, "no grid with this id in grids"
            elif grid_id in covered:
                yield (*at, "grids", g_index), grid_id, f"already covered by roster {covered[grid_id]}"
            covered.setdefault(grid_id, roster.id)
        try:
            build_roster(roster)
        except (ValueError, KeyError) as exc:
            yield (*at, "shifts"), roster.id, str(exc)


def _local(text: str) -> datetime.time:
    hours, minutes = text.split(":")
    return datetime.time(int(hours), int(minutes))


def _quiet(config: QuietHoursConfig | None) -> QuietHours | None:
    if config is None:
        return None
    return QuietHours(
        start=_local(config.start),
        end=_local(config.end),
        timezone=config.timezone,
        include_grade_iii=config.include_grade_iii,
    )


def build_roster(config: RosterConfig) -> Roster:
    """The alerts package's roster for one ``rosters`` entry (ValueError for overlapping shifts, a bad zone)."""
    local = _local

    return Roster(
        id=config.id,
        grids=tuple(config.grids),
        team=tuple(config.team),
        shifts=tuple(Shift(name=s.name, start=local(s.start), end=local(s.end)) for s in config.shifts),
        timezone=config.timezone,
        epoch=config.epoch,
        holidays={h.date: tuple(h.people) for h in config.holidays},
        overrides={(o.date, o.shift): o.person for o in config.overrides},
        fallback=tuple(config.fallback),
    )


def _storage_checks(storage: StorageConfig) -> Iterable[tuple[tuple[int | str, ...], object, str]]:
    influx = storage.influxdb
    if influx is None:
        if storage.backend == "influxdb":
            yield ("storage", "influxdb"), None, "required when storage.backend is influxdb"
        return
    at = ("storage", "influxdb")
    if influx.api_version == 2:
        for name in ("org", "bucket", "token_file"):
            if getattr(influx, name) is None:
                yield (*at, name), None, "required for api_version 2"
        for name in ("username", "password_file"):
            if getattr(influx, name) is not None:
                yield (*at, name), getattr(influx, name), "only for api_version 1 (2.x takes token_file)"
    else:
        for name in ("org", "bucket", "token_file"):
            if getattr(influx, name) is not None:
                yield (*at, name), getattr(influx, name), "only for api_version 2"
        if (influx.username is None) != (influx.password_file is None):
            yield at, influx.username, "give both username and password_file, or neither"
    if influx.retention_policy == influx.rollup_retention_policy:
        yield (*at, "rollup_retention_policy"), influx.rollup_retention_policy, "must differ from retention_policy"


_BUDGET_KEYS = (
    "readings_per_s",
    "readings_burst",
    "bytes_per_s",
    "bytes_burst",
    "messages_per_s",
    "messages_burst",
    "max_message_bytes",
    "alarm_messages_per_s",
    "alarm_messages_burst",
)


def _limits_checks(deployment: Deployment) -> Iterable[tuple[tuple[int | str, ...], object, str]]:
    """Each gateway's budget as it will be (its own keys over ``gateway_limits``) must hold together."""
    base = {name: getattr(deployment.gateway_limits, name) for name in _BUDGET_KEYS}
    try:
        Budget(**base)
    except ValueError as exc:
        yield ("gateway_limits", "bytes_burst"), base["bytes_burst"], str(exc)
    for index, gateway in enumerate(deployment.gateways):
        if gateway.limits is None:
            continue
        own = {name: value for name, value in gateway.limits.model_dump().items() if value is not None}
        try:
            Budget(**(base | own))
        except ValueError as exc:
            key = "bytes_burst" if "bytes_burst" in own else "max_message_bytes" if "max_message_bytes" in own else ""
            at: tuple[int | str, ...] = ("gateways", index, "limits", key) if key else ("gateways", index, "limits")
            yield at, own.get(key), f"gateway {gateway.id}: {exc}"


def load_deployment(path: str | os.PathLike[str], *, check_secrets: bool = True) -> Deployment:
    """Read and validate a deployment file. Raises ConfigError listing every problem with its line.

    ``check_secrets=False`` skips reading secret files and variables, for tools that do not notify anyone
    (rendering a gateway's config on a build machine that has no webhook secrets).
    """
    file = Path(path)
    name, document, deployment = load_model(file, Deployment)
    problems = [issue_at(document, loc, value, message) for loc, value, message in _cross_checks(deployment)]
    if check_secrets:
        problems.extend(_secret_problems(deployment, document, file.parent))
    problems.extend(_rule_problems(deployment, document))
    if problems:
        raise ConfigError(name, problems)
    return deployment


def read_yaml_mapping(file: Path) -> tuple[str, Any]:
    """(the file's name, its YAML document with line information) for a YAML file whose top is a mapping; raises
    ConfigError naming the line of a syntax error, an anchor named twice, or a top that is not a mapping."""
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(name, [ConfigIssue("", None, name, f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(name, [ConfigIssue("", None, None, f"not UTF-8 text: {exc}")]) from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ReusedAnchorWarning)  # an anchor named twice: which one is meant?
            document = YAML(typ="rt").load(text)
    except ReusedAnchorWarning as exc:
        raise ConfigError(name, [ConfigIssue("", None, None, f"not valid YAML: {exc}".strip())]) from exc
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(name, [ConfigIssue("", line, None, f"not valid YAML: {exc}")]) from exc
    except (ValueError, RecursionError) as exc:  # ruamel: "!!float abc", a date that is none (2026-02-30), deep nesting
        raise ConfigError(name, [ConfigIssue("", None, None, f"not valid YAML: {type(exc).__name__}: {exc}")]) from exc
    if not isinstance(document, Mapping):
        raise ConfigError(name, [ConfigIssue("", 1, type(document).__name__, "expected a mapping at the top")])
    return name, document


_Model = TypeVar("_Model", bound=BaseModel)


def load_model(file: Path, model: type[_Model]) -> tuple[str, Any, _Model]:
    """(the file's name, its YAML document, ``model`` validated from it); raises ConfigError naming every problem of
    the YAML or the schema with its line."""
    name, document = read_yaml_mapping(file)
    try:
        return name, document, model.model_validate(_plain(document))
    except ValidationError as exc:
        raise ConfigError(name, model_issues(exc, document)) from exc


def plain(document: Any) -> Any:
    """``document`` (ruamel's round-trip nodes) as plain dicts and lists with string keys, for pydantic."""
    return _plain(document)


def issue_at(document: Any, loc: Sequence[int | str], value: object, message: str) -> ConfigIssue:
    """A problem at ``loc`` of the YAML ``document``, with its line."""
    return ConfigIssue(_path_text(loc), _line_of(document, loc), value, message)


def model_issues(exc: ValidationError, document: Any) -> list[ConfigIssue]:
    """pydantic's errors on ``document`` as ConfigIssues with their lines and values."""
    issues = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        if error["type"] == "value_error":  # our own validators' text, without pydantic's prefix
            message = str(error.get("ctx", {}).get("error", message))
        issues.append(ConfigIssue(_path_text(loc), _line_of(document, loc), _value_at(document, loc), message))
    return issues


def rule_contexts(deployment: Deployment) -> list[SensorContext]:
    """Each sensor's place for the detection rules (space, building, tags)."""
    from hub.detection.rules import SensorContext  # here: at the top it would be an import cycle

    return [
        SensorContext(s.id, s.kind, s.building or "", s.space or "", frozenset(s.tags)) for _, s in deployment.sensors()
    ]


def _rule_problems(deployment: Deployment, document: Mapping[str, Any]) -> list[ConfigIssue]:
    from hub.detection.rules import RuleError, resolve_rules  # here: at the top it would be an import cycle

    try:
        resolve_rules(deployment.rules, rule_contexts(deployment))
    except RuleError as exc:
        problems = []
        for issue in exc.issues:
            if issue.rule == "(overrides)":  # about the section itself: the field is the place
                place, value, message = issue.field, None, issue.message
            else:
                place, value, message = (
                    issue.where or "rules",
                    issue.rule,
                    f"{issue.field or '(rule)'}: {issue.message}",
                )
            loc = tuple(int(part) if part.isdigit() else part for part in re.findall(r"[^.\[\]]+", place))
            line = _line_of(document, loc) or _line_of(document, ("rules",))
            problems.append(ConfigIssue(place, line, value if value is not None else loc[-1], message))
        return problems
    return []


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _secret_problems(deployment: Deployment, document: Any, base: Path) -> Iterable[ConfigIssue]:
    influx = deployment.storage.influxdb
    if deployment.storage.backend == "influxdb" and influx is not None:
        for name in ("token_file", "password_file"):
            file = getattr(influx, name)
            if file is not None:
                try:
                    read_secret_file(file, base)
                except ValueError as exc:
                    at = ("storage", "influxdb", name)
                    yield ConfigIssue(_path_text(at), _line_of(document, at), file, str(exc))
    for p_index, person in enumerate(deployment.people):
        for c_index, channel in enumerate(person.channels):
            no_token = channel.type == "dingtalk" and channel.token_file is None and channel.token_env is None
            if no_token or channel.type in ("email", "sms", "voice") or channel.url is None:
                continue  # no secret of its own, or reported with the channel's shape
            try:
                channel_target(channel, base)
            except ValueError as exc:
                loc = ("people", p_index, "channels", c_index)
                yield ConfigIssue(_path_text(loc), _line_of(document, loc), channel.url, str(exc))
    gateways: list[tuple[str, object, Callable[[Deployment, Path], object]]] = [
        ("sms", deployment.sms and deployment.sms.url, build_sms),
        ("voice", deployment.voice and deployment.voice.url, build_voice),
        ("smtp", deployment.smtp and deployment.smtp.host, build_smtp),
    ]
    for key, shown, build in gateways:  # the deployment's sms, voice and mail servers, secrets resolved
        try:
            build(deployment, base)
        except ValueError as exc:
            section: tuple[str, ...] = (key,)
            yield ConfigIssue(_path_text(section), _line_of(document, section), shown, str(exc))
    channels: list[tuple[tuple[str | int, ...], ChannelConfig]]
    channels = [(("broadcasts", i, "channel"), b.channel) for i, b in enumerate(deployment.broadcasts)]
    channels += [(("volunteers", i, "channels", c), ch) for i, v in enumerate(deployment.volunteers)
                 for c, ch in enumerate(v.channels)]  # fmt: skip
    for where, channel in channels:
        if channel.url is not None and _channel_problem(channel, deployment) is None:  # else reported with its shape
            try:
                channel_target(channel, base)
            except ValueError as exc:
                yield ConfigIssue(_path_text(where), _line_of(document, where), channel.url, str(exc))


def read_secret_file(file: str, base: Path) -> str:
    """A secret kept in ``file`` (relative to ``base``, the deployment file's folder), stripped; never empty."""
    path = base / file
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"secret file {path}: {exc.strerror}") from exc
    if not secret:
        raise ValueError(f"secret file {path} is empty")
    return secret


def resolve_secret(channel: ChannelConfig, base: Path) -> str:
    """The channel's secret from inline text, a file (relative to ``base``) or an environment variable."""
    if channel.secret is not None:
        secret = channel.secret.get_secret_value()
    elif channel.secret_file is not None:
        secret_path = base / channel.secret_file
        try:
            secret = secret_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"secret_file {secret_path}: {exc.strerror}") from exc
    elif channel.secret_env is not None:
        secret = os.environ.get(channel.secret_env, "").strip()
        if not secret:
            raise ValueError(f"environment variable {channel.secret_env} is not set")
    else:
        raise ValueError("no secret given")
    if len(secret) < 16:
        raise ValueError("secret shorter than 16 characters")
    return secret


def resolve_token(channel: ChannelConfig, base: Path) -> str:
    """A DingTalk channel's access token, from its file (relative to ``base``) or environment variable."""
    if channel.token_file is not None:
        token = read_secret_file(channel.token_file, base)
    elif channel.token_env is not None:
        token = os.environ.get(channel.token_env, "").strip()
        if not token:
            raise ValueError(f"environment variable {channel.token_env} is not set")
    else:
        raise ValueError("no access token given")
    if len(token) < 16:
        raise ValueError("access token shorter than 16 characters")
    return token


def channel_target(channel: ChannelConfig, base: Path) -> Target:
    """The alerts package's target for one channel, secrets resolved (ValueError naming what is missing)."""
    if channel.type == "email":
        if channel.address is None:
            raise ValueError("an email channel takes an address")
        return EmailTarget(address=channel.address)
    if channel.type == "sms":
        if channel.phone is None:
            raise ValueError("an sms channel takes a phone")
        return SmsTarget(phone=channel.phone)
    if channel.type == "voice":
        if channel.phone is None:
            raise ValueError("a voice channel takes a phone")
        return VoiceTarget(phone=channel.phone)
    if channel.url is None:
        raise ValueError(f"a {channel.type} channel takes a url")
    secret = resolve_secret(channel, base)
    if channel.type == "wecom":
        return WeComTarget(url=channel.url, key=secret)
    if channel.type == "dingtalk":
        return DingTalkTarget(url=channel.url, access_token=resolve_token(channel, base), secret=secret)
    return WebhookTarget(url=channel.url, secret=secret)


def build_directory(deployment: Deployment, base: Path) -> Directory:
    """The alerts package's view of who is responsible for which grid, with resolved secrets."""
    people = [
        Person(
            id=person.id,
            name=person.name,
            targets=tuple(channel_target(channel, base) for channel in person.channels),
            quiet=_quiet(person.quiet_hours),
            max_pages_per_hour=person.max_pages_per_hour,
            target_grades=tuple(
                None if channel.grades is None else frozenset(int(Grade[g]) for g in channel.grades)
                for channel in person.channels
            ),
        )
        for person in deployment.people
    ]
    grids = [Grid(id=grid.id, name=grid.name, managers=tuple(grid.managers)) for grid in deployment.grids]
    rosters = [build_roster(roster) for roster in deployment.rosters]
    return Directory(grids=grids, people=people, rosters=rosters)


def build_smtp(deployment: Deployment, base: Path) -> SmtpServer | None:
    """The deployment's mail server, password resolved (None when it has none)."""
    config = deployment.smtp
    if config is None:
        return None
    password = None
    if config.password_file is not None:
        password = read_secret_file(config.password_file, base)
    elif config.password_env is not None:
        password = os.environ.get(config.password_env, "").strip() or None
        if password is None:
            raise ValueError(f"environment variable {config.password_env} is not set")
    return SmtpServer(
        host=config.host,
        port=config.port,
        sender=config.sender,
        starttls=config.starttls,
        username=config.username,
        password=password,
        timeout_s=config.timeout_s,
    )


def _secret_from(file: str | None, env: str | None, base: Path, what: str) -> str:
    if file is not None:
        return read_secret_file(file, base)
    if env is not None:
        value = os.environ.get(env, "").strip()
        if not value:
            raise ValueError(f"environment variable {env} is not set")
        return value
    raise ValueError(f"give {what}_file or {what}_env")


def build_sms(deployment: Deployment, base: Path) -> SmsGateway | None:
    """The deployment's SMS gateway, secrets resolved (None when it has none); ValueError naming what is missing."""
    config = deployment.sms
    if config is None:
        return None
    if config.format == "generic":
        return SmsGateway(format="generic", url=config.url,
                          token=_secret_from(config.token_file, config.token_env, base, "token"))  # fmt: skip
    missing = [name for name in ("access_key_id", "sign_name", "template_code") if getattr(config, name) is None]
    if missing:
        raise ValueError(f"the aliyun format needs {', '.join(missing)}")
    return SmsGateway(
        format="aliyun",
        url=config.url,
        access_key_id=config.access_key_id or "",
        access_key_secret=_secret_from(config.secret_file, config.secret_env, base, "secret"),
        sign_name=config.sign_name or "",
        template_code=config.template_code or "",
    )


def build_voice(deployment: Deployment, base: Path) -> VoiceGateway | None:
    """The deployment's voice-call provider, secrets resolved (None when it has none); ValueError naming what is
    missing."""
    config = deployment.voice
    if config is None:
        return None
    if config.format == "generic":
        token = _secret_from(config.token_file, config.token_env, base, "token")
        return VoiceGateway(format="generic", url=config.url, token=token, play_times=config.play_times)
    missing = [name for name in ("access_key_id", "tts_code") if getattr(config, name) is None]
    if missing:
        raise ValueError(f"the aliyun format needs {', '.join(missing)}")
    return VoiceGateway(
        format="aliyun",
        url=config.url,
        access_key_id=config.access_key_id or "",
        access_key_secret=_secret_from(config.secret_file, config.secret_env, base, "secret"),
        tts_code=config.tts_code or "",
        called_show_number=config.called_show_number or "",
        play_times=config.play_times,
    )


def build_maintenance(deployment: Deployment) -> list[str]:
    """Who answers first for equipment faults (offline, health): the people of the property company departments
    (SENSORS.md: maintenance for the property company); empty without one, and the grid's person on duty does."""
    return [person for d in deployment.departments if d.kind == "property" for person in d.people]


def build_departments(deployment: Deployment) -> list[Department]:
    """The departments work orders go to."""
    return [Department(id=d.id, name=d.name, kind=d.kind, people=tuple(d.people)) for d in deployment.departments]


def build_broadcasts(deployment: Deployment, base: Path) -> list[Broadcast]:
    """The broadcast receivers emergency notices go to, secrets resolved."""
    community = deployment.community.id
    return [Broadcast(id=b.id, name=b.name, community=community, grids=tuple(b.grids),
                      target=channel_target(b.channel, base)) for b in deployment.broadcasts]  # fmt: skip


def build_volunteers(deployment: Deployment, base: Path) -> list[Volunteer]:
    """The volunteer roster, secrets resolved."""
    community = deployment.community.id
    return [Volunteer(id=v.id, name=v.name, community=community, skills=tuple(v.skills), grids=tuple(v.grids),
                      targets=tuple(channel_target(c, base) for c in v.channels))
            for v in deployment.volunteers]  # fmt: skip


def build_grouping(deployment: Deployment) -> GroupingPolicy | None:
    """The deployment's notification grouping (None when ``grouping.enabled`` is false)."""
    config = deployment.grouping
    if not config.enabled:
        return None
    return GroupingPolicy(
        group_wait_s=config.group_wait_s,
        interval_s={**DEFAULT_INTERVAL_S, **{Grade[name]: value for name, value in config.interval_s.items()}},
        max_pages_per_hour=config.max_pages_per_hour,
    )


def build_escalation(deployment: Deployment) -> EscalationPolicy:
    """The escalation chain and answer deadlines of ``deployment`` (checked against its people at load)."""
    levels = [
        EscalationLevel(id=level.id, name=level.name, people=tuple(level.people))
        for level in deployment.escalation.levels
    ]
    config = deployment.escalation

    def per_grade(seconds: Mapping[GradeName, float]) -> dict[Grade, int]:
        return {Grade[name]: round(value * 1000) for name, value in seconds.items()}

    return EscalationPolicy(
        levels,
        per_grade(config.answer_within_s),
        on_site_within_ms=per_grade(config.on_site_within_s),
        reopen_after_ms=round(config.reopen_after_s * 1000),
    )
