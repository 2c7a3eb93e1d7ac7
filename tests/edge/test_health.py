import math
import os
import time
from dataclasses import fields
from pathlib import Path

from edge.health import Health, disk_free_bytes, health_line, health_report, oldest_age_s, process_usage
from protocol.telemetry import HEALTH_FIELDS, HealthReport, decode_health, encode_health


def test_process_usage_and_disk() -> None:
    sum(range(200_000))  # some CPU
    cpu_s, rss_bytes = process_usage()
    assert cpu_s > 0 and 1 << 20 < rss_bytes < 4 << 30
    assert disk_free_bytes(Path.cwd()) > 0
    assert disk_free_bytes(Path("/nonexistent/deeper/dir")) > 0  # the nearest existing parent
    assert os.path.exists("/proc/self/status")


def _health(*, time_s: float, hub_online: bool, unanswered_polls: int) -> Health:
    """A snapshot with fixed figures; the three that the tests vary are arguments."""
    return Health(
        time_s=time_s,
        outbox_readings=3,
        outbox_bytes=180,
        unsent_readings=1,
        unacked_batches=1,
        oldest_unacked_s=2.25,
        dropped_readings=0,
        reconnects=1,
        hub_online=hub_online,
        bad_acks=0,
        garbage_samples=4,
        unanswered_polls=unanswered_polls,
        commands_rejected=0,
        clock_skew_s=math.nan,
        cpu_s=0.5,
        rss_bytes=1024,
        disk_free_bytes=2048,
    )


def test_oldest_age() -> None:
    assert oldest_age_s(None) == 0.0
    assert oldest_age_s(1_000_000, now_s=1_030.5) == 30.5
    assert 9 < oldest_age_s(int((time.time() - 10) * 1000)) < 12


def test_health_line_and_values() -> None:
    health = _health(time_s=1.0, hub_online=False, unanswered_polls=0)
    line = health_line(health)
    assert line.startswith("health: outbox_readings=3 outbox_bytes=180 ")
    assert "hub_online=false" in line and "clock_skew_s=none" in line and "oldest_unacked_s=2.2" in line
    assert "time_s" not in line
    values = health.values()
    assert values["hub_online"] == 0.0 and values["garbage_samples"] == 4.0 and math.isnan(values["clock_skew_s"])


def test_every_health_field_is_one_the_hub_knows_and_the_report_round_trips() -> None:
    names = {f.name for f in fields(Health)} - {"time_s"}
    assert names | {"health_skipped"} == set(HEALTH_FIELDS), "a new Health field needs its entry in HEALTH_FIELDS"
    health = _health(time_s=1_764_400_000.5, hub_online=True, unanswered_polls=7)
    report = health_report(health, silent=["temp-2", "gas-1"], skipped=4)
    decoded = decode_health(encode_health(report))
    assert isinstance(decoded, HealthReport)
    assert decoded.time_s == 1_764_400_000.5 and decoded.silent == ("gas-1", "temp-2")
    assert decoded.values["health_skipped"] == 4.0 and decoded.values["hub_online"] == 1.0
    assert decoded.values["unanswered_polls"] == 7.0
    assert "clock_skew_s" not in decoded.values, "NaN (no time check yet) travels as unknown"
    assert set(decoded.values) == set(HEALTH_FIELDS) - {"clock_skew_s"}
