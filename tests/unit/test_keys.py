"""The Redis key layout: what one published version holds is matched by its namespace pattern, and
nothing of another version or of the real-time state is; keys that one script touches together hash to
one Redis Cluster slot."""

from __future__ import annotations

import inspect
from fnmatch import fnmatchcase

import pytest
from redis.crc import key_slot

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


USER_IDS = ["u1", "ana@example.org", "a}b", "}x", "{x}", "x{", "%7B", "%", "", "üñí"]
VERSION = "20261204T010203000Z"


def per_user_keys(user_id: str) -> list[str]:
    """Every key function that takes a user id, so a new per-user key is checked without listing it."""
    found: list[str] = []
    for name, function in vars(keys).items():
        if name == "user_tag" or not inspect.isfunction(function) or function.__module__ != keys.__name__:
            continue
        parameters = list(inspect.signature(function).parameters)
        if parameters == ["user_id"]:
            found.append(function(user_id))
        elif parameters == ["version", "user_id"]:
            found.append(function(VERSION, user_id))
    return found


def test_every_per_user_key_is_found() -> None:
    assert len(per_user_keys("u1")) == 8  # seen, recent, stale, profile, unattributed, applied, recs, online


@pytest.mark.parametrize("user_id", USER_IDS)
def test_a_users_keys_hash_to_one_cluster_slot_whatever_the_id(user_id: str) -> None:
    slots = {key_slot(key.encode()) for key in per_user_keys(user_id)}
    assert len(slots) == 1  # the engagement, profile and read scripts each touch several of them


def test_an_ordinary_ids_tag_is_the_id_itself_and_escaping_stays_one_to_one() -> None:
    assert keys.seen("u1") == "mr:u:{u1}:seen"
    assert key_slot(keys.seen("u1").encode()) == key_slot(b"u1")
    tags = [keys.user_tag(u) for u in USER_IDS]
    assert len(set(tags)) == len(tags)
    assert all(tag.count("{") == 1 and tag.count("}") == 1 for tag in tags)


def test_the_catalogue_keys_hash_to_one_slot() -> None:
    catalogue = [keys.MOVIES, keys.MOVIE_VERSIONS, keys.RETIRED_MOVIES]
    assert len({key_slot(key.encode()) for key in catalogue}) == 1  # one script updates all three


def test_a_version_with_a_brace_is_refused_as_it_would_become_the_hash_tag() -> None:
    with pytest.raises(ValueError, match="brace"):
        keys.recommendations("v{1}", "u1")
