"""The Redis key layout: the single source of truth for every key the product reads or writes.

Per-user keys carry the user id in a hash tag (``{...}``) so that on a clustered cache (ElastiCache
serverless, cluster-mode replication groups) all of one user's keys live in one slot: one script reads
or writes them together. The catalogue keys share the tag ``{catalogue}`` for the same reason. Every
other key (the published pointer, popularity lists, trending buckets) is read or written on its own or
in a non-transactional pipeline, which a cluster client splits by node, so they need no common slot.
Nothing before a key's tag may hold a brace, and an id's braces are escaped (``user_tag``): otherwise
the first ``{...}`` would be another one, or empty, and one user's keys would scatter over slots.

Published data (recommendation lists, popularity) lives under a version namespace. Readers resolve the
``current`` pointer first; a publish writes a whole new namespace and then switches the pointer, so a
crash half-way leaves the previous version serving untouched.
"""

from __future__ import annotations

from movierec import segments

PREFIX = "mr"

# --- publication --------------------------------------------------------------------------------------

CURRENT_VERSION = f"{PREFIX}:published:current"
"""String: the version id that readers use."""

PUBLISHED_VERSIONS = f"{PREFIX}:published:versions"
"""Sorted set: version id -> publish time (epoch seconds), for audit and garbage collection."""

PINNED_VERSIONS = f"{PREFIX}:published:pinned"
"""Hash: experiment variant name (``challenger``) -> a version kept live beside ``CURRENT_VERSION``:
never expired by a later publication while pinned (docs/experimentation.md)."""


def user_tag(user_id: str) -> str:
    """The user's hash tag: the id itself, except that ``{``, ``}`` (and ``%``, to stay one-to-one) are
    percent-escaped. Ingest accepts no such ids (``events.UserId``), so their keys are unchanged; a
    token subject with a brace still gets keys of one slot. An empty id (never accepted either) gets
    ``{%}``, which no escaped id can be: an empty tag would hash each key whole."""
    if not user_id:
        return "{%}"
    if "{" in user_id or "}" in user_id or "%" in user_id:
        user_id = user_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return f"{{{user_id}}}"


def _version(version: str) -> str:
    if "{" in version or "}" in version:
        raise ValueError(
            f"a version id may not hold a brace (it would become the keys' hash tag): {version!r}"
        )
    return version


def version_namespace(version: str) -> str:
    """SCAN pattern of every key a published version holds (its manifest and lists), to expire them."""
    return f"{PREFIX}:v:{_version(version)}:*"


def version_manifest(version: str) -> str:
    """String (JSON): what a version holds: model version, data cutoff, counts, segment definition."""
    return f"{PREFIX}:v:{_version(version)}:manifest"


def recommendations(version: str, user_id: str) -> str:
    """String (an item list, see ``publication``): the precomputed top-N for one user in a version."""
    return f"{PREFIX}:v:{_version(version)}:recs:{user_tag(user_id)}"


def popularity(version: str, segment: str) -> str:
    """String (an item list): batch popularity for a segment (``global`` or ``region=eu``)."""
    return f"{PREFIX}:v:{_version(version)}:pop:{segment}"


def online_recommendations(version: str, user_id: str) -> str:
    """String (an item list): an online-scored list written back by the recommend path, with a TTL."""
    return f"{PREFIX}:v:{_version(version)}:online:{user_tag(user_id)}"


# --- catalogue ----------------------------------------------------------------------------------------

# The catalogue keys share one hash tag so a script can update them together on a clustered cache.
MOVIES = f"{PREFIX}:{{catalogue}}:movies"
"""Hash: movie id -> JSON metadata (title, genres, year). Kept current by ingest and by publication."""

MOVIE_VERSIONS = f"{PREFIX}:{{catalogue}}:versions"
"""Hash: movie id -> version of the last applied metadata event (last writer wins)."""

RETIRED_MOVIES = f"{PREFIX}:{{catalogue}}:retired"
"""Set: movie ids that must never be recommended again."""


# --- real-time user state (written by ingest) ----------------------------------------------------------


def seen(user_id: str) -> str:
    """Set: movie ids the user interacted with; the recommend path excludes them."""
    return f"{PREFIX}:u:{user_tag(user_id)}:seen"


def recent(user_id: str) -> str:
    """Sorted set (capped): movie id -> latest engagement time, for online fold-in."""
    return f"{PREFIX}:u:{user_tag(user_id)}:recent"


def stale(user_id: str) -> str:
    """String: epoch seconds of the user's latest engagement. A precomputed list built from data older
    than this is stale: the recommend path re-scores online instead."""
    return f"{PREFIX}:u:{user_tag(user_id)}:stale"


def profile(user_id: str) -> str:
    """Hash: sign-up profile fields the recommend path segments on (region, country, birth year), plus
    ``<field>@v`` versions for last-writer-wins."""
    return f"{PREFIX}:u:{user_tag(user_id)}:profile"


def unattributed(user_id: str) -> str:
    """List of ``movie_id:epoch`` engagements applied before the user's region was known. They join
    regional trending once the region arrives, so a late sign-up event changes nothing in the end."""
    return f"{PREFIX}:u:{user_tag(user_id)}:unattributed"


def applied_events(user_id: str) -> str:
    """Sorted set: event id -> apply time for the user's recent events, so that redelivered events do
    not count twice in trending. Trimmed by age."""
    return f"{PREFIX}:u:{user_tag(user_id)}:applied"


COUNTING_STATE_PATTERNS = (
    f"{PREFIX}:u:*:applied",
    f"{PREFIX}:u:*:unattributed",
    f"{PREFIX}:trend:*",
)
"""SCAN patterns of the keys that together count each engagement once in trending: the applied markers,
the engagements waiting for a region, and the trending buckets. A rebuild that recounts trending drops
all three together (``RealtimeState.forget_counts``)."""


# --- trending -----------------------------------------------------------------------------------------


def trending(segment: str, bucket: int) -> str:
    """Sorted set: movie id -> interaction count within one time bucket for a segment."""
    return f"{PREFIX}:trend:{segment}:{bucket}"


# --- segments -----------------------------------------------------------------------------------------

GLOBAL_SEGMENT = "global"


def region_segment(region: str) -> str:
    """The popularity segment name for a region, normalised so 'EU' and ' eu ' are one segment.

    Segment names (other definitions too) are defined in ``movierec.segments``."""
    return segments.region_segment(region)
