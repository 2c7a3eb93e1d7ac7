"""Risk event → notification sent, Anju's alert service against Prometheus Alertmanager, same run (issue 6).

Both deliver to the same webhook receiver, a separate process on loopback (``python -m bench.alerts_latency
receive``: a threading HTTP server with Nagle off, which records the arrival time of every notification). The
load is each of ``RATES`` events a second for ``SECONDS`` seconds, every event its own alert (its own group in
Alertmanager, ``group_by: ['...']``, ``group_wait: 0s``), open loop: each event is due at its own instant whether or
not the previous ones are done, and its latency is measured from that instant to its arrival at the receiver.

- Anju: ``AlertService.submit`` in this process, each event a task at its instant; the alert, its audit row and its
  notification are committed to SQLite (WAL, ``synchronous=FULL``) before the delivery task posts the signed
  webhook — the issue's "alert persisted first". The garbage collector is set as ``anju-hub serve`` sets it for the
  process the service runs in (``hub.runtime.tune_gc``), and restored afterwards; a second run with the interpreter's
  defaults shows what that setting is worth.
- Anju again with the alert state on PostgreSQL (Debian's package, a server of the run's own, fsync on) as hubs
  that share state write it (issue 8): under a held lease, every write fenced by it (hub/lease.py).
- Alertmanager 0.25 (Debian ``prometheus-alertmanager``): one ``POST /api/v2/alerts`` per event at its instant from
  eight threads with keep-alive connections (latency from the instant, as for Anju), our own minimal config (one
  route, one webhook, ``send_resolved: false``), its state in memory and in a temporary ``--storage.path``.

Reported: events sent, notifications received, p50 / p99 latency (ms) for each, and Anju's p99 against the issue's
target (25 ms) and against Alertmanager's. ``python -m bench alerts`` runs it (~2 min).
"""

import argparse
import asyncio
import contextlib
import gc
import http.client
import http.server
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from alerts import AlertService, AlertStore, Directory, Grade, Grid, Person, RiskEvent, WebhookReceiver, WebhookTarget
from hub.demo.postgres import find_postgres, running_postgres
from hub.demo.processes import free_port, wait_port
from hub.lease import Lease, LeaseLost
from hub.runtime import tune_gc

__all__ = ["find_alertmanager", "main", "report", "run", "start_alertmanager"]

RATES = (200, 1_000)
"""Events a second: a busy community's storm, and issue 6's figure (1,000 events/s)."""
SECONDS = 10.0
GENERATOR_THREADS = 8
"""Threads posting to Alertmanager, each over its own keep-alive connection: one asyncio client posted only 46
alerts/s when offered 1,000/s (the first version of this bench)."""
TARGET_P99_MS = 25.0
SECRET = "bench-webhook-secret-0123456789"
ALERTMANAGER_CONFIG = """\
route:
  receiver: bench
  group_by: ['...']
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: bench
    webhook_configs:
      - url: http://127.0.0.1:{port}/hook
        send_resolved: false
"""


# -- the receiver (its own process) ---------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    arrivals: list[tuple[str, float, float]]
    lock = threading.Lock()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        now = time.time()
        if "alerts" in body:  # Alertmanager: a group of alerts, each with our sent_ts annotation
            rows = [(a["labels"]["id"], now, float(a["annotations"]["sent_ts"])) for a in body["alerts"]]
        else:  # Anju: one alert; its event time is the instant the event was due
            rows = [(body["alert_key"], now, body["event_time_ms"] / 1000)]
        with self.lock:
            self.arrivals.extend(rows)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def _receive(port: int, out: Path, seconds: float) -> int:
    _Handler.arrivals = []
    http.server.ThreadingHTTPServer.request_queue_size = 256  # the default backlog of 5 resets bursts of connects
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not out.with_suffix(".stop").exists():
        time.sleep(0.1)
    server.shutdown()
    with _Handler.lock:
        out.write_text("\n".join(f"{k}\t{a}\t{s}" for k, a, s in _Handler.arrivals), encoding="utf-8")
    return 0


class _Receiver:
    """The receiver process; ``arrivals()`` stops it and returns (id, arrival s, due s) rows."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.out = workdir / f"arrivals-{self.port}.tsv"
        command = [sys.executable, "-m", "bench.alerts_latency", "receive", "--port", str(self.port)]
        self.process = subprocess.Popen([*command, "--out", str(self.out), "--seconds", "300"])
        if not wait_port(self.port, timeout_s=10):
            self.process.kill()
            raise RuntimeError("the bench webhook receiver did not start")

    def arrivals(self) -> list[tuple[str, float, float]]:
        self.out.with_suffix(".stop").touch()
        self.process.wait(timeout=30)
        rows = []
        for line in self.out.read_text(encoding="utf-8").splitlines():
            key, arrived, due = line.split("\t")
            rows.append((key, float(arrived), float(due)))
        return rows


def _summary(sent: int, rows: list[tuple[str, float, float]], elapsed_s: float) -> dict[str, float]:
    first = {}
    for key, arrived, due in rows:
        if key not in first or arrived < first[key][0]:
            first[key] = (arrived, due)
    latencies = sorted((arrived - due) * 1000 for arrived, due in first.values())
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "sent": sent,
        "received": len(first),
        "rate": sent / elapsed_s,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": cuts[98] if latencies else float("nan"),
    }


async def _settle(count: Callable[[], int], expected: int, idle_s: float = 5.0) -> None:
    """Wait until ``count()`` reaches ``expected`` or stops growing for ``idle_s``."""
    last, since = -1, time.monotonic()
    while count() < expected:
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > idle_s:
            return
        await asyncio.sleep(0.05)


# -- Anju -----------------------------------------------------------------------------------------------------


def _event(i: int, due_s: float) -> RiskEvent:
    return RiskEvent(
        key=f"bench/gas-{i}/gas/level",
        community="bench",
        grid="grid-1",
        sensor=f"gas-{i}",
        kind="gas",
        location_zh="基准社区 1栋",
        rule="level-1 alarm",
        grade=Grade.III,
        value=27.4,
        unit="%LEL",
        time_ms=round(due_s * 1000),
        status="firing",
        source="GB/T 50493-2019 §5.5.2: level-1 alarm",
        threshold=25.0,
    )


@contextlib.asynccontextmanager
async def _store(workdir: Path, postgres_url: str | None, rate: int) -> AsyncIterator[AlertStore]:
    """SQLite in ``workdir``, or a schema of the PostgreSQL at ``postgres_url`` written as a hub writes it there: under
    a held lease (hub/lease.py), every write fenced by it, the lease renewed meanwhile."""
    if postgres_url is None:
        with AlertStore(workdir / "alerts.sqlite3") as store:
            yield store
        return
    lease = Lease(postgres_url, f"bench-{rate}", holder="bench")
    if not await lease.try_acquire():
        raise RuntimeError(f"the bench lease on {postgres_url} is held by another process")
    keeper = asyncio.create_task(lease.keep(on_lost=lambda reason: None))
    try:
        with AlertStore(postgres_url, schema=f"bench_{rate}", fence=lambda: lease.fence) as store:
            yield store
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError, LeaseLost):
            await keeper
        await lease.release()
        await lease.close()


async def _anju(workdir: Path, rate: int, seconds: float, postgres_url: str | None = None) -> dict[str, float]:
    receiver = _Receiver(workdir)
    directory = Directory(
        grids=[Grid(id="grid-1", name="网格", managers=("duty",))],
        people=[Person(id="duty", name="值班", targets=(WebhookTarget(url=f"http://127.0.0.1:{receiver.port}/hook",
                                                                      secret=SECRET),))],
    )  # fmt: skip
    total = int(rate * seconds)
    async with (
        _store(workdir, postgres_url, rate) as store,
        WebhookReceiver() as webhook,
        AlertService(store=store, directory=directory, receiver=webhook, max_in_flight=64) as service,
    ):
        start = time.time() + 0.2
        tasks = []
        for i in range(total):
            due = start + i / rate
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(service.submit(_event(i, due))))
        await asyncio.gather(*tasks)
        elapsed = time.time() - start
        await _settle(lambda: service.counters.notifications_sent_total, total)
    return _summary(total, receiver.arrivals(), elapsed)


# -- Alertmanager ---------------------------------------------------------------------------------------------


def find_alertmanager() -> str | None:
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def start_alertmanager(binary: str, workdir: Path, config_text: str) -> tuple[subprocess.Popen[bytes], int]:
    """Alertmanager with ``config_text`` on a free loopback port, its state in ``workdir``: (process, port)."""
    config = workdir / "alertmanager.yml"
    config.write_text(config_text, encoding="utf-8")
    port = free_port()
    with (workdir / "alertmanager.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={workdir / 'am-data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    if not wait_port(port, timeout_s=30):
        process.kill()
        raise RuntimeError(f"alertmanager did not listen (see {workdir / 'alertmanager.log'})")
    return process, port


def _alertmanager(port: int, rate: int, seconds: float) -> tuple[int, float]:
    """POST the load to Alertmanager from ``GENERATOR_THREADS`` threads, each with its own keep-alive connection
    and every ``GENERATOR_THREADS``-th event at its due instant (open loop, ``sent_ts`` = the due instant, as for
    Anju); (accepted alerts, seconds it took to send them)."""
    total = int(rate * seconds)
    start = time.time() + 0.5
    accepted = [0] * GENERATOR_THREADS

    def post_share(k: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(k, total, GENERATOR_THREADS):
            due = start + i / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            alert = {
                "labels": {"alertname": "bench", "id": f"bench/gas-{i}/gas/level", "severity": "III"},
                "annotations": {"sent_ts": f"{due:.6f}"},
            }
            body = json.dumps([alert]).encode()
            connection.request("POST", "/api/v2/alerts", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            accepted[k] += response.status == 200
        connection.close()

    threads = [threading.Thread(target=post_share, args=(k,)) for k in range(GENERATOR_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    elapsed = time.time() - start
    time.sleep(3.0)  # group_wait 0s: the last notifications leave within milliseconds
    return sum(accepted), elapsed


def run(*, rates: tuple[int, ...] = RATES, seconds: float = SECONDS) -> list[dict[str, dict[str, float]]]:
    return [_run_at(rate, seconds) for rate in rates]


@contextlib.contextmanager
def _as_in_the_hub() -> Iterator[None]:
    """The garbage collector as ``anju-hub serve`` sets it, for the block; the interpreter's settings after."""
    thresholds = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def _run_at(rate: int, seconds: float) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="anju-bench-alerts-") as tmp:
        workdir = Path(tmp)
        (workdir / "anju").mkdir()
        with _as_in_the_hub():
            results["anju"] = asyncio.run(_anju(workdir / "anju", rate, seconds))
        (workdir / "anju-default-gc").mkdir()
        results["anju_default_gc"] = asyncio.run(_anju(workdir / "anju-default-gc", rate, seconds))
        postgres = find_postgres()
        if postgres is not None:
            (workdir / "anju-postgres").mkdir()
            with running_postgres(postgres, durable=True) as server, _as_in_the_hub():
                results["anju_postgres"] = asyncio.run(_anju(workdir / "anju-postgres", rate, seconds, server.url))
        binary = find_alertmanager()
        if binary is not None:
            am_dir = workdir / "am"
            am_dir.mkdir()
            receiver = _Receiver(am_dir)
            process, port = start_alertmanager(binary, am_dir, ALERTMANAGER_CONFIG.format(port=receiver.port))
            try:
                sent, elapsed = _alertmanager(port, rate, seconds)
            finally:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            results["alertmanager"] = _summary(sent, receiver.arrivals(), elapsed)
    return results


def report(runs: list[dict[str, dict[str, float]]], say: Callable[[str], None] = print) -> None:
    for results in runs:
        _report_one(results, say)


def _report_one(results: dict[str, dict[str, float]], say: Callable[[str], None]) -> None:
    anju, untuned = results["anju"], results["anju_default_gc"]
    line = (
        f"alerts, risk event → notification received ({anju['sent']:,.0f} events offered at "
        f"{anju['sent'] / SECONDS:,.0f}/s, submitted at {anju['rate']:,.0f}/s, each its "
        f"own alert, persisted first): Anju {anju['received']:,.0f} delivered, p50 {anju['p50_ms']:.1f} ms, "
        f"p99 {anju['p99_ms']:.1f} ms (issue 6 target p99 <= {TARGET_P99_MS:g} ms: "
        f"{'met' if anju['p99_ms'] <= TARGET_P99_MS else 'not met'}; with the interpreter's default garbage "
        f"collector instead of the hub's: p50 {untuned['p50_ms']:.1f} ms, p99 {untuned['p99_ms']:.1f} ms)"
    )
    pg = results.get("anju_postgres")
    if pg is None:
        line += "; on PostgreSQL: not installed (apt-get install postgresql)"
    else:
        line += (
            f"; on PostgreSQL (fsync on, writes fenced by the lease, as hubs that share state): {pg['received']:,.0f} "
            f"delivered, p50 {pg['p50_ms']:.1f} ms, p99 {pg['p99_ms']:.1f} ms, p99 ratio PostgreSQL / SQLite "
            f"{pg['p99_ms'] / anju['p99_ms']:.2f}"
        )
    am = results.get("alertmanager")
    if am is None:
        say(line + "; reference Alertmanager not installed (apt-get install prometheus-alertmanager)")
        return
    say(
        line + f"; reference Alertmanager (state in memory; {GENERATOR_THREADS} generator threads posted at "
        f"{am['rate']:,.0f}/s) "
        f"{am['received']:,.0f} of {am['sent']:,.0f} delivered, "
        f"p50 {am['p50_ms']:.1f} ms, p99 {am['p99_ms']:.1f} ms; p99 ratio Anju / Alertmanager "
        f"{anju['p99_ms'] / am['p99_ms']:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alerts_latency", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    receive = commands.add_parser("receive", help="the webhook receiver process")
    receive.add_argument("--port", type=int, required=True)
    receive.add_argument("--out", required=True)
    receive.add_argument("--seconds", type=float, default=300)
    args = parser.parse_args(argv)
    if args.command == "receive":
        return _receive(args.port, Path(args.out), args.seconds)
    report(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
