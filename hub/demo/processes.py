"""Child processes for the demo and the end-to-end tests: start, stream their lines, stop cleanly.

Each child runs in its own session (process group), so Ctrl-C in the terminal reaches only the
orchestrator, which then stops the children in a chosen order: SIGTERM, a grace period, SIGKILL to the
whole group. Nothing is left running.
"""

import contextlib
import os
import queue
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Child", "Line", "free_port", "wait_port"]


@dataclass(frozen=True, slots=True)
class Line:
    source: str
    text: str
    time_s: float


_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10_000  # below lie well-known and commonly configured service ports
_handed_out: set[int] = set()
_chance = random.SystemRandom()  # not the seedable module state: parallel test runs must not pick alike


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux default 32768–60999)."""
    with contextlib.suppress(OSError, ValueError):
        low, high = (int(part) for part in _EPHEMERAL.read_text().split())
        return low, high
    return 32_768, 60_999


def _nth_port(spans: list[tuple[int, int]], n: int) -> int:
    """The ``n``-th port counting through the inclusive ``spans`` in order."""
    for low, high in spans:
        if n <= high - low:
            return low + n
        n -= high - low + 1
    raise ValueError(f"port index {n} beyond the spans {spans}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, outside the kernel's ephemeral range.

    Binding to port 0 hands out an ephemeral port, and between releasing it and the child process
    binding it, any outgoing connection on the machine (a client of the broker, an HTTP request)
    may take it as its local port: CI saw a simulator fail with "address already in use" that way.
    Ports outside the ephemeral range are never chosen for outgoing connections, so only another
    test picking the same random port could collide, and each process never hands out one twice.
    """
    low, high = _ephemeral_range()
    candidates = [(_LOWEST_PORT, low - 1), (high + 1, 65_535)]
    spans = [(a, b) for a, b in candidates if b >= a]
    total = sum(b - a + 1 for a, b in spans)
    if total == 0:  # the ephemeral range covers every port: fall back to the kernel's choice
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])
    for _ in range(200):
        port = _nth_port(spans, _chance.randrange(total))
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError(f"no free TCP port on 127.0.0.1 outside the ephemeral range {low}-{high} after 200 tries")


def wait_port(port: int, *, timeout_s: float, host: str = "127.0.0.1") -> bool:
    """Poll until something accepts TCP connections on ``host:port`` or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


@dataclass(slots=True)
class Child:
    name: str
    argv: Sequence[str]
    lines: "queue.Queue[Line]"
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    process: subprocess.Popen[str] | None = field(default=None, init=False)
    _reader: threading.Thread | None = field(default=None, init=False)

    def start(self) -> "Child":
        environment = dict(os.environ)
        environment.update(self.env or {})
        environment.setdefault("PYTHONUNBUFFERED", "1")
        self.process = subprocess.Popen(
            list(self.argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=environment,
            cwd=self.cwd,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._pump, name=f"lines-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for text in self.process.stdout:
            self.lines.put(Line(self.name, text.rstrip("\n"), time.time()))

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def kill(self) -> int | None:
        """SIGKILL the whole group at once, as a power cut would (fault tests). Returns the exit code."""
        return self.stop(grace_s=0.0)

    def stop(self, *, grace_s: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL the group. Returns the exit code."""
        if self.process is None:
            return None
        self.signal(signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
        try:
            self.process.wait(timeout=grace_s if grace_s > 0 else 10.0)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            # A killed process can take a while to go when it is blocked in the kernel (a broker's fsync on a disk
            # busy with other writers): wait longer, and never let one slow child stop the others being stopped.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        # Members of the group that outlived the leader (none expected) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(timeout=2)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode
