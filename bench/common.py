"""Shared helpers: repeated timing with medians, and a machine description for BENCHMARKS.md."""

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Timing", "machine", "measure"]


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
