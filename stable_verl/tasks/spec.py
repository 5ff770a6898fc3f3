"""Sizes and difficulties of the generated task splits (:mod:`stable_verl.tasks.datasets` writes them), free of
pandas: flow parameters hold them and are validated before the heavy imports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TaskSpec:
    """Sizes and difficulties of the generated splits."""

    difficulty: int = 1
    """Difficulty of RL/SFT/in-distribution problems (operations per problem)."""
    max_operand: int | None = None
    """Largest operand of the in-distribution problems (None: 10 * difficulty + 9). It sets the size of the task
    space: one operation over 0..29 has 1,800 distinct problems, enough for large disjoint SFT/RL/benchmark splits."""
    hard_difficulty: int = 2
    """Difficulty of the harder held-out benchmark."""
    n_rl_train: int = 64
    """RL prompts (reused across epochs, as in the paper)."""
    n_rl_val: int = 16
    """RL validation prompts (verl's val set)."""
    n_sft: int = 256
    """SFT conversations per teacher style."""
    n_bench: int = 32
    """Problems per held-out benchmark."""
    sft_samples: int = 1
    """Teacher samples per SFT problem (conversations per teacher: ``n_sft * sft_samples``), as distillation draws."""
    shortcut_rate: float = 0.0
    """Share of its samples in which every teacher answers directly, without working (its habit; 0: always works)."""
    seed: int = 0
    """Seed of every split."""

    def __post_init__(self) -> None:
        if self.hard_difficulty <= self.difficulty:
            raise ValueError("hard_difficulty must be greater than difficulty")
        if self.max_operand is not None and self.max_operand < 1:
            raise ValueError(f"task.max_operand must be >= 1, got {self.max_operand}")
        if self.sft_samples < 1:
            raise ValueError(f"task.sft_samples must be >= 1, got {self.sft_samples}")
        if not 0.0 <= self.shortcut_rate <= 1.0:
            raise ValueError(f"task.shortcut_rate must be in [0, 1], got {self.shortcut_rate}")
