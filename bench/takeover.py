"""Takeover time (issue 8, "Figures"): a hub killed while it runs a community, until a standby runs it.

Real processes on loopback: Mosquitto, PostgreSQL (Debian's package, fsync on, as in production) and ``anju-hub
serve`` processes of the demo community (红星社区, 20 detectors), all with ``--alerts-database-file``. A chain of hubs:
the first takes the free lease; each later one starts as a standby while the one before holds the lease, and is then
killed with SIGKILL at a random moment of its renewal cycle (uniform over one renewal interval, term / 3), as a power
cut would. Measured per kill, on the machine's wall clock:

* **lease taken**: kill → the standby's epoch in the lease table (its ``acquired_at``, the server's clock);
* **serving**: kill → the standby answers ``/api/v1/health`` with both broker sessions connected (its runtime was
  built after it took the lease: alert store, detection, ingest; the API listens last).

Reference, same run: the **cold start** of the first hub (exec → serving, with the lease free, so no wait), which is
what a takeover adds to the lease's wait; and the bound, 30 s. The expected takeover is the term minus the time since
the dead hub's last renewal (uniform over 0 … term / 3), plus half the standby's 1 s poll, plus the start. A
graceful stop (SIGTERM: the lease is released) is measured once as well: the planned switchover.

``python -m bench takeover`` runs it (``KILLS`` kills; about 2 minutes with the default 15 s term); logs go to
run/bench/takeover-TIMESTAMP.
"""

import contextlib
import datetime as dt
import queue
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import psycopg

from bench.common import loadavg, require_mosquitto, run_dir, save_lines
from hub.demo.broker import mosquitto_config
from hub.demo.orchestrator import prepare
from hub.demo.postgres import find_postgres, running_postgres
from hub.demo.processes import Child, Line, free_port, wait_port

__all__ = ["Kill", "report", "run", "services", "serving", "wait_until"]

KILLS = 5
TERM_S = 15.0
"""The hub's default lease term (``lease_term_s``)."""
BOUND_S = 30.0
START_TIMEOUT_S = 90.0


@dataclass(frozen=True, slots=True)
class Kill:
    """One kill of the holder and its standby's takeover, seconds from the kill."""

    graceful: bool
    phase_s: float
    """The random wait before the kill (the holder renews on its own cycle, so the kill lands at a random phase)."""
    lease_s: float
    serving_s: float


class Chain:
    """Hubs of one community started one after another, each a standby of the one before."""

    def __init__(self, directory: Path, mqtt_port: int, url: str, lines: "queue.Queue[Line]") -> None:
        self.directory = directory
        self.lines = lines
        self.plan = prepare(directory / "plan", mqtt_port=mqtt_port)
        self.url_file = directory / "alerts-database.url"
        self.url_file.write_text(url + "\n", encoding="utf-8")
        self.url_file.chmod(0o600)
        self.url = url
        self.count = 0

    def start(self) -> tuple[Child, int, str]:
        self.count += 1
        name, port = f"hub-{self.count}", free_port()
        argv = [sys.executable, "-m", "hub", "--log-level", "info", "serve", "--config", str(self.plan.deployment),
                "--data-dir", str(self.directory / name), "--mqtt-port", str(self.plan.mqtt_port),
                "--http-port", str(port), "--api-token-file", str(self.plan.token_file),
                "--alerts-database-file", str(self.url_file), "--lease-holder", name]  # fmt: skip
        return Child(name, argv, self.lines).start(), port, name

    def holder(self) -> tuple[str, int, dt.datetime] | None:
        with psycopg.connect(self.url, autocommit=True) as db:
            row = db.execute(
                "SELECT holder, epoch, acquired_at FROM anju.leases WHERE community = 'hongxing'"
            ).fetchone()
        return (str(row[0]), int(row[1]), row[2]) if row else None


def serving(port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1, trust_env=False).json()
        return bool(health.get("mqtt_connected"))
    return False


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = START_TIMEOUT_S) -> float:
    """Poll every 20 ms; the monotonic time it became true. RuntimeError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic()


@contextlib.contextmanager
def services(directory: Path, lines: "queue.Queue[Line]") -> Iterator[tuple[int, str]]:
    mosquitto = require_mosquitto()
    bin_dir = find_postgres()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql): the benchmark needs a real one")
    port = free_port()
    config = mosquitto_config(port=port, directory=directory / "mqtt")
    broker = Child("mosquitto", [mosquitto, "-c", str(config)], lines).start()
    try:
        if not wait_port(port, timeout_s=10):
            raise RuntimeError("mosquitto did not listen")
        with running_postgres(bin_dir, durable=True) as server:
            yield port, server.url
    finally:
        broker.stop(grace_s=5)


def run(kills: int = KILLS, *, directory: Path | None = None, seed: int = 8) -> dict[str, object]:
    """``kills`` SIGKILL takeovers and one graceful one; the cold start of the first hub as the reference."""
    where = run_dir("takeover", directory)
    chance = random.Random(seed)
    before = loadavg()
    results: list[Kill] = []
    lines: queue.Queue[Line] = queue.Queue()
    try:
        cold_start_s = _chain(where, lines, chance, kills, results)
    finally:
        save_lines(lines, where / "processes.log")
    return {"kills": results, "cold_start_s": cold_start_s, "loadavg_before": before, "loadavg_after": loadavg(),
            "logs": str(where)}  # fmt: skip


def _chain(where: Path, lines: "queue.Queue[Line]", chance: random.Random, kills: int, results: list[Kill]) -> float:
    """Run the chain of hubs, appending each takeover to ``results``; the cold start of the first hub, seconds."""
    with services(where, lines) as (mqtt_port, url):
        chain = Chain(where, mqtt_port, url, lines)
        started = time.monotonic()
        holder, holder_port, holder_name = chain.start()
        cold_start_s = wait_until(lambda: serving(holder_port), "the first hub to serve") - started
        try:
            for index in range(kills + 1):
                graceful = index == kills
                standby, standby_port, standby_name = chain.start()
                try:
                    time.sleep(3.0)  # the standby is up and polling (its port stays closed)
                    if wait_port(standby_port, timeout_s=0.1):
                        raise RuntimeError(f"{standby_name} serves while {holder_name} holds the lease")
                    phase = chance.uniform(0, TERM_S / 3)
                    time.sleep(phase)
                    killed_wall, killed = time.time(), time.monotonic()
                    if graceful:
                        holder.signal(signal.SIGTERM)
                    else:
                        holder.kill()
                    served_at = wait_until(partial(serving, standby_port), f"{standby_name} to take over")
                    held = chain.holder()
                    if held is None or held[0] != standby_name:
                        raise RuntimeError(f"the lease is {held}, not {standby_name}'s")
                    results.append(Kill(graceful, phase, held[2].timestamp() - killed_wall, served_at - killed))
                except BaseException:
                    standby.stop(grace_s=5)
                    raise
                holder.stop(grace_s=20)
                holder, holder_port, holder_name = standby, standby_port, standby_name
        finally:
            holder.stop(grace_s=20)
    return cold_start_s


def report(results: dict[str, object], say: Callable[[str], None] = lambda text: print(text, flush=True)) -> None:
    kills = results.get("kills")
    if not isinstance(kills, list) or not kills:
        say("takeover: no result")
        return
    cold = float(results["cold_start_s"])  # type: ignore[arg-type]
    hard = [k for k in kills if not k.graceful]
    soft = [k for k in kills if k.graceful]
    say(f"reference: cold start of a hub (exec → serving, lease free) {cold:.2f} s; issue 8's bound {BOUND_S:.0f} s")
    if hard:
        serving = [k.serving_s for k in hard]
        lease = [k.lease_s for k in hard]
        say(
            f"takeover after SIGKILL of the holder, {len(hard)} kills at random phases, lease term {TERM_S:.0f} s: "
            f"serving median {statistics.median(serving):.2f} s, max {max(serving):.2f} s "
            f"(runs {' / '.join(f'{s:.2f}' for s in serving)}); lease taken median {statistics.median(lease):.2f} s; "
            f"max / bound {max(serving) / BOUND_S:.2f}; start after the lease (serving − lease) median "
            f"{statistics.median(s - t for s, t in zip(serving, lease, strict=True)):.2f} s"
        )
    for k in soft:
        say(f"planned switchover (SIGTERM: lease released): serving {k.serving_s:.2f} s, lease taken {k.lease_s:.2f} s")
    say(f"load average before {results.get('loadavg_before')}, after {results.get('loadavg_after')}")
    say(f"logs in {results.get('logs')}")


def main() -> int:
    report(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
