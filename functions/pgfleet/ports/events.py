"""The EventPush port: sends one message to one open WebSocket connection now.

In AWS this is API Gateway's management API of the WebSocket API (`POST
/@connections/{connectionId}`); locally, the same call to the local gateway, which holds the
connections. Which connections exist, and who may see what, is the events domain's business
(pgfleet.domains.events): the port only delivers.
"""

from __future__ import annotations

import abc


class EventPush(abc.ABC):
    @abc.abstractmethod
    def post(self, connection_id: str, data: bytes) -> bool:
        """Send `data` (one text frame) to the connection. False when the connection is gone
        (closed by the client or expired), so the caller forgets it; other failures raise."""

    @abc.abstractmethod
    def close(self, connection_id: str) -> None:
        """Close the connection (a token that expired). A connection already gone is no error."""
