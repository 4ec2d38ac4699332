"""The published list format: the cached encoder writes exactly what ``json.dumps`` would, and lazy
decoding reads back exactly what was written."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.publication import Item, ItemEncoder, LazyItems, decode_items, encode_items

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
    """The format as specified: compact JSON rows, UTF-8, scores rounded to 6 places."""
    document = [[i.movie_id, round(i.score, 6), i.title, list(i.genres), i.year] for i in rows]
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


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
    rows = [Item(3, np.float32(0.25), "Heat", ("Crime",), 1995)]  # type: ignore[arg-type]

    assert json.loads(encode_items(rows)) == [[3, 0.25, "Heat", ["Crime"], 1995]]


def test_lazy_items_read_back_what_was_written() -> None:
    rows = [Item(m, 1.0 - m / 8, f"Movie {m}", ("Drama",), 1990 + m) for m in range(1, 8)]
    raw = encode_items(rows)
    lazy = LazyItems(raw)

    assert len(lazy) == 7
    assert list(lazy) == rows == decode_items(raw)
    assert lazy[0] == rows[0]
    assert lazy[-1] == rows[-1]
    assert lazy[2:4] == rows[2:4]
