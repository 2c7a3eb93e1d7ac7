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
``bench hub_workers``). The price is memory: ``bench worker_takeover`` measured a hub running its community at
about 105 MB resident and a standby at about 47 MB (the interpreter and the imports), which bounds the communities
of one machine (docs/scale-out.md).

The hubs stop with the worker. On SIGTERM the worker stops them gracefully (each releases its lease, so a standby
elsewhere takes it at its next poll); if the worker itself is killed, the kernel sends each hub SIGTERM too
(``PR_SET_PDEATHSIG``), so no hub outlives its worker unsupervised.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hub.lease import LEASE_LOST_EXIT
from hub.shards import Assignment, ShardMap
from hub.worker_notify import HubNotifications
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

_PR_SET_PDEATHSIG = 1


def child_environment(environment: Mapping[str, str], settings: Mapping[str, object]) -> dict[str, str]:
    """The environment of a worker's hub: the worker's, without systemd's notification variables, with the worker's
    flags as ``ANJU_*`` variables (HubSettings reads them; a flag's value wins over the worker's environment)."""
    child = {name: value for name, value in environment.items() if name not in _SYSTEMD_VARIABLES}
    for name, value in settings.items():
        child[f"ANJU_{name.upper()}"] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return child


def seat_argv(worker: str, assignment: Assignment, log_level: str, host: str | None = None) -> list[str]:
    """The command line of ``worker``'s hub for ``assignment``'s community (listening on ``host`` if given)."""
    shard = assignment.shard
    return [
        sys.executable, "-m", "hub", "--log-level", log_level, "serve",
        "--config", str(shard.deployment), "--data-dir", str(shard.data_dir),
        *(("--http-host", host.strip("[]")) if host else ()),
        "--http-port", str(shard.http_port), "--lease-holder", f"{worker}:{assignment.community}",
    ]  # fmt: skip


_prctl = ctypes.CDLL(None, use_errno=True).prctl
"""libc's prctl, looked up here in the worker: the forked child before exec must not load libraries (another thread
of the worker may hold the loader's lock at the fork)."""


def _die_with(worker_pid: int) -> None:  # pragma: no cover - runs in the child between fork and exec
    """In the forked hub before exec: ask the kernel for SIGTERM when the worker dies. The signal follows the thread
    that forked, the event loop's, which lives as long as the worker."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != worker_pid:  # the worker died before prctl took effect
        os._exit(1)


@dataclass(slots=True)
class Seat:
    """One community of this worker: its hub process, started again whenever it exits or stops answering, until the
    worker stops."""

    assignment: Assignment
    argv: list[str]
    env: dict[str, str]
    first_delay_s: float
    watchdog_s: float = HUB_WATCHDOG_S
    on_status: Callable[[], None] = lambda: None
    process: asyncio.subprocess.Process | None = None
    notifications: HubNotifications | None = None

    @property
    def status(self) -> str:
        return self.notifications.status if self.notifications is not None else "not started"

    async def keep(self, stopping: asyncio.Event) -> None:
        """Run the hub, and again after it exits (at once after a lost lease, else after a back-off), until
        ``stopping``; then stop it gracefully."""
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
                    self.process = await asyncio.create_subprocess_exec(
                        *self.argv, env=env, preexec_fn=functools.partial(_die_with, os.getpid())
                    )
                except OSError as exc:  # no memory, no process slots left: as a crash, tried again after a back-off
                    log.error("community %s: its hub could not be started: %s", community, exc)
                    code = -1
                else:
                    notifications.expect(self.process.pid)
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

    async def _exit_or_stop(self, process: asyncio.subprocess.Process, stopping: asyncio.Event) -> int:
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


async def run_worker(worker: str, all_seats: Sequence[Seat]) -> None:
    """Keep every seat's hub running until SIGTERM or SIGINT, then stop them all."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    owned = [s.assignment.community for s in all_seats if s.assignment.rank == 0]
    standby = [s.assignment.community for s in all_seats if s.assignment.rank > 0]
    log.info("worker %s: owns %s; stands by for %s", worker, ", ".join(owned) or "none", ", ".join(standby) or "none")

    def report_status() -> None:
        status = worker_status(worker, all_seats)
        log.info("%s", status)
        notify(f"STATUS={status}")

    for seat in all_seats:
        seat.on_status = report_status
    keepers = [asyncio.create_task(s.keep(stopping), name=f"seat-{s.assignment.community}") for s in all_seats]
    notify(f"READY=1\nSTATUS={worker_status(worker, all_seats)}")
    watchdog = asyncio.create_task(watchdog_forever(), name="worker-watchdog")
    try:
        await stopping.wait()
        notify("STOPPING=1")
        log.info("worker %s: stopping its hubs", worker)
    finally:
        stopping.set()
        await asyncio.gather(*keepers, return_exceptions=True)
        watchdog.cancel()
        log.info("worker %s: stopped", worker)
