"""Runtime tuning of the recommend function's process: the one place it lives, called once by the
handler as the last step of init (never as an import side effect).

Measured (docs/benchmarks.md): what init built lives as long as the container, so it is moved out of
the collector's sight; and a request's garbage is freed by reference counting, so collections can be
rare. With CPython's default (one every 700 allocations, about every 5 requests here) they were the
cached path's p99.
"""

from __future__ import annotations

import gc

GC_THRESHOLD = 50_000
"""Allocations between young-generation collections (CPython's default is 700)."""


def settle_after_init() -> None:
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD)
