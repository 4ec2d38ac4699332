"""The served-list record: what one recommend answer showed, under its ``recommendation_id``.

One home for its schema (``ServedList``): the recommend path writes it (``served_document``, a plain dict
in the request's EMF document under ``SERVED_LIST_KEY``), a CloudWatch Logs subscription filter on that
key sends it through Firehose to ``s3://$ARTIFACT_BUCKET/served/`` (the local runner does the same into
the moto bucket), and the attribution job reads it back (``parse_log_line``). docs/experimentation.md
explains the choice: no extra network call on the hot path, a bounded size (at most ``MAX_ITEMS`` ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SERVED_LIST_KEY = "served_list"
"""The top-level key of the log line that holds the record; the subscription filter matches on it."""

SERVED_PREFIX = "served/"
"""Where the records land in the artifact bucket (Firehose's prefix, and the local runner's)."""

MAX_ITEMS = 100
"""The API's largest k: a record holds at most this many ids, so its size is bounded (about 1 KB)."""

ANONYMOUS = None
"""``user_id`` of an answer to an anonymous visitor (``/v1/popular``)."""


class ServedList(BaseModel):
    """One answer. ``movie_ids`` is the list as served, best first: an id's position is its index
    (0-based, as ``ClickEvent.position``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal[1] = 1
    recommendation_id: str = Field(min_length=1, max_length=64)
    served_at: float = Field(description="Epoch seconds when the answer was built.")
    user_id: str | None = Field(description="The token's subject; None for an anonymous visitor.")
    tier: str = Field(max_length=32)
    model_version: str | None = None
    variant: str | None = Field(default=None, description="The experiment variant the user is in.")
    experiment: str | None = None
    movie_ids: list[int] = Field(max_length=MAX_ITEMS)

    def position(self, movie_id: int) -> int | None:
        try:
            return self.movie_ids.index(movie_id)
        except ValueError:
            return None


def served_document(
    *,
    recommendation_id: str,
    served_at: float,
    user_id: str | None,
    tier: str,
    model_version: str | None,
    variant: str | None,
    experiment: str | None,
    movie_ids: Sequence[int],
) -> dict[str, Any]:
    """A ``ServedList`` as plain JSON types, built without validation (the hot path's cost): the
    arguments are the model's fields, and a test holds the two in step."""
    return {
        "schema_version": 1,
        "recommendation_id": recommendation_id,
        "served_at": round(served_at, 3),
        "user_id": user_id,
        "tier": tier,
        "model_version": model_version,
        "variant": variant,
        "experiment": experiment,
        "movie_ids": list(movie_ids[:MAX_ITEMS]),
    }


def parse_log_line(line: str | bytes) -> ServedList | None:
    """The record in one log line (an EMF document, or any JSON object with ``SERVED_LIST_KEY``);
    None for any other line, or a record that does not validate."""
    if SERVED_LIST_KEY.encode() not in (line if isinstance(line, bytes) else line.encode()):
        return None
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get(SERVED_LIST_KEY), dict):
        return None
    try:
        return ServedList.model_validate(document[SERVED_LIST_KEY])
    except ValidationError:
        return None


def parse_lines(body: bytes) -> list[ServedList]:
    """Every record in a delivered object: newline-delimited log lines (Firehose with CloudWatch Logs
    message extraction and a newline delimiter, or the local runner's file); gzip is undone first."""
    if body[:2] == b"\x1f\x8b":
        import gzip

        body = gzip.decompress(body)
    return [record for line in body.splitlines() if (record := parse_log_line(line)) is not None]
