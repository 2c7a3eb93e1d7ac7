"""systemd integration of ``anju-edge run`` (issue 8): a real agent process tells a NOTIFY_SOCKET it is ready, pings
the watchdog at half the interval while its poll loop shows life, stops pinging while the loop is stuck on its bus,
resumes when it moves again, and says it is stopping.

The stuck bus is the one fault planted: the process runs ``edge.cli.main`` with the ``sim`` detectors' register read
wrapped to block while a flag file exists — a wedged USB-RS-485 adapter, whose read never returns. Everything else
(the agent, its poll loop and bus thread, the MQTT session to a real Mosquitto, the watchdog) is the real thing.
About 12 s: the watchdog waits ``PROGRESS_EVERY_S`` (5 s) plus three request timeouts before it takes the loop for
stuck.
"""

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from edge.agent import PROGRESS_EVERY_S
from edge.cli import BUS_REQUESTS_OF_SILENCE
from tests.edge.support import Broker, write_config

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 0.1  # modbus.timeout_s: the watchdog takes the loop for stuck after 5 s + 3 x 0.1 s without progress
STALE_AFTER_S = PROGRESS_EVERY_S + BUS_REQUESTS_OF_SILENCE * TIMEOUT_S
WEDGED = """
import sys
import time
from pathlib import Path

import edge.drivers.sim as sim
from edge.cli import main

flag = Path(sys.argv[1])
read = sim.SimTransport.read_input_registers


def wedged_while_flagged(self, unit_id, address, count):
    while flag.exists():  # the adapter hangs in the read; bounded only so that the test can let it go again
        time.sleep(0.05)
    return read(self, unit_id, address, count)


sim.SimTransport.read_input_registers = wedged_while_flagged
sys.exit(main(["run", "--config", sys.argv[2]]))
"""


class Listener:
    """A notify socket like systemd's: datagrams, each kept with its arrival time (monotonic)."""

    def __init__(self, path: Path) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.1)
        self.said: list[tuple[float, str]] = []

    def listen(self, seconds: float, *, until: str | None = None, count: int = 1) -> None:
        """Collect for ``seconds``, or until ``until`` has been said ``count`` times since this call began."""
        deadline = time.monotonic() + seconds
        heard = 0
        while time.monotonic() < deadline and (until is None or heard < count):
            try:
                message = self.socket.recv(256).decode()
            except TimeoutError:
                continue
            self.said.append((time.monotonic(), message))
            heard += message == until

    def pings(self, after: float = 0.0, before: float = float("inf")) -> list[float]:
        return [t for t, m in self.said if m == "WATCHDOG=1" and after <= t < before]


def test_the_edge_is_ready_pings_while_its_loop_moves_and_says_it_stops(broker: Broker, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        broker_port=broker.port,
        modbus_port=1,  # unused by the sim driver
        sensors={1: ("gas-b1-101", "gas"), 2: ("temp-b1-102", "temperature")},
        modbus={"driver": "sim", "timeout_s": TIMEOUT_S},
    )
    flag = tmp_path / "wedged"
    listener = Listener(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}  # 1 s
    log = (tmp_path / "edge.log").open("wb")
    edge = subprocess.Popen(
        [sys.executable, "-c", WEDGED, str(flag), str(config)], cwd=REPO, env=env, stdout=log, stderr=log
    )
    try:
        listener.listen(20, until="WATCHDOG=1", count=4)
        assert listener.said and listener.said[0][1] == "READY=1", listener.said
        running = listener.pings()
        assert len(running) >= 4, f"{listener.said}\n{(tmp_path / 'edge.log').read_text()[-3000:]}"
        assert all(0.3 <= b - a <= 0.9 for a, b in itertools.pairwise(running)), "every half interval"

        flag.touch()
        wedged_at = time.monotonic()
        listener.listen(STALE_AFTER_S + 4)
        flag.unlink()
        freed_at = time.monotonic()
        last = max(listener.pings(before=freed_at))
        assert wedged_at + 0.5 <= last <= wedged_at + STALE_AFTER_S + 1.0, "pings go on while the loop may still move"
        assert freed_at - last >= 2.5, "then they stop while it is stuck"

        listener.listen(10, until="WATCHDOG=1", count=2)
        assert len(listener.pings(after=freed_at)) >= 2, "and resume when it moves again"
        edge.send_signal(signal.SIGTERM)
        listener.listen(20, until="STOPPING=1")
        assert edge.wait(timeout=25) == 0
    finally:
        if edge.poll() is None:
            edge.kill()
            edge.wait(5)
        listener.socket.close()
        log.close()
    assert listener.said[-1][1] == "STOPPING=1", listener.said[-3:]
    text = (tmp_path / "edge.log").read_text(encoding="utf-8")
    assert "made no progress: watchdog pings stop" in text and "watchdog pings resume" in text
