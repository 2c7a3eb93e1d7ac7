"""Hub workers sharded by community (issue 8, "Figures"): 1, 2 and 3 `anju-hub serve` processes on one Mosquitto.

Each worker is a real hub process (its own GIL) serving its own community — its own deployment file (``anju-sim
load``'s, 20 gateways × 100 sensors), data directory, HTTP port, and the default MQTT client ids
``anju-hub-{community}``[``-urgent``] — subscribed to ``anju/v1/{community}/+/…`` only. One run with N workers:

1. the N hubs start and connect (their persistent sessions and subscriptions now exist in the broker), then are
   paused (SIGSTOP): the broker queues their traffic;
2. one ``anju-sim load`` per community publishes ``BACKLOG_READINGS`` (20 × 100 sensors × 100 Hz for 5 s,
   100-reading batches, QoS 1) and exits — the generators run while the hubs are paused, so they never compete
   with them for the two cores;
3. the hubs are resumed together (SIGCONT) and each drains its community's backlog through decode, validation,
   detection, the durable commit of its embedded store and the hub-ack. Each worker's time is from the resume to
   its last reading stored (``anju_readings_stored_total`` polled every ``POLL_S``, the crossing interpolated);
   aggregate readings/s = all readings / the slowest worker's time.

A backlog is the load generator offering more than the workers can take, at any instant of the drain: one Python
generator publishes ~200-300 k readings/s flat out (BENCHMARKS.md), below what even one hub drains, so a live
stream could not saturate two or three workers, and on two cores it would take a core from them.

Per-worker efficiency = aggregate / (N × the 1-worker rate of the same invocation). With 2 cores shared by the
workers and the broker (single-threaded, it delivers every message), the aggregate cannot grow past what two cores
give: expect efficiency to fall as N passes the core count. Each hub is checked to have received exactly its own
community's data messages and dead-lettered nothing as ``community_mismatch``.

``python -m bench hub_workers`` runs it (N = 1, 2, 3 interleaved, ``REPEATS`` runs each, medians; about 4 minutes
on the 2-core reference machine); logs go to run/bench/hub-workers-TIMESTAMP.
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import loadavg, require_mosquitto, run_dir
from bench.edge_vs_tbgw import Logs, cpu_seconds, machine_busy_s, start
from firmware_sim.load_plan import LoadOptions, render_deployment
from hub.demo.broker import mosquitto_config
from hub.demo.processes import Child, free_port, wait_port

__all__ = ["Run", "report", "run"]

REPO = Path(__file__).resolve().parents[1]
WORKERS = (1, 2, 3)
REPEATS = 3
"""Runs of each worker count, interleaved (1, 2, 3, 1, 2, 3, …) so a noisy neighbour hits them alike; medians."""
GATEWAYS = 20
SENSORS_PER_GATEWAY = 100
BATCH = 100
RATE_HZ = 100.0
BACKLOG_S = 5.0
BACKLOG_READINGS = int(GATEWAYS * SENSORS_PER_GATEWAY * RATE_HZ * BACKLOG_S)
"""1,000,000 readings (10,000 messages) per worker: a drain of several seconds at ~250 k readings/s."""
MAX_QUEUED_MESSAGES = 100_000
"""Per hub session, 10× its backlog: the broker drops nothing (stock Mosquitto: 1,000, which would)."""
POLL_S = 0.1
CONNECT_TIMEOUT_S = 60.0
"""Three hubs starting at once on two cores, each loading 2,000 sensors' detection state."""
STALL_S = 20.0
"""No reading stored by any worker for this long ends the run as failed (a drain takes seconds)."""


@dataclass(frozen=True, slots=True)
class Run:
    """One run of ``workers`` hub processes draining their backlogs together."""

    workers: int
    published: tuple[int, ...]
    """Readings each community's generator published (the worker's backlog)."""
    stored: tuple[int, ...]
    drain_s: tuple[float, ...]
    """Each worker's seconds from the resume to its last reading stored."""
    hubs_cpu_cores: float
    broker_cpu_cores: float
    machine_busy_cores: float
    """Of ``os.cpu_count()``, over the drain (everything on the machine, the benchmark's processes and others')."""
    foreign: int
    """Messages the workers received from another community or dead-lettered as ``community_mismatch``: 0 when
    each receives only its own."""

    @property
    def makespan_s(self) -> float:
        return max(self.drain_s)

    @property
    def aggregate_per_s(self) -> float:
        """All workers' readings stored per second, to the slowest worker's last."""
        return sum(self.stored) / self.makespan_s

    @property
    def per_worker_per_s(self) -> tuple[float, ...]:
        return tuple(stored / seconds for stored, seconds in zip(self.stored, self.drain_s, strict=True))


# -- one hub -----------------------------------------------------------------------------------------------------


@dataclass
class _Worker:
    community: str
    http_port: int
    data_dir: Path
    child: Child

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as response:
            text: str = response.read().decode()
        return text

    def value(self, text: str, line_start: str) -> float:
        """The sum of the exposition lines of ``line_start`` (a name, or a name and its first labels)."""
        total = 0.0
        for line in text.splitlines():
            if line.startswith(line_start) and line[len(line_start) : len(line_start) + 1] in (" ", "{", ","):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stored(self) -> float:
        return self.value(self.metrics(), "anju_readings_stored_total")

    @property
    def pid(self) -> int:
        assert self.child.process is not None
        return self.child.process.pid


def _start_worker(workdir: Path, logs: Logs, broker_port: int, community: str) -> _Worker:
    directory = workdir / community
    directory.mkdir(parents=True)
    deployment = directory / "deployment.yaml"
    options = LoadOptions(community=community, gateways=GATEWAYS, sensors_per_gateway=SENSORS_PER_GATEWAY)
    deployment.write_text(render_deployment(options), encoding="utf-8")
    token = directory / "api-token"
    token.write_text(secrets.token_hex(24) + "\n", encoding="utf-8")
    data_dir = Path(tempfile.mkdtemp(prefix=f"anju-bench-{community}-"))
    http_port = free_port()
    argv = [sys.executable, "-m", "hub", "--log-level", "warning", "serve", "--config", str(deployment)]
    argv += ["--data-dir", str(data_dir), "--mqtt-port", str(broker_port), "--http-port", str(http_port)]
    argv += ["--api-token-file", str(token)]  # no --mqtt-client-id: the default, anju-hub-{community}, is measured
    return _Worker(community, http_port, data_dir, start(logs, f"hub-{community}", argv, cwd=REPO))


def _connected(worker: _Worker) -> bool:
    with contextlib.suppress(OSError, ValueError):
        return worker.value(worker.metrics(), "anju_mqtt_connected") == 1.0
    return False


def _load_argv(broker_port: int, community: str, report: Path) -> list[str]:
    held = int(SENSORS_PER_GATEWAY * RATE_HZ * (BACKLOG_S + 5))  # never stalls: nobody acks while it publishes
    return [
        *(sys.executable, "-m", "firmware_sim", "load", "--port", str(broker_port), "--community", community),
        *("--gateways", str(GATEWAYS), "--sensors-per-gateway", str(SENSORS_PER_GATEWAY), "--rate", f"{RATE_HZ:g}"),
        *("--batch", str(BATCH), "--duration", f"{BACKLOG_S:g}", "--ack-timeout", "600", "--max-unacked", str(held)),
        *("--drain", "0", "--report", str(report)),
    ]


# -- one run -----------------------------------------------------------------------------------------------------


def _drain(workers: Sequence[_Worker], backlog: Sequence[int]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Resume the paused workers and follow them until each stored its backlog: (stored, seconds each)."""
    done: dict[int, float] = {}
    last = [(0.0, 0.0)] * len(workers)  # (seconds since resume, stored) at the previous poll
    stored = [0] * len(workers)
    t0 = time.monotonic()
    for worker in workers:
        worker.child.signal(signal.SIGCONT)
    progress_at = t0
    while len(done) < len(workers):
        time.sleep(POLL_S)
        now = time.monotonic()
        for index, worker in enumerate(workers):
            if index in done:
                continue
            count = int(worker.stored())
            at = now - t0
            if count > stored[index]:
                progress_at = now
            if count >= backlog[index]:
                before_s, before = last[index]
                # The crossing between two polls, at the rate seen between them.
                done[index] = before_s + (at - before_s) * (backlog[index] - before) / max(1.0, count - before)
            last[index] = (at, float(count))
            stored[index] = count
        if now - progress_at > STALL_S:
            raise RuntimeError(f"workers stored nothing for {STALL_S:.0f} s: {stored} of {list(backlog)}")
    return tuple(stored), tuple(done[index] for index in range(len(workers)))


def _run(workdir: Path, logs: Logs, broker: Child, broker_port: int, count: int, label: str) -> Run:
    communities = [f"{label}-{index}" for index in range(1, count + 1)]
    workers: list[_Worker] = []
    try:
        for community in communities:
            workers.append(_start_worker(workdir, logs, broker_port, community))
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not all(_connected(worker) for worker in workers):
            if time.monotonic() > deadline or not all(worker.child.alive for worker in workers):
                raise RuntimeError(f"hubs {communities} not all connected within {CONNECT_TIMEOUT_S:.0f} s")
            time.sleep(0.2)
        for worker in workers:
            worker.child.signal(signal.SIGSTOP)
        generators = []
        for community in communities:
            report = workdir / community / "load.json"
            generators.append((report, start(logs, f"load-{community}", _load_argv(broker_port, community, report))))
        for _, generator in generators:
            assert generator.process is not None
            generator.process.wait(timeout=BACKLOG_S + 120)
        reports = [json.loads(report.read_text(encoding="utf-8")) for report, _ in generators]
        backlog = [int(body["published_readings"]) for body in reports]
        busy0, total0 = machine_busy_s()
        hubs0, broker0 = sum(cpu_seconds(w.pid) for w in workers), cpu_seconds(_pid(broker))
        stored, drain_s = _drain(workers, backlog)
        busy1, total1 = machine_busy_s()
        hubs1, broker1 = sum(cpu_seconds(w.pid) for w in workers), cpu_seconds(_pid(broker))
        foreign = 0
        for worker, body in zip(workers, reports, strict=True):
            text = worker.metrics()
            received = worker.value(text, 'anju_messages_received_total{channel="data"}')
            foreign += int(received) - int(body["published_messages"])
            foreign += int(worker.value(text, 'anju_payloads_rejected_total{reason="community_mismatch"}'))
    finally:
        for worker in workers:
            worker.child.signal(signal.SIGCONT)  # a paused process never sees the SIGTERM
            worker.child.stop(grace_s=15.0)
            shutil.rmtree(worker.data_dir, ignore_errors=True)
    wall = (total1 - total0) / (os.cpu_count() or 1)
    return Run(
        workers=count,
        published=tuple(backlog),
        stored=stored,
        drain_s=drain_s,
        hubs_cpu_cores=(hubs1 - hubs0) / wall,
        broker_cpu_cores=(broker1 - broker0) / wall,
        machine_busy_cores=(busy1 - busy0) / wall,
        foreign=foreign,
    )


def _pid(child: Child) -> int:
    assert child.process is not None
    return child.process.pid


# -- the benchmark -----------------------------------------------------------------------------------------------


def run(
    *, workdir: Path | None = None, say: Callable[[str], None] = lambda text: print(text, flush=True)
) -> dict[str, object]:
    mosquitto = require_mosquitto()
    workdir = run_dir("hub-workers", workdir)
    logs = Logs(workdir / "logs")
    results: dict[str, object] = {"workdir": str(workdir), "loadavg_before": loadavg()}
    broker_port = free_port()
    config = mosquitto_config(port=broker_port, directory=workdir, max_queued_messages=MAX_QUEUED_MESSAGES)
    broker = start(logs, "mosquitto", [mosquitto, "-c", str(config)])
    runs: list[Run] = []
    try:
        if not wait_port(broker_port, timeout_s=30):
            raise RuntimeError(f"mosquitto does not listen on {broker_port} (see {workdir}/logs)")
        say(f"broker :{broker_port}; {BACKLOG_READINGS:,} readings of backlog per worker; logs in {workdir}/logs")
        for repeat in range(1, REPEATS + 1):
            for count in WORKERS:
                one = _run(workdir, logs, broker, broker_port, count, f"r{repeat}-n{count}")
                runs.append(one)
                say(_run_line(one))
    finally:
        broker.stop(grace_s=10.0)
        logs.close()
    results["runs"] = runs
    results["loadavg_after"] = loadavg()
    return results


def _run_line(one: Run) -> str:
    rates = " / ".join(f"{rate:,.0f}" for rate in one.per_worker_per_s)
    return (
        f"{one.workers} worker(s): {sum(one.stored):,} readings in {one.makespan_s:.2f} s = "
        f"{one.aggregate_per_s:,.0f} readings/s stored and acked (per worker {rates}); hubs {one.hubs_cpu_cores:.2f} "
        f"cores, broker {one.broker_cpu_cores:.2f}, machine {one.machine_busy_cores:.2f} of {os.cpu_count()} busy; "
        f"foreign messages {one.foreign}"
    )


def report(results: dict[str, object], say: Callable[[str], None] = lambda text: print(text, flush=True)) -> None:
    runs = results.get("runs")
    if not isinstance(runs, list) or not runs:
        say("hub workers: no result")
        return
    by_count: dict[int, list[Run]] = {}
    for one in runs:
        by_count.setdefault(one.workers, []).append(one)
    single = statistics.median(one.aggregate_per_s for one in by_count.get(1, []))
    say(f"reference: 1 hub worker, median of {len(by_count.get(1, []))} runs: {single:,.0f} readings/s")
    for count, group in sorted(by_count.items()):
        aggregate = statistics.median(one.aggregate_per_s for one in group)
        per_worker = statistics.median(statistics.fmean(one.per_worker_per_s) for one in group)
        cores = statistics.median(one.machine_busy_cores for one in group)
        hubs = statistics.median(one.hubs_cpu_cores for one in group)
        broker = statistics.median(one.broker_cpu_cores for one in group)
        runs_text = " / ".join(f"{one.aggregate_per_s:,.0f}" for one in group)
        say(
            f"{count} hub worker(s), one community each, median of {len(group)}: aggregate {aggregate:,.0f} readings/s "
            f"stored and acked (runs {runs_text}), per worker {per_worker:,.0f}/s, efficiency "
            f"{aggregate / (count * single):.2f} (aggregate / ({count} × {single:,.0f})), speed-up "
            f"{aggregate / single:.2f}; hubs {hubs:.2f} cores, broker {broker:.2f}, machine {cores:.2f} of "
            f"{os.cpu_count()} busy; foreign messages {sum(one.foreign for one in group)}"
        )
    say(f"load average before {results.get('loadavg_before')}, after {results.get('loadavg_after')}")


def main() -> int:
    report(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
