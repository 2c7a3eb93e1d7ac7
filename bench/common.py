"""Shared helpers: repeated timing with medians, and a machine description for BENCHMARKS.md."""

import collections
import os
import platform
import queue
import re
import statistics
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hub.demo.processes import Line

__all__ = ["Timing", "hub_metrics", "loadavg", "machine", "measure", "require_mosquitto", "run_dir", "save_lines"]


@dataclass(frozen=True, slots=True)
class Timing:
    median_s: float
    runs_s: tuple[float, ...]

    def rate(self, items: int) -> float:
        """Items per second at the median run time."""
        return items / self.median_s


def measure(work: Callable[[], object], *, repeats: int = 9) -> Timing:
    """Run ``work`` once to warm up, then ``repeats`` times; shared machines are noisy, so keep the median."""
    work()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        runs.append(time.perf_counter() - start)
    return Timing(statistics.median(runs), tuple(runs))


def require_mosquitto() -> str:
    """The mosquitto binary; RuntimeError saying how to install it when missing (these benchmarks need a real one)."""
    from hub.demo.broker import find_mosquitto

    binary = find_mosquitto()
    if binary is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto): the benchmark needs a real broker")
    return binary


def run_dir(name: str, given: Path | None = None) -> Path:
    """Where a run keeps its configs and logs: ``given``, or ``run/bench/{name}-{time}`` (created)."""
    directory = (
        given or Path(__file__).resolve().parents[1] / "run" / "bench" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def save_lines(lines: "queue.Queue[Line]", path: Path) -> None:
    """Write the child processes' output gathered in ``lines`` to ``path``, one ``source: text`` a line."""
    with path.open("w", encoding="utf-8") as log:
        while not lines.empty():
            line = lines.get_nowait()
            log.write(f"{line.source}: {line.text}\n")


def loadavg() -> list[str]:
    """The 1, 5 and 15 minute load averages as /proc/loadavg says them: how busy the shared machine was."""
    return Path("/proc/loadavg").read_text().split()[:3]


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def hub_metrics(http_port: int) -> dict[str, float]:
    """A hub's /metrics on 127.0.0.1, label sets summed per metric name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            values[name] += float(line.rsplit(" ", 1)[1])
    return values
