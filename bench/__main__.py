"""``python -m bench [NAME ...]``: run benchmarks and print each figure with its same-run reference.

Without names, every benchmark that can run here runs.

Names: ``protocol_decode``, ``modbus_client`` (the edge's Modbus TCP transport against the pymodbus client),
``edge`` (the edge agent against ThingsBoard IoT Gateway, bench/edge_vs_tbgw.py; it
needs Mosquitto, and runs its ThingsBoard part only where that gateway's own venv exists), ``hub_ingest`` (the
hub's end-to-end ingest baseline at stepped loads, bench/hub_ingest.py; it needs Mosquitto).
"""

import argparse
import datetime
import sys
from collections.abc import Sequence

from bench import edge_vs_tbgw, hub_ingest, modbus_client, protocol_decode
from bench.common import machine
from hub.demo.broker import find_mosquitto

NAMES = ("protocol_decode", "modbus_client", "edge", "hub_ingest")


def _decode() -> None:
    decode = protocol_decode.run()
    sys.stdout.write(
        "protocol decode (100-reading SenML batches, validating): "
        f"{decode['decode_readings_per_s'] / 1e6:.2f} M readings/s; "
        f"reference orjson.loads of the same bytes: {decode['orjson_loads_readings_per_s'] / 1e6:.2f} M readings/s; "
        f"ratio {decode['ratio']:.2f}\n"
    )


def _modbus_client() -> None:
    client = modbus_client.run()
    sys.stdout.write(
        "Modbus TCP client, CPU per whole-ring read (FC 04, 120 registers): edge transport "
        f"{client['transport_s'] * 1e6:.0f} µs; reference pymodbus AsyncModbusTcpClient "
        f"{client['pymodbus_s'] * 1e6:.0f} µs; ratio {client['ratio']:.2f}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(NAMES)} (default: all)")
    edge_vs_tbgw.add_arguments(parser.add_argument_group("edge (edge agent against ThingsBoard IoT Gateway)"))
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in NAMES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(NAMES)})")
    names = args.names or list(NAMES)
    sys.stdout.write(f"# Anju benchmarks — {datetime.date.today().isoformat()} — {machine()}\n")
    sys.stdout.flush()
    if "protocol_decode" in names:
        _decode()
    if "modbus_client" in names:
        _modbus_client()
    if "edge" in names:
        if find_mosquitto() is None:
            if args.names:
                sys.stderr.write("edge: mosquitto is not installed (apt-get install mosquitto)\n")
                return 2
            sys.stdout.write("edge: skipped, mosquitto is not installed\n")
        else:
            edge_vs_tbgw.report(edge_vs_tbgw.run_from_args(args))
    if "hub_ingest" in names:
        if find_mosquitto() is None:
            if args.names:
                sys.stderr.write("hub_ingest: mosquitto is not installed (apt-get install mosquitto)\n")
                return 2
            sys.stdout.write("hub_ingest: skipped, mosquitto is not installed\n")
        else:
            hub_ingest.report(hub_ingest.run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
