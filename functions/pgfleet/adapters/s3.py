"""ObjectStore on an S3 bucket (moto's locally): path-style addressing, so a loopback
endpoint works; presigned GETs for the download links."""

from __future__ import annotations

from pgfleet.adapters.aws import client, error_code
from pgfleet.core.errors import StoreError
from pgfleet.ports.object_store import DEFAULT_LINK_SECONDS, ObjectStore


class S3ObjectStore(ObjectStore):
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def put(self, key: str, body: bytes, content_type: str) -> None:
        try:
            client("s3").put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ServerSideEncryption="AES256",
            )
        except Exception as exc:
            raise StoreError(f"s3://{self.bucket}/{key}: {error_code(exc) or exc}") from exc

    def get(self, key: str) -> bytes | None:
        try:
            response = client("s3").get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise StoreError(f"s3://{self.bucket}/{key}: {error_code(exc) or exc}") from exc
        return bytes(response["Body"].read())

    def link(self, key: str, expires_seconds: int = DEFAULT_LINK_SECONDS, filename: str | None = None) -> str:
        params = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return str(
            client("s3").generate_presigned_url("get_object", Params=params, ExpiresIn=expires_seconds)
        )
