"""Evaluation scoring and seeding without vLLM: avg@k, its standard error and the format rate by hand, and the
per-sample seeds that make sampled evaluations reproducible."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from stable_verl.eval.worker import sample_seed, score_samples
from stable_verl.tasks.datasets import DATA_SOURCE


def _bench(truths: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "data_source": DATA_SOURCE,
                "prompt": [{"role": "user", "content": f"problem {i}"}],
                "reward_model": {"style": "rule", "ground_truth": t},
            }
            for i, t in enumerate(truths)
        ]
    )


def test_score_samples_by_hand():
    outputs = [
        ["#### 5", "#### 4"],  # right, wrong answer: acc 1/2, both well-formed
        ["#### 7 no, #### -3", "so #### -3"],  # the last '####' counts: both right, acc 2/2
        ["twelve", "12"],  # no '####': unformatted, wrong, acc 0/2
    ]
    results, samples = score_samples(_bench(["5", "-3", "12"]), outputs)
    # per-prompt accuracies a = (0.5, 1.0, 0.0): avg@2 = 1.5 / 3 = 0.5
    assert results["avg@2"] == pytest.approx(0.5)
    # sample std of a: deviations (0, 0.5, -0.5), sum of squares 0.5, / (n - 1) = 0.25 -> std 0.5;
    # standard error = 0.5 / sqrt(3) = 0.288675
    assert results["avg@2_stderr"] == pytest.approx(0.5 / math.sqrt(3))
    assert results["format_rate"] == pytest.approx(4 / 6)  # 4 of the 6 responses end with '#### <int>'
    assert (results["num_prompts"], results["k"]) == (3, 2)
    # one sample per response, prompt-major, with the reward's fields
    assert [(s["prompt"], s["response"], s["acc"], s["format"]) for s in samples[:3]] == [
        ("problem 0", "#### 5", 1.0, 1.0),
        ("problem 0", "#### 4", 0.0, 1.0),
        ("problem 1", "#### 7 no, #### -3", 1.0, 1.0),
    ]
    assert [s["ground_truth"] for s in samples] == ["5", "5", "-3", "-3", "12", "12"]


def test_stderr_is_zero_when_every_prompt_scores_alike_and_unknown_for_one_prompt():
    # every prompt at accuracy 1/2: no spread across prompts, so an estimated error of 0 (the estimate sees the
    # k-sample noise only through the spread it causes)
    results, _ = score_samples(_bench(["1", "2"]), [["#### 1", "#### 0"], ["#### 0", "#### 2"]])
    assert (results["avg@2"], results["avg@2_stderr"]) == (0.5, 0.0)
    # one prompt: no spread to estimate; None, never a placeholder 0
    results, _ = score_samples(_bench(["1"]), [["#### 1", "#### 1", "#### 0", "x"]])
    assert (results["avg@4"], results["avg@4_stderr"], results["format_rate"]) == (0.5, None, 0.75)


def test_sample_seeds_are_fixed_and_distinct():
    # pinned: changing the derivation silently changes every sampled evaluation (and stored results' meaning)
    assert sample_seed(0, "bench_id", 0, 0) == 1967851543882560770
    seeds = {
        sample_seed(seed, bench, prompt, sample)
        for seed in (0, 1)
        for bench in ("bench_id", "bench_hard")
        for prompt in range(32)
        for sample in range(32)
    }
    assert len(seeds) == 2 * 2 * 32 * 32  # no two samples share a generator
    assert all(0 <= s < 2**63 for s in seeds)  # fits torch.Generator.manual_seed
