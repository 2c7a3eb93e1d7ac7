"""``anju-edge`` works from a clean virtual environment with nothing but ``pip install .[edge]``.

A Raspberry Pi gateway gets no hub dependencies (FastAPI, numpy, aiomqtt …). This installs the project the
way an installer would, proves those libraries are absent (ruamel.yaml is the one library it shares with the
hub: it reads edge.yaml), and then runs the agent for real against Mosquitto and the simulator until it has
published readings.
"""

import os
import queue
import shutil
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from hub.config import load_deployment
from hub.demo.processes import Child, Line, free_port, wait_port
from hub.edge_config import EdgeTarget, render_edge_config
from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def test_anju_edge_runs_with_only_the_edge_extra(tmp_path: Path, mosquitto: int, demo_deployment: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        REPO, source, ignore=shutil.ignore_patterns(".venv", "run", ".git", "*_cache", "__pycache__", "build")
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    install = subprocess.run([*pip, f"{source}[edge]"], capture_output=True, text=True, timeout=600, check=False)
    assert install.returncode == 0, install.stderr[-3000:]
    hub_only = "('aiomqtt', 'fastapi', 'numpy', 'pydantic', 'uvicorn')"
    probe = f"import importlib.util as u; print([m for m in {hub_only} if u.find_spec(m)])"
    absent = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True)
    assert absent.stdout.strip() == "[]", f"the edge extra pulled in hub libraries: {absent.stdout}"
    probe = "import ruamel.yaml; print(ruamel.yaml.__version__)"
    present = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=False)
    assert present.returncode == 0, f"the edge extra must bring ruamel.yaml for edge.yaml: {present.stderr}"

    modbus_ports = {"gw-b1": free_port(), "gw-b2": free_port()}
    config = tmp_path / "edge.yaml"
    target = EdgeTarget(mqtt_host="127.0.0.1", mqtt_port=mosquitto, outbox=tmp_path / "outbox.sqlite3",
                        modbus_port=modbus_ports["gw-b1"])  # fmt: skip
    config.write_text(render_edge_config(load_deployment(demo_deployment), "gw-b1", target), encoding="utf-8")
    edge = str(venv / "bin" / "anju-edge")
    check = subprocess.run([edge, "check-config", str(config)], capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stderr

    received: list[str] = []
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-only-test")
    subscriber.on_message = lambda _client, _userdata, message: received.append(message.topic)
    subscriber.connect("127.0.0.1", mosquitto)
    subscriber.subscribe("anju/v1/hongxing/gw-b1/#", qos=1)
    subscriber.loop_start()
    lines: queue.Queue[Line] = queue.Queue()
    scenario = REPO / "firmware_sim" / "scenarios" / "quiet.yaml"
    ports = [arg for gateway, port in modbus_ports.items() for arg in ("--port", f"{gateway}={port}")]
    sim = Child("sim", [sys.executable, "-m", "firmware_sim", "run", str(scenario), *ports], lines).start()
    agent = Child("edge", [edge, "run", "--config", str(config)], lines, env={"PATH": os.environ["PATH"]}).start()
    try:
        assert wait_port(modbus_ports["gw-b1"], timeout_s=30)
        deadline = time.monotonic() + 30
        while "anju/v1/hongxing/gw-b1/data" not in received:
            assert agent.alive, "anju-edge exited"
            assert time.monotonic() < deadline, "no data published by the edge-only install"
            time.sleep(0.1)
        assert "anju/v1/hongxing/gw-b1/state" in received, "birth message on the state topic"
        assert agent.stop() == 0, "SIGTERM is a clean stop"
    finally:
        agent.stop()
        sim.stop()
        subscriber.loop_stop()
        subscriber.disconnect()
