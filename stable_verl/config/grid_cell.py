"""A cell of the stability grid (an arm at N mini-batches with one seed): what the flow runs and the report reads."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class GridCell:
    """One run of the stability grid: an arm (recipe) at N mini-batches with one seed."""

    arm: str
    n: int
    seed: int

    @property
    def label(self) -> str:
        return f"{self.arm}@N={self.n}/seed{self.seed}"
