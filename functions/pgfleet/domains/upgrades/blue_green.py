"""Blue/green major-version upgrade (`<kind>.upgrade.blue_green`): being written."""

from __future__ import annotations

from typing import Any

from pgfleet.core.context import Ports
from pgfleet.core.operations import Workflow
from pgfleet.domains.upgrades.models import UpgradeCheckItem

WORKFLOWS: tuple[Workflow, ...] = ()


def checks(ports: Ports, kind: str, record: dict[str, Any], target: str) -> list[UpgradeCheckItem]:
    return [UpgradeCheckItem(name="blue_green", passed=False, detail="blue_green upgrades are not offered yet")]
