"""A hub worker (issue 8, scale-out): one service that runs every community the shard map gives it.

``anju-hub worker --shard-map shards.yaml --name hub-1`` starts one ``anju-hub serve`` process per community that
names ``hub-1`` in the shard map (hub/shards.py), each with that community's deployment, data directory and HTTP
port, and with the lease holder ``hub-1:{community}``. Every one of them waits for its community's lease in
PostgreSQL (hub/lease.py): where ``hub-1`` is the owner it takes the lease at once; where it is a standby, only after
``standby_delay_s`` per rank at start, and then whenever the holder's term runs out — so when a worker dies, the
others take its communities over within the lease's bound, each community on its first standby that is alive.

Why a process per community rather than all communities in one: each community keeps the hub's tested fault
model. A hub that loses its lease leaves at once (status 75) and this worker starts it again as a standby, without
stopping the worker's other communities; a community whose hub crashes is started again with a back-off while the
others run on; and the communities of one worker use every core (one Python process is held to one by its GIL,
``bench hub_workers``). The price was memory, the interpreter and the imports in every hub, which bounded the
communities of one machine (docs/scale-out.md): so the hubs are forked from a zygote that imported the hub once
(hub/zygote.py) and share those pages with it.

The hubs stop with the worker. On SIGTERM the worker stops them gracefully (each releases its lease, so a standby
elsewhere takes it at its next poll); if the worker itself is killed, the kernel sends the zygote SIGTERM, and the
zygote's death sends each hub SIGTERM (``PR_SET_PDEATHSIG``), so no hub outlives its worker unsupervised. A zygote
that dies while the worker runs stops the worker (status 1), for its unit to start it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hub.lease import LEASE_LOST_EXIT
from hub.shards import Assignment, ShardMap
from hub.worker_notify import HubNotifications
from hub.zygote import ForkedHub, Zygote, ZygoteGone
from systemd_notify import notify, watchdog_forever

__all__ = ["Seat", "child_environment", "run_worker", "seat_argv"]

log = logging.getLogger("anju.hub.worker")

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
"""A hub that exits for another reason than a lost lease is started again after a back-off that doubles from
``BACKOFF_MIN_S`` to this, so a community whose configuration is broken does not spin the machine."""
HEALTHY_RUN_S = 60.0
"""A hub that ran this long before it exited is started again after the shortest back-off."""
STOP_TIMEOUT_S = 20.0
"""How long the hubs get to stop gracefully (their own stop takes ~3 s) before they are killed."""
HUB_WATCHDOG_S = 30.0
"""A hub that said READY and then sends nothing (no ``WATCHDOG=1``) for this long is stuck: the worker kills it and
starts it again, as systemd does with the hub unit's ``WatchdogSec=30``."""
HUB_START_TIMEOUT_S = 120.0
"""How long a hub may take from its start to ``READY=1`` (the unit's ``TimeoutStartSec=120``)."""

_SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
"""The worker's own systemd protocol: its hubs must not speak it (they would report the worker READY, or feed its
watchdog while it hangs)."""


def child_environment(environment: Mapping[str, str], settings: Mapping[str, object]) -> dict[str, str]:
    """The environment of a worker's hub: the worker's, without systemd's notification variables, with the worker's
    flags as ``ANJU_*`` variables (HubSettings reads them; a flag's value wins over the worker's environment)."""
    child = {name: value for name, value in environment.items() if name not in _SYSTEMD_VARIABLES}
    for name, value in settings.items():
        child[f"ANJU_{name.upper()}"] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return child


def seat_argv(worker: str, assignment: Assignment, log_level: str, host: str | None = None) -> list[str]:
    """The ``anju-hub`` arguments of ``worker``'s hub for ``assignment``'s community (listening on ``host`` if
    given)."""
    shard = assignment.shard
    return [
        "--log-level", log_level, "serve",
        "--config", str(shard.deployment), "--data-dir", str(shard.data_dir),
        *(("--http-host", host.strip("[]")) if host else ()),
        "--http-port", str(shard.http_port), "--lease-holder", f"{worker}:{assignment.community}",
    ]  # fmt: skip


@dataclass(slots=True)
class Seat:
    """One community of this worker: its hub process, started again whenever it exits or stops answering, until the
    worker stops."""

    assignment: Assignment
    argv: list[str]
    """The hub's ``anju-hub`` arguments."""
    env: dict[str, str]
    first_delay_s: float
    watchdog_s: float = HUB_WATCHDOG_S
    on_status: Callable[[], None] = lambda: None
    process: ForkedHub | None = None
    notifications: HubNotifications | None = None

    @property
    def status(self) -> str:
        return self.notifications.status if self.notifications is not None else "not started"

    async def keep(self, stopping: asyncio.Event, zygote: Zygote) -> None:
        """Run the hub (forked by ``zygote``), and again after it exits (at once after a lost lease, else after a
        back-off), until ``stopping``; then stop it gracefully."""
        community = self.assignment.community
        backoff = BACKOFF_MIN_S
        delay = self.first_delay_s
        self.notifications = notifications = HubNotifications(community, self.on_status)
        notifications.listen()
        env = {**self.env, "NOTIFY_SOCKET": notifications.address, "WATCHDOG_USEC": str(int(self.watchdog_s * 1e6))}
        try:
            while not await _wait(stopping, delay):
                started = time.monotonic()
                try:
                    self.process = await zygote.spawn(self.argv, env, started=notifications.expect)
                except ZygoteGone:
                    return  # the worker stops (run_worker)
                except OSError as exc:  # no memory, no process slots left: as a crash, tried again after a back-off
                    log.error("community %s: its hub could not be started: %s", community, exc)
                    code = -1
                else:
                    pid, role = self.process.pid, self.assignment.role
                    log.info("community %s: hub started (pid %d, %s)", community, pid, role)
                    code = await self._exit_or_stop(self.process, stopping)
                if stopping.is_set():
                    return
                if code == LEASE_LOST_EXIT:
                    log.warning("community %s: its hub lost the lease; starting it again as a standby", community)
                    delay = 0.0
                    continue
                if time.monotonic() - started >= HEALTHY_RUN_S:
                    backoff = BACKOFF_MIN_S
                delay, backoff = backoff, min(backoff * 2, BACKOFF_MAX_S)
                log.error("community %s: its hub exited (status %d); starting again in %.0f s", community, code, delay)
        finally:
            notifications.close()

    async def _exit_or_stop(self, process: ForkedHub, stopping: asyncio.Event) -> int:
        """The hub's exit status. If ``stopping`` comes first: SIGTERM, and SIGKILL after ``STOP_TIMEOUT_S``; if the
        hub stops answering first (no watchdog ping): SIGKILL at once."""
        community = self.assignment.community
        exited = asyncio.ensure_future(process.wait())
        stop = asyncio.ensure_future(stopping.wait())
        stuck = asyncio.ensure_future(self._stuck())
        try:
            await asyncio.wait((exited, stop, stuck), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            stuck.cancel()
        if exited.done():
            return exited.result()
        if not stopping.is_set():
            log.error("community %s: its hub (pid %d) stopped answering its watchdog; killed", community, process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return await exited
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(exited), STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("community %s: its hub did not stop in %.0f s; killed", community, STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        return await exited

    async def _stuck(self) -> None:
        """Return once the hub has sent nothing for longer than its watchdog (or its start timeout)."""
        assert self.notifications is not None
        while True:
            left = self.notifications.starved_for(self.watchdog_s, HUB_START_TIMEOUT_S)
            if left <= 0:
                return
            await asyncio.sleep(min(left, 1.0))


async def _wait(event: asyncio.Event, timeout_s: float) -> bool:
    """Whether ``event`` is set within ``timeout_s``."""
    if timeout_s <= 0:
        return event.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)
    return event.is_set()


def seats(
    worker: str,
    shards: ShardMap,
    settings: Mapping[str, object],
    log_level: str,
    environment: Mapping[str, str],
    *,
    watchdog_s: float = HUB_WATCHDOG_S,
) -> list[Seat]:
    """The seats of ``worker``: one per community of the shard map that names it."""
    env = child_environment(environment, settings)
    return [
        Seat(
            assignment,
            seat_argv(worker, assignment, log_level, shards.hosts.get(worker)),
            env,
            shards.standby_delay_s * assignment.rank,
            watchdog_s=watchdog_s,
        )
        for assignment in shards.assignments(worker)
    ]


def worker_status(worker: str, all_seats: Sequence[Seat]) -> str:
    """One line for ``systemctl status``: the communities this worker runs now and those it stands by for."""
    running = [s.assignment.community for s in all_seats if s.status.startswith("running")]
    waiting = [s.assignment.community for s in all_seats if not s.status.startswith("running")]
    return f"worker {worker}: running {', '.join(running) or 'none'}; standby for {', '.join(waiting) or 'none'}"


async def run_worker(worker: str, all_seats: Sequence[Seat], zygote_env: Mapping[str, str]) -> int:
    """Keep every seat's hub running until SIGTERM or SIGINT, then stop them all: 0. The hubs are forked by a zygote
    started in ``zygote_env`` (hub/zygote.py); if it cannot start, or exits while the worker runs, the worker stops
    with 1 (its unit restarts it; the hubs died with the zygote, and standbys elsewhere take their communities)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    owned = [s.assignment.community for s in all_seats if s.assignment.rank == 0]
    standby = [s.assignment.community for s in all_seats if s.assignment.rank > 0]
    log.info("worker %s: owns %s; stands by for %s", worker, ", ".join(owned) or "none", ", ".join(standby) or "none")
    try:
        zygote = await Zygote(zygote_env).__aenter__()
    except ZygoteGone as exc:
        log.error("worker %s: %s", worker, exc)
        return 1

    def report_status() -> None:
        status = worker_status(worker, all_seats)
        log.info("%s", status)
        notify(f"STATUS={status}")

    for seat in all_seats:
        seat.on_status = report_status
    keepers = [asyncio.create_task(s.keep(stopping, zygote), name=f"seat-{s.assignment.community}") for s in all_seats]
    notify(f"READY=1\nSTATUS={worker_status(worker, all_seats)}")
    watchdog = asyncio.create_task(watchdog_forever(), name="worker-watchdog")
    zygote_gone = asyncio.create_task(zygote.gone.wait(), name="worker-zygote")
    stop = asyncio.create_task(stopping.wait(), name="worker-stop")
    failed = False
    try:
        await asyncio.wait((stop, zygote_gone), return_when=asyncio.FIRST_COMPLETED)
        failed = zygote_gone.done() and not stopping.is_set()
        if failed:
            log.error("worker %s: its hub zygote exited; stopping so that the worker is started again", worker)
        notify("STOPPING=1")
        log.info("worker %s: stopping its hubs", worker)
    finally:
        stopping.set()
        await asyncio.gather(*keepers, return_exceptions=True)
        await zygote.__aexit__(None, None, None)
        zygote_gone.cancel()
        stop.cancel()
        watchdog.cancel()
        log.info("worker %s: stopped", worker)
    return 1 if failed else 0
