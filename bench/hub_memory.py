"""What a community costs in memory on a worker: its hub forked by the zygote against one started by exec, under load.

Real processes on loopback: Mosquitto, PostgreSQL (Debian's package) and one ``anju-hub worker`` whose shard map
gives it ``COMMUNITIES`` communities (each a load-generator deployment of 1 gateway × 20 sensors), its hubs forked by
its zygote (hub/zygote.py). The reference, same run: community ``c0`` of the same shape, run by ``anju-hub serve``
started by exec, as workers started their hubs before the zygote. ``anju-sim load`` then feeds ``c1`` and ``c0`` the
same stream (``RATE`` readings/s each) for ``SECONDS`` seconds while the other forked hubs idle. Every ``EVERY_S``
seconds, from /proc/PID/smaps_rollup: USS (private pages: what one more community costs; it grows as a forked hub
writes to pages it shared, copy on write) and PSS.

Reported: the loaded forked hub's USS at the start and at the end against the exec'd hub's, their ratio, and an
idle forked hub's and the zygote's. ``python -m bench hub_memory`` runs it (about 5 minutes); logs go to
run/bench/hub-memory-TIMESTAMP.
"""

import queue
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import loadavg, run_dir, save_lines
from bench.takeover import services, serving, wait_until
from bench.worker_takeover import SENSORS, Fleet, Memory, hubs_of, memory_of, zygote_pid
from hub.demo.processes import Child, Line

__all__ = ["report", "run"]

RATE = 1_000
"""Readings/s into each loaded community: 20 sensors at 50 Hz."""
SECONDS = 240.0
EVERY_S = 30.0


def _load(port: int, community: str, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "firmware_sim", "load", "--port", str(port), "--community", community,
         "--gateways", "1", "--sensors-per-gateway", str(SENSORS), "--rate", str(RATE // SENSORS), "--batch", "100",
         "--duration", str(seconds), "--kinds", "gas,smoke"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def run(seconds: float = SECONDS, *, directory: Path | None = None) -> dict[str, object]:
    where = run_dir("hub-memory", directory)
    before = loadavg()
    lines: queue.Queue[Line] = queue.Queue()
    samples: list[tuple[float, Memory, Memory, Memory, Memory]] = []
    try:
        with services(where, lines) as (mqtt_port, url):
            fleet = Fleet(where, mqtt_port, url, lines)
            worker = fleet.start("w1")
            reference: tuple[Child, ...] = ()
            try:
                wait_until(lambda: all(serving(p) for p in fleet.ports.values()), "w1 to serve its communities")
                reference = fleet.start_exec_reference()
                running, _ = reference
                assert running.process is not None
                loaded = next(pid for pid in hubs_of(worker) if "w1:c1" in _title(pid))
                idle = next(pid for pid in hubs_of(worker) if "w1:c2" in _title(pid))
                zygote = zygote_pid(worker)
                loads = [_load(mqtt_port, community, seconds) for community in ("c1", "c0")]
                started = time.monotonic()
                while True:
                    at = time.monotonic() - started
                    exec_pid = running.process.pid
                    samples.append((at, memory_of(loaded), memory_of(exec_pid), memory_of(idle), memory_of(zygote)))
                    if at >= seconds:
                        break
                    time.sleep(min(EVERY_S, seconds - at))
                for load in loads:
                    load.wait(timeout=60)
            finally:
                worker.stop(grace_s=30)
                for hub in reference:
                    hub.stop(grace_s=30)
    finally:
        save_lines(lines, where / "processes.log")
    return {"samples": samples, "loadavg_before": before, "loadavg_after": loadavg(), "logs": str(where)}


def _title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def report(results: dict[str, object], say: Callable[[str], None] = lambda text: print(text, flush=True)) -> None:
    samples = results.get("samples")
    if not isinstance(samples, list) or not samples:
        say("hub_memory: no result")
        return
    first, last = samples[0], samples[-1]
    minutes = last[0] / 60
    say(
        f"hub memory, a community fed {RATE:,} readings/s for {minutes:.0f} min: forked by the worker's zygote USS "
        f"{first[1].uss:.0f} MB at the start, {last[1].uss:.0f} MB at the end (PSS {last[1].pss:.0f}); reference, "
        f"same run, started by exec and fed the same: USS {first[2].uss:.0f} → {last[2].uss:.0f} MB (PSS "
        f"{last[2].pss:.0f}); USS ratio forked / exec at the end {last[1].uss / last[2].uss:.2f}"
    )
    say(
        f"an idle forked hub USS {statistics.median(s[3].uss for s in samples):.0f} MB (median of {len(samples)} "
        f"samples); the zygote USS {last[4].uss:.0f} MB, RSS {last[4].rss:.0f} MB (shared with every hub it forked)"
    )
    say(f"every {EVERY_S:.0f} s, loaded forked / exec USS MB: "
        + ", ".join(f"{s[1].uss:.0f}/{s[2].uss:.0f}" for s in samples))  # fmt: skip
    say(f"load average before {results.get('loadavg_before')}, after {results.get('loadavg_after')}")
    say(f"logs in {results.get('logs')}")


def main() -> int:
    report(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
