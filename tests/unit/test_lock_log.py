"""The lock parts of the server's log, parsed from jsonlog lines a PostgreSQL 15 server wrote
(captured from a real deadlock on orders/payments, a lock timeout and an advisory-lock
deadlock), and the prevention suggestions made from them."""

from __future__ import annotations

import pytest

from pgfleet.adapters.engines.local.postgres.logs import parse_log_line
from pgfleet.domains.locks import lock_log
from pgfleet.domains.locks.deadlock_scan import Party, display_name, prevention_suggestion

# fmt: off
WAIT_DEADLOCK = (
    rb'{"timestamp":"2026-12-02 03:10:21.544 UTC","user":"app_owner","dbname":"app","pid":10031,"remote_host":"127.0.0.1","remote_port":43686,"session_id":"6b0f8c1c.272f","line_num":1,"ps":"UPDATE waiting","session_start":"2026-12-02 03:10:20 UTC","vxid":"3/18","txid":736,"error_severity":"LOG","message":"process 10031 detected deadlock while waiting for ShareLock on transaction 737 after 1000.098 ms","detail":"Process holding the lock: 10032. Wait queue: .","context":"while updating tuple (0,1) in relation \"payments\"","statement":"UPDATE public.payments SET amount = amount + 2 WHERE id = 1","application_name":"shop","backend_type":"client backend","query_id":-7735927246968571889}'
)

DEADLOCK = (
    rb'{"timestamp":"2026-12-02 03:10:21.544 UTC","user":"app_owner","dbname":"app","pid":10031,"remote_host":"127.0.0.1","remote_port":43686,"session_id":"6b0f8c1c.272f","line_num":2,"ps":"UPDATE","session_start":"2026-12-02 03:10:20 UTC","vxid":"3/18","txid":736,"error_severity":"ERROR","state_code":"40P01","message":"deadlock detected","detail":"Process 10031 waits for ShareLock on transaction 737; blocked by process 10032.\nProcess 10032 waits for ShareLock on transaction 736; blocked by process 10031.\nProcess 10031: UPDATE public.payments SET amount = amount + 2 WHERE id = 1\nProcess 10032: UPDATE public.orders SET total = total + 2 WHERE id = 1","hint":"See server log for query details.","context":"while updating tuple (0,1) in relation \"payments\"","statement":"UPDATE public.payments SET amount = amount + 2 WHERE id = 1","application_name":"shop","backend_type":"client backend","query_id":-7735927246968571889}'
)

LOCK_TIMEOUT = (
    rb'{"timestamp":"2026-12-02 03:10:21.774 UTC","user":"app_owner","dbname":"app","pid":10056,"remote_host":"127.0.0.1","remote_port":43708,"session_id":"6b0f8c1d.2748","line_num":1,"ps":"SELECT","session_start":"2026-12-02 03:10:21 UTC","vxid":"6/2","txid":0,"error_severity":"ERROR","state_code":"55P03","message":"canceling statement due to lock timeout","statement":"SELECT * FROM public.orders","cursor_position":15,"application_name":"shop","backend_type":"client backend","query_id":0}'
)

ADVISORY_WAIT = (
    rb'{"timestamp":"2026-12-02 03:10:22.821 UTC","user":"app_owner","dbname":"app","pid":10062,"remote_host":"127.0.0.1","remote_port":43718,"session_id":"6b0f8c1d.274e","line_num":1,"ps":"SELECT waiting","session_start":"2026-12-02 03:10:21 UTC","vxid":"7/2","txid":0,"error_severity":"LOG","message":"process 10062 detected deadlock while waiting for ExclusiveLock on advisory lock [16385,0,2,1] after 1000.155 ms","detail":"Process holding the lock: 10066. Wait queue: .","statement":"SELECT pg_advisory_xact_lock(2)","application_name":"shop","backend_type":"client backend","query_id":5111637299977096805}'
)

ADVISORY_DEADLOCK = (
    rb'{"timestamp":"2026-12-02 03:10:22.821 UTC","user":"app_owner","dbname":"app","pid":10062,"remote_host":"127.0.0.1","remote_port":43718,"session_id":"6b0f8c1d.274e","line_num":2,"ps":"SELECT","session_start":"2026-12-02 03:10:21 UTC","vxid":"7/2","txid":0,"error_severity":"ERROR","state_code":"40P01","message":"deadlock detected","detail":"Process 10062 waits for ExclusiveLock on advisory lock [16385,0,2,1]; blocked by process 10066.\nProcess 10066 waits for ExclusiveLock on advisory lock [16385,0,1,1]; blocked by process 10062.\nProcess 10062: SELECT pg_advisory_xact_lock(2)\nProcess 10066: SELECT pg_advisory_xact_lock(1)","hint":"See server log for query details.","statement":"SELECT pg_advisory_xact_lock(2)","application_name":"shop","backend_type":"client backend","query_id":5111637299977096805}'
)
# fmt: on


def test_jsonlog_fields_reach_the_log_line() -> None:
    line = parse_log_line(DEADLOCK)
    assert line is not None
    assert (line.severity, line.message, line.sqlstate) == ("ERROR", "deadlock detected", "40P01")
    assert (line.pid, line.user, line.database, line.application_name) == (10031, "app_owner", "app", "shop")
    assert line.query == "UPDATE public.payments SET amount = amount + 2 WHERE id = 1"
    assert line.context == 'while updating tuple (0,1) in relation "payments"'
    assert line.hint == "See server log for query details."
    assert (line.session_id, line.line_num) == ("6b0f8c1c.272f", 2)
    assert line.detail is not None and line.detail.startswith("Process 10031 waits for ShareLock")


def test_a_foreign_or_partial_line_is_skipped_and_missing_fields_are_none() -> None:
    assert parse_log_line(b'{"timestamp": "2026-12-02 03:10') is None
    line = parse_log_line(
        b'{"timestamp":"2026-12-02 03:10:21.544 UTC","error_severity":"LOG","message":"hi"}'
    )
    assert line is not None and line.pid is None and line.user is None and line.detail is None


def test_the_deadlock_detail_gives_the_cycle_and_every_query() -> None:
    line = parse_log_line(DEADLOCK)
    assert line is not None and line.detail is not None
    report = lock_log.parse_deadlock_detail(line.detail)
    assert report is not None and report.pids == [10031, 10032]
    assert [(e.waiter, e.holder, e.mode, e.lock.lock_type, e.lock.text) for e in report.edges] == [
        (10031, 10032, "ShareLock", "transactionid", "transaction 737"),
        (10032, 10031, "ShareLock", "transactionid", "transaction 736"),
    ]
    assert report.queries == {
        10031: "UPDATE public.payments SET amount = amount + 2 WHERE id = 1",
        10032: "UPDATE public.orders SET total = total + 2 WHERE id = 1",
    }
    assert lock_log.context_relation(line.context) == "payments"


def test_a_query_over_several_lines_stays_whole() -> None:
    detail = (
        "Process 1 waits for ShareLock on transaction 9; blocked by process 2.\n"
        "Process 2 waits for ExclusiveLock on tuple (0,3) of relation 16390 of database 16384; blocked by process 1.\n"
        "Process 1: UPDATE orders\n   SET total = 0\n WHERE id = 3\n"
        "Process 2: DELETE FROM public.orders WHERE id = 3"
    )
    report = lock_log.parse_deadlock_detail(detail)
    assert report is not None
    assert report.queries[1] == "UPDATE orders\n   SET total = 0\n WHERE id = 3"
    assert report.edges[1].lock == lock_log.LockObject(
        "tuple", "tuple (0,3) of relation 16390 of database 16384", 16390, 16384
    )
    assert lock_log.parse_deadlock_detail("Process holding the lock: 10032. Wait queue: .") is None


def test_the_victims_wait_and_the_advisory_keys() -> None:
    wait = parse_log_line(WAIT_DEADLOCK)
    assert wait is not None
    parsed = lock_log.parse_lock_wait(wait.message)
    assert parsed is not None and (parsed.pid, parsed.event, parsed.mode, parsed.wait_ms) == (
        10031,
        "deadlock",
        "ShareLock",
        1000.098,
    )
    advisory = parse_log_line(ADVISORY_DEADLOCK)
    assert advisory is not None and advisory.detail is not None
    report = lock_log.parse_deadlock_detail(advisory.detail)
    assert report is not None
    assert [e.lock.advisory_key for e in report.edges] == ["2", "1"]
    assert [e.lock.lock_type for e in report.edges] == ["advisory", "advisory"]


@pytest.mark.parametrize(
    ("text", "lock_type", "relation", "database"),
    [
        ("relation 16390 of database 16384", "relation", 16390, 16384),
        ("extension of relation 16390 of database 16384", "extend", 16390, 16384),
        ("page 7 of relation 16390 of database 16384", "page", 16390, 16384),
        ("virtual transaction 3/18", "virtualxid", None, None),
        ("object 16400 of class 1259 of database 16384", "object", None, 16384),
        ("speculative token 4 of transaction 800", "spectoken", None, None),
        ("something new", "other", None, None),
    ],
)
def test_lock_objects_as_describelocktag_spells_them(
    text: str, lock_type: str, relation: int | None, database: int | None
) -> None:
    obj = lock_log.parse_lock_object(text)
    assert (obj.lock_type, obj.relation_oid, obj.database_oid) == (lock_type, relation, database)


def test_lock_timeouts_and_acquired_waits() -> None:
    timeout = parse_log_line(LOCK_TIMEOUT)
    assert timeout is not None and timeout.sqlstate == "55P03" and "lock timeout" in timeout.message
    assert timeout.query == "SELECT * FROM public.orders"
    acquired = lock_log.parse_lock_wait(
        "process 4242 acquired AccessShareLock on relation 16390 of database 16384 after 1403.551 ms"
    )
    assert acquired is not None and acquired.event == "acquired" and acquired.lock.relation_oid == 16390
    assert lock_log.parse_lock_wait("database system is ready to accept connections") is None


def test_the_tables_a_statement_locks() -> None:
    update = lock_log.statement_tables(
        "UPDATE public.orders o SET total = 1 FROM payments p WHERE p.id = o.id"
    )
    assert update == lock_log.StatementTables(
        "update", (("public", "orders"),), (("public", "orders"), (None, "payments"))
    )
    assert lock_log.statement_tables("SELECT * FROM a JOIN b USING (id) FOR UPDATE").verb == "lock rows of"  # type: ignore[union-attr]
    assert lock_log.statement_tables("LOCK TABLE x, s.y IN SHARE MODE").targets == ((None, "x"), ("s", "y"))  # type: ignore[union-attr]
    assert lock_log.statement_tables("INSERT INTO t VALUES (1)").verb == "insert into"  # type: ignore[union-attr]
    assert lock_log.statement_tables("UPDATE orders SET") is None  # cut short
    same = {lock_log.query_fingerprint(q) for q in ("UPDATE orders SET total = 1 WHERE id = 2",
                                                    "update orders set total=7 where id=9")}  # fmt: skip
    assert len(same) == 1 and None not in same
    assert display_name("public", "orders") == "orders" and display_name("sales", "orders") == "sales.orders"


def _party(pid: int, verb: str, waits_for: str | None) -> Party:
    return Party(pid, f"{verb} ...", "app", "shop", verb, waits_for, [waits_for] if waits_for else [])


def _report(detail: str) -> lock_log.DeadlockReport:
    report = lock_log.parse_deadlock_detail(detail)
    assert report is not None
    return report


def test_opposite_orders_over_two_tables() -> None:
    line = parse_log_line(DEADLOCK)
    assert line is not None and line.detail is not None
    suggestion = prevention_suggestion(
        _report(line.detail),
        {10031: _party(10031, "update", "payments"), 10032: _party(10032, "update", "orders")},
    )
    assert suggestion.startswith(
        "both transactions update orders and payments in opposite orders (process 10031 held orders and waited "
        "for payments, process 10032 held payments and waited for orders); take locks in a consistent order, "
        "e.g. always orders before payments"
    ), suggestion


def test_three_sessions_one_table_advisory_and_lock_upgrades() -> None:
    three = _report(
        "Process 1 waits for ShareLock on transaction 11; blocked by process 2.\n"
        "Process 2 waits for ShareLock on transaction 12; blocked by process 3.\n"
        "Process 3 waits for ShareLock on transaction 10; blocked by process 1."
    )
    suggestion = prevention_suggestion(
        three, {1: _party(1, "update", "a"), 2: _party(2, "delete from", "b"), 3: _party(3, "update", "c")}
    )
    assert (
        suggestion.startswith("the 3 transactions write to a, b, c in different orders")
        and "a before b before c" in suggestion
    )
    rows = prevention_suggestion(
        _report(
            "Process 1 waits for ShareLock on transaction 11; blocked by process 2.\n"
            "Process 2 waits for ShareLock on transaction 10; blocked by process 1."
        ),  # fmt: skip
        {1: _party(1, "update", "orders"), 2: _party(2, "update", "orders")},
    )
    assert rows.startswith("the transactions update the same rows of orders in different orders")
    advisory = parse_log_line(ADVISORY_DEADLOCK)
    assert advisory is not None and advisory.detail is not None
    assert prevention_suggestion(_report(advisory.detail), {}).startswith(
        "the sessions take advisory locks 2 and 1 in opposite orders; take advisory locks in ascending key order"
    )
    upgrade = _report(
        "Process 1 waits for ShareRowExclusiveLock on relation 16390 of database 16384; blocked by process 2.\n"
        "Process 2 waits for AccessExclusiveLock on relation 16390 of database 16384; blocked by process 1."
    )
    text = prevention_suggestion(upgrade, {1: _party(1, "lock", "orders"), 2: _party(2, "lock", "orders")})
    assert "(ShareRowExclusiveLock, AccessExclusiveLock)" in text, text
    assert "take the strongest lock first, e.g. LOCK TABLE orders IN ACCESS EXCLUSIVE MODE" in text, text
