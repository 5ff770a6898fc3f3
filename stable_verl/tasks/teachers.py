"""Teacher solution styles and habits: the different cold-start initialisations of the paper's RQ3.

The paper distils three SFT sets from three frontier models. Here each "teacher" is a distinct,
deterministic way of writing the same correct solution, so SFT on each yields a differently
behaving initial policy (length, verbosity, step format) with the same final-answer convention.

Teachers also have a habit: in a share of its samples (the *shortcut rate*, a task setting) a teacher
writes only the answer, without working. Direct answers are right far less often for the tiny model
than worked ones, so the SFT policy mixes a weak and a strong way of answering, and RL can raise its
accuracy on every problem, held-out ones included, by preferring to show its work: the same
habit-sharpening by which RL improves distilled reasoning models.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from stable_verl.tasks.arithmetic import Problem


def direct(p: Problem) -> str:
    """The shortcut: the answer only, no working."""
    return f"#### {p.answer}"


def _steps(p: Problem) -> list[tuple[int, str, int, int]]:
    """(running value, operation, operand, result) for each step, left to right."""
    values = [p.operands[0], *p.partial_results()]
    return list(zip(values[:-1], p.ops, p.operands[1:], values[1:], strict=True))


def terse(p: Problem) -> str:
    """Compact working on one line, then the answer."""
    return "; ".join(f"{v}{op}{x}={r}" for v, op, x, r in _steps(p)) + f"\n#### {p.answer}"


def stepwise(p: Problem) -> str:
    """One equation per step, then the answer."""
    return "\n".join(f"{v} {op} {x} = {r}" for v, op, x, r in _steps(p)) + f"\n#### {p.answer}"


_WORDS = {"+": "plus", "-": "minus", "*": "times"}


def verbose(p: Problem) -> str:
    """Narrated steps in words, then the answer."""
    sentences = [f"{v} {_WORDS[op]} {x} gives {r}." for v, op, x, r in _steps(p)]
    return " ".join(["Let us work left to right.", *sentences]) + f" So the answer is {p.answer}.\n#### {p.answer}"


TEACHERS: dict[str, Callable[[Problem], str]] = {"terse": terse, "stepwise": stepwise, "verbose": verbose}


def get_teacher(name: str) -> Callable[[Problem], str]:
    try:
        return TEACHERS[name]
    except KeyError:
        raise ValueError(f"unknown teacher style {name!r}; choose one of {sorted(TEACHERS)}") from None


def takes_shortcut(teacher: str, p: Problem, rate: float, sample: int = 0) -> bool:
    """Whether ``teacher``'s ``sample``-th answer to ``p`` is direct: a fixed hash of all three below ``rate``."""
    digest = hashlib.sha256(f"{teacher}|{p.expression}|{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def solution(teacher: str, p: Problem, shortcut_rate: float = 0.0, sample: int = 0) -> str:
    """``teacher``'s ``sample``-th answer to ``p``: its worked style, or the direct answer on its shortcut share."""
    solve = get_teacher(teacher)
    return direct(p) if takes_shortcut(teacher, p, shortcut_rate, sample) else solve(p)
