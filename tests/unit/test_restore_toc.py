"""How a restore reads a dump's table of contents: who owns each entry, which entries are
schemas (created by the host) or about pg_catalog (the server's own policy), and the runs of
entries each role restores. The listing is what `pg_restore -l` prints for PostgreSQL 15."""

from __future__ import annotations

from pgfleet.adapters.engines.local import logical_dump

LISTING = """;
; Archive created at 2026-12-01 20:50:41 UTC
;     dbname: tdb
;
; Selected TOC Entries:
;
7; 2615 2200 SCHEMA - public town
6; 2615 16542 SCHEMA - s2 town
3397; 0 0 COMMENT - SCHEMA s2 town
3400; 0 0 ACL - SCHEMA s2 town
2; 3079 16495 EXTENSION - pgcrypto <no owner>
3399; 0 0 ACL pg_catalog FUNCTION lo_from_bytea(oid, bytea) postgres
256; 1255 16537 FUNCTION public f(integer) town
216; 1259 16532 TABLE public log town
218; 1259 16543 TABLE s2 u other
3387; 0 16532 TABLE DATA public log town
3389; 0 16543 TABLE DATA s2 u other
3390; 0 0 DEFAULT ACL - DEFAULT PRIVILEGES FOR TABLES town
""".replace("<no owner>", "")  # pg_restore prints an empty owner, after the last space


def test_entries_owners_schemas_and_catalog_entries() -> None:
    entries = logical_dump.parse_toc(LISTING)
    assert [e.dump_id for e in entries] == [7, 6, 3397, 3400, 2, 3399, 256, 216, 218, 3387, 3389, 3390]
    by_id = {e.dump_id: e for e in entries}
    assert [by_id[i].owner for i in (7, 2, 3399, 218, 3390)] == ["town", "", "postgres", "other", "town"]
    assert (by_id[7].schema, by_id[6].schema, by_id[216].schema) == ("public", "s2", None)
    assert (by_id[3397].on_schema, by_id[3400].on_schema, by_id[3390].on_schema) == ("s2", "s2", None)
    assert [e.dump_id for e in entries if e.catalog] == [3399]
    assert by_id[256].line == "256; 1255 16537 FUNCTION public f(integer) town"


def test_a_schema_restore_keeps_the_schema_its_comment_and_privileges() -> None:
    entries = logical_dump.parse_toc(LISTING)
    chosen = logical_dump.of_schema(entries, {218, 3389}, "s2")
    assert [e.dump_id for e in chosen] == [6, 3397, 3400, 218, 3389]


def test_runs_follow_the_dump_order_and_change_with_the_role() -> None:
    entries = logical_dump.parse_toc(LISTING)
    runs = logical_dump.restore_runs(
        entries, lambda owner: owner if owner in ("town", "other") else "fallback"
    )
    # Schemas (created by the host) and catalog privileges (the server's policy) are no run's.
    assert [(role, [e.dump_id for e in run]) for role, run in runs] == [
        ("town", [3397, 3400]),
        ("fallback", [2]),
        ("town", [256, 216]),
        ("other", [218]),
        ("town", [3387]),
        ("other", [3389]),
        ("town", [3390]),
    ]
