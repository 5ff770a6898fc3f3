"""Teacher solution styles: the different cold-start initialisations of the paper's RQ3.

The paper distils three SFT sets from three frontier models. Here each "teacher" is a distinct,
deterministic way of writing the same correct solution, so SFT on each yields a differently
behaving initial policy (length, verbosity, step format) with the same final-answer convention.
"""

from __future__ import annotations

from collections.abc import Callable

from stable_verl.tasks.arithmetic import Problem


def terse(p: Problem) -> str:
    """Answer only."""
    return f"#### {p.answer}"


def stepwise(p: Problem) -> str:
    """One equation per step, then the answer."""
    lines, value = [], p.operands[0]
    for op, x, result in zip(p.ops, p.operands[1:], p.partial_results(), strict=True):
        lines.append(f"{value} {op} {x} = {result}")
        value = result
    return "\n".join(lines) + f"\n#### {p.answer}"


_WORDS = {"+": "plus", "-": "minus", "*": "times"}


def verbose(p: Problem) -> str:
    """Narrated steps in words, then the answer."""
    sentences, value = ["Let us work left to right."], p.operands[0]
    for op, x, result in zip(p.ops, p.operands[1:], p.partial_results(), strict=True):
        sentences.append(f"{value} {_WORDS[op]} {x} gives {result}.")
        value = result
    return " ".join(sentences) + f" So the answer is {p.answer}.\n#### {p.answer}"


TEACHERS: dict[str, Callable[[Problem], str]] = {"terse": terse, "stepwise": stepwise, "verbose": verbose}


def get_teacher(name: str) -> Callable[[Problem], str]:
    try:
        return TEACHERS[name]
    except KeyError:
        raise ValueError(f"unknown teacher style {name!r}; choose one of {sorted(TEACHERS)}") from None
