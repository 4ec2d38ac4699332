"""The layer's thin reader of Feast's Redis layout on bad input: a missing row or field gives the
documented defaults, a cache that is down gives defaults from ``read_or_defaults`` (never a 500), and a
value that is not the protobuf the schema says is a clear error naming the field. Its byte-level parts
(murmur3, entity keys, Value protobufs) against Feast's own encoders where Feast is installed."""

from __future__ import annotations

import struct

import pytest
import redis

from infra.local.servers import RedisServer
from movierec.config import RedisSettings
from movierec.feature_views import (
    MOVIE_METADATA_V1,
    MOVIE_STATS_V1,
    USER,
    USER_ACTIVITY_V1,
    USER_TASTE_V1,
    VIEWS,
    from_movie_metadata,
    movie_model_features,
)
from movierec.stores.cache import connect_redis
from movierec.stores.online_features import (
    FeatureDecodeError,
    OnlineFeatureReader,
    entity_key,
    feature_field,
    murmur3_32,
)

_TS = b"\x08\x80\x8b\xd2\xbb\x06"  # Timestamp{seconds=1735689600}


def test_a_missing_row_gives_the_documented_defaults(redis_client: redis.Redis) -> None:
    reader = OnlineFeatureReader(redis_client)
    rows = reader.read([USER_ACTIVITY_V1, USER_TASTE_V1], ["nobody"])
    assert rows[USER_ACTIVITY_V1.name][0].values == USER_ACTIVITY_V1.defaults
    assert rows[USER_TASTE_V1.name][0].values == {"top_genres": (), "top_genre_shares": ()}
    assert not rows[USER_ACTIVITY_V1.name][0].found
    user, movies = reader.read_user_and_movies("nobody", [1, 2], [USER_ACTIVITY_V1], [MOVIE_STATS_V1])
    assert user[USER_ACTIVITY_V1.name].values == USER_ACTIVITY_V1.defaults
    assert [r.values for r in movies[MOVIE_STATS_V1.name]] == [MOVIE_STATS_V1.defaults] * 2


def test_a_row_missing_one_feature_gets_that_features_default(redis_client: redis.Redis) -> None:
    key = entity_key(USER, "u1")
    value = b"\x35" + struct.pack("<f", 1.5)  # Value{float_val=1.5}
    redis_client.hset(
        key,
        mapping={
            feature_field(USER_ACTIVITY_V1.name, "activity_7d"): value,
            f"_ts:{USER_ACTIVITY_V1.name}": _TS,
        },
    )
    row = OnlineFeatureReader(redis_client).read([USER_ACTIVITY_V1], ["u1"])[USER_ACTIVITY_V1.name][0]
    assert row.found
    assert row.event_time == 1735689600
    assert row.values == USER_ACTIVITY_V1.defaults | {"activity_7d": 1.5}


def test_a_value_that_is_not_its_protobuf_is_an_error_naming_the_field(redis_client: redis.Redis) -> None:
    key = entity_key(USER, "u1")
    field = feature_field(USER_ACTIVITY_V1.name, "mean_rating")
    redis_client.hset(key, mapping={field: b"\x35\x00", f"_ts:{USER_ACTIVITY_V1.name}": _TS})
    with pytest.raises(FeatureDecodeError, match="user_activity_v1:mean_rating"):
        OnlineFeatureReader(redis_client).read([USER_ACTIVITY_V1], ["u1"])


def test_a_cache_that_is_down_gives_defaults_not_an_error(disposable_redis: RedisServer) -> None:
    client = connect_redis(RedisSettings(redis_url=disposable_redis.url))
    disposable_redis.stop()
    rows = OnlineFeatureReader(client).read_or_defaults([MOVIE_STATS_V1], [7])
    assert rows[MOVIE_STATS_V1.name][0].values == MOVIE_STATS_V1.defaults


def test_murmur3_and_the_layout_match_feasts_encoders() -> None:
    mmh3 = pytest.importorskip("mmh3", reason="comes with the features extra")
    helpers = pytest.importorskip("feast.infra.online_stores.helpers")
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    for data in (b"", b"a", b"ab", b"abc", b"abcd", b"user_activity_v1:activity_7d", "é😀".encode()):
        assert murmur3_32(data) == mmh3.hash(data, signed=False)
    for spec in VIEWS:
        for feature in spec.features:
            assert feature_field(spec.name, feature.name) == helpers._mmh3(f"{spec.name}:{feature.name}")
    user_key = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val="u-1")])
    assert entity_key(USER, "u-1") == serialize_entity_key(user_key, 3) + b"movierec"
    movie_key = EntityKey(join_keys=["movie_id"], entity_values=[Value(int64_val=-5)])
    assert entity_key(MOVIE_STATS_V1.entity, -5) == serialize_entity_key(movie_key, 3) + b"movierec"


def test_a_movies_model_features_come_from_its_metadata_and_stats() -> None:
    names = ["genre:Comedy", "genre:Drama", "year", "year_unknown", "popularity_all", "mean_rating"]
    stats = MOVIE_STATS_V1.defaults | {"popularity_all": 2.0}
    metadata = MOVIE_METADATA_V1.defaults | {"genres": ("Drama",), "year": 1999.0}
    assert movie_model_features(names, stats, metadata) == [0.0, 1.0, 1999.0, 0.0, 2.0, 3.5]
    unknown = movie_model_features(names, MOVIE_STATS_V1.defaults, MOVIE_METADATA_V1.defaults)
    assert unknown == [0.0, 0.0, 0.0, 1.0, 0.0, 3.5]
    filled = movie_model_features(names, stats, MOVIE_METADATA_V1.defaults, unknown_year=1995.0)
    assert filled[2:4] == [1995.0, 1.0]  # as training fills in an unknown year
    assert [from_movie_metadata(name) for name in names] == [True, True, True, True, False, False]
