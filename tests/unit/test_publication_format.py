"""The published list format: one compact JSON row per line, written by the cached encoder exactly as
``json.dumps`` would write each row; lazy decoding reads back what was written, and format-1 lists
(one JSON array) still read."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.publication import Item, ItemEncoder, LazyItems, decode_items, encode_items, item_row

titles = st.text(min_size=0, max_size=30)  # quotes, backslashes, control and non-ASCII characters
items = st.builds(
    Item,
    movie_id=st.integers(min_value=1, max_value=2**40),
    score=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    title=titles,
    genres=st.lists(titles, max_size=3).map(tuple),
    year=st.one_of(st.none(), st.integers(min_value=1870, max_value=2100)),
)


def reference(rows: list[Item]) -> bytes:
    """The format as specified: a compact JSON row per line, UTF-8, scores rounded to 6 places."""
    lines = [json.dumps(item_row(i), separators=(",", ":"), ensure_ascii=False) for i in rows]
    return "\n".join(lines).encode()


def format_1(rows: list[Item]) -> bytes:
    """What publications before format 2 wrote: one JSON array of the same rows."""
    return json.dumps([item_row(i) for i in rows], separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(items, max_size=20, unique_by=lambda item: item.movie_id))  # as a ranked list
def test_the_encoder_writes_what_json_dumps_writes(rows: list[Item]) -> None:
    assert encode_items(rows) == reference(rows)


def test_one_encoder_reused_across_lists_stays_byte_identical() -> None:
    catalogue = {
        m: (f'Amélie "{m}" \\ 東京', ("Drama", "Rom'com"), None if m % 3 else 2001) for m in range(50)
    }
    rng = np.random.default_rng(5)
    encoder = ItemEncoder()
    for _ in range(100):
        chosen = rng.choice(50, size=10, replace=False)
        rows = [Item(int(m), float(rng.random()), *catalogue[int(m)]) for m in chosen]
        assert encoder.encode(rows) == reference(rows)


def test_numpy_scores_are_written_as_plain_numbers() -> None:
    rows = [
        Item(3, np.float32(0.25), "Heat", ("Crime",), 1995),  # type: ignore[arg-type]
        Item(4, np.float64(0.125), "Up", ("Animation",), 2009),
    ]

    lines = encode_items(rows).split(b"\n")

    assert [json.loads(line) for line in lines] == [
        [3, 0.25, "Heat", ["Crime"], 1995],
        [4, 0.125, "Up", ["Animation"], 2009],
    ]


def test_lazy_items_read_back_what_was_written() -> None:
    rows = [Item(m, 1.0 - m / 8, f"Movie {m}", ("Drama",), 1990 + m) for m in range(1, 8)]
    raw = encode_items(rows)
    lazy = LazyItems(raw)

    assert len(lazy) == 7
    assert list(lazy) == rows == decode_items(raw)
    assert lazy[0] == rows[0]
    assert lazy[-1] == rows[-1]
    assert lazy[2:4] == rows[2:4]


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(items, max_size=12, unique_by=lambda item: item.movie_id))
def test_both_formats_read_back_the_same_items(rows: list[Item]) -> None:
    written = [Item(i.movie_id, round(i.score, 6), i.title, i.genres, i.year) for i in rows]

    for raw in (encode_items(rows), format_1(rows)):
        lazy = LazyItems(raw)
        assert list(lazy) == written
        assert len(lazy) == len(written)
        assert lazy[: len(written)] == written


def test_a_reader_that_stops_early_parses_no_further() -> None:
    rows = [Item(m, 1.0 - m / 8, f"Movie {m}", ("Drama",), 1990 + m) for m in range(1, 8)]
    raw = encode_items(rows[:3]) + b"\nnot json: a reader that stops after three rows never parses this"

    assert [item.movie_id for _, item in zip(range(3), LazyItems(raw), strict=False)] == [1, 2, 3]
