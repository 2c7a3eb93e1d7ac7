"""Which (gateway, session, seq) messages are already committed, and what to hub-ack.

Every session's seq starts at 1 (protocol/senml.py). The ledger keeps, per (gateway, session), the highest
contiguous seq committed — the only number an ack may carry, since the gateway deletes everything up to it
— plus the seqs committed above a gap, so a replayed message is recognised as a duplicate. Marks are
persisted with the readings, so the ack position survives a hub restart; seqs above a gap are not (their
replay is caught by the store's idempotent writes instead).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from hub.store.base import SessionMark

__all__ = ["SessionLedger"]

_MAX_ABOVE_GAP = 100_000
"""Bound on remembered seqs above a gap per session, so a gateway sending garbage seqs cannot grow memory."""


@dataclass(slots=True)
class _Session:
    contiguous: int = 0
    above: set[int] = field(default_factory=set)


class SessionLedger:
    def __init__(self, marks: list[SessionMark] | None = None) -> None:
        self._sessions: dict[tuple[str, int], _Session] = {}
        for mark in marks or []:
            self._sessions[(mark.gateway, mark.session)] = _Session(contiguous=mark.acked_seq)

    def is_duplicate(self, gateway: str, session: int, seq: int) -> bool:
        state = self._sessions.get((gateway, session))
        return state is not None and (seq <= state.contiguous or seq in state.above)

    def knows(self, gateway: str, session: int) -> bool:
        """True when any message of this session was committed (now or before a restart)."""
        return (gateway, session) in self._sessions

    def gap_before(self, gateway: str, session: int, seq: int) -> bool:
        """True when ``seq`` arrives while an earlier seq of its session is still missing."""
        state = self._sessions.get((gateway, session))
        return seq > (state.contiguous if state else 0) + 1

    def record(self, gateway: str, session: int, seq: int) -> None:
        state = self._sessions.setdefault((gateway, session), _Session())
        if seq <= state.contiguous:
            return
        if len(state.above) < _MAX_ABOVE_GAP:
            state.above.add(seq)
        while state.contiguous + 1 in state.above:
            state.contiguous += 1
            state.above.discard(state.contiguous)

    def snapshot(self, sessions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, frozenset[int]] | None]:
        """The state of ``sessions`` now, for ``restore`` if what is recorded next is not committed after all."""
        saved: dict[tuple[str, int], tuple[int, frozenset[int]] | None] = {}
        for key in sessions:
            state = self._sessions.get(key)
            saved[key] = None if state is None else (state.contiguous, frozenset(state.above))
        return saved

    def restore(self, saved: dict[tuple[str, int], tuple[int, frozenset[int]] | None]) -> None:
        for key, value in saved.items():
            if value is None:
                self._sessions.pop(key, None)
            else:
                self._sessions[key] = _Session(contiguous=value[0], above=set(value[1]))

    def acked(self, gateway: str, session: int) -> int:
        state = self._sessions.get((gateway, session))
        return state.contiguous if state else 0

    def mark(self, gateway: str, session: int) -> SessionMark:
        return SessionMark(gateway, session, self.acked(gateway, session))
