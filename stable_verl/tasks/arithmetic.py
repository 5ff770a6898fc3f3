"""Multi-step integer arithmetic: a verifiable task whose difficulty is a parameter.

A problem of difficulty ``d`` chains ``d`` operations over ``d + 1`` operands, evaluated left to
right (no precedence, which the prompt states), e.g. d=2: ``7 + 5 - 3``. Larger ``d`` means more
steps and wider operands, so a held-out split at a higher difficulty is a harder benchmark.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

OPS = ("+", "-", "*")


@dataclass(frozen=True)
class Problem:
    """One arithmetic problem and its exact answer."""

    operands: tuple[int, ...]
    ops: tuple[str, ...]
    difficulty: int

    @property
    def expression(self) -> str:
        parts = [str(self.operands[0])]
        for op, x in zip(self.ops, self.operands[1:], strict=True):
            parts += [op, str(x)]
        return " ".join(parts)

    def partial_results(self) -> list[int]:
        """Running value after each operation (left to right)."""
        value, out = self.operands[0], []
        for op, x in zip(self.ops, self.operands[1:], strict=True):
            value = _apply(value, op, x)
            out.append(value)
        return out

    @property
    def answer(self) -> int:
        return self.partial_results()[-1]

    @property
    def prompt(self) -> str:
        return f"Compute left to right: {self.expression}. End with #### and the answer."


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b


def default_max_operand(difficulty: int) -> int:
    """Largest operand of a difficulty when none is given: 10d + 9."""
    return 10 * difficulty + 9


def sample_problem(rng: random.Random, difficulty: int, max_operand: int | None = None) -> Problem:
    """Draw one problem: operands in 0..max_operand (default 10d+9); multiplication (by 0..5) from difficulty 3 on."""
    if difficulty < 1:
        raise ValueError(f"difficulty must be >= 1, got {difficulty}")
    hi = default_max_operand(difficulty) if max_operand is None else max_operand
    if hi < 1:
        raise ValueError(f"max_operand must be >= 1, got {hi}")
    ops = tuple(rng.choice(OPS if difficulty >= 3 else OPS[:2]) for _ in range(difficulty))
    operands = [rng.randint(0, hi)]
    for op in ops:
        operands.append(rng.randint(0, 5) if op == "*" else rng.randint(0, hi))
    return Problem(tuple(operands), ops, difficulty)


def sample_problems(
    n: int, difficulty: int, seed: int, exclude: set[str] | None = None, max_operand: int | None = None
) -> list[Problem]:
    """``n`` distinct problems (by expression), none of them in ``exclude``."""
    rng = random.Random(f"arith-{difficulty}-{seed}" + ("" if max_operand is None else f"-{max_operand}"))
    seen = set(exclude or ())
    out: list[Problem] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"cannot draw {n} distinct problems of difficulty {difficulty}; lower n")
        p = sample_problem(rng, difficulty, max_operand)
        if p.expression not in seen:
            seen.add(p.expression)
            out.append(p)
    return out
