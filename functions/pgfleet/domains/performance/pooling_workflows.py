"""The `performance.connections.configure` operation (pooling.configure starts it).

Steps (each idempotent, each saying what it did):
- `apply_max_connections`: the stored max_connections written to the server's configuration
  (the engine's provision for an instance, Patroni's reconfigure for a cluster);
- `restart`: the planned restart that applies it (an instance once; a cluster's replicas
  first, then its primary);
- `pooler_role`: POOLER_ROLE with a new password (Secrets Manager first, then the server, as a
  SCRAM secret), its schema and the SECURITY DEFINER lookup function in the app database;
- `pooler`: PgBouncer configured and running (or stopped and removed when turned off);
- `mark_running`: the server back to running, saying what changed.
"""

from __future__ import annotations

import secrets as token_source
from typing import Any

from psycopg import sql as pgsql

from pgfleet.core import resources
from pgfleet.core.errors import EngineError, InvalidState
from pgfleet.core.models import utcnow_iso
from pgfleet.core.operations import Cascade, StepContext, Workflow
from pgfleet.domains import clusters, instances, servers
from pgfleet.domains.performance import pooling
from pgfleet.domains.servers import Server

# Statements the privileged session runs so nothing of a role's secret is logged.
QUIET = (
    "SET log_min_error_statement = 'panic'",
    "SET log_statement = 'none'",
    "SET log_min_duration_statement = -1",
)
ROLE_EXISTS = "SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = %s::pg_catalog.name"
ROLE_OPTIONS = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
CREATE_ROLE = "CREATE ROLE {} " + ROLE_OPTIONS + " PASSWORD {}"
ALTER_ROLE = "ALTER ROLE {} " + ROLE_OPTIONS + " PASSWORD {}"
LOOKUP_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.user_lookup(i_username pg_catalog.text, OUT uname pg_catalog.text,
    OUT phash pg_catalog.text)
RETURNS record LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT s.usename::pg_catalog.text, s.passwd::pg_catalog.text
    FROM pg_catalog.pg_shadow s
    WHERE s.usename OPERATOR(pg_catalog.=) i_username AND NOT s.usesuper
$$
"""


def _server(ctx: StepContext) -> Server:
    server = servers.get(ctx.ports, ctx.params["kind"], ctx.resource_id)
    if server is None:
        raise InvalidState(f"{ctx.params['kind']} {ctx.resource_id} no longer exists")
    return server


def _apply_max_connections(ctx: StepContext) -> str:
    if ctx.params.get("max_connections") is None:
        return "max_connections unchanged"
    server = _server(ctx)
    if server.kind == clusters.KIND:
        said = ctx.ports.cluster_engine.reconfigure(clusters.cluster_spec(server.record))
    else:
        said = ctx.ports.engine.provision(instances.server_spec(server.record))
    return (
        f"max_connections {ctx.params['previous_max_connections']} -> {ctx.params['max_connections']}: {said}"
    )


def _restart(ctx: StepContext) -> str:
    if ctx.params.get("max_connections") is None:
        return "no restart needed"
    server = _server(ctx)
    if server.kind != clusters.KIND:
        return ctx.ports.engine.restart(instances.server_spec(server.record))
    spec = clusters.cluster_spec(server.record)
    members = ctx.ports.cluster_engine.members(server.id)
    # Raised only (pooling.configure refuses lowering): replicas first, so a standby never runs
    # with less than its primary.
    ordered = sorted(members, key=lambda m: m.role == "primary")
    return "; ".join(ctx.ports.cluster_engine.restart_node(spec, m.node_id) for m in ordered) or "no node"


def _pooler_role(ctx: StepContext) -> str:
    if ctx.params.get("pooler") != "on":
        return "no pooler to authenticate for"
    server = _server(ctx)
    database = server.record["database"]
    password = ctx.ports.secrets.get(pooling.secret_name(server.id))
    if not password:
        password = token_source.token_urlsafe(24)
        ctx.ports.secrets.put(pooling.secret_name(server.id), password)
    role, schema = pgsql.Identifier(pooling.POOLER_ROLE), pgsql.Identifier(pooling.POOLER_SCHEMA)
    secret = pgsql.Literal(pooling.scram_verifier(password))
    with ctx.ports.sql.session(server.id, database=database) as session:
        for statement in QUIET:
            session.execute(statement)
        found = session.fetch_one(ROLE_EXISTS, (pooling.POOLER_ROLE,))
        if found is not None and found[0]:
            raise EngineError(f"role {pooling.POOLER_ROLE} is a superuser on {server.id}: refusing to use it")
        session.execute(pgsql.SQL(CREATE_ROLE if found is None else ALTER_ROLE).format(role, secret))
        session.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        session.execute(pgsql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
        session.execute(pgsql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role))
        session.execute(pgsql.SQL(LOOKUP_FUNCTION).format(schema=schema))
        function = pgsql.SQL("{}.user_lookup(pg_catalog.text)").format(schema)
        session.execute(pgsql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(function))
        session.execute(pgsql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(function, role))
        session.execute(
            pgsql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(pgsql.Identifier(database), role)
        )
    return (
        f"{'created' if found is None else 'updated'} role {pooling.POOLER_ROLE} (password in Secrets Manager) "
        f"and {pooling.POOLER_SCHEMA}.user_lookup in {database} (non-superusers only)"
    )


def _pooler(ctx: StepContext) -> str:
    server = _server(ctx)
    if ctx.params.get("pooler") == "off":
        said = pooling.remove_pooler(ctx.ports, server.kind, server.id)
        return said
    if ctx.params.get("pooler") != "on":
        return "pooler unchanged"
    said = ctx.ports.pooler.configure(pooling.pooler_spec(ctx.ports, server))
    pooling.set_pooler(
        ctx.ports, server.kind, server.id, status="running", status_reason=f"{utcnow_iso()}: {said}"
    )
    return said


def _mark_running(ctx: StepContext) -> str:
    server = _server(ctx)
    if server.record.get("status") != "restarting":
        return f"{server.kind} stays {server.record.get('status')}"
    reason = f"max_connections is {ctx.params['max_connections']} (restarted)"
    if server.kind == clusters.KIND:
        clusters.refresh_topology(ctx.ports, server.record, status="running", status_reason=reason)
    else:
        resources.set_status(ctx, instances.INSTANCE, "running", reason)
    return reason


def _failed(ctx: StepContext, error: str) -> None:
    server = servers.get(ctx.ports, ctx.params.get("kind", ""), ctx.resource_id)
    if server is None:
        return
    if ctx.params.get("pooler") == "on" and server.record.get("pooler"):
        pooling.set_pooler(ctx.ports, server.kind, server.id, status="failed", status_reason=error)
    if server.record.get("status") == "restarting":
        # A cluster that stopped part-way still serves; reconcile repairs a node that did not come back.
        status = "running" if server.kind == clusters.KIND else "failed"
        ctx.ports.store.update(
            server.kind, server.id,
            {"status": status, "status_reason": f"configure connections failed: {error}", "updated_at": utcnow_iso()},
        )  # fmt: skip


def _cascade(kind: str) -> Any:
    def step(ctx: StepContext) -> str:
        return pooling.remove_pooler(ctx.ports, kind, ctx.resource_id)

    return step


WORKFLOWS: tuple[Workflow, ...] = (
    Workflow(
        pooling.CONFIGURE,
        (
            ("apply_max_connections", _apply_max_connections),
            ("restart", _restart),
            ("pooler_role", _pooler_role),
            ("pooler", _pooler),
            ("mark_running", _mark_running),
        ),
        _failed,
    ),
)
# The delete of an instance or a cluster stops and removes its pooler and frees its port.
CASCADES: tuple[Cascade, ...] = (
    Cascade(instances.KIND, "pooler", _cascade(instances.KIND)),
    Cascade(clusters.KIND, "pooler", _cascade(clusters.KIND)),
)
