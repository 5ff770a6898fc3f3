"""MiniRL in a real verl run on CPU: our loss and estimator inside verl's workers, metrics in the file.

Off-policy recipe (N=2 mini-batches per rollout batch), so the second update sees r_t != 1 and the
staleness mask and diagnostics are exercised, not just defined. vLLM's weights are rounded through fp8 (the
rollout-precision knob), so the train-inference IS weights are not all 1 either (``minirl_rows`` in conftest).
"""

from __future__ import annotations

import pytest

from stable_verl.verl_ext.minirl_loss import METRIC_KEYS

pytestmark = pytest.mark.slow

# The loss's own keys (pinned by name in tests/unit/test_minirl_verl.py) plus the trainer's and verl's.
MINIRL_METRICS = (
    *METRIC_KEYS.values(),
    "actor/train_infer_kl_k1",
    "actor/train_infer_kl_k3",
    "stability/collapse",
    "reward/acc",
    "actor/entropy",
    "actor/entropy_per_token",
    "response_length/mean",
)


def test_three_steps_with_our_loss(minirl_rows):
    rows, command = minirl_rows
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert "policy_loss.loss_mode=minirl" in command and "adv_estimator=minirl" in command


def test_minirl_diagnostics_are_logged_every_step(minirl_rows):
    rows, _ = minirl_rows
    for row in rows:
        missing = [k for k in MINIRL_METRICS if k not in row]
        assert not missing, f"step {row['step']}: missing {missing}"
        assert row["actor/tis/weight_max"] <= 5.0 + 1e-6  # the TIS cap holds inside verl
        assert row["actor/train_infer_kl_k3"] >= 0


def test_second_minibatch_is_stale(minirl_rows):
    # With N=2 the second update runs on weights already moved by the first: |log r_t| > 0 somewhere.
    rows, _ = minirl_rows
    assert max(r["actor/staleness/abs_log_ratio_mean"] for r in rows) > 0
    assert max(r["actor/staleness/kl_k3"] for r in rows) > 0
    assert any(r["actor/grad_norm"] > 0 for r in rows)


def test_entropy_per_token_is_verls_token_sum_entropy_over_the_mean_length(minirl_rows):
    # MiniRL aggregates with seq-mean-token-sum, so verl's actor/entropy = (1/B) sum_i sum_t H = per-token
    # entropy x mean response length (single-turn: every response token is valid); ours is sum_i sum_t H / sum_i |y_i|.
    rows, _ = minirl_rows
    for row in rows:
        expected = row["actor/entropy"] / row["response_length/mean"]
        assert row["actor/entropy_per_token"] == pytest.approx(expected, rel=1e-3), row["step"]
