"""Warm starts for a worker's hubs: one process imports the hub once, and forks each community's hub from itself.

A worker (hub/worker.py) runs a hub process per community. Started by exec, every one of them loaded the interpreter
and the hub's modules on its own: ``bench worker_takeover`` measured about 105 MB resident for a hub running its
community and 47 MB for a standby, most of it the same imported code in every process. That bounded the communities
of one machine (docs/scale-out.md). The zygote imports the modules ``anju-hub serve`` needs (``PRELOAD``), freezes them
out of the garbage collector's reach (``gc.freeze``: a collection would otherwise write to every object's header and
unshare its page), and then forks a hub for each request. Its hubs share those pages with it, copy on write, so a
community costs what its hub writes: its own state.

Each hub is still its own process: a crash, a lost lease (status 75) or a kill stays that community's, and the worker
restarts it as before. The worker talks to the zygote over a ``SOCK_SEQPACKET`` socket pair, one JSON object a
message:

- the zygote says ``{"ready": pid, "modules": n}`` once it has imported what it preloads;
- the worker asks ``{"id": n, "args": [...], "env": {...}}``: run ``anju-hub`` with ``args``, in the environment
  ``env`` (nothing of the zygote's own environment is kept);
- the zygote answers ``{"id": n, "pid": p}`` with a pidfd of the hub attached (``SCM_RIGHTS``), through which the
  worker signals it (never another process that reused the pid), or ``{"id": n, "error": "..."}``;
- when a hub exits, the zygote, its parent, reaps it and says ``{"exited": p, "status": s}`` (status as
  ``asyncio.subprocess.Process.returncode``: negative for a signal).

The zygote exits when the worker closes its end; it and its hubs ask the kernel for SIGTERM when their parent dies
(``PR_SET_PDEATHSIG``), so a killed worker leaves no hub running unsupervised. Linux only (pidfds: Linux 5.3).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import ctypes
import functools
import gc
import importlib
import json
import logging
import os
import selectors
import shlex
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import setproctitle

__all__ = ["PRELOAD", "ForkedHub", "Zygote", "ZygoteGone", "children", "die_with", "forked_hubs", "zygote_of"]

log = logging.getLogger("anju.hub.zygote")

PRELOAD = ("hub.cli", "hub.api", "hub.runtime", "uvicorn", "uvicorn.protocols.http.h11_impl", "psycopg")
"""What ``anju-hub serve`` imports before it serves (the rest each hub imports itself, into its own pages)."""
MESSAGE_BYTES = 64 * 1024
"""The largest message either side sends: a hub's environment and arguments (a datagram must also fit the socket's
send buffer, ~208 KiB by default)."""
READY_TIMEOUT_S = 120.0
"""How long the zygote may take to import what it preloads (seconds; ~1.5 s on a Raspberry Pi 4)."""
_PR_SET_PDEATHSIG = 1


class ZygoteGone(OSError):
    """The zygote exited (or never became ready): no hub can be started through it."""


_prctl = ctypes.CDLL(None, use_errno=True).prctl
"""libc's prctl, looked up at import: a forked child must not load libraries (in a process with threads, such as the
worker, another thread may hold the loader's lock at the fork)."""


def die_with(parent: int) -> None:  # pragma: no cover - runs in a forked child
    """In a forked child: ask the kernel for SIGTERM when ``parent`` dies (the signal follows the thread that forked,
    which lives as long as its process here), and exit at once if it already has."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


# -- the zygote process ----------------------------------------------------------------------------------------------


def _send(control: socket.socket, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    socket.send_fds(control, [json.dumps(message).encode()], list(fds))


def serve(control: socket.socket) -> int:
    """The zygote's loop: preload, then fork a hub per request and report each hub's exit, until the worker closes
    ``control``."""
    # One BLAS thread per hub (numpy is preloaded): a worker runs many hubs, and the zygote must fork single-threaded.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    for name in PRELOAD:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
    os.close(os.pidfd_open(os.getpid()))  # no pidfds (Linux < 5.3, a seccomp filter): fail now, saying so
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so that the wakeup fd hears it
    # A signal to the whole process group (Ctrl-C, a group SIGTERM) must not end the zygote before its hubs: the
    # worker stops them, and the zygote reaps them. It leaves when the worker closes its end (or dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threads = len(os.listdir("/proc/self/task"))
    _send(control, {"ready": os.getpid(), "modules": len(sys.modules), "threads": threads})
    with selectors.DefaultSelector() as selector:
        selector.register(control, selectors.EVENT_READ)
        selector.register(wake_r, selectors.EVENT_READ)
        private = (wake_r, wake_w, selector.fileno())
        while True:
            for key, _ in selector.select():
                if key.fileobj is control:
                    data, _, flags, _ = control.recvmsg(MESSAGE_BYTES)
                    if not data:
                        return 0  # the worker closed its end (or died): the hubs follow by PR_SET_PDEATHSIG
                    _take_request(control, data, flags, private)
                else:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    _reap(control)


def _take_request(control: socket.socket, data: bytes, flags: int, private: Sequence[int]) -> None:
    """One request of the worker: a hub to fork, or one to kill. A bad request is answered, never fatal: every
    community's hub depends on this loop."""
    try:
        if flags & socket.MSG_TRUNC:
            raise ValueError(f"a request longer than {MESSAGE_BYTES} bytes")
        request = json.loads(data)
        if "kill" in request:
            # Only a child not yet reaped can be named: its pid cannot have been reused.
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(request["kill"]), signal.SIGKILL)
            return
        number, args, env = int(request["id"]), list(request["args"]), dict(request["env"])
    except (ValueError, KeyError, TypeError) as exc:
        _send(control, {"error": f"bad request: {exc}"})
        return
    _fork_hub(control, number, args, env, private)


def _fork_hub(
    control: socket.socket, number: int, args: list[str], env: dict[str, str], private: Sequence[int]
) -> None:
    zygote = os.getpid()
    try:
        pid = os.fork()
    except OSError as exc:  # no memory, no process slots left
        _send(control, {"id": number, "error": f"fork: {exc}"})
        return
    if pid == 0:
        _run_hub(zygote, args, env, control, private)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:
        os.kill(pid, signal.SIGKILL)  # a hub the worker could not signal must not run; reaped as any other
        _send(control, {"id": number, "error": f"pidfd_open: {exc}"})
        return
    try:
        _send(control, {"id": number, "pid": pid}, [pidfd])
    finally:
        os.close(pidfd)


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(control, {"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def _run_hub(
    zygote: int, args: list[str], env: dict[str, str], control: socket.socket, private: Sequence[int]
) -> NoReturn:
    """In the forked child: become the hub ``anju-hub *args`` in ``env``, and exit with its status."""
    code = 1
    try:
        die_with(zygote)  # first: the zygote may die at any moment, and its pid is taken before the fork
        control.close()
        signal.set_wakeup_fd(-1)
        for fd in private:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.argv = ["anju-hub", *args]
        # `ps` names the hub's community, not the zygote; before the environment changes, whose memory it takes
        setproctitle.setproctitle(shlex.join(sys.argv))
        os.environ.clear()
        os.environ.update(env)
        from hub.cli import main

        code = main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def zygote_of(worker_pid: int) -> int | None:
    """The pid of a worker's zygote, or None (read from /proc: for tools and tests that watch a worker)."""
    for child in children(worker_pid):
        with contextlib.suppress(OSError):
            if b"hub.zygote" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
    return None


def forked_hubs(worker_pid: int) -> list[int]:
    """The pids of the hubs a worker's zygote runs now (read from /proc, as ``zygote_of``)."""
    zygote = zygote_of(worker_pid)
    return [] if zygote is None else children(zygote)


def children(pid: int) -> list[int]:
    """The pids of a process's children now (/proc; none when it is gone)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii").split()]
    except OSError:
        return []


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hub.zygote FD``: serve the worker on the inherited socket ``FD``."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1 or not args[0].isdigit():
        sys.stderr.write("usage: python -m hub.zygote FD (started by anju-hub worker, not by hand)\n")
        return 2
    with socket.socket(fileno=int(args[0])) as control:
        return serve(control)


# -- the worker's side -----------------------------------------------------------------------------------------------


class ForkedHub:
    """A hub the zygote forked: the parts of ``asyncio.subprocess.Process`` the worker uses."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @property
    def returncode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    async def wait(self) -> int:
        """The hub's exit status, once the zygote has reaped it (-1: the zygote died first, the status is unknown)."""
        return await asyncio.shield(self._exit)

    def send_signal(self, signum: int) -> None:
        """Signal the hub through its pidfd; ProcessLookupError once it has exited."""
        if self._exit.done():
            raise ProcessLookupError(self.pid)
        signal.pidfd_send_signal(self._pidfd, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def watch_orphaned(self) -> None:
        """The zygote died: learn of the hub's end from its pidfd (readable once it has exited), status unknown."""
        if self._exit.done():
            return
        loop = asyncio.get_running_loop()

        def ended() -> None:
            loop.remove_reader(self._pidfd)
            self._exited(-1)

        loop.add_reader(self._pidfd, ended)

    def _exited(self, status: int) -> None:
        if not self._exit.done():
            self._exit.set_result(status)
            os.close(self._pidfd)


class Zygote:
    """The worker's zygote process and its socket. ``async with Zygote(env) as zygote``: started and ready (or
    :class:`ZygoteGone`); ``await zygote.spawn(args, env)`` forks a hub; ``zygote.gone`` is set if the zygote exits
    while in use (its hubs, told by the kernel, stop; each one's ``wait`` returns once it has)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self._socket: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[ForkedHub]] = {}
        self._started_hooks: dict[int, Callable[[int], None]] = {}
        self._hubs: dict[int, ForkedHub] = {}
        self._ready: asyncio.Future[int] | None = None
        self.gone = asyncio.Event()
        self.pid: int | None = None

    async def __aenter__(self) -> Zygote:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self._socket = ours
        self._ready = loop.create_future()
        try:
            try:
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "hub.zygote", str(theirs.fileno()),
                    env=self._env, pass_fds=(theirs.fileno(),), preexec_fn=functools.partial(die_with, os.getpid()),
                )  # fmt: skip
            finally:
                theirs.close()
            loop.add_reader(ours, self._read)
            async with asyncio.timeout(READY_TIMEOUT_S):
                self.pid = await self._ready
        except (TimeoutError, OSError) as exc:  # ZygoteGone is an OSError
            await self._close()
            raise ZygoteGone(f"the hub zygote did not become ready: {str(exc) or 'timed out'}") from None
        except BaseException:
            await self._close()
            raise
        log.info("hub zygote ready (pid %d): hubs start warm", self.pid)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def spawn(
        self, args: Sequence[str], env: Mapping[str, str], *, started: Callable[[int], None] = lambda pid: None
    ) -> ForkedHub:
        """Fork a hub running ``anju-hub *args`` in ``env``; ``started(pid)`` is called as soon as its pid is known,
        before any other message is read (the worker then takes the hub's notifications from that pid). Raises
        :class:`ZygoteGone` when the zygote is gone, ValueError for a request over ``MESSAGE_BYTES``, and OSError when
        it could not fork."""
        if self._socket is None or self.gone.is_set():
            raise ZygoteGone("the hub zygote has exited")
        self._next_id += 1
        number = self._next_id
        request = json.dumps({"id": number, "args": list(args), "env": dict(env)}).encode()
        if len(request) > MESSAGE_BYTES:
            raise ValueError(f"a hub's arguments and environment take {len(request)} bytes; at most {MESSAGE_BYTES}")
        reply: asyncio.Future[ForkedHub] = asyncio.get_running_loop().create_future()
        self._pending[number] = reply
        self._started_hooks[number] = started
        try:
            self._socket.send(request)
            return await reply
        finally:
            self._pending.pop(number, None)
            self._started_hooks.pop(number, None)

    def _read(self) -> None:
        assert self._socket is not None
        while True:
            try:
                data, ancillary, flags, _ = self._socket.recvmsg(
                    MESSAGE_BYTES, socket.CMSG_SPACE(4), socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                return
            except OSError as exc:
                self._lost(f"its socket failed: {exc}")
                return
            if not data:
                self._lost("it exited")
                return
            fds = [
                fd
                for level, kind, payload in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                for fd in array.array("i", payload[: len(payload) - len(payload) % 4])
            ]
            self._take(json.loads(data), fds, truncated=bool(flags & socket.MSG_CTRUNC))

    def _take(self, message: dict[str, Any], fds: list[int], *, truncated: bool = False) -> None:
        if "ready" in message and self._ready is not None and not self._ready.done():
            if message.get("threads", 1) > 1:  # a library started a thread at import: a fork copies only one
                log.warning("hub zygote: %d threads after its imports; its hubs may hang", message["threads"])
            self._ready.set_result(int(message["ready"]))
        elif "exited" in message:
            hub = self._hubs.pop(int(message["exited"]), None)
            if hub is not None:
                hub._exited(int(message["status"]))
        elif "pid" in message:
            self._started(int(message["id"]), int(message["pid"]), fds[0] if fds else None, truncated)
            fds = fds[1:]
        elif "id" in message:
            reply = self._pending.get(int(message["id"]))
            if reply is not None and not reply.done():
                reply.set_exception(OSError(message.get("error", "the zygote did not start the hub")))
        else:
            log.error("hub zygote: %s", message.get("error", message))
        for fd in fds:
            os.close(fd)

    def _started(self, number: int, pid: int, pidfd: int | None, truncated: bool) -> None:
        """A hub was forked. One that nobody waits for any more (the seat was cancelled), or whose pidfd did not
        arrive (the worker at its limit of open files), is killed: a second hub of its community would follow."""
        reply = self._pending.get(number)
        if pidfd is None:
            assert self._socket is not None
            self._socket.send(json.dumps({"kill": pid}).encode())  # the zygote has not reaped it: the pid is its own
            if reply is not None and not reply.done():
                why = "its pidfd was not received" + (" (too many open files?)" if truncated else "")
                reply.set_exception(OSError(f"the hub (pid {pid}) was killed: {why}"))
            return
        hub = ForkedHub(pid, pidfd)
        self._hubs[pid] = hub
        if reply is None or reply.done():
            hub.kill()
            return
        hook = self._started_hooks.get(number)
        if hook is not None:
            hook(pid)
        reply.set_result(hub)

    def _lost(self, why: str) -> None:
        """The zygote is gone: no hub can start, and its hubs stop (the kernel sends each SIGTERM); each one's exit
        is then seen on its pidfd, with the status unknown (-1)."""
        if self.gone.is_set():
            return
        self.gone.set()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ZygoteGone(why))
        else:
            log.error("hub zygote: %s; its hubs stop with it", why)
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(ZygoteGone(f"the hub zygote {why}"))
        for hub in self._hubs.values():
            hub.watch_orphaned()
        self._hubs.clear()
        if self._socket is not None:
            asyncio.get_running_loop().remove_reader(self._socket)

    async def _close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._socket)
            self._socket.close()
            self._socket = None
        self.gone.set()
        if self._process is not None:
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                await self._process.wait()


if __name__ == "__main__":
    raise SystemExit(main())
