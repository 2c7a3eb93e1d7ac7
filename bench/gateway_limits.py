"""What per-gateway limits cost the hub's MQTT intake: the receive path with limits off, on and admitting, on and
deferring a flood (issue 8).

Each run drains ``mqtt_receive.MESSAGES`` 100-reading SenML batches queued in Mosquitto for a persistent session,
through what the hub's routine receiver does before the inbox (hub/ingest/service.py ``_receive``): aiomqtt with
the hub's ``Intake`` (PUBACKs in bursts), and per message ``GatewayLimits.judge`` of its topic, channel and payload
(hub/ingest/limits.py). Variants:

- ``off``: ``judge`` with limits switched off (the call and nothing else: what the receiver did before);
- ``admitting``: on, with a budget far above the stream, so every message pays from three buckets;
- ``deferring``: on, with the default budget: after its burst the stream is deferred (counted per gateway and
  PUBACKed): the rate at which the hub can take a flood off the broker's queue for it, the other gateways'
  messages being behind the flood in that queue.

Reference: ``mosquitto_sub`` draining the same queue (the broker's own delivery ceiling). The machine is shared:
the variants run ``REPEATS`` times interleaved and the median counts. Also the CPU of ``judge`` alone per
message (in-process, ``bench.common.measure``), admitting and deferring.
"""

import asyncio
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from bench.common import measure, require_mosquitto
from bench.mqtt_receive import MESSAGES, READINGS_PER_MESSAGE, _mosquitto_sub, _queue_for
from firmware_sim.load import LoadOptions, render_deployment
from hub.config import load_deployment
from hub.demo.broker import mosquitto_config
from hub.demo.processes import free_port, wait_port
from hub.ingest.budget import Budget
from hub.ingest.intake import Intake
from hub.ingest.limits import GatewayLimits, LimitsPolicy, Verdict
from hub.ingest.registry import Registry
from hub.metrics import Metrics
from protocol import Batch, Reading, encode_batch

__all__ = ["REPEATS", "report", "run"]

REPEATS = 3
_GATEWAY = "load-gw-0001"
_TOPIC = f"anju/v1/load/{_GATEWAY}/data"
_T0_MS = 1_764_400_000_000
_WIDE = Budget(
    readings_per_s=1e9, readings_burst=1e9, bytes_per_s=1e12, bytes_burst=1e12, messages_per_s=1e9, messages_burst=1e9
)


def _payloads() -> list[bytes]:
    sensors = [f"{_GATEWAY}-s{s:04d}" for s in range(1, READINGS_PER_MESSAGE + 1)]
    return [
        encode_batch(
            Batch("load", _GATEWAY, 1, seq, tuple(Reading(s, _T0_MS + seq * 1000, 1.25, "%LEL") for s in sensors))
        )
        for seq in range(1, MESSAGES + 1)
    ]


def _registry(directory: Path) -> Registry:
    path = directory / "fleet.yaml"
    path.write_text(render_deployment(LoadOptions(gateways=1, sensors_per_gateway=READINGS_PER_MESSAGE)), "utf-8")
    return Registry(load_deployment(path, check_secrets=False))


def _limits(registry: Registry, variant: str) -> GatewayLimits:
    policy = {
        "off": LimitsPolicy(enabled=False),
        "admitting": LimitsPolicy(default=_WIDE),
        "deferring": LimitsPolicy(),
    }[variant]
    return GatewayLimits(registry=registry, metrics=Metrics(), policy=policy)


async def _receive(port: int, client_id: str, limits: GatewayLimits) -> float:
    """Seconds from the first to the last message, each judged as the hub's routine receiver does."""
    client = aiomqtt.Client("127.0.0.1", port, identifier=client_id, clean_session=False)
    intake = Intake(client)
    first = 0.0
    count = 0
    async with client:
        intake.attach()
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            limits.judge(message.topic.value, "data", payload)
            intake.taken(message)
            count += 1
            if count == 1:
                first = time.perf_counter()
            if count == MESSAGES:
                return time.perf_counter() - first
    raise AssertionError("unreachable")


def _judge_cost(registry: Registry, payloads: list[bytes]) -> dict[str, float]:
    """CPU seconds of ``judge`` per message, admitting and deferring (the same 20,000 payloads each run)."""
    costs = {}
    for variant in ("admitting", "deferring"):
        limits = _limits(registry, variant)

        def work(limits: GatewayLimits = limits) -> None:
            for payload in payloads:
                limits.judge(_TOPIC, "data", payload)

        costs[f"judge_{variant}_s"] = measure(work).median_s / len(payloads)
        if variant == "deferring":
            assert limits.judge(_TOPIC, "data", payloads[0]).verdict is Verdict.DEFER
    return costs


def run() -> dict[str, float]:
    """Readings/s per variant (median of ``REPEATS``), the reference ``mosquitto_sub``, and ``judge``'s CPU."""
    binary = require_mosquitto()
    payloads = _payloads()
    variants = ("off", "admitting", "deferring")
    runs: dict[str, list[float]] = {name: [] for name in [*variants, "mosquitto_sub"]}
    deferred: list[float] = []
    with tempfile.TemporaryDirectory(prefix="anju-bench-limits-") as name:
        directory = Path(name)
        registry = _registry(directory)
        port = free_port()
        config = mosquitto_config(port=port, directory=directory / "mosquitto")
        broker = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL)
        try:
            if not wait_port(port, timeout_s=10):
                raise RuntimeError("mosquitto did not start")
            for repeat in range(REPEATS):
                for variant in runs:
                    client_id = f"bench-limits-{variant}-{repeat}"
                    _queue_for(port, client_id, payloads, topic=_TOPIC)
                    if variant == "mosquitto_sub":
                        seconds = _mosquitto_sub(port, client_id, topic=_TOPIC)
                    else:
                        limits = _limits(registry, variant)
                        seconds = asyncio.run(asyncio.wait_for(_receive(port, client_id, limits), 120))
                        if variant == "deferring":
                            deferred.append(limits._metrics.gateway_throttled_messages.get(gateway=_GATEWAY))
                    runs[variant].append(MESSAGES * READINGS_PER_MESSAGE / seconds)
        finally:
            broker.terminate()
            broker.wait(10)
        results = {name: statistics.median(rates) for name, rates in runs.items()}
        results |= _judge_cost(registry, payloads)
    results["deferred_share"] = statistics.median(deferred) / MESSAGES
    return results


def report(results: dict[str, float], say: Callable[[str], None] = lambda text: print(text, flush=True)) -> None:
    off, reference = results["off"], results["mosquitto_sub"]
    say(
        f"per-gateway limits, hub MQTT receive of {READINGS_PER_MESSAGE}-reading batches at QoS 1 (median of "
        f"{REPEATS}): limits off {off / 1e6:.2f} M readings/s; on and admitting {results['admitting'] / 1e6:.2f} M "
        f"(ratio to off {results['admitting'] / off:.2f}); on and deferring a flood "
        f"({results['deferred_share']:.0%} of it deferred) {results['deferring'] / 1e6:.2f} M "
        f"({results['deferring'] / READINGS_PER_MESSAGE:,.0f} messages/s; "
        f"ratio to off {results['deferring'] / off:.2f}); "
        f"reference mosquitto_sub {reference / 1e6:.2f} M readings/s; judge alone "
        f"{results['judge_admitting_s'] * 1e6:.1f} µs a message admitting, "
        f"{results['judge_deferring_s'] * 1e6:.1f} µs deferring"
    )


if __name__ == "__main__":
    report(run())
