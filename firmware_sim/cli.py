"""``anju-sim``: run a scenario as Modbus TCP gateways, check a scenario file, print the register map, or
publish a fleet's load straight to the broker (``load``, firmware_sim/load.py).

Exit codes: 0 success (also after SIGINT/SIGTERM), 2 bad arguments or an invalid scenario, 1 a runtime
failure such as a port that is already taken.
"""

import argparse
import asyncio
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from firmware_sim import load
from firmware_sim.runner import MAX_SPEED, RunOptions, run_simulation, write_truth
from firmware_sim.scenario import Scenario, ScenarioError, load_scenario, scenario_from_deployment
from protocol import registers
from protocol.ids import is_valid_id
from protocol.kinds import KINDS

__all__ = ["main"]

log = logging.getLogger("firmware_sim")


class _UsageError(Exception):
    pass


def _port(text: str) -> tuple[str, int]:
    gateway, sep, port = text.partition("=")
    if not sep or not is_valid_id(gateway) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected GATEWAY=PORT with PORT 1..65535, got {text!r}")
    return gateway, int(port)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _serial(text: str) -> tuple[str, str]:
    gateway, sep, device = text.partition("=")
    if not sep or not is_valid_id(gateway) or not device:
        raise argparse.ArgumentTypeError(f"expected GATEWAY=DEVICE (e.g. gw-b1=/dev/ttyUSB0), got {text!r}")
    return gateway, device


def _instant(text: str) -> int:
    """An ISO 8601 instant with its UTC offset, as Unix milliseconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add Z or +08:00")
    return int(moment.timestamp() * 1000)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anju-sim",
        description="Anju detector simulator: serves scenario detectors over Modbus TCP and writes ground truth.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="serve a scenario: one Modbus TCP server per gateway")
    run.add_argument("scenario", type=Path, nargs="?", help="scenario YAML file (or --deployment)")
    run.add_argument(
        "--deployment",
        type=Path,
        metavar="FILE",
        help="simulate every detector of a hub deployment file in normal life (no incidents; default 1 day)",
    )
    run.add_argument(
        "--port", type=_port, action="append", default=[], metavar="GATEWAY=PORT", help="one per gateway (required)"
    )
    run.add_argument(
        "--serial",
        type=_serial,
        action="append",
        default=[],
        metavar="GATEWAY=DEVICE",
        help="serve this gateway's bus as Modbus RTU on a serial device instead of TCP",
    )
    run.add_argument("--baudrate", type=int, default=9600, help="serial speed, 8N1 (default 9600)")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--truth", type=Path, metavar="FILE", help="write the JSON-lines truth file here")
    run.add_argument("--seed", type=int, help="override the scenario seed")
    run.add_argument(
        "--speed", type=_positive, default=1.0, metavar="X", help=f"simulated seconds per second (max {MAX_SPEED:g})"
    )
    run.add_argument("--duration", type=_positive, metavar="S", help="override duration_s (simulated seconds)")
    run.add_argument(
        "--exit-after",
        type=_positive,
        metavar="S",
        help="exit S simulated seconds after start (default: run until signalled)",
    )

    truth = sub.add_parser(
        "truth",
        help="write a scenario's truth file as fast as the CPU allows, with no servers (datasets for backtests)",
    )
    truth.add_argument("scenario", type=Path, help="scenario YAML file")
    truth.add_argument("--out", type=Path, required=True, metavar="FILE", help="JSON-lines truth file to write")
    truth.add_argument(
        "--start", type=_instant, metavar="ISO8601", help="device clock at t=0, with offset (default: now)"
    )
    truth.add_argument("--seed", type=int, help="override the scenario seed")
    truth.add_argument("--duration", type=_positive, metavar="S", help="override duration_s (simulated seconds)")

    check = sub.add_parser("check", help="validate a scenario file and print a summary")
    check.add_argument("scenario", type=Path, help="scenario YAML file")

    sub.add_parser("registers", help="print the Modbus register map of a detector")
    _load_parser(sub)
    return parser


def _load_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    defaults = load.LoadOptions()
    cmd = sub.add_parser(
        "load",
        help="publish batched SenML straight to the broker as a fleet of gateways (hub benchmarks, soak tests)",
        description="Each gateway: retained birth and Will, seq per session, holds batches until hub-acked, "
        "replays after --ack-timeout, rebirths on cmd/rebirth. Exit 0 done, 2 bad options, 1 broker unreachable.",
    )
    cmd.add_argument("--host", default=defaults.host, help="broker address (default 127.0.0.1)")
    cmd.add_argument("--port", type=int, default=defaults.port, help="broker port (default 1883)")
    cmd.add_argument("--community", default=defaults.community, help="community id (default load)")
    cmd.add_argument("--gateways", type=int, default=defaults.gateways, metavar="G", help="gateways load-gw-0001…")
    cmd.add_argument(
        "--sensors-per-gateway", type=int, default=defaults.sensors_per_gateway, metavar="S", help="sensors each"
    )
    cmd.add_argument("--rate", type=float, default=defaults.rate_hz, metavar="HZ", help="readings/s per sensor")
    cmd.add_argument(
        "--batch", type=int, default=defaults.batch, metavar="N", help=f"readings per message (≤ {load.MAX_BATCH})"
    )
    cmd.add_argument("--duration", type=float, default=defaults.duration_s, metavar="S", help="seconds (default 60)")
    cmd.add_argument(
        "--kinds",
        default=",".join(defaults.kinds),
        metavar="K1,K2",
        help="sensor kinds taken in turn (default gas,smoke,temperature,water-depth)",
    )
    cmd.add_argument("--qos", type=int, default=defaults.qos, choices=(0, 1), help="data QoS (default 1)")
    cmd.add_argument(
        "--ack-timeout", type=float, default=defaults.ack_timeout_s, metavar="S", help="replay after S without an ack"
    )
    cmd.add_argument(
        "--max-unacked",
        type=int,
        default=defaults.max_unacked,
        metavar="N",
        help="readings a gateway may hold unacked before it stalls (default 100000)",
    )
    cmd.add_argument(
        "--drain", type=float, default=defaults.drain_s, metavar="S", help="wait up to S for the last acks (10)"
    )
    cmd.add_argument("--username", help="broker user name")
    cmd.add_argument("--password-file", type=Path, metavar="FILE", help="file holding the broker password")
    cmd.add_argument("--seed", type=int, default=defaults.seed, help="random seed of the values")
    cmd.add_argument("--report", type=Path, metavar="FILE", help="write the counters as JSON here")
    cmd.add_argument(
        "--deployment-out", type=Path, metavar="FILE", help="write a deployment file registering the fleet"
    )
    cmd.add_argument(
        "--deployment-only", action="store_true", help="write --deployment-out and exit without publishing"
    )
    cmd.set_defaults(load_parser=cmd)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``anju-sim``; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("pymodbus").setLevel(logging.WARNING)
    if args.command == "load":
        return _load(args)
    try:
        if args.command == "registers":
            sys.stdout.write(_register_map())
            return 0
        if args.command == "run" and (args.scenario is None) == (args.deployment is None):
            raise _UsageError("run needs a scenario file or --deployment FILE, not both")
        if args.command == "run" and args.deployment is not None:
            scenario = scenario_from_deployment(
                args.deployment, seed=args.seed or 1, duration_s=args.duration or 86_400.0
            )
        else:
            scenario = load_scenario(args.scenario)
        if args.command == "check":
            sys.stdout.write(_summary(scenario))
            return 0
        if args.command == "truth":
            start_ms = args.start if args.start is not None else int(time.time() * 1000)
            count = write_truth(scenario, args.out, start_ms=start_ms, seed=args.seed, duration_s=args.duration)
            sys.stdout.write(f"{args.out}: {count} readings\n")
            return 0
        return _run(scenario, args)
    except ScenarioError as exc:
        sys.stderr.write(f"anju-sim: error: {exc}\n")
        return 2
    except _UsageError as exc:
        sys.stderr.write(f"anju-sim: error: {exc}\n")
        return 2


def _run(scenario: Scenario, args: argparse.Namespace) -> int:
    ports = dict(args.port)
    serial = dict(args.serial)
    if len(ports) != len(args.port) or len(serial) != len(args.serial) or set(ports) & set(serial):
        raise _UsageError("each gateway gets one --port or one --serial")
    gateways = {g.gateway_id for g in scenario.gateways}
    if set(ports) | set(serial) != gateways:
        given = sorted(set(ports) | set(serial))
        raise _UsageError(
            f"--port GATEWAY=PORT (or --serial GATEWAY=DEVICE) needed for exactly the scenario's gateways "
            f"{sorted(gateways)}, got {given}"
        )
    if len(set(ports.values())) != len(ports):
        raise _UsageError("two gateways cannot share a port")
    try:
        options = RunOptions(
            ports=ports,
            serial=serial,
            baudrate=args.baudrate,
            host=args.host,
            truth_path=args.truth,
            speed=args.speed,
            seed=args.seed,
            duration_s=args.duration,
            exit_after_s=args.exit_after,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    try:
        asyncio.run(_serve(scenario, options))
    except OSError as exc:  # a port taken or not bindable: the servers start before any task
        log.error("%s", exc)
        return 1
    return 0


async def _serve(scenario: Scenario, options: RunOptions) -> None:
    """Run until done or until SIGINT/SIGTERM, which end the run cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await run_simulation(scenario, options, stop=stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _load(args: argparse.Namespace) -> int:
    def usage(message: str) -> NoReturn:
        parser: argparse.ArgumentParser = args.load_parser
        parser.error(message)  # argparse's own form: usage line, the message, exit status 2

    password = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            return usage(f"--password-file: cannot read {args.password_file}: {exc.strerror}")
    try:
        options = load.LoadOptions(
            host=args.host,
            port=args.port,
            community=args.community,
            gateways=args.gateways,
            sensors_per_gateway=args.sensors_per_gateway,
            rate_hz=args.rate,
            batch=args.batch,
            duration_s=args.duration,
            kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
            qos=args.qos,
            ack_timeout_s=args.ack_timeout,
            max_unacked=args.max_unacked,
            drain_s=args.drain,
            username=args.username,
            password=password,
            seed=args.seed,
        )
    except ValueError as exc:
        return usage(str(exc))
    if not is_valid_id(options.community):
        return usage(f"--community: {options.community!r} does not match [a-z0-9-]{{1,64}}")
    if not 1 <= options.port <= 65535:
        return usage(f"--port: {options.port} is not 1..65535")
    if args.deployment_only and args.deployment_out is None:
        return usage("--deployment-only needs --deployment-out FILE")
    if args.deployment_out is not None:
        args.deployment_out.write_text(load.render_deployment(options), encoding="utf-8")
        log.info("wrote %s", args.deployment_out)
        if args.deployment_only:
            return 0
    try:
        report = asyncio.run(_publish_load(options))
    except load.LoadError as exc:
        log.error("%s", exc.reason)
        return 1
    body = report.as_dict()
    sys.stdout.write("".join(f"{name}: {value}\n" for name, value in body.items()))
    if args.report is not None:
        load.write_report(report, args.report)
    return 0


async def _publish_load(options: load.LoadOptions) -> load.LoadReport:
    """SIGINT/SIGTERM end production early (then the drain); signals only where Python can take them."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        return await load.run_load(options, stop=stop)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _summary(scenario: Scenario) -> str:
    lines = [
        f"scenario {scenario.source}: valid",
        f"community {scenario.community}, seed {scenario.seed}, "
        f"sample every {scenario.sample_interval_s:g} s for {scenario.duration_s:g} s",
    ]
    total = 0
    for gateway in scenario.gateways:
        kinds: dict[str, int] = {}
        for device in gateway.devices:
            kinds[device.kind.name] = kinds.get(device.kind.name, 0) + 1
        total += len(gateway.devices)
        by_kind = ", ".join(f"{n} {k}" for k, n in kinds.items())
        units = ", ".join(f"{d.unit_id}={d.sensor_id}" for d in gateway.devices)
        lines.append(f"gateway {gateway.gateway_id}: {len(gateway.devices)} devices ({by_kind}); units {units}")
    lines.append(f"{total} devices in {len(scenario.gateways)} gateways")
    for incident in scenario.incidents:
        lines.append(
            f"incident {incident.name}: {', '.join(incident.sensors)} from t={incident.start_s:g} s to "
            f"t={incident.end_s:g} s, ramp to {incident.ramp_to:g} over {incident.ramp_over_s:g} s, "
            f"hold {incident.hold_s:g} s, decay {incident.decay_s:g} s; ground truth grade {incident.grade}"
        )
    if not scenario.incidents:
        lines.append("no incidents")
    return "\n".join(lines) + "\n"


def _register_map() -> str:
    r = registers
    lines = [
        "Anju detector register map: input registers (function code 04), 16-bit words, big-endian words",
        "",
        "header (addresses 0-15)",
        "  0    kind code         u16  " + ", ".join(f"{c} {k}" for k, c in r.KIND_CODES.items()),
        "  1    status            u16  1 normal, 2 alarm, 3 fault, 4 shielded (GB/T 45839-2025)",
        "  2    battery           u16  percent",
        "  3    signal strength   i16  dBm",
        "  4    scale exponent    i16  value = raw * 10**exponent",
        f"  5    ring capacity     u16  {r.RING_CAPACITY}",
        "  6-7  sample counter    u32  samples since power-on = seq of the newest entry",
        "  8    fault flags       u16  bit 0 low battery, bit 1 tamper",
        "  9-15 reserved               0",
        "",
        f"history ring (addresses {r.RING_ADDRESS}-{r.RING_ADDRESS + r.RING_COUNT - 1}): "
        f"{r.RING_CAPACITY} entries x 8 registers; sample s is in entry (s-1) % {r.RING_CAPACITY}",
        "  +0-1 seq               u32  0 = empty",
        "  +2-5 time              u64  device clock, Unix epoch ms",
        "  +6-7 raw               i32  value * 10**-exponent",
        "",
        "scaling per kind",
    ]
    for name, exponent in r.KIND_EXPONENTS.items():
        kind = KINDS[name]
        lines.append(
            f"  {name:<12} code {r.KIND_CODES[name]}  exponent {exponent:>2}  resolution {10.0**exponent:g} {kind.unit}"
            f"  range {kind.minimum:g}..{kind.maximum:g} {kind.unit}"
        )
    return "\n".join(lines) + "\n"
