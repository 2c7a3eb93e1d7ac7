"""kill -9 of the hub under load loses nothing it hub-acked (issue 4, crash safety).

The real hub process (``python -m hub serve``) takes a fleet of simulated gateways (``anju-sim load``) through a
real Mosquitto and is SIGKILLed at a random moment of the run — mid-round, mid-commit, mid-compaction — three
times over the same data directory. After each kill the store, opened read-only, must hold at least every reading
the fleet saw hub-acked (the load generator's own count), and the hub must start again on that store.
"""

import json
import queue
import random
import secrets
import subprocess
import sys
import time
from pathlib import Path

from hub.demo.processes import Child, Line, free_port, wait_port
from hub.store.chunks import ChunkStore
from hub.store.open import embedded_path
from protocol import Ack, decode_ack
from protocol.topics import PREFIX
from tests.deploy.probe import Probe, probe

REPO = Path(__file__).resolve().parents[2]


def _store_count(data_dir: Path) -> int:
    store = ChunkStore(path=embedded_path(data_dir), read_only=True)
    try:
        return store.count_readings()
    finally:
        store.close()


def _first_ack_of_sessions_since(watch: Probe, started_s: int, timeout_s: float = 60.0) -> None:
    """Wait for a hub-ack to a session the load generator began at or after ``started_s`` (its sessions are the Unix
    time at its start plus the gateway's index): the hub also acks the last cycle's gateways, whose batches waited in
    its persistent session, and those acks count for nobody now."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        _topic, payload = watch.next_message(timeout_s=left)
        ack = decode_ack(payload)
        if isinstance(ack, Ack) and ack.session >= started_s:
            return
    raise AssertionError(f"no hub-ack to this cycle's load within {timeout_s:.0f} s")


def test_sigkill_of_the_hub_under_load_loses_no_acked_reading(mosquitto: int, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    common = ["--port", str(mosquitto), "--gateways", "4", "--sensors-per-gateway", "50"]
    subprocess.run(
        [sys.executable, "-m", "firmware_sim", "load", *common, "--deployment-out", str(fleet), "--deployment-only"],
        check=True,
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(24) + "\n", encoding="utf-8")
    data_dir = tmp_path / "data"
    rng = random.Random(4)
    acked_total = 0
    for cycle in range(3):
        http_port = free_port()
        hub_argv = [sys.executable, "-m", "hub", "--log-level", "warning", "serve", "--config", str(fleet)]
        hub_argv += ["--data-dir", str(data_dir), "--mqtt-port", str(mosquitto), "--http-port", str(http_port)]
        hub_argv += ["--api-token-file", str(token)]
        lines = queue.Queue[Line]()
        hub = Child(f"hub-{cycle}", hub_argv, lines, cwd=REPO).start()
        try:
            if not wait_port(http_port, timeout_s=30):
                said = "\n".join(str(line) for line in list(lines.queue)[-30:])
                raise AssertionError(f"cycle {cycle}: the hub did not start on the store the last kill left:\n{said}")
            report = tmp_path / f"load-{cycle}.json"
            load_argv = [sys.executable, "-m", "firmware_sim", "load", *common, "--rate", "20", "--duration", "3"]
            load_argv += ["--ack-timeout", "60", "--drain", "0", "--seed", str(cycle), "--report", str(report)]
            with probe(mosquitto, user=None) as watch:
                watch.subscribe(f"{PREFIX}/+/+/ack")
                started_s = int(time.time())
                load = subprocess.Popen(load_argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                # The kill's moment is random from the hub's first ack of this cycle's load on, not from the load's
                # start: on a busy machine a fixed delay can end before anything was acked, and proves nothing.
                _first_ack_of_sessions_since(watch, started_s)
            time.sleep(rng.uniform(0.0, 1.8))
            assert hub.process is not None
            hub.process.kill()
            hub.process.wait(timeout=10)
            assert load.wait(timeout=60) == 0
        finally:
            hub.stop(grace_s=5.0)
        body = json.loads(report.read_text(encoding="utf-8"))
        assert body["acked_readings"] > 0, f"cycle {cycle}: nothing was acked before the kill; the test proves nothing"
        acked_total += int(body["acked_readings"])
        stored = _store_count(data_dir)
        assert stored >= acked_total, f"cycle {cycle}: {acked_total} readings were hub-acked, the store holds {stored}"
