"""One incident declared in several communities from the district node (issue 6, Art. 25 "several communities"),
through real hub workers on a real PostgreSQL and Mosquitto.

east is run by worker w1 and west by w2 (``anju-hub worker``). The district node (``anju-hub district serve``) holds
the hubs' token; it records a declaration in its own schema and hands it to each community's hub, found where the
shard map says the lease holder's worker listens. west's worker is down when the emergency office declares: east
takes it at once, west is pending, and takes it when its worker comes up — under the same incident id, once.
"""

import concurrent.futures
import contextlib
import csv
import io
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from paho.mqtt import publish

from firmware_sim.load_plan import LoadOptions, render_deployment
from hub.demo.processes import Child, Line, free_port, wait_port
from protocol import GatewayState, encode_state
from protocol.topics import Channel, topic
from tests.e2e.test_workers import serving, until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Lantern-harbour-7-quiet"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def city(tmp_path: Path, database_url: str, mosquitto: int) -> Iterator[dict[str, Any]]:
    ports = {"east": free_port(), "west": free_port()}
    lines = ["version: 1", "communities:"]
    for community, worker in (("east", "w1"), ("west", "w2")):
        options = LoadOptions(community=community, gateways=1, sensors_per_gateway=1, kinds=("gas",))
        pa = f'  - {{id: pa, name: 小区广播, channel: {{type: webhook, url: "http://127.0.0.1:{free_port()}/pa", '
        pa += 'secret: "0123456789abcdef0123"}}\n'  # nobody listens: the hub's outbox retries; the notice is recorded
        _write(tmp_path / f"{community}.yaml", render_deployment(options) + "broadcasts:\n" + pa)
        lines.append(f"  {community}: {{deployment: {community}.yaml, data_dir: data/{community}, "
                     f"http_port: {ports[community]}, workers: [{worker}]}}")  # fmt: skip
    lines += ["sub_districts:", "  chunxi: {name: 春熙路街道, communities: [east]}"]
    shard_map = _write(tmp_path / "shards.yaml", "\n".join(lines) + "\n")
    database_file = _write(tmp_path / "database.url", database_url + "\n")
    token_file = _write(tmp_path / "hub.token", secrets.token_hex(24) + "\n")
    password = _write(tmp_path / "password", PASSWORD + "\n")
    started: list[Child] = []

    def start(name: str, argv: list[str]) -> Child:
        child = Child(name, [sys.executable, "-m", "hub", "--log-level", "info", *argv], queue.Queue[Line](), cwd=REPO)
        started.append(child.start())
        return child

    def worker(name: str) -> Child:
        return start(name, ["worker", "--shard-map", str(shard_map), "--name", name, "--alerts-database-file",
                            str(database_file), "--mqtt-port", str(mosquitto), "--lease-term", "6",
                            "--api-token-file", str(token_file)])  # fmt: skip

    users = [sys.executable, "-m", "hub", "users", "--shard-map", str(shard_map), "--database-file", str(database_file)]
    for name, role, person in (("wang", "emergency_office", []), ("chen", "sub_district", ["--person", "chunxi"])):
        subprocess.run([*users, "add", name, "--role", role, *person, "--password-file", str(password)], check=True,
                       cwd=REPO, capture_output=True, timeout=60)  # fmt: skip
    node_port = free_port()
    try:
        yield {"ports": ports, "worker": worker, "mqtt_port": mosquitto, "token": token_file.read_text().strip(),
               "node_port": node_port,
               "start_node": lambda *more: start("district", ["district", "serve", "--shard-map", str(shard_map),
                                                              "--alerts-database-file", str(database_file),
                                                              "--hub-token-file", str(token_file),
                                                              "--data-dir", str(tmp_path / "node"),
                                                              "--http-port", str(node_port), *more])}  # fmt: skip
    finally:
        for child in reversed(started):
            child.stop(grace_s=30)


def _login(base: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    answer = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return client


def _state(client: httpx.Client, declaration_id: str) -> Callable[[], dict[str, str]]:
    def states() -> dict[str, str]:
        body = client.get(f"/api/v1/declarations/{declaration_id}").json()
        return {part["community"]: part["state"] for part in body["parts"]}

    return states


def test_an_incident_declared_in_two_communities_reaches_the_hub_that_was_down_when_it_comes_up(
    city: dict[str, Any],
) -> None:
    ports: dict[str, int] = city["ports"]
    w1 = city["worker"]("w1")
    until("east is served by w1", lambda: serving(ports["east"]), 60, (w1,))
    node = city["start_node"]()
    assert wait_port(city["node_port"], timeout_s=30), "the district node did not start"
    base = f"http://127.0.0.1:{city['node_port']}"
    office = _login(base, "wang")
    chunxi = _login(base, "chen")
    try:
        # east's hub publishes its registry to the shared database; the node shows it (no edge runs: offline).
        def east_published() -> bool:
            east = next(c for c in office.get("/api/v1/communities").json() if c["id"] == "east")
            return [east["gateways"], east["gateways_online"], east["sensors"]] == [1, 0, 1]

        until("east's registry is on the district node", east_published, 30, (w1, node))
        [gateway] = office.get("/api/v1/communities/east/gateways").json()
        assert gateway["online"] is False and gateway["sensors"] == 1
        birth = encode_state(GatewayState("online", 1, time.time()))
        publish.single(topic("east", gateway["id"], Channel.STATE), birth, qos=1, hostname="127.0.0.1",
                       port=city["mqtt_port"])  # fmt: skip

        def east_online() -> bool:
            return bool(office.get("/api/v1/communities/east/gateways").json()[0]["online"])

        until("the gateway's birth shows on the district node", east_online, 30, (w1, node))
        refused = chunxi.post("/api/v1/declarations", json={"by": "chen", "kind": "flood", "title": "暴雨",
                                                           "communities": ["east", "west"]})  # fmt: skip
        assert refused.status_code == 404, "west is not chunxi's: answered as if it did not exist"
        answer = office.post("/api/v1/declarations", json={"by": "wang", "kind": "flood", "title": "锦江暴雨内涝",
                                                          "communities": ["east", "west"],
                                                          "notice_zh": "请勿前往地下车库"})  # fmt: skip
        assert answer.status_code == 201, answer.text
        declared = answer.json()
        incident_id = declared["id"]
        parts = {p["community"]: p for p in declared["parts"]}
        assert parts["east"]["state"] == "declared" and parts["east"]["attempts"] == 1
        assert parts["west"]["state"] == "pending" and "no hub holds" in parts["west"]["error"]

        bearer = {"Authorization": f"Bearer {city['token']}"}
        hub = {c: httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=30, headers=bearer) for c, p in ports.items()}
        east = hub["east"].get(f"/api/v1/incidents/{incident_id}").json()
        assert (east["kind"], east["title"], east["declared_by"]) == ("flood", "锦江暴雨内涝", "district:wang")
        assert east["grids"] == [] and east["active"], "the whole community"

        w2 = city["worker"]("w2")
        until("west's hub took the declaration", lambda: _state(office, incident_id)() == {"east": "declared",
              "west": "declared"}, 90, (w2, node))  # fmt: skip
        west = hub["west"].get("/api/v1/incidents").json()
        assert [i["id"] for i in west] == [incident_id], "declared there once, under the district's id"
        for community in ports:
            notices = hub[community].get(f"/api/v1/incidents/{incident_id}/notices").json()
            assert [(n["text_zh"], n["by"]) for n in notices] == [("请勿前往地下车库", "district:wang")], community
        notice_id = "ntc-" + incident_id.removeprefix("inc-")
        notices_path = f"/api/v1/incidents/{incident_id}/notices"
        replay = hub["east"].post(notices_path, json={"id": notice_id, "by": "x", "text_zh": "请勿前往地下车库"})
        assert replay.status_code == 200 and replay.json()["id"] == notice_id, "sent once, answered again"
        other = hub["east"].post(notices_path, json={"id": notice_id, "by": "x", "text_zh": "另一条"})
        assert other.status_code == 409
        assert len(hub["east"].get(notices_path).json()) == 1
        bad = hub["east"].post("/api/v1/incidents", json={"id": "no spaces", "by": "x", "kind": "fire", "title": "t"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "id"]

        again = hub["east"].post("/api/v1/incidents", json={"id": incident_id, "by": "district:wang", "kind": "flood",
                                                           "title": "锦江暴雨内涝"})  # fmt: skip
        assert again.status_code == 200 and again.json()["id"] == incident_id, "a replay is answered, not repeated"
        clash = hub["east"].post("/api/v1/incidents", json={"id": incident_id, "by": "x", "kind": "fire",
                                                           "title": "another"})  # fmt: skip
        assert clash.status_code == 409
        assert len(hub["east"].get("/api/v1/incidents").json()) == 1

        for community, household, status in (("east", "1栋101", "safe"), ("east", "1栋102", "needs-help"),
                                             ("west", "3栋301", "unreachable")):  # fmt: skip
            report = hub[community].post(f"/api/v1/incidents/{incident_id}/households",
                                         json={"by": "li-na", "household": household, "status": status})  # fmt: skip
            assert report.status_code in (200, 201), report.text
        board = office.get(f"/api/v1/declarations/{incident_id}").json()
        assert board["households"] == {"safe": 1, "needs-help": 1, "unreachable": 1, "households": 3, "verified": 0}
        assert {p["community"]: p["households"]["safe"] for p in board["parts"]} == {"east": 1, "west": 0}
        exported = office.get(f"/api/v1/declarations/{incident_id}/households.csv")
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(exported.text.removeprefix("\ufeff"))))
        assert rows[0][:3] == ["community", "household", "status"]
        assert [(r[0], r[1], r[2]) for r in rows[1:]] == [("east", "1栋101", "safe"), ("east", "1栋102", "needs-help"),
                                                          ("west", "3栋301", "unreachable")]  # fmt: skip

        printed = office.get(f"/api/v1/declarations/{incident_id}/summary.html")
        assert printed.status_code == 200 and printed.headers["content-type"].startswith("text/html")
        for text in ("跨社区突发事件情况报告", "锦江暴雨内涝", "请勿前往地下车库", "1栋102", "3栋301", "east", "west"):
            assert text in printed.text, text
        assert "1栋101" not in printed.text, "a safe household is counted, not listed"
        mine_printed = chunxi.get(f"/api/v1/declarations/{incident_id}/summary.html").text
        assert "1栋102" in mine_printed and "3栋301" not in mine_printed and "<td>west</td>" not in mine_printed

        mine = chunxi.get(f"/api/v1/declarations/{incident_id}").json()
        assert [p["community"] for p in mine["parts"]] == ["east"], "a sub-district sees its own communities' parts"
        assert mine["households"]["unreachable"] == 0
        chunxi_csv = chunxi.get(f"/api/v1/declarations/{incident_id}/households.csv").text
        assert "3栋301" not in chunxi_csv and "1栋101" in chunxi_csv
        listed = office.get("/api/v1/incidents", params={"active_only": "true"}).json()
        assert sorted((i["community"], i["id"]) for i in listed) == [("east", incident_id), ("west", incident_id)]
        for client in hub.values():
            client.close()
    finally:
        office.close()
        chunxi.close()


class HoldingProxy:
    """The hubs behind one address, ``/{community}/…`` forwarded to that community's hub (the node's
    ``--hub-url-template`` points here). ``hold_next(community, suffix)``: the next request there whose path ends
    with ``suffix`` reaches the hub, and the hub's answer is held until ``release`` — the hub has taken it, the node
    has not heard yet."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.held = threading.Event()
        self.release = threading.Event()
        self._hold: tuple[str, str] | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]

    def hold_next(self, community: str, suffix: str) -> None:
        self.held.clear()
        self.release.clear()
        self._hold = (community, suffix)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

            def _forward(self, method: str) -> None:
                community, _, rest = self.path.lstrip("/").partition("/")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k in ("Authorization", "Content-Type") if (v := self.headers.get(k))}
                try:
                    answer = httpx.request(method, f"http://127.0.0.1:{proxy.ports[community]}/{rest}", content=body,
                                           headers=headers, timeout=30)  # fmt: skip
                    status, content = answer.status_code, answer.content
                except httpx.TransportError:
                    status, content = 502, b""
                if proxy._hold is not None and proxy._hold[0] == community and f"/{rest}".endswith(proxy._hold[1]):
                    proxy._hold = None
                    proxy.held.set()
                    proxy.release.wait(60)
                with contextlib.suppress(OSError):  # the node may be gone: its answer goes nowhere
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: a failure shows the hubs' and the node's own logs."""

        return Forward

    def __enter__(self) -> "HoldingProxy":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_node_killed_mid_hand_over_declares_each_incident_once_when_it_is_back(city: dict[str, Any]) -> None:
    """The node is killed (SIGKILL) after a hub took an incident, or its notice, and before the node heard so. The
    declaration was recorded first; the node started again hands its parts over again under the same ids, and each
    hub holds the incident and its notice once."""
    ports: dict[str, int] = city["ports"]
    workers = (city["worker"]("w1"), city["worker"]("w2"))
    for community in ports:
        until(f"{community} is served", lambda c=community: serving(ports[c]), 60, workers)
    base = f"http://127.0.0.1:{city['node_port']}"
    bearer = {"Authorization": f"Bearer {city['token']}"}
    hub = {c: httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=30, headers=bearer) for c, p in ports.items()}
    with HoldingProxy(ports) as proxy, concurrent.futures.ThreadPoolExecutor(1) as pool:
        template = f"http://127.0.0.1:{proxy.port}/{{community}}"
        for held, title in (("/api/v1/incidents", "燃气管道泄漏"), ("/notices", "暴雨内涝")):
            proxy.hold_next("east", held)
            node = city["start_node"]("--hub-url-template", template)
            assert wait_port(city["node_port"], timeout_s=30), "the district node did not start"
            with contextlib.closing(_login(base, "wang")) as office:
                body = {"by": "wang", "kind": "flood", "title": title, "communities": ["east", "west"],
                        "notice_zh": f"{title}：请勿靠近"}  # fmt: skip
                declaring = pool.submit(office.post, "/api/v1/declarations", json=body)
                assert proxy.held.wait(60), f"east's hub was not asked ({held})"
                node.kill()
                proxy.release.set()
                with pytest.raises(httpx.TransportError):
                    declaring.result(timeout=60)  # the node died before it answered

            node = city["start_node"]("--hub-url-template", template)
            assert wait_port(city["node_port"], timeout_s=30), "the district node did not start again"
            with contextlib.closing(_login(base, "wang")) as office:
                [declaration] = [d for d in office.get("/api/v1/declarations").json() if d["title"] == title]
                incident_id = declaration["id"]
                until(f"{title}: every part declared after the restart",
                      lambda i=incident_id: _state(office, i)() == {"east": "declared", "west": "declared"}, 60,
                      (node,))  # fmt: skip
            for community, client in hub.items():
                incidents = [i["id"] for i in client.get("/api/v1/incidents").json() if i["title"] == title]
                assert incidents == [incident_id], f"{community}: declared once, under the district's id"
                notices = client.get(f"/api/v1/incidents/{incident_id}/notices").json()
                assert [n["text_zh"] for n in notices] == [f"{title}：请勿靠近"], f"{community}: the notice went once"
            node.stop(grace_s=30)
    for client in hub.values():
        client.close()
