"""Brokers for the demo and the tests: Mosquitto when installed, else amqtt embedded — for trials only.

Production runs Mosquitto (single site) or EMQX (city scale) with the configuration in ``deploy/mosquitto``;
the embedded broker exists so that ``make demo`` works on a machine without system packages.
``python -m hub.demo.broker --port N`` runs the embedded one until SIGINT/SIGTERM.
"""

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
from pathlib import Path

__all__ = ["find_mosquitto", "mosquitto_config", "wait_broker"]

log = logging.getLogger("anju.demo.broker")


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (also in /usr/sbin, which a normal user's PATH often lacks)."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def mosquitto_config(
    *, port: int, directory: Path, max_queued_messages: int = 100_000, max_inflight_messages: int = 100
) -> Path:
    """Write a loopback-only, anonymous demo config; production config with auth/ACL/TLS is in deploy/.

    The queue and in-flight limits are per client (Mosquitto's); a test shrinks ``max_queued_messages`` to make
    the broker drop QoS 1 messages in a burst, as the stock 1,000 does at district scale.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mosquitto.conf"
    path.write_text(
        "# Generated for a demo or a test: loopback only, anonymous, no persistence.\n"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        f"max_queued_messages {max_queued_messages}\n"
        f"max_inflight_messages {max_inflight_messages}\n"
        "set_tcp_nodelay true\n"  # as deploy/mosquitto/anju.conf: MQTT's small packets go out at once
        "log_type error\nlog_type warning\nlog_type notice\n"
        "log_dest stderr\n",
        encoding="utf-8",
    )
    return path


def wait_broker(port: int, *, timeout_s: float) -> bool:
    """Wait until an MQTT CONNECT to 127.0.0.1:``port`` succeeds (a bare TCP probe makes brokers log errors)."""
    import aiomqtt

    async def attempt() -> bool:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", port, identifier="anju-demo-probe", timeout=2):
                    return True
            except aiomqtt.MqttError:
                if asyncio.get_running_loop().time() >= deadline:
                    return False
                await asyncio.sleep(0.1)

    return asyncio.run(attempt())


async def _serve_embedded(port: int) -> None:
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    log.warning("embedded amqtt broker on 127.0.0.1:%d — for trials only; production uses Mosquitto or EMQX", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await broker.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description="embedded MQTT broker for trials (amqtt)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    asyncio.run(_serve_embedded(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
