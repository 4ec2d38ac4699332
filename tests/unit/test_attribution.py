"""Attribution on a constructed stream with known answers, and the intervals it reports."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from movierec.events import EVENT_ADAPTER, Event
from movierec.served import ServedList, parse_lines, served_document
from training_job.attribution import attribute, difference, report_markdown, wilson

T0 = 1_750_000_000.0
HOUR = 3600.0


def served(rid: str, movies: list[int], variant: str | None = None, tier: str = "personalized") -> ServedList:
    document = served_document(
        recommendation_id=rid,
        served_at=T0,
        user_id="u-" + rid,
        tier=tier,
        model_version="m1",
        variant=variant,
        experiment="exp" if variant else None,
        movie_ids=movies,
    )
    return ServedList.model_validate(document)


def event(kind: str, at: float, rid: str | None, event_id: str | None = None, **fields: Any) -> Event:
    document = {
        "type": kind,
        "event_id": event_id or str(uuid.uuid4()),
        "occurred_at": datetime.fromtimestamp(at, UTC).isoformat(),
        "user_id": "u",
        **({"recommendation_id": rid} if rid is not None else {}),
        **fields,
    }
    if kind == "impression":
        document.setdefault("movie_ids", [1])
    return EVENT_ADAPTER.validate_python(document)


def test_a_constructed_stream_gives_the_known_rates() -> None:
    lists = [served(f"r{i}", [10 + i, 20 + i, 30 + i]) for i in range(4)]
    lists.append(lists[0])  # the same record delivered twice counts once
    duplicate_click = str(uuid.uuid4())
    events = [
        *(event("impression", T0 + 1, f"r{i}") for i in range(4)),  # four impressed lists
        event("click", T0 + 60, "r0", movie_id=10, position=0),  # r0 clicked, inside the window
        event("click", T0 + 90, "r0", movie_id=20, position=1),  # r0 again: still one clicked list
        event("click", T0 + 60, "r1", event_id=duplicate_click, movie_id=21),
        event("click", T0 + 60, "r1", event_id=duplicate_click, movie_id=21),  # a redelivered duplicate
        event("click", T0 + 25 * HOUR, "r2", movie_id=12),  # outside the 24 h window
        event("click", T0 - 5, "r3", movie_id=13),  # before the list was served: outside too
        event("click", T0 + 60, None, movie_id=13),  # without an id: attributed to nothing
        event("click", T0 + 60, "r3", movie_id=99),  # a movie the list did not hold
        event("click", T0 + 60, "nope", movie_id=13),  # an id no served list has
        event("watch", T0 + 600, "r1", movie_id=21, seconds_watched=5000, completion=0.95),
        event("watch", T0 + 600, "r0", movie_id=10, seconds_watched=100, completion=0.1),  # not through
        event("watch", T0 + 600, None, movie_id=10, seconds_watched=5000, completion=1.0),
        event("rating", T0 + 700, "r3", movie_id=33, rating=4.5),
    ]

    result = attribute(lists, events, catalogue_size=100, k=3, window_seconds=24 * HOUR)

    assert (result.served, result.impressed) == (4, 4)
    assert result.ctr.estimate == pytest.approx(2 / 4)  # r0 and r1
    assert result.watch_through.estimate == pytest.approx(1 / 4)  # r1
    assert result.coverage == pytest.approx(12 / 100)
    assert result.duplicates == 1
    assert result.outside_window == 2
    assert result.unattributed == {"click": 1, "watch": 1}
    assert result.unknown_list == 1
    (group,) = result.groups
    assert (group.tier, group.model_version, group.clicked, group.watched, group.rated) == (
        "personalized",
        "m1",
        2,
        1,
        1,
    )


def test_only_the_first_k_positions_count() -> None:
    lists = [served("r", [1, 2, 3, 4])]
    events = [event("impression", T0, "r"), event("click", T0 + 1, "r", movie_id=4)]
    assert attribute(lists, events, catalogue_size=10, k=3).ctr.estimate == 0.0
    assert attribute(lists, events, catalogue_size=10, k=4).ctr.estimate == 1.0


def test_lists_never_impressed_are_left_out_of_the_rates() -> None:
    lists = [served("shown", [1]), served("hidden", [1])]
    events = [event("impression", T0, "shown"), event("click", T0 + 1, "hidden", movie_id=1)]
    result = attribute(lists, events, catalogue_size=10)
    assert (result.served, result.impressed, result.ctr.estimate) == (2, 1, 0.0)


def test_wilson_matches_the_closed_form_and_stays_in_0_1() -> None:
    interval = wilson(10, 100)
    assert interval.estimate == 0.1
    assert (round(interval.low, 4), round(interval.high, 4)) == (0.0552, 0.1744)
    assert wilson(0, 20).low == 0.0
    assert wilson(0, 20).high > 0
    assert wilson(20, 20).high == 1.0
    assert wilson(20, 20).low < 1
    assert (wilson(0, 0).low, wilson(0, 0).high) == (0.0, 1.0)


def test_the_difference_of_two_proportions_and_its_significance() -> None:
    d = difference(150, 1000, 100, 1000)
    half = 1.959963984540054 * math.sqrt(0.15 * 0.85 / 1000 + 0.1 * 0.9 / 1000)
    assert d.estimate == pytest.approx(0.05)
    assert d.low == pytest.approx(0.05 - half)
    assert d.high == pytest.approx(0.05 + half)
    assert d.significant
    assert not difference(52, 500, 50, 500).significant


def test_variants_are_compared_with_the_control_and_reported() -> None:
    lists, events = [], []
    for i in range(400):
        variant = "champion" if i % 2 else "challenger"
        rid = f"r{i}"
        lists.append(served(rid, [1, 2, 3], variant=variant))
        events.append(event("impression", T0, rid))
        clicks = (i // 2) % 10 < (4 if variant == "challenger" else 1)  # 40% against 10%
        if clicks:
            events.append(event("click", T0 + 5, rid, movie_id=2))
    result = attribute(lists, events, catalogue_size=10)
    (comparison,) = result.comparisons
    assert (comparison.variant, comparison.control) == ("challenger", "champion")
    assert comparison.ctr.estimate == pytest.approx(0.4)
    assert comparison.control_ctr.estimate == pytest.approx(0.1)
    assert comparison.ctr_difference.significant
    text = report_markdown(result)
    assert "challenger vs champion" in text
    assert "| yes |" in text


def test_a_delivered_object_is_read_back_whatever_else_the_log_holds() -> None:
    record = served("r1", [5, 6])
    body = b"\n".join(
        [
            b'{"_aws": {}, "served_list": ' + record.model_dump_json().encode() + b"}",
            b"START RequestId: x",
            b'{"served_list": {"recommendation_id": ""}}',  # invalid: skipped
        ]
    )
    assert parse_lines(body) == [record]
    import gzip

    assert parse_lines(gzip.compress(body)) == [record]
    assert record.position(6) == 1
    assert record.position(7) is None
