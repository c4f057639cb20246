"""Every entry point (the api, worker and scheduled handlers) registers the domains'
workflows and cascades at import; tests that call the domains directly do the same here."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _domains_installed() -> None:
    from pgfleet.handlers import domains

    domains.install()
