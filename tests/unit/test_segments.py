"""Segment definitions and names: the same segment from a serving profile and from training data."""

from __future__ import annotations

import numpy as np
import pytest

from movierec import keys, segments
from movierec.data.dataset import Users
from movierec.segments import dataset_segments, segment_of

NOW = 2025
PROFILE = {"region": "eu-west", "country": "DE", "locale": "de-DE", "birth_year": "1990"}


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        ("region", "region=eu-west"),
        ("country", "country=de"),
        ("age_band", "age=35-44"),
        ("region+age_band", "region=eu-west|age=35-44"),
        ("country+age_band", "country=de|age=35-44"),
        ("region+country", "region=eu-west|country=de"),
    ],
)
def test_every_definition_names_a_full_profile(definition: str, expected: str) -> None:
    assert segment_of(definition, PROFILE, NOW) == expected


def test_every_candidate_is_a_valid_definition() -> None:
    assert segments.DEFAULT_DEFINITION in segments.CANDIDATES
    for definition in segments.CANDIDATES:
        assert segments.parse_definition(definition)
        assert segment_of(definition, PROFILE, NOW) is not None


def test_the_region_segment_is_the_published_key_layout() -> None:
    for region in ("eu", "EU", " eu ", "us-east", "us east"):
        assert segment_of("region", {"region": region}, NOW) == keys.region_segment(region)
    assert keys.region_segment(" EU ") == "region=eu"


@pytest.mark.parametrize("definition", segments.CANDIDATES)
@pytest.mark.parametrize(
    "profile",
    [
        {},
        {"region": "", "country": "", "birth_year": ""},
        {"region": "   ", "country": "D", "birth_year": "nineteen-ninety"},
        {"region": "a|b", "country": "DEU", "birth_year": "19.5"},
        {"region": "e\tu", "country": "d", "birth_year": "1_990"},
        {"region": "{tag}", "country": "1a", "birth_year": "2030"},  # a future birth year
        {"region": "x" * 65, "country": "d e", "birth_year": "1800"},  # older than any person
    ],
)
def test_missing_or_garbage_fields_give_no_segment(definition: str, profile: dict[str, str]) -> None:
    assert segment_of(definition, profile, NOW) is None


def test_one_missing_attribute_is_enough_for_no_segment() -> None:
    assert segment_of("region+age_band", {"region": "eu"}, NOW) is None
    assert segment_of("region+age_band", {"birth_year": "1990"}, NOW) is None
    assert segment_of("region", {"birth_year": "1990"}, NOW) is None


def test_an_unknown_definition_gives_no_segment_at_serving_and_fails_elsewhere() -> None:
    for definition in ("gender", "age_band+region", "region+region", "", "Region"):
        assert segment_of(definition, PROFILE, NOW) is None
        assert not segments.is_definition(definition)
        with pytest.raises(ValueError, match="segment definition"):
            segments.parse_definition(definition)


@pytest.mark.parametrize(
    ("age", "band"),
    [(0, None), (-3, None), (121, None), (1, "0-17"), (17, "0-17"), (18, "18-24"), (24, "18-24"),
     (25, "25-34"), (44, "35-44"), (45, "45-54"), (50, "45-54"), (56, "55-64"), (65, "65+"), (120, "65+")],
)  # fmt: skip
def test_age_bands(age: int, band: str | None) -> None:
    assert segments.age_band(age) == band


def test_birth_year_is_an_age_relative_to_the_year_asked() -> None:
    assert segment_of("age_band", {"birth_year": "2000"}, 2024) == "age=18-24"
    assert segment_of("age_band", {"birth_year": "2000"}, 2025) == "age=25-34"
    assert segment_of("age_band", {"birth_year": " 2000 "}, 2025) == "age=25-34"


def test_includes_region() -> None:
    assert segments.includes_region("region")
    assert segments.includes_region("region+age_band")
    assert not segments.includes_region("age_band")
    assert not segments.includes_region("country+age_band")
    assert not segments.includes_region("nonsense")


def test_a_segment_blends_with_its_regions_trending_counters_or_the_global_ones() -> None:
    assert segments.trending_segment("region=eu-west") == "region=eu-west"
    assert segments.trending_segment("region=eu-west|age=25-34") == "region=eu-west"
    assert segments.trending_segment("age=25-34") is None
    assert segments.trending_segment("country=de|age=25-34") is None
    assert segments.trending_segment("global") is None


def test_training_columns_name_the_same_segments_as_profiles() -> None:
    users = Users(
        ids=["a", "b", "c", "d"],
        region=["EU-West", "", "apac", "eu-west"],
        age=np.asarray([35, 30, 0, 70], dtype=np.int16),
        country=["DE", "FR", "", "x"],
    )
    assert dataset_segments("region", users) == ["region=eu-west", None, "region=apac", "region=eu-west"]
    assert dataset_segments("age_band", users) == ["age=35-44", "age=25-34", None, "age=65+"]
    assert dataset_segments("country", users) == ["country=de", "country=fr", None, None]
    assert dataset_segments("region+age_band", users) == [
        segment_of("region+age_band", {"region": "eu-west", "birth_year": "1990"}, NOW),
        None,
        None,
        "region=eu-west|age=65+",
    ]


def test_training_columns_that_the_source_lacks_mean_unknown() -> None:
    users = Users(ids=["a", "b"], region=["eu", "us"])  # no age, no country columns
    assert dataset_segments("age_band", users) == [None, None]
    assert dataset_segments("country", users) == [None, None]
    assert dataset_segments("region", users) == ["region=eu", "region=us"]
