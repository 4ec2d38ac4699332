"""The training export: the same events make the same dataset, whatever order MongoDB returns them in."""

from __future__ import annotations

from typing import Any

import numpy as np
import pymongo

from movierec.events import EVENT_ADAPTER
from movierec.stores.documents import EventDocuments
from tests.support import event_payload
from training_job.stores.training_source import read_dataset


def engagements() -> list[Any]:
    payloads = [
        event_payload(kind, n, user_id=f"u{n % 4}", movie_id=10 + n % 5, **extra)
        for n, (kind, extra) in enumerate(
            [("rating", {"rating": 4.5}), ("watch", {"completion": 0.7}), ("click", {})] * 6
        )
    ]
    payloads.append(event_payload("rating", 99, user_id="u1", movie_id=12, rating=2.0))
    return [EVENT_ADAPTER.validate_json(payload) for payload in payloads]


def test_events_stored_in_any_order_read_as_the_same_dataset(
    mongo_uri: str, mongo_database_name: str
) -> None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_uri)
    events = engagements()
    datasets = []
    for name, order in (("forward", events), ("backward", events[::-1])):
        database = client[f"{mongo_database_name}_{name}"]
        store = EventDocuments(database)
        for event in order:  # one statement each: the stored (natural) order follows
            store.store_events([event])
            store.write_effects([event], [], [])
        datasets.append(read_dataset(database))
        client.drop_database(database.name)

    forward, backward = datasets
    assert forward.users.ids == backward.users.ids == sorted(forward.users.ids)
    assert list(forward.movies.ids) == list(backward.movies.ids) == sorted(forward.movies.ids)
    for column in ("user", "movie", "value", "timestamp", "kind"):
        np.testing.assert_array_equal(
            getattr(forward.interactions, column), getattr(backward.interactions, column)
        )
    assert np.all(np.diff(forward.interactions.timestamp) >= 0), "interactions in time order"
    assert len(forward.interactions) == len(events)
