"""Anju detector simulator: device models, incident scenarios with ground truth, and a Modbus TCP server.

Each simulated gateway is one Modbus TCP server; each detector behind it is one Modbus unit id that serves
the register map of :mod:`protocol.registers`, exactly as a real RS-485 detector behind a TCP gateway would.
Every sample is also written to a JSON-lines truth file so tests and benchmarks can score what the rest of
Anju saw against what really happened.
"""

from firmware_sim.devices import Detector, DeviceSample
from firmware_sim.modbus_server import GatewayServer
from firmware_sim.runner import RunOptions, RunSummary, Simulation, run_simulation
from firmware_sim.scenario import (
    DeviceSpec,
    GatewaySpec,
    Incident,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
)
from firmware_sim.truth import TruthWriter, read_truth

__all__ = [
    "Detector",
    "DeviceSample",
    "DeviceSpec",
    "GatewayServer",
    "GatewaySpec",
    "Incident",
    "RunOptions",
    "RunSummary",
    "Scenario",
    "ScenarioError",
    "Simulation",
    "TruthWriter",
    "load_scenario",
    "parse_scenario",
    "read_truth",
    "run_simulation",
]
