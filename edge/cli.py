"""``anju-edge``: run the gateway agent, check a config file, or show the outbox counters and last health.

The config is one YAML file (``edge.yaml``, see ``edge.config``). ``run`` takes config pushes from the hub
(``edge.reconfigure``) and, before reading the file, rolls back a pushed config whose trial never ended.

Exit codes: 0 ok (also after SIGINT/SIGTERM), 2 bad configuration or usage, 1 the outbox cannot be opened.
"""

import argparse
import asyncio
import faulthandler
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from edge.agent import PROGRESS_EVERY_S
from edge.config import ConfigError, EdgeConfig, load_config
from edge.drivers.bus import describe
from edge.outbox import Outbox
from edge.reconfigure import ConfigFile, Supervisor
from edge.relay import RelayUnavailable
from systemd_notify import notify, watchdog_forever, watchdog_interval_s

__all__ = ["main"]

_log = logging.getLogger("edge")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anju-edge", description="Anju gateway agent (Raspberry Pi edge).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="poll the detectors and publish to the hub until SIGINT/SIGTERM")
    run.add_argument("--config", type=Path, required=True, metavar="FILE", help="the gateway's edge.yaml")
    check = commands.add_parser("check-config", help="validate a config file (exit 2 naming the bad key)")
    check.add_argument("file", type=Path, metavar="FILE")
    outbox = commands.add_parser("outbox", help="print the outbox counters (key=integer lines)")
    outbox.add_argument("--config", type=Path, required=True, metavar="FILE", help="the gateway's edge.yaml")
    outbox.add_argument(
        "--health", action="store_true", help="also print the agent's last health snapshot (health.key=number lines)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its errors are reported by the driver, once
    path: Path = args.config if args.command != "check-config" else args.file
    if args.command == "run":
        _recover(ConfigFile(path))
    try:
        config = load_config(path)
    except ConfigError as exc:
        _log.error("bad configuration: %s", exc)
        return 2
    if args.command == "check-config":
        sys.stdout.write(f"ok: {config.community}/{config.gateway}, {len(config.sensors)} sensors\n")
        return 0
    try:
        outbox = Outbox.open(
            config.outbox,
            community=config.community,
            gateway=config.gateway,
            max_bytes=config.outbox_max_bytes,
            new_session=args.command == "run",
        )
    except (OSError, sqlite3.Error) as exc:
        _log.error("cannot open the outbox %s: %s", config.outbox, exc)
        return 1
    try:
        if args.command == "outbox":
            for key, value in asdict(outbox.counters()).items():
                sys.stdout.write(f"{key}={value}\n")
            for key, number in outbox.health().items() if args.health else ():  # the agent's last snapshot
                text = str(int(number)) if number.is_integer() else f"{number:.3f}"
                sys.stdout.write(f"health.{key}={text}\n")
            return 0
        return _run(config, outbox, path)
    finally:
        outbox.close()


STOP_DEADLINE_S = 20.0
"""How long a stop may take before the process ends itself: a gateway must always stop (systemd restarts,
upgrades). Nothing is lost by ending hard here — every reading taken is already committed in the outbox."""


def _arm_stop_deadline() -> None:
    def expire() -> None:
        _log.error("stop took longer than %.0f s; thread stacks follow, then a hard exit", STOP_DEADLINE_S)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(EXIT_STOP_TIMEOUT)

    timer = threading.Timer(STOP_DEADLINE_S, expire)
    timer.daemon = True
    timer.start()


EXIT_STOP_TIMEOUT = 70  # EX_SOFTWARE: visible to systemd and tests, unlike a clean 0


BUS_REQUESTS_OF_SILENCE = 3
"""Request timeouts (``modbus.timeout_s``) a poll round may go without starting another bus request before the
watchdog takes it for stuck: a request takes at most a connect and a read, each bounded by the timeout."""


async def _tell_systemd(supervisor: Supervisor, config: EdgeConfig) -> None:
    """Under systemd (``Type=notify``, deploy/systemd/anju-edge.service): ``READY=1`` once the first agent runs,
    then watchdog pings while the poll loop shows life (``Supervisor.last_progress_s``) within the watchdog
    interval, or within ``BUS_REQUESTS_OF_SILENCE`` request timeouts and one idle pass when that is longer. A loop
    stuck on its bus (or an event loop stuck anywhere) stops the pings, and systemd restarts the agent."""
    await supervisor.running.wait()
    notify("READY=1")
    interval_s = watchdog_interval_s()
    if interval_s is None:
        return
    stale_after_s = max(interval_s, PROGRESS_EVERY_S + BUS_REQUESTS_OF_SILENCE * config.modbus.timeout_s)
    await watchdog_forever(alive=lambda: time.monotonic() - supervisor.last_progress_s() <= stale_after_s)


def _recover(file: ConfigFile) -> None:
    try:
        push_id = file.recover()
    except OSError as exc:  # the file as it is still gets validated and run
        _log.error("could not roll back an unfinished config push trial (%s): %s", file.trial, exc)
        return
    if push_id is not None:
        _log.warning(
            "config push %s was on trial when the agent last stopped: back on %s (the config before it)",
            push_id,
            file.previous,
        )


def _run(config: EdgeConfig, outbox: Outbox, path: Path) -> int:
    _log.info(
        "anju-edge %s/%s starting: session=%d sensors=%d outbox=%s broker=%s:%d (%s) bus=%s",
        config.community,
        config.gateway,
        outbox.session,
        len(config.sensors),
        config.outbox,
        config.mqtt.host,
        config.mqtt.port,
        "TLS" if config.mqtt.tls else "plain TCP",
        describe(config.modbus),
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def request_stop() -> None:
            if not stop.is_set():
                notify("STOPPING=1")
            stop.set()
            _arm_stop_deadline()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, request_stop)
        supervisor = Supervisor(file=ConfigFile(path), config=config, outbox=outbox)
        systemd = asyncio.create_task(_tell_systemd(supervisor, config), name="edge-systemd")
        try:
            await supervisor.run(stop)
        finally:
            systemd.cancel()

    try:
        asyncio.run(run())
    except RelayUnavailable as exc:
        _log.error("cannot start: %s", exc)
        return 2
    return 0
