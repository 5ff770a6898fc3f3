"""What a soak campaign reports: named counts, some with the value they must have."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Count:
    """One count of a campaign; ``expect`` (when set) is the value it must equal for the campaign to pass."""

    name: str
    value: int | float
    expect: int | float | None = None

    @property
    def ok(self) -> bool:
        return self.expect is None or self.value == self.expect

    def line(self, campaign: str) -> str:
        verdict = "" if self.expect is None else f" == {self.expect} {'ok' if self.ok else 'FAILED'}"
        return f"SOAK {campaign} {self.name} {self.value}{verdict}"
