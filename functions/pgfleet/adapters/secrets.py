"""Secrets on AWS Secrets Manager."""

from __future__ import annotations

from pgfleet.adapters.aws import client, error_code
from pgfleet.core.errors import StoreError
from pgfleet.ports.secrets import Secrets


class SecretsManagerSecrets(Secrets):
    def __init__(self, prefix: str = "pgfleet/") -> None:
        self._prefix = prefix

    def _name(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def put(self, name: str, value: str) -> None:
        sm = client("secretsmanager")
        try:
            sm.create_secret(Name=self._name(name), SecretString=value)
        except Exception as exc:
            if error_code(exc) != "ResourceExistsException":
                raise StoreError(f"could not store secret {name}") from exc
            sm.put_secret_value(SecretId=self._name(name), SecretString=value)

    def get(self, name: str) -> str | None:
        try:
            resp = client("secretsmanager").get_secret_value(SecretId=self._name(name))
        except Exception as exc:
            if error_code(exc) in ("ResourceNotFoundException", "InvalidRequestException"):
                return None
            raise StoreError(f"could not read secret {name}") from exc
        return str(resp["SecretString"])

    def delete(self, name: str) -> None:
        try:
            client("secretsmanager").delete_secret(SecretId=self._name(name), ForceDeleteWithoutRecovery=True)
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise StoreError(f"could not delete secret {name}") from exc
