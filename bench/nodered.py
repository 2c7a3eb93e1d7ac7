"""Node-RED as a peer in benchmarks: installed on first use, configured by us, run headless on loopback.

Node-RED 4.1 and node-red-contrib-influxdb 0.7 (the recipe's pins, shared/peers/nodered) are installed with npm
into ``run/peers/nodered`` — a cache outside the package, never a dependency of this project. Each benchmark
run gets its own user folder (settings, flows, a link to the installed modules). The settings keep it to
127.0.0.1 on a free port with the editor off, no HTTP-in endpoints, no telemetry or update checks, no palette or
module installs. The flow is ours: MQTT-in (persistent session, QoS 1, parsed JSON) → a function node turning a
SenML pack into points shaped as Anju writes them → ``influxdb batch`` (1.x, precision ms), errors to the log.
"""

import collections
import contextlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from bench.edge_vs_tbgw import Logs, start
from hub.demo.processes import Child, free_port, wait_port

__all__ = ["NODE_RED_DIR", "NODE_RED_PINS", "NodeRed", "flows", "install", "logged_errors", "settings", "versions"]

NODE_RED_DIR = Path(__file__).resolve().parents[1] / "run" / "peers" / "nodered"
NODE_RED_PINS = ("node-red@4.1.15", "node-red-contrib-influxdb@0.7.0")
"""The recipe's versions; an installed 4.1.x / 0.7.x is accepted as it is."""
_SERIES = {"node-red": "4.1.", "node-red-contrib-influxdb": "0.7."}
INSTALL_TIMEOUT_S = 600.0
START_TIMEOUT_S = 60.0

SENML_TO_POINTS = """\
// A SenML pack (RFC 8428) of one gateway -> InfluxDB points shaped as Anju writes them.
// Topic: anju/v1/{community}/{gateway}/data; time = bt + t seconds, kept to the millisecond.
const parts = msg.topic.split('/');
const pack = msg.payload;
const baseMs = Math.round(pack[0].bt * 1000);
msg.payload = pack.map(r => ({
    measurement: 'reading',
    tags: { community: parts[2], gateway: parts[3], sensor: r.n },
    fields: { value: r.v, flags: 0 },
    timestamp: baseMs + Math.round((r.t || 0) * 1000)
}));
return msg;
"""


def flows(
    *, broker_port: int, client_id: str, topic_filter: str, influx_port: int, database: str
) -> list[dict[str, object]]:
    """The flow file: MQTT-in on ``topic_filter`` → SenML to points → ``influxdb batch`` into ``database``.

    The MQTT session is persistent (clean session off, no unsubscribe on stop), so the broker queues for a
    stopped Node-RED what arrives meanwhile, as it does for the hub."""
    return [
        {"id": "bench-tab", "type": "tab", "label": "anju bench", "disabled": False, "info": ""},
        {
            "id": "bench-broker",
            "type": "mqtt-broker",
            "name": f"mosquitto {broker_port}",
            "broker": "127.0.0.1",
            "port": str(broker_port),
            "clientid": client_id,
            "autoConnect": True,
            "usetls": False,
            "protocolVersion": "4",
            "keepalive": "60",
            "cleansession": False,
            "autoUnsubscribe": False,
            "birthTopic": "",
            "closeTopic": "",
            "willTopic": "",
        },
        {
            "id": "bench-influx",
            "type": "influxdb",
            "hostname": "127.0.0.1",
            "port": str(influx_port),
            "protocol": "http",
            "database": database,
            "name": f"influxdb {influx_port}",
            "usetls": False,
            "influxdbVersion": "1.x",
        },
        {
            "id": "bench-in",
            "type": "mqtt in",
            "z": "bench-tab",
            "name": "readings",
            "topic": topic_filter,
            "qos": "1",
            "datatype": "json",
            "broker": "bench-broker",
            "nl": False,
            "rap": True,
            "rh": 0,
            "inputs": 0,
            "wires": [["bench-points"]],
        },
        {
            "id": "bench-points",
            "type": "function",
            "z": "bench-tab",
            "name": "SenML to points",
            "func": SENML_TO_POINTS,
            "outputs": 1,
            "timeout": 0,
            "noerr": 0,
            "libs": [],
            "wires": [["bench-write"]],
        },
        {
            "id": "bench-write",
            "type": "influxdb batch",
            "z": "bench-tab",
            "influxdb": "bench-influx",
            "precision": "ms",
            "retentionPolicy": "",
            "name": "write readings",
            "wires": [],
        },
        {"id": "bench-catch", "type": "catch", "z": "bench-tab", "name": "errors", "wires": [["bench-log"]]},
        {
            "id": "bench-log",
            "type": "debug",
            "z": "bench-tab",
            "name": "error log",
            "active": True,
            "tosidebar": False,
            "console": True,
            "complete": "error",
            "targetType": "msg",
            "wires": [],
        },
    ]


def settings(user_dir: Path, *, ui_port: int) -> str:
    """settings.js: loopback only, editor off, no HTTP-in nodes, nothing fetched or installed."""
    body = {
        "uiHost": "127.0.0.1",
        "uiPort": ui_port,
        "userDir": str(user_dir),
        "flowFile": "flows.json",
        "credentialSecret": False,
        "disableEditor": True,
        "httpNodeRoot": False,
        "logging": {"console": {"level": "info", "metrics": False, "audit": False}},
        "functionExternalModules": False,
        "externalModules": {
            "autoInstall": False,
            "palette": {"allowInstall": False, "allowUpload": False},
            "modules": {"allowInstall": False},
        },
        "diagnostics": {"enabled": False, "ui": False},
        "runtimeState": {"enabled": False, "ui": False},
        "telemetry": {"enabled": False, "updateNotification": False},
        "editorTheme": {"projects": {"enabled": False}},
    }
    return (
        "// Generated by bench/nodered.py for one benchmark run.\nmodule.exports = "
        + json.dumps(body, indent=4)
        + ";\n"
    )


_ERROR_MESSAGE = re.compile(r"^\S+\s+message: '(?:Error: )?(?P<text>.*?)',?$")


def logged_errors(log: Path) -> collections.Counter[str]:
    """Error messages the flow's catch node logged (a write InfluxDB refused, a host the client gave up on), by
    text. The messages were taken from the broker and acknowledged before: each one is a batch lost."""
    found: collections.Counter[str] = collections.Counter()
    with contextlib.suppress(OSError):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _ERROR_MESSAGE.match(line)
            if match:
                found[match["text"]] += 1
    return found


def _installed_version(directory: Path, package: str) -> str | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        manifest = json.loads((directory / "node_modules" / package / "package.json").read_text(encoding="utf-8"))
        return str(manifest["version"])
    return None


def versions(directory: Path = NODE_RED_DIR) -> dict[str, str] | None:
    """The installed versions when both packages are there in the pinned series, else None."""
    found = {package: _installed_version(directory, package) for package in _SERIES}
    if all(v is not None and v.startswith(_SERIES[p]) for p, v in found.items()):
        return {p: str(v) for p, v in found.items()}
    return None


def install(directory: Path = NODE_RED_DIR, *, say: Callable[[str], None]) -> str | None:
    """npm-install the pins into ``directory`` unless they are there. None when ready, else why Node-RED cannot
    run here."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not installed (apt-get install nodejs npm)"
    if versions(directory) is not None:
        return None
    say(f"installing {' '.join(NODE_RED_PINS)} with npm into {directory} (first use, ~20 s)")
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / "package.json"
    if not manifest.exists():
        manifest.write_text('{"name": "anju-bench-nodered", "private": true}\n', encoding="utf-8")
    argv = ["npm", "install", "--no-audit", "--no-fund", "--no-update-notifier", "--loglevel=warn", *NODE_RED_PINS]
    try:
        done = subprocess.run(argv, cwd=directory, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"npm install did not finish within {INSTALL_TIMEOUT_S:.0f} s"
    if done.returncode != 0 or versions(directory) is None:
        return f"npm install failed (exit {done.returncode}): {done.stderr.strip()[-500:]}"
    return None


class NodeRed:
    """One Node-RED of a benchmark run: its user folder under ``workdir`` and the processes started from it."""

    def __init__(self, workdir: Path, logs: Logs, *, installed: Path = NODE_RED_DIR) -> None:
        self.installed = installed
        self.user_dir = workdir / "nodered"
        self.user_dir.mkdir(parents=True, exist_ok=True)
        modules = self.user_dir / "node_modules"
        if not modules.exists():
            modules.symlink_to(installed / "node_modules", target_is_directory=True)
        self.logs = logs
        self.ui_port = free_port()
        self.settings = self.user_dir / "settings.js"
        self.settings.write_text(settings(self.user_dir, ui_port=self.ui_port), encoding="utf-8")
        self.starts = 0

    def configure(self, flow: list[dict[str, object]]) -> None:
        (self.user_dir / "flows.json").write_text(json.dumps(flow, indent=1) + "\n", encoding="utf-8")

    def start(self) -> Child:
        """Start it and wait (bounded) until it listens; the caller stops the child."""
        self.starts += 1
        node = shutil.which("node") or "node"
        red = self.installed / "node_modules" / "node-red" / "red.js"
        child = start(self.logs, f"nodered-{self.starts}", [node, str(red), "--settings", str(self.settings)])
        if not wait_port(self.ui_port, timeout_s=START_TIMEOUT_S):
            child.stop(grace_s=5.0)
            raise RuntimeError(f"Node-RED did not listen on 127.0.0.1:{self.ui_port} (see {self.logs.directory})")
        return child
