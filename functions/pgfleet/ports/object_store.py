"""The ObjectStore port: documents kept by key (compliance reports, evidence packages,
attested evidence files), handed to people as time-limited download links.

In AWS an S3 bucket (`PGFLEET_REPORTS_BUCKET`); locally the same bucket in the moto server.
Keys are `/`-separated paths chosen by the domain (`compliance/reports/<id>.pdf`).
"""

from __future__ import annotations

import abc

DEFAULT_LINK_SECONDS = 3600


class ObjectStore(abc.ABC):
    @abc.abstractmethod
    def put(self, key: str, body: bytes, content_type: str) -> None:
        """Store `body` under `key`, replacing what was there (idempotent for the same body).
        Raises StoreError when the backend refuses or fails."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no object under `key`. Raises StoreError
        for other failures."""

    @abc.abstractmethod
    def link(self, key: str, expires_seconds: int = DEFAULT_LINK_SECONDS, filename: str | None = None) -> str:
        """A URL that downloads the object without credentials until it expires (an S3
        presigned GET), saved as `filename` when given. No backend call; does not check that
        the object exists."""
