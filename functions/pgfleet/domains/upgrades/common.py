"""What every upgrade mode shares: operation types and the disk check."""

from __future__ import annotations

from pgfleet.domains.upgrades.models import UpgradeCheckItem

# Free disk kept aside beyond what a copy-mode pg_upgrade writes (the new cluster's catalog,
# WAL of the first checkpoint, the analyze).
COPY_HEADROOM_BYTES = 256 * 1024 * 1024
COPY_FACTOR = 1.1


def workflow_type(kind: str, mode: str) -> str:
    return f"{kind}.upgrade.{mode}"


def item(name: str, findings: list[str], passed_detail: str) -> UpgradeCheckItem:
    return UpgradeCheckItem(name=name, passed=not findings, detail="; ".join(findings) or passed_detail)


def space_check(data_bytes: int, free_bytes: int) -> tuple[UpgradeCheckItem, bool]:
    """Whether a copy fits (then copy: the old data directory stays intact as the way back);
    else hard links (the backup taken first is the way back once the new server ran). A
    volume without even the headroom fails."""
    need_copy = int(data_bytes * COPY_FACTOR) + COPY_HEADROOM_BYTES
    mb = 1024 * 1024
    if free_bytes >= need_copy:
        return UpgradeCheckItem(
            name="disk", passed=True,
            detail=f"{free_bytes // mb} MB free; a copy needs {need_copy // mb} MB (data {data_bytes // mb} MB)",
        ), False  # fmt: skip
    if free_bytes >= COPY_HEADROOM_BYTES:
        return UpgradeCheckItem(
            name="disk", passed=True,
            detail=f"{free_bytes // mb} MB free, less than the {need_copy // mb} MB a copy needs: "
            "pg_upgrade uses hard links",
        ), True  # fmt: skip
    return UpgradeCheckItem(
        name="disk", passed=False,
        detail=f"only {free_bytes // mb} MB free; even with hard links pg_upgrade needs {COPY_HEADROOM_BYTES // mb} MB",
    ), True  # fmt: skip
