"""Config push (``cmd/config``): a new ``edge.yaml`` from the hub, validated, applied atomically, tried, then kept
or rolled back.

The hub sends ``{"id": "<request id>", "config": "<the whole YAML text>"}`` (``edge.commands.ConfigPush``); the
answer goes out on ``reply/config`` with that id, and every outcome is logged with the running counts.

1. **Validate** with the file's own loader (``edge.config.parse_config_text``; relative paths against the
   file's directory), in a worker thread (a large push takes a second or more to parse on a Pi). A push may not
   change ``community``/``gateway`` (the gateway's identity: topics, client id, the hub's records), nor
   ``outbox``/``outbox_max_bytes`` (the outbox stays open across the restart); those need a person on the
   gateway. A refusal names the key and is answered at once; the agent runs on.
2. **Apply** (``ConfigFile.apply``) once the running agent has stopped, each step a write of ``edge.yaml.new``,
   fsync, ``os.replace``, fsync of the directory: the current file becomes ``edge.yaml.prev``, the marker
   ``edge.yaml.trial`` records the push id, the new text becomes ``edge.yaml``. A whole ``edge.yaml`` exists at
   every instant, whatever moment power is lost.
3. **Restart in-process**: the old agent stops (its session publishes offline, its bus closes) and a new one
   starts on the new config with the same open outbox and session number. Cursors and unacknowledged batches
   live in the outbox, so no detector sample is taken twice or lost; what the new agent republishes the hub
   drops as duplicates by (session, seq).
4. **Probation**: within ``PROBATION_S`` the new agent must have connected to the broker and heard some detector
   answer, without raising. Those two are what only a running config can prove (host, port, credentials, TLS
   files, serial device, baud rate); a single silent detector does not fail it. Then the marker goes and the
   push is answered ok. Otherwise the agent is stopped, ``edge.yaml.prev`` is put back atomically, the old
   config starts again, and the push is answered with the reason once that agent is connected.
5. A process that ends during a probation (crash, power cut, SIGTERM) finds the marker at its next start
   (``ConfigFile.recover``, called by ``anju-edge run`` before it reads the file) and puts ``edge.yaml.prev``
   back first: a restart always comes up on a config that has worked.

A push that arrives while the broker or every detector is unreachable is rolled back; the hub may push again.
"""

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from edge.agent import Agent, serve
from edge.commands import ConfigPush
from edge.config import ConfigError, EdgeConfig, parse_config_text
from edge.drivers.bus import describe
from edge.outbox import Outbox
from protocol.telemetry import Reply

__all__ = ["PROBATION_S", "ConfigFile", "Supervisor", "check_push"]

_log = logging.getLogger("edge.reconfigure")

PROBATION_S = 8.0
"""Seconds a pushed config has to connect to the broker and hear a detector. A broker on the LAN or over 4G
answers in well under that. It is also short enough that a trial with a dead bus plus the restart back stays
inside a detector's ring (``protocol.registers.RING_CAPACITY`` = 15 samples, 15 s at 1 Hz): nothing is missed."""
_CHECK_EVERY_S = 0.05
_IDENTITY = ("community", "gateway")
_OUTBOX = ("outbox", "outbox_max_bytes")


def check_push(push: ConfigPush, *, current: EdgeConfig, path: Path) -> EdgeConfig:
    """Blocking (a parse of up to 256 KiB): ``push`` as the config file at ``path`` would be read, and allowed to
    replace ``current``; raises ``ConfigError`` naming the key."""
    source = f"cmd/config id={push.id}"
    config = parse_config_text(push.text, base_dir=path.resolve().parent, source=source)
    for key in (*_IDENTITY, *_OUTBOX):
        new, old = getattr(config, key), getattr(current, key)
        if new != old:
            why = (
                "is the gateway's identity (topics, client id, the hub's records)"
                if key in _IDENTITY
                else "belongs to the open outbox"
            )
            reason = f"{why} and cannot change by a push (it is {str(old)!r}): change it on the gateway and restart"
            raise ConfigError(key=key, value=str(new), reason=reason, source=source)
    return config


class ConfigFile:
    """``edge.yaml`` and its siblings in the same directory: ``.new`` (staging for every atomic write), ``.prev``
    (the config before the last push) and ``.trial`` (present while a pushed config is on trial: its push id).

    Every method blocks on the disk (run them in a thread) and raises ``OSError``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.staging = path.with_name(path.name + ".new")
        self.previous = path.with_name(path.name + ".prev")
        self.trial = path.with_name(path.name + ".trial")

    def apply(self, text: str, push_id: str) -> None:
        """Make ``text`` the config, keeping the current file as ``.prev`` and marking the trial."""
        current = self.path.read_bytes()
        mode = self.path.stat().st_mode & 0o777
        self._replace(self.previous, current, mode)  # first: whenever the marker exists, .prev is what ran before
        self._replace(self.trial, push_id.encode("utf-8"), mode)
        self._replace(self.path, text.encode("utf-8"), mode)

    def keep(self) -> None:
        """The trial passed: the pushed config stays, ``.prev`` keeps the one before for a person to go back to."""
        self.trial.unlink(missing_ok=True)
        self._sync_directory()

    def restore(self) -> None:
        """Put ``.prev`` back as the config, atomically, and end the trial."""
        self._replace(self.path, self.previous.read_bytes(), self.previous.stat().st_mode & 0o777)
        self.trial.unlink(missing_ok=True)
        self._sync_directory()

    def recover(self) -> str | None:
        """At process start: roll back a trial that never ended; returns its push id, None when there was none."""
        try:
            push_id = self.trial.read_text(encoding="utf-8", errors="replace").strip() or "?"
        except FileNotFoundError:
            return None
        if self.previous.exists():
            self.restore()
        else:  # cannot happen through apply (it writes .prev first); a person removed it: keep what is there
            self.trial.unlink(missing_ok=True)
            self._sync_directory()
        return push_id

    def _replace(self, target: Path, data: bytes, mode: int) -> None:
        fd = os.open(self.staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(fd, mode)  # a staging file left by a crash may have another mode
            file.write(data)
            file.flush()
            os.fsync(fd)
        os.replace(self.staging, target)
        self._sync_directory()

    def _sync_directory(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class _Taken:
    """A push that passed validation and waits for the running agent to stop."""

    push_id: str
    text: str
    config: EdgeConfig


class Supervisor:
    """Runs the agent for ``anju-edge run`` until ``stop``, restarting it in-process on each pushed config.

    ``applied``, ``refused`` and ``rolled_back`` count the pushes of this process (bad payloads that never got to
    validation are the agent's ``commands_rejected``)."""

    def __init__(
        self, *, file: ConfigFile, config: EdgeConfig, outbox: Outbox, probation_s: float = PROBATION_S
    ) -> None:
        if not probation_s > 0:
            raise ValueError(f"probation_s must be > 0, got {probation_s!r}")
        self._file = file
        self._config = config
        self._outbox = outbox
        self._probation_s = probation_s
        self._agent_stop = asyncio.Event()
        self._taken: _Taken | None = None
        self._on_trial: str | None = None
        self._agents: list[Agent] = []
        self._restarted_at = time.monotonic()
        self.running = asyncio.Event()
        """Set once the first agent has been assembled (bus open, MQTT session made): ``READY=1`` for systemd."""
        self.applied = 0
        self.refused = 0
        self.rolled_back = 0

    async def run(self, stop: asyncio.Event) -> None:
        answer: Reply | None = None
        trial: _Taken | None = None
        previous = self._config
        while True:
            agents: list[Agent] = []
            self._agents = agents
            self._restarted_at = time.monotonic()
            self._agent_stop = asyncio.Event()
            self._taken = None
            task = asyncio.create_task(
                serve(self._config, self._outbox, self._agent_stop, on_config_push=self._take, on_agent=self._started),
                name="edge-agent",
            )
            forward = asyncio.create_task(self._forward(stop), name="edge-stop")
            try:
                if trial is not None:
                    self._on_trial = trial.push_id
                    failure = await self._probation(task, agents, stop)
                    self._on_trial = None
                    if stop.is_set():
                        _log.warning(
                            "stopped while config push %s was on trial: the next start goes back to %s",
                            trial.push_id,
                            self._file.previous,
                        )
                    elif failure is None:
                        await asyncio.to_thread(self._file.keep)
                        self.applied += 1
                        answer = self._outcome(trial.push_id, True, f"applied: {len(self._config.sensors)} sensors")
                    else:
                        await self._end(task)
                        await asyncio.to_thread(self._file.restore)
                        self._config = previous
                        self.rolled_back += 1
                        answer = self._outcome(trial.push_id, False, f"rolled back to the previous config: {failure}")
                        trial = None
                        continue
                    trial = None
                await self._run_out(task, agents, answer)
                answer = None
            finally:
                forward.cancel()
            taken = self._taken
            if stop.is_set() or taken is None:
                return
            try:
                await asyncio.to_thread(self._file.apply, taken.text, taken.push_id)
            except OSError as exc:
                self.rolled_back += 1
                answer = self._outcome(taken.push_id, False, f"not applied, {self._file.path} not written: {exc}")
                await asyncio.to_thread(self._undo_partial_apply)
                continue
            previous, self._config, trial = self._config, taken.config, taken
            _log.info("config push %s written to %s: starting the agent on it", taken.push_id, self._file.path)

    def _started(self, agent: Agent) -> None:
        self._agents.append(agent)
        self.running.set()

    def last_progress_s(self) -> float:
        """``time.monotonic()`` of the last sign of life: of the running agent's poll loop
        (``Agent.last_progress_s``), or the start of the latest restart of the agent for a pushed config."""
        agent = self._agents[0] if self._agents else None
        return max(self._restarted_at, agent.last_progress_s() if agent is not None else 0.0)

    async def _take(self, push: ConfigPush) -> str | None:
        """The agent's ``on_config_push`` hook: validate; when valid, stop the agent so the push can be applied."""
        busy = self._on_trial or (self._taken.push_id if self._taken is not None else None)
        if busy is not None:
            self.refused += 1
            return f"config push {busy} is being applied: send this one again after its answer"
        try:
            config = await asyncio.to_thread(check_push, push, current=self._config, path=self._file.path)
        except ConfigError as exc:
            self.refused += 1
            _log.warning("config push %s refused (%s): %s", push.id, self._counts(), exc)
            return str(exc)
        if self._taken is not None:  # another push was taken while this one was parsed
            self.refused += 1
            return f"config push {self._taken.push_id} is being applied: send this one again after its answer"
        self._taken = _Taken(push.id, push.text, config)
        _log.info("config push %s valid: stopping the agent to apply it", push.id)
        self._restarted_at = time.monotonic()
        self._agent_stop.set()
        return None

    async def _probation(self, task: "asyncio.Task[None]", agents: list[Agent], stop: asyncio.Event) -> str | None:
        """None once the agent on trial has both links; else why it failed within ``probation_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._probation_s
        while not stop.is_set():
            if task.done():
                error = None if task.cancelled() else task.exception()
                return f"the agent stopped while starting: {type(error).__name__}: {error}"
            agent = agents[0] if agents else None
            if agent is not None and agent.connects > 0 and agent.detectors_answering:
                return None
            if loop.time() >= deadline:
                missing = []
                if agent is None or agent.connects == 0:
                    missing.append(f"no connection to the broker {self._config.mqtt.host}:{self._config.mqtt.port}")
                if agent is None or not agent.detectors_answering:
                    missing.append(f"no detector answered on {describe(self._config.modbus)}")
                return f"{' and '.join(missing)} within {self._probation_s:g} s"
            await asyncio.wait({task}, timeout=_CHECK_EVERY_S)
        return "stopped"

    async def _end(self, task: "asyncio.Task[None]") -> None:
        """Stop the agent on trial and wait for it; what it raised is already the reason of the roll back."""
        self._restarted_at = time.monotonic()
        self._agent_stop.set()
        try:
            await task
        except Exception as exc:  # reported with the roll back; the old config starts next
            _log.debug("agent on trial ended with %r", exc)

    async def _run_out(self, task: "asyncio.Task[None]", agents: list[Agent], answer: Reply | None) -> None:
        """Wait for the agent to stop, answering a push through it once it is connected; re-raises its error."""
        while answer is not None and not task.done():
            if agents and agents[0].connects > 0:
                agents[0].answer(answer)
                answer = None
            else:
                await asyncio.wait({task}, timeout=_CHECK_EVERY_S)
        await task

    async def _forward(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._agent_stop.set()

    def _undo_partial_apply(self) -> None:
        """After a failed ``apply``: while the trial marker exists, ``.prev`` is the running config; put it back."""
        try:
            if self._file.trial.exists():
                self._file.restore()
        except OSError as exc:  # the marker stays: the next start restores .prev
            _log.error("could not put %s back after a failed write: %s", self._file.previous, exc)

    def _outcome(self, push_id: str, ok: bool, detail: str) -> Reply:
        log = _log.info if ok else _log.error
        log("config push %s %s (%s)", push_id, detail, self._counts())
        return Reply("config", ok, time.time(), detail, id=push_id)

    def _counts(self) -> str:
        return f"pushes applied={self.applied} refused={self.refused} rolled_back={self.rolled_back}"
