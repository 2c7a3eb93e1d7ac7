"""Hub workers on a shard map (issue 8, scale-out), as real processes on a real PostgreSQL and Mosquitto.

Two communities, east and west, and two workers: w1 owns east and stands by for west, w2 the other way round
(``anju-hub worker``, hub/worker.py). Each worker runs one ``anju-hub serve`` per community; the lease in PostgreSQL
decides which of the two hubs of a community runs it. The tests kill a worker as a power cut would, take a lease
from under a running hub, kill a worker alone (its hubs must not outlive it), and stop one gracefully.
"""

import asyncio
import os
import queue
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import httpx
import psycopg
import pytest

from firmware_sim.load_plan import LoadOptions, render_deployment
from hub.demo.processes import Child, Line, free_port
from hub.shards import load_shard_map
from hub.shards_proxy import nginx_config
from hub.zygote import forked_hubs, zygote_of
from protocol.topics import Channel, topic
from tests.conftest import listening, require_service
from tests.hub.test_ingest_shards import _acked, _batch

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
LEASE_TERM_S = 6.0
"""Short, so the test is short: the takeover bound it checks is the issue's 30 s."""
TAKEOVER_BOUND_S = 30.0
STANDBY_DELAY_S = 2.0
COMMUNITIES = ("east", "west")


@dataclass(frozen=True, slots=True)
class Fleet:
    shard_map: Path
    database_file: Path
    url: str
    mqtt_port: int
    ports: dict[str, int]
    gateways: dict[str, tuple[str, str]]
    """community → (its gateway, that gateway's sensor)."""


@pytest.fixture
def fleet(tmp_path: Path, database_url: str, mosquitto: int) -> Fleet:
    ports = {community: free_port() for community in COMMUNITIES}
    gateways = {}
    lines = ["version: 1", f"standby_delay_s: {STANDBY_DELAY_S}", "communities:"]
    for community, workers in zip(COMMUNITIES, ("[w1, w2]", "[w2, w1]"), strict=True):
        options = LoadOptions(community=community, gateways=1, sensors_per_gateway=1, kinds=("gas",))
        (tmp_path / f"{community}.yaml").write_text(render_deployment(options), encoding="utf-8")
        ((gateway, ((sensor, _),)),) = [(g, options.sensors(g)) for g in options.gateway_ids()]
        gateways[community] = (gateway, sensor)
        lines.append(f"  {community}: {{deployment: {community}.yaml, data_dir: data/{community}, "
                     f"http_port: {ports[community]}, workers: {workers}}}")  # fmt: skip
    shard_map = tmp_path / "shards.yaml"
    shard_map.write_text("\n".join(lines) + "\n", encoding="utf-8")
    database_file = tmp_path / "alerts-database.url"
    database_file.write_text(database_url + "\n", encoding="utf-8")
    database_file.chmod(0o600)
    return Fleet(shard_map, database_file, database_url, mosquitto, ports, gateways)


@pytest.fixture
def start(fleet: Fleet) -> Iterator[Callable[..., Child]]:
    """Start a worker by name (and extra flags); every worker started is stopped (its process group) at the end."""
    started: list[Child] = []

    def worker(name: str, *extra: str) -> Child:
        argv = [
            sys.executable, "-m", "hub", "--log-level", "info", "worker", "--shard-map", str(fleet.shard_map),
            "--name", name, "--alerts-database-file", str(fleet.database_file), "--mqtt-port", str(fleet.mqtt_port),
            "--lease-term", str(LEASE_TERM_S), *extra,
        ]  # fmt: skip
        child = Child(name, argv, queue.Queue[Line](), cwd=REPO).start()
        started.append(child)
        return child

    yield worker
    for child in started:
        child.stop(grace_s=30)


def holders(url: str) -> dict[str, tuple[str, int]]:
    """community → (holder, epoch) of the leases held now (their term not run out on the server's clock)."""
    with psycopg.connect(url) as db:
        try:
            rows = db.execute("SELECT community, holder, epoch FROM anju.leases WHERE expires_at > now()").fetchall()
        except psycopg.errors.UndefinedTable:  # no hub has looked at a lease yet
            return {}
    return {community: (holder, epoch) for community, holder, epoch in rows}


def serving(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def until(what: str, check: Callable[[], bool], timeout_s: float, workers: tuple[Child, ...] = ()) -> float:
    """Seconds until ``check()`` holds; fails after ``timeout_s`` with the workers' last log lines."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if check():
            return time.monotonic() - began
        time.sleep(0.2)
    logs = []
    for child in workers:
        while not child.lines.empty():
            logs.append(f"{child.name}: {child.lines.get_nowait().text}")
    pytest.fail(f"not within {timeout_s:.0f} s: {what}\n" + "\n".join(logs[-60:]))


def acknowledged(fleet: Fleet, community: str, seq: int) -> None:
    """Publish one batch of ``community``'s gateway as it would and wait for its hub-ack: a hub runs it."""
    gateway, sensor = fleet.gateways[community]

    async def exchange() -> None:
        async with aiomqtt.Client("127.0.0.1", fleet.mqtt_port, identifier=f"test-{gateway}-{seq}") as client:
            await client.subscribe(topic(community, gateway, Channel.ACK), qos=1)
            await client.publish(
                topic(community, gateway, Channel.DATA), _batch(community, gateway, sensor, seq), qos=1
            )
            await _acked(client, {topic(community, gateway, Channel.ACK): seq}, timeout_s=20)

    asyncio.run(exchange())


def log_text(child: Child, seen: list[str] | None = None) -> str:
    """The worker's log so far (``seen`` keeps what earlier calls read)."""
    seen = [] if seen is None else seen
    while not child.lines.empty():
        seen.append(child.lines.get_nowait().text)
    return "\n".join(seen)


def hub_pids(worker: Child) -> list[int]:
    assert worker.process is not None
    return forked_hubs(worker.process.pid)


def test_workers_run_their_own_communities_and_take_over_a_dead_ones(fleet: Fleet, start: Callable[..., Child]) -> None:
    w1, w2 = start("w1"), start("w2")
    expected = {"east": ("w1:east", 1), "west": ("w2:west", 1)}
    until("each community on its owner", lambda: holders(fleet.url) == expected, 60, (w1, w2))
    until("both communities' APIs", lambda: all(serving(port) for port in fleet.ports.values()), 30, (w1, w2))
    for community in COMMUNITIES:
        acknowledged(fleet, community, 1)
    w1_log: list[str] = []
    until("w1's status", lambda: "worker w1: running east; standby for west" in log_text(w1, w1_log), 10)

    w1.kill()  # the machine of w1 is gone: the worker and its hubs at once, no lease released
    took = until(
        "w2 runs east", lambda: holders(fleet.url).get("east") == ("w2:east", 2) and serving(fleet.ports["east"]),
        TAKEOVER_BOUND_S + 5, (w2,),
    )  # fmt: skip
    assert took <= TAKEOVER_BOUND_S, f"east taken over in {took:.1f} s"
    acknowledged(fleet, "east", 2)
    assert holders(fleet.url)["west"] == ("w2:west", 1), "the surviving worker's own community ran on"

    # A lease taken from under a running hub: it leaves (status 75) and its worker starts it again as a standby,
    # which takes the community back once the other holder's term runs out.
    with psycopg.connect(fleet.url, autocommit=True) as db:
        db.execute("UPDATE anju.leases SET holder = 'elsewhere', epoch = epoch + 1, "
                   "expires_at = now() + interval '3 seconds' WHERE community = 'west'")  # fmt: skip
    until("w2 runs west again", lambda: holders(fleet.url).get("west") == ("w2:west", 3), 40, (w2,))
    until("west's API again", lambda: serving(fleet.ports["west"]), 30, (w2,))
    acknowledged(fleet, "west", 2)
    assert holders(fleet.url)["east"] == ("w2:east", 2), "the other community of the worker was not disturbed"

    assert w2.process is not None
    os.kill(w2.process.pid, signal.SIGTERM)  # the worker alone: it stops its hubs, which release their leases
    assert w2.process.wait(timeout=45) == 0
    assert holders(fleet.url) == {}, "a graceful stop releases every lease"
    assert not any(serving(port) for port in fleet.ports.values())
    text = log_text(w2)
    assert "community west: its hub lost the lease; starting it again as a standby" in text, text[-3000:]


def test_a_standby_takes_a_community_whose_owner_never_came_and_hubs_never_outlive_their_worker(
    fleet: Fleet, start: Callable[..., Child]
) -> None:
    w1 = start("w1")
    expected = {"east": ("w1:east", 1), "west": ("w1:west", 1)}
    took = until("w1 runs both", lambda: holders(fleet.url) == expected, 60, (w1,))
    assert took >= STANDBY_DELAY_S, "a standby waits its delay before it takes a free lease"
    until("both APIs", lambda: all(serving(port) for port in fleet.ports.values()), 30, (w1,))
    assert w1.process is not None
    os.kill(w1.process.pid, signal.SIGKILL)  # the worker alone: the kernel tells its hubs (PR_SET_PDEATHSIG)
    until("the hubs stopped and released", lambda: holders(fleet.url) == {}, 30, (w1,))
    until("the APIs closed", lambda: not any(serving(port) for port in fleet.ports.values()), 10, (w1,))


def test_a_worker_whose_zygote_dies_stops_and_its_hubs_release_their_leases(
    fleet: Fleet, start: Callable[..., Child]
) -> None:
    w1 = start("w1")
    until("w1 runs both", lambda: holders(fleet.url) == {"east": ("w1:east", 1), "west": ("w1:west", 1)}, 60, (w1,))
    until("both APIs", lambda: all(serving(port) for port in fleet.ports.values()), 30, (w1,))
    assert w1.process is not None
    zygote = zygote_of(w1.process.pid)
    assert zygote is not None
    os.kill(zygote, signal.SIGKILL)
    assert w1.process.wait(timeout=45) == 1, "a worker that cannot start hubs any more exits for its unit to restart"
    assert "w1: its hub zygote exited; stopping so that the worker is started again" in log_text(w1)
    until("the hubs stopped and released", lambda: holders(fleet.url) == {}, 30)
    assert not any(serving(port) for port in fleet.ports.values())


def test_a_hub_that_stops_answering_its_watchdog_is_killed_and_started_again(
    fleet: Fleet, start: Callable[..., Child]
) -> None:
    w1 = start("w1", "--hub-watchdog", "3")
    until("w1 runs both", lambda: holders(fleet.url) == {"east": ("w1:east", 1), "west": ("w1:west", 1)}, 60, (w1,))
    until("both APIs", lambda: all(serving(port) for port in fleet.ports.values()), 30, (w1,))
    time.sleep(4)  # past one watchdog period of pings: a healthy hub is left alone
    before = hub_pids(w1)
    assert len(before) == 2
    east = next(pid for pid in before if "w1:east" in Path(f"/proc/{pid}/cmdline").read_text(encoding="utf-8"))
    os.kill(east, signal.SIGSTOP)  # east's hub is frozen: no pings, its API hangs, its lease is not renewed
    until("east's hub replaced", lambda: east not in hub_pids(w1) and len(hub_pids(w1)) == 2, 20, (w1,))
    until("east run again", lambda: holders(fleet.url).get("east") == ("w1:east", 2) and serving(fleet.ports["east"]),
          40, (w1,))  # fmt: skip
    assert holders(fleet.url)["west"] == ("w1:west", 1), "the worker's other hub was left alone"
    assert f"community east: its hub (pid {east}) stopped answering its watchdog; killed" in log_text(w1)


NGINX_MAIN = """\
{user}worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/anju.conf;
}}
"""


@pytest.fixture
def nginx(fleet: Fleet, tmp_path: Path) -> Iterator[int]:
    """A real nginx (Debian's package) on 127.0.0.1 running what ``anju-hub shards proxy`` renders for the fleet,
    with w1's hubs on 127.0.0.2 and w2's on 127.0.0.3 (the shard map's ``hosts``: two machines on one loopback)."""
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    require_service("nginx", binary)
    assert binary is not None
    with fleet.shard_map.open("a", encoding="utf-8") as shard_map:
        shard_map.write("hosts: {w1: 127.0.0.2, w2: 127.0.0.3}\n")
    port = free_port()
    directory = tmp_path / "nginx"
    directory.mkdir()
    conf = directory / "anju.conf"
    conf.write_text(nginx_config(load_shard_map(fleet.shard_map), domain="anju.test", listen=f"127.0.0.1:{port}"))
    main = directory / "nginx.conf"
    main.write_text(NGINX_MAIN.format(dir=directory, user="user root;\n" if os.geteuid() == 0 else ""))
    child = Child("nginx", [binary, "-p", str(directory), "-c", str(main), "-g", "daemon off;"], queue.Queue())
    with listening(child, port, problem=lambda: (directory / "error.log").read_text(errors="replace")[-2000:]):
        yield port


def through(port: int, community: str) -> int:
    """The status of ``/api/v1/health`` asked of the proxy for ``{community}.anju.test`` (0: no answer)."""
    try:
        url = f"http://127.0.0.1:{port}/api/v1/health"
        return httpx.get(url, headers={"Host": f"{community}.anju.test"}, timeout=5).status_code
    except httpx.TransportError:
        return 0


def test_a_proxy_keeps_each_community_at_one_address_through_a_takeover(
    fleet: Fleet, nginx: int, start: Callable[..., Child]
) -> None:
    w1, w2 = start("w1"), start("w2")
    until("each community on its owner", lambda: holders(fleet.url) == {"east": ("w1:east", 1), "west": ("w2:west",
          1)}, 60, (w1, w2))  # fmt: skip
    until("both through the proxy", lambda: through(nginx, "east") == through(nginx, "west") == 200, 30, (w1, w2))
    assert not serving(fleet.ports["east"]), "the hubs listen on their worker's host, not on 127.0.0.1"
    assert through(nginx, "north") == 404, "a name that is no community's"

    w1.kill()
    took = until("east through the proxy on w2", lambda: holders(fleet.url).get("east") == ("w2:east", 2)
                 and through(nginx, "east") == 200, TAKEOVER_BOUND_S + 5, (w2,))  # fmt: skip
    assert took <= TAKEOVER_BOUND_S
    assert through(nginx, "west") == 200


def test_a_hub_that_cannot_start_is_started_again_with_a_back_off(fleet: Fleet, start: Callable[..., Child]) -> None:
    blocker = socket.create_server(("127.0.0.1", fleet.ports["east"]))  # east's port is taken by something else
    try:
        w1 = start("w1")
        seen: list[str] = []
        try:
            until("two failed starts", lambda: log_text(w1, seen).count("community east: its hub exited") >= 2, 120)
        except pytest.fail.Exception:
            pytest.fail("not within 120 s: two failed starts; the worker said:\n" + "\n".join(seen[-80:]))
        text = log_text(w1, seen)
        assert "starting again in 1 s" in text and "starting again in 2 s" in text, "the back-off doubles"
    finally:
        blocker.close()
    until("east served once its port is free", lambda: serving(fleet.ports["east"]), 60, (w1,))
    assert serving(fleet.ports["west"]), "west, on the same worker, ran on meanwhile"
