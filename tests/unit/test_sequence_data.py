"""Sequence samples: every prefix is a sample exactly once, and nothing a prediction reads comes from
its target or after it (windows, evaluation histories and the model's causal attention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from movierec.sequence_encoding import GAP_BUCKETS, encode_history, gap_bucket
from tests.unit.sequence_toy import PARAMS, walks
from training_job.data import read_ncf, write_ncf
from training_job.sequence_data import Sequences, latest_histories, training_windows
from training_job.sequence_model import SequenceNeuMF
from training_job.split import leave_last_out, temporal_split


def _varied_pairs() -> Sequences:
    rng = np.random.default_rng(3)
    pairs = walks(n_users=40, steps=30, seed=3)
    keep = rng.random(len(pairs)) < 0.6  # users of very different lengths, some with one pair
    return Sequences.from_positives(pairs.take(keep))


@pytest.mark.parametrize("stride", [None, 3])
def test_every_engagement_but_a_users_first_is_the_target_of_exactly_one_position(stride: int | None) -> None:
    seq = _varied_pairs()
    windows = training_windows(seq, 8, stride)
    valid, owned = windows.inputs.valid, windows.target >= 0
    assert windows.n_targets == int(np.maximum(seq.counts() - 1, 0).sum())
    assert valid[:, -1].all()  # right-aligned: the last column is always a real engagement
    assert not (owned & ~valid).any()
    predicted: list[tuple[int, int]] = []
    for row in range(len(windows)):
        user = int(windows.user[row])
        movies = seq.movie[seq.start[user] : seq.start[user + 1]]
        inputs = windows.inputs.items[row][valid[row]]
        where = int(np.flatnonzero(movies == inputs[0])[0])
        # Inputs are consecutive and in order; each target is the engagement right after its input.
        assert np.array_equal(inputs, movies[where : where + len(inputs)])
        positions = np.flatnonzero(owned[row][valid[row]])
        assert np.array_equal(windows.target[row][valid[row]][positions], movies[where + 1 + positions])
        if stride is not None and where > 0:  # overlapping: every prediction reads >= 8 - 3 engagements
            assert positions.min() >= 8 - stride - 1
        predicted += [(user, where + 1 + int(p)) for p in positions]
    assert len(predicted) == len(set(predicted))


def test_time_gaps_and_kinds_are_encoded_in_order() -> None:
    seq = Sequences.from_positives(walks(n_users=20, steps=30, seed=3))
    windows = training_windows(seq, 8)
    inputs = windows.inputs
    first_valid = inputs.valid & ~np.c_[np.zeros((len(windows), 1), bool), inputs.valid[:, :-1]]
    assert (inputs.gaps[first_valid] == 0).all()  # out of view: unknown, as for serving's oldest
    assert (inputs.gaps[inputs.valid & ~first_valid] == gap_bucket(3_600)).all()
    assert (windows.query_gaps[inputs.valid] == gap_bucket(3_600)).all()  # the walks are an hour apart
    assert (inputs.kinds[inputs.valid] == 1).all()
    assert (inputs.kinds[~inputs.valid] == 0).all()
    assert gap_bucket([0, 59, 60, 10**12]).tolist() == [1, 1, 2, GAP_BUCKETS - 1]


def test_evaluation_histories_never_hold_the_held_out_pair_or_anything_after_it() -> None:
    pairs = walks(n_users=40, steps=30, seed=5)
    split = temporal_split(pairs)
    train_seq = Sequences.from_positives(split.train)
    # Validation reads train only; test reads train + validation (what benchmark's train file holds).
    for seq, held in (
        (train_seq, split.validation),
        (Sequences.from_positives(leave_last_out(pairs)[0]), split.test),
    ):
        histories = latest_histories(seq, held.user, held.timestamp, 8)
        for row, (user, movie, time) in enumerate(zip(held.user, held.movie, held.timestamp, strict=True)):
            rows = np.arange(seq.start[user], seq.start[user + 1])
            visible = histories.items[row][histories.valid[row]]
            assert movie not in visible
            assert set(visible.tolist()) <= set(seq.movie[rows].tolist())
            assert (seq.timestamp[rows] <= time).all()
            assert np.array_equal(visible, seq.movie[rows][-8:])  # the latest 8, oldest first
    assert not np.isin(split.validation.movie + split.validation.user * 1000,
                       split.train.movie + split.train.user * 1000).any()  # fmt: skip


def test_the_ncf_files_keep_the_order_the_sequences_need(tmp_path: object) -> None:
    from pathlib import Path

    from training_job.data import NcfData

    pairs = walks(n_users=10, steps=6, seed=1)
    rest, test = leave_last_out(pairs)
    negatives = np.zeros((len(test), 3), np.int32)
    out = Path(str(tmp_path))
    write_ncf(out, NcfData(rest, test.user, test.movie, negatives, test.rating, test.timestamp))
    back = read_ncf(out / "train.rating", out / "test.rating", out / "test.negative")
    assert np.array_equal(back.train.timestamp, rest.timestamp)
    assert np.array_equal(Sequences.from_positives(back.train).movie, Sequences.from_positives(rest).movie)


def test_attention_is_causal_a_position_never_reads_later_ones() -> None:
    torch.manual_seed(0)
    model = SequenceNeuMF(30, torch.zeros(30, 1), 0, PARAMS).eval()
    history = encode_history(np.arange(8), np.ones(8, np.int64), np.arange(8) * 3600, 9 * 3600, 30, 8)
    changed = encode_history(np.r_[np.arange(5), [20, 21, 22]], np.ones(8, np.int64), np.arange(8) * 3600,
                             9 * 3600, 30, 8)  # fmt: skip
    gmf, _ = model.movie_tables()
    with torch.no_grad():
        a = model.encode(history, gmf)
        b = model.encode(changed, gmf)
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-6)
    assert not torch.allclose(a[0, 5:], b[0, 5:], atol=1e-3)


def test_padding_changes_nothing() -> None:
    torch.manual_seed(0)
    model = SequenceNeuMF(30, torch.zeros(30, 1), 0, PARAMS).eval()
    short = encode_history([3, 4, 5], [1, 1, 1], [0, 60, 7200], 9000, 30, 3)
    padded = encode_history([3, 4, 5], [1, 1, 1], [0, 60, 7200], 9000, 30, 8)
    gmf, _ = model.movie_tables()
    with torch.no_grad():
        a = model.encode(short, gmf)[0, -1]
        b = model.encode(padded, gmf)[0, -1]
    assert torch.allclose(a, b, atol=1e-5)
