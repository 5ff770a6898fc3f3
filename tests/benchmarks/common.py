"""Shared benchmark plumbing: interleaved timing, op counting and the BENCH line format."""

from __future__ import annotations

import collections
import operator
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch._ops import OpOverload
from torch.utils._python_dispatch import TorchDispatchMode

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    op: str
    target: float
    spread: tuple[float, float] | None = None
    """Lowest and highest of the per-block values the median ``value`` was taken over."""

    @property
    def ok(self) -> bool:
        return _OPS[self.op](self.value, self.target)

    def line(self) -> str:
        spread = f" [{self.spread[0]:.3f}–{self.spread[1]:.3f}]" if self.spread else ""
        return f"BENCH {self.name} {self.value:.3f} {self.op} {self.target:g}{spread}"


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


def block_ratio(
    ours: Callable[[], None], base: Callable[[], None], blocks: int = 7, repeats: int = 10, warmup: int = 3
) -> tuple[float, tuple[float, float]]:
    """``ours`` / ``base`` wall time as the median over ``blocks`` of each block's ratio of interleaved medians,
    with the lowest and highest block ratio: one slow spell moves one block, not the verdict."""
    ratios = []
    for block in range(blocks):
        t = interleaved_medians({"ours": ours, "base": base}, repeats=repeats, warmup=warmup if block == 0 else 1)
        ratios.append(t["ours"] / t["base"])
    return statistics.median(ratios), (min(ratios), max(ratios))


class OpCounter(TorchDispatchMode):
    """Counts the aten ops that run inside it: ``ops``, those that compute (a kernel launch each on a GPU; views,
    scalar wrapping and allocation excluded), and ``syncs``, reads of a tensor's value by the host
    (``_local_scalar_dense``: ``.item()``, ``float()``, ``bool()``, which wait on a GPU). ``.tolist()`` does not pass
    through the dispatcher on CPU, so it is not counted (on CUDA it is one device-to-host copy)."""

    FREE = frozenset({"aten.scalar_tensor", "aten.empty", "aten.empty_strided", "aten.promote_types"})

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()
        self.syncs = 0

    def __torch_dispatch__(
        self, func: OpOverload, types: object, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        name = str(func.overloadpacket)
        if name == "aten._local_scalar_dense":
            self.syncs += 1
        elif not func.is_view and name not in self.FREE:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())
