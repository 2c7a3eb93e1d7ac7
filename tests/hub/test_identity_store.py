"""The identity store on each engine (``identity_engine``: a SQLite file, then a schema of a real PostgreSQL): users,
sessions and their tokens, API tokens, and the append-only, hash-chained audit log — the same answers from both."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts import AlertStore
from hub.identity import ApiToken, IdentityStore, Role, User
from hub.identity.store import DuplicateError, TokenKind
from tests.hub.identity_support import identity_target, open_identity_database, open_identity_store

pytestmark = pytest.mark.usefixtures("identity_engine")

T0 = 1_790_000_000_000
MINUTE_MS = 60_000
HASH = "$argon2id$v=19$m=65536,t=3,p=4$not-a-real-hash"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IdentityStore]:
    with open_identity_store(tmp_path / "identity.sqlite3") as opened:
        yield opened


def add(store: IdentityStore, name: str, role: Role = Role.COMMUNITY_COMMITTEE, *, now_ms: int = T0) -> None:
    store.add_user(name, role, None, HASH, by="cli:root", client="cli", now_ms=now_ms)


def login(store: IdentityStore, name: str, session_id: str, *, now_ms: int = T0) -> None:
    """A bearer session of ``name`` whose access token is ``a-{session_id}`` and refresh token ``r-{session_id}``."""
    user = store.user(name)
    assert user is not None
    store.start_session(
        user,
        session_id=session_id,
        mode="bearer",
        tokens=[
            (f"a-{session_id}", "access", now_ms + 15 * MINUTE_MS),
            (f"r-{session_id}", "refresh", now_ms + 60 * MINUTE_MS),
        ],
        expires_ms=now_ms + 60 * MINUTE_MS,
        csrf_hash=None,
        client="192.0.2.7",
        now_ms=now_ms,
    )


def test_users_are_listed_by_code_point_and_a_taken_name_changes_nothing(store: IdentityStore) -> None:
    for name in ("王", "zhang", "li", "Li"):
        add(store, name)
    with pytest.raises(DuplicateError) as caught:
        add(store, "li", Role.ADMIN)
    assert caught.value.name == "li"
    assert [u.name for u in store.users()] == ["Li", "li", "zhang", "王"]
    li = store.user("li")
    assert li is not None and li.role is Role.COMMUNITY_COMMITTEE and not li.disabled and li.failed_logins == 0
    assert [e.event for e in store.audit()] == ["user.created"] * 4, "the refused insert left no audit row"
    assert store.verify_audit().intact


def test_sessions_tokens_rotation_and_reuse(store: IdentityStore) -> None:
    add(store, "li")
    login(store, "li", "s1")
    found = store.credential("a-s1", now_ms=T0 + 1)
    assert found is not None and (found.name, found.session_id, found.kind) == ("li", "s1", "access")
    assert store.credential("r-s1", now_ms=T0 + 1) is None, "a refresh token only refreshes"
    assert store.credential("a-s1", now_ms=T0 + 15 * MINUTE_MS) is None, "expired"

    fresh: list[tuple[str, TokenKind, int]] = [("a2-s1", "access", T0 + 30 * MINUTE_MS),
                                               ("r2-s1", "refresh", T0 + 60 * MINUTE_MS)]  # fmt: skip
    assert store.rotate("r-s1", new_tokens=fresh, client="192.0.2.7", now_ms=T0 + MINUTE_MS) == "rotated"
    assert store.credential("a-s1", now_ms=T0 + MINUTE_MS) is None, "the old access token went with the rotation"
    assert store.credential("a2-s1", now_ms=T0 + MINUTE_MS) is not None
    assert store.refresh_owner("r-s1") == "li"
    assert store.rotate("r-s1", new_tokens=fresh, client="198.51.100.9", now_ms=T0 + 2 * MINUTE_MS) == "reused"
    assert store.credential("a2-s1", now_ms=T0 + 2 * MINUTE_MS) is None, "reuse revoked the session"
    assert store.rotate("r2-s1", new_tokens=[], client="192.0.2.7", now_ms=T0 + 3 * MINUTE_MS) == "invalid"
    assert store.rotate("unknown", new_tokens=[], client="192.0.2.7", now_ms=T0) == "invalid"

    login(store, "li", "s2", now_ms=T0 + 4 * MINUTE_MS)
    login(store, "li", "s3", now_ms=T0 + 4 * MINUTE_MS)
    assert store.end_sessions("li", session_id="s2", by="li", client="192.0.2.7", now_ms=T0 + 5 * MINUTE_MS) == 1
    assert store.end_sessions("li", session_id=None, by="li", client="192.0.2.7", now_ms=T0 + 5 * MINUTE_MS) == 1
    assert store.credential("a-s3", now_ms=T0 + 5 * MINUTE_MS) is None
    events = [e.event for e in reversed(store.audit())]
    assert events == ["user.created", "login.success", "session.reuse", "login.success", "login.success", "logout",
                      "logout.all"]  # fmt: skip
    assert "1 sessions revoked" in store.audit(limit=1)[0].detail


def test_failures_lock_and_a_password_change_or_disabling_ends_sessions(store: IdentityStore) -> None:
    add(store, "li")
    user = store.user("li")

    def fail(user: User | None, name: str, now_ms: int) -> int | None:
        return store.record_failure(user, name, client="192.0.2.7", now_ms=now_ms, max_failures=3,
                                    lockout_ms=5 * MINUTE_MS)  # fmt: skip

    assert [fail(user, "li", T0 + i) for i in range(3)] == [None, None, T0 + 2 + 5 * MINUTE_MS]
    assert fail(None, "nobody", T0) is None
    locked = store.user("li")
    assert locked is not None and locked.locked_until_ms == T0 + 2 + 5 * MINUTE_MS and locked.failed_logins == 0

    login(store, "li", "s1")
    changed = store.change_user("li", by="cli:root", client="cli", now_ms=T0 + 1, password_hash=HASH + "2")
    assert changed is not None and changed.locked_until_ms is None and changed.password_hash == HASH + "2"
    assert store.credential("a-s1", now_ms=T0 + 2) is None
    login(store, "li", "s2")
    changed = store.change_user("li", by="cli:root", client="cli", now_ms=T0 + 3, role=(Role.VOLUNTEER, "liu-yang"))
    assert changed is not None and changed.role is Role.VOLUNTEER and changed.person == "liu-yang"
    assert store.credential("a-s2", now_ms=T0 + 4) is not None, "a role change keeps the session"
    disabled = store.change_user("li", by="cli:root", client="cli", now_ms=T0 + 5, disabled=True)
    assert disabled is not None and disabled.disabled
    assert store.credential("a-s2", now_ms=T0 + 6) is None
    assert store.change_user("nobody", by="cli:root", client="cli", now_ms=T0, disabled=True) is None
    events = [e.event for e in reversed(store.audit())]
    assert events == ["user.created", "login.failure", "login.failure", "login.failure", "login.locked",
                      "login.failure", "login.success", "user.password", "login.success", "user.role",
                      "user.disabled"]  # fmt: skip
    assert store.verify_audit().chained == len(events)


def test_api_tokens_are_listed_in_creation_order_revoked_once_and_names_are_unique(store: IdentityStore) -> None:
    def token(token_id: str, name: str, created_ms: int) -> ApiToken:
        return ApiToken(token_id, name, Role.COMMUNITY_COMMITTEE, None, "admin", created_ms, None, None, None)

    store.add_api_token(token("t2", "dashboard", T0), "hash-2", client="cli")
    store.add_api_token(token("t1", "sms-bridge", T0), "hash-1", client="cli")
    store.add_api_token(token("t0", "report", T0 + 1), "hash-0", client="cli")
    with pytest.raises(DuplicateError):
        store.add_api_token(token("t9", "dashboard", T0 + 2), "hash-9", client="cli")
    assert [t.id for t in store.api_tokens()] == ["t1", "t2", "t0"]
    found = store.credential("hash-1", now_ms=T0)
    assert found is not None and (found.name, found.kind, found.session_id) == ("token:sms-bridge", "api", None)
    revoked = store.revoke_api_token("t1", by="admin", client="cli", now_ms=T0 + 5)
    assert revoked is not None and (revoked.revoked_ms, revoked.revoked_by) == (T0 + 5, "admin")
    assert store.revoke_api_token("t1", by="admin", client="cli", now_ms=T0 + 6) is None
    assert store.credential("hash-1", now_ms=T0 + 7) is None


def test_the_audit_pages_newest_first_and_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "identity.sqlite3"
    with open_identity_store(path) as store:
        for i in range(7):
            add(store, f"user-{i}", now_ms=T0 + i)
        head = store.verify_audit().head
    with open_identity_store(path) as store:
        first = store.audit(limit=3)
        second = store.audit(before_seq=first[-1].seq, limit=3)
        rest = store.audit(before_seq=second[-1].seq, limit=100)
        assert [e.subject for e in first + second + rest] == [f"user-{i}" for i in reversed(range(7))]
        assert (first[0].time_ms, first[0].actor, first[0].client) == (T0 + 6, "cli:root", "cli")
        add(store, "user-7")
        report = store.verify_audit()
    assert report.intact and report.chained == 8 and report.head != head


def test_the_audit_refuses_update_and_delete(store: IdentityStore, tmp_path: Path, identity_engine: str) -> None:
    add(store, "li")
    refused: type[Exception] = sqlite3.IntegrityError
    if identity_engine == "postgresql":
        import psycopg

        refused = psycopg.errors.RaiseException
    database = open_identity_database(tmp_path / "identity.sqlite3")
    try:
        for sql in ("UPDATE identity_audit SET actor = 'someone-else'", "DELETE FROM identity_audit"):
            with pytest.raises(refused, match="append-only"), database.transaction() as db:
                db.execute(sql)
        if identity_engine == "postgresql":  # TRUNCATE skips row triggers: a statement trigger of its own
            with pytest.raises(refused, match="append-only"), database.transaction() as db:
                db.execute("TRUNCATE identity_audit")
    finally:
        database.close()
    assert [e.actor for e in store.audit()] == ["cli:root"]
    assert store.verify_audit().intact


@pytest.mark.parametrize(
    ("change", "broken", "why"),
    [
        ("UPDATE identity_audit SET actor = 'someone-else' WHERE seq = {second}", "second", "fields do not match"),
        ("DELETE FROM identity_audit WHERE seq = {second}", "third", "link to the row before"),
        (
            "INSERT INTO identity_audit (time_ms, event, actor, subject, client, detail, prev_hash, hash) "
            "SELECT time_ms, event, actor, subject, client, detail, prev_hash, hash FROM identity_audit "
            "WHERE seq = {second}",
            "new",
            "link to the row before",
        ),
    ],
    ids=["changed", "removed", "replayed"],
)
def test_a_row_changed_around_the_triggers_breaks_the_chain_there(
    store: IdentityStore, tmp_path: Path, identity_engine: str, change: str, broken: str, why: str
) -> None:
    for name in ("li", "wang", "zhang"):
        add(store, name)
    first, second, third = (e.seq for e in reversed(store.audit()))
    assert store.verify_audit().intact
    around = {
        "sqlite": "DROP TRIGGER identity_audit_no_update; DROP TRIGGER identity_audit_no_delete;",
        "postgresql": "ALTER TABLE identity_audit DISABLE TRIGGER identity_audit_no_change;",
    }[identity_engine]
    database = open_identity_database(tmp_path / "identity.sqlite3")
    try:
        database.script(around + change.format(second=second))
    finally:
        database.close()
    report = store.verify_audit()
    newest = store.audit(limit=1)[0].seq
    assert report.broken_at == {"second": second, "third": third, "new": newest}[broken]
    assert why in report.reason and report.chained == (1 if broken != "new" else 3)
    assert first < second < third


def test_the_identity_tables_live_beside_the_alert_stores(tmp_path: Path) -> None:
    """The hub opens both stores on one community's schema: no name of one may be the other's."""
    target, schema = identity_target(tmp_path / "community")
    with AlertStore(target, schema=schema) as alerts, IdentityStore(target, schema=schema) as identity:
        add(identity, "li")
        assert identity.verify_audit().chained == 1 and alerts.verify_audit().chained == 0
        assert [u.name for u in identity.users()] == ["li"] and alerts.list_alerts() == []
    with IdentityStore(target, schema=schema) as identity, AlertStore(target, schema=schema) as alerts:
        assert identity.verify_audit().chained == 1 and alerts.verify_audit().intact
