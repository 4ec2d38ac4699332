"""Rebuilding Redis's real-time state from the events MongoDB holds.

Redis is a cache of what the events imply (seen sets, recent items, profiles, the live catalogue,
trending counts); MongoDB is the system of record. When Redis lost what it had (an ElastiCache node
replaced without a snapshot, a flush, a cold restart of a server without persistence), events that
ingest had already acknowledged are nowhere to be redelivered, so their effects are re-derived here:
the stored events are read back and applied through the same ``RealtimeState.apply`` that ingest uses.

Every effect is idempotent (sets, last-writer-wins by version, the maximum of times) and trending counts
are guarded by each user's applied-event markers, so after a whole loss, or on top of a Redis that
lost nothing, a rebuild counts nothing twice, even while ingest keeps writing. After a *partial* loss
(some keys gone, as a failover to a lagging replica may leave) markers and counts no longer match:
``recount_trending`` first drops the trending buckets with their markers and waiting engagements
(``keys.COUNTING_STATE_PATTERNS``), and every stored engagement is counted again, once; increments
ingest makes during that recount may be lost from the current buckets (a trending signal, not a
record). Profiles go first, then movies, then engagements, so each engagement finds its user's region
and counts in its regional trending at once.

``python -m infra.ops.rebuild [--since ISO-8601]`` runs it with the ingest function's settings
(docs/operations.md). Without ``--since`` it reads every stored event of the types that change state.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from movierec.events import ENGAGEMENT_EVENTS, MOVIE_EVENTS, PROFILE_EVENTS, type_names
from movierec.ingest.effects import RealtimeChanges
from movierec.observability import logger
from movierec.stores.documents import EventDocuments
from movierec.stores.realtime import RealtimeState, TrendingPolicy

PASSES = (PROFILE_EVENTS, MOVIE_EVENTS, ENGAGEMENT_EVENTS)
"""In this order: profiles first, so that engagements find the user's region."""
DEFAULT_PAGE = 1_000


@dataclass
class RebuildSummary:
    events: int = 0
    profiles: int = 0
    movies: int = 0
    engagements: int = 0
    unreadable: int = 0  # stored documents that are no longer a valid event (an older schema)
    counting_keys_dropped: int = 0  # with recount_trending


def rebuild_realtime(
    documents: EventDocuments,
    realtime: RealtimeState,
    trending: TrendingPolicy,
    *,
    since: datetime | None = None,
    recount_trending: bool = False,
    page_size: int = DEFAULT_PAGE,
    clock: Callable[[], float] = time.time,
) -> RebuildSummary:
    """Apply every stored event of the state-changing types to Redis; raises StoreUnavailableError when
    either store fails (safe to run again: nothing is applied twice)."""
    summary = RebuildSummary()
    if recount_trending:
        summary.counting_keys_dropped = realtime.forget_counts()
    for event_classes in PASSES:
        for page in documents.read_events(type_names(event_classes), since=since, page_size=page_size):
            changes = RealtimeChanges.of(page.events)
            realtime.apply(changes.engagements, changes.profiles, changes.movies, trending, clock())
            summary.events += len(page.events)
            summary.profiles += len(changes.profiles)
            summary.movies += len(changes.movies)
            summary.engagements += len(changes.engagements)
            summary.unreadable += page.unreadable
    if summary.unreadable:
        logger.warning("stored events that no longer validate were skipped", extra=asdict(summary))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.ops.rebuild",
        description="Rebuild Redis's real-time state (seen, recent, profiles, catalogue, trending) from"
        " the events stored in MongoDB. Idempotent; safe while ingest runs.",
    )
    parser.add_argument(
        "--since",
        type=datetime.fromisoformat,
        help="only events that occurred at or after this time (ISO 8601 with a timezone); default: all",
    )
    parser.add_argument(
        "--recount-trending",
        action="store_true",
        help="after a partial loss: drop trending counts and their markers first, then count every"
        " stored engagement again (use the full history, no --since)",
    )
    parser.add_argument("--page-size", type=int, default=DEFAULT_PAGE, help="events per Redis round trip")
    args = parser.parse_args(argv)
    if args.page_size < 1:
        parser.error("--page-size must be at least 1")
    if args.since is not None and args.since.tzinfo is None:
        parser.error("--since needs a timezone, e.g. 2026-11-01T00:00:00+00:00")
    if args.since is not None and args.recount_trending:
        parser.error("--recount-trending counts every stored engagement: it cannot take --since")

    # Imported here: the settings come from the environment, and building the stores connects.
    from movierec.config import IngestSettings
    from movierec.ingest.wiring import build_documents, build_realtime_state, trending_policy

    settings = IngestSettings()
    summary = rebuild_realtime(
        build_documents(settings),
        build_realtime_state(settings),
        trending_policy(settings),
        since=args.since,
        recount_trending=args.recount_trending,
        page_size=args.page_size,
    )
    print(json.dumps(asdict(summary), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
