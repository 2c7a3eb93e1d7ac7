"""Notification POSTs a second from one asyncio event loop: aiohttp (the alert receivers' client) against httpx.

Both post the same 1 KB JSON body with 32 requests in flight over pooled keep-alive connections to a threading
HTTP receiver in another process on loopback (Nagle off), which answers 200 with an empty body. Three alternating
runs each; the median rate is reported with the ratio. Why it matters: the alert service delivers from the hub's
event loop, so the client's cost per request bounds notifications a second (issue 6: 1,000 a second).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import aiohttp
import httpx

from alerts.receivers.http import new_client, post
from hub.demo.processes import free_port, wait_port

__all__ = ["main", "report", "run"]

REQUESTS = 3_000
IN_FLIGHT = 32
RUNS = 3
BODY = json.dumps({"alert_key": "bench/gas-1/gas/level", "event_time_ms": 0, "message_zh": "告警" * 160}).encode()


async def _aiohttp(url: str) -> float:
    async with new_client(10.0) as client:
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def one() -> None:
            async with limit:
                answer = await post(client, url, content=BODY, headers={"Content-Type": "application/json"})
                assert answer.status == 200

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(REQUESTS)))
        return REQUESTS / (time.perf_counter() - start)


async def _httpx(url: str) -> float:
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def one() -> None:
            async with limit:
                response = await client.post(url, content=BODY, headers={"Content-Type": "application/json"})
                assert response.status_code == 200

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(REQUESTS)))
        return REQUESTS / (time.perf_counter() - start)


def run() -> dict[str, float]:
    """Median requests a second for each client."""
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.alerts_latency", "receive", "--port", str(port), "--out", "/dev/null",
         "--seconds", "300"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        if not wait_port(port, timeout_s=10):
            raise RuntimeError("the bench receiver did not start")
        url = f"http://127.0.0.1:{port}/hook"
        rates: dict[str, list[float]] = {"aiohttp": [], "httpx": []}
        for _ in range(RUNS):
            rates["aiohttp"].append(asyncio.run(_aiohttp(url)))
            rates["httpx"].append(asyncio.run(_httpx(url)))
    finally:
        receiver.kill()
        receiver.wait(timeout=10)
    return {name: statistics.median(values) for name, values in rates.items()}


def report(rates: dict[str, float], say: Callable[[str], None] = print) -> None:
    say(
        f"http clients, notification POSTs a second from one event loop ({REQUESTS:,} x 1 KB, {IN_FLIGHT} in flight, "
        f"median of {RUNS}): aiohttp {aiohttp.__version__} {rates['aiohttp']:,.0f}/s; reference httpx "
        f"{httpx.__version__} {rates['httpx']:,.0f}/s; ratio {rates['aiohttp'] / rates['httpx']:.1f}x"
    )


def main() -> int:
    report(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
