"""Shared helpers: repeated timing with medians, and a machine description for BENCHMARKS.md."""

import collections
import os
import platform
import re
import statistics
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Timing", "hub_metrics", "machine", "measure"]


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
