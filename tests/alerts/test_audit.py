"""The alerts' audit log (issue 6): append-only, hash-chained, verified by ``anju-hub audit verify``."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

import pytest

from alerts import AlertService, AlertStore, WebhookReceiver
from alerts.silence import Silence, SilenceMatch
from alerts.sink import RunningSink
from alerts.sqldb import DatabaseError
from hub.cli import main
from hub.demo.postgres import Postgres
from tests.alerts.support import directory_for, event, wait_until

pytestmark = pytest.mark.anyio


async def handled_alert(path: Path, sink: RunningSink) -> None:
    """One alert opened, delivered, acknowledged and resolved: a few audit rows."""
    with AlertStore(path) as store:
        async with (
            WebhookReceiver() as receiver,
            AlertService(store=store, directory=directory_for(sink.url), receiver=receiver) as alerts,
        ):
            alert = await alerts.submit(event())
            assert alert is not None
            await wait_until(lambda: alerts.counters.notifications_sent_total == 1)
            await alerts.acknowledge(alert.id, by="zhang-wei", channel="app")
            await alerts.resolve(alert.id, by="zhang-wei", channel="app", note="关阀")


def tamper(path: Path, sql: str) -> None:
    """Change the file as someone with write access would: around the triggers."""
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER transitions_no_update")
        db.execute("DROP TRIGGER transitions_no_delete")
        db.execute(sql)


async def test_an_intact_log_verifies_and_the_cli_prints_its_head(
    sink: RunningSink, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "alerts.sqlite3"
    await handled_alert(path, sink)
    with AlertStore(path) as store:
        report = store.verify_audit()
        rows = store.transitions(store.list_alerts()[0].id)
    assert report.intact and report.chained == len(rows) == 4 and report.unchained == 0
    assert [t.channel for t in rows] == ["event", "webhook", "app", "app"]
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 0
    assert f"4 chained rows (0 from before the chain), head {report.head}" in capsys.readouterr().out


async def test_the_log_refuses_changes_through_sqlite(sink: RunningSink, tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    await handled_alert(path, sink)
    with sqlite3.connect(path) as db:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE transitions SET note = 'nothing happened' WHERE seq = 3")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM transitions WHERE seq = 3")


@pytest.mark.parametrize(
    ("sql", "seq", "why"),
    [
        ("UPDATE transitions SET by = 'someone-else' WHERE seq = 3", 3, "fields do not match"),
        ("DELETE FROM transitions WHERE seq = 2", 3, "link to the row before"),
        (
            "INSERT INTO transitions (alert_id, from_state, to_state, by, channel, time_ms, note, prev_hash, hash) "
            "SELECT alert_id, from_state, to_state, by, channel, time_ms, note, prev_hash, hash FROM transitions "
            "WHERE seq = 2",
            5,
            "link to the row before",
        ),
    ],
    ids=["changed", "removed", "replayed"],
)
async def test_a_changed_removed_or_replayed_row_breaks_the_chain_there(
    sink: RunningSink, tmp_path: Path, capsys: pytest.CaptureFixture[str], sql: str, seq: int, why: str
) -> None:
    path = tmp_path / "alerts.sqlite3"
    await handled_alert(path, sink)
    tamper(path, sql)
    with AlertStore(path) as store:
        report = store.verify_audit()
    assert (report.broken_at, report.intact) == (seq, False) and why in report.reason
    assert main(["audit", "verify", "--alerts", str(path)]) == 1
    assert f"BROKEN at row seq {seq}" in capsys.readouterr().err


def test_verify_without_a_database_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 2
    assert "no alert database" in capsys.readouterr().err


def _silence(n: int) -> Silence:
    return Silence(match=SilenceMatch(sensors=(f"s-{n}",)), starts_at_ms=0, ends_at_ms=3_600_000, created_by="wang",
                   created_ms=n, reason="探测器年检")  # fmt: skip


def test_on_postgresql_a_writer_keeps_the_chain_head_and_never_forks_the_chain(postgres_server: Postgres) -> None:
    """The store keeps the audit chain's head between its PostgreSQL transactions (one round trip less a write); a
    trigger refuses a row that does not follow the head, so another process appending meanwhile makes the stale
    writer's next write fail whole — and the one after it succeeds — instead of forking the chain."""
    schema = f"chain_{secrets.token_hex(4)}"
    with (
        AlertStore(postgres_server.url, schema=schema) as first,
        AlertStore(postgres_server.url, schema=schema) as second,
    ):
        first.add_silence(_silence(1))
        first.add_silence(_silence(2))  # from the head kept after the first write
        second.add_silence(_silence(3))  # another writer: the first one's head is stale now
        with pytest.raises(DatabaseError, match="the audit chain moved under this writer"):
            first.add_silence(_silence(4))
        assert {s.id for s in first.silences()} == {s.id for s in second.silences()}, "the refused write left nothing"
        first.add_silence(_silence(5))  # reads the head again
        report = first.verify_audit()
        assert report.intact and report.chained == 4, report
