"""The Redis key layout: the single source of truth for every key the product reads or writes.

Per-user keys carry the user id in a hash tag (``{...}``) so that on a clustered cache (ElastiCache
serverless, cluster-mode replication groups) all of one user's keys live in one slot and can be read
in a single pipelined round trip.

Published data (recommendation lists, popularity) lives under a version namespace. Readers resolve the
``current`` pointer first; a publish writes a whole new namespace and then switches the pointer, so a
crash half-way leaves the previous version serving untouched.
"""

from __future__ import annotations

PREFIX = "mr"

# --- publication --------------------------------------------------------------------------------------

CURRENT_VERSION = f"{PREFIX}:published:current"
"""String: the version id that readers use."""

PUBLISHED_VERSIONS = f"{PREFIX}:published:versions"
"""Sorted set: version id -> publish time (epoch seconds), for audit and garbage collection."""


def version_manifest(version: str) -> str:
    """String (JSON): what a version holds: model version, data cutoff, counts, segment definition."""
    return f"{PREFIX}:v:{version}:manifest"


def recommendations(version: str, user_id: str) -> str:
    """String (JSON list of items): the precomputed top-N for one user in one published version."""
    return f"{PREFIX}:v:{version}:recs:{{{user_id}}}"


def popularity(version: str, segment: str) -> str:
    """String (JSON list of items): batch popularity for a segment (``global`` or ``region=eu``)."""
    return f"{PREFIX}:v:{version}:pop:{segment}"


def online_recommendations(version: str, user_id: str) -> str:
    """String (JSON list of items): an online-scored list written back by the recommend path, with a TTL."""
    return f"{PREFIX}:v:{version}:online:{{{user_id}}}"


# --- catalogue ----------------------------------------------------------------------------------------

MOVIES = f"{PREFIX}:movies"
"""Hash: movie id -> JSON metadata (title, genres, year). Kept current by ingest and by publication."""

RETIRED_MOVIES = f"{PREFIX}:movies:retired"
"""Set: movie ids that must never be recommended again."""


# --- real-time user state (written by ingest) ----------------------------------------------------------


def seen(user_id: str) -> str:
    """Set: movie ids the user interacted with; the recommend path excludes them."""
    return f"{PREFIX}:u:{{{user_id}}}:seen"


def recent(user_id: str) -> str:
    """List (newest first, capped): recent interactions as ``movie_id`` strings, for online fold-in."""
    return f"{PREFIX}:u:{{{user_id}}}:recent"


def stale(user_id: str) -> str:
    """String: set when the user's precomputed list no longer reflects their activity."""
    return f"{PREFIX}:u:{{{user_id}}}:stale"


def profile(user_id: str) -> str:
    """Hash: sign-up profile fields the recommend path segments on (region, country, age band)."""
    return f"{PREFIX}:u:{{{user_id}}}:profile"


# --- trending -----------------------------------------------------------------------------------------


def trending(segment: str, bucket: int) -> str:
    """Sorted set: movie id -> interaction count within one time bucket for a segment."""
    return f"{PREFIX}:trend:{segment}:{bucket}"


# --- ingest bookkeeping ---------------------------------------------------------------------------------


def applied_event(event_id: str) -> str:
    """String: marks an event whose Redis effects were applied, so redelivery does not double-count."""
    return f"{PREFIX}:applied:{event_id}"


# --- segments -----------------------------------------------------------------------------------------

GLOBAL_SEGMENT = "global"


def region_segment(region: str) -> str:
    """The popularity segment name for a region, normalised so 'EU' and ' eu ' are one segment."""
    return f"region={region.strip().lower()}"
