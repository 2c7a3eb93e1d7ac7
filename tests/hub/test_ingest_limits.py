"""Per-gateway limits (hub/ingest/limits.py, hub/ingest/budget.py) in-process, on a clock the test moves: what is
admitted, deferred or refused, the flood alert's hysteresis, and the deployment file's checks."""

import shutil
from pathlib import Path

import pytest

from alerts.model import Grade
from edge.agent import MAX_BATCHES_PER_TICK
from edge.config import EdgeConfig
from hub.config import ConfigError, load_deployment
from hub.ingest.budget import BYTES_PER_READING, DEFAULT_BUDGET, Budget
from hub.ingest.limits import (
    DEAD_LETTER_HEAD,
    UNREGISTERED,
    GatewayLimits,
    LimitsPolicy,
    Verdict,
    flood_key,
    limits_policy,
)
from hub.ingest.registry import Registry
from hub.metrics import Metrics
from protocol import Batch, Reading, encode_batch
from protocol.rejection import RejectReason

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "deploy" / "demo" / "deployment.yaml"


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(load_deployment(DEMO, check_secrets=False))


def batch(registry: Registry, gateway: str, readings: int, seq: int = 1) -> tuple[str, bytes]:
    sensors = list(registry.on_gateway[gateway].values())
    records = tuple(
        Reading(sensors[i % len(sensors)].id, 1_764_000_000_000 + i, 1.0, sensors[i % len(sensors)].kind.unit)
        for i in range(readings)
    )
    body = encode_batch(Batch(registry.community, gateway, 1, seq, records))
    return f"anju/v1/{registry.community}/{gateway}/data", body


def make(registry: Registry, clock: Clock, **budget: float) -> tuple[GatewayLimits, Metrics]:
    metrics = Metrics()
    small = Budget(**({"readings_per_s": 100.0, "readings_burst": 200.0} | budget))  # type: ignore[arg-type]
    policy = LimitsPolicy(default=small, alert_after_s=10.0, calm_s=20.0)
    return GatewayLimits(registry=registry, metrics=metrics, policy=policy, clock=clock), metrics


def test_a_burst_is_admitted_then_the_excess_deferred_and_counted_for_that_gateway_only(registry: Registry) -> None:
    clock = Clock()
    limits, metrics = make(registry, clock)
    first, second = list(registry.gateways)[:2]
    name, body = batch(registry, first, 50)
    verdicts = [limits.judge(name, "data", body).verdict for _ in range(6)]
    assert verdicts == [Verdict.ADMIT] * 4 + [Verdict.DEFER] * 2  # 4 x 50 = the burst of 200
    assert metrics.gateway_throttled_messages.get(gateway=first) == 2
    assert metrics.gateway_throttled_readings.get(gateway=first) == 100
    assert metrics.gateway_throttled_bytes.get(gateway=first) == 2 * len(body)
    other_name, other_body = batch(registry, second, 50)
    assert limits.judge(other_name, "data", other_body).verdict is Verdict.ADMIT  # its own budget
    assert metrics.gateway_throttled_messages.get(gateway=second) == 0


def test_deferral_is_sticky_until_the_buckets_are_half_full_again(registry: Registry) -> None:
    clock = Clock()
    limits, _ = make(registry, clock)
    gateway = next(iter(registry.gateways))
    name, body = batch(registry, gateway, 50)
    while limits.judge(name, "data", body).verdict is Verdict.ADMIT:
        assert not limits.over(gateway)
    assert limits.over(gateway)
    clock.now_s += 0.5  # 50 readings earned: one batch's worth, but not half the burst (100)
    assert limits.judge(name, "data", body).verdict is Verdict.DEFER
    clock.now_s += 0.5  # 100 readings: half the burst
    assert limits.judge(name, "data", body).verdict is Verdict.ADMIT
    assert limits.judge(name, "data", body).verdict is Verdict.ADMIT  # not deferring any more: runs to empty
    assert limits.judge(name, "data", body).verdict is Verdict.DEFER


def test_bytes_and_messages_have_their_own_buckets(registry: Registry) -> None:
    clock = Clock()
    gateway = next(iter(registry.gateways))
    name, _ = batch(registry, gateway, 1)
    by_messages, _ = make(registry, clock, messages_per_s=1.0, messages_burst=3.0)
    assert [by_messages.judge(name, "health", b"{}").verdict for _ in range(4)] == [Verdict.ADMIT] * 3 + [Verdict.DEFER]
    by_bytes, _ = make(registry, clock, bytes_per_s=1024.0, bytes_burst=2048.0, max_message_bytes=1024)
    chunk = b" " * 1000
    assert [by_bytes.judge(name, "reply", chunk).verdict for _ in range(3)] == [Verdict.ADMIT] * 2 + [Verdict.DEFER]


def test_gateways_not_registered_here_share_one_budget(registry: Registry) -> None:
    clock = Clock()
    limits, metrics = make(registry, clock)
    gateway = next(iter(registry.gateways))
    _, body = batch(registry, gateway, 100)
    spoofed = ["anju/v1/other-community/" + gateway + "/data", "anju/v1/hongxing/nobody-1/data", "bad/topic"]
    assert [limits.judge(name, "data", body).verdict for name in spoofed] == [Verdict.ADMIT] * 2 + [Verdict.DEFER]
    assert metrics.gateway_throttled_messages.get(gateway=UNREGISTERED) == 1
    name, _ = batch(registry, gateway, 1)
    assert limits.judge(name, "data", body).verdict is Verdict.ADMIT  # the registered one kept its own


def test_an_oversize_message_is_refused_naming_the_gateway_and_limit_and_only_its_head_is_kept(
    registry: Registry,
) -> None:
    clock = Clock()
    limits, metrics = make(registry, clock, readings_burst=10_000.0, max_message_bytes=16_384)
    gateway = next(iter(registry.gateways))
    name, body = batch(registry, gateway, 400)
    assert len(body) > 16_384
    judged = limits.judge(name, "data", body)
    assert judged.verdict is Verdict.REFUSE and judged.rejection is not None
    assert judged.rejection.reason is RejectReason.OVERSIZED
    assert f"gateway {gateway}: {len(body)} bytes > its max_message_bytes 16384" in judged.rejection.detail
    assert DEAD_LETTER_HEAD > 16_384 and judged.kept == body[:16_384]  # never more than the limit: payable
    assert metrics.gateway_oversize.get(gateway=gateway) == 1
    many, _ = make(registry, clock)  # 250 records can never fit a burst of 200 readings: refused, not deferred
    name, body = batch(registry, gateway, 250)
    judged = many.judge(name, "data", body)
    assert judged.verdict is Verdict.REFUSE and judged.rejection is not None
    assert "250 records > its readings_burst 200" in judged.rejection.detail


def test_switched_off_everything_passes(registry: Registry) -> None:
    gateway = next(iter(registry.gateways))
    name, body = batch(registry, gateway, 50)
    off = GatewayLimits(
        registry=registry,
        metrics=Metrics(),
        policy=LimitsPolicy(enabled=False, default=Budget(readings_per_s=1, readings_burst=60)),
    )
    assert all(off.judge(name, "data", body).verdict is Verdict.ADMIT for _ in range(100))


def flood_until(limits: GatewayLimits, clock: Clock, name: str, body: bytes, until_s: float) -> None:
    """Offer a batch every 0.1 s (500 readings/s against 100/s) until ``until_s``, sweeping each second."""
    while clock.now_s < until_s:
        limits.judge(name, "data", body)
        clock.now_s += 0.1


def test_the_flood_alert_fires_only_when_sustained_and_clears_only_after_a_calm_stretch(registry: Registry) -> None:
    clock = Clock()
    limits, metrics = make(registry, clock)  # alert after 10 s over, cleared after 20 s calm
    gateway = next(iter(registry.gateways))
    name, body = batch(registry, gateway, 50)
    start = clock.now_s
    flood_until(limits, clock, name, body, start + 5)
    assert limits.sweep(1) == [], "5 s over is not sustained"
    clock.now_s += 15  # calm for 15 s: not yet the 20 s that end an episode, so it goes on
    flood_until(limits, clock, name, body, clock.now_s + 1)
    [fired] = limits.sweep(2)
    assert fired.key == flood_key("hongxing", gateway) == f"hongxing/gateway/{gateway}/flood"
    assert (fired.status, fired.kind, fired.rule, fired.grade, fired.maintenance) == (
        "firing",
        "gateway",
        "rate-limit",
        Grade.IV,
        True,
    )
    assert fired.value >= 10 and fired.threshold == 10 and fired.sensor == gateway and fired.grid
    assert 'anju_gateway_over_budget{gateway="' + gateway + '"} 1' in metrics.render()
    for _ in range(3):  # still flooding, with pauses shorter than the calm: no flapping
        flood_until(limits, clock, name, body, clock.now_s + 2)
        clock.now_s += 15
        assert limits.sweep(3) == []
    clock.now_s += 5  # 20 s since the last deferral
    [cleared] = limits.sweep(4)
    assert (cleared.key, cleared.status) == (fired.key, "cleared")
    assert limits.sweep(5) == []
    flood_until(limits, clock, name, body, clock.now_s + 5)
    assert limits.sweep(6) == [], "a new episode needs its own 10 s"


def test_an_alert_open_before_a_restart_is_cleared_once_the_gateway_is_calm(registry: Registry) -> None:
    clock = Clock()
    limits, _ = make(registry, clock)
    gateway = next(iter(registry.gateways))
    name, body = batch(registry, gateway, 50)
    flood_until(limits, clock, name, body, clock.now_s + 12)
    [fired] = limits.sweep(1)
    after_restart, _ = make(registry, clock)
    assert after_restart.restore([fired]) == 1
    assert after_restart.sweep(2) == []
    clock.now_s += 20
    [cleared] = after_restart.sweep(3)
    assert (cleared.key, cleared.status) == (fired.key, "cleared")


def test_budgets_refuse_a_burst_smaller_than_the_largest_message() -> None:
    with pytest.raises(ValueError, match=r"bytes_burst \(2048\) must be >= max_message_bytes \(4096\)"):
        Budget(bytes_burst=2048, max_message_bytes=4096)
    with pytest.raises(ValueError, match="readings_per_s must be a positive number, got 0"):
        Budget(readings_per_s=0)
    with pytest.raises(ValueError, match=r"max_message_bytes must be 1024\.\.262144"):
        Budget(max_message_bytes=300_000)
    with pytest.raises(ValueError, match="alert_after_s and calm_s must be > 0"):
        LimitsPolicy(calm_s=0)


def test_the_defaults_leave_room_for_an_edge_catching_up_with_its_replay() -> None:
    """The arithmetic of hub/ingest/budget.py against the edge's own defaults (a change there fails here)."""
    fields = EdgeConfig.__dataclass_fields__
    max_batch, tick_s = fields["max_batch"].default, fields["publish_interval_s"].default
    ack_timeout_s = fields["ack_timeout_s"].default
    drain = MAX_BATCHES_PER_TICK * max_batch / tick_s  # readings a second while catching up
    republish = drain * ack_timeout_s  # everything sent within one ack timeout, again in one instant
    assert DEFAULT_BUDGET.readings_per_s >= 1.5 * (2 * drain)
    assert DEFAULT_BUDGET.readings_burst >= 1.5 * (republish + drain)
    assert DEFAULT_BUDGET.messages_per_s >= 1.5 * 2 * MAX_BATCHES_PER_TICK / tick_s
    assert DEFAULT_BUDGET.messages_burst >= 1.5 * (republish + drain) / max_batch
    assert DEFAULT_BUDGET.bytes_per_s >= DEFAULT_BUDGET.readings_per_s * BYTES_PER_READING
    assert DEFAULT_BUDGET.bytes_burst >= DEFAULT_BUDGET.readings_burst * BYTES_PER_READING
    # Alarms drain the same way, 20 batches a tick, and are republished the same way after an ack timeout.
    assert DEFAULT_BUDGET.alarm_messages_per_s >= 1.5 * 2 * MAX_BATCHES_PER_TICK / tick_s
    assert DEFAULT_BUDGET.alarm_messages_burst >= 1.5 * (ack_timeout_s + tick_s) * MAX_BATCHES_PER_TICK / tick_s


def test_alarms_have_a_budget_of_their_own_that_no_data_uses_up(registry: Registry) -> None:
    clock = Clock()
    limits, metrics = make(registry, clock, alarm_messages_per_s=10.0, alarm_messages_burst=30.0)
    first, second = list(registry.gateways)[:2]
    name, body = batch(registry, first, 200)
    assert limits.judge(name, "data", body).verdict is Verdict.ADMIT
    assert limits.judge(name, "data", body).verdict is Verdict.DEFER  # its data budget is spent…
    alarm = name.replace("/data", "/alarm")
    verdicts = [limits.judge_alarm(alarm, body).verdict for _ in range(32)]
    assert verdicts == [Verdict.ADMIT] * 30 + [Verdict.DEFER] * 2  # …its alarms pass up to their own burst
    assert metrics.gateway_throttled_messages.get(gateway=first) == 1 + 2
    other = batch(registry, second, 1)[0].replace("/data", "/alarm")
    assert limits.judge_alarm(other, body).verdict is Verdict.ADMIT  # another gateway's alarms are its own
    clock.now_s += 0.1
    assert limits.judge_alarm(alarm, body).verdict is Verdict.ADMIT  # 10 a second: one more after 0.1 s


def test_an_honest_gateways_alarms_are_never_deferred_even_with_a_replay(registry: Registry) -> None:
    """Twenty alarm batches a tick for a minute, and the whole last ack timeout's worth republished at once."""
    clock = Clock()
    limits = GatewayLimits(registry=registry, metrics=Metrics(), policy=LimitsPolicy(), clock=clock)
    alarm = f"anju/v1/{registry.community}/{next(iter(registry.gateways))}/alarm"
    fields = EdgeConfig.__dataclass_fields__
    tick_s, ack_timeout_s = fields["publish_interval_s"].default, fields["ack_timeout_s"].default
    for tick in range(60):
        sent = MAX_BATCHES_PER_TICK
        if tick == 30:
            sent += int(ack_timeout_s / tick_s) * MAX_BATCHES_PER_TICK
        for _ in range(sent):
            assert limits.judge_alarm(alarm, b"{}").verdict is Verdict.ADMIT, tick
        clock.now_s += tick_s


def test_a_record_stays_within_the_bytes_a_reading_the_defaults_assume() -> None:
    longest = "s" * 64
    record = Reading(longest, 1_764_000_000_123, -1.2345678901234567e300, "%LEL")
    one = encode_batch(Batch("c" * 64, "g" * 64, 2**62, 2**62, (record,)))
    two = encode_batch(
        Batch("c" * 64, "g" * 64, 2**62, 2**62, (record, record._replace(time_ms=record.time_ms + 999_999)))
    )
    assert len(two) - len(one) <= BYTES_PER_READING


def deployment_with(tmp_path: Path, top: str, gateway_limits: str = "") -> Path:
    text = DEMO.read_text(encoding="utf-8")
    if gateway_limits:
        marker = "gateways:\n"
        head, tail = text.split(marker, 1)
        first = tail.split("\n", 1)
        tail = first[0] + "\n" + gateway_limits + first[1]
        text = head + marker + tail
    path = tmp_path / "deployment.yaml"
    path.write_text(text + top, encoding="utf-8")
    shutil.copy(path, tmp_path / "copy.yaml")
    return path


def test_the_deployment_file_takes_defaults_and_per_gateway_overrides(tmp_path: Path) -> None:
    path = deployment_with(
        tmp_path,
        "gateway_limits:\n  readings_per_s: 5000\n  flood_alert_after_s: 45\n",
        "    limits:\n      readings_burst: 20000\n      max_message_bytes: 65536\n",
    )
    deployment = load_deployment(path, check_secrets=False)
    policy = limits_policy(deployment)
    first = deployment.gateways[0].id
    assert policy.alert_after_s == 45 and policy.calm_s == 60
    assert policy.default.readings_per_s == 5000 and policy.default.readings_burst == DEFAULT_BUDGET.readings_burst
    assert policy.budget(first) == Budget(
        **{**vars_of(policy.default), "readings_burst": 20000, "max_message_bytes": 65536}
    )
    assert policy.budget(deployment.gateways[1].id) == policy.default


def vars_of(budget: Budget) -> dict[str, float]:
    return {name: getattr(budget, name) for name in Budget.__dataclass_fields__}


@pytest.mark.parametrize(
    ("top", "own", "expected"),
    [
        (
            "gateway_limits:\n  bytes_burst: 100000\n",
            "",
            "gateway_limits.bytes_burst = 100000.0: bytes_burst (100000) must be >= max_message_bytes (262144)",
        ),
        ("gateway_limits:\n  readings_per_s: -1\n", "", "gateway_limits.readings_per_s = -1: Input should be greater"),
        ("gateway_limits:\n  per_second: 5\n", "", "gateway_limits.per_second = 5: unknown key"),
        (
            "",
            "    limits:\n      bytes_burst: 4096\n",
            "gateways[0].limits.bytes_burst = 4096.0: gateway gw-b1: bytes_burst (4096) must be >= max_message_bytes",
        ),
        ("", "    limits:\n      max_message_bytes: 999999\n", "gateways[0].limits.max_message_bytes = 999999"),
    ],
)
def test_bad_limits_in_the_deployment_file_are_errors_naming_the_key_and_value(
    tmp_path: Path, top: str, own: str, expected: str
) -> None:
    path = deployment_with(tmp_path, top, own)
    with pytest.raises(ConfigError) as caught:
        load_deployment(path, check_secrets=False)
    assert expected in str(caught.value), str(caught.value)
    assert f"{path}:" in str(caught.value)
