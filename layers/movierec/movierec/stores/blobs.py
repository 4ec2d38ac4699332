"""S3 objects: model artifacts, reports, feature snapshots, popularity snapshots."""

from __future__ import annotations

import io
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from movierec.errors import StoreUnavailableError
from movierec.stores import aws

MULTIPART_THRESHOLD = 64 * 1024 * 1024
"""Bodies from this size go up as a multipart upload (a single PUT stops at 5 GB; parts also retry
one by one). S3's smallest part is 5 MiB."""
MIN_PART = 5 * 1024 * 1024


class BlobStore:
    def __init__(self, bucket: str, s3: Any = None, multipart_threshold: int = MULTIPART_THRESHOLD) -> None:
        self.bucket = bucket
        self._s3 = s3 or aws.client("s3")
        self._part = max(multipart_threshold, MIN_PART)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        try:
            if len(body) >= self._part:
                # Imported here: the recommend function only reads, and pays no s3transfer import.
                from boto3.s3.transfer import TransferConfig

                self._s3.upload_fileobj(
                    io.BytesIO(body), self.bucket, key, ExtraArgs={"ContentType": content_type},
                    Config=TransferConfig(multipart_threshold=self._part, multipart_chunksize=self._part),
                )  # fmt: skip
            else:
                self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        except (BotoCoreError, ClientError, S3UploadFailedError) as error:
            raise StoreUnavailableError(f"S3 put {key}: {error}") from error
        return self.uri(key)

    def keys(self, prefix: str, start_after: str = "") -> list[str]:
        """Every key under ``prefix`` (after ``start_after``, in key order)."""
        found: list[str] = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, StartAfter=start_after or prefix
            )
            for page in pages:
                found.extend(item["Key"] for item in page.get("Contents", []))
        except (BotoCoreError, ClientError) as error:
            raise StoreUnavailableError(f"S3 list {prefix}: {error}") from error
        return found

    def get(self, key: str) -> bytes | None:
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise StoreUnavailableError(f"S3 get {key}: {error}") from error
        except BotoCoreError as error:
            raise StoreUnavailableError(f"S3 get {key}: {error}") from error
        body: bytes = response["Body"].read()
        return body
