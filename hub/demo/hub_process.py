"""``anju-hub serve`` as a child process on loopback, for benchmarks and tests that measure or fuzz the real thing."""

import contextlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

__all__ = ["serving_hub"]

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def serving_hub(
    *, config: Path, data_dir: Path, mqtt_port: int, http_port: int, log: Path, timeout_s: float = 60.0
) -> Iterator[tuple[str, str]]:
    """Start the hub with ``config`` on a fresh random admin token (in a file next to ``log``); yield its base URL
    and the token once it answers and holds its broker connections; stop it (SIGTERM, then SIGKILL after 20 s).
    Raises RuntimeError with the log's tail when it exits or does not come up within ``timeout_s``."""
    token = secrets.token_urlsafe(32)
    token_file = log.parent / f"{log.stem}.token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    argv = [sys.executable, "-m", "hub", "--log-level", "warning", "serve", "--config", str(config)]
    argv += ["--data-dir", str(data_dir), "--mqtt-port", str(mqtt_port), "--http-port", str(http_port)]
    argv += ["--api-token-file", str(token_file)]
    base = f"http://127.0.0.1:{http_port}"
    with log.open("w", encoding="utf-8") as out:
        hub = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if hub.poll() is not None:
                    raise RuntimeError(f"the hub exited: {log.read_text(encoding='utf-8')[-2000:]}")
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    if httpx.get(f"{base}/api/v1/health", timeout=1, trust_env=False).json()["mqtt_connected"]:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the hub did not come up within {timeout_s:g} s")
                time.sleep(0.1)
            yield base, token
        finally:
            hub.terminate()
            try:
                hub.wait(timeout=20)
            except subprocess.TimeoutExpired:
                hub.kill()
                hub.wait(timeout=5)
