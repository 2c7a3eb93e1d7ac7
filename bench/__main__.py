"""``python -m bench [NAME ...]``: run benchmarks and print each figure with its same-run reference.

Without names, every benchmark that can run here runs.

Names: ``protocol_decode``, ``modbus_client`` (the edge's Modbus TCP transport against the pymodbus client),
``edge`` (the edge agent against ThingsBoard IoT Gateway, bench/edge_vs_tbgw.py; it needs Mosquitto, and runs its
ThingsBoard part only where that gateway's own venv exists), ``hub_ingest`` (the hub's end-to-end ingest baseline at
stepped loads, bench/hub_ingest.py; it needs Mosquitto), ``hub_influx`` (the hub end to end into InfluxDB against a
bare line-protocol writer and Node-RED, bench/hub_influx.py; it needs influxd, and Mosquitto for the hub and
Node-RED parts; Node-RED is npm-installed into run/peers on first use), ``mqtt_receive`` (receive rate of the hub's
MQTT client layouts against ``mosquitto_sub``, bench/mqtt_receive.py; it needs Mosquitto), ``gateway_limits`` (that
receive path with per-gateway limits off, admitting and deferring a flood, against ``mosquitto_sub``,
bench/gateway_limits.py; it needs Mosquitto), ``hub_workers`` (1, 2 and 3 hub processes, one community each, draining
backlogs from one Mosquitto: aggregate and per-worker readings/s and efficiency against the 1-worker rate of the same
run, bench/hub_workers.py; it needs Mosquitto), ``takeover`` (a hub killed while it holds its community's lease in
PostgreSQL, until a standby serves it, against a hub's cold start and issue 8's 30 s, bench/takeover.py; it needs
Mosquitto and PostgreSQL), ``worker_takeover`` (a worker killed with its hubs until the other worker of the shard map
serves all its communities, against a worker's cold start and 30 s, and the hubs' memory, bench/worker_takeover.py;
it needs Mosquitto and PostgreSQL), ``hub_memory`` (a community's hub forked by the worker's zygote against one
started by exec, both fed the same load for 4 minutes: private memory, bench/hub_memory.py; it needs Mosquitto and
PostgreSQL), ``district`` (the district node's API across 20 communities' 10,000 alerts in
PostgreSQL, against one community's page through the same node, bench/district.py; it needs PostgreSQL),
``hub_queries`` (dashboard queries on 100 M readings in the embedded
store against issue 4's targets, bench/hub_queries.py; ~4.5 GB of disk while it runs), ``liveness`` (the hub's
liveness bookkeeping per reading against a bare numpy scatter, bench/liveness.py), ``anomaly`` (the streaming
anomaly detector on 10,000 sensors against a bare numpy scatter, bench/anomaly.py), ``anomaly_quality`` (the anomaly
detector through ``anju-hub score``'s code path on a seeded corpus of labelled synthetic series, NAB-style, against
a rolling z-score and a seasonal-naive z-score, bench/anomaly_quality.py; about 2 minutes), ``detection`` (rules +
health + anomaly on the firmware_sim incidents against SENSORS.md's norms, false events in a quiet month of >= 2,000
sensors against issue 5's target, and their CPU cost on 10,000 sensors against a bare numpy scatter,
bench/detection.py; the month's samples are simulated once into run/bench-cache, ~10 min on 2 cores), ``alerts``
(risk event → notification received at 1,000 events/s through the alert service against Prometheus Alertmanager when
installed, bench/alerts_latency.py), ``alerts_storm`` (10,000 events in a minute from one building: pages per
person, grouping against Alertmanager's, bench/alerts_storm.py), ``http_clients`` (notification POSTs a second from
one event loop, aiohttp against httpx, bench/http_clients.py), ``web`` (the pages' API answers with 2,000 sensors
and 10,000 alerts in history, and a gas alarm from the gateway's publish to its card in an open headless Chromium,
bench/web.py).
"""

import argparse
import datetime
import sys
from collections.abc import Callable, Sequence

from bench import (
    alerts_latency,
    alerts_storm,
    anomaly,
    anomaly_quality,
    detection,
    district,
    edge_vs_tbgw,
    gateway_limits,
    http_clients,
    hub_influx,
    hub_ingest,
    hub_memory,
    hub_queries,
    hub_workers,
    liveness,
    modbus_client,
    mqtt_receive,
    protocol_decode,
    takeover,
    web,
    worker_takeover,
)
from bench.common import machine
from hub.demo.broker import find_mosquitto
from hub.demo.influxd import find_influxd
from hub.demo.postgres import find_postgres

NAMES = (
    "protocol_decode",
    "modbus_client",
    "edge",
    "hub_ingest",
    "hub_influx",
    "mqtt_receive",
    "gateway_limits",
    "hub_workers",
    "takeover",
    "worker_takeover",
    "hub_memory",
    "district",
    "hub_queries",
    "liveness",
    "anomaly",
    "anomaly_quality",
    "detection",
    "alerts",
    "alerts_storm",
    "http_clients",
    "web",
)


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
    detection.add_arguments(parser.add_argument_group("detection (incidents, quiet month, cost)"))
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in NAMES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(NAMES)})")
    names = args.names or list(NAMES)
    sys.stdout.write(f"# Anju benchmarks — {datetime.date.today().isoformat()} — {machine()}\n")
    sys.stdout.flush()
    mosquitto = find_mosquitto() is not None
    influxd = find_influxd() is not None
    if "protocol_decode" in names:
        _decode()
    if "modbus_client" in names:
        _modbus_client()
    # Each benchmark that needs a service: (name, program, Debian package, found?, run and report).
    needing: list[tuple[str, str, str, bool, Callable[[], None]]] = [
        ("edge", "mosquitto", "mosquitto", mosquitto, lambda: edge_vs_tbgw.report(edge_vs_tbgw.run_from_args(args))),
        ("hub_ingest", "mosquitto", "mosquitto", mosquitto, lambda: hub_ingest.report(hub_ingest.run())),
        ("hub_influx", "influxd", "influxdb", influxd, lambda: hub_influx.report(hub_influx.run())),
        ("mqtt_receive", "mosquitto", "mosquitto", mosquitto, lambda: mqtt_receive.report(mqtt_receive.run())),
        ("gateway_limits", "mosquitto", "mosquitto", mosquitto, lambda: gateway_limits.report(gateway_limits.run())),
        ("hub_workers", "mosquitto", "mosquitto", mosquitto, lambda: hub_workers.report(hub_workers.run())),
        (
            "takeover",
            "postgres",
            "postgresql",
            mosquitto and find_postgres() is not None,
            lambda: takeover.report(takeover.run()),
        ),
        (
            "worker_takeover",
            "postgres",
            "postgresql",
            mosquitto and find_postgres() is not None,
            lambda: worker_takeover.report(worker_takeover.run()),
        ),
        (
            "hub_memory",
            "postgres",
            "postgresql",
            mosquitto and find_postgres() is not None,
            lambda: hub_memory.report(hub_memory.run()),
        ),
        ("district", "postgres", "postgresql", find_postgres() is not None, lambda: district.report(district.run())),
    ]
    for name, program, package, found, work in needing:
        if name not in names:
            continue
        if not found:
            if args.names:
                sys.stderr.write(f"{name}: {program} is not installed (apt-get install {package})\n")
                return 2
            sys.stdout.write(f"{name}: skipped, {program} is not installed\n")
            continue
        work()
    if "hub_queries" in names:
        hub_queries.report(hub_queries.run())
    if "liveness" in names:
        liveness.main()
    if "anomaly" in names:
        anomaly.main()
    if "anomaly_quality" in names:
        anomaly_quality.main()
    if "detection" in names:
        detection.main_from_args(args)
    if "alerts" in names:
        alerts_latency.report(alerts_latency.run())
    if "alerts_storm" in names:
        alerts_storm.report(alerts_storm.run())
    if "http_clients" in names:
        http_clients.report(http_clients.run())
    if "web" in names:
        web.report(web.run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
