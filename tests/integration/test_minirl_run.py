"""MiniRL in a real verl run on CPU: our loss and estimator inside verl's workers, metrics in the file.

Off-policy recipe (N=2 mini-batches per rollout batch), so the second update sees r_t != 1 and the
staleness mask and diagnostics are exercised, not just defined. vLLM's weights are rounded through fp8 (the
rollout-precision knob), so the train-inference IS weights are not all 1 either, and the TIS cap is lowered to
``MINIRL_TIS_CAP`` so that it binds (``minirl_run`` in conftest).
"""

from __future__ import annotations

import pytest

from stable_verl.verl_ext.minirl_loss import METRIC_KEYS
from tests.integration.conftest import MINIRL_TIS_CAP

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # make test-extended (Makefile)

# The loss's own keys (pinned by name in tests/unit/verl_ext/test_minirl_verl.py) plus the trainer's and verl's.
MINIRL_METRICS = (
    *METRIC_KEYS.values(),
    "actor/train_infer_kl_k1",
    "actor/train_infer_kl_k3",
    "stability/collapse_warning",
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


def test_the_tis_cap_binds_and_holds_inside_verl(minirl_rows):
    # fp8 rollouts and the stale second mini-batch put pi_theta/mu_old above the cap on some tokens: those are
    # counted as truncated, and their weight is the cap (verl reduces weight_max by max over mini-batches).
    rows, _ = minirl_rows
    truncated = [r["actor/tis/truncated_frac"] for r in rows]
    assert max(truncated) > 0, truncated
    for row in rows:
        assert row["actor/tis/weight_max"] <= MINIRL_TIS_CAP + 1e-6, row["step"]
        if row["actor/tis/truncated_frac"] > 0:
            assert row["actor/tis/weight_max"] == pytest.approx(MINIRL_TIS_CAP), row["step"]


# Recompute noise: the first mini-batch's pi_theta is pi_old recomputed at the same weights, in fp32. The same run
# with N=1 (recipe override minibatches=1) measured |log r_t| = 0.0 exactly in every step; padded vs packed calls
# differ by ~5e-7 (tests/unit/models/test_cpu_attention.py). The second mini-batch's pi_theta has taken one Adam step at
# lr 1e-4: with N=2, max |log r_t| 0.086-0.69 per step, mean 0.007-0.035 (over both mini-batches), k3 1e-4 to 3e-3
# (two runs).
STALE_LOG_RATIO = 1e-3


def test_second_minibatch_is_stale_in_every_step(minirl_rows):
    # With N=2 the second update runs on weights already moved by the first: in every step some token's |log r_t|
    # is far above recompute noise (with N=1 every |log r_t| is noise: 0.0 measured).
    rows, _ = minirl_rows
    stale = [r["actor/staleness/abs_log_ratio_max"] for r in rows]
    assert min(stale) > STALE_LOG_RATIO, stale
    # and on average over tokens too (verl averages the two mini-batches' means)
    assert min(r["actor/staleness/abs_log_ratio_mean"] for r in rows) > 1e-4
    assert min(r["actor/staleness/kl_k3"] for r in rows) > 1e-6  # k3 ~ (log r)^2 / 2
    assert any(r["actor/grad_norm"] > 0 for r in rows)


def test_entropy_per_token_is_verls_token_sum_entropy_over_the_mean_length(minirl_rows):
    # MiniRL aggregates with seq-mean-token-sum, so verl's actor/entropy = (1/B) sum_i sum_t H = per-token
    # entropy x mean response length (single-turn: every response token is valid); ours is sum_i sum_t H / sum_i |y_i|.
    rows, _ = minirl_rows
    for row in rows:
        expected = row["actor/entropy"] / row["response_length/mean"]
        assert row["actor/entropy_per_token"] == pytest.approx(expected, rel=1e-3), row["step"]
