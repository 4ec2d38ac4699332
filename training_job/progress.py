"""Progress: a tqdm bar on a terminal, one structured log line per step otherwise."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from tqdm import tqdm

from movierec.observability import logger


def interactive() -> bool:
    return sys.stderr.isatty()


class Progress:
    """``with Progress("train", total=20) as p: p.step(loss=0.3)``."""

    def __init__(
        self, task: str, total: int | None, enabled: bool | None = None, quiet: bool = False
    ) -> None:
        self.task = task
        self.quiet = quiet
        use_bar = interactive() if enabled is None else enabled
        self.bar: Any = tqdm(total=total, desc=task, file=sys.stderr, leave=False) if use_bar else None
        self.count = 0

    def step(self, **fields: float | int | str) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in fields.items()})
            self.bar.update(1)
        elif not self.quiet:
            logger.info(self.task, extra={"step": self.count, **fields})

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.bar is not None:
            self.bar.close()


def log(event: str, **fields: Any) -> None:
    """A structured log line (JSON, via the project's one Logger)."""
    logger.info(event, extra=fields)
