"""A real InfluxDB 1.x server (Debian's ``influxdb`` package) for a test or a benchmark, on free loopback ports.

Everything it keeps lives under the given folder; only the HTTP API (127.0.0.1, free port) and the RPC
port that ``influxd`` always opens (127.0.0.1, another free port) listen; UDP, Graphite, collectd, OpenTSDB,
self-monitoring and usage reporting stay off. ``running_influxd`` waits (bounded) for ``GET /ping`` to answer 204.
"""

import contextlib
import queue
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from hub.demo.processes import Child, Line, free_port

__all__ = ["Influxd", "InfluxdStartError", "find_influxd", "influxd_config", "running_influxd"]

START_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Influxd:
    """A running influxd: its HTTP base URL and process id (benchmarks read its CPU time)."""

    url: str
    pid: int


class InfluxdStartError(RuntimeError):
    """influxd did not answer /ping in time; ``output`` holds its last lines."""

    def __init__(self, message: str, output: list[str]) -> None:
        self.output = output
        super().__init__(message + ("\n" + "\n".join(output[-20:]) if output else ""))


def find_influxd() -> str | None:
    """The ``influxd`` binary: on PATH, or where Debian's package puts it."""
    found = shutil.which("influxd")
    if found is None and Path("/usr/bin/influxd").exists():
        found = "/usr/bin/influxd"
    return found


def influxd_config(directory: Path, *, http_port: int, rpc_port: int, auth_enabled: bool = False) -> Path:
    """Write an influxd TOML config keeping all data under ``directory``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "influxd.conf"
    config.write_text(
        f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{directory / "meta"}"
  logging-enabled = false

[data]
  dir = "{directory / "data"}"
  wal-dir = "{directory / "wal"}"
  wal-fsync-delay = "0s"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {"true" if auth_enabled else "false"}
  log-enabled = false
  pprof-enabled = false

[continuous_queries]
  enabled = true
  log-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
""",
        encoding="utf-8",
    )
    return config


@contextlib.contextmanager
def running_influxd(binary: str, directory: Path, *, auth_enabled: bool = False) -> Iterator[Influxd]:
    """Start influxd with a config under ``directory``, yield it once /ping answers, stop it after."""
    http_port = free_port()
    rpc_port = free_port()
    while rpc_port == http_port:
        rpc_port = free_port()
    config = influxd_config(directory, http_port=http_port, rpc_port=rpc_port, auth_enabled=auth_enabled)
    lines: queue.Queue[Line] = queue.Queue()
    child = Child("influxd", [binary, "-config", str(config)], lines).start()
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(base_url=url, timeout=1.0, trust_env=False) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/ping").status_code == 204:
                        break
                if not child.alive or time.monotonic() > deadline:
                    output = [lines.get_nowait().text for _ in range(lines.qsize())]
                    raise InfluxdStartError(f"influxd did not answer {url}/ping within {START_TIMEOUT_S:.0f} s", output)
                time.sleep(0.05)
        assert child.process is not None
        yield Influxd(url, child.process.pid)
    finally:
        child.stop(grace_s=10)
