"""Reward for verl's custom reward hook: exact answer 1/0, format compliance reported separately.

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info)`` per response
(``reward.custom_reward_function.path=<this file>``). A returned dict must hold ``score``; the other
keys are logged by verl's reward loop, so ``acc`` and ``format`` show up as training metrics.

``format_bonus`` (``reward_kwargs``) adds partial credit for a well-formed answer. It defaults to 0;
the verl run tests use a small bonus so that a barely trained model still gets non-constant rewards
within a group, and hence a nonzero policy gradient.
"""

from __future__ import annotations

import re
from typing import Any

# The final answer: the last "#### <int>" in the response.
_ANSWER = re.compile(r"####\s*(-?\d+)")


def extract_answer(text: str) -> int | None:
    """The last integer after '####', or None when the response has no well-formed answer."""
    found = _ANSWER.findall(text)
    return int(found[-1]) if found else None


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str | int,
    extra_info: dict[str, Any] | None = None,
    format_bonus: float = 0.0,
    **_: Any,
) -> dict[str, float]:
    """Score one response; ``score`` = exact-match (1/0) + ``format_bonus`` * well-formed."""
    answer = extract_answer(solution_str)
    formatted = answer is not None
    correct = formatted and answer == int(ground_truth)
    return {
        "score": float(correct) + format_bonus * float(formatted),
        "acc": float(correct),
        "format": float(formatted),
    }
