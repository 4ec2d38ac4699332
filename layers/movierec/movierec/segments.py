"""Popularity segments: the one place that says which sign-up attributes popularity is keyed on.

A *definition* names attributes joined by ``+`` in canonical order: ``region``, ``age_band``,
``country``, ``region+age_band``... A *segment* is one value of a definition: ``region=eu-west``,
``age=25-34``, ``region=eu-west|age=25-34``. Only attributes that the serving profile hash carries
(ingest writes ``region``, ``country``, ``locale`` and ``birth_year``) can be definitions, or a
segment could be trained that no request can be mapped to.

Training names a user's segment from the dataset's user columns (``dataset_segments``), serving from
the profile hash (``segment_of``); both normalise through the same functions here, so the names agree.
A missing or malformed attribute gives no segment (None): that user is served global popularity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keys.py imports this module: serving and ingest must not pay for numpy here
    from movierec.data.dataset import Users

REGION = "region"
AGE_BAND = "age_band"
COUNTRY = "country"
ATTRIBUTES = (REGION, COUNTRY, AGE_BAND)
"""Canonical order: in definitions and in segment names."""

_LABEL = {REGION: "region", AGE_BAND: "age", COUNTRY: "country"}
_PART_SEPARATOR = "|"
_DEFINITION_SEPARATOR = "+"

DEFAULT_DEFINITION = REGION
"""What a manifest without ``segment_attribute`` means (every version published before segments)."""

CANDIDATES = (REGION, COUNTRY, AGE_BAND, "region+age_band", "country+age_band")
"""The definitions the training job tries, simplest first (the first wins a tie)."""

AGE_BAND_STARTS = (0, 18, 25, 35, 45, 55, 65)
"""Each band runs to the next start; ML-1M's age codes (1, 18, 25, 35, 45, 50, 56) fall inside them."""
MAX_AGE = 120

# Lower-cased forms of the event contract's patterns (events.Region, the country field).
_REGION_VALUE = re.compile(r"[a-z0-9 _.-]{1,64}")
_COUNTRY_VALUE = re.compile(r"[a-z]{2}")
_YEAR = re.compile(r"[0-9]{4}")  # int() alone would take "1_990" or non-ASCII digits


def parse_definition(definition: str) -> tuple[str, ...]:
    """The attributes of a definition; ValueError unless known attributes, each once, in order."""
    attributes = tuple(definition.split(_DEFINITION_SEPARATOR))
    if not all(a in ATTRIBUTES for a in attributes) or len(set(attributes)) != len(attributes):
        raise ValueError(f"unknown segment definition {definition!r}; attributes are {ATTRIBUTES}")
    if list(attributes) != sorted(attributes, key=ATTRIBUTES.index):
        raise ValueError(f"segment definition {definition!r}: attributes go in the order {ATTRIBUTES}")
    return attributes


def is_definition(definition: str) -> bool:
    try:
        parse_definition(definition)
    except ValueError:
        return False
    return True


def includes_region(definition: str) -> bool:
    """Whether the definition is keyed on region: only then do regional trending counters match it
    (ingest counts trending per region and globally); otherwise serve global trending."""
    return is_definition(definition) and REGION in parse_definition(definition)


def trending_segment(segment: str) -> str | None:
    """The real-time counters a segment's popularity blends with: its region's, or None (global
    trending) for a segment not keyed on region. Ingest counts trending per region and globally only."""
    first = segment.split(_PART_SEPARATOR, 1)[0]
    return first if first.startswith(f"{_LABEL[REGION]}=") else None


def region_value(region: str) -> str:
    """A region as segment names spell it, so ``'EU'`` and ``' eu '`` are one segment."""
    return region.strip().lower()


def region_segment(region: str) -> str:
    """The segment of the ``region`` definition (``keys.region_segment`` is this)."""
    return f"{_LABEL[REGION]}={region_value(region)}"


def age_band(age: int) -> str | None:
    """``'25-34'`` for 30, ``'65+'`` for the last band; None for an unknown (0) or impossible age."""
    if not 0 < age <= MAX_AGE:
        return None
    start = max(s for s in AGE_BAND_STARTS if s <= age)
    following = [s for s in AGE_BAND_STARTS if s > start]
    return f"{start}-{following[0] - 1}" if following else f"{start}+"


def age_from_birth_year(birth_year: str | int, now_year: int) -> int | None:
    """Years from a four-digit birth year to ``now_year``; None when it is not one."""
    text = str(birth_year).strip()
    return now_year - int(text) if _YEAR.fullmatch(text) else None


def segment_of(definition: str, profile: Mapping[str, str], now_year: int) -> str | None:
    """The popularity segment of a user from their profile hash (``region``, ``country``,
    ``birth_year`` as strings); None when an attribute is missing or malformed, or the definition is
    unknown (a newer publisher's): the user gets global popularity."""
    try:
        attributes = parse_definition(definition)
    except ValueError:
        return None
    age = age_from_birth_year(profile.get("birth_year", ""), now_year)
    return _name(attributes, region=profile.get("region"), age=age, country=profile.get("country"))


def dataset_segments(definition: str, users: Users) -> list[str | None]:
    """Each user's segment from the dataset's columns (``age`` in years, 0 = unknown; missing
    optional columns mean unknown)."""
    attributes = parse_definition(definition)
    ages = users.age.tolist() if len(users.age) else [0] * len(users)
    countries = users.country if users.country else [""] * len(users)
    return [
        _name(attributes, region=region, age=int(age), country=country)
        for region, age, country in zip(users.region, ages, countries, strict=True)
    ]


def _name(
    attributes: tuple[str, ...], region: str | None, age: int | None, country: str | None
) -> str | None:
    values = {
        REGION: _matching(region_value(region or ""), _REGION_VALUE),
        AGE_BAND: age_band(age) if age is not None else None,
        COUNTRY: _matching((country or "").strip().lower(), _COUNTRY_VALUE),
    }
    parts = []
    for attribute in attributes:
        value = values[attribute]
        if value is None:
            return None
        parts.append(f"{_LABEL[attribute]}={value}")
    return _PART_SEPARATOR.join(parts)


def _matching(value: str, pattern: re.Pattern[str]) -> str | None:
    return value if pattern.fullmatch(value) else None
