"""S3 objects through moto's server: small bodies in one PUT, large ones as a multipart upload."""

from __future__ import annotations

import boto3
import pytest

from movierec.errors import StoreUnavailableError
from movierec.stores.blobs import MIN_PART, BlobStore


@pytest.fixture
def bucket(aws_reset: str) -> str:
    boto3.client("s3").create_bucket(Bucket="blobs")
    return "blobs"


def test_a_body_over_the_threshold_goes_up_in_parts_and_reads_back_whole(bucket: str) -> None:
    store = BlobStore(bucket, multipart_threshold=MIN_PART)
    body = bytes(range(256)) * (MIN_PART * 2 // 256 + 7)  # two full parts and a short last one
    uri = store.put("runs/r1/dataset.npz", body, "application/x-npz")
    assert uri == "s3://blobs/runs/r1/dataset.npz"
    assert store.get("runs/r1/dataset.npz") == body
    head = boto3.client("s3").head_object(Bucket=bucket, Key="runs/r1/dataset.npz")
    assert head["ETag"].strip('"').endswith("-3")  # S3's ETag of a three-part upload
    assert head["ContentType"] == "application/x-npz"


def test_a_small_body_is_one_put(bucket: str) -> None:
    store = BlobStore(bucket, multipart_threshold=MIN_PART)
    store.put("small.json", b"{}", "application/json")
    head = boto3.client("s3").head_object(Bucket=bucket, Key="small.json")
    assert "-" not in head["ETag"]
    assert store.get("small.json") == b"{}"
    assert store.get("missing.json") is None


def test_a_missing_bucket_is_a_store_error_not_a_crash(aws_reset: str) -> None:
    store = BlobStore("no-such-bucket", multipart_threshold=MIN_PART)
    with pytest.raises(StoreUnavailableError, match="S3 put big"):
        store.put("big", b"x" * MIN_PART)
    with pytest.raises(StoreUnavailableError, match="S3 put small"):
        store.put("small", b"x")
