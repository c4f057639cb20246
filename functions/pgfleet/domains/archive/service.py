"""Continuous WAL archiving: every instance and cluster archives into its own pgBackRest
stanza from the moment it is created.

A resource's stanza is named after its id, so a restored copy (a new id) never archives into
its source's stanza. Each stanza's repository is encrypted (aes-256-cbc) with its own
passphrase, kept in Secrets as `backup/<stanza>/cipher` and never in metadata or logs.

The archive settings (archive_mode, archive_command, archive_timeout <= 60 s) are stored on the
resource record (`archive_settings`) and merged into its server or cluster spec, so every
node of a cluster carries the same archive_command; backups and checks run against the
current primary, which the stanza's configuration is pointed at first.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from pgfleet.core import resources
from pgfleet.core.context import Ports
from pgfleet.core.errors import EngineError
from pgfleet.core.operations import StepContext
from pgfleet.core.resources import ResourceType
from pgfleet.ports.restore_host import ServerLocation
from pgfleet.ports.secrets import Secrets

MAX_ARCHIVE_TIMEOUT_S = 60


def stanza_of(record: dict[str, Any]) -> str:
    """The stanza a resource archives into (its id; kept on backup records after it is gone)."""
    return str(record.get("stanza") or record["id"])


def cipher_secret_name(stanza: str) -> str:
    return f"backup/{stanza}/cipher"


def cipher_passphrase(store: Secrets, stanza: str) -> str:
    """The stanza's repository passphrase. EngineError when it is missing: generating one
    here could encrypt part of a repository with a passphrase nobody kept."""
    value = store.get(cipher_secret_name(stanza))
    if not value:
        raise EngineError(f"no repository passphrase for stanza {stanza!r} in Secrets")
    return value


def ensure_cipher(ports: Ports, stanza: str) -> bool:
    """Create the stanza's passphrase unless it exists. Returns whether it was created."""
    if ports.secrets.get(cipher_secret_name(stanza)):
        return False
    ports.secrets.put(cipher_secret_name(stanza), secrets.token_urlsafe(48))
    return True


def is_cluster(record: dict[str, Any]) -> bool:
    return "nodes" in record


def node_location(ports: Ports, record: dict[str, Any], node_id: str) -> ServerLocation:
    node = next((n for n in record["nodes"] if n["id"] == node_id), None)
    if node is None:
        raise EngineError(f"node {node_id} is not part of cluster {record['id']}")
    return ports.restore_host.node_location(record["id"], node_id, node["endpoint"]["port"])


def own_location(ports: Ports, record: dict[str, Any]) -> ServerLocation:
    """Where an instance's server lives, or a cluster's first node (before it has a primary)."""
    if is_cluster(record):
        return node_location(ports, record, record["nodes"][0]["id"])
    return ports.restore_host.server_location(record["id"], record["endpoint"]["port"])


def primary_node(ports: Ports, record: dict[str, Any]) -> str:
    """The node Patroni reports as the running primary now. EngineError when there is none."""
    primary = next(
        (m.node_id for m in ports.cluster_engine.members(record["id"]) if m.role == "primary" and m.running),
        None,
    )
    if primary is None:
        raise EngineError(f"cluster {record['id']} has no running primary")
    return primary


def primary_location(ports: Ports, record: dict[str, Any]) -> ServerLocation:
    """Where the server that takes writes lives: the instance, or the cluster's primary."""
    if is_cluster(record):
        return node_location(ports, record, primary_node(ports, record))
    return own_location(ports, record)


def point_stanza_at(ports: Ports, record: dict[str, Any], location: ServerLocation) -> dict[str, str]:
    """Record `location` as the stanza's server (for backups and checks); returns the archive
    settings, which do not depend on it."""
    settings = ports.backup_engine.archive_settings(
        stanza_of(record),
        location.data_dir,
        location.socket_dir,
        location.port,
        pg_version=record.get("version"),
    )
    if int(settings.get("archive_timeout", "0")) > MAX_ARCHIVE_TIMEOUT_S:
        raise EngineError(f"archive_timeout {settings['archive_timeout']} is above {MAX_ARCHIVE_TIMEOUT_S} s")
    return settings


def point_stanza_at_primary(ports: Ports, record: dict[str, Any]) -> ServerLocation:
    location = primary_location(ports, record)
    point_stanza_at(ports, record, location)
    return location


def flush_wal(ports: Ports, record: dict[str, Any]) -> str:
    """Archive everything committed so far (a WAL switch, waiting for the segment to arrive)."""
    point_stanza_at_primary(ports, record)
    return ports.backup_engine.check(stanza_of(record))


# --- workflow steps shared by instances and clusters ------------------------------------------


def configure_step(rtype: ResourceType) -> Callable[[StepContext], str]:
    """Step: create the stanza's passphrase and store the archive settings on the record, so
    the server (every node) is provisioned archiving."""

    def step(ctx: StepContext) -> str:
        record = resources.step_record(ctx, rtype)
        stanza = stanza_of(record)
        created = ensure_cipher(ctx.ports, stanza)
        settings = point_stanza_at(ctx.ports, record, own_location(ctx.ports, record))
        if record.get("archive_settings") != settings or record.get("stanza") != stanza:
            ctx.ports.store.update(
                rtype.kind,
                record["id"],
                {"archive_settings": settings, "stanza": stanza},
                record["revision"],
            )
        passphrase = "a new passphrase in Secrets" if created else "its passphrase in Secrets"
        return (
            f"WAL archives into stanza {stanza} ({ctx.ports.backup_engine.repository(stanza)}; {passphrase}); "
            f"archive_timeout {settings.get('archive_timeout')} s"
        )

    return step


def create_stanza(ports: Ports, record: dict[str, Any]) -> str:
    """Create the stanza in the repository for the running server (its primary). Idempotent."""
    location = primary_location(ports, record)
    return ports.backup_engine.create_stanza(
        stanza_of(record), location.data_dir, location.socket_dir, location.port
    )


def create_stanza_step(rtype: ResourceType) -> Callable[[StepContext], str]:
    """Step: create the stanza in the repository for the running server (its primary)."""

    def step(ctx: StepContext) -> str:
        return create_stanza(ctx.ports, resources.step_record(ctx, rtype))

    return step
