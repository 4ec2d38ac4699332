"""The MongoDB connection (DocumentDB, Atlas, a local mongod or a wire-compatible test server)."""

from __future__ import annotations

from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

from movierec.config import MongoSettings
from movierec.stores.secrets import read_secret

Document = dict[str, Any]


def mongo_uri(settings: MongoSettings) -> str:
    if settings.mongodb_uri is not None:
        return settings.mongodb_uri.get_secret_value()
    assert settings.mongodb_secret_arn is not None  # guaranteed by MongoSettings. validator
    return read_secret(settings.mongodb_secret_arn)


def connect_mongo(settings: MongoSettings) -> Database[Document]:
    client: MongoClient[Document] = MongoClient(
        mongo_uri(settings),
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        connectTimeoutMS=settings.mongodb_timeout_ms,
        socketTimeoutMS=settings.mongodb_timeout_ms * 5,
        retryWrites=False,  # DocumentDB does not support retryable writes
        appname="movierec",
        tz_aware=True,
    )
    return client[settings.mongodb_database]
