"""``make demo``: the whole system on embedded defaults, shown live in one terminal.

Starts, on free loopback ports: a broker (Mosquitto if installed, else the embedded trial broker), the
local webhook receiver standing in for the grid managers' phones, the hub (SQLite storage), the simulator
of the 红星社区 demo community (2 gateways, 20 detectors, a kitchen gas leak passing 25 %LEL after ~20 s)
and one edge agent per gateway. Every child's log is shown with its name; a status line every few seconds
gives readings stored per gateway. When the notification arrives it prints how long after the threshold
crossing (from the simulator's truth file) it was delivered. Ctrl-C stops everything, children last-in
first-out, and leaves nothing running.
"""

import json
import os
import queue
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from ruamel.yaml import YAML

from hub.config import load_deployment
from hub.demo.broker import find_mosquitto, mosquitto_config, wait_broker
from hub.demo.processes import Child, Line, free_port, wait_port
from hub.edge_config import EdgeTarget, render_edge_config

__all__ = [
    "SCENARIO",
    "DemoPlan",
    "edge_config_path",
    "localise_deployment",
    "prepare",
    "run_demo",
    "write_edge_configs",
]

_REPO_DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "deployment.yaml"
SCENARIO = Path(__file__).resolve().parents[2] / "firmware_sim" / "scenarios" / "kitchen_gas_leak.yaml"
_LEAK_SENSOR = "gas-b1-301"
_LEAK_SET_POINT = 25.0
_COLOURS = {"broker": "90", "sink": "35", "hub": "36", "sim": "33", "edge-gw-b1": "32", "edge-gw-b2": "34", "demo": "1"}


@dataclass(frozen=True, slots=True)
class DemoPlan:
    """Files and ports of one demo run, all under ``run_dir``."""

    run_dir: Path
    mqtt_port: int
    http_port: int
    sink_port: int
    modbus_ports: dict[str, int]
    deployment: Path
    secret_file: Path
    token_file: Path
    truth: Path
    notifications: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def localise_deployment(source: Path, target: Path, *, sink_port: int, modbus_ports: dict[str, int]) -> Path:
    """Copy a deployment file, pointing every webhook at the local sink and each gateway at its Modbus port.

    A round trip through ruamel keeps the file's comments and order, so the copy reads like the original.
    """
    yaml = YAML(typ="rt")
    yaml.width = 4096  # keep each flow mapping on its line, as written (the default 80 re-wraps them)
    document = yaml.load(source.read_text(encoding="utf-8"))
    for gateway in document["gateways"]:
        if str(gateway["id"]) in modbus_ports:
            gateway.setdefault("modbus", {})["port"] = modbus_ports[str(gateway["id"])]
    people = (*document["people"], *document.get("volunteers", ()))
    channels = [c for entry in people for c in entry.get("channels", ())]
    channels += [broadcast["channel"] for broadcast in document.get("broadcasts", ())]
    for channel in channels:
        channel["url"] = f"http://127.0.0.1:{sink_port}/notify"
    with target.open("w", encoding="utf-8") as out:
        yaml.dump(document, out)
    return target


def edge_config_path(plan: DemoPlan, gateway: str) -> Path:
    """Where gateway ``gateway``'s edge.yaml of this run lives (one directory holds every gateway's)."""
    return plan.run_dir / f"{gateway}.edge.yaml"


def write_edge_configs(plan: DemoPlan, *, mqtt_port: int, outbox_max_bytes: int | None = None) -> None:
    """(Re)render every gateway's edge config from the plan's deployment copy, its broker at ``mqtt_port`` and,
    when given, its outbox bounded to ``outbox_max_bytes``."""
    deployment = load_deployment(plan.deployment, check_secrets=False)
    for gateway in plan.modbus_ports:
        target = EdgeTarget(
            mqtt_host="127.0.0.1", mqtt_port=mqtt_port, outbox=plan.run_dir / f"{gateway}.outbox.sqlite3"
        )
        text = render_edge_config(deployment, gateway, target, outbox_max_bytes=outbox_max_bytes)
        edge_config_path(plan, gateway).write_text(text, encoding="utf-8")


def prepare(run_dir: Path, *, source: Path = _REPO_DEMO, mqtt_port: int | None = None) -> DemoPlan:
    """Lay out a fresh run directory: ports, secrets, the deployment copy, and one edge config per gateway."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    sink_port = free_port()
    modbus_ports = {gateway.id: free_port() for gateway in load_deployment(source, check_secrets=False).gateways}
    deployment = localise_deployment(
        source, run_dir / "deployment.yaml", sink_port=sink_port, modbus_ports=modbus_ports
    )
    secret_file = run_dir / "webhook.secret"
    secret_file.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
    token_file = run_dir / "api.token"
    token_file.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
    for path in (secret_file, token_file):
        path.chmod(0o600)
    plan = DemoPlan(
        run_dir=run_dir,
        mqtt_port=mqtt_port or free_port(),
        http_port=free_port(),
        sink_port=sink_port,
        modbus_ports=modbus_ports,
        deployment=deployment,
        secret_file=secret_file,
        token_file=token_file,
        truth=run_dir / "truth.jsonl",
        notifications=run_dir / "notifications.jsonl",
    )
    load_deployment(deployment)  # the copy must be valid as the hub will read it, secrets included
    write_edge_configs(plan, mqtt_port=plan.mqtt_port)
    return plan


DEMO_USERS = {
    "wang": ("grid_manager", "wang-li"),
    "property": ("property_company", "li-property"),
    "committee": ("community_committee", None),
}
"""The demo's logins for the pages: the grid manager of building 1, the property company, the community committee."""


def create_demo_users(plan: DemoPlan, token: str) -> Path:
    """Create ``DEMO_USERS`` on the running hub (admin token) with random passwords, written to ``logins.txt``
    (mode 0600) in the run directory; returns that file."""
    logins = plan.run_dir / "logins.txt"
    lines = []
    with httpx.Client(base_url=plan.api, headers={"Authorization": f"Bearer {token}"}, trust_env=False) as client:
        for name, (role, person) in DEMO_USERS.items():
            password = secrets.token_urlsafe(12)
            answer = client.post(
                "/api/v1/users", json={"name": name, "role": role, "person": person, "password": password}
            )
            answer.raise_for_status()
            lines.append(f"{name}\t{password}\t{role}")
    logins.write_text("\n".join(lines) + "\n", encoding="utf-8")
    logins.chmod(0o600)
    return logins


class Console:
    """Writes every child's lines with a coloured name, and the demo's own headlines."""

    def __init__(self) -> None:
        self.colour = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None

    def write(self, source: str, text: str, *, bold: bool = False) -> None:
        name = f"{source:<10}"
        if self.colour:
            code = _COLOURS.get(source, "0")
            name = f"\033[{code}m{name}\033[0m"
            if bold:
                text = f"\033[1m{text}\033[0m"
        sys.stdout.write(f"{name} │ {text}\n")
        sys.stdout.flush()


def _important(text: str) -> bool:
    return any(mark in text for mark in ("LOCAL ALARM", "RISK", "收到通知", "incident", "ERROR", "Traceback"))


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _crossing_ms(truth: Path) -> int | None:
    """Device time of the first leak reading at or past the set point, from the simulator's truth file."""
    if not truth.exists():
        return None
    with truth.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            is_leak = record.get("type") == "reading" and record.get("sensor") == _LEAK_SENSOR
            if is_leak and float(record["value"]) >= _LEAK_SET_POINT:
                return int(record["time_ms"])
    return None


def _status(client: httpx.Client, plan: DemoPlan) -> str | None:
    try:
        text = client.get(f"{plan.api}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = value
    stored = values.get("anju_readings_stored_total", "0")
    online = values.get("anju_gateways_online", "0")
    acks = values.get("anju_acks_published_total", "0")
    risks = sum(float(v) for k, v in values.items() if k.startswith("anju_risk_events_total"))
    return (
        f"已存储读数 readings stored {stored} · 网关在线 gateways online {online} · "
        f"hub-acks {acks} · 风险事件 risk events {risks:g}"
    )


class StopRequested(Exception):
    """Ctrl-C, a closed terminal (SIGHUP) or ``kill`` (SIGTERM): stop every child, then exit."""


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop_on_signals() -> None:
    def request_stop(signum: int, frame: object) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        raise StopRequested(name)

    for signum in _STOP_SIGNALS:
        signal.signal(signum, request_stop)


def run_demo(*, run_dir: Path, duration_s: float | None = None, broker: str = "auto") -> int:
    """Run the demo until Ctrl-C, SIGTERM or SIGHUP (or ``duration_s``).

    Returns 0 when stopped by the user or when the gas-leak alert was delivered within ``duration_s``.
    """
    console = Console()
    _stop_on_signals()
    plan = prepare(run_dir.resolve())
    lines: queue.Queue[Line] = queue.Queue()
    children: list[Child] = []
    token = plan.token_file.read_text(encoding="utf-8").strip()

    def start(name: str, argv: list[str], port: int | None = None, wait_s: float = 30.0) -> Child:
        child = Child(name, argv, lines, cwd=plan.run_dir).start()
        children.append(child)
        if port is not None and not wait_port(port, timeout_s=wait_s):
            raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} within {wait_s:.0f} s")
        return child

    delivered_after_s: float | None = None
    stopped_by_user = False
    try:
        mosquitto = find_mosquitto() if broker in ("auto", "mosquitto") else None
        if broker == "mosquitto" and mosquitto is None:
            raise RuntimeError("--broker mosquitto: Mosquitto is not installed (sudo apt-get install mosquitto)")
        if mosquitto:
            config = mosquitto_config(port=plan.mqtt_port, directory=plan.run_dir)
            console.write("demo", f"broker: Mosquitto ({mosquitto}) on 127.0.0.1:{plan.mqtt_port}")
            start("broker", [mosquitto, "-c", str(config)])
        else:
            reason = "as asked" if broker == "embedded" else "Mosquitto is not installed"
            console.write("demo", f"broker: embedded trial broker (amqtt), {reason}; production uses Mosquitto/EMQX")
            start("broker", _python("hub.demo.broker", "--port", str(plan.mqtt_port)))
        if not wait_broker(plan.mqtt_port, timeout_s=30):
            raise RuntimeError(f"the broker did not accept MQTT connections on 127.0.0.1:{plan.mqtt_port}")
        start("sink", _python("alerts.sink", "--port", str(plan.sink_port), "--secret-file", str(plan.secret_file),
                              "--log", str(plan.notifications)), plan.sink_port)  # fmt: skip
        start(
            "hub",
            _python(
                "hub",
                "serve",
                "--config",
                str(plan.deployment),
                "--data-dir",
                str(plan.run_dir / "hub"),
                "--mqtt-port",
                str(plan.mqtt_port),
                "--http-port",
                str(plan.http_port),
                "--api-token-file",
                str(plan.token_file),
            ),
            plan.http_port,
        )
        ports = [arg for gateway, port in plan.modbus_ports.items() for arg in ("--port", f"{gateway}={port}")]
        start("sim", _python("firmware_sim", "run", str(SCENARIO), *ports, "--truth", str(plan.truth)),
              next(iter(plan.modbus_ports.values())))  # fmt: skip
        for gateway in plan.modbus_ports:
            start(f"edge-{gateway}", _python("edge", "run", "--config", str(edge_config_path(plan, gateway))))
        console.write(
            "demo", f"API: {plan.api}/api/v1  (OpenAPI {plan.api}/docs, metrics {plan.api}/metrics)", bold=True
        )
        console.write("demo", f'     curl -H "Authorization: Bearer $(cat {plan.token_file})" {plan.api}/api/v1/alerts')
        logins = create_demo_users(plan, token)
        console.write(
            "demo",
            f"页面 pages: {plan.api}/app/  — 登录 log in as {', '.join(DEMO_USERS)} (passwords in {logins})",
            bold=True,
        )
        console.write("demo", f"files: {plan.run_dir} (truth.jsonl, notifications.jsonl, hub/*.sqlite3)")
        console.write(
            "demo",
            "剧情 scenario: 1栋301室厨房燃气泄漏 kitchen gas leak, passes 25 %LEL after ~20 s. Ctrl-C 停止 to stop.",
        )
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_status = time.monotonic() + 5
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as client:
            while deadline is None or time.monotonic() < deadline:
                try:
                    line = lines.get(timeout=0.5)
                    console.write(line.source, line.text, bold=_important(line.text))
                    if line.source == "sink" and "收到通知" in line.text and delivered_after_s is None:
                        crossing = _crossing_ms(plan.truth)
                        if crossing is not None:
                            delivered_after_s = line.time_s - crossing / 1000
                            console.write("demo", f"✅ 告警已送达 alert delivered {delivered_after_s:.2f} s after the "
                                                  f"threshold crossing (target ≤ 2 s)", bold=True)  # fmt: skip
                except queue.Empty:
                    pass
                dead = [c.name for c in children if not c.alive]
                if dead:
                    console.write("demo", f"stopped unexpectedly: {', '.join(dead)}", bold=True)
                    return 1
                if time.monotonic() >= next_status:
                    next_status += 5
                    status = _status(client, plan)
                    if status:
                        console.write("demo", status)
    except StopRequested as stop:
        console.write("demo", f"{stop}: 正在停止 stopping …")
        stopped_by_user = True
    except RuntimeError as exc:
        console.write("demo", f"failed: {exc}", bold=True)
        return 1
    finally:
        for signum in _STOP_SIGNALS:  # a second Ctrl-C must not cut the clean-up short and orphan children
            signal.signal(signum, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        while not lines.empty():
            line = lines.get_nowait()
            console.write(line.source, line.text)
        console.write("demo", f"all processes stopped; data kept in {plan.run_dir}")
    return 0 if delivered_after_s is not None or stopped_by_user else 1
