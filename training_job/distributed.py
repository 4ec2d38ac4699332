"""``torch.distributed`` for the training loops: one process per rank, started by ``torchrun`` (or by
``python -m training_job sagemaker`` on a SageMaker training job), gloo on CPU and NCCL on CUDA.

torchrun describes the process group in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``); ``DistributedSettings`` reads and validates it
once. Without torchrun the world is one process and nothing is initialised: a plain
``python -m training_job ...`` trains exactly as it did before DDP (same results for the same seed).

``Distributed`` is what the loops receive: their rank, the world size, and the few collectives they
need (rank 0's floats to everyone, "does any rank want to stop", everyone's objects to rank 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from torch.distributed import PrefixStore, TCPStore  # type: ignore[attr-defined]  # not in __all__


class DistributedSettings(BaseSettings):
    """The process group torchrun started this process in; the defaults are a world of one."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    rank: int = Field(default=0, ge=0, description="This process's rank in the world (torchrun: RANK).")
    world_size: int = Field(default=1, ge=1, le=4_096, description="Processes in all (WORLD_SIZE).")
    local_rank: int = Field(default=0, ge=0, description="This process's rank on its machine (LOCAL_RANK).")
    local_world_size: int = Field(default=1, ge=1, description="Processes on this machine.")
    master_addr: str = Field(default="127.0.0.1", min_length=1, description="Rank 0's host (MASTER_ADDR).")
    master_port: int = Field(default=29_500, ge=1, le=65_535, description="Its port (MASTER_PORT).")
    timeout_seconds: float = Field(
        default=1_800.0, gt=0, description="How long a collective waits for a missing rank before failing."
    )
    torchelastic_restart_count: int = Field(
        default=0, ge=0, description="How many times torchrun restarted the group (a worker died)."
    )
    torchelastic_use_agent_store: bool = Field(
        default=False, description="torchrun's agent hosts the store at MASTER_ADDR:MASTER_PORT."
    )

    @model_validator(mode="after")
    def _consistent(self) -> DistributedSettings:
        if self.rank >= self.world_size:
            raise ValueError(f"RANK {self.rank} is not below WORLD_SIZE {self.world_size}")
        if self.local_rank >= self.local_world_size:
            raise ValueError(
                f"LOCAL_RANK {self.local_rank} is not below LOCAL_WORLD_SIZE {self.local_world_size}"
            )
        if self.local_world_size > self.world_size:
            raise ValueError(f"LOCAL_WORLD_SIZE {self.local_world_size} exceeds WORLD_SIZE {self.world_size}")
        return self


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


@dataclass
class Distributed:
    """This process's place in the world, and the collectives the training loops use.

    With ``world_size == 1`` every collective is the identity and no process group exists.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _tensor(self, values: list[float]) -> torch.Tensor:
        # NCCL moves CUDA tensors only; gloo moves CPU tensors.
        where = self.device if self.device.type == "cuda" else torch.device("cpu")
        return torch.tensor(values, dtype=torch.float64, device=where)

    def broadcast_floats(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank (every rank passes a list of the same length)."""
        if not self.active:
            return list(values)
        tensor = self._tensor(values)
        dist.broadcast(tensor, src=0)
        return [float(v) for v in tensor.cpu().tolist()]

    def sum_floats(self, values: list[float]) -> list[float]:
        """The element-wise sum over ranks, on every rank."""
        if not self.active:
            return list(values)
        tensor = self._tensor(values)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.cpu().tolist()]

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any: a stop that every rank takes at the same step."""
        if not self.active:
            return flag
        return self.sum_floats([1.0 if flag else 0.0])[0] > 0

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` in rank order, on every rank (small objects: RNG states)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def shard(self, order: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """``DistributedSampler``'s split of one epoch's order: padded with its head to a multiple of the
        world size, then every ``world_size``-th index from ``rank``. Every rank gets the same number of
        samples (so the same number of steps, which DDP's collectives need); with one process it is
        ``order`` itself."""
        if not self.active:
            return order
        total = math.ceil(len(order) / self.world_size) * self.world_size
        if total > len(order):
            repeats = math.ceil(total / max(len(order), 1))
            order = np.concatenate([order, np.tile(order, repeats)[: total - len(order)]])
        return order[self.rank : total : self.world_size]

    def batch_size(self, global_batch: int) -> int:
        """Per-rank batch keeping the global batch (and so the optimizer's steps per epoch) unchanged."""
        return max(1, math.ceil(global_batch / self.world_size))


def setup(settings: DistributedSettings, device: torch.device) -> Distributed:
    """Joins the process group torchrun described (its store at ``MASTER_ADDR``:``MASTER_PORT``, keys
    prefixed by the attempt); a world of one joins nothing. ``device`` is the training device
    (``sequence_train.device()``): on CUDA each rank takes GPU ``LOCAL_RANK``."""
    if device.type == "cuda":
        if settings.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {settings.local_rank} has no GPU: this machine has {torch.cuda.device_count()}"
            )
        torch.cuda.set_device(settings.local_rank)
    context = Distributed(
        settings.rank, settings.world_size, settings.local_rank, settings.local_world_size, device
    )
    if context.active and not dist.is_initialized():
        dist.init_process_group(
            backend_for(device),
            store=_attempt_store(settings),
            rank=settings.rank,
            world_size=settings.world_size,
            timeout=timedelta(seconds=settings.timeout_seconds),
        )
    return context


def _attempt_store(settings: DistributedSettings) -> Any:
    """The rendezvous store, with keys of this attempt only. After torchrun restarts a group, the store
    still holds the previous attempt's addresses; a rank reading a dead peer's address fails with
    "Gloo connectFullMesh failed ... Connection refused" (pytorch/pytorch#167288). A prefix per attempt
    (``TORCHELASTIC_RESTART_COUNT``) keeps them apart."""
    store = TCPStore(
        settings.master_addr,
        settings.master_port,
        settings.world_size,
        is_master=settings.rank == 0 and not settings.torchelastic_use_agent_store,
        timeout=timedelta(seconds=settings.timeout_seconds),
    )
    return PrefixStore(f"movierec/attempt-{settings.torchelastic_restart_count}/", store)


def teardown(context: Distributed) -> None:
    """Leaves the group together: a rank destroying it while a peer still talks aborts that peer."""
    if context.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
