"""The ingest benchmark's workload (``python -m bench.ingest``): how much of it each plan runs, and the
seeded mixed events, as Kinesis batches."""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.support import kinesis_event
from training_job.sources.synthetic import GENRES, REGIONS

SEED = 20_261_101

# Per-mille shares of a day's stream: mostly engagements, a few profile and catalogue changes.
MIX: tuple[tuple[str, int], ...] = (
    ("rating", 260),
    ("watch", 250),
    ("click", 180),
    ("impression", 120),
    ("search", 60),
    ("add_to_list", 50),
    ("signup", 30),
    ("profile", 20),
    ("movie_upsert", 25),
    ("movie_retire", 5),
)
ACTIVE_SESSIONS = 40
SESSION_CONTINUES = 0.75
"""The chance that an event belongs to a session already under way rather than a new one."""
WORDS = ("space", "opera", "heist", "love", "night", "city", "dragon", "war", "comedy", "detective")
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "JP", "NG", "SE", "MX")


@dataclass(frozen=True)
class Plan:
    users: int
    movies: int
    batches: dict[int, int]  # batch size -> timed batches
    warmup_batches: int  # of the smallest size, before anything is timed
    count_sizes: tuple[int, ...]  # batch sizes of the round-trip counting pass


# A real MongoDB (mongod on PATH, or MONGODB_URI) takes the full plan in its stride.
QUICK = Plan(
    users=20_000, movies=5_000, batches={100: 30, 1_000: 4}, warmup_batches=2, count_sizes=(10, 100, 1_000)
)
FULL = Plan(
    users=200_000,
    movies=20_000,
    batches={100: 200, 1_000: 25},
    warmup_batches=3,
    count_sizes=(10, 100, 1_000),
)
# The MongoDB-wire server (mongoeco) checks every inserted _id against every stored document, so a batch of
# n inserts costs O(n^2) and a 1,000-event batch takes over ten seconds: fewer batches, and none of 1,000
# in --quick (the counting pass still compares 10 with 100 events).
QUICK_WIRE = Plan(users=20_000, movies=5_000, batches={100: 10}, warmup_batches=1, count_sizes=(10, 100))
FULL_WIRE = Plan(
    users=200_000, movies=20_000, batches={100: 40, 1_000: 2}, warmup_batches=1, count_sizes=(10, 100, 1_000)
)


class Workload:
    """Seeded mixed events from many users.

    User activity is skewed (a few heavy users, a long tail) and comes in sessions: most events belong
    to one of the users active right now (a browse -> click -> watch -> rate burst), the rest start a new
    session. Kinesis partitions by user id, so a shard's batch sees the same users several times.
    Movie popularity is skewed too.
    """

    def __init__(self, plan: Plan, seed: int = SEED) -> None:
        self._rng = random.Random(seed)
        self._users = plan.users
        self._movies = plan.movies
        self._types = [kind for kind, _ in MIX]
        self._weights = [weight for _, weight in MIX]
        self._sessions = [self._new_user() for _ in range(ACTIVE_SESSIONS)]
        self._sequence = 1

    def _new_user(self) -> str:
        return f"u{int(self._users * self._rng.random() ** 2)}"

    def _user(self) -> str:
        slot = self._rng.randrange(ACTIVE_SESSIONS)
        if self._rng.random() >= SESSION_CONTINUES:
            self._sessions[slot] = self._new_user()
        return self._sessions[slot]

    def _movie(self) -> int:
        return 1 + int(self._movies * self._rng.random() ** 3)

    def event(self, now: float, kind: str | None = None) -> dict[str, Any]:
        rng = self._rng
        kind = kind or rng.choices(self._types, self._weights)[0]
        moment = datetime.fromtimestamp(now - rng.uniform(0, 900), UTC)
        document: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "type": kind,
            "schema_version": 1,
            "occurred_at": moment.isoformat(),
        }
        if kind in {"rating", "watch", "click", "add_to_list", "search", "impression", "signup", "profile"}:
            document["user_id"] = self._user()
        if kind in {"rating", "watch", "click", "add_to_list", "movie_upsert", "movie_retire"}:
            document["movie_id"] = self._movie()
        if kind == "rating":
            document["rating"] = rng.randint(1, 10) / 2
        elif kind == "watch":
            document["seconds_watched"] = rng.randint(30, 9_000)
            document["completion"] = round(rng.random(), 3)
        elif kind == "click":
            document["recommendation_id"] = uuid.UUID(int=rng.getrandbits(128)).hex
            document["position"] = rng.randint(0, 20)
        elif kind == "impression":
            document["recommendation_id"] = uuid.UUID(int=rng.getrandbits(128)).hex
            document["movie_ids"] = sorted({self._movie() for _ in range(10)})
            document["source"] = rng.choice(("personalized", "regional_popular", "global_popular"))
        elif kind == "search":
            document["query"] = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
        elif kind == "signup":
            document["region"] = rng.choice(REGIONS)
            document["country"] = rng.choice(COUNTRIES)
            document["locale"] = "en-US"
            document["birth_year"] = rng.randint(1940, 2010)
        elif kind == "profile":
            document["locale"] = rng.choice(("en-GB", "de-DE", "fr-FR", "pt-BR"))
            if rng.random() < 0.3:
                document["region"] = rng.choice(REGIONS)
        elif kind == "movie_upsert":
            document["title"] = (
                f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {rng.randint(1, 99)}"
            )
            document["genres"] = rng.sample(GENRES, rng.randint(1, 3))
            document["year"] = rng.randint(1920, 2026)
            document["cast"] = [f"Actor {rng.randint(1, 5_000)}" for _ in range(4)]
            document["plot"] = " ".join(rng.choices(WORDS, k=40))
        return document

    def kinesis_batch(self, size: int, *, every_type: bool = False) -> dict[str, Any]:
        """A batch of fresh events; ``every_type`` starts it with one event of each type."""
        now = time.time()
        kinds: list[str | None] = [*self._types] if every_type else []
        kinds += [None] * (size - len(kinds))
        payloads = [json.dumps(self.event(now, k), separators=(",", ":")).encode() for k in kinds[:size]]
        event = kinesis_event(payloads, first_sequence=self._sequence, arrival=now)
        self._sequence += size
        return event
