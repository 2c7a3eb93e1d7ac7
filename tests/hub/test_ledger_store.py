from pathlib import Path

from hub.ingest.ledger import SessionLedger
from hub.store.base import DeadLetter, ReadingColumns, SessionMark, StoredReading
from hub.store.chunks import ChunkStore


def test_ack_is_the_highest_contiguous_seq() -> None:
    ledger = SessionLedger()
    assert ledger.acked("gw", 1) == 0
    ledger.record("gw", 1, 1)
    ledger.record("gw", 1, 2)
    assert ledger.acked("gw", 1) == 2
    assert ledger.gap_before("gw", 1, 4)
    ledger.record("gw", 1, 4)
    assert ledger.acked("gw", 1) == 2, "seq 3 is missing: acking 4 would let the gateway delete 3"
    assert ledger.is_duplicate("gw", 1, 4) and not ledger.is_duplicate("gw", 1, 3)
    ledger.record("gw", 1, 3)
    assert ledger.acked("gw", 1) == 4
    assert ledger.acked("gw", 2) == 0 and not ledger.is_duplicate("gw", 2, 1)


def test_marks_restore_the_ack_position() -> None:
    ledger = SessionLedger([SessionMark("gw", 3, 17)])
    assert ledger.is_duplicate("gw", 3, 17) and not ledger.is_duplicate("gw", 3, 18)
    ledger.record("gw", 3, 18)
    assert ledger.mark("gw", 3) == SessionMark("gw", 3, 18)


def test_store_writes_are_idempotent_and_atomic(tmp_path: Path) -> None:
    store = ChunkStore(path=tmp_path / "r.anju")
    rows = [StoredReading("gas-1", 1_000 + i, float(i), "gw") for i in range(5)]
    dead = [DeadLetter(1, "anju/v1/c/g/data", "malformed_json", "not JSON", b"\xff{")]
    assert store.commit(ReadingColumns.of(rows), dead, [SessionMark("gw", 1, 2)]) == 5
    more = ReadingColumns.of([*rows[3:], StoredReading("gas-1", 2_000, 9.0, "gw")])
    assert store.commit(more, [], [SessionMark("gw", 1, 1)]) == 1
    assert store.count_readings() == 6
    assert [r.value for r in store.readings("gas-1", 1_001, 1_004, 100)] == [1.0, 2.0, 3.0]
    assert store.readings("gas-1", 0, 10_000, 2) == rows[:2]
    assert store.session_marks() == [SessionMark("gw", 1, 2)], "a mark never moves backwards"
    assert store.dead_letters(10)[0].payload == b"\xff{"
    store.close()
    reopened = ChunkStore(path=tmp_path / "r.anju")
    assert reopened.count_readings() == 6
    reopened.close()
