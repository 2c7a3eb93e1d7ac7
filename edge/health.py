"""The agent's own health: what a field engineer needs to judge a gateway without logging in to it.

Every ``health_interval_s`` the agent logs one INFO line (``health_line``) and stores the same numbers in the
outbox (``Outbox.save_health``) so that ``anju-edge outbox`` shows them from another process. While the broker
is connected the same numbers go to the hub on ``health`` (``health_report``, ``protocol.telemetry``), with the
detectors that are not answering on the bus and those whose own report (header registers: fault, tamper, low
battery) or garbage samples are worth a look; while it is not, the snapshot is skipped and counted (the outbox
holds readings, and a newer snapshot supersedes an older one anyway).

Units are in the field names. ``oldest_unacked_s`` is measured against the device time of the oldest reading
still held (the outbox keeps no separate arrival time); ``clock_skew_s`` is gateway minus hub from the last
``cmd/time`` (NaN when none came); CPU and RSS are this process's, from ``resource`` and ``/proc/self/status``.
"""

import math
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from protocol.telemetry import DeviceStatus, HealthReport

__all__ = ["Health", "disk_free_bytes", "health_line", "health_report", "oldest_age_s", "process_usage"]


@dataclass(frozen=True, slots=True)
class Health:
    time_s: float
    outbox_readings: int
    outbox_bytes: int
    unsent_readings: int
    unacked_batches: int
    oldest_unacked_s: float
    dropped_readings: int
    reconnects: int
    hub_online: bool
    bad_acks: int
    garbage_samples: int
    unanswered_polls: int
    commands_rejected: int
    clock_skew_s: float
    cpu_s: float
    rss_bytes: int
    disk_free_bytes: int
    client_rebuilds: int = 0
    """Times the MQTT session replaced a paho client whose network thread had died or stalled."""

    def values(self) -> dict[str, float]:
        """Every field as a number (booleans as 0/1), the form ``Outbox.save_health`` stores."""
        return {key: float(value) for key, value in asdict(self).items()}


def health_report(
    health: Health, *, silent: Sequence[str], skipped: int, devices: Sequence[DeviceStatus] = ()
) -> HealthReport:
    """The snapshot as the hub receives it: every field but ``time_s`` as a number, plus the silent detectors
    (sensor ids), the detectors worth a look (``ModbusDriver.device_statuses``) and ``health_skipped``, the
    snapshots not sent so far because the broker was unreachable."""
    values = health.values()
    time_s = values.pop("time_s")
    values["health_skipped"] = float(skipped)
    return HealthReport(time_s, values, tuple(silent), tuple(sorted(devices, key=lambda device: device.sensor)))


def process_usage() -> tuple[float, int]:
    """This process's CPU seconds (user + system) and resident set size in bytes.

    RSS is the current VmRSS from ``/proc/self/status`` (Linux); elsewhere the peak (``ru_maxrss``) stands in.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = usage.ru_utime + usage.ru_stime
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return cpu_s, int(line.split()[1]) * 1024
    except OSError:
        pass
    return cpu_s, usage.ru_maxrss * 1024


def disk_free_bytes(path: Path) -> int:
    """Free bytes for an unprivileged writer on the file system that holds ``path`` (-1 when unknown)."""
    for candidate in (path, *path.parents):
        try:
            return int(shutil.disk_usage(candidate).free)
        except OSError:
            continue
    return -1


def oldest_age_s(oldest_time_ms: int | None, now_s: float | None = None) -> float:
    """Seconds since the device time of the oldest reading held; 0 when the outbox is empty."""
    if oldest_time_ms is None:
        return 0.0
    now = time.time() if now_s is None else now_s
    return max(0.0, now - oldest_time_ms / 1000)


def health_line(health: Health) -> str:
    """The INFO log line: ``health: key=value …`` in field order."""
    parts = []
    for key, value in asdict(health).items():
        if key == "time_s":
            continue
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, float):
            text = "none" if math.isnan(value) else f"{value:.3f}" if key == "clock_skew_s" else f"{value:.1f}"
        else:
            text = str(value)
        parts.append(f"{key}={text}")
    return "health: " + " ".join(parts)
