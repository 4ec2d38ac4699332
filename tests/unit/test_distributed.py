"""The process-group description torchrun gives, and how an epoch is split between ranks."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from training_job.distributed import Distributed, DistributedSettings


def test_without_torchrun_the_world_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    settings = DistributedSettings()
    assert (settings.rank, settings.world_size) == (0, 1)
    context = Distributed()
    order = np.arange(10)
    assert context.shard(order) is order
    assert context.batch_size(128) == 128
    assert context.broadcast_floats([1.5]) == [1.5]
    assert context.any(False) is False


def test_the_shards_cover_an_epoch_with_equal_lengths_and_the_global_batches_of_one_process() -> None:
    order = np.random.default_rng(3).permutation(11)
    shards = [Distributed(rank=r, world_size=2).shard(order) for r in range(2)]
    assert [len(s) for s in shards] == [6, 6]  # padded by one, so every rank takes the same steps
    assert set(np.concatenate(shards)) == set(order)
    per_rank = Distributed(rank=0, world_size=2).batch_size(4)
    assert per_rank == 2
    # Step j's global batch (both ranks' parts) is what one process takes at step j.
    for step in range(3):
        parts = np.concatenate([s[step * per_rank : (step + 1) * per_rank] for s in shards])
        assert sorted(parts) == sorted(np.concatenate([order, order[:1]])[step * 4 : (step + 1) * 4])


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK 2 is not below WORLD_SIZE 2"),
        ({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "1"}, "LOCAL_RANK 1 is not below LOCAL_WORLD_SIZE 1"),
        ({"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "4"}, "LOCAL_WORLD_SIZE 4 exceeds WORLD_SIZE 2"),
        ({"WORLD_SIZE": "0"}, "greater than or equal to 1"),
    ],
)
def test_an_inconsistent_process_group_is_refused(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], message: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        DistributedSettings()
