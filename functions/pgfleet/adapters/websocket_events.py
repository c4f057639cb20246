"""EventPush through API Gateway's management API of the WebSocket API (boto3
`apigatewaymanagementapi`): in AWS its `https://{api}.execute-api.{region}.amazonaws.com/{stage}`
endpoint, signed with the function's role (execute-api:ManageConnections); locally the gateway
(pgfleet.local.gateway), which serves the same `/@connections/{id}` calls."""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

from pgfleet.ports.events import EventPush

_creating = threading.Lock()


class ManagementApiEventPush(EventPush):
    def __init__(self, endpoint_url: str, region: str) -> None:
        self._endpoint_url = endpoint_url
        self._region = region

    @functools.cached_property
    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        if self._endpoint_url.startswith("http://127.0.0.1"):
            # The local gateway checks no signature; boto3 refuses to sign without credentials.
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        with _creating:  # botocore client creation is not thread-safe (see adapters.aws)
            return boto3.session.Session().client(
                "apigatewaymanagementapi",
                endpoint_url=self._endpoint_url,
                config=Config(
                    region_name=self._region,
                    connect_timeout=2,
                    read_timeout=5,
                    retries={"mode": "standard", "max_attempts": 2},
                ),
            )

    def post(self, connection_id: str, data: bytes) -> bool:
        client = self._client
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=data)
        except client.exceptions.GoneException:
            return False
        return True

    def close(self, connection_id: str) -> None:
        client = self._client
        try:
            client.delete_connection(ConnectionId=connection_id)
        except client.exceptions.GoneException:
            return
