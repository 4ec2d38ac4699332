"""The Redis key layout: what one published version holds is matched by its namespace pattern, and
nothing of another version or of the real-time state is."""

from __future__ import annotations

from fnmatch import fnmatchcase

from movierec import keys


def test_a_versions_namespace_holds_exactly_its_own_keys() -> None:
    pattern = keys.version_namespace("20261204T010203000Z")
    own = [
        keys.version_manifest("20261204T010203000Z"),
        keys.recommendations("20261204T010203000Z", "u1"),
        keys.popularity("20261204T010203000Z", keys.GLOBAL_SEGMENT),
        keys.online_recommendations("20261204T010203000Z", "u1"),
    ]
    others = [
        keys.recommendations("20261205T010203000Z", "u1"),
        keys.CURRENT_VERSION,
        keys.PUBLISHED_VERSIONS,
        keys.seen("u1"),
        keys.MOVIES,
        keys.trending(keys.GLOBAL_SEGMENT, 1),
    ]
    assert all(fnmatchcase(key, pattern) for key in own)
    assert not any(fnmatchcase(key, pattern) for key in others)


def test_a_users_keys_share_one_cluster_slot_hash_tag() -> None:
    tagged = [
        keys.seen("u1"),
        keys.recent("u1"),
        keys.stale("u1"),
        keys.profile("u1"),
        keys.unattributed("u1"),
        keys.applied_events("u1"),
        keys.recommendations("v1", "u1"),
        keys.online_recommendations("v1", "u1"),
    ]
    assert all("{u1}" in key for key in tagged)  # one script may read them all in cluster mode
