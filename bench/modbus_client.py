"""Modbus TCP client CPU per request: the edge's own transport against the pymodbus client it replaced.

Both read a detector's whole ring (FC 04, 120 registers, round-robin over 100 unit ids) from the same simulator,
``firmware_sim.modbus_server.GatewayServer``, which runs in a child process so that only the client's CPU is
counted (``time.process_time`` of this process: user + system, all threads). Rounds alternate between the two
clients; the figures are medians over rounds. The edge polls 500 detectors twice a second, so this per-request
cost is most of its CPU (BENCHMARKS.md, edge rows).

``python -m bench modbus_client``; ``python -m bench.modbus_client --serve PORT`` is the child.
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from pymodbus.client import AsyncModbusTcpClient

from edge.drivers.modbus_tcp import TcpTransport
from hub.demo.processes import free_port, wait_port
from protocol.registers import RING_ADDRESS, RING_COUNT

__all__ = ["run"]

UNITS = 100


def _pymodbus_round(port: int, requests: int) -> float:
    async def go() -> float:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        if not await client.connect():
            raise RuntimeError(f"pymodbus cannot connect to 127.0.0.1:{port}")
        try:
            began = time.process_time()
            for i in range(requests):
                response = await client.read_input_registers(RING_ADDRESS, count=RING_COUNT, device_id=1 + i % UNITS)
                if response.isError() or len(response.registers) != RING_COUNT:
                    raise RuntimeError(f"bad response {response}")
            return (time.process_time() - began) / requests
        finally:
            client.close()

    return asyncio.run(go())


def _transport_round(port: int, requests: int) -> float:
    transport = TcpTransport(host="127.0.0.1", port=port, timeout_s=2.0)
    try:
        began = time.process_time()
        for i in range(requests):
            if len(transport.read_input_registers(1 + i % UNITS, RING_ADDRESS, RING_COUNT)) != 2 * RING_COUNT:
                raise RuntimeError("short read")
        return (time.process_time() - began) / requests
    finally:
        transport.close()


def run(*, rounds: int = 5, requests: int = 2_000) -> dict[str, float]:
    """Median CPU seconds per request of each client, and their ratio."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.modbus_client", "--serve", str(port)])
    try:
        if not wait_port(port, timeout_s=30):
            raise RuntimeError(f"the simulator does not listen on 127.0.0.1:{port}")
        ours: list[float] = []
        theirs: list[float] = []
        _transport_round(port, 200)  # warm-up of both, not timed
        _pymodbus_round(port, 200)
        for _ in range(rounds):
            ours.append(_transport_round(port, requests))
            theirs.append(_pymodbus_round(port, requests))
    finally:
        server.terminate()
        server.wait(10)
    transport_s, pymodbus_s = statistics.median(ours), statistics.median(theirs)
    return {"transport_s": transport_s, "pymodbus_s": pymodbus_s, "ratio": transport_s / pymodbus_s}


def _serve(port: int) -> None:
    from firmware_sim.modbus_server import GatewayServer

    async def serve() -> None:
        async with GatewayServer(gateway_id="bench", port=port, unit_ids=range(1, UNITS + 1)):
            await asyncio.sleep(600)  # bounded: the parent terminates it long before

    asyncio.run(serve())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, metavar="PORT", help="run the simulator child on PORT")
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve)
        return
    sys.stdout.write(f"{run()}\n")


if __name__ == "__main__":
    main()
