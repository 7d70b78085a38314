"""Process pool helper: results come back in input order, so output never depends on K."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def mp_context() -> Any:
    """'fork' on Linux (no ``if __name__ == '__main__'`` guard needed in user scripts), else 'spawn'."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def ordered_map(fn: Callable[[Any], T], items: Iterable[Any], workers: int) -> list[T]:
    """``[fn(x) for x in items]``, run on ``workers`` processes when ``workers > 1``."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ProcessPoolExecutor(min(workers, len(items)), mp_context=mp_context()) as pool:
        return list(pool.map(fn, items, chunksize=1))
