"""`terraform-provider-pgfleet`: the plugin process Terraform starts.

Run with `--dev` to serve on a unix socket and print a `TF_REATTACH_PROVIDERS` value, so that
Terraform talks to one long-lived provider process instead of starting a new one per command
(what the tests and the benchmark use to keep Python's start-up out of the loop).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tf.iface import Config, DataSource, Provider, Resource
from tf.runner import run_provider
from tf.schema import Schema
from tf.types import Unknown
from tf.utils import Diagnostics

from pgfleet.provider import SOURCE_ADDRESS, TYPE_PREFIX
from pgfleet.provider.catalog import DATA_SOURCES, RESOURCES
from pgfleet.provider.client import ApiClient
from pgfleet.provider.resources import data_source_class, resource_class
from pgfleet.provider.schema import provider_schema

ENV_ENDPOINT = "PGFLEET_API_URL"
ENV_TOKEN = "PGFLEET_TOKEN"

RESOURCE_CLASSES = [resource_class(spec) for spec in RESOURCES]
DATA_SOURCE_CLASSES = [data_source_class(spec) for spec in DATA_SOURCES]


def _setting(config: Config, name: str, env: str) -> str | None:
    value: Any = config.get(name)
    if value is None or value is Unknown or value == "":
        value = os.environ.get(env) or None
    return value if isinstance(value, str) else None


class PgfleetProvider(Provider):
    def __init__(self) -> None:
        self._client: ApiClient | None = None

    def get_model_prefix(self) -> str:
        return TYPE_PREFIX

    def full_name(self) -> str:
        return SOURCE_ADDRESS

    def get_provider_schema(self, diags: Diagnostics) -> Schema:
        return provider_schema()

    def validate_config(self, diags: Diagnostics, config: Config) -> None:
        endpoint = config.get("endpoint")
        if isinstance(endpoint, str) and not endpoint.startswith(("http://", "https://")):
            diags.add_error("Invalid endpoint", f"{endpoint!r} is not an http(s) URL", path=["endpoint"])

    def configure_provider(self, diags: Diagnostics, config: Config) -> None:
        endpoint = _setting(config, "endpoint", ENV_ENDPOINT)
        token = _setting(config, "token", ENV_TOKEN)
        if endpoint and token:
            self._client = ApiClient(endpoint, token)

    def api_client(self, diags: Diagnostics) -> ApiClient | None:
        """The API client, or None with a diagnostic saying what to configure. Checked when a
        resource needs it, so that `terraform validate` works without credentials."""
        if self._client is None:
            diags.add_error(
                "The pgfleet provider is not configured",
                f"Set the provider's `endpoint` and `token`, or ${ENV_ENDPOINT} and ${ENV_TOKEN}.",
            )
        return self._client

    def get_resources(self) -> list[type[Resource]]:
        return list(RESOURCE_CLASSES)

    def get_data_sources(self) -> list[type[DataSource]]:
        return list(DATA_SOURCE_CLASSES)


def main(argv: list[str] | None = None) -> None:
    run_provider(PgfleetProvider(), argv if argv is not None else sys.argv)
    # Terraform waits for the plugin process to exit after every command, several times per
    # apply; the server has stopped and nothing is left to flush but the standard streams, so
    # skip the interpreter's teardown (grpc threads, module finalizers).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
