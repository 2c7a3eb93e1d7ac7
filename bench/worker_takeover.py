"""A dead worker's communities taken over (issue 8, "Figures"), and what a worker's hubs cost in memory.

Real processes on loopback: Mosquitto, PostgreSQL (Debian's package, fsync on) and two ``anju-hub worker``
processes on one shard map of ``COMMUNITIES`` communities (each a load-generator deployment of 1 gateway × 20
sensors), every community owned by one worker with the other as its standby, the default 15 s lease term. The worker
that runs them all is killed with its hubs (SIGKILL of its process group, as a power cut would) at a random moment
of its hubs' renewal cycle; measured on the machine's wall clock from the kill until each community's standby hub
answers ``/api/v1/health`` with its broker sessions connected. The killed worker is then started again (it becomes
the standby for every community) and the roles swap for the next kill.

Reference, same run: issue 8's bound (30 s) and the **cold start** of the first worker (exec → every community
served, the leases free), which is what a takeover adds to the lease's wait.

Memory, before each kill, from /proc/PID/smaps_rollup: of a hub that runs its community, of a standby hub (both forked
by the worker's zygote, hub/zygote.py), of the zygote and of the worker process. Each as RSS (resident, shared pages
counted whole), PSS (shared pages divided among the processes that share them: what the machine pays, summed) and
USS (private pages only: what one more community costs). Reference, same run: a hub started by exec, as workers
started them before the zygote, running a community of its own (``c0``, the same deployment shape, outside the
shard map) and a standby for it.

``python -m bench worker_takeover`` runs it (``KILLS`` kills; about 2 minutes); logs go to
run/bench/worker-takeover-TIMESTAMP.
"""

import queue
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.common import loadavg, run_dir, save_lines
from bench.takeover import BOUND_S, TERM_S, services, serving, wait_until
from firmware_sim.load_plan import LoadOptions, render_deployment
from hub.demo.processes import Child, Line, free_port
from hub.zygote import forked_hubs, zygote_of

__all__ = ["Fleet", "Memory", "WorkerKill", "hubs_of", "memory_of", "report", "run", "zygote_pid"]

COMMUNITIES = 4
KILLS = 4
SENSORS = 20


@dataclass(frozen=True, slots=True)
class Memory:
    """One process's memory (MB): resident, proportional (shared pages divided among their sharers), unique."""

    rss: float
    pss: float
    uss: float


@dataclass(frozen=True, slots=True)
class WorkerKill:
    """One worker killed with every community on it; seconds from the kill until each community was served again."""

    phase_s: float
    serving_s: tuple[float, ...]
    running_hubs: tuple[Memory, ...]
    standby_hubs: tuple[Memory, ...]
    zygote: Memory
    worker: Memory
    exec_running: Memory
    exec_standby: Memory


def memory_of(pid: int) -> Memory:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="ascii").splitlines()[1:]:
        name, _, value = line.partition(":")
        fields[name] = int(value.split()[0])
    if "Rss" not in fields:
        raise RuntimeError(f"no smaps_rollup for process {pid}")
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return Memory(fields["Rss"] / 1024, fields["Pss"] / 1024, uss / 1024)


def zygote_pid(worker: Child) -> int:
    assert worker.process is not None
    zygote = zygote_of(worker.process.pid)
    if zygote is None:
        raise RuntimeError(f"worker {worker.name} has no zygote")
    return zygote


def hubs_of(worker: Child) -> list[int]:
    """The pids of the worker's hub processes (its zygote's children)."""
    assert worker.process is not None
    return forked_hubs(worker.process.pid)


class Fleet:
    """The shard map's communities and the two workers that share them."""

    def __init__(self, where: Path, mqtt_port: int, url: str, lines: "queue.Queue[Line]") -> None:
        self.where, self.mqtt_port, self.url, self.lines = where, mqtt_port, url, lines
        self.ports = {f"c{i}": free_port() for i in range(1, COMMUNITIES + 1)}
        entries = ["version: 1", "communities:"]
        for community, port in self.ports.items():
            options = LoadOptions(community=community, gateways=1, sensors_per_gateway=SENSORS, kinds=("gas", "smoke"))
            (where / f"{community}.yaml").write_text(render_deployment(options), encoding="utf-8")
            entries.append(f"  {community}: {{deployment: {community}.yaml, data_dir: data/{community}, "
                           f"http_port: {port}, workers: [w1, w2]}}")  # fmt: skip
        self.shard_map = where / "shards.yaml"
        self.shard_map.write_text("\n".join(entries) + "\n", encoding="utf-8")
        self.url_file = where / "alerts-database.url"
        self.url_file.write_text(url + "\n", encoding="utf-8")
        self.url_file.chmod(0o600)

    def start(self, name: str) -> Child:
        argv = [sys.executable, "-m", "hub", "--log-level", "info", "worker", "--shard-map", str(self.shard_map),
                "--name", name, "--alerts-database-file", str(self.url_file),
                "--mqtt-port", str(self.mqtt_port)]  # fmt: skip
        return Child(name, argv, self.lines).start()

    def start_exec_reference(self) -> tuple[Child, Child]:
        """Community ``c0``, outside the shard map, run by ``anju-hub serve`` started by exec, and a standby for it
        started the same way: (running, standby)."""
        options = LoadOptions(community="c0", gateways=1, sensors_per_gateway=SENSORS, kinds=("gas", "smoke"))
        (self.where / "c0.yaml").write_text(render_deployment(options), encoding="utf-8")
        hubs = []
        for name in ("x1", "x2"):
            argv = [sys.executable, "-m", "hub", "--log-level", "info", "serve",
                    "--config", str(self.where / "c0.yaml"), "--data-dir", str(self.where / "data" / f"c0-{name}"),
                    "--http-port", str(free_port()), "--lease-holder", f"{name}:c0",
                    "--alerts-database-file", str(self.url_file), "--mqtt-port", str(self.mqtt_port)]  # fmt: skip
            hubs.append(Child(f"exec-{name}", argv, self.lines).start())
            if name == "x1":
                port = int(argv[argv.index("--http-port") + 1])
                wait_until(lambda port=port: serving(port), "the exec'd hub of c0 to serve")  # type: ignore[misc]
        return hubs[0], hubs[1]

    def holders(self) -> set[str]:
        """The workers that hold a lease now."""
        with psycopg.connect(self.url, autocommit=True) as db:
            rows = db.execute("SELECT holder FROM anju.leases WHERE expires_at > now()").fetchall()
        return {str(holder).split(":", 1)[0] for (holder,) in rows}


def run(kills: int = KILLS, *, directory: Path | None = None, seed: int = 8) -> dict[str, object]:
    """``kills`` SIGKILLs of the worker running every community; the first worker's cold start as the reference."""
    where = run_dir("worker-takeover", directory)
    chance = random.Random(seed)
    before = loadavg()
    lines: queue.Queue[Line] = queue.Queue()
    results: list[WorkerKill] = []
    try:
        with services(where, lines) as (mqtt_port, url):
            fleet = Fleet(where, mqtt_port, url, lines)
            started = time.monotonic()
            holder = fleet.start("w1")
            all_served = wait_until(lambda: all(serving(p) for p in fleet.ports.values()), "w1 to serve them all")
            cold_start_s = all_served - started
            standby = fleet.start("w2")
            reference = fleet.start_exec_reference()
            try:
                for _ in range(kills):
                    time.sleep(4.0)  # the standby's hubs are up and polling
                    results.append(_kill(fleet, holder, standby, reference, chance))
                    holder.stop(grace_s=20)
                    holder, standby = standby, fleet.start(holder.name)
            finally:
                holder.stop(grace_s=30)
                standby.stop(grace_s=30)
                for hub in reference:
                    hub.stop(grace_s=30)
    finally:
        save_lines(lines, where / "processes.log")
    return {"kills": results, "cold_start_s": cold_start_s, "loadavg_before": before, "loadavg_after": loadavg(),
            "logs": str(where)}  # fmt: skip


def _kill(
    fleet: Fleet, holder: Child, standby: Child, reference: tuple[Child, Child], chance: random.Random
) -> WorkerKill:
    if fleet.holders() - {"x1"} != {holder.name}:
        raise RuntimeError(f"the leases are held by {fleet.holders()}, not by {holder.name} alone")
    running = tuple(memory_of(pid) for pid in hubs_of(holder))
    waiting = tuple(memory_of(pid) for pid in hubs_of(standby))
    assert holder.process is not None and reference[0].process is not None and reference[1].process is not None
    zygote, worker = memory_of(zygote_pid(holder)), memory_of(holder.process.pid)
    exec_running, exec_standby = memory_of(reference[0].process.pid), memory_of(reference[1].process.pid)
    phase = chance.uniform(0, TERM_S / 3)
    time.sleep(phase)
    killed = time.monotonic()
    holder.kill()
    served: dict[str, float] = {}
    deadline = killed + BOUND_S * 3
    while len(served) < len(fleet.ports) and time.monotonic() < deadline:
        for community, port in fleet.ports.items():
            if community not in served and serving(port):
                served[community] = time.monotonic() - killed
        time.sleep(0.02)
    if len(served) < len(fleet.ports):
        raise RuntimeError(f"only {sorted(served)} taken over by {standby.name} in {BOUND_S * 3:.0f} s")
    if fleet.holders() - {"x1"} != {standby.name}:
        raise RuntimeError(f"the leases are held by {fleet.holders()}, not by {standby.name}")
    return WorkerKill(phase, tuple(sorted(served.values())), running, waiting, zygote, worker, exec_running,
                      exec_standby)  # fmt: skip


def report(results: dict[str, object], say: Callable[[str], None] = lambda text: print(text, flush=True)) -> None:
    kills = results.get("kills")
    if not isinstance(kills, list) or not kills:
        say("worker_takeover: no result")
        return
    cold = float(results["cold_start_s"])  # type: ignore[arg-type]
    say(f"reference: cold start of a worker with {COMMUNITIES} communities (exec → all served, leases free) "
        f"{cold:.2f} s; issue 8's bound {BOUND_S:.0f} s")  # fmt: skip
    every = [k.serving_s[-1] for k in kills]
    each = [s for k in kills for s in k.serving_s]
    say(
        f"worker killed with its {COMMUNITIES} communities ({len(kills)} kills at random phases, lease term "
        f"{TERM_S:.0f} s): all served again median {statistics.median(every):.2f} s, max {max(every):.2f} s "
        f"(runs {' / '.join(f'{s:.2f}' for s in every)}); each community median {statistics.median(each):.2f} s; "
        f"max / bound {max(every) / BOUND_S:.2f}"
    )

    def median(memories: list[Memory]) -> str:
        rss, pss, uss = (statistics.median(getattr(m, kind) for m in memories) for kind in ("rss", "pss", "uss"))
        return f"RSS {rss:.0f} / PSS {pss:.0f} / USS {uss:.0f} MB"

    def uss_ratio(forked: list[Memory], started: list[Memory]) -> float:
        return statistics.median(m.uss for m in forked) / statistics.median(m.uss for m in started)

    running = [m for k in kills for m in k.running_hubs]
    waiting = [m for k in kills for m in k.standby_hubs]
    say(f"memory (medians of {len(kills)} samples): forked by the zygote, a hub running its community "
        f"{median(running)}, a standby hub {median(waiting)}; the zygote {median([k.zygote for k in kills])}; "
        f"the worker {median([k.worker for k in kills])}")  # fmt: skip
    exec_running, exec_standby = [k.exec_running for k in kills], [k.exec_standby for k in kills]
    say(f"reference, same run: started by exec, a hub running its community {median(exec_running)}, a standby hub "
        f"{median(exec_standby)}; USS ratio forked / exec: running {uss_ratio(running, exec_running):.2f}, standby "
        f"{uss_ratio(waiting, exec_standby):.2f}")  # fmt: skip
    say(f"load average before {results.get('loadavg_before')}, after {results.get('loadavg_after')}")
    say(f"logs in {results.get('logs')}")


def main() -> int:
    report(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
