"""Blue/green upgrades without processes: the schema filter that lets a PostgreSQL 15 schema
load into 18, the pre-flight of a cluster, and the retention of the kept blue server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pgfleet.adapters.engines.local.postgres.logical import slot_of, without_foreign_options
from pgfleet.domains.upgrades import blue_green
from tests.unit.fakes import FakePorts

DUMP = """\
CREATE TABLE public.t (
    id integer NOT NULL,
    n numeric
);
ALTER TABLE ONLY public.t ALTER COLUMN id SET (pg_attver=22183656);
ALTER TABLE ONLY public.t ALTER COLUMN n SET (pg_attver=22183656, n_distinct=5);
ALTER TABLE ONLY public."odd, name" ALTER COLUMN "x y" SET (n_distinct_inherited=-1, pg_attver=7);
ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT nextval('public.t_id_seq'::regclass);
COMMENT ON TABLE public.t IS 'SET (pg_attver=1);';
"""


def test_foreign_attribute_options_are_dropped_and_others_kept() -> None:
    assert without_foreign_options(DUMP) == (
        "CREATE TABLE public.t (\n"
        "    id integer NOT NULL,\n"
        "    n numeric\n"
        ");\n"
        "ALTER TABLE ONLY public.t ALTER COLUMN n SET (n_distinct=5);\n"
        'ALTER TABLE ONLY public."odd, name" ALTER COLUMN "x y" SET (n_distinct_inherited=-1);\n'
        "ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT nextval('public.t_id_seq'::regclass);\n"
        "COMMENT ON TABLE public.t IS 'SET (pg_attver=1);';\n"
    )


def test_slot_names_are_valid_and_distinct_per_database() -> None:
    names = {slot_of(db) for db in ("app", "App", "tenant-1", "x" * 63)}
    assert len(names) == 4
    assert all(len(n) <= 63 and n.replace("_", "").isalnum() and n == n.lower() for n in names)


def test_a_cluster_is_checked_by_its_cluster_engine(fake_ports: FakePorts) -> None:
    # The fake cluster engine has no logical replication: the check says so, as a finding.
    (item,) = blue_green.checks(fake_ports, "cluster", {"id": "pgc-1", "nodes": []}, "18")  # type: ignore[arg-type]
    assert not item.passed and item.name == "logical replication" and "blue/green" in item.detail


def test_kept_blue_servers_go_once_their_retention_has_passed(fake_ports: FakePorts) -> None:
    from pgfleet.ports.engine import ServerSpec

    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    for iid, hours in (("pgi-old", -1), ("pgi-new", 5)):
        kept = blue_green.kept_id(iid, "15")
        fake_ports.engine.provision(ServerSpec(kept, "15", 16001))
        until = (now + timedelta(hours=hours)).isoformat()
        fake_ports.store.create(
            "instance",
            {
                "id": iid,
                "tenant_id": "acme",
                "kept_blue": {"server_id": kept, "version": "15", "keep_until": until},
            },
        )
    done = blue_green.expire_kept(fake_ports, now)  # type: ignore[arg-type]
    assert done == [
        f"pgi-old: kept server pgi-old-blue15 destroyed (kept until {now - timedelta(hours=1):%Y-%m-%dT%H:%M:%S}+00:00)"
    ]
    assert set(fake_ports.engine.servers) == {"pgi-new-blue15"}
    assert fake_ports.store.get("instance", "pgi-old")["kept_blue"] is None
    assert blue_green.expire_kept(fake_ports, now) == []  # type: ignore[arg-type]


SINGLE = "/api/v1/postgres/single"


def _instance(call, fake_ports: FakePorts) -> dict:  # type: ignore[no-untyped-def]
    status, body = call("POST", SINGLE, {"name": "orders-db", "version": "15"})
    assert status == 202, body
    fake_ports.drain()
    return body


def _upgrade(call, iid: str, **extra: object) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    return call("POST", f"{SINGLE}/{iid}/upgrade", {"target_version": "18", "mode": "blue_green", **extra})


def test_cutover_swaps_the_servers_and_keeps_the_old_one(call, fake_ports: FakePorts) -> None:  # type: ignore[no-untyped-def]
    iid = _instance(call, fake_ports)["id"]
    status, accepted = _upgrade(call, iid, keep_old_hours=3)
    assert status == 202 and accepted["passed"], accepted
    fake_ports.drain()

    _, op = call("GET", f"/api/v1/operations/{accepted['operation_id']}")
    assert op["status"] == "succeeded", op
    assert op["detail"]["phase"] == "completed" and op["detail"]["lag_bytes"] == 0, op["detail"]
    _, instance = call("GET", f"{SINGLE}/{iid}")
    assert instance["version"] == "18" and instance["status"] == "running", instance
    assert "kept stopped as " + blue_green.kept_id(iid, "15") in instance["status_reason"]
    engine = fake_ports.engine
    assert engine.servers[iid]["spec"].version == "18" and engine.servers[iid]["running"]
    kept = engine.servers[blue_green.kept_id(iid, "15")]
    assert kept["spec"].version == "15" and not kept["running"] and kept["read_only"]
    assert blue_green.green_id(iid) not in engine.servers
    assert fake_ports.store.get("instance", iid)["upgrade_green"] is None

    # The instance's delete removes the kept server with it.
    status, deleted = call("DELETE", f"{SINGLE}/{iid}")
    assert status == 202, deleted
    fake_ports.drain()
    assert not [s for s in engine.servers if s.startswith(iid)], engine.servers


def test_a_failure_after_the_swap_puts_blue_back_taking_writes(
    call, fake_ports: FakePorts, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from pgfleet.core.errors import EngineError

    iid = _instance(call, fake_ports)["id"]
    engine = fake_ports.engine
    start = engine.start

    def start_but_not_green_on_the_endpoint(spec):  # type: ignore[no-untyped-def]
        if spec.server_id == iid and spec.version == "18":
            raise EngineError("could not bind the port (injected)")
        return start(spec)

    monkeypatch.setattr(engine, "start", start_but_not_green_on_the_endpoint)
    status, accepted = _upgrade(call, iid)
    assert status == 202, accepted
    fake_ports.drain()

    _, op = call("GET", f"/api/v1/operations/{accepted['operation_id']}")
    assert op["status"] == "failed" and op["error"].startswith("start_on_endpoint:"), op
    assert op["detail"]["phase"] == "rolled_back", op["detail"]
    _, instance = call("GET", f"{SINGLE}/{iid}")
    assert instance["version"] == "15" and instance["status"] == "running", instance
    assert "rolled back" in instance["status_reason"], instance
    assert engine.servers[iid]["spec"].version == "15" and engine.servers[iid]["running"]
    assert engine.servers[iid]["read_only"] is False  # blue takes writes again
    assert set(engine.servers) == {iid}, engine.servers  # green destroyed, nothing kept
    record = fake_ports.store.get("instance", iid)
    assert record["upgrade_green"] is None and record["kept_blue"] is None


def test_a_table_without_a_key_is_a_409_and_nothing_changes(call, fake_ports: FakePorts) -> None:  # type: ignore[no-untyped-def]
    iid = _instance(call, fake_ports)["id"]
    fake_ports.engine.servers[iid]["tables_without_key"] = ["app: public.audit_log"]
    status, body = _upgrade(call, iid)
    assert status == 409, body
    assert any("app: public.audit_log" in f for f in body["error"]["details"]["findings"]), body
    status, report = _upgrade(call, iid, dry_run=True)
    assert status == 200 and not report["passed"], report
    assert fake_ports.engine.servers[iid].get("wal_level", "replica") == "replica"
    _, instance = call("GET", f"{SINGLE}/{iid}")
    assert instance["status"] == "running" and instance["version"] == "15", instance


def test_a_schema_changed_during_the_upgrade_rolls_it_back(call, fake_ports: FakePorts) -> None:  # type: ignore[no-untyped-def]
    iid = _instance(call, fake_ports)["id"]
    fake_ports.engine.servers[iid]["schema_differences"] = [f"app: only on {iid}: public.t.added integer"]
    status, accepted = _upgrade(call, iid)
    assert status == 202, accepted
    fake_ports.drain()
    _, op = call("GET", f"/api/v1/operations/{accepted['operation_id']}")
    assert op["status"] == "failed" and "public.t.added" in op["error"], op
    assert op["error"].startswith("wait_applied:") and "DDL is not replicated" in op["error"]
    _, instance = call("GET", f"{SINGLE}/{iid}")
    assert instance["version"] == "15" and instance["status"] == "running", instance
    assert fake_ports.engine.servers[iid]["read_only"] is False
    assert set(fake_ports.engine.servers) == {iid}
