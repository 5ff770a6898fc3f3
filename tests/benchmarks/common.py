"""Shared benchmark plumbing: interleaved timing and the BENCH line format."""

from __future__ import annotations

import operator
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    op: str
    target: float

    @property
    def ok(self) -> bool:
        return _OPS[self.op](self.value, self.target)

    def line(self) -> str:
        return f"BENCH {self.name} {self.value:.3f} {self.op} {self.target:g}"


def interleaved_medians(fns: dict[str, Callable[[], None]], repeats: int = 30, warmup: int = 3) -> dict[str, float]:
    """Median wall time of each fn, timed in alternation so drift (thermal, other load) hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
