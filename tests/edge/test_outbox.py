from pathlib import Path
from typing import Any

import pytest

import edge.outbox
from edge.outbox import ROW_OVERHEAD_BYTES, Cursor, Entry, Outbox, Route
from protocol.senml import Batch, Reading, decode_batch, encode_batch
from protocol.session import Ack
from tests.vectors import senml_vectors

T0 = 1_764_400_000_000


@pytest.fixture(autouse=True)
def _sessions_from_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new outbox numbers sessions from the Unix time; here from 0, so the first session is 1."""
    monkeypatch.setattr(edge.outbox, "_unix_seconds", lambda: 0)


def test_a_new_outbox_never_reuses_a_replaced_cards_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway restarted three times, then its SD card replaced ten minutes later: the new card's first
    session is beyond every session of the old one, so the hub cannot take its batches for duplicates."""
    monkeypatch.setattr(edge.outbox, "_unix_seconds", lambda: 1_764_400_000)
    old_card = tmp_path / "card-1.sqlite3"
    sessions = []
    for _ in range(4):
        outbox = _open(old_card)
        sessions.append(outbox.session)
        outbox.close()
    assert sessions == [1_764_400_001, 1_764_400_002, 1_764_400_003, 1_764_400_004]
    monkeypatch.setattr(edge.outbox, "_unix_seconds", lambda: 1_764_400_600)
    assert _open(tmp_path / "card-2.sqlite3").session == 1_764_400_601


def _open(path: Path, max_bytes: int = 1 << 20) -> Outbox:
    return Outbox.open(path, community="hongxing", gateway="gw-b1", max_bytes=max_bytes)


def _entries(n: int, *, start: int = 0, alarm: bool = False, sensor: str = "gas-1") -> list[Entry]:
    return [Entry(Reading(sensor, T0 + (start + i) * 1000, float(start + i), "%LEL"), alarm) for i in range(n)]


def test_batch_accept_and_counts(tmp_path: Path) -> None:
    outbox = _open(tmp_path / "o.sqlite3")
    assert outbox.session == 1
    outbox.add(_entries(7), {"gas-1": Cursor(7, T0 + 6000)})
    first = outbox.next_batch(Route.DATA, limit=5)
    second = outbox.next_batch(Route.DATA, limit=5)
    assert first is not None and second is not None
    assert (first.batch.seq, len(first.batch.readings)) == (1, 5)
    assert (second.batch.seq, len(second.batch.readings)) == (2, 2)
    assert outbox.next_batch(Route.DATA, limit=5) is None
    decoded = decode_batch(encode_batch(first.batch), community="hongxing", gateway="gw-b1")
    assert decoded == first.batch
    assert outbox.unacked_count() == 2
    assert outbox.accept(Ack(1, 1)) == 5
    assert outbox.accept(Ack(99, 2)) == 0  # another session's ack changes nothing
    assert [b.batch.seq for b in outbox.unacked()] == [2]
    assert outbox.accept(Ack(1, 2)) == 2
    counters = outbox.counters()
    assert (counters.taken, counters.published, counters.acked, counters.dropped) == (7, 7, 7, 0)
    assert (counters.republished, counters.stored_readings, counters.stored_bytes) == (2, 0, 0)
    assert outbox.cursors() == {"gas-1": Cursor(7, T0 + 6000)}


def test_unacked_in_seq_order_with_routes(tmp_path: Path) -> None:
    outbox = _open(tmp_path / "o.sqlite3")
    outbox.add(_entries(3), {})
    outbox.add(_entries(1, start=3, alarm=True), {})
    data = outbox.next_batch(Route.DATA, limit=10)
    alarm = outbox.next_batch(Route.ALARM, limit=10)
    assert data is not None and alarm is not None
    assert (data.batch.seq, alarm.batch.seq) == (1, 2)  # one seq space for both topics
    again = list(outbox.unacked())
    assert [(b.route, b.batch.seq, len(b.batch.readings)) for b in again] == [
        (Route.DATA, 1, 3),
        (Route.ALARM, 2, 1),
    ]
    assert again[0].batch == data.batch


def test_new_session_rebatches_unacked(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    outbox = _open(path)
    outbox.add(_entries(6), {"gas-1": Cursor(6, T0 + 5000)})
    assert outbox.next_batch(Route.DATA, limit=3) is not None
    assert outbox.next_batch(Route.DATA, limit=3) is not None
    outbox.accept(Ack(1, 1))
    outbox.close()
    outbox = _open(path)
    assert outbox.session == 2
    assert outbox.unacked_count() == 0
    assert outbox.unsent_count() == 3
    rebatched = outbox.next_batch(Route.DATA, limit=10)
    assert rebatched is not None
    assert (rebatched.batch.session, rebatched.batch.seq) == (2, 1)
    assert [r.value for r in rebatched.batch.readings] == [3.0, 4.0, 5.0]
    assert outbox.accept(Ack(1, 2)) == 0  # the old session's ack no longer applies
    assert outbox.cursors() == {"gas-1": Cursor(6, T0 + 5000)}
    inspect = Outbox.open(path, community="hongxing", gateway="gw-b1", max_bytes=1 << 20, new_session=False)
    assert inspect.session == 2
    inspect.close()


def test_thinning_keeps_recent_history_whole_and_older_history_sparser(tmp_path: Path) -> None:
    """18 readings into room for 8: each pass thins the older half of what is unsent, one in two, so the
    newest readings stay whole and resolution decays with age instead of one block of history vanishing."""
    row = ROW_OVERHEAD_BYTES + len("gas-1") + len("%LEL")
    outbox = _open(tmp_path / "o.sqlite3", max_bytes=row * 8)
    assert [outbox.add(_entries(n, start=s), {}) for s, n in ((0, 8), (8, 4), (12, 4), (16, 2))] == [0, 4, 4, 2]
    kept = outbox.next_batch(Route.DATA, limit=100)
    assert kept is not None
    values = [r.value for r in kept.batch.readings]
    assert values == [9.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0]
    assert outbox.counters().dropped == 10


def test_byte_bound_drops_oldest_routine_never_alarms(tmp_path: Path) -> None:
    row = ROW_OVERHEAD_BYTES + len("gas-1") + len("%LEL")
    outbox = _open(tmp_path / "o.sqlite3", max_bytes=row * 10)
    outbox.add(_entries(3, alarm=True), {})
    outbox.add(_entries(5, start=3), {})
    assert outbox.next_batch(Route.DATA, limit=2) is not None  # readings 3, 4 in batch seq 1
    dropped = outbox.add(_entries(6, start=8), {})
    # 14 rows, room for 10: the older half of the never-sent routine readings (5-13) is thinned, one in two,
    # pass after pass (6, 8, then 7, 9): 10-13 stay whole. The published batch may already be at the hub, so
    # it is touched only when nothing unsent is left to thin.
    assert dropped == 4
    counters = outbox.counters()
    assert (counters.dropped, counters.stored_readings, counters.stored_bytes) == (4, 10, row * 10)
    alarms = outbox.next_batch(Route.ALARM, limit=10)
    assert alarms is not None and [r.value for r in alarms.batch.readings] == [0.0, 1.0, 2.0]
    [sent] = [b for b in outbox.unacked() if b.route is Route.DATA]
    assert [r.value for r in sent.batch.readings] == [3.0, 4.0]
    rest = outbox.next_batch(Route.DATA, limit=100)
    assert rest is not None and [r.value for r in rest.batch.readings] == [5.0, 10.0, 11.0, 12.0, 13.0]
    # 20 alarms: routine readings thin down to the newest of each handed-out batch; alarms all stay
    assert outbox.add(_entries(20, start=100, alarm=True), {}) == 5
    assert outbox.counters().dropped == 9
    assert outbox.unsent_count(Route.ALARM) == 20
    assert [len(b.batch.readings) for b in outbox.unacked()] == [1, 3, 1]


def test_batch_cut_by_time_span(tmp_path: Path) -> None:
    outbox = _open(tmp_path / "o.sqlite3")
    far = Entry(Reading("gas-1", T0 + 2 * 86_400_000, 1.0, "%LEL"))
    outbox.add([*_entries(2), far], {})
    first = outbox.next_batch(Route.DATA, limit=10)
    second = outbox.next_batch(Route.DATA, limit=10)
    assert first is not None and second is not None
    assert (len(first.batch.readings), len(second.batch.readings)) == (2, 1)


@pytest.mark.parametrize("vector", senml_vectors()["valid"], ids=lambda v: v["name"])
def test_golden_readings_leave_the_outbox_unchanged(tmp_path: Path, vector: dict[str, Any]) -> None:
    """Taken, batched and encoded as the agent publishes them (encode_batch), the golden readings decode back
    exactly, in order; the republished form of the batch is the same payload."""
    community, gateway, expected = vector["community"], vector["gateway"], vector["expect"]["readings"]
    outbox = Outbox.open(tmp_path / "o.sqlite3", community=community, gateway=gateway, max_bytes=1 << 20)
    try:
        outbox.add([Entry(Reading(*row)) for row in expected], {})
        item = outbox.next_batch(Route.DATA, limit=500)
        assert item is not None and outbox.next_batch(Route.DATA, limit=500) is None
        payload = encode_batch(item.batch)
        decoded = decode_batch(payload, community=community, gateway=gateway)
        assert isinstance(decoded, Batch)
        assert [list(r) for r in decoded.readings] == expected
        assert (decoded.session, decoded.seq) == (outbox.session, 1)
        [republished] = outbox.unacked()
        assert encode_batch(republished.batch) == payload
    finally:
        outbox.close()


def test_new_session_at_runtime_rebatches_every_unacked_reading(tmp_path: Path) -> None:
    """``cmd/rebirth``: the live outbox rolls over; acked readings stay gone, the rest go out again from seq 1."""
    path = tmp_path / "o.sqlite3"
    outbox = _open(path)
    outbox.add(_entries(6), {})
    outbox.add(_entries(1, start=6, alarm=True), {})
    for route in (Route.DATA, Route.DATA, Route.ALARM):
        assert outbox.next_batch(route, limit=3) is not None  # seq 1, 2 (data), 3 (alarm)
    outbox.accept(Ack(1, 1))
    assert outbox.new_session() == 4  # readings 3..5 of seq 2 and the alarm of seq 3
    assert (outbox.session, outbox.unacked_count(), outbox.unsent_count()) == (2, 0, 4)
    assert outbox.accept(Ack(1, 3)) == 0  # the old session's acks no longer apply
    alarm = outbox.next_batch(Route.ALARM, limit=10)
    data = outbox.next_batch(Route.DATA, limit=10)
    assert alarm is not None and data is not None
    assert [(b.batch.session, b.batch.seq) for b in (alarm, data)] == [(2, 1), (2, 2)]
    assert [r.value for r in data.batch.readings] == [3.0, 4.0, 5.0]
    assert outbox.new_session() == 4 and outbox.session == 3
    outbox.close()
    assert _open(path).session == 4  # persisted


def test_health_snapshot_and_oldest_reading(tmp_path: Path) -> None:
    outbox = _open(tmp_path / "o.sqlite3")
    assert outbox.health() == {} and outbox.oldest_time_ms() is None
    outbox.add(_entries(3, start=5), {})
    assert outbox.oldest_time_ms() == T0 + 5000
    outbox.save_health({"cpu_s": 1.5, "reconnects": 2.0})
    outbox.save_health({"cpu_s": 2.5})
    assert outbox.health() == {"cpu_s": 2.5}
